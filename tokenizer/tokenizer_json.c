/*
 * tokenizer_json.c — Hugging Face tokenizer.json → jamba_tokenizer.
 *
 * Supported (anything else is an error naming the component):
 *   model          BPE (vocab, merges as "a b" strings or [a, b] pairs, unk_token, byte_fallback, fuse_unk,
 *                  ignore_merges; no dropout, no subword prefix/suffix)
 *   normalizer     Sequence, Replace (string or regex), Prepend
 *   pre_tokenizer  Sequence, Metaspace, Split (string or regex, every behaviour, invert), Digits, ByteLevel
 *   decoder        Sequence, Replace (string), ByteFallback, Fuse, Strip (leading only), ByteLevel, Metaspace
 *   post_processor TemplateProcessing (BOS/EOS of the single-sequence template), ByteLevel, Sequence
 *   added_tokens   id, content, special, lstrip, rstrip; single_word is not supported
 * Regexes are compiled with PCRE2 in UTF + Unicode-property mode (once, here, ByteLevel's GPT-2 split too), and
 * keep their source for messages. Normalizer and pre-tokenizer chains that can grow a text more than
 * JB_TOKENIZER_MAX_GROWTH-fold (tokenizer.h) are refused.
 */
#include <string.h>

#include "base/alloc.h"
#include "base/checked.h"
#include "base/error.h"
#include "tokenizer/tokenizer.h"
#include "base/utf8.h"
#include "ckpt/json.h"

#define BAD JAMBA_ERR_BAD_TOKENIZER
#define UNSUPPORTED JAMBA_ERR_UNSUPPORTED
#define MAX_VOCAB (1 << 22)

static const char *type_of(const json_t *node) {
    const json_t *t = json_is_object(node) ? json_object_get(node, "type") : NULL;
    return json_is_string(t) ? json_string_value(t) : NULL;
}

static bool get_bool(const json_t *node, const char *key, bool def) {
    const json_t *v = json_object_get(node, key);
    return json_is_boolean(v) ? json_is_true(v) : def;
}

static char *dup_string(const json_t *v, size_t *len) {
    *len = json_string_length(v);
    return jb_strndup(json_string_value(v), *len);
}

/* Compile into *out, keeping the source in *source for the messages of matching errors (tokenize.c). */
static jamba_status compile_regex(const char *pattern, size_t len, const char *label, const char *where,
                                  pcre2_code **out, char **source, jamba_error *err) {
    int code;
    PCRE2_SIZE offset;
    /* Oniguruma (which tokenizers uses) treats ^ and $ as line anchors */
    *out = pcre2_compile((PCRE2_SPTR)pattern, len, PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE, &code, &offset, NULL);
    if (*out == NULL) {
        if (code == PCRE2_ERROR_HEAP_FAILED)
            return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory compiling a %s regex", label, where);
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(code, msg, sizeof msg);
        return jb_fail(err, UNSUPPORTED, "%s: %s regex \"%.80s\" does not compile at offset %zu: %s", label, where,
                       pattern, (size_t)offset, (const char *)msg);
    }
    if ((*source = jb_strndup(pattern, len)) == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", label);
    return JAMBA_OK;
}

/* {"String": s} or {"Regex": r}: a literal into *lit or a compiled regex into *re. */
static jamba_status read_pattern(const json_t *pat, const char *label, const char *where, char **lit, size_t *lit_len,
                                 pcre2_code **re, char **source, jamba_error *err) {
    const json_t *s = json_is_object(pat) ? json_object_get(pat, "String") : NULL;
    const json_t *r = json_is_object(pat) ? json_object_get(pat, "Regex") : NULL;
    if (json_is_string(s)) {
        if ((*lit = dup_string(s, lit_len)) == NULL)
            return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", label);
        return JAMBA_OK;
    }
    if (json_is_string(r))
        return compile_regex(json_string_value(r), json_string_length(r), label, where, re, source, err);
    return jb_fail(err, BAD, "%s: %s pattern must be {\"String\": ...} or {\"Regex\": ...}", label, where);
}

/* ---- normalizer ------------------------------------------------------------------------------- */

static jamba_status add_norm(jamba_tokenizer *t, const json_t *node, const char *label, int64_t *cap,
                             jamba_error *err);

static jamba_status add_norm_list(jamba_tokenizer *t, const json_t *list, const char *label, int64_t *cap,
                                  jamba_error *err) {
    if (!json_is_array(list))
        return jb_fail(err, BAD, "%s: normalizer Sequence without a list", label);
    for (size_t i = 0; i < json_array_size(list); i++)
        JB_TRY(add_norm(t, json_array_get(list, i), label, cap, err));
    return JAMBA_OK;
}

static jamba_status add_norm(jamba_tokenizer *t, const json_t *node, const char *label, int64_t *cap,
                             jamba_error *err) {
    if (json_is_null(node))
        return JAMBA_OK;
    const char *type = type_of(node);
    if (type == NULL)
        return jb_fail(err, BAD, "%s: a normalizer has no type", label);
    if (strcmp(type, "Sequence") == 0)
        return add_norm_list(t, json_object_get(node, "normalizers"), label, cap, err);
    if (!jb_grow((void **)&t->norm, cap, t->n_norm + 1, sizeof *t->norm))
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", label);
    jb_norm_step *s = &t->norm[t->n_norm];
    memset(s, 0, sizeof *s);
    if (strcmp(type, "Replace") == 0) {
        const json_t *content = json_object_get(node, "content");
        if (!json_is_string(content))
            return jb_fail(err, BAD, "%s: normalizer Replace without content", label);
        t->n_norm++;
        s->kind = JB_NORM_REPLACE;
        JB_TRY(read_pattern(json_object_get(node, "pattern"), label, "normalizer Replace", &s->from, &s->from_len,
                            &s->re, &s->pattern, err));
        if ((s->to = dup_string(content, &s->to_len)) == NULL)
            return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", label);
        if (s->re == NULL && s->from_len == 0)
            return jb_fail(err, BAD, "%s: normalizer Replace with an empty pattern", label);
        return JAMBA_OK;
    }
    if (strcmp(type, "Prepend") == 0) {
        const json_t *p = json_object_get(node, "prepend");
        if (!json_is_string(p))
            return jb_fail(err, BAD, "%s: normalizer Prepend without a string", label);
        t->n_norm++;
        s->kind = JB_NORM_PREPEND;
        if ((s->to = dup_string(p, &s->to_len)) == NULL)
            return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", label);
        return JAMBA_OK;
    }
    return jb_fail(err, UNSUPPORTED, "%s: normalizer %s is not supported", label, type);
}

/* ---- pre-tokenizer ---------------------------------------------------------------------------- */

static jamba_status read_prepend_scheme(const json_t *node, const char *label, jb_prepend_scheme *out,
                                        jamba_error *err) {
    const json_t *scheme = json_object_get(node, "prepend_scheme");
    if (json_is_string(scheme)) {
        const char *v = json_string_value(scheme);
        if (strcmp(v, "always") == 0)
            *out = JB_PREPEND_ALWAYS;
        else if (strcmp(v, "never") == 0)
            *out = JB_PREPEND_NEVER;
        else if (strcmp(v, "first") == 0)
            *out = JB_PREPEND_FIRST;
        else
            return jb_fail(err, UNSUPPORTED, "%s: Metaspace prepend_scheme \"%s\" is not supported", label, v);
        return JAMBA_OK;
    }
    *out = get_bool(node, "add_prefix_space", true) ? JB_PREPEND_ALWAYS : JB_PREPEND_NEVER; /* older files */
    return JAMBA_OK;
}

static jamba_status read_replacement(const json_t *node, const char *label, char *dst, size_t *len,
                                     jamba_error *err) {
    const json_t *r = json_object_get(node, "replacement");
    const char *v = json_is_string(r) ? json_string_value(r) : "\xE2\x96\x81";
    *len = strlen(v);
    uint32_t cp;
    if (*len == 0 || *len >= 8 || jb_utf8_decode((const uint8_t *)v, *len, &cp) != (int)*len)
        return jb_fail(err, BAD, "%s: Metaspace replacement must be one character", label);
    memcpy(dst, v, *len + 1);
    return JAMBA_OK;
}

/* ByteLevel's split (tokenizers' GPT-2 regex); no anchors, so the MULTILINE of compile_regex is moot. */
static const char gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static const struct {
    const char *name;
    jb_split_behavior behavior;
} behaviors[] = {{"Removed", JB_SPLIT_REMOVED},
                 {"Isolated", JB_SPLIT_ISOLATED},
                 {"MergedWithPrevious", JB_SPLIT_MERGED_PREVIOUS},
                 {"MergedWithNext", JB_SPLIT_MERGED_NEXT},
                 {"Contiguous", JB_SPLIT_CONTIGUOUS}};

static jamba_status add_pre(jamba_tokenizer *t, const json_t *node, const char *label, int64_t *cap,
                            jamba_error *err) {
    if (json_is_null(node))
        return JAMBA_OK;
    const char *type = type_of(node);
    if (type == NULL)
        return jb_fail(err, BAD, "%s: a pre_tokenizer has no type", label);
    if (strcmp(type, "Sequence") == 0) {
        const json_t *list = json_object_get(node, "pretokenizers");
        if (!json_is_array(list))
            return jb_fail(err, BAD, "%s: pre_tokenizer Sequence without a list", label);
        for (size_t i = 0; i < json_array_size(list); i++)
            JB_TRY(add_pre(t, json_array_get(list, i), label, cap, err));
        return JAMBA_OK;
    }
    if (!jb_grow((void **)&t->pre, cap, t->n_pre + 1, sizeof *t->pre))
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", label);
    jb_pre_step *s = &t->pre[t->n_pre];
    memset(s, 0, sizeof *s);
    if (strcmp(type, "Metaspace") == 0) {
        s->kind = JB_PRE_METASPACE;
        JB_TRY(read_replacement(node, label, s->replacement, &s->replacement_len, err));
        JB_TRY(read_prepend_scheme(node, label, &s->prepend, err));
        s->split = get_bool(node, "split", true);
    } else if (strcmp(type, "Split") == 0) {
        s->kind = JB_PRE_SPLIT;
        t->n_pre++; /* owned from here on, so a failure below frees what was read */
        JB_TRY(read_pattern(json_object_get(node, "pattern"), label, "pre_tokenizer Split", &s->literal,
                            &s->literal_len, &s->re, &s->pattern, err));
        const json_t *b = json_object_get(node, "behavior");
        bool known = false;
        for (size_t i = 0; json_is_string(b) && i < sizeof behaviors / sizeof behaviors[0]; i++)
            if (strcmp(json_string_value(b), behaviors[i].name) == 0) {
                s->behavior = behaviors[i].behavior;
                known = true;
            }
        if (!known)
            return jb_fail(err, UNSUPPORTED, "%s: Split behavior %.40s is not supported", label,
                           json_is_string(b) ? json_string_value(b) : "(missing)");
        s->invert = get_bool(node, "invert", false);
        return JAMBA_OK;
    } else if (strcmp(type, "Digits") == 0) {
        /* tokenizers splits on char::is_numeric (Unicode Nd, Nl, No): a one-character \p{N} match per digit */
        s->kind = JB_PRE_DIGITS;
        s->individual_digits = get_bool(node, "individual_digits", false);
        t->n_pre++;
        return compile_regex("\\p{N}", 5, label, "pre_tokenizer Digits", &s->re, &s->pattern, err);
    } else if (strcmp(type, "ByteLevel") == 0) {
        s->kind = JB_PRE_BYTELEVEL;
        s->add_prefix_space = get_bool(node, "add_prefix_space", true);
        s->use_regex = get_bool(node, "use_regex", true);
        t->byte_level = true;
        t->n_pre++;
        if (!s->use_regex)
            return JAMBA_OK;
        return compile_regex(gpt2_pattern, sizeof gpt2_pattern - 1, label, "pre_tokenizer ByteLevel", &s->re,
                             &s->pattern, err);
    } else {
        return jb_fail(err, UNSUPPORTED, "%s: pre_tokenizer %s is not supported", label, type);
    }
    t->n_pre++;
    return JAMBA_OK;
}

/* ---- decoder ---------------------------------------------------------------------------------- */

static jamba_status add_dec(jamba_tokenizer *t, const json_t *node, const char *label, int64_t *cap,
                            jamba_error *err) {
    if (json_is_null(node))
        return JAMBA_OK;
    const char *type = type_of(node);
    if (type == NULL)
        return jb_fail(err, BAD, "%s: a decoder has no type", label);
    if (strcmp(type, "Sequence") == 0) {
        const json_t *list = json_object_get(node, "decoders");
        if (!json_is_array(list))
            return jb_fail(err, BAD, "%s: decoder Sequence without a list", label);
        for (size_t i = 0; i < json_array_size(list); i++)
            JB_TRY(add_dec(t, json_array_get(list, i), label, cap, err));
        return JAMBA_OK;
    }
    if (!jb_grow((void **)&t->dec, cap, t->n_dec + 1, sizeof *t->dec))
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", label);
    jb_dec_step *s = &t->dec[t->n_dec];
    memset(s, 0, sizeof *s);
    if (strcmp(type, "Replace") == 0) {
        const json_t *pat = json_object_get(node, "pattern"), *content = json_object_get(node, "content");
        const json_t *lit = json_is_object(pat) ? json_object_get(pat, "String") : NULL;
        if (!json_is_string(lit) || !json_is_string(content) || json_string_length(lit) == 0)
            return jb_fail(err, UNSUPPORTED, "%s: decoder Replace supports only a non-empty String pattern", label);
        s->kind = JB_DEC_REPLACE;
        t->n_dec++;
        if ((s->from = dup_string(lit, &s->from_len)) == NULL || (s->to = dup_string(content, &s->to_len)) == NULL)
            return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", label);
        return JAMBA_OK;
    }
    if (strcmp(type, "ByteFallback") == 0) {
        s->kind = JB_DEC_BYTEFALLBACK;
    } else if (strcmp(type, "Fuse") == 0) {
        s->kind = JB_DEC_FUSE;
    } else if (strcmp(type, "Strip") == 0) {
        const json_t *content = json_object_get(node, "content"), *start = json_object_get(node, "start");
        const json_t *stop = json_object_get(node, "stop");
        uint32_t cp;
        if (!json_is_string(content) || json_string_length(content) == 0 || json_string_length(content) >= sizeof s->content ||
            jb_utf8_decode((const uint8_t *)json_string_value(content), json_string_length(content), &cp) !=
                (int)json_string_length(content) ||
            !json_is_integer(start) || json_integer_value(start) < 0 || !json_is_integer(stop))
            return jb_fail(err, BAD, "%s: decoder Strip needs one content character, start and stop", label);
        if (json_integer_value(stop) != 0)
            return jb_fail(err, UNSUPPORTED, "%s: decoder Strip with stop > 0 is not supported", label);
        s->kind = JB_DEC_STRIP;
        s->content_len = json_string_length(content);
        memcpy(s->content, json_string_value(content), s->content_len);
        s->start = json_integer_value(start);
        s->per_token = true; /* until a Fuse is found before it */
        for (int64_t k = 0; k < t->n_dec; k++)
            s->per_token &= t->dec[k].kind != JB_DEC_FUSE;
    } else if (strcmp(type, "ByteLevel") == 0) {
        s->kind = JB_DEC_BYTELEVEL;
    } else if (strcmp(type, "Metaspace") == 0) {
        s->kind = JB_DEC_METASPACE;
        JB_TRY(read_replacement(node, label, s->content, &s->content_len, err));
        jb_prepend_scheme scheme;
        JB_TRY(read_prepend_scheme(node, label, &scheme, err));
        s->strip_leading = scheme != JB_PREPEND_NEVER;
    } else {
        return jb_fail(err, UNSUPPORTED, "%s: decoder %s is not supported", label, type);
    }
    t->n_dec++;
    return JAMBA_OK;
}

/* ---- post-processor: which special tokens wrap a single text ---------------------------------- */

static int64_t template_token_id(const json_t *special, const json_t *item) {
    const json_t *tok = json_object_get(item, "SpecialToken");
    const json_t *name = tok ? json_object_get(tok, "id") : NULL;
    const json_t *entry = json_is_string(name) ? json_object_get(special, json_string_value(name)) : NULL;
    const json_t *ids = entry ? json_object_get(entry, "ids") : NULL;
    if (!json_is_array(ids) || json_array_size(ids) != 1 || !json_is_integer(json_array_get(ids, 0)) ||
        json_integer_value(json_array_get(ids, 0)) < 0)
        return -1;
    return json_integer_value(json_array_get(ids, 0));
}

static jamba_status read_post(jamba_tokenizer *t, const json_t *node, const char *label, jamba_error *err) {
    if (json_is_null(node))
        return JAMBA_OK;
    const char *type = type_of(node);
    if (type == NULL)
        return jb_fail(err, BAD, "%s: a post_processor has no type", label);
    if (strcmp(type, "ByteLevel") == 0)
        return JAMBA_OK;
    if (strcmp(type, "Sequence") == 0) {
        const json_t *list = json_object_get(node, "processors");
        for (size_t i = 0; json_is_array(list) && i < json_array_size(list); i++)
            JB_TRY(read_post(t, json_array_get(list, i), label, err));
        return JAMBA_OK;
    }
    if (strcmp(type, "TemplateProcessing") != 0)
        return jb_fail(err, UNSUPPORTED, "%s: post_processor %s is not supported", label, type);
    const json_t *single = json_object_get(node, "single"), *special = json_object_get(node, "special_tokens");
    size_t n = json_array_size(single);
    if (!json_is_array(single) || n == 0)
        return jb_fail(err, BAD, "%s: TemplateProcessing without a single template", label);
    for (size_t i = 0; i < n; i++) {
        const json_t *item = json_array_get(single, i);
        if (json_object_get(item, "SpecialToken") == NULL)
            continue;
        int64_t id = template_token_id(special, item);
        if (id < 0)
            return jb_fail(err, UNSUPPORTED, "%s: TemplateProcessing special tokens must map to one id each", label);
        if (id >= t->n_vocab)
            return jb_fail(err, BAD, "%s: TemplateProcessing id %lld is outside the vocabulary", label, (long long)id);
        if (i == 0) {
            t->bos_id = (int32_t)id;
            t->add_bos = true;
        } else if (i == n - 1) {
            t->add_eos = true;
            t->eos_ids[0] = (int32_t)id;
            t->n_eos = 1;
        } else {
            return jb_fail(err, UNSUPPORTED, "%s: TemplateProcessing with a special token inside the text", label);
        }
    }
    return JAMBA_OK;
}

/* ---- model: vocabulary, added tokens, merges -------------------------------------------------- */

static jamba_status check_token_text(const char *s, size_t len, const char *label, jamba_error *err) {
    if (len == 0 || len > 4096 || memchr(s, 0, len) || !jb_utf8_valid((const uint8_t *)s, len))
        return jb_fail(err, BAD, "%s: token \"%.60s\" is empty, too long, or not valid UTF-8", label, s);
    return JAMBA_OK;
}

/* Every id of the vocabulary and the added tokens, each exactly once, dense from 0. */
static jamba_status read_vocab(jamba_tokenizer *t, const json_t *vocab, const json_t *added, const char *label,
                               jamba_error *err) {
    if (!json_is_object(vocab))
        return jb_fail(err, BAD, "%s: model.vocab must be an object of token -> id", label);
    int64_t max_id = -1;
    uint64_t bytes = 0;
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)vocab, key, val) {
        uint64_t id;
        if (!jb_json_as_u64(val, &id) || id >= MAX_VOCAB)
            return jb_fail(err, BAD, "%s: vocab[\"%.60s\"] is not an id in [0, %d)", label, key, MAX_VOCAB);
        max_id = (int64_t)id > max_id ? (int64_t)id : max_id;
        bytes += strlen(key) + 1;
    }
    for (size_t i = 0; i < json_array_size(added); i++) {
        const json_t *a = json_array_get(added, i), *content = json_object_get(a, "content");
        uint64_t id;
        if (!json_is_string(content) || !jb_json_as_u64(json_object_get(a, "id"), &id) || id >= MAX_VOCAB)
            return jb_fail(err, BAD, "%s: added_tokens[%zu] needs a string content and an id in [0, %d)", label, i,
                           MAX_VOCAB);
        max_id = (int64_t)id > max_id ? (int64_t)id : max_id;
        bytes += json_string_length(content) + 1;
    }
    if (max_id < 0)
        return jb_fail(err, BAD, "%s: empty vocabulary", label);
    JB_TRY(jb_tokenizer_alloc_pieces(t, max_id + 1, bytes, label, err));
    char *dst = t->storage;
    json_object_foreach((json_t *)vocab, key, val) {
        int64_t id = json_integer_value(val);
        size_t len = strlen(key);
        JB_TRY(check_token_text(key, len, label, err));
        if (t->piece[id] != NULL)
            return jb_fail(err, BAD, "%s: id %lld is used by both \"%s\" and \"%s\"", label, (long long)id,
                           t->piece[id], key);
        memcpy(dst, key, len + 1);
        t->piece[id] = dst;
        t->piece_len[id] = (uint32_t)len;
        t->type[id] = JB_PIECE_NORMAL;
        dst += len + 1;
    }
    for (size_t i = 0; i < json_array_size(added); i++) {
        const json_t *a = json_array_get(added, i);
        const char *content = json_string_value(json_object_get(a, "content"));
        size_t len = json_string_length(json_object_get(a, "content"));
        int64_t id = json_integer_value(json_object_get(a, "id"));
        JB_TRY(check_token_text(content, len, label, err));
        if (t->piece[id] != NULL && (t->piece_len[id] != len || memcmp(t->piece[id], content, len) != 0))
            return jb_fail(err, BAD, "%s: added token \"%s\" has id %lld, which the vocabulary gives to \"%s\"", label,
                           content, (long long)id, t->piece[id]);
        if (t->piece[id] == NULL) {
            memcpy(dst, content, len + 1);
            t->piece[id] = dst;
            t->piece_len[id] = (uint32_t)len;
            dst += len + 1;
        }
        bool special = get_bool(a, "special", false);
        t->type[id] = special ? JB_PIECE_CONTROL : JB_PIECE_USER;
    }
    for (int64_t id = 0; id < t->n_vocab; id++)
        if (t->piece[id] == NULL)
            return jb_fail(err, BAD, "%s: id %lld has no token (the ids must be dense)", label, (long long)id);
    return JAMBA_OK;
}

static jamba_status read_added(jamba_tokenizer *t, const json_t *added, const char *label, jamba_error *err) {
    size_t n = json_array_size(added);
    t->added = jb_calloc(n ? n : 1, sizeof *t->added);
    if (t->added == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", label);
    for (size_t i = 0; i < n; i++) {
        const json_t *a = json_array_get(added, i);
        int32_t id = (int32_t)json_integer_value(json_object_get(a, "id"));
        if (get_bool(a, "single_word", false))
            return jb_fail(err, UNSUPPORTED, "%s: added token \"%s\" uses single_word, which is not supported", label,
                           t->piece[id]);
        bool normalized = get_bool(a, "normalized", false), prepends = false;
        for (int64_t k = 0; k < t->n_norm; k++)
            prepends |= t->norm[k].kind == JB_NORM_PREPEND;
        if (normalized && (prepends || (t->n_norm > 0 && (strchr(t->piece[id], ' ') ||
                                                          strstr(t->piece[id], "\xE2\x96\x81")))))
            return jb_fail(err, UNSUPPORTED, "%s: added token \"%s\" is matched after normalisation and contains "
                           "characters the normalizer changes; not supported", label, t->piece[id]);
        t->added[t->n_added++] = (jb_added_token){.text = t->piece[id], .len = t->piece_len[id], .id = id,
                                                  .special = get_bool(a, "special", false),
                                                  .lstrip = get_bool(a, "lstrip", false),
                                                  .rstrip = get_bool(a, "rstrip", false)};
    }
    return JAMBA_OK;
}

/* One merge: "a b" or ["a", "b"]. */
static jamba_status merge_parts(const json_t *m, size_t index, const char *label, const char **a, size_t *alen,
                                const char **b, size_t *blen, jamba_error *err) {
    if (json_is_string(m)) {
        const char *s = json_string_value(m), *sp = strchr(s, ' ');
        if (sp == NULL || sp == s || sp[1] == '\0' || strchr(sp + 1, ' '))
            return jb_fail(err, BAD, "%s: merges[%zu] \"%.60s\" is not two tokens separated by a space", label, index, s);
        *a = s, *alen = (size_t)(sp - s), *b = sp + 1, *blen = strlen(sp + 1);
        return JAMBA_OK;
    }
    if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
        json_is_string(json_array_get(m, 1))) {
        *a = json_string_value(json_array_get(m, 0)), *alen = json_string_length(json_array_get(m, 0));
        *b = json_string_value(json_array_get(m, 1)), *blen = json_string_length(json_array_get(m, 1));
        return JAMBA_OK;
    }
    return jb_fail(err, BAD, "%s: merges[%zu] is neither \"a b\" nor [\"a\", \"b\"]", label, index);
}

static jamba_status read_merges(jamba_tokenizer *t, const json_t *merges, const char *label, jamba_error *err) {
    if (!json_is_array(merges))
        return jb_fail(err, BAD, "%s: model.merges must be a list", label);
    size_t n = json_array_size(merges);
    t->merge_result = jb_calloc(n ? n : 1, sizeof *t->merge_result);
    if (t->merge_result == NULL || !jb_u64map_init(&t->merges, (int64_t)n))
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory for %zu merges", label, n);
    char *joined = NULL;
    size_t joined_cap = 0;
    jamba_status st = JAMBA_OK;
    for (size_t i = 0; i < n && st == JAMBA_OK; i++) {
        const char *a = NULL, *b = NULL;
        size_t alen = 0, blen = 0;
        if ((st = merge_parts(json_array_get(merges, i), i, label, &a, &alen, &b, &blen, err)) != JAMBA_OK)
            break;
        int32_t ia = jb_strmap_get(&t->vocab, a, alen), ib = jb_strmap_get(&t->vocab, b, blen);
        if (alen + blen + 1 > joined_cap) {
            char *grown = jb_realloc(joined, joined_cap = 2 * (alen + blen + 1));
            if (grown == NULL) {
                st = jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", label);
                break;
            }
            joined = grown;
        }
        memcpy(joined, a, alen);
        memcpy(joined + alen, b, blen);
        int32_t merged = jb_strmap_get(&t->vocab, joined, alen + blen);
        if (ia < 0 || ib < 0 || merged < 0)
            st = jb_fail(err, BAD, "%s: merges[%zu] (\"%.*s\" + \"%.*s\") uses a token missing from the vocabulary",
                         label, i, (int)(alen > 40 ? 40 : alen), a, (int)(blen > 40 ? 40 : blen), b);
        else if (!jb_u64map_put(&t->merges, (uint64_t)(uint32_t)ia << 32 | (uint32_t)ib, (int32_t)i))
            st = jb_fail(err, BAD, "%s: merges[%zu] (\"%.*s\" + \"%.*s\") is listed twice", label, i,
                         (int)(alen > 40 ? 40 : alen), a, (int)(blen > 40 ? 40 : blen), b);
        else
            t->merge_result[i] = merged;
        t->n_merges = (int64_t)i + 1;
    }
    jb_free(joined);
    return st;
}

static jamba_status read_model(jamba_tokenizer *t, const json_t *model, const json_t *added, const char *label,
                               jamba_error *err) {
    const char *type = type_of(model);
    if (type == NULL || strcmp(type, "BPE") != 0)
        return jb_fail(err, UNSUPPORTED, "%s: model %s is not supported (only BPE)", label, type ? type : "(missing)");
    const json_t *dropout = json_object_get(model, "dropout");
    if (dropout && !json_is_null(dropout) && json_number_value(dropout) != 0)
        return jb_fail(err, UNSUPPORTED, "%s: BPE dropout is not supported", label);
    static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const json_t *v = json_object_get(model, affixes[i]);
        if (v && !json_is_null(v) && !(json_is_string(v) && json_string_length(v) == 0))
            return jb_fail(err, UNSUPPORTED, "%s: BPE %s is not supported", label, affixes[i]);
    }
    if (added != NULL && !json_is_array(added))
        return jb_fail(err, BAD, "%s: added_tokens must be a list", label);
    JB_TRY(read_vocab(t, json_object_get(model, "vocab"), added, label, err));
    JB_TRY(jb_tokenizer_index(t, label, err));
    t->byte_fallback = get_bool(model, "byte_fallback", false);
    t->fuse_unk = get_bool(model, "fuse_unk", false);
    t->ignore_merges = get_bool(model, "ignore_merges", false);
    const json_t *unk = json_object_get(model, "unk_token");
    t->unk_id = json_is_string(unk) ? jb_strmap_get(&t->vocab, json_string_value(unk), json_string_length(unk)) : -1;
    if (json_is_string(unk) && t->unk_id < 0)
        return jb_fail(err, BAD, "%s: unk_token \"%.60s\" is not in the vocabulary", label, json_string_value(unk));
    return read_merges(t, json_object_get(model, "merges"), label, err);
}

/* Refuse normalizer and pre-tokenizer chains that can grow text without practical bound (tokenizer.h). */
static jamba_status check_growth(const jamba_tokenizer *t, const char *label, jamba_error *err) {
    jb_growth g = jb_tokenizer_growth(t);
    if (g.a <= JB_TOKENIZER_MAX_GROWTH && g.b <= JB_TOKENIZER_MAX_GROWTH)
        return JAMBA_OK;
    return jb_fail(err, UNSUPPORTED, "%s: the normalizer and pre_tokenizer steps (%lld and %lld of them) can grow a "
                   "text of n bytes to %llu*n + %llu bytes; at most %d*n + %d is supported", label,
                   (long long)t->n_norm, (long long)t->n_pre, (unsigned long long)g.a, (unsigned long long)g.b,
                   JB_TOKENIZER_MAX_GROWTH, JB_TOKENIZER_MAX_GROWTH);
}

jamba_status jb_tokenizer_read_hf(jamba_tokenizer *t, const char *json, size_t len, const char *label,
                                  jamba_error *err) {
    json_t *root;
    JB_TRY(jb_json_parse_object(json, len, label, BAD, &root, err));
    t->kind = JB_TOK_HF;
    t->bos_id = -1;
    int64_t norm_cap = 0, pre_cap = 0, dec_cap = 0;
    const json_t *added = json_object_get(root, "added_tokens");
    jamba_status st = read_model(t, json_object_get(root, "model"), added, label, err);
    if (st == JAMBA_OK)
        st = add_norm(t, json_object_get(root, "normalizer"), label, &norm_cap, err);
    if (st == JAMBA_OK)
        st = add_pre(t, json_object_get(root, "pre_tokenizer"), label, &pre_cap, err);
    if (st == JAMBA_OK)
        st = add_dec(t, json_object_get(root, "decoder"), label, &dec_cap, err);
    if (st == JAMBA_OK)
        st = read_post(t, json_object_get(root, "post_processor"), label, err);
    if (st == JAMBA_OK)
        st = read_added(t, added, label, err);
    if (st == JAMBA_OK)
        st = check_growth(t, label, err);
    json_decref(root);
    return st;
}
