/*
 * test_gpu_parallel.c — the multi-GPU (NCCL) backend against one GPU, in fp32 mode on every transformers
 * fixture: prefill logits of every row and greedy decode steps must equal a single-GPU context's. With one
 * GPU the backend runs as one rank over a one-GPU NCCL communicator (through its table: the library hands
 * contexts of n_gpus <= 1 to the single-GPU backend); with more than one visible, a context over every GPU
 * through the public API, with a sequence fork and state moved both ways between the two contexts. What
 * each rank computes is specified and checked on the CPU by tests/test_tensor_parallel.c. Every comparison
 * runs twice: decode steps run directly, then replayed as per-rank CUDA graphs (gpu_graphs) that hold the
 * NCCL all-reduces. parallel/refusals checks what a one-node run can of several nodes: bad node counts, and
 * a follower's loop on a one-node context.
 */
#include "tests/gpu/gpu_test.h"

#include "ckpt/safetensors.h"
#include "cuda/tp.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_CTX 256
#define N_BATCH 64       /* both contexts step alike: the same prefill chunks */
#define DECODE_STEPS 4
#define TOL_ONE_RANK 1e-12 /* one rank runs the single-GPU ops on the same data */
#define TOL_RANKS 1e-7     /* several: partial sums add in another order (fp32) */

static jamba_context_params params(int32_t n_gpus, bool graphs) {
    jamba_context_params p = jamba_context_default_params();
    p.device = JAMBA_DEVICE_CUDA;
    p.gpu_dtype = JAMBA_DTYPE_F32;
    p.gpu_graphs = graphs;
    p.n_seq_max = 2;
    p.n_ctx = N_CTX;
    p.n_batch = N_BATCH;
    p.n_logits_max = N_BATCH;
    p.n_threads = 1;
    p.n_gpus = n_gpus;
    return p;
}

/* The fixture's input ids (caller frees) and their count; NULL on failure. */
static int32_t *fixture_ids(const char *name, int64_t *T) {
    char rel[160];
    snprintf(rel, sizeof rel, "forward/%.63s/reference.safetensors", name);
    char *path = gt_fixture(rel);
    jb_st_file f;
    jamba_error err = {0};
    const bool ok = jb_st_open(path, path, &f, &err) == JAMBA_OK;
    free(path);
    if (!ok) {
        gt_fail(__FILE__, __LINE__, "%s: %s", name, err.message);
        return NULL;
    }
    int32_t *ids = NULL;
    for (int64_t i = 0; i < f.n_tensors && ids == NULL; i++)
        if (strcmp(f.tensors[i].name, "input_ids") == 0) {
            const int64_t *src = jb_st_tensor_data(&f, &f.tensors[i]);
            *T = f.tensors[i].shape[0] < N_CTX - DECODE_STEPS - 1 ? f.tensors[i].shape[0] : N_CTX - DECODE_STEPS - 1;
            ids = malloc((size_t)*T * 4);
            for (int64_t t = 0; t < *T; t++)
                ids[t] = (int32_t)src[t];
        }
    jb_st_close(&f);
    if (ids == NULL)
        gt_fail(__FILE__, __LINE__, "%s: reference without input_ids", name);
    return ids;
}

/* Feed ids to seq of a public context; the logits of every row [n, V] into out. */
static bool feed(jamba_context *ctx, int32_t seq, const int32_t *ids, int64_t n, int64_t V, float *out) {
    jamba_seq_input in = {.seq = seq, .tokens = ids, .n_tokens = n, .logits = JAMBA_LOGITS_ALL};
    jamba_error err = {0};
    if (jamba_decode(ctx, &in, 1, &err) != JAMBA_OK) {
        gt_fail(__FILE__, __LINE__, "decode: %s", err.message);
        return false;
    }
    int64_t rows = 0;
    const float *l = jamba_logits(ctx, 0, &rows);
    if (rows != n) {
        gt_fail(__FILE__, __LINE__, "decode: %lld logit rows for %lld tokens", (long long)rows, (long long)n);
        return false;
    }
    memcpy(out, l, (size_t)(n * V) * 4);
    return true;
}

/* One sequence on the backend table itself, in steps of at most N_BATCH rows. */
typedef struct table_seq {
    jb_backend_ctx *state;
    int64_t pos, V;
} table_seq;

static bool table_feed(table_seq *s, const int32_t *ids, int64_t n, float *out) {
    int64_t src[N_BATCH];
    for (int64_t i = 0; i < N_BATCH; i++)
        src[i] = i;
    for (int64_t done = 0; done < n;) {
        const int64_t m = n - done < N_BATCH ? n - done : N_BATCH;
        const jb_segment seg = {.seq = 0, .pos = s->pos, .n = m, .row = 0, .tokens = ids + done};
        const jb_step_io io = {.segs = &seg, .n_segs = 1, .n_rows = m, .logit_src = src, .n_logits = m,
                               .logit_dst = 0, .host_logits = out + done * s->V};
        jamba_error err = {0};
        if (jb_cuda_tp_backend.step(s->state, &io, &err) != JAMBA_OK) {
            gt_fail(__FILE__, __LINE__, "multi-GPU step: %s", err.message);
            return false;
        }
        s->pos += m, done += m;
    }
    return true;
}

/* Whether this build has the NCCL backend; notes why not. */
static bool nccl_built(void) {
    jamba_backend_info info;
    memset(&info, 0, sizeof info);
    jamba_backend_query(&info, NULL);
    if (!info.nccl_built)
        gt_note("skipped: this build has no NCCL (the multi-GPU backend refuses contexts)");
    else
        gt_note("NCCL %d", info.nccl_version);
    return info.nccl_built;
}

static int32_t argmax(const float *x, int64_t n) {
    int32_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best])
            best = (int32_t)i;
    return best;
}

/* One fixture on one rank (the backend's table) against a single-GPU context; graphs: both replay their
 * decode steps as CUDA graphs (the rank's holding its all-reduces), else both run them directly. */
static void one_rank(const char *name, bool graphs) {
    int64_t T = 0;
    int32_t *ids = fixture_ids(name, &T);
    jamba_model *m = ids ? gt_fixture_model(name) : NULL;
    if (m == NULL) {
        free(ids);
        return;
    }
    const int64_t V = jamba_model_config(m)->vocab_size;
    jamba_context_params p = params(0, graphs), tp = params(1, graphs);
    jamba_context *one = NULL;
    table_seq seq = {.V = V};
    jamba_error err = {0};
    float *a = malloc((size_t)(T * V) * 4), *b = malloc((size_t)(T * V) * 4);
    if (jamba_context_create(m, &p, &one, &err) != JAMBA_OK)
        gt_fail(__FILE__, __LINE__, "%s: single-GPU context: %s", name, err.message);
    else if (jb_cuda_tp_backend.resolve(m, &tp, &err) != JAMBA_OK ||
             jb_cuda_tp_backend.create(m, &tp, &seq.state, &err) != JAMBA_OK)
        gt_fail(__FILE__, __LINE__, "%s: one-rank NCCL context: %s", name, err.message);
    else if (feed(one, 0, ids, T, V, a) && table_feed(&seq, ids, T, b)) {
        char what[160];
        snprintf(what, sizeof what, "%.63s: one rank's prefill logits vs one GPU%s", name, graphs ? " (graphs)" : "");
        gt_expect_close(what, b, a, T * V, TOL_ONE_RANK);
        int32_t next = argmax(a + (T - 1) * V, V);
        for (int i = 0; i < DECODE_STEPS && feed(one, 0, &next, 1, V, a) && table_feed(&seq, &next, 1, b); i++) {
            snprintf(what, sizeof what, "%.63s: one rank's decode step %d vs one GPU%s", name, i,
                     graphs ? " (replayed graphs)" : "");
            gt_expect_close(what, b, a, V, TOL_ONE_RANK);
            next = argmax(a, V);
        }
    }
    if (seq.state)
        jb_cuda_tp_backend.free(seq.state);
    jamba_context_free(one);
    jamba_model_free(m);
    free(ids), free(a), free(b);
}

/* Sequence seq's state bytes (caller frees); NULL on failure. */
static void *state_of(jamba_context *ctx, int32_t seq, size_t *len) {
    jamba_error err = {0};
    size_t size = 0;
    void *buf = NULL;
    if (jamba_seq_state_size(ctx, seq, &size, &err) != JAMBA_OK || (buf = malloc(size)) == NULL ||
        jamba_seq_state_get(ctx, seq, buf, size, len, &err) != JAMBA_OK) {
        gt_fail(__FILE__, __LINE__, "sequence state: %s", err.message);
        free(buf);
        return NULL;
    }
    return buf;
}

/* One fixture over n GPUs (the public API) against a single-GPU context: prefill, decode, a fork on the
 * multi-GPU context, and the sequence state moved each way. */
static void all_ranks(const char *name, int n, bool graphs) {
    int64_t T = 0;
    int32_t *ids = fixture_ids(name, &T);
    jamba_model *m = ids ? gt_fixture_model(name) : NULL;
    if (m == NULL) {
        free(ids);
        return;
    }
    const int64_t V = jamba_model_config(m)->vocab_size;
    jamba_context_params p = params(0, graphs), tp = params(n, graphs);
    jamba_context *one = NULL, *many = NULL;
    jamba_error err = {0};
    float *a = malloc((size_t)(T * V) * 4), *b = malloc((size_t)(T * V) * 4);
    jamba_status st = JAMBA_OK;
    if (jamba_context_create(m, &p, &one, &err) != JAMBA_OK)
        gt_fail(__FILE__, __LINE__, "%s: single-GPU context: %s", name, err.message);
    else if ((st = jamba_context_create(m, &tp, &many, &err)) == JAMBA_ERR_INVALID_ARGUMENT)
        gt_note("%s: skipped over %d GPUs: %s", name, n, err.message); /* the model does not split n ways */
    else if (st != JAMBA_OK)
        gt_fail(__FILE__, __LINE__, "%s: context over %d GPUs: %s", name, n, err.message);
    else if (feed(one, 0, ids, T, V, a) && feed(many, 0, ids, T, V, b)) {
        char what[160];
        snprintf(what, sizeof what, "%.63s: prefill logits over %d GPUs vs one", name, n);
        gt_expect_close(what, b, a, T * V, TOL_RANKS);
        int32_t next = argmax(a + (T - 1) * V, V);
        for (int i = 0; i < DECODE_STEPS && feed(one, 0, &next, 1, V, a) && feed(many, 0, &next, 1, V, b); i++) {
            snprintf(what, sizeof what, "%.63s: decode step %d over %d GPUs vs one%s", name, i, n,
                     graphs ? " (replayed graphs)" : "");
            gt_expect_close(what, b, a, V, TOL_RANKS);
            next = argmax(a, V);
        }
        /* a fork on the multi-GPU context continues as the original on one GPU does */
        if (jamba_seq_fork(many, 0, 1, &err) != JAMBA_OK)
            gt_fail(__FILE__, __LINE__, "%s: fork over %d GPUs: %s", name, n, err.message);
        else if (feed(one, 0, &next, 1, V, a) && feed(many, 1, &next, 1, V, b)) {
            snprintf(what, sizeof what, "%.63s: a forked sequence over %d GPUs vs one", name, n);
            gt_expect_close(what, b, a, V, TOL_RANKS);
        }
        /* state read from the shards continues on one GPU, and state written into the shards continues there */
        size_t len = 0;
        void *state = state_of(many, 1, &len);
        if (state && jamba_seq_state_set(one, 1, state, len, &err) != JAMBA_OK)
            gt_fail(__FILE__, __LINE__, "%s: state from %d GPUs into one: %s", name, n, err.message);
        else if (state && feed(one, 1, &next, 1, V, a) && feed(many, 1, &next, 1, V, b)) {
            snprintf(what, sizeof what, "%.63s: state read over %d GPUs, continued on one", name, n);
            gt_expect_close(what, a, b, V, TOL_RANKS);
        }
        free(state);
        state = state_of(one, 0, &len);
        if (state && jamba_seq_state_set(many, 0, state, len, &err) != JAMBA_OK)
            gt_fail(__FILE__, __LINE__, "%s: state from one GPU into %d: %s", name, n, err.message);
        else if (state && feed(one, 0, &next, 1, V, a) && feed(many, 0, &next, 1, V, b)) {
            snprintf(what, sizeof what, "%.63s: state written over %d GPUs, continued there", name, n);
            gt_expect_close(what, b, a, V, TOL_RANKS);
        }
        free(state);
    }
    jamba_context_free(many);
    jamba_context_free(one);
    jamba_model_free(m);
    free(ids), free(a), free(b);
}

static void test_one_rank(void) {
    if (!nccl_built())
        return;
    char names[32][64];
    const int n = gt_fixture_names(names, 32);
    for (int graphs = 0; graphs < 2; graphs++)
        for (int i = 0; i < n; i++)
            one_rank(names[i], graphs);
}

static void test_all_gpus(void) {
    if (!nccl_built())
        return;
    int visible = 0;
    if (cudaGetDeviceCount(&visible) != cudaSuccess || visible < 2) {
        cudaGetLastError();
        gt_note("skipped: %d CUDA device visible; the multi-GPU run needs at least 2", visible);
        return;
    }
    char names[32][64];
    const int n = gt_fixture_names(names, 32);
    for (int graphs = 0; graphs < 2; graphs++)
        for (int i = 0; i < n; i++)
            all_ranks(names[i], visible, graphs);
}

/* Asking for more GPUs than are visible is refused clearly (without NCCL: UNSUPPORTED; a count the model
 * does not split into: the plan's INVALID_ARGUMENT, checked before the devices are counted only by the plan). */
static void test_too_many(void) {
    int visible = 0;
    if (cudaGetDeviceCount(&visible) != cudaSuccess)
        visible = 0;
    cudaGetLastError();
    jamba_model *m = gt_fixture_model("mini");
    if (m == NULL)
        return;
    jamba_context_params p = params(visible + 1, false);
    jamba_context *ctx = NULL;
    jamba_error err = {0};
    const jamba_status st = jamba_context_create(m, &p, &ctx, &err);
    GT_CHECK(st == JAMBA_ERR_NO_DEVICE || st == JAMBA_ERR_UNSUPPORTED || st == JAMBA_ERR_INVALID_ARGUMENT,
             "n_gpus %d with %d visible: status %d (%s)", visible + 1, visible, (int)st, err.message);
    gt_note("n_gpus %d with %d visible: %s", visible + 1, visible, err.message);
    jamba_context_free(ctx);
    jamba_model_free(m);
}

/* Several nodes, checked without a second node: the parameters a context refuses, and jamba_context_follow on
 * a context that is no follower. */
static void test_node_refusals(void) {
    jamba_model *m = gt_fixture_model("mini");
    if (m == NULL)
        return;
    jamba_context *ctx = NULL;
    jamba_error err = {0};
    jamba_context_params p = params(2, false);
    p.n_nodes = 3; /* 2 GPUs cannot be spread evenly over 3 nodes */
    jamba_status st = jamba_context_create(m, &p, &ctx, &err);
    GT_CHECK(st == JAMBA_ERR_INVALID_ARGUMENT && strstr(err.message, "n_nodes 3"), "n_gpus 2 over 3 nodes: %d (%s)",
             (int)st, err.message);
    p = params(2, false);
    p.n_nodes = 2;
    p.node_rank = 2;
    st = jamba_context_create(m, &p, &ctx, &err);
    GT_CHECK(st == JAMBA_ERR_INVALID_ARGUMENT && strstr(err.message, "node_rank 2"), "node_rank 2 of 2: %d (%s)",
             (int)st, err.message);
    p = params(0, false);
    if (jamba_context_create(m, &p, &ctx, &err) == JAMBA_OK) {
        st = jamba_context_follow(ctx, &err);
        GT_CHECK(st == JAMBA_ERR_INVALID_ARGUMENT, "follow on a one-GPU context: %d (%s)", (int)st, err.message);
    } else {
        gt_fail(__FILE__, __LINE__, "one-GPU context: %s", err.message);
    }
    jamba_context_free(ctx);
    jamba_model_free(m);
}

const gt_case gt_parallel_cases[] = {
    {"parallel/one_rank", test_one_rank, true},
    {"parallel/all_gpus", test_all_gpus, false},
    {"parallel/too_many", test_too_many, true},
    {"parallel/refusals", test_node_refusals, true},
};
const int gt_n_parallel_cases = sizeof gt_parallel_cases / sizeof gt_parallel_cases[0];
