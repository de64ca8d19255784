/*
 * generation.c — shared generation plumbing for the CLI (see generation.h).
 */
#include "tools/jamba/generation.h"

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void add_stop_id(gen_session *s, int32_t id) {
    if (id < 0)
        return;
    for (int i = 0; i < s->n_stop_ids; i++)
        if (s->stop_ids[i] == id)
            return;
    if (s->n_stop_ids < (int)(sizeof s->stop_ids / sizeof s->stop_ids[0]))
        s->stop_ids[s->n_stop_ids++] = id;
}

int gen_open(gen_session *s, const gen_options *o, int64_t n_ctx, jamba_error *err) {
    memset(s, 0, sizeof *s);
    s->pending = -1;
    const char *dir = o->model;
    if (jamba_model_load(dir, &o->load, &s->model, err) != JAMBA_OK ||
        jamba_tokenizer_load(dir, &s->tok, err) != JAMBA_OK)
        return CLI_EXIT_FAIL;
    cli_print_model_notes(s->model);
    const jamba_config *c = jamba_model_config(s->model);
    if (jamba_tokenizer_vocab_size(s->tok) > c->vocab_size) {
        snprintf(err->message, sizeof err->message, "%s: the tokenizer has %lld tokens but the model only %lld", dir,
                 (long long)jamba_tokenizer_vocab_size(s->tok), (long long)c->vocab_size);
        return CLI_EXIT_FAIL;
    }
    jamba_context_params cp = jamba_context_default_params();
    cp.device = o->device.device;
    cp.gpu_index = o->device.gpu_index;
    cp.gpu_dtype = o->device.gpu_dtype;
    cp.kv_dtype = o->device.kv_dtype;
    cp.n_ctx = n_ctx;
    cp.n_batch = o->n_batch;
    cp.n_threads = (int32_t)o->threads;
    if (jamba_context_create(s->model, &cp, &s->ctx, err) != JAMBA_OK ||
        jamba_sampler_create(&o->sampling, c->vocab_size, &s->sampler, err) != JAMBA_OK)
        return CLI_EXIT_FAIL;
    s->n_ctx = n_ctx;
    s->n_batch = o->n_batch > 0 ? o->n_batch : 4096; /* 0: the context chose; feed in pieces for progress */
    int64_t n_eos;
    const int32_t *eos = jamba_tokenizer_eos(s->tok, &n_eos);
    for (int64_t i = 0; i < n_eos; i++)
        add_stop_id(s, eos[i]);
    for (int64_t i = 0; i < c->n_eos_token_ids; i++)
        add_stop_id(s, (int32_t)c->eos_token_ids[i]);
    return CLI_EXIT_OK;
}

void gen_close(gen_session *s) {
    jamba_sampler_free(s->sampler);
    jamba_context_free(s->ctx);
    jamba_tokenizer_free(s->tok);
    jamba_model_free(s->model);
    memset(s, 0, sizeof *s);
}

void gen_progress(const char *what, int64_t done, int64_t total, double seconds) {
    const int width = 40;
    int filled = (int)(width * done / (total ? total : 1));
    fprintf(stderr, "\r%s [", what);
    for (int i = 0; i < width; i++)
        fputc(i < filled ? '=' : i == filled ? '>' : ' ', stderr);
    fprintf(stderr, "] %lld/%lld tokens, %.0f tok/s ", (long long)done, (long long)total,
            seconds > 0 ? (double)done / seconds : 0.0);
    if (done == total)
        fputc('\n', stderr);
    fflush(stderr);
}

jamba_status gen_prefill(gen_session *s, const int32_t *ids, int64_t n, bool keep_last, bool progress,
                         jamba_error *err) {
    /* with keep_last the prompt's last token is held back: gen_run feeds it and samples in one call */
    const int64_t feed = keep_last && n > 0 ? n - 1 : n;
    bool bar = progress && feed > s->n_batch && isatty(STDERR_FILENO);
    double t0 = now();
    for (int64_t at = 0; at < feed; at += s->n_batch) {
        int64_t k = feed - at < s->n_batch ? feed - at : s->n_batch;
        jamba_seq_input in = {.seq = 0, .tokens = ids + at, .n_tokens = k, .logits = JAMBA_LOGITS_NONE};
        jamba_status st = jamba_decode(s->ctx, &in, 1, err);
        if (st != JAMBA_OK)
            return st;
        if (bar)
            gen_progress("prefill", at + k, feed, now() - t0);
    }
    for (int64_t i = 0; i < n; i++)
        jamba_sampler_accept(s->sampler, ids[i]);
    s->pending = keep_last && n > 0 ? ids[n - 1] : -1;
    s->prefill_seconds += now() - t0;
    s->prefill_tokens += n;
    return JAMBA_OK;
}

/* ---- streaming with stop strings -------------------------------------------------------------- */

typedef struct held_text {
    char *p;
    size_t n, cap;
} held_text;

static bool held_append(held_text *h, const char *s, size_t n) {
    if (h->n + n + 1 > h->cap) {
        size_t cap = 2 * (h->n + n + 1);
        char *p = realloc(h->p, cap);
        if (p == NULL)
            return false;
        h->p = p, h->cap = cap;
    }
    memcpy(h->p + h->n, s, n);
    h->n += n;
    h->p[h->n] = '\0';
    return true;
}

/* Print what can no longer be part of a stop string; true (and *cut set) when a stop string is found. */
static bool release_held(held_text *h, const gen_stop *stop, FILE *out) {
    size_t keep = 0;
    for (int i = 0; i < stop->n_strings; i++) {
        const char *hit = strstr(h->p ? h->p : "", stop->strings[i]);
        if (hit) {
            fwrite(h->p, 1, (size_t)(hit - h->p), out);
            h->n = 0;
            return true;
        }
        size_t len = strlen(stop->strings[i]);
        for (size_t k = len - 1; k > keep; k--) /* the longest tail that starts this stop string */
            if (k <= h->n && memcmp(h->p + h->n - k, stop->strings[i], k) == 0) {
                keep = k;
                break;
            }
    }
    fwrite(h->p, 1, h->n - keep, out);
    memmove(h->p, h->p + h->n - keep, keep);
    h->n = keep;
    fflush(out);
    return false;
}

static bool is_stop_id(const gen_session *s, int32_t id) {
    for (int i = 0; i < s->n_stop_ids; i++)
        if (s->stop_ids[i] == id)
            return true;
    return false;
}

/* Feed the held-back token and choose the next one (on the context's device). */
static jamba_status feed_and_sample(gen_session *s, int32_t *tok, jamba_error *err) {
    double t0 = now();
    jamba_seq_input in = {.seq = 0, .tokens = &s->pending, .n_tokens = 1, .logits = JAMBA_LOGITS_LAST};
    jamba_status st = jamba_decode_sample(s->ctx, &in, 1, &s->sampler, tok, err);
    s->decode_seconds += now() - t0;
    s->pending = -1;
    return st;
}

jamba_status gen_run(gen_session *s, const gen_stop *stop, FILE *out, gen_end *end, int32_t *last, jamba_error *err) {
    jamba_stream_decoder *dec = NULL;
    jamba_status st = jamba_stream_decoder_create(s->tok, false, &dec, err);
    held_text held = {0};
    *last = -1;
    *end = GEN_END_MAX_TOKENS;
    for (int64_t i = 0; st == JAMBA_OK && i < stop->max_tokens && s->pending >= 0; i++) {
        if (jamba_seq_length(s->ctx, 0) >= s->n_ctx) {
            *end = GEN_END_CONTEXT;
            break;
        }
        int32_t tok;
        if ((st = feed_and_sample(s, &tok, err)) != JAMBA_OK)
            break;
        s->decode_tokens++;
        if (is_stop_id(s, tok)) {
            *end = GEN_END_EOS;
            *last = tok;
            break;
        }
        const char *piece;
        size_t len;
        if ((st = jamba_stream_decoder_push(dec, tok, &piece, &len, err)) != JAMBA_OK)
            break;
        if (!held_append(&held, piece, len)) {
            snprintf(err->message, sizeof err->message, "out of memory");
            st = err->status = JAMBA_ERR_OUT_OF_MEMORY;
            break;
        }
        s->pending = tok;
        if (release_held(&held, stop, out)) {
            *end = GEN_END_STOP_STRING;
            break;
        }
    }
    /* the last printed token joins the context too, so a conversation continues after it */
    if (st == JAMBA_OK && s->pending >= 0 && jamba_seq_length(s->ctx, 0) < s->n_ctx) {
        jamba_seq_input in = {.seq = 0, .tokens = &s->pending, .n_tokens = 1, .logits = JAMBA_LOGITS_NONE};
        double t0 = now();
        st = jamba_decode(s->ctx, &in, 1, err);
        s->decode_seconds += now() - t0;
        s->pending = -1;
    }
    if (st == JAMBA_OK && *end != GEN_END_STOP_STRING) {
        const char *rest;
        size_t len;
        if (jamba_stream_decoder_flush(dec, &rest, &len, err) == JAMBA_OK && held_append(&held, rest, len))
            fwrite(held.p, 1, held.n, out);
    }
    fflush(out);
    free(held.p);
    jamba_stream_decoder_free(dec);
    return st;
}

void gen_print_stats(const gen_session *s) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    fprintf(stderr, "prompt tokens %lld, prefill %.1f tok/s, generated %lld tokens, decode %.1f tok/s, peak memory %.0f MiB\n",
            (long long)s->prefill_tokens, s->prefill_seconds > 0 ? (double)s->prefill_tokens / s->prefill_seconds : 0.0,
            (long long)s->decode_tokens, s->decode_seconds > 0 ? (double)s->decode_tokens / s->decode_seconds : 0.0,
            (double)ru.ru_maxrss / 1024.0);
}
