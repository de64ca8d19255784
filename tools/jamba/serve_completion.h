/*
 * serve_completion.h — POST /v1/completions and /v1/chat/completions: a checked request (serve_request.h)
 * becomes prompt tokens (the text tokenized with BOS as `jamba generate` does; chat messages through
 * chat_format.h), one scheduler request per choice (n > 1: seeds seed, seed + 1, ...; a chat request's
 * system message is its cache_prefix, so conversations sharing it resume from the prefix cache), and then
 * either one JSON response when every choice has finished or a stream of server-sent events as tokens come.
 * A client that goes away ends its choices at once (their sequences are freed); so does the end of the
 * shutdown grace period.
 */
#ifndef JAMBA_CLI_SERVE_COMPLETION_H
#define JAMBA_CLI_SERVE_COMPLETION_H

#include "tools/jamba/serve_app.h"
#include "tools/jamba/serve_http.h"
#include "tools/jamba/serve_request.h"

void serve_completion(serve_app *app, serve_endpoint endpoint, const serve_http_request *req, serve_http_response *res);

#endif /* JAMBA_CLI_SERVE_COMPLETION_H */
