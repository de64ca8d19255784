/*
 * test_demo.c — the bundled demo model (models/demo) against transformers: the perplexity of a held-out
 * Tiny Shakespeare excerpt scored as one sequence (relative difference at most 1e-4) and a 64-token greedy
 * continuation of a fixed prompt, both recorded by tools/train_demo.py in models/demo/reference.json; and
 * `jamba generate` printing that continuation.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/reference.h"
#include "tests/support/testutil.h"

#define DEMO JB_SOURCE_DIR "/models/demo"
#define SHAKESPEARE JB_SOURCE_DIR "/tests/data/tinyshakespeare.txt"

static json_t *reference(void) {
    json_error_t jerr;
    json_t *root = json_load_file(DEMO "/reference.json", 0, &jerr);
    cr_assert_not_null(root, "models/demo/reference.json: %s", jerr.text);
    return root;
}

static jamba_model *load_demo(void) {
    jamba_model *m = NULL;
    jamba_error err = {0};
    cr_assert_eq(jamba_model_load(DEMO, NULL, &m, &err), JAMBA_OK, "%s", err.message);
    return m;
}

/* `jamba score --file` on the excerpt (cut from tests/data/tinyshakespeare.txt into a temporary file). */
Test(demo, heldout_perplexity_matches_transformers, .timeout = 900) {
    json_t *ref = reference();
    json_t *ex = json_object_get(ref, "excerpt");
    const int64_t offset = json_integer_value(json_object_get(json_object_get(ref, "data"), "train_chars"));
    const int64_t chars = json_integer_value(json_object_get(ex, "chars"));
    size_t len;
    uint8_t *text = tu_read_file(SHAKESPEARE, &len);
    cr_assert_leq(offset + chars, (int64_t)len);
    char *dir = tu_tmpdir();
    char *path = tu_path(dir, "heldout.txt");
    tu_write_file(path, text + offset, (size_t)chars);
    char *out, *err;
    int rc = tu_run((const char *[]){JB_CLI_PATH, "score", "--model", DEMO, "--file", path, "--json", "--batch", "256",
                                     "--threads", "2", NULL},
                    &out, &err);
    cr_assert_eq(rc, 0, "%s", err);
    json_t *got = json_loads(out, 0, NULL);
    cr_assert_not_null(got, "%s", out);
    cr_assert_eq(json_integer_value(json_object_get(got, "tokens")), json_integer_value(json_object_get(ex, "tokens")));
    double ppl = json_real_value(json_object_get(got, "perplexity"));
    double want = exp(json_real_value(json_object_get(ex, "mean_nll")));
    cr_log_info("held-out excerpt: perplexity %.6f (transformers %.6f)", ppl, want);
    cr_assert_leq(fabs(ppl - want) / want, 1e-4, "perplexity %.6f vs %.6f", ppl, want);
    json_decref(got);
    free(out);
    free(err);
    tu_rmtree(dir);
    free(path);
    free(dir);
    free(text);
    json_decref(ref);
    JB_CHECK_LEAKS();
}

JB_TEST(demo, greedy_continuation_matches_transformers) {
    json_t *ref = reference();
    json_t *g = json_object_get(ref, "greedy");
    json_t *prompt = json_object_get(g, "prompt_ids"), *want = json_object_get(g, "tokens");
    int64_t n = (int64_t)json_array_size(prompt), steps = (int64_t)json_array_size(want);
    int32_t ids[256];
    for (int64_t i = 0; i < n; i++)
        ids[i] = (int32_t)json_integer_value(json_array_get(prompt, (size_t)i));
    /* the prompt ids are what our tokenizer makes of the prompt text, too */
    jamba_tokenizer *tok = NULL;
    cr_assert_eq(jamba_tokenizer_load(DEMO, &tok, NULL), JAMBA_OK);
    const char *text = json_string_value(json_object_get(g, "prompt"));
    int32_t mine[256];
    int64_t k = 0;
    cr_assert_eq(jamba_tokenize(tok, text, strlen(text), JAMBA_TOKENIZE_ADD_SPECIAL, mine, 256, &k, NULL), JAMBA_OK);
    cr_assert_eq(k, n);
    cr_assert_eq(memcmp(mine, ids, (size_t)n * sizeof *ids), 0);
    jamba_model *m = load_demo();
    const int64_t V = jamba_model_config(m)->vocab_size;
    jamba_context *ctx = ref_context(m, 1, n + steps + 1, 64, 2);
    jamba_seq_input in = {0, ids, n, JAMBA_LOGITS_LAST};
    int32_t out[256];
    for (int64_t s = 0; s < steps; s++) {
        cr_assert_eq(jamba_decode(ctx, &in, 1, NULL), JAMBA_OK);
        const float *l = jamba_logits(ctx, 0, NULL);
        int32_t best = 0;
        for (int64_t v = 1; v < V; v++)
            if (l[v] > l[best])
                best = (int32_t)v;
        out[s] = best;
        cr_assert_eq(best, json_integer_value(json_array_get(want, (size_t)s)), "greedy step %lld", (long long)s);
        in = (jamba_seq_input){0, &out[s], 1, JAMBA_LOGITS_LAST};
    }
    char text_out[4096];
    size_t len;
    cr_assert_eq(jamba_detokenize(tok, out, steps, false, text_out, sizeof text_out, &len, NULL), JAMBA_OK);
    cr_assert_str_eq(text_out, json_string_value(json_object_get(g, "text")));
    jamba_context_free(ctx);
    jamba_model_free(m);
    jamba_tokenizer_free(tok);
    json_decref(ref);
}

JB_TEST(demo, generate_command_prints_the_greedy_text) {
    json_t *ref = reference();
    json_t *g = json_object_get(ref, "greedy");
    char steps[16];
    snprintf(steps, sizeof steps, "%zu", json_array_size(json_object_get(g, "tokens")));
    char *out, *err;
    int rc = tu_run((const char *[]){JB_CLI_PATH, "generate", "--prompt", json_string_value(json_object_get(g, "prompt")),
                                     "--temperature", "0", "--max-tokens", steps, "--no-echo", "--threads", "2", NULL},
                    &out, &err);
    cr_assert_eq(rc, 0, "%s", err);
    const char *want = json_string_value(json_object_get(g, "text"));
    cr_assert(strncmp(out, want, strlen(want)) == 0, "generate printed:\n%s\nreference:\n%s", out, want);
    cr_assert(strstr(err, "prompt tokens") != NULL && strstr(err, "decode") != NULL && strstr(err, "peak memory"),
              "statistics on stderr: %s", err);
    free(out);
    free(err);
    /* sampling is reproducible from the seed */
    char *a, *b, *e1, *e2;
    const char *argv_a[] = {JB_CLI_PATH, "generate", "--prompt", "KING:", "--max-tokens", "24", "--seed", "7",
                            "--threads", "1", NULL};
    cr_assert_eq(tu_run(argv_a, &a, &e1), 0, "%s", e1);
    cr_assert_eq(tu_run(argv_a, &b, &e2), 0, "%s", e2);
    cr_assert_str_eq(a, b);
    cr_assert(strncmp(a, "KING:", 5) == 0, "the prompt is echoed: %s", a);
    free(a);
    free(b);
    free(e1);
    free(e2);
    json_decref(ref);
}

JB_TEST(demo, score_file_and_compare_models) {
    json_t *ref = reference();
    char *dir = tu_tmpdir();
    char *path = tu_path(dir, "text.txt");
    tu_write_text(path, "First Citizen:\nBefore we proceed any further, hear me speak.\n");
    char *out, *err;
    int rc = tu_run((const char *[]){JB_CLI_PATH, "score", "--model", DEMO, "--model", DEMO, "--file", path,
                                     "--threads", "2", NULL},
                    &out, &err);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert(strstr(out, "perplexity") != NULL && strstr(out, "bits/byte") != NULL, "%s", out);
    int lines = 0;
    for (const char *p = out; *p; p++)
        lines += *p == '\n';
    cr_assert_eq(lines, 3, "a header and one row per model: %s", out);
    free(out);
    free(err);
    rc = tu_run((const char *[]){JB_CLI_PATH, "score", "--model", DEMO, "--file", path, "--json", NULL}, &out, &err);
    cr_assert_eq(rc, 0, "%s", err);
    json_t *j = json_loads(out, 0, NULL);
    cr_assert_not_null(j, "%s", out);
    cr_assert_gt(json_integer_value(json_object_get(j, "tokens")), 10);
    cr_assert_eq(json_array_size(json_object_get(j, "positions")),
                 (size_t)json_integer_value(json_object_get(j, "tokens")) - 1);
    json_decref(j);
    free(out);
    free(err);
    tu_rmtree(dir);
    free(path);
    free(dir);
    json_decref(ref);
}
