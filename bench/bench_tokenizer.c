/*
 * bench_tokenizer.c — encoding and decoding throughput of a tokenizer on a text file.
 *
 *   bench_tokenizer TOKENIZER [TEXT_FILE] [REPEATS]
 *     TOKENIZER  a model folder, tokenizer.json or tokenizer.model
 *     TEXT_FILE  default tests/data/tinyshakespeare.txt (in the source tree)
 *     REPEATS    default 7; the median is reported
 */
#define _POSIX_C_SOURCE 200809L
#include "bench/bench_util.h"
#include <jamba.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s TOKENIZER [TEXT_FILE] [REPEATS]\n", argv[0]);
        return 2;
    }
    const char *path = argc > 2 ? argv[2] : JB_SOURCE_DIR "/tests/data/tinyshakespeare.txt";
    int repeats = argc > 3 ? atoi(argv[3]) : 7;
    if (repeats < 1 || repeats > 100)
        repeats = 7;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "cannot open %s\n", path);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)len + 1);
    if (text == NULL || fread(text, 1, (size_t)len, f) != (size_t)len) {
        fprintf(stderr, "cannot read %s\n", path);
        return 1;
    }
    fclose(f);
    jamba_tokenizer *tok = NULL;
    jamba_error err = {0};
    if (jamba_tokenizer_load(argv[1], &tok, &err) != JAMBA_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    int64_t cap = jamba_tokenizer_max_ids(tok, (size_t)len), n = 0;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    char *back = malloc((size_t)len * 4 + 16);
    double enc[100], dec[100];
    for (int r = 0; r < repeats; r++) {
        double t0 = now();
        if (jamba_tokenize(tok, text, (size_t)len, 0, ids, cap, &n, &err) != JAMBA_OK) {
            fprintf(stderr, "%s\n", err.message);
            return 1;
        }
        double t1 = now();
        size_t out;
        if (jamba_detokenize(tok, ids, n, false, back, (size_t)len * 4 + 16, &out, &err) != JAMBA_OK) {
            fprintf(stderr, "%s\n", err.message);
            return 1;
        }
        enc[r] = t1 - t0;
        dec[r] = now() - t1;
    }
    const double mb = (double)len / 1e6, encode = median(enc, repeats), decode = median(dec, repeats);
    printf("%s: %.2f MB, %lld tokens; encode median %.3f s (%.2f MB/s), decode median %.3f s (%.2f MB/s), %d runs\n",
           argv[1], mb, (long long)n, encode, mb / encode, decode, mb / decode, repeats);
    free(back);
    free(ids);
    free(text);
    jamba_tokenizer_free(tok);
    return 0;
}
