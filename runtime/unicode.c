// unicode.c - strict UTF-8 decoding/encoding and the \p{L} / \p{N} / White_Space classes of
// runtime/unicode.h (binary search over the generated range tables, with a table for ASCII/Latin-1).
//
// It does not normalise or case-fold, and does not replace malformed bytes: callers decide.
#include "runtime/unicode.h"

size_t lmp_utf8_decode(const char *s, size_t len, uint32_t *cp) {
    const unsigned char *p = (const unsigned char *)s;
    unsigned c = p[0];
    *cp = LMP_UNICODE_INVALID;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t n;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2, v = c & 0x1F, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3, v = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 1;  // continuation byte, C0/C1 (always overlong) or F5..FF
    }
    if (len < n) return 1;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) return 1;
        v = (v << 6) | (p[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 1;
    *cp = v;
    return n;
}

size_t lmp_utf8_encode(uint32_t cp, char out[4]) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    if (cp <= 0x10FFFF) {
        o[0] = (unsigned char)(0xF0 | (cp >> 18));
        o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[3] = (unsigned char)(0x80 | (cp & 0x3F));
        return 4;
    }
    return 0;
}

int lmp_utf8_valid(const char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        uint32_t cp;
        i += lmp_utf8_decode(s + i, len - i, &cp);
        if (cp == LMP_UNICODE_INVALID) return 0;
    }
    return 1;
}

static int in_ranges(const lmp_unicode_range *r, size_t n, uint32_t cp) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < r[mid].first) hi = mid;
        else if (cp > r[mid].last) lo = mid + 1;
        else return 1;
    }
    return 0;
}

unsigned lmp_unicode_class(uint32_t cp) {
    if (cp < 256) return lmp_unicode_latin1_class[cp];  // most text: no search
    if (cp > 0x10FFFF) return 0;
    unsigned c = 0;
    if (in_ranges(lmp_unicode_letter, lmp_unicode_letter_count, cp)) c |= LMP_UNICODE_LETTER;
    if (in_ranges(lmp_unicode_number, lmp_unicode_number_count, cp)) c |= LMP_UNICODE_NUMBER;
    if (in_ranges(lmp_unicode_white_space, lmp_unicode_white_space_count, cp)) c |= LMP_UNICODE_SPACE;
    return c;
}
