// kernels_avx2.c - AVX2 + FMA + F16C kernels (compiled with -mavx2 -mfma -mf16c; called only after a
// CPU check in kernels.c): f32/f16/bf16 and integer (q8_0, q4_0/q4_1 and their g64/g128 variants)
// matvec and matmul, and activation quantization (q8_a, q16_a).
//
// Design (decode is memory-bound, so the goal is to keep the vector ALUs under the DRAM rate):
//  * one tile routine per weight family, specialised at compile time for R weight rows x T activation
//    rows (always_inline + constant R, T): matvec is the R = 4, T = 1 tile, matmul uses R x T register
//    tiles so that a weight block is unpacked once for T tokens and an activation block loaded once
//    for R rows;
//  * per block, integer sums stay in 8 int32 lanes, are converted and scaled into float lanes, and a
//    row is reduced horizontally once at the end (no per-block horizontal sums);
//  * 4-bit weights: the unsigned nibble q (0..15) is the u8 operand of vpmaddubsw and the activation the
//    s8 operand; the -8 offset of q4_0 is folded into the float step via the activation block's stored
//    sum s (d_x * sum(q_x)): per lane dx * isum - s, so the 8 lanes together give dx * sum((q-8) x);
//  * q8_0 takes 16-bit activations (q16_a, see lmp_types.h): the weights sign-extended to int16, then
//    vpmaddwd against the activations, as many instructions per block as the 8-bit sign trick;
//  * fp16 block scales come from a 64K-entry table broadcast straight from memory (kernels_internal.h);
//  * matvec tiles take four rows a quarter of the range apart, so that each thread reads four long
//    sequential streams (MATVEC_STREAMS in kernels_internal.h).
// It does not do threading (callers split rows) nor any type without a row in qtypes.c.
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

AI float hmax8(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// fp16 scale at p (unaligned) as 8 float lanes.
AI __m256 f16_bcast(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _mm256_broadcast_ss(&lmp_kernels_fp16_lut[h]);
}

// ---- float weights: f32, f16, bf16 ----

enum { WT_F32, WT_F16, WT_BF16 };

AI __m256 fload8(int wt, const uint8_t *p) {
    if (wt == WT_F32) return _mm256_loadu_ps((const float *)p);
    if (wt == WT_F16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
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

// R weight rows x T activation rows of y = W x over n elements (any n: scalar tail). For T == 1 each
// row keeps two accumulators so that the FMA latency is hidden when the data is in cache.
AI void ftile(int wt, const uint8_t *w, size_t wrb, const uint8_t *x, size_t xrb, float *y, int64_t ldy, int64_t n,
              int R, int T) {
    const size_t esz = wt == WT_F32 ? 4 : 2;
    __m256 acc[4][4], acc2[4];
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        acc2[r] = _mm256_setzero_ps();
        #pragma GCC unroll 4
        for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
    }
    int64_t i = 0;
    if (T == 1) {
        const float *xf = (const float *)x;
        for (; i + 16 <= n; i += 16) {
            __m256 x0 = _mm256_loadu_ps(xf + i), x1 = _mm256_loadu_ps(xf + i + 8);
            #pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                const uint8_t *wr = w + (size_t)r * wrb + (size_t)i * esz;
                acc[r][0] = _mm256_fmadd_ps(fload8(wt, wr), x0, acc[r][0]);
                acc2[r] = _mm256_fmadd_ps(fload8(wt, wr + 8 * esz), x1, acc2[r]);
            }
        }
    }
    for (; i + 8 <= n; i += 8) {
        __m256 xv[4];
        #pragma GCC unroll 4
        for (int t = 0; t < T; t++) xv[t] = _mm256_loadu_ps((const float *)(x + (size_t)t * xrb) + i);
        #pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m256 wv = fload8(wt, w + (size_t)r * wrb + (size_t)i * esz);
            #pragma GCC unroll 4
            for (int t = 0; t < T; t++) acc[r][t] = _mm256_fmadd_ps(wv, xv[t], acc[r][t]);
        }
    }
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        #pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            __m256 v = acc[r][t];
            if (T == 1) v = _mm256_add_ps(v, acc2[r]);
            float s = hsum8(v);
            const float *xt = (const float *)(x + (size_t)t * xrb);
            for (int64_t j = i; j < n; j++) s += fload1(wt, w + (size_t)r * wrb + (size_t)j * esz) * xt[j];
            y[t * ldy + r] = s;
        }
}

#define FT_F32(R_, T_) (ftile(WT_F32, wp, wrb, xp, xrb, yp, ldy, n, R_, T_))
#define FT_F16(R_, T_) (ftile(WT_F16, wp, wrb, xp, xrb, yp, ldy, n, R_, T_))
#define FT_BF16(R_, T_) (ftile(WT_BF16, wp, wrb, xp, xrb, yp, ldy, n, R_, T_))
TILE_SET(f32, 3, FT_F32)
TILE_SET(f16, 3, FT_F16)
TILE_SET(bf16, 3, FT_BF16)

// ---- integer kernels ----

AI __m256i dot_u8s8(__m256i u, __m256i s) {  // 8 int32 lanes, each the sum of 4 products u8*s8
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

// 8 int32 lanes, each the sum of 4 products s16*s16: 2 from (a0, b0) and 2 from (a1, b1).
AI __m256i dot_s16(__m256i a0, __m256i b0, __m256i a1, __m256i b1) {
    return _mm256_add_epi32(_mm256_madd_epi16(a0, b0), _mm256_madd_epi16(a1, b1));
}

#include "runtime/kernels_int_tiles.h"  // tile_q8_0, tile_q4 and matvec_/matmul_ of every integer type

// ---- activation quantization ----

// roundf (half away from zero) for |v| < 2^23, exactly: truncate, then step away from zero when the
// dropped fraction is at least one half. (_mm256_round_ps rounds half to even, which would differ from
// the reference on ties.)
AI __m256 round_half_away(__m256 v) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 f = _mm256_andnot_ps(sign, _mm256_sub_ps(v, t));
    __m256 step = _mm256_or_ps(_mm256_and_ps(v, sign), _mm256_set1_ps(1.0f));
    return _mm256_add_ps(t, _mm256_and_ps(_mm256_cmp_ps(f, _mm256_set1_ps(0.5f), _CMP_GE_OQ), step));
}

// One block of 32 activations: loads it into v[4], returns d = max|x| / qmax, and, when d != 0, the
// codes roundf(x / d) (a true division, as the references do) as int32 in iv[4]. Shared by the q8_a
// and q16_a quantizers, which differ only in qmax and in how they store the codes.
AI float act_block_codes(const float *xb, float qmax, __m256i iv[4]) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 v[4];
    for (int k = 0; k < 4; k++) v[k] = _mm256_loadu_ps(xb + 8 * k);
    __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
                             _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])));
    const float d = hmax8(m) / qmax;
    if (d != 0.0f) {
        // Clamped to [-qmax, qmax] as the references do: with a subnormal d (a few units of 2^-149) the
        // rounding of d can put |x| / d well above qmax + 1/2, and the saturating packs would give -qmax - 1.
        const __m256 dv = _mm256_set1_ps(d);
        const __m256i hi = _mm256_set1_epi32((int)qmax), lo = _mm256_set1_epi32(-(int)qmax);
        for (int k = 0; k < 4; k++)
            iv[k] = _mm256_max_epi32(lo, _mm256_min_epi32(hi, _mm256_cvtps_epi32(round_half_away(_mm256_div_ps(v[k], dv)))));
    }
    return d;
}

// Bit-identical to the reference (qtypes.c): d = amax / 127, q = roundf(x / d) (a true division, as
// the reference does), s = d * sum(q).
static void quantize_q8a(const float *x, void *xq, int64_t n) {
    lmp_block_q8_a *y = xq;
    for (int64_t b = 0; b < n / LMP_QK8_A; b++) {
        __m256i iv[4];
        const float d = act_block_codes(x + b * LMP_QK8_A, 127.0f, iv);
        y[b].d = d;
        if (d == 0.0f) {
            memset(y[b].qs, 0, sizeof y[b].qs);
            y[b].s = d * 0.0f;
            continue;
        }
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(iv[0], iv[1]), _mm256_packs_epi32(iv[2], iv[3]));
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)y[b].qs, p);
        __m256i si = _mm256_add_epi32(_mm256_add_epi32(iv[0], iv[1]), _mm256_add_epi32(iv[2], iv[3]));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(si), _mm256_extracti128_si256(si, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
        y[b].s = d * (float)_mm_cvtsi128_si32(s4);
    }
}

// Bit-identical to the reference (qtypes.c): d = amax / 32767, q = roundf(x / d), clamped to +-32767.
static void quantize_q16a(const float *x, void *xq, int64_t n) {
    lmp_block_q16_a *y = xq;
    for (int64_t b = 0; b < n / LMP_QK16_A; b++) {
        __m256i iv[4];
        const float d = act_block_codes(x + b * LMP_QK16_A, 32767.0f, iv);
        y[b].d = d;
        if (d == 0.0f) {
            memset(y[b].qs, 0, sizeof y[b].qs);
            continue;
        }
        // packs works within 128-bit lanes: (a0-3 b0-3 | a4-7 b4-7) -> reorder the 64-bit quarters
        __m256i p0 = _mm256_permute4x64_epi64(_mm256_packs_epi32(iv[0], iv[1]), 0xD8);
        __m256i p1 = _mm256_permute4x64_epi64(_mm256_packs_epi32(iv[2], iv[3]), 0xD8);
        _mm256_storeu_si256((__m256i *)y[b].qs, p0);
        _mm256_storeu_si256((__m256i *)(y[b].qs + 16), p1);
    }
}

void lmp_kernels_init_avx2(lmp_kernels *k) {
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
    k->quantize_q8a = quantize_q8a;
    k->quantize_q16a = quantize_q16a;
}

#endif  // __x86_64__
