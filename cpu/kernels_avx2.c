/*
 * kernels_avx2.c — the AVX2 kernel set (with FMA and F16C): 8 floats per vector, prefill tiles of 3 rows x
 * 4 weight rows, bf16 widened by a shift, f16 by F16C, int8 by sign extension. Compiled with
 * -ffp-contract=off (cpu/CMakeLists.txt): the only fused operations are the explicit ones.
 */
#include "cpu/kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define JB_K __attribute__((target("avx2,fma,f16c")))
#define JB_KI __attribute__((target("avx2,fma,f16c"), always_inline))
#define VW 8
#define TILE_ROWS 3
#define KERNEL_SET JB_CPU_KERNELS_AVX2
#define KERNEL_TABLE jb_cpu_kernels_avx2

typedef __m256 vf;

static inline JB_KI vf v_zero(void) { return _mm256_setzero_ps(); }
static inline JB_KI vf v_set1(float s) { return _mm256_set1_ps(s); }
static inline JB_KI vf v_load(const float *p) { return _mm256_loadu_ps(p); }
static inline JB_KI void v_store(float *p, vf v) { _mm256_storeu_ps(p, v); }
static inline JB_KI __m256i lanes_below(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline JB_KI vf v_load_n(const float *p, int n) { return _mm256_maskload_ps(p, lanes_below(n)); }
static inline JB_KI void v_store_n(float *p, vf v, int n) { _mm256_maskstore_ps(p, lanes_below(n), v); }
static inline JB_KI vf v_add(vf a, vf b) { return _mm256_add_ps(a, b); }
static inline JB_KI vf v_sub(vf a, vf b) { return _mm256_sub_ps(a, b); }
static inline JB_KI vf v_mul(vf a, vf b) { return _mm256_mul_ps(a, b); }
static inline JB_KI vf v_div(vf a, vf b) { return _mm256_div_ps(a, b); }
static inline JB_KI vf v_fma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }

/* max(lo, x) and min(hi, .) return their second operand when either is NaN */
static inline JB_KI vf v_clamp(vf x, vf lo, vf hi) { return _mm256_min_ps(hi, _mm256_max_ps(lo, x)); }
static inline JB_KI vf v_round(vf x) { return _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
static inline JB_KI vf pow2i(__m256i e) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e, _mm256_set1_epi32(127)), 23));
}
static inline JB_KI vf v_ldexp(vf v, vf n) {
    const __m256i i = _mm256_cvtps_epi32(n), h = _mm256_srai_epi32(i, 1);
    return _mm256_mul_ps(_mm256_mul_ps(v, pow2i(h)), pow2i(_mm256_sub_epi32(i, h)));
}

static inline JB_KI vf v_where_gt(vf a, vf b, vf t, vf e) {
    return _mm256_blendv_ps(e, t, _mm256_cmp_ps(a, b, _CMP_GT_OQ));
}
static inline JB_KI vf v_where_nan(vf a, vf t, vf e) {
    return _mm256_blendv_ps(e, t, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
}
static inline JB_KI vf v_frexp(vf v, vf *e) {
    const __m256i b = _mm256_castps_si256(v);
    *e = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(b, 23), _mm256_set1_epi32(126)));
    const __m256i m = _mm256_and_si256(b, _mm256_set1_epi32((int)0x807fffff));
    return _mm256_castsi256_ps(_mm256_or_si256(m, _mm256_set1_epi32(0x3f000000)));
}

static inline JB_KI vf v_f32(const uint8_t *p) { return _mm256_loadu_ps((const float *)(const void *)p); }
static inline JB_KI vf v_bf16(const uint8_t *p) {
    const __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
}
static inline JB_KI vf v_f16(const uint8_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)p));
}
static inline JB_KI vf v_i8(const uint8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)p)));
}
static inline JB_KI vf v_e4m3(const uint8_t *p) {
    const __m256i idx = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)p));
    return _mm256_i32gather_ps(jb_cpu_e4m3_table, idx, 4);
}

/* The pairwise order: lanes i + i+4, then i + i+2, then i + i+1, four vectors at once. */
static inline JB_KI void v_reduce4(vf a, vf b, vf c, vf d, float out[4]) {
    const vf ab = _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
    const vf cd = _mm256_add_ps(_mm256_permute2f128_ps(c, d, 0x20), _mm256_permute2f128_ps(c, d, 0x31));
    const vf s = _mm256_add_ps(_mm256_shuffle_ps(ab, cd, _MM_SHUFFLE(1, 0, 1, 0)),
                               _mm256_shuffle_ps(ab, cd, _MM_SHUFFLE(3, 2, 3, 2)));
    const vf t = _mm256_add_ps(s, _mm256_permute_ps(s, _MM_SHUFFLE(2, 3, 0, 1)));
    float lanes[8];
    _mm256_storeu_ps(lanes, t); /* a in lane 0, c in 2, b in 4, d in 6 */
    out[0] = lanes[0], out[1] = lanes[4], out[2] = lanes[2], out[3] = lanes[6];
}

/* int8 x int8 (kernels_body.h): 16 bytes widened to 16 bits, vpmaddwd multiplies pairs into 8 int32 lanes. */
typedef __m256i vi;
typedef __m256i vq;
#define Q8_STEP 16
#define Q8_OFFSET 0
#define Q8_TILE_ROWS 2
#define Q8_TILE_COLS 4
static inline JB_KI vi vi_zero(void) { return _mm256_setzero_si256(); }
static inline JB_KI vq q8_load(const void *p) { return _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)p)); }
static inline JB_KI vi vi_dot(vi acc, vq x, vq w) { return _mm256_add_epi32(acc, _mm256_madd_epi16(x, w)); }
static inline JB_KI vi vi_wsum(vi acc, vq w) { return _mm256_add_epi32(acc, _mm256_madd_epi16(w, _mm256_set1_epi16(1))); }
static inline JB_KI int64_t vi_hsum(vi v) {
    const __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    const __m128i t = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    return _mm_cvtsi128_si32(_mm_add_epi32(t, _mm_shuffle_epi32(t, _MM_SHUFFLE(2, 3, 0, 1))));
}

/* bf16 x bf16 (kernels_body.h): the pairs widened by a shift and a mask. */
static inline JB_KI void v_b16_pairs(const uint16_t *p, vf *e, vf *o) {
    const __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)p);
    *e = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
    *o = _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32((int)0xffff0000u)));
}

#include "cpu/kernels_body.h"

#else
const jb_cpu_kernel_table jb_cpu_kernels_avx2 = {.set = JB_CPU_KERNELS_AVX2}; /* no gemm: not available */
#endif
