/*
 * fuzz_safetensors.c — libFuzzer target: arbitrary bytes as a safetensors file image.
 * Any input must give JAMBA_OK or a clean error; on success the offsets must tile the data exactly.
 */
#include <stdint.h>
#include <stdlib.h>

#include "ckpt/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    jb_st_file f;
    jamba_error err;
    if (jb_st_parse_memory(data, size, "fuzz.safetensors", &f, &err) == JAMBA_OK) {
        uint64_t pos = 0;
        for (int64_t i = 0; i < f.n_tensors; i++) {
            if (f.tensors[i].begin != pos)
                abort();
            pos = f.tensors[i].end;
        }
        if (f.data_start + pos != size)
            abort();
        jb_st_close(&f);
    }
    return 0;
}
