/*
 * main.c — the `jamba` command: dispatch to subcommands.
 */
#include "tools/jamba/cli.h"

#include <stdio.h>
#include <string.h>

static void print_help(FILE *out) {
    fprintf(out,
            "usage: jamba <command> [options]\n"
            "\n"
            "Runtime for AI21 Jamba models (hybrid Mamba / attention / mixture-of-experts).\n"
            "\n"
            "commands:\n"
            "  generate  continue a prompt with a model (streams text; the bundled demo model by default)\n"
            "  chat      talk with a chat model in the Jamba-1.5+ chat format\n"
            "  serve     an OpenAI-compatible HTTP server (completions, chat, streaming; continuous batching)\n"
            "  inspect   show a model folder's config, layer map, parameters, tensors and memory\n"
            "  score     run token ids through a model: mean NLL, perplexity, per-position log-probs\n"
            "  tokenize  text -> token ids with a model's tokenizer\n"
            "  detokenize  token ids -> text\n"
            "  quantize  write a copy of a model with int8 experts (and optionally int8 dense MLPs)\n"
            "  devices   show the CUDA / cuBLAS / NCCL versions of this build and the GPUs present\n"
            "  follow    another node's GPUs for a model split over several nodes (node 0 runs the command)\n"
            "\n"
            "  jamba <command> --help   options of one command\n"
            "  jamba --version          print the version\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        print_help(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        print_help(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("jamba %s\n", jamba_version());
        return CLI_EXIT_OK;
    }
    if (strcmp(cmd, "inspect") == 0)
        return cmd_inspect(argc - 1, argv + 1);
    if (strcmp(cmd, "generate") == 0)
        return cmd_generate(argc - 1, argv + 1);
    if (strcmp(cmd, "chat") == 0)
        return cmd_chat(argc - 1, argv + 1);
    if (strcmp(cmd, "serve") == 0)
        return cmd_serve(argc - 1, argv + 1);
    if (strcmp(cmd, "tokenize") == 0)
        return cmd_tokenize(argc - 1, argv + 1);
    if (strcmp(cmd, "detokenize") == 0)
        return cmd_detokenize(argc - 1, argv + 1);
    if (strcmp(cmd, "score") == 0)
        return cmd_score(argc - 1, argv + 1);
    if (strcmp(cmd, "quantize") == 0)
        return cmd_quantize(argc - 1, argv + 1);
    if (strcmp(cmd, "follow") == 0)
        return cmd_follow(argc - 1, argv + 1);
    if (strcmp(cmd, "devices") == 0)
        return cmd_devices(argc - 1, argv + 1);
    fprintf(stderr, "jamba: unknown command '%s' (see 'jamba --help')\n", cmd);
    return CLI_EXIT_USAGE;
}
