/*
 * test_quantize_accuracy.c — the accuracy of load-time int8 weights (experts, dense MLPs, and every
 * projection matrix: mixers and LM head too; and with int8 activations), and of bf16 activations for bf16
 * weights, on the demo model and the forward fixtures: top-1 agreement and perplexity against the stored
 * weights with fp32 activations.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/model.h"
#include "tests/support/quantize_util.h"
#include "tests/support/reference.h"
#include "tests/support/testutil.h"

/* A near-tie: the top two logits closer than this fraction of the row's range. */
#define TIE 1e-3

/* Sum of -log p(tokens[t+1] | ..t) over the T-1 predicted positions. */
static double total_nll(const float *logits, const int32_t *tokens, int64_t T, int64_t V) {
    double sum = 0;
    for (int64_t t = 0; t + 1 < T; t++) {
        const float *l = logits + t * V;
        double mx = l[tu_argmax(l, V)], z = 0;
        for (int64_t v = 0; v < V; v++)
            z += exp((double)l[v] - mx);
        sum += mx + log(z) - (double)l[tokens[t + 1]];
    }
    return sum;
}

typedef struct agreement {
    double worst_rel_l2;     /* of one sequence's logits */
    int64_t same, positions; /* top-1 equal / compared */
    int64_t near_ties;       /* top-1 differs, but the stored model's own margin between the two is < TIE */
    double nll_ref, nll_q;   /* summed next-token NLL */
    int64_t predicted;       /* positions with a next token */
} agreement;

static void compare(agreement *a, const float *ref, const float *q, const int32_t *tokens, int64_t T, int64_t V) {
    for (int64_t t = 0; t < T; t++) {
        const float *r = ref + t * V;
        const int64_t best = tu_argmax(r, V), other = tu_argmax(q + t * V, V);
        float lo = r[0];
        for (int64_t v = 1; v < V; v++)
            lo = fminf(lo, r[v]);
        a->same += best == other;
        a->near_ties += best != other && r[best] - r[other] < TIE * (r[best] - lo);
    }
    a->positions += T;
    a->nll_ref += total_nll(ref, tokens, T, V);
    a->nll_q += total_nll(q, tokens, T, V);
    a->predicted += T - 1;
}

static double agree_frac(const agreement *a) { return (double)a->same / (double)a->positions; }
/* Agreement when flips at near-ties (where the stored model itself has no clear top-1) count as agreeing. */
static double agree_frac_ties(const agreement *a) {
    return (double)(a->same + a->near_ties) / (double)a->positions;
}
static double ppl_ratio(const agreement *a) { return exp((a->nll_q - a->nll_ref) / (double)a->predicted); }


/* Held-out Tiny Shakespeare (public domain; the text right after the demo model's training split). */
static const char heldout[] =
    "BAPTISTA:\n"
    "Not in my house, Lucentio; for, you know,\n"
    "Pitchers have ears, and I have many servants:\n"
    "Besides, old Gremio is hearkening still;\n"
    "And happily we might be interrupted.\n"
    "\n"
    "TRANIO:\n"
    "Then at my lodging, an it like you:\n"
    "There doth my father lie; and there, this night,\n"
    "We'll pass the business privately and well.\n"
    "Send for your daughter by your servant here:\n"
    "My boy shall fetch the scrivener presently.\n"
    "The worst is this, that, at so slender warning,\n"
    "You are like to have a thin and slender pittance.\n"
    "\n"
    "BAPTISTA:\n"
    "It likes me well. Biondello, hie you home,\n"
    "And bid Bianca make her ready straight;\n"
    "And, if you will, tell what hath happened,\n"
    "Lucentio's father is arrived in Padua,\n"
    "And how she's like to be Lucentio's wife.\n"
    "\n"
    "BIONDELLO:\n"
    "I pray the gods she may with all my heart!\n"
    "\n"
    "TRANIO:\n"
    "Dally not with the gods, but get thee gone.\n"
    "Signior Baptista, shall I lead the way?\n"
    "Welcome! one mess is like to be your cheer:\n"
    "Come, sir; we will better it in Pisa.\n"
    "\n"
    "BAPTISTA:\n"
    "I follow you.\n"
    "\n"
    "BIONDELLO:\n"
    "Cambio!\n"
    "\n"
    "LUCENTIO:\n"
    "What sayest thou, Biondello?\n"
    "\n"
    "BIONDELLO:\n"
    "You saw my master wink and laugh upon you?\n"
    "\n"
    "LUCENTIO:\n"
    "Biondello, what of that?\n"
    "\n"
    "BIONDELLO:\n"
    "Faith, nothing; but has left me here behind, to\n"
    "expound the meaning or moral of his signs and tokens.\n"
    "\n"
    "LUCENTIO:\n"
    "I pray thee, moralize them.\n"
    "\n"
    "BIONDELLO:\n"
    "Then thus. Baptista is safe, talking with the\n"
    "deceiving father of a deceitful son.\n"
    "\n"
    "LUCENTIO:\n"
    "And what of him?\n"
    "\n"
    "BIONDELLO:\n"
    "His daughter is to be brought by you to the supper.\n"
    "\n"
    "LUCENTIO:\n"
    "And then?\n"
    "\n"
    "BIONDELLO:\n"
    ;

/* A set of int8 groups and the top-1 agreement it must keep: on the trained demo model, and on the
 * randomly initialised fixtures (whose logits are nearly flat: a perturbation flips more of their top-1s).
 * Measured (this file's --verbose): experts and experts + mlp int8 agree on 0.9983 of the demo's positions
 * and 0.9925 of the fixtures' (every flip of those at a near-tie); all int8 on 0.9948 of the demo's (3
 * flips, all at near-ties; perplexity ratio 0.99982, logits relative L2 0.0045) and 0.9775 of the fixtures'
 * (0.975 on the worst fixture counting near-tie flips as agreeing; perplexity ratios within 4e-4, logits
 * relative L2 at most 0.0068). With int8 activations too (one scale per activation row): 0.9773 of the demo's
 * (13 flips, 7 at near-ties; perplexity ratio 0.99966, logits relative L2 0.0114) and 0.9700 of the
 * fixtures' (0.95 on the worst counting near-tie flips). bf16 activations for the stored bf16 matrices: 0.9983
 * of the demo's (1 flip, at a near-tie; perplexity ratio 0.99995, logits relative L2 0.0028); of the fixtures
 * only mini-bf16 stores bf16 (40 of 40, relative L2 0.0019). The bounds leave a few flips of margin. */
typedef struct variant {
    const char *name;
    qu_formats f;
    double min_agree_trained, min_agree_random;
    jamba_dtype activations; /* what the int8 weights multiply (jamba_context_params.cpu_activations) */
} variant;

#define ACTS_TRAINED 0.97
#define ACTS_RANDOM 0.93
#define I8 JAMBA_FORMAT_INT8
#define STORED JAMBA_FORMAT_STORED
static const variant variants[] = {
    {"experts int8", {I8, STORED, STORED, STORED}, 0.99, 0.99, JAMBA_DTYPE_F32},
    {"experts + mlp int8", {I8, I8, STORED, STORED}, 0.99, 0.99, JAMBA_DTYPE_F32},
    {"all int8", {I8, I8, I8, I8}, 0.985, 0.95, JAMBA_DTYPE_F32}, /* --weights int8: every projection matrix */
    /* --weights int8 --activations int8: and every activation row they multiply int8 (one scale per row) */
    {"all int8, int8 acts", {I8, I8, I8, I8}, ACTS_TRAINED, ACTS_RANDOM, JAMBA_DTYPE_I8},
    /* --activations bf16: the stored bf16 matrices multiply activations rounded to bf16 (fp32 ones: unchanged) */
    {"bf16 acts", {STORED, STORED, STORED, STORED}, ACTS_TRAINED, ACTS_RANDOM, JAMBA_DTYPE_BF16},
};
#define N_VARIANTS 5

#define MAX_PPL_CHANGE 0.01
#define MAX_REL_L2 0.02 /* of all logits; measured at most 0.0114 (all int8 with int8 activations, demo) */

/* The matrices of `v` are int8 (with scales) in m; everything else keeps the stored dtype of `ref`. */
static void expect_quantized_as(const jamba_model *m, const jamba_model *ref, const variant *v) {
    const jamba_config *c = jamba_model_config(m);
    for (int64_t l = 0; l < c->num_hidden_layers; l++) {
        const jb_layer_weights *a = &m->weights.layers[l], *b = &ref->weights.layers[l];
        jamba_layer_info li;
        cr_assert_eq(jamba_model_layer(m, l, &li, NULL), JAMBA_OK);
        const jb_mlp_weights *x = li.ffn == JAMBA_FFN_MOE ? &a->experts[0] : &a->mlp;
        const jb_mlp_weights *y = li.ffn == JAMBA_FFN_MOE ? &b->experts[0] : &b->mlp;
        bool q = li.ffn == JAMBA_FFN_MOE ? v->f.experts == I8 : v->f.mlp == I8;
        jamba_dtype want = q ? JAMBA_DTYPE_I8 : y->down_proj.dtype;
        cr_assert_eq(x->gate_proj.dtype, want, "%s: layer %lld gate_proj is %s", v->name, (long long)l,
                     jamba_dtype_name(x->gate_proj.dtype));
        cr_assert_eq(x->down_proj.dtype, want, "%s: layer %lld down_proj", v->name, (long long)l);
        cr_assert_eq(x->gate_proj.scale != NULL, q);
        const jb_weight *mix = li.mixer == JAMBA_MIXER_ATTENTION ? &a->attn.o_proj : &a->mamba.dt_proj;
        const jb_weight *mix0 = li.mixer == JAMBA_MIXER_ATTENTION ? &b->attn.o_proj : &b->mamba.dt_proj;
        cr_assert_eq(mix->dtype, v->f.mixers == I8 ? JAMBA_DTYPE_I8 : mix0->dtype, "%s: layer %lld mixer is %s",
                     v->name, (long long)l, jamba_dtype_name(mix->dtype));
    }
    cr_assert_eq(m->weights.lm_head.dtype, v->f.lm_head == I8 ? JAMBA_DTYPE_I8 : ref->weights.lm_head.dtype, "%s",
                 v->name);
    cr_assert_eq(m->weights.embed.dtype, c->tie_word_embeddings ? m->weights.lm_head.dtype
                                                                : ref->weights.embed.dtype, "%s", v->name);
}

static void accumulate(agreement *to, const agreement *a) {
    to->worst_rel_l2 = fmax(to->worst_rel_l2, a->worst_rel_l2);
    to->same += a->same;
    to->near_ties += a->near_ties;
    to->positions += a->positions;
    to->nll_ref += a->nll_ref;
    to->nll_q += a->nll_q;
    to->predicted += a->predicted;
}

/* Score `tokens` with the stored weights and each variant; accumulate into acc[variant]. */
static void score_variants(const char *dir, const char *label, const int32_t *tokens, int64_t T,
                           agreement acc[N_VARIANTS]) {
    jamba_model *ref = qu_load_plain(dir);
    const int64_t V = jamba_model_config(ref)->vocab_size;
    float *want = qu_all_logits(ref, tokens, T);
    for (int v = 0; v < N_VARIANTS; v++) {
        jamba_model *m = qu_load_formats(dir, variants[v].f);
        expect_quantized_as(m, ref, &variants[v]);
        float *got = qu_all_logits_as(m, tokens, T, variants[v].activations);
        agreement one = {.worst_rel_l2 = rel_l2(got, want, T * V)};
        compare(&one, want, got, tokens, T, V);
        accumulate(&acc[v], &one);
        cr_log_info("%-22s %-18s top-1 agreement %lld/%lld = %.4f (near-tie flips %lld), perplexity %.4f -> "
                    "%.4f (ratio %.6f), logits relative L2 %.3g", label, variants[v].name, (long long)one.same,
                    (long long)one.positions, agree_frac(&one), (long long)one.near_ties,
                    exp(one.nll_ref / (double)one.predicted), exp(one.nll_q / (double)one.predicted),
                    ppl_ratio(&one), one.worst_rel_l2);
        free(got);
        jamba_model_free(m);
    }
    free(want);
    jamba_model_free(ref);
}

/* Top-1 agreement at least the variant's bound (of a trained or a random model), perplexity within
 * MAX_PPL_CHANGE and logits within MAX_REL_L2. With `ties_agree`, flips at near-ties count as agreement: a
 * randomly initialised fixture has positions whose top two logits differ by 1e-5, where any perturbation
 * decides, and 40 positions leave little room for a flip. */
static void expect_accurate(const agreement acc[N_VARIANTS], const char *what, bool trained, bool ties_agree) {
    for (int v = 0; v < N_VARIANTS; v++) {
        const agreement *a = &acc[v];
        const double agree = ties_agree ? agree_frac_ties(a) : agree_frac(a);
        const double min_agree = trained ? variants[v].min_agree_trained : variants[v].min_agree_random;
        cr_log_info("%s, %s: top-1 agreement %.4f over %lld positions (%lld flips at near-ties), perplexity "
                    "ratio %.6f", what, variants[v].name, agree_frac(a), (long long)a->positions,
                    (long long)a->near_ties, ppl_ratio(a));
        cr_expect_geq(agree, min_agree, "%s, %s: top-1 agreement %.4f (%lld of %lld flips at near-ties)", what,
                      variants[v].name, agree, (long long)a->near_ties, (long long)(a->positions - a->same));
        cr_expect_leq(fabs(ppl_ratio(a) - 1), MAX_PPL_CHANGE, "%s, %s: perplexity ratio %.6f", what,
                      variants[v].name, ppl_ratio(a));
        cr_expect_leq(a->worst_rel_l2, MAX_REL_L2, "%s, %s: logits relative L2 %.3g", what, variants[v].name,
                      a->worst_rel_l2);
    }
}

JB_TEST(accuracy, demo_int8_matches_stored_weights) {
    jamba_tokenizer *tok = NULL;
    jamba_error err = {0};
    cr_assert_eq(jamba_tokenizer_load(QU_DEMO, &tok, &err), JAMBA_OK, "%s", err.message);
    int32_t *ids = malloc(4096 * sizeof *ids);
    int64_t T = 0;
    cr_assert_eq(jamba_tokenize(tok, heldout, strlen(heldout), JAMBA_TOKENIZE_ADD_SPECIAL, ids, 4096, &T, &err),
                 JAMBA_OK, "%s", err.message);
    cr_assert(T > 300 && T <= 700, "%lld tokens", (long long)T);
#if defined(__SANITIZE_ADDRESS__)
    T = 128; /* unoptimised sanitizer builds run the model ~40x slower: score a prefix */
#endif
    agreement acc[N_VARIANTS] = {{0}};
    score_variants(QU_DEMO, "models/demo", ids, T, acc);
    expect_accurate(acc, "models/demo", true, false);
    free(ids);
    jamba_tokenizer_free(tok);
}

/* The forward fixtures, each on its reference prompt followed by its greedy continuation. */
static const char *const fixtures[] = {
    "mini", "mini-bf16", "mini-stacked", "mini-ai21", "pure-mamba-moe", "moe-every-layer-top1",
    "moe-every-layer-top3", "odd-shapes", "dense-hybrid-1to3", "pure-attention-dense",
};

JB_TEST(accuracy, forward_fixtures_int8_match_stored_weights) {
    agreement all[N_VARIANTS] = {{0}};
    for (size_t f = 0; f < sizeof fixtures / sizeof fixtures[0]; f++) {
        const char *name = fixtures[f];
        ref_file ref;
        ref_open(&ref, strcmp(name, "mini-stacked") == 0 || strcmp(name, "mini-ai21") == 0 ? "mini" : name);
        int64_t shape[8];
        const int64_t *prompt = ref_i64(&ref, "input_ids", shape);
        const int64_t P = shape[0];
        const int64_t *greedy = ref_i64(&ref, "greedy_tokens", shape);
        const int64_t T = P + shape[0];
        int32_t *ids = malloc((size_t)T * sizeof *ids);
        for (int64_t t = 0; t < T; t++)
            ids[t] = (int32_t)(t < P ? prompt[t] : greedy[t - P]);
        char rel[128];
        snprintf(rel, sizeof rel, "forward/%s/model", name);
        char *dir = tu_fixture(rel);
        agreement acc[N_VARIANTS] = {{0}};
        score_variants(dir, name, ids, T, acc);
        for (int v = 0; v < N_VARIANTS; v++)
            accumulate(&all[v], &acc[v]);
        expect_accurate(acc, name, false, true);
        free(dir);
        free(ids);
        ref_close(&ref);
    }
    expect_accurate(all, "all forward fixtures", false, false);
}
