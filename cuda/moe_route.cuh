/*
 * moe_route.cuh — the MoE routing steps as device functions, so that the separate kernels of moe.cu and the
 * decode router product (fused.cu, run by its grid's last block) compute the same numbers (CPU twin:
 * moe/router.c):
 *   route  softmax over a token's router logits and its top k, by one warp;
 *   plan   the stable counting sort of the (token, choice) slots by expert, by one block.
 */
#ifndef JB_CUDA_MOE_ROUTE_CUH
#define JB_CUDA_MOE_ROUTE_CUH

#include "cuda/common.cuh"
#include "moe/rule.h"

/* Shared memory a warp's route needs: E probabilities and E taken-marks. */
__host__ __device__ static inline size_t moe_route_smem(int64_t warps, int64_t E) {
    return (size_t)warps * (size_t)E * (sizeof(float) + 1);
}

/* One token by one warp: row [E] (f32, read through L2, so it may come from other blocks of the grid) →
 * experts[k] and weights[k], the softmax of jb_softmax (max, expf(x - max), the sum in double, divided by
 * the sum rounded to float) and the top k by jb_moe_prefer. p [E] and taken [E]: the warp's shared memory. */
static __device__ __forceinline__ void moe_route_token(const float *row, int64_t E, int64_t k, float *p,
                                                       unsigned char *taken, int32_t *experts, float *weights) {
    const int lane = threadIdx.x & 31;
    float mx = -INFINITY;
    for (int64_t e = lane; e < E; e += 32) {
        const float v = __ldcg(row + e);
        if (v > mx) /* NaN never raises it */
            mx = v;
    }
    mx = warp_max(mx);
    double sum = 0;
    for (int64_t e = lane; e < E; e += 32) {
        p[e] = expf(__ldcg(row + e) - mx);
        sum += p[e];
        taken[e] = 0;
    }
    for (int o = 16; o > 0; o >>= 1)
        sum += __shfl_xor_sync(0xffffffffu, sum, o);
    const float total = (float)sum;
    for (int64_t e = lane; e < E; e += 32)
        p[e] /= total;
    __syncwarp();
    for (int64_t j = 0; j < k; j++) {
        float bp = NAN;
        int be = INT32_MAX;
        for (int64_t e = lane; e < E; e += 32)
            if (!taken[e] && (be == INT32_MAX || jb_moe_prefer(p[e], (int)e, bp, be))) {
                bp = p[e];
                be = (int)e;
            }
        for (int o = 16; o > 0; o >>= 1) {
            const float op = __shfl_xor_sync(0xffffffffu, bp, o);
            const int oe = __shfl_xor_sync(0xffffffffu, be, o);
            if (oe != INT32_MAX && (be == INT32_MAX || jb_moe_prefer(op, oe, bp, be))) {
                bp = op;
                be = oe;
            }
        }
        if (lane == 0) {
            experts[j] = be;
            weights[j] = bp;
            taken[be] = 1;
        }
        __syncwarp();
    }
}

/* The plan of n_slots (token, choice) slots by the whole block (blockDim.x a multiple of 32): begin[E + 1]
 * (each expert's first slot), slot_token, slot_weight (by plan position) and slot_pos (by slot). Warp w
 * handles experts w, w + warps, ...: it counts the expert's slots with ballots, then (after the prefix sum)
 * gives each of them its rank in slot order, which makes the sort stable: tokens ascending within an
 * expert. counts: E + 1 ints of shared memory. experts and weights are read as the block's own writes or a
 * previous kernel's. */
static __device__ __forceinline__ void moe_plan_block(const int32_t *experts, const float *weights, int64_t n_slots,
                                                      int64_t E, int64_t k, int32_t *begin, int32_t *slot_token,
                                                      float *slot_weight, int32_t *slot_pos, int32_t *counts) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    for (int64_t e = warp; e < E; e += n_warps) {
        int32_t c = 0;
        for (int64_t s0 = 0; s0 < n_slots; s0 += 32) {
            const int64_t s = s0 + lane;
            c += __popc(__ballot_sync(0xffffffffu, s < n_slots && experts[s] == e));
        }
        if (lane == 0)
            counts[e] = c;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        int32_t run = 0;
        for (int64_t e = 0; e < E; e++) {
            const int32_t c = counts[e];
            counts[e] = run;
            begin[e] = run;
            run += c;
        }
        begin[E] = run;
    }
    __syncthreads();
    for (int64_t e = warp; e < E; e += n_warps) {
        int32_t next = counts[e];
        for (int64_t s0 = 0; s0 < n_slots; s0 += 32) {
            const int64_t s = s0 + lane;
            const bool mine = s < n_slots && experts[s] == e;
            const unsigned int ballot = __ballot_sync(0xffffffffu, mine);
            if (mine) {
                const int32_t pos = next + __popc(ballot & ((1u << lane) - 1u));
                slot_token[pos] = (int32_t)(s / k);
                slot_weight[pos] = weights[s];
                slot_pos[s] = pos;
            }
            next += __popc(ballot);
        }
    }
}

#endif /* JB_CUDA_MOE_ROUTE_CUH */
