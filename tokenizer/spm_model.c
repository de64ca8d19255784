/*
 * spm_model.c — SentencePiece tokenizer.model (a serialized ModelProto) → jamba_tokenizer.
 *
 * A minimal, strict protobuf reader: varints of at most 10 bytes, length-delimited fields that stay inside
 * their message, only wire types 0, 1, 2 and 5, known fields with the expected wire type. Read:
 *   ModelProto      1 pieces (repeated SentencePiece), 2 trainer_spec, 3 normalizer_spec
 *   SentencePiece   1 piece (string), 2 score (float), 3 type (enum, default NORMAL)
 *   TrainerSpec     3 model_type (BPE = 2 required), 24 treat_whitespace_as_suffix (unsupported),
 *                   35 byte_fallback, 40 unk_id, 41 bos_id, 42 eos_id
 *   NormalizerSpec  1 name, 2 precompiled_charsmap (must be empty), 3 add_dummy_prefix (default true),
 *                   4 remove_extra_whitespaces (default true; unsupported), 5 escape_whitespaces (default true)
 * Everything else is skipped after its framing is checked.
 */
#include <math.h>
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"
#include "tokenizer/tokenizer.h"
#include "base/utf8.h"

#define BAD JAMBA_ERR_BAD_TOKENIZER
#define MAX_PIECES (1 << 22)
#define MAX_PIECE_BYTES 1024

typedef struct pb {
    const uint8_t *p, *end;
} pb;

typedef struct pb_field {
    uint32_t number;
    int wire;
    uint64_t value;       /* varint and fixed fields */
    const uint8_t *data;  /* length-delimited */
    size_t len;
} pb_field;

static bool read_varint(pb *r, uint64_t *out) {
    uint64_t v = 0;
    for (int i = 0; i < 10; i++) {
        if (r->p >= r->end)
            return false;
        uint8_t b = *r->p++;
        if (i == 9 && b > 1)
            return false; /* more than 64 bits */
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *out = v;
            return true;
        }
    }
    return false;
}

/* Next field; 0 at the end of the message, -1 on malformed input. */
static int next_field(pb *r, pb_field *f) {
    if (r->p == r->end)
        return 0;
    uint64_t key;
    if (!read_varint(r, &key) || (key >> 3) == 0 || (key >> 3) > 0x1fffffff)
        return -1;
    f->number = (uint32_t)(key >> 3);
    f->wire = (int)(key & 7);
    switch (f->wire) {
    case 0:
        return read_varint(r, &f->value) ? 1 : -1;
    case 1:
        if (r->end - r->p < 8)
            return -1;
        memcpy(&f->value, r->p, 8);
        r->p += 8;
        return 1;
    case 2: {
        uint64_t len;
        if (!read_varint(r, &len) || len > (uint64_t)(r->end - r->p))
            return -1;
        f->data = r->p;
        f->len = (size_t)len;
        r->p += len;
        return 1;
    }
    case 5: {
        if (r->end - r->p < 4)
            return -1;
        uint32_t v;
        memcpy(&v, r->p, 4);
        f->value = v;
        r->p += 4;
        return 1;
    }
    default:
        return -1; /* groups (3, 4) and undefined wire types */
    }
}

static jamba_status wrong_wire(const char *label, const char *what, jamba_error *err) {
    return jb_fail(err, BAD, "%s: field %s has the wrong protobuf wire type", label, what);
}

typedef struct spm_options {
    uint64_t model_type;
    bool byte_fallback, suffix_whitespace;
    int64_t unk_id, bos_id, eos_id;
    bool dummy_prefix, remove_extra_ws, escape_ws;
    bool has_charsmap;
    char norm_name[64];
} spm_options;

static jamba_status read_trainer(const uint8_t *d, size_t n, const char *label, spm_options *o, jamba_error *err) {
    pb r = {d, d + n};
    pb_field f;
    int rc;
    while ((rc = next_field(&r, &f)) > 0) {
        bool varint_field = f.number == 3 || f.number == 24 || f.number == 35 || (f.number >= 40 && f.number <= 42);
        if (varint_field && f.wire != 0)
            return wrong_wire(label, "of trainer_spec", err);
        if (f.number == 3)
            o->model_type = f.value;
        else if (f.number == 24)
            o->suffix_whitespace = f.value != 0;
        else if (f.number == 35)
            o->byte_fallback = f.value != 0;
        else if (f.number == 40)
            o->unk_id = (int32_t)f.value; /* int32: negatives are 10-byte varints */
        else if (f.number == 41)
            o->bos_id = (int32_t)f.value;
        else if (f.number == 42)
            o->eos_id = (int32_t)f.value;
    }
    return rc < 0 ? jb_fail(err, BAD, "%s: malformed trainer_spec", label) : JAMBA_OK;
}

static jamba_status read_normalizer(const uint8_t *d, size_t n, const char *label, spm_options *o,
                                    jamba_error *err) {
    pb r = {d, d + n};
    pb_field f;
    int rc;
    while ((rc = next_field(&r, &f)) > 0) {
        if ((f.number == 1 || f.number == 2) && f.wire != 2)
            return wrong_wire(label, "of normalizer_spec", err);
        if (f.number >= 3 && f.number <= 5 && f.wire != 0)
            return wrong_wire(label, "of normalizer_spec", err);
        if (f.number == 1) {
            size_t k = f.len < sizeof o->norm_name - 1 ? f.len : sizeof o->norm_name - 1;
            memcpy(o->norm_name, f.data, k);
            o->norm_name[k] = '\0';
        } else if (f.number == 2) {
            o->has_charsmap = f.len > 0;
        } else if (f.number == 3) {
            o->dummy_prefix = f.value != 0;
        } else if (f.number == 4) {
            o->remove_extra_ws = f.value != 0;
        } else if (f.number == 5) {
            o->escape_ws = f.value != 0;
        }
    }
    return rc < 0 ? jb_fail(err, BAD, "%s: malformed normalizer_spec", label) : JAMBA_OK;
}

/* One SentencePiece message: its string, score and type. */
static jamba_status read_piece(const uint8_t *d, size_t n, int64_t index, const char *label, const uint8_t **text,
                               size_t *text_len, float *score, uint8_t *type, jamba_error *err) {
    pb r = {d, d + n};
    pb_field f;
    int rc;
    *text = NULL;
    *text_len = 0;
    *score = 0;
    *type = JB_PIECE_NORMAL;
    while ((rc = next_field(&r, &f)) > 0) {
        if ((f.number == 1 && f.wire != 2) || (f.number == 2 && f.wire != 5) || (f.number == 3 && f.wire != 0))
            return jb_fail(err, BAD, "%s: piece %lld: a field has the wrong protobuf wire type", label,
                           (long long)index);
        if (f.number == 1) {
            *text = f.data;
            *text_len = f.len;
        } else if (f.number == 2) {
            uint32_t bits = (uint32_t)f.value;
            memcpy(score, &bits, 4);
        } else if (f.number == 3) {
            if (f.value < JB_PIECE_NORMAL || f.value > JB_PIECE_BYTE)
                return jb_fail(err, BAD, "%s: piece %lld has unknown type %llu", label, (long long)index,
                               (unsigned long long)f.value);
            *type = (uint8_t)f.value;
        }
    }
    if (rc < 0)
        return jb_fail(err, BAD, "%s: piece %lld is malformed", label, (long long)index);
    if (*text == NULL || *text_len == 0 || *text_len > MAX_PIECE_BYTES)
        return jb_fail(err, BAD, "%s: piece %lld is empty or longer than %d bytes", label, (long long)index,
                       MAX_PIECE_BYTES);
    if (!jb_utf8_valid(*text, *text_len) || memchr(*text, 0, *text_len) != NULL)
        return jb_fail(err, BAD, "%s: piece %lld is not valid UTF-8 text", label, (long long)index);
    if (!isfinite(*score))
        return jb_fail(err, BAD, "%s: piece %lld has a non-finite score", label, (long long)index);
    return JAMBA_OK;
}

/* Pass 1: count pieces and their bytes; read the specs. */
static jamba_status scan_model(const uint8_t *d, size_t n, const char *label, spm_options *o, int64_t *n_pieces,
                               uint64_t *bytes, jamba_error *err) {
    pb r = {d, d + n};
    pb_field f;
    int rc;
    *n_pieces = 0;
    *bytes = 0;
    while ((rc = next_field(&r, &f)) > 0) {
        if (f.number >= 1 && f.number <= 3 && f.wire != 2)
            return wrong_wire(label, "of ModelProto", err);
        if (f.number == 1) {
            if (++*n_pieces > MAX_PIECES)
                return jb_fail(err, BAD, "%s: more than %d pieces", label, MAX_PIECES);
            *bytes += f.len + 1;
        } else if (f.number == 2) {
            JB_TRY(read_trainer(f.data, f.len, label, o, err));
        } else if (f.number == 3) {
            JB_TRY(read_normalizer(f.data, f.len, label, o, err));
        }
    }
    if (rc < 0)
        return jb_fail(err, BAD, "%s: not a SentencePiece model (malformed protobuf)", label);
    if (*n_pieces == 0)
        return jb_fail(err, BAD, "%s: no pieces", label);
    return JAMBA_OK;
}

static jamba_status check_options(const spm_options *o, const char *label, jamba_error *err) {
    if (o->model_type != 2)
        return jb_fail(err, JAMBA_ERR_UNSUPPORTED, "%s: model type %s is not supported (only BPE)", label,
                       o->model_type == 1 ? "UNIGRAM" : o->model_type == 3 ? "WORD" : o->model_type == 4 ? "CHAR" : "?");
    if (o->suffix_whitespace)
        return jb_fail(err, JAMBA_ERR_UNSUPPORTED, "%s: treat_whitespace_as_suffix is not supported", label);
    if (o->has_charsmap || (o->norm_name[0] && strcmp(o->norm_name, "identity") != 0))
        return jb_fail(err, JAMBA_ERR_UNSUPPORTED, "%s: normalizer \"%s\" is not supported (only identity)", label,
                       o->norm_name[0] ? o->norm_name : "with a precompiled charsmap");
    if (o->remove_extra_ws)
        return jb_fail(err, JAMBA_ERR_UNSUPPORTED, "%s: remove_extra_whitespaces is not supported", label);
    return JAMBA_OK;
}

static jamba_status check_special_id(const jamba_tokenizer *t, int64_t id, const char *what, uint8_t want,
                                     const char *label, jamba_error *err) {
    if (id == -1)
        return JAMBA_OK;
    if (id < 0 || id >= t->n_vocab)
        return jb_fail(err, BAD, "%s: %s %lld is outside the %lld pieces", label, what, (long long)id,
                       (long long)t->n_vocab);
    if (t->type[id] != want)
        return jb_fail(err, BAD, "%s: %s %lld points at piece \"%s\" of the wrong type", label, what, (long long)id,
                       t->piece[id]);
    return JAMBA_OK;
}

jamba_status jb_tokenizer_read_spm(jamba_tokenizer *t, const uint8_t *d, size_t n, const char *label,
                                   jamba_error *err) {
    spm_options o = {.unk_id = 0, .bos_id = 1, .eos_id = 2, .dummy_prefix = true, .remove_extra_ws = true,
                     .escape_ws = true};
    int64_t n_pieces;
    uint64_t bytes;
    JB_TRY(scan_model(d, n, label, &o, &n_pieces, &bytes, err));
    JB_TRY(check_options(&o, label, err));
    t->kind = JB_TOK_SPM;
    JB_TRY(jb_tokenizer_alloc_pieces(t, n_pieces, bytes, label, err));
    /* Pass 2: the pieces. */
    pb r = {d, d + n};
    pb_field f;
    char *dst = t->storage;
    int64_t i = 0;
    while (next_field(&r, &f) > 0) {
        if (f.number != 1)
            continue;
        const uint8_t *text;
        size_t len;
        JB_TRY(read_piece(f.data, f.len, i, label, &text, &len, &t->score[i], &t->type[i], err));
        memcpy(dst, text, len);
        dst[len] = '\0';
        t->piece[i] = dst;
        t->piece_len[i] = (uint32_t)len;
        dst += len + 1;
        i++;
    }
    JB_TRY(jb_tokenizer_index(t, label, err));
    if (o.unk_id < 0)
        return jb_fail(err, BAD, "%s: unk_id is %lld; a SentencePiece model needs an unknown piece", label,
                       (long long)o.unk_id);
    for (int64_t k = 0; k < t->n_vocab; k++)
        if (t->type[k] == JB_PIECE_UNUSED)
            return jb_fail(err, JAMBA_ERR_UNSUPPORTED, "%s: piece %lld (\"%s\") is UNUSED; models with UNUSED pieces "
                           "(merged through and split back by sentencepiece) are not supported", label, (long long)k,
                           t->piece[k]);
    JB_TRY(check_special_id(t, o.unk_id, "unk_id", JB_PIECE_UNKNOWN, label, err));
    JB_TRY(check_special_id(t, o.bos_id, "bos_id", JB_PIECE_CONTROL, label, err));
    JB_TRY(check_special_id(t, o.eos_id, "eos_id", JB_PIECE_CONTROL, label, err));
    t->unk_id = (int32_t)o.unk_id;
    t->bos_id = (int32_t)o.bos_id;
    t->add_bos = o.bos_id >= 0;
    if (o.eos_id >= 0)
        t->eos_ids[t->n_eos++] = (int32_t)o.eos_id;
    t->byte_fallback = o.byte_fallback;
    t->add_dummy_prefix = o.dummy_prefix;
    t->escape_whitespaces = o.escape_ws;
    if (o.byte_fallback)
        for (int b = 0; b < 256; b++)
            if (t->byte_id[b] < 0)
                return jb_fail(err, BAD, "%s: byte_fallback is on but there is no piece <0x%02X>", label, b);
    /* user-defined pieces are matched whole; control pieces too when special tokens are parsed */
    t->added = jb_calloc((size_t)t->n_vocab, sizeof *t->added);
    if (t->added == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", label);
    for (int64_t k = 0; k < t->n_vocab; k++)
        if (t->type[k] == JB_PIECE_USER || t->type[k] == JB_PIECE_CONTROL || t->type[k] == JB_PIECE_UNKNOWN)
            t->added[t->n_added++] = (jb_added_token){.text = t->piece[k], .len = t->piece_len[k], .id = (int32_t)k,
                                                      .special = t->type[k] != JB_PIECE_USER};
    return JAMBA_OK;
}
