/*
 * chat_format.c — a conversation as prompt tokens: the Jamba chat format, or a plain transcript for base
 * models (chat_format.h).
 */
#include "tools/jamba/chat_format.h"

#include "base/error.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

chat_style chat_style_of(const jamba_tokenizer *tok) {
    return jamba_chat_supported(tok) ? CHAT_STYLE_JAMBA : CHAT_STYLE_TRANSCRIPT;
}

const char *chat_style_name(chat_style style) {
    return style == CHAT_STYLE_JAMBA ? "jamba chat format" : "plain transcript (the tokenizer has no chat tokens)";
}

static const char *const transcript_stops[] = {"\n\n", "\nUser:"};

const char *const *chat_stop_strings(chat_style style, int *n) {
    *n = style == CHAT_STYLE_TRANSCRIPT ? (int)(sizeof transcript_stops / sizeof transcript_stops[0]) : 0;
    return transcript_stops;
}

jamba_token chat_end_token(const jamba_tokenizer *tok) {
    return chat_style_of(tok) == CHAT_STYLE_JAMBA ? jamba_tokenizer_find(tok, "<|eom|>") : -1;
}

/* A growing NUL-terminated text. */
typedef struct text_buf {
    char *p;
    size_t n, cap;
} text_buf;

static bool text_add(text_buf *t, const char *s, size_t n) {
    if (n > SIZE_MAX / 2 - t->n - 1)
        return false;
    if (t->n + n + 1 > t->cap) {
        size_t cap = 2 * (t->n + n + 1);
        char *p = realloc(t->p, cap);
        if (p == NULL)
            return false;
        t->p = p, t->cap = cap;
    }
    memcpy(t->p + t->n, s, n);
    t->n += n;
    t->p[t->n] = '\0';
    return true;
}

static const char *transcript_label(const char *role) {
    if (strcmp(role, "user") == 0)
        return "User:\n";
    if (strcmp(role, "assistant") == 0)
        return "Assistant:\n";
    if (strcmp(role, "tool") == 0)
        return "Tool:\n";
    return NULL;
}

/* The transcript text of the messages (chat_format.h); JAMBA_ERR_UNSUPPORTED for an unknown role. */
static jamba_status transcript_text(const jamba_chat_message *m, int64_t n, int flags, text_buf *t, jamba_error *err) {
    bool ok = text_add(t, "", 0);
    for (int64_t i = 0; ok && i < n; i++) {
        const char *content = m[i].content ? m[i].content : "";
        if (strcmp(m[i].role, "system") == 0) {
            if (i != 0 || (flags & JAMBA_CHAT_CONTINUE))
                return jb_fail(err, JAMBA_ERR_UNSUPPORTED, "chat: a system message must come first");
            if (content[0] != '\0')
                ok = text_add(t, content, strlen(content)) && text_add(t, "\n\n", 2);
            continue;
        }
        const char *label = transcript_label(m[i].role);
        if (label == NULL)
            return jb_fail(err, JAMBA_ERR_UNSUPPORTED, "chat: unknown role '%.64s' (system, user, assistant or tool)",
                           m[i].role);
        ok = text_add(t, label, strlen(label)) && text_add(t, content, strlen(content)) && text_add(t, "\n\n", 2);
    }
    if (ok && (flags & JAMBA_CHAT_GENERATION_PROMPT))
        ok = text_add(t, "Assistant:\n", strlen("Assistant:\n"));
    return ok ? JAMBA_OK : jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "chat: out of memory for the transcript");
}

/* Tokenize text (no special tokens added) after an optional BOS into a new array. */
static jamba_status tokenize_text(const jamba_tokenizer *tok, const text_buf *t, bool bos, jamba_token **ids,
                                  int64_t *n_ids, jamba_error *err) {
    const jamba_token bos_id = bos ? jamba_tokenizer_bos(tok) : -1;
    const int64_t head = bos_id >= 0 ? 1 : 0, cap = jamba_tokenizer_max_ids(tok, t->n) + head;
    jamba_token *v = malloc((size_t)cap * sizeof *v);
    if (v == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "chat: out of memory for %lld token ids", (long long)cap);
    v[0] = bos_id;
    int64_t n = 0;
    jamba_status st = jamba_tokenize(tok, t->p, t->n, 0, v + head, cap - head, &n, err);
    if (st != JAMBA_OK) {
        free(v);
        return st;
    }
    *ids = v;
    *n_ids = n + head;
    return JAMBA_OK;
}

/* The Jamba format through the library, into a new array (grown when the first guess is short). */
static jamba_status jamba_format(const jamba_tokenizer *tok, const jamba_chat_message *m, int64_t n, int flags,
                                 jamba_token **ids, int64_t *n_ids, jamba_error *err) {
    size_t text = 0;
    for (int64_t i = 0; i < n; i++)
        text += m[i].content ? strlen(m[i].content) + 1 : 1;
    int64_t cap = jamba_tokenizer_max_ids(tok, text) + 8 * n + 8;
    for (int attempt = 0; attempt < 2; attempt++) {
        jamba_token *v = malloc((size_t)cap * sizeof *v);
        if (v == NULL)
            return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "chat: out of memory for %lld token ids", (long long)cap);
        int64_t got = 0;
        jamba_status st = jamba_chat_tokenize(tok, m, n, flags, v, cap, &got, err);
        if (st == JAMBA_OK) {
            *ids = v;
            *n_ids = got;
            return JAMBA_OK;
        }
        free(v);
        if (st != JAMBA_ERR_BUFFER_TOO_SMALL)
            return st;
        cap = got;
    }
    return jb_fail(err, JAMBA_ERR_BUFFER_TOO_SMALL, "chat: the rendering's length changed between two calls");
}

static jamba_status render(const jamba_tokenizer *tok, const jamba_chat_message *m, int64_t n, int flags,
                           jamba_token **ids, int64_t *n_ids, jamba_error *err) {
    if (chat_style_of(tok) == CHAT_STYLE_JAMBA)
        return jamba_format(tok, m, n, flags, ids, n_ids, err);
    text_buf t = {0};
    jamba_status st = transcript_text(m, n, flags, &t, err);
    if (st == JAMBA_OK)
        st = tokenize_text(tok, &t, !(flags & JAMBA_CHAT_CONTINUE), ids, n_ids, err);
    free(t.p);
    return st;
}

jamba_status chat_render(const jamba_tokenizer *tok, const jamba_chat_message *messages, int64_t n_messages, int flags,
                         jamba_token **ids, int64_t *n_ids, int64_t *system_end, jamba_error *err) {
    jamba_status st = render(tok, messages, n_messages, flags, ids, n_ids, err);
    if (system_end == NULL || st != JAMBA_OK)
        return st;
    *system_end = 0;
    if ((flags & JAMBA_CHAT_CONTINUE) || n_messages == 0 || strcmp(messages[0].role, "system") != 0 ||
        messages[0].content == NULL || messages[0].content[0] == '\0')
        return JAMBA_OK;
    /* the system message rendered alone; tokens can merge across its end, so the shared prefix is what counts */
    jamba_token *alone = NULL;
    int64_t n_alone = 0;
    if ((st = render(tok, messages, 1, 0, &alone, &n_alone, err)) != JAMBA_OK) {
        free(*ids);
        *ids = NULL;
        return st;
    }
    int64_t k = 0;
    while (k < n_alone && k < *n_ids && alone[k] == (*ids)[k])
        k++;
    *system_end = k;
    free(alone);
    return JAMBA_OK;
}
