/*
 * cmd_quantize.c — `jamba quantize`: write a model folder whose experts (and optionally dense MLPs) are
 * int8 weight-only, so later loads need no requantization.
 */
#include "tools/jamba/cli.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static void help_quantize(void) {
    printf("usage: jamba quantize --model DIR --out DIR [--experts int8|stored] [--mlp int8|stored]\n"
           "                      [--threads N] [--force]\n"
           "\n"
           "Quantize a model's MoE experts (default) and optionally its dense MLPs to int8 weight-only (per output\n"
           "row, symmetric, fp32 scales: ExpertsInt8's scheme) and write a Hugging Face folder: model.safetensors\n"
           "with the int8 matrices and their \"<name>_scale\" tensors, config.json and the tokenizer files. Loading\n"
           "it gives exactly the weights of `--experts int8` on the original. Prints the folder and the size of the\n"
           "model.safetensors written. The folder appears whole or not at all: it is written beside --out as\n"
           "OUT.tmp.XXXXXX and renamed into place (removed on any failure).\n"
           "\n"
           "  -m, --model DIR    the model folder (float, FP8 or already int8)\n"
           "  --out DIR          where to write: a missing or empty folder (never the model's own folder)\n"
           "  --force            replace an existing --out folder whole\n"
           "  --experts FORMAT   int8 (default) or stored\n"
           "  --mlp FORMAT       int8 or stored (default)\n"
           "  -t, --threads N    quantization threads (default: all CPUs)\n");
}

/* "wrote DIR (model.safetensors, 3.10 MiB)": the size of what was written. */
static int report_output(const char *out) {
    char path[4096], bytes[32];
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "jamba: error: %s: cannot read what was written: %s\n", path, strerror(errno));
        return CLI_EXIT_FAIL;
    }
    printf("wrote %s (model.safetensors, %s)\n", out, fmt_bytes((uint64_t)st.st_size, bytes, sizeof bytes));
    return CLI_EXIT_OK;
}

int cmd_quantize(int argc, char **argv) {
    cli_device_args f = {.experts = "int8"};
    const char *model = NULL, *out = NULL;
    int64_t threads = 0;
    bool force = false;
    const cli_option opts[] = {
        {"--model", CLI_STRING, &model, 0, 0},      {"--out", CLI_STRING, &out, 0, 0},
        {"--experts", CLI_STRING, &f.experts, 0, 0}, {"--mlp", CLI_STRING, &f.mlp, 0, 0},
        {"--threads", CLI_COUNT, &threads, 1, 1024}, {"--force", CLI_FLAG, &force, 0, 0},
    };
    int rc = cli_parse("quantize", argc, argv, opts, sizeof opts / sizeof opts[0], help_quantize);
    if (rc != 0)
        return rc < 0 ? CLI_EXIT_OK : rc;
    if (model == NULL || out == NULL)
        return cli_usage_error("quantize", "--model DIR and --out DIR are required");
    jamba_model_params mp = jamba_model_default_params();
    if ((rc = cli_model_params("quantize", &f, &mp)) != 0)
        return rc;
    mp.n_threads = (int32_t)threads;
    jamba_error err = {0};
    jamba_model *m = NULL;
    if (jamba_model_load(model, &mp, &m, &err) != JAMBA_OK)
        return cli_fail(&err);
    cli_print_model_notes(m);
    if ((force ? jamba_model_save_replacing(m, out, &err) : jamba_model_save(m, out, &err)) != JAMBA_OK) {
        jamba_model_free(m);
        return cli_fail(&err);
    }
    jamba_model_free(m);
    return cli_finish_output(report_output(out));
}
