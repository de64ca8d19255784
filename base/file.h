/*
 * file.h — opening the files the library reads (config, weights, shard index, tokenizer files, sequence
 * states): regular files only, and never blocking on the way to finding out.
 *
 * A plain open() of a FIFO waits for a writer, forever if none comes, and a check for a regular file after
 * it comes too late. So every read goes through jb_open_regular: open with O_NONBLOCK (a FIFO or device
 * opens at once), O_CLOEXEC and O_NOCTTY; fstat before any read; refuse anything that is not a regular file
 * with a message naming the file and what it is ("not a regular file (a FIFO)"); then clear O_NONBLOCK.
 * Symbolic links are followed: model folders legitimately consist of them (the Hugging Face cache links each
 * file of a snapshot to a blob). A caller that expects none passes O_NOFOLLOW in extra_flags.
 */
#ifndef JB_FILE_H
#define JB_FILE_H

#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>

#include "jamba.h"

/* Open `path` read-only; on success *fd is a blocking descriptor of a regular file and *sb (when not NULL)
 * its fstat. `label` names the file in messages. JAMBA_ERR_IO when it cannot be opened or is no regular
 * file. */
jamba_status jb_open_regular(const char *path, const char *label, int extra_flags, int *fd, struct stat *sb,
                             jamba_error *err);

/* The same as a FILE* opened "rb". */
jamba_status jb_fopen_regular(const char *path, const char *label, FILE **out, jamba_error *err);

/* The whole file into a new NUL-terminated buffer (*out, length *len; the caller frees it with jb_free).
 * A file larger than max_bytes fails with `too_big` (the caller's "malformed" status) before anything is
 * read. */
jamba_status jb_read_regular_file(const char *path, const char *label, uint64_t max_bytes, jamba_status too_big,
                                  char **out, size_t *len, jamba_error *err);

#endif /* JB_FILE_H */
