// sgemm_tiles.h - the blocked sgemm driver, instantiated once per ISA file (sgemm.c for portable C,
// sgemm_avx2.c, sgemm_avx512.c). Not a public header: only runtime/sgemm*.c include it.
//
// The including file defines
//   SG_MR, SG_NR          the microkernel's tile: SG_MR rows of C by SG_NR columns
//   SG_KC, SG_MC, SG_NC   the cache blocks: op(B) is packed SG_KC x SG_NC at a time (L3), op(A) SG_MC x SG_KC
//                         (L2); one SG_KC x SG_NR micro-panel of B is reused by SG_MC / SG_MR tiles (L1)
//   SG_KERNEL(kc, a, b, c, ldc, alpha, beta)
//                         C(SG_MR, SG_NR) = alpha * a b + beta * C (beta == 0: C not read), a: kc x SG_MR
//                         packed (a[p * SG_MR + i]), b: kc x SG_NR packed (b[p * SG_NR + j]), 64-byte aligned
//   SG_FUNC               the name of the driver it defines (the signature of lmp_sgemm)
// and includes this file once. Packed panels are zero-padded at the edges of m and n; edge tiles are
// computed into a local tile and added into C element by element.
#include <stddef.h>
#include <string.h>
#if defined(__x86_64__)
#include <xmmintrin.h>
#endif
#if defined(__AVX__)
#include <immintrin.h>
#endif

// A per-thread buffer of at least `floats` floats (64-byte aligned, grows, freed at thread exit), or NULL
// when out of memory (sgemm.c).
float *lmp_sgemm_scratch(size_t floats);

#define SG_ROUND(x, r) (((x) + (r) - 1) / (r) * (r))

// dst[c * ldd + r] = src[r * lds + c] for r < rows, c < cols (a transposing copy), in 8 x 8 blocks where AVX
// is compiled in (the weight panels' pack was ~20 % of the tiles' time with 4 x 4 blocks), else 4 x 4.
static void sg_copy_t(const float *src, long lds, int rows, int cols, float *dst, int ldd) {
    int r = 0;
#if defined(__AVX__)
    for (; r + 8 <= rows; r += 8) {
        const float *s = src + (long)r * lds;
        int c = 0;
        for (; c + 8 <= cols; c += 8) {
            const __m256 r0 = _mm256_loadu_ps(s + c), r1 = _mm256_loadu_ps(s + lds + c),
                         r2 = _mm256_loadu_ps(s + 2 * lds + c), r3 = _mm256_loadu_ps(s + 3 * lds + c),
                         r4 = _mm256_loadu_ps(s + 4 * lds + c), r5 = _mm256_loadu_ps(s + 5 * lds + c),
                         r6 = _mm256_loadu_ps(s + 6 * lds + c), r7 = _mm256_loadu_ps(s + 7 * lds + c);
            const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
            const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
            const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
            const __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
            const __m256 u0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
            const __m256 u1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
            const __m256 u2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
            const __m256 u3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
            const __m256 u4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
            const __m256 u5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
            const __m256 u6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
            const __m256 u7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
            // column c + j of rows r .. r + 7
            _mm256_storeu_ps(dst + (long)c * ldd + r, _mm256_permute2f128_ps(u0, u4, 0x20));
            _mm256_storeu_ps(dst + (long)(c + 1) * ldd + r, _mm256_permute2f128_ps(u1, u5, 0x20));
            _mm256_storeu_ps(dst + (long)(c + 2) * ldd + r, _mm256_permute2f128_ps(u2, u6, 0x20));
            _mm256_storeu_ps(dst + (long)(c + 3) * ldd + r, _mm256_permute2f128_ps(u3, u7, 0x20));
            _mm256_storeu_ps(dst + (long)(c + 4) * ldd + r, _mm256_permute2f128_ps(u0, u4, 0x31));
            _mm256_storeu_ps(dst + (long)(c + 5) * ldd + r, _mm256_permute2f128_ps(u1, u5, 0x31));
            _mm256_storeu_ps(dst + (long)(c + 6) * ldd + r, _mm256_permute2f128_ps(u2, u6, 0x31));
            _mm256_storeu_ps(dst + (long)(c + 7) * ldd + r, _mm256_permute2f128_ps(u3, u7, 0x31));
        }
        for (; c < cols; c++)
            for (int i = 0; i < 8; i++) dst[(long)c * ldd + r + i] = s[(long)i * lds + c];
    }
#endif
#if defined(__x86_64__)
    for (; r + 4 <= rows; r += 4) {
        const float *s = src + (long)r * lds;
        int c = 0;
        for (; c + 4 <= cols; c += 4) {
            __m128 r0 = _mm_loadu_ps(s + c), r1 = _mm_loadu_ps(s + lds + c), r2 = _mm_loadu_ps(s + 2 * lds + c),
                   r3 = _mm_loadu_ps(s + 3 * lds + c);
            _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
            _mm_storeu_ps(dst + (long)c * ldd + r, r0);
            _mm_storeu_ps(dst + (long)(c + 1) * ldd + r, r1);
            _mm_storeu_ps(dst + (long)(c + 2) * ldd + r, r2);
            _mm_storeu_ps(dst + (long)(c + 3) * ldd + r, r3);
        }
        for (; c < cols; c++)
            for (int i = 0; i < 4; i++) dst[(long)c * ldd + r + i] = s[(long)i * lds + c];
    }
#endif
    for (; r < rows; r++)
        for (int c = 0; c < cols; c++) dst[(long)c * ldd + r] = src[(long)r * lds + c];
}

// Packs op(X)(rows r0 .. r0 + nr, cols p0 .. p0 + kc) into panels of W rows: panel q holds rows
// r0 + q*W .. as dst[q * kc * W + p * W + i]; rows past nr are zero. trans: op(X)(r, p) = X[p * ld + r],
// else X[r * ld + p].
static void sg_pack(const float *X, long ld, int trans, int r0, int nr, int p0, int kc, int W, float *dst) {
    for (int q = 0; q * W < nr; q++) {
        float *d = dst + (size_t)q * kc * W;
        int w = nr - q * W < W ? nr - q * W : W;
        int r = r0 + q * W;
        if (w < W) memset(d, 0, (size_t)kc * W * sizeof(float));
        if (trans) {
            const float *s = X + (long)p0 * ld + r;
            for (int p = 0; p < kc; p++) memcpy(d + (size_t)p * W, s + (long)p * ld, (size_t)w * sizeof(float));
        } else {
            sg_copy_t(X + (long)r * ld + p0, ld, w, kc, d, W);
        }
    }
}

// Prefetches (into L2) part `part` of `parts` of the source lines that sg_pack(X, ld, trans, r0, nr, p0, kc, ...)
// reads: while one packed panel is multiplied, the next panel's weights arrive from memory, instead of
// packing every panel up front with the cores waiting on DRAM.
// (an asm statement: with GCC 12 at -O2 and -O3 the _mm_prefetch calls of this helper never reached the
// object file; objdump showed no prefetcht1)
#if defined(__x86_64__)
#define SG_PREFETCH_L2(p) __asm__ volatile("prefetcht1 %0" : : "m"(*(const char *)(p)))
#endif
static inline void sg_prefetch_src(const float *X, long ld, int trans, int r0, int nr, int p0, int kc, int part,
                                   int parts) {
#if defined(__x86_64__)
    // rows of the source: trans ? kc rows (p) of nr floats : nr rows (r) of kc floats
    const int rows = trans ? kc : nr, len = trans ? nr : kc;
    const int a = (int)((long)rows * part / parts), b = (int)((long)rows * (part + 1) / parts);
    for (int q = a; q < b; q++) {
        const char *s = (const char *)(trans ? X + (long)(p0 + q) * ld + r0 : X + (long)(r0 + q) * ld + p0);
        for (int off = 0; off < len * (int)sizeof(float); off += 64) SG_PREFETCH_L2(s + off);
        SG_PREFETCH_L2(s + len * (int)sizeof(float) - 1);
    }
#else
    (void)X, (void)ld, (void)trans, (void)r0, (void)nr, (void)p0, (void)kc, (void)part, (void)parts;
#endif
}

void SG_FUNC(int ta, int tb, int m, int n, int k, float alpha, const float *A, int lda, const float *B, int ldb,
             float beta, float *C, int ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0 || alpha == 0.0f) {
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) C[(long)i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[(long)i * ldc + j];
        return;
    }
    const int kcmax = k < SG_KC ? k : SG_KC;
    const int ncmax = SG_ROUND(n < SG_NC ? n : SG_NC, SG_NR), mcmax = SG_ROUND(m < SG_MC ? m : SG_MC, SG_MR);
    const size_t a_floats = (size_t)mcmax * kcmax, b_floats = (size_t)ncmax * kcmax;
    float *buf = lmp_sgemm_scratch(a_floats + b_floats + 16);
    if (!buf) {  // out of memory for the panels: the reference still gives the result
        lmp_sgemm_ref(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    float *Ap = buf, *Bp = buf + SG_ROUND(a_floats, 16);
    _Alignas(64) float tile[SG_MR * SG_NR];
    // op(B)(p, j): tb ? B[j * ldb + p] : B[p * ldb + j]; packed as panels of columns = op(B)^T's rows.
    for (int jc = 0; jc < n; jc += SG_NC) {
        const int nc = n - jc < SG_NC ? n - jc : SG_NC;
        for (int pc = 0; pc < k; pc += SG_KC) {
            const int kc = k - pc < SG_KC ? k - pc : SG_KC;
            const float bt = pc == 0 ? beta : 1.0f;
            for (int ic = 0; ic < m; ic += SG_MC) {
                const int mc = m - ic < SG_MC ? m - ic : SG_MC, n_ir = (mc + SG_MR - 1) / SG_MR;
                sg_pack(A, lda, ta, ic, mc, pc, kc, SG_MR, Ap);
                for (int jr = 0; jr < nc; jr += SG_NR) {
                    const int nr = nc - jr < SG_NR ? nc - jr : SG_NR;
                    float *bp = Bp + (size_t)(jr / SG_NR) * kc * SG_NR;
                    // op(B)'s micro-panel jr is packed when the first row block (ic == 0) reaches it, the same
                    // panels as one pack of the whole block, then reused by the later row blocks
                    if (ic == 0) {
                        if (jr == 0) sg_prefetch_src(B, ldb, !tb, jc, nr, pc, kc, 0, 1);
                        sg_pack(B, ldb, !tb, jc + jr, nr, pc, kc, SG_NR, bp);
                    }
                    const int jn = jr + SG_NR, nrn = nc - jn < SG_NR ? nc - jn : SG_NR;
                    for (int ir = 0; ir < mc; ir += SG_MR) {
                        const int mr = mc - ir < SG_MR ? mc - ir : SG_MR;
                        if (ic == 0 && jn < nc) sg_prefetch_src(B, ldb, !tb, jc + jn, nrn, pc, kc, ir / SG_MR, n_ir);
                        const float *ap = Ap + (size_t)(ir / SG_MR) * kc * SG_MR;
                        float *c = C + (long)(ic + ir) * ldc + jc + jr;
                        if (mr == SG_MR && nr == SG_NR) {
                            SG_KERNEL(kc, ap, bp, c, ldc, alpha, bt);
                        } else {
                            SG_KERNEL(kc, ap, bp, tile, SG_NR, alpha, 0.0f);
                            for (int i = 0; i < mr; i++)
                                for (int j = 0; j < nr; j++) {
                                    float *cij = c + (long)i * ldc + j;
                                    *cij = bt == 0.0f ? tile[i * SG_NR + j] : tile[i * SG_NR + j] + bt * *cij;
                                }
                        }
                    }
                }
            }
        }
    }
}
