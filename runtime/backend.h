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

// RoPE parameters of a model, with the precomputed tables (lmp_ref_rope_tables) in the backend's memory
// (the session allocates them with alloc and fills them with from_host).
typedef struct lmp_rope {
    int head_dim, rope_dim, neox;
    const float *cos_tab, *sin_tab;  // (n_ctx, rope_dim / 2) backend memory
} lmp_rope;

typedef struct lmp_backend lmp_backend;
// One layer's KV cache, owned and laid out by the backend (the CPU's: two (n_ctx, kv_dim) float arrays).
typedef struct lmp_kv_cache lmp_kv_cache;

// Error discipline: operations return nothing (a device backend queues them); one that cannot run records a
// sticky error (the first one wins) and later operations may do nothing. synchronize waits for queued work
// and returns that error (and clears it), so every caller that reads results sees failures.
typedef struct lmp_backend_ops {
    const char *name;
    void (*destroy)(lmp_backend *b);  // frees the backend and its private state
    int host_memory;                  // 1 if alloc returns host memory the caller may read directly
    // memory for activations; NULL on failure
    void *(*alloc)(lmp_backend *b, size_t bytes);
    void (*free)(lmp_backend *b, void *p);
    void (*to_host)(lmp_backend *b, void *dst, const void *src, size_t bytes);
    void (*from_host)(lmp_backend *b, void *dst, const void *src, size_t bytes);
    // 1 if the backend runs op with weights of dtype t (t ignored for ops without weights); the session asks
    // it for every weight before running anything.
    int (*supports_op)(lmp_backend *b, lmp_op op, lmp_dtype t);
    // Copies w (any weight: matrices, embeddings, norms) to the backend, replacing a copy made earlier (after
    // lmp_model_weight_set); sets w->dev. A no-op on host-memory backends.
    lmp_status (*upload_weight)(lmp_backend *b, lmp_weight *w, lmp_error *err);
    // Frees w's backend copy (w->dev = NULL).
    void (*release_weight)(lmp_backend *b, lmp_weight *w);
    // A KV cache of n_ctx positions of kv_dim floats for keys and for values.
    lmp_status (*kv_new)(lmp_backend *b, int n_ctx, int kv_dim, lmp_kv_cache **out, lmp_error *err);
    void (*kv_free)(lmp_backend *b, lmp_kv_cache *kv);
    // Waits for queued work; returns (and clears) the first error since the last call, LMP_OK if none.
    lmp_status (*synchronize)(lmp_backend *b, lmp_error *err);

    // out(n, cols) = rows tokens[0..n) of emb (host token ids)
    void (*get_rows)(lmp_backend *b, float *out, const lmp_weight *emb, const int32_t *tokens, int n);
    // out(n, dim) = x / rms(x) * w, per row; w is a (1, dim) F32 weight
    void (*rmsnorm)(lmp_backend *b, float *out, const float *x, const lmp_weight *w, int n, int dim, float eps);
    // y(n, W.rows) = x(n, W.cols) W^T
    void (*matmul)(lmp_backend *b, float *y, const lmp_weight *w, const float *x, int n);
    // rotates q(n, n_heads * hd) and k(n, n_kv * hd) in place; token i is at position pos0 + i
    void (*rope)(lmp_backend *b, float *q, float *k, int n, int n_heads, int n_kv, int pos0,
                 const lmp_rope *r);
    // Stores k, v (n, n_kv * hd) into kv at positions pos0.., then out(n, n_heads * hd) =
    // causal softmax(q k^T / sqrt(hd)) v over positions [0, pos0 + i]; query head h reads KV head
    // h / (n_heads / n_kv).
    void (*attention)(lmp_backend *b, float *out, const float *q, const float *k, const float *v, lmp_kv_cache *kv,
                      int n, int pos0, int n_heads, int n_kv, int hd);
    // gate(n, ff) = silu(gate) * up
    void (*swiglu)(lmp_backend *b, float *gate, const float *up, int n, int ff);
    // x[0..count) += y
    void (*add)(lmp_backend *b, float *x, const float *y, size_t count);

    // ---- optional (NULL on the CPU backend: the caller does without) ----
    // Recorded single-token steps (CUDA graphs). The caller reserves the host buffer for a step's logits,
    // then brackets the ops of one single-token step with step_record_begin / step_record_end (begin returns
    // 0 if recording is not possible now); while recording, the token id and position come from the
    // backend's step parameters, the ops are recorded and not run, and the one to_host copy lands in the
    // reserved buffer. step_record_end returns 1 if the step was recorded under key (0: the caller issues the
    // ops again, normally). step_replay runs the step recorded under key for token at pos, copies its logits
    // (if it recorded a copy) to logits and returns 1; 0 if nothing is recorded under key. Recordings are
    // dropped when weights or caches change.
    int (*step_reserve)(lmp_backend *b, size_t logits_bytes);
    int (*step_record_begin)(lmp_backend *b, uint64_t key, int32_t token, int pos);
    int (*step_record_end)(lmp_backend *b);
    int (*step_replay)(lmp_backend *b, uint64_t key, int32_t token, int pos, float *logits);
    // Evaluation statistics of n rows of logits (n, vocab) in backend memory, as runtime/perplexity.c
    // computes them: nll[i] = -log softmax(row i)[target[i]]; top[i] = argmax (lowest index on ties); with
    // base_lp (backend memory, (n, vocab) log-probabilities of the base model, possibly another backend
    // instance of the same kind) kl[i] = KL(base || model) and top1[i] = (top[i] == base_top[i]); with
    // lp_out (backend memory) the rows' log-probabilities are stored there. target, base_top and the
    // outputs are host arrays of n; the call returns when they are filled.
    void (*logits_stats)(lmp_backend *b, const float *logits, int n, int vocab, const int32_t *target,
                         const float *base_lp, const int32_t *base_top, float *lp_out, double *nll, double *kl,
                         int32_t *top, int32_t *top1);
    // Read bandwidth of the backend's memory in bytes/s (a buffer many times the caches, best of a few
    // passes), the roofline's denominator; 0 if it cannot be measured.
    double (*read_bandwidth)(lmp_backend *b);
    // Bytes of backend memory in use now: weights, KV caches, everything else (activations, workspaces).
    void (*memory_used)(lmp_backend *b, uint64_t *weights, uint64_t *kv, uint64_t *other);
    // y[i](n, w[i].rows) = x(n, cols) w[i]^T for i < count (1..LMP_MATMUL_MULTI_MAX), one x of the same cols
    // for every weight (q, k, v; gate, up): a backend can quantize x once and run the products in one pass
    // over its threads. With LMP_MULTI_SWIGLU (count 2, equal rows) y[0] = silu(y[0]) * y[1] afterwards, as
    // swiglu would. Results equal those of the single ops. NULL: the caller issues matmul (and swiglu).
    void (*matmul_multi)(lmp_backend *b, float *const *y, const lmp_weight *const *w, int count, const float *x,
                         int n, int flags);
} lmp_backend_ops;

#define LMP_MATMUL_MULTI_MAX 4
#define LMP_MULTI_SWIGLU 1

struct lmp_backend {
    const lmp_backend_ops *ops;
    void *ctx;  // backend-private state
};

struct lmp_pool;

typedef struct lmp_backend_opts {
    int n_threads;          // CPU: threads (<= 0: all cores); ignored when pool is given
    struct lmp_pool *pool;  // CPU: a thread pool to borrow (not freed with the backend); NULL: own pool
    int exact;              // device: batches in the CPU's arithmetic (evaluation), not the fastest (CPU: ignored)
} lmp_backend_opts;

// Creates a backend by name ("cpu", "cuda", or one registered with lmp_backend_register); a build without
// CUDA refuses "cuda" with a clear message.
lmp_status lmp_backend_new(const char *name, const lmp_backend_opts *opts, lmp_backend **out,
                           lmp_error *err);

// Adds a backend constructor under name (at most 8 registrations; a name may be registered once; "cpu" and
// "cuda" are built in). For tests and embedders: e.g. a backend that wraps another to count or fail calls.
typedef lmp_status (*lmp_backend_ctor)(const lmp_backend_opts *opts, lmp_backend **out, lmp_error *err);
lmp_status lmp_backend_register(const char *name, lmp_backend_ctor ctor, lmp_error *err);
void lmp_backend_free(lmp_backend *b);

// CPU backend specifics.
lmp_status lmp_backend_cpu_new(const lmp_backend_opts *opts, lmp_backend **out, lmp_error *err);
// The CUDA backend (defined in cuda/ in builds with CUDA; elsewhere it refuses with LMP_E_UNSUPPORTED).
lmp_status lmp_backend_cuda_new(const lmp_backend_opts *opts, lmp_backend **out, lmp_error *err);

// Programs call this once at startup (before any backend runs): OpenBLAS single-threaded, so that the
// project's thread pool owns the cores and calls sgemm on row slices from its threads. The library never
// calls it itself (it is process-wide); without it the CPU backend lets OpenBLAS thread each product.
void lmp_cpu_blas_single_threaded(void);

#ifdef __cplusplus
}
#endif
#endif
