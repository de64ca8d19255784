/*
 * serve_response.c — OpenAI response and chunk JSON for completions and chat completions (serve_response.h).
 */
#include "tools/jamba/serve_response.h"

#include "tools/jamba/generation.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- tokens and log-probabilities ------------------------------------------------------------- */

/* The text of one token alone (special tokens as written), into buf; its length. */
static size_t token_text(const jamba_tokenizer *tok, jamba_token id, char *buf, size_t cap) {
    size_t len = 0;
    if (jamba_detokenize(tok, &id, 1, true, buf, cap - 1, &len, NULL) != JAMBA_OK)
        len = 0; /* longer than any token: left out */
    buf[len] = '\0';
    return len;
}

/* OpenAI's "bytes" of a token: its raw byte for a byte-fallback piece "<0xHH>", else its text's bytes. */
static json_t *token_bytes(const jamba_tokenizer *tok, jamba_token id, const char *text, size_t len) {
    json_t *a = json_array();
    const char *piece = jamba_tokenizer_piece(tok, id);
    unsigned byte;
    char tail;
    if (piece && strlen(piece) == 6 && sscanf(piece, "<0x%2X%c", &byte, &tail) == 2 && tail == '>') {
        json_array_append_new(a, json_integer(byte));
        return a;
    }
    for (size_t i = 0; a && i < len; i++)
        json_array_append_new(a, json_integer((unsigned char)text[i]));
    return a;
}

/* A log-probability as JSON: OpenAI writes -9999.0 for -inf. */
static json_t *logprob_json(float lp) { return json_real(isfinite(lp) ? (double)lp : -9999.0); }

/* Completions: {"tokens", "token_logprobs", "top_logprobs", "text_offset"} of records [from, to). */
static json_t *completion_logprobs(const jamba_tokenizer *tok, const serve_choice *c, int64_t from, int64_t to) {
    json_t *tokens = json_array(), *lps = json_array(), *tops = json_array(), *offsets = json_array();
    char text[256];
    for (int64_t i = from; i < to; i++) {
        const serve_logprob *r = &c->logprobs[i];
        size_t len = token_text(tok, r->token, text, sizeof text);
        json_array_append_new(tokens, gen_json_text(text, len));
        json_array_append_new(lps, logprob_json(r->logprob));
        json_t *top = json_object();
        for (int32_t k = 0; k < r->n_top; k++) {
            len = token_text(tok, r->top_tokens[k], text, sizeof text);
            json_t *key = gen_json_text(text, len);
            if (key && json_string_value(key) && json_object_get(top, json_string_value(key)) == NULL)
                json_object_set_new(top, json_string_value(key), logprob_json(r->top_logprobs[k]));
            json_decref(key);
        }
        json_array_append_new(tops, top);
        json_array_append_new(offsets, json_integer((json_int_t)r->text_offset));
    }
    return json_pack("{s:o,s:o,s:o,s:o}", "tokens", tokens, "token_logprobs", lps, "top_logprobs", tops, "text_offset",
                     offsets);
}

static json_t *chat_token(const jamba_tokenizer *tok, jamba_token id, float lp) {
    char text[256];
    size_t len = token_text(tok, id, text, sizeof text);
    return json_pack("{s:o,s:o,s:o}", "token", gen_json_text(text, len), "logprob", logprob_json(lp), "bytes",
                     token_bytes(tok, id, text, len));
}

/* Chat: {"content": [{token, logprob, bytes, top_logprobs}], "refusal": null} of records [from, to). */
static json_t *chat_logprobs(const jamba_tokenizer *tok, const serve_choice *c, int64_t from, int64_t to) {
    json_t *content = json_array();
    for (int64_t i = from; i < to; i++) {
        const serve_logprob *r = &c->logprobs[i];
        json_t *entry = chat_token(tok, r->token, r->logprob), *tops = json_array();
        for (int32_t k = 0; k < r->n_top; k++)
            json_array_append_new(tops, chat_token(tok, r->top_tokens[k], r->top_logprobs[k]));
        json_object_set_new(entry, "top_logprobs", tops);
        json_array_append_new(content, entry);
    }
    return json_pack("{s:o,s:n}", "content", content, "refusal");
}

static json_t *logprobs_json(const serve_meta *m, const serve_choice *c, int64_t from, int64_t to) {
    if (!c->record_logprobs)
        return json_null();
    return m->endpoint == SERVE_CHAT ? chat_logprobs(m->tok, c, from, to) : completion_logprobs(m->tok, c, from, to);
}

/* ---- usage ------------------------------------------------------------------------------------ */

static json_t *usage_json(const serve_meta *m, const serve_choice *choices, int64_t n) {
    int64_t prompt = 0, cached = 0, completion = 0;
    for (int64_t i = 0; i < n; i++) {
        if (i % m->n_per_prompt == 0) { /* the n choices of a prompt read it once */
            prompt += choices[i].prompt_tokens;
            cached += choices[i].cached_tokens;
        }
        completion += choices[i].completion_tokens;
    }
    return json_pack("{s:I,s:I,s:I,s:{s:I}}", "prompt_tokens", (json_int_t)prompt, "completion_tokens",
                     (json_int_t)completion, "total_tokens", (json_int_t)(prompt + completion),
                     "prompt_tokens_details", "cached_tokens", (json_int_t)cached);
}

/* ---- responses and chunks --------------------------------------------------------------------- */

static char *dump(json_t *root) {
    char *s = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    return s;
}

static json_t *envelope(const serve_meta *m, const char *object, json_t *choices) {
    return json_pack("{s:s,s:s,s:I,s:s,s:o}", "id", m->id, "object", object, "created", (json_int_t)m->created,
                     "model", m->model, "choices", choices);
}

char *serve_response_body(const serve_meta *m, const serve_choice *choices, int64_t n_choices) {
    json_t *list = json_array();
    for (int64_t i = 0; i < n_choices; i++) {
        const serve_choice *c = &choices[i];
        json_t *text = gen_json_text(c->text, c->len), *choice;
        if (m->endpoint == SERVE_CHAT)
            choice = json_pack("{s:I,s:{s:s,s:o},s:o,s:s}", "index", (json_int_t)i, "message", "role", "assistant",
                               "content", text, "logprobs", logprobs_json(m, c, 0, c->n_logprobs), "finish_reason",
                               c->finish ? c->finish : "abort");
        else
            choice = json_pack("{s:I,s:o,s:o,s:s}", "index", (json_int_t)i, "text", text, "logprobs",
                               logprobs_json(m, c, 0, c->n_logprobs), "finish_reason", c->finish ? c->finish : "abort");
        json_array_append_new(list, choice);
    }
    json_t *root = envelope(m, m->endpoint == SERVE_CHAT ? "chat.completion" : "text_completion", list);
    if (root)
        json_object_set_new(root, "usage", usage_json(m, choices, n_choices));
    return dump(root);
}

char *serve_response_chunk(const serve_meta *m, serve_choice *c, int64_t index, bool *nothing) {
    const bool chat = m->endpoint == SERVE_CHAT;
    const size_t new_text = c->len - c->streamed_text;
    const bool new_logprobs = c->n_logprobs > c->streamed_logprobs, finish = c->finish && !c->finish_sent;
    *nothing = new_text == 0 && !new_logprobs && !finish && !(chat && !c->role_sent);
    if (*nothing)
        return NULL;
    json_t *text = gen_json_text(c->text + c->streamed_text, new_text), *choice;
    json_t *reason = finish ? json_string(c->finish) : json_null();
    json_t *logprobs = new_logprobs ? logprobs_json(m, c, c->streamed_logprobs, c->n_logprobs) : json_null();
    if (chat) {
        json_t *delta = json_object();
        if (!c->role_sent)
            json_object_set_new(delta, "role", json_string("assistant"));
        if (new_text > 0 || !c->role_sent)
            json_object_set(delta, "content", text);
        json_decref(text);
        choice = json_pack("{s:I,s:o,s:o,s:o}", "index", (json_int_t)index, "delta", delta, "logprobs", logprobs,
                           "finish_reason", reason);
    } else {
        choice = json_pack("{s:I,s:o,s:o,s:o}", "index", (json_int_t)index, "text", text, "logprobs", logprobs,
                           "finish_reason", reason);
    }
    char *s = dump(envelope(m, chat ? "chat.completion.chunk" : "text_completion", json_pack("[o]", choice)));
    if (s) {
        c->streamed_text = c->len;
        c->streamed_logprobs = c->n_logprobs;
        c->role_sent = true;
        c->finish_sent = c->finish != NULL;
    }
    return s;
}

char *serve_response_usage_chunk(const serve_meta *m, const serve_choice *choices, int64_t n_choices) {
    json_t *root = envelope(m, m->endpoint == SERVE_CHAT ? "chat.completion.chunk" : "text_completion", json_array());
    if (root)
        json_object_set_new(root, "usage", usage_json(m, choices, n_choices));
    return dump(root);
}
