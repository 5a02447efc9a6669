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

// q4_K (bits 4) and q5_K (bits 5): R weight rows x T activation rows over nsb super-blocks. Per row and
// super-block the 6-bit scales and mins are unpacked once into lanes (d sc_j, dmin m_j); per sub-block j
// one integer dot of the unsigned codes with activation block j, converted and scaled by (d sc_j dx_j);
// the min term of all 8 sub-blocks is one FMA of the lanes (dmin m_j) with the lanes s_j, subtracted
// from the same accumulator (every lane is summed at the end).
AI void tile_k45(int bits, const uint8_t *w, size_t wrb, const uint8_t *x, size_t xrb, float *y, int64_t ldy,
                 int64_t nsb, int R, int T) {
    const size_t bb = bits == 4 ? sizeof(lmp_block_q4_K) : sizeof(lmp_block_q5_K);
    const size_t qoff = bits == 4 ? 16 : 48;
    const __m256i m4 = _mm256_set1_epi8(15), b16 = _mm256_set1_epi8(16);
    __m256 acc[4][4];
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        #pragma GCC unroll 4
        for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
    for (int64_t sb = 0; sb < nsb; sb++) {
        const lmp_block_q8_a *xb[4];
        __m256 dx[4], sx[4];
        #pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            xb[t] = (const lmp_block_q8_a *)(x + (size_t)t * xrb) + sb * 8;
            kq_act_lanes(xb[t], &dx[t], &sx[t]);
        }
        #pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const uint8_t *blk = w + (size_t)r * wrb + (size_t)sb * bb;
            uint32_t a, b, c;  // scales[0..4), [4..8), [8..12) (docs/format.md)
            memcpy(&a, blk + 4, 4);
            memcpy(&b, blk + 8, 4);
            memcpy(&c, blk + 12, 4);
            const uint32_t sc_lo = a & 0x3f3f3f3fu, sc_hi = (c & 0x0f0f0f0fu) | (((a >> 6) & 0x03030303u) << 4);
            const uint32_t m_lo = b & 0x3f3f3f3fu, m_hi = ((c >> 4) & 0x0f0f0f0fu) | (((b >> 6) & 0x03030303u) << 4);
            const __m256 scf = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_set_epi32(0, 0, (int)sc_hi, (int)sc_lo)));
            const __m256 mf = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_set_epi32(0, 0, (int)m_hi, (int)m_lo)));
            const __m256 dsc = _mm256_mul_ps(f16_bcast(blk), scf);   // d * sc_j, as the reference
            const __m256 dmm = _mm256_mul_ps(f16_bcast(blk + 2), mf); // dmin * m_j
            __m256i q[8];
            #pragma GCC unroll 4
            for (int g = 0; g < 4; g++) {
                __m256i v = _mm256_loadu_si256((const __m256i *)(blk + qoff + 32 * g));
                q[2 * g] = _mm256_and_si256(v, m4);
                q[2 * g + 1] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
            }
            if (bits == 5) {
                const __m256i hv = _mm256_loadu_si256((const __m256i *)(blk + 16));
                #pragma GCC unroll 8
                for (int j = 0; j < 8; j++) {
                    const __m256i bit = _mm256_set1_epi8((char)(1 << j));
                    __m256i on = _mm256_cmpeq_epi8(_mm256_and_si256(hv, bit), bit);
                    q[j] = _mm256_or_si256(q[j], _mm256_and_si256(on, b16));
                }
            }
            #pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                float sd[8] __attribute__((aligned(32)));
                _mm256_store_ps(sd, _mm256_mul_ps(dsc, dx[t]));
                __m256 v = acc[r][t];
                #pragma GCC unroll 8
                for (int j = 0; j < 8; j++) {
                    __m256 p = _mm256_cvtepi32_ps(dot_u8s8(q[j], _mm256_loadu_si256((const __m256i *)xb[t][j].qs)));
                    v = _mm256_fmadd_ps(p, _mm256_broadcast_ss(&sd[j]), v);
                }
                acc[r][t] = _mm256_fnmadd_ps(dmm, sx[t], v);
            }
        }
    }
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        #pragma GCC unroll 4
        for (int t = 0; t < T; t++) y[t * ldy + r] = hsum8(acc[r][t]);
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

#define CALL_Q4_K(R_, T_) tile_k45(4, wp, wrb, xp, xrb, yp, ldy, n / LMP_QK_K, R_, T_)
#define CALL_Q5_K(R_, T_) tile_k45(5, wp, wrb, xp, xrb, yp, ldy, n / LMP_QK_K, R_, T_)
#define CALL_Q6_K(R_, T_) tile_q6_K(wp, wrb, xp, xrb, yp, ldy, n / LMP_QK_K, R_, T_)
#define CALL_IQ4_NL(R_, T_) tile_iq4_nl(wp, wrb, xp, xrb, yp, ldy, n / 32, R_, T_)

TILE_SET(q4_K, 2, CALL_Q4_K)
TILE_SET(q5_K, 2, CALL_Q5_K)
TILE_SET(q6_K, 2, CALL_Q6_K)
TILE_SET(iq4_nl, 2, CALL_IQ4_NL)

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
