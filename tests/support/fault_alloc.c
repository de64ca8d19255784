/*
 * fault_alloc.c — counting, failure-injecting replacement for base/alloc.c (tests only; the counters
 * are process-global, which is fine because Criterion runs every test in its own process).
 */
#include "tests/support/fault_alloc.h"

#include "base/alloc.h"

#include <stdlib.h>

static long long alloc_count;
static long long fail_at;
static int fired;

void fault_alloc_fail_at(long long n) {
    alloc_count = 0;
    fail_at = n;
    fired = 0;
}

long long fault_alloc_count(void) { return alloc_count; }
int fault_alloc_fired(void) { return fired; }

static int should_fail(void) {
    alloc_count++;
    if (fail_at > 0 && alloc_count == fail_at) {
        fired = 1;
        return 1;
    }
    return 0;
}

void *jb_malloc(size_t size) { return should_fail() ? NULL : malloc(size ? size : 1); }
void *jb_calloc(size_t count, size_t size) { return should_fail() ? NULL : calloc(count ? count : 1, size ? size : 1); }
void *jb_realloc(void *ptr, size_t size) { return should_fail() ? NULL : realloc(ptr, size ? size : 1); }
void jb_free(void *ptr) { free(ptr); }
