/*
 * tokenizer.c — jamba_tokenizer: choosing and reading the tokenizer files of a model folder, the
 * BOS/EOS settings of tokenizer_config.json and generation_config.json, and simple queries.
 */
#include "tokenizer/tokenizer.h"

#include "ckpt/json.h"
#include "base/alloc.h"
#include "base/checked.h"
#include "base/error.h"
#include "base/file.h"

#include <string.h>
#include <sys/stat.h>

#define MAX_TOKENIZER_JSON_BYTES (256ull << 20)
#define MAX_TOKENIZER_MODEL_BYTES (64ull << 20)
#define MAX_SIDE_CONFIG_BYTES (16ull << 20)

/* ---- storage shared by the readers ------------------------------------------------------------ */

jamba_status jb_tokenizer_alloc_pieces(jamba_tokenizer *t, int64_t n, uint64_t bytes, const char *label,
                                       jamba_error *err) {
    t->n_vocab = n;
    t->storage = jb_malloc(bytes ? (size_t)bytes : 1);
    t->piece = jb_calloc((size_t)n, sizeof *t->piece);
    t->piece_len = jb_calloc((size_t)n, sizeof *t->piece_len);
    t->score = jb_calloc((size_t)n, sizeof *t->score);
    t->type = jb_calloc((size_t)n, sizeof *t->type);
    if (bytes > SIZE_MAX || t->storage == NULL || t->piece == NULL || t->piece_len == NULL || t->score == NULL ||
        t->type == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory for %lld pieces", label, (long long)n);
    return JAMBA_OK;
}

/* "<0xNN>" with two uppercase hex digits → NN, else -1. */
static int byte_piece_value(const char *s, size_t len) {
    if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
        return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

jamba_status jb_tokenizer_index(jamba_tokenizer *t, const char *label, jamba_error *err) {
    if (!jb_strmap_init(&t->vocab, t->n_vocab))
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", label);
    for (int b = 0; b < 256; b++)
        t->byte_id[b] = -1;
    for (int64_t id = 0; id < t->n_vocab; id++) {
        if (!jb_strmap_put(&t->vocab, t->piece[id], t->piece_len[id], (int32_t)id))
            return jb_fail(err, JAMBA_ERR_BAD_TOKENIZER, "%s: token \"%.60s\" appears twice (id %lld)", label,
                           t->piece[id], (long long)id);
        int v = byte_piece_value(t->piece[id], t->piece_len[id]);
        bool spm_byte = t->kind == JB_TOK_SPM && t->type[id] == JB_PIECE_BYTE;
        if (spm_byte && v < 0)
            return jb_fail(err, JAMBA_ERR_BAD_TOKENIZER, "%s: byte piece %lld is \"%.20s\", not <0xNN>", label,
                           (long long)id, t->piece[id]);
        if (v >= 0 && (t->kind == JB_TOK_HF || spm_byte)) {
            if (t->byte_id[v] >= 0)
                return jb_fail(err, JAMBA_ERR_BAD_TOKENIZER, "%s: two pieces for byte 0x%02X", label, v);
            t->byte_id[v] = (int32_t)id;
            t->type[id] = JB_PIECE_BYTE;
        }
    }
    return JAMBA_OK;
}

void jb_tokenizer_release(jamba_tokenizer *t) {
    for (int64_t i = 0; i < t->n_norm; i++) {
        jb_free(t->norm[i].from);
        jb_free(t->norm[i].to);
        jb_free(t->norm[i].pattern);
        pcre2_code_free(t->norm[i].re);
    }
    for (int64_t i = 0; i < t->n_pre; i++) {
        pcre2_code_free(t->pre[i].re);
        jb_free(t->pre[i].pattern);
        jb_free(t->pre[i].literal);
    }
    for (int64_t i = 0; i < t->n_dec; i++) {
        jb_free(t->dec[i].from);
        jb_free(t->dec[i].to);
    }
    jb_free(t->norm);
    jb_free(t->pre);
    jb_free(t->dec);
    jb_strmap_free(&t->vocab);
    jb_u64map_free(&t->merges);
    jb_free(t->merge_result);
    jb_free(t->added);
    jb_free(t->trie);
    jb_free(t->storage);
    jb_free(t->piece);
    jb_free(t->piece_len);
    jb_free(t->score);
    jb_free(t->type);
    jb_free(t->source);
    memset(t, 0, sizeof *t);
}

/* ---- the GPT-2 byte alphabet ------------------------------------------------------------------ */

/* Printable Latin-1 bytes map to themselves; the other 68 bytes to U+0100 + their rank among them. */
static bool byte_is_printable(int b) { return (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae; }

uint32_t jb_bytelevel_char(uint8_t byte) {
    if (byte_is_printable(byte))
        return byte;
    uint32_t rank = 0;
    for (int b = 0; b < byte; b++)
        rank += !byte_is_printable(b);
    return 0x100 + rank;
}

int jb_bytelevel_byte(uint32_t cp) {
    if (cp < 0x100)
        return byte_is_printable((int)cp) ? (int)cp : -1;
    uint32_t rank = cp - 0x100;
    for (int b = 0; b < 256; b++)
        if (!byte_is_printable(b) && rank-- == 0)
            return b;
    return -1;
}

/* ---- side configs: tokenizer_config.json, generation_config.json ------------------------------ */

/* Whether something exists at `path`. Not only regular files: a FIFO or folder named tokenizer.json is then
 * refused by name when opened, instead of being passed over for another file or silently ignored. */
static bool path_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

static jamba_status read_json_file(const char *path, json_t **out, jamba_error *err) {
    char *text;
    size_t len;
    JB_TRY(jb_read_regular_file(path, path, MAX_SIDE_CONFIG_BYTES, JAMBA_ERR_BAD_TOKENIZER, &text, &len, err));
    /* transformers writes model_max_length = 1e30 as an integer: read numbers as reals here */
    jamba_status st = jb_json_parse_object_flags(text, len, path, JAMBA_ERR_BAD_TOKENIZER, JSON_DECODE_INT_AS_REAL, out,
                                                 err);
    jb_free(text);
    return st;
}

/* bos_token / eos_token: a string, or an object whose "content" is the string. */
static int32_t token_setting(const jamba_tokenizer *t, const json_t *v) {
    if (json_is_object(v))
        v = json_object_get(v, "content");
    if (!json_is_string(v))
        return -1;
    return jb_strmap_get(&t->vocab, json_string_value(v), json_string_length(v));
}

static void add_eos(jamba_tokenizer *t, int64_t id) {
    if (id < 0 || id >= t->n_vocab || t->n_eos >= JAMBA_MAX_EOS_IDS)
        return;
    for (int64_t i = 0; i < t->n_eos; i++)
        if (t->eos_ids[i] == id)
            return;
    t->eos_ids[t->n_eos++] = (int32_t)id;
}

static jamba_status apply_tokenizer_config(jamba_tokenizer *t, const char *path, jamba_error *err) {
    json_t *cfg;
    JB_TRY(read_json_file(path, &cfg, err));
    const json_t *add_bos = json_object_get(cfg, "add_bos_token"), *add_eos_v = json_object_get(cfg, "add_eos_token");
    int32_t bos = token_setting(t, json_object_get(cfg, "bos_token"));
    int32_t eos = token_setting(t, json_object_get(cfg, "eos_token"));
    if (bos >= 0)
        t->bos_id = bos;
    if (json_is_boolean(add_bos))
        t->add_bos = json_is_true(add_bos) && t->bos_id >= 0;
    if (eos >= 0) { /* the configured EOS first, then the others */
        int32_t rest[JAMBA_MAX_EOS_IDS];
        int64_t n_rest = 0;
        for (int64_t i = 0; i < t->n_eos; i++)
            if (t->eos_ids[i] != eos && n_rest < JAMBA_MAX_EOS_IDS - 1)
                rest[n_rest++] = t->eos_ids[i];
        t->eos_ids[0] = eos;
        memcpy(t->eos_ids + 1, rest, (size_t)n_rest * sizeof *rest);
        t->n_eos = n_rest + 1;
    }
    if (json_is_boolean(add_eos_v))
        t->add_eos = json_is_true(add_eos_v) && t->n_eos > 0;
    json_decref(cfg);
    return JAMBA_OK;
}

/* A token id read as a real (see read_json_file), or -1. */
static int64_t id_value(const json_t *v) {
    double d = json_is_number(v) ? json_number_value(v) : -1;
    return d >= 0 && d < 2147483648.0 && d == (double)(int64_t)d ? (int64_t)d : -1;
}

static jamba_status apply_generation_config(jamba_tokenizer *t, const char *path, jamba_error *err) {
    json_t *cfg;
    JB_TRY(read_json_file(path, &cfg, err));
    const json_t *eos = json_object_get(cfg, "eos_token_id");
    add_eos(t, id_value(eos));
    for (size_t i = 0; json_is_array(eos) && i < json_array_size(eos); i++)
        add_eos(t, id_value(json_array_get(eos, i)));
    json_decref(cfg);
    return JAMBA_OK;
}

/* ---- loading ---------------------------------------------------------------------------------- */

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static jamba_status read_file_into(jamba_tokenizer *t, const char *path, jamba_error *err) {
    bool json = ends_with(path, ".json");
    char *data;
    size_t len;
    JB_TRY(jb_read_regular_file(path, path, json ? MAX_TOKENIZER_JSON_BYTES : MAX_TOKENIZER_MODEL_BYTES,
                                JAMBA_ERR_BAD_TOKENIZER, &data, &len, err));
    jamba_status st = json ? jb_tokenizer_read_hf(t, data, len, path, err)
                           : jb_tokenizer_read_spm(t, (const uint8_t *)data, len, path, err);
    jb_free(data);
    return st;
}

/* The tokenizer file for `path` (a folder or a file) and the folder holding the side configs. */
static jamba_status locate(const char *path, char **file, char **dir, jamba_error *err) {
    struct stat sb;
    *file = *dir = NULL;
    if (stat(path, &sb) != 0)
        return jb_fail(err, JAMBA_ERR_IO, "%s: no such file or folder", path);
    if (S_ISDIR(sb.st_mode)) {
        *dir = jb_strdup(path);
        char *json = jb_asprintf("%s/tokenizer.json", path), *model = jb_asprintf("%s/tokenizer.model", path);
        if (json && path_exists(json)) {
            *file = json;
            json = NULL;
        } else if (model && path_exists(model)) {
            *file = model;
            model = NULL;
        }
        jb_free(json);
        jb_free(model);
        if (*dir == NULL)
            return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
        if (*file == NULL)
            return jb_fail(err, JAMBA_ERR_IO, "%s: no tokenizer.json or tokenizer.model", path);
        return JAMBA_OK;
    }
    *file = jb_strdup(path);
    const char *slash = strrchr(path, '/');
    *dir = slash ? jb_strndup(path, (size_t)(slash - path)) : jb_strdup(".");
    if (*file == NULL || *dir == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    return JAMBA_OK;
}

static jamba_status apply_side_configs(jamba_tokenizer *t, const char *dir, jamba_error *err) {
    static const char *const names[] = {"tokenizer_config.json", "generation_config.json"};
    jamba_status st = JAMBA_OK;
    for (int i = 0; i < 2 && st == JAMBA_OK; i++) {
        char *p = jb_asprintf("%s/%s", dir, names[i]);
        if (p == NULL)
            st = jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", dir);
        else if (path_exists(p))
            st = i == 0 ? apply_tokenizer_config(t, p, err) : apply_generation_config(t, p, err);
        jb_free(p);
    }
    return st;
}

jamba_status jamba_tokenizer_load(const char *path, jamba_tokenizer **out, jamba_error *err) {
    if (out == NULL || path == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_tokenizer_load: NULL argument");
    *out = NULL;
    jamba_tokenizer *t = jb_calloc(1, sizeof *t);
    if (t == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    t->bos_id = -1;
    t->unk_id = -1;
    char *file = NULL, *dir = NULL;
    jamba_status st = locate(path, &file, &dir, err);
    if (st == JAMBA_OK)
        st = read_file_into(t, file, err);
    if (st == JAMBA_OK)
        st = apply_side_configs(t, dir, err);
    if (st == JAMBA_OK)
        st = jb_tokenizer_build_matcher(t, err);
    jb_free(dir);
    if (st != JAMBA_OK) {
        jb_free(file);
        jamba_tokenizer_free(t);
        return st;
    }
    t->source = file;
    *out = t;
    return JAMBA_OK;
}

void jamba_tokenizer_free(jamba_tokenizer *t) {
    if (t == NULL)
        return;
    jb_tokenizer_release(t);
    jb_free(t);
}

int64_t jamba_tokenizer_vocab_size(const jamba_tokenizer *t) { return t ? t->n_vocab : 0; }
int32_t jamba_tokenizer_bos(const jamba_tokenizer *t) { return t ? t->bos_id : -1; }

const int32_t *jamba_tokenizer_eos(const jamba_tokenizer *t, int64_t *n) {
    if (n)
        *n = t ? t->n_eos : 0;
    return t ? t->eos_ids : NULL;
}

int32_t jamba_tokenizer_find(const jamba_tokenizer *t, const char *piece) {
    return t && piece ? jb_strmap_get(&t->vocab, piece, strlen(piece)) : -1;
}

const char *jamba_tokenizer_piece(const jamba_tokenizer *t, int32_t id) {
    return t && id >= 0 && id < t->n_vocab ? t->piece[id] : NULL;
}

/* ---- how far a text can grow, and the ids bound ----------------------------------------------- */

/* Saturating arithmetic on the linear bounds x.a * n + x.b. */
static uint64_t sat_mul(uint64_t a, uint64_t b) {
    uint64_t r;
    return jb_mul_u64(a, b, &r) ? r : UINT64_MAX;
}
static uint64_t sat_add(uint64_t a, uint64_t b) {
    uint64_t r;
    return jb_add_u64(a, b, &r) ? r : UINT64_MAX;
}
static jb_growth lin_scale(jb_growth x, uint64_t k) { return (jb_growth){sat_mul(x.a, k), sat_mul(x.b, k)}; }
static jb_growth lin_add(jb_growth x, jb_growth y) { return (jb_growth){sat_add(x.a, y.a), sat_add(x.b, y.b)}; }

/* A normalizer step on the one string of a stretch. */
static jb_growth grow_normalized(const jb_norm_step *s, jb_growth bytes) {
    if (s->kind == JB_NORM_PREPEND) /* only to a non-empty text */
        return (jb_growth){bytes.a, sat_add(bytes.b, s->to_len)};
    if (s->re == NULL) { /* at most n / from_len matches, each turning from_len bytes into to_len */
        uint64_t k = (s->to_len + s->from_len - 1) / s->from_len;
        return lin_scale(bytes, k > 1 ? k : 1);
    }
    /* matches start at distinct positions and may be empty: at most n + 1 of them, each adding to_len */
    jb_growth out = lin_scale(bytes, sat_add(1, s->to_len));
    out.b = sat_add(out.b, s->to_len);
    return out;
}

/* A pre-tokenizer step on a list of words: `bytes` bounds their total length, `words` their number. */
static void grow_pretokenized(const jb_pre_step *s, jb_growth *bytes, jb_growth *words) {
    switch (s->kind) {
    case JB_PRE_METASPACE: {
        jb_growth out = lin_scale(*bytes, s->replacement_len); /* a space becomes the replacement */
        if (s->prepend == JB_PREPEND_ALWAYS)                   /* which may also start every word */
            out = lin_add(out, lin_scale(*words, s->replacement_len));
        else if (s->prepend == JB_PREPEND_FIRST)
            out.b = sat_add(out.b, s->replacement_len);
        *bytes = out;
        if (s->split)
            *words = out; /* pieces are non-empty */
        return;
    }
    case JB_PRE_SPLIT:
    case JB_PRE_DIGITS:
        *words = *bytes;
        return;
    case JB_PRE_BYTELEVEL: {
        jb_growth spaced = s->add_prefix_space ? lin_add(*bytes, *words) : *bytes; /* a space before each word */
        if (s->use_regex)
            *words = spaced;
        *bytes = lin_scale(spaced, 2); /* every byte becomes a character of one or two bytes */
        return;
    }
    }
}

jb_growth jb_tokenizer_growth(const jamba_tokenizer *t) {
    if (t->kind == JB_TOK_SPM) /* escaped spaces become U+2581 (3 bytes); one dummy prefix per input */
        return (jb_growth){t->escape_whitespaces ? 3 : 1, 3};
    jb_growth bytes = {1, 0}, words = {0, 1};
    for (int64_t i = 0; i < t->n_norm; i++)
        bytes = grow_normalized(&t->norm[i], bytes);
    for (int64_t i = 0; i < t->n_pre; i++)
        grow_pretokenized(&t->pre[i], &bytes, &words);
    return bytes;
}

/* How many stretches of text an input of `bytes` (sanitized) bytes can have around its added tokens. */
static uint64_t max_stretches(const jamba_tokenizer *t, uint64_t bytes) {
    if (t->kind == JB_TOK_SPM || t->n_added == 0) /* SPM's constant (the dummy prefix) comes once per input */
        return 1;
    uint64_t shortest = UINT64_MAX;
    for (int64_t i = 0; i < t->n_added; i++)
        shortest = t->added[i].len < shortest ? t->added[i].len : shortest;
    return bytes / (shortest ? shortest : 1) + 1;
}

int64_t jamba_tokenizer_max_ids(const jamba_tokenizer *t, size_t len) {
    if (t == NULL)
        return 0;
    /* S bytes after sanitizing (U+FFFD is 3 bytes). Every byte of the words BPE sees gives at most one id
     * (a symbol, a byte-fallback token or a fused unk), so a stretch of n > 0 bytes gives at most a*n + b;
     * an added token takes at least one byte for its one id. With a >= 1 that is at most a*S ids for all
     * bytes, b per non-empty stretch, and BOS/EOS. */
    uint64_t bytes = sat_mul(3, len);
    jb_growth g = jb_tokenizer_growth(t);
    uint64_t ids = sat_add(sat_add(sat_mul(g.a, bytes), sat_mul(g.b, max_stretches(t, bytes))), 2);
    return ids > (uint64_t)(INT64_MAX / 8) ? INT64_MAX / 8 : (int64_t)ids;
}
