/*
 * bench_cpu.c — CPU backend throughput: prefill tok/s (one prompt in one call) and decode tok/s (one token
 * per call, greedy), beside the machine's streaming read bandwidth measured in the same run (a buffer eight
 * times the size of a 32 MiB L3), so decode can be set against the time to read its active weights.
 *
 *   bench_cpu [--model DIR | --synthetic] [--threads N[,N...]] [--prompt T] [--decode N] [--reps R]
 *             [--experts int8] [--mlp int8] [--mixers int8] [--lm-head int8] [--weights int8]
 *             [--activations int8|bf16] [--no-bandwidth]
 *
 * One JSON line per thread count on stdout:
 *   {"model":..., "kernels":..., "threads":N, "prefill_tokens":T, "prefill_tok_s":...,
 *    "decode_tokens":N, "decode_tok_s":..., "active_weight_bytes":..., "decode_weight_gb_s":...,
 *    "read_gb_s":...}
 * Medians over R repetitions (prefill and decode from a reset sequence each time). --synthetic: a random
 * bf16 model, 16 layers of hidden 1024 with 16 experts top-2 on every other layer (runtime/synthetic.h).
 * --experts / --mlp / --mixers / --lm-head int8: quantize the MoE experts / the dense MLPs / the Mamba and
 * attention projections / the LM head to int8 while loading, --weights int8 all four (as the CLI's options);
 * --activations int8: those int8 weights multiply int8-quantized activations, bf16: bf16 weights multiply
 * activations rounded to bf16 (jamba_context_params cpu_activations I8, BF16).
 * active_weight_bytes: the weights a decode token reads as held (int8 groups at one byte per parameter, row
 * scales not counted, and the Mamba mixers' conv, A_log, D and norm vectors counted with their projections:
 * jamba_param_counts does not separate them), the embedding left out (one row per token) unless it is the
 * tied LM head. --no-bandwidth: skip the read-bandwidth pass ("read_gb_s":null), whose
 * 256 MiB buffer would otherwise count in the process's peak memory.
 */
#include "base/cpu_features.h"
#include "jamba.h"
#include "bench/bench_util.h"
#include "bench/synthetic_config.h"
#include "runtime/synthetic.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_REPS 15
#define MAX_THREAD_COUNTS 8

static void die(const char *what, const jamba_error *err) {
    fprintf(stderr, "bench_cpu: %s: %s\n", what, err ? err->message : "");
    exit(1);
}

/* ---- read bandwidth ---------------------------------------------------------------------------------------- */

typedef struct read_job {
    const uint64_t *p;
    size_t n;   /* words */
    uint64_t sum;
} read_job;

/* Eight independent sums over the words (vectorisable); the result is kept so the loop is not removed. */
static void *read_words(void *arg) {
    read_job *j = arg;
    uint64_t s[8] = {0};
    for (size_t i = 0; i + 8 <= j->n; i += 8)
        for (int k = 0; k < 8; k++)
            s[k] += j->p[i + k];
    for (int k = 0; k < 8; k++)
        j->sum += s[k];
    return NULL;
}

/* GB/s of `threads` threads each streaming its part of a 256 MiB buffer; best of five passes. */
static double read_bandwidth(int threads) {
    const size_t bytes = (size_t)256 << 20, words = bytes / 8;
    uint64_t *buf = malloc(bytes);
    if (buf == NULL)
        die("read bandwidth: out of memory", NULL);
    for (size_t i = 0; i < words; i++)
        buf[i] = i;
    double best = 0;
    uint64_t keep = 0;
    for (int pass = 0; pass < 5; pass++) {
        pthread_t tid[MAX_THREAD_COUNTS * 8];
        read_job jobs[MAX_THREAD_COUNTS * 8];
        const size_t per = words / (size_t)threads;
        double t = now();
        for (int i = 0; i < threads; i++) {
            jobs[i] = (read_job){buf + (size_t)i * per, per, 0};
            if (i > 0)
                pthread_create(&tid[i], NULL, read_words, &jobs[i]);
        }
        read_words(&jobs[0]);
        for (int i = 1; i < threads; i++)
            pthread_join(tid[i], NULL);
        t = now() - t;
        for (int i = 0; i < threads; i++)
            keep += jobs[i].sum;
        if ((double)(per * (size_t)threads * 8) / t / 1e9 > best)
            best = (double)(per * (size_t)threads * 8) / t / 1e9;
    }
    free(buf);
    return keep == 1 ? 0 : best; /* never 1: uses the sums */
}

/* ---- the model ------------------------------------------------------------------------------------------- */

typedef struct bench_opts {
    const char *model_dir; /* NULL with synthetic */
    int threads[MAX_THREAD_COUNTS], n_threads;
    int64_t prompt, decode;
    int reps;
    jamba_model_params load; /* the weight formats */
    bool bandwidth;
    jamba_dtype activations; /* what int8 weights multiply: F32 or I8 */
} bench_opts;

/* Seconds for one prefill of `prompt` tokens and for `decode` greedy single-token steps after it. */
static void run_once(jamba_context *ctx, jamba_sampler *greedy, const int32_t *ids, const bench_opts *o,
                     double *prefill_s, double *decode_s) {
    jamba_error err = {0};
    if (jamba_seq_reset(ctx, 0, &err) != JAMBA_OK)
        die("reset", &err);
    jamba_seq_input in = {.seq = 0, .tokens = ids, .n_tokens = o->prompt, .logits = JAMBA_LOGITS_LAST};
    double t = now();
    int32_t tok;
    if (jamba_decode_sample(ctx, &in, 1, &greedy, &tok, &err) != JAMBA_OK)
        die("prefill", &err);
    *prefill_s = now() - t;
    t = now();
    for (int64_t i = 0; i < o->decode; i++) {
        const int32_t last = tok; /* the input: jamba_decode_sample sets its output before reading inputs */
        jamba_seq_input d = {.seq = 0, .tokens = &last, .n_tokens = 1, .logits = JAMBA_LOGITS_LAST};
        if (jamba_decode_sample(ctx, &d, 1, &greedy, &tok, &err) != JAMBA_OK)
            die("decode", &err);
    }
    *decode_s = now() - t;
}

static const char *format_name(jamba_weight_format f) { return f == JAMBA_FORMAT_INT8 ? "int8" : "stored"; }

static void bench_threads(const jamba_model *m, const char *name, int threads, const bench_opts *o) {
    const jamba_config *c = jamba_model_config(m);
    jamba_error err = {0};
    jamba_context_params p = jamba_context_default_params();
    p.n_ctx = o->prompt + o->decode + 1;
    p.n_batch = o->prompt;
    p.n_logits_max = 1;
    p.n_threads = threads;
    p.cpu_activations = o->activations;
    jamba_context *ctx = NULL;
    if (jamba_context_create(m, &p, &ctx, &err) != JAMBA_OK)
        die("context", &err);
    jamba_sampler_params sp = jamba_sampler_default_params();
    sp.temperature = 0;
    jamba_sampler *greedy = NULL;
    if (jamba_sampler_create(&sp, c->vocab_size, &greedy, &err) != JAMBA_OK)
        die("sampler", &err);
    int32_t *ids = malloc((size_t)o->prompt * sizeof *ids);
    for (int64_t i = 0; i < o->prompt; i++)
        ids[i] = (int32_t)(3 + (i * 7919) % (c->vocab_size - 3));
    double pre[MAX_REPS], dec[MAX_REPS], warm_p, warm_d;
    run_once(ctx, greedy, ids, o, &warm_p, &warm_d);
    for (int r = 0; r < o->reps; r++)
        run_once(ctx, greedy, ids, o, &pre[r], &dec[r]);
    const double prefill = (double)o->prompt / median(pre, o->reps), decode = (double)o->decode / median(dec, o->reps);
    jamba_param_counts pc;
    if (jamba_model_param_counts(m, &pc, &err) != JAMBA_OK)
        die("param counts", &err);
    /* the active weights as held: the stored element size (the first tensor's), one byte where int8 */
    jamba_tensor_info t0;
    if (jamba_model_tensor(m, 0, &t0, &err) != JAMBA_OK)
        die("tensor", &err);
    const double stored = (double)jamba_dtype_size(t0.dtype);
#define HELD(format) ((format) == JAMBA_FORMAT_INT8 ? 1.0 : stored)
    const double experts_active = (double)(pc.active - (pc.total - pc.experts)); /* top-k of each layer's */
    const double head = (double)(pc.lm_head ? pc.lm_head : pc.embedding);       /* tied: the embedding */
    const double active = (double)(pc.attention + pc.mamba) * HELD(o->load.mixers) +
                          (double)pc.dense_mlp * HELD(o->load.mlp) + experts_active * HELD(o->load.experts) +
                          head * HELD(o->load.lm_head) + (double)(pc.routers + pc.norms) * stored;
#undef HELD
    char read_gb_s[32] = "null";
    if (o->bandwidth)
        snprintf(read_gb_s, sizeof read_gb_s, "%.2f", read_bandwidth(threads));
    printf("{\"model\":\"%s\",\"kernels\":\"%s\",\"experts\":\"%s\",\"mlp\":\"%s\",\"mixers\":\"%s\","
           "\"lm_head\":\"%s\",\"activations\":\"%s\",\"threads\":%d,"
           "\"prefill_tokens\":%lld,\"prefill_tok_s\":%.1f,\"decode_tokens\":%lld,\"decode_tok_s\":%.1f,"
           "\"active_weight_bytes\":%.0f,\"decode_weight_gb_s\":%.2f,\"read_gb_s\":%s}\n",
           name, jb_cpu_kernels_name(jb_cpu_kernels_selected()), format_name(o->load.experts),
           format_name(o->load.mlp), format_name(o->load.mixers), format_name(o->load.lm_head),
           bench_activations_name(o->activations), threads, (long long)o->prompt, prefill, (long long)o->decode, decode, active,
           active * decode / 1e9, read_gb_s);
    fflush(stdout);
    free(ids);
    jamba_sampler_free(greedy);
    jamba_context_free(ctx);
}

static void usage(void) {
    fprintf(stderr, "usage: bench_cpu [--model DIR | --synthetic] [--threads N[,N...]] [--prompt T] [--decode N] "
                    "[--reps R] [--experts int8] [--mlp int8] [--mixers int8] [--lm-head int8] [--weights int8] "
                    "[--activations int8|bf16] [--no-bandwidth]\n");
    exit(2);
}

static jamba_weight_format parse_format(const char *s) {
    if (strcmp(s, "int8") == 0)
        return JAMBA_FORMAT_INT8;
    if (strcmp(s, "stored") != 0)
        usage();
    return JAMBA_FORMAT_STORED;
}

static void parse_threads(const char *s, bench_opts *o) {
    o->n_threads = 0;
    for (char *end; *s && o->n_threads < MAX_THREAD_COUNTS; s = *end == ',' ? end + 1 : end) {
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > 64)
            usage();
        o->threads[o->n_threads++] = (int)v;
    }
}

int main(int argc, char **argv) {
    bench_opts o = {.model_dir = JB_SOURCE_DIR "/models/demo", .threads = {1, 2}, .n_threads = 2, .prompt = 512,
                    .decode = 128, .reps = 3, .load = jamba_model_default_params(), .bandwidth = true,
                    .activations = JAMBA_DTYPE_F32};
    for (int i = 1; i < argc; i++) {
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--synthetic") == 0)
            o.model_dir = NULL;
        else if (strcmp(argv[i], "--model") == 0 && next)
            o.model_dir = argv[++i];
        else if (strcmp(argv[i], "--threads") == 0 && next)
            parse_threads(argv[++i], &o);
        else if (strcmp(argv[i], "--prompt") == 0 && next)
            o.prompt = atoll(argv[++i]);
        else if (strcmp(argv[i], "--decode") == 0 && next)
            o.decode = atoll(argv[++i]);
        else if (strcmp(argv[i], "--reps") == 0 && next)
            o.reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--experts") == 0 && next)
            o.load.experts = parse_format(argv[++i]);
        else if (strcmp(argv[i], "--mlp") == 0 && next)
            o.load.mlp = parse_format(argv[++i]);
        else if (strcmp(argv[i], "--mixers") == 0 && next)
            o.load.mixers = parse_format(argv[++i]);
        else if (strcmp(argv[i], "--lm-head") == 0 && next)
            o.load.lm_head = parse_format(argv[++i]);
        else if (strcmp(argv[i], "--weights") == 0 && next) /* all four; later group flags override */
            o.load.experts = o.load.mlp = o.load.mixers = o.load.lm_head = parse_format(argv[++i]);
        else if (strcmp(argv[i], "--activations") == 0 && next) {
            if ((o.activations = bench_activations(argv[++i])) == JAMBA_DTYPE_UNKNOWN)
                usage();
        }
        else if (strcmp(argv[i], "--no-bandwidth") == 0)
            o.bandwidth = false;
        else
            usage();
    }
    if (o.prompt < 1 || o.decode < 1 || o.reps < 1 || o.reps > MAX_REPS)
        usage();
    jamba_model *m = NULL;
    jamba_error err = {0};
    if (o.model_dir == NULL && (o.load.experts != JAMBA_FORMAT_STORED || o.load.mlp != JAMBA_FORMAT_STORED ||
                                o.load.mixers != JAMBA_FORMAT_STORED || o.load.lm_head != JAMBA_FORMAT_STORED))
        usage(); /* the synthetic model is built in memory, as bf16 */
    jamba_status st = o.model_dir ? jamba_model_load(o.model_dir, &o.load, &m, &err)
                                  : jb_synthetic_model(JB_BENCH_SYNTHETIC, 7, JAMBA_DTYPE_BF16, 2, &m, &err);
    if (st != JAMBA_OK)
        die("model", &err);
    for (int i = 0; i < o.n_threads; i++)
        bench_threads(m, o.model_dir ? o.model_dir : "synthetic-16x1024-moe16", o.threads[i], &o);
    jamba_model_free(m);
    return 0;
}
