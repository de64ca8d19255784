/*
 * cpu_attention.c — one (query row, head) per work item: scores, max-subtracted fp32 softmax, weighted sum.
 */
#include "cpu/attention.h"

#include "cpu/ops.h"

static void attend(void *arg, int64_t i0, int64_t i1, int thread) {
    const jb_attn_args *a = arg;
    const int64_t dh = a->head_dim, group = a->n_heads / a->n_kv_heads;
    const int64_t q_ld = a->n_heads * dh, kv_ld = a->n_kv_heads * dh;
    const float scale = sqrtf((float)dh);
    float *score = a->scratch + (int64_t)thread * a->scratch_stride;
    for (int64_t item = i0; item < i1; item++) {
        const int64_t row = item / a->n_heads, head = item % a->n_heads, kvh = head / group;
        const int64_t n_keys = a->pos + row + 1;
        const float *q = a->q + row * q_ld + head * dh;
        for (int64_t j = 0; j < n_keys; j++) {
            const float *k = a->k + j * kv_ld + kvh * dh;
            float s = 0.0f;
            for (int64_t d = 0; d < dh; d++)
                s += q[d] * k[d];
            score[j] = s / scale;
        }
        jb_softmax(score, n_keys);
        float *o = a->out + row * q_ld + head * dh;
        for (int64_t d = 0; d < dh; d++)
            o[d] = 0.0f;
        for (int64_t j = 0; j < n_keys; j++) {
            const float *v = a->v + j * kv_ld + kvh * dh;
            for (int64_t d = 0; d < dh; d++)
                o[d] += score[j] * v[d];
        }
    }
}

void jb_cpu_attention(jb_pool *pool, const jb_attn_args *a) {
    jb_pool_run(pool, a->n * a->n_heads, 1, attend, (void *)a);
}
