/*
 * forward.c — the CPU backend's step: one internal step of the model on the CPU: embedding, every decoder layer (pre-norm
 * mixer and FFN halves with residual adds), the final norm and lm_head for the rows that asked for logits.
 *
 * Row-wise work (projections, norms, FFN, MoE) runs over all rows of the step at once; sequence-wise work
 * (attention against a sequence's KV cache, the Mamba conv and scan with their carried state) runs per
 * segment. The arithmetic follows transformers' JambaForCausalLM in fp32 (docs/jamba-architecture.md §3).
 */
#include "cpu/context.h"

#include "base/error.h"
#include "ckpt/config.h"
#include "cpu/attention.h"
#include "cpu/kernels.h"
#include "cpu/mamba.h"
#include "cpu/ops.h"

#include <string.h>

/* Small per-layer weights widened to fp32, carved out of ws.wbuf. */
typedef struct small_weights {
    float *A;      /* [D_i, N] = -exp(A_log) */
    float *conv;   /* [D_i, K] */
    float *vec[3]; /* [D_i] each: conv bias, dt bias, D */
    float *bias2;  /* [2 D_i] in_proj bias */
    float *v[4];   /* [max(H, R, N)] each: norm weights */
} small_weights;

static small_weights carve(const jb_backend_ctx *ctx) {
    const jamba_config *c = &ctx->model->config;
    const int64_t Di = c->mamba_d_inner, N = c->mamba_d_state, K = c->mamba_d_conv;
    const int64_t vec = c->hidden_size > c->mamba_dt_rank ? c->hidden_size : c->mamba_dt_rank;
    const int64_t v4 = vec > N ? vec : N;
    small_weights s;
    float *p = ctx->ws.wbuf;
    s.A = p, p += Di * N;
    s.conv = p, p += Di * K;
    for (int i = 0; i < 3; i++)
        s.vec[i] = p, p += Di;
    s.bias2 = p, p += 2 * Di;
    for (int i = 0; i < 4; i++)
        s.v[i] = p, p += v4;
    return s;
}

static void add_rows(float *x, const float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        x[i] += y[i];
}

/* ---- mixers ----------------------------------------------------------------------------------- */

static void attention_layer(jb_backend_ctx *ctx, const jb_attention_weights *w, int64_t slot, const jb_segment *segs,
                            int64_t n_segs, int64_t T) {
    const jamba_config *c = &ctx->model->config;
    jb_cpu_workspace *ws = &ctx->ws;
    const int64_t q_dim = c->num_attention_heads * c->head_dim, kv = c->num_key_value_heads * c->head_dim;
    const int64_t score_rows = jb_cpu_attn_score_rows(c->num_attention_heads, c->num_key_value_heads);
    jb_cpu_matmul_ex(&ctx->exec, ws->q, ws->xn, T, &w->q_proj, NULL);
    jb_cpu_matmul_ex(&ctx->exec, ws->k_new, ws->xn, T, &w->k_proj, NULL);
    jb_cpu_matmul_ex(&ctx->exec, ws->v_new, ws->xn, T, &w->v_proj, NULL);
    for (int64_t s = 0; s < n_segs; s++) {
        const jb_segment *g = &segs[s];
        float *K = jb_cpu_kv(ctx, g->seq, slot, 0), *V = jb_cpu_kv(ctx, g->seq, slot, 1);
        memcpy(K + g->pos * kv, ws->k_new + g->row * kv, (size_t)(g->n * kv) * sizeof(float));
        memcpy(V + g->pos * kv, ws->v_new + g->row * kv, (size_t)(g->n * kv) * sizeof(float));
        ws->attn_args[s] = (jb_attn_args){.n = g->n, .pos = g->pos, .n_heads = c->num_attention_heads,
                                          .n_kv_heads = c->num_key_value_heads, .head_dim = c->head_dim,
                                          .q = ws->q + g->row * q_dim, .k = K, .v = V,
                                          .out = ws->att + g->row * q_dim, .scratch = ws->attn_scratch,
                                          .scratch_stride = score_rows * ctx->params.n_ctx};
    }
    jb_cpu_attention(ctx->exec.pool, ws->attn_args, n_segs);
    jb_cpu_matmul_ex(&ctx->exec, ws->mix, ws->att, T, &w->o_proj, NULL);
}

static const float *optional_f32(const jb_weight *w, float *scratch) {
    return w->data ? jb_weight_f32(w, scratch) : NULL;
}

static void mamba_layer(jb_backend_ctx *ctx, const jb_mamba_weights *w, int64_t slot, const jb_segment *segs,
                        int64_t n_segs, int64_t T) {
    const jamba_config *c = &ctx->model->config;
    jb_cpu_workspace *ws = &ctx->ws;
    const int64_t Di = c->mamba_d_inner, N = c->mamba_d_state, R = c->mamba_dt_rank, K = c->mamba_d_conv;
    const int64_t xd = R + 2 * N;
    small_weights sw = carve(ctx);

    /* 1. in_proj: [u_raw | z] */
    jb_cpu_matmul_ex(&ctx->exec, ws->proj, ws->xn, T, &w->in_proj, optional_f32(&w->in_proj_bias, sw.bias2));
    /* 2-3. causal conv + SiLU per sequence, continuing from its window */
    const float *conv_w = jb_weight_f32(&w->conv1d, sw.conv);
    const float *conv_b = optional_f32(&w->conv1d_bias, sw.vec[0]);
    for (int64_t s = 0; s < n_segs; s++) {
        const jb_segment *g = &segs[s];
        ws->conv_args[s] = (jb_conv_args){.n = g->n, .d_inner = Di, .d_conv = K, .x = ws->proj + g->row * 2 * Di,
                                          .ldx = 2 * Di, .w = conv_w, .b = conv_b,
                                          .window = jb_cpu_conv(ctx, g->seq, slot), .out = ws->u + g->row * Di};
    }
    jb_cpu_conv_silu(ctx->exec.pool, ws->conv_args, n_segs);
    /* 5-6. x_proj → [dt | B | C], each RMS-normalised */
    jb_cpu_matmul_ex(&ctx->exec, ws->xdbl, ws->u, T, &w->x_proj, NULL);
    if (c->mamba_inner_layernorms) {
        jb_cpu_rmsnorm(ws->xdbl, ws->xdbl, T, R, xd, jb_weight_f32(&w->dt_norm, sw.v[0]), c->rms_norm_eps);
        jb_cpu_rmsnorm(ws->xdbl + R, ws->xdbl + R, T, N, xd, jb_weight_f32(&w->b_norm, sw.v[1]), c->rms_norm_eps);
        jb_cpu_rmsnorm(ws->xdbl + R + N, ws->xdbl + R + N, T, N, xd, jb_weight_f32(&w->c_norm, sw.v[2]),
                       c->rms_norm_eps);
    }
    /* 7. Δ = softplus(dt_proj(dt) + bias) */
    for (int64_t t = 0; t < T; t++)
        memcpy(ws->dt_in + t * R, ws->xdbl + t * xd, (size_t)R * sizeof(float));
    jb_cpu_matmul_ex(&ctx->exec, ws->delta, ws->dt_in, T, &w->dt_proj, jb_weight_f32(&w->dt_proj_bias, sw.vec[1]));
    jb_cpu_kernels_active()->softplus(ws->delta, T * Di);
    /* 8-11. A = -exp(A_log); selective scan per sequence, continuing from its state */
    jb_cpu_kernels_active()->neg_exp(sw.A, jb_weight_f32(&w->A_log, sw.A), Di * N);
    const float *D = jb_weight_f32(&w->D, sw.vec[2]);
    for (int64_t s = 0; s < n_segs; s++) {
        const jb_segment *g = &segs[s];
        ws->scan_args[s] = (jb_scan_args){.n = g->n, .d_inner = Di, .d_state = N, .u = ws->u + g->row * Di,
                                          .delta = ws->delta + g->row * Di, .B = ws->xdbl + g->row * xd + R,
                                          .C = ws->xdbl + g->row * xd + R + N, .ldbc = xd, .A = sw.A, .D = D,
                                          .z = ws->proj + g->row * 2 * Di + Di, .ldz = 2 * Di,
                                          .state = jb_cpu_ssm(ctx, g->seq, slot), .y = ws->y + g->row * Di};
    }
    jb_cpu_selective_scan(ctx->exec.pool, ws->scan_args, n_segs);
    /* 12. out_proj */
    jb_cpu_matmul_ex(&ctx->exec, ws->mix, ws->y, T, &w->out_proj, optional_f32(&w->out_proj_bias, sw.v[3]));
}

/* ---- the step --------------------------------------------------------------------------------- */

/* The tokens' embedding rows [T, H]; a quantized (tied, int8 or FP8) embedding row times its scale. */
static void embed(jb_backend_ctx *ctx, const jb_segment *segs, int64_t n_segs) {
    const jb_weight *e = &ctx->model->weights.embed;
    const int64_t H = ctx->model->config.hidden_size;
    const size_t row_bytes = (size_t)H * jamba_dtype_size(e->dtype);
    for (int64_t s = 0; s < n_segs; s++)
        for (int64_t t = 0; t < segs[s].n; t++) {
            const int32_t tok = segs[s].tokens[t];
            float *x = ctx->ws.x + (segs[s].row + t) * H;
            jb_to_f32(x, (const uint8_t *)e->data + (size_t)tok * row_bytes, e->dtype, H);
            for (int64_t h = 0; e->scale != NULL && h < H; h++)
                x[h] *= e->scale[tok];
        }
}

/* Copy this step's rows [T, width] into a capture buffer of cap->rows rows, after the rows of earlier steps. */
static void capture_rows(const jb_capture *cap, float *dst_base, const float *src, int64_t n_rows, int64_t width) {
    const int64_t keep = jb_capture_keep(cap, n_rows);
    if (dst_base && keep > 0)
        memcpy(dst_base + cap->next_row * width, src, (size_t)(keep * width) * sizeof(float));
}

jamba_status jb_cpu_step(jb_backend_ctx *ctx, const jb_step_io *io, jamba_error *err) {
    /* nothing on the CPU path fails once the context exists; only the abort callback stops a step */
    const jb_segment *segs = io->segs;
    const int64_t n_segs = io->n_segs, T = io->n_rows, n_logits = io->n_logits;
    const jb_capture *cap = io->capture;
    const jamba_model *m = ctx->model;
    const jamba_config *c = &m->config;
    jb_cpu_workspace *ws = &ctx->ws;
    const int64_t H = c->hidden_size;
    small_weights sw = carve(ctx);
    embed(ctx, segs, n_segs);
    if (cap)
        capture_rows(cap, jb_capture_hidden(cap, 0, H), ws->x, T, H);
    int64_t moe_index = 0; /* MoE layers so far: the slot of this one's router logits */
    for (int64_t l = 0; l < c->num_hidden_layers; l++) {
        const jb_layer_weights *lw = &m->weights.layers[l];
        jb_cpu_rmsnorm(ws->xn, ws->x, T, H, H, jb_weight_f32(&lw->input_norm, sw.v[0]), c->rms_norm_eps);
        if (jb_layer_is_attention(c, l))
            attention_layer(ctx, &lw->attn, ctx->layer_slot[l], segs, n_segs, T);
        else
            mamba_layer(ctx, &lw->mamba, ctx->layer_slot[l], segs, n_segs, T);
        add_rows(ws->x, ws->mix, T * H);
        jb_cpu_rmsnorm(ws->xn, ws->x, T, H, H, jb_weight_f32(&lw->pre_ff_norm, sw.v[0]), c->rms_norm_eps);
        if (jb_layer_is_moe(c, l)) {
            const int64_t E = c->num_experts, keep = cap && cap->router ? jb_capture_keep(cap, T) : 0;
            float *router_dst = keep ? cap->router + (moe_index * cap->rows + cap->next_row) * E : NULL;
            const jb_moe_logits_out router_out = {router_dst, keep};
            jb_cpu_moe(&ctx->exec, &ws->ffn, &lw->router, lw->experts, E, c->num_experts_per_tok, ws->xn, T, ws->mix,
                       &router_out);
            moe_index++;
        } else {
            jb_cpu_mlp(&ctx->exec, &ws->ffn, &lw->mlp, ws->xn, T, ws->mix);
        }
        add_rows(ws->x, ws->mix, T * H);
        if (cap && cap->hook)
            cap->hook(cap->hook_data, l, cap->next_row, ws->x, T, H);
        if (io->abort_fn && l + 1 < c->num_hidden_layers && io->abort_fn(io->abort_data))
            return jb_fail(err, JAMBA_ERR_ABORTED, "stopped by the abort callback after layer %lld", (long long)l);
        if (cap && l + 1 < c->num_hidden_layers) /* the stream entering layer l + 1 */
            capture_rows(cap, jb_capture_hidden(cap, l + 1, H), ws->x, T, H);
    }
    const float *final_w = jb_weight_f32(&m->weights.final_norm, sw.v[0]);
    float *final_dst = cap ? jb_capture_hidden(cap, c->num_hidden_layers, H) : NULL;
    if (cap && (cap->final || final_dst)) {
        jb_cpu_rmsnorm(ws->xn, ws->x, T, H, H, final_w, c->rms_norm_eps);
        capture_rows(cap, cap->final, ws->xn, T, H);
        capture_rows(cap, final_dst, ws->xn, T, H);
    }
    if (n_logits > 0) {
        for (int64_t i = 0; i < n_logits; i++)
            memcpy(ws->final_rows + i * H, ws->x + io->logit_src[i] * H, (size_t)H * sizeof(float));
        jb_cpu_rmsnorm(ws->final_rows, ws->final_rows, n_logits, H, H, final_w, c->rms_norm_eps);
        jb_cpu_matmul_ex(&ctx->exec, io->host_logits + io->logit_dst * c->vocab_size, ws->final_rows,
                      n_logits, &m->weights.lm_head, NULL);
    }
    return JAMBA_OK;
}
