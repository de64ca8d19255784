/*
 * context.cu — a CUDA context: one device allocation planned from the config and the context sizes
 * (state, workspaces, step metadata), its stream and cuBLAS handle; sampling on the device; and the
 * sequence-state operations (reset, copy, read and write for state files).
 */
#include "../ckpt/config.h"
#include "../runtime/alloc.h"
#include "../runtime/error.h"
#include "context_dev.h"

#include <stdio.h>
#include <string.h>

#define ARENA_ALIGN 256
#define BLAS_WORKSPACE ((size_t)32 << 20) /* cuBLAS's recommendation for Hopper */

jamba_status jb_cuda_fault(jb_cuda_ctx *c, jamba_error *err, const char *what, const char *detail) {
    if (!c->dead) {
        c->dead = true;
        snprintf(c->fault, sizeof c->fault, "%s: %s", what, detail);
    }
    return jb_fail(err, JAMBA_ERR_DEVICE, "CUDA device %d: %s (the context is unusable now; free it)", c->device,
                   c->fault);
}

jamba_status jb_cuda_check_alive(const jb_cuda_ctx *c, jamba_error *err) {
    if (!c->dead)
        return JAMBA_OK;
    return jb_fail(err, JAMBA_ERR_DEVICE, "CUDA device %d: the context failed earlier (%s); free it", c->device,
                   c->fault);
}

/* One copy on the context's stream, waited for. */
static cudaError_t copy_sync(jb_cuda_ctx *c, void *dst, const void *src, size_t bytes, cudaMemcpyKind kind) {
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, kind, c->stream);
    return e == cudaSuccess ? cudaStreamSynchronize(c->stream) : e;
}

namespace {

/* One planned buffer: where its pointer goes and how many bytes it needs. */
struct plan_entry {
    void **dst;
    uint64_t bytes;
};

struct arena_plan {
    plan_entry e[96];
    int n;
    bool overflow; /* a size did not fit 64 bits */
};

/* bytes = a * b * c * d, overflow-checked. */
void add(arena_plan &p, void **dst, uint64_t a, uint64_t b = 1, uint64_t c = 1, uint64_t d = 1) {
    uint64_t v = a;
    for (uint64_t f : {b, c, d}) {
        if (f != 0 && v > UINT64_MAX / f)
            p.overflow = true;
        v *= f;
    }
    p.e[p.n++] = {dst, v};
}

uint64_t plan_total(const arena_plan &p, bool *overflow) {
    uint64_t total = 0;
    for (int i = 0; i < p.n; i++) {
        uint64_t rounded = (p.e[i].bytes + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
        if (rounded < p.e[i].bytes || total > UINT64_MAX - rounded)
            *overflow = true;
        total += rounded;
    }
    return total;
}

void plan_assign(const arena_plan &p, char *base) {
    uint64_t off = 0;
    for (int i = 0; i < p.n; i++) {
        *p.e[i].dst = p.e[i].bytes ? base + off : NULL;
        off += (p.e[i].bytes + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    }
}

int64_t max_of(std::initializer_list<int64_t> v) {
    int64_t m = 0;
    for (int64_t x : v)
        m = x > m ? x : m;
    return m;
}

void device_plan(jb_cuda_ctx *c, arena_plan &p) {
    const uint64_t es = c->es, S = (uint64_t)c->S, C = (uint64_t)c->C, Tb = (uint64_t)c->Tb, H = (uint64_t)c->H;
    const uint64_t Di = (uint64_t)c->Di, N = (uint64_t)c->N, R = (uint64_t)c->R, I = (uint64_t)c->I;
    const uint64_t kv = (uint64_t)c->kv, E = (uint64_t)c->E, k = (uint64_t)c->k;
    const uint64_t A = (uint64_t)c->A, M = (uint64_t)c->M, V = (uint64_t)c->V;
    const bool moe = c->cfg->n_moe_layers > 0;
    const uint64_t slots = moe ? Tb * k : 0;
    const uint64_t logit_rows = (uint64_t)max_of({c->cap, JB_CUDA_GRAPH_ROWS});
    add(p, &c->kv_cache, S * A * 2, C, kv, es);
    add(p, (void **)&c->conv, S * M, Di, c->K - 1, 4);
    add(p, (void **)&c->ssm, S * M, Di, N, 4);
    add(p, (void **)&c->x, Tb, H, 4);
    add(p, (void **)&c->mix, Tb, H, 4);
    add(p, &c->xn, Tb, H, es);
    add(p, &c->wide, Tb, (uint64_t)max_of({M ? 2 * c->Di : 0, A ? c->q + 2 * c->kv : 0, 2 * c->I}), es);
    add(p, &c->u, M ? Tb : 0, Di, es);
    add(p, (void **)&c->xdbl, M ? Tb : 0, R + 2 * N, 4);
    add(p, &c->dt_in, M ? Tb : 0, R, es);
    add(p, &c->delta, M ? Tb : 0, Di, es);
    add(p, &c->y, Tb, (uint64_t)max_of({M ? c->Di : 0, A ? c->q : 0, c->I}), es);
    add(p, (void **)&c->summary, M ? 2 * JB_CUDA_SCAN_SLOTS : 0, Di, N, 4);
    add(p, (void **)&c->partial, (uint64_t)c->partial_cap, 4);
    add(p, (void **)&c->router, moe ? Tb : 0, E, 4);
    add(p, (void **)&c->experts, slots, 4);
    add(p, (void **)&c->weights, slots, 4);
    add(p, (void **)&c->begin, moe ? E + 1 : 0, 4);
    add(p, (void **)&c->slot_token, slots, 4);
    add(p, (void **)&c->slot_pos, slots, 4);
    add(p, (void **)&c->slot_weight, slots, 4);
    add(p, &c->gathered, slots, H, es);
    add(p, &c->gu, slots, 2 * I, es);
    add(p, &c->act, slots, I, es);
    add(p, (void **)&c->expert_out, slots, H, 4);
    add(p, (void **)&c->final_rows, logit_rows, H, 4);
    add(p, &c->final_act, logit_rows, H, es);
    add(p, (void **)&c->logits, (uint64_t)c->cap, V, 4);
    add(p, (void **)&c->graph_logits, c->graphs ? JB_CUDA_GRAPH_ROWS : 0, V, 4);
    add(p, (void **)&c->d_meta, c->meta_bytes);
    add(p, (void **)&c->d_sp, JB_CUDA_SAMPLE_ROWS, sizeof(jb_gpu_sample_params));
    add(p, (void **)&c->d_pen, JB_CUDA_SAMPLE_ROWS, JB_GPU_SAMPLE_MAX_PENALIZED, 4);
    add(p, (void **)&c->d_swork, JB_CUDA_SAMPLE_ROWS, V, 4);
    add(p, (void **)&c->d_stok, JB_CUDA_SAMPLE_ROWS, 4);
    add(p, (void **)&c->d_sused, JB_CUDA_SAMPLE_ROWS, 4);
}

/* The step metadata block: the same offsets on the host (pinned) and the device. */
size_t meta_layout(jb_cuda_ctx *c, char *base, bool device) {
    size_t off = 0;
    auto take = [&](size_t bytes) {
        char *at = base ? base + off : NULL;
        off += (bytes + 15) / 16 * 16;
        return at;
    };
    const int64_t logit_rows = max_of({c->cap, JB_CUDA_GRAPH_ROWS});
    int32_t *tokens = (int32_t *)take((size_t)c->Tb * 4), *row_seg = (int32_t *)take((size_t)c->Tb * 4);
    jb_gpu_seg *segs = (jb_gpu_seg *)take((size_t)c->max_segs * sizeof(jb_gpu_seg));
    jb_gpu_chunk *chunks = (jb_gpu_chunk *)take((size_t)c->max_chunks * sizeof(jb_gpu_chunk));
    int64_t *logit_src = (int64_t *)take((size_t)logit_rows * 8);
    if (device) {
        c->d_tokens = tokens, c->d_row_seg = row_seg, c->d_segs = segs, c->d_chunks = chunks;
        c->d_logit_src = logit_src;
    } else if (base) {
        c->h_tokens = tokens, c->h_row_seg = row_seg, c->h_segs = segs, c->h_chunks = chunks;
        c->h_logit_src = logit_src;
    }
    return off;
}

void release(jb_cuda_ctx *c) {
    for (int t = 0; t <= JB_CUDA_GRAPH_ROWS; t++)
        if (c->graph[t])
            cudaGraphExecDestroy(c->graph[t]);
    if (c->blas)
        cublasDestroy(c->blas);
    if (c->stream)
        cudaStreamDestroy(c->stream);
    cudaFree(c->arena);
    cudaFreeHost(c->h_meta);
    cudaFreeHost(c->h_begin);
    cudaFreeHost(c->h_sp);
    cudaFreeHost(c->h_pen);
    cudaFreeHost(c->h_stok);
    cudaFreeHost(c->h_sused);
    cudaGetLastError();
}

} // namespace

extern "C" jamba_status jb_cuda_ctx_create(const jamba_model *m, const jb_cuda_weights *w, const jb_cuda_ctx_params *p,
                                           jb_cuda_ctx **out, jamba_error *err) {
    *out = NULL;
    jb_device_scope scope(w->device);
    jb_cuda_ctx *c = (jb_cuda_ctx *)jb_calloc(1, sizeof *c);
    if (c == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "CUDA context: out of memory");
    const jamba_config *cfg = &m->config;
    c->model = m, c->cfg = cfg, c->w = w, c->device = w->device, c->dt = w->dt;
    c->es = w->dt == JAMBA_DTYPE_BF16 ? 2 : 4;
    c->S = p->n_seq_max, c->C = p->n_ctx, c->Tb = p->n_batch, c->cap = p->n_logits_max;
    c->V = cfg->vocab_size, c->H = cfg->hidden_size, c->Di = cfg->mamba_d_inner, c->N = cfg->mamba_d_state;
    c->K = cfg->mamba_d_conv, c->R = cfg->mamba_dt_rank, c->I = cfg->intermediate_size;
    c->E = cfg->num_experts, c->k = cfg->n_moe_layers > 0 ? cfg->num_experts_per_tok : 0;
    c->q = cfg->num_attention_heads * cfg->head_dim, c->kv = cfg->num_key_value_heads * cfg->head_dim;
    c->A = cfg->n_attention_layers, c->M = cfg->n_mamba_layers, c->L = cfg->num_hidden_layers;
    c->graphs = p->graphs;
    c->max_segs = c->S < c->Tb ? c->S : c->Tb;
    c->max_chunks = c->max_segs + c->Tb;
    c->partial_cap = c->A ? (int64_t)JB_CUDA_SPLIT_BUDGET * cfg->num_attention_heads * (cfg->head_dim + 2) : 0;
    c->meta_bytes = meta_layout(c, NULL, false);
    int sms = 0;
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, c->device);
    c->sms = sms > 0 ? sms : 1;

    arena_plan plan = {};
    device_plan(c, plan);
    bool overflow = plan.overflow;
    const uint64_t need = plan_total(plan, &overflow) + BLAS_WORKSPACE;
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    jamba_status st = JAMBA_OK;
    cudaError_t e = cudaSuccess;
    if (overflow)
        st = jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "CUDA context: the sizes overflow 64 bits (n_ctx %lld, "
                     "n_seq_max %d, n_batch %lld)", (long long)c->C, c->S, (long long)c->Tb);
    else if ((e = cudaMalloc((void **)&c->arena, need)) != cudaSuccess)
        st = jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "CUDA context: needs %.2f GiB on device %d (KV cache %.2f GiB for "
                     "%d x %lld tokens, workspaces for %lld rows); %.2f GiB are free: %s", (double)need / (1 << 30),
                     c->device, (double)(2 * (uint64_t)c->A * (uint64_t)c->S * (uint64_t)c->C * (uint64_t)c->kv * c->es) / (1 << 30),
                     c->S, (long long)c->C, (long long)c->Tb, (double)free_b / (1 << 30), cudaGetErrorString(e));
    if (st == JAMBA_OK) {
        c->arena_bytes = need;
        plan_assign(plan, c->arena);
        meta_layout(c, c->d_meta, true);
        const char *what = NULL;
        if ((e = cudaMallocHost((void **)&c->h_meta, c->meta_bytes)) != cudaSuccess)
            what = "pinned step buffer";
        else if ((e = cudaMallocHost((void **)&c->h_begin, (size_t)(c->E + 1) * 4)) != cudaSuccess)
            what = "pinned MoE buffer";
        else if ((e = cudaMallocHost((void **)&c->h_sp, JB_CUDA_SAMPLE_ROWS * sizeof(jb_gpu_sample_params))) != cudaSuccess ||
                 (e = cudaMallocHost((void **)&c->h_pen, (size_t)JB_CUDA_SAMPLE_ROWS * JB_GPU_SAMPLE_MAX_PENALIZED * 4)) !=
                     cudaSuccess ||
                 (e = cudaMallocHost((void **)&c->h_stok, JB_CUDA_SAMPLE_ROWS * 4)) != cudaSuccess ||
                 (e = cudaMallocHost((void **)&c->h_sused, JB_CUDA_SAMPLE_ROWS * 4)) != cudaSuccess)
            what = "pinned sampling buffers";
        else if ((e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess)
            what = "stream";
        else if ((c->conv && (e = cudaMemsetAsync(c->conv, 0, (size_t)c->S * c->M * c->Di * (c->K - 1) * 4,
                                                  c->stream)) != cudaSuccess) ||
                 (c->ssm && (e = cudaMemsetAsync(c->ssm, 0, (size_t)c->S * c->M * c->Di * c->N * 4, c->stream)) !=
                                cudaSuccess) ||
                 (e = cudaStreamSynchronize(c->stream)) != cudaSuccess)
            what = "clearing the Mamba state";
        if (what)
            st = jb_fail(err, JAMBA_ERR_DEVICE, "CUDA context on device %d: %s: %s", c->device, what,
                         cudaGetErrorString(e));
        else
            meta_layout(c, c->h_meta, false);
    }
    if (st == JAMBA_OK) {
        cublasStatus_t b = cublasCreate(&c->blas);
        if (b == CUBLAS_STATUS_SUCCESS)
            b = cublasSetStream(c->blas, c->stream);
        if (b == CUBLAS_STATUS_SUCCESS)
            b = cublasSetWorkspace(c->blas, c->arena + (c->arena_bytes - BLAS_WORKSPACE), BLAS_WORKSPACE);
        if (b == CUBLAS_STATUS_SUCCESS)
            b = cublasSetMathMode(c->blas, CUBLAS_DEFAULT_MATH);
        if (b != CUBLAS_STATUS_SUCCESS)
            st = jb_fail(err, JAMBA_ERR_DEVICE, "CUDA context on device %d: cuBLAS setup failed: %s", c->device,
                         cublasGetStatusString(b));
    }
    if (st != JAMBA_OK) {
        cudaGetLastError();
        release(c);
        jb_free(c);
        return st;
    }
    *out = c;
    return JAMBA_OK;
}

extern "C" void jb_cuda_ctx_free(jb_cuda_ctx *c) {
    if (c == NULL)
        return;
    jb_device_scope scope(c->device);
    if (c->stream)
        cudaStreamSynchronize(c->stream);
    release(c);
    jb_free(c);
}

extern "C" uint64_t jb_cuda_ctx_bytes(const jb_cuda_ctx *c) { return c->arena_bytes; }

/* ---- sampling ----------------------------------------------------------------------------------------- */

extern "C" jamba_status jb_cuda_sample(jb_cuda_ctx *c, int64_t n, const jb_gpu_sample_params *params,
                                       const int32_t *penalized, int64_t max_penalized, int32_t *tokens,
                                       int32_t *used_draw, jamba_error *err) {
    JB_TRY(jb_cuda_check_alive(c, err));
    jb_device_scope scope(c->device);
    if (n > c->cap || max_penalized > JB_GPU_SAMPLE_MAX_PENALIZED)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "CUDA sampling: %lld rows (at most %lld), %lld penalised ids "
                       "(at most %d)", (long long)n, (long long)c->cap, (long long)max_penalized,
                       JB_GPU_SAMPLE_MAX_PENALIZED);
    for (int64_t r0 = 0; r0 < n; r0 += JB_CUDA_SAMPLE_ROWS) {
        const int64_t m = n - r0 < JB_CUDA_SAMPLE_ROWS ? n - r0 : JB_CUDA_SAMPLE_ROWS;
        memcpy(c->h_sp, params + r0, (size_t)m * sizeof *params);
        for (int64_t i = 0; i < m; i++)
            memcpy(c->h_pen + i * JB_GPU_SAMPLE_MAX_PENALIZED, penalized + (r0 + i) * max_penalized,
                   (size_t)params[r0 + i].n_penalized * 4);
        cudaError_t e = cudaMemcpyAsync(c->d_sp, c->h_sp, (size_t)m * sizeof *params, cudaMemcpyHostToDevice, c->stream);
        if (e == cudaSuccess)
            e = cudaMemcpyAsync(c->d_pen, c->h_pen, (size_t)m * JB_GPU_SAMPLE_MAX_PENALIZED * 4, cudaMemcpyHostToDevice,
                                c->stream);
        if (e == cudaSuccess)
            e = jb_gpu_sample(c->logits + r0 * c->V, m, c->V, c->d_sp, c->d_pen, JB_GPU_SAMPLE_MAX_PENALIZED, c->d_swork,
                              c->d_stok, c->d_sused, c->stream);
        if (e == cudaSuccess)
            e = cudaMemcpyAsync(c->h_stok, c->d_stok, (size_t)m * 4, cudaMemcpyDeviceToHost, c->stream);
        if (e == cudaSuccess)
            e = cudaMemcpyAsync(c->h_sused, c->d_sused, (size_t)m * 4, cudaMemcpyDeviceToHost, c->stream);
        if (e == cudaSuccess)
            e = cudaStreamSynchronize(c->stream);
        if (e != cudaSuccess)
            return jb_cuda_fault(c, err, "sampling", cudaGetErrorString(e));
        memcpy(tokens + r0, c->h_stok, (size_t)m * 4);
        memcpy(used_draw + r0, c->h_sused, (size_t)m * 4);
    }
    return JAMBA_OK;
}

extern "C" jamba_status jb_cuda_logits_row(jb_cuda_ctx *c, int64_t row, float *dst, jamba_error *err) {
    JB_TRY(jb_cuda_check_alive(c, err));
    jb_device_scope scope(c->device);
    if (row < 0 || row >= c->cap)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "CUDA logits: row %lld outside [0, %lld)", (long long)row,
                       (long long)c->cap);
    cudaError_t e = copy_sync(c, dst, c->logits + row * c->V, (size_t)c->V * 4, cudaMemcpyDeviceToHost);
    return e == cudaSuccess ? JAMBA_OK : jb_cuda_fault(c, err, "reading logits", cudaGetErrorString(e));
}

/* ---- sequence state ------------------------------------------------------------------------------------- */

namespace {

/* Device address and element size of floats [offset, offset + n) of one piece. */
struct piece_at {
    char *p;
    size_t es;
};

piece_at piece(jb_cuda_ctx *c, int32_t seq, jb_state_kind kind, int64_t layer, int64_t offset) {
    switch (kind) {
    case JB_STATE_CONV:
        return {(char *)(c->conv + ((int64_t)seq * c->M + layer) * c->Di * (c->K - 1) + offset), 4};
    case JB_STATE_SSM:
        return {(char *)(c->ssm + ((int64_t)seq * c->M + layer) * c->Di * c->N + offset), 4};
    default: {
        const int64_t which = kind == JB_STATE_V;
        const int64_t at = ((((int64_t)seq * c->A + layer) * 2 + which) * c->C) * c->kv + offset;
        return {(char *)c->kv_cache + (size_t)at * c->es, c->es};
    }
    }
}

} // namespace

extern "C" jamba_status jb_cuda_seq_reset(jb_cuda_ctx *c, int32_t seq, jamba_error *err) {
    JB_TRY(jb_cuda_check_alive(c, err));
    jb_device_scope scope(c->device);
    cudaError_t e = cudaSuccess;
    if (c->M > 0 && c->K > 1)
        e = cudaMemsetAsync(piece(c, seq, JB_STATE_CONV, 0, 0).p, 0, (size_t)(c->M * c->Di * (c->K - 1)) * 4, c->stream);
    if (c->M > 0 && e == cudaSuccess) {
        e = cudaMemsetAsync(piece(c, seq, JB_STATE_SSM, 0, 0).p, 0, (size_t)(c->M * c->Di * c->N) * 4, c->stream);
    }
    if (e == cudaSuccess)
        e = cudaStreamSynchronize(c->stream);
    return e == cudaSuccess ? JAMBA_OK : jb_cuda_fault(c, err, "resetting a sequence", cudaGetErrorString(e));
}

extern "C" jamba_status jb_cuda_seq_copy(jb_cuda_ctx *c, int32_t src, int32_t dst, int64_t n_tokens, jamba_error *err) {
    JB_TRY(jb_cuda_check_alive(c, err));
    jb_device_scope scope(c->device);
    cudaError_t e = cudaSuccess;
    if (c->M > 0 && c->K > 1)
        e = cudaMemcpyAsync(piece(c, dst, JB_STATE_CONV, 0, 0).p, piece(c, src, JB_STATE_CONV, 0, 0).p,
                            (size_t)(c->M * c->Di * (c->K - 1)) * 4, cudaMemcpyDeviceToDevice, c->stream);
    if (c->M > 0 && e == cudaSuccess) {
        e = cudaMemcpyAsync(piece(c, dst, JB_STATE_SSM, 0, 0).p, piece(c, src, JB_STATE_SSM, 0, 0).p,
                                (size_t)(c->M * c->Di * c->N) * 4, cudaMemcpyDeviceToDevice, c->stream);
    }
    for (int64_t a = 0; a < c->A && e == cudaSuccess; a++)
        for (int kind = JB_STATE_K; kind <= JB_STATE_V && e == cudaSuccess; kind++)
            e = cudaMemcpyAsync(piece(c, dst, (jb_state_kind)kind, a, 0).p, piece(c, src, (jb_state_kind)kind, a, 0).p,
                                (size_t)(n_tokens * c->kv) * c->es, cudaMemcpyDeviceToDevice, c->stream);
    if (e == cudaSuccess)
        e = cudaStreamSynchronize(c->stream);
    return e == cudaSuccess ? JAMBA_OK : jb_cuda_fault(c, err, "copying a sequence", cudaGetErrorString(e));
}

/* bf16 <-> f32 on the host for KV pieces of a bf16 context. */
static float bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float v;
    memcpy(&v, &bits, 4);
    return v;
}

extern "C" jamba_status jb_cuda_state_read(jb_cuda_ctx *c, int32_t seq, jb_state_kind kind, int64_t layer,
                                           int64_t offset, int64_t n, float *dst, jamba_error *err) {
    JB_TRY(jb_cuda_check_alive(c, err));
    if (n <= 0)
        return JAMBA_OK;
    jb_device_scope scope(c->device);
    const piece_at at = piece(c, seq, kind, layer, offset);
    cudaError_t e;
    if (at.es == 4) {
        e = copy_sync(c, dst, at.p, (size_t)n * 4, cudaMemcpyDeviceToHost);
    } else {
        /* the bf16 values land in the back half of dst, then widen front to back */
        uint16_t *half = (uint16_t *)(dst + n) - n;
        e = copy_sync(c, half, at.p, (size_t)n * 2, cudaMemcpyDeviceToHost);
        for (int64_t i = 0; i < n && e == cudaSuccess; i++)
            dst[i] = bf16_to_f32(half[i]);
    }
    return e == cudaSuccess ? JAMBA_OK : jb_cuda_fault(c, err, "reading sequence state", cudaGetErrorString(e));
}

extern "C" jamba_status jb_cuda_state_write(jb_cuda_ctx *c, int32_t seq, jb_state_kind kind, int64_t layer,
                                            int64_t offset, int64_t n, const float *src, jamba_error *err) {
    JB_TRY(jb_cuda_check_alive(c, err));
    if (n <= 0)
        return JAMBA_OK;
    jb_device_scope scope(c->device);
    const piece_at at = piece(c, seq, kind, layer, offset);
    cudaError_t e;
    if (at.es == 4) {
        e = copy_sync(c, at.p, src, (size_t)n * 4, cudaMemcpyHostToDevice);
    } else {
        __nv_bfloat16 *tmp = (__nv_bfloat16 *)jb_malloc((size_t)(n > 0 ? n : 1) * 2);
        if (tmp == NULL)
            return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "CUDA state write: out of memory");
        for (int64_t i = 0; i < n; i++)
            tmp[i] = __float2bfloat16(src[i]);
        e = copy_sync(c, at.p, tmp, (size_t)n * 2, cudaMemcpyHostToDevice);
        jb_free(tmp);
    }
    return e == cudaSuccess ? JAMBA_OK : jb_cuda_fault(c, err, "writing sequence state", cudaGetErrorString(e));
}
