// test_sgemm.c - the float32 sgemm tiles of every ISA this CPU runs, and the dispatching lmp_sgemm,
// against the scalar reference (runtime/sgemm.h), on fresh random inputs.
//
// Shapes: 1 x 1 x 1, every size around the microkernels' tiles (4, 6, 12 rows; 4, 16, 32 columns) and
// cache blocks (k across 256, m across 96/144, n across 2048), all four transpose pairs, alpha and beta
// (beta = 0 on a C full of NaN: C must not be read), leading dimensions larger than the rows.
// Tolerance per output: (k + 8) * FLT_EPSILON * (|alpha| sum_p |a_ip b_pj| + |beta c_ij|): both sides are a
// float sum of k products in different orders (each within k u S of the exact value, u = eps / 2).
// Small-integer inputs make every partial sum exact: there the tiles must equal the reference bit for bit.
// Elements of C outside the m x n block must stay untouched.
#include <float.h>

#include "format/lmp_common.h"
#include "runtime/sgemm.h"
#include "tests/test_util.h"

static float frand_sym(void) { return 2.0f * test_rand_uniform() - 1.0f; }

typedef int (*gemm_under_test)(void *ctx, int ta, int tb, int m, int n, int k, float alpha, const float *A, int lda,
                               const float *B, int ldb, float beta, float *C, int ldc);

static int call_tiles(void *ctx, int ta, int tb, int m, int n, int k, float alpha, const float *A, int lda,
                      const float *B, int ldb, float beta, float *C, int ldc) {
    return lmp_sgemm_tiles((const char *)ctx, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}
static int call_dispatch(void *ctx, int ta, int tb, int m, int n, int k, float alpha, const float *A, int lda,
                         const float *B, int ldb, float beta, float *C, int ldc) {
    lmp_sgemm(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
    return 1;
}
static int call_blas(void *ctx, int ta, int tb, int m, int n, int k, float alpha, const float *A, int lda,
                     const float *B, int ldb, float beta, float *C, int ldc) {
    lmp_sgemm_blas(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
    return 1;
}

// One product under test against the reference. exact: small integers (results must be identical).
// Returns the worst error in units of the tolerance (exact: 0 or INFINITY); INFINITY also for a change
// outside the block.
static double one(gemm_under_test f, void *ctx, int ta, int tb, int m, int n, int k, float alpha, float beta,
                  int exact) {
    const int lda = (ta ? m : k) + (int)(test_rand_u64() % 3), ldb = (tb ? k : n) + (int)(test_rand_u64() % 3);
    const int ldc = n + 1 + (int)(test_rand_u64() % 2);
    const size_t na = (size_t)(ta ? k : m) * lda, nb = (size_t)(tb ? n : k) * ldb, nc = (size_t)m * ldc;
    float *A = malloc(na * sizeof(float) + 4), *B = malloc(nb * sizeof(float) + 4);
    float *C0 = malloc(nc * sizeof(float)), *C1 = malloc(nc * sizeof(float)), *C2 = malloc(nc * sizeof(float));
    for (size_t i = 0; i < na; i++) A[i] = exact ? (float)((int)(test_rand_u64() % 9) - 4) : frand_sym();
    for (size_t i = 0; i < nb; i++) B[i] = exact ? (float)((int)(test_rand_u64() % 9) - 4) : frand_sym();
    for (size_t i = 0; i < nc; i++) C0[i] = exact ? (float)((int)(test_rand_u64() % 9) - 4) : frand_sym();
    if (beta == 0.0f)  // C must not be read: NaN there would show in the result
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) C0[(size_t)i * ldc + j] = NAN;
    memcpy(C1, C0, nc * sizeof(float));
    memcpy(C2, C0, nc * sizeof(float));
    double worst = 0.0;
    if (!f(ctx, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C1, ldc)) {
        worst = -1.0;
        goto done;
    }
    lmp_sgemm_ref(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C2, ldc);
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < n; j++) {
            size_t o = (size_t)i * ldc + j;
            double e;
            if (exact) {
                e = C1[o] == C2[o] ? 0.0 : INFINITY;
            } else {
                double mag = 0.0;
                for (int p = 0; p < k; p++)
                    mag += fabs((double)(ta ? A[(size_t)p * lda + i] : A[(size_t)i * lda + p]) *
                                (double)(tb ? B[(size_t)j * ldb + p] : B[(size_t)p * ldb + j]));
                double cb = beta == 0.0f ? 0.0 : fabs((double)beta * C0[o]);
                double tol = (k + 8) * (double)FLT_EPSILON * (fabs(alpha) * mag + cb) + 1e-30;
                e = fabs((double)C1[o] - (double)C2[o]) / tol;
                if (isnan(e)) e = INFINITY;
            }
            if (e > worst) worst = e;
        }
        for (int j = n; j < ldc; j++)
            if (memcmp(&C1[(size_t)i * ldc + j], &C0[(size_t)i * ldc + j], sizeof(float))) worst = INFINITY;
    }
done:
    free(A);
    free(B);
    free(C0);
    free(C1);
    free(C2);
    return worst;
}

static const int g_sizes[] = {1, 2, 3, 4, 5, 6, 7, 11, 12, 13, 15, 16, 17, 31, 32, 33, 47, 97, 145};

// Every size pair of g_sizes for (m, n) with k drawn around the tiles, four transpose pairs.
static void check_all_shapes(gemm_under_test f, void *ctx, const char *name) {
    const int ns = (int)(sizeof g_sizes / sizeof g_sizes[0]);
    double worst = 0.0;
    int wm = 0, wn = 0, wk = 0, wt = 0, count = 0;
    for (int a = 0; a < ns; a++)
        for (int b = 0; b < ns; b++) {
            int m = g_sizes[a], n = g_sizes[b];
            int ks[] = {1, 3, 17, 64, 255, 257};
            int k = ks[test_rand_u64() % 6];
            int t = (int)(test_rand_u64() % 4);
            float alphas[] = {1.0f, 0.5f, -2.0f}, betas[] = {0.0f, 1.0f, 0.3f};
            float alpha = alphas[test_rand_u64() % 3], beta = betas[test_rand_u64() % 3];
            double e = one(f, ctx, t & 1, t >> 1, m, n, k, alpha, beta, 0);
            count++;
            if (e < 0) {
                CHECKF(0, "%s did not run", name);
                return;
            }
            if (e > worst) worst = e, wm = m, wn = n, wk = k, wt = t;
        }
    CHECKF(worst <= 1.0, "%s: worst error %.3g x tol at m %d n %d k %d ta %d tb %d (%d products)", name, worst, wm,
           wn, wk, wt & 1, wt >> 1, count);
}

// Cache-block edges: k across several KC blocks, m across MC, n across NC; every transpose pair, exact
// and random data.
static void check_blocks(gemm_under_test f, void *ctx, const char *name) {
    static const int shapes[][3] = {{145, 40, 513}, {289, 33, 70}, {13, 2100, 300}, {1, 4097, 7}, {50, 50, 1000}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int t = 0; t < 4; t++) {
            int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
            double e = one(f, ctx, t & 1, t >> 1, m, n, k, t == 2 ? 0.25f : 1.0f, t == 3 ? 1.0f : 0.0f, 0);
            CHECKF(e >= 0 && e <= 1.0, "%s: error %.3g x tol at m %d n %d k %d ta %d tb %d", name, e, m, n, k, t & 1,
                   t >> 1);
            double x = one(f, ctx, t & 1, t >> 1, m, n, k < 300 ? k : 300, 1.0f, t & 1 ? 1.0f : 0.0f, 1);
            CHECKF(x == 0.0, "%s: small-integer inputs not bit-identical at m %d n %d k %d ta %d tb %d", name, m, n,
                   k, t & 1, t >> 1);
        }
}

static void test_reference(void) {
    // 2 x 3 by 3 x 2 by hand, and the transposed layouts of the same numbers
    const float A[6] = {1, 2, 3, 4, 5, 6}, At[6] = {1, 4, 2, 5, 3, 6};                  // (2, 3), (3, 2)
    const float B[6] = {7, 8, 9, 10, 11, 12}, Bt[6] = {7, 9, 11, 8, 10, 12};            // (3, 2), (2, 3)
    const float want[4] = {58, 64, 139, 154};
    for (int t = 0; t < 4; t++) {
        float C[4] = {1, 1, 1, 1};
        lmp_sgemm_ref(t & 1, t >> 1, 2, 2, 3, 2.0f, t & 1 ? At : A, t & 1 ? 2 : 3, t >> 1 ? Bt : B, t >> 1 ? 3 : 2,
                      0.5f, C, 2);
        for (int i = 0; i < 4; i++) CHECKF(C[i] == 2 * want[i] + 0.5f, "t %d C[%d] = %g", t, i, C[i]);
    }
}

static void test_tiles(void) {
    const char *const *list = lmp_sgemm_tiles_list();
    int ran = 0;
    for (int i = 0; list[i]; i++) {
        float c = 0, a = 1, b = 1;
        if (!lmp_sgemm_tiles(list[i], 0, 0, 1, 1, 1, 1.0f, &a, 1, &b, 1, 0.0f, &c, 1)) {
            fprintf(stderr, "SKIP-ISA sgemm tiles %s: this CPU does not run them\n", list[i]);
            continue;
        }
        CHECK(c == 1.0f);
        check_all_shapes(call_tiles, (void *)list[i], list[i]);
        check_blocks(call_tiles, (void *)list[i], list[i]);
        ran++;
    }
    CHECK(ran >= 1);
    CHECK(!lmp_sgemm_tiles("no-such-isa", 0, 0, 1, 1, 1, 1.0f, NULL, 1, NULL, 1, 0.0f, NULL, 1));
}

// The choice: consistent with the BLAS check, and lmp_sgemm (whichever path) correct.
static void test_dispatch(void) {
    const lmp_sgemm_info *in = lmp_sgemm_choice();
    CHECK(in->path && in->tiles_isa && in->blas_core && in->reason);
    CHECK(!strcmp(in->path, in->use_blas ? "blas" : "tiles"));
    CHECK(!strcmp(in->tiles_isa, lmp_sgemm_tiles_best()));
    if (!in->blas_correct) CHECK(!in->use_blas);  // a wrong BLAS is never used
    printf("sgemm path %s (%s), tiles %s %.1f GFLOP/s, OpenBLAS core %s %.1f GFLOP/s, check %.3g x tol%s\n",
           in->path, in->reason, in->tiles_isa, in->tiles_gflops, in->blas_core, in->blas_gflops, in->blas_max_err,
           in->blas_correct ? "" : " (WRONG)");
    check_all_shapes(call_dispatch, NULL, "lmp_sgemm");
    check_blocks(call_dispatch, NULL, "lmp_sgemm");
}

// The check itself must pass this machine's BLAS only if BLAS is right: it agrees with this test's own
// comparison of BLAS against the reference.
static void test_blas_check(void) {
    double e = lmp_sgemm_blas_check();
    CHECK(e >= 0.0);
    double mine = 0.0;
    for (int t = 0; t < 4; t++) {
        double x = one(call_blas, NULL, t & 1, t >> 1, 37, 45, 67, 0.75f, t == 3 ? 0.5f : 0.0f, 0);
        if (x > mine) mine = x;
    }
    if (e <= 1.0) CHECKF(mine <= 1.0, "the check passed BLAS, which is %.3g x tol off here", mine);
    else fprintf(stderr, "note: OpenBLAS (%s) fails the check here (%.3g x tol)\n", lmp_sgemm_choice()->blas_core, e);
    CHECK(1);
}

int main(void) {
    test_seed();
    RUN(test_reference);
    RUN(test_tiles);
    RUN(test_blas_check);
    RUN(test_dispatch);
    return test_report();
}
