/*
 * test_decode_plan.c — the planned launches of a CUDA decode step (cuda/decode_plan.c), checked without a
 * GPU: which steps take the fused path, and the per-layer figures of docs/design.md ("Decode step
 * launches") for Jamba-Mini's config. The GPU test (tests/gpu/test_gpu_model.c, model/decode_launches)
 * compares the same figure with the kernel nodes of a captured decode graph.
 */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "ckpt/config.h"
#include "cuda/decode_plan.h"
#include "tests/support/testutil.h"

static jamba_config mini(void) {
    jamba_config c;
    jamba_error err = {0};
    cr_assert_eq(jb_config_load(JB_SOURCE_DIR "/models/configs/jamba-1.5-mini", &c, NULL, &err), JAMBA_OK, "%s",
                 err.message);
    return c;
}

JB_TEST(decode_plan, fused_rule) {
    cr_assert(jb_cuda_decode_fused(true, false, 1, 1));
    cr_assert(jb_cuda_decode_fused(true, false, JB_CUDA_FUSED_ROWS, JB_CUDA_FUSED_ROWS));
    cr_assert(jb_cuda_decode_fused(true, false, 3, 0), "a step without logits");
    cr_assert_not(jb_cuda_decode_fused(true, false, JB_CUDA_FUSED_ROWS + 1, 1), "too many rows");
    cr_assert_not(jb_cuda_decode_fused(true, false, 2, JB_CUDA_FUSED_ROWS + 1), "too many logit rows");
    cr_assert_not(jb_cuda_decode_fused(false, false, 2, 1), "a prefill segment");
    cr_assert_not(jb_cuda_decode_fused(true, true, 2, 1), "a capture");
    cr_assert_not(jb_cuda_decode_fused(true, false, 0, 0));
}

/* Jamba-Mini at batch 1: the table of docs/design.md, with the Mamba mixer as one cooperative kernel. */
JB_TEST(decode_plan, mini_batch_one) {
    const jamba_config c = mini();
    jb_decode_launches n;
    jb_decode_shape s = {.T = 1, .mlp_int8 = false, .mamba_coop = true};
    cr_assert(jb_cuda_decode_launches(&c, &s, &n));
    cr_assert(n.fused);
    cr_expect_eq(n.head, 1);
    cr_expect_eq(n.mamba, 1, "one cooperative kernel per Mamba mixer");
    cr_expect(n.attention >= 3 && n.attention <= 4, "qkv, KV append, attention with its split combine, o_proj");
    cr_expect_eq(n.dense, 2);
    cr_expect_eq(n.moe, 3, "router + route + plan, gate|up + SwiGLU, down + combine + residual + norm");
    cr_expect_eq(n.n_between, 0, "every layer output lands in x with the next norm");
    cr_expect_eq(n.tail, 1);
    /* 28 Mamba and 4 attention mixers, 16 dense and 16 MoE FFNs */
    cr_expect_eq(n.total, 1 + 28 * 1 + 4 * n.attention + 16 * 2 + 16 * 3 + 1);
    cr_expect_leq(n.total, 150, "the issue's target: %lld", (long long)n.total);
    cr_expect_eq(n.blas_calls, 0, "nothing on cuBLAS");
}

/* Where the device cannot launch the cooperative kernel: the mixer is four fused products. */
JB_TEST(decode_plan, mini_without_cooperative_launch) {
    const jamba_config c = mini();
    jb_decode_launches coop, four;
    jb_decode_shape s = {.T = 3, .mlp_int8 = false, .mamba_coop = true};
    cr_assert(jb_cuda_decode_launches(&c, &s, &coop));
    s.mamba_coop = false;
    cr_assert(jb_cuda_decode_launches(&c, &s, &four));
    cr_expect_eq(four.mamba, 4, "in_proj + conv, x_proj + norms, dt_proj + scan, out_proj + residual + norm");
    cr_expect_eq(four.total - coop.total, 28 * 3);
    cr_expect_eq(four.total, 1 + 28 * 4 + 4 * four.attention + 16 * 2 + 16 * 3 + 1);
}

/* A config with more experts than the fused router takes keeps the six MoE launches and their boundary. */
JB_TEST(decode_plan, many_experts) {
    jamba_config c = mini();
    c.num_experts = JB_CUDA_FUSED_ROUTER_EXPERTS + 1;
    jb_decode_launches n;
    jb_decode_shape s = {.T = 1, .mlp_int8 = false, .mamba_coop = true};
    cr_assert(jb_cuda_decode_launches(&c, &s, &n));
    cr_expect_eq(n.moe, 6);
    cr_expect_eq(n.n_between, 16);
    cr_expect_eq(n.blas_calls, 16, "the MoE routers stay on cuBLAS");
}

/* int8 dense MLPs keep their three launches and leave their output in mix: one more boundary each. */
JB_TEST(decode_plan, int8_mlps) {
    const jamba_config c = mini();
    jb_decode_launches bf, q8;
    jb_decode_shape s = {.T = 2, .mlp_int8 = false};
    cr_assert(jb_cuda_decode_launches(&c, &s, &bf));
    s.mlp_int8 = true;
    cr_assert(jb_cuda_decode_launches(&c, &s, &q8));
    cr_expect_eq(q8.dense, 3);
    cr_expect_eq(q8.n_between, 16);
    cr_expect_eq(q8.total - bf.total, 16 * (3 - 2) + 16);
}

/* Past FUSED_ROWS the unfused graph: cuBLAS products and a norm launch on each side of every mixer. */
JB_TEST(decode_plan, unfused_rows) {
    const jamba_config c = mini();
    jb_decode_launches n;
    jb_decode_shape s = {.T = JB_CUDA_FUSED_ROWS + 1, .mlp_int8 = false};
    cr_assert(jb_cuda_decode_launches(&c, &s, &n));
    cr_assert_not(n.fused);
    cr_expect_eq(n.mamba, 8, "in_proj, conv, window, x_proj, norms, dt_proj, scan, out_proj");
    cr_expect_eq(n.n_between, 64);
    cr_expect_eq(n.attention, 4, "qkv, KV append, attention, o_proj");
    cr_expect_eq(n.total, 1 + 28 * 8 + 4 * 4 + 16 * 3 + 16 * 6 + 64 + 4);
    cr_expect_eq(n.blas_calls, 28 * 4 + 4 * 2 + 16 * 2 + 16 + 1);
    /* Mamba projection biases add two launches per Mamba layer */
    jamba_config b = c;
    b.mamba_proj_bias = true;
    jb_decode_launches nb;
    cr_assert(jb_cuda_decode_launches(&b, &s, &nb));
    cr_expect_eq(nb.total - n.total, 28 * 2);
}

/* Steps that are never a graph are refused: their MoE launches depend on the routing. */
JB_TEST(decode_plan, out_of_range) {
    const jamba_config c = mini();
    jb_decode_launches n;
    jb_decode_shape s = {.T = 0};
    cr_assert_not(jb_cuda_decode_launches(&c, &s, &n));
    s.T = 33; /* 66 (token, expert) slots > 64 */
    cr_assert_not(jb_cuda_decode_launches(&c, &s, &n));
    s.T = 32;
    cr_assert(jb_cuda_decode_launches(&c, &s, &n));
}
