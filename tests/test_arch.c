// test_arch.c - the runtime's architecture contracts (issue 9): the scalar reference math against double
// precision, the model's weight table and name lookup, weight replacement that makes a session re-upload,
// the backend interface (supports_op consulted, sticky errors instead of NaN), and the calibration sampler
// and layer-by-layer runner against statistics accumulated independently from a full forward pass.
#include <float.h>
#include <stdlib.h>

#include "format/qtypes.h"
#include "format/synth.h"
#include "runtime/backend.h"
#include "runtime/calib.h"
#include "runtime/refmath.h"
#include "runtime/session.h"
#include "runtime/threadpool.h"
#include "tests/test_util.h"

// ---- reference math ----

static void test_refmath_rmsnorm(void) {
    for (int trial = 0; trial < 20; trial++) {
        int dim = 1 + (int)(test_rand_u64() % 3000);
        float *x = malloc(sizeof(float) * dim), *w = malloc(sizeof(float) * dim), *o = malloc(sizeof(float) * dim);
        float scale = expf(6.0f * test_rand_normal());  // 1e-6 .. 1e6 in magnitude
        for (int i = 0; i < dim; i++) {
            x[i] = scale * test_rand_normal();
            w[i] = 1.0f + 0.3f * test_rand_normal();
        }
        float eps = 1e-5f;
        lmp_ref_rmsnorm(o, x, w, dim, eps);
        double ss = 0;
        for (int i = 0; i < dim; i++) ss += (double)x[i] * x[i];
        double r = 1.0 / sqrt(ss / dim + eps);
        // float sum of dim squares: relative error <= dim * eps32 (worst case); then a few roundings
        double tol = (dim + 8.0) * FLT_EPSILON;
        double worst = 0;
        for (int i = 0; i < dim; i++) {
            double want = w[i] * x[i] * r;
            double e = fabs(o[i] - want) / (fabs(want) + 1e-30);
            if (e > worst) worst = e;
        }
        CHECKF(worst <= tol, "dim %d: relative error %.3g > %.3g", dim, worst, tol);
        free(x);
        free(w);
        free(o);
    }
}

static void test_refmath_rope(void) {
    const int n_ctx = 2048;
    for (int neox = 0; neox <= 1; neox++) {
        int rope_dim = 2 * (1 + (int)(test_rand_u64() % 64));
        float theta = neox ? 100000.0f : 10000.0f;
        int half = rope_dim / 2;
        float *cs = malloc(sizeof(float) * (size_t)n_ctx * half), *sn = malloc(sizeof(float) * (size_t)n_ctx * half);
        lmp_ref_rope_tables(cs, sn, n_ctx, rope_dim, theta);
        double worst_tab = 0;
        for (int p = 0; p < n_ctx; p += 97)
            for (int i = 0; i < half; i++) {
                double ang = p * pow(theta, -2.0 * i / rope_dim);
                // float angle: p * freq rounds to |angle| * eps32, freq itself to a few eps32
                double tol = (fabs(ang) + 1.0) * 4 * FLT_EPSILON;
                double e = fmax(fabs(cs[(size_t)p * half + i] - cos(ang)), fabs(sn[(size_t)p * half + i] - sin(ang)));
                if (e / tol > worst_tab) worst_tab = e / tol;
            }
        CHECKF(worst_tab <= 1.0, "neox %d rope_dim %d: table error %.3g x its tolerance", neox, rope_dim, worst_tab);
        // rotation of a head vector against the same pairs rotated in double with the float table
        int head = rope_dim + 2 * (int)(test_rand_u64() % 8);  // partial rotary: the tail is untouched
        float *v = malloc(sizeof(float) * head), *v0 = malloc(sizeof(float) * head);
        for (int i = 0; i < head; i++) v0[i] = v[i] = test_rand_normal();
        int p = (int)(test_rand_u64() % n_ctx);
        const float *c = cs + (size_t)p * half, *s = sn + (size_t)p * half;
        lmp_ref_rope_rotate(v, c, s, rope_dim, neox);
        double worst = 0;
        for (int i = 0; i < half; i++) {
            int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
            double ra = (double)v0[a] * c[i] - (double)v0[b] * s[i], rb = (double)v0[a] * s[i] + (double)v0[b] * c[i];
            worst = fmax(worst, fmax(fabs(v[a] - ra), fabs(v[b] - rb)));
        }
        for (int i = rope_dim; i < head; i++) worst = fmax(worst, fabs(v[i] - v0[i]));
        CHECKF(worst <= 8 * FLT_EPSILON * 4, "neox %d: rotation error %.3g", neox, worst);
        free(v);
        free(v0);
        free(cs);
        free(sn);
    }
}

static void test_refmath_softmax_silu(void) {
    for (int trial = 0; trial < 20; trial++) {
        int n = 1 + (int)(test_rand_u64() % 5000);
        float *x = malloc(sizeof(float) * n);
        double *d = malloc(sizeof(double) * n), mx = -1e300, sum = 0;
        for (int i = 0; i < n; i++) {
            x[i] = 20.0f * test_rand_normal();
            d[i] = x[i];
            mx = fmax(mx, d[i]);
        }
        for (int i = 0; i < n; i++) sum += exp(d[i] - mx);
        lmp_ref_softmax(x, n);
        double worst = 0, tot = 0;
        for (int i = 0; i < n; i++) {
            double want = exp(d[i] - mx) / sum;
            // below FLT_MIN a float has no relative precision left (denormals, underflow to 0)
            if (want > 8 * FLT_MIN) worst = fmax(worst, fabs(x[i] - want) / want);
            else worst = fmax(worst, fabs(x[i] - want) > 8 * FLT_MIN ? 1.0 : 0.0);
            tot += x[i];
        }
        // expf to a few ulps, a float sum of n terms (n eps32 relative), one reciprocal
        CHECKF(worst <= (n + 16.0) * FLT_EPSILON, "n %d: relative error %.3g", n, worst);
        CHECKF(fabs(tot - 1.0) <= (n + 16.0) * FLT_EPSILON, "n %d: sum %.9g", n, tot);
        free(x);
        free(d);
    }
    double worst = 0;
    for (int i = 0; i < 10000; i++) {
        float x = 30.0f * test_rand_normal();
        double want = x / (1.0 + exp(-(double)x));
        worst = fmax(worst, fabs(lmp_ref_silu(x) - want) / (fabs(want) + 1e-30));
    }
    CHECKF(worst <= 8 * FLT_EPSILON, "silu relative error %.3g", worst);
}

// ---- a small GQA model ----

static lmp_model *small_model(int tied) {
    lmp_synth_params sp = {64, 3, 4, 2, 96, 100, 64, tied, test_rand_u64() | 1, NULL};
    lmp_builder *b = NULL;
    lmp_file *f = NULL;
    lmp_model *m = NULL;
    lmp_error err = {0};
    CHECKF(lmp_synth_build(&sp, &b, &err) == LMP_OK, "%s", err.msg);
    CHECKF(b && lmp_builder_to_file(b, &f, &err) == LMP_OK, "%s", err.msg);
    lmp_builder_free(b);
    CHECKF(f && lmp_model_from_file(f, &m, &err) == LMP_OK, "%s", err.msg);
    return m;
}

static void test_weight_table(void) {
    lmp_model *m = small_model(0);
    if (!m) return;
    char name[64];
    for (int l = 0; l < m->cfg.n_layers; l++) {
        lmp_layer *L = &m->layers[l];
        for (int k = 0; k < LMP_MAT_COUNT; k++) {
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, lmp_mats[k].name);
            lmp_weight *w = lmp_model_weight_find(m, name);
            CHECKF(w == lmp_layer_mat(L, k), "%s", name);
            CHECKF(w && strcmp(w->name, name) == 0, "%s: view named %s", name, w ? w->name : "NULL");
            CHECK(lmp_model_hook_width(m, l, lmp_mats[k].input) == w->cols);
        }
        snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
        CHECK(lmp_model_weight_find(m, name) == &L->attn_norm);
        snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", l);
        CHECK(lmp_model_weight_find(m, name) == &L->ffn_norm);
        CHECK(L->attn_norm.rows == 1 && L->attn_norm.cols == m->cfg.dim && L->attn_norm.type == LMP_DTYPE_F32);
    }
    CHECK(lmp_model_weight_find(m, "token_embd.weight") == &m->tok_embd);
    CHECK(lmp_model_weight_find(m, "output.weight") == &m->output);
    CHECK(lmp_model_weight_find(m, "output_norm.weight") == &m->output_norm);
    const char *bad[] = {"blk.007.attn_q.weight", "blk.0.attn_q.weightx", "blk.3.attn_q.weight", "blk.-1.attn_q.weight",
                         "blk.0.attn_qq.weight", "blk.0.attn_q", "", "blk..attn_q.weight", "output"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECKF(lmp_model_weight_find(m, bad[i]) == NULL, "'%s' found", bad[i]);
    // the enumeration visits every weight once
    size_t n = lmp_model_n_weights(m);
    CHECK(n == 3 + (size_t)m->cfg.n_layers * 9);
    CHECK(lmp_model_weight_at(m, n) == NULL);
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++) CHECK(lmp_model_weight_at(m, i) != lmp_model_weight_at(m, j));
    lmp_model_free(m);
}

// ---- a wrapping backend: counts uploads, refuses q4_0 matmul when asked ----

static int g_uploads, g_refuse_q4;
static lmp_backend_ops g_wrap_ops;
static lmp_status (*g_cpu_upload)(lmp_backend *, lmp_weight *, lmp_error *);
static int (*g_cpu_supports)(lmp_backend *, lmp_op, lmp_dtype);

static lmp_status wrap_upload(lmp_backend *b, lmp_weight *w, lmp_error *err) {
    g_uploads++;
    return g_cpu_upload(b, w, err);
}
static int wrap_supports(lmp_backend *b, lmp_op op, lmp_dtype t) {
    if (g_refuse_q4 && op == LMP_OP_MATMUL && t == LMP_DTYPE_Q4_0) return 0;
    return g_cpu_supports(b, op, t);
}
static lmp_status wrap_new(const lmp_backend_opts *opts, lmp_backend **out, lmp_error *err) {
    lmp_status st = lmp_backend_cpu_new(opts, out, err);
    if (st) return st;
    if (!g_cpu_upload) {
        g_wrap_ops = *(*out)->ops;
        g_cpu_upload = g_wrap_ops.upload_weight;
        g_cpu_supports = g_wrap_ops.supports_op;
        g_wrap_ops.upload_weight = wrap_upload;
        g_wrap_ops.supports_op = wrap_supports;
        g_wrap_ops.name = "wrap";
    }
    (*out)->ops = &g_wrap_ops;  // destroy is the CPU's, which frees its own context
    return LMP_OK;
}

static void eval_all(lmp_session *s, const int32_t *toks, int n, float *logits) {
    lmp_error err = {0};
    CHECKF(lmp_session_eval(s, toks, n, 0, 0, logits, &err) == LMP_OK, "%s", err.msg);
}

static void test_weight_set_reupload(void) {
    lmp_error err = {0};
    static int registered;
    if (!registered) {
        CHECKF(lmp_backend_register("wrap", wrap_new, &err) == LMP_OK, "%s", err.msg);
        CHECK(lmp_backend_register("wrap", wrap_new, &err) == LMP_E_STATE);
        CHECK(lmp_backend_register("cpu", wrap_new, &err) == LMP_E_ARG);
        registered = 1;
    }
    for (int tied = 0; tied <= 1; tied++) {
        lmp_model *m = small_model(tied);
        if (!m) return;
        lmp_session_opts so = {32, 32, 1, "wrap", NULL};
        lmp_session *s = NULL;
        g_uploads = 0;
        CHECKF(lmp_session_new(m, &so, &s, &err) == LMP_OK, "%s", err.msg);
        if (!s) return;
        CHECK(g_uploads == (int)lmp_model_n_weights(m));
        enum { N = 12 };
        int32_t toks[N];
        for (int i = 0; i < N; i++) toks[i] = (int32_t)(test_rand_u64() % 100);
        const int V = m->cfg.vocab;
        float *a = malloc(sizeof(float) * N * V), *b = malloc(sizeof(float) * N * V);
        eval_all(s, toks, N, a);
        CHECK(g_uploads == (int)lmp_model_n_weights(m));  // nothing changed: nothing re-uploaded
        // replace one matrix with a q8_0 copy: exactly that weight is uploaded again before the next eval
        lmp_weight *w = &m->layers[1].w_up;
        size_t qbytes = lmp_type_row_size(LMP_DTYPE_Q8_0, w->cols) * (size_t)w->rows;
        void *q = malloc(qbytes);
        lmp_type_get(LMP_DTYPE_Q8_0)->from_float_ref(w->data, q, w->rows * w->cols);
        int before = g_uploads;
        CHECKF(lmp_model_weight_set(m, w, LMP_DTYPE_Q8_0, q, &err) == LMP_OK, "%s", err.msg);
        eval_all(s, toks, N, b);
        CHECKF(g_uploads == before + 1, "uploads %d, expected %d", g_uploads, before + 1);
        // the session computes with the new weight: same logits as a fresh session on the changed model
        lmp_session *s2 = NULL;
        CHECKF(lmp_session_new(m, &so, &s2, &err) == LMP_OK, "%s", err.msg);
        float *c = malloc(sizeof(float) * N * V);
        if (s2) eval_all(s2, toks, N, c);
        CHECK(memcmp(b, c, sizeof(float) * N * V) == 0);
        int differs = memcmp(a, b, sizeof(float) * N * V) != 0;
        CHECKF(differs, "logits unchanged after replacing %s with q8_0", w->name);
        // a norm changed in place and touched: re-uploaded once
        before = g_uploads;
        lmp_norm_values(&m->layers[0].ffn_norm)[3] *= 2.0f;
        lmp_model_weight_touch(m, &m->layers[0].ffn_norm);
        eval_all(s, toks, N, b);
        CHECK(g_uploads == before + 1);
        // the embedding of a tied model is also the classifier: both views change and both are re-uploaded
        if (tied) {
            before = g_uploads;
            lmp_weight *e = &m->tok_embd;
            void *eq = malloc(lmp_type_row_size(LMP_DTYPE_Q8_0, e->cols) * (size_t)e->rows);
            lmp_type_get(LMP_DTYPE_Q8_0)->from_float_ref(e->data, eq, e->rows * e->cols);
            CHECKF(lmp_model_weight_set(m, e, LMP_DTYPE_Q8_0, eq, &err) == LMP_OK, "%s", err.msg);
            CHECK(m->output.type == LMP_DTYPE_Q8_0 && m->output.data == eq);
            eval_all(s, toks, N, b);
            CHECK(g_uploads == before + 2);
            lmp_session_free(s);
            lmp_session_free(s2);
            s = s2 = NULL;
            free(eq);
        }
        // refusals: a block that does not divide the row, a run-time-only type
        lmp_weight *o = &m->layers[0].wo;  // 64 columns
        CHECK(lmp_model_weight_set(m, o, LMP_DTYPE_Q4_0_G128, q, &err) == LMP_E_ARG);
        CHECK(lmp_model_weight_set(m, o, LMP_DTYPE_Q8_A, q, &err) == LMP_E_ARG);
        CHECK(o->type == LMP_DTYPE_F32);
        lmp_session_free(s);
        lmp_session_free(s2);
        lmp_model_free(m);
        free(q);
        free(a);
        free(b);
        free(c);
    }
}

static void test_supports_op_consulted(void) {
    lmp_model *m = small_model(0);
    if (!m) return;
    lmp_error err = {0};
    lmp_weight *w = &m->layers[2].wq;
    void *q = malloc(lmp_type_row_size(LMP_DTYPE_Q4_0, w->cols) * (size_t)w->rows);
    lmp_type_get(LMP_DTYPE_Q4_0)->from_float_ref(w->data, q, w->rows * w->cols);
    CHECKF(lmp_model_weight_set(m, w, LMP_DTYPE_Q4_0, q, &err) == LMP_OK, "%s", err.msg);
    g_refuse_q4 = 1;
    lmp_session_opts so = {16, 16, 1, "wrap", NULL};
    lmp_session *s = NULL;
    lmp_status st = lmp_session_new(m, &so, &s, &err);
    CHECKF(st == LMP_E_UNSUPPORTED && s == NULL, "status %d", (int)st);
    CHECKF(strstr(err.msg, "q4_0") && strstr(err.msg, "blk.2.attn_q.weight"), "message: %s", err.msg);
    g_refuse_q4 = 0;
    CHECKF(lmp_session_new(m, &so, &s, &err) == LMP_OK, "%s", err.msg);
    lmp_session_free(s);
    CHECK(lmp_session_new(m, &(lmp_session_opts){16, 16, 1, "nosuch", NULL}, &s, &err) == LMP_E_ARG);
    CHECKF(strstr(err.msg, "unknown backend 'nosuch'"), "%s", err.msg);
    free(q);
    lmp_model_free(m);
}

// An allocation that fails inside an operation is an error from eval, never NaN logits.
static void test_sticky_error(void) {
    lmp_model *m = small_model(0);
    if (!m) return;
    lmp_error err = {0};
    void *qs[LMP_MAT_COUNT];
    for (int k = 0; k < LMP_MAT_COUNT; k++) {  // q8_0 weights: the first eval allocates activation scratch
        lmp_weight *w = lmp_layer_mat(&m->layers[0], k);
        qs[k] = malloc(lmp_type_row_size(LMP_DTYPE_Q8_0, w->cols) * (size_t)w->rows);
        lmp_type_get(LMP_DTYPE_Q8_0)->from_float_ref(w->data, qs[k], w->rows * w->cols);
        CHECKF(lmp_model_weight_set(m, w, LMP_DTYPE_Q8_0, qs[k], &err) == LMP_OK, "%s", err.msg);
    }
    lmp_session *s = NULL;
    CHECKF(lmp_session_new(m, &(lmp_session_opts){32, 32, 1, "cpu", NULL}, &s, &err) == LMP_OK, "%s", err.msg);
    enum { N = 20 };
    int32_t toks[N];
    for (int i = 0; i < N; i++) toks[i] = (int32_t)(test_rand_u64() % 100);
    float *a = malloc(sizeof(float) * N * 100), *b = malloc(sizeof(float) * N * 100);
    lmp_alloc_fail_after(1);
    lmp_status st = lmp_session_eval(s, toks, N, 0, 0, a, &err);
    lmp_alloc_fail_after(0);
    CHECKF(st == LMP_E_NOMEM, "eval with a failing allocation returned %d (%s)", (int)st, err.msg);
    CHECKF(strstr(err.msg, "out of memory"), "%s", err.msg);
    // the error was returned once and cleared: the next eval works and matches a fresh session
    CHECKF(lmp_session_eval(s, toks, N, 0, 0, a, &err) == LMP_OK, "%s", err.msg);
    lmp_session *s2 = NULL;
    CHECKF(lmp_session_new(m, &(lmp_session_opts){32, 32, 1, "cpu", NULL}, &s2, &err) == LMP_OK, "%s", err.msg);
    if (s2) eval_all(s2, toks, N, b);
    CHECK(memcmp(a, b, sizeof(float) * N * 100) == 0);
    int finite = 1;
    for (int i = 0; i < N * 100; i++) finite &= isfinite(a[i]) != 0;
    CHECK(finite);
    lmp_session_free(s);
    lmp_session_free(s2);
    for (int k = 0; k < LMP_MAT_COUNT; k++) free(qs[k]);
    free(a);
    free(b);
    lmp_model_free(m);
}

// ---- matmul_multi: one pass over several weights of one input equals the single ops, bit for bit ----

static void fill_weight(lmp_weight *w, lmp_dtype t, int64_t rows, int64_t cols, void **buf) {
    float *f = malloc(sizeof(float) * (size_t)(rows * cols));
    for (int64_t i = 0; i < rows * cols; i++) f[i] = (float)test_rand_normal() * 0.1f;
    w->type = t;
    w->rows = rows;
    w->cols = cols;
    w->row_bytes = lmp_type_row_size(t, cols);
    w->name = "multi";
    *buf = malloc(w->row_bytes * (size_t)rows);
    if (t == LMP_DTYPE_F32) memcpy(*buf, f, sizeof(float) * (size_t)(rows * cols));
    else lmp_type_get(t)->from_float_ref(f, *buf, rows * cols);
    w->data = *buf;
    free(f);
}

static void test_matmul_multi(void) {
    lmp_error err = {0};
    lmp_backend *be = NULL;
    CHECKF(lmp_backend_new("cpu", &(lmp_backend_opts){2, NULL, 0}, &be, &err) == LMP_OK, "%s", err.msg);
    if (!be) return;
    const lmp_backend_ops *op = be->ops;
    CHECK(op->matmul_multi != NULL);
    if (!op->matmul_multi) return lmp_backend_free(be);
    // the last row mixes types, which the backend runs as single products
    const lmp_dtype types[][3] = {{LMP_DTYPE_F32, LMP_DTYPE_F32, LMP_DTYPE_F32},
                                  {LMP_DTYPE_Q8_0, LMP_DTYPE_Q8_0, LMP_DTYPE_Q8_0},
                                  {LMP_DTYPE_Q4_0, LMP_DTYPE_Q4_0, LMP_DTYPE_Q4_0},
                                  {LMP_DTYPE_Q4_1, LMP_DTYPE_Q4_1, LMP_DTYPE_Q4_1},
                                  {LMP_DTYPE_Q4_K, LMP_DTYPE_Q4_K, LMP_DTYPE_Q4_K},
                                  {LMP_DTYPE_Q8_0, LMP_DTYPE_Q4_0, LMP_DTYPE_F32}};
    const int64_t cols = 512, rows[3] = {272, 80, 80};  // 272 x 512 x 7 tokens crosses the one-thread cut
    const int ns[] = {1, 3, 7};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
        for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
            for (int mode = 0; mode < 2; mode++) {  // 0: three products; 1: two of equal rows with swiglu
                const int n = ns[ni], count = mode ? 2 : 3;
                lmp_weight w[3] = {0};
                void *buf[3] = {0};
                float *x = malloc(sizeof(float) * (size_t)(n * cols)), *ya[3], *yb[3];
                for (int64_t i = 0; i < n * cols; i++) x[i] = (float)test_rand_normal();
                for (int i = 0; i < count; i++) {
                    fill_weight(&w[i], types[ti][i], mode ? rows[0] : rows[i], cols, &buf[i]);
                    ya[i] = malloc(sizeof(float) * (size_t)(n * w[i].rows));
                    yb[i] = malloc(sizeof(float) * (size_t)(n * w[i].rows));
                }
                const lmp_weight *wp[3] = {&w[0], &w[1], &w[2]};
                for (int i = 0; i < count; i++) op->matmul(be, ya[i], wp[i], x, n);
                if (mode) op->swiglu(be, ya[0], ya[1], n, (int)w[0].rows);
                op->matmul_multi(be, yb, wp, count, x, n, mode ? LMP_MULTI_SWIGLU : 0);
                CHECKF(op->synchronize(be, &err) == LMP_OK, "%s", err.msg);
                for (int i = 0; i < count; i++)
                    CHECKF(memcmp(ya[i], yb[i], sizeof(float) * (size_t)(n * w[i].rows)) == 0,
                           "%s + %s + %s, n %d, %s: output %d differs from the single ops",
                           lmp_type_name(types[ti][0]), lmp_type_name(types[ti][1]), lmp_type_name(types[ti][2]), n,
                           mode ? "swiglu" : "three", i);
                for (int i = 0; i < count; i++) free(buf[i]), free(ya[i]), free(yb[i]);
                free(x);
            }
    // bad calls are sticky errors, not crashes
    float y[4];
    lmp_weight w1 = {0}, w2 = {0};
    void *b1, *b2;
    fill_weight(&w1, LMP_DTYPE_F32, 4, 32, &b1);
    fill_weight(&w2, LMP_DTYPE_F32, 2, 32, &b2);
    const lmp_weight *pair[2] = {&w1, &w2};
    float *ys[2] = {y, y};
    float x[32] = {0};
    op->matmul_multi(be, ys, pair, 2, x, 1, LMP_MULTI_SWIGLU);
    CHECK(op->synchronize(be, &err) == LMP_E_ARG && strstr(err.msg, "equal rows"));
    op->matmul_multi(be, ys, pair, LMP_MATMUL_MULTI_MAX + 1, x, 1, 0);
    CHECK(op->synchronize(be, &err) == LMP_E_ARG);
    free(b1);
    free(b2);
    lmp_backend_free(be);
}

// ---- calibration runner against a full forward pass with an independent accumulating hook ----

typedef struct {
    int layer;
    int width[LMP_HOOK_COUNT];
    double *gram[LMP_HOOK_COUNT], *absx[LMP_HOOK_COUNT], *sq[LMP_HOOK_COUNT];
    int64_t count[LMP_HOOK_COUNT];
} manual_stats;

static void manual_hook(void *user, int layer, lmp_hook_point where, const float *x, int n, int width) {
    manual_stats *a = user;
    if (layer != a->layer) return;
    if (!a->gram[where]) {
        a->width[where] = width;
        a->gram[where] = calloc((size_t)width * width, sizeof(double));
        a->absx[where] = calloc((size_t)width, sizeof(double));
        a->sq[where] = calloc((size_t)width, sizeof(double));
    }
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * width;
        for (int p = 0; p < width; p++) {
            a->absx[where][p] += fabs(xi[p]);
            a->sq[where][p] += (double)xi[p] * xi[p];
            for (int q = 0; q < width; q++) a->gram[where][(size_t)p * width + q] += (double)xi[p] * xi[q];
        }
    }
    a->count[where] += n;
}

typedef struct {
    const lmp_model *m;
    int bad;
    int calls;
} block_check;

static void check_block(void *user, int seq, const float *x_in, const float *x_out, int n, int dim) {
    block_check *c = user;
    c->calls++;
    int moved = 0;
    for (int i = 0; i < n * dim; i++) moved |= x_in[i] != x_out[i];
    if (!moved) c->bad++;
}

// pool: NULL (the Gram on the calling thread) or a borrowed pool (the Gram's row panels over its threads).
static void test_calib_runner(lmp_pool *pool) {
    lmp_model *m = small_model(1);
    if (!m) return;
    lmp_error err = {0};
    lmp_calib_set set = {0};
    set.n_seq = 3;
    set.seq_len = 16;
    set.tokens = lmp_malloc(sizeof(int32_t) * 48);
    for (int i = 0; i < 48; i++) set.tokens[i] = (int32_t)(test_rand_u64() % 100);
    lmp_calib_runner *r = NULL;
    CHECKF(lmp_calib_runner_new(m, &set, &(lmp_session_opts){0, 0, 2, "cpu", pool}, &r, &err) == LMP_OK, "%s", err.msg);
    if (!r) return;
    unsigned all[LMP_HOOK_COUNT];
    for (int h = 0; h < LMP_HOOK_COUNT; h++) all[h] = LMP_STAT_GRAM | LMP_STAT_ABSMEAN | LMP_STAT_SQMEAN;
    lmp_session *s = NULL;
    CHECKF(lmp_session_new(m, &(lmp_session_opts){16, 16, 1, "cpu", NULL}, &s, &err) == LMP_OK, "%s", err.msg);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        CHECKF(lmp_calib_runner_collect(r, l, all, &err) == LMP_OK, "%s", err.msg);
        manual_stats ms = {l, {0}, {0}, {0}, {0}, {0}};
        lmp_session_set_hook(s, manual_hook, &ms);
        for (int i = 0; i < set.n_seq; i++)
            CHECKF(lmp_session_eval(s, set.tokens + i * 16, 16, 0, 0, NULL, &err) == LMP_OK, "%s", err.msg);
        lmp_session_set_hook(s, NULL, NULL);
        CHECK(lmp_calib_runner_count(r) == 48);
        for (int h = 0; h < LMP_HOOK_COUNT; h++) {
            int w = 0;
            const float *G = lmp_calib_runner_gram(r, (lmp_hook_point)h, &w);
            const float *A = lmp_calib_runner_absmean(r, (lmp_hook_point)h, NULL);
            const float *Q = lmp_calib_runner_sqmean(r, (lmp_hook_point)h, NULL);
            CHECKF(G && A && Q && w == ms.width[h] && ms.count[h] == 48, "layer %d hook %d", l, h);
            if (!G || !A || !Q || w != ms.width[h]) continue;
            // The runner's hidden states come from the same operations, so the inputs are the same floats;
            // its Gram is a float product per sequence (16 terms) summed in double: 1e-5 of the scale.
            double worst = 0, scale = 0;
            for (int p = 0; p < w * w; p++) scale = fmax(scale, fabs(ms.gram[h][p] / 48));
            for (int p = 0; p < w * w; p++) worst = fmax(worst, fabs(G[p] - ms.gram[h][p] / 48));
            for (int p = 0; p < w; p++) {
                CHECKF(fabs(A[p] - ms.absx[h][p] / 48) <= 1e-6 * (ms.absx[h][p] / 48) + 1e-30, "absmean l%d h%d", l, h);
                CHECKF(fabs(Q[p] - ms.sq[h][p] / 48) <= 1e-6 * (ms.sq[h][p] / 48) + 1e-30, "sqmean l%d h%d", l, h);
                CHECKF(fabs(Q[p] - G[(size_t)p * w + p]) <= 1e-5 * scale, "sqmean is the Gram diagonal");
            }
            CHECKF(worst <= 1e-5 * scale, "layer %d hook %d: Gram error %.3g of scale %.3g", l, h, worst, scale);
            free(ms.gram[h]);
            free(ms.absx[h]);
            free(ms.sq[h]);
        }
        if (l + 1 < m->cfg.n_layers) {
            CHECK(lmp_calib_runner_collect(r, l + 1, all, &err) == LMP_E_STATE);  // not advanced yet
            block_check bc = {m, 0, 0};
            CHECKF(lmp_calib_runner_advance(r, l, check_block, &bc, &err) == LMP_OK, "%s", err.msg);
            CHECK(bc.calls == 3 && bc.bad == 0 && lmp_calib_runner_layer(r) == l + 1);
            CHECK(lmp_calib_runner_advance(r, l, NULL, NULL, &err) == LMP_E_STATE);
        }
    }
    // a statistic not asked for is not there
    unsigned only_abs[LMP_HOOK_COUNT] = {LMP_STAT_ABSMEAN, 0, 0, 0};
    CHECKF(lmp_calib_runner_collect(r, m->cfg.n_layers - 1, only_abs, &err) == LMP_OK, "%s", err.msg);
    CHECK(lmp_calib_runner_absmean(r, LMP_HOOK_ATTN_IN, NULL) != NULL);
    CHECK(lmp_calib_runner_gram(r, LMP_HOOK_ATTN_IN, NULL) == NULL);
    CHECK(lmp_calib_runner_absmean(r, LMP_HOOK_FFN_IN, NULL) == NULL);
    lmp_session_free(s);
    lmp_calib_runner_free(r);
    lmp_calib_set_free(&set);
    lmp_model_free(m);
}

static void test_calib_sample(void) {
    const char *dir = "tests/fixtures/hf_tiny_sharded";
    lmp_model *m = NULL;
    lmp_error err = {0};
    CHECKF(lmp_model_load(dir, NULL, &m, &err) == LMP_OK, "%s", err.msg);
    if (!m) return;
    char path[512];
    snprintf(path, sizeof path, "%s/calib.txt", test_tmpdir());
    FILE *f = fopen(path, "w");
    for (int i = 0; i < 300; i++) fprintf(f, "the quick brown fox %d jumps over the lazy dog. ", i);
    fclose(f);
    int32_t *all = NULL;
    size_t n_all = 0;
    CHECKF(lmp_text_tokenize_file(m->tok, path, NULL, &all, &n_all, &err) == LMP_OK, "%s", err.msg);
    lmp_calib_set a = {0}, b = {0};
    CHECKF(lmp_calib_sample(m, path, 100, 16, &a, &err) == LMP_OK, "%s", err.msg);
    CHECKF(lmp_calib_sample(m, path, 100, 16, &b, &err) == LMP_OK, "%s", err.msg);
    CHECK(a.n_seq == 7 && a.seq_len == 16);  // ceil(100 / 16)
    CHECK(a.tokens && b.tokens && memcmp(a.tokens, b.tokens, sizeof(int32_t) * 7 * 16) == 0);  // deterministic
    int bos = lmp_tokenizer_add_bos(m->tok) ? lmp_tokenizer_bos(m->tok) : -1;
    // first window at the start of the text, last at its end, each token run copied from the text
    if (a.tokens && all) {
        for (int i = 0; i < 7; i++) {
            size_t start = (size_t)((int64_t)(n_all - 16) * i / 6);
            CHECK(bos < 0 || a.tokens[i * 16] == bos);
            CHECK(memcmp(a.tokens + i * 16 + 1, all + start + 1, sizeof(int32_t) * 15) == 0);
        }
    }
    lmp_calib_set c = {0};
    CHECK(lmp_calib_sample(m, path, (int64_t)n_all * 2, 16, &c, &err) == LMP_E_ARG);
    CHECKF(strstr(err.msg, "tokens, fewer than"), "%s", err.msg);
    CHECK(c.tokens == NULL);
    CHECK(lmp_calib_sample(m, "/nonexistent/calib.txt", 100, 16, &c, &err) == LMP_E_IO);
    CHECKF(strstr(err.msg, "calibration file '/nonexistent/calib.txt'"), "%s", err.msg);
    CHECK(lmp_calib_sample(m, "/", 100, 16, &c, &err) == LMP_E_IO);
    CHECKF(strstr(err.msg, "is not a regular file"), "%s", err.msg);
    lmp_free(all);
    lmp_calib_set_free(&a);
    lmp_calib_set_free(&b);
    remove(path);
    lmp_model_free(m);
}

static void test_calib_runner_own_thread(void) { test_calib_runner(NULL); }

static void test_calib_runner_pooled(void) {
    lmp_pool *pool = lmp_pool_new(3);  // more threads than the 64-wide Gram has panels of 32
    CHECK(pool != NULL);
    if (pool) test_calib_runner(pool);
    lmp_pool_free(pool);
}

int main(void) {
    test_seed();
    RUN(test_refmath_rmsnorm);
    RUN(test_refmath_rope);
    RUN(test_refmath_softmax_silu);
    RUN(test_weight_table);
    RUN(test_weight_set_reupload);
    RUN(test_supports_op_consulted);
    RUN(test_sticky_error);
    RUN(test_matmul_multi);
    RUN(test_calib_runner_own_thread);
    RUN(test_calib_runner_pooled);
    RUN(test_calib_sample);
    return test_report();
}
