/*
 * forward.cu — one forward step on the GPU, the CUDA twin of cpu/forward.c (the FFN halves: ffn.cu, moe.cu).
 *
 * The host lays the step out (tokens, segments, scan chunks, logit rows) in a pinned block and sends it
 * with one copy; every kernel then reads the layout from device memory. A decode step (every segment one
 * token, no capture hook) is recorded once per row count as a CUDA graph and replayed: its MoE experts
 * run as GEMVs reading the routing from device memory and its attention splits are fixed by n_ctx, so
 * nothing in it depends on host values that change from step to step. Prefill steps run the same code
 * directly and may use cuBLAS per expert (one host read of the expert counts per MoE layer).
 */
#include "ckpt/config.h"
#include "base/alloc.h"
#include "base/error.h"
#include "cuda/layer_dev.h"
#include "cuda/step_plan.h"

#include <string.h>

namespace {

bool mamba_layer(jb_cuda_ctx *c, const jb_dev_mamba *w, int64_t slot, const jb_step_shape &s, jb_run_state &rs) {
    if (!jb_cuda_mamba_in(c, w, slot, s, rs) || !jb_cuda_mamba_out(c, w, slot, s, rs))
        return false;
    if (w->out_bias)
        CU(jb_cuda_add_bias(JAMBA_DTYPE_F32, c->mix, c->H, w->out_bias, s.T, c->H, c->stream), "mamba out_proj bias");
    return true;
}

/* Copy this step's rows of a device f32 [T, width] buffer into a capture buffer (NULL: not captured) after
 * earlier steps' rows. */
bool capture_rows(jb_cuda_ctx *c, const jb_step_shape &s, float *dst_base, const float *src, int64_t width,
                  jb_run_state &rs) {
    const int64_t keep = jb_capture_keep(s.cap, s.T);
    if (dst_base && keep > 0)
        CU(cudaMemcpyAsync(dst_base + s.cap->next_row * width, src, (size_t)(keep * width) * 4, cudaMemcpyDeviceToHost,
                           c->stream), "capturing hidden states");
    return true;
}

/* The layer hook after decoder layer `layer`, whose output is in x: the rows go to the host (hook_rows
 * [T, H]) and, when the hook changed them, back; then xn_w (the next layer's input norm, or NULL after the
 * last layer) normalises them again into xn. */
bool call_hook(jb_cuda_ctx *c, const jb_step_shape &s, int64_t layer, float *hook_rows, const float *xn_w,
               jb_run_state &rs) {
    const int64_t T = s.T, H = c->H;
    CU(cudaMemcpyAsync(hook_rows, c->x, (size_t)(T * H) * 4, cudaMemcpyDeviceToHost, c->stream), "layer hook");
    CU(cudaStreamSynchronize(c->stream), "layer hook");
    if (!s.cap->hook(s.cap->hook_data, layer, s.cap->next_row, hook_rows, T, H))
        return true;
    CU(cudaMemcpyAsync(c->x, hook_rows, (size_t)(T * H) * 4, cudaMemcpyHostToDevice, c->stream), "layer hook");
    CU(cudaStreamSynchronize(c->stream), "layer hook");
    if (xn_w)
        CU(jb_cuda_add_rmsnorm(c->dt, c->x, NULL, xn_w, c->xn, T, H, (float)c->cfg->rms_norm_eps, c->stream),
           "input norm after the layer hook");
    return true;
}

/* hook_rows: [T, H] host rows for the layer hook (when the capture has one). */
bool run_forward(jb_cuda_ctx *c, const jb_step_shape &s, float *hook_rows, jb_run_state &rs) {
    const jamba_config *cfg = c->cfg;
    const jamba_dtype dt = c->dt;
    const int64_t T = s.T, H = c->H, L = c->L;
    const float eps = (float)cfg->rms_norm_eps;
    const jb_capture *cap = s.cap;
    CU(jb_cuda_embed(dt, c->x, c->w->embed, c->d_tokens, T, H, c->stream), "embedding");
    if (cap && !capture_rows(c, s, jb_capture_hidden(cap, 0, H), c->x, H, rs))
        return false;
    int64_t attn_slot = 0, mamba_slot = 0, moe_slot = 0;
    for (int64_t l = 0; l < L; l++) {
        const jb_dev_layer *w = &c->w->layers[l];
        /* x += the previous layer's FFN output: the stream entering layer l */
        CU(jb_cuda_add_rmsnorm(dt, c->x, l > 0 ? c->mix : NULL, w->input_norm, c->xn, T, H, eps, c->stream),
           "input norm");
        if (cap && cap->hook && l > 0 && !call_hook(c, s, l - 1, hook_rows, w->input_norm, rs))
            return false;
        if (cap && l > 0 && !capture_rows(c, s, jb_capture_hidden(cap, l, H), c->x, H, rs))
            return false;
        if (w->attention ? !jb_cuda_attention_layer(c, w, attn_slot++, s, rs) : !mamba_layer(c, &w->mamba, mamba_slot++, s, rs))
            return false;
        CU(jb_cuda_add_rmsnorm(dt, c->x, c->mix, w->pre_ff_norm, c->xn, T, H, eps, c->stream), "pre-FFN norm");
        if (w->moe ? !jb_cuda_moe_ffn(c, w, s, rs) : !jb_cuda_dense_ffn(c, w, s, rs))
            return false;
        /* the router logits stay in c->router until the next MoE layer */
        if (w->moe && cap && cap->router &&
            !capture_rows(c, s, cap->router + moe_slot * cap->rows * c->E, c->router, c->E, rs))
            return false;
        moe_slot += w->moe;
        if (s.abort_fn && l + 1 < L) { /* wait for the layer, then ask */
            CU(cudaStreamSynchronize(c->stream), "running a layer");
            if (s.abort_fn(s.abort_data)) {
                rs.aborted = true;
                snprintf(rs.detail, sizeof rs.detail, "after layer %lld", (long long)l);
                return false;
            }
        }
    }
    CU(jb_cuda_add_rmsnorm(dt, c->x, c->mix, NULL, NULL, T, H, eps, c->stream), "residual add");
    if (cap && cap->hook && !call_hook(c, s, L - 1, hook_rows, NULL, rs))
        return false;
    float *final_dst = cap ? jb_capture_hidden(cap, L, H) : NULL;
    if (cap && (cap->final || final_dst)) {
        /* the final norm of every row in fp32; mix is free now */
        CU(jb_cuda_add_rmsnorm(JAMBA_DTYPE_F32, c->x, NULL, c->w->final_norm, c->mix, T, H, eps, c->stream),
           "final norm");
        if (!capture_rows(c, s, cap->final, c->mix, H, rs) || !capture_rows(c, s, final_dst, c->mix, H, rs))
            return false;
    }
    if (s.n_logits > 0) {
        CU(jb_cuda_gather_rows(c->final_rows, c->x, c->d_logit_src, s.n_logits, H, c->stream), "logit rows");
        CU(jb_cuda_add_rmsnorm(dt, c->final_rows, NULL, c->w->final_norm, c->final_act, s.n_logits, H, eps, c->stream),
           "final norm");
        BL(jb_cuda_gemm(c->blas, dt, JAMBA_DTYPE_F32, s.logits, c->V, c->final_act, H, c->w->lm_head, s.n_logits, c->V,
                       H), "lm_head");
    }
    return true;
}

/* Attention key splits for T rows: as many as the budget allows, each at least MIN_SPLIT_LEN keys. */
void choose_splits(const jb_cuda_ctx *c, int64_t T, jb_step_shape &s) {
    int64_t most = (c->C + JB_CUDA_MIN_SPLIT_LEN - 1) / JB_CUDA_MIN_SPLIT_LEN;
    int64_t n = JB_CUDA_SPLIT_BUDGET / (T > 0 ? T : 1);
    if (n > most)
        n = most;
    if (n < 1)
        n = 1;
    s.n_splits = (int32_t)n;
    s.split_len = (c->C + n - 1) / n;
}

/* Offsets of this step's layout in the metadata block (the same on host and device): tokens, row map,
 * logit rows, segments, then the scan chunks, whose count the planner decides; returns where those start.
 * For a decode graph the offsets depend on T alone, as its recorded kernels require. Fits the block:
 * every count is within the capacities the block was sized for. */
size_t pack_layout(jb_cuda_ctx *c, int64_t T, int64_t n_segs, int64_t n_logits) {
    size_t off = 0;
    auto take = [&](size_t bytes) {
        const size_t at = off;
        off += (bytes + 15) / 16 * 16;
        return at;
    };
    const size_t tok = take((size_t)T * 4), rs = take((size_t)T * 4), ls = take((size_t)n_logits * 8);
    const size_t sg = take((size_t)n_segs * sizeof(jb_cuda_seg));
    c->h_tokens = (int32_t *)(c->h_meta + tok), c->d_tokens = (int32_t *)(c->d_meta + tok);
    c->h_row_seg = (int32_t *)(c->h_meta + rs), c->d_row_seg = (int32_t *)(c->d_meta + rs);
    c->h_logit_src = (int64_t *)(c->h_meta + ls), c->d_logit_src = (int64_t *)(c->d_meta + ls);
    c->h_segs = (jb_cuda_seg *)(c->h_meta + sg), c->d_segs = (jb_cuda_seg *)(c->d_meta + sg);
    c->h_chunks = (jb_cuda_chunk *)(c->h_meta + off), c->d_chunks = (jb_cuda_chunk *)(c->d_meta + off);
    return off;
}

jamba_status fault(jb_cuda_ctx *c, jamba_error *err, const jb_run_state &rs) {
    return jb_cuda_fault(c, err, rs.what, rs.detail);
}

} // namespace

extern "C" jamba_status jb_cuda_step(jb_cuda_ctx *c, const jb_step_io *io, jamba_error *err) {
    const jb_segment *segs = io->segs;
    const int64_t n_segs = io->n_segs, T = io->n_rows, n_logits = io->n_logits, logit_dst = io->logit_dst;
    const int64_t *logit_src = io->logit_src;
    float *host_logits = io->host_logits;
    jb_capture *cap = io->capture;
    JB_TRY(jb_cuda_check_alive(c, err));
    if (T < 1 || T > c->Tb || n_segs < 1 || n_segs > c->max_segs || n_logits < 0 || logit_dst < 0 ||
        logit_dst + n_logits > c->cap)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "CUDA step: %lld rows in %lld segments, %lld logit rows at "
                       "%lld (limits %lld, %lld, %lld)", (long long)T, (long long)n_segs, (long long)n_logits,
                       (long long)logit_dst, (long long)c->Tb, (long long)c->max_segs, (long long)c->cap);
    jb_device_scope scope(c->device);
    jb_run_state rs = {NULL, "", false};
    cudaError_t e;
    if (c->pending) { /* the previous step may still read the pinned layout block */
        if ((e = cudaStreamSynchronize(c->stream)) != cudaSuccess)
            return jb_cuda_fault(c, err, "running the previous step", cudaGetErrorString(e));
        c->pending = false;
    }

    bool decode = true;
    for (int64_t i = 0; i < n_segs; i++)
        decode = decode && segs[i].n == 1;
    const bool graph = c->graphs && decode && cap == NULL && T <= JB_CUDA_GRAPH_ROWS && T * c->k <= JB_CUDA_GEMV_SLOTS;
    /* lay the step out in the pinned block, packed so that one copy of exactly the used bytes sends it */
    const size_t chunks_at = pack_layout(c, T, n_segs, graph ? T : n_logits);
    for (int64_t i = 0; i < n_segs; i++)
        memcpy(c->h_tokens + segs[i].row, segs[i].tokens, (size_t)segs[i].n * 4);
    int G = 1;
    while (G < 32 && G < c->N)
        G <<= 1;
    const int64_t chunk_len = c->M ? jb_scan_chunk_len(T, c->Di * G, (int64_t)c->sms * 1024, JB_CUDA_SCAN_SLOTS, 32) : T;
    jb_step_plan plan = {c->h_row_seg, c->h_segs, c->h_chunks, 0, 0, 0, 0, 0};
    jb_step_plan_build(&plan, segs, n_segs, chunk_len);
    jb_step_shape s = {};
    s.T = T;
    s.n_segs = n_segs;
    s.n_chunks = plan.n_chunks;
    s.n_slots = plan.n_slots;
    s.max_seg_rows = plan.max_seg_rows;
    s.cap = cap;
    s.abort_fn = graph ? NULL : io->abort_fn;
    s.abort_data = io->abort_data;
    s.moe_gemv = T * c->k <= JB_CUDA_GEMV_SLOTS;
    choose_splits(c, T, s);
    if (graph) {
        /* a graph computes logits for all its rows into graph_logits; the asked rows are copied after */
        for (int64_t i = 0; i < T; i++)
            c->h_logit_src[i] = i;
        s.n_logits = T;
        s.logits = c->graph_logits;
    } else {
        memcpy(c->h_logit_src, logit_src, (size_t)n_logits * 8);
        s.n_logits = n_logits;
        s.logits = c->logits + logit_dst * c->V;
    }
    e = cudaMemcpyAsync(c->d_meta, c->h_meta, chunks_at + (size_t)plan.n_chunks * sizeof(jb_cuda_chunk),
                        cudaMemcpyHostToDevice, c->stream);
    if (e != cudaSuccess)
        return jb_cuda_fault(c, err, "sending the step layout", cudaGetErrorString(e));

    if (graph) {
        if (c->graph[T] == NULL) {
            if ((e = cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal)) != cudaSuccess)
                return jb_cuda_fault(c, err, "starting a CUDA graph capture", cudaGetErrorString(e));
            const bool ok = run_forward(c, s, NULL, rs); /* a graph step has no capture */
            cudaGraph_t g = NULL;
            e = cudaStreamEndCapture(c->stream, &g);
            if (!ok) {
                if (g)
                    cudaGraphDestroy(g);
                return fault(c, err, rs);
            }
            if (e == cudaSuccess)
                e = cudaGraphInstantiate(&c->graph[T], g, 0);
            if (g)
                cudaGraphDestroy(g);
            if (e != cudaSuccess)
                return jb_cuda_fault(c, err, "recording the decode step as a CUDA graph", cudaGetErrorString(e));
        }
        if ((e = cudaGraphLaunch(c->graph[T], c->stream)) != cudaSuccess)
            return jb_cuda_fault(c, err, "replaying the decode step", cudaGetErrorString(e));
        for (int64_t i = 0; i < n_logits && e == cudaSuccess; i++)
            e = cudaMemcpyAsync(c->logits + (logit_dst + i) * c->V, c->graph_logits + logit_src[i] * c->V,
                                (size_t)c->V * 4, cudaMemcpyDeviceToDevice, c->stream);
        if (e != cudaSuccess)
            return jb_cuda_fault(c, err, "collecting logits", cudaGetErrorString(e));
    } else {
        float *hook_rows = NULL; /* [T, H] host rows for the layer hook */
        if (cap && cap->hook && (hook_rows = (float *)jb_malloc((size_t)(T * c->H) * sizeof(float))) == NULL)
            return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "CUDA step: out of memory for %lld rows for the layer hook",
                           (long long)T);
        const bool ok = run_forward(c, s, hook_rows, rs);
        jb_free(hook_rows);
        if (!ok && rs.aborted)
            return jb_fail(err, JAMBA_ERR_ABORTED, "CUDA step: stopped by the abort callback %s", rs.detail);
        if (!ok)
            return fault(c, err, rs);
    }
    if (host_logits && n_logits > 0) {
        e = cudaMemcpyAsync(host_logits + logit_dst * c->V, c->logits + logit_dst * c->V,
                            (size_t)(n_logits * c->V) * 4, cudaMemcpyDeviceToHost, c->stream);
        if (e != cudaSuccess)
            return jb_cuda_fault(c, err, "reading logits", cudaGetErrorString(e));
    }
    if (host_logits || cap) {
        if ((e = cudaStreamSynchronize(c->stream)) != cudaSuccess)
            return jb_cuda_fault(c, err, "running the step", cudaGetErrorString(e));
    } else if ((e = cudaGetLastError()) != cudaSuccess) {
        return jb_cuda_fault(c, err, "running the step", cudaGetErrorString(e));
    } else {
        c->pending = true;
    }
    return JAMBA_OK;
}
