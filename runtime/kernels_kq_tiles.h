// kernels_kq_tiles.h - the tile kernels of the super-block types (q4_K, q5_K, q6_K) and the codebook type
// iq4_nl against q8_a activations, and their matvec/matmul instantiations (TILE_SET, kernels_internal.h).
// Not a normal header: kernels_kq_avx2.c and kernels_kq_avx512.c each include it once, after defining AI,
// hsum8, f16_bcast and dot_u8s8 (maddubs + madd on AVX2, vpdpbusd on AVX-512 VNNI), so both tables share
// loops, accumulation order and test tolerances.
//
// Why q8_a (blocks of 32 with their own scale) and not ggml's Q8_K (one scale per 256): one activation block
// is exactly one q4_K/q5_K sub-block, so a sub-block's float step is (d sc_j dx_k) * isum - (dmin m_j) s_k
// with the stored block sum s_k, and the activations keep the finer per-32 scale of the other 4-bit types.

// The 8 activation blocks of super-block sb as lanes: their scales d and their scaled sums s.
AI void kq_act_lanes(const lmp_block_q8_a *xb, __m256 *dx, __m256 *sx) {
    *dx = _mm256_setr_ps(xb[0].d, xb[1].d, xb[2].d, xb[3].d, xb[4].d, xb[5].d, xb[6].d, xb[7].d);
    *sx = _mm256_setr_ps(xb[0].s, xb[1].s, xb[2].s, xb[3].s, xb[4].s, xb[5].s, xb[6].s, xb[7].s);
}

// The 6-bit scales and mins of one q4_K / q5_K super-block as float lanes: dsc = d * sc_j, dmm = dmin * m_j
// (j = 0..7, the reference's products).
AI void k45_scales(const uint8_t *blk, __m256 *dsc, __m256 *dmm) {
    uint32_t a, b, c;  // scales[0..4), [4..8), [8..12) (docs/format.md)
    memcpy(&a, blk + 4, 4);
    memcpy(&b, blk + 8, 4);
    memcpy(&c, blk + 12, 4);
    const uint32_t sc_lo = a & 0x3f3f3f3fu, sc_hi = (c & 0x0f0f0f0fu) | (((a >> 6) & 0x03030303u) << 4);
    const uint32_t m_lo = b & 0x3f3f3f3fu, m_hi = ((c >> 4) & 0x0f0f0f0fu) | (((b >> 6) & 0x03030303u) << 4);
    const __m128i sm = _mm_set_epi32((int)m_hi, (int)m_lo, (int)sc_hi, (int)sc_lo);  // bytes sc0..7, m0..7
    *dsc = _mm256_mul_ps(f16_bcast(blk), _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(sm)));
    *dmm = _mm256_mul_ps(f16_bcast(blk + 2), _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(sm, 8))));
}

// q5_K: the fifth bit of sub-block j (bit j of qh[l]) moved to bit 4 of each byte; a 16-bit shift cannot mix
// bytes here because only bit 4 of each byte is kept and it comes from bit j of the same byte.
AI __m256i k5_hibit(__m256i hv, int j) {
    const __m256i b16 = _mm256_set1_epi8(16);
    if (j < 4) return _mm256_and_si256(_mm256_slli_epi16(hv, 4 - j), b16);
    if (j == 4) return _mm256_and_si256(hv, b16);
    return _mm256_and_si256(_mm256_srli_epi16(hv, j - 4), b16);
}

// q4_K (bits 4) and q5_K (bits 5): R weight rows x T activation rows over nsb super-blocks. Per row and
// super-block the scales are unpacked once into lanes (d sc_j, dmin m_j) and the eight sub-block factors
// d sc_j dx_j stored for broadcasting; the min term of all 8 sub-blocks is one FMA of the lanes dmin m_j with
// the activation lanes s_j. Then per group g (32 bytes of codes: sub-blocks 2g and 2g + 1) and row, two
// integer dots with activation blocks 2g and 2g + 1, converted and scaled by their factor. The rows are
// interleaved at this sub-block step (not row after row), so the R FMA chains overlap; with T = 1 each row
// has a second accumulator (sub-blocks 2g + 1), halving the chain. lanes: the activation lanes (dx, then s:
// 16 floats per super-block) precomputed by the matvec for its one activation row, or NULL (built here).
AI void tile_k45(int bits, const uint8_t *w, size_t wrb, const uint8_t *x, size_t xrb, float *y, int64_t ldy,
                 int64_t nsb, int R, int T, const float *lanes) {
    const size_t bb = bits == 4 ? sizeof(lmp_block_q4_K) : sizeof(lmp_block_q5_K);
    const size_t qoff = bits == 4 ? 16 : 48;
    const __m256i m4 = _mm256_set1_epi8(15);
    __m256 acc[4][4], acc2[4];
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        acc2[r] = _mm256_setzero_ps();
        #pragma GCC unroll 4
        for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
    }
    for (int64_t sb = 0; sb < nsb; sb++) {
        const lmp_block_q8_a *xb[4];
        __m256 dx[4], sx[4];
        #pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            xb[t] = (const lmp_block_q8_a *)(x + (size_t)t * xrb) + sb * 8;
            if (T == 1 && lanes) {
                dx[t] = _mm256_load_ps(lanes + 16 * sb);
                sx[t] = _mm256_load_ps(lanes + 16 * sb + 8);
            } else {
                kq_act_lanes(xb[t], &dx[t], &sx[t]);
            }
        }
        float sd[4][4][8] __attribute__((aligned(32)));
        __m256i hv[4];
        #pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const uint8_t *blk = w + (size_t)r * wrb + (size_t)sb * bb;
            __m256 dsc, dmm;
            k45_scales(blk, &dsc, &dmm);
            if (bits == 5) hv[r] = _mm256_loadu_si256((const __m256i *)(blk + 16));
            #pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                _mm256_store_ps(sd[r][t], _mm256_mul_ps(dsc, dx[t]));
                acc[r][t] = _mm256_fnmadd_ps(dmm, sx[t], acc[r][t]);
            }
        }
        #pragma GCC unroll 4
        for (int g = 0; g < 4; g++) {
            __m256i xa[4], xc[4];
            #pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                xa[t] = _mm256_loadu_si256((const __m256i *)xb[t][2 * g].qs);
                xc[t] = _mm256_loadu_si256((const __m256i *)xb[t][2 * g + 1].qs);
            }
            #pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                const uint8_t *blk = w + (size_t)r * wrb + (size_t)sb * bb;
                const __m256i v = _mm256_loadu_si256((const __m256i *)(blk + qoff + 32 * g));
                __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
                if (bits == 5) {
                    lo = _mm256_or_si256(lo, k5_hibit(hv[r], 2 * g));
                    hi = _mm256_or_si256(hi, k5_hibit(hv[r], 2 * g + 1));
                }
                #pragma GCC unroll 4
                for (int t = 0; t < T; t++) {
                    const __m256 pa = _mm256_cvtepi32_ps(dot_u8s8(lo, xa[t]));
                    const __m256 pb = _mm256_cvtepi32_ps(dot_u8s8(hi, xc[t]));
                    acc[r][t] = _mm256_fmadd_ps(pa, _mm256_broadcast_ss(&sd[r][t][2 * g]), acc[r][t]);
                    if (T == 1) acc2[r] = _mm256_fmadd_ps(pb, _mm256_broadcast_ss(&sd[r][t][2 * g + 1]), acc2[r]);
                    else acc[r][t] = _mm256_fmadd_ps(pb, _mm256_broadcast_ss(&sd[r][t][2 * g + 1]), acc[r][t]);
                }
            }
        }
    }
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        #pragma GCC unroll 4
        for (int t = 0; t < T; t++) y[t * ldy + r] = hsum8(T == 1 ? _mm256_add_ps(acc[r][t], acc2[r]) : acc[r][t]);
}

// q6_K: per activation block k (sub-blocks 2k, 2k + 1), dot of the unsigned codes q (0..63) minus the dot of
// the constant 32 (computed once per activation block for all R rows) = the dot of q - 32; lanes 0-3 are
// sub-block 2k, lanes 4-7 sub-block 2k + 1, multiplied by their int8 scales in int32 (exact: |lane| <=
// 4 * 32 * 127 * 128 < 2^24), converted and scaled by d dx.
AI void tile_q6_K(const uint8_t *w, size_t wrb, const uint8_t *x, size_t xrb, float *y, int64_t ldy, int64_t nsb,
                  int R, int T) {
    const __m256i m4 = _mm256_set1_epi8(15), m3 = _mm256_set1_epi8(3), c32 = _mm256_set1_epi8(32);
    __m256 acc[4][4];
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        #pragma GCC unroll 4
        for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
    for (int64_t sb = 0; sb < nsb; sb++) {
        const lmp_block_q8_a *xb[4];
        #pragma GCC unroll 4
        for (int t = 0; t < T; t++) xb[t] = (const lmp_block_q8_a *)(x + (size_t)t * xrb) + sb * 8;
        __m128i sc16[4];
        float dr[4];
        #pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const uint8_t *blk = w + (size_t)r * wrb + (size_t)sb * sizeof(lmp_block_q6_K);
            sc16[r] = _mm_loadu_si128((const __m128i *)(blk + 192));
            uint16_t h;
            memcpy(&h, blk + 208, 2);
            dr[r] = lmp_kernels_fp16_lut[h];
        }
        #pragma GCC unroll 8
        for (int k = 0; k < 8; k++) {
            const int hf = k / 4, s = k % 4;
            __m256i xv[4], x32[4];
            #pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                xv[t] = _mm256_loadu_si256((const __m256i *)xb[t][k].qs);
                x32[t] = dot_u8s8(c32, xv[t]);
            }
            const __m128i pick = _mm_setr_epi8((char)(2 * k), (char)(2 * k), (char)(2 * k), (char)(2 * k), (char)(2 * k + 1),
                                               (char)(2 * k + 1), (char)(2 * k + 1), (char)(2 * k + 1), 0, 0, 0, 0, 0, 0, 0, 0);
            #pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                const uint8_t *blk = w + (size_t)r * wrb + (size_t)sb * sizeof(lmp_block_q6_K);
                __m256i lo = _mm256_loadu_si256((const __m256i *)(blk + 64 * hf + 32 * (s & 1)));
                __m256i hi = _mm256_loadu_si256((const __m256i *)(blk + 128 + 32 * hf));
                lo = s < 2 ? _mm256_and_si256(lo, m4) : _mm256_and_si256(_mm256_srli_epi16(lo, 4), m4);
                hi = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hi, 2 * s), m3), 4);
                const __m256i q = _mm256_or_si256(lo, hi);
                const __m256i scv = _mm256_cvtepi8_epi32(_mm_shuffle_epi8(sc16[r], pick));
                #pragma GCC unroll 4
                for (int t = 0; t < T; t++) {
                    __m256i lanes = _mm256_mullo_epi32(_mm256_sub_epi32(dot_u8s8(q, xv[t]), x32[t]), scv);
                    acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lanes), _mm256_set1_ps(dr[r] * xb[t][k].d), acc[r][t]);
                }
            }
        }
    }
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        #pragma GCC unroll 4
        for (int t = 0; t < T; t++) y[t * ldy + r] = hsum8(acc[r][t]);
}

// iq4_nl: the nibbles of a block (as q4_0: low nibbles elements 0..15, high 16..31) index the codebook with
// one byte shuffle; the signed values times the signed activations as |v| * sign(x, v) (|v| <= 127, so
// AVX2's 16-bit pair sums cannot saturate), scaled by d dx per block.
AI void tile_iq4_nl(const uint8_t *w, size_t wrb, const uint8_t *x, size_t xrb, float *y, int64_t ldy, int64_t nb,
                    int R, int T) {
    const __m256i m4 = _mm256_set1_epi8(15);
    const __m256i book = _mm256_setr_epi8(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
                                          -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113);
    __m256 acc[4][4];
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        #pragma GCC unroll 4
        for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const lmp_block_q8_a *xb[4];
        __m256i xv[4];
        #pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            xb[t] = (const lmp_block_q8_a *)(x + (size_t)t * xrb) + b;
            xv[t] = _mm256_loadu_si256((const __m256i *)xb[t]->qs);
        }
        #pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const uint8_t *blk = w + (size_t)r * wrb + (size_t)b * sizeof(lmp_block_iq4_nl);
            __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(blk + 2)));
            __m256i nib = _mm256_and_si256(_mm256_srlv_epi64(v, _mm256_set_epi64x(4, 4, 0, 0)), m4);
            __m256i val = _mm256_shuffle_epi8(book, nib);
            __m256i aval = _mm256_abs_epi8(val);
            uint16_t h;
            memcpy(&h, blk, 2);
            const float d = lmp_kernels_fp16_lut[h];
            #pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                __m256 p = _mm256_cvtepi32_ps(dot_u8s8(aval, _mm256_sign_epi8(xv[t], val)));
                acc[r][t] = _mm256_fmadd_ps(p, _mm256_set1_ps(d * xb[t]->d), acc[r][t]);
            }
        }
    }
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        #pragma GCC unroll 4
        for (int t = 0; t < T; t++) y[t * ldy + r] = hsum8(acc[r][t]);
}

#define CALL_Q4_K(R_, T_) tile_k45(4, wp, wrb, xp, xrb, yp, ldy, n / LMP_QK_K, R_, T_, lanes)
#define CALL_Q5_K(R_, T_) tile_k45(5, wp, wrb, xp, xrb, yp, ldy, n / LMP_QK_K, R_, T_, lanes)
#define CALL_Q6_K(R_, T_) ((void)lanes, tile_q6_K(wp, wrb, xp, xrb, yp, ldy, n / LMP_QK_K, R_, T_))
#define CALL_IQ4_NL(R_, T_) ((void)lanes, tile_iq4_nl(wp, wrb, xp, xrb, yp, ldy, n / 32, R_, T_))

// Activation lanes of the matvec's one activation row: per super-block the 8 block scales d, then the 8
// scaled sums s (what kq_act_lanes builds per tile), so that the tiles load them instead of rebuilding them.
// Rows longer than KQ_LANES_MAX_SB super-blocks leave it to the tiles.
#define KQ_LANES_MAX_SB 256
AI const float *kq_lanes_fill(const void *x, int64_t n, float *lanes) {
    const int64_t nsb = n / LMP_QK_K;
    if (nsb > KQ_LANES_MAX_SB) return NULL;
    for (int64_t sb = 0; sb < nsb; sb++) {
        __m256 dx, sx;
        kq_act_lanes((const lmp_block_q8_a *)x + sb * 8, &dx, &sx);
        _mm256_store_ps(lanes + 16 * sb, dx);
        _mm256_store_ps(lanes + 16 * sb + 8, sx);
    }
    return lanes;
}

// TILE_SET (kernels_internal.h) with the activation lanes passed to the tiles: the same matvec streams and
// matmul blocking; the matvec fills the lanes once per call (super-block types only, use_lanes).
#define KQ_TILE_SET(name, TT, CALL, use_lanes)                                                               \
    static void name##_4x##TT(const uint8_t *wp, size_t wrb, const uint8_t *xp, size_t xrb, float *yp,       \
                              int64_t ldy, int64_t n, const float *lanes) {                                  \
        CALL(4, TT);                                                                                         \
    }                                                                                                        \
    static void name##_1x##TT(const uint8_t *wp, size_t wrb, const uint8_t *xp, size_t xrb, float *yp,       \
                              int64_t ldy, int64_t n, const float *lanes) {                                  \
        CALL(1, TT);                                                                                         \
    }                                                                                                        \
    static void name##_4x1(const uint8_t *wp, size_t wrb, const uint8_t *xp, size_t xrb, float *yp,          \
                           int64_t ldy, int64_t n, const float *lanes) {                                     \
        CALL(4, 1);                                                                                          \
    }                                                                                                        \
    static void name##_1x1(const uint8_t *wp, size_t wrb, const uint8_t *xp, size_t xrb, float *yp,          \
                           int64_t ldy, int64_t n, const float *lanes) {                                     \
        CALL(1, 1);                                                                                          \
    }                                                                                                        \
    static void matvec_##name(const void *w, size_t wrb, const void *x, float *y, int64_t n, int64_t r0,     \
                              int64_t r1) {                                                                  \
        float lbuf[16 * KQ_LANES_MAX_SB] __attribute__((aligned(32)));                                       \
        const float *lanes = (use_lanes) ? kq_lanes_fill(x, n, lbuf) : NULL;                                 \
        const uint8_t *wb = w;                                                                               \
        const int64_t qmax = MATVEC_STREAM_BYTES / (int64_t)wrb > 1 ? MATVEC_STREAM_BYTES / (int64_t)wrb : 1; \
        float t4[4];                                                                                         \
        int64_t r = r0;                                                                                      \
        while (r1 - r >= 4) {                                                                                \
            const int64_t q = (r1 - r) / 4 < qmax ? (r1 - r) / 4 : qmax;                                     \
            for (int64_t i = r; i < r + q; i++) {                                                            \
                name##_4x1(wb + (size_t)i * wrb, wrb * (size_t)q, x, 0, t4, 0, n, lanes);                    \
                y[i] = t4[0], y[i + q] = t4[1], y[i + 2 * q] = t4[2], y[i + 3 * q] = t4[3];                  \
            }                                                                                                \
            r += 4 * q;                                                                                      \
        }                                                                                                    \
        for (; r < r1; r++) name##_1x1(wb + (size_t)r * wrb, wrb, x, 0, y + r, 0, n, lanes);                 \
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
                    const int R4 = re - r >= 4;                                                              \
                    if (m - t >= TT) {                                                                       \
                        if (R4) name##_4x##TT(wp, wrb, xp, xrb, yp, ldy, n, NULL);                           \
                        else name##_1x##TT(wp, wrb, xp, xrb, yp, ldy, n, NULL);                              \
                    } else {                                                                                 \
                        for (int64_t i = t; i < m; i++) {                                                    \
                            if (R4) name##_4x1(wp, wrb, xp + (size_t)(i - t) * xrb, xrb, yp + (i - t) * ldy, ldy, n, NULL); \
                            else name##_1x1(wp, wrb, xp + (size_t)(i - t) * xrb, xrb, yp + (i - t) * ldy, ldy, n, NULL); \
                        }                                                                                    \
                    }                                                                                        \
                    r += R4 ? 4 : 1;                                                                         \
                }                                                                                            \
            }                                                                                                \
        }                                                                                                    \
    }

KQ_TILE_SET(q4_K, 2, CALL_Q4_K, 1)
KQ_TILE_SET(q5_K, 2, CALL_Q5_K, 1)
KQ_TILE_SET(q6_K, 2, CALL_Q6_K, 0)
KQ_TILE_SET(iq4_nl, 2, CALL_IQ4_NL, 0)

// The entries this file adds to a table.
AI void kq_tiles_register(lmp_kernels *k) {
    k->matvec[LMP_DTYPE_Q4_K] = matvec_q4_K;
    k->matvec[LMP_DTYPE_Q5_K] = matvec_q5_K;
    k->matvec[LMP_DTYPE_Q6_K] = matvec_q6_K;
    k->matvec[LMP_DTYPE_IQ4_NL] = matvec_iq4_nl;
    k->matmul[LMP_DTYPE_Q4_K] = matmul_q4_K;
    k->matmul[LMP_DTYPE_Q5_K] = matmul_q5_K;
    k->matmul[LMP_DTYPE_Q6_K] = matmul_q6_K;
    k->matmul[LMP_DTYPE_IQ4_NL] = matmul_iq4_nl;
}
