/*
 * test_quantize_cli.c — `jamba quantize` end to end: the folder it writes lists its experts as I8 with
 * scales, and loads and generates like --experts int8 on the original.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/quantize_util.h"
#include "tests/support/testutil.h"

/* `jamba generate` (greedy, 16 tokens) on the folder `dir` as it is and on the original demo with the load
 * options `a` `b` print the same text. */
static void expect_generates_alike(const char *dir, const char *a, const char *b) {
    char *out, *err, *out2, *err2;
    int rc = tu_run((const char *[]){JB_CLI_PATH, "generate", "--model", dir, "--prompt", "ROMEO:", "--temperature",
                                     "0", "--max-tokens", "16", "--threads", "2", NULL},
                    &out, &err);
    cr_assert_eq(rc, 0, "%s", err);
    rc = tu_run((const char *[]){JB_CLI_PATH, "generate", "--model", QU_DEMO, a, b, "--prompt", "ROMEO:",
                                 "--temperature", "0", "--max-tokens", "16", "--threads", "2", NULL},
                &out2, &err2);
    cr_assert_eq(rc, 0, "%s", err2);
    cr_expect_str_eq(out, out2, "%s vs the original with %s %s", dir, a, b);
    free(out);
    free(err);
    free(out2);
    free(err2);
}

JB_TEST(cli, quantize_then_inspect_shows_int8) {
    char *tmp = tu_tmpdir();
    char *out_dir = tu_path(tmp, "q");
    char *out, *err;
    int rc = tu_run((const char *[]){JB_CLI_PATH, "quantize", "--model", QU_DEMO, "--out", out_dir, "--threads", "2",
                                     NULL},
                    &out, &err);
    cr_assert_eq(rc, 0, "%s", err);
    cr_expect(strstr(out, "wrote") != NULL, "%s", out);
    free(out);
    free(err);
    rc = tu_run((const char *[]){JB_CLI_PATH, "inspect", "--model", out_dir, "--tensors", NULL}, &out, &err);
    cr_assert_eq(rc, 0, "%s", err);
    cr_expect(strstr(out, "I8                     2,949,120 bytes") != NULL, "the experts' bytes as I8:\n%s", out);
    cr_expect(strstr(out, "in 48 tensors") != NULL, "%s", out);
    const char *line = strstr(out, "model.layers.1.feed_forward.experts.0.gate_proj.weight ");
    cr_assert_not_null(line, "%s", out);
    const char *i8 = strstr(line, " I8 "), *eol = strchr(line, '\n');
    cr_expect(i8 != NULL && eol != NULL && i8 < eol, "the matrix is listed as I8: %.*s", (int)(eol - line), line);
    cr_expect(strstr(out, "model.layers.1.feed_forward.experts.0.gate_proj.weight_scale ") != NULL, "%s", out);
    free(out);
    free(err);
    /* the folder loads and generates like --experts int8 on the original */
    expect_generates_alike(out_dir, "--experts", "int8");
    tu_rmtree(tmp);
    free(out_dir);
    free(tmp);
}

/* --weights int8 with a group's own option over it (in either order), written by quantize and run by
 * generate alike; the int8 groups named in config.json; a bad format is a usage error naming the option;
 * the CPU-only groups refused on --device cuda naming the option; --help lists the options. */
JB_TEST(cli, weight_group_options) {
    char *tmp = tu_tmpdir();
    char *out_dir = tu_path(tmp, "q");
    char *out, *err;
    int rc = tu_run((const char *[]){JB_CLI_PATH, "quantize", "--model", QU_DEMO, "--out", out_dir, "--weights", "int8",
                                     "--lm-head", "stored", "--threads", "2", NULL},
                    &out, &err);
    cr_assert_eq(rc, 0, "%s", err);
    free(out);
    free(err);
    char *cfg_path = tu_path(out_dir, "config.json");
    char *cfg = qu_read_text(cfg_path);
    cr_expect(strstr(cfg, "\"experts\",\n      \"mlp\",\n      \"mixers\"\n") != NULL, "int8_groups: %s", cfg);
    free(cfg);
    free(cfg_path);
    rc = tu_run((const char *[]){JB_CLI_PATH, "inspect", "--model", out_dir, "--tensors", NULL}, &out, &err);
    cr_assert_eq(rc, 0, "%s", err);
    const struct {
        const char *name, *dtype;
    } rows[] = {{"model.layers.0.mamba.in_proj.weight ", " I8 "},
                {"model.layers.0.mamba.in_proj.weight_scale ", " F32 "},
                {"model.layers.2.self_attn.k_proj.weight ", " I8 "},
                {"model.layers.0.feed_forward.down_proj.weight ", " I8 "},
                {"lm_head.weight ", " BF16 "},
                {"model.embed_tokens.weight ", " BF16 "}};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const char *line = strstr(out, rows[i].name);
        cr_assert_not_null(line, "%s not listed:\n%s", rows[i].name, out);
        const char *eol = strchr(line, '\n'), *d = strstr(line, rows[i].dtype);
        cr_expect(eol != NULL && d != NULL && d < eol, "%s should be%s: %.*s", rows[i].name, rows[i].dtype,
                  (int)(eol ? eol - line : 0), line);
    }
    free(out);
    free(err);
    /* the folder generates as the original with the same options, given in the other order */
    expect_generates_alike(out_dir, "--lm-head=stored", "--weights=int8");

    rc = tu_run((const char *[]){JB_CLI_PATH, "generate", "--model", QU_DEMO, "--mixers", "int4", "--prompt", "A",
                                 NULL},
                &out, &err);
    cr_expect_eq(rc, 2, "%s", err);
    cr_expect(strstr(err, "--mixers int4: expected int8 or stored") != NULL, "%s", err);
    free(out);
    free(err);
    rc = tu_run((const char *[]){JB_CLI_PATH, "generate", "--model", QU_DEMO, "--lm-head", "int8", "--device", "cuda",
                                 "--prompt", "A", NULL},
                &out, &err);
    cr_expect_eq(rc, 1, "%s", err);
    cr_expect(strstr(err, "--lm-head int8") != NULL && strstr(err, "CPU backend only") != NULL, "%s", err);
    free(out);
    free(err);
    static const char *const cmds[] = {"generate", "chat", "score", "serve", "inspect", "quantize"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        rc = tu_run((const char *[]){JB_CLI_PATH, cmds[i], "--help", NULL}, &out, &err);
        cr_expect_eq(rc, 0, "%s --help", cmds[i]);
        cr_expect(strstr(out, "--mixers") && strstr(out, "--lm-head") && strstr(out, "--weights"), "%s --help:\n%s",
                  cmds[i], out);
        free(out);
        free(err);
    }
    tu_rmtree(tmp);
    free(out_dir);
    free(tmp);
}
