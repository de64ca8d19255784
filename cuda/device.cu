/*
 * device.cu — CUDA, cuBLAS and NCCL versions, device properties, and a self-test kernel.
 *
 * The self-test catches the failures that otherwise surface only at the first decode: a GPU older than
 * the architectures this build contains (no kernel image), a driver older than the runtime, or a device
 * that is present but unusable. The caller's current device is restored afterwards.
 */
#include "cuda/device.h"

#include "base/error.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <string.h>
#ifdef JAMBA_WITH_NCCL
#include <nccl.h>
#endif

#ifndef JB_CUDA_ARCHS
#define JB_CUDA_ARCHS "unknown"
#endif

/* out[i] = i * 3 + 1 for i < n: trivial, but only runs if the kernel image matches the device. */
__global__ void jb_selftest_kernel(int *out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        out[i] = i * 3 + 1;
}

static int cublas_version(void) {
    int major = 0, minor = 0, patch = 0;
    if (cublasGetProperty(MAJOR_VERSION, &major) != CUBLAS_STATUS_SUCCESS ||
        cublasGetProperty(MINOR_VERSION, &minor) != CUBLAS_STATUS_SUCCESS ||
        cublasGetProperty(PATCH_LEVEL, &patch) != CUBLAS_STATUS_SUCCESS)
        return 0;
    return major * 10000 + minor * 100 + patch;
}

extern "C" jamba_status jb_cuda_backend_query(jamba_backend_info *out, jamba_error *err) {
    (void)err;
    out->cuda_built = true;
    cudaRuntimeGetVersion(&out->cuda_runtime_version);
    cudaDriverGetVersion(&out->cuda_driver_version); /* 0 when no driver is installed */
    out->cublas_version = cublas_version();
#ifdef JAMBA_WITH_NCCL
    out->nccl_built = true;
    int v = 0;
    if (ncclGetVersion(&v) == ncclSuccess)
        out->nccl_version = v;
#endif
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        if (out->cuda_driver_version == 0)
            snprintf(out->note, sizeof out->note, "no NVIDIA driver installed (%s)", cudaGetErrorString(e));
        else
            snprintf(out->note, sizeof out->note, "no CUDA device: %s", cudaGetErrorString(e));
        cudaGetLastError(); /* clear the non-sticky error */
        count = 0;
    } else if (count == 0) {
        snprintf(out->note, sizeof out->note, "no CUDA device present");
    }
    out->device_count = count;
    return JAMBA_OK;
}

static jamba_status run_selftest(int index, jamba_device_info *out, jamba_error *err) {
    const int n = 1000;
    int *dev = NULL;
    int host[1000];
    cudaError_t e = cudaMalloc((void **)&dev, n * sizeof(int));
    if (e == cudaSuccess) {
        jb_selftest_kernel<<<(n + 255) / 256, 256>>>(dev, n);
        e = cudaGetLastError();
    }
    if (e == cudaSuccess)
        e = cudaMemcpy(host, dev, sizeof host, cudaMemcpyDeviceToHost);
    if (dev)
        cudaFree(dev);
    if (e != cudaSuccess)
        return jb_fail(err, JAMBA_ERR_DEVICE, "device %d (%s, sm_%d%d): this build's kernels (sm %s) do not run: %s",
                       index, out->name, out->compute_major, out->compute_minor, JB_CUDA_ARCHS, cudaGetErrorString(e));
    for (int i = 0; i < n; i++)
        if (host[i] != i * 3 + 1)
            return jb_fail(err, JAMBA_ERR_DEVICE, "device %d (%s): self-test kernel wrote %d at %d, expected %d",
                           index, out->name, host[i], i, i * 3 + 1);
    out->kernels_run = true;
    return JAMBA_OK;
}

extern "C" jamba_status jb_cuda_device_query(int index, jamba_device_info *out, jamba_error *err) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return jb_fail(err, JAMBA_ERR_NO_DEVICE, "device %d: no CUDA device: %s", index, cudaGetErrorString(e));
    }
    if (index < 0 || index >= count)
        return jb_fail(err, JAMBA_ERR_NO_DEVICE, "device %d: only %d CUDA device%s present", index, count,
                       count == 1 ? "" : "s");
    cudaDeviceProp prop;
    if ((e = cudaGetDeviceProperties(&prop, index)) != cudaSuccess)
        return jb_fail(err, JAMBA_ERR_DEVICE, "device %d: cannot read properties: %s", index, cudaGetErrorString(e));
    snprintf(out->name, sizeof out->name, "%s", prop.name);
    out->compute_major = prop.major;
    out->compute_minor = prop.minor;
    out->multiprocessors = prop.multiProcessorCount;
    out->total_memory = prop.totalGlobalMem;
    int previous = 0;
    cudaGetDevice(&previous);
    if ((e = cudaSetDevice(index)) != cudaSuccess)
        return jb_fail(err, JAMBA_ERR_DEVICE, "device %d (%s): cannot select: %s", index, out->name,
                       cudaGetErrorString(e));
    size_t free_b = 0, total_b = 0;
    jamba_status st = JAMBA_OK;
    if ((e = cudaMemGetInfo(&free_b, &total_b)) != cudaSuccess)
        st = jb_fail(err, JAMBA_ERR_DEVICE, "device %d (%s): cannot query memory: %s", index, out->name,
                     cudaGetErrorString(e));
    out->free_memory = free_b;
    if (st == JAMBA_OK)
        st = run_selftest(index, out, err);
    cudaSetDevice(previous);
    return st;
}
