/*
 * json.h — strict JSON reading on top of jansson: duplicate keys rejected, exact integers, size caps.
 * Used for config.json, model.safetensors.index.json and safetensors headers.
 */
#ifndef JB_JSON_H
#define JB_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "jamba.h"

/* Parse `len` bytes as one JSON object (duplicate keys are an error). `label` names the source in the
 * error message; `bad` is the status for malformed input. On success *out owns a new reference. */
jamba_status jb_json_parse_object(const char *buf, size_t len, const char *label, jamba_status bad,
                                  json_t **out, jamba_error *err);

/* The same with extra jansson decoding flags (e.g. JSON_DECODE_INT_AS_REAL for files that carry integers
 * beyond 64 bits, such as tokenizer_config.json's model_max_length). */
jamba_status jb_json_parse_object_flags(const char *buf, size_t len, const char *label, jamba_status bad, size_t flags,
                                        json_t **out, jamba_error *err);

/* Read a whole regular file of at most max_size bytes (else status `bad`) into a new NUL-terminated
 * buffer. */
jamba_status jb_read_small_file(const char *path, const char *label, uint64_t max_size, jamba_status bad,
                                char **out, size_t *out_len, jamba_error *err);

/* A JSON integer >= 0 (reals, negatives and other types are rejected). */
bool jb_json_as_u64(const json_t *v, uint64_t *out);

/* A short name of a JSON value's type for messages ("string", "real", ...). */
const char *jb_json_type_name(const json_t *v);

#endif /* JB_JSON_H */
