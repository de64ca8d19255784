/*
 * test_save_atomic.c — jamba_model_save writes a folder whole or not at all: a non-empty destination is
 * refused untouched, replacing is asked for explicitly and replaces the whole folder (no orphaned shards),
 * and a write that fails part-way (a full disk, simulated with RLIMIT_FSIZE) leaves neither the
 * destination nor a temporary folder behind.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "tests/support/quantize_util.h"
#include "tests/support/testutil.h"

/* Entries of a folder other than "." and "..", and how many of them start with `prefix`. */
static int count_entries(const char *dir, const char *prefix, int *with_prefix) {
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "%s", dir);
    int n = 0;
    *with_prefix = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        n++;
        *with_prefix += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    }
    closedir(d);
    return n;
}

JB_TEST(save_atomic, a_non_empty_folder_is_refused_and_replacing_is_whole) {
    jamba_model *m = qu_load_plain(QU_DEMO);
    char *parent = tu_tmpdir(), *out = tu_path(parent, "out");
    cr_assert_eq(mkdir(out, 0755), 0);
    char *orphan = tu_path(out, "model-00002-of-00017.safetensors");
    tu_write_text(orphan, "an old shard");
    jamba_error err = {0};
    cr_assert_eq(jamba_model_save(m, out, &err), JAMBA_ERR_IO);
    cr_assert(strstr(err.message, "not empty") != NULL, "%s", err.message);
    int tmp = 0;
    cr_assert_eq(count_entries(out, "model-", &tmp), 1, "the folder is untouched");
    cr_assert_eq(count_entries(parent, "out.tmp.", &tmp), 1);
    cr_assert_eq(tmp, 0, "no temporary folder is left");
    cr_assert_eq(jamba_model_save_replacing(m, out, &err), JAMBA_OK, "%s", err.message);
    struct stat sb;
    cr_assert_neq(stat(orphan, &sb), 0, "the old folder's files are gone with it");
    jamba_model *back = NULL;
    cr_assert_eq(jamba_model_load(out, NULL, &back, &err), JAMBA_OK, "%s", err.message);
    jamba_model_free(back);
    int old = 0;
    cr_assert_eq(count_entries(parent, "out.", &old), 1, "only `out` remains beside it");
    cr_assert_eq(old, 0);
    jamba_model_free(m);
    tu_rmtree(parent);
    free(orphan);
    free(out);
    free(parent);
}

JB_TEST(save_atomic, a_full_disk_leaves_nothing_behind) {
    jamba_model *m = qu_load_plain(QU_DEMO);
    char *parent = tu_tmpdir(), *out = tu_path(parent, "out");
    /* writes past 1 MiB fail with EFBIG, as a full disk fails with ENOSPC, part-way through the weights */
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit small = {.rlim_cur = 1 << 20, .rlim_max = RLIM_INFINITY};
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &small), 0);
    jamba_error err = {0};
    cr_assert_neq(jamba_model_save(m, out, &err), JAMBA_OK);
    cr_assert(strstr(err.message, "out") != NULL, "the message names the destination: %s", err.message);
    struct rlimit none = {.rlim_cur = RLIM_INFINITY, .rlim_max = RLIM_INFINITY};
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &none), 0);
    int tmp = 0;
    cr_assert_eq(count_entries(parent, "out", &tmp), 0, "neither the destination nor a temporary folder exists");
    /* an existing model folder being replaced stays whole when the replacement fails */
    cr_assert_eq(jamba_model_save(m, out, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &small), 0);
    cr_assert_neq(jamba_model_save_replacing(m, out, &err), JAMBA_OK);
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &none), 0);
    jamba_model *back = NULL;
    cr_assert_eq(jamba_model_load(out, NULL, &back, &err), JAMBA_OK, "the old folder still loads: %s", err.message);
    jamba_model_free(back);
    cr_assert_eq(count_entries(parent, "out", &tmp), 1, "and nothing else is left beside it");
    jamba_model_free(m);
    tu_rmtree(parent);
    free(out);
    free(parent);
}
