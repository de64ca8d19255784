/*
 * serve_engine.c — the scheduler thread and the per-request event queues of `jamba serve` (serve_engine.h).
 */
#include "tools/jamba/serve_engine.h"

#include "base/error.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct serve_engine {
    jamba_scheduler *sched;
    jamba_prefix_cache *cache;
    pthread_t thread;
    bool thread_started;
    atomic_bool stop;          /* the scheduler thread ends at its next look */
    atomic_bool failed;        /* a step failed: the context is dead */
    char failure[JAMBA_ERROR_MESSAGE_SIZE];
    int64_t n_ctx;
};

typedef struct serve_job {
    serve_group *group;
    int64_t id;                /* the scheduler's request id; 0 when not submitted */
    serve_event *queue;        /* events not yet taken, [n_queue] (group->mu) */
    int64_t n_queue, cap_queue;
    bool ended;                /* no further event will be queued */
    bool ending;               /* the HTTP side ended it: the next callback returns false */
    bool ended_seen;           /* serve_group_take has reported the end */
    double t_submit, t_first;  /* monotonic seconds; t_first 0 before the first token */
} serve_job;

struct serve_group {
    serve_engine *engine;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;                  /* the HTTP side's, plus one per job submitted and not ended */
    int n_jobs;
    serve_job jobs[];
};

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---- the scheduler thread --------------------------------------------------------------------- */

static void *scheduler_loop(void *arg) {
    serve_engine *e = arg;
    while (!atomic_load(&e->stop)) {
        if (!jamba_scheduler_wait(e->sched, 100))
            continue;
        jamba_error err = {0};
        if (jamba_scheduler_step(e->sched, NULL, &err) != JAMBA_OK) {
            /* only a dead context fails a step: nothing can run any more */
            snprintf(e->failure, sizeof e->failure, "%s", err.message);
            atomic_store(&e->failed, true);
            fprintf(stderr, "jamba serve: error: the scheduler stopped: %s\n", err.message);
            break;
        }
    }
    return NULL;
}

jamba_status serve_engine_create(const jamba_model *model, const serve_engine_params *p, serve_engine **out,
                                 jamba_error *err) {
    *out = NULL;
    serve_engine *e = calloc(1, sizeof *e);
    if (e == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "serve: out of memory");
    jamba_scheduler_params sp = p->scheduler;
    jamba_status st = JAMBA_OK;
    if (p->prefix_cache_bytes > 0 && (st = jamba_prefix_cache_create(p->prefix_cache_bytes, &e->cache, err)) == JAMBA_OK)
        sp.cache = e->cache;
    if (st == JAMBA_OK)
        st = jamba_scheduler_create(model, &p->context, &sp, &e->sched, err);
    if (st == JAMBA_OK && pthread_create(&e->thread, NULL, scheduler_loop, e) != 0)
        st = jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "serve: cannot start the scheduler thread");
    if (st != JAMBA_OK) {
        serve_engine_free(e);
        return st;
    }
    e->thread_started = true;
    jamba_context_params resolved;
    if (jamba_context_get_params(jamba_scheduler_context(e->sched), &resolved, err) != JAMBA_OK) {
        serve_engine_free(e);
        return err ? err->status : JAMBA_ERR_INVALID_ARGUMENT;
    }
    e->n_ctx = resolved.n_ctx;
    *out = e;
    return JAMBA_OK;
}

void serve_engine_free(serve_engine *e) {
    if (e == NULL)
        return;
    atomic_store(&e->stop, true);
    if (e->thread_started)
        pthread_join(e->thread, NULL);
    jamba_scheduler_free(e->sched); /* cancels what is left: each job's final event releases its group */
    jamba_prefix_cache_free(e->cache);
    free(e);
}

int32_t serve_engine_sequences(const serve_engine *e) {
    jamba_scheduler_stats s = {0};
    jamba_scheduler_get_stats(e->sched, &s, NULL);
    return s.n_seq_max;
}

int64_t serve_engine_n_ctx(const serve_engine *e) { return e->n_ctx; }

void serve_engine_stats(serve_engine *e, jamba_scheduler_stats *sched) {
    memset(sched, 0, sizeof *sched);
    jamba_scheduler_get_stats(e->sched, sched, NULL);
}

bool serve_engine_cache_stats(serve_engine *e, jamba_prefix_cache_stats *cache) {
    memset(cache, 0, sizeof *cache);
    return e->cache && jamba_prefix_cache_get_stats(e->cache, cache, NULL) == JAMBA_OK;
}

const char *serve_engine_failure(serve_engine *e) { return atomic_load(&e->failed) ? e->failure : NULL; }

/* ---- groups ----------------------------------------------------------------------------------- */

serve_group *serve_group_create(serve_engine *e, int n_jobs) {
    serve_group *g = calloc(1, sizeof *g + (size_t)n_jobs * sizeof g->jobs[0]);
    if (g == NULL)
        return NULL;
    if (pthread_mutex_init(&g->mu, NULL) != 0) {
        free(g);
        return NULL;
    }
    if (pthread_cond_init(&g->cv, NULL) != 0) {
        pthread_mutex_destroy(&g->mu);
        free(g);
        return NULL;
    }
    g->engine = e;
    g->refs = 1;
    g->n_jobs = n_jobs;
    for (int i = 0; i < n_jobs; i++) {
        g->jobs[i].group = g;
        g->jobs[i].ended = true; /* until submitted */
    }
    return g;
}

static void group_destroy(serve_group *g) {
    for (int i = 0; i < g->n_jobs; i++)
        free(g->jobs[i].queue);
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

/* Mark a job ended and drop its reference (g->mu held); true when that was the last reference. */
static bool end_job_locked(serve_job *j) {
    j->ended = true;
    pthread_cond_broadcast(&j->group->cv);
    return --j->group->refs == 0;
}

/* The token callback, on the scheduler thread: copy the event, signal, nothing more. */
static bool on_token(const jamba_token_event *ev, void *user_data) {
    serve_job *j = user_data;
    serve_group *g = j->group;
    pthread_mutex_lock(&g->mu);
    const bool was_ended = j->ended; /* never, by the scheduler's contract; then the event is only dropped */
    bool keep = !j->ending && !was_ended;
    if (keep && j->n_queue == j->cap_queue) {
        int64_t cap = j->cap_queue ? 2 * j->cap_queue : 16;
        serve_event *q = realloc(j->queue, (size_t)cap * sizeof *q);
        if (q == NULL)
            keep = false; /* out of memory: the job ends as cancelled, and the HTTP side sees it ended early */
        else
            j->queue = q, j->cap_queue = cap;
    }
    if (keep) {
        serve_event *out = &j->queue[j->n_queue++];
        out->token = ev->token;
        out->logprob = ev->logprob;
        out->n_top = ev->n_top < JAMBA_MAX_TOP_LOGPROBS ? ev->n_top : JAMBA_MAX_TOP_LOGPROBS;
        for (int32_t i = 0; i < out->n_top; i++) {
            out->top_tokens[i] = ev->top_tokens[i];
            out->top_logprobs[i] = ev->top_logprobs[i];
        }
        out->n_generated = ev->n_generated;
        out->n_prompt = ev->n_prompt;
        out->n_cached = ev->n_cached;
        out->finish = ev->finish;
        if (ev->finish == JAMBA_FINISH_ERROR)
            fprintf(stderr, "jamba serve: error: request %lld failed: %s\n", (long long)ev->request, ev->message);
        if (j->t_first == 0 && ev->token >= 0)
            j->t_first = now_seconds();
        pthread_cond_broadcast(&g->cv);
    }
    bool last = false;
    if (!was_ended && (!keep || ev->finish != JAMBA_FINISH_NONE))
        last = end_job_locked(j);
    pthread_mutex_unlock(&g->mu);
    if (last)
        group_destroy(g);
    return keep;
}

jamba_status serve_group_submit(serve_group *g, int index, jamba_request_params *params, jamba_error *err) {
    serve_job *j = &g->jobs[index];
    params->on_token = on_token;
    params->user_data = j;
    if (atomic_load(&g->engine->failed))
        return jb_fail(err, JAMBA_ERR_DEVICE, "%s", g->engine->failure);
    pthread_mutex_lock(&g->mu);
    g->refs++;
    j->ended = false;
    j->t_submit = now_seconds();
    pthread_mutex_unlock(&g->mu);
    int64_t id = 0;
    jamba_status st = jamba_scheduler_submit(g->engine->sched, params, &id, err);
    pthread_mutex_lock(&g->mu);
    if (st == JAMBA_OK) {
        j->id = id;
        if (j->ending && !j->ended) /* ended while being submitted */
            jamba_scheduler_cancel(g->engine->sched, id, NULL);
    } else {
        end_job_locked(j); /* never 0: the caller holds its reference */
    }
    pthread_mutex_unlock(&g->mu);
    return st;
}

void serve_group_wait(serve_group *g, int timeout_ms) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L)
        until.tv_sec++, until.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&g->mu);
    for (;;) {
        bool ready = false;
        for (int i = 0; i < g->n_jobs && !ready; i++)
            ready = g->jobs[i].n_queue > 0 || (g->jobs[i].ended && !g->jobs[i].ended_seen);
        if (ready || pthread_cond_timedwait(&g->cv, &g->mu, &until) != 0)
            break;
    }
    pthread_mutex_unlock(&g->mu);
}

void serve_group_take(serve_group *g, int index, serve_event **events, int64_t *n_events, int64_t *cap, bool *ended) {
    serve_job *j = &g->jobs[index];
    pthread_mutex_lock(&g->mu);
    /* swap the job's queue with the caller's array, so neither side copies */
    serve_event *mine = *events;
    int64_t my_cap = *cap;
    *events = j->queue;
    *cap = j->cap_queue;
    *n_events = j->n_queue;
    j->queue = mine;
    j->cap_queue = my_cap;
    j->n_queue = 0;
    if (ended) {
        *ended = j->ended;
        j->ended_seen = j->ended;
    }
    pthread_mutex_unlock(&g->mu);
}

double serve_group_first_token_seconds(serve_group *g, int index) {
    pthread_mutex_lock(&g->mu);
    const serve_job *j = &g->jobs[index];
    double s = j->t_first > 0 ? j->t_first - j->t_submit : -1;
    pthread_mutex_unlock(&g->mu);
    return s;
}

void serve_group_end(serve_group *g, int index) {
    serve_job *j = &g->jobs[index];
    pthread_mutex_lock(&g->mu);
    const bool running = !j->ended && !j->ending;
    j->ending = true;
    j->n_queue = 0;
    const int64_t id = j->id;
    pthread_mutex_unlock(&g->mu);
    /* the request ends at the start of the next step; its callback then returns false or sees it finished */
    if (running && id > 0)
        jamba_scheduler_cancel(g->engine->sched, id, NULL);
}

void serve_group_release(serve_group *g) {
    for (int i = 0; i < g->n_jobs; i++)
        serve_group_end(g, i);
    pthread_mutex_lock(&g->mu);
    const bool last = --g->refs == 0;
    pthread_mutex_unlock(&g->mu);
    if (last)
        group_destroy(g);
}
