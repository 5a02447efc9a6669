// kernels_int_tiles.h - the integer tile kernels (q8_0 against q16_a activations, the q4 family against
// q8_a) and their matvec/matmul instantiations, shared by the x86 ISA files. Not a normal header: each of
// kernels_avx2.c and kernels_avx512.c includes it once, after defining AI, hsum8, f16_bcast,
// lmp_kernels_fp16_lut access, dot_u8s8 and dot_s16 (the instructions that differ:
// maddubs + madd and two madd on AVX2, vpdpbusd and two vpdpwssd on AVX-512 VNNI), so both tables share
// loops, accumulation order and hence test tolerances. Needs TILE_SET from kernels_internal.h.
// q8_0 x q16_a: the 32 weights of a block sign-extended to two vectors of 16 int16 (once per row, reused
// for the T activation rows), dot_s16 with the activation's two vectors of 16 int16 gives 8 int32 lanes.
// A lane sums 4 products of at most 128 * 32767, so it stays below 2^24 in magnitude.
AI void tile_q8_0(const uint8_t *w, size_t wrb, const uint8_t *x, size_t xrb, float *y, int64_t ldy, int64_t nb,
                  int R, int T) {
    __m256 acc[4][4];
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        #pragma GCC unroll 4
        for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const lmp_block_q16_a *xb[4];
        #pragma GCC unroll 4
        for (int t = 0; t < T; t++) xb[t] = (const lmp_block_q16_a *)(x + (size_t)t * xrb) + b;
        #pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const uint8_t *wb = w + (size_t)r * wrb + (size_t)b * sizeof(lmp_block_q8_0);
            __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(wb + 2)));
            __m256i w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(wb + 18)));
            __m256 dw = f16_bcast(wb);
            #pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                __m256i x0 = _mm256_loadu_si256((const __m256i *)xb[t]->qs);
                __m256i x1 = _mm256_loadu_si256((const __m256i *)(xb[t]->qs + 16));
                __m256 s = _mm256_cvtepi32_ps(dot_s16(w0, x0, w1, x1));
                acc[r][t] = _mm256_fmadd_ps(s, _mm256_mul_ps(dw, _mm256_broadcast_ss(&xb[t]->d)), acc[r][t]);
            }
        }
    }
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        #pragma GCC unroll 4
        for (int t = 0; t < T; t++) y[t * ldy + r] = hsum8(acc[r][t]);
}

// ---- integer kernels: 4-bit families x q8_a ----

// The G/32 vectors of 32 nibbles (0..15, as u8) of one 4-bit block, in element order: vector k holds
// elements [32k, 32k + 32), which pair with activation block k of the group.
AI void q4_unpack(const uint8_t *qs, int G, __m256i *q) {
    const __m256i m4 = _mm256_set1_epi8(15);
    if (G == 32) {
        // low nibbles of qs[0..16) are elements 0..15, high nibbles 16..31: shift the upper lane by 4.
        __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs));
        q[0] = _mm256_and_si256(_mm256_srlv_epi64(v, _mm256_set_epi64x(4, 4, 0, 0)), m4);
    } else if (G == 64) {
        __m256i v = _mm256_loadu_si256((const __m256i *)qs);
        q[0] = _mm256_and_si256(v, m4);
        q[1] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
    } else {
        __m256i v0 = _mm256_loadu_si256((const __m256i *)qs), v1 = _mm256_loadu_si256((const __m256i *)(qs + 32));
        q[0] = _mm256_and_si256(v0, m4);
        q[1] = _mm256_and_si256(v1, m4);
        q[2] = _mm256_and_si256(_mm256_srli_epi16(v0, 4), m4);
        q[3] = _mm256_and_si256(_mm256_srli_epi16(v1, 4), m4);
    }
}

// R rows x T activation rows over nbw weight blocks of group G. Symmetric (q4_0 family):
//   sum_k dw * (dx_k * isum_k - 8 s_k), isum over unsigned nibbles, computed per lane as
//   dx_k * lane_isum - s_k (the -s_k in each of the 8 lanes adds up to -8 s_k).
// Asymmetric (q4_1 family): sum_k dw * dx_k * isum_k + mw * s_k, the min term per lane as
//   mw * (sum_k s_k) / 8 (exact power-of-two scaling), kept in separate accumulators when registers allow.
AI void tile_q4(int G, int asym, const uint8_t *w, size_t wrb, const uint8_t *x, size_t xrb, float *y, int64_t ldy,
                int64_t nbw, int R, int T) {
    const int K = G / 32;
    const size_t hdr = asym ? 4 : 2, bb = hdr + (size_t)G / 2;
    const int sep = asym && R * T <= 4;  // separate accumulators for the min term
    __m256 acc[4][4], accm[4][4];
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        #pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            acc[r][t] = _mm256_setzero_ps();
            accm[r][t] = _mm256_setzero_ps();
        }
    for (int64_t B = 0; B < nbw; B++) {
        const lmp_block_q8_a *xb[4];
        __m256 sx[4];
        #pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            xb[t] = (const lmp_block_q8_a *)(x + (size_t)t * xrb) + B * K;
            float s = xb[t][0].s;
            #pragma GCC unroll 4
            for (int k = 1; k < K; k++) s += xb[t][k].s;
            sx[t] = _mm256_set1_ps(asym ? s * 0.125f : s);
        }
        #pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const uint8_t *wb = w + (size_t)r * wrb + (size_t)B * bb;
            __m256i q[4];
            q4_unpack(wb + hdr, G, q);
            __m256 dw = f16_bcast(wb);
            __m256 mw = asym ? f16_bcast(wb + 2) : dw;
            #pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                __m256 v = _mm256_cvtepi32_ps(dot_u8s8(q[0], _mm256_loadu_si256((const __m256i *)xb[t][0].qs)));
                __m256 dx0 = _mm256_broadcast_ss(&xb[t][0].d);
                v = asym ? _mm256_mul_ps(v, dx0) : _mm256_fmsub_ps(v, dx0, sx[t]);
                #pragma GCC unroll 4
                for (int k = 1; k < K; k++) {
                    __m256 vk = _mm256_cvtepi32_ps(dot_u8s8(q[k], _mm256_loadu_si256((const __m256i *)xb[t][k].qs)));
                    v = _mm256_fmadd_ps(vk, _mm256_broadcast_ss(&xb[t][k].d), v);
                }
                acc[r][t] = _mm256_fmadd_ps(v, dw, acc[r][t]);
                if (asym) {
                    if (sep) accm[r][t] = _mm256_fmadd_ps(mw, sx[t], accm[r][t]);
                    else acc[r][t] = _mm256_fmadd_ps(mw, sx[t], acc[r][t]);
                }
            }
        }
    }
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        #pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            __m256 v = acc[r][t];
            if (sep) v = _mm256_add_ps(v, accm[r][t]);
            y[t * ldy + r] = hsum8(v);
        }
}

// Tiles take n in elements; the integer tiles want the number of weight blocks.
#define CALL_Q8_0(R_, T_) tile_q8_0(wp, wrb, xp, xrb, yp, ldy, n / 32, R_, T_)
#define CALL_Q4_0(R_, T_) tile_q4(32, 0, wp, wrb, xp, xrb, yp, ldy, n / 32, R_, T_)
#define CALL_Q4_1(R_, T_) tile_q4(32, 1, wp, wrb, xp, xrb, yp, ldy, n / 32, R_, T_)
#define CALL_Q4_0_G64(R_, T_) tile_q4(64, 0, wp, wrb, xp, xrb, yp, ldy, n / 64, R_, T_)
#define CALL_Q4_0_G128(R_, T_) tile_q4(128, 0, wp, wrb, xp, xrb, yp, ldy, n / 128, R_, T_)
#define CALL_Q4_1_G64(R_, T_) tile_q4(64, 1, wp, wrb, xp, xrb, yp, ldy, n / 64, R_, T_)
#define CALL_Q4_1_G128(R_, T_) tile_q4(128, 1, wp, wrb, xp, xrb, yp, ldy, n / 128, R_, T_)

TILE_SET(q8_0, 2, CALL_Q8_0)
TILE_SET(q4_0, 2, CALL_Q4_0)
TILE_SET(q4_1, 2, CALL_Q4_1)
TILE_SET(q4_0_g64, 2, CALL_Q4_0_G64)
TILE_SET(q4_0_g128, 2, CALL_Q4_0_G128)
TILE_SET(q4_1_g64, 2, CALL_Q4_1_G64)
TILE_SET(q4_1_g128, 2, CALL_Q4_1_G128)
