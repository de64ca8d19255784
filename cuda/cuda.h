/*
 * cuda.h — the CUDA backend's operations table (registered in runtime/backends.c). In a build without the
 * CUDA toolkit the table still plans memory (jamba_context_plan_memory, `jamba inspect --device cuda`)
 * and refuses to create contexts with JAMBA_ERR_NO_DEVICE.
 */
#ifndef JB_CUDA_CUDA_H
#define JB_CUDA_CUDA_H

#include "backend/backend.h"

extern const jb_backend_i jb_cuda_backend;

#endif /* JB_CUDA_CUDA_H */
