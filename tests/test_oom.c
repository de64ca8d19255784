/*
 * test_oom.c — host out-of-memory at every allocation of a model load (libuv style): fail the 1st, 2nd,
 * ... Nth library allocation until the load succeeds. Each failure must come back as
 * JAMBA_ERR_OUT_OF_MEMORY with no crash and (under ASan) no leak.
 *
 * Allocations inside jansson are not injected: jansson 2.14's lexer ignores failed buffer growth, so under
 * allocation failure it can drop a character of a string or hit an assert (see docs/reliability.md).
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/fault_alloc.h"
#include "tests/support/testutil.h"

/* Returns how many failure points were exercised. */
static long long fail_every_allocation(const char *dir, jamba_weights_mode mode) {
    jamba_model_params p = jamba_model_default_params();
    p.weights = mode;
    for (long long n = 1;; n++) {
        fault_alloc_fail_at(n);
        jamba_model *m = NULL;
        jamba_error err = {0};
        jamba_status st = jamba_model_load(dir, &p, &m, &err);
        if (!fault_alloc_fired()) {
            cr_assert_eq(st, JAMBA_OK, "load without an injected failure: %s", err.message);
            fault_alloc_fail_at(0);
            jamba_model_free(m);
            return n - 1;
        }
        cr_assert_null(m, "allocation %lld (of %lld made) failed but the load succeeded", n, fault_alloc_count());
        cr_assert_eq(st, JAMBA_ERR_OUT_OF_MEMORY, "allocation %lld failed but status was %d: %s", n, st, err.message);
        cr_assert(strstr(err.message, "memory") != NULL, "allocation %lld: %s", n, err.message);
    }
}

JB_TEST(oom, sharded_checkpoint_load) {
    char *dir = tu_fixture("models/tiny-hf-sharded");
    long long points = fail_every_allocation(dir, JAMBA_WEIGHTS_REQUIRED);
    cr_assert_gt(points, 100);
    cr_log_info("%lld allocation failure points", points);
    free(dir);
}

JB_TEST(oom, stacked_ai21_and_config_only_loads) {
    char *stacked = tu_fixture("models/tiny-stacked"), *ai21 = tu_fixture("models/tiny-ai21");
    cr_assert_gt(fail_every_allocation(stacked, JAMBA_WEIGHTS_REQUIRED), 10);
    cr_assert_gt(fail_every_allocation(ai21, JAMBA_WEIGHTS_REQUIRED), 10);
    cr_assert_gt(fail_every_allocation(JB_SOURCE_DIR "/models/configs/jamba-1.5-mini", JAMBA_WEIGHTS_IF_PRESENT), 5);
    free(stacked);
    free(ai21);
}

JB_TEST(oom, context_creation_and_decode_never_allocates) {
    char *dir = tu_fixture("forward/mini/model");
    jamba_model *m = NULL;
    cr_assert_eq(jamba_model_load(dir, NULL, &m, NULL), JAMBA_OK);
    jamba_context_params p = jamba_context_default_params();
    p.n_seq_max = 2;
    p.n_ctx = 64;
    p.n_batch = 8;
    p.n_threads = 3;
    p.n_logits_max = 32;
    long long n = 1;
    jamba_context *ctx = NULL;
    for (;; n++) {
        fault_alloc_fail_at(n);
        jamba_error err = {0};
        jamba_status st = jamba_context_create(m, &p, &ctx, &err);
        if (!fault_alloc_fired()) {
            cr_assert_eq(st, JAMBA_OK, "%s", err.message);
            break;
        }
        cr_assert_eq(st, JAMBA_ERR_OUT_OF_MEMORY, "allocation %lld: status %d: %s", n, st, err.message);
        cr_assert_null(ctx);
    }
    cr_assert_gt(n, 30);
    /* with every allocation failing, prefill, decode and sequence copies still work */
    fault_alloc_fail_at(1);
    int32_t tokens[20];
    for (int i = 0; i < 20; i++)
        tokens[i] = 3 + i;
    jamba_seq_input in[2] = {{0, tokens, 20, JAMBA_LOGITS_ALL}, {1, tokens, 1, JAMBA_LOGITS_LAST}};
    jamba_error err = {0};
    cr_assert_eq(jamba_decode(ctx, in, 2, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(jamba_seq_fork(ctx, 0, 1, NULL), JAMBA_OK);
    cr_assert_eq(jamba_decode(ctx, &in[1], 1, NULL), JAMBA_OK);
    cr_assert(!fault_alloc_fired(), "decode allocated");
    fault_alloc_fail_at(0);
    jamba_context_free(ctx);
    jamba_model_free(m);
    free(dir);
}
