/*
 * test_save_atomic.c — jamba_model_save and `jamba quantize` write a folder whole or not at all: a non-empty
 * destination is refused untouched, replacing is asked for explicitly and replaces the whole folder (no
 * orphaned shards), and a write that fails part-way leaves neither a new destination nor a temporary folder
 * behind, and an old destination as it was: a full disk (RLIMIT_FSIZE, and a small tmpfs where one can be
 * mounted), no free inodes or file descriptors (a tmpfs with few inodes, RLIMIT_NOFILE), a read-only
 * destination, SIGINT/SIGTERM during the write, and the abort callback of jamba_model_save_with at each poll.
 */
#define _GNU_SOURCE /* unshare, mount namespaces */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

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

/* The abort callback of jamba_model_save_with, answering true at its k-th poll. */
typedef struct stop_at {
    int polls, stop;
} stop_at;

static bool stop_at_poll(void *data) {
    stop_at *a = data;
    return ++a->polls >= a->stop;
}

/* A save stopped at any of its polls (before writing, between tensors, before each file's sync, before the
 * rename) fails with JAMBA_ERR_ABORTED and leaves the parent folder as it was; one that is never stopped
 * writes a model that loads. */
JB_TEST(save_atomic, a_save_stopped_at_any_poll_leaves_nothing_behind) {
    jamba_model *m = qu_load_plain(QU_DEMO);
    char *parent = tu_tmpdir(), *out = tu_path(parent, "out");
    jamba_error err = {0};
    jamba_save_params sp = jamba_save_default_params();
    sp.abort_fn = stop_at_poll;
    int stop = 1;
    for (;; stop++) {
        stop_at a = {0, stop};
        sp.abort_data = &a;
        const jamba_status st = jamba_model_save_with(m, out, &sp, &err);
        if (st == JAMBA_OK)
            break;
        cr_assert_eq(st, JAMBA_ERR_ABORTED, "poll %d: %s", stop, err.message);
        cr_assert(strstr(err.message, "out") != NULL, "%s", err.message);
        int tmp = 0;
        cr_assert_eq(count_entries(parent, "out", &tmp), 0, "poll %d: something was left behind", stop);
        cr_assert_lt(stop, 10000);
    }
    cr_assert_gt(stop, 5, "polled before the write, between tensors, per file and before the rename (%d)", stop);
    jamba_model *back = NULL;
    cr_assert_eq(jamba_model_load(out, NULL, &back, &err), JAMBA_OK, "%s", err.message);
    jamba_model_free(back);
    jamba_model_free(m);
    tu_rmtree(parent);
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

/* ---- `jamba quantize` under failures ------------------------------------------------------------ */

/* What one run of the CLI did. */
typedef struct cli_run {
    int status; /* exit status, or -1 when a signal ended it */
    char *err;  /* its stderr */
} cli_run;

/* Start `jamba quantize -m DEMO --out OUT [--force]` with an optional resource limit (resource < 0: none);
 * its stderr comes through a pipe, which no RLIMIT_FSIZE limits. */
static tu_child start_quantize(const char *out, bool force, int resource, rlim_t limit) {
    const char *argv[] = {JB_CLI_PATH, "quantize", "-m", QU_DEMO, "--out", out, "-t", "1", force ? "--force" : NULL,
                          NULL};
    return tu_spawn(argv, resource, limit);
}

/* Read its stderr to the end and wait for it. */
static cli_run finish_quantize(tu_child c) {
    cli_run r;
    r.status = tu_child_wait(c, &r.err);
    return r;
}

static cli_run run_quantize(const char *out, bool force, int resource, rlim_t limit) {
    return finish_quantize(start_quantize(out, force, resource, limit));
}

/* The bytes of dir/name (the test fails when it cannot be read); *n its length. */
static uint8_t *file_bytes(const char *dir, const char *name, size_t *n) {
    char *path = tu_path(dir, name);
    uint8_t *b = tu_read_file(path, n);
    free(path);
    return b;
}

/* A model folder written by `jamba quantize` at `out`, to be replaced; its model.safetensors' bytes. */
static uint8_t *existing_folder(const char *out, size_t *n) {
    cli_run r = run_quantize(out, false, -1, 0);
    cr_assert_eq(r.status, 0, "%s", r.err);
    free(r.err);
    return file_bytes(out, "model.safetensors", n);
}

/* The folder at `out` still holds exactly the old model.safetensors, and nothing but `out` is beside it. */
static void expect_old_folder(const char *parent, const char *out, const uint8_t *old, size_t n_old) {
    size_t n = 0;
    uint8_t *now = file_bytes(out, "model.safetensors", &n);
    cr_expect(n == n_old && memcmp(now, old, n) == 0, "the old folder's weights are unchanged");
    free(now);
    int with_out = 0;
    count_entries(parent, "out", &with_out);
    cr_expect_eq(with_out, 1, "no temporary or moved-aside folder is left beside %s", out);
}

/* A failed run: exit status 1, one "jamba: error:" line naming the destination, nothing new beside it. */
static void expect_clean_failure(const cli_run *r, const char *parent, const char *out, int expected_entries,
                                 const char *what) {
    cr_expect_eq(r->status, 1, "%s: exit status %d: %s", what, r->status, r->err);
    cr_expect(strstr(r->err, "jamba: error: ") != NULL && strstr(r->err, out) != NULL,
              "%s: the message names %s: %s", what, out, r->err);
    int with_out = 0;
    count_entries(parent, "out", &with_out);
    cr_expect_eq(with_out, expected_entries, "%s: nothing is left beside %s", what, out);
}

JB_TEST(quantize_cli, a_full_disk_leaves_nothing_behind) {
    char *parent = tu_tmpdir(), *out = tu_path(parent, "out");
    /* each limit fails the write at another point: the first file, inside the weights, near their end */
    const rlim_t limits[] = {0, 4096, 1 << 20, 8 << 20};
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        cli_run r = run_quantize(out, false, RLIMIT_FSIZE, limits[i]);
        expect_clean_failure(&r, parent, out, 0, "RLIMIT_FSIZE");
        free(r.err);
    }
    size_t n_old = 0;
    uint8_t *old = existing_folder(out, &n_old);
    cli_run r = run_quantize(out, true, RLIMIT_FSIZE, 1 << 20);
    expect_clean_failure(&r, parent, out, 1, "replacing on a full disk");
    expect_old_folder(parent, out, old, n_old);
    free(r.err);
    free(old);
    tu_rmtree(parent);
    free(out);
    free(parent);
}

JB_TEST(quantize_cli, no_file_descriptors_left_fails_cleanly_wherever_it_stops) {
    char *parent = tu_tmpdir(), *out = tu_path(parent, "out");
    /* from too few descriptors to load the model to enough to write it: every run either writes the whole
     * folder or fails with a message and leaves nothing; at least one fails while writing */
    int failed_writing = 0, written = 0;
    for (rlim_t fds = 4; fds <= 16 && written == 0; fds++) {
        cli_run r = run_quantize(out, false, RLIMIT_NOFILE, fds);
        if (r.status == 0) {
            jamba_model *back = NULL;
            jamba_error err = {0};
            cr_expect_eq(jamba_model_load(out, NULL, &back, &err), JAMBA_OK, "%s", err.message);
            jamba_model_free(back);
            written++;
        } else {
            cr_expect_eq(r.status, 1, "%d descriptors: exit status %d: %s", (int)fds, r.status, r.err);
            cr_expect(strstr(r.err, "jamba: error: ") != NULL, "%d descriptors: %s", (int)fds, r.err);
            int with_out = 0;
            count_entries(parent, "out", &with_out);
            cr_expect_eq(with_out, 0, "%d descriptors: nothing is left: %s", (int)fds, r.err);
            failed_writing += strstr(r.err, out) != NULL;
        }
        free(r.err);
    }
    cr_expect_eq(written, 1, "enough descriptors write the folder");
    cr_expect_gt(failed_writing, 0, "some limit fails while the folder is written");
    tu_rmtree(parent);
    free(out);
    free(parent);
}

/* Send `sig` to `jamba quantize` as soon as its temporary folder appears beside `out` (inotify), so the
 * signal arrives while the folder is written. */
static cli_run quantize_signalled(const char *parent, const char *out, bool force, int sig) {
    int in = inotify_init1(IN_CLOEXEC);
    cr_assert_geq(in, 0);
    cr_assert_geq(inotify_add_watch(in, parent, IN_CREATE), 0);
    tu_child c = start_quantize(out, force, -1, 0);
    bool seen = false;
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    while (!seen) {
        struct pollfd p = {.fd = in, .events = POLLIN};
        cr_assert_eq(poll(&p, 1, 120000), 1, "no temporary folder appeared beside %s", out);
        ssize_t len = read(in, buf, sizeof buf);
        cr_assert_gt(len, 0);
        for (char *e = buf; e < buf + len; e += sizeof(struct inotify_event) + ((struct inotify_event *)e)->len) {
            const struct inotify_event *ev = (const struct inotify_event *)e;
            seen = seen || (ev->len > 0 && strncmp(ev->name, "out.tmp.", 8) == 0);
        }
    }
    kill(c.pid, sig);
    close(in);
    return finish_quantize(c);
}

JB_TEST(quantize_cli, sigint_and_sigterm_remove_the_temporary_folder) {
    char *parent = tu_tmpdir(), *out = tu_path(parent, "out");
    cli_run r = quantize_signalled(parent, out, false, SIGINT);
    cr_expect_eq(r.status, 128 + SIGINT, "exit status %d: %s", r.status, r.err);
    cr_expect(strstr(r.err, "interrupted") != NULL && strstr(r.err, out) != NULL, "%s", r.err);
    int with_out = 0;
    count_entries(parent, "out", &with_out);
    cr_expect_eq(with_out, 0, "neither the destination nor a temporary folder exists: %s", r.err);
    free(r.err);
    /* replacing an existing folder: SIGTERM leaves it as it was */
    size_t n_old = 0;
    uint8_t *old = existing_folder(out, &n_old);
    r = quantize_signalled(parent, out, true, SIGTERM);
    cr_expect_eq(r.status, 128 + SIGTERM, "exit status %d: %s", r.status, r.err);
    expect_old_folder(parent, out, old, n_old);
    free(r.err);
    free(old);
    tu_rmtree(parent);
    free(out);
    free(parent);
}

/* A private mount namespace for this test process and the programs it starts (as root, or as an
 * unprivileged user through a user namespace), so tmpfs mounts vanish with the process whatever happens.
 * False where neither is allowed. */
static bool private_mounts(void) {
    if (unshare(CLONE_NEWNS) != 0) {
        uid_t uid = geteuid();
        gid_t gid = getegid();
        if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0)
            return false;
        char map[64];
        snprintf(map, sizeof map, "0 %u 1", (unsigned)uid);
        tu_write_text("/proc/self/uid_map", map);
        tu_write_text("/proc/self/setgroups", "deny");
        snprintf(map, sizeof map, "0 %u 1", (unsigned)gid);
        tu_write_text("/proc/self/gid_map", map);
    }
    return mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0;
}

/* A tmpfs at `dir` with the given options ("size=2m", "nr_inodes=4"). */
static void mount_tmpfs(const char *dir, const char *options) {
    cr_assert_eq(mount("jamba-test", dir, "tmpfs", 0, options), 0, "mount tmpfs %s on %s", options, dir);
}

JB_TEST(quantize_cli, a_real_full_disk_few_inodes_and_a_read_only_destination) {
    if (!private_mounts())
        cr_skip_test("no mount namespace here (needs root or unprivileged user namespaces); the injected "
                     "failures above cover the same paths");
    char *root = tu_tmpdir(), *parent = tu_path(root, "fs"), *out = tu_path(parent, "out");
    cr_assert_eq(mkdir(parent, 0755), 0);
    /* a 2 MiB file system: ENOSPC inside the weights */
    mount_tmpfs(parent, "size=2m");
    cli_run r = run_quantize(out, false, -1, 0);
    expect_clean_failure(&r, parent, out, 0, "a full tmpfs");
    cr_expect(strstr(r.err, "No space left on device") != NULL, "%s", r.err);
    free(r.err);
    cr_assert_eq(umount2(parent, MNT_DETACH), 0);
    /* four inodes: the root, the temporary folder, and two files; ENOSPC when the third file is created */
    mount_tmpfs(parent, "size=64m,nr_inodes=4");
    r = run_quantize(out, false, -1, 0);
    expect_clean_failure(&r, parent, out, 0, "a tmpfs without free inodes");
    free(r.err);
    cr_assert_eq(umount2(parent, MNT_DETACH), 0);
    /* a read-only file system holding a model folder: --force cannot replace it, nor touch it */
    mount_tmpfs(parent, "size=64m");
    size_t n_old = 0;
    uint8_t *old = existing_folder(out, &n_old);
    cr_assert_eq(mount(NULL, parent, NULL, MS_REMOUNT | MS_RDONLY, NULL), 0);
    r = run_quantize(out, true, -1, 0);
    expect_clean_failure(&r, parent, out, 1, "a read-only destination");
    cr_expect(strstr(r.err, "Read-only file system") != NULL, "%s", r.err);
    expect_old_folder(parent, out, old, n_old);
    free(r.err);
    free(old);
    cr_assert_eq(umount2(parent, MNT_DETACH), 0);
    tu_rmtree(root);
    free(out);
    free(parent);
    free(root);
}
