// json.c - strict recursive-descent JSON parser (json.h).
//
// Implements RFC 8259 with the restrictions listed in json.h; every failure names its line and
// column. It deliberately does not accept JSON5/relaxed input, does not keep number text (numbers are
// doubles, plus an exact int64 when integral), and does not write JSON.
#include "format/json.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_DEFAULT_DEPTH 128
#define JSON_DEFAULT_BYTES ((size_t)1 << 30)

typedef struct parser {
    const char *s;       // (len) document bytes
    size_t len, pos;
    size_t line;         // 1-based line of pos
    size_t line_start;   // offset of the first byte of that line
    size_t depth, max_depth;
    lmp_error *err;
    lmp_status st;       // first failure (LMP_OK while parsing succeeds)
} parser;

const char *lmp_json_type_name(lmp_json_type t) {
    switch (t) {
    case LMP_JSON_NULL: return "null";
    case LMP_JSON_BOOL: return "bool";
    case LMP_JSON_NUMBER: return "number";
    case LMP_JSON_STRING: return "string";
    case LMP_JSON_ARRAY: return "array";
    case LMP_JSON_OBJECT: return "object";
    }
    return "?";
}

// Records the first error with the position of byte `at`; later errors are ignored.
static lmp_status fail_at(parser *p, size_t at, lmp_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
static lmp_status fail_at(parser *p, size_t at, lmp_status st, const char *fmt, ...) {
    if (p->st != LMP_OK) return p->st;
    p->st = st;
    char what[LMP_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    // pos may be on a later line than `at` only when at < line_start; recompute in that rare case.
    size_t line = p->line, ls = p->line_start;
    if (at < ls) {
        line = 1;
        ls = 0;
        for (size_t i = 0; i < at; i++)
            if (p->s[i] == '\n') line++, ls = i + 1;
    }
    lmp_err(p->err, st, "line %zu, column %zu: %s", line, at - ls + 1, what);
    return st;
}

// Printable description of the byte at pos for messages ("end of input", "'x'", "byte 0x01").
static const char *describe(const parser *p, size_t pos, char buf[16]) {
    if (pos >= p->len) return "end of input";
    unsigned char c = (unsigned char)p->s[pos];
    if (c >= 0x20 && c < 0x7f) snprintf(buf, 16, "'%c'", c);
    else snprintf(buf, 16, "byte 0x%02x", c);
    return buf;
}

static void skip_ws(parser *p) {
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c == '\n') {
            p->pos++;
            p->line++;
            p->line_start = p->pos;
        } else if (c == ' ' || c == '\t' || c == '\r') {
            p->pos++;
        } else {
            break;
        }
    }
}

static void node_clear(lmp_json *j) {
    if (!j) return;
    if (j->type == LMP_JSON_ARRAY || j->type == LMP_JSON_OBJECT) {
        for (size_t i = 0; i < j->n; i++) {
            node_clear(&j->items[i]);
            if (j->keys) lmp_free(j->keys[i]);
        }
        lmp_free(j->items);
        lmp_free(j->keys);
        lmp_free(j->key_lens);
    }
    lmp_free(j->str);
    memset(j, 0, sizeof *j);
}

void lmp_json_free(lmp_json *j) {
    if (!j) return;
    node_clear(j);
    lmp_free(j);
}

// ---- strings ----

static int hex4(const char *s, uint32_t *out) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (uint32_t)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

static size_t utf8_put(char *dst, uint32_t cp) {
    if (cp < 0x80) {
        dst[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        dst[0] = (char)(0xc0 | (cp >> 6));
        dst[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        dst[0] = (char)(0xe0 | (cp >> 12));
        dst[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        dst[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    dst[0] = (char)(0xf0 | (cp >> 18));
    dst[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    dst[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    dst[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

// Length of the valid UTF-8 sequence starting at s[0] (a byte >= 0x80), or 0 if invalid
// (overlong forms, surrogates and code points above U+10FFFF are invalid).
static size_t utf8_seq_len(const unsigned char *s, size_t avail) {
    unsigned char c = s[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) n = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0) lo = 0xa0;
        if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;
    } else return 0;
    if (avail < n) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xbf) return 0;
    return n;
}

// Parses the string starting at the opening quote at p->pos; returns a new NUL-terminated buffer.
// Why two passes: the first validates and measures, so the result is allocated once at its size
// (decoded text is never longer than the escaped text).
static char *parse_string(parser *p, size_t *out_len) {
    size_t start = p->pos;
    p->pos++;  // opening quote
    size_t cap = 0, i = p->pos;
    // First pass: find the closing quote (escapes never contain an unescaped quote).
    for (;;) {
        if (i >= p->len) {
            fail_at(p, start, LMP_E_FORMAT, "unterminated string");
            return NULL;
        }
        char c = p->s[i];
        if (c == '"') break;
        if (c == '\\') {
            if (i + 1 >= p->len) {
                fail_at(p, start, LMP_E_FORMAT, "unterminated string");
                return NULL;
            }
            i += 2;
            cap += 2;
            continue;
        }
        i++;
        cap++;
    }
    size_t end = i;  // closing quote
    char *buf = lmp_malloc(cap + 1);
    if (!buf) {
        fail_at(p, start, LMP_E_NOMEM, "out of memory reading a string of %zu bytes", cap);
        return NULL;
    }
    size_t n = 0;
    i = p->pos;
    while (i < end) {
        unsigned char c = (unsigned char)p->s[i];
        if (c < 0x20) {
            fail_at(p, i, LMP_E_FORMAT, "raw control character 0x%02x in string (must be escaped)", c);
            goto bad;
        }
        if (c >= 0x80) {
            size_t k = utf8_seq_len((const unsigned char *)p->s + i, end - i);
            if (!k) {
                fail_at(p, i, LMP_E_FORMAT, "invalid UTF-8 byte 0x%02x in string", c);
                goto bad;
            }
            memcpy(buf + n, p->s + i, k);
            n += k;
            i += k;
            continue;
        }
        if (c != '\\') {
            buf[n++] = (char)c;
            i++;
            continue;
        }
        char e = p->s[i + 1];
        switch (e) {
        case '"': buf[n++] = '"'; break;
        case '\\': buf[n++] = '\\'; break;
        case '/': buf[n++] = '/'; break;
        case 'b': buf[n++] = '\b'; break;
        case 'f': buf[n++] = '\f'; break;
        case 'n': buf[n++] = '\n'; break;
        case 'r': buf[n++] = '\r'; break;
        case 't': buf[n++] = '\t'; break;
        case 'u': {
            uint32_t cp;
            if (i + 6 > end || hex4(p->s + i + 2, &cp)) {
                fail_at(p, i, LMP_E_FORMAT, "invalid \\u escape (need 4 hex digits)");
                goto bad;
            }
            size_t used = 6;
            if (cp >= 0xdc00 && cp <= 0xdfff) {
                fail_at(p, i, LMP_E_FORMAT, "unpaired low surrogate \\u%04X", (unsigned)cp);
                goto bad;
            }
            if (cp >= 0xd800 && cp <= 0xdbff) {
                uint32_t lo;
                if (i + 12 > end || p->s[i + 6] != '\\' || p->s[i + 7] != 'u' || hex4(p->s + i + 8, &lo) ||
                    lo < 0xdc00 || lo > 0xdfff) {
                    fail_at(p, i, LMP_E_FORMAT, "high surrogate \\u%04X not followed by a low surrogate",
                            (unsigned)cp);
                    goto bad;
                }
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                used = 12;
            }
            // An escape of 6 bytes gives at most 3 bytes; a pair of 12 gives 4: never past cap.
            n += utf8_put(buf + n, cp);
            i += used;
            continue;
        }
        default: {
            char d[16];
            fail_at(p, i, LMP_E_FORMAT, "invalid escape \\%s in string", describe(p, i + 1, d));
            goto bad;
        }
        }
        i += 2;
    }
    buf[n] = 0;
    p->pos = end + 1;
    *out_len = n;
    return buf;
bad:
    lmp_free(buf);
    return NULL;
}

// ---- numbers ----

static lmp_status parse_number(parser *p, lmp_json *out) {
    size_t start = p->pos, i = p->pos;
    const char *s = p->s;
    int integral = 1;
    if (i < p->len && s[i] == '-') i++;
    if (i >= p->len || s[i] < '0' || s[i] > '9') {
        char d[16];
        return fail_at(p, i, LMP_E_FORMAT, "expected a digit, found %s", describe(p, i, d));
    }
    if (s[i] == '0') {
        i++;
        if (i < p->len && s[i] >= '0' && s[i] <= '9')
            return fail_at(p, start, LMP_E_FORMAT, "number with a leading zero");
    } else {
        while (i < p->len && s[i] >= '0' && s[i] <= '9') i++;
    }
    if (i < p->len && s[i] == '.') {
        integral = 0;
        i++;
        if (i >= p->len || s[i] < '0' || s[i] > '9')
            return fail_at(p, i, LMP_E_FORMAT, "expected a digit after the decimal point");
        while (i < p->len && s[i] >= '0' && s[i] <= '9') i++;
    }
    if (i < p->len && (s[i] == 'e' || s[i] == 'E')) {
        integral = 0;
        i++;
        if (i < p->len && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= p->len || s[i] < '0' || s[i] > '9')
            return fail_at(p, i, LMP_E_FORMAT, "expected a digit in the exponent");
        while (i < p->len && s[i] >= '0' && s[i] <= '9') i++;
    }
    size_t n = i - start;
    char small[64];
    char *tmp = n < sizeof small ? small : lmp_malloc(n + 1);
    if (!tmp) return fail_at(p, start, LMP_E_NOMEM, "out of memory reading a number");
    memcpy(tmp, s + start, n);
    tmp[n] = 0;
    errno = 0;
    char *endp;
    double v = strtod(tmp, &endp);
    int range = errno == ERANGE && (v == HUGE_VAL || v == -HUGE_VAL);
    int consumed = (size_t)(endp - tmp) == n;
    out->type = LMP_JSON_NUMBER;
    out->number = v;
    out->is_int = 0;
    if (integral && consumed) {
        // Exact int64 when it fits (doubles lose integers above 2^53).
        size_t k = tmp[0] == '-' ? 1 : 0;
        uint64_t mag = 0;
        int over = 0;
        for (; k < n; k++) {
            if (mag > (UINT64_MAX - 9) / 10) over = 1;
            mag = mag * 10 + (uint64_t)(tmp[k] - '0');
        }
        if (!over) {
            if (tmp[0] == '-' && mag <= (uint64_t)INT64_MAX + 1) {
                out->is_int = 1;
                out->i = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
            } else if (tmp[0] != '-' && mag <= (uint64_t)INT64_MAX) {
                out->is_int = 1;
                out->i = (int64_t)mag;
            }
        }
    }
    if (tmp != small) lmp_free(tmp);
    if (!consumed) return fail_at(p, start, LMP_E_FORMAT, "number not understood by strtod (locale?)");
    if (range) return fail_at(p, start, LMP_E_FORMAT, "number out of the range of a double");
    p->pos = i;
    return LMP_OK;
}

// ---- values ----

static lmp_status parse_value(parser *p, lmp_json *out);

// Appends a zeroed slot to a container being built; returns it or NULL (error recorded).
static lmp_json *grow(parser *p, lmp_json *c, size_t *cap, int with_keys) {
    if (c->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 4;
        lmp_json *items = lmp_realloc(c->items, nc * sizeof *items);
        if (!items) goto nomem;
        c->items = items;
        if (with_keys) {
            char **keys = lmp_realloc(c->keys, nc * sizeof *keys);
            if (!keys) goto nomem;
            c->keys = keys;
            size_t *kl = lmp_realloc(c->key_lens, nc * sizeof *kl);
            if (!kl) goto nomem;
            c->key_lens = kl;
        }
        *cap = nc;
    }
    memset(&c->items[c->n], 0, sizeof c->items[0]);
    if (with_keys) {
        c->keys[c->n] = NULL;
        c->key_lens[c->n] = 0;
    }
    return &c->items[c->n];
nomem:
    fail_at(p, p->pos, LMP_E_NOMEM, "out of memory growing a container of %zu elements", c->n);
    return NULL;
}

typedef struct key_ref {
    const char *k;
    size_t len;
    size_t idx;
} key_ref;

static int key_ref_cmp(const void *a, const void *b) {
    const key_ref *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->k, y->k, n);
    if (c) return c;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->idx < y->idx ? -1 : (x->idx > y->idx);
}

// Why sorting: objects such as a tokenizer's vocabulary hold 10^5 keys; a pairwise check would be
// quadratic. Reports the second occurrence of the first duplicate in document order.
static lmp_status check_duplicates(parser *p, const lmp_json *o) {
    if (o->n < 2) return LMP_OK;
    if (o->n <= 8) {
        for (size_t i = 1; i < o->n; i++)
            for (size_t j = 0; j < i; j++)
                if (o->key_lens[i] == o->key_lens[j] && memcmp(o->keys[i], o->keys[j], o->key_lens[i]) == 0)
                    goto dup_small;
        return LMP_OK;
    dup_small:;
    }
    key_ref *r = lmp_malloc(o->n * sizeof *r);
    if (!r) return fail_at(p, p->pos, LMP_E_NOMEM, "out of memory checking %zu object keys", o->n);
    for (size_t i = 0; i < o->n; i++) r[i] = (key_ref){o->keys[i], o->key_lens[i], i};
    qsort(r, o->n, sizeof *r, key_ref_cmp);
    size_t dup = SIZE_MAX;
    for (size_t i = 1; i < o->n; i++)
        if (r[i].len == r[i - 1].len && memcmp(r[i].k, r[i - 1].k, r[i].len) == 0 && r[i].idx < dup)
            dup = r[i].idx;
    lmp_free(r);
    if (dup == SIZE_MAX) return LMP_OK;
    const lmp_json *v = &o->items[dup];
    // The key precedes its value; report the value's position, which we have.
    p->st = LMP_E_FORMAT;
    lmp_err(p->err, LMP_E_FORMAT, "line %u, column %u: duplicate object key \"%.200s\"", (unsigned)v->line,
            (unsigned)v->col, o->keys[dup]);
    return LMP_E_FORMAT;
}

static lmp_status parse_container(parser *p, lmp_json *out, int is_object) {
    size_t open = p->pos;
    char close = is_object ? '}' : ']';
    if (++p->depth > p->max_depth)
        return fail_at(p, open, LMP_E_FORMAT, "nesting deeper than %zu levels", p->max_depth);
    out->type = is_object ? LMP_JSON_OBJECT : LMP_JSON_ARRAY;
    size_t cap = 0;
    p->pos++;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == close) {
        p->pos++;
        p->depth--;
        return LMP_OK;
    }
    for (;;) {
        char d[16];
        size_t key_len = 0;
        char *key = NULL;
        if (is_object) {
            if (p->pos >= p->len || p->s[p->pos] != '"')
                return fail_at(p, p->pos, LMP_E_FORMAT, "expected a string key, found %s",
                               describe(p, p->pos, d));
            key = parse_string(p, &key_len);
            if (!key) return p->st;
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != ':') {
                lmp_free(key);
                return fail_at(p, p->pos, LMP_E_FORMAT, "expected ':' after object key, found %s",
                               describe(p, p->pos, d));
            }
            p->pos++;
            skip_ws(p);
        }
        lmp_json *slot = grow(p, out, &cap, is_object);
        if (!slot) {
            lmp_free(key);
            return p->st;
        }
        if (is_object) {
            out->keys[out->n] = key;
            out->key_lens[out->n] = key_len;
        }
        out->n++;  // counted now so that node_clear frees a half-parsed element
        if (parse_value(p, slot) != LMP_OK) return p->st;
        skip_ws(p);
        if (p->pos < p->len && p->s[p->pos] == ',') {
            p->pos++;
            skip_ws(p);
            if (p->pos < p->len && p->s[p->pos] == close)
                return fail_at(p, p->pos, LMP_E_FORMAT, "trailing comma before '%c'", close);
            continue;
        }
        if (p->pos < p->len && p->s[p->pos] == close) {
            p->pos++;
            break;
        }
        return fail_at(p, p->pos, LMP_E_FORMAT, "expected ',' or '%c' in %s, found %s", close,
                       is_object ? "object" : "array", describe(p, p->pos, d));
    }
    p->depth--;
    if (is_object) return check_duplicates(p, out);
    return LMP_OK;
}

static int match_word(parser *p, const char *w) {
    size_t n = strlen(w);
    return p->len - p->pos >= n && memcmp(p->s + p->pos, w, n) == 0;
}

static lmp_status parse_value(parser *p, lmp_json *out) {
    char d[16];
    out->line = (uint32_t)(p->line > UINT32_MAX ? UINT32_MAX : p->line);
    size_t col = p->pos - p->line_start + 1;
    out->col = (uint32_t)(col > UINT32_MAX ? UINT32_MAX : col);
    if (p->pos >= p->len) return fail_at(p, p->pos, LMP_E_FORMAT, "expected a value, found end of input");
    char c = p->s[p->pos];
    switch (c) {
    case '{': return parse_container(p, out, 1);
    case '[': return parse_container(p, out, 0);
    case '"': {
        size_t n;
        char *s = parse_string(p, &n);
        if (!s) return p->st;
        out->type = LMP_JSON_STRING;
        out->str = s;
        out->len = n;
        return LMP_OK;
    }
    case 't':
        if (!match_word(p, "true")) break;
        out->type = LMP_JSON_BOOL;
        out->boolean = 1;
        p->pos += 4;
        return LMP_OK;
    case 'f':
        if (!match_word(p, "false")) break;
        out->type = LMP_JSON_BOOL;
        p->pos += 5;
        return LMP_OK;
    case 'n':
        if (!match_word(p, "null")) break;
        out->type = LMP_JSON_NULL;
        p->pos += 4;
        return LMP_OK;
    default:
        if (c == '-' || (c >= '0' && c <= '9')) return parse_number(p, out);
        break;
    }
    return fail_at(p, p->pos, LMP_E_FORMAT, "expected a value, found %s", describe(p, p->pos, d));
}

lmp_status lmp_json_parse(const char *text, size_t len, const lmp_json_limits *lim, lmp_json **out,
                          lmp_error *err) {
    if (!out) return lmp_err(err, LMP_E_ARG, "json: no output pointer");
    *out = NULL;
    if (!text && len) return lmp_err(err, LMP_E_ARG, "json: NULL text");
    size_t max_bytes = lim && lim->max_bytes ? lim->max_bytes : JSON_DEFAULT_BYTES;
    if (len > max_bytes)
        return lmp_err(err, LMP_E_FORMAT, "JSON document of %zu bytes exceeds the limit of %zu", len, max_bytes);
    parser p = {.s = text, .len = len, .line = 1, .err = err};
    p.max_depth = lim && lim->max_depth ? lim->max_depth : JSON_DEFAULT_DEPTH;
    lmp_json *root = lmp_calloc(1, sizeof *root);
    if (!root) return lmp_err(err, LMP_E_NOMEM, "out of memory starting a JSON parse");
    // A UTF-8 byte order mark is not JSON (RFC 8259 section 8.1 lets parsers refuse it).
    if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
        fail_at(&p, 0, LMP_E_FORMAT, "byte order mark at the start of a JSON document");
    else {
        skip_ws(&p);
        if (parse_value(&p, root) == LMP_OK) {
            skip_ws(&p);
            if (p.pos < p.len) {
                char d[16];
                fail_at(&p, p.pos, LMP_E_FORMAT, "unexpected %s after the JSON value", describe(&p, p.pos, d));
            }
        }
    }
    if (p.st != LMP_OK) {
        lmp_json_free(root);
        return p.st;
    }
    *out = root;
    return LMP_OK;
}

// ---- access ----

const lmp_json *lmp_json_get(const lmp_json *j, const char *key) {
    if (!j || j->type != LMP_JSON_OBJECT || !key) return NULL;
    size_t n = strlen(key);
    for (size_t i = 0; i < j->n; i++)
        if (j->key_lens[i] == n && memcmp(j->keys[i], key, n) == 0) return &j->items[i];
    return NULL;
}

const lmp_json *lmp_json_at(const lmp_json *j, size_t i) {
    if (!j || (j->type != LMP_JSON_ARRAY && j->type != LMP_JSON_OBJECT) || i >= j->n) return NULL;
    return &j->items[i];
}

const char *lmp_json_key_at(const lmp_json *j, size_t i) {
    if (!j || j->type != LMP_JSON_OBJECT || i >= j->n) return NULL;
    return j->keys[i];
}

int lmp_json_get_int(const lmp_json *j, const char *key, int64_t *out) {
    const lmp_json *v = lmp_json_get(j, key);
    if (!v || v->type == LMP_JSON_NULL) return 0;
    if (v->type != LMP_JSON_NUMBER) return -1;
    if (v->is_int) {
        *out = v->i;
        return 1;
    }
    // 4096.0 or 1e3 written as a float but integral and exactly representable: accept.
    if (v->number == floor(v->number) && fabs(v->number) <= 9007199254740992.0) {
        *out = (int64_t)v->number;
        return 1;
    }
    return -1;
}

int lmp_json_get_num(const lmp_json *j, const char *key, double *out) {
    const lmp_json *v = lmp_json_get(j, key);
    if (!v || v->type == LMP_JSON_NULL) return 0;
    if (v->type != LMP_JSON_NUMBER) return -1;
    *out = v->number;
    return 1;
}

int lmp_json_get_bool(const lmp_json *j, const char *key, int *out) {
    const lmp_json *v = lmp_json_get(j, key);
    if (!v || v->type == LMP_JSON_NULL) return 0;
    if (v->type != LMP_JSON_BOOL) return -1;
    *out = v->boolean;
    return 1;
}

int lmp_json_get_str(const lmp_json *j, const char *key, const char **out) {
    const lmp_json *v = lmp_json_get(j, key);
    if (!v || v->type == LMP_JSON_NULL) return 0;
    if (v->type != LMP_JSON_STRING) return -1;
    *out = v->str;
    return 1;
}
