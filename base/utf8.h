/*
 * utf8.h — strict UTF-8 decoding (no overlongs, no surrogates, nothing above U+10FFFF), encoding, and the
 * Unicode White_Space set.
 */
#ifndef JB_UTF8_H
#define JB_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Decode one character at s[0..n). Returns its length (1-4) and sets *cp, or returns 0 when the bytes are
 * not a valid character here (jb_utf8_incomplete tells whether more bytes could complete it). */
int jb_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp);

/* True when s[0..n) (n < 4) is a valid proper prefix of a character: more bytes could complete it. */
bool jb_utf8_incomplete(const uint8_t *s, size_t n);

/* At an invalid position: how many bytes one U+FFFD replaces (the maximal valid prefix of a character,
 * at least 1), as Python and the WHATWG decoder do. */
size_t jb_utf8_invalid_len(const uint8_t *s, size_t n);

/* Encode cp into out (room for 4); returns the length. */
int jb_utf8_encode(uint32_t cp, uint8_t out[4]);

/* True when every byte of s[0..n) belongs to a valid character. */
bool jb_utf8_valid(const uint8_t *s, size_t n);

/* Unicode White_Space. */
bool jb_unicode_is_space(uint32_t cp);

#define JB_UTF8_REPLACEMENT "\xEF\xBF\xBD" /* U+FFFD */

#endif /* JB_UTF8_H */
