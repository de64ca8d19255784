/*
 * cmd_score.c — `jamba score`: how well models predict a text. Token ids (--tokens) or a text file
 * (--file, tokenized with each model's own tokenizer, BOS added) run as one sequence in steps of --batch
 * tokens; reported are the mean negative log-likelihood of each next token, the perplexity, bits per byte
 * (comparable across tokenizers) and, with --json, every position's log-probability. Several --model flags
 * give a comparison table, where a model that fails is listed with its error. --dump-logits writes one
 * model's logits as safetensors. The research captures (--router-stats, --dump-router, --dump-hidden,
 * --dump-mamba-state) are score_internals.c; windowed scoring (--window) is score_window.c.
 */
#include "tools/jamba/cli.h"
#include "tools/jamba/generation.h"
#include "tools/jamba/score.h"

#include "ckpt/st_write.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct score_opts {
    cli_strings models;
    const char *tokens, *file, *dump, *layers_arg;
    int64_t threads, batch;
    bool json, allow_unexpected;
    score_internals_opts internals;
    score_window_opts window;    /* window 0: the whole text as one sequence */
    int64_t *layers;             /* --layers, parsed */
    cli_device_args dev;
    jamba_context_params device; /* the device fields, from dev */
    jamba_model_params load;     /* the weight formats, from dev, and --allow-unexpected */
    int32_t *ids;                /* --tokens, parsed */
    int64_t n_ids;
    char *text;                  /* --file's contents */
    size_t text_len;
} score_opts;

typedef struct score_result {
    const char *model;
    int64_t tokens;   /* scored sequence length (BOS included); 0 when unknown */
    int64_t predicted; /* predictions scored: T - 1, fewer with non-overlapping windows */
    double nll;       /* mean over the predictions */
    double *logprob;  /* [T - 1]; NAN where not predicted */
    score_router router; /* --router-stats */
    char error[JAMBA_ERROR_MESSAGE_SIZE]; /* why the model could not be scored, or "" */
} score_result;

static void print_help(void) {
    printf("usage: jamba score --model DIR [--model DIR ...] (--file TEXT | --tokens ID,ID,...) [--json]\n"
           "                   [--dump-logits FILE] [--allow-unexpected] [--threads N] [--batch N]\n"
           "                   [--window N [--stride S] [--carry-state]] [--router-stats]\n"
           "                   [--dump-router FILE] [--dump-hidden FILE] [--dump-mamba-state FILE]\n"
           "                   [--layers L,...] [--device cpu|cuda]\n"
           "\n"
           "Run a text or token ids as one sequence and report the mean negative log-likelihood of each next\n"
           "token, the perplexity and bits per byte. Long texts are scored in steps of --batch tokens (chunked\n"
           "prefill) with a progress bar on stderr. Several --model flags print a comparison table. A model that\n"
           "fails (it does not load, or its logits are NaN or infinite at a scored position) is listed with its\n"
           "error and no figures, the others are still scored, and the exit status is 1.\n"
           "\n"
           "  -m, --model DIR      model folder (repeatable)\n"
           "  --file TEXT          a UTF-8 text file (\"-\" for stdin), tokenized with each model's tokenizer\n"
           "                       with BOS added\n"
           "  --tokens LIST        comma-separated token ids instead of a text (no bytes: no bits per byte,\n"
           "                       shown as \"-\" and null in JSON)\n"
           "  --json               one JSON object: per model tokens, mean_nll, perplexity, bits_per_byte,\n"
           "                       positions[] (each next token's log-probability) and error (null when scored);\n"
           "                       figures that are not defined are null\n"
           "  --dump-logits FILE   write every position's logits (one model only) as safetensors: one tensor\n"
           "                       \"logits\", F32, shape [T, vocab]\n"
           "  --allow-unexpected   skip tensors the config does not use instead of failing\n"
           "  --window N           score a long text in windows of N tokens, each from an empty sequence, one\n"
           "                       starting every --stride S tokens (default N/2); a window predicts the\n"
           "                       tokens after the previous window's end, so each token is predicted once\n"
           "                       (with S = N the token opening a window has no context and is skipped)\n"
           "  --carry-state        with --window: each window's Mamba layers start from the state the text\n"
           "                       had at its start (carried from the previous window); attention sees only\n"
           "                       the window\n"
           "  --router-stats       per MoE layer: expert load (tokens per expert among each token's top k),\n"
           "                       mean router entropy (nats), top-k share (probability mass of the chosen\n"
           "                       experts) and the balance loss E sum_e f_e P_e (k when balanced)\n"
           "  --dump-router FILE   (one model) safetensors: router_logits.<layer> F32 [T, E] per MoE layer,\n"
           "                       layer = decoder layer index, as transformers' output_router_logits\n"
           "  --dump-hidden FILE   (one model) safetensors: hidden.<i> F32 [T, H], i = 0..L numbered as\n"
           "                       transformers' output_hidden_states (0 the embeddings, i the input of layer\n"
           "                       i, L after the final norm)\n"
           "  --dump-mamba-state FILE  (one model) safetensors: mamba.<layer>.conv F32 [D_i, K-1] and\n"
           "                       mamba.<layer>.ssm F32 [D_i, N], each Mamba layer's state after the text\n"
           "  --layers L,...       with the dumps: only these hidden numbers and these Mamba layers\n"
           "  -t, --threads N      worker threads (default: all CPUs)\n"
           "  --batch N            tokens per step (default 512)\n"
           CLI_DEVICE_HELP
           "\n"
           "Exit status: 0 ok, 1 a model failed (one line on stderr each), 2 usage error.\n");
}

/* "1,2, 3" -> ids. */
static bool parse_ids(const char *s, int32_t **out, int64_t *n) {
    int64_t cap = 16, len = 0;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    for (const char *p = s; ids;) {
        while (*p == ' ')
            p++;
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno != 0 || v < 0 || v > INT32_MAX)
            break;
        if (len == cap) {
            int32_t *grown = realloc(ids, (size_t)(cap *= 2) * sizeof *ids);
            if (grown == NULL)
                break;
            ids = grown;
        }
        ids[len++] = (int32_t)v;
        for (p = end; *p == ' '; p++)
            ;
        if (*p == '\0') {
            *out = ids;
            *n = len;
            return true;
        }
        if (*p++ != ',')
            break;
    }
    free(ids);
    return false;
}

static double seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static jamba_status out_of_memory(jamba_error *err, int64_t T) {
    snprintf(err->message, sizeof err->message, "out of memory for %lld positions", (long long)T);
    return err->status = JAMBA_ERR_OUT_OF_MEMORY;
}

/* Score ids with an open model as one sequence; fills r (and *all, when dumping) and the research
 * captures. Logits with NaN or Inf at a scored position are JAMBA_ERR_NUMERIC. */
static jamba_status score_sequence(const score_opts *o, jamba_context *ctx, jamba_model *m, const char *dir,
                                   const int32_t *ids, int64_t T, int64_t batch, score_result *r, float *all,
                                   jamba_error *err) {
    const int64_t V = jamba_model_config(m)->vocab_size;
    const bool capturing = score_internals_wanted(&o->internals);
    score_capture sc = {0};
    jamba_status st = capturing ? score_capture_begin(&sc, &o->internals, ctx, m, T, err) : JAMBA_OK;
    bool bar = T > batch && isatty(STDERR_FILENO);
    double t0 = seconds(), nll = 0;
    for (int64_t at = 0; st == JAMBA_OK && at < T; at += batch) {
        int64_t n = T - at < batch ? T - at : batch, rows;
        jamba_seq_input in = {.seq = 0, .tokens = ids + at, .n_tokens = n, .logits = JAMBA_LOGITS_ALL};
        if ((st = jamba_decode(ctx, &in, 1, err)) != JAMBA_OK)
            break;
        const float *logits = jamba_logits(ctx, 0, &rows);
        for (int64_t i = 0; st == JAMBA_OK && i < n && at + i + 1 < T; i++) {
            if (!gen_logits_finite(logits + i * V, V)) {
                st = gen_fail_non_finite(err, dir, at + i);
                break;
            }
            r->logprob[at + i] = score_log_prob(logits + i * V, V, ids[at + i + 1]);
            nll -= r->logprob[at + i];
        }
        if (all)
            memcpy(all + at * V, logits, (size_t)(n * V) * sizeof *all);
        if (bar)
            gen_progress("score", at + n, T, seconds() - t0);
    }
    if (bar && st != JAMBA_OK)
        fputc('\n', stderr);
    r->predicted = T - 1;
    r->nll = T > 1 ? nll / (double)(T - 1) : NAN;
    if (capturing && st == JAMBA_OK)
        st = score_capture_finish(&sc, &o->internals, ctx, m, &r->router, err);
    score_capture_free(&sc);
    return st;
}

/* Score ids with an open model: as one sequence, or in windows (--window). */
static jamba_status score_ids(const score_opts *o, jamba_model *m, const char *dir, const int32_t *ids, int64_t T,
                              score_result *r, float **all, jamba_error *err) {
    const int64_t V = jamba_model_config(m)->vocab_size;
    const bool windowed = o->window.window > 0;
    jamba_context_params cp = jamba_context_default_params();
    cp.n_ctx = windowed && o->window.window < T ? o->window.window : T;
    cp.n_batch = cp.n_ctx < o->batch ? cp.n_ctx : o->batch;
    cp.n_threads = (int32_t)o->threads;
    cp.device = o->device.device;
    cp.gpu_index = o->device.gpu_index;
    cp.gpu_dtype = o->device.gpu_dtype;
    cp.kv_dtype = o->device.kv_dtype;
    cli_gpu_placement(&o->device, &cp);
    jamba_context *ctx = NULL;
    r->tokens = T;
    r->logprob = calloc((size_t)(T > 1 ? T - 1 : 1), sizeof *r->logprob);
    if (r->logprob == NULL || (all && (*all = malloc((size_t)(T * V) * sizeof **all)) == NULL))
        return out_of_memory(err, T);
    jamba_status st = jamba_context_create(m, &cp, &ctx, err);
    if (st == JAMBA_OK && windowed) {
        score_window_opts w = o->window;
        w.batch = cp.n_batch;
        double nll_sum = 0;
        st = score_windows(ctx, m, dir, ids, T, &w, r->logprob, &nll_sum, &r->predicted, err);
        r->nll = r->predicted > 0 ? nll_sum / (double)r->predicted : NAN;
    } else if (st == JAMBA_OK) {
        st = score_sequence(o, ctx, m, dir, ids, T, cp.n_batch, r, all ? *all : NULL, err);
    }
    jamba_context_free(ctx);
    return st;
}

/* The ids to score with this model: --tokens, or the text tokenized with its tokenizer (*owned to free). */
static jamba_status model_ids(const score_opts *o, const char *dir, int32_t **ids, int64_t *T, int32_t **owned,
                              jamba_error *err) {
    *owned = NULL;
    if (o->text == NULL) {
        *ids = o->ids, *T = o->n_ids;
        return JAMBA_OK;
    }
    jamba_tokenizer *tok = NULL;
    jamba_status st = jamba_tokenizer_load(dir, &tok, err);
    int64_t cap = st == JAMBA_OK ? jamba_tokenizer_max_ids(tok, o->text_len) : 0;
    if (st == JAMBA_OK && (*owned = malloc((size_t)(cap > 0 ? cap : 1) * sizeof **owned)) == NULL)
        st = out_of_memory(err, cap);
    if (st == JAMBA_OK)
        st = jamba_tokenize(tok, o->text, o->text_len, JAMBA_TOKENIZE_ADD_SPECIAL, *owned, cap, T, err);
    if (st == JAMBA_OK && *T == 0) {
        snprintf(err->message, sizeof err->message, "%.900s: the text has no tokens to score", o->file);
        st = err->status = JAMBA_ERR_INVALID_ARGUMENT;
    }
    jamba_tokenizer_free(tok);
    *ids = *owned;
    return st;
}

/* Score one model into r; on failure r->error says why (also printed on stderr). */
static void score_model(const score_opts *o, const char *dir, score_result *r) {
    jamba_error err = {0};
    jamba_model *m = NULL;
    int32_t *ids = NULL, *owned = NULL;
    int64_t T = 0;
    float *all = NULL;
    r->model = dir;
    jamba_status st = jamba_model_load(dir, &o->load, &m, &err);
    if (st == JAMBA_OK) {
        cli_print_model_notes(m);
        st = model_ids(o, dir, &ids, &T, &owned, &err);
    }
    if (st == JAMBA_OK)
        st = score_ids(o, m, dir, ids, T, r, o->dump ? &all : NULL, &err);
    if (st == JAMBA_OK && o->dump) {
        jb_st_out_tensor t = {"logits", JAMBA_DTYPE_F32, 2, {T, jamba_model_config(m)->vocab_size}, all};
        st = jb_st_write(o->dump, &t, 1, NULL, &err);
    }
    if (st != JAMBA_OK) {
        cli_fail(&err);
        snprintf(r->error, sizeof r->error, "%s", err.message[0] ? err.message : jamba_status_string(st));
    }
    free(all);
    free(owned);
    jamba_model_free(m);
}

static bool scored(const score_result *r) { return r->error[0] == '\0' && r->predicted > 0; }

/* Bits per byte of the text, or NAN where not defined (no text, nothing scored). */
static double bits_per_byte(const score_result *r, size_t text_bytes) {
    return scored(r) && text_bytes ? r->nll * (double)(r->tokens - 1) / ((double)text_bytes * log(2)) : NAN;
}

static json_t *number_or_null(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static json_t *model_json(const score_result *r, size_t text_bytes, bool router_stats) {
    json_t *pos = r->error[0] ? json_null() : json_array();
    for (int64_t t = 0; json_is_array(pos) && t + 1 < r->tokens; t++)
        json_array_append_new(pos, number_or_null(r->logprob[t])); /* null: not predicted (windows) */
    bool ok = scored(r);
    json_t *obj = json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "model", gen_json_text(r->model, strlen(r->model)),
                            "tokens", r->tokens > 0 ? json_integer(r->tokens) : json_null(), "predicted",
                            ok ? json_integer(r->predicted) : json_null(), "mean_nll",
                            number_or_null(ok ? r->nll : NAN), "perplexity", number_or_null(ok ? exp(r->nll) : NAN),
                            "bits_per_byte", number_or_null(bits_per_byte(r, text_bytes)), "positions", pos, "error",
                            r->error[0] ? gen_json_text(r->error, strlen(r->error)) : json_null());
    if (obj && router_stats)
        json_object_set_new(obj, "router", ok ? score_router_json(&r->router) : json_null());
    return obj;
}

static int report_json(const score_opts *o, const score_result *r, int n, size_t text_bytes) {
    json_t *models = json_array();
    for (int k = 0; k < n; k++)
        json_array_append_new(models, model_json(&r[k], text_bytes, o->internals.router_stats));
    json_t *root = json_pack("{s:o}", "models", models);
    if (root && n == 1) /* a single model: its fields at the top level as well */
        json_object_update(root, json_array_get(models, 0));
    int rc = root && json_dumpf(root, stdout, JSON_INDENT(2)) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
    if (rc != CLI_EXIT_OK)
        fprintf(stderr, "jamba: error: out of memory for the JSON output\n");
    printf("\n");
    json_decref(root);
    return rc;
}

/* "%.*f" of v, or "-" when it is not a number. */
static const char *figure(double v, int decimals, char *buf, size_t size) {
    if (isfinite(v))
        snprintf(buf, size, "%.*f", decimals, v);
    else
        snprintf(buf, size, "-");
    return buf;
}

static void report_table(const score_result *r, int n, size_t text_bytes) {
    printf("%-40s %10s %12s %12s %10s\n", "model", "tokens", "mean NLL", "perplexity", "bits/byte");
    for (int k = 0; k < n; k++) {
        char tokens[24] = "-", nll[32], ppl[32], bits[32];
        if (r[k].tokens > 0)
            snprintf(tokens, sizeof tokens, "%lld", (long long)r[k].tokens);
        bool ok = scored(&r[k]);
        printf("%-40s %10s %12s %12s %10s%s%s\n", r[k].model, tokens, figure(ok ? r[k].nll : NAN, 6, nll, sizeof nll),
               figure(ok ? exp(r[k].nll) : NAN, 4, ppl, sizeof ppl),
               figure(bits_per_byte(&r[k], text_bytes), 4, bits, sizeof bits), r[k].error[0] ? "  error: " : "",
               r[k].error);
    }
}

/* One model's --tokens: the summary and every position's log-probability (nothing when it failed). */
static void report_positions(const score_result *r) {
    if (r->error[0])
        return;
    if (r->predicted > 0)
        printf("tokens %lld, predicted %lld, mean NLL %.6f, perplexity %.4f\n", (long long)r->tokens,
               (long long)r->predicted, r->nll, exp(r->nll));
    else
        printf("tokens %lld, predicted 0 (no token has a token before it to be predicted from)\n",
               (long long)r->tokens);
    for (int64_t t = 0; t + 1 < r->tokens; t++) {
        char lp[32];
        printf("%6lld %12s\n", (long long)t, figure(r->logprob[t], 6, lp, sizeof lp));
    }
}

static int report(const score_opts *o, const score_result *r, int n) {
    int rc = CLI_EXIT_OK;
    if (o->json)
        rc = report_json(o, r, n, o->text_len);
    else if (n == 1 && o->tokens)
        report_positions(r);
    else
        report_table(r, n, o->text_len);
    for (int k = 0; !o->json && o->internals.router_stats && k < n; k++)
        if (scored(&r[k]))
            score_router_print(r[k].model, &r[k].router);
    for (int k = 0; k < n; k++)
        if (r[k].error[0])
            rc = CLI_EXIT_FAIL;
    return rc;
}

/* The checks and inputs before any model is loaded: 0, or the exit status after saying why. */
static int prepare(score_opts *o) {
    if (o->models.n == 0 || (o->tokens == NULL) == (o->file == NULL))
        return cli_usage_error("score", "--model DIR and one of --file TEXT or --tokens LIST are required");
    score_internals_opts *in = &o->internals;
    if ((o->dump || in->dump_router || in->dump_hidden || in->dump_mamba) && o->models.n > 1)
        return cli_usage_error("score", "--dump-logits, --dump-router, --dump-hidden and --dump-mamba-state work "
                               "with one --model");
    if (o->window.window > 0 && (o->dump || score_internals_wanted(in)))
        return cli_usage_error("score", "--window scores windows from fresh sequences: it does not combine with "
                               "--dump-logits, --router-stats or the other dumps");
    if (o->window.window == 0 && (o->window.stride || o->window.carry_state))
        return cli_usage_error("score", "--stride and --carry-state need --window N");
    if (o->window.window > 0 && o->window.stride == 0)
        o->window.stride = o->window.window > 1 ? o->window.window / 2 : 1;
    if (o->window.stride > o->window.window)
        return cli_usage_error("score", "--stride %lld is larger than --window %lld: tokens would be skipped",
                               (long long)o->window.stride, (long long)o->window.window);
    if (o->layers_arg && !in->dump_hidden && !in->dump_mamba)
        return cli_usage_error("score", "--layers selects what --dump-hidden and --dump-mamba-state write");
    if (o->layers_arg) {
        int32_t *list = NULL;
        if (!parse_ids(o->layers_arg, &list, &in->n_layers) ||
            (o->layers = malloc((size_t)in->n_layers * sizeof *o->layers)) == NULL) {
            free(list);
            return cli_usage_error("score", "--layers '%.40s' is not a comma-separated list of layer numbers",
                                   o->layers_arg);
        }
        for (int64_t i = 0; i < in->n_layers; i++)
            o->layers[i] = list[i];
        free(list);
        in->layers = o->layers;
    }
    o->device = jamba_context_default_params();
    o->load = jamba_model_default_params();
    o->load.allow_unexpected_tensors = o->allow_unexpected;
    int rc = cli_device_params("score", &o->dev, &o->device);
    if (rc != 0 || (rc = cli_model_params("score", &o->dev, &o->load)) != 0)
        return rc;
    if (o->tokens && !parse_ids(o->tokens, &o->ids, &o->n_ids))
        return cli_usage_error("score", "--tokens '%.40s' is not a comma-separated list of token ids", o->tokens);
    if (o->file && (o->text = cli_read_file(o->file, &o->text_len)) == NULL) {
        fprintf(stderr, "jamba: error: %s: cannot read: %s\n", o->file, strerror(errno));
        return CLI_EXIT_FAIL;
    }
    return 0;
}

int cmd_score(int argc, char **argv) {
    score_opts o = {.batch = 512};
    const cli_option opts[] = {
        {"--model", CLI_STRINGS, &o.models, 0, 0},      {"--tokens", CLI_STRING, &o.tokens, 0, 0},
        {"--file", CLI_STRING, &o.file, 0, 0},          {"--dump-logits", CLI_STRING, &o.dump, 0, 0},
        {"--threads", CLI_COUNT, &o.threads, 1, 1024},  {"--batch", CLI_COUNT, &o.batch, 1, 1 << 16},
        {"--json", CLI_FLAG, &o.json, 0, 0},            {"--allow-unexpected", CLI_FLAG, &o.allow_unexpected, 0, 0},
        {"--window", CLI_COUNT, &o.window.window, 1, INT64_C(1) << 40},
        {"--stride", CLI_COUNT, &o.window.stride, 1, INT64_C(1) << 40},
        {"--carry-state", CLI_FLAG, &o.window.carry_state, 0, 0},
        {"--router-stats", CLI_FLAG, &o.internals.router_stats, 0, 0},
        {"--dump-router", CLI_STRING, &o.internals.dump_router, 0, 0},
        {"--dump-hidden", CLI_STRING, &o.internals.dump_hidden, 0, 0},
        {"--dump-mamba-state", CLI_STRING, &o.internals.dump_mamba, 0, 0},
        {"--layers", CLI_STRING, &o.layers_arg, 0, 0},
        CLI_DEVICE_OPTIONS(o.dev),
    };
    int rc = cli_parse("score", argc, argv, opts, sizeof opts / sizeof opts[0], print_help);
    if (rc != 0)
        return rc < 0 ? CLI_EXIT_OK : rc;
    score_result results[CLI_MAX_REPEAT] = {{0}};
    if ((rc = prepare(&o)) == 0) {
        for (int k = 0; k < o.models.n; k++)
            score_model(&o, o.models.v[k], &results[k]);
        rc = report(&o, results, o.models.n);
    }
    for (int k = 0; k < o.models.n; k++) {
        free(results[k].logprob);
        score_router_free(&results[k].router);
    }
    free(o.layers);
    free(o.ids);
    free(o.text);
    return cli_finish_output(rc);
}
