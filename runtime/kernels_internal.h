// kernels_internal.h - what quant/kernels.c shares with the per-ISA kernel files (kernels_avx2.c,
// kernels_avx512.c). Not a public header: nothing outside quant/kernels*.c includes it.
//
// Each per-ISA file defines one init function that overwrites the entries it speeds up in a table that
// kernels.c has already filled with the scalar entries. kernels.c calls it once (pthread_once), and only
// after checking that the CPU runs that instruction set.
#ifndef LMP_KERNELS_INTERNAL_H
#define LMP_KERNELS_INTERNAL_H

#include "runtime/kernels.h"

// fp16 bits -> float for all 65536 halves (exact; filled before any per-ISA init runs). Why a table:
// the integer kernels need one fp16 scale per block and row, and a table lookup broadcast straight
// from memory costs two loads and no vector ALU work, where F16C needs a move, a convert and a
// broadcast per scale.
extern float lmp_kernels_fp16_lut[65536];

// The super-block and codebook types (q4_K, q5_K, q6_K, iq4_nl) have their own files (kernels_kq*.c);
// each init adds its entries to a table already filled by the same ISA's main init.
void lmp_kernels_init_kq_scalar(lmp_kernels *k);
#if defined(__x86_64__)
void lmp_kernels_init_avx2(lmp_kernels *k);
void lmp_kernels_init_avx512(lmp_kernels *k);
void lmp_kernels_init_kq_avx2(lmp_kernels *k);
void lmp_kernels_init_kq_avx512(lmp_kernels *k);
// Batched integer matmul as vertical panel tiles (kernels_int_avx512.c): override the matmul entries of
// q8_0 and the q4_0 / q4_1 families set by the same ISA's main init, which they keep for the edges.
void lmp_kernels_init_int_avx512(lmp_kernels *k);
// The same as 8-row panels with vpmaddubsw / vpmaddwd (kernels_int_avx2.c), for the AVX2 table.
void lmp_kernels_init_int_avx2(lmp_kernels *k);
// 512-bit decode matvec (kernels_mv_avx512.c): overrides the q4_0 matvec entry set by the main init.
void lmp_kernels_init_mv_avx512(lmp_kernels *k);
#endif

// ---- the tile loops shared by the per-ISA files ----
// Each ISA file defines its tile kernels (CALL(R, T): R weight rows by T activation rows) and
// instantiates TILE_SET once per weight type, which yields matvec_NAME and matmul_NAME with the
// signatures of lmp_kernels. Only x86 ISA files include this part.
// Row-block size of the matmul loops: a block of weight rows stays in L2 while all token tiles pass.
#define MM_ROW_BLOCK 16

// The four tiles a weight type needs: R = 4 or 1 rows by T = TT or 1 activation rows. Matvec uses
// (4, 1) and (1, 1); matmul covers a range with (4, TT) tiles and mops up the edges with the others.
// Only these are instantiated, which keeps the compile time (and code size) small.
//
// MATVEC_STREAMS: matvec (decode, memory-bound) gives each 4-row tile the rows i, i + q, i + 2q, i + 3q
// of a stretch of 4q rows, not four adjacent rows. Each of the four row pointers then walks through q
// consecutive rows, one long sequential stream, which the hardware prefetchers follow at full speed;
// adjacent-row tiles start four new one-row streams per tile (a row is 0.3-57 KB), each too short for
// the prefetchers to ramp up. The four streams are at most MATVEC_STREAM_BYTES apart (q rows of at most
// that many bytes; stretch after stretch): streams megabytes apart were slower on the big 4096 x 14336
// shapes. Measured on the 2-core Zen 3, 110M shape, `lmpress bench` A/B interleaved against the
// previous adjacent tiles with software prefetch of the next tile: FP32 decode 38-42 -> 44-53 tok/s,
// q8_0 118-130 -> 157-171, q4_0 177-179 -> 204-214; the software prefetch is no longer needed.
#define MATVEC_STREAM_BYTES 262144
#define TILE_SET(name, TT, CALL)                                                                             \
    static void name##_4x##TT(const uint8_t *wp, size_t wrb, const uint8_t *xp, size_t xrb, float *yp,       \
                              int64_t ldy, int64_t n) {                                                      \
        CALL(4, TT);                                                                                         \
    }                                                                                                        \
    static void name##_1x##TT(const uint8_t *wp, size_t wrb, const uint8_t *xp, size_t xrb, float *yp,       \
                              int64_t ldy, int64_t n) {                                                      \
        CALL(1, TT);                                                                                         \
    }                                                                                                        \
    static void name##_4x1(const uint8_t *wp, size_t wrb, const uint8_t *xp, size_t xrb, float *yp,          \
                           int64_t ldy, int64_t n) {                                                         \
        CALL(4, 1);                                                                                          \
    }                                                                                                        \
    static void name##_1x1(const uint8_t *wp, size_t wrb, const uint8_t *xp, size_t xrb, float *yp,          \
                           int64_t ldy, int64_t n) {                                                         \
        CALL(1, 1);                                                                                          \
    }                                                                                                        \
    static void matvec_##name(const void *w, size_t wrb, const void *x, float *y, int64_t n, int64_t r0,     \
                              int64_t r1) {                                                                  \
        /* rows i, i + q, i + 2q, i + 3q per tile: four long sequential streams (see MATVEC_STREAMS) */      \
        const uint8_t *wb = w;                                                                               \
        const int64_t qmax = MATVEC_STREAM_BYTES / (int64_t)wrb > 1 ? MATVEC_STREAM_BYTES / (int64_t)wrb : 1; \
        float t4[4];                                                                                         \
        int64_t r = r0;                                                                                      \
        while (r1 - r >= 4) {                                                                                \
            const int64_t q = (r1 - r) / 4 < qmax ? (r1 - r) / 4 : qmax;                                     \
            for (int64_t i = r; i < r + q; i++) {                                                            \
                name##_4x1(wb + (size_t)i * wrb, wrb * (size_t)q, x, 0, t4, 0, n);                           \
                y[i] = t4[0], y[i + q] = t4[1], y[i + 2 * q] = t4[2], y[i + 3 * q] = t4[3];                  \
            }                                                                                                \
            r += 4 * q;                                                                                      \
        }                                                                                                    \
        for (; r < r1; r++) name##_1x1(wb + (size_t)r * wrb, wrb, x, 0, y + r, 0, n);                        \
    }                                                                                                        \
    static void matmul_##name(const void *w, size_t wrb, const void *x, size_t xrb, int64_t m, float *y,     \
                              int64_t ldy, int64_t n, int64_t r0, int64_t r1) {                              \
        for (int64_t rb = r0; rb < r1; rb += MM_ROW_BLOCK) {                                                 \
            int64_t re = rb + MM_ROW_BLOCK < r1 ? rb + MM_ROW_BLOCK : r1;                                    \
            for (int64_t t = 0; t < m; t += TT) {                                                            \
                const uint8_t *xp = (const uint8_t *)x + (size_t)t * xrb;                                    \
                for (int64_t r = rb; r < re;) {                                                              \
                    const uint8_t *wp = (const uint8_t *)w + (size_t)r * wrb;                                \
                    float *yp = y + t * ldy + r;                                                             \
                    if (re - r >= 4) {                                                                       \
                        if (m - t >= TT) name##_4x##TT(wp, wrb, xp, xrb, yp, ldy, n);                        \
                        else                                                                                 \
                            for (int64_t i = t; i < m; i++)                                                  \
                                name##_4x1(wp, wrb, xp + (size_t)(i - t) * xrb, xrb, yp + (i - t) * ldy, ldy, n); \
                        r += 4;                                                                              \
                    } else {                                                                                 \
                        if (m - t >= TT) name##_1x##TT(wp, wrb, xp, xrb, yp, ldy, n);                        \
                        else                                                                                 \
                            for (int64_t i = t; i < m; i++)                                                  \
                                name##_1x1(wp, wrb, xp + (size_t)(i - t) * xrb, xrb, yp + (i - t) * ldy, ldy, n); \
                        r += 1;                                                                              \
                    }                                                                                        \
                }                                                                                            \
            }                                                                                                \
        }                                                                                                    \
    }

#endif
