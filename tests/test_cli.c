/*
 * test_cli.c — the `jamba` program end to end: the Jamba-Mini figures, JSON output, help and usage
 * errors, and corrupted checkpoints (one clear line on stderr, exit 1, never a crash).
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/reference.h"
#include "tests/support/testutil.h"

#define MINI JB_SOURCE_DIR "/models/configs/jamba-1.5-mini"

static int run(const char *const argv[], char **out, char **err) { return tu_run(argv, out, err); }

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

JB_TEST(cli, inspect_jamba_mini_figures) {
    char *out, *err;
    int rc = run((const char *[]){JB_CLI_PATH, "inspect", "--model", MINI, "--ctx", "262144", NULL}, &out, &err);
    cr_assert_eq(rc, 0, "stderr: %s", err);
    cr_assert(strstr(out, "51,570,323,328 total") != NULL, "%s", out);
    cr_assert(strstr(out, "12,110,311,296 active") != NULL, "%s", out);
    cr_assert(strstr(out, "KV cache           4,294,967,296 bytes      4.00 GiB") != NULL, "%s", out);
    cr_assert(strstr(out, "16,384 bytes per token") != NULL, "%s", out);
    cr_assert(strstr(out, "layer map    Md ME Md ME Ad ME Md ME") != NULL, "%s", out);
    cr_assert(strstr(out, "262,144 tokens x 1 sequence") != NULL, "%s", out);
    cr_assert_str_eq(err, "");
    free(out);
    free(err);
}

JB_TEST(cli, ctx_suffixes_and_sequences) {
    char *out, *err;
    int rc = run((const char *[]){JB_CLI_PATH, "inspect", "--model", MINI, "--ctx", "256k", "--seqs", "2", NULL},
                 &out, &err);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert(strstr(out, "8,589,934,592 bytes") != NULL, "two sequences of 4 GiB: %s", out);
    free(out);
    free(err);
}

JB_TEST(cli, inspect_json) {
    char *out, *err;
    int rc = run((const char *[]){JB_CLI_PATH, "inspect", "--model", MINI, "--ctx", "262144", "--json", NULL}, &out,
                 &err);
    cr_assert_eq(rc, 0, "%s", err);
    json_error_t jerr;
    json_t *root = json_loads(out, 0, &jerr);
    cr_assert_not_null(root, "%s: %s", jerr.text, out);
    json_t *params = json_object_get(root, "parameters"), *mem = json_object_get(root, "memory");
    cr_assert_eq(json_integer_value(json_object_get(params, "total")), 51570323328ll);
    cr_assert_eq(json_integer_value(json_object_get(params, "active")), 12110311296ll);
    cr_assert_eq(json_integer_value(json_object_get(mem, "kv_bytes")), 4294967296ll);
    cr_assert_eq(json_array_size(json_object_get(root, "layers")), 32);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(root, "layers"), 4), "mixer")),
                     "attention");
    json_decref(root);
    free(out);
    free(err);
}

JB_TEST(cli, inspect_checkpoint_with_tensor_list) {
    char *out, *err;
    char *dir = tu_fixture("models/tiny-hf-sharded");
    int rc = run((const char *[]){JB_CLI_PATH, "inspect", "--model", dir, "--tensors", "--check-finite", NULL}, &out,
                 &err);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert(strstr(out, "F32                       85,036 bytes") != NULL, "%s", out);
    cr_assert(strstr(out, "model.layers.3.feed_forward.experts.3.down_proj.weight") != NULL);
    cr_assert(strstr(out, "model-00017-of-00017.safetensors") != NULL);
    free(out);
    free(err);
    free(dir);
}

JB_TEST(cli, help_and_version) {
    static const char *const cmds[][3] = {{"--help", NULL, NULL},       {"inspect", "--help", NULL},
                                          {"devices", "--help", NULL},  {"score", "--help", NULL},
                                          {"generate", "--help", NULL}, {"chat", "--help", NULL},
                                          {"tokenize", "--help", NULL}, {"detokenize", "--help", NULL}};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        char *out, *err;
        int rc = run((const char *[]){JB_CLI_PATH, cmds[i][0], cmds[i][1], NULL}, &out, &err);
        cr_assert_eq(rc, 0);
        cr_assert(strstr(out, "usage: jamba") != NULL, "%s", out);
        free(out);
        free(err);
    }
    char *out, *err;
    cr_assert_eq(run((const char *[]){JB_CLI_PATH, "--version", NULL}, &out, &err), 0);
    cr_assert(strstr(out, JAMBA_VERSION_STRING) != NULL);
    free(out);
    free(err);
}

JB_TEST(cli, usage_errors_exit_2) {
    const char *const *cases[] = {
        (const char *[]){JB_CLI_PATH, NULL},
        (const char *[]){JB_CLI_PATH, "frobnicate", NULL},
        (const char *[]){JB_CLI_PATH, "inspect", NULL},
        (const char *[]){JB_CLI_PATH, "inspect", "--model", NULL},
        (const char *[]){JB_CLI_PATH, "inspect", "--model", MINI, "--ctx", "0", NULL},
        (const char *[]){JB_CLI_PATH, "inspect", "--model", MINI, "--ctx", "-5", NULL},
        (const char *[]){JB_CLI_PATH, "inspect", "--model", MINI, "--ctx", "12q", NULL},
        (const char *[]){JB_CLI_PATH, "inspect", "--model", MINI, "--ctx", "99999999999999999999", NULL},
        (const char *[]){JB_CLI_PATH, "inspect", "--model", MINI, "--kv-dtype", "int4", NULL},
        (const char *[]){JB_CLI_PATH, "inspect", "--model", MINI, "--bogus", NULL},
        (const char *[]){JB_CLI_PATH, "devices", "--bogus", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out, *err;
        int rc = run(cases[i], &out, &err);
        cr_expect_eq(rc, 2, "case %zu: rc %d, stderr %s", i, rc, err);
        cr_expect_str_empty(out, "case %zu", i);
        cr_expect_gt(strlen(err), 0);
        free(out);
        free(err);
    }
}

/* One line on stderr naming the problem, nothing on stdout, exit status 1. */
static void expect_clean_failure(const char *dir, const char *needle) {
    char *out, *err;
    int rc = run((const char *[]){JB_CLI_PATH, "inspect", "--model", dir, NULL}, &out, &err);
    cr_expect_eq(rc, 1, "rc %d (signal = -1), stderr: %s", rc, err);
    cr_expect_str_empty(out);
    cr_expect_eq(count_lines(err), 1, "stderr: %s", err);
    cr_expect(strncmp(err, "jamba: error: ", 14) == 0, "%s", err);
    if (needle)
        cr_expect(strstr(err, needle) != NULL, "'%s' should contain '%s'", err, needle);
    free(out);
    free(err);
}

JB_TEST(cli, corrupted_checkpoints_fail_with_one_line) {
    char *src = tu_fixture("models/tiny-hf");
    char *dir = tu_clone_model(src);
    char *file = tu_path(dir, "model.safetensors");
    size_t n;
    uint8_t *orig = tu_read_file(file, &n);
    /* truncation across the header and into the data */
    static const size_t cuts[] = {0, 4, 8, 9, 100, 1000, 3000, 5000};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        tu_write_file(file, orig, cuts[i]);
        expect_clean_failure(dir, "model.safetensors");
    }
    tu_write_file(file, orig, n - 1);
    expect_clean_failure(dir, "truncated file");
    /* header corruption: a brace, a quote, a digit of an offset */
    const char *pos = strstr((const char *)orig + 8, "data_offsets");
    static const char *const needles[] = {"invalid JSON", NULL, NULL};
    size_t offsets[] = {8, 9, (size_t)((const uint8_t *)pos - orig) + 16};
    for (size_t i = 0; i < 3; i++) {
        uint8_t *bad = malloc(n);
        memcpy(bad, orig, n);
        bad[offsets[i]] ^= 0x5a;
        tu_write_file(file, bad, n);
        expect_clean_failure(dir, needles[i]);
        free(bad);
    }
    tu_write_file(file, orig, n);
    char *cfg = tu_path(dir, "config.json");
    tu_write_text(cfg, "{\"model_type\": \"jamba\", \"hidden_size\": 16,");
    expect_clean_failure(dir, "config.json: invalid JSON");
    tu_rmtree(dir);
    free(cfg);
    free(orig);
    free(file);
    free(dir);
    free(src);
    expect_clean_failure("/no/such/model", "/no/such/model");
}

JB_TEST(cli, devices_runs_without_a_gpu) {
    char *out, *err;
    int rc = run((const char *[]){JB_CLI_PATH, "devices", NULL}, &out, &err);
    cr_assert(rc == 0 || strstr(err, "kernels") != NULL, "rc %d: %s", rc, err);
    cr_assert(strstr(out, "cuda backend") != NULL, "%s", out);
    cr_assert(strstr(out, "devices") != NULL, "%s", out);
    free(out);
    free(err);
}

JB_TEST(cli, score_matches_reference_logits) {
    ref_file ref;
    ref_open(&ref, "mini");
    int64_t shape[8];
    const int64_t *ids = ref_i64(&ref, "input_ids", shape);
    const int64_t T = shape[0];
    const float *want = ref_f32(&ref, "logits", shape);
    const int64_t V = shape[1];
    char list[1024] = "";
    for (int64_t t = 0; t < T; t++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%lld", t ? "," : "", (long long)ids[t]);
    char *dir = tu_tmpdir();
    char *dump = tu_path(dir, "logits.safetensors");
    char *model = tu_fixture("forward/mini/model");
    char *out, *err;
    int rc = run((const char *[]){JB_CLI_PATH, "score", "--model", model, "--tokens", list, "--json", "--dump-logits",
                                  dump, "--batch", "7", "--threads", "2", NULL},
                 &out, &err);
    cr_assert_eq(rc, 0, "%s", err);
    /* the dumped logits are the reference's, position by position */
    jb_st_file f;
    jamba_error jerr = {0};
    cr_assert_eq(jb_st_open(dump, dump, &f, &jerr), JAMBA_OK, "%s", jerr.message);
    cr_assert_eq(f.n_tensors, 1);
    cr_assert_str_eq(f.tensors[0].name, "logits");
    cr_assert_eq(f.tensors[0].shape[0], T);
    cr_assert_eq(f.tensors[0].shape[1], V);
    const float *got = jb_st_tensor_data(&f, &f.tensors[0]);
    for (int64_t t = 0; t < T; t++)
        cr_expect_leq(rel_l2(got + t * V, want + t * V, V), REF_TOL, "position %lld", (long long)t);
    /* the mean NLL is the reference logits' cross-entropy on the next tokens */
    double nll = 0;
    for (int64_t t = 0; t + 1 < T; t++) {
        double mx = want[t * V], sum = 0;
        for (int64_t v = 1; v < V; v++)
            mx = want[t * V + v] > mx ? want[t * V + v] : mx;
        for (int64_t v = 0; v < V; v++)
            sum += exp(want[t * V + v] - mx);
        nll -= want[t * V + ids[t + 1]] - mx - log(sum);
    }
    nll /= (double)(T - 1);
    json_t *root = json_loads(out, 0, NULL);
    cr_assert_not_null(root, "%s", out);
    cr_assert_float_eq(json_real_value(json_object_get(root, "mean_nll")), nll, 1e-5);
    cr_assert_eq(json_array_size(json_object_get(root, "positions")), (size_t)(T - 1));
    json_decref(root);
    jb_st_close(&f);
    free(out);
    free(err);
    /* text form */
    rc = run((const char *[]){JB_CLI_PATH, "score", "--model", model, "--tokens", "3, 4,5", NULL}, &out, &err);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert(strstr(out, "tokens 3, predicted 2, mean NLL") != NULL, "%s", out);
    cr_assert_eq(count_lines(out), 3);
    free(out);
    free(err);
    tu_rmtree(dir);
    free(model);
    free(dump);
    free(dir);
    ref_close(&ref);
}

JB_TEST(cli, score_errors) {
    char *model = tu_fixture("forward/mini/model");
    char *out, *err;
    /* a token outside the vocabulary: one clear line, exit 1 */
    int rc = run((const char *[]){JB_CLI_PATH, "score", "--model", model, "--tokens", "1,999", NULL}, &out, &err);
    cr_assert_eq(rc, 1, "%s", err);
    cr_assert(strstr(err, "999, outside the vocabulary") != NULL, "%s", err);
    cr_assert_eq(count_lines(err), 1);
    free(out);
    free(err);
    static const char *const bad_lists[] = {"", "1,,2", "1;2", "-1", "x", "1,2,"};
    for (size_t i = 0; i < sizeof bad_lists / sizeof bad_lists[0]; i++) {
        rc = run((const char *[]){JB_CLI_PATH, "score", "--model", model, "--tokens", bad_lists[i], NULL}, &out, &err);
        cr_expect_eq(rc, 2, "'%s': rc %d", bad_lists[i], rc);
        free(out);
        free(err);
    }
    rc = run((const char *[]){JB_CLI_PATH, "score", "--tokens", "1", NULL}, &out, &err);
    cr_assert_eq(rc, 2);
    free(out);
    free(err);
    /* a planning-only folder has nothing to run */
    rc = run((const char *[]){JB_CLI_PATH, "score", "--model", MINI, "--tokens", "1,2", NULL}, &out, &err);
    cr_assert_eq(rc, 1);
    cr_assert(strstr(err, "model.safetensors") != NULL, "%s", err);
    free(out);
    free(err);
    free(model);
}

#define CHAT_MODEL JB_FIXTURES_DIR "/tokenizers/sp-chat"

/* Two turns: the second turn reads only its own tokens (the conversation stays in the sequence). */
JB_TEST(cli, chat_keeps_the_conversation_in_state) {
    char *out, *err;
    int rc = tu_run_input((const char *[]){JB_CLI_PATH, "chat", "--model", CHAT_MODEL, "--system", "Be brief.",
                                           "--max-tokens", "5", "--temperature", "0", "--threads", "1", NULL},
                          "Hello there\n\nHow are you?\n", &out, &err);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert_eq(count_lines(out), 2, "one reply per turn: %s", out);
    jamba_tokenizer *t = NULL;
    cr_assert_eq(jamba_tokenizer_load(CHAT_MODEL, &t, NULL), JAMBA_OK);
    jamba_chat_message first[2] = {{"system", "Be brief."}, {"user", "Hello there"}}, second = {"user", "How are you?"};
    int32_t ids[256];
    int64_t n1, n2;
    cr_assert_eq(jamba_chat_tokenize(t, first, 2, JAMBA_CHAT_GENERATION_PROMPT, ids, 256, &n1, NULL), JAMBA_OK);
    cr_assert_eq(jamba_chat_tokenize(t, &second, 1, JAMBA_CHAT_GENERATION_PROMPT | JAMBA_CHAT_CONTINUE, ids, 256, &n2,
                                     NULL),
                 JAMBA_OK);
    char want[64];
    snprintf(want, sizeof want, "prompt tokens %lld,", (long long)(n1 + n2));
    cr_assert(strstr(err, want) != NULL, "expected '%s' in: %s", want, err);
    jamba_tokenizer_free(t);
    free(out);
    free(err);
}

JB_TEST(cli, generate_chat_flag_and_errors) {
    char *out, *err;
    int rc = tu_run((const char *[]){JB_CLI_PATH, "generate", "--model", CHAT_MODEL, "--chat", "--prompt", "Hi",
                                     "--max-tokens", "4", "--threads", "1", NULL},
                    &out, &err);
    cr_assert_eq(rc, 0, "%s", err);
    free(out);
    free(err);
    /* the demo model has no chat tokens */
    rc = tu_run((const char *[]){JB_CLI_PATH, "generate", "--chat", "--prompt", "Hi", NULL}, &out, &err);
    cr_assert_eq(rc, 1);
    cr_assert(strstr(err, "no Jamba chat tokens") != NULL, "%s", err);
    free(out);
    free(err);
    /* but chat talks with it as a plain transcript (tools/jamba/chat_format.h), two turns here */
    rc = tu_run_input((const char *[]){JB_CLI_PATH, "chat", "--max-tokens", "8", "--threads", "1", NULL},
                      "Who art thou?\nSpeak again.\n", &out, &err);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert(strstr(err, "plain transcript") != NULL, "%s", err);
    cr_assert(strlen(out) > 0, "%s", err);
    free(out);
    free(err);
    /* a prompt longer than --ctx */
    rc = tu_run((const char *[]){JB_CLI_PATH, "generate", "--prompt", "one two three four five", "--ctx", "3", NULL},
                &out, &err);
    cr_assert_eq(rc, 1);
    cr_assert(strstr(err, "leaves no room") != NULL, "%s", err);
    free(out);
    free(err);
    /* stop strings end the text before them */
    rc = tu_run((const char *[]){JB_CLI_PATH, "generate", "--model", CHAT_MODEL, "--prompt", "x", "--max-tokens", "40",
                                 "--temperature", "0", "--stop", "e", "--no-echo", "--threads", "1", NULL},
                &out, &err);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert_null(strchr(out, 'e'), "stop string printed: %s", out);
    free(out);
    free(err);
}
