/*
 * test_layers.c — the layering check (tools/check_layers.c): the repository itself is clean, and the
 * check fails on what it exists to catch: an upward include, a relative include in a library layer, a
 * circle between modules, a circle in layers.txt, and a file outside every layer.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/support/testutil.h"

#ifndef JB_CHECK_LAYERS_PATH
#error "JB_CHECK_LAYERS_PATH must be defined by the build"
#endif

static const char *LAYERS = "include:\nbase:\nckpt: base\nruntime: ckpt base\ntests: *\n";

/* A small tree: base/a.{c,h}, ckpt/b.{c,h} and ckpt/c.h including base, runtime/r.c including both. */
static char *clean_tree(void) {
    char *root = tu_tmpdir();
    const char *dirs[] = {"include", "base", "ckpt", "runtime", "tests"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        char *d = tu_path(root, dirs[i]);
        cr_assert_eq(mkdir(d, 0755), 0);
        free(d);
    }
    const char *files[][2] = {
        {"layers.txt", LAYERS},
        {"include/pub.h", "int pub(void);\n"},
        {"base/a.h", "#include \"pub.h\"\nint a(void);\n"},
        {"base/a.c", "#include \"base/a.h\"\nint a(void) { return 1; }\n"},
        {"ckpt/b.h", "#include \"base/a.h\"\nint b(void);\n"},
        {"ckpt/b.c", "#include \"ckpt/b.h\"\n#include \"ckpt/c.h\"\n#include <stdio.h>\nint b(void) { return a(); }\n"},
        {"ckpt/c.h", "int c(void);\n"},
        {"runtime/r.c", "#include \"ckpt/b.h\"\n#include \"base/a.h\"\nint r(void) { return b(); }\n"},
        {"tests/t.c", "#include \"runtime/../ckpt/b.h\"\n"},
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char *p = tu_path(root, files[i][0]);
        tu_write_text(p, files[i][1]);
        free(p);
    }
    return root;
}

static int check(const char *root, char **out) {
    char *err = NULL;
    int rc = tu_run((const char *[]){JB_CHECK_LAYERS_PATH, root, NULL}, out, &err);
    free(err);
    return rc;
}

static void put(const char *root, const char *rel, const char *text) {
    char *p = tu_path(root, rel);
    tu_write_text(p, text);
    free(p);
}

JB_TEST(layers, the_repository_is_clean) {
    char *out = NULL;
    int rc = check(JB_SOURCE_DIR, &out);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert(strstr(out, " 0 violations") != NULL, "%s", out);
    free(out);
}

JB_TEST(layers, a_clean_tree_passes) {
    char *root = clean_tree(), *out = NULL;
    cr_assert_eq(check(root, &out), 0, "%s", out);
    free(out);
    tu_rmtree(root);
    free(root);
}

/* A clean tree with `rel` replaced by `text` (and `dir` made first when not NULL) must fail the check
 * with `needle` in its report. */
static void expect_violation(const char *dir, const char *rel, const char *text, const char *needle) {
    char *root = clean_tree(), *out = NULL;
    if (dir) {
        char *d = tu_path(root, dir);
        cr_assert_eq(mkdir(d, 0755), 0);
        free(d);
    }
    put(root, rel, text);
    cr_assert_eq(check(root, &out), 1, "%s", out);
    cr_assert(strstr(out, needle) != NULL, "'%s' should contain '%s'", out, needle);
    free(out);
    tu_rmtree(root);
    free(root);
}

JB_TEST(layers, an_upward_include_fails) {
    expect_violation(NULL, "base/a.c", "#include \"base/a.h\"\n#include \"ckpt/b.h\"\nint a(void) { return 1; }\n",
                     "base/a.c: includes \"ckpt/b.h\": base may not use ckpt");
}

JB_TEST(layers, a_relative_include_in_a_library_fails) {
    expect_violation(NULL, "ckpt/b.c", "#include \"b.h\"\nint b(void) { return 0; }\n",
                     "write includes from the repository root (\"ckpt/b.h\")");
}

JB_TEST(layers, a_circle_between_modules_fails) {
    /* b.c includes c.h; now c.h includes b.h: modules ckpt/b -> ckpt/c -> ckpt/b */
    expect_violation(NULL, "ckpt/c.h", "#include \"ckpt/b.h\"\nint c(void);\n", "circle");
}

JB_TEST(layers, a_circle_in_layers_txt_fails) {
    expect_violation(NULL, "layers.txt", "include:\nbase: ckpt\nckpt: base\nruntime: ckpt base\ntests: *\n",
                     "may include each other");
}

JB_TEST(layers, a_file_outside_every_layer_fails) {
    expect_violation("stray", "stray/x.c", "int x;\n", "stray/x.c: not in any folder of layers.txt");
}
