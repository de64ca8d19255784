/*
 * sampler.c — choosing the next token: penalties over the recent history, then temperature, top-k, top-p
 * and min-p, then a draw from a seeded xoshiro256** generator. Temperature 0 is greedy (argmax, ties to the
 * lower id). NaN logits never win; a +inf logit wins outright; -inf ones are never drawn.
 */
#include "base/abi.h"
#include "base/alloc.h"
#include "base/error.h"
#include "jamba.h"
#include "runtime/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct scored {
    float logit;
    int32_t id;
} scored;

struct jamba_sampler {
    jamba_sampler_params p;
    int64_t vocab;
    uint64_t rng[4];
    int32_t *history;   /* ring buffer of the last penalty_last_n tokens */
    int64_t hist_n, hist_pos;
    float *work;        /* [vocab] adjusted logits */
    int32_t *order;     /* [vocab] candidate ids */
    uint8_t *seen;      /* [vocab] history membership for the penalties */
    scored *cands;      /* [vocab] sort buffer */
};

static const jamba_sampler_params SAMPLER_DEFAULTS = {
    .temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f, .repetition_penalty = 1.0f,
    .presence_penalty = 0.0f, .penalty_last_n = 256, .seed = 0x5eed};

void jamba_sampler_params_init_sized(jamba_sampler_params *p, size_t size) {
    if (p != NULL)
        JB_INIT_SIZED(p, size, SAMPLER_DEFAULTS);
}

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next_u64(uint64_t s[4]) {
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform in [0, 1). */
static double next_unit(uint64_t s[4]) { return (double)(next_u64(s) >> 11) * 0x1.0p-53; }

jamba_status jamba_sampler_create_sized(const jamba_sampler_params *params, size_t params_size, int64_t vocab,
                                        jamba_sampler **out, jamba_error *err) {
    if (out == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_sampler_create: out is NULL");
    *out = NULL;
    jamba_sampler_params p = SAMPLER_DEFAULTS;
    if (params != NULL)
        JB_TRY(jb_struct_in(&p, sizeof p, params, params_size, JB_MIN_SAMPLER_PARAMS, "jamba_sampler_create: params",
                            err));
    if (!(p.temperature >= 0) || !isfinite(p.temperature))
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "sampler: temperature %g must be >= 0", (double)p.temperature);
    if (!(p.top_p > 0 && p.top_p <= 1))
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "sampler: top_p %g must be in (0, 1]", (double)p.top_p);
    if (!(p.min_p >= 0 && p.min_p < 1))
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "sampler: min_p %g must be in [0, 1)", (double)p.min_p);
    if (!(p.repetition_penalty > 0) || !isfinite(p.repetition_penalty))
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "sampler: repetition_penalty %g must be > 0",
                       (double)p.repetition_penalty);
    if (!isfinite(p.presence_penalty))
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "sampler: presence_penalty must be finite");
    if (p.top_k < 0 || p.penalty_last_n < 0)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "sampler: top_k and penalty_last_n must be >= 0");
    if (vocab < 1 || vocab > (INT64_C(1) << 26))
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "sampler: vocabulary size %lld out of range", (long long)vocab);
    jamba_sampler *s = jb_calloc(1, sizeof *s);
    if (s == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "sampler: out of memory");
    s->p = p;
    s->vocab = vocab;
    uint64_t x = p.seed;
    for (int i = 0; i < 4; i++)
        s->rng[i] = splitmix64(&x);
    s->history = jb_calloc((size_t)(p.penalty_last_n ? p.penalty_last_n : 1), sizeof *s->history);
    s->work = jb_calloc((size_t)vocab, sizeof *s->work);
    s->order = jb_calloc((size_t)vocab, sizeof *s->order);
    s->seen = jb_calloc((size_t)vocab, sizeof *s->seen);
    s->cands = jb_calloc((size_t)vocab, sizeof *s->cands);
    if (s->history == NULL || s->work == NULL || s->order == NULL || s->seen == NULL || s->cands == NULL) {
        jamba_sampler_free(s);
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "sampler: out of memory");
    }
    *out = s;
    return JAMBA_OK;
}

void jamba_sampler_free(jamba_sampler *s) {
    if (s == NULL)
        return;
    jb_free(s->history);
    jb_free(s->work);
    jb_free(s->order);
    jb_free(s->seen);
    jb_free(s->cands);
    jb_free(s);
}

void jamba_sampler_accept(jamba_sampler *s, int32_t token) {
    if (s == NULL || s->p.penalty_last_n == 0 || token < 0 || token >= s->vocab)
        return;
    s->history[s->hist_pos] = token;
    s->hist_pos = (s->hist_pos + 1) % s->p.penalty_last_n;
    if (s->hist_n < s->p.penalty_last_n)
        s->hist_n++;
}

/* Penalties on the copy of the logits, each seen token once. */
static void apply_penalties(jamba_sampler *s) {
    if (s->p.repetition_penalty == 1.0f && s->p.presence_penalty == 0.0f)
        return;
    for (int64_t i = 0; i < s->hist_n; i++)
        s->seen[s->history[i]] = 1;
    for (int64_t i = 0; i < s->hist_n; i++) {
        int32_t tok = s->history[i];
        if (!s->seen[tok])
            continue;
        s->seen[tok] = 0;
        float *l = &s->work[tok];
        *l = *l > 0 ? *l / s->p.repetition_penalty : *l * s->p.repetition_penalty;
        *l -= s->p.presence_penalty;
    }
}

/* Descending logit, ties to the lower id. */
static int by_logit_desc(const void *a, const void *b) {
    const scored *x = a, *y = b;
    if (x->logit != y->logit)
        return x->logit > y->logit ? -1 : 1;
    return x->id < y->id ? -1 : 1;
}

/* Put the `keep` best of the n candidates first, best first. */
static void sort_candidates(jamba_sampler *s, int64_t n, int64_t keep) {
    scored *c = s->cands;
    for (int64_t i = 0; i < n; i++)
        c[i] = (scored){s->work[s->order[i]], s->order[i]};
    if (keep <= 64) { /* partial selection: O(n * keep) */
        for (int64_t i = 0; i < keep; i++) {
            int64_t best = i;
            for (int64_t j = i + 1; j < n; j++)
                if (by_logit_desc(&c[j], &c[best]) < 0)
                    best = j;
            scored tmp = c[i];
            c[i] = c[best];
            c[best] = tmp;
        }
    } else {
        qsort(c, (size_t)n, sizeof *c, by_logit_desc);
    }
    for (int64_t i = 0; i < keep; i++)
        s->order[i] = c[i].id;
}

jamba_status jamba_sampler_sample(jamba_sampler *s, const float *logits, int32_t *token, jamba_error *err) {
    if (s == NULL || logits == NULL || token == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_sampler_sample: NULL argument");
    int64_t n = 0;
    for (int64_t i = 0; i < s->vocab; i++) {
        float l = logits[i];
        if (isnan(l))
            continue; /* NaN never wins */
        s->work[i] = l;
        s->order[n++] = (int32_t)i;
    }
    if (n == 0)
        return jb_fail(err, JAMBA_ERR_NUMERIC, "sampler: every logit is NaN");
    apply_penalties(s);
    /* greedy: the best candidate */
    if (s->p.temperature == 0.0f) {
        int32_t best = s->order[0];
        for (int64_t i = 1; i < n; i++)
            if (s->work[s->order[i]] > s->work[best])
                best = s->order[i];
        if (isinf(s->work[best]) && s->work[best] < 0)
            return jb_fail(err, JAMBA_ERR_NUMERIC, "sampler: every logit is -inf");
        *token = best;
        return JAMBA_OK;
    }
    int64_t keep = s->p.top_k > 0 && s->p.top_k < n ? s->p.top_k : n;
    sort_candidates(s, n, keep);
    n = keep;
    const float top = s->work[s->order[0]];
    if (isinf(top) && top > 0) { /* +inf wins outright: the lowest such id (candidates are sorted by id on ties) */
        *token = s->order[0];
        return JAMBA_OK;
    }
    if (!isfinite(top))
        return jb_fail(err, JAMBA_ERR_NUMERIC, "sampler: every logit is NaN or -inf");
    /* softmax at the temperature over the kept candidates (sorted, so the cut-offs are prefixes) */
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = exp(((double)s->work[s->order[i]] - top) / s->p.temperature);
        s->work[s->order[i]] = (float)e;
        sum += e;
    }
    int64_t cut = n;
    double mass = 0;
    for (int64_t i = 0; i < n; i++) {
        double p = s->work[s->order[i]] / sum;
        if (s->p.min_p > 0 && i > 0 && p < s->p.min_p * (s->work[s->order[0]] / sum)) {
            cut = i;
            break;
        }
        mass += p;
        if (mass >= s->p.top_p) {
            cut = i + 1;
            break;
        }
    }
    double total = 0;
    for (int64_t i = 0; i < cut; i++)
        total += s->work[s->order[i]];
    double r = next_unit(s->rng) * total;
    for (int64_t i = 0; i < cut; i++) {
        r -= s->work[s->order[i]];
        if (r < 0 || i == cut - 1) {
            *token = s->order[i];
            return JAMBA_OK;
        }
    }
    *token = s->order[0];
    return JAMBA_OK;
}

bool jb_sampler_device_params(jamba_sampler *s, jb_sample_params *p, int32_t *penalized, int64_t cap) {
    if (s->p.temperature > 0 && (s->p.top_k < 1 || s->p.top_k > JB_SAMPLE_MAX_K))
        return false;
    int64_t n = 0;
    if (s->p.repetition_penalty != 1.0f || s->p.presence_penalty != 0.0f) {
        /* distinct history ids, in first-seen order; `seen` is left clear as apply_penalties leaves it */
        for (int64_t i = 0; i < s->hist_n; i++) {
            int32_t tok = s->history[i];
            if (s->seen[tok])
                continue;
            if (n == cap) {
                for (int64_t j = 0; j < n; j++)
                    s->seen[penalized[j]] = 0;
                return false;
            }
            s->seen[tok] = 1;
            penalized[n++] = tok;
        }
        for (int64_t j = 0; j < n; j++)
            s->seen[penalized[j]] = 0;
    }
    uint64_t peek[4];
    memcpy(peek, s->rng, sizeof peek);
    *p = (jb_sample_params){.temperature = s->p.temperature, .top_k = s->p.top_k, .top_p = s->p.top_p,
                                .min_p = s->p.min_p, .repetition_penalty = s->p.repetition_penalty,
                                .presence_penalty = s->p.presence_penalty, .n_penalized = (int32_t)n,
                                .uniform = next_unit(peek)};
    return true;
}

void jb_sampler_consume_draw(jamba_sampler *s) { (void)next_unit(s->rng); }
