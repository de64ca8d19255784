/*
 * gpu_util.c — the harness helpers declared in gpu_test.h.
 */
#include "tests/gpu/gpu_test.h"

#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern int gt_current_failures;

void gt_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stdout, "    FAIL %s:%d: ", file, line);
    vfprintf(stdout, fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
    fflush(stdout);
    gt_current_failures++;
}

void gt_note(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("    ", stdout);
    vfprintf(stdout, fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
}

double gt_nmse(const float *got, const float *want, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(got[i]) && isfinite(want[i]))
            return INFINITY;
        double d = (double)got[i] - want[i];
        num += d * d;
        den += (double)want[i] * want[i];
    }
    if (den == 0)
        return num == 0 ? 0 : INFINITY;
    return num / den;
}

void gt_expect_close(const char *what, const float *got, const float *want, int64_t n, double tol) {
    double e = gt_nmse(got, want, n);
    if (!(e <= tol)) {
        int64_t worst = 0;
        double wd = -1;
        for (int64_t i = 0; i < n; i++) {
            double d = isfinite(got[i]) ? fabs((double)got[i] - want[i]) : INFINITY;
            if (d > wd) {
                wd = d;
                worst = i;
            }
        }
        gt_fail(__FILE__, __LINE__, "%s: nmse %.3g > %.1g over %lld values (worst at %lld: got %.7g want %.7g)", what,
                e, tol, (long long)n, (long long)worst, (double)got[worst], (double)want[worst]);
    }
}

uint64_t gt_next(gt_rng *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

float gt_uniform(gt_rng *r, float lo, float hi) {
    return lo + (hi - lo) * (float)((double)(gt_next(r) >> 11) * 0x1.0p-53);
}

void gt_round_bf16(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, &x[i], 4);
        if ((b & 0x7f800000u) != 0x7f800000u)
            b = (b + 0x7fffu + ((b >> 16) & 1u)) & 0xffff0000u;
        memcpy(&x[i], &b, 4);
    }
}

float *gt_random(gt_rng *r, int64_t n, float lo, float hi, jamba_dtype dt) {
    float *x = malloc((size_t)(n > 0 ? n : 1) * sizeof *x);
    for (int64_t i = 0; i < n; i++)
        x[i] = gt_uniform(r, lo, hi);
    if (dt == JAMBA_DTYPE_BF16)
        gt_round_bf16(x, n);
    return x;
}

void *gt_dev_poisoned(size_t bytes) {
    void *p = NULL;
    if (cudaMalloc(&p, bytes ? bytes : 16) != cudaSuccess || cudaMemset(p, 0xff, bytes ? bytes : 16) != cudaSuccess) {
        gt_fail(__FILE__, __LINE__, "cudaMalloc of %zu bytes failed", bytes);
        return NULL;
    }
    return p;
}

void *gt_dev_bytes(const void *x, size_t bytes) {
    void *p = gt_dev_poisoned(bytes);
    if (p && bytes && cudaMemcpy(p, x, bytes, cudaMemcpyHostToDevice) != cudaSuccess)
        gt_fail(__FILE__, __LINE__, "upload of %zu bytes failed", bytes);
    return p;
}

void *gt_dev_from(jamba_dtype dt, const float *x, int64_t n) {
    if (dt == JAMBA_DTYPE_F32)
        return gt_dev_bytes(x, (size_t)n * 4);
    uint16_t *h = malloc((size_t)(n > 0 ? n : 1) * 2);
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        gt_round_bf16(&v, 1);
        uint32_t b;
        memcpy(&b, &v, 4);
        h[i] = (uint16_t)(b >> 16);
    }
    void *p = gt_dev_bytes(h, (size_t)n * 2);
    free(h);
    return p;
}

void gt_to_host(jamba_dtype dt, float *dst, const void *src, int64_t n) {
    if (dt == JAMBA_DTYPE_F32) {
        if (cudaMemcpy(dst, src, (size_t)n * 4, cudaMemcpyDeviceToHost) != cudaSuccess)
            gt_fail(__FILE__, __LINE__, "download failed");
        return;
    }
    uint16_t *h = malloc((size_t)(n > 0 ? n : 1) * 2);
    if (cudaMemcpy(h, src, (size_t)n * 2, cudaMemcpyDeviceToHost) != cudaSuccess)
        gt_fail(__FILE__, __LINE__, "download failed");
    for (int64_t i = 0; i < n; i++) {
        uint32_t b = (uint32_t)h[i] << 16;
        memcpy(&dst[i], &b, 4);
    }
    free(h);
}

void gt_dev_free(void *p) { cudaFree(p); }

bool gt_sync(const char *what) {
    cudaError_t e = cudaDeviceSynchronize();
    if (e == cudaSuccess)
        e = cudaGetLastError();
    if (e != cudaSuccess) {
        gt_fail(__FILE__, __LINE__, "%s: %s", what, cudaGetErrorString(e));
        return false;
    }
    return true;
}

char *gt_fixture(const char *rel) {
    size_t n = strlen(JB_FIXTURES_DIR) + strlen(rel) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", JB_FIXTURES_DIR, rel);
    return p;
}

jamba_model *gt_fixture_model(const char *name) {
    char rel[160];
    snprintf(rel, sizeof rel, "forward/%.63s/model", name);
    char *dir = gt_fixture(rel);
    jamba_model *m = NULL;
    jamba_error err = {0};
    if (jamba_model_load(dir, NULL, &m, &err) != JAMBA_OK)
        gt_fail(__FILE__, __LINE__, "%s: %s", dir, err.message);
    free(dir);
    return m;
}

int gt_fixture_names(char names[][64], int cap) {
    char *dir = gt_fixture("forward");
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d)) != NULL && n < cap;)
        if (e->d_name[0] != '.' && strlen(e->d_name) < 64)
            snprintf(names[n++], 64, "%s", e->d_name);
    if (d)
        closedir(d);
    free(dir);
    if (n == 0)
        gt_fail(__FILE__, __LINE__, "no fixtures under tests/fixtures/forward");
    return n;
}
