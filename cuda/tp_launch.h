/*
 * tp_launch.h — run one call per rank at the same time, each on its own thread: how a multi-GPU context
 * replays its per-rank decode graphs. NCCL warns that with several GPUs in one process, cudaGraphLaunch of
 * a graph holding NCCL collectives may block until the other GPUs' graphs are launched too, so launching
 * them one after another from one thread can deadlock; here rank 0's call runs on the caller and every
 * other rank's on a thread of its own, all started before any is waited for. Host C (pthreads), built in
 * every configuration and tested on the CPU (tests/test_nccl_join.c).
 */
#ifndef JB_CUDA_TP_LAUNCH_H
#define JB_CUDA_TP_LAUNCH_H

#include <stdbool.h>

#include "jamba.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct jb_tp_launcher jb_tp_launcher;

/* fn(arg, rank): false on failure (the caller's arg says why). */
typedef bool (*jb_tp_launch_fn)(void *arg, int rank);

/* n ranks: n - 1 threads, which wait between runs. */
jamba_status jb_tp_launcher_create(int n, jb_tp_launcher **out, jamba_error *err);
void jb_tp_launcher_free(jb_tp_launcher *l);

/* Run fn(arg, r) for every r in [0, n) concurrently (r = 0 on the caller) and wait for all; true when
 * every call returned true. Not reentrant. */
bool jb_tp_launcher_run(jb_tp_launcher *l, jb_tp_launch_fn fn, void *arg);

#ifdef __cplusplus
}
#endif

#endif /* JB_CUDA_TP_LAUNCH_H */
