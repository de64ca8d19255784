/*
 * test_plan.c — the memory planner (jamba_context_plan_memory, cuda/ctx_layout.c) without a GPU: the
 * Jamba-Mini figures of the 256K-on-80 GB design, the chosen prefill chunk, the advice when a request does
 * not fit (each suggestion checked by planning it), the device layout's own invariants, and `jamba inspect
 * --device cuda`.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt/config.h"
#include "ckpt/weights.h"
#include "cuda/ctx_layout.h"
#include "tests/support/testutil.h"

#define MINI JB_SOURCE_DIR "/models/configs/jamba-1.5-mini"
#define GB 1000000000ull

/* The Mini config as a planning-only model with the given expert format. */
static jamba_model *mini(bool experts_int8) {
    jamba_model_params mp = jamba_model_default_params();
    mp.weights = JAMBA_WEIGHTS_IF_PRESENT;
    mp.experts = experts_int8 ? JAMBA_FORMAT_INT8 : JAMBA_FORMAT_STORED;
    jamba_model *m = NULL;
    jamba_error err = {0};
    cr_assert_eq(jamba_model_load(MINI, &mp, &m, &err), JAMBA_OK, "%s", err.message);
    cr_assert_not(jamba_model_has_weights(m));
    return m;
}

static jamba_context_params cuda_params(int64_t n_ctx, int32_t n_seq) {
    jamba_context_params p = jamba_context_default_params();
    p.device = JAMBA_DEVICE_CUDA;
    p.n_ctx = n_ctx;
    p.n_seq_max = n_seq;
    return p;
}

static jamba_context_plan plan_of(const jamba_model *m, const jamba_context_params *p) {
    jamba_context_plan plan;
    jamba_error err = {0};
    cr_assert_eq(jamba_context_plan_memory(m, p, &plan, &err), JAMBA_OK, "%s", err.message);
    return plan;
}

JB_TEST(plan, mini_int8_experts_holds_256k_in_80gb) {
    jamba_model *m = mini(true);
    const jamba_config *c = jamba_model_config(m);
    jamba_context_params p = cuda_params(262144, 1);
    jamba_context_plan plan = plan_of(m, &p);
    cr_assert_eq(plan.device, JAMBA_DEVICE_CUDA);
    cr_assert_eq(plan.budget, 80 * GB, "no GPU here: the planning budget is 80 GB");
    cr_assert(plan.fits);
    /* KV: 4 attention layers x K and V x 8 heads x 128 x bf16 x 262144 tokens = exactly 4 GiB */
    cr_assert_eq(plan.kv_cache, 4294967296ull);
    /* Mamba state: 28 layers x 8192 channels x (3 conv + 16 SSM) floats */
    cr_assert_eq(plan.mamba_state, 28ull * 8192 * (3 + 16) * 4);
    /* weights: experts one byte per parameter, matrices two, the small Mamba tensors and norms four (fp32
     * on the device), plus row scales and up to 256 bytes of alignment per tensor */
    jamba_param_counts pc;
    cr_assert_eq(jamba_model_param_counts(m, &pc, NULL), JAMBA_OK);
    const uint64_t Di = (uint64_t)c->mamba_d_inner, N = (uint64_t)c->mamba_d_state, K = (uint64_t)c->mamba_d_conv;
    const uint64_t small = (uint64_t)c->n_mamba_layers * (Di * K + Di + Di + Di * N + Di + (uint64_t)c->mamba_dt_rank +
                                                         2 * N) +
                           (uint64_t)(2 * c->num_hidden_layers + 1) * (uint64_t)c->hidden_size;
    const uint64_t raw = pc.experts + 2 * (pc.total - pc.experts) + 2 * small;
    const uint64_t scales = (uint64_t)c->n_moe_layers * (uint64_t)c->num_experts *
                            (uint64_t)(2 * c->intermediate_size + c->hidden_size) * 4;
    cr_assert_geq(plan.weights, raw + scales, "weights %llu, expected %llu", (unsigned long long)plan.weights,
                  (unsigned long long)(raw + scales));
    cr_assert_leq(plan.weights, raw + scales + 1000 * 256, "weights %llu, expected %llu",
                  (unsigned long long)plan.weights, (unsigned long long)(raw + scales));
    cr_assert(plan.weights > 57 * GB && plan.weights < 59 * GB, "about 58 GB with int8 experts");
    cr_assert_eq(plan.n_batch, 4096, "the largest chunk fits");
    cr_assert_eq(plan.total, plan.weights + plan.kv_cache + plan.mamba_state + plan.workspace);
    cr_assert_leq(plan.total, 76 * GB, "the issue's peak-memory target");
    cr_log_info("Mini int8 experts at 262144 tokens: weights %llu, KV %llu, state %llu, workspace %llu, total %llu",
                (unsigned long long)plan.weights, (unsigned long long)plan.kv_cache,
                (unsigned long long)plan.mamba_state, (unsigned long long)plan.workspace,
                (unsigned long long)plan.total);
    jamba_model_free(m);
}

JB_TEST(plan, fp8_kv_holds_a_million_tokens) {
    jamba_model *m = mini(true);
    jamba_context_params p = cuda_params(1048576, 1);
    p.kv_dtype = JAMBA_DTYPE_F8_E4M3;
    jamba_context_plan plan = plan_of(m, &p);
    /* one byte per value plus one fp32 scale per (token, head, K/V, layer) */
    cr_assert_eq(plan.kv_cache, 1048576ull * (4 * 2 * 8 * 128 + 4 * 2 * 8 * 4));
    cr_assert(plan.fits, "total %llu", (unsigned long long)plan.total);
    p.n_ctx = 2 * 1048576; /* bf16 KV at 2M tokens (34 GB) does not fit beside the weights; fp8 is advised */
    p.kv_dtype = JAMBA_DTYPE_UNKNOWN;
    plan = plan_of(m, &p);
    cr_assert_not(plan.fits);
    cr_assert(strstr(plan.advice, "--kv-dtype fp8") != NULL, "%s", plan.advice);
    jamba_model_free(m);
}

JB_TEST(plan, bf16_experts_do_not_fit_and_advice_says_int8) {
    jamba_model *m = mini(false);
    jamba_context_params p = cuda_params(262144, 1);
    jamba_context_plan plan = plan_of(m, &p);
    cr_assert_not(plan.fits);
    cr_assert(plan.weights > 100 * GB);
    cr_assert(strstr(plan.advice, "--experts int8") != NULL, "%s", plan.advice);
    cr_assert(strstr(plan.advice, "80.00 GB") != NULL, "%s", plan.advice);
    jamba_model_free(m);
}

/* Parse "--ctx N" / "N sequences" out of the advice. */
static int64_t advised(const char *advice, const char *key, bool before) {
    const char *at = strstr(advice, key);
    if (at == NULL)
        return -1;
    if (!before)
        return strtoll(at + strlen(key), NULL, 10);
    const char *p = at;
    while (p > advice && p[-1] == ' ')
        p--;
    while (p > advice && p[-1] >= '0' && p[-1] <= '9')
        p--;
    return strtoll(p, NULL, 10);
}

JB_TEST(plan, advice_names_the_largest_context_and_sequences_that_fit) {
    jamba_model *m = mini(true);
    jamba_context_params p = cuda_params(262144, 8);
    p.gpu_memory = 70 * GB;
    jamba_context_plan plan = plan_of(m, &p);
    cr_assert_not(plan.fits);
    const int64_t ctx = advised(plan.advice, "--ctx ", false), seqs = advised(plan.advice, " sequences", true);
    cr_assert(ctx > 0 && ctx < 262144, "%s", plan.advice);
    cr_assert(seqs >= 1 && seqs < 8, "%s", plan.advice);
    /* each suggestion fits, and one more does not (at the smallest chunk, which the advice assumes) */
    jamba_context_params q = p;
    q.n_batch = 16;
    q.n_ctx = ctx;
    cr_assert(plan_of(m, &q).fits);
    q.n_ctx = ctx + 1;
    cr_assert_not(plan_of(m, &q).fits);
    q.n_ctx = 262144;
    q.n_seq_max = (int32_t)seqs;
    cr_assert(plan_of(m, &q).fits);
    q.n_seq_max = (int32_t)seqs + 1;
    cr_assert_not(plan_of(m, &q).fits);
    jamba_model_free(m);
}

JB_TEST(plan, the_chunk_shrinks_to_fit_and_an_explicit_one_is_kept) {
    jamba_model *m = mini(true);
    jamba_context_params p = cuda_params(262144, 1);
    const jamba_context_plan big = plan_of(m, &p);
    /* a budget just under the 4096-row plan: a smaller chunk is chosen, and it fits */
    p.gpu_memory = big.total - 1;
    jamba_context_plan smaller = plan_of(m, &p);
    cr_assert(smaller.fits);
    cr_assert_lt(smaller.n_batch, 4096);
    cr_assert_lt(smaller.workspace, big.workspace);
    cr_assert_leq(smaller.total, p.gpu_memory);
    /* an explicit n_batch is planned as given, fitting or not */
    p.gpu_memory = 0;
    p.n_batch = 100;
    jamba_context_plan fixed = plan_of(m, &p);
    cr_assert_eq(fixed.n_batch, 100);
    cr_assert_eq(fixed.n_logits_max, 100);
    jamba_model_free(m);
}

JB_TEST(plan, the_layout_is_aligned_disjoint_and_grows_with_the_request) {
    jamba_model *m = mini(true);
    const jamba_config *c = jamba_model_config(m);
    jb_ctx_shape s = {.S = 2, .C = 1000, .Tb = 333, .cap = 7, .dt = JAMBA_DTYPE_BF16,
                      .kv_dt = JAMBA_DTYPE_F8_E4M3, .graphs = true};
    jb_ctx_layout L;
    jamba_error err = {0};
    cr_assert_eq(jb_ctx_layout_plan(c, &s, &L, &err), JAMBA_OK);
    uint64_t end = 0;
    for (int i = 0; i < JB_BUF_COUNT; i++) {
        cr_assert_eq(L.offset[i] % JB_CUDA_ARENA_ALIGN, 0, "buffer %d", i);
        cr_assert_geq(L.offset[i], end, "buffer %d overlaps the one before", i);
        end = L.offset[i] + L.bytes[i];
    }
    cr_assert_leq(end, L.total);
    cr_assert_eq(L.bytes[JB_BUF_KV], 2ull * 4 * 2 * 1000 * 1024);
    cr_assert_eq(L.bytes[JB_BUF_KV_SCALE], 2ull * 4 * 2 * 1000 * 8 * 4);
    cr_assert_eq(L.bytes[JB_BUF_META], jb_ctx_meta_layout(333, 2, 2 + 333, 7, NULL));
    cr_assert_eq(L.max_segs, 2);
    /* bf16 KV has no scales; sizes past 64 bits are an error, not a wrap */
    s.kv_dt = JAMBA_DTYPE_BF16;
    cr_assert_eq(jb_ctx_layout_plan(c, &s, &L, &err), JAMBA_OK);
    cr_assert_eq(L.bytes[JB_BUF_KV_SCALE], 0);
    s.C = INT64_C(1) << 40;
    s.S = 1 << 20;
    cr_assert_eq(jb_ctx_layout_plan(c, &s, &L, &err), JAMBA_ERR_OVERFLOW);
    cr_assert(strstr(err.message, "overflow") != NULL, "%s", err.message);
    jamba_model_free(m);
}

JB_TEST(plan, cpu_plans_and_cpu_refuses_an_fp8_cache) {
    jamba_model *m = mini(false);
    jamba_context_params p = jamba_context_default_params();
    p.n_ctx = 1000;
    jamba_context_plan plan = plan_of(m, &p);
    cr_assert_eq(plan.device, JAMBA_DEVICE_CPU);
    cr_assert_eq(plan.n_batch, 512);
    cr_assert_eq(plan.kv_cache, 1000ull * 4 * 2 * 1024 * 4, "the CPU's KV cache is fp32");
    cr_assert(plan.fits);
    p.kv_dtype = JAMBA_DTYPE_F8_E4M3;
    jamba_error err = {0};
    cr_assert_eq(jamba_context_plan_memory(m, &p, &plan, &err), JAMBA_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err.message, "CUDA") != NULL, "%s", err.message);
    cr_assert_eq(jamba_context_plan_memory(NULL, &p, &plan, &err), JAMBA_ERR_INVALID_ARGUMENT);
    jamba_model_free(m);
}

JB_TEST(plan, inspect_shows_the_device_plan) {
    char *out = NULL, *err = NULL;
    int rc = tu_run((const char *[]){JB_CLI_PATH, "inspect", "--model", MINI, "--ctx", "256k", "--device", "cuda",
                                     "--experts", "int8", NULL},
                    &out, &err);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert(strstr(out, "device plan  CUDA device 0, bf16, KV bf16, 262,144 tokens x 1 sequence") != NULL, "%s", out);
    cr_assert(strstr(out, "4,294,967,296 bytes") != NULL, "%s", out);
    cr_assert(strstr(out, "fits         yes") != NULL, "%s", out);
    free(out), free(err);
    rc = tu_run((const char *[]){JB_CLI_PATH, "inspect", "--model", MINI, "--ctx", "256k", "--device", "cuda", "--json",
                                 NULL},
                &out, &err);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert(strstr(out, "\"device_plan\"") != NULL && strstr(out, "\"fits\": false") != NULL, "%s", out);
    cr_assert(strstr(out, "--experts int8") != NULL, "%s", out);
    free(out), free(err);
    rc = tu_run((const char *[]){JB_CLI_PATH, "inspect", "--model", MINI, "--kv-dtype", "fp8", "--device", "cpu",
                                 "--gpu", "1", NULL},
                &out, &err);
    cr_assert_eq(rc, 2, "--gpu without --device cuda is a usage error");
    free(out), free(err);
}

/* The planner's device weight size against the binder's own tensor list (what cuda/weights.cu uploads):
 * matrices in the device dtype (int8 FFN blocks one byte plus a float scale per row), everything else
 * fp32; the two differ only by alignment (q|k|v and gate|up are fused blocks on the device). A tied
 * lm_head is neither visited nor held twice. */
typedef struct weight_sum {
    bool experts_int8, mlp_int8;
    uint64_t bytes, tensors;
} weight_sum;

static bool add_tensor(void *arg, const char *name, jb_weight *w, int rank, const int64_t *shape, bool linear) {
    (void)w;
    weight_sum *s = arg;
    uint64_t n = 1;
    for (int d = 0; d < rank; d++)
        n *= (uint64_t)shape[d];
    const bool expert = strstr(name, ".experts.") != NULL;
    const bool mlp = !expert && strstr(name, "feed_forward.") && !strstr(name, "router");
    const bool matrix = linear || strstr(name, "embed_tokens") || strstr(name, "lm_head") ||
                        strstr(name, "router"); /* the router is not quantizable, yet a device-dtype matrix */
    if (linear && ((expert && s->experts_int8) || (mlp && s->mlp_int8)))
        s->bytes += n + (uint64_t)shape[0] * 4;
    else
        s->bytes += n * (matrix ? 2 : 4);
    s->tensors++;
    return true;
}

JB_TEST(plan, device_weights_match_the_binders_tensor_list) {
    static const char *const configs[] = {"jamba-1.5-mini", "jamba-v0.1", "jamba-1.5-large"};
    for (size_t i = 0; i < 3; i++)
        for (int fmt = 0; fmt < 3; fmt++) {
            char *dir = tu_path(JB_SOURCE_DIR "/models/configs", configs[i]);
            jamba_model *m = NULL;
            jamba_model_params mp = jamba_model_default_params();
            mp.weights = JAMBA_WEIGHTS_NONE;
            cr_assert_eq(jamba_model_load(dir, &mp, &m, NULL), JAMBA_OK, "%s", dir);
            const jamba_config *c = jamba_model_config(m);
            weight_sum s = {.experts_int8 = fmt >= 1, .mlp_int8 = fmt == 2};
            jb_weights w = {0};
            cr_assert_eq(jb_weights_visit(c, &w, add_tensor, &s, NULL), JAMBA_OK);
            jb_weights_free(&w);
            jb_weight_shape ws = {.dt = JAMBA_DTYPE_BF16, .experts_int8 = s.experts_int8, .mlp_int8 = s.mlp_int8,
                                  .inner_norms = c->mamba_inner_layernorms};
            uint64_t planned = 0;
            cr_assert(jb_weights_device_bytes(c, &ws, &planned));
            cr_assert_geq(planned, s.bytes, "%s format %d: planned %llu < %llu", configs[i], fmt,
                          (unsigned long long)planned, (unsigned long long)s.bytes);
            cr_assert_leq(planned, s.bytes + 256 * s.tensors, "%s format %d: planned %llu, tensors %llu",
                          configs[i], fmt, (unsigned long long)planned, (unsigned long long)s.bytes);
            jamba_model_free(m);
            free(dir);
        }
}
