/*
 * weights.cu — a model's weights on one device: a plan pass sizes one arena for every tensor (in the
 * fused device layout of weights_dev.h), then an upload pass converts each tensor from its checkpoint
 * dtype through a pinned staging buffer. Matrices take the device dtype (F32 or BF16); vectors and the
 * small Mamba tensors are fp32, with A = -exp(A_log) computed once here.
 */
#include "ckpt/config.h"
#include "ckpt/dtype.h"
#include "base/alloc.h"
#include "base/error.h"
#include "backend/model.h"
#include "ckpt/init_rule.h"
#include "cuda/device.h"
#include "cuda/ops.h"
#include "cuda/weights_dev.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <string.h>

#define ARENA_ALIGN 256
#define STAGE_ELEMS ((size_t)1 << 23) /* 8M elements: 32 MB of fp32 staging */

namespace {

/* Walks the model twice: plan (sizes only) and upload (same order, real pointers). */
struct builder {
    bool plan;
    jamba_dtype dt;
    char *base;
    size_t off;
    void *stage;          /* pinned (or pageable) host staging, STAGE_ELEMS * 4 bytes */
    cudaError_t error;
    const char *failed;   /* the tensor being uploaded when an error happened */
    bool synth;           /* a device-synthetic model: fill on the device instead of copying */
    uint64_t seed;        /* synth: the model's seed, advanced per tensor */
    int64_t d_state;      /* synth: N, for A */
    int64_t d_conv;       /* synth: K, for the conv's range */
};

bool ends_with(const char *s, const char *suffix) {
    const size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* A synthetic tensor filled on the device by what its label says it is (runtime/synthetic.c's ranges). */
void synth_fill(builder &b, void *dst, size_t n, jamba_dtype to, const char *what) {
    if (b.error != cudaSuccess)
        return;
    double bound = 0;
    const jb_init_kind init = jb_synthetic_init(what, b.d_conv, &bound);
    jb_cuda_fill_kind kind = init == JB_INIT_ONES       ? JB_FILL_CONST
                            : init == JB_INIT_A_LOG    ? JB_FILL_NEG_ARANGE /* A = -exp(A_log) */
                            : init == JB_INIT_DT_BIAS  ? JB_FILL_DT_BIAS
                                                       : JB_FILL_UNIFORM;
    float a = init == JB_INIT_ONES ? 1.0f : (float)bound;
    if (ends_with(what, "_scale")) /* int8 rows spanning the matrices' range */
        kind = JB_FILL_CONST, a = (float)bound / 127.0f;
    else if (to == JAMBA_DTYPE_I8)
        kind = JB_FILL_INT8;
    b.seed = b.seed * 6364136223846793005ull + 1442695040888963407ull;
    if ((b.error = jb_cuda_fill(dst, to, (int64_t)n, kind, a, b.d_state, b.seed, 0)) != cudaSuccess)
        b.failed = what;
}

void *place(builder &b, size_t bytes) {
    size_t at = (b.off + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    b.off = at + bytes;
    return b.plan ? NULL : b.base + at;
}

int64_t n_elements(const jb_weight *w) {
    int64_t n = 1;
    for (int i = 0; i < w->rank; i++)
        n *= w->shape[i];
    return n;
}

/* Copy n stored elements of src (dtype sdt: any float type, or I8/F8_E4M3 rows of row_len elements whose
 * scales start at `scale`) to device dst as `to` (F32 or BF16), applying f to each value. */
template <typename F>
void upload(builder &b, void *dst, const void *src, jamba_dtype sdt, const float *scale, int64_t row_len, size_t n,
            jamba_dtype to, F f, bool identity, const char *what) {
    if (b.plan || b.error != cudaSuccess || n == 0)
        return;
    if (b.synth) {
        synth_fill(b, dst, n, to, what);
        return;
    }
    const size_t esize = to == JAMBA_DTYPE_BF16 ? 2 : 4;
    if (identity && sdt == to) { /* same dtype: straight from the mapped file */
        b.error = cudaMemcpy(dst, src, n * esize, cudaMemcpyHostToDevice);
        if (b.error != cudaSuccess)
            b.failed = what;
        return;
    }
    const size_t src_es = jamba_dtype_size(sdt);
    for (size_t done = 0; done < n && b.error == cudaSuccess; done += STAGE_ELEMS) {
        const size_t m = n - done < STAGE_ELEMS ? n - done : STAGE_ELEMS;
        float *wide = (float *)b.stage;
        jb_to_f32(wide, (const char *)src + done * src_es, sdt, (int64_t)m);
        /* in place, front to back: element i's bf16 lands at or before its own fp32 slot */
        for (size_t i = 0; i < m; i++) {
            float v = wide[i];
            if (scale)
                v *= scale[(done + i) / (size_t)row_len];
            v = f(v);
            if (to == JAMBA_DTYPE_BF16)
                ((__nv_bfloat16 *)b.stage)[i] = __float2bfloat16(v);
            else
                wide[i] = v;
        }
        b.error = cudaMemcpy((char *)dst + done * esize, b.stage, m * esize, cudaMemcpyHostToDevice);
    }
    if (b.error != cudaSuccess)
        b.failed = what;
}

/* Bytes copied as they are (int8 matrices, fp32 scales). */
void upload_raw(builder &b, void *dst, const void *src, size_t bytes, const char *what) {
    if (b.plan || b.error != cudaSuccess || bytes == 0)
        return;
    if (b.synth) {
        const bool scale = ends_with(what, "_scale");
        synth_fill(b, dst, scale ? bytes / 4 : bytes, scale ? JAMBA_DTYPE_F32 : JAMBA_DTYPE_I8, what);
        return;
    }
    if ((b.error = cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice)) != cudaSuccess)
        b.failed = what;
}

float keep(float v) { return v; }
float neg_exp(float v) { return -expf(v); }

/* Matrices in the device dtype: the rows of `parts` stacked in order. */
void *put_matrix(builder &b, const jb_weight *const *parts, int n_parts, const char *what) {
    size_t total = 0;
    for (int i = 0; i < n_parts; i++)
        total += (size_t)n_elements(parts[i]);
    const size_t esize = b.dt == JAMBA_DTYPE_BF16 ? 2 : 4;
    char *dst = (char *)place(b, total * esize);
    size_t at = 0;
    for (int i = 0; i < n_parts; i++) {
        const size_t n = (size_t)n_elements(parts[i]);
        upload(b, dst + at * esize, parts[i]->data, parts[i]->dtype, parts[i]->scale, parts[i]->shape[1], n, b.dt, keep,
               true, what);
        at += n;
    }
    return dst;
}

void *put_one(builder &b, const jb_weight *w, const char *what) { return put_matrix(b, &w, 1, what); }

/* fp32 copies; NULL for an absent optional tensor. */
float *put_f32(builder &b, const jb_weight *w, const char *what, float (*f)(float) = keep) {
    if (w->data == NULL)
        return NULL;
    const size_t n = (size_t)n_elements(w);
    float *dst = (float *)place(b, n * 4);
    upload(b, dst, w->data, w->dtype, NULL, 1, n, JAMBA_DTYPE_F32, f, f == keep, what);
    return dst;
}

void put_mamba(builder &b, const jb_mamba_weights *w, jb_dev_mamba *d) {
    d->in_proj = put_one(b, &w->in_proj, "mamba.in_proj");
    d->in_bias = put_f32(b, &w->in_proj_bias, "mamba.in_proj.bias");
    d->conv_w = put_f32(b, &w->conv1d, "mamba.conv1d");
    d->conv_b = put_f32(b, &w->conv1d_bias, "mamba.conv1d.bias");
    d->x_proj = put_one(b, &w->x_proj, "mamba.x_proj");
    d->dt_proj = put_one(b, &w->dt_proj, "mamba.dt_proj");
    d->dt_bias = put_f32(b, &w->dt_proj_bias, "mamba.dt_proj.bias");
    d->A = put_f32(b, &w->A_log, "mamba.A_log", neg_exp);
    d->D = put_f32(b, &w->D, "mamba.D");
    d->out_proj = put_one(b, &w->out_proj, "mamba.out_proj");
    d->out_bias = put_f32(b, &w->out_proj_bias, "mamba.out_proj.bias");
    d->dt_norm = put_f32(b, &w->dt_norm, "mamba.dt_layernorm");
    d->b_norm = put_f32(b, &w->b_norm, "mamba.b_layernorm");
    d->c_norm = put_f32(b, &w->c_norm, "mamba.c_layernorm");
}

/* One layer's FFN matrices as E stacked blocks (E = 1 for a dense MLP): gate_up [E][2I, H] (gate rows
 * first) and down [E][H, I]; int8 with per-row scales [E][2I] and [E][H] when every matrix is stored
 * int8, else in the device dtype (FP8 and lone int8 matrices widened with their scales). */
void put_ffn(builder &b, const jamba_config *c, const jb_mlp_weights *mlps, int64_t E, jb_dev_layer *d) {
    /* The blocks held, and their I, from the weights: all of them on one GPU; a rank of a sharding plan
     * (cuda/tp_context.cu) holds its own experts whole (the others have no rows) or every block's I split. */
    int64_t held = 0, I = c->intermediate_size;
    for (int64_t e = E - 1; e >= 0; e--)
        if (mlps[e].gate_proj.shape[0] > 0)
            held++, I = mlps[e].gate_proj.shape[0];
    const int64_t H = c->hidden_size;
    const bool q8 = jb_mlps_int8(mlps, E);
    d->ffn_wdt = q8 ? JAMBA_DTYPE_I8 : b.dt;
    const size_t es = q8 ? 1 : b.dt == JAMBA_DTYPE_BF16 ? 2 : 4;
    const size_t half = (size_t)(I * H); /* elements of gate, of up, of down */
    d->gate_up = place(b, 2 * half * es * (size_t)held);
    d->down = place(b, half * es * (size_t)held);
    d->gate_up_scale = q8 ? (float *)place(b, (size_t)(held * 2 * I) * 4) : NULL;
    d->down_scale = q8 ? (float *)place(b, (size_t)(held * H) * 4) : NULL;
    for (int64_t src = 0, e = 0; src < E && !b.plan; src++) {
        const jb_mlp_weights *x = &mlps[src];
        if (x->gate_proj.shape[0] == 0)
            continue; /* another rank's expert */
        char *gu = (char *)d->gate_up + (size_t)e * 2 * half * es, *dn = (char *)d->down + (size_t)e * half * es;
        if (q8) {
            upload_raw(b, gu, x->gate_proj.data, half, "gate_proj");
            upload_raw(b, gu + half, x->up_proj.data, half, "up_proj");
            upload_raw(b, dn, x->down_proj.data, half, "down_proj");
            upload_raw(b, d->gate_up_scale + e * 2 * I, x->gate_proj.scale, (size_t)I * 4, "gate_proj_scale");
            upload_raw(b, d->gate_up_scale + e * 2 * I + I, x->up_proj.scale, (size_t)I * 4, "up_proj_scale");
            upload_raw(b, d->down_scale + e * H, x->down_proj.scale, (size_t)H * 4, "down_proj_scale");
        } else {
            upload(b, gu, x->gate_proj.data, x->gate_proj.dtype, x->gate_proj.scale, H, half, b.dt, keep, true,
                   "gate_proj");
            upload(b, gu + half * es, x->up_proj.data, x->up_proj.dtype, x->up_proj.scale, H, half, b.dt, keep, true,
                   "up_proj");
            upload(b, dn, x->down_proj.data, x->down_proj.dtype, x->down_proj.scale, I, half, b.dt, keep, true,
                   "down_proj");
        }
        e++;
    }
}

void put_layer(builder &b, const jamba_config *c, int64_t i, const jb_layer_weights *w, jb_dev_layer *d) {
    d->attention = jb_layer_is_attention(c, i);
    d->moe = jb_layer_is_moe(c, i);
    d->input_norm = put_f32(b, &w->input_norm, "input_layernorm");
    d->pre_ff_norm = put_f32(b, &w->pre_ff_norm, "pre_ff_layernorm");
    if (d->attention) {
        const jb_weight *qkv[3] = {&w->attn.q_proj, &w->attn.k_proj, &w->attn.v_proj};
        d->qkv = put_matrix(b, qkv, 3, "self_attn.q/k/v_proj");
        d->o_proj = put_one(b, &w->attn.o_proj, "self_attn.o_proj");
    } else {
        put_mamba(b, &w->mamba, &d->mamba);
    }
    if (d->moe) {
        d->router = put_one(b, &w->router, "feed_forward.router");
        put_ffn(b, c, w->experts, c->num_experts, d);
    } else {
        put_ffn(b, c, &w->mlp, 1, d);
    }
}

void put_model(builder &b, const jamba_model *m, jb_cuda_weights *w) {
    const jb_weights *src = &m->weights;
    w->embed = put_one(b, &src->embed, "model.embed_tokens");
    w->lm_head = m->config.tie_word_embeddings ? w->embed : put_one(b, &src->lm_head, "lm_head");
    w->final_norm = put_f32(b, &src->final_norm, "model.final_layernorm");
    for (int64_t i = 0; i < src->n_layers; i++)
        put_layer(b, &m->config, i, &src->layers[i], &w->layers[i]);
}

} // namespace

extern "C" jamba_status jb_cuda_weights_create(const jamba_model *m, int device, jamba_dtype dtype,
                                               jb_cuda_weights **out, jamba_error *err) {
    *out = NULL;
    if (dtype != JAMBA_DTYPE_F32 && dtype != JAMBA_DTYPE_BF16)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "CUDA weights: dtype %s (F32 or BF16 only)",
                       jamba_dtype_name(dtype));
    jamba_device_info info;
    memset(&info, 0, sizeof info);
    JB_TRY(jb_cuda_device_query(device, &info, err));
    int previous = 0;
    cudaGetDevice(&previous);
    cudaSetDevice(device);
    jb_cuda_weights *w = (jb_cuda_weights *)jb_calloc(1, sizeof *w);
    jb_dev_layer *layers = (jb_dev_layer *)jb_calloc((size_t)m->weights.n_layers + 1, sizeof *layers);
    if (w == NULL || layers == NULL) {
        jb_free(w);
        jb_free(layers);
        cudaSetDevice(previous);
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "CUDA weights: out of memory");
    }
    w->device = device;
    w->dt = dtype;
    w->layers = layers;
    w->n_layers = m->weights.n_layers;
    builder b = {true, dtype, NULL, 0, NULL, cudaSuccess, NULL, m->device_synthetic, m->synthetic_seed,
                 m->config.mamba_d_state, m->config.mamba_d_conv};
    put_model(b, m, w);
    w->bytes = b.off;
    jamba_status st = JAMBA_OK;
    cudaError_t e = cudaMalloc(&w->arena, w->bytes);
    if (e != cudaSuccess) {
        cudaGetLastError();
        w->arena = NULL;
        st = jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: the weights need %.2f GiB as %s on device %d (%s), which has "
                     "%.2f GiB free: %s", m->path, (double)w->bytes / (1 << 30), jamba_dtype_name(dtype), device,
                     info.name, (double)info.free_memory / (1 << 30), cudaGetErrorString(e));
    }
    bool pinned = false;
    if (st == JAMBA_OK) {
        pinned = cudaMallocHost(&b.stage, STAGE_ELEMS * 4) == cudaSuccess;
        if (!pinned) {
            cudaGetLastError();
            b.stage = jb_malloc(STAGE_ELEMS * 4); /* pageable staging works, only slower */
            if (b.stage == NULL)
                st = jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "CUDA weights: out of host memory for staging");
        }
    }
    if (st == JAMBA_OK) {
        b.plan = false;
        b.base = (char *)w->arena;
        b.off = 0;
        put_model(b, m, w);
        /* pageable copies may still be in flight when cudaMemcpy returns, and contexts run on their own
         * non-blocking streams: finish here */
        if (b.error == cudaSuccess && (b.error = cudaDeviceSynchronize()) != cudaSuccess)
            b.failed = "the last tensors";
        if (b.error != cudaSuccess)
            st = jb_fail(err, JAMBA_ERR_DEVICE, "%s: uploading %s to device %d failed: %s", m->path, b.failed, device,
                         cudaGetErrorString(b.error));
    }
    if (pinned)
        cudaFreeHost(b.stage);
    else
        jb_free(b.stage);
    cudaSetDevice(previous);
    if (st != JAMBA_OK) {
        jb_cuda_weights_free(w);
        return st;
    }
    *out = w;
    return JAMBA_OK;
}

extern "C" void jb_cuda_weights_free(jb_cuda_weights *w) {
    if (w == NULL)
        return;
    if (w->arena) {
        int previous = 0;
        cudaGetDevice(&previous);
        cudaSetDevice(w->device);
        cudaFree(w->arena);
        cudaSetDevice(previous);
    }
    jb_free(w->layers);
    jb_free(w);
}

extern "C" int jb_cuda_weights_device(const jb_cuda_weights *w) { return w->device; }
extern "C" jamba_dtype jb_cuda_weights_dtype(const jb_cuda_weights *w) { return w->dt; }
extern "C" uint64_t jb_cuda_weights_bytes(const jb_cuda_weights *w) { return w->bytes; }
