// prune.h - the structured pruning pass: lmp_prune(input, output path, params) (lmpress prune --structured).
//
// Removes whole units, so that the result is an ordinary dense model with smaller shapes:
//   heads   attention heads. With grouped-query attention (query head h reads KV head h / group) either the
//           same number of query heads from every group of a layer, or a whole group (a KV head with all its
//           query heads); a layer always keeps at least one head;
//   ffn     FFN channels (a row of gate and up, the column of down); a pruned layer's width is a multiple of
//           --align (default 32, the quantizer's block) and at least one block;
//   layers  whole blocks, scored by block influence (1 - cosine between the block's input and output hidden
//           states on calibration text, ShortGPT); the remaining blocks are renumbered.
// Scores (prune/score.c): magnitude (weight norms, no data) and activation (mean |activation| of a channel or
// of a head's output times the norm of the weights that read it, Wanda/Minitron); prune/score_taylor.c: taylor
// (sum of |w * dL/dw| over the unit's weights, gradients of the calibration cross-entropy from the training
// engine; it holds the f32 weights, gradients and scores of the whole model). Planning (prune/plan.c):
// one ranking of every unit across layers (default) or the same fraction in every layer (uniform). Surgery
// and the output with prune.* provenance (prune/surgery.c, docs/format.md).
// It does not prune unstructured (scattered) weights and does not heal the pruned model (distillation).
#ifndef LMP_PRUNE_H
#define LMP_PRUNE_H

#include <stdint.h>

#include "format/lmp_format.h"
#include "format/lmp_import.h"

#ifdef __cplusplus
extern "C" {
#endif

// Targets (bits of lmp_prune_params.targets).
enum {
    LMP_PRUNE_HEADS = 1,
    LMP_PRUNE_FFN = 2,
    LMP_PRUNE_LAYERS = 4,
};
#define LMP_PRUNE_N_TARGETS 3

typedef enum lmp_prune_score {
    LMP_PRUNE_SCORE_MAGNITUDE = 0,
    LMP_PRUNE_SCORE_ACTIVATION = 1,
    LMP_PRUNE_SCORE_TAYLOR = 2,
    LMP_PRUNE_SCORE_COUNT,
} lmp_prune_score;

// Names and one-line descriptions, for parsing and --help (index = bit position / enum value).
typedef struct lmp_prune_name {
    const char *name;
    const char *help;
} lmp_prune_name;
extern const lmp_prune_name lmp_prune_target_names[LMP_PRUNE_N_TARGETS];
extern const lmp_prune_name lmp_prune_score_names[LMP_PRUNE_SCORE_COUNT];
int lmp_prune_score_from_name(const char *name);  // -1 if unknown
// Parses "heads,ffn,layers" into target bits; returns 0, or -1 with the unknown item copied into bad.
int lmp_prune_targets_parse(const char *list, unsigned *out, char *bad, size_t bad_cap);
// "heads,ffn" for bits (static buffer).
const char *lmp_prune_targets_str(unsigned targets);

#define LMP_PRUNE_MAX_RATIO 0.9

typedef struct lmp_prune_params {
    double ratio;                // fraction of non-embedding parameters to remove, in (0, 0.9]
    unsigned targets;            // LMP_PRUNE_* bits (default heads | ffn)
    lmp_prune_score score;
    const char *calib_path;      // calibration text (activation and taylor scores, layers target)
    int64_t calib_tokens;        // <= 0: 128 sequences x calib_ctx
    int calib_ctx;               // <= 0: min(model context, 512)
    int uniform;                 // the same fraction of every layer's attention and FFN (not with layers)
    int align;                   // FFN widths of pruned layers are multiples of this (default 32)
    const int *keep_layers;      // layers (input numbering) left whole: never removed, never narrowed
    int n_keep_layers;
    int n_threads;               // <= 0: all cores
    int dry_run;                 // plan and report, write nothing
    int allow_requantize;        // accept a quantized input: dequantized to f32 first (the output is f32)
    const char *command_line;    // for provenance
    lmp_progress_fn progress;
    void *progress_user;
    void (*warn)(void *user, const char *msg);  // notes (dequantized input, ratio off target, taylor memory)
    void *warn_user;
} lmp_prune_params;

void lmp_prune_params_default(lmp_prune_params *p);

// One layer of the input, before and after.
typedef struct lmp_prune_layer_info {
    int index_out;                  // its index in the output, -1 if removed
    int heads_in, kv_in, ffn_in;
    int heads_out, kv_out, ffn_out; // 0 when removed
    int64_t params_in, params_out;  // matrices and norms of the block
    double block_influence;         // 1 - mean cosine(input, output); NaN when not measured
} lmp_prune_layer_info;

typedef struct lmp_prune_summary {
    int64_t params_in, params_out;  // non-embedding parameters (all but token_embd and output)
    int64_t removed[LMP_PRUNE_N_TARGETS];  // parameters removed by each target (index = bit position)
    double fraction;                // exact fraction removed: 1 - params_out / params_in
    double max_fraction;            // the most the targets could remove
    int64_t total_in, total_out;    // all parameters
    uint64_t bytes_in, bytes_out;   // tensor data
    int n_layers_in, n_layers_out;
    lmp_prune_layer_info *layers;   // (n_layers_in), lmp_malloc'd: lmp_prune_summary_free
    int64_t calib_tokens_used;
    int requantized;                // the input was quantized and has been dequantized
    double seconds_scoring, seconds;
} lmp_prune_summary;

void lmp_prune_summary_free(lmp_prune_summary *s);

// Prunes the model at in_path (any importable path) and writes out_path (temporary name, renamed on success;
// nothing with dry_run). summary may be NULL; when given it is filled also for a dry run, and must be freed
// with lmp_prune_summary_free whatever the status.
lmp_status lmp_prune(const char *in_path, const lmp_import_opts *io, const char *out_path, const lmp_prune_params *p,
                     lmp_prune_summary *summary, lmp_error *err);

#ifdef __cplusplus
}
#endif
#endif
