/*
 * strlist.c — owned string lists.
 */
#include "base/strlist.h"

#include "base/alloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

bool jb_strlist_addf(jb_strlist *list, const char *fmt, ...) {
    if (!jb_grow((void **)&list->items, &list->cap, list->n + 1, sizeof *list->items))
        return false;
    va_list ap;
    va_start(ap, fmt);
    char *s = jb_vasprintf(fmt, ap);
    va_end(ap);
    if (s == NULL)
        return false;
    list->items[list->n++] = s;
    return true;
}

void jb_strlist_free(jb_strlist *list) {
    for (int64_t i = 0; i < list->n; i++)
        jb_free(list->items[i]);
    jb_free(list->items);
    memset(list, 0, sizeof *list);
}

void jb_strlist_join(const jb_strlist *list, int64_t max_items, char *buf, size_t buf_size) {
    if (buf_size == 0)
        return;
    buf[0] = '\0';
    size_t used = 0;
    int64_t shown = list->n < max_items ? list->n : max_items;
    for (int64_t i = 0; i < shown; i++) {
        int w = snprintf(buf + used, buf_size - used, "%s%s", i ? ", " : "", list->items[i]);
        if (w < 0 || (size_t)w >= buf_size - used)
            return;
        used += (size_t)w;
    }
    if (shown < list->n)
        snprintf(buf + used, buf_size - used, ", ... (%lld more)", (long long)(list->n - shown));
}
