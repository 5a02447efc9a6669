// prune_internal.h - what the pruning driver (prune.c) shares with scoring (score.c), planning (plan.c) and
// tensor surgery (surgery.c). Not a public interface; the tests use it to apply plans of their own.
#ifndef LMP_PRUNE_INTERNAL_H
#define LMP_PRUNE_INTERNAL_H

#include "prune/prune.h"
#include "runtime/calib.h"
#include "runtime/model.h"
#include "runtime/threadpool.h"

// ---- scores ----

// Importance of every unit of the model, higher = more important. Per layer l:
typedef struct lmp_prune_scores {
    int n_layers;
    double **head;     // [l] (n_heads_l) query head h: its share of the output (activation) or weight energy
    double **kv;       // [l] (n_kv_l) what a KV head adds beyond its query heads (weight energy of k, v rows;
                       //     0 for the activation score, whose query-head scores already carry the group)
    double **chan;     // [l] (ffn_l) FFN channel j
    double *scale;     // (n_layers) divides layer l's width scores before they are ranked across layers (1: the
                       //     activation score is already relative to each token's residual norm)
    double *influence; // (n_layers) block influence 1 - mean cos(x_in, x_out); NaN when not measured
    double *change;    // (n_layers) mean ||x_out - x_in|| / ||x_out||; NaN when not measured
    double *block;     // (n_layers) a whole block's score in the units of the width scores (Taylor: the sum over all
                       //     its parameters), which then ranks layers instead of influence / change; NULL if none
    int64_t calib_tokens;  // tokens the statistics came from (0: none)
} lmp_prune_scores;

// All scores 0, scale 1, influence and change NaN (shapes only: enough to check that a ratio is reachable).
lmp_status lmp_prune_scores_init(const lmp_model *m, lmp_prune_scores *s, lmp_error *err);
void lmp_prune_scores_free(lmp_prune_scores *s);

// Float32 values of a weight matrix (rows, cols): w's own data when it is f32, else a dequantized copy in
// *owned (lmp_free it). NULL with err set on failure.
const float *lmp_prune_weight_f32(const lmp_weight *w, float **owned, lmp_error *err);

// Magnitude scores: query head = sum of squares of its wq rows and wo columns; KV head = sum of squares of its
// wk and wv rows; channel = sum of squares of its gate and up rows and its down column. Additive, so a unit's
// score per parameter is its mean square weight.
lmp_status lmp_prune_score_magnitude(lmp_model *m, lmp_prune_scores *s, lmp_error *err);

// Activation scores and block statistics on calibration text (runtime/calib.h): channel j of layer l =
// E[|h_j| / ||x||] * ||down[:, j]||_2 (h: the input of ffn_down; x: the token's hidden state entering the block,
// so that scores of all layers are relative changes of the residual stream and compare); query head h = sum
// over its dimensions d of E[|a_d| / ||x||] * ||wo[:, d]||_2 (a: the input of attn_output). want_width = 0 measures only the block statistics
// (influence, change, scale) for the layers target. progress sees (done, total) over all blocks.
typedef struct lmp_prune_calib_opts {
    const char *path;
    int64_t n_tokens;
    int ctx;
    lmp_pool *pool;
    lmp_progress_fn progress;
    void *progress_user;
} lmp_prune_calib_opts;
lmp_status lmp_prune_score_activation(lmp_model *m, const lmp_prune_calib_opts *o, int want_width,
                                      lmp_prune_scores *s, lmp_error *err);

// First-order Taylor scores on calibration text: every unit's score is the sum over its weights w (the rows and
// columns the magnitude score reads: query head = its attn_q rows and attn_output columns, KV head = its attn_k
// and attn_v rows, channel = its gate and up rows and down column; block = all its parameters, norms included)
// and over batches b of LMP_PRUNE_TAYLOR_BATCH calibration sequences of |w * dL_b/dw|, L_b the batch's mean
// next-token cross-entropy (gradients from distill/train.h). scale is 1 (the scores are loss changes, comparable
// across layers); influence and change are not measured. progress sees (done, total) sequences.
#define LMP_PRUNE_TAYLOR_BATCH 4
lmp_status lmp_prune_score_taylor(lmp_model *m, const lmp_prune_calib_opts *o, lmp_prune_scores *s, lmp_error *err);
// Bytes the Taylor score needs beside the model for calibration sequences of seq_len tokens.
uint64_t lmp_prune_taylor_memory(const lmp_model *m, int seq_len);

// ---- plans ----

typedef struct lmp_prune_layer_plan {
    int removed;        // the whole block goes
    uint8_t *keep_head; // (n_heads) 1 = query head kept
    uint8_t *keep_kv;   // (n_kv_heads) 1 = KV head kept
    uint8_t *keep_chan; // (ffn) 1 = channel kept
    int heads, kv, ffn; // kept counts
    int64_t removed_params[LMP_PRUNE_N_TARGETS];  // by target (index = bit position)
} lmp_prune_layer_plan;

typedef struct lmp_prune_plan {
    int n_layers;                  // of the input
    lmp_prune_layer_plan *layer;   // (n_layers)
} lmp_prune_plan;

// A plan that keeps everything (allocates the keep arrays from m's shapes).
lmp_status lmp_prune_plan_init(const lmp_model *m, lmp_prune_plan *plan, lmp_error *err);
void lmp_prune_plan_free(lmp_prune_plan *plan);
// Recounts heads/kv/ffn from the keep arrays and checks the plan: every kept layer keeps >= 1 head, the same
// number of query heads in every kept group, no query head of a removed group, >= 1 channel, >= 1 layer.
lmp_status lmp_prune_plan_check(const lmp_model *m, lmp_prune_plan *plan, lmp_error *err);

// Parameters of the model: non-embedding (all but token_embd and output) and those of block l.
int64_t lmp_prune_model_params(const lmp_model *m);
int64_t lmp_prune_layer_params(const lmp_model *m, int l);
// Parameters of block l as the plan leaves it (0 when removed).
int64_t lmp_prune_layer_params_after(const lmp_model *m, const lmp_prune_plan *plan, int l);

typedef struct lmp_prune_plan_opts {
    double ratio;
    unsigned targets;
    int uniform;
    int align;
    const uint8_t *keep_layer;  // (n_layers) 1 = leave whole; may be NULL
} lmp_prune_plan_opts;

// Chooses what to remove so that the removed fraction of non-embedding parameters is as close to ratio as
// the unit sizes allow. *max_fraction gets the most the targets could remove; a ratio beyond it is refused
// (LMP_E_ARG) saying so.
lmp_status lmp_prune_plan_make(const lmp_model *m, const lmp_prune_scores *s, const lmp_prune_plan_opts *o,
                               lmp_prune_plan *plan, double *max_fraction, lmp_error *err);

// ---- surgery ----

// Adds every tensor of the pruned model to b (renumbered blocks, kept rows / columns) and sets
// llama.block_count and llama.attention.head_dim in b's metadata (which the caller filled with the input's).
// Float tensors keep their type (f32, f16, bf16); with dequantize, quantized ones become f32 (else a
// quantized matrix that loses columns is refused).
lmp_status lmp_prune_apply(lmp_model *m, const lmp_prune_plan *plan, int dequantize, lmp_builder *b,
                           lmp_progress_fn progress, void *progress_user, lmp_error *err);

#endif
