/*
 * error.c — status strings and the jamba_error writer.
 */
#include "base/error.h"

#include <stdarg.h>
#include <stdio.h>

const char *jamba_status_string(jamba_status status) {
    switch (status) {
    case JAMBA_OK: return "ok";
    case JAMBA_ERR_INVALID_ARGUMENT: return "invalid argument";
    case JAMBA_ERR_OUT_OF_MEMORY: return "out of memory";
    case JAMBA_ERR_IO: return "I/O error";
    case JAMBA_ERR_BAD_CHECKPOINT: return "malformed checkpoint";
    case JAMBA_ERR_BAD_CONFIG: return "invalid config";
    case JAMBA_ERR_WEIGHT_MISMATCH: return "weights do not match the config";
    case JAMBA_ERR_UNSUPPORTED: return "unsupported";
    case JAMBA_ERR_NO_WEIGHTS: return "model has no weights";
    case JAMBA_ERR_OVERFLOW: return "size overflow";
    case JAMBA_ERR_NO_DEVICE: return "no usable device";
    case JAMBA_ERR_DEVICE: return "device error";
    case JAMBA_ERR_CONTEXT_FULL: return "context full";
    case JAMBA_ERR_BAD_STATE_FILE: return "bad state file";
    case JAMBA_ERR_BAD_TOKENIZER: return "malformed tokenizer";
    case JAMBA_ERR_BUFFER_TOO_SMALL: return "buffer too small";
    case JAMBA_ERR_NUMERIC: return "non-finite numbers";
    case JAMBA_ERR_ABORTED: return "aborted";
    }
    return "unknown status";
}

jamba_status jb_fail(jamba_error *err, jamba_status status, const char *fmt, ...) {
    if (err == NULL)
        return status;
    err->status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    /* One line: fold any newline a formatted value carried in. */
    for (char *p = err->message; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    return status;
}
