// kernels_int_avx512.c - batched integer matmul (prefill, eval-ppl, calibration) for q8_0 and the
// q4_0 / q4_1 families (g32, g64, g128) with AVX-512 VNNI, as "vertical" panel tiles:
//
//  * a strip of 16 weight rows is repacked, KC activation blocks (1024 elements) at a time, into a
//    small panel on the stack: for each activation block and each group of 4 (q4) or 2 (q8_0) elements,
//    one 64-byte vector holding those elements of all 16 rows (u8 nibbles, or int16 pairs for q8_0), and
//    the 16 rows' block scales as one float vector (gathers + vcvtph2ps: the repack costs a few percent
//    of the tile work for m = 128 tokens);
//  * the microkernel takes 16 rows x T <= 8 tokens: per weight vector, T vpdpbusd (q4) or vpdpwssd
//    (q8_0) against the token's 4 (2) activation codes broadcast from memory, so that one instruction
//    does 64 (32) multiply-adds for 16 rows at once, and the float work (convert, scale) is one vector
//    per block and token for all 16 rows, where the horizontal tiles (kernels_int_tiles.h) spend it per
//    row, block and token, and reduce horizontally at the end;
//  * activations are quantized once per batch by the caller (backend_cpu.c), as for every matmul.
// Rows outside whole strips and batches of fewer than PANEL_MIN_M tokens go to the table's previous
// matmul entry (the horizontal tiles). Decode (matvec) is not done here: a per-call repack would cost
// as much as the product. (512-bit matvec tiles, two q4_0 blocks or one q8_0 block per zmm, were tried
// and measured no faster than the 256-bit ones on the Zen 4 machine, whose zmm ops are double-pumped;
// docs/benchmarks.md, "Integer tiles (issue 14)".)
//
// Arithmetic per block and token (exactly the horizontal tiles' terms, in another order, so the same
// test tolerances hold; for data where every partial sum is exact the result equals the reference):
//   q4_0 family: dw * (dx * isum_u - 8 s), isum_u over the unsigned nibbles, s the block's stored sum;
//   q4_1 family: dw * (dx * isum_u) + mw * s;
//   q8_0:        (dw * dx) * isum.
#if defined(__x86_64__)

#include <immintrin.h>
#include <limits.h>
#include <string.h>

#include "runtime/kernels_internal.h"
#include "format/qtypes.h"

#define AI static inline __attribute__((always_inline))

#define PANEL_ROWS 16   // rows per strip: one zmm of int32 / float lanes
#define PANEL_KC 32     // activation blocks per repacked chunk: multiple of every G / 32
#define PANEL_TT 8      // tokens per microkernel call: 8 int + 8 float accumulators
#define PANEL_MIN_M 4   // fewer tokens: the repack would not pay

// One repacked chunk of a strip. q4: q[j][g][4 r + i] = nibble of element 4 g + i of activation block j,
// row r. q8_0: the same with g < 16 and two int16 per row (elements 2 g, 2 g + 1).
typedef struct {
    _Alignas(64) uint8_t q[PANEL_KC][16][64];  // (KC, 8 or 16 groups, 16 rows x 4 bytes)
    _Alignas(64) float d[PANEL_KC][PANEL_ROWS];  // (KC, 16): weight scale of each row's block
    _Alignas(64) float m[PANEL_KC][PANEL_ROWS];  // (KC, 16): q4_1 minimum
} panel;

// The horizontal-tile matmul of each type, for the rows and batches the panels do not take.
static lmp_matmul_fn g_prev[LMP_DTYPE_COUNT];

AI __m512i strip_offsets(size_t wrb) {
    return _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                              _mm512_set1_epi32((int)wrb));
}

AI int32_t ld32(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

// ---- repack ----

// Activation blocks [j0, j0 + nj) of the 16 rows at w (row r at w + r * wrb), G-element blocks of bb bytes.
// Element e of a weight block is the low nibble of qs[e] for e < G/2, else the high nibble of qs[e - G/2].
AI void repack_q4(panel *P, const uint8_t *w, __m512i off, int G, int asym, int64_t j0, int nj) {
    const int K = G / 32, half = G / 2, hdr = asym ? 4 : 2, bb = hdr + G / 2;
    const __m512i m4 = _mm512_set1_epi8(15);
    for (int64_t B = j0 / K; B < (j0 + nj) / K; B++) {
        const uint8_t *blk = w + (size_t)B * (size_t)bb;
        const int jb = (int)(B * K - j0);
        __m512i sd = _mm512_i32gather_epi32(off, (const void *)blk, 1);  // d | m << 16
        __m512 dv = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(sd));
        __m512 mv = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(sd, 16)));
        for (int k = 0; k < K; k++) {
            _mm512_store_ps(P->d[jb + k], dv);
            if (asym) _mm512_store_ps(P->m[jb + k], mv);
        }
        for (int dd = 0; dd < half / 4; dd++) {
            __m512i v = _mm512_i32gather_epi32(off, (const void *)(blk + hdr + 4 * dd), 1);
            const int el = 4 * dd, eh = half + 4 * dd;
            _mm512_store_si512((void *)P->q[jb + el / 32][(el % 32) / 4], _mm512_and_si512(v, m4));
            _mm512_store_si512((void *)P->q[jb + eh / 32][(eh % 32) / 4], _mm512_and_si512(_mm512_srli_epi32(v, 4), m4));
        }
    }
}

AI void repack_q8_0(panel *P, const uint8_t *w, __m512i off, int64_t j0, int nj) {
    // bytes (b0 b1 b2 b3) of each dword -> int16 (b0, b1) and (b2, b3): each byte moved to the high half
    // of a 16-bit lane (0x80 selects zero), then an arithmetic shift right by 8 sign-extends it.
    const __m512i sh0 = _mm512_broadcast_i32x4(_mm_setr_epi8(-128, 0, -128, 1, -128, 4, -128, 5, -128, 8, -128, 9, -128, 12, -128, 13));
    const __m512i sh1 = _mm512_broadcast_i32x4(_mm_setr_epi8(-128, 2, -128, 3, -128, 6, -128, 7, -128, 10, -128, 11, -128, 14, -128, 15));
    for (int jj = 0; jj < nj; jj++) {
        const uint8_t *blk = w + (size_t)(j0 + jj) * sizeof(lmp_block_q8_0);
        __m512i sd = _mm512_i32gather_epi32(off, (const void *)blk, 1);
        _mm512_store_ps(P->d[jj], _mm512_cvtph_ps(_mm512_cvtepi32_epi16(sd)));
        for (int g4 = 0; g4 < 8; g4++) {
            __m512i v = _mm512_i32gather_epi32(off, (const void *)(blk + 2 + 4 * g4), 1);
            _mm512_store_si512((void *)P->q[jj][2 * g4], _mm512_srai_epi16(_mm512_shuffle_epi8(v, sh0), 8));
            _mm512_store_si512((void *)P->q[jj][2 * g4 + 1], _mm512_srai_epi16(_mm512_shuffle_epi8(v, sh1), 8));
        }
    }
}

// ---- microkernels: 16 rows x T tokens over the chunk's nj activation blocks ----
// x: the T tokens' activation rows (stride xrb) already advanced to the chunk's first block;
// y: output of token 0, row 0 of the strip; acc starts from y when !first (a later chunk).

AI void tile_q4(const panel *P, int asym, const uint8_t *x, size_t xrb, int nj, float *y, int64_t ldy, int first,
                int T) {
    __m512 acc[PANEL_TT];
    #pragma GCC unroll 8
    for (int t = 0; t < T; t++) acc[t] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(y + t * ldy);
    for (int jj = 0; jj < nj; jj++) {
        const lmp_block_q8_a *xb[PANEL_TT];
        __m512i ia[PANEL_TT];
        #pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            xb[t] = (const lmp_block_q8_a *)(x + (size_t)t * xrb) + jj;
            ia[t] = _mm512_setzero_si512();
        }
        #pragma GCC unroll 8
        for (int g = 0; g < 8; g++) {
            const __m512i wv = _mm512_load_si512((const void *)P->q[jj][g]);
            #pragma GCC unroll 8
            for (int t = 0; t < T; t++) ia[t] = _mm512_dpbusd_epi32(ia[t], wv, _mm512_set1_epi32(ld32(xb[t]->qs + 4 * g)));
        }
        const __m512 dw = _mm512_load_ps(P->d[jj]);
        #pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            __m512 f = _mm512_cvtepi32_ps(ia[t]);
            if (!asym) {
                f = _mm512_fmsub_ps(f, _mm512_set1_ps(xb[t]->d), _mm512_set1_ps(8.0f * xb[t]->s));
                acc[t] = _mm512_fmadd_ps(f, dw, acc[t]);
            } else {
                acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(f, _mm512_set1_ps(xb[t]->d)), dw, acc[t]);
                acc[t] = _mm512_fmadd_ps(_mm512_load_ps(P->m[jj]), _mm512_set1_ps(xb[t]->s), acc[t]);
            }
        }
    }
    #pragma GCC unroll 8
    for (int t = 0; t < T; t++) _mm512_storeu_ps(y + t * ldy, acc[t]);
}

AI void tile_q8_0(const panel *P, const uint8_t *x, size_t xrb, int nj, float *y, int64_t ldy, int first, int T) {
    __m512 acc[PANEL_TT];
    #pragma GCC unroll 8
    for (int t = 0; t < T; t++) acc[t] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(y + t * ldy);
    for (int jj = 0; jj < nj; jj++) {
        const lmp_block_q16_a *xb[PANEL_TT];
        __m512i ia[PANEL_TT];
        #pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            xb[t] = (const lmp_block_q16_a *)(x + (size_t)t * xrb) + jj;
            ia[t] = _mm512_setzero_si512();
        }
        #pragma GCC unroll 16
        for (int g = 0; g < 16; g++) {
            const __m512i wv = _mm512_load_si512((const void *)P->q[jj][g]);
            #pragma GCC unroll 8
            for (int t = 0; t < T; t++) ia[t] = _mm512_dpwssd_epi32(ia[t], wv, _mm512_set1_epi32(ld32(xb[t]->qs + 2 * g)));
        }
        const __m512 dw = _mm512_load_ps(P->d[jj]);
        #pragma GCC unroll 8
        for (int t = 0; t < T; t++)
            acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_set1_ps(xb[t]->d)), _mm512_cvtepi32_ps(ia[t]), acc[t]);
    }
    #pragma GCC unroll 8
    for (int t = 0; t < T; t++) _mm512_storeu_ps(y + t * ldy, acc[t]);
}

// One instantiation per token count, so that the accumulators stay in registers.
#define PANEL_TILE_SWITCH(CALL)                \
    switch (T) {                               \
    case 1: CALL(1); break;                    \
    case 2: CALL(2); break;                    \
    case 3: CALL(3); break;                    \
    case 4: CALL(4); break;                    \
    case 5: CALL(5); break;                    \
    case 6: CALL(6); break;                    \
    case 7: CALL(7); break;                    \
    default: CALL(8); break;                   \
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
#define PANEL_SRC_T __m512i
#define PANEL_SRC(wrb) strip_offsets(wrb)
#define PANEL_FITS(wrb) ((wrb) <= (size_t)INT_MAX / PANEL_ROWS)
#include "runtime/kernels_int_panel.h"

void lmp_kernels_init_int_avx512(lmp_kernels *k) { panel_init(k); }

#endif  // __x86_64__
