/*
 * strmap.c — linear-probing hash maps (see strmap.h).
 */
#include "base/strmap.h"

#include "base/alloc.h"

#include <string.h>

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static int64_t capacity_for(int64_t expected) {
    int64_t cap = 16;
    while (cap < 2 * expected) {
        if (cap > (INT64_C(1) << 40))
            return -1;
        cap *= 2;
    }
    return cap;
}

bool jb_strmap_init(jb_strmap *m, int64_t expected) {
    memset(m, 0, sizeof *m);
    int64_t cap = capacity_for(expected);
    if (cap < 0)
        return false;
    m->keys = jb_calloc((size_t)cap, sizeof *m->keys);
    m->lens = jb_calloc((size_t)cap, sizeof *m->lens);
    m->values = jb_calloc((size_t)cap, sizeof *m->values);
    m->cap = cap;
    if (m->keys == NULL || m->lens == NULL || m->values == NULL) {
        jb_strmap_free(m);
        return false;
    }
    return true;
}

void jb_strmap_free(jb_strmap *m) {
    jb_free(m->keys);
    jb_free(m->lens);
    jb_free(m->values);
    memset(m, 0, sizeof *m);
}

bool jb_strmap_put(jb_strmap *m, const char *key, size_t len, int32_t value) {
    uint64_t i = hash_bytes(key, len) & (uint64_t)(m->cap - 1);
    while (m->keys[i] != NULL) {
        if (m->lens[i] == len && memcmp(m->keys[i], key, len) == 0)
            return false;
        i = (i + 1) & (uint64_t)(m->cap - 1);
    }
    m->keys[i] = key;
    m->lens[i] = (uint32_t)len;
    m->values[i] = value;
    m->n++;
    return true;
}

int32_t jb_strmap_get(const jb_strmap *m, const char *key, size_t len) {
    if (m->cap == 0)
        return -1;
    uint64_t i = hash_bytes(key, len) & (uint64_t)(m->cap - 1);
    while (m->keys[i] != NULL) {
        if (m->lens[i] == len && memcmp(m->keys[i], key, len) == 0)
            return m->values[i];
        i = (i + 1) & (uint64_t)(m->cap - 1);
    }
    return -1;
}

bool jb_u64map_init(jb_u64map *m, int64_t expected) {
    memset(m, 0, sizeof *m);
    int64_t cap = capacity_for(expected);
    if (cap < 0)
        return false;
    m->keys = jb_malloc((size_t)cap * sizeof *m->keys);
    m->values = jb_calloc((size_t)cap, sizeof *m->values);
    m->cap = cap;
    if (m->keys == NULL || m->values == NULL) {
        jb_u64map_free(m);
        return false;
    }
    memset(m->keys, 0xff, (size_t)cap * sizeof *m->keys);
    return true;
}

void jb_u64map_free(jb_u64map *m) {
    jb_free(m->keys);
    jb_free(m->values);
    memset(m, 0, sizeof *m);
}

bool jb_u64map_put(jb_u64map *m, uint64_t key, int32_t value) {
    uint64_t i = mix64(key) & (uint64_t)(m->cap - 1);
    while (m->keys[i] != UINT64_MAX) {
        if (m->keys[i] == key)
            return false;
        i = (i + 1) & (uint64_t)(m->cap - 1);
    }
    m->keys[i] = key;
    m->values[i] = value;
    m->n++;
    return true;
}

int32_t jb_u64map_get(const jb_u64map *m, uint64_t key) {
    if (m->cap == 0)
        return -1;
    uint64_t i = mix64(key) & (uint64_t)(m->cap - 1);
    while (m->keys[i] != UINT64_MAX) {
        if (m->keys[i] == key)
            return m->values[i];
        i = (i + 1) & (uint64_t)(m->cap - 1);
    }
    return -1;
}
