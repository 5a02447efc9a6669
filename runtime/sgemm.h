// sgemm.h - the batched float32 matrix product of the CPU paths (prefill, evaluation, calibration, the
// distillation engine's GEMMs): OpenBLAS sgemm or the project's own tiles, whichever is faster here.
//
// lmp_sgemm computes, row-major and single-threaded (callers split the work across their threads),
//   C(m, n) = alpha * op(A)(m, k) * op(B)(k, n) + beta * C
// op(A) = A (m, k), row stride lda, or A^T with A (k, m); the same for B. beta == 0 never reads C.
//
// Which path runs is decided once per process, on first use (lmp_sgemm_choice): OpenBLAS is first
// checked against the scalar reference on fresh random inputs (every transpose pair, odd shapes); a
// BLAS that computes wrong results is never used. If it passes, both paths are timed on a short product
// of the runtime's shape and the faster is kept; BLAS only when 1.25x faster, since a close call would
// flip between runs and change the rounding. LMP_F32_MATMUL=blas|tiles overrides the measurement
// (blas still only if it passed the check).
//
// The tiles (sgemm_tiles.h): cache-blocked (KC x NC packed panels of op(B), MC x KC of op(A)), a register-
// blocked microkernel per ISA: AVX-512 12 x 32, AVX2 + FMA 6 x 16, portable C 4 x 4 elsewhere.
#ifndef LMP_SGEMM_H
#define LMP_SGEMM_H

#ifdef __cplusplus
extern "C" {
#endif

// ta, tb: 0 = no transpose, 1 = transpose.
void lmp_sgemm(int ta, int tb, int m, int n, int k, float alpha, const float *A, int lda, const float *B,
               int ldb, float beta, float *C, int ldc);

// The scalar reference: plain loops, one float sum per output in k order (the definition tests use).
void lmp_sgemm_ref(int ta, int tb, int m, int n, int k, float alpha, const float *A, int lda, const float *B,
                   int ldb, float beta, float *C, int ldc);

// The tiles of one ISA ("avx512", "avx2", "c"); returns 0 (and computes nothing) if this CPU lacks it.
int lmp_sgemm_tiles(const char *isa, int ta, int tb, int m, int n, int k, float alpha, const float *A, int lda,
                    const float *B, int ldb, float beta, float *C, int ldc);
// The tile ISAs compiled in, best first, NULL-terminated (whether or not this CPU runs them).
const char *const *lmp_sgemm_tiles_list(void);
// The best tile ISA this CPU runs ("avx512", "avx2" or "c").
const char *lmp_sgemm_tiles_best(void);

// OpenBLAS sgemm (cblas_sgemm, row-major) with the same arguments.
void lmp_sgemm_blas(int ta, int tb, int m, int n, int k, float alpha, const float *A, int lda, const float *B,
                    int ldb, float beta, float *C, int ldc);

typedef struct lmp_sgemm_info {
    int use_blas;           // 1: lmp_sgemm calls OpenBLAS; 0: the tiles
    const char *path;       // "blas" or "tiles"
    const char *tiles_isa;  // the tiles' ISA ("avx512", "avx2", "c")
    const char *blas_core;  // openblas_get_corename()
    int blas_correct;       // 1: OpenBLAS matched the reference on this machine
    double blas_max_err;    // the worst error of the check, in units of its tolerance (> 1: wrong)
    double blas_gflops, tiles_gflops;  // single-thread GFLOP/s of the timing product (0: not timed)
    const char *reason;     // why this path: "measured", "LMP_F32_MATMUL=...", "BLAS computes wrong results"
} lmp_sgemm_info;

// The choice (made on first call, thread-safe; costs a few tens of milliseconds once).
const lmp_sgemm_info *lmp_sgemm_choice(void);

// The BLAS correctness check on its own (fresh random inputs each call): returns the worst error in units
// of the tolerance (<= 1 passes). Used by lmp_sgemm_choice and the tests.
double lmp_sgemm_blas_check(void);

#ifdef __cplusplus
}
#endif
#endif
