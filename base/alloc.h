/*
 * alloc.h — every host allocation of the library goes through these, so tests can inject failures
 * (tests link a fault-injecting implementation instead of alloc.c). They behave like the C library
 * functions; jb_free(NULL) is a no-op.
 */
#ifndef JB_ALLOC_H
#define JB_ALLOC_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

#ifdef __cplusplus
extern "C" {
#endif

void *jb_malloc(size_t size);
void *jb_calloc(size_t count, size_t size);
void *jb_realloc(void *ptr, size_t size);
void jb_free(void *ptr);

/* Helpers built on the four above (base/strings.c). */
char *jb_strdup(const char *s);
char *jb_strndup(const char *s, size_t n);
char *jb_asprintf(const char *fmt, ...) JB_PRINTF(1, 2);
char *jb_vasprintf(const char *fmt, va_list ap) JB_PRINTF(1, 0);

/* Grow *array (of *cap elements of elem_size) to hold at least `need`; doubles. false on OOM/overflow. */
bool jb_grow(void **array, int64_t *cap, int64_t need, size_t elem_size);

#ifdef __cplusplus
}
#endif

#endif /* JB_ALLOC_H */
