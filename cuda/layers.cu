/*
 * layers.cu — the mixers of one layer on one device, shared by the single-GPU forward pass (forward.cu) and
 * each rank of the multi-GPU one (tp_forward.cu): attention, and Mamba in two halves around x_proj's output
 * (where the multi-GPU pass all-reduces the small dt/B/C projection of its channel slice), and the whole Mamba
 * mixer of a fused decode step (mamba_decode.cu: one cooperative kernel, or four fused products).
 */
#include "cuda/layer_dev.h"

bool jb_cuda_mamba_in(jb_cuda_ctx *c, const jb_dev_mamba *w, int64_t slot, const jb_step_shape &s, jb_run_state &rs) {
    const jamba_dtype dt = c->dt;
    const int64_t T = s.T, H = c->H, Di = c->Di, N = c->N, R = c->R, K = c->K, xd = R + 2 * N;
    const jb_cuda_step_desc step = jb_device_step(c, s);
    BL(jb_cuda_gemm(c->blas, dt, dt, c->wide, 2 * Di, c->xn, H, w->in_proj, T, 2 * Di, H), "mamba in_proj");
    if (w->in_bias)
        CU(jb_cuda_add_bias(dt, c->wide, 2 * Di, w->in_bias, T, 2 * Di, c->stream), "mamba in_proj bias");
    jb_cuda_conv_args conv = {c->wide, 2 * Di, w->conv_w, w->conv_b, c->conv + slot * Di * (K - 1),
                             c->M * Di * (K - 1), c->u, Di, K};
    CU(jb_cuda_conv_silu(dt, &conv, &step, c->stream), "mamba conv1d");
    BL(jb_cuda_gemm(c->blas, dt, JAMBA_DTYPE_F32, c->xdbl, xd, c->u, Di, w->x_proj, T, xd, Di), "mamba x_proj");
    return true;
}

bool jb_cuda_mamba_out(jb_cuda_ctx *c, const jb_dev_mamba *w, int64_t slot, const jb_step_shape &s, jb_run_state &rs) {
    const jamba_dtype dt = c->dt;
    const int64_t T = s.T, H = c->H, Di = c->Di, N = c->N, R = c->R, xd = R + 2 * N;
    const jb_cuda_step_desc step = jb_device_step(c, s);
    CU(jb_cuda_ssm_params(dt, c->xdbl, T, R, N, w->dt_norm, w->b_norm, w->c_norm, (float)c->cfg->rms_norm_eps,
                         c->dt_in, c->stream), "mamba dt/B/C norms");
    BL(jb_cuda_gemm(c->blas, dt, dt, c->delta, Di, c->dt_in, R, w->dt_proj, T, Di, R), "mamba dt_proj");
    jb_cuda_scan_args scan = {c->u, c->delta, w->dt_bias, w->A, c->xdbl + R, c->xdbl + R + N, xd, w->D,
                             jb_at(c->wide, Di, c->es), 2 * Di, c->ssm + slot * Di * N, c->M * Di * N, c->y,
                             c->summary, Di, N};
    CU(jb_cuda_selective_scan(dt, &scan, &step, c->stream), "mamba selective scan");
    BL(jb_cuda_gemm(c->blas, dt, JAMBA_DTYPE_F32, c->mix, H, c->y, Di, w->out_proj, T, H, Di), "mamba out_proj");
    return true;
}

bool jb_cuda_mamba_decode(jb_cuda_ctx *c, const jb_dev_mamba *w, int64_t slot, const jb_step_shape &s,
                          const jb_next_norm &next, jb_run_state &rs) {
    const int64_t T = s.T, H = c->H, Di = c->Di, N = c->N, R = c->R, K = c->K, xd = R + 2 * N;
    const jb_cuda_step_desc step = jb_device_step(c, s);
    jb_cuda_mamba_mixer_args a = {};
    a.in = jb_cuda_rows_product{w->in_proj, 2 * Di, H, c->xn, H, NULL, T};
    a.in_bias = w->in_bias;
    a.conv = jb_cuda_conv_args{c->wide, 2 * Di, w->conv_w, w->conv_b, c->conv + slot * Di * (K - 1),
                               c->M * Di * (K - 1), c->u, Di, K};
    a.xp = jb_cuda_rows_product{w->x_proj, xd, Di, c->u, Di, NULL, T};
    a.xdbl = c->xdbl;
    a.dt_w = w->dt_norm, a.b_w = w->b_norm, a.c_w = w->c_norm;
    a.dt_in = c->dt_in;
    a.dp = jb_cuda_rows_product{w->dt_proj, Di, R, c->dt_in, R, NULL, T};
    a.scan = jb_cuda_scan_args{c->u, NULL, w->dt_bias, w->A, c->xdbl + R, c->xdbl + R + N, xd, w->D,
                               jb_at(c->wide, Di, c->es), 2 * Di, c->ssm + slot * Di * N, c->M * Di * N, c->y, NULL,
                               Di, N};
    a.op = jb_cuda_rows_product{w->out_proj, H, Di, c->y, Di, NULL, T};
    a.out_bias = w->out_bias;
    a.x = c->x, a.norm_w = next.w, a.norm_out = next.out;
    a.eps = (float)c->cfg->rms_norm_eps;
    a.counter = c->sync_counter;
    CU(jb_cuda_mamba_mixer_rows(c->dt, &a, &step, jb_cuda_mamba_grid(c, T), c->stream),
       "mamba mixer of a decode step");
    return true;
}

bool jb_cuda_attention_layer(jb_cuda_ctx *c, const jb_dev_layer *w, int64_t slot, const jb_step_shape &s,
                             jb_run_state &rs) {
    const jamba_dtype dt = c->dt;
    const int64_t T = s.T, H = c->H, qw = c->q + 2 * c->kv;
    const jb_cuda_step_desc step = jb_device_step(c, s);
    const jb_cuda_rows_product qkv = {w->qkv, qw, H, c->xn, H, NULL, T};
    if (s.fused)
        CU(jb_cuda_rows_gemv(dt, &qkv, dt, c->wide, qw, c->stream), "attention q/k/v");
    else
        BL(jb_cuda_gemm(c->blas, dt, dt, c->wide, qw, c->xn, H, w->qkv, T, qw, H), "attention q/k/v");
    const int64_t layer_off = slot * 2 * c->C * c->kv; /* [S][A][2][C][kv] */
    const int64_t n_kv = c->cfg->num_key_value_heads, scale_off = slot * 2 * c->C * n_kv; /* [S][A][2][C][n_kv] */
    jb_cuda_attn_args a = {};
    a.qkv = c->wide;
    a.ld_qkv = qw;
    a.k_cache = jb_at(c->kv_cache, layer_off, c->kv_es);
    a.v_cache = jb_at(c->kv_cache, layer_off + c->C * c->kv, c->kv_es);
    a.seq_stride = c->A * 2 * c->C * c->kv;
    a.kv_dt = c->kv_dt;
    a.k_scale = c->kv_scale ? c->kv_scale + scale_off : NULL;
    a.v_scale = c->kv_scale ? c->kv_scale + scale_off + c->C * n_kv : NULL;
    a.scale_seq_stride = c->A * 2 * c->C * n_kv;
    a.out = c->y;
    a.n_heads = c->cfg->num_attention_heads;
    a.n_kv_heads = c->cfg->num_key_value_heads;
    a.head_dim = c->cfg->head_dim;
    a.partial = c->partial;
    a.partial_capacity = c->partial_cap;
    a.split_count = c->split_count;
    a.split_count_capacity = c->split_count_cap;
    a.n_splits = s.n_splits;
    a.split_len = s.split_len;
    CU(jb_cuda_kv_append(dt, &a, &step, c->stream), "attention KV append");
    CU(jb_cuda_attention(dt, &a, &step, 0, c->stream), "attention");
    const jb_cuda_rows_product o = {w->o_proj, H, c->q, c->y, c->q, NULL, T};
    if (s.fused)
        CU(jb_cuda_rows_gemv_residual(dt, &o, NULL, c->x, w->pre_ff_norm, c->xn, (float)c->cfg->rms_norm_eps,
                                      c->sync_counter, c->stream), "attention o_proj with the residual and pre-FFN norm");
    else
        BL(jb_cuda_gemm(c->blas, dt, JAMBA_DTYPE_F32, c->mix, H, c->y, c->q, w->o_proj, T, H, c->q), "attention o_proj");
    return true;
}
