/*
 * bpe.c — the merge loops of bpe.h.
 */
#include "tokenizer/bpe.h"

#include "base/alloc.h"
#include "base/error.h"
#include "base/utf8.h"

#include <string.h>

typedef struct jb_symbol {
    int64_t start, len;   /* byte range in the word; len 0 = merged away */
    int64_t prev, next;   /* -1 at the ends */
    int32_t id;           /* vocabulary id, or -1 (SPM: not a piece) */
} jb_symbol;

typedef struct jb_merge {
    double priority;      /* higher first: -rank (HF) or the piece score (SPM) */
    int64_t left, right;
    int64_t size;         /* SPM: byte length of the merged piece, to detect stale entries */
    int32_t new_id;
} jb_merge;

bool jb_ids_push(jb_ids *ids, int32_t id) {
    if (!jb_grow((void **)&ids->v, &ids->cap, ids->n + 1, sizeof *ids->v))
        return false;
    ids->v[ids->n++] = id;
    return true;
}

void jb_bpe_free(jb_bpe_ws *ws) {
    jb_free(ws->sym);
    jb_free(ws->heap);
    memset(ws, 0, sizeof *ws);
}

/* ---- heap: a max-heap on (priority, -left) --------------------------------------------------- */

static bool better(const jb_merge *a, const jb_merge *b) {
    if (a->priority != b->priority)
        return a->priority > b->priority;
    return a->left < b->left;
}

static bool heap_push(jb_bpe_ws *ws, int64_t *n, jb_merge m) {
    if (!jb_grow((void **)&ws->heap, &ws->heap_cap, *n + 1, sizeof *ws->heap))
        return false;
    int64_t i = (*n)++;
    while (i > 0) {
        int64_t parent = (i - 1) / 2;
        if (!better(&m, &ws->heap[parent]))
            break;
        ws->heap[i] = ws->heap[parent];
        i = parent;
    }
    ws->heap[i] = m;
    return true;
}

static jb_merge heap_pop(jb_bpe_ws *ws, int64_t *n) {
    jb_merge top = ws->heap[0];
    jb_merge last = ws->heap[--*n];
    int64_t i = 0;
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && better(&ws->heap[c + 1], &ws->heap[c]))
            c++;
        if (!better(&ws->heap[c], &last))
            break;
        ws->heap[i] = ws->heap[c];
        i = c;
    }
    if (*n > 0)
        ws->heap[i] = last;
    return top;
}

/* ---- symbols ---------------------------------------------------------------------------------- */

static bool add_symbol(jb_bpe_ws *ws, int64_t *n, int64_t start, int64_t len, int32_t id) {
    if (!jb_grow((void **)&ws->sym, &ws->sym_cap, *n + 1, sizeof *ws->sym))
        return false;
    ws->sym[*n] = (jb_symbol){.start = start, .len = len, .prev = *n - 1, .next = -1, .id = id};
    if (*n > 0)
        ws->sym[*n - 1].next = *n;
    (*n)++;
    return true;
}

/* Length of the UTF-8 character at s (input is valid UTF-8; 1 as a fallback). */
static int64_t char_len(const char *s, size_t n) {
    uint32_t cp;
    int k = jb_utf8_decode((const uint8_t *)s, n, &cp);
    return k > 0 ? k : 1;
}

static void merge_into_left(jb_symbol *sym, const jb_merge *m) {
    jb_symbol *l = &sym[m->left], *r = &sym[m->right];
    l->len += r->len;
    l->id = m->new_id;
    l->next = r->next;
    if (r->next >= 0)
        sym[r->next].prev = m->left;
    r->len = 0;
}

/* ---- HF: merges by rank ----------------------------------------------------------------------- */

static bool hf_candidate(const jamba_tokenizer *t, const jb_symbol *sym, int64_t left, jb_merge *m) {
    int64_t right = sym[left].next;
    if (right < 0 || sym[left].id < 0 || sym[right].id < 0)
        return false;
    int32_t rank = jb_u64map_get(&t->merges, (uint64_t)(uint32_t)sym[left].id << 32 | (uint32_t)sym[right].id);
    if (rank < 0)
        return false;
    *m = (jb_merge){.priority = -(double)rank, .left = left, .right = right, .new_id = t->merge_result[rank]};
    return true;
}

/* The initial symbols of an HF word: characters, with byte fallback or (fused) unk for unknown ones. */
static bool hf_initial_symbols(const jamba_tokenizer *t, jb_bpe_ws *ws, const char *w, size_t len, int64_t *n) {
    int64_t unk_start = -1, unk_len = 0;
    for (size_t i = 0; i < len;) {
        int64_t cl = char_len(w + i, len - i);
        int32_t id = jb_strmap_get(&t->vocab, w + i, (size_t)cl);
        bool bytes_ok = id < 0 && t->byte_fallback;
        for (int64_t b = 0; bytes_ok && b < cl; b++)
            bytes_ok = t->byte_id[(uint8_t)w[i + (size_t)b]] >= 0;
        if (id >= 0 || bytes_ok) {
            if (unk_start >= 0 && !add_symbol(ws, n, unk_start, unk_len, t->unk_id))
                return false;
            unk_start = -1;
            if (id >= 0 && !add_symbol(ws, n, (int64_t)i, cl, id))
                return false;
            for (int64_t b = 0; id < 0 && b < cl; b++)
                if (!add_symbol(ws, n, (int64_t)i + b, 1, t->byte_id[(uint8_t)w[i + (size_t)b]]))
                    return false;
        } else if (t->unk_id >= 0) { /* (a character with neither a token nor an unk is dropped, as in tokenizers) */
            if (unk_start >= 0 && t->fuse_unk) {
                unk_len += cl;
            } else {
                if (unk_start >= 0 && !add_symbol(ws, n, unk_start, unk_len, t->unk_id))
                    return false;
                unk_start = (int64_t)i;
                unk_len = cl;
            }
        }
        i += (size_t)cl;
    }
    return unk_start < 0 || add_symbol(ws, n, unk_start, unk_len, t->unk_id);
}

jamba_status jb_bpe_hf(const jamba_tokenizer *t, jb_bpe_ws *ws, const char *w, size_t len, jb_ids *out,
                       jamba_error *err) {
    if (len == 0)
        return JAMBA_OK;
    if (t->ignore_merges) {
        int32_t whole = jb_strmap_get(&t->vocab, w, len);
        if (whole >= 0)
            return jb_ids_push(out, whole) ? JAMBA_OK : jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "tokenize: out of memory");
    }
    int64_t n = 0, heap_n = 0;
    if (!hf_initial_symbols(t, ws, w, len, &n))
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "tokenize: out of memory");
    jb_merge m;
    for (int64_t i = 0; i + 1 < n; i++)
        if (hf_candidate(t, ws->sym, i, &m) && !heap_push(ws, &heap_n, m))
            return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "tokenize: out of memory");
    while (heap_n > 0) {
        jb_merge top = heap_pop(ws, &heap_n);
        jb_merge now;
        /* stale: the left symbol is gone, or its pair with the current right neighbour makes another token
         * (tokenizers compares only the resulting id, so a different pair making the same token merges) */
        if (ws->sym[top.left].len == 0 || !hf_candidate(t, ws->sym, top.left, &now) || now.new_id != top.new_id)
            continue;
        merge_into_left(ws->sym, &now);
        int64_t prev = ws->sym[top.left].prev;
        if ((prev >= 0 && hf_candidate(t, ws->sym, prev, &m) && !heap_push(ws, &heap_n, m)) ||
            (hf_candidate(t, ws->sym, top.left, &m) && !heap_push(ws, &heap_n, m)))
            return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "tokenize: out of memory");
    }
    for (int64_t i = 0; i < n; i++)
        if (ws->sym[i].len > 0 && !jb_ids_push(out, ws->sym[i].id))
            return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "tokenize: out of memory");
    return JAMBA_OK;
}

/* ---- SPM: merges by piece score --------------------------------------------------------------- */

static bool spm_candidate(const jamba_tokenizer *t, const jb_symbol *sym, const char *text, int64_t left,
                          jb_merge *m) {
    int64_t right = sym[left].next;
    if (right < 0)
        return false;
    int64_t size = sym[left].len + sym[right].len;
    int32_t id = jb_strmap_get(&t->vocab, text + sym[left].start, (size_t)size);
    if (id < 0 || (t->type[id] != JB_PIECE_NORMAL && t->type[id] != JB_PIECE_USER))
        return false;
    *m = (jb_merge){.priority = t->score[id], .left = left, .right = right, .size = size, .new_id = id};
    return true;
}

jamba_status jb_bpe_spm(const jamba_tokenizer *t, jb_bpe_ws *ws, const char *text, size_t len, jb_ids *out,
                        jamba_error *err) {
    int64_t n = 0, heap_n = 0;
    for (size_t i = 0; i < len;) {
        int64_t cl = char_len(text + i, len - i);
        if (!add_symbol(ws, &n, (int64_t)i, cl, -1))
            return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "tokenize: out of memory");
        i += (size_t)cl;
    }
    jb_merge m;
    for (int64_t i = 0; i + 1 < n; i++)
        if (spm_candidate(t, ws->sym, text, i, &m) && !heap_push(ws, &heap_n, m))
            return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "tokenize: out of memory");
    while (heap_n > 0) {
        jb_merge top = heap_pop(ws, &heap_n);
        const jb_symbol *l = &ws->sym[top.left], *r = &ws->sym[top.right];
        if (l->len == 0 || r->len == 0 || l->next != top.right || l->len + r->len != top.size)
            continue; /* stale */
        merge_into_left(ws->sym, &top);
        int64_t prev = ws->sym[top.left].prev;
        if ((prev >= 0 && spm_candidate(t, ws->sym, text, prev, &m) && !heap_push(ws, &heap_n, m)) ||
            (spm_candidate(t, ws->sym, text, top.left, &m) && !heap_push(ws, &heap_n, m)))
            return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "tokenize: out of memory");
    }
    bool prev_unk = false;
    for (int64_t i = 0; i < n; i++) {
        const jb_symbol *s = &ws->sym[i];
        if (s->len == 0)
            continue;
        int32_t id = jb_strmap_get(&t->vocab, text + s->start, (size_t)s->len);
        bool ok = true, unk = false;
        if (id >= 0)
            ok = jb_ids_push(out, id);
        else if (t->byte_fallback)
            for (int64_t b = 0; ok && b < s->len; b++)
                ok = jb_ids_push(out, t->byte_id[(uint8_t)text[s->start + b]]);
        else if (!prev_unk) /* sentencepiece merges a run of unknown pieces into one */
            ok = jb_ids_push(out, t->unk_id), unk = true;
        else
            unk = true;
        prev_unk = unk;
        if (!ok)
            return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "tokenize: out of memory");
    }
    return JAMBA_OK;
}
