/*
 * serve_sse.c — server-sent events framing (serve_sse.h).
 */
#include "tools/jamba/serve_sse.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static bool append(serve_sse *s, const char *data, size_t n) {
    if (n == 0)
        return true;
    if (s->sent == s->n) /* everything taken: start the buffer over */
        s->sent = s->n = 0;
    if (n > s->cap - s->n) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap - s->n < n) {
            if (cap > SIZE_MAX / 2)
                return false;
            cap *= 2;
        }
        char *p = realloc(s->p, cap);
        if (p == NULL)
            return false;
        s->p = p, s->cap = cap;
    }
    memcpy(s->p + s->n, data, n);
    s->n += n;
    return true;
}

bool serve_sse_event(serve_sse *s, const char *json, size_t len) {
    return append(s, "data: ", 6) && append(s, json, len) && append(s, "\n\n", 2);
}

bool serve_sse_done(serve_sse *s) { return append(s, "data: [DONE]\n\n", 14); }

size_t serve_sse_pending(const serve_sse *s) { return s->n - s->sent; }

size_t serve_sse_take(serve_sse *s, char *buf, size_t max) {
    size_t n = s->n - s->sent < max ? s->n - s->sent : max;
    if (n == 0)
        return 0;
    memcpy(buf, s->p + s->sent, n);
    s->sent += n;
    return n;
}

void serve_sse_free(serve_sse *s) {
    free(s->p);
    memset(s, 0, sizeof *s);
}
