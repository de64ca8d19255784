/*
 * test_tokenizer.c — tokenizer parity with the reference libraries (tools/gen_tokenizer_fixtures.py):
 * every tokenizer fixture in the repository on every corpus string, with and without special-token parsing,
 * encode and decode; all of Tiny Shakespeare (tests/data); BOS/EOS settings; streaming decode; and malformed
 * tokenizer files. AI21's real Jamba tokenizer is never in the repository: its tests are test_tokenizer_ai21.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/testutil.h"
#include "tests/support/tokenizer_util.h"

/* The expected.json entries checked here: every tokenizer whose file is in the repository (all but AI21's). */
static bool in_repository(const char *name) { return strcmp(name, TK_AI21_ENTRY) != 0; }

JB_TEST(tokenizer, parity_with_reference_libraries) {
    json_t *root = tk_expected();
    json_t *corpus = json_object_get(root, "corpus"), *toks = json_object_get(root, "tokenizers");
    const char *name;
    json_t *entry;
    int checked = 0;
    json_object_foreach(toks, name, entry) {
        if (!in_repository(name))
            continue;
        char *path = tk_fixture_path(entry);
        jamba_tokenizer *t = tk_load(path);
        checked += tk_check_cases(name, t, entry, corpus);
        jamba_tokenizer_free(t);
        free(path);
    }
    cr_log_info("%d cases checked", checked);
    cr_assert_geq(checked, 300);
    json_decref(root);
}

/* Random id sequences (byte-token runs valid and invalid, special tokens, "▁▁" pieces) decode exactly as
 * the reference library decodes them. */
JB_TEST(tokenizer, decode_parity_with_reference_libraries) {
    json_t *root = tk_expected();
    const char *name;
    json_t *entry;
    int checked = 0;
    json_object_foreach(json_object_get(root, "tokenizers"), name, entry) {
        if (!in_repository(name))
            continue;
        char *path = tk_fixture_path(entry);
        jamba_tokenizer *t = tk_load(path);
        checked += tk_check_decode_cases(name, t, entry);
        jamba_tokenizer_free(t);
        free(path);
    }
    cr_assert_geq(checked, 280);
    json_decref(root);
}

/* The whole of Tiny Shakespeare (1.1 MB), id for id via a hash; the timeout guards against quadratic
 * behaviour (a quadratic encoder would take minutes). */
Test(tokenizer, shakespeare_parity, .timeout = 60) {
    size_t len;
    uint8_t *text = tu_read_file(TK_SHAKESPEARE, &len);
    json_t *root = tk_expected();
    json_t *runs = json_object_get(root, "shakespeare"), *toks = json_object_get(root, "tokenizers");
    const char *name;
    json_t *want;
    json_object_foreach(runs, name, want) {
        if (!in_repository(name))
            continue;
        char *path = tk_fixture_path(json_object_get(toks, name));
        jamba_tokenizer *t = tk_load(path);
        tk_check_shakespeare(name, t, want, text, len);
        jamba_tokenizer_free(t);
        free(path);
    }
    json_decref(root);
    free(text);
    JB_CHECK_LEAKS();
}

JB_TEST(tokenizer, bos_eos_and_specials) {
    jamba_tokenizer *t = tk_load(JB_SOURCE_DIR "/models/demo");
    cr_assert_eq(jamba_tokenizer_bos(t), 1);
    int64_t n_eos;
    const int32_t *eos = jamba_tokenizer_eos(t, &n_eos);
    cr_assert_geq(n_eos, 1);
    cr_assert_eq(eos[0], 2);
    int64_t n;
    int32_t *ids = tk_encode(t, "Hi", 2, JAMBA_TOKENIZE_ADD_SPECIAL, &n);
    cr_assert_eq(ids[0], 1);
    free(ids);
    ids = tk_encode(t, "", 0, JAMBA_TOKENIZE_ADD_SPECIAL, &n);
    cr_assert_eq(n, 1);
    free(ids);
    ids = tk_encode(t, "", 0, 0, &n);
    cr_assert_eq(n, 0);
    free(ids);
    cr_assert_str_eq(jamba_tokenizer_piece(t, 1), "<|startoftext|>");
    cr_assert_null(jamba_tokenizer_piece(t, -1));
    cr_assert_null(jamba_tokenizer_piece(t, 1 << 20));
    cr_assert_eq(jamba_tokenizer_find(t, "no such piece"), -1);
    /* special tokens are left out of decoded text unless asked for */
    int32_t seq[3] = {1, jamba_tokenizer_find(t, "\xE2\x96\x81the"), 2};
    char *text = tk_decode(t, seq, 3, false);
    cr_assert_str_eq(text, " the");
    free(text);
    text = tk_decode(t, seq, 3, true);
    cr_assert_str_eq(text, "<|startoftext|> the<|endoftext|>");
    free(text);
    jamba_tokenizer_free(t);
}

JB_TEST(tokenizer, invalid_utf8_input_becomes_replacement_characters) {
    jamba_tokenizer *t = tk_load(JB_SOURCE_DIR "/models/demo/tokenizer.json");
    int64_t n1, n2;
    int32_t *a = tk_encode(t, "ab\xff\xc3 x\xe2\x82", 8, 0, &n1);
    const char fixed[] = "ab\xEF\xBF\xBD\xEF\xBF\xBD x\xEF\xBF\xBD";
    int32_t *b = tk_encode(t, fixed, sizeof fixed - 1, 0, &n2);
    cr_assert_eq(n1, n2);
    cr_assert_eq(memcmp(a, b, (size_t)n1 * sizeof *a), 0);
    free(a);
    free(b);
    jamba_tokenizer_free(t);
}

JB_TEST(tokenizer, buffers_too_small_report_the_size) {
    jamba_tokenizer *t = tk_load(JB_SOURCE_DIR "/models/demo");
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
        jamba_tokenizer *t = tk_load(paths[p]);
        int64_t n;
        int32_t *ids = tk_encode(t, text, sizeof text - 1, 0, &n);
        char *whole = tk_decode(t, ids, n, false);
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
    json_t *root = tk_expected();
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
