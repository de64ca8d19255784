/*
 * ctx_layout.c — device memory sizes of CUDA contexts and weights (ctx_layout.h).
 */
#include "cuda/ctx_layout.h"

#include "ckpt/config.h"
#include "ckpt/weights.h"
#include "base/checked.h"
#include "base/error.h"
#include "backend/backend.h"
#include "cuda/gpu_types.h"
#include "parallel/shard.h"

#include <stdio.h>
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
    /* a launch of 2 splits or more has at most SPLIT_BUDGET / 2 rows, each of at most n_h items */
    out->split_counters = A ? (int64_t)(JB_CUDA_SPLIT_BUDGET / 2) * c->num_attention_heads : 0;
    uint64_t *b = out->bytes;
#define JB_CTX_BUF_SIZE(name, field, bytes) b[JB_BUF_##name] = (bytes);
    JB_CTX_BUFFERS(JB_CTX_BUF_SIZE)
#undef JB_CTX_BUF_SIZE
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

/* Weights: the tensors jb_weights_visit enumerates (the one list of them), in the blocks cuda/weights.cu
 * places: one aligned block per tensor, except the fused ones of a layer: attention q|k|v as one matrix,
 * an FFN's gate|up (all experts of a MoE layer) as one, its down projections as one, and int8 row scales
 * of each beside them. Matrices in the device dtype (int8 for int8 FFN blocks); small tensors (vectors,
 * A_log, the conv) in fp32. With a sharding plan, each tensor counts with the slice one rank holds. */
typedef enum fused_block { FUSED_QKV, FUSED_GATE_UP, FUSED_DOWN, FUSED_GATE_UP_SCALE, FUSED_DOWN_SCALE, FUSED_COUNT,
                           OWN_BLOCK = FUSED_COUNT } fused_block;

typedef struct wsum {
    const jb_weight_shape *ws;
    const jb_shard_plan *plan;  /* NULL: every tensor whole */
    int rank;                   /* whose slices, with a plan */
    int64_t visited;            /* tensors so far: the plan's index of the next one */
    sizer z;
    uint64_t total, payload, replicated;
    int64_t layer;              /* the layer of the open fused blocks (-1: none) */
    uint64_t open[FUSED_COUNT]; /* their bytes so far */
} wsum;

static void put_block(wsum *w, uint64_t bytes) {
    if (!jb_add_u64(w->total, align_up(&w->z, bytes), &w->total))
        w->z.ok = false;
}

static void close_fused(wsum *w) {
    for (int b = 0; b < FUSED_COUNT; b++)
        if (w->open[b])
            put_block(w, w->open[b]);
    memset(w->open, 0, sizeof w->open);
}

/* bytes into block b (its own aligned block, or a fused one of the layer); `whole`: every rank holds
 * these bytes in full (counted in `replicated`). */
static void add_bytes(wsum *w, fused_block b, uint64_t bytes, bool whole) {
    if (!jb_add_u64(w->payload, bytes, &w->payload) || (whole && !jb_add_u64(w->replicated, bytes, &w->replicated)))
        w->z.ok = false;
    if (b == OWN_BLOCK)
        put_block(w, bytes);
    else if (!jb_add_u64(w->open[b], bytes, &w->open[b]))
        w->z.ok = false;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* What of this tensor is counted: its elements, rows (for int8 row scales), and whether every rank holds
 * all of it (whole) or every row scale of it (scales_whole: its columns are split). */
typedef struct held {
    uint64_t elems;
    uint64_t rows;
    bool whole, scales_whole;
} held;

static held held_of(wsum *w, const char *name, int rank, const int64_t *shape) {
    held h = {1, (uint64_t)shape[0], false, false};
    if (w->plan == NULL) {
        for (int d = 0; d < rank; d++)
            h.elems = prod(&w->z, h.elems, (uint64_t)shape[d], 1, 1);
        return h;
    }
    const int64_t t = w->visited++;
    if (t >= w->plan->n_tensors || strcmp(w->plan->tensors[t].name, name) != 0) {
        w->z.ok = false; /* a plan made for other tensors */
        return (held){0, 0, false, false};
    }
    if (!jb_shard_held_elems(w->plan, t, w->rank, &h.elems))
        w->z.ok = false;
    h.rows = (uint64_t)jb_shard_held_rows(w->plan, t, w->rank);
    h.whole = w->plan->tensors[t].split == JB_SPLIT_REPLICATED;
    h.scales_whole = h.whole || (h.elems > 0 && jb_shard_slice(w->plan, t, w->rank)->dim != 0);
    return h;
}

static bool place_tensor(void *arg, const char *name, jb_weight *view, int rank, const int64_t *shape, bool linear) {
    (void)view, (void)linear;
    wsum *w = arg;
    long long layer = -1;
    if (sscanf(name, "model.layers.%lld.", &layer) != 1)
        layer = -1;
    if (layer != w->layer) {
        close_fused(w);
        w->layer = layer;
    }
    const held h = held_of(w, name, rank, shape);
    const uint64_t es = es_of(w->ws->dt);
    if (rank == 1 || ends_with(name, "A_log") || strstr(name, ".conv1d.")) {
        add_bytes(w, OWN_BLOCK, prod(&w->z, h.elems, 4, 1, 1), h.whole);
    } else if (strstr(name, ".self_attn.") && !strstr(name, ".o_proj.")) {
        add_bytes(w, FUSED_QKV, prod(&w->z, h.elems, es, 1, 1), h.whole);
    } else if (strstr(name, ".feed_forward.") && !strstr(name, ".router.")) {
        const bool q8 = strstr(name, ".experts.") ? w->ws->experts_int8 : w->ws->mlp_int8;
        const bool down = strstr(name, ".down_proj.") != NULL;
        add_bytes(w, down ? FUSED_DOWN : FUSED_GATE_UP, prod(&w->z, h.elems, q8 ? 1 : es, 1, 1), h.whole);
        if (q8)
            add_bytes(w, down ? FUSED_DOWN_SCALE : FUSED_GATE_UP_SCALE, prod(&w->z, h.rows, 4, 1, 1), h.scales_whole);
    } else {
        add_bytes(w, OWN_BLOCK, prod(&w->z, h.elems, es, 1, 1), h.whole);
    }
    return true;
}

jamba_config jb_weights_device_config(const jamba_config *cfg, const jb_weight_shape *ws) {
    jamba_config c = *cfg;
    c.mamba_inner_layernorms = ws->inner_norms; /* stored norms are applied whatever the config says */
    return c;
}

bool jb_weights_device_share(const jamba_config *cfg, const jb_weight_shape *ws, const jb_shard_plan *plan, int rank,
                             jb_weights_share *out) {
    const jamba_config c = jb_weights_device_config(cfg, ws);
    wsum w = {.ws = ws, .plan = plan, .rank = rank, .z = {true}, .layer = -1};
    jb_weights views = {0};
    const bool ok = jb_weights_visit(&c, &views, place_tensor, &w, NULL) == JAMBA_OK;
    jb_weights_free(&views);
    close_fused(&w);
    *out = (jb_weights_share){.bytes = w.total, .payload = w.payload, .replicated = w.replicated};
    return ok && w.z.ok && (plan == NULL || w.visited == plan->n_tensors);
}

bool jb_weights_device_bytes(const jamba_config *cfg, const jb_weight_shape *ws, uint64_t *bytes) {
    jb_weights_share s;
    const bool ok = jb_weights_device_share(cfg, ws, NULL, 0, &s);
    *bytes = s.bytes;
    return ok;
}
