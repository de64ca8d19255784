/*
 * alloc.c — the production allocator: plain C library calls. tests/support/fault_alloc.c replaces this
 * file in the test build to fail the Nth allocation.
 */
#include "base/alloc.h"

#include <stdlib.h>

void *jb_malloc(size_t size) { return malloc(size ? size : 1); }
void *jb_calloc(size_t count, size_t size) { return calloc(count ? count : 1, size ? size : 1); }
void *jb_realloc(void *ptr, size_t size) { return realloc(ptr, size ? size : 1); }
void jb_free(void *ptr) { free(ptr); }
