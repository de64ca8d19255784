/*
 * plan.c — the CUDA backend's memory plan: what a context would take on its device, before anything is
 * allocated, from the config, the weight formats and the context sizes (cuda/ctx_layout.c's computation,
 * which the CUDA context then allocates by). Chooses the prefill chunk and, when the request does not
 * fit, says what would. Host C: plans are made in builds without the toolkit too. Over several GPUs
 * (n_gpus) each GPU is planned with its share of the weights (parallel/shard.h's slices, counted by
 * ctx_layout.c's rules) and, approximately, the single-GPU layout for its shapes (its heads, KV heads,
 * Mamba channels, intermediate width): exact for the KV cache and Mamba state, an estimate for the
 * workspace, which leaves out the buffers a multi-GPU backend would add (NCCL's among them).
 */
#include "cuda/plan.h"

#include "ckpt/config.h"
#include "cuda/ctx_layout.h"
#include "parallel/shard.h"
#include "base/checked.h"
#include "base/error.h"

#include <stdio.h>
#include <string.h>

#define PLANNING_BUDGET ((uint64_t)80000000000) /* 80 GB: an H100's memory, for planning without a device */
#define FREE_RESERVE ((uint64_t)512 << 20)      /* of a device's free memory, kept for what is allocated outside
                                                   the plan: cuBLAS internals, graphs, lazily loaded kernels */
#define AUTO_LOGIT_ROWS 512                     /* logit rows of a chosen-chunk CUDA context (at least S) */

static const int64_t CHUNKS[] = {4096, 2048, 1024, 512, 256, 128, 64, 32, 16};
#define N_CHUNKS ((int)(sizeof CHUNKS / sizeof CHUNKS[0]))

/* Whether every matrix of the given FFN kind is held as int8: from the weights when loaded, else from
 * the formats the planning-only model was loaded with. */
static bool ffn_int8(const jamba_model *m, bool moe) {
    if (!m->has_weights)
        return moe ? m->plan_experts_int8 : m->plan_mlp_int8;
    bool any = false;
    for (int64_t l = 0; l < m->config.num_hidden_layers; l++) {
        if (jb_layer_is_moe(&m->config, l) != moe)
            continue;
        const jb_layer_weights *lw = &m->weights.layers[l];
        if (!(moe ? jb_mlps_int8(lw->experts, m->config.num_experts) : jb_mlps_int8(&lw->mlp, 1)))
            return false;
        any = true;
    }
    return any;
}

typedef struct cuda_request {
    const jamba_model *m;
    jb_weight_shape ws;
    jb_ctx_shape shape;
    int n_gpus;
    jamba_config gpu_cfg;                   /* the shapes each GPU computes with (the model's, on one GPU) */
    uint64_t weights[JAMBA_MAX_GPUS];       /* [n_gpus] counted toward the budget (0 when already there) */
} cuda_request;

/* The plan's figures for one shape: each GPU's, and the fullest one's as the plan's own. */
static jamba_status evaluate(const cuda_request *r, jamba_context_plan *out, jamba_error *err) {
    jb_ctx_layout L;
    JB_TRY(jb_ctx_layout_plan(&r->gpu_cfg, &r->shape, &L, err));
    const uint64_t kv = L.bytes[JB_BUF_KV] + L.bytes[JB_BUF_KV_SCALE];
    const uint64_t mamba = L.bytes[JB_BUF_CONV] + L.bytes[JB_BUF_SSM];
    out->n_gpus = r->n_gpus;
    out->fits = true;
    int fullest = 0;
    for (int g = 0; g < r->n_gpus; g++) {
        jamba_gpu_plan *gp = &out->per_gpu[g];
        *gp = (jamba_gpu_plan){.weights = r->weights[g], .kv_cache = kv, .mamba_state = mamba,
                               .workspace = L.total - kv - mamba};
        if (!jb_add_u64(L.total, gp->weights, &gp->total))
            return jb_fail(err, JAMBA_ERR_OVERFLOW, "context plan: the sizes overflow 64 bits");
        gp->fits = out->budget == 0 || gp->total <= out->budget;
        out->fits = out->fits && gp->fits;
        fullest = gp->total > out->per_gpu[fullest].total ? g : fullest;
    }
    const jamba_gpu_plan *f = &out->per_gpu[fullest];
    out->weights = f->weights;
    out->kv_cache = f->kv_cache;
    out->mamba_state = f->mamba_state;
    out->workspace = f->workspace;
    out->total = f->total;
    out->n_batch = r->shape.Tb;
    out->n_logits_max = r->shape.cap;
    return JAMBA_OK;
}

/* Over n > 1 GPUs: the shapes each computes with, and each one's share of the device weights. */
static jamba_status plan_gpus(cuda_request *r, int n, jamba_error *err) {
    const jamba_config dc = jb_weights_device_config(&r->m->config, &r->ws);
    jb_shard_plan sp;
    JB_TRY(jb_shard_plan_make(&dc, n, &sp, err));
    jb_shard_rank_config(&sp, &r->m->config, &r->gpu_cfg);
    r->n_gpus = n;
    bool ok = true;
    for (int g = 0; g < n && ok; g++) {
        jb_weights_share s;
        ok = jb_weights_device_share(&r->m->config, &r->ws, &sp, g, &s);
        r->weights[g] = s.bytes;
    }
    jb_shard_plan_free(&sp);
    return ok ? JAMBA_OK
              : jb_fail(err, JAMBA_ERR_OVERFLOW, "%s: the device weights' size overflows 64 bits", r->m->path);
}

/* The largest value of one dimension (context length or sequences) that fits, by bisection over the
 * plan with the other sizes fixed; 0 when even 1 does not. */
static int64_t largest_fitting(cuda_request r, bool seqs, int64_t hi, uint64_t budget) {
    int64_t lo = 0;
    while (lo < hi) {
        const int64_t mid = lo + (hi - lo + 1) / 2;
        if (seqs)
            r.shape.S = (int32_t)mid;
        else
            r.shape.C = mid;
        jamba_context_plan p = {.budget = budget};
        if (evaluate(&r, &p, NULL) == JAMBA_OK && p.fits)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

static double gb(uint64_t b) { return (double)b / 1e9; }

/* What would fit instead, as one sentence. */
static void advise(const cuda_request *r, const jamba_context_plan *p, char *out, size_t cap) {
    size_t n = (size_t)snprintf(out, cap, "needs %.2f GB (weights %.2f, KV cache %.2f, Mamba state %.2f, workspace "
                                "%.2f) but %.2f GB are available;", gb(p->total), gb(p->weights), gb(p->kv_cache),
                                gb(p->mamba_state), gb(p->workspace), gb(p->budget));
    cuda_request small = *r; /* the advice assumes the smallest chunk */
    small.shape.Tb = CHUNKS[N_CHUNKS - 1];
    if (small.shape.cap > small.shape.Tb)
        small.shape.cap = small.shape.S > small.shape.Tb ? small.shape.S : small.shape.Tb;
    const int64_t ctx_max = largest_fitting(small, false, r->shape.C, p->budget);
    const int64_t seq_max = largest_fitting(small, true, r->shape.S, p->budget);
    const char *sep = "";
    if (ctx_max > 0 && n < cap) {
        n += (size_t)snprintf(out + n, cap - n, " fits: --ctx %lld", (long long)ctx_max);
        sep = ",";
    }
    if (seq_max > 0 && r->shape.S > 1 && n < cap) {
        n += (size_t)snprintf(out + n, cap - n, "%s %d sequences", sep, (int)seq_max);
        sep = ",";
    }
    if (r->shape.kv_dt != JAMBA_DTYPE_F8_E4M3 && r->m->config.n_attention_layers > 0 && n < cap) {
        n += (size_t)snprintf(out + n, cap - n, "%s an fp8 KV cache (--kv-dtype fp8)", sep);
        sep = ",";
    }
    if (r->m->config.n_moe_layers > 0 && !r->ws.experts_int8 && n < cap) {
        n += (size_t)snprintf(out + n, cap - n, "%s int8 experts (--experts int8)", sep);
        sep = ",";
    }
    if (r->m->config.n_moe_layers < r->m->config.num_hidden_layers && !r->ws.mlp_int8 && n < cap) {
        n += (size_t)snprintf(out + n, cap - n, "%s int8 dense MLPs (--mlp int8)", sep);
        sep = ",";
    }
    if (*sep == '\0' && n < cap)
        snprintf(out + n, cap - n, " the weights alone do not fit this device");
}

jamba_status jb_cuda_plan_memory(const jamba_model *m, const jamba_context_params *p, uint64_t free_bytes,
                                 bool weights_resident, jamba_context_plan *out, jamba_error *err) {
    memset(out, 0, sizeof *out);
    out->device = JAMBA_DEVICE_CUDA;
    cuda_request r = {.m = m};
    r.ws = (jb_weight_shape){.dt = p->gpu_dtype, .experts_int8 = ffn_int8(m, true), .mlp_int8 = ffn_int8(m, false),
                             .inner_norms = m->config.mamba_inner_layernorms || m->weights.inner_norms_stored};
    uint64_t wbytes = 0;
    if (!jb_weights_device_bytes(&m->config, &r.ws, &wbytes))
        return jb_fail(err, JAMBA_ERR_OVERFLOW, "%s: the device weights' size overflows 64 bits", m->path);
    r.n_gpus = 1;
    r.gpu_cfg = m->config;
    r.weights[0] = weights_resident ? 0 : wbytes;
    r.shape = (jb_ctx_shape){.S = p->n_seq_max, .C = p->n_ctx, .Tb = p->n_batch, .cap = p->n_logits_max,
                             .dt = p->gpu_dtype,
                             .kv_dt = p->kv_dtype == JAMBA_DTYPE_F8_E4M3 ? JAMBA_DTYPE_F8_E4M3 : p->gpu_dtype,
                             .graphs = p->gpu_graphs};
    if (p->n_gpus != 0 && p->n_gpus != 1)
        JB_TRY(plan_gpus(&r, p->n_gpus, err));
    out->budget_queried = p->gpu_memory == 0 && free_bytes > 0;
    out->budget = p->gpu_memory             ? p->gpu_memory
                  : free_bytes > FREE_RESERVE ? free_bytes - FREE_RESERVE
                  : free_bytes              ? 1
                                            : PLANNING_BUDGET;
    if (p->n_batch > 0) {
        if (r.shape.cap == 0)
            r.shape.cap = p->n_batch > p->n_seq_max ? p->n_batch : p->n_seq_max;
        JB_TRY(evaluate(&r, out, err));
    } else {
        /* the largest chunk that fits (never more rows than the context can hold); else the smallest */
        const int64_t most = (int64_t)p->n_seq_max * p->n_ctx;
        for (int i = 0; i < N_CHUNKS; i++) {
            if (CHUNKS[i] > most && i + 1 < N_CHUNKS && CHUNKS[i + 1] >= most)
                continue;
            r.shape.Tb = CHUNKS[i] < most ? CHUNKS[i] : most;
            const int64_t rows = r.shape.Tb < AUTO_LOGIT_ROWS ? r.shape.Tb : AUTO_LOGIT_ROWS;
            r.shape.cap = p->n_logits_max ? p->n_logits_max : rows > p->n_seq_max ? rows : p->n_seq_max;
            JB_TRY(evaluate(&r, out, err));
            if (out->fits)
                break;
        }
    }
    if (!out->fits)
        advise(&r, out, out->advice, sizeof out->advice);
    return JAMBA_OK;
}
