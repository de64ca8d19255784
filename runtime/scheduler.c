/*
 * scheduler.c — jamba_scheduler: continuous batching over one context. Requests wait in a FIFO queue
 * until a sequence of the context is free; every step then feeds one decode token of each running request
 * and prefill chunks of admitted ones (oldest first) under the token budget, samples every request whose
 * prompt is complete with its own sampler, and streams the tokens through the requests' callbacks.
 *
 * Threads: `lock` guards the queue, the id counter, the cancel flags and the statistics; submit, cancel,
 * wait and stats take it. Only jamba_scheduler_step touches the context, the running table and the
 * requests' generation state, and it calls the callbacks without holding the lock.
 *
 * Letters: S sequences (n_seq_max), V vocabulary.
 */
#include "runtime/context.h"

#include "base/abi.h"
#include "base/alloc.h"
#include "base/checked.h"
#include "base/error.h"
#include "runtime/log.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct request {
    int64_t id;
    jamba_request_params p;    /* prompt and stop_tokens point at the owned copies below */
    jamba_token *prompt;       /* [p.n_prompt] */
    jamba_token *stops;        /* [n_stops] the request's stop tokens, then the model's EOS ids */
    int64_t n_stops;
    jamba_sampler *sampler;
    int32_t seq;               /* the sequence it runs in; -1 while waiting */
    int64_t admitted;          /* admission order: older requests prefill first */
    int64_t fed;               /* prompt tokens the sequence holds (restored or prefilled) */
    int64_t n_cached;          /* of those, restored from the prefix cache */
    int64_t n_generated;
    jamba_token last;          /* the newest generated token: the next decode step feeds it */
    bool cancel;               /* asked by jamba_scheduler_cancel (under the lock); honoured at the next step */
    int64_t planned;           /* the step that last took it (plan_step) */
    struct request *next;      /* the waiting queue */
} request;

/* What one step feeds for a request. */
typedef struct step_item {
    request *r;
    int64_t n;                 /* tokens fed */
    bool sampled;              /* its last position is sampled */
    bool snapshot;             /* a prefill chunk that ends where the prefix cache wants a snapshot */
} step_item;

struct jamba_scheduler {
    jamba_context *ctx;
    jamba_scheduler_params p;  /* token_budget and snapshot_interval resolved */
    pthread_mutex_t lock;
    pthread_cond_t work;       /* signalled by submit and cancel */
    request *wait_head, *wait_tail;
    int64_t next_id, next_admission;
    jamba_scheduler_stats stats;
    /* the step thread's own */
    int64_t step_no;           /* steps planned so far */
    request **running;         /* [S] the request in each sequence, or NULL */
    request **admitted;        /* [S] the requests one step admitted */
    step_item *items;          /* [S] */
    jamba_seq_input *inputs;   /* [S] */
    jamba_sampler **samplers;  /* [S] NULL for an input that is only fed */
    jamba_token *tokens;       /* [S] */
    float *row;                /* [V] a logit row copied from the device (logprobs on a device backend) */
    jamba_token top_tokens[JAMBA_MAX_TOP_LOGPROBS];
    float top_logprobs[JAMBA_MAX_TOP_LOGPROBS];
};

/* ---- parameters ------------------------------------------------------------------------------- */

static const jamba_request_params REQUEST_DEFAULTS = {.max_tokens = 256, .sampling = {
    .temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f, .repetition_penalty = 1.0f,
    .presence_penalty = 0.0f, .penalty_last_n = 256, .seed = 0x5eed}};
static const jamba_scheduler_params SCHEDULER_DEFAULTS = {.max_sequences = 256, .snapshot_interval = 512};

void jamba_request_params_init_sized(jamba_request_params *p, size_t size) {
    if (p == NULL)
        return;
    jamba_request_params d = REQUEST_DEFAULTS;
    jamba_sampler_params_init_sized(&d.sampling, sizeof d.sampling); /* the sampler's defaults, one writer */
    JB_INIT_SIZED(p, size, d);
}

void jamba_scheduler_params_init_sized(jamba_scheduler_params *p, size_t size) {
    if (p != NULL)
        JB_INIT_SIZED(p, size, SCHEDULER_DEFAULTS);
}

/* ---- creation: the context sized from memory -------------------------------------------------- */

/* The bytes a CPU context's state may use when the caller gives none: a quarter of physical memory. */
static uint64_t default_host_budget(void) {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page / 4 : (uint64_t)1 << 30;
}

/* Whether a context of n sequences fits: the CUDA planner's own verdict, or on the CPU its state (KV and
 * Mamba: the weights are mapped, not counted) within the budget. */
static jamba_status fits(const jamba_model *m, jamba_context_params cp, int32_t n, uint64_t budget, bool *ok,
                         jamba_error *err) {
    cp.n_seq_max = n;
    jamba_context_plan plan;
    JB_TRY(jamba_context_plan_memory(m, &cp, &plan, err));
    *ok = cp.device == JAMBA_DEVICE_CPU ? plan.kv_cache + plan.mamba_state <= budget : plan.fits;
    return JAMBA_OK;
}

/* The most sequences (1 .. max_sequences) whose context fits (memory grows with the count): a binary
 * search over the plans. One sequence is the least; jamba_context_create then reports if even that fails. */
static jamba_status sequences_by_memory(const jamba_model *m, const jamba_context_params *cp,
                                        const jamba_scheduler_params *sp, int32_t *out, jamba_error *err) {
    const uint64_t budget = sp->memory_bytes ? sp->memory_bytes : default_host_budget();
    int32_t lo = 1, hi = sp->max_sequences;
    while (lo < hi) {
        const int32_t mid = lo + (hi - lo + 1) / 2;
        bool ok;
        JB_TRY(fits(m, *cp, mid, budget, &ok, err));
        if (ok)
            lo = mid;
        else
            hi = mid - 1;
    }
    *out = lo;
    return JAMBA_OK;
}

static void scheduler_free_buffers(jamba_scheduler *s) {
    jb_free(s->running);
    jb_free(s->admitted);
    jb_free(s->items);
    jb_free(s->inputs);
    jb_free(s->samplers);
    jb_free(s->tokens);
    jb_free(s->row);
}

jamba_status jamba_scheduler_create_sized(const jamba_model *m, const jamba_context_params *context,
                                          size_t context_size, const jamba_scheduler_params *params,
                                          size_t params_size, jamba_scheduler **out, jamba_error *err) {
    if (out == NULL || m == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_scheduler_create: NULL argument");
    *out = NULL;
    jamba_scheduler_params sp = SCHEDULER_DEFAULTS;
    if (params != NULL)
        JB_TRY(jb_struct_in(&sp, sizeof sp, params, params_size, JB_MIN_SCHEDULER_PARAMS,
                            "jamba_scheduler_create: params", err));
    jamba_context_params cp = jamba_context_default_params();
    if (context != NULL)
        JB_TRY(jb_struct_in(&cp, sizeof cp, context, context_size, JB_MIN_CONTEXT_PARAMS,
                            "jamba_scheduler_create: context params", err));
    if (sp.token_budget < 0 || sp.snapshot_interval < 0 || sp.max_waiting < 0 || sp.max_sequences < 1 ||
        sp.max_sequences > (1 << 20))
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_scheduler_create: token_budget, snapshot_interval and "
                       "max_waiting must be >= 0 and max_sequences in [1, 1048576]");
    if (cp.n_seq_max == 0)
        JB_TRY(sequences_by_memory(m, &cp, &sp, &cp.n_seq_max, err));

    jamba_scheduler *s = jb_calloc(1, sizeof *s);
    if (s == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "jamba_scheduler_create: out of memory");
    jamba_status st = jamba_context_create(m, &cp, &s->ctx, err);
    if (st != JAMBA_OK) {
        jb_free(s);
        return st;
    }
    const size_t S = (size_t)s->ctx->params.n_seq_max, V = (size_t)m->config.vocab_size;
    s->running = jb_calloc(S, sizeof *s->running);
    s->admitted = jb_calloc(S, sizeof *s->admitted);
    s->items = jb_calloc(S, sizeof *s->items);
    s->inputs = jb_calloc(S, sizeof *s->inputs);
    s->samplers = jb_calloc(S, sizeof *s->samplers);
    s->tokens = jb_calloc(S, sizeof *s->tokens);
    s->row = jb_malloc(V * sizeof *s->row);
    if (!s->running || !s->admitted || !s->items || !s->inputs || !s->samplers || !s->tokens || !s->row) {
        scheduler_free_buffers(s);
        jamba_context_free(s->ctx);
        jb_free(s);
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "jamba_scheduler_create: out of memory for %zu sequences", S);
    }
    if (pthread_mutex_init(&s->lock, NULL) != 0 || pthread_cond_init(&s->work, NULL) != 0) {
        scheduler_free_buffers(s);
        jamba_context_free(s->ctx);
        jb_free(s);
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "jamba_scheduler_create: cannot create a lock");
    }
    sp.token_budget = sp.token_budget ? sp.token_budget : s->ctx->params.n_batch;
    s->p = sp;
    s->next_id = 1;
    s->stats.n_seq_max = s->ctx->params.n_seq_max;
    jb_log(m, JAMBA_LOG_INFO, "scheduler: %d sequences of %lld tokens, %lld tokens per step, prefix cache %s",
           s->ctx->params.n_seq_max, (long long)s->ctx->params.n_ctx, (long long)sp.token_budget,
           sp.cache ? "on" : "off");
    *out = s;
    return JAMBA_OK;
}

const jamba_context *jamba_scheduler_context(const jamba_scheduler *s) { return s ? s->ctx : NULL; }

/* ---- requests --------------------------------------------------------------------------------- */

static void request_free(request *r) {
    if (r == NULL)
        return;
    jamba_sampler_free(r->sampler);
    jb_free(r->prompt);
    jb_free(r->stops);
    jb_free(r);
}

/* A request from checked params: owned copies of the prompt and the stop set, and its sampler. */
static jamba_status request_new(const jamba_scheduler *s, const jamba_request_params *p, request **out,
                                jamba_error *err) {
    const jamba_config *c = &s->ctx->model->config;
    const int64_t n_eos = p->ignore_eos ? 0 : c->n_eos_token_ids;
    request *r = *out = jb_calloc(1, sizeof *r);
    if (r == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "jamba_scheduler_submit: out of memory");
    r->prompt = jb_malloc((size_t)p->n_prompt * sizeof *r->prompt);
    r->n_stops = p->n_stop_tokens + n_eos;
    r->stops = r->n_stops ? jb_malloc((size_t)r->n_stops * sizeof *r->stops) : NULL;
    if (r->prompt == NULL || (r->n_stops && r->stops == NULL))
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "jamba_scheduler_submit: out of memory for %lld prompt tokens",
                       (long long)p->n_prompt);
    memcpy(r->prompt, p->prompt, (size_t)p->n_prompt * sizeof *r->prompt);
    if (p->n_stop_tokens)
        memcpy(r->stops, p->stop_tokens, (size_t)p->n_stop_tokens * sizeof *r->stops);
    for (int64_t i = 0; i < n_eos; i++)
        r->stops[p->n_stop_tokens + i] = (jamba_token)c->eos_token_ids[i];
    JB_TRY(jamba_sampler_create(&p->sampling, c->vocab_size, &r->sampler, err));
    for (int64_t i = 0; i < p->n_prompt; i++) /* the penalties see the prompt too, as in `jamba generate` */
        jamba_sampler_accept(r->sampler, p->prompt[i]);
    r->p = *p;
    r->p.prompt = r->prompt;
    r->p.stop_tokens = r->stops;
    r->seq = -1;
    return JAMBA_OK;
}

static jamba_status check_request(const jamba_scheduler *s, const jamba_request_params *p, jamba_error *err) {
    const int64_t V = s->ctx->model->config.vocab_size, n_ctx = s->ctx->params.n_ctx;
    if (p->prompt == NULL || p->n_prompt < 1)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_scheduler_submit: the prompt is empty");
    if (p->n_prompt > n_ctx)
        return jb_fail(err, JAMBA_ERR_CONTEXT_FULL, "jamba_scheduler_submit: a prompt of %lld tokens does not fit "
                       "the context of %lld tokens per sequence", (long long)p->n_prompt, (long long)n_ctx);
    if (p->max_tokens < 1)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_scheduler_submit: max_tokens %lld must be >= 1",
                       (long long)p->max_tokens);
    if (p->n_stop_tokens < 0 || (p->n_stop_tokens > 0 && p->stop_tokens == NULL) ||
        p->n_stop_tokens > (INT64_C(1) << 20))
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_scheduler_submit: %lld stop tokens",
                       (long long)p->n_stop_tokens);
    if (p->top_logprobs < 0 || p->top_logprobs > JAMBA_MAX_TOP_LOGPROBS || (p->top_logprobs && !p->logprobs))
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_scheduler_submit: top_logprobs %d must be in [0, %d] "
                       "and needs logprobs", p->top_logprobs, JAMBA_MAX_TOP_LOGPROBS);
    if (p->cache_prefix < 0 || p->cache_prefix > p->n_prompt)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_scheduler_submit: cache_prefix %lld outside [0, %lld]",
                       (long long)p->cache_prefix, (long long)p->n_prompt);
    for (int64_t i = 0; i < p->n_prompt; i++)
        if (p->prompt[i] < 0 || p->prompt[i] >= V)
            return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_scheduler_submit: prompt token %lld is %d, outside "
                           "the vocabulary [0, %lld)", (long long)i, p->prompt[i], (long long)V);
    return JAMBA_OK;
}

jamba_status jamba_scheduler_submit_sized(jamba_scheduler *s, const jamba_request_params *params, size_t params_size,
                                          int64_t *id, jamba_error *err) {
    if (s == NULL || params == NULL || id == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_scheduler_submit: NULL argument");
    jamba_request_params p = REQUEST_DEFAULTS;
    JB_TRY(jb_struct_in(&p, sizeof p, params, params_size, JB_MIN_REQUEST_PARAMS, "jamba_scheduler_submit: params",
                        err));
    JB_TRY(check_request(s, &p, err));
    request *r = NULL;
    jamba_status st = request_new(s, &p, &r, err);
    if (st != JAMBA_OK) {
        request_free(r);
        return st;
    }
    pthread_mutex_lock(&s->lock);
    if (s->p.max_waiting > 0 && s->stats.waiting >= s->p.max_waiting) {
        pthread_mutex_unlock(&s->lock);
        request_free(r);
        return jb_fail(err, JAMBA_ERR_BUFFER_TOO_SMALL, "jamba_scheduler_submit: %lld requests are already waiting "
                       "(max_waiting)", (long long)s->p.max_waiting);
    }
    r->id = *id = s->next_id++;
    if (s->wait_tail)
        s->wait_tail->next = r;
    else
        s->wait_head = r;
    s->wait_tail = r;
    s->stats.waiting++;
    s->stats.submitted++;
    s->stats.prompt_tokens += p.n_prompt;
    pthread_cond_broadcast(&s->work);
    pthread_mutex_unlock(&s->lock);
    return JAMBA_OK;
}

jamba_status jamba_scheduler_cancel(jamba_scheduler *s, int64_t id, jamba_error *err) {
    if (s == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_scheduler_cancel: s is NULL");
    pthread_mutex_lock(&s->lock);
    request *found = NULL;
    for (request *r = s->wait_head; r && !found; r = r->next)
        found = r->id == id ? r : NULL;
    for (int32_t q = 0; q < s->ctx->params.n_seq_max && !found; q++)
        found = s->running[q] && s->running[q]->id == id ? s->running[q] : NULL;
    if (found) {
        found->cancel = true;
        pthread_cond_broadcast(&s->work);
    }
    pthread_mutex_unlock(&s->lock);
    return found ? JAMBA_OK
                 : jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_scheduler_cancel: no waiting or running request %lld",
                           (long long)id);
}

bool jamba_scheduler_wait(jamba_scheduler *s, int64_t timeout_ms) {
    if (s == NULL)
        return false;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    if (timeout_ms >= 0) {
        until.tv_sec += timeout_ms / 1000;
        until.tv_nsec += (timeout_ms % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
    }
    pthread_mutex_lock(&s->lock);
    int rc = 0;
    while (s->stats.waiting + s->stats.running == 0 && rc != ETIMEDOUT)
        rc = timeout_ms < 0 ? pthread_cond_wait(&s->work, &s->lock) : pthread_cond_timedwait(&s->work, &s->lock, &until);
    const bool work = s->stats.waiting + s->stats.running > 0;
    pthread_mutex_unlock(&s->lock);
    return work;
}

jamba_status jamba_scheduler_stats_sized(jamba_scheduler *s, jamba_scheduler_stats *out, size_t out_size,
                                         jamba_error *err) {
    if (s == NULL || out == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_scheduler_stats: NULL argument");
    pthread_mutex_lock(&s->lock);
    const jamba_scheduler_stats st = s->stats;
    pthread_mutex_unlock(&s->lock);
    return jb_struct_out(out, out_size, &st, sizeof st, JB_MIN_SCHEDULER_STATS, "jamba_scheduler_stats: out", err);
}

/* ---- events and finishing --------------------------------------------------------------------- */

/* Hand an event to the request's callback; false when the caller ends the request. */
static bool emit(const request *r, jamba_token token, jamba_finish_reason finish, jamba_status status,
                 const char *message, const jamba_scheduler *s, int32_t n_top, float logprob) {
    if (r->p.on_token == NULL)
        return true;
    const jamba_token_event e = {.request = r->id, .token = token, .logprob = logprob, .n_top = n_top,
                                 .top_tokens = s->top_tokens, .top_logprobs = s->top_logprobs,
                                 .n_generated = r->n_generated, .n_prompt = r->p.n_prompt, .n_cached = r->n_cached,
                                 .finish = finish, .status = status, .message = message ? message : ""};
    return r->p.on_token(&e, r->p.user_data);
}

/* End a running request: the final snapshot (prompt and generated tokens) goes to the prefix cache, its
 * sequence is emptied and freed. The caller has sent (or skips) the final event. */
static void finish_running(jamba_scheduler *s, request *r, jamba_finish_reason finish) {
    jamba_error ignored;
    if (s->p.cache && finish != JAMBA_FINISH_ERROR && r->fed == r->p.n_prompt)
        jamba_prefix_cache_store(s->p.cache, s->ctx, r->seq, &ignored);
    jamba_seq_reset(s->ctx, r->seq, &ignored);
    pthread_mutex_lock(&s->lock);
    s->running[r->seq] = NULL;
    s->stats.running--;
    s->stats.finished++;
    s->stats.cancelled += finish == JAMBA_FINISH_CANCELLED;
    s->stats.failed += finish == JAMBA_FINISH_ERROR;
    pthread_mutex_unlock(&s->lock);
    request_free(r);
}

/* ---- one step --------------------------------------------------------------------------------- */

/* Under the lock: take cancelled requests out of the queue (into *cancelled) and admit waiting ones into
 * free sequences. */
static void admit(jamba_scheduler *s, request **cancelled, int64_t *n_admitted) {
    request **link = &s->wait_head, *prev = NULL;
    while (*link) {
        request *r = *link;
        if (r->cancel) {
            *link = r->next;
            r->next = *cancelled;
            *cancelled = r;
            s->stats.waiting--;
            continue;
        }
        prev = r;
        link = &r->next;
    }
    s->wait_tail = prev;
    for (int32_t q = 0; q < s->ctx->params.n_seq_max && s->wait_head; q++) {
        if (s->running[q])
            continue;
        request *r = s->wait_head;
        s->wait_head = r->next;
        if (s->wait_head == NULL)
            s->wait_tail = NULL;
        r->next = NULL;
        r->seq = q;
        r->admitted = s->next_admission++;
        s->running[q] = r;
        s->admitted[(*n_admitted)++] = r;
        s->stats.waiting--;
        s->stats.running++;
    }
}

/* A newly admitted request starts from the longest cached state of its prompt (leaving one token to feed). */
static void start(jamba_scheduler *s, request *r) {
    jamba_error err;
    r->fed = 0;
    if (s->p.cache && jamba_prefix_cache_restore(s->p.cache, s->ctx, r->seq, r->prompt, r->p.n_prompt - 1,
                                                 &r->fed, &err) != JAMBA_OK) {
        jb_log(s->ctx->model, JAMBA_LOG_WARN, "scheduler: request %lld: prefix cache restore failed (%s); "
               "prefilling the whole prompt", (long long)r->id, err.message);
        r->fed = 0;
    } else if (!s->p.cache) {
        jamba_seq_reset(s->ctx, r->seq, &err);
    }
    r->n_cached = r->fed;
}

/* The next position after `fed` where the prefix cache wants a snapshot, or n_prompt. */
static int64_t next_boundary(const jamba_scheduler *s, const request *r) {
    int64_t b = r->p.n_prompt;
    if (s->p.cache == NULL)
        return b;
    if (s->p.snapshot_interval > 0) {
        const int64_t k = (r->fed / s->p.snapshot_interval + 1) * s->p.snapshot_interval;
        b = k < b ? k : b;
    }
    if (r->p.cache_prefix > r->fed && r->p.cache_prefix < b)
        b = r->p.cache_prefix;
    return b;
}

/* Fill the step: every decoding request's token, then prefill chunks, oldest admission first, ending at
 * snapshot boundaries, within the budget (prefill gets at least an eighth of it, so new requests are not
 * starved by many decoding ones). */
static int64_t plan_step(jamba_scheduler *s, int64_t *n_tokens) {
    const int32_t S = s->ctx->params.n_seq_max;
    const int64_t step = ++s->step_no;
    int64_t n = 0, decode = 0;
    for (int32_t q = 0; q < S; q++) {
        request *r = s->running[q];
        if (r && r->fed == r->p.n_prompt) {
            s->items[n++] = (step_item){.r = r, .n = 1, .sampled = true};
            r->planned = step;
            decode++;
        }
    }
    int64_t room = s->p.token_budget - decode;
    if (room < s->p.token_budget / 8)
        room = s->p.token_budget / 8 > 0 ? s->p.token_budget / 8 : 1;
    *n_tokens = decode;
    for (;;) { /* prefilling requests in admission order */
        request *next = NULL;
        for (int32_t q = 0; q < S; q++) {
            request *r = s->running[q];
            if (r && r->planned != step && (!next || r->admitted < next->admitted))
                next = r;
        }
        if (next == NULL || room == 0)
            break;
        const int64_t boundary = next_boundary(s, next);
        const int64_t take = boundary - next->fed < room ? boundary - next->fed : room;
        s->items[n++] = (step_item){.r = next, .n = take, .sampled = next->fed + take == next->p.n_prompt,
                                    .snapshot = s->p.cache != NULL && next->fed + take == boundary};
        next->planned = step;
        room -= take;
        *n_tokens += take;
    }
    return n;
}

/* Log-probability of `token` in a logit row [V], and the top n alternatives (most likely first). */
static float logprobs(jamba_scheduler *s, const float *row, jamba_token token, int32_t n_top) {
    const int64_t V = s->ctx->model->config.vocab_size;
    float max = -INFINITY;
    for (int64_t v = 0; v < V; v++)
        max = row[v] > max ? row[v] : max;
    double sum = 0;
    for (int64_t v = 0; v < V; v++)
        sum += exp((double)row[v] - (double)max);
    const double log_z = (double)max + log(sum);
    int32_t kept = 0;
    for (int64_t v = 0; v < V && n_top > 0; v++) { /* insertion into a short sorted list */
        if (kept == n_top && row[v] <= row[s->top_tokens[kept - 1]])
            continue;
        int32_t at = kept < n_top ? kept++ : n_top - 1;
        while (at > 0 && row[s->top_tokens[at - 1]] < row[v]) {
            s->top_tokens[at] = s->top_tokens[at - 1];
            at--;
        }
        s->top_tokens[at] = (jamba_token)v;
    }
    for (int32_t i = 0; i < kept; i++)
        s->top_logprobs[i] = (float)((double)row[s->top_tokens[i]] - log_z);
    return (float)((double)row[token] - log_z);
}

/* The sampled logit row `r` of the last step, on the host. */
static const float *sampled_row(jamba_scheduler *s, int64_t r, jamba_error *err) {
    if (s->ctx->be->logits_row == NULL) /* the host kept the rows */
        return s->ctx->logits + r * s->ctx->model->config.vocab_size;
    return s->ctx->be->logits_row(s->ctx->state, r, s->row, err) == JAMBA_OK ? s->row : NULL;
}

static bool is_stop(const request *r, jamba_token t) {
    for (int64_t i = 0; i < r->n_stops; i++)
        if (r->stops[i] == t)
            return true;
    return false;
}

/* A request's new token: its event, then finished or ready to feed it. */
static void on_token(jamba_scheduler *s, request *r, jamba_token t, int64_t row) {
    r->n_generated++;
    pthread_mutex_lock(&s->lock);
    s->stats.generated_tokens++;
    pthread_mutex_unlock(&s->lock);
    jamba_finish_reason finish = JAMBA_FINISH_NONE;
    if (is_stop(r, t))
        finish = JAMBA_FINISH_STOP;
    else if (r->n_generated >= r->p.max_tokens)
        finish = JAMBA_FINISH_LENGTH;
    else if (jamba_seq_length(s->ctx, r->seq) >= s->ctx->params.n_ctx)
        finish = JAMBA_FINISH_CONTEXT;
    float lp = 0;
    int32_t n_top = 0;
    if (r->p.logprobs) {
        jamba_error err;
        const float *logits = sampled_row(s, row, &err);
        if (logits) {
            n_top = r->p.top_logprobs;
            lp = logprobs(s, logits, t, n_top);
        }
    }
    const bool go_on = emit(r, t, finish, JAMBA_OK, NULL, s, n_top, lp);
    if (finish == JAMBA_FINISH_NONE && !go_on)
        finish = JAMBA_FINISH_CANCELLED;
    if (finish != JAMBA_FINISH_NONE) {
        finish_running(s, r, finish);
        return;
    }
    r->last = t;
}

/* Every request of a failed step ends with the error. */
static void fail_step(jamba_scheduler *s, int64_t n_items, jamba_status st, const char *message) {
    for (int64_t i = 0; i < n_items; i++) {
        request *r = s->items[i].r;
        emit(r, -1, JAMBA_FINISH_ERROR, st, message, s, 0, 0);
        finish_running(s, r, JAMBA_FINISH_ERROR);
    }
}

jamba_status jamba_scheduler_step(jamba_scheduler *s, int64_t *n_active, jamba_error *err) {
    if (s == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_scheduler_step: s is NULL");
    const int32_t S = s->ctx->params.n_seq_max;
    request *cancelled = NULL;
    int64_t n_admitted = 0;
    pthread_mutex_lock(&s->lock);
    admit(s, &cancelled, &n_admitted);
    pthread_mutex_unlock(&s->lock);
    for (int64_t i = 0; i < n_admitted; i++)
        start(s, s->admitted[i]);
    while (cancelled) { /* cancelled while waiting */
        request *r = cancelled;
        cancelled = r->next;
        emit(r, -1, JAMBA_FINISH_CANCELLED, JAMBA_OK, NULL, s, 0, 0);
        pthread_mutex_lock(&s->lock);
        s->stats.finished++;
        s->stats.cancelled++;
        pthread_mutex_unlock(&s->lock);
        request_free(r);
    }
    for (int32_t q = 0; q < S; q++) { /* cancelled while running */
        request *r = s->running[q];
        bool cancel = false;
        if (r) {
            pthread_mutex_lock(&s->lock);
            cancel = r->cancel;
            pthread_mutex_unlock(&s->lock);
        }
        if (cancel) {
            emit(r, -1, JAMBA_FINISH_CANCELLED, JAMBA_OK, NULL, s, 0, 0);
            finish_running(s, r, JAMBA_FINISH_CANCELLED);
        }
    }

    int64_t n_tokens = 0;
    const int64_t n = plan_step(s, &n_tokens);
    if (n > 0) {
        for (int64_t i = 0; i < n; i++) {
            const step_item *it = &s->items[i];
            const bool decode = it->r->fed == it->r->p.n_prompt;
            s->inputs[i] = (jamba_seq_input){.seq = it->r->seq, .tokens = decode ? &it->r->last : it->r->prompt + it->r->fed,
                                             .n_tokens = it->n, .logits = JAMBA_LOGITS_NONE};
            s->samplers[i] = it->sampled ? it->r->sampler : NULL;
        }
        jamba_error step_err = {0};
        const jamba_status st = jb_decode_sample(s->ctx, s->inputs, n, s->samplers, s->tokens, &step_err);
        pthread_mutex_lock(&s->lock);
        s->stats.steps++;
        s->stats.last_batch_tokens = n_tokens;
        s->stats.last_batch_requests = n;
        pthread_mutex_unlock(&s->lock);
        if (st == JAMBA_ERR_DEVICE) { /* the context is dead: nothing can run any more */
            fail_step(s, n, st, step_err.message);
            if (err)
                *err = step_err;
            return st;
        }
        if (st != JAMBA_OK) {
            fail_step(s, n, st, step_err.message);
        } else {
            for (int64_t i = 0, row = 0; i < n; i++) {
                step_item *it = &s->items[i];
                request *r = it->r;
                if (r->fed < r->p.n_prompt) { /* a prefill chunk */
                    r->fed += it->n;
                    pthread_mutex_lock(&s->lock);
                    s->stats.prefill_tokens += it->n;
                    pthread_mutex_unlock(&s->lock);
                    jamba_error ignored;
                    if (it->snapshot)
                        jamba_prefix_cache_store(s->p.cache, s->ctx, r->seq, &ignored);
                }
                if (it->sampled)
                    on_token(s, r, s->tokens[i], row++);
            }
        }
    }
    if (n_active) {
        pthread_mutex_lock(&s->lock);
        *n_active = s->stats.waiting + s->stats.running;
        pthread_mutex_unlock(&s->lock);
    }
    return JAMBA_OK;
}

void jamba_scheduler_free(jamba_scheduler *s) {
    if (s == NULL)
        return;
    for (int32_t q = 0; q < s->ctx->params.n_seq_max; q++)
        if (s->running[q]) {
            emit(s->running[q], -1, JAMBA_FINISH_CANCELLED, JAMBA_OK, NULL, s, 0, 0);
            request_free(s->running[q]);
        }
    while (s->wait_head) {
        request *r = s->wait_head;
        s->wait_head = r->next;
        emit(r, -1, JAMBA_FINISH_CANCELLED, JAMBA_OK, NULL, s, 0, 0);
        request_free(r);
    }
    pthread_cond_destroy(&s->work);
    pthread_mutex_destroy(&s->lock);
    scheduler_free_buffers(s);
    jamba_context_free(s->ctx);
    jb_free(s);
}
