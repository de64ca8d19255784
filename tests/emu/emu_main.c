/*
 * emu_main.c — the op tests of tests/gpu whose kernels the CPU emulation runs (tests/emu/emu.h), against
 * their CPU twins with the tolerances of tests/gpu, on this machine's CPU.
 *
 *   test_gpu_emulated [--filter TEXT] [--list]
 *
 * The cases are tests/gpu's own; the ones left out need tensor cores or cuBLAS (emu_unsupported.cpp).
 * Exit status: 0 all passed, 1 a failure.
 */
#include "tests/gpu/gpu_test.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

int gt_current_failures;

bool gt_small_only(void) { return false; }

/* The emulated cases (every kernel they launch is in tests/emu/CMakeLists.txt's JB_EMU_KERNELS). Not yet here,
 * though their kernels lower and compile: ops/rows_gemv* (fused.cu), ops/sample and ops/moe/expert_gemv, whose
 * warp reductions make them take minutes with one OS thread per CUDA thread (docs/gpu-verification.md). */
static const char *const emulated[] = {
    "ops/embed",           "ops/add_rmsnorm",   "ops/ssm_params",      "ops/swiglu_bias_gather",
    "ops/conv",            "ops/embed_rmsnorm", "ops/scan/one_chunk",  "ops/scan/chunked",
    "ops/scan/decode",     "ops/scan/chunk_rule", "ops/scan/continuity", "ops/scan/states",
    "ops/moe/route",       "ops/moe/plan_combine",
};

static bool is_emulated(const char *name) {
    for (size_t i = 0; i < sizeof emulated / sizeof *emulated; i++)
        if (strcmp(emulated[i], name) == 0)
            return true;
    return false;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    const char *filter = NULL;
    bool list = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--filter") == 0 && i + 1 < argc)
            filter = argv[++i];
        else if (strcmp(argv[i], "--list") == 0)
            list = true;
        else {
            fprintf(stderr, "usage: test_gpu_emulated [--filter TEXT] [--list]\n");
            return 2;
        }
    }
    const gt_case *sets[] = {gt_op_cases, gt_scan_cases, gt_moe_cases};
    const int counts[] = {gt_n_op_cases, gt_n_scan_cases, gt_n_moe_cases};
    int run = 0, failed = 0, found = 0;
    const double t_all = now();
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < counts[s]; i++) {
            const gt_case *c = &sets[s][i];
            found += is_emulated(c->name);
            if (!is_emulated(c->name) || (filter && strstr(c->name, filter) == NULL))
                continue;
            printf("%s\n", c->name);
            fflush(stdout);
            if (list)
                continue;
            gt_current_failures = 0;
            const double t0 = now();
            c->fn();
            run++;
            failed += gt_current_failures > 0;
            printf("  %s (%.2f s)\n", gt_current_failures ? "FAILED" : "ok", now() - t0);
            fflush(stdout);
        }
    /* a case renamed or dropped in tests/gpu must not silently leave the emulation */
    if (found != (int)(sizeof emulated / sizeof *emulated)) {
        printf("test_gpu_emulated: %d of the %d emulated case names exist in tests/gpu\n", found,
               (int)(sizeof emulated / sizeof *emulated));
        return 1;
    }
    if (!list)
        printf("test_gpu_emulated: %d tests, %d failed, %.1f s (CPU emulation)\n", run, failed, now() - t_all);
    return failed ? 1 : 0;
}
