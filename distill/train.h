// train.h - the training engine: a Llama model's parameters in float32, its forward pass with every
// activation the backward pass needs kept (llm.c style; the inference forward overwrites its buffers layer
// by layer and cannot serve), the backward pass, the distillation loss, the global gradient norm and
// AdamW. All arithmetic goes through the op table of distill/train_ops.h (CPU backend today).
//
// Shapes come from the runtime's lmp_model, layer by layer (a pruned student has its own head counts
// and FFN width in each layer). Parameters, gradients and the two Adam moments are four buffers of the
// same layout, one tensor after the other in the runtime's weight order (lmp_model_weight_at: token_embd,
// output, output_norm, then per layer the two norms and the seven matrices of lmp_mats); lmp_train_tensor
// gives each one's name, shape and offset.
//
// It does not read data, run the teacher or write checkpoints (distill/distill.c does).
#ifndef LMP_TRAIN_H
#define LMP_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "distill/train_ops.h"
#include "format/lmp_format.h"
#include "runtime/model.h"

#ifdef __cplusplus
extern "C" {
#endif

struct lmp_pool;

typedef struct lmp_trainer lmp_trainer;

typedef struct lmp_trainer_opts {
    int batch;                // B sequences per step (>= 1)
    int seq;                  // T tokens per sequence (2..model context)
    int n_threads;            // CPU threads when pool is NULL (<= 0: all cores)
    struct lmp_pool *pool;    // borrowed thread pool, or NULL
    int allow_convert;        // 1: accept f16/bf16/quantized weights, converted to f32 (gradient scoring);
                              // 0: refuse anything but f32 (training writes f32 weights back)
    int attn_recompute;       // attention probabilities for backward: 1 recompute them from q, k and each row's
                              // log-sum-exp (memory B nh T instead of B nh T^2 per layer, about 1/5 more attention
                              // work); -1 keep them; 0 (default) recompute when seq > LMP_TRAIN_RECOMPUTE_SEQ
    int grads_only;           // 1: no AdamW moments (gradients only, e.g. scoring; lmp_trainer_adamw refuses)
} lmp_trainer_opts;

#define LMP_TRAIN_RECOMPUTE_SEQ 512
// Whether a trainer with these options recomputes attention probabilities (the rule of attn_recompute).
int lmp_train_attn_recomputes(int seq, int attn_recompute);

// One parameter tensor: its file name and shape, and where it lives in the flat buffers.
typedef struct lmp_train_tensor {
    char name[64];     // "blk.3.attn_q.weight"
    int ndim;          // 1 (norms) or 2 (matrices)
    int64_t shape[2];  // (rows, cols) or (dim)
    size_t offset;     // first element in params / grads / adam m / adam v
    size_t count;      // elements
    int decay;         // 1: weight decay applies (matrices); 0: norms
} lmp_train_tensor;

// Bytes of memory a training step needs (all in the backend's memory), per part.
typedef struct lmp_train_memory {
    uint64_t params;       // parameters, float32
    uint64_t grads;        // their gradients
    uint64_t adam;         // the two AdamW moments
    uint64_t activations;  // saved for backward: per layer and final norm (see docs/training.md)
    uint64_t logits;       // (B*T, vocab) logits, turned into their gradient in place, and per-token losses
    uint64_t teacher;      // (B*T, vocab) teacher logits (only when the backend has its own memory)
    uint64_t backward;     // gradient scratch of one layer, reused by every layer
    uint64_t total;
} lmp_train_memory;

// What a step computed: mean losses over the B*T scored tokens.
typedef struct lmp_train_loss {
    double loss;  // alpha * kd + (1 - alpha) * ce
    double ce;    // cross-entropy against the labels (nats)
    double kd;    // T^2 * KL (0 when alpha = 0)
} lmp_train_loss;

typedef struct lmp_adamw_params {
    float beta1, beta2, eps;  // PyTorch defaults 0.9, 0.999, 1e-8; distill uses 0.9, 0.95, 1e-8
    float weight_decay;       // decoupled, on matrices only
    float clip;               // global gradient-norm clip (<= 0: none)
} lmp_adamw_params;

// Builds the trainer over a model's shapes and copies its weights. The model may be freed afterwards.
lmp_status lmp_trainer_new(const lmp_model *m, const lmp_trainer_opts *opts, lmp_trainer **out, lmp_error *err);
void lmp_trainer_free(lmp_trainer *t);  // NULL is a no-op

// The memory a step needs for this model, batch and sequence (the formula of docs/training.md), and what
// the trainer actually allocated (the CLI prints both; a grads_only trainer has no AdamW part).
lmp_train_memory lmp_train_memory_estimate(const lmp_model *m, int batch, int seq, int attn_recompute,
                                           int device_teacher);
lmp_train_memory lmp_trainer_memory(const lmp_trainer *t);

int lmp_trainer_n_tensors(const lmp_trainer *t);
const lmp_train_tensor *lmp_trainer_tensor(const lmp_trainer *t, int i);
const lmp_train_tensor *lmp_trainer_tensor_find(const lmp_trainer *t, const char *name);  // NULL if none
size_t lmp_trainer_n_params(const lmp_trainer *t);
// The flat buffers (n_params floats each). Host memory on the CPU backend; use the copy functions below
// for code that must also work with a device backend. The moments are NULL on a grads_only trainer.
float *lmp_trainer_params(lmp_trainer *t);
float *lmp_trainer_grads(lmp_trainer *t);
float *lmp_trainer_adam_m(lmp_trainer *t);
float *lmp_trainer_adam_v(lmp_trainer *t);
// which: 0 params, 1 grads, 2 adam m, 3 adam v; host is n_params floats.
void lmp_trainer_copy_out(lmp_trainer *t, int which, float *host);
void lmp_trainer_copy_in(lmp_trainer *t, int which, const float *host);
int lmp_trainer_batch(const lmp_trainer *t);
int lmp_trainer_seq(const lmp_trainer *t);
lmp_train_backend *lmp_trainer_backend(lmp_trainer *t);

// Forward only: logits (B*T, vocab) of tokens (B, T) into host memory (tests; evaluation uses the runtime).
lmp_status lmp_trainer_forward(lmp_trainer *t, const int32_t *tokens, float *logits, lmp_error *err);

// Forward, loss and backward of one batch. tokens is (B, T + 1) host memory: inputs tokens[:, :T], labels
// tokens[:, 1:]. teacher is (B*T, vocab) host logits of the inputs, needed when loss->alpha > 0. The
// gradient of grad_scale * (mean loss over the B*T tokens) is ADDED to the gradients (zero them first;
// calling it several times accumulates, e.g. micro-batches with grad_scale 1/n).
lmp_status lmp_trainer_grad(lmp_trainer *t, const int32_t *tokens, const float *teacher, const lmp_loss_params *loss,
                            float grad_scale, lmp_train_loss *out, lmp_error *err);
void lmp_trainer_zero_grad(lmp_trainer *t);
// sqrt of the sum of squares of all gradients
double lmp_trainer_grad_norm(lmp_trainer *t);
// One AdamW step with learning rate lr: gradients scaled by min(1, clip / (grad_norm + 1e-6)) first (as
// torch.nn.utils.clip_grad_norm_), weight decay on tensors with decay set. Increments the step counter.
// A no-op on a grads_only trainer.
void lmp_trainer_adamw(lmp_trainer *t, const lmp_adamw_params *p, float lr, double grad_norm);
int64_t lmp_trainer_step(const lmp_trainer *t);  // AdamW steps taken

// The learning rate of step s (1-based) of total: linear warmup over the first `warmup` steps (lr * s /
// warmup), then cosine decay from lr to min_lr, reaching min_lr at s = total.
float lmp_lr_schedule(int64_t s, int64_t total, int64_t warmup, float lr, float min_lr);
void lmp_trainer_set_step(lmp_trainer *t, int64_t step);  // resume

// A builder holding the current weights as f32 tensors in that order, with a copy of meta (tokenizer,
// llama.* keys; tensors of meta's file are not copied). The builder borrows the trainer's host memory: keep
// the trainer alive and unchanged until the builder is written or freed.
lmp_status lmp_trainer_to_builder(lmp_trainer *t, const lmp_meta *meta, lmp_builder **out, lmp_error *err);

// ---- gradients for scoring (lmpress prune --score taylor) ----

typedef enum lmp_grad_mode {
    LMP_GRAD_SUM = 0,      // g = dL/dw of the mean CE over all sequences (gradients summed over batches)
    LMP_GRAD_ABS_WG = 1,   // s = sum over batches of |w * dL_b/dw|, L_b the mean CE of batch b (first-order
                           // Taylor estimate of the loss change when w is set to 0, accumulated per batch)
} lmp_grad_mode;

// Per-parameter values of a model in the trainer's layout: tensors[i] names a tensor and data[offset..] holds
// its values in the tensor's shape (row-major, same as the file).
typedef struct lmp_grad_set {
    int n_tensors;
    lmp_train_tensor *tensors;  // (n_tensors)
    float *data;                // (n_params)
    size_t n_params;
    double ce;                  // mean cross-entropy over the scored tokens (nats)
    int64_t tokens;             // tokens scored
} lmp_grad_set;

// Computes gradients of the next-token cross-entropy for the model m on n_seq sequences of seq_len tokens
// (tokens: (n_seq, seq_len) host memory, e.g. lmp_calib_set; each sequence scores positions 0..seq_len-2),
// in batches of `batch` sequences (<= 0: 8; the last batch may be smaller and is weighted by its size), and
// fills out (free with lmp_grad_set_free). Weights of any dtype are converted to f32. pool may be NULL.
// progress (may be NULL) is called after each batch with (done, total) sequences.
lmp_status lmp_train_grads_accumulate(const lmp_model *m, const int32_t *tokens, int n_seq, int seq_len, int batch,
                                      lmp_grad_mode mode, struct lmp_pool *pool, int n_threads,
                                      lmp_progress_fn progress, void *progress_user, lmp_grad_set *out,
                                      lmp_error *err);
void lmp_grad_set_free(lmp_grad_set *g);
const float *lmp_grad_set_find(const lmp_grad_set *g, const char *name, int64_t *rows, int64_t *cols);

#ifdef __cplusplus
}
#endif
#endif
