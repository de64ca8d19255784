/*
 * generation.h — what `jamba generate`, `jamba chat` and `jamba score` share: opening a model with its
 * tokenizer, the sampling defaults of its generation_config.json, prefilling with a progress bar, a
 * generation loop that streams text, stops on EOS ids and stop strings, and keeps timing statistics, Ctrl-C
 * handling, and the check of logits for NaN/Inf.
 */
#ifndef JAMBA_CLI_GENERATION_H
#define JAMBA_CLI_GENERATION_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "tools/jamba/cli.h"

/* A growing list of token ids. */
typedef struct gen_ids {
    int32_t *v;
    int64_t n, cap;
} gen_ids;

typedef struct gen_session {
    jamba_model *model;
    jamba_tokenizer *tok;
    jamba_context *ctx;
    jamba_sampler *sampler;
    const char *dir;  /* the model folder, for messages */
    bool host_logits; /* the CPU path: each logits row is checked for NaN/Inf on the host, then sampled */
    int64_t n_ctx;    /* tokens the context holds */
    int64_t n_batch;  /* prompt tokens fed per step (Ctrl-C and the progress bar are looked at in between) */
    int32_t stop_ids[2 * JAMBA_MAX_EOS_IDS + 1]; /* tokenizer and config EOS ids (and <|eom|> in chat) */
    int n_stop_ids;
    int32_t pending;  /* a fed-but-not-yet-run token (the prompt's last, then each generated one), or -1 */
    gen_ids *record;  /* when set, gen_run appends every generated id to it */
    double prefill_seconds, decode_seconds;
    int64_t prompt_tokens;  /* tokens given to gen_prefill */
    int64_t prefill_tokens; /* of them, those run by the prefill steps (the held-back last one runs in gen_run) */
    int64_t decode_tokens;  /* tokens sampled */
} gen_session;

typedef struct gen_options {
    const char *model;        /* the model folder (the CLI's default already resolved: cli_default_model) */
    int64_t n_batch, threads;
    int64_t max_tokens;       /* per generation (a reply in chat) */
    jamba_sampler_params sampling;
    jamba_context_params device; /* its device fields say where the model runs */
    jamba_model_params load;     /* load parameters (weight formats) */
    bool progress;            /* a progress bar on stderr while prefilling */
} gen_options;

/* The sampling defaults of `dir`/generation_config.json (Hugging Face's keys temperature, top_p, top_k,
 * min_p, repetition_penalty, max_new_tokens, and do_sample: false = greedy) over *p and *max_tokens; keys
 * the file does not give (or gives as null) leave them unchanged, and no file changes nothing.
 * JAMBA_ERR_BAD_CONFIG naming the file and key for malformed JSON or a value of the wrong type or range. */
jamba_status gen_read_defaults(const char *dir, jamba_sampler_params *p, int64_t *max_tokens, jamba_error *err);

/* Load the model and its tokenizer (CLI_EXIT_FAIL with err set on failure; gen_close cleans up either way). */
int gen_open(gen_session *s, const gen_options *o, jamba_error *err);
/* Create the context of n_ctx tokens (0: the library's default, min(max_position_embeddings,
 * JAMBA_DEFAULT_N_CTX)) and the sampler. */
int gen_start(gen_session *s, const gen_options *o, int64_t n_ctx, jamba_error *err);
void gen_close(gen_session *s);

/* Ctrl-C: arm (again) the SIGINT handler, which only sets a flag that generation looks at between tokens
 * and between prefill steps. The handler resets itself, so a second Ctrl-C before the next arming ends the
 * program at once; reads are not restarted, so a blocked read of stdin returns (EINTR). A SIGINT that was
 * ignored when the program started stays ignored. */
void gen_arm_interrupt(void);
bool gen_interrupted(void);

/* Feed `n` tokens to sequence 0 in steps of n_batch, all of them accepted by the sampler's history. With
 * keep_last the last one is held back for gen_run, which runs it and samples in one call
 * (jamba_decode_sample: on a GPU the logits never leave it). A progress bar is drawn when `progress` and
 * more than one step is needed. After a Ctrl-C it stops between steps and returns JAMBA_OK with part of the
 * tokens fed and none held back (gen_interrupted() tells). */
jamba_status gen_prefill(gen_session *s, const int32_t *ids, int64_t n, bool keep_last, bool progress,
                         jamba_error *err);

typedef struct gen_stop {
    const char *const *strings; /* stop strings (non-empty) */
    int n_strings;
    int64_t max_tokens;
} gen_stop;

typedef enum gen_end {
    GEN_END_EOS,
    GEN_END_STOP_STRING,
    GEN_END_MAX_TOKENS,
    GEN_END_CONTEXT,
    GEN_END_INTERRUPT, /* Ctrl-C */
} gen_end;

/* "eos", "stop", "length", "context" or "interrupted". */
const char *gen_end_name(gen_end end);

/* Run the held-back token and sample the next, repeatedly, printing the text to `out` as it completes and
 * holding back anything that could be the start of a stop string. The last printed token is fed before
 * returning; *last receives the token that ended the loop (an EOS id that was not fed), or -1. Logits with
 * NaN or Inf are JAMBA_ERR_NUMERIC (gen_fail_non_finite). */
jamba_status gen_run(gen_session *s, const gen_stop *stop, FILE *out, gen_end *end, int32_t *last, jamba_error *err);

/* True when every one of the n values is finite. */
bool gen_logits_finite(const float *row, int64_t n);
/* Set err to JAMBA_ERR_NUMERIC: "<dir>: the model produced non-finite logits at position <pos> (a broken
 * checkpoint? try `jamba inspect --check-finite`)"; returns the status. */
jamba_status gen_fail_non_finite(jamba_error *err, const char *dir, int64_t pos);

/* A JSON string of n bytes of text, each invalid UTF-8 sequence replaced by U+FFFD; NULL when out of memory. */
json_t *gen_json_text(const char *text, size_t n);

/* Append an id (false when out of memory). */
bool gen_ids_push(gen_ids *ids, int32_t id);

/* Redraw a progress bar on stderr: "<what> [=====>   ] done/total tokens, N tok/s" (newline when done). */
void gen_progress(const char *what, int64_t done, int64_t total, double seconds);

/* "prompt tokens 12, prefill 345.6 tok/s, generated 64 tokens, decode 78.9 tok/s, peak memory 123 MiB" on
 * stderr; a phase that ran no tokens shows no rate. */
void gen_print_stats(const gen_session *s);
/* The same as {"prefill": {"tokens", "seconds", "tokens_per_second"}, "decode": {...}, "peak_memory_bytes"}
 * (tokens_per_second null for a phase that ran no tokens); NULL when out of memory. */
json_t *gen_stats_json(const gen_session *s);

#endif /* JAMBA_CLI_GENERATION_H */
