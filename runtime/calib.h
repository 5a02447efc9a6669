// calib.h - calibration text and the layer-by-layer calibration runner, shared by every pass that needs real
// activations: the quantizers (imatrix, AWQ, GPTQ), pruning (activation scores, block influence) and
// distillation (its data comes from the same tokenizer path).
//
// The sampler turns a text file into a deterministic set of sequences. The runner embeds every sequence once,
// then walks the model one block at a time: collect runs a block over every sequence and accumulates
// statistics of the inputs of its linear layers (Gram matrix, mean |x|, mean x^2, or a caller's hook),
// without moving on; advance runs the block for real and moves the hidden states to the next block's input.
// A pass may change a block's weights between collect and advance (lmp_model_weight_set): advance then uses
// the new ones, so later blocks are calibrated on the model as it will be written.
// Memory: the hidden states of all calibration tokens (n_seq x seq_len x dim floats) plus one block's
// statistics. It does not know what the statistics are for.
#ifndef LMP_CALIB_H
#define LMP_CALIB_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/model.h"
#include "runtime/session.h"
#include "runtime/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

// Tokenizes the whole text file at path with tok (no BOS): *tokens (lmp_malloc'd) of *n ids. Refuses what
// is not a readable regular file; what names the file in messages ("calibration file", "data file"; NULL:
// "text file").
lmp_status lmp_text_tokenize_file(const lmp_tokenizer *tok, const char *path, const char *what, int32_t **tokens,
                                  size_t *n, lmp_error *err);

typedef struct lmp_calib_set {
    int32_t *tokens;  // (n_seq, seq_len), lmp_malloc'd
    int n_seq, seq_len;
} lmp_calib_set;

// n_seq = ceil(n_tokens / ctx) windows of ctx tokens, evenly spaced over the whole text from its start to its
// end (deterministic), each starting with BOS when the tokenizer adds one. n_tokens <= 0: 128 sequences;
// ctx <= 0: min(model context, 512). A text shorter than the request is refused, saying how long it is.
lmp_status lmp_calib_sample(const lmp_model *m, const char *path, int64_t n_tokens, int ctx, lmp_calib_set *out,
                            lmp_error *err);
void lmp_calib_set_free(lmp_calib_set *s);

// Statistics a collect pass can accumulate at a hook point (bits).
enum {
    LMP_STAT_GRAM = 1,     // (width, width) X^T X / N, symmetric (both triangles filled)
    LMP_STAT_ABSMEAN = 2,  // (width) mean |x| per channel
    LMP_STAT_SQMEAN = 4,   // (width) mean x^2 per channel (the diagonal of the Gram matrix, without it)
};

typedef struct lmp_calib_runner lmp_calib_runner;

// Opens a session over m (opts: threads, pool, backend; n_ctx and n_batch are set to the sequence length)
// and embeds every sequence of set (which must outlive the runner).
lmp_status lmp_calib_runner_new(lmp_model *m, const lmp_calib_set *set, const lmp_session_opts *opts,
                                lmp_calib_runner **out, lmp_error *err);
void lmp_calib_runner_free(lmp_calib_runner *r);

// Runs block l over every sequence (hidden states not advanced) and accumulates, for each hook point h,
// the statistics in stats[h] (LMP_STAT_* bits; 0 = none). The results stay until the next collect.
// Calls progress (if not NULL) per sequence.
lmp_status lmp_calib_runner_collect(lmp_calib_runner *r, int l, const unsigned stats[LMP_HOOK_COUNT],
                                    lmp_error *err);
// A caller's hook, also called during collect (after the built-in statistics) for every hook point of the
// collected block; NULL removes it.
void lmp_calib_runner_set_hook(lmp_calib_runner *r, lmp_hook_fn fn, void *user);
void lmp_calib_runner_set_progress(lmp_calib_runner *r, lmp_progress_fn fn, void *user, const char *stage);

// Results of the last collect at hook point h (NULL if not collected); *width (if not NULL) gets the row length.
const float *lmp_calib_runner_gram(const lmp_calib_runner *r, lmp_hook_point h, int *width);
const float *lmp_calib_runner_absmean(const lmp_calib_runner *r, lmp_hook_point h, int *width);
const float *lmp_calib_runner_sqmean(const lmp_calib_runner *r, lmp_hook_point h, int *width);
int64_t lmp_calib_runner_count(const lmp_calib_runner *r);  // tokens per hook point in the last collect

// Called by advance for every sequence with the block's input and output hidden states (seq_len, dim).
typedef void (*lmp_calib_block_fn)(void *user, int seq, const float *x_in, const float *x_out, int n, int dim);

// Runs block l (with its weights as they are now) over every sequence, moving the hidden states to the input
// of block l + 1; cb (may be NULL) sees each sequence's input and output. Blocks must be advanced in order.
lmp_status lmp_calib_runner_advance(lmp_calib_runner *r, int l, lmp_calib_block_fn cb, void *user, lmp_error *err);
// The block the hidden states enter now (0 after new, l + 1 after advance(l)).
int lmp_calib_runner_layer(const lmp_calib_runner *r);
// Hidden states entering the current block: (n_seq, seq_len, dim), read-only.
const float *lmp_calib_runner_hidden(const lmp_calib_runner *r);
const lmp_calib_set *lmp_calib_runner_set(const lmp_calib_runner *r);

#ifdef __cplusplus
}
#endif
#endif
