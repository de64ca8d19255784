/*
 * model_info.c — the smallest useful program on the public API: load a model folder and print its
 * schedule, parameter counts and the first tensors of its inventory.
 *
 *   example_model_info MODEL_DIR
 */
#include <jamba.h>
#include <stdio.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL_DIR\n", argv[0]);
        return 2;
    }
    jamba_model_params params = jamba_model_default_params();
    params.weights = JAMBA_WEIGHTS_IF_PRESENT;
    jamba_error err = {0};
    jamba_model *model = NULL;
    if (jamba_model_load(argv[1], &params, &model, &err) != JAMBA_OK) {
        fprintf(stderr, "error (%s): %s\n", jamba_status_string(err.status), err.message);
        return 1;
    }
    const jamba_config *cfg = jamba_model_config(model);
    printf("%lld layers:", (long long)cfg->num_hidden_layers);
    for (int64_t i = 0; i < cfg->num_hidden_layers; i++) {
        jamba_layer_info layer;
        jamba_model_layer(model, i, &layer, NULL);
        printf(" %s/%s", layer.mixer == JAMBA_MIXER_ATTENTION ? "attn" : "mamba",
               layer.ffn == JAMBA_FFN_MOE ? "moe" : "mlp");
    }
    jamba_param_counts counts;
    if (jamba_model_param_counts(model, &counts, &err) == JAMBA_OK)
        printf("\nparameters: %llu total, %llu active\n", (unsigned long long)counts.total,
               (unsigned long long)counts.active);
    int64_t n = jamba_model_n_tensors(model);
    for (int64_t i = 0; i < n && i < 5; i++) {
        jamba_tensor_info t;
        jamba_model_tensor(model, i, &t, NULL);
        printf("  %s %s %llu bytes\n", t.name, jamba_dtype_name(t.dtype), (unsigned long long)t.n_bytes);
    }
    jamba_model_free(model);
    return 0;
}
