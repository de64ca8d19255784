/*
 * test_gpu_scan.c — the selective scan (jb_cuda_selective_scan) against the CPU twin: one chunk and
 * time-chunked segments, several sequences at different positions, states carried between calls.
 */
#include "tests/gpu/gpu_ops.h"

#include "cpu/mamba.h"
#include "cpu/ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Mamba --------------------------------------------------------------------------------------------- */

/* The scan over three segments with chunk length chunk_len, d_state N. */
static void scan_case(jamba_dtype dt, int64_t N, int64_t long_n, int64_t chunk_len, gt_rng *r) {
    const int64_t Di = 19, R = 3, S = 4, xd = R + 2 * N;
    jb_segment segs[3];
    const int64_t n_segs = gt_mamba_segments(segs, long_n), T = 6 + long_n;
    float *u = gt_random(r, T * Di, -2, 2, dt), *draw = gt_random(r, T * Di, -4, 1, dt);
    float *bias = gt_random(r, Di, -1, 0.5f, JAMBA_DTYPE_F32), *A = gt_random(r, Di * N, 0, 2, JAMBA_DTYPE_F32);
    for (int64_t i = 0; i < Di * N; i++)
        A[i] = -expf(A[i]);
    float *xdbl = gt_random(r, T * xd, -1.5f, 1.5f, JAMBA_DTYPE_F32), *D = gt_random(r, Di, -1, 1, JAMBA_DTYPE_F32);
    float *proj = gt_random(r, T * 2 * Di, -3, 3, dt), *state = gt_random(r, S * Di * N, -1, 1, JAMBA_DTYPE_F32);
    gt_dev_step ds = gt_make_step(segs, n_segs, chunk_len, NULL);
    void *d_u = gt_dev_from(dt, u, T * Di), *d_draw = gt_dev_from(dt, draw, T * Di), *d_z = gt_dev_from(dt, proj, T * 2 * Di);
    float *d_bias = gt_dev_bytes(bias, (size_t)Di * 4), *d_A = gt_dev_bytes(A, (size_t)(Di * N) * 4);
    float *d_x = gt_dev_bytes(xdbl, (size_t)(T * xd) * 4), *d_D = gt_dev_bytes(D, (size_t)Di * 4);
    float *d_state = gt_dev_bytes(state, (size_t)(S * Di * N) * 4);
    float *d_sum = gt_dev_poisoned((size_t)(2 * (ds.step.n_slots > 0 ? ds.step.n_slots : 1) * Di * N) * 4);
    void *d_y = gt_dev_poisoned((size_t)(T * Di) * gt_esize(dt));
    jb_cuda_scan_args a = {d_u, d_draw, d_bias, d_A, d_x + R, d_x + R + N, xd, d_D, (char *)d_z + Di * gt_esize(dt),
                          2 * Di, d_state, Di * N, d_y, d_sum, Di, N};
    cudaError_t e = jb_cuda_selective_scan(dt, &a, &ds.step, 0);
    GT_CHECK(e == cudaSuccess, "scan launch: %s", cudaGetErrorString(e));
    gt_sync("scan");
    float *delta = malloc((size_t)(T * Di) * 4), *want = malloc((size_t)(T * Di) * 4), *got = malloc((size_t)(T * Di) * 4);
    for (int64_t t = 0; t < T; t++)
        for (int64_t d = 0; d < Di; d++)
            delta[t * Di + d] = jb_softplus(draw[t * Di + d] + bias[d]);
    for (int64_t s = 0; s < n_segs; s++) {
        const int64_t row = segs[s].row;
        jb_scan_args c = {.n = segs[s].n, .d_inner = Di, .d_state = N, .u = u + row * Di, .delta = delta + row * Di,
                          .B = xdbl + row * xd + R, .C = xdbl + row * xd + R + N, .ldbc = xd, .A = A, .D = D,
                          .z = proj + row * 2 * Di + Di, .ldz = 2 * Di, .state = state + segs[s].seq * Di * N,
                          .y = want + row * Di};
        jb_cpu_selective_scan(gt_cpu_pool(), &c, 1);
    }
    gt_to_host(dt, got, d_y, T * Di);
    char what[96];
    snprintf(what, sizeof what, "%s N=%lld rows=%lld chunk=%lld (%d slots) y", gt_dname(dt), (long long)N,
             (long long)long_n, (long long)chunk_len, ds.step.n_slots);
    gt_expect_close(what, got, want, T * Di, gt_tol(dt));
    float *gs = malloc((size_t)(S * Di * N) * 4);
    gt_to_host(JAMBA_DTYPE_F32, gs, d_state, S * Di * N);
    snprintf(what, sizeof what, "%s N=%lld chunk=%lld states", gt_dname(dt), (long long)N, (long long)chunk_len);
    gt_expect_close(what, gs, state, S * Di * N, GT_TOL_F32);
    free(u), free(draw), free(bias), free(A), free(xdbl), free(D), free(proj), free(state);
    free(delta), free(want), free(got), free(gs);
    gt_dev_free(d_u), gt_dev_free(d_draw), gt_dev_free(d_z), gt_dev_free(d_bias), gt_dev_free(d_A);
    gt_dev_free(d_x), gt_dev_free(d_D), gt_dev_free(d_state), gt_dev_free(d_sum), gt_dev_free(d_y);
    gt_free_step(&ds);
}

static void test_scan_one_chunk(void) {
    gt_rng r = {7};
    for (int di = 0; di < 2; di++)
        scan_case(gt_dts[di], 16, 40, 1 << 20, &r);
}

static void test_scan_chunked(void) {
    gt_rng r = {8};
    static const int64_t lens[] = {1, 3, 7, 16, 40};
    for (int di = 0; di < 2; di++)
        for (size_t li = 0; li < 5; li++)
            scan_case(gt_dts[di], 16, 70, lens[li], &r);
}

static void test_scan_states(void) {
    gt_rng r = {9};
    static const int64_t Ns[] = {1, 4, 5, 17, 32, 33, 64, 100, 256};
    for (size_t ni = 0; ni < sizeof Ns / sizeof Ns[0]; ni++)
        for (int di = 0; di < 2; di++)
            scan_case(gt_dts[di], Ns[ni], gt_small_only() ? 9 : 50, ni % 2 ? 8 : 1 << 20, &r);
}

const gt_case gt_scan_cases[] = {
    {"ops/scan/one_chunk", test_scan_one_chunk, true},
    {"ops/scan/chunked", test_scan_chunked, true},
    {"ops/scan/states", test_scan_states, false},
};
const int gt_n_scan_cases = sizeof gt_scan_cases / sizeof gt_scan_cases[0];
