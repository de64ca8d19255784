/*
 * context.c — the CPU backend's context: one table of buffers (buffer_table) from which the sizes of the
 * memory plan, the allocation and the frees are all derived; state addressing.
 */
#include "cpu/context.h"

#include "base/alloc.h"
#include "base/checked.h"
#include "base/error.h"
#include "ckpt/config.h"
#include "cpu/ops.h"

#include <string.h>

/* ---- state addressing ------------------------------------------------------------------------- */

float *jb_cpu_kv(const jb_backend_ctx *b, int32_t seq, int64_t attn_layer, int which) {
    const jamba_config *c = &b->model->config;
    int64_t kv = c->num_key_value_heads * c->head_dim;
    int64_t slab = ((int64_t)seq * c->n_attention_layers + attn_layer) * 2 + which;
    return b->kv + slab * b->params.n_ctx * kv;
}

float *jb_cpu_conv(const jb_backend_ctx *b, int32_t seq, int64_t mamba_layer) {
    const jamba_config *c = &b->model->config;
    return b->conv + ((int64_t)seq * c->n_mamba_layers + mamba_layer) * c->mamba_d_inner * (c->mamba_d_conv - 1);
}

float *jb_cpu_ssm(const jb_backend_ctx *b, int32_t seq, int64_t mamba_layer) {
    const jamba_config *c = &b->model->config;
    return b->ssm + ((int64_t)seq * c->n_mamba_layers + mamba_layer) * c->mamba_d_inner * c->mamba_d_state;
}

/* ---- the buffer table ------------------------------------------------------------------------- */

typedef enum buffer_role { ROLE_KV, ROLE_MAMBA, ROLE_WORK } buffer_role;

/* One buffer: where its pointer lives, its element size and count (a product of up to three factors,
 * checked before anything is allocated). */
typedef struct buffer {
    void **dst;
    size_t elem;
    uint64_t dims[3];
    buffer_role role;
    const char *what;
} buffer;

#define D1(a) {(a), 1, 1}
#define D2(a, b) {(a), (b), 1}
#define D3(a, b, c) {(a), (b), (c)}
#define MAX_BUFFERS 40

static int64_t max3(int64_t a, int64_t b, int64_t c) {
    int64_t m = a > b ? a : b;
    return m > c ? m : c;
}

/* Every buffer of a context with params p; *n = their count. */
static void buffer_table(jb_backend_ctx *b, const jamba_config *c, const jamba_context_params *p, buffer *out,
                         size_t *n) {
    const uint64_t S = (uint64_t)p->n_seq_max, C = (uint64_t)p->n_ctx;
    const uint64_t Tb = (uint64_t)p->n_batch, threads = (uint64_t)p->n_threads, cap = (uint64_t)p->n_logits_max;
    const uint64_t H = (uint64_t)c->hidden_size, Di = (uint64_t)c->mamba_d_inner, N = (uint64_t)c->mamba_d_state;
    const uint64_t K = (uint64_t)c->mamba_d_conv, R = (uint64_t)c->mamba_dt_rank, I = (uint64_t)c->intermediate_size;
    const uint64_t q = (uint64_t)(c->num_attention_heads * c->head_dim);
    const uint64_t kv = (uint64_t)(c->num_key_value_heads * c->head_dim);
    const uint64_t E = (uint64_t)c->num_experts, k = (uint64_t)c->num_experts_per_tok;
    const uint64_t L = (uint64_t)c->num_hidden_layers;
    const uint64_t A = (uint64_t)c->n_attention_layers, M = (uint64_t)c->n_mamba_layers;
    const uint64_t score_rows = (uint64_t)jb_cpu_attn_score_rows(c->num_attention_heads, c->num_key_value_heads);
    const uint64_t vec = (uint64_t)max3(c->hidden_size, c->mamba_dt_rank, c->mamba_d_state);
    /* int8 or bf16 activations: the rows of any product (a step's rows, or the logit rows) of the longest input
     * (H, D_i, R, q or I) */
    const bool lowp = p->cpu_activations == JAMBA_DTYPE_I8 || p->cpu_activations == JAMBA_DTYPE_BF16;
    const uint64_t act_rows = lowp ? (Tb > cap ? Tb : cap) : 0;
    const uint64_t act_row_bytes = (uint64_t)jb_cpu_lowp_row_bytes(
        max3(max3(c->hidden_size, c->mamba_d_inner, c->mamba_dt_rank), (int64_t)q, c->intermediate_size),
        p->cpu_activations == JAMBA_DTYPE_I8 ? 1 : 2);
    jb_cpu_workspace *w = &b->ws;
    jb_ffn_workspace *f = &w->ffn;
    const buffer table[] = {
        {(void **)&b->layer_slot, sizeof(int64_t), D1(L), ROLE_WORK, "layer index"},
        {(void **)&b->kv, sizeof(float), D3(S * A * 2, C, kv), ROLE_KV, "the KV cache"},
        {(void **)&b->conv, sizeof(float), D3(S * M, Di, K - 1), ROLE_MAMBA, "the conv windows"},
        {(void **)&b->ssm, sizeof(float), D3(S * M, Di, N), ROLE_MAMBA, "the SSM states"},
        {(void **)&w->x, sizeof(float), D2(Tb, H), ROLE_WORK, "the residual stream"},
        {(void **)&w->xn, sizeof(float), D2(Tb, H), ROLE_WORK, "a workspace"},
        {(void **)&w->mix, sizeof(float), D2(Tb, H), ROLE_WORK, "a workspace"},
        {(void **)&w->proj, sizeof(float), D2(Tb, 2 * Di), ROLE_WORK, "a workspace"},
        {(void **)&w->u, sizeof(float), D2(Tb, Di), ROLE_WORK, "a workspace"},
        {(void **)&w->xdbl, sizeof(float), D2(Tb, R + 2 * N), ROLE_WORK, "a workspace"},
        {(void **)&w->dt_in, sizeof(float), D2(Tb, R), ROLE_WORK, "a workspace"},
        {(void **)&w->delta, sizeof(float), D2(Tb, Di), ROLE_WORK, "a workspace"},
        {(void **)&w->y, sizeof(float), D2(Tb, Di), ROLE_WORK, "a workspace"},
        {(void **)&w->q, sizeof(float), D2(Tb, q), ROLE_WORK, "a workspace"},
        {(void **)&w->k_new, sizeof(float), D2(Tb, kv), ROLE_WORK, "a workspace"},
        {(void **)&w->v_new, sizeof(float), D2(Tb, kv), ROLE_WORK, "a workspace"},
        {(void **)&w->att, sizeof(float), D2(Tb, q), ROLE_WORK, "a workspace"},
        {(void **)&w->attn_scratch, sizeof(float), D3(threads, score_rows, C), ROLE_WORK, "attention scores"},
        {(void **)&w->wbuf, sizeof(float), D1(Di * (N + K + 5) + 4 * vec), ROLE_WORK, "widened small weights"},
        {(void **)&w->final_rows, sizeof(float), D2(cap, H), ROLE_WORK, "a workspace"},
        {(void **)&w->attn_args, sizeof(jb_attn_args), D1(S), ROLE_WORK, "per-sequence attention arguments"},
        {(void **)&w->conv_args, sizeof(jb_conv_args), D1(S), ROLE_WORK, "per-sequence conv arguments"},
        {(void **)&w->scan_args, sizeof(jb_scan_args), D1(S), ROLE_WORK, "per-sequence scan arguments"},
        {(void **)&f->gate, sizeof(float), D2(Tb, I), ROLE_WORK, "a workspace"},
        {(void **)&f->up, sizeof(float), D2(Tb, I), ROLE_WORK, "a workspace"},
        {(void **)&f->gathered, sizeof(float), D2(Tb, H), ROLE_WORK, "a workspace"},
        {(void **)&f->expert_out, sizeof(float), D2(Tb, H), ROLE_WORK, "a workspace"},
        {(void **)&f->router, sizeof(float), D2(Tb, E), ROLE_WORK, "a workspace"},
        {(void **)&f->experts, sizeof(int32_t), D2(Tb, k), ROLE_WORK, "a workspace"},
        {(void **)&f->weights, sizeof(float), D2(Tb, k), ROLE_WORK, "a workspace"},
        {(void **)&f->plan.expert_begin, sizeof(int64_t), D1(E + 1), ROLE_WORK, "a workspace"},
        {(void **)&f->plan.slot_token, sizeof(int64_t), D2(Tb, k), ROLE_WORK, "a workspace"},
        {(void **)&f->plan.slot_weight, sizeof(float), D2(Tb, k), ROLE_WORK, "a workspace"},
        {(void **)&b->exec.act_rows, 1, D2(act_rows, act_row_bytes), ROLE_WORK, "int8 or bf16 activation rows"},
        {(void **)&b->exec.act_scales, sizeof(float), D1(act_rows), ROLE_WORK, "int8 activation scales"},
    };
    f->rows = (int64_t)Tb;
    b->exec.activations = p->cpu_activations;
    b->exec.act_rows_max = (int64_t)act_rows;
    b->exec.act_row_bytes = (int64_t)act_row_bytes;
    _Static_assert(sizeof table / sizeof table[0] <= MAX_BUFFERS, "MAX_BUFFERS");
    memcpy(out, table, sizeof table);
    *n = sizeof table / sizeof table[0];
}

/* Byte sizes of the table's buffers (checked), with totals per role. */
static jamba_status table_sizes(const buffer *t, size_t n, uint64_t *bytes, uint64_t role_total[3], jamba_error *err) {
    memset(role_total, 0, 3 * sizeof role_total[0]);
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t b = t[i].elem;
        for (int d = 0; d < 3; d++)
            if (!jb_mul_u64(b, t[i].dims[d], &b))
                return jb_fail(err, JAMBA_ERR_OVERFLOW, "context: the size of %s overflows 64 bits", t[i].what);
        if (!jb_add_u64(total, b, &total) || !jb_add_u64(role_total[t[i].role], b, &role_total[t[i].role]) ||
            b > SIZE_MAX)
            return jb_fail(err, JAMBA_ERR_OVERFLOW, "context: total size overflows");
        bytes[i] = b;
    }
    return JAMBA_OK;
}

jamba_status jb_cpu_ctx_bytes(const jamba_model *m, const jamba_context_params *p, uint64_t *kv, uint64_t *mamba,
                              uint64_t *workspace, jamba_error *err) {
    jb_backend_ctx scratch; /* only the table's shapes are used, never its pointers */
    buffer t[MAX_BUFFERS] = {{0}};
    uint64_t bytes[MAX_BUFFERS], role[3];
    size_t n;
    buffer_table(&scratch, &m->config, p, t, &n);
    JB_TRY(table_sizes(t, n, bytes, role, err));
    *kv = role[ROLE_KV];
    *mamba = role[ROLE_MAMBA];
    *workspace = role[ROLE_WORK];
    return JAMBA_OK;
}

void jb_cpu_ctx_free(jb_backend_ctx *b) {
    if (b == NULL)
        return;
    jb_pool_free(b->exec.pool);
    buffer t[MAX_BUFFERS] = {{0}};
    size_t n;
    buffer_table(b, &b->model->config, &b->params, t, &n);
    for (size_t i = 0; i < n; i++)
        jb_free(*t[i].dst);
    jb_free(b);
}

jamba_status jb_cpu_ctx_create(const jamba_model *m, const jamba_context_params *p, jb_backend_ctx **out,
                               jamba_error *err) {
    *out = NULL;
    jb_backend_ctx *b = jb_calloc(1, sizeof *b);
    if (b == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "context: out of memory");
    b->model = m;
    b->params = *p;
    buffer t[MAX_BUFFERS] = {{0}};
    uint64_t bytes[MAX_BUFFERS], role[3];
    size_t n;
    buffer_table(b, &m->config, p, t, &n);
    jamba_status st = table_sizes(t, n, bytes, role, err);
    const uint64_t total = role[0] + role[1] + role[2];
    for (size_t i = 0; i < n && st == JAMBA_OK; i++) {
        *t[i].dst = bytes[i] ? jb_calloc(1, (size_t)bytes[i]) : NULL;
        if (*t[i].dst == NULL && bytes[i])
            st = jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY,
                         "context: out of memory allocating %s (%llu bytes; %llu bytes for the whole context)",
                         t[i].what, (unsigned long long)bytes[i], (unsigned long long)total);
    }
    if (st == JAMBA_OK)
        st = jb_pool_create(p->n_threads, &b->exec.pool, err);
    if (st != JAMBA_OK) {
        jb_cpu_ctx_free(b);
        return st;
    }
    const jamba_config *c = &m->config;
    int64_t n_attn = 0, n_mamba = 0;
    for (int64_t i = 0; i < c->num_hidden_layers; i++)
        b->layer_slot[i] = jb_layer_is_attention(c, i) ? n_attn++ : n_mamba++;
    *out = b;
    return JAMBA_OK;
}

jamba_status jb_cpu_set_threads(jb_backend_ctx *b, int32_t n_threads, jamba_error *err) {
    if (n_threads == b->params.n_threads)
        return JAMBA_OK;
    /* the per-thread buffers of the table change size: make the new ones and the new pool first, so a
     * failure leaves the context as it was */
    jb_backend_ctx next = *b;
    next.params.n_threads = n_threads;
    buffer old_t[MAX_BUFFERS] = {{0}}, new_t[MAX_BUFFERS] = {{0}};
    uint64_t old_bytes[MAX_BUFFERS], new_bytes[MAX_BUFFERS], role[3];
    size_t n;
    buffer_table(b, &b->model->config, &b->params, old_t, &n);
    buffer_table(&next, &b->model->config, &next.params, new_t, &n);
    JB_TRY(table_sizes(old_t, n, old_bytes, role, err));
    JB_TRY(table_sizes(new_t, n, new_bytes, role, err));
    void *fresh[MAX_BUFFERS] = {0};
    jb_pool *pool = NULL;
    jamba_status st = JAMBA_OK;
    for (size_t i = 0; i < n && st == JAMBA_OK; i++)
        if (new_bytes[i] != old_bytes[i] && (fresh[i] = jb_calloc(1, (size_t)new_bytes[i])) == NULL)
            st = jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "context: out of memory for %s of %d threads (%llu bytes)",
                         new_t[i].what, n_threads, (unsigned long long)new_bytes[i]);
    if (st == JAMBA_OK)
        st = jb_pool_create(n_threads, &pool, err);
    for (size_t i = 0; i < n; i++) {
        if (new_bytes[i] == old_bytes[i])
            continue;
        if (st == JAMBA_OK) {
            jb_free(*old_t[i].dst);
            *old_t[i].dst = fresh[i];
        } else {
            jb_free(fresh[i]);
        }
    }
    if (st != JAMBA_OK)
        return st;
    jb_pool_free(b->exec.pool);
    b->exec.pool = pool;
    b->params.n_threads = n_threads;
    return JAMBA_OK;
}
