/*
 * weights_dev.h — the layout of a model's weights on the device (C++ only; cuda/weights.cu fills it,
 * cuda/forward.cu reads it). Matrices are row-major [out, in] in the weights' dtype `dt` (FFN matrices also
 * int8 with fp32 row scales); vectors and the small Mamba tensors are fp32. One arena holds everything.
 */
#ifndef JB_CUDA_WEIGHTS_DEV_H
#define JB_CUDA_WEIGHTS_DEV_H

#include "cuda/cuda_ctx.h"

struct jb_dev_mamba {
    void *in_proj;          /* [2 D_i, H] */
    float *in_bias;         /* [2 D_i] or NULL */
    float *conv_w;          /* [D_i, K] */
    float *conv_b;          /* [D_i] or NULL */
    void *x_proj;           /* [R + 2N, D_i] */
    void *dt_proj;          /* [D_i, R] */
    float *dt_bias;         /* [D_i] */
    float *A;               /* [D_i, N] = -exp(A_log) */
    float *D;               /* [D_i] */
    void *out_proj;         /* [H, D_i] */
    float *out_bias;        /* [H] or NULL */
    float *dt_norm, *b_norm, *c_norm; /* [R], [N], [N]; NULL without inner norms */
};

struct jb_dev_layer {
    float *input_norm, *pre_ff_norm; /* [H] */
    bool attention, moe;
    void *qkv;              /* attention: [n_h d_h + 2 n_kv d_h, H] */
    void *o_proj;           /* attention: [H, n_h d_h] */
    jb_dev_mamba mamba;
    jamba_dtype ffn_wdt;    /* gate_up and down: dt, or I8 with the row scales below */
    void *gate_up;          /* dense: [2I, H], gate rows first; MoE: [E][2I, H] */
    void *down;             /* dense: [H, I]; MoE: [E][H, I] */
    float *gate_up_scale;   /* I8: [E][2I] (E = 1 for dense); else NULL */
    float *down_scale;      /* I8: [E][H]; else NULL */
    void *router;           /* MoE: [E, H] */
};

struct jb_cuda_weights {
    int device;
    jamba_dtype dt;         /* F32 or BF16 */
    void *arena;
    size_t bytes;
    void *embed;            /* [V, H] */
    void *lm_head;          /* [V, H]; the embedding when tied */
    float *final_norm;      /* [H] */
    jb_dev_layer *layers;   /* [L] */
    int64_t n_layers;
};

#endif /* JB_CUDA_WEIGHTS_DEV_H */
