/*
 * threadpool.c — fork-join pool on pthreads. Workers sleep on a condition variable between jobs; a job is
 * published with a generation counter and joined with a countdown.
 */
#include "base/threadpool.h"

#include "base/alloc.h"
#include "base/error.h"

#include <pthread.h>
#include <string.h>

struct jb_pool {
    int n_threads;           /* including the caller */
    pthread_t *workers;      /* [n_threads - 1] */
    int n_started;
    pthread_mutex_t lock;
    pthread_cond_t wake;     /* a new job or shutdown */
    pthread_cond_t done;     /* the last worker finished */
    uint64_t generation;     /* bumped per job */
    int pending;             /* workers still running the current job */
    int shutdown;
    /* the current job */
    jb_pool_fn fn;
    void *arg;
    int64_t n, chunk;
};

static void run_share(jb_pool *p, int thread) {
    int64_t begin = (int64_t)thread * p->chunk;
    int64_t end = begin + p->chunk < p->n ? begin + p->chunk : p->n;
    if (begin < end)
        p->fn(p->arg, begin, end, thread);
}

typedef struct worker_arg {
    jb_pool *pool;
    int thread;
} worker_arg;

static void *worker_main(void *raw) {
    worker_arg wa = *(worker_arg *)raw;
    jb_free(raw);
    jb_pool *p = wa.pool;
    uint64_t seen = 0;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->shutdown && p->generation == seen)
            pthread_cond_wait(&p->wake, &p->lock);
        if (p->shutdown)
            break;
        seen = p->generation;
        pthread_mutex_unlock(&p->lock);
        run_share(p, wa.thread);
        pthread_mutex_lock(&p->lock);
        if (--p->pending == 0)
            pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
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
    pthread_mutex_lock(&p->lock);
    p->shutdown = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
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
    if (parts > p->n_threads)
        parts = p->n_threads;
    if (parts <= 1) {
        fn(arg, 0, n, 0);
        return;
    }
    pthread_mutex_lock(&p->lock);
    p->fn = fn;
    p->arg = arg;
    p->n = n;
    p->chunk = (n + parts - 1) / parts;
    p->pending = p->n_threads - 1;
    p->generation++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    run_share(p, 0);
    pthread_mutex_lock(&p->lock);
    while (p->pending > 0)
        pthread_cond_wait(&p->done, &p->lock);
    pthread_mutex_unlock(&p->lock);
}
