/*
 * atomic_file.h — write a file so that it either appears complete under its name or not at all: the
 * content goes to a temporary file in the same folder, which is flushed, synced and renamed into place.
 */
#ifndef JB_ATOMIC_FILE_H
#define JB_ATOMIC_FILE_H

#include <stdbool.h>
#include <stdio.h>

#include "jamba.h"

/* Writes the content to `f`; returns false on a write error. */
typedef bool (*jb_write_fn)(FILE *f, void *arg);

/* Sync the folder holding `path`, making a rename into it durable (without this a crash can forget the new
 * directory entry); file systems that cannot sync a folder are accepted. */
jamba_status jb_sync_parent(const char *path, jamba_error *err);

/* On any failure the temporary file is removed and `path` is left as it was. */
jamba_status jb_write_file_atomic(const char *path, jb_write_fn write, void *arg, jamba_error *err);

#endif /* JB_ATOMIC_FILE_H */
