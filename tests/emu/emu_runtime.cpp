/*
 * emu_runtime.cpp — the launch emulation of emu.h and the CUDA runtime API calls the op tests make, on host
 * memory: device memory is malloc'ed memory, copies are memcpy, streams run in order (every launch is
 * finished when it returns).
 *
 * A launch: one std::thread per CUDA thread of a block, reused block after block. Per block they share a
 * std::barrier for __syncthreads, one per warp for warp operations, and a fresh dynamic shared memory
 * allocation of exactly the requested size (so ASan catches an access past it), filled with 0xFF bytes.
 * A thread that returns from the kernel drops out of its block's and its warp's barriers. Between blocks
 * every thread waits on a grid barrier whose completion step sets up the next block.
 */
#include "tests/emu/emu.h"

#include <barrier>
#include <cstdio>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

namespace jb_emu {

thread_local uint3 thread_idx, block_idx;
dim3 block_dim, grid_dim;

namespace {

struct warp_state {
    std::optional<std::barrier<>> bar;
    std::atomic<unsigned int> live{0}; /* lanes that have not returned */
    uint64_t slot[32];
};

/* The launch in progress (one at a time: streams are in order). */
struct launch_state {
    unsigned int threads = 0, warps = 0;
    uint64_t blocks = 0, next_block = 0;
    size_t smem_bytes = 0;
    std::unique_ptr<unsigned char[]> smem;
    std::optional<std::barrier<>> block_bar;
    std::unique_ptr<warp_state[]> warp;
    uint3 current{0, 0, 0};
    bool done = false;
};

launch_state *g_launch;
thread_local unsigned int t_linear; /* the thread's index in its block */
cudaError_t g_last_error = cudaSuccess;
/* Dynamic shared memory a launch may ask for without cudaFuncSetAttribute (which no emulated kernel uses). */
const size_t k_default_smem = 48 * 1024;

unsigned int lanes_of(unsigned int warp) {
    const unsigned int n = g_launch->threads - 32 * warp;
    return n >= 32 ? 0xffffffffu : (1u << n) - 1u;
}

/* Sets up block g_launch->next_block (or marks the launch done): runs while every thread waits. */
void start_next_block() noexcept {
    launch_state &L = *g_launch;
    if (L.next_block == L.blocks) {
        L.done = true;
        return;
    }
    const uint64_t b = L.next_block++;
    L.current = uint3{(unsigned int)(b % grid_dim.x), (unsigned int)(b / grid_dim.x % grid_dim.y),
                      (unsigned int)(b / grid_dim.x / grid_dim.y)};
    L.block_bar.emplace(L.threads);
    for (unsigned int w = 0; w < L.warps; w++) {
        L.warp[w].bar.emplace(__builtin_popcount(lanes_of(w)));
        L.warp[w].live.store(lanes_of(w));
    }
    L.smem.reset(new unsigned char[L.smem_bytes ? L.smem_bytes : 1]);
    std::memset(L.smem.get(), 0xff, L.smem_bytes);
}

struct block_step {
    void operator()() noexcept { start_next_block(); }
};

[[noreturn]] void emu_abort(const char *what, unsigned int mask) {
    std::fprintf(stderr,
                 "jb_emu: %s (block %u,%u,%u thread %u, mask %08x, live lanes %08x): undefined on a GPU\n", what,
                 block_idx.x, block_idx.y, block_idx.z, t_linear, mask,
                 g_launch->warp[t_linear / 32].live.load());
    std::fflush(stderr);
    std::abort();
}

warp_state &my_warp() { return g_launch->warp[t_linear / 32]; }

/* The warp operation's rules: the mask names exactly the live lanes of the warp. Checked between an
 * operation's two barriers: after the first every lane that returns before the operation has, and no lane
 * can return before the second. */
void check_mask(unsigned int mask) {
    if (mask != my_warp().live.load())
        emu_abort("a warp operation whose mask is not the warp's live lanes", mask);
}

} // namespace

int lane_id() { return (int)(t_linear & 31u); }

uint64_t warp_exchange(unsigned int mask, uint64_t v, int src) {
    warp_state &w = my_warp();
    w.slot[lane_id()] = v;
    w.bar->arrive_and_wait();
    check_mask(mask);
    if (src < 0 || src > 31 || !(mask >> src & 1u))
        emu_abort("a shuffle from a lane outside the mask", mask);
    const uint64_t r = w.slot[src];
    w.bar->arrive_and_wait();
    return r;
}

unsigned int warp_ballot(unsigned int mask, bool pred) {
    warp_state &w = my_warp();
    w.slot[lane_id()] = pred;
    w.bar->arrive_and_wait();
    check_mask(mask);
    unsigned int r = 0;
    for (int l = 0; l < 32; l++)
        if (mask >> l & 1u)
            r |= (unsigned int)(w.slot[l] != 0) << l;
    w.bar->arrive_and_wait();
    return r;
}

void warp_sync(unsigned int mask) {
    warp_state &w = my_warp();
    w.bar->arrive_and_wait();
    check_mask(mask);
    w.bar->arrive_and_wait(); /* no lane returns before every lane has checked */
}

void block_sync() { g_launch->block_bar->arrive_and_wait(); }

void *dynamic_shared() { return g_launch->smem.get(); }

cudaError_t run_grid(dim3 grid, dim3 block, size_t smem, const std::function<void()> &body) {
    const uint64_t threads = (uint64_t)block.x * block.y * block.z;
    const uint64_t blocks = (uint64_t)grid.x * grid.y * grid.z;
    cudaError_t e = cudaSuccess;
    if (threads == 0 || threads > 1024 || block.z > 64 || blocks == 0 || grid.x > 0x7fffffffu || grid.y > 65535 ||
        grid.z > 65535)
        e = cudaErrorInvalidConfiguration;
    else if (smem > k_default_smem)
        e = cudaErrorInvalidValue;
    if (e != cudaSuccess) {
        g_last_error = e;
        return e;
    }
    launch_state L;
    L.threads = (unsigned int)threads;
    L.warps = (L.threads + 31) / 32;
    L.blocks = blocks;
    L.smem_bytes = smem;
    L.warp.reset(new warp_state[L.warps]);
    g_launch = &L;
    block_dim = block;
    grid_dim = grid;
    start_next_block();
    std::barrier<block_step> grid_bar(L.threads);
    std::vector<std::thread> pool;
    pool.reserve(L.threads);
    for (unsigned int t = 0; t < L.threads; t++)
        pool.emplace_back([&, t] {
            t_linear = t;
            thread_idx = uint3{t % block.x, t / block.x % block.y, t / block.x / block.y};
            while (!L.done) {
                block_idx = L.current;
                body();
                /* returned: out of this block's barriers */
                warp_state &w = L.warp[t / 32];
                w.live.fetch_and(~(1u << (t & 31u)));
                w.bar->arrive_and_drop();
                L.block_bar->arrive_and_drop();
                grid_bar.arrive_and_wait();
            }
        });
    for (auto &th : pool)
        th.join();
    g_launch = nullptr;
    return cudaSuccess;
}

} // namespace jb_emu

/* ---- the runtime API on host memory ---------------------------------------------------------------------- */

extern "C" {

cudaError_t cudaGetLastError(void) {
    const cudaError_t e = jb_emu::g_last_error;
    jb_emu::g_last_error = cudaSuccess;
    return e;
}
cudaError_t cudaPeekAtLastError(void) { return jb_emu::g_last_error; }

const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error (CPU emulation)";
    case cudaErrorInvalidValue: return "invalid argument (CPU emulation)";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument (CPU emulation)";
    case cudaErrorMemoryAllocation: return "out of memory (CPU emulation)";
    case cudaErrorNotSupported: return "operation not supported by the CPU emulation";
    default: return "CUDA error (CPU emulation)";
    }
}

cudaError_t cudaMalloc(void **p, size_t bytes) {
    *p = std::malloc(bytes ? bytes : 1);
    return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFree(void *p) {
    std::free(p);
    return cudaSuccess;
}
cudaError_t cudaMemset(void *p, int v, size_t bytes) {
    std::memset(p, v, bytes);
    return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void *p, int v, size_t bytes, cudaStream_t) { return cudaMemset(p, v, bytes); }
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind) {
    if (bytes)
        std::memmove(dst, src, bytes);
    return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind k, cudaStream_t) {
    return cudaMemcpy(dst, src, bytes, k);
}
cudaError_t cudaGetDevice(int *device) {
    *device = 0;
    return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }

} // extern "C"
