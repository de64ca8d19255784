/*
 * tp_context.cu — a multi-GPU context (tp_ctx.h): the sharding plan, each rank's slices uploaded to its
 * device, a single-GPU CUDA context per rank built for the rank's shapes, the NCCL clique, and the
 * sequence-state operations over the ranks' shards.
 *
 * Loading: jb_shard_bind_rank gives a rank's weights as views into the mapped checkpoint (slices that are
 * one run of bytes: row splits, owned experts, replicated tensors) and copies of the rest (column splits:
 * one run per row), one rank at a time and freed once that rank is on its device; jb_cuda_weights_create
 * then uploads them as for one GPU (the fused layouts of weights_dev.h, a rank holding only its experts).
 */
extern "C" { /* C headers without their own guards, before anything includes them */
#include "ckpt/weights.h"
#include "parallel/slice.h"
}
#include "backend/model.h"
#include "base/alloc.h"
#include "base/error.h"
#include "cuda/tp_dev.h"

#include <stdio.h>
#include <string.h>

jamba_status jb_tp_fault(jb_tp_ctx *t, jamba_error *err, int rank, const char *what, const char *detail) {
    if (!t->dead) {
        t->dead = true;
        snprintf(t->fault, sizeof t->fault, "rank %d (CUDA device %d): %.60s: %.160s", rank, t->ranks[rank].device,
                 what, detail);
    }
    return jb_fail(err, JAMBA_ERR_DEVICE, "multi-GPU context: %s (the context is unusable now; free it)", t->fault);
}

static jamba_status check_alive(const jb_tp_ctx *t, jamba_error *err) {
    if (!t->dead)
        return JAMBA_OK;
    return jb_fail(err, JAMBA_ERR_DEVICE, "multi-GPU context: it failed earlier (%s); free it", t->fault);
}

/* A rank's CUDA context operation: a device fault there (err names it) makes the whole context dead. */
static jamba_status on_rank(jb_tp_ctx *t, int r, jamba_status st) {
    if (st == JAMBA_ERR_DEVICE && !t->dead) {
        t->dead = true;
        snprintf(t->fault, sizeof t->fault, "rank %d: %.230s", r, t->ranks[r].c->fault);
    }
    return st;
}

extern "C" void jb_tp_ctx_free(jb_tp_ctx *t) {
    if (t == NULL)
        return;
    for (int r = 0; t->ranks && r < t->n; r++) {
        jb_tp_rank *R = &t->ranks[r];
        jb_cuda_ctx_free(R->c); /* waits for its stream */
        if (R->comm)
            ncclCommDestroy(R->comm);
        jb_cuda_weights_free(R->w);
        jb_device_scope scope(R->device);
        cudaFree(R->d_embed_src);
        cudaFreeHost(R->h_embed_src);
        jb_weights_free(&R->view.weights); /* empty unless creation stopped inside a rank's upload */
    }
    cudaGetLastError();
    jb_free(t->ranks);
    jb_shard_plan_free(&t->plan);
    jb_free(t);
}

/* Rank r's slices on its device, its CUDA context and step buffers. */
static jamba_status make_rank(jb_tp_ctx *t, const jamba_context_params *p, const jamba_config *rank_cfg, int r,
                              jamba_error *err) {
    jb_tp_rank *R = &t->ranks[r];
    const jamba_model *m = t->model;
    const jamba_config *c = &t->cfg;
    R->device = p->gpu_index + r;
    R->view.path = m->path;
    R->view.config = *rank_cfg;
    R->view.has_weights = true;
    R->view.log = m->log;
    R->view.log_data = m->log_data;
    JB_TRY(jb_shard_bind_rank(&t->plan, c, &m->weights, r, &R->view.weights, err));
    jamba_status st = jb_cuda_weights_create(&R->view, R->device, p->gpu_dtype, &R->w, err);
    jb_weights_free(&R->view.weights); /* the host copies of its column slices: on the device now */
    memset(&R->view.weights, 0, sizeof R->view.weights);
    JB_TRY(st);
    const jb_slice *vocab = jb_shard_slice(&t->plan, 0, r); /* the embedding is the plan's first tensor */
    R->vocab_begin = vocab->begin;
    R->vocab_count = vocab->count;
    const int64_t n_kv = c->num_key_value_heads, d_h = c->head_dim;
    R->kv_begin = n_kv >= t->n ? r * (n_kv / t->n) * d_h : (r / (t->n / n_kv)) * d_h;
    if (t->plan.moe == JB_MOE_EXPERTS) {
        R->expert_count = c->num_experts / t->n;
        R->expert_first = r * R->expert_count;
    }
    R->dense_I = c->intermediate_size / t->n;
    const jb_cuda_ctx_params cp = {p->n_seq_max, p->n_ctx, p->n_batch, p->n_logits_max, false, p->kv_dtype};
    JB_TRY(jb_cuda_ctx_create(&R->view, R->w, &cp, &R->c, err));
    jb_device_scope scope(R->device);
    cudaError_t e = cudaMalloc((void **)&R->d_embed_src, (size_t)p->n_batch * sizeof(int64_t));
    if (e == cudaSuccess)
        e = cudaMallocHost((void **)&R->h_embed_src, (size_t)p->n_batch * sizeof(int64_t));
    if (e != cudaSuccess) {
        cudaGetLastError();
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "multi-GPU context: rank %d (device %d): embedding row map: %s",
                       r, R->device, cudaGetErrorString(e));
    }
    return JAMBA_OK;
}

extern "C" jamba_status jb_tp_ctx_create(const jamba_model *m, const jamba_context_params *p, jb_tp_ctx **out,
                                         jamba_error *err) {
    *out = NULL;
    const int n = p->n_gpus > 1 ? p->n_gpus : 1;
    if (m->device_synthetic)
        return jb_fail(err, JAMBA_ERR_UNSUPPORTED, "%s: a device-synthetic model runs on one GPU only (n_gpus %d)",
                       m->path, p->n_gpus);
    int visible = 0;
    if (cudaGetDeviceCount(&visible) != cudaSuccess) {
        cudaGetLastError();
        visible = 0;
    }
    if (p->gpu_index < 0 || (int64_t)p->gpu_index + n > visible)
        return jb_fail(err, JAMBA_ERR_NO_DEVICE, "context: n_gpus %d from gpu_index %d needs CUDA devices %d..%d; %d "
                       "%s visible", n, p->gpu_index, p->gpu_index, p->gpu_index + n - 1, visible,
                       visible == 1 ? "is" : "are");
    jb_tp_ctx *t = (jb_tp_ctx *)jb_calloc(1, sizeof *t);
    if (t == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "multi-GPU context: out of memory");
    t->model = m;
    t->cfg = m->config;
    t->cfg.mamba_inner_layernorms = t->cfg.mamba_inner_layernorms || m->weights.inner_norms_stored;
    t->n = n;
    t->S = p->n_seq_max, t->C = p->n_ctx, t->Tb = p->n_batch, t->cap = p->n_logits_max;
    jamba_status st = jb_shard_plan_make(&t->cfg, n, &t->plan, err);
    if (st != JAMBA_OK) {
        jb_free(t);
        return st;
    }
    jamba_config rank_cfg;
    jb_shard_rank_config(&t->plan, &t->cfg, &rank_cfg);
    t->ranks = (jb_tp_rank *)jb_calloc((size_t)n, sizeof *t->ranks);
    if (t->ranks == NULL)
        st = jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "multi-GPU context: out of memory");
    for (int r = 0; r < n && st == JAMBA_OK; r++)
        st = make_rank(t, p, &rank_cfg, r, err);
    if (st == JAMBA_OK) {
        ncclComm_t comms[JB_SHARD_MAX_RANKS];
        int devices[JB_SHARD_MAX_RANKS];
        for (int r = 0; r < n; r++)
            devices[r] = t->ranks[r].device;
        const ncclResult_t nr = ncclCommInitAll(comms, n, devices);
        if (nr == ncclSuccess)
            for (int r = 0; r < n; r++)
                t->ranks[r].comm = comms[r];
        else
            st = jb_fail(err, JAMBA_ERR_DEVICE, "multi-GPU context: NCCL over devices %d..%d: %s", p->gpu_index,
                         p->gpu_index + n - 1, ncclGetErrorString(nr));
    }
    if (st != JAMBA_OK) {
        jb_tp_ctx_free(t);
        return st;
    }
    *out = t;
    return JAMBA_OK;
}

extern "C" uint64_t jb_tp_ctx_bytes(const jb_tp_ctx *t) {
    uint64_t sum = 0;
    for (int r = 0; r < t->n; r++)
        sum += jb_cuda_ctx_bytes(t->ranks[r].c) + jb_cuda_weights_bytes(t->ranks[r].w);
    return sum;
}

/* ---- sequence state ------------------------------------------------------------------------------------- */

extern "C" jamba_status jb_tp_seq_reset(jb_tp_ctx *t, int32_t seq, jamba_error *err) {
    JB_TRY(check_alive(t, err));
    for (int r = 0; r < t->n; r++)
        JB_TRY(on_rank(t, r, jb_cuda_seq_reset(t->ranks[r].c, seq, err)));
    return JAMBA_OK;
}

extern "C" jamba_status jb_tp_seq_copy(jb_tp_ctx *t, int32_t src, int32_t dst, int64_t n_tokens, jamba_error *err) {
    JB_TRY(check_alive(t, err));
    for (int r = 0; r < t->n; r++)
        JB_TRY(on_rank(t, r, jb_cuda_seq_copy(t->ranks[r].c, src, dst, n_tokens, err)));
    return JAMBA_OK;
}

namespace {

/* Floats [offset, offset + n) of one piece in the single-GPU layout, visited as the runs each rank holds:
 * fn(rank, rank-local offset, count, index into the caller's n floats). Conv and SSM pieces ([D_i, K-1],
 * [D_i, N]) hold D_r channels per rank, contiguous; K and V pieces ([C, n_kv d_h]) hold kv_r columns of
 * every token row. all_copies: visit every rank holding a KV head (writes), else its first holder (reads). */
template <typename F>
jamba_status each_run(jb_tp_ctx *t, jb_state_kind kind, int64_t offset, int64_t n, bool all_copies, F fn) {
    const jamba_config *c = &t->cfg;
    const int64_t end = offset + n;
    if (kind == JB_STATE_CONV || kind == JB_STATE_SSM) {
        const int64_t per = kind == JB_STATE_CONV ? c->mamba_d_conv - 1 : c->mamba_d_state;
        const int64_t span = c->mamba_d_inner / t->n * per;
        for (int r = 0; r < t->n; r++) {
            const int64_t lo = offset > r * span ? offset : r * span;
            const int64_t hi = end < (r + 1) * span ? end : (r + 1) * span;
            if (lo < hi)
                JB_TRY(fn(r, lo - r * span, hi - lo, lo - offset));
        }
        return JAMBA_OK;
    }
    const int64_t kv = c->num_key_value_heads * c->head_dim;
    const int64_t copies = c->num_key_value_heads >= t->n ? 1 : t->n / c->num_key_value_heads;
    for (int64_t at = offset; at < end;) {
        const int64_t row = at / kv, row_end = (row + 1) * kv < end ? (row + 1) * kv : end;
        for (int r = 0; r < t->n; r++) {
            if (!all_copies && r % copies != 0)
                continue;
            const jb_tp_rank *R = &t->ranks[r];
            const int64_t kv_r = R->c->kv;
            const int64_t lo = at > row * kv + R->kv_begin ? at : row * kv + R->kv_begin;
            const int64_t hi = row_end < row * kv + R->kv_begin + kv_r ? row_end : row * kv + R->kv_begin + kv_r;
            if (lo < hi)
                JB_TRY(fn(r, row * kv_r + (lo - row * kv - R->kv_begin), hi - lo, lo - offset));
        }
        at = row_end;
    }
    return JAMBA_OK;
}

} // namespace

extern "C" jamba_status jb_tp_state_read(jb_tp_ctx *t, int32_t seq, jb_state_kind kind, int64_t layer,
                                         int64_t offset, int64_t n, float *dst, jamba_error *err) {
    JB_TRY(check_alive(t, err));
    return each_run(t, kind, offset, n, false, [&](int r, int64_t local, int64_t count, int64_t at) {
        return on_rank(t, r, jb_cuda_state_read(t->ranks[r].c, seq, kind, layer, local, count, dst + at, err));
    });
}

extern "C" jamba_status jb_tp_state_write(jb_tp_ctx *t, int32_t seq, jb_state_kind kind, int64_t layer,
                                          int64_t offset, int64_t n, const float *src, jamba_error *err) {
    JB_TRY(check_alive(t, err));
    return each_run(t, kind, offset, n, true, [&](int r, int64_t local, int64_t count, int64_t at) {
        return on_rank(t, r, jb_cuda_state_write(t->ranks[r].c, seq, kind, layer, local, count, src + at, err));
    });
}
