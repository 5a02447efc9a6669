// test_awq.c - AWQ (quant/awq.h): the fold is exact on a tiny random GQA model (logits unchanged), the
// Gram-matrix loss equals the explicit output error, the alpha search keeps alpha = 0 for uniform
// activations and beats RTN with outlier channels, clipping does not hurt; and a short AWQ pass on
// the shipped model (models/default.lmp, calibrated on models/default-calib.txt).
#include <stdlib.h>

#include "quant/awq.h"
#include "runtime/model.h"
#include "format/qtypes.h"
#include "quant/quantize.h"
#include "runtime/session.h"
#include "format/synth.h"
#include "tests/test_util.h"

// max over positions of max|a - b| / max|b|
static double max_rel_err(const float *a, const float *b, int n, int vocab) {
    double worst = 0;
    for (int i = 0; i < n; i++) {
        double d = 0, s = 0;
        for (int j = 0; j < vocab; j++) {
            double e = fabs((double)a[(size_t)i * vocab + j] - b[(size_t)i * vocab + j]);
            if (e > d) d = e;
            if (fabs(b[(size_t)i * vocab + j]) > s) s = fabs(b[(size_t)i * vocab + j]);
        }
        if (s > 0 && d / s > worst) worst = d / s;
    }
    return worst;
}

static lmp_status eval_logits(lmp_model *m, const int32_t *toks, int n, float *logits) {
    lmp_session *s = NULL;
    lmp_session_opts so = {n, n, 1, "cpu"};
    lmp_error err = {0};
    lmp_status st = lmp_session_new(m, &so, &s, &err);
    if (!st) st = lmp_session_eval(s, toks, n, 0, 0, logits, &err);
    if (st) fprintf(stderr, "eval: %s\n", err.msg);
    lmp_session_free(s);
    return st;
}

static float *owned_copy(lmp_model *m, lmp_weight *w, float mult) {
    size_t n = (size_t)w->rows * w->cols;
    float *c = malloc(n * sizeof(float));
    const float *src = w->data;
    for (size_t i = 0; i < n; i++) c[i] = src[i] * mult;
    lmp_error err = {0};
    CHECKF(lmp_model_weight_set(m, w, LMP_DTYPE_F32, c, &err) == LMP_OK, "%s", err.msg);
    return c;
}

static void rand_scales(float *s, int n) {
    for (int i = 0; i < n; i++) s[i] = expf(test_rand_normal());
}

// Scaling by arbitrary s and folding leaves the float model's function unchanged (GQA: 4 query heads on
// 2 KV heads, so the attn_output scale must be tied through v). A fold that forgets the norm does not.
static void test_fold_exact(void) {
    lmp_synth_params sp = {64, 2, 4, 2, 96, 64, 32, 0, test_rand_u64() | 1, NULL};
    lmp_builder *b = NULL;
    lmp_file *f = NULL;
    lmp_model *m = NULL;
    lmp_error err = {0};
    CHECKF(lmp_synth_build(&sp, &b, &err) == LMP_OK, "%s", err.msg);
    CHECKF(b && lmp_builder_to_file(b, &f, &err) == LMP_OK, "%s", err.msg);
    lmp_builder_free(b);
    CHECKF(f && lmp_model_from_file(f, &m, &err) == LMP_OK, "%s", err.msg);
    if (!m) return;
    enum { N = 20 };
    int32_t toks[N];
    for (int i = 0; i < N; i++) toks[i] = (int32_t)(test_rand_u64() % (uint64_t)sp.vocab);
    const int V = sp.vocab, hd = m->cfg.head_dim;
    float *copies[2][7];
    for (int l = 0; l < sp.n_layers; l++) {
        lmp_layer *L = &m->layers[l];
        for (int k = 0; k < LMP_MAT_COUNT; k++)
            copies[l][k] = owned_copy(m, lmp_layer_mat(L, k), 10.0f);  // larger weights: a less linear model
        for (int i = 0; i < sp.dim; i++) {
            lmp_norm_values(&L->attn_norm)[i] = 0.5f + test_rand_uniform();
            lmp_norm_values(&L->ffn_norm)[i] = 0.5f + test_rand_uniform();
        }
        lmp_model_weight_touch(m, &L->attn_norm);
        lmp_model_weight_touch(m, &L->ffn_norm);
    }
    float *ref = malloc(sizeof(float) * N * V), *got = malloc(sizeof(float) * N * V);
    CHECK(eval_logits(m, toks, N, ref) == LMP_OK);
    float s_attn[64], s_v[2 * 16], s_ffn[64], s_up[96], norm_save[64];
    for (int l = 0; l < sp.n_layers; l++) {
        lmp_layer *L = &m->layers[l];
        rand_scales(s_attn, sp.dim);
        rand_scales(s_v, sp.n_kv_heads * hd);
        rand_scales(s_ffn, sp.dim);
        rand_scales(s_up, sp.ffn);
        lmp_awq_layer fl = {lmp_norm_values(&L->attn_norm), lmp_norm_values(&L->ffn_norm), copies[l][0], copies[l][1], copies[l][2], copies[l][3],
                            copies[l][4], copies[l][5], copies[l][6], sp.dim, L->n_heads, L->n_kv_heads, hd, L->ffn};
        lmp_awq_fold(&fl, s_attn, s_v, s_ffn, s_up);
        for (int k = 0; k < LMP_MAT_COUNT; k++) lmp_model_weight_touch(m, lmp_layer_mat(L, k));
        lmp_model_weight_touch(m, &L->attn_norm);
        lmp_model_weight_touch(m, &L->ffn_norm);
    }
    CHECK(eval_logits(m, toks, N, got) == LMP_OK);
    double e = max_rel_err(got, ref, N, V);
    CHECKF(e <= 1e-5, "folded model's logits differ by %.3g (relative)", e);
    // Negative control: scaling q/k/v without dividing the norm changes the function.
    float *n0 = lmp_norm_values(&m->layers[0].attn_norm);
    memcpy(norm_save, n0, sizeof norm_save);
    for (int i = 0; i < sp.dim; i++) n0[i] *= 1.5f + (float)(i % 3);
    lmp_model_weight_touch(m, &m->layers[0].attn_norm);
    CHECK(eval_logits(m, toks, N, got) == LMP_OK);
    e = max_rel_err(got, ref, N, V);
    CHECKF(e > 1e-3, "a broken fold went unnoticed (%.3g)", e);
    memcpy(n0, norm_save, sizeof norm_save);
    for (int l = 0; l < sp.n_layers; l++)
        for (int k = 0; k < 7; k++) free(copies[l][k]);
    free(ref);
    free(got);
    lmp_model_free(m);
}

static void test_tie_heads(void) {
    float x[8 * 4], kv[2 * 4], s[8 * 4];
    for (int i = 0; i < 32; i++) x[i] = (float)i;
    lmp_awq_tie_heads(x, 8, 2, 4, kv);  // heads 0-3 -> kv 0, heads 4-7 -> kv 1
    CHECK(fabsf(kv[0] - (0 + 4 + 8 + 12) / 4.0f) < 1e-6f && fabsf(kv[4 + 3] - (19 + 23 + 27 + 31) / 4.0f) < 1e-6f);
    lmp_awq_expand_heads(kv, 8, 2, 4, s);
    CHECK(s[3 * 4 + 1] == kv[1] && s[4 * 4 + 2] == kv[4 + 2] && s[7 * 4 + 3] == kv[7]);
}

// Activations X (n, cols); W (rows, cols) ~ N(0, 0.05^2); G = X^T X / n; x_mean = mean |x|.
typedef struct {
    int64_t rows, cols, n;
    float *W, *X, *G, *xm;
} layer_problem;

static layer_problem make_layer(int64_t rows, int64_t cols, int64_t n, int mode) {
    layer_problem p = {rows, cols, n, malloc(sizeof(float) * rows * cols), malloc(sizeof(float) * n * cols),
                       malloc(sizeof(float) * cols * cols), malloc(sizeof(float) * cols)};
    for (int64_t i = 0; i < rows * cols; i++) p.W[i] = 0.05f * test_rand_normal();
    for (int64_t i = 0; i < n; i++)
        for (int64_t c = 0; c < cols; c++) {
            float v;
            if (mode == 0) v = (test_rand_u64() & 1) ? 0.7f : -0.7f;  // uniform: |x| = 0.7 on every channel
            else v = test_rand_normal() * (c % 17 == 3 ? 25.0f : 1.0f) * (0.5f + (float)(c % 5) * 0.25f);
            p.X[i * cols + c] = v;
        }
    for (int64_t a = 0; a < cols; a++) {
        double sa = 0;
        for (int64_t i = 0; i < n; i++) sa += fabs(p.X[i * cols + a]);
        p.xm[a] = (float)(sa / (double)n);
        for (int64_t b = a; b < cols; b++) {
            double s = 0;
            for (int64_t i = 0; i < n; i++) s += (double)p.X[i * cols + a] * p.X[i * cols + b];
            p.G[a * cols + b] = p.G[b * cols + a] = (float)(s / (double)n);
        }
    }
    return p;
}

static void free_layer(layer_problem *p) {
    free(p->W);
    free(p->X);
    free(p->G);
    free(p->xm);
}

// Explicit ||X W^T - X Wq^T||^2 / n with Wq = dequant(rtn(Ws)) / s, Ws = W * s (or the given Ws when
// prescaled), in double (independent of the Gram path).
static double explicit_loss(const layer_problem *p, const float *Wsrc, int prescaled, lmp_dtype t, const float *s) {
    size_t rs = lmp_type_row_size(t, p->cols);
    void *blk = malloc(rs);
    float *ws = malloc(sizeof(float) * p->cols), *D = malloc(sizeof(float) * p->rows * p->cols);
    for (int64_t r = 0; r < p->rows; r++) {
        for (int64_t c = 0; c < p->cols; c++) ws[c] = Wsrc[r * p->cols + c] * (s && !prescaled ? s[c] : 1.0f);
        lmp_type_get(t)->from_float_ref(ws, blk, p->cols);
        lmp_type_get(t)->to_float(blk, ws, p->cols);
        for (int64_t c = 0; c < p->cols; c++)
            D[r * p->cols + c] = p->W[r * p->cols + c] - ws[c] / (s ? s[c] : 1.0f);
    }
    double tot = 0;
    for (int64_t i = 0; i < p->n; i++)
        for (int64_t r = 0; r < p->rows; r++) {
            double o = 0;
            for (int64_t c = 0; c < p->cols; c++) o += (double)p->X[i * p->cols + c] * D[r * p->cols + c];
            tot += o * o;
        }
    free(blk);
    free(ws);
    free(D);
    return tot / (double)p->n;
}

static void test_search_uniform(void) {
    layer_problem p = make_layer(48, 128, 1024, 0);
    lmp_awq_mat mats[1] = {{p.W, p.rows, LMP_DTYPE_Q4_0}};
    float s[128];
    lmp_awq_result r;
    lmp_error err = {0};
    CHECKF(lmp_awq_search(mats, 1, p.cols, p.xm, p.G, 20, NULL, s, &r, &err) == LMP_OK, "%s", err.msg);
    CHECKF(r.alpha == 0.0f, "alpha %g with uniform activations", (double)r.alpha);
    int ones = 1;
    for (int i = 0; i < 128; i++) ones &= s[i] == 1.0f;
    CHECK(ones);
    CHECK(r.loss_best == r.loss_rtn);
    free_layer(&p);
}

static void test_search_outliers(void) {
    layer_problem p = make_layer(48, 128, 1024, 1);
    // two matrices in the group (like gate/up), one asymmetric
    float *W2 = malloc(sizeof(float) * 32 * 128);
    for (int i = 0; i < 32 * 128; i++) W2[i] = 0.05f * test_rand_normal();
    lmp_awq_mat mats[2] = {{p.W, p.rows, LMP_DTYPE_Q4_0}, {W2, 32, LMP_DTYPE_Q4_1}};
    float s[128];
    lmp_awq_result r;
    lmp_error err = {0};
    lmp_pool *pool = lmp_pool_new(2);
    CHECKF(lmp_awq_search(mats, 2, p.cols, p.xm, p.G, 20, pool, s, &r, &err) == LMP_OK, "%s", err.msg);
    CHECKF(r.alpha > 0.0f && r.loss_best <= 0.85 * r.loss_rtn, "alpha %g: loss %g vs RTN %g", (double)r.alpha,
           r.loss_best, r.loss_rtn);
    if (getenv("LMP_TEST_VERBOSE"))
        fprintf(stderr, "  outliers: alpha %.2f loss/rtn %.3f\n", (double)r.alpha, r.loss_best / r.loss_rtn);
    // The Gram-matrix loss is the explicit output error (first matrix alone).
    double lg;
    CHECK(lmp_awq_group_loss(mats, 1, p.cols, p.G, s, pool, &lg, &err) == LMP_OK);
    double le = explicit_loss(&p, p.W, 0, LMP_DTYPE_Q4_0, s);
    CHECKF(fabs(lg - le) <= 1e-3 * le, "Gram loss %.8g, explicit %.8g", lg, le);
    // Clipping the scaled weights: the output error does not grow (it usually shrinks).
    float *ws = malloc(sizeof(float) * p.rows * p.cols);
    for (int64_t r0 = 0; r0 < p.rows; r0++)
        for (int64_t c = 0; c < p.cols; c++) ws[r0 * p.cols + c] = p.W[r0 * p.cols + c] * s[c];
    CHECK(lmp_awq_clip(ws, p.rows, p.cols, LMP_DTYPE_Q4_0, s, p.G, pool, &err) == LMP_OK);
    double lc = explicit_loss(&p, ws, 1, LMP_DTYPE_Q4_0, s);
    CHECKF(lc <= le * 1.0001, "clipped loss %.6g > unclipped %.6g", lc, le);
    if (getenv("LMP_TEST_VERBOSE")) fprintf(stderr, "  clip: %.4f of the unclipped loss\n", lc / le);
    lmp_pool_free(pool);
    free(ws);
    free(W2);
    free_layer(&p);
}

static void test_bad_arguments(void) {
    float W[64] = {0}, G[32 * 32] = {0}, xm[32] = {0}, s[32];
    lmp_awq_mat mats[1] = {{W, 2, LMP_DTYPE_Q4_0_G64}};
    lmp_error err = {0};
    CHECK(lmp_awq_search(mats, 1, 32, xm, G, 20, NULL, s, NULL, &err) == LMP_E_ARG);
    CHECK(strstr(err.msg, "q4_0_g64") != NULL);
    mats[0].type = LMP_DTYPE_Q4_0;
    CHECK(lmp_awq_search(mats, 1, 32, xm, G, 0, NULL, s, NULL, &err) == LMP_E_ARG);
    lmp_alloc_fail_after(1);
    CHECK(lmp_awq_search(mats, 1, 32, xm, G, 20, NULL, s, NULL, &err) == LMP_E_NOMEM);
    lmp_alloc_fail_after(2);
    CHECK(lmp_awq_search(mats, 1, 32, xm, G, 20, NULL, s, NULL, &err) == LMP_E_NOMEM);
    lmp_alloc_fail_after(0);
}

// The pass on the shipped model (5 layers): completes and records one alpha per layer group.
static void test_pass_default(void) {
    char outp[600];
    const char *model = TEST_DEFAULT_MODEL, *calib = TEST_DEFAULT_CALIB;
    if (!test_file_exists(model) || !test_file_exists(calib)) {
        CHECKF(0, "%s or %s not found (committed files: run from the repository root)", model, calib);
        return;
    }
    snprintf(outp, sizeof outp, "%s/s-awq.lmp", test_tmpdir());
    lmp_quant_params qp;
    lmp_quant_params_default(&qp);
    qp.method = LMP_QUANT_AWQ;
    qp.calib_path = calib;
    qp.calib_tokens = 8 * 128;
    qp.calib_ctx = 128;
    qp.n_threads = 2;
    lmp_import_opts io = {0};
    lmp_error err = {0};
    lmp_status st = lmp_quantize(model, &io, outp, &qp, NULL, &err);
    CHECKF(st == LMP_OK, "%s", err.msg);
    if (st) return;
    lmp_file *f = NULL;
    CHECKF(lmp_file_open(outp, 0, &f, &err) == LMP_OK, "%s", err.msg);
    if (!f) return;
    const void *data;
    uint64_t n = 0;
    CHECKF(lmp_meta_get_arr(lmp_file_meta(f), "quant.awq_alpha", LMP_KV_F32, &data, &n, &err) == LMP_OK, "%s", err.msg);
    CHECKF(n == 5 * 4, "%llu alphas", (unsigned long long)n);
    for (uint64_t i = 0; i < n; i++) {
        float a;
        memcpy(&a, (const char *)data + 4 * i, 4);
        CHECK(a >= 0.0f && a <= 1.0f);
    }
    lmp_file_close(f);
}

int main(void) {
    test_seed();
    RUN(test_fold_exact);
    RUN(test_tie_heads);
    RUN(test_search_uniform);
    RUN(test_search_outliers);
    RUN(test_bad_arguments);
    RUN(test_pass_default);
    return test_report();
}
