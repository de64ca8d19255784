/*
 * cmd_score.c — `jamba score`: how well models predict a text. Token ids (--tokens) or a text file
 * (--file, tokenized with each model's own tokenizer, BOS added) run as one sequence in steps of --batch
 * tokens; reported are the mean negative log-likelihood of each next token, the perplexity, bits per byte
 * (comparable across tokenizers) and, with --json, every position's log-probability. Several --model flags
 * give a comparison table. --dump-logits writes one model's logits as safetensors.
 */
#include "tools/jamba/cli.h"
#include "tools/jamba/generation.h"

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
    const char *tokens, *file, *dump;
    int64_t threads, batch;
    bool json;
    cli_device_args dev;
    jamba_context_params device; /* the device fields, from dev */
    jamba_model_params load;     /* the weight formats, from dev */
} score_opts;

typedef struct score_result {
    const char *model;
    int64_t tokens;   /* scored sequence length (BOS included) */
    double nll;       /* mean over the T - 1 predictions */
    double *logprob;  /* [T - 1] */
} score_result;

static void print_help(void) {
    printf("usage: jamba score --model DIR [--model DIR ...] (--file TEXT | --tokens ID,ID,...) [--json]\n"
           "                   [--dump-logits FILE] [--threads N] [--batch N] [--device cpu|cuda]\n"
           "\n"
           "Run a text or token ids as one sequence and report the mean negative log-likelihood of each next\n"
           "token, the perplexity and bits per byte. Long texts are scored in steps of --batch tokens (chunked\n"
           "prefill) with a progress bar on stderr. Several --model flags print a comparison table.\n"
           "\n"
           "  --model DIR          model folder (repeatable)\n"
           "  --file TEXT          a UTF-8 text file (\"-\" for stdin), tokenized with each model's tokenizer\n"
           "                       with BOS added\n"
           "  --tokens LIST        comma-separated token ids instead of a text\n"
           "  --json               one JSON object: per model tokens, mean_nll, perplexity, bits_per_byte and\n"
           "                       positions[] (each next token's log-probability)\n"
           "  --dump-logits FILE   write every position's logits (one model only) as safetensors: one tensor\n"
           "                       \"logits\", F32, shape [T, vocab]\n"
           "  --threads N          worker threads (default: all CPUs)\n"
           "  --batch N            tokens per step (default 512)\n"
           CLI_DEVICE_HELP
           "\n"
           "Exit status: 0 ok, 1 failure (one line on stderr), 2 usage error.\n");
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

/* log p(next | row), in double. */
static double log_prob(const float *row, int64_t V, int32_t next) {
    double mx = row[0];
    for (int64_t i = 1; i < V; i++)
        mx = row[i] > mx ? row[i] : mx;
    double sum = 0;
    for (int64_t i = 0; i < V; i++)
        sum += exp((double)row[i] - mx);
    return (double)row[next] - mx - log(sum);
}

static double seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Score ids with an open model; fills r (and *all, when dumping). */
static int score_ids(const score_opts *o, jamba_model *m, const int32_t *ids, int64_t T, score_result *r, float **all) {
    jamba_error err = {0};
    const int64_t V = jamba_model_config(m)->vocab_size;
    jamba_context_params cp = jamba_context_default_params();
    cp.n_ctx = T;
    cp.n_batch = T < o->batch ? T : o->batch;
    cp.n_threads = (int32_t)o->threads;
    cp.device = o->device.device;
    cp.gpu_index = o->device.gpu_index;
    cp.gpu_dtype = o->device.gpu_dtype;
    cp.kv_dtype = o->device.kv_dtype;
    jamba_context *ctx = NULL;
    r->tokens = T;
    r->logprob = calloc((size_t)(T > 1 ? T - 1 : 1), sizeof *r->logprob);
    if (r->logprob == NULL || (all && (*all = malloc((size_t)(T * V) * sizeof **all)) == NULL)) {
        fprintf(stderr, "jamba: error: out of memory for %lld positions\n", (long long)T);
        return CLI_EXIT_FAIL;
    }
    if (jamba_context_create(m, &cp, &ctx, &err) != JAMBA_OK)
        return cli_fail(&err);
    bool bar = T > cp.n_batch && isatty(STDERR_FILENO);
    double t0 = seconds(), nll = 0;
    int rc = CLI_EXIT_OK;
    for (int64_t at = 0; at < T; at += cp.n_batch) {
        int64_t n = T - at < cp.n_batch ? T - at : cp.n_batch, rows;
        jamba_seq_input in = {.seq = 0, .tokens = ids + at, .n_tokens = n, .logits = JAMBA_LOGITS_ALL};
        if (jamba_decode(ctx, &in, 1, &err) != JAMBA_OK) {
            rc = cli_fail(&err);
            break;
        }
        const float *logits = jamba_logits(ctx, 0, &rows);
        for (int64_t i = 0; i < n && at + i + 1 < T; i++) {
            r->logprob[at + i] = log_prob(logits + i * V, V, ids[at + i + 1]);
            nll -= r->logprob[at + i];
        }
        if (all)
            memcpy(*all + at * V, logits, (size_t)(n * V) * sizeof **all);
        if (bar)
            gen_progress("score", at + n, T, seconds() - t0);
    }
    r->nll = T > 1 ? nll / (double)(T - 1) : NAN;
    jamba_context_free(ctx);
    return rc;
}

static int score_model(const score_opts *o, const char *dir, const char *text, size_t text_len, score_result *r) {
    jamba_error err = {0};
    jamba_model *m = NULL;
    jamba_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    int64_t T = 0;
    float *all = NULL;
    int rc = CLI_EXIT_OK;
    r->model = dir;
    if (jamba_model_load(dir, &o->load, &m, &err) != JAMBA_OK)
        return cli_fail(&err);
    cli_print_model_notes(m);
    if (text) {
        if (jamba_tokenizer_load(dir, &tok, &err) != JAMBA_OK) {
            jamba_model_free(m);
            return cli_fail(&err);
        }
        int64_t cap = jamba_tokenizer_max_ids(tok, text_len);
        ids = malloc((size_t)cap * sizeof *ids);
        if (ids == NULL || jamba_tokenize(tok, text, text_len, JAMBA_TOKENIZE_ADD_SPECIAL, ids, cap, &T, &err) != JAMBA_OK)
            rc = ids ? cli_fail(&err) : CLI_EXIT_FAIL;
    } else if (!parse_ids(o->tokens, &ids, &T)) {
        rc = cli_usage_error("score", "--tokens '%.40s' is not a comma-separated list of token ids", o->tokens);
    }
    if (rc == CLI_EXIT_OK)
        rc = score_ids(o, m, ids, T, r, o->dump ? &all : NULL);
    if (rc == CLI_EXIT_OK && o->dump) {
        jb_st_out_tensor t = {"logits", JAMBA_DTYPE_F32, 2, {T, jamba_model_config(m)->vocab_size}, all};
        if (jb_st_write(o->dump, &t, 1, &err) != JAMBA_OK)
            rc = cli_fail(&err);
    }
    free(all);
    free(ids);
    jamba_tokenizer_free(tok);
    jamba_model_free(m);
    return rc;
}

static int report(const score_opts *o, const score_result *r, int n, size_t text_bytes) {
    if (o->json) {
        json_t *models = json_array();
        for (int k = 0; k < n; k++) {
            json_t *pos = json_array();
            for (int64_t t = 0; t + 1 < r[k].tokens; t++)
                json_array_append_new(pos, json_real(r[k].logprob[t]));
            bool any = r[k].tokens > 1;
            double bits = any && text_bytes ? r[k].nll * (double)(r[k].tokens - 1) / ((double)text_bytes * log(2)) : 0;
            json_array_append_new(models, json_pack("{s:s,s:I,s:o,s:o,s:o,s:o}", "model", r[k].model, "tokens",
                                                    (json_int_t)r[k].tokens, "mean_nll",
                                                    any ? json_real(r[k].nll) : json_null(), "perplexity",
                                                    any ? json_real(exp(r[k].nll)) : json_null(), "bits_per_byte",
                                                    any && text_bytes ? json_real(bits) : json_null(), "positions", pos));
        }
        json_t *root = json_pack("{s:o}", "models", models);
        if (n == 1) { /* a single model: its fields at the top level as well */
            json_t *only = json_array_get(models, 0);
            json_object_update(root, only);
        }
        int rc = root && json_dumpf(root, stdout, JSON_INDENT(2)) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
        printf("\n");
        json_decref(root);
        return rc;
    }
    if (n == 1 && o->tokens) {
        if (r[0].tokens > 1)
            printf("tokens %lld, predicted %lld, mean NLL %.6f, perplexity %.4f\n", (long long)r[0].tokens,
                   (long long)(r[0].tokens - 1), r[0].nll, exp(r[0].nll));
        else
            printf("tokens 1, predicted 0 (a single token has no next token to score)\n");
        for (int64_t t = 0; t + 1 < r[0].tokens; t++)
            printf("%6lld %12.6f\n", (long long)t, r[0].logprob[t]);
        return CLI_EXIT_OK;
    }
    printf("%-40s %10s %12s %12s %10s\n", "model", "tokens", "mean NLL", "perplexity", "bits/byte");
    for (int k = 0; k < n; k++) {
        double bits = text_bytes ? r[k].nll * (double)(r[k].tokens - 1) / ((double)text_bytes * log(2)) : NAN;
        printf("%-40s %10lld %12.6f %12.4f %10.4f\n", r[k].model, (long long)r[k].tokens, r[k].nll, exp(r[k].nll), bits);
    }
    return CLI_EXIT_OK;
}

int cmd_score(int argc, char **argv) {
    score_opts o = {.batch = 512};
    const cli_option opts[] = {
        {"--model", CLI_STRINGS, &o.models, 0, 0},      {"--tokens", CLI_STRING, &o.tokens, 0, 0},
        {"--file", CLI_STRING, &o.file, 0, 0},          {"--dump-logits", CLI_STRING, &o.dump, 0, 0},
        {"--threads", CLI_COUNT, &o.threads, 1, 1024},  {"--batch", CLI_COUNT, &o.batch, 1, 1 << 16},
        {"--json", CLI_FLAG, &o.json, 0, 0},            CLI_DEVICE_OPTIONS(o.dev),
    };
    int rc = cli_parse("score", argc, argv, opts, sizeof opts / sizeof opts[0], print_help);
    if (rc != 0)
        return rc < 0 ? CLI_EXIT_OK : rc;
    if (o.models.n == 0 || (o.tokens == NULL) == (o.file == NULL))
        return cli_usage_error("score", "--model DIR and one of --file TEXT or --tokens LIST are required");
    if (o.dump && o.models.n > 1)
        return cli_usage_error("score", "--dump-logits works with one --model");
    o.device = jamba_context_default_params();
    o.load = jamba_model_default_params();
    if ((rc = cli_device_params("score", &o.dev, &o.device)) != 0 || (rc = cli_model_params("score", &o.dev, &o.load)) != 0)
        return rc;
    size_t text_len = 0;
    char *text = NULL;
    if (o.file && (text = cli_read_file(o.file, &text_len)) == NULL) {
        fprintf(stderr, "jamba: error: %s: cannot read: %s\n", o.file, strerror(errno));
        return CLI_EXIT_FAIL;
    }
    score_result results[CLI_MAX_REPEAT] = {{0}};
    for (int k = 0; k < o.models.n && rc == CLI_EXIT_OK; k++)
        rc = score_model(&o, o.models.v[k], text, text_len, &results[k]);
    if (rc == CLI_EXIT_OK)
        rc = report(&o, results, o.models.n, text_len);
    for (int k = 0; k < o.models.n; k++)
        free(results[k].logprob);
    free(text);
    return rc != CLI_EXIT_OK ? rc : fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}
