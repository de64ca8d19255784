/*
 * test_scheduler.c — continuous batching on the CPU (models/demo and the mini fixture): many requests
 * served together give exactly the tokens each gives alone; the prefix cache skips shared prompt prefixes
 * without changing a token; cancellation, callbacks that stop, stop tokens, a full context and admission
 * sized by memory each end requests with the right reason and free their sequences.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/testutil.h"

#define DEMO JB_SOURCE_DIR "/models/demo"
#define MAX_GEN 64
#define N_REQ 12

static jamba_model *load(const char *dir) {
    jamba_model *m = NULL;
    jamba_error err = {0};
    cr_assert_eq(jamba_model_load(dir, NULL, &m, &err), JAMBA_OK, "%s", err.message);
    return m;
}

/* What a request's callback saw. */
typedef struct seen {
    jamba_token tokens[MAX_GEN];
    float logprobs[MAX_GEN];
    jamba_token top0[MAX_GEN];
    int64_t n, n_cached, events_after_end;
    jamba_finish_reason finish;
    bool ended;
    int64_t stop_after; /* the callback returns false after this many tokens (0: never) */
} seen;

static bool record(const jamba_token_event *e, void *data) {
    seen *s = data;
    if (s->ended) {
        s->events_after_end++;
        return false;
    }
    if (e->token >= 0 && s->n < MAX_GEN) {
        s->logprobs[s->n] = e->logprob;
        s->top0[s->n] = e->n_top > 0 ? e->top_tokens[0] : -1;
        s->tokens[s->n++] = e->token;
    }
    s->n_cached = e->n_cached;
    if (e->finish != JAMBA_FINISH_NONE) {
        s->finish = e->finish;
        s->ended = true;
    }
    if (s->stop_after && s->n >= s->stop_after && e->finish == JAMBA_FINISH_NONE) {
        s->finish = JAMBA_FINISH_CANCELLED;
        s->ended = true;
        return false;
    }
    return true;
}

static jamba_scheduler *scheduler(const jamba_model *m, int32_t n_seq, int64_t budget, jamba_prefix_cache *cache) {
    jamba_context_params cp = jamba_context_default_params();
    cp.n_seq_max = n_seq;
    cp.n_ctx = 256;
    cp.n_threads = 2;
    jamba_scheduler_params sp = jamba_scheduler_default_params();
    sp.token_budget = budget;
    sp.cache = cache;
    sp.snapshot_interval = 16;
    jamba_scheduler *s = NULL;
    jamba_error err = {0};
    cr_assert_eq(jamba_scheduler_create(m, &cp, &sp, &s, &err), JAMBA_OK, "%s", err.message);
    return s;
}

static void prompt(const jamba_model *m, jamba_token *out, int64_t n, int salt) {
    const int64_t V = jamba_model_config(m)->vocab_size;
    for (int64_t i = 0; i < n; i++)
        out[i] = (jamba_token)((i * 31 + 7 + (i >= n - 3 ? salt * 11 : 0)) % V);
}

static int64_t submit(jamba_scheduler *s, const jamba_token *p, int64_t n, int64_t max_tokens, float temperature,
                      uint64_t seed, seen *out) {
    jamba_request_params rp = jamba_request_default_params();
    rp.prompt = p;
    rp.n_prompt = n;
    rp.max_tokens = max_tokens;
    rp.sampling.temperature = temperature;
    rp.sampling.seed = seed;
    rp.ignore_eos = true;
    rp.on_token = record;
    rp.user_data = out;
    int64_t id = 0;
    jamba_error err = {0};
    cr_assert_eq(jamba_scheduler_submit(s, &rp, &id, &err), JAMBA_OK, "%s", err.message);
    cr_assert_gt(id, 0);
    return id;
}

static void run(jamba_scheduler *s) {
    jamba_error err = {0};
    int64_t active = 1;
    for (int guard = 0; active > 0 && guard < 10000; guard++)
        cr_assert_eq(jamba_scheduler_step(s, &active, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(active, 0);
}

static jamba_scheduler_stats stats_of(jamba_scheduler *s) {
    jamba_scheduler_stats st;
    cr_assert_eq(jamba_scheduler_get_stats(s, &st, NULL), JAMBA_OK);
    return st;
}

/* Requests of different prompt lengths and samplers, served 12 at once with a small budget (prefill chunks
 * and decode tokens share steps), and each alone: the same tokens. */
JB_TEST(scheduler, batched_requests_give_the_tokens_each_gives_alone) {
    jamba_model *m = load(DEMO);
    static jamba_token prompts[N_REQ][80];
    static seen together[N_REQ], alone[N_REQ];
    memset(together, 0, sizeof together);
    memset(alone, 0, sizeof alone);
    jamba_scheduler *batch = scheduler(m, 8, 48, NULL); /* fewer sequences than requests: some wait */
    for (int i = 0; i < N_REQ; i++) {
        prompt(m, prompts[i], 10 + 6 * i, i);
        submit(batch, prompts[i], 10 + 6 * i, 12 + i, i % 3 == 0 ? 0.0f : 0.9f, 100 + (uint64_t)i, &together[i]);
    }
    run(batch);
    jamba_scheduler_stats st = stats_of(batch);
    cr_assert_eq(st.finished, N_REQ);
    cr_assert_eq(st.running + st.waiting, 0);
    cr_assert_lt(st.steps, 12 * 24, "%lld steps: requests were batched", (long long)st.steps);
    jamba_scheduler_free(batch);

    jamba_scheduler *one = scheduler(m, 1, 512, NULL);
    for (int i = 0; i < N_REQ; i++) {
        submit(one, prompts[i], 10 + 6 * i, 12 + i, i % 3 == 0 ? 0.0f : 0.9f, 100 + (uint64_t)i, &alone[i]);
        run(one);
        cr_assert_eq(together[i].finish, JAMBA_FINISH_LENGTH);
        cr_assert_eq(alone[i].n, 12 + i);
        cr_assert_eq(together[i].n, alone[i].n, "request %d", i);
        cr_assert_eq(memcmp(together[i].tokens, alone[i].tokens, (size_t)alone[i].n * sizeof(jamba_token)), 0,
                     "request %d: batched tokens differ from alone", i);
        cr_assert_eq(together[i].events_after_end, 0);
    }
    jamba_scheduler_free(one);
    jamba_model_free(m);
}

/* Greedy tokens equal the argmax of jamba_decode's logits, and logprobs equal their log-softmax. */
JB_TEST(scheduler, greedy_tokens_and_logprobs_match_plain_decoding) {
    jamba_model *m = load(DEMO);
    const int64_t V = jamba_model_config(m)->vocab_size;
    jamba_token p[20];
    prompt(m, p, 20, 0);
    seen got = {0};
    jamba_scheduler *s = scheduler(m, 2, 512, NULL);
    jamba_request_params rp = jamba_request_default_params();
    rp.prompt = p;
    rp.n_prompt = 20;
    rp.max_tokens = 8;
    rp.sampling.temperature = 0;
    rp.ignore_eos = true;
    rp.logprobs = true;
    rp.top_logprobs = 3;
    rp.on_token = record;
    rp.user_data = &got;
    int64_t id;
    cr_assert_eq(jamba_scheduler_submit(s, &rp, &id, NULL), JAMBA_OK);
    run(s);
    jamba_scheduler_free(s);

    jamba_context_params cp = jamba_context_default_params();
    cp.n_ctx = 64;
    jamba_context *ctx = NULL;
    cr_assert_eq(jamba_context_create(m, &cp, &ctx, NULL), JAMBA_OK);
    jamba_seq_input in = {0, p, 20, JAMBA_LOGITS_LAST};
    for (int64_t t = 0; t < 8; t++) {
        cr_assert_eq(jamba_decode(ctx, &in, 1, NULL), JAMBA_OK);
        const float *row = jamba_logits(ctx, 0, NULL);
        const jamba_token best = (jamba_token)tu_argmax(row, V);
        cr_assert_eq(got.tokens[t], best, "token %lld", (long long)t);
        cr_assert_eq(got.top0[t], best);
        double z = 0;
        for (int64_t v = 0; v < V; v++)
            z += exp((double)row[v] - (double)row[best]);
        const double want = -log(z);
        cr_assert_float_eq(got.logprobs[t], want, 1e-4, "token %lld: %g vs %g", (long long)t, (double)got.logprobs[t], want);
        in = (jamba_seq_input){0, &got.tokens[t], 1, JAMBA_LOGITS_LAST};
    }
    jamba_context_free(ctx);
    jamba_model_free(m);
}

/* Requests sharing a long prefix: later ones restore it and prefill only the rest; the tokens are those of
 * a scheduler without a cache. */
JB_TEST(scheduler, the_prefix_cache_skips_shared_prefixes_without_changing_tokens) {
    jamba_model *m = load(DEMO);
    static jamba_token prompts[4][120];
    static seen cached[4], plain[4];
    memset(cached, 0, sizeof cached);
    memset(plain, 0, sizeof plain);
    jamba_prefix_cache *cache = NULL;
    cr_assert_eq(jamba_prefix_cache_create(64u << 20, &cache, NULL), JAMBA_OK);
    jamba_scheduler *with = scheduler(m, 2, 64, cache), *without = scheduler(m, 2, 64, NULL);
    for (int i = 0; i < 4; i++) {
        prompt(m, prompts[i], 100 + 5 * i, 0);
        for (int j = 0; j < 5 * i + 3; j++) /* a different ending for each */
            prompts[i][97 + j] = (jamba_token)((i * 17 + j * 3 + 1) % jamba_model_config(m)->vocab_size);
        jamba_request_params rp = jamba_request_default_params();
        rp.prompt = prompts[i];
        rp.n_prompt = 100 + 5 * i;
        rp.max_tokens = 6;
        rp.sampling.temperature = 0;
        rp.ignore_eos = true;
        rp.cache_prefix = 97; /* the shared part, as a server marks a system prompt */
        rp.on_token = record;
        int64_t id;
        rp.user_data = &cached[i];
        cr_assert_eq(jamba_scheduler_submit(with, &rp, &id, NULL), JAMBA_OK);
        run(with); /* one after the other, so each can use the snapshots of the earlier ones */
        rp.user_data = &plain[i];
        cr_assert_eq(jamba_scheduler_submit(without, &rp, &id, NULL), JAMBA_OK);
        run(without);
        cr_assert_eq(cached[i].n, 6);
        cr_assert_eq(memcmp(cached[i].tokens, plain[i].tokens, 6 * sizeof(jamba_token)), 0, "request %d", i);
        cr_assert_eq(cached[i].n_cached, i == 0 ? 0 : 97, "request %d restored %lld", i, (long long)cached[i].n_cached);
    }
    jamba_scheduler_stats st = stats_of(with);
    cr_assert_eq(st.prefill_tokens, 100 + 8 + 13 + 18, "only the first prompt and the endings were prefilled");
    jamba_prefix_cache_stats cs;
    cr_assert_eq(jamba_prefix_cache_get_stats(cache, &cs, NULL), JAMBA_OK);
    cr_assert_eq(cs.tokens_restored, 3 * 97);
    jamba_scheduler_free(with);
    jamba_scheduler_free(without);
    jamba_prefix_cache_free(cache);
    jamba_model_free(m);
}

JB_TEST(scheduler, cancel_stop_and_context_end_requests_with_their_reason) {
    jamba_model *m = load(DEMO);
    jamba_token p[12];
    prompt(m, p, 12, 0);
    jamba_scheduler *s = scheduler(m, 2, 512, NULL);
    seen greedy = {0};
    submit(s, p, 12, 10, 0.0f, 1, &greedy);
    run(s);

    seen cancelled_running = {0}, cancelled_waiting = {0}, stopped = {0}, by_callback = {.stop_after = 2};
    const int64_t a = submit(s, p, 12, 50, 0.0f, 1, &cancelled_running);
    submit(s, p, 12, 50, 0.0f, 1, &by_callback);
    const int64_t c = submit(s, p, 12, 50, 0.0f, 1, &cancelled_waiting); /* no free sequence yet */
    jamba_error err = {0};
    cr_assert_eq(jamba_scheduler_step(s, NULL, &err), JAMBA_OK);
    cr_assert_eq(jamba_scheduler_step(s, NULL, &err), JAMBA_OK);
    cr_assert_eq(jamba_scheduler_cancel(s, a, &err), JAMBA_OK);
    cr_assert_eq(jamba_scheduler_cancel(s, c, &err), JAMBA_OK);
    run(s);
    cr_assert_eq(cancelled_running.finish, JAMBA_FINISH_CANCELLED);
    cr_assert_eq(cancelled_running.n, 2, "tokens before the cancel");
    cr_assert_eq(cancelled_waiting.finish, JAMBA_FINISH_CANCELLED);
    cr_assert_eq(cancelled_waiting.n, 0);
    cr_assert_eq(by_callback.finish, JAMBA_FINISH_CANCELLED);
    cr_assert_eq(by_callback.n, 2);
    cr_assert_eq(by_callback.events_after_end + cancelled_running.events_after_end, 0);
    cr_assert_eq(jamba_scheduler_cancel(s, a, &err), JAMBA_ERR_INVALID_ARGUMENT, "a finished request");

    /* the greedy run's third token as a stop token: ends at the third token */
    jamba_request_params rp = jamba_request_default_params();
    rp.prompt = p;
    rp.n_prompt = 12;
    rp.max_tokens = 10;
    rp.sampling.temperature = 0;
    rp.ignore_eos = true;
    rp.stop_tokens = &greedy.tokens[2];
    rp.n_stop_tokens = 1;
    rp.on_token = record;
    rp.user_data = &stopped;
    int64_t id;
    cr_assert_eq(jamba_scheduler_submit(s, &rp, &id, &err), JAMBA_OK);
    run(s);
    cr_assert_eq(stopped.finish, JAMBA_FINISH_STOP);
    int64_t first = 0;
    while (greedy.tokens[first] != greedy.tokens[2])
        first++;
    cr_assert_eq(stopped.n, first + 1, "ends at the first occurrence of the stop token");
    jamba_scheduler_stats st = stats_of(s);
    cr_assert_eq(st.running + st.waiting, 0);
    cr_assert_eq(st.cancelled, 3);
    jamba_scheduler_free(s);

    /* a context of 256 tokens: a prompt of 250 gets 7 tokens (the last one sampled, never fed) */
    s = scheduler(m, 1, 512, NULL);
    jamba_token *longp = malloc(300 * sizeof *longp);
    prompt(m, longp, 300, 0);
    seen full = {0};
    submit(s, longp, 250, 50, 0.0f, 1, &full);
    run(s);
    cr_assert_eq(full.finish, JAMBA_FINISH_CONTEXT);
    cr_assert_eq(full.n, 7);
    rp.prompt = longp;
    rp.n_prompt = 257;
    cr_assert_eq(jamba_scheduler_submit(s, &rp, &id, &err), JAMBA_ERR_CONTEXT_FULL);
    cr_assert(strstr(err.message, "257") != NULL, "%s", err.message);
    rp.n_prompt = 5;
    rp.top_logprobs = 3; /* without logprobs */
    cr_assert_eq(jamba_scheduler_submit(s, &rp, &id, &err), JAMBA_ERR_INVALID_ARGUMENT);
    free(longp);
    jamba_scheduler_free(s);
    jamba_model_free(m);
}

/* n_seq_max 0: as many sequences as the memory budget holds, from the planner's figures. */
JB_TEST(scheduler, admission_is_sized_by_memory) {
    jamba_model *m = load(DEMO);
    jamba_context_params cp = jamba_context_default_params();
    cp.n_ctx = 256;
    cp.n_seq_max = 1;
    jamba_context_plan one, two;
    cr_assert_eq(jamba_context_plan_memory(m, &cp, &one, NULL), JAMBA_OK);
    cp.n_seq_max = 2;
    cr_assert_eq(jamba_context_plan_memory(m, &cp, &two, NULL), JAMBA_OK);
    const uint64_t per_seq = (two.kv_cache + two.mamba_state) - (one.kv_cache + one.mamba_state);
    cp.n_seq_max = 0;
    jamba_scheduler_params sp = jamba_scheduler_default_params();
    sp.memory_bytes = per_seq * 5 + per_seq / 2;
    jamba_scheduler *s = NULL;
    jamba_error err = {0};
    cr_assert_eq(jamba_scheduler_create(m, &cp, &sp, &s, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(stats_of(s).n_seq_max, 5);
    jamba_scheduler_free(s);
    sp.memory_bytes = 1; /* less than one sequence: one, the least a scheduler can run */
    cr_assert_eq(jamba_scheduler_create(m, &cp, &sp, &s, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(stats_of(s).n_seq_max, 1);
    jamba_scheduler_free(s);
    jamba_model_free(m);
}

/* submit and cancel from other threads while one thread steps (the documented threading). */
typedef struct submitter {
    jamba_scheduler *s;
    jamba_token *p;
    seen out[8];
} submitter;

static void *submit_many(void *arg) {
    submitter *t = arg;
    for (int i = 0; i < 8; i++)
        submit(t->s, t->p, 16, 5, 0.0f, 1, &t->out[i]);
    return NULL;
}

JB_TEST(scheduler, requests_arrive_from_other_threads) {
    jamba_model *m = load(DEMO);
    jamba_token p[16];
    prompt(m, p, 16, 0);
    jamba_scheduler *s = scheduler(m, 4, 512, NULL);
    submitter t = {.s = s, .p = p};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, submit_many, &t), 0);
    int64_t done = 0;
    while (done < 8) {
        if (!jamba_scheduler_wait(s, 1000))
            continue;
        cr_assert_eq(jamba_scheduler_step(s, NULL, NULL), JAMBA_OK);
        done = stats_of(s).finished;
    }
    pthread_join(th, NULL);
    for (int i = 0; i < 8; i++) {
        cr_assert_eq(t.out[i].finish, JAMBA_FINISH_LENGTH);
        cr_assert_eq(memcmp(t.out[i].tokens, t.out[0].tokens, 5 * sizeof(jamba_token)), 0);
    }
    cr_assert_not(jamba_scheduler_wait(s, 10), "idle: wait times out");
    jamba_scheduler_free(s);
    jamba_model_free(m);
}
