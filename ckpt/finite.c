/*
 * finite.c — optional load-time scan for NaN/Inf weights (the format allows them; a model with them is
 * almost always a broken conversion).
 */
#include "ckpt/weights.h"

#include "base/error.h"

#include <math.h>
#include <string.h>

/* Index of the first non-finite element, or -1. Reads through memcpy: the data may be misaligned. */
static int64_t first_non_finite(const uint8_t *p, uint64_t n, jamba_dtype dtype) {
    for (uint64_t i = 0; i < n; i++) {
        if (dtype == JAMBA_DTYPE_F32) {
            float f;
            memcpy(&f, p + 4 * i, 4);
            if (!isfinite(f))
                return (int64_t)i;
        } else {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            /* all-ones exponent: BF16 0x7f80, F16 0x7c00 */
            uint16_t exp_mask = dtype == JAMBA_DTYPE_BF16 ? 0x7f80 : 0x7c00;
            if ((h & exp_mask) == exp_mask)
                return (int64_t)i;
        }
    }
    return -1;
}

jamba_status jb_check_finite(const jb_checkpoint *ckpt, int64_t entry, jamba_error *err) {
    const jb_ckpt_entry *e = &ckpt->entries[entry];
    const jb_st_tensor *t = e->tensor;
    if (t->dtype == JAMBA_DTYPE_F8_E4M3) { /* NaN is S.1111.111; there is no infinity */
        const uint8_t *p = jb_st_tensor_data(&ckpt->shards[e->shard], t);
        for (uint64_t i = 0; i < t->n_elements; i++)
            if ((p[i] & 0x7f) == 0x7f)
                return jb_fail(err, JAMBA_ERR_WEIGHT_MISMATCH, "%s: tensor \"%s\" has a NaN at element %llu",
                               ckpt->shards[e->shard].label, e->name, (unsigned long long)i);
        return JAMBA_OK;
    }
    if (t->dtype != JAMBA_DTYPE_F32 && t->dtype != JAMBA_DTYPE_F16 && t->dtype != JAMBA_DTYPE_BF16)
        return JAMBA_OK;
    int64_t bad = first_non_finite(jb_st_tensor_data(&ckpt->shards[e->shard], t), t->n_elements, t->dtype);
    if (bad >= 0)
        return jb_fail(err, JAMBA_ERR_WEIGHT_MISMATCH, "%s: tensor \"%s\" has a NaN or Inf at element %lld",
                       ckpt->shards[e->shard].label, e->name, (long long)bad);
    return JAMBA_OK;
}
