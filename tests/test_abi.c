/*
 * test_abi.c — the size-carrying structs of the public API (include/jamba.h, "ABI"): a caller's struct
 * that is shorter than the first sized release is refused, a longer one (a newer header) is accepted when
 * its extra bytes are zero and refused when they are set, output structs are written only up to the
 * caller's size; and the log and load-progress callbacks of jamba_model_params.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/abi.h"
#include "tests/support/testutil.h"

#define MODEL "forward/mini/model"

static jamba_model *load(const char *rel, const jamba_model_params *p) {
    char *dir = tu_fixture(rel);
    jamba_model *m = NULL;
    jamba_error err = {0};
    cr_assert_eq(jamba_model_load(dir, p, &m, &err), JAMBA_OK, "%s", err.message);
    free(dir);
    return m;
}

/* A struct as a newer header would lay it out: the current one followed by fields this library lacks. */
typedef struct newer_context_params {
    jamba_context_params known;
    int64_t unknown_field;
} newer_context_params;

JB_TEST(abi, params_shorter_than_the_first_release_are_refused) {
    jamba_model *m = load(MODEL, NULL);
    jamba_context_params p = jamba_context_default_params();
    jamba_context *ctx = (jamba_context *)1;
    jamba_error err = {0};
    cr_assert_eq(jamba_context_create_sized(m, &p, JB_MIN_CONTEXT_PARAMS - 1, &ctx, &err), JAMBA_ERR_INVALID_ARGUMENT);
    cr_assert_null(ctx);
    cr_assert(strstr(err.message, "jamba_context_create: params") != NULL, "%s", err.message);
    jamba_model_free(m);
}

JB_TEST(abi, a_newer_header_with_its_new_fields_zero_is_accepted) {
    jamba_model *m = load(MODEL, NULL);
    newer_context_params p = {.known = jamba_context_default_params(), .unknown_field = 0};
    p.known.n_ctx = 32;
    jamba_context *ctx = NULL;
    jamba_error err = {0};
    cr_assert_eq(jamba_context_create_sized(m, &p.known, sizeof p, &ctx, &err), JAMBA_OK, "%s", err.message);
    jamba_context_free(ctx);

    p.unknown_field = 7; /* a setting this library cannot honour: refused, never ignored */
    cr_assert_eq(jamba_context_create_sized(m, &p.known, sizeof p, &ctx, &err), JAMBA_ERR_UNSUPPORTED);
    cr_assert_null(ctx);
    cr_assert(strstr(err.message, "newer header") != NULL, "%s", err.message);
    jamba_model_free(m);
}

JB_TEST(abi, defaults_fill_exactly_the_callers_bytes) {
    unsigned char buf[sizeof(jamba_sampler_params) + 16];
    memset(buf, 0xAB, sizeof buf);
    jamba_sampler_params_init_sized((jamba_sampler_params *)(void *)buf, sizeof buf - 8);
    const jamba_sampler_params d = jamba_sampler_default_params();
    cr_assert_eq(memcmp(buf, &d, sizeof d), 0, "the known part holds the defaults");
    for (size_t i = sizeof d; i < sizeof buf - 8; i++)
        cr_assert_eq(buf[i], 0, "byte %zu of a longer struct is zeroed", i);
    for (size_t i = sizeof buf - 8; i < sizeof buf; i++)
        cr_assert_eq(buf[i], 0xAB, "byte %zu past the caller's size is untouched", i);
}

JB_TEST(abi, output_structs_are_written_up_to_the_callers_size) {
    jamba_model *m = load(MODEL, NULL);
    unsigned char buf[sizeof(jamba_param_counts) + 24];
    memset(buf, 0xCD, sizeof buf);
    jamba_error err = {0};
    cr_assert_eq(jamba_model_param_counts_sized(m, (jamba_param_counts *)(void *)buf, sizeof buf - 8, &err), JAMBA_OK,
                 "%s", err.message);
    jamba_param_counts want;
    cr_assert_eq(jamba_model_param_counts(m, &want, &err), JAMBA_OK);
    cr_assert_eq(memcmp(buf, &want, sizeof want), 0);
    for (size_t i = sizeof want; i < sizeof buf - 8; i++)
        cr_assert_eq(buf[i], 0, "byte %zu", i);
    for (size_t i = sizeof buf - 8; i < sizeof buf; i++)
        cr_assert_eq(buf[i], 0xCD, "byte %zu past the caller's size is untouched", i);
    cr_assert_eq(jamba_model_param_counts_sized(m, &want, JB_MIN_PARAM_COUNTS - 1, &err), JAMBA_ERR_INVALID_ARGUMENT);
    jamba_model_free(m);
}

/* Inputs of a newer header: jamba_seq_input followed by a field; the stride is the longer size. */
typedef struct newer_input {
    jamba_seq_input known;
    int64_t unknown_field;
} newer_input;

JB_TEST(abi, decode_reads_inputs_of_another_layout) {
    jamba_model *m = load(MODEL, NULL);
    jamba_context_params p = jamba_context_default_params();
    p.n_ctx = 32;
    p.n_seq_max = 2;
    jamba_context *ctx = NULL;
    jamba_error err = {0};
    cr_assert_eq(jamba_context_create(m, &p, &ctx, &err), JAMBA_OK, "%s", err.message);
    const jamba_token a[3] = {1, 5, 9}, b[2] = {4, 2};
    const int64_t V = jamba_model_config(m)->vocab_size;

    const jamba_seq_input same[2] = {{0, a, 3, JAMBA_LOGITS_LAST}, {1, b, 2, JAMBA_LOGITS_LAST}};
    cr_assert_eq(jamba_decode(ctx, same, 2, &err), JAMBA_OK, "%s", err.message);
    float *want = malloc(2 * (size_t)V * sizeof *want);
    for (int i = 0; i < 2; i++)
        memcpy(want + i * V, jamba_logits(ctx, i, NULL), (size_t)V * sizeof *want);

    cr_assert_eq(jamba_seq_reset(ctx, 0, &err), JAMBA_OK);
    cr_assert_eq(jamba_seq_reset(ctx, 1, &err), JAMBA_OK);
    newer_input wide[2] = {{same[0], 0}, {same[1], 0}};
    cr_assert_eq(jamba_decode_sized(ctx, &wide[0].known, 2, sizeof wide[0], &err), JAMBA_OK, "%s", err.message);
    for (int i = 0; i < 2; i++)
        cr_assert_eq(memcmp(jamba_logits(ctx, i, NULL), want + i * V, (size_t)V * sizeof *want), 0, "input %d", i);

    wide[1].unknown_field = 1;
    cr_assert_eq(jamba_decode_sized(ctx, &wide[0].known, 2, sizeof wide[0], &err), JAMBA_ERR_UNSUPPORTED);
    cr_assert_eq(jamba_seq_length(ctx, 0), 3, "a refused call changes nothing");
    free(want);
    jamba_context_free(ctx);
    jamba_model_free(m);
}

JB_TEST(abi, a_context_reports_its_resolved_params) {
    jamba_model *m = load(MODEL, NULL);
    jamba_context_params p = jamba_context_default_params(); /* n_ctx, n_batch, n_threads: chosen */
    p.n_seq_max = 3;
    jamba_context *ctx = NULL;
    jamba_error err = {0};
    cr_assert_eq(jamba_context_create(m, &p, &ctx, &err), JAMBA_OK, "%s", err.message);
    jamba_context_params got;
    cr_assert_eq(jamba_context_get_params(ctx, &got, &err), JAMBA_OK, "%s", err.message);
    const int64_t max_pos = jamba_model_config(m)->max_position_embeddings;
    cr_assert_eq(got.n_ctx, max_pos < JAMBA_DEFAULT_N_CTX ? max_pos : JAMBA_DEFAULT_N_CTX);
    cr_assert_eq(got.n_seq_max, 3);
    cr_assert_eq(got.n_batch, 512, "the CPU's default step");
    cr_assert_geq(got.n_threads, 1);
    cr_assert_eq(jamba_context_set_threads(ctx, 1, &err), JAMBA_OK);
    cr_assert_eq(jamba_context_get_params(ctx, &got, &err), JAMBA_OK);
    cr_assert_eq(got.n_threads, 1, "as last set");
    jamba_context_free(ctx);
    jamba_model_free(m);
}

JB_TEST(abi, token_type_and_deprecation_marker) {
    cr_assert_eq(sizeof(jamba_token), sizeof(int32_t));
#define JB_STR2(x) #x
#define JB_STR(x) JB_STR2(x)
    cr_assert(strstr(JB_STR(JAMBA_DEPRECATED("use x")), "deprecated") != NULL, "%s", JB_STR(JAMBA_DEPRECATED("x")));
}

/* ---- log and progress callbacks ---- */

typedef struct log_lines {
    int n[4];
    char last_info[1024];
} log_lines;

static void collect(jamba_log_level level, const char *message, void *data) {
    log_lines *l = data;
    cr_assert(level >= JAMBA_LOG_ERROR && level <= JAMBA_LOG_DEBUG);
    l->n[level]++;
    if (level == JAMBA_LOG_INFO)
        snprintf(l->last_info, sizeof l->last_info, "%s", message);
}

JB_TEST(callbacks, log_reports_the_load_and_each_context) {
    log_lines lines = {{0}, ""};
    jamba_model_params mp = jamba_model_default_params();
    mp.log = collect;
    mp.log_data = &lines;
    jamba_model *m = load(MODEL, &mp);
    cr_assert_eq(lines.n[JAMBA_LOG_INFO], 1);
    cr_assert(strstr(lines.last_info, "loaded") && strstr(lines.last_info, "tensors"), "%s", lines.last_info);
    cr_assert_eq(lines.n[JAMBA_LOG_WARN], jamba_model_n_warnings(m), "every load warning is logged");
    jamba_context *ctx = NULL;
    jamba_context_params cp = jamba_context_default_params();
    cp.n_ctx = 16;
    cr_assert_eq(jamba_context_create(m, &cp, &ctx, NULL), JAMBA_OK);
    cr_assert_eq(lines.n[JAMBA_LOG_INFO], 2);
    cr_assert(strstr(lines.last_info, "CPU context") != NULL, "%s", lines.last_info);
    jamba_context_free(ctx);
    jamba_model_free(m);
}

typedef struct progress_trace {
    float last;
    int calls, ones, stop_at; /* stop_at: the call that returns false (0: never) */
} progress_trace;

static bool track(float progress, void *data) {
    progress_trace *t = data;
    t->calls++;
    cr_assert(progress >= t->last && progress <= 1.0f, "progress %g after %g", (double)progress, (double)t->last);
    t->last = progress;
    t->ones += progress == 1.0f;
    return t->calls != t->stop_at;
}

static jamba_model_params tracked(progress_trace *t, bool int8) {
    jamba_model_params mp = jamba_model_default_params();
    mp.progress = track;
    mp.progress_data = t;
    if (int8)
        mp.experts = mp.mlp = JAMBA_FORMAT_INT8;
    return mp;
}

JB_TEST(callbacks, progress_rises_to_one_exactly_once) {
    for (int int8 = 0; int8 <= 1; int8++) {
        progress_trace t = {0};
        jamba_model_params mp = tracked(&t, int8);
        jamba_model_free(load(MODEL, &mp));
        cr_assert_eq(t.ones, 1, "int8 %d", int8);
        cr_assert_gt(t.calls, 3, "int8 %d: %d calls", int8, t.calls);
    }
}

JB_TEST(callbacks, progress_cancels_the_load_at_any_call) {
    progress_trace probe = {0};
    jamba_model_params mp = tracked(&probe, true);
    jamba_model_free(load(MODEL, &mp));
    for (int stop = 1; stop <= probe.calls; stop++) { /* the first call, each check, each conversion piece, 1.0 */
        progress_trace t = {.stop_at = stop};
        mp = tracked(&t, true);
        char *dir = tu_fixture(MODEL);
        jamba_model *m = (jamba_model *)1;
        jamba_error err = {0};
        cr_assert_eq(jamba_model_load(dir, &mp, &m, &err), JAMBA_ERR_ABORTED, "stop at call %d", stop);
        cr_assert_null(m);
        cr_assert(strstr(err.message, "cancelled") != NULL, "%s", err.message);
        free(dir);
    }
}
