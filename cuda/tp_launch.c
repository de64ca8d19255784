/*
 * tp_launch.c — one thread per rank past the first, woken by a generation count (tp_launch.h).
 */
#include "cuda/tp_launch.h"

#include "base/alloc.h"
#include "base/error.h"

#include <pthread.h>
#include <string.h>

struct jb_tp_launcher {
    int n;
    pthread_t *threads;   /* [n - 1]: rank r on threads[r - 1] */
    int started;          /* threads running */
    pthread_mutex_t lock;
    pthread_cond_t wake, done;
    unsigned long generation; /* bumped per run; a thread runs once per generation */
    int pending;          /* threads still running this generation */
    bool all_ok, quit;
    jb_tp_launch_fn fn;
    void *arg;
};

typedef struct worker {
    jb_tp_launcher *l;
    int rank;
} worker;

static void *work(void *p) {
    jb_tp_launcher *l = ((worker *)p)->l;
    const int rank = ((worker *)p)->rank;
    jb_free(p);
    unsigned long seen = 0;
    pthread_mutex_lock(&l->lock);
    for (;;) {
        while (!l->quit && l->generation == seen)
            pthread_cond_wait(&l->wake, &l->lock);
        if (l->quit)
            break;
        seen = l->generation;
        pthread_mutex_unlock(&l->lock);
        const bool ok = l->fn(l->arg, rank);
        pthread_mutex_lock(&l->lock);
        l->all_ok = l->all_ok && ok;
        if (--l->pending == 0)
            pthread_cond_signal(&l->done);
    }
    pthread_mutex_unlock(&l->lock);
    return NULL;
}

jamba_status jb_tp_launcher_create(int n, jb_tp_launcher **out, jamba_error *err) {
    *out = NULL;
    jb_tp_launcher *l = jb_calloc(1, sizeof *l);
    if (l == NULL || (n > 1 && (l->threads = jb_calloc((size_t)(n - 1), sizeof *l->threads)) == NULL)) {
        jb_free(l);
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "multi-GPU launcher: out of memory");
    }
    l->n = n;
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->wake, NULL);
    pthread_cond_init(&l->done, NULL);
    for (int r = 1; r < n; r++) {
        worker *w = jb_malloc(sizeof *w);
        int rc = w ? 0 : -1;
        if (w) {
            *w = (worker){l, r};
            rc = pthread_create(&l->threads[r - 1], NULL, work, w);
            if (rc != 0)
                jb_free(w);
        }
        if (rc != 0) {
            jb_tp_launcher_free(l);
            return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "multi-GPU launcher: cannot start a thread for rank %d of %d",
                           r, n);
        }
        l->started++;
    }
    *out = l;
    return JAMBA_OK;
}

void jb_tp_launcher_free(jb_tp_launcher *l) {
    if (l == NULL)
        return;
    pthread_mutex_lock(&l->lock);
    l->quit = true;
    pthread_cond_broadcast(&l->wake);
    pthread_mutex_unlock(&l->lock);
    for (int i = 0; i < l->started; i++)
        pthread_join(l->threads[i], NULL);
    pthread_cond_destroy(&l->done);
    pthread_cond_destroy(&l->wake);
    pthread_mutex_destroy(&l->lock);
    jb_free(l->threads);
    jb_free(l);
}

bool jb_tp_launcher_run(jb_tp_launcher *l, jb_tp_launch_fn fn, void *arg) {
    pthread_mutex_lock(&l->lock);
    l->fn = fn;
    l->arg = arg;
    l->all_ok = true;
    l->pending = l->n - 1;
    l->generation++;
    pthread_cond_broadcast(&l->wake);
    pthread_mutex_unlock(&l->lock);
    const bool ok = fn(arg, 0);
    pthread_mutex_lock(&l->lock);
    while (l->pending > 0)
        pthread_cond_wait(&l->done, &l->lock);
    const bool all = l->all_ok && ok;
    pthread_mutex_unlock(&l->lock);
    return all;
}
