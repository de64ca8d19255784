/*
 * serve_engine.h — the generation side of `jamba serve`: the library's scheduler (continuous batching) with its
 * prefix-state cache, driven by one thread that loops jamba_scheduler_wait + jamba_scheduler_step, and the
 * hand-over of generated tokens to the HTTP threads.
 *
 * An HTTP request becomes a group of jobs (one per choice). Each job is one scheduler request; its token
 * callback runs on the scheduler thread and only copies the event into the job's queue and signals the
 * group. The HTTP thread takes the queued events (serve_group_take), turns them into text, and may end a job
 * early (serve_group_end: a stop string matched, the client went away). A group lives until the HTTP side has
 * released it and every job has had its final event, whichever comes last.
 */
#ifndef JAMBA_CLI_SERVE_ENGINE_H
#define JAMBA_CLI_SERVE_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "jamba.h"

typedef struct serve_engine serve_engine;
typedef struct serve_group serve_group;

/* One token event as the HTTP side receives it (jamba_token_event, copied). */
typedef struct serve_event {
    jamba_token token;          /* -1 in a final event that carries none */
    float logprob;
    int32_t n_top;
    jamba_token top_tokens[JAMBA_MAX_TOP_LOGPROBS];
    float top_logprobs[JAMBA_MAX_TOP_LOGPROBS];
    int64_t n_generated, n_prompt, n_cached;
    jamba_finish_reason finish;
} serve_event;

typedef struct serve_engine_params {
    jamba_context_params context;  /* n_seq_max 0 = as many sequences as memory allows */
    jamba_scheduler_params scheduler;
    uint64_t prefix_cache_bytes;   /* 0: no prefix cache */
} serve_engine_params;

/* Create the prefix cache and the scheduler over `model` and start the scheduler thread. */
jamba_status serve_engine_create(const jamba_model *model, const serve_engine_params *p, serve_engine **out,
                                 jamba_error *err);
/* Stop the thread and free the scheduler (which cancels what is left) and the cache. No HTTP thread may
 * use the engine any more. */
void serve_engine_free(serve_engine *e);

/* Sequences of the context (requests that run at once) and tokens each may hold. */
int32_t serve_engine_sequences(const serve_engine *e);
int64_t serve_engine_n_ctx(const serve_engine *e);

/* The scheduler's and (false when there is none) the prefix cache's statistics. */
void serve_engine_stats(serve_engine *e, jamba_scheduler_stats *sched);
bool serve_engine_cache_stats(serve_engine *e, jamba_prefix_cache_stats *cache);

/* The message of the failure (a dead context) that stopped the scheduler thread, or NULL while it runs. */
const char *serve_engine_failure(serve_engine *e);

/* A group of n_jobs jobs (NULL when out of memory); the caller holds the HTTP side's reference. */
serve_group *serve_group_create(serve_engine *e, int n_jobs);

/* Submit job `index` with `params` (its on_token and user_data are set here). On failure the job counts as
 * ended (JAMBA_FINISH_ERROR) and the status says why (jamba_scheduler_submit's). */
jamba_status serve_group_submit(serve_group *g, int index, jamba_request_params *params, jamba_error *err);

/* Wait until some job has events or has ended and not been looked at, or timeout_ms pass. */
void serve_group_wait(serve_group *g, int timeout_ms);

/* Move job `index`'s queued events into *events, an array of *cap the caller owns and frees (exchanged with
 * the job's queue, so nothing is copied): *n_events of them. *ended (may be NULL) tells that the job has had
 * its final event (the last one taken, or none when serve_group_end ended it or it failed to submit). */
void serve_group_take(serve_group *g, int index, serve_event **events, int64_t *n_events, int64_t *cap, bool *ended);

/* The seconds between job `index`'s submission and its first token event, or -1 before it. */
double serve_group_first_token_seconds(serve_group *g, int index);

/* End job `index` early: cancel its scheduler request (no more events are queued). */
void serve_group_end(serve_group *g, int index);

/* The HTTP side is done: end every job still running and drop its reference. */
void serve_group_release(serve_group *g);

#endif /* JAMBA_CLI_SERVE_ENGINE_H */
