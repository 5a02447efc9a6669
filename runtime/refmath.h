// refmath.h - the scalar reference math of the Llama block: RMSNorm, RoPE (tables and rotation, both pair
// layouts), softmax and SiLU. One definition shared by the CPU backend, the tests and the training engine,
// so that "the same function" means the same code; fast variants (SIMD, CUDA) are tested against these.
// It does not do matrix products (runtime/kernels.h) nor know the model (runtime/model.h).
#ifndef LMP_REFMATH_H
#define LMP_REFMATH_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// out(dim) = x / sqrt(mean(x^2) + eps) * w, one row (out may equal x). Sum of squares in float, in order.
void lmp_ref_rmsnorm(float *out, const float *x, const float *w, int dim, float eps);

// cos/sin tables (n_ctx, rope_dim / 2): angle(p, i) = p * theta^(-2i / rope_dim), computed in float with
// powf as llama2.c's run.c does (so greedy generation matches it token for token).
void lmp_ref_rope_tables(float *cos_tab, float *sin_tab, int n_ctx, int rope_dim, float theta);

// Rotates the first rope_dim elements of one head vector v in place with one position's table rows
// cs, sn (rope_dim / 2). neox = 1: pairs (i, i + rope_dim/2); neox = 0: interleaved pairs (2i, 2i+1).
void lmp_ref_rope_rotate(float *v, const float *cs, const float *sn, int rope_dim, int neox);

// x[0..n) = softmax(x) in place (max subtracted first; n >= 1).
void lmp_ref_softmax(float *x, int n);

// x * sigmoid(x).
static inline float lmp_ref_silu(float x) { return x / (1.0f + expf(-x)); }

#ifdef __cplusplus
}
#endif
#endif
