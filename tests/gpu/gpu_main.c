/*
 * gpu_main.c — the GPU test program: every CUDA op against its CPU twin (test_gpu_ops.c) and the whole
 * model against the CPU path and the transformers fixtures (test_gpu_model.c), and the research captures
 * against the CPU's (test_gpu_internals.c).
 *
 *   test_gpu [--only PREFIX] [--filter TEXT] [--small | --large] [--list]
 *
 * Selection (all given must hold): --only, names starting with PREFIX or one of a comma-separated list of
 * prefixes ("ops/", "model/", "internals/", "serving/", "parallel/", "model/,serving/");
 * --filter, names containing TEXT; --small, the quick set (compute-sanitizer runs it); --large, the cases
 * outside it. --list prints the selected names and exits without touching a GPU.
 *
 * Exit status: 0 all passed, 1 a failure, 77 skipped (no usable GPU), the code ctest treats as a skip.
 */
#include "tests/gpu/gpu_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int gt_current_failures;
static bool small_only, large_only;

bool gt_small_only(void) { return small_only; }

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char *only_prefix, *filter;

/* Whether name starts with one of the comma-separated prefixes. */
static bool has_prefix(const char *name, const char *prefixes) {
    for (const char *p = prefixes; *p;) {
        const size_t n = strcspn(p, ",");
        if (n > 0 && strncmp(name, p, n) == 0)
            return true;
        p += n + (p[n] == ',');
    }
    return false;
}

static bool selected(const gt_case *c) {
    if (only_prefix && !has_prefix(c->name, only_prefix))
        return false;
    if (filter && strstr(c->name, filter) == NULL)
        return false;
    return !(small_only && !c->small) && !(large_only && c->small);
}

int main(int argc, char **argv) {
    bool list = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--filter") == 0 && i + 1 < argc)
            filter = argv[++i];
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            only_prefix = argv[++i];
        else if (strcmp(argv[i], "--small") == 0)
            small_only = true;
        else if (strcmp(argv[i], "--large") == 0)
            large_only = true;
        else if (strcmp(argv[i], "--list") == 0)
            list = true;
        else {
            fprintf(stderr, "usage: test_gpu [--only PREFIX] [--filter TEXT] [--small | --large] [--list]\n");
            return 2;
        }
    }
    if (small_only && large_only) {
        fprintf(stderr, "test_gpu: --small and --large select nothing together\n");
        return 2;
    }
    enum { N_SETS = 8 };
    const gt_case *sets[N_SETS] = {gt_op_cases,    gt_attention_cases, gt_scan_cases,      gt_moe_cases,
                                   gt_model_cases, gt_internals_cases, gt_serving_cases, gt_parallel_cases};
    const int counts[N_SETS] = {gt_n_op_cases,    gt_n_attention_cases, gt_n_scan_cases,    gt_n_moe_cases,
                                gt_n_model_cases, gt_n_internals_cases, gt_n_serving_cases, gt_n_parallel_cases};
    int n_selected = 0;
    for (int s = 0; s < N_SETS; s++)
        for (int i = 0; i < counts[s]; i++)
            if (selected(&sets[s][i])) {
                n_selected++;
                if (list)
                    printf("%s%s\n", sets[s][i].name, sets[s][i].small ? " (small)" : "");
            }
    if (n_selected == 0) {
        fprintf(stderr, "test_gpu: no test matches the selection\n");
        return 2;
    }
    if (list)
        return 0;
    jamba_backend_info info;
    jamba_backend_query(&info, NULL);
    if (!info.cuda_built || info.device_count == 0) {
        printf("test_gpu: SKIPPED: %s\n", info.cuda_built ? info.note : "built without CUDA");
        return 77;
    }
    jamba_device_info dev;
    jamba_error err = {0};
    if (jamba_device_query(0, &dev, &err) != JAMBA_OK) {
        printf("test_gpu: device 0 is not usable: %s\n", err.message);
        return 1;
    }
    printf("test_gpu: %s (sm_%d%d, %d SMs, %.1f GiB), CUDA runtime %d, driver %d, cuBLAS %d\n", dev.name,
           dev.compute_major, dev.compute_minor, dev.multiprocessors, (double)dev.total_memory / (1 << 30),
           info.cuda_runtime_version, info.cuda_driver_version, info.cublas_version);
    int run = 0, failed = 0;
    double t_all = now();
    for (int s = 0; s < N_SETS; s++)
        for (int i = 0; i < counts[s]; i++) {
            const gt_case *c = &sets[s][i];
            if (!selected(c))
                continue;
            printf("%s\n", c->name);
            fflush(stdout);
            gt_current_failures = 0;
            double t0 = now();
            c->fn();
            cudaError_t e = cudaDeviceSynchronize();
            if (e != cudaSuccess)
                gt_fail(__FILE__, __LINE__, "device error after the test: %s", cudaGetErrorString(e));
            cudaGetLastError();
            run++;
            failed += gt_current_failures > 0;
            printf("  %s (%.2f s)\n", gt_current_failures ? "FAILED" : "ok", now() - t0);
            fflush(stdout);
        }
    printf("test_gpu: %d tests, %d failed, %.1f s\n", run, failed, now() - t_all);
    return failed ? 1 : 0;
}
