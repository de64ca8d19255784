/*
 * options.c — the subcommands' declarative option parser: "--name value", "--name=value", and the common
 * short flags (-m -p -n -c -t -s) for the commands that have their long options.
 */
#include "tools/jamba/cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The short flags every command understands when it has the long option they stand for. */
static const char *const short_flags[][2] = {
    {"-m", "--model"}, {"-p", "--prompt"}, {"-n", "--max-tokens"},
    {"-c", "--ctx"},   {"-t", "--threads"}, {"-s", "--seed"},
};

/* The option named by the first `len` bytes of `name` (a long name, or a short flag's long name). */
static const cli_option *find_option(const cli_option *opts, size_t n_opts, const char *name, size_t len) {
    for (size_t i = 0; i < sizeof short_flags / sizeof short_flags[0]; i++)
        if (strlen(short_flags[i][0]) == len && strncmp(name, short_flags[i][0], len) == 0) {
            name = short_flags[i][1];
            len = strlen(name);
            break;
        }
    for (size_t k = 0; k < n_opts; k++)
        if (strlen(opts[k].name) == len && strncmp(name, opts[k].name, len) == 0)
            return &opts[k];
    return NULL;
}

/* Store `val` for option `o`, written `flag` on the command line. */
static int set_value(const char *cmd, const cli_option *o, const char *flag, const char *val) {
    if (o->kind == CLI_STRING) {
        *(const char **)o->dst = val;
    } else if (o->kind == CLI_STRINGS) {
        cli_strings *list = o->dst;
        if (list->n == CLI_MAX_REPEAT)
            return cli_usage_error(cmd, "%s given more than %d times", flag, CLI_MAX_REPEAT);
        list->v[list->n++] = val;
    } else if (o->kind == CLI_FLOAT) {
        char *end;
        double d = strtod(val, &end);
        if (end == val || *end != '\0' || !isfinite(d) || d < (double)o->min || d > (double)o->max)
            return cli_usage_error(cmd, "%s '%s' is not a number in [%lld, %lld]", flag, val, (long long)o->min,
                                   (long long)o->max);
        *(double *)o->dst = d;
    } else if (!cli_parse_count(val, o->min, o->max, (int64_t *)o->dst)) {
        return cli_usage_error(cmd, "%s '%s' is not a count in [%lld, %lld]", flag, val, (long long)o->min,
                               (long long)o->max);
    }
    return 0;
}

int cli_parse(const char *cmd, int argc, char **argv, const cli_option *opts, size_t n_opts, void (*help)(void)) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            help();
            return -1;
        }
        /* "--name=value" carries its value; a short flag or "--name" takes the next argument */
        const char *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;
        size_t name_len = eq ? (size_t)(eq - a) : strlen(a);
        const cli_option *o = find_option(opts, n_opts, a, name_len);
        if (o == NULL)
            return cli_usage_error(cmd, "unknown option '%.*s'", (int)name_len, a);
        if (o->kind == CLI_FLAG) {
            if (eq)
                return cli_usage_error(cmd, "%.*s takes no value", (int)name_len, a);
            *(bool *)o->dst = true;
            continue;
        }
        if (!eq && i + 1 >= argc)
            return cli_usage_error(cmd, "%s needs a value", a);
        int rc = set_value(cmd, o, o->name, eq ? eq + 1 : argv[++i]);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* --nodes, --node-rank, --nccl-id-file (docs/multi-gpu.md, "Launching"). */
static int cli_node_params(const char *cmd, const cli_device_args *d, jamba_context_params *p) {
    static char made_id[JAMBA_NCCL_ID_HEX_SIZE]; /* node 0's id, alive with the process (NCCL's bootstrap) */
    if (d->nodes < 2) {
        if (d->node_rank != 0 || d->nccl_id_file)
            return cli_usage_error(cmd, "--node-rank and --nccl-id-file need --nodes N (N >= 2)");
        return 0;
    }
    if (p->device != JAMBA_DEVICE_CUDA || d->gpus < d->nodes || d->gpus % d->nodes != 0)
        return cli_usage_error(cmd, "--nodes %lld needs --device cuda and --gpus a multiple of it (all GPUs, the "
                               "same number on every node)", (long long)d->nodes);
    if (d->node_rank >= d->nodes)
        return cli_usage_error(cmd, "--node-rank %lld: nodes are 0 .. %lld", (long long)d->node_rank,
                               (long long)d->nodes - 1);
    if (d->node_rank > 0 && strcmp(cmd, "follow") != 0)
        return cli_usage_error(cmd, "--node-rank %lld: node 0 runs %s; the other nodes run `jamba follow` with the "
                               "same model and device options", (long long)d->node_rank, cmd);
    p->n_nodes = (int32_t)d->nodes;
    p->node_rank = (int32_t)d->node_rank;
    p->nccl_id_file = d->nccl_id_file;
    const char *env = getenv("JAMBA_NCCL_ID");
    if (d->node_rank == 0 && d->nccl_id_file == NULL && (env == NULL || env[0] == '\0')) {
        jamba_error err = {0};
        if (jamba_nccl_unique_id(made_id, sizeof made_id, &err) != JAMBA_OK)
            return cli_fail(&err);
        fprintf(stderr, "jamba %s: node 0 of %lld; start the others with this in their environment:\n"
                "JAMBA_NCCL_ID=%s\n", cmd, (long long)d->nodes, made_id);
        p->nccl_id = made_id;
    }
    return 0;
}

void cli_gpu_placement(const jamba_context_params *from, jamba_context_params *to) {
    to->n_gpus = from->n_gpus;
    to->n_nodes = from->n_nodes;
    to->node_rank = from->node_rank;
    to->nccl_id_file = from->nccl_id_file;
    to->nccl_id = from->nccl_id;
    to->cpu_activations = from->cpu_activations;
}

int cli_device_params(const char *cmd, const cli_device_args *d, jamba_context_params *p) {
    if (d->device == NULL || strcmp(d->device, "cpu") == 0)
        p->device = JAMBA_DEVICE_CPU;
    else if (strcmp(d->device, "cuda") == 0 || strcmp(d->device, "gpu") == 0)
        p->device = JAMBA_DEVICE_CUDA;
    else
        return cli_usage_error(cmd, "--device %s: expected cpu or cuda", d->device);
    if (d->gpu_dtype == NULL || strcmp(d->gpu_dtype, "bf16") == 0)
        p->gpu_dtype = JAMBA_DTYPE_BF16;
    else if (strcmp(d->gpu_dtype, "f32") == 0 || strcmp(d->gpu_dtype, "fp32") == 0)
        p->gpu_dtype = JAMBA_DTYPE_F32;
    else
        return cli_usage_error(cmd, "--gpu-dtype %s: expected bf16 or f32", d->gpu_dtype);
    if ((d->gpu != 0 || d->gpu_dtype || d->gpus != 0) && p->device != JAMBA_DEVICE_CUDA)
        return cli_usage_error(cmd, "--gpu, --gpus and --gpu-dtype need --device cuda");
    p->gpu_index = (int32_t)d->gpu;
    if (d->gpus != 0)
        p->n_gpus = (int32_t)d->gpus;
    int rc = cli_node_params(cmd, d, p);
    if (rc != 0)
        return rc;
    if (d->kv_dtype == NULL)
        p->kv_dtype = JAMBA_DTYPE_UNKNOWN;
    else if (strcmp(d->kv_dtype, "fp8") == 0 || strcmp(d->kv_dtype, "f8_e4m3") == 0)
        p->kv_dtype = JAMBA_DTYPE_F8_E4M3;
    else if (strcmp(d->kv_dtype, "bf16") == 0 || strcmp(d->kv_dtype, "f32") == 0)
        p->kv_dtype = strcmp(d->kv_dtype, "bf16") == 0 ? JAMBA_DTYPE_BF16 : JAMBA_DTYPE_F32;
    else
        return cli_usage_error(cmd, "--kv-dtype %s: expected fp8, bf16 or f32", d->kv_dtype);
    if (d->activations == NULL || strcmp(d->activations, "f32") == 0)
        p->cpu_activations = JAMBA_DTYPE_F32;
    else if (strcmp(d->activations, "int8") == 0)
        p->cpu_activations = JAMBA_DTYPE_I8;
    else if (strcmp(d->activations, "bf16") == 0)
        p->cpu_activations = JAMBA_DTYPE_BF16;
    else
        return cli_usage_error(cmd, "--activations %s: expected int8, bf16 or f32", d->activations);
    if (p->cpu_activations != JAMBA_DTYPE_F32 && p->device != JAMBA_DEVICE_CPU)
        return cli_usage_error(cmd, "--activations %s is a CPU option (CUDA's activations are --gpu-dtype)",
                               d->activations);
    if (p->device == JAMBA_DEVICE_CPU && p->kv_dtype != JAMBA_DTYPE_UNKNOWN && p->kv_dtype != JAMBA_DTYPE_F32)
        return cli_usage_error(cmd, "--kv-dtype %s needs --device cuda (the CPU path keeps an f32 KV cache)",
                               d->kv_dtype);
    return 0;
}

/* `v` (NULL: not given, *out unchanged) as a weight format. */
static int parse_format(const char *cmd, const char *flag, const char *v, jamba_weight_format *out) {
    if (v == NULL)
        return 0;
    if (strcmp(v, "stored") == 0)
        *out = JAMBA_FORMAT_STORED;
    else if (strcmp(v, "int8") == 0)
        *out = JAMBA_FORMAT_INT8;
    else
        return cli_usage_error(cmd, "%s %s: expected int8 or stored", flag, v);
    return 0;
}

int cli_model_params(const char *cmd, const cli_device_args *d, jamba_model_params *p) {
    jamba_weight_format all = JAMBA_FORMAT_STORED;
    int rc = parse_format(cmd, "--weights", d->weights, &all);
    const struct {
        const char *flag, *value;
        jamba_weight_format *dst;
    } groups[] = {{"--experts", d->experts, &p->experts},
                  {"--mlp", d->mlp, &p->mlp},
                  {"--mixers", d->mixers, &p->mixers},
                  {"--lm-head", d->lm_head, &p->lm_head}};
    for (size_t i = 0; rc == 0 && i < sizeof groups / sizeof groups[0]; i++) {
        if (d->weights != NULL)
            *groups[i].dst = all;
        rc = parse_format(cmd, groups[i].flag, groups[i].value, groups[i].dst);
    }
    if (d->check_finite)
        p->check_finite = true;
    return rc;
}
