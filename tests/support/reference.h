/*
 * reference.h — reading the forward-pass fixtures (tools/gen_fixtures.py) and comparing against them.
 */
#ifndef JB_TEST_REFERENCE_H
#define JB_TEST_REFERENCE_H

#include <stdint.h>

#include "ckpt/safetensors.h"
#include "jamba.h"

typedef struct ref_file {
    jb_st_file st;
} ref_file;

/* Open tests/fixtures/forward/<name>/reference.safetensors. */
void ref_open(ref_file *r, const char *name);
/* Open another file of that fixture (internals.safetensors). */
void ref_open_file(ref_file *r, const char *name, const char *file);
void ref_close(ref_file *r);
/* A tensor's data and (optionally) shape; the test fails when it is missing or of another dtype. */
const float *ref_f32(const ref_file *r, const char *tensor, int64_t shape[8]);
const int64_t *ref_i64(const ref_file *r, const char *tensor, int64_t shape[8]);

/* Load tests/fixtures/forward/<name>/model with weights. */
jamba_model *ref_load_model(const char *name);

/* A context for tests: n_ctx 0 means the default; room for 64 logit rows per call. */
jamba_context *ref_context(const jamba_model *m, int32_t n_seq, int64_t n_ctx, int64_t n_batch, int32_t threads);

/* ||a - b|| / ||b|| over n values. */
double rel_l2(const float *a, const float *b, int64_t n);

/* The bound every comparison with the reference must meet (the acceptance). */
#define REF_TOL 1e-5

#endif
