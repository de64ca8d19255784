/*
 * tokenizer_util.h — what the tokenizer suites share (test_tokenizer on the repository's own tokenizers,
 * test_tokenizer_ai21 on AI21's real one, test_chat): loading, encoding and decoding with test failures on
 * error, and the parity checks against tests/fixtures/tokenizers/expected.json (tools/gen_tokenizer_fixtures.py).
 */
#ifndef JB_TEST_TOKENIZER_UTIL_H
#define JB_TEST_TOKENIZER_UTIL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "jamba.h"

/* The expected.json entry of AI21's Jamba tokenizer. Its file is never in the repository: test_tokenizer
 * leaves the entry out and test_tokenizer_ai21 checks it against the file it is given. */
#define TK_AI21_ENTRY "jamba-model"

/* Tiny Shakespeare (public domain), kept in the repository. */
#define TK_SHAKESPEARE JB_SOURCE_DIR "/tests/data/tinyshakespeare.txt"

/* tests/fixtures/tokenizers/expected.json (caller json_decref's). */
json_t *tk_expected(void);
/* The file of an expected.json tokenizer entry: its "path", relative to tests/fixtures/tokenizers (caller
 * frees). */
char *tk_fixture_path(const json_t *entry);

/* Load a tokenizer (a model folder or a file); the test fails on error. */
jamba_tokenizer *tk_load(const char *path);
/* Encode len bytes of text with `flags`; *n receives the count (caller frees the ids). */
int32_t *tk_encode(const jamba_tokenizer *t, const char *text, size_t len, int flags, int64_t *n);
/* Decode ids[0 .. n) into a new NUL-terminated string (caller frees). */
char *tk_decode(const jamba_tokenizer *t, const int32_t *ids, int64_t n, bool keep_special);

/* Every encode case of `entry` (ids of a corpus string, with and without special-token parsing, and the
 * decoded text) on `t`; returns the number of cases checked. `name` labels the failures. */
int tk_check_cases(const char *name, const jamba_tokenizer *t, const json_t *entry, const json_t *corpus);
/* Every decode case of `entry` (random id sequences and their reference text); returns the number checked. */
int tk_check_decode_cases(const char *name, const jamba_tokenizer *t, const json_t *entry);
/* text[0 .. len) encodes to want's "count" ids whose FNV-1a hash is want's "fnv1a64", and decodes back. */
void tk_check_shakespeare(const char *name, const jamba_tokenizer *t, const json_t *want, const uint8_t *text,
                          size_t len);

/* The Jamba-1.5+ chat format on `t`: rendered messages equal the reference template text tokenized with
 * special tokens parsed. */
void tk_check_chat_format(const jamba_tokenizer *t);

#endif
