/*
 * step.h — what one internal forward step is made of, shared by the CPU forward pass and the CUDA
 * backend: the segments (one sequence's run of tokens each) and the capture hook.
 */
#ifndef JB_STEP_H
#define JB_STEP_H

#include <stdbool.h>
#include <stdint.h>

#include "jamba.h"

typedef struct jb_segment {
    int32_t seq;
    int64_t pos;          /* position of the first token in the sequence */
    int64_t n;            /* tokens */
    int64_t row;          /* first workspace row; a step's segments cover rows 0 .. T-1 in order */
    const int32_t *tokens;
} jb_segment;

/* Test and research hook (jamba_context_set_capture): when any part is set, every step copies what is
 * asked for into these host buffers of `rows` rows each, after the rows of earlier steps (rows beyond
 * `rows` are dropped), and calls the layer hook after every layer. A CUDA backend runs such steps outside
 * its graphs. */
typedef struct jb_capture {
    float *hidden;               /* [n_hidden, rows, H], or NULL: hidden states numbered as transformers'
                                    output_hidden_states (0 embeddings, i the stream entering layer i,
                                    L after the final norm) */
    const int64_t *hidden_index; /* [n_hidden]: the number each slot holds; NULL: slot i holds number i */
    int64_t n_hidden;
    float *final;                /* [rows, H]: after the final norm, or NULL */
    float *router;               /* [n_moe_layers, rows, E]: each MoE layer's router logits, layer order, or NULL */
    jamba_layer_hook hook;       /* or NULL */
    void *hook_data;
    int64_t rows;
    int64_t next_row;            /* where the next step's rows go */
} jb_capture;

static inline bool jb_capture_active(const jb_capture *c) {
    return c->hidden || c->final || c->router || c->hook;
}

/* Where hidden state `number` goes in c->hidden ([rows, H]), or NULL when it is not captured. */
static inline float *jb_capture_hidden(const jb_capture *c, int64_t number, int64_t hidden_size) {
    if (c->hidden == NULL)
        return NULL;
    if (c->hidden_index == NULL)
        return number < c->n_hidden ? c->hidden + number * c->rows * hidden_size : NULL;
    for (int64_t i = 0; i < c->n_hidden; i++)
        if (c->hidden_index[i] == number)
            return c->hidden + i * c->rows * hidden_size;
    return NULL;
}

/* Rows of a step of n_rows that still fit in the capture. */
static inline int64_t jb_capture_keep(const jb_capture *c, int64_t n_rows) {
    const int64_t room = c->rows - c->next_row;
    return room < 0 ? 0 : room < n_rows ? room : n_rows;
}

#endif /* JB_STEP_H */
