// cpu_report.h - what the CPU paths run on this machine, in words (lmpress bench, scripts): the CPU
// features the kernels use, the kernel table that serves each weight type, the f32 batched path.
#ifndef LMP_CPU_REPORT_H
#define LMP_CPU_REPORT_H

#include <stddef.h>

#include "format/lmp_types.h"

#ifdef __cplusplus
extern "C" {
#endif

// The instruction-set features the kernels check for that this CPU has, space-separated
// ("avx2 fma f16c avx512f avx512bw avx512vl avx512dq avx512vnni"; "none" if none): into buf.
void lmp_cpu_features(char *buf, size_t n);

// The kernel paths weight type t takes, into buf: decode (matrix-vector) and batched (prefill) entries,
// named by the table that provides them ("avx512vnni", "avx2", "scalar"); for f32 the batched path is
// lmp_sgemm's ("sgemm tiles avx512" or "OpenBLAS sgemm (Cooperlake)").
void lmp_cpu_type_paths(lmp_dtype t, char *buf, size_t n);

// One line on the f32 batched choice: path, reason, the measured GFLOP/s of both, the BLAS check.
void lmp_cpu_sgemm_summary(char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
