// qtypes_internal.h - what qtypes.c (the traits table) shares with qtypes_k.c (the super-block types
// q4_K, q5_K, q6_K and the non-linear iq4_nl: their reference codecs and scale searches). Not a public
// header: only format/qtypes*.c include it.
#ifndef LMP_QTYPES_INTERNAL_H
#define LMP_QTYPES_INTERNAL_H

#include <stdint.h>

#include "format/lmp_types.h"

// Reference codecs (traits rows): to_float, from_float_ref (round to nearest, see docs/format.md),
// vec_dot_ref against q8_a activations.
void lmp_q4_K_to_float(const void *src, float *dst, int64_t n);
void lmp_q4_K_from_float(const float *src, void *dst, int64_t n);
void lmp_q4_K_vec_dot(int64_t n, float *s, const void *w, const void *x);
void lmp_q5_K_to_float(const void *src, float *dst, int64_t n);
void lmp_q5_K_from_float(const float *src, void *dst, int64_t n);
void lmp_q5_K_vec_dot(int64_t n, float *s, const void *w, const void *x);
void lmp_q6_K_to_float(const void *src, float *dst, int64_t n);
void lmp_q6_K_from_float(const float *src, void *dst, int64_t n);
void lmp_q6_K_vec_dot(int64_t n, float *s, const void *w, const void *x);
void lmp_iq4_nl_to_float(const void *src, float *dst, int64_t n);
void lmp_iq4_nl_from_float(const float *src, void *dst, int64_t n);
void lmp_iq4_nl_vec_dot(int64_t n, float *s, const void *w, const void *x);

// Weighted scale search of one block of t (q4_K, q5_K, q6_K: 256 elements; iq4_nl: 32): minimises
// sum_i w[i] (x[i] - q(x[i]))^2, never worse than from_float_ref under that error. w is never NULL.
// Returns 0, or -1 if t is not one of these types.
int lmp_quantize_block_k_weighted(lmp_dtype t, const float *x, void *dst, const float *w);

#endif
