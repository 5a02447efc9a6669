// test_gptq.c - the GPTQ core (quant/gptq.h) on random correlated problems, against plain RTN and
// against the independent NumPy implementation (scripts/ref_gptq.py -> tests/fixtures/gptq/gptq_ref.bin);
// dead columns, non-positive-definite H, argument errors, allocation failures; and a small GPTQ pass
// on the shipped model (models/default.lmp, calibrated on models/default-calib.txt).
#include <stdlib.h>

#include "quant/gptq.h"
#include "format/qtypes.h"
#include "quant/quantize.h"
#include "tests/test_util.h"

// A random problem: W (rows, cols) ~ N(0, 0.05^2); X (n, cols) correlated (latent factors mixed into
// every channel, channel scales over a decade, independent noise); H = 2/n X^T X.
typedef struct {
    int64_t rows, cols, n;
    float *W;  // (rows, cols)
    float *X;  // (n, cols)
    float *H;  // (cols, cols)
} problem;

static void gram(problem *p) {
    for (int64_t a = 0; a < p->cols; a++)
        for (int64_t b = a; b < p->cols; b++) {
            double s = 0;
            for (int64_t i = 0; i < p->n; i++) s += (double)p->X[i * p->cols + a] * p->X[i * p->cols + b];
            p->H[a * p->cols + b] = p->H[b * p->cols + a] = (float)(2.0 * s / (double)p->n);
        }
}

static problem make_problem(int64_t rows, int64_t cols, int64_t n, int k, float noise) {
    problem p = {rows, cols, n, malloc(sizeof(float) * rows * cols), malloc(sizeof(float) * n * cols),
                 malloc(sizeof(float) * cols * cols)};
    float *mix = malloc(sizeof(float) * k * cols), *scale = malloc(sizeof(float) * cols), *z = malloc(sizeof(float) * k);
    for (int64_t i = 0; i < (int64_t)k * cols; i++) mix[i] = test_rand_normal();
    for (int64_t c = 0; c < cols; c++) scale[c] = expf(2.4f * test_rand_uniform() - 1.2f);
    for (int64_t i = 0; i < n; i++) {
        for (int f = 0; f < k; f++) z[f] = test_rand_normal();
        for (int64_t c = 0; c < cols; c++) {
            float s = noise * test_rand_normal();
            for (int f = 0; f < k; f++) s += z[f] * mix[f * cols + c];
            p.X[i * cols + c] = s * scale[c];
        }
    }
    for (int64_t i = 0; i < rows * cols; i++) p.W[i] = 0.05f * test_rand_normal();
    gram(&p);
    free(mix);
    free(scale);
    free(z);
    return p;
}

static void free_problem(problem *p) {
    free(p->W);
    free(p->X);
    free(p->H);
}

static float *dequant(lmp_dtype t, const void *q, int64_t rows, int64_t cols) {
    float *y = malloc(sizeof(float) * rows * cols);
    size_t rs = lmp_type_row_size(t, cols);
    for (int64_t r = 0; r < rows; r++) lmp_type_get(t)->to_float((const char *)q + r * rs, y + r * cols, cols);
    return y;
}

// tr(D H D^T) with D = W - Q (double), plus lambda * ||D||^2 (the dampening term).
static double quad_loss(const float *W, const float *Q, const float *H, int64_t rows, int64_t cols, double lambda) {
    double tot = 0;
    double *d = malloc(sizeof(double) * cols);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t c = 0; c < cols; c++) d[c] = (double)W[r * cols + c] - Q[r * cols + c];
        for (int64_t a = 0; a < cols; a++) {
            double s = 0;
            for (int64_t b = 0; b < cols; b++) s += (double)H[a * cols + b] * d[b];
            tot += d[a] * s + lambda * d[a] * d[a];
        }
    }
    free(d);
    return tot;
}

static double mean_diag(const float *H, int64_t cols) {
    double s = 0;
    for (int64_t i = 0; i < cols; i++) s += H[i * cols + i];
    return s / (double)cols;
}

// Loss of plain RTN (the type's reference quantizer) on the same problem.
static double rtn_loss(lmp_dtype t, const problem *p) {
    size_t rs = lmp_type_row_size(t, p->cols);
    void *q = malloc(rs * p->rows);
    for (int64_t r = 0; r < p->rows; r++)
        lmp_type_get(t)->from_float_ref(p->W + r * p->cols, (char *)q + r * rs, p->cols);
    float *Q = dequant(t, q, p->rows, p->cols);
    double l = quad_loss(p->W, Q, p->H, p->rows, p->cols, 0);
    free(q);
    free(Q);
    return l;
}

static const lmp_dtype TYPES[] = {LMP_DTYPE_Q4_0,     LMP_DTYPE_Q4_1,      LMP_DTYPE_Q8_0,
                                  LMP_DTYPE_Q4_0_G64, LMP_DTYPE_Q4_0_G128, LMP_DTYPE_Q4_1_G64, LMP_DTYPE_Q4_1_G128};

// (a) the stored blocks dequantize to the Q the algorithm used: the loss recomputed from the output
// equals the loss the core accumulated from its own errors (an identity of the Cholesky form:
// W - Q = E U, so tr((W - Q) Hd (W - Q)^T) = ||E||^2), for every type, with and without act-order.
// (b) and it beats RTN clearly on correlated inputs.
static void test_core_consistent_and_better(void) {
    problem p = make_problem(48, 128, 512, 24, 0.5f);
    for (size_t ti = 0; ti < sizeof TYPES / sizeof TYPES[0]; ti++) {
        lmp_dtype t = TYPES[ti];
        size_t rs = lmp_type_row_size(t, p.cols);
        void *out = malloc(rs * p.rows);
        for (int act = 0; act < 2; act++) {
            lmp_gptq_stats gs;
            lmp_error err = {0};
            lmp_status st = lmp_gptq_quantize_matrix(p.W, p.rows, p.cols, p.H, t, 0.01f, 128, act, NULL, out, &gs, &err);
            CHECKF(st == LMP_OK, "%s act %d: %s", lmp_type_name(t), act, err.msg);
            if (st) continue;
            CHECK(gs.n_retries == 0 && gs.n_dead == 0);
            float *Q = dequant(t, out, p.rows, p.cols);
            double lam = 0.01 * mean_diag(p.H, p.cols);
            double damped = quad_loss(p.W, Q, p.H, p.rows, p.cols, lam);
            CHECKF(fabs(damped - gs.loss) <= 2e-3 * gs.loss, "%s act %d: loss from output %.8g, reported %.8g",
                   lmp_type_name(t), act, damped, gs.loss);
            double lg = quad_loss(p.W, Q, p.H, p.rows, p.cols, 0), lr = rtn_loss(t, &p);
            CHECKF(lg <= 0.8 * lr, "%s act %d: GPTQ loss %.6g vs RTN %.6g", lmp_type_name(t), act, lg, lr);
            if (getenv("LMP_TEST_VERBOSE"))
                fprintf(stderr, "  %-10s act %d: gptq/rtn %.3f\n", lmp_type_name(t), act, lg / lr);
            free(Q);
        }
        free(out);
    }
    free_problem(&p);
}

// The lazy batch is an exact reorganisation: block 32 and block 128 (and threads) give the same result
// up to float rounding; threads give identical bytes (rows are independent).
static void test_block_and_threads(void) {
    problem p = make_problem(40, 256, 384, 16, 0.5f);
    lmp_dtype t = LMP_DTYPE_Q4_0;
    size_t bytes = lmp_type_row_size(t, p.cols) * p.rows;
    void *a = malloc(bytes), *b = malloc(bytes), *c = malloc(bytes);
    lmp_gptq_stats sa, sb, sc;
    lmp_pool *pool = lmp_pool_new(3);
    CHECK(pool != NULL);
    CHECK(lmp_gptq_quantize_matrix(p.W, p.rows, p.cols, p.H, t, 0.01f, 128, 0, NULL, a, &sa, NULL) == LMP_OK);
    CHECK(lmp_gptq_quantize_matrix(p.W, p.rows, p.cols, p.H, t, 0.01f, 32, 0, NULL, b, &sb, NULL) == LMP_OK);
    CHECK(lmp_gptq_quantize_matrix(p.W, p.rows, p.cols, p.H, t, 0.01f, 128, 0, pool, c, &sc, NULL) == LMP_OK);
    CHECK(memcmp(a, c, bytes) == 0);
    CHECKF(fabs(sa.loss - sb.loss) <= 0.02 * sa.loss, "block 128 loss %g, block 32 loss %g", sa.loss, sb.loss);
    lmp_pool_free(pool);
    free(a);
    free(b);
    free(c);
    free_problem(&p);
}

// (c) the independent NumPy implementation's losses on the committed fixture.
static void test_against_numpy(void) {
    const char *path = "tests/fixtures/gptq/gptq_ref.bin";
    size_t size;
    unsigned char *buf = test_read_file(path, &size);
    if (!buf) SKIP("%s missing (python3 scripts/ref_gptq.py writes it)", path);
    uint32_t hdr[4];
    CHECK(size >= 24 && memcmp(buf, "LMPGPTQ1", 8) == 0);
    memcpy(hdr, buf + 8, 16);
    uint32_t rows = hdr[0], cols = hdr[1], n = hdr[2];
    size_t need = 24 + 4 * ((size_t)rows * cols + (size_t)cols * cols) + 32 * (size_t)n;
    CHECKF(size == need, "fixture size %zu, expected %zu", size, need);
    if (size != need) {
        free(buf);
        return;
    }
    float *W = malloc(4 * (size_t)rows * cols), *H = malloc(4 * (size_t)cols * cols);
    memcpy(W, buf + 24, 4 * (size_t)rows * cols);
    memcpy(H, buf + 24 + 4 * (size_t)rows * cols, 4 * (size_t)cols * cols);
    const unsigned char *cs = buf + 24 + 4 * ((size_t)rows * cols + (size_t)cols * cols);
    for (uint32_t k = 0; k < n; k++, cs += 32) {
        uint32_t type, act;
        float damp;
        double lref, lrtn_ref;
        memcpy(&type, cs, 4);
        memcpy(&act, cs + 4, 4);
        memcpy(&damp, cs + 8, 4);
        memcpy(&lref, cs + 16, 8);
        memcpy(&lrtn_ref, cs + 24, 8);
        size_t rs = lmp_type_row_size((lmp_dtype)type, cols);
        CHECK(rs > 0);
        if (!rs) continue;
        void *out = malloc(rs * rows);
        lmp_error err = {0};
        lmp_status st = lmp_gptq_quantize_matrix(W, rows, cols, H, (lmp_dtype)type, damp, 128, (int)act, NULL, out,
                                                 NULL, &err);
        CHECKF(st == LMP_OK, "%s", err.msg);
        float *Q = dequant((lmp_dtype)type, out, rows, cols);
        double l = quad_loss(W, Q, H, rows, cols, 0);
        problem pr = {rows, cols, 0, W, NULL, H};
        double lrtn = rtn_loss((lmp_dtype)type, &pr);
        CHECKF(fabs(lrtn - lrtn_ref) <= 1e-3 * lrtn_ref, "%s: RTN loss %.8g, NumPy's %.8g",
               lmp_type_name((lmp_dtype)type), lrtn, lrtn_ref);
        CHECKF(fabs(l - lref) <= 0.05 * lref, "%s act_order %u: loss %.8g, NumPy reference %.8g (ratio %.4f)",
               lmp_type_name((lmp_dtype)type), act, l, lref, l / lref);
        if (getenv("LMP_TEST_VERBOSE"))
            fprintf(stderr, "  %-10s act %u: C %.6g numpy %.6g (%.4f)\n", lmp_type_name((lmp_dtype)type), act, l, lref,
                    l / lref);
        free(Q);
        free(out);
    }
    free(W);
    free(H);
    free(buf);
}

// (d) a dead input channel (H_ii = 0) gives zero weights there and a finite result; an indefinite H is
// retried with more dampening; a hopeless one fails with a clear error.
static void test_dead_and_not_pd(void) {
    problem p = make_problem(32, 96, 256, 12, 0.5f);
    const int64_t dead = 37;
    for (int64_t i = 0; i < p.n; i++) p.X[i * p.cols + dead] = 0.0f;
    gram(&p);
    lmp_dtype t = LMP_DTYPE_Q4_0;
    size_t bytes = lmp_type_row_size(t, p.cols) * p.rows;
    void *out = malloc(bytes);
    for (int act = 0; act < 2; act++) {
        lmp_gptq_stats gs;
        lmp_error err = {0};
        CHECKF(lmp_gptq_quantize_matrix(p.W, p.rows, p.cols, p.H, t, 0.01f, 128, act, NULL, out, &gs, &err) == LMP_OK,
               "%s", err.msg);
        CHECK(gs.n_dead == 1 && isfinite(gs.loss));
        float *Q = dequant(t, out, p.rows, p.cols);
        int zero = 1, finite = 1;
        for (int64_t r = 0; r < p.rows; r++) {
            zero &= Q[r * p.cols + dead] == 0.0f;
            for (int64_t c = 0; c < p.cols; c++) finite &= isfinite(Q[r * p.cols + c]) != 0;
        }
        CHECK(zero && finite);
        double lg = quad_loss(p.W, Q, p.H, p.rows, p.cols, 0);
        CHECKF(lg <= 0.8 * rtn_loss(t, &p), "dead column, act %d: GPTQ %g RTN %g", act, lg, rtn_loss(t, &p));
        free(Q);
    }
    // Indefinite: shift the spectrum down by 5% of the mean diagonal; 1% dampening cannot fix that.
    float *Hs = malloc(sizeof(float) * p.cols * p.cols);
    memcpy(Hs, p.H, sizeof(float) * p.cols * p.cols);
    double md = mean_diag(p.H, p.cols);
    for (int64_t i = 0; i < p.cols; i++) Hs[i * p.cols + i] -= (float)(0.05 * md);
    Hs[dead * p.cols + dead] = 0.0f;  // keep the dead column dead
    lmp_gptq_stats gs;
    lmp_error err = {0};
    CHECKF(lmp_gptq_quantize_matrix(p.W, p.rows, p.cols, Hs, t, 0.01f, 128, 0, NULL, out, &gs, &err) == LMP_OK, "%s",
           err.msg);
    CHECKF(gs.n_retries >= 1 && gs.damp_used >= 0.1 - 1e-6, "retries %d damp %g", gs.n_retries, gs.damp_used);
    // Hopeless: I + 1000 (u v^T + v u^T) with u . v = 0 has mean diagonal 1 and an eigenvalue near -1000.
    for (int64_t i = 0; i < p.cols * p.cols; i++) Hs[i] = 0.0f;
    for (int64_t a = 0; a < p.cols; a++)
        for (int64_t b = 0; b < p.cols; b++) {
            float ua = a < p.cols / 2 ? 1.0f : 0.0f, ub = b < p.cols / 2 ? 1.0f : 0.0f;
            float va = 1.0f - ua, vb = 1.0f - ub;
            Hs[a * p.cols + b] = 1000.0f * (ua * vb + va * ub) / (float)p.cols + (a == b ? 1.0f : 0.0f);
        }
    lmp_status st = lmp_gptq_quantize_matrix(p.W, p.rows, p.cols, Hs, t, 0.01f, 128, 0, NULL, out, &gs, &err);
    CHECK(st == LMP_E_ARG);
    CHECKF(strstr(err.msg, "not positive definite") != NULL, "message: %s", err.msg);
    free(Hs);
    free(out);
    free_problem(&p);
}

static void test_bad_arguments_and_nomem(void) {
    problem p = make_problem(8, 64, 64, 4, 0.5f);
    void *out = malloc(lmp_type_row_size(LMP_DTYPE_Q8_0, 64) * 8);
    lmp_error err = {0};
    CHECK(lmp_gptq_quantize_matrix(p.W, 8, 64, p.H, LMP_DTYPE_F16, 0.01f, 128, 0, NULL, out, NULL, &err) == LMP_E_ARG);
    CHECK(strstr(err.msg, "f16") != NULL);
    CHECK(lmp_gptq_quantize_matrix(p.W, 16, 32, p.H, LMP_DTYPE_Q4_0_G64, 0.01f, 128, 0, NULL, out, NULL, &err) ==
          LMP_E_ARG);
    CHECK(lmp_gptq_quantize_matrix(p.W, 8, 64, p.H, LMP_DTYPE_Q8_0, 0.0f, 128, 0, NULL, out, NULL, &err) == LMP_E_ARG);
    p.W[70] = NAN;
    CHECK(lmp_gptq_quantize_matrix(p.W, 8, 64, p.H, LMP_DTYPE_Q8_0, 0.01f, 128, 0, NULL, out, NULL, &err) == LMP_E_ARG);
    CHECKF(strstr(err.msg, "[1, 6]") != NULL, "message: %s", err.msg);
    p.W[70] = 0.0f;
    // Every allocation failing in turn: a clean LMP_E_NOMEM (ASan reports any leak).
    int saw_nomem = 0, ok_at_end = 0;
    for (long k = 1; k < 40; k++) {
        lmp_alloc_fail_after(k);
        lmp_status st = lmp_gptq_quantize_matrix(p.W, 8, 64, p.H, LMP_DTYPE_Q8_0, 0.01f, 128, 1, NULL, out, NULL, &err);
        lmp_alloc_fail_after(0);
        if (st == LMP_E_NOMEM) saw_nomem = 1;
        else if (st == LMP_OK) {
            ok_at_end = 1;
            break;
        } else CHECKF(0, "allocation failure %ld: status %d (%s)", k, (int)st, err.msg);
    }
    CHECK(saw_nomem && ok_at_end);
    free(out);
    free_problem(&p);
}

// The pass on a real model: a short GPTQ of the shipped model completes, writes a loadable file, and records
// its options.
static void test_pass_default(void) {
    char outp[600];
    const char *model = TEST_DEFAULT_MODEL, *calib = TEST_DEFAULT_CALIB;
    if (!test_file_exists(model) || !test_file_exists(calib)) {
        CHECKF(0, "%s or %s not found (committed files: run from the repository root)", model, calib);
        return;
    }
    snprintf(outp, sizeof outp, "%s/s-gptq.lmp", test_tmpdir());
    lmp_quant_params qp;
    lmp_quant_params_default(&qp);
    qp.method = LMP_QUANT_GPTQ;
    qp.calib_path = calib;
    qp.calib_tokens = 8 * 128;
    qp.calib_ctx = 128;
    qp.gptq_act_order = 1;
    qp.n_threads = 2;
    lmp_import_opts io = {0};
    lmp_quant_summary sum;
    lmp_error err = {0};
    lmp_status st = lmp_quantize(model, &io, outp, &qp, &sum, &err);
    CHECKF(st == LMP_OK, "%s", err.msg);
    if (st) return;
    CHECK(sum.calib_tokens_used == 8 * 128);
    lmp_file *f = NULL;
    CHECKF(lmp_file_open(outp, 0, &f, &err) == LMP_OK, "%s", err.msg);
    if (!f) return;
    const lmp_kv *kv = lmp_meta_find(lmp_file_meta(f), "quant.method");
    CHECK(kv && kv->type == LMP_KV_STRING && strcmp((const char *)kv->data, "gptq") == 0);
    kv = lmp_meta_find(lmp_file_meta(f), "quant.gptq_act_order");
    CHECK(kv && kv->type == LMP_KV_BOOL && kv->v.b == 1);
    lmp_file_close(f);
}

int main(void) {
    test_seed();
    RUN(test_core_consistent_and_better);
    RUN(test_block_and_threads);
    RUN(test_against_numpy);
    RUN(test_dead_and_not_pd);
    RUN(test_bad_arguments_and_nomem);
    RUN(test_pass_default);
    return test_report();
}
