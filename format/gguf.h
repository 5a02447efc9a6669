// gguf.h - strict reader of GGUF files (llama.cpp's model container, versions 2 and 3), the ggml
// tensor-type table, and dequantization of the ggml block types lmpress imports.
//
// Byte layout (little-endian; the GGUF specification in ggml's docs/gguf.md is the authority):
//   u32  magic "GGUF" (bytes 47 47 55 46)
//   u32  version (2 or 3; 1 used u32 counts and is refused)
//   u64  n_tensors, u64 n_kv
//   n_kv x { string key, u32 value_type, value }
//   n_tensors x { string name, u32 n_dims, u64 ne[n_dims] (innermost first), u32 ggml_type,
//                 u64 offset (relative to the data section, a multiple of the alignment) }
//   zero padding up to the data section, which starts at the next multiple of general.alignment (u32,
//   default 32); tensor data.
//   string = { u64 len, len bytes (UTF-8, no NUL terminator) };
//   value types: 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool (1 byte), 8 string,
//   9 array { u32 elem_type, u64 count, count values }, 10 u64, 11 i64, 12 f64.
//
// The reader checks every count, length, offset and size against the file size (with overflow-checked
// arithmetic) before using it, refuses duplicate keys and tensor names, nested arrays, unknown value
// and tensor types, tensors outside the file or overlapping each other, and names the exact problem
// ("GGUF: ..."). It keeps pointers into the (mapped) file: nothing is copied except keys and names.
// It does not interpret the metadata (format/import_gguf.c does) and does not write GGUF files
// (format/export_gguf.c does).
#ifndef LMP_GGUF_H
#define LMP_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "format/lmp_common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LMP_GGUF_MAGIC "GGUF"
#define LMP_GGUF_DEFAULT_ALIGNMENT 32
#define LMP_GGUF_MAX_DIMS 4         // ggml's GGML_MAX_DIMS
#define LMP_GGUF_MAX_NAME_LEN 255   // tensor names (ggml itself stops at 63)
#define LMP_GGUF_MAX_KEY_LEN 65535
#define LMP_GGUF_MAX_DIM (1ull << 40)

typedef enum lmp_gguf_vtype {
    LMP_GGUF_U8 = 0,
    LMP_GGUF_I8 = 1,
    LMP_GGUF_U16 = 2,
    LMP_GGUF_I16 = 3,
    LMP_GGUF_U32 = 4,
    LMP_GGUF_I32 = 5,
    LMP_GGUF_F32 = 6,
    LMP_GGUF_BOOL = 7,
    LMP_GGUF_STRING = 8,
    LMP_GGUF_ARRAY = 9,
    LMP_GGUF_U64 = 10,
    LMP_GGUF_I64 = 11,
    LMP_GGUF_F64 = 12,
    LMP_GGUF_VTYPE_COUNT = 13,
} lmp_gguf_vtype;

// ggml tensor types (the values stored in GGUF files; gaps are retired values).
typedef enum lmp_ggml_type {
    LMP_GGML_F32 = 0,
    LMP_GGML_F16 = 1,
    LMP_GGML_Q4_0 = 2,
    LMP_GGML_Q4_1 = 3,
    LMP_GGML_Q5_0 = 6,
    LMP_GGML_Q5_1 = 7,
    LMP_GGML_Q8_0 = 8,
    LMP_GGML_Q8_1 = 9,
    LMP_GGML_Q2_K = 10,
    LMP_GGML_Q3_K = 11,
    LMP_GGML_Q4_K = 12,
    LMP_GGML_Q5_K = 13,
    LMP_GGML_Q6_K = 14,
    LMP_GGML_Q8_K = 15,
    LMP_GGML_IQ4_NL = 20,
    LMP_GGML_BF16 = 30,
} lmp_ggml_type;

// A string inside the file: not NUL-terminated.
typedef struct lmp_gguf_str {
    const char *p;
    uint64_t len;
} lmp_gguf_str;

// One metadata entry. Scalars are widened into v (unsigned types and bool in u, signed in i, floats in
// f); the original type stays in type. Strings: str. Arrays: elem_type and count; numeric arrays point
// at count packed little-endian values inside the file (data, possibly unaligned: read them with
// lmp_gguf_arr_int / lmp_gguf_arr_float); string arrays have strs[count].
typedef struct lmp_gguf_kv {
    const char *key;          // NUL-terminated copy
    lmp_gguf_vtype type;
    lmp_gguf_vtype elem_type; // arrays only
    uint64_t count;           // arrays only: number of elements
    union {
        uint64_t u;
        int64_t i;
        double f;
    } v;
    lmp_gguf_str str;         // strings only
    const void *data;         // numeric arrays: count values of elem_type, inside the file
    const lmp_gguf_str *strs; // string arrays: (count)
} lmp_gguf_kv;

typedef struct lmp_gguf_tensor {
    const char *name;         // NUL-terminated copy
    uint32_t type;            // ggml type (lmp_ggml_type values)
    int n_dims;               // 1..LMP_GGUF_MAX_DIMS
    int64_t ne[LMP_GGUF_MAX_DIMS];  // ggml order: ne[0] is the innermost (contiguous) dimension; unused = 1
    uint64_t offset;          // relative to the data section
    uint64_t nbytes;          // implied by type and ne
    const void *data;         // nbytes bytes inside the file
} lmp_gguf_tensor;

typedef struct lmp_gguf lmp_gguf;

// Maps path read-only and validates it. On failure *out is NULL and err says what is wrong ("GGUF: ...").
lmp_status lmp_gguf_open(const char *path, lmp_gguf **out, lmp_error *err);
// Same over caller memory (borrowed: it must outlive the handle).
lmp_status lmp_gguf_open_mem(const void *buf, size_t size, lmp_gguf **out, lmp_error *err);
void lmp_gguf_close(lmp_gguf *g);  // NULL is a no-op

uint32_t lmp_gguf_version(const lmp_gguf *g);
uint32_t lmp_gguf_alignment(const lmp_gguf *g);
uint64_t lmp_gguf_data_offset(const lmp_gguf *g);  // absolute offset of the data section
const void *lmp_gguf_bytes(const lmp_gguf *g, size_t *size);  // the whole file

size_t lmp_gguf_n_kv(const lmp_gguf *g);
const lmp_gguf_kv *lmp_gguf_kv_at(const lmp_gguf *g, size_t i);  // file order
const lmp_gguf_kv *lmp_gguf_find_kv(const lmp_gguf *g, const char *key);  // NULL if absent
size_t lmp_gguf_n_tensors(const lmp_gguf *g);
const lmp_gguf_tensor *lmp_gguf_tensor_at(const lmp_gguf *g, size_t i);  // file order
const lmp_gguf_tensor *lmp_gguf_find_tensor(const lmp_gguf *g, const char *name);  // NULL if absent

// Typed getters. Missing key: LMP_E_FORMAT "GGUF: missing key 'k'". Wrong type or a value that does not
// fit: LMP_E_FORMAT naming the key, the type found and what was wanted. Integer getters accept every
// integer type whose value fits; get_f64 accepts f32 and f64.
lmp_status lmp_gguf_get_u64(const lmp_gguf *g, const char *key, uint64_t *out, lmp_error *err);
lmp_status lmp_gguf_get_u32(const lmp_gguf *g, const char *key, uint32_t *out, lmp_error *err);
lmp_status lmp_gguf_get_f64(const lmp_gguf *g, const char *key, double *out, lmp_error *err);
lmp_status lmp_gguf_get_bool(const lmp_gguf *g, const char *key, int *out, lmp_error *err);
lmp_status lmp_gguf_get_str(const lmp_gguf *g, const char *key, lmp_gguf_str *out, lmp_error *err);
// Element i of a numeric array kv (i < kv->count): integer elements widened to int64 (u64 above
// INT64_MAX saturates), floating elements to double. Return 0, or -1 when the array is not of that kind.
int lmp_gguf_arr_int(const lmp_gguf_kv *kv, uint64_t i, int64_t *out);
int lmp_gguf_arr_float(const lmp_gguf_kv *kv, uint64_t i, double *out);

const char *lmp_gguf_vtype_name(uint32_t t);  // "u32", "string", ...; "?" if unknown

// ---- ggml tensor types ----

// Name as ggml prints it ("q4_K", "bf16"), or NULL for a value that is no known type.
const char *lmp_ggml_type_name(uint32_t type);
// Block geometry of a known type: elements per block and bytes per block. Returns 0, or -1 if unknown.
int lmp_ggml_type_geometry(uint32_t type, int64_t *block_size, size_t *type_size);
// Whether lmp_gguf_dequantize handles the type: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K.
int lmp_ggml_can_dequantize(uint32_t type);
// dst[0..n) = the n elements stored at src in ggml type `type`; n must be a multiple of the block size.
// LMP_E_UNSUPPORTED (naming the type) for the other types, LMP_E_ARG for a bad n.
lmp_status lmp_gguf_dequantize(uint32_t type, const void *src, float *dst, int64_t n, lmp_error *err);

#ifdef __cplusplus
}
#endif
#endif
