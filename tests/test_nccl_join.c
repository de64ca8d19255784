/*
 * test_nccl_join.c — what the processes of a context split over several nodes exchange, checked without a
 * GPU: the NCCL id in hex, its file (written atomically, waited for with a timeout, one that appears while
 * a node waits), which source each node takes (parallel/nccl_id.h), and the descriptors node 0 broadcasts
 * so that the other nodes follow its steps (cuda/tp_desc.h), and the per-rank threads that replay decode graphs
 * (cuda/tp_launch.h).
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cuda/tp_desc.h"
#include "cuda/tp_launch.h"
#include "parallel/nccl_id.h"
#include "tests/support/testutil.h"

static jb_nccl_id some_id(unsigned seed) {
    jb_nccl_id id;
    for (int i = 0; i < JB_NCCL_ID_BYTES; i++)
        id.bytes[i] = (unsigned char)(seed * 131u + (unsigned)i * 37u + (unsigned)(i * i));
    return id;
}

static char *path_in(const char *dir, const char *name) {
    char *p = malloc(strlen(dir) + strlen(name) + 2);
    sprintf(p, "%s/%s", dir, name);
    return p;
}

static int entries(const char *dir) {
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- the id in hex ------------------------------------------------------------------------------------ */

JB_TEST(nccl_id, hex_round_trip_any_case_and_surrounding_space) {
    const jb_nccl_id id = some_id(3);
    char hex[JB_NCCL_ID_HEX + 1];
    jb_nccl_id_encode(&id, hex);
    cr_assert_eq(strlen(hex), 256);
    cr_assert_eq(strspn(hex, "0123456789abcdef"), 256, "lowercase hex: %s", hex);
    jb_nccl_id back;
    jamba_error err = {0};
    cr_assert_eq(jb_nccl_id_decode(hex, strlen(hex), "JAMBA_NCCL_ID", &back, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(memcmp(&back, &id, sizeof id), 0);

    char spaced[JB_NCCL_ID_HEX + 8];
    snprintf(spaced, sizeof spaced, "  %s\r\n", hex);
    for (char *c = spaced; *c; c++)
        if (*c >= 'a' && *c <= 'f')
            *c = (char)(*c - 'a' + 'A');
    memset(&back, 0, sizeof back);
    cr_assert_eq(jb_nccl_id_decode(spaced, strlen(spaced), "JAMBA_NCCL_ID", &back, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(memcmp(&back, &id, sizeof id), 0, "uppercase digits and surrounding whitespace read the same");
}

JB_TEST(nccl_id, malformed_hex_names_the_source_and_the_character) {
    const jb_nccl_id id = some_id(5);
    char hex[JB_NCCL_ID_HEX + 1];
    jb_nccl_id_encode(&id, hex);
    hex[41] = 'g';
    jb_nccl_id back;
    jamba_error err = {0};
    cr_assert_eq(jb_nccl_id_decode(hex, strlen(hex), "JAMBA_NCCL_ID", &back, &err), JAMBA_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err.message, "JAMBA_NCCL_ID") && strstr(err.message, "character 42") &&
              strstr(err.message, "'g'"), "%s", err.message);
    hex[41] = ' '; /* inner whitespace is no digit either */
    cr_assert_eq(jb_nccl_id_decode(hex, strlen(hex), "JAMBA_NCCL_ID", &back, &err), JAMBA_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err.message, "character 42") && strstr(err.message, "0x20"), "%s", err.message);
}

JB_TEST(nccl_id, wrong_length_is_refused_with_the_count) {
    const jb_nccl_id id = some_id(7);
    char hex[JB_NCCL_ID_HEX + 3];
    jb_nccl_id_encode(&id, hex);
    jb_nccl_id back;
    jamba_error err = {0};
    cr_assert_eq(jb_nccl_id_decode(hex, 255, "nccl_id", &back, &err), JAMBA_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err.message, "nccl_id") && strstr(err.message, "256 hex digits") &&
              strstr(err.message, "255 characters"), "%s", err.message);
    strcat(hex, "ab");
    cr_assert_eq(jb_nccl_id_decode(hex, strlen(hex), "nccl_id", &back, &err), JAMBA_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err.message, "258 characters"), "%s", err.message);
    cr_assert_eq(jb_nccl_id_decode("", 0, "nccl_id", &back, &err), JAMBA_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err.message, "0 characters"), "%s", err.message);
}

/* ---- the id file ------------------------------------------------------------------------------------- */

JB_TEST(nccl_id, file_is_written_whole_and_read_back) {
    char *dir = tu_tmpdir();
    char *path = path_in(dir, "jamba.ncclid");
    const jb_nccl_id id = some_id(11);
    jamba_error err = {0};
    cr_assert_eq(jb_nccl_id_write(path, &id, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(entries(dir), 1, "no temporary file left beside it");
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0);
    cr_assert_eq(sb.st_size, JB_NCCL_ID_HEX + 1, "hex and a newline");
    jb_nccl_id back;
    cr_assert_eq(jb_nccl_id_wait(path, 1.0, &back, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(memcmp(&back, &id, sizeof id), 0);
    jb_nccl_id_retire(path);
    cr_assert_eq(entries(dir), 0, "retired");
    jb_nccl_id_retire(path); /* already gone: fine */
    rmdir(dir);
    free(path), free(dir);
}

JB_TEST(nccl_id, waiting_times_out_naming_the_path) {
    char *dir = tu_tmpdir();
    char *path = path_in(dir, "never.ncclid");
    jb_nccl_id back;
    jamba_error err = {0};
    const double t0 = now_s();
    cr_assert_eq(jb_nccl_id_wait(path, 0.3, &back, &err), JAMBA_ERR_IO);
    const double waited = now_s() - t0;
    cr_assert(waited >= 0.3 && waited < 5.0, "waited %.3f s", waited);
    cr_assert(strstr(err.message, path) && strstr(err.message, "not there after"), "%s", err.message);
    rmdir(dir);
    free(path), free(dir);
}

JB_TEST(nccl_id, a_malformed_file_names_the_path) {
    char *dir = tu_tmpdir();
    char *path = path_in(dir, "bad.ncclid");
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("0123456789abcdef\n", f); /* a truncated id */
    fclose(f);
    jb_nccl_id back;
    jamba_error err = {0};
    cr_assert_eq(jb_nccl_id_wait(path, 1.0, &back, &err), JAMBA_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err.message, path) && strstr(err.message, "16 characters"), "%s", err.message);
    unlink(path);
    rmdir(dir);
    free(path), free(dir);
}

typedef struct late_writer {
    const char *path;
    jb_nccl_id id;
    jamba_status st;
} late_writer;

static void *write_late(void *arg) {
    late_writer *w = arg;
    const struct timespec pause = {0, 250 * 1000000L};
    nanosleep(&pause, NULL);
    jamba_error err = {0};
    w->st = jb_nccl_id_write(w->path, &w->id, &err);
    return NULL;
}

JB_TEST(nccl_id, a_file_that_appears_while_waiting_is_read) {
    char *dir = tu_tmpdir();
    char *path = path_in(dir, "late.ncclid");
    late_writer w = {path, some_id(13), JAMBA_ERR_IO};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, write_late, &w), 0);
    jb_nccl_id back;
    jamba_error err = {0};
    const double t0 = now_s();
    const jamba_status st = jb_nccl_id_wait(path, 30.0, &back, &err);
    const double waited = now_s() - t0;
    pthread_join(th, NULL);
    cr_assert_eq(w.st, JAMBA_OK);
    cr_assert_eq(st, JAMBA_OK, "%s", err.message);
    cr_assert_eq(memcmp(&back, &w.id, sizeof back), 0);
    cr_assert(waited >= 0.2 && waited < 10.0, "waited %.3f s for a file written after 0.25 s", waited);
    unlink(path);
    rmdir(dir);
    free(path), free(dir);
}

/* ---- which source each node takes --------------------------------------------------------------------- */

typedef struct maker {
    int calls;
    jb_nccl_id id;
} maker;

static jamba_status make_id(jb_nccl_id *out, void *arg, jamba_error *err) {
    (void)err;
    maker *m = arg;
    m->calls++;
    *out = m->id;
    return JAMBA_OK;
}

JB_TEST(nccl_id, node_zero_writes_the_file_and_the_others_read_it) {
    char *dir = tu_tmpdir();
    char *path = path_in(dir, "job.ncclid");
    maker mk = {0, some_id(17)};
    jb_nccl_join j0 = {.n_nodes = 2, .node_rank = 0, .id_file = path, .timeout_s = 1.0};
    jb_nccl_id got0, got1;
    bool wrote = false;
    jamba_error err = {0};
    cr_assert_eq(jb_nccl_id_obtain(&j0, make_id, &mk, &got0, &wrote, &err), JAMBA_OK, "%s", err.message);
    cr_assert(wrote);
    cr_assert_eq(mk.calls, 1);
    jb_nccl_join j1 = j0;
    j1.node_rank = 1;
    cr_assert_eq(jb_nccl_id_obtain(&j1, make_id, &mk, &got1, &wrote, &err), JAMBA_OK, "%s", err.message);
    cr_assert(!wrote);
    cr_assert_eq(mk.calls, 1, "only node 0 makes an id");
    cr_assert_eq(memcmp(&got0, &got1, sizeof got0), 0);
    cr_assert_eq(memcmp(&got0, &mk.id, sizeof got0), 0);
    jb_nccl_id_retire(path);
    rmdir(dir);
    free(path), free(dir);
}

JB_TEST(nccl_id, given_hex_is_used_on_every_node) {
    maker mk = {0, some_id(19)};
    const jb_nccl_id want = some_id(23);
    char hex[JB_NCCL_ID_HEX + 1];
    jb_nccl_id_encode(&want, hex);
    for (int32_t r = 0; r < 3; r++) {
        jb_nccl_join j = {.n_nodes = 3, .node_rank = r, .id_hex = hex, .id_hex_source = "JAMBA_NCCL_ID"};
        jb_nccl_id got;
        bool wrote = true;
        jamba_error err = {0};
        cr_assert_eq(jb_nccl_id_obtain(&j, make_id, &mk, &got, &wrote, &err), JAMBA_OK, "%s", err.message);
        cr_assert(!wrote);
        cr_assert_eq(memcmp(&got, &want, sizeof got), 0, "node %d", r);
    }
    cr_assert_eq(mk.calls, 0, "node 0 joins with the given id, making none");
}

JB_TEST(nccl_id, missing_or_conflicting_sources_are_refused) {
    maker mk = {0, some_id(29)};
    jb_nccl_id got;
    bool wrote = false;
    jamba_error err = {0};
    jb_nccl_join j = {.n_nodes = 2, .node_rank = 1};
    cr_assert_eq(jb_nccl_id_obtain(&j, make_id, &mk, &got, &wrote, &err), JAMBA_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err.message, "node 1 of 2") && strstr(err.message, "JAMBA_NCCL_ID") &&
              strstr(err.message, "--nccl-id-file"), "%s", err.message);
    j.node_rank = 0;
    cr_assert_eq(jb_nccl_id_obtain(&j, make_id, &mk, &got, &wrote, &err), JAMBA_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err.message, "jamba_nccl_unique_id"), "%s", err.message);
    cr_assert_eq(mk.calls, 0, "an id nobody else could learn is not made");

    char hex[JB_NCCL_ID_HEX + 1];
    jb_nccl_id_encode(&mk.id, hex);
    j = (jb_nccl_join){.n_nodes = 2, .node_rank = 1, .id_file = "/nonexistent/x", .id_hex = hex,
                       .id_hex_source = "nccl_id"};
    cr_assert_eq(jb_nccl_id_obtain(&j, make_id, &mk, &got, &wrote, &err), JAMBA_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err.message, "/nonexistent/x") && strstr(err.message, "nccl_id"), "%s", err.message);

    j = (jb_nccl_join){.n_nodes = 2, .node_rank = 2, .id_hex = hex};
    cr_assert_eq(jb_nccl_id_obtain(&j, make_id, &mk, &got, &wrote, &err), JAMBA_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err.message, "node_rank 2 of 2"), "%s", err.message);

    hex[0] = 'x';
    j = (jb_nccl_join){.n_nodes = 2, .node_rank = 1, .id_hex = hex, .id_hex_source = "JAMBA_NCCL_ID"};
    cr_assert_eq(jb_nccl_id_obtain(&j, make_id, &mk, &got, &wrote, &err), JAMBA_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err.message, "JAMBA_NCCL_ID") && strstr(err.message, "character 1"), "%s", err.message);
}

/* ---- descriptors -------------------------------------------------------------------------------------- */

static const jb_tp_desc_limits LIMITS = {.n_seq_max = 4, .n_ctx = 4000, .n_batch = 2000, .max_segs = 4,
                                         .n_logits_max = 2000};

/* A descriptor for LIMITS (freed by the caller); returns the largest encoded step's bytes. */
static uint64_t desc_for_limits(jb_tp_desc *d) {
    uint64_t cap = 0;
    jamba_error err = {0};
    cr_assert_eq(jb_tp_desc_capacity(&LIMITS, &cap, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(jb_tp_desc_alloc(&LIMITS, d, &err), JAMBA_OK, "%s", err.message);
    return cap;
}

/* A step of three segments: sequence 2 prefilling n0 tokens at 10, sequences 0 and 3 one token each. */
typedef struct sample_step {
    int32_t tokens[2000];
    jb_segment segs[3];
    int64_t logit_src[3];
    jb_step_io io;
} sample_step;

static void make_step(sample_step *s, int64_t n0) {
    for (int64_t i = 0; i < n0 + 2; i++)
        s->tokens[i] = (int32_t)(1000 + 7 * i);
    s->segs[0] = (jb_segment){.seq = 2, .pos = 10, .n = n0, .row = 0, .tokens = s->tokens};
    s->segs[1] = (jb_segment){.seq = 0, .pos = 99, .n = 1, .row = n0, .tokens = s->tokens + n0};
    s->segs[2] = (jb_segment){.seq = 3, .pos = 0, .n = 1, .row = n0 + 1, .tokens = s->tokens + n0 + 1};
    s->logit_src[0] = n0 - 1, s->logit_src[1] = n0, s->logit_src[2] = n0 + 1;
    s->io = (jb_step_io){.segs = s->segs, .n_segs = 3, .n_rows = n0 + 2, .logit_src = s->logit_src, .n_logits = 3,
                         .logit_dst = 5};
}

/* Encode, then receive as a follower does: the first HEAD bytes, the total from them, the rest. */
static jamba_status send_and_receive(const void *buf, uint64_t len, uint64_t cap, jb_tp_desc *d, jamba_error *err) {
    unsigned char *recv = calloc(1, cap);
    memcpy(recv, buf, len < JB_TP_DESC_HEAD ? len : JB_TP_DESC_HEAD);
    uint64_t total = 0;
    jamba_status st = jb_tp_desc_total(recv, cap, &total, err);
    if (st == JAMBA_OK) {
        if (total > JB_TP_DESC_HEAD)
            memcpy(recv + JB_TP_DESC_HEAD, (const unsigned char *)buf + JB_TP_DESC_HEAD, total - JB_TP_DESC_HEAD);
        st = jb_tp_desc_decode(recv, total, &LIMITS, d, err);
    }
    free(recv);
    return st;
}

static void check_same_step(const jb_step_io *a, const jb_step_io *b) {
    cr_assert_eq(b->n_rows, a->n_rows);
    cr_assert_eq(b->n_segs, a->n_segs);
    cr_assert_eq(b->n_logits, a->n_logits);
    cr_assert_eq(b->logit_dst, a->logit_dst);
    for (int64_t i = 0; i < a->n_segs; i++) {
        cr_assert_eq(b->segs[i].seq, a->segs[i].seq);
        cr_assert_eq(b->segs[i].pos, a->segs[i].pos);
        cr_assert_eq(b->segs[i].n, a->segs[i].n);
        cr_assert_eq(b->segs[i].row, a->segs[i].row);
        cr_assert_eq(memcmp(b->segs[i].tokens, a->segs[i].tokens, (size_t)a->segs[i].n * 4), 0, "segment %lld",
                     (long long)i);
    }
    cr_assert_eq(memcmp(b->logit_src, a->logit_src, (size_t)a->n_logits * 8), 0);
    cr_assert_null(b->host_logits);
    cr_assert_null(b->abort_fn);
}

JB_TEST(tp_desc, steps_round_trip_in_one_part_and_in_two) {
    jamba_error err = {0};
    jb_tp_desc d;
    const uint64_t cap = desc_for_limits(&d);
    cr_assert_eq(cap, 64 + 4 * 32 + 2000 * 4 + 2000 * 8);
    unsigned char *buf = calloc(1, cap);
    sample_step *s = calloc(1, sizeof *s);
    const int64_t prefill[] = {1, 50, 1500}; /* decode-sized (one part) to prefill-sized (two parts) */
    for (int i = 0; i < 3; i++) {
        make_step(s, prefill[i]);
        uint64_t len = 0;
        cr_assert_eq(jb_tp_desc_encode_step(&s->io, buf, cap, &len, &err), JAMBA_OK, "%s", err.message);
        cr_assert_eq(len, 64 + 3 * 32 + (uint64_t)(prefill[i] + 2) * 4 + 3 * 8);
        cr_assert_eq(len > JB_TP_DESC_HEAD, prefill[i] == 1500);
        cr_assert_eq(send_and_receive(buf, len, cap, &d, &err), JAMBA_OK, "%s", err.message);
        cr_assert_eq(d.kind, JB_TP_DESC_STEP);
        check_same_step(&s->io, &d.io);
    }
    uint64_t len = 0;
    make_step(s, 1500);
    cr_assert_eq(jb_tp_desc_encode_step(&s->io, buf, 4096, &len, &err), JAMBA_ERR_BUFFER_TOO_SMALL);
    free(s);
    free(buf);
    jb_tp_desc_free(&d);
}

JB_TEST(tp_desc, operations_and_hello_round_trip) {
    jamba_error err = {0};
    jb_tp_desc d;
    const uint64_t cap = desc_for_limits(&d);
    unsigned char *buf = calloc(1, cap);
    cr_assert_eq(send_and_receive(buf, jb_tp_desc_encode_op(JB_TP_DESC_SEQ_COPY, 1, 3, 42, buf), cap, &d, &err),
                 JAMBA_OK, "%s", err.message);
    cr_assert(d.kind == JB_TP_DESC_SEQ_COPY && d.arg[0] == 1 && d.arg[1] == 3 && d.arg[2] == 42);
    cr_assert_eq(send_and_receive(buf, jb_tp_desc_encode_op(JB_TP_DESC_SEQ_RESET, 2, 0, 0, buf), cap, &d, &err),
                 JAMBA_OK, "%s", err.message);
    cr_assert(d.kind == JB_TP_DESC_SEQ_RESET && d.arg[0] == 2);
    cr_assert_eq(send_and_receive(buf, jb_tp_desc_encode_op(JB_TP_DESC_STOP, 0, 0, 0, buf), cap, &d, &err), JAMBA_OK);
    cr_assert_eq(d.kind, JB_TP_DESC_STOP);

    int64_t mine[JB_TP_HELLO_FIELDS], node0[JB_TP_HELLO_FIELDS];
    for (int f = 0; f < JB_TP_HELLO_FIELDS; f++)
        mine[f] = node0[f] = 100 + f;
    cr_assert_eq(send_and_receive(buf, jb_tp_desc_encode_hello(2, node0, buf), cap, &d, &err), JAMBA_OK, "%s",
                 err.message);
    cr_assert(d.kind == JB_TP_DESC_HELLO && d.arg[0] == 2);
    cr_assert_eq(memcmp(d.hello, node0, sizeof node0), 0);
    cr_assert_eq(jb_tp_hello_compare(1, mine, d.hello, &err), JAMBA_OK);
    mine[JB_HELLO_N_CTX] = 4096;
    cr_assert_eq(jb_tp_hello_compare(1, mine, d.hello, &err), JAMBA_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err.message, "node 1") && strstr(err.message, "n_ctx is 4096 here and 101 on node 0"), "%s",
              err.message);
    jb_tp_desc_free(&d);
    free(buf);
}

/* Encode a valid step, let `spoil` change it, and expect the decoder to refuse it naming `want`. */
static void expect_refused(void (*spoil)(sample_step *), const char *want) {
    jamba_error err = {0};
    jb_tp_desc d;
    const uint64_t cap = desc_for_limits(&d);
    unsigned char *buf = calloc(1, cap);
    sample_step *s = calloc(1, sizeof *s);
    make_step(s, 4);
    spoil(s);
    uint64_t len = 0;
    cr_assert_eq(jb_tp_desc_encode_step(&s->io, buf, cap, &len, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(send_and_receive(buf, len, cap, &d, &err), JAMBA_ERR_INVALID_ARGUMENT, "%s should be refused", want);
    cr_assert(strstr(err.message, want), "wanted '%s' in: %s", want, err.message);
    free(s);
    free(buf);
    jb_tp_desc_free(&d);
}

static void seq_out_of_range(sample_step *s) { s->segs[1].seq = 4; }
static void past_the_context(sample_step *s) { s->segs[1].pos = 4000; }
static void rows_out_of_order(sample_step *s) { s->segs[2].row = s->segs[1].row; }
static void logit_outside(sample_step *s) { s->logit_src[2] = s->io.n_rows; }
static void logits_past_cap(sample_step *s) { s->io.logit_dst = LIMITS.n_logits_max - 2; }
static void rows_short(sample_step *s) { s->io.n_rows += 1; }

JB_TEST(tp_desc, malformed_steps_are_refused_by_name) {
    expect_refused(seq_out_of_range, "segment 1 (sequence 4");
    expect_refused(past_the_context, "at position 4000");
    expect_refused(rows_out_of_order, "segment 2");
    expect_refused(logit_outside, "logit row 2 reads step row 6 of 6");
    expect_refused(logits_past_cap, "3 logit rows at 1998");
    expect_refused(rows_short, "cover 6 of 7 rows");
}

JB_TEST(tp_desc, foreign_or_damaged_bytes_are_refused) {
    jamba_error err = {0};
    jb_tp_desc d;
    desc_for_limits(&d);
    unsigned char buf[JB_TP_DESC_HEAD];
    const uint64_t len = jb_tp_desc_encode_op(JB_TP_DESC_SEQ_RESET, 1, 0, 0, buf);
    buf[0] ^= 0xFF;
    cr_assert_eq(jb_tp_desc_decode(buf, len, &LIMITS, &d, &err), JAMBA_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err.message, "magic"), "%s", err.message);
    buf[0] ^= 0xFF;
    buf[4] = 9; /* version */
    cr_assert_eq(jb_tp_desc_decode(buf, len, &LIMITS, &d, &err), JAMBA_ERR_UNSUPPORTED);
    cr_assert(strstr(err.message, "version 9"), "%s", err.message);
    jb_tp_desc_encode_op(JB_TP_DESC_SEQ_RESET, 4, 0, 0, buf);
    cr_assert_eq(jb_tp_desc_decode(buf, len, &LIMITS, &d, &err), JAMBA_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err.message, "reset: sequence 4"), "%s", err.message);
    jb_tp_desc_encode_op(JB_TP_DESC_SEQ_COPY, 0, 1, 4001, buf);
    cr_assert_eq(jb_tp_desc_decode(buf, len, &LIMITS, &d, &err), JAMBA_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err.message, "copy"), "%s", err.message);
    jb_tp_desc_encode_op((jb_tp_desc_kind)77, 0, 0, 0, buf);
    cr_assert_eq(jb_tp_desc_decode(buf, len, &LIMITS, &d, &err), JAMBA_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err.message, "unknown kind 77"), "%s", err.message);
    jb_tp_desc_encode_op(JB_TP_DESC_STOP, 0, 0, 0, buf);
    cr_assert_eq(jb_tp_desc_total(buf, 32, &(uint64_t){0}, &err), JAMBA_ERR_INVALID_ARGUMENT, "past the receiver's room");
    cr_assert_eq(jb_tp_desc_decode(buf, len - 8, &LIMITS, &d, &err), JAMBA_ERR_INVALID_ARGUMENT, "a short receive");
    jb_tp_desc_free(&d);

    const jb_tp_desc_limits huge = {.n_seq_max = 1, .n_ctx = 1, .n_batch = INT64_MAX / 2, .max_segs = 1,
                                    .n_logits_max = INT64_MAX / 2};
    cr_assert_eq(jb_tp_desc_capacity(&huge, &(uint64_t){0}, &err), JAMBA_ERR_OVERFLOW);
}

/* ---- graph launches, one thread per rank ------------------------------------------------------------- */

typedef struct rendezvous {
    pthread_mutex_t lock;
    pthread_cond_t all_here;
    int arrived, n, fail_rank;
} rendezvous;

/* Returns only once every rank of the run has arrived (as a graph launch that waits for its peers would),
 * or false after 5 s: calls made one after another would never all arrive. */
static bool meet(void *arg, int rank) {
    rendezvous *z = arg;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    pthread_mutex_lock(&z->lock);
    if (++z->arrived % z->n == 0)
        pthread_cond_broadcast(&z->all_here);
    const int round = (z->arrived - 1) / z->n;
    bool ok = true;
    while (ok && z->arrived < (round + 1) * z->n)
        ok = pthread_cond_timedwait(&z->all_here, &z->lock, &until) == 0 || z->arrived >= (round + 1) * z->n;
    pthread_mutex_unlock(&z->lock);
    return ok && rank != z->fail_rank;
}

JB_TEST(tp_launch, every_rank_runs_at_once_and_failures_are_reported) {
    for (int n = 1; n <= 8; n *= 2) {
        jb_tp_launcher *l = NULL;
        jamba_error err = {0};
        cr_assert_eq(jb_tp_launcher_create(n, &l, &err), JAMBA_OK, "%s", err.message);
        rendezvous z = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, n, -1};
        for (int run = 0; run < 3; run++)
            cr_assert(jb_tp_launcher_run(l, meet, &z), "%d ranks, run %d: all met", n, run);
        cr_assert_eq(z.arrived, 3 * n);
        z.fail_rank = n - 1;
        cr_assert(!jb_tp_launcher_run(l, meet, &z), "%d ranks: rank %d's failure is reported", n, n - 1);
        jb_tp_launcher_free(l);
    }
}
