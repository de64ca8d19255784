/*
 * serve_choice.h — one choice of a completion as the HTTP side builds it from its job's token events: the
 * text (streamed through a jamba_stream_decoder, so UTF-8 characters split over tokens come out whole), the
 * stop strings (text that could begin one is held back until it cannot; a match ends the choice and cuts the
 * text before it), the per-token log-probabilities, the token counts and the finish reason.
 */
#ifndef JAMBA_CLI_SERVE_CHOICE_H
#define JAMBA_CLI_SERVE_CHOICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "jamba.h"
#include "tools/jamba/serve_engine.h"

/* One generated token's log-probability record. */
typedef struct serve_logprob {
    jamba_token token;
    float logprob;
    int32_t n_top;
    jamba_token top_tokens[JAMBA_MAX_TOP_LOGPROBS];
    float top_logprobs[JAMBA_MAX_TOP_LOGPROBS];
    size_t text_offset;        /* where the token's text starts in the choice's text */
} serve_logprob;

typedef struct serve_choice {
    jamba_stream_decoder *dec;
    const char *const *stops;  /* the request's stop strings (not owned) */
    int n_stops;
    char *text;                /* the text settled so far, [len] (NUL-terminated) */
    size_t len, cap;
    char *held;                /* text that may begin a stop string, [n_held] */
    size_t n_held, cap_held;
    serve_logprob *logprobs;   /* [n_logprobs] when recorded */
    int64_t n_logprobs, cap_logprobs;
    bool record_logprobs;
    int64_t prompt_tokens, cached_tokens, completion_tokens;
    bool out_of_memory;        /* text was lost: the choice finishes with "error" */
    const char *finish;        /* OpenAI's finish_reason once finished ("stop", "length", "abort", "error"), else NULL */
    size_t streamed_text;      /* bytes of text already sent (streaming) */
    int64_t streamed_logprobs; /* records already sent (streaming) */
    bool role_sent;            /* the chat role went out in a first chunk (streaming) */
    bool finish_sent;          /* the finish_reason went out (streaming) */
} serve_choice;

/* Start a choice; JAMBA_ERR_OUT_OF_MEMORY. `text` may start with the echoed prompt. */
jamba_status serve_choice_init(serve_choice *c, const jamba_tokenizer *tok, const char *const *stops, int n_stops,
                               bool record_logprobs, jamba_error *err);
void serve_choice_free(serve_choice *c);

/* Append text to the settled text (the echoed prompt); false when out of memory. */
bool serve_choice_append(serve_choice *c, const char *text, size_t len);

/* Take one event. Returns true when it completed a stop string: the choice is then finished ("stop") and its
 * job should be ended. An error (out of memory) finishes the choice with "error". */
bool serve_choice_feed(serve_choice *c, const serve_event *ev);

/* The job ended without (more) events: finish with `reason` unless finished already; held text is kept. */
void serve_choice_close(serve_choice *c, const char *reason);

#endif /* JAMBA_CLI_SERVE_CHOICE_H */
