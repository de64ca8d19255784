/*
 * bench_gpu.c — the GPU benchmarks behind docs/BENCHMARKS.md, each against a ceiling measured in the
 * same run on the same card:
 *   copy        device-to-device copy bandwidth (bytes read + written)          the memory ceiling
 *   gemm        cuBLAS bf16 8192^3                                               the matrix ceiling
 *   scan        selective scan, one sequence at Jamba-Mini width (D_i 8192, N 16), bf16 in and out:
 *               GB/s over the bytes it must move, % of copy
 *   experts     the int8 expert GEMV of a decode token at Jamba-Mini's shape (gate|up with SwiGLU, then
 *               down; 2 of 16 experts, H 4096, I 14336): GB/s of int8 weights read, % of copy (target
 *               >= 80%)
 *   attention   causal flash prefill, GQA 32/8, d_h 128, bf16: TFLOP/s, % of gemm (target >= 40% at 32K)
 *   decode      attention of one decode row at 4K, 32K and 256K keys (same layer; caches rotated beyond the
 *               L2): GB/s of K and V, % of the rate reading them once (half a copy of the same bytes,
 *               same rotation); the time against that read (target <= 1.2x)
 *   model       a synthetic model of Jamba-Mini width with 4 layers (Mamba+dense, Mamba+MoE,
 *               attention+dense, Mamba+MoE; 16 experts top-2): prefill tok/s, and decode tok/s at several
 *               context lengths with the decode step against the time to read its active weights once
 *
 *   bench_gpu [--quick] [--json FILE]
 *
 * Medians of repeated runs after a warm-up; CUDA events around device work.
 */
#include "bench/gpu_bench_util.h"
#include "cuda/attn_layout.h"
#include "cuda/ctx_layout.h"
#include "cuda/moe.h"
#include "cuda/ops.h"
#include "cuda/step_plan.h"
#include "jamba.h"
#include "runtime/synthetic.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static bool quick;


/* ---- selective scan ------------------------------------------------------------------------------------- */

typedef struct scan_arg {
    jb_cuda_scan_args a;
    jb_cuda_step_desc step;
} scan_arg;

static void run_scan(void *p) {
    scan_arg *s = p;
    CK(jb_cuda_selective_scan(JAMBA_DTYPE_BF16, &s->a, &s->step, 0));
}

/* One sequence of T tokens, chunked as the forward pass would on this card. */
static void bench_scan(double copy_gbs, int sms) {
    const int64_t T = quick ? 8192 : 32768, Di = 8192, N = 16, R = 256, xd = R + 2 * N;
    jb_segment seg = {.seq = 0, .pos = 0, .n = T, .row = 0};
    const int64_t len = jb_scan_chunk_rows(T, Di, sms, 64);
    int32_t *row_seg = malloc((size_t)T * 4);
    jb_cuda_seg gseg;
    jb_cuda_chunk *chunks = malloc((size_t)jb_step_plan_max_chunks(T, 1, len) * sizeof *chunks);
    jb_step_plan plan = {row_seg, &gseg, chunks, 0, 0, 0, 0, 0};
    jb_step_plan_build(&plan, &seg, 1, len);
    void *d_row_seg, *d_seg, *d_chunks;
    CK(cudaMalloc(&d_row_seg, (size_t)T * 4));
    CK(cudaMalloc(&d_seg, sizeof gseg));
    CK(cudaMalloc(&d_chunks, (size_t)plan.n_chunks * sizeof *chunks));
    CK(cudaMemcpy(d_row_seg, row_seg, (size_t)T * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d_seg, &gseg, sizeof gseg, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d_chunks, chunks, (size_t)plan.n_chunks * sizeof *chunks, cudaMemcpyHostToDevice));
    scan_arg s;
    s.step = (jb_cuda_step_desc){.row_seg = d_row_seg, .segs = d_seg, .chunks = d_chunks, .T = T, .n_segs = 1,
                           .n_chunks = plan.n_chunks, .n_slots = plan.n_slots, .max_seg_rows = T};
    void *u = dev_random((size_t)(T * Di), 2, 1, 3), *dr = dev_random((size_t)(T * Di), 2, 1, 4);
    void *z = dev_random((size_t)(T * Di), 2, 1, 5), *y;
    float *xdbl = dev_random((size_t)(T * xd), 4, 1, 6), *A = dev_random((size_t)(Di * N), 4, 1, 7);
    float *bias = dev_random((size_t)Di, 4, 1, 8), *D = dev_random((size_t)Di, 4, 1, 9);
    float *state, *summary;
    CK(cudaMalloc(&y, (size_t)(T * Di) * 2));
    CK(cudaMalloc((void **)&state, (size_t)(Di * N) * 4));
    CK(cudaMemset(state, 0, (size_t)(Di * N) * 4));
    CK(cudaMalloc((void **)&summary, (size_t)(2 * (plan.n_slots + 1) * Di * N) * 4));
    s.a = (jb_cuda_scan_args){u, dr, bias, A, xdbl + R, xdbl + R + N, xd, D, z, Di, state, Di * N, y, summary, Di, N};
    double ms = time_ms(run_scan, &s, 10);
    /* bytes it must move: u, delta, z read and y written (bf16), B and C read (fp32) */
    double bytes = (double)T * Di * 2 * 4 + (double)T * 2 * N * 4;
    char name[80];
    snprintf(name, sizeof name, "scan %lldK x 8192 (%lld chunks)", (long long)(T / 1024), (long long)plan.n_chunks);
    report(name, "bandwidth", bytes / (ms * 1e-3) / 1e9, "GB/s", copy_gbs, "copy");
    cudaFree(u), cudaFree(dr), cudaFree(z), cudaFree(y), cudaFree(xdbl), cudaFree(A), cudaFree(bias), cudaFree(D);
    cudaFree(state), cudaFree(summary), cudaFree(d_row_seg), cudaFree(d_seg), cudaFree(d_chunks);
    free(row_seg), free(chunks);
}

/* ---- int8 expert GEMV ------------------------------------------------------------------------------------ */

typedef struct gemv_arg {
    jb_cuda_gemv_args up, down;
} gemv_arg;

static void run_gemv(void *p) {
    gemv_arg *g = p;
    CK(jb_cuda_expert_gemv(JAMBA_DTYPE_BF16, &g->up, 0));
    CK(jb_cuda_expert_gemv(JAMBA_DTYPE_BF16, &g->down, 0));
}

/* One decode token routed to experts 3 and 11 of 16: gate|up [2I, H] with SwiGLU into [2, I], then down
 * [H, I] into [2, H] (f32), both int8 with row scales, as a Jamba-Mini decode step runs them. The 16
 * experts' weights (2.8 GB) are far beyond the L2, and the two used ones change between layers, so the
 * weights come from memory. */
static void bench_expert_gemv(double copy_gbs) {
    const int64_t E = 16, H = 4096, I = 14336;
    int8_t *w_up, *w_down;
    CK(cudaMalloc((void **)&w_up, (size_t)(E * 2 * I * H)));
    CK(cudaMalloc((void **)&w_down, (size_t)(E * H * I)));
    CK(cudaMemset(w_up, 1, (size_t)(E * 2 * I * H)));
    CK(cudaMemset(w_down, 1, (size_t)(E * H * I)));
    float *s_up = dev_random((size_t)(E * 2 * I), 4, 1e-3f, 21), *s_down = dev_random((size_t)(E * H), 4, 1e-3f, 22);
    void *x = dev_random((size_t)H, 2, 1, 23), *act, *out;
    CK(cudaMalloc(&act, (size_t)(2 * I) * 2));
    CK(cudaMalloc(&out, (size_t)(2 * H) * 4));
    int32_t begin[17] = {0}, slot_token[2] = {0, 0}, slot_row[2] = {0, 1};
    for (int e = 0; e <= 16; e++)
        begin[e] = e > 11 ? 2 : e > 3 ? 1 : 0; /* slot 0 with expert 3, slot 1 with expert 11 */
    int32_t *d_begin, *d_token, *d_row;
    CK(cudaMalloc((void **)&d_begin, sizeof begin));
    CK(cudaMalloc((void **)&d_token, sizeof slot_token));
    CK(cudaMalloc((void **)&d_row, sizeof slot_row));
    CK(cudaMemcpy(d_begin, begin, sizeof begin, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d_token, slot_token, sizeof slot_token, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d_row, slot_row, sizeof slot_row, cudaMemcpyHostToDevice));
    gemv_arg g;
    g.up = (jb_cuda_gemv_args){.W = w_up, .wdt = JAMBA_DTYPE_I8, .scale = s_up, .expert_stride = 2 * I * H,
                               .N = 2 * I, .K = H, .in = x, .ldin = H, .in_token = d_token, .begin = d_begin,
                               .E = E, .out = act, .swiglu = true, .max_used = 2, .max_slots = 2};
    g.down = (jb_cuda_gemv_args){.W = w_down, .wdt = JAMBA_DTYPE_I8, .scale = s_down, .expert_stride = H * I,
                                 .N = H, .K = I, .in = act, .ldin = I, .in_token = d_row, .begin = d_begin,
                                 .E = E, .out = out, .out_f32 = true, .max_used = 2, .max_slots = 2};
    const double ms = time_ms(run_gemv, &g, quick ? 20 : 50);
    const double bytes = 2.0 * (2 * I * H + H * I); /* two experts' int8 gate|up and down */
    report("expert GEMV int8, 2 of 16 experts", "bandwidth", bytes / (ms * 1e-3) / 1e9, "GB/s", copy_gbs, "copy");
    printf("  %-34s %12.3f ms     target >= 80%% of copy\n", "  (one token)", ms);
    cudaFree(w_up), cudaFree(w_down), cudaFree(s_up), cudaFree(s_down), cudaFree(x), cudaFree(act), cudaFree(out);
    cudaFree(d_begin), cudaFree(d_token), cudaFree(d_row);
}

/* ---- attention -------------------------------------------------------------------------------------------- */

typedef struct attn_arg {
    jb_cuda_attn_args a;
    jb_cuda_step_desc step;
} attn_arg;

static void run_attn(void *p) {
    attn_arg *s = p;
    CK(jb_cuda_attention(JAMBA_DTYPE_BF16, &s->a, &s->step, 2, 0));
}

static void bench_attention(double gemm_tflops) {
    const int64_t T = quick ? 8192 : 32768, nh = 32, nkv = 8, D = 128, q = nh * D, kv = nkv * D;
    jb_segment seg = {.seq = 0, .pos = 0, .n = T, .row = 0};
    int32_t *row_seg = malloc((size_t)T * 4);
    jb_cuda_seg gseg;
    jb_cuda_chunk chunk;
    jb_step_plan plan = {row_seg, &gseg, &chunk, 0, 0, 0, 0, 0};
    jb_step_plan_build(&plan, &seg, 1, T);
    void *d_row_seg, *d_seg;
    CK(cudaMalloc(&d_row_seg, (size_t)T * 4));
    CK(cudaMalloc(&d_seg, sizeof gseg));
    CK(cudaMemcpy(d_row_seg, row_seg, (size_t)T * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d_seg, &gseg, sizeof gseg, cudaMemcpyHostToDevice));
    attn_arg s;
    s.step = (jb_cuda_step_desc){.row_seg = d_row_seg, .segs = d_seg, .T = T, .n_segs = 1, .n_chunks = 1, .max_seg_rows = T};
    void *qkv = dev_random((size_t)(T * (q + 2 * kv)), 2, 1, 10), *k = dev_random((size_t)(T * kv), 2, 1, 11);
    void *v = dev_random((size_t)(T * kv), 2, 1, 12), *out;
    CK(cudaMalloc(&out, (size_t)(T * q) * 2));
    s.a = (jb_cuda_attn_args){.qkv = qkv, .kv_dt = JAMBA_DTYPE_BF16, .ld_qkv = q + 2 * kv, .k_cache = k, .v_cache = v, .seq_stride = T * kv,
                             .out = out, .n_heads = nh, .n_kv_heads = nkv, .head_dim = D, .n_splits = 1,
                             .split_len = T};
    double ms = time_ms(run_attn, &s, 5);
    double flops = 2.0 * (double)T * (double)T * D * nh; /* causal: half of 4 T^2 d_h per head */
    char name[80];
    snprintf(name, sizeof name, "attention prefill %lldK (flash)", (long long)(T / 1024));
    report(name, "rate", flops / (ms * 1e-3) / 1e12, "TFLOP/s", gemm_tflops, "gemm");
    printf("  %-34s %12.3f ms     target >= 40%% of gemm at 32K\n", "  (one call)", ms);
    fflush(stdout);
    cudaFree(qkv), cudaFree(k), cudaFree(v), cudaFree(out), cudaFree(d_row_seg), cudaFree(d_seg);
    free(row_seg);
}

/* ---- decode attention ------------------------------------------------------------------------------------- */

/* One decode row over n keys, timed over a rotation of `copies` caches (together several times the L2, so
 * every call reads its K and V from memory, as in a decode step); `calls` calls per timed run. */
typedef struct decode_arg {
    attn_arg s;
    char *k, *v;       /* copies x bytes each */
    size_t bytes;      /* one copy of K (and of V) */
    char *dst;         /* the ceiling's copy targets, rotated likewise: copies x 2 x bytes */
    int copies, next, calls;
} decode_arg;

static void run_decode(void *p) {
    decode_arg *d = p;
    for (int i = 0; i < d->calls; i++, d->next = (d->next + 1) % d->copies) {
        d->s.a.k_cache = d->k + (size_t)d->next * d->bytes;
        d->s.a.v_cache = d->v + (size_t)d->next * d->bytes;
        CK(jb_cuda_attention(JAMBA_DTYPE_BF16, &d->s.a, &d->s.step, 0, 0));
    }
}

/* The ceiling: a device-to-device copy of the same K and V bytes from the same rotation, into targets
 * rotated too (so the writes also reach memory rather than staying in the L2). */
static void run_decode_ceiling(void *p) {
    decode_arg *d = p;
    for (int i = 0; i < d->calls; i++, d->next = (d->next + 1) % d->copies) {
        char *dst = d->dst + (size_t)d->next * 2 * d->bytes;
        CK(cudaMemcpyAsync(dst, d->k + (size_t)d->next * d->bytes, d->bytes, cudaMemcpyDeviceToDevice, 0));
        CK(cudaMemcpyAsync(dst + d->bytes, d->v + (size_t)d->next * d->bytes, d->bytes, cudaMemcpyDeviceToDevice, 0));
    }
}

/* Attention of one decode row at n tokens (GQA 32/8, d_h 128, bf16 cache: Jamba-Mini's layer) against the
 * time to read that row's K and V once: half a copy of the same bytes (a copy reads and writes each byte),
 * measured the same way in the same run. Target: at most 1.2x. */
static void bench_decode_attention(int64_t n, int sms) {
    const int64_t nh = 32, nkv = 8, D = 128, q = nh * D, kv = nkv * D, n_ctx = 262144;
    decode_arg d = {0};
    d.bytes = (size_t)(n * kv) * 2;
    d.copies = (int)((((size_t)1 << 29) + 2 * d.bytes - 1) / (2 * d.bytes)); /* 512 MiB of caches at least */
    if (d.copies < 2)
        d.copies = 2;
    size_t free_b = 0, total_b = 0;
    CK(cudaMemGetInfo(&free_b, &total_b));
    const size_t need = (size_t)d.copies * 4 * d.bytes + ((size_t)1 << 30); /* caches, copy targets, margin */
    char name[80];
    snprintf(name, sizeof name, "attention decode %lldK (split)", (long long)(n / 1024));
    if (need > free_b) {
        printf("  %-34s skipped: needs %.1f GiB, %.1f GiB free\n", name, (double)need / (1 << 30),
               (double)free_b / (1 << 30));
        fflush(stdout);
        return;
    }
    /* one random copy, duplicated on the device */
    void *k0 = dev_random((size_t)(n * kv), 2, 1, 21), *v0 = dev_random((size_t)(n * kv), 2, 1, 22);
    CK(cudaMalloc((void **)&d.k, (size_t)d.copies * d.bytes));
    CK(cudaMalloc((void **)&d.v, (size_t)d.copies * d.bytes));
    for (int c = 0; c < d.copies; c++) {
        CK(cudaMemcpy(d.k + (size_t)c * d.bytes, k0, d.bytes, cudaMemcpyDeviceToDevice));
        CK(cudaMemcpy(d.v + (size_t)c * d.bytes, v0, d.bytes, cudaMemcpyDeviceToDevice));
    }
    cudaFree(k0), cudaFree(v0);
    CK(cudaMalloc((void **)&d.dst, (size_t)d.copies * 2 * d.bytes));
    /* the step: one row at position n - 1 of sequence 0 */
    const jb_cuda_seg seg = {.seq = 0, .pos = n - 1, .n = 1, .row = 0};
    const int32_t row_seg = 0;
    void *d_row_seg, *d_seg, *out;
    CK(cudaMalloc(&d_row_seg, 4));
    CK(cudaMalloc(&d_seg, sizeof seg));
    CK(cudaMemcpy(d_row_seg, &row_seg, 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d_seg, &seg, sizeof seg, cudaMemcpyHostToDevice));
    d.s.step = (jb_cuda_step_desc){.row_seg = d_row_seg, .segs = d_seg, .T = 1, .n_segs = 1, .n_chunks = 1,
                                   .max_seg_rows = 1};
    /* splits as the forward pass chooses them for one row in a 256K context (cuda/forward.cu) */
    const int32_t n_splits = jb_attn_max_splits(1, nkv, sms, n_ctx, JB_CUDA_MIN_SPLIT_LEN, JB_CUDA_SPLIT_BUDGET);
    const int64_t pcap = nh * n_splits * (D + 2), n_counters = nh;
    void *qkv = dev_random((size_t)(q + 2 * kv), 2, 1, 23);
    float *part;
    unsigned int *count;
    CK(cudaMalloc(&out, (size_t)q * 2));
    CK(cudaMalloc((void **)&part, (size_t)pcap * 4));
    CK(cudaMalloc((void **)&count, (size_t)n_counters * 4));
    CK(cudaMemset(count, 0, (size_t)n_counters * 4));
    d.s.a = (jb_cuda_attn_args){.qkv = qkv, .ld_qkv = q + 2 * kv, .k_cache = d.k, .v_cache = d.v, .seq_stride = n * kv,
                                .kv_dt = JAMBA_DTYPE_BF16, .out = out, .n_heads = nh, .n_kv_heads = nkv, .head_dim = D,
                                .partial = part, .partial_capacity = pcap, .split_count = count,
                                .split_count_capacity = n_counters, .n_splits = n_splits,
                                .split_len = JB_CUDA_MIN_SPLIT_LEN};
    d.calls = d.copies < 8 ? 8 : d.copies;
    const double t_attn = time_ms(run_decode, &d, quick ? 5 : 10) / d.calls;
    const double t_read = time_ms(run_decode_ceiling, &d, quick ? 5 : 10) / d.calls / 2;
    const double kv_bytes = 2.0 * (double)d.bytes;
    const int64_t used = jb_attn_splits_used(n, jb_attn_split_len(n, n_splits, JB_CUDA_MIN_SPLIT_LEN));
    report(name, "bandwidth", kv_bytes / (t_attn * 1e-3) / 1e9, "GB/s", kv_bytes / (t_read * 1e-3) / 1e9,
           "KV read once");
    printf("  %-34s %12.3f us     %5.2fx the %.3f us to read its KV once (target <= 1.2x); %lld splits\n",
           "  (one call)", t_attn * 1e3, t_attn / t_read, t_read * 1e3, (long long)used);
    fflush(stdout);
    cudaFree(d.k), cudaFree(d.v), cudaFree(d.dst), cudaFree(d_row_seg), cudaFree(d_seg), cudaFree(out);
    cudaFree(qkv), cudaFree(part), cudaFree(count);
}

/* ---- the model ---------------------------------------------------------------------------------------------- */

static const char *MINI_4 =
    "{\"model_type\":\"jamba\",\"vocab_size\":65536,\"hidden_size\":4096,\"intermediate_size\":14336,"
    "\"num_hidden_layers\":4,\"num_attention_heads\":32,\"num_key_value_heads\":8,\"num_experts\":16,"
    "\"num_experts_per_tok\":2,\"expert_layer_period\":2,\"expert_layer_offset\":1,\"attn_layer_period\":4,"
    "\"attn_layer_offset\":2,\"mamba_d_state\":16,\"mamba_d_conv\":4,\"mamba_expand\":2,\"mamba_dt_rank\":\"auto\","
    "\"tie_word_embeddings\":false,\"rms_norm_eps\":1e-6,\"max_position_embeddings\":262144}";

static void bench_model(double copy_gbs) {
    const int64_t n_ctx = quick ? 16384 : 65536;
    double t0 = now();
    jamba_model *m = NULL;
    jamba_error err = {0};
    if (jb_synthetic_model(MINI_4, 7, JAMBA_DTYPE_BF16, 16, &m, &err) != JAMBA_OK) {
        fprintf(stderr, "bench_gpu: synthetic model: %s\n", err.message);
        exit(1);
    }
    jamba_param_counts pc;
    jamba_model_param_counts(m, &pc, NULL);
    printf("  (synthetic Jamba-Mini width, 4 layers: %.2f B parameters, %.2f B active; built in %.1f s)\n",
           (double)pc.total / 1e9, (double)pc.active / 1e9, now() - t0);
    jamba_context_params p = jamba_context_default_params();
    p.device = JAMBA_DEVICE_CUDA;
    p.n_ctx = n_ctx;
    p.n_batch = 2048;
    p.n_logits_max = 1;
    jamba_context *ctx = NULL;
    t0 = now();
    if (jamba_context_create(m, &p, &ctx, &err) != JAMBA_OK) {
        fprintf(stderr, "bench_gpu: context: %s\n", err.message);
        exit(1);
    }
    printf("  (weights uploaded and context created in %.1f s)\n", now() - t0);
    int32_t *ids = malloc((size_t)n_ctx * 4);
    for (int64_t i = 0; i < n_ctx; i++)
        ids[i] = (int32_t)((i * 7919) % 65536);
    jamba_sampler_params sp = jamba_sampler_default_params();
    sp.temperature = 0;
    jamba_sampler *greedy = NULL;
    jamba_sampler_create(&sp, 65536, &greedy, NULL);
    /* prefill throughput, then decode at growing contexts on the same sequence */
    static const int64_t marks[] = {1024, 16384, 65536};
    int64_t have = 0;
    for (int mi = 0; mi < 3; mi++) {
        const int64_t target = marks[mi] < n_ctx - 64 ? marks[mi] : n_ctx - 64;
        if (target <= have)
            continue;
        jamba_seq_input in = {.seq = 0, .tokens = ids + have, .n_tokens = target - have, .logits = JAMBA_LOGITS_NONE};
        double t = now();
        if (jamba_decode(ctx, &in, 1, &err) != JAMBA_OK) {
            fprintf(stderr, "bench_gpu: prefill: %s\n", err.message);
            exit(1);
        }
        CK(cudaDeviceSynchronize());
        char name[80];
        snprintf(name, sizeof name, "model prefill %lld..%lld", (long long)have, (long long)target);
        report(name, "throughput", (double)(target - have) / (now() - t), "tok/s", 0, "");
        have = target;
        /* decode: jamba_decode_sample steps (graph replay + device sampling), median step time */
        int32_t tok = ids[have - 1], next;
        double steps[32];
        const int n_steps = quick ? 12 : 32;
        for (int s = -3; s < n_steps; s++) {
            jamba_seq_input d = {.seq = 0, .tokens = &tok, .n_tokens = 1, .logits = JAMBA_LOGITS_LAST};
            double ts = now();
            if (jamba_decode_sample(ctx, &d, 1, &greedy, &next, &err) != JAMBA_OK) {
                fprintf(stderr, "bench_gpu: decode: %s\n", err.message);
                exit(1);
            }
            if (s >= 0)
                steps[s] = now() - ts;
            tok = next;
        }
        have += n_steps + 3;
        const double step = median(steps, n_steps);
        const double floor_s = (double)pc.active * 2.0 / (copy_gbs * 1e9); /* bf16: 2 bytes per active weight */
        snprintf(name, sizeof name, "model decode at %lldK", (long long)(have / 1024));
        report(name, "throughput", 1.0 / step, "tok/s", 1.0 / floor_s, "weight-read bound");
        printf("  %-34s %12.3f ms     %5.2fx the %.3f ms to read the active weights once\n", "  step", step * 1e3,
               step / floor_s, floor_s * 1e3);
    }
    jamba_sampler_free(greedy);
    free(ids);
    jamba_context_free(ctx);
    jamba_model_free(m);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            quick = true;
        else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc)
            bench_json = fopen(argv[++i], "w");
        else {
            fprintf(stderr, "usage: bench_gpu [--quick] [--json FILE]\n");
            return 2;
        }
    }
    jamba_device_info dev;
    jamba_error err = {0};
    if (jamba_device_query(0, &dev, &err) != JAMBA_OK) {
        printf("bench_gpu: SKIPPED: %s\n", err.message);
        return 77;
    }
    printf("bench_gpu: %s, %d SMs%s\n", dev.name, dev.multiprocessors, quick ? " (quick)" : "");
    const double copy = bench_copy(), gemm = bench_gemm(quick ? 4096 : 8192);
    bench_scan(copy, dev.multiprocessors);
    bench_expert_gemv(copy);
    bench_attention(gemm);
    bench_decode_attention(4096, dev.multiprocessors);
    bench_decode_attention(32768, dev.multiprocessors);
    if (!quick)
        bench_decode_attention(262144, dev.multiprocessors);
    bench_model(copy);
    if (bench_json)
        fclose(bench_json);
    return 0;
}
