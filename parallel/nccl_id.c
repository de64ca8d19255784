/*
 * nccl_id.c — the NCCL unique id between the nodes of one context (nccl_id.h): hex, an atomic file, a
 * bounded wait for it, and which source a process takes.
 */
#include "parallel/nccl_id.h"

#include "base/alloc.h"
#include "base/atomic_file.h"
#include "base/error.h"
#include "base/file.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define POLL_MS 20
#define MAX_FILE_BYTES 4096 /* the id is 257 bytes; anything much larger is not an id file */

void jb_nccl_id_encode(const jb_nccl_id *id, char hex[JB_NCCL_ID_HEX + 1]) {
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < JB_NCCL_ID_BYTES; i++) {
        hex[2 * i] = digits[id->bytes[i] >> 4];
        hex[2 * i + 1] = digits[id->bytes[i] & 15];
    }
    hex[JB_NCCL_ID_HEX] = '\0';
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

jamba_status jb_nccl_id_decode(const char *text, size_t len, const char *source, jb_nccl_id *out, jamba_error *err) {
    size_t begin = 0, end = len;
    while (begin < end && is_space(text[begin]))
        begin++;
    while (end > begin && is_space(text[end - 1]))
        end--;
    if (end - begin != JB_NCCL_ID_HEX)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "%s: an NCCL id is %d hex digits, this has %zu characters "
                       "(copy it whole from node 0)", source, JB_NCCL_ID_HEX, end - begin);
    for (size_t i = 0; i < JB_NCCL_ID_HEX; i++) {
        if (hex_value(text[begin + i]) < 0) {
            const unsigned char c = (unsigned char)text[begin + i];
            return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "%s: character %zu of the NCCL id is %s%c%s (0x%02x), "
                           "not a hex digit", source, i + 1, c >= 32 && c < 127 ? "'" : "",
                           c >= 32 && c < 127 ? (char)c : '?', c >= 32 && c < 127 ? "'" : "", c);
        }
    }
    for (size_t i = 0; i < JB_NCCL_ID_BYTES; i++)
        out->bytes[i] = (unsigned char)(hex_value(text[begin + 2 * i]) << 4 | hex_value(text[begin + 2 * i + 1]));
    return JAMBA_OK;
}

static bool write_hex(FILE *f, void *arg) {
    char hex[JB_NCCL_ID_HEX + 1];
    jb_nccl_id_encode((const jb_nccl_id *)arg, hex);
    return fprintf(f, "%s\n", hex) == JB_NCCL_ID_HEX + 1;
}

jamba_status jb_nccl_id_write(const char *path, const jb_nccl_id *id, jamba_error *err) {
    return jb_write_file_atomic(path, write_hex, (void *)id, err);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

jamba_status jb_nccl_id_wait(const char *path, double timeout_s, jb_nccl_id *out, jamba_error *err) {
    const double start = now_s();
    struct stat sb;
    while (stat(path, &sb) != 0) {
        if (errno != ENOENT)
            return jb_fail(err, JAMBA_ERR_IO, "NCCL id file %s: %s", path, strerror(errno));
        const double waited = now_s() - start;
        if (waited >= timeout_s)
            return jb_fail(err, JAMBA_ERR_IO, "NCCL id file %s: not there after %.1f s of waiting for node 0 to "
                           "write it (is node 0 started, with the same --nccl-id-file on a filesystem both see?)",
                           path, waited);
        const struct timespec pause = {0, POLL_MS * 1000000L};
        nanosleep(&pause, NULL);
    }
    char *text = NULL;
    size_t len = 0;
    JB_TRY(jb_read_regular_file(path, path, MAX_FILE_BYTES, JAMBA_ERR_INVALID_ARGUMENT, &text, &len, err));
    const jamba_status st = jb_nccl_id_decode(text, len, path, out, err);
    jb_free(text);
    return st;
}

jamba_status jb_nccl_id_obtain(const jb_nccl_join *j, jb_nccl_id_make_fn make, void *make_arg, jb_nccl_id *out,
                               bool *wrote_file, jamba_error *err) {
    *wrote_file = false;
    const bool has_file = j->id_file != NULL && j->id_file[0] != '\0';
    const bool has_hex = j->id_hex != NULL && j->id_hex[0] != '\0';
    const char *hex_source = j->id_hex_source ? j->id_hex_source : JB_NCCL_ID_ENV;
    if (j->n_nodes < 2 || j->node_rank < 0 || j->node_rank >= j->n_nodes)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "NCCL id: node_rank %d of %d nodes", j->node_rank, j->n_nodes);
    if (has_file && has_hex)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "NCCL id: both an id file (%s) and %s are given; give one",
                       j->id_file, hex_source);
    if (has_hex)
        return jb_nccl_id_decode(j->id_hex, strlen(j->id_hex), hex_source, out, err);
    if (!has_file)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "node %d of %d: no NCCL id to join with: give every node the "
                       "same nccl_id_file (--nccl-id-file PATH on a filesystem all nodes see), or %s",
                       j->node_rank, j->n_nodes, j->node_rank == 0 ? "make one in node 0's process "
                       "(jamba_nccl_unique_id; the CLI prints JAMBA_NCCL_ID=<hex>) and give it to every node"
                       : "set JAMBA_NCCL_ID to the hex node 0 printed");
    if (j->node_rank > 0)
        return jb_nccl_id_wait(j->id_file, j->timeout_s, out, err);
    JB_TRY(make(out, make_arg, err));
    JB_TRY(jb_nccl_id_write(j->id_file, out, err));
    *wrote_file = true;
    return JAMBA_OK;
}

void jb_nccl_id_retire(const char *path) {
    if (path != NULL && path[0] != '\0')
        unlink(path);
}
