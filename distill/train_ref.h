// train_ref.h - plain scalar references, in double precision, of every operation of the training engine
// (distill/train_ops.h): the same conventions (row-major, backward ops add into their outputs), written as
// the textbook loops. Tests check them against central finite differences and check the CPU backend's
// float32 ops against them. Not used for training (too slow); no threads, no BLAS.
#ifndef LMP_TRAIN_REF_H
#define LMP_TRAIN_REF_H

#include <stddef.h>
#include <stdint.h>

#include "distill/train_ops.h"

#ifdef __cplusplus
extern "C" {
#endif

void lmp_tref_embed_fwd(double *out, const double *E, const int32_t *tok, int n, int dim);
void lmp_tref_embed_bwd(double *dE, const double *dout, const int32_t *tok, int n, int dim);
void lmp_tref_rmsnorm_fwd(double *out, double *rstd, const double *x, const double *w, int n, int dim, double eps);
void lmp_tref_rmsnorm_bwd(double *dx, double *dw, const double *dout, const double *x, const double *w,
                          const double *rstd, int n, int dim);
void lmp_tref_matmul_fwd(double *y, const double *x, const double *W, int n, int in, int out);
void lmp_tref_matmul_bwd(double *dx, double *dW, const double *dy, const double *x, const double *W, int n, int in,
                         int out);
// cos_tab, sin_tab: (T, rope_dim / 2)
void lmp_tref_rope_fwd(double *x, int n, int T, int n_heads, int hd, const double *cos_tab, const double *sin_tab,
                       int rope_dim, int neox);
void lmp_tref_rope_bwd(double *dx, int n, int T, int n_heads, int hd, const double *cos_tab, const double *sin_tab,
                       int rope_dim, int neox);
void lmp_tref_attn_fwd(double *out, double *P, const double *q, const double *k, const double *v,
                       const lmp_attn_dims *d);
void lmp_tref_attn_bwd(double *dq, double *dk, double *dv, const double *dout, const double *q, const double *k,
                       const double *v, const double *P, const lmp_attn_dims *d);
void lmp_tref_swiglu_fwd(double *h, const double *g, const double *u, size_t n);
void lmp_tref_swiglu_bwd(double *dg, double *du, const double *dh, const double *g, const double *u, size_t n);
// Per-row losses into ce(n), kd(n); dlogits(n, V) = scale * gradient (a separate buffer here).
void lmp_tref_loss(double *dlogits, double *ce, double *kd, const double *logits, const int32_t *labels,
                   const double *teacher, int n, int V, const lmp_loss_params *p, double scale);
void lmp_tref_adamw(double *p, const double *g, double *m, double *v, size_t n, double lr, double b1, double b2,
                    double eps, double wd, double bc1, double bc2, double gscale);

#ifdef __cplusplus
}
#endif
#endif
