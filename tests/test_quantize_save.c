/*
 * test_quantize_save.c — jamba_model_save round trips: bitwise-identical logits, I8 tensors with F32
 * "_scale" companions, no requantization on reload, every naming scheme and layout; and an int8 folder is
 * one model however it is loaded.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ckpt/checkpoint.h"
#include "ckpt/config.h"
#include "runtime/model.h"
#include "tests/support/quantize_util.h"
#include "tests/support/testutil.h"

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* The saved folder's checkpoint: expert matrices I8 [rows, cols] with "<name>_scale" F32 [rows], the
 * bytes of q's int8 copies; every other tensor as `src` stores it. Returns the number of I8 matrices. */
static int64_t expect_saved_int8_experts(const char *dir, const jamba_model *src, const jamba_model *q) {
    jb_checkpoint ck = {0};
    bool found = false;
    jamba_error err = {0};
    cr_assert_eq(jb_checkpoint_open(dir, &found, &ck, &err), JAMBA_OK, "%s", err.message);
    cr_assert(found);
    int64_t n_i8 = 0, n_scales = 0;
    for (int64_t i = 0; i < ck.n_entries; i++) {
        const jb_ckpt_entry *e = &ck.entries[i];
        const jb_st_tensor *t = e->tensor;
        if (ends_with(e->name, "_scale")) {
            n_scales++;
            continue;
        }
        if (strstr(e->name, ".feed_forward.experts.") != NULL) {
            cr_assert_eq(t->dtype, JAMBA_DTYPE_I8, "%s is %s", e->name, jamba_dtype_name(t->dtype));
            cr_assert_eq(t->rank, 2, "%s", e->name);
            char sname[256];
            snprintf(sname, sizeof sname, "%s_scale", e->name);
            const jb_ckpt_entry *s = jb_checkpoint_find(&ck, sname);
            cr_assert_not_null(s, "%s has no %s", e->name, sname);
            cr_assert_eq(s->tensor->dtype, JAMBA_DTYPE_F32, "%s", sname);
            cr_assert_eq(s->tensor->rank, 1, "%s", sname);
            cr_assert_eq(s->tensor->shape[0], t->shape[0], "%s", sname);
            /* the values and scales are the loaded model's int8 copy, byte for byte */
            long long layer, expert;
            char proj[16];
            cr_assert_eq(sscanf(e->name, "model.layers.%lld.feed_forward.experts.%lld.%15[a-z]_proj", &layer,
                                &expert, proj), 3, "%s", e->name);
            const jb_mlp_weights *x = &q->weights.layers[layer].experts[expert];
            const jb_weight *w = proj[0] == 'g' ? &x->gate_proj : proj[0] == 'u' ? &x->up_proj : &x->down_proj;
            cr_assert_eq(w->dtype, JAMBA_DTYPE_I8);
            cr_assert_eq(memcmp(jb_st_tensor_data(&ck.shards[e->shard], t), w->data, t->n_bytes), 0, "%s", e->name);
            cr_assert_eq(memcmp(jb_st_tensor_data(&ck.shards[s->shard], s->tensor), w->scale, s->tensor->n_bytes), 0,
                         "%s", sname);
            n_i8++;
        } else {
            const jb_ckpt_entry *o = jb_checkpoint_find(&src->ckpt, e->name);
            cr_assert_not_null(o, "%s is not in the source", e->name);
            cr_assert_eq(t->dtype, o->tensor->dtype, "%s changed dtype", e->name);
            cr_assert_eq(t->n_bytes, o->tensor->n_bytes, "%s", e->name);
            cr_assert_eq(memcmp(jb_st_tensor_data(&ck.shards[e->shard], t),
                                jb_st_tensor_data(&src->ckpt.shards[o->shard], o->tensor), t->n_bytes), 0,
                         "%s: bytes differ from the source", e->name);
        }
    }
    cr_assert_eq(n_scales, n_i8, "one scale tensor per int8 matrix");
    jb_checkpoint_close(&ck);
    return n_i8;
}

/* Each expert matrix of `m` points straight into its own checkpoint (bound, not requantized). */
static void expect_experts_mapped(const jamba_model *m) {
    const jamba_config *c = jamba_model_config(m);
    int64_t checked = 0;
    for (int64_t l = 0; l < c->num_hidden_layers; l++) {
        if (!jb_layer_is_moe(c, l))
            continue;
        for (int64_t e = 0; e < c->num_experts; e++) {
            char name[128];
            snprintf(name, sizeof name, "model.layers.%lld.feed_forward.experts.%lld.down_proj.weight", (long long)l,
                     (long long)e);
            const jb_ckpt_entry *ce = jb_checkpoint_find(&m->ckpt, name);
            cr_assert_not_null(ce, "%s", name);
            const jb_weight *w = &m->weights.layers[l].experts[e].down_proj;
            cr_assert_eq(w->dtype, JAMBA_DTYPE_I8, "%s", name);
            cr_assert_eq(w->data, jb_st_tensor_data(&m->ckpt.shards[ce->shard], ce->tensor),
                         "%s: not the stored tensor (requantized?)", name);
            checked++;
        }
    }
    cr_assert_gt(checked, 0);
}

JB_TEST(save, int8_demo_round_trips_bit_exactly) {
    jamba_model *q = qu_load_with(QU_DEMO, JAMBA_FORMAT_INT8, JAMBA_FORMAT_STORED);
    float *want = qu_all_logits(q, qu_probe, QU_N_PROBE);
    const int64_t V = jamba_model_config(q)->vocab_size;
    char *tmp = tu_tmpdir();
    char *out = tu_path(tmp, "demo-int8"); /* created by the save */
    jamba_error err = {0};
    cr_assert_eq(jamba_model_save(q, out, &err), JAMBA_OK, "%s", err.message);

    /* 4 MoE layers x 4 experts x 3 matrices, I8 with F32 row scales; the rest as stored */
    jamba_model *src = qu_load_plain(QU_DEMO);
    cr_assert_eq(expect_saved_int8_experts(out, src, q), 48);
    jamba_model_free(src);
    char *cfg_path = tu_path(out, "config.json");
    json_t *cfg = json_load_file(cfg_path, 0, NULL);
    cr_assert_not_null(cfg);
    cr_expect_str_eq(json_string_value(json_object_get(json_object_get(cfg, "quantization_config"), "quant_method")),
                     "jamba_int8");
    json_decref(cfg);
    free(cfg_path);
    char *tok_path = tu_path(out, "tokenizer.json");
    free(tu_read_file(tok_path, &(size_t){0})); /* the tokenizer came along */
    free(tok_path);

    /* loaded as stored, and with experts = int8 again (kept, not requantized): the same logits, bitwise */
    for (int pass = 0; pass < 2; pass++) {
        jamba_model *back = pass ? qu_load_with(out, JAMBA_FORMAT_INT8, JAMBA_FORMAT_STORED) : qu_load_plain(out);
        expect_experts_mapped(back);
        float *got = qu_all_logits(back, qu_probe, QU_N_PROBE);
        qu_expect_identical(got, want, QU_N_PROBE * V, pass ? "reloaded with experts int8" : "reloaded as stored");
        free(got);
        /* and the weights are byte-identical to the on-load int8 copy */
        const jb_weight *a = &back->weights.layers[1].experts[2].gate_proj;
        const jb_weight *b = &q->weights.layers[1].experts[2].gate_proj;
        cr_assert_eq(memcmp(a->data, b->data, (size_t)(a->shape[0] * a->shape[1])), 0);
        cr_assert_eq(memcmp(a->scale, b->scale, (size_t)a->shape[0] * sizeof(float)), 0);
        jamba_model_free(back);
    }
    free(want);
    jamba_model_free(q);
    tu_rmtree(tmp);
    free(out);
    free(tmp);
}

JB_TEST(save, int8_mlp_and_experts_round_trip) {
    jamba_model *q = qu_load_with(QU_DEMO, JAMBA_FORMAT_INT8, JAMBA_FORMAT_INT8);
    float *want = qu_all_logits(q, qu_probe, QU_N_PROBE);
    char *tmp = tu_tmpdir();
    jamba_error err = {0};
    cr_assert_eq(jamba_model_save(q, tmp, &err), JAMBA_OK, "%s", err.message); /* an existing empty folder */
    jamba_model *back = qu_load_with(tmp, JAMBA_FORMAT_INT8, JAMBA_FORMAT_INT8);
    cr_assert_eq(back->weights.layers[0].mlp.up_proj.dtype, JAMBA_DTYPE_I8);
    cr_assert_not_null(jb_checkpoint_find(&back->ckpt, "model.layers.0.feed_forward.up_proj.weight_scale"));
    float *got = qu_all_logits(back, qu_probe, QU_N_PROBE);
    qu_expect_identical(got, want, QU_N_PROBE * jamba_model_config(q)->vocab_size, "experts + mlp int8 reloaded");
    free(got);
    jamba_model_free(back);
    free(want);
    jamba_model_free(q);
    tu_rmtree(tmp);
    free(tmp);
}

/* Save `dir` loaded with the formats f, reload as stored: the same logits, bit for bit. */
static void expect_round_trip(const char *dir, qu_formats f) {
    jamba_model *m = qu_load_formats(dir, f);
    const int64_t V = jamba_model_config(m)->vocab_size;
    int32_t ids[QU_N_PROBE];
    qu_small_probe(ids, V);
    float *want = qu_all_logits(m, ids, QU_N_PROBE);
    char *tmp = tu_tmpdir();
    jamba_error err = {0};
    cr_assert_eq(jamba_model_save(m, tmp, &err), JAMBA_OK, "%s: %s", dir, err.message);
    jamba_model *back = qu_load_plain(tmp);
    float *got = qu_all_logits(back, ids, QU_N_PROBE);
    qu_expect_identical(got, want, QU_N_PROBE * V, dir);
    const bool requantized = f.experts == JAMBA_FORMAT_INT8 || f.mlp == JAMBA_FORMAT_INT8 ||
                             f.mixers == JAMBA_FORMAT_INT8 || f.lm_head == JAMBA_FORMAT_INT8;
    char *cfg_path = tu_path(tmp, "config.json");
    json_t *cfg = json_load_file(cfg_path, 0, NULL);
    cr_assert_not_null(cfg);
    cr_expect_eq(json_object_get(cfg, "quantization_config") != NULL, requantized, "%s", dir);
    json_decref(cfg);
    free(cfg_path);
    free(got);
    free(want);
    jamba_model_free(back);
    jamba_model_free(m);
    tu_rmtree(tmp);
    free(tmp);
}

JB_TEST(save, naming_schemes_layouts_and_tying_round_trip) {
    static const char *const dirs[] = {"forward/mini-ai21/model", "forward/mini-stacked/model",
                                       "forward/mini-bf16/model", "forward/odd-shapes/model",
                                       "models/tiny-tied",        "models/tiny-hf-sharded"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        char *dir = tu_fixture(dirs[i]);
        const jamba_weight_format I8 = JAMBA_FORMAT_INT8, ST = JAMBA_FORMAT_STORED;
        expect_round_trip(dir, QU_ALL_INT8); /* tiny-tied: the shared embedding int8 */
        expect_round_trip(dir, (qu_formats){I8, I8, ST, ST});
        expect_round_trip(dir, (qu_formats){I8, ST, ST, ST});
        expect_round_trip(dir, (qu_formats){ST, ST, ST, ST});
        free(dir);
    }
    /* mamba_inner_layernorms = false, with the dt/B/C norms stored and without them */
    for (int stored = 0; stored < 2; stored++) {
        tensor_list l = {0};
        char *text = qu_fixture_tensors("tiny-hf", &l);
        json_t *cfg = json_loads(text, 0, NULL);
        cr_assert_not_null(cfg);
        json_object_set_new(cfg, "mamba_inner_layernorms", json_false());
        char *edited = json_dumps(cfg, 0);
        for (int layer = 0; !stored && layer < 4; layer++) {
            if (layer == 2)
                continue; /* attention */
            static const char *const norms[] = {"dt_layernorm", "b_layernorm", "c_layernorm"};
            for (int k = 0; k < 3; k++) {
                char name[96];
                snprintf(name, sizeof name, "model.layers.%d.mamba.%s.weight", layer, norms[k]);
                tl_remove(&l, name);
            }
        }
        char *dir = qu_folder_of(edited, &l);
        expect_round_trip(dir, QU_ALL_INT8);
        tu_rmtree(dir);
        free(dir);
        free(edited);
        json_decref(cfg);
        free(text);
        tl_free(&l);
    }
}

JB_TEST(save, refuses_its_own_folder_and_models_without_weights) {
    jamba_model *m = qu_load_plain(QU_DEMO);
    jamba_error err = {0};
    cr_expect_eq(jamba_model_save(m, QU_DEMO, &err), JAMBA_ERR_INVALID_ARGUMENT, "%s", err.message);
    cr_expect(strstr(err.message, "own folder") != NULL, "%s", err.message);
    cr_expect_eq(jamba_model_save(NULL, "/tmp", NULL), JAMBA_ERR_INVALID_ARGUMENT);
    cr_expect_eq(jamba_model_save(m, "", NULL), JAMBA_ERR_INVALID_ARGUMENT);
    jamba_model_free(m);

    /* the model's own folder however it is spelled: refused, and the checkpoint is left alone */
    char *copy = tu_clone_model(QU_DEMO);
    char *file = tu_path(copy, "model.safetensors");
    size_t before_len, after_len;
    uint8_t *before = tu_read_file(file, &before_len);
    m = qu_load_with(copy, JAMBA_FORMAT_INT8, JAMBA_FORMAT_STORED);
    char *parent = tu_tmpdir();
    char *link = tu_path(parent, "link");
    cr_assert_eq(symlink(copy, link), 0);
    char slash[1024], dot[1024];
    snprintf(slash, sizeof slash, "%s/", copy);
    snprintf(dot, sizeof dot, "%s/.", copy);
    const char *const spellings[] = {copy, slash, dot, link};
    for (int i = 0; i < 4; i++) {
        err = (jamba_error){0};
        cr_expect_eq(jamba_model_save(m, spellings[i], &err), JAMBA_ERR_INVALID_ARGUMENT, "%s: %s", spellings[i],
                     err.message);
        cr_expect(strstr(err.message, "own folder") != NULL, "%s", err.message);
    }
    jamba_model_free(m);
    uint8_t *after = tu_read_file(file, &after_len);
    cr_assert(before_len == after_len && memcmp(before, after, before_len) == 0, "the source checkpoint changed");
    free(before);
    free(after);
    tu_rmtree(parent);
    tu_rmtree(copy);
    free(link);
    free(parent);
    free(file);
    free(copy);

    jamba_model_params p = jamba_model_default_params();
    p.weights = JAMBA_WEIGHTS_NONE;
    cr_assert_eq(jamba_model_load(QU_DEMO, &p, &m, &err), JAMBA_OK, "%s", err.message);
    char *tmp = tu_tmpdir();
    cr_expect_eq(jamba_model_save(m, tmp, &err), JAMBA_ERR_NO_WEIGHTS, "%s", err.message);
    jamba_model_free(m);
    tu_rmtree(tmp);
    free(tmp);
}

/* An int8 folder loaded as stored and loaded with experts = int8 is one model: the memory figure counts
 * the held bytes, and a sequence state saved on one restores on the other (the fingerprint agrees). */
JB_TEST(save, int8_folder_is_one_model_however_loaded) {
    jamba_model *q = qu_load_with(QU_DEMO, JAMBA_FORMAT_INT8, JAMBA_FORMAT_STORED), *plain = qu_load_plain(QU_DEMO);
    jamba_memory_estimate mq, mp;
    jamba_error err = {0};
    cr_assert_eq(jamba_model_memory(q, NULL, &mq, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(jamba_model_memory(plain, NULL, &mp, &err), JAMBA_OK, "%s", err.message);
    cr_assert_lt(mq.weight_bytes, mp.weight_bytes, "int8 experts hold fewer bytes (%llu vs %llu)",
                 (unsigned long long)mq.weight_bytes, (unsigned long long)mp.weight_bytes);
    char *tmp = tu_tmpdir();
    char *out = tu_path(tmp, "demo-int8");
    cr_assert_eq(jamba_model_save(q, out, &err), JAMBA_OK, "%s", err.message);
    jamba_model *a = qu_load_plain(out), *b = qu_load_with(out, JAMBA_FORMAT_INT8, JAMBA_FORMAT_STORED);
    jamba_memory_estimate ma;
    cr_assert_eq(jamba_model_memory(a, NULL, &ma, &err), JAMBA_OK);
    cr_assert_eq(ma.weight_bytes, mq.weight_bytes, "saved %llu, held %llu", (unsigned long long)ma.weight_bytes,
                 (unsigned long long)mq.weight_bytes);
    jamba_context *ca = NULL, *cb = NULL;
    cr_assert_eq(jamba_context_create(a, NULL, &ca, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(jamba_context_create(b, NULL, &cb, &err), JAMBA_OK, "%s", err.message);
    jamba_seq_input in = {.seq = 0, .tokens = qu_probe, .n_tokens = QU_N_PROBE, .logits = JAMBA_LOGITS_NONE};
    cr_assert_eq(jamba_decode(ca, &in, 1, &err), JAMBA_OK, "%s", err.message);
    char *state = tu_path(tmp, "state.bin");
    cr_assert_eq(jamba_seq_save(ca, 0, state, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(jamba_seq_restore(cb, 0, state, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(jamba_seq_length(cb, 0), QU_N_PROBE);
    jamba_context_free(ca);
    jamba_context_free(cb);
    jamba_model_free(a);
    jamba_model_free(b);
    jamba_model_free(q);
    jamba_model_free(plain);
    tu_rmtree(tmp);
    free(state);
    free(out);
    free(tmp);
}
