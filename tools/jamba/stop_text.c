/*
 * stop_text.c — see stop_text.h.
 */
#include "tools/jamba/stop_text.h"

#include <string.h>

/* Where `needle` (n bytes) first occurs in hay (h bytes), or h when it does not. */
static size_t find_bytes(const char *hay, size_t h, const char *needle, size_t n) {
    for (size_t i = 0; n <= h && i <= h - n; i++)
        if (memcmp(hay + i, needle, n) == 0)
            return i;
    return h;
}

size_t stop_text_scan(const char *held, size_t n, const char *const *stops, int n_stops, bool *found) {
    size_t first = n, keep = 0;
    for (int i = 0; i < n_stops; i++) {
        const size_t len = strlen(stops[i]);
        if (len == 0)
            continue;
        const size_t at = find_bytes(held, n, stops[i], len);
        first = at < first ? at : first;
        for (size_t k = len - 1; k > keep; k--) /* the longest tail that begins this stop string */
            if (k <= n && memcmp(held + n - k, stops[i], k) == 0) {
                keep = k;
                break;
            }
    }
    *found = first < n;
    return *found ? first : n - keep;
}
