/*
 * strmap.h — open-addressing hash maps: byte string → int32 (the vocabulary) and uint64 → int32 (BPE
 * merges keyed by a pair of ids). Keys are not copied: they must outlive the map.
 */
#ifndef JB_STRMAP_H
#define JB_STRMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct jb_strmap {
    const char **keys;  /* [cap] */
    uint32_t *lens;     /* [cap] */
    int32_t *values;    /* [cap] */
    int64_t cap, n;     /* cap is a power of two; empty slots have keys[i] == NULL */
} jb_strmap;

/* Room for `expected` keys at load factor 1/2; false on OOM or overflow. */
bool jb_strmap_init(jb_strmap *m, int64_t expected);
void jb_strmap_free(jb_strmap *m);
/* Insert; returns false when the key is already present (the value is left unchanged). */
bool jb_strmap_put(jb_strmap *m, const char *key, size_t len, int32_t value);
/* The value, or -1. */
int32_t jb_strmap_get(const jb_strmap *m, const char *key, size_t len);

typedef struct jb_u64map {
    uint64_t *keys;     /* [cap]; UINT64_MAX marks an empty slot */
    int32_t *values;
    int64_t cap, n;
} jb_u64map;

bool jb_u64map_init(jb_u64map *m, int64_t expected);
void jb_u64map_free(jb_u64map *m);
bool jb_u64map_put(jb_u64map *m, uint64_t key, int32_t value);
int32_t jb_u64map_get(const jb_u64map *m, uint64_t key);

#endif /* JB_STRMAP_H */
