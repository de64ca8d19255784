/*
 * seq_state.c — sequence operations: length, reset, fork, save to and restore from a file.
 *
 * State file (little-endian, version 2):
 *   "JAMBASEQ"            8-byte magic
 *   u32 version = 2, u32 header_bytes = 64
 *   u64 fingerprint       the model's identity: XXH3-64 of the config values that shape the computation and
 *                         of every bound tensor's name, dtype, shape and all of its bytes (model_fingerprint)
 *   u64 n_tokens          tokens held
 *   u64 payload_bytes
 *   u64 reserved[3] = 0   must be zero: a reader refuses non-zero ones (a newer format, or corruption)
 *   payload: for each Mamba layer the conv window [D_i, K-1] and SSM state [D_i, N] (f32), then for each
 *            attention layer K [n_tokens, kv] and V [n_tokens, kv] (f32)
 *   u64 checksum          FNV-1a of the payload
 * Version 1 fingerprinted only the first and last 64 bytes of each tensor; its files are refused.
 */
#include "runtime/context.h"

#include "base/alloc.h"
#include "base/atomic_file.h"
#include "base/checked.h"
#include "base/error.h"
#include "base/file.h"
#include "ckpt/config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
/* xxHash compiled in (header-only use): libjamba needs no libxxhash at run time, and neither do programs
 * linking the static library */
#define XXH_INLINE_ALL
#include <xxhash.h>

#define STATE_MAGIC "JAMBASEQ"
#define STATE_VERSION 2u
#define STATE_HEADER_BYTES 64u
#define STATE_RESERVED_AT 40u /* reserved[3]: header bytes 40..63 */

static jamba_status check_seq(const jamba_context *ctx, int32_t seq, const char *what, jamba_error *err) {
    if (ctx == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "%s: ctx is NULL", what);
    if (seq < 0 || seq >= ctx->params.n_seq_max)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "%s: sequence %d outside [0, %d)", what, seq,
                       ctx->params.n_seq_max);
    return JAMBA_OK;
}

int64_t jamba_seq_length(const jamba_context *ctx, int32_t seq) {
    if (ctx == NULL || seq < 0 || seq >= ctx->params.n_seq_max)
        return -1;
    return ctx->n_past[seq];
}


jamba_status jamba_seq_reset(jamba_context *ctx, int32_t seq, jamba_error *err) {
    JB_TRY(check_seq(ctx, seq, "jamba_seq_reset", err));
    JB_TRY(ctx->be->seq_reset(ctx->state, seq, err));
    ctx->n_past[seq] = 0; /* KV rows past n_past are never read */
    ctx->history_known[seq] = true;
    return JAMBA_OK;
}

jamba_status jamba_seq_fork(jamba_context *ctx, int32_t src, int32_t dst, jamba_error *err) {
    JB_TRY(check_seq(ctx, src, "jamba_seq_fork", err));
    JB_TRY(check_seq(ctx, dst, "jamba_seq_fork", err));
    if (src == dst)
        return JAMBA_OK;
    JB_TRY(ctx->be->seq_copy(ctx->state, src, dst, ctx->n_past[src], err));
    ctx->n_past[dst] = ctx->n_past[src];
    memcpy(ctx->history + (int64_t)dst * ctx->params.n_ctx, ctx->history + (int64_t)src * ctx->params.n_ctx,
           (size_t)ctx->n_past[src] * sizeof *ctx->history);
    ctx->history_known[dst] = ctx->history_known[src];
    return JAMBA_OK;
}

/* ---- the file format -------------------------------------------------------------------------- */

static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}
#define FNV_SEED 0xcbf29ce484222325ull

/* The identity of the model: every config value that shapes the state or the computation, and for every
 * bound tensor its name, dtype, shape and all of its bytes, so a state never restores into a model whose
 * weights differ anywhere (another size, fine-tune, dtype, or one changed byte). Folder paths are not
 * included, so a state moves with a copied model. Reading every weight byte costs one pass over the model
 * (XXH3 runs at memory speed; the first pass over a cold model reads it from disk), so it is made once per
 * loaded model and cached (cached_fingerprint). */
static void hash_tensor(XXH3_state_t *h, const jb_checkpoint *ckpt, const jb_ckpt_entry *e) {
    const jb_st_tensor *t = e->tensor;
    XXH3_64bits_update(h, e->name, strlen(e->name) + 1);
    const int64_t meta[2] = {t->dtype, t->rank};
    XXH3_64bits_update(h, meta, sizeof meta);
    XXH3_64bits_update(h, t->shape, (size_t)t->rank * sizeof t->shape[0]);
    XXH3_64bits_update(h, jb_st_tensor_data(&ckpt->shards[e->shard], t), (size_t)t->n_bytes);
}

static uint64_t model_fingerprint(const jamba_model *m) {
    const jamba_config *c = &m->config;
    const int64_t values[] = {c->num_hidden_layers, c->hidden_size, c->intermediate_size, c->vocab_size,
                              c->num_attention_heads, c->num_key_value_heads, c->mamba_d_inner, c->mamba_d_state,
                              c->mamba_d_conv, c->mamba_dt_rank, c->num_experts, c->num_experts_per_tok,
                              c->attn_layer_period, c->attn_layer_offset, c->expert_layer_period,
                              c->expert_layer_offset, c->mamba_conv_bias, c->mamba_proj_bias,
                              c->mamba_inner_layernorms, c->tie_word_embeddings, m->requantized,
                              m->device_synthetic, (int64_t)m->synthetic_seed};
    XXH3_state_t h; /* on the stack (its layout is known with XXH_INLINE_ALL): nothing to allocate or fail */
    XXH3_INITSTATE(&h);
    XXH3_64bits_reset(&h);
    XXH3_64bits_update(&h, values, sizeof values);
    XXH3_64bits_update(&h, &c->rms_norm_eps, sizeof c->rms_norm_eps);
    for (int64_t i = 0; m->ckpt.entries != NULL && i < m->weights.n_order; i++)
        hash_tensor(&h, &m->ckpt, &m->ckpt.entries[m->weights.order[i]]);
    uint64_t v = XXH3_64bits_digest(&h);
    return v != 0 ? v : 1; /* 0 marks "not computed yet" in the model */
}

/* The fingerprint, computed on first use and kept in the model; concurrent first uses compute it once. */
static uint64_t cached_fingerprint(const jamba_model *cm) {
    jamba_model *m = (jamba_model *)cm; /* the cache is one of the model's lock-guarded mutable parts */
    pthread_mutex_lock(&m->resource_lock);
    if (m->state_fingerprint == 0)
        m->state_fingerprint = model_fingerprint(m);
    uint64_t v = m->state_fingerprint;
    pthread_mutex_unlock(&m->resource_lock);
    return v;
}

static uint64_t payload_bytes(const jamba_context *ctx, int64_t n_tokens) {
    const jamba_config *c = &ctx->model->config;
    uint64_t floats = (uint64_t)(c->n_mamba_layers * (jb_conv_floats(c) + jb_ssm_floats(c))) +
                      (uint64_t)c->n_attention_layers * 2 * (uint64_t)n_tokens * (uint64_t)jb_kv_width(c);
    return floats * sizeof(float);
}

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_u32(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}
static uint64_t get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* The payload pieces of a sequence in file order. */
typedef struct piece {
    jb_state_kind kind;
    int64_t layer;    /* among the Mamba or the attention layers */
    int64_t n;        /* floats */
} piece;

static int64_t payload_pieces(const jamba_context *ctx, int64_t n_tokens, piece *out) {
    const jamba_config *c = &ctx->model->config;
    int64_t n = 0;
    for (int64_t m = 0; m < c->n_mamba_layers; m++) {
        out[n++] = (piece){JB_STATE_CONV, m, jb_conv_floats(c)};
        out[n++] = (piece){JB_STATE_SSM, m, jb_ssm_floats(c)};
    }
    for (int64_t a = 0; a < c->n_attention_layers; a++) {
        out[n++] = (piece){JB_STATE_K, a, n_tokens * jb_kv_width(c)};
        out[n++] = (piece){JB_STATE_V, a, n_tokens * jb_kv_width(c)};
    }
    return n;
}

static piece *alloc_pieces(const jamba_context *ctx) {
    const jamba_config *c = &ctx->model->config;
    return jb_calloc((size_t)(2 * c->num_hidden_layers + 2), sizeof(piece));
}

/* Floats [off, off + n) of a piece to dst, or from src into it, through the backend. */
static jamba_status read_piece(const jamba_context *ctx, int32_t seq, const piece *p, int64_t off, int64_t n,
                               float *dst, jamba_error *err) {
    return ctx->be->state_read(ctx->state, seq, p->kind, p->layer, off, n, dst, err);
}

static jamba_status write_piece(jamba_context *ctx, int32_t seq, const piece *p, const float *src, jamba_error *err) {
    return ctx->be->state_write(ctx->state, seq, p->kind, p->layer, 0, p->n, src, err);
}

#define BOUNCE_FLOATS ((int64_t)1 << 20)

typedef struct state_content {
    uint8_t header[STATE_HEADER_BYTES];
    const jamba_context *ctx;
    int32_t seq;
    const piece *pieces;
    int64_t n_pieces;
    float *bounce;        /* [BOUNCE_FLOATS] */
    jamba_status status;  /* a device read failure, reported through err */
    jamba_error *err;
} state_content;

/* Bytes of a state go out through one of these: true when all n were written. */
typedef bool (*emit_fn)(void *dst, const void *p, size_t n);

/* The header, the payload read piece by piece from the backend, then the checksum. */
static bool emit_state(emit_fn emit, void *dst, state_content *c) {
    bool ok = emit(dst, c->header, sizeof c->header);
    uint64_t sum = FNV_SEED;
    for (int64_t i = 0; ok && i < c->n_pieces; i++)
        for (int64_t off = 0; ok && off < c->pieces[i].n; off += BOUNCE_FLOATS) {
            int64_t n = c->pieces[i].n - off < BOUNCE_FLOATS ? c->pieces[i].n - off : BOUNCE_FLOATS;
            c->status = read_piece(c->ctx, c->seq, &c->pieces[i], off, n, c->bounce, c->err);
            ok = c->status == JAMBA_OK && emit(dst, c->bounce, (size_t)n * sizeof(float));
            if (ok)
                sum = fnv1a(sum, c->bounce, (size_t)n * sizeof(float));
        }
    uint8_t tail[8];
    put_u64(tail, sum);
    return ok && emit(dst, tail, 8);
}

static bool emit_to_file(void *dst, const void *p, size_t n) { return fwrite(p, 1, n, dst) == n; }

static bool write_state(FILE *f, void *arg) { return emit_state(emit_to_file, f, arg); }

/* Where a state goes: a file written atomically, or caller memory. */
typedef jamba_status (*state_sink)(void *target, const char *label, state_content *c, jamba_error *err);

static jamba_status to_file(void *target, const char *label, state_content *c, jamba_error *err) {
    (void)label;
    return jb_write_file_atomic(target, write_state, c, err);
}

typedef struct memory_target {
    uint8_t *buf;
    size_t cap, used;
} memory_target;

static bool emit_to_memory(void *dst, const void *p, size_t n) {
    memory_target *m = dst;
    if (n > m->cap - m->used)
        return false;
    memcpy(m->buf + m->used, p, n);
    m->used += n;
    return true;
}

static jamba_status to_memory(void *target, const char *label, state_content *c, jamba_error *err) {
    if (!emit_state(emit_to_memory, target, c))
        return jb_fail(err, JAMBA_ERR_BUFFER_TOO_SMALL, "%s: the state does not fit the buffer", label);
    return JAMBA_OK;
}

/* Write the state of `seq` (header, payload, checksum) through `sink`. */
static jamba_status save_with(const jamba_context *ctx, int32_t seq, const char *label, state_sink sink,
                              void *target, jamba_error *err) {
    const int64_t n_tokens = ctx->n_past[seq];
    piece *pieces = alloc_pieces(ctx);
    float *bounce = jb_malloc((size_t)BOUNCE_FLOATS * sizeof(float));
    if (pieces == NULL || bounce == NULL) {
        jb_free(pieces);
        jb_free(bounce);
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", label);
    }
    jamba_error read_err = {0};
    state_content c = {.ctx = ctx, .seq = seq, .pieces = pieces, .n_pieces = payload_pieces(ctx, n_tokens, pieces),
                       .bounce = bounce, .status = JAMBA_OK, .err = &read_err};
    memcpy(c.header, STATE_MAGIC, 8); /* the reserved bytes stay zero */
    put_u32(c.header + 8, STATE_VERSION);
    put_u32(c.header + 12, STATE_HEADER_BYTES);
    put_u64(c.header + 16, cached_fingerprint(ctx->model));
    put_u64(c.header + 24, (uint64_t)n_tokens);
    put_u64(c.header + 32, payload_bytes(ctx, n_tokens));
    jamba_status st = sink(target, label, &c, err);
    if (c.status != JAMBA_OK) { /* report the device failure, not the write failure it caused */
        st = c.status;
        if (err)
            *err = read_err;
    }
    jb_free(pieces);
    jb_free(bounce);
    return st;
}

jamba_status jamba_seq_save(const jamba_context *ctx, int32_t seq, const char *path, jamba_error *err) {
    JB_TRY(check_seq(ctx, seq, "jamba_seq_save", err));
    if (path == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_seq_save: path is NULL");
    return save_with(ctx, seq, path, to_file, (void *)path, err);
}

jamba_status jamba_seq_state_size(const jamba_context *ctx, int32_t seq, size_t *bytes, jamba_error *err) {
    JB_TRY(check_seq(ctx, seq, "jamba_seq_state_size", err));
    if (bytes == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_seq_state_size: bytes is NULL");
    const uint64_t total = payload_bytes(ctx, ctx->n_past[seq]) + STATE_HEADER_BYTES + 8;
    if (total > SIZE_MAX)
        return jb_fail(err, JAMBA_ERR_OVERFLOW, "jamba_seq_state_size: %llu bytes do not fit in memory",
                       (unsigned long long)total);
    *bytes = (size_t)total;
    return JAMBA_OK;
}

jamba_status jamba_seq_state_get(const jamba_context *ctx, int32_t seq, void *buf, size_t capacity, size_t *len,
                                 jamba_error *err) {
    size_t need = 0;
    JB_TRY(jamba_seq_state_size(ctx, seq, &need, err));
    if (len == NULL || (buf == NULL && capacity > 0))
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_seq_state_get: NULL argument");
    *len = need;
    if (capacity < need)
        return jb_fail(err, JAMBA_ERR_BUFFER_TOO_SMALL, "jamba_seq_state_get: the state of sequence %d is %zu "
                       "bytes; the buffer holds %zu", seq, need, capacity);
    memory_target m = {.buf = buf, .cap = capacity, .used = 0};
    return save_with(ctx, seq, "jamba_seq_state_get", to_memory, &m, err);
}

/* Format and identity: magic, version, zero reserved bytes, then this model's fingerprint. */
static jamba_status check_format(const uint8_t *h, const char *path, const jamba_context *ctx, jamba_error *err) {
    if (memcmp(h, STATE_MAGIC, 8) != 0)
        return jb_fail(err, JAMBA_ERR_BAD_STATE_FILE, "%s: not a jamba sequence state (bad magic)", path);
    if (get_u32(h + 8) != STATE_VERSION || get_u32(h + 12) != STATE_HEADER_BYTES)
        return jb_fail(err, JAMBA_ERR_BAD_STATE_FILE, "%s: state format version %u is not supported (this build "
                       "reads version %u); save it again with this version", path, get_u32(h + 8), STATE_VERSION);
    for (uint32_t i = STATE_RESERVED_AT; i < STATE_HEADER_BYTES; i++)
        if (h[i] != 0)
            return jb_fail(err, JAMBA_ERR_BAD_STATE_FILE, "%s: reserved header byte %u is 0x%02x, not 0 (a newer "
                           "state format, or a corrupt file)", path, i, h[i]);
    if (get_u64(h + 16) != cached_fingerprint(ctx->model))
        return jb_fail(err, JAMBA_ERR_BAD_STATE_FILE, "%s: saved from a different model than %s", path,
                       ctx->model->path);
    return JAMBA_OK;
}

/* Read and check the header; on success *n_tokens and *payload are known and the file size matches. */
static jamba_status read_header(FILE *f, uint64_t size, const char *path, const jamba_context *ctx,
                                int64_t *n_tokens, uint64_t *payload, jamba_error *err) {
    uint8_t h[STATE_HEADER_BYTES];
    if (size < sizeof h + 8 || fread(h, 1, sizeof h, f) != sizeof h)
        return jb_fail(err, JAMBA_ERR_BAD_STATE_FILE, "%s: too short for a sequence state", path);
    JB_TRY(check_format(h, path, ctx, err));
    uint64_t tokens = get_u64(h + 24);
    if (tokens > (uint64_t)ctx->params.n_ctx)
        return jb_fail(err, JAMBA_ERR_CONTEXT_FULL, "%s: holds %llu tokens, more than this context's n_ctx %lld", path,
                       (unsigned long long)tokens, (long long)ctx->params.n_ctx);
    *n_tokens = (int64_t)tokens;
    *payload = payload_bytes(ctx, *n_tokens);
    uint64_t expect = 0;
    if (get_u64(h + 32) != *payload || !jb_add_u64(*payload, sizeof h + 8, &expect) || size != expect)
        return jb_fail(err, JAMBA_ERR_BAD_STATE_FILE, "%s: %llu bytes, expected %llu for %lld tokens (truncated or "
                       "corrupt)", path, (unsigned long long)size, (unsigned long long)expect, (long long)*n_tokens);
    return JAMBA_OK;
}

/* Check a whole state of `size` bytes read from f, then overwrite the sequence with it. */
static jamba_status restore_from(jamba_context *ctx, int32_t seq, FILE *f, uint64_t size, const char *path,
                                 jamba_error *err) {
    int64_t n_tokens = 0;
    uint64_t payload = 0;
    jamba_status st = read_header(f, size, path, ctx, &n_tokens, &payload, err);
    uint8_t *buf = NULL;
    piece *pieces = NULL;
    if (st == JAMBA_OK && (payload > SIZE_MAX || (buf = jb_malloc((size_t)payload + 8)) == NULL ||
                           (pieces = alloc_pieces(ctx)) == NULL))
        st = jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory for %llu bytes of state", path,
                     (unsigned long long)payload);
    if (st == JAMBA_OK && fread(buf, 1, (size_t)payload + 8, f) != (size_t)payload + 8)
        st = jb_fail(err, JAMBA_ERR_IO, "%s: read failed", path);
    if (st == JAMBA_OK && fnv1a(FNV_SEED, buf, (size_t)payload) != get_u64(buf + payload))
        st = jb_fail(err, JAMBA_ERR_BAD_STATE_FILE, "%s: checksum mismatch (corrupt file)", path);
    if (st == JAMBA_OK) { /* everything checked: now overwrite the sequence */
        int64_t n_pieces = payload_pieces(ctx, n_tokens, pieces);
        size_t off = 0;
        for (int64_t i = 0; i < n_pieces && st == JAMBA_OK; i++) {
            st = write_piece(ctx, seq, &pieces[i], (const float *)(buf + off), err);
            off += (size_t)pieces[i].n * sizeof(float);
        }
        if (st == JAMBA_OK) {
            ctx->n_past[seq] = n_tokens;
            ctx->history_known[seq] = false; /* a state carries no tokens */
        }
    }
    jb_free(pieces);
    jb_free(buf);
    return st;
}

jamba_status jamba_seq_restore(jamba_context *ctx, int32_t seq, const char *path, jamba_error *err) {
    JB_TRY(check_seq(ctx, seq, "jamba_seq_restore", err));
    if (path == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_seq_restore: path is NULL");
    FILE *f;
    JB_TRY(jb_fopen_regular(path, path, &f, err)); /* a FIFO would block a plain fopen */
    struct stat sb;
    jamba_status st = fstat(fileno(f), &sb) != 0
                          ? jb_fail(err, JAMBA_ERR_IO, "%s: cannot stat: %s", path, strerror(errno))
                          : restore_from(ctx, seq, f, (uint64_t)sb.st_size, path, err);
    fclose(f);
    return st;
}

jamba_status jamba_seq_state_set(jamba_context *ctx, int32_t seq, const void *buf, size_t len, jamba_error *err) {
    JB_TRY(check_seq(ctx, seq, "jamba_seq_state_set", err));
    if (buf == NULL || len == 0)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_seq_state_set: no state given");
    FILE *f = fmemopen((void *)buf, len, "rb"); /* read only: the buffer is not written */
    if (f == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "jamba_seq_state_set: cannot open the buffer as a stream");
    jamba_status st = restore_from(ctx, seq, f, len, "jamba_seq_state_set", err);
    fclose(f);
    return st;
}
