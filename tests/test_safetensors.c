/*
 * test_safetensors.c — the safetensors loader against a file written by the Python safetensors library,
 * every malformed-file rule of reliability.md §5.1, truncation at every byte, random header corruption,
 * and the writer's round trip.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt/safetensors.h"
#include "ckpt/st_write.h"
#include "tests/support/testutil.h"

/* ---- a file written by the reference library -------------------------------------------------- */

static const jb_st_tensor *find(const jb_st_file *f, const char *name) {
    for (int64_t i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0)
            return &f->tensors[i];
    return NULL;
}

static void check_mixed(const jb_st_file *f) {
    cr_assert_eq(f->n_tensors, 8);
    const jb_st_tensor *t = find(f, "f32");
    cr_assert_not_null(t);
    cr_assert_eq(t->dtype, JAMBA_DTYPE_F32);
    cr_assert_eq(t->rank, 2);
    cr_assert_eq(t->shape[0], 2);
    cr_assert_eq(t->shape[1], 3);
    float v[6];
    memcpy(v, jb_st_tensor_data(f, t), sizeof v);
    for (int i = 0; i < 6; i++)
        cr_assert_float_eq(v[i], 0.5f * (float)i, 0.0f);
    t = find(f, "bf16");
    cr_assert_eq(t->dtype, JAMBA_DTYPE_BF16);
    uint16_t b[6];
    memcpy(b, jb_st_tensor_data(f, t), sizeof b);
    cr_assert_eq(b[0], 0x3f80); /* 1.0 */
    cr_assert_eq(b[1], 0xbfc0); /* -1.5 */
    cr_assert_eq(b[5], 0x4380); /* 256.0 */
    t = find(f, "f16");
    cr_assert_eq(t->dtype, JAMBA_DTYPE_F16);
    uint16_t h[4];
    memcpy(h, jb_st_tensor_data(f, t), sizeof h);
    cr_assert_eq(h[3], 0x7bff); /* 65504, the largest finite half */
    t = find(f, "i8");
    cr_assert_eq(t->dtype, JAMBA_DTYPE_I8);
    cr_assert_eq(((const int8_t *)jb_st_tensor_data(f, t))[0], -128);
    cr_assert_eq(find(f, "u8")->dtype, JAMBA_DTYPE_U8);
    cr_assert_eq(find(f, "f8")->dtype, JAMBA_DTYPE_F8_E4M3);
    t = find(f, "i64_scalar");
    cr_assert_eq(t->rank, 0);
    cr_assert_eq(t->n_elements, 1);
    int64_t s;
    memcpy(&s, jb_st_tensor_data(f, t), 8);
    cr_assert_eq(s, 42);
    t = find(f, "empty");
    cr_assert_eq(t->n_elements, 0);
    cr_assert_eq(t->n_bytes, 0);
}

JB_TEST(safetensors, reads_reference_written_file_mapped) {
    char *path = tu_fixture("safetensors/mixed.safetensors");
    jb_st_file f;
    jamba_error err = {0};
    cr_assert_eq(jb_st_open(path, path, &f, &err), JAMBA_OK, "%s", err.message);
    check_mixed(&f);
    jb_st_close(&f);
    free(path);
}

JB_TEST(safetensors, reads_reference_written_file_from_memory) {
    char *path = tu_fixture("safetensors/mixed.safetensors");
    size_t n;
    uint8_t *buf = tu_read_file(path, &n);
    jb_st_file f;
    jamba_error err = {0};
    cr_assert_eq(jb_st_parse_memory(buf, n, "mixed", &f, &err), JAMBA_OK, "%s", err.message);
    check_mixed(&f);
    jb_st_close(&f);
    free(buf);
    free(path);
}

JB_TEST(safetensors, close_is_safe_on_zeroed_file) {
    jb_st_file f;
    memset(&f, 0, sizeof f);
    jb_st_close(&f);
    jb_st_close(&f);
}

/* ---- crafted headers -------------------------------------------------------------------------- */

static uint8_t zeros[4096];

/* Parse `header` followed by `data_len` zero bytes; expect `want` and a message containing `needle`. */
static void expect_header(const char *header, size_t data_len, jamba_status want, const char *needle) {
    size_t n;
    uint8_t *img = tu_st_image(header, zeros, data_len, &n);
    jb_st_file f;
    jamba_error err = {0};
    jamba_status st = jb_st_parse_memory(img, n, "crafted.safetensors", &f, &err);
    cr_expect_eq(st, want, "header %s: status %d (%s), want %d", header, st, err.message, want);
    if (want != JAMBA_OK) {
        cr_expect_eq(err.status, st);
        cr_expect(strstr(err.message, "crafted.safetensors") != NULL, "message names the file: %s", err.message);
        cr_expect(strstr(err.message, needle) != NULL, "message '%s' should contain '%s'", err.message, needle);
        cr_expect(strchr(err.message, '\n') == NULL);
    }
    jb_st_close(&f);
    free(img);
}

#define OK_HEADER "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}"
#define BAD JAMBA_ERR_BAD_CHECKPOINT

JB_TEST(safetensors, accepts_minimal_and_padded_headers) {
    expect_header(OK_HEADER, 8, JAMBA_OK, "");
    expect_header("{}", 0, JAMBA_OK, "");
    expect_header("  \n\t" OK_HEADER "     ", 8, JAMBA_OK, "");
    expect_header("{\"__metadata__\":{\"format\":\"pt\"}}", 0, JAMBA_OK, "");
}

JB_TEST(safetensors, rejects_short_file_and_bad_header_length) {
    uint8_t tiny[7] = {0};
    jb_st_file f;
    jamba_error err = {0};
    cr_assert_eq(jb_st_parse_memory(tiny, sizeof tiny, "short", &f, &err), BAD);
    cr_assert(strstr(err.message, "shorter than the 8-byte") != NULL, "%s", err.message);

    uint8_t img[16] = {0};
    const struct {
        uint64_t n;
        const char *needle;
    } cases[] = {{0, "too small"},
                 {1, "too small"},
                 {9, "runs past the end"},
                 {200000000ull, "exceeds the"},
                 {UINT64_MAX, "exceeds the"},
                 {UINT64_MAX - 7, "exceeds the"}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int i = 0; i < 8; i++)
            img[i] = (uint8_t)(cases[c].n >> (8 * i));
        memset(&err, 0, sizeof err);
        cr_expect_eq(jb_st_parse_memory(img, sizeof img, "len", &f, &err), BAD, "N = %llu",
                     (unsigned long long)cases[c].n);
        cr_expect(strstr(err.message, cases[c].needle) != NULL, "N = %llu: %s", (unsigned long long)cases[c].n,
                  err.message);
    }
}

JB_TEST(safetensors, rejects_non_json_and_non_objects) {
    expect_header("{not json}", 0, BAD, "invalid JSON");
    expect_header("[1, 2, {}]", 0, BAD, "does not end with '}'");
    expect_header("{\"a\":1}\n", 0, BAD, "does not end with '}'");
    expect_header("{\"a\":{}}x", 0, BAD, "does not end with '}'");
    expect_header("{\"a\":\"\xff\xfe\"}", 0, BAD, "invalid JSON"); /* invalid UTF-8 */
    expect_header("{\"a\":\"\\u0000\"}", 0, BAD, "invalid JSON"); /* NUL inside a string */
    expect_header("x{}", 0, BAD, "invalid JSON");
}

JB_TEST(safetensors, rejects_duplicates_and_unknown_fields) {
    expect_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                  "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                  8, BAD, "duplicate");
    expect_header("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, BAD,
                  "duplicate");
    expect_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"extra\":1}}", 4, BAD,
                  "unknown field \"extra\"");
    expect_header("{\"a\":[1]}", 0, BAD, "expected an object");
    expect_header("{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, BAD, "empty name");
}

JB_TEST(safetensors, rejects_bad_metadata) {
    expect_header("{\"__metadata__\":[\"x\"]}", 0, BAD, "__metadata__");
    expect_header("{\"__metadata__\":{\"k\":1}}", 0, BAD, "__metadata__ \"k\"");
}

JB_TEST(safetensors, rejects_bad_dtype) {
    expect_header("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, BAD, "missing field \"dtype\"");
    expect_header("{\"a\":{\"dtype\":\"F4\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, BAD, "unknown dtype \"F4\"");
    expect_header("{\"a\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, BAD, "unknown dtype");
    expect_header("{\"a\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, BAD, "dtype is an integer");
}

JB_TEST(safetensors, rejects_bad_shapes) {
    expect_header("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, BAD, "missing field \"shape\"");
    expect_header("{\"a\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,4]}}", 4, BAD, "expected an array");
    expect_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, BAD, "shape[0]");
    expect_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4, BAD, "shape[0]");
    expect_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4, BAD, "shape[0]");
    expect_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, BAD,
                  "rank 9");
    expect_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,4]}}",
                  4, BAD, "element count overflows");
    expect_header("{\"a\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,4]}}", 4, BAD,
                  "byte size overflows");
    expect_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,4]}}", 4, BAD,
                  "invalid JSON");
}

JB_TEST(safetensors, rejects_bad_offsets) {
    expect_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, BAD, "missing field \"data_offsets\"");
    expect_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, BAD, "two non-negative");
    expect_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4, BAD, "two non-negative");
    expect_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4, BAD, "two non-negative");
    expect_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, BAD, "end before");
    expect_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, BAD, "needs 8");
}

JB_TEST(safetensors, rejects_holes_overlaps_and_length_mismatch) {
    /* starts after 0 */
    expect_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, BAD, "hole");
    /* gap between tensors */
    expect_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                  "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                  12, BAD, "hole");
    /* two tensors over the same bytes */
    expect_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                  "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                  8, BAD, "overlap");
    expect_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                  "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                  4, BAD, "overlap");
    /* data shorter or longer than the tensors */
    expect_header(OK_HEADER, 4, BAD, "truncated file");
    expect_header(OK_HEADER, 12, BAD, "trailing bytes");
    expect_header("{}", 1, BAD, "trailing bytes");
}

JB_TEST(safetensors, rejects_overlong_names) {
    char name[1100];
    memset(name, 'x', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    char header[1300];
    snprintf(header, sizeof header, "{\"%s\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", name);
    expect_header(header, 4, BAD, "limit");
}

/* ---- truncation and corruption ---------------------------------------------------------------- */

JB_TEST(safetensors, truncation_at_every_byte_is_a_clean_error) {
    char *path = tu_fixture("safetensors/mixed.safetensors");
    size_t n;
    uint8_t *full = tu_read_file(path, &n);
    for (size_t len = 0; len < n; len++) {
        uint8_t *copy = malloc(len ? len : 1); /* exact size, so ASan sees any over-read */
        memcpy(copy, full, len);
        jb_st_file f;
        jamba_error err = {0};
        jamba_status st = jb_st_parse_memory(copy, len, "truncated", &f, &err);
        cr_assert_eq(st, BAD, "length %zu: status %d", len, st);
        cr_assert(err.message[0] != '\0');
        free(copy);
    }
    free(full);
    free(path);
}

JB_TEST(safetensors, truncated_files_on_disk_fail_before_mapping) {
    char *src = tu_fixture("safetensors/mixed.safetensors");
    size_t n;
    uint8_t *full = tu_read_file(src, &n);
    char *dir = tu_tmpdir();
    char *path = tu_path(dir, "t.safetensors");
    for (size_t len = 0; len < n; len += 7) {
        tu_write_file(path, full, len);
        jb_st_file f;
        jamba_error err = {0};
        cr_assert_eq(jb_st_open(path, path, &f, &err), BAD, "length %zu", len);
        cr_assert(strstr(err.message, path) != NULL, "%s", err.message);
    }
    tu_rmtree(dir);
    free(path);
    free(dir);
    free(full);
    free(src);
}

static uint64_t xorshift(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

JB_TEST(safetensors, random_header_byte_flips_never_crash) {
    char *path = tu_fixture("safetensors/mixed.safetensors");
    size_t n;
    uint8_t *full = tu_read_file(path, &n);
    uint64_t header_end = 8 + ((uint64_t)full[0] | (uint64_t)full[1] << 8);
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    int accepted = 0;
    for (int iter = 0; iter < 4000; iter++) {
        uint8_t *copy = malloc(n);
        memcpy(copy, full, n);
        int flips = 1 + (int)(xorshift(&seed) % 3);
        for (int k = 0; k < flips; k++) {
            uint64_t pos = xorshift(&seed) % header_end;
            copy[pos] ^= (uint8_t)(1u << (xorshift(&seed) % 8));
        }
        jb_st_file f;
        jamba_error err = {0};
        jamba_status st = jb_st_parse_memory(copy, n, "flipped", &f, &err);
        cr_assert(st == JAMBA_OK || st == BAD, "iteration %d: status %d", iter, st);
        if (st == JAMBA_OK) { /* a flip that kept the file valid: the invariants must still hold */
            accepted++;
            uint64_t pos = 0;
            for (int64_t i = 0; i < f.n_tensors; i++) {
                cr_assert_eq(f.tensors[i].begin, pos);
                pos = f.tensors[i].end;
            }
            cr_assert_eq(f.data_start + pos, n);
        }
        jb_st_close(&f);
        free(copy);
    }
    cr_log_info("%d of 4000 corrupted headers were still valid files", accepted);
    free(full);
    free(path);
}

/* ---- writer ----------------------------------------------------------------------------------- */

JB_TEST(safetensors, writer_round_trip) {
    char *dir = tu_tmpdir();
    char *path = tu_path(dir, "w.safetensors");
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t b[3] = {0x3f80, 0x4000, 0xc000};
    jb_st_out_tensor ts[3] = {
        {"x.weight", JAMBA_DTYPE_F32, 2, {2, 3}, a},
        {"y", JAMBA_DTYPE_BF16, 1, {3}, b},
        {"z", JAMBA_DTYPE_F32, 2, {0, 5}, NULL},
    };
    jamba_error err = {0};
    cr_assert_eq(jb_st_write(path, ts, 3, NULL, &err), JAMBA_OK, "%s", err.message);
    jb_st_file f;
    cr_assert_eq(jb_st_open(path, path, &f, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(f.n_tensors, 3);
    cr_assert_eq(f.data_start % 8, 0, "header padded to 8 bytes");
    cr_assert_eq(memcmp(jb_st_tensor_data(&f, find(&f, "x.weight")), a, sizeof a), 0);
    cr_assert_eq(memcmp(jb_st_tensor_data(&f, find(&f, "y")), b, sizeof b), 0);
    cr_assert_eq(find(&f, "z")->n_bytes, 0);
    jb_st_close(&f);

    jb_st_out_tensor dup[2] = {ts[0], ts[0]};
    cr_assert_eq(jb_st_write(path, dup, 2, NULL, &err), JAMBA_ERR_INVALID_ARGUMENT);
    char *missing_dir = tu_path(dir, "no/such/dir.safetensors");
    cr_assert_eq(jb_st_write(missing_dir, ts, 1, NULL, &err), JAMBA_ERR_IO);
    cr_assert(strstr(err.message, "cannot create") != NULL, "%s", err.message);
    tu_rmtree(dir);
    free(missing_dir);
    free(path);
    free(dir);
}
