/*
 * checked.h — overflow-checked 64-bit size arithmetic. Every size derived from a file or a caller goes
 * through these before it is used to allocate, index or map.
 */
#ifndef JB_CHECKED_H
#define JB_CHECKED_H

#include <stdbool.h>
#include <stdint.h>

/* *out = a * b; false (and *out unspecified) on overflow. */
static inline bool jb_mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}

/* *out = a + b; false on overflow. */
static inline bool jb_add_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_add_overflow(a, b, out);
}

/* *acc += a * b; false on overflow (then *acc is unchanged). */
static inline bool jb_muladd_u64(uint64_t *acc, uint64_t a, uint64_t b) {
    uint64_t p, s;
    if (!jb_mul_u64(a, b, &p) || !jb_add_u64(*acc, p, &s))
        return false;
    *acc = s;
    return true;
}

#endif /* JB_CHECKED_H */
