/*
 * batch.c — several prompts served at once by the library's scheduler (continuous batching), sharing a
 * system prompt through the prefix-state cache, each reply streamed as its tokens arrive.
 *
 *   example_batch MODEL_DIR [N_TOKENS] PROMPT [PROMPT ...]
 *
 * Each prompt is "SYSTEM PROMPT" (one text for all, marked as the cached prefix) followed by its own text;
 * the replies (greedy, N_TOKENS each, default 24) are printed as "[i] text" lines when each request ends,
 * then the prompt tokens the prefix cache saved.
 */
#include <jamba.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SYSTEM "ROMEO:\nBut soft, what light through yonder window breaks?\n"

typedef struct reply {
    int index;
    jamba_stream_decoder *text; /* turns the streamed tokens into UTF-8 */
    char out[4096];
    size_t n;
} reply;

/* Each event: append its text; on the last one print the reply. Runs on the thread that calls step. */
static bool on_token(const jamba_token_event *e, void *data) {
    reply *r = data;
    const char *piece = "";
    size_t len = 0;
    if (e->token >= 0 && e->finish != JAMBA_FINISH_STOP &&
        jamba_stream_decoder_push(r->text, e->token, &piece, &len, NULL) == JAMBA_OK && r->n + len < sizeof r->out) {
        memcpy(r->out + r->n, piece, len);
        r->n += len;
    }
    if (e->finish != JAMBA_FINISH_NONE)
        printf("[%d] (%lld prompt tokens, %lld from the cache) %.*s\n", r->index, (long long)e->n_prompt,
               (long long)e->n_cached, (int)r->n, r->out);
    return true;
}

static int fail(const jamba_error *err) {
    fprintf(stderr, "error (%s): %s\n", jamba_status_string(err->status), err->message);
    return 1;
}

/* Tokenize SYSTEM + text and queue it; the system part (less its last token, which may merge with the text)
 * is the prefix the cache keeps. */
static jamba_status submit(jamba_scheduler *sched, const jamba_tokenizer *tok, int64_t n_system, const char *text,
                           int n_tokens, reply *r, jamba_error *err) {
    const size_t len = strlen(SYSTEM) + strlen(text);
    char *prompt = malloc(len + 1);
    const int64_t cap = jamba_tokenizer_max_ids(tok, len);
    jamba_token *ids = malloc((size_t)cap * sizeof *ids);
    snprintf(prompt, len + 1, "%s%s", SYSTEM, text);
    int64_t n_ids = 0, id;
    jamba_status st = jamba_tokenize(tok, prompt, len, JAMBA_TOKENIZE_ADD_SPECIAL, ids, cap, &n_ids, err);
    if (st == JAMBA_OK)
        st = jamba_stream_decoder_create(tok, false, &r->text, err);
    if (st == JAMBA_OK) {
        jamba_request_params rq = jamba_request_default_params();
        rq.prompt = ids;
        rq.n_prompt = n_ids;
        rq.max_tokens = n_tokens;
        rq.sampling.temperature = 0; /* greedy */
        rq.cache_prefix = n_system - 1 < n_ids ? n_system - 1 : 0;
        rq.on_token = on_token;
        rq.user_data = r;
        st = jamba_scheduler_submit(sched, &rq, &id, err); /* copies the prompt */
    }
    free(ids);
    free(prompt);
    return st;
}

/* Step until every request has ended. */
static jamba_status drain(jamba_scheduler *sched, jamba_error *err) {
    for (int64_t active = 1; active > 0;)
        if (jamba_scheduler_step(sched, &active, err) != JAMBA_OK)
            return err->status;
    return JAMBA_OK;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL_DIR [N_TOKENS] PROMPT [PROMPT ...]\n", argv[0]);
        return 2;
    }
    int first = 2, n_tokens = 24;
    if (argc > 3 && atoi(argv[2]) > 0)
        n_tokens = atoi(argv[2]), first = 3;
    const int n = argc - first;
    jamba_error err = {0};
    jamba_model *model = NULL;
    jamba_tokenizer *tok = NULL;
    jamba_prefix_cache *cache = NULL;
    jamba_scheduler *sched = NULL;
    reply *replies = calloc((size_t)n, sizeof *replies);
    int rc = 0;
    if (jamba_model_load(argv[1], NULL, &model, &err) != JAMBA_OK ||
        jamba_tokenizer_load(argv[1], &tok, &err) != JAMBA_OK ||
        jamba_prefix_cache_create(64u << 20, &cache, &err) != JAMBA_OK) {
        rc = fail(&err);
        goto done;
    }
    jamba_context_params cp = jamba_context_default_params();
    cp.n_seq_max = 0; /* as many sequences as memory allows */
    cp.n_ctx = 512;
    jamba_scheduler_params sp = jamba_scheduler_default_params();
    sp.cache = cache;
    sp.max_sequences = 16;
    if (jamba_scheduler_create(model, &cp, &sp, &sched, &err) != JAMBA_OK) {
        rc = fail(&err);
        goto done;
    }
    int64_t n_system = 0;
    jamba_tokenize(tok, SYSTEM, strlen(SYSTEM), JAMBA_TOKENIZE_ADD_SPECIAL, NULL, 0, &n_system, NULL);
    /* the first prompt alone, which leaves the system prompt's state in the cache; then the rest at once */
    for (int i = 0; i < n; i++)
        replies[i].index = i;
    if (submit(sched, tok, n_system, argv[first], n_tokens, &replies[0], &err) != JAMBA_OK ||
        drain(sched, &err) != JAMBA_OK) {
        rc = fail(&err);
        goto done;
    }
    for (int i = 1; i < n; i++)
        if (submit(sched, tok, n_system, argv[first + i], n_tokens, &replies[i], &err) != JAMBA_OK) {
            rc = fail(&err);
            goto done;
        }
    if (drain(sched, &err) != JAMBA_OK) {
        rc = fail(&err);
        goto done;
    }
    jamba_prefix_cache_stats cs;
    if (jamba_prefix_cache_get_stats(cache, &cs, &err) == JAMBA_OK)
        printf("prefix cache: %lld prompt tokens restored instead of prefilled\n", (long long)cs.tokens_restored);
done:
    jamba_scheduler_free(sched);
    for (int i = 0; i < n; i++)
        jamba_stream_decoder_free(replies[i].text);
    free(replies);
    jamba_prefix_cache_free(cache);
    jamba_tokenizer_free(tok);
    jamba_model_free(model);
    return rc;
}
