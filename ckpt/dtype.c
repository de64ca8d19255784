/*
 * dtype.c — the safetensors dtype table.
 */
#include "ckpt/dtype.h"

#include <math.h>
#include <string.h>

static const struct {
    const char *name;
    size_t size;
} dtype_table[JAMBA_DTYPE_COUNT_] = {
    [JAMBA_DTYPE_UNKNOWN] = {"UNKNOWN", 0},  [JAMBA_DTYPE_F32] = {"F32", 4},
    [JAMBA_DTYPE_F16] = {"F16", 2},          [JAMBA_DTYPE_BF16] = {"BF16", 2},
    [JAMBA_DTYPE_F64] = {"F64", 8},          [JAMBA_DTYPE_I64] = {"I64", 8},
    [JAMBA_DTYPE_I32] = {"I32", 4},          [JAMBA_DTYPE_I16] = {"I16", 2},
    [JAMBA_DTYPE_I8] = {"I8", 1},            [JAMBA_DTYPE_U64] = {"U64", 8},
    [JAMBA_DTYPE_U32] = {"U32", 4},          [JAMBA_DTYPE_U16] = {"U16", 2},
    [JAMBA_DTYPE_U8] = {"U8", 1},            [JAMBA_DTYPE_BOOL] = {"BOOL", 1},
    [JAMBA_DTYPE_F8_E4M3] = {"F8_E4M3", 1},  [JAMBA_DTYPE_F8_E5M2] = {"F8_E5M2", 1},
};

const char *jamba_dtype_name(jamba_dtype dtype) {
    if ((int)dtype < 0 || dtype >= JAMBA_DTYPE_COUNT_)
        return "UNKNOWN";
    return dtype_table[dtype].name;
}

size_t jamba_dtype_size(jamba_dtype dtype) {
    if ((int)dtype < 0 || dtype >= JAMBA_DTYPE_COUNT_)
        return 0;
    return dtype_table[dtype].size;
}

jamba_dtype jb_dtype_from_name(const char *name) {
    for (int d = 1; d < JAMBA_DTYPE_COUNT_; d++)
        if (strcmp(dtype_table[d].name, name) == 0)
            return (jamba_dtype)d;
    return JAMBA_DTYPE_UNKNOWN;
}

static float bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    if (exp == 0x1f) { /* inf / nan */
        bits = sign | 0x7f800000u | (mant << 13);
    } else if (exp != 0) { /* normal */
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    } else if (mant == 0) { /* zero */
        bits = sign;
    } else { /* subnormal: normalise */
        int e = -1;
        do {
            e++;
            mant <<= 1;
        } while (!(mant & 0x400));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((mant & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

void jb_to_f32(float *dst, const void *src, jamba_dtype dtype, int64_t n) {
    const uint8_t *p = src;
    if (dtype == JAMBA_DTYPE_F32) {
        memcpy(dst, src, (size_t)n * 4);
    } else if (dtype == JAMBA_DTYPE_BF16) {
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = bf16_to_f32(h);
        }
    } else if (dtype == JAMBA_DTYPE_F16) {
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = f16_to_f32(h);
        }
    } else if (dtype == JAMBA_DTYPE_I8) {
        for (int64_t i = 0; i < n; i++)
            dst[i] = (float)(int8_t)p[i];
    } else { /* F8_E4M3: bind.c admits these five */
        for (int64_t i = 0; i < n; i++)
            dst[i] = jb_e4m3_to_f32(p[i]);
    }
}

float jb_e4m3_to_f32(uint8_t b) {
    /* OCP FP8 E4M3FN: bias 7, no infinities, S.1111.111 is NaN */
    const float sign = b & 0x80 ? -1.0f : 1.0f;
    const int exp = (b >> 3) & 0xf, mant = b & 7;
    if (exp == 0xf && mant == 7)
        return NAN;
    if (exp == 0)
        return sign * ldexpf((float)mant, -9); /* subnormal: mant/8 x 2^-6 */
    return sign * ldexpf((float)(8 + mant), exp - 10);
}

