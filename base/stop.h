/*
 * stop.h — a caller's request to stop long work (writing a model folder), polled between its pieces:
 * fn(data) returns true to stop. The state it reads is the caller's (a program's signal flag, a server's
 * cancel), so the library itself keeps none.
 */
#ifndef JB_STOP_H
#define JB_STOP_H

#include <stdbool.h>
#include <stddef.h>

typedef struct jb_stop {
    bool (*fn)(void *data);
    void *data;
} jb_stop;

/* Whether the work must stop now (never, for NULL or a stop without fn). */
static inline bool jb_stop_requested(const jb_stop *s) { return s != NULL && s->fn != NULL && s->fn(s->data); }

#endif /* JB_STOP_H */
