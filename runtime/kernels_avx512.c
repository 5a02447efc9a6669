// kernels_avx512.c - AVX-512 (F, BW, VL, DQ) + VNNI kernels, compiled with those flags and selected only
// when the CPU has avx512f, bw, vl, dq and vnni (kernels.c). The table starts as a copy of the AVX2 one;
// this file overrides:
//  * f32 / f16 / bf16 matvec and matmul with 512-bit FMA (16 floats per vector, vcvtph2ps zmm for f16),
//    matvec as 4-row tiles, matmul as 4 x 4 register tiles (32 vector registers allow it);
//  * the integer kernels with vpdpbusd (u8 x s8 -> int32, 4 products per lane, no 16-bit
//    intermediate to saturate): for the 4-bit types the unsigned nibbles are the u8 operand and the
//    activations the s8 one, the -8 offset of q4_0 comes back through the activation block sum as in the
//    AVX2 file; q8_0 (16-bit activations) uses vpdpwssd on the sign-extended weights. These stay 256
//    bits wide: one activation block is 32 elements, and its scale has to be applied per block anyway;
// quantize_q8a and quantize_q16a stay the AVX2 ones (not on the critical path, bit-exact already).
// The integer loops and their accumulation order are the AVX2 file's own code (kernels_int_tiles.h, with
// this file's dot_u8s8 and dot_s16), so the test tolerances are the same.
#if defined(__x86_64__)

#include <immintrin.h>
#include <string.h>

#include "runtime/kernels_internal.h"
#include "format/qtypes.h"

#define AI static inline __attribute__((always_inline))

AI float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AI float hsum16(__m512 v) {
    __m256 lo = _mm512_castps512_ps256(v);
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    return hsum8(_mm256_add_ps(lo, hi));
}

// fp16 scale at p (unaligned) as 8 float lanes (table lookup: see kernels_internal.h).
AI __m256 f16_bcast(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _mm256_broadcast_ss(&lmp_kernels_fp16_lut[h]);
}

// ---- float weights: f32, f16, bf16 ----

enum { WT_F32, WT_F16, WT_BF16 };

AI __m512 fload16(int wt, const uint8_t *p) {
    if (wt == WT_F32) return _mm512_loadu_ps((const float *)p);
    if (wt == WT_F16) return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}

AI float fload1(int wt, const uint8_t *p) {
    if (wt == WT_F32) {
        float f;
        memcpy(&f, p, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, p, 2);
    return wt == WT_F16 ? lmp_kernels_fp16_lut[h] : lmp_bf16_to_f32(h);
}

// R weight rows x T activation rows over n elements (any n: scalar tail); as the AVX2 ftile, 16 wide.
AI void ftile(int wt, const uint8_t *w, size_t wrb, const uint8_t *x, size_t xrb, float *y, int64_t ldy, int64_t n,
              int R, int T) {
    const size_t esz = wt == WT_F32 ? 4 : 2;
    __m512 acc[4][4], acc2[4];
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        acc2[r] = _mm512_setzero_ps();
        #pragma GCC unroll 4
        for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
    }
    int64_t i = 0;
    if (T == 1) {
        const float *xf = (const float *)x;
        for (; i + 32 <= n; i += 32) {
            __m512 x0 = _mm512_loadu_ps(xf + i), x1 = _mm512_loadu_ps(xf + i + 16);
            #pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                const uint8_t *wr = w + (size_t)r * wrb + (size_t)i * esz;
                acc[r][0] = _mm512_fmadd_ps(fload16(wt, wr), x0, acc[r][0]);
                acc2[r] = _mm512_fmadd_ps(fload16(wt, wr + 16 * esz), x1, acc2[r]);
            }
        }
    }
    for (; i + 16 <= n; i += 16) {
        __m512 xv[4];
        #pragma GCC unroll 4
        for (int t = 0; t < T; t++) xv[t] = _mm512_loadu_ps((const float *)(x + (size_t)t * xrb) + i);
        #pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m512 wv = fload16(wt, w + (size_t)r * wrb + (size_t)i * esz);
            #pragma GCC unroll 4
            for (int t = 0; t < T; t++) acc[r][t] = _mm512_fmadd_ps(wv, xv[t], acc[r][t]);
        }
    }
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        #pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            __m512 v = acc[r][t];
            if (T == 1) v = _mm512_add_ps(v, acc2[r]);
            float s = hsum16(v);
            const float *xt = (const float *)(x + (size_t)t * xrb);
            for (int64_t j = i; j < n; j++) s += fload1(wt, w + (size_t)r * wrb + (size_t)j * esz) * xt[j];
            y[t * ldy + r] = s;
        }
}

#define FT_F32(R_, T_) (ftile(WT_F32, wp, wrb, xp, xrb, yp, ldy, n, R_, T_))
#define FT_F16(R_, T_) (ftile(WT_F16, wp, wrb, xp, xrb, yp, ldy, n, R_, T_))
#define FT_BF16(R_, T_) (ftile(WT_BF16, wp, wrb, xp, xrb, yp, ldy, n, R_, T_))
TILE_SET(f32, 4, FT_F32)
TILE_SET(f16, 4, FT_F16)
TILE_SET(bf16, 4, FT_BF16)

// ---- integer kernels ----

AI __m256i dot_u8s8(__m256i u, __m256i s) {  // 8 int32 lanes, each the sum of 4 products u8*s8 (VNNI)
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
}

// 8 int32 lanes, each the sum of 4 products s16*s16: 2 from (a0, b0) and 2 from (a1, b1) (VNNI).
AI __m256i dot_s16(__m256i a0, __m256i b0, __m256i a1, __m256i b1) {
    return _mm256_dpwssd_epi32(_mm256_dpwssd_epi32(_mm256_setzero_si256(), a0, b0), a1, b1);
}

#include "runtime/kernels_int_tiles.h"  // tile_q8_0, tile_q4 and matvec_/matmul_ of every integer type

void lmp_kernels_init_avx512(lmp_kernels *k) {
    k->matvec[LMP_DTYPE_F32] = matvec_f32;
    k->matvec[LMP_DTYPE_F16] = matvec_f16;
    k->matvec[LMP_DTYPE_BF16] = matvec_bf16;
    k->matvec[LMP_DTYPE_Q8_0] = matvec_q8_0;
    k->matvec[LMP_DTYPE_Q4_0] = matvec_q4_0;
    k->matvec[LMP_DTYPE_Q4_1] = matvec_q4_1;
    k->matvec[LMP_DTYPE_Q4_0_G64] = matvec_q4_0_g64;
    k->matvec[LMP_DTYPE_Q4_0_G128] = matvec_q4_0_g128;
    k->matvec[LMP_DTYPE_Q4_1_G64] = matvec_q4_1_g64;
    k->matvec[LMP_DTYPE_Q4_1_G128] = matvec_q4_1_g128;
    k->matmul[LMP_DTYPE_F32] = matmul_f32;
    k->matmul[LMP_DTYPE_F16] = matmul_f16;
    k->matmul[LMP_DTYPE_BF16] = matmul_bf16;
    k->matmul[LMP_DTYPE_Q8_0] = matmul_q8_0;
    k->matmul[LMP_DTYPE_Q4_0] = matmul_q4_0;
    k->matmul[LMP_DTYPE_Q4_1] = matmul_q4_1;
    k->matmul[LMP_DTYPE_Q4_0_G64] = matmul_q4_0_g64;
    k->matmul[LMP_DTYPE_Q4_0_G128] = matmul_q4_0_g128;
    k->matmul[LMP_DTYPE_Q4_1_G64] = matmul_q4_1_g64;
    k->matmul[LMP_DTYPE_Q4_1_G128] = matmul_q4_1_g128;
}

#endif  // __x86_64__
