/*
 * gpu_test.h — the GPU test program's own small harness: no Criterion and no Python, so it runs on a bare
 * GPU machine with only the CUDA toolkit (tools/gpu-check.sh). A test is a function; checks record a
 * failure and go on; helpers fill random inputs, poison device outputs and compare by normalised MSE.
 */
#ifndef JB_GPU_TEST_H
#define JB_GPU_TEST_H

#include <cuda_runtime_api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "jamba.h"

typedef struct gt_case {
    const char *name;   /* "ops/scan/chunked" */
    void (*fn)(void);
    bool small;         /* part of the quick set (compute-sanitizer runs it) */
} gt_case;

extern const gt_case gt_op_cases[];
extern const int gt_n_op_cases;
extern const gt_case gt_attention_cases[]; /* test_gpu_attention.c */
extern const int gt_n_attention_cases;
extern const gt_case gt_scan_cases[]; /* test_gpu_scan.c */
extern const int gt_n_scan_cases;
extern const gt_case gt_moe_cases[]; /* test_gpu_moe.c */
extern const int gt_n_moe_cases;
extern const gt_case gt_model_cases[];
extern const int gt_n_model_cases;
extern const gt_case gt_internals_cases[]; /* test_gpu_internals.c */
extern const int gt_n_internals_cases;
extern const gt_case gt_serving_cases[]; /* test_gpu_serving.c */
extern const int gt_n_serving_cases;
extern const gt_case gt_parallel_cases[]; /* test_gpu_parallel.c */
extern const int gt_n_parallel_cases;

/* Record a failure of the running test (printed at once). */
void gt_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Print a note line under the running test (measurements, what was compared). */
void gt_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define GT_CHECK(cond, ...)                        \
    do {                                           \
        if (!(cond))                               \
            gt_fail(__FILE__, __LINE__, __VA_ARGS__); \
    } while (0)

/* A CUDA runtime call that must succeed; the test returns on failure. */
#define GT_CUDA(call)                                                                      \
    do {                                                                                   \
        cudaError_t gt_e_ = (call);                                                        \
        if (gt_e_ != cudaSuccess) {                                                        \
            gt_fail(__FILE__, __LINE__, "%s: %s", #call, cudaGetErrorString(gt_e_));       \
            return;                                                                        \
        }                                                                                  \
    } while (0)

/* A jamba call that must succeed; the test returns on failure. */
#define GT_OK(call)                                                                        \
    do {                                                                                   \
        jamba_error gt_err_ = {0};                                                         \
        jamba_status gt_s_ = (call);                                                       \
        (void)gt_err_;                                                                     \
        if (gt_s_ != JAMBA_OK) {                                                           \
            gt_fail(__FILE__, __LINE__, "%s: status %d", #call, (int)gt_s_);               \
            return;                                                                        \
        }                                                                                  \
    } while (0)

/* ---- numbers ---------------------------------------------------------------------------------------- */

/* Σ(a-b)² / Σb² (0 when both are zero); +inf when a value of `got` is not finite but want's is. */
double gt_nmse(const float *got, const float *want, int64_t n);
/* Check nmse <= tol and print it. */
void gt_expect_close(const char *what, const float *got, const float *want, int64_t n, double tol);

/* The op tolerances of the issue: fp32 mode and bf16 products. */
#define GT_TOL_F32 1e-7
#define GT_TOL_BF16 5e-4

typedef struct gt_rng {
    uint64_t s;
} gt_rng;
uint64_t gt_next(gt_rng *r);
float gt_uniform(gt_rng *r, float lo, float hi);
/* n values uniform in [lo, hi); rounded to bf16 when dt is BF16 so the CPU twin sees the device's values. */
float *gt_random(gt_rng *r, int64_t n, float lo, float hi, jamba_dtype dt);

/* ---- device buffers --------------------------------------------------------------------------------- */

/* Device memory filled with 0xFF bytes (NaN as f32 and bf16), so an unwritten output fails the check. */
void *gt_dev_poisoned(size_t bytes);
/* Device copy of n host floats as dt (F32 or BF16). */
void *gt_dev_from(jamba_dtype dt, const float *x, int64_t n);
/* Device copy of raw bytes. */
void *gt_dev_bytes(const void *x, size_t bytes);
/* Host floats from n device elements of dt. */
void gt_to_host(jamba_dtype dt, float *dst, const void *src, int64_t n);
void gt_dev_free(void *p);
/* Wait for the device and report an asynchronous error as a failure; false when there was one. */
bool gt_sync(const char *what);

/* bf16 rounding on the host (round to nearest even), in place. */
void gt_round_bf16(float *x, int64_t n);

/* Path of a fixture file under tests/fixtures (caller frees). */
char *gt_fixture(const char *rel);
/* The model of transformers fixture `name` (tests/fixtures/forward/NAME/model); NULL (failure recorded) when
 * it does not load. */
jamba_model *gt_fixture_model(const char *name);
/* The fixture names (the folders of tests/fixtures/forward) into names[cap][64]: their count (0 recorded as
 * a failure). */
int gt_fixture_names(char names[][64], int cap);
bool gt_small_only(void);

#endif /* JB_GPU_TEST_H */
