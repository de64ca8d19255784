/*
 * cmd_quantize.c — `jamba quantize`: write a model folder whose experts (and optionally dense MLPs, mixer
 * projections and LM head) are int8 weight-only, so later loads need no requantization.
 */
#include "tools/jamba/cli.h"


#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static void help_quantize(void) {
    printf("usage: jamba quantize --model DIR --out DIR [--experts int8|stored] [--mlp int8|stored]\n"
           "                      [--mixers int8|stored] [--lm-head int8|stored] [--weights int8|stored]\n"
           "                      [--threads N] [--force] [--check-finite]\n"
           "\n"
           "Quantize a model's MoE experts (default) and optionally its dense MLPs, Mamba/attention projections and\n"
           "LM head to int8 weight-only (per output row, symmetric, fp32 scales: ExpertsInt8's scheme) and write a\n"
           "Hugging Face folder: model.safetensors with the int8 matrices and their \"<name>_scale\" tensors,\n"
           "config.json (its quantization_config lists the int8 groups) and the tokenizer files. Loading it gives\n"
           "exactly the weights of the same options on the original (`--experts int8` for the default). Prints\n"
           "the folder and the size of the model.safetensors written. The folder appears whole or not at all:\n"
           "it is written beside --out as OUT.tmp.XXXXXX and renamed into place (removed on any failure). Ctrl-C\n"
           "(SIGINT) or SIGTERM while it is written stops the write and removes the temporary folder, leaving\n"
           "--out as it was; a second one ends the program at once.\n"
           "\n"
           "  -m, --model DIR    the model folder (float, FP8 or already int8)\n"
           "  --out DIR          where to write: a missing or empty folder (never the model's own folder)\n"
           "  --force            replace an existing --out folder whole\n"
           "  --experts FORMAT   int8 (default) or stored\n"
           "  --mlp FORMAT       int8 or stored (default)\n"
           "  --mixers FORMAT    the Mamba and attention projections: int8 or stored (default; int8 runs on the\n"
           "                     CPU backend only)\n"
           "  --lm-head FORMAT   the LM head (tied: the embedding it shares): int8 or stored (default; CPU only)\n"
           "  --weights FORMAT   all four groups at once (int8: every projection matrix); a group's own option\n"
           "                     overrides it\n"
           "  -t, --threads N    quantization threads (default: all CPUs)\n"
           "  --check-finite     scan every weight for NaN/Inf while loading and write nothing when one is found\n"
           "                     (norms, scales, routers and biases are always checked)\n"
           "\n"
           "Exit status: 0 written, 1 failure (one line on stderr; --out unchanged), 2 usage error, 128 + the\n"
           "signal's number (130 SIGINT, 143 SIGTERM) when stopped by a signal.\n");
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

/* ---- SIGINT / SIGTERM while the folder is written ------------------------------------------------ */

static volatile sig_atomic_t stop_signal; /* the signal that asked the write to stop, or 0 */

/* Record the signal: the save polls it (async-signal-safe: one store). SA_RESETHAND restores the default
 * action, so a second signal ends the program at once. */
static void on_stop_signal(int sig) { stop_signal = sig; }

/* The save's abort callback: stop once a signal came. */
static bool stop_requested(void *unused) {
    (void)unused;
    return stop_signal != 0;
}

/* Install on_stop_signal for SIGINT and SIGTERM (a signal ignored when the program started stays ignored);
 * the previous actions go to old[2] for restore_stop_signals. */
static void catch_stop_signals(struct sigaction old[2]) {
    static const int sigs[2] = {SIGINT, SIGTERM};
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND;
    for (int i = 0; i < 2; i++)
        if (sigaction(sigs[i], NULL, &old[i]) == 0 && old[i].sa_handler != SIG_IGN)
            sigaction(sigs[i], &sa, NULL);
}

static void restore_stop_signals(const struct sigaction old[2]) {
    sigaction(SIGINT, &old[0], NULL);
    sigaction(SIGTERM, &old[1], NULL);
}

/* Write the folder with SIGINT/SIGTERM turned into a clean stop. Before and after the write a signal keeps
 * its default action: loading writes nothing, so ending at once loses nothing. */
static int save(const jamba_model *m, const char *out, bool force) {
    jamba_error err = {0};
    struct sigaction old[2];
    catch_stop_signals(old);
    jamba_save_params sp = jamba_save_default_params();
    sp.replace = force;
    sp.abort_fn = stop_requested;
    jamba_status st = jamba_model_save_with(m, out, &sp, &err);
    restore_stop_signals(old);
    if (stop_signal != 0) {
        fprintf(stderr, "jamba: interrupted by signal %d: %s\n", (int)stop_signal,
                st == JAMBA_OK ? "the folder had already been written whole" : err.message);
        return 128 + stop_signal;
    }
    return st == JAMBA_OK ? report_output(out) : cli_fail(&err);
}

int cmd_quantize(int argc, char **argv) {
    cli_device_args f = {0};
    const char *model = NULL, *out = NULL;
    int64_t threads = 0;
    bool force = false;
    const cli_option opts[] = {
        {"--model", CLI_STRING, &model, 0, 0},       {"--out", CLI_STRING, &out, 0, 0},
        {"--threads", CLI_COUNT, &threads, 1, 1024}, {"--force", CLI_FLAG, &force, 0, 0},
        CLI_LOAD_OPTIONS(f),
    };
    int rc = cli_parse("quantize", argc, argv, opts, sizeof opts / sizeof opts[0], help_quantize);
    if (rc != 0)
        return rc < 0 ? CLI_EXIT_OK : rc;
    if (model == NULL || out == NULL)
        return cli_usage_error("quantize", "--model DIR and --out DIR are required");
    if (f.experts == NULL && f.weights == NULL)
        f.experts = "int8"; /* what quantizing means without other options */
    jamba_model_params mp = jamba_model_default_params();
    if ((rc = cli_model_params("quantize", &f, &mp)) != 0)
        return rc;
    mp.n_threads = (int32_t)threads;
    jamba_error err = {0};
    jamba_model *m = NULL;
    if (jamba_model_load(model, &mp, &m, &err) != JAMBA_OK)
        return cli_fail(&err);
    cli_print_model_notes(m);
    rc = save(m, out, force);
    jamba_model_free(m);
    return cli_finish_output(rc);
}
