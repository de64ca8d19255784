/*
 * test_model_api.c — the public API's contracts: versions, status strings, argument checks, weight
 * modes, inventory order, warnings, the memory estimate, and concurrent use of distinct models.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/testutil.h"

JB_TEST(api, version_agrees_with_header) {
    cr_assert_str_eq(jamba_version(), JAMBA_VERSION_STRING);
    cr_assert_eq(jamba_version_number(), JAMBA_VERSION_NUMBER);
    char expect[32];
    snprintf(expect, sizeof expect, "%d.%d.%d", JAMBA_VERSION_MAJOR, JAMBA_VERSION_MINOR, JAMBA_VERSION_PATCH);
    cr_assert_str_eq(jamba_version(), expect);
}

JB_TEST(api, status_and_dtype_names) {
    for (int s = JAMBA_ERR_NUMERIC; s <= JAMBA_OK; s++) {
        const char *name = jamba_status_string((jamba_status)s);
        cr_assert(name && *name && strcmp(name, "unknown status") != 0, "status %d", s);
    }
    cr_assert_str_eq(jamba_status_string((jamba_status)-999), "unknown status");
    cr_assert_str_eq(jamba_dtype_name(JAMBA_DTYPE_BF16), "BF16");
    cr_assert_str_eq(jamba_dtype_name(JAMBA_DTYPE_F8_E4M3), "F8_E4M3");
    cr_assert_str_eq(jamba_dtype_name((jamba_dtype)1000), "UNKNOWN");
    cr_assert_eq(jamba_dtype_size(JAMBA_DTYPE_F32), 4);
    cr_assert_eq(jamba_dtype_size(JAMBA_DTYPE_BF16), 2);
    cr_assert_eq(jamba_dtype_size(JAMBA_DTYPE_I8), 1);
    cr_assert_eq(jamba_dtype_size(JAMBA_DTYPE_UNKNOWN), 0);
    cr_assert_eq(jamba_dtype_size((jamba_dtype)-3), 0);
}

JB_TEST(api, bad_arguments_are_errors_not_crashes) {
    jamba_model *m = (jamba_model *)0x1;
    jamba_error err = {0};
    cr_assert_eq(jamba_model_load(NULL, NULL, &m, &err), JAMBA_ERR_INVALID_ARGUMENT);
    cr_assert_null(m);
    cr_assert_eq(jamba_model_load("", NULL, &m, NULL), JAMBA_ERR_INVALID_ARGUMENT);
    cr_assert_eq(jamba_model_load("x", NULL, NULL, &err), JAMBA_ERR_INVALID_ARGUMENT);
    jamba_model_params p = jamba_model_default_params();
    p.weights = (jamba_weights_mode)9;
    char *dir = tu_fixture("models/tiny-hf");
    cr_assert_eq(jamba_model_load(dir, &p, &m, &err), JAMBA_ERR_INVALID_ARGUMENT);
    cr_assert_eq(jamba_model_load("/no/such/folder", NULL, &m, &err), JAMBA_ERR_IO);
    cr_assert(strstr(err.message, "/no/such/folder") != NULL, "%s", err.message);
    char *file = tu_fixture("models/tiny-hf/config.json");
    cr_assert_eq(jamba_model_load(file, NULL, &m, &err), JAMBA_ERR_IO);
    cr_assert(strstr(err.message, "not a folder") != NULL, "%s", err.message);
    jamba_model_free(NULL);
    cr_assert_null(jamba_model_config(NULL));
    cr_assert_eq(jamba_model_n_tensors(NULL), 0);
    cr_assert_eq(jamba_model_layer(NULL, 0, NULL, &err), JAMBA_ERR_INVALID_ARGUMENT);
    free(file);
    free(dir);
}

JB_TEST(api, weight_modes) {
    char *mini = strdup(JB_SOURCE_DIR "/models/configs/jamba-1.5-mini");
    jamba_model *m = NULL;
    jamba_error err = {0};
    cr_assert_eq(jamba_model_load(mini, NULL, &m, &err), JAMBA_ERR_NO_WEIGHTS);
    cr_assert(strstr(err.message, "model.safetensors") != NULL, "%s", err.message);
    jamba_model_params p = jamba_model_default_params();
    p.weights = JAMBA_WEIGHTS_IF_PRESENT;
    cr_assert_eq(jamba_model_load(mini, &p, &m, &err), JAMBA_OK, "%s", err.message);
    cr_assert(!jamba_model_has_weights(m));
    cr_assert_eq(jamba_model_n_tensors(m), 0);
    cr_assert_str_eq(jamba_model_path(m), mini);
    jamba_model_free(m);

    char *tiny = tu_fixture("models/tiny-hf");
    p.weights = JAMBA_WEIGHTS_NONE;
    cr_assert_eq(jamba_model_load(tiny, &p, &m, &err), JAMBA_OK);
    cr_assert(!jamba_model_has_weights(m));
    jamba_model_free(m);
    p.weights = JAMBA_WEIGHTS_IF_PRESENT;
    cr_assert_eq(jamba_model_load(tiny, &p, &m, &err), JAMBA_OK);
    cr_assert(jamba_model_has_weights(m));
    jamba_model_free(m);
    free(tiny);
    free(mini);
}

JB_TEST(api, inventory_in_binding_order) {
    char *dir = tu_fixture("models/tiny-hf-sharded");
    jamba_model *m = NULL;
    cr_assert_eq(jamba_model_load(dir, NULL, &m, NULL), JAMBA_OK);
    int64_t n = jamba_model_n_tensors(m);
    cr_assert_eq(n, 83);
    jamba_tensor_info t;
    cr_assert_eq(jamba_model_tensor(m, 0, &t, NULL), JAMBA_OK);
    cr_assert_str_eq(t.name, "model.embed_tokens.weight");
    cr_assert_str_eq(t.file, "model-00001-of-00017.safetensors");
    cr_assert_eq(t.rank, 2);
    cr_assert_eq(t.shape[0], 64);
    cr_assert_eq(t.n_bytes, 64 * 16 * 4);
    cr_assert_eq(t.file_offset % 4, 0);
    cr_assert_eq(jamba_model_tensor(m, 1, &t, NULL), JAMBA_OK);
    cr_assert_str_eq(t.name, "model.layers.0.input_layernorm.weight");
    cr_assert_eq(jamba_model_tensor(m, n - 1, &t, NULL), JAMBA_OK);
    cr_assert_str_eq(t.name, "lm_head.weight");
    jamba_error err = {0};
    cr_assert_eq(jamba_model_tensor(m, n, &t, &err), JAMBA_ERR_INVALID_ARGUMENT);
    cr_assert_eq(jamba_model_tensor(m, -1, &t, NULL), JAMBA_ERR_INVALID_ARGUMENT);
    jamba_layer_info li;
    cr_assert_eq(jamba_model_layer(m, 4, &li, &err), JAMBA_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err.message, "layer 4 outside [0, 4)") != NULL, "%s", err.message);
    cr_assert_eq(jamba_model_layer(m, 2, &li, NULL), JAMBA_OK);
    cr_assert_eq(li.mixer, JAMBA_MIXER_ATTENTION);
    cr_assert_eq(li.ffn, JAMBA_FFN_DENSE);
    cr_assert_eq(jamba_model_layer(m, 3, &li, NULL), JAMBA_OK);
    cr_assert_eq(li.mixer, JAMBA_MIXER_MAMBA);
    cr_assert_eq(li.ffn, JAMBA_FFN_MOE);
    cr_assert_eq(li.n_experts, 4);
    jamba_model_free(m);
    free(dir);
}

JB_TEST(api, error_struct_untouched_on_success) {
    jamba_error err;
    memset(&err, 0x5a, sizeof err);
    char *dir = tu_fixture("models/tiny-hf");
    jamba_model *m = NULL;
    cr_assert_eq(jamba_model_load(dir, NULL, &m, &err), JAMBA_OK);
    cr_assert_eq((int)err.status, 0x5a5a5a5a);
    jamba_model_free(m);
    free(dir);
}

JB_TEST(api, warnings_from_config) {
    char *src = tu_fixture("models/tiny-hf");
    char *dir = tu_clone_model(src);
    char *cfg = tu_path(dir, "config.json");
    size_t n;
    char *text = (char *)tu_read_file(cfg, &n);
    text[n] = '\0';
    char *brace = strrchr(text, '}');
    *brace = '\0';
    char *edited = malloc(n + 64);
    snprintf(edited, n + 64, "%s, \"future_option\": 1}", text);
    tu_write_text(cfg, edited);
    jamba_model *m = NULL;
    cr_assert_eq(jamba_model_load(dir, NULL, &m, NULL), JAMBA_OK);
    cr_assert_eq(jamba_model_n_warnings(m), 1);
    cr_assert(strstr(jamba_model_warning(m, 0), "future_option") != NULL);
    cr_assert_null(jamba_model_warning(m, -1));
    jamba_model_free(m);
    tu_rmtree(dir);
    free(edited);
    free(text);
    free(cfg);
    free(dir);
    free(src);
}

JB_TEST(api, memory_estimate_for_jamba_mini) {
    jamba_model_params p = jamba_model_default_params();
    p.weights = JAMBA_WEIGHTS_IF_PRESENT;
    jamba_model *m = NULL;
    cr_assert_eq(jamba_model_load(JB_SOURCE_DIR "/models/configs/jamba-1.5-mini", &p, &m, NULL), JAMBA_OK);
    jamba_memory_params mp = jamba_memory_default_params(m);
    cr_assert_eq(mp.n_ctx, 262144);
    cr_assert_eq(mp.weight_dtype, JAMBA_DTYPE_BF16);
    jamba_memory_estimate e;
    cr_assert_eq(jamba_model_memory(m, &mp, &e, NULL), JAMBA_OK);
    cr_assert_eq(e.weight_bytes, 103140646656ull);
    cr_assert_eq(e.kv_bytes, 4ull << 30);
    cr_assert_eq(e.mamba_state_bytes_per_seq, 28ull * 8192 * 70);
    cr_assert_eq(e.total_bytes, e.weight_bytes + e.kv_bytes + e.mamba_state_bytes);
    mp.n_seq = 4;
    mp.kv_dtype = JAMBA_DTYPE_F32;
    cr_assert_eq(jamba_model_memory(m, &mp, &e, NULL), JAMBA_OK);
    cr_assert_eq(e.kv_bytes, 4ull * (8ull << 30));
    cr_assert_eq(e.mamba_state_bytes, 4 * e.mamba_state_bytes_per_seq);
    mp.weight_dtype = JAMBA_DTYPE_F32;
    cr_assert_eq(jamba_model_memory(m, &mp, &e, NULL), JAMBA_OK);
    cr_assert_eq(e.weight_bytes, 2 * 103140646656ull);
    jamba_error err = {0};
    mp.n_ctx = INT64_C(1) << 60;
    mp.n_seq = 1 << 20;
    cr_assert_eq(jamba_model_memory(m, &mp, &e, &err), JAMBA_ERR_OVERFLOW);
    mp.n_ctx = 0;
    cr_assert_eq(jamba_model_memory(m, &mp, &e, &err), JAMBA_ERR_INVALID_ARGUMENT);
    mp.n_ctx = 10;
    mp.kv_dtype = JAMBA_DTYPE_I8;
    cr_assert_eq(jamba_model_memory(m, &mp, &e, &err), JAMBA_ERR_INVALID_ARGUMENT);
    cr_assert_eq(jamba_model_memory(m, NULL, NULL, &err), JAMBA_ERR_INVALID_ARGUMENT);
    jamba_model_free(m);
}

typedef struct worker {
    const char *dir;
    int ok;
} worker;

static void *load_and_query(void *arg) {
    worker *w = arg;
    for (int round = 0; round < 20; round++) {
        jamba_model *m = NULL;
        jamba_error err = {0};
        if (jamba_model_load(w->dir, NULL, &m, &err) != JAMBA_OK)
            return NULL;
        jamba_param_counts pc;
        jamba_tensor_info t;
        int good = jamba_model_param_counts(m, &pc, &err) == JAMBA_OK && pc.total == 21259 &&
                   jamba_model_tensor(m, 0, &t, &err) == JAMBA_OK;
        jamba_model_free(m);
        if (!good)
            return NULL;
    }
    w->ok = 1;
    return NULL;
}

JB_TEST(api, distinct_models_in_parallel_threads) {
    char *a = tu_fixture("models/tiny-hf"), *b = tu_fixture("models/tiny-hf-sharded");
    worker w[4] = {{a, 0}, {b, 0}, {a, 0}, {b, 0}};
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, load_and_query, &w[i]), 0);
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        cr_assert(w[i].ok, "thread %d", i);
    }
    free(a);
    free(b);
}

JB_TEST(api, backend_query_without_gpu_is_not_an_error) {
    jamba_backend_info info;
    jamba_error err = {0};
    cr_assert_eq(jamba_backend_query(&info, &err), JAMBA_OK, "%s", err.message);
    cr_assert_geq(info.device_count, 0);
    if (info.device_count == 0) {
        cr_assert(info.note[0] != '\0');
        jamba_device_info d;
        cr_assert_eq(jamba_device_query(0, &d, &err), JAMBA_ERR_NO_DEVICE);
    }
    jamba_device_info d;
    cr_assert_eq(jamba_device_query(-1, &d, &err), JAMBA_ERR_NO_DEVICE);
    cr_assert_eq(jamba_backend_query(NULL, &err), JAMBA_ERR_INVALID_ARGUMENT);
#ifdef JAMBA_WITH_CUDA
    cr_assert(info.cuda_built);
    cr_assert_gt(info.cuda_runtime_version, 0);
    cr_assert_gt(info.cublas_version, 0);
#else
    cr_assert(!info.cuda_built);
#endif
}
