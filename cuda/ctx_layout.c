/*
 * ctx_layout.c — device memory sizes of CUDA contexts and weights (ctx_layout.h).
 */
#include "cuda/ctx_layout.h"

#include "ckpt/config.h"
#include "base/checked.h"
#include "base/error.h"
#include "backend/backend.h"
#include "cuda/gpu_types.h"

#include <string.h>

/* Products of up to four factors, remembering any overflow. */
typedef struct sizer {
    bool ok;
} sizer;

static uint64_t prod(sizer *z, uint64_t a, uint64_t b, uint64_t c, uint64_t d) {
    uint64_t v = a;
    if (!jb_mul_u64(v, b, &v) || !jb_mul_u64(v, c, &v) || !jb_mul_u64(v, d, &v)) {
        z->ok = false;
        return 0;
    }
    return v;
}

static uint64_t align_up(sizer *z, uint64_t v) {
    uint64_t r;
    if (!jb_add_u64(v, JB_CUDA_ARENA_ALIGN - 1, &r)) {
        z->ok = false;
        return 0;
    }
    return r / JB_CUDA_ARENA_ALIGN * JB_CUDA_ARENA_ALIGN;
}

static int64_t max2(int64_t a, int64_t b) { return a > b ? a : b; }
static int64_t max3(int64_t a, int64_t b, int64_t c) { return max2(max2(a, b), c); }

static uint64_t es_of(jamba_dtype d) { return (uint64_t)jamba_dtype_size(d); }

uint64_t jb_ctx_meta_layout(int64_t Tb, int64_t max_segs, int64_t max_chunks, int64_t cap,
                            uint64_t offset[JB_META_PARTS]) {
    const uint64_t parts[JB_META_PARTS] = {(uint64_t)Tb * 4, (uint64_t)Tb * 4, (uint64_t)max_segs * sizeof(jb_cuda_seg),
                                           (uint64_t)max_chunks * sizeof(jb_cuda_chunk),
                                           (uint64_t)max2(cap, JB_CUDA_GRAPH_ROWS) * 8};
    uint64_t off = 0;
    for (int i = 0; i < JB_META_PARTS; i++) {
        if (offset)
            offset[i] = off;
        off += (parts[i] + 15) / 16 * 16;
    }
    return off;
}

jamba_status jb_ctx_layout_plan(const jamba_config *c, const jb_ctx_shape *s, jb_ctx_layout *out, jamba_error *err) {
    memset(out, 0, sizeof *out);
    sizer z = {true};
    const uint64_t es = es_of(s->dt), kv_es = es_of(s->kv_dt);
    const uint64_t S = (uint64_t)s->S, C = (uint64_t)s->C, Tb = (uint64_t)s->Tb, H = (uint64_t)c->hidden_size;
    const uint64_t Di = (uint64_t)c->mamba_d_inner, N = (uint64_t)c->mamba_d_state, R = (uint64_t)c->mamba_dt_rank;
    const uint64_t I = (uint64_t)c->intermediate_size, V = (uint64_t)c->vocab_size;
    const uint64_t n_kv = (uint64_t)c->num_key_value_heads, kv = n_kv * (uint64_t)c->head_dim;
    const int64_t q = c->num_attention_heads * c->head_dim;
    const uint64_t A = (uint64_t)c->n_attention_layers, M = (uint64_t)c->n_mamba_layers;
    const bool moe = c->n_moe_layers > 0, fp8 = s->kv_dt == JAMBA_DTYPE_F8_E4M3;
    const uint64_t E = (uint64_t)c->num_experts, k = moe ? (uint64_t)c->num_experts_per_tok : 0;
    const uint64_t slots = Tb * k, m_on = M > 0, a_on = A > 0;
    const uint64_t logit_rows = (uint64_t)max2(s->cap, JB_CUDA_GRAPH_ROWS);
    out->max_segs = s->S < s->Tb ? s->S : s->Tb;
    out->max_chunks = out->max_segs + s->Tb;
    out->partial_floats = A ? (int64_t)JB_CUDA_SPLIT_BUDGET * c->num_attention_heads * (c->head_dim + 2) : 0;
    uint64_t *b = out->bytes;
    b[JB_BUF_KV] = prod(&z, S * A * 2, C, kv, kv_es);
    b[JB_BUF_KV_SCALE] = fp8 ? prod(&z, S * A * 2, C, n_kv, 4) : 0;
    b[JB_BUF_CONV] = prod(&z, S * M, Di, (uint64_t)(c->mamba_d_conv - 1), 4);
    b[JB_BUF_SSM] = prod(&z, S * M, Di, N, 4);
    b[JB_BUF_X] = prod(&z, Tb, H, 4, 1);
    b[JB_BUF_MIX] = prod(&z, Tb, H, 4, 1);
    b[JB_BUF_XN] = prod(&z, Tb, H, es, 1);
    b[JB_BUF_WIDE] = prod(&z, Tb, (uint64_t)max3(M ? 2 * c->mamba_d_inner : 0, A ? q + 2 * (int64_t)kv : 0,
                                                  2 * c->intermediate_size), es, 1);
    b[JB_BUF_U] = prod(&z, m_on * Tb, Di, es, 1);
    b[JB_BUF_XDBL] = prod(&z, m_on * Tb, R + 2 * N, 4, 1);
    b[JB_BUF_DT_IN] = prod(&z, m_on * Tb, R, es, 1);
    b[JB_BUF_DELTA] = prod(&z, m_on * Tb, Di, es, 1);
    b[JB_BUF_Y] = prod(&z, Tb, (uint64_t)max3(M ? c->mamba_d_inner : 0, A ? q : 0, c->intermediate_size), es, 1);
    b[JB_BUF_SUMMARY] = prod(&z, m_on * 2 * JB_CUDA_SCAN_SLOTS, Di, N, 4);
    b[JB_BUF_PARTIAL] = prod(&z, a_on * (uint64_t)out->partial_floats, 4, 1, 1);
    b[JB_BUF_ROUTER] = prod(&z, moe ? Tb : 0, E, 4, 1);
    b[JB_BUF_EXPERTS] = prod(&z, slots, 4, 1, 1);
    b[JB_BUF_WEIGHTS] = prod(&z, slots, 4, 1, 1);
    b[JB_BUF_BEGIN] = moe ? (E + 1) * 4 : 0;
    b[JB_BUF_SLOT_TOKEN] = prod(&z, slots, 4, 1, 1);
    b[JB_BUF_SLOT_POS] = prod(&z, slots, 4, 1, 1);
    b[JB_BUF_SLOT_WEIGHT] = prod(&z, slots, 4, 1, 1);
    b[JB_BUF_GATHERED] = prod(&z, slots, H, es, 1);
    b[JB_BUF_GU] = prod(&z, slots, 2 * I, es, 1);
    b[JB_BUF_ACT] = prod(&z, slots, I, es, 1);
    b[JB_BUF_EXPERT_OUT] = prod(&z, slots, H, 4, 1);
    b[JB_BUF_DEQUANT] = prod(&z, s->dequant_elems, es, 1, 1);
    b[JB_BUF_FINAL_ROWS] = prod(&z, logit_rows, H, 4, 1);
    b[JB_BUF_FINAL_ACT] = prod(&z, logit_rows, H, es, 1);
    b[JB_BUF_LOGITS] = prod(&z, (uint64_t)s->cap, V, 4, 1);
    b[JB_BUF_GRAPH_LOGITS] = prod(&z, s->graphs ? JB_CUDA_GRAPH_ROWS : 0, V, 4, 1);
    b[JB_BUF_META] = jb_ctx_meta_layout(s->Tb, out->max_segs, out->max_chunks, s->cap, NULL);
    b[JB_BUF_SAMPLE_PARAMS] = JB_CUDA_SAMPLE_ROWS * sizeof(jb_sample_params);
    b[JB_BUF_SAMPLE_PEN] = (uint64_t)JB_CUDA_SAMPLE_ROWS * JB_SAMPLE_MAX_PENALIZED * 4;
    b[JB_BUF_SAMPLE_WORK] = prod(&z, JB_CUDA_SAMPLE_ROWS, V, 4, 1);
    b[JB_BUF_SAMPLE_TOK] = JB_CUDA_SAMPLE_ROWS * 4;
    b[JB_BUF_SAMPLE_USED] = JB_CUDA_SAMPLE_ROWS * 4;
    b[JB_BUF_BLAS] = JB_CUDA_BLAS_WORKSPACE;
    uint64_t off = 0;
    for (int i = 0; i < JB_BUF_COUNT && z.ok; i++) {
        out->offset[i] = off;
        if (!jb_add_u64(off, align_up(&z, b[i]), &off))
            z.ok = false;
    }
    out->total = off;
    if (!z.ok)
        return jb_fail(err, JAMBA_ERR_OVERFLOW, "CUDA context: the sizes overflow 64 bits (n_ctx %lld, n_seq_max %d, "
                       "n_batch %lld)", (long long)s->C, s->S, (long long)s->Tb);
    return JAMBA_OK;
}

/* Weights: one aligned block per tensor, as cuda/weights.cu places them. */
typedef struct wsum {
    sizer z;
    uint64_t total;
} wsum;

static void put(wsum *w, uint64_t a, uint64_t b, uint64_t es) {
    const uint64_t v = align_up(&w->z, prod(&w->z, a, b, es, 1));
    if (!jb_add_u64(w->total, v, &w->total))
        w->z.ok = false;
}

bool jb_weights_device_bytes(const jamba_config *c, const jb_weight_shape *ws, uint64_t *bytes,
                             uint64_t *dequant_elems) {
    wsum w = {{true}, 0};
    const uint64_t es = es_of(ws->dt), V = (uint64_t)c->vocab_size, H = (uint64_t)c->hidden_size;
    const uint64_t Di = (uint64_t)c->mamba_d_inner, N = (uint64_t)c->mamba_d_state, R = (uint64_t)c->mamba_dt_rank;
    const uint64_t I = (uint64_t)c->intermediate_size, E = (uint64_t)c->num_experts;
    const uint64_t q = (uint64_t)(c->num_attention_heads * c->head_dim);
    const uint64_t kv = (uint64_t)(c->num_key_value_heads * c->head_dim);
    *dequant_elems = 0;
    put(&w, V, H, es);
    if (!c->tie_word_embeddings)
        put(&w, V, H, es);
    put(&w, H, 1, 4);
    for (int64_t l = 0; l < c->num_hidden_layers; l++) {
        put(&w, H, 1, 4);
        put(&w, H, 1, 4);
        if (jb_layer_is_attention(c, l)) {
            put(&w, q + 2 * kv, H, es);
            put(&w, H, q, es);
        } else {
            put(&w, 2 * Di, H, es);
            if (c->mamba_proj_bias)
                put(&w, 2 * Di, 1, 4);
            put(&w, Di, (uint64_t)c->mamba_d_conv, 4);
            if (c->mamba_conv_bias)
                put(&w, Di, 1, 4);
            put(&w, R + 2 * N, Di, es);
            put(&w, Di, R, es);
            put(&w, Di, 1, 4);
            put(&w, Di, N, 4);
            put(&w, Di, 1, 4);
            put(&w, H, Di, es);
            if (c->mamba_proj_bias)
                put(&w, H, 1, 4);
            if (ws->inner_norms) {
                put(&w, R, 1, 4);
                put(&w, N, 1, 4);
                put(&w, N, 1, 4);
            }
        }
        const bool moe = jb_layer_is_moe(c, l);
        const bool q8 = moe ? ws->experts_int8 : ws->mlp_int8;
        const uint64_t n = moe ? E : 1, fes = q8 ? 1 : es;
        if (moe)
            put(&w, E, H, es);
        put(&w, n * 2 * I, H, fes);
        put(&w, n * H, I, fes);
        if (q8) {
            put(&w, n * 2 * I, 1, 4);
            put(&w, n * H, 1, 4);
            *dequant_elems = 2 * I * H;
        }
    }
    *bytes = w.total;
    return w.z.ok;
}
