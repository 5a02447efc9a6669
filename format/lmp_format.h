// lmp_format.h - the lmpress model file (.lmp): metadata store, strict reader, atomic writer.
//
// Byte layout (docs/format.md is the specification; this restates it):
//   header, 64 bytes:
//     0  u8[8]  magic "\x89LMP\r\n\x1a\n"
//     8  u32    format version (LMP_FORMAT_VERSION)
//     12 u32    byte-order sentinel 0x01020304 (reads 0x04030201 on a big-endian writer)
//     16 u32    alignment of tensor data (power of two, 16..65536; writers use 64)
//     20 u32    flags, reserved, must be 0
//     24 u64    n_kv, number of metadata entries
//     32 u64    n_tensors
//     40 u64    data_offset: absolute offset of the data section, a multiple of alignment
//     48 u64    data_size: bytes of the data section; data_offset + data_size == file size
//     56 u32    meta_crc32: CRC32 of bytes [64, data_offset)
//     60 u32    header_crc32: CRC32 of bytes [0, 60)
//   metadata: n_kv entries   { u32 key_len, key bytes, u32 value_type, value }
//   directory: n_tensors     { u32 name_len, name bytes, u32 dtype, u32 ndim, u64 shape[ndim],
//                              u64 offset (relative to data_offset), u64 nbytes, u32 crc32 }
//   zero padding up to data_offset; tensor data, each tensor at a multiple of alignment, zero padding
//   between tensors. Values: u32/i32/f32 4 bytes, u64/i64/f64 8 bytes, bool 1 byte (0 or 1),
//   string { u64 len, bytes } (UTF-8, no NUL), array { u32 elem_type, u64 count, elements }.
//   Shapes are outermost first (numpy order): the last dimension is contiguous, quantized blocks run
//   along it.
//
// It does not interpret metadata (runtime/model.c does) and does not know about other file formats
// (format/import_*.c).
#ifndef LMP_FORMAT_H
#define LMP_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "format/lmp_common.h"
#include "format/lmp_types.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LMP_MAGIC "\x89LMP\r\n\x1a\n"
#define LMP_MAGIC_LEN 8
#define LMP_FORMAT_VERSION 2         // newest version this build reads and writes
#define LMP_FORMAT_VERSION_MIN 1     // oldest version it reads
// The lowest version that may hold dtype t (docs/format.md, changelog): writers write the lowest version
// that describes the file, so files without the newer types stay readable by older builds.
#define LMP_DTYPE_MIN_VERSION(t) ((unsigned)(t) >= 10u ? 2u : 1u)
#define LMP_HEADER_SIZE 64
#define LMP_BYTE_ORDER_MARK 0x01020304u
#define LMP_DEFAULT_ALIGNMENT 64
#define LMP_MAX_DIMS 4
#define LMP_MAX_NAME_LEN 255   // tensor names and metadata keys, bytes
#define LMP_MAX_DIM_SIZE (1ull << 40)

// ---- metadata ----

typedef enum lmp_kv_type {
    LMP_KV_U32 = 0,
    LMP_KV_I32 = 1,
    LMP_KV_U64 = 2,
    LMP_KV_I64 = 3,
    LMP_KV_F32 = 4,
    LMP_KV_F64 = 5,
    LMP_KV_BOOL = 6,
    LMP_KV_STRING = 7,
    LMP_KV_ARRAY = 8,
    LMP_KV_TYPE_COUNT = 9,
} lmp_kv_type;

// One metadata entry. Scalars live in v; a string's bytes (NUL-terminated copy, len in count) and an
// array's elements live in data: packed little-endian values for numeric arrays, an array of
// NUL-terminated char* for string arrays (lengths in lens).
typedef struct lmp_kv {
    char *key;
    lmp_kv_type type;
    lmp_kv_type elem_type;  // arrays only
    uint64_t count;         // string: bytes; array: elements
    union {
        uint32_t u32;
        int32_t i32;
        uint64_t u64;
        int64_t i64;
        float f32;
        double f64;
        uint8_t b;
    } v;
    void *data;
    uint64_t *lens;  // string arrays: byte length of each element (strings may contain NUL? no: rejected)
} lmp_kv;

typedef struct lmp_meta lmp_meta;  // ordered key -> value map; keys unique

lmp_meta *lmp_meta_new(void);
void lmp_meta_free(lmp_meta *m);
lmp_meta *lmp_meta_clone(const lmp_meta *m);  // NULL on allocation failure
size_t lmp_meta_count(const lmp_meta *m);
const lmp_kv *lmp_meta_at(const lmp_meta *m, size_t i);
const lmp_kv *lmp_meta_find(const lmp_meta *m, const char *key);  // NULL if absent

// Setters copy their arguments and replace an existing key in place (keeping its position).
lmp_status lmp_meta_set_u32(lmp_meta *m, const char *key, uint32_t v);
lmp_status lmp_meta_set_i32(lmp_meta *m, const char *key, int32_t v);
lmp_status lmp_meta_set_u64(lmp_meta *m, const char *key, uint64_t v);
lmp_status lmp_meta_set_i64(lmp_meta *m, const char *key, int64_t v);
lmp_status lmp_meta_set_f32(lmp_meta *m, const char *key, float v);
lmp_status lmp_meta_set_f64(lmp_meta *m, const char *key, double v);
lmp_status lmp_meta_set_bool(lmp_meta *m, const char *key, int v);
lmp_status lmp_meta_set_str(lmp_meta *m, const char *key, const char *v);
// Numeric arrays: data points to count packed values of elem_type. String arrays: data is
// const char *const * (NUL-terminated strings).
lmp_status lmp_meta_set_arr(lmp_meta *m, const char *key, lmp_kv_type elem_type, const void *data,
                            uint64_t count);
// For a run of setter calls that ends in one check: keeps in *first the first failure among them (its own
// status, never merged with others) and names its key in err; returns *first. Usage:
//   lmp_status st = LMP_OK;
//   lmp_meta_keep(&st, lmp_meta_set_u32(m, "llama.block_count", n), "llama.block_count", err);
//   ...; if (st) return st;
lmp_status lmp_meta_keep(lmp_status *first, lmp_status st, const char *key, lmp_error *err);
// Appends one string to a string array (creating it if absent), e.g. provenance.history.
lmp_status lmp_meta_append_str(lmp_meta *m, const char *key, const char *v);
void lmp_meta_remove(lmp_meta *m, const char *key);
// Sets key to a deep copy of the value part of kv (kv->key is ignored): used by readers that decode
// entries generically. String values need no NUL terminator in kv->data (count gives the length).
lmp_status lmp_meta_set_kv(lmp_meta *m, const char *key, const lmp_kv *kv);

// Typed getters. Missing key: LMP_E_FORMAT "missing metadata key 'k'". Wrong type or out of range:
// LMP_E_FORMAT naming the key, the type found and the type wanted. Integer getters accept any integer
// type whose value fits.
lmp_status lmp_meta_get_u32(const lmp_meta *m, const char *key, uint32_t *out, lmp_error *err);
lmp_status lmp_meta_get_u64(const lmp_meta *m, const char *key, uint64_t *out, lmp_error *err);
lmp_status lmp_meta_get_i64(const lmp_meta *m, const char *key, int64_t *out, lmp_error *err);
lmp_status lmp_meta_get_f32(const lmp_meta *m, const char *key, float *out, lmp_error *err);  // f32/f64
lmp_status lmp_meta_get_bool(const lmp_meta *m, const char *key, int *out, lmp_error *err);
lmp_status lmp_meta_get_str(const lmp_meta *m, const char *key, const char **out, lmp_error *err);
// Array of elem_type; *data as stored in lmp_kv.data.
lmp_status lmp_meta_get_arr(const lmp_meta *m, const char *key, lmp_kv_type elem_type,
                            const void **data, uint64_t *count, lmp_error *err);
const char *lmp_kv_type_name(lmp_kv_type t);

// ---- tensors ----

// A tensor view: shape outermost first, contiguous rows along the last dimension.
typedef struct lmp_tensor {
    const char *name;
    lmp_dtype type;
    int ndim;
    int64_t shape[LMP_MAX_DIMS];
    uint64_t nbytes;
    uint32_t crc32;    // as stored (reader) or computed (writer)
    uint64_t offset;   // relative to the data section (reader); ignored by the writer
    void *data;        // host bytes: into the mapping (reader) or caller memory (writer)
} lmp_tensor;

// Product of all dimensions / of all but the last one. 0 when t is NULL or t->ndim is not in
// 1..LMP_MAX_DIMS; -1 when a dimension is negative or the product overflows int64 (never for a tensor of
// an opened file: the reader checks its shape).
int64_t lmp_tensor_nelements(const lmp_tensor *t);
int64_t lmp_tensor_nrows(const lmp_tensor *t);
// Bytes the shape needs in this dtype, or 0 if the last dim is not a multiple of the block size, the
// dtype is unknown or the count overflows.
uint64_t lmp_tensor_expected_bytes(lmp_dtype type, int ndim, const int64_t *shape);

// ---- reading ----

typedef struct lmp_file lmp_file;

enum {
    LMP_OPEN_DEFAULT = 0,    // validate everything including every tensor's CRC32
    LMP_OPEN_SKIP_CRC = 1,   // validate structure only (tensor CRCs not computed)
};

// Opens and validates a file (mmap, read-only). On failure *out is NULL and err names the exact
// problem: "truncated: file is 100 bytes, header needs 64", "tensor 'blk.0.attn_q.weight': CRC32
// mismatch (stored 0x..., computed 0x...)", "unsupported format version 7 (this build reads 1 to 2)", ...
lmp_status lmp_file_open(const char *path, unsigned flags, lmp_file **out, lmp_error *err);
// Same over a buffer; if take_ownership, the buffer (from lmp_malloc) is freed by lmp_file_close.
lmp_status lmp_file_open_mem(void *buf, size_t size, int take_ownership, unsigned flags, lmp_file **out,
                             lmp_error *err);
void lmp_file_close(lmp_file *f);  // NULL is a no-op

const lmp_meta *lmp_file_meta(const lmp_file *f);
size_t lmp_file_n_tensors(const lmp_file *f);
const lmp_tensor *lmp_file_tensor(const lmp_file *f, size_t i);
const lmp_tensor *lmp_file_find(const lmp_file *f, const char *name);  // NULL if absent
uint32_t lmp_file_version(const lmp_file *f);
uint64_t lmp_file_size(const lmp_file *f);
const char *lmp_file_path(const lmp_file *f);  // "" for memory files
// The file's identity for provenance: CRC32 of bytes [0, data_offset) (header, metadata and the
// directory with every tensor's CRC32).
uint32_t lmp_file_checksum(const lmp_file *f);

// ---- writing ----

// Writes meta + tensors (in the given order; data from tensor.data, nbytes computed from the shape)
// to "<path>.tmp.<pid>", fsyncs, and renames over path; on any failure the temporary is removed and
// path is untouched. Validates names (unique, 1..255 bytes), dtypes, shapes.
lmp_status lmp_file_write(const char *path, const lmp_meta *meta, const lmp_tensor *tensors, size_t n,
                          lmp_error *err);
// Same layout into a new lmp_malloc'd buffer.
lmp_status lmp_file_write_mem(const lmp_meta *meta, const lmp_tensor *tensors, size_t n, void **buf,
                              size_t *size, lmp_error *err);

// ---- building (importers and passes) ----

// A model under construction: metadata plus tensors whose data the builder owns or borrows.
typedef struct lmp_builder lmp_builder;

lmp_builder *lmp_builder_new(void);
void lmp_builder_free(lmp_builder *b);
lmp_meta *lmp_builder_meta(lmp_builder *b);
// Adds a tensor. data must be lmp_malloc'd; the builder takes ownership (and frees it even on error).
lmp_status lmp_builder_add(lmp_builder *b, const char *name, lmp_dtype type, int ndim,
                           const int64_t *shape, void *data, lmp_error *err);
// Adds a tensor whose data the caller keeps alive until the builder is freed or written.
lmp_status lmp_builder_add_ref(lmp_builder *b, const char *name, lmp_dtype type, int ndim,
                               const int64_t *shape, const void *data, lmp_error *err);
size_t lmp_builder_n_tensors(const lmp_builder *b);
const lmp_tensor *lmp_builder_tensor(const lmp_builder *b, size_t i);
const lmp_tensor *lmp_builder_find(const lmp_builder *b, const char *name);
lmp_status lmp_builder_write(const lmp_builder *b, const char *path, lmp_error *err);
// Serialises to memory and opens the result (LMP_OPEN_SKIP_CRC: just computed). The builder may be
// freed afterwards.
lmp_status lmp_builder_to_file(const lmp_builder *b, lmp_file **out, lmp_error *err);

#ifdef __cplusplus
}
#endif
#endif
