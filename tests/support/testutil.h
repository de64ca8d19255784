/*
 * testutil.h — helpers shared by the Criterion suites: temporary folders, files, raw safetensors images,
 * fixture paths.
 */
#ifndef JB_TESTUTIL_H
#define JB_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "ckpt/st_write.h"
#include "jamba.h"

#ifndef JB_FIXTURES_DIR
#error "JB_FIXTURES_DIR must be defined by the build"
#endif

/* JB_TEST(suite, name) { ... }: a Criterion test that, in sanitizer builds, fails when the test body
 * leaked memory. (Criterion ends its workers with _exit, so LeakSanitizer's exit-time check never runs.) */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#define JB_CHECK_LEAKS() \
    cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "memory leaked (see the LeakSanitizer report above)")
#else
#define JB_CHECK_LEAKS() ((void)0)
#endif
#define JB_TEST(suite, name)                 \
    static void suite##_##name##_body(void); \
    Test(suite, name) {                      \
        suite##_##name##_body();             \
        JB_CHECK_LEAKS();                    \
    }                                        \
    static void suite##_##name##_body(void)

/* A new empty folder under $TMPDIR (or /tmp); the caller frees the path. */
char *tu_tmpdir(void);
/* Remove a folder and everything in it. */
void tu_rmtree(const char *dir);
/* Join two path parts into a new string. */
char *tu_path(const char *dir, const char *name);
/* Write / read a whole file (test failure on error). */
void tu_write_file(const char *path, const void *data, size_t n);
void tu_write_text(const char *path, const char *text);
uint8_t *tu_read_file(const char *path, size_t *n);
/* Copy every regular file of src into dst (flat). */
void tu_copy_dir(const char *src, const char *dst);
/* A fixture path: JB_FIXTURES_DIR/rel (caller frees). */
char *tu_fixture(const char *rel);

/* The index of the largest of v[0 .. n) (the first on ties). */
int64_t tu_argmax(const float *v, int64_t n);

/* A raw safetensors image: 8-byte little-endian length of `header`, the header bytes, then `data`.
 * The caller frees it; *n receives its length. */
uint8_t *tu_st_image(const char *header, const void *data, size_t data_len, size_t *n);

/* An editable copy of a safetensors file's tensor list (data points into `image`). */
typedef struct tu_st_list {
    uint8_t *image;          /* the file's bytes */
    jb_st_out_tensor *items; /* [n], room for 16 more */
    int64_t n;
} tu_st_list;
void tu_st_list_read(const char *path, tu_st_list *out);
/* Index of `name` in the list, or -1. */
int64_t tu_st_list_find(const tu_st_list *l, const char *name);
void tu_st_list_remove(tu_st_list *l, const char *name);
void tu_st_list_write(const tu_st_list *l, const char *path);
void tu_st_list_free(tu_st_list *l);

/* Run a program (argv[0] is its path; NULL-terminated) with no stdin; capture stdout and stderr into new
 * NUL-terminated strings. Returns the exit status, or -1 if it died from a signal. */
int tu_run(const char *const argv[], char **out, char **err);
/* The same with `input` written to the program's stdin. */
int tu_run_input(const char *const argv[], const char *input, char **out, char **err);

/* A program started by tu_spawn: its pid and our end of its stderr. */
typedef struct tu_child {
    int pid;
    int err;
} tu_child;

/* Start argv (argv[0] its path) with stdin and stdout on /dev/null, stderr to a pipe, SIGINT and SIGTERM at
 * their defaults and no signal blocked, SIGXFSZ ignored (writes past RLIMIT_FSIZE then fail with EFBIG as a
 * full disk fails with ENOSPC), and one resource limit (resource < 0: none; e.g. RLIMIT_AS, RLIMIT_FSIZE,
 * RLIMIT_NOFILE at `limit`). */
tu_child tu_spawn(const char *const argv[], int resource, unsigned long long limit);
/* Read its stderr to the end into *err (caller frees) and wait: its exit status, -1 when a signal ended it. */
int tu_child_wait(tu_child c, char **err);

/* Copy `src_dir` (a model folder) to a new temporary folder; return it (caller frees and removes). */
char *tu_clone_model(const char *src_dir);

#endif
