// kernels.h - fast CPU kernels for the runtime, chosen once at run time by what the CPU supports.
//
// Every entry has a scalar implementation built from the reference codecs in qtypes.h; SIMD tables
// (AVX2+FMA+F16C, AVX-512 with VNNI) override the entries they speed up and fall back to the same
// scalar code for tails. Tests compare every table the CPU can run against the scalar one.
//
// Threading is not done here: callers split the output rows [r0, r1) across threads.
#ifndef LMP_KERNELS_H
#define LMP_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "format/lmp_types.h"

#ifdef __cplusplus
extern "C" {
#endif

// Matrix-vector product (decode): y[r] = dot(W[r, 0..n), x) for r in [r0, r1).
//   w: row-major weights, row r starts at (const char *)w + r * w_row_bytes, type = table index
//   x: one activation row of n elements in the weight type's vec_dot_type (float, lmp_block_q8_a or
//      lmp_block_q16_a)
//   y: indexed by absolute row r (y[r0..r1) written)
typedef void (*lmp_matvec_fn)(const void *w, size_t w_row_bytes, const void *x, float *y, int64_t n,
                              int64_t r0, int64_t r1);

// Matrix-matrix product (prefill / evaluation): y[i * ldy + r] = dot(W[r], X[i]) for i in [0, m),
// r in [r0, r1). X row i starts at (const char *)x + i * x_row_bytes, in the vec_dot_type.
typedef void (*lmp_matmul_fn)(const void *w, size_t w_row_bytes, const void *x, size_t x_row_bytes,
                              int64_t m, float *y, int64_t ldy, int64_t n, int64_t r0, int64_t r1);

// Quantize one activation row of n floats (n multiple of 32) to n/32 blocks of lmp_block_q8_a or
// lmp_block_q16_a, bit-identical to the type's from_float_ref.
typedef void (*lmp_quantize_act_fn)(const float *x, void *xq, int64_t n);

typedef struct lmp_kernels {
    const char *isa;                          // "scalar", "avx2", "avx512vnni"
    lmp_matvec_fn matvec[LMP_DTYPE_COUNT];    // indexed by weight dtype; never NULL
    lmp_matmul_fn matmul[LMP_DTYPE_COUNT];    // indexed by weight dtype; never NULL
    lmp_quantize_act_fn quantize_q8a;         // activations of the 4-bit types
    lmp_quantize_act_fn quantize_q16a;        // activations of q8_0
} lmp_kernels;

// The table's quantizer for activation type t (LMP_DTYPE_Q8_A or LMP_DTYPE_Q16_A, a row's vec_dot_type),
// or NULL for LMP_DTYPE_F32 and anything else: the one place that maps activation types to quantizers.
lmp_quantize_act_fn lmp_kernels_act_quantizer(const lmp_kernels *k, lmp_dtype t);

// The fastest table this CPU runs. The environment variable LMP_ISA=scalar|avx2|avx512vnni caps the
// choice (for tests and benchmarks); an ISA the CPU lacks is ignored.
const lmp_kernels *lmp_kernels_best(void);
// A specific table by isa name, or NULL if unknown or the CPU cannot run it.
const lmp_kernels *lmp_kernels_by_isa(const char *isa);
// The names of all tables compiled in, NULL-terminated (whether or not this CPU runs them).
const char *const *lmp_kernels_isa_list(void);

#ifdef __cplusplus
}
#endif
#endif
