/*
 * test_gpu_serving.c — the serving features on CUDA contexts (the CPU versions are tests/test_prefix_cache.c,
 * tests/test_scheduler.c and tests/test_context_control.c): a prefix-cache restore continues bit-identically
 * to a cold prefill split at the same position; rollback; the scheduler's batched greedy tokens against
 * each request alone and against the CPU; logprobs read from rows kept on the device; an aborted prefill
 * leaves its sequence as before the call.
 */
#include "tests/gpu/gpu_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEMO JB_SOURCE_DIR "/models/demo"
#define N_PROMPT 96
#define N_GEN 12
#define N_REQ 8

static jamba_model *load_demo(int64_t *V) {
    jamba_model *m = NULL;
    jamba_error err = {0};
    if (jamba_model_load(DEMO, NULL, &m, &err) != JAMBA_OK) {
        gt_fail(__FILE__, __LINE__, "%s: %s", DEMO, err.message);
        return NULL;
    }
    *V = jamba_model_config(m)->vocab_size;
    return m;
}

static jamba_context_params cuda_params(int32_t n_seq) {
    jamba_context_params p = jamba_context_default_params();
    p.device = JAMBA_DEVICE_CUDA;
    p.gpu_dtype = JAMBA_DTYPE_F32;
    p.n_seq_max = n_seq;
    p.n_ctx = 256;
    p.n_batch = 64;
    return p;
}

static jamba_context *cuda_context(const jamba_model *m, int32_t n_seq) {
    jamba_context_params p = cuda_params(n_seq);
    jamba_context *ctx = NULL;
    jamba_error err = {0};
    if (jamba_context_create(m, &p, &ctx, &err) != JAMBA_OK)
        gt_fail(__FILE__, __LINE__, "CUDA context: %s", err.message);
    return ctx;
}

static void prompt(jamba_token *p, int64_t n, int64_t V, int salt) {
    for (int64_t i = 0; i < n; i++)
        p[i] = (jamba_token)((i * 31 + 7 + (i >= n - 4 ? salt * 13 : 0)) % V);
}

/* Feed and copy the last logits (V floats) into `last` when given; false on failure (recorded). */
static bool feed(jamba_context *ctx, int32_t seq, const jamba_token *t, int64_t n, float *last, int64_t V) {
    const jamba_seq_input in = {seq, t, n, last ? JAMBA_LOGITS_LAST : JAMBA_LOGITS_NONE};
    jamba_error err = {0};
    if (jamba_decode(ctx, &in, 1, &err) != JAMBA_OK) {
        gt_fail(__FILE__, __LINE__, "decode: %s", err.message);
        return false;
    }
    if (last)
        memcpy(last, jamba_logits(ctx, 0, NULL), (size_t)V * sizeof *last);
    return true;
}

static void test_prefix_restore(void) {
    int64_t V;
    jamba_model *m = load_demo(&V);
    jamba_context *ctx = m ? cuda_context(m, 2) : NULL;
    jamba_prefix_cache *cache = NULL;
    if (ctx == NULL || jamba_prefix_cache_create(256u << 20, &cache, NULL) != JAMBA_OK) {
        jamba_context_free(ctx);
        jamba_model_free(m);
        return;
    }
    jamba_token p[N_PROMPT];
    prompt(p, N_PROMPT, V, 0);
    const int64_t cut = 50;
    float *cold = malloc((size_t)V * 4), *warm = malloc((size_t)V * 4);
    /* cold: the prompt fed in two calls split at `cut`, the split a warm start has */
    bool ok = feed(ctx, 0, p, cut, NULL, V);
    jamba_error err = {0};
    ok = ok && jamba_prefix_cache_store(cache, ctx, 0, &err) == JAMBA_OK;
    ok = ok && feed(ctx, 0, p + cut, N_PROMPT - cut, cold, V);
    int64_t restored = 0;
    ok = ok && jamba_prefix_cache_restore(cache, ctx, 1, p, N_PROMPT - 1, &restored, &err) == JAMBA_OK;
    GT_CHECK(ok && restored == cut, "restore: %s (restored %lld)", err.message, (long long)restored);
    if (ok && feed(ctx, 1, p + cut, N_PROMPT - cut, warm, V))
        GT_CHECK(memcmp(cold, warm, (size_t)V * 4) == 0, "a restored prefix continues differently (nmse %.2e)",
                 gt_nmse(warm, cold, V));

    /* rollback of sequence 0 to 40 tokens (restoring nothing longer than 40: the 50-token entry is too long) */
    float *fresh = malloc((size_t)V * 4), *rolled = malloc((size_t)V * 4);
    ok = ok && jamba_seq_reset(ctx, 1, &err) == JAMBA_OK && feed(ctx, 1, p, 41, fresh, V);
    ok = ok && jamba_seq_rollback(ctx, 0, 40, cache, &err) == JAMBA_OK;
    GT_CHECK(ok, "rollback: %s", err.message);
    if (ok && feed(ctx, 0, p + 40, 1, rolled, V))
        gt_expect_close("rolled back vs fresh", rolled, fresh, V, 1e-10);
    free(fresh);
    free(rolled);
    free(cold);
    free(warm);
    jamba_prefix_cache_free(cache);
    jamba_context_free(ctx);
    jamba_model_free(m);
}

typedef struct gen {
    jamba_token tokens[N_GEN];
    float logprob[N_GEN];
    int64_t n;
    jamba_finish_reason finish;
} gen;

static bool record(const jamba_token_event *e, void *data) {
    gen *g = data;
    if (e->token >= 0 && g->n < N_GEN) {
        g->logprob[g->n] = e->logprob;
        g->tokens[g->n++] = e->token;
    }
    if (e->finish != JAMBA_FINISH_NONE)
        g->finish = e->finish;
    return true;
}

/* Serve the N_REQ prompts with a scheduler of n_seq sequences on `device`, greedy, with logprobs. */
static void serve(const jamba_model *m, jamba_device_type device, int32_t n_seq, jamba_token p[N_REQ][N_PROMPT],
                  gen *out) {
    jamba_context_params cp = cuda_params(n_seq);
    cp.device = device;
    jamba_scheduler_params sp = jamba_scheduler_default_params();
    jamba_scheduler *s = NULL;
    jamba_error err = {0};
    if (jamba_scheduler_create(m, &cp, &sp, &s, &err) != JAMBA_OK) {
        gt_fail(__FILE__, __LINE__, "scheduler: %s", err.message);
        return;
    }
    for (int i = 0; i < N_REQ; i++) {
        jamba_request_params rp = jamba_request_default_params();
        rp.prompt = p[i];
        rp.n_prompt = 40 + 7 * i;
        rp.max_tokens = N_GEN;
        rp.sampling.temperature = 0;
        rp.ignore_eos = true;
        rp.logprobs = true;
        rp.on_token = record;
        rp.user_data = &out[i];
        int64_t id;
        if (jamba_scheduler_submit(s, &rp, &id, &err) != JAMBA_OK)
            gt_fail(__FILE__, __LINE__, "submit: %s", err.message);
        if (n_seq == 1) /* one at a time */
            for (int64_t active = 1; active > 0;)
                if (jamba_scheduler_step(s, &active, &err) != JAMBA_OK) {
                    gt_fail(__FILE__, __LINE__, "step: %s", err.message);
                    break;
                }
    }
    for (int64_t active = 1; active > 0;)
        if (jamba_scheduler_step(s, &active, &err) != JAMBA_OK) {
            gt_fail(__FILE__, __LINE__, "step: %s", err.message);
            break;
        }
    jamba_scheduler_free(s);
}

static void test_scheduler(void) {
    int64_t V;
    jamba_model *m = load_demo(&V);
    if (m == NULL)
        return;
    static jamba_token p[N_REQ][N_PROMPT];
    static gen batched[N_REQ], alone[N_REQ], cpu[N_REQ];
    memset(batched, 0, sizeof batched);
    memset(alone, 0, sizeof alone);
    memset(cpu, 0, sizeof cpu);
    for (int i = 0; i < N_REQ; i++)
        prompt(p[i], N_PROMPT, V, i);
    serve(m, JAMBA_DEVICE_CUDA, N_REQ, p, batched);
    serve(m, JAMBA_DEVICE_CUDA, 1, p, alone);
    serve(m, JAMBA_DEVICE_CPU, N_REQ, p, cpu);
    int64_t same_alone = 0, same_cpu = 0;
    double lp_err = 0;
    for (int i = 0; i < N_REQ; i++) {
        GT_CHECK(batched[i].n == N_GEN && batched[i].finish == JAMBA_FINISH_LENGTH, "request %d: %lld tokens, finish %d",
                 i, (long long)batched[i].n, (int)batched[i].finish);
        for (int64_t t = 0; t < N_GEN; t++) { /* up to the first difference: a near tie may flip one */
            if (batched[i].tokens[t] != alone[i].tokens[t])
                break;
            same_alone++;
        }
        for (int64_t t = 0; t < N_GEN && batched[i].tokens[t] == cpu[i].tokens[t]; t++) {
            same_cpu++;
            lp_err = fmax(lp_err, fabs((double)batched[i].logprob[t] - (double)cpu[i].logprob[t]));
        }
    }
    gt_note("greedy tokens equal before any difference: %lld / %d with each alone, %lld / %d with the CPU; "
            "largest logprob difference vs CPU %.2e", (long long)same_alone, N_REQ * N_GEN, (long long)same_cpu,
            N_REQ * N_GEN, lp_err);
    GT_CHECK(same_alone >= N_REQ * N_GEN * 9 / 10, "batched vs alone: %lld of %d tokens", (long long)same_alone,
             N_REQ * N_GEN);
    GT_CHECK(same_cpu >= N_REQ * N_GEN * 9 / 10, "CUDA vs CPU: %lld of %d tokens", (long long)same_cpu, N_REQ * N_GEN);
    GT_CHECK(lp_err < 1e-3, "logprobs differ from the CPU's by %.2e", lp_err);
    jamba_model_free(m);
}

typedef struct abort_after {
    int polls, stop_at;
} abort_after;

static bool stop_later(void *data) {
    abort_after *a = data;
    return ++a->polls >= a->stop_at;
}

static void test_abort(void) {
    int64_t V;
    jamba_model *m = load_demo(&V);
    jamba_context *ctx = m ? cuda_context(m, 1) : NULL;
    if (ctx == NULL) {
        jamba_model_free(m);
        return;
    }
    jamba_token p[200];
    prompt(p, 200, V, 0);
    float *want = malloc((size_t)V * 4), *got = malloc((size_t)V * 4);
    bool ok = feed(ctx, 0, p, 20, NULL, V) && feed(ctx, 0, p + 20, 180, want, V);
    jamba_error err = {0};
    ok = ok && jamba_seq_rollback(ctx, 0, 20, NULL, &err) == JAMBA_OK;
    abort_after a = {0, 2}; /* stops the 180-token call (steps of 64) at its second poll */
    ok = ok && jamba_context_set_abort_callback(ctx, stop_later, &a, &err) == JAMBA_OK;
    const jamba_seq_input in = {0, p + 20, 180, JAMBA_LOGITS_LAST};
    const jamba_status st = ok ? jamba_decode(ctx, &in, 1, &err) : JAMBA_ERR_INVALID_ARGUMENT;
    GT_CHECK(st == JAMBA_ERR_ABORTED, "abort: status %d (%s)", (int)st, err.message);
    GT_CHECK(jamba_seq_length(ctx, 0) == 20, "after the abort the sequence holds %lld tokens",
             (long long)jamba_seq_length(ctx, 0));
    ok = ok && jamba_context_set_abort_callback(ctx, NULL, NULL, &err) == JAMBA_OK;
    if (ok && feed(ctx, 0, p + 20, 180, got, V))
        gt_expect_close("continued after an abort vs never aborted", got, want, V, 1e-10);
    free(want);
    free(got);
    jamba_context_free(ctx);
    jamba_model_free(m);
}

const gt_case gt_serving_cases[] = {
    {"serving/prefix_restore", test_prefix_restore, true},
    {"serving/scheduler", test_scheduler, false},
    {"serving/abort", test_abort, true},
};
const int gt_n_serving_cases = sizeof gt_serving_cases / sizeof gt_serving_cases[0];
