/*
 * test_checkpoint.c — model folders: single file vs sharded (written by transformers' save_pretrained),
 * the shard index's own validation, and its cross-checks against the shards.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ckpt/checkpoint.h"
#include "tests/support/testutil.h"

#define BAD JAMBA_ERR_BAD_CHECKPOINT

static jamba_status open_dir(const char *dir, jb_checkpoint *c, bool *found, jamba_error *err) {
    return jb_checkpoint_open(dir, found, c, err);
}

JB_TEST(checkpoint, sharded_and_single_hold_the_same_tensors) {
    char *single = tu_fixture("models/tiny-hf"), *sharded = tu_fixture("models/tiny-hf-sharded");
    jb_checkpoint a, b;
    bool found;
    jamba_error err = {0};
    cr_assert_eq(open_dir(single, &a, &found, &err), JAMBA_OK, "%s", err.message);
    cr_assert(found);
    cr_assert_eq(open_dir(sharded, &b, &found, &err), JAMBA_OK, "%s", err.message);
    cr_assert(found);
    cr_assert_eq(a.n_shards, 1);
    cr_assert_eq(b.n_shards, 17);
    cr_assert_eq(a.n_entries, b.n_entries);
    cr_assert_eq(a.total_bytes, b.total_bytes);
    cr_assert_eq(a.total_bytes, 85036); /* metadata.total_size written by save_pretrained */
    for (int64_t i = 0; i < a.n_entries; i++) {
        const jb_ckpt_entry *ea = &a.entries[i];
        const jb_ckpt_entry *eb = jb_checkpoint_find(&b, ea->name);
        cr_assert_not_null(eb, "%s missing from the sharded copy", ea->name);
        cr_assert_eq(ea->tensor->n_bytes, eb->tensor->n_bytes);
        cr_assert_eq(memcmp(jb_st_tensor_data(&a.shards[ea->shard], ea->tensor),
                            jb_st_tensor_data(&b.shards[eb->shard], eb->tensor), ea->tensor->n_bytes),
                     0, "%s differs", ea->name);
    }
    cr_assert_null(jb_checkpoint_find(&a, "no.such.tensor"));
    jb_checkpoint_close(&a);
    jb_checkpoint_close(&b);
    free(single);
    free(sharded);
}

JB_TEST(checkpoint, folder_without_weights) {
    char *dir = tu_tmpdir();
    jb_checkpoint c;
    bool found = true;
    cr_assert_eq(open_dir(dir, &c, &found, NULL), JAMBA_OK);
    cr_assert(!found);
    cr_assert_eq(c.n_entries, 0);
    jb_checkpoint_close(&c);
    tu_rmtree(dir);
    free(dir);
}

JB_TEST(checkpoint, single_file_wins_over_index) {
    char *src = tu_fixture("models/tiny-hf");
    char *dir = tu_clone_model(src);
    char *index = tu_path(dir, JB_INDEX_FILE);
    tu_write_text(index, "this index is never read");
    jb_checkpoint c;
    bool found;
    jamba_error err = {0};
    cr_assert_eq(open_dir(dir, &c, &found, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(c.n_shards, 1);
    jb_checkpoint_close(&c);
    tu_rmtree(dir);
    free(index);
    free(dir);
    free(src);
}

/* ---- the index on its own ------------------------------------------------------------------- */

static void expect_index_reject(const char *json, const char *needle) {
    jb_st_index idx;
    jamba_error err = {0};
    cr_expect_eq(jb_st_index_parse(json, strlen(json), "model.safetensors.index.json", &idx, &err), BAD, "%s", json);
    cr_expect(strstr(err.message, "model.safetensors.index.json") != NULL, "%s", err.message);
    cr_expect(strstr(err.message, needle) != NULL, "'%s' should contain '%s'", err.message, needle);
}

JB_TEST(index, parses_and_sorts) {
    const char *json = "{\"metadata\":{\"total_size\":24},\"weight_map\":{\"b\":\"s2.safetensors\","
                       "\"a\":\"s1.safetensors\",\"c\":\"s2.safetensors\"}}";
    jb_st_index idx;
    jamba_error err = {0};
    cr_assert_eq(jb_st_index_parse(json, strlen(json), "i", &idx, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(idx.n, 3);
    cr_assert_eq(idx.n_shards, 2);
    cr_assert_str_eq(idx.names[0], "a");
    cr_assert_str_eq(idx.shards[idx.shard_of[0]], "s1.safetensors");
    cr_assert_str_eq(idx.shards[idx.shard_of[2]], "s2.safetensors");
    cr_assert(idx.has_total_size);
    cr_assert_eq(idx.total_size, 24);
    jb_st_index_free(&idx);
}

JB_TEST(index, rejects_bad_shapes_and_paths) {
    expect_index_reject("{", "invalid JSON");
    expect_index_reject("[]", "top-level");
    expect_index_reject("{\"metadata\":{}}", "\"weight_map\" is missing");
    expect_index_reject("{\"weight_map\":[]}", "\"weight_map\" is an array");
    expect_index_reject("{\"weight_map\":{\"a\":1}}", "weight_map[\"a\"] is an integer");
    expect_index_reject("{\"weight_map\":{\"a\":\"../x.safetensors\"}}", "not a plain file name");
    expect_index_reject("{\"weight_map\":{\"a\":\"/etc/passwd\"}}", "not a plain file name");
    expect_index_reject("{\"weight_map\":{\"a\":\"sub/x.safetensors\"}}", "not a plain file name");
    expect_index_reject("{\"weight_map\":{\"a\":\"sub\\\\x.safetensors\"}}", "not a plain file name");
    expect_index_reject("{\"weight_map\":{\"a\":\"..\"}}", "not a plain file name");
    expect_index_reject("{\"weight_map\":{\"a\":\"\"}}", "not a plain file name");
    expect_index_reject("{\"weight_map\":{\"a\":\"x\",\"a\":\"y\"}}", "duplicate");
    expect_index_reject("{\"weight_map\":{\"\":\"x\"}}", "empty tensor name");
    expect_index_reject("{\"metadata\":{\"total_size\":-1},\"weight_map\":{}}", "total_size");
    expect_index_reject("{\"metadata\":{\"total_size\":\"12\"},\"weight_map\":{}}", "total_size");
    expect_index_reject("{\"metadata\":7,\"weight_map\":{}}", "\"metadata\" is an integer");
}

/* ---- the index against the shards ----------------------------------------------------------- */

typedef struct sharded_copy {
    char *dir;
    char *index_path;
    json_t *index; /* parsed index, edited by the test and written back */
} sharded_copy;

static sharded_copy clone_sharded(void) {
    char *src = tu_fixture("models/tiny-hf-sharded");
    sharded_copy s = {.dir = tu_clone_model(src)};
    s.index_path = tu_path(s.dir, JB_INDEX_FILE);
    json_error_t jerr;
    s.index = json_load_file(s.index_path, 0, &jerr);
    cr_assert_not_null(s.index, "%s", jerr.text);
    free(src);
    return s;
}

static json_t *weight_map(sharded_copy *s) { return json_object_get(s->index, "weight_map"); }

/* Write the edited index, open the folder, expect a BAD_CHECKPOINT message containing `needle`. */
static void expect_folder_reject(sharded_copy *s, jamba_status want, const char *needle) {
    cr_assert_eq(json_dump_file(s->index, s->index_path, JSON_INDENT(1)), 0);
    jb_checkpoint c;
    bool found;
    jamba_error err = {0};
    cr_expect_eq(open_dir(s->dir, &c, &found, &err), want, "%s", err.message);
    cr_expect(strstr(err.message, needle) != NULL, "'%s' should contain '%s'", err.message, needle);
    jb_checkpoint_close(&c);
    json_decref(s->index);
    tu_rmtree(s->dir);
    free(s->index_path);
    free(s->dir);
}

JB_TEST(index, unmodified_copy_loads) {
    sharded_copy s = clone_sharded();
    cr_assert_eq(json_dump_file(s.index, s.index_path, JSON_INDENT(1)), 0);
    jb_checkpoint c;
    bool found;
    jamba_error err = {0};
    cr_assert_eq(open_dir(s.dir, &c, &found, &err), JAMBA_OK, "%s", err.message);
    jb_checkpoint_close(&c);
    json_decref(s.index);
    tu_rmtree(s.dir);
    free(s.index_path);
    free(s.dir);
}

JB_TEST(index, missing_shard_file) {
    sharded_copy s = clone_sharded();
    char *shard = tu_path(s.dir, "model-00005-of-00017.safetensors");
    cr_assert_eq(unlink(shard), 0);
    free(shard);
    expect_folder_reject(&s, JAMBA_ERR_IO, "model-00005-of-00017.safetensors: cannot open");
}

JB_TEST(index, tensor_listed_for_the_wrong_shard) {
    sharded_copy s = clone_sharded();
    json_object_set_new(weight_map(&s), "model.embed_tokens.weight", json_string("model-00017-of-00017.safetensors"));
    expect_folder_reject(&s, BAD, "\"model.embed_tokens.weight\" is listed for model-00017-of-00017.safetensors but "
                                  "stored in");
}

JB_TEST(index, tensor_not_listed) {
    sharded_copy s = clone_sharded();
    json_object_del(weight_map(&s), "model.layers.0.mamba.D");
    expect_folder_reject(&s, BAD, "\"model.layers.0.mamba.D\" is stored in");
}

JB_TEST(index, listed_tensor_absent_from_its_shard) {
    sharded_copy s = clone_sharded();
    json_object_set_new(weight_map(&s), "model.ghost.weight", json_string("model-00001-of-00017.safetensors"));
    expect_folder_reject(&s, BAD, "\"model.ghost.weight\" is listed for model-00001-of-00017.safetensors but that "
                                  "file does not hold it");
}

JB_TEST(index, wrong_total_size) {
    sharded_copy s = clone_sharded();
    json_object_set_new(json_object_get(s.index, "metadata"), "total_size", json_integer(85037));
    expect_folder_reject(&s, BAD, "total_size is 85037 but the shards hold 85036");
}

JB_TEST(index, path_traversal_is_never_opened) {
    sharded_copy s = clone_sharded();
    json_object_set_new(weight_map(&s), "model.embed_tokens.weight", json_string("../tiny-hf/model.safetensors"));
    expect_folder_reject(&s, BAD, "not a plain file name");
}

JB_TEST(index, tensor_stored_in_two_shards) {
    sharded_copy s = clone_sharded();
    /* An extra shard holding a second copy of the embedding, plus a tensor of its own so it gets opened. */
    float data[2] = {1, 2};
    jb_st_out_tensor ts[2] = {{"model.embed_tokens.weight", JAMBA_DTYPE_F32, 1, {2}, data},
                              {"model.extra", JAMBA_DTYPE_F32, 1, {2}, data}};
    char *extra = tu_path(s.dir, "extra.safetensors");
    cr_assert_eq(jb_st_write(extra, ts, 2, NULL, NULL), JAMBA_OK);
    free(extra);
    json_object_set_new(weight_map(&s), "model.extra", json_string("extra.safetensors"));
    expect_folder_reject(&s, BAD, "\"model.embed_tokens.weight\" is stored in both");
}

JB_TEST(index, corrupt_shard_is_named) {
    sharded_copy s = clone_sharded();
    char *shard = tu_path(s.dir, "model-00003-of-00017.safetensors");
    size_t n;
    uint8_t *bytes = tu_read_file(shard, &n);
    tu_write_file(shard, bytes, n - 1);
    free(bytes);
    free(shard);
    expect_folder_reject(&s, BAD, "model-00003-of-00017.safetensors: tensors cover");
}
