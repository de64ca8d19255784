/*
 * serve_http.c — `jamba serve`'s HTTP layer on libmicrohttpd (serve_http.h).
 */
#include "tools/jamba/serve_http.h"

#include "base/error.h"

#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

struct serve_http {
    struct MHD_Daemon *daemon;
    serve_http_params p;
    MHD_socket quiesced; /* the listening socket once quiesced (closed after the daemon stops), or -1 */
};

/* What one request has read so far. */
typedef struct http_request {
    char *body;
    size_t len, cap;
    bool too_large; /* the body passed the limit: the rest is read and dropped, then 413 */
    size_t dropped; /* bytes of it read and dropped */
} http_request;

/* The most bytes of an oversize body read (and dropped) so that its 413 reaches the client (see on_request). */
#define DRAIN_LIMIT ((size_t)64 << 20)

/* A streamed response's state, for libmicrohttpd's content reader. */
typedef struct http_stream {
    serve_pull_fn pull;
    void *stream;
    void (*stream_free)(void *stream);
} http_stream;

__attribute__((format(printf, 2, 0))) static void log_mhd(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    fputs("jamba serve: http: ", stderr);
    vfprintf(stderr, fmt, ap);
}

void serve_http_json(serve_http_response *res, int status, char *body) {
    res->status = body ? status : 500;
    res->content_type = "application/json";
    if (body == NULL) {
        static const char oom[] = "{\"error\": {\"message\": \"out of memory\", \"type\": \"server_error\", "
                                  "\"param\": null, \"code\": null}}";
        body = strdup(oom);
    }
    res->body = body;
    res->body_len = body ? strlen(body) : 0;
}

void serve_http_error(serve_http_response *res, const serve_error *e) {
    size_t len = 0;
    serve_http_json(res, e->status, serve_error_body(e, &len));
}

static ssize_t read_stream(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    http_stream *s = cls;
    ssize_t n = s->pull(s->stream, buf, max);
    return n > 0 ? n : n == SERVE_PULL_END ? MHD_CONTENT_READER_END_OF_STREAM : MHD_CONTENT_READER_END_WITH_ERROR;
}

static void free_stream(void *cls) {
    http_stream *s = cls;
    if (s->stream_free)
        s->stream_free(s->stream);
    free(s);
}

/* Queue `res` on the connection (taking over its body or stream); MHD_NO when that failed. */
static enum MHD_Result send_response(serve_http *h, struct MHD_Connection *c, serve_http_response *res) {
    struct MHD_Response *r = NULL;
    if (res->pull) {
        http_stream *s = malloc(sizeof *s);
        if (s) {
            *s = (http_stream){res->pull, res->stream, res->stream_free};
            r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, read_stream, s, free_stream);
            if (r == NULL)
                free(s);
        }
        if (r == NULL && res->stream_free)
            res->stream_free(res->stream);
    } else {
        r = MHD_create_response_from_buffer(res->body_len, res->body, MHD_RESPMEM_MUST_FREE);
        if (r == NULL)
            free(res->body);
    }
    res->body = NULL;
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, res->content_type ? res->content_type : "application/json");
    if (res->pull) {
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        MHD_add_response_header(r, "X-Accel-Buffering", "no");
    }
    if (res->allow)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, res->allow);
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)res->status, r);
    MHD_destroy_response(r);
    if (h->p.responded)
        h->p.responded(h->p.app, res->status);
    return ok;
}

static enum MHD_Result too_large(serve_http *h, struct MHD_Connection *c) {
    serve_error e;
    serve_fail(&e, 413, "request_too_large", NULL, "the request body is larger than the limit of %zu bytes "
               "(--max-body)", h->p.max_body);
    serve_http_response res = {0};
    serve_http_error(&res, &e);
    return send_response(h, c, &res);
}

static bool body_append(http_request *r, const char *data, size_t n) {
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->len + n + 1)
            cap *= 2;
        char *p = realloc(r->body, cap);
        if (p == NULL)
            return false;
        r->body = p, r->cap = cap;
    }
    memcpy(r->body + r->len, data, n);
    r->len += n;
    r->body[r->len] = '\0';
    return true;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **state) {
    (void)version;
    serve_http *h = cls;
    http_request *r = *state;
    if (r == NULL) { /* the headers are in: refuse an announced oversize body before reading it */
        if ((r = calloc(1, sizeof *r)) == NULL)
            return MHD_NO;
        *state = r;
        const char *length = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        char *end = NULL;
        errno = 0;
        unsigned long long announced = length ? strtoull(length, &end, 10) : 0;
        if (length && (errno != 0 || announced > h->p.max_body)) {
            r->too_large = true;
            /* a client that waits for "100 Continue" never sends the body, and one that announces a huge body
             * is not worth reading: answer now. Any other client is sending the body already, and a reply
             * before it is read would reach it as a reset connection (Linux resets a socket closed with unread
             * data), so its body is read and dropped first. */
            const char *expect = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);
            if (errno != 0 || announced > DRAIN_LIMIT || (expect && strcasecmp(expect, "100-continue") == 0))
                return too_large(h, c);
        }
        return MHD_YES;
    }
    if (*upload_size > 0) {
        if (!r->too_large && r->len + *upload_size > h->p.max_body) {
            r->too_large = true;
            free(r->body);
            r->body = NULL;
            r->len = r->cap = 0;
        }
        if (r->too_large) {
            r->dropped += *upload_size;
            if (r->dropped > DRAIN_LIMIT)
                return MHD_NO; /* an endless oversize body: close the connection */
        } else if (!body_append(r, upload, *upload_size)) {
            return MHD_NO;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->too_large)
        return too_large(h, c);
    if (r->body == NULL && !body_append(r, "", 0))
        return MHD_NO;
    serve_http_request req = {
        .method = method,
        .path = url,
        .body = r->body,
        .body_len = r->len,
        .authorization = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION),
        .connection = c,
    };
    serve_http_response res = {0};
    h->p.handler(h->p.app, &req, &res);
    return send_response(h, c, &res);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **state, enum MHD_RequestTerminationCode why) {
    (void)cls, (void)c, (void)why;
    http_request *r = *state;
    if (r) {
        free(r->body);
        free(r);
        *state = NULL;
    }
}

bool serve_http_client_gone(const serve_http_request *req) {
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(req->connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (info == NULL)
        return true;
    char byte;
    ssize_t n = recv(info->connect_fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

jamba_status serve_http_start(const serve_http_params *p, serve_http **out, int *port, jamba_error *err) {
    *out = NULL;
    char service[16];
    snprintf(service, sizeof service, "%d", p->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *addr = NULL;
    int gai = getaddrinfo(p->host, service, &hints, &addr);
    if (gai != 0)
        return jb_fail(err, JAMBA_ERR_IO, "serve: cannot resolve the address '%s': %s", p->host, gai_strerror(gai));
    serve_http *h = calloc(1, sizeof *h);
    if (h == NULL) {
        freeaddrinfo(addr);
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "serve: out of memory");
    }
    h->p = *p;
    h->quiesced = MHD_INVALID_SOCKET;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG | MHD_USE_AUTO;
    if (addr->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    h->daemon = MHD_start_daemon(flags, (uint16_t)p->port, NULL, NULL, on_request, h,
                                 MHD_OPTION_EXTERNAL_LOGGER, log_mhd, h, /* must come first */
                                 MHD_OPTION_SOCK_ADDR, addr->ai_addr,
                                 MHD_OPTION_CONNECTION_LIMIT, p->max_connections,
                                 MHD_OPTION_CONNECTION_TIMEOUT, p->idle_timeout_s,
                                 MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_END);
    freeaddrinfo(addr);
    if (h->daemon == NULL) {
        free(h);
        return jb_fail(err, JAMBA_ERR_IO, "serve: cannot listen on %s port %d (in use, or not an address of this "
                       "machine?)", p->host, p->port);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    *port = info ? info->port : p->port;
    *out = h;
    return JAMBA_OK;
}

void serve_http_quiesce(serve_http *h) {
    if (h && h->quiesced == MHD_INVALID_SOCKET)
        h->quiesced = MHD_quiesce_daemon(h->daemon);
}

void serve_http_stop(serve_http *h) {
    if (h == NULL)
        return;
    MHD_stop_daemon(h->daemon);
    if (h->quiesced != MHD_INVALID_SOCKET)
        close(h->quiesced);
    free(h);
}
