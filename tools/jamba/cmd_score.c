/*
 * cmd_score.c — `jamba score`: run token ids as one sequence and report how well the model predicts each
 * next token: mean negative log-likelihood, perplexity and per-position log-probabilities; optionally
 * dump every position's logits as a safetensors file.
 */
#include "cli.h"

#include "ckpt/st_write.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct score_opts {
    const char *model;
    const char *tokens;
    const char *dump;
    int64_t threads;
    int64_t batch;
    bool json;
} score_opts;

static void print_help(void) {
    printf("usage: jamba score --model DIR --tokens ID,ID,... [--json] [--dump-logits FILE]\n"
           "                   [--threads N] [--batch N]\n"
           "\n"
           "Run the token ids as one sequence (prefill in steps of --batch tokens) and print the mean negative\n"
           "log-likelihood of each next token, the perplexity, and per-position log-probabilities.\n"
           "\n"
           "  --model DIR          model folder (required)\n"
           "  --tokens LIST        comma-separated token ids (required; at least one)\n"
           "  --json               print one JSON object: tokens, mean_nll, perplexity, positions[]\n"
           "  --dump-logits FILE   write every position's logits to FILE as safetensors: one tensor\n"
           "                       \"logits\", F32, shape [T, vocab]\n"
           "  --threads N          worker threads (default: all CPUs)\n"
           "  --batch N            tokens per step (default 512)\n"
           "\n"
           "Position t's log-probability is that of token t+1 given tokens 0..t, so T tokens give T-1 scores.\n"
           "Exit status: 0 ok, 1 failure (one line on stderr), 2 usage error.\n");
}

static int parse_args(int argc, char **argv, score_opts *o) {
    *o = (score_opts){.batch = 512};
    const cli_option opts[] = {
        {"--model", CLI_STRING, &o->model, 0, 0},
        {"--tokens", CLI_STRING, &o->tokens, 0, 0},
        {"--dump-logits", CLI_STRING, &o->dump, 0, 0},
        {"--threads", CLI_COUNT, &o->threads, 1, 1024},
        {"--batch", CLI_COUNT, &o->batch, 1, 1 << 16},
        {"--json", CLI_FLAG, &o->json, 0, 0},
    };
    int rc = cli_parse("score", argc, argv, opts, sizeof opts / sizeof opts[0], print_help);
    if (rc != 0)
        return rc;
    if (o->model == NULL || o->tokens == NULL)
        return cli_usage_error("score", "--model DIR and --tokens LIST are required");
    return 0;
}

/* "1,2, 3" -> ids; false (with a message) on anything else. */
static bool parse_ids(const char *s, int32_t **out, int64_t *n) {
    int64_t cap = 16, len = 0;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    if (ids == NULL)
        return false;
    const char *p = s;
    for (;;) {
        while (*p == ' ')
            p++;
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno != 0 || v < 0 || v > INT32_MAX) {
            free(ids);
            return false;
        }
        if (len == cap) {
            int32_t *grown = realloc(ids, (size_t)(cap *= 2) * sizeof *ids);
            if (grown == NULL) {
                free(ids);
                return false;
            }
            ids = grown;
        }
        ids[len++] = (int32_t)v;
        p = end;
        while (*p == ' ')
            p++;
        if (*p == '\0')
            break;
        if (*p != ',') {
            free(ids);
            return false;
        }
        p++;
    }
    *out = ids;
    *n = len;
    return true;
}

/* log p(next | row) from one row of logits, in double. */
static double log_prob(const float *row, int64_t V, int32_t next) {
    double mx = row[0];
    for (int64_t i = 1; i < V; i++)
        mx = row[i] > mx ? row[i] : mx;
    double sum = 0;
    for (int64_t i = 0; i < V; i++)
        sum += exp((double)row[i] - mx);
    return (double)row[next] - mx - log(sum);
}

static int report(const score_opts *o, const int32_t *ids, int64_t T, const double *lp) {
    double nll = 0;
    for (int64_t t = 0; t + 1 < T; t++)
        nll -= lp[t];
    const bool any = T > 1;
    if (any)
        nll /= (double)(T - 1);
    if (o->json) {
        json_t *pos = json_array();
        for (int64_t t = 0; t + 1 < T; t++)
            json_array_append_new(pos, json_pack("{s:I,s:I,s:f}", "position", (json_int_t)t, "next_token",
                                                 (json_int_t)ids[t + 1], "logprob", lp[t]));
        json_t *root = json_pack("{s:I,s:o,s:o,s:o}", "tokens", (json_int_t)T, "mean_nll",
                                 any ? json_real(nll) : json_null(), "perplexity",
                                 any ? json_real(exp(nll)) : json_null(), "positions", pos);
        if (root == NULL || json_dumpf(root, stdout, JSON_INDENT(2)) != 0) {
            json_decref(root);
            fprintf(stderr, "jamba: error: cannot write the JSON report\n");
            return CLI_EXIT_FAIL;
        }
        printf("\n");
        json_decref(root);
    } else {
        if (any)
            printf("tokens %lld, predicted %lld, mean NLL %.6f, perplexity %.4f\n", (long long)T, (long long)(T - 1),
                   nll, exp(nll));
        else
            printf("tokens 1, predicted 0 (a single token has no next token to score)\n");
        for (int64_t t = 0; t + 1 < T; t++)
            printf("%6lld %8d %12.6f\n", (long long)t, ids[t + 1], lp[t]);
    }
    return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}

static int run(const score_opts *o, const int32_t *ids, int64_t T) {
    jamba_error err = {0};
    jamba_model *m = NULL;
    if (jamba_model_load(o->model, NULL, &m, &err) != JAMBA_OK)
        return cli_fail(&err);
    const int64_t V = jamba_model_config(m)->vocab_size;
    jamba_context_params cp = jamba_context_default_params();
    cp.n_ctx = T;
    cp.n_batch = T < o->batch ? T : o->batch;
    cp.n_threads = (int32_t)o->threads;
    jamba_context *ctx = NULL;
    double *lp = calloc((size_t)T, sizeof *lp);
    float *all = o->dump ? malloc((size_t)(T * V) * sizeof *all) : NULL;
    int rc = CLI_EXIT_OK;
    if (lp == NULL || (o->dump && all == NULL)) {
        fprintf(stderr, "jamba: error: out of memory for %lld positions\n", (long long)T);
        rc = CLI_EXIT_FAIL;
    } else if (jamba_context_create(m, &cp, &ctx, &err) != JAMBA_OK) {
        rc = cli_fail(&err);
    }
    for (int64_t at = 0; rc == CLI_EXIT_OK && at < T; at += cp.n_batch) {
        int64_t n = T - at < cp.n_batch ? T - at : cp.n_batch, rows;
        jamba_seq_input in = {.seq = 0, .tokens = ids + at, .n_tokens = n, .logits = JAMBA_LOGITS_ALL};
        if (jamba_decode(ctx, &in, 1, &err) != JAMBA_OK) {
            rc = cli_fail(&err);
            break;
        }
        const float *logits = jamba_logits(ctx, 0, &rows);
        for (int64_t r = 0; r < n; r++)
            if (at + r + 1 < T)
                lp[at + r] = log_prob(logits + r * V, V, ids[at + r + 1]);
        if (all)
            memcpy(all + at * V, logits, (size_t)(n * V) * sizeof *all);
    }
    if (rc == CLI_EXIT_OK && o->dump) {
        jb_st_out_tensor t = {"logits", JAMBA_DTYPE_F32, 2, {T, V}, all};
        if (jb_st_write(o->dump, &t, 1, &err) != JAMBA_OK)
            rc = cli_fail(&err);
    }
    if (rc == CLI_EXIT_OK)
        rc = report(o, ids, T, lp);
    free(all);
    free(lp);
    jamba_context_free(ctx);
    jamba_model_free(m);
    return rc;
}

int cmd_score(int argc, char **argv) {
    score_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc != 0)
        return rc < 0 ? CLI_EXIT_OK : rc;
    int32_t *ids = NULL;
    int64_t T = 0;
    if (!parse_ids(o.tokens, &ids, &T))
        return cli_usage_error("score", "--tokens '%.40s' is not a comma-separated list of token ids", o.tokens);
    rc = run(&o, ids, T);
    free(ids);
    return rc;
}
