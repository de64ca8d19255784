/*
 * tokenize.c — text → ids.
 *
 *   1. invalid UTF-8 in the input becomes U+FFFD
 *   2. added tokens are cut out first, leftmost-longest (special ones only with PARSE_SPECIAL; lstrip and
 *      rstrip absorb neighbouring whitespace)
 *   3. each stretch of text between them:
 *        HF   normalizer steps → pre-tokenizer steps (a list of words) → BPE per word
 *        SPM  dummy prefix (once, at the start of the input) and whitespace escaping → BPE
 *   4. BOS / EOS as the tokenizer's files say, with ADD_SPECIAL
 * A regex-engine failure (PCRE2's match limit on a pattern that backtracks too much) fails the call, naming
 * the file and the pattern: text is never cut wrongly and reported as success. The ids never exceed
 * jamba_tokenizer_max_ids (tokenizer.c bounds how far the steps can grow a text; tokenizer_json.c refuses
 * tokenizers past JB_TOKENIZER_MAX_GROWTH).
 */
#include "tokenizer/tokenizer.h"

#include "base/alloc.h"
#include "tokenizer/bpe.h"
#include "base/error.h"
#include "base/utf8.h"

#include <stdio.h>
#include <string.h>

/* ---- the added-token trie --------------------------------------------------------------------- */

static int32_t trie_child(const jamba_tokenizer *t, int32_t node, uint8_t byte) {
    for (int32_t c = t->trie[node].child; c >= 0; c = t->trie[c].sibling)
        if (t->trie[c].byte == byte)
            return c;
    return -1;
}

jamba_status jb_tokenizer_build_matcher(jamba_tokenizer *t, jamba_error *err) {
    int64_t nodes = 1;
    for (int64_t i = 0; i < t->n_added; i++)
        nodes += t->added[i].len;
    if (nodes > INT32_MAX || (t->trie = jb_malloc((size_t)nodes * sizeof *t->trie)) == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "tokenizer: out of memory for the added-token matcher");
    t->trie[0] = (jb_trie_node){.child = -1, .sibling = -1, .added = -1};
    t->n_trie = 1;
    for (int64_t i = 0; i < t->n_added; i++) {
        int32_t node = 0;
        for (uint32_t k = 0; k < t->added[i].len; k++) {
            uint8_t b = (uint8_t)t->added[i].text[k];
            int32_t c = trie_child(t, node, b);
            if (c < 0) {
                c = (int32_t)t->n_trie++;
                t->trie[c] = (jb_trie_node){.child = -1, .sibling = t->trie[node].child, .added = -1, .byte = b};
                t->trie[node].child = c;
            }
            node = c;
        }
        if (t->trie[node].added < 0) /* the same text twice: the first listed wins */
            t->trie[node].added = (int32_t)i;
    }
    return JAMBA_OK;
}

/* The longest allowed added token starting at s[0..n), as an index into added[], or -1. */
static int64_t match_added(const jamba_tokenizer *t, const char *s, size_t n, bool parse_special) {
    int64_t best = -1;
    int32_t node = 0;
    for (size_t k = 0; k < n; k++) {
        node = trie_child(t, node, (uint8_t)s[k]);
        if (node < 0)
            break;
        int32_t a = t->trie[node].added;
        if (a >= 0 && (parse_special || !t->added[a].special))
            best = a;
    }
    return best;
}

/* ---- buffers ---------------------------------------------------------------------------------- */

typedef struct jb_text {
    char *p;
    int64_t n, cap;
} jb_text;

/* Append n bytes; `s` may point into the buffer itself (growing it moves the bytes). */
static bool text_append(jb_text *b, const void *s, size_t n) {
    const char *src = s;
    bool inside = b->p != NULL && src >= b->p && src < b->p + b->cap;
    int64_t at = inside ? src - b->p : 0;
    if (!jb_grow((void **)&b->p, &b->cap, b->n + (int64_t)n + 1, 1))
        return false;
    if (inside)
        src = b->p + at;
    memmove(b->p + b->n, src, n);
    b->n += (int64_t)n;
    b->p[b->n] = '\0';
    return true;
}

typedef struct jb_word {
    int64_t off, len; /* into the arena */
} jb_word;

typedef struct jb_words {
    jb_word *w;
    int64_t n, cap;
} jb_words;

static bool words_push(jb_words *ws, int64_t off, int64_t len) {
    if (len == 0)
        return true;
    if (!jb_grow((void **)&ws->w, &ws->cap, ws->n + 1, sizeof *ws->w))
        return false;
    ws->w[ws->n++] = (jb_word){off, len};
    return true;
}

/* Everything one jamba_tokenize call allocates. */
typedef struct encoder {
    const jamba_tokenizer *t;
    jb_text arena;        /* normalised and transformed text */
    jb_words words, next; /* pre-tokenizer input and output */
    jb_bpe_ws bpe;
    jb_ids ids;
    pcre2_match_data *md;
    jamba_error *err;
} encoder;

static jamba_status oom(encoder *e) { return jb_fail(e->err, JAMBA_ERR_OUT_OF_MEMORY, "tokenize: out of memory"); }

/* ---- matching: (start, end, is_match) pieces covering a string ---------------------------------- */

typedef struct span {
    int64_t start, end;
    bool match;
} span;

typedef struct spans {
    span *s;
    int64_t n, cap;
} spans;

static bool spans_push(spans *sp, int64_t start, int64_t end, bool match) {
    if (!jb_grow((void **)&sp->s, &sp->cap, sp->n + 1, sizeof *sp->s))
        return false;
    sp->s[sp->n++] = (span){start, end, match};
    return true;
}

/* Bytes of the character at s (at least 1, also past the end or on invalid input). */
static int64_t char_step(const char *s, int64_t n) {
    uint32_t cp;
    int k = n > 0 ? jb_utf8_decode((const uint8_t *)s, (size_t)n, &cp) : 0;
    return k > 0 ? k : 1;
}

static const char *find_literal(const char *s, int64_t n, const char *lit, size_t lit_len) {
    if (lit_len == 0)
        return NULL;
    for (const char *p = s; (p = memchr(p, lit[0], (size_t)(n - (p - s)))) != NULL; p++)
        if (n - (p - s) >= (int64_t)lit_len && memcmp(p, lit, lit_len) == 0)
            return p;
        else if (n - (p - s) < (int64_t)lit_len)
            return NULL;
    return NULL;
}

/* What find_matches looks for: a compiled regex (named in messages by its source and its step), else a
 * literal. */
typedef struct rule {
    const pcre2_code *re;
    const char *pattern;  /* re's source */
    const char *where;    /* "normalizer Replace", "pre_tokenizer Split", ... */
    const char *lit;
    size_t lit_len;
} rule;

/* A regex-engine failure (the match limit on a pattern that backtracks too much, no memory, ...): an error
 * naming the tokenizer file and the rule, never taken for "no more matches". */
static jamba_status regex_failure(encoder *e, const rule *r, int rc, int64_t at, int64_t n) {
    PCRE2_UCHAR msg[160];
    if (pcre2_get_error_message(rc, msg, sizeof msg) < 0)
        snprintf((char *)msg, sizeof msg, "PCRE2 error %d", rc);
    jamba_status st = rc == PCRE2_ERROR_NOMEMORY ? JAMBA_ERR_OUT_OF_MEMORY : JAMBA_ERR_BAD_TOKENIZER;
    return jb_fail(e->err, st, "%s: %s regex \"%.200s\" failed at byte %lld of a %lld-byte text: %s",
                   e->t->source ? e->t->source : "tokenizer", r->where, r->pattern ? r->pattern : "?", (long long)at,
                   (long long)n, (const char *)msg);
}

/* The next match at or after `at`: *found false when there is none. */
static jamba_status next_match(encoder *e, const char *s, int64_t n, int64_t at, const rule *r, bool *found,
                               int64_t *ms, int64_t *me) {
    *found = false;
    if (r->re == NULL) {
        const char *hit = find_literal(s + at, n - at, r->lit, r->lit_len);
        if (hit != NULL)
            *found = true, *ms = hit - s, *me = *ms + (int64_t)r->lit_len;
        return JAMBA_OK;
    }
    /* the text is valid UTF-8 (sanitized) and `at` is a character boundary; without NO_UTF_CHECK PCRE2 would
     * re-validate the whole subject on every call, which is quadratic */
    int rc = pcre2_match(r->re, (PCRE2_SPTR)s, (PCRE2_SIZE)n, (PCRE2_SIZE)at, PCRE2_NO_UTF_CHECK, e->md, NULL);
    if (rc == PCRE2_ERROR_NOMATCH)
        return JAMBA_OK;
    if (rc < 0)
        return regex_failure(e, r, rc, at, n);
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
    *found = true, *ms = (int64_t)ov[0], *me = (int64_t)ov[1];
    return JAMBA_OK;
}

/* Non-overlapping matches of a regex or literal in s[0..n), leftmost first, gaps between them as
 * non-matches (tokenizers' find_matches). An empty regex match is a zero-length match (a split point). */
static jamba_status find_matches(encoder *e, const char *s, int64_t n, const rule *r, spans *out) {
    out->n = 0;
    int64_t prev = 0, at = 0;
    while (at <= n) {
        int64_t ms = 0, me = 0;
        bool found;
        JB_TRY(next_match(e, s, n, at, r, &found, &ms, &me));
        if (!found)
            break;
        if (ms > prev && !spans_push(out, prev, ms, false))
            return oom(e);
        if (!spans_push(out, ms, me, true))
            return oom(e);
        prev = me;
        /* after an empty match (a split point, as Oniguruma's iterator reports it) move on one character */
        at = me > ms ? me : ms + char_step(s + ms, n - ms);
    }
    return prev >= n || spans_push(out, prev, n, false) ? JAMBA_OK : oom(e);
}

/* Apply a split behaviour to the spans (match = delimiter), writing word ranges (relative) to out. */
static bool split_spans(const spans *sp, jb_split_behavior behavior, bool invert, int64_t base, jb_words *out) {
    /* pieces as (start, end) pairs; built in place in a small buffer */
    int64_t n = sp->n;
    span *v = sp->s;
    if (invert)
        for (int64_t i = 0; i < n; i++)
            v[i].match = !v[i].match;
    int64_t k = 0; /* pieces written back into v[0..k) */
    bool previous_match = false;
    switch (behavior) {
    case JB_SPLIT_REMOVED:
        for (int64_t i = 0; i < n; i++)
            if (!v[i].match)
                v[k++] = v[i];
        break;
    case JB_SPLIT_ISOLATED:
        k = n;
        break;
    case JB_SPLIT_MERGED_PREVIOUS:
        for (int64_t i = 0; i < n; i++) {
            bool m = v[i].match;
            if (m && !previous_match && k > 0)
                v[k - 1].end = v[i].end;
            else
                v[k++] = v[i];
            previous_match = m;
        }
        break;
    case JB_SPLIT_MERGED_NEXT: {
        /* walk backwards: a delimiter joins the piece after it unless that one is a delimiter too */
        int64_t w = n;
        for (int64_t i = n - 1; i >= 0; i--) {
            bool m = v[i].match;
            if (m && !previous_match && w < n)
                v[w].start = v[i].start;
            else
                v[--w] = v[i];
            previous_match = m;
        }
        memmove(v, v + w, (size_t)(n - w) * sizeof *v);
        k = n - w;
        break;
    }
    case JB_SPLIT_CONTIGUOUS:
        for (int64_t i = 0; i < n; i++) {
            bool m = v[i].match;
            if (i > 0 && m == previous_match && k > 0)
                v[k - 1].end = v[i].end;
            else
                v[k++] = v[i];
            previous_match = m;
        }
        break;
    }
    for (int64_t i = 0; i < k; i++)
        if (!words_push(out, base + v[i].start, v[i].end - v[i].start))
            return false;
    return true;
}

/* ---- HF normalizer ---------------------------------------------------------------------------- */

/* One Replace step: the text at arena[off, off + len) with every match of the rule replaced, appended. */
static jamba_status replace_step(encoder *e, const jb_norm_step *st, int64_t off, int64_t len, spans *sp) {
    const rule r = {st->re, st->pattern, "normalizer Replace", st->from, st->from_len};
    JB_TRY(find_matches(e, e->arena.p + off, len, &r, sp));
    for (int64_t i = 0; i < sp->n; i++) {
        bool ok = sp->s[i].match ? text_append(&e->arena, st->to, st->to_len)
                                 : text_append(&e->arena, e->arena.p + off + sp->s[i].start,
                                               (size_t)(sp->s[i].end - sp->s[i].start));
        if (!ok)
            return oom(e);
    }
    return JAMBA_OK;
}

/* Normalise s[0..n) into a new arena string at *out_off, *out_len bytes long. */
static jamba_status normalize(encoder *e, const char *s, int64_t n, int64_t *out_off, int64_t *out_len) {
    const jamba_tokenizer *t = e->t;
    int64_t off = e->arena.n;
    if (!text_append(&e->arena, s, (size_t)n))
        return oom(e);
    int64_t len = n;
    spans sp = {0};
    jamba_status status = JAMBA_OK;
    for (int64_t k = 0; k < t->n_norm && status == JAMBA_OK; k++) {
        const jb_norm_step *st = &t->norm[k];
        int64_t next = e->arena.n;
        if (st->kind == JB_NORM_PREPEND) {
            if (len == 0)
                continue;
            if (!text_append(&e->arena, st->to, st->to_len) || !text_append(&e->arena, e->arena.p + off, (size_t)len))
                status = oom(e);
        } else {
            status = replace_step(e, st, off, len, &sp);
        }
        len = e->arena.n - next;
        off = next;
    }
    jb_free(sp.s);
    *out_off = off;
    *out_len = len;
    return status;
}

/* ---- HF pre-tokenizer ------------------------------------------------------------------------- */

/* Metaspace: spaces → replacement, maybe prepend it, maybe split before each one. */
static bool pre_metaspace(encoder *e, const jb_pre_step *st, jb_word w, bool input_start) {
    const char *r = st->replacement;
    size_t rl = st->replacement_len;
    int64_t off = e->arena.n;
    bool prepend = st->prepend == JB_PREPEND_ALWAYS || (st->prepend == JB_PREPEND_FIRST && input_start);
    const char *src = e->arena.p + w.off;
    /* tokenizers replaces spaces first, then prepends unless the text now starts with the replacement */
    bool starts_with_it = w.len > 0 && (src[0] == ' ' || (w.len >= (int64_t)rl && memcmp(src, r, rl) == 0));
    if (prepend && !starts_with_it && !text_append(&e->arena, r, rl))
        return false;
    for (int64_t i = 0; i < w.len; i++) {
        src = e->arena.p + w.off; /* the arena may move while appending */
        bool ok = src[i] == ' ' ? text_append(&e->arena, r, rl) : text_append(&e->arena, src + i, 1);
        if (!ok)
            return false;
    }
    int64_t len = e->arena.n - off;
    if (!st->split)
        return words_push(&e->next, off, len);
    /* split with the replacement merged into the following piece */
    int64_t start = 0;
    for (int64_t i = (int64_t)rl; i + (int64_t)rl <= len; i++)
        if (memcmp(e->arena.p + off + i, r, rl) == 0) {
            if (!words_push(&e->next, off + start, i - start))
                return false;
            start = i;
            i += (int64_t)rl - 1;
        }
    return words_push(&e->next, off + start, len - start);
}

/* Split: the word cut at the rule's matches, kept or dropped as the behaviour says. */
static jamba_status pre_split(encoder *e, const jb_pre_step *st, jb_word w, spans *sp) {
    const rule r = {st->re, st->pattern, "pre_tokenizer Split", st->literal, st->literal_len};
    JB_TRY(find_matches(e, e->arena.p + w.off, w.len, &r, sp));
    return split_spans(sp, st->behavior, st->invert, w.off, &e->next) ? JAMBA_OK : oom(e);
}

/* Digits: numeric characters (a \\p{N} regex, one character per match) isolated one by one, or as runs. */
static jamba_status pre_digits(encoder *e, const jb_pre_step *st, jb_word w, spans *sp) {
    const rule r = {st->re, st->pattern, "pre_tokenizer Digits", NULL, 0};
    JB_TRY(find_matches(e, e->arena.p + w.off, w.len, &r, sp));
    return split_spans(sp, st->individual_digits ? JB_SPLIT_ISOLATED : JB_SPLIT_CONTIGUOUS, false, w.off, &e->next)
               ? JAMBA_OK
               : oom(e);
}

/* Every byte of the pieces → its byte-level alphabet character, one word per piece. */
static bool bytelevel_map(encoder *e, const jb_words *pieces) {
    bool ok = true;
    for (int64_t i = 0; ok && i < pieces->n; i++) {
        int64_t start = e->arena.n;
        for (int64_t b = 0; ok && b < pieces->w[i].len; b++) {
            uint8_t enc[4];
            int k = jb_utf8_encode(jb_bytelevel_char((uint8_t)e->arena.p[pieces->w[i].off + b]), enc);
            ok = text_append(&e->arena, enc, (size_t)k);
        }
        ok = ok && words_push(&e->next, start, e->arena.n - start);
    }
    return ok;
}

/* ByteLevel: optional leading space, optional GPT-2 split, then every byte → its alphabet character. */
static jamba_status pre_bytelevel(encoder *e, const jb_pre_step *st, jb_word w, spans *sp) {
    jb_words pieces = {0};
    int64_t off = w.off, len = w.len;
    if (st->add_prefix_space && !(len > 0 && e->arena.p[off] == ' ')) {
        int64_t n0 = e->arena.n;
        if (!text_append(&e->arena, " ", 1) || !text_append(&e->arena, e->arena.p + off, (size_t)len))
            return oom(e);
        off = n0, len = e->arena.n - n0;
    }
    jamba_status status = JAMBA_OK;
    if (st->use_regex) {
        const rule r = {st->re, st->pattern, "pre_tokenizer ByteLevel", NULL, 0};
        status = find_matches(e, e->arena.p + off, len, &r, sp);
        if (status == JAMBA_OK && !split_spans(sp, JB_SPLIT_ISOLATED, false, off, &pieces))
            status = oom(e);
    } else if (!words_push(&pieces, off, len)) {
        status = oom(e);
    }
    if (status == JAMBA_OK && !bytelevel_map(e, &pieces))
        status = oom(e);
    jb_free(pieces.w);
    return status;
}

static jamba_status pre_step(encoder *e, const jb_pre_step *step, jb_word w, bool first_of_input, spans *sp) {
    switch (step->kind) {
    case JB_PRE_METASPACE:
        return pre_metaspace(e, step, w, first_of_input) ? JAMBA_OK : oom(e);
    case JB_PRE_SPLIT:
        return pre_split(e, step, w, sp);
    case JB_PRE_DIGITS:
        return pre_digits(e, step, w, sp);
    case JB_PRE_BYTELEVEL:
        return pre_bytelevel(e, step, w, sp);
    }
    return JAMBA_OK;
}

static jamba_status pre_tokenize(encoder *e, int64_t off, int64_t len, bool input_start) {
    const jamba_tokenizer *t = e->t;
    e->words.n = 0;
    if (!words_push(&e->words, off, len))
        return oom(e);
    spans sp = {0};
    jamba_status st = JAMBA_OK;
    for (int64_t k = 0; k < t->n_pre && st == JAMBA_OK; k++) {
        e->next.n = 0;
        for (int64_t i = 0; i < e->words.n && st == JAMBA_OK; i++)
            st = pre_step(e, &t->pre[k], e->words.w[i], input_start && i == 0, &sp);
        jb_words tmp = e->words;
        e->words = e->next;
        e->next = tmp;
    }
    jb_free(sp.s);
    return st;
}

/* ---- text stretches --------------------------------------------------------------------------- */

static jamba_status encode_hf(encoder *e, const char *s, int64_t n, bool input_start) {
    if (n == 0)
        return JAMBA_OK;
    e->arena.n = 0;
    int64_t off = 0, len = 0;
    JB_TRY(normalize(e, s, n, &off, &len));
    JB_TRY(pre_tokenize(e, off, len, input_start));
    for (int64_t i = 0; i < e->words.n; i++)
        JB_TRY(jb_bpe_hf(e->t, &e->bpe, e->arena.p + e->words.w[i].off, (size_t)e->words.w[i].len, &e->ids, e->err));
    return JAMBA_OK;
}

static jamba_status encode_spm(encoder *e, const char *s, int64_t n, bool dummy_prefix) {
    const jamba_tokenizer *t = e->t;
    e->arena.n = 0;
    static const char space_mark[] = "\xE2\x96\x81"; /* U+2581 */
    bool ok = !dummy_prefix || text_append(&e->arena, space_mark, 3);
    for (int64_t i = 0; ok && i < n; i++)
        ok = s[i] == ' ' && t->escape_whitespaces ? text_append(&e->arena, space_mark, 3)
                                                  : text_append(&e->arena, s + i, 1);
    if (!ok)
        return oom(e);
    if (e->arena.n == 0)
        return JAMBA_OK;
    return jb_bpe_spm(t, &e->bpe, e->arena.p, (size_t)e->arena.n, &e->ids, e->err);
}

static jamba_status encode_text(encoder *e, const char *s, int64_t n, int64_t at, bool *dummy_pending) {
    if (e->t->kind == JB_TOK_HF)
        return encode_hf(e, s, n, at == 0);
    bool prefix = *dummy_pending;
    *dummy_pending = false;
    return encode_spm(e, s, n, prefix);
}

/* ---- whitespace around added tokens ----------------------------------------------------------- */

static int64_t skip_space_back(const char *s, int64_t start, int64_t floor) {
    while (start > floor) {
        int64_t p = start - 1;
        while (p > floor && ((uint8_t)s[p] & 0xc0) == 0x80)
            p--;
        uint32_t cp;
        if (jb_utf8_decode((const uint8_t *)s + p, (size_t)(start - p), &cp) != start - p || !jb_unicode_is_space(cp))
            break;
        start = p;
    }
    return start;
}

static int64_t skip_space_forward(const char *s, int64_t end, int64_t n) {
    while (end < n) {
        uint32_t cp;
        int k = jb_utf8_decode((const uint8_t *)s + end, (size_t)(n - end), &cp);
        if (k == 0 || !jb_unicode_is_space(cp))
            break;
        end += k;
    }
    return end;
}

/* ---- the whole input -------------------------------------------------------------------------- */

/* Valid UTF-8 copy of the input, or the input itself when it is valid. Invalid bytes become U+FFFD: one per
 * byte as sentencepiece does (per_byte), else one per maximal invalid subsequence as Rust and Python do. */
static const char *sanitize(const char *text, size_t len, bool per_byte, jb_text *copy, int64_t *n) {
    if (jb_utf8_valid((const uint8_t *)text, len)) {
        *n = (int64_t)len;
        return text;
    }
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        int k = jb_utf8_decode((const uint8_t *)text + i, len - i, &cp);
        if (!(k > 0 ? text_append(copy, text + i, (size_t)k) : text_append(copy, JB_UTF8_REPLACEMENT, 3)))
            return NULL;
        i += k > 0 ? (size_t)k : per_byte ? 1 : jb_utf8_invalid_len((const uint8_t *)text + i, len - i);
    }
    *n = copy->n;
    return copy->p ? copy->p : "";
}

static jamba_status encode_all(encoder *e, const char *s, int64_t n, int flags) {
    const jamba_tokenizer *t = e->t;
    const bool parse_special = flags & JAMBA_TOKENIZE_PARSE_SPECIAL;
    bool dummy_pending = t->kind == JB_TOK_SPM && t->add_dummy_prefix && n > 0;
    if ((flags & JAMBA_TOKENIZE_ADD_SPECIAL) && t->add_bos && t->bos_id >= 0 && !jb_ids_push(&e->ids, t->bos_id))
        return oom(e);
    int64_t seg = 0;
    for (int64_t pos = 0; pos < n;) {
        int64_t a = t->n_added ? match_added(t, s + pos, (size_t)(n - pos), parse_special) : -1;
        if (a < 0) {
            pos++;
            continue;
        }
        const jb_added_token *tok = &t->added[a];
        int64_t start = tok->lstrip ? skip_space_back(s, pos, seg) : pos;
        int64_t end = pos + tok->len;
        if (tok->rstrip)
            end = skip_space_forward(s, end, n);
        /* an empty stretch before a special token keeps the dummy prefix for the text after it (as
         * transformers' SentencePiece tokenizers do); before a user-defined symbol it is spent, as in
         * sentencepiece */
        if (start > seg || !tok->special)
            JB_TRY(encode_text(e, s + seg, start - seg, seg, &dummy_pending));
        if (!jb_ids_push(&e->ids, tok->id))
            return oom(e);
        seg = pos = end;
    }
    JB_TRY(encode_text(e, s + seg, n - seg, seg, &dummy_pending));
    if ((flags & JAMBA_TOKENIZE_ADD_SPECIAL) && t->add_eos && t->n_eos > 0 && !jb_ids_push(&e->ids, t->eos_ids[0]))
        return oom(e);
    return JAMBA_OK;
}

static bool needs_match_data(const jamba_tokenizer *t) {
    for (int64_t i = 0; i < t->n_norm; i++)
        if (t->norm[i].re)
            return true;
    for (int64_t i = 0; i < t->n_pre; i++)
        if (t->pre[i].re || t->pre[i].kind == JB_PRE_BYTELEVEL)
            return true;
    return false;
}

jamba_status jamba_tokenize(const jamba_tokenizer *t, const char *text, size_t len, int flags, int32_t *ids,
                            int64_t capacity, int64_t *n_ids, jamba_error *err) {
    if (t == NULL || (text == NULL && len > 0) || n_ids == NULL || capacity < 0 || (ids == NULL && capacity > 0))
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_tokenize: invalid argument");
    *n_ids = 0;
    encoder e = {.t = t, .err = err};
    jb_text clean = {0};
    int64_t n = 0;
    const char *s = sanitize(text ? text : "", len, t->kind == JB_TOK_SPM, &clean, &n);
    jamba_status st = s ? JAMBA_OK : oom(&e);
    if (st == JAMBA_OK && needs_match_data(t) && (e.md = pcre2_match_data_create(32, NULL)) == NULL)
        st = oom(&e);
    if (st == JAMBA_OK)
        st = encode_all(&e, s, n, flags);
    if (st == JAMBA_OK) {
        *n_ids = e.ids.n;
        if (e.ids.n > capacity)
            st = jb_fail(err, JAMBA_ERR_BUFFER_TOO_SMALL, "jamba_tokenize: %lld ids do not fit in %lld",
                         (long long)e.ids.n, (long long)capacity);
        else if (e.ids.n > 0)
            memcpy(ids, e.ids.v, (size_t)e.ids.n * sizeof *ids);
    }
    pcre2_match_data_free(e.md);
    jb_bpe_free(&e.bpe);
    jb_free(e.ids.v);
    jb_free(e.arena.p);
    jb_free(e.words.w);
    jb_free(e.next.w);
    jb_free(clean.p);
    return st;
}
