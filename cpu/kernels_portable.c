/*
 * kernels_portable.c — the portable kernel set: GCC/Clang vector extensions of 4 floats (one SSE2 or NEON
 * register), prefill tiles of 2 rows x 4 weight rows, libm's expf and log1pf, weights widened lane by lane. Its
 * conv, scan, SiLU and softplus are the plain loops' arithmetic exactly. Compiled with -ffp-contract=off
 * (cpu/CMakeLists.txt).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "ckpt/dtype.h"
#include "cpu/kernels.h"
#include "cpu/ops.h"

#define JB_K
#define JB_KI __attribute__((always_inline))
#define VW 4
#define TILE_ROWS 2
#define DECODE_COLS 4
#define KERNEL_SET JB_CPU_KERNELS_PORTABLE
#define KERNEL_TABLE jb_cpu_kernels_portable

/* Every function here is inlined into the table's three, so a vector wider than the baseline target's
 * registers never crosses a call (GCC and Clang would warn that such calls change the ABI). */
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wunknown-warning-option" /* a clang without -Wpsabi */
#endif
#pragma GCC diagnostic ignored "-Wpsabi"
typedef float vf __attribute__((vector_size(VW * sizeof(float))));

static inline JB_KI vf v_zero(void) { return (vf){0}; }
static inline JB_KI vf v_set1(float s) { return (vf){0} + s; }
static inline JB_KI vf v_load(const float *p) {
    vf v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline JB_KI void v_store(float *p, vf v) { memcpy(p, &v, sizeof v); }
static inline JB_KI vf v_load_n(const float *p, int n) {
    vf v = {0};
    memcpy(&v, p, (size_t)n * sizeof(float));
    return v;
}
static inline JB_KI void v_store_n(float *p, vf v, int n) { memcpy(p, &v, (size_t)n * sizeof(float)); }
static inline JB_KI vf v_add(vf a, vf b) { return a + b; }
static inline JB_KI vf v_sub(vf a, vf b) { return a - b; }
static inline JB_KI vf v_mul(vf a, vf b) { return a * b; }
static inline JB_KI vf v_div(vf a, vf b) { return a / b; }
static inline JB_KI vf v_fma(vf a, vf b, vf c) { return a * b + c; }

#define HAVE_V_EXP 1
static inline JB_KI vf v_exp(vf x) {
    for (int l = 0; l < VW; l++)
        x[l] = expf(x[l]);
    return x;
}

static inline JB_KI vf v_softplus(vf x) {
    for (int l = 0; l < VW; l++)
        x[l] = jb_softplus(x[l]);
    return x;
}

static inline JB_KI vf v_f32(const uint8_t *p) {
    vf v;
    memcpy(&v, p, sizeof v);
    return v;
}

typedef uint16_t vhalf __attribute__((vector_size(VW * sizeof(uint16_t))));
typedef uint32_t vword __attribute__((vector_size(VW * sizeof(uint32_t))));
typedef int8_t vbyte __attribute__((vector_size(VW)));
typedef int32_t vint __attribute__((vector_size(VW * sizeof(int32_t))));
typedef int8_t vbyte16 __attribute__((vector_size(16)));

static inline JB_KI vf v_bf16(const uint8_t *p) {
    vhalf h;
    memcpy(&h, p, sizeof h);
    const vword u = __builtin_convertvector(h, vword) << 16;
    vf v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static inline JB_KI vf v_f16(const uint8_t *p) {
    float f[VW];
    jb_to_f32(f, p, JAMBA_DTYPE_F16, VW);
    return v_load(f);
}

static inline JB_KI vf v_i8(const uint8_t *p) {
    vbyte b;
    memcpy(&b, p, sizeof b);
    return __builtin_convertvector(__builtin_convertvector(b, vint), vf);
}

static inline JB_KI vf v_e4m3(const uint8_t *p) {
    vf v;
    for (int l = 0; l < VW; l++)
        v[l] = jb_cpu_e4m3_table[p[l]];
    return v;
}

/* Pairwise: lane i + lane i + w for w = VW/2, VW/4, .., 1. */
static inline JB_KI float reduce1(vf v) {
    for (int w = VW / 2; w >= 1; w /= 2)
        for (int i = 0; i < w; i++)
            v[i] = v[i] + v[i + w];
    return v[0];
}

static inline JB_KI void v_reduce4(vf a, vf b, vf c, vf d, float out[4]) {
    out[0] = reduce1(a);
    out[1] = reduce1(b);
    out[2] = reduce1(c);
    out[3] = reduce1(d);
}

/* int8 x int8 (kernels_body.h): 16 bytes (passed as 16 bytes: a wider vector type as a parameter would
 * change the ABI), widened to int32 inside, four products per lane. */
typedef int32_t vi __attribute__((vector_size(4 * sizeof(int32_t))));
typedef vbyte16 vq;
typedef int32_t vint16 __attribute__((vector_size(16 * sizeof(int32_t))));
#define Q8_STEP 16
#define Q8_OFFSET 0
#define Q8_TILE_ROWS 2
#define Q8_TILE_COLS 4
static inline JB_KI vi vi_zero(void) { return (vi){0}; }
static inline JB_KI vq q8_load(const void *p) {
    vq b;
    memcpy(&b, p, sizeof b);
    return b;
}
static inline JB_KI vi vi_dot(vi acc, vq x, vq w) {
    const vint16 p = __builtin_convertvector(x, vint16) * __builtin_convertvector(w, vint16);
    for (int l = 0; l < 4; l++)
        acc[l] += p[4 * l] + p[4 * l + 1] + p[4 * l + 2] + p[4 * l + 3];
    return acc;
}
static inline JB_KI vi vi_wsum(vi acc, vq w) { return vi_dot(acc, w - w + 1, w); }
static inline JB_KI int64_t vi_hsum(vi v) { return (int64_t)v[0] + v[1] + v[2] + v[3]; }

/* bf16 x bf16 (kernels_body.h): the pairs widened lane by lane. */
static inline JB_KI void v_b16_pairs(const uint16_t *p, vf *e, vf *o) {
    vword u;
    memcpy(&u, p, sizeof u);
    const vword even = u << 16, odd = u & 0xffff0000u;
    memcpy(e, &even, sizeof *e);
    memcpy(o, &odd, sizeof *o);
}

#include "cpu/kernels_body.h"
