/*
 * tp_desc.h — what node 0 of a context split over several nodes tells the other nodes, so that they run
 * the same operation on their shards: one descriptor per backend operation (a forward step, a sequence
 * reset or copy, stop) and a hello at creation that compares the contexts' shapes. Host C, built in every
 * configuration and tested on the CPU (tests/test_nccl_join.c); cuda/tp_context.cu broadcasts the bytes
 * from global rank 0 (ncclBroadcast on a device buffer) and decodes them on the followers.
 *
 * Bytes, in the hosts' own byte order (every node is the same architecture; the magic catches one that is
 * not): a 64-byte header {u32 magic, u32 version, u32 kind, u32 0, i64 total bytes, i64 arg[5]}, then for a
 * step: segments [n_segs] x {i64 seq, pos, n, row}, tokens i32 [n_rows] (row order), logit rows i64
 * [n_logits]; for a hello: i64 [JB_TP_HELLO_FIELDS]. A broadcast sends the first JB_TP_DESC_HEAD bytes
 * (every decode step of up to 91 sequences fits), then, only when the header's total says there is more,
 * the rest.
 */
#ifndef JB_CUDA_TP_DESC_H
#define JB_CUDA_TP_DESC_H

#include <stdint.h>

#include "backend/backend.h"
#include "jamba.h"

#ifdef __cplusplus
extern "C" {
#endif

#define JB_TP_DESC_HEAD 4096u   /* bytes every descriptor broadcast sends first */
#define JB_TP_DESC_HEADER 64u   /* the header's bytes */

typedef enum jb_tp_desc_kind {
    JB_TP_DESC_STEP = 1,      /* arg: n_rows, n_segs, n_logits, logit_dst */
    JB_TP_DESC_SEQ_RESET = 2, /* arg: seq */
    JB_TP_DESC_SEQ_COPY = 3,  /* arg: src, dst, n_tokens */
    JB_TP_DESC_STOP = 4,      /* node 0's context is being freed: the followers return */
    JB_TP_DESC_HELLO = 5,     /* arg: the sender's node count; payload: the context's shape */
} jb_tp_desc_kind;

/* A context's shape, which every node must share: a hello carries node 0's. */
typedef enum jb_tp_hello_field {
    JB_HELLO_N_SEQ_MAX, JB_HELLO_N_CTX, JB_HELLO_N_BATCH, JB_HELLO_N_LOGITS_MAX, JB_HELLO_MAX_SEGS,
    JB_HELLO_GPU_DTYPE, JB_HELLO_KV_DTYPE, JB_HELLO_GRAPHS, JB_HELLO_N_GPUS, JB_HELLO_N_NODES,
    JB_HELLO_VOCAB, JB_HELLO_HIDDEN, JB_HELLO_LAYERS, JB_HELLO_EXPERTS,
    JB_TP_HELLO_FIELDS
} jb_tp_hello_field;

/* What a follower checks a step against: its context's bounds. */
typedef struct jb_tp_desc_limits {
    int32_t n_seq_max;
    int64_t n_ctx, n_batch, max_segs, n_logits_max;
} jb_tp_desc_limits;

/* A decoded descriptor; for a step, io points into the arrays (sized by the limits; jb_tp_desc_alloc). */
typedef struct jb_tp_desc {
    jb_tp_desc_kind kind;
    int64_t arg[5];
    jb_step_io io;
    jb_segment *segs;   /* [max_segs] */
    int32_t *tokens;    /* [n_batch] */
    int64_t *logit_src; /* [n_logits_max] */
    int64_t hello[JB_TP_HELLO_FIELDS];
} jb_tp_desc;

/* The largest descriptor a context with these limits sends (at least JB_TP_DESC_HEAD). JAMBA_ERR_OVERFLOW
 * when it does not fit 64 bits. */
jamba_status jb_tp_desc_capacity(const jb_tp_desc_limits *l, uint64_t *out, jamba_error *err);

jamba_status jb_tp_desc_alloc(const jb_tp_desc_limits *l, jb_tp_desc *d, jamba_error *err);
void jb_tp_desc_free(jb_tp_desc *d);

/* Encode into buf (cap bytes): *len is the descriptor's total. JAMBA_ERR_BUFFER_TOO_SMALL past cap. */
jamba_status jb_tp_desc_encode_step(const jb_step_io *io, void *buf, uint64_t cap, uint64_t *len, jamba_error *err);
/* A reset, copy or stop (arguments as listed for the kind; unused ones 0): always JB_TP_DESC_HEADER bytes. */
uint64_t jb_tp_desc_encode_op(jb_tp_desc_kind kind, int64_t a, int64_t b, int64_t c, void *buf);
uint64_t jb_tp_desc_encode_hello(int32_t n_nodes, const int64_t fields[JB_TP_HELLO_FIELDS], void *buf);

/* The total bytes a descriptor announces, from its first JB_TP_DESC_HEAD bytes: checks the magic and
 * version, and that the total lies within [JB_TP_DESC_HEADER, cap]. */
jamba_status jb_tp_desc_total(const void *head, uint64_t cap, uint64_t *total, jamba_error *err);

/* Decode len bytes (the total) into d, checking every count, index and position against the limits: a
 * step whose segments do not cover rows 0 .. n_rows-1 in order, a sequence out of range, a position past
 * n_ctx or a logit row outside the step is JAMBA_ERR_INVALID_ARGUMENT naming it. */
jamba_status jb_tp_desc_decode(const void *buf, uint64_t len, const jb_tp_desc_limits *l, jb_tp_desc *d,
                               jamba_error *err);

/* The name of a hello field ("n_ctx", ...). */
const char *jb_tp_hello_name(jb_tp_hello_field f);
/* Compare this node's shape with node 0's: JAMBA_ERR_INVALID_ARGUMENT naming the first field that differs
 * and both values. */
jamba_status jb_tp_hello_compare(int32_t node_rank, const int64_t mine[JB_TP_HELLO_FIELDS],
                                 const int64_t node0[JB_TP_HELLO_FIELDS], jamba_error *err);

#ifdef __cplusplus
}
#endif

#endif /* JB_CUDA_TP_DESC_H */
