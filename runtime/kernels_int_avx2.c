// kernels_int_avx2.c - batched integer matmul (prefill, eval-ppl, calibration) for q8_0 and the
// q4_0 / q4_1 families (g32, g64, g128) with AVX2, as "vertical" panel tiles, the AVX2 counterpart of
// kernels_int_avx512.c (compiled with -mavx2 -mfma -mf16c; called only after kernels.c's CPU check):
//
//  * a strip of 8 weight rows is repacked, KC activation blocks (1024 elements) at a time, into a small
//    panel on the stack: for each activation block and each group of 4 (q4) or 2 (q8_0) elements, one
//    32-byte vector holding those elements of all 8 rows (u8 nibbles, or int16 pairs for q8_0), and the
//    8 rows' block scales as one float vector. The repack is an 8 x 4 dword transpose of 16 bytes of
//    each row (unpack, no gathers: AVX2 gathers are slow on Zen 2/3);
//  * the microkernel takes 8 rows x T <= PANEL_TT tokens: per weight vector, T vpmaddubsw (q4: 32
//    multiply-adds) or vpmaddwd (q8_0: 16) per token against that token's 4 (2) activation codes
//    broadcast from memory, and one convert + two FMAs per block and token for all 8 rows, where the
//    horizontal tiles (kernels_int_tiles.h) spend a convert and two FMAs per row, block and token;
//  * activations are quantized once per batch by the caller (backend_cpu.c), as for every matmul.
// Rows outside whole strips and batches of fewer than PANEL_MIN_M tokens go to the table's previous
// matmul entry (the horizontal tiles). Decode (matvec) is not done here: a per-call repack would cost as
// much as the product.
//
// Exactness of the integer part (no saturation, no rounding):
//   q4: vpmaddubsw multiplies a nibble (u8, 0..15) by an activation code (s8, |q| <= 127 from the
//       quantizer, 128 for arbitrary bytes) and adds pairs into int16: |pair| <= 2 * 15 * 128 = 3840.
//       The 8 pair vectors of one 32-element block are summed in int16 (|sum| <= 8 * 3840 = 30720 <
//       32767), then one vpmaddwd with ones widens the two pairs of a row to int32: the row's exact
//       block sum. (No saturation can happen, so the sign trick of the q8 x q8 case is not needed.)
//   q8_0: int8 weights sign-extended to int16 times q16_a codes (|q| <= 32767): vpmaddwd pairs are exact
//       in int32 (2 * 128 * 32767), and 16 of them per block stay below 2^28.
// Arithmetic per block and token (the AVX-512 panels' terms, in another order than the horizontal tiles,
// within the tests' tolerances; for data where every partial sum is exact the result equals the reference):
//   q4_0 family: dw * (dx * isum_u - 8 s), isum_u over the unsigned nibbles, s the block's stored sum;
//   q4_1 family: dw * (dx * isum_u) + mw * s;
//   q8_0:        (dw * dx) * isum.
#if defined(__x86_64__)

#include <immintrin.h>
#include <string.h>

#include "format/qtypes.h"
#include "runtime/kernels_internal.h"

#define AI static inline __attribute__((always_inline))

#define PANEL_ROWS 8   // rows per strip: one ymm of int32 / float lanes
#define PANEL_KC 32    // activation blocks per repacked chunk: multiple of every G / 32
#ifndef PANEL_TT
#define PANEL_TT 6     // tokens per microkernel call (at most 8): 6 int16 + 6 float accumulators
#endif
#define PANEL_MIN_M 4  // fewer tokens: the repack would not pay

// One repacked chunk of a strip. q4: q[j][g][4 r + i] = nibble of element 4 g + i of activation block j,
// row r (g < 8). q8_0: g < 16, and two int16 per row (elements 2 g, 2 g + 1).
typedef struct {
    _Alignas(32) uint8_t q[PANEL_KC][16][32];      // (KC, 8 or 16 groups, 8 rows x 4 bytes)
    _Alignas(32) float d[PANEL_KC][PANEL_ROWS];    // (KC, 8): weight scale of each row's block
    _Alignas(32) float m[PANEL_KC][PANEL_ROWS];    // (KC, 8): q4_1 minimum
} panel;

// The horizontal-tile matmul of each type, for the rows and batches the panels do not take.
static lmp_matmul_fn g_prev[LMP_DTYPE_COUNT];

AI int32_t ld32(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

AI float f16_at(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return lmp_kernels_fp16_lut[h];
}

// ---- repack ----

// 16 bytes at p of each of 8 rows (row r at p + r * wrb) -> v[k] = dword k of rows 0..7, in row order.
AI void rows8_dwords4(const uint8_t *p, size_t wrb, __m256i v[4]) {
#define LD2(r) _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(p + (r) * wrb))), \
                                       _mm_loadu_si128((const __m128i *)(p + ((r) + 4) * wrb)), 1)
    const __m256i a = LD2(0), b = LD2(1), c = LD2(2), d = LD2(3);  // rows (0|4), (1|5), (2|6), (3|7)
#undef LD2
    const __m256i ab0 = _mm256_unpacklo_epi32(a, b), ab1 = _mm256_unpackhi_epi32(a, b);
    const __m256i cd0 = _mm256_unpacklo_epi32(c, d), cd1 = _mm256_unpackhi_epi32(c, d);
    v[0] = _mm256_unpacklo_epi64(ab0, cd0);
    v[1] = _mm256_unpackhi_epi64(ab0, cd0);
    v[2] = _mm256_unpacklo_epi64(ab1, cd1);
    v[3] = _mm256_unpackhi_epi64(ab1, cd1);
}

// Activation blocks [j0, j0 + nj) of the 8 rows at w (row r at w + r * wrb), G-element blocks of bb bytes.
// Element e of a weight block is the low nibble of qs[e] for e < G/2, else the high nibble of qs[e - G/2].
AI void repack_q4(panel *P, const uint8_t *w, size_t wrb, int G, int asym, int64_t j0, int nj) {
    const int K = G / 32, half = G / 2, hdr = asym ? 4 : 2, bb = hdr + G / 2;
    const __m256i m4 = _mm256_set1_epi8(15);
    for (int64_t B = j0 / K; B < (j0 + nj) / K; B++) {
        const uint8_t *blk = w + (size_t)B * (size_t)bb;
        const int jb = (int)(B * K - j0);
        for (int r = 0; r < PANEL_ROWS; r++) {
            const float dr = f16_at(blk + (size_t)r * wrb), mr = asym ? f16_at(blk + (size_t)r * wrb + 2) : 0.0f;
            for (int k = 0; k < K; k++) {
                P->d[jb + k][r] = dr;
                P->m[jb + k][r] = mr;
            }
        }
        for (int c = 0; c < half / 16; c++) {
            __m256i v[4];
            rows8_dwords4(blk + hdr + 16 * c, wrb, v);
            for (int k = 0; k < 4; k++) {
                const int el = 16 * c + 4 * k, eh = half + el;
                _mm256_store_si256((__m256i *)P->q[jb + el / 32][(el % 32) / 4], _mm256_and_si256(v[k], m4));
                _mm256_store_si256((__m256i *)P->q[jb + eh / 32][(eh % 32) / 4],
                                   _mm256_and_si256(_mm256_srli_epi32(v[k], 4), m4));
            }
        }
    }
}

AI void repack_q8_0(panel *P, const uint8_t *w, size_t wrb, int64_t j0, int nj) {
    // bytes (b0 b1 b2 b3) of each dword -> int16 (b0, b1) and (b2, b3): each byte moved to the high half
    // of a 16-bit lane (0x80 selects zero), then an arithmetic shift right by 8 sign-extends it.
    const __m256i sh0 = _mm256_broadcastsi128_si256(_mm_setr_epi8(-128, 0, -128, 1, -128, 4, -128, 5, -128, 8, -128, 9, -128, 12, -128, 13));
    const __m256i sh1 = _mm256_broadcastsi128_si256(_mm_setr_epi8(-128, 2, -128, 3, -128, 6, -128, 7, -128, 10, -128, 11, -128, 14, -128, 15));
    for (int jj = 0; jj < nj; jj++) {
        const uint8_t *blk = w + (size_t)(j0 + jj) * sizeof(lmp_block_q8_0);
        for (int r = 0; r < PANEL_ROWS; r++) P->d[jj][r] = f16_at(blk + (size_t)r * wrb);
        for (int h = 0; h < 2; h++) {
            __m256i v[4];
            rows8_dwords4(blk + 2 + 16 * h, wrb, v);
            for (int k = 0; k < 4; k++) {
                const int g = 8 * h + 2 * k;  // elements 2 g .. 2 g + 3 = bytes 4 k .. 4 k + 3 of half h
                _mm256_store_si256((__m256i *)P->q[jj][g], _mm256_srai_epi16(_mm256_shuffle_epi8(v[k], sh0), 8));
                _mm256_store_si256((__m256i *)P->q[jj][g + 1], _mm256_srai_epi16(_mm256_shuffle_epi8(v[k], sh1), 8));
            }
        }
    }
}

// Why: GCC re-associates the integer sums of a block into trees over all 8 groups, which keeps 8 x T
// products live at once and spills them (measured: q4_0 at 100-120 GFLOP/s with spills). An empty asm
// that takes and returns the running sum in a register pins each token's sum to one chain.
#define KEEP_CHAIN(v) __asm__("" : "+x"(v))

// ---- microkernels: 8 rows x T tokens over the chunk's nj activation blocks ----
// x: the T tokens' activation rows (stride xrb) already advanced to the chunk's first block;
// y: output of token 0, row 0 of the strip; acc starts from y when !first (a later chunk).

AI void tile_q4(const panel *P, int asym, const uint8_t *x, size_t xrb, int nj, float *y, int64_t ldy, int first,
                int T) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[PANEL_TT];
    #pragma GCC unroll 8
    for (int t = 0; t < T; t++) acc[t] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(y + t * ldy);
    for (int jj = 0; jj < nj; jj++) {
        const lmp_block_q8_a *xb[PANEL_TT];
        __m256i s16[PANEL_TT];
        #pragma GCC unroll 8
        for (int t = 0; t < T; t++) xb[t] = (const lmp_block_q8_a *)(x + (size_t)t * xrb) + jj;
        #pragma GCC unroll 8
        for (int g = 0; g < 8; g++) {
            const __m256i wv = _mm256_load_si256((const __m256i *)P->q[jj][g]);
            #pragma GCC unroll 8
            for (int t = 0; t < T; t++) {
                const __m256i p = _mm256_maddubs_epi16(wv, _mm256_set1_epi32(ld32(xb[t]->qs + 4 * g)));
                s16[t] = g ? _mm256_add_epi16(s16[t], p) : p;  // int16, exact (see the header)
                KEEP_CHAIN(s16[t]);
            }
        }
        const __m256 dw = _mm256_load_ps(P->d[jj]);
        #pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            __m256 f = _mm256_cvtepi32_ps(_mm256_madd_epi16(s16[t], ones));
            if (!asym) {
                f = _mm256_fmsub_ps(f, _mm256_broadcast_ss(&xb[t]->d), _mm256_set1_ps(8.0f * xb[t]->s));
                acc[t] = _mm256_fmadd_ps(f, dw, acc[t]);
            } else {
                acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(f, _mm256_broadcast_ss(&xb[t]->d)), dw, acc[t]);
                acc[t] = _mm256_fmadd_ps(_mm256_load_ps(P->m[jj]), _mm256_broadcast_ss(&xb[t]->s), acc[t]);
            }
        }
    }
    #pragma GCC unroll 8
    for (int t = 0; t < T; t++) _mm256_storeu_ps(y + t * ldy, acc[t]);
}

AI void tile_q8_0(const panel *P, const uint8_t *x, size_t xrb, int nj, float *y, int64_t ldy, int first, int T) {
    __m256 acc[PANEL_TT];
    #pragma GCC unroll 8
    for (int t = 0; t < T; t++) acc[t] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(y + t * ldy);
    for (int jj = 0; jj < nj; jj++) {
        const lmp_block_q16_a *xb[PANEL_TT];
        __m256i ia[PANEL_TT];
        #pragma GCC unroll 8
        for (int t = 0; t < T; t++) xb[t] = (const lmp_block_q16_a *)(x + (size_t)t * xrb) + jj;
        #pragma GCC unroll 16
        for (int g = 0; g < 16; g++) {
            const __m256i wv = _mm256_load_si256((const __m256i *)P->q[jj][g]);
            #pragma GCC unroll 8
            for (int t = 0; t < T; t++) {
                const __m256i p = _mm256_madd_epi16(wv, _mm256_set1_epi32(ld32(xb[t]->qs + 2 * g)));
                ia[t] = g ? _mm256_add_epi32(ia[t], p) : p;
                KEEP_CHAIN(ia[t]);
            }
        }
        const __m256 dw = _mm256_load_ps(P->d[jj]);
        #pragma GCC unroll 8
        for (int t = 0; t < T; t++)
            acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_broadcast_ss(&xb[t]->d)), _mm256_cvtepi32_ps(ia[t]), acc[t]);
    }
    #pragma GCC unroll 8
    for (int t = 0; t < T; t++) _mm256_storeu_ps(y + t * ldy, acc[t]);
}

// One instantiation per token count, so that the accumulators stay in registers.
// (T_ <= PANEL_TT keeps the cases above PANEL_TT, never taken, from indexing past the arrays.)
#define PANEL_TILE_SWITCH(CALL)                                    \
    switch (T) {                                                   \
    case 1: CALL(1); break;                                        \
    case 2: if (PANEL_TT >= 2) CALL(2 <= PANEL_TT ? 2 : 1); break; \
    case 3: if (PANEL_TT >= 3) CALL(3 <= PANEL_TT ? 3 : 1); break; \
    case 4: if (PANEL_TT >= 4) CALL(4 <= PANEL_TT ? 4 : 1); break; \
    case 5: if (PANEL_TT >= 5) CALL(5 <= PANEL_TT ? 5 : 1); break; \
    case 6: if (PANEL_TT >= 6) CALL(6 <= PANEL_TT ? 6 : 1); break; \
    case 7: if (PANEL_TT >= 7) CALL(7 <= PANEL_TT ? 7 : 1); break; \
    default: CALL(PANEL_TT); break;                                \
    }

static void tiles_q4_0(const panel *P, const uint8_t *x, size_t xrb, int nj, float *y, int64_t ldy, int first, int T) {
#define C(T_) tile_q4(P, 0, x, xrb, nj, y, ldy, first, T_)
    PANEL_TILE_SWITCH(C)
#undef C
}

static void tiles_q4_1(const panel *P, const uint8_t *x, size_t xrb, int nj, float *y, int64_t ldy, int first, int T) {
#define C(T_) tile_q4(P, 1, x, xrb, nj, y, ldy, first, T_)
    PANEL_TILE_SWITCH(C)
#undef C
}

static void tiles_q8_0(const panel *P, const uint8_t *x, size_t xrb, int nj, float *y, int64_t ldy, int first, int T) {
#define C(T_) tile_q8_0(P, x, xrb, nj, y, ldy, first, T_)
    PANEL_TILE_SWITCH(C)
#undef C
}

// ---- matmul driver (kernels_int_panel.h) ----
#define PANEL_SRC_T size_t
#define PANEL_SRC(wrb) (wrb)
#define PANEL_FITS(wrb) 1  // row strides are size_t: any row length
#include "runtime/kernels_int_panel.h"

void lmp_kernels_init_int_avx2(lmp_kernels *k) { panel_init(k); }

#endif  // __x86_64__
