/*
 * test_tokenizer_ai21.c — AI21's real Jamba tokenizer (SentencePiece BPE, 65,536 pieces): parity with
 * sentencepiece on the corpus, on random id sequences and on all of Tiny Shakespeare (expected.json's
 * "jamba-model" entry), the ids of its special, byte and digit tokens, and the chat format.
 *
 * The file belongs to AI21 and is never in the repository: it is $JAMBA_AI21_TOKENIZER, or by default
 * ../shared/data/jamba-tokenizer.model beside the repository root (JB_AI21_TOKENIZER, set by the build).
 * When it is absent the program exits with SKIPPED before Criterion starts, which ctest reports as skipped
 * (SKIP_RETURN_CODE in tests/CMakeLists.txt).
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/support/testutil.h"
#include "tests/support/tokenizer_util.h"

#ifndef JB_AI21_TOKENIZER
#error "JB_AI21_TOKENIZER (the default path of AI21's tokenizer.model) must be defined by the build"
#endif

#define SKIPPED 77 /* the exit status ctest reads as "skipped" */

/* The tokenizer file: $JAMBA_AI21_TOKENIZER when set, else the build's default. */
static const char *ai21_path(void) {
    const char *env = getenv("JAMBA_AI21_TOKENIZER");
    return env && *env ? env : JB_AI21_TOKENIZER;
}

/* expected.json's AI21 entry in `section` ("tokenizers" or "shakespeare"). */
static json_t *ai21_entry(json_t *root, const char *section) {
    json_t *entry = json_object_get(json_object_get(root, section), TK_AI21_ENTRY);
    cr_assert_not_null(entry, "expected.json has no %s.%s", section, TK_AI21_ENTRY);
    return entry;
}

JB_TEST(tokenizer, real_jamba_parity_with_reference_library) {
    json_t *root = tk_expected();
    jamba_tokenizer *t = tk_load(ai21_path());
    int checked = tk_check_cases(TK_AI21_ENTRY, t, ai21_entry(root, "tokenizers"), json_object_get(root, "corpus"));
    cr_assert_geq(checked, 30);
    jamba_tokenizer_free(t);
    json_decref(root);
}

JB_TEST(tokenizer, real_jamba_decode_parity_with_reference_library) {
    json_t *root = tk_expected();
    jamba_tokenizer *t = tk_load(ai21_path());
    cr_assert_geq(tk_check_decode_cases(TK_AI21_ENTRY, t, ai21_entry(root, "tokenizers")), 40);
    jamba_tokenizer_free(t);
    json_decref(root);
}

/* All of Tiny Shakespeare, id for id via a hash; the timeout guards against quadratic behaviour. */
Test(tokenizer, real_jamba_shakespeare_parity, .timeout = 60) {
    size_t len;
    uint8_t *text = tu_read_file(TK_SHAKESPEARE, &len);
    json_t *root = tk_expected();
    jamba_tokenizer *t = tk_load(ai21_path());
    tk_check_shakespeare(TK_AI21_ENTRY, t, ai21_entry(root, "shakespeare"), text, len);
    jamba_tokenizer_free(t);
    json_decref(root);
    free(text);
    JB_CHECK_LEAKS();
}

JB_TEST(tokenizer, real_jamba_tokenizer_facts) {
    jamba_tokenizer *t = tk_load(ai21_path());
    cr_assert_eq(jamba_tokenizer_vocab_size(t), 65536);
    cr_assert_eq(jamba_tokenizer_bos(t), 1);
    cr_assert_eq(jamba_tokenizer_find(t, "<|eom|>"), 518);
    cr_assert_eq(jamba_tokenizer_find(t, ","), 1543);
    cr_assert_eq(jamba_tokenizer_find(t, "<0x0A>"), 1554);
    int64_t n;
    int32_t *ids = tk_encode(t, "a\n7,", 4, 0, &n);
    cr_assert_eq(n, 4);
    cr_assert_eq(ids[1], 1554);
    cr_assert_eq(ids[2], 63004); /* digit 7 */
    cr_assert_eq(ids[3], 1543);
    free(ids);
    /* chat tokens are user-defined pieces: always matched; BOS only when special tokens are parsed */
    const char chat[] = "<|startoftext|><|bom|><|user|> Hi<|eom|>";
    ids = tk_encode(t, chat, strlen(chat), JAMBA_TOKENIZE_ADD_SPECIAL, &n);
    cr_assert_eq(ids[0], 1);
    cr_assert_neq(ids[1], 1);
    free(ids);
    ids = tk_encode(t, chat, strlen(chat), JAMBA_TOKENIZE_PARSE_SPECIAL, &n);
    cr_assert_eq(ids[0], 1);
    cr_assert_eq(ids[1], 519);
    cr_assert_eq(ids[2], 521);
    cr_assert_eq(ids[n - 1], 518);
    free(ids);
    jamba_tokenizer_free(t);
}

JB_TEST(chat, format_with_real_jamba_tokenizer) {
    jamba_tokenizer *t = tk_load(ai21_path());
    tk_check_chat_format(t);
    jamba_chat_message m = {"user", "Hi"};
    int32_t ids[64];
    int64_t n;
    cr_assert_eq(jamba_chat_tokenize(t, &m, 1, JAMBA_CHAT_GENERATION_PROMPT, ids, 64, &n, NULL), JAMBA_OK);
    cr_assert_eq(ids[0], 1);   /* <|startoftext|> */
    cr_assert_eq(ids[1], 519); /* <|bom|> */
    cr_assert_eq(ids[2], 520); /* <|system|> */
    cr_assert_eq(ids[n - 1], 522); /* <|assistant|>, no trailing space */
    cr_assert_eq(ids[n - 2], 519);
    cr_assert_eq(ids[n - 3], 518);
    jamba_tokenizer_free(t);
}

/* Criterion's own main, after the skip: without the file no test runs (a Criterion skip would still make
 * the program exit non-zero). */
int main(int argc, char *argv[]) {
    struct stat sb;
    if (stat(ai21_path(), &sb) != 0) {
        fprintf(stderr, "test_tokenizer_ai21: skipped: %s is absent (AI21's tokenizer is not in the repository; "
                        "set JAMBA_AI21_TOKENIZER to its tokenizer.model)\n", ai21_path());
        return SKIPPED;
    }
    struct criterion_test_set *tests = criterion_initialize();
    int result = 0;
    if (criterion_handle_args(argc, argv, true))
        result = !criterion_run_all_tests(tests);
    criterion_finalize(tests);
    return result;
}
