/*
 * error.h — how the library reports failures: a status code plus one line in a caller-owned
 * jamba_error. Internal; not installed.
 */
#ifndef JB_ERROR_H
#define JB_ERROR_H

#include "jamba.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define JB_PRINTF(fmt_index, first_arg) __attribute__((format(printf, fmt_index, first_arg)))
#else
#define JB_PRINTF(fmt_index, first_arg)
#endif

/* Record `status` and a printf-style message in `err` (which may be NULL); returns `status`. */
jamba_status jb_fail(jamba_error *err, jamba_status status, const char *fmt, ...) JB_PRINTF(3, 4);

/* Evaluate a jamba_status expression and return it from the enclosing function when it is an error. */
#define JB_TRY(expr)                              \
    do {                                          \
        jamba_status jb_try_status_ = (expr);     \
        if (jb_try_status_ != JAMBA_OK)           \
            return jb_try_status_;                \
    } while (0)

#ifdef __cplusplus
}
#endif

#endif /* JB_ERROR_H */
