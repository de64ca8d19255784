/*
 * fuzz_spm.c — libFuzzer target: arbitrary bytes as a SentencePiece tokenizer.model. Accepted models must
 * tokenize and detokenize a fixed text without trouble.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    jamba_tokenizer t;
    memset(&t, 0, sizeof t);
    t.bos_id = t.unk_id = -1;
    if (jb_tokenizer_read_spm(&t, data, size, "fuzz.model", NULL) == JAMBA_OK &&
        jb_tokenizer_build_matcher(&t, NULL) == JAMBA_OK) {
        static const char text[] = "Hello, world!\n 123 \xE6\x97\xA5\xE6\x9C\xAC <|eom|>";
        int32_t ids[2 * sizeof text + 3];
        int64_t n = 0;
        if (jamba_tokenize(&t, text, sizeof text - 1, JAMBA_TOKENIZE_ADD_SPECIAL | JAMBA_TOKENIZE_PARSE_SPECIAL, ids,
                           (int64_t)(sizeof ids / sizeof ids[0]), &n, NULL) == JAMBA_OK) {
            char out[4096];
            size_t len;
            jamba_detokenize(&t, ids, n, true, out, sizeof out, &len, NULL);
        }
    }
    jb_tokenizer_release(&t);
    return 0;
}
