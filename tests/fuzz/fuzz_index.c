/*
 * fuzz_index.c — libFuzzer target: arbitrary bytes as model.safetensors.index.json. Accepted indexes
 * may only name plain files.
 */
#include <stdint.h>
#include <stdlib.h>

#include "ckpt/checkpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    jb_st_index idx;
    if (jb_st_index_parse((const char *)data, size, "index.json", &idx, NULL) == JAMBA_OK) {
        for (int64_t s = 0; s < idx.n_shards; s++)
            if (!jb_is_plain_file_name(idx.shards[s]))
                abort();
        for (int64_t i = 0; i < idx.n; i++)
            if (idx.shard_of[i] < 0 || idx.shard_of[i] >= idx.n_shards)
                abort();
        jb_st_index_free(&idx);
    }
    return 0;
}
