/*
 * tokenizer_util.c — see tokenizer_util.h.
 */
#include "tests/support/tokenizer_util.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/testutil.h"

json_t *tk_expected(void) {
    char *path = tu_fixture("tokenizers/expected.json");
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_ALLOW_NUL, &jerr); /* decoded byte tokens can be NUL */
    cr_assert_not_null(root, "%s: %s", path, jerr.text);
    free(path);
    return root;
}

char *tk_fixture_path(const json_t *entry) {
    char *rel = tu_path("tokenizers", json_string_value(json_object_get(entry, "path")));
    char *path = tu_fixture(rel);
    free(rel);
    return path;
}

jamba_tokenizer *tk_load(const char *path) {
    jamba_tokenizer *t = NULL;
    jamba_error err = {0};
    cr_assert_eq(jamba_tokenizer_load(path, &t, &err), JAMBA_OK, "%s", err.message);
    return t;
}

int32_t *tk_encode(const jamba_tokenizer *t, const char *text, size_t len, int flags, int64_t *n) {
    int64_t cap = jamba_tokenizer_max_ids(t, len);
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    jamba_error err = {0};
    cr_assert_eq(jamba_tokenize(t, text, len, flags, ids, cap, n, &err), JAMBA_OK, "%s", err.message);
    cr_assert_leq(*n, cap);
    return ids;
}

char *tk_decode(const jamba_tokenizer *t, const int32_t *ids, int64_t n, bool keep_special) {
    size_t need = 0;
    jamba_status st = jamba_detokenize(t, ids, n, keep_special, NULL, 0, &need, NULL);
    cr_assert(st == JAMBA_ERR_BUFFER_TOO_SMALL || st == JAMBA_OK);
    char *text = malloc(need + 1);
    cr_assert_eq(jamba_detokenize(t, ids, n, keep_special, text, need + 1, &need, NULL), JAMBA_OK);
    return text;
}

static void describe_ids(char *buf, size_t size, const int32_t *ids, int64_t n) {
    size_t o = 0;
    buf[0] = '\0';
    for (int64_t i = 0; i < n && o + 12 < size; i++)
        o += (size_t)snprintf(buf + o, size - o, "%s%d", i ? " " : "", ids[i]);
}

int tk_check_cases(const char *name, const jamba_tokenizer *t, const json_t *entry, const json_t *corpus) {
    json_t *cases = json_object_get(entry, "cases");
    for (size_t c = 0; c < json_array_size(cases); c++) {
        json_t *kase = json_array_get(cases, c), *want = json_object_get(kase, "ids");
        json_t *src = json_array_get(corpus, (size_t)json_integer_value(json_object_get(kase, "text")));
        const char *text = json_string_value(src);
        size_t len = json_string_length(src);
        int flags = json_is_true(json_object_get(kase, "parse_special")) ? JAMBA_TOKENIZE_PARSE_SPECIAL : 0;
        int64_t n;
        int32_t *ids = tk_encode(t, text, len, flags, &n);
        bool same = n == (int64_t)json_array_size(want);
        for (int64_t i = 0; same && i < n; i++)
            same = ids[i] == json_integer_value(json_array_get(want, (size_t)i));
        char got[2048];
        describe_ids(got, sizeof got, ids, n);
        cr_expect(same, "%s: encode \"%s\" (flags %d) gave [%s], reference %s", name, text, flags, got,
                  json_dumps(want, JSON_COMPACT));
        char *back = tk_decode(t, ids, n, false);
        cr_expect_str_eq(back, json_string_value(json_object_get(kase, "decoded")), "%s: decode of \"%s\"", name,
                         text);
        free(back);
        free(ids);
    }
    return (int)json_array_size(cases);
}

int tk_check_decode_cases(const char *name, const jamba_tokenizer *t, const json_t *entry) {
    json_t *cases = json_object_get(entry, "decode_cases");
    for (size_t c = 0; c < json_array_size(cases); c++) {
        json_t *kase = json_array_get(cases, c), *ids_j = json_object_get(kase, "ids");
        int64_t n = (int64_t)json_array_size(ids_j);
        int32_t ids[64];
        for (int64_t i = 0; i < n && i < 64; i++)
            ids[i] = (int32_t)json_integer_value(json_array_get(ids_j, (size_t)i));
        size_t len = 0;
        cr_assert_eq(jamba_detokenize(t, ids, n, false, NULL, 0, &len, NULL), JAMBA_ERR_BUFFER_TOO_SMALL);
        char *text = malloc(len + 1);
        cr_assert_eq(jamba_detokenize(t, ids, n, false, text, len + 1, &len, NULL), JAMBA_OK);
        json_t *want = json_object_get(kase, "decoded");
        bool same = len == json_string_length(want) && memcmp(text, json_string_value(want), len) == 0;
        char *ids_text = json_dumps(ids_j, JSON_COMPACT);
        cr_expect(same, "%s: decode of %s gave \"%s\", reference \"%s\"", name, ids_text, text,
                  json_string_value(want));
        free(ids_text);
        free(text);
    }
    return (int)json_array_size(cases);
}

static uint64_t fnv1a_ids(const int32_t *ids, int64_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (int64_t i = 0; i < n; i++)
        for (int b = 0; b < 4; b++) {
            h ^= (uint8_t)((uint32_t)ids[i] >> (8 * b));
            h *= 0x100000001b3ull;
        }
    return h;
}

void tk_check_shakespeare(const char *name, const jamba_tokenizer *t, const json_t *want, const uint8_t *text,
                          size_t len) {
    int64_t n;
    int32_t *ids = tk_encode(t, (const char *)text, len, 0, &n);
    cr_expect_eq(n, json_integer_value(json_object_get(want, "count")), "%s: %lld ids", name, (long long)n);
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)fnv1a_ids(ids, n));
    cr_expect_str_eq(hex, json_string_value(json_object_get(want, "fnv1a64")), "%s: ids differ", name);
    /* and the text comes back exactly */
    char *back = tk_decode(t, ids, n, false);
    cr_expect(strlen(back) == len && memcmp(back, text, len) == 0, "%s: round trip differs", name);
    free(back);
    free(ids);
}

/* Rendered messages must equal the template text tokenized with special tokens parsed. */
static void expect_render(const jamba_tokenizer *t, const jamba_chat_message *m, int64_t n, int flags,
                          const char *template_text) {
    int32_t got[256], want[256];
    int64_t ng = 0, nw = 0;
    jamba_error err = {0};
    cr_assert_eq(jamba_chat_tokenize(t, m, n, flags, got, 256, &ng, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(jamba_tokenize(t, template_text, strlen(template_text), JAMBA_TOKENIZE_PARSE_SPECIAL, want, 256, &nw,
                                &err),
                 JAMBA_OK, "%s", err.message);
    cr_assert_eq(ng, nw, "%s: %lld ids, template %lld", template_text, (long long)ng, (long long)nw);
    cr_assert_eq(memcmp(got, want, (size_t)ng * sizeof *got), 0, "%s", template_text);
}

void tk_check_chat_format(const jamba_tokenizer *t) {
    cr_assert(jamba_chat_supported(t));
    jamba_chat_message sys_user[2] = {{"system", "Sys."}, {"user", "Hi"}};
    expect_render(t, sys_user, 2, JAMBA_CHAT_GENERATION_PROMPT,
                  "<|startoftext|><|bom|><|system|> Sys.<|eom|><|bom|><|user|> Hi<|eom|><|bom|><|assistant|>");
    /* no system message: the system turn is still there, empty */
    expect_render(t, sys_user + 1, 1, JAMBA_CHAT_GENERATION_PROMPT,
                  "<|startoftext|><|bom|><|system|> <|eom|><|bom|><|user|> Hi<|eom|><|bom|><|assistant|>");
    /* a finished conversation ends with <|eom|> only when a generation prompt follows */
    jamba_chat_message convo[3] = {{"user", "Hi"}, {"assistant", "Hello, friend."}, {"user", "Bye"}};
    expect_render(t, convo, 3, 0,
                  "<|startoftext|><|bom|><|system|> <|eom|><|bom|><|user|> Hi<|eom|><|bom|><|assistant|> Hello, "
                  "friend.<|eom|><|bom|><|user|> Bye");
    /* continuing a conversation already in the sequence */
    expect_render(t, convo + 2, 1, JAMBA_CHAT_GENERATION_PROMPT | JAMBA_CHAT_CONTINUE,
                  "<|eom|><|bom|><|user|> Bye<|eom|><|bom|><|assistant|>");
}
