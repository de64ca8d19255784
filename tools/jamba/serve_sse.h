/*
 * serve_sse.h — the body of a streamed response as server-sent events: "data: JSON\n\n" per event and
 * "data: [DONE]\n\n" at the end, as OpenAI's streaming API sends them, queued until the HTTP layer pulls them.
 */
#ifndef JAMBA_CLI_SERVE_SSE_H
#define JAMBA_CLI_SERVE_SSE_H

#include <stdbool.h>
#include <stddef.h>

typedef struct serve_sse {
    char *p;          /* queued bytes [sent, n) */
    size_t n, cap, sent;
} serve_sse;

/* Queue one event holding `json` (len bytes); false when out of memory. */
bool serve_sse_event(serve_sse *s, const char *json, size_t len);
/* Queue the closing "data: [DONE]". */
bool serve_sse_done(serve_sse *s);
/* Bytes queued and not yet taken. */
size_t serve_sse_pending(const serve_sse *s);
/* Copy up to max queued bytes to buf; returns how many. */
size_t serve_sse_take(serve_sse *s, char *buf, size_t max);
void serve_sse_free(serve_sse *s);

#endif /* JAMBA_CLI_SERVE_SSE_H */
