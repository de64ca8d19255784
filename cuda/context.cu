/*
 * context.cu — a CUDA context: one device allocation planned from the config and the context sizes
 * (state, workspaces, step metadata), its stream and cuBLAS handle; sampling on the device; and the
 * sequence-state operations (reset, copy, read and write for state files).
 */
#include "ckpt/config.h"
#include "ckpt/dtype.h"
#include "base/alloc.h"
#include "base/error.h"
#include "cuda/context_dev.h"

#include <cuda_fp8.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


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

/* Where each planned buffer's pointer goes. */
void buffer_slots(jb_cuda_ctx *c, void **slot[JB_BUF_COUNT]) {
#define JB_CTX_BUF_SLOT(name, field, bytes) slot[JB_BUF_##name] = (void **)&c->field;
    JB_CTX_BUFFERS(JB_CTX_BUF_SLOT)
#undef JB_CTX_BUF_SLOT
}

/* Point the step metadata parts into the block at base: the device copy or the pinned host mirror (the
 * same offsets, jb_ctx_meta_layout's). */
void meta_place(jb_cuda_ctx *c, char *base, bool device) {
    uint64_t off[JB_META_PARTS];
    jb_ctx_meta_layout(c->Tb, c->max_segs, c->max_chunks, c->cap, off);
    int32_t *tokens = (int32_t *)(base + off[JB_META_TOKENS]), *row_seg = (int32_t *)(base + off[JB_META_ROW_SEG]);
    jb_cuda_seg *segs = (jb_cuda_seg *)(base + off[JB_META_SEGS]);
    jb_cuda_chunk *chunks = (jb_cuda_chunk *)(base + off[JB_META_CHUNKS]);
    int64_t *logit_src = (int64_t *)(base + off[JB_META_LOGIT_SRC]);
    if (device) {
        c->d_tokens = tokens, c->d_row_seg = row_seg, c->d_segs = segs, c->d_chunks = chunks;
        c->d_logit_src = logit_src;
    } else {
        c->h_tokens = tokens, c->h_row_seg = row_seg, c->h_segs = segs, c->h_chunks = chunks;
        c->h_logit_src = logit_src;
    }
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
    cudaFreeHost(c->h_sample_params);
    cudaFreeHost(c->h_penalized);
    cudaFreeHost(c->h_sample_tokens);
    cudaFreeHost(c->h_sample_used);
    cudaGetLastError();
}

/* The cooperative Mamba mixer's grids (mamba_decode.cu), decided once: 0 where the device has no cooperative
 * launch, where the kernel does not fit, or when JAMBA_CUDA_NO_COOPERATIVE is set to anything but "0" (the
 * switch the GPU tests use to run the four-launch path on a device that has it). */
void choose_mamba_grid(jb_cuda_ctx *c) {
    const char *off = getenv("JAMBA_CUDA_NO_COOPERATIVE");
    c->mamba_grid[0] = c->mamba_grid[1] = 0;
    if (c->M == 0 || (off && off[0] && strcmp(off, "0") != 0))
        return;
    const int64_t rows[2] = {1, JB_CUDA_FUSED_ROWS};
    for (int i = 0; i < 2; i++)
        if (jb_cuda_mamba_mixer_grid(c->dt, rows[i], c->R, c->N, c->device, &c->mamba_grid[i]) != cudaSuccess) {
            c->mamba_grid[0] = c->mamba_grid[1] = 0;
            cudaGetLastError();
            return;
        }
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
    c->kv_dt = p->kv_dtype == JAMBA_DTYPE_F8_E4M3 ? JAMBA_DTYPE_F8_E4M3 : c->dt;
    c->kv_es = jamba_dtype_size(c->kv_dt);
    int sms = 0;
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, c->device);
    c->sms = sms > 0 ? sms : 1;

    const jb_ctx_shape shape = {c->S, c->C, c->Tb, c->cap, c->dt, c->kv_dt, c->graphs};
    jb_ctx_layout layout;
    jamba_status st = jb_ctx_layout_plan(cfg, &shape, &layout, err);
    c->max_segs = layout.max_segs;
    c->max_chunks = layout.max_chunks;
    c->partial_cap = layout.partial_floats;
    c->split_count_cap = layout.split_counters;
    c->meta_bytes = layout.bytes[JB_BUF_META];
    const uint64_t need = layout.total;
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    cudaError_t e = cudaSuccess;
    if (st == JAMBA_OK && (e = cudaMalloc((void **)&c->arena, need)) != cudaSuccess)
        st = jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "CUDA context: needs %.2f GiB on device %d (KV cache %.2f GiB for "
                     "%d x %lld tokens, workspaces for %lld rows); %.2f GiB are free: %s", (double)need / (1 << 30),
                     c->device, (double)(layout.bytes[JB_BUF_KV] + layout.bytes[JB_BUF_KV_SCALE]) / (1 << 30), c->S,
                     (long long)c->C, (long long)c->Tb, (double)free_b / (1 << 30), cudaGetErrorString(e));
    if (st == JAMBA_OK) {
        c->arena_bytes = need;
        void **slot[JB_BUF_COUNT];
        buffer_slots(c, slot);
        for (int i = 0; i < JB_BUF_COUNT; i++)
            *slot[i] = layout.bytes[i] ? c->arena + layout.offset[i] : NULL;
        meta_place(c, c->d_meta, true);
        const char *what = NULL;
        if ((e = cudaMallocHost((void **)&c->h_meta, c->meta_bytes)) != cudaSuccess)
            what = "pinned step buffer";
        else if ((e = cudaMallocHost((void **)&c->h_begin, (size_t)(c->E + 1) * 4)) != cudaSuccess)
            what = "pinned MoE buffer";
        else if ((e = cudaMallocHost((void **)&c->h_sample_params, JB_CUDA_SAMPLE_ROWS * sizeof(jb_sample_params))) != cudaSuccess ||
                 (e = cudaMallocHost((void **)&c->h_penalized, (size_t)JB_CUDA_SAMPLE_ROWS * JB_SAMPLE_MAX_PENALIZED * 4)) !=
                     cudaSuccess ||
                 (e = cudaMallocHost((void **)&c->h_sample_tokens, JB_CUDA_SAMPLE_ROWS * 4)) != cudaSuccess ||
                 (e = cudaMallocHost((void **)&c->h_sample_used, JB_CUDA_SAMPLE_ROWS * 4)) != cudaSuccess)
            what = "pinned sampling buffers";
        else if ((e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess)
            what = "stream";
        else if ((c->conv && (e = cudaMemsetAsync(c->conv, 0, (size_t)c->S * c->M * c->Di * (c->K - 1) * 4,
                                                  c->stream)) != cudaSuccess) ||
                 (c->ssm && (e = cudaMemsetAsync(c->ssm, 0, (size_t)c->S * c->M * c->Di * c->N * 4, c->stream)) !=
                                cudaSuccess) ||
                 (e = cudaMemsetAsync(c->sync_counter, 0, sizeof *c->sync_counter, c->stream)) != cudaSuccess ||
                 (c->split_count && (e = cudaMemsetAsync(c->split_count, 0, (size_t)c->split_count_cap * 4,
                                                         c->stream)) != cudaSuccess) ||
                 (e = cudaStreamSynchronize(c->stream)) != cudaSuccess)
            what = "clearing the Mamba state and the kernel counters";
        if (what)
            st = jb_fail(err, JAMBA_ERR_DEVICE, "CUDA context on device %d: %s: %s", c->device, what,
                         cudaGetErrorString(e));
        else
            meta_place(c, c->h_meta, false);
    }
    if (st == JAMBA_OK) {
        cublasStatus_t b = cublasCreate(&c->blas);
        if (b == CUBLAS_STATUS_SUCCESS)
            b = cublasSetStream(c->blas, c->stream);
        if (b == CUBLAS_STATUS_SUCCESS)
            b = cublasSetWorkspace(c->blas, c->blas_ws, JB_CUDA_BLAS_WORKSPACE);
        if (b == CUBLAS_STATUS_SUCCESS)
            b = cublasSetMathMode(c->blas, CUBLAS_DEFAULT_MATH);
        if (b != CUBLAS_STATUS_SUCCESS)
            st = jb_fail(err, JAMBA_ERR_DEVICE, "CUDA context on device %d: cuBLAS setup failed: %s", c->device,
                         cublasGetStatusString(b));
    }
    if (st == JAMBA_OK)
        choose_mamba_grid(c);
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

extern "C" jamba_status jb_cuda_sample(jb_cuda_ctx *c, int64_t n, const jb_sample_params *params,
                                       const int32_t *penalized, int64_t max_penalized, int32_t *tokens,
                                       int32_t *used_draw, jamba_error *err) {
    JB_TRY(jb_cuda_check_alive(c, err));
    jb_device_scope scope(c->device);
    if (n > c->cap || max_penalized > JB_SAMPLE_MAX_PENALIZED)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "CUDA sampling: %lld rows (at most %lld), %lld penalised ids "
                       "(at most %d)", (long long)n, (long long)c->cap, (long long)max_penalized,
                       JB_SAMPLE_MAX_PENALIZED);
    for (int64_t r0 = 0; r0 < n; r0 += JB_CUDA_SAMPLE_ROWS) {
        const int64_t m = n - r0 < JB_CUDA_SAMPLE_ROWS ? n - r0 : JB_CUDA_SAMPLE_ROWS;
        memcpy(c->h_sample_params, params + r0, (size_t)m * sizeof *params);
        for (int64_t i = 0; i < m; i++)
            memcpy(c->h_penalized + i * JB_SAMPLE_MAX_PENALIZED, penalized + (r0 + i) * max_penalized,
                   (size_t)params[r0 + i].n_penalized * 4);
        cudaError_t e = cudaMemcpyAsync(c->d_sample_params, c->h_sample_params, (size_t)m * sizeof *params, cudaMemcpyHostToDevice, c->stream);
        if (e == cudaSuccess)
            e = cudaMemcpyAsync(c->d_penalized, c->h_penalized, (size_t)m * JB_SAMPLE_MAX_PENALIZED * 4, cudaMemcpyHostToDevice,
                                c->stream);
        if (e == cudaSuccess)
            e = jb_cuda_sample_rows(c->logits + r0 * c->V, m, c->V, c->d_sample_params, c->d_penalized, JB_SAMPLE_MAX_PENALIZED, c->d_sample_work,
                              c->d_sample_tokens, c->d_sample_used, c->stream);
        if (e == cudaSuccess)
            e = cudaMemcpyAsync(c->h_sample_tokens, c->d_sample_tokens, (size_t)m * 4, cudaMemcpyDeviceToHost, c->stream);
        if (e == cudaSuccess)
            e = cudaMemcpyAsync(c->h_sample_used, c->d_sample_used, (size_t)m * 4, cudaMemcpyDeviceToHost, c->stream);
        if (e == cudaSuccess)
            e = cudaStreamSynchronize(c->stream);
        if (e != cudaSuccess)
            return jb_cuda_fault(c, err, "sampling", cudaGetErrorString(e));
        memcpy(tokens + r0, c->h_sample_tokens, (size_t)m * 4);
        memcpy(used_draw + r0, c->h_sample_used, (size_t)m * 4);
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

/* Device address and element size of floats [offset, offset + n) of one piece; KV pieces of an fp8 cache
 * also give their scales (one per d_h values, the first at scale for the head holding `offset`). */
struct piece_at {
    char *p;
    size_t es;
    float *scale;
};

piece_at piece(jb_cuda_ctx *c, int32_t seq, jb_state_kind kind, int64_t layer, int64_t offset) {
    switch (kind) {
    case JB_STATE_CONV:
        return {(char *)(c->conv + ((int64_t)seq * c->M + layer) * c->Di * (c->K - 1) + offset), 4, NULL};
    case JB_STATE_SSM:
        return {(char *)(c->ssm + ((int64_t)seq * c->M + layer) * c->Di * c->N + offset), 4, NULL};
    default: {
        const int64_t which = kind == JB_STATE_V, row = ((int64_t)seq * c->A + layer) * 2 + which;
        const int64_t at = row * c->C * c->kv + offset, d_h = c->cfg->head_dim;
        float *scale = c->kv_scale ? c->kv_scale + row * c->C * (c->kv / d_h) + offset / d_h : NULL;
        return {(char *)c->kv_cache + (size_t)at * c->kv_es, c->kv_es, scale};
    }
    }
}

} // namespace

/* bf16 <-> f32 on the host for KV pieces of a bf16 context. */
static float bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float v;
    memcpy(&v, &bits, 4);
    return v;
}

/* fp8 KV values [offset, offset + n) of a piece as floats: bytes and the covering heads' scales. */
static cudaError_t read_fp8(jb_cuda_ctx *c, const piece_at &at, int64_t offset, int64_t n, float *dst) {
    const int64_t d_h = c->cfg->head_dim, first = offset / d_h, heads = (offset + n - 1) / d_h - first + 1;
    uint8_t *bytes = (uint8_t *)jb_malloc((size_t)n);
    float *scales = (float *)jb_malloc((size_t)heads * 4);
    cudaError_t e = bytes && scales ? cudaSuccess : cudaErrorMemoryAllocation;
    if (e == cudaSuccess)
        e = copy_sync(c, bytes, at.p, (size_t)n, cudaMemcpyDeviceToHost);
    if (e == cudaSuccess)
        e = copy_sync(c, scales, at.scale, (size_t)heads * 4, cudaMemcpyDeviceToHost);
    for (int64_t i = 0; i < n && e == cudaSuccess; i++)
        dst[i] = jb_e4m3_to_f32(bytes[i]) * scales[(offset + i) / d_h - first];
    jb_free(bytes);
    jb_free(scales);
    return e;
}

/* Whole heads of floats into an fp8 piece: per head amax / 448 and round-to-nearest-even bytes, as the
 * append kernel does. */
static cudaError_t write_fp8(jb_cuda_ctx *c, const piece_at &at, int64_t n, const float *src) {
    const int64_t d_h = c->cfg->head_dim, heads = n / d_h;
    uint8_t *bytes = (uint8_t *)jb_malloc((size_t)n);
    float *scales = (float *)jb_malloc((size_t)(heads > 0 ? heads : 1) * 4);
    cudaError_t e = bytes && scales && n % d_h == 0 ? cudaSuccess : cudaErrorMemoryAllocation;
    for (int64_t h = 0; h < heads && e == cudaSuccess; h++) {
        float amax = 0.0f;
        for (int64_t d = 0; d < d_h; d++)
            amax = fmaxf(amax, fabsf(src[h * d_h + d]));
        scales[h] = amax / 448.0f;
        for (int64_t d = 0; d < d_h; d++)
            bytes[h * d_h + d] = (uint8_t)__nv_cvt_float_to_fp8(scales[h] > 0.0f ? src[h * d_h + d] / scales[h] : 0.0f,
                                                                __NV_SATFINITE, __NV_E4M3);
    }
    if (e == cudaSuccess)
        e = copy_sync(c, at.p, bytes, (size_t)n, cudaMemcpyHostToDevice);
    if (e == cudaSuccess && heads > 0)
        e = copy_sync(c, at.scale, scales, (size_t)heads * 4, cudaMemcpyHostToDevice);
    jb_free(bytes);
    jb_free(scales);
    return e;
}

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
        {
            const piece_at to = piece(c, dst, (jb_state_kind)kind, a, 0), from = piece(c, src, (jb_state_kind)kind, a, 0);
            e = cudaMemcpyAsync(to.p, from.p, (size_t)(n_tokens * c->kv) * c->kv_es, cudaMemcpyDeviceToDevice,
                                c->stream);
            if (e == cudaSuccess && to.scale)
                e = cudaMemcpyAsync(to.scale, from.scale, (size_t)(n_tokens * (c->kv / c->cfg->head_dim)) * 4,
                                    cudaMemcpyDeviceToDevice, c->stream);
        }
    if (e == cudaSuccess)
        e = cudaStreamSynchronize(c->stream);
    return e == cudaSuccess ? JAMBA_OK : jb_cuda_fault(c, err, "copying a sequence", cudaGetErrorString(e));
}

extern "C" jamba_status jb_cuda_state_read(jb_cuda_ctx *c, int32_t seq, jb_state_kind kind, int64_t layer,
                                           int64_t offset, int64_t n, float *dst, jamba_error *err) {
    JB_TRY(jb_cuda_check_alive(c, err));
    if (n <= 0)
        return JAMBA_OK;
    jb_device_scope scope(c->device);
    const piece_at at = piece(c, seq, kind, layer, offset);
    cudaError_t e;
    if (at.scale) {
        e = read_fp8(c, at, offset, n, dst);
    } else if (at.es == 4) {
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
    if (at.scale) {
        if (offset % c->cfg->head_dim != 0 || n % c->cfg->head_dim != 0)
            return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "CUDA state write: an fp8 KV piece is written in whole "
                           "heads (offset %lld, %lld values)", (long long)offset, (long long)n);
        e = write_fp8(c, at, n, src);
    } else if (at.es == 4) {
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
