/*
 * test_quantize_weights.c — the mixers and lm_head weight formats (jamba_model_params.mixers / .lm_head,
 * `--weights int8` for all four groups): which matrices they hold as int8, the save/load round trip bit for
 * bit and no requantizing of an int8 folder, a tied LM head quantized with the embedding it shares, the
 * planning-only byte count, the ABI of the appended fields, and the refusal of CUDA contexts.
 * (Accuracy against the stored weights: test_quantize_accuracy.c; the CLI: test_quantize_cli.c.)
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/abi.h"
#include "ckpt/checkpoint.h"
#include "ckpt/config.h"
#include "runtime/model.h"
#include "tests/support/quantize_util.h"
#include "tests/support/reference.h"
#include "tests/support/testutil.h"

#define I8 JAMBA_FORMAT_INT8
#define STORED JAMBA_FORMAT_STORED

/* The layer's mixer projections: attention q/k/v/o or Mamba in/x/dt/out. */
static void mixer_matrices(const jamba_model *m, int64_t l, const jb_weight *out[4]) {
    const jb_layer_weights *lw = &m->weights.layers[l];
    const bool attn = jb_layer_is_attention(jamba_model_config(m), l);
    out[0] = attn ? &lw->attn.q_proj : &lw->mamba.in_proj;
    out[1] = attn ? &lw->attn.k_proj : &lw->mamba.x_proj;
    out[2] = attn ? &lw->attn.v_proj : &lw->mamba.dt_proj;
    out[3] = attn ? &lw->attn.o_proj : &lw->mamba.out_proj;
}

/* `w` is int8 with row scales (q8) or the dtype of the same view in `ref`, with no scales. */
static void expect_format(const jb_weight *w, const jb_weight *ref, bool q8, const char *what, int64_t l) {
    cr_assert_eq(w->dtype, q8 ? JAMBA_DTYPE_I8 : ref->dtype, "%s (layer %lld) is %s", what, (long long)l,
                 jamba_dtype_name(w->dtype));
    cr_assert_eq(w->scale != NULL, q8, "%s (layer %lld): scales", what, (long long)l);
}

/* The view `w` points straight into m's checkpoint tensor `name` (bound, not a quantized copy). */
static void expect_mapped(const jamba_model *m, const jb_weight *w, const char *name) {
    const jb_ckpt_entry *e = jb_checkpoint_find(&m->ckpt, name);
    cr_assert_not_null(e, "%s", name);
    cr_assert_eq(w->data, jb_st_tensor_data(&m->ckpt.shards[e->shard], e->tensor), "%s: not the stored tensor",
                 name);
}

JB_TEST(weights, each_group_holds_its_matrices_int8_and_nothing_else) {
    jamba_model *ref = qu_load_plain(QU_DEMO);
    const jamba_config *c = jamba_model_config(ref);
    const qu_formats cases[] = {{STORED, STORED, I8, STORED}, {STORED, STORED, STORED, I8}, QU_ALL_INT8};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const qu_formats f = cases[k];
        jamba_model *m = qu_load_formats(QU_DEMO, f);
        for (int64_t l = 0; l < c->num_hidden_layers; l++) {
            const jb_weight *got[4], *want[4];
            mixer_matrices(m, l, got);
            mixer_matrices(ref, l, want);
            for (int p = 0; p < 4; p++)
                expect_format(got[p], want[p], f.mixers == I8, "mixer projection", l);
            const jb_layer_weights *a = &m->weights.layers[l], *b = &ref->weights.layers[l];
            const bool moe = jb_layer_is_moe(c, l);
            const jb_weight *up = moe ? &a->experts[1].up_proj : &a->mlp.up_proj;
            expect_format(up, moe ? &b->experts[1].up_proj : &b->mlp.up_proj, moe ? f.experts == I8 : f.mlp == I8,
                          "up_proj", l);
            /* never quantized: norms, the conv, A_log, routers */
            expect_format(&a->input_norm, &b->input_norm, false, "input_layernorm", l);
            if (!jb_layer_is_attention(c, l)) {
                expect_format(&a->mamba.conv1d, &b->mamba.conv1d, false, "conv1d", l);
                expect_format(&a->mamba.A_log, &b->mamba.A_log, false, "A_log", l);
            }
            if (moe)
                expect_format(&a->router, &b->router, false, "router", l);
        }
        expect_format(&m->weights.lm_head, &ref->weights.lm_head, f.lm_head == I8, "lm_head", -1);
        /* untied: the embedding stays the stored tensor whatever lm_head is */
        expect_format(&m->weights.embed, &ref->weights.embed, false, "embed_tokens", -1);
        expect_mapped(m, &m->weights.embed, "model.embed_tokens.weight");
        jamba_model_free(m);
    }
    jamba_model_free(ref);
}

/* A planning-only model (config.json alone) loaded with formats f counts the bytes a loaded one holds. */
JB_TEST(weights, planning_counts_the_int8_groups_as_held) {
    const qu_formats cases[] = {{STORED, STORED, STORED, STORED}, {I8, STORED, STORED, STORED},
                                {STORED, STORED, I8, STORED},     {STORED, STORED, STORED, I8}, QU_ALL_INT8};
    const size_t n = sizeof cases / sizeof cases[0];
    uint64_t bytes[sizeof cases / sizeof cases[0]];
    for (size_t k = 0; k < n; k++) {
        jamba_model *held = qu_load_formats(QU_DEMO, cases[k]);
        jamba_model_params p = jamba_model_default_params();
        p.weights = JAMBA_WEIGHTS_NONE;
        p.experts = cases[k].experts;
        p.mlp = cases[k].mlp;
        p.mixers = cases[k].mixers;
        p.lm_head = cases[k].lm_head;
        jamba_model *plan = NULL;
        jamba_error err = {0};
        cr_assert_eq(jamba_model_load(QU_DEMO, &p, &plan, &err), JAMBA_OK, "%s", err.message);
        jamba_memory_estimate a, b;
        cr_assert_eq(jamba_model_memory(held, NULL, &a, &err), JAMBA_OK, "%s", err.message);
        cr_assert_eq(jamba_model_memory(plan, NULL, &b, &err), JAMBA_OK, "%s", err.message);
        /* the demo stores every tensor as BF16, its config's torch_dtype: the plan is exact */
        cr_assert_eq(b.weight_bytes, a.weight_bytes, "case %zu: planned %llu, held %llu", k,
                     (unsigned long long)b.weight_bytes, (unsigned long long)a.weight_bytes);
        bytes[k] = a.weight_bytes;
        jamba_model_free(plan);
        jamba_model_free(held);
    }
    for (size_t k = 1; k < n; k++)
        cr_assert_lt(bytes[k], bytes[0], "case %zu holds fewer bytes than stored", k);
    for (size_t k = 1; k + 1 < n; k++)
        cr_assert_lt(bytes[n - 1], bytes[k], "all int8 holds fewer bytes than case %zu", k);
}

/* The saved checkpoint's config.json "quantization_config"."int8_groups", as one comma-joined string. */
static char *saved_groups(const char *dir) {
    char *path = tu_path(dir, "config.json");
    json_t *cfg = json_load_file(path, 0, NULL);
    cr_assert_not_null(cfg, "%s", path);
    json_t *groups = json_object_get(json_object_get(cfg, "quantization_config"), "int8_groups");
    cr_assert(json_is_array(groups), "%s: no quantization_config.int8_groups", path);
    char *out = calloc(1, 128);
    for (size_t i = 0; i < json_array_size(groups); i++)
        snprintf(out + strlen(out), 128 - strlen(out), "%s%s", i ? "," : "",
                 json_string_value(json_array_get(groups, i)));
    json_decref(cfg);
    free(path);
    return out;
}

/* Every linear matrix of the saved checkpoint is I8 with F32 row scales exactly when its group is int8. */
static void expect_saved_formats(const jamba_model *back, qu_formats f) {
    const jamba_config *c = jamba_model_config(back);
    int64_t n_i8 = 0;
    for (int64_t l = 0; l < c->num_hidden_layers; l++) {
        const jb_weight *mix[4];
        mixer_matrices(back, l, mix);
        for (int p = 0; p < 4; p++) {
            n_i8 += mix[p]->dtype == JAMBA_DTYPE_I8;
            cr_assert_eq(mix[p]->dtype == JAMBA_DTYPE_I8, f.mixers == I8, "layer %lld mixer %d", (long long)l, p);
        }
    }
    cr_assert_eq(back->weights.lm_head.dtype == JAMBA_DTYPE_I8, f.lm_head == I8);
    if (f.lm_head == I8)
        cr_assert_not_null(jb_checkpoint_find(&back->ckpt, "lm_head.weight_scale"));
    if (f.mixers == I8) {
        cr_assert_gt(n_i8, 0);
        const jb_ckpt_entry *s = jb_checkpoint_find(&back->ckpt, "model.layers.0.mamba.x_proj.weight_scale");
        cr_assert_not_null(s);
        cr_assert_eq(s->tensor->dtype, JAMBA_DTYPE_F32);
        cr_assert_eq(s->tensor->shape[0], back->weights.layers[0].mamba.x_proj.shape[0]);
    }
}

JB_TEST(weights, int8_folders_round_trip_bit_exactly_and_load_without_requantizing) {
    const struct {
        qu_formats f;
        const char *groups;
    } cases[] = {{QU_ALL_INT8, "experts,mlp,mixers,lm_head"},
                 {{I8, I8, I8, STORED}, "experts,mlp,mixers"},
                 {{STORED, STORED, STORED, I8}, "lm_head"}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        jamba_model *q = qu_load_formats(QU_DEMO, cases[k].f);
        const int64_t V = jamba_model_config(q)->vocab_size;
        float *want = qu_all_logits(q, qu_probe, QU_N_PROBE);
        char *tmp = tu_tmpdir();
        char *out = tu_path(tmp, "demo-q");
        jamba_error err = {0};
        cr_assert_eq(jamba_model_save(q, out, &err), JAMBA_OK, "%s", err.message);
        char *groups = saved_groups(out);
        cr_expect_str_eq(groups, cases[k].groups);
        free(groups);
        jamba_memory_estimate held;
        cr_assert_eq(jamba_model_memory(q, NULL, &held, &err), JAMBA_OK);
        /* loaded as stored (the defaults), and asking for all four int8 again: kept as saved, not requantized */
        for (int pass = 0; pass < 2; pass++) {
            jamba_model *back = pass ? qu_load_formats(out, cases[k].f) : qu_load_plain(out);
            expect_saved_formats(back, cases[k].f);
            cr_assert(!back->requantized, "case %zu pass %d: an int8 folder is not requantized", k, pass);
            if (cases[k].f.mixers == I8)
                expect_mapped(back, &back->weights.layers[0].mamba.in_proj, "model.layers.0.mamba.in_proj.weight");
            if (cases[k].f.lm_head == I8)
                expect_mapped(back, &back->weights.lm_head, "lm_head.weight");
            float *got = qu_all_logits(back, qu_probe, QU_N_PROBE);
            qu_expect_identical(got, want, QU_N_PROBE * V,
                                pass ? "reloaded with the same formats" : "reloaded as stored");
            jamba_memory_estimate mb;
            cr_assert_eq(jamba_model_memory(back, NULL, &mb, &err), JAMBA_OK);
            cr_assert_eq(mb.weight_bytes, held.weight_bytes, "the saved folder holds what the int8 load held");
            free(got);
            jamba_model_free(back);
        }
        free(want);
        jamba_model_free(q);
        tu_rmtree(tmp);
        free(out);
        free(tmp);
    }
}

/* Tied: lm_head int8 quantizes the one shared matrix, so the embedding lookup reads int8 rows times their
 * scales; the model equals the float model whose embedding is those dequantized values. */
JB_TEST(weights, tied_lm_head_int8_quantizes_the_shared_embedding) {
    char *dir = tu_fixture("models/tiny-tied");
    jamba_model *q = qu_load_formats(dir, (qu_formats){STORED, STORED, STORED, I8});
    const jamba_config *c = jamba_model_config(q);
    cr_assert(c->tie_word_embeddings);
    const jb_weight *e = &q->weights.embed, *h = &q->weights.lm_head;
    cr_assert_eq(e->dtype, JAMBA_DTYPE_I8);
    cr_assert_not_null(e->scale);
    cr_assert(h->data == e->data && h->scale == e->scale && h->dtype == e->dtype, "lm_head is the embedding");
    const int64_t V = c->vocab_size, H = c->hidden_size;
    int32_t ids[QU_N_PROBE];
    qu_small_probe(ids, V);
    float *got = qu_all_logits(q, ids, QU_N_PROBE);

    /* the float twin: the fixture with model.embed_tokens.weight = q x scale */
    tensor_list l = {0};
    char *cfg = qu_fixture_tensors("tiny-tied", &l);
    float *deq = tl_keep(&l, malloc((size_t)(V * H) * sizeof *deq));
    for (int64_t v = 0; v < V; v++)
        for (int64_t k = 0; k < H; k++)
            deq[v * H + k] = (float)((const int8_t *)e->data)[v * H + k] * e->scale[v];
    l.v[tl_find(&l, "model.embed_tokens.weight")].data = deq;
    char *twin_dir = qu_folder_of(cfg, &l);
    jamba_model *twin = qu_load_plain(twin_dir);
    float *want = qu_all_logits(twin, ids, QU_N_PROBE);
    const double err_twin = rel_l2(got, want, QU_N_PROBE * V);
    jamba_model *plain = qu_load_plain(dir);
    float *stored = qu_all_logits(plain, ids, QU_N_PROBE);
    const double err_stored = rel_l2(got, stored, QU_N_PROBE * V);
    cr_log_info("tied lm_head int8: logits relative L2 %.3g to its float twin, %.3g to the stored model", err_twin,
                err_stored);
    cr_expect_leq(err_twin, 1e-5, "the int8 lookup and LM head mean q x scale (relative L2 %.3g)", err_twin);
    cr_expect_gt(err_stored, 0.0, "the embedding was quantized");
    cr_expect_leq(err_stored, 0.05, "relative L2 %.3g to the stored model", err_stored);

    /* saved: one I8 embedding with its scales and no lm_head tensor; reloaded as stored, bit for bit */
    char *tmp = tu_tmpdir();
    jamba_error err = {0};
    cr_assert_eq(jamba_model_save(q, tmp, &err), JAMBA_OK, "%s", err.message);
    jamba_model *back = qu_load_plain(tmp);
    cr_assert_null(jb_checkpoint_find(&back->ckpt, "lm_head.weight"));
    const jb_ckpt_entry *se = jb_checkpoint_find(&back->ckpt, "model.embed_tokens.weight");
    cr_assert(se != NULL && se->tensor->dtype == JAMBA_DTYPE_I8);
    cr_assert_not_null(jb_checkpoint_find(&back->ckpt, "model.embed_tokens.weight_scale"));
    cr_assert_eq(back->weights.lm_head.data, back->weights.embed.data);
    float *again = qu_all_logits(back, ids, QU_N_PROBE);
    qu_expect_identical(again, got, QU_N_PROBE * V, "tied int8 folder reloaded");

    free(again);
    jamba_model_free(back);
    tu_rmtree(tmp);
    free(tmp);
    free(stored);
    jamba_model_free(plain);
    free(want);
    jamba_model_free(twin);
    tu_rmtree(twin_dir);
    free(twin_dir);
    tl_free(&l);
    free(cfg);
    free(got);
    jamba_model_free(q);
    free(dir);
}

/* A caller built against the header before mixers and lm_head passes the older size: the bytes past it are
 * never read (both stay STORED), and jamba_model_params_init_sized writes only the caller's bytes. */
JB_TEST(weights, callers_of_the_older_header_get_stored_mixers_and_lm_head) {
    cr_assert_geq(offsetof(jamba_model_params, mixers), JB_MIN_MODEL_PARAMS, "appended after the first release");
    cr_assert_gt(offsetof(jamba_model_params, lm_head), offsetof(jamba_model_params, mixers));
    const size_t old_size = offsetof(jamba_model_params, mixers);
    jamba_model_params p = jamba_model_default_params();
    p.experts = I8;
    p.mixers = I8;  /* bytes an older caller does not have: must not be read */
    p.lm_head = I8;
    p.n_threads = 2;
    jamba_model *m = NULL;
    jamba_error err = {0};
    cr_assert_eq(jamba_model_load_sized(QU_DEMO, &p, old_size, &m, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(m->weights.layers[1].experts[0].up_proj.dtype, JAMBA_DTYPE_I8, "experts as asked");
    cr_assert_eq(m->weights.layers[0].mamba.in_proj.dtype, JAMBA_DTYPE_BF16, "mixers: the default");
    cr_assert_eq(m->weights.lm_head.dtype, JAMBA_DTYPE_BF16, "lm_head: the default");
    jamba_model_free(m);

    unsigned char buf[sizeof(jamba_model_params)];
    memset(buf, 0xAB, sizeof buf);
    jamba_model_params_init_sized((jamba_model_params *)(void *)buf, old_size);
    for (size_t i = old_size; i < sizeof buf; i++)
        cr_assert_eq(buf[i], 0xAB, "byte %zu past the caller's struct was written", i);
    const jamba_model_params d = jamba_model_default_params();
    cr_assert_eq(d.mixers, STORED);
    cr_assert_eq(d.lm_head, STORED);
}

JB_TEST(weights, formats_outside_the_enum_are_refused_by_name) {
    const char *const names[] = {"mixers", "lm_head"};
    for (int k = 0; k < 2; k++) {
        jamba_model_params p = jamba_model_default_params();
        if (k == 0)
            p.mixers = (jamba_weight_format)2;
        else
            p.lm_head = (jamba_weight_format)-1;
        jamba_model *m = (jamba_model *)1;
        jamba_error err = {0};
        cr_assert_eq(jamba_model_load(QU_DEMO, &p, &m, &err), JAMBA_ERR_INVALID_ARGUMENT);
        cr_assert_null(m);
        cr_assert(strstr(err.message, names[k]) != NULL, "%s", err.message);
    }
}

/* No CUDA kernels for these int8 matrices: a CUDA context (one GPU or NCCL) and its plan are refused,
 * naming the option, before any device is looked for (so in every build). */
JB_TEST(weights, cuda_contexts_refuse_int8_mixers_and_lm_head) {
    const struct {
        qu_formats f;
        const char *option;
    } cases[] = {{{STORED, STORED, I8, STORED}, "--mixers int8"}, {{STORED, STORED, STORED, I8}, "--lm-head int8"},
                 {QU_ALL_INT8, "--mixers int8"}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        jamba_model *m = qu_load_formats(QU_DEMO, cases[k].f);
        for (int gpus = 1; gpus <= 2; gpus++) {
            jamba_context_params p = jamba_context_default_params();
            p.device = JAMBA_DEVICE_CUDA;
            p.n_gpus = gpus;
            p.n_ctx = 64;
            jamba_context *ctx = (jamba_context *)1;
            jamba_error err = {0};
            cr_assert_eq(jamba_context_create(m, &p, &ctx, &err), JAMBA_ERR_UNSUPPORTED, "%s", err.message);
            cr_assert_null(ctx);
            cr_assert(strstr(err.message, cases[k].option) != NULL && strstr(err.message, "CPU") != NULL, "%s",
                      err.message);
            jamba_context_plan plan;
            err = (jamba_error){0};
            cr_assert_eq(jamba_context_plan_memory(m, &p, &plan, &err), JAMBA_ERR_UNSUPPORTED, "%s", err.message);
        }
        jamba_model_free(m);
    }
    /* int8 experts and MLPs have CUDA kernels: planned as before */
    jamba_model *m = qu_load_formats(QU_DEMO, (qu_formats){I8, I8, STORED, STORED});
    jamba_context_params p = jamba_context_default_params();
    p.device = JAMBA_DEVICE_CUDA;
    p.n_ctx = 64;
    jamba_context_plan plan;
    jamba_error err = {0};
    cr_assert_eq(jamba_context_plan_memory(m, &p, &plan, &err), JAMBA_OK, "%s", err.message);
    jamba_model_free(m);
}
