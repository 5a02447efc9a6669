// sgemm_avx512.c - the sgemm tiles with AVX-512F (sgemm.h, driver in sgemm_tiles.h): a 12 x 32
// microkernel, 24 zmm accumulators, one broadcast of op(A) per row and two loads of op(B) per k.
// Compiled with -mavx512f (Makefile) and called only after sgemm.c checked that the CPU runs it.
#include <immintrin.h>

#include "runtime/sgemm.h"

#define SG_MR 12
#define SG_NR 32
#define SG_KC 256
#define SG_MC 144
#define SG_NC 2048
#define SG_FUNC lmp_sgemm_tiles_avx512

static inline void sg_kernel_avx512(int kc, const float *restrict a, const float *restrict b, float *restrict c,
                                    long ldc, float alpha, float beta) {
    __m512 acc[SG_MR][2];
    for (int i = 0; i < SG_MR; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
#pragma GCC unroll 2
    for (int p = 0; p < kc; p++) {
        const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
        for (int i = 0; i < SG_MR; i++) {
            const __m512 av = _mm512_set1_ps(a[i]);
            acc[i][0] = _mm512_fmadd_ps(av, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(av, b1, acc[i][1]);
        }
        a += SG_MR;
        b += SG_NR;
    }
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    for (int i = 0; i < SG_MR; i++) {
        float *ci = c + (long)i * ldc;
        __m512 r0 = _mm512_mul_ps(va, acc[i][0]), r1 = _mm512_mul_ps(va, acc[i][1]);
        if (beta != 0.0f) {
            r0 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(ci), r0);
            r1 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(ci + 16), r1);
        }
        _mm512_storeu_ps(ci, r0);
        _mm512_storeu_ps(ci + 16, r1);
    }
}
#define SG_KERNEL sg_kernel_avx512

#include "runtime/sgemm_tiles.h"
