/*
 * collectives.c — the collectives of a sharded forward pass (shard.h) and their bytes per token.
 *
 * Between layers every rank holds every token's hidden state (fp32 residual stream, as on one GPU); each
 * sharded product ends in partial sums, reduced in fp32. Per token, with N ranks, H hidden, k experts per
 * token, a activation bytes, the bytes each rank sends (ring algorithms):
 *   all-reduce of [H] fp32        2 (N-1)/N x 4H
 *   reduce-scatter / all-gather   (N-1)/N x 4H
 *   all-to-all of k vectors       k x (bytes per vector) x (N-1)/N / N   (routing spread evenly)
 *
 * MoE under expert parallelism, the two ways to reach E/N whole experts per rank:
 *   (A) all-gather + reduce-scatter: every rank sees every token (the mixer's all-reduce already left them
 *       replicated, so the all-gather costs nothing), runs its experts on the tokens routed to them, and the
 *       partial outputs are summed back: with the reduce-scatter and the next all-gather, an all-reduce of
 *       [H]. Per MoE layer, mixer included: 2 all-reduces = 16H (N-1)/N bytes, 2 launches.
 *   (B) all-to-all: tokens sharded N ways (the mixer's all-reduce becomes a reduce-scatter), each token
 *       sent to its experts' ranks (a bytes x k x H) and the results back (4 x k x H), then an all-gather
 *       of [H] for the next mixer: 8H (N-1)/N + k H (a + 4) (N-1)/N^2 bytes, 4 launches.
 *   Decode (a few rows; latency-bound: a collective costs ~10 us however small): (A). Its one extra
 *   collective per MoE layer is the fewest possible, its sizes are fixed (so decode steps stay CUDA-graph
 *   replayable; all-to-all counts depend on the routing), and with the rows replicated (B)'s combine would
 *   itself be an all-gather of k x [H] fp32, 4kH (N-1)/N >= (A)'s 8H (N-1)/N for k >= 2. (B) would also
 *   need at least N rows to shard.
 *   Prefill (thousands of rows; bandwidth-bound): whichever moves fewer bytes, computed below: (B) when
 *   k (a + 4) < 8N, i.e. for bf16 activations when k < 4N/3. Jamba (k = 2): (B) for every N >= 2, e.g.
 *   Large at N = 8: 10,752 bytes per token and rank for the MoE exchange against (A)'s 57,344.
 */
#include "parallel/shard.h"

#include "ckpt/config.h"

/* Per-token payloads are bounded by the config's caps (H, V, R, k), far from overflowing 64 bits. */
static jb_collective coll(const jb_shard_plan *p, jb_coll_op op, const char *after, uint64_t bytes) {
    const uint64_t n = (uint64_t)p->n_ranks;
    uint64_t wire = op == JB_COLL_ALL_REDUCE ? bytes * 2 * (n - 1) / n
                    : op == JB_COLL_ALL_TO_ALL ? bytes * (n - 1) / (n * n)
                                               : bytes * (n - 1) / n;
    return (jb_collective){op, after, bytes, wire};
}

/* Whether a MoE layer's prefill takes the all-to-all (B) rather than the all-reduce (A): the one that
 * sends fewer bytes per rank, the mixer's collective included (see the top of this file). */
static bool prefill_all_to_all(const jb_shard_plan *p, const jamba_config *c, int act_bytes) {
    if (p->moe != JB_MOE_EXPERTS || p->n_ranks < 2)
        return false;
    const uint64_t H4 = (uint64_t)c->hidden_size * 4, kH = (uint64_t)(c->num_experts_per_tok * c->hidden_size);
    const uint64_t a = 2 * coll(p, JB_COLL_ALL_REDUCE, "", H4).wire;
    const uint64_t b = coll(p, JB_COLL_REDUCE_SCATTER, "", H4).wire + coll(p, JB_COLL_ALL_GATHER, "", H4).wire +
                       coll(p, JB_COLL_ALL_TO_ALL, "", kH * (uint64_t)act_bytes).wire +
                       coll(p, JB_COLL_ALL_TO_ALL, "", kH * 4).wire;
    return b < a;
}

int jb_shard_layer_collectives(const jb_shard_plan *p, const jamba_config *c, int64_t layer, jb_phase phase,
                               int act_bytes, jb_collective out[JB_LAYER_COLLECTIVES_MAX]) {
    if (p->n_ranks < 2)
        return 0;
    const uint64_t H4 = (uint64_t)c->hidden_size * 4, kH = (uint64_t)(c->num_experts_per_tok * c->hidden_size);
    const bool moe = jb_layer_is_moe(c, layer);
    const bool a2a = moe && phase == JB_PHASE_PREFILL && prefill_all_to_all(p, c, act_bytes);
    const jb_coll_op mixer_op = a2a ? JB_COLL_REDUCE_SCATTER : JB_COLL_ALL_REDUCE;
    int n = 0;
    if (jb_layer_is_attention(c, layer)) {
        out[n++] = coll(p, mixer_op, "o_proj", H4);
    } else {
        out[n++] = coll(p, JB_COLL_ALL_REDUCE, "x_proj", (uint64_t)(c->mamba_dt_rank + 2 * c->mamba_d_state) * 4);
        out[n++] = coll(p, mixer_op, "out_proj", H4);
    }
    if (a2a) {
        out[n++] = coll(p, JB_COLL_ALL_TO_ALL, "router (dispatch)", kH * (uint64_t)act_bytes);
        out[n++] = coll(p, JB_COLL_ALL_TO_ALL, "experts (combine)", kH * 4);
        out[n++] = coll(p, JB_COLL_ALL_GATHER, "residual add", H4);
    } else {
        out[n++] = coll(p, JB_COLL_ALL_REDUCE, moe ? "experts" : "down_proj", H4);
    }
    return n;
}

jb_collective jb_shard_embed_collective(const jb_shard_plan *p, const jamba_config *c) {
    return coll(p, JB_COLL_ALL_REDUCE, "embed_tokens", p->n_ranks < 2 ? 0 : (uint64_t)c->hidden_size * 4);
}

jb_collective jb_shard_logits_collective(const jb_shard_plan *p, const jamba_config *c) {
    return coll(p, JB_COLL_ALL_GATHER, "lm_head", p->n_ranks < 2 ? 0 : (uint64_t)c->vocab_size * 4);
}

jb_token_traffic jb_shard_token_traffic(const jb_shard_plan *p, const jamba_config *c, jb_phase phase,
                                        int act_bytes) {
    jb_token_traffic t = {0};
    const jb_collective e = jb_shard_embed_collective(p, c);
    if (e.bytes > 0)
        t = (jb_token_traffic){1, e.bytes, e.wire};
    for (int64_t l = 0; l < c->num_hidden_layers; l++) {
        jb_collective cs[JB_LAYER_COLLECTIVES_MAX];
        const int n = jb_shard_layer_collectives(p, c, l, phase, act_bytes, cs);
        for (int i = 0; i < n; i++) {
            t.collectives++;
            t.bytes += cs[i].bytes;
            t.wire += cs[i].wire;
        }
    }
    return t;
}
