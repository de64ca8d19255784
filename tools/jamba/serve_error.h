/*
 * serve_error.h — an OpenAI-style error of `jamba serve`: the HTTP status and the body
 * {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}.
 */
#ifndef JAMBA_CLI_SERVE_ERROR_H
#define JAMBA_CLI_SERVE_ERROR_H

#include <stdbool.h>
#include <stddef.h>

typedef struct serve_error {
    int status;         /* HTTP status: 400, 401, 404, 405, 413, 500 or 503 */
    const char *code;   /* NULL, or a machine-readable code such as "context_length_exceeded" */
    char param[64];     /* the request field at fault, "" for none */
    char message[512];  /* one sentence for people */
} serve_error;

/* Fill *e (param and code may be NULL) and return false, so that parsers can `return serve_fail(...)`. */
bool serve_fail(serve_error *e, int status, const char *code, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* OpenAI's error type for a status: "invalid_request_error" (4xx but 401), "authentication_error" (401),
 * "server_error" (5xx). */
const char *serve_error_type(int status);

/* The JSON body of the error in a new NUL-terminated string (free it); NULL when out of memory. */
char *serve_error_body(const serve_error *e, size_t *len);

#endif /* JAMBA_CLI_SERVE_ERROR_H */
