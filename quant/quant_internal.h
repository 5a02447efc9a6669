// quant_internal.h - what the quantization driver (quantize.c) shares with the calibrated methods
// (calib.c, imatrix/awq in awq.c, gptq.c). Not a public interface.
#ifndef LMP_QUANT_INTERNAL_H
#define LMP_QUANT_INTERNAL_H

#include "runtime/calib.h"
#include "runtime/model.h"
#include "quant/quantize.h"
#include "runtime/threadpool.h"

// One tensor of the output.
typedef struct lmp_qentry {
    const lmp_tensor *src;  // input tensor (in the model's file)
    lmp_dtype type;         // output type
    int64_t rows, cols;     // rows = product of the leading dims, cols = last dim
    float *f32;             // (rows, cols) input values as float32: owned copy (dequantized, or modified by
                            // AWQ scaling), or NULL while the input is float32 and unmodified (use src->data)
    void *out;              // (rows, row_size(type, cols)) output bytes, owned; NULL until quantized
    size_t out_bytes;
    int fallback;           // type differs from the requested one because the row did not fit
} lmp_qentry;

typedef struct lmp_qctx {
    lmp_model *model;       // built from the input; quantized layers are swapped in as they are done
    lmp_qentry *e;          // one per input tensor, in file order
    size_t n;
    const lmp_quant_params *p;
    lmp_pool *pool;         // p->n_threads threads, shared with every session the pass opens
    int64_t calib_tokens_used;
    lmp_meta *meta_out;     // output metadata (methods may record quant.* keys)
    struct lmp_budget *budget;  // --target-bpw state between the plan and the final measurement (bitbudget.c)
} lmp_qctx;

lmp_qentry *lmp_qctx_find(lmp_qctx *q, const char *name);
// The float32 values of an entry (f32 if set, else the input data, which is then float32).
const float *lmp_qentry_values(const lmp_qentry *e);
// Makes e->f32 an owned, writable copy (for methods that modify weights); 0 or LMP_E_NOMEM.
lmp_status lmp_qentry_make_writable(lmp_qentry *e, lmp_error *err);
// Quantizes the entry's values into e->out with the reference rounding (imp == NULL) or the
// importance-weighted search (imp: (cols) per-input-channel importance). Threaded over rows.
lmp_status lmp_qentry_quantize(lmp_qctx *q, lmp_qentry *e, const float *imp, lmp_error *err);
// Points the model's weight of this entry at its quantized output through lmp_model_weight_set (so later
// layers of a sequential calibration see the quantized model, and sessions re-upload it). No-op for tensors
// that are not weights of the model.
lmp_status lmp_qctx_swap_in(lmp_qctx *q, lmp_qentry *e, lmp_error *err);
void lmp_qctx_warn(lmp_qctx *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// Samples the calibration text of the parameters (runtime/calib.h) into *set and opens the layer-by-layer
// runner over the model with the pass's thread pool; records the tokens used.
lmp_status lmp_qctx_calib_open(lmp_qctx *q, lmp_calib_set *set, lmp_calib_runner **r, lmp_error *err);

// The calibrated methods: each fills e->out for every layer matrix it handles (the driver quantizes
// whatever is left with RTN).
lmp_status lmp_quant_run_imatrix(lmp_qctx *q, lmp_error *err);
lmp_status lmp_quant_run_awq(lmp_qctx *q, lmp_error *err);
lmp_status lmp_quant_run_gptq(lmp_qctx *q, lmp_error *err);

// The documented fallback chain (docs/format.md) for a type whose block does not divide a row of cols.
lmp_dtype lmp_quant_fit_type(lmp_dtype t, int64_t cols);

// --target-bpw (bitbudget.c): measures every matrix's sensitivity on calibration text and sets e->type of the
// layer matrices, embedding and classifier to the allocation with the least predicted KLD within the budget
// (notes the plan through p->note); then, after quantization, measures the KLD of the result.
lmp_status lmp_quant_plan_budget(lmp_qctx *q, lmp_quant_summary *s, lmp_error *err);
lmp_status lmp_quant_budget_measure(lmp_qctx *q, lmp_quant_summary *s, lmp_error *err);
void lmp_quant_budget_free(lmp_qctx *q);

#endif
