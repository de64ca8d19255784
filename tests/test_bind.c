/*
 * test_bind.c — binding a checkpoint's tensors to the config: every fixture written by transformers
 * loads with the reference's parameter count, tensor count and schedule; the AI21 March-2024 names,
 * stacked experts and shards bind to byte-identical weights; and every way a checkpoint can disagree
 * with its config (missing, unexpected, wrong shape, wrong dtype, two naming schemes, tying) is reported
 * by name.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/model.h"
#include "base/alloc.h"
#include "runtime/synthetic.h"
#include "tests/support/testutil.h"

#define MISMATCH JAMBA_ERR_WEIGHT_MISMATCH

static jamba_model *load(const char *dir, const jamba_model_params *p) {
    jamba_model *m = NULL;
    jamba_error err = {0};
    cr_assert_eq(jamba_model_load(dir, p, &m, &err), JAMBA_OK, "%s: %s", dir, err.message);
    return m;
}

static jamba_model *load_fixture(const char *name) {
    char *rel = tu_path("models", name);
    char *dir = tu_fixture(rel);
    jamba_model *m = load(dir, NULL);
    free(dir);
    free(rel);
    return m;
}

/* ---- agreement with the reference ------------------------------------------------------------- */

JB_TEST(bind, every_fixture_matches_the_reference_counts_and_schedule) {
    char *path = tu_fixture("models/expected.json");
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    cr_assert_not_null(root, "%s", jerr.text);
    json_t *models = json_object_get(root, "models");
    const char *name;
    json_t *want;
    int checked = 0;
    json_object_foreach(models, name, want) {
        char *dir = strcmp(name, "tiny-random") == 0 ? strdup(JB_SOURCE_DIR "/models/tiny-random")
                                                      : tu_path(JB_FIXTURES_DIR "/models", name);
        jamba_model *m = load(dir, NULL);
        jamba_param_counts pc;
        cr_assert_eq(jamba_model_param_counts(m, &pc, NULL), JAMBA_OK);
        cr_expect_eq(pc.total, (uint64_t)json_integer_value(json_object_get(want, "total_parameters")), "%s", name);
        cr_expect_eq(jamba_model_n_tensors(m), json_integer_value(json_object_get(want, "n_tensors")), "%s", name);
        json_t *kinds = json_object_get(want, "layers_block_type");
        json_t *experts = json_object_get(want, "layers_num_experts");
        const jamba_config *c = jamba_model_config(m);
        cr_assert_eq((size_t)c->num_hidden_layers, json_array_size(kinds), "%s", name);
        for (int64_t i = 0; i < c->num_hidden_layers; i++) {
            jamba_layer_info li;
            cr_assert_eq(jamba_model_layer(m, i, &li, NULL), JAMBA_OK);
            const char *kind = json_string_value(json_array_get(kinds, (size_t)i));
            cr_expect_eq(li.mixer == JAMBA_MIXER_ATTENTION, strcmp(kind, "attention") == 0, "%s layer %lld", name,
                         (long long)i);
            cr_expect_eq(li.n_experts, json_integer_value(json_array_get(experts, (size_t)i)), "%s layer %lld", name,
                         (long long)i);
        }
        /* the stored bytes are exactly the parameters times their size */
        jamba_memory_estimate mem;
        cr_assert_eq(jamba_model_memory(m, NULL, &mem, NULL), JAMBA_OK);
        size_t elem = jamba_dtype_size(m->weights.embed.dtype);
        cr_expect_eq(mem.weight_bytes, pc.total * elem, "%s", name);
        jamba_model_free(m);
        free(dir);
        checked++;
    }
    cr_assert_geq(checked, 11);
    json_decref(root);
    free(path);
}

static void expect_same_bytes(const jb_weight *a, const jb_weight *b, const char *what, int64_t layer) {
    cr_assert_eq(a->data == NULL, b->data == NULL, "%s layer %lld presence", what, (long long)layer);
    if (a->data == NULL)
        return;
    cr_assert_eq(a->dtype, b->dtype);
    cr_assert_eq(a->rank, b->rank);
    uint64_t n = jamba_dtype_size(a->dtype);
    for (int d = 0; d < a->rank; d++) {
        cr_assert_eq(a->shape[d], b->shape[d], "%s layer %lld dim %d", what, (long long)layer, d);
        n *= (uint64_t)a->shape[d];
    }
    cr_assert_eq(memcmp(a->data, b->data, n), 0, "%s layer %lld differs", what, (long long)layer);
}

static void expect_same_mlp(const jb_mlp_weights *a, const jb_mlp_weights *b, int64_t layer) {
    expect_same_bytes(&a->gate_proj, &b->gate_proj, "gate_proj", layer);
    expect_same_bytes(&a->up_proj, &b->up_proj, "up_proj", layer);
    expect_same_bytes(&a->down_proj, &b->down_proj, "down_proj", layer);
}

/* Every bound view of `a` and `b` covers identical bytes. */
static void expect_same_weights(const jamba_model *a, const jamba_model *b) {
    const jb_weights *x = &a->weights, *y = &b->weights;
    expect_same_bytes(&x->embed, &y->embed, "embed", -1);
    expect_same_bytes(&x->final_norm, &y->final_norm, "final_norm", -1);
    expect_same_bytes(&x->lm_head, &y->lm_head, "lm_head", -1);
    for (int64_t i = 0; i < x->n_layers; i++) {
        const jb_layer_weights *p = &x->layers[i], *q = &y->layers[i];
        expect_same_bytes(&p->input_norm, &q->input_norm, "input_norm", i);
        expect_same_bytes(&p->pre_ff_norm, &q->pre_ff_norm, "pre_ff_norm", i);
        const jb_weight *pa = &p->attn.q_proj, *qa = &q->attn.q_proj;
        for (size_t k = 0; k < sizeof p->attn / sizeof(jb_weight); k++)
            expect_same_bytes(&pa[k], &qa[k], "attention", i);
        const jb_weight *pm = &p->mamba.in_proj, *qm = &q->mamba.in_proj;
        for (size_t k = 0; k < sizeof p->mamba / sizeof(jb_weight); k++)
            expect_same_bytes(&pm[k], &qm[k], "mamba", i);
        expect_same_mlp(&p->mlp, &q->mlp, i);
        expect_same_bytes(&p->router, &q->router, "router", i);
        cr_assert_eq(p->experts == NULL, q->experts == NULL);
        for (int64_t e = 0; p->experts && e < a->config.num_experts; e++)
            expect_same_mlp(&p->experts[e], &q->experts[e], i);
    }
}

JB_TEST(bind, naming_schemes_and_layouts_bind_identical_weights) {
    jamba_model *hf = load_fixture("tiny-hf");
    static const char *const variants[] = {"tiny-hf-sharded", "tiny-ai21", "tiny-stacked"};
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
        jamba_model *m = load_fixture(variants[v]);
        expect_same_weights(hf, m);
        jamba_model_free(m);
    }
    jamba_model_free(hf);
}

JB_TEST(bind, stacked_experts_split_gate_then_up) {
    jamba_model *hf = load_fixture("tiny-hf");
    jamba_model *st = load_fixture("tiny-stacked");
    const jb_layer_weights *a = &hf->weights.layers[1], *b = &st->weights.layers[1];
    int64_t I = hf->config.intermediate_size, H = hf->config.hidden_size;
    /* expert 2's up rows sit I*H elements after its gate rows inside gate_up_proj[2] */
    cr_assert_eq((const float *)b->experts[2].up_proj.data - (const float *)b->experts[2].gate_proj.data, I * H);
    cr_assert_eq(memcmp(a->experts[2].up_proj.data, b->experts[2].up_proj.data, (size_t)(I * H) * 4), 0);
    jamba_model_free(hf);
    jamba_model_free(st);
}

JB_TEST(bind, tied_embeddings_share_the_matrix) {
    jamba_model *m = load_fixture("tiny-tied");
    cr_assert(m->config.tie_word_embeddings);
    cr_assert_eq(m->weights.lm_head.data, m->weights.embed.data);
    jamba_param_counts pc;
    jamba_model_param_counts(m, &pc, NULL);
    cr_assert_eq(pc.lm_head, 0);
    jamba_model_free(m);
}

JB_TEST(bind, optional_tensors_follow_the_config) {
    jamba_model *m = load_fixture("tiny-odd"); /* proj bias on, conv bias off */
    const jb_mamba_weights *mw = &m->weights.layers[0].mamba;
    cr_assert_not_null(mw->in_proj_bias.data);
    cr_assert_not_null(mw->out_proj_bias.data);
    cr_assert_null(mw->conv1d_bias.data);
    cr_assert_eq(mw->conv1d.shape[2], 3);
    cr_assert_eq(mw->x_proj.shape[0], 3 + 2 * 5);
    jamba_model_free(m);
}

JB_TEST(bind, bf16_checkpoint_keeps_its_dtype) {
    jamba_model *m = load_fixture("tiny-bf16");
    jamba_tensor_info t;
    for (int64_t i = 0; i < jamba_model_n_tensors(m); i++) {
        cr_assert_eq(jamba_model_tensor(m, i, &t, NULL), JAMBA_OK);
        cr_assert_eq(t.dtype, JAMBA_DTYPE_BF16, "%s", t.name);
        cr_assert(t.aligned);
    }
    jamba_model_free(m);
}

/* ---- disagreements, each reported by name ------------------------------------------------------ */

typedef struct edited {
    char *dir;
    char *file;
    tu_st_list list;
} edited;

/* A copy of a fixture whose model.safetensors the test edits through `list`. */
static edited edit_fixture(const char *name) {
    char *rel = tu_path("models", name);
    char *src = tu_fixture(rel);
    edited e = {.dir = tu_clone_model(src)};
    e.file = tu_path(e.dir, "model.safetensors");
    tu_st_list_read(e.file, &e.list);
    free(src);
    free(rel);
    return e;
}

static void discard(edited *e) {
    tu_st_list_free(&e->list);
    tu_rmtree(e->dir);
    free(e->file);
    free(e->dir);
}

static void set_config_key(const char *dir, const char *key, json_t *value) {
    char *path = tu_path(dir, "config.json");
    json_t *cfg = json_load_file(path, 0, NULL);
    cr_assert_not_null(cfg);
    json_object_set_new(cfg, key, value);
    cr_assert_eq(json_dump_file(cfg, path, JSON_INDENT(2)), 0);
    json_decref(cfg);
    free(path);
}

/* Write the edited file, load it, expect `want` and every needle (NULL-terminated) in the message. */
static void expect_load_failure(edited *e, const jamba_model_params *p, jamba_status want, const char *needles[]) {
    tu_st_list_write(&e->list, e->file);
    jamba_model *m = NULL;
    jamba_error err = {0};
    jamba_status st = jamba_model_load(e->dir, p, &m, &err);
    cr_expect_eq(st, want, "status %d: %s", st, err.message);
    cr_expect_null(m);
    for (int i = 0; needles[i]; i++)
        cr_expect(strstr(err.message, needles[i]) != NULL, "'%s' should contain '%s'", err.message, needles[i]);
    discard(e);
}

JB_TEST(bind, missing_tensors_are_named) {
    edited e = edit_fixture("tiny-hf");
    tu_st_list_remove(&e.list, "model.layers.1.feed_forward.experts.2.up_proj.weight");
    tu_st_list_remove(&e.list, "model.layers.0.mamba.dt_layernorm.weight");
    tu_st_list_remove(&e.list, "lm_head.weight");
    expect_load_failure(&e, NULL, MISMATCH,
                        (const char *[]){"3 tensors missing", "model.layers.1.feed_forward.experts.2.up_proj.weight",
                                         "model.layers.0.mamba.dt_layernorm.weight", "lm_head.weight",
                                         "0 unexpected", NULL});
}

JB_TEST(bind, many_missing_tensors_are_summarised) {
    edited e = edit_fixture("tiny-hf");
    while (e.list.n > 1)
        tu_st_list_remove(&e.list, e.list.items[e.list.n - 1].name);
    expect_load_failure(&e, NULL, MISMATCH, (const char *[]){"82 tensors missing", "(78 more)", NULL});
}

JB_TEST(bind, unexpected_tensors_are_named_or_skipped) {
    float x[4] = {0};
    edited e = edit_fixture("tiny-hf");
    e.list.items[e.list.n++] = (jb_st_out_tensor){strdup("model.layers.0.mamba.extra_bias"), JAMBA_DTYPE_F32, 1, {4}, x};
    expect_load_failure(&e, NULL, MISMATCH,
                        (const char *[]){"0 tensors missing", "1 unexpected (model.layers.0.mamba.extra_bias)", NULL});

    e = edit_fixture("tiny-hf");
    e.list.items[e.list.n++] = (jb_st_out_tensor){strdup("model.layers.0.mamba.extra_bias"), JAMBA_DTYPE_F32, 1, {4}, x};
    tu_st_list_write(&e.list, e.file);
    jamba_model_params p = jamba_model_default_params();
    p.allow_unexpected_tensors = true;
    jamba_model *m = load(e.dir, &p);
    cr_assert_eq(jamba_model_n_warnings(m), 1);
    cr_assert(strstr(jamba_model_warning(m, 0), "model.layers.0.mamba.extra_bias") != NULL);
    cr_assert_null(jamba_model_warning(m, 1));
    jamba_model_free(m);
    discard(&e);
}

JB_TEST(bind, wrong_shape_names_tensor_and_both_shapes) {
    edited e = edit_fixture("tiny-hf");
    int64_t i = tu_st_list_find(&e.list, "model.layers.3.mamba.x_proj.weight");
    e.list.items[i].shape[0] = 10; /* the config implies dt_rank 1 + 2 * 4 = 9 rows; give 10 of 32 */
    e.list.items[i].shape[1] = 28;
    expect_load_failure(&e, NULL, MISMATCH,
                        (const char *[]){"model.layers.3.mamba.x_proj.weight", "has shape [10, 28]",
                                         "config.json implies [9, 32]", NULL});
}

JB_TEST(bind, vocab_mismatch_is_a_shape_error) {
    edited e = edit_fixture("tiny-hf");
    set_config_key(e.dir, "vocab_size", json_integer(65));
    expect_load_failure(&e, NULL, MISMATCH,
                        (const char *[]){"model.embed_tokens.weight", "has shape [64, 16]", "implies [65, 16]", NULL});
}

JB_TEST(bind, wrong_dtypes) {
    edited e = edit_fixture("tiny-hf");
    int64_t i = tu_st_list_find(&e.list, "model.layers.0.mamba.D");
    e.list.items[i].dtype = JAMBA_DTYPE_I32; /* same byte size as F32 */
    expect_load_failure(&e, NULL, MISMATCH, (const char *[]){"model.layers.0.mamba.D", "dtype I32", NULL});

    e = edit_fixture("tiny-hf");
    i = tu_st_list_find(&e.list, "model.layers.1.feed_forward.router.weight");
    e.list.items[i].dtype = JAMBA_DTYPE_I8;
    e.list.items[i].shape[1] = 16 * 4; /* same bytes, now int8 */
    expect_load_failure(&e, NULL, JAMBA_ERR_UNSUPPORTED,
                        (const char *[]){"model.layers.1.feed_forward.router.weight", "dtype I8", "quantized", NULL});
}

JB_TEST(bind, experts_of_one_layer_share_a_dtype) {
    edited e = edit_fixture("tiny-hf");
    /* store expert 3's matrices as F16 (half the bytes of the F32 originals; contents irrelevant) */
    static const char *const projs[] = {"gate_proj", "up_proj", "down_proj"};
    for (int p = 0; p < 3; p++) {
        char name[128];
        snprintf(name, sizeof name, "model.layers.3.feed_forward.experts.3.%s.weight", projs[p]);
        e.list.items[tu_st_list_find(&e.list, name)].dtype = JAMBA_DTYPE_F16;
    }
    expect_load_failure(&e, NULL, MISMATCH,
                        (const char *[]){"layer 3", "expert 3's gate_proj is stored as F16", "expert 0's as F32", NULL});

    /* one projection of expert 1 misnamed (a flipped bit, "down_pzoj") and stored as F16: the missing and
     * unexpected tensors are reported, not a dtype clash between experts */
    e = edit_fixture("tiny-hf");
    const int64_t i = tu_st_list_find(&e.list, "model.layers.3.feed_forward.experts.1.down_proj.weight");
    free((char *)e.list.items[i].name);
    e.list.items[i].name = strdup("model.layers.3.feed_forward.experts.1.down_pzoj.weight");
    e.list.items[i].dtype = JAMBA_DTYPE_F16;
    e.list.items[i].shape[1] /= 2; /* same bytes */
    expect_load_failure(&e, NULL, MISMATCH,
                        (const char *[]){"experts.1.down_proj.weight", "experts.1.down_pzoj.weight", NULL});
}

JB_TEST(bind, two_naming_schemes_for_one_tensor) {
    edited e = edit_fixture("tiny-hf");
    int64_t i = tu_st_list_find(&e.list, "model.layers.1.feed_forward.router.weight");
    jb_st_out_tensor copy = e.list.items[i];
    copy.name = strdup("model.layers.1.moe.router.weight");
    e.list.items[e.list.n++] = copy;
    expect_load_failure(&e, NULL, MISMATCH,
                        (const char *[]){"both \"model.layers.1.feed_forward.router.weight\" and "
                                         "\"model.layers.1.moe.router.weight\"",
                                         NULL});
}

JB_TEST(bind, tying_must_agree_with_the_file) {
    edited e = edit_fixture("tiny-hf");
    set_config_key(e.dir, "tie_word_embeddings", json_true());
    expect_load_failure(&e, NULL, MISMATCH,
                        (const char *[]){"lm_head.weight is stored but config.json sets tie_word_embeddings", NULL});
}

JB_TEST(bind, config_options_change_the_implied_tensors) {
    edited e = edit_fixture("tiny-hf");
    set_config_key(e.dir, "mamba_proj_bias", json_true());
    expect_load_failure(&e, NULL, MISMATCH,
                        (const char *[]){"model.layers.0.mamba.in_proj.bias", "model.layers.0.mamba.out_proj.bias",
                                         NULL});
    e = edit_fixture("tiny-hf");
    set_config_key(e.dir, "mamba_conv_bias", json_false());
    expect_load_failure(&e, NULL, MISMATCH, (const char *[]){"unexpected", "model.layers.0.mamba.conv1d.bias", NULL});
    e = edit_fixture("tiny-hf");
    set_config_key(e.dir, "num_experts", json_integer(5));
    expect_load_failure(&e, NULL, MISMATCH,
                        (const char *[]){"model.layers.1.feed_forward.router.weight", "implies [5, 16]", NULL});
}

static void remove_inner_norms(edited *e, int64_t layer) {
    static const char *const norms[] = {"dt_layernorm", "b_layernorm", "c_layernorm"};
    for (int k = 0; k < 3; k++) {
        char name[128];
        snprintf(name, sizeof name, "model.layers.%lld.mamba.%s.weight", (long long)layer, norms[k]);
        tu_st_list_remove(&e->list, name);
    }
}

static const char *find_warning(const jamba_model *m, const char *needle) {
    for (int64_t i = 0; i < jamba_model_n_warnings(m); i++)
        if (strstr(jamba_model_warning(m, i), needle) != NULL)
            return jamba_model_warning(m, i);
    return NULL;
}

JB_TEST(bind, inner_norms_off_in_config_follow_the_checkpoint) {
    /* stored although the config says false: applied, as transformers does */
    edited e = edit_fixture("tiny-hf");
    set_config_key(e.dir, "mamba_inner_layernorms", json_false());
    jamba_model *m = load(e.dir, NULL);
    cr_assert(jamba_model_config(m)->mamba_inner_layernorms, "the effective config applies the stored norms");
    cr_assert_not_null(m->weights.layers[3].mamba.c_norm.data);
    cr_assert_not_null(find_warning(m, "they are applied"));
    jamba_model *orig = load_fixture("tiny-hf");
    expect_same_weights(m, orig);
    jamba_param_counts a, b;
    cr_assert_eq(jamba_model_param_counts(m, &a, NULL), JAMBA_OK);
    cr_assert_eq(jamba_model_param_counts(orig, &b, NULL), JAMBA_OK);
    cr_assert_eq(a.total, b.total);
    jamba_model_free(orig);
    jamba_model_free(m);
    discard(&e);

    /* absent everywhere: skipped, as in AI21's original code */
    e = edit_fixture("tiny-hf");
    set_config_key(e.dir, "mamba_inner_layernorms", json_false());
    for (int64_t layer = 0; layer < 4; layer++)
        if (layer != 2)
            remove_inner_norms(&e, layer);
    tu_st_list_write(&e.list, e.file);
    m = load(e.dir, NULL);
    cr_assert_not(jamba_model_config(m)->mamba_inner_layernorms);
    cr_assert_null(m->weights.layers[0].mamba.dt_norm.data);
    cr_assert_not_null(find_warning(m, "skipped"));
    jamba_model_free(m);
    discard(&e);

    /* some layers with, some without: refused, naming both layers */
    e = edit_fixture("tiny-hf");
    set_config_key(e.dir, "mamba_inner_layernorms", json_false());
    remove_inner_norms(&e, 1);
    expect_load_failure(&e, NULL, MISMATCH, (const char *[]){"layer 1 lacks the dt/B/C norms but layer 0 does", NULL});

    /* one norm of three gone: that tensor is missing */
    e = edit_fixture("tiny-hf");
    set_config_key(e.dir, "mamba_inner_layernorms", json_false());
    tu_st_list_remove(&e.list, "model.layers.3.mamba.b_layernorm.weight");
    expect_load_failure(&e, NULL, MISMATCH,
                        (const char *[]){"1 tensor missing", "model.layers.3.mamba.b_layernorm.weight", NULL});
}

JB_TEST(bind, stacked_layout_with_one_half_missing) {
    edited e = edit_fixture("tiny-stacked");
    tu_st_list_remove(&e.list, "model.layers.3.feed_forward.experts.down_proj");
    expect_load_failure(&e, NULL, MISMATCH,
                        (const char *[]){"1 tensor missing", "model.layers.3.feed_forward.experts.down_proj", NULL});
}

JB_TEST(bind, check_finite_names_the_first_bad_element) {
    edited e = edit_fixture("tiny-hf");
    int64_t i = tu_st_list_find(&e.list, "model.layers.2.self_attn.k_proj.weight");
    size_t n = 8 * 16;
    float *poisoned = malloc(n * sizeof *poisoned);
    memcpy(poisoned, e.list.items[i].data, n * sizeof *poisoned);
    poisoned[37] = NAN;
    e.list.items[i].data = poisoned;
    tu_st_list_write(&e.list, e.file);
    jamba_model *m = load(e.dir, NULL); /* not scanned by default */
    jamba_model_free(m);
    jamba_model_params p = jamba_model_default_params();
    p.check_finite = true;
    expect_load_failure(&e, &p, MISMATCH,
                        (const char *[]){"model.layers.2.self_attn.k_proj.weight", "NaN or Inf at element 37", NULL});
    free(poisoned);
}

JB_TEST(bind, check_finite_passes_clean_models) {
    jamba_model_params p = jamba_model_default_params();
    p.check_finite = true;
    char *dir = tu_fixture("models/tiny-bf16");
    jamba_model_free(load(dir, &p));
    free(dir);
}

JB_TEST(bind, misaligned_data_is_accepted_and_reported) {
    /* A writer that pads the header to an odd length puts every tensor at an odd file offset. */
    char *src = tu_fixture("models/tiny-hf");
    char *dir = tu_clone_model(src);
    char *file = tu_path(dir, "model.safetensors");
    size_t n;
    uint8_t *orig = tu_read_file(file, &n);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | orig[i];
    uint8_t *odd = malloc(n + 1);
    uint64_t new_len = hlen + 1;
    for (int i = 0; i < 8; i++)
        odd[i] = (uint8_t)(new_len >> (8 * i));
    memcpy(odd + 8, orig + 8, hlen);
    odd[8 + hlen] = ' ';
    memcpy(odd + 9 + hlen, orig + 8 + hlen, n - 8 - hlen);
    tu_write_file(file, odd, n + 1);
    jamba_model *m = load(dir, NULL);
    jamba_tensor_info t;
    cr_assert_eq(jamba_model_tensor(m, 0, &t, NULL), JAMBA_OK);
    cr_assert(!t.aligned, "%s at offset %llu", t.name, (unsigned long long)t.file_offset);
    cr_assert_eq(t.file_offset % 2, 1);
    jamba_model_free(m);
    tu_rmtree(dir);
    free(odd);
    free(orig);
    free(file);
    free(dir);
    free(src);
}

/* ---- the tensors a config implies, and synthetic models built from them ----------------------------------- */

JB_TEST(bind, expected_tensors_are_exactly_a_checkpoints_tensors) {
    static const char *const fixtures[] = {"tiny-hf", "tiny-odd", "tiny-bf16"};
    for (int f = 0; f < 3; f++) {
        jamba_model *m = load_fixture(fixtures[f]);
        jb_tensor_spec *specs = NULL;
        int64_t n = 0;
        cr_assert_eq(jb_expected_tensors(&m->config, &specs, &n, NULL), JAMBA_OK);
        cr_assert_eq(n, jamba_model_n_tensors(m), "%s", fixtures[f]);
        for (int64_t i = 0; i < n; i++) {
            const jb_ckpt_entry *e = jb_checkpoint_find(&m->ckpt, specs[i].name);
            cr_assert_not_null(e, "%s: %s not stored", fixtures[f], specs[i].name);
            cr_assert_eq(e->tensor->rank, specs[i].rank, "%s", specs[i].name);
            for (int d = 0; d < specs[i].rank; d++)
                cr_assert_eq(e->tensor->shape[d], specs[i].shape[d], "%s dim %d", specs[i].name, d);
        }
        jb_free(specs);
        jamba_model_free(m);
    }
}

static char *fixture_config(const char *name) {
    char rel[128];
    snprintf(rel, sizeof rel, "models/%s/config.json", name);
    char *path = tu_fixture(rel);
    size_t len;
    char *text = (char *)tu_read_file(path, &len);
    char *z = malloc(len + 1);
    memcpy(z, text, len);
    z[len] = '\0';
    free(text);
    free(path);
    return z;
}

JB_TEST(bind, synthetic_models_load_and_run) {
    char *config = fixture_config("tiny-hf");
    for (int d = 0; d < 2; d++) {
        jamba_model *m = NULL;
        jamba_error err = {0};
        jamba_dtype dt = d ? JAMBA_DTYPE_BF16 : JAMBA_DTYPE_F32;
        cr_assert_eq(jb_synthetic_model(config, 42, dt, 2, &m, &err), JAMBA_OK, "%s", err.message);
        jamba_model *ref = load_fixture("tiny-hf");
        cr_assert_eq(jamba_model_n_tensors(m), jamba_model_n_tensors(ref));
        jamba_param_counts a, b;
        cr_assert_eq(jamba_model_param_counts(m, &a, NULL), JAMBA_OK);
        cr_assert_eq(jamba_model_param_counts(ref, &b, NULL), JAMBA_OK);
        cr_assert_eq(a.total, b.total);
        jamba_model_free(ref);
        /* it runs, with finite and not constant logits */
        jamba_context *ctx = NULL;
        cr_assert_eq(jamba_context_create(m, NULL, &ctx, &err), JAMBA_OK, "%s", err.message);
        int32_t ids[6] = {1, 5, 9, 2, 33, 7};
        jamba_seq_input in = {.seq = 0, .tokens = ids, .n_tokens = 6, .logits = JAMBA_LOGITS_LAST};
        cr_assert_eq(jamba_decode(ctx, &in, 1, &err), JAMBA_OK, "%s", err.message);
        const float *l = jamba_logits(ctx, 0, NULL);
        const int64_t V = jamba_model_config(m)->vocab_size;
        bool varied = false;
        for (int64_t i = 0; i < V; i++) {
            cr_assert(isfinite(l[i]), "logit %lld", (long long)i);
            varied |= l[i] != l[0];
        }
        cr_assert(varied);
        jamba_context_free(ctx);
        jamba_model_free(m);
    }
    /* a bad config is an error, not a crash */
    jamba_model *m = (jamba_model *)1;
    jamba_error err = {0};
    cr_assert_neq(jb_synthetic_model("{\"model_type\":\"llama\"}", 1, JAMBA_DTYPE_F32, 1, &m, &err), JAMBA_OK);
    cr_assert_null(m);
    cr_assert(strstr(err.message, "llama") != NULL, "%s", err.message);
    free(config);
}

JB_TEST(bind, a_schedule_mismatch_is_told_in_layers) {
    /* tiny-hf: 4 layers, attention at 2 (period 4, offset 2), MoE at odd layers; shift attention to 1 */
    edited e = edit_fixture("tiny-hf");
    set_config_key(e.dir, "attn_layer_offset", json_integer(1));
    expect_load_failure(&e, NULL, MISMATCH,
                        (const char *[]){"another layer schedule than config.json",
                                         "attention expected at layers 1, found at 2",
                                         "Mamba expected at layers 0, 2, 3, found at 0, 1, 3", NULL});
}

JB_TEST(bind, a_moe_schedule_mismatch_is_told_in_layers) {
    edited e = edit_fixture("tiny-hf");
    set_config_key(e.dir, "expert_layer_offset", json_integer(0));
    expect_load_failure(&e, NULL, MISMATCH,
                        (const char *[]){"MoE expected at layers 0, 2, found at 1, 3", NULL});
}

JB_TEST(bind, small_decisive_tensors_are_checked_at_every_load) {
    /* a non-finite value in a norm, a router, A_log or a conv bias is refused without check_finite */
    const char *names[] = {"model.final_layernorm.weight", "model.layers.1.feed_forward.router.weight",
                           "model.layers.0.mamba.A_log", "model.layers.0.mamba.conv1d.bias"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        edited e = edit_fixture("tiny-hf");
        int64_t i = tu_st_list_find(&e.list, names[k]);
        cr_assert_geq(i, 0, "%s", names[k]);
        const jb_st_out_tensor *t = &e.list.items[i];
        cr_assert_eq(t->dtype, JAMBA_DTYPE_F32);
        size_t n = 1;
        for (int d = 0; d < t->rank; d++)
            n *= (size_t)t->shape[d];
        float *poisoned = malloc(n * sizeof *poisoned);
        memcpy(poisoned, t->data, n * sizeof *poisoned);
        poisoned[1] = INFINITY;
        e.list.items[i].data = poisoned;
        expect_load_failure(&e, NULL, MISMATCH, (const char *[]){names[k], "NaN or Inf at element 1", NULL});
        free(poisoned);
    }
}
