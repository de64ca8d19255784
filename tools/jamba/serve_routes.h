/*
 * serve_routes.h — the endpoints of `jamba serve` (docs/serve.md):
 *
 *   GET  /health                 200 {"status": "ok"}; 503 while shutting down or after a device fault
 *   GET  /metrics                Prometheus text (serve_metrics.h)
 *   GET  /v1/models[/ID]         the one model served
 *   POST /v1/completions         serve_completion.h
 *   POST /v1/chat/completions    serve_completion.h
 *
 * With an API key every /v1/ endpoint needs "Authorization: Bearer KEY" (401 otherwise). An unknown path is a
 * 404 and a known one with the wrong method a 405 naming the allowed one, all with OpenAI-style error bodies.
 */
#ifndef JAMBA_CLI_SERVE_ROUTES_H
#define JAMBA_CLI_SERVE_ROUTES_H

#include "tools/jamba/serve_app.h"
#include "tools/jamba/serve_http.h"

/* The HTTP handler (serve_handler_fn) over a serve_app. */
void serve_route(void *app, const serve_http_request *req, serve_http_response *res);

#endif /* JAMBA_CLI_SERVE_ROUTES_H */
