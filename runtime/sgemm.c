// sgemm.c - the batched float32 product (sgemm.h): the scalar reference, the portable C tiles, the
// per-thread panel buffers, the OpenBLAS check and the per-process choice between BLAS and the tiles.
//
// Why a choice at all: OpenBLAS's DYNAMIC_ARCH picks its kernels by CPU model; on a CPU it does not know
// (virtualised Sapphire Rapids with Debian 12's 0.3.21) it falls back to SSE3 "Prescott" kernels, 3 to 4
// times slower than the tiles, while on the AMD Zen machines it picks its Zen kernels, which may beat them.
// A short measurement on the machine itself decides, so that a misdetected BLAS can never make it slow.
#include "runtime/sgemm.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "format/lmp_common.h"

char *openblas_get_corename(void);

// ---- reference ----
void lmp_sgemm_ref(int ta, int tb, int m, int n, int k, float alpha, const float *A, int lda, const float *B,
                   int ldb, float beta, float *C, int ldc) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            float s = 0.0f;
            for (int p = 0; p < k; p++)
                s += (ta ? A[(long)p * lda + i] : A[(long)i * lda + p]) * (tb ? B[(long)j * ldb + p] : B[(long)p * ldb + j]);
            float *c = &C[(long)i * ldc + j];
            *c = beta == 0.0f ? alpha * s : alpha * s + beta * *c;
        }
}

// ---- per-thread panel buffers ----
static pthread_key_t g_scratch_key;
static pthread_once_t g_scratch_once = PTHREAD_ONCE_INIT;
typedef struct {
    float *p;
    size_t n;
} scratch_buf;

static void scratch_free(void *v) {
    scratch_buf *s = v;
    if (s) lmp_free(s->p);
    lmp_free(s);
}
static void scratch_key_make(void) { pthread_key_create(&g_scratch_key, scratch_free); }

float *lmp_sgemm_scratch(size_t floats);
float *lmp_sgemm_scratch(size_t floats) {
    pthread_once(&g_scratch_once, scratch_key_make);
    scratch_buf *s = pthread_getspecific(g_scratch_key);
    if (!s) {
        s = lmp_calloc(1, sizeof *s);
        if (!s || pthread_setspecific(g_scratch_key, s)) {
            lmp_free(s);
            return NULL;
        }
    }
    if (s->n < floats) {
        float *p = lmp_malloc(floats * sizeof(float));  // 64-byte aligned (lmp_common.h)
        if (!p) return NULL;
        lmp_free(s->p);
        s->p = p;
        s->n = floats;
    }
    return s->p;
}

// ---- portable C tiles (4 x 4; the compiler vectorizes what it can) ----
#define SG_MR 4
#define SG_NR 4
#define SG_KC 256
#define SG_MC 64
#define SG_NC 1024
#define SG_FUNC lmp_sgemm_tiles_c
static inline void sg_kernel_c(int kc, const float *restrict a, const float *restrict b, float *restrict c,
                               long ldc, float alpha, float beta) {
    float acc[SG_MR][SG_NR] = {{0}};
    for (int p = 0; p < kc; p++, a += SG_MR, b += SG_NR)
        for (int i = 0; i < SG_MR; i++)
            for (int j = 0; j < SG_NR; j++) acc[i][j] += a[i] * b[j];
    for (int i = 0; i < SG_MR; i++)
        for (int j = 0; j < SG_NR; j++) {
            float *cij = c + (long)i * ldc + j;
            *cij = beta == 0.0f ? alpha * acc[i][j] : alpha * acc[i][j] + beta * *cij;
        }
}
#define SG_KERNEL sg_kernel_c
void lmp_sgemm_tiles_c(int ta, int tb, int m, int n, int k, float alpha, const float *A, int lda, const float *B,
                       int ldb, float beta, float *C, int ldc);
#include "runtime/sgemm_tiles.h"

#if defined(__x86_64__)
void lmp_sgemm_tiles_avx2(int ta, int tb, int m, int n, int k, float alpha, const float *A, int lda,
                          const float *B, int ldb, float beta, float *C, int ldc);
void lmp_sgemm_tiles_avx512(int ta, int tb, int m, int n, int k, float alpha, const float *A, int lda,
                            const float *B, int ldb, float beta, float *C, int ldc);
#endif

typedef void (*sgemm_fn)(int, int, int, int, int, float, const float *, int, const float *, int, float, float *,
                         int);

// ---- the tile ISAs ----
#if defined(__x86_64__)
static const char *const g_tile_names[] = {"avx512", "avx2", "c", NULL};
static const sgemm_fn g_tile_fns[] = {lmp_sgemm_tiles_avx512, lmp_sgemm_tiles_avx2, lmp_sgemm_tiles_c};
#else
static const char *const g_tile_names[] = {"c", NULL};
static const sgemm_fn g_tile_fns[] = {lmp_sgemm_tiles_c};
#endif
#define N_TILES ((int)(sizeof g_tile_fns / sizeof g_tile_fns[0]))

static int tile_runs(int i) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    // the same conditions as the kernel tables (runtime/kernels.c): these files are compiled with them
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (!strcmp(g_tile_names[i], "avx512"))
        return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    if (!strcmp(g_tile_names[i], "avx2")) return avx2;
#endif
    return 1;
}

const char *const *lmp_sgemm_tiles_list(void) { return g_tile_names; }

static int best_tile(void) {
    for (int i = 0; i < N_TILES; i++)
        if (tile_runs(i)) return i;
    return N_TILES - 1;
}

const char *lmp_sgemm_tiles_best(void) { return g_tile_names[best_tile()]; }

int lmp_sgemm_tiles(const char *isa, int ta, int tb, int m, int n, int k, float alpha, const float *A, int lda,
                    const float *B, int ldb, float beta, float *C, int ldc) {
    for (int i = 0; i < N_TILES; i++)
        if (isa && !strcmp(isa, g_tile_names[i])) {
            if (!tile_runs(i)) return 0;
            g_tile_fns[i](ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
            return 1;
        }
    return 0;
}

void lmp_sgemm_blas(int ta, int tb, int m, int n, int k, float alpha, const float *A, int lda, const float *B,
                    int ldb, float beta, float *C, int ldc) {
    if (m <= 0 || n <= 0) return;
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, A,
                lda, B, ldb, beta, C, ldc);
}

// ---- the BLAS check ----
// A small generator of its own (the check must not disturb rand()), seeded from the clock: fresh inputs.
static uint64_t rng_next(uint64_t *s) {
    *s += 0x9E3779B97F4A7C15ull;
    uint64_t z = *s;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static float rng_sym(uint64_t *s) { return (float)((double)(rng_next(s) >> 11) * 0x1.0p-53 * 2.0 - 1.0); }

// One product of BLAS against the reference: the worst |blas - ref| / tol over C, where per output
// tol = (k + 8) * FLT_EPSILON * (|alpha| sum_p |a_ip b_pj| + |beta c_ij|): both compute a float sum of k
// terms, in different orders (each within k u S of the exact sum).
static double check_one(uint64_t *s, int ta, int tb, int m, int n, int k, float alpha, float beta) {
    const int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 1, ldc = n + 2;
    const size_t na = (size_t)(ta ? k : m) * lda, nb = (size_t)(tb ? n : k) * ldb, nc = (size_t)m * ldc;
    float *A = lmp_malloc(na * sizeof(float)), *B = lmp_malloc(nb * sizeof(float));
    float *C0 = lmp_malloc(nc * sizeof(float)), *C1 = lmp_malloc(nc * sizeof(float)), *C2 = lmp_malloc(nc * sizeof(float));
    double worst = 0.0;
    if (!A || !B || !C0 || !C1 || !C2) {
        worst = -1.0;  // not checked
        goto done;
    }
    for (size_t i = 0; i < na; i++) A[i] = rng_sym(s);
    for (size_t i = 0; i < nb; i++) B[i] = rng_sym(s);
    for (size_t i = 0; i < nc; i++) C0[i] = rng_sym(s);
    memcpy(C1, C0, nc * sizeof(float));
    memcpy(C2, C0, nc * sizeof(float));
    lmp_sgemm_blas(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C1, ldc);
    lmp_sgemm_ref(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C2, ldc);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double mag = 0.0;
            for (int p = 0; p < k; p++)
                mag += fabs((double)(ta ? A[(long)p * lda + i] : A[(long)i * lda + p]) *
                            (double)(tb ? B[(long)j * ldb + p] : B[(long)p * ldb + j]));
            double tol = (k + 8) * (double)FLT_EPSILON * (fabs(alpha) * mag + fabs(beta * C0[(long)i * ldc + j])) + 1e-30;
            double e = fabs((double)C1[(long)i * ldc + j] - (double)C2[(long)i * ldc + j]) / tol;
            if (!(e <= worst)) worst = isnan(e) ? INFINITY : e;
        }
    // outside the m x n block (the row padding) nothing may change
    for (int i = 0; i < m; i++)
        for (int j = n; j < ldc; j++)
            if (C1[(long)i * ldc + j] != C0[(long)i * ldc + j]) worst = INFINITY;
done:
    lmp_free(A);
    lmp_free(B);
    lmp_free(C0);
    lmp_free(C1);
    lmp_free(C2);
    return worst;
}

double lmp_sgemm_blas_check(void) {
    uint64_t s = (uint64_t)time(NULL) ^ ((uint64_t)clock() << 20) ^ (uint64_t)(uintptr_t)&s;
    // odd shapes around the kernels' register and cache blocks, every transpose pair, alpha and beta; and
    // the runtime's shape (x W^T with k a multiple of 64)
    static const int shapes[][3] = {{1, 1, 1}, {7, 13, 5}, {37, 45, 67}, {61, 33, 300}, {130, 70, 64}, {16, 96, 576}};
    double worst = 0.0;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int t = 0; t < 4; t++) {
            float alpha = si % 2 ? 1.0f : 0.75f, beta = t == 3 ? 0.5f : si == 2 ? 1.0f : 0.0f;
            double e = check_one(&s, t & 1, t >> 1, shapes[si][0], shapes[si][1], shapes[si][2], alpha, beta);
            if (e < 0) return -1.0;
            if (e > worst) worst = e;
        }
    return worst;
}

// ---- the choice ----
static lmp_sgemm_info g_info;
static sgemm_fn g_fn;
static pthread_once_t g_choice_once = PTHREAD_ONCE_INIT;

// Single-thread GFLOP/s of fn on y(m, n) = x(m, k) W(n, k)^T, the best of several runs after a warm-up.
static double time_gflops(sgemm_fn fn, const float *x, const float *w, float *y, int m, int n, int k) {
    double best = 0.0;
    for (int r = 0; r < 6; r++) {
        double t0 = lmp_time_now();
        fn(0, 1, m, n, k, 1.0f, x, k, w, k, 0.0f, y, n);
        double dt = lmp_time_now() - t0;
        if (r > 0 && dt > 0 && 2.0 * m * n * k / dt * 1e-9 > best) best = 2.0 * m * n * k / dt * 1e-9;
    }
    return best;
}

static void choose(void) {
    lmp_sgemm_info *in = &g_info;
    int bt = best_tile();
    in->tiles_isa = g_tile_names[bt];
    const char *core = openblas_get_corename();
    in->blas_core = core ? core : "unknown";
    double e = lmp_sgemm_blas_check();
    in->blas_max_err = e;
    in->blas_correct = e >= 0.0 && e <= 1.0;
    const char *env = getenv("LMP_F32_MATMUL");
    in->use_blas = 0;
    if (!in->blas_correct) {
        in->reason = e < 0.0 ? "out of memory for the BLAS check" : "OpenBLAS computes wrong results on this machine";
    } else if (env && !strcmp(env, "blas")) {
        in->use_blas = 1;
        in->reason = "LMP_F32_MATMUL=blas";
    } else if (env && !strcmp(env, "tiles")) {
        in->reason = "LMP_F32_MATMUL=tiles";
    } else {
        // the runtime's product on one core's slice: 128 tokens, 256 weight rows of 768
        const int m = 128, n = 256, k = 768;
        float *x = lmp_malloc((size_t)m * k * sizeof(float)), *w = lmp_malloc((size_t)n * k * sizeof(float));
        float *y = lmp_malloc((size_t)m * n * sizeof(float));
        if (x && w && y) {
            uint64_t s = 12345;
            for (int i = 0; i < m * k; i++) x[i] = rng_sym(&s);
            for (int i = 0; i < n * k; i++) w[i] = rng_sym(&s);
            // interleaved, twice each, so that a burst of other load on the machine hits both
            double b1 = time_gflops(lmp_sgemm_blas, x, w, y, m, n, k);
            double t1 = time_gflops(g_tile_fns[bt], x, w, y, m, n, k);
            double b2 = time_gflops(lmp_sgemm_blas, x, w, y, m, n, k);
            double t2 = time_gflops(g_tile_fns[bt], x, w, y, m, n, k);
            in->blas_gflops = b1 > b2 ? b1 : b2;
            in->tiles_gflops = t1 > t2 ? t1 : t2;
            // BLAS must win clearly: where the two are close the timing would flip between runs, and with it
            // the rounding of every product (a resumed training run would no longer end bit-identical)
            in->use_blas = in->blas_gflops > 1.25 * in->tiles_gflops;
            in->reason = "measured (BLAS must be 1.25x faster)";
        } else {
            in->reason = "out of memory for the measurement";
        }
        lmp_free(x);
        lmp_free(w);
        lmp_free(y);
    }
    in->path = in->use_blas ? "blas" : "tiles";
    g_fn = in->use_blas ? lmp_sgemm_blas : g_tile_fns[bt];
}

const lmp_sgemm_info *lmp_sgemm_choice(void) {
    pthread_once(&g_choice_once, choose);
    return &g_info;
}

void lmp_sgemm(int ta, int tb, int m, int n, int k, float alpha, const float *A, int lda, const float *B, int ldb,
               float beta, float *C, int ldc) {
    pthread_once(&g_choice_once, choose);
    g_fn(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}
