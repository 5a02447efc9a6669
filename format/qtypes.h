// qtypes.h - the type-traits table: one row per lmp_dtype with its name, block geometry and the scalar
// reference codecs (to_float, from_float_ref, vec_dot_ref).
//
// This is the single source of truth for type names and sizes; the file reader, the runtime and the
// quantizer all ask this table. Fast SIMD kernels live behind quant/kernels.h and are tested against
// the _ref functions here. Adding a type = a block struct in format/lmp_types.h + a row here.
#ifndef LMP_QTYPES_H
#define LMP_QTYPES_H

#include <stddef.h>
#include <stdint.h>

#include "format/lmp_types.h"

#ifdef __cplusplus
extern "C" {
#endif

// dst[0..n) = dequantized src; n is a multiple of the block size.
typedef void (*lmp_to_float_fn)(const void *src, float *dst, int64_t n);
// dst = quantized src (round to nearest, scale from the block's absolute maximum or min/max);
// n is a multiple of the block size.
typedef void (*lmp_from_float_fn)(const float *src, void *dst, int64_t n);
// *s = dot(w[0..n), x[0..n)) where w is of this type and x of the row's vec_dot_type.
typedef void (*lmp_vec_dot_fn)(int64_t n, float *s, const void *w, const void *x);

typedef struct lmp_type_traits {
    const char *name;          // "f32", "q4_0", "q4_1_g64", ... (lower case, as printed and parsed)
    const char *description;   // one line for --help: "4-bit symmetric, group 32, fp16 scale"
    int64_t block_size;        // elements per block (1 for float types)
    size_t type_size;          // bytes per block
    int is_quantized;          // 1 for the integer block types
    int storable;              // 0 for run-time-only types (q8_a, q16_a)
    lmp_dtype vec_dot_type;    // type the activation row must be in for vec_dot: F32, Q8_A or Q16_A
    lmp_to_float_fn to_float;
    lmp_from_float_fn from_float_ref;
    lmp_vec_dot_fn vec_dot_ref;
} lmp_type_traits;

// Row of the table, or NULL for a value that is not a known type (never trust a file's value).
const lmp_type_traits *lmp_type_get(lmp_dtype t);
// Type by name (case-insensitive; also accepts "q8", "q4" aliases for q8_0 and q4_0); -1 if unknown.
int lmp_type_from_name(const char *name);
const char *lmp_type_name(lmp_dtype t);  // "?" for unknown values
// Bytes of a row of n elements, or 0 if n is not a multiple of the block size or t is unknown.
size_t lmp_type_row_size(lmp_dtype t, int64_t n);
// Bits per weight of the type (type_size * 8 / block_size).
double lmp_type_bpw(lmp_dtype t);

// Weighted reference quantizer: like from_float_ref, but chooses each block's scale (and minimum) to
// minimise sum_i imp[i] * (x[i] - q(x[i]))^2 by a small search (llama.cpp's imatrix idea); for q8_0 a sweep
// over every set of codes between the inverse scales 96 / amax and 128 / amax.
// imp may be NULL (uniform weights, still searched). Supported for every quantized storable type;
// returns 0 on success, -1 if t is not quantized.
int lmp_quantize_row_weighted(lmp_dtype t, const float *src, void *dst, int64_t n, const float *imp);

// Scale search (quantize --method search, and imatrix): lmp_quantize_row_weighted with the weights of the
// error chosen per block: imp given (per-element importance from calibration, e.g. mean squared
// activations): w = imp; imp NULL: from the block's own values, w_i = rms + |x_i| (larger weights kept
// more exactly). Returns 0, or -1 as lmp_quantize_row_weighted.
int lmp_quantize_row_search(lmp_dtype t, const float *src, void *dst, int64_t n, const float *imp);

// Element j of one block of t (q4_K, q5_K, q6_K, iq4_nl) set to the code nearest to x under the block's stored
// scales (the other elements and the scales unchanged); returns the value it now decodes to (NaN for
// another type). GPTQ quantizes column by column with the scales of each block fixed.
float lmp_block_quantize_elem(lmp_dtype t, void *blk, int j, float x);

#ifdef __cplusplus
}
#endif
#endif
