// safetensors.h - strict reader of .safetensors files (Hugging Face's tensor container).
//
// Layout: u64 little-endian N; N bytes of UTF-8 JSON (may be padded with trailing spaces)
//   { "NAME": {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end]}, ...,
//     "__metadata__": {"key": "string value", ...} (optional) }
// then the byte buffer; offsets are relative to its start (8 + N). The reader checks, as the reference
// implementation does, that every tensor's bytes = element size x product(shape), that the tensors,
// sorted by offset, tile the buffer exactly (no gap, no overlap, nothing after the last one), and
// names the tensor and numbers in every message. It maps the file read-only and does not convert
// dtypes or know about model layouts (format/import_hf.c does).
#ifndef LMP_SAFETENSORS_H
#define LMP_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "format/json.h"
#include "format/lmp_common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LMP_ST_MAX_DIMS 8
#define LMP_ST_MAX_HEADER ((uint64_t)100 << 20)  // 100 MB, the reference implementation's limit

typedef enum lmp_st_dtype {
    LMP_ST_BOOL, LMP_ST_U8, LMP_ST_I8, LMP_ST_F8_E5M2, LMP_ST_F8_E4M3, LMP_ST_I16, LMP_ST_U16,
    LMP_ST_F16, LMP_ST_BF16, LMP_ST_I32, LMP_ST_U32, LMP_ST_F32, LMP_ST_F64, LMP_ST_I64, LMP_ST_U64,
    LMP_ST_DTYPE_COUNT,
} lmp_st_dtype;

typedef struct lmp_st_tensor {
    const char *name;
    lmp_st_dtype dtype;
    int ndim;                         // 0 (scalar) .. LMP_ST_MAX_DIMS
    int64_t shape[LMP_ST_MAX_DIMS];   // outermost first
    uint64_t begin, end;              // data_offsets, relative to the byte buffer
    const void *data;                 // (end - begin) bytes inside the mapping
} lmp_st_tensor;

typedef struct lmp_safetensors lmp_safetensors;

// Maps and validates path. On failure *out is NULL and err names the problem (messages start with
// the file's base name).
lmp_status lmp_safetensors_open(const char *path, lmp_safetensors **out, lmp_error *err);
// Same over caller memory (borrowed: it must outlive the handle).
lmp_status lmp_safetensors_open_mem(const void *buf, size_t size, lmp_safetensors **out, lmp_error *err);
void lmp_safetensors_close(lmp_safetensors *st);  // NULL is a no-op

size_t lmp_safetensors_n_tensors(const lmp_safetensors *st);
const lmp_st_tensor *lmp_safetensors_tensor(const lmp_safetensors *st, size_t i);  // header order
const lmp_st_tensor *lmp_safetensors_find(const lmp_safetensors *st, const char *name);
// The "__metadata__" object (string values only), or NULL when absent.
const lmp_json *lmp_safetensors_metadata(const lmp_safetensors *st);
// The whole file's bytes (for provenance checksums).
const void *lmp_safetensors_bytes(const lmp_safetensors *st, size_t *size);

const char *lmp_st_dtype_name(lmp_st_dtype t);   // "F32", ...
size_t lmp_st_dtype_size(lmp_st_dtype t);        // bytes per element

#ifdef __cplusplus
}
#endif
#endif
