/*
 * serve_metrics.h — what `jamba serve` counts and GET /metrics shows in the Prometheus text format: HTTP
 * responses by status, finished choices by reason, time to first token (a histogram), and the scheduler's and
 * the prefix cache's own figures (requests waiting and running, batch size, tokens, cache hits and tokens
 * restored). Thread-safe.
 */
#ifndef JAMBA_CLI_SERVE_METRICS_H
#define JAMBA_CLI_SERVE_METRICS_H

#include <stddef.h>

#include "jamba.h"

typedef struct serve_metrics serve_metrics;

/* NULL when out of memory. */
serve_metrics *serve_metrics_create(void);
void serve_metrics_free(serve_metrics *m);

/* One HTTP response sent with `status`. */
void serve_metrics_response(serve_metrics *m, int status);
/* One choice finished with OpenAI's finish_reason ("stop", "length", "abort" or "error"). */
void serve_metrics_finished(serve_metrics *m, const char *reason);
/* The seconds from a choice's submission to its first generated token. */
void serve_metrics_first_token(serve_metrics *m, double seconds);

/* The exposition text in a new NUL-terminated string (free it), from the counters and the given scheduler
 * and (NULL when there is none) prefix-cache statistics; NULL when out of memory. */
char *serve_metrics_render(serve_metrics *m, const jamba_scheduler_stats *sched, const jamba_prefix_cache_stats *cache,
                           size_t *len);

#endif /* JAMBA_CLI_SERVE_METRICS_H */
