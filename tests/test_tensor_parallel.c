/*
 * test_tensor_parallel.c — the sharding plan (parallel/) verified without several GPUs: the forward pass as
 * N emulated ranks in one process (tests/support/tp_emulate.c: each rank holds only its slices, the ranks
 * meet only in reference collectives, exactly those the plan lists) must give the logits of the unsharded
 * CPU forward pass, on every transformers fixture, for N = 1, 2 and 4, in fp32 and with int8 experts and
 * MLPs, through two prefill chunks and 16 decode steps: per row, relative L2 error at most TP_TOL (a tenth
 * of the fixture tests' REF_TOL: only the order of the partial sums differs), and bit for bit with one
 * rank. A GPU count that does not divide what the plan splits is refused by name. A rank's weights hold
 * exactly the plan's slices of the checkpoint, as views into the mapped file where a slice is one run.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/model.h"
#include "ckpt/config.h"
#include "ckpt/dtype.h"
#include "parallel/shard.h"
#include "parallel/slice.h"
#include "tests/support/reference.h"
#include "tests/support/testutil.h"
#include "tests/support/tp_emulate.h"

typedef struct fixture_case {
    const char *model;       /* folder under tests/fixtures/forward */
    const char *reference;   /* whose reference.safetensors holds its prompt and greedy tokens */
    jamba_weight_format experts, mlp;
    const char *refused_at_4; /* what the refusal of 4 ranks names, or NULL when 4 ranks plan */
} fixture_case;

#define STORED JAMBA_FORMAT_STORED
#define INT8 JAMBA_FORMAT_INT8

static const fixture_case cases[] = {
    {"mini", "mini", STORED, STORED, NULL},
    {"pure-mamba-moe", "pure-mamba-moe", STORED, STORED, NULL},
    {"pure-attention-dense", "pure-attention-dense", STORED, STORED, NULL},
    {"dense-hybrid-1to3", "dense-hybrid-1to3", STORED, STORED, NULL},
    {"moe-every-layer-top1", "moe-every-layer-top1", STORED, STORED, NULL},
    {"moe-every-layer-top3", "moe-every-layer-top3", STORED, STORED, NULL},
    {"odd-shapes", "odd-shapes", STORED, STORED, "num_attention_heads 6 is not divisible by 4"},
    {"mini-bf16", "mini-bf16", STORED, STORED, NULL},
    {"mini-ai21", "mini", STORED, STORED, NULL},
    {"mini-stacked", "mini", STORED, STORED, NULL},
    /* int8 weight-only (row scales): whole experts, experts split over I (top3 at 4 ranks), dense MLPs */
    {"mini", "mini", INT8, INT8, NULL},
    {"moe-every-layer-top3", "moe-every-layer-top3", INT8, STORED, NULL},
    {"dense-hybrid-1to3", "dense-hybrid-1to3", STORED, INT8, NULL},
};

#define N_CASES (sizeof cases / sizeof cases[0])
static const int RANKS[] = {1, 2, 4};
#define N_RANKS 3

#define N_CTX 64
#define FIRST_CHUNK 10 /* the prompt in two prefill steps: 10 rows, then the rest */
#define ACT_BYTES 2    /* the plan's choices as for bf16 activations, as a GPU runs */
#define TP_TOL 1e-6    /* measured: 2.1e-7 at worst (mini, int8, 4 ranks) */

static jamba_model *load(const fixture_case *fc) {
    char rel[256];
    snprintf(rel, sizeof rel, "forward/%s/model", fc->model);
    char *dir = tu_fixture(rel);
    jamba_model_params p = jamba_model_default_params();
    p.experts = fc->experts;
    p.mlp = fc->mlp;
    p.n_threads = 1;
    jamba_model *m = NULL;
    jamba_error err = {0};
    cr_assert_eq(jamba_model_load(dir, &p, &m, &err), JAMBA_OK, "%s", err.message);
    free(dir);
    return m;
}

/* The steps both passes run: the prompt in two prefill chunks, then the greedy tokens one at a time. */
typedef struct step_list {
    int32_t *tokens;  /* [n_tokens] */
    int64_t n_tokens;
    int64_t begin[64], count[64];
    int64_t n_steps;
} step_list;

static step_list steps_of(const char *reference) {
    ref_file ref;
    ref_open(&ref, reference);
    int64_t shape[8];
    const int64_t *prompt = ref_i64(&ref, "input_ids", shape);
    const int64_t T = shape[0];
    const int64_t *greedy = ref_i64(&ref, "greedy_tokens", shape);
    const int64_t G = shape[0];
    cr_assert(T > FIRST_CHUNK && T + G <= N_CTX && G + 2 <= 64);
    step_list s = {.tokens = malloc((size_t)(T + G) * sizeof(int32_t)), .n_tokens = T + G};
    cr_assert_not_null(s.tokens);
    for (int64_t i = 0; i < T; i++)
        s.tokens[i] = (int32_t)prompt[i];
    for (int64_t i = 0; i < G; i++)
        s.tokens[T + i] = (int32_t)greedy[i];
    s.begin[0] = 0, s.count[0] = FIRST_CHUNK;
    s.begin[1] = FIRST_CHUNK, s.count[1] = T - FIRST_CHUNK;
    s.n_steps = 2;
    for (int64_t i = 0; i < G; i++, s.n_steps++)
        s.begin[s.n_steps] = T + i, s.count[s.n_steps] = 1;
    ref_close(&ref);
    return s;
}

/* ---- emulated ranks against the unsharded forward pass ---------------------------------------------- */

static int params[N_CASES * N_RANKS];

ParameterizedTestParameters(tensor_parallel, matches_the_unsharded_forward_pass) {
    for (size_t i = 0; i < N_CASES * N_RANKS; i++)
        params[i] = (int)i;
    return cr_make_param_array(int, params, N_CASES * N_RANKS);
}

ParameterizedTest(int *param, tensor_parallel, matches_the_unsharded_forward_pass) {
    const fixture_case *fc = &cases[*param / N_RANKS];
    const int n = RANKS[*param % N_RANKS];
    jamba_model *m = load(fc);
    const jamba_config *c = jamba_model_config(m);
    const char *form = fc->experts == INT8 || fc->mlp == INT8 ? " (int8)" : "";
    if (n == 4 && fc->refused_at_4) {
        jb_shard_plan p;
        jamba_error err = {0};
        cr_assert_eq(jb_shard_plan_make(c, n, &p, &err), JAMBA_ERR_INVALID_ARGUMENT, "%s: 4 ranks", fc->model);
        cr_assert(strstr(err.message, fc->refused_at_4) != NULL, "%s: %s", fc->model, err.message);
        cr_log_info("%s%s over 4 ranks: refused: %s", fc->model, form, err.message);
        jamba_model_free(m);
        return;
    }
    const int64_t V = c->vocab_size;
    step_list s = steps_of(fc->reference);
    tp_model *tp = tp_create(m, n, N_CTX, ACT_BYTES);
    jamba_context *ctx = ref_context(m, 1, N_CTX, 64, 1);
    float *got = malloc((size_t)(64 * V) * sizeof *got);
    cr_assert_not_null(got);
    double worst_rel = 0, worst_abs = 0;
    bool identical = true;
    for (int64_t k = 0; k < s.n_steps; k++) {
        const int32_t *tokens = s.tokens + s.begin[k];
        const int64_t T = s.count[k];
        jamba_seq_input in = {.seq = 0, .tokens = tokens, .n_tokens = T, .logits = JAMBA_LOGITS_ALL};
        jamba_error err = {0};
        cr_assert_eq(jamba_decode(ctx, &in, 1, &err), JAMBA_OK, "%s", err.message);
        int64_t rows;
        const float *want = jamba_logits(ctx, 0, &rows);
        cr_assert_eq(rows, T);
        tp_step(tp, tokens, T, T > 1 ? JB_PHASE_PREFILL : JB_PHASE_DECODE, got);
        identical = identical && memcmp(got, want, (size_t)(T * V) * sizeof *got) == 0;
        for (int64_t t = 0; t < T; t++) {
            const double e = rel_l2(got + t * V, want + t * V, V);
            worst_rel = e > worst_rel ? e : worst_rel;
            cr_expect_leq(e, TP_TOL, "%s%s over %d ranks: logits at position %lld: relative error %.3g", fc->model,
                          form, n, (long long)(s.begin[k] + t), e);
            for (int64_t v = 0; v < V; v++) {
                const double d = fabs((double)got[t * V + v] - (double)want[t * V + v]);
                worst_abs = d > worst_abs ? d : worst_abs;
            }
        }
    }
    if (n == 1)
        cr_expect(identical, "%s%s: one rank must be the unsharded pass bit for bit (worst %.3g)", fc->model, form,
                  worst_rel);
    const tp_traffic tr = tp_traffic_so_far(tp);
    cr_assert_eq(tr.collectives > 0, n > 1, "%s over %d ranks: %lld collectives", fc->model, n,
                 (long long)tr.collectives);
    cr_log_info("%s%s over %d ranks (%s): %lld positions, worst relative L2 %.3g, worst absolute %.3g%s; "
                "%lld collectives (%llu B all-reduce, %llu B reduce-scatter, %llu B all-gather, %llu B all-to-all)",
                fc->model, form, n, tp_plan(tp)->moe == JB_MOE_EXPERTS ? "experts whole"
                                    : tp_plan(tp)->moe == JB_MOE_INTERMEDIATE ? "experts split over I" : "no MoE",
                (long long)s.n_tokens, worst_rel, worst_abs, identical ? ", bit for bit" : "",
                (long long)tr.collectives, (unsigned long long)tr.bytes[JB_COLL_ALL_REDUCE],
                (unsigned long long)tr.bytes[JB_COLL_REDUCE_SCATTER], (unsigned long long)tr.bytes[JB_COLL_ALL_GATHER],
                (unsigned long long)tr.bytes[JB_COLL_ALL_TO_ALL]);
    free(got);
    free(s.tokens);
    jamba_context_free(ctx);
    tp_free(tp);
    jamba_model_free(m);
    JB_CHECK_LEAKS();
}

/* ---- refusals ----------------------------------------------------------------------------------------- */

static jamba_config fixture_config(const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "forward/%s/model", name);
    char *dir = tu_fixture(rel);
    jamba_config c;
    jamba_error err = {0};
    cr_assert_eq(jb_config_load(dir, &c, NULL, &err), JAMBA_OK, "%s", err.message);
    free(dir);
    return c;
}

static void expect_refused(const jamba_config *c, int n, const char *names, const char *counts) {
    jb_shard_plan p;
    jamba_error err = {0};
    cr_assert_eq(jb_shard_plan_make(c, n, &p, &err), JAMBA_ERR_INVALID_ARGUMENT, "%d ranks must be refused", n);
    cr_assert_null(p.tensors);
    cr_assert(strstr(err.message, names) != NULL, "want \"%s\" in: %s", names, err.message);
    char want[128];
    snprintf(want, sizeof want, "split over %d GPUs: ", n);
    cr_assert(strncmp(err.message, want, strlen(want)) == 0, "%s", err.message);
    cr_assert_str_eq(strstr(err.message, "this model: "), counts, "%s", err.message);
}

JB_TEST(tensor_parallel, counts_that_do_not_divide_are_refused_by_name) {
    const jamba_config mini = fixture_config("mini");
    expect_refused(&mini, 3, "attention is split by query heads, and num_attention_heads 8 is not divisible by 3",
                   "this model: 1, 2, 4, 8");
    const jamba_config odd = fixture_config("odd-shapes");
    expect_refused(&odd, 4, "num_attention_heads 6 is not divisible by 4", "this model: 1, 2");
    const jamba_config mamba = fixture_config("pure-mamba-moe");
    expect_refused(&mamba, 3, "Mamba is split by inner channels, and mamba_d_inner 64 is not divisible by 3",
                   "this model: 1, 2, 4");
    const jamba_config moe = fixture_config("moe-every-layer-top1"); /* MoE in every layer: no dense MLP */
    expect_refused(&moe, 8, "experts are split whole (or else over their intermediate width), and neither "
                   "num_experts 4 nor intermediate_size 20 is divisible by 8", "this model: 1, 2, 4");
    const jamba_config dense = fixture_config("pure-attention-dense");
    expect_refused(&dense, 8, "dense MLPs are split over their intermediate width, and intermediate_size 20 is not "
                   "divisible by 8", "this model: 1, 2, 4");
    jamba_config kv = mini; /* 12 query heads in 4 groups of 3: 6 ranks would cut a group across two ranks */
    kv.num_attention_heads = 12;
    kv.num_key_value_heads = 4;
    expect_refused(&kv, 6, "num_key_value_heads 4 is not divisible by 6, nor a divisor of it", "this model: 1, 2, 4");
}

/* ---- a rank's weights are the plan's slices ------------------------------------------------------------ */

typedef struct views {
    jb_weight v[4096]; /* copies: a visit of a copy of the weights points into the copy */
    int64_t n;
} views;

static bool collect(void *arg, const char *name, jb_weight *w, int rank, const int64_t *shape, bool linear) {
    (void)name, (void)rank, (void)shape, (void)linear;
    views *l = arg;
    cr_assert_lt(l->n, 4096);
    l->v[l->n++] = *w;
    return true;
}

static void views_of(const jamba_config *c, const jb_weights *w, views *out) {
    out->n = 0;
    jb_weights walk = *w;
    cr_assert_eq(jb_weights_visit(c, &walk, collect, out, NULL), JAMBA_OK);
}

/* The index into the whole tensor of element i of the rank's slice (dimension dim held as `parts` blocks
 * [begin, begin + count) of part_len each). */
static int64_t whole_index(const jb_weight *part, const jb_shard_tensor *x, const jb_slice *s, int64_t i) {
    int64_t idx[3], rem = i;
    for (int d = part->rank - 1; d >= 0; d--) {
        idx[d] = rem % part->shape[d];
        rem /= part->shape[d];
    }
    const int64_t part_len = x->shape[s->dim] / x->parts;
    idx[s->dim] = (idx[s->dim] / s->count) * part_len + s->begin + idx[s->dim] % s->count;
    int64_t flat = 0;
    for (int d = 0; d < x->rank; d++)
        flat = flat * x->shape[d] + idx[d];
    return flat;
}

/* Every tensor of every rank of m over n ranks: the slice's elements (and row scales) are the whole tensor's
 * at the plan's indices; one run of bytes is a view into the whole tensor's memory, several a copy; the bytes
 * held are the plan's. Returns how many slices were views and how many copies. */
static void check_rank_slices(const jamba_model *m, int n, int64_t *n_views, int64_t *n_copies) {
    const jamba_config *c = &m->config;
    tp_model *tp = tp_create(m, n, 8, ACT_BYTES);
    const jb_shard_plan *p = tp_plan(tp);
    static views whole, part;
    views_of(c, &m->weights, &whole);
    cr_assert_eq(whole.n, p->n_tensors);
    for (int r = 0; r < n; r++) {
        views_of(c, tp_rank_weights(tp, r), &part);
        cr_assert_eq(part.n, p->n_tensors);
        for (int64_t t = 0; t < p->n_tensors; t++) {
            const jb_weight *w = &whole.v[t], *h = &part.v[t];
            const jb_shard_tensor *x = &p->tensors[t];
            const jb_slice *s = jb_shard_slice(p, t, r);
            if (w->data == NULL)
                continue;
            uint64_t held;
            cr_assert(jb_shard_held_elems(p, t, r, &held));
            const size_t es = jamba_dtype_size(w->dtype);
            if (held == 0) {
                cr_assert_null(h->data, "%s rank %d: holds nothing", x->name, r);
                continue;
            }
            cr_assert_eq((uint64_t)(h->shape[0] * (h->rank > 1 ? h->shape[1] : 1) * (h->rank > 2 ? h->shape[2] : 1)),
                         held, "%s rank %d: shape of its slice", x->name, r);
            for (int64_t i = 0; i < (int64_t)held; i++)
                cr_assert(memcmp((const uint8_t *)h->data + i * es,
                                 (const uint8_t *)w->data + whole_index(h, x, s, i) * es, es) == 0,
                          "%s rank %d: element %lld", x->name, r, (long long)i);
            if (w->scale) {
                cr_assert_not_null(h->scale);
                for (int64_t row = 0; row < h->shape[0]; row++) {
                    const int64_t src = s->dim != 0 ? row : (row / s->count) * (x->shape[0] / x->parts) + s->begin +
                                                              row % s->count;
                    cr_assert_eq(h->scale[row], w->scale[src], "%s rank %d: scale of row %lld", x->name, r,
                                 (long long)row);
                }
            }
            int64_t whole_elems = 1;
            for (int d = 0; d < x->rank; d++)
                whole_elems *= x->shape[d];
            const uint8_t *lo = w->data, *hi = lo + whole_elems * (int64_t)es, *at = h->data;
            const bool inside = at >= lo && at < hi;
            jb_slice_runs runs;
            cr_assert(jb_slice_runs_of(p, t, r, es, &runs));
            cr_assert_eq(inside, runs.runs == 1, "%s rank %d: %lld runs, %s", x->name, r, (long long)runs.runs,
                         inside ? "a view" : "a copy");
            *(runs.runs == 1 ? n_views : n_copies) += 1;
        }
    }
    tp_free(tp);
}

JB_TEST(tensor_parallel, a_rank_holds_exactly_its_slices) {
    static const fixture_case slice_cases[] = {
        {"mini", "mini", STORED, STORED, NULL},             /* experts whole; attention and Mamba cut */
        {"mini", "mini", INT8, INT8, NULL},                 /* row scales with the rows, whole under column cuts */
        {"odd-shapes", "odd-shapes", STORED, STORED, NULL}, /* in_proj bias in two halves, tied embeddings */
        {"moe-every-layer-top3", "moe-every-layer-top3", INT8, STORED, NULL}, /* int8 experts split over I */
        {"mini-stacked", "mini", STORED, STORED, NULL},     /* views of stacked experts */
    };
    for (size_t i = 0; i < sizeof slice_cases / sizeof slice_cases[0]; i++) {
        jamba_model *m = load(&slice_cases[i]);
        for (int n = 1; n <= 4; n *= 2) {
            jb_shard_plan probe;
            if (jb_shard_plan_make(&m->config, n, &probe, NULL) != JAMBA_OK)
                continue;
            jb_shard_plan_free(&probe);
            int64_t n_views = 0, n_copies = 0;
            check_rank_slices(m, n, &n_views, &n_copies);
            cr_assert_gt(n_views, 0);
            cr_assert_eq(n_copies > 0, n > 1, "%s over %d ranks: %lld copies", slice_cases[i].model, n,
                         (long long)n_copies);
        }
        jamba_model_free(m);
    }
}

/* The runs of a column cut and of a two-part row cut, by their arithmetic. */
JB_TEST(tensor_parallel, slice_runs) {
    const jamba_config mini = fixture_config("mini"); /* H 32, D_i 64 */
    jb_shard_plan p;
    cr_assert_eq(jb_shard_plan_make(&mini, 4, &p, NULL), JAMBA_OK);
    int64_t in_proj = -1, out_proj = -1, k_proj = -1;
    for (int64_t t = 0; t < p.n_tensors; t++) {
        if (in_proj < 0 && strstr(p.tensors[t].name, "mamba.in_proj.weight"))
            in_proj = t;
        if (out_proj < 0 && strstr(p.tensors[t].name, "mamba.out_proj.weight"))
            out_proj = t;
        if (k_proj < 0 && strstr(p.tensors[t].name, "self_attn.k_proj.weight"))
            k_proj = t;
    }
    cr_assert(in_proj >= 0 && out_proj >= 0 && k_proj >= 0);
    jb_slice_runs s;
    /* in_proj [128, 32] fp32, rank 1: rows [16, 32) of x and of z: 2 runs of 16 x 32 x 4 bytes */
    cr_assert(jb_slice_runs_of(&p, in_proj, 1, 4, &s));
    cr_assert(s.runs == 2 && s.offset == 16 * 32 * 4 && s.pitch == 64 * 32 * 4 && s.run_bytes == 16 * 32 * 4);
    /* out_proj [32, 64] bf16, rank 3: columns [48, 64) of each of the 32 rows */
    cr_assert(jb_slice_runs_of(&p, out_proj, 3, 2, &s));
    cr_assert(s.runs == 32 && s.offset == 48 * 2 && s.pitch == 64 * 2 && s.run_bytes == 16 * 2);
    cr_assert(jb_slice_scale_runs(&p, out_proj, 3, &s)); /* every row's scale */
    cr_assert(s.runs == 1 && s.offset == 0 && s.run_bytes == 32 * 4);
    /* k_proj [2 x 4, 32] over 4 ranks: KV head 0 on ranks 0 and 1, head 1 on 2 and 3 */
    cr_assert_eq(p.tensors[k_proj].copies, 2);
    cr_assert(jb_slice_runs_of(&p, k_proj, 1, 4, &s));
    cr_assert(s.runs == 1 && s.offset == 0 && s.run_bytes == 4 * 32 * 4);
    cr_assert(jb_slice_runs_of(&p, k_proj, 2, 4, &s));
    cr_assert(s.runs == 1 && s.offset == 4 * 32 * 4);
    uint64_t bytes;
    cr_assert(jb_slice_runs_bytes(&s, &bytes) && bytes == 4 * 32 * 4);
    jamba_config rc;
    jb_shard_rank_config(&p, &mini, &rc);
    cr_assert_eq(rc.num_key_value_heads, 1);
    cr_assert_eq(rc.num_attention_heads, 2);
    jb_shard_plan_free(&p);
}
