/*
 * cmd_serve.c — `jamba serve`: an OpenAI-compatible HTTP server (docs/serve.md). Loads the model, starts the
 * library's scheduler (continuous batching, prefix-state cache) on its own thread and the HTTP server, then
 * waits for SIGTERM or SIGINT and shuts down: stop accepting, let the requests in flight finish for up to
 * --shutdown-timeout seconds (a second signal cuts that short), cancel the rest, free everything, exit 0.
 */
#include "tools/jamba/cli.h"
#include "tools/jamba/default_model.h"
#include "tools/jamba/generation.h"
#include "tools/jamba/serve_engine.h"
#include "tools/jamba/serve_http.h"
#include "tools/jamba/serve_metrics.h"
#include "tools/jamba/serve_routes.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STR_(x) #x
#define STR(x) STR_(x)
#define DEFAULT_PORT 8080
#define DEFAULT_CACHE_MB 256
#define DEFAULT_MAX_BODY (1 << 20)
#define DEFAULT_CONNECTIONS 512
#define DEFAULT_SHUTDOWN_S 10
#define CANCEL_WAIT_S 5 /* after the grace period: how long cancelled requests get to end */

static void help_serve(void) {
    printf("usage: jamba serve [--model DIR] [--host ADDR] [--port N] [options]\n"
           "\n"
           "Serve a model over HTTP with OpenAI's API: POST /v1/completions and /v1/chat/completions (streamed\n"
           "as server-sent events with \"stream\": true), GET /v1/models, /health and /metrics (Prometheus). Every\n"
           "request runs through the library's scheduler, which batches the requests in flight into shared\n"
           "forward steps (continuous batching), with a prefix-state cache that lets requests sharing a prompt\n"
           "start (a chat's system message) resume from a snapshot. docs/serve.md lists the request fields\n"
           "honoured. A model without the Jamba chat tokens (the bundled demo) chats as a plain transcript.\n"
           "\n"
           "  -m, --model DIR       model folder (default: $JAMBA_MODEL, else the bundled demo model)\n"
           "  --host ADDR           address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 or ::\n"
           "                        for every interface)\n"
           "  --port N              TCP port (default " STR(DEFAULT_PORT) "; 0 = any free port)\n"
           "  --api-key KEY         require 'Authorization: Bearer KEY' on /v1/ (default: $JAMBA_API_KEY when set,\n"
           "                        else no key)\n"
           "  -c, --ctx N           tokens each request may hold, prompt and completion (default: the model's\n"
           "                        max_position_embeddings, at most " STR(JAMBA_DEFAULT_N_CTX) "); k/M suffixes\n"
           "                        accepted\n"
           "  --parallel N          requests that run at once (sequences of the context); 0 (default) = as many\n"
           "                        as memory allows (a quarter of RAM on the CPU, the GPU's free memory on\n"
           "                        CUDA), at most 256; more requests wait in a queue\n"
           "  --prefix-cache-mb M   host memory for prefix-state snapshots (default " STR(DEFAULT_CACHE_MB) "; 0 =\n"
           "                        none)\n"
           "  -n, --max-tokens N    completion tokens when a request gives no max_tokens (default: the model's\n"
           "                        generation_config.json max_new_tokens, else 256; at most what the context\n"
           "                        leaves)\n"
           "  -t, --threads N       CPU worker threads (default: all CPUs)\n"
           "  --batch N             tokens per forward step, decode tokens plus prefill chunks (default 0: the\n"
           "                        context's step, 512 on the CPU)\n"
           "  --max-body BYTES      larger request bodies get 413 (default 1M; k/M suffixes accepted)\n"
           "  --max-connections N   open connections at most (default " STR(DEFAULT_CONNECTIONS) ")\n"
           "  --shutdown-timeout S  on SIGTERM/SIGINT, seconds the requests in flight may take to finish before\n"
           "                        they are cancelled (default " STR(DEFAULT_SHUTDOWN_S) ")\n"
           CLI_DEVICE_HELP
           "\n"
           "Sampling defaults come from the model's generation_config.json, else the library's (temperature 0.8,\n"
           "top_k 40, top_p 0.95, min_p 0.05); each request's fields override them. The server prints\n"
           "\"listening on http://ADDR:PORT\" on stderr when it is ready. Every option is also accepted as\n"
           "--option=VALUE.\n"
           "\n"
           "Exit status: 0 after a shutdown by signal, 1 failure (one line on stderr), 2 usage error.\n");
}

typedef struct serve_args {
    const char *model, *host, *api_key;
    int64_t port, ctx, parallel, cache_mb, max_tokens, threads, batch, max_body, connections, shutdown_s;
    cli_device_args dev;
} serve_args;

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Wait until no request is in flight, `seconds` pass, or (when `signals` is given) one of them arrives. */
static void wait_in_flight(serve_app *app, double seconds, const sigset_t *signals) {
    const double until = now_seconds() + seconds;
    while (atomic_load(&app->in_flight) > 0 && now_seconds() < until) {
        struct timespec step = {0, 50 * 1000000L};
        if (signals) {
            if (sigtimedwait(signals, NULL, &step) > 0)
                return;
        } else {
            nanosleep(&step, NULL);
        }
    }
}

/* The model folder's last path component ("demo"), the id /v1/models lists. */
static const char *model_id_of(const char *dir, char *buf, size_t size) {
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    size_t start = n;
    while (start > 0 && dir[start - 1] != '/')
        start--;
    snprintf(buf, size, "%.*s", (int)(n - start), dir + start);
    return buf;
}

static void count_response(void *app, int status) { serve_metrics_response(((serve_app *)app)->metrics, status); }

/* Serve until a signal in `signals` arrives; then shut down. */
static int run_server(serve_app *app, const serve_args *a, const serve_engine_params *ep, const sigset_t *signals) {
    jamba_error err = {0};
    if (serve_engine_create(app->model, ep, &app->engine, &err) != JAMBA_OK)
        return cli_fail(&err);
    serve_http *http = NULL;
    serve_http_params hp = {
        .host = a->host,
        .port = (int)a->port,
        .max_body = (size_t)a->max_body,
        .max_connections = (unsigned)a->connections,
        .idle_timeout_s = 300,
        .handler = serve_route,
        .app = app,
        .responded = count_response,
    };
    int port = 0;
    int rc = CLI_EXIT_OK;
    if (serve_http_start(&hp, &http, &port, &err) != JAMBA_OK) {
        rc = cli_fail(&err);
    } else {
        char cache[64] = "no prefix cache";
        if (ep->prefix_cache_bytes)
            snprintf(cache, sizeof cache, "prefix cache %llu MiB", (unsigned long long)(ep->prefix_cache_bytes >> 20));
        fprintf(stderr, "jamba serve: model %s (%s), %d sequences of %lld tokens, %s, chat as %s\n", app->model_id,
                ep->context.device == JAMBA_DEVICE_CUDA ? "cuda" : "cpu", serve_engine_sequences(app->engine),
                (long long)serve_engine_n_ctx(app->engine), cache, chat_style_name(app->style));
        fprintf(stderr, "jamba serve: listening on http://%s%s%s:%d\n", strchr(a->host, ':') ? "[" : "", a->host,
                strchr(a->host, ':') ? "]" : "", port);
        int sig = 0;
        while (sigwait(signals, &sig) != 0) {
        }
        fprintf(stderr, "jamba serve: %s: shutting down; %d requests in flight get up to %lld s to finish\n",
                sig == SIGTERM ? "SIGTERM" : "SIGINT", atomic_load(&app->in_flight), (long long)a->shutdown_s);
        atomic_store(&app->stopping, true);
        serve_http_quiesce(http);
        wait_in_flight(app, (double)a->shutdown_s, signals);
        if (atomic_load(&app->in_flight) > 0)
            fprintf(stderr, "jamba serve: cancelling %d requests\n", atomic_load(&app->in_flight));
        atomic_store(&app->cancel, true);
        wait_in_flight(app, CANCEL_WAIT_S, NULL);
    }
    serve_http_stop(http);
    serve_engine_free(app->engine);
    app->engine = NULL;
    if (rc == CLI_EXIT_OK)
        fprintf(stderr, "jamba serve: stopped\n");
    return rc;
}

int cmd_serve(int argc, char **argv) {
    serve_args a = {.host = "127.0.0.1", .port = DEFAULT_PORT, .cache_mb = DEFAULT_CACHE_MB, .max_tokens = -1,
                    .max_body = DEFAULT_MAX_BODY, .connections = DEFAULT_CONNECTIONS, .shutdown_s = DEFAULT_SHUTDOWN_S};
    const cli_option opts[] = {
        {"--model", CLI_STRING, &a.model, 0, 0},
        {"--host", CLI_STRING, &a.host, 0, 0},
        {"--port", CLI_COUNT, &a.port, 0, 65535},
        {"--api-key", CLI_STRING, &a.api_key, 0, 0},
        {"--ctx", CLI_COUNT, &a.ctx, 1, INT64_C(1) << 40},
        {"--parallel", CLI_COUNT, &a.parallel, 0, 1 << 16},
        {"--prefix-cache-mb", CLI_COUNT, &a.cache_mb, 0, INT64_C(1) << 30},
        {"--max-tokens", CLI_COUNT, &a.max_tokens, 1, INT64_C(1) << 40},
        {"--threads", CLI_COUNT, &a.threads, 1, 1024},
        {"--batch", CLI_COUNT, &a.batch, 0, 1 << 16},
        {"--max-body", CLI_COUNT, &a.max_body, 1024, INT64_C(1) << 32},
        {"--max-connections", CLI_COUNT, &a.connections, 1, 1 << 16},
        {"--shutdown-timeout", CLI_COUNT, &a.shutdown_s, 0, 24 * 3600},
        CLI_DEVICE_OPTIONS(a.dev),
    };
    int rc = cli_parse("serve", argc, argv, opts, sizeof opts / sizeof opts[0], help_serve);
    if (rc != 0)
        return rc < 0 ? CLI_EXIT_OK : rc;
    if (a.api_key == NULL && getenv("JAMBA_API_KEY") && getenv("JAMBA_API_KEY")[0])
        a.api_key = getenv("JAMBA_API_KEY");
    if (a.api_key && a.api_key[0] == '\0')
        return cli_usage_error("serve", "--api-key needs a non-empty key");

    gen_options o = {.model = a.model};
    o.load = jamba_model_default_params();
    serve_engine_params ep = {.context = jamba_context_default_params(), .scheduler = jamba_scheduler_default_params()};
    if ((rc = cli_device_params("serve", &a.dev, &ep.context)) != 0 || (rc = cli_model_params("serve", &a.dev, &o.load)))
        return rc;
    ep.context.n_ctx = a.ctx;
    ep.context.n_seq_max = (int32_t)a.parallel;
    ep.context.n_threads = (int32_t)a.threads;
    ep.scheduler.token_budget = a.batch;
    ep.prefix_cache_bytes = (uint64_t)a.cache_mb << 20;

    jamba_error err = {0};
    if (o.model == NULL && (o.model = cli_default_model(&err)) == NULL)
        return cli_fail(&err);
    char id[256];
    serve_app app = {.model_id = model_id_of(o.model, id, sizeof id), .model_path = o.model, .api_key = a.api_key,
                     .max_tokens = 256, .created = (int64_t)time(NULL)};
    app.sampling = jamba_sampler_default_params();
    if (gen_read_defaults(o.model, &app.sampling, &app.max_tokens, &err) != JAMBA_OK)
        return cli_fail(&err);
    if (a.max_tokens > 0)
        app.max_tokens = a.max_tokens;
    if ((app.metrics = serve_metrics_create()) == NULL) {
        fprintf(stderr, "jamba: error: out of memory\n");
        return CLI_EXIT_FAIL;
    }
    gen_session s;
    rc = gen_open(&s, &o, &err) == CLI_EXIT_OK ? CLI_EXIT_OK : cli_fail(&err);
    if (rc == CLI_EXIT_OK) {
        app.model = s.model;
        app.tok = s.tok;
        for (int i = 0; i < s.n_stop_ids && i < (int)(sizeof app.eos / sizeof app.eos[0]); i++)
            app.eos[app.n_eos++] = s.stop_ids[i];
        app.style = chat_style_of(s.tok);
        app.chat_end = chat_end_token(s.tok);
        /* every thread started from here on (context workers, HTTP connections) leaves SIGINT and SIGTERM to
         * this one, which waits for them; a client that goes away must not kill the server with SIGPIPE */
        sigset_t signals;
        sigemptyset(&signals);
        sigaddset(&signals, SIGINT);
        sigaddset(&signals, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &signals, NULL);
        signal(SIGPIPE, SIG_IGN);
        rc = run_server(&app, &a, &ep, &signals);
    }
    gen_close(&s);
    serve_metrics_free(app.metrics);
    return rc;
}
