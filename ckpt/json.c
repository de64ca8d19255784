/*
 * json.c — strict JSON helpers.
 */
#include "ckpt/json.h"

#include "base/alloc.h"
#include "base/error.h"
#include "base/file.h"

#include <string.h>

jamba_status jb_json_parse_object(const char *buf, size_t len, const char *label, jamba_status bad,
                                  json_t **out, jamba_error *err) {
    return jb_json_parse_object_flags(buf, len, label, bad, 0, out, err);
}

jamba_status jb_json_parse_object_flags(const char *buf, size_t len, const char *label, jamba_status bad, size_t flags,
                                        json_t **out, jamba_error *err) {
    *out = NULL;
    json_error_t jerr;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES | flags, &jerr);
    /* jansson reports most allocation failures as json_error_out_of_memory, but a failure while setting
     * up its lexer returns NULL with the error left empty. */
    if (root == NULL && (json_error_code(&jerr) == json_error_out_of_memory || jerr.text[0] == '\0'))
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory parsing JSON", label);
    if (root == NULL)
        return jb_fail(err, bad, "%s: invalid JSON at line %d column %d: %s", label,
                       jerr.line, jerr.column, jerr.text);
    if (!json_is_object(root)) {
        const char *type = jb_json_type_name(root);
        json_decref(root);
        return jb_fail(err, bad, "%s: top-level JSON value is %s, expected an object",
                       label, type);
    }
    *out = root;
    return JAMBA_OK;
}

jamba_status jb_read_small_file(const char *path, const char *label, uint64_t max_size, jamba_status bad,
                                char **out, size_t *out_len, jamba_error *err) {
    return jb_read_regular_file(path, label, max_size, bad, out, out_len, err); /* FIFOs and folders refused */
}

bool jb_json_as_u64(const json_t *v, uint64_t *out) {
    if (!json_is_integer(v))
        return false;
    json_int_t i = json_integer_value(v);
    if (i < 0)
        return false;
    *out = (uint64_t)i;
    return true;
}

const char *jb_json_type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "an unknown value";
}
