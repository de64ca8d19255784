/*
 * tp_emulate.c — N emulated tensor/expert-parallel ranks (tp_emulate.h). Every sharded product a rank
 * computes ends in partial sums the reference collectives below combine; between layers every rank holds
 * the whole residual stream [T, H], as a device would. Shapes: T rows of the step, H hidden, V vocab,
 * and per rank (jb_shard_rank_config) q_r = n_h/N d_h, kv_r = n_kv/N d_h (at least d_h), D_r = D_i/N,
 * I_r = I/N (dense MLPs; experts under an intermediate split), vc_r its vocabulary rows.
 */
#include "tests/support/tp_emulate.h"

#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/model.h"
#include "base/threadpool.h"
#include "ckpt/config.h"
#include "ckpt/dtype.h"
#include "cpu/attention.h"
#include "cpu/ffn.h"
#include "cpu/kernels.h"
#include "cpu/mamba.h"
#include "cpu/ops.h"
#include "moe/router.h"
#include "parallel/slice.h"

typedef struct rank_state {
    jb_weights w; /* its slices */
    float *kv;    /* [A, 2, C, kv_r]: K then V per attention layer */
    float *conv;  /* [M, D_r, K-1] */
    float *ssm;   /* [M, D_r, d_state] */
} rank_state;

/* Memory of one step, freed when it ends. */
typedef struct arena {
    void **p;
    int64_t n, cap;
} arena;

struct tp_model {
    const jamba_model *m;
    const jamba_config *c; /* the model's */
    jamba_config rc;       /* a rank's shapes */
    jb_shard_plan plan;
    int n;                 /* ranks */
    int act_bytes;
    int64_t n_ctx, pos;
    int64_t *slot;         /* [L] index among attention layers or among Mamba layers */
    jb_pool *pool;
    rank_state *ranks;     /* [n] */
    int64_t vocab_begin[JB_SHARD_MAX_RANKS], vocab_count[JB_SHARD_MAX_RANKS];
    arena mem;
    /* the collectives the plan lists for the part of the step running now, and how many ran */
    jb_collective expect[JB_LAYER_COLLECTIVES_MAX];
    int n_expect, n_ran;
    const char *where;     /* "layer 3", "embedding", "logits" */
    tp_traffic traffic;
};

/* ---- step memory ---------------------------------------------------------------------------------- */

static void *step_alloc(tp_model *tp, int64_t n, size_t size) {
    if (tp->mem.n == tp->mem.cap) {
        tp->mem.cap = tp->mem.cap ? 2 * tp->mem.cap : 64;
        tp->mem.p = realloc(tp->mem.p, (size_t)tp->mem.cap * sizeof *tp->mem.p);
        cr_assert_not_null(tp->mem.p);
    }
    void *p = calloc((size_t)(n > 0 ? n : 1), size);
    cr_assert_not_null(p);
    return tp->mem.p[tp->mem.n++] = p;
}

static float *floats(tp_model *tp, int64_t n) { return step_alloc(tp, n, sizeof(float)); }

static void step_free(tp_model *tp) {
    for (int64_t i = 0; i < tp->mem.n; i++)
        free(tp->mem.p[i]);
    tp->mem.n = 0;
}

static int64_t elems(const jb_weight *w) {
    int64_t n = 1;
    for (int d = 0; d < w->rank; d++)
        n *= w->shape[d];
    return n;
}

/* A small weight (norms, biases, conv, A_log, D) widened to fp32; NULL when the model has none. */
static const float *widen(tp_model *tp, const jb_weight *w) {
    return w->data ? jb_weight_f32(w, floats(tp, elems(w))) : NULL;
}

/* ---- the reference collectives -------------------------------------------------------------------- */

/* A collective about to run with `payload` bytes over `rows` rows: the next one the plan lists here, with
 * the same bytes per row. */
static void expect_next(tp_model *tp, jb_coll_op op, uint64_t payload, int64_t rows) {
    cr_assert_lt(tp->n_ran, tp->n_expect, "%s: a collective (op %d) the plan does not list", tp->where, (int)op);
    const jb_collective *want = &tp->expect[tp->n_ran++];
    cr_assert_eq(want->op, op, "%s: collective %d is op %d, the plan lists op %d after %s", tp->where, tp->n_ran,
                 (int)op, (int)want->op, want->after);
    cr_assert_eq(payload, want->bytes * (uint64_t)rows, "%s: collective after %s moves %llu bytes over %lld rows, "
                 "the plan says %llu per row", tp->where, want->after, (unsigned long long)payload, (long long)rows,
                 (unsigned long long)want->bytes);
    tp->traffic.collectives++;
    tp->traffic.bytes[op] += payload;
}

/* The part of the step whose collectives the plan lists as cs[0, n). */
static void expect_begin(tp_model *tp, const char *where, const jb_collective *cs, int n) {
    tp->where = where;
    memcpy(tp->expect, cs, (size_t)n * sizeof *cs);
    tp->n_expect = n;
    tp->n_ran = 0;
}

static void expect_end(tp_model *tp) {
    cr_assert_eq(tp->n_ran, tp->n_expect, "%s: %d collectives ran, the plan lists %d", tp->where, tp->n_ran,
                 tp->n_expect);
}

/* bufs[r][rows, width] on every rank becomes the sum over the ranks (in rank order). */
static void all_reduce(tp_model *tp, float **bufs, int64_t rows, int64_t width) {
    if (tp->n < 2)
        return;
    expect_next(tp, JB_COLL_ALL_REDUCE, (uint64_t)(rows * width) * sizeof(float), rows);
    const int64_t count = rows * width;
    for (int r = 1; r < tp->n; r++)
        for (int64_t i = 0; i < count; i++)
            bufs[0][i] += bufs[r][i];
    for (int r = 1; r < tp->n; r++)
        memcpy(bufs[r], bufs[0], (size_t)count * sizeof(float));
}

/* The rows [begin, begin + count) of T a rank keeps when rows are sharded (balanced blocks). */
static void row_block(int64_t T, int r, int n, int64_t *begin, int64_t *count) {
    const int64_t base = T / n, extra = T % n;
    *begin = r * base + (r < extra ? r : extra);
    *count = base + (r < extra ? 1 : 0);
}

/* bufs[r][T, width]: rank r's own rows become the sum over the ranks; its other rows are left stale. */
static void reduce_scatter(tp_model *tp, float **bufs, int64_t T, int64_t width) {
    expect_next(tp, JB_COLL_REDUCE_SCATTER, (uint64_t)(T * width) * sizeof(float), T);
    for (int r = 0; r < tp->n; r++) {
        int64_t b, c;
        row_block(T, r, tp->n, &b, &c);
        for (int64_t i = b * width; i < (b + c) * width; i++) { /* rank order, as all_reduce */
            float sum = bufs[0][i];
            for (int s = 1; s < tp->n; s++)
                sum += bufs[s][i];
            bufs[r][i] = sum; /* other ranks' buffers keep these rows: later sums still read them */
        }
    }
}

/* bufs[r][T, width]: every rank's own rows copied to every rank. */
static void all_gather_rows(tp_model *tp, float **bufs, int64_t T, int64_t width) {
    expect_next(tp, JB_COLL_ALL_GATHER, (uint64_t)(T * width) * sizeof(float), T);
    for (int r = 0; r < tp->n; r++) {
        int64_t b, c;
        row_block(T, r, tp->n, &b, &c);
        for (int s = 0; s < tp->n; s++)
            if (s != r)
                memcpy(bufs[s] + b * width, bufs[r] + b * width, (size_t)(c * width) * sizeof(float));
    }
}

/* parts[r][T, vc_r] → out[T, V], the columns of rank r at vocab_begin[r]. */
static void all_gather_vocab(tp_model *tp, float **parts, int64_t T, float *out) {
    const int64_t V = tp->c->vocab_size;
    if (tp->n > 1)
        expect_next(tp, JB_COLL_ALL_GATHER, (uint64_t)(T * V) * sizeof(float), T);
    for (int r = 0; r < tp->n; r++)
        for (int64_t t = 0; t < T; t++)
            memcpy(out + t * V + tp->vocab_begin[r], parts[r] + t * tp->vocab_count[r],
                   (size_t)tp->vocab_count[r] * sizeof(float));
}

/* One (token, expert) pair of the MoE all-to-all, with its vector [H]. */
typedef struct a2a_item {
    int64_t token;  /* row of the step */
    int32_t expert;
    float weight;   /* routing weight */
    const float *v; /* [H]: the token's normed input (dispatch) or the expert's output (combine) */
} a2a_item;

/* The items rank s sends to rank d. */
typedef struct a2a_box {
    a2a_item *items;
    int64_t n;
} a2a_box;

/* boxes[s * N + d] → received[d * N + s], each vector copied into the receiver's memory: payload = every
 * vector's H elements of elem_bytes (the element the device would send). */
static void all_to_all(tp_model *tp, const a2a_box *boxes, a2a_box *received, int64_t T, int elem_bytes) {
    const int n = tp->n;
    const int64_t H = tp->c->hidden_size;
    uint64_t vectors = 0;
    for (int s = 0; s < n; s++)
        for (int d = 0; d < n; d++) {
            const a2a_box *src = &boxes[s * n + d];
            a2a_box *dst = &received[d * n + s];
            dst->n = src->n;
            dst->items = step_alloc(tp, src->n, sizeof *dst->items);
            float *v = floats(tp, src->n * H);
            for (int64_t i = 0; i < src->n; i++) {
                dst->items[i] = src->items[i];
                memcpy(v + i * H, src->items[i].v, (size_t)H * sizeof(float));
                dst->items[i].v = v + i * H;
            }
            vectors += (uint64_t)src->n;
        }
    expect_next(tp, JB_COLL_ALL_TO_ALL, vectors * (uint64_t)(H * elem_bytes), T);
}

/* ---- per-rank step buffers ------------------------------------------------------------------------ */

typedef struct rank_bufs {
    float *x;   /* [T, H] residual stream (whole on every rank between layers) */
    float *xn;  /* [T, H] normed input of the current half-layer */
    float *mix; /* [T, H] this rank's partial mixer / FFN output, then the collective's result */
} rank_bufs;

/* ---- mixers --------------------------------------------------------------------------------------- */

static void attention_rank(tp_model *tp, int r, rank_bufs *b, int64_t l, int64_t T) {
    const jamba_config *rc = &tp->rc;
    const jb_attention_weights *w = &tp->ranks[r].w.layers[l].attn;
    const int64_t q_r = rc->num_attention_heads * rc->head_dim, kv_r = rc->num_key_value_heads * rc->head_dim;
    float *q = floats(tp, T * q_r), *att = floats(tp, T * q_r), *scratch = floats(tp, JB_CPU_ATTN_HEADS_MAX * tp->n_ctx);
    float *K = tp->ranks[r].kv + (tp->slot[l] * 2) * tp->n_ctx * kv_r, *V = K + tp->n_ctx * kv_r;
    jb_cpu_matmul(tp->pool, q, b->xn, T, &w->q_proj, NULL);
    jb_cpu_matmul(tp->pool, K + tp->pos * kv_r, b->xn, T, &w->k_proj, NULL); /* [T, kv_r] into its cache */
    jb_cpu_matmul(tp->pool, V + tp->pos * kv_r, b->xn, T, &w->v_proj, NULL);
    jb_attn_args a = {.n = T, .pos = tp->pos, .n_heads = rc->num_attention_heads,
                      .n_kv_heads = rc->num_key_value_heads, .head_dim = rc->head_dim, .q = q, .k = K, .v = V,
                      .out = att, .scratch = scratch,
                      .scratch_stride = jb_cpu_attn_score_rows(rc->num_attention_heads, rc->num_key_value_heads) * tp->n_ctx};
    jb_cpu_attention(tp->pool, &a, 1);
    jb_cpu_matmul(tp->pool, b->mix, att, T, &w->o_proj, NULL); /* partial [T, H] */
}

/* Up to x_proj: in_proj of its channels (x and z), conv; xdbl [T, R + 2 d_state] partial. */
typedef struct mamba_tmp {
    float *proj;  /* [T, 2 D_r]: u_raw | z */
    float *u;     /* [T, D_r] */
    float *xdbl;  /* [T, R + 2 d_state] */
} mamba_tmp;

static void mamba_rank_in(tp_model *tp, int r, rank_bufs *b, mamba_tmp *m, int64_t l, int64_t T) {
    const jamba_config *rc = &tp->rc;
    const jb_mamba_weights *w = &tp->ranks[r].w.layers[l].mamba;
    const int64_t D = rc->mamba_d_inner, K = rc->mamba_d_conv, xd = rc->mamba_dt_rank + 2 * rc->mamba_d_state;
    m->proj = floats(tp, T * 2 * D);
    m->u = floats(tp, T * D);
    m->xdbl = floats(tp, T * xd);
    jb_cpu_matmul(tp->pool, m->proj, b->xn, T, &w->in_proj, widen(tp, &w->in_proj_bias));
    jb_conv_args a = {.n = T, .d_inner = D, .d_conv = K, .x = m->proj, .ldx = 2 * D, .w = widen(tp, &w->conv1d),
                      .b = widen(tp, &w->conv1d_bias), .window = tp->ranks[r].conv + tp->slot[l] * D * (K - 1),
                      .out = m->u};
    jb_cpu_conv_silu(tp->pool, &a, 1);
    jb_cpu_matmul(tp->pool, m->xdbl, m->u, T, &w->x_proj, NULL);
}

/* After the all-reduce of xdbl: dt/B/C norms (replicated), dt_proj, the scan over its channels, out_proj. */
static void mamba_rank_out(tp_model *tp, int r, rank_bufs *b, const mamba_tmp *m, int64_t l, int64_t T) {
    const jamba_config *rc = &tp->rc;
    const jb_mamba_weights *w = &tp->ranks[r].w.layers[l].mamba;
    const int64_t D = rc->mamba_d_inner, N = rc->mamba_d_state, R = rc->mamba_dt_rank, xd = R + 2 * N;
    if (rc->mamba_inner_layernorms) {
        jb_cpu_rmsnorm(m->xdbl, m->xdbl, T, R, xd, widen(tp, &w->dt_norm), rc->rms_norm_eps);
        jb_cpu_rmsnorm(m->xdbl + R, m->xdbl + R, T, N, xd, widen(tp, &w->b_norm), rc->rms_norm_eps);
        jb_cpu_rmsnorm(m->xdbl + R + N, m->xdbl + R + N, T, N, xd, widen(tp, &w->c_norm), rc->rms_norm_eps);
    }
    float *dt_in = floats(tp, T * R), *delta = floats(tp, T * D), *A = floats(tp, D * N), *y = floats(tp, T * D);
    for (int64_t t = 0; t < T; t++)
        memcpy(dt_in + t * R, m->xdbl + t * xd, (size_t)R * sizeof(float));
    jb_cpu_matmul(tp->pool, delta, dt_in, T, &w->dt_proj, widen(tp, &w->dt_proj_bias));
    jb_cpu_kernels_active()->softplus(delta, T * D);
    jb_cpu_kernels_active()->neg_exp(A, widen(tp, &w->A_log), D * N);
    jb_scan_args a = {.n = T, .d_inner = D, .d_state = N, .u = m->u, .delta = delta, .B = m->xdbl + R,
                      .C = m->xdbl + R + N, .ldbc = xd, .A = A, .D = widen(tp, &w->D), .z = m->proj + D,
                      .ldz = 2 * D, .state = tp->ranks[r].ssm + tp->slot[l] * D * N, .y = y};
    jb_cpu_selective_scan(tp->pool, &a, 1);
    jb_cpu_matmul(tp->pool, b->mix, y, T, &w->out_proj, NULL); /* partial [T, H]; the bias after the reduce */
}

/* The mixer of layer l on every rank, ending in `mixer_op` over the mixes (the plan's choice). */
static void mixer(tp_model *tp, rank_bufs *b, int64_t l, int64_t T, jb_coll_op mixer_op) {
    const int n = tp->n;
    const int64_t H = tp->c->hidden_size;
    float *mix[JB_SHARD_MAX_RANKS];
    for (int r = 0; r < n; r++)
        mix[r] = b[r].mix;
    const float *out_bias = NULL;
    if (jb_layer_is_attention(tp->c, l)) {
        for (int r = 0; r < n; r++)
            attention_rank(tp, r, &b[r], l, T);
    } else {
        mamba_tmp m[JB_SHARD_MAX_RANKS];
        float *xdbl[JB_SHARD_MAX_RANKS];
        for (int r = 0; r < n; r++) {
            mamba_rank_in(tp, r, &b[r], &m[r], l, T);
            xdbl[r] = m[r].xdbl;
        }
        all_reduce(tp, xdbl, T, tp->c->mamba_dt_rank + 2 * tp->c->mamba_d_state);
        for (int r = 0; r < n; r++)
            mamba_rank_out(tp, r, &b[r], &m[r], l, T);
        out_bias = widen(tp, &tp->ranks[0].w.layers[l].mamba.out_proj_bias); /* replicated */
    }
    if (mixer_op == JB_COLL_REDUCE_SCATTER)
        reduce_scatter(tp, mix, T, H);
    else
        all_reduce(tp, mix, T, H);
    for (int r = 0; r < n && out_bias; r++) {
        int64_t rb = 0, rcount = T;
        if (mixer_op == JB_COLL_REDUCE_SCATTER)
            row_block(T, r, n, &rb, &rcount);
        for (int64_t t = rb; t < rb + rcount; t++)
            for (int64_t h = 0; h < H; h++)
                b[r].mix[t * H + h] += out_bias[h];
    }
}

/* ---- FFN ------------------------------------------------------------------------------------------ */

static jb_ffn_workspace ffn_workspace(tp_model *tp, int64_t T, int64_t I) {
    const int64_t H = tp->c->hidden_size, E = tp->c->num_experts, k = tp->c->num_experts_per_tok;
    jb_ffn_workspace ws = {.gate = floats(tp, T * I), .up = floats(tp, T * I), .gathered = floats(tp, T * H),
                           .expert_out = floats(tp, T * H), .router = floats(tp, T * E),
                           .experts = step_alloc(tp, T * k, sizeof(int32_t)), .weights = floats(tp, T * k)};
    ws.plan.expert_begin = step_alloc(tp, E + 1, sizeof(int64_t));
    ws.plan.slot_token = step_alloc(tp, T * k, sizeof(int64_t));
    ws.plan.slot_weight = floats(tp, T * k);
    return ws;
}

/* The experts rank r owns under expert parallelism: [first, first + count). */
static void owned_experts(const tp_model *tp, int r, int64_t *first, int64_t *count) {
    *count = tp->c->num_experts / tp->n;
    *first = r * *count;
}

/* Route rows x[T, H] (the router is replicated: every rank routes alike) into ws->plan. */
static void route(tp_model *tp, jb_ffn_workspace *ws, const jb_weight *router, const float *x, int64_t T) {
    const int64_t E = tp->c->num_experts, k = tp->c->num_experts_per_tok;
    jb_cpu_matmul(tp->pool, ws->router, x, T, router, NULL);
    jb_moe_route(ws->router, T, E, k, ws->experts, ws->weights);
    jb_moe_plan_build(&ws->plan, ws->experts, ws->weights, T, E, k);
}

/* Experts whole, every token on every rank (decode): each rank runs its experts over the tokens routed to
 * them into its partial out [T, H], summed by the plan's all-reduce. */
static void moe_replicated_rank(tp_model *tp, int r, rank_bufs *b, int64_t l, int64_t T) {
    const int64_t H = tp->c->hidden_size;
    const jb_layer_weights *lw = &tp->ranks[r].w.layers[l];
    jb_ffn_workspace ws = ffn_workspace(tp, T, tp->c->intermediate_size);
    route(tp, &ws, &lw->router, b->xn, T);
    memset(b->mix, 0, (size_t)(T * H) * sizeof(float));
    int64_t first, count;
    owned_experts(tp, r, &first, &count);
    for (int64_t e = first; e < first + count; e++) {
        const int64_t s0 = ws.plan.expert_begin[e], n = ws.plan.expert_begin[e + 1] - s0;
        for (int64_t i = 0; i < n; i++)
            memcpy(ws.gathered + i * H, b->xn + ws.plan.slot_token[s0 + i] * H, (size_t)H * sizeof(float));
        if (n > 0)
            jb_cpu_mlp(&(jb_cpu_exec){.pool = tp->pool}, &ws, &lw->experts[e], ws.gathered, n, ws.expert_out);
        for (int64_t i = 0; i < n; i++)
            for (int64_t h = 0; h < H; h++)
                b->mix[ws.plan.slot_token[s0 + i] * H + h] += ws.expert_out[i * H + h] * ws.plan.slot_weight[s0 + i];
    }
}

static int by_expert(const void *a, const void *b) {
    const a2a_item *x = a, *y = b;
    return (x->expert > y->expert) - (x->expert < y->expert);
}

/* Experts whole, tokens sharded (prefill, all-to-all): rank r holds its own rows of x (after the mixer's
 * reduce-scatter and the residual add) and of xn; each (token, expert) pair goes to the expert's owner, the
 * outputs come back and each token's are added in ascending expert order into mix (its own rows). */
static void moe_all_to_all(tp_model *tp, rank_bufs *b, int64_t l, int64_t T) {
    const int n = tp->n;
    const int64_t H = tp->c->hidden_size, k = tp->c->num_experts_per_tok;
    int64_t per_rank, unused;
    owned_experts(tp, 0, &unused, &per_rank);
    a2a_box *send = step_alloc(tp, n * n, sizeof *send), *recv = step_alloc(tp, n * n, sizeof *recv);
    for (int r = 0; r < n; r++) { /* route its own rows, dispatch each pair to the expert's owner */
        int64_t rb, rcount;
        row_block(T, r, n, &rb, &rcount);
        jb_ffn_workspace ws = ffn_workspace(tp, T, 1);
        route(tp, &ws, &tp->ranks[r].w.layers[l].router, b[r].xn + rb * H, rcount);
        for (int d = 0; d < n; d++)
            send[r * n + d].items = step_alloc(tp, rcount * k, sizeof(a2a_item));
        for (int64_t t = 0; t < rcount; t++)
            for (int64_t j = 0; j < k; j++) {
                const int32_t e = ws.experts[t * k + j];
                a2a_box *box = &send[r * n + e / per_rank];
                box->items[box->n++] = (a2a_item){rb + t, e, ws.weights[t * k + j], b[r].xn + (rb + t) * H};
            }
    }
    all_to_all(tp, send, recv, T, tp->act_bytes);
    for (int d = 0; d < n; d++) { /* each owner runs its experts over what it received, and sends back */
        const jb_layer_weights *lw = &tp->ranks[d].w.layers[l];
        jb_ffn_workspace ws = ffn_workspace(tp, T * k, tp->c->intermediate_size);
        for (int s = 0; s < n; s++) {
            const a2a_box *in = &recv[d * n + s];
            a2a_box *back = &send[d * n + s];
            back->n = in->n;
            back->items = step_alloc(tp, in->n, sizeof(a2a_item));
            float *out = floats(tp, in->n * H);
            for (int64_t i = 0; i < in->n; i++) { /* one row at a time: rows of a product are independent */
                jb_cpu_mlp(&(jb_cpu_exec){.pool = tp->pool}, &ws, &lw->experts[in->items[i].expert], in->items[i].v, 1, out + i * H);
                back->items[i] = in->items[i];
                back->items[i].v = out + i * H;
            }
        }
    }
    all_to_all(tp, send, recv, T, (int)sizeof(float));
    for (int r = 0; r < n; r++) { /* combine its own rows in ascending expert order, as one GPU does */
        int64_t rb, rcount, total = 0;
        row_block(T, r, n, &rb, &rcount);
        a2a_item *all = step_alloc(tp, rcount * k, sizeof *all);
        for (int s = 0; s < n; s++)
            for (int64_t i = 0; i < recv[r * n + s].n; i++)
                all[total++] = recv[r * n + s].items[i];
        cr_assert_eq(total, rcount * k, "layer %lld: rank %d got %lld expert outputs for %lld rows", (long long)l, r,
                     (long long)total, (long long)rcount);
        qsort(all, (size_t)total, sizeof *all, by_expert);
        memset(b[r].mix + rb * H, 0, (size_t)(rcount * H) * sizeof(float));
        for (int64_t i = 0; i < total; i++)
            for (int64_t h = 0; h < H; h++)
                b[r].mix[all[i].token * H + h] += all[i].v[h] * all[i].weight;
    }
}

/* The FFN of layer l on rows xn, replicated on every rank; ends in the plan's all-reduce. */
static void ffn_replicated(tp_model *tp, rank_bufs *b, int64_t l, int64_t T) {
    const int64_t H = tp->c->hidden_size;
    float *mix[JB_SHARD_MAX_RANKS];
    for (int r = 0; r < tp->n; r++) {
        const jb_layer_weights *lw = &tp->ranks[r].w.layers[l];
        mix[r] = b[r].mix;
        if (!jb_layer_is_moe(tp->c, l)) {
            jb_ffn_workspace ws = ffn_workspace(tp, T, lw->mlp.gate_proj.shape[0]);
            jb_cpu_mlp(&(jb_cpu_exec){.pool = tp->pool}, &ws, &lw->mlp, b[r].xn, T, b[r].mix);
        } else if (tp->plan.moe == JB_MOE_EXPERTS) {
            moe_replicated_rank(tp, r, &b[r], l, T);
        } else { /* every expert's I split: each rank runs all of them on its slice */
            jb_ffn_workspace ws = ffn_workspace(tp, T, lw->experts[0].gate_proj.shape[0]);
            jb_cpu_moe(&(jb_cpu_exec){.pool = tp->pool}, &ws, &lw->router, lw->experts, tp->c->num_experts, tp->c->num_experts_per_tok,
                       b[r].xn, T, b[r].mix, NULL);
        }
    }
    all_reduce(tp, mix, T, H);
}

/* ---- the step ------------------------------------------------------------------------------------- */

static void add_rows(float *x, const float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        x[i] += y[i];
}

/* Each rank writes the embedding rows of the tokens in its vocabulary rows, zeros elsewhere; all-reduced. */
static void embed(tp_model *tp, rank_bufs *b, const int32_t *tokens, int64_t T) {
    const int64_t H = tp->c->hidden_size;
    float *x[JB_SHARD_MAX_RANKS];
    for (int r = 0; r < tp->n; r++) {
        const jb_weight *e = &tp->ranks[r].w.embed;
        const size_t row_bytes = (size_t)H * jamba_dtype_size(e->dtype);
        x[r] = b[r].x;
        for (int64_t t = 0; t < T; t++) {
            const int64_t row = tokens[t] - tp->vocab_begin[r];
            if (row >= 0 && row < tp->vocab_count[r])
                jb_to_f32(b[r].x + t * H, (const uint8_t *)e->data + (size_t)row * row_bytes, e->dtype, H);
        }
    }
    const jb_collective c = jb_shard_embed_collective(&tp->plan, tp->c);
    expect_begin(tp, "embedding", &c, tp->n > 1);
    all_reduce(tp, x, T, H);
    expect_end(tp);
}

static void layer(tp_model *tp, rank_bufs *b, int64_t l, int64_t T, jb_phase phase) {
    const jamba_config *c = tp->c;
    const int n = tp->n;
    const int64_t H = c->hidden_size;
    jb_collective cs[JB_LAYER_COLLECTIVES_MAX];
    const int n_cs = jb_shard_layer_collectives(&tp->plan, c, l, phase, tp->act_bytes, cs);
    bool a2a = false;
    for (int i = 0; i < n_cs; i++)
        a2a = a2a || cs[i].op == JB_COLL_ALL_TO_ALL;
    char where[32];
    snprintf(where, sizeof where, "layer %lld", (long long)l);
    expect_begin(tp, where, cs, n_cs);
    const jb_layer_weights *lw0 = &tp->ranks[0].w.layers[l]; /* norms are replicated */
    const float *in_norm = widen(tp, &lw0->input_norm), *ff_norm = widen(tp, &lw0->pre_ff_norm);
    for (int r = 0; r < n; r++)
        jb_cpu_rmsnorm(b[r].xn, b[r].x, T, H, H, in_norm, c->rms_norm_eps);
    mixer(tp, b, l, T, a2a ? JB_COLL_REDUCE_SCATTER : JB_COLL_ALL_REDUCE);
    if (a2a) { /* rows sharded: each rank its own rows until the all-gather */
        for (int r = 0; r < n; r++) {
            int64_t rb, rcount;
            row_block(T, r, n, &rb, &rcount);
            add_rows(b[r].x + rb * H, b[r].mix + rb * H, rcount * H);
            jb_cpu_rmsnorm(b[r].xn + rb * H, b[r].x + rb * H, rcount, H, H, ff_norm, c->rms_norm_eps);
        }
        moe_all_to_all(tp, b, l, T);
        float *x[JB_SHARD_MAX_RANKS];
        for (int r = 0; r < n; r++) {
            int64_t rb, rcount;
            row_block(T, r, n, &rb, &rcount);
            add_rows(b[r].x + rb * H, b[r].mix + rb * H, rcount * H);
            x[r] = b[r].x;
        }
        all_gather_rows(tp, x, T, H);
    } else {
        for (int r = 0; r < n; r++) {
            add_rows(b[r].x, b[r].mix, T * H);
            jb_cpu_rmsnorm(b[r].xn, b[r].x, T, H, H, ff_norm, c->rms_norm_eps);
        }
        ffn_replicated(tp, b, l, T);
        for (int r = 0; r < n; r++)
            add_rows(b[r].x, b[r].mix, T * H);
    }
    expect_end(tp);
}

/* Final norm of every row, each rank its vocabulary columns of the logits, all-gathered. */
static void logits(tp_model *tp, rank_bufs *b, int64_t T, float *out) {
    const int64_t H = tp->c->hidden_size;
    const float *final_w = widen(tp, &tp->ranks[0].w.final_norm);
    float *parts[JB_SHARD_MAX_RANKS];
    for (int r = 0; r < tp->n; r++) {
        jb_cpu_rmsnorm(b[r].xn, b[r].x, T, H, H, final_w, tp->c->rms_norm_eps);
        parts[r] = floats(tp, T * tp->vocab_count[r]);
        jb_cpu_matmul(tp->pool, parts[r], b[r].xn, T, &tp->ranks[r].w.lm_head, NULL);
    }
    const jb_collective c = jb_shard_logits_collective(&tp->plan, tp->c);
    expect_begin(tp, "logits", &c, tp->n > 1);
    all_gather_vocab(tp, parts, T, out);
    expect_end(tp);
}

void tp_step(tp_model *tp, const int32_t *tokens, int64_t T, jb_phase phase, float *out) {
    cr_assert(T > 0 && tp->pos + T <= tp->n_ctx, "step of %lld rows at %lld, n_ctx %lld", (long long)T,
              (long long)tp->pos, (long long)tp->n_ctx);
    const int64_t H = tp->c->hidden_size;
    rank_bufs b[JB_SHARD_MAX_RANKS];
    for (int r = 0; r < tp->n; r++)
        b[r] = (rank_bufs){floats(tp, T * H), floats(tp, T * H), floats(tp, T * H)};
    embed(tp, b, tokens, T);
    for (int64_t l = 0; l < tp->c->num_hidden_layers; l++)
        layer(tp, b, l, T, phase);
    logits(tp, b, T, out);
    tp->pos += T;
    step_free(tp);
}

/* ---- making one ----------------------------------------------------------------------------------- */

tp_model *tp_create(const jamba_model *m, int n_ranks, int64_t n_ctx, int act_bytes) {
    tp_model *tp = calloc(1, sizeof *tp);
    cr_assert_not_null(tp);
    tp->m = m;
    tp->c = &m->config;
    tp->n = n_ranks;
    tp->n_ctx = n_ctx;
    tp->act_bytes = act_bytes;
    jamba_error err = {0};
    cr_assert_eq(jb_shard_plan_make(tp->c, n_ranks, &tp->plan, &err), JAMBA_OK, "%s", err.message);
    jb_shard_rank_config(&tp->plan, tp->c, &tp->rc);
    cr_assert_str_eq(tp->plan.tensors[0].name, "model.embed_tokens.weight");
    cr_assert_eq(jb_pool_create(1, &tp->pool, &err), JAMBA_OK, "%s", err.message);
    const jamba_config *rc = &tp->rc;
    tp->slot = calloc((size_t)tp->c->num_hidden_layers, sizeof *tp->slot);
    int64_t n_attn = 0, n_mamba = 0;
    for (int64_t l = 0; l < tp->c->num_hidden_layers; l++)
        tp->slot[l] = jb_layer_is_attention(tp->c, l) ? n_attn++ : n_mamba++;
    tp->ranks = calloc((size_t)n_ranks, sizeof *tp->ranks);
    cr_assert(tp->slot && tp->ranks);
    for (int r = 0; r < n_ranks; r++) {
        rank_state *s = &tp->ranks[r];
        cr_assert_eq(jb_shard_bind_rank(&tp->plan, tp->c, &m->weights, r, &s->w, &err), JAMBA_OK, "%s", err.message);
        s->kv = calloc((size_t)(n_attn * 2 * n_ctx * jb_kv_width(rc)) + 1, sizeof(float));
        s->conv = calloc((size_t)(n_mamba * jb_conv_floats(rc)) + 1, sizeof(float));
        s->ssm = calloc((size_t)(n_mamba * jb_ssm_floats(rc)) + 1, sizeof(float));
        cr_assert(s->kv && s->conv && s->ssm);
        const jb_slice *vocab = jb_shard_slice(&tp->plan, 0, r); /* the embedding is the first tensor */
        tp->vocab_begin[r] = vocab->begin;
        tp->vocab_count[r] = vocab->count;
        cr_assert_eq(s->w.embed.shape[0], vocab->count, "rank %d: its embedding rows", r);
        cr_assert_eq(s->w.lm_head.shape[0], vocab->count, "rank %d: its lm_head rows", r);
    }
    return tp;
}

void tp_free(tp_model *tp) {
    if (tp == NULL)
        return;
    for (int r = 0; r < tp->n; r++) {
        jb_weights_free(&tp->ranks[r].w);
        free(tp->ranks[r].kv);
        free(tp->ranks[r].conv);
        free(tp->ranks[r].ssm);
    }
    step_free(tp);
    free(tp->mem.p);
    free(tp->ranks);
    free(tp->slot);
    jb_pool_free(tp->pool);
    jb_shard_plan_free(&tp->plan);
    free(tp);
}

const jb_shard_plan *tp_plan(const tp_model *tp) { return &tp->plan; }

tp_traffic tp_traffic_so_far(const tp_model *tp) { return tp->traffic; }

const jb_weights *tp_rank_weights(const tp_model *tp, int r) { return &tp->ranks[r].w; }
