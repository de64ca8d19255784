/*
 * reference.c — see reference.h.
 */
#include "reference.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

void ref_open(ref_file *r, const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "forward/%s/reference.safetensors", name);
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

double rel_l2(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}
