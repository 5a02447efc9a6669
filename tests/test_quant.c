// test_quant.c - the type table and reference codecs of format/qtypes.c.
//
//  * fp16: all 65536 halves round-trip exactly (NaN stays NaN) and decode to the value their bits mean;
//    f32 -> f16 on many random floats equals a double-precision round-to-nearest-even reference;
//  * bf16: round to nearest even against the same kind of reference, NaN stays NaN;
//  * per type: dequantize(quantize(x)) error bounds derived from the format, RMSE ordering
//    (q8_0 < q4_1 < q4_0 on Gaussian data; group 32 <= 64 <= 128), hand-computed ggml blocks, and
//    bit-exactness of every type whose layout is ggml's (f32, f16, bf16, q8_0, q4_0, q4_1: encoding and
//    decoding) through the fixture written by scripts/gen_quant_fixtures.py (gguf.quants, kept bit-exact
//    with ggml's C reference by the llama.cpp project);
//  * the activation codecs q8_a and q16_a against the bounds of their format (tests/act_blocks.h);
//  * vec_dot_ref equals the dot of the dequantized values within float rounding;
//  * lmp_quantize_row_weighted is never worse than RTN under the weighted error (random and heavy-tailed
//    data, random and absent importance) and better on average;
//  * q8_0's scale sweep matches a brute-force scan of its interval and finds the grid of q4_1-grid blocks;
//  * names, aliases, row sizes, bits per weight; unknown dtype values give NULL / "?" / 0 / -1.
#include <float.h>

#include "format/lmp_common.h"
#include "format/qtypes.h"
#include "tests/test_util.h"
#include "tests/act_blocks.h"

static int irand(int lo, int hi) { return lo + (int)(test_rand_u64() % (uint64_t)(hi - lo + 1)); }

static float random_float_bits(void) {  // any finite float, all exponents equally likely
    for (;;) {
        uint32_t u = (uint32_t)test_rand_u64();
        float f = lmp_u32_as_f32(u);
        if (isfinite(f)) return f;
    }
}

static int is_asym(lmp_dtype t) { return t == LMP_DTYPE_Q4_1 || t == LMP_DTYPE_Q4_1_G64 || t == LMP_DTYPE_Q4_1_G128; }

// ---- fp16 / bf16 ----

// The value the half's bits mean, computed independently in double.
static double half_value(uint16_t h) {
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp((double)m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp((double)(m | 1024), e - 25);
    return s ? -v : v;
}

static void test_fp16_exhaustive(void) {
    int bad_rt = 0, bad_val = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = lmp_fp16_to_f32((lmp_fp16)h);
        double v = half_value((uint16_t)h);
        if (isnan(v)) {
            lmp_fp16 back = lmp_f32_to_fp16(f);
            if (!isnan(f) || (back & 0x7c00) != 0x7c00 || (back & 0x3ff) == 0 || (back & 0x8000) != (h & 0x8000)) bad_rt++;
            continue;
        }
        if ((double)f != v || !!signbit(f) != (int)(h >> 15)) bad_val++;
        if (lmp_f32_to_fp16(f) != h) bad_rt++;
    }
    CHECKF(bad_val == 0, "%d halves decode to the wrong value", bad_val);
    CHECKF(bad_rt == 0, "%d halves do not round-trip (NaN must stay NaN)", bad_rt);
}

// Round to nearest even of f to a half, in double: returns the rounded value (inf on overflow).
static double half_round_ref(float f) {
    double v = fabs((double)f);
    if (v == 0.0) return (double)f;
    int e;
    frexp(v, &e);  // v = m * 2^e, m in [0.5, 1)
    int ue = e - 11;  // ulp exponent of an 11-bit significand
    if (ue < -24) ue = -24;  // subnormal halves: fixed ulp 2^-24
    double q = rint(ldexp(v, -ue));  // exact scaling; rint rounds half to even
    double r = ldexp(q, ue);
    if (r >= 65520.0) r = INFINITY;  // 65520 = max half + half ulp: ties round up to inf
    if (r > 65504.0 && r < 65520.0) r = 65504.0;  // (not reachable: r is a multiple of the ulp)
    return signbit(f) ? -r : r;
}

static void test_fp16_rounding(void) {
    int bad = 0;
    for (int i = 0; i < 2000000 && bad < 5; i++) {
        float f;
        switch (i % 4) {
        case 0: f = random_float_bits(); break;  // any magnitude: overflow and underflow
        case 1: f = (2.0f * test_rand_uniform() - 1.0f) * 70000.0f; break;  // around the half range
        case 2: f = ldexpf(2.0f * test_rand_uniform() - 1.0f, irand(-27, -12)); break;  // subnormal halves
        default: {  // exact midpoints between two adjacent halves: ties go to even
            uint16_t h = (uint16_t)irand(0, 0x7bfe);
            double a = half_value(h), b = half_value((uint16_t)(h + 1));
            f = (float)((a + b) / 2);
            if (test_rand_u64() & 1) f = -f;
        }
        }
        double want = half_round_ref(f);
        float got = lmp_fp16_to_f32(lmp_f32_to_fp16(f));
        if ((double)got != want || !!signbit(got) != !!signbit(f)) {
            bad++;
            CHECKF(0, "f32 %.9g (0x%08x) -> f16 %.9g, want %.9g", f, lmp_f32_as_u32(f), got, want);
        }
    }
    CHECK(lmp_f32_to_fp16(INFINITY) == 0x7c00 && lmp_f32_to_fp16(-INFINITY) == 0xfc00);
    lmp_fp16 n = lmp_f32_to_fp16(NAN);
    CHECK((n & 0x7c00) == 0x7c00 && (n & 0x3ff) != 0);
    CHECK(lmp_f32_to_fp16(65504.0f) == 0x7bff && lmp_f32_to_fp16(65519.99f) == 0x7bff && lmp_f32_to_fp16(65520.0f) == 0x7c00);
    CHECK(lmp_f32_to_fp16(ldexpf(1.0f, -25)) == 0 && lmp_f32_to_fp16(ldexpf(1.5f, -25)) == 1);
}

static double bf16_round_ref(float f) {
    double v = fabs((double)f);
    if (v == 0.0 || isinf(v)) return (double)f;
    int e;
    frexp(v, &e);
    int ue = e - 8;
    if (ue < -133) ue = -133;  // f32 subnormals: bf16 keeps 7 of their bits
    double r = ldexp(rint(ldexp(v, -ue)), ue);
    if (r >= ldexp(1.0, 128)) r = INFINITY;
    return signbit(f) ? -r : r;
}

static void test_bf16_rounding(void) {
    int bad = 0;
    for (int i = 0; i < 1000000 && bad < 5; i++) {
        float f = random_float_bits();
        if (i & 1) {  // exact ties: low 16 bits = 0x8000
            f = lmp_u32_as_f32((lmp_f32_as_u32(f) & 0xffff0000u) | 0x8000u);
            if (!isfinite(f)) continue;
        }
        double want = bf16_round_ref(f);
        float got = lmp_bf16_to_f32(lmp_f32_to_bf16(f));
        if ((double)got != want) {
            bad++;
            CHECKF(0, "f32 0x%08x -> bf16 %.9g, want %.9g", lmp_f32_as_u32(f), got, want);
        }
    }
    for (uint32_t h = 0; h < 65536; h++) {
        float f = lmp_bf16_to_f32((lmp_bf16)h);
        if (isnan(f)) CHECK(isnan(lmp_bf16_to_f32(lmp_f32_to_bf16(f))));
        else if (lmp_f32_to_bf16(f) != h) bad++;
    }
    CHECKF(bad == 0, "%d bf16 mismatches", bad);
    CHECK(isnan(lmp_bf16_to_f32(lmp_f32_to_bf16(lmp_u32_as_f32(0x7f800001u)))));  // signalling NaN stays NaN
}

// ---- codecs ----

static const lmp_dtype qtypes[] = {LMP_DTYPE_Q8_0,    LMP_DTYPE_Q4_0,    LMP_DTYPE_Q4_1,     LMP_DTYPE_Q4_0_G64,
                                   LMP_DTYPE_Q4_0_G128, LMP_DTYPE_Q4_1_G64, LMP_DTYPE_Q4_1_G128};
#define N_QTYPES 7

static void gaussian(float *x, int64_t n, float scale) {
    for (int64_t i = 0; i < n; i++) x[i] = test_rand_normal() * scale;
}

static void heavy_tailed(float *x, int64_t n) {  // Student-t-like: normal / sqrt(uniform)
    for (int64_t i = 0; i < n; i++) x[i] = test_rand_normal() / sqrtf(test_rand_uniform() + 1e-4f) * 0.02f;
}

static float rd_fp16(const uint8_t *p) {
    lmp_fp16 h;
    memcpy(&h, p, 2);
    return lmp_fp16_to_f32(h);
}

// Per element: |x - deq| within the rounding step of the format, allowing for the scale (and min)
// having been stored as fp16 after the codes were chosen with the unrounded float scale:
//   q8_0:  |d32|/2 + 127 |d32 - d16|
//   q4_0:  |d32|/2 + 8 |d32 - d16|, or |d32| + ... where x/d32 > 7.5 (clamped to code 15: ggml's rule)
//   q4_1:  d32/2 + 15 |d32 - d16| + |min - m16|
// plus a few float roundings of the values themselves.
static void test_roundtrip_bounds(void) {
    const int64_t n = 128 * 64;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
    uint8_t *q = malloc((size_t)n * 2);
    for (int kind = 0; kind < 3; kind++) {
        if (kind == 0) gaussian(x, n, 0.05f);
        else if (kind == 1) heavy_tailed(x, n);
        else for (int64_t i = 0; i < n; i++) x[i] = test_rand_uniform() * 2.0f - 0.3f;  // shifted
        for (int qi = 0; qi < N_QTYPES; qi++) {
            lmp_dtype t = qtypes[qi];
            const lmp_type_traits *tt = lmp_type_get(t);
            const int64_t G = tt->block_size;
            tt->from_float_ref(x, q, n);
            tt->to_float(q, y, n);
            int bad = 0;
            for (int64_t b = 0; b < n / G; b++) {
                const float *xb = x + b * G;
                const uint8_t *blk = q + (size_t)b * tt->type_size;
                float amax = 0, smax = 0, mn = FLT_MAX, mx = -FLT_MAX;
                for (int64_t j = 0; j < G; j++) {
                    if (fabsf(xb[j]) > amax) amax = fabsf(xb[j]), smax = xb[j];
                    mn = fminf(mn, xb[j]);
                    mx = fmaxf(mx, xb[j]);
                }
                double d16 = rd_fp16(blk);
                for (int64_t j = 0; j < G; j++) {
                    double e = fabs((double)xb[j] - y[b * G + j]), bound;
                    double fl = 4.0 * FLT_EPSILON * (fabs(xb[j]) + fabs(y[b * G + j])) + 1e-30;
                    if (t == LMP_DTYPE_Q8_0) {
                        double d32 = amax / 127.0f;
                        bound = d32 / 2 + 127.0 * fabs(d32 - d16) + fl;
                    } else if (!is_asym(t)) {
                        double d32 = smax / -8.0f;
                        double r = d32 != 0 ? xb[j] / d32 : 0;
                        bound = (r > 7.5 ? fabs(d32) : fabs(d32) / 2) + 8.0 * fabs(d32 - d16) + fl;
                    } else {
                        double d32 = (mx - mn) / 15.0f;
                        bound = d32 / 2 + 15.0 * fabs(d32 - d16) + fabs(mn - rd_fp16(blk + 2)) + fl;
                    }
                    if (!(e <= bound) && bad++ < 3)
                        fprintf(stderr, "  %s kind %d block %lld elem %lld: x %.9g deq %.9g err %.3g > bound %.3g\n",
                                tt->name, kind, (long long)b, (long long)j, xb[j], y[b * G + j], e, bound);
                }
            }
            CHECKF(bad == 0, "%s kind %d: %d of %lld elements outside the format's error bound", tt->name, kind, bad,
                   (long long)n);
        }
    }
    free(x);
    free(y);
    free(q);
}

static double rmse(lmp_dtype t, const float *x, int64_t n) {
    const lmp_type_traits *tt = lmp_type_get(t);
    uint8_t *q = malloc(lmp_type_row_size(t, n));
    float *y = malloc(n * sizeof(float));
    tt->from_float_ref(x, q, n);
    tt->to_float(q, y, n);
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
    free(q);
    free(y);
    return sqrt(s / (double)n);
}

static void test_rmse_ordering(void) {
    const int64_t n = 128 * 512;
    float *x = malloc(n * sizeof(float));
    gaussian(x, n, 1.0f);
    double r8 = rmse(LMP_DTYPE_Q8_0, x, n), r40 = rmse(LMP_DTYPE_Q4_0, x, n), r41 = rmse(LMP_DTYPE_Q4_1, x, n);
    double r40_64 = rmse(LMP_DTYPE_Q4_0_G64, x, n), r40_128 = rmse(LMP_DTYPE_Q4_0_G128, x, n);
    double r41_64 = rmse(LMP_DTYPE_Q4_1_G64, x, n), r41_128 = rmse(LMP_DTYPE_Q4_1_G128, x, n);
    fprintf(stderr, "RMSE on N(0,1): q8_0 %.5f q4_1 %.5f q4_0 %.5f | q4_0 g64 %.5f g128 %.5f | q4_1 g64 %.5f g128 %.5f\n",
            r8, r41, r40, r40_64, r40_128, r41_64, r41_128);
    CHECKF(r8 < r41 && r41 < r40, "q8_0 %.5f < q4_1 %.5f < q4_0 %.5f", r8, r41, r40);
    CHECKF(r40 <= r40_64 && r40_64 <= r40_128, "q4_0 %.5f <= g64 %.5f <= g128 %.5f", r40, r40_64, r40_128);
    CHECKF(r41 <= r41_64 && r41_64 <= r41_128, "q4_1 %.5f <= g64 %.5f <= g128 %.5f", r41, r41_64, r41_128);
    // Expected magnitudes (uniform rounding error = step / sqrt(12)); catches a codec that is off by a factor.
    CHECKF(r8 > 0.003 && r8 < 0.012, "q8_0 RMSE %.5f out of the expected range", r8);
    CHECKF(r40 > 0.05 && r40 < 0.12, "q4_0 RMSE %.5f out of the expected range", r40);
    free(x);
}

// Blocks worked out by hand from ggml's reference formulas.
static void test_known_blocks(void) {
    float x[32];
    // q4_0: x[j] = j - 16. Largest magnitude is x[0] = -16, so d = -16 / -8 = 2 (fp16 0x4000), id = 0.5,
    // q[j] = min(15, trunc((j - 16) * 0.5 + 8.5)) = min(15, floor((j + 1) / 2)).
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 16);
    lmp_block_q4_0 b4;
    lmp_type_get(LMP_DTYPE_Q4_0)->from_float_ref(x, &b4, 32);
    CHECKF(b4.d == 0x4000, "q4_0 d = 0x%04x, want 0x4000", b4.d);
    for (int j = 0; j < 16; j++) {
        int lo = (j + 1) / 2, hi = (j + 17) / 2 > 15 ? 15 : (j + 17) / 2;
        CHECKF(b4.qs[j] == (uint8_t)(lo | hi << 4), "q4_0 qs[%d] = 0x%02x, want 0x%02x", j, b4.qs[j], lo | hi << 4);
    }
    const uint8_t want4[16] = {0x80, 0x91, 0x91, 0xa2, 0xa2, 0xb3, 0xb3, 0xc4,
                               0xc4, 0xd5, 0xd5, 0xe6, 0xe6, 0xf7, 0xf7, 0xf8};
    CHECK(memcmp(b4.qs, want4, 16) == 0);
    // The same with the sign flipped: max = +16, d = -2 (0xc000); x[j] * id = (16 - j) / 2.
    for (int j = 0; j < 32; j++) x[j] = (float)(16 - j);
    lmp_type_get(LMP_DTYPE_Q4_0)->from_float_ref(x, &b4, 32);
    CHECK(b4.d == 0xc000 && memcmp(b4.qs, want4, 16) == 0);
    // q8_0: x[0] = 127 -> d = 1 (0x3c00), id = 1; x[j] = j - 15.5 for j >= 1 round half away from zero:
    // -14.5 -> -15, ..., -0.5 -> -1, 0.5 -> 1, ..., 15.5 -> 16.
    x[0] = 127.0f;
    for (int j = 1; j < 32; j++) x[j] = (float)j - 15.5f;
    lmp_block_q8_0 b8;
    lmp_type_get(LMP_DTYPE_Q8_0)->from_float_ref(x, &b8, 32);
    CHECKF(b8.d == 0x3c00, "q8_0 d = 0x%04x", b8.d);
    CHECK(b8.qs[0] == 127);
    for (int j = 1; j < 32; j++) {
        int want = j < 16 ? j - 16 : j - 15;
        CHECKF(b8.qs[j] == want, "q8_0 qs[%d] = %d, want %d", j, b8.qs[j], want);
    }
    // q4_1: x[j] = j / 4 + 1: min 1, max 8.75, d = 7.75 / 15, codes round((x - 1) / d) = round(j * 15 / 31).
    for (int j = 0; j < 32; j++) x[j] = (float)j / 4 + 1;
    lmp_block_q4_1 b1;
    lmp_type_get(LMP_DTYPE_Q4_1)->from_float_ref(x, &b1, 32);
    CHECK(b1.m == 0x3c00 && b1.d == lmp_f32_to_fp16(7.75f / 15.0f));
    for (int j = 0; j < 16; j++) {
        int lo = (int)(j * 15.0 / 31.0 + 0.5), hi = (int)((j + 16) * 15.0 / 31.0 + 0.5);
        CHECKF(b1.qs[j] == (uint8_t)(lo | hi << 4), "q4_1 qs[%d] = 0x%02x, want 0x%02x", j, b1.qs[j], lo | hi << 4);
    }
    // All zeros: q4_0's d = 0 / -8 = -0 (fp16 0x8000, as ggml) and every code the zero point.
    memset(x, 0, sizeof x);
    lmp_type_get(LMP_DTYPE_Q4_0)->from_float_ref(x, &b4, 32);
    CHECK(b4.d == 0x8000 && b4.qs[0] == 0x88 && b4.qs[15] == 0x88);
    lmp_type_get(LMP_DTYPE_Q8_0)->from_float_ref(x, &b8, 32);
    CHECK(b8.d == 0 && b8.qs[0] == 0 && b8.qs[31] == 0);
}

// Bit-exact against ggml for every type whose layout is ggml's (f32, f16, bf16, q8_0, q4_0, q4_1):
// tests/fixtures/quant_ggml.bin, written by scripts/gen_quant_fixtures.py with gguf.quants. For each
// record our from_float_ref must give gguf's bytes and our to_float gguf's floats, bit for bit (the block
// types: a NaN may decode to a NaN of the other sign, as numpy and C order inf * 0 differently).
static uint32_t rd_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static void test_ggml_fixture(void) {
    static const struct { uint32_t ggml; lmp_dtype ours; } map[] = {
        {0, LMP_DTYPE_F32}, {1, LMP_DTYPE_F16}, {30, LMP_DTYPE_BF16}, {8, LMP_DTYPE_Q8_0}, {2, LMP_DTYPE_Q4_0}, {3, LMP_DTYPE_Q4_1}};
    enum { N_MAP = sizeof map / sizeof map[0] };
    size_t size = 0;
    uint8_t *f = test_read_file("tests/fixtures/quant_ggml.bin", &size);
    CHECKF(f != NULL, "tests/fixtures/quant_ggml.bin missing (run tests from the repository root)");
    if (!f) return;
    CHECKF(size >= 12 && !memcmp(f, "LMPQFIX2", 8), "bad fixture header (regenerate with scripts/gen_quant_fixtures.py)");
    const uint32_t n_rec = size >= 12 ? rd_u32(f + 8) : 0;
    int seen[N_MAP] = {0};
    size_t pos = 12;
    for (uint32_t r = 0; r < n_rec; r++) {
        if (!(pos + 8 <= size)) break;
        const uint32_t gt = rd_u32(f + pos), n = rd_u32(f + pos + 4);
        int k = -1;
        for (int i = 0; i < N_MAP; i++)
            if (map[i].ggml == gt) k = i;
        CHECKF(k >= 0 && n % 32 == 0 && n > 0 && n < (1u << 20), "record %u: ggml type %u, %u values", r, gt, n);
        if (k < 0 || n % 32 || n == 0 || n >= (1u << 20)) break;
        const lmp_type_traits *tt = lmp_type_get(map[k].ours);
        const size_t enc_bytes = lmp_type_row_size(map[k].ours, n);
        const size_t x_at = pos + 8, nb_at = x_at + (size_t)n * 4, enc_at = nb_at + 4, deq_at = enc_at + enc_bytes;
        CHECKF(deq_at + (size_t)n * 4 <= size && rd_u32(f + nb_at) == enc_bytes, "record %u (%s) truncated or mis-sized", r,
               tt->name);
        if (!(deq_at + (size_t)n * 4 <= size && rd_u32(f + nb_at) == enc_bytes)) break;
        float *x = malloc((size_t)n * 4), *y = malloc((size_t)n * 4);
        uint8_t *q = malloc(enc_bytes);
        memcpy(x, f + x_at, (size_t)n * 4);
        const uint8_t *enc = f + enc_at, *deq = f + deq_at;
        tt->from_float_ref(x, q, n);
        const size_t unit = tt->is_quantized ? tt->type_size : tt->type_size * 32;  // a block, or 32 floats
        int bad = 0;
        for (size_t b = 0; b < enc_bytes / unit; b++)
            if (memcmp(q + b * unit, enc + b * unit, unit) && bad++ < 3) {
                size_t e = b * unit;
                while (q[e] == enc[e]) e++;
                fprintf(stderr, "  %s: encoding differs from ggml's at byte %zu (input %.9g)\n", tt->name, e,
                        x[e / tt->type_size * (size_t)tt->block_size]);
            }
        CHECKF(bad == 0, "%s: %d of %zu groups encode differently from ggml", tt->name, bad, enc_bytes / unit);
        tt->to_float(enc, y, n);
        int badd = 0;
        for (uint32_t i = 0; i < n; i++) {
            float g;
            memcpy(&g, deq + (size_t)i * 4, 4);
            int same = !memcmp(&g, &y[i], 4) || (tt->is_quantized && isnan(g) && isnan(y[i]));
            if (!same && badd++ < 3)
                fprintf(stderr, "  %s dequantized element %u: %.9g (0x%08x), ggml %.9g (0x%08x)\n", tt->name, i, y[i],
                        lmp_f32_as_u32(y[i]), g, lmp_f32_as_u32(g));
        }
        CHECKF(badd == 0, "%s: %d of %u values decode differently from ggml", tt->name, badd, n);
        seen[k] = 1;
        free(x), free(y), free(q);
        pos = deq_at + (size_t)n * 4;
    }
    CHECKF(pos == size, "fixture: %zu bytes after the last record read", size - pos);
    for (int i = 0; i < N_MAP; i++)
        CHECKF(seen[i], "fixture has no record for %s (ggml type %u)", lmp_type_name(map[i].ours), map[i].ggml);
    free(f);
}

// vec_dot_ref vs the dot of the dequantized rows, in double. The reference sums nb block terms in float,
// each rounded a few times: |diff| <= (nb + 4) * eps * (sum |w_j x_j| + sum_blocks |m s|); the float
// types sum n products: (n + 2) * eps * sum |w_j x_j|.
static void test_vec_dot_ref(void) {
    const lmp_dtype all[] = {LMP_DTYPE_F32, LMP_DTYPE_F16, LMP_DTYPE_BF16, LMP_DTYPE_Q8_0, LMP_DTYPE_Q4_0,
                             LMP_DTYPE_Q4_1, LMP_DTYPE_Q4_0_G64, LMP_DTYPE_Q4_0_G128, LMP_DTYPE_Q4_1_G64,
                             LMP_DTYPE_Q4_1_G128};
    const int64_t ns[] = {128, 1024, 4096};
    for (int ti = 0; ti < 10; ti++)
        for (int ni = 0; ni < 3; ni++) {
            lmp_dtype t = all[ti];
            const lmp_type_traits *tt = lmp_type_get(t), *xt = lmp_type_get(tt->vec_dot_type);
            const int64_t n = ns[ni];
            float *w = malloc(n * sizeof(float)), *x = malloc(n * sizeof(float));
            float *wd = malloc(n * sizeof(float)), *xd = malloc(n * sizeof(float));
            uint8_t *wq = malloc(lmp_type_row_size(t, n)), *xq = malloc(lmp_type_row_size(tt->vec_dot_type, n));
            for (int64_t i = 0; i < n; i++) {
                w[i] = test_rand_normal() * 0.1f + (is_asym(t) ? 0.05f : 0.0f);
                x[i] = test_rand_normal();
            }
            tt->from_float_ref(w, wq, n);
            xt->from_float_ref(x, xq, n);
            tt->to_float(wq, wd, n);
            xt->to_float(xq, xd, n);
            double exact = 0, S = 0, ms = 0;
            for (int64_t i = 0; i < n; i++) {
                exact += (double)wd[i] * xd[i];
                S += fabs((double)wd[i] * xd[i]);
            }
            if (is_asym(t))
                for (int64_t k = 0; k < n / 32; k++)
                    ms += fabs((double)rd_fp16(wq + (size_t)(k * 32 / tt->block_size) * tt->type_size + 2) *
                               ((const lmp_block_q8_a *)xq)[k].s);
            float got;
            tt->vec_dot_ref(n, &got, wq, xq);
            double tol = tt->is_quantized ? ((double)(n / 32) + 4) * FLT_EPSILON * (S + ms) : ((double)n + 2) * FLT_EPSILON * S;
            CHECKF(fabs(got - exact) <= tol, "%s n=%lld: vec_dot_ref %.9g, dequantized dot %.9g (tol %.3g)", tt->name,
                   (long long)n, got, exact, tol);
            free(w), free(x), free(wd), free(xd), free(wq), free(xq);
        }
}

// The activation codecs q8_a and q16_a against the bounds their format implies (tests/act_blocks.h), on
// fresh random blocks of every kind (ties, subnormal, huge, zero, ...); to_float must give d * q exactly.
static void check_act_ref(lmp_dtype A) {
    const lmp_type_traits *tt = lmp_type_get(A);
    CHECK(tt && !tt->storable && tt->is_quantized && tt->block_size == 32 && tt->type_size == act_block_bytes(A));
    if (!tt) return;
    const int64_t n = 32 * 256;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
    uint8_t *q = malloc((size_t)(n / 32) * tt->type_size);
    for (int round = 0; round < 8; round++) {
        act_fill(A, x, n);
        memset(q, 0x55, (size_t)(n / 32) * tt->type_size);
        tt->from_float_ref(x, q, n);
        char label[64];
        snprintf(label, sizeof label, "%s round %d", tt->name, round);
        int bad = act_check(A, x, q, n, label);
        CHECKF(bad == 0, "%s: %d violations of the format's bounds (round %d)", tt->name, bad, round);
        tt->to_float(q, y, n);
        int wrong = 0;
        for (int64_t i = 0; i < n; i++) {
            float d;
            memcpy(&d, q + (size_t)(i / 32) * tt->type_size, 4);
            int c = A == LMP_DTYPE_Q8_A ? ((const lmp_block_q8_a *)q)[i / 32].qs[i % 32]
                                        : ((const lmp_block_q16_a *)q)[i / 32].qs[i % 32];
            wrong += y[i] != (float)((double)d * c);
        }
        CHECKF(wrong == 0, "%s to_float: %d values are not d * q", tt->name, wrong);
    }
    free(x), free(y), free(q);
}

static void test_q8_a_ref(void) { check_act_ref(LMP_DTYPE_Q8_A); }

static void test_q16_a_ref(void) { check_act_ref(LMP_DTYPE_Q16_A); }

// Why q8_0 takes q16_a: its dot product must carry (almost) only the weights' rounding. On Gaussian
// rows, the error of vec_dot_ref against the exact dot of the *dequantized weights* with the f32
// activations must be at most 1/64 of what 8-bit activations (q8_a) would add: 16-bit rounding is
// 258 times finer, so the bound has a margin of 4 and the test fails if q8_0 falls back to 8 bits.
static void test_q8_0_activation_error(void) {
    const int64_t n = 4096;
    float *w = malloc(n * sizeof(float)), *x = malloc(n * sizeof(float)), *wd = malloc(n * sizeof(float));
    float *x8 = malloc(n * sizeof(float));
    lmp_block_q8_0 *wq = malloc((size_t)(n / 32) * sizeof *wq);
    lmp_block_q16_a *xq = malloc((size_t)(n / 32) * sizeof *xq);
    lmp_block_q8_a *xq8 = malloc((size_t)(n / 32) * sizeof *xq8);
    const lmp_type_traits *tq = lmp_type_get(LMP_DTYPE_Q8_0);
    double e16 = 0, e8 = 0;
    for (int round = 0; round < 16; round++) {
        gaussian(w, n, 0.05f);
        gaussian(x, n, 1.0f);
        tq->from_float_ref(w, wq, n);
        tq->to_float(wq, wd, n);
        lmp_type_get(tq->vec_dot_type)->from_float_ref(x, xq, n);
        lmp_type_get(LMP_DTYPE_Q8_A)->from_float_ref(x, xq8, n);
        lmp_type_get(LMP_DTYPE_Q8_A)->to_float(xq8, x8, n);
        double exact = 0, with8 = 0;
        for (int64_t i = 0; i < n; i++) {
            exact += (double)wd[i] * x[i];
            with8 += (double)wd[i] * x8[i];
        }
        float got;
        tq->vec_dot_ref(n, &got, wq, xq);
        e16 += fabs(got - exact);
        e8 += fabs(with8 - exact);
    }
    fprintf(stderr, "q8_0 dot, mean |error| from activation rounding: q16_a %.3g, q8_a would be %.3g\n", e16 / 16,
            e8 / 16);
    CHECKF(e16 * 64 <= e8, "q8_0 with q16_a activations: error %.3g, not 64x below 8-bit activations' %.3g", e16, e8);
    free(w), free(x), free(wd), free(x8), free(wq), free(xq), free(xq8);
}

// Weighted error of a quantized block against x under importance imp (NULL = ones), in double.
static double werr(lmp_dtype t, const uint8_t *q, const float *x, const float *imp, int64_t n) {
    float *y = malloc(n * sizeof(float));
    lmp_type_get(t)->to_float(q, y, n);
    double e = 0;
    for (int64_t i = 0; i < n; i++) e += (imp ? imp[i] : 1.0) * ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
    free(y);
    return e;
}

static void test_weighted_never_worse(void) {
    const int64_t n = 128 * 32;
    float *x = malloc(n * sizeof(float)), *imp = malloc(n * sizeof(float));
    uint8_t *qr = malloc((size_t)n * 2), *qw = malloc((size_t)n * 2);
    for (int kind = 0; kind < 4; kind++) {
        if (kind & 1) heavy_tailed(x, n);
        else gaussian(x, n, 0.02f);
        for (int64_t i = 0; i < n; i++) imp[i] = expf(2.0f * test_rand_normal());  // spread over orders of magnitude
        const float *w = kind >= 2 ? NULL : imp;
        for (int qi = 0; qi < N_QTYPES; qi++) {
            lmp_dtype t = qtypes[qi];
            const lmp_type_traits *tt = lmp_type_get(t);
            const int64_t G = tt->block_size;
            tt->from_float_ref(x, qr, n);
            CHECK(lmp_quantize_row_weighted(t, x, qw, n, w) == 0);
            double tot_r = 0, tot_w = 0;
            int worse = 0;
            for (int64_t b = 0; b < n / G; b++) {
                const uint8_t *br = qr + (size_t)b * tt->type_size, *bw = qw + (size_t)b * tt->type_size;
                double er = werr(t, br, x + b * G, w ? w + b * G : NULL, G);
                double ew = werr(t, bw, x + b * G, w ? w + b * G : NULL, G);
                tot_r += er;
                tot_w += ew;
                if (ew > er && worse++ < 3)
                    CHECKF(0, "%s kind %d block %lld: weighted error %.6g > RTN %.6g", tt->name, kind, (long long)b, ew, er);
            }
            if (kind == 0)
                fprintf(stderr, "%-10s weighted/RTN error (random importance): %.3f\n", tt->name, tot_w / tot_r);
            // The search must actually help on the 4-bit types (it is the point of the function).
            if (t != LMP_DTYPE_Q8_0) CHECKF(tot_w < 0.99 * tot_r, "%s kind %d: weighted %.6g vs RTN %.6g", tt->name, kind, tot_w, tot_r);
            else CHECK(tot_w <= tot_r);
        }
    }
    CHECK(lmp_quantize_row_weighted(LMP_DTYPE_F32, x, qw, 32, NULL) == -1);
    CHECK(lmp_quantize_row_weighted(LMP_DTYPE_Q8_A, x, qw, 32, NULL) == -1);
    CHECK(lmp_quantize_row_weighted(LMP_DTYPE_Q16_A, x, qw, 32, NULL) == -1);
    CHECK(lmp_quantize_row_weighted((lmp_dtype)77, x, qw, 32, NULL) == -1);
    CHECK(lmp_quantize_row_weighted(LMP_DTYPE_Q4_0_G64, x, qw, 32, NULL) == -1);  // not a multiple of the group
    // All-zero importance in a block: any choice is optimal; must still succeed and be finite.
    memset(imp, 0, 32 * sizeof(float));
    CHECK(lmp_quantize_row_weighted(LMP_DTYPE_Q4_1, x, qw, 32, imp) == 0);
    free(x), free(imp), free(qr), free(qw);
}

// q8_0's scale search sweeps every set of codes between the inverse scales 96 / amax and 128 / amax, each
// with its least-squares scale: it must match a brute-force scan of 2048 scales over that interval (the
// same objective, each candidate's codes re-fitted, stored fp16, re-rounded) within 1 % (the scan takes the
// best error after the fp16 rounding of the scale, the sweep chooses before it: 0.2-0.5 % apart), and on blocks
// that lie on a q4_1 grid (16 levels m + d k, as in a dequantized q4_1 model) it must find the scales
// where the codes land close to the levels: at most half of RTN's error (13 candidates around amax / 127,
// the search before, left 0.70 x RTN on SmolLM2's weights; the sweep 0.24 x).
static double q8_0_scan_err(const float *x, const float *w) {
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
    lmp_block_q8_0 b;
    lmp_type_get(LMP_DTYPE_Q8_0)->from_float_ref(x, &b, 32);
    double best = werr(LMP_DTYPE_Q8_0, (const uint8_t *)&b, x, w, 32);
    for (int k = 0; k <= 2048 && amax > 0.0f; k++) {
        const float id = (96.0f + 32.0f * (float)k / 2048.0f) / amax;
        double sxl = 0, sll = 0;
        for (int j = 0; j < 32; j++) {
            const float l = fminf(fmaxf(roundf(x[j] * id), -127.0f), 127.0f);
            sxl += (double)w[j] * l * x[j];
            sll += (double)w[j] * l * l;
        }
        if (!(sll > 0)) continue;
        b.d = lmp_f32_to_fp16((float)(sxl / sll));
        const float ds = lmp_fp16_to_f32(b.d);
        if (!(ds > 0.0f)) continue;
        for (int j = 0; j < 32; j++) b.qs[j] = (int8_t)fminf(fmaxf(roundf(x[j] / ds), -127.0f), 127.0f);
        best = fmin(best, werr(LMP_DTYPE_Q8_0, (const uint8_t *)&b, x, w, 32));
    }
    return best;
}

static void test_q8_0_sweep(void) {
    enum { NB = 256 };
    float x[32], w[32];
    for (int kind = 0; kind < 4; kind++) {  // Gaussian / q4_1 grid, importance uniform / random
        double e_search = 0, e_scan = 0, e_rtn = 0;
        for (int b = 0; b < NB; b++) {
            const float d = lmp_fp16_to_f32(lmp_f32_to_fp16(0.001f * (1.0f + (float)test_rand_uniform())));
            const float m = lmp_fp16_to_f32(lmp_f32_to_fp16(-d * (6.0f + 3.0f * (float)test_rand_uniform())));
            for (int j = 0; j < 32; j++) {
                x[j] = kind & 1 ? m + d * (float)irand(0, 15) : 0.01f * test_rand_normal();
                w[j] = kind & 2 ? expf(test_rand_normal()) : 1.0f;
            }
            lmp_block_q8_0 q, r;
            CHECK(lmp_quantize_row_weighted(LMP_DTYPE_Q8_0, x, &q, 32, w) == 0);
            lmp_type_get(LMP_DTYPE_Q8_0)->from_float_ref(x, &r, 32);
            e_search += werr(LMP_DTYPE_Q8_0, (const uint8_t *)&q, x, w, 32);
            e_rtn += werr(LMP_DTYPE_Q8_0, (const uint8_t *)&r, x, w, 32);
            e_scan += q8_0_scan_err(x, w);
        }
        fprintf(stderr, "q8_0 %s, %s importance: search / RTN %.3f, search / scan of 2048 scales %.4f\n",
                kind & 1 ? "q4_1 grid" : "Gaussian", kind & 2 ? "random" : "uniform", e_search / e_rtn, e_search / e_scan);
        CHECKF(e_search <= 1.01 * e_scan, "kind %d: search error %.6g above the scan's %.6g", kind, e_search, e_scan);
        if (kind & 1) CHECKF(e_search <= 0.5 * e_rtn, "kind %d: search error %.6g, RTN %.6g", kind, e_search, e_rtn);
    }
}

static void test_table(void) {
    struct {
        lmp_dtype t;
        const char *name;
        int64_t bs;
        size_t ts;
        double bpw;
    } rows[] = {
        {LMP_DTYPE_F32, "f32", 1, 4, 32},           {LMP_DTYPE_F16, "f16", 1, 2, 16},
        {LMP_DTYPE_BF16, "bf16", 1, 2, 16},         {LMP_DTYPE_Q8_0, "q8_0", 32, 34, 8.5},
        {LMP_DTYPE_Q4_0, "q4_0", 32, 18, 4.5},      {LMP_DTYPE_Q4_1, "q4_1", 32, 20, 5.0},
        {LMP_DTYPE_Q4_0_G64, "q4_0_g64", 64, 34, 4.25}, {LMP_DTYPE_Q4_0_G128, "q4_0_g128", 128, 66, 4.125},
        {LMP_DTYPE_Q4_1_G64, "q4_1_g64", 64, 36, 4.5}, {LMP_DTYPE_Q4_1_G128, "q4_1_g128", 128, 68, 4.25},
        {LMP_DTYPE_Q8_A, "q8_a", 32, 40, 10.0},     {LMP_DTYPE_Q16_A, "q16_a", 32, 68, 17.0},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const lmp_type_traits *tt = lmp_type_get(rows[i].t);
        CHECKF(tt && !strcmp(tt->name, rows[i].name), "row %zu", i);
        if (!tt) continue;
        CHECK(tt->block_size == rows[i].bs && tt->type_size == rows[i].ts);
        CHECK(lmp_type_bpw(rows[i].t) == rows[i].bpw);
        CHECK(lmp_type_from_name(rows[i].name) == (int)rows[i].t);
        CHECK(!strcmp(lmp_type_name(rows[i].t), rows[i].name));
        CHECK(tt->to_float && tt->from_float_ref && tt->vec_dot_ref && tt->description && tt->description[0]);
        CHECK(tt->is_quantized == (rows[i].bs > 1));
        CHECK(tt->storable == (rows[i].t != LMP_DTYPE_Q8_A && rows[i].t != LMP_DTYPE_Q16_A));
        // q8_0 (and q16_a itself) take 16-bit activations, the other block types 8-bit, float types f32
        lmp_dtype vt = rows[i].bs == 1 ? LMP_DTYPE_F32
                       : rows[i].t == LMP_DTYPE_Q8_0 || rows[i].t == LMP_DTYPE_Q16_A ? LMP_DTYPE_Q16_A
                                                                                     : LMP_DTYPE_Q8_A;
        CHECK(tt->vec_dot_type == vt);
        CHECK(lmp_type_row_size(rows[i].t, rows[i].bs * 3) == rows[i].ts * 3);
        if (rows[i].bs > 1) CHECK(lmp_type_row_size(rows[i].t, rows[i].bs + 1) == 0);
    }
    CHECK(sizeof(lmp_block_q4_0_g128) == 66 && sizeof(lmp_block_q4_1_g64) == 36);
    CHECK(lmp_type_from_name("Q4_0") == LMP_DTYPE_Q4_0 && lmp_type_from_name("q8") == LMP_DTYPE_Q8_0 &&
          lmp_type_from_name("Q4") == LMP_DTYPE_Q4_0 && lmp_type_from_name("BF16") == LMP_DTYPE_BF16);
    CHECK(lmp_type_from_name("q5_0") == -1 && lmp_type_from_name("") == -1 && lmp_type_from_name(NULL) == -1 &&
          lmp_type_from_name("q4_0 ") == -1);
    const int unknown[] = {LMP_DTYPE_COUNT, LMP_DTYPE_COUNT + 1, 99, 102, -1, 0x7fffffff, 1 << 16};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        lmp_dtype t = (lmp_dtype)unknown[i];
        CHECKF(lmp_type_get(t) == NULL, "dtype %d", unknown[i]);
        CHECK(!strcmp(lmp_type_name(t), "?"));
        CHECK(lmp_type_row_size(t, 32) == 0 && lmp_type_bpw(t) == 0.0);
    }
    CHECK(lmp_type_row_size(LMP_DTYPE_F32, 7) == 28 && lmp_type_row_size(LMP_DTYPE_F32, 0) == 0);
    CHECK(lmp_type_row_size(LMP_DTYPE_F32, -32) == 0);
    CHECK(lmp_type_row_size(LMP_DTYPE_F32, (int64_t)1 << 62) == 0);  // 2^64 bytes: overflow
}

int main(void) {
    test_seed();
    RUN(test_fp16_exhaustive);
    RUN(test_fp16_rounding);
    RUN(test_bf16_rounding);
    RUN(test_roundtrip_bounds);
    RUN(test_rmse_ordering);
    RUN(test_known_blocks);
    RUN(test_ggml_fixture);
    RUN(test_vec_dot_ref);
    RUN(test_q8_a_ref);
    RUN(test_q16_a_ref);
    RUN(test_q8_0_activation_error);
    RUN(test_weighted_never_worse);
    RUN(test_q8_0_sweep);
    RUN(test_table);
    return test_report();
}
