/*
 * cpu_ops.c — weight widening, matmul and RMSNorm for the CPU reference path.
 */
#include "cpu/ops.h"

#include <string.h>

static int64_t weight_elements(const jb_weight *w) {
    int64_t n = 1;
    for (int d = 0; d < w->rank; d++)
        n *= w->shape[d];
    return n;
}

const float *jb_weight_f32(const jb_weight *w, float *scratch) {
    if (w->dtype == JAMBA_DTYPE_F32 && ((uintptr_t)w->data % _Alignof(float)) == 0)
        return w->data;
    jb_to_f32(scratch, w->data, w->dtype, weight_elements(w));
    return scratch;
}

/* Four dot products of x against rows w0..w3 with 8 independent lanes each (vectorizable, fixed order). */
static void dot4(const float *x, const float *w, int64_t K, float out[4]) {
    float acc[4][8] = {{0}};
    int64_t k = 0;
    for (; k + 8 <= K; k += 8)
        for (int r = 0; r < 4; r++)
            for (int j = 0; j < 8; j++)
                acc[r][j] += x[k + j] * w[r * K + k + j];
    for (int r = 0; r < 4; r++) {
        float tail = 0;
        for (int64_t kk = k; kk < K; kk++)
            tail += x[kk] * w[r * K + kk];
        float s = 0;
        for (int j = 0; j < 8; j++)
            s += acc[r][j];
        out[r] = s + tail;
    }
}

typedef struct matmul_job {
    float *scratch;
    float *Y;
    const float *X;
    int64_t T, K, N;
    const jb_weight *W;
    const float *bias;
} matmul_job;

static void matmul_rows(void *arg, int64_t n0, int64_t n1, int thread) {
    const matmul_job *j = arg;
    const int64_t K = j->K, N = j->N;
    float *wrows = j->scratch + (int64_t)thread * JB_MATMUL_ROWS * K;
    size_t esize = jamba_dtype_size(j->W->dtype);
    const uint8_t *base = j->W->data;
    for (int64_t n = n0; n < n1; n += JB_MATMUL_ROWS) {
        int64_t rows = n1 - n < JB_MATMUL_ROWS ? n1 - n : JB_MATMUL_ROWS;
        jb_to_f32(wrows, base + (size_t)(n * K) * esize, j->W->dtype, rows * K);
        if (j->W->scale) /* weight-only quantized: stored value x its row's scale */
            for (int64_t r = 0; r < rows; r++)
                for (int64_t k = 0; k < K; k++)
                    wrows[r * K + k] *= j->W->scale[n + r];
        if (rows < JB_MATMUL_ROWS) /* pad the block with zero rows, results discarded */
            memset(wrows + rows * K, 0, (size_t)((JB_MATMUL_ROWS - rows) * K) * sizeof(float));
        for (int64_t t = 0; t < j->T; t++) {
            float out[JB_MATMUL_ROWS];
            dot4(j->X + t * K, wrows, K, out);
            for (int64_t r = 0; r < rows; r++)
                j->Y[t * N + n + r] = out[r] + (j->bias ? j->bias[n + r] : 0.0f);
        }
    }
}

void jb_cpu_matmul(jb_pool *pool, float *scratch, float *Y, const float *X, int64_t T, const jb_weight *W,
                   const float *bias) {
    matmul_job job = {scratch, Y, X, T, W->shape[1], W->shape[0], W, bias};
    /* each thread takes whole blocks of rows */
    int64_t blocks = (job.N + JB_MATMUL_ROWS - 1) / JB_MATMUL_ROWS;
    int threads = jb_pool_threads(pool);
    int64_t per = (blocks + threads - 1) / threads;
    jb_pool_run(pool, job.N, per * JB_MATMUL_ROWS, matmul_rows, &job);
}

void jb_cpu_rmsnorm(float *y, const float *x, int64_t T, int64_t n, int64_t ld, const float *w, double eps) {
    for (int64_t t = 0; t < T; t++) {
        const float *xr = x + t * ld;
        float *yr = y + t * ld;
        double ss = 0;
        for (int64_t i = 0; i < n; i++)
            ss += (double)xr[i] * xr[i];
        float inv = 1.0f / sqrtf((float)(ss / (double)n) + (float)eps);
        for (int64_t i = 0; i < n; i++)
            yr[i] = w[i] * (xr[i] * inv);
    }
}
