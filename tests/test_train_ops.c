// test_train_ops.c - every op of the training engine (distill/train_ops.h) on fresh random inputs:
//   1. the double-precision reference backward (distill/train_ref.c) against central finite differences of
//      the reference forward (h = 1e-5, relative error <= 1e-6);
//   2. the CPU backend's float32 backward against the same finite differences, and its forward and
//      backward against the reference on larger shapes that exercise the threaded and tiled paths, with
//      tolerances of a few float32 roundings per term of the longest reduction (tol_f32 below).
// Shapes are random within ranges each run (tests/test_util.h seed).
#include <float.h>

#include "distill/train_exp.h"
#include "distill/train_ops.h"
#include "distill/train_ref.h"
#include "runtime/backend.h"
#include "tests/test_util.h"

static lmp_train_backend *BE;  // 2 threads
static const lmp_train_ops *OPS;

static int rnd(int lo, int hi) { return lo + (int)(test_rand_u64() % (uint64_t)(hi - lo + 1)); }

static double *dvec(size_t n, double sd) {
    double *x = malloc((n ? n : 1) * sizeof(double));
    for (size_t i = 0; i < n; i++) x[i] = sd * test_rand_normal();
    return x;
}
static double *dzero(size_t n) { return calloc(n ? n : 1, sizeof(double)); }
static float *fcopy(const double *x, size_t n) {
    float *y = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) y[i] = (float)x[i];
    return y;
}
static float *fzero(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

// max |a - b| / max |b| (b is the reference)
static double rel_err_d(const double *a, const double *b, size_t n) {
    double e = 0, m = 1e-30;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]);
        e = d > e ? d : e;
        m = fabs(b[i]) > m ? fabs(b[i]) : m;
    }
    return e / m;
}
static double rel_err_f(const float *a, const double *b, size_t n) {
    double e = 0, m = 1e-30;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (isnan(a[i])) d = INFINITY;
        e = d > e ? d : e;
        m = fabs(b[i]) > m ? fabs(b[i]) : m;
    }
    return e / m;
}

// Tolerance of a float32 result whose terms come from reductions of length k (relative to the largest
// magnitude): rounding of a length-k sum is bounded by k * eps; a few such stages in a chain.
static double tol_f32(int k) { return 8.0 * (k + 8) * FLT_EPSILON; }
#define FD_TOL 1e-6
#define FD_H 1e-5

// Central differences of f over x[0..n): g[i] = (f(x + h e_i) - f(x - h e_i)) / 2h.
typedef double (*scalar_fn)(void *ctx);
static void fd_grad(double *x, size_t n, scalar_fn f, void *ctx, double *g) {
    for (size_t i = 0; i < n; i++) {
        double s = x[i];
        x[i] = s + FD_H;
        double fp = f(ctx);
        x[i] = s - FD_H;
        double fm = f(ctx);
        x[i] = s;
        g[i] = (fp - fm) / (2 * FD_H);
    }
}

static double dot_d(const double *a, const double *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

// ---- RMSNorm ----
typedef struct {
    double *x, *w, *G, *out, *rstd;
    int n, dim;
    double eps;
} norm_ctx;
static double norm_f(void *p) {
    norm_ctx *c = p;
    lmp_tref_rmsnorm_fwd(c->out, c->rstd, c->x, c->w, c->n, c->dim, c->eps);
    return dot_d(c->out, c->G, (size_t)c->n * c->dim);
}

static void rmsnorm_case(int n, int dim, int do_fd) {
    size_t N = (size_t)n * dim;
    norm_ctx c = {dvec(N, 1.0), dvec(dim, 1.0), dvec(N, 1.0), dzero(N), dzero(n), n, dim, 1e-5};
    for (int j = 0; j < dim; j++) c.w[j] += 1.0;
    norm_f(&c);
    double *dx = dzero(N), *dw = dzero(dim);
    lmp_tref_rmsnorm_bwd(dx, dw, c.G, c.x, c.w, c.rstd, n, dim);
    // CPU
    float *fx = fcopy(c.x, N), *fw = fcopy(c.w, dim), *fG = fcopy(c.G, N), *fo = fzero(N), *fr = fzero(n);
    float *fdx = fzero(N), *fdw = fzero(dim);
    OPS->rmsnorm_fwd(BE, fo, fr, fx, fw, n, dim, 1e-5f);
    OPS->rmsnorm_bwd(BE, fdx, fdw, fG, fx, fw, fr, n, dim);
    CHECKF(rel_err_f(fo, c.out, N) < tol_f32(dim), "rmsnorm fwd (%d x %d) err %g", n, dim, rel_err_f(fo, c.out, N));
    CHECKF(rel_err_f(fdx, dx, N) < tol_f32(dim), "rmsnorm dx err %g", rel_err_f(fdx, dx, N));
    CHECKF(rel_err_f(fdw, dw, dim) < tol_f32(n + dim), "rmsnorm dw err %g", rel_err_f(fdw, dw, dim));
    if (do_fd) {
        double *gx = dzero(N), *gw = dzero(dim);
        fd_grad(c.x, N, norm_f, &c, gx);
        fd_grad(c.w, dim, norm_f, &c, gw);
        CHECKF(rel_err_d(dx, gx, N) < FD_TOL, "rmsnorm ref dx vs FD %g", rel_err_d(dx, gx, N));
        CHECKF(rel_err_d(dw, gw, dim) < FD_TOL, "rmsnorm ref dw vs FD %g", rel_err_d(dw, gw, dim));
        CHECKF(rel_err_f(fdx, gx, N) < tol_f32(dim), "rmsnorm cpu dx vs FD %g", rel_err_f(fdx, gx, N));
        CHECKF(rel_err_f(fdw, gw, dim) < tol_f32(n + dim), "rmsnorm cpu dw vs FD %g", rel_err_f(fdw, gw, dim));
        free(gx);
        free(gw);
    }
    free(c.x), free(c.w), free(c.G), free(c.out), free(c.rstd), free(dx), free(dw);
    free(fx), free(fw), free(fG), free(fo), free(fr), free(fdx), free(fdw);
}

static void test_rmsnorm(void) {
    rmsnorm_case(rnd(2, 6), rnd(3, 17), 1);
    rmsnorm_case(rnd(300, 600), rnd(60, 200), 0);  // threaded, per-thread dw partials
}

// ---- matmul ----
typedef struct {
    double *x, *W, *G, *y;
    int n, in, out;
} mm_ctx;
static double mm_f(void *p) {
    mm_ctx *c = p;
    lmp_tref_matmul_fwd(c->y, c->x, c->W, c->n, c->in, c->out);
    return dot_d(c->y, c->G, (size_t)c->n * c->out);
}

static void matmul_case(int n, int in, int out, int do_fd) {
    size_t NX = (size_t)n * in, NW = (size_t)out * in, NY = (size_t)n * out;
    mm_ctx c = {dvec(NX, 1), dvec(NW, 1), dvec(NY, 1), dzero(NY), n, in, out};
    mm_f(&c);
    double *dx = dvec(NX, 1), *dW = dvec(NW, 1);  // backward adds: start from random values
    float *fdx = fcopy(dx, NX), *fdW = fcopy(dW, NW);
    double *dx0 = malloc(NX * sizeof(double)), *dW0 = malloc(NW * sizeof(double));
    memcpy(dx0, dx, NX * sizeof(double));
    memcpy(dW0, dW, NW * sizeof(double));
    lmp_tref_matmul_bwd(dx, dW, c.G, c.x, c.W, n, in, out);
    float *fx = fcopy(c.x, NX), *fW = fcopy(c.W, NW), *fG = fcopy(c.G, NY), *fy = fzero(NY);
    OPS->matmul_fwd(BE, fy, fx, fW, n, in, out);
    OPS->matmul_bwd(BE, fdx, fdW, fG, fx, fW, n, in, out);
    CHECKF(rel_err_f(fy, c.y, NY) < tol_f32(in), "matmul fwd (%d,%d,%d) err %g", n, in, out, rel_err_f(fy, c.y, NY));
    CHECKF(rel_err_f(fdx, dx, NX) < tol_f32(out), "matmul dx err %g", rel_err_f(fdx, dx, NX));
    CHECKF(rel_err_f(fdW, dW, NW) < tol_f32(n), "matmul dW err %g", rel_err_f(fdW, dW, NW));
    if (do_fd) {
        double *gx = dzero(NX), *gW = dzero(NW);
        fd_grad(c.x, NX, mm_f, &c, gx);
        fd_grad(c.W, NW, mm_f, &c, gW);
        for (size_t i = 0; i < NX; i++) dx[i] -= dx0[i], fdx[i] -= (float)dx0[i];
        for (size_t i = 0; i < NW; i++) dW[i] -= dW0[i], fdW[i] -= (float)dW0[i];
        CHECKF(rel_err_d(dx, gx, NX) < FD_TOL, "matmul ref dx vs FD %g", rel_err_d(dx, gx, NX));
        CHECKF(rel_err_d(dW, gW, NW) < FD_TOL, "matmul ref dW vs FD %g", rel_err_d(dW, gW, NW));
        CHECKF(rel_err_f(fdx, gx, NX) < tol_f32(out), "matmul cpu dx vs FD %g", rel_err_f(fdx, gx, NX));
        CHECKF(rel_err_f(fdW, gW, NW) < tol_f32(n), "matmul cpu dW vs FD %g", rel_err_f(fdW, gW, NW));
        free(gx);
        free(gW);
    }
    free(c.x), free(c.W), free(c.G), free(c.y), free(dx), free(dW), free(dx0), free(dW0);
    free(fx), free(fW), free(fG), free(fy), free(fdx), free(fdW);
}

static void test_matmul(void) {
    matmul_case(rnd(2, 5), rnd(2, 9), rnd(2, 9), 1);
    matmul_case(rnd(100, 200), rnd(40, 90), rnd(150, 300), 0);  // out > n: split by output rows
    matmul_case(rnd(300, 500), rnd(40, 90), rnd(20, 60), 0);    // n > out: split by tokens
}

// ---- RoPE ----
typedef struct {
    double *x0, *x, *G, *cs, *sn;
    int n, T, nh, hd, rd, neox;
} rope_ctx;
static double rope_f(void *p) {
    rope_ctx *c = p;
    size_t N = (size_t)c->n * c->nh * c->hd;
    memcpy(c->x, c->x0, N * sizeof(double));
    lmp_tref_rope_fwd(c->x, c->n, c->T, c->nh, c->hd, c->cs, c->sn, c->rd, c->neox);
    return dot_d(c->x, c->G, N);
}

static void rope_tables(int T, int rd, float theta, float *fc, float *fs, double *dc, double *ds) {
    for (int p = 0; p < T; p++)
        for (int i = 0; i < rd / 2; i++) {
            float freq = 1.0f / powf(theta, (float)(2 * i) / (float)rd), a = (float)p * freq;
            fc[p * (rd / 2) + i] = cosf(a);
            fs[p * (rd / 2) + i] = sinf(a);
            dc[p * (rd / 2) + i] = fc[p * (rd / 2) + i];
            ds[p * (rd / 2) + i] = fs[p * (rd / 2) + i];
        }
}

static void rope_case(int B, int T, int nh, int hd, int rd, int neox, int do_fd) {
    int n = B * T;
    size_t N = (size_t)n * nh * hd, H = (size_t)T * rd / 2;
    float *fc = malloc(H * sizeof(float)), *fs = malloc(H * sizeof(float));
    rope_ctx c = {dvec(N, 1), dzero(N), dvec(N, 1), dzero(H), dzero(H), n, T, nh, hd, rd, neox};
    rope_tables(T, rd, 10000.0f, fc, fs, c.cs, c.sn);
    rope_f(&c);
    double *dx = malloc(N * sizeof(double));
    memcpy(dx, c.G, N * sizeof(double));
    lmp_tref_rope_bwd(dx, n, T, nh, hd, c.cs, c.sn, rd, neox);
    lmp_train_rope r = {fc, fs, rd, neox};
    float *fx = fcopy(c.x0, N), *fdx = fcopy(c.G, N);
    OPS->rope_fwd(BE, fx, n, T, nh, hd, &r);
    OPS->rope_bwd(BE, fdx, n, T, nh, hd, &r);
    CHECKF(rel_err_f(fx, c.x, N) < tol_f32(2), "rope fwd (neox %d) err %g", neox, rel_err_f(fx, c.x, N));
    CHECKF(rel_err_f(fdx, dx, N) < tol_f32(2), "rope bwd (neox %d) err %g", neox, rel_err_f(fdx, dx, N));
    if (do_fd) {
        double *g = dzero(N);
        fd_grad(c.x0, N, rope_f, &c, g);
        CHECKF(rel_err_d(dx, g, N) < FD_TOL, "rope ref bwd vs FD (neox %d) %g", neox, rel_err_d(dx, g, N));
        CHECKF(rel_err_f(fdx, g, N) < tol_f32(2), "rope cpu bwd vs FD (neox %d) %g", neox, rel_err_f(fdx, g, N));
        free(g);
    }
    free(fc), free(fs), free(c.x0), free(c.x), free(c.G), free(c.cs), free(c.sn), free(dx), free(fx), free(fdx);
}

static void test_rope(void) {
    for (int neox = 0; neox < 2; neox++) {
        int hd = 2 * rnd(2, 5);
        rope_case(2, rnd(3, 7), rnd(1, 3), hd, hd, neox, 1);
        rope_case(2, rnd(3, 7), 2, hd, hd - 2, neox, 1);  // partial rotary: rope_dim < head_dim
        rope_case(rnd(2, 4), rnd(60, 120), 4, 16, 16, neox, 0);
    }
}

// ---- attention ----
typedef struct {
    double *q, *k, *v, *G, *out, *P;
    lmp_attn_dims d;
} attn_ctx;
static double attn_f(void *p) {
    attn_ctx *c = p;
    lmp_tref_attn_fwd(c->out, c->P, c->q, c->k, c->v, &c->d);
    return dot_d(c->out, c->G, (size_t)c->d.B * c->d.T * c->d.n_heads * c->d.hd);
}

static void attn_case(lmp_attn_dims d, int do_fd) {
    size_t n = (size_t)d.B * d.T, NQ = n * d.n_heads * d.hd, NK = n * d.n_kv * d.hd;
    size_t NP = (size_t)d.B * d.n_heads * d.T * d.T;
    attn_ctx c = {dvec(NQ, 1), dvec(NK, 1), dvec(NK, 1), dvec(NQ, 1), dzero(NQ), dzero(NP), d};
    attn_f(&c);
    double *dq = dzero(NQ), *dk = dzero(NK), *dv = dzero(NK);
    lmp_tref_attn_bwd(dq, dk, dv, c.G, c.q, c.k, c.v, c.P, &d);
    float *fq = fcopy(c.q, NQ), *fk = fcopy(c.k, NK), *fv = fcopy(c.v, NK), *fG = fcopy(c.G, NQ);
    float *fo = fzero(NQ), *fP = fzero(NP), *fdq = fzero(NQ), *fdk = fzero(NK), *fdv = fzero(NK);
    OPS->attn_fwd(BE, fo, fP, NULL, fq, fk, fv, &d);
    OPS->attn_bwd(BE, fdq, fdk, fdv, fG, fq, fk, fv, fP, NULL, &d);
    // recompute mode: only the rows' log-sum-exp kept, probabilities rebuilt in backward
    float *ro = fzero(NQ), *rl = fzero((size_t)d.B * d.n_heads * d.T), *rdq = fzero(NQ), *rdk = fzero(NK),
          *rdv = fzero(NK);
    OPS->attn_fwd(BE, ro, NULL, rl, fq, fk, fv, &d);
    OPS->attn_bwd(BE, rdq, rdk, rdv, fG, fq, fk, fv, NULL, rl, &d);
    int K = d.T + d.hd;
    CHECKF(rel_err_f(fo, c.out, NQ) < tol_f32(K), "attn fwd (B%d T%d nh%d nkv%d hd%d) err %g", d.B, d.T, d.n_heads,
           d.n_kv, d.hd, rel_err_f(fo, c.out, NQ));
    CHECKF(rel_err_f(fP, c.P, NP) < tol_f32(K), "attn P err %g", rel_err_f(fP, c.P, NP));
    CHECKF(rel_err_f(fdq, dq, NQ) < tol_f32(2 * K), "attn dq err %g", rel_err_f(fdq, dq, NQ));
    CHECKF(rel_err_f(fdk, dk, NK) < tol_f32(2 * K), "attn dk err %g", rel_err_f(fdk, dk, NK));
    CHECKF(rel_err_f(fdv, dv, NK) < tol_f32(2 * K), "attn dv err %g", rel_err_f(fdv, dv, NK));
    CHECKF(rel_err_f(ro, c.out, NQ) < tol_f32(K), "attn (recompute) fwd err %g", rel_err_f(ro, c.out, NQ));
    CHECKF(rel_err_f(rdq, dq, NQ) < tol_f32(2 * K), "attn (recompute) dq err %g", rel_err_f(rdq, dq, NQ));
    CHECKF(rel_err_f(rdk, dk, NK) < tol_f32(2 * K), "attn (recompute) dk err %g", rel_err_f(rdk, dk, NK));
    CHECKF(rel_err_f(rdv, dv, NK) < tol_f32(2 * K), "attn (recompute) dv err %g", rel_err_f(rdv, dv, NK));
    free(ro), free(rl), free(rdq), free(rdk), free(rdv);
    if (do_fd) {
        double *gq = dzero(NQ), *gk = dzero(NK), *gv = dzero(NK);
        fd_grad(c.q, NQ, attn_f, &c, gq);
        fd_grad(c.k, NK, attn_f, &c, gk);
        fd_grad(c.v, NK, attn_f, &c, gv);
        CHECKF(rel_err_d(dq, gq, NQ) < FD_TOL, "attn ref dq vs FD %g", rel_err_d(dq, gq, NQ));
        CHECKF(rel_err_d(dk, gk, NK) < FD_TOL, "attn ref dk vs FD %g", rel_err_d(dk, gk, NK));
        CHECKF(rel_err_d(dv, gv, NK) < FD_TOL, "attn ref dv vs FD %g", rel_err_d(dv, gv, NK));
        CHECKF(rel_err_f(fdq, gq, NQ) < tol_f32(2 * K), "attn cpu dq vs FD %g", rel_err_f(fdq, gq, NQ));
        CHECKF(rel_err_f(fdk, gk, NK) < tol_f32(2 * K), "attn cpu dk vs FD %g", rel_err_f(fdk, gk, NK));
        CHECKF(rel_err_f(fdv, gv, NK) < tol_f32(2 * K), "attn cpu dv vs FD %g", rel_err_f(fdv, gv, NK));
        free(gq), free(gk), free(gv);
    }
    free(c.q), free(c.k), free(c.v), free(c.G), free(c.out), free(c.P), free(dq), free(dk), free(dv);
    free(fq), free(fk), free(fv), free(fG), free(fo), free(fP), free(fdq), free(fdk), free(fdv);
}

static void test_attention(void) {
    attn_case((lmp_attn_dims){2, rnd(3, 8), 4, 2, 2 * rnd(1, 3)}, 1);  // GQA, groups of 2
    attn_case((lmp_attn_dims){1, rnd(3, 8), 3, 3, 4}, 1);              // multi-head
    attn_case((lmp_attn_dims){2, rnd(3, 8), 4, 1, 4}, 1);              // multi-query
    attn_case((lmp_attn_dims){rnd(2, 3), rnd(65, 150), 6, 2, 16}, 0);  // several query tiles, threaded
}

// ---- SwiGLU ----
typedef struct {
    double *g, *u, *G, *h;
    size_t n;
} sw_ctx;
static double sw_f(void *p) {
    sw_ctx *c = p;
    lmp_tref_swiglu_fwd(c->h, c->g, c->u, c->n);
    return dot_d(c->h, c->G, c->n);
}

static void test_swiglu(void) {
    for (int pass = 0; pass < 2; pass++) {
        size_t n = pass ? (size_t)rnd(20000, 40000) : (size_t)rnd(5, 40);
        sw_ctx c = {dvec(n, 2), dvec(n, 1), dvec(n, 1), dzero(n), n};
        sw_f(&c);
        double *dg = dzero(n), *du = dzero(n);
        lmp_tref_swiglu_bwd(dg, du, c.G, c.g, c.u, n);
        float *fg = fcopy(c.g, n), *fu = fcopy(c.u, n), *fG = fcopy(c.G, n), *fh = fzero(n), *fdg = fzero(n),
              *fdu = fzero(n);
        OPS->swiglu_fwd(BE, fh, fg, fu, n);
        OPS->swiglu_bwd(BE, fdg, fdu, fG, fg, fu, n);
        CHECKF(rel_err_f(fh, c.h, n) < tol_f32(4), "swiglu fwd err %g", rel_err_f(fh, c.h, n));
        CHECKF(rel_err_f(fdg, dg, n) < tol_f32(4), "swiglu dg err %g", rel_err_f(fdg, dg, n));
        CHECKF(rel_err_f(fdu, du, n) < tol_f32(4), "swiglu du err %g", rel_err_f(fdu, du, n));
        if (!pass) {
            double *gg = dzero(n), *gu = dzero(n);
            fd_grad(c.g, n, sw_f, &c, gg);
            fd_grad(c.u, n, sw_f, &c, gu);
            CHECKF(rel_err_d(dg, gg, n) < FD_TOL, "swiglu ref dg vs FD %g", rel_err_d(dg, gg, n));
            CHECKF(rel_err_d(du, gu, n) < FD_TOL, "swiglu ref du vs FD %g", rel_err_d(du, gu, n));
            CHECKF(rel_err_f(fdg, gg, n) < tol_f32(4), "swiglu cpu dg vs FD %g", rel_err_f(fdg, gg, n));
            CHECKF(rel_err_f(fdu, gu, n) < tol_f32(4), "swiglu cpu du vs FD %g", rel_err_f(fdu, gu, n));
            free(gg), free(gu);
        }
        free(c.g), free(c.u), free(c.G), free(c.h), free(dg), free(du), free(fg), free(fu), free(fG), free(fh);
        free(fdg), free(fdu);
    }
}

// ---- embedding ----
typedef struct {
    double *E, *G, *out;
    int32_t *tok;
    int n, dim;
} emb_ctx;
static double emb_f(void *p) {
    emb_ctx *c = p;
    lmp_tref_embed_fwd(c->out, c->E, c->tok, c->n, c->dim);
    return dot_d(c->out, c->G, (size_t)c->n * c->dim);
}

static void test_embedding(void) {
    int V = rnd(3, 12), dim = rnd(2, 9), n = rnd(4, 20);
    int32_t tok[20];
    for (int i = 0; i < n; i++) tok[i] = (int32_t)(test_rand_u64() % (uint64_t)V);  // repeats likely
    emb_ctx c = {dvec((size_t)V * dim, 1), dvec((size_t)n * dim, 1), dzero((size_t)n * dim), tok, n, dim};
    emb_f(&c);
    double *dE = dzero((size_t)V * dim), *g = dzero((size_t)V * dim);
    lmp_tref_embed_bwd(dE, c.G, tok, n, dim);
    fd_grad(c.E, (size_t)V * dim, emb_f, &c, g);
    emb_f(&c);  // the output of the unperturbed E again
    CHECKF(rel_err_d(dE, g, (size_t)V * dim) < FD_TOL, "embed ref vs FD %g", rel_err_d(dE, g, (size_t)V * dim));
    float *fE = fcopy(c.E, (size_t)V * dim), *fG = fcopy(c.G, (size_t)n * dim), *fo = fzero((size_t)n * dim),
          *fdE = fzero((size_t)V * dim);
    OPS->embed_fwd(BE, fo, fE, tok, n, dim);
    OPS->embed_bwd(BE, fdE, fG, tok, n, dim);
    CHECKF(rel_err_f(fo, c.out, (size_t)n * dim) < tol_f32(0), "embed fwd err %g", rel_err_f(fo, c.out, (size_t)n * dim));
    CHECKF(rel_err_f(fdE, g, (size_t)V * dim) < tol_f32(n), "embed cpu vs FD %g", rel_err_f(fdE, g, (size_t)V * dim));
    free(c.E), free(c.G), free(c.out), free(dE), free(g), free(fE), free(fG), free(fo), free(fdE);
}

// ---- loss: CE and temperature KL (forward and reverse) ----
typedef struct {
    double *z, *t, *dz, *ce, *kd;
    int32_t *y;
    int n, V;
    lmp_loss_params p;
    double scale;
} loss_ctx;
static double loss_f(void *p) {
    loss_ctx *c = p;
    lmp_tref_loss(c->dz, c->ce, c->kd, c->z, c->y, c->t, c->n, c->V, &c->p, c->scale);
    double s = 0;
    for (int i = 0; i < c->n; i++) s += c->scale * (c->p.alpha * c->kd[i] + (1 - c->p.alpha) * c->ce[i]);
    return s;
}

static void loss_case(int n, int V, lmp_loss_params p, int do_fd) {
    size_t N = (size_t)n * V;
    int32_t *y = malloc((size_t)n * sizeof(int32_t));
    for (int i = 0; i < n; i++) y[i] = (int32_t)(test_rand_u64() % (uint64_t)V);
    loss_ctx c = {dvec(N, 2), dvec(N, 2), dzero(N), dzero(n), dzero(n), y, n, V, p, 1.0 / n};
    loss_f(&c);
    double *dz = malloc(N * sizeof(double));
    memcpy(dz, c.dz, N * sizeof(double));
    // KD with the teacher equal to the student is zero in both directions
    if (p.alpha > 0) {
        double *dz2 = dzero(N), *ce2 = dzero(n), *kd2 = dzero(n);
        lmp_tref_loss(dz2, ce2, kd2, c.z, y, c.z, n, V, &p, 1.0);
        for (int i = 0; i < n; i++) CHECKF(fabs(kd2[i]) < 1e-12, "KL(p||p) = %g", kd2[i]);
        free(dz2), free(ce2), free(kd2);
    }
    float *fz = fcopy(c.z, N), *ft = fcopy(c.t, N), *fce = fzero(n), *fkd = fzero(n);
    OPS->loss_fwd_bwd(BE, fz, fce, fkd, y, p.alpha > 0 ? ft : NULL, n, V, &p, (float)(1.0 / n));
    CHECKF(rel_err_f(fce, c.ce, n) < tol_f32(V), "loss ce err %g", rel_err_f(fce, c.ce, n));
    if (p.alpha > 0) CHECKF(rel_err_f(fkd, c.kd, n) < tol_f32(V), "loss kd err %g", rel_err_f(fkd, c.kd, n));
    CHECKF(rel_err_f(fz, dz, N) < tol_f32(V), "loss dlogits (alpha %g T %g kd %d) err %g", p.alpha, p.temp, p.kd,
           rel_err_f(fz, dz, N));
    if (do_fd) {
        double *g = dzero(N);
        fd_grad(c.z, N, loss_f, &c, g);
        CHECKF(rel_err_d(dz, g, N) < FD_TOL, "loss ref vs FD (alpha %g T %g kd %d) %g", p.alpha, p.temp, p.kd,
               rel_err_d(dz, g, N));
        CHECKF(rel_err_f(fz, g, N) < tol_f32(V), "loss cpu vs FD %g", rel_err_f(fz, g, N));
        free(g);
    }
    free(y), free(c.z), free(c.t), free(c.dz), free(c.ce), free(c.kd), free(dz), free(fz), free(ft), free(fce), free(fkd);
}

static void test_loss(void) {
    const float alphas[] = {0.0f, 0.5f, 1.0f}, temps[] = {1.0f, 2.0f, 0.7f};
    for (int kd = 0; kd < 2; kd++)
        for (int a = 0; a < 3; a++)
            for (int t = 0; t < 3; t++) {
                lmp_loss_params p = {alphas[a], temps[t], (lmp_kd_loss)kd};
                loss_case(rnd(2, 5), rnd(3, 17), p, 1);
            }
    loss_case(rnd(60, 120), rnd(500, 1100), (lmp_loss_params){0.5f, 2.0f, LMP_KD_FKL}, 0);
    loss_case(rnd(60, 120), rnd(500, 1100), (lmp_loss_params){0.3f, 1.5f, LMP_KD_RKL}, 0);
}

// ---- AdamW and the gradient norm ----
static void test_adamw(void) {
    size_t n = (size_t)rnd(70000, 140000);
    double *p = dvec(n, 1), *m = dzero(n), *v = dzero(n);
    float *fp = fcopy(p, n), *fm = fzero(n), *fv = fzero(n);
    for (int t = 1; t <= 5; t++) {
        double *g = dvec(n, 0.1);
        float *fg = fcopy(g, n);
        double bc1 = 1 - pow(0.9, t), bc2 = 1 - pow(0.95, t);
        lmp_tref_adamw(p, g, m, v, n, 1e-3, 0.9, 0.95, 1e-8, 0.1, bc1, bc2, 0.5);
        OPS->adamw(BE, fp, fg, fm, fv, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, (float)bc1, (float)bc2, 0.5f);
        double ss = 0;
        for (size_t i = 0; i < n; i++) ss += g[i] * g[i];
        double fss = OPS->sumsq(BE, fg, n);
        CHECKF(fabs(fss - ss) / ss < 1e-6, "sumsq %g vs %g", fss, ss);
        free(g), free(fg);
    }
    CHECKF(rel_err_f(fp, p, n) < tol_f32(16), "adamw params err %g", rel_err_f(fp, p, n));
    CHECKF(rel_err_f(fm, m, n) < tol_f32(16), "adamw m err %g", rel_err_f(fm, m, n));
    CHECKF(rel_err_f(fv, v, n) < tol_f32(16), "adamw v err %g", rel_err_f(fv, v, n));
    free(p), free(m), free(v), free(fp), free(fm), free(fv);
}

// The loss exponentials: the variant in use (AVX2 on x86-64 CPUs with it) against libm's expf, on softmax-like
// arguments and on the whole clamped range; within 3 ulp per value, the sums within float rounding.
static void test_expsum(void) {
    lmp_expsum_fn f = lmp_train_expsum_best();
    const int n = 1000 + rnd(0, 99);  // a tail that is not a multiple of 16
    float *x = malloc(n * sizeof(float)), *a = malloc(n * sizeof(float)), *r = malloc(n * sizeof(float));
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < n; i++) x[i] = pass ? 170.0f * test_rand_uniform() - 85.0f : 30.0f * test_rand_normal();
        float mul = pass ? 1.0f : 0.5f, sub = pass ? 0.0f : 3.0f;
        float sa = f(x, a, n, mul, sub), sr = lmp_train_expsum_ref(x, r, n, mul, sub);
        double worst = 0;
        for (int i = 0; i < n; i++) worst = fmax(worst, fabs((double)a[i] - r[i]) / fmax(fabs(r[i]), 1e-38));
        CHECKF(worst < 3 * FLT_EPSILON, "expsum pass %d: worst relative error %g", pass, worst);
        CHECKF(fabs(sa - sr) <= 1e-5 * fabs(sr), "expsum pass %d: sum %g vs %g", pass, sa, sr);
    }
    free(x), free(a), free(r);
}

int main(void) {
    test_seed();
    lmp_cpu_blas_single_threaded();  // as the programs do (runtime/backend.h)
    lmp_error err;
    if (lmp_train_cpu_new(NULL, 2, &BE, &err) != LMP_OK) {
        fprintf(stderr, "cannot create the CPU training backend: %s\n", err.msg);
        return 1;
    }
    OPS = BE->ops;
    RUN(test_embedding);
    RUN(test_rmsnorm);
    RUN(test_matmul);
    RUN(test_rope);
    RUN(test_attention);
    RUN(test_swiglu);
    RUN(test_loss);
    RUN(test_adamw);
    RUN(test_expsum);
    lmp_train_backend_free(BE);
    return test_report();
}
