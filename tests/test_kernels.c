// test_kernels.c - every kernel table this CPU runs (quant/kernels.h) against the scalar table.
//
// For each table and each storable weight type: matvec over odd row ranges and matmul for m = 1, 3, 7,
// 64 activation rows, on several shapes (rows not a multiple of the tiles, n from one block to 4096),
// two kinds of data:
//  * exact data (small integers; power-of-two block scales, one per matrix; integer types up to
//    n = 1024): every partial sum is exactly representable, so the fast result must equal the scalar
//    one bit for bit whatever the accumulation order: this is the "integer parts match exactly" check;
//  * random data (Gaussian rows quantized by the reference, or random block bytes with random scales):
//    the results may differ only by float rounding in a different order. Tolerance per output:
//      float weights:  (n + 16) * FLT_EPSILON * sum_j |w_j x_j|
//        (reference: sequential sum, error <= n u S with u = eps/2; SIMD: lanes of n/8 terms, a tree and
//        a scalar tail, <= (n/8 + 16) u S; the sum of both is below the bound);
//      integer weights: (nb + 16) * FLT_EPSILON * M, nb = activation blocks of the row and
//        M = sum_blocks |dw dx| sum_j (|q_j| + 8) |x_j| + |mw s| + 8 |dw s|
//        (per block the reference rounds dw*dx, the product with the integer sum and the running sum;
//        the SIMD kernels fold q4_0's -8 offset in through the stored activation sum s, which was itself
//        rounded once, hence the (|q| + 8) and 8|dw s| terms).
// quantize_q8a and quantize_q16a must be bit-identical to the reference (ties x/d = k + 1/2 included), and
// the quantizer each table gives for an activation type must meet that format's bounds (tests/act_blocks.h)
// on every kind of block and feed the matvec of every weight type within the activations' rounding.
// Rows outside [r0, r1) and outputs beyond m must stay untouched.
#include <float.h>

#include "runtime/kernels.h"
#include "format/lmp_common.h"
#include "format/qtypes.h"
#include "tests/test_util.h"
#include "tests/act_blocks.h"

static const lmp_kernels *S;  // the scalar table
#define SENTINEL 12345.0f

static float frand_sym(void) { return 2.0f * test_rand_uniform() - 1.0f; }
static int irand(int lo, int hi) { return lo + (int)(test_rand_u64() % (uint64_t)(hi - lo + 1)); }

static int is_asym(lmp_dtype t) {
    return t == LMP_DTYPE_Q4_1 || t == LMP_DTYPE_Q4_1_G64 || t == LMP_DTYPE_Q4_1_G128;
}

// Fills one weight row of type t with n elements. exact: small integers / power-of-two scale sc.
static void fill_row(lmp_dtype t, void *row, int64_t n, int exact, float sc, int raw) {
    const lmp_type_traits *tt = lmp_type_get(t);
    float *f = malloc((size_t)n * sizeof(float));
    if (!tt->is_quantized) {
        for (int64_t j = 0; j < n; j++) f[j] = exact ? (float)irand(-8, 8) : test_rand_normal() * 0.5f;
        tt->from_float_ref(f, row, n);
    } else if (!exact && !raw) {
        float rs = 0.01f + test_rand_uniform();
        for (int64_t j = 0; j < n; j++) f[j] = test_rand_normal() * rs + (t == LMP_DTYPE_Q4_1 ? 0.3f * rs : 0.0f);
        tt->from_float_ref(f, row, n);
    } else {
        // Random codes (all 256 byte values, so q8_0 gets -128 too), then the scale fields.
        uint8_t *p = row;
        size_t bytes = lmp_type_row_size(t, n);
        for (size_t i = 0; i < bytes; i++) p[i] = (uint8_t)test_rand_u64();
        for (int64_t b = 0; b < n / tt->block_size; b++) {
            uint8_t *blk = p + (size_t)b * tt->type_size;
            lmp_fp16 d = lmp_f32_to_fp16(exact ? sc : (0.001f + test_rand_uniform() * 0.1f) * (test_rand_u64() & 1 ? 1 : -1));
            memcpy(blk, &d, 2);
            if (is_asym(t)) {
                lmp_fp16 m = lmp_f32_to_fp16(exact ? sc * (float)irand(-8, 8) : 0.2f * frand_sym());
                memcpy(blk + 2, &m, 2);
            }
        }
    }
    free(f);
}

// One activation row of n elements in the vec_dot_type of t.
static void fill_x(lmp_dtype t, void *x, float *xf, int64_t n, int exact, float sc) {
    const lmp_type_traits *tt = lmp_type_get(t);
    if (tt->vec_dot_type == LMP_DTYPE_F32) {
        for (int64_t j = 0; j < n; j++) xf[j] = exact ? (float)irand(-8, 8) : test_rand_normal();
        memcpy(x, xf, (size_t)n * sizeof(float));
        return;
    }
    if (tt->vec_dot_type == LMP_DTYPE_Q16_A) {
        lmp_block_q16_a *xb = x;
        if (exact)  // d = sc for every block, codes small enough that every partial sum is exact in float
            for (int64_t b = 0; b < n / 32; b++) {
                xb[b].d = sc;
                for (int j = 0; j < 32; j++) xb[b].qs[j] = (int16_t)irand(-63, 63);
            }
        else {
            for (int64_t j = 0; j < n; j++) xf[j] = test_rand_normal() * (j % 97 == 0 ? 5.0f : 1.0f);
            lmp_kernels_act_quantizer(S, tt->vec_dot_type)(xf, x, n);
        }
        return;
    }
    lmp_block_q8_a *xb = x;
    if (exact) {  // d = sc for every block, codes random in [-63, 63], s = d * sum
        for (int64_t b = 0; b < n / 32; b++) {
            int sum = 0;
            xb[b].d = sc;
            for (int j = 0; j < 32; j++) sum += xb[b].qs[j] = (int8_t)irand(-63, 63);
            xb[b].s = sc * (float)sum;
        }
    } else {
        for (int64_t j = 0; j < n; j++) xf[j] = test_rand_normal() * (j % 97 == 0 ? 5.0f : 1.0f);
        lmp_kernels_act_quantizer(S, tt->vec_dot_type)(xf, x, n);
    }
}

// Integer code of element j of a quantized weight row (q8_0: qs; 4-bit: the nibble 0..15).
static int weight_code(lmp_dtype t, const uint8_t *w, int64_t j) {
    const lmp_type_traits *tt = lmp_type_get(t);
    const int64_t G = tt->block_size;
    const uint8_t *blk = w + (size_t)(j / G) * tt->type_size;
    int64_t e = j % G;
    if (t == LMP_DTYPE_Q8_0) return (int8_t)blk[2 + e];
    const uint8_t *qs = blk + (is_asym(t) ? 4 : 2);
    return e < G / 2 ? qs[e] & 15 : qs[e - G / 2] >> 4;
}

// Magnitude M (see the top comment) of the dot of weight row w (type t) with activation row x.
static double dot_magnitude(lmp_dtype t, const void *w, const void *x, int64_t n) {
    const lmp_type_traits *tt = lmp_type_get(t);
    double M = 0.0;
    if (tt->vec_dot_type == LMP_DTYPE_F32) {
        float *wf = malloc((size_t)n * sizeof(float));
        tt->to_float(w, wf, n);
        const float *xf = x;
        for (int64_t j = 0; j < n; j++) M += fabs((double)wf[j] * xf[j]);
        free(wf);
        return M;
    }
    if (tt->vec_dot_type == LMP_DTYPE_Q16_A) {  // q8_0: no offset, no minimum
        const lmp_block_q16_a *xb = x;
        for (int64_t k = 0; k < n / 32; k++) {
            lmp_fp16 d16;
            memcpy(&d16, (const uint8_t *)w + (size_t)k * tt->type_size, 2);
            double qsum = 0.0;
            for (int j = 0; j < 32; j++) qsum += (double)abs(weight_code(t, w, k * 32 + j)) * abs(xb[k].qs[j]);
            M += fabs(lmp_fp16_to_f32(d16)) * fabs(xb[k].d) * qsum;
        }
        return M;
    }
    const lmp_block_q8_a *xb = x;
    const int64_t G = tt->block_size;
    for (int64_t k = 0; k < n / 32; k++) {
        const uint8_t *blk = (const uint8_t *)w + (size_t)((k * 32) / G) * tt->type_size;
        lmp_fp16 d16, m16 = 0;
        memcpy(&d16, blk, 2);
        if (is_asym(t)) memcpy(&m16, blk + 2, 2);
        double dw = fabs(lmp_fp16_to_f32(d16)), mw = fabs(lmp_fp16_to_f32(m16));
        double qsum = 0.0;
        for (int j = 0; j < 32; j++) qsum += (abs(weight_code(t, w, k * 32 + j)) + 8.0) * abs(xb[k].qs[j]);
        M += dw * fabs(xb[k].d) * qsum + mw * fabs(xb[k].s) + 8.0 * dw * fabs(xb[k].s);
    }
    return M;
}

static double tolerance(lmp_dtype t, const void *w, const void *x, int64_t n) {
    const lmp_type_traits *tt = lmp_type_get(t);
    double M = dot_magnitude(t, w, x, n);
    double k = tt->vec_dot_type == LMP_DTYPE_F32 ? (double)n + 16.0 : (double)(n / 32) + 16.0;
    return k * FLT_EPSILON * M + 1e-30;
}

typedef struct {
    int64_t rows, n;
} shape;

static int g_checked;

// Runs matvec and matmul of table K against the scalar table for type t on one shape and data kind.
static void check_type(const lmp_kernels *K, lmp_dtype t, shape sh, int exact, int raw) {
    const lmp_type_traits *tt = lmp_type_get(t);
    const int64_t rows = sh.rows, n = sh.n;
    const size_t wrb = lmp_type_row_size(t, n);
    const size_t xrb = lmp_type_row_size(tt->vec_dot_type, n);
    const int ms[] = {1, 3, 7, 64};
    const int64_t mmax = 64, ldy = rows + 3;
    uint8_t *w = lmp_malloc(wrb * (size_t)rows);
    uint8_t *x = lmp_malloc(xrb * (size_t)mmax);
    float *xf = malloc((size_t)n * sizeof(float));
    float *y1 = malloc((size_t)(ldy * mmax) * sizeof(float)), *y2 = malloc((size_t)(ldy * mmax) * sizeof(float));
    // Exact data: power-of-two scales, activation codes in [-63, 63], n <= 1024 for the integer types, so
    // every partial sum, in units of dw*dx/8, stays below 2^24 (q4_1: 1024 * (15 + 8) * 63 * 8 < 2^24).
    float wsc = ldexpf(1.0f, irand(-6, -2)), xsc = ldexpf(1.0f, irand(-7, -3));
    for (int64_t r = 0; r < rows; r++) fill_row(t, w + (size_t)r * wrb, n, exact, wsc, raw);
    for (int i = 0; i < mmax; i++) fill_x(t, x + (size_t)i * xrb, xf, n, exact, xsc);

    // matvec over a few row ranges, odd ones included
    int64_t ranges[4][2] = {{0, rows}, {1, rows}, {rows / 2, rows}, {rows > 2 ? 1 : 0, rows > 2 ? rows - 1 : rows}};
    for (int q = 0; q < 4; q++) {
        int64_t r0 = ranges[q][0], r1 = ranges[q][1];
        for (int64_t r = 0; r < rows; r++) y1[r] = y2[r] = SENTINEL;
        S->matvec[t](w, wrb, x, y1, n, r0, r1);
        K->matvec[t](w, wrb, x, y2, n, r0, r1);
        for (int64_t r = 0; r < rows; r++) {
            if (r < r0 || r >= r1) {
                CHECKF(y2[r] == SENTINEL, "%s %s matvec wrote row %lld outside [%lld,%lld)", K->isa, tt->name,
                       (long long)r, (long long)r0, (long long)r1);
                continue;
            }
            double tol = exact ? 0.0 : tolerance(t, w + (size_t)r * wrb, x, n);
            CHECKF(fabs((double)y1[r] - y2[r]) <= tol, "%s %s %s matvec rows=%lld n=%lld r=%lld: scalar %.9g %s %.9g (diff %.3g, tol %.3g)",
                   K->isa, tt->name, exact ? "exact" : "random", (long long)rows, (long long)n, (long long)r, y1[r],
                   K->isa, y2[r], fabs((double)y1[r] - y2[r]), tol);
            g_checked++;
        }
    }
    // matmul (not on the tall shapes: its loops do not depend on the row count beyond MM_ROW_BLOCK, and
    // the scalar reference would take seconds)
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
                    CHECKF(b == SENTINEL, "%s %s matmul m=%d wrote y[%lld][%lld] outside its range", K->isa, tt->name,
                           m, (long long)i, (long long)r);
                    continue;
                }
                double tol = exact ? 0.0 : tolerance(t, w + (size_t)r * wrb, x + (size_t)i * xrb, n);
                if (!(fabs((double)a - b) <= tol)) bad++;
                CHECKF(fabs((double)a - b) <= tol, "%s %s %s matmul m=%d rows=%lld n=%lld y[%lld][%lld]: scalar %.9g %s %.9g (tol %.3g)",
                       K->isa, tt->name, exact ? "exact" : "random", m, (long long)rows, (long long)n, (long long)i,
                       (long long)r, a, K->isa, b, tol);
                g_checked++;
            }
    }
    lmp_free(w);
    lmp_free(x);
    free(xf);
    free(y1);
    free(y2);
}

static const lmp_kernels *g_tables[8];
static int g_ntables;

static void collect_tables(void) {
    S = lmp_kernels_by_isa("scalar");
    for (const char *const *p = lmp_kernels_isa_list(); *p; p++) {
        if (!strcmp(*p, "scalar")) continue;
        const lmp_kernels *k = lmp_kernels_by_isa(*p);
        if (!k) fprintf(stderr, "SKIP table %s: this CPU does not run it (only the scalar reference and the others are tested)\n", *p);
        else if (g_ntables < 8) g_tables[g_ntables++] = k;
    }
    fprintf(stderr, "tables compared with the scalar reference:");
    for (int i = 0; i < g_ntables; i++) fprintf(stderr, " %s", g_tables[i]->isa);
    fprintf(stderr, "\n");
}

static void test_tables_present(void) {
    CHECK(S != NULL);
    CHECK(lmp_kernels_best() != NULL);
    CHECK(lmp_kernels_by_isa("nonsense") == NULL);
    CHECK(lmp_kernels_by_isa(NULL) == NULL);
    for (int i = 0; i < g_ntables; i++)
        for (int t = 0; t < LMP_DTYPE_COUNT; t++) CHECK(g_tables[i]->matvec[t] && g_tables[i]->matmul[t]);
    for (int t = 0; t < LMP_DTYPE_COUNT; t++) CHECK(S->matvec[t] && S->matmul[t]);
}

static void test_all_types(void) {
    if (!g_ntables) SKIP("no SIMD table runs on this CPU");
    // The last shape of each (matvec only, see check_type) spans several of matvec's stretches of
    // 4 x MATVEC_STREAM_BYTES, a short one and single rows: 301 rows of 4.6-9 KB.
    const shape fshapes[] = {{1, 1}, {5, 7}, {9, 33}, {7, 172}, {17, 256}, {6, 1000}, {5, 4096}, {301, 2048}};
    // {37, 2304}: the batched panels (kernels_int_avx512.c) see two whole strips of 16 rows and a tail of 5,
    // and 72 activation blocks: two full chunks of 32 and a partial one. {7, 224}: an odd block count.
    const shape qshapes[] = {{1, 32}, {3, 64}, {9, 128}, {5, 384}, {17, 256}, {6, 1024}, {7, 224}, {37, 2304}, {5, 4096}, {301, 8192}};
    for (int k = 0; k < g_ntables; k++) {
        const lmp_kernels *K = g_tables[k];
        for (int t = 0; t < LMP_DTYPE_Q4_K; t++) {  // the super-block and codebook types: test_kquant.c
            const lmp_type_traits *tt = lmp_type_get((lmp_dtype)t);
            const shape *shs = tt->is_quantized ? qshapes : fshapes;
            const int nsh = tt->is_quantized ? (int)(sizeof qshapes / sizeof qshapes[0]) : (int)(sizeof fshapes / sizeof fshapes[0]);
            for (int s = 0; s < nsh; s++) {
                if (shs[s].n % tt->block_size) continue;
                int exact_ok = !tt->is_quantized || shs[s].n <= 1024;
                if (exact_ok) check_type(K, (lmp_dtype)t, shs[s], 1, 1);
                check_type(K, (lmp_dtype)t, shs[s], 0, 0);
                if (tt->is_quantized) check_type(K, (lmp_dtype)t, shs[s], 0, 1);
            }
        }
    }
    fprintf(stderr, "checked %d outputs\n", g_checked);
}

static void test_quantize_q8a(void) {
    if (!g_ntables) SKIP("no SIMD table runs on this CPU");
    const int64_t n = 32 * 64;
    float *x = malloc(n * sizeof(float));
    lmp_block_q8_a *a = lmp_malloc((size_t)(n / 32) * sizeof *a), *b = lmp_malloc((size_t)(n / 32) * sizeof *b);
    for (int round = 0; round < 20; round++) {
        for (int64_t i = 0; i < n; i++) {
            int blk = (int)(i / 32);
            float scale = ldexpf(1.0f, (blk % 13) - 6);
            x[i] = test_rand_normal() * scale;
            if (blk % 7 == 3) x[i] = 0.0f;  // all-zero blocks
        }
        // Ties: with amax = 127 the scale is exactly 1 and x/d = x, so k + 1/2 must round away from zero.
        for (int blk = 1; blk < 64; blk += 5) {
            float *xb = x + blk * 32;
            xb[0] = (blk & 2) ? 127.0f : -127.0f;
            for (int j = 1; j < 32; j++) xb[j] = (float)irand(-126, 125) + 0.5f;
            xb[1] = 0.5f;
            xb[2] = -0.5f;
            xb[3] = 126.5f;
            xb[4] = -126.5f;
            xb[5] = 0.49999997f;
            xb[6] = -0.49999997f;
        }
        S->quantize_q8a(x, a, n);
        // a few tie values land exactly where expected (checks the reference itself)
        CHECK(a[1].d == 1.0f && a[1].qs[1] == 1 && a[1].qs[2] == -1 && a[1].qs[3] == 127 && a[1].qs[4] == -127 &&
              a[1].qs[5] == 0 && a[1].qs[6] == 0);
        for (int k = 0; k < g_ntables; k++) {
            memset(b, 0x55, (size_t)(n / 32) * sizeof *b);
            g_tables[k]->quantize_q8a(x, b, n);
            int same = memcmp(a, b, (size_t)(n / 32) * sizeof *a) == 0;
            CHECKF(same, "%s quantize_q8a differs from the reference (round %d)", g_tables[k]->isa, round);
            if (!same)
                for (int64_t blk = 0; blk < n / 32; blk++)
                    if (memcmp(&a[blk], &b[blk], sizeof *a)) {
                        fprintf(stderr, "  block %lld: d %.9g/%.9g s %.9g/%.9g\n", (long long)blk, a[blk].d, b[blk].d,
                                a[blk].s, b[blk].s);
                        break;
                    }
        }
    }
    free(x);
    lmp_free(a);
    lmp_free(b);
}

// quantize_q16a: as quantize_q8a, bit-identical to the reference, ties included (amax = 32767 gives d = 1).
static void test_quantize_q16a(void) {
    if (!g_ntables) SKIP("no SIMD table runs on this CPU");
    const int64_t n = 32 * 64;
    float *x = malloc(n * sizeof(float));
    lmp_block_q16_a *a = lmp_malloc((size_t)(n / 32) * sizeof *a), *b = lmp_malloc((size_t)(n / 32) * sizeof *b);
    for (int round = 0; round < 20; round++) {
        for (int64_t i = 0; i < n; i++) {
            int blk = (int)(i / 32);
            x[i] = test_rand_normal() * ldexpf(1.0f, (blk % 13) - 6);
            if (blk % 7 == 3) x[i] = 0.0f;  // all-zero blocks
        }
        for (int blk = 1; blk < 64; blk += 5) {
            float *xb = x + blk * 32;
            xb[0] = (blk & 2) ? 32767.0f : -32767.0f;
            for (int j = 1; j < 32; j++) xb[j] = (float)irand(-32766, 32765) + 0.5f;
            xb[1] = 0.5f;
            xb[2] = -0.5f;
            xb[3] = 32766.5f;
            xb[4] = -32766.5f;
        }
        S->quantize_q16a(x, a, n);
        CHECK(a[1].d == 1.0f && a[1].qs[1] == 1 && a[1].qs[2] == -1 && a[1].qs[3] == 32767 && a[1].qs[4] == -32767);
        for (int k = 0; k < g_ntables; k++) {
            memset(b, 0x55, (size_t)(n / 32) * sizeof *b);
            g_tables[k]->quantize_q16a(x, b, n);
            int same = memcmp(a, b, (size_t)(n / 32) * sizeof *a) == 0;
            CHECKF(same, "%s quantize_q16a differs from the reference (round %d)", g_tables[k]->isa, round);
        }
    }
    free(x);
    lmp_free(a);
    lmp_free(b);
}

// lmp_kernels_act_quantizer, judged by what its quantizers produce rather than by which function it
// returns: for every table and activation type, the quantizer's blocks on fresh random inputs of every
// kind (tests/act_blocks.h: ties, subnormal, huge, zero blocks...) meet the format's bounds and equal the
// reference codec's bytes (format/qtypes.c); weight and float types have no quantizer. Then, for every
// storable type, activations quantized by the quantizer of its vec_dot_type feed the table's matvec: the
// result must be the dot of the dequantized weights with the float activations within the activations'
// rounding (sum over blocks of d/2 sum |w|) plus the kernel's float rounding (tolerance()); a quantizer of
// the wrong type or layout fails this.
static void test_act_quantizer(void) {
    const lmp_dtype acts[2] = {LMP_DTYPE_Q8_A, LMP_DTYPE_Q16_A};
    const int64_t n = 32 * 160;
    float *x = malloc(n * sizeof(float)), *wd = malloc(n * sizeof(float));
    uint8_t *q = lmp_malloc((size_t)(n / 32) * 68), *r = lmp_malloc((size_t)(n / 32) * 68);
    uint8_t *w = lmp_malloc(lmp_type_row_size(LMP_DTYPE_F32, n) * 4);
    for (int k = -1; k < g_ntables; k++) {
        const lmp_kernels *K = k < 0 ? S : g_tables[k];
        for (int a = 0; a < 2; a++) {
            const lmp_dtype A = acts[a];
            const lmp_type_traits *at = lmp_type_get(A);
            lmp_quantize_act_fn f = lmp_kernels_act_quantizer(K, A);
            CHECKF(f != NULL, "%s: no quantizer for %s", K->isa, at->name);
            if (!f) continue;
            for (int round = 0; round < 4; round++) {
                act_fill(A, x, n);
                memset(q, 0x55, (size_t)(n / 32) * at->type_size);
                f(x, q, n);
                char label[64];
                snprintf(label, sizeof label, "%s %s round %d", K->isa, at->name, round);
                int bad = act_check(A, x, q, n, label);
                CHECKF(bad == 0, "%s %s quantizer: %d violations of the format's bounds", K->isa, at->name, bad);
                at->from_float_ref(x, r, n);
                CHECKF(memcmp(q, r, (size_t)(n / 32) * at->type_size) == 0, "%s %s quantizer differs from the reference codec",
                       K->isa, at->name);
            }
        }
        for (int t = 0; t < LMP_DTYPE_COUNT + 3; t++) {
            const lmp_type_traits *tt = lmp_type_get((lmp_dtype)t);
            if (tt && (t == LMP_DTYPE_Q8_A || t == LMP_DTYPE_Q16_A)) continue;
            CHECKF(lmp_kernels_act_quantizer(K, (lmp_dtype)t) == NULL, "%s: dtype %d has an activation quantizer", K->isa, t);
        }
        CHECK(lmp_kernels_act_quantizer(K, (lmp_dtype)LMP_DTYPE_COUNT) == NULL);
        // every storable type through the quantizer of its vec_dot_type
        for (int t = 0; t < LMP_DTYPE_COUNT; t++) {
            const lmp_type_traits *tt = lmp_type_get((lmp_dtype)t);
            if (!tt || !tt->storable) continue;
            const lmp_dtype vt = tt->vec_dot_type;
            if (vt == LMP_DTYPE_F32) {
                CHECK(!tt->is_quantized);
                continue;
            }
            lmp_quantize_act_fn f = lmp_kernels_act_quantizer(K, vt);
            CHECKF(f != NULL, "%s %s: no quantizer for its activations (%s)", K->isa, tt->name, lmp_type_name(vt));
            if (!f || t >= LMP_DTYPE_Q4_K) continue;  // the super-block and codebook types: tests/test_kquant.c
            const int64_t nn = 1024;
            for (int64_t j = 0; j < nn; j++) x[j] = test_rand_normal() * (j % 61 == 0 ? 4.0f : 1.0f);
            fill_row((lmp_dtype)t, w, nn, 0, 0.0f, 0);
            tt->to_float(w, wd, nn);
            f(x, q, nn);
            double exact = 0, act_err = 0;
            for (int64_t j = 0; j < nn; j++) {
                float d;
                memcpy(&d, q + (size_t)(j / 32) * lmp_type_get(vt)->type_size, 4);
                exact += (double)wd[j] * x[j];
                act_err += fabs((double)wd[j]) * (d / 2.0 + FLT_EPSILON * fabs(x[j]));
            }
            float y = SENTINEL;
            K->matvec[t](w, lmp_type_row_size((lmp_dtype)t, nn), q, &y, nn, 0, 1);
            double tol = act_err + tolerance((lmp_dtype)t, w, q, nn);
            CHECKF(fabs(y - exact) <= tol, "%s %s with %s activations: %.9g, exact dot of the dequantized weights %.9g (tol %.3g)",
                   K->isa, tt->name, lmp_type_name(vt), y, exact, tol);
        }
    }
    free(x), free(wd), lmp_free(q), lmp_free(r), lmp_free(w);
}

// The AVX-512 q4_0 decode matvec (kernels_mv_avx512.c, two rows per zmm) keeps the per-lane float
// operations of the 256-bit tile that the AVX2 table runs, so on random data the two give the same bits
// for every row, whatever the range split (odd ranges end in its one-row tail).
static void test_q4_0_matvec_512_bits(void) {
    const lmp_kernels *a2 = lmp_kernels_by_isa("avx2"), *a5 = lmp_kernels_by_isa("avx512vnni");
    if (!a2 || !a5) {
        SKIP("q4_0 512-bit matvec: this CPU does not run %s", a2 ? "avx512vnni" : "avx2");
    }
    const int64_t rows = 53, n = 1536;
    const size_t wrb = lmp_type_row_size(LMP_DTYPE_Q4_0, n), xrb = lmp_type_row_size(LMP_DTYPE_Q8_A, n);
    uint8_t *w = lmp_malloc(wrb * (size_t)rows), *x = lmp_malloc(xrb);
    float *xf = malloc(sizeof(float) * (size_t)n), *y2 = malloc(sizeof(float) * rows), *y5 = malloc(sizeof(float) * rows);
    for (int64_t r = 0; r < rows; r++) fill_row(LMP_DTYPE_Q4_0, w + (size_t)r * wrb, n, 0, 1.0f, 0);
    fill_x(LMP_DTYPE_Q4_0, x, xf, n, 0, 1.0f);
    const int64_t cuts[][2] = {{0, 53}, {0, 16}, {16, 53}, {3, 50}, {7, 8}};
    for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
        int64_t r0 = cuts[c][0], r1 = cuts[c][1];
        a2->matvec[LMP_DTYPE_Q4_0](w, wrb, x, y2, n, r0, r1);
        a5->matvec[LMP_DTYPE_Q4_0](w, wrb, x, y5, n, r0, r1);
        for (int64_t r = r0; r < r1; r++)
            CHECKF(memcmp(&y2[r], &y5[r], sizeof(float)) == 0, "q4_0 matvec rows [%lld, %lld), row %lld: avx2 %.9g, avx512vnni %.9g",
                   (long long)r0, (long long)r1, (long long)r, y2[r], y5[r]);
    }
    lmp_free(w), lmp_free(x), free(xf), free(y2), free(y5);
}

static void test_isa_env(void) {
    const char *old = getenv("LMP_ISA");
    char *saved = old ? strdup(old) : NULL;
    setenv("LMP_ISA", "scalar", 1);
    CHECK(lmp_kernels_best() == S);
    setenv("LMP_ISA", "bogus", 1);
    const lmp_kernels *best = lmp_kernels_best();
    CHECK(best != NULL);
    unsetenv("LMP_ISA");
    CHECK(lmp_kernels_best() == best);
    for (int k = 0; k < g_ntables; k++) {
        setenv("LMP_ISA", g_tables[k]->isa, 1);
        CHECKF(lmp_kernels_best() == g_tables[k], "LMP_ISA=%s not honoured", g_tables[k]->isa);
    }
    if (saved) setenv("LMP_ISA", saved, 1);
    else unsetenv("LMP_ISA");
    free(saved);
}

int main(void) {
    test_seed();
    collect_tables();
    RUN(test_tables_present);
    RUN(test_all_types);
    RUN(test_quantize_q8a);
    RUN(test_quantize_q16a);
    RUN(test_act_quantizer);
    RUN(test_isa_env);
    RUN(test_q4_0_matvec_512_bits);
    return test_report();
}
