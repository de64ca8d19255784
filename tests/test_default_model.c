/*
 * test_default_model.c — where `jamba` finds its model without --model (tools/jamba/default_model.c):
 * $JAMBA_MODEL first, then the demo model of an installed layout (<prefix>/bin/jamba beside
 * <prefix>/share/jamba/models/demo), then models/demo in the nearest folder above the binary (a build tree),
 * and otherwise an error naming every place tried. The built binary is copied into temporary folders, so
 * nothing depends on where the source tree is. (The temporary folders are assumed not to lie inside a
 * folder that has a models/demo of its own.)
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/support/testutil.h"

#define DEMO JB_SOURCE_DIR "/models/demo"

/* Create base/rel folder by folder ("a/b/c"); returns its path (caller frees). */
static char *make_dirs(const char *base, const char *rel) {
    char *dir = strdup(base), *parts = strdup(rel), *save = NULL;
    for (char *name = strtok_r(parts, "/", &save); name; name = strtok_r(NULL, "/", &save)) {
        char *next = tu_path(dir, name);
        cr_assert_eq(mkdir(next, 0755), 0, "mkdir %s", next);
        free(dir);
        dir = next;
    }
    free(parts);
    return dir;
}

/* A copy of the built `jamba` as base/rel/jamba; returns its path (caller frees). */
static char *copy_cli(const char *base, const char *rel) {
    char *dir = make_dirs(base, rel);
    char *exe = tu_path(dir, "jamba");
    size_t n;
    uint8_t *bytes = tu_read_file(JB_CLI_PATH, &n);
    tu_write_file(exe, bytes, n);
    cr_assert_eq(chmod(exe, 0755), 0, "chmod %s", exe);
    free(bytes);
    free(dir);
    return exe;
}

/* A copy of the demo model as base/rel. */
static void copy_demo(const char *base, const char *rel) {
    char *dir = make_dirs(base, rel);
    tu_copy_dir(DEMO, dir);
    free(dir);
}

/* `exe generate --prompt ROMEO: --max-tokens 4` without --model: the exit status, and *out / *err. */
static int generate(const char *exe, char **out, char **err) {
    const char *const argv[] = {exe, "generate", "--prompt", "ROMEO:", "--max-tokens", "4", "--threads", "2", NULL};
    return tu_run(argv, out, err);
}

/* `exe` generates without --model, and the same text as the built CLI given --model models/demo. */
static void expect_demo_text(const char *exe) {
    char *out, *err, *want, *want_err;
    int rc = generate(exe, &out, &err);
    cr_assert_eq(rc, 0, "%s: %s", exe, err);
    rc = tu_run((const char *[]){JB_CLI_PATH, "generate", "--model", DEMO, "--prompt", "ROMEO:", "--max-tokens", "4",
                                 "--threads", "2", NULL},
                &want, &want_err);
    cr_assert_eq(rc, 0, "%s", want_err);
    cr_expect(strncmp(out, "ROMEO:", 6) == 0, "%s", out);
    cr_expect_str_eq(out, want, "%s: not the demo model's text", exe);
    free(out);
    free(err);
    free(want);
    free(want_err);
}

JB_TEST(default_model, installed_layout_finds_share_jamba_models_demo) {
    cr_assert_eq(unsetenv("JAMBA_MODEL"), 0);
    char *prefix = tu_tmpdir();
    char *exe = copy_cli(prefix, "bin");
    copy_demo(prefix, "share/jamba/models/demo");
    expect_demo_text(exe);
    tu_rmtree(prefix);
    free(exe);
    free(prefix);
}

JB_TEST(default_model, build_tree_finds_models_demo_above_the_binary) {
    cr_assert_eq(unsetenv("JAMBA_MODEL"), 0);
    char *root = tu_tmpdir();
    char *exe = copy_cli(root, "build/cpu");
    copy_demo(root, "models/demo");
    expect_demo_text(exe);
    tu_rmtree(root);
    free(exe);
    free(root);
}

JB_TEST(default_model, jamba_model_overrides) {
    char *prefix = tu_tmpdir();
    char *exe = copy_cli(prefix, "bin");
    copy_demo(prefix, "share/jamba/models/demo");
    /* before the installed model: a missing folder there is an error naming it */
    char *missing = tu_path(prefix, "no-such-model");
    cr_assert_eq(setenv("JAMBA_MODEL", missing, 1), 0);
    char *out, *err;
    int rc = generate(exe, &out, &err);
    cr_assert_eq(rc, 1, "%s", out);
    cr_expect(strstr(err, missing) != NULL, "%s", err);
    free(out);
    free(err);
    /* and a binary with no model of its own anywhere runs the one it names */
    char *lone = copy_cli(prefix, "elsewhere");
    cr_assert_eq(setenv("JAMBA_MODEL", DEMO, 1), 0);
    expect_demo_text(lone);
    tu_rmtree(prefix);
    free(lone);
    free(missing);
    free(exe);
    free(prefix);
}

JB_TEST(default_model, none_found_says_what_was_tried) {
    cr_assert_eq(unsetenv("JAMBA_MODEL"), 0);
    char *prefix = tu_tmpdir();
    char *exe = copy_cli(prefix, "bin");
    char *out, *err;
    int rc = generate(exe, &out, &err);
    cr_assert_eq(rc, 1, "%s", out);
    char *bin = tu_path(prefix, "bin");
    const char *const tried[] = {"no default model found", "$JAMBA_MODEL is not set", bin,
                                 "../share/jamba/models/demo", "models/demo", "or any folder above it",
                                 "--model DIR"};
    for (size_t i = 0; i < sizeof tried / sizeof tried[0]; i++)
        cr_expect(strstr(err, tried[i]) != NULL, "'%s' should name '%s'", err, tried[i]);
    free(out);
    free(err);
    tu_rmtree(prefix);
    free(bin);
    free(exe);
    free(prefix);
}
