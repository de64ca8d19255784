/*
 * serve_app.h — what the handlers of `jamba serve` share: the model and tokenizer, the engine (scheduler and
 * prefix cache), the metrics, the request defaults, and the shutdown flags. Set up by cmd_serve.c.
 */
#ifndef JAMBA_CLI_SERVE_APP_H
#define JAMBA_CLI_SERVE_APP_H

#include <stdatomic.h>
#include <stdint.h>

#include "jamba.h"
#include "tools/jamba/chat_format.h"
#include "tools/jamba/serve_engine.h"
#include "tools/jamba/serve_metrics.h"

typedef struct serve_app {
    const jamba_model *model;
    const jamba_tokenizer *tok;
    serve_engine *engine;
    serve_metrics *metrics;
    const char *model_id;           /* the id /v1/models lists (the folder's name) */
    const char *model_path;         /* the folder as given, also accepted as "model" */
    const char *api_key;            /* NULL: none needed */
    jamba_sampler_params sampling;  /* defaults: generation_config.json over the library's */
    int64_t max_tokens;             /* default max_tokens (generation_config.json's max_new_tokens, else 256) */
    jamba_token eos[2 * JAMBA_MAX_EOS_IDS]; /* the tokenizer's and the config's EOS ids */
    int n_eos;
    chat_style style;               /* how chat messages become a prompt (chat_format.h) */
    jamba_token chat_end;           /* the token that ends an assistant turn, or -1 */
    int64_t created;                /* Unix seconds at start (/v1/models) */
    atomic_bool stopping;           /* shutdown began: generation requests get 503 */
    atomic_bool cancel;             /* the grace period is over: requests in flight end now */
    atomic_int in_flight;           /* generation requests being answered */
    atomic_uint_fast64_t next_id;   /* response ids and random seeds */
} serve_app;

#endif /* JAMBA_CLI_SERVE_APP_H */
