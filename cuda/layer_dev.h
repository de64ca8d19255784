/*
 * layer_dev.h — the parts of one forward step on the GPU shared by the files that run them (forward.cu:
 * the step, Mamba and attention layers; ffn.cu: dense FFNs and the int8-or-dt FFN product; moe.cu: the
 * MoE block). C++ only, internal to the CUDA backend.
 */
#ifndef JB_CUDA_LAYER_DEV_H
#define JB_CUDA_LAYER_DEV_H

#include "cuda/context_dev.h"

#include <stdio.h>

/* What a step looks like, host-side; fixed for a given graph. */
struct jb_step_shape {
    int64_t T, n_segs, n_chunks, max_seg_rows, n_logits;
    int32_t n_slots;
    float *logits;       /* where this step's logit rows go */
    int32_t n_splits;    /* attention key splits */
    int64_t split_len;
    bool moe_gemv;       /* experts as GEMVs (no host read) */
    bool fused;          /* a decode step of at most JB_CUDA_FUSED_ROWS rows without capture: the fused products
                            (fused.cu), layer outputs added into x with the next norm in their epilogue */
    jb_capture *cap;     /* hidden-state capture (never in a graph) */
    jamba_abort_fn abort_fn; /* polled after each layer once the device has run it (never in a graph) */
    void *abort_data;
};

/* Attention key splits for T rows (forward.cu; the multi-GPU step uses it on each rank): the most a row may
 * use (enough blocks for the SMs, within the partial budget and n_ctx; it depends on T alone, as a decode
 * graph needs); each row then uses as many as its own length gives at JB_CUDA_MIN_SPLIT_LEN keys or more per
 * split (cuda/attn_layout.h). */
void jb_cuda_choose_splits(const jb_cuda_ctx *c, int64_t T, jb_step_shape &s);

/* Whether a step of T rows without hidden-state capture is recorded once as a CUDA graph (kept in
 * c->graph[T]) and replayed: graphs on, a decode step (every segment one token), at most
 * JB_CUDA_GRAPH_ROWS rows whose MoE slots run as GEMVs. The one rule, for one GPU (forward.cu) and for
 * every rank of several (tp_forward.cu). */
bool jb_cuda_graph_step(const jb_cuda_ctx *c, int64_t T, bool decode);

/* The first failure inside a step: the op and the error text. */
struct jb_run_state {
    const char *what;
    char detail[160];
    bool aborted;        /* the abort callback stopped the step (not a fault) */
};

#define CU(call, op)                                                                                             \
    do {                                                                                                         \
        cudaError_t e_ = (call);                                                                                 \
        if (e_ != cudaSuccess) {                                                                                 \
            rs.what = (op);                                                                                      \
            snprintf(rs.detail, sizeof rs.detail, "%s", cudaGetErrorString(e_));                                 \
            return false;                                                                                        \
        }                                                                                                        \
    } while (0)

#define BL(call, op)                                                                                             \
    do {                                                                                                         \
        cublasStatus_t b_ = (call);                                                                              \
        if (b_ != CUBLAS_STATUS_SUCCESS) {                                                                       \
            rs.what = (op);                                                                                      \
            snprintf(rs.detail, sizeof rs.detail, "cuBLAS: %s", cublasGetStatusString(b_));                      \
            return false;                                                                                        \
        }                                                                                                        \
    } while (0)

static inline void *jb_at(void *base, int64_t elems, size_t es) { return (char *)base + (size_t)elems * es; }

static inline jb_cuda_step_desc jb_device_step(const jb_cuda_ctx *c, const jb_step_shape &s) {
    jb_cuda_step_desc st;
    st.tokens = c->d_tokens;
    st.row_seg = c->d_row_seg;
    st.segs = c->d_segs;
    st.chunks = c->d_chunks;
    st.T = s.T;
    st.n_segs = s.n_segs;
    st.n_chunks = s.n_chunks;
    st.n_slots = s.n_slots;
    st.max_seg_rows = s.max_seg_rows;
    return st;
}

/* In a fused decode step, where a layer's output product leaves the stream: added into x, then x's rows
 * normalised with w (the next layer's input norm, the layer's pre-FFN norm, or the final norm) into out. */
struct jb_next_norm {
    const float *w;
    void *out;
};

/* Y[n, N] = X[n, K] · W^T for one FFN matrix of the layer's block (ffn.cu). */
bool jb_cuda_ffn_matmul(jb_cuda_ctx *c, const jb_dev_layer *w, const void *W, const float *scale, jamba_dtype out_dt,
                        void *Y, const void *X, int64_t n, int64_t N, int64_t K, const char *what, jb_run_state &rs);

/* The mixers (layers.cu): attention of `slot`-th attention layer into c->mix [T, H]; Mamba in two halves,
 * in_proj .. x_proj into c->xdbl [T, R + 2N], then dt/B/C .. out_proj into c->mix (without out_proj's bias,
 * which the caller adds: once, after any all-reduce). */
bool jb_cuda_attention_layer(jb_cuda_ctx *c, const jb_dev_layer *w, int64_t slot, const jb_step_shape &s,
                             jb_run_state &rs);
bool jb_cuda_mamba_in(jb_cuda_ctx *c, const jb_dev_mamba *w, int64_t slot, const jb_step_shape &s, jb_run_state &rs);
bool jb_cuda_mamba_out(jb_cuda_ctx *c, const jb_dev_mamba *w, int64_t slot, const jb_step_shape &s, jb_run_state &rs);
/* A whole Mamba mixer of a fused decode step (s.fused): in_proj with conv1d + SiLU, x_proj with the dt/B/C
 * norms, dt_proj with the scan, out_proj (+ its bias) added into x with `next` in its epilogue: one
 * cooperative kernel where the context has its grid (jb_cuda_mamba_grid), else four launches. In a fused step
 * jb_cuda_attention_layer likewise adds o_proj into x and normalises with the layer's pre-FFN norm into xn. */
bool jb_cuda_mamba_decode(jb_cuda_ctx *c, const jb_dev_mamba *w, int64_t slot, const jb_step_shape &s,
                          const jb_next_norm &next, jb_run_state &rs);

/* The dense SwiGLU MLP of xn (ffn.cu): into mix [T, H]; or, when jb_cuda_dense_ffn_fused says so, added into
 * x with `next` in the down product's epilogue (gate|up with SwiGLU as one product). */
bool jb_cuda_dense_ffn_fused(const jb_dev_layer *w, const jb_step_shape &s);

bool jb_cuda_dense_ffn(jb_cuda_ctx *c, const jb_dev_layer *w, const jb_step_shape &s, const jb_next_norm &next,
                       jb_run_state &rs);
/* mix[T, H] = the MoE block of xn: route, plan, expert products, combine (moe.cu). */
bool jb_cuda_moe_ffn(jb_cuda_ctx *c, const jb_dev_layer *w, const jb_step_shape &s, jb_run_state &rs);
/* The MoE block of a fused decode step in three launches (moe.cu): the router with route and plan, gate|up
 * with SwiGLU, down with the combine, added into x with `next`. When jb_cuda_moe_decode_fused says so. */
static inline bool jb_cuda_moe_decode_fused(const jb_cuda_ctx *c, const jb_step_shape &s) {
    return s.fused && s.moe_gemv && c->E <= JB_CUDA_FUSED_ROUTER_EXPERTS;
}
bool jb_cuda_moe_decode(jb_cuda_ctx *c, const jb_dev_layer *w, const jb_step_shape &s, const jb_next_norm &next,
                        jb_run_state &rs);

/* The cooperative Mamba mixer's grid for a step of T rows on this context, 0 for the four-launch path. */
static inline int jb_cuda_mamba_grid(const jb_cuda_ctx *c, int64_t T) {
    return T == 1 ? c->mamba_grid[0] : T <= JB_CUDA_FUSED_ROWS ? c->mamba_grid[1] : 0;
}

#endif /* JB_CUDA_LAYER_DEV_H */
