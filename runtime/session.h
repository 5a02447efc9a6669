// session.h - one inference context over a model: backend, KV cache, activation buffers, and the
// forward pass (forward.c). Prompts and evaluation chunks go through as batches; decode is n = 1.
//
// Calibration passes (quantize) use the same forward pass through hooks that see the input of every
// linear layer, and through lmp_session_embed / lmp_session_run_layers to run a model layer by layer.
#ifndef LMP_SESSION_H
#define LMP_SESSION_H

#include <stdint.h>

#include "runtime/backend.h"
#include "runtime/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lmp_session_opts {
    int n_ctx;              // KV cache positions; <= 0: the model's context length
    int n_batch;            // largest batch run at once; <= 0: min(n_ctx, 512)
    int n_threads;          // CPU threads; <= 0: all cores (ignored when pool is given)
    const char *backend;    // "cpu" (default) or "cuda"
    struct lmp_pool *pool;  // CPU: borrow this thread pool (one pool per process); NULL: the backend's own
} lmp_session_opts;

// A hook sees the activations at a hook point (lmp_hook_point, runtime/model.h): x is host memory valid
// during the call; width is the row length. Hooks are called only while set, and only then do device
// backends copy activations to the host.
typedef void (*lmp_hook_fn)(void *user, int layer, lmp_hook_point where, const float *x, int n, int width);

typedef struct lmp_session lmp_session;

// Creates the backend, uploads every weight (norms included) and allocates the KV cache and buffers; refuses a
// weight dtype the backend has no kernel for, naming it. The model must outlive the session; weights replaced
// with lmp_model_weight_set are re-uploaded before the next evaluation.
lmp_status lmp_session_new(lmp_model *m, const lmp_session_opts *opts, lmp_session **out, lmp_error *err);
void lmp_session_free(lmp_session *s);
int lmp_session_n_ctx(const lmp_session *s);
lmp_backend *lmp_session_backend(lmp_session *s);
const lmp_model *lmp_session_model(const lmp_session *s);
void lmp_session_set_hook(lmp_session *s, lmp_hook_fn fn, void *user);

// Runs tokens[0..n) at positions pos..pos+n-1 (the KV cache must hold positions 0..pos-1; positions
// >= pos are overwritten). If logits is not NULL it receives the logits of tokens [logits_from, n):
// (n - logits_from, vocab) floats, host memory. Batches larger than n_batch are split internally.
lmp_status lmp_session_eval(lmp_session *s, const int32_t *tokens, int n, int pos, int logits_from,
                            float *logits, lmp_error *err);

// Layer-by-layer access (calibration). x is host memory (n, dim); n <= n_batch.
lmp_status lmp_session_embed(lmp_session *s, const int32_t *tokens, int n, float *x, lmp_error *err);
// Applies blocks [l0, l1) to x in place, tokens at positions pos.. (uses and fills the KV cache).
lmp_status lmp_session_run_layers(lmp_session *s, float *x, int n, int pos, int l0, int l1, lmp_error *err);

#ifdef __cplusplus
}
#endif
#endif
