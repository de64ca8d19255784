/*
 * bench_serving.c — the library's continuous-batching scheduler (and prefix-state cache) against serving
 * the same requests one at a time.
 *
 *   bench_serving [--model DIR | --synthetic] [--threads N] [--concurrency C[,C...]] [--system T]
 *                 [--user T] [--gen G] [--long-system T] [--weights int8] [--activations int8|bf16]
 *
 * Throughput: C requests that share a system prompt of --system tokens (default 64) followed by their own
 * --user tokens (default 16), each generating --gen tokens (default 32, greedy), are submitted at once to a
 * scheduler of C sequences; then the same C requests go through a scheduler of one sequence, one at a time.
 * Reported per C: generated tokens/s both ways and their ratio, and the median time to first token (TTFT:
 * from submit to the first token's event). No prefix cache here, so both do the same work.
 * Prefix cache: requests whose prompt is a shared system prompt of --long-system tokens (default 2000)
 * marked as cache_prefix plus their own 16 tokens: the first prefills it all (cold), each of the next five
 * restores the system prompt and prefills its own tokens (warm); reported: median warm TTFT as a share of
 * the cold one, and the prefill tokens saved.
 * One JSON line per measurement on stdout, after one unmeasured request that warms the caches. Defaults:
 * models/demo, 2 threads, C = 1,8,32. --weights int8: a model folder's projection matrices quantized to int8
 * while loading (as `jamba --weights int8`); --activations int8 | bf16: int8 (bf16) weights multiply int8
 * (bf16) activations (jamba_context_params.cpu_activations I8, BF16).
 */
#include "bench/bench_util.h"
#include "bench/synthetic_config.h"
#include "jamba.h"
#include "runtime/synthetic.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_C 256
#define MAX_LEVELS 8

typedef struct options {
    const char *model_dir; /* NULL: synthetic */
    int threads;
    int levels[MAX_LEVELS], n_levels;
    int64_t system, user, gen, long_system;
    bool int8_weights;
    jamba_dtype activations;
} options;

/* One request's timing, written by its callback. */
typedef struct timing {
    double submitted, first_token, done;
    int64_t generated;
} timing;

static void die(const char *what, const jamba_error *err) {
    fprintf(stderr, "bench_serving: %s: %s\n", what, err ? err->message : "");
    exit(1);
}

static bool on_token(const jamba_token_event *e, void *data) {
    timing *t = data;
    if (e->token >= 0 && t->generated++ == 0)
        t->first_token = now();
    if (e->finish != JAMBA_FINISH_NONE)
        t->done = now();
    return true;
}

static jamba_scheduler *make_scheduler(const jamba_model *m, const options *o, int32_t n_seq, int64_t n_ctx,
                                       jamba_prefix_cache *cache) {
    jamba_context_params cp = jamba_context_default_params();
    cp.n_seq_max = n_seq;
    cp.n_ctx = n_ctx;
    cp.n_threads = o->threads;
    cp.cpu_activations = o->activations;
    jamba_scheduler_params sp = jamba_scheduler_default_params();
    sp.cache = cache;
    jamba_scheduler *s = NULL;
    jamba_error err;
    if (jamba_scheduler_create(m, &cp, &sp, &s, &err) != JAMBA_OK)
        die("creating a scheduler", &err);
    return s;
}

/* Request i's prompt: the shared system part, then its own part. */
static void make_prompt(const jamba_model *m, jamba_token *p, int64_t system, int64_t user, int i) {
    const int64_t V = jamba_model_config(m)->vocab_size;
    for (int64_t t = 0; t < system; t++)
        p[t] = (jamba_token)((t * 7919 + 13) % (V - 1) + 1);
    for (int64_t t = 0; t < user; t++)
        p[system + t] = (jamba_token)(((int64_t)i * 104729 + t * 31 + 5) % (V - 1) + 1);
}

static void submit(jamba_scheduler *s, const jamba_token *p, int64_t n, int64_t gen, int64_t cache_prefix, timing *t) {
    jamba_request_params rp = jamba_request_default_params();
    rp.prompt = p;
    rp.n_prompt = n;
    rp.max_tokens = gen;
    rp.sampling.temperature = 0;
    rp.ignore_eos = true;
    rp.cache_prefix = cache_prefix;
    rp.on_token = on_token;
    rp.user_data = t;
    *t = (timing){.submitted = now()};
    int64_t id;
    jamba_error err;
    if (jamba_scheduler_submit(s, &rp, &id, &err) != JAMBA_OK)
        die("submit", &err);
}

static void drain(jamba_scheduler *s) {
    jamba_error err;
    int64_t active = 1;
    while (active > 0)
        if (jamba_scheduler_step(s, &active, &err) != JAMBA_OK)
            die("step", &err);
}

/* Generated tokens per second over [first submit, last done], and the median TTFT in ms. */
static void summarize(const timing *t, int n, double start, double *tok_s, double *ttft_ms) {
    double end = start, ttft[MAX_C];
    int64_t tokens = 0;
    for (int i = 0; i < n; i++) {
        end = t[i].done > end ? t[i].done : end;
        tokens += t[i].generated;
        ttft[i] = 1e3 * (t[i].first_token - t[i].submitted);
    }
    *tok_s = (double)tokens / (end - start);
    *ttft_ms = median(ttft, n);
}

static void throughput(const jamba_model *m, const char *label, const options *o, int c) {
    const int64_t n = o->system + o->user, n_ctx = n + o->gen + 8;
    jamba_token *prompts = malloc((size_t)c * (size_t)n * sizeof *prompts);
    timing *batched = calloc((size_t)c, sizeof *batched), *serial = calloc((size_t)c, sizeof *serial);
    for (int i = 0; i < c; i++)
        make_prompt(m, prompts + (int64_t)i * n, o->system, o->user, i);

    jamba_scheduler *s = make_scheduler(m, o, c, n_ctx, NULL);
    double start = now();
    for (int i = 0; i < c; i++)
        submit(s, prompts + (int64_t)i * n, n, o->gen, 0, &batched[i]);
    drain(s);
    double batched_tok_s, batched_ttft;
    summarize(batched, c, start, &batched_tok_s, &batched_ttft);
    jamba_scheduler_free(s);

    s = make_scheduler(m, o, 1, n_ctx, NULL);
    start = now();
    for (int i = 0; i < c; i++) { /* one at a time: each is submitted when the previous one is done */
        submit(s, prompts + (int64_t)i * n, n, o->gen, 0, &serial[i]);
        drain(s);
    }
    double serial_tok_s, serial_ttft;
    summarize(serial, c, start, &serial_tok_s, &serial_ttft);
    for (int i = 0; i < c; i++) /* a serial request's TTFT counts from the start: it waited for the others */
        serial[i].submitted = start;
    double ignored, serial_queued_ttft;
    summarize(serial, c, start, &ignored, &serial_queued_ttft);
    jamba_scheduler_free(s);

    printf("{\"bench\":\"serving\",\"model\":\"%s\",\"weights\":\"%s\",\"activations\":\"%s\",\"threads\":%d,"
           "\"concurrency\":%d,\"prompt_tokens\":%lld,"
           "\"gen_tokens\":%lld,\"batched_tok_s\":%.1f,\"serial_tok_s\":%.1f,\"speedup\":%.2f,"
           "\"batched_ttft_ms_p50\":%.1f,\"serial_ttft_ms_p50\":%.1f,\"serial_queued_ttft_ms_p50\":%.1f}\n",
           label, o->int8_weights ? "int8" : "stored",
           bench_activations_name(o->activations), o->threads,
           c, (long long)n, (long long)o->gen, batched_tok_s, serial_tok_s,
           batched_tok_s / serial_tok_s, batched_ttft, serial_ttft, serial_queued_ttft);
    fflush(stdout);
    free(prompts);
    free(batched);
    free(serial);
}

static void prefix_cache(const jamba_model *m, const char *label, const options *o) {
    enum { WARM = 5 };
    const int64_t user = 16, n = o->long_system + user;
    jamba_token *prompts = malloc((size_t)(WARM + 1) * (size_t)n * sizeof *prompts);
    timing t[WARM + 1];
    jamba_prefix_cache *cache = NULL;
    jamba_error err;
    if (jamba_prefix_cache_create((uint64_t)1 << 30, &cache, &err) != JAMBA_OK)
        die("prefix cache", &err);
    jamba_scheduler *s = make_scheduler(m, o, 1, n + 8, cache);
    for (int i = 0; i <= WARM; i++) {
        make_prompt(m, prompts + (int64_t)i * n, o->long_system, user, i);
        submit(s, prompts + (int64_t)i * n, n, 1, o->long_system, &t[i]);
        drain(s);
    }
    double warm[WARM];
    for (int i = 0; i < WARM; i++)
        warm[i] = t[i + 1].first_token - t[i + 1].submitted;
    const double cold = t[0].first_token - t[0].submitted, warm_median = median(warm, WARM);
    jamba_scheduler_stats st;
    jamba_prefix_cache_stats cs;
    if (jamba_scheduler_get_stats(s, &st, &err) != JAMBA_OK || jamba_prefix_cache_get_stats(cache, &cs, &err) != JAMBA_OK)
        die("stats", &err);
    printf("{\"bench\":\"prefix_cache\",\"model\":\"%s\",\"threads\":%d,\"system_tokens\":%lld,\"user_tokens\":%lld,"
           "\"cold_ttft_ms\":%.1f,\"warm_ttft_ms_p50\":%.2f,\"warm_share_of_cold\":%.4f,\"prompt_tokens\":%lld,"
           "\"prefill_tokens\":%lld,\"tokens_restored\":%lld,\"cache_bytes\":%llu}\n",
           label, o->threads, (long long)o->long_system, (long long)user, 1e3 * cold, 1e3 * warm_median,
           warm_median / cold, (long long)st.prompt_tokens, (long long)st.prefill_tokens,
           (long long)cs.tokens_restored, (unsigned long long)cs.bytes);
    fflush(stdout);
    jamba_scheduler_free(s);
    jamba_prefix_cache_free(cache);
    free(prompts);
}

/* One request before measuring: the weights paged in and the caches warm for both ways alike. */
static void warm_up(const jamba_model *m, const options *o) {
    const int64_t n = o->system + o->user;
    jamba_token *p = malloc((size_t)n * sizeof *p);
    make_prompt(m, p, o->system, o->user, 0);
    jamba_scheduler *s = make_scheduler(m, o, 1, n + o->gen + 8, NULL);
    timing t;
    submit(s, p, n, o->gen, 0, &t);
    drain(s);
    jamba_scheduler_free(s);
    free(p);
}

static void usage(void) {
    fprintf(stderr, "usage: bench_serving [--model DIR | --synthetic] [--threads N] [--concurrency C[,C...]] "
                    "[--system T] [--user T] [--gen G] [--long-system T] [--weights int8] [--activations int8|bf16]\n");
    exit(2);
}

static int64_t positive(const char *s) {
    long long v;
    if (!bench_positive(s, 1000000, &v))
        usage();
    return v;
}

int main(int argc, char **argv) {
    options o = {.model_dir = JB_SOURCE_DIR "/models/demo", .threads = 2, .levels = {1, 8, 32}, .n_levels = 3,
                 .system = 64, .user = 16, .gen = 32, .long_system = 2000, .activations = JAMBA_DTYPE_F32};
    for (int i = 1; i < argc; i++) {
        const bool more = i + 1 < argc;
        if (strcmp(argv[i], "--synthetic") == 0)
            o.model_dir = NULL;
        else if (strcmp(argv[i], "--model") == 0 && more)
            o.model_dir = argv[++i];
        else if (strcmp(argv[i], "--threads") == 0 && more)
            o.threads = (int)positive(argv[++i]);
        else if (strcmp(argv[i], "--system") == 0 && more)
            o.system = positive(argv[++i]);
        else if (strcmp(argv[i], "--user") == 0 && more)
            o.user = positive(argv[++i]);
        else if (strcmp(argv[i], "--gen") == 0 && more)
            o.gen = positive(argv[++i]);
        else if (strcmp(argv[i], "--long-system") == 0 && more)
            o.long_system = positive(argv[++i]);
        else if (strcmp(argv[i], "--weights") == 0 && more && strcmp(argv[i + 1], "int8") == 0 && ++i)
            o.int8_weights = true;
        else if (strcmp(argv[i], "--activations") == 0 && more) {
            if ((o.activations = bench_activations(argv[++i])) == JAMBA_DTYPE_UNKNOWN)
                usage();
        }
        else if (strcmp(argv[i], "--concurrency") == 0 && more) {
            o.n_levels = 0;
            for (char *tok = strtok(argv[++i], ","); tok && o.n_levels < MAX_LEVELS; tok = strtok(NULL, ","))
                if ((o.levels[o.n_levels++] = (int)positive(tok)) > MAX_C)
                    usage();
        } else
            usage();
    }
    jamba_model *m = NULL;
    jamba_error err;
    jamba_model_params mp = jamba_model_default_params();
    if (o.int8_weights)
        mp.experts = mp.mlp = mp.mixers = mp.lm_head = JAMBA_FORMAT_INT8;
    if (o.int8_weights && o.model_dir == NULL)
        usage(); /* the synthetic model is built in memory, as bf16 */
    jamba_status st = o.model_dir ? jamba_model_load(o.model_dir, &mp, &m, &err)
                                  : jb_synthetic_model(JB_BENCH_SYNTHETIC, 7, JAMBA_DTYPE_BF16, o.threads, &m, &err);
    if (st != JAMBA_OK)
        die("loading the model", &err);
    const char *label = o.model_dir ? o.model_dir : "synthetic-16x1024-moe16";
    warm_up(m, &o);
    for (int i = 0; i < o.n_levels; i++)
        throughput(m, label, &o, o.levels[i]);
    prefix_cache(m, label, &o);
    jamba_model_free(m);
    return 0;
}
