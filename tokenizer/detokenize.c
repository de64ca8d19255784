/*
 * detokenize.c — ids → UTF-8 text, whole or streamed.
 *
 * Each token becomes raw bytes on its own (every supported decoder step acts on one token: Replace,
 * ByteFallback, ByteLevel, Metaspace and Strip, the last two treating a text's first token specially). The
 * bytes are then assembled into characters: complete ones are released, an incomplete tail waits for the
 * next token. So streaming token by token gives exactly the text of decoding all at once. Invalid bytes
 * become U+FFFD the way each reference does it:
 *   tokenizer.json with ByteFallback  a run of byte tokens that is not valid UTF-8 as a whole gives one
 *                                     U+FFFD per token (the run is held until it ends)
 *   tokenizer.json otherwise          one U+FFFD per maximal invalid subsequence (from_utf8_lossy)
 *   tokenizer.model                   one U+FFFD per invalid byte; any non-byte piece ends a run of byte
 *                                     pieces (sentencepiece)
 */
#include "tokenizer/tokenizer.h"

#include "base/alloc.h"
#include "base/error.h"
#include "base/utf8.h"

#include <string.h>

typedef struct jb_bytes {
    char *p;
    int64_t n, cap;
} jb_bytes;

static bool put(jb_bytes *b, const void *s, size_t n) {
    if (!jb_grow((void **)&b->p, &b->cap, b->n + (int64_t)n + 1, 1))
        return false;
    memcpy(b->p + b->n, s, n);
    b->n += (int64_t)n;
    b->p[b->n] = '\0';
    return true;
}

struct jamba_stream_decoder {
    const jamba_tokenizer *t;
    bool keep_special;
    bool started;     /* a token has produced output since the start */
    jb_bytes run;     /* ByteFallback: bytes of the current run of byte tokens */
    int64_t run_tokens;
    jb_bytes pending; /* bytes not yet released (an incomplete character) */
    jb_bytes out;     /* the text returned by the last call */
    jb_bytes scratch; /* one token's text while its decoder steps run */
};

/* Replace every `from` in b by `to` (in place via a temporary). */
static bool replace_all(jb_bytes *b, jb_bytes *tmp, const char *from, size_t from_len, const char *to, size_t to_len) {
    tmp->n = 0;
    for (int64_t i = 0; i < b->n;) {
        if (b->n - i >= (int64_t)from_len && memcmp(b->p + i, from, from_len) == 0) {
            if (!put(tmp, to, to_len))
                return false;
            i += (int64_t)from_len;
        } else {
            if (!put(tmp, b->p + i, 1))
                return false;
            i++;
        }
    }
    b->n = 0;
    return put(b, tmp->p ? tmp->p : "", (size_t)tmp->n);
}

/* "<0xNN>" → the byte, else -1. */
static int byte_token(const jb_bytes *b) {
    if (b->n != 6 || memcmp(b->p, "<0x", 3) != 0 || b->p[5] != '>')
        return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = b->p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* ByteLevel: every character back to its byte; a token with a character outside the alphabet is kept as is. */
static bool bytelevel_decode(jb_bytes *b, jb_bytes *tmp) {
    tmp->n = 0;
    for (int64_t i = 0; i < b->n;) {
        uint32_t cp;
        int k = jb_utf8_decode((const uint8_t *)b->p + i, (size_t)(b->n - i), &cp);
        int byte = k > 0 ? jb_bytelevel_byte(cp) : -1;
        if (byte < 0)
            return true; /* leave the token unchanged */
        uint8_t c = (uint8_t)byte;
        if (!put(tmp, &c, 1))
            return false;
        i += k;
    }
    b->n = 0;
    return put(b, tmp->p ? tmp->p : "", (size_t)tmp->n);
}

static bool strip_leading(jb_bytes *b, const char *content, size_t len, int64_t count) {
    int64_t cut = 0;
    while (count-- > 0 && b->n - cut >= (int64_t)len && memcmp(b->p + cut, content, len) == 0)
        cut += (int64_t)len;
    memmove(b->p, b->p + cut, (size_t)(b->n - cut));
    b->n -= cut;
    return true;
}

/* Remove every occurrence of `ch` (the Metaspace decoder on a text's first token). */
static bool remove_all(jb_bytes *b, jb_bytes *tmp, const char *ch, size_t len) {
    return replace_all(b, tmp, ch, len, "", 0);
}

/* The HF decoder chain on one token; *is_byte tells that ByteFallback turned it into a raw byte. */
static bool hf_token(const jamba_tokenizer *t, jb_bytes *b, jb_bytes *tmp, bool at_start, bool *is_byte) {
    *is_byte = false;
    for (int64_t k = 0; k < t->n_dec; k++) {
        const jb_dec_step *d = &t->dec[k];
        bool ok = true;
        switch (d->kind) {
        case JB_DEC_REPLACE:
            ok = replace_all(b, tmp, d->from, d->from_len, d->to, d->to_len);
            break;
        case JB_DEC_BYTEFALLBACK: {
            int v = byte_token(b);
            if (v >= 0) {
                b->p[0] = (char)v;
                b->n = 1;
                *is_byte = true;
            }
            break;
        }
        case JB_DEC_FUSE:
            break;
        case JB_DEC_STRIP: /* after a Fuse only the text's start; without one, every token */
            if ((at_start || d->per_token) && !*is_byte)
                ok = strip_leading(b, d->content, d->content_len, d->start);
            break;
        case JB_DEC_BYTELEVEL:
            ok = bytelevel_decode(b, tmp);
            break;
        case JB_DEC_METASPACE:
            ok = at_start && d->strip_leading ? remove_all(b, tmp, d->content, d->content_len)
                                              : replace_all(b, tmp, d->content, d->content_len, " ", 1);
            break;
        }
        if (!ok)
            return false;
    }
    return true;
}

/* The SentencePiece decoding of one piece. */
static bool spm_token(const jamba_tokenizer *t, int32_t id, jb_bytes *b, jb_bytes *tmp, bool at_start) {
    if (t->type[id] == JB_PIECE_BYTE) {
        b->p[0] = (char)byte_token(b);
        b->n = 1;
        return true;
    }
    if (t->type[id] == JB_PIECE_NORMAL && !replace_all(b, tmp, "\xE2\x96\x81", 3, " ", 1))
        return false;
    return !(at_start && t->add_dummy_prefix) || strip_leading(b, " ", 1, 1);
}

/* End a run of ByteFallback byte tokens: its bytes when they are valid UTF-8, else U+FFFD per token. */
static bool end_run(jamba_stream_decoder *d) {
    bool ok = true;
    if (d->run.n > 0 && jb_utf8_valid((const uint8_t *)d->run.p, (size_t)d->run.n))
        ok = put(&d->pending, d->run.p, (size_t)d->run.n);
    else
        for (int64_t i = 0; ok && i < d->run_tokens; i++)
            ok = put(&d->pending, JB_UTF8_REPLACEMENT, 3);
    d->run.n = 0;
    d->run_tokens = 0;
    return ok;
}

/* sentencepiece decodes each run of byte pieces on its own: when any other piece follows (even a skipped
 * control piece), an incomplete character at the end of pending becomes one U+FFFD per byte. */
static bool end_spm_byte_run(jb_bytes *pending) {
    for (int64_t k = pending->n > 3 ? pending->n - 3 : 0; k < pending->n; k++) {
        const uint8_t *tail = (const uint8_t *)pending->p + k;
        if (jb_utf8_incomplete(tail, (size_t)(pending->n - k))) {
            int64_t n_bad = pending->n - k;
            pending->n = k;
            for (int64_t i = 0; i < n_bad; i++)
                if (!put(pending, JB_UTF8_REPLACEMENT, 3))
                    return false;
            return true;
        }
    }
    return true;
}

/* Append token `id`'s bytes to pending (or to the current byte run). */
static jamba_status push_token(jamba_stream_decoder *d, int32_t id, jamba_error *err) {
    const jamba_tokenizer *t = d->t;
    if (id < 0 || id >= t->n_vocab)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "detokenize: id %d outside the vocabulary [0, %lld)", id,
                       (long long)t->n_vocab);
    bool special = t->type[id] == JB_PIECE_CONTROL || (t->kind == JB_TOK_SPM && t->type[id] == JB_PIECE_UNKNOWN);
    if (t->kind == JB_TOK_SPM && t->type[id] != JB_PIECE_BYTE && !end_spm_byte_run(&d->pending))
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "detokenize: out of memory");
    jb_bytes *b = &d->scratch, tmp = {0};
    b->n = 0;
    bool ok = true, is_byte = false;
    if (special && !d->keep_special) {
        if (!(t->kind == JB_TOK_SPM && t->type[id] == JB_PIECE_UNKNOWN))
            return JAMBA_OK;
        ok = put(b, " \xE2\x81\x87 ", 5); /* sentencepiece renders unk as " ⁇ " */
    } else {
        ok = put(b, t->piece[id], t->piece_len[id]);
        if (ok && !special)
            ok = t->kind == JB_TOK_HF ? hf_token(t, b, &tmp, !d->started, &is_byte)
                                      : spm_token(t, id, b, &tmp, !d->started);
    }
    jb_free(tmp.p);
    if (ok && is_byte) {
        ok = put(&d->run, b->p, 1);
        d->run_tokens++;
    } else if (ok) {
        ok = end_run(d) && put(&d->pending, b->p, (size_t)b->n);
    }
    if (!ok)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "detokenize: out of memory");
    d->started = true;
    return JAMBA_OK;
}

/* Move the complete characters of pending to out; invalid bytes become U+FFFD; at the end (final) an
 * incomplete character becomes U+FFFD too. */
static bool release(jamba_stream_decoder *d, bool final) {
    int64_t i = 0;
    while (i < d->pending.n) {
        const uint8_t *s = (const uint8_t *)d->pending.p + i;
        size_t left = (size_t)(d->pending.n - i);
        uint32_t cp;
        int k = jb_utf8_decode(s, left, &cp);
        if (k > 0) {
            if (!put(&d->out, s, (size_t)k))
                return false;
            i += k;
        } else if (jb_utf8_incomplete(s, left)) {
            if (!final)
                break;
            /* an incomplete tail: one U+FFFD, or one per byte for sentencepiece */
            for (int64_t r = d->t->kind == JB_TOK_SPM ? (int64_t)left : 1; r > 0; r--)
                if (!put(&d->out, JB_UTF8_REPLACEMENT, 3))
                    return false;
            i = d->pending.n;
        } else {
            if (!put(&d->out, JB_UTF8_REPLACEMENT, 3))
                return false;
            i += d->t->kind == JB_TOK_SPM ? 1 : (int64_t)jb_utf8_invalid_len(s, left);
        }
    }
    if (i > 0) {
        memmove(d->pending.p, d->pending.p + i, (size_t)(d->pending.n - i));
        d->pending.n -= i;
    }
    return true;
}

jamba_status jamba_stream_decoder_create(const jamba_tokenizer *t, bool keep_special, jamba_stream_decoder **out,
                                         jamba_error *err) {
    if (out == NULL || t == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_stream_decoder_create: NULL argument");
    *out = jb_calloc(1, sizeof **out);
    if (*out == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "detokenize: out of memory");
    (*out)->t = t;
    (*out)->keep_special = keep_special;
    return JAMBA_OK;
}

void jamba_stream_decoder_free(jamba_stream_decoder *d) {
    if (d == NULL)
        return;
    jb_free(d->run.p);
    jb_free(d->pending.p);
    jb_free(d->out.p);
    jb_free(d->scratch.p);
    jb_free(d);
}

static jamba_status finish(jamba_stream_decoder *d, bool final, const char **text, size_t *len, jamba_error *err) {
    d->out.n = 0;
    if ((final && !end_run(d)) || !release(d, final) || !put(&d->out, "", 0))
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "detokenize: out of memory");
    if (text)
        *text = d->out.p;
    if (len)
        *len = (size_t)d->out.n;
    return JAMBA_OK;
}

jamba_status jamba_stream_decoder_push(jamba_stream_decoder *d, int32_t id, const char **text, size_t *len,
                                       jamba_error *err) {
    if (d == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_stream_decoder_push: NULL decoder");
    JB_TRY(push_token(d, id, err));
    return finish(d, false, text, len, err);
}

jamba_status jamba_stream_decoder_flush(jamba_stream_decoder *d, const char **text, size_t *len, jamba_error *err) {
    if (d == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_stream_decoder_flush: NULL decoder");
    JB_TRY(finish(d, true, text, len, err));
    d->started = false;
    return JAMBA_OK;
}

jamba_status jamba_detokenize(const jamba_tokenizer *t, const int32_t *ids, int64_t n_ids, bool keep_special,
                              char *text, size_t capacity, size_t *len, jamba_error *err) {
    if (t == NULL || len == NULL || (ids == NULL && n_ids > 0) || n_ids < 0 || (text == NULL && capacity > 0))
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_detokenize: invalid argument");
    jamba_stream_decoder d = {.t = t, .keep_special = keep_special};
    jamba_status st = JAMBA_OK;
    for (int64_t i = 0; i < n_ids && st == JAMBA_OK; i++)
        st = push_token(&d, ids[i], err);
    if (st == JAMBA_OK)
        st = finish(&d, true, NULL, NULL, err);
    if (st == JAMBA_OK) {
        *len = (size_t)d.out.n;
        if ((size_t)d.out.n + 1 > capacity)
            st = jb_fail(err, JAMBA_ERR_BUFFER_TOO_SMALL, "jamba_detokenize: %lld bytes do not fit in %zu",
                         (long long)d.out.n, capacity);
        else
            memcpy(text, d.out.p, (size_t)d.out.n + 1);
    }
    jb_free(d.run.p);
    jb_free(d.pending.p);
    jb_free(d.out.p);
    jb_free(d.scratch.p);
    return st;
}
