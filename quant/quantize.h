// quantize.h - the quantization pass: lmp_quantize(input, output path, params) (lmpress quantize).
//
// Chooses a type per tensor (defaults, --tensor-type overrides, row-length fallbacks), quantizes with
// the chosen method and writes the output with provenance. Methods:
//   search   (default) per block, the scales (and minimums, sub-block scales) minimising the squared error
//            weighted by rms + |w| (format/qtypes.h lmp_quantize_row_search); with calibration text the
//            weights are the imatrix's (as imatrix);
//   rtn      round to nearest, scale from the block's range (the reference quantizers);
//   imatrix  activation-weighted RTN: per block, the scale minimising sum_i E[x_i^2] (w_i - q(w_i))^2,
//            with E[x_i^2] measured on calibration text (llama.cpp's importance matrix idea);
//   awq      activation-aware per-input-channel scaling (AWQ): s = E|x|^alpha with alpha grid-searched
//            per layer group on calibration activations, folded exactly into the preceding norm or linear;
//   gptq     GPTQ: per linear, H = 2 X^T X from calibration activations of the already-quantized
//            preceding layers, dampening, lazy block updates, optional act-order, Cholesky via LAPACK.
// Calibrated methods run the model layer by layer over the calibration sequences (memory: one layer's
// statistics plus the hidden states of the calibration tokens).
#ifndef LMP_QUANTIZE_H
#define LMP_QUANTIZE_H

#include <stdint.h>

#include "format/lmp_format.h"
#include "format/lmp_import.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum lmp_quant_method {
    LMP_QUANT_RTN = 0,
    LMP_QUANT_IMATRIX = 1,
    LMP_QUANT_AWQ = 2,
    LMP_QUANT_GPTQ = 3,
    LMP_QUANT_SEARCH = 4,  // per-block scale search, weights from the weights (with --calib: the imatrix)
} lmp_quant_method;

typedef struct lmp_quant_override {
    const char *pattern;  // POSIX extended regular expression matched against tensor names
    lmp_dtype type;
} lmp_quant_override;

typedef struct lmp_quant_params {
    int type;                    // type of the layer matrices; -1: from bits, group and scheme
    int preset;                  // index into lmp_quant_presets (a mix of types by tensor); -1: none
    double target_bpw;           // > 0: choose a type per tensor so that the file has at most this many bits
                                 // per weight, by measured sensitivity (quant/bitbudget.c; needs calib_path)
    int64_t sens_tokens;         // tokens of calibration text for the sensitivity measurement (<= 0: 256)
    int bits;                    // 8 or 4
    int group;                   // 32, 64 or 128 (4-bit); 8-bit uses 32
    int asym;                    // 4-bit: 0 symmetric (q4_0 family), 1 asymmetric (q4_1 family)
    lmp_quant_method method;
    const char *calib_path;      // text file (calibrated methods)
    int64_t calib_tokens;        // <= 0: 128 sequences x calib_ctx
    int calib_ctx;               // <= 0: min(model context, 512)
    const lmp_quant_override *overrides;
    int n_overrides;
    int output_type;             // -1: q8_0 (classifier)
    int embed_type;              // -1: q8_0 (token embeddings)
    int n_threads;               // <= 0: all cores
    int dry_run;                 // plan and report sizes, write nothing
    int allow_requantize;        // dequantize an already-quantized input first
    float gptq_damp;             // fraction of the mean diagonal added to H (default 0.01)
    int gptq_act_order;          // quantize columns in order of decreasing H diagonal
    int gptq_block;              // lazy-batch block size (default 128)
    const char *command_line;    // for provenance
    lmp_progress_fn progress;
    void *progress_user;
    void (*warn)(void *user, const char *msg);  // fallbacks, notes (may be NULL)
    void *warn_user;
    void (*note)(void *user, const char *msg);  // results worth printing: the --target-bpw plan (may be NULL)
    void *note_user;
} lmp_quant_params;

// Named mixes of types (the role of llama.cpp's Q4_K_M, Q4_K_S): listed by lmpress quantize --help with their
// measured accuracy on SmolLM2-135M (docs/benchmarks.md).
typedef struct lmp_quant_preset {
    const char *name;
    const char *description;  // one line: what it does
    const char *measured;     // one line: measured size, dPPL and KLD (or "")
} lmp_quant_preset;
extern const lmp_quant_preset lmp_quant_presets[];
extern const int lmp_quant_n_presets;
int lmp_quant_preset_from_name(const char *name);  // -1 if unknown

void lmp_quant_params_default(lmp_quant_params *p);
const char *lmp_quant_method_name(lmp_quant_method m);
int lmp_quant_method_from_name(const char *name);  // -1 if unknown

typedef struct lmp_quant_summary {
    int n_tensors_by_type[LMP_DTYPE_COUNT];
    int n_fallback;               // tensors that did not fit the requested group
    uint64_t bytes_in, bytes_out; // tensor data
    int64_t n_params;
    double bpw_out;
    double seconds;
    int64_t calib_tokens_used;
    int requantized;              // input was quantized and has been dequantized first
    int budget;                   // --target-bpw was used: the fields below are set
    double pred_kld, meas_kld;    // predicted (sum of the per-tensor measurements) and measured mean KLD
                                  // against the input model on the sensitivity tokens
    double sens_seconds;          // time of the sensitivity measurement
    int64_t sens_tokens;
} lmp_quant_summary;

// Quantizes the model at in_path (any importable path) and writes out_path (temporary name, renamed
// on success; nothing is written with dry_run). summary may be NULL.
lmp_status lmp_quantize(const char *in_path, const lmp_import_opts *io, const char *out_path,
                        const lmp_quant_params *p, lmp_quant_summary *summary, lmp_error *err);

#ifdef __cplusplus
}
#endif
#endif
