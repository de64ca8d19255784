/*
 * fault_alloc.h — the test build's allocator: every library allocation can be made to fail.
 * Linked into tests instead of base/alloc.c (the library target `jamba_faultalloc`).
 */
#ifndef JB_FAULT_ALLOC_H
#define JB_FAULT_ALLOC_H

/* Make the n-th library allocation from now fail (n >= 1); 0 disarms. */
void fault_alloc_fail_at(long long n);
/* Allocations made since the last fault_alloc_fail_at(). */
long long fault_alloc_count(void);
/* True once the armed failure has been delivered. */
int fault_alloc_fired(void);

#endif
