/*
 * testutil.c — see testutil.h.
 */
#include "tests/support/testutil.h"

#include "ckpt/safetensors.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

char *tu_tmpdir(void) {
    const char *base = getenv("TMPDIR");
    char *tmpl = tu_path(base && *base ? base : "/tmp", "jamba-test-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpl), "mkdtemp failed");
    return tmpl;
}

void tu_rmtree(const char *dir) {
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char *p = tu_path(dir, e->d_name);
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
            tu_rmtree(p);
        else
            unlink(p);
        free(p);
    }
    closedir(d);
    rmdir(dir);
}

char *tu_path(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    cr_assert_not_null(p);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

void tu_write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot create %s", path);
    cr_assert_eq(n ? fwrite(data, 1, n, f) : 0, n);
    cr_assert_eq(fclose(f), 0);
}

void tu_write_text(const char *path, const char *text) { tu_write_file(path, text, strlen(text)); }

uint8_t *tu_read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)len + 1);
    cr_assert_not_null(buf);
    cr_assert_eq(fread(buf, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return buf;
}

void tu_copy_dir(const char *src, const char *dst) {
    DIR *d = opendir(src);
    cr_assert_not_null(d, "cannot open %s", src);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *s = tu_path(src, e->d_name);
        struct stat sb;
        if (stat(s, &sb) == 0 && S_ISREG(sb.st_mode)) {
            size_t n;
            uint8_t *buf = tu_read_file(s, &n);
            char *t = tu_path(dst, e->d_name);
            tu_write_file(t, buf, n);
            free(t);
            free(buf);
        }
        free(s);
    }
    closedir(d);
}

char *tu_fixture(const char *rel) { return tu_path(JB_FIXTURES_DIR, rel); }

uint8_t *tu_st_image(const char *header, const void *data, size_t data_len, size_t *n) {
    size_t h = strlen(header);
    *n = 8 + h + data_len;
    uint8_t *buf = malloc(*n ? *n : 1);
    cr_assert_not_null(buf);
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)((uint64_t)h >> (8 * i));
    memcpy(buf + 8, header, h);
    if (data_len)
        memcpy(buf + 8 + h, data, data_len);
    return buf;
}

char *tu_clone_model(const char *src_dir) {
    char *dir = tu_tmpdir();
    tu_copy_dir(src_dir, dir);
    return dir;
}

void tu_st_list_read(const char *path, tu_st_list *out) {
    size_t n;
    out->image = tu_read_file(path, &n);
    jb_st_file f;
    jamba_error err = {0};
    cr_assert_eq(jb_st_parse_memory(out->image, n, path, &f, &err), JAMBA_OK, "%s", err.message);
    out->items = calloc((size_t)f.n_tensors + 16, sizeof *out->items);
    out->n = f.n_tensors;
    for (int64_t i = 0; i < f.n_tensors; i++) {
        const jb_st_tensor *t = &f.tensors[i];
        jb_st_out_tensor *o = &out->items[i];
        o->name = strdup(t->name);
        o->dtype = t->dtype;
        o->rank = t->rank;
        memcpy(o->shape, t->shape, sizeof t->shape);
        o->data = jb_st_tensor_data(&f, t);
    }
    jb_st_close(&f);
}

int64_t tu_st_list_find(const tu_st_list *l, const char *name) {
    for (int64_t i = 0; i < l->n; i++)
        if (strcmp(l->items[i].name, name) == 0)
            return i;
    return -1;
}

void tu_st_list_remove(tu_st_list *l, const char *name) {
    int64_t i = tu_st_list_find(l, name);
    cr_assert_geq(i, 0, "no tensor %s", name);
    free((char *)l->items[i].name);
    memmove(&l->items[i], &l->items[i + 1], (size_t)(l->n - i - 1) * sizeof *l->items);
    l->n--;
}

void tu_st_list_write(const tu_st_list *l, const char *path) {
    jamba_error err = {0};
    cr_assert_eq(jb_st_write(path, l->items, l->n, NULL, &err), JAMBA_OK, "%s", err.message);
}

void tu_st_list_free(tu_st_list *l) {
    for (int64_t i = 0; i < l->n; i++)
        free((char *)l->items[i].name);
    free(l->items);
    free(l->image);
    memset(l, 0, sizeof *l);
}

extern char **environ;

/* Read both pipes to EOF without deadlocking on a full pipe. */
static void drain(int fds[2], char *bufs[2]) {
    size_t len[2] = {0, 0}, cap[2] = {4096, 4096};
    bufs[0] = malloc(cap[0]);
    bufs[1] = malloc(cap[1]);
    int open_count = 2;
    while (open_count > 0) {
        struct pollfd p[2];
        int n = 0, which[2];
        for (int i = 0; i < 2; i++)
            if (fds[i] >= 0) {
                p[n] = (struct pollfd){.fd = fds[i], .events = POLLIN};
                which[n++] = i;
            }
        /* a hang, not a slow sanitizer build on two busy cores */
        cr_assert_geq(poll(p, (nfds_t)n, 300000), 1, "child produced no output for 300 s");
        for (int k = 0; k < n; k++) {
            if (!(p[k].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            int i = which[k];
            if (len[i] + 4096 > cap[i])
                bufs[i] = realloc(bufs[i], cap[i] *= 2);
            ssize_t r = read(fds[i], bufs[i] + len[i], cap[i] - len[i] - 1);
            if (r <= 0) {
                close(fds[i]);
                fds[i] = -1;
                open_count--;
            } else {
                len[i] += (size_t)r;
            }
        }
    }
    bufs[0][len[0]] = '\0';
    bufs[1][len[1]] = '\0';
}

int tu_run(const char *const argv[], char **out, char **err) { return tu_run_input(argv, NULL, out, err); }

int tu_run_input(const char *const argv[], const char *input, char **out, char **err) {
    int po[2], pe[2], pi[2] = {-1, -1};
    cr_assert_eq(pipe(po), 0);
    cr_assert_eq(pipe(pe), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (input) {
        cr_assert_eq(pipe(pi), 0);
        posix_spawn_file_actions_adddup2(&fa, pi[0], 0);
        posix_spawn_file_actions_addclose(&fa, pi[1]);
    } else {
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    }
    posix_spawn_file_actions_adddup2(&fa, po[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pe[1], 2);
    posix_spawn_file_actions_addclose(&fa, po[0]);
    posix_spawn_file_actions_addclose(&fa, pe[0]);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(rc, 0, "cannot start %s", argv[0]);
    close(po[1]);
    close(pe[1]);
    if (input) { /* small inputs only: written before the output is drained */
        close(pi[0]);
        size_t len = strlen(input);
        cr_assert_eq(write(pi[1], input, len), (ssize_t)len);
        close(pi[1]);
    }
    int fds[2] = {po[0], pe[0]};
    char *bufs[2];
    drain(fds, bufs);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    *out = bufs[0];
    *err = bufs[1];
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int64_t tu_argmax(const float *v, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (v[i] > v[best])
            best = i;
    return best;
}

tu_child tu_spawn(const char *const argv[], int resource, unsigned long long limit) {
    int pe[2];
    cr_assert_eq(pipe(pe), 0);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        if (null < 0)
            _exit(126);
        dup2(null, 0), dup2(null, 1), dup2(pe[1], 2);
        close(null), close(pe[0]), close(pe[1]);
        signal(SIGINT, SIG_DFL), signal(SIGTERM, SIG_DFL), signal(SIGXFSZ, SIG_IGN);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        struct rlimit rl = {.rlim_cur = (rlim_t)limit, .rlim_max = (rlim_t)limit};
        if (resource >= 0 && setrlimit(resource, &rl) != 0)
            _exit(126);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(pe[1]);
    return (tu_child){pid, pe[0]};
}

int tu_child_wait(tu_child c, char **err) {
    size_t n = 0, cap = 4096;
    char *text = malloc(cap);
    for (ssize_t k; (k = read(c.err, text + n, cap - n - 1)) > 0;) {
        n += (size_t)k;
        if (cap - n < 2)
            text = realloc(text, cap *= 2);
    }
    text[n] = '\0';
    close(c.err);
    int status;
    cr_assert_eq(waitpid(c.pid, &status, 0), c.pid);
    *err = text;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
