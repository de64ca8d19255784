/*
 * serve_http.h — the HTTP side of `jamba serve`, on libmicrohttpd: one thread per connection (a handler may
 * block while its request generates), request bodies read whole up to a size limit (413 beyond it, before the
 * body is read when Content-Length tells), and responses that are either a whole body or a stream pulled piece
 * by piece (server-sent events, in chunked transfer encoding).
 */
#ifndef JAMBA_CLI_SERVE_HTTP_H
#define JAMBA_CLI_SERVE_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "jamba.h"
#include "tools/jamba/serve_error.h"

typedef struct serve_http serve_http;

typedef struct serve_http_request {
    const char *method;        /* "GET", "POST", ... */
    const char *path;          /* "/v1/completions" (no query string) */
    const char *body;          /* the whole body, NUL-terminated (body_len bytes before the NUL) */
    size_t body_len;
    const char *authorization; /* the Authorization header, or NULL */
    void *connection;          /* for serve_http_client_gone */
} serve_http_request;

/* A streamed body's source: blocks until it has bytes and writes at most max of them to buf; returns how
 * many (> 0), SERVE_PULL_END after the last, or SERVE_PULL_ABORT to cut the connection. */
typedef ssize_t (*serve_pull_fn)(void *stream, char *buf, size_t max);
#define SERVE_PULL_END ((ssize_t)-1)
#define SERVE_PULL_ABORT ((ssize_t)-2)

typedef struct serve_http_response {
    int status;
    const char *content_type;  /* default application/json */
    char *body;                /* malloc'd; taken over by the HTTP layer */
    size_t body_len;
    const char *allow;         /* the Allow header (405), or NULL */
    serve_pull_fn pull;        /* set for a streamed body (then body is ignored) */
    void *stream;
    void (*stream_free)(void *stream); /* called once the stream is done with, sent or not */
} serve_http_response;

/* Answers one request by filling *res (zeroed, status 0). Runs on the connection's thread. */
typedef void (*serve_handler_fn)(void *app, const serve_http_request *req, serve_http_response *res);

typedef struct serve_http_params {
    const char *host;          /* address or name to listen on */
    int port;                  /* 0: any free port (serve_http_start says which) */
    size_t max_body;           /* larger request bodies get 413 */
    unsigned max_connections;
    unsigned idle_timeout_s;   /* an idle connection is closed after this */
    serve_handler_fn handler;
    void *app;
    void (*responded)(void *app, int status); /* every response's status, the layer's own 413s included */
} serve_http_params;

/* Listen and serve. *port receives the port bound. JAMBA_ERR_IO when the address cannot be used. */
jamba_status serve_http_start(const serve_http_params *p, serve_http **out, int *port, jamba_error *err);
/* Stop accepting connections; those open go on. */
void serve_http_quiesce(serve_http *h);
/* Close every connection, wait for their threads, free. NULL is a no-op. */
void serve_http_stop(serve_http *h);

/* True when the client of the request has closed its connection (checked without reading from it). */
bool serve_http_client_gone(const serve_http_request *req);

/* Fill *res with the JSON error body of *e. */
void serve_http_error(serve_http_response *res, const serve_error *e);
/* Fill *res with status and `body` (a JSON text, malloc'd, taken over; NULL: a 500 saying out of memory). */
void serve_http_json(serve_http_response *res, int status, char *body);

#endif /* JAMBA_CLI_SERVE_HTTP_H */
