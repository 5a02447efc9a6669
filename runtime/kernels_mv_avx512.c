// kernels_mv_avx512.c - 512-bit decode matvec for q4_0 (AVX-512 F/BW/VL/DQ + VNNI table only): two weight
// rows per zmm register. Overrides the matvec entry that kernels_avx512.c sets from the shared 256-bit
// tiles (kernels_int_tiles.h); matmul (batched) keeps its own kernels.
//
// Why: on Intel AVX-512 cores (full-width 512-bit ports 0 and 5) the 256-bit tile is bound by its
// per-block vector instructions (in cache, 2048 x 768 ran at 19 GB/s on one Sapphire Rapids core), and
// a 512-bit instruction costs one micro-operation, so one per two rows halves the work. On Zen 4 the
// same idea gained nothing (512-bit operations split in two halves, docs/benchmarks.md).
//
// Per block and pair of rows (r, r'), one zmm holds the 16 code bytes of row r in 128-bit lanes 0 and 1
// and those of r' in lanes 2 and 3 (a broadcast and a merge-masked broadcast). Against the activation
// block broadcast to both 256-bit halves (32 codes, elements 0..15 in the low lane, 16..31 in the high
// one), lanes 0 and 2 keep the low nibbles (elements 0..15: AND 0x0F) and lanes 1 and 3 the high nibbles
// (elements 16..31: AND 0xF0, i.e. the nibble times 16, which saves the shift of the 256-bit tile). The
// factor 16 is taken back in the activation scale: those int32 lanes are scaled by dx / 16, and since
// 16 k * (dx / 16) = k * dx exactly (a power of two; dx is a normal float or zero), every lane gets the
// same float value as the 256-bit tile's, whose accumulation order is kept: per row and lane
// acc += (lane_isum * dx - s) * dw over the blocks, then the 8 lanes of a row are summed as there. So the
// result is bit-identical to the 256-bit tile, and a row's value does not depend on its neighbour.
// Lane products: u8 up to 240 times s8 up to 127, four per lane: below 2^17, exact in int32 and float.
#if defined(__x86_64__)

#include <immintrin.h>
#include <string.h>

#include "format/qtypes.h"
#include "runtime/kernels_internal.h"

#define AI static inline __attribute__((always_inline))

AI float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AI float fp16_lut(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return lmp_kernels_fp16_lut[h];
}

enum { Q4B = sizeof(lmp_block_q4_0) };  // 18 bytes: fp16 d, 16 code bytes

// One row (the tail of a range): the same per-lane arithmetic in 256 bits.
static float q4_0_row(const uint8_t *w, const lmp_block_q8_a *x, int64_t nb) {
    const __m256i m = _mm256_setr_epi64x(0x0F0F0F0F0F0F0F0Fll, 0x0F0F0F0F0F0F0F0Fll, (long long)0xF0F0F0F0F0F0F0F0ull,
                                         (long long)0xF0F0F0F0F0F0F0F0ull);
    const __m256 c16 = _mm256_setr_ps(1, 1, 1, 1, 0.0625f, 0.0625f, 0.0625f, 0.0625f);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *wb = w + (size_t)b * Q4B;
        __m256i q = _mm256_and_si256(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(wb + 2))), m);
        __m256i d = _mm256_dpbusd_epi32(_mm256_setzero_si256(), q, _mm256_loadu_si256((const __m256i *)x[b].qs));
        __m256 dx = _mm256_mul_ps(_mm256_set1_ps(x[b].d), c16);
        __m256 v = _mm256_fmsub_ps(_mm256_cvtepi32_ps(d), dx, _mm256_set1_ps(x[b].s));
        acc = _mm256_fmadd_ps(v, _mm256_set1_ps(fp16_lut(wb)), acc);
    }
    return hsum8(acc);
}

// Rows w0..w3 (any addresses): y4[0..4).
static void q4_0_rows4(const uint8_t *w0, const uint8_t *w1, const uint8_t *w2, const uint8_t *w3,
                       const lmp_block_q8_a *x, int64_t nb, float *y4) {
    const __m512i m = _mm512_setr_epi64(0x0F0F0F0F0F0F0F0Fll, 0x0F0F0F0F0F0F0F0Fll, (long long)0xF0F0F0F0F0F0F0F0ull,
                                        (long long)0xF0F0F0F0F0F0F0F0ull, 0x0F0F0F0F0F0F0F0Fll, 0x0F0F0F0F0F0F0F0Fll,
                                        (long long)0xF0F0F0F0F0F0F0F0ull, (long long)0xF0F0F0F0F0F0F0F0ull);
    const __m512 c16 = _mm512_setr_ps(1, 1, 1, 1, 0.0625f, 0.0625f, 0.0625f, 0.0625f, 1, 1, 1, 1, 0.0625f, 0.0625f,
                                      0.0625f, 0.0625f);
    __m512 a01 = _mm512_setzero_ps(), a23 = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const size_t o = (size_t)b * Q4B;
        __m512i xa = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)x[b].qs));
        __m512 dx = _mm512_mul_ps(_mm512_set1_ps(x[b].d), c16);
        __m512 sx = _mm512_set1_ps(x[b].s);
        __m512i q01 = _mm512_mask_broadcast_i32x4(_mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(w0 + o + 2))),
                                                  0xFF00, _mm_loadu_si128((const __m128i *)(w1 + o + 2)));
        __m512i q23 = _mm512_mask_broadcast_i32x4(_mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(w2 + o + 2))),
                                                  0xFF00, _mm_loadu_si128((const __m128i *)(w3 + o + 2)));
        __m512i d01 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(q01, m), xa);
        __m512i d23 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(q23, m), xa);
        __m512 v01 = _mm512_fmsub_ps(_mm512_cvtepi32_ps(d01), dx, sx);
        __m512 v23 = _mm512_fmsub_ps(_mm512_cvtepi32_ps(d23), dx, sx);
        __m512 s01 = _mm512_mask_broadcastss_ps(_mm512_set1_ps(fp16_lut(w0 + o)), 0xFF00, _mm_set_ss(fp16_lut(w1 + o)));
        __m512 s23 = _mm512_mask_broadcastss_ps(_mm512_set1_ps(fp16_lut(w2 + o)), 0xFF00, _mm_set_ss(fp16_lut(w3 + o)));
        a01 = _mm512_fmadd_ps(v01, s01, a01);
        a23 = _mm512_fmadd_ps(v23, s23, a23);
    }
    y4[0] = hsum8(_mm512_castps512_ps256(a01));
    y4[1] = hsum8(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a01), 1)));
    y4[2] = hsum8(_mm512_castps512_ps256(a23));
    y4[3] = hsum8(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a23), 1)));
}

// The row order of the shared TILE_SET matvec (kernels_internal.h, MATVEC_STREAMS): a tile takes rows
// i, i + q, i + 2q, i + 3q, four long sequential streams.
static void matvec_q4_0_512(const void *w, size_t wrb, const void *xv, float *y, int64_t n, int64_t r0, int64_t r1) {
    const uint8_t *wb = w;
    const lmp_block_q8_a *x = xv;
    const int64_t nb = n / 32;
    const int64_t qmax = MATVEC_STREAM_BYTES / (int64_t)wrb > 1 ? MATVEC_STREAM_BYTES / (int64_t)wrb : 1;
    float t4[4];
    int64_t r = r0;
    while (r1 - r >= 4) {
        const int64_t q = (r1 - r) / 4 < qmax ? (r1 - r) / 4 : qmax;
        for (int64_t i = r; i < r + q; i++) {
            const uint8_t *p = wb + (size_t)i * wrb;
            q4_0_rows4(p, p + wrb * (size_t)q, p + 2 * wrb * (size_t)q, p + 3 * wrb * (size_t)q, x, nb, t4);
            y[i] = t4[0], y[i + q] = t4[1], y[i + 2 * q] = t4[2], y[i + 3 * q] = t4[3];
        }
        r += 4 * q;
    }
    for (; r < r1; r++) y[r] = q4_0_row(wb + (size_t)r * wrb, x, nb);
}

void lmp_kernels_init_mv_avx512(lmp_kernels *k) { k->matvec[LMP_DTYPE_Q4_0] = matvec_q4_0_512; }

#endif  // __x86_64__
