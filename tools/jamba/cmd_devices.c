/*
 * cmd_devices.c — `jamba devices`: the CPU kernel set in use, backend versions and the GPUs this build can use.
 */
#include "tools/jamba/cli.h"

#include "base/cpu_features.h"

#include <stdio.h>
#include <string.h>

/* CUDA encodes versions as 1000 * major + 10 * minor; cuBLAS (as queried) and NCCL as
 * 10000 * major + 100 * minor + patch. */
static void print_cuda_version(const char *what, int v) {
    if (v <= 0)
        printf("%-14s -\n", what);
    else
        printf("%-14s %d.%d\n", what, v / 1000, (v % 1000) / 10);
}

static void print_lib_version(const char *what, int v) {
    if (v <= 0)
        printf("%-14s -\n", what);
    else
        printf("%-14s %d.%d.%d\n", what, v / 10000, (v % 10000) / 100, v % 100);
}

static void print_help(void) {
    printf("usage: jamba devices\n\n"
           "Print the CPU kernel set in use (JAMBA_CPU_KERNELS=portable|avx2|avx512|avx512vnni|avx512bf16\n"
           "forces one; avx512vnni adds VNNI's int8 dot products for --activations int8, avx512bf16 also\n"
           "BF16's for --activations bf16), the CUDA\n"
           "runtime, driver, cuBLAS and NCCL versions this build uses, then each CUDA\n"
           "device with its compute capability and memory, after running a self-test kernel on it.\n"
           "Exits 1 when a device is present but this build's kernels cannot run on it.\n");
}

int cmd_devices(int argc, char **argv) {
    int rc = cli_parse("devices", argc, argv, NULL, 0, print_help);
    if (rc != 0)
        return rc < 0 ? CLI_EXIT_OK : rc;
    jamba_error err = {0};
    jamba_backend_info info;
    if (jamba_backend_query(&info, &err) != JAMBA_OK)
        return cli_fail(&err);
    printf("%-14s %s\n", "jamba", jamba_version());
    printf("%-14s %s\n", "cpu kernels", jb_cpu_kernels_describe());
    printf("%-14s %s\n", "cuda backend", info.cuda_built ? "built" : "not built");
    print_cuda_version("cuda runtime", info.cuda_runtime_version);
    print_cuda_version("cuda driver", info.cuda_driver_version);
    print_lib_version("cublas", info.cublas_version);
    print_lib_version("nccl", info.nccl_version);
    printf("%-14s %d%s%s\n", "devices", info.device_count, info.note[0] ? "  # " : "", info.note);
    int status = CLI_EXIT_OK;
    for (int d = 0; d < info.device_count; d++) {
        jamba_device_info dev;
        jamba_error derr = {0};
        jamba_status st = jamba_device_query(d, &dev, &derr);
        char total[32], free_b[32];
        printf("  [%d] %s  sm_%d%d  %d SMs  %s total, %s free  kernels %s\n", d, dev.name, dev.compute_major,
               dev.compute_minor, dev.multiprocessors, fmt_bytes(dev.total_memory, total, sizeof total),
               fmt_bytes(dev.free_memory, free_b, sizeof free_b), dev.kernels_run ? "ok" : "FAILED");
        if (st != JAMBA_OK)
            status = cli_fail(&derr);
    }
    return status;
}
