/*
 * test_gpu_internals.c — the research captures of jamba.h ("Internals (research)") on a CUDA context in
 * fp32 mode against the CPU path (itself checked against transformers in tests/test_research.c): hidden
 * states, router logits, the Mamba state after the prompt, and the layer hook (patching in a layer's own
 * output changes nothing; scaling it changes the logits as it does on the CPU), with prefill in several
 * steps so rows from different steps land in place.
 */
#include "tests/gpu/gpu_test.h"

#include "ckpt/safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const fixtures[] = {"mini", "pure-mamba-moe", "moe-every-layer-top3", "odd-shapes"};

typedef struct run {
    float *hidden, *router, *logits, *conv, *ssm; /* [L+1,T,H], [M,T,E], [T,V], Mamba layer 0's state */
} run;

static void run_free(run *r) {
    free(r->hidden), free(r->router), free(r->logits), free(r->conv), free(r->ssm);
    memset(r, 0, sizeof *r);
}

typedef struct scale_hook {
    int64_t layer;
    float factor;
    const float *source; /* [T, H] rows to put in, or NULL: scale */
} scale_hook;

static bool hook_fn(void *user, int64_t layer, int64_t first_row, float *rows, int64_t n_rows, int64_t H) {
    const scale_hook *h = user;
    if (layer != h->layer)
        return false;
    for (int64_t i = 0; i < n_rows * H; i++)
        rows[i] = h->source ? h->source[first_row * H + i] : rows[i] * h->factor;
    return true;
}

/* One prefill of ids in steps of 7 rows on `dev`, capturing everything (and the hook when given). */
static bool capture(const jamba_model *m, jamba_device_type dev, const int32_t *ids, int64_t T, scale_hook *h,
                    run *out) {
    const jamba_config *c = jamba_model_config(m);
    const int64_t L = c->num_hidden_layers, H = c->hidden_size, E = c->num_experts, V = c->vocab_size;
    const int64_t Di = c->mamba_d_inner;
    jamba_context_params p = jamba_context_default_params();
    p.device = dev;
    p.gpu_dtype = JAMBA_DTYPE_F32;
    p.n_ctx = 256;
    p.n_batch = 7;
    p.n_logits_max = 256;
    p.n_threads = 4;
    jamba_context *ctx = NULL;
    jamba_error err = {0};
    if (jamba_context_create(m, &p, &ctx, &err) != JAMBA_OK) {
        gt_fail(__FILE__, __LINE__, "context: %s", err.message);
        return false;
    }
    out->hidden = calloc((size_t)((L + 1) * T * H), 4);
    out->router = calloc((size_t)(c->n_moe_layers * T * E + 1), 4);
    out->logits = calloc((size_t)(T * V), 4);
    out->conv = calloc((size_t)(Di * (c->mamba_d_conv - 1) + 1), 4);
    out->ssm = calloc((size_t)(Di * c->mamba_d_state + 1), 4);
    const jamba_capture cap = {.rows = T, .hidden = out->hidden, .router_logits = c->n_moe_layers ? out->router : NULL,
                               .hook = h ? hook_fn : NULL, .hook_data = h};
    bool ok = jamba_context_set_capture(ctx, &cap, &err) == JAMBA_OK;
    const jamba_seq_input in = {.seq = 0, .tokens = ids, .n_tokens = T, .logits = JAMBA_LOGITS_ALL};
    ok = ok && jamba_decode(ctx, &in, 1, &err) == JAMBA_OK;
    int64_t rows = 0;
    const float *lg = ok ? jamba_logits(ctx, 0, &rows) : NULL;
    if (lg)
        memcpy(out->logits, lg, (size_t)(T * V) * 4);
    jamba_layer_info info;
    for (int64_t l = 0; ok && l < L; l++)
        if (jamba_model_layer(m, l, &info, NULL) == JAMBA_OK && info.mixer == JAMBA_MIXER_MAMBA) {
            ok = jamba_seq_mamba_state(ctx, 0, l, out->conv, out->ssm, &err) == JAMBA_OK;
            break;
        }
    if (!ok)
        gt_fail(__FILE__, __LINE__, "%s capture: %s", dev == JAMBA_DEVICE_CUDA ? "CUDA" : "CPU", err.message);
    jamba_context_free(ctx);
    return ok;
}

static void test_captures_f32(void) {
    for (size_t f = 0; f < sizeof fixtures / sizeof fixtures[0]; f++) {
        char rel[160];
        snprintf(rel, sizeof rel, "forward/%s/reference.safetensors", fixtures[f]);
        char *path = gt_fixture(rel);
        jb_st_file ref;
        jamba_error err = {0};
        bool opened = jb_st_open(path, path, &ref, &err) == JAMBA_OK;
        free(path);
        GT_CHECK(opened, "%s: %s", fixtures[f], err.message);
        if (!opened)
            continue;
        const jb_st_tensor *t = NULL;
        for (int64_t i = 0; i < ref.n_tensors; i++)
            if (strcmp(ref.tensors[i].name, "input_ids") == 0)
                t = &ref.tensors[i];
        const int64_t T = t ? t->shape[0] : 0;
        int32_t *ids = malloc((size_t)(T + 1) * 4);
        for (int64_t i = 0; t && i < T; i++)
            ids[i] = (int32_t)((const int64_t *)jb_st_tensor_data(&ref, t))[i];
        snprintf(rel, sizeof rel, "forward/%s/model", fixtures[f]);
        char *dir = gt_fixture(rel);
        jamba_model *m = NULL;
        GT_CHECK(jamba_model_load(dir, NULL, &m, &err) == JAMBA_OK, "%s: %s", dir, err.message);
        free(dir);
        const jamba_config *c = m ? jamba_model_config(m) : NULL;
        run cpu = {0}, gpu = {0};
        if (c && capture(m, JAMBA_DEVICE_CPU, ids, T, NULL, &cpu) &&
            capture(m, JAMBA_DEVICE_CUDA, ids, T, NULL, &gpu)) {
            const int64_t L = c->num_hidden_layers, H = c->hidden_size, Di = c->mamba_d_inner;
            char what[96];
            for (int64_t i = 0; i <= L; i++) {
                snprintf(what, sizeof what, "%s hidden.%lld", fixtures[f], (long long)i);
                gt_expect_close(what, gpu.hidden + i * T * H, cpu.hidden + i * T * H, T * H, GT_TOL_F32);
            }
            snprintf(what, sizeof what, "%s router logits", fixtures[f]);
            gt_expect_close(what, gpu.router, cpu.router, c->n_moe_layers * T * c->num_experts, GT_TOL_F32);
            if (c->n_mamba_layers) {
                snprintf(what, sizeof what, "%s Mamba conv state", fixtures[f]);
                gt_expect_close(what, gpu.conv, cpu.conv, Di * (c->mamba_d_conv - 1), GT_TOL_F32);
                snprintf(what, sizeof what, "%s Mamba SSM state", fixtures[f]);
                gt_expect_close(what, gpu.ssm, cpu.ssm, Di * c->mamba_d_state, GT_TOL_F32);
            }
            /* the hook: a layer's own output put back changes nothing; scaled, the logits follow the CPU's */
            const int64_t layer = L / 2, V = c->vocab_size;
            scale_hook same = {layer, 1.0f, cpu.hidden + (layer + 1) * T * H};
            run gpu_same = {0}, cpu_scaled = {0}, gpu_scaled = {0};
            if (capture(m, JAMBA_DEVICE_CUDA, ids, T, &same, &gpu_same)) {
                snprintf(what, sizeof what, "%s logits, own output patched in", fixtures[f]);
                gt_expect_close(what, gpu_same.logits, gpu.logits, T * V, GT_TOL_F32);
            }
            scale_hook scaled = {layer, 1.5f, NULL};
            if (capture(m, JAMBA_DEVICE_CPU, ids, T, &scaled, &cpu_scaled) &&
                capture(m, JAMBA_DEVICE_CUDA, ids, T, &scaled, &gpu_scaled)) {
                snprintf(what, sizeof what, "%s logits, layer %lld scaled", fixtures[f], (long long)layer);
                gt_expect_close(what, gpu_scaled.logits, cpu_scaled.logits, T * V, GT_TOL_F32);
                GT_CHECK(gt_nmse(gpu_scaled.logits, gpu.logits, T * V) > 1e-6, "%s: scaling layer %lld changed "
                         "nothing", fixtures[f], (long long)layer);
            }
            run_free(&gpu_same), run_free(&cpu_scaled), run_free(&gpu_scaled);
        }
        run_free(&cpu), run_free(&gpu);
        jamba_model_free(m);
        free(ids);
        jb_st_close(&ref);
    }
}

const gt_case gt_internals_cases[] = {
    {"internals/captures_f32", test_captures_f32, true},
};
const int gt_n_internals_cases = sizeof gt_internals_cases / sizeof gt_internals_cases[0];
