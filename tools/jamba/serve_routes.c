/*
 * serve_routes.c — dispatch of `jamba serve`'s endpoints, the API key, and the small endpoints (health,
 * metrics, models) (serve_routes.h).
 */
#include "tools/jamba/serve_routes.h"

#include "tools/jamba/serve_completion.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Compare in time that does not depend on where the strings differ. */
static bool same_secret(const char *given, const char *key) {
    const size_t n = strlen(key), m = strlen(given);
    unsigned char diff = (unsigned char)(n != m);
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(key[i] ^ (i < m ? given[i] : 0));
    return diff == 0;
}

static bool authorized(const serve_app *app, const serve_http_request *req, serve_error *e) {
    if (app->api_key == NULL)
        return true;
    const char *auth = req->authorization;
    if (auth == NULL)
        return serve_fail(e, 401, "invalid_api_key", NULL, "You didn't provide an API key: send "
                          "'Authorization: Bearer KEY' with the key given to `jamba serve --api-key`.");
    if (strncmp(auth, "Bearer ", 7) != 0 || !same_secret(auth + 7, app->api_key))
        return serve_fail(e, 401, "invalid_api_key", NULL, "Incorrect API key provided.");
    return true;
}

static json_t *model_json(const serve_app *app) {
    return json_pack("{s:s,s:s,s:I,s:s,s:I}", "id", app->model_id, "object", "model", "created",
                     (json_int_t)app->created, "owned_by", "jamba", "max_model_len",
                     (json_int_t)serve_engine_n_ctx(app->engine));
}

static char *dump(json_t *root) {
    char *s = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    return s;
}

static void health(serve_app *app, serve_http_response *res) {
    const char *failure = serve_engine_failure(app->engine);
    if (failure)
        serve_http_json(res, 503, dump(json_pack("{s:s,s:s}", "status", "error", "message", failure)));
    else if (atomic_load(&app->stopping))
        serve_http_json(res, 503, dump(json_pack("{s:s}", "status", "shutting down")));
    else
        serve_http_json(res, 200, dump(json_pack("{s:s}", "status", "ok")));
}

static void metrics(serve_app *app, serve_http_response *res) {
    jamba_scheduler_stats sched;
    jamba_prefix_cache_stats cache;
    serve_engine_stats(app->engine, &sched);
    const bool has_cache = serve_engine_cache_stats(app->engine, &cache);
    size_t len = 0;
    char *text = serve_metrics_render(app->metrics, &sched, has_cache ? &cache : NULL, &len);
    if (text == NULL) {
        serve_http_json(res, 500, NULL);
        return;
    }
    res->status = 200;
    res->content_type = "text/plain; version=0.0.4; charset=utf-8";
    res->body = text;
    res->body_len = len;
}

/* GET /v1/models or /v1/models/ID. */
static void models(serve_app *app, const char *id, serve_http_response *res) {
    if (id == NULL) {
        serve_http_json(res, 200, dump(json_pack("{s:s,s:[o]}", "object", "list", "data", model_json(app))));
        return;
    }
    if (strcmp(id, app->model_id) == 0) {
        serve_http_json(res, 200, dump(model_json(app)));
        return;
    }
    serve_error e;
    serve_fail(&e, 404, "model_not_found", "model", "The model '%.200s' does not exist: this server serves '%s'", id,
               app->model_id);
    serve_http_error(res, &e);
}

typedef enum route { ROUTE_HEALTH, ROUTE_METRICS, ROUTE_MODELS, ROUTE_MODEL, ROUTE_COMPLETIONS, ROUTE_CHAT } route;

static const struct {
    const char *path;
    const char *method;
    route route;
} routes[] = {
    {"/health", "GET", ROUTE_HEALTH},
    {"/metrics", "GET", ROUTE_METRICS},
    {"/v1/models", "GET", ROUTE_MODELS},
    {"/v1/models/", "GET", ROUTE_MODEL}, /* a prefix: the id follows */
    {"/v1/completions", "POST", ROUTE_COMPLETIONS},
    {"/v1/chat/completions", "POST", ROUTE_CHAT},
};

void serve_route(void *arg, const serve_http_request *req, serve_http_response *res) {
    serve_app *app = arg;
    serve_error e = {0};
    size_t i = 0;
    const size_t n_routes = sizeof routes / sizeof routes[0];
    for (; i < n_routes; i++) {
        const size_t len = strlen(routes[i].path);
        const bool prefix = routes[i].path[len - 1] == '/';
        if (prefix ? strncmp(req->path, routes[i].path, len) == 0 && req->path[len] != '\0'
                   : strcmp(req->path, routes[i].path) == 0)
            break;
    }
    if (i == n_routes) {
        serve_fail(&e, 404, "not_found", NULL, "Unknown path '%.200s' (see docs/serve.md: /v1/completions, "
                   "/v1/chat/completions, /v1/models, /health, /metrics)", req->path);
        serve_http_error(res, &e);
        return;
    }
    if (strcmp(req->method, routes[i].method) != 0) {
        serve_fail(&e, 405, "method_not_allowed", NULL, "%s %s is not served; use %s", req->method, req->path,
                   routes[i].method);
        serve_http_error(res, &e);
        res->allow = routes[i].method;
        return;
    }
    if (strncmp(req->path, "/v1/", 4) == 0 && !authorized(app, req, &e)) {
        serve_http_error(res, &e);
        return;
    }
    switch (routes[i].route) {
    case ROUTE_HEALTH: health(app, res); break;
    case ROUTE_METRICS: metrics(app, res); break;
    case ROUTE_MODELS: models(app, NULL, res); break;
    case ROUTE_MODEL: models(app, req->path + strlen("/v1/models/"), res); break;
    case ROUTE_COMPLETIONS: serve_completion(app, SERVE_COMPLETIONS, req, res); break;
    case ROUTE_CHAT: serve_completion(app, SERVE_CHAT, req, res); break;
    }
}
