/*
 * rule.h — Jamba's expert choice as a total order, shared by every backend: the CPU router (router.c) and
 * the CUDA routing kernel (cuda/moe.cu) compile this same function, so they cannot disagree.
 *
 * Numbers beat NaN; a larger probability wins; ties go to the lower expert index; among NaNs the lower
 * index wins. Returns true when (pa, ea) is preferred over (pb, eb).
 */
#ifndef JB_MOE_RULE_H
#define JB_MOE_RULE_H

#include <math.h>
#include <stdbool.h>

#ifdef __CUDACC__
#define JB_MOE_FN __host__ __device__ __forceinline__
#else
#define JB_MOE_FN static inline
#endif

JB_MOE_FN bool jb_moe_prefer(float pa, int ea, float pb, int eb) {
    const bool na = isnan(pa), nb = isnan(pb);
    if (na != nb)
        return nb;
    if (!na && pa != pb)
        return pa > pb;
    return ea < eb;
}

#endif /* JB_MOE_RULE_H */
