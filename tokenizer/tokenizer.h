/*
 * tokenizer.h — the jamba_tokenizer object (internal layout shared by the file readers in ckpt/ and the
 * encoder/decoder in runtime/).
 *
 * Two flavours share one structure:
 *   JB_TOK_HF   a Hugging Face tokenizer.json: added tokens, a normalizer, a pre-tokenizer, a BPE model
 *               ranked by its merges list, a decoder chain, a post-processor (BOS/EOS)
 *   JB_TOK_SPM  a SentencePiece BPE tokenizer.model: user-defined symbols, identity normalisation with
 *               optional dummy prefix and whitespace escaping, BPE by piece score, byte fallback
 */
#ifndef JB_TOKENIZER_H
#define JB_TOKENIZER_H

#include <stdbool.h>
#include <stdint.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "jamba.h"
#include "base/strmap.h"

typedef enum jb_tok_kind { JB_TOK_HF = 1, JB_TOK_SPM = 2 } jb_tok_kind;

/* SentencePiece piece types (the protobuf enum values); HF added special tokens count as CONTROL. */
enum { JB_PIECE_NORMAL = 1, JB_PIECE_UNKNOWN = 2, JB_PIECE_CONTROL = 3, JB_PIECE_USER = 4, JB_PIECE_UNUSED = 5,
       JB_PIECE_BYTE = 6 };

/* A token matched as a whole in the input before any other processing. */
typedef struct jb_added_token {
    const char *text; /* points into the piece storage */
    uint32_t len;
    int32_t id;
    bool special;     /* matched only with JAMBA_TOKENIZE_PARSE_SPECIAL */
    bool lstrip, rstrip;
} jb_added_token;

/* A byte trie over the added tokens, for leftmost-longest matching. Node 0 is the root. */
typedef struct jb_trie_node {
    int32_t child;    /* first child, or -1 */
    int32_t sibling;  /* next sibling, or -1 */
    int32_t added;    /* index into added[] of the token ending here, or -1 */
    uint8_t byte;
} jb_trie_node;

/* Normalizer steps (tokenizer.json). */
typedef enum { JB_NORM_REPLACE, JB_NORM_PREPEND } jb_norm_kind;
typedef struct jb_norm_step {
    jb_norm_kind kind;
    char *from;       /* REPLACE: the literal to replace (NULL when `re` is set) */
    size_t from_len;
    pcre2_code *re;   /* REPLACE with a regex pattern */
    char *pattern;    /* the source of `re`, for messages */
    char *to;         /* REPLACE: the replacement; PREPEND: the prefix */
    size_t to_len;
} jb_norm_step;

/* Pre-tokenizer steps; each splits every current word further. */
typedef enum { JB_PRE_METASPACE, JB_PRE_SPLIT, JB_PRE_DIGITS, JB_PRE_BYTELEVEL } jb_pre_kind;
typedef enum { JB_SPLIT_REMOVED, JB_SPLIT_ISOLATED, JB_SPLIT_MERGED_PREVIOUS, JB_SPLIT_MERGED_NEXT,
               JB_SPLIT_CONTIGUOUS } jb_split_behavior;
typedef enum { JB_PREPEND_ALWAYS, JB_PREPEND_NEVER, JB_PREPEND_FIRST } jb_prepend_scheme;
typedef struct jb_pre_step {
    jb_pre_kind kind;
    /* METASPACE */
    char replacement[8];
    size_t replacement_len;
    jb_prepend_scheme prepend;
    bool split;
    /* SPLIT: a regex (or NULL and a literal); DIGITS: \p{N}; BYTELEVEL with use_regex: the GPT-2 split */
    pcre2_code *re;
    char *pattern;    /* the source of `re`, for messages */
    char *literal;
    size_t literal_len;
    jb_split_behavior behavior;
    bool invert;
    /* DIGITS */
    bool individual_digits;
    /* BYTELEVEL */
    bool add_prefix_space;
    bool use_regex;
} jb_pre_step;

/* Decoder steps; all act token by token (see detokenize.c). */
typedef enum { JB_DEC_REPLACE, JB_DEC_BYTEFALLBACK, JB_DEC_FUSE, JB_DEC_STRIP, JB_DEC_BYTELEVEL, JB_DEC_METASPACE }
    jb_dec_kind;
typedef struct jb_dec_step {
    jb_dec_kind kind;
    char *from, *to;  /* REPLACE */
    size_t from_len, to_len;
    char content[8];  /* STRIP: the character stripped; METASPACE: the replacement */
    size_t content_len;
    int64_t start;    /* STRIP: leading `content` characters removed */
    bool per_token;   /* STRIP: no Fuse before it, so it acts on every token, not only a text's first */
    bool strip_leading; /* METASPACE: the first token loses its replacement characters (the prepended space) */
} jb_dec_step;

struct jamba_tokenizer {
    jb_tok_kind kind;
    char *source;             /* file the tokenizer was read from */
    int64_t n_vocab;
    char *storage;            /* all piece strings, NUL-separated */
    const char **piece;       /* [n_vocab] */
    uint32_t *piece_len;      /* [n_vocab] */
    float *score;             /* [n_vocab] SPM scores (0 for HF) */
    uint8_t *type;            /* [n_vocab] JB_PIECE_* */
    jb_strmap vocab;          /* piece → id */
    jb_u64map merges;         /* HF: (left id << 32 | right id) → rank; merged id in merge_result */
    int32_t *merge_result;    /* [n_merges] */
    int64_t n_merges;
    int32_t byte_id[256];     /* id of "<0xNN>", or -1 */
    int32_t unk_id;
    bool byte_fallback;
    bool fuse_unk;            /* HF: consecutive unknown characters become one unk */
    bool ignore_merges;       /* HF: a word found whole in the vocabulary is not merged */
    bool byte_level;          /* HF: words are mapped to the GPT-2 byte alphabet before BPE */
    jb_added_token *added;    /* [n_added] */
    int64_t n_added;
    jb_trie_node *trie;       /* [n_trie] over added[] (built by jb_tokenizer_build_matcher) */
    int64_t n_trie;
    jb_norm_step *norm;
    int64_t n_norm;
    jb_pre_step *pre;
    int64_t n_pre;
    jb_dec_step *dec;
    int64_t n_dec;
    /* SPM normalisation */
    bool add_dummy_prefix;
    bool escape_whitespaces;
    /* special tokens */
    int32_t bos_id;
    bool add_bos, add_eos;
    int32_t eos_ids[JAMBA_MAX_EOS_IDS];
    int64_t n_eos;
};

/* Readers (ckpt/): fill `tok` from a file image. On failure the caller frees with jb_tokenizer_release. */
jamba_status jb_tokenizer_read_spm(jamba_tokenizer *tok, const uint8_t *data, size_t len, const char *label,
                                   jamba_error *err);
jamba_status jb_tokenizer_read_hf(jamba_tokenizer *tok, const char *json, size_t len, const char *label,
                                  jamba_error *err);

/* Shared by both readers: allocate piece arrays for n pieces whose strings total `bytes`. */
jamba_status jb_tokenizer_alloc_pieces(jamba_tokenizer *tok, int64_t n, uint64_t bytes, const char *label,
                                       jamba_error *err);
/* After pieces are filled: build the vocabulary map (duplicates are an error) and the byte-token table. */
jamba_status jb_tokenizer_index(jamba_tokenizer *tok, const char *label, jamba_error *err);

void jb_tokenizer_release(jamba_tokenizer *tok);

/* How far the normalizer and pre-tokenizer can grow a stretch of text (the input between two added tokens):
 * n bytes become at most a*n + b bytes, and every byte gives at most one id (tokenizer.c). Tokenizers whose
 * a or b exceed JB_TOKENIZER_MAX_GROWTH are refused when read, which bounds the time and memory of
 * tokenizing and keeps jamba_tokenizer_max_ids a usable buffer size (a chain of 16 ByteLevel steps would
 * grow 18 bytes to millions). */
#define JB_TOKENIZER_MAX_GROWTH 64
typedef struct jb_growth {
    uint64_t a, b; /* saturating */
} jb_growth;
jb_growth jb_tokenizer_growth(const jamba_tokenizer *tok);

/* Build the added-token trie (tokenize.c); called once after reading. */
jamba_status jb_tokenizer_build_matcher(jamba_tokenizer *tok, jamba_error *err);

/* The GPT-2 byte-level alphabet: byte → code point, and back (-1 for code points outside it). */
uint32_t jb_bytelevel_char(uint8_t byte);
int jb_bytelevel_byte(uint32_t cp);

#endif /* JB_TOKENIZER_H */
