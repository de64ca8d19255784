/*
 * emu.h — the CUDA device built-ins for running the backend's kernels on the CPU (tests/emu, docs/gpu-
 * verification.md "CPU emulation"). Every lowered CUDA source of cuda/ (emu_lower.cpp) starts by including it.
 *
 * A launch runs its blocks one after another; each block runs every one of its CUDA threads as a std::thread.
 * __syncthreads is a std::barrier of the block's threads; warp operations (shuffles, ballots, votes,
 * __syncwarp) are a std::barrier of the 32 threads of the warp and a per-warp exchange array, so they are
 * warp-synchronous. A thread that returns leaves both barriers (arrive_and_drop), as an exited thread leaves
 * the hardware's; a warp operation whose mask names an exited lane, or leaves out a live one, is reported and
 * the program aborts. Dynamic shared memory is a fresh allocation of exactly the launch's size, filled with
 * 0xFF bytes (NaN); static __shared__ variables are function statics (blocks never overlap).
 *
 * Compiled by g++ as C++20 with the CUDA toolkit's headers (their host halves: bf16/fp8 conversions, dim3,
 * the runtime API's types); the runtime API functions the tests call are emulated in emu_runtime.cpp.
 */
#ifndef JB_EMU_H
#define JB_EMU_H

#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>
#include <cublas_v2.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <tuple>
#include <type_traits>

/* What nvcc gives the execution-space keywords; static __shared__ is one object per program. */
#undef __global__
#undef __device__
#undef __host__
#undef __shared__
#undef __constant__
#undef __forceinline__
#undef __noinline__
#undef __launch_bounds__
#define __global__
#define __device__
#define __host__
#define __shared__ static
#define __constant__ static
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)

namespace jb_emu {

/* The running thread's coordinates; the launch's shape. */
extern thread_local uint3 thread_idx, block_idx;
extern dim3 block_dim, grid_dim;

/* ---- launches ---------------------------------------------------------------------------------------- */

/* Runs body(), one call per CUDA thread, for every block of the grid. Returns the launch's configuration
 * error (also kept for cudaGetLastError), cudaSuccess once every block ran. */
cudaError_t run_grid(dim3 grid, dim3 block, size_t smem, const std::function<void()> &body);

/* `K<<<grid, block, smem, stream>>>(args)` is lowered to `launch(grid, block, smem, stream)(call)(args)`,
 * call being a generic lambda that calls K with the arguments it is given. Every CUDA thread calls it with
 * the same copies of the arguments, which K's by-value parameters copy again, as kernel parameters are. */
template <typename C> struct kernel_launch {
    dim3 grid, block;
    size_t smem;
    C call;
    template <typename... A> void operator()(A &&...args) const {
        const std::tuple<std::decay_t<A>...> copies(std::forward<A>(args)...);
        run_grid(grid, block, smem, [&] { std::apply(call, copies); });
    }
};
struct launch_config {
    dim3 grid, block;
    size_t smem;
    template <typename C> kernel_launch<C> operator()(C call) const { return {grid, block, smem, call}; }
};
template <typename G, typename B> launch_config launch(G grid, B block, size_t smem = 0, cudaStream_t = 0) {
    return {dim3(grid), dim3(block), smem};
}

/* The running block's dynamic shared memory (the lowering of `extern __shared__ T name[];`). */
void *dynamic_shared();

/* ---- warps ------------------------------------------------------------------------------------------- */

/* Exchange one 64-bit value among the live lanes of the calling warp: every lane named in mask stores v,
 * then reads lane src's value. mask must be exactly the warp's live lanes (checked). */
uint64_t warp_exchange(unsigned int mask, uint64_t v, int src);
/* The OR of pred << lane over the lanes of the warp (the ballot), same rules. */
unsigned int warp_ballot(unsigned int mask, bool pred);
void warp_sync(unsigned int mask);
void block_sync();
int lane_id();

template <typename T> T shfl(unsigned int mask, T v, int src) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "shuffles move 64 bits at most");
    uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    bits = warp_exchange(mask, bits, src);
    T r;
    std::memcpy(&r, &bits, sizeof(T));
    return r;
}

/* ex2.approx.ftz.f32: 2^x with subnormal inputs and results flushed to zero. */
inline float ex2_approx_ftz(float x) {
    if (std::fpclassify(x) == FP_SUBNORMAL)
        x = 0.0f;
    const float y = std::exp2(x);
    return std::fpclassify(y) == FP_SUBNORMAL ? 0.0f : y;
}

} // namespace jb_emu

#define threadIdx (::jb_emu::thread_idx)
#define blockIdx (::jb_emu::block_idx)
#define blockDim (::jb_emu::block_dim)
#define gridDim (::jb_emu::grid_dim)
#define warpSize 32

/* ---- synchronisation and warp intrinsics ------------------------------------------------------------- */

inline void __syncthreads() { jb_emu::block_sync(); }
inline void __syncwarp(unsigned int mask = 0xffffffffu) { jb_emu::warp_sync(mask); }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }

template <typename T> T __shfl_sync(unsigned int mask, T v, int src, int width = 32) {
    const int lane = jb_emu::lane_id();
    return jb_emu::shfl(mask, v, (lane & ~(width - 1)) + (src & (width - 1)));
}
template <typename T> T __shfl_xor_sync(unsigned int mask, T v, int o, int width = 32) {
    const int lane = jb_emu::lane_id(), src = lane ^ o;
    return jb_emu::shfl(mask, v, (src & ~(width - 1)) == (lane & ~(width - 1)) ? src : lane);
}
template <typename T> T __shfl_down_sync(unsigned int mask, T v, unsigned int d, int width = 32) {
    const int lane = jb_emu::lane_id(), src = lane + (int)d;
    return jb_emu::shfl(mask, v, (src & ~(width - 1)) == (lane & ~(width - 1)) ? src : lane);
}
template <typename T> T __shfl_up_sync(unsigned int mask, T v, unsigned int d, int width = 32) {
    const int lane = jb_emu::lane_id(), src = lane - (int)d;
    return jb_emu::shfl(mask, v, src >= (lane & ~(width - 1)) ? src : lane);
}
inline unsigned int __ballot_sync(unsigned int mask, int pred) { return jb_emu::warp_ballot(mask, pred != 0); }
inline int __any_sync(unsigned int mask, int pred) { return jb_emu::warp_ballot(mask, pred != 0) != 0; }
inline int __all_sync(unsigned int mask, int pred) { return jb_emu::warp_ballot(mask, pred != 0) == mask; }

/* ---- atomics (integers and fp32; blocks of one launch never overlap, threads of a block do) ------------ */

template <typename T> T atomicAdd(T *p, T v) { return std::atomic_ref<T>(*p).fetch_add(v); }
template <typename T> T atomicSub(T *p, T v) { return std::atomic_ref<T>(*p).fetch_sub(v); }
template <typename T> T atomicExch(T *p, T v) { return std::atomic_ref<T>(*p).exchange(v); }
template <typename T> T atomicMax(T *p, T v) {
    std::atomic_ref<T> a(*p);
    T old = a.load();
    while (old < v && !a.compare_exchange_weak(old, v)) {
    }
    return old;
}
template <typename T> T atomicCAS(T *p, T expected, T desired) {
    std::atomic_ref<T>(*p).compare_exchange_strong(expected, desired);
    return expected;
}

/* ---- loads, bits and math ----------------------------------------------------------------------------- */

template <typename T> T __ldcg(const T *p) { return *p; }
template <typename T> T __ldg(const T *p) { return *p; }
template <typename T> T __ldcs(const T *p) { return *p; }
template <typename T> void __stcg(T *p, T v) { *p = v; }
template <typename T> void __stcs(T *p, T v) { *p = v; }

inline int __popc(unsigned int x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned int)x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline unsigned int __brev(unsigned int x) {
    unsigned int r = 0;
    for (int i = 0; i < 32; i++)
        r |= ((x >> i) & 1u) << (31 - i);
    return r;
}
inline float __uint_as_float(unsigned int x) { float f; std::memcpy(&f, &x, 4); return f; }
inline unsigned int __float_as_uint(float f) { unsigned int x; std::memcpy(&x, &f, 4); return x; }
inline float __int_as_float(int x) { float f; std::memcpy(&f, &x, 4); return f; }
inline int __float_as_int(float f) { int x; std::memcpy(&x, &f, 4); return x; }
inline unsigned int __byte_perm(unsigned int x, unsigned int y, unsigned int s) {
    const uint64_t both = ((uint64_t)y << 32) | x;
    unsigned int r = 0;
    for (int i = 0; i < 4; i++)
        r |= (unsigned int)((both >> (8 * ((s >> (4 * i)) & 7))) & 0xffu) << (8 * i);
    return r;
}

/* IEEE single operations with the rounding named (the host's default mode is round-to-nearest-even). */
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
/* The fast approximations, computed exactly here (their error bounds are not emulated). */
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x; }

[[noreturn]] inline void __trap() { std::abort(); }

#endif /* JB_EMU_H */
