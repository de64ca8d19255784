/*
 * quantize_util.h — what the quantized-weight suites (tests/test_quantize_*.c) share: loading a model with
 * given weight formats, all logits of a token sequence, bit-exact logit comparison, a fixed probe sequence,
 * and an editable list of tensors written as a model folder. Every helper fails the test on error.
 */
#ifndef JB_TEST_QUANTIZE_UTIL_H
#define JB_TEST_QUANTIZE_UTIL_H

#include <stdint.h>

#include "ckpt/st_write.h"
#include "jamba.h"

#define QU_DEMO JB_SOURCE_DIR "/models/demo"

/* The four weight formats of jamba_model_params. */
typedef struct qu_formats {
    jamba_weight_format experts, mlp, mixers, lm_head;
} qu_formats;

/* Every group int8 (jamba --weights int8). */
#define QU_ALL_INT8 ((qu_formats){JAMBA_FORMAT_INT8, JAMBA_FORMAT_INT8, JAMBA_FORMAT_INT8, JAMBA_FORMAT_INT8})

/* Load `dir` with the given weight formats (2 threads). */
jamba_model *qu_load_formats(const char *dir, qu_formats f);
/* Load `dir` with the given expert / dense-MLP weight formats, the rest as stored (2 threads). */
jamba_model *qu_load_with(const char *dir, jamba_weight_format experts, jamba_weight_format mlp);
/* Load `dir` as stored. */
jamba_model *qu_load_plain(const char *dir);

/* Logits [T, V] of `tokens` fed as one sequence from an empty state (chunked prefill); caller frees. */
float *qu_all_logits(const jamba_model *m, const int32_t *tokens, int64_t T);
/* The same, int8 weights multiplying `activations` (jamba_context_params.cpu_activations: F32 or I8). */
float *qu_all_logits_as(const jamba_model *m, const int32_t *tokens, int64_t T, jamba_dtype activations);
/* Every bit of two logit arrays equal. */
void qu_expect_identical(const float *a, const float *b, int64_t n, const char *what);
/* Logits [QU_SPLIT_TOKENS, V] of a fixed token sequence with `activations`, checked bit-identical for 1, 2 and 3
 * threads in one step and for 2 threads in steps of 5 tokens; caller frees. */
#define QU_SPLIT_TOKENS 37
float *qu_expect_split_invariant(const jamba_model *m, jamba_dtype activations);

/* A short fixed token sequence [QU_N_PROBE] for bit-exactness checks (ids below the demo's vocabulary of
 * 2048; taken modulo smaller vocabularies by qu_small_probe). */
#define QU_N_PROBE 16
extern const int32_t qu_probe[QU_N_PROBE];
/* qu_probe modulo a vocabulary of V into ids[QU_N_PROBE]. */
void qu_small_probe(int32_t *ids, int64_t V);

/* A whole text file as a NUL-terminated string (caller frees). */
char *qu_read_text(const char *path);

/* ---- an editable list of tensors to write as a safetensors file ---------------------------------- */

typedef struct tensor_list {
    jb_st_out_tensor *v;
    int64_t n, cap;
    void **own; /* names and data this list allocated */
    int64_t n_own, cap_own;
} tensor_list;

/* Hand `p` (non-NULL) to the list, which frees it; returns p. */
void *tl_keep(tensor_list *l, void *p);
/* Append (the name is copied; data must outlive the list, or be tl_keep'd). */
void tl_add(tensor_list *l, const char *name, jamba_dtype dtype, int rank, const int64_t *shape, const void *data);
/* Index of `name`, or -1. */
int64_t tl_find(const tensor_list *l, const char *name);
/* Remove `name` (which must be there). */
void tl_remove(tensor_list *l, const char *name);
void tl_free(tensor_list *l);

/* The tensors of tests/fixtures/models/<name> (F32) in `l`; returns config.json's text (caller frees). */
char *qu_fixture_tensors(const char *name, tensor_list *l);
/* Write `l` as model.safetensors with `config` as config.json to a new temporary folder (caller removes
 * and frees). */
char *qu_folder_of(const char *config, const tensor_list *l);

#endif
