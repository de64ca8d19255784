/*
 * test_chat.c — the Jamba-1.5+ chat format: rendered ids equal the tokenization of the reference template
 * text (docs/jamba-architecture.md §11) for the chat-token fixture tokenizer (AI21's real Jamba tokenizer:
 * test_tokenizer_ai21).
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/testutil.h"
#include "tests/support/tokenizer_util.h"

JB_TEST(chat, format_with_chat_token_fixture) {
    jamba_tokenizer *t = tk_load(JB_FIXTURES_DIR "/tokenizers/sp-chat/tokenizer.model");
    tk_check_chat_format(t);
    jamba_tokenizer_free(t);
}

JB_TEST(chat, errors) {
    jamba_tokenizer *demo = tk_load(JB_SOURCE_DIR "/models/demo");
    cr_assert(!jamba_chat_supported(demo));
    cr_assert(!jamba_chat_supported(NULL));
    jamba_chat_message m = {"user", "Hi"};
    int32_t ids[64];
    int64_t n;
    jamba_error err = {0};
    cr_assert_eq(jamba_chat_tokenize(demo, &m, 1, 0, ids, 64, &n, &err), JAMBA_ERR_UNSUPPORTED);
    cr_assert(strstr(err.message, "no Jamba chat tokens") != NULL, "%s", err.message);
    jamba_tokenizer *chat = tk_load(JB_FIXTURES_DIR "/tokenizers/sp-chat/tokenizer.model");
    jamba_chat_message bad = {"narrator", "Once"};
    cr_assert_eq(jamba_chat_tokenize(chat, &bad, 1, 0, ids, 64, &n, &err), JAMBA_ERR_UNSUPPORTED);
    cr_assert(strstr(err.message, "narrator") != NULL, "%s", err.message);
    cr_assert_eq(jamba_chat_tokenize(chat, &m, 1, JAMBA_CHAT_GENERATION_PROMPT, ids, 2, &n, &err),
                 JAMBA_ERR_BUFFER_TOO_SMALL);
    cr_assert_gt(n, 2);
    cr_assert_eq(jamba_chat_tokenize(chat, NULL, 1, 0, ids, 64, &n, &err), JAMBA_ERR_INVALID_ARGUMENT);
    jamba_tokenizer_free(chat);
    jamba_tokenizer_free(demo);
}
