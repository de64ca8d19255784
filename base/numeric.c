/*
 * numeric.c — see numeric.h.
 */
#include "base/numeric.h"

#include <math.h>

void jb_softmax(float *p, int64_t n) {
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        if (p[i] > mx)
            mx = p[i];
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        p[i] = expf(p[i] - mx);
        sum += p[i];
    }
    const float total = (float)sum;
    for (int64_t i = 0; i < n; i++)
        p[i] /= total;
}
