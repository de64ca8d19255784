/*
 * test_threads.c — the thread-safety promises of include/jamba.h, exercised at once from several threads:
 * two contexts of one model decoding concurrently (each with its own worker threads), const queries on that
 * model, and one tokenizer shared by threads that tokenize and detokenize. Every thread compares what it
 * gets with what one thread got alone beforehand (bit-identical logits, equal ids and text). Built in every
 * configuration; its purpose is the ThreadSanitizer build (cmake -DJAMBA_TSAN=ON; tools/test.sh), where any
 * data race makes the program fail.
 *
 * A plain C program (no Criterion, whose worker processes and pipes are not built for ThreadSanitizer): exit
 * status 0 when every check holds, 1 after printing the first failed one.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jamba.h"

#ifndef JB_SOURCE_DIR
#error "JB_SOURCE_DIR must be defined"
#endif

#define MODEL_DIR JB_SOURCE_DIR "/tests/fixtures/models/tiny-hf"
#define TOKENIZER_DIRS {JB_SOURCE_DIR "/models/demo", JB_SOURCE_DIR "/tests/fixtures/tokenizers/bytelevel-gpt2"}
#define N_TOKENS 24   /* tokens decoded per round: two chunks of 12 */
#define ROUNDS 20     /* decode rounds per context thread */
#define QUERY_ROUNDS 200
#define TOKENIZE_ROUNDS 50

static atomic_int failures;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "test_threads: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    atomic_fetch_add(&failures, 1);
}

/* ---- what one thread computes alone first ------------------------------------------------------ */

typedef struct shared {
    const jamba_model *model;
    int64_t vocab;
    int32_t tokens[N_TOKENS];
    float *logits;                 /* [N_TOKENS, V]: every position's logits, decoded alone */
    jamba_param_counts params;
    jamba_tensor_info *tensors;    /* [n_tensors] */
    int64_t n_tensors;
    const jamba_tokenizer *tok[2];
    const char *texts[3];
    int32_t *ids[2][3];            /* reference ids per tokenizer and text */
    int64_t n_ids[2][3];
    pthread_barrier_t start;       /* every thread begins at the same moment */
} shared;

/* Decode the tokens in two chunks with every position's logits into out [N_TOKENS, V]; false on error. */
static bool decode_all(jamba_context *ctx, const shared *s, float *out) {
    jamba_error err = {0};
    for (int half = 0; half < 2; half++) {
        jamba_seq_input in = {.seq = 0, .tokens = s->tokens + half * (N_TOKENS / 2), .n_tokens = N_TOKENS / 2,
                              .logits = JAMBA_LOGITS_ALL};
        if (jamba_decode(ctx, &in, 1, &err) != JAMBA_OK) {
            fail("jamba_decode: %s", err.message);
            return false;
        }
        int64_t rows = 0;
        const float *l = jamba_logits(ctx, 0, &rows);
        if (l == NULL || rows != N_TOKENS / 2) {
            fail("jamba_logits gave %lld rows", (long long)rows);
            return false;
        }
        memcpy(out + (size_t)half * (N_TOKENS / 2) * (size_t)s->vocab, l,
               (size_t)rows * (size_t)s->vocab * sizeof *out);
    }
    return true;
}

static jamba_context *new_context(const jamba_model *m) {
    jamba_context_params p = jamba_context_default_params();
    p.n_ctx = 64;
    p.n_threads = 2;
    jamba_context *ctx = NULL;
    jamba_error err = {0};
    if (jamba_context_create(m, &p, &ctx, &err) != JAMBA_OK)
        fail("jamba_context_create: %s", err.message);
    return ctx;
}

/* ---- the threads --------------------------------------------------------------------------------- */

/* Its own context of the shared model: ROUNDS decodes from an empty sequence, each bit-identical to the
 * reference. */
static void *context_thread(void *arg) {
    shared *s = arg;
    jamba_context *ctx = new_context(s->model);
    float *got = malloc((size_t)N_TOKENS * (size_t)s->vocab * sizeof *got);
    pthread_barrier_wait(&s->start);
    for (int r = 0; ctx && got && r < ROUNDS; r++) {
        if (!decode_all(ctx, s, got))
            break;
        if (memcmp(got, s->logits, (size_t)N_TOKENS * (size_t)s->vocab * sizeof *got) != 0)
            fail("round %d: logits differ from those decoded alone", r);
        jamba_seq_reset(ctx, 0, NULL);
    }
    free(got);
    jamba_context_free(ctx);
    return NULL;
}

/* Const queries on the shared model while the contexts run: the same answers every time. */
static void *query_thread(void *arg) {
    shared *s = arg;
    pthread_barrier_wait(&s->start);
    for (int r = 0; r < QUERY_ROUNDS; r++) {
        jamba_param_counts p;
        if (jamba_model_param_counts(s->model, &p, NULL) != JAMBA_OK || memcmp(&p, &s->params, sizeof p) != 0)
            fail("jamba_model_param_counts changed");
        const jamba_config *c = jamba_model_config(s->model);
        for (int64_t l = 0; l < c->num_hidden_layers; l++) {
            jamba_layer_info li;
            if (jamba_model_layer(s->model, l, &li, NULL) != JAMBA_OK)
                fail("jamba_model_layer %lld failed", (long long)l);
        }
        for (int64_t i = 0; i < s->n_tensors; i++) {
            jamba_tensor_info t;
            if (jamba_model_tensor(s->model, i, &t, NULL) != JAMBA_OK || strcmp(t.name, s->tensors[i].name) != 0 ||
                t.n_bytes != s->tensors[i].n_bytes || t.file_offset != s->tensors[i].file_offset)
                fail("jamba_model_tensor %lld changed", (long long)i);
        }
        jamba_memory_params mp = jamba_memory_default_params(s->model);
        jamba_memory_estimate me;
        if (jamba_model_memory(s->model, &mp, &me, NULL) != JAMBA_OK)
            fail("jamba_model_memory failed");
    }
    return NULL;
}

/* Tokenize and detokenize with the shared tokenizers: the reference ids, and the texts back. */
static void *tokenizer_thread(void *arg) {
    shared *s = arg;
    int32_t ids[4096];
    char text[8192];
    pthread_barrier_wait(&s->start);
    for (int r = 0; r < TOKENIZE_ROUNDS; r++) {
        for (int k = 0; k < 2; k++) {
            for (int i = 0; i < 3; i++) {
                int64_t n = 0;
                size_t len = 0;
                const char *t = s->texts[i];
                if (jamba_tokenize(s->tok[k], t, strlen(t), 0, ids, 4096, &n, NULL) != JAMBA_OK ||
                    n != s->n_ids[k][i] || memcmp(ids, s->ids[k][i], (size_t)n * sizeof *ids) != 0)
                    fail("tokenizer %d, text %d: other ids than alone", k, i);
                if (jamba_detokenize(s->tok[k], ids, n, false, text, sizeof text, &len, NULL) != JAMBA_OK ||
                    len != strlen(t) || memcmp(text, t, len) != 0)
                    fail("tokenizer %d, text %d: detokenize does not give the text back", k, i);
            }
        }
    }
    return NULL;
}

/* ---- setup --------------------------------------------------------------------------------------- */

static bool prepare(shared *s, jamba_model **model, jamba_tokenizer *toks[2]) {
    jamba_error err = {0};
    if (jamba_model_load(MODEL_DIR, NULL, model, &err) != JAMBA_OK) {
        fail("%s", err.message);
        return false;
    }
    s->model = *model;
    s->vocab = jamba_model_config(*model)->vocab_size;
    for (int i = 0; i < N_TOKENS; i++)
        s->tokens[i] = (int32_t)((i * 37 + 5) % s->vocab);
    s->logits = malloc((size_t)N_TOKENS * (size_t)s->vocab * sizeof *s->logits);
    jamba_context *ctx = new_context(*model);
    bool ok = ctx && s->logits && decode_all(ctx, s, s->logits);
    jamba_context_free(ctx);
    if (!ok || jamba_model_param_counts(*model, &s->params, &err) != JAMBA_OK)
        return false;
    s->n_tensors = jamba_model_n_tensors(*model);
    s->tensors = calloc((size_t)s->n_tensors, sizeof *s->tensors);
    for (int64_t i = 0; s->tensors && i < s->n_tensors; i++)
        if (jamba_model_tensor(*model, i, &s->tensors[i], &err) != JAMBA_OK)
            return false;
    static const char *const texts[3] = {"Hello, world! It's 2024.", "ROMEO: But, soft! what light through yonder",
                                         "  spaces\tand\nlines  "};
    static const char *const dirs[2] = TOKENIZER_DIRS;
    for (int k = 0; k < 2; k++) {
        if (jamba_tokenizer_load(dirs[k], &toks[k], &err) != JAMBA_OK) {
            fail("%s", err.message);
            return false;
        }
        s->tok[k] = toks[k];
        for (int i = 0; i < 3; i++) {
            s->texts[i] = texts[i];
            s->ids[k][i] = malloc(4096 * sizeof(int32_t));
            if (s->ids[k][i] == NULL || jamba_tokenize(toks[k], texts[i], strlen(texts[i]), 0, s->ids[k][i], 4096,
                                                       &s->n_ids[k][i], &err) != JAMBA_OK) {
                fail("tokenize: %s", err.message);
                return false;
            }
        }
    }
    return s->tensors != NULL || s->n_tensors == 0;
}

int main(void) {
    shared s;
    memset(&s, 0, sizeof s);
    jamba_model *model = NULL;
    jamba_tokenizer *toks[2] = {NULL, NULL};
    if (prepare(&s, &model, toks)) {
        void *(*const bodies[])(void *) = {context_thread, context_thread, query_thread, query_thread,
                                            tokenizer_thread, tokenizer_thread};
        enum { N = sizeof bodies / sizeof bodies[0] };
        pthread_t threads[N];
        pthread_barrier_init(&s.start, NULL, N);
        for (int i = 0; i < N; i++)
            if (pthread_create(&threads[i], NULL, bodies[i], &s) != 0) {
                fprintf(stderr, "test_threads: cannot start a thread\n");
                return 1;
            }
        for (int i = 0; i < N; i++)
            pthread_join(threads[i], NULL);
        pthread_barrier_destroy(&s.start);
    } else if (atomic_load(&failures) == 0) {
        fail("setup failed");
    }
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < 3; i++)
            free(s.ids[k][i]);
        jamba_tokenizer_free(toks[k]);
    }
    free(s.tensors);
    free(s.logits);
    jamba_model_free(model);
    int n = atomic_load(&failures);
    printf("test_threads: 2 contexts x %d rounds, 2 x %d query rounds, 2 x %d tokenizer rounds: %s\n", ROUNDS,
           QUERY_ROUNDS, TOKENIZE_ROUNDS, n ? "FAILED" : "ok");
    return n ? 1 : 0;
}
