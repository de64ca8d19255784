/*
 * serve_request.c — parsing and checking the body of a completions or chat completions request
 * (serve_request.h).
 */
#include "tools/jamba/serve_request.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* The field `key`, or NULL when absent or null (OpenAI treats null as not given). */
static const json_t *field(const json_t *root, const char *key) {
    const json_t *v = json_object_get(root, key);
    return v && !json_is_null(v) ? v : NULL;
}

static bool wrong_type(serve_error *e, const char *key, const char *expected, const json_t *v) {
    return serve_fail(e, 400, "invalid_type", key, "'%s' must be %s, not %s", key, expected, type_name(v));
}

/* A number in [lo, hi] ((lo, hi] when lo_open) into *out; absent leaves *out. */
static bool get_number(const json_t *root, const char *key, double lo, double hi, bool lo_open, double *out,
                       serve_error *e) {
    const json_t *v = field(root, key);
    if (v == NULL)
        return true;
    if (!json_is_number(v))
        return wrong_type(e, key, "a number", v);
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi) || (lo_open && d == lo))
        return serve_fail(e, 400, "invalid_value", key, "'%s' must be in %c%g, %g], got %g", key, lo_open ? '(' : '[',
                          lo, hi, d);
    *out = d;
    return true;
}

/* An integer in [lo, hi] into *out; absent leaves *out. */
static bool get_int(const json_t *root, const char *key, int64_t lo, int64_t hi, int64_t *out, serve_error *e) {
    const json_t *v = field(root, key);
    if (v == NULL)
        return true;
    if (!json_is_integer(v))
        return wrong_type(e, key, "an integer", v);
    json_int_t i = json_integer_value(v);
    if (i < lo || i > hi)
        return serve_fail(e, 400, "invalid_value", key, "'%s' must be in [%lld, %lld], got %lld", key, (long long)lo,
                          (long long)hi, (long long)i);
    *out = i;
    return true;
}

static bool get_bool(const json_t *root, const char *key, bool *out, serve_error *e) {
    const json_t *v = field(root, key);
    if (v == NULL)
        return true;
    if (!json_is_boolean(v))
        return wrong_type(e, key, "a boolean", v);
    *out = json_is_true(v);
    return true;
}

static bool get_string(const json_t *root, const char *key, const char **out, serve_error *e) {
    const json_t *v = field(root, key);
    if (v == NULL)
        return true;
    if (!json_is_string(v))
        return wrong_type(e, key, "a string", v);
    *out = json_string_value(v);
    return true;
}

/* ---- completions: prompt ---------------------------------------------------------------------- */

static bool ids_of(const json_t *a, const char *key, serve_prompt *p, serve_error *e) {
    size_t n = json_array_size(a);
    if (n == 0)
        return serve_fail(e, 400, "invalid_value", key, "'%s' holds an empty list of token ids", key);
    if ((p->ids = malloc(n * sizeof *p->ids)) == NULL)
        return serve_fail(e, 500, NULL, NULL, "out of memory for %zu token ids", n);
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_array_get(a, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX)
            return serve_fail(e, 400, "invalid_value", key, "'%s' token %zu is not a token id (a non-negative integer)",
                              key, i);
        p->ids[i] = (jamba_token)json_integer_value(v);
    }
    p->n_ids = (int64_t)n;
    return true;
}

/* prompt: a string, a list of strings, a list of token ids, or a list of lists of token ids. */
static bool parse_prompt(serve_request *r, serve_error *e) {
    const json_t *v = field(r->root, "prompt");
    if (v == NULL)
        return serve_fail(e, 400, "missing_required_parameter", "prompt", "'prompt' is required");
    if (!json_is_string(v) && !json_is_array(v))
        return wrong_type(e, "prompt", "a string or an array", v);
    const bool single = json_is_string(v) || (json_array_size(v) > 0 && json_is_integer(json_array_get(v, 0)));
    const size_t n = single ? 1 : json_array_size(v);
    if (n == 0)
        return serve_fail(e, 400, "invalid_value", "prompt", "'prompt' is an empty list");
    if (n > SERVE_MAX_CHOICES)
        return serve_fail(e, 400, "invalid_value", "prompt", "'prompt' holds %zu prompts; at most %d are served at once",
                          n, SERVE_MAX_CHOICES);
    if ((r->prompts = calloc(n, sizeof *r->prompts)) == NULL)
        return serve_fail(e, 500, NULL, NULL, "out of memory for %zu prompts", n);
    r->n_prompts = (int64_t)n;
    for (size_t i = 0; i < n; i++) {
        const json_t *p = single ? v : json_array_get(v, i);
        if (json_is_string(p)) {
            r->prompts[i].text = json_string_value(p);
            r->prompts[i].len = json_string_length(p);
        } else if (json_is_array(p)) {
            if (!ids_of(p, "prompt", &r->prompts[i], e))
                return false;
        } else {
            return wrong_type(e, "prompt", "a string, an array of token ids or an array of those", p);
        }
    }
    return true;
}

/* ---- chat: messages --------------------------------------------------------------------------- */

/* A message's content: a string, null, or an array of {"type": "text", "text": ...} parts (joined). */
static bool content_of(serve_request *r, const json_t *c, size_t index, const char **out, serve_error *e) {
    if (c == NULL || json_is_null(c)) {
        *out = "";
        return true;
    }
    if (json_is_string(c)) {
        *out = json_string_value(c);
        return true;
    }
    if (!json_is_array(c))
        return serve_fail(e, 400, "invalid_type", "messages", "message %zu: 'content' must be a string or an array of "
                          "text parts, not %s", index, type_name(c));
    size_t total = 1, i;
    const json_t *part;
    json_array_foreach(c, i, part) {
        const json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
        if (!json_is_string(type) || strcmp(json_string_value(type), "text") != 0 || !json_is_string(text))
            return serve_fail(e, 400, "unsupported_content", "messages", "message %zu: content part %zu is not "
                              "{\"type\": \"text\", \"text\": STRING} (only text is served)", index, i);
        total += json_string_length(text);
    }
    char *joined = malloc(total);
    char **texts = joined ? realloc(r->owned_texts, (size_t)(r->n_owned_texts + 1) * sizeof *texts) : NULL;
    if (texts == NULL) {
        free(joined);
        return serve_fail(e, 500, NULL, NULL, "out of memory for a message of %zu bytes", total);
    }
    r->owned_texts = texts;
    r->owned_texts[r->n_owned_texts++] = joined;
    size_t at = 0;
    json_array_foreach(c, i, part) {
        const json_t *text = json_object_get(part, "text");
        memcpy(joined + at, json_string_value(text), json_string_length(text));
        at += json_string_length(text);
    }
    joined[at] = '\0';
    *out = joined;
    return true;
}

static bool parse_messages(serve_request *r, serve_error *e) {
    const json_t *v = field(r->root, "messages");
    if (v == NULL)
        return serve_fail(e, 400, "missing_required_parameter", "messages", "'messages' is required");
    if (!json_is_array(v))
        return wrong_type(e, "messages", "an array", v);
    const size_t n = json_array_size(v);
    if (n == 0)
        return serve_fail(e, 400, "invalid_value", "messages", "'messages' is empty");
    if ((r->messages = calloc(n, sizeof *r->messages)) == NULL)
        return serve_fail(e, 500, NULL, NULL, "out of memory for %zu messages", n);
    r->n_messages = (int64_t)n;
    for (size_t i = 0; i < n; i++) {
        const json_t *m = json_array_get(v, i), *role = json_object_get(m, "role");
        if (!json_is_object(m))
            return serve_fail(e, 400, "invalid_type", "messages", "message %zu must be an object, not %s", i,
                              type_name(m));
        if (!json_is_string(role))
            return serve_fail(e, 400, "invalid_type", "messages", "message %zu: 'role' must be a string", i);
        const char *name = json_string_value(role);
        if (strcmp(name, "developer") == 0) /* OpenAI's newer name for the system role */
            name = "system";
        if (strcmp(name, "system") != 0 && strcmp(name, "user") != 0 && strcmp(name, "assistant") != 0 &&
            strcmp(name, "tool") != 0)
            return serve_fail(e, 400, "invalid_value", "messages", "message %zu: unknown role '%.64s' (system, "
                              "developer, user, assistant or tool)", i, name);
        if (strcmp(name, "system") == 0 && i != 0)
            return serve_fail(e, 400, "invalid_value", "messages", "message %zu: a system message must come first", i);
        if (field(m, "tool_calls") || field(m, "function_call"))
            return serve_fail(e, 400, "unsupported_value", "messages", "message %zu: tool calls are not served", i);
        r->messages[i].role = name;
        if (!content_of(r, json_object_get(m, "content"), i, &r->messages[i].content, e))
            return false;
    }
    return true;
}

/* ---- both ------------------------------------------------------------------------------------- */

static bool parse_stops(serve_request *r, serve_error *e) {
    const json_t *v = field(r->root, "stop");
    if (v == NULL)
        return true;
    if (!json_is_string(v) && !json_is_array(v))
        return wrong_type(e, "stop", "a string or an array of strings", v);
    const size_t n = json_is_string(v) ? 1 : json_array_size(v);
    if (n > SERVE_MAX_STOPS)
        return serve_fail(e, 400, "invalid_value", "stop", "'stop' holds %zu strings; at most %d", n, SERVE_MAX_STOPS);
    for (size_t i = 0; i < n; i++) {
        const json_t *s = json_is_string(v) ? v : json_array_get(v, i);
        if (!json_is_string(s))
            return wrong_type(e, "stop", "a string or an array of strings", s);
        if (json_string_length(s) == 0 || json_string_length(s) > SERVE_MAX_STOP_BYTES ||
            strlen(json_string_value(s)) != json_string_length(s))
            return serve_fail(e, 400, "invalid_value", "stop", "stop string %zu must have 1 to %d bytes and no NUL", i,
                              SERVE_MAX_STOP_BYTES);
        r->stops[r->n_stops++] = json_string_value(s);
    }
    return true;
}

/* Fields that ask for something this server does not do: accepted only in their neutral form. */
static bool refuse_unsupported(const serve_request *r, serve_error *e) {
    double frequency_penalty = 0;
    if (!get_number(r->root, "frequency_penalty", -2, 2, false, &frequency_penalty, e))
        return false;
    if (frequency_penalty != 0)
        return serve_fail(e, 400, "unsupported_value", "frequency_penalty",
                          "'frequency_penalty' is not supported (the sampler has no per-count penalty): use "
                          "'presence_penalty' or 'repetition_penalty' instead, or 0");
    const json_t *bias = field(r->root, "logit_bias");
    if (bias && (!json_is_object(bias) || json_object_size(bias) > 0))
        return serve_fail(e, 400, "unsupported_value", "logit_bias", "'logit_bias' is not supported");
    const json_t *suffix = field(r->root, "suffix");
    if (suffix && (!json_is_string(suffix) || json_string_length(suffix) > 0))
        return serve_fail(e, 400, "unsupported_value", "suffix", "'suffix' (insertion) is not supported");
    static const char *const lists[] = {"tools", "functions"};
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        const json_t *v = field(r->root, lists[i]);
        if (v && (!json_is_array(v) || json_array_size(v) > 0))
            return serve_fail(e, 400, "unsupported_value", lists[i], "'%s' (tool calling) is not supported", lists[i]);
    }
    const json_t *format = field(r->root, "response_format"), *type = format ? json_object_get(format, "type") : NULL;
    if (format && (!json_is_string(type) || strcmp(json_string_value(type), "text") != 0))
        return serve_fail(e, 400, "unsupported_value", "response_format",
                          "only {\"type\": \"text\"} is supported as 'response_format'");
    int64_t best_of = r->n;
    if (!get_int(r->root, "best_of", 1, SERVE_MAX_N, &best_of, e))
        return false;
    if (best_of != r->n)
        return serve_fail(e, 400, "unsupported_value", "best_of", "'best_of' must equal 'n' (no ranking is done)");
    return true;
}

static bool parse_logprobs(serve_request *r, serve_error *e) {
    int64_t top = 0;
    if (r->endpoint == SERVE_COMPLETIONS) {
        /* completions: "logprobs": k asks for the sampled token's and the k most likely tokens' log-probs */
        const json_t *v = field(r->root, "logprobs");
        if (v && !json_is_integer(v))
            return wrong_type(e, "logprobs", "an integer", v);
        if (!get_int(r->root, "logprobs", 0, JAMBA_MAX_TOP_LOGPROBS, &top, e))
            return false;
        r->logprobs = v != NULL;
        if (r->logprobs && r->echo)
            return serve_fail(e, 400, "unsupported_value", "echo", "'echo' with 'logprobs' is not supported "
                              "(prompt log-probabilities are not computed; `jamba score` gives them)");
    } else {
        if (!get_bool(r->root, "logprobs", &r->logprobs, e) ||
            !get_int(r->root, "top_logprobs", 0, JAMBA_MAX_TOP_LOGPROBS, &top, e))
            return false;
        if (top > 0 && !r->logprobs)
            return serve_fail(e, 400, "invalid_value", "top_logprobs", "'top_logprobs' needs 'logprobs': true");
    }
    r->top_logprobs = (int32_t)top;
    return true;
}

static bool parse_common(serve_request *r, serve_error *e) {
    int64_t max_tokens = -1, n = 1, seed = 0;
    if (!get_string(r->root, "model", &r->model, e) ||
        !get_int(r->root, "max_tokens", 1, INT64_C(1) << 40, &max_tokens, e) ||
        (r->endpoint == SERVE_CHAT && !get_int(r->root, "max_completion_tokens", 1, INT64_C(1) << 40, &max_tokens, e)) ||
        !get_int(r->root, "n", 1, SERVE_MAX_N, &n, e) || !get_bool(r->root, "stream", &r->stream, e) ||
        !get_bool(r->root, "ignore_eos", &r->ignore_eos, e) || !get_bool(r->root, "echo", &r->echo, e))
        return false;
    r->max_tokens = max_tokens;
    r->n = n;
    const json_t *options = field(r->root, "stream_options");
    if (options && !json_is_object(options))
        return wrong_type(e, "stream_options", "an object", options);
    if (options && !get_bool(options, "include_usage", &r->include_usage, e))
        return false;
    if (field(r->root, "seed") && !get_int(r->root, "seed", INT64_MIN, INT64_MAX, &seed, e))
        return false;
    r->has_seed = field(r->root, "seed") != NULL;
    r->seed = (uint64_t)seed;
    r->temperature = r->top_p = r->min_p = r->presence_penalty = r->repetition_penalty = NAN;
    r->top_k = -1;
    if (!get_number(r->root, "temperature", 0, 2, false, &r->temperature, e) ||
        !get_number(r->root, "top_p", 0, 1, true, &r->top_p, e) ||
        !get_number(r->root, "min_p", 0, 0.999999, false, &r->min_p, e) ||
        !get_number(r->root, "presence_penalty", -2, 2, false, &r->presence_penalty, e) ||
        !get_number(r->root, "repetition_penalty", 0, 10, true, &r->repetition_penalty, e) ||
        !get_int(r->root, "top_k", -1, 1 << 24, &r->top_k, e))
        return false;
    if (r->top_k == -1 && field(r->root, "top_k")) /* vLLM's "off" */
        r->top_k = 0;
    return parse_stops(r, e) && parse_logprobs(r, e) && refuse_unsupported(r, e);
}

bool serve_request_parse(serve_endpoint endpoint, const char *body, size_t len, serve_request *out, serve_error *e) {
    memset(out, 0, sizeof *out);
    out->endpoint = endpoint;
    json_error_t jerr;
    out->root = json_loadb(body, len, 0, &jerr);
    if (out->root == NULL)
        return serve_fail(e, 400, "invalid_json", NULL, "the body is not valid JSON: %s (line %d, column %d)",
                          jerr.text, jerr.line, jerr.column);
    if (!json_is_object(out->root))
        return serve_fail(e, 400, "invalid_json", NULL, "the body must be a JSON object, not %s", type_name(out->root));
    if (!parse_common(out, e))
        return false;
    if (endpoint == SERVE_CHAT && out->echo)
        return serve_fail(e, 400, "unsupported_value", "echo", "'echo' is a completions field");
    if (endpoint == SERVE_COMPLETIONS && !parse_prompt(out, e))
        return false;
    if (endpoint == SERVE_CHAT && !parse_messages(out, e))
        return false;
    if (out->n_prompts * out->n > SERVE_MAX_CHOICES)
        return serve_fail(e, 400, "invalid_value", "n", "%lld prompts x n = %lld choices; at most %d",
                          (long long)out->n_prompts, (long long)(out->n_prompts * out->n), SERVE_MAX_CHOICES);
    return true;
}

void serve_request_free(serve_request *r) {
    for (int64_t i = 0; i < r->n_prompts; i++)
        free(r->prompts[i].ids);
    free(r->prompts);
    free(r->messages);
    for (int64_t i = 0; i < r->n_owned_texts; i++)
        free(r->owned_texts[i]);
    free(r->owned_texts);
    json_decref(r->root);
    memset(r, 0, sizeof *r);
}

jamba_sampler_params serve_request_sampling(const serve_request *r, const jamba_sampler_params *defaults,
                                            uint64_t seed) {
    jamba_sampler_params p = *defaults;
    if (!isnan(r->temperature))
        p.temperature = (float)r->temperature;
    if (!isnan(r->top_p))
        p.top_p = (float)r->top_p;
    if (!isnan(r->min_p))
        p.min_p = (float)r->min_p;
    if (!isnan(r->presence_penalty))
        p.presence_penalty = (float)r->presence_penalty;
    if (!isnan(r->repetition_penalty))
        p.repetition_penalty = (float)r->repetition_penalty;
    if (r->top_k >= 0)
        p.top_k = (int32_t)r->top_k;
    p.seed = seed;
    return p;
}
