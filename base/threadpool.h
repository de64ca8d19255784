/*
 * threadpool.h — a fork-join pool owned by one context: jb_pool_run splits [0, n) into contiguous ranges
 * that the threads (the caller among them) claim one at a time, and returns when all are done. Which thread
 * runs which range is not fixed. Not for nested use.
 */
#ifndef JB_THREADPOOL_H
#define JB_THREADPOOL_H

#include <stdint.h>

#include "jamba.h"

typedef struct jb_pool jb_pool;

/* fn(arg, begin, end, thread): process items [begin, end) as worker `thread` in [0, n_threads). */
typedef void (*jb_pool_fn)(void *arg, int64_t begin, int64_t end, int thread);

jamba_status jb_pool_create(int n_threads, jb_pool **out, jamba_error *err);
void jb_pool_free(jb_pool *pool);
int jb_pool_threads(const jb_pool *pool);

/* Ranges per thread at most: a thread that is descheduled or slow leaves its share to the others. */
#define JB_POOL_RANGES_PER_THREAD 4

/* Run fn over [0, n) split into equal ranges of at least `grain` items each, at most
 * JB_POOL_RANGES_PER_THREAD per thread; a single range runs on the caller alone. */
void jb_pool_run(jb_pool *pool, int64_t n, int64_t grain, jb_pool_fn fn, void *arg);

#endif /* JB_THREADPOOL_H */
