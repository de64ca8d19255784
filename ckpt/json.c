/*
 * json.c — strict JSON helpers.
 */
#include "ckpt/json.h"

#include "base/alloc.h"
#include "base/error.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
    *out = NULL;
    *out_len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return jb_fail(err, JAMBA_ERR_IO, "%s: cannot open: %s", label, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return jb_fail(err, JAMBA_ERR_IO, "%s: cannot stat: %s", label, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return jb_fail(err, JAMBA_ERR_IO, "%s: not a regular file", label);
    }
    if ((uint64_t)st.st_size > max_size) {
        close(fd);
        return jb_fail(err, bad, "%s: file is %lld bytes, more than the %llu-byte limit",
                       label, (long long)st.st_size, (unsigned long long)max_size);
    }
    size_t size = (size_t)st.st_size;
    char *buf = jb_malloc(size + 1);
    if (buf == NULL) {
        close(fd);
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory reading %zu bytes", label, size);
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = r < 0 ? errno : 0;
            close(fd);
            jb_free(buf);
            return jb_fail(err, JAMBA_ERR_IO, "%s: read failed after %zu of %zu bytes%s%s", label, got, size,
                           e ? ": " : " (file shrank)", e ? strerror(e) : "");
        }
        got += (size_t)r;
    }
    close(fd);
    buf[size] = '\0';
    *out = buf;
    *out_len = size;
    return JAMBA_OK;
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
