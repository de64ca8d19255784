/*
 * fuzz_tokenize.c — libFuzzer target: arbitrary bytes as text for two byte-exact tokenizers (the demo
 * model's SentencePiece-style tokenizer.json with byte fallback, and a GPT-2 byte-level one). Valid UTF-8
 * must come back unchanged from detokenize(tokenize(text)) (for the SentencePiece style: unless the text
 * itself contains U+2581, which that style cannot tell from a space); ids must be in range.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jamba.h"
#include "base/utf8.h"

#ifndef JB_SOURCE_DIR
#error "JB_SOURCE_DIR must be defined"
#endif

static jamba_tokenizer *toks[2];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool memmem_u2581(const uint8_t *s, size_t n) {
    for (size_t i = 0; i + 3 <= n; i++)
        if (s[i] == 0xe2 && s[i + 1] == 0x96 && s[i + 2] == 0x81)
            return true;
    return false;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    if (jamba_tokenizer_load(JB_SOURCE_DIR "/models/demo/tokenizer.json", &toks[0], NULL) != JAMBA_OK ||
        jamba_tokenizer_load(JB_SOURCE_DIR "/tests/fixtures/tokenizers/bytelevel-gpt2", &toks[1], NULL) != JAMBA_OK)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 4096)
        return 0;
    int64_t cap0 = jamba_tokenizer_max_ids(toks[0], size), cap1 = jamba_tokenizer_max_ids(toks[1], size);
    int32_t *ids = malloc((size_t)(cap0 > cap1 ? cap0 : cap1) * sizeof *ids);
    char *back = malloc(8 * size + 16);
    for (int k = 0; k < 2; k++) {
        int64_t n = 0;
        if (jamba_tokenize(toks[k], (const char *)data, size, 0, ids, jamba_tokenizer_max_ids(toks[k], size), &n, NULL) != JAMBA_OK)
            abort();
        for (int64_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= jamba_tokenizer_vocab_size(toks[k]))
                abort();
        size_t len = 0;
        if (jamba_detokenize(toks[k], ids, n, true, back, 8 * size + 16, &len, NULL) != JAMBA_OK)
            abort();
        bool exact = jb_utf8_valid(data, size) && (k == 1 || !memmem_u2581(data, size));
        if (exact && (len != size || memcmp(back, data, size) != 0))
            abort(); /* valid text must round-trip exactly */
        if (!jb_utf8_valid((const uint8_t *)back, len))
            abort();
    }
    free(back);
    free(ids);
    return 0;
}
