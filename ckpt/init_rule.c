/*
 * init_rule.c — see init_rule.h.
 */
#include "ckpt/init_rule.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

jb_init_kind jb_synthetic_init(const char *name, int64_t d_conv, double *bound) {
    *bound = 0.02 * sqrt(3.0);
    if (strstr(name, "layernorm") || ends_with(name, "mamba.D"))
        return JB_INIT_ONES;
    if (ends_with(name, "A_log"))
        return JB_INIT_A_LOG;
    if (strstr(name, "dt_proj.bias"))
        return JB_INIT_DT_BIAS;
    if (strstr(name, "bias"))
        *bound = 0.1;
    else if (strstr(name, "conv1d"))
        *bound = 1.0 / sqrt((double)d_conv);
    return JB_INIT_UNIFORM;
}
