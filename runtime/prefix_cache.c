/*
 * prefix_cache.c — jamba_prefix_cache: complete sequence states (as jamba_seq_state_get writes them) keyed
 * by the exact tokens that made them, under a byte budget with least-recently-used eviction, and
 * jamba_seq_rollback, which restores from it and feeds the rest again.
 *
 * Entries are few (a budget of snapshots, each megabytes), so lookups scan them all: the longest entry of
 * the same model whose tokens are a prefix of the query wins, the most recently used among equals.
 */
#include "runtime/context.h"

#include "base/abi.h"
#include "base/alloc.h"
#include "base/error.h"

#include <pthread.h>
#include <string.h>

typedef struct cache_entry {
    const jamba_model *model;
    jamba_token *tokens;   /* [n_tokens] the key */
    int64_t n_tokens;
    uint8_t *state;        /* [state_len] a jamba_seq_state_get buffer */
    size_t state_len;
    uint64_t bytes;        /* what the entry counts against the budget: state, tokens and bookkeeping */
    uint64_t last_use;     /* the cache's clock when it was last stored or restored */
} cache_entry;

struct jamba_prefix_cache {
    pthread_mutex_t lock;
    cache_entry *entries;  /* [n] in no particular order */
    int64_t n, cap;
    uint64_t clock;
    jamba_prefix_cache_stats stats;
};

jamba_status jamba_prefix_cache_create(uint64_t max_bytes, jamba_prefix_cache **out, jamba_error *err) {
    if (out == NULL || max_bytes == 0)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_prefix_cache_create: %s",
                       out == NULL ? "out is NULL" : "max_bytes must be at least 1");
    *out = NULL;
    jamba_prefix_cache *c = jb_calloc(1, sizeof *c);
    if (c == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "jamba_prefix_cache_create: out of memory");
    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        jb_free(c);
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "jamba_prefix_cache_create: cannot create a mutex");
    }
    c->stats.max_bytes = max_bytes;
    *out = c;
    return JAMBA_OK;
}

static void entry_free(cache_entry *e) {
    jb_free(e->tokens);
    jb_free(e->state);
}

void jamba_prefix_cache_free(jamba_prefix_cache *c) {
    if (c == NULL)
        return;
    for (int64_t i = 0; i < c->n; i++)
        entry_free(&c->entries[i]);
    jb_free(c->entries);
    pthread_mutex_destroy(&c->lock);
    jb_free(c);
}

/* Remove entry i (under the lock). */
static void remove_entry(jamba_prefix_cache *c, int64_t i) {
    c->stats.bytes -= c->entries[i].bytes;
    entry_free(&c->entries[i]);
    c->entries[i] = c->entries[--c->n];
    c->stats.entries = c->n;
}

static int64_t find_exact(const jamba_prefix_cache *c, const jamba_model *m, const jamba_token *tokens, int64_t n) {
    for (int64_t i = 0; i < c->n; i++)
        if (c->entries[i].model == m && c->entries[i].n_tokens == n &&
            memcmp(c->entries[i].tokens, tokens, (size_t)n * sizeof *tokens) == 0)
            return i;
    return -1;
}

/* Evict least-recently-used entries until `need` more bytes fit the budget (under the lock). */
static void make_room(jamba_prefix_cache *c, uint64_t need) {
    while (c->n > 0 && c->stats.bytes + need > c->stats.max_bytes) {
        int64_t oldest = 0;
        for (int64_t i = 1; i < c->n; i++)
            if (c->entries[i].last_use < c->entries[oldest].last_use)
                oldest = i;
        remove_entry(c, oldest);
        c->stats.evictions++;
    }
}

/* Insert a filled entry (under the lock); it is freed when it cannot be kept. */
static jamba_status insert(jamba_prefix_cache *c, cache_entry *e, jamba_error *err) {
    int64_t same = find_exact(c, e->model, e->tokens, e->n_tokens);
    if (same >= 0) { /* the same tokens give the same state: refresh it */
        c->entries[same].last_use = ++c->clock;
        entry_free(e);
        return JAMBA_OK;
    }
    if (e->bytes > c->stats.max_bytes) { /* larger than the whole budget: not kept */
        entry_free(e);
        return JAMBA_OK;
    }
    make_room(c, e->bytes);
    if (c->n == c->cap) {
        int64_t cap = c->cap ? 2 * c->cap : 16;
        cache_entry *grown = jb_realloc(c->entries, (size_t)cap * sizeof *grown);
        if (grown == NULL) {
            entry_free(e);
            return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "prefix cache: out of memory for its entry table");
        }
        c->entries = grown;
        c->cap = cap;
    }
    e->last_use = ++c->clock;
    c->entries[c->n++] = *e;
    c->stats.bytes += e->bytes;
    c->stats.entries = c->n;
    c->stats.stores++;
    return JAMBA_OK;
}

jamba_status jamba_prefix_cache_store(jamba_prefix_cache *c, const jamba_context *ctx, int32_t seq, jamba_error *err) {
    if (c == NULL || ctx == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_prefix_cache_store: NULL argument");
    if (seq < 0 || seq >= ctx->params.n_seq_max)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_prefix_cache_store: sequence %d outside [0, %d)", seq,
                       ctx->params.n_seq_max);
    if (!ctx->history_known[seq])
        return jb_fail(err, JAMBA_ERR_UNSUPPORTED, "jamba_prefix_cache_store: sequence %d was set from a saved state "
                       "whose tokens are unknown", seq);
    const int64_t n = ctx->n_past[seq];
    if (n == 0)
        return JAMBA_OK;
    cache_entry e = {.model = ctx->model, .n_tokens = n};
    JB_TRY(jamba_seq_state_size(ctx, seq, &e.state_len, err));
    e.bytes = (uint64_t)e.state_len + (uint64_t)n * sizeof(jamba_token) + sizeof e;
    e.tokens = jb_malloc((size_t)n * sizeof *e.tokens);
    e.state = jb_malloc(e.state_len);
    if (e.tokens == NULL || e.state == NULL) {
        entry_free(&e);
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "jamba_prefix_cache_store: out of memory for a snapshot of %zu "
                       "bytes", e.state_len);
    }
    memcpy(e.tokens, ctx->history + (int64_t)seq * ctx->params.n_ctx, (size_t)n * sizeof *e.tokens);
    jamba_status st = jamba_seq_state_get(ctx, seq, e.state, e.state_len, &e.state_len, err);
    if (st != JAMBA_OK) {
        entry_free(&e);
        return st;
    }
    pthread_mutex_lock(&c->lock);
    st = insert(c, &e, err);
    pthread_mutex_unlock(&c->lock);
    return st;
}

/* The longest entry of model m whose tokens begin tokens[0 .. max_len), or -1 (under the lock). */
static int64_t find_longest(const jamba_prefix_cache *c, const jamba_model *m, const jamba_token *tokens,
                            int64_t max_len) {
    int64_t best = -1;
    for (int64_t i = 0; i < c->n; i++) {
        const cache_entry *e = &c->entries[i];
        if (e->model != m || e->n_tokens > max_len)
            continue;
        if (best >= 0 && (e->n_tokens < c->entries[best].n_tokens ||
                          (e->n_tokens == c->entries[best].n_tokens && e->last_use < c->entries[best].last_use)))
            continue;
        if (memcmp(e->tokens, tokens, (size_t)e->n_tokens * sizeof *tokens) == 0)
            best = i;
    }
    return best;
}

jamba_status jamba_prefix_cache_restore(jamba_prefix_cache *c, jamba_context *ctx, int32_t seq,
                                        const jamba_token *tokens, int64_t max_len, int64_t *n_restored,
                                        jamba_error *err) {
    if (c == NULL || ctx == NULL || n_restored == NULL || (tokens == NULL && max_len > 0) || max_len < 0)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_prefix_cache_restore: invalid argument");
    *n_restored = 0;
    JB_TRY(jamba_seq_reset(ctx, seq, err));
    pthread_mutex_lock(&c->lock); /* held while restoring, so the entry cannot be evicted meanwhile */
    c->stats.lookups++;
    const int64_t i = find_longest(c, ctx->model, tokens, max_len);
    jamba_status st = JAMBA_OK;
    if (i >= 0) {
        cache_entry *e = &c->entries[i];
        st = jamba_seq_state_set(ctx, seq, e->state, e->state_len, err);
        if (st == JAMBA_OK) {
            memcpy(ctx->history + (int64_t)seq * ctx->params.n_ctx, e->tokens, (size_t)e->n_tokens * sizeof *e->tokens);
            ctx->history_known[seq] = true;
            e->last_use = ++c->clock;
            c->stats.hits++;
            c->stats.tokens_restored += e->n_tokens;
            *n_restored = e->n_tokens;
        }
    }
    pthread_mutex_unlock(&c->lock);
    if (st != JAMBA_OK) { /* leave the sequence empty, as documented */
        jamba_error ignored;
        jamba_seq_reset(ctx, seq, &ignored);
    }
    return st;
}

jamba_status jamba_prefix_cache_stats_sized(const jamba_prefix_cache *c, jamba_prefix_cache_stats *out,
                                            size_t out_size, jamba_error *err) {
    if (c == NULL || out == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_prefix_cache_stats: NULL argument");
    jamba_prefix_cache *mc = (jamba_prefix_cache *)c; /* the lock is not part of the cache's value */
    pthread_mutex_lock(&mc->lock);
    const jamba_prefix_cache_stats s = c->stats;
    pthread_mutex_unlock(&mc->lock);
    return jb_struct_out(out, out_size, &s, sizeof s, JB_MIN_PREFIX_CACHE_STATS, "jamba_prefix_cache_stats: out", err);
}

/* ---- rollback and the token history ----------------------------------------------------------- */

jamba_status jamba_seq_tokens(const jamba_context *ctx, int32_t seq, jamba_token *tokens, int64_t capacity,
                              int64_t *n_tokens, jamba_error *err) {
    if (ctx == NULL || n_tokens == NULL || capacity < 0 || (tokens == NULL && capacity > 0))
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_seq_tokens: invalid argument");
    if (seq < 0 || seq >= ctx->params.n_seq_max)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_seq_tokens: sequence %d outside [0, %d)", seq,
                       ctx->params.n_seq_max);
    if (!ctx->history_known[seq])
        return jb_fail(err, JAMBA_ERR_UNSUPPORTED, "jamba_seq_tokens: sequence %d was set from a saved state whose "
                       "tokens are unknown", seq);
    *n_tokens = ctx->n_past[seq];
    if (*n_tokens > capacity)
        return jb_fail(err, JAMBA_ERR_BUFFER_TOO_SMALL, "jamba_seq_tokens: %lld tokens do not fit in %lld",
                       (long long)*n_tokens, (long long)capacity);
    if (*n_tokens > 0)
        memcpy(tokens, ctx->history + (int64_t)seq * ctx->params.n_ctx, (size_t)*n_tokens * sizeof *tokens);
    return JAMBA_OK;
}

jamba_status jamba_seq_rollback(jamba_context *ctx, int32_t seq, int64_t n_tokens, jamba_prefix_cache *cache,
                                jamba_error *err) {
    if (ctx == NULL || seq < 0 || seq >= ctx->params.n_seq_max)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_seq_rollback: no such sequence %d", seq);
    if (n_tokens < 0 || n_tokens > ctx->n_past[seq])
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_seq_rollback: sequence %d holds %lld tokens; cannot "
                       "roll back to %lld", seq, (long long)ctx->n_past[seq], (long long)n_tokens);
    if (!ctx->history_known[seq])
        return jb_fail(err, JAMBA_ERR_UNSUPPORTED, "jamba_seq_rollback: sequence %d was set from a saved state whose "
                       "tokens are unknown", seq);
    if (n_tokens == ctx->n_past[seq])
        return JAMBA_OK;
    jamba_token *keep = n_tokens ? jb_malloc((size_t)n_tokens * sizeof *keep) : NULL;
    if (n_tokens && keep == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "jamba_seq_rollback: out of memory for %lld tokens",
                       (long long)n_tokens);
    if (n_tokens)
        memcpy(keep, ctx->history + (int64_t)seq * ctx->params.n_ctx, (size_t)n_tokens * sizeof *keep);
    int64_t restored = 0;
    jamba_status st = cache ? jamba_prefix_cache_restore(cache, ctx, seq, keep, n_tokens, &restored, err)
                            : jamba_seq_reset(ctx, seq, err);
    if (st == JAMBA_OK && restored < n_tokens) {
        const jamba_seq_input in = {.seq = seq, .tokens = keep + restored, .n_tokens = n_tokens - restored,
                                    .logits = JAMBA_LOGITS_NONE};
        st = jamba_decode(ctx, &in, 1, err);
    }
    if (st != JAMBA_OK) {
        jamba_error ignored;
        jamba_seq_reset(ctx, seq, &ignored);
    }
    jb_free(keep);
    return st;
}
