/*
 * bpe.h — byte-pair-encoding of one word (HF) or one text segment (SentencePiece), in O(n log n): a
 * linked list of symbols and a heap of candidate merges, best first, leftmost on ties. Stale heap entries
 * are recognised and skipped when popped, so no step rescans the word.
 *
 *   HF   symbols start as the word's characters mapped to ids (unknown characters: byte tokens with
 *        byte_fallback, else unk, fused when fuse_unk); a pair merges when the merges list has it, lowest
 *        rank first (tokenizers' word.rs).
 *   SPM  symbols start as characters; a pair merges when the concatenation is a NORMAL or USER_DEFINED
 *        piece, highest score first; symbols left that are not pieces become byte tokens (byte_fallback)
 *        or unk (sentencepiece's bpe_model.cc).
 */
#ifndef JB_BPE_H
#define JB_BPE_H

#include <stdint.h>

#include "tokenizer/tokenizer.h"

typedef struct jb_ids {
    int32_t *v;
    int64_t n, cap;
} jb_ids;

bool jb_ids_push(jb_ids *ids, int32_t id);

/* Scratch reused across words; zero-initialise, free with jb_bpe_free. */
typedef struct jb_bpe_ws {
    struct jb_symbol *sym;
    int64_t sym_cap;
    struct jb_merge *heap;
    int64_t heap_cap;
} jb_bpe_ws;

void jb_bpe_free(jb_bpe_ws *ws);

/* Append the ids of `word` (HF, already normalised, pre-tokenised and byte-mapped) to out. */
jamba_status jb_bpe_hf(const jamba_tokenizer *t, jb_bpe_ws *ws, const char *word, size_t len, jb_ids *out,
                       jamba_error *err);

/* Append the ids of `text` (SPM, already whitespace-escaped) to out. */
jamba_status jb_bpe_spm(const jamba_tokenizer *t, jb_bpe_ws *ws, const char *text, size_t len, jb_ids *out,
                        jamba_error *err);

#endif /* JB_BPE_H */
