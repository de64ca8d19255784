/*
 * backend.h — the interface every backend implements (as ggml's ggml_backend_i): a const table of
 * operations over an opaque per-context state. The runtime's context holds the table and the state and
 * never looks inside; runtime/backends.c is the one registration point that maps a device type to its
 * table. A backend owns its sequence state (KV cache, conv windows, SSM states), its workspaces, and for
 * a device backend its graphs and sampling buffers. The runtime owns what is common: the sequence
 * lengths (n_past, the one writer), the step plan (segments), the host logits and the capture buffers.
 *
 * Errors: every operation returns a status and fills err. A backend whose device faulted mid-operation
 * may refuse every later call on that state (it can still be freed).
 */
#ifndef JB_BACKEND_BACKEND_H
#define JB_BACKEND_BACKEND_H

#include <stdbool.h>
#include <stdint.h>

#include "backend/model.h"
#include "backend/step.h"
#include "jamba.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct jb_backend_ctx jb_backend_ctx; /* each backend defines it */

/* One internal forward step as the runtime hands it to a backend. */
typedef struct jb_step_io {
    const jb_segment *segs;    /* [n_segs] covering rows 0 .. n_rows-1 in order */
    int64_t n_segs, n_rows;
    const int64_t *logit_src;  /* [n_logits] the step rows that get logits */
    int64_t n_logits;
    int64_t logit_dst;         /* their logit rows: [logit_dst, logit_dst + n_logits) */
    float *host_logits;        /* [n_logits_max, V] where logit rows go, or NULL: keep them on the device
                                  (only for a backend with `sample`) */
    jb_capture *capture;       /* hidden-state capture, or NULL; the runtime advances next_row */
    jamba_abort_fn abort_fn;   /* NULL, or polled between layers: when it returns true the backend stops the
                                  step with JAMBA_ERR_ABORTED (the runtime restores the Mamba state) */
    void *abort_data;
} jb_step_io;

/* One piece of a sequence's state (the state-file order: per Mamba layer conv then SSM, then per
 * attention layer K then V). Layers are counted among the Mamba or among the attention layers. */
typedef enum jb_state_kind { JB_STATE_CONV = 0, JB_STATE_SSM = 1, JB_STATE_K = 2, JB_STATE_V = 3 } jb_state_kind;

/* Sampling parameters of one logit row, for a backend that samples where its logits are. The draw is
 * taken from the row's jamba_sampler, so the result equals what jamba_sampler_sample would give. */
#define JB_SAMPLE_MAX_K 256
#define JB_SAMPLE_MAX_PENALIZED 512 /* distinct penalised ids per row */

typedef struct jb_sample_params {
    float temperature;        /* 0 = greedy */
    int32_t top_k;            /* 1 .. JB_SAMPLE_MAX_K when temperature > 0 */
    float top_p, min_p;
    float repetition_penalty, presence_penalty;
    int32_t n_penalized;      /* ids in the row's penalized list (distinct) */
    double uniform;           /* the draw in [0, 1), from the sampler's generator */
} jb_sample_params;

typedef struct jb_backend_i {
    const char *name;          /* "CPU", "CUDA" (for messages) */
    jamba_device_type device;

    /* Check the device-specific fields of p and fill the backend's defaults (n_batch, n_threads). */
    jamba_status (*resolve)(const jamba_model *m, jamba_context_params *p, jamba_error *err);
    /* The memory plan of a context with resolved params p, before anything is allocated (a device backend
     * probes its free memory and chooses n_batch / n_logits_max when they are 0). */
    jamba_status (*plan)(const jamba_model *m, const jamba_context_params *p, jamba_context_plan *out,
                         jamba_error *err);
    /* Allocate the state of a context with resolved and planned params (n_batch, n_logits_max set). */
    jamba_status (*create)(const jamba_model *m, const jamba_context_params *p, jb_backend_ctx **out,
                           jamba_error *err);
    void (*free)(jb_backend_ctx *b);
    /* Bytes the state holds (on its device), for reports. */
    uint64_t (*bytes)(const jb_backend_ctx *b);
    /* Change the host-side worker threads (resolved: >= 1) between calls; on failure the old ones stay. */
    jamba_status (*set_threads)(jb_backend_ctx *b, int32_t n_threads, jamba_error *err);

    /* One forward step. Does not change sequence lengths: the runtime sets them when it succeeds. */
    jamba_status (*step)(jb_backend_ctx *b, const jb_step_io *io, jamba_error *err);

    /* Zero the Mamba state of seq (its KV rows are dead once its length is 0). */
    jamba_status (*seq_reset)(jb_backend_ctx *b, int32_t seq, jamba_error *err);
    /* Copy all state of src to dst, KV rows [0, n_tokens). */
    jamba_status (*seq_copy)(jb_backend_ctx *b, int32_t src, int32_t dst, int64_t n_tokens, jamba_error *err);
    /* Read or write n floats of one piece from float `offset` (a device backend converts from/to its
     * cache dtype). */
    jamba_status (*state_read)(jb_backend_ctx *b, int32_t seq, jb_state_kind kind, int64_t layer, int64_t offset,
                               int64_t n, float *dst, jamba_error *err);
    jamba_status (*state_write)(jb_backend_ctx *b, int32_t seq, jb_state_kind kind, int64_t layer, int64_t offset,
                                int64_t n, const float *src, jamba_error *err);

    /* Optional (NULL when logits always go to host_logits and the runtime samples on the host). Copy
     * logit row `row` (kept on the device) to dst [V]. */
    jamba_status (*logits_row)(jb_backend_ctx *b, int64_t row, float *dst, jamba_error *err);
    /* Optional: sample logit rows [0, n) kept on the device. params [n]; penalized [n, max_penalized].
     * tokens[i] = the token or -1 (nothing drawable); used_draw[i] tells whether the draw was used. */
    jamba_status (*sample)(jb_backend_ctx *b, int64_t n, const jb_sample_params *params, const int32_t *penalized,
                           int64_t max_penalized, int32_t *tokens, int32_t *used_draw, jamba_error *err);

    /* Optional: what this build offers (jamba_backend_query) and device `index` (jamba_device_query). */
    jamba_status (*query)(jamba_backend_info *out, jamba_error *err);
    jamba_status (*device_query)(int index, jamba_device_info *out, jamba_error *err);
} jb_backend_i;

#ifdef __cplusplus
}
#endif

#endif /* JB_BACKEND_BACKEND_H */
