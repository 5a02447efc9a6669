// awq.h - the activation-aware scaling core (AWQ, Lin et al. 2023), testable apart from the pass
// (lmp_quant_run_awq in awq.c). Not a public interface.
//
// For the linear layers fed by one input X (cols channels), per-channel scales s = mean|x|^alpha
// (normalised) are searched so that quantizing W * s and dividing by s again loses the least output:
// loss = sum over the group's matrices of ||X W^T - X (Q(W s) / s)^T||^2, computed exactly through the
// Gram matrix G = X^T X / N as tr(D G D^T). The scale is then folded into whatever produces X (an
// RMSNorm weight, or the rows of v / up), so the float model is unchanged.
#ifndef LMP_AWQ_H
#define LMP_AWQ_H

#include <stdint.h>

#include "format/lmp_common.h"
#include "format/lmp_types.h"
#include "runtime/threadpool.h"

// One matrix of a group: w (rows, cols) row-major float32, quantized as type (the loss counts only
// quantized types; a float type contributes nothing).
typedef struct lmp_awq_mat {
    const float *w;  // (rows, cols)
    int64_t rows;
    lmp_dtype type;
} lmp_awq_mat;

// s[i] = max(x_mean[i], 1e-4)^alpha / sqrt(max_j s_j * min_j s_j) (the reference's normalisation: the
// geometric middle of the scales is 1). alpha = 0 gives s = 1 exactly.
void lmp_awq_scales(const float *x_mean, int64_t cols, float alpha, float *s);

// *loss = sum_k tr(D_k G D_k^T), D_k = W_k - dequant(rtn(W_k * s)) / s; s NULL means 1 (plain RTN).
// G: (cols, cols). pool may be NULL.
lmp_status lmp_awq_group_loss(const lmp_awq_mat *mats, int n_mats, int64_t cols, const float *G, const float *s,
                              lmp_pool *pool, double *loss, lmp_error *err);

typedef struct lmp_awq_result {
    float alpha;       // chosen exponent
    double loss_rtn;   // loss at alpha = 0 (plain RTN)
    double loss_best;  // loss at the chosen alpha
} lmp_awq_result;

// Grid search over alpha in {0, 1/n_grid, ..., 1}: the smallest loss wins, ties keep the smaller alpha.
// s_out (cols) receives the chosen scales.
lmp_status lmp_awq_search(const lmp_awq_mat *mats, int n_mats, int64_t cols, const float *x_mean, const float *G,
                          int n_grid, lmp_pool *pool, float *s_out, lmp_awq_result *res, lmp_error *err);

// Weight clipping search (AWQ's second step): for each row and quantization group of ws (rows, cols),
// the already-scaled weights, clamps the group to ratio * its range for the ratio in {1, 0.95, ..., 0.5}
// that minimises the group's output error d^T G_gg d, d = (ws - Q(clamped ws)) / s over the group's
// columns (G_gg its diagonal block of G). Modifies ws in place; a later RTN of ws gives the chosen
// blocks. s may be NULL (1). No-op for non-quantized types.
lmp_status lmp_awq_clip(float *ws, int64_t rows, int64_t cols, lmp_dtype type, const float *s, const float *G,
                        lmp_pool *pool, lmp_error *err);

// Mean over the query heads that share a KV head: x (n_heads * head_dim) -> out (n_kv * head_dim).
// The scale of attn_output's input must be the same for those heads, since it is folded into v.
void lmp_awq_tie_heads(const float *x, int n_heads, int n_kv, int head_dim, float *out);
// The inverse view: s_kv (n_kv * head_dim) -> s (n_heads * head_dim), head h using KV head h / (n_heads / n_kv).
void lmp_awq_expand_heads(const float *s_kv, int n_heads, int n_kv, int head_dim, float *s);

// One layer's float weights, as the fold modifies them.
typedef struct lmp_awq_layer {
    float *attn_norm;   // (dim)
    float *ffn_norm;    // (dim)
    float *wq;          // (n_heads * head_dim, dim)
    float *wk;          // (n_kv * head_dim, dim)
    float *wv;          // (n_kv * head_dim, dim)
    float *wo;          // (dim, n_heads * head_dim)
    float *w_gate;      // (ffn, dim)
    float *w_up;        // (ffn, dim)
    float *w_down;      // (dim, ffn)
    int dim, n_heads, n_kv, head_dim, ffn;
} lmp_awq_layer;

// Folds the four scales into the layer so that its float function is unchanged:
//   s_attn (dim):           attn_norm /= s, columns of wq, wk, wv *= s
//   s_v (n_kv * head_dim):  rows of wv /= s, columns of wo *= s of the head's KV channel
//   s_ffn (dim):            ffn_norm /= s, columns of w_gate, w_up *= s
//   s_up (ffn):             rows of w_up /= s, columns of w_down *= s
// Any scale may be NULL (not applied).
void lmp_awq_fold(const lmp_awq_layer *L, const float *s_attn, const float *s_v, const float *s_ffn, const float *s_up);

#endif
