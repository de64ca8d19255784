/*
 * serve_choice.c — a choice's text, stop strings, log-probabilities and counts from its token events
 * (serve_choice.h).
 */
#include "tools/jamba/serve_choice.h"

#include "tools/jamba/stop_text.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static bool grow_bytes(char **p, size_t *cap, size_t need) {
    if (need <= *cap)
        return true;
    size_t cap2 = *cap ? *cap : 256;
    while (cap2 < need) {
        if (cap2 > SIZE_MAX / 2)
            return false;
        cap2 *= 2;
    }
    char *q = realloc(*p, cap2);
    if (q == NULL)
        return false;
    *p = q, *cap = cap2;
    return true;
}

bool serve_choice_append(serve_choice *c, const char *text, size_t len) {
    if (!grow_bytes(&c->text, &c->cap, c->len + len + 1)) {
        c->out_of_memory = true;
        return false;
    }
    if (len > 0)
        memcpy(c->text + c->len, text, len);
    c->len += len;
    c->text[c->len] = '\0';
    return true;
}

jamba_status serve_choice_init(serve_choice *c, const jamba_tokenizer *tok, const char *const *stops, int n_stops,
                               bool record_logprobs, jamba_error *err) {
    memset(c, 0, sizeof *c);
    c->stops = stops;
    c->n_stops = n_stops;
    c->record_logprobs = record_logprobs;
    jamba_status st = jamba_stream_decoder_create(tok, false, &c->dec, err);
    if (st == JAMBA_OK && !serve_choice_append(c, "", 0)) {
        err->status = st = JAMBA_ERR_OUT_OF_MEMORY;
        strcpy(err->message, "serve: out of memory");
    }
    return st;
}

void serve_choice_free(serve_choice *c) {
    jamba_stream_decoder_free(c->dec);
    free(c->text);
    free(c->held);
    free(c->logprobs);
    memset(c, 0, sizeof *c);
}

/* Settle the held text that can no longer begin a stop string; true when it holds a whole one (the text then
 * ends before it and the held text is dropped). */
static bool release_held(serve_choice *c) {
    bool found;
    const size_t release = stop_text_scan(c->held ? c->held : "", c->n_held, c->stops, c->n_stops, &found);
    serve_choice_append(c, c->held, release);
    if (found) {
        c->n_held = 0;
        return true;
    }
    memmove(c->held, c->held + release, c->n_held - release);
    c->n_held -= release;
    return false;
}

static bool hold(serve_choice *c, const char *text, size_t len) {
    if (!grow_bytes(&c->held, &c->cap_held, c->n_held + len + 1))
        return false;
    if (len > 0)
        memcpy(c->held + c->n_held, text, len);
    c->n_held += len;
    return true;
}

/* The decoder's pending bytes and the held text become settled text (no stop string can follow). */
static void settle(serve_choice *c, const char *reason) {
    const char *rest = NULL;
    size_t len = 0;
    if (jamba_stream_decoder_flush(c->dec, &rest, &len, NULL) == JAMBA_OK && hold(c, rest, len) && release_held(c)) {
        c->finish = "stop";
        return;
    }
    serve_choice_append(c, c->held, c->n_held);
    c->n_held = 0;
    c->finish = reason;
}

static bool record(serve_choice *c, const serve_event *ev) {
    if (c->n_logprobs == c->cap_logprobs) {
        int64_t cap = c->cap_logprobs ? 2 * c->cap_logprobs : 64;
        serve_logprob *p = realloc(c->logprobs, (size_t)cap * sizeof *p);
        if (p == NULL)
            return false;
        c->logprobs = p, c->cap_logprobs = cap;
    }
    serve_logprob *r = &c->logprobs[c->n_logprobs++];
    r->token = ev->token;
    r->logprob = ev->logprob;
    r->n_top = ev->n_top;
    memcpy(r->top_tokens, ev->top_tokens, (size_t)ev->n_top * sizeof r->top_tokens[0]);
    memcpy(r->top_logprobs, ev->top_logprobs, (size_t)ev->n_top * sizeof r->top_logprobs[0]);
    r->text_offset = c->len + c->n_held;
    return true;
}

bool serve_choice_feed(serve_choice *c, const serve_event *ev) {
    if (c->finish)
        return false;
    c->prompt_tokens = ev->n_prompt;
    c->cached_tokens = ev->n_cached;
    c->completion_tokens = ev->n_generated;
    if (ev->finish == JAMBA_FINISH_STOP) { /* its token is the stop token: no text */
        settle(c, "stop");
        return false;
    }
    if (ev->token >= 0) {
        const char *piece = NULL;
        size_t len = 0;
        if ((c->record_logprobs && !record(c, ev)) ||
            jamba_stream_decoder_push(c->dec, ev->token, &piece, &len, NULL) != JAMBA_OK || !hold(c, piece, len)) {
            settle(c, "error");
            return false;
        }
        if (release_held(c)) {
            c->finish = c->out_of_memory ? "error" : "stop";
            return true;
        }
    }
    switch (ev->finish) {
    case JAMBA_FINISH_NONE: break;
    case JAMBA_FINISH_LENGTH:
    case JAMBA_FINISH_CONTEXT: settle(c, "length"); break;
    case JAMBA_FINISH_CANCELLED: settle(c, "abort"); break;
    default: settle(c, "error"); break;
    }
    if (c->out_of_memory)
        c->finish = "error";
    return false;
}

void serve_choice_close(serve_choice *c, const char *reason) {
    if (c->finish == NULL)
        settle(c, reason);
}
