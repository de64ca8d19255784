/*
 * format.c — argument parsing and number formatting for the CLI.
 */
#include "tools/jamba/cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_fail(const jamba_error *err) {
    fprintf(stderr, "jamba: error: %s\n", err->message[0] ? err->message : jamba_status_string(err->status));
    return CLI_EXIT_FAIL;
}

int cli_finish_output(int rc) {
    if (fflush(stdout) == 0 && !ferror(stdout))
        return rc;
    fprintf(stderr, "jamba: error: cannot write the output: %s\n", strerror(errno ? errno : EIO));
    return CLI_EXIT_FAIL;
}

void cli_print_model_notes(const jamba_model *m) {
    for (int64_t i = 0; i < jamba_model_n_warnings(m); i++)
        fprintf(stderr, "jamba: note: %s\n", jamba_model_warning(m, i));
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "jamba %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see 'jamba %s --help')\n", cmd);
    va_end(ap);
    return CLI_EXIT_USAGE;
}

bool cli_parse_count(const char *s, int64_t min, int64_t max, int64_t *out) {
    if (s == NULL || *s == '\0' || *s == '-' || *s == '+')
        return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s)
        return false;
    unsigned long long scale = 1;
    if (*end == 'k' || *end == 'K')
        scale = 1024, end++;
    else if (*end == 'm' || *end == 'M')
        scale = 1024 * 1024, end++;
    if (*end != '\0' || v > (unsigned long long)INT64_MAX / scale)
        return false;
    int64_t r = (int64_t)(v * scale);
    if (r < min || r > max)
        return false;
    *out = r;
    return true;
}

const char *fmt_commas(uint64_t v, char *buf, size_t size) {
    char digits[32];
    int n = snprintf(digits, sizeof digits, "%llu", (unsigned long long)v);
    size_t o = 0;
    for (int i = 0; i < n && o + 1 < size; i++) {
        if (i > 0 && (n - i) % 3 == 0 && o + 2 < size)
            buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
    return buf;
}

const char *fmt_bytes(uint64_t v, char *buf, size_t size) {
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    double x = (double)v;
    int u = 0;
    while (x >= 1024.0 && u < 6)
        x /= 1024.0, u++;
    if (u == 0)
        snprintf(buf, size, "%llu B", (unsigned long long)v);
    else
        snprintf(buf, size, "%.2f %s", x, units[u]);
    return buf;
}

char *cli_read_file(const char *path, size_t *len) {
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n - 1, f)) > 0;) {
        n += got;
        if (cap - n < 4096) {
            char *grown = realloc(buf, cap *= 2);
            if (grown == NULL)
                free(buf);
            buf = grown;
        }
    }
    if (buf && ferror(f)) {
        free(buf);
        buf = NULL;
    }
    if (f != stdin)
        fclose(f);
    if (buf) {
        buf[n] = '\0';
        *len = n;
    }
    return buf;
}
