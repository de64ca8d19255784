/*
 * test_gpu_scan.c — the selective scan (jb_cuda_selective_scan) against the CPU twin: odd and vector-width
 * channel counts, d_state 16 (the one-thread-per-channel path of every Jamba) and other d_state (the
 * general path), decode steps, segments chunked in time by explicit lengths and by the SM-count rule of
 * cuda/step_plan.h, several sequences at different positions, and states carried from call to call.
 */
#include "tests/gpu/gpu_ops.h"

#include "cpu/mamba.h"
#include "cpu/ops.h"
#include "cuda/ctx_layout.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One Mamba layer's scan parameters and the states of S sequences, kept by the CPU twin (host) and the
 * op (device) side by side across calls. R columns of dt come before B and C in each xdbl row: R = 8 with
 * D_i a multiple of 8 lets every row move as 16-byte vectors, R = 3 or an odd D_i forces the element path.
 * With `shift` the device states start one float into their buffer, so they move element by element. */
typedef struct scan_fix {
    jamba_dtype dt;
    int64_t Di, N, R, S;
    float *bias, *A, *D, *state;         /* [D_i], [D_i, N], [D_i], [S, D_i, N] */
    float *d_bias, *d_A, *d_D, *d_state_buf, *d_state;
    gt_rng *r;
} scan_fix;

static scan_fix fix_make_shifted(jamba_dtype dt, int64_t Di, int64_t N, int64_t R, bool shift, gt_rng *r) {
    scan_fix f = {.dt = dt, .Di = Di, .N = N, .R = R, .S = 4, .r = r};
    f.bias = gt_random(r, Di, -1, 0.5f, JAMBA_DTYPE_F32);
    f.A = gt_random(r, Di * N, 0, 2, JAMBA_DTYPE_F32);
    for (int64_t i = 0; i < Di * N; i++)
        f.A[i] = -expf(f.A[i]);
    f.D = gt_random(r, Di, -1, 1, JAMBA_DTYPE_F32);
    f.state = gt_random(r, f.S * Di * N, -1, 1, JAMBA_DTYPE_F32);
    f.d_bias = gt_dev_bytes(f.bias, (size_t)Di * 4);
    f.d_A = gt_dev_bytes(f.A, (size_t)(Di * N) * 4);
    f.d_D = gt_dev_bytes(f.D, (size_t)Di * 4);
    f.d_state_buf = gt_dev_poisoned((size_t)(f.S * Di * N + 1) * 4);
    f.d_state = f.d_state_buf != NULL ? f.d_state_buf + (shift ? 1 : 0) : NULL;
    if (f.d_state != NULL)
        GT_CHECK(cudaMemcpy(f.d_state, f.state, (size_t)(f.S * Di * N) * 4, cudaMemcpyHostToDevice) == cudaSuccess,
                 "copying the states");
    return f;
}

static scan_fix fix_make(jamba_dtype dt, int64_t Di, int64_t N, int64_t R, gt_rng *r) {
    return fix_make_shifted(dt, Di, N, R, false, r);
}

static void fix_free(scan_fix *f) {
    free(f->bias), free(f->A), free(f->D), free(f->state);
    gt_dev_free(f->d_bias), gt_dev_free(f->d_A), gt_dev_free(f->d_D), gt_dev_free(f->d_state_buf);
}

/* One call over segs chunked at chunk_len: fresh random inputs, the op against the CPU twin, then y and
 * every sequence's state compared (the twin's states move on with the op's). Returns the summary slots
 * the step used. */
static int scan_call(scan_fix *f, const jb_segment *segs, int64_t n_segs, int64_t chunk_len, const char *label) {
    const jamba_dtype dt = f->dt;
    const int64_t Di = f->Di, N = f->N, R = f->R, xd = R + 2 * N, es = (int64_t)gt_esize(dt);
    int64_t T = 0;
    for (int64_t s = 0; s < n_segs; s++)
        T += segs[s].n;
    float *u = gt_random(f->r, T * Di, -2, 2, dt), *draw = gt_random(f->r, T * Di, -4, 1, dt);
    float *xdbl = gt_random(f->r, T * xd, -1.5f, 1.5f, JAMBA_DTYPE_F32), *proj = gt_random(f->r, T * 2 * Di, -3, 3, dt);
    gt_dev_step ds = gt_make_step(segs, n_segs, chunk_len, NULL);
    void *d_u = gt_dev_from(dt, u, T * Di), *d_draw = gt_dev_from(dt, draw, T * Di);
    void *d_z = gt_dev_from(dt, proj, T * 2 * Di);
    float *d_x = gt_dev_bytes(xdbl, (size_t)(T * xd) * 4);
    float *d_sum = gt_dev_poisoned((size_t)(2 * (ds.step.n_slots > 0 ? ds.step.n_slots : 1) * Di * N) * 4);
    void *d_y = gt_dev_poisoned((size_t)(T * Di * es));
    /* z is the second half of the in_proj rows [T, 2 D_i], as in the forward pass */
    jb_cuda_scan_args a = {d_u,        d_draw, f->d_bias, f->d_A,  d_x + R, d_x + R + N, xd, f->d_D,
                          (char *)d_z + Di * es, 2 * Di, f->d_state, Di * N, d_y, d_sum, Di, N};
    const cudaError_t e = jb_cuda_selective_scan(dt, &a, &ds.step, 0);
    GT_CHECK(e == cudaSuccess, "scan launch: %s", cudaGetErrorString(e));
    gt_sync("scan");

    float *delta = malloc((size_t)(T * Di) * 4), *want = malloc((size_t)(T * Di) * 4);
    float *got = malloc((size_t)(T * Di) * 4), *gs = malloc((size_t)(f->S * Di * N) * 4);
    for (int64_t t = 0; t < T; t++)
        for (int64_t d = 0; d < Di; d++)
            delta[t * Di + d] = jb_softplus(draw[t * Di + d] + f->bias[d]);
    for (int64_t s = 0; s < n_segs; s++) {
        const int64_t row = segs[s].row;
        jb_scan_args c = {.n = segs[s].n, .d_inner = Di, .d_state = N, .u = u + row * Di, .delta = delta + row * Di,
                          .B = xdbl + row * xd + R, .C = xdbl + row * xd + R + N, .ldbc = xd, .A = f->A, .D = f->D,
                          .z = proj + row * 2 * Di + Di, .ldz = 2 * Di, .state = f->state + segs[s].seq * Di * N,
                          .y = want + row * Di};
        jb_cpu_selective_scan(gt_cpu_pool(), &c, 1);
    }
    gt_to_host(dt, got, d_y, T * Di);
    char what[160];
    snprintf(what, sizeof what, "%s %s D_i=%lld N=%lld T=%lld chunk=%lld (%lld chunks, %d slots) y", label,
             gt_dname(dt), (long long)Di, (long long)N, (long long)T, (long long)chunk_len,
             (long long)ds.step.n_chunks, ds.step.n_slots);
    gt_expect_close(what, got, want, T * Di, gt_tol(dt));
    gt_to_host(JAMBA_DTYPE_F32, gs, f->d_state, f->S * Di * N);
    snprintf(what, sizeof what, "%s %s D_i=%lld N=%lld chunk=%lld states", label, gt_dname(dt), (long long)Di,
             (long long)N, (long long)chunk_len);
    gt_expect_close(what, gs, f->state, f->S * Di * N, GT_TOL_F32);
    const int slots = ds.step.n_slots;
    free(u), free(draw), free(xdbl), free(proj), free(delta), free(want), free(got), free(gs);
    gt_dev_free(d_u), gt_dev_free(d_draw), gt_dev_free(d_z), gt_dev_free(d_x), gt_dev_free(d_sum), gt_dev_free(d_y);
    gt_free_step(&ds);
    return slots;
}

/* The three-segment step of gt_mamba_segments (a continuing prefill, a decode row, a prefill of long_n
 * rows) on a fresh fixture. */
static void scan_case(jamba_dtype dt, int64_t Di, int64_t N, int64_t R, int64_t long_n, int64_t chunk_len, gt_rng *r,
                      const char *label) {
    scan_fix f = fix_make(dt, Di, N, R, r);
    jb_segment segs[3];
    scan_call(&f, segs, gt_mamba_segments(segs, long_n), chunk_len, label);
    fix_free(&f);
}

/* d_inner values: odd (element path, a partial last block of 128 channels) and multiples of 8 (vectors). */
static const int64_t odd_widths[] = {19, 131};
static const int64_t vec_widths[] = {64, 264};

static void test_scan_one_chunk(void) {
    gt_rng r = {7};
    for (int di = 0; di < 2; di++) {
        for (int w = 0; w < 2; w++) {
            scan_case(gt_dts[di], odd_widths[w], 16, 3, 40, 1 << 20, &r, "one chunk");
            scan_case(gt_dts[di], vec_widths[w], 16, 8, 40, 1 << 20, &r, "one chunk");
        }
        /* vector rows with states off the 16-byte grid, chunked and not */
        for (int chunked = 0; chunked < 2; chunked++) {
            scan_fix f = fix_make_shifted(gt_dts[di], 264, 16, 8, true, &r);
            jb_segment segs[3];
            scan_call(&f, segs, gt_mamba_segments(segs, 40), chunked ? 9 : 1 << 20, "shifted states");
            fix_free(&f);
        }
    }
}

static void test_scan_chunked(void) {
    gt_rng r = {8};
    static const int64_t lens[] = {1, 3, 7, 16, 17, 40};
    for (int di = 0; di < 2; di++)
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            scan_case(gt_dts[di], 19, 16, 3, 70, lens[li], &r, "chunked");
            scan_case(gt_dts[di], 264, 16, 8, 70, lens[li], &r, "chunked");
        }
}

/* Decode steps (every segment one row: the one-warp blocks), several in a row from the same states. */
static void test_scan_decode(void) {
    gt_rng r = {10};
    static const int64_t widths[] = {19, 131, 264};
    static const int64_t Ns[] = {16, 5};
    for (int di = 0; di < 2; di++)
        for (size_t w = 0; w < 3; w++)
            for (size_t ni = 0; ni < 2; ni++) {
                scan_fix f = fix_make(gt_dts[di], widths[w], Ns[ni], widths[w] % 8 ? 3 : 8, &r);
                for (int step = 0; step < 3; step++) {
                    /* the four sequences at different positions, in a different order each step */
                    jb_segment segs[4];
                    const int64_t n_segs = step == 1 ? 2 : 4;
                    for (int64_t s = 0; s < n_segs; s++)
                        segs[s] = (jb_segment){.seq = (int32_t)((s + step) % 4), .pos = 17 * s + step, .n = 1,
                                               .row = s};
                    scan_call(&f, segs, n_segs, 1 << 20, "decode");
                }
                fix_free(&f);
            }
}

/* Long segments chunked as the forward pass would on a small and a large card (jb_scan_chunk_rows): at
 * 600 channels one SM leaves them whole (512 threads already), at 131 it cuts them in 3; 132 SMs chunk
 * both. Checked: the chunked path runs exactly when the rule says so. */
static void test_scan_chunk_rule(void) {
    gt_rng r = {11};
    static const struct {
        int64_t Di, sms;
        bool chunked;
    } cases[] = {{131, 1, true}, {131, 132, true}, {600, 1, false}, {600, 132, true}};
    const int64_t long_n = gt_small_only() ? 300 : 1500;
    for (int di = 0; di < 2; di++)
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
            const int64_t Di = cases[k].Di, T = 6 + long_n;
            const int64_t len = jb_scan_chunk_rows(T, Di, cases[k].sms, JB_CUDA_SCAN_SLOTS);
            scan_fix f = fix_make(gt_dts[di], Di, 16, Di % 8 ? 3 : 8, &r);
            jb_segment segs[3];
            const int slots = scan_call(&f, segs, gt_mamba_segments(segs, long_n), len,
                                        cases[k].sms > 1 ? "132 SMs" : "1 SM");
            GT_CHECK(cases[k].chunked ? slots > 0 : slots == 0, "D_i %lld on %lld SMs: %d summary slots",
                     (long long)Di, (long long)cases[k].sms, slots);
            fix_free(&f);
        }
}

/* One fixture through a chunked prefill, a decode step and a prefill chunked differently: every call
 * continues from the states the previous one left. */
static void test_scan_continuity(void) {
    gt_rng r = {12};
    for (int di = 0; di < 2; di++)
        for (int w = 0; w < 2; w++) {
            scan_fix f = fix_make(gt_dts[di], w ? 264 : 19, 16, w ? 8 : 3, &r);
            jb_segment segs[4];
            scan_call(&f, segs, gt_mamba_segments(segs, 90), 16, "call 1");
            for (int s = 0; s < 4; s++)
                segs[s] = (jb_segment){.seq = 3 - s, .pos = 100 + s, .n = 1, .row = s};
            scan_call(&f, segs, 4, 1 << 20, "call 2");
            segs[0] = (jb_segment){.seq = 3, .pos = 101, .n = 57, .row = 0};
            segs[1] = (jb_segment){.seq = 1, .pos = 102, .n = 1, .row = 57};
            segs[2] = (jb_segment){.seq = 2, .pos = 103, .n = 33, .row = 58};
            scan_call(&f, segs, 3, 20, "call 3");
            fix_free(&f);
        }
}

/* d_state other than 16: the general path (2..16 lanes per channel), one chunk and chunked. */
static void test_scan_states(void) {
    gt_rng r = {9};
    static const int64_t Ns[] = {1, 4, 5, 17, 32, 33, 64, 100, 256};
    for (size_t ni = 0; ni < sizeof Ns / sizeof Ns[0]; ni++)
        for (int di = 0; di < 2; di++) {
            const int64_t long_n = gt_small_only() ? 9 : 50, len = ni % 2 ? 8 : 1 << 20;
            scan_case(gt_dts[di], 19, Ns[ni], 3, long_n, len, &r, "states");
            scan_case(gt_dts[di], 64, Ns[ni], 8, long_n, len, &r, "states");
        }
}

const gt_case gt_scan_cases[] = {
    {"ops/scan/one_chunk", test_scan_one_chunk, true},
    {"ops/scan/chunked", test_scan_chunked, true},
    {"ops/scan/decode", test_scan_decode, true},
    {"ops/scan/chunk_rule", test_scan_chunk_rule, true},
    {"ops/scan/continuity", test_scan_continuity, true},
    {"ops/scan/states", test_scan_states, false},
};
const int gt_n_scan_cases = sizeof gt_scan_cases / sizeof gt_scan_cases[0];
