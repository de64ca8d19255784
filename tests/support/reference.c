/*
 * reference.c — see reference.h.
 */
#include "tests/support/reference.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/testutil.h"

void ref_open(ref_file *r, const char *name) { ref_open_file(r, name, "reference.safetensors"); }

void ref_open_file(ref_file *r, const char *name, const char *file) {
    char rel[256];
    snprintf(rel, sizeof rel, "forward/%s/%s", name, file);
    char *path = tu_fixture(rel);
    jamba_error err = {0};
    cr_assert_eq(jb_st_open(path, path, &r->st, &err), JAMBA_OK, "%s", err.message);
    free(path);
}

void ref_close(ref_file *r) { jb_st_close(&r->st); }

static const void *tensor(const ref_file *r, const char *name, jamba_dtype dtype, int64_t shape[8]) {
    for (int64_t i = 0; i < r->st.n_tensors; i++) {
        const jb_st_tensor *t = &r->st.tensors[i];
        if (strcmp(t->name, name) != 0)
            continue;
        cr_assert_eq(t->dtype, dtype, "reference tensor %s has dtype %s", name, jamba_dtype_name(t->dtype));
        if (shape)
            memcpy(shape, t->shape, sizeof t->shape);
        return jb_st_tensor_data(&r->st, t);
    }
    cr_assert_fail("reference tensor %s missing", name);
    return NULL;
}

const float *ref_f32(const ref_file *r, const char *name, int64_t shape[8]) {
    return tensor(r, name, JAMBA_DTYPE_F32, shape);
}

const int64_t *ref_i64(const ref_file *r, const char *name, int64_t shape[8]) {
    return tensor(r, name, JAMBA_DTYPE_I64, shape);
}

jamba_model *ref_load_model(const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "forward/%s/model", name);
    char *dir = tu_fixture(rel);
    jamba_model *m = NULL;
    jamba_error err = {0};
    cr_assert_eq(jamba_model_load(dir, NULL, &m, &err), JAMBA_OK, "%s", err.message);
    free(dir);
    return m;
}

jamba_context *ref_context(const jamba_model *m, int32_t n_seq, int64_t n_ctx, int64_t n_batch, int32_t threads) {
    jamba_context_params p = jamba_context_default_params();
    p.n_logits_max = 64;
    p.n_seq_max = n_seq;
    p.n_ctx = n_ctx;
    p.n_batch = n_batch;
    p.n_threads = threads;
    jamba_context *ctx = NULL;
    jamba_error err = {0};
    cr_assert_eq(jamba_context_create(m, &p, &ctx, &err), JAMBA_OK, "%s", err.message);
    return ctx;
}

double rel_l2(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}
