// quant_internal.h - what the quantization driver (quantize.c) shares with the calibrated methods
// (calib.c, imatrix/awq in awq.c, gptq.c). Not a public interface.
#ifndef LMP_QUANT_INTERNAL_H
#define LMP_QUANT_INTERNAL_H

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
    lmp_pool *pool;         // p->n_threads threads
    int64_t calib_tokens_used;
    lmp_meta *meta_out;     // output metadata (methods may record quant.* keys)
} lmp_qctx;

lmp_qentry *lmp_qctx_find(lmp_qctx *q, const char *name);
// The float32 values of an entry (f32 if set, else the input data, which is then float32).
const float *lmp_qentry_values(const lmp_qentry *e);
// Makes e->f32 an owned, writable copy (for methods that modify weights); 0 or LMP_E_NOMEM.
lmp_status lmp_qentry_make_writable(lmp_qentry *e, lmp_error *err);
// Quantizes the entry's values into e->out with the reference rounding (imp == NULL) or the
// importance-weighted search (imp: (cols) per-input-channel importance). Threaded over rows.
lmp_status lmp_qentry_quantize(lmp_qctx *q, lmp_qentry *e, const float *imp, lmp_error *err);
// Points the model's weight view of this entry at its quantized output (so later layers of a sequential
// calibration see the quantized model). No-op for tensors that are not layer matrices.
void lmp_qctx_swap_in(lmp_qctx *q, lmp_qentry *e);
void lmp_qctx_warn(lmp_qctx *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// Calibration text: n_seq sequences of seq_len tokens (BOS first when the tokenizer adds one), sampled
// deterministically from p->calib_path. *tokens is (n_seq, seq_len), lmp_malloc'd.
lmp_status lmp_calib_sample(lmp_qctx *q, int32_t **tokens, int *n_seq, int *seq_len, lmp_error *err);

// The calibrated methods: each fills e->out for every layer matrix it handles (the driver quantizes
// whatever is left with RTN).
lmp_status lmp_quant_run_imatrix(lmp_qctx *q, lmp_error *err);
lmp_status lmp_quant_run_awq(lmp_qctx *q, lmp_error *err);
lmp_status lmp_quant_run_gptq(lmp_qctx *q, lmp_error *err);

#endif
