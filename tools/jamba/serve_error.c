/*
 * serve_error.c — OpenAI-style error bodies (serve_error.h).
 */
#include "tools/jamba/serve_error.h"

#include "tools/jamba/generation.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

bool serve_fail(serve_error *e, int status, const char *code, const char *param, const char *fmt, ...) {
    e->status = status;
    e->code = code;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return false;
}

const char *serve_error_type(int status) {
    if (status == 401)
        return "authentication_error";
    return status >= 500 ? "server_error" : "invalid_request_error";
}

char *serve_error_body(const serve_error *e, size_t *len) {
    /* messages quote request text, which may be cut inside a UTF-8 character */
    json_t *message = gen_json_text(e->message, strlen(e->message));
    json_t *root = json_pack("{s:{s:o,s:s,s:o,s:o}}", "error", "message", message, "type", serve_error_type(e->status),
                             "param", e->param[0] ? json_string(e->param) : json_null(), "code",
                             e->code ? json_string(e->code) : json_null());
    char *body = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    if (body)
        *len = strlen(body);
    return body;
}
