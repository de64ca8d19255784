/*
 * serve_request.h — the JSON body of POST /v1/completions and /v1/chat/completions, parsed and checked field
 * by field (docs/serve.md lists the fields honoured). Every problem is an OpenAI-style 400 naming the field:
 * malformed JSON, a field of the wrong type, a number out of range, a feature this server does not offer
 * (frequency_penalty other than 0, logit_bias, tools, ...). Unknown fields are ignored, as OpenAI-compatible
 * servers commonly do. What needs the model (token ids within the vocabulary, the context length) is checked
 * later, when the prompt is tokenized.
 */
#ifndef JAMBA_CLI_SERVE_REQUEST_H
#define JAMBA_CLI_SERVE_REQUEST_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "jamba.h"
#include "tools/jamba/serve_error.h"

#define SERVE_MAX_N 16        /* choices per prompt (n) */
#define SERVE_MAX_CHOICES 64  /* prompts x n in one request */
#define SERVE_MAX_STOPS 16    /* stop strings */
#define SERVE_MAX_STOP_BYTES 256

typedef enum serve_endpoint { SERVE_COMPLETIONS = 0, SERVE_CHAT = 1 } serve_endpoint;

/* One completions prompt: text, or token ids. */
typedef struct serve_prompt {
    const char *text;         /* NULL when ids are given; points into the parsed body */
    size_t len;
    jamba_token *ids;         /* owned */
    int64_t n_ids;
} serve_prompt;

typedef struct serve_request {
    serve_endpoint endpoint;
    json_t *root;             /* the parsed body; the strings below point into it */
    const char *model;        /* NULL when not given */
    /* /v1/completions */
    serve_prompt *prompts;    /* [n_prompts], owned */
    int64_t n_prompts;
    bool echo;                /* the prompt text before each completion */
    /* /v1/chat/completions */
    jamba_chat_message *messages; /* [n_messages], owned; contents point into the body or into owned_texts */
    int64_t n_messages;
    char **owned_texts;       /* contents joined from arrays of text parts */
    int64_t n_owned_texts;
    /* both */
    int64_t max_tokens;       /* -1: not given */
    int64_t n;                /* choices per prompt, 1 .. SERVE_MAX_N */
    bool stream, include_usage;
    const char *stops[SERVE_MAX_STOPS];
    int n_stops;
    bool has_seed;
    uint64_t seed;
    /* sampling fields given (NAN or -1 when not) */
    double temperature, top_p, min_p, presence_penalty, repetition_penalty;
    int64_t top_k;
    bool ignore_eos;
    bool logprobs;            /* per-token log-probabilities wanted */
    int32_t top_logprobs;     /* alternatives per token, 0 .. JAMBA_MAX_TOP_LOGPROBS */
} serve_request;

/* Parse `len` bytes of body for `endpoint` into *out (free it with serve_request_free, also after a
 * failure). False with *e filled (status 400) on any problem. */
bool serve_request_parse(serve_endpoint endpoint, const char *body, size_t len, serve_request *out, serve_error *e);
void serve_request_free(serve_request *r);

/* The sampling parameters of the request: the fields it gives over `defaults` (the model's
 * generation_config.json over the library's defaults), with `seed` for the seed (the request's seed plus the
 * choice index, or a random one). */
jamba_sampler_params serve_request_sampling(const serve_request *r, const jamba_sampler_params *defaults, uint64_t seed);

#endif /* JAMBA_CLI_SERVE_REQUEST_H */
