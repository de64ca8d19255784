/*
 * utf8.c — see utf8.h.
 */
#include "base/utf8.h"

int jb_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp) {
    if (n == 0)
        return 0;
    uint8_t b = s[0];
    if (b < 0x80) {
        *cp = b;
        return 1;
    }
    int len;
    uint32_t c, min;
    if ((b & 0xe0) == 0xc0)
        len = 2, c = b & 0x1f, min = 0x80;
    else if ((b & 0xf0) == 0xe0)
        len = 3, c = b & 0x0f, min = 0x800;
    else if ((b & 0xf8) == 0xf0)
        len = 4, c = b & 0x07, min = 0x10000;
    else
        return 0;
    if ((size_t)len > n)
        return 0;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return len;
}

bool jb_utf8_incomplete(const uint8_t *s, size_t n) {
    if (n == 0 || n >= 4)
        return false;
    uint8_t b = s[0];
    size_t len = (b & 0xe0) == 0xc0 ? 2 : (b & 0xf0) == 0xe0 ? 3 : (b & 0xf8) == 0xf0 ? 4 : 0;
    if (len == 0 || n >= len)
        return false;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return false;
    /* reject prefixes that can only become overlong, surrogate or out-of-range characters */
    if (n >= 2) {
        if (b == 0xe0 && s[1] < 0xa0)
            return false;
        if (b == 0xed && s[1] >= 0xa0)
            return false;
        if (b == 0xf0 && s[1] < 0x90)
            return false;
        if (b == 0xf4 && s[1] >= 0x90)
            return false;
    }
    return b != 0xc0 && b != 0xc1 && b < 0xf5;
}

size_t jb_utf8_invalid_len(const uint8_t *s, size_t n) {
    size_t k = 1;
    while (k < 3 && k < n && jb_utf8_incomplete(s, k + 1))
        k++;
    return jb_utf8_incomplete(s, k) ? k : 1;
}

int jb_utf8_encode(uint32_t cp, uint8_t out[4]) {
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xc0 | (cp >> 6));
        out[1] = (uint8_t)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xe0 | (cp >> 12));
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (uint8_t)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (uint8_t)(0xf0 | (cp >> 18));
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (uint8_t)(0x80 | (cp & 0x3f));
    return 4;
}

bool jb_utf8_valid(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        int len = jb_utf8_decode(s + i, n - i, &cp);
        if (len == 0)
            return false;
        i += (size_t)len;
    }
    return true;
}

bool jb_unicode_is_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}
