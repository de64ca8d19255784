/*
 * kernels_avx512_set.h — the AVX-512 kernel sets (F, BW, VL, with FMA and F16C): 16 floats per vector,
 * prefill tiles of 4 rows x 4 weight rows (16 accumulators of 32 registers; a product's last 1-3 rows in
 * tiles of up to 3 x 8, at most 24 accumulators), bf16 widened by a shift, f16 by vcvtph2ps, int8 by sign
 * extension. Included once by kernels_avx512.c, kernels_avx512vnni.c and kernels_avx512bf16.c, which define
 * JB_TARGET_AVX512 (the functions' target), KERNEL_SET and KERNEL_TABLE, Q8_VNNI where the int8 x int8
 * products use VNNI's vpdpbusd (64 byte products per instruction; else vpmaddwd on bytes widened to 16
 * bits, 32 per instruction), and B16_HW where the bf16 x bf16 products use vdpbf16ps (kernels_avx512bf16.c,
 * with both). Compiled with -ffp-contract=off (cpu/CMakeLists.txt).
 */
#include "cpu/kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define JB_K __attribute__((target(JB_TARGET_AVX512)))
#define JB_KI __attribute__((target(JB_TARGET_AVX512), always_inline))
#define VW 16
#define TILE_ROWS 4 /* measured: 4 x 4 tiles beat 6 x 4 by 10-20% (K = 192-2048) */
#define TILE_ACCS 24
#define ATTN_HEADS 4 /* 16 accumulators */

typedef __m512 vf;

static inline JB_KI vf v_zero(void) { return _mm512_setzero_ps(); }
static inline JB_KI vf v_set1(float s) { return _mm512_set1_ps(s); }
static inline JB_KI vf v_load(const float *p) { return _mm512_loadu_ps(p); }
static inline JB_KI void v_store(float *p, vf v) { _mm512_storeu_ps(p, v); }
static inline JB_KI vf v_load_n(const float *p, int n) { return _mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1), p); }
static inline JB_KI void v_store_n(float *p, vf v, int n) { _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1), v); }
static inline JB_KI vf v_add(vf a, vf b) { return _mm512_add_ps(a, b); }
static inline JB_KI vf v_sub(vf a, vf b) { return _mm512_sub_ps(a, b); }
static inline JB_KI vf v_mul(vf a, vf b) { return _mm512_mul_ps(a, b); }
static inline JB_KI vf v_div(vf a, vf b) { return _mm512_div_ps(a, b); }
static inline JB_KI vf v_fma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }

/* max(lo, x) and min(hi, .) return their second operand when either is NaN */
static inline JB_KI vf v_clamp(vf x, vf lo, vf hi) { return _mm512_min_ps(hi, _mm512_max_ps(lo, x)); }
static inline JB_KI vf v_round(vf x) {
    return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
static inline JB_KI vf pow2i(__m512i e) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(e, _mm512_set1_epi32(127)), 23));
}
static inline JB_KI vf v_ldexp(vf v, vf n) {
    const __m512i i = _mm512_cvtps_epi32(n), h = _mm512_srai_epi32(i, 1);
    return _mm512_mul_ps(_mm512_mul_ps(v, pow2i(h)), pow2i(_mm512_sub_epi32(i, h)));
}

static inline JB_KI vf v_where_gt(vf a, vf b, vf t, vf e) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_GT_OQ), e, t);
}
static inline JB_KI vf v_where_nan(vf a, vf t, vf e) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q), e, t);
}
static inline JB_KI vf v_frexp(vf v, vf *e) {
    const __m512i b = _mm512_castps_si512(v);
    *e = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_srli_epi32(b, 23), _mm512_set1_epi32(126)));
    const __m512i m = _mm512_and_si512(b, _mm512_set1_epi32((int)0x807fffff));
    return _mm512_castsi512_ps(_mm512_or_si512(m, _mm512_set1_epi32(0x3f000000)));
}

static inline JB_KI vf v_f32(const uint8_t *p) { return _mm512_loadu_ps(p); }
static inline JB_KI vf v_bf16(const uint8_t *p) {
    const __m512i h = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(const void *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(h, 16));
}
static inline JB_KI vf v_f16(const uint8_t *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)p));
}
static inline JB_KI vf v_i8(const uint8_t *p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)p)));
}
static inline JB_KI vf v_e4m3(const uint8_t *p) {
    const __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)p));
    return _mm512_i32gather_ps(idx, jb_cpu_e4m3_table, 4);
}

/* The 16 x 16 block r[0 .. 16) transposed in registers: lane j of r[i] becomes lane i of r[j]. Pairs of rows
 * interleave by lanes, then by lane pairs, then by 128-bit quarters twice. */
#define HAVE_V_TRANSPOSE 1
_Static_assert(VW == 16, "v_transpose takes VW x VW");
static inline JB_KI void v_transpose(vf r[16]) {
    vf t[16], u[16];
    for (int i = 0; i < 16; i += 2) { /* t[i]: rows i, i+1 interleaved by lanes */
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) { /* u: four rows' lanes k of each 128-bit quarter side by side */
        u[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xee);
        u[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xee);
    }
    for (int i = 0; i < 16; i += 8) /* t: eight rows, quarters 0 and 2 then 1 and 3 */
        for (int k = 0; k < 4; k++) {
            t[i + k] = _mm512_shuffle_f32x4(u[i + k], u[i + 4 + k], 0x88);
            t[i + 4 + k] = _mm512_shuffle_f32x4(u[i + k], u[i + 4 + k], 0xdd);
        }
    for (int k = 0; k < 8; k++) { /* all sixteen rows */
        r[k] = _mm512_shuffle_f32x4(t[k], t[8 + k], 0x88);
        r[8 + k] = _mm512_shuffle_f32x4(t[k], t[8 + k], 0xdd);
    }
}

/* The pairwise order: lanes i + i+8, i + i+4, i + i+2, i + i+1, four vectors at once. */
static inline JB_KI void v_reduce4(vf a, vf b, vf c, vf d, float out[4]) {
    const vf ab = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(1, 0, 1, 0)),
                                _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
    const vf cd = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, _MM_SHUFFLE(1, 0, 1, 0)),
                                _mm512_shuffle_f32x4(c, d, _MM_SHUFFLE(3, 2, 3, 2)));
    const vf s = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, _MM_SHUFFLE(2, 0, 2, 0)),
                               _mm512_shuffle_f32x4(ab, cd, _MM_SHUFFLE(3, 1, 3, 1)));
    const vf u = _mm512_add_ps(s, _mm512_permute_ps(s, _MM_SHUFFLE(1, 0, 3, 2)));
    const vf v = _mm512_add_ps(u, _mm512_permute_ps(u, _MM_SHUFFLE(2, 3, 0, 1)));
    float lanes[16];
    _mm512_storeu_ps(lanes, v); /* a in lane 0, b in 4, c in 8, d in 12 */
    out[0] = lanes[0], out[1] = lanes[4], out[2] = lanes[8], out[3] = lanes[12];
}

/* int8 x int8 (kernels_body.h): with VNNI the activations are stored as xq + 128 (unsigned) and vpdpbusd
 * multiplies them by the signed weights, 4 products per int32 lane (the 128 · Σ w this adds is taken off with
 * the weights' own sums, vi_wsum); without it both are widened to 16 bits and vpmaddwd multiplies pairs. */
typedef __m512i vi;
typedef __m512i vq;
#define Q8_TILE_ROWS 4
#define Q8_TILE_COLS 4
static inline JB_KI vi vi_zero(void) { return _mm512_setzero_si512(); }
static inline JB_KI int64_t vi_hsum(vi v) { return _mm512_reduce_add_epi32(v); }
/* Four lane sums at once: 128-bit quarters, then within them (exact in any order). */
#define HAVE_VI_HSUM4 1
static inline JB_KI void vi_hsum4(vi a, vi b, vi c, vi d, int64_t out[4]) {
    const vi ab = _mm512_add_epi32(_mm512_shuffle_i32x4(a, b, _MM_SHUFFLE(1, 0, 1, 0)),
                                   _mm512_shuffle_i32x4(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
    const vi cd = _mm512_add_epi32(_mm512_shuffle_i32x4(c, d, _MM_SHUFFLE(1, 0, 1, 0)),
                                   _mm512_shuffle_i32x4(c, d, _MM_SHUFFLE(3, 2, 3, 2)));
    const vi s = _mm512_add_epi32(_mm512_shuffle_i32x4(ab, cd, _MM_SHUFFLE(2, 0, 2, 0)),
                                  _mm512_shuffle_i32x4(ab, cd, _MM_SHUFFLE(3, 1, 3, 1)));
    const vi u = _mm512_add_epi32(s, _mm512_shuffle_epi32(s, _MM_PERM_BADC));
    const vi v = _mm512_add_epi32(u, _mm512_shuffle_epi32(u, _MM_PERM_CDAB));
    int32_t lanes[16];
    _mm512_storeu_si512(lanes, v); /* a in lane 0, b in 4, c in 8, d in 12 */
    out[0] = lanes[0], out[1] = lanes[4], out[2] = lanes[8], out[3] = lanes[12];
}
#ifdef Q8_VNNI
#define Q8_STEP 64
#define Q8_OFFSET 128
static inline JB_KI vq q8_load(const void *p) { return _mm512_loadu_si512(p); }
/* vpdpbusd as an asm statement: GCC 12 surrounds the intrinsic with two register copies per use in the
 * unrolled tiles (bench_gemv --dtype q8: the copies cost more than the products). */
static inline JB_KI vi vi_dot(vi acc, vq xu, vq w) {
    __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(xu), "v"(w));
    return acc;
}
static inline JB_KI vi vi_wsum(vi acc, vq w) { return vi_dot(acc, _mm512_set1_epi8(1), w); }
#else
#define Q8_STEP 32
#define Q8_OFFSET 0
static inline JB_KI vq q8_load(const void *p) {
    return _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)p));
}
static inline JB_KI vi vi_dot(vi acc, vq x, vq w) { return _mm512_add_epi32(acc, _mm512_madd_epi16(x, w)); }
static inline JB_KI vi vi_wsum(vi acc, vq w) { return _mm512_add_epi32(acc, _mm512_madd_epi16(w, _mm512_set1_epi16(1))); }
#endif

/* bf16 x bf16 (kernels_body.h): vdpbf16ps (as an asm statement, as vpdpbusd above), or the pairs widened by a
 * shift and a mask. */
#define B16_TILE_ROWS 4
/* int8 and bf16 products of up to 8 rows of weights from memory (a batched decode step's experts) read them as
 * two streams: (bench_gemv --footprint-mb 512, K = 1024; docs/BENCHMARKS.md) about 2x the tiles' rate for
 * bf16 and 2.7x for int8 at T = 4, 1.1x and 1.3x at T = 8 (in cache the tiles stay: lowp_streams) */
#define LOWP_STREAM_ROWS 8
#ifdef B16_HW
#define HAVE_VB 1
typedef __m512i vb;
static inline JB_KI vb vb_load(const uint16_t *p) { return _mm512_loadu_si512(p); }
static inline JB_KI vf vb_dot(vf acc, vb x, vb w) {
    __asm__("vdpbf16ps %2, %1, %0" : "+v"(acc) : "v"(x), "v"(w));
    return acc;
}
#else
static inline JB_KI void v_b16_pairs(const uint16_t *p, vf *e, vf *o) {
    const __m512i v = _mm512_loadu_si512(p);
    *e = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
    *o = _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32((int)0xffff0000u)));
}
#endif

#include "cpu/kernels_body.h"

#else
const jb_cpu_kernel_table KERNEL_TABLE = {.set = KERNEL_SET}; /* no gemm: not available */
#endif
