/*
 * state.c — the CPU backend's sequence state operations: reset, copy, and reading and writing pieces.
 */
#include "cpu/context.h"

#include "ckpt/config.h"

#include <string.h>


jamba_status jb_cpu_seq_reset(jb_backend_ctx *b, int32_t seq, jamba_error *err) {
    (void)err;
    const jamba_config *c = &b->model->config;
    for (int64_t m = 0; m < c->n_mamba_layers; m++) {
        memset(jb_cpu_conv(b, seq, m), 0, (size_t)jb_conv_floats(c) * sizeof(float));
        memset(jb_cpu_ssm(b, seq, m), 0, (size_t)jb_ssm_floats(c) * sizeof(float));
    }
    return JAMBA_OK; /* KV rows past the sequence's length are never read */
}

jamba_status jb_cpu_seq_copy(jb_backend_ctx *b, int32_t src, int32_t dst, int64_t n_tokens, jamba_error *err) {
    (void)err;
    const jamba_config *c = &b->model->config;
    for (int64_t m = 0; m < c->n_mamba_layers; m++) {
        memcpy(jb_cpu_conv(b, dst, m), jb_cpu_conv(b, src, m), (size_t)jb_conv_floats(c) * sizeof(float));
        memcpy(jb_cpu_ssm(b, dst, m), jb_cpu_ssm(b, src, m), (size_t)jb_ssm_floats(c) * sizeof(float));
    }
    const size_t kv_bytes = (size_t)(n_tokens * jb_kv_width(c)) * sizeof(float);
    for (int64_t a = 0; a < c->n_attention_layers; a++)
        for (int which = 0; which < 2; which++)
            memcpy(jb_cpu_kv(b, dst, a, which), jb_cpu_kv(b, src, a, which), kv_bytes);
    return JAMBA_OK;
}

/* The memory of a piece. */
static float *piece(const jb_backend_ctx *b, int32_t seq, jb_state_kind kind, int64_t layer) {
    switch (kind) {
    case JB_STATE_CONV:
        return jb_cpu_conv(b, seq, layer);
    case JB_STATE_SSM:
        return jb_cpu_ssm(b, seq, layer);
    default:
        return jb_cpu_kv(b, seq, layer, kind == JB_STATE_V);
    }
}

jamba_status jb_cpu_state_read(jb_backend_ctx *b, int32_t seq, jb_state_kind kind, int64_t layer, int64_t offset,
                               int64_t n, float *dst, jamba_error *err) {
    (void)err;
    memcpy(dst, piece(b, seq, kind, layer) + offset, (size_t)n * sizeof(float));
    return JAMBA_OK;
}

jamba_status jb_cpu_state_write(jb_backend_ctx *b, int32_t seq, jb_state_kind kind, int64_t layer, int64_t offset,
                                int64_t n, const float *src, jamba_error *err) {
    (void)err;
    memcpy(piece(b, seq, kind, layer) + offset, src, (size_t)n * sizeof(float));
    return JAMBA_OK;
}
