/*
 * cpu.h — the CPU backend's operations table (registered in runtime/backends.c).
 */
#ifndef JB_CPU_CPU_H
#define JB_CPU_CPU_H

#include "backend/backend.h"

/* The step size when n_batch is 0. */
#define JB_CPU_DEFAULT_BATCH 512

extern const jb_backend_i jb_cpu_backend;

#endif /* JB_CPU_CPU_H */
