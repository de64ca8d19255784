/*
 * dtype.h — safetensors dtype names.
 */
#ifndef JB_DTYPE_H
#define JB_DTYPE_H

#include <stddef.h>

#include "jamba.h"

/* The dtype whose safetensors name is exactly `name`, or JAMBA_DTYPE_UNKNOWN. */
jamba_dtype jb_dtype_from_name(const char *name);

#endif /* JB_DTYPE_H */
