/*
 * greedy.c — greedy continuation of token ids with the public API: load a model, create a context, prefill
 * the prompt, then append the most likely token one step at a time.
 *
 *   example_greedy MODEL_DIR N_NEW ID [ID ...]
 */
#include <jamba.h>
#include <stdio.h>
#include <stdlib.h>

static int fail(const jamba_error *err) {
    fprintf(stderr, "error (%s): %s\n", jamba_status_string(err->status), err->message);
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL_DIR N_NEW ID [ID ...]\n", argv[0]);
        return 2;
    }
    int n_new = atoi(argv[2]), n_prompt = argc - 3;
    int32_t *prompt = malloc((size_t)n_prompt * sizeof *prompt);
    for (int i = 0; i < n_prompt; i++)
        prompt[i] = (int32_t)atoi(argv[3 + i]);
    jamba_error err = {0};
    jamba_model *model = NULL;
    jamba_context *ctx = NULL;
    int rc = 0;
    jamba_context_params cp = jamba_context_default_params();
    cp.n_ctx = n_prompt + (n_new > 0 ? n_new : 0);
    if (jamba_model_load(argv[1], NULL, &model, &err) != JAMBA_OK ||
        jamba_context_create(model, &cp, &ctx, &err) != JAMBA_OK) {
        rc = fail(&err);
        goto done;
    }
    const int64_t vocab = jamba_model_config(model)->vocab_size;
    jamba_seq_input in = {.seq = 0, .tokens = prompt, .n_tokens = n_prompt, .logits = JAMBA_LOGITS_LAST};
    for (int step = 0; step < n_new; step++) {
        if (jamba_decode(ctx, &in, 1, &err) != JAMBA_OK) {
            rc = fail(&err);
            goto done;
        }
        const float *logits = jamba_logits(ctx, 0, NULL);
        int32_t best = 0;
        for (int64_t v = 1; v < vocab; v++)
            if (logits[v] > logits[best])
                best = (int32_t)v;
        printf("%d%c", best, step + 1 < n_new ? ' ' : '\n');
        static int32_t next;
        next = best;
        in = (jamba_seq_input){.seq = 0, .tokens = &next, .n_tokens = 1, .logits = JAMBA_LOGITS_LAST};
    }
done:
    jamba_context_free(ctx);
    jamba_model_free(model);
    free(prompt);
    return rc;
}
