// test_kquant.c - the super-block types q4_K, q5_K, q6_K and the codebook type iq4_nl (format/qtypes_k.c,
// runtime/kernels_kq*.c), and the scale search of every type (lmp_quantize_row_search).
//
//  * table rows: names, block geometry, bits per weight, vec_dot_type;
//  * to_float equals gguf-py's dequantization bit for bit on random raw blocks (fixture written by
//    scripts/gen_kquant_fixtures.py; zero and subnormal scales included);
//  * an independent decoder written here from the layout text of docs/format.md agrees with to_float;
//  * round to nearest: every element gets the code nearest to it under the stored scales (or the end code
//    when it lies outside the representable range), and the RMSE on Gaussian rows is ordered
//    q6_K < q5_K < q4_K and iq4_nl < q4_0, each below a bound;
//  * vec_dot_ref equals the dot of the dequantized weights and activations within float rounding;
//  * the scale search (imatrix weights or weights from the values) is never worse than round to nearest
//    under the weighted error, for every quantized type, and better on average;
//  * every SIMD table this CPU runs against the scalar table, matvec and matmul (odd row ranges, m = 1, 3,
//    7, 64): exact data (power-of-two scales, small activation codes: every partial sum representable, so
//    the results must be equal bit for bit) and random data (tolerance (nb + 16) eps M, nb activation
//    blocks per row, M = sum_k |dx_k| sum_j |s_j c_j x_j| + |m_k s_k| the magnitude of the reference's
//    terms);
//  * non-finite and extreme inputs do not crash the codecs or the search.
#include <float.h>

#include "format/lmp_common.h"
#include "format/qtypes.h"
#include "quant/gptq.h"
#include "runtime/kernels.h"
#include "tests/test_util.h"

static const lmp_dtype KTYPES[] = {LMP_DTYPE_Q4_K, LMP_DTYPE_Q5_K, LMP_DTYPE_Q6_K, LMP_DTYPE_IQ4_NL};
#define NK 4
static const int8_t BOOK[16] = LMP_IQ4_NL_VALUES_INIT;

static int irand(int lo, int hi) { return lo + (int)(test_rand_u64() % (uint64_t)(hi - lo + 1)); }

// ---- an independent decoder (from docs/format.md): element j of a row -> unit u (float scale of one
// code step), code c (integer multiplied by u) and offset m (subtracted), so that x = u * c - m ----

static float h2f(const uint8_t *p) {
    lmp_fp16 h;
    memcpy(&h, p, 2);
    return lmp_fp16_to_f32(h);
}

static void decode_elem(lmp_dtype t, const uint8_t *row, int64_t j, float *u, int *c, float *m) {
    const lmp_type_traits *tt = lmp_type_get(t);
    const uint8_t *b = row + (size_t)(j / tt->block_size) * tt->type_size;
    int e = (int)(j % tt->block_size);
    *m = 0.0f;
    if (t == LMP_DTYPE_IQ4_NL) {
        int q = e < 16 ? b[2 + e] & 15 : b[2 + e - 16] >> 4;
        *u = h2f(b);
        *c = BOOK[q];
        return;
    }
    if (t == LMP_DTYPE_Q6_K) {
        int h = e / 128, s = (e % 128) / 32, l = e % 32;
        int lo = b[64 * h + l + 32 * (s & 1)];
        lo = s < 2 ? lo & 15 : lo >> 4;
        int hi = (b[128 + 32 * h + l] >> (2 * s)) & 3;
        *u = h2f(b + 208) * (float)(int8_t)b[192 + e / 16];
        *c = (lo | (hi << 4)) - 32;
        return;
    }
    const uint8_t *sc = b + 4;
    int sj = e / 32, l = e % 32, scv, mv;
    if (sj < 4) {
        scv = sc[sj] & 63;
        mv = sc[sj + 4] & 63;
    } else {
        scv = (sc[sj + 4] & 15) | ((sc[sj - 4] >> 6) << 4);
        mv = (sc[sj + 4] >> 4) | ((sc[sj] >> 6) << 4);
    }
    const uint8_t *qs = b + (t == LMP_DTYPE_Q4_K ? 16 : 48);
    int q = qs[32 * (sj / 2) + l];
    q = sj % 2 ? q >> 4 : q & 15;
    if (t == LMP_DTYPE_Q5_K) q |= ((b[16 + l] >> sj) & 1) << 4;
    *u = h2f(b) * (float)scv;
    *c = q;
    *m = h2f(b + 2) * (float)mv;
}

static void test_table(void) {
    static const struct { lmp_dtype t; const char *name; int64_t bs; size_t ts; double bpw; } want[] = {
        {LMP_DTYPE_Q4_K, "q4_K", 256, 144, 4.5},
        {LMP_DTYPE_Q5_K, "q5_K", 256, 176, 5.5},
        {LMP_DTYPE_Q6_K, "q6_K", 256, 210, 6.5625},
        {LMP_DTYPE_IQ4_NL, "iq4_nl", 32, 18, 4.5},
    };
    for (int i = 0; i < NK; i++) {
        const lmp_type_traits *tt = lmp_type_get(want[i].t);
        CHECK(tt && !strcmp(tt->name, want[i].name) && tt->block_size == want[i].bs && tt->type_size == want[i].ts);
        CHECK(tt && tt->is_quantized && tt->storable && tt->vec_dot_type == LMP_DTYPE_Q8_A);
        CHECK(tt && tt->to_float && tt->from_float_ref && tt->vec_dot_ref && tt->description);
        CHECK(fabs(lmp_type_bpw(want[i].t) - want[i].bpw) < 1e-12);
        CHECK(lmp_type_from_name(want[i].name) == (int)want[i].t);
        CHECK(lmp_type_row_size(want[i].t, want[i].bs * 3) == want[i].ts * 3 && lmp_type_row_size(want[i].t, want[i].bs + 16) == 0);
    }
    CHECK(lmp_type_from_name("Q4_K") == LMP_DTYPE_Q4_K && lmp_type_from_name("IQ4_NL") == LMP_DTYPE_IQ4_NL);
    CHECK(sizeof(lmp_block_q4_K) == 144 && sizeof(lmp_block_q5_K) == 176 && sizeof(lmp_block_q6_K) == 210 &&
          sizeof(lmp_block_iq4_nl) == 18);
}

// ---- gguf-py fixture ----

static lmp_dtype ours_of_ggml(uint32_t g) {
    switch (g) {
    case 12: return LMP_DTYPE_Q4_K;
    case 13: return LMP_DTYPE_Q5_K;
    case 14: return LMP_DTYPE_Q6_K;
    case 20: return LMP_DTYPE_IQ4_NL;
    default: return (lmp_dtype)-1;
    }
}

static void test_dequant_vs_gguf_py(void) {
    size_t size;
    uint8_t *buf = test_read_file("tests/fixtures/kquant_dequant.bin", &size);
    CHECK(buf != NULL);
    if (!buf) return;
    CHECK(size > 12 && memcmp(buf, "LMPDQ1\0\0", 8) == 0);
    uint32_t n_rec;
    memcpy(&n_rec, buf + 8, 4);
    size_t pos = 12;
    int seen = 0;
    for (uint32_t r = 0; r < n_rec && pos + 12 <= size; r++) {
        uint32_t g, nb, raw;
        memcpy(&g, buf + pos, 4);
        memcpy(&nb, buf + pos + 4, 4);
        memcpy(&raw, buf + pos + 8, 4);
        pos += 12;
        lmp_dtype t = ours_of_ggml(g);
        const lmp_type_traits *tt = lmp_type_get(t);
        CHECKF(tt != NULL, "unexpected ggml type %u", g);
        if (!tt) break;
        int64_t n = (int64_t)nb * tt->block_size;
        CHECK(raw == nb * tt->type_size && pos + raw + (size_t)n * 4 <= size);
        if (pos + raw + (size_t)n * 4 > size) break;
        float *want = malloc((size_t)n * 4), *got = malloc((size_t)n * 4);
        memcpy(want, buf + pos + raw, (size_t)n * 4);
        tt->to_float(buf + pos, got, n);
        int64_t bad = 0, bad_dec = 0;
        for (int64_t j = 0; j < n; j++) {
            if (memcmp(&got[j], &want[j], 4) != 0 && bad++ < 3)
                fprintf(stderr, "  %s element %lld: ours %.9g, gguf-py %.9g\n", tt->name, (long long)j, got[j], want[j]);
            float u, m;
            int c;
            decode_elem(t, buf + pos, j, &u, &c, &m);
            if (u * (float)c - m != want[j]) bad_dec++;
        }
        CHECKF(bad == 0, "%s: %lld of %lld values differ from gguf-py", tt->name, (long long)bad, (long long)n);
        CHECKF(bad_dec == 0, "%s: the layout decoder disagrees on %lld values", tt->name, (long long)bad_dec);
        seen++;
        free(want);
        free(got);
        pos += raw + (size_t)n * 4;
    }
    CHECK(seen == 4 && pos == size);
    free(buf);
}

// ---- round to nearest ----

static void gaussian_row(float *x, int64_t n, float scale) {
    for (int64_t j = 0; j < n; j++) x[j] = test_rand_normal() * scale;
}

static double rel_rmse(lmp_dtype t, const float *x, int64_t n, int search) {
    const lmp_type_traits *tt = lmp_type_get(t);
    uint8_t *q = malloc(lmp_type_row_size(t, n));
    float *y = malloc((size_t)n * sizeof(float));
    if (search) lmp_quantize_row_search(t, x, q, n, NULL);
    else tt->from_float_ref(x, q, n);
    tt->to_float(q, y, n);
    double e = 0, s = 0;
    for (int64_t j = 0; j < n; j++) {
        e += ((double)x[j] - y[j]) * ((double)x[j] - y[j]);
        s += (double)x[j] * x[j];
    }
    free(q);
    free(y);
    return sqrt(e / s);
}

static void test_rtn_nearest(void) {
    const int64_t n = 256 * 8;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
    uint8_t *q = malloc((size_t)n * 4);
    for (int round = 0; round < 8; round++) {
        float sc = powf(10.0f, (float)irand(-2, 1));  // realistic magnitudes: below ~1e-3 the fp16 super-scales go subnormal
        gaussian_row(x, n, sc);
        if (round & 1)
            for (int64_t j = 0; j < n; j++) x[j] += 0.7f * sc;  // shifted rows: the min term matters
        if (round == 6)
            for (int64_t j = 0; j < n; j += 37) x[j] *= 12.0f;  // outliers
        for (int k = 0; k < NK; k++) {
            lmp_dtype t = KTYPES[k];
            const lmp_type_traits *tt = lmp_type_get(t);
            tt->from_float_ref(x, q, n);
            tt->to_float(q, y, n);
            int bad = 0;
            for (int64_t j = 0; j < n; j++) {
                float u, m;
                int c;
                decode_elem(t, q, j, &u, &c, &m);
                float err = fabsf(x[j] - y[j]);
                // nearest code: no other code of this element's grid is closer
                int lo = t == LMP_DTYPE_Q4_K ? 0 : t == LMP_DTYPE_Q5_K ? 0 : t == LMP_DTYPE_Q6_K ? -32 : 0;
                int hi = t == LMP_DTYPE_Q4_K ? 15 : t == LMP_DTYPE_Q5_K ? 31 : t == LMP_DTYPE_Q6_K ? 31 : 15;
                for (int cc = lo; cc <= hi; cc++) {
                    float v = t == LMP_DTYPE_IQ4_NL ? u * (float)BOOK[cc] : u * (float)cc - m;
                    if (fabsf(x[j] - v) < err * (1.0f - 1e-5f) - 1e-30f) {
                        if (bad++ < 3)
                            fprintf(stderr, "  %s element %lld: x %.9g got %.9g, code %d gives %.9g\n", tt->name,
                                    (long long)j, x[j], y[j], cc, v);
                        break;
                    }
                }
            }
            CHECKF(bad == 0, "%s round %d: %d elements not at their nearest code", tt->name, round, bad);
        }
        if (round & 1 || round == 6) continue;
        double e4 = rel_rmse(LMP_DTYPE_Q4_K, x, n, 0), e5 = rel_rmse(LMP_DTYPE_Q5_K, x, n, 0);
        double e6 = rel_rmse(LMP_DTYPE_Q6_K, x, n, 0), enl = rel_rmse(LMP_DTYPE_IQ4_NL, x, n, 0);
        double e40 = rel_rmse(LMP_DTYPE_Q4_0, x, n, 0);
        // Gaussian: 4-bit asymmetric with a fitted range ~0.1 of the rms, each extra bit halves it.
        CHECKF(e6 < e5 && e5 < e4 && e4 < 0.13 && e5 < 0.065 && e6 < 0.035, "q4_K %.4f q5_K %.4f q6_K %.4f", e4, e5, e6);
        CHECKF(enl < e40 && enl < 0.13, "iq4_nl %.4f q4_0 %.4f", enl, e40);
    }
    free(x);
    free(y);
    free(q);
}

// ---- vec_dot_ref ----

static void test_vec_dot_ref(void) {
    const int64_t n = 256 * 4;
    float *w = malloc(n * sizeof(float)), *wd = malloc(n * sizeof(float)), *xf = malloc(n * sizeof(float));
    float *xd = malloc(n * sizeof(float));
    uint8_t *wq = malloc((size_t)n * 4);
    lmp_block_q8_a *xq = malloc((size_t)(n / 32) * sizeof *xq);
    for (int round = 0; round < 10; round++) {
        gaussian_row(w, n, 0.05f);
        for (int64_t j = 0; j < n; j++) w[j] += (round & 1) ? 0.02f : 0.0f;
        gaussian_row(xf, n, 1.0f);
        lmp_type_get(LMP_DTYPE_Q8_A)->from_float_ref(xf, xq, n);
        lmp_type_get(LMP_DTYPE_Q8_A)->to_float(xq, xd, n);
        for (int k = 0; k < NK; k++) {
            const lmp_type_traits *tt = lmp_type_get(KTYPES[k]);
            tt->from_float_ref(w, wq, n);
            tt->to_float(wq, wd, n);
            double ref = 0, mag = 0;
            for (int64_t j = 0; j < n; j++) {
                ref += (double)wd[j] * xd[j];
                mag += fabs((double)wd[j] * xd[j]);
            }
            float s;
            tt->vec_dot_ref(n, &s, wq, xq);
            // the min term of q4_K/q5_K uses the stored sum s = d * sum(q) (rounded once per block)
            double tol = (n / 32 + 16) * FLT_EPSILON * (mag + 8.0 * n * 0.05);
            CHECKF(fabs(s - ref) <= tol, "%s: vec_dot_ref %.9g, dequantized dot %.9g (tol %.3g)", tt->name, s, ref, tol);
        }
    }
    free(w);
    free(wd);
    free(xf);
    free(xd);
    free(wq);
    free(xq);
}

// ---- scale search ----

static double werr_row(lmp_dtype t, const float *x, const void *q, const float *w, int64_t n) {
    float *y = malloc((size_t)n * sizeof(float));
    lmp_type_get(t)->to_float(q, y, n);
    double e = 0;
    for (int64_t j = 0; j < n; j++) e += (double)w[j] * ((double)x[j] - y[j]) * ((double)x[j] - y[j]);
    free(y);
    return e;
}

static void test_search_never_worse(void) {
    const int64_t n = 256 * 6;
    float *x = malloc(n * sizeof(float)), *imp = malloc(n * sizeof(float)), *ww = malloc(n * sizeof(float));
    uint8_t *qa = malloc(lmp_type_row_size(LMP_DTYPE_F32, n)), *qb = malloc(lmp_type_row_size(LMP_DTYPE_F32, n));
    for (int t = 0; t < LMP_DTYPE_COUNT; t++) {
        const lmp_type_traits *tt = lmp_type_get((lmp_dtype)t);
        if (!tt->is_quantized) continue;
        double gain_imp = 0, gain_self = 0;
        int worse = 0;
        for (int round = 0; round < 6; round++) {
            gaussian_row(x, n, 0.02f * (float)(round + 1));
            if (round % 3 == 1)
                for (int64_t j = 0; j < n; j++) x[j] = 0.01f * tanf(3.0f * (test_rand_uniform() - 0.5f));  // heavy tails
            if (round % 3 == 2)
                for (int64_t j = 0; j < n; j++) x[j] += 0.03f;
            for (int64_t j = 0; j < n; j++) imp[j] = powf(test_rand_uniform(), 3.0f) * 10.0f + 1e-3f;
            // with imatrix weights: judged by imp
            tt->from_float_ref(x, qa, n);
            CHECK(lmp_quantize_row_search((lmp_dtype)t, x, qb, n, imp) == 0);
            double ea = werr_row((lmp_dtype)t, x, qa, imp, n), eb = werr_row((lmp_dtype)t, x, qb, imp, n);
            // per block never worse; the row sum then too (up to the double sums' rounding)
            if (eb > ea * (1 + 1e-9)) worse++;
            gain_imp += ea > 0 ? eb / ea : 1;
            // weights from the values: judged by the same rms + |x| weights per block
            CHECK(lmp_quantize_row_search((lmp_dtype)t, x, qb, n, NULL) == 0);
            for (int64_t b0 = 0; b0 < n; b0 += tt->block_size) {
                double ss = 0;
                for (int64_t j = b0; j < b0 + tt->block_size; j++) ss += (double)x[j] * x[j];
                float rms = (float)sqrt(ss / (double)tt->block_size);
                for (int64_t j = b0; j < b0 + tt->block_size; j++) ww[j] = rms + fabsf(x[j]);
            }
            ea = werr_row((lmp_dtype)t, x, qa, ww, n);
            eb = werr_row((lmp_dtype)t, x, qb, ww, n);
            if (eb > ea * (1 + 1e-9)) worse++;
            gain_self += ea > 0 ? eb / ea : 1;
        }
        CHECKF(worse == 0, "%s: the search was worse than round to nearest in %d rows", tt->name, worse);
        CHECKF(gain_imp / 6 < 0.97 && gain_self / 6 < 0.99, "%s: mean error ratio search/RTN %.3f (imatrix), %.3f (self)",
               tt->name, gain_imp / 6, gain_self / 6);
    }
    // bad arguments
    CHECK(lmp_quantize_row_search(LMP_DTYPE_Q4_K, x, qa, 100, NULL) == -1);
    CHECK(lmp_quantize_row_search(LMP_DTYPE_F32, x, qa, 256, NULL) == -1);
    CHECK(lmp_quantize_row_search(LMP_DTYPE_Q8_A, x, qa, 256, NULL) == -1);
    CHECK(lmp_quantize_row_search((lmp_dtype)77, x, qa, 256, NULL) == -1);
    free(x);
    free(imp);
    free(ww);
    free(qa);
    free(qb);
}

// Non-finite and extreme values: the codecs and the search must not crash (UBSan checks the casts).
static void test_bad_values(void) {
    const int64_t n = 512;
    float x[512], y[512], imp[512];
    uint8_t q[512 * 4];
    for (int round = 0; round < 4; round++) {
        for (int64_t j = 0; j < n; j++) {
            x[j] = test_rand_normal();
            imp[j] = 1.0f;
        }
        x[3] = round == 0 ? NAN : round == 1 ? INFINITY : round == 2 ? 3e38f : 1e-38f;
        x[300] = -x[3];
        if (round == 3)
            for (int64_t j = 0; j < n; j++) x[j] = 0.0f;
        for (int t = 0; t < LMP_DTYPE_COUNT; t++) {
            const lmp_type_traits *tt = lmp_type_get((lmp_dtype)t);
            if (!tt->is_quantized) continue;
            tt->from_float_ref(x, q, n);
            tt->to_float(q, y, n);
            CHECK(lmp_quantize_row_search((lmp_dtype)t, x, q, n, NULL) == 0);
            CHECK(lmp_quantize_row_search((lmp_dtype)t, x, q, n, imp) == 0);
            tt->to_float(q, y, n);
            if (round == 3)
                for (int64_t j = 0; j < n; j++) CHECKF(y[j] == 0.0f, "%s: zero row decodes to %g", tt->name, y[j]);
        }
    }
}

// ---- kernels ----

static const lmp_kernels *S;
#define SENTINEL 12345.0f

// A weight row: exact (power-of-two super-scales, small sub-scales) or random (raw bytes with random
// scales) or a quantized Gaussian row.
static void fill_row(lmp_dtype t, uint8_t *row, int64_t n, int kind, float sc) {
    const lmp_type_traits *tt = lmp_type_get(t);
    size_t bytes = lmp_type_row_size(t, n);
    if (kind == 2) {
        float *f = malloc((size_t)n * sizeof(float));
        float rs = 0.01f + test_rand_uniform();
        for (int64_t j = 0; j < n; j++) f[j] = test_rand_normal() * rs + 0.2f * rs;
        tt->from_float_ref(f, row, n);
        free(f);
        return;
    }
    for (size_t i = 0; i < bytes; i++) row[i] = (uint8_t)test_rand_u64();
    for (int64_t b = 0; b < n / tt->block_size; b++) {
        uint8_t *blk = row + (size_t)b * tt->type_size;
        lmp_fp16 d = lmp_f32_to_fp16(kind == 0 ? sc : (0.001f + test_rand_uniform() * 0.1f) * (test_rand_u64() & 1 ? 1 : -1));
        lmp_fp16 dm = lmp_f32_to_fp16(kind == 0 ? sc : 0.05f * test_rand_uniform());
        if (t == LMP_DTYPE_Q6_K) memcpy(blk + 208, &d, 2);
        else memcpy(blk, &d, 2);
        if (t == LMP_DTYPE_Q4_K || t == LMP_DTYPE_Q5_K) memcpy(blk + 2, &dm, 2);
    }
}

static void fill_x(lmp_block_q8_a *xb, int64_t n, int exact, float sc) {
    if (exact) {
        for (int64_t b = 0; b < n / 32; b++) {
            int sum = 0;
            xb[b].d = sc;
            for (int j = 0; j < 32; j++) sum += xb[b].qs[j] = (int8_t)irand(-7, 7);
            xb[b].s = sc * (float)sum;
        }
        return;
    }
    float *f = malloc((size_t)n * sizeof(float));
    for (int64_t j = 0; j < n; j++) f[j] = test_rand_normal() * (j % 97 == 0 ? 5.0f : 1.0f);
    S->quantize_q8a(f, xb, n);
    free(f);
}

static double magnitude(lmp_dtype t, const uint8_t *w, const lmp_block_q8_a *x, int64_t n) {
    double M = 0;
    for (int64_t k = 0; k < n / 32; k++) {
        double blk = 0, mterm = 0;
        for (int j = 0; j < 32; j++) {
            float u, m;
            int c;
            decode_elem(t, w, k * 32 + j, &u, &c, &m);
            blk += fabs((double)u * c) * abs(x[k].qs[j]);
            if (j == 0) mterm = fabs((double)m * x[k].s);
        }
        M += fabs(x[k].d) * blk + mterm;
    }
    return M;
}

static int g_checked;

static void check_kernels(const lmp_kernels *K, lmp_dtype t, int64_t rows, int64_t n, int kind) {
    const lmp_type_traits *tt = lmp_type_get(t);
    const size_t wrb = lmp_type_row_size(t, n), xrb = lmp_type_row_size(LMP_DTYPE_Q8_A, n);
    const int ms[] = {1, 3, 7, 64};
    const int64_t mmax = 64, ldy = rows + 3;
    uint8_t *w = lmp_malloc(wrb * (size_t)rows);
    lmp_block_q8_a *x = lmp_malloc(xrb * (size_t)mmax);
    float *y1 = malloc((size_t)(ldy * mmax) * sizeof(float)), *y2 = malloc((size_t)(ldy * mmax) * sizeof(float));
    float wsc = ldexpf(1.0f, irand(-6, -2)), xsc = ldexpf(1.0f, irand(-7, -3));
    for (int64_t r = 0; r < rows; r++) fill_row(t, w + (size_t)r * wrb, n, kind, wsc);
    for (int i = 0; i < mmax; i++) fill_x((lmp_block_q8_a *)((uint8_t *)x + (size_t)i * xrb), n, kind == 0, xsc);
    const char *kn = kind == 0 ? "exact" : kind == 1 ? "raw" : "quantized";
    int64_t ranges[4][2] = {{0, rows}, {1, rows}, {rows / 2, rows}, {rows > 2 ? 1 : 0, rows > 2 ? rows - 1 : rows}};
    for (int q = 0; q < 4; q++) {
        int64_t r0 = ranges[q][0], r1 = ranges[q][1];
        for (int64_t r = 0; r < rows; r++) y1[r] = y2[r] = SENTINEL;
        S->matvec[t](w, wrb, x, y1, n, r0, r1);
        K->matvec[t](w, wrb, x, y2, n, r0, r1);
        for (int64_t r = 0; r < rows; r++) {
            if (r < r0 || r >= r1) {
                CHECKF(y2[r] == SENTINEL, "%s %s matvec wrote row %lld outside its range", K->isa, tt->name, (long long)r);
                continue;
            }
            double tol = kind == 0 ? 0.0 : (n / 32 + 16) * FLT_EPSILON * magnitude(t, w + (size_t)r * wrb, x, n) + 1e-30;
            CHECKF(fabs((double)y1[r] - y2[r]) <= tol, "%s %s %s matvec rows=%lld n=%lld r=%lld: scalar %.9g, %.9g (tol %.3g)",
                   K->isa, tt->name, kn, (long long)rows, (long long)n, (long long)r, y1[r], y2[r], tol);
            g_checked++;
        }
    }
    for (int q = 0; q < (rows > 64 ? 0 : 4); q++) {
        int m = ms[q];
        int64_t r0 = q & 1 ? (rows > 1 ? 1 : 0) : 0, r1 = rows;
        for (int64_t i = 0; i < ldy * mmax; i++) y1[i] = y2[i] = SENTINEL;
        S->matmul[t](w, wrb, x, xrb, m, y1, ldy, n, r0, r1);
        K->matmul[t](w, wrb, x, xrb, m, y2, ldy, n, r0, r1);
        int bad = 0;
        for (int64_t i = 0; i < mmax && bad < 3; i++)
            for (int64_t r = 0; r < ldy && bad < 3; r++) {
                float a = y1[i * ldy + r], b = y2[i * ldy + r];
                if (i >= m || r < r0 || r >= r1) {
                    if (b != SENTINEL) bad++;
                    CHECKF(b == SENTINEL, "%s %s matmul m=%d wrote y[%lld][%lld] outside its range", K->isa, tt->name, m,
                           (long long)i, (long long)r);
                    continue;
                }
                const lmp_block_q8_a *xi = (const lmp_block_q8_a *)((const uint8_t *)x + (size_t)i * xrb);
                double tol = kind == 0 ? 0.0 : (n / 32 + 16) * FLT_EPSILON * magnitude(t, w + (size_t)r * wrb, xi, n) + 1e-30;
                if (!(fabs((double)a - b) <= tol)) bad++;
                CHECKF(fabs((double)a - b) <= tol, "%s %s %s matmul m=%d y[%lld][%lld]: scalar %.9g, %.9g (tol %.3g)", K->isa,
                       tt->name, kn, m, (long long)i, (long long)r, a, b, tol);
                g_checked++;
            }
    }
    lmp_free(w);
    lmp_free(x);
    free(y1);
    free(y2);
}

static void test_kernels(void) {
    S = lmp_kernels_by_isa("scalar");
    CHECK(S != NULL);
    int ntab = 0;
    for (const char *const *p = lmp_kernels_isa_list(); *p; p++) {
        const lmp_kernels *K = lmp_kernels_by_isa(*p);
        if (!K) {
            fprintf(stderr, "SKIP table %s: this CPU does not run it\n", *p);
            continue;
        }
        for (int k = 0; k < NK; k++) CHECK(K->matvec[KTYPES[k]] && K->matmul[KTYPES[k]]);
        if (!strcmp(*p, "scalar")) continue;
        ntab++;
        fprintf(stderr, "kquant kernels: table %s against scalar\n", K->isa);
        for (int k = 0; k < NK; k++) {
            lmp_dtype t = KTYPES[k];
            const int64_t G = lmp_type_get(t)->block_size;
            const int64_t shapes[][2] = {{1, 256}, {5, 512}, {9, 256}, {17, 768}, {6, 1024}, {3, 4096}, {301, 2048}};
            for (int s = 0; s < 7; s++) {
                if (shapes[s][1] % G) continue;
                if (shapes[s][1] == 256) check_kernels(K, t, shapes[s][0], shapes[s][1], 0);
                check_kernels(K, t, shapes[s][0], shapes[s][1], 1);
                check_kernels(K, t, shapes[s][0], shapes[s][1], 2);
            }
            if (t == LMP_DTYPE_IQ4_NL) {  // one block and odd block counts
                check_kernels(K, t, 7, 32, 0);
                check_kernels(K, t, 7, 96, 1);
                check_kernels(K, t, 5, 1024, 0);
            }
        }
    }
    if (!ntab) SKIP("no SIMD table runs on this CPU");
    fprintf(stderr, "checked %d kernel outputs\n", g_checked);
}

// GPTQ with the new types: the type's own blocks and searched scales, every column at its nearest code under
// them; the output error tr(dW H dW^T) must be below that of the scale search alone (same scales' family,
// no error compensation) on correlated inputs, with and without act-order.
static double h_err(const float *W, const float *Y, int64_t rows, int64_t cols, const float *H) {
    double e = 0;
    float *d = malloc((size_t)cols * sizeof(float));
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t c = 0; c < cols; c++) d[c] = W[r * cols + c] - Y[r * cols + c];
        for (int64_t a = 0; a < cols; a++) {
            double t = 0;
            for (int64_t b = 0; b < cols; b++) t += (double)H[a * cols + b] * d[b];
            e += d[a] * t;
        }
    }
    free(d);
    return e;
}

static void test_gptq_new_types(void) {
    const int64_t rows = 16, cols = 512, N = 2048;
    float *W = malloc(rows * cols * sizeof(float)), *X = malloc(N * cols * sizeof(float));
    float *H = calloc((size_t)(cols * cols), sizeof(float)), *Y = malloc(rows * cols * sizeof(float));
    float *diag = malloc(cols * sizeof(float));
    uint8_t *q = malloc((size_t)rows * cols * 4);
    gaussian_row(W, rows * cols, 0.05f);
    for (int64_t i = 0; i < N; i++) {  // correlated inputs: a shared factor plus per-channel noise and scale
        float f = test_rand_normal();
        for (int64_t c = 0; c < cols; c++)
            X[i * cols + c] = (0.8f * f + 0.6f * test_rand_normal()) * (1.0f + (float)(c % 7));
    }
    for (int64_t i = 0; i < N; i++)
        for (int64_t a = 0; a < cols; a++)
            for (int64_t b = 0; b < cols; b++) H[a * cols + b] += 2.0f * X[i * cols + a] * X[i * cols + b] / (float)N;
    for (int64_t c = 0; c < cols; c++) diag[c] = H[c * cols + c];
    for (int k = 0; k < NK; k++) {
        lmp_dtype t = KTYPES[k];
        const lmp_type_traits *tt = lmp_type_get(t);
        size_t rb = lmp_type_row_size(t, cols);
        for (int64_t r = 0; r < rows; r++) lmp_quantize_row_weighted(t, W + r * cols, q + r * rb, cols, diag);
        for (int64_t r = 0; r < rows; r++) tt->to_float(q + r * rb, Y + r * cols, cols);
        double e_search = h_err(W, Y, rows, cols, H);
        for (int ao = 0; ao < 2; ao++) {
            lmp_gptq_stats gs;
            lmp_error e = {0};
            CHECKF(lmp_gptq_quantize_matrix(W, rows, cols, H, t, 0.01f, 128, ao, NULL, q, &gs, &e) == LMP_OK, "%s: %s",
                   tt->name, e.msg);
            for (int64_t r = 0; r < rows; r++) tt->to_float(q + r * rb, Y + r * cols, cols);
            double e_gptq = h_err(W, Y, rows, cols, H);
            if (getenv("LMP_TEST_VERBOSE")) fprintf(stderr, "  %s ao=%d gptq %.4g search %.4g\n", tt->name, ao, e_gptq, e_search);
            CHECKF(e_gptq < 0.9 * e_search, "%s%s: GPTQ output error %.4g, scale search alone %.4g", tt->name,
                   ao ? " act-order" : "", e_gptq, e_search);
        }
    }
    free(W);
    free(X);
    free(H);
    free(Y);
    free(diag);
    free(q);
}

int main(void) {
    test_seed();
    RUN(test_table);
    RUN(test_dequant_vs_gguf_py);
    RUN(test_rtn_nearest);
    RUN(test_vec_dot_ref);
    RUN(test_search_never_worse);
    RUN(test_bad_values);
    RUN(test_kernels);
    RUN(test_gptq_new_types);
    return test_report();
}
