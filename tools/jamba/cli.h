/*
 * cli.h — shared pieces of the `jamba` command-line program: subcommand entry points, argument parsing
 * and number formatting. Subcommands return the process exit status: 0 success, 1 failure, 2 usage, 130
 * stopped by Ctrl-C (SIGINT).
 */
#ifndef JAMBA_CLI_H
#define JAMBA_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "jamba.h"

#define CLI_EXIT_OK 0
#define CLI_EXIT_FAIL 1
#define CLI_EXIT_USAGE 2
#define CLI_EXIT_INTERRUPTED 130

int cmd_inspect(int argc, char **argv);
int cmd_devices(int argc, char **argv);
int cmd_score(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_follow(int argc, char **argv);

/* Print "jamba: error: <message>" as one line on stderr and return CLI_EXIT_FAIL. */
int cli_fail(const jamba_error *err);

/* Flush stdout: rc, or CLI_EXIT_FAIL after "jamba: error: cannot write the output: ..." when writing failed. */
int cli_finish_output(int rc);

/* The model's load-time warnings, one "jamba: note:" line each on stderr. */
void cli_print_model_notes(const jamba_model *m);
/* Print "jamba <cmd>: <message>" and a hint to --help on stderr; return CLI_EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Declarative options: a flag sets a bool, a string stores argv's pointer, a count is parsed with
 * cli_parse_count within [min, max]. Every option is accepted as "--name value" and "--name=value"; the
 * short flags -m -p -n -c -t -s stand for --model --prompt --max-tokens --ctx --threads --seed in the
 * commands that have those options. */
typedef enum cli_option_kind { CLI_FLAG, CLI_STRING, CLI_COUNT, CLI_FLOAT, CLI_STRINGS } cli_option_kind;
typedef struct cli_option {
    const char *name;     /* "--ctx" */
    cli_option_kind kind;
    void *dst;            /* bool *, const char **, int64_t *, double * or cli_strings * */
    int64_t min, max;     /* CLI_COUNT and CLI_FLOAT bounds */
} cli_option;

/* A repeatable string option. */
#define CLI_MAX_REPEAT 16
typedef struct cli_strings {
    const char *v[CLI_MAX_REPEAT];
    int n;
} cli_strings;

/* Parse argv[1..] against `opts`. Returns 0 when parsed, -1 after printing help for --help/-h, or
 * CLI_EXIT_USAGE after printing the problem. */
int cli_parse(const char *cmd, int argc, char **argv, const cli_option *opts, size_t n_opts, void (*help)(void));

/* Where and how a command runs the model: --device cpu|cuda, --gpu N, --gpu-dtype bf16|f32, --kv-dtype,
 * --activations f32|int8|bf16; and
 * how it is loaded (every command that loads weights): the weight formats --experts, --mlp, --mixers,
 * --lm-head (each int8|stored) and --weights (all four at once; a group's own flag wins over it, wherever
 * either stands), and --check-finite (scan every weight for NaN/Inf). */
typedef struct cli_device_args {
    const char *device, *gpu_dtype, *kv_dtype, *activations;
    const char *experts, *mlp, *mixers, *lm_head, *weights; /* the weight formats as given; NULL when not */
    int64_t gpu;
    int64_t gpus; /* --gpus: 0 when not given */
    int64_t nodes, node_rank; /* --nodes, --node-rank: 0 when not given */
    const char *nccl_id_file; /* --nccl-id-file */
    bool check_finite;
} cli_device_args;

/* The load options alone (for a command that loads a model but runs no context: quantize). */
#define CLI_LOAD_OPTIONS(d)                                                                                    \
    {"--experts", CLI_STRING, &(d).experts, 0, 0}, {"--mlp", CLI_STRING, &(d).mlp, 0, 0},                     \
        {"--mixers", CLI_STRING, &(d).mixers, 0, 0}, {"--lm-head", CLI_STRING, &(d).lm_head, 0, 0},          \
        {"--weights", CLI_STRING, &(d).weights, 0, 0}, {"--check-finite", CLI_FLAG, &(d).check_finite, 0, 0}

#define CLI_DEVICE_OPTIONS(d)                                                                                  \
    {"--device", CLI_STRING, &(d).device, 0, 0}, {"--gpu", CLI_COUNT, &(d).gpu, 0, 1 << 20},                 \
        {"--gpu-dtype", CLI_STRING, &(d).gpu_dtype, 0, 0}, {"--kv-dtype", CLI_STRING, &(d).kv_dtype, 0, 0},  \
        {"--gpus", CLI_COUNT, &(d).gpus, 1, JAMBA_MAX_GPUS}, {"--nodes", CLI_COUNT, &(d).nodes, 1, JAMBA_MAX_GPUS},   \
        {"--node-rank", CLI_COUNT, &(d).node_rank, 0, JAMBA_MAX_GPUS - 1},                                    \
        {"--nccl-id-file", CLI_STRING, &(d).nccl_id_file, 0, 0},                                              \
        {"--activations", CLI_STRING, &(d).activations, 0, 0}, CLI_LOAD_OPTIONS(d)

#define CLI_CHECK_FINITE_HELP                                                                                  \
    "  --check-finite        scan every weight for NaN/Inf while loading and refuse the model naming the\n"   \
    "                        tensor (reads all weights; norms, scales, routers and biases are always checked)\n"

/* The weight-format options (CLI_LOAD_OPTIONS) as --help lists them. */
#define CLI_FORMATS_HELP                                                                                       \
    "  --experts int8        hold the MoE experts as int8 (weight-only, per-row scales; quantized while\n"  \
    "                        loading unless the checkpoint already is); default: as stored\n"               \
    "  --mlp int8            the same for the dense MLPs\n"                                                  \
    "  --mixers int8         the same for the Mamba and attention projections (CPU only)\n"                 \
    "  --lm-head int8        the same for the LM head (tied: the embedding it shares; CPU only)\n"          \
    "  --weights int8        all four groups above int8 (every projection matrix); a group's own flag\n"    \
    "                        overrides it (--weights int8 --lm-head stored). Each also takes 'stored'\n"

#define CLI_DEVICE_HELP                                                                                        \
    "  --device cpu|cuda     where the model runs (default cpu)\n"                                          \
    "  --gpu N               the CUDA device with --device cuda (default 0)\n"                              \
    "  --gpus N              split the model over N GPUs from --gpu on (NCCL: tensor and expert\n"      \
    "                        parallelism, docs/multi-gpu.md); default 1\n"                                 \
    "  --nodes N --node-rank R  the --gpus GPUs over N nodes, one process each (never run yet); node 0 runs\n" \
    "                        this command, the others `jamba follow` with the same options\n"                \
    "  --nccl-id-file PATH   several nodes: where node 0 writes the NCCL id and the others read it (a\n"      \
    "                        filesystem all see); without it node 0 prints JAMBA_NCCL_ID=<hex> for the others\n" \
    "  --gpu-dtype bf16|f32  CUDA precision: bf16 (default), or f32 to match the CPU path\n"                \
    CLI_FORMATS_HELP                                                                                           \
    "  --activations int8    CPU: int8 weights multiply int8 activations (one scale per token, integer dot\n" \
    "                        products, VNNI where present): faster, less exact; default f32 (exact)\n"       \
    "  --activations bf16    CPU: bf16 weights multiply activations rounded to bf16 (pairs of products,\n"   \
    "                        vdpbf16ps where present, as llama.cpp's BF16): faster prefill, less exact\n"    \
    "  --kv-dtype fp8        CUDA: an fp8 (e4m3) KV cache with per-token, per-head scales (about half the\n"\
    "                        bytes of bf16); default: the --gpu-dtype\n"                                     \
    CLI_CHECK_FINITE_HELP

/* Fill the device fields of `p` from the arguments; CLI_EXIT_USAGE (after saying why) on a bad value. Several
 * nodes: node 0 without --nccl-id-file or JAMBA_NCCL_ID makes the NCCL id here and prints JAMBA_NCCL_ID=<hex>
 * on stderr; another node is refused unless cmd is "follow". */
int cli_device_params(const char *cmd, const cli_device_args *d, jamba_context_params *p);
/* Copy where a context runs on GPUs (n_gpus and the several-node fields) and the CPU's activation type
 * from the parsed `from` into `to`. */
void cli_gpu_placement(const jamba_context_params *from, jamba_context_params *to);
/* Fill the load parameters of `p` from the arguments: the weight formats (--weights, then --experts, --mlp,
 * --mixers, --lm-head over it; CLI_EXIT_USAGE on a bad value) and check_finite, turned on by --check-finite
 * (never turned off). */
int cli_model_params(const char *cmd, const cli_device_args *d, jamba_model_params *p);

/* The whole of a file ("-" = stdin) in a new NUL-terminated buffer (free it); NULL with errno on failure. */
char *cli_read_file(const char *path, size_t *len);

/* Parse a count such as 4096, 256k or 1M (k = 1024, M = 1048576) within [min, max]. */
bool cli_parse_count(const char *s, int64_t min, int64_t max, int64_t *out);

/* 51570323328 -> "51,570,323,328". Returns buf. */
const char *fmt_commas(uint64_t v, char *buf, size_t size);
/* 4294967296 -> "4.00 GiB". Returns buf. */
const char *fmt_bytes(uint64_t v, char *buf, size_t size);

#endif /* JAMBA_CLI_H */
