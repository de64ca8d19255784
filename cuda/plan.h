/*
 * plan.h — the CUDA backend's memory plan (plan.c).
 */
#ifndef JB_CUDA_PLAN_H
#define JB_CUDA_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "backend/model.h"
#include "jamba.h"

/* The plan for resolved params p, given the device's free memory (0: unknown, then an 80 GB planning
 * budget) and whether the weights are already on it (then they do not count). With n_batch 0 it
 * chooses the largest prefill chunk of 4096 ... 16 that fits. */
jamba_status jb_cuda_plan_memory(const jamba_model *m, const jamba_context_params *p, uint64_t free_bytes,
                                 bool weights_resident, jamba_context_plan *out, jamba_error *err);

#endif /* JB_CUDA_PLAN_H */
