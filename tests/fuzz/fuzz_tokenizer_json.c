/*
 * fuzz_tokenizer_json.c — libFuzzer target: arbitrary bytes as a Hugging Face tokenizer.json (model, merges,
 * normalizer and pre-tokenizer chains, regexes, added tokens, decoder). An accepted tokenizer must tokenize
 * fixed texts within jamba_tokenizer_max_ids (a regex engine error may refuse a text, never overflow the
 * bound), give ids in its vocabulary, and detokenize them to valid UTF-8.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/utf8.h"
#include "tokenizer/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Tokenize and detokenize one text with an accepted tokenizer; abort on a broken promise. */
static void exercise(const jamba_tokenizer *t, const char *text, size_t len) {
    const int flags = JAMBA_TOKENIZE_ADD_SPECIAL | JAMBA_TOKENIZE_PARSE_SPECIAL;
    const int64_t cap = jamba_tokenizer_max_ids(t, len);
    if (cap < 0 || cap > 1 << 20)
        abort(); /* the bound a caller sizes its buffer by stays usable for a text of under 100 bytes */
    int32_t *ids = malloc((size_t)(cap > 0 ? cap : 1) * sizeof *ids);
    if (ids == NULL)
        return;
    int64_t n = 0;
    jamba_status st = jamba_tokenize(t, text, len, flags, ids, cap, &n, NULL);
    if (st == JAMBA_ERR_BUFFER_TOO_SMALL)
        abort(); /* more ids than jamba_tokenizer_max_ids promised */
    if (st == JAMBA_OK) {
        for (int64_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= jamba_tokenizer_vocab_size(t))
                abort();
        size_t need = 0;
        st = jamba_detokenize(t, ids, n, true, NULL, 0, &need, NULL);
        char *back = st == JAMBA_OK || st == JAMBA_ERR_BUFFER_TOO_SMALL ? malloc(need + 1) : NULL;
        if (back != NULL && jamba_detokenize(t, ids, n, true, back, need + 1, &need, NULL) == JAMBA_OK &&
            !jb_utf8_valid((const uint8_t *)back, need))
            abort();
        free(back);
    }
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    jamba_tokenizer t;
    memset(&t, 0, sizeof t);
    t.bos_id = t.unk_id = -1;
    if (jb_tokenizer_read_hf(&t, (const char *)data, size, "fuzz/tokenizer.json", NULL) == JAMBA_OK &&
        jb_tokenizer_build_matcher(&t, NULL) == JAMBA_OK) {
        static const char *const texts[] = {
            "Hello, world!\n 123  \xE6\x97\xA5\xE6\x9C\xAC <|eom|> don't",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "\xE2\x96\x81 \t\r\n\xF0\x9F\x98\x80\xC3\xA9",
            "",
        };
        for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
            exercise(&t, texts[i], strlen(texts[i]));
    }
    jb_tokenizer_release(&t);
    return 0;
}
