// backend.h - the small interface a compute backend implements (CPU now; CUDA slots in behind it).
//
// The forward pass (forward.c) is written once against these operations. Activations are float32,
// row-major (n_tokens, features), in memory the backend allocates (host memory for the CPU backend,
// device memory for a GPU backend); the forward pass never touches them directly, it only passes the
// pointers to ops and copies results out with to_host. Weights are lmp_weight views of any dtype of
// the traits table; upload_weight gives the backend the chance to copy them to the device.
//
// It does not define the model or the session (model.h, session.h).
#ifndef LMP_BACKEND_H
#define LMP_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "format/lmp_common.h"
#include "runtime/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum lmp_op {
    LMP_OP_GET_ROWS = 0,
    LMP_OP_RMSNORM,
    LMP_OP_MATMUL,
    LMP_OP_ROPE,
    LMP_OP_ATTENTION,
    LMP_OP_SWIGLU,
    LMP_OP_ADD,
    LMP_OP_COUNT,
} lmp_op;

// RoPE parameters of a model, with the precomputed frequency table: inv_freq[i] = theta^(-2i/rope_dim).
typedef struct lmp_rope {
    int head_dim, rope_dim, neox;
    const float *cos_tab, *sin_tab;  // (n_ctx, rope_dim / 2) host tables, built by the session
} lmp_rope;

typedef struct lmp_backend lmp_backend;

typedef struct lmp_backend_ops {
    const char *name;
    void (*destroy)(lmp_backend *b);  // frees the backend and its private state
    int host_memory;                  // 1 if alloc returns host memory the caller may read directly
    // memory for activations and KV cache; NULL on failure
    void *(*alloc)(lmp_backend *b, size_t bytes);
    void (*free)(lmp_backend *b, void *p);
    void (*to_host)(lmp_backend *b, void *dst, const void *src, size_t bytes);
    void (*from_host)(lmp_backend *b, void *dst, const void *src, size_t bytes);
    // 1 if the backend runs op with weights of dtype t (t ignored for ops without weights)
    int (*supports_op)(lmp_backend *b, lmp_op op, lmp_dtype t);
    lmp_status (*upload_weight)(lmp_backend *b, lmp_weight *w, lmp_error *err);
    void (*synchronize)(lmp_backend *b);

    // out(n, cols) = rows tokens[0..n) of emb (host token ids)
    void (*get_rows)(lmp_backend *b, float *out, const lmp_weight *emb, const int32_t *tokens, int n);
    // out(n, dim) = x / rms(x) * w, per row
    void (*rmsnorm)(lmp_backend *b, float *out, const float *x, const float *w, int n, int dim, float eps);
    // y(n, W.rows) = x(n, W.cols) W^T
    void (*matmul)(lmp_backend *b, float *y, const lmp_weight *w, const float *x, int n);
    // rotates q(n, n_heads * hd) and k(n, n_kv * hd) in place; token i is at position pos0 + i
    void (*rope)(lmp_backend *b, float *q, float *k, int n, int n_heads, int n_kv, int pos0,
                 const lmp_rope *r);
    // Stores k, v (n, n_kv * hd) into the layer's caches (n_ctx, n_kv * hd) at rows pos0.., then
    // out(n, n_heads * hd) = causal softmax(q k^T / sqrt(hd)) v over cache rows [0, pos0 + i].
    void (*attention)(lmp_backend *b, float *out, const float *q, const float *k, const float *v,
                      float *k_cache, float *v_cache, int n, int pos0, int n_heads, int n_kv, int hd);
    // gate(n, ff) = silu(gate) * up
    void (*swiglu)(lmp_backend *b, float *gate, const float *up, int n, int ff);
    // x[0..count) += y
    void (*add)(lmp_backend *b, float *x, const float *y, size_t count);
} lmp_backend_ops;

struct lmp_backend {
    const lmp_backend_ops *ops;
    void *ctx;  // backend-private state
};

typedef struct lmp_backend_opts {
    int n_threads;  // CPU: threads (<= 0: all cores)
} lmp_backend_opts;

// Creates a backend by name ("cpu"); a build without CUDA refuses "cuda" with a clear message.
lmp_status lmp_backend_new(const char *name, const lmp_backend_opts *opts, lmp_backend **out,
                           lmp_error *err);
void lmp_backend_free(lmp_backend *b);

// CPU backend specifics (the quantize and calibration passes share its thread pool).
lmp_status lmp_backend_cpu_new(const lmp_backend_opts *opts, lmp_backend **out, lmp_error *err);
struct lmp_pool *lmp_backend_cpu_pool(lmp_backend *b);

#ifdef __cplusplus
}
#endif
#endif
