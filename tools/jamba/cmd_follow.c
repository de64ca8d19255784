/*
 * cmd_follow.c — `jamba follow`: another node's part of a model split over several nodes. It loads the
 * model, makes this node's share of the context (its --gpus / --nodes GPUs, joined over NCCL with node 0),
 * and runs every step node 0's command (generate, chat, score or serve with --node-rank 0) decides, until
 * that command ends. Nothing of it has run on several nodes yet (docs/multi-gpu.md).
 */
#include "tools/jamba/cli.h"

#include <stdio.h>

static void help(void) {
    printf("usage: jamba follow --model DIR --device cuda --gpus N --nodes M --node-rank R [--nccl-id-file PATH]\n"
           "                    [--ctx N] [--seqs N] [--batch N] [--logits N] [device options]\n"
           "\n"
           "Run this node's GPUs for a model split over M nodes: node 0 runs generate, chat, score or serve with\n"
           "--node-rank 0; every other node runs this with the same model and device options and R = 1 .. M-1,\n"
           "and follows node 0's steps until node 0's command ends. The context's shape must be node 0's: when\n"
           "it differs, both sides stop naming the first difference (pass the same --ctx, and --seqs, --batch,\n"
           "--logits as node 0's context has them: serve's --parallel is --seqs). The NCCL id comes from\n"
           "--nccl-id-file (written by node 0) or JAMBA_NCCL_ID (printed by node 0). docs/multi-gpu.md.\n"
           "\n"
           "  --model DIR           the model folder (the same as node 0's)\n"
           "  --ctx N               tokens per sequence (node 0's n_ctx)\n"
           "  --seqs N              sequences held at once (default 1)\n"
           "  --batch N             rows per step (default: chosen from free memory; give node 0's)\n"
           "  --logits N            logit rows per call (default: from --batch)\n" CLI_DEVICE_HELP);
}

int cmd_follow(int argc, char **argv) {
    cli_device_args dev = {0};
    const char *model = NULL;
    int64_t ctx_len = 0, seqs = 1, batch = 0, logits = 0;
    const cli_option opts[] = {
        {"--model", CLI_STRING, &model, 0, 0},
        {"--ctx", CLI_COUNT, &ctx_len, 1, INT64_C(1) << 40},
        {"--seqs", CLI_COUNT, &seqs, 1, 1 << 20},
        {"--batch", CLI_COUNT, &batch, 1, 1 << 24},
        {"--logits", CLI_COUNT, &logits, 1, INT64_C(1) << 32},
        CLI_DEVICE_OPTIONS(dev),
    };
    int rc = cli_parse("follow", argc, argv, opts, sizeof opts / sizeof opts[0], help);
    if (rc != 0)
        return rc < 0 ? CLI_EXIT_OK : rc;
    if (model == NULL)
        return cli_usage_error("follow", "--model DIR is required (node 0's model)");
    if (dev.nodes < 2 || dev.node_rank < 1)
        return cli_usage_error("follow", "needs --nodes M (M >= 2) and --node-rank R in 1 .. M-1 (node 0 runs the "
                               "command itself)");
    jamba_context_params cp = jamba_context_default_params();
    jamba_model_params mp = jamba_model_default_params();
    if ((rc = cli_device_params("follow", &dev, &cp)) != 0 || (rc = cli_model_params("follow", &dev, &mp)) != 0)
        return rc;
    cp.n_ctx = ctx_len;
    cp.n_seq_max = (int32_t)seqs;
    cp.n_batch = batch;
    cp.n_logits_max = logits;
    jamba_error err = {0};
    jamba_model *m = NULL;
    jamba_context *ctx = NULL;
    jamba_status st = jamba_model_load(model, &mp, &m, &err);
    if (st == JAMBA_OK) {
        cli_print_model_notes(m);
        st = jamba_context_create(m, &cp, &ctx, &err);
    }
    if (st == JAMBA_OK) {
        fprintf(stderr, "jamba follow: node %lld of %lld joined; following node 0\n", (long long)dev.node_rank,
                (long long)dev.nodes);
        st = jamba_context_follow(ctx, &err);
    }
    jamba_context_free(ctx);
    jamba_model_free(m);
    return st == JAMBA_OK ? CLI_EXIT_OK : cli_fail(&err);
}
