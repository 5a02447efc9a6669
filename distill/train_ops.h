// train_ops.h - the operations of the training engine: forward and backward of each layer type over
// float32 buffers, the loss, the gradient norm and the AdamW update, as a table of functions that a
// backend implements (the CPU one is distill/train_cpu.c; a CUDA one can follow behind the same table,
// as runtime/backend.h does for inference).
//
// Conventions. Activations are row-major (n_tokens, features) with n_tokens = B * T (B sequences of T
// tokens, token i at position i % T). Weights are (out, in) like nn.Linear. Every backward op ADDS its
// gradients into the output buffers (dx += ..., dW += ...): the engine zeroes what needs zeroing, and
// inputs shared by several consumers (q/k/v share their input) accumulate naturally. Buffers come from
// the table's alloc; the engine passes them to ops and never dereferences them unless host_memory says
// it may.
//
// The scalar double-precision references of every op are in distill/train_ref.h; tests compare this
// table against them and against finite differences. It does not know the model (distill/train.c).
#ifndef LMP_TRAIN_OPS_H
#define LMP_TRAIN_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "format/lmp_common.h"

#ifdef __cplusplus
extern "C" {
#endif

struct lmp_pool;

// Attention geometry of one layer.
typedef struct lmp_attn_dims {
    int B, T;            // sequences, tokens per sequence
    int n_heads, n_kv;   // query heads, key/value heads (n_kv divides n_heads)
    int hd;              // head dimension
} lmp_attn_dims;

// RoPE of a model: cos/sin tables (T, rope_dim / 2), the layout and the head geometry.
typedef struct lmp_train_rope {
    const float *cos_tab, *sin_tab;  // (T, rope_dim / 2), backend memory
    int rope_dim, neox;              // neox: pairs (i, i + rope_dim/2); else interleaved (2i, 2i+1)
} lmp_train_rope;

typedef enum lmp_kd_loss {
    LMP_KD_FKL = 0,  // forward KL(p_teacher,T || p_student,T)
    LMP_KD_RKL = 1,  // reverse KL(p_student,T || p_teacher,T)
} lmp_kd_loss;

// The distillation loss per token: alpha * T^2 * KL + (1 - alpha) * CE(label, p_student).
typedef struct lmp_loss_params {
    float alpha;     // weight of the KD term, 0..1 (0: labels only; teacher logits unused)
    float temp;      // temperature T > 0 of the KD term
    lmp_kd_loss kd;  // KL direction
} lmp_loss_params;

typedef struct lmp_train_backend lmp_train_backend;

typedef struct lmp_train_ops {
    const char *name;
    void (*destroy)(lmp_train_backend *b);
    int host_memory;  // 1: alloc returns host memory the caller may read and write directly
    void *(*alloc)(lmp_train_backend *b, size_t bytes);  // NULL on failure
    void (*free)(lmp_train_backend *b, void *p);
    void (*to_host)(lmp_train_backend *b, void *dst, const void *src, size_t bytes);
    void (*from_host)(lmp_train_backend *b, void *dst, const void *src, size_t bytes);
    void (*zero)(lmp_train_backend *b, float *x, size_t n);
    // Waits for the queued ops and returns (and clears) the first failure since the last call (ops are void;
    // a failure, e.g. no memory for scratch, is sticky until then and its op's outputs are NaN).
    lmp_status (*synchronize)(lmp_train_backend *b, lmp_error *err);
    // x[0..n) += y
    void (*add)(lmp_train_backend *b, float *x, const float *y, size_t n);

    // out(n, dim) = rows tok[0..n) of E(vocab, dim) / dE(vocab, dim) += scatter of dout(n, dim)
    void (*embed_fwd)(lmp_train_backend *b, float *out, const float *E, const int32_t *tok, int n, int dim);
    void (*embed_bwd)(lmp_train_backend *b, float *dE, const float *dout, const int32_t *tok, int n, int dim);

    // out(n, dim) = x * rstd * w with rstd(n) = 1 / sqrt(mean(x^2) + eps) (saved for backward)
    void (*rmsnorm_fwd)(lmp_train_backend *b, float *out, float *rstd, const float *x, const float *w, int n,
                        int dim, float eps);
    // dx(n, dim) += d/dx, dw(dim) += d/dw of sum(dout * out)
    void (*rmsnorm_bwd)(lmp_train_backend *b, float *dx, float *dw, const float *dout, const float *x,
                        const float *w, const float *rstd, int n, int dim);

    // y(n, out) = x(n, in) W(out, in)^T
    void (*matmul_fwd)(lmp_train_backend *b, float *y, const float *x, const float *W, int n, int in, int out);
    // dx(n, in) += dy W; dW(out, in) += dy^T x (either may be NULL: not wanted)
    void (*matmul_bwd)(lmp_train_backend *b, float *dx, float *dW, const float *dy, const float *x, const float *W,
                       int n, int in, int out);

    // Rotates x(n, n_heads * hd) in place by the angles of positions i % T (fwd) or by their inverse (bwd:
    // the rotation is orthogonal, so the gradient is rotated back).
    void (*rope_fwd)(lmp_train_backend *b, float *x, int n, int T, int n_heads, int hd, const lmp_train_rope *r);
    void (*rope_bwd)(lmp_train_backend *b, float *dx, int n, int T, int n_heads, int hd, const lmp_train_rope *r);

    // Causal grouped-query attention: q(n, nh * hd), k, v(n, nkv * hd), out(n, nh * hd); query head h reads
    // key/value head h / (nh / nkv); scores scaled by 1/sqrt(hd). Either P(B, nh, T, T) receives the softmax
    // probabilities (zero above the diagonal), kept for backward, or (P NULL, recompute mode) lse(B, nh, T)
    // receives each row's log-sum-exp and backward rebuilds the probabilities from q, k and lse (T times less
    // memory, one more product).
    void (*attn_fwd)(lmp_train_backend *b, float *out, float *P, float *lse, const float *q, const float *k,
                     const float *v, const lmp_attn_dims *d);
    void (*attn_bwd)(lmp_train_backend *b, float *dq, float *dk, float *dv, const float *dout, const float *q,
                     const float *k, const float *v, const float *P, const float *lse, const lmp_attn_dims *d);

    // h[i] = silu(g[i]) * u[i]; backward dg += dh * u * silu'(g), du += dh * silu(g)
    void (*swiglu_fwd)(lmp_train_backend *b, float *h, const float *g, const float *u, size_t n);
    void (*swiglu_bwd)(lmp_train_backend *b, float *dg, float *du, const float *dh, const float *g, const float *u,
                       size_t n);

    // The loss of n rows of logits(n, V) with labels(n) and, when p->alpha > 0, teacher logits(n, V).
    // Writes per-row CE and T^2 * KL (0 when alpha == 0) into ce(n), kd(n), and replaces logits with
    // scale * d(loss of each row)/d(logits) (in place: the logits are not needed afterwards).
    void (*loss_fwd_bwd)(lmp_train_backend *b, float *logits, float *ce, float *kd, const int32_t *labels,
                         const float *teacher, int n, int V, const lmp_loss_params *p, float scale);

    // sum of x[i]^2 in double (the global gradient norm is the root of the sum over tensors)
    double (*sumsq)(lmp_train_backend *b, const float *x, size_t n);
    // One AdamW step (PyTorch's torch.optim.AdamW): g' = g * gscale; m = b1 m + (1-b1) g';
    // v = b2 v + (1-b2) g'^2; p -= lr * wd * p; p -= lr * (m / bc1) / (sqrt(v / bc2) + eps),
    // with bc1 = 1 - b1^t, bc2 = 1 - b2^t for step t (1-based).
    void (*adamw)(lmp_train_backend *b, float *p, const float *g, float *m, float *v, size_t n, float lr, float b1,
                  float b2, float eps, float wd, float bc1, float bc2, float gscale);
} lmp_train_ops;

struct lmp_train_backend {
    const lmp_train_ops *ops;
    void *ctx;  // backend-private state
};

// The CPU backend: OpenBLAS sgemm (single-threaded inside each slice) split over the threads of pool. pool
// is borrowed (NULL: a private pool of n_threads threads, <= 0 meaning all cores).
lmp_status lmp_train_cpu_new(struct lmp_pool *pool, int n_threads, lmp_train_backend **out, lmp_error *err);
void lmp_train_backend_free(lmp_train_backend *b);  // NULL is a no-op
int lmp_train_backend_threads(const lmp_train_backend *b);

#ifdef __cplusplus
}
#endif
#endif
