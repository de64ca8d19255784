/*
 * serve_completion.c — completions and chat completions through the scheduler (serve_completion.h).
 */
#include "tools/jamba/serve_completion.h"

#include "tools/jamba/serve_choice.h"
#include "tools/jamba/serve_response.h"
#include "tools/jamba/serve_sse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WAIT_MS 50 /* how often a waiting request looks at its client and at the shutdown */

/* One request being answered: its choices, its group of scheduler jobs, its stream. */
typedef struct completion {
    serve_app *app;
    serve_request req;
    serve_meta meta;
    serve_http_request http;   /* the connection, for serve_http_client_gone */
    jamba_token **prompts;     /* [n_prompts] prompt tokens */
    int64_t *n_prompt, *system_end;
    int64_t n_prompts, max_tokens;
    const char *stops[SERVE_MAX_STOPS + 2]; /* the request's and the chat transcript's */
    int n_stops;
    serve_group *group;
    serve_choice *choices;     /* [n_choices] */
    bool *first_token_seen;    /* [n_choices] */
    int64_t n_choices;
    serve_event *events;       /* exchange buffer of serve_group_take */
    int64_t cap_events;
    serve_sse sse;
    bool stream_closed;        /* [DONE] queued */
    bool failed_engine;        /* the scheduler stopped (device fault) */
    bool counted;              /* the finished choices are in the metrics */
} completion;

static void count_finished(completion *c) {
    for (int64_t i = 0; !c->counted && i < c->n_choices; i++)
        serve_metrics_finished(c->app->metrics, c->choices[i].finish ? c->choices[i].finish : "abort");
    c->counted = true;
}

static void completion_free(completion *c) {
    if (c == NULL)
        return;
    if (c->group) {
        count_finished(c); /* a stream cut short (the client went away) ends here */
        serve_group_release(c->group);
    }
    for (int64_t i = 0; i < c->n_choices; i++)
        serve_choice_free(&c->choices[i]);
    for (int64_t i = 0; i < c->n_prompts; i++)
        free(c->prompts ? c->prompts[i] : NULL);
    free(c->prompts);
    free(c->n_prompt);
    free(c->system_end);
    free(c->choices);
    free(c->first_token_seen);
    free(c->events);
    serve_sse_free(&c->sse);
    serve_request_free(&c->req);
    atomic_fetch_sub(&c->app->in_flight, 1);
    free(c);
}

/* ---- prompts ---------------------------------------------------------------------------------- */

static bool oom(serve_error *e) { return serve_fail(e, 500, NULL, NULL, "out of memory"); }

static bool tokenize_prompt(completion *c, int64_t i, serve_error *e) {
    const serve_prompt *p = &c->req.prompts[i];
    const jamba_tokenizer *tok = c->app->tok;
    const int64_t vocab = jamba_model_config(c->app->model)->vocab_size;
    if (p->text == NULL) {
        for (int64_t k = 0; k < p->n_ids; k++)
            if (p->ids[k] >= vocab)
                return serve_fail(e, 400, "invalid_value", "prompt", "prompt token %lld is %d, outside the vocabulary "
                                  "of %lld tokens", (long long)k, p->ids[k], (long long)vocab);
        if ((c->prompts[i] = malloc((size_t)p->n_ids * sizeof **c->prompts)) == NULL)
            return oom(e);
        memcpy(c->prompts[i], p->ids, (size_t)p->n_ids * sizeof **c->prompts);
        c->n_prompt[i] = p->n_ids;
        return true;
    }
    const int64_t cap = jamba_tokenizer_max_ids(tok, p->len);
    if ((c->prompts[i] = malloc((size_t)(cap > 0 ? cap : 1) * sizeof **c->prompts)) == NULL)
        return oom(e);
    jamba_error err = {0};
    if (jamba_tokenize(tok, p->text, p->len, JAMBA_TOKENIZE_ADD_SPECIAL, c->prompts[i], cap, &c->n_prompt[i], &err) !=
        JAMBA_OK)
        return serve_fail(e, 400, "invalid_value", "prompt", "the prompt cannot be tokenized: %s", err.message);
    if (c->n_prompt[i] == 0)
        return serve_fail(e, 400, "invalid_value", "prompt", "the prompt is empty and the tokenizer adds no BOS token: "
                          "nothing to continue");
    return true;
}

static bool render_chat(completion *c, serve_error *e) {
    jamba_error err = {0};
    jamba_status st = chat_render(c->app->tok, c->req.messages, c->req.n_messages, JAMBA_CHAT_GENERATION_PROMPT,
                                  &c->prompts[0], &c->n_prompt[0], &c->system_end[0], &err);
    if (st == JAMBA_ERR_OUT_OF_MEMORY)
        return oom(e);
    if (st != JAMBA_OK)
        return serve_fail(e, 400, "invalid_value", "messages", "%s", err.message);
    int n = 0;
    const char *const *stops = chat_stop_strings(c->app->style, &n);
    for (int i = 0; i < n; i++)
        c->stops[c->n_stops++] = stops[i];
    return true;
}

/* The prompts as tokens, each with room to generate within the context; the tokens to generate. */
static bool prepare(completion *c, serve_error *e) {
    c->n_prompts = c->req.endpoint == SERVE_CHAT ? 1 : c->req.n_prompts;
    c->prompts = calloc((size_t)c->n_prompts, sizeof *c->prompts);
    c->n_prompt = calloc((size_t)c->n_prompts, sizeof *c->n_prompt);
    c->system_end = calloc((size_t)c->n_prompts, sizeof *c->system_end);
    if (!c->prompts || !c->n_prompt || !c->system_end)
        return oom(e);
    for (int i = 0; i < c->req.n_stops; i++)
        c->stops[c->n_stops++] = c->req.stops[i];
    for (int64_t i = 0; i < c->n_prompts; i++)
        if (!(c->req.endpoint == SERVE_CHAT ? render_chat(c, e) : tokenize_prompt(c, i, e)))
            return false;
    const int64_t n_ctx = serve_engine_n_ctx(c->app->engine);
    int64_t longest = 0;
    for (int64_t i = 0; i < c->n_prompts; i++)
        longest = c->n_prompt[i] > longest ? c->n_prompt[i] : longest;
    const char *param = c->req.endpoint == SERVE_CHAT ? "messages" : "prompt";
    if (longest >= n_ctx)
        return serve_fail(e, 400, "context_length_exceeded", param,
                          "This model's maximum context length is %lld tokens, but the prompt has %lld tokens, which "
                          "leaves no room for a completion.", (long long)n_ctx, (long long)longest);
    if (c->req.max_tokens > 0 && longest + c->req.max_tokens > n_ctx)
        return serve_fail(e, 400, "context_length_exceeded", "max_tokens", "This model's maximum context length is %lld "
                          "tokens. However, you requested %lld tokens (%lld in the prompt, %lld for the completion).",
                          (long long)n_ctx, (long long)(longest + c->req.max_tokens), (long long)longest,
                          (long long)c->req.max_tokens);
    c->max_tokens = c->req.max_tokens > 0 ? c->req.max_tokens : c->app->max_tokens;
    return true;
}

/* ---- submission ------------------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static bool submit_error(jamba_status st, const jamba_error *err, serve_error *e) {
    switch (st) {
    case JAMBA_ERR_CONTEXT_FULL: return serve_fail(e, 400, "context_length_exceeded", NULL, "%s", err->message);
    case JAMBA_ERR_INVALID_ARGUMENT: return serve_fail(e, 400, "invalid_value", NULL, "%s", err->message);
    case JAMBA_ERR_BUFFER_TOO_SMALL: return serve_fail(e, 503, "server_busy", NULL, "the request queue is full: %s",
                                                       err->message);
    case JAMBA_ERR_DEVICE: return serve_fail(e, 503, "device_error", NULL, "%s", err->message);
    default: return serve_fail(e, 500, NULL, NULL, "%s", err->message);
    }
}

static bool submit(completion *c, serve_error *e) {
    serve_app *app = c->app;
    c->n_choices = c->n_prompts * c->req.n;
    c->choices = calloc((size_t)c->n_choices, sizeof *c->choices);
    c->first_token_seen = calloc((size_t)c->n_choices, sizeof *c->first_token_seen);
    if (!c->choices || !c->first_token_seen || (c->group = serve_group_create(app->engine, (int)c->n_choices)) == NULL)
        return oom(e);
    jamba_token stop_ids[2 * JAMBA_MAX_EOS_IDS + 1];
    int n_stop_ids = 0;
    for (int i = 0; !c->req.ignore_eos && i < app->n_eos; i++)
        stop_ids[n_stop_ids++] = app->eos[i];
    if (c->req.endpoint == SERVE_CHAT && app->chat_end >= 0)
        stop_ids[n_stop_ids++] = app->chat_end;
    const uint64_t random_seed = splitmix64(atomic_fetch_add(&app->next_id, 1) ^ (uint64_t)time(NULL));
    for (int64_t i = 0; i < c->n_choices; i++) {
        const int64_t prompt = i / c->req.n, k = i % c->req.n;
        jamba_error err = {0};
        if (serve_choice_init(&c->choices[i], app->tok, c->stops, c->n_stops, c->req.logprobs, &err) != JAMBA_OK)
            return oom(e);
        c->choices[i].prompt_tokens = c->n_prompt[prompt];
        if (c->req.echo) {
            const serve_prompt *p = &c->req.prompts[prompt];
            char *text = NULL;
            size_t len = 0;
            if (p->text == NULL) { /* token ids: their text, as the tokenizer gives it */
                jamba_detokenize(app->tok, p->ids, p->n_ids, false, NULL, 0, &len, NULL);
                if ((text = malloc(len + 1)) == NULL ||
                    jamba_detokenize(app->tok, p->ids, p->n_ids, false, text, len + 1, &len, &err) != JAMBA_OK) {
                    free(text);
                    return oom(e);
                }
            }
            bool ok = serve_choice_append(&c->choices[i], text ? text : p->text, text ? len : p->len);
            free(text);
            if (!ok)
                return oom(e);
        }
        jamba_request_params p = jamba_request_default_params();
        p.prompt = c->prompts[prompt];
        p.n_prompt = c->n_prompt[prompt];
        p.max_tokens = c->max_tokens;
        const uint64_t seed = c->req.has_seed ? c->req.seed + (uint64_t)k : splitmix64(random_seed + (uint64_t)i);
        p.sampling = serve_request_sampling(&c->req, &app->sampling, seed);
        p.stop_tokens = stop_ids;
        p.n_stop_tokens = n_stop_ids;
        p.ignore_eos = c->req.ignore_eos;
        p.logprobs = c->req.logprobs;
        p.top_logprobs = c->req.top_logprobs;
        if (c->system_end[prompt] > 0 && c->system_end[prompt] < p.n_prompt)
            p.cache_prefix = c->system_end[prompt];
        jamba_status st = serve_group_submit(c->group, (int)i, &p, &err);
        if (st != JAMBA_OK)
            return submit_error(st, &err, e);
    }
    return true;
}

/* ---- progress --------------------------------------------------------------------------------- */

/* Take every queued event into the choices; true when all of them have finished. */
static bool pump(completion *c) {
    bool all = true;
    for (int64_t i = 0; i < c->n_choices; i++) {
        serve_choice *ch = &c->choices[i];
        int64_t n = 0;
        bool ended = false;
        serve_group_take(c->group, (int)i, &c->events, &n, &c->cap_events, &ended);
        for (int64_t k = 0; k < n; k++)
            if (serve_choice_feed(ch, &c->events[k]))
                serve_group_end(c->group, (int)i); /* a stop string: no more tokens wanted */
        if (!c->first_token_seen[i] && ch->completion_tokens > 0) {
            c->first_token_seen[i] = true;
            double s = serve_group_first_token_seconds(c->group, (int)i);
            if (s >= 0)
                serve_metrics_first_token(c->app->metrics, s);
        }
        if (ended && ch->finish == NULL)
            serve_choice_close(ch, "abort");
        all = all && ch->finish != NULL;
    }
    return all;
}

/* Between waits: end everything when the client went away, the shutdown's grace period is over or the
 * scheduler stopped. True when the request should stop waiting now (client gone or scheduler stopped). */
static bool must_stop(completion *c) {
    if (serve_engine_failure(c->app->engine)) {
        c->failed_engine = true;
        for (int64_t i = 0; i < c->n_choices; i++)
            serve_choice_close(&c->choices[i], "error");
        return true;
    }
    if (serve_http_client_gone(&c->http))
        return true;
    if (atomic_load(&c->app->cancel))
        for (int64_t i = 0; i < c->n_choices; i++)
            serve_group_end(c->group, (int)i);
    return false;
}

/* ---- streaming -------------------------------------------------------------------------------- */

/* Queue a chunk for each choice with news; at the end the usage chunk and [DONE]. False when out of memory. */
static bool queue_chunks(completion *c, bool all_finished) {
    for (int64_t i = 0; i < c->n_choices; i++) {
        bool nothing = false;
        char *chunk = serve_response_chunk(&c->meta, &c->choices[i], i, &nothing);
        if (chunk == NULL && !nothing)
            return false;
        bool ok = chunk == NULL || serve_sse_event(&c->sse, chunk, strlen(chunk));
        free(chunk);
        if (!ok)
            return false;
    }
    if (!all_finished)
        return true;
    if (c->req.include_usage) {
        char *usage = serve_response_usage_chunk(&c->meta, c->choices, c->n_choices);
        bool ok = usage && serve_sse_event(&c->sse, usage, strlen(usage));
        free(usage);
        if (!ok)
            return false;
    }
    c->stream_closed = true;
    count_finished(c);
    return serve_sse_done(&c->sse);
}

static ssize_t pull_stream(void *stream, char *buf, size_t max) {
    completion *c = stream;
    for (;;) {
        if (serve_sse_pending(&c->sse) > 0)
            return (ssize_t)serve_sse_take(&c->sse, buf, max);
        if (c->stream_closed)
            return SERVE_PULL_END;
        const bool stop = must_stop(c);
        if (stop && !c->failed_engine)
            return SERVE_PULL_ABORT; /* the client went away */
        if (!stop)
            serve_group_wait(c->group, WAIT_MS);
        if (!queue_chunks(c, pump(c) || c->failed_engine))
            return SERVE_PULL_ABORT;
    }
}

static void free_stream(void *stream) { completion_free(stream); }

/* ---- the handler ------------------------------------------------------------------------------ */

static void set_meta(completion *c) {
    serve_app *app = c->app;
    c->meta.endpoint = c->req.endpoint;
    c->meta.tok = app->tok;
    c->meta.created = (int64_t)time(NULL);
    c->meta.model = app->model_id;
    c->meta.n_per_prompt = c->req.n;
    snprintf(c->meta.id, sizeof c->meta.id, "%s-%016llx", c->req.endpoint == SERVE_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)splitmix64(atomic_fetch_add(&app->next_id, 1) ^ (uint64_t)c->meta.created));
}

static bool check_model(const serve_app *app, const serve_request *r, serve_error *e) {
    if (r->model == NULL || strcmp(r->model, app->model_id) == 0 || strcmp(r->model, app->model_path) == 0)
        return true;
    return serve_fail(e, 404, "model_not_found", "model", "The model '%.200s' does not exist: this server serves '%s' "
                      "(GET /v1/models)", r->model, app->model_id);
}

void serve_completion(serve_app *app, serve_endpoint endpoint, const serve_http_request *req, serve_http_response *res) {
    serve_error e = {0};
    completion *c = calloc(1, sizeof *c);
    if (c == NULL) {
        oom(&e);
        serve_http_error(res, &e);
        return;
    }
    atomic_fetch_add(&app->in_flight, 1);
    c->app = app;
    c->http = *req;
    bool ok = serve_request_parse(endpoint, req->body, req->body_len, &c->req, &e) && check_model(app, &c->req, &e);
    if (ok && atomic_load(&app->stopping))
        ok = serve_fail(&e, 503, "shutting_down", NULL, "the server is shutting down");
    if (ok && serve_engine_failure(app->engine))
        ok = serve_fail(&e, 503, "device_error", NULL, "the model can no longer run: %s",
                        serve_engine_failure(app->engine));
    if (ok)
        set_meta(c);
    ok = ok && prepare(c, &e) && submit(c, &e);
    if (!ok) {
        serve_http_error(res, &e);
        completion_free(c);
        return;
    }
    if (c->req.stream) {
        res->status = 200;
        res->content_type = "text/event-stream";
        res->pull = pull_stream;
        res->stream = c;
        res->stream_free = free_stream;
        return;
    }
    while (!pump(c) && !must_stop(c))
        serve_group_wait(c->group, WAIT_MS);
    if (c->failed_engine) {
        serve_fail(&e, 500, "device_error", NULL, "the model failed while generating: %s",
                   serve_engine_failure(app->engine));
        serve_http_error(res, &e);
    } else {
        /* a client that went away gets nothing; the response is built all the same, to be dropped */
        serve_http_json(res, 200, serve_response_body(&c->meta, c->choices, c->n_choices));
    }
    count_finished(c);
    completion_free(c);
}
