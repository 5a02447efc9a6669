// json.h - a small strict JSON parser (RFC 8259) for the importers: config.json, tokenizer.json,
// safetensors headers and shard indexes.
//
// Strict: one value per document (surrounding whitespace only), no comments, no trailing commas, no
// leading zeros, no NaN/Infinity, strings must be valid UTF-8 without raw control characters, \u
// escapes must pair surrogates, duplicate keys in an object are refused. Depth and size are limited.
// Errors say "line L, column C: <what>" (1-based, columns in bytes). The tree is read-only once
// parsed; it does not serialise JSON and does not stream.
#ifndef LMP_JSON_H
#define LMP_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "format/lmp_common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum lmp_json_type {
    LMP_JSON_NULL = 0,
    LMP_JSON_BOOL = 1,
    LMP_JSON_NUMBER = 2,
    LMP_JSON_STRING = 3,
    LMP_JSON_ARRAY = 4,
    LMP_JSON_OBJECT = 5,
} lmp_json_type;

// One value. Objects keep their members in document order.
typedef struct lmp_json lmp_json;
struct lmp_json {
    lmp_json_type type;
    int boolean;        // BOOL: 0 or 1
    double number;      // NUMBER: nearest double
    int is_int;         // NUMBER: written without fraction/exponent and fits in int64 (then exact in i)
    int64_t i;          // NUMBER with is_int
    char *str;          // STRING: decoded UTF-8, NUL-terminated (may contain \u0000: use len)
    size_t len;         // STRING: bytes in str
    size_t n;           // ARRAY / OBJECT: number of elements / members
    lmp_json *items;    // ARRAY / OBJECT: (n) values
    char **keys;        // OBJECT: (n) decoded keys, NUL-terminated
    size_t *key_lens;   // OBJECT: (n) key byte lengths
    uint32_t line, col; // where the value starts in the text (for the callers' messages)
};

typedef struct lmp_json_limits {
    size_t max_depth;  // nesting of arrays/objects; 0: default 128
    size_t max_bytes;  // document size; 0: default 1 GiB
} lmp_json_limits;

// Parses len bytes of text (need not be NUL-terminated). On success *out is a new tree (free with
// lmp_json_free); on failure *out is NULL and err says "line L, column C: ...". lim may be NULL.
lmp_status lmp_json_parse(const char *text, size_t len, const lmp_json_limits *lim, lmp_json **out,
                          lmp_error *err);
void lmp_json_free(lmp_json *j);  // NULL is a no-op

// Member of an object by key, or NULL if j is not an object or has no such member.
const lmp_json *lmp_json_get(const lmp_json *j, const char *key);
// Element i of an array or value of member i of an object; NULL if out of range or not a container.
const lmp_json *lmp_json_at(const lmp_json *j, size_t i);
// Key of member i of an object; NULL if out of range or not an object.
const char *lmp_json_key_at(const lmp_json *j, size_t i);
// "null", "bool", "number", "string", "array", "object".
const char *lmp_json_type_name(lmp_json_type t);

// Convenience accessors for optional members: return 1 and set *out if j has member key of the right
// type (for integers: an integral number, in range), 0 if the member is absent or JSON null, -1 if it
// is present with another type or out of range.
int lmp_json_get_int(const lmp_json *j, const char *key, int64_t *out);
int lmp_json_get_num(const lmp_json *j, const char *key, double *out);
int lmp_json_get_bool(const lmp_json *j, const char *key, int *out);
int lmp_json_get_str(const lmp_json *j, const char *key, const char **out);

#ifdef __cplusplus
}
#endif
#endif
