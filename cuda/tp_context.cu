/*
 * tp_context.cu — a multi-GPU context (tp_ctx.h): the sharding plan, each rank's slices uploaded to its
 * device, a single-GPU CUDA context per rank built for the rank's shapes, the NCCL communicators (one node:
 * one clique; several: joined by an NCCL id, parallel/nccl_id.h), the sequence-state operations over the
 * ranks' shards, and for several nodes what node 0 broadcasts (tp_desc.h) and the followers' loop.
 *
 * Loading: jb_shard_bind_rank gives a rank's weights as views into the mapped checkpoint (slices that are
 * one run of bytes: row splits, owned experts, replicated tensors) and copies of the rest (column splits:
 * one run per row), one rank at a time and freed once that rank is on its device; jb_cuda_weights_create
 * then uploads them as for one GPU (the fused layouts of weights_dev.h, a rank holding only its experts).
 */
extern "C" { /* C headers without their own guards, before anything includes them */
#include "ckpt/weights.h"
#include "parallel/nccl_id.h"
#include "parallel/slice.h"
}
#include "backend/model.h"
#include "base/alloc.h"
#include "base/error.h"
#include "cuda/tp_dev.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static_assert(sizeof(ncclUniqueId) == JB_NCCL_ID_BYTES, "parallel/nccl_id.h's id size is NCCL's");

jamba_status jb_tp_fault(jb_tp_ctx *t, jamba_error *err, int rank, const char *what, const char *detail) {
    if (!t->dead) {
        t->dead = true;
        snprintf(t->fault, sizeof t->fault, "rank %d (CUDA device %d): %.60s: %.160s", rank, t->ranks[rank].device,
                 what, detail);
    }
    return jb_fail(err, JAMBA_ERR_DEVICE, "multi-GPU context: %s (the context is unusable now; free it)", t->fault);
}

static jamba_status check_alive(const jb_tp_ctx *t, jamba_error *err) {
    if (!t->dead)
        return JAMBA_OK;
    return jb_fail(err, JAMBA_ERR_DEVICE, "multi-GPU context: it failed earlier (%s); free it", t->fault);
}

/* A rank's CUDA context operation: a device fault there (err names it) makes the whole context dead. */
static jamba_status on_rank(jb_tp_ctx *t, int r, jamba_status st) {
    if (st == JAMBA_ERR_DEVICE && !t->dead) {
        t->dead = true;
        snprintf(t->fault, sizeof t->fault, "rank %d: %.230s", r, t->ranks[r].c->fault);
    }
    return st;
}

static void send_stop(jb_tp_ctx *t);

extern "C" void jb_tp_ctx_free(jb_tp_ctx *t) {
    if (t == NULL)
        return;
    send_stop(t); /* several nodes: the followers return from jb_tp_follow */
    for (int r = 0; t->ranks && r < t->n_local; r++) {
        jb_tp_rank *R = &t->ranks[r];
        jb_cuda_ctx_free(R->c); /* waits for its stream, frees its graphs */
        if (R->comm)
            ncclCommDestroy(R->comm);
        jb_cuda_weights_free(R->w);
        jb_device_scope scope(R->device);
        cudaFree(R->d_desc);
        cudaFree(R->d_gather);
        jb_weights_free(&R->view.weights); /* empty unless creation stopped inside a rank's upload */
    }
    cudaFreeHost(t->h_desc);
    cudaGetLastError();
    jb_tp_desc_free(&t->desc);
    jb_tp_launcher_free(t->launcher);
    jb_free(t->ranks);
    jb_shard_plan_free(&t->plan);
    jb_free(t);
}

/* Local rank i's slices on its device, its CUDA context and, with several nodes, its descriptor buffer (and
 * on global rank 0 the buffer every rank's logit rows are gathered into). */
static jamba_status make_rank(jb_tp_ctx *t, const jamba_context_params *p, const jamba_config *rank_cfg, int i,
                              jamba_error *err) {
    jb_tp_rank *R = &t->ranks[i];
    const jamba_model *m = t->model;
    const jamba_config *c = &t->cfg;
    const int r = t->node_rank * t->n_local + i;
    R->device = p->gpu_index + i;
    R->rank = r;
    R->view.path = m->path;
    R->view.config = *rank_cfg;
    R->view.has_weights = true;
    R->view.log = m->log;
    R->view.log_data = m->log_data;
    JB_TRY(jb_shard_bind_rank(&t->plan, c, &m->weights, r, &R->view.weights, err));
    jamba_status st = jb_cuda_weights_create(&R->view, R->device, p->gpu_dtype, &R->w, err);
    jb_weights_free(&R->view.weights); /* the host copies of its column slices: on the device now */
    memset(&R->view.weights, 0, sizeof R->view.weights);
    JB_TRY(st);
    const jb_slice *vocab = jb_shard_slice(&t->plan, 0, r); /* the embedding is the plan's first tensor */
    R->vocab_begin = vocab->begin;
    R->vocab_count = vocab->count;
    const int64_t n_kv = c->num_key_value_heads, d_h = c->head_dim;
    R->kv_begin = n_kv >= t->n ? r * (n_kv / t->n) * d_h : (r / (t->n / n_kv)) * d_h;
    if (t->plan.moe == JB_MOE_EXPERTS) {
        R->expert_count = c->num_experts / t->n;
        R->expert_first = r * R->expert_count;
    }
    R->dense_I = c->intermediate_size / t->n;
    const jb_cuda_ctx_params cp = {p->n_seq_max, p->n_ctx, p->n_batch, p->n_logits_max, t->graphs, p->kv_dtype};
    JB_TRY(jb_cuda_ctx_create(&R->view, R->w, &cp, &R->c, err));
    if (t->n_nodes < 2)
        return JAMBA_OK;
    jb_device_scope scope(R->device);
    cudaError_t e = cudaMalloc((void **)&R->d_desc, (size_t)t->desc_cap);
    if (e == cudaSuccess && r == 0)
        e = cudaMalloc((void **)&R->d_gather, (size_t)(t->n * t->gather_rows * t->vc_max) * sizeof(float));
    if (e != cudaSuccess) {
        cudaGetLastError();
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "multi-node context: rank %d (device %d): step descriptor and "
                       "logit buffers: %s", r, R->device, cudaGetErrorString(e));
    }
    return JAMBA_OK;
}

static jamba_status make_id(jb_nccl_id *out, void *arg, jamba_error *err) {
    (void)arg;
    ncclUniqueId id;
    const ncclResult_t nr = ncclGetUniqueId(&id);
    if (nr != ncclSuccess)
        return jb_fail(err, JAMBA_ERR_DEVICE, "NCCL id: ncclGetUniqueId: %s", ncclGetErrorString(nr));
    memcpy(out->bytes, &id, sizeof id);
    return JAMBA_OK;
}

extern "C" jamba_status jb_tp_unique_id(char *hex, size_t size, jamba_error *err) {
    if (hex == NULL || size < JAMBA_NCCL_ID_HEX_SIZE)
        return jb_fail(err, JAMBA_ERR_BUFFER_TOO_SMALL, "jamba_nccl_unique_id: the id needs %d bytes, %zu given",
                       JAMBA_NCCL_ID_HEX_SIZE, hex ? size : 0);
    jb_nccl_id id;
    JB_TRY(make_id(&id, NULL, err));
    jb_nccl_id_encode(&id, hex);
    return JAMBA_OK;
}

/* The communicators: one node, a clique over its GPUs; several, each local GPU joins the N ranks of all
 * nodes by the shared id (ncclCommInitRank inside one group, as NCCL asks of one thread with several GPUs). */
static jamba_status join(jb_tp_ctx *t, const jamba_context_params *p, jamba_error *err) {
    ncclComm_t comms[JB_SHARD_MAX_RANKS];
    int devices[JB_SHARD_MAX_RANKS];
    for (int i = 0; i < t->n_local; i++)
        devices[i] = t->ranks[i].device;
    ncclResult_t nr;
    if (t->n_nodes < 2) {
        nr = ncclCommInitAll(comms, t->n_local, devices);
    } else {
        const char *env = getenv(JB_NCCL_ID_ENV);
        const bool given = p->nccl_id != NULL && p->nccl_id[0] != '\0';
        const jb_nccl_join j = {t->n_nodes, t->node_rank, p->nccl_id_file, given ? p->nccl_id : env,
                                given ? "nccl_id" : JB_NCCL_ID_ENV, JB_NCCL_ID_WAIT_S};
        jb_nccl_id id;
        bool wrote = false;
        JB_TRY(jb_nccl_id_obtain(&j, make_id, NULL, &id, &wrote, err));
        ncclUniqueId uid;
        memcpy(&uid, id.bytes, sizeof uid);
        nr = ncclGroupStart();
        for (int i = 0; i < t->n_local && nr == ncclSuccess; i++) {
            jb_device_scope scope(devices[i]);
            nr = ncclCommInitRank(&comms[i], t->n, uid, t->ranks[i].rank);
        }
        const ncclResult_t end = ncclGroupEnd();
        nr = nr == ncclSuccess ? end : nr;
        if (wrote && nr == ncclSuccess)
            jb_nccl_id_retire(p->nccl_id_file); /* every rank has joined: a later launch must not read it */
    }
    if (nr != ncclSuccess)
        return jb_fail(err, JAMBA_ERR_DEVICE, "multi-GPU context: NCCL over %d ranks (node %d of %d, devices %d..%d): %s",
                       t->n, t->node_rank, t->n_nodes > 1 ? t->n_nodes : 1, p->gpu_index,
                       p->gpu_index + t->n_local - 1, ncclGetErrorString(nr));
    for (int i = 0; i < t->n_local; i++)
        t->ranks[i].comm = comms[i];
    return JAMBA_OK;
}

/* The shape every node must share (tp_desc.h's hello). */
static void shape_of(const jb_tp_ctx *t, const jamba_context_params *p, int64_t f[JB_TP_HELLO_FIELDS]) {
    f[JB_HELLO_N_SEQ_MAX] = t->S, f[JB_HELLO_N_CTX] = t->C, f[JB_HELLO_N_BATCH] = t->Tb;
    f[JB_HELLO_N_LOGITS_MAX] = t->cap, f[JB_HELLO_MAX_SEGS] = t->limits.max_segs;
    f[JB_HELLO_GPU_DTYPE] = p->gpu_dtype, f[JB_HELLO_KV_DTYPE] = p->kv_dtype, f[JB_HELLO_GRAPHS] = t->graphs;
    f[JB_HELLO_N_GPUS] = t->n, f[JB_HELLO_N_NODES] = t->n_nodes, f[JB_HELLO_VOCAB] = t->cfg.vocab_size;
    f[JB_HELLO_HIDDEN] = t->cfg.hidden_size, f[JB_HELLO_LAYERS] = t->cfg.num_hidden_layers;
    f[JB_HELLO_EXPERTS] = t->cfg.num_experts;
}

/* Several nodes: node 0 sends its shape, every other node compares it with its own, and an all-reduce of
 * the mismatches tells every node (node 0 included) whether all agree. */
static jamba_status hello(jb_tp_ctx *t, const jamba_context_params *p, jamba_error *err) {
    int64_t mine[JB_TP_HELLO_FIELDS];
    shape_of(t, p, mine);
    uint64_t len = 0;
    if (t->node_rank == 0)
        len = jb_tp_desc_encode_hello(t->n_nodes, mine, t->h_desc);
    JB_TRY(jb_tp_broadcast_desc(t, &len, err));
    jamba_error mismatch = {};
    int32_t bad = 0;
    if (t->node_rank > 0) {
        const jamba_status st = jb_tp_desc_decode(t->h_desc, len, &t->limits, &t->desc, &mismatch);
        if (st == JAMBA_OK && t->desc.kind != JB_TP_DESC_HELLO)
            jb_fail(&mismatch, JAMBA_ERR_INVALID_ARGUMENT, "node %d: node 0 sent no hello first", t->node_rank);
        bad = st != JAMBA_OK || t->desc.kind != JB_TP_DESC_HELLO ||
              jb_tp_hello_compare(t->node_rank, mine, t->desc.hello, &mismatch) != JAMBA_OK;
    }
    /* every rank adds its node's verdict (counted once per node: only local rank 0 contributes) */
    ncclResult_t nr = ncclGroupStart();
    cudaError_t e = cudaSuccess;
    for (int i = 0; i < t->n_local && nr == ncclSuccess && e == cudaSuccess; i++) {
        jb_tp_rank *R = &t->ranks[i];
        jb_device_scope scope(R->device);
        const int32_t v = i == 0 ? bad : 0;
        e = cudaMemcpyAsync(R->d_desc, &v, sizeof v, cudaMemcpyHostToDevice, R->c->stream);
        if (e == cudaSuccess)
            nr = ncclAllReduce(R->d_desc, R->d_desc, 1, ncclInt32, ncclSum, R->comm, R->c->stream);
    }
    const ncclResult_t end = ncclGroupEnd();
    nr = nr == ncclSuccess ? end : nr;
    int32_t total = 0;
    if (nr == ncclSuccess && e == cudaSuccess) {
        jb_device_scope scope(t->ranks[0].device);
        e = cudaMemcpyAsync(&total, t->ranks[0].d_desc, sizeof total, cudaMemcpyDeviceToHost, t->ranks[0].c->stream);
        if (e == cudaSuccess)
            e = cudaStreamSynchronize(t->ranks[0].c->stream);
    }
    if (nr != ncclSuccess || e != cudaSuccess)
        return jb_fail(err, JAMBA_ERR_DEVICE, "multi-node context: comparing the nodes' shapes: %s",
                       nr != ncclSuccess ? ncclGetErrorString(nr) : cudaGetErrorString(e));
    if (bad)
        return jb_fail(err, mismatch.status != JAMBA_OK ? mismatch.status : JAMBA_ERR_INVALID_ARGUMENT, "%s",
                       mismatch.message);
    if (total > 0)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "multi-node context: %d of the other %d nodes were started with "
                       "another model or context shape than node %d (their errors name what differs)", total,
                       t->n_nodes - 1, t->node_rank);
    return JAMBA_OK;
}

extern "C" jamba_status jb_tp_ctx_create(const jamba_model *m, const jamba_context_params *p, jb_tp_ctx **out,
                                         jamba_error *err) {
    *out = NULL;
    const int n = p->n_gpus > 1 ? p->n_gpus : 1;
    const int n_nodes = p->n_nodes > 1 ? p->n_nodes : 1, n_local = n / n_nodes; /* resolved: n_nodes divides n */
    if (m->device_synthetic)
        return jb_fail(err, JAMBA_ERR_UNSUPPORTED, "%s: a device-synthetic model runs on one GPU only (n_gpus %d)",
                       m->path, p->n_gpus);
    int visible = 0;
    if (cudaGetDeviceCount(&visible) != cudaSuccess) {
        cudaGetLastError();
        visible = 0;
    }
    if (p->gpu_index < 0 || (int64_t)p->gpu_index + n_local > visible)
        return jb_fail(err, JAMBA_ERR_NO_DEVICE, "context: n_gpus %d%s from gpu_index %d needs CUDA devices %d..%d; %d "
                       "%s visible", n, n_nodes > 1 ? " over several nodes" : "", p->gpu_index, p->gpu_index,
                       p->gpu_index + n_local - 1, visible, visible == 1 ? "is" : "are");
    jb_tp_ctx *t = (jb_tp_ctx *)jb_calloc(1, sizeof *t);
    if (t == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "multi-GPU context: out of memory");
    t->model = m;
    t->cfg = m->config;
    t->cfg.mamba_inner_layernorms = t->cfg.mamba_inner_layernorms || m->weights.inner_norms_stored;
    t->n = n, t->n_local = n_local, t->n_nodes = n_nodes, t->node_rank = p->node_rank;
    t->S = p->n_seq_max, t->C = p->n_ctx, t->Tb = p->n_batch, t->cap = p->n_logits_max;
    t->graphs = p->gpu_graphs;
    jamba_status st = jb_shard_plan_make(&t->cfg, n, &t->plan, err);
    if (st != JAMBA_OK) {
        jb_free(t);
        return st;
    }
    jamba_config rank_cfg;
    jb_shard_rank_config(&t->plan, &t->cfg, &rank_cfg);
    for (int r = 0; r < n; r++) {
        const int64_t vc = jb_shard_slice(&t->plan, 0, r)->count;
        t->vc_max = vc > t->vc_max ? vc : t->vc_max;
    }
    t->gather_rows = t->cap > JB_CUDA_GRAPH_ROWS ? t->cap : JB_CUDA_GRAPH_ROWS;
    t->ranks = (jb_tp_rank *)jb_calloc((size_t)n_local, sizeof *t->ranks);
    if (t->ranks == NULL)
        st = jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "multi-GPU context: out of memory");
    if (st == JAMBA_OK && n_nodes > 1) {
        jb_ctx_layout layout; /* the segments a step may hold, as every rank's context bounds them */
        const jb_ctx_shape shape = {t->S, t->C, t->Tb, t->cap, p->gpu_dtype, p->gpu_dtype, t->graphs};
        st = jb_ctx_layout_plan(&rank_cfg, &shape, &layout, err);
        t->limits = (jb_tp_desc_limits){t->S, t->C, t->Tb, layout.max_segs, t->cap};
        if (st == JAMBA_OK && (st = jb_tp_desc_capacity(&t->limits, &t->desc_cap, err)) == JAMBA_OK &&
            (st = jb_tp_desc_alloc(&t->limits, &t->desc, err)) == JAMBA_OK &&
            cudaMallocHost((void **)&t->h_desc, (size_t)t->desc_cap) != cudaSuccess) {
            cudaGetLastError();
            st = jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "multi-node context: %llu pinned bytes for step descriptors",
                         (unsigned long long)t->desc_cap);
        }
    }
    for (int i = 0; i < n_local && st == JAMBA_OK; i++)
        st = make_rank(t, p, &rank_cfg, i, err);
    if (st == JAMBA_OK && t->graphs)
        st = jb_tp_launcher_create(n_local, &t->launcher, err);
    if (st == JAMBA_OK)
        st = join(t, p, err);
    if (st == JAMBA_OK && n_nodes > 1)
        st = hello(t, p, err);
    if (st != JAMBA_OK) {
        t->stopped = true; /* the other nodes learn of it from their own hello, or from NCCL */
        jb_tp_ctx_free(t);
        return st;
    }
    *out = t;
    return JAMBA_OK;
}

extern "C" uint64_t jb_tp_ctx_bytes(const jb_tp_ctx *t) {
    uint64_t sum = 0;
    for (int r = 0; r < t->n_local; r++)
        sum += jb_cuda_ctx_bytes(t->ranks[r].c) + jb_cuda_weights_bytes(t->ranks[r].w);
    return sum;
}

/* ---- sequence state ------------------------------------------------------------------------------------- */

/* ---- what node 0 sends the other nodes -------------------------------------------------------------- */

namespace {

/* Each local rank's d_desc[off, off + count) from global rank 0's, in one group. */
bool broadcast_part(jb_tp_ctx *t, uint64_t off, uint64_t count, ncclResult_t &nr) {
    nr = ncclGroupStart();
    for (int i = 0; i < t->n_local && nr == ncclSuccess; i++) {
        jb_tp_rank *R = &t->ranks[i];
        jb_device_scope scope(R->device);
        nr = ncclBroadcast(R->d_desc + off, R->d_desc + off, (size_t)count, ncclUint8, 0, R->comm, R->c->stream);
    }
    const ncclResult_t end = ncclGroupEnd();
    nr = nr == ncclSuccess ? end : nr;
    return nr == ncclSuccess;
}

} // namespace

jamba_status jb_tp_broadcast_desc(jb_tp_ctx *t, uint64_t *len, jamba_error *err) {
    jb_tp_rank *R0 = &t->ranks[0];
    const bool root = t->node_rank == 0;
    jb_device_scope scope(R0->device);
    cudaError_t e = cudaSuccess;
    ncclResult_t nr = ncclSuccess;
    if (root) /* the whole descriptor up at once; the broadcasts then send its parts */
        e = cudaMemcpyAsync(R0->d_desc, t->h_desc, (size_t)*len, cudaMemcpyHostToDevice, R0->c->stream);
    if (e == cudaSuccess && broadcast_part(t, 0, JB_TP_DESC_HEAD, nr) && !root) {
        e = cudaMemcpyAsync(t->h_desc, R0->d_desc, JB_TP_DESC_HEAD, cudaMemcpyDeviceToHost, R0->c->stream);
        if (e == cudaSuccess)
            e = cudaStreamSynchronize(R0->c->stream);
        if (e == cudaSuccess)
            JB_TRY(jb_tp_desc_total(t->h_desc, t->desc_cap, len, err));
    }
    if (e == cudaSuccess && nr == ncclSuccess && *len > JB_TP_DESC_HEAD &&
        broadcast_part(t, JB_TP_DESC_HEAD, *len - JB_TP_DESC_HEAD, nr) && !root)
        e = cudaMemcpyAsync(t->h_desc + JB_TP_DESC_HEAD, R0->d_desc + JB_TP_DESC_HEAD, (size_t)(*len - JB_TP_DESC_HEAD),
                            cudaMemcpyDeviceToHost, R0->c->stream);
    if (e == cudaSuccess && nr == ncclSuccess) /* node 0 may reuse h_desc, a follower read all of it */
        e = cudaStreamSynchronize(R0->c->stream);
    if (nr != ncclSuccess)
        return jb_tp_fault(t, err, 0, "broadcasting node 0's step", ncclGetErrorString(nr));
    if (e != cudaSuccess)
        return jb_tp_fault(t, err, 0, "broadcasting node 0's step", cudaGetErrorString(e));
    return JAMBA_OK;
}

/* Node 0 of several: tell the other nodes an operation (a reset, copy or stop). */
static jamba_status send_op(jb_tp_ctx *t, jb_tp_desc_kind kind, int64_t a, int64_t b, int64_t c, jamba_error *err) {
    if (t->n_nodes < 2)
        return JAMBA_OK;
    uint64_t len = jb_tp_desc_encode_op(kind, a, b, c, t->h_desc);
    return jb_tp_broadcast_desc(t, &len, err);
}

/* Node 0 of several, freeing a live context: the followers stop (a failure here has nowhere to go). */
static void send_stop(jb_tp_ctx *t) {
    if (t->n_nodes < 2 || t->node_rank != 0 || t->stopped || t->dead || t->ranks == NULL || t->h_desc == NULL)
        return;
    t->stopped = true;
    jamba_error ignored = {};
    send_op(t, JB_TP_DESC_STOP, 0, 0, 0, &ignored);
}

/* Another node's context runs only what node 0 sends. */
static jamba_status refuse_follower(const jb_tp_ctx *t, const char *what, jamba_error *err) {
    if (t->node_rank == 0)
        return JAMBA_OK;
    return jb_fail(err, JAMBA_ERR_UNSUPPORTED, "multi-node context: node %d does not %s on its own: it runs node 0's "
                   "operations in jamba_context_follow", t->node_rank, what);
}

/* ---- sequence state ------------------------------------------------------------------------------------- */

static jamba_status seq_reset_local(jb_tp_ctx *t, int32_t seq, jamba_error *err) {
    for (int r = 0; r < t->n_local; r++)
        JB_TRY(on_rank(t, r, jb_cuda_seq_reset(t->ranks[r].c, seq, err)));
    return JAMBA_OK;
}

static jamba_status seq_copy_local(jb_tp_ctx *t, int32_t src, int32_t dst, int64_t n_tokens, jamba_error *err) {
    for (int r = 0; r < t->n_local; r++)
        JB_TRY(on_rank(t, r, jb_cuda_seq_copy(t->ranks[r].c, src, dst, n_tokens, err)));
    return JAMBA_OK;
}

extern "C" jamba_status jb_tp_seq_reset(jb_tp_ctx *t, int32_t seq, jamba_error *err) {
    JB_TRY(check_alive(t, err));
    JB_TRY(refuse_follower(t, "reset sequences", err));
    JB_TRY(send_op(t, JB_TP_DESC_SEQ_RESET, seq, 0, 0, err));
    return seq_reset_local(t, seq, err);
}

extern "C" jamba_status jb_tp_seq_copy(jb_tp_ctx *t, int32_t src, int32_t dst, int64_t n_tokens, jamba_error *err) {
    JB_TRY(check_alive(t, err));
    JB_TRY(refuse_follower(t, "copy sequences", err));
    JB_TRY(send_op(t, JB_TP_DESC_SEQ_COPY, src, dst, n_tokens, err));
    return seq_copy_local(t, src, dst, n_tokens, err);
}

extern "C" jamba_status jb_tp_follow(jb_tp_ctx *t, jamba_error *err) {
    JB_TRY(check_alive(t, err));
    if (t->n_nodes < 2 || t->node_rank == 0)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_context_follow: this context is %s; only another "
                       "node's context follows node 0", t->n_nodes < 2 ? "on one node" : "node 0's");
    while (!t->stopped) {
        uint64_t len = 0;
        JB_TRY(jb_tp_broadcast_desc(t, &len, err));
        jamba_error why = {};
        if (jb_tp_desc_decode(t->h_desc, len, &t->limits, &t->desc, &why) != JAMBA_OK)
            return jb_tp_fault(t, err, 0, "reading node 0's step", why.message); /* out of step with node 0 now */
        const int64_t *a = t->desc.arg;
        switch (t->desc.kind) {
        case JB_TP_DESC_STEP:
            JB_TRY(jb_tp_run_step(t, &t->desc.io, err));
            break;
        case JB_TP_DESC_SEQ_RESET:
            JB_TRY(seq_reset_local(t, (int32_t)a[0], err));
            break;
        case JB_TP_DESC_SEQ_COPY:
            JB_TRY(seq_copy_local(t, (int32_t)a[0], (int32_t)a[1], a[2], err));
            break;
        case JB_TP_DESC_STOP:
            t->stopped = true;
            break;
        default:
            return jb_tp_fault(t, err, 0, "reading node 0's step", "an unexpected descriptor kind");
        }
    }
    return JAMBA_OK;
}

namespace {

/* Floats [offset, offset + n) of one piece in the single-GPU layout, visited as the runs each rank holds:
 * fn(rank, rank-local offset, count, index into the caller's n floats). Conv and SSM pieces ([D_i, K-1],
 * [D_i, N]) hold D_r channels per rank, contiguous; K and V pieces ([C, n_kv d_h]) hold kv_r columns of
 * every token row. all_copies: visit every rank holding a KV head (writes), else its first holder (reads). */
template <typename F>
jamba_status each_run(jb_tp_ctx *t, jb_state_kind kind, int64_t offset, int64_t n, bool all_copies, F fn) {
    const jamba_config *c = &t->cfg;
    const int64_t end = offset + n;
    if (kind == JB_STATE_CONV || kind == JB_STATE_SSM) {
        const int64_t per = kind == JB_STATE_CONV ? c->mamba_d_conv - 1 : c->mamba_d_state;
        const int64_t span = c->mamba_d_inner / t->n * per;
        for (int r = 0; r < t->n; r++) {
            const int64_t lo = offset > r * span ? offset : r * span;
            const int64_t hi = end < (r + 1) * span ? end : (r + 1) * span;
            if (lo < hi)
                JB_TRY(fn(r, lo - r * span, hi - lo, lo - offset));
        }
        return JAMBA_OK;
    }
    const int64_t kv = c->num_key_value_heads * c->head_dim;
    const int64_t copies = c->num_key_value_heads >= t->n ? 1 : t->n / c->num_key_value_heads;
    for (int64_t at = offset; at < end;) {
        const int64_t row = at / kv, row_end = (row + 1) * kv < end ? (row + 1) * kv : end;
        for (int r = 0; r < t->n; r++) {
            if (!all_copies && r % copies != 0)
                continue;
            const jb_tp_rank *R = &t->ranks[r];
            const int64_t kv_r = R->c->kv;
            const int64_t lo = at > row * kv + R->kv_begin ? at : row * kv + R->kv_begin;
            const int64_t hi = row_end < row * kv + R->kv_begin + kv_r ? row_end : row * kv + R->kv_begin + kv_r;
            if (lo < hi)
                JB_TRY(fn(r, row * kv_r + (lo - row * kv - R->kv_begin), hi - lo, lo - offset));
        }
        at = row_end;
    }
    return JAMBA_OK;
}

} // namespace

/* Several nodes: the pieces lie on every node, and nothing moves them to node 0 yet. */
static jamba_status refuse_nodes(const jb_tp_ctx *t, const char *what, jamba_error *err) {
    if (t->n_nodes < 2)
        return JAMBA_OK;
    return jb_fail(err, JAMBA_ERR_UNSUPPORTED, "multi-node context: %s sequence state is not built over several nodes "
                   "(%d); it works on one node (docs/multi-gpu.md)", what, t->n_nodes);
}

extern "C" jamba_status jb_tp_state_read(jb_tp_ctx *t, int32_t seq, jb_state_kind kind, int64_t layer,
                                         int64_t offset, int64_t n, float *dst, jamba_error *err) {
    JB_TRY(check_alive(t, err));
    JB_TRY(refuse_nodes(t, "reading", err));
    return each_run(t, kind, offset, n, false, [&](int r, int64_t local, int64_t count, int64_t at) {
        return on_rank(t, r, jb_cuda_state_read(t->ranks[r].c, seq, kind, layer, local, count, dst + at, err));
    });
}

extern "C" jamba_status jb_tp_state_write(jb_tp_ctx *t, int32_t seq, jb_state_kind kind, int64_t layer,
                                          int64_t offset, int64_t n, const float *src, jamba_error *err) {
    JB_TRY(check_alive(t, err));
    JB_TRY(refuse_nodes(t, "writing", err));
    return each_run(t, kind, offset, n, true, [&](int r, int64_t local, int64_t count, int64_t at) {
        return on_rank(t, r, jb_cuda_state_write(t->ranks[r].c, seq, kind, layer, local, count, src + at, err));
    });
}
