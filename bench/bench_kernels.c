// bench_kernels.c - throughput of the CPU kernels (quant/kernels.h) against the machine's read bandwidth.
//
// First measures the read bandwidth (runtime/membw.h, as `lmpress bench` does), then for
// each weight type and shape: matvec (decode) GB/s of weight bytes, % of that bandwidth and GFLOP/s
// for 1 and 2 threads; then matmul (m = 64 and 512 activation rows) GFLOP/s per type against the
// scalar table and, for f32, OpenBLAS cblas_sgemm. Matrices are cycled through enough copies that the
// weights come from DRAM, not from the last-level cache. Rows are split across threads as the CPU
// backend does (lmp_split_range, 16-row aligned). Activation quantization is not timed.
// It is a program, not library code: it prints, and exits on bad options.
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/kernels.h"
#include "format/lmp_common.h"
#include "runtime/membw.h"
#include "format/qtypes.h"
#include "runtime/threadpool.h"

// Declared by OpenBLAS's cblas.h; repeated here so that other CBLAS headers also compile.
void openblas_set_num_threads(int);

typedef struct {
    double min_seconds;  // time per measurement
    int threads[4], n_threads;
    int matmul, matvec;
    const lmp_kernels *k;
    const char *only_type;
    double bw;           // measured read bandwidth, GB/s
    size_t cold_bytes;   // total bytes cycled through per matvec config
    int64_t shape_rows, shape_n;  // --shape: only this matvec shape
} bench_opts;

static void usage(FILE *f) {
    fprintf(f,
            "usage: bench_kernels [options]\n"
            "  Measures matvec / matmul throughput of the kernel table against the machine's read bandwidth.\n"
            "  --isa NAME        kernel table (scalar, avx2, avx512vnni; default: the best this CPU runs)\n"
            "  --threads LIST    comma-separated thread counts (default 1,2)\n"
            "  --type NAME       only this weight type (default: all)\n"
            "  --seconds S       minimum time per measurement (default 0.3)\n"
            "  --quick           shorter runs, fewer shapes (for smoke tests)\n"
            "  --shape RxN       matvec on this shape only (rows x n)\n"
            "  --hot             no copies: weights stay in cache if they fit (measures compute, not DRAM)\n"
            "  --no-bw           skip the bandwidth measurement (%%bw is then shown against 1 GB/s)\n"
            "  --no-matmul       skip the matmul table\n"
            "  --no-matvec       skip the matvec table\n"
            "  -h, --help        this text\n"
            "Environment: LMP_ISA caps the default table as in the runtime.\n");
}

// CPU seconds used by the whole process (all threads). With the wall time it tells whether the run
// had the cores to itself: on a shared machine the wall-clock rates understate the kernels.
static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

// ---- data ----

static uint64_t g_rng = 0x243F6A8885A308D3ull;
static inline uint64_t rnd(void) {
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * 0x2545F4914F6CDD1Dull;
}

// Fills a weight matrix of type t with plausible values: random floats, or random codes with fp16
// scales in [0.001, 0.1) (a realistic spread of distinct scale values).
static void fill_weights(lmp_dtype t, void *w, int64_t rows, int64_t n) {
    const lmp_type_traits *tt = lmp_type_get(t);
    size_t bytes = lmp_type_row_size(t, n) * (size_t)rows;
    if (t == LMP_DTYPE_F32) {
        float *f = w;
        for (size_t i = 0; i < bytes / 4; i++) f[i] = (float)((int64_t)(rnd() >> 40) - (1 << 23)) * 1e-7f;
        return;
    }
    uint64_t *u = w;
    for (size_t i = 0; i < bytes / 8; i++) u[i] = rnd();
    for (size_t i = bytes / 8 * 8; i < bytes; i++) ((uint8_t *)w)[i] = (uint8_t)rnd();
    if (t == LMP_DTYPE_F16 || t == LMP_DTYPE_BF16) {
        uint16_t *h = w;
        for (size_t i = 0; i < bytes / 2; i++) {
            float v = (float)((int)(rnd() >> 48) - 32768) / 32768.0f;
            h[i] = t == LMP_DTYPE_F16 ? lmp_f32_to_fp16(v) : lmp_f32_to_bf16(v);
        }
        return;
    }
    int asym = t == LMP_DTYPE_Q4_1 || t == LMP_DTYPE_Q4_1_G64 || t == LMP_DTYPE_Q4_1_G128 || t == LMP_DTYPE_Q4_K ||
               t == LMP_DTYPE_Q5_K;
    size_t nblocks = bytes / tt->type_size;
    for (size_t b = 0; b < nblocks; b++) {
        uint8_t *blk = (uint8_t *)w + b * tt->type_size;
        lmp_fp16 d = lmp_f32_to_fp16(0.001f + (float)(rnd() >> 40) / (float)(1 << 24) * 0.1f);
        memcpy(blk + (t == LMP_DTYPE_Q6_K ? 208 : 0), &d, 2);  // q6_K keeps its scale at the end
        if (asym) {
            lmp_fp16 m = lmp_f32_to_fp16(-(float)(rnd() >> 40) / (float)(1 << 24) * 0.5f);
            memcpy(blk + 2, &m, 2);
        }
    }
}

// ---- matvec ----

typedef struct {
    const lmp_kernels *k;
    lmp_dtype t;
    const uint8_t *w;
    size_t wrb;
    const void *x;
    size_t xrb;
    float *y;
    int64_t rows, n, m;
} mv_job;

static void mv_worker(void *arg, int ith, int nth) {
    mv_job *j = arg;
    long long r0, r1;
    lmp_split_range(j->rows, ith, nth, 16, &r0, &r1);
    if (r0 < r1) j->k->matvec[j->t](j->w, j->wrb, j->x, j->y, j->n, r0, r1);
}

static void mm_worker(void *arg, int ith, int nth) {
    mv_job *j = arg;
    long long r0, r1;
    lmp_split_range(j->rows, ith, nth, 16, &r0, &r1);
    if (r0 < r1) j->k->matmul[j->t](j->w, j->wrb, j->x, j->xrb, j->m, j->y, j->rows, j->n, r0, r1);
}

static void sgemm_worker(void *arg, int ith, int nth) {
    mv_job *j = arg;
    long long r0, r1;
    lmp_split_range(j->rows, ith, nth, 16, &r0, &r1);
    if (r0 >= r1) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)j->m, (int)(r1 - r0), (int)j->n, 1.0f, j->x, (int)j->n,
                (const float *)(j->w + (size_t)r0 * j->wrb), (int)j->n, 0.0f, j->y + r0, (int)j->rows);
}

// Activation rows (m of them) in the vec_dot_type of t.
static void *make_x(const lmp_kernels *k, lmp_dtype t, int64_t n, int64_t m, size_t *xrb) {
    const lmp_type_traits *tt = lmp_type_get(t);
    *xrb = lmp_type_row_size(tt->vec_dot_type, n);
    float *f = lmp_malloc((size_t)n * sizeof(float));
    void *x = lmp_malloc(*xrb * (size_t)m);
    if (!f || !x) {
        fprintf(stderr, "bench_kernels: out of memory\n");
        exit(1);
    }
    for (int64_t i = 0; i < m; i++) {
        for (int64_t j = 0; j < n; j++) f[j] = (float)((int)(rnd() >> 48) - 32768) / 32768.0f;
        if (tt->vec_dot_type == LMP_DTYPE_F32) memcpy((char *)x + (size_t)i * *xrb, f, (size_t)n * sizeof(float));
        else lmp_kernels_act_quantizer(k, tt->vec_dot_type)(f, (char *)x + (size_t)i * *xrb, n);
    }
    lmp_free(f);
    return x;
}

static void bench_matvec(const bench_opts *o, lmp_pool **pools, lmp_dtype t, int64_t rows, int64_t n) {
    const size_t wrb = lmp_type_row_size(t, n), wbytes = wrb * (size_t)rows;
    int copies = (int)((o->cold_bytes + wbytes - 1) / wbytes);
    if (copies < 1) copies = 1;
    uint8_t *w = lmp_malloc(wbytes * (size_t)copies);
    float *y = lmp_malloc((size_t)rows * sizeof(float));
    if (!w || !y) {
        fprintf(stderr, "bench_kernels: out of memory for %s %lldx%lld\n", lmp_type_name(t), (long long)rows, (long long)n);
        exit(1);
    }
    fill_weights(t, w, rows, n);
    for (int c = 1; c < copies; c++) memcpy(w + (size_t)c * wbytes, w, wbytes);
    size_t xrb;
    void *x = make_x(o->k, t, n, 1, &xrb);
    for (int ti = 0; ti < o->n_threads; ti++) {
        mv_job j = {o->k, t, w, wrb, x, xrb, y, rows, n, 1};
        for (int c = 0; c < copies; c++) {  // warm-up: page in every copy
            j.w = w + (size_t)c * wbytes;
            lmp_pool_run(pools[ti], mv_worker, &j);
        }
        // Each call is timed on its own; the best call is the one that had the cores to itself (this
        // machine may be shared), the median says how steady the rate was.
        double times[4096];
        long calls = 0;
        double t_start = lmp_time_now(), c0 = cpu_seconds();
        do {
            j.w = w + (size_t)(calls % copies) * wbytes;
            double t0 = lmp_time_now();
            lmp_pool_run(pools[ti], mv_worker, &j);
            times[calls % 4096] = lmp_time_now() - t0;
            calls++;
        } while ((lmp_time_now() - t_start < o->min_seconds || calls < copies) && calls < 4096);
        double cpu = (cpu_seconds() - c0) / ((lmp_time_now() - t_start) * lmp_pool_size(pools[ti]));
        qsort(times, (size_t)calls, sizeof times[0], cmp_double);
        double best = times[0], median = times[calls / 2];
        double gbs = (double)wbytes / best / 1e9;
        printf("%-10s %6lld x %-6lld %2d  %8.1f  %8.1f  %7.2f  %5.0f%%  %8.2f  %4.0f%%   (%d x %.1f MB)\n",
               lmp_type_name(t), (long long)rows, (long long)n, lmp_pool_size(pools[ti]), best * 1e6, median * 1e6, gbs,
               100.0 * gbs / o->bw, 2.0 * (double)rows * (double)n / best / 1e9, 100.0 * cpu, copies,
               (double)wbytes / 1e6);
        fflush(stdout);
    }
    lmp_free(x);
    lmp_free(w);
    lmp_free(y);
}

// GFLOP/s of one matmul kind; rows_used < rows times only the first rows_used rows (the scalar table).
static double time_matmul(lmp_pool *pool, lmp_pool_fn fn, mv_job *j, double min_seconds) {
    double best = 1e30, total = 0.0;
    int reps = 0;
    while (reps < 2 || (total < min_seconds && reps < 20)) {
        double t0 = lmp_time_now();
        lmp_pool_run(pool, fn, j);
        double dt = lmp_time_now() - t0;
        total += dt;
        if (dt < best) best = dt;
        reps++;
    }
    return 2.0 * (double)j->rows * (double)j->n * (double)j->m / best / 1e9;
}

static void bench_matmul(const bench_opts *o, lmp_pool **pools, lmp_dtype t, int64_t rows, int64_t n, int64_t m) {
    const lmp_kernels *S = lmp_kernels_by_isa("scalar");
    const size_t wrb = lmp_type_row_size(t, n);
    uint8_t *w = lmp_malloc(wrb * (size_t)rows);
    float *y = lmp_malloc((size_t)rows * (size_t)m * sizeof(float));
    if (!w || !y) {
        fprintf(stderr, "bench_kernels: out of memory\n");
        exit(1);
    }
    fill_weights(t, w, rows, n);
    size_t xrb;
    void *x = make_x(o->k, t, n, m, &xrb);
    for (int ti = 0; ti < o->n_threads; ti++) {
        mv_job j = {o->k, t, w, wrb, x, xrb, y, rows, n, m};
        double g = time_matmul(pools[ti], mm_worker, &j, o->min_seconds);
        // The scalar table is slow: time it on the first 32 rows only (GFLOP/s is per row anyway).
        mv_job js = j;
        js.k = S;
        js.rows = rows < 32 ? rows : 32;
        double gs = time_matmul(pools[ti], mm_worker, &js, o->min_seconds / 4);
        char blas[32] = "";
        if (t == LMP_DTYPE_F32) {
            openblas_set_num_threads(1);  // one OpenBLAS thread per pool thread, as the CPU backend does
            snprintf(blas, sizeof blas, "%8.2f", time_matmul(pools[ti], sgemm_worker, &j, o->min_seconds));
        }
        printf("%-10s %6lld x %-6lld m=%-4lld %2d  %8.2f  %8.2f  %6.1fx  %8s\n", lmp_type_name(t), (long long)rows,
               (long long)n, (long long)m, lmp_pool_size(pools[ti]), g, gs, g / gs, blas);
        fflush(stdout);
    }
    lmp_free(x);
    lmp_free(w);
    lmp_free(y);
}

static int want_type(const bench_opts *o, lmp_dtype t) {
    return !o->only_type || lmp_type_from_name(o->only_type) == (int)t;
}

int main(int argc, char **argv) {
    // 512 MiB of copies: the L3 of this kind of machine (AMD Zen 3, 32 MiB per CCD) does not replace in
    // LRU order, so a cyclic walk over a few times its size still hits in it now and then.
    bench_opts o = {0.3, {1, 2}, 2, 1, 1, NULL, NULL, 0.0, (size_t)512 << 20, 0, 0};
    const char *isa = NULL;
    int quick = 0, hot = 0, no_bw = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--isa") && i + 1 < argc) {
            isa = argv[++i];
        } else if (!strcmp(a, "--type") && i + 1 < argc) {
            o.only_type = argv[++i];
            if (lmp_type_from_name(o.only_type) < 0 || lmp_type_from_name(o.only_type) >= LMP_DTYPE_COUNT) {
                fprintf(stderr, "bench_kernels: unknown weight type '%s'\n", o.only_type);
                return 2;
            }
        } else if (!strcmp(a, "--seconds") && i + 1 < argc) {
            o.min_seconds = atof(argv[++i]);
        } else if (!strcmp(a, "--threads") && i + 1 < argc) {
            o.n_threads = 0;
            for (char *s = argv[++i]; *s && o.n_threads < 4;) {
                int v = (int)strtol(s, &s, 10);
                if (v < 1 || v > 256) {
                    fprintf(stderr, "bench_kernels: bad thread count in --threads\n");
                    return 2;
                }
                o.threads[o.n_threads++] = v;
                if (*s == ',') s++;
                else if (*s) {
                    fprintf(stderr, "bench_kernels: bad --threads list\n");
                    return 2;
                }
            }
        } else if (!strcmp(a, "--shape") && i + 1 < argc) {
            char *e;
            o.shape_rows = strtoll(argv[++i], &e, 10);
            if (*e != 'x' || o.shape_rows < 1 || (o.shape_n = strtoll(e + 1, &e, 10)) < 1 || *e) {
                fprintf(stderr, "bench_kernels: --shape wants ROWSxN, e.g. 4096x14336\n");
                return 2;
            }
        } else if (!strcmp(a, "--hot")) {
            hot = 1;
        } else if (!strcmp(a, "--no-bw")) {
            no_bw = 1;
        } else if (!strcmp(a, "--quick")) {
            quick = 1;
        } else if (!strcmp(a, "--no-matmul")) {
            o.matmul = 0;
        } else if (!strcmp(a, "--no-matvec")) {
            o.matvec = 0;
        } else {
            fprintf(stderr, "bench_kernels: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (quick) {
        o.min_seconds = 0.05;
        o.cold_bytes = (size_t)256 << 20;
    }
    if (hot) o.cold_bytes = 0;
    o.k = isa ? lmp_kernels_by_isa(isa) : lmp_kernels_best();
    if (!o.k) {
        fprintf(stderr, "bench_kernels: kernel table '%s' is unknown or this CPU cannot run it\n", isa);
        return 2;
    }
    lmp_pool *pools[4];
    int maxth = 1;
    for (int i = 0; i < o.n_threads; i++) {
        pools[i] = lmp_pool_new(o.threads[i]);
        if (!pools[i]) {
            fprintf(stderr, "bench_kernels: cannot start %d threads\n", o.threads[i]);
            return 1;
        }
        if (o.threads[i] > maxth) maxth = o.threads[i];
    }
    lmp_pool *bwpool = lmp_pool_new(maxth);
    if (!bwpool) return 1;
    printf("kernel table: %s; CPUs online: %d\n", o.k->isa, lmp_cpu_count());
    if (no_bw) {
        o.bw = 1.0;
    } else {
        // The library's probe, as `lmpress bench` uses: both rooflines rest on the same number.
        const size_t bw_bytes = quick ? (size_t)256 << 20 : LMP_MEMBW_DEFAULT_BYTES;
        const int bw_reps = quick ? 5 : 20;
        o.bw = lmp_measure_read_bandwidth(bwpool, bw_bytes, bw_reps) / 1e9;
        if (o.bw <= 0) {
            fprintf(stderr, "bench_kernels: cannot allocate %zu MiB for the bandwidth test\n", bw_bytes >> 20);
            return 1;
        }
        printf("read bandwidth (%d threads reading a %zu MiB buffer, %d streams per thread, best of %d): %.2f GB/s\n",
               maxth, bw_bytes >> 20, LMP_MEMBW_STREAMS, bw_reps, o.bw);
    }
    printf("(rates from the best call; cpu = CPU time the run got / (wall time x threads): well below 100%%\n"
           " means the machine was shared and even the best calls may understate the kernels)\n\n");
    lmp_pool_free(bwpool);

    if (o.matvec) {
        printf("matvec (decode): weights cycled through copies so they come from DRAM\n");
        printf("%-10s %15s %3s  %8s  %8s  %7s  %6s  %8s  %5s\n", "type", "rows x n", "th", "best us", "median", "GB/s",
               "%bw", "GFLOP/s", "cpu");
        static const struct {
            int64_t rows, n;
        } fshapes[] = {{4096, 4096}, {768, 2048}, {4096, 14336}, {14336, 4096}},
          qshapes[] = {{4096, 14336}, {14336, 4096}, {4096, 4096}};
        for (int t = 0; t < LMP_DTYPE_COUNT; t++) {
            if (!want_type(&o, (lmp_dtype)t)) continue;
            int quantized = lmp_type_get((lmp_dtype)t)->is_quantized;
            int ns = quantized ? (quick ? 1 : 2) : (t == LMP_DTYPE_F32 ? (quick ? 2 : 4) : (quick ? 1 : 2));
            if (o.shape_rows) {
                if (o.shape_n % lmp_type_get((lmp_dtype)t)->block_size == 0)
                    bench_matvec(&o, pools, (lmp_dtype)t, o.shape_rows, o.shape_n);
                continue;
            }
            for (int s = 0; s < ns; s++) {
                if (quantized) bench_matvec(&o, pools, (lmp_dtype)t, qshapes[s].rows, qshapes[s].n);
                else bench_matvec(&o, pools, (lmp_dtype)t, fshapes[s].rows, fshapes[s].n);
            }
        }
        printf("\n");
    }
    if (o.matmul) {
        printf("matmul (prefill): GFLOP/s of the %s table, of the scalar table, ratio, and OpenBLAS sgemm (f32)\n",
               o.k->isa);
        printf("%-10s %15s %6s %3s  %8s  %8s  %7s  %8s\n", "type", "rows x n", "m", "th", o.k->isa, "scalar", "ratio",
               "sgemm");
        const int64_t ms[] = {64, 512};
        for (int t = 0; t < LMP_DTYPE_COUNT; t++) {
            if (!want_type(&o, (lmp_dtype)t)) continue;
            for (int q = 0; q < (quick ? 1 : 2); q++) bench_matmul(&o, pools, (lmp_dtype)t, quick ? 1024 : 4096, 4096, ms[q]);
        }
    }
    for (int i = 0; i < o.n_threads; i++) lmp_pool_free(pools[i]);
    return 0;
}
