/*
 * weights.h — the model's weights as typed views into the mapped checkpoint, one struct per layer kind.
 * Produced by jb_bind_weights (bind.c); consumed by every backend. Nothing here owns tensor data.
 *
 * Dimension letters: V vocab, H hidden, I intermediate, E experts, n_h/n_kv heads, d_h head_dim,
 * D_i Mamba inner width, N d_state, K d_conv, R dt_rank. All matrices are row-major [out, in].
 */
#ifndef JB_WEIGHTS_H
#define JB_WEIGHTS_H

#include <stdbool.h>
#include <stdint.h>

#include "base/strlist.h"
#include "ckpt/checkpoint.h"
#include "jamba.h"

typedef struct jb_weight {
    const void *data;   /* row-major; NULL when the config does not have this tensor */
    jamba_dtype dtype;  /* F32, F16 or BF16; linear-layer matrices also I8 or F8_E4M3 (weight-only, with scale) */
    int rank;
    int64_t shape[3];
    const float *scale; /* I8 / F8_E4M3: [shape[0]] per output row, value = stored × scale; else NULL */
} jb_weight;

/* True for the weight-only quantized dtypes a linear layer may be stored in. */
static inline bool jb_dtype_quantized(jamba_dtype d) { return d == JAMBA_DTYPE_I8 || d == JAMBA_DTYPE_F8_E4M3; }

typedef struct jb_attention_weights {
    jb_weight q_proj; /* [n_h*d_h, H] */
    jb_weight k_proj; /* [n_kv*d_h, H] */
    jb_weight v_proj; /* [n_kv*d_h, H] */
    jb_weight o_proj; /* [H, n_h*d_h] */
} jb_attention_weights;

typedef struct jb_mamba_weights {
    jb_weight in_proj;       /* [2*D_i, H]: rows [0, D_i) feed the conv/SSM branch u, [D_i, 2*D_i) the gate z */
    jb_weight in_proj_bias;  /* [2*D_i], only with mamba_proj_bias */
    jb_weight conv1d;        /* [D_i, 1, K]: tap K-1 multiplies the current token */
    jb_weight conv1d_bias;   /* [D_i], only with mamba_conv_bias */
    jb_weight x_proj;        /* [R + 2N, D_i]: rows dt (R), then B (N), then C (N) */
    jb_weight dt_proj;       /* [D_i, R] */
    jb_weight dt_proj_bias;  /* [D_i], added before softplus */
    jb_weight A_log;         /* [D_i, N]: A = -exp(A_log) */
    jb_weight D;             /* [D_i] skip */
    jb_weight out_proj;      /* [H, D_i] */
    jb_weight out_proj_bias; /* [H], only with mamba_proj_bias */
    jb_weight dt_norm;       /* [R], with mamba_inner_layernorms or when stored (weights.inner_norms_stored) */
    jb_weight b_norm;        /* [N] */
    jb_weight c_norm;        /* [N] */
} jb_mamba_weights;

typedef struct jb_mlp_weights {
    jb_weight gate_proj; /* [I, H] */
    jb_weight up_proj;   /* [I, H] */
    jb_weight down_proj; /* [H, I] */
} jb_mlp_weights;

/* True when the three matrices of each of these n MLPs are int8 (the block a device keeps int8). */
static inline bool jb_mlps_int8(const jb_mlp_weights *m, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (m[i].gate_proj.dtype != JAMBA_DTYPE_I8 || m[i].up_proj.dtype != JAMBA_DTYPE_I8 ||
            m[i].down_proj.dtype != JAMBA_DTYPE_I8)
            return false;
    return true;
}

typedef struct jb_layer_weights {
    jb_weight input_norm;       /* [H] */
    jb_weight pre_ff_norm;      /* [H] */
    jb_attention_weights attn;  /* attention layers */
    jb_mamba_weights mamba;     /* Mamba layers */
    jb_mlp_weights mlp;         /* dense-FFN layers */
    jb_weight router;           /* [E, H], MoE layers */
    jb_mlp_weights *experts;    /* [E], MoE layers; owned array of views */
} jb_layer_weights;

typedef struct jb_weights {
    jb_weight embed;          /* [V, H] */
    jb_weight final_norm;     /* [H] */
    jb_weight lm_head;        /* [V, H]; the embedding itself when tied */
    jb_layer_weights *layers; /* [L], owned */
    int64_t n_layers;
    int64_t *order;           /* [n_order] checkpoint entries in binding order (the inventory), owned */
    int64_t n_order;
    void **owned;             /* [n_owned] memory the views point into: row scales, quantized copies */
    int64_t n_owned, cap_owned;
    bool inner_norms_stored;  /* mamba_inner_layernorms = false, yet every Mamba layer stores dt/B/C norms */
} jb_weights;

/* Bind every tensor the config implies. Missing and unexpected tensors are reported by name; a tensor of
 * the wrong shape or dtype is reported with what the config implies. With allow_unexpected, tensors the
 * config does not imply are skipped and listed in `notes` instead. `label` (the folder) prefixes messages.
 * Linear-layer matrices (attention, Mamba projections, MLPs, experts, lm_head, and the embedding when tied to
 * it) may be stored as I8 or F8_E4M3 with a companion "<name>_scale" tensor: one scale, or one per output row ([rows] or [rows, 1]; [E, rows] for
 * stacked experts), F32/F16/BF16. Activation scales ("..input_scale") are accepted and ignored. */
jamba_status jb_bind_weights(const jamba_config *cfg, const jb_checkpoint *ckpt, bool allow_unexpected,
                             const char *label, jb_weights *out, jb_strlist *notes, jamba_error *err);
void jb_weights_free(jb_weights *w);

/* Keep `p` (from jb_malloc) until jb_weights_free; false when out of memory (p is then freed). */
bool jb_weights_own(jb_weights *w, void *p);

/* One tensor a config implies: its canonical (Hugging Face) name and shape. */
#define NAME_BYTES 192
typedef struct jb_tensor_spec {
    char name[NAME_BYTES];
    int rank;
    int64_t shape[3];
} jb_tensor_spec;

/* Visit every tensor `cfg` implies, in binding order, with its canonical (Hugging Face, per-expert) name,
 * the view in `w` it binds to, its shape, and whether it is a linear layer's matrix. Tied lm_head is not
 * visited. w may be bound weights or empty (jb_weights_free it afterwards). fn returns false on OOM. */
typedef bool (*jb_visit_fn)(void *arg, const char *name, jb_weight *w, int rank, const int64_t *shape, bool linear);
jamba_status jb_weights_visit(const jamba_config *cfg, jb_weights *w, jb_visit_fn fn, void *arg, jamba_error *err);

/* Every tensor `cfg` implies, in binding order (per-expert names, untied lm_head only when untied); the
 * caller frees *out with jb_free. */
jamba_status jb_expected_tensors(const jamba_config *cfg, jb_tensor_spec **out, int64_t *n, jamba_error *err);

/* Scan one tensor for NaN/Inf; on the first one fail naming the tensor and the element index. */
jamba_status jb_check_finite(const jb_checkpoint *ckpt, int64_t entry, jamba_error *err);

#endif /* JB_WEIGHTS_H */
