/*
 * cpu_ops.c — weight widening, matmul (on the selected kernel set, cpu/kernels.h) and RMSNorm for the CPU
 * reference path.
 */
#include "cpu/ops.h"

#include "cpu/kernels.h"

#include <float.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
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

int64_t jb_cpu_lowp_row_bytes(int64_t K, int64_t elem) {
    return (K * elem + JB_LOWP_ROW_ALIGN - 1) / JB_LOWP_ROW_ALIGN * JB_LOWP_ROW_ALIGN;
}

/* Plain loops the compiler vectorises: the largest magnitude as the largest bit pattern of |x| (for floats
 * that are not NaN the two orders agree, and patterns from 0x7f800000 up are ±Inf or NaN), and the rounding
 * by adding and subtracting 1.5 · 2^23 (round-half-even for |v| < 2^22, as lrintf in the default mode). */
void jb_cpu_quantize_rows(const float *X, int64_t T, int64_t K, uint8_t *Xq, int64_t ldq, float *sx, int offset) {
    const float round = 12582912.0f; /* 1.5 · 2^23 */
    for (int64_t t = 0; t < T; t++) {
        const float *x = X + t * K;
        uint8_t *q = Xq + t * ldq;
        uint32_t top = 0;
        for (int64_t k = 0; k < K; k++) {
            uint32_t b;
            memcpy(&b, x + k, sizeof b);
            b &= 0x7fffffffu;
            top = b > top ? b : top;
        }
        float amax;
        memcpy(&amax, &top, sizeof amax);
        const float inv = top != 0 && top < 0x7f800000u ? 127.0f / amax : INFINITY;
        if (top >= 0x7f800000u || !(inv <= FLT_MAX)) { /* ±Inf or NaN: NaN products; zeros (or every value
                                                            below 127 / FLT_MAX, ~4e-37): zero products */
            memset(q, offset, (size_t)ldq);
            sx[t] = top >= 0x7f800000u ? NAN : 0.0f;
            continue;
        }
        memset(q + K, offset, (size_t)(ldq - K));
        sx[t] = amax / 127.0f;
        for (int64_t k = 0; k < K; k++) {
            const int32_t v = (int32_t)((x[k] * inv + round) - round);
            q[k] = (uint8_t)((v > 127 ? 127 : v < -127 ? -127 : v) + offset);
        }
    }
}

void jb_cpu_round_rows_bf16(const float *X, int64_t T, int64_t K, uint16_t *Xb, int64_t ldb) {
    for (int64_t t = 0; t < T; t++) {
        const float *x = X + t * K;
        uint16_t *b = Xb + t * ldb;
        for (int64_t k = 0; k < K; k++)
            b[k] = jb_f32_to_bf16(x[k]);
        memset(b + K, 0, (size_t)(ldb - K) * sizeof *b);
    }
}

/* Rows [t0, t1) of a product's activations converted for its kernel. */
typedef struct convert_job {
    bool q8;
    const float *X;
    int64_t K, ldx;
    void *rows;
    float *sx;
    int offset;
} convert_job;

static void convert_range(void *arg, int64_t t0, int64_t t1, int thread) {
    (void)thread;
    const convert_job *j = arg;
    if (j->q8)
        jb_cpu_quantize_rows(j->X + t0 * j->K, t1 - t0, j->K, (uint8_t *)j->rows + t0 * j->ldx, j->ldx, j->sx + t0,
                             j->offset);
    else
        jb_cpu_round_rows_bf16(j->X + t0 * j->K, t1 - t0, j->K, (uint16_t *)j->rows + t0 * j->ldx, j->ldx);
}

/* Several products' conversions as one parallel job over all their rows (row `first[i]` of the list is row 0
 * of conversion i). */
typedef struct convert_list {
    int n;
    convert_job job[2 * JB_CPU_MAX_PARTS];
    int64_t first[2 * JB_CPU_MAX_PARTS + 1];
    int64_t K_max;
} convert_list;

static void convert_list_range(void *arg, int64_t r0, int64_t r1, int thread) {
    const convert_list *l = arg;
    for (int i = 0; i < l->n; i++) {
        const int64_t lo = r0 > l->first[i] ? r0 : l->first[i], hi = r1 < l->first[i + 1] ? r1 : l->first[i + 1];
        if (lo < hi)
            convert_range((void *)&l->job[i], lo - l->first[i], hi - l->first[i], thread);
    }
}

static void run_conversions(const jb_cpu_exec *ex, convert_list *l) {
    const int64_t rows = l->first[l->n];
    if (rows > 0)
        jb_pool_run(ex->pool, rows, jb_cpu_grain(ex->pool, rows, 4 * l->K_max, 1), convert_list_range, l);
}

/* One product of a job, as the columns of its kernel: fp32 activations (gemm), int8 (gemm_q8) or bf16 ones
 * (gemm_b16). */
typedef enum product_kind { PRODUCT_F32, PRODUCT_Q8, PRODUCT_B16 } product_kind;
typedef struct product {
    product_kind kind;
    jb_gemm_args f;
    jb_gemm_lowp_args q;
} product;

static void product_columns(const jb_cpu_kernel_table *kernels, const product *p, int64_t n0, int64_t n1) {
    if (p->kind == PRODUCT_Q8)
        kernels->gemm_q8(&p->q, n0, n1);
    else if (p->kind == PRODUCT_B16)
        kernels->gemm_b16(&p->q, n0, n1);
    else
        kernels->gemm(&p->f, n0, n1);
}

/* Y = X W^T (+ bias) as ex runs it: an I8 (BF16) weight meeting I8 (BF16) activations whose rows fit ex's
 * buffer (its row `row0` on, at byte `byte0`) multiplies X's rows converted into it there (their conversion
 * added to `conv`, or, with conv NULL, already there from a product of the same X and kind). */
static product prepare(const jb_cpu_exec *ex, const jb_cpu_kernel_table *kernels, float *Y, const float *X,
                       int64_t T, int64_t row0, int64_t byte0, const jb_weight *W, const float *bias,
                       convert_list *conv) {
    const int64_t K = W->shape[1], N = W->shape[0];
    product p = {.kind = PRODUCT_F32, .f = {X, T, K, N, W->data, W->dtype, W->scale, bias, Y}};
    const bool q8 = W->dtype == JAMBA_DTYPE_I8 && ex->activations == JAMBA_DTYPE_I8 && K <= JB_Q8_MAX_K;
    const bool b16 = W->dtype == JAMBA_DTYPE_BF16 && ex->activations == JAMBA_DTYPE_BF16;
    const int64_t elem = q8 ? 1 : 2, bytes = jb_cpu_lowp_row_bytes(K, elem);
    if ((!q8 && !b16) || ex->act_rows == NULL || bytes > ex->act_row_bytes || row0 + T > ex->act_rows_max ||
        byte0 + T * bytes > ex->act_rows_max * ex->act_row_bytes)
        return p;
    p.kind = q8 ? PRODUCT_Q8 : PRODUCT_B16;
    void *rows = (uint8_t *)ex->act_rows + byte0;
    float *scales = q8 ? ex->act_scales + row0 : NULL;
    p.q = (jb_gemm_lowp_args){rows, scales, T, K, bytes / elem, N, W->data, q8 ? W->scale : NULL, bias, Y};
    if (conv) {
        conv->job[conv->n] = (convert_job){q8, X, K, bytes / elem, rows, scales, kernels->q8_offset};
        conv->first[conv->n + 1] = conv->first[conv->n] + T;
        conv->K_max = K > conv->K_max ? K : conv->K_max;
        conv->n++;
    }
    return p;
}

/* The bytes a product's converted rows take in ex's buffer (0 for fp32 activations). */
static int64_t converted_bytes(const product *p) {
    return p->kind == PRODUCT_F32 ? 0 : p->q.T * p->q.ldx * (p->kind == PRODUCT_Q8 ? 1 : 2);
}

typedef struct matmul_job {
    const jb_cpu_kernel_table *kernels;
    product p;
} matmul_job;

static void matmul_rows(void *arg, int64_t n0, int64_t n1, int thread) {
    (void)thread;
    const matmul_job *j = arg;
    product_columns(j->kernels, &j->p, n0, n1);
}

void jb_cpu_matmul_ex(const jb_cpu_exec *ex, float *Y, const float *X, int64_t T, const jb_weight *W,
                      const float *bias) {
    const jb_cpu_kernel_table *kernels = jb_cpu_kernels_active();
    convert_list conv = {0};
    matmul_job job = {kernels, prepare(ex, kernels, Y, X, T, 0, 0, W, bias, &conv)};
    run_conversions(ex, &conv);
    const int64_t N = W->shape[0];
    jb_pool_run(ex->pool, N, jb_cpu_grain(ex->pool, N, T * W->shape[1], JB_MATMUL_ROWS), matmul_rows, &job);
}

void jb_cpu_matmul(jb_pool *pool, float *Y, const float *X, int64_t T, const jb_weight *W, const float *bias) {
    const jb_cpu_exec fp32 = {.pool = pool};
    jb_cpu_matmul_ex(&fp32, Y, X, T, W, bias);
}

typedef struct parts_job {
    const jb_cpu_kernel_table *kernels;
    int n;
    product first[JB_CPU_MAX_PARTS], gated[JB_CPU_MAX_PARTS]; /* gated[i].f.Y NULL: part i is not gated */
    int64_t N;
} parts_job;

/* Columns [n0, n1) of every part; a gated part's SiLU(first) ⊙ gated over them in each of its rows. */
static void parts_rows(void *arg, int64_t n0, int64_t n1, int thread) {
    (void)thread;
    const parts_job *j = arg;
    for (int i = 0; i < j->n; i++) {
        product_columns(j->kernels, &j->first[i], n0, n1);
        if (j->gated[i].f.Y == NULL)
            continue;
        product_columns(j->kernels, &j->gated[i], n0, n1);
        for (int64_t t = 0; t < j->first[i].f.T; t++)
            j->kernels->silu_mul(j->first[i].f.Y + t * j->N + n0, j->gated[i].f.Y + t * j->N + n0, n1 - n0);
    }
}

void jb_cpu_matmul_parts(const jb_cpu_exec *ex, const jb_cpu_part *parts, int n) {
    const jb_cpu_kernel_table *kernels = jb_cpu_kernels_active();
    for (int at = 0; at < n; at += JB_CPU_MAX_PARTS) { /* one job per JB_CPU_MAX_PARTS parts */
        parts_job job = {kernels, n - at < JB_CPU_MAX_PARTS ? n - at : JB_CPU_MAX_PARTS, {{0}}, {{0}},
                         parts[at].W->shape[0]};
        int64_t work = 0, row0 = 0, byte0 = 0;
        convert_list conv = {0}; /* every part's rows converted in one job */
        for (int i = 0; i < job.n; i++) {
            const jb_cpu_part *p = &parts[at + i];
            job.first[i] = prepare(ex, kernels, p->Y, p->X, p->T, row0, byte0, p->W, NULL, &conv);
            if (p->W2) /* the same rows: converted once */
                job.gated[i] = prepare(ex, kernels, p->Y2, p->X, p->T, row0, byte0, p->W2, NULL,
                                       job.first[i].kind == PRODUCT_F32 || p->W2->dtype != p->W->dtype ? &conv
                                                                                                         : NULL);
            work += (p->W2 ? 2 : 1) * p->T * p->W->shape[1];
            row0 += p->T;
            byte0 += converted_bytes(&job.first[i]) > converted_bytes(&job.gated[i]) ? converted_bytes(&job.first[i])
                                                                                      : converted_bytes(&job.gated[i]);
        }
        run_conversions(ex, &conv);
        jb_pool_run(ex->pool, job.N, jb_cpu_grain(ex->pool, job.N, work, JB_MATMUL_ROWS), parts_rows, &job);
    }
}

void jb_cpu_matmul_swiglu(const jb_cpu_exec *ex, float *G, float *U, const float *X, int64_t T,
                          const jb_weight *Wg, const jb_weight *Wu) {
    const jb_cpu_part one = {X, T, Wg, Wu, G, U};
    jb_cpu_matmul_parts(ex, &one, 1);
}

static int64_t min_parallel_work = JB_CPU_MIN_PARALLEL_WORK;

static void read_min_parallel_work(void) {
    const char *env = getenv("JAMBA_CPU_MIN_PARALLEL_WORK");
    char *end;
    long long v = env ? strtoll(env, &end, 10) : -1;
    if (env && *env && *end == '\0' && v >= 0)
        min_parallel_work = v;
}

int64_t jb_cpu_grain(const jb_pool *pool, int64_t n, int64_t work, int64_t align) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, read_min_parallel_work);
    int64_t parts = (int64_t)jb_pool_threads(pool) * JB_POOL_RANGES_PER_THREAD;
    if (min_parallel_work > 0 && work > 0 && n * work / min_parallel_work < parts) /* each part enough work */
        parts = n * work / min_parallel_work;
    if (parts < 1)
        parts = 1;
    const int64_t grain = (n + parts - 1) / parts;
    return (grain + align - 1) / align * align;
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
