/*
 * numeric.h — numeric rules shared by every layer that needs them: the fp32 softmax of attention scores
 * and of MoE router logits (the CUDA kernels follow the same order of operations).
 */
#ifndef JB_BASE_NUMERIC_H
#define JB_BASE_NUMERIC_H

#include <stdint.h>

/* In-place softmax of n values: subtract the maximum (NaN never raises it), exponentiate, divide by the
 * sum accumulated in double. */
void jb_softmax(float *p, int64_t n);

#endif /* JB_BASE_NUMERIC_H */
