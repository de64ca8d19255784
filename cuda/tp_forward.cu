/*
 * tp_forward.cu — one forward step of a multi-GPU context: every rank runs the single-GPU ops (ops.h,
 * moe.h, ffn.cu's int8-or-dt product) on its slices and shapes, and the ranks meet in NCCL collectives,
 * exactly where tests/support/tp_emulate.c (the specification, checked on the CPU) puts them:
 *
 *   embedding   each rank its vocabulary rows (zeros for other tokens)     all-reduce [T, H]
 *   Mamba       in_proj (x|z of its channels), conv, x_proj partial        all-reduce [T, R + 2N]
 *               dt/B/C norms, dt_proj, scan over its channels, out_proj    all-reduce [T, H], then the bias
 *   attention   q/k/v of its heads, its KV cache, attention, o_proj        all-reduce [T, H]
 *   dense MLP   gate/up rows and down columns of its I_r                   all-reduce [T, H]
 *   MoE         route every token (replicated router), run its own experts all-reduce [T, H]
 *               (expert parallelism; under an intermediate split every expert's I_r slice)
 *   logits      its lm_head rows: [n, vc_r] copied into its columns of the host logits
 *
 * One host thread drives every GPU: each phase queues the ranks' kernels on their streams in turn (launches
 * are asynchronous), then one ncclGroupStart/End holds the collective of all ranks. The MoE exchange is
 * the decode form (all-reduce after the experts, shard.h's (A)) for prefill steps too: the all-to-all the
 * plan prefers for prefill needs routing counts on the host and is not built (docs/multi-gpu.md). Hidden-state
 * capture is refused.
 *
 * Decode steps (jb_cuda_graph_step, the single-GPU rule) are recorded once per row count as one CUDA graph
 * per rank, all-reduces included (each rank's stream captured at once, the collectives grouped as in a
 * direct step), and replayed with every rank's launch on its own thread (tp_launch.h); the step's layout
 * is sent before, its logits read after. Nothing in the graphs depends on the step's tokens: a rank embeds
 * every row, zeros for the tokens outside its vocabulary rows.
 *
 * Logits: one node, every rank copies its vocabulary columns into the host logits; several nodes, every rank
 * sends its rows to global rank 0 (ncclSend/Recv), and node 0 copies them all to the host.
 */
#include "ckpt/config.h"
#include "base/alloc.h"
#include "base/error.h"
#include "cuda/common.cuh"
#include "cuda/layer_dev.h"
#include "cuda/moe.h"
#include "cuda/step_plan.h"
#include "cuda/tp_dev.h"

#include <string.h>

namespace {

/* Each rank's device buffer `buf` ([count] floats of its CUDA context) becomes the sum over the ranks. */
bool all_reduce(jb_tp_ctx *t, float *jb_cuda_ctx::*buf, int64_t count, const char *what, jb_run_state &rs) {
    ncclResult_t r = ncclGroupStart();
    for (int i = 0; i < t->n_local && r == ncclSuccess; i++) {
        jb_cuda_ctx *c = t->ranks[i].c;
        r = ncclAllReduce(c->*buf, c->*buf, (size_t)count, ncclFloat, ncclSum, t->ranks[i].comm, c->stream);
    }
    const ncclResult_t end = ncclGroupEnd();
    if (r == ncclSuccess)
        r = end;
    if (r != ncclSuccess) {
        rs.what = what;
        snprintf(rs.detail, sizeof rs.detail, "NCCL all-reduce: %s", ncclGetErrorString(r));
        return false;
    }
    return true;
}

/* x[t, :] = table[tokens[t], :] for the tokens this rank holds (a local row), zeros where tokens[t] < 0. */
template <typename T>
__global__ void embed_own_kernel(float *x, const T *table, const int32_t *tokens, int64_t rows, int64_t H) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * H)
        return;
    const int32_t tok = tokens[i / H];
    x[i] = tok < 0 ? 0.0f : to_f32(table[(int64_t)tok * H + i % H]);
}

/* x[T, H]: the embedding rows of the step's tokens this rank holds, zeros for the others (d_tokens holds
 * each row's local row or -1). */
bool embed_rank(jb_tp_rank *R, const jb_step_shape &s, jb_run_state &rs) {
    jb_cuda_ctx *c = R->c;
    const int64_t T = s.T, H = c->H;
    const unsigned int blocks = div_up(T * H, 256);
    if (c->dt == JAMBA_DTYPE_BF16)
        embed_own_kernel<<<blocks, 256, 0, c->stream>>>(c->x, (const bf16 *)R->w->embed, c->d_tokens, T, H);
    else
        embed_own_kernel<<<blocks, 256, 0, c->stream>>>(c->x, (const float *)R->w->embed, c->d_tokens, T, H);
    CU(JB_LAUNCH_CHECK(), "embedding");
    return true;
}

/* The dense MLP over the rank's I_r: mix[T, H] partial. */
bool dense_rank(jb_tp_rank *R, const jb_dev_layer *w, const jb_step_shape &s, jb_run_state &rs) {
    jb_cuda_ctx *c = R->c;
    const int64_t T = s.T, H = c->H, I = R->dense_I;
    if (!jb_cuda_ffn_matmul(c, w, w->gate_up, w->gate_up_scale, c->dt, c->wide, c->xn, T, 2 * I, H, "mlp gate/up", rs))
        return false;
    CU(jb_cuda_swiglu(c->dt, c->wide, 2 * I, c->y, T, I, c->stream), "mlp SwiGLU");
    return jb_cuda_ffn_matmul(c, w, w->down, w->down_scale, JAMBA_DTYPE_F32, c->mix, c->y, T, H, I, "mlp down", rs);
}

/* The MoE block under expert parallelism: every token routed over all E experts (the router is
 * replicated), the rank's experts run on the slots routed to them, other slots' outputs zero, combined in
 * ascending expert order into mix[T, H] partial. */
bool experts_rank(jb_tp_rank *R, const jb_dev_layer *w, const jb_step_shape &s, jb_run_state &rs) {
    jb_cuda_ctx *c = R->c;
    const jamba_dtype dt = c->dt;
    const int64_t T = s.T, H = c->H, I = c->I, E = c->E, k = c->k, slots = T * k;
    const int64_t first = R->expert_first, count = R->expert_count;
    const size_t wes = w->ffn_wdt == JAMBA_DTYPE_I8 ? 1 : c->es;
    const bool q8 = w->ffn_wdt == JAMBA_DTYPE_I8;
    BL(jb_cuda_gemm(c->blas, dt, JAMBA_DTYPE_F32, c->router, E, c->xn, H, w->router, T, E, H), "MoE router");
    CU(jb_cuda_moe_route(c->router, T, E, k, c->experts, c->weights, c->stream), "MoE routing");
    CU(jb_cuda_moe_plan(c->experts, c->weights, T, E, k, c->begin, c->slot_token, c->slot_weight, c->slot_pos,
                       c->stream), "MoE plan");
    CU(cudaMemsetAsync(c->expert_out, 0, (size_t)(slots * H) * 4, c->stream), "MoE outputs");
    if (s.moe_gemv) { /* the held experts' blocks are the rank's, local index e - first */
        jb_cuda_gemv_args gu = {w->gate_up, w->ffn_wdt, w->gate_up_scale, 2 * I * H, 2 * I, H, c->xn, H,
                               c->slot_token, c->begin + first, 0, count, c->act, false, true, 0, slots};
        CU(jb_cuda_expert_gemv(dt, &gu, c->stream), "MoE expert gate/up + SwiGLU");
        jb_cuda_gemv_args dn = {w->down, w->ffn_wdt, w->down_scale, H * I, H, I, c->act, I, NULL, c->begin + first, 0,
                               count, c->expert_out, true, false, 0, slots};
        CU(jb_cuda_expert_gemv(dt, &dn, c->stream), "MoE expert down");
    } else {
        CU(jb_cuda_gather_tokens(dt, c->gathered, c->xn, H, c->slot_token, slots, H, c->stream), "MoE gather");
        CU(cudaMemcpyAsync(c->h_begin, c->begin, (size_t)(E + 1) * 4, cudaMemcpyDeviceToHost, c->stream),
           "MoE expert counts");
        CU(cudaStreamSynchronize(c->stream), "MoE expert counts");
        const int64_t b0 = c->h_begin[first], b1 = c->h_begin[first + count]; /* the rank's slots, contiguous */
        for (int64_t e = first; e < first + count; e++) {
            const int64_t b = c->h_begin[e], n = c->h_begin[e + 1] - b, local = e - first;
            if (n > 0 && !jb_cuda_ffn_matmul(c, w, jb_at(w->gate_up, local * 2 * I * H, wes),
                                     q8 ? w->gate_up_scale + local * 2 * I : NULL, dt, jb_at(c->gu, b * 2 * I, c->es),
                                     jb_at(c->gathered, b * H, c->es), n, 2 * I, H, "MoE expert gate/up", rs))
                return false;
        }
        CU(jb_cuda_swiglu(dt, jb_at(c->gu, b0 * 2 * I, c->es), 2 * I, jb_at(c->act, b0 * I, c->es), b1 - b0, I,
                          c->stream), "MoE SwiGLU");
        for (int64_t e = first; e < first + count; e++) {
            const int64_t b = c->h_begin[e], n = c->h_begin[e + 1] - b, local = e - first;
            if (n > 0 && !jb_cuda_ffn_matmul(c, w, jb_at(w->down, local * H * I, wes),
                                     q8 ? w->down_scale + local * H : NULL, JAMBA_DTYPE_F32, c->expert_out + b * H,
                                     jb_at(c->act, b * I, c->es), n, H, I, "MoE expert down", rs))
                return false;
        }
    }
    CU(jb_cuda_moe_combine(c->expert_out, c->slot_pos, c->experts, c->weights, T, k, H, c->mix, c->stream),
       "MoE combine");
    return true;
}

/* The FFN half of layer l on one rank, from the pre-FFN norm: mix[T, H] partial. */
bool ffn_rank(jb_tp_ctx *t, jb_tp_rank *R, const jb_dev_layer *w, const jb_step_shape &s, jb_run_state &rs) {
    jb_cuda_ctx *c = R->c;
    if (w->mamba.out_bias && !w->attention)
        CU(jb_cuda_add_bias(JAMBA_DTYPE_F32, c->mix, c->H, w->mamba.out_bias, s.T, c->H, c->stream),
           "mamba out_proj bias");
    CU(jb_cuda_add_rmsnorm(c->dt, c->x, c->mix, w->pre_ff_norm, c->xn, s.T, c->H, (float)c->cfg->rms_norm_eps,
                          c->stream), "pre-FFN norm");
    if (!w->moe)
        return dense_rank(R, w, s, rs);
    if (t->plan.moe == JB_MOE_EXPERTS)
        return experts_rank(R, w, s, rs);
    return jb_cuda_moe_ffn(c, w, s, rs); /* every expert's I_r: the rank's context has I = I_r */
}

/* Logit rows: final norm, the rank's lm_head rows [n, vc_r] into s.logits (device). */
bool logits_rank(jb_tp_rank *R, const jb_step_shape &s, jb_run_state &rs) {
    jb_cuda_ctx *c = R->c;
    const int64_t H = c->H, n = s.n_logits, vc = R->vocab_count;
    const float eps = (float)c->cfg->rms_norm_eps;
    CU(jb_cuda_gather_rows(c->final_rows, c->x, c->d_logit_src, n, H, c->stream), "logit rows");
    CU(jb_cuda_add_rmsnorm(c->dt, c->final_rows, NULL, R->w->final_norm, c->final_act, n, H, eps, c->stream),
       "final norm");
    BL(jb_cuda_gemm(c->blas, c->dt, JAMBA_DTYPE_F32, s.logits, vc, c->final_act, H, R->w->lm_head, n, vc, H),
       "lm_head");
    return true;
}

/* Host logit rows [n, V] at columns [col, col + vc) from device rows of vc floats: row rows[i] of src (rows
 * NULL: row i). */
bool copy_columns(float *host, int64_t V, int64_t col, const float *src, int64_t vc, const int64_t *rows, int64_t n,
                  cudaStream_t stream, jb_run_state &rs) {
    if (rows == NULL) {
        CU(cudaMemcpy2DAsync(host + col, (size_t)V * 4, src, (size_t)vc * 4, (size_t)vc * 4, (size_t)n,
                             cudaMemcpyDeviceToHost, stream), "gathering logits");
        return true;
    }
    for (int64_t i = 0; i < n; i++)
        CU(cudaMemcpyAsync(host + i * V + col, src + rows[i] * vc, (size_t)vc * 4, cudaMemcpyDeviceToHost, stream),
           "gathering logits");
    return true;
}

/* The step's layout on one rank: each row's local embedding row or -1, segments and scan chunks (its
 * channels decide the chunk length, as jb_cuda_step does for one GPU), logit rows (a graph: every row);
 * sent with one copy. Fills the shape. */
bool layout_rank(jb_tp_rank *R, const jb_step_io *io, bool graph, jb_step_shape &s, jb_run_state &rs) {
    jb_cuda_ctx *c = R->c;
    const int64_t T = io->n_rows;
    for (int64_t i = 0; i < io->n_segs; i++)
        for (int64_t j = 0; j < io->segs[i].n; j++) {
            const int64_t local = io->segs[i].tokens[j] - R->vocab_begin;
            c->h_tokens[io->segs[i].row + j] = local >= 0 && local < R->vocab_count ? (int32_t)local : -1;
        }
    const int64_t chunk_len = c->M ? jb_scan_chunk_rows(T, c->Di, c->sms, JB_CUDA_SCAN_SLOTS) : T;
    jb_step_plan plan = {c->h_row_seg, c->h_segs, c->h_chunks, 0, 0, 0, 0, 0};
    jb_step_plan_build(&plan, io->segs, io->n_segs, chunk_len);
    s = jb_step_shape{};
    s.T = T;
    s.n_segs = io->n_segs;
    s.n_chunks = plan.n_chunks;
    s.n_slots = plan.n_slots;
    s.max_seg_rows = plan.max_seg_rows;
    s.moe_gemv = T * c->k <= JB_CUDA_GEMV_SLOTS;
    if (graph) { /* a graph computes the logits of all its rows; the asked ones are read after */
        for (int64_t i = 0; i < T; i++)
            c->h_logit_src[i] = i;
        s.n_logits = T;
        s.logits = c->graph_logits;
    } else {
        memcpy(c->h_logit_src, io->logit_src, (size_t)io->n_logits * 8);
        s.n_logits = io->n_logits;
        s.logits = c->logits;
    }
    jb_cuda_choose_splits(c, T, s); /* as on one GPU, over the rank's KV heads */
    CU(cudaMemcpyAsync(c->d_meta, c->h_meta, c->meta_bytes, cudaMemcpyHostToDevice, c->stream), "sending the step layout");
    return true;
}

/* Wait for every rank's stream. */
bool sync_all(jb_tp_ctx *t, int &bad, jb_run_state &rs) {
    for (bad = 0; bad < t->n_local; bad++) {
        jb_device_scope scope(t->ranks[bad].device);
        CU(cudaStreamSynchronize(t->ranks[bad].c->stream), "running the step");
    }
    return true;
}

/* Run `fn(rank)` on every local rank with its device current; bad = the rank that failed. */
template <typename F> bool each_rank(jb_tp_ctx *t, int &bad, F fn) {
    for (bad = 0; bad < t->n_local; bad++) {
        jb_device_scope scope(t->ranks[bad].device);
        if (!fn(&t->ranks[bad]))
            return false;
    }
    bad = 0;
    return true;
}

/* The step on the devices, from the embedding to the logit rows in each rank's s.logits: what a graph
 * holds. abort_fn (NULL in a graph and over several nodes) is polled between layers. */
bool forward(jb_tp_ctx *t, const jb_step_io *io, jb_step_shape *shape, jamba_abort_fn abort_fn, int &bad,
             jb_run_state &rs) {
    const jamba_config *cfg = &t->cfg;
    const int64_t H = cfg->hidden_size, T = io->n_rows, xd = cfg->mamba_dt_rank + 2 * cfg->mamba_d_state;
    const float eps = (float)cfg->rms_norm_eps;
    if (!each_rank(t, bad, [&](jb_tp_rank *R) { return embed_rank(R, shape[R - t->ranks], rs); }) ||
        !all_reduce(t, &jb_cuda_ctx::x, T * H, "embedding", rs))
        return false;
    int64_t attn_slot = 0, mamba_slot = 0;
    for (int64_t l = 0; l < cfg->num_hidden_layers; l++) {
        const bool attention = jb_layer_is_attention(cfg, l);
        const int64_t slot = attention ? attn_slot++ : mamba_slot++;
        if (!each_rank(t, bad, [&](jb_tp_rank *R) {
                jb_cuda_ctx *c = R->c;
                const jb_dev_layer *w = &R->w->layers[l];
                const jb_step_shape &s = shape[R - t->ranks];
                CU(jb_cuda_add_rmsnorm(c->dt, c->x, l > 0 ? c->mix : NULL, w->input_norm, c->xn, T, H, eps, c->stream),
                   "input norm");
                return attention ? jb_cuda_attention_layer(c, w, slot, s, rs)
                                 : jb_cuda_mamba_in(c, &w->mamba, slot, s, rs);
            }))
            return false;
        if (!attention && (!all_reduce(t, &jb_cuda_ctx::xdbl, T * xd, "mamba x_proj", rs) ||
                           !each_rank(t, bad, [&](jb_tp_rank *R) {
                               return jb_cuda_mamba_out(R->c, &R->w->layers[l].mamba, slot, shape[R - t->ranks], rs);
                           })))
            return false;
        if (!all_reduce(t, &jb_cuda_ctx::mix, T * H, attention ? "attention o_proj" : "mamba out_proj", rs) ||
            !each_rank(t, bad, [&](jb_tp_rank *R) { return ffn_rank(t, R, &R->w->layers[l], shape[R - t->ranks], rs); }) ||
            !all_reduce(t, &jb_cuda_ctx::mix, T * H, jb_layer_is_moe(cfg, l) ? "experts" : "down_proj", rs))
            return false;
        if (abort_fn && l + 1 < cfg->num_hidden_layers) { /* wait for the layer, then ask */
            if (!sync_all(t, bad, rs))
                return false;
            if (abort_fn(io->abort_data)) {
                rs.aborted = true;
                snprintf(rs.detail, sizeof rs.detail, "after layer %lld", (long long)l);
                return false;
            }
        }
    }
    return each_rank(t, bad, [&](jb_tp_rank *R) {
        jb_cuda_ctx *c = R->c;
        CU(jb_cuda_add_rmsnorm(c->dt, c->x, c->mix, NULL, NULL, T, H, eps, c->stream), "residual add");
        const jb_step_shape &s = shape[R - t->ranks];
        return s.n_logits == 0 || logits_rank(R, s, rs);
    });
}

/* The decode graph of T rows on every rank: recorded on the first step of that size (each rank's stream
 * captured at once, the collectives grouped as in a direct step), then launched, each rank from its own
 * thread. */
struct graph_launch {
    jb_tp_ctx *t;
    int64_t T;
    int bad;
    cudaError_t e;
};

bool launch_rank(void *arg, int i) {
    graph_launch *g = (graph_launch *)arg;
    jb_tp_rank *R = &g->t->ranks[i];
    jb_device_scope scope(R->device);
    const cudaError_t e = cudaGraphLaunch(R->c->graph[g->T], R->c->stream);
    if (e != cudaSuccess) { /* several threads may fail; any one of them is reported */
        g->bad = i;
        g->e = e;
    }
    return e == cudaSuccess;
}

bool record_graphs(jb_tp_ctx *t, const jb_step_io *io, jb_step_shape *shape, int &bad, jb_run_state &rs) {
    const int64_t T = io->n_rows;
    int begun = 0;
    cudaError_t e = cudaSuccess;
    for (; begun < t->n_local && e == cudaSuccess; begun++) {
        jb_device_scope scope(t->ranks[begun].device);
        e = cudaStreamBeginCapture(t->ranks[begun].c->stream, cudaStreamCaptureModeThreadLocal);
        if (e != cudaSuccess)
            break;
    }
    bool ok = e == cudaSuccess && forward(t, io, shape, NULL, bad, rs);
    if (e != cudaSuccess) {
        bad = begun;
        rs.what = "starting a CUDA graph capture";
        snprintf(rs.detail, sizeof rs.detail, "%s", cudaGetErrorString(e));
    }
    for (int i = 0; i < begun; i++) { /* end every capture begun, whatever happened */
        jb_tp_rank *R = &t->ranks[i];
        jb_device_scope scope(R->device);
        cudaGraph_t g = NULL;
        e = cudaStreamEndCapture(R->c->stream, &g);
        if (ok && e == cudaSuccess)
            e = cudaGraphInstantiate(&R->c->graph[T], g, 0);
        if (g)
            cudaGraphDestroy(g);
        if (ok && e != cudaSuccess) {
            ok = false;
            bad = i;
            rs.what = "recording the decode step as CUDA graphs";
            snprintf(rs.detail, sizeof rs.detail, "%s", cudaGetErrorString(e));
        }
    }
    return ok;
}

bool run_graphs(jb_tp_ctx *t, const jb_step_io *io, jb_step_shape *shape, int &bad, jb_run_state &rs) {
    const int64_t T = io->n_rows;
    if (t->ranks[0].c->graph[T] == NULL && !record_graphs(t, io, shape, bad, rs))
        return false;
    graph_launch g = {t, T, 0, cudaSuccess};
    if (!jb_tp_launcher_run(t->launcher, launch_rank, &g)) {
        bad = g.bad;
        rs.what = "replaying the decode step";
        snprintf(rs.detail, sizeof rs.detail, "%s", cudaGetErrorString(g.e));
        return false;
    }
    return true;
}

/* The logit rows to the host: one node, each rank its columns; several, every rank's rows to global rank 0
 * first, then node 0 copies them (another node has no host logits). graph: a rank's rows are all T step
 * rows, the asked ones read by logit_src. */
bool deliver_logits(jb_tp_ctx *t, const jb_step_io *io, const jb_step_shape *shape, bool graph, int &bad,
                    jb_run_state &rs) {
    const int64_t V = t->cfg.vocab_size, n = io->n_logits;
    const int64_t *rows = graph ? io->logit_src : NULL;
    float *host = io->host_logits ? io->host_logits + io->logit_dst * V : NULL;
    if (n == 0)
        return true;
    if (t->n_nodes < 2)
        return each_rank(t, bad, [&](jb_tp_rank *R) {
            return copy_columns(host, V, R->vocab_begin, shape[R - t->ranks].logits, R->vocab_count, rows, n,
                                R->c->stream, rs);
        });
    const int64_t R_rows = shape[0].n_logits, slot = t->gather_rows * t->vc_max;
    ncclResult_t nr = ncclGroupStart();
    for (int i = 0; i < t->n_local && nr == ncclSuccess; i++) {
        jb_tp_rank *R = &t->ranks[i];
        jb_device_scope scope(R->device);
        if (R->rank != 0) {
            nr = ncclSend(shape[i].logits, (size_t)(R_rows * R->vocab_count), ncclFloat, 0, R->comm, R->c->stream);
            continue;
        }
        for (int p = 1; p < t->n && nr == ncclSuccess; p++)
            nr = ncclRecv(R->d_gather + p * slot, (size_t)(R_rows * jb_shard_slice(&t->plan, 0, p)->count), ncclFloat,
                          p, R->comm, R->c->stream);
    }
    const ncclResult_t end = ncclGroupEnd();
    nr = nr == ncclSuccess ? end : nr;
    if (nr != ncclSuccess) {
        bad = 0;
        rs.what = "gathering logits to node 0";
        snprintf(rs.detail, sizeof rs.detail, "NCCL: %s", ncclGetErrorString(nr));
        return false;
    }
    if (t->node_rank != 0 || host == NULL)
        return true;
    jb_tp_rank *R0 = &t->ranks[0]; /* global rank 0 */
    jb_device_scope scope(R0->device);
    bad = 0;
    if (!copy_columns(host, V, R0->vocab_begin, shape[0].logits, R0->vocab_count, rows, n, R0->c->stream, rs))
        return false;
    for (int p = 1; p < t->n; p++) {
        const jb_slice *vocab = jb_shard_slice(&t->plan, 0, p);
        if (!copy_columns(host, V, vocab->begin, R0->d_gather + p * slot, vocab->count, rows, n, R0->c->stream, rs))
            return false;
    }
    return true;
}

/* The whole step; false with rs and bad (the rank) set, or rs.aborted. */
bool run(jb_tp_ctx *t, const jb_step_io *io, jb_step_shape *shape, int &bad, jb_run_state &rs) {
    bool decode = true;
    for (int64_t i = 0; i < io->n_segs; i++)
        decode = decode && io->segs[i].n == 1;
    const bool graph = t->launcher != NULL && jb_cuda_graph_step(t->ranks[0].c, io->n_rows, decode);
    if (!each_rank(t, bad, [&](jb_tp_rank *R) { return layout_rank(R, io, graph, shape[R - t->ranks], rs); }))
        return false;
    const jamba_abort_fn abort_fn = t->n_nodes < 2 ? io->abort_fn : NULL; /* the other nodes could not stop */
    if (!(graph ? run_graphs(t, io, shape, bad, rs) : forward(t, io, shape, abort_fn, bad, rs)))
        return false;
    return deliver_logits(t, io, shape, graph, bad, rs) && sync_all(t, bad, rs);
}

} // namespace

jamba_status jb_tp_run_step(jb_tp_ctx *t, const jb_step_io *io, jamba_error *err) {
    jb_step_shape shape[JB_SHARD_MAX_RANKS];
    jb_run_state rs = {NULL, "", false};
    int bad = 0;
    if (run(t, io, shape, bad, rs))
        return JAMBA_OK;
    if (rs.aborted) /* every rank finished the layer it was in (sync_all) */
        return jb_fail(err, JAMBA_ERR_ABORTED, "multi-GPU step: stopped by the abort callback %s", rs.detail);
    return jb_tp_fault(t, err, bad, rs.what ? rs.what : "the step", rs.detail);
}

extern "C" jamba_status jb_tp_step(jb_tp_ctx *t, const jb_step_io *io, jamba_error *err) {
    if (t->dead)
        return jb_fail(err, JAMBA_ERR_DEVICE, "multi-GPU context: it failed earlier (%s); free it", t->fault);
    if (t->node_rank != 0)
        return jb_fail(err, JAMBA_ERR_UNSUPPORTED, "multi-node context: node %d does not run steps on its own: it "
                       "runs node 0's in jamba_context_follow", t->node_rank);
    const jb_cuda_ctx *c0 = t->ranks[0].c;
    if (io->n_rows < 1 || io->n_rows > t->Tb || io->n_segs < 1 || io->n_segs > c0->max_segs || io->n_logits < 0 ||
        io->logit_dst < 0 || io->logit_dst + io->n_logits > t->cap)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "multi-GPU step: %lld rows in %lld segments, %lld logit rows "
                       "at %lld (limits %lld, %lld, %lld)", (long long)io->n_rows, (long long)io->n_segs,
                       (long long)io->n_logits, (long long)io->logit_dst, (long long)t->Tb, (long long)c0->max_segs,
                       (long long)t->cap);
    if (io->capture && jb_capture_active(io->capture))
        return jb_fail(err, JAMBA_ERR_UNSUPPORTED, "multi-GPU step: hidden-state capture and layer hooks run on one "
                       "GPU only (n_gpus 1)");
    if (io->host_logits == NULL && io->n_logits > 0)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "multi-GPU step: the logits are gathered to the host, "
                       "which gave no buffer");
    if (t->n_nodes > 1) { /* the other nodes run the same step (jb_tp_follow) */
        uint64_t len = 0;
        JB_TRY(jb_tp_desc_encode_step(io, t->h_desc, t->desc_cap, &len, err));
        JB_TRY(jb_tp_broadcast_desc(t, &len, err));
    }
    return jb_tp_run_step(t, io, err);
}
