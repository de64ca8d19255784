/*
 * tp_desc.c — node 0's descriptors for the other nodes of a context (tp_desc.h): encoding, and decoding
 * with every count and index checked before anything is used.
 */
#include "cuda/tp_desc.h"

#include "base/alloc.h"
#include "base/checked.h"
#include "base/error.h"

#include <string.h>

#define MAGIC 0x4453424au /* "JBSD" */
#define VERSION 1u
#define SEG_BYTES 32u     /* i64 seq, pos, n, row */

typedef struct header {
    uint32_t magic, version, kind, zero;
    int64_t total;
    int64_t arg[5];
} header;
_Static_assert(sizeof(header) == JB_TP_DESC_HEADER, "the header is 64 bytes");

static const char *const HELLO_NAMES[JB_TP_HELLO_FIELDS] = {
    "n_seq_max", "n_ctx", "n_batch", "n_logits_max", "segments per step", "gpu_dtype", "kv_dtype",
    "gpu_graphs", "n_gpus", "n_nodes", "vocab_size", "hidden_size", "num_hidden_layers", "num_experts"};

/* Bytes of a step of n_segs segments, n_rows tokens and n_logits logit rows; false on overflow. */
static bool step_bytes(uint64_t n_segs, uint64_t n_rows, uint64_t n_logits, uint64_t *out) {
    uint64_t b = JB_TP_DESC_HEADER;
    return jb_muladd_u64(&b, n_segs, SEG_BYTES) && jb_muladd_u64(&b, n_rows, 4) && jb_muladd_u64(&b, n_logits, 8) &&
           (*out = b, true);
}

jamba_status jb_tp_desc_capacity(const jb_tp_desc_limits *l, uint64_t *out, jamba_error *err) {
    uint64_t b = 0;
    if (l->max_segs < 1 || l->n_batch < 1 || l->n_logits_max < 0 ||
        !step_bytes((uint64_t)l->max_segs, (uint64_t)l->n_batch, (uint64_t)l->n_logits_max, &b))
        return jb_fail(err, JAMBA_ERR_OVERFLOW, "multi-node step descriptor: %lld segments, %lld rows, %lld logit "
                       "rows do not make a size", (long long)l->max_segs, (long long)l->n_batch,
                       (long long)l->n_logits_max);
    const uint64_t hello = JB_TP_DESC_HEADER + 8u * JB_TP_HELLO_FIELDS;
    b = b > hello ? b : hello;
    *out = b > JB_TP_DESC_HEAD ? b : JB_TP_DESC_HEAD;
    return JAMBA_OK;
}

jamba_status jb_tp_desc_alloc(const jb_tp_desc_limits *l, jb_tp_desc *d, jamba_error *err) {
    memset(d, 0, sizeof *d);
    d->segs = jb_calloc((size_t)l->max_segs, sizeof *d->segs);
    d->tokens = jb_calloc((size_t)l->n_batch, sizeof *d->tokens);
    d->logit_src = jb_calloc((size_t)(l->n_logits_max > 0 ? l->n_logits_max : 1), sizeof *d->logit_src);
    if (d->segs == NULL || d->tokens == NULL || d->logit_src == NULL) {
        jb_tp_desc_free(d);
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "multi-node step descriptor: out of memory");
    }
    return JAMBA_OK;
}

void jb_tp_desc_free(jb_tp_desc *d) {
    jb_free(d->segs);
    jb_free(d->tokens);
    jb_free(d->logit_src);
    memset(d, 0, sizeof *d);
}

static void put_header(void *buf, jb_tp_desc_kind kind, uint64_t total, const int64_t arg[5]) {
    header h = {MAGIC, VERSION, (uint32_t)kind, 0, (int64_t)total, {arg[0], arg[1], arg[2], arg[3], arg[4]}};
    memcpy(buf, &h, sizeof h);
}

jamba_status jb_tp_desc_encode_step(const jb_step_io *io, void *buf, uint64_t cap, uint64_t *len, jamba_error *err) {
    uint64_t total = 0;
    if (io->n_segs < 1 || io->n_rows < 1 || io->n_logits < 0 ||
        !step_bytes((uint64_t)io->n_segs, (uint64_t)io->n_rows, (uint64_t)io->n_logits, &total))
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "multi-node step descriptor: %lld segments, %lld rows, %lld "
                       "logit rows", (long long)io->n_segs, (long long)io->n_rows, (long long)io->n_logits);
    if (total > cap)
        return jb_fail(err, JAMBA_ERR_BUFFER_TOO_SMALL, "multi-node step descriptor: %llu bytes, room for %llu",
                       (unsigned long long)total, (unsigned long long)cap);
    const int64_t arg[5] = {io->n_rows, io->n_segs, io->n_logits, io->logit_dst, 0};
    put_header(buf, JB_TP_DESC_STEP, total, arg);
    unsigned char *at = (unsigned char *)buf + JB_TP_DESC_HEADER;
    unsigned char *tokens = at + (size_t)io->n_segs * SEG_BYTES;
    for (int64_t i = 0; i < io->n_segs; i++) {
        const jb_segment *s = &io->segs[i];
        const int64_t seg[4] = {s->seq, s->pos, s->n, s->row};
        memcpy(at + (size_t)i * SEG_BYTES, seg, SEG_BYTES);
        if (s->row >= 0 && s->n >= 0 && s->row + s->n <= io->n_rows) /* else decoding refuses the segment */
            memcpy(tokens + (size_t)s->row * 4, s->tokens, (size_t)s->n * 4);
    }
    memcpy(tokens + (size_t)io->n_rows * 4, io->logit_src, (size_t)io->n_logits * 8);
    *len = total;
    return JAMBA_OK;
}

uint64_t jb_tp_desc_encode_op(jb_tp_desc_kind kind, int64_t a, int64_t b, int64_t c, void *buf) {
    const int64_t arg[5] = {a, b, c, 0, 0};
    put_header(buf, kind, JB_TP_DESC_HEADER, arg);
    return JB_TP_DESC_HEADER;
}

uint64_t jb_tp_desc_encode_hello(int32_t n_nodes, const int64_t fields[JB_TP_HELLO_FIELDS], void *buf) {
    const int64_t arg[5] = {n_nodes, JB_TP_HELLO_FIELDS, 0, 0, 0};
    const uint64_t total = JB_TP_DESC_HEADER + 8u * JB_TP_HELLO_FIELDS;
    put_header(buf, JB_TP_DESC_HELLO, total, arg);
    memcpy((unsigned char *)buf + JB_TP_DESC_HEADER, fields, 8u * JB_TP_HELLO_FIELDS);
    return total;
}

jamba_status jb_tp_desc_total(const void *head, uint64_t cap, uint64_t *total, jamba_error *err) {
    header h;
    memcpy(&h, head, sizeof h);
    if (h.magic != MAGIC)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "multi-node step descriptor: magic 0x%08x, expected 0x%08x "
                       "(nodes of another byte order, or not a descriptor)", h.magic, MAGIC);
    if (h.version != VERSION)
        return jb_fail(err, JAMBA_ERR_UNSUPPORTED, "multi-node step descriptor: version %u from node 0, this node "
                       "reads %u (run the same jamba on every node)", h.version, VERSION);
    if (h.total < (int64_t)JB_TP_DESC_HEADER || (uint64_t)h.total > cap)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "multi-node step descriptor: %lld bytes, outside [%u, %llu]",
                       (long long)h.total, JB_TP_DESC_HEADER, (unsigned long long)cap);
    *total = (uint64_t)h.total;
    return JAMBA_OK;
}

static jamba_status decode_step(const unsigned char *buf, uint64_t len, const jb_tp_desc_limits *l, jb_tp_desc *d,
                                jamba_error *err) {
    const int64_t T = d->arg[0], n_segs = d->arg[1], n_logits = d->arg[2], logit_dst = d->arg[3];
    if (T < 1 || T > l->n_batch || n_segs < 1 || n_segs > l->max_segs || n_segs > T || n_logits < 0 ||
        n_logits > l->n_logits_max || logit_dst < 0 || logit_dst > l->n_logits_max - n_logits)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "multi-node step: %lld rows in %lld segments, %lld logit rows "
                       "at %lld (this node's limits %lld, %lld, %lld)", (long long)T, (long long)n_segs,
                       (long long)n_logits, (long long)logit_dst, (long long)l->n_batch, (long long)l->max_segs,
                       (long long)l->n_logits_max);
    uint64_t want = 0;
    step_bytes((uint64_t)n_segs, (uint64_t)T, (uint64_t)n_logits, &want); /* bounded by the limits above */
    if (want != len)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "multi-node step: %llu bytes, its counts make %llu",
                       (unsigned long long)len, (unsigned long long)want);
    const unsigned char *tokens = buf + JB_TP_DESC_HEADER + (size_t)n_segs * SEG_BYTES;
    memcpy(d->tokens, tokens, (size_t)T * 4);
    memcpy(d->logit_src, tokens + (size_t)T * 4, (size_t)n_logits * 8);
    int64_t row = 0;
    for (int64_t i = 0; i < n_segs; i++) {
        int64_t seg[4];
        memcpy(seg, buf + JB_TP_DESC_HEADER + (size_t)i * SEG_BYTES, SEG_BYTES);
        const int64_t seq = seg[0], pos = seg[1], n = seg[2], at = seg[3];
        if (seq < 0 || seq >= l->n_seq_max || n < 1 || at != row || n > T - row || pos < 0 || pos > l->n_ctx - n)
            return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "multi-node step: segment %lld (sequence %lld, %lld tokens "
                           "at position %lld, row %lld) is not the next rows from %lld of %lld (%d sequences of %lld "
                           "tokens)", (long long)i, (long long)seq, (long long)n, (long long)pos, (long long)at,
                           (long long)row, (long long)T, l->n_seq_max, (long long)l->n_ctx);
        d->segs[i] = (jb_segment){.seq = (int32_t)seq, .pos = pos, .n = n, .row = at, .tokens = d->tokens + at};
        row += n;
    }
    if (row != T)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "multi-node step: its segments cover %lld of %lld rows",
                       (long long)row, (long long)T);
    for (int64_t i = 0; i < n_logits; i++)
        if (d->logit_src[i] < 0 || d->logit_src[i] >= T)
            return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "multi-node step: logit row %lld reads step row %lld of "
                           "%lld", (long long)i, (long long)d->logit_src[i], (long long)T);
    d->io = (jb_step_io){.segs = d->segs, .n_segs = n_segs, .n_rows = T, .logit_src = d->logit_src,
                         .n_logits = n_logits, .logit_dst = logit_dst};
    return JAMBA_OK;
}

jamba_status jb_tp_desc_decode(const void *buf, uint64_t len, const jb_tp_desc_limits *l, jb_tp_desc *d,
                               jamba_error *err) {
    uint64_t total = 0;
    if (len < JB_TP_DESC_HEADER)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "multi-node step descriptor: %llu bytes, shorter than its "
                       "header", (unsigned long long)len);
    JB_TRY(jb_tp_desc_total(buf, len, &total, err));
    if (total != len)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "multi-node step descriptor: %llu bytes received, its header "
                       "says %llu", (unsigned long long)len, (unsigned long long)total);
    header h;
    memcpy(&h, buf, sizeof h);
    memcpy(d->arg, h.arg, sizeof d->arg);
    d->kind = (jb_tp_desc_kind)h.kind;
    switch (h.kind) {
    case JB_TP_DESC_STEP:
        return decode_step((const unsigned char *)buf, len, l, d, err);
    case JB_TP_DESC_SEQ_RESET:
    case JB_TP_DESC_SEQ_COPY:
        if (len != JB_TP_DESC_HEADER || d->arg[0] < 0 || d->arg[0] >= l->n_seq_max ||
            (h.kind == JB_TP_DESC_SEQ_COPY && (d->arg[1] < 0 || d->arg[1] >= l->n_seq_max || d->arg[2] < 0 ||
                                               d->arg[2] > l->n_ctx)))
            return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "multi-node sequence %s: sequence %lld, %lld, %lld "
                           "tokens (%d sequences of %lld tokens)", h.kind == JB_TP_DESC_SEQ_COPY ? "copy" : "reset",
                           (long long)d->arg[0], (long long)d->arg[1], (long long)d->arg[2], l->n_seq_max,
                           (long long)l->n_ctx);
        return JAMBA_OK;
    case JB_TP_DESC_STOP:
        return len == JB_TP_DESC_HEADER ? JAMBA_OK
                                        : jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "multi-node stop: %llu bytes",
                                                  (unsigned long long)len);
    case JB_TP_DESC_HELLO:
        if (d->arg[1] != JB_TP_HELLO_FIELDS || len != JB_TP_DESC_HEADER + 8u * JB_TP_HELLO_FIELDS)
            return jb_fail(err, JAMBA_ERR_UNSUPPORTED, "multi-node hello: %lld fields from node 0, this node knows "
                           "%d (run the same jamba on every node)", (long long)d->arg[1], JB_TP_HELLO_FIELDS);
        memcpy(d->hello, (const unsigned char *)buf + JB_TP_DESC_HEADER, sizeof d->hello);
        return JAMBA_OK;
    default:
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "multi-node step descriptor: unknown kind %u", h.kind);
    }
}

const char *jb_tp_hello_name(jb_tp_hello_field f) {
    return f >= 0 && f < JB_TP_HELLO_FIELDS ? HELLO_NAMES[f] : "?";
}

jamba_status jb_tp_hello_compare(int32_t node_rank, const int64_t mine[JB_TP_HELLO_FIELDS],
                                 const int64_t node0[JB_TP_HELLO_FIELDS], jamba_error *err) {
    for (int f = 0; f < JB_TP_HELLO_FIELDS; f++)
        if (mine[f] != node0[f])
            return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "node %d: %s is %lld here and %lld on node 0: start every "
                           "node with the same model and context options", node_rank, HELLO_NAMES[f],
                           (long long)mine[f], (long long)node0[f]);
    return JAMBA_OK;
}
