/*
 * test_gpu_model.c — the whole model on the GPU against the CPU path and the transformers fixtures:
 * every fixture's logits and greedy continuation (fp32 mode), bf16 mode within its looser bound, chunked
 * prefill, several sequences at different positions in one step, CUDA graphs against direct launches,
 * device sampling against the CPU sampler, sequence fork/save/restore, and the demo model.
 */
#include "tests/gpu/gpu_test.h"

#include "ckpt/safetensors.h"
#include "cuda/decode_plan.h"
#include "runtime/context.h"
#include "runtime/model.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* End-to-end bounds (normalised MSE): fp32 mode against the CPU and the reference; bf16 mode against
 * the CPU path (bf16 weights and activations change the function itself). */
#define E2E_TOL_F32 1e-7
#define E2E_TOL_BF16 1e-2

static jamba_model *load(const char *dir) {
    jamba_model *m = NULL;
    jamba_error err = {0};
    if (jamba_model_load(dir, NULL, &m, &err) != JAMBA_OK) {
        gt_fail(__FILE__, __LINE__, "%s: %s", dir, err.message);
        return NULL;
    }
    return m;
}

static jamba_context *context(const jamba_model *m, jamba_device_type dev, jamba_dtype dt, int32_t n_seq,
                              int64_t n_batch, bool graphs) {
    jamba_context_params p = jamba_context_default_params();
    p.device = dev;
    p.gpu_dtype = dt;
    p.gpu_graphs = graphs;
    p.n_seq_max = n_seq;
    p.n_ctx = 512;
    p.n_batch = n_batch;
    p.n_threads = 4;
    p.n_logits_max = 512;
    jamba_context *ctx = NULL;
    jamba_error err = {0};
    if (jamba_context_create(m, &p, &ctx, &err) != JAMBA_OK) {
        gt_fail(__FILE__, __LINE__, "context (%s, %s): %s", dev == JAMBA_DEVICE_CUDA ? "cuda" : "cpu",
                jamba_dtype_name(dt), err.message);
        return NULL;
    }
    return ctx;
}

/* Feed ids to `seq` with the given logits mode; a copy of the logits (rows x V) or NULL. */
static float *feed(jamba_context *ctx, int32_t seq, const int32_t *ids, int64_t n, jamba_logits_mode mode,
                   int64_t V) {
    jamba_seq_input in = {.seq = seq, .tokens = ids, .n_tokens = n, .logits = mode};
    jamba_error err = {0};
    if (jamba_decode(ctx, &in, 1, &err) != JAMBA_OK) {
        gt_fail(__FILE__, __LINE__, "decode: %s", err.message);
        return NULL;
    }
    if (mode == JAMBA_LOGITS_NONE)
        return NULL;
    int64_t rows = 0;
    const float *l = jamba_logits(ctx, 0, &rows);
    float *copy = malloc((size_t)(rows * V) * 4);
    memcpy(copy, l, (size_t)(rows * V) * 4);
    return copy;
}

static int32_t argmax(const float *x, int64_t n) {
    int32_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best])
            best = (int32_t)i;
    return best;
}

/* ---- the transformers fixtures ------------------------------------------------------------------------- */

typedef struct fixture {
    char name[64];
    jb_st_file ref;
    int32_t *ids;
    int64_t T;
    const float *logits, *step_logits;
    const int64_t *greedy;
    int64_t n_greedy;
} fixture;

static const void *ref_tensor(const jb_st_file *f, const char *name, int64_t *rows) {
    for (int64_t i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) {
            if (rows)
                *rows = f->tensors[i].shape[0];
            return jb_st_tensor_data(f, &f->tensors[i]);
        }
    return NULL;
}

static bool fixture_open(fixture *fx, const char *name) {
    memset(fx, 0, sizeof *fx);
    snprintf(fx->name, sizeof fx->name, "%s", name);
    char rel[160];
    snprintf(rel, sizeof rel, "forward/%s/reference.safetensors", name);
    char *path = gt_fixture(rel);
    jamba_error err = {0};
    bool ok = jb_st_open(path, path, &fx->ref, &err) == JAMBA_OK;
    free(path);
    if (!ok) {
        gt_fail(__FILE__, __LINE__, "%s: %s", name, err.message);
        return false;
    }
    const int64_t *ids = ref_tensor(&fx->ref, "input_ids", &fx->T);
    fx->logits = ref_tensor(&fx->ref, "logits", NULL);
    fx->step_logits = ref_tensor(&fx->ref, "step_logits", NULL);
    fx->greedy = ref_tensor(&fx->ref, "greedy_tokens", &fx->n_greedy);
    if (ids == NULL || fx->logits == NULL) {
        gt_fail(__FILE__, __LINE__, "%s: reference without input_ids or logits", name);
        jb_st_close(&fx->ref);
        return false;
    }
    fx->ids = malloc((size_t)fx->T * 4);
    for (int64_t i = 0; i < fx->T; i++)
        fx->ids[i] = (int32_t)ids[i];
    return true;
}

static void fixture_close(fixture *fx) {
    free(fx->ids);
    jb_st_close(&fx->ref);
}

static void fixture_on_gpu(const char *name, jamba_dtype dt) {
    fixture fx;
    if (!fixture_open(&fx, name))
        return;
    jamba_model *m = gt_fixture_model(name);
    if (m == NULL) {
        fixture_close(&fx);
        return;
    }
    const int64_t V = jamba_model_config(m)->vocab_size;
    jamba_context *gpu = context(m, JAMBA_DEVICE_CUDA, dt, 1, 64, true);
    jamba_context *cpu = context(m, JAMBA_DEVICE_CPU, JAMBA_DTYPE_F32, 1, 64, false);
    if (gpu && cpu) {
        float *g = feed(gpu, 0, fx.ids, fx.T, JAMBA_LOGITS_ALL, V);
        float *c = feed(cpu, 0, fx.ids, fx.T, JAMBA_LOGITS_ALL, V);
        const double tol = dt == JAMBA_DTYPE_F32 ? E2E_TOL_F32 : E2E_TOL_BF16;
        char what[160];
        if (g && c) {
            snprintf(what, sizeof what, "%s %s prefill logits vs CPU", name, jamba_dtype_name(dt));
            gt_expect_close(what, g, c, fx.T * V, tol);
            snprintf(what, sizeof what, "%s %s prefill logits vs transformers", name, jamba_dtype_name(dt));
            gt_expect_close(what, g, fx.logits, fx.T * V, tol);
            gt_note("%s %s: prefill nmse vs CPU %.2e, vs transformers %.2e", name, jamba_dtype_name(dt),
                    gt_nmse(g, c, fx.T * V), gt_nmse(g, fx.logits, fx.T * V));
        }
        /* greedy continuation, one token per step (the decode graph) */
        int32_t next = g ? argmax(g + (fx.T - 1) * V, V) : 0;
        int same = 0;
        for (int64_t i = 0; g && fx.greedy && i < fx.n_greedy; i++) {
            if (dt == JAMBA_DTYPE_F32 && next != (int32_t)fx.greedy[i]) {
                gt_fail(__FILE__, __LINE__, "%s: greedy token %lld is %d, transformers %lld", name, (long long)i, next,
                        (long long)fx.greedy[i]);
                break;
            }
            same += next == (int32_t)fx.greedy[i];
            next = (int32_t)fx.greedy[i]; /* continue on the reference path so the step logits compare */
            float *s = feed(gpu, 0, &next, 1, JAMBA_LOGITS_LAST, V);
            if (s == NULL)
                break;
            if (fx.step_logits) {
                snprintf(what, sizeof what, "%s %s step %lld logits vs transformers", name, jamba_dtype_name(dt),
                         (long long)i);
                gt_expect_close(what, s, fx.step_logits + i * V, V, tol);
            }
            next = argmax(s, V);
            free(s);
        }
        if (fx.greedy)
            gt_note("%s %s: %d of %lld greedy tokens as transformers", name, jamba_dtype_name(dt), same,
                    (long long)fx.n_greedy);
        free(g);
        free(c);
    }
    jamba_context_free(gpu);
    jamba_context_free(cpu);
    jamba_model_free(m);
    fixture_close(&fx);
}

static void test_fixtures_f32(void) {
    char names[32][64];
    int n = gt_fixture_names(names, 32);
    for (int i = 0; i < n; i++)
        fixture_on_gpu(names[i], JAMBA_DTYPE_F32);
}

static void test_fixtures_bf16(void) {
    char names[32][64];
    int n = gt_fixture_names(names, 32);
    for (int i = 0; i < n; i++)
        fixture_on_gpu(names[i], JAMBA_DTYPE_BF16);
}

/* The "mini" fixture with its model; false (after recording why) when either is missing. */
static bool open_mini(fixture *fx, jamba_model **m, int64_t *V) {
    *m = NULL;
    if (!fixture_open(fx, "mini"))
        return false;
    if ((*m = gt_fixture_model("mini")) == NULL) {
        fixture_close(fx);
        return false;
    }
    *V = jamba_model_config(*m)->vocab_size;
    return true;
}

static void close_mini(fixture *fx, jamba_model *m) {
    jamba_model_free(m);
    fixture_close(fx);
}

/* ---- chunking, batching, graphs ------------------------------------------------------------------------- */

static void test_chunked_prefill(void) {
    static const char *const names[] = {"mini", "pure-mamba-moe", "pure-attention-dense"};
    for (int f = 0; f < 3; f++) {
        fixture fx;
        if (!fixture_open(&fx, names[f]))
            continue;
        jamba_model *m = gt_fixture_model(names[f]);
        const int64_t V = m ? jamba_model_config(m)->vocab_size : 0;
        for (int di = 0; m && di < 2; di++) { /* fp32 mode: equal; bf16: within bf16 rounding */
            const jamba_dtype dt = di ? JAMBA_DTYPE_BF16 : JAMBA_DTYPE_F32;
            jamba_context *whole = context(m, JAMBA_DEVICE_CUDA, dt, 1, 64, true);
            jamba_context *chunks = context(m, JAMBA_DEVICE_CUDA, dt, 1, 5, true);
            if (whole && chunks) {
                float *a = feed(whole, 0, fx.ids, fx.T, JAMBA_LOGITS_ALL, V);
                float *b = feed(chunks, 0, fx.ids, fx.T, JAMBA_LOGITS_ALL, V);
                char what[96];
                snprintf(what, sizeof what, "%s %s chunks of 5 vs one step", names[f], jamba_dtype_name(dt));
                if (a && b)
                    gt_expect_close(what, b, a, fx.T * V, di ? 1e-3 : E2E_TOL_F32);
                free(a);
                free(b);
            }
            jamba_context_free(whole);
            jamba_context_free(chunks);
        }
        jamba_model_free(m);
        fixture_close(&fx);
    }
}

/* Three sequences at different positions, some prefilling and one decoding, in one call, against each
 * run alone. */
static void test_batching(void) {
    fixture fx;
    jamba_model *m;
    int64_t V;
    if (!open_mini(&fx, &m, &V))
        return;
    for (int di = 0; m && di < 2; di++) {
        const jamba_dtype dt = di ? JAMBA_DTYPE_BF16 : JAMBA_DTYPE_F32;
        jamba_context *together = context(m, JAMBA_DEVICE_CUDA, dt, 3, 64, true);
        jamba_context *alone = context(m, JAMBA_DEVICE_CUDA, dt, 1, 64, true);
        if (!together || !alone) {
            jamba_context_free(together);
            jamba_context_free(alone);
            break;
        }
        /* histories of 0, 7 and 15 tokens, then 9, 1 and 4 more together */
        static const int64_t hist[3] = {0, 7, 15}, more[3] = {9, 1, 4};
        for (int s = 1; s < 3; s++)
            free(feed(together, s, fx.ids, hist[s], JAMBA_LOGITS_NONE, V));
        jamba_seq_input in[3];
        for (int s = 0; s < 3; s++)
            in[s] = (jamba_seq_input){.seq = s, .tokens = fx.ids + hist[s], .n_tokens = more[s], .logits = JAMBA_LOGITS_ALL};
        jamba_error err = {0};
        GT_CHECK(jamba_decode(together, in, 3, &err) == JAMBA_OK, "batched decode: %s", err.message);
        for (int s = 0; s < 3; s++) {
            int64_t rows = 0;
            const float *got = jamba_logits(together, s, &rows);
            float *copy = malloc((size_t)(rows * V) * 4);
            memcpy(copy, got, (size_t)(rows * V) * 4);
            jamba_seq_reset(alone, 0, NULL);
            if (hist[s])
                free(feed(alone, 0, fx.ids, hist[s], JAMBA_LOGITS_NONE, V));
            float *want = feed(alone, 0, fx.ids + hist[s], more[s], JAMBA_LOGITS_ALL, V);
            char what[64];
            snprintf(what, sizeof what, "%s sequence %d", jamba_dtype_name(dt), s);
            if (want)
                gt_expect_close(what, copy, want, rows * V, dt == JAMBA_DTYPE_F32 ? E2E_TOL_F32 : 1e-4);
            free(copy);
            free(want);
        }
        jamba_context_free(together);
        jamba_context_free(alone);
    }
    close_mini(&fx, m);
}

/* Decode steps replayed from a CUDA graph give the same logits as direct launches. */
static void test_graphs(void) {
    fixture fx;
    jamba_model *m;
    int64_t V;
    if (!open_mini(&fx, &m, &V))
        return;
    for (int di = 0; m && di < 2; di++) {
        const jamba_dtype dt = di ? JAMBA_DTYPE_BF16 : JAMBA_DTYPE_F32;
        jamba_context *g = context(m, JAMBA_DEVICE_CUDA, dt, 2, 64, true);
        jamba_context *d = context(m, JAMBA_DEVICE_CUDA, dt, 2, 64, false);
        if (!g || !d) {
            jamba_context_free(g);
            jamba_context_free(d);
            break;
        }
        for (int s = 0; s < 2; s++) {
            free(feed(g, s, fx.ids, 6 + s, JAMBA_LOGITS_NONE, V));
            free(feed(d, s, fx.ids, 6 + s, JAMBA_LOGITS_NONE, V));
        }
        int differ = 0;
        for (int step = 0; step < 12; step++) {
            int32_t tok[2] = {fx.ids[(step * 5) % fx.T], fx.ids[(step * 3 + 1) % fx.T]};
            /* alternate one- and two-sequence steps: two graphs */
            int n = step % 2 ? 2 : 1;
            jamba_seq_input in[2] = {{0, &tok[0], 1, JAMBA_LOGITS_LAST}, {1, &tok[1], 1, JAMBA_LOGITS_LAST}};
            jamba_error err = {0};
            GT_CHECK(jamba_decode(g, in, n, &err) == JAMBA_OK, "graph decode: %s", err.message);
            GT_CHECK(jamba_decode(d, in, n, &err) == JAMBA_OK, "direct decode: %s", err.message);
            for (int s = 0; s < n; s++)
                differ += memcmp(jamba_logits(g, s, NULL), jamba_logits(d, s, NULL), (size_t)V * 4) != 0;
        }
        GT_CHECK(differ == 0, "%s: %d decode rows differ between graph replay and direct launches",
                 jamba_dtype_name(dt), differ);
        jamba_context_free(g);
        jamba_context_free(d);
    }
    close_mini(&fx, m);
}

/* ---- sampling and state ----------------------------------------------------------------------------------- */

static void test_decode_sample(void) {
    fixture fx;
    jamba_model *m;
    int64_t V;
    if (!open_mini(&fx, &m, &V))
        return;
    enum { S = 4 };
    jamba_context *gpu = m ? context(m, JAMBA_DEVICE_CUDA, JAMBA_DTYPE_F32, S, 64, true) : NULL;
    jamba_context *cpu = m ? context(m, JAMBA_DEVICE_CPU, JAMBA_DTYPE_F32, S, 64, false) : NULL;
    jamba_sampler *sg[S] = {0}, *sc[S] = {0};
    int32_t next[S];
    for (int i = 0; gpu && cpu && i < S; i++) {
        jamba_sampler_params p = jamba_sampler_default_params();
        p.seed = 5 + (uint64_t)i;
        if (i == 0)
            p.temperature = 0;
        if (i == 2)
            p.top_k = 0; /* the host fallback */
        if (i == 3)
            p.repetition_penalty = 1.3f, p.presence_penalty = 0.4f;
        jamba_sampler_create(&p, V, &sg[i], NULL);
        jamba_sampler_create(&p, V, &sc[i], NULL);
        next[i] = fx.ids[i];
    }
    int same = 0, total = 0;
    for (int step = 0; gpu && cpu && step < 24; step++) {
        jamba_seq_input in[S];
        int32_t tg[S], tc[S];
        for (int i = 0; i < S; i++)
            in[i] = (jamba_seq_input){.seq = i, .tokens = &next[i], .n_tokens = 1};
        jamba_error err = {0};
        if (jamba_decode_sample(gpu, in, S, sg, tg, &err) != JAMBA_OK ||
            jamba_decode_sample(cpu, in, S, sc, tc, &err) != JAMBA_OK) {
            gt_fail(__FILE__, __LINE__, "decode_sample: %s", err.message);
            break;
        }
        for (int i = 0; i < S; i++) {
            same += tg[i] == tc[i];
            total++;
            next[i] = tc[i];
        }
        if (same != total) {
            gt_fail(__FILE__, __LINE__, "step %d: device tokens differ from the CPU's (%d of %d equal so far)", step,
                    same, total);
            break;
        }
    }
    gt_note("%d of %d sampled tokens identical", same, total);
    for (int i = 0; i < S; i++) {
        jamba_sampler_free(sg[i]);
        jamba_sampler_free(sc[i]);
    }
    jamba_context_free(gpu);
    jamba_context_free(cpu);
    close_mini(&fx, m);
}

static void test_state(void) {
    fixture fx;
    jamba_model *m;
    int64_t V;
    if (!open_mini(&fx, &m, &V))
        return;
    jamba_context *g = m ? context(m, JAMBA_DEVICE_CUDA, JAMBA_DTYPE_F32, 3, 64, true) : NULL;
    jamba_context *c = m ? context(m, JAMBA_DEVICE_CPU, JAMBA_DTYPE_F32, 1, 64, false) : NULL;
    const char *path = "/tmp/jamba_gpu_test.state";
    if (g && c) {
        free(feed(g, 0, fx.ids, fx.T - 8, JAMBA_LOGITS_NONE, V));
        jamba_error err = {0};
        GT_CHECK(jamba_seq_fork(g, 0, 1, &err) == JAMBA_OK, "fork: %s", err.message);
        GT_CHECK(jamba_seq_save(g, 0, path, &err) == JAMBA_OK, "save: %s", err.message);
        GT_CHECK(jamba_seq_restore(g, 2, path, &err) == JAMBA_OK, "restore: %s", err.message);
        GT_CHECK(jamba_seq_restore(c, 0, path, &err) == JAMBA_OK, "restore on the CPU: %s", err.message);
        float *a = feed(g, 0, fx.ids + fx.T - 8, 8, JAMBA_LOGITS_ALL, V);
        float *b = feed(g, 1, fx.ids + fx.T - 8, 8, JAMBA_LOGITS_ALL, V);
        float *r = feed(g, 2, fx.ids + fx.T - 8, 8, JAMBA_LOGITS_ALL, V);
        float *cp = feed(c, 0, fx.ids + fx.T - 8, 8, JAMBA_LOGITS_ALL, V);
        if (a && b && r && cp) {
            GT_CHECK(memcmp(a, b, (size_t)(8 * V) * 4) == 0, "a forked sequence diverged");
            GT_CHECK(memcmp(a, r, (size_t)(8 * V) * 4) == 0, "a restored sequence diverged");
            gt_expect_close("GPU state continued on the CPU", cp, a, 8 * V, E2E_TOL_F32);
            gt_expect_close("whole continuation vs transformers", a, fx.logits + (fx.T - 8) * V, 8 * V, E2E_TOL_F32);
        }
        free(a), free(b), free(r), free(cp);
        GT_CHECK(jamba_seq_reset(g, 1, &err) == JAMBA_OK, "reset: %s", err.message);
        GT_CHECK(jamba_seq_length(g, 1) == 0, "reset length");
        remove(path);
    }
    jamba_context_free(g);
    jamba_context_free(c);
    close_mini(&fx, m);
}

/* ---- the demo model and device errors -------------------------------------------------------------------- */

static void test_demo_model(void) {
    jamba_model *m = load(JB_SOURCE_DIR "/models/demo");
    jamba_tokenizer *tok = NULL;
    if (m == NULL || jamba_tokenizer_load(JB_SOURCE_DIR "/models/demo", &tok, NULL) != JAMBA_OK) {
        gt_fail(__FILE__, __LINE__, "the demo model or its tokenizer did not load");
        jamba_model_free(m);
        return;
    }
    const char *text = "ROMEO:\nBut soft, what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n";
    int32_t ids[256];
    int64_t n = 0;
    jamba_tokenize(tok, text, strlen(text), JAMBA_TOKENIZE_ADD_SPECIAL, ids, 256, &n, NULL);
    const int64_t V = jamba_model_config(m)->vocab_size;
    jamba_context *c = context(m, JAMBA_DEVICE_CPU, JAMBA_DTYPE_F32, 1, 64, false);
    float *want = c ? feed(c, 0, ids, n, JAMBA_LOGITS_ALL, V) : NULL;
    for (int di = 0; want && di < 2; di++) {
        const jamba_dtype dt = di ? JAMBA_DTYPE_BF16 : JAMBA_DTYPE_F32;
        jamba_context *g = context(m, JAMBA_DEVICE_CUDA, dt, 1, 64, true);
        float *got = g ? feed(g, 0, ids, n, JAMBA_LOGITS_ALL, V) : NULL;
        if (got) {
            char what[64];
            snprintf(what, sizeof what, "demo %s logits vs CPU", jamba_dtype_name(dt));
            gt_expect_close(what, got, want, n * V, dt == JAMBA_DTYPE_F32 ? E2E_TOL_F32 : E2E_TOL_BF16);
            gt_note("demo %s: nmse vs CPU %.2e", jamba_dtype_name(dt), gt_nmse(got, want, n * V));
        }
        if (got && dt == JAMBA_DTYPE_F32) { /* 64 greedy tokens, identical on both devices */
            int32_t tg = argmax(got + (n - 1) * V, V), tc = argmax(want + (n - 1) * V, V);
            int64_t i = 0;
            for (; i < 64 && tg == tc; i++) {
                float *lg = feed(g, 0, &tg, 1, JAMBA_LOGITS_LAST, V), *lc = feed(c, 0, &tc, 1, JAMBA_LOGITS_LAST, V);
                if (lg == NULL || lc == NULL) {
                    free(lg), free(lc);
                    break;
                }
                tg = argmax(lg, V), tc = argmax(lc, V);
                free(lg), free(lc);
            }
            GT_CHECK(i == 64, "greedy continuation differs from the CPU at token %lld", (long long)i);
        }
        free(got);
        jamba_context_free(g);
    }
    free(want);
    jamba_context_free(c);
    jamba_tokenizer_free(tok);
    jamba_model_free(m);
}

/* ---- int8 weights, fp8 KV cache, the planner, device-synthetic models ------------------------------------ */

/* The demo text's ids; 0 when the tokenizer is missing. */
static int64_t demo_ids(int32_t *ids, int64_t cap) {
    jamba_tokenizer *tok = NULL;
    if (jamba_tokenizer_load(JB_SOURCE_DIR "/models/demo", &tok, NULL) != JAMBA_OK)
        return 0;
    const char *text = "ROMEO:\nBut soft, what light through yonder window breaks?\nIt is the east, and Juliet is the "
                       "sun.\nArise, fair sun, and kill the envious moon,\nWho is already sick and pale with grief.\n";
    char three[1024]; /* the passage three times: more than 64 rows, so dense layers take the cuBLAS path */
    snprintf(three, sizeof three, "%s%s%s", text, text, text);
    int64_t n = 0;
    jamba_tokenize(tok, three, strlen(three), JAMBA_TOKENIZE_ADD_SPECIAL, ids, cap, &n, NULL);
    jamba_tokenizer_free(tok);
    return n;
}

/* Positions where the two logit sets pick the same token, as a fraction. */
static double top1_agreement(const float *a, const float *b, int64_t n, int64_t V) {
    int64_t same = 0;
    for (int64_t i = 0; i < n; i++)
        same += argmax(a + i * V, V) == argmax(b + i * V, V);
    return (double)same / (double)n;
}

/* int8 experts and MLPs on the GPU against the CPU running the same int8 weights (the CPU twin of the
 * int8 GEMV and of the widened-block cuBLAS path: batch 64 runs GEMVs, batch 512 the cuBLAS path). */
static void test_int8_weights(void) {
    jamba_model_params mp = jamba_model_default_params();
    mp.experts = JAMBA_FORMAT_INT8;
    mp.mlp = JAMBA_FORMAT_INT8;
    jamba_model *m = NULL;
    jamba_error err = {0};
    if (jamba_model_load(JB_SOURCE_DIR "/models/demo", &mp, &m, &err) != JAMBA_OK) {
        gt_fail(__FILE__, __LINE__, "demo (int8): %s", err.message);
        return;
    }
    int32_t ids[256];
    const int64_t n = demo_ids(ids, 256), V = jamba_model_config(m)->vocab_size;
    GT_CHECK(n > 8, "the demo tokenizer did not load");
    jamba_context *c = n > 8 ? context(m, JAMBA_DEVICE_CPU, JAMBA_DTYPE_F32, 1, 512, false) : NULL;
    float *want = c ? feed(c, 0, ids, n, JAMBA_LOGITS_ALL, V) : NULL;
    static const int64_t batches[] = {512, 4};
    for (int bi = 0; want && bi < 2; bi++)
        for (int di = 0; di < 2; di++) {
            const jamba_dtype dt = di ? JAMBA_DTYPE_BF16 : JAMBA_DTYPE_F32;
            jamba_context *g = context(m, JAMBA_DEVICE_CUDA, dt, 1, batches[bi], true);
            float *got = g ? feed(g, 0, ids, n, JAMBA_LOGITS_ALL, V) : NULL;
            if (got) {
                char what[80];
                snprintf(what, sizeof what, "demo int8 %s batch %lld vs CPU int8", jamba_dtype_name(dt),
                         (long long)batches[bi]);
                gt_expect_close(what, got, want, n * V, dt == JAMBA_DTYPE_F32 ? 1e-6 : E2E_TOL_BF16);
            }
            free(got);
            jamba_context_free(g);
        }
    free(want);
    jamba_context_free(c);
    jamba_model_free(m);
}

/* An fp8 KV cache against bf16 on the demo: close logits, the same top-1 nearly everywhere; and its
 * state survives save/restore. */
static void test_fp8_kv(void) {
    jamba_model *m = load(JB_SOURCE_DIR "/models/demo");
    int32_t ids[256];
    const int64_t n = m ? demo_ids(ids, 256) : 0, V = m ? jamba_model_config(m)->vocab_size : 0;
    if (n <= 8) {
        gt_fail(__FILE__, __LINE__, "the demo model or tokenizer did not load");
        jamba_model_free(m);
        return;
    }
    jamba_context_params p = jamba_context_default_params();
    p.device = JAMBA_DEVICE_CUDA;
    p.n_ctx = 512;
    p.n_logits_max = 512;
    jamba_context *bf = NULL, *f8 = NULL;
    jamba_error err = {0};
    GT_OK(jamba_context_create(m, &p, &bf, &err));
    p.kv_dtype = JAMBA_DTYPE_F8_E4M3;
    if (jamba_context_create(m, &p, &f8, &err) != JAMBA_OK) {
        gt_fail(__FILE__, __LINE__, "fp8 context: %s", err.message);
        jamba_context_free(bf);
        jamba_model_free(m);
        return;
    }
    float *a = feed(bf, 0, ids, n, JAMBA_LOGITS_ALL, V), *b = feed(f8, 0, ids, n, JAMBA_LOGITS_ALL, V);
    if (a && b) {
        const double agree = top1_agreement(b, a, n, V);
        gt_note("fp8 KV vs bf16 KV: nmse %.2e, top-1 agreement %.4f over %lld positions", gt_nmse(b, a, n * V), agree,
                (long long)n);
        gt_expect_close("fp8 KV logits vs bf16 KV", b, a, n * V, 2e-2);
        GT_CHECK(agree >= 0.95, "fp8 KV top-1 agreement %.3f", agree);
    }
    /* save, restore into sequence 1, and the next token's logits match the original sequence's */
    char path[] = "/tmp/jamba-fp8-state-XXXXXX";
    const int fd = mkstemp(path);
    if (fd >= 0 && a && b) {
        close(fd);
        GT_OK(jamba_seq_save(f8, 0, path, &err));
        GT_OK(jamba_seq_restore(f8, 1, path, &err));
        const int32_t next = argmax(b + (n - 1) * V, V);
        float *x = feed(f8, 0, &next, 1, JAMBA_LOGITS_LAST, V), *y = feed(f8, 1, &next, 1, JAMBA_LOGITS_LAST, V);
        if (x && y)
            gt_expect_close("fp8 KV restored state", y, x, V, 1e-10);
        free(x), free(y);
        unlink(path);
    }
    free(a), free(b);
    jamba_context_free(bf);
    jamba_context_free(f8);
    jamba_model_free(m);
}

/* The planner's figures are what the device allocates: weights bytes equal the uploaded arena, and a
 * context created with the plan's budget succeeds while one below it fails before allocating. */
static void test_planner(void) {
    static const char *const names[] = {"mini", "pure-mamba-moe", "pure-attention-dense"};
    for (int f = 0; f < 3; f++) {
        jamba_model *m = gt_fixture_model(names[f]);
        if (m == NULL)
            continue;
        jamba_context_params p = jamba_context_default_params();
        p.device = JAMBA_DEVICE_CUDA;
        p.n_ctx = 300;
        p.n_seq_max = 3;
        jamba_context_plan plan;
        jamba_error err = {0};
        GT_OK(jamba_context_plan_memory(m, &p, &plan, &err));
        size_t free0 = 0, total = 0, free1 = 0;
        cudaMemGetInfo(&free0, &total);
        jamba_context *ctx = NULL;
        if (jamba_context_create(m, &p, &ctx, &err) != JAMBA_OK) {
            gt_fail(__FILE__, __LINE__, "%s: %s", names[f], err.message);
            jamba_model_free(m);
            continue;
        }
        cudaMemGetInfo(&free1, &total);
        /* allocations round up to the driver's pages, and cuBLAS keeps a little of its own */
        const double used = (double)(free0 - free1), planned = (double)plan.total;
        gt_note("%s: planned %.0f bytes, the device lost %.0f", names[f], planned, used);
        GT_CHECK(used + (4 << 20) >= planned && used <= planned + (64 << 20), "%s: planned %.0f bytes, used %.0f", names[f],
                 planned, used);
        jamba_context_free(ctx);
        /* a second context: weights already resident, so they are not in the plan; a budget one byte short */
        GT_OK(jamba_context_plan_memory(m, &p, &plan, &err));
        GT_CHECK(plan.weights == 0, "%s: resident weights still counted", names[f]);
        p.n_batch = plan.n_batch; /* fixed, so a smaller chunk cannot rescue the request */
        p.n_logits_max = plan.n_logits_max;
        p.gpu_memory = plan.total - 1;
        const jamba_status st = jamba_context_create(m, &p, &ctx, &err);
        GT_CHECK(st == JAMBA_ERR_OUT_OF_MEMORY, "%s: a budget below the plan gave status %d", names[f], (int)st);
        if (st == JAMBA_OK)
            jamba_context_free(ctx);
        jamba_model_free(m);
    }
}

/* A device-synthetic model (weights made on the GPU) runs, with finite logits, int8 experts and fp8 KV. */
static void test_device_synthetic(void) {
    static const char *cfg =
        "{\"model_type\":\"jamba\",\"vocab_size\":1000,\"hidden_size\":256,\"intermediate_size\":512,"
        "\"num_hidden_layers\":4,\"num_attention_heads\":8,\"num_key_value_heads\":2,\"num_experts\":4,"
        "\"num_experts_per_tok\":2,\"expert_layer_period\":2,\"expert_layer_offset\":1,\"attn_layer_period\":4,"
        "\"attn_layer_offset\":2,\"mamba_d_state\":16,\"mamba_d_conv\":4,\"mamba_expand\":2,"
        "\"mamba_dt_rank\":\"auto\",\"tie_word_embeddings\":false,\"rms_norm_eps\":1e-6,"
        "\"max_position_embeddings\":4096}";
    jamba_model *m = NULL;
    jamba_error err = {0};
    GT_OK(jb_model_device_synthetic(cfg, strlen(cfg), "synthetic", 3, true, true, &m, &err));
    jamba_context_params p = jamba_context_default_params();
    jamba_context *ctx = NULL;
    GT_CHECK(jamba_context_create(m, &p, &ctx, &err) == JAMBA_ERR_NO_WEIGHTS, "a CPU context was accepted");
    p.device = JAMBA_DEVICE_CUDA;
    p.n_ctx = 600;
    p.kv_dtype = JAMBA_DTYPE_F8_E4M3;
    p.n_logits_max = 512;
    if (jamba_context_create(m, &p, &ctx, &err) != JAMBA_OK) {
        gt_fail(__FILE__, __LINE__, "synthetic context: %s", err.message);
        jamba_model_free(m);
        return;
    }
    int32_t ids[500];
    for (int i = 0; i < 500; i++)
        ids[i] = (i * 37) % 1000;
    float *l = feed(ctx, 0, ids, 500, JAMBA_LOGITS_ALL, 1000);
    int64_t bad = 0;
    for (int64_t i = 0; l && i < 500 * 1000; i++)
        bad += !(l[i] == l[i]) || l[i] > 1e30f || l[i] < -1e30f;
    GT_CHECK(l && bad == 0, "%lld non-finite logits", (long long)bad);
    free(l);
    jamba_context_free(ctx);
    jamba_model_free(m);
}

/* The target for the kernels of a Jamba-Mini decode step at batch 1. */
#define DECODE_LAUNCH_TARGET 150

/* Decode graphs of a device-synthetic model with Jamba-Mini's layer schedule (32 layers: 4 attention, 28
 * Mamba, 16 MoE with int8 experts, 16 dense) and small widths: the kernel nodes each captured graph holds
 * against the host's plan (cuda/decode_plan.c), for one and two rows (fused) and twelve (unfused), and the
 * batch-1 figure beside the target (noted, not checked). The plan counts each cuBLAS call as one kernel; cuBLAS
 * may add one. */
/* One context's decode graphs of 1, 2 and 12 rows against their plans; four_launch: the context is made with
 * JAMBA_CUDA_NO_COOPERATIVE set, so its Mamba mixers take the four-launch path. */
static void decode_launches(bool four_launch) {
    static const char *cfg =
        "{\"model_type\":\"jamba\",\"vocab_size\":1000,\"hidden_size\":256,\"intermediate_size\":512,"
        "\"num_hidden_layers\":32,\"num_attention_heads\":8,\"num_key_value_heads\":2,\"num_experts\":16,"
        "\"num_experts_per_tok\":2,\"expert_layer_period\":2,\"expert_layer_offset\":1,\"attn_layer_period\":8,"
        "\"attn_layer_offset\":4,\"mamba_d_state\":16,\"mamba_d_conv\":4,\"mamba_expand\":2,"
        "\"mamba_dt_rank\":\"auto\",\"tie_word_embeddings\":false,\"rms_norm_eps\":1e-6,"
        "\"max_position_embeddings\":8192}";
    jamba_model *m = NULL;
    jamba_error err = {0};
    GT_OK(jb_model_device_synthetic(cfg, strlen(cfg), "synthetic Mini-shaped", 5, true, false, &m, &err));
    jamba_context_params p = jamba_context_default_params();
    p.device = JAMBA_DEVICE_CUDA;
    p.n_ctx = 4096;
    p.n_seq_max = 12;
    p.n_batch = 64;
    jamba_context *ctx = NULL;
    setenv("JAMBA_CUDA_NO_COOPERATIVE", four_launch ? "1" : "0", 1); /* read when the context is made */
    const jamba_status made = jamba_context_create(m, &p, &ctx, &err);
    unsetenv("JAMBA_CUDA_NO_COOPERATIVE");
    if (made != JAMBA_OK) {
        gt_fail(__FILE__, __LINE__, "synthetic context: %s", err.message);
        jamba_model_free(m);
        return;
    }
    int32_t ids[40];
    for (int i = 0; i < 40; i++)
        ids[i] = (i * 37 + 11) % 1000;
    for (int32_t s = 0; s < 12; s++)
        free(feed(ctx, s, ids, 20 + s, JAMBA_LOGITS_NONE, 1000));
    static const int rows[] = {1, 2, 12};
    for (int ri = 0; ri < 3; ri++) {
        const int n = rows[ri];
        jamba_seq_input in[12];
        for (int s = 0; s < n; s++)
            in[s] = (jamba_seq_input){.seq = s, .tokens = &ids[s], .n_tokens = 1, .logits = JAMBA_LOGITS_LAST};
        for (int rep = 0; rep < 2; rep++) /* the first records the graph, the second replays it */
            GT_CHECK(jamba_decode(ctx, in, n, &err) == JAMBA_OK, "decode of %d rows: %s", n, err.message);
        jb_graph_census cs;
        if (!jb_cuda_graph_census(ctx->state, n, &cs) || !cs.planned) {
            gt_fail(__FILE__, __LINE__, "no decode graph (or plan) of %d rows was recorded", n);
            continue;
        }
        const jb_decode_launches *pl = &cs.plan;
        gt_note("%d rows (%s): %lld kernel nodes of %lld nodes; planned %lld (%lld cuBLAS calls): head %lld, "
                "Mamba %lld, attention %lld, dense %lld, MoE %lld, %lld boundaries of %lld, tail %lld",
                n, pl->fused ? "fused" : "unfused", (long long)cs.kernels, (long long)cs.nodes, (long long)pl->total,
                (long long)pl->blas_calls, (long long)pl->head, (long long)pl->mamba, (long long)pl->attention,
                (long long)pl->dense, (long long)pl->moe, (long long)pl->n_between, (long long)pl->between,
                (long long)pl->tail);
        GT_CHECK(cs.kernels >= pl->total && cs.kernels <= pl->total + pl->blas_calls,
                 "%d rows: %lld kernel nodes, planned %lld (+ up to %lld from cuBLAS)", n, (long long)cs.kernels,
                 (long long)pl->total, (long long)pl->blas_calls);
        GT_CHECK(pl->fused == (n <= JB_CUDA_FUSED_ROWS), "%d rows: fused %d", n, (int)pl->fused);
        if (four_launch && pl->fused)
            GT_CHECK(pl->mamba == 4, "%d rows: the switch did not select the four-launch Mamba path", n);
        if (n == 1 && pl->mamba == 1) /* the cooperative path (the device has it): the target */
            GT_CHECK(cs.kernels <= DECODE_LAUNCH_TARGET, "batch 1: %lld kernels per decode step; target %d",
                     (long long)cs.kernels, DECODE_LAUNCH_TARGET);
        if (n == 1)
            gt_note("batch 1 (%s Mamba path): %lld kernels per decode step; target %d: %s",
                    pl->mamba == 1 ? "cooperative" : "four-launch", (long long)cs.kernels, DECODE_LAUNCH_TARGET,
                    cs.kernels <= DECODE_LAUNCH_TARGET ? "met" : "NOT met");
    }
    jamba_context_free(ctx);
    jamba_model_free(m);
}

static void test_decode_launches(void) {
    decode_launches(false);
    decode_launches(true);
}

static void test_device_errors(void) {
    fixture fx;
    if (!fixture_open(&fx, "mini"))
        return;
    jamba_model *m = gt_fixture_model("mini");
    if (m) {
        jamba_context_params p = jamba_context_default_params();
        p.device = JAMBA_DEVICE_CUDA;
        p.gpu_index = 99;
        jamba_context *ctx = NULL;
        jamba_error err = {0};
        GT_CHECK(jamba_context_create(m, &p, &ctx, &err) == JAMBA_ERR_NO_DEVICE, "device 99: %s", err.message);
        /* a context far too large for the device: a clear out-of-memory error, nothing leaked */
        p.gpu_index = 0;
        p.n_ctx = (int64_t)1 << 36;
        p.n_seq_max = 64;
        GT_CHECK(jamba_context_create(m, &p, &ctx, &err) == JAMBA_ERR_OUT_OF_MEMORY, "huge context: %s", err.message);
        gt_note("%s", err.message);
        /* a token outside the vocabulary is refused before anything runs, and the context stays usable */
        jamba_context *g = context(m, JAMBA_DEVICE_CUDA, JAMBA_DTYPE_BF16, 1, 16, true);
        int32_t bad = 1 << 30;
        jamba_seq_input in = {.seq = 0, .tokens = &bad, .n_tokens = 1, .logits = JAMBA_LOGITS_LAST};
        GT_CHECK(g && jamba_decode(g, &in, 1, &err) == JAMBA_ERR_INVALID_ARGUMENT, "bad token accepted");
        in.tokens = fx.ids;
        GT_CHECK(g && jamba_decode(g, &in, 1, &err) == JAMBA_OK, "the context broke: %s", err.message);
        jamba_context_free(g);
        jamba_model_free(m);
    }
    fixture_close(&fx);
    /* int8 mixers or LM head have no device kernels: refused (one GPU and several), never widened */
    for (int k = 0; k < 2; k++) {
        jamba_model_params mp = jamba_model_default_params();
        if (k == 0)
            mp.mixers = JAMBA_FORMAT_INT8;
        else
            mp.lm_head = JAMBA_FORMAT_INT8;
        jamba_error err = {0};
        m = NULL;
        if (jamba_model_load(JB_SOURCE_DIR "/models/demo", &mp, &m, &err) != JAMBA_OK) {
            gt_fail(__FILE__, __LINE__, "demo (int8 %s): %s", k ? "lm_head" : "mixers", err.message);
            continue;
        }
        for (int gpus = 1; gpus <= 2; gpus++) {
            jamba_context_params p = jamba_context_default_params();
            p.device = JAMBA_DEVICE_CUDA;
            p.n_gpus = gpus;
            p.n_ctx = 64;
            jamba_context *ctx = NULL;
            GT_CHECK(jamba_context_create(m, &p, &ctx, &err) == JAMBA_ERR_UNSUPPORTED &&
                         strstr(err.message, k ? "--lm-head int8" : "--mixers int8") != NULL,
                     "int8 %s on %d GPU(s): %s", k ? "lm_head" : "mixers", gpus, err.message);
            jamba_context_free(ctx);
        }
        jamba_model_free(m);
    }
}

const gt_case gt_model_cases[] = {
    {"model/fixtures/f32", test_fixtures_f32, true},
    {"model/fixtures/bf16", test_fixtures_bf16, false},
    {"model/chunked_prefill", test_chunked_prefill, false},
    {"model/batching", test_batching, true},
    {"model/graphs", test_graphs, false},
    {"model/decode_sample", test_decode_sample, false},
    {"model/state", test_state, false},
    {"model/demo", test_demo_model, false},
    {"model/device_errors", test_device_errors, false},
    {"model/int8_weights", test_int8_weights, true},
    {"model/fp8_kv", test_fp8_kv, false},
    {"model/planner", test_planner, false},
    {"model/device_synthetic", test_device_synthetic, true},
    {"model/decode_launches", test_decode_launches, true},
};
const int gt_n_model_cases = sizeof gt_model_cases / sizeof gt_model_cases[0];
