/*
 * bench_mini.c — full-size Jamba-Mini on one GPU: the headline figures of docs/BENCHMARKS.md.
 *
 * The model is Jamba-1.5-Mini's config (models/configs/jamba-1.5-mini) with random weights made on the
 * device (no 100 GB file): int8 experts, bf16 elsewhere, a bf16 (or --kv fp8) KV cache. One sequence is
 * prefilled to 4K, 32K, 128K and 256K tokens (chunked, the planner's chunk), with batch-1 decode measured
 * at each length; then 16 sequences of 4K decode at batch 1, 4 and 16. Each figure stands beside its
 * ceiling from the same run: decode against reading the active weights and the KV cache once at the
 * measured copy bandwidth; prefill against its FLOPs (2 per active weight per token, plus 4·d_h·n_h per
 * earlier position per attention layer) at the measured cuBLAS bf16 rate. Peak device memory is
 * sampled after every phase.
 *
 *   bench_mini [--config FILE] [--kv bf16|fp8] [--ctx N] [--prefill N] [--quick] [--json FILE]
 *
 * --ctx sets the context (default 262144); --prefill stops the single-sequence prefill at N tokens (a
 * 1M-token fp8 context is allocated and used without prefilling all of it); --quick: the first two marks
 * (4K and 32K; the context defaults to 32K + 64 unless --ctx is given) and fewer decode steps, the
 * size that tools/gpu-check.sh runs inside its time limit.
 */
#include "bench/gpu_bench_util.h"
#include "jamba.h"
#include "runtime/model.h"

#include <stdint.h>
#include <string.h>

static uint64_t peak_used;

static void sample_memory(void) {
    size_t free_b = 0, total_b = 0;
    CK(cudaMemGetInfo(&free_b, &total_b));
    if (total_b - free_b > peak_used)
        peak_used = total_b - free_b;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    const long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    fclose(f);
    if (s) {
        s[n] = '\0';
        *len = (size_t)n;
    }
    return s;
}

static void die(const char *what, const jamba_error *err) {
    fprintf(stderr, "bench_mini: %s: %s\n", what, err->message);
    exit(1);
}

/* Bytes one decode token must read: the dense weights, k of E experts per MoE layer, the KV cache; and
 * the FLOPs of a token: 2 per active weight, and 4·d_h·n_h per earlier position per attention layer. */
typedef struct traffic {
    double dense, experts, kv_per_token;
    double flops_token, flops_per_position;
} traffic;

static traffic model_traffic(const jamba_model *m, jamba_dtype kv) {
    const jamba_config *c = jamba_model_config(m);
    jamba_param_counts pc;
    jamba_model_param_counts(m, &pc, NULL);
    traffic t;
    t.experts = (double)pc.experts * 1.0 * (double)c->num_experts_per_tok / (double)c->num_experts; /* int8 */
    t.dense = (double)(pc.total - pc.experts) * 2.0;                                             /* bf16 */
    t.kv_per_token = (double)(c->n_attention_layers * 2 * c->num_key_value_heads * c->head_dim) *
                     (kv == JAMBA_DTYPE_F8_E4M3 ? 1.0 : 2.0);
    t.flops_token = 2.0 * (double)pc.active;
    t.flops_per_position = 4.0 * (double)(c->n_attention_layers * c->num_attention_heads * c->head_dim);
    return t;
}

/* Tokens per second a prefill of positions [a, b) could reach at `tflops` (causal attention: position p
 * attends p + 1 keys). */
static double prefill_ceiling(const traffic *t, int64_t a, int64_t b, double tflops) {
    const double n = (double)(b - a), positions = ((double)b * (double)b - (double)a * (double)a) / 2.0 + n;
    return n / ((t->flops_token * n + t->flops_per_position * positions) / (tflops * 1e12));
}

/* Median seconds of a batch-b decode step (jamba_decode_sample on sequences 0 .. b-1). */
static double decode_step(jamba_context *ctx, jamba_sampler **samplers, int b, int n_steps, int32_t *tokens) {
    jamba_seq_input in[16];
    int32_t next[16];
    double t[64];
    jamba_error err = {0};
    for (int s = -3; s < n_steps; s++) {
        for (int i = 0; i < b; i++)
            in[i] = (jamba_seq_input){.seq = i, .tokens = &tokens[i], .n_tokens = 1, .logits = JAMBA_LOGITS_LAST};
        const double t0 = now();
        if (jamba_decode_sample(ctx, in, b, samplers, next, &err) != JAMBA_OK)
            die("decode", &err);
        if (s >= 0)
            t[s] = now() - t0;
        memcpy(tokens, next, (size_t)b * 4);
    }
    return median(t, n_steps);
}

int main(int argc, char **argv) {
    const char *config = JB_SOURCE_DIR "/models/configs/jamba-1.5-mini/config.json";
    const char *kv_name = "bf16";
    int64_t n_ctx = 0, prefill_max = INT64_MAX;
    bool quick = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            config = argv[++i];
        else if (strcmp(argv[i], "--kv") == 0 && i + 1 < argc)
            kv_name = argv[++i];
        else if (strcmp(argv[i], "--ctx") == 0 && i + 1 < argc)
            n_ctx = strtoll(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--prefill") == 0 && i + 1 < argc)
            prefill_max = strtoll(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--quick") == 0)
            quick = true;
        else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc)
            bench_json = fopen(argv[++i], "w");
        else {
            fprintf(stderr, "usage: bench_mini [--config FILE] [--kv bf16|fp8] [--ctx N] [--prefill N] [--quick] "
                            "[--json FILE]\n");
            return 2;
        }
    }
    if (n_ctx <= 0)
        n_ctx = quick ? 32768 + 64 : 262144;
    const jamba_dtype kv = strcmp(kv_name, "fp8") == 0 ? JAMBA_DTYPE_F8_E4M3 : JAMBA_DTYPE_UNKNOWN;
    jamba_device_info dev;
    jamba_error err = {0};
    if (jamba_device_query(0, &dev, &err) != JAMBA_OK) {
        printf("bench_mini: SKIPPED: %s\n", err.message);
        return 77;
    }
    size_t len = 0;
    char *json_text = read_file(config, &len);
    if (json_text == NULL) {
        fprintf(stderr, "bench_mini: cannot read %s\n", config);
        return 1;
    }
    printf("bench_mini: %s, %d SMs, %.1f GB; Jamba-Mini (%s), int8 experts, KV %s%s\n", dev.name, dev.multiprocessors,
           (double)dev.total_memory / 1e9, config, kv_name, quick ? " (quick)" : "");
    sample_memory();
    const uint64_t baseline = peak_used; /* the CUDA context and whatever else holds memory already */
    peak_used = 0;
    const double copy = bench_copy(), gemm = bench_gemm(8192);
    jamba_model *m = NULL;
    if (jb_model_device_synthetic(json_text, len, "synthetic Jamba-Mini", 7, true, false, &m, &err) != JAMBA_OK)
        die("model", &err);
    free(json_text);
    const traffic tr = model_traffic(m, kv);

    /* one sequence, prefilled to each mark, batch-1 decode there */
    jamba_context_params p = jamba_context_default_params();
    p.device = JAMBA_DEVICE_CUDA;
    p.n_ctx = n_ctx;
    p.n_logits_max = 16;
    p.kv_dtype = kv;
    jamba_context_plan plan;
    if (jamba_context_plan_memory(m, &p, &plan, &err) != JAMBA_OK)
        die("plan", &err);
    printf("  plan: weights %.2f GB, KV %.2f GB, Mamba state %.3f GB, workspace %.2f GB = %.2f GB of %.2f GB; "
           "prefill chunk %lld\n", (double)plan.weights / 1e9, (double)plan.kv_cache / 1e9,
           (double)plan.mamba_state / 1e9, (double)plan.workspace / 1e9, (double)plan.total / 1e9,
           (double)plan.budget / 1e9, (long long)plan.n_batch);
    jamba_context *ctx = NULL;
    double t0 = now();
    if (jamba_context_create(m, &p, &ctx, &err) != JAMBA_OK)
        die("context", &err);
    CK(cudaDeviceSynchronize());
    sample_memory();
    printf("  (weights made on the device and context created in %.1f s)\n", now() - t0);
    const int n_steps = quick ? 8 : 16;
    const int64_t marks[] = {4096, 32768, 131072, p.n_ctx - 2 * n_steps - 8};
    int32_t *ids = malloc((size_t)p.n_ctx * 4);
    const int64_t V = jamba_model_config(m)->vocab_size;
    for (int64_t i = 0; i < p.n_ctx; i++)
        ids[i] = (int32_t)((i * 7919 + 11) % V);
    jamba_sampler_params sp = jamba_sampler_default_params();
    sp.temperature = 0;
    jamba_sampler *samplers[16];
    for (int i = 0; i < 16; i++)
        if (jamba_sampler_create(&sp, V, &samplers[i], &err) != JAMBA_OK)
            die("sampler", &err);
    int64_t have = 0;
    double prefill_total = 0;
    const int n_marks = quick ? 2 : 4; /* --quick: 4K and 32K */
    for (int mi = 0; mi < n_marks; mi++) {
        const int64_t target = marks[mi] < prefill_max ? marks[mi] : prefill_max;
        if (target <= have || target > p.n_ctx - n_steps - 4)
            continue;
        jamba_seq_input in = {.seq = 0, .tokens = ids + have, .n_tokens = target - have, .logits = JAMBA_LOGITS_NONE};
        const double t = now();
        if (jamba_decode(ctx, &in, 1, &err) != JAMBA_OK)
            die("prefill", &err);
        CK(cudaDeviceSynchronize());
        const double dt = now() - t;
        prefill_total += dt;
        sample_memory();
        char name[96];
        snprintf(name, sizeof name, "prefill %lldK..%lldK", (long long)(have / 1024), (long long)(target / 1024));
        report(name, "throughput", (double)(target - have) / dt, "tok/s", prefill_ceiling(&tr, have, target, gemm),
               "bf16 matrix ceiling");
        have = target;
        int32_t tok = ids[have - 1];
        const double step = decode_step(ctx, samplers, 1, n_steps, &tok);
        have += n_steps + 3;
        sample_memory();
        const double ceiling = copy * 1e9 / (tr.dense + tr.experts + tr.kv_per_token * (double)have);
        snprintf(name, sizeof name, "decode b=1 at %lldK", (long long)(have / 1024));
        report(name, "throughput", 1.0 / step, "tok/s", ceiling, "bandwidth ceiling");
    }
    report("prefill 0..last mark (total)", "seconds", prefill_total, "s", 0, "");
    jamba_context_free(ctx);

    /* batches: 16 sequences of 4K */
    p.n_ctx = 4096 + 64;
    p.n_seq_max = 16;
    p.n_logits_max = 16;
    if (jamba_context_create(m, &p, &ctx, &err) != JAMBA_OK)
        die("batch context", &err);
    jamba_seq_input in[16];
    for (int i = 0; i < 16; i++)
        in[i] = (jamba_seq_input){.seq = i, .tokens = ids + 97 * i, .n_tokens = 4096, .logits = JAMBA_LOGITS_NONE};
    if (jamba_decode(ctx, in, 16, &err) != JAMBA_OK)
        die("batch prefill", &err);
    sample_memory();
    static const int batches[] = {1, 4, 16};
    int32_t toks[16];
    for (int bi = 0; bi < 3; bi++) {
        const int b = batches[bi];
        for (int i = 0; i < b; i++)
            toks[i] = ids[97 * i + 4095];
        const double step = decode_step(ctx, samplers, b, quick ? 4 : 8, toks);
        sample_memory();
        /* experts read: at most min(E, b k) per MoE layer; the bound uses the batch's own KV */
        const jamba_config *c = jamba_model_config(m);
        const double frac = (double)(b * c->num_experts_per_tok < c->num_experts ? b * c->num_experts_per_tok
                                                                                 : c->num_experts) /
                            (double)c->num_experts_per_tok;
        const double ceiling = copy * 1e9 / (tr.dense + tr.experts * frac + tr.kv_per_token * 4096.0 * b) * b;
        char name[64];
        snprintf(name, sizeof name, "decode b=%d at 4K", b);
        report(name, "throughput", (double)b / step, "tok/s", ceiling, "bandwidth ceiling");
    }
    jamba_context_free(ctx);
    report("peak device memory (process)", "memory", (double)peak_used / 1e9, "GB", 0, "");
    printf("  (device memory in use before the benchmark: %.2f GB)\n", (double)baseline / 1e9);
    for (int i = 0; i < 16; i++)
        jamba_sampler_free(samplers[i]);
    free(ids);
    jamba_model_free(m);
    if (bench_json)
        fclose(bench_json);
    return 0;
}
