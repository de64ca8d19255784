/*
 * test_shard_plan.c — the multi-GPU sharding plan (parallel/shard.h) and its memory plan, without a GPU:
 * for Jamba-1.5 Mini and Large over 1, 2, 4, 8 and 16 GPUs every tensor is covered exactly once (replicated
 * ones once per GPU, KV heads past 8 GPUs once per GPU of their group), the per-GPU weight bytes add up to the single-GPU bytes plus the replicated copies,
 * one GPU is the single-GPU plan, GPU counts that cannot split the model are refused by name, the
 * collectives per token match their arithmetic, and `jamba inspect --gpus` reports the per-GPU plan.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "ckpt/config.h"
#include "ckpt/weights.h"
#include "cuda/ctx_layout.h"
#include "parallel/shard.h"
#include "tests/support/fault_alloc.h"
#include "tests/support/testutil.h"

#define CONFIGS JB_SOURCE_DIR "/models/configs"
#define MINI CONFIGS "/jamba-1.5-mini"
#define LARGE CONFIGS "/jamba-1.5-large"

static const char *const MODELS[] = {"jamba-1.5-mini", "jamba-1.5-large"};
static const int RANKS[] = {1, 2, 4, 8};
#define N_MODELS 2
#define N_RANKS 4

static jamba_config load_config(const char *name) {
    char *dir = tu_path(CONFIGS, name);
    jamba_config c;
    jamba_error err = {0};
    cr_assert_eq(jb_config_load(dir, &c, NULL, &err), JAMBA_OK, "%s", err.message);
    free(dir);
    return c;
}

static jb_shard_plan plan_of(const jamba_config *c, int n) {
    jb_shard_plan p;
    jamba_error err = {0};
    cr_assert_eq(jb_shard_plan_make(c, n, &p, &err), JAMBA_OK, "%d ranks: %s", n, err.message);
    cr_assert_eq(p.n_ranks, n);
    return p;
}

/* ---- coverage ----------------------------------------------------------------------------------- */

/* How many ranks hold each index of tensor t's split dimension (every part of it counted alike). */
static void count_holders(const jb_shard_plan *p, int64_t t, int *holders, int64_t len) {
    const jb_shard_tensor *x = &p->tensors[t];
    memset(holders, 0, (size_t)len * sizeof *holders);
    const int64_t part = len / x->parts;
    for (int r = 0; r < p->n_ranks; r++) {
        const jb_slice *s = jb_shard_slice(p, t, r);
        cr_assert(s->begin >= 0 && s->count >= 0 && s->begin + s->count <= part, "%s rank %d: [%lld, +%lld) of %lld",
                  x->name, r, (long long)s->begin, (long long)s->count, (long long)part);
        for (int k = 0; k < x->parts; k++)
            for (int64_t i = s->begin; i < s->begin + s->count; i++)
                holders[k * part + i]++;
    }
}

static void check_coverage(const jb_shard_plan *p) {
    for (int64_t t = 0; t < p->n_tensors; t++) {
        const jb_shard_tensor *x = &p->tensors[t];
        const int dim = jb_shard_slice(p, t, 0)->dim;
        for (int r = 1; r < p->n_ranks; r++)
            cr_assert_eq(jb_shard_slice(p, t, r)->dim, dim, "%s: one split dimension", x->name);
        cr_assert(dim >= 0 && dim < x->rank, "%s: dim %d", x->name, dim);
        const int64_t len = x->shape[dim];
        int *holders = jb_malloc((size_t)len * sizeof *holders);
        cr_assert_not_null(holders);
        count_holders(p, t, holders, len);
        const int want = x->copies;
        if (x->split == JB_SPLIT_REPLICATED)
            cr_assert_eq(want, p->n_ranks, "%s: replicated", x->name);
        else if (x->axis != JB_AXIS_KV)
            cr_assert_eq(want, 1, "%s: one GPU holds each index", x->name);
        for (int64_t i = 0; i < len; i++)
            cr_assert_eq(holders[i], want, "%s over %d ranks: index %lld of dim %d held %d times, want %d", x->name,
                         p->n_ranks, (long long)i, dim, holders[i], want);
        jb_free(holders);
    }
}

/* The plan names the binder's tensors, in its order (it is driven by jb_weights_visit). */
static void check_tensor_list(const jamba_config *c, const jb_shard_plan *p) {
    jb_tensor_spec *specs = NULL;
    int64_t n = 0;
    cr_assert_eq(jb_expected_tensors(c, &specs, &n, NULL), JAMBA_OK);
    cr_assert_eq(p->n_tensors, n);
    for (int64_t i = 0; i < n; i++)
        cr_assert_str_eq(p->tensors[i].name, specs[i].name);
    jb_free(specs);
}

JB_TEST(shard, every_tensor_is_covered_exactly_once) {
    for (int m = 0; m < N_MODELS; m++)
        for (int k = 0; k < N_RANKS; k++) {
            const jamba_config c = load_config(MODELS[m]);
            jb_shard_plan p = plan_of(&c, RANKS[k]);
            check_tensor_list(&c, &p);
            check_coverage(&p);
            jb_shard_plan_free(&p);
        }
}

/* ---- the layout --------------------------------------------------------------------------------- */

static int64_t find(const jb_shard_plan *p, const char *name) {
    for (int64_t t = 0; t < p->n_tensors; t++)
        if (strcmp(p->tensors[t].name, name) == 0)
            return t;
    cr_assert_fail("no tensor %s", name);
    return -1;
}

static void expect_slice(const jb_shard_plan *p, const char *name, int r, int dim, int64_t begin, int64_t count) {
    const jb_slice *s = jb_shard_slice(p, find(p, name), r);
    cr_assert(s->dim == dim && s->begin == begin && s->count == count,
              "%s rank %d: (dim %d, begin %lld, count %lld), want (%d, %lld, %lld)", name, r, s->dim,
              (long long)s->begin, (long long)s->count, dim, (long long)begin, (long long)count);
}

JB_TEST(shard, large_over_8_gpus_follows_the_layout) {
    const jamba_config c = load_config("jamba-1.5-large");
    jb_shard_plan p = plan_of(&c, 8);
    cr_assert_eq(p.moe, JB_MOE_EXPERTS, "16 experts over 8 GPUs: two whole experts each");
    const int64_t d_h = c.head_dim, Di = c.mamba_d_inner;
    for (int r = 0; r < 8; r++) {
        /* layer 4 is attention: one KV head and its 8 query heads per GPU */
        expect_slice(&p, "model.layers.4.self_attn.q_proj.weight", r, 0, r * 8 * d_h, 8 * d_h);
        expect_slice(&p, "model.layers.4.self_attn.k_proj.weight", r, 0, r * d_h, d_h);
        expect_slice(&p, "model.layers.4.self_attn.v_proj.weight", r, 0, r * d_h, d_h);
        expect_slice(&p, "model.layers.4.self_attn.o_proj.weight", r, 1, r * 8 * d_h, 8 * d_h);
        /* layer 0 is Mamba: D_i / 8 channels, the same ones of x and z */
        expect_slice(&p, "model.layers.0.mamba.in_proj.weight", r, 0, r * Di / 8, Di / 8);
        expect_slice(&p, "model.layers.0.mamba.conv1d.weight", r, 0, r * Di / 8, Di / 8);
        expect_slice(&p, "model.layers.0.mamba.x_proj.weight", r, 1, r * Di / 8, Di / 8);
        expect_slice(&p, "model.layers.0.mamba.dt_proj.weight", r, 0, r * Di / 8, Di / 8);
        expect_slice(&p, "model.layers.0.mamba.A_log", r, 0, r * Di / 8, Di / 8);
        expect_slice(&p, "model.layers.0.mamba.D", r, 0, r * Di / 8, Di / 8);
        expect_slice(&p, "model.layers.0.mamba.out_proj.weight", r, 1, r * Di / 8, Di / 8);
        expect_slice(&p, "model.layers.0.mamba.dt_layernorm.weight", r, 0, 0, c.mamba_dt_rank);
        /* layer 0's FFN is dense: I split; layer 1's is MoE: experts 2r and 2r + 1 on GPU r */
        expect_slice(&p, "model.layers.0.feed_forward.gate_proj.weight", r, 0, r * c.intermediate_size / 8,
                     c.intermediate_size / 8);
        expect_slice(&p, "model.layers.0.feed_forward.down_proj.weight", r, 1, r * c.intermediate_size / 8,
                     c.intermediate_size / 8);
        expect_slice(&p, "model.layers.1.feed_forward.router.weight", r, 0, 0, c.num_experts);
        for (int e = 0; e < 16; e++) {
            char name[NAME_BYTES];
            snprintf(name, sizeof name, "model.layers.1.feed_forward.experts.%d.down_proj.weight", e);
            expect_slice(&p, name, r, 0, 0, e / 2 == r ? c.hidden_size : 0);
        }
        expect_slice(&p, "model.embed_tokens.weight", r, 0, r * c.vocab_size / 8, c.vocab_size / 8);
        expect_slice(&p, "lm_head.weight", r, 0, r * c.vocab_size / 8, c.vocab_size / 8);
        expect_slice(&p, "model.final_layernorm.weight", r, 0, 0, c.hidden_size);
    }
    cr_assert_eq(p.tensors[find(&p, "model.layers.0.mamba.in_proj.weight")].parts, 2);
    jamba_config g;
    jb_shard_rank_config(&p, &c, &g);
    cr_assert(g.num_attention_heads == 8 && g.num_key_value_heads == 1 && g.mamba_d_inner == Di / 8);
    cr_assert_eq(g.intermediate_size, c.intermediate_size, "experts stay whole: a GPU runs full-width FFN blocks");
    jb_shard_plan_free(&p);
}

JB_TEST(shard, experts_fall_back_to_an_intermediate_split) {
    jamba_config c = load_config("jamba-1.5-mini");
    c.num_experts = 12; /* 8 GPUs do not divide 12 experts, but they divide I = 14336 */
    jb_shard_plan p = plan_of(&c, 8);
    cr_assert_eq(p.moe, JB_MOE_INTERMEDIATE);
    const int64_t I = c.intermediate_size;
    for (int r = 0; r < 8; r++) {
        expect_slice(&p, "model.layers.1.feed_forward.experts.11.up_proj.weight", r, 0, r * I / 8, I / 8);
        expect_slice(&p, "model.layers.1.feed_forward.experts.11.down_proj.weight", r, 1, r * I / 8, I / 8);
    }
    check_coverage(&p);
    jamba_config g;
    jb_shard_rank_config(&p, &c, &g);
    cr_assert_eq(g.intermediate_size, I / 8);
    jb_shard_plan_free(&p);
}

/* ---- refusals ----------------------------------------------------------------------------------- */

JB_TEST(shard, a_count_not_dividing_the_heads_is_refused) {
    static const char *const counts[N_MODELS] = {"1, 2, 4, 8, 16, 32", "1, 2, 4, 8, 16, 32, 64"};
    for (int m = 0; m < N_MODELS; m++) {
        const jamba_config c = load_config(MODELS[m]);
        static const int bad[] = {3, 5, 6, 12};
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            jb_shard_plan p;
            jamba_error err = {0};
            cr_assert_eq(jb_shard_plan_make(&c, bad[i], &p, &err), JAMBA_ERR_INVALID_ARGUMENT);
            char want[128];
            snprintf(want, sizeof want, "attention is split by query heads, and num_attention_heads %lld is not "
                     "divisible by %d", (long long)c.num_attention_heads, bad[i]);
            cr_assert(strstr(err.message, want) != NULL, "%s", err.message);
            cr_assert_str_eq(strstr(err.message, "this model: ") + strlen("this model: "), counts[m], "%s",
                             err.message);
            cr_assert_null(p.tensors);
        }
        jb_shard_plan p;
        jamba_error err = {0};
        cr_assert_eq(jb_shard_plan_make(&c, 0, &p, &err), JAMBA_ERR_INVALID_ARGUMENT);
        cr_assert_eq(jb_shard_plan_make(&c, JB_SHARD_MAX_RANKS + 1, &p, &err), JAMBA_ERR_INVALID_ARGUMENT);
        cr_assert(strstr(err.message, "[1, 64]") != NULL, "%s", err.message);
    }
}

JB_TEST(shard, mamba_channels_must_divide_too) {
    jamba_config c = load_config("jamba-1.5-mini");
    c.mamba_d_inner = 8196; /* divisible by 2 and 4, not by 8 */
    jb_shard_plan p;
    jamba_error err = {0};
    cr_assert_eq(jb_shard_plan_make(&c, 8, &p, &err), JAMBA_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err.message, "mamba_d_inner 8196 is not divisible by 8") != NULL, "%s", err.message);
    cr_assert_str_eq(strstr(err.message, "this model: "), "this model: 1, 2, 4");
}

JB_TEST(shard, every_failed_allocation_is_reported) {
    const jamba_config c = load_config("jamba-1.5-mini");
    long long n = 1;
    for (;; n++) {
        jb_shard_plan p;
        jamba_error err = {0};
        fault_alloc_fail_at(n);
        const jamba_status st = jb_shard_plan_make(&c, 2, &p, &err);
        if (!fault_alloc_fired()) {
            fault_alloc_fail_at(0);
            cr_assert_eq(st, JAMBA_OK, "%s", err.message);
            jb_shard_plan_free(&p);
            break;
        }
        cr_assert_eq(st, JAMBA_ERR_OUT_OF_MEMORY, "allocation %lld: %s", n, err.message);
        cr_assert(p.tensors == NULL && p.slices == NULL && p.n_tensors == 0);
    }
    cr_assert_gt(n, 10);
}

/* ---- weight bytes ------------------------------------------------------------------------------- */

static const jb_weight_shape FORMATS[] = {
    {.dt = JAMBA_DTYPE_BF16, .inner_norms = true},
    {.dt = JAMBA_DTYPE_BF16, .experts_int8 = true, .inner_norms = true},
    {.dt = JAMBA_DTYPE_BF16, .experts_int8 = true, .mlp_int8 = true, .inner_norms = true},
};

static jb_weights_share share_of(const jamba_config *c, const jb_weight_shape *ws, const jb_shard_plan *p, int r) {
    jb_weights_share s;
    cr_assert(jb_weights_device_share(c, ws, p, r, &s));
    cr_assert_geq(s.bytes, s.payload);
    return s;
}

JB_TEST(shard, per_gpu_weights_add_up_to_the_single_gpu_weights) {
    for (int m = 0; m < N_MODELS; m++)
        for (size_t f = 0; f < sizeof FORMATS / sizeof FORMATS[0]; f++)
            for (int k = 0; k < N_RANKS; k++) {
                const jamba_config c = load_config(MODELS[m]);
                const jamba_config dc = jb_weights_device_config(&c, &FORMATS[f]);
                const int n = RANKS[k];
                jb_shard_plan p = plan_of(&dc, n);
                const jb_weights_share whole = share_of(&c, &FORMATS[f], NULL, 0);
                cr_assert_eq(whole.replicated, 0);
                uint64_t sum = 0;
                jb_weights_share s0 = share_of(&c, &FORMATS[f], &p, 0);
                for (int r = 0; r < n; r++) {
                    const jb_weights_share s = share_of(&c, &FORMATS[f], &p, r);
                    cr_assert_eq(s.replicated, s0.replicated, "every GPU holds the same replicated bytes");
                    cr_assert_eq(s.payload, s0.payload, "an even split: every GPU holds as much");
                    cr_assert_leq(s.bytes, s.payload + 256 * (uint64_t)p.n_tensors);
                    sum += s.payload;
                }
                cr_assert_eq(sum, whole.payload + (uint64_t)(n - 1) * s0.replicated,
                             "%s format %zu, %d GPUs: %llu = %llu + %d x %llu", MODELS[m], f, n,
                             (unsigned long long)sum, (unsigned long long)whole.payload, n - 1,
                             (unsigned long long)s0.replicated);
                cr_assert_lt(s0.replicated, whole.payload / 100, "replicated: norms, routers, scales (< 1%%)");
                jb_shard_plan_free(&p);
            }
}

JB_TEST(shard, one_gpu_is_the_single_gpu_plan) {
    for (int m = 0; m < N_MODELS; m++)
        for (size_t f = 0; f < sizeof FORMATS / sizeof FORMATS[0]; f++) {
            const jamba_config c = load_config(MODELS[m]);
            jb_shard_plan p = plan_of(&c, 1);
            const jb_weights_share s = share_of(&c, &FORMATS[f], &p, 0);
            uint64_t bytes = 0;
            cr_assert(jb_weights_device_bytes(&c, &FORMATS[f], &bytes));
            cr_assert_eq(s.bytes, bytes);
            jb_shard_plan_free(&p);
        }
}

/* ---- the memory plan through the API ------------------------------------------------------------ */

static jamba_model *planning_model(const char *dir, bool experts_int8) {
    jamba_model_params mp = jamba_model_default_params();
    mp.weights = JAMBA_WEIGHTS_IF_PRESENT;
    mp.experts = experts_int8 ? JAMBA_FORMAT_INT8 : JAMBA_FORMAT_STORED;
    jamba_model *m = NULL;
    jamba_error err = {0};
    cr_assert_eq(jamba_model_load(dir, &mp, &m, &err), JAMBA_OK, "%s", err.message);
    return m;
}

static jamba_context_plan plan_gpus(const jamba_model *m, int n_gpus, int64_t n_batch) {
    jamba_context_params p = jamba_context_default_params();
    p.device = JAMBA_DEVICE_CUDA;
    p.n_ctx = 262144;
    p.n_batch = n_batch;
    p.n_gpus = n_gpus;
    jamba_context_plan plan;
    jamba_error err = {0};
    cr_assert_eq(jamba_context_plan_memory(m, &p, &plan, &err), JAMBA_OK, "%s", err.message);
    return plan;
}

JB_TEST(shard, the_context_plan_splits_kv_cache_and_mamba_state) {
    jamba_model *m = planning_model(LARGE, true);
    const jamba_context_plan one = plan_gpus(m, 0, 256), also_one = plan_gpus(m, 1, 256);
    cr_assert_eq(one.n_gpus, 1);
    cr_assert(one.weights == also_one.weights && one.total == also_one.total && one.fits == also_one.fits);
    cr_assert(one.per_gpu[0].total == one.total && one.per_gpu[0].weights == one.weights);
    for (int k = 1; k < N_RANKS; k++) {
        const int n = RANKS[k];
        const jamba_context_plan plan = plan_gpus(m, n, 256);
        cr_assert_eq(plan.n_gpus, n);
        for (int g = 0; g < n; g++) {
            const jamba_gpu_plan *q = &plan.per_gpu[g];
            cr_assert_eq(q->kv_cache * (uint64_t)n, one.kv_cache, "%d GPUs: each holds its KV heads", n);
            cr_assert_eq(q->mamba_state * (uint64_t)n, one.mamba_state, "%d GPUs: each its channels", n);
            cr_assert_eq(q->total, q->weights + q->kv_cache + q->mamba_state + q->workspace);
            cr_assert_leq(q->total, plan.total, "the plan's figures are the fullest GPU's");
        }
        cr_assert_lt(plan.workspace, one.workspace);
    }
    jamba_model_free(m);
}

JB_TEST(shard, large_fits_8_gpus_and_mini_2_at_256k) {
    jamba_model *large = planning_model(LARGE, true), *mini = planning_model(MINI, false);
    const jamba_context_plan l8 = plan_gpus(large, 8, 0), m2 = plan_gpus(mini, 2, 0), m1 = plan_gpus(mini, 1, 0);
    cr_assert(l8.fits, "Large, int8 experts, 256K on 8 x 80 GB: %s", l8.advice);
    cr_assert(m2.fits, "Mini, bf16 experts, 256K on 2 x 80 GB: %s", m2.advice);
    cr_assert_not(m1.fits, "Mini with bf16 experts does not fit one 80 GB GPU");
    cr_assert_eq(l8.budget, 80000000000ull);
    jamba_context_params p = jamba_context_default_params();
    p.device = JAMBA_DEVICE_CUDA;
    p.n_gpus = 3;
    jamba_context_plan plan;
    jamba_error err = {0};
    cr_assert_eq(jamba_context_plan_memory(mini, &p, &plan, &err), JAMBA_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err.message, "not divisible by 3") != NULL, "%s", err.message);
    jamba_model_free(large);
    jamba_model_free(mini);
}

/* Past n_kv GPUs (16 for both models: two nodes of 8) each KV head is held by N / n_kv GPUs, each with
 * n_h / N of its query heads; the KV cache per GPU is one head's. */
JB_TEST(shard, past_the_kv_heads_each_kv_head_is_held_by_several_gpus) {
    jamba_model *large = planning_model(LARGE, true);
    for (int m = 0; m < N_MODELS; m++) {
        const jamba_config c = load_config(MODELS[m]);
        jb_shard_plan p = plan_of(&c, 16);
        check_tensor_list(&c, &p);
        check_coverage(&p);
        const int64_t d_h = c.head_dim, q_heads = c.num_attention_heads / 16;
        for (int r = 0; r < 16; r++) {
            expect_slice(&p, "model.layers.4.self_attn.k_proj.weight", r, 0, (r / 2) * d_h, d_h);
            expect_slice(&p, "model.layers.4.self_attn.v_proj.weight", r, 0, (r / 2) * d_h, d_h);
            expect_slice(&p, "model.layers.4.self_attn.q_proj.weight", r, 0, r * q_heads * d_h, q_heads * d_h);
        }
        cr_assert_eq(p.tensors[find(&p, "model.layers.4.self_attn.k_proj.weight")].copies, 2);
        jamba_config g;
        jb_shard_rank_config(&p, &c, &g);
        cr_assert(g.num_key_value_heads == 1 && g.num_attention_heads == q_heads);
        jb_shard_plan_free(&p);
    }
    const jamba_context_plan one = plan_gpus(large, 1, 256), sixteen = plan_gpus(large, 16, 256);
    cr_assert_eq(sixteen.per_gpu[15].kv_cache * 8, one.kv_cache, "one KV head of 8 per GPU");
    jamba_model_free(large);
}

/* ---- collectives -------------------------------------------------------------------------------- */

JB_TEST(shard, collectives_per_decode_token) {
    for (int m = 0; m < N_MODELS; m++) {
        const jamba_config c = load_config(MODELS[m]);
        const uint64_t H4 = (uint64_t)c.hidden_size * 4, xdbl = (uint64_t)(c.mamba_dt_rank + 2 * c.mamba_d_state) * 4;
        for (int k = 0; k < N_RANKS; k++) {
            const int n = RANKS[k];
            jb_shard_plan p = plan_of(&c, n);
            const jb_token_traffic d = jb_shard_token_traffic(&p, &c, JB_PHASE_DECODE, 2);
            if (n == 1) {
                cr_assert(d.collectives == 0 && d.bytes == 0 && d.wire == 0);
                jb_shard_plan_free(&p);
                continue;
            }
            /* the embedding, then per layer: the mixer's all-reduce (Mamba: x_proj's too), the FFN's */
            const int64_t L = c.num_hidden_layers, M = c.n_mamba_layers;
            cr_assert_eq(d.collectives, 1 + 2 * L + M);
            cr_assert_eq(d.bytes, (uint64_t)(1 + 2 * L) * H4 + (uint64_t)M * xdbl);
            const uint64_t ar = H4 * 2 * (n - 1) / n, ar_xdbl = xdbl * 2 * (n - 1) / n; /* ring all-reduce */
            cr_assert_eq(d.wire, (uint64_t)(1 + 2 * L) * ar + (uint64_t)M * ar_xdbl);
            /* prefill: MoE layers exchange tokens all-to-all, as it sends fewer bytes (k = 2 < 4N/3) */
            const jb_token_traffic f = jb_shard_token_traffic(&p, &c, JB_PHASE_PREFILL, 2);
            cr_assert_eq(f.collectives, d.collectives + 2 * c.n_moe_layers);
            cr_assert_lt(f.wire, d.wire);
            jb_collective cs[JB_LAYER_COLLECTIVES_MAX];
            cr_assert_eq(jb_shard_layer_collectives(&p, &c, 1, JB_PHASE_PREFILL, 2, cs), 5);
            cr_assert(cs[2].op == JB_COLL_ALL_TO_ALL && cs[3].op == JB_COLL_ALL_TO_ALL);
            cr_assert_eq(jb_shard_layer_collectives(&p, &c, 1, JB_PHASE_DECODE, 2, cs), 3);
            for (int i = 0; i < 3; i++)
                cr_assert_eq(cs[i].op, JB_COLL_ALL_REDUCE);
            cr_assert_eq(jb_shard_logits_collective(&p, &c).bytes, (uint64_t)c.vocab_size * 4);
            jb_shard_plan_free(&p);
        }
    }
}

/* ---- jamba inspect --gpus ----------------------------------------------------------------------- */

JB_TEST(shard, inspect_reports_the_per_gpu_plan) {
    char *out = NULL, *err = NULL;
    int rc = tu_run((const char *[]){JB_CLI_PATH, "inspect", "--model", LARGE, "--ctx", "256k", "--device", "cuda",
                                     "--gpus", "8", "--experts", "int8", "--json", NULL},
                    &out, &err);
    cr_assert_eq(rc, 0, "%s", err);
    json_error_t je;
    json_t *root = json_loads(out, 0, &je);
    cr_assert_not_null(root, "%s", je.text);
    json_t *dp = json_object_get(root, "device_plan");
    cr_assert(json_is_true(json_object_get(dp, "fits")), "%s", out);
    cr_assert_eq(json_integer_value(json_object_get(dp, "gpus")), 8);
    json_t *per = json_object_get(dp, "per_gpu");
    cr_assert_eq(json_array_size(per), 8);
    for (size_t g = 0; g < 8; g++) {
        json_t *q = json_array_get(per, g);
        json_int_t sum = 0;
        static const char *const parts[] = {"weights", "kv_cache", "mamba_state", "workspace"};
        for (int i = 0; i < 4; i++)
            sum += json_integer_value(json_object_get(q, parts[i]));
        cr_assert_eq(json_integer_value(json_object_get(q, "total")), sum);
        cr_assert_leq(sum, json_integer_value(json_object_get(dp, "budget")));
    }
    json_decref(root);
    free(out), free(err);
    rc = tu_run((const char *[]){JB_CLI_PATH, "inspect", "--model", MINI, "--ctx", "256k", "--device", "cuda", "--gpus",
                                 "2", NULL},
                &out, &err);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert(strstr(out, "device plan  2 CUDA GPUs") != NULL, "%s", out);
    cr_assert(strstr(out, "fits         yes, on all 2 GPUs") != NULL && strstr(out, "to spare") != NULL, "%s", out);
    free(out), free(err);
    rc = tu_run((const char *[]){JB_CLI_PATH, "inspect", "--model", MINI, "--device", "cuda", "--gpus", "3", NULL},
                &out, &err);
    cr_assert_eq(rc, 1);
    cr_assert(strstr(err, "num_attention_heads 32 is not divisible by 3") != NULL, "%s", err);
    free(out), free(err);
    rc = tu_run((const char *[]){JB_CLI_PATH, "inspect", "--model", MINI, "--gpus", "2", NULL}, &out, &err);
    cr_assert_eq(rc, 2, "--gpus without --device cuda is a usage error");
    free(out), free(err);
}
