/*
 * device.h — C ABI of the CUDA backend's device queries (cuda/device.cu). Only compiled in when the
 * project is configured with JAMBA_CUDA.
 */
#ifndef JB_CUDA_DEVICE_H
#define JB_CUDA_DEVICE_H

#include "jamba.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Fill versions and the device count; a missing driver or GPU is reported in out->note, not as an error. */
jamba_status jb_cuda_backend_query(jamba_backend_info *out, jamba_error *err);

/* Properties of device `index` plus a self-test kernel launch that proves this build's code runs there. */
jamba_status jb_cuda_device_query(int index, jamba_device_info *out, jamba_error *err);

#ifdef __cplusplus
}
#endif

#endif /* JB_CUDA_DEVICE_H */
