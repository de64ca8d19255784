/*
 * chat.c — the Jamba-1.5+ chat format (docs/jamba-architecture.md §11), rendered token by token: the markers
 * are inserted as ids and only message text goes through the tokenizer, as plain text.
 */
#include "base/abi.h"
#include "base/alloc.h"
#include "base/error.h"
#include "tokenizer/tokenizer.h"

#include <stdint.h>
#include <string.h>

enum { CHAT_BOM, CHAT_EOM, CHAT_SYSTEM, CHAT_USER, CHAT_ASSISTANT, CHAT_TOOL, CHAT_MARKERS };
static const char *const marker_text[CHAT_MARKERS] = {"<|bom|>", "<|eom|>", "<|system|>", "<|user|>",
                                                      "<|assistant|>", "<|tool|>"};

static bool markers(const jamba_tokenizer *t, int32_t ids[CHAT_MARKERS]) {
    bool all = true;
    for (int i = 0; i < CHAT_MARKERS; i++) {
        ids[i] = jamba_tokenizer_find(t, marker_text[i]);
        all &= ids[i] >= 0 || i == CHAT_TOOL;
    }
    return all;
}

bool jamba_chat_supported(const jamba_tokenizer *t) {
    int32_t ids[CHAT_MARKERS];
    return t != NULL && markers(t, ids);
}

typedef struct out_ids {
    int32_t *v;
    int64_t n, cap;
} out_ids;

static bool push(out_ids *o, int32_t id) {
    if (!jb_grow((void **)&o->v, &o->cap, o->n + 1, sizeof *o->v))
        return false;
    o->v[o->n++] = id;
    return true;
}

/* " " + text, tokenized as plain text, appended. */
static jamba_status push_text(const jamba_tokenizer *t, out_ids *o, const char *text, jamba_error *err) {
    size_t len = strlen(text);
    char *spaced = jb_malloc(len + 2);
    if (spaced == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "chat: out of memory");
    spaced[0] = ' ';
    memcpy(spaced + 1, text, len + 1);
    int64_t cap = jamba_tokenizer_max_ids(t, len + 1), n = 0;
    jamba_status st = jb_grow((void **)&o->v, &o->cap, o->n + cap, sizeof *o->v)
                          ? jamba_tokenize(t, spaced, len + 1, 0, o->v + o->n, cap, &n, err)
                          : jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "chat: out of memory");
    o->n += n;
    jb_free(spaced);
    return st;
}

static int role_marker(const char *role) {
    if (role == NULL)
        return -1;
    if (strcmp(role, "system") == 0)
        return CHAT_SYSTEM;
    if (strcmp(role, "user") == 0)
        return CHAT_USER;
    if (strcmp(role, "assistant") == 0)
        return CHAT_ASSISTANT;
    if (strcmp(role, "tool") == 0)
        return CHAT_TOOL;
    return -1;
}

static jamba_status render(const jamba_tokenizer *t, const jamba_chat_message *m, int64_t n, int flags, out_ids *o,
                           jamba_error *err) {
    int32_t id[CHAT_MARKERS];
    if (!markers(t, id))
        return jb_fail(err, JAMBA_ERR_UNSUPPORTED, "%s: the tokenizer has no Jamba chat tokens (<|bom|>, <|eom|>, "
                       "<|system|>, <|user|>, <|assistant|>)", t->source ? t->source : "tokenizer");
    bool emitted = flags & JAMBA_CHAT_CONTINUE, ok = true;
    int64_t first = 0;
    if (!(flags & JAMBA_CHAT_CONTINUE)) {
        if (t->bos_id >= 0)
            ok = push(o, t->bos_id);
        /* the system turn is always there; a leading system message fills it */
        const char *system = n > 0 && role_marker(m[0].role) == CHAT_SYSTEM ? m[0].content : "";
        first = n > 0 && role_marker(m[0].role) == CHAT_SYSTEM ? 1 : 0;
        ok = ok && push(o, id[CHAT_BOM]) && push(o, id[CHAT_SYSTEM]);
        if (!ok)
            return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "chat: out of memory");
        JB_TRY(push_text(t, o, system ? system : "", err));
        emitted = true;
    }
    for (int64_t i = first; i < n; i++) {
        int role = role_marker(m[i].role);
        if (role < 0 || id[role] < 0)
            return jb_fail(err, JAMBA_ERR_UNSUPPORTED, "chat: message %lld has role \"%.20s\"; expected system, user, "
                           "assistant or tool", (long long)i, m[i].role ? m[i].role : "(null)");
        if ((emitted && !push(o, id[CHAT_EOM])) || !push(o, id[CHAT_BOM]) || !push(o, id[role]))
            return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "chat: out of memory");
        JB_TRY(push_text(t, o, m[i].content ? m[i].content : "", err));
        emitted = true;
    }
    if (flags & JAMBA_CHAT_GENERATION_PROMPT)
        ok = (!emitted || push(o, id[CHAT_EOM])) && push(o, id[CHAT_BOM]) && push(o, id[CHAT_ASSISTANT]);
    return ok ? JAMBA_OK : jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "chat: out of memory");
}

/* The caller's messages (message_size bytes apart) in this library's layout: m itself when the sizes
 * agree, else a copy in *copy (freed by the caller). */
static jamba_status messages_in(const jamba_chat_message *m, int64_t n, size_t message_size,
                                const jamba_chat_message **out, jamba_chat_message **copy, jamba_error *err) {
    *copy = NULL;
    *out = m;
    if (message_size == sizeof *m || n == 0)
        return message_size >= JB_MIN_CHAT_MESSAGE ? JAMBA_OK
                                                   : jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT,
                                                             "jamba_chat_tokenize: messages of %zu bytes", message_size);
    if ((uint64_t)n > SIZE_MAX / sizeof **copy || (*copy = jb_calloc((size_t)n, sizeof **copy)) == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "jamba_chat_tokenize: out of memory for %lld messages",
                       (long long)n);
    for (int64_t i = 0; i < n; i++)
        JB_TRY(jb_struct_in(&(*copy)[i], sizeof **copy, (const uint8_t *)m + (size_t)i * message_size, message_size,
                            JB_MIN_CHAT_MESSAGE, "jamba_chat_tokenize: message", err));
    *out = *copy;
    return JAMBA_OK;
}

jamba_status jamba_chat_tokenize_sized(const jamba_tokenizer *t, const jamba_chat_message *given, int64_t n,
                                       size_t message_size, int flags, int32_t *ids, int64_t capacity, int64_t *n_ids,
                                       jamba_error *err) {
    if (t == NULL || n_ids == NULL || n < 0 || (given == NULL && n > 0) || capacity < 0 ||
        (ids == NULL && capacity > 0))
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_chat_tokenize: invalid argument");
    const jamba_chat_message *m;
    jamba_chat_message *copy;
    jamba_status st = messages_in(given, n, message_size, &m, &copy, err);
    if (st != JAMBA_OK) {
        jb_free(copy);
        return st;
    }
    out_ids o = {0};
    st = render(t, m, n, flags, &o, err);
    *n_ids = o.n;
    if (st == JAMBA_OK && o.n > capacity)
        st = jb_fail(err, JAMBA_ERR_BUFFER_TOO_SMALL, "jamba_chat_tokenize: %lld ids do not fit in %lld",
                     (long long)o.n, (long long)capacity);
    else if (st == JAMBA_OK && o.n > 0)
        memcpy(ids, o.v, (size_t)o.n * sizeof *ids);
    jb_free(o.v);
    jb_free(copy);
    return st;
}
