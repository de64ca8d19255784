/*
 * test_tokenizer.c — tokenizer parity with the reference libraries (tools/gen_tokenizer_fixtures.py):
 * every tokenizer fixture on every corpus string, with and without special-token parsing, encode and
 * decode; Tiny Shakespeare and the real Jamba tokenizer when ../shared/data is present; BOS/EOS settings;
 * streaming decode; and malformed tokenizer files.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/support/testutil.h"

#define SHARED_DATA JB_SOURCE_DIR "/../shared/data"

static json_t *expected(void) {
    char *path = tu_fixture("tokenizers/expected.json");
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_ALLOW_NUL, &jerr); /* decoded byte tokens can be NUL */
    cr_assert_not_null(root, "%s: %s", path, jerr.text);
    free(path);
    return root;
}

static bool exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* Path of a tokenizer fixture (relative to tests/fixtures/tokenizers), or NULL when the file is absent. */
static char *fixture_path(const json_t *entry) {
    char *rel = tu_path("tokenizers", json_string_value(json_object_get(entry, "path")));
    char *path = tu_fixture(rel);
    free(rel);
    if (!exists(path)) {
        free(path);
        return NULL;
    }
    return path;
}

static jamba_tokenizer *load(const char *path) {
    jamba_tokenizer *t = NULL;
    jamba_error err = {0};
    cr_assert_eq(jamba_tokenizer_load(path, &t, &err), JAMBA_OK, "%s", err.message);
    return t;
}

static int32_t *encode(const jamba_tokenizer *t, const char *text, size_t len, int flags, int64_t *n) {
    int64_t cap = jamba_tokenizer_max_ids(t, len);
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    jamba_error err = {0};
    cr_assert_eq(jamba_tokenize(t, text, len, flags, ids, cap, n, &err), JAMBA_OK, "%s", err.message);
    cr_assert_leq(*n, cap);
    return ids;
}

static char *decode(const jamba_tokenizer *t, const int32_t *ids, int64_t n, bool keep_special) {
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

JB_TEST(tokenizer, parity_with_reference_libraries) {
    json_t *root = expected();
    json_t *corpus = json_object_get(root, "corpus"), *toks = json_object_get(root, "tokenizers");
    const char *name;
    json_t *entry;
    int checked = 0, skipped = 0;
    json_object_foreach(toks, name, entry) {
        char *path = fixture_path(entry);
        if (path == NULL) { /* the real Jamba tokenizer lives in ../shared/data, which may be absent */
            skipped++;
            cr_log_warn("%s: %s not present; skipped", name, json_string_value(json_object_get(entry, "path")));
            continue;
        }
        jamba_tokenizer *t = load(path);
        json_t *cases = json_object_get(entry, "cases");
        for (size_t c = 0; c < json_array_size(cases); c++) {
            json_t *kase = json_array_get(cases, c), *want = json_object_get(kase, "ids");
            json_t *src = json_array_get(corpus, (size_t)json_integer_value(json_object_get(kase, "text")));
            const char *text = json_string_value(src);
            size_t len = json_string_length(src);
            int flags = json_is_true(json_object_get(kase, "parse_special")) ? JAMBA_TOKENIZE_PARSE_SPECIAL : 0;
            int64_t n;
            int32_t *ids = encode(t, text, len, flags, &n);
            bool same = n == (int64_t)json_array_size(want);
            for (int64_t i = 0; same && i < n; i++)
                same = ids[i] == json_integer_value(json_array_get(want, (size_t)i));
            char got[2048];
            describe_ids(got, sizeof got, ids, n);
            cr_expect(same, "%s: encode \"%s\" (flags %d) gave [%s], reference %s", name, text, flags, got,
                      json_dumps(want, JSON_COMPACT));
            char *back = decode(t, ids, n, false);
            cr_expect_str_eq(back, json_string_value(json_object_get(kase, "decoded")), "%s: decode of \"%s\"", name,
                             text);
            free(back);
            free(ids);
            checked++;
        }
        jamba_tokenizer_free(t);
        free(path);
    }
    cr_log_info("%d cases checked, %d tokenizers skipped", checked, skipped);
    cr_assert_geq(checked, 300);
    json_decref(root);
}

/* Random id sequences (byte-token runs valid and invalid, special tokens, "▁▁" pieces) decode exactly as
 * the reference library decodes them. */
JB_TEST(tokenizer, decode_parity_with_reference_libraries) {
    json_t *root = expected();
    const char *name;
    json_t *entry;
    int checked = 0;
    json_object_foreach(json_object_get(root, "tokenizers"), name, entry) {
        char *path = fixture_path(entry);
        if (path == NULL)
            continue;
        jamba_tokenizer *t = load(path);
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
            checked++;
        }
        jamba_tokenizer_free(t);
        free(path);
    }
    cr_assert_geq(checked, 280);
    json_decref(root);
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

/* The whole of Tiny Shakespeare (1.1 MB), id for id via a hash; the timeout guards against quadratic
 * behaviour (a quadratic encoder would take minutes). */
Test(tokenizer, shakespeare_parity, .timeout = 60) {
    const char *data = SHARED_DATA "/tinyshakespeare.txt";
    if (!exists(data))
        cr_skip_test("%s is absent", data);
    size_t len;
    uint8_t *text = tu_read_file(data, &len);
    json_t *root = expected();
    json_t *runs = json_object_get(root, "shakespeare"), *toks = json_object_get(root, "tokenizers");
    const char *name;
    json_t *want;
    json_object_foreach(runs, name, want) {
        char *path = fixture_path(json_object_get(toks, name));
        if (path == NULL)
            continue;
        jamba_tokenizer *t = load(path);
        int64_t n;
        int32_t *ids = encode(t, (const char *)text, len, 0, &n);
        cr_expect_eq(n, json_integer_value(json_object_get(want, "count")), "%s: %lld ids", name, (long long)n);
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)fnv1a_ids(ids, n));
        cr_expect_str_eq(hex, json_string_value(json_object_get(want, "fnv1a64")), "%s: ids differ", name);
        /* and the text comes back exactly */
        char *back = decode(t, ids, n, false);
        cr_expect(strlen(back) == len && memcmp(back, text, len) == 0, "%s: round trip differs", name);
        free(back);
        free(ids);
        jamba_tokenizer_free(t);
        free(path);
    }
    json_decref(root);
    free(text);
    JB_CHECK_LEAKS();
}

JB_TEST(tokenizer, real_jamba_tokenizer_facts) {
    const char *path = SHARED_DATA "/jamba-tokenizer.model";
    if (!exists(path))
        cr_skip_test("%s is absent", path);
    jamba_tokenizer *t = load(path);
    cr_assert_eq(jamba_tokenizer_vocab_size(t), 65536);
    cr_assert_eq(jamba_tokenizer_bos(t), 1);
    cr_assert_eq(jamba_tokenizer_find(t, "<|eom|>"), 518);
    cr_assert_eq(jamba_tokenizer_find(t, ","), 1543);
    cr_assert_eq(jamba_tokenizer_find(t, "<0x0A>"), 1554);
    int64_t n;
    int32_t *ids = encode(t, "a\n7,", 4, 0, &n);
    cr_assert_eq(n, 4);
    cr_assert_eq(ids[1], 1554);
    cr_assert_eq(ids[2], 63004); /* digit 7 */
    cr_assert_eq(ids[3], 1543);
    free(ids);
    /* chat tokens are user-defined pieces: always matched; BOS only when special tokens are parsed */
    const char chat[] = "<|startoftext|><|bom|><|user|> Hi<|eom|>";
    ids = encode(t, chat, strlen(chat), JAMBA_TOKENIZE_ADD_SPECIAL, &n);
    cr_assert_eq(ids[0], 1);
    cr_assert_neq(ids[1], 1);
    free(ids);
    ids = encode(t, chat, strlen(chat), JAMBA_TOKENIZE_PARSE_SPECIAL, &n);
    cr_assert_eq(ids[0], 1);
    cr_assert_eq(ids[1], 519);
    cr_assert_eq(ids[2], 521);
    cr_assert_eq(ids[n - 1], 518);
    free(ids);
    jamba_tokenizer_free(t);
}

JB_TEST(tokenizer, bos_eos_and_specials) {
    jamba_tokenizer *t = load(JB_SOURCE_DIR "/models/demo");
    cr_assert_eq(jamba_tokenizer_bos(t), 1);
    int64_t n_eos;
    const int32_t *eos = jamba_tokenizer_eos(t, &n_eos);
    cr_assert_geq(n_eos, 1);
    cr_assert_eq(eos[0], 2);
    int64_t n;
    int32_t *ids = encode(t, "Hi", 2, JAMBA_TOKENIZE_ADD_SPECIAL, &n);
    cr_assert_eq(ids[0], 1);
    free(ids);
    ids = encode(t, "", 0, JAMBA_TOKENIZE_ADD_SPECIAL, &n);
    cr_assert_eq(n, 1);
    free(ids);
    ids = encode(t, "", 0, 0, &n);
    cr_assert_eq(n, 0);
    free(ids);
    cr_assert_str_eq(jamba_tokenizer_piece(t, 1), "<|startoftext|>");
    cr_assert_null(jamba_tokenizer_piece(t, -1));
    cr_assert_null(jamba_tokenizer_piece(t, 1 << 20));
    cr_assert_eq(jamba_tokenizer_find(t, "no such piece"), -1);
    /* special tokens are left out of decoded text unless asked for */
    int32_t seq[3] = {1, jamba_tokenizer_find(t, "\xE2\x96\x81the"), 2};
    char *text = decode(t, seq, 3, false);
    cr_assert_str_eq(text, " the");
    free(text);
    text = decode(t, seq, 3, true);
    cr_assert_str_eq(text, "<|startoftext|> the<|endoftext|>");
    free(text);
    jamba_tokenizer_free(t);
}

JB_TEST(tokenizer, invalid_utf8_input_becomes_replacement_characters) {
    jamba_tokenizer *t = load(JB_SOURCE_DIR "/models/demo/tokenizer.json");
    int64_t n1, n2;
    int32_t *a = encode(t, "ab\xff\xc3 x\xe2\x82", 8, 0, &n1);
    const char fixed[] = "ab\xEF\xBF\xBD\xEF\xBF\xBD x\xEF\xBF\xBD";
    int32_t *b = encode(t, fixed, sizeof fixed - 1, 0, &n2);
    cr_assert_eq(n1, n2);
    cr_assert_eq(memcmp(a, b, (size_t)n1 * sizeof *a), 0);
    free(a);
    free(b);
    jamba_tokenizer_free(t);
}

JB_TEST(tokenizer, buffers_too_small_report_the_size) {
    jamba_tokenizer *t = load(JB_SOURCE_DIR "/models/demo");
    int32_t ids[2];
    int64_t n = 0;
    jamba_error err = {0};
    cr_assert_eq(jamba_tokenize(t, "Hello there, world", 18, 0, ids, 2, &n, &err), JAMBA_ERR_BUFFER_TOO_SMALL);
    cr_assert_gt(n, 2);
    int32_t big[64];
    cr_assert_eq(jamba_tokenize(t, "Hello there, world", 18, 0, big, 64, &n, &err), JAMBA_OK);
    char small[4];
    size_t len = 0;
    cr_assert_eq(jamba_detokenize(t, big, n, false, small, sizeof small, &len, &err), JAMBA_ERR_BUFFER_TOO_SMALL);
    cr_assert_eq(len, 18);
    cr_assert_eq(jamba_detokenize(t, big, n, false, NULL, 0, &len, &err), JAMBA_ERR_BUFFER_TOO_SMALL);
    int32_t bad = 99999;
    cr_assert_eq(jamba_detokenize(t, &bad, 1, false, small, sizeof small, &len, &err), JAMBA_ERR_INVALID_ARGUMENT);
    cr_assert_eq(jamba_tokenize(NULL, "x", 1, 0, big, 64, &n, &err), JAMBA_ERR_INVALID_ARGUMENT);
    jamba_tokenizer_free(t);
}

/* Byte-fallback tokens of a multi-byte character print nothing until the character is complete; the
 * streamed pieces always are valid UTF-8 and add up to the whole decode. */
JB_TEST(tokenizer, streaming_decode) {
    static const char *const paths[] = {JB_SOURCE_DIR "/models/demo", JB_FIXTURES_DIR "/tokenizers/bytelevel-gpt2",
                                        JB_FIXTURES_DIR "/tokenizers/sp-legacy/tokenizer.model",
                                        JB_FIXTURES_DIR "/tokenizers/sp-legacy/tokenizer.json"};
    const char text[] = "Wherefore art thou 日本語 👨‍👩‍👧 café?\n";
    for (size_t p = 0; p < sizeof paths / sizeof paths[0]; p++) {
        jamba_tokenizer *t = load(paths[p]);
        int64_t n;
        int32_t *ids = encode(t, text, sizeof text - 1, 0, &n);
        char *whole = decode(t, ids, n, false);
        cr_assert_str_eq(whole, text, "%s: round trip", paths[p]);
        jamba_stream_decoder *d = NULL;
        cr_assert_eq(jamba_stream_decoder_create(t, false, &d, NULL), JAMBA_OK);
        char streamed[256] = "";
        int empty_pushes = 0;
        for (int64_t i = 0; i < n; i++) {
            const char *piece;
            size_t len;
            cr_assert_eq(jamba_stream_decoder_push(d, ids[i], &piece, &len, NULL), JAMBA_OK);
            cr_assert_eq(strlen(piece), len);
            empty_pushes += len == 0;
            strcat(streamed, piece);
        }
        const char *rest;
        size_t rest_len;
        cr_assert_eq(jamba_stream_decoder_flush(d, &rest, &rest_len, NULL), JAMBA_OK);
        strcat(streamed, rest); /* a trailing run of byte tokens is released when the stream ends */
        cr_assert_str_eq(streamed, whole, "%s: streamed text differs", paths[p]);
        if (p == 0)
            cr_assert_gt(empty_pushes, 3, "byte tokens of the CJK characters should wait for completion");
        /* an incomplete character at the end becomes one U+FFFD when flushed */
        int32_t first_byte = jamba_tokenizer_find(t, "<0xE6>");
        if (first_byte >= 0) {
            const char *piece;
            size_t len;
            cr_assert_eq(jamba_stream_decoder_push(d, first_byte, &piece, &len, NULL), JAMBA_OK);
            cr_assert_eq(len, 0);
            cr_assert_eq(jamba_stream_decoder_flush(d, &piece, &len, NULL), JAMBA_OK);
            cr_assert_str_eq(piece, "\xEF\xBF\xBD");
        }
        jamba_stream_decoder_free(d);
        free(whole);
        free(ids);
        jamba_tokenizer_free(t);
    }
}

JB_TEST(tokenizer, malformed_models_are_rejected) {
    json_t *root = expected();
    const char *file;
    json_t *phrase;
    int n = 0;
    json_object_foreach(json_object_get(root, "bad_models"), file, phrase) {
        char rel[256];
        snprintf(rel, sizeof rel, "tokenizers/bad/%s", file);
        char *path = tu_fixture(rel);
        jamba_tokenizer *t = NULL;
        jamba_error err = {0};
        jamba_status st = jamba_tokenizer_load(path, &t, &err);
        cr_expect(st == JAMBA_ERR_BAD_TOKENIZER || st == JAMBA_ERR_UNSUPPORTED, "%s: status %d", file, st);
        cr_expect_null(t);
        cr_expect(strstr(err.message, json_string_value(phrase)) != NULL, "%s: '%s' should contain '%s'", file,
                  err.message, json_string_value(phrase));
        cr_expect(strstr(err.message, file) != NULL, "%s: message names the file: %s", file, err.message);
        free(path);
        n++;
    }
    cr_assert_geq(n, 10);
    json_decref(root);
}

JB_TEST(tokenizer, truncated_models_never_crash) {
    char *src = tu_fixture("tokenizers/sp-chat/tokenizer.model");
    size_t n;
    uint8_t *full = tu_read_file(src, &n);
    char *dir = tu_tmpdir();
    char *path = tu_path(dir, "tokenizer.model");
    for (size_t len = 0; len < n; len += 37) {
        tu_write_file(path, full, len);
        jamba_tokenizer *t = NULL;
        jamba_error err = {0};
        jamba_status st = jamba_tokenizer_load(path, &t, &err);
        cr_assert(st != JAMBA_OK || t != NULL, "length %zu", len);
        jamba_tokenizer_free(t);
    }
    tu_rmtree(dir);
    free(path);
    free(dir);
    free(full);
    free(src);
}

/* Edit the demo tokenizer.json and expect the load to fail naming the component. */
static void expect_json_rejected(void (*edit)(json_t *), jamba_status want, const char *needle) {
    json_error_t jerr;
    json_t *root = json_load_file(JB_SOURCE_DIR "/models/demo/tokenizer.json", 0, &jerr);
    cr_assert_not_null(root);
    edit(root);
    char *dir = tu_tmpdir();
    char *path = tu_path(dir, "tokenizer.json");
    cr_assert_eq(json_dump_file(root, path, 0), 0);
    jamba_tokenizer *t = NULL;
    jamba_error err = {0};
    cr_expect_eq(jamba_tokenizer_load(path, &t, &err), want, "%s", err.message);
    cr_expect(strstr(err.message, needle) != NULL, "'%s' should contain '%s'", err.message, needle);
    cr_expect_null(t);
    tu_rmtree(dir);
    free(path);
    free(dir);
    json_decref(root);
}

static void set_model_type(json_t *r) { json_object_set_new(json_object_get(r, "model"), "type", json_string("Unigram")); }
static void set_normalizer(json_t *r) { json_object_set_new(r, "normalizer", json_pack("{s:s}", "type", "NFKC")); }
static void set_pre(json_t *r) { json_object_set_new(r, "pre_tokenizer", json_pack("{s:s}", "type", "Whitespace")); }
static void set_decoder(json_t *r) {
    json_object_set_new(r, "decoder", json_pack("{s:s,s:s,s:i,s:i}", "type", "Strip", "content", " ", "start", 0, "stop", 1));
}
static void bad_merge(json_t *r) {
    json_array_append_new(json_object_get(json_object_get(r, "model"), "merges"), json_pack("[s,s]", "zz@", "q"));
}
static void dup_merge(json_t *r) {
    json_t *m = json_object_get(json_object_get(r, "model"), "merges");
    json_array_append(m, json_array_get(m, 0));
}
static void hole(json_t *r) { json_object_del(json_object_get(json_object_get(r, "model"), "vocab"), "<0x41>"); }
static void single_word(json_t *r) {
    json_object_set_new(json_array_get(json_object_get(r, "added_tokens"), 0), "single_word", json_true());
}
static void dropout(json_t *r) { json_object_set_new(json_object_get(r, "model"), "dropout", json_real(0.1)); }
static void prefix(json_t *r) {
    json_object_set_new(json_object_get(r, "model"), "continuing_subword_prefix", json_string("##"));
}
static void roberta(json_t *r) { json_object_set_new(r, "post_processor", json_pack("{s:s}", "type", "RobertaProcessing")); }
static void bad_regex(json_t *r) {
    json_object_set_new(r, "pre_tokenizer",
                        json_pack("{s:s,s:{s:s},s:s,s:b}", "type", "Split", "pattern", "Regex", "(unclosed", "behavior",
                                  "Isolated", "invert", 0));
}
static void empty_strip(json_t *r) {
    json_object_set_new(r, "decoder", json_pack("{s:s,s:s,s:I,s:i}", "type", "Strip", "content", "", "start",
                                                (json_int_t)INT64_MAX, "stop", 0));
}
static void template_out_of_range(json_t *r) {
    json_object_set_new(r, "post_processor",
                        json_pack("{s:s,s:[{s:{s:s,s:i}},{s:{s:s,s:i}}],s:{s:{s:s,s:[i],s:[s]}}}", "type",
                                  "TemplateProcessing", "single", "SpecialToken", "id", "<x>", "type_id", 0, "Sequence",
                                  "id", "A", "type_id", 0, "special_tokens", "<x>", "id", "<x>", "ids", 99999999,
                                  "tokens", "<x>"));
}
static void dup_id(json_t *r) {
    json_object_set_new(json_object_get(json_object_get(r, "model"), "vocab"), "zzzz-new", json_integer(7));
}

JB_TEST(tokenizer, unsupported_and_malformed_json_components) {
    expect_json_rejected(set_model_type, JAMBA_ERR_UNSUPPORTED, "model Unigram is not supported");
    expect_json_rejected(set_normalizer, JAMBA_ERR_UNSUPPORTED, "normalizer NFKC is not supported");
    expect_json_rejected(set_pre, JAMBA_ERR_UNSUPPORTED, "pre_tokenizer Whitespace is not supported");
    expect_json_rejected(set_decoder, JAMBA_ERR_UNSUPPORTED, "Strip with stop > 0");
    expect_json_rejected(bad_merge, JAMBA_ERR_BAD_TOKENIZER, "missing from the vocabulary");
    expect_json_rejected(dup_merge, JAMBA_ERR_BAD_TOKENIZER, "listed twice");
    expect_json_rejected(hole, JAMBA_ERR_BAD_TOKENIZER, "has no token");
    expect_json_rejected(single_word, JAMBA_ERR_UNSUPPORTED, "single_word");
    expect_json_rejected(dropout, JAMBA_ERR_UNSUPPORTED, "dropout");
    expect_json_rejected(prefix, JAMBA_ERR_UNSUPPORTED, "continuing_subword_prefix");
    expect_json_rejected(roberta, JAMBA_ERR_UNSUPPORTED, "RobertaProcessing");
    expect_json_rejected(bad_regex, JAMBA_ERR_UNSUPPORTED, "does not compile");
    expect_json_rejected(dup_id, JAMBA_ERR_BAD_TOKENIZER, "id 7 is used by both");
    expect_json_rejected(empty_strip, JAMBA_ERR_BAD_TOKENIZER, "one content character");
    expect_json_rejected(template_out_of_range, JAMBA_ERR_BAD_TOKENIZER, "outside the vocabulary");
}

JB_TEST(tokenizer, loading_errors_name_the_path) {
    jamba_tokenizer *t = NULL;
    jamba_error err = {0};
    cr_assert_eq(jamba_tokenizer_load("/no/such/place", &t, &err), JAMBA_ERR_IO);
    cr_assert(strstr(err.message, "/no/such/place") != NULL);
    char *dir = tu_tmpdir();
    cr_assert_eq(jamba_tokenizer_load(dir, &t, &err), JAMBA_ERR_IO);
    cr_assert(strstr(err.message, "no tokenizer.json or tokenizer.model") != NULL, "%s", err.message);
    char *cfg = tu_path(dir, "tokenizer_config.json");
    char *model = tu_path(dir, "tokenizer.model");
    size_t n;
    uint8_t *bytes = tu_read_file(JB_FIXTURES_DIR "/tokenizers/sp-chat/tokenizer.model", &n);
    tu_write_file(model, bytes, n);
    tu_write_text(cfg, "{\"add_bos_token\": false, \"model_max_length\": 1000000000000000019884624838656}");
    cr_assert_eq(jamba_tokenizer_load(dir, &t, &err), JAMBA_OK, "%s", err.message);
    int64_t k;
    int32_t ids[16];
    cr_assert_eq(jamba_tokenize(t, "a", 1, JAMBA_TOKENIZE_ADD_SPECIAL, ids, 16, &k, NULL), JAMBA_OK);
    cr_assert_neq(ids[0], 1, "add_bos_token false is honoured");
    jamba_tokenizer_free(t);
    tu_write_text(cfg, "{\"add_bos_token\": ");
    cr_assert_eq(jamba_tokenizer_load(dir, &t, &err), JAMBA_ERR_BAD_TOKENIZER);
    cr_assert(strstr(err.message, "tokenizer_config.json") != NULL, "%s", err.message);
    tu_rmtree(dir);
    free(bytes);
    free(cfg);
    free(model);
    free(dir);
}
