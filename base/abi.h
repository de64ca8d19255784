/*
 * abi.h — structs that cross the public API with their size (include/jamba.h, "ABI"): the caller's
 * header passes sizeof, so a caller built against an older header (a shorter struct) or a newer one (a
 * longer struct) still gets exactly the bytes it owns read or written.
 */
#ifndef JB_ABI_H
#define JB_ABI_H

#include <stddef.h>

#include "jamba.h"

/* Bytes of `type` up to and including `field`: the size a struct had when `field` was its last member. */
#define JB_SIZE_THROUGH(type, field) (offsetof(type, field) + sizeof(((type *)0)->field))

/*
 * Overlay a caller's struct (caller_size bytes at src) on `dst` (dst_size bytes, already holding the
 * defaults): the bytes both know are copied; fields the caller's header lacks keep their defaults. Fails
 * with JAMBA_ERR_INVALID_ARGUMENT when caller_size < min_size (older than the first sized release), and
 * with JAMBA_ERR_UNSUPPORTED when a newer caller set a field this library does not know (its bytes past
 * dst_size are not all zero). `what` names the struct in messages.
 */
jamba_status jb_struct_in(void *dst, size_t dst_size, const void *src, size_t caller_size, size_t min_size,
                          const char *what, jamba_error *err);

/* Write a library struct (src, src_size bytes) into a caller's (dst, caller_size bytes): the bytes both
 * know are copied and the rest of the caller's struct is zeroed. JAMBA_ERR_INVALID_ARGUMENT when
 * caller_size < min_size. */
jamba_status jb_struct_out(void *dst, size_t caller_size, const void *src, size_t src_size, size_t min_size,
                           const char *what, jamba_error *err);

/* The smallest size of each size-carrying API struct a caller may pass: its size in the first release that
 * carried sizes (0.1). A field appended later lies past these bounds, so a caller built against the older
 * header passes fewer bytes and gets that field's default. The one list of these bounds. */
#define JB_MIN_MODEL_PARAMS JB_SIZE_THROUGH(jamba_model_params, progress_data)
#define JB_MIN_MEMORY_PARAMS JB_SIZE_THROUGH(jamba_memory_params, weight_dtype)
#define JB_MIN_MEMORY_ESTIMATE JB_SIZE_THROUGH(jamba_memory_estimate, total_bytes)
#define JB_MIN_CONTEXT_PARAMS JB_SIZE_THROUGH(jamba_context_params, n_gpus)
#define JB_MIN_CONTEXT_PLAN JB_SIZE_THROUGH(jamba_context_plan, per_gpu)
#define JB_MIN_SEQ_INPUT JB_SIZE_THROUGH(jamba_seq_input, logits)
#define JB_MIN_CHAT_MESSAGE JB_SIZE_THROUGH(jamba_chat_message, content)
#define JB_MIN_SAMPLER_PARAMS JB_SIZE_THROUGH(jamba_sampler_params, seed)
#define JB_MIN_LAYER_INFO JB_SIZE_THROUGH(jamba_layer_info, n_experts)
#define JB_MIN_PARAM_COUNTS JB_SIZE_THROUGH(jamba_param_counts, norms)
#define JB_MIN_TENSOR_INFO JB_SIZE_THROUGH(jamba_tensor_info, aligned)
#define JB_MIN_BACKEND_INFO JB_SIZE_THROUGH(jamba_backend_info, note)
#define JB_MIN_DEVICE_INFO JB_SIZE_THROUGH(jamba_device_info, kernels_run)
#define JB_MIN_SAVE_PARAMS JB_SIZE_THROUGH(jamba_save_params, abort_data)
#define JB_MIN_CAPTURE JB_SIZE_THROUGH(jamba_capture, hook_data)
#define JB_MIN_ROUTER_STATS JB_SIZE_THROUGH(jamba_router_stats, balance_loss)
#define JB_MIN_PREFIX_CACHE_STATS JB_SIZE_THROUGH(jamba_prefix_cache_stats, evictions)
#define JB_MIN_REQUEST_PARAMS JB_SIZE_THROUGH(jamba_request_params, user_data)
#define JB_MIN_SCHEDULER_PARAMS JB_SIZE_THROUGH(jamba_scheduler_params, max_waiting)
#define JB_MIN_SCHEDULER_STATS JB_SIZE_THROUGH(jamba_scheduler_stats, generated_tokens)

/* Fill a caller's struct of `size` bytes with the library's defaults `d` (the part both know; zeros past). */
#define JB_INIT_SIZED(dst, size, defaults) \
    ((void)jb_struct_out((dst), (size), &(defaults), sizeof(defaults), 0, "params", NULL))

#endif /* JB_ABI_H */
