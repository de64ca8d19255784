/*
 * test_quantize_cli.c — `jamba quantize` end to end: the folder it writes lists its experts as I8 with
 * scales, and loads and generates like --experts int8 on the original.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/quantize_util.h"
#include "tests/support/testutil.h"

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
    rc = tu_run((const char *[]){JB_CLI_PATH, "generate", "--model", out_dir, "--prompt", "ROMEO:", "--temperature",
                                 "0", "--max-tokens", "16", "--threads", "2", NULL},
                &out, &err);
    cr_assert_eq(rc, 0, "%s", err);
    char *out2, *err2;
    rc = tu_run((const char *[]){JB_CLI_PATH, "generate", "--model", QU_DEMO, "--experts", "int8", "--prompt",
                                 "ROMEO:", "--temperature", "0", "--max-tokens", "16", "--threads", "2", NULL},
                &out2, &err2);
    cr_assert_eq(rc, 0, "%s", err2);
    cr_expect_str_eq(out, out2);
    free(out);
    free(err);
    free(out2);
    free(err2);
    tu_rmtree(tmp);
    free(out_dir);
    free(tmp);
}
