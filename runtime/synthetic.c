/*
 * synthetic.c — random-weight models in memory (synthetic.h).
 */
#include "runtime/synthetic.h"
#include "ckpt/init_rule.h"

#include "ckpt/config.h"
#include "ckpt/st_write.h"
#include "ckpt/weights.h"
#include "base/alloc.h"
#include "base/checked.h"
#include "base/error.h"
#include "runtime/model.h"
#include "base/threadpool.h"

#include <math.h>
#include <string.h>

typedef struct fill_job {
    const jb_tensor_spec *specs;
    uint8_t **data;          /* [n] where each tensor's bytes go */
    jamba_dtype dtype;
    uint64_t seed;
} fill_job;

static uint64_t mix(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double unit(uint64_t *x) { return (double)(mix(x) >> 11) * 0x1.0p-53; }

static void store(uint8_t *dst, jamba_dtype dtype, int64_t i, float v) {
    if (dtype == JAMBA_DTYPE_F32) {
        memcpy(dst + 4 * i, &v, 4);
        return;
    }
    uint32_t b;
    memcpy(&b, &v, 4);
    b += 0x7fffu + ((b >> 16) & 1u); /* round to nearest even; the values are finite */
    uint16_t h = (uint16_t)(b >> 16);
    memcpy(dst + 2 * i, &h, 2);
}

/* One tensor's values by what the name says it is. */
static void fill_tensor(const jb_tensor_spec *t, uint8_t *dst, jamba_dtype dtype, uint64_t seed) {
    int64_t n = 1;
    for (int d = 0; d < t->rank; d++)
        n *= t->shape[d];
    uint64_t x = seed;
    double a;
    switch (jb_synthetic_init(t->name, t->shape[t->rank - 1], &a)) {
    case JB_INIT_ONES:
        for (int64_t i = 0; i < n; i++)
            store(dst, dtype, i, 1.0f);
        break;
    case JB_INIT_A_LOG: /* [D_i, N] */
        for (int64_t i = 0; i < n; i++)
            store(dst, dtype, i, logf((float)(i % t->shape[1] + 1)));
        break;
    case JB_INIT_DT_BIAS:
        for (int64_t i = 0; i < n; i++) {
            double dt = exp(log(0.001) + unit(&x) * (log(0.1) - log(0.001)));
            store(dst, dtype, i, (float)(dt + log(-expm1(-dt))));
        }
        break;
    default:
        for (int64_t i = 0; i < n; i++)
            store(dst, dtype, i, (float)((2 * unit(&x) - 1) * a));
    }
}

static void fill_range(void *arg, int64_t i0, int64_t i1, int thread) {
    (void)thread;
    const fill_job *j = arg;
    for (int64_t i = i0; i < i1; i++)
        fill_tensor(&j->specs[i], j->data[i], j->dtype, j->seed * 0x100000001b3ull + (uint64_t)i);
}

jamba_status jb_synthetic_model(const char *config_json, uint64_t seed, jamba_dtype dtype, int n_threads,
                                jamba_model **out, jamba_error *err) {
    *out = NULL;
    if (dtype != JAMBA_DTYPE_F32 && dtype != JAMBA_DTYPE_BF16)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "synthetic model: dtype F32 or BF16");
    jamba_config cfg;
    JB_TRY(jb_config_parse(config_json, strlen(config_json), "synthetic config", &cfg, NULL, err));
    jb_tensor_spec *specs = NULL;
    int64_t n = 0;
    JB_TRY(jb_expected_tensors(&cfg, &specs, &n, err));
    jb_st_out_tensor *list = jb_calloc((size_t)n, sizeof *list);
    uint8_t **data = jb_calloc((size_t)n, sizeof *data);
    char *header = NULL;
    size_t header_len = 0;
    uint8_t *image = NULL;
    jb_pool *pool = NULL;
    jamba_status st = list && data ? JAMBA_OK : jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "synthetic model: out of memory");
    for (int64_t i = 0; st == JAMBA_OK && i < n; i++) {
        list[i] = (jb_st_out_tensor){.name = specs[i].name, .dtype = dtype, .rank = specs[i].rank};
        memcpy(list[i].shape, specs[i].shape, sizeof specs[i].shape);
    }
    if (st == JAMBA_OK)
        st = jb_st_header(list, n, &header, &header_len, err);
    uint64_t total = 8 + header_len, at = 0;
    for (int64_t i = 0; st == JAMBA_OK && i < n; i++) {
        uint64_t bytes = jamba_dtype_size(dtype);
        for (int d = 0; d < specs[i].rank; d++)
            if (!jb_mul_u64(bytes, (uint64_t)specs[i].shape[d], &bytes))
                st = jb_fail(err, JAMBA_ERR_OVERFLOW, "synthetic model: tensor size overflows");
        if (st == JAMBA_OK && !jb_add_u64(total, bytes, &total))
            st = jb_fail(err, JAMBA_ERR_OVERFLOW, "synthetic model: size overflows");
    }
    if (st == JAMBA_OK && (total > SIZE_MAX || (image = jb_malloc((size_t)total)) == NULL))
        st = jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "synthetic model: out of memory for %.2f GiB of weights",
                     (double)total / (1 << 30));
    if (st == JAMBA_OK) {
        for (int i = 0; i < 8; i++)
            image[i] = (uint8_t)((uint64_t)header_len >> (8 * i));
        memcpy(image + 8, header, header_len);
        at = 8 + header_len;
        for (int64_t i = 0; i < n; i++) { /* the header lists the tensors in this order */
            data[i] = image + at;
            uint64_t bytes = jamba_dtype_size(dtype);
            for (int d = 0; d < specs[i].rank; d++)
                bytes *= (uint64_t)specs[i].shape[d];
            at += bytes;
        }
        st = jb_pool_create(n_threads > 0 ? n_threads : 1, &pool, err);
    }
    if (st == JAMBA_OK) {
        fill_job job = {specs, data, dtype, seed};
        jb_pool_run(pool, n, 1, fill_range, &job);
        st = jb_model_from_image(config_json, strlen(config_json), image, total, "synthetic", out, err);
        image = NULL; /* the model owns it, also on failure */
    }
    jb_pool_free(pool);
    jb_free(image);
    jb_free(header);
    jb_free(data);
    jb_free(list);
    jb_free(specs);
    return st;
}
