/*
 * strlist.h — a growable list of owned strings (warnings, name lists for error messages).
 */
#ifndef JB_STRLIST_H
#define JB_STRLIST_H

#include <stdbool.h>
#include <stdint.h>

#include "base/error.h"

typedef struct jb_strlist {
    char **items; /* [n] owned strings */
    int64_t n, cap;
} jb_strlist;

/* Append a formatted string; false on OOM. */
bool jb_strlist_addf(jb_strlist *list, const char *fmt, ...) JB_PRINTF(2, 3);
void jb_strlist_free(jb_strlist *list);

/* Write up to `max_items` items joined by ", " into buf, followed by ", ... (N more)" when cut. */
void jb_strlist_join(const jb_strlist *list, int64_t max_items, char *buf, size_t buf_size);

#endif /* JB_STRLIST_H */
