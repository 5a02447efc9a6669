// gptq.h - the GPTQ core on one matrix (testable apart from the pass, lmp_quant_run_gptq). Not a public
// interface.
//
// GPTQ (Frantar et al. 2022) quantizes the columns of W (rows = output features, cols = input features)
// one at a time and spreads each column's rounding error over the columns not yet quantized, weighted
// by the inverse of H = 2/N X^T X (X the layer's calibration inputs), so that ||X W^T - X Q^T|| stays
// small. The quantizer inside is exactly our storage format: the output blocks dequantize to the Q that
// the algorithm used.
#ifndef LMP_GPTQ_H
#define LMP_GPTQ_H

#include <stdint.h>

#include "format/lmp_common.h"
#include "format/lmp_types.h"
#include "runtime/session.h"
#include "runtime/threadpool.h"

typedef struct lmp_gptq_stats {
    double loss;       // sum of ((w - q) / U_ii)^2 over the matrix = tr((W - Q) Hd (W - Q)^T), where Hd is H
                       // with dead columns set to 1 and the dampening added, and W has dead columns zeroed
    double damp_used;  // dampening (fraction of mean diag H) that gave a positive definite matrix
    int n_retries;     // Cholesky failures that were retried with 10x the dampening
    int64_t n_dead;    // columns with H_ii == 0 (input channel never active): quantized as zero
} lmp_gptq_stats;

// Quantizes W (rows, cols), row-major float32, to type (any quantized storable type: q8_0, q4_0,
// q4_1 and their g64/g128 variants; cols a multiple of its block) into out (rows * row_size bytes),
// given H (cols, cols) symmetric positive semi-definite. damp: fraction of mean(diag H) added to the
// diagonal (0 < damp < 1); block: lazy-batch width (rounded up to a multiple of the group); act_order:
// process columns by decreasing H_ii, with each group's scale fixed up front from the original W
// ("static groups"), since our blocks are contiguous groups of the original column order. If H is not
// positive definite after dampening, retries with 10x the dampening (up to 3 times) and then fails with
// LMP_E_ARG. pool may be NULL (single thread). stats may be NULL.
lmp_status lmp_gptq_quantize_matrix(const float *W, int64_t rows, int64_t cols, const float *H, lmp_dtype type,
                                    float damp, int block, int act_order, lmp_pool *pool, void *out,
                                    lmp_gptq_stats *stats, lmp_error *err);

#endif
