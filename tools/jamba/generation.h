/*
 * generation.h — what `jamba generate`, `jamba chat` and `jamba score` share: opening a model with its
 * tokenizer, prefilling with a progress bar, and a generation loop that streams text, stops on EOS ids and
 * stop strings, and keeps timing statistics.
 */
#ifndef JAMBA_CLI_GENERATION_H
#define JAMBA_CLI_GENERATION_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "tools/jamba/cli.h"

typedef struct gen_session {
    jamba_model *model;
    jamba_tokenizer *tok;
    jamba_context *ctx;
    jamba_sampler *sampler;
    int64_t n_ctx, n_batch;
    int32_t stop_ids[2 * JAMBA_MAX_EOS_IDS + 1]; /* tokenizer and config EOS ids (and <|eom|> in chat) */
    int n_stop_ids;
    int32_t pending;  /* a fed-but-not-yet-run token (the prompt's last, then each generated one), or -1 */
    double prefill_seconds, decode_seconds;
    int64_t prefill_tokens, decode_tokens;
} gen_session;

typedef struct gen_options {
    const char *model;        /* the model folder (the CLI's default already resolved: cli_default_model) */
    int64_t n_ctx;            /* 0: the prompt plus max_tokens */
    int64_t n_batch, threads;
    jamba_sampler_params sampling;
    jamba_context_params device; /* its device fields say where the model runs */
    jamba_model_params load;     /* load parameters (weight formats) */
    bool progress;            /* a progress bar on stderr while prefilling */
} gen_options;

/* Load model and tokenizer; create the context (n_ctx tokens) and the sampler. */
int gen_open(gen_session *s, const gen_options *o, int64_t n_ctx, jamba_error *err);
void gen_close(gen_session *s);

/* Feed `n` tokens to sequence 0 in steps of n_batch, all of them accepted by the sampler's history. With
 * keep_last the last one is held back for gen_run, which runs it and samples in one call
 * (jamba_decode_sample: on a GPU the logits never leave it). A progress bar is drawn when `progress` and
 * more than one step is needed. */
jamba_status gen_prefill(gen_session *s, const int32_t *ids, int64_t n, bool keep_last, bool progress,
                         jamba_error *err);

typedef struct gen_stop {
    const char *const *strings; /* stop strings */
    int n_strings;
    int64_t max_tokens;
} gen_stop;

typedef enum gen_end { GEN_END_EOS, GEN_END_STOP_STRING, GEN_END_MAX_TOKENS, GEN_END_CONTEXT } gen_end;

/* Run the held-back token and sample the next, repeatedly, printing the text to `out` as it completes and
 * holding back anything that could be the start of a stop string. The last printed token is fed before
 * returning; *last receives the token that ended the loop (an EOS id that was not fed), or -1. */
jamba_status gen_run(gen_session *s, const gen_stop *stop, FILE *out, gen_end *end, int32_t *last, jamba_error *err);

/* Redraw a progress bar on stderr: "<what> [=====>   ] done/total tokens, N tok/s" (newline when done). */
void gen_progress(const char *what, int64_t done, int64_t total, double seconds);

/* "prompt tokens 12, prefill 345.6 tok/s, generated 64 tokens, decode 78.9 tok/s, peak memory 123 MiB" */
void gen_print_stats(const gen_session *s);

#endif /* JAMBA_CLI_GENERATION_H */
