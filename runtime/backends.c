/*
 * backends.c — the one registration point: which backend serves each device type. Adding a backend is
 * adding its folder and a line here.
 */
#include "runtime/context.h"

#include "cpu/cpu.h"
#include "cuda/cuda.h"

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
