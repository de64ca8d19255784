/*
 * nccl_id.h — how the processes of a context split over several nodes agree on one NCCL unique id (the
 * bootstrap address that ncclCommInitRank needs on every rank), in plain host C so that the protocol is
 * tested without a GPU (tests/test_nccl_join.c); cuda/tp_context.cu makes the id and joins with it.
 *
 * The id is 128 bytes (NCCL_UNIQUE_ID_BYTES), written as 256 lowercase hex digits. It must be made by the
 * process of node 0 (ncclGetUniqueId starts the bootstrap root inside the calling process), and reaches the
 * others in one of two ways:
 *   - a file (jamba_context_params.nccl_id_file, `--nccl-id-file`) on a filesystem every node sees: node 0
 *     writes it atomically (temporary file + rename: a reader sees all of it or nothing), the others wait
 *     for it to appear, up to a timeout, then read and check it; node 0 removes it once every rank joined;
 *   - the hex itself (jamba_context_params.nccl_id, or the environment variable JAMBA_NCCL_ID), given to
 *     every node, node 0 included, after node 0's process made it (jamba_nccl_unique_id; the CLI on node 0
 *     prints JAMBA_NCCL_ID=<hex> when given neither a file nor the variable: docs/multi-gpu.md).
 */
#ifndef JB_PARALLEL_NCCL_ID_H
#define JB_PARALLEL_NCCL_ID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "jamba.h"

#define JB_NCCL_ID_BYTES 128                 /* sizeof(ncclUniqueId); cuda/tp_context.cu asserts it */
#define JB_NCCL_ID_HEX (2 * JB_NCCL_ID_BYTES) /* hex digits */
#define JB_NCCL_ID_ENV "JAMBA_NCCL_ID"
#define JB_NCCL_ID_WAIT_S 600.0              /* how long a node waits for node 0's id file */

typedef struct jb_nccl_id {
    unsigned char bytes[JB_NCCL_ID_BYTES];
} jb_nccl_id;

/* hex: JB_NCCL_ID_HEX lowercase digits and a NUL. */
void jb_nccl_id_encode(const jb_nccl_id *id, char hex[JB_NCCL_ID_HEX + 1]);

/* The id written in `text` (len bytes; surrounding whitespace ignored). JAMBA_ERR_INVALID_ARGUMENT naming
 * `source` (the variable or the file) and what is wrong: the digit count, or the first character that is
 * not a hex digit and where. */
jamba_status jb_nccl_id_decode(const char *text, size_t len, const char *source, jb_nccl_id *out, jamba_error *err);

/* Write the id to `path` (hex and a newline), atomically. */
jamba_status jb_nccl_id_write(const char *path, const jb_nccl_id *id, jamba_error *err);

/* Wait until `path` exists (polling every few milliseconds, up to timeout_s seconds), then read and decode
 * it. JAMBA_ERR_IO naming the path and the seconds waited when it does not appear; the decode's error when
 * it is malformed. */
jamba_status jb_nccl_id_wait(const char *path, double timeout_s, jb_nccl_id *out, jamba_error *err);

/* Makes a fresh id in this process (ncclGetUniqueId). */
typedef jamba_status (*jb_nccl_id_make_fn)(jb_nccl_id *out, void *arg, jamba_error *err);

/* One process's part in joining: node `node_rank` of `n_nodes`, and where the id comes from. */
typedef struct jb_nccl_join {
    int32_t n_nodes, node_rank;
    const char *id_file; /* or NULL */
    const char *id_hex;  /* the params' nccl_id, else the environment's JAMBA_NCCL_ID, else NULL */
    const char *id_hex_source; /* names id_hex in messages: "nccl_id" or "JAMBA_NCCL_ID" */
    double timeout_s;    /* for the file */
} jb_nccl_join;

/* The id this process joins with: the given hex on every node when there is one (a file as well is
 * refused: two sources could disagree); else node 0 makes it and writes id_file, and the other nodes wait
 * for that file. Without either source, node 0 cannot tell the others and another node has nothing to
 * wait for: JAMBA_ERR_INVALID_ARGUMENT saying what to give. *wrote_file: node 0 wrote id_file (remove it
 * with jb_nccl_id_retire once every rank joined). */
jamba_status jb_nccl_id_obtain(const jb_nccl_join *j, jb_nccl_id_make_fn make, void *make_arg, jb_nccl_id *out,
                               bool *wrote_file, jamba_error *err);

/* Remove node 0's id file after every rank joined (a later launch must not read a stale id); a file
 * already gone is fine. */
void jb_nccl_id_retire(const char *path);

#endif /* JB_PARALLEL_NCCL_ID_H */
