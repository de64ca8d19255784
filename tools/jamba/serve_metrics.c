/*
 * serve_metrics.c — counters and the Prometheus text of GET /metrics (serve_metrics.h).
 */
#include "tools/jamba/serve_metrics.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const int statuses[] = {200, 400, 401, 404, 405, 413, 500, 503};
#define N_STATUSES (sizeof statuses / sizeof statuses[0])
static const char *const reasons[] = {"stop", "length", "abort", "error"};
#define N_REASONS (sizeof reasons / sizeof reasons[0])
/* time-to-first-token histogram bounds, seconds (the last bucket, +Inf, is the count) */
static const double ttft_bounds[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
#define N_BOUNDS (sizeof ttft_bounds / sizeof ttft_bounds[0])

struct serve_metrics {
    pthread_mutex_t mu;
    uint64_t responses[N_STATUSES + 1]; /* the last: any other status */
    uint64_t finished[N_REASONS];
    uint64_t ttft_buckets[N_BOUNDS];    /* observations <= each bound (cumulative when rendered) */
    uint64_t ttft_count;
    double ttft_sum;
};

serve_metrics *serve_metrics_create(void) {
    serve_metrics *m = calloc(1, sizeof *m);
    if (m && pthread_mutex_init(&m->mu, NULL) != 0) {
        free(m);
        return NULL;
    }
    return m;
}

void serve_metrics_free(serve_metrics *m) {
    if (m == NULL)
        return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

void serve_metrics_response(serve_metrics *m, int status) {
    size_t i = 0;
    while (i < N_STATUSES && statuses[i] != status)
        i++;
    pthread_mutex_lock(&m->mu);
    m->responses[i]++;
    pthread_mutex_unlock(&m->mu);
}

void serve_metrics_finished(serve_metrics *m, const char *reason) {
    for (size_t i = 0; i < N_REASONS; i++)
        if (strcmp(reasons[i], reason) == 0) {
            pthread_mutex_lock(&m->mu);
            m->finished[i]++;
            pthread_mutex_unlock(&m->mu);
        }
}

void serve_metrics_first_token(serve_metrics *m, double seconds) {
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < N_BOUNDS; i++)
        if (seconds <= ttft_bounds[i]) {
            m->ttft_buckets[i]++;
            break;
        }
    m->ttft_count++;
    m->ttft_sum += seconds;
    pthread_mutex_unlock(&m->mu);
}

static void metric(FILE *f, const char *name, const char *type, const char *help, double value) {
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, value);
}

char *serve_metrics_render(serve_metrics *m, const jamba_scheduler_stats *s, const jamba_prefix_cache_stats *c,
                           size_t *len) {
    char *text = NULL;
    FILE *f = open_memstream(&text, len);
    if (f == NULL)
        return NULL;
    pthread_mutex_lock(&m->mu);
    serve_metrics copy = *m;
    pthread_mutex_unlock(&m->mu);

    fprintf(f, "# HELP jamba_http_responses_total HTTP responses sent, by status.\n"
               "# TYPE jamba_http_responses_total counter\n");
    for (size_t i = 0; i < N_STATUSES; i++)
        fprintf(f, "jamba_http_responses_total{code=\"%d\"} %llu\n", statuses[i], (unsigned long long)copy.responses[i]);
    fprintf(f, "jamba_http_responses_total{code=\"other\"} %llu\n", (unsigned long long)copy.responses[N_STATUSES]);
    fprintf(f, "# HELP jamba_choices_finished_total Generated choices finished, by OpenAI finish_reason "
               "(abort: cancelled, e.g. the client went away).\n# TYPE jamba_choices_finished_total counter\n");
    for (size_t i = 0; i < N_REASONS; i++)
        fprintf(f, "jamba_choices_finished_total{reason=\"%s\"} %llu\n", reasons[i],
                (unsigned long long)copy.finished[i]);

    metric(f, "jamba_requests_submitted_total", "counter",
           "Generation requests submitted to the scheduler (one per choice).", (double)s->submitted);
    metric(f, "jamba_requests_finished_total", "counter", "Scheduler requests finished (stop, length or context).",
           (double)s->finished);
    metric(f, "jamba_requests_cancelled_total", "counter", "Scheduler requests cancelled.", (double)s->cancelled);
    metric(f, "jamba_requests_failed_total", "counter", "Scheduler requests that ended with an error.",
           (double)s->failed);
    metric(f, "jamba_requests_waiting", "gauge", "Requests queued, waiting for a sequence (the queue length).",
           (double)s->waiting);
    metric(f, "jamba_requests_running", "gauge", "Requests holding a sequence.", (double)s->running);
    metric(f, "jamba_sequences_max", "gauge", "Sequences of the context: requests that can run at once.",
           (double)s->n_seq_max);
    metric(f, "jamba_steps_total", "counter", "Forward steps run.", (double)s->steps);
    metric(f, "jamba_batch_tokens", "gauge", "Tokens of the last forward step (decode tokens plus prefill chunks).",
           (double)s->last_batch_tokens);
    metric(f, "jamba_batch_requests", "gauge", "Requests in the last forward step.", (double)s->last_batch_requests);
    metric(f, "jamba_prompt_tokens_total", "counter", "Prompt tokens submitted.", (double)s->prompt_tokens);
    metric(f, "jamba_prefill_tokens_total", "counter", "Prompt tokens prefilled (the rest came from the prefix cache).",
           (double)s->prefill_tokens);
    metric(f, "jamba_generated_tokens_total", "counter", "Tokens generated.", (double)s->generated_tokens);
    if (c) {
        metric(f, "jamba_prefix_cache_lookups_total", "counter", "Prefix-cache lookups.", (double)c->lookups);
        metric(f, "jamba_prefix_cache_hits_total", "counter", "Prefix-cache lookups that restored a state.",
               (double)c->hits);
        metric(f, "jamba_prefix_cache_tokens_restored_total", "counter",
               "Prompt tokens restored from the prefix cache instead of prefilled.", (double)c->tokens_restored);
        metric(f, "jamba_prefix_cache_entries", "gauge", "Snapshots held.", (double)c->entries);
        metric(f, "jamba_prefix_cache_bytes", "gauge", "Bytes of the snapshots held.", (double)c->bytes);
        metric(f, "jamba_prefix_cache_max_bytes", "gauge", "The prefix cache's budget in bytes.", (double)c->max_bytes);
        metric(f, "jamba_prefix_cache_evictions_total", "counter", "Snapshots evicted to make room.",
               (double)c->evictions);
    }
    fprintf(f, "# HELP jamba_time_to_first_token_seconds Seconds from submission to the first generated token.\n"
               "# TYPE jamba_time_to_first_token_seconds histogram\n");
    uint64_t cumulative = 0;
    for (size_t i = 0; i < N_BOUNDS; i++) {
        cumulative += copy.ttft_buckets[i];
        fprintf(f, "jamba_time_to_first_token_seconds_bucket{le=\"%g\"} %llu\n", ttft_bounds[i],
                (unsigned long long)cumulative);
    }
    fprintf(f, "jamba_time_to_first_token_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)copy.ttft_count);
    fprintf(f, "jamba_time_to_first_token_seconds_sum %.17g\njamba_time_to_first_token_seconds_count %llu\n",
            copy.ttft_sum, (unsigned long long)copy.ttft_count);
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}
