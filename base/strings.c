/*
 * strings.c — string and array helpers on top of the library allocator.
 */
#include "base/alloc.h"
#include "base/checked.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

char *jb_strndup(const char *s, size_t n) {
    char *d = jb_malloc(n + 1);
    if (d == NULL)
        return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *jb_strdup(const char *s) { return jb_strndup(s, strlen(s)); }

char *jb_vasprintf(const char *fmt, va_list ap) {
    va_list copy;
    va_copy(copy, ap);
    int n = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    if (n < 0)
        return NULL;
    char *s = jb_malloc((size_t)n + 1);
    if (s != NULL)
        vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

char *jb_asprintf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = jb_vasprintf(fmt, ap);
    va_end(ap);
    return s;
}

bool jb_grow(void **array, int64_t *cap, int64_t need, size_t elem_size) {
    if (need <= *cap)
        return true;
    int64_t new_cap = *cap > 0 ? *cap : 8;
    while (new_cap < need) {
        if (new_cap > INT64_MAX / 2)
            return false;
        new_cap *= 2;
    }
    uint64_t bytes;
    if (!jb_mul_u64((uint64_t)new_cap, elem_size, &bytes) || bytes > SIZE_MAX)
        return false;
    void *p = jb_realloc(*array, (size_t)bytes);
    if (p == NULL)
        return false;
    *array = p;
    *cap = new_cap;
    return true;
}
