/*
 * cmd_inspect.c — `jamba inspect`: what a model folder holds and what it needs.
 *
 * Prints the config summary, a one-line layer map, total and active parameters, stored bytes per dtype
 * and memory for N tokens of context (weights, KV cache, Mamba state), as text or JSON. A folder with
 * only config.json is inspected as a plan (weights assumed in the config's torch_dtype, else BF16). With
 * --device cuda it also shows the device plan a context would follow (jamba_context_plan_memory); with
 * --gpus N, the plan of each of N GPUs the model would be split over (docs/multi-gpu.md).
 */
#include "tools/jamba/cli.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

typedef struct inspect_opts {
    const char *model;
    int64_t n_ctx;       /* 0: the config's max_position_embeddings */
    int64_t n_seq;
    jamba_dtype kv_dtype;
    cli_device_args dev;
    int64_t n_batch;
    double gpu_memory_gb;
    int64_t n_gpus;                  /* --gpus: 0 when not given */
    bool plan;                       /* --device cuda: show the device plan */
    jamba_context_params plan_params;
    bool json;
    bool tensors;
    bool allow_unexpected;
} inspect_opts;

static void print_help(void) {
    printf("usage: jamba inspect --model DIR [--ctx N] [--seqs N] [--kv-dtype bf16|f16|f32|fp8] [--json]\n"
           "                     [--tensors] [--check-finite] [--allow-unexpected]\n"
           "                     [--experts int8] [--mlp int8] [--mixers int8] [--lm-head int8] [--weights int8]\n"
           "                     [--device cuda [--gpu N] [--gpu-dtype bf16|f32]\n"
           "                      [--batch N] [--gpu-memory GB] [--gpus N]]\n"
           "\n"
           "Load a Hugging Face Jamba folder (config.json plus model.safetensors or a sharded\n"
           "model.safetensors.index.json), validate it, and print: the config summary, a layer map, total and\n"
           "active parameter counts, stored bytes per dtype, and memory for N tokens of context. A folder with\n"
           "only config.json is shown as a plan (weights in the config's torch_dtype, else bf16).\n"
           "\n"
           "  --model DIR          model folder (required)\n"
           "  --ctx N              context length per sequence for the memory figures; accepts k/M suffixes\n"
           "                       (256k = 262144); default: the config's max_position_embeddings\n"
           "  --seqs N             sequences held at once (default 1)\n"
           "  --kv-dtype T         KV cache element type: bf16 (default), f16, f32, or fp8 (e4m3 + scales)\n"
           "  --json               print one JSON object instead of text\n"
           "  --tensors            also list every tensor: name, dtype, shape, bytes, file\n"
           "  --check-finite       scan every weight for NaN/Inf (reads all weights)\n"
           "  --allow-unexpected   skip tensors the config does not use instead of failing\n"
           "  --experts int8       hold the experts as int8: a folder with weights is quantized to check it, and\n"
           "                       the weights' bytes are the held ones; the device plan counts int8 experts\n"
           "  --mlp int8           the same for the dense MLPs\n"
           "  --mixers int8        the same for the Mamba and attention projections (CPU only: the device plan\n"
           "                       refuses it)\n"
           "  --lm-head int8       the same for the LM head (CPU only)\n"
           "  --weights int8       all four; a group's own option overrides it\n"
           "\n"
           "The device plan (--device cuda): the memory a CUDA context would take, computed as the context\n"
           "allocates it: weights as the device holds them, KV cache, Mamba state, every workspace, and the\n"
           "prefill chunk chosen to fit; when it does not fit, what would.\n"
           "  --device cuda        show the device plan\n"
           "  --gpu N              the device whose free memory is the budget (default 0)\n"
           "  --gpu-dtype bf16|f32 the device precision (default bf16)\n"
           "  --batch N            the prefill chunk (default: the largest of 4096 ... 16 that fits)\n"
           "  --gpu-memory GB      the budget in GB (1e9 bytes); default: the device's free memory, or 80 GB\n"
           "                       when no device is present\n"
           "  --gpus N             plan the model split over N GPUs (tensor parallel by KV-head groups and Mamba\n"
           "                       channels, experts whole per GPU; docs/multi-gpu.md): one row per GPU, each\n"
           "                       against the budget. A plan only: no multi-GPU backend is built yet\n"
           "\n"
           "Layer map letters: mixer M = Mamba, A = attention; FFN d = dense MLP, E = mixture of experts.\n"
           "Exit status: 0 ok, 1 the model failed to load (one line on stderr says why), 2 usage error.\n");
}

static int parse_args(int argc, char **argv, inspect_opts *o) {
    *o = (inspect_opts){.n_seq = 1, .kv_dtype = JAMBA_DTYPE_BF16};
    const cli_option opts[] = {
        {"--model", CLI_STRING, &o->model, 0, 0},
        {"--ctx", CLI_COUNT, &o->n_ctx, 1, INT64_C(1) << 40},
        {"--seqs", CLI_COUNT, &o->n_seq, 1, 1 << 20},
        {"--json", CLI_FLAG, &o->json, 0, 0},
        {"--tensors", CLI_FLAG, &o->tensors, 0, 0},
        {"--allow-unexpected", CLI_FLAG, &o->allow_unexpected, 0, 0},
        {"--batch", CLI_COUNT, &o->n_batch, 1, 1 << 24},
        {"--gpu-memory", CLI_FLOAT, &o->gpu_memory_gb, 0, 1e6},
        {"--gpus", CLI_COUNT, &o->n_gpus, 1, JAMBA_MAX_GPUS},
        CLI_DEVICE_OPTIONS(o->dev), /* --check-finite and the weight formats among them */
    };
    int rc = cli_parse("inspect", argc, argv, opts, sizeof opts / sizeof opts[0], print_help);
    if (rc != 0)
        return rc;
    const char *kv = o->dev.kv_dtype ? o->dev.kv_dtype : "bf16";
    o->kv_dtype = strcmp(kv, "bf16") == 0  ? JAMBA_DTYPE_BF16
                  : strcmp(kv, "f16") == 0 ? JAMBA_DTYPE_F16
                  : strcmp(kv, "f32") == 0 ? JAMBA_DTYPE_F32
                  : strcmp(kv, "fp8") == 0 ? JAMBA_DTYPE_F8_E4M3
                                           : JAMBA_DTYPE_UNKNOWN;
    if (o->kv_dtype == JAMBA_DTYPE_UNKNOWN)
        return cli_usage_error("inspect", "--kv-dtype '%s' is not bf16, f16, f32 or fp8", kv);
    if (o->model == NULL)
        return cli_usage_error("inspect", "--model DIR is required");
    jamba_context_params *cp = &o->plan_params;
    *cp = jamba_context_default_params();
    cli_device_args dev = o->dev;
    dev.kv_dtype = o->kv_dtype == JAMBA_DTYPE_F8_E4M3 && o->dev.device ? "fp8" : NULL;
    if ((rc = cli_device_params("inspect", &dev, cp)) != 0)
        return rc;
    o->plan = cp->device == JAMBA_DEVICE_CUDA;
    if (o->n_gpus > 0 && !o->plan)
        return cli_usage_error("inspect", "--gpus needs --device cuda");
    cp->n_gpus = (int32_t)o->n_gpus;
    if (o->plan) {
        cp->n_seq_max = (int32_t)o->n_seq;
        cp->n_batch = o->n_batch;
        cp->gpu_memory = (uint64_t)(o->gpu_memory_gb * 1e9);
    }
    return 0;
}

/* ---- gathered facts --------------------------------------------------------------------------- */

typedef struct dtype_total {
    uint64_t bytes;
    int64_t tensors;
} dtype_total;

typedef struct report {
    const jamba_model *model;
    const jamba_config *cfg;
    jamba_param_counts params;
    jamba_memory_params mem_params;
    jamba_memory_estimate mem;
    dtype_total by_dtype[JAMBA_DTYPE_COUNT_];
    char layer_map[1024 * 3 + 1]; /* "Md ME ..." three characters per layer */
    bool has_plan;
    jamba_context_plan plan;
    jamba_context_params plan_params;
} report;

static jamba_status gather(const jamba_model *m, const inspect_opts *o, report *r, jamba_error *err) {
    memset(r, 0, sizeof *r);
    r->model = m;
    r->cfg = jamba_model_config(m);
    jamba_status st = jamba_model_param_counts(m, &r->params, err);
    if (st != JAMBA_OK)
        return st;
    r->mem_params = jamba_memory_default_params(m);
    if (o->n_ctx > 0)
        r->mem_params.n_ctx = o->n_ctx;
    r->mem_params.n_seq = o->n_seq;
    r->mem_params.kv_dtype = o->kv_dtype;
    if ((st = jamba_model_memory(m, &r->mem_params, &r->mem, err)) != JAMBA_OK)
        return st;
    if (o->plan) {
        jamba_context_params *cp = &r->plan_params;
        *cp = o->plan_params;
        cp->n_ctx = r->mem_params.n_ctx;
        if ((st = jamba_context_plan_memory(m, cp, &r->plan, err)) != JAMBA_OK)
            return st;
        r->has_plan = true;
    }
    size_t pos = 0;
    for (int64_t i = 0; i < r->cfg->num_hidden_layers; i++) {
        jamba_layer_info li;
        if ((st = jamba_model_layer(m, i, &li, err)) != JAMBA_OK)
            return st;
        r->layer_map[pos++] = li.mixer == JAMBA_MIXER_ATTENTION ? 'A' : 'M';
        r->layer_map[pos++] = li.ffn == JAMBA_FFN_MOE ? 'E' : 'd';
        r->layer_map[pos++] = ' ';
    }
    r->layer_map[pos ? pos - 1 : 0] = '\0';
    for (int64_t i = 0; i < jamba_model_n_tensors(m); i++) {
        jamba_tensor_info t;
        if ((st = jamba_model_tensor(m, i, &t, err)) != JAMBA_OK)
            return st;
        r->by_dtype[t.dtype].bytes += t.n_bytes;
        r->by_dtype[t.dtype].tensors++;
    }
    return JAMBA_OK;
}

static const char *dtype_lower(jamba_dtype d) {
    return d == JAMBA_DTYPE_BF16  ? "bf16"
           : d == JAMBA_DTYPE_F16 ? "f16"
           : d == JAMBA_DTYPE_F32 ? "f32"
           : d == JAMBA_DTYPE_F8_E4M3 ? "fp8 e4m3 + scales"
                                      : "?";
}

/* ---- text ------------------------------------------------------------------------------------- */

static void print_text_config(const report *r) {
    const jamba_config *c = r->cfg;
    printf("model        %s\n", jamba_model_path(r->model));
    printf("architecture jamba, %lld layers, hidden %lld, intermediate %lld, vocab %lld\n",
           (long long)c->num_hidden_layers, (long long)c->hidden_size, (long long)c->intermediate_size,
           (long long)c->vocab_size);
    printf("attention    %lld layers (every %lld from %lld): %lld heads, %lld KV heads, head_dim %lld, no RoPE\n",
           (long long)c->n_attention_layers, (long long)c->attn_layer_period, (long long)c->attn_layer_offset,
           (long long)c->num_attention_heads, (long long)c->num_key_value_heads, (long long)c->head_dim);
    printf("mamba        %lld layers: d_inner %lld (expand %lld), d_state %lld, d_conv %lld, dt_rank %lld%s%s%s\n",
           (long long)c->n_mamba_layers, (long long)c->mamba_d_inner, (long long)c->mamba_expand,
           (long long)c->mamba_d_state, (long long)c->mamba_d_conv, (long long)c->mamba_dt_rank,
           c->mamba_conv_bias ? ", conv bias" : "", c->mamba_proj_bias ? ", proj bias" : "",
           c->mamba_inner_layernorms ? ", inner norms" : ", no inner norms");
    if (c->n_moe_layers > 0)
        printf("ffn          %lld MoE layers (every %lld from %lld): %lld experts, top-%lld; %lld dense MLP layers\n",
               (long long)c->n_moe_layers, (long long)c->expert_layer_period, (long long)c->expert_layer_offset,
               (long long)c->num_experts, (long long)c->num_experts_per_tok, (long long)c->n_dense_layers);
    else
        printf("ffn          %lld dense MLP layers (no mixture of experts)\n", (long long)c->n_dense_layers);
    printf("layer map    %s\n", r->layer_map);
    printf("             (M mamba, A attention; d dense MLP, E mixture of experts)\n");
    printf("tokens       bos %lld, pad %lld, eos", (long long)c->bos_token_id, (long long)c->pad_token_id);
    for (int64_t i = 0; i < c->n_eos_token_ids; i++)
        printf(" %lld", (long long)c->eos_token_ids[i]);
    printf("%s; rms_norm_eps %g; lm_head %s\n", c->n_eos_token_ids ? "" : " none", c->rms_norm_eps,
           c->tie_word_embeddings ? "tied to the embedding" : "untied");
}

static void print_text_params(const report *r) {
    char a[32], b[32];
    const jamba_param_counts *p = &r->params;
    printf("parameters   %s total, %s active per token\n", fmt_commas(p->total, a, sizeof a),
           fmt_commas(p->active, b, sizeof b));
    const struct {
        const char *name;
        uint64_t v;
    } parts[] = {{"embedding", p->embedding}, {"lm_head", p->lm_head},     {"attention", p->attention},
                 {"mamba", p->mamba},         {"dense MLP", p->dense_mlp}, {"experts", p->experts},
                 {"routers", p->routers},     {"norms", p->norms}};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        printf("  %-11s %20s\n", parts[i].name, fmt_commas(parts[i].v, a, sizeof a));
}

static void print_text_weights(const report *r) {
    char a[32], b[32], c[32];
    if (!jamba_model_has_weights(r->model)) {
        printf("weights      none loaded (config only): planned as %s\n",
               jamba_dtype_name(r->mem_params.weight_dtype));
        return;
    }
    printf("weights      %s tensors\n", fmt_commas((uint64_t)jamba_model_n_tensors(r->model), a, sizeof a));
    for (int d = 1; d < JAMBA_DTYPE_COUNT_; d++)
        if (r->by_dtype[d].tensors > 0)
            printf("  %-11s %20s bytes  %12s  in %s tensors\n", jamba_dtype_name((jamba_dtype)d),
                   fmt_commas(r->by_dtype[d].bytes, a, sizeof a), fmt_bytes(r->by_dtype[d].bytes, b, sizeof b),
                   fmt_commas((uint64_t)r->by_dtype[d].tensors, c, sizeof c));
}

static void print_text_memory(const report *r) {
    char a[32], b[32], c[32];
    const jamba_memory_estimate *m = &r->mem;
    printf("memory       %s tokens x %lld sequence%s (KV %s, conv state %s, SSM state f32)\n",
           fmt_commas((uint64_t)r->mem_params.n_ctx, a, sizeof a), (long long)r->mem_params.n_seq,
           r->mem_params.n_seq == 1 ? "" : "s", dtype_lower(r->mem_params.kv_dtype),
           dtype_lower(r->mem_params.conv_dtype));
    printf("  %-11s %20s bytes  %12s\n", "weights", fmt_commas(m->weight_bytes, a, sizeof a),
           fmt_bytes(m->weight_bytes, b, sizeof b));
    printf("  %-11s %20s bytes  %12s  (%s bytes per token per sequence)\n", "KV cache", fmt_commas(m->kv_bytes, a, sizeof a),
           fmt_bytes(m->kv_bytes, b, sizeof b), fmt_commas(m->kv_bytes_per_token, c, sizeof c));
    printf("  %-11s %20s bytes  %12s  (%s bytes per sequence)\n", "Mamba state",
           fmt_commas(m->mamba_state_bytes, a, sizeof a), fmt_bytes(m->mamba_state_bytes, b, sizeof b),
           fmt_commas(m->mamba_state_bytes_per_seq, c, sizeof c));
    printf("  %-11s %20s bytes  %12s  (activations and workspaces not included)\n", "total",
           fmt_commas(m->total_bytes, a, sizeof a), fmt_bytes(m->total_bytes, b, sizeof b));
}

static const char *budget_source(const report *r) {
    return r->plan.budget_queried ? "the device's free memory"
           : r->plan_params.gpu_memory ? "--gpu-memory"
                                       : "no device here: 80 GB";
}

/* Over several GPUs: one row per GPU, each against the per-GPU budget, and the margin of the fullest. */
static void print_text_plan_gpus(const report *r) {
    const jamba_context_plan *p = &r->plan;
    char a[32];
    printf("device plan  %d CUDA GPUs (tensor and expert parallel), %s, KV %s, %s tokens x %d sequence%s, "
           "prefill chunk %lld rows\n", p->n_gpus,
           dtype_lower(r->plan_params.gpu_dtype),
           dtype_lower(r->plan_params.kv_dtype == JAMBA_DTYPE_F8_E4M3 ? JAMBA_DTYPE_F8_E4M3 : r->plan_params.gpu_dtype),
           fmt_commas((uint64_t)r->plan_params.n_ctx, a, sizeof a), r->plan_params.n_seq_max,
           r->plan_params.n_seq_max == 1 ? "" : "s", (long long)p->n_batch);
    printf("  %-5s %12s %12s %12s %12s %12s  %s\n", "GPU", "weights", "KV cache", "Mamba state", "workspace",
           "total", "fits");
    for (int g = 0; g < p->n_gpus; g++) {
        const jamba_gpu_plan *q = &p->per_gpu[g];
        printf("  %-5d %9.2f GB %9.2f GB %9.2f GB %9.2f GB %9.2f GB  %s\n", g, (double)q->weights / 1e9,
               (double)q->kv_cache / 1e9, (double)q->mamba_state / 1e9, (double)q->workspace / 1e9,
               (double)q->total / 1e9, q->fits ? "yes" : "no");
    }
    printf("  %-11s %.2f GB per GPU (%s)\n", "budget", (double)p->budget / 1e9, budget_source(r));
    if (p->fits)
        printf("  fits         yes, on all %d GPUs: %.2f GB to spare on the fullest\n", p->n_gpus,
               (double)(p->budget - p->total) / 1e9);
    else
        printf("  fits         no: the fullest GPU %s\n", p->advice);
    printf("  (a plan only: no multi-GPU backend is built yet; the workspace is the single-GPU formula for each "
           "GPU's shapes)\n");
}

static void print_text_plan(const report *r) {
    const jamba_context_plan *p = &r->plan;
    char a[32], b[32];
    if (p->n_gpus > 1) {
        print_text_plan_gpus(r);
        return;
    }
    printf("device plan  CUDA device %d, %s, KV %s, %s tokens x %d sequence%s, prefill chunk %lld rows\n",
           r->plan_params.gpu_index, dtype_lower(r->plan_params.gpu_dtype),
           dtype_lower(r->plan_params.kv_dtype == JAMBA_DTYPE_F8_E4M3 ? JAMBA_DTYPE_F8_E4M3 : r->plan_params.gpu_dtype),
           fmt_commas((uint64_t)r->plan_params.n_ctx, a, sizeof a), r->plan_params.n_seq_max,
           r->plan_params.n_seq_max == 1 ? "" : "s", (long long)p->n_batch);
    const struct {
        const char *name;
        uint64_t v;
    } rows[] = {{"weights", p->weights}, {"KV cache", p->kv_cache}, {"Mamba state", p->mamba_state},
                {"workspace", p->workspace}, {"total", p->total}};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        printf("  %-11s %20s bytes  %12s  %6.2f GB\n", rows[i].name, fmt_commas(rows[i].v, a, sizeof a),
               fmt_bytes(rows[i].v, b, sizeof b), (double)rows[i].v / 1e9);
    printf("  %-11s %20s bytes  %12s  %6.2f GB (%s)\n", "budget", fmt_commas(p->budget, a, sizeof a),
           fmt_bytes(p->budget, b, sizeof b), (double)p->budget / 1e9, budget_source(r));
    if (p->fits)
        printf("  fits         yes, %.2f GB to spare\n", (double)(p->budget - p->total) / 1e9);
    else
        printf("  fits         no: %s\n", p->advice);
}

static void print_text_tensors(const jamba_model *m) {
    for (int64_t i = 0; i < jamba_model_n_tensors(m); i++) {
        jamba_tensor_info t;
        if (jamba_model_tensor(m, i, &t, NULL) != JAMBA_OK)
            continue;
        char shape[128];
        size_t o = (size_t)snprintf(shape, sizeof shape, "[");
        for (int d = 0; d < t.rank && o < sizeof shape; d++)
            o += (size_t)snprintf(shape + o, sizeof shape - o, "%s%lld", d ? ", " : "", (long long)t.shape[d]);
        if (o < sizeof shape)
            snprintf(shape + o, sizeof shape - o, "]");
        printf("  %-60s %-5s %-20s %14llu  %s%s\n", t.name, jamba_dtype_name(t.dtype), shape,
               (unsigned long long)t.n_bytes, t.file, t.aligned ? "" : " (misaligned)");
    }
}

/* ---- JSON ------------------------------------------------------------------------------------- */

static json_t *json_config(const jamba_config *c) {
    json_t *eos = json_array();
    for (int64_t i = 0; i < c->n_eos_token_ids; i++)
        json_array_append_new(eos, json_integer(c->eos_token_ids[i]));
    return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:b,s:b,s:b,s:b,"
                     "s:f,s:I,s:I,s:I,s:o}",
                     "vocab_size", (json_int_t)c->vocab_size, "hidden_size", (json_int_t)c->hidden_size,
                     "intermediate_size", (json_int_t)c->intermediate_size, "num_hidden_layers",
                     (json_int_t)c->num_hidden_layers, "num_attention_heads", (json_int_t)c->num_attention_heads,
                     "num_key_value_heads", (json_int_t)c->num_key_value_heads, "head_dim", (json_int_t)c->head_dim,
                     "num_experts", (json_int_t)c->num_experts, "num_experts_per_tok",
                     (json_int_t)c->num_experts_per_tok, "expert_layer_period", (json_int_t)c->expert_layer_period,
                     "expert_layer_offset", (json_int_t)c->expert_layer_offset, "attn_layer_period",
                     (json_int_t)c->attn_layer_period, "attn_layer_offset", (json_int_t)c->attn_layer_offset,
                     "mamba_d_state", (json_int_t)c->mamba_d_state, "mamba_d_conv", (json_int_t)c->mamba_d_conv,
                     "mamba_expand", (json_int_t)c->mamba_expand, "mamba_d_inner", (json_int_t)c->mamba_d_inner,
                     "mamba_dt_rank", (json_int_t)c->mamba_dt_rank, "mamba_conv_bias", c->mamba_conv_bias,
                     "mamba_proj_bias", c->mamba_proj_bias, "mamba_inner_layernorms", c->mamba_inner_layernorms,
                     "tie_word_embeddings", c->tie_word_embeddings, "rms_norm_eps", c->rms_norm_eps,
                     "max_position_embeddings", (json_int_t)c->max_position_embeddings, "bos_token_id",
                     (json_int_t)c->bos_token_id, "pad_token_id", (json_int_t)c->pad_token_id, "eos_token_id", eos);
}

static json_t *json_layers(const report *r) {
    json_t *layers = json_array();
    for (int64_t i = 0; i < r->cfg->num_hidden_layers; i++) {
        jamba_layer_info li;
        if (jamba_model_layer(r->model, i, &li, NULL) != JAMBA_OK)
            continue;
        json_array_append_new(layers, json_pack("{s:s,s:s,s:I}", "mixer",
                                                li.mixer == JAMBA_MIXER_ATTENTION ? "attention" : "mamba", "ffn",
                                                li.ffn == JAMBA_FFN_MOE ? "moe" : "dense", "experts",
                                                (json_int_t)li.n_experts));
    }
    return layers;
}

static json_t *json_weights(const report *r) {
    json_t *by = json_object();
    for (int d = 1; d < JAMBA_DTYPE_COUNT_; d++)
        if (r->by_dtype[d].tensors > 0)
            json_object_set_new(by, jamba_dtype_name((jamba_dtype)d),
                                json_pack("{s:I,s:I}", "bytes", (json_int_t)r->by_dtype[d].bytes, "tensors",
                                          (json_int_t)r->by_dtype[d].tensors));
    return json_pack("{s:b,s:I,s:o}", "loaded", jamba_model_has_weights(r->model), "tensors",
                     (json_int_t)jamba_model_n_tensors(r->model), "bytes_by_dtype", by);
}

static json_t *json_tensors(const jamba_model *m) {
    json_t *arr = json_array();
    for (int64_t i = 0; i < jamba_model_n_tensors(m); i++) {
        jamba_tensor_info t;
        if (jamba_model_tensor(m, i, &t, NULL) != JAMBA_OK)
            continue;
        json_t *shape = json_array();
        for (int d = 0; d < t.rank; d++)
            json_array_append_new(shape, json_integer(t.shape[d]));
        json_array_append_new(arr, json_pack("{s:s,s:s,s:o,s:I,s:s,s:I}", "name", t.name, "dtype",
                                             jamba_dtype_name(t.dtype), "shape", shape, "bytes",
                                             (json_int_t)t.n_bytes, "file", t.file, "offset",
                                             (json_int_t)t.file_offset));
    }
    return arr;
}

static int print_json(const report *r, const inspect_opts *o) {
    const jamba_param_counts *p = &r->params;
    const jamba_memory_estimate *m = &r->mem;
    json_t *warnings = json_array();
    for (int64_t i = 0; i < jamba_model_n_warnings(r->model); i++)
        json_array_append_new(warnings, json_string(jamba_model_warning(r->model, i)));
    json_t *root = json_pack(
        "{s:s,s:o,s:s,s:o,s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I},s:o,"
        "s:{s:I,s:I,s:s,s:I,s:I,s:I,s:I,s:I,s:I},s:o}",
        "model", jamba_model_path(r->model), "config", json_config(r->cfg), "layer_map", r->layer_map, "layers",
        json_layers(r), "parameters", "total", (json_int_t)p->total, "active", (json_int_t)p->active, "embedding",
        (json_int_t)p->embedding, "lm_head", (json_int_t)p->lm_head, "attention", (json_int_t)p->attention, "mamba",
        (json_int_t)p->mamba, "dense_mlp", (json_int_t)p->dense_mlp, "experts", (json_int_t)p->experts, "routers",
        (json_int_t)p->routers, "norms", (json_int_t)p->norms, "weights", json_weights(r), "memory", "n_ctx",
        (json_int_t)r->mem_params.n_ctx, "n_seq", (json_int_t)r->mem_params.n_seq, "kv_dtype",
        jamba_dtype_name(r->mem_params.kv_dtype), "weight_bytes", (json_int_t)m->weight_bytes, "kv_bytes_per_token",
        (json_int_t)m->kv_bytes_per_token, "kv_bytes", (json_int_t)m->kv_bytes, "mamba_state_bytes_per_seq",
        (json_int_t)m->mamba_state_bytes_per_seq, "mamba_state_bytes", (json_int_t)m->mamba_state_bytes,
        "total_bytes", (json_int_t)m->total_bytes, "warnings", warnings);
    if (root == NULL) {
        fprintf(stderr, "jamba: error: out of memory building the JSON report\n");
        return CLI_EXIT_FAIL;
    }
    if (r->has_plan) {
        const jamba_context_plan *pl = &r->plan;
        json_object_set_new(root, "device_plan",
                            json_pack("{s:s,s:s,s:I,s:i,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:b,s:s}", "gpu_dtype",
                                      jamba_dtype_name(r->plan_params.gpu_dtype), "kv_dtype",
                                      r->plan_params.kv_dtype == JAMBA_DTYPE_F8_E4M3
                                          ? "F8_E4M3"
                                          : jamba_dtype_name(r->plan_params.gpu_dtype),
                                      "n_ctx", (json_int_t)r->plan_params.n_ctx, "n_seq", r->plan_params.n_seq_max,
                                      "n_batch", (json_int_t)pl->n_batch, "weights", (json_int_t)pl->weights,
                                      "kv_cache", (json_int_t)pl->kv_cache, "mamba_state", (json_int_t)pl->mamba_state,
                                      "workspace", (json_int_t)pl->workspace, "total", (json_int_t)pl->total, "budget",
                                      (json_int_t)pl->budget, "fits", pl->fits, "advice", pl->advice));
        json_t *dp = json_object_get(root, "device_plan"), *per_gpu = json_array();
        for (int g = 0; g < pl->n_gpus; g++) {
            const jamba_gpu_plan *q = &pl->per_gpu[g];
            json_array_append_new(per_gpu, json_pack("{s:I,s:I,s:I,s:I,s:I}", "weights", (json_int_t)q->weights,
                                                     "kv_cache", (json_int_t)q->kv_cache, "mamba_state",
                                                     (json_int_t)q->mamba_state, "workspace",
                                                     (json_int_t)q->workspace, "total", (json_int_t)q->total));
        }
        json_object_set_new(dp, "gpus", json_integer(pl->n_gpus));
        json_object_set_new(dp, "per_gpu", per_gpu);
    }
    if (o->tensors)
        json_object_set_new(root, "tensors", json_tensors(r->model));
    int rc = json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
    printf("\n");
    json_decref(root);
    return rc;
}

int cmd_inspect(int argc, char **argv) {
    inspect_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc != 0)
        return rc < 0 ? CLI_EXIT_OK : rc;
    jamba_model_params mp = jamba_model_default_params();
    mp.weights = JAMBA_WEIGHTS_IF_PRESENT;
    mp.allow_unexpected_tensors = o.allow_unexpected;
    if ((rc = cli_model_params("inspect", &o.dev, &mp)) != 0)
        return rc;
    jamba_error err = {0};
    jamba_model *m = NULL;
    if (jamba_model_load(o.model, &mp, &m, &err) != JAMBA_OK)
        return cli_fail(&err);
    report r;
    if (gather(m, &o, &r, &err) != JAMBA_OK) {
        jamba_model_free(m);
        return cli_fail(&err);
    }
    if (!o.json)
        cli_print_model_notes(m);
    if (o.json) {
        rc = print_json(&r, &o);
    } else {
        print_text_config(&r);
        print_text_params(&r);
        print_text_weights(&r);
        print_text_memory(&r);
        if (r.has_plan)
            print_text_plan(&r);
        if (o.tensors)
            print_text_tensors(m);
        rc = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
    }
    jamba_model_free(m);
    return rc;
}
