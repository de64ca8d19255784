/*
 * test_chat.c — the Jamba-1.5+ chat format: rendered ids equal the tokenization of the reference template
 * text (jamba-architecture.md §11) for the chat-token fixture tokenizer and the real Jamba tokenizer.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/support/testutil.h"

static jamba_tokenizer *load(const char *path) {
    jamba_tokenizer *t = NULL;
    jamba_error err = {0};
    cr_assert_eq(jamba_tokenizer_load(path, &t, &err), JAMBA_OK, "%s", err.message);
    return t;
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

static void check_format(const jamba_tokenizer *t) {
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

JB_TEST(chat, format_with_chat_token_fixture) {
    jamba_tokenizer *t = load(JB_FIXTURES_DIR "/tokenizers/sp-chat/tokenizer.model");
    check_format(t);
    jamba_tokenizer_free(t);
}

JB_TEST(chat, format_with_real_jamba_tokenizer) {
    const char *path = JB_SOURCE_DIR "/../shared/data/jamba-tokenizer.model";
    struct stat sb;
    if (stat(path, &sb) != 0)
        cr_skip_test("%s is absent", path);
    jamba_tokenizer *t = load(path);
    check_format(t);
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

JB_TEST(chat, errors) {
    jamba_tokenizer *demo = load(JB_SOURCE_DIR "/models/demo");
    cr_assert(!jamba_chat_supported(demo));
    cr_assert(!jamba_chat_supported(NULL));
    jamba_chat_message m = {"user", "Hi"};
    int32_t ids[64];
    int64_t n;
    jamba_error err = {0};
    cr_assert_eq(jamba_chat_tokenize(demo, &m, 1, 0, ids, 64, &n, &err), JAMBA_ERR_UNSUPPORTED);
    cr_assert(strstr(err.message, "no Jamba chat tokens") != NULL, "%s", err.message);
    jamba_tokenizer *chat = load(JB_FIXTURES_DIR "/tokenizers/sp-chat/tokenizer.model");
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
