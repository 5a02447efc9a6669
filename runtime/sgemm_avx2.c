// sgemm_avx2.c - the sgemm tiles with AVX2 + FMA (sgemm.h, driver in sgemm_tiles.h): a 6 x 16
// microkernel, 12 ymm accumulators, one broadcast of op(A) per row and two loads of op(B) per k.
// Compiled with -mavx2 -mfma (Makefile) and called only after sgemm.c checked that the CPU runs it.
#include <immintrin.h>

#include "runtime/sgemm.h"

#define SG_MR 6
#define SG_NR 16
#define SG_KC 256
#define SG_MC 96
#define SG_NC 2048
#define SG_FUNC lmp_sgemm_tiles_avx2

static inline void sg_kernel_avx2(int kc, const float *restrict a, const float *restrict b, float *restrict c,
                                  long ldc, float alpha, float beta) {
    __m256 acc[SG_MR][2];
    for (int i = 0; i < SG_MR; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
#pragma GCC unroll 2
    for (int p = 0; p < kc; p++) {
        const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
        for (int i = 0; i < SG_MR; i++) {
            const __m256 av = _mm256_broadcast_ss(a + i);
            acc[i][0] = _mm256_fmadd_ps(av, b0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(av, b1, acc[i][1]);
        }
        a += SG_MR;
        b += SG_NR;
    }
    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    for (int i = 0; i < SG_MR; i++) {
        float *ci = c + (long)i * ldc;
        __m256 r0 = _mm256_mul_ps(va, acc[i][0]), r1 = _mm256_mul_ps(va, acc[i][1]);
        if (beta != 0.0f) {
            r0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci), r0);
            r1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci + 8), r1);
        }
        _mm256_storeu_ps(ci, r0);
        _mm256_storeu_ps(ci + 8, r1);
    }
}
#define SG_KERNEL sg_kernel_avx2

#include "runtime/sgemm_tiles.h"
