/*
 * serve_response.h — OpenAI's response shapes for completions and chat completions: the whole response
 * ("text_completion" / "chat.completion"), the streamed chunks ("text_completion" / "chat.completion.chunk"),
 * the usage counts, and the log-probabilities (completions: tokens, token_logprobs, top_logprobs,
 * text_offset; chat: content[] of {token, logprob, bytes, top_logprobs}).
 */
#ifndef JAMBA_CLI_SERVE_RESPONSE_H
#define JAMBA_CLI_SERVE_RESPONSE_H

#include <stddef.h>
#include <stdint.h>

#include "jamba.h"
#include "tools/jamba/serve_choice.h"
#include "tools/jamba/serve_request.h"

typedef struct serve_meta {
    serve_endpoint endpoint;
    const jamba_tokenizer *tok;
    char id[48];               /* "cmpl-..." or "chatcmpl-..." */
    int64_t created;           /* Unix seconds */
    const char *model;         /* the model id */
    int64_t n_per_prompt;      /* the request's n: choices i*n .. i*n+n-1 share prompt i */
} serve_meta;

/* The whole response for `choices` (all finished), as a new JSON text (free it); NULL when out of memory. */
char *serve_response_body(const serve_meta *m, const serve_choice *choices, int64_t n_choices);

/* The next chunk of choice `index`: its text and log-probabilities not yet streamed and, once finished, its
 * finish_reason; marks them streamed. NULL with *nothing set when there is nothing new; NULL alone when out of
 * memory. */
char *serve_response_chunk(const serve_meta *m, serve_choice *c, int64_t index, bool *nothing);

/* The closing chunk of stream_options.include_usage: no choices, the usage counts. */
char *serve_response_usage_chunk(const serve_meta *m, const serve_choice *choices, int64_t n_choices);

#endif /* JAMBA_CLI_SERVE_RESPONSE_H */
