/*
 * backends.c — the one registration point: which backend serves each device type. Adding a backend is
 * adding its folder and a line here.
 */
#include "runtime/context.h"

#include "cpu/cpu.h"
#include "cuda/cuda.h"
#include "cuda/tp.h"

const jb_backend_i *jb_backend_for(jamba_device_type device) {
    switch (device) {
    case JAMBA_DEVICE_CPU:
        return &jb_cpu_backend;
    case JAMBA_DEVICE_CUDA:
        return &jb_cuda_backend; /* a build without the toolkit has its planner and refuses contexts */
    default:
        return NULL;
    }
}

const jb_backend_i *jb_backend_for_context(const jamba_context_params *p) {
    if (p->device == JAMBA_DEVICE_CUDA && p->n_gpus > 1)
        return &jb_cuda_tp_backend; /* several GPUs over NCCL; refuses contexts in a build without it */
    return jb_backend_for(p->device);
}
