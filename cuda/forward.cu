/*
 * forward.cu — one forward step on the GPU, the CUDA twin of cpu/forward.c (the FFN halves: ffn.cu, moe.cu).
 *
 * The host lays the step out (tokens, segments, scan chunks, logit rows) in a pinned block and sends it
 * with one copy; every kernel then reads the layout from device memory. A decode step (every segment one
 * token, no capture hook) is recorded once per row count as a CUDA graph and replayed: its MoE experts
 * run as GEMVs reading the routing from device memory and its attention reads each row's split count from
 * its position in device memory, so
 * nothing in it depends on host values that change from step to step. Prefill steps run the same code
 * directly and may use cuBLAS per expert (one host read of the expert counts per MoE layer). Decode steps of
 * at most JB_CUDA_FUSED_ROWS rows without capture, graph or not, take the fused path (run_fused_decode), so a
 * replayed graph and a direct step compute the same numbers.
 */
#include "ckpt/config.h"
#include "base/alloc.h"
#include "base/error.h"
#include "cuda/attn_layout.h"
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

/* Wait for layer l, then ask the abort callback; false (rs.aborted) when it says stop. */
bool poll_abort(jb_cuda_ctx *c, const jb_step_shape &s, int64_t l, jb_run_state &rs) {
    CU(cudaStreamSynchronize(c->stream), "running a layer");
    if (s.abort_fn(s.abort_data)) {
        rs.aborted = true;
        snprintf(rs.detail, sizeof rs.detail, "after layer %lld", (long long)l);
        return false;
    }
    return true;
}

/* A fused decode step (s.fused): every layer output product adds into x and normalises for what follows
 * (fused.cu, mamba_decode.cu, moe.cu's decode block); only where an output stays in mix (int8 MLPs, MoE
 * blocks beyond the fused router's experts) does a residual add + norm launch remain.
 * The final norm covers all T rows into final_act, and lm_head reads the logit rows from it. */
bool run_fused_decode(jb_cuda_ctx *c, const jb_step_shape &s, jb_run_state &rs) {
    const jamba_dtype dt = c->dt;
    const int64_t T = s.T, H = c->H, L = c->L;
    const float eps = (float)c->cfg->rms_norm_eps;
    const jb_dev_layer *layers = c->w->layers;
    CU(jb_cuda_embed_rmsnorm(dt, c->x, c->w->embed, c->d_tokens, T, H, layers[0].input_norm, c->xn, eps, c->stream),
       "embedding and input norm");
    bool in_mix = false; /* the last layer output waits in mix */
    int64_t attn_slot = 0, mamba_slot = 0;
    for (int64_t l = 0; l < L; l++) {
        const jb_dev_layer *w = &layers[l];
        if (in_mix)
            CU(jb_cuda_add_rmsnorm(dt, c->x, c->mix, w->input_norm, c->xn, T, H, eps, c->stream), "input norm");
        const jb_next_norm pre_ff = {w->pre_ff_norm, c->xn};
        if (w->attention ? !jb_cuda_attention_layer(c, w, attn_slot++, s, rs)
                         : !jb_cuda_mamba_decode(c, &w->mamba, mamba_slot++, s, pre_ff, rs))
            return false;
        const jb_next_norm next = l + 1 < L ? jb_next_norm{layers[l + 1].input_norm, c->xn}
                                            : jb_next_norm{c->w->final_norm, c->final_act};
        const bool moe_fused = w->moe && jb_cuda_moe_decode_fused(c, s);
        if (w->moe ? !(moe_fused ? jb_cuda_moe_decode(c, w, s, next, rs) : jb_cuda_moe_ffn(c, w, s, rs))
                   : !jb_cuda_dense_ffn(c, w, s, next, rs))
            return false;
        in_mix = w->moe ? !moe_fused : !jb_cuda_dense_ffn_fused(w, s);
        if (s.abort_fn && l + 1 < L && !poll_abort(c, s, l, rs))
            return false;
    }
    if (in_mix)
        CU(jb_cuda_add_rmsnorm(dt, c->x, c->mix, c->w->final_norm, c->final_act, T, H, eps, c->stream),
           "residual add and final norm");
    if (s.n_logits > 0) {
        const jb_cuda_rows_product head = {c->w->lm_head, c->V, H, c->final_act, H, c->d_logit_src, s.n_logits};
        CU(jb_cuda_rows_gemv(dt, &head, JAMBA_DTYPE_F32, s.logits, c->V, c->stream), "lm_head");
    }
    return true;
}

/* hook_rows: [T, H] host rows for the layer hook (when the capture has one). */
bool run_forward(jb_cuda_ctx *c, const jb_step_shape &s, float *hook_rows, jb_run_state &rs) {
    const jamba_config *cfg = c->cfg;
    const jamba_dtype dt = c->dt;
    const int64_t T = s.T, H = c->H, L = c->L;
    const float eps = (float)cfg->rms_norm_eps;
    const jb_capture *cap = s.cap;
    if (s.fused)
        return run_fused_decode(c, s, rs);
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
        if (w->moe ? !jb_cuda_moe_ffn(c, w, s, rs) : !jb_cuda_dense_ffn(c, w, s, jb_next_norm{NULL, NULL}, rs))
            return false;
        /* the router logits stay in c->router until the next MoE layer */
        if (w->moe && cap && cap->router &&
            !capture_rows(c, s, cap->router + moe_slot * cap->rows * c->E, c->router, c->E, rs))
            return false;
        moe_slot += w->moe;
        if (s.abort_fn && l + 1 < L && !poll_abort(c, s, l, rs))
            return false;
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

/* Count the nodes of a captured decode graph and plan its launches (jb_cuda_graph_census). */
cudaError_t take_census(jb_cuda_ctx *c, const jb_step_shape &s, cudaGraph_t g) {
    size_t n = 0;
    cudaError_t e = cudaGraphGetNodes(g, NULL, &n);
    cudaGraphNode_t *nodes = e == cudaSuccess && n > 0 ? (cudaGraphNode_t *)jb_malloc(n * sizeof *nodes) : NULL;
    if (e != cudaSuccess || (n > 0 && nodes == NULL))
        return e != cudaSuccess ? e : cudaErrorMemoryAllocation;
    jb_graph_census cs = {};
    if (n > 0 && (e = cudaGraphGetNodes(g, nodes, &n)) == cudaSuccess)
        for (size_t i = 0; i < n && e == cudaSuccess; i++) {
            cudaGraphNodeType type;
            if ((e = cudaGraphNodeGetType(nodes[i], &type)) == cudaSuccess)
                cs.kernels += type == cudaGraphNodeTypeKernel;
        }
    jb_free(nodes);
    cs.nodes = (int64_t)n;
    bool mlp_int8 = false;
    for (int64_t l = 0; l < c->L; l++)
        mlp_int8 = mlp_int8 || (!c->w->layers[l].moe && c->w->layers[l].ffn_wdt == JAMBA_DTYPE_I8);
    const jb_decode_shape shape = {s.T, mlp_int8, jb_cuda_mamba_grid(c, s.T) > 0};
    cs.planned = jb_cuda_decode_launches(c->cfg, &shape, &cs.plan);
    c->census[s.T] = cs;
    return e;
}

jamba_status fault(jb_cuda_ctx *c, jamba_error *err, const jb_run_state &rs) {
    return jb_cuda_fault(c, err, rs.what, rs.detail);
}

} // namespace

void jb_cuda_choose_splits(const jb_cuda_ctx *c, int64_t T, jb_step_shape &s) {
    s.n_splits = jb_attn_max_splits(T, c->cfg->num_key_value_heads, c->sms, c->C, JB_CUDA_MIN_SPLIT_LEN,
                                    JB_CUDA_SPLIT_BUDGET);
    s.split_len = JB_CUDA_MIN_SPLIT_LEN;
}

bool jb_cuda_graph_step(const jb_cuda_ctx *c, int64_t T, bool decode) {
    return c->graphs && decode && T <= JB_CUDA_GRAPH_ROWS && T * c->k <= JB_CUDA_GEMV_SLOTS;
}

extern "C" bool jb_cuda_graph_census(const jb_cuda_ctx *c, int64_t T, jb_graph_census *out) {
    if (T < 1 || T > JB_CUDA_GRAPH_ROWS || c->graph[T] == NULL)
        return false;
    *out = c->census[T];
    return true;
}

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
    const bool graph = cap == NULL && jb_cuda_graph_step(c, T, decode);
    /* lay the step out in the pinned block, packed so that one copy of exactly the used bytes sends it */
    const size_t chunks_at = pack_layout(c, T, n_segs, graph ? T : n_logits);
    for (int64_t i = 0; i < n_segs; i++)
        memcpy(c->h_tokens + segs[i].row, segs[i].tokens, (size_t)segs[i].n * 4);
    const int64_t chunk_len = c->M ? jb_scan_chunk_rows(T, c->Di, c->sms, JB_CUDA_SCAN_SLOTS) : T;
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
    s.fused = jb_cuda_decode_fused(decode, cap != NULL, T, n_logits);
    jb_cuda_choose_splits(c, T, s);
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
                e = take_census(c, s, g);
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
