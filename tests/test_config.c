/*
 * test_config.c — config.json: reference defaults, "auto" dt_rank, eos forms, every validation rule of
 * reliability.md §5.1, and the derived schedule and parameter counts for released and ablation-style
 * configurations.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt/config.h"
#include "ckpt/sizing.h"
#include "tests/support/testutil.h"

static jamba_status parse(const char *json, jamba_config *c, jb_strlist *notes, jamba_error *err) {
    return jb_config_parse(json, strlen(json), "config.json", c, notes, err);
}

static jamba_config parse_ok(const char *json) {
    jamba_config c;
    jamba_error err = {0};
    cr_assert_eq(parse(json, &c, NULL, &err), JAMBA_OK, "%s: %s", json, err.message);
    return c;
}

/* Expect failure with `want`, and a one-line message naming config.json and containing `needle`. */
static void expect_reject(const char *json, jamba_status want, const char *needle) {
    jamba_config c;
    jamba_error err = {0};
    jamba_status st = parse(json, &c, NULL, &err);
    cr_expect_eq(st, want, "%s -> %d (%s)", json, st, err.message);
    cr_expect(strstr(err.message, "config.json") != NULL, "%s", err.message);
    cr_expect(strstr(err.message, needle) != NULL, "'%s' should contain '%s'", err.message, needle);
}

#define J(body) "{\"model_type\":\"jamba\"" body "}"
#define BAD JAMBA_ERR_BAD_CONFIG

JB_TEST(config, defaults_reproduce_jamba_v0_1) {
    jamba_config c = parse_ok(J(""));
    cr_assert_eq(c.vocab_size, 65536);
    cr_assert_eq(c.hidden_size, 4096);
    cr_assert_eq(c.intermediate_size, 14336);
    cr_assert_eq(c.num_hidden_layers, 32);
    cr_assert_eq(c.num_attention_heads, 32);
    cr_assert_eq(c.num_key_value_heads, 8);
    cr_assert_eq(c.head_dim, 128);
    cr_assert_eq(c.num_experts, 16);
    cr_assert_eq(c.num_experts_per_tok, 2);
    cr_assert_eq(c.expert_layer_period, 2);
    cr_assert_eq(c.expert_layer_offset, 1);
    cr_assert_eq(c.attn_layer_period, 8);
    cr_assert_eq(c.attn_layer_offset, 4);
    cr_assert_eq(c.mamba_d_state, 16);
    cr_assert_eq(c.mamba_d_conv, 4);
    cr_assert_eq(c.mamba_expand, 2);
    cr_assert_eq(c.mamba_d_inner, 8192);
    cr_assert_eq(c.mamba_dt_rank, 256);
    cr_assert(c.mamba_conv_bias);
    cr_assert(!c.mamba_proj_bias);
    cr_assert(c.mamba_inner_layernorms);
    cr_assert(!c.tie_word_embeddings);
    cr_assert_float_eq(c.rms_norm_eps, 1e-6, 1e-18);
    cr_assert_eq(c.max_position_embeddings, 262144);
    cr_assert_eq(c.sliding_window, 0);
    cr_assert_eq(c.pad_token_id, 0);
    cr_assert_eq(c.bos_token_id, 1);
    cr_assert_eq(c.n_eos_token_ids, 1);
    cr_assert_eq(c.eos_token_ids[0], 2);
    cr_assert_eq(c.torch_dtype, JAMBA_DTYPE_UNKNOWN);
}

JB_TEST(config, dt_rank_auto_and_explicit) {
    cr_assert_eq(parse_ok(J(",\"mamba_dt_rank\":\"auto\"")).mamba_dt_rank, 256);
    cr_assert_eq(parse_ok(J(",\"hidden_size\":8192,\"num_attention_heads\":64,\"mamba_dt_rank\":\"auto\"")).mamba_dt_rank,
                 512);
    cr_assert_eq(parse_ok(J(",\"hidden_size\":100,\"num_attention_heads\":4,\"num_key_value_heads\":4")).mamba_dt_rank, 7); /* ceil(100/16) */
    cr_assert_eq(parse_ok(J(",\"mamba_dt_rank\":null")).mamba_dt_rank, 256);
    cr_assert_eq(parse_ok(J(",\"mamba_dt_rank\":33")).mamba_dt_rank, 33);
    expect_reject(J(",\"mamba_dt_rank\":\"big\""), BAD, "mamba_dt_rank");
    expect_reject(J(",\"mamba_dt_rank\":0"), BAD, "mamba_dt_rank");
    expect_reject(J(",\"mamba_dt_rank\":-3"), BAD, "mamba_dt_rank");
    expect_reject(J(",\"mamba_dt_rank\":1.5"), BAD, "mamba_dt_rank");
    expect_reject(J(",\"mamba_dt_rank\":[1]"), BAD, "mamba_dt_rank");
}

JB_TEST(config, eos_as_int_list_or_null) {
    jamba_config c = parse_ok(J(",\"eos_token_id\":[2,518]"));
    cr_assert_eq(c.n_eos_token_ids, 2);
    cr_assert_eq(c.eos_token_ids[1], 518);
    c = parse_ok(J(",\"eos_token_id\":7"));
    cr_assert_eq(c.n_eos_token_ids, 1);
    cr_assert_eq(c.eos_token_ids[0], 7);
    cr_assert_eq(parse_ok(J(",\"eos_token_id\":null")).n_eos_token_ids, 0);
    cr_assert_eq(parse_ok(J(",\"eos_token_id\":[]")).n_eos_token_ids, 0);
    expect_reject(J(",\"eos_token_id\":65536"), BAD, "eos_token_id");
    expect_reject(J(",\"eos_token_id\":[2,-1]"), BAD, "eos_token_id");
    expect_reject(J(",\"eos_token_id\":[2,\"x\"]"), BAD, "eos_token_id");
    expect_reject(J(",\"eos_token_id\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]"), BAD, "more than 16");
    expect_reject(J(",\"eos_token_id\":\"2\""), BAD, "eos_token_id");
}

JB_TEST(config, token_ids_in_vocab) {
    jamba_config c = parse_ok(J(",\"pad_token_id\":null,\"bos_token_id\":null"));
    cr_assert_eq(c.pad_token_id, -1);
    cr_assert_eq(c.bos_token_id, -1);
    expect_reject(J(",\"pad_token_id\":-1"), BAD, "pad_token_id");
    expect_reject(J(",\"bos_token_id\":70000"), BAD, "bos_token_id");
    expect_reject(J(",\"vocab_size\":10,\"bos_token_id\":10"), BAD, "outside the vocabulary");
    /* a tiny vocabulary drops defaults that do not fit instead of failing */
    c = parse_ok(J(",\"vocab_size\":2"));
    cr_assert_eq(c.bos_token_id, 1);
    cr_assert_eq(c.n_eos_token_ids, 0);
}

JB_TEST(config, key_value_heads_null_means_all_heads) {
    jamba_config c = parse_ok(J(",\"num_key_value_heads\":null"));
    cr_assert_eq(c.num_key_value_heads, 32);
}

JB_TEST(config, integral_reals_accepted_fractions_rejected) {
    cr_assert_eq(parse_ok(J(",\"hidden_size\":4096.0")).hidden_size, 4096);
    expect_reject(J(",\"hidden_size\":4096.5"), BAD, "\"hidden_size\" is 4096.5");
    expect_reject(J(",\"hidden_size\":\"4096\""), BAD, "\"hidden_size\" is a string");
    expect_reject(J(",\"hidden_size\":true"), BAD, "\"hidden_size\" is a boolean");
    expect_reject(J(",\"num_hidden_layers\":[32]"), BAD, "num_hidden_layers");
    expect_reject(J(",\"mamba_conv_bias\":1"), BAD, "mamba_conv_bias");
    expect_reject(J(",\"tie_word_embeddings\":\"no\""), BAD, "tie_word_embeddings");
}

JB_TEST(config, sizes_must_be_positive_and_capped) {
    static const char *const fields[] = {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                                         "num_attention_heads", "num_key_value_heads", "num_experts",
                                         "num_experts_per_tok", "mamba_d_state", "mamba_d_conv", "mamba_expand",
                                         "max_position_embeddings", "attn_layer_period", "expert_layer_period"};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        char json[256];
        snprintf(json, sizeof json, J(",\"%s\":0"), fields[i]);
        expect_reject(json, BAD, fields[i]);
        snprintf(json, sizeof json, J(",\"%s\":-5"), fields[i]);
        expect_reject(json, BAD, fields[i]);
        snprintf(json, sizeof json, J(",\"%s\":9223372036854775807"), fields[i]);
        expect_reject(json, BAD, fields[i]);
    }
    expect_reject(J(",\"num_hidden_layers\":1025"), BAD, "[1, 1024]");
    expect_reject(J(",\"mamba_d_state\":257"), BAD, "mamba_d_state");
    expect_reject(J(",\"vocab_size\":99999999999999999999"), BAD, "invalid JSON"); /* beyond 64 bits */
    expect_reject(J(",\"hidden_size\":65536,\"mamba_expand\":32,\"num_attention_heads\":64"), BAD, "mamba_expand");
}

JB_TEST(config, cross_field_rules) {
    expect_reject(J(",\"attn_layer_offset\":8"), BAD, "attn_layer_offset 8 must be smaller than attn_layer_period 8");
    expect_reject(J(",\"expert_layer_offset\":2"), BAD, "expert_layer_offset");
    expect_reject(J(",\"hidden_size\":4000,\"num_attention_heads\":3"), BAD, "not divisible by num_attention_heads");
    expect_reject(J(",\"num_key_value_heads\":5"), BAD, "not divisible by num_key_value_heads");
    /* head counts only matter where attention layers exist: a pure-Mamba config loads with head_dim 0 */
    jamba_config pure = parse_ok(J(",\"hidden_size\":4000,\"num_attention_heads\":3,\"num_key_value_heads\":2,"
                                   "\"num_hidden_layers\":4,\"attn_layer_offset\":6"));
    cr_assert_eq(pure.n_attention_layers, 0);
    cr_assert_eq(pure.head_dim, 0);
    expect_reject(J(",\"hidden_size\":4000,\"num_attention_heads\":3,\"num_hidden_layers\":8,"
                    "\"attn_layer_offset\":6"), BAD, "not divisible by num_attention_heads");
    expect_reject(J(",\"num_experts_per_tok\":17"), BAD, "num_experts_per_tok 17 exceeds num_experts 16");
    /* with a single expert (dense model) top-k is unused, as in the reference */
    cr_assert_eq(parse_ok(J(",\"num_experts\":1,\"num_experts_per_tok\":2")).n_moe_layers, 0);
    /* the reference's own offset test: period 4 accepts offsets 0..3, rejects 4 and 5 */
    for (int off = 0; off < 6; off++) {
        char json[128];
        snprintf(json, sizeof json, J(",\"attn_layer_period\":4,\"attn_layer_offset\":%d"), off);
        jamba_config c;
        cr_expect_eq(parse(json, &c, NULL, NULL), off < 4 ? JAMBA_OK : BAD, "offset %d", off);
    }
}

JB_TEST(config, eps_must_be_a_positive_number) {
    cr_assert_float_eq(parse_ok(J(",\"rms_norm_eps\":1e-05")).rms_norm_eps, 1e-5, 1e-15);
    expect_reject(J(",\"rms_norm_eps\":0"), BAD, "rms_norm_eps");
    expect_reject(J(",\"rms_norm_eps\":-1e-6"), BAD, "rms_norm_eps");
    expect_reject(J(",\"rms_norm_eps\":2"), BAD, "rms_norm_eps");
    expect_reject(J(",\"rms_norm_eps\":\"1e-6\""), BAD, "rms_norm_eps");
}

JB_TEST(config, model_type_and_activation) {
    expect_reject("{}", BAD, "model_type\" is missing");
    expect_reject("{\"model_type\":\"llama\"}", JAMBA_ERR_UNSUPPORTED, "model_type \"llama\" is not supported");
    expect_reject("{\"model_type\":7}", BAD, "model_type");
    expect_reject(J(",\"hidden_act\":\"gelu\""), JAMBA_ERR_UNSUPPORTED, "hidden_act gelu");
    parse_ok(J(",\"hidden_act\":\"silu\""));
}

JB_TEST(config, malformed_json) {
    expect_reject("", BAD, "invalid JSON");
    expect_reject("[1,2]", BAD, "top-level JSON value is an array");
    expect_reject("{\"model_type\":\"jamba\",\"hidden_size\":1,\"hidden_size\":2}", BAD, "duplicate");
    expect_reject("{\"model_type\":\"jamba\",}", BAD, "invalid JSON");
    expect_reject("{\"model_type\":\"jamba\"} {}", BAD, "invalid JSON");
}

JB_TEST(config, torch_dtype_and_aliases) {
    cr_assert_eq(parse_ok(J(",\"torch_dtype\":\"bfloat16\"")).torch_dtype, JAMBA_DTYPE_BF16);
    cr_assert_eq(parse_ok(J(",\"dtype\":\"float32\"")).torch_dtype, JAMBA_DTYPE_F32);
    cr_assert_eq(parse_ok(J(",\"n_ctx\":4096")).max_position_embeddings, 4096); /* AI21 remote-code name */
    cr_assert_eq(parse_ok(J(",\"n_ctx\":4096,\"max_position_embeddings\":8192")).max_position_embeddings, 8192);
    cr_assert(!parse_ok(J(",\"mamba_inner_layernorms\":false")).mamba_inner_layernorms);
}

JB_TEST(config, unknown_keys_and_ignored_settings_become_notes) {
    jb_strlist notes = {0};
    jamba_config c;
    cr_assert_eq(parse(J(",\"my_new_knob\":3,\"sliding_window\":4096,\"use_mamba_kernels\":true,"
                         "\"architectures\":[\"JambaForCausalLM\"],\"torch_dtype\":\"float8\""),
                       &c, &notes, NULL),
                 JAMBA_OK);
    cr_assert_eq(notes.n, 3, "notes: %lld", (long long)notes.n);
    int unknown = 0, window = 0, dtype = 0;
    for (int64_t i = 0; i < notes.n; i++) {
        unknown += strstr(notes.items[i], "my_new_knob") != NULL;
        window += strstr(notes.items[i], "sliding_window 4096 ignored") != NULL;
        dtype += strstr(notes.items[i], "float8") != NULL;
    }
    cr_assert(unknown == 1 && window == 1 && dtype == 1);
    cr_assert_eq(c.sliding_window, 4096);
    jb_strlist_free(&notes);
}

/* ---- schedules and counts --------------------------------------------------------------------- */

static jamba_config load_release(const char *name) {
    char *dir = tu_path(JB_SOURCE_DIR "/models/configs", name);
    jamba_config c;
    jamba_error err = {0};
    cr_assert_eq(jb_config_load(dir, &c, NULL, &err), JAMBA_OK, "%s", err.message);
    free(dir);
    return c;
}

static void expect_schedule(const jamba_config *c, const char *mixers, const char *ffns) {
    cr_assert_eq((size_t)c->num_hidden_layers, strlen(mixers));
    for (int64_t i = 0; i < c->num_hidden_layers; i++) {
        cr_expect_eq(jb_layer_is_attention(c, i), mixers[i] == 'A', "layer %lld mixer", (long long)i);
        cr_expect_eq(jb_layer_is_moe(c, i), ffns[i] == 'E', "layer %lld ffn", (long long)i);
    }
}

static jamba_param_counts counts(const jamba_config *c) {
    jamba_param_counts p;
    cr_assert_eq(jb_param_counts(c, &p, NULL), JAMBA_OK);
    return p;
}

JB_TEST(schedule, jamba_1_5_mini) {
    jamba_config c = load_release("jamba-1.5-mini");
    const char *block = "MMMMAMMM";
    char mixers[33] = {0}, ffns[33] = {0};
    for (int i = 0; i < 32; i++) {
        mixers[i] = block[i % 8];
        ffns[i] = i % 2 ? 'E' : 'd';
    }
    expect_schedule(&c, mixers, ffns);
    cr_assert_eq(c.n_attention_layers, 4);
    cr_assert_eq(c.n_mamba_layers, 28);
    cr_assert_eq(c.n_moe_layers, 16);
    cr_assert_eq(c.n_dense_layers, 16);
    cr_assert_eq(c.n_eos_token_ids, 2);
    jamba_param_counts p = counts(&c);
    cr_assert_eq(p.total, 51570323328ull);
    cr_assert_eq(p.active, 12110311296ull);
    cr_assert_eq(p.mamba / 28, 105308448ull);
    uint64_t kv, mamba;
    cr_assert_eq(jb_state_sizes(&c, JAMBA_DTYPE_BF16, JAMBA_DTYPE_BF16, &kv, &mamba, NULL), JAMBA_OK);
    cr_assert_eq(kv, 16384);                  /* 16 KiB per token */
    cr_assert_eq(kv * 262144, 4ull << 30);    /* exactly 4 GiB at 256K */
    cr_assert_eq(mamba, 28ull * 8192 * (3 * 2 + 16 * 4));
}

JB_TEST(schedule, jamba_v0_1_matches_mini) {
    jamba_config c = load_release("jamba-v0.1");
    jamba_param_counts p = counts(&c);
    cr_assert_eq(p.total, 51570323328ull);
    cr_assert_eq(p.active, 12110311296ull);
    cr_assert_eq(c.n_eos_token_ids, 1);
}

JB_TEST(schedule, jamba_1_5_large) {
    jamba_config c = load_release("jamba-1.5-large");
    cr_assert_eq(c.mamba_dt_rank, 512);
    cr_assert_eq(c.n_attention_layers, 9);
    cr_assert_eq(c.n_mamba_layers, 63);
    cr_assert_eq(c.n_moe_layers, 36);
    for (int64_t i = 4; i < 72; i += 8)
        cr_assert(jb_layer_is_attention(&c, i) && !jb_layer_is_moe(&c, i));
    jamba_param_counts p = counts(&c);
    cr_assert_eq(p.total, 398555145696ull);
    cr_assert_eq(p.active, 94149338592ull);
    uint64_t kv, mamba;
    cr_assert_eq(jb_state_sizes(&c, JAMBA_DTYPE_BF16, JAMBA_DTYPE_BF16, &kv, &mamba, NULL), JAMBA_OK);
    cr_assert_eq(kv * 262144, 9ull << 30);
}

JB_TEST(schedule, ablations) {
    /* pure Mamba with MoE: no layer index reaches the attention offset */
    jamba_config c = parse_ok(J(",\"num_hidden_layers\":8,\"attn_layer_period\":9,\"attn_layer_offset\":8"));
    expect_schedule(&c, "MMMMMMMM", "dEdEdEdE");
    /* pure attention, dense */
    c = parse_ok(J(",\"num_hidden_layers\":4,\"attn_layer_period\":1,\"attn_layer_offset\":0,\"num_experts\":1"));
    expect_schedule(&c, "AAAA", "dddd");
    jamba_param_counts p = counts(&c);
    cr_assert_eq(p.total, p.active);
    cr_assert_eq(p.mamba, 0);
    /* dense hybrid at 1:3 */
    c = parse_ok(J(",\"num_hidden_layers\":8,\"attn_layer_period\":4,\"attn_layer_offset\":3,\"num_experts\":1"));
    expect_schedule(&c, "MMMAMMMA", "dddddddd");
    /* MoE on every layer, top-1 */
    c = parse_ok(J(",\"num_hidden_layers\":4,\"expert_layer_period\":1,\"expert_layer_offset\":0,"
                   "\"num_experts_per_tok\":1,\"attn_layer_period\":4,\"attn_layer_offset\":0"));
    expect_schedule(&c, "AMMM", "EEEE");
    p = counts(&c);
    cr_assert_eq(p.total - p.active, 4ull * 15 * 3 * 14336 * 4096); /* 15 of 16 experts idle per layer */
    /* offsets other than the released ones */
    c = parse_ok(J(",\"num_hidden_layers\":6,\"attn_layer_period\":3,\"attn_layer_offset\":0,"
                   "\"expert_layer_period\":3,\"expert_layer_offset\":2"));
    expect_schedule(&c, "AMMAMM", "ddEddE");
}

JB_TEST(schedule, counts_match_hand_arithmetic_for_small_config) {
    /* H 8, I 12, V 10, 2 layers: layer 0 Mamba + dense, layer 1 attention + MoE(3 experts, top 2) */
    jamba_config c = parse_ok(J(",\"vocab_size\":10,\"hidden_size\":8,\"intermediate_size\":12,\"num_hidden_layers\":2,"
                                "\"num_attention_heads\":2,\"num_key_value_heads\":1,\"num_experts\":3,"
                                "\"attn_layer_period\":2,\"attn_layer_offset\":1,\"mamba_d_state\":4,"
                                "\"mamba_d_conv\":4,\"mamba_expand\":2,\"mamba_dt_rank\":2,\"bos_token_id\":1,"
                                "\"eos_token_id\":2,\"pad_token_id\":0"));
    jamba_param_counts p = counts(&c);
    /* Mamba, D_i = 16: in 32*8 + conv 16*4 + bias 16 + x_proj (2+8)*16 + dt 16*2 + 16 + A 16*4 + D 16
     * + out 8*16 + norms 2+4+4 */
    uint64_t mamba = 256 + 64 + 16 + 160 + 32 + 16 + 64 + 16 + 128 + 10;
    uint64_t attn = 8 * 8 + 2 * 4 * 8 + 8 * 8; /* q, k+v (1 head of 4), o */
    uint64_t dense = 3 * 12 * 8, experts = 3 * dense, router = 3 * 8;
    cr_assert_eq(p.mamba, mamba);
    cr_assert_eq(p.attention, attn);
    cr_assert_eq(p.dense_mlp, dense);
    cr_assert_eq(p.experts, experts);
    cr_assert_eq(p.routers, router);
    cr_assert_eq(p.norms, 2 * 2 * 8 + 8);
    cr_assert_eq(p.total, 80 + 80 + mamba + attn + dense + experts + router + 40);
    cr_assert_eq(p.active, p.total - dense); /* one of three experts idle */
}

/* ---- files ------------------------------------------------------------------------------------ */

JB_TEST(config, file_errors_name_the_file) {
    char *dir = tu_tmpdir();
    jamba_config c;
    jamba_error err = {0};
    cr_assert_eq(jb_config_load(dir, &c, NULL, &err), JAMBA_ERR_IO);
    cr_assert(strstr(err.message, "config.json: cannot open") != NULL, "%s", err.message);
    char *path = tu_path(dir, "config.json");
    size_t big = (4u << 20) + 1;
    char *junk = malloc(big);
    memset(junk, ' ', big);
    tu_write_file(path, junk, big);
    cr_assert_eq(jb_config_load(dir, &c, NULL, &err), BAD);
    cr_assert(strstr(err.message, "limit") != NULL, "%s", err.message);
    free(junk);
    tu_rmtree(dir);
    free(path);
    free(dir);
}
