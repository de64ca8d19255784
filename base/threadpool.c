/*
 * threadpool.c — fork-join pool on pthreads. A job is one atomic word: its generation, the next unclaimed
 * range and the number of ranges. Every thread, the caller included, claims ranges with a compare-and-swap
 * on that word until none is left; the caller then waits until every claimed range is done. So a worker
 * that is asleep or descheduled when a job starts never delays it: the others take its ranges.
 *
 * Waiting: idle workers (and the caller waiting for the last range) spin briefly with a pause instruction,
 * so the back-to-back operations of one step hand over in well under a microsecond, then sleep on
 * condition variables. No wake-up is missed: a sleeper announces itself (sleepers / caller_waiting) under
 * the mutex and re-checks the condition; the other side changes the condition and then reads the
 * announcement, both sequentially consistent, so at least one sees the other, and the signal is sent under
 * the mutex.
 */
#include "base/threadpool.h"

#include "base/alloc.h"
#include "base/error.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

/* How long an idle worker (or the waiting caller) spins before it sleeps: longer than the gaps between the
 * products of one decode step (routing, norms, the caller's small operations), so that workers are awake
 * for the next one. Measured against 10 us on the 2-core machine, 2 threads, paired runs: synthetic MoE
 * decode 34.5 -> 39.6 tok/s, demo decode 2,153 -> 2,298 tok/s (medians; docs/BENCHMARKS.md). */
#define JB_POOL_SPIN_NS 100000

/* The job word: generation (bits 32-63), next range (16-31), ranges (0-15). */
#define JOB_WORD(gen, next, count) (((uint64_t)(gen) << 32) | ((uint64_t)(next) << 16) | (uint64_t)(count))
#define JOB_GEN(w) ((uint32_t)((w) >> 32))
#define JOB_NEXT(w) ((int)(((w) >> 16) & 0xffff))
#define JOB_COUNT(w) ((int)((w) & 0xffff))

struct jb_pool {
    int n_threads;              /* including the caller */
    pthread_t *workers;         /* [n_threads - 1] */
    int n_started;
    pthread_mutex_t lock;
    pthread_cond_t wake;        /* a new job or shutdown */
    pthread_cond_t done;        /* the last range finished */
    _Atomic uint64_t job;       /* JOB_WORD */
    _Atomic int ranges_done;    /* of the current job */
    _Atomic int sleepers;       /* workers asleep (or going to sleep) on wake */
    _Atomic int caller_waiting; /* the caller asleep (or going to sleep) on done */
    _Atomic int shutdown;
    uint32_t generation;        /* the caller's count of jobs published */
    /* the current job: written before its word is published, read only by a thread holding a range */
    jb_pool_fn fn;
    void *arg;
    int64_t n, chunk;
    int ranges;
};

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static bool generation_moved(jb_pool *p, uint32_t seen) {
    return JOB_GEN(atomic_load_explicit(&p->job, memory_order_acquire)) != seen;
}

static bool all_done(jb_pool *p, uint32_t ranges) {
    return atomic_load_explicit(&p->ranges_done, memory_order_acquire) == (int)ranges;
}

/* Spin up to JB_POOL_SPIN_NS until cond(p, v); true when it became true. Reads the clock every 64 spins. */
static bool spin_until(jb_pool *p, bool (*cond)(jb_pool *, uint32_t), uint32_t v) {
    int64_t deadline = 0;
    for (int i = 0;; i++) {
        if (cond(p, v))
            return true;
        if ((i & 63) == 0) {
            const int64_t t = now_ns();
            if (deadline == 0)
                deadline = t + JB_POOL_SPIN_NS;
            else if (t > deadline)
                return false;
        }
        cpu_relax();
    }
}

/* Claim the next unclaimed range of job `gen`; false when none is left or another job has begun. */
static bool claim(jb_pool *p, uint32_t gen, int *range) {
    uint64_t w = atomic_load_explicit(&p->job, memory_order_acquire);
    while (JOB_GEN(w) == gen && JOB_NEXT(w) < JOB_COUNT(w))
        if (atomic_compare_exchange_weak_explicit(&p->job, &w, w + ((uint64_t)1 << 16), memory_order_acq_rel,
                                                  memory_order_acquire)) {
            *range = JOB_NEXT(w);
            return true;
        }
    return false;
}

/* Run ranges of job `gen` as `thread` until none is left. */
static void run_ranges(jb_pool *p, uint32_t gen, int thread) {
    int r;
    while (claim(p, gen, &r)) {
        const int64_t begin = (int64_t)r * p->chunk, end = begin + p->chunk < p->n ? begin + p->chunk : p->n;
        if (begin < end)
            p->fn(p->arg, begin, end, thread);
        const int ranges = p->ranges; /* read before the job can end */
        if (atomic_fetch_add(&p->ranges_done, 1) + 1 == ranges && atomic_load(&p->caller_waiting)) {
            pthread_mutex_lock(&p->lock);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->lock);
        }
    }
}

typedef struct worker_arg {
    jb_pool *pool;
    int thread;
} worker_arg;

/* The generation after `seen`: spinning first, then asleep on wake. */
static uint32_t await_job(jb_pool *p, uint32_t seen) {
    if (!spin_until(p, generation_moved, seen)) {
        pthread_mutex_lock(&p->lock);
        atomic_fetch_add(&p->sleepers, 1);
        while (JOB_GEN(atomic_load(&p->job)) == seen)
            pthread_cond_wait(&p->wake, &p->lock);
        atomic_fetch_sub(&p->sleepers, 1);
        pthread_mutex_unlock(&p->lock);
    }
    return JOB_GEN(atomic_load_explicit(&p->job, memory_order_acquire));
}

static void *worker_main(void *raw) {
    worker_arg wa = *(worker_arg *)raw;
    jb_free(raw);
    jb_pool *p = wa.pool;
    uint32_t seen = 0;
    for (;;) {
        seen = await_job(p, seen);
        if (atomic_load(&p->shutdown))
            break;
        run_ranges(p, seen, wa.thread);
    }
    return NULL;
}

/* Publish a job of `ranges` ranges (0 at shutdown) and wake sleeping workers; its generation. */
static uint32_t publish(jb_pool *p, int ranges) {
    const uint32_t gen = ++p->generation;
    atomic_store(&p->job, JOB_WORD(gen, 0, ranges));
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->lock);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->lock);
    }
    return gen;
}

jamba_status jb_pool_create(int n_threads, jb_pool **out, jamba_error *err) {
    *out = NULL;
    if (n_threads < 1)
        n_threads = 1;
    jb_pool *p = jb_calloc(1, sizeof *p);
    if (p == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "thread pool: out of memory");
    p->n_threads = n_threads;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    if (n_threads > 1 && (p->workers = jb_calloc((size_t)n_threads - 1, sizeof *p->workers)) == NULL) {
        jb_pool_free(p);
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "thread pool: out of memory");
    }
    for (int t = 1; t < n_threads; t++) {
        worker_arg *wa = jb_malloc(sizeof *wa);
        if (wa == NULL) {
            jb_pool_free(p);
            return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "thread pool: out of memory");
        }
        *wa = (worker_arg){p, t};
        int rc = pthread_create(&p->workers[t - 1], NULL, worker_main, wa);
        if (rc != 0) {
            jb_free(wa);
            jb_pool_free(p);
            return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "thread pool: cannot start thread %d of %d: %s", t,
                           n_threads, strerror(rc));
        }
        p->n_started++;
    }
    *out = p;
    return JAMBA_OK;
}

void jb_pool_free(jb_pool *p) {
    if (p == NULL)
        return;
    atomic_store(&p->shutdown, 1);
    publish(p, 0);
    for (int t = 0; t < p->n_started; t++)
        pthread_join(p->workers[t], NULL);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    jb_free(p->workers);
    jb_free(p);
}

int jb_pool_threads(const jb_pool *p) { return p->n_threads; }

void jb_pool_run(jb_pool *p, int64_t n, int64_t grain, jb_pool_fn fn, void *arg) {
    if (n <= 0)
        return;
    if (grain < 1)
        grain = 1;
    int64_t parts = (n + grain - 1) / grain;
    if (parts > (int64_t)p->n_threads * JB_POOL_RANGES_PER_THREAD)
        parts = (int64_t)p->n_threads * JB_POOL_RANGES_PER_THREAD;
    if (parts > 0xffff) /* JOB_COUNT's width */
        parts = 0xffff;
    if (parts <= 1 || p->n_threads == 1) {
        fn(arg, 0, n, 0);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    p->n = n;
    p->chunk = (n + parts - 1) / parts;
    p->ranges = (int)parts;
    atomic_store_explicit(&p->ranges_done, 0, memory_order_relaxed);
    const uint32_t gen = publish(p, (int)parts);
    run_ranges(p, gen, 0);
    if (!spin_until(p, all_done, (uint32_t)parts)) {
        pthread_mutex_lock(&p->lock);
        atomic_store(&p->caller_waiting, 1);
        while (atomic_load(&p->ranges_done) < parts)
            pthread_cond_wait(&p->done, &p->lock);
        atomic_store(&p->caller_waiting, 0);
        pthread_mutex_unlock(&p->lock);
    }
}
