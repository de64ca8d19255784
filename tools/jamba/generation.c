/*
 * generation.c — shared generation plumbing for the CLI (see generation.h).
 */
#include "tools/jamba/generation.h"

#include "ckpt/json.h"
#include "tools/jamba/stop_text.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
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

/* ---- generation_config.json -------------------------------------------------------------------- */

/* One key of generation_config.json, its range, and where it goes (one of f, i32, i64). */
typedef struct gen_key {
    const char *key;
    double lo, hi;
    bool integer, lo_open;
    float *f;
    int32_t *i32;
    int64_t *i64;
} gen_key;

static jamba_status read_key(const json_t *root, const gen_key *k, const char *path, jamba_error *err) {
    const json_t *v = json_object_get(root, k->key);
    if (v == NULL || json_is_null(v))
        return JAMBA_OK;
    double d = json_is_number(v) ? json_number_value(v) : NAN;
    if (!json_is_number(v) || (k->integer && !json_is_integer(v)) || !(k->lo_open ? d > k->lo : d >= k->lo) ||
        !(d <= k->hi)) {
        snprintf(err->message, sizeof err->message, "%.800s: \"%s\" should be %s in %s%g, %g], got %s", path, k->key,
                 k->integer ? "an integer" : "a number", k->lo_open ? "(" : "[", k->lo, k->hi, jb_json_type_name(v));
        if (json_is_number(v))
            snprintf(err->message + strlen(err->message), sizeof err->message - strlen(err->message), " %g", d);
        return err->status = JAMBA_ERR_BAD_CONFIG;
    }
    if (k->f)
        *k->f = (float)d;
    else if (k->i32)
        *k->i32 = (int32_t)d;
    else
        *k->i64 = (int64_t)d;
    return JAMBA_OK;
}

jamba_status gen_read_defaults(const char *dir, jamba_sampler_params *p, int64_t *max_tokens, jamba_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    if (access(path, F_OK) != 0 && errno == ENOENT)
        return JAMBA_OK;
    char *buf = NULL;
    size_t len = 0;
    json_t *root = NULL;
    jamba_status st = jb_read_small_file(path, path, 1 << 20, JAMBA_ERR_BAD_CONFIG, &buf, &len, err);
    if (st == JAMBA_OK)
        st = jb_json_parse_object(buf, len, path, JAMBA_ERR_BAD_CONFIG, &root, err);
    free(buf);
    const gen_key keys[] = {
        {"temperature", 0, 100, false, false, &p->temperature, NULL, NULL},
        {"top_p", 0, 1, false, true, &p->top_p, NULL, NULL},
        {"top_k", 0, 1 << 24, true, false, NULL, &p->top_k, NULL},
        {"min_p", 0, 1, false, false, &p->min_p, NULL, NULL},
        {"repetition_penalty", 0, 100, false, true, &p->repetition_penalty, NULL, NULL},
        {"max_new_tokens", 1, (double)(INT64_C(1) << 40), true, false, NULL, NULL, max_tokens},
    };
    for (size_t i = 0; st == JAMBA_OK && i < sizeof keys / sizeof keys[0]; i++)
        st = read_key(root, &keys[i], path, err);
    if (st == JAMBA_OK && json_is_false(json_object_get(root, "do_sample")))
        p->temperature = 0; /* transformers: greedy whatever the temperature */
    json_decref(root);
    return st;
}

/* ---- opening a model --------------------------------------------------------------------------- */

static void add_stop_id(gen_session *s, int32_t id) {
    if (id < 0)
        return;
    for (int i = 0; i < s->n_stop_ids; i++)
        if (s->stop_ids[i] == id)
            return;
    if (s->n_stop_ids < (int)(sizeof s->stop_ids / sizeof s->stop_ids[0]))
        s->stop_ids[s->n_stop_ids++] = id;
}

int gen_open(gen_session *s, const gen_options *o, jamba_error *err) {
    memset(s, 0, sizeof *s);
    s->pending = -1;
    s->dir = o->model;
    if (jamba_model_load(s->dir, &o->load, &s->model, err) != JAMBA_OK ||
        jamba_tokenizer_load(s->dir, &s->tok, err) != JAMBA_OK)
        return CLI_EXIT_FAIL;
    cli_print_model_notes(s->model);
    const jamba_config *c = jamba_model_config(s->model);
    if (jamba_tokenizer_vocab_size(s->tok) > c->vocab_size) {
        snprintf(err->message, sizeof err->message, "%.800s: the tokenizer has %lld tokens but the model only %lld",
                 s->dir, (long long)jamba_tokenizer_vocab_size(s->tok), (long long)c->vocab_size);
        return CLI_EXIT_FAIL;
    }
    int64_t n_eos;
    const int32_t *eos = jamba_tokenizer_eos(s->tok, &n_eos);
    for (int64_t i = 0; i < n_eos; i++)
        add_stop_id(s, eos[i]);
    for (int64_t i = 0; i < c->n_eos_token_ids; i++)
        add_stop_id(s, (int32_t)c->eos_token_ids[i]);
    return CLI_EXIT_OK;
}

int gen_start(gen_session *s, const gen_options *o, int64_t n_ctx, jamba_error *err) {
    const jamba_config *c = jamba_model_config(s->model);
    jamba_context_params cp = jamba_context_default_params();
    cp.device = o->device.device;
    cp.gpu_index = o->device.gpu_index;
    cp.gpu_dtype = o->device.gpu_dtype;
    cp.kv_dtype = o->device.kv_dtype;
    cli_gpu_placement(&o->device, &cp);
    cp.n_ctx = n_ctx;
    cp.n_batch = o->n_batch;
    cp.n_threads = (int32_t)o->threads;
    /* the step the context will take (its memory plan), so that prompt pieces match it */
    jamba_context_plan plan;
    s->n_batch = jamba_context_plan_memory(s->model, &cp, &plan, NULL) == JAMBA_OK && plan.n_batch > 0 ? plan.n_batch
                 : o->n_batch > 0                                                                     ? o->n_batch
                                                                                                      : 512;
    /* the context's worker threads start with SIGINT blocked, so Ctrl-C reaches this thread (and
     * interrupts a read of the chat prompt) */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    jamba_status st = jamba_context_create(s->model, &cp, &s->ctx, err);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (st != JAMBA_OK || jamba_sampler_create(&o->sampling, c->vocab_size, &s->sampler, err) != JAMBA_OK)
        return CLI_EXIT_FAIL;
    s->n_ctx = n_ctx > 0                                          ? n_ctx
               : c->max_position_embeddings < JAMBA_DEFAULT_N_CTX ? c->max_position_embeddings
                                                                  : JAMBA_DEFAULT_N_CTX;
    s->host_logits = o->device.device == JAMBA_DEVICE_CPU;
    return CLI_EXIT_OK;
}

void gen_close(gen_session *s) {
    jamba_sampler_free(s->sampler);
    jamba_context_free(s->ctx);
    jamba_tokenizer_free(s->tok);
    jamba_model_free(s->model);
    memset(s, 0, sizeof *s);
}

/* ---- Ctrl-C ------------------------------------------------------------------------------------- */

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

void gen_arm_interrupt(void) {
    interrupted = 0;
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND; /* no SA_RESTART: a read of the chat prompt returns */
    if (sigaction(SIGINT, NULL, &old) == 0 && old.sa_handler != SIG_IGN)
        sigaction(SIGINT, &sa, NULL);
}

bool gen_interrupted(void) { return interrupted != 0; }

/* ---- prefill ------------------------------------------------------------------------------------ */

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
    int64_t at = 0;
    for (; at < feed && !gen_interrupted(); at += s->n_batch) {
        int64_t k = feed - at < s->n_batch ? feed - at : s->n_batch;
        jamba_seq_input in = {.seq = 0, .tokens = ids + at, .n_tokens = k, .logits = JAMBA_LOGITS_NONE};
        jamba_status st = jamba_decode(s->ctx, &in, 1, err);
        if (st != JAMBA_OK)
            return st;
        if (bar)
            gen_progress("prefill", at + k, feed, now() - t0);
    }
    const int64_t fed = at < feed ? at : feed, given = gen_interrupted() ? fed : n;
    if (bar && fed < feed)
        fputc('\n', stderr);
    for (int64_t i = 0; i < given; i++)
        jamba_sampler_accept(s->sampler, ids[i]);
    s->pending = given == n && keep_last && n > 0 ? ids[n - 1] : -1;
    s->prefill_seconds += now() - t0;
    s->prefill_tokens += fed;
    s->prompt_tokens += given;
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

/* Print what can no longer be part of a stop string; true when a stop string is found (the text before the
 * earliest one is printed, the rest dropped). */
static bool release_held(held_text *h, const gen_stop *stop, FILE *out) {
    bool found;
    const size_t release = stop_text_scan(h->p ? h->p : "", h->n, stop->strings, stop->n_strings, &found);
    fwrite(h->p, 1, release, out);
    if (found) {
        h->n = 0;
        return true;
    }
    memmove(h->p, h->p + release, h->n - release);
    h->n -= release;
    fflush(out);
    return false;
}

static bool is_stop_id(const gen_session *s, int32_t id) {
    for (int i = 0; i < s->n_stop_ids; i++)
        if (s->stop_ids[i] == id)
            return true;
    return false;
}

bool gen_logits_finite(const float *row, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(row[i]))
            return false;
    return true;
}

jamba_status gen_fail_non_finite(jamba_error *err, const char *dir, int64_t pos) {
    snprintf(err->message, sizeof err->message,
             "%.600s: the model produced non-finite logits at position %lld (a broken checkpoint? try `jamba inspect "
             "--check-finite`)",
             dir, (long long)pos);
    return err->status = JAMBA_ERR_NUMERIC;
}

/* The CPU path: the logits of the last decode, checked, then sampled and accepted. */
static jamba_status sample_checked(gen_session *s, int32_t *tok, jamba_error *err) {
    int64_t rows;
    const float *row = jamba_logits(s->ctx, 0, &rows);
    const int64_t V = jamba_model_config(s->model)->vocab_size;
    if (row == NULL || !gen_logits_finite(row, V))
        return gen_fail_non_finite(err, s->dir, jamba_seq_length(s->ctx, 0) - 1);
    jamba_status st = jamba_sampler_sample(s->sampler, row, tok, err);
    if (st == JAMBA_OK)
        jamba_sampler_accept(s->sampler, *tok);
    return st;
}

/* Feed the held-back token and choose the next one (on the context's device). */
static jamba_status feed_and_sample(gen_session *s, int32_t *tok, jamba_error *err) {
    double t0 = now();
    jamba_seq_input in = {.seq = 0, .tokens = &s->pending, .n_tokens = 1, .logits = JAMBA_LOGITS_LAST};
    jamba_status st;
    if (s->host_logits) {
        st = jamba_decode(s->ctx, &in, 1, err);
        if (st == JAMBA_OK)
            st = sample_checked(s, tok, err);
    } else {
        st = jamba_decode_sample(s->ctx, &in, 1, &s->sampler, tok, err);
        if (st == JAMBA_ERR_NUMERIC) /* every logit NaN or -inf */
            st = gen_fail_non_finite(err, s->dir, jamba_seq_length(s->ctx, 0) - 1);
    }
    s->decode_seconds += now() - t0;
    s->pending = -1;
    return st;
}

bool gen_ids_push(gen_ids *ids, int32_t id) {
    if (ids->n == ids->cap) {
        int64_t cap = ids->cap ? 2 * ids->cap : 256;
        int32_t *v = realloc(ids->v, (size_t)cap * sizeof *v);
        if (v == NULL)
            return false;
        ids->v = v, ids->cap = cap;
    }
    ids->v[ids->n++] = id;
    return true;
}

static jamba_status out_of_memory(jamba_error *err) {
    snprintf(err->message, sizeof err->message, "out of memory while generating");
    return err->status = JAMBA_ERR_OUT_OF_MEMORY;
}

const char *gen_end_name(gen_end end) {
    static const char *const names[] = {"eos", "stop", "length", "context", "interrupted"};
    return names[end];
}

jamba_status gen_run(gen_session *s, const gen_stop *stop, FILE *out, gen_end *end, int32_t *last, jamba_error *err) {
    jamba_stream_decoder *dec = NULL;
    jamba_status st = jamba_stream_decoder_create(s->tok, false, &dec, err);
    held_text held = {0};
    *last = -1;
    *end = GEN_END_MAX_TOKENS;
    for (int64_t i = 0; st == JAMBA_OK && i < stop->max_tokens && s->pending >= 0; i++) {
        if (gen_interrupted()) {
            *end = GEN_END_INTERRUPT;
            break;
        }
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
        if (!held_append(&held, piece, len) || (s->record && !gen_ids_push(s->record, tok))) {
            st = out_of_memory(err);
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
    }
    s->pending = -1;
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

/* ---- JSON ------------------------------------------------------------------------------------- */

/* The length a UTF-8 lead byte announces, or 0. */
static size_t utf8_lead_length(unsigned char b) {
    if (b < 0x80)
        return 1;
    if ((b & 0xe0) == 0xc0)
        return 2;
    if ((b & 0xf0) == 0xe0)
        return 3;
    return (b & 0xf8) == 0xf0 ? 4 : 0;
}

/* The length of the valid UTF-8 sequence at p (n bytes left), or 0 (RFC 3629: no overlongs or surrogates). */
static size_t utf8_valid(const unsigned char *p, size_t n) {
    size_t len = utf8_lead_length(p[0]);
    if (len == 0 || len > n)
        return 0;
    uint32_t cp = len == 1 ? p[0] : p[0] & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    static const uint32_t least[] = {0, 0, 0x80, 0x800, 0x10000};
    return cp < least[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) ? 0 : len;
}

json_t *gen_json_text(const char *text, size_t n) {
    json_t *j = json_stringn(text, n);
    if (j != NULL)
        return j;
    char *clean = malloc(3 * n + 1); /* U+FFFD is 3 bytes */
    size_t o = 0;
    for (size_t i = 0; clean && i < n;) {
        size_t len = utf8_valid((const unsigned char *)text + i, n - i);
        if (len == 0) {
            memcpy(clean + o, "\xef\xbf\xbd", 3), o += 3, i++;
        } else {
            memcpy(clean + o, text + i, len), o += len, i += len;
        }
    }
    j = clean ? json_stringn(clean, o) : NULL;
    free(clean);
    return j;
}

/* ---- statistics --------------------------------------------------------------------------------- */

/* tokens / seconds, or -1 when the phase ran no tokens. */
static double rate(int64_t tokens, double seconds) { return tokens > 0 && seconds > 0 ? (double)tokens / seconds : -1; }

static double peak_memory_bytes(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss * 1024.0;
}

void gen_print_stats(const gen_session *s) {
    char prefill[48] = "", decode[48] = "";
    double r = rate(s->prefill_tokens, s->prefill_seconds);
    if (r >= 0)
        snprintf(prefill, sizeof prefill, ", prefill %.1f tok/s", r);
    if ((r = rate(s->decode_tokens, s->decode_seconds)) >= 0)
        snprintf(decode, sizeof decode, ", decode %.1f tok/s", r);
    fprintf(stderr, "prompt tokens %lld%s, generated %lld tokens%s, peak memory %.0f MiB\n",
            (long long)s->prompt_tokens, prefill, (long long)s->decode_tokens, decode,
            peak_memory_bytes() / (1024.0 * 1024.0));
}

static json_t *phase_json(int64_t shown, int64_t run, double seconds) {
    double r = rate(run, seconds);
    return json_pack("{s:I,s:f,s:o}", "tokens", (json_int_t)shown, "seconds", seconds, "tokens_per_second",
                     r >= 0 ? json_real(r) : json_null());
}

json_t *gen_stats_json(const gen_session *s) {
    return json_pack("{s:o,s:o,s:I}", "prefill", phase_json(s->prompt_tokens, s->prefill_tokens, s->prefill_seconds),
                     "decode", phase_json(s->decode_tokens, s->decode_tokens, s->decode_seconds), "peak_memory_bytes",
                     (json_int_t)peak_memory_bytes());
}
