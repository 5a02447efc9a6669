// train_cpu.c - the CPU backend of the training engine (train_ops.h): float32 ops on host memory.
//
// Matrix products are OpenBLAS sgemm calls on per-thread slices (OpenBLAS single-threaded by the program's
// lmp_cpu_blas_single_threaded, so the project's one thread pool owns the cores, as in runtime/backend_cpu.c): forward y = x W^T and dx = dy W
// split by rows of the larger output dimension, dW += dy^T x split by rows of W. Attention runs as sgemm
// tiles of (sequence, head, 64 queries) over the causal prefix only. Reductions (RMSNorm's weight gradient,
// the gradient norm) use per-thread partial sums added in thread order, so a given thread count always
// gives the same bits. It does not know the model (train.c).
#include <cblas.h>
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "distill/train_exp.h"
#include "distill/train_ops.h"
#include "runtime/kernels.h"
#include "runtime/refmath.h"
#include "runtime/sgemm.h"
#include "runtime/threadpool.h"

#define MAX_THREADS 256
#define ATT_QB 64  // query rows per attention tile

typedef struct cpu_ctx {
    lmp_pool *pool;
    int own_pool;
    int nth;
    float *scratch;  // (nth, scratch_per) per-thread scratch (attention dS, RMSNorm dw partials)
    size_t scratch_per;
    int scratch_failed;  // an op could not get scratch: its outputs are NaN (sticky until checked)
    lmp_expsum_fn expsum;  // the loss exponentials (train_exp.h)
} cpu_ctx;

static cpu_ctx *C(lmp_train_backend *b) { return (cpu_ctx *)b->ctx; }

static void *cpu_alloc(lmp_train_backend *b, size_t bytes) { return lmp_malloc(bytes ? bytes : 1); }
static void cpu_free(lmp_train_backend *b, void *p) { lmp_free(p); }
static void cpu_copy(lmp_train_backend *b, void *dst, const void *src, size_t bytes) {
    if (dst != src && bytes) memmove(dst, src, bytes);
}
static void cpu_zero(lmp_train_backend *b, float *x, size_t n) { memset(x, 0, n * sizeof(float)); }

static lmp_status cpu_synchronize(lmp_train_backend *b, lmp_error *err) {
    cpu_ctx *c = C(b);
    if (!c->scratch_failed) return LMP_OK;
    c->scratch_failed = 0;
    return lmp_err(err, LMP_E_NOMEM, "out of memory for training scratch buffers");
}

// Runs fn on the pool, or on the calling thread alone when the work is too small to pay for a wake-up.
static void run(cpu_ctx *c, lmp_pool_fn fn, void *arg, double work) {
    if (work < 65536.0 || c->nth == 1) fn(arg, 0, 1);
    else lmp_pool_run(c->pool, fn, arg);
}

// The same for ops made of sgemm calls: when OpenBLAS threads itself (the program did not call
// lmp_cpu_blas_single_threaded, runtime/backend.h), one call on the whole range lets it use the cores.
static void run_blas(cpu_ctx *c, lmp_pool_fn fn, void *arg, double work) {
    if (lmp_sgemm_choice()->use_blas && openblas_get_num_threads() > 1) fn(arg, 0, 1);
    else run(c, fn, arg, work);
}

static int scratch_reserve(cpu_ctx *c, size_t per_thread) {
    if (c->scratch_per >= per_thread) return 1;
    float *s = lmp_malloc(per_thread * (size_t)c->nth * sizeof(float));
    if (!s) {
        c->scratch_failed = 1;
        return 0;
    }
    lmp_free(c->scratch);
    c->scratch = s;
    c->scratch_per = per_thread;
    return 1;
}

static void fill_nan(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = NAN;
}

// ---- elementwise ----
typedef struct {
    float *a, *b2;
    const float *x, *y, *z;
    size_t n;
} ew_job;

static void add_worker(void *arg, int ith, int nth) {
    ew_job *j = arg;
    long long i0, i1;
    lmp_split_range((long long)j->n, ith, nth, 16, &i0, &i1);
    for (long long i = i0; i < i1; i++) j->a[i] += j->x[i];
}

static void cpu_add(lmp_train_backend *b, float *x, const float *y, size_t n) {
    ew_job j = {x, NULL, y, NULL, NULL, n};
    run(C(b), add_worker, &j, (double)n);
}

// ---- embedding ----
static void cpu_embed_fwd(lmp_train_backend *b, float *out, const float *E, const int32_t *tok, int n, int dim) {
    for (int i = 0; i < n; i++) memcpy(out + (size_t)i * dim, E + (size_t)tok[i] * dim, (size_t)dim * sizeof(float));
}

static void cpu_embed_bwd(lmp_train_backend *b, float *dE, const float *dout, const int32_t *tok, int n, int dim) {
    for (int i = 0; i < n; i++) {
        float *d = dE + (size_t)tok[i] * dim;
        const float *g = dout + (size_t)i * dim;
        for (int j = 0; j < dim; j++) d[j] += g[j];
    }
}

// ---- rmsnorm ----
typedef struct {
    cpu_ctx *c;
    float *out, *rstd, *dx, *dw;
    const float *x, *w, *dout, *rstd_in;
    int n, dim;
    float eps;
} norm_job;

static void rmsnorm_fwd_worker(void *arg, int ith, int nth) {
    norm_job *j = arg;
    long long i0, i1;
    lmp_split_range(j->n, ith, nth, 1, &i0, &i1);
    for (long long i = i0; i < i1; i++) {
        const float *xi = j->x + (size_t)i * j->dim;
        // the output is the shared reference RMSNorm (the inference forward's); rstd is its scale, summed in
        // the same order
        lmp_ref_rmsnorm(j->out + (size_t)i * j->dim, xi, j->w, j->dim, j->eps);
        float ss = 0.0f;
        for (int k = 0; k < j->dim; k++) ss += xi[k] * xi[k];
        j->rstd[i] = 1.0f / sqrtf(ss / (float)j->dim + j->eps);
    }
}

static void cpu_rmsnorm_fwd(lmp_train_backend *b, float *out, float *rstd, const float *x, const float *w, int n,
                            int dim, float eps) {
    norm_job j = {C(b), out, rstd, NULL, NULL, x, w, NULL, NULL, n, dim, eps};
    run(C(b), rmsnorm_fwd_worker, &j, 3.0 * n * dim);
}

static void rmsnorm_bwd_worker(void *arg, int ith, int nth) {
    norm_job *j = arg;
    long long i0, i1;
    lmp_split_range(j->n, ith, nth, 1, &i0, &i1);
    float *dw = j->c->scratch + (size_t)ith * j->c->scratch_per;  // (dim) this thread's partial dw
    memset(dw, 0, (size_t)j->dim * sizeof(float));
    const int dim = j->dim;
    for (long long i = i0; i < i1; i++) {
        const float *xi = j->x + (size_t)i * dim, *gi = j->dout + (size_t)i * dim;
        float *dxi = j->dx + (size_t)i * dim;
        float r = j->rstd_in[i], dot = 0.0f;
        for (int k = 0; k < dim; k++) dot += gi[k] * j->w[k] * xi[k];
        float c2 = r * r * r / (float)dim * dot;
        for (int k = 0; k < dim; k++) {
            dxi[k] += r * j->w[k] * gi[k] - c2 * xi[k];
            dw[k] += gi[k] * xi[k] * r;
        }
    }
}

static void cpu_rmsnorm_bwd(lmp_train_backend *b, float *dx, float *dw, const float *dout, const float *x,
                            const float *w, const float *rstd, int n, int dim) {
    cpu_ctx *c = C(b);
    if (!scratch_reserve(c, (size_t)dim)) {
        fill_nan(dx, (size_t)n * dim);
        return;
    }
    norm_job j = {c, NULL, NULL, dx, dw, x, w, dout, rstd, n, dim, 0};
    int used = (6.0 * n * dim < 65536.0 || c->nth == 1) ? 1 : c->nth;
    if (used == 1) rmsnorm_bwd_worker(&j, 0, 1);
    else lmp_pool_run(c->pool, rmsnorm_bwd_worker, &j);
    for (int t = 0; t < used; t++) {  // thread order: deterministic for a given thread count
        const float *p = c->scratch + (size_t)t * c->scratch_per;
        for (int k = 0; k < dim; k++) dw[k] += p[k];
    }
}

// ---- matmul ----
typedef struct {
    float *y, *dx, *dW;
    const float *x, *W, *dy;
    int n, in, out;
    int split_out;  // forward: split the out dimension (else the n dimension)
} mm_job;

static void matmul_fwd_worker(void *arg, int ith, int nth) {
    mm_job *j = arg;
    long long a, e;
    if (j->split_out) {
        lmp_split_range(j->out, ith, nth, 16, &a, &e);
        if (a < e)  // y[:, a:e] = x W[a:e]^T
            lmp_sgemm(0, 1, j->n, (int)(e - a), j->in, 1.0f, j->x, j->in,
                        j->W + (size_t)a * j->in, j->in, 0.0f, j->y + a, j->out);
    } else {
        lmp_split_range(j->n, ith, nth, 4, &a, &e);
        if (a < e)  // y[a:e] = x[a:e] W^T
            lmp_sgemm(0, 1, (int)(e - a), j->out, j->in, 1.0f,
                        j->x + (size_t)a * j->in, j->in, j->W, j->in, 0.0f, j->y + (size_t)a * j->out, j->out);
    }
}

static void cpu_matmul_fwd(lmp_train_backend *b, float *y, const float *x, const float *W, int n, int in, int out) {
    mm_job j = {y, NULL, NULL, x, W, NULL, n, in, out, out >= n};
    run_blas(C(b), matmul_fwd_worker, &j, (double)n * in * out);
}

static void matmul_dx_worker(void *arg, int ith, int nth) {
    mm_job *j = arg;
    long long a, e;
    lmp_split_range(j->n, ith, nth, 4, &a, &e);
    if (a < e)  // dx[a:e] += dy[a:e] W
        lmp_sgemm(0, 0, (int)(e - a), j->in, j->out, 1.0f,
                    j->dy + (size_t)a * j->out, j->out, j->W, j->in, 1.0f, j->dx + (size_t)a * j->in, j->in);
}

static void matmul_dw_worker(void *arg, int ith, int nth) {
    mm_job *j = arg;
    long long a, e;
    lmp_split_range(j->out, ith, nth, 16, &a, &e);
    if (a < e)  // dW[a:e] += dy[:, a:e]^T x
        lmp_sgemm(1, 0, (int)(e - a), j->in, j->n, 1.0f, j->dy + a, j->out,
                    j->x, j->in, 1.0f, j->dW + (size_t)a * j->in, j->in);
}

static void cpu_matmul_bwd(lmp_train_backend *b, float *dx, float *dW, const float *dy, const float *x,
                           const float *W, int n, int in, int out) {
    mm_job j = {NULL, dx, dW, x, W, dy, n, in, out, 0};
    double work = (double)n * in * out;
    if (dx) run_blas(C(b), matmul_dx_worker, &j, work);
    if (dW) run_blas(C(b), matmul_dw_worker, &j, work);
}

// ---- rope ----
typedef struct {
    float *x;
    int n, T, n_heads, hd;
    const lmp_train_rope *r;
    float sign;
} rope_job;

static void rope_worker(void *arg, int ith, int nth) {
    rope_job *j = arg;
    const int half = j->r->rope_dim / 2;
    float neg[2048];  // -sin rows for the inverse rotation (rope_dim / 2 <= head_dim / 2 <= 2048)
    long long i0, i1;
    lmp_split_range(j->n, ith, nth, 1, &i0, &i1);
    for (long long i = i0; i < i1; i++) {
        const int pos = (int)(i % j->T);
        const float *cs = j->r->cos_tab + (size_t)pos * half, *sn = j->r->sin_tab + (size_t)pos * half;
        if (j->sign < 0) {
            for (int k = 0; k < half; k++) neg[k] = -sn[k];
            sn = neg;
        }
        for (int h = 0; h < j->n_heads; h++)
            lmp_ref_rope_rotate(j->x + ((size_t)i * j->n_heads + h) * j->hd, cs, sn, j->r->rope_dim, j->r->neox);
    }
}

static void cpu_rope_fwd(lmp_train_backend *b, float *x, int n, int T, int n_heads, int hd, const lmp_train_rope *r) {
    rope_job j = {x, n, T, n_heads, hd, r, 1.0f};
    run(C(b), rope_worker, &j, 4.0 * n * n_heads * r->rope_dim);
}

static void cpu_rope_bwd(lmp_train_backend *b, float *dx, int n, int T, int n_heads, int hd, const lmp_train_rope *r) {
    rope_job j = {dx, n, T, n_heads, hd, r, -1.0f};
    run(C(b), rope_worker, &j, 4.0 * n * n_heads * r->rope_dim);
}

// ---- attention ----
typedef struct {
    cpu_ctx *c;
    float *out, *P, *lse, *dq, *dk, *dv;
    const float *q, *k, *v, *dout, *Pin, *lse_in;
    lmp_attn_dims d;
    atomic_int next;
} attn_job;

// Task t = (sequence b, head h): probability rows [i0, i1) over keys [0, i1), then O = P V. The rows go to P (kept
// for backward) or, in recompute mode, to this thread's scratch with only each row's log-sum-exp kept.
static void attn_fwd_worker(void *arg, int ith, int nth) {
    attn_job *j = arg;
    const lmp_attn_dims *d = &j->d;
    const int T = d->T, hd = d->hd, group = d->n_heads / d->n_kv;
    const int qs = d->n_heads * hd, ks = d->n_kv * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    const int tasks = d->B * d->n_heads;
    float *tile = j->P ? NULL : j->c->scratch + (size_t)ith * j->c->scratch_per;  // (ATT_QB, T) recompute mode
    for (;;) {
        int t = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (t >= tasks) break;
        const int b = t / d->n_heads, h = t % d->n_heads, kh = h / group;
        const float *Q = j->q + (size_t)b * T * qs + (size_t)h * hd;   // (T, hd), stride qs
        const float *K = j->k + (size_t)b * T * ks + (size_t)kh * hd;  // (T, hd), stride ks
        const float *V = j->v + (size_t)b * T * ks + (size_t)kh * hd;
        float *O = j->out + (size_t)b * T * qs + (size_t)h * hd;
        float *P = j->P ? j->P + ((size_t)b * d->n_heads + h) * T * T : NULL;  // (T, T)
        float *lse = j->P ? NULL : j->lse + ((size_t)b * d->n_heads + h) * T;  // (T)
        for (int i0 = 0; i0 < T; i0 += ATT_QB) {
            const int i1 = i0 + ATT_QB < T ? i0 + ATT_QB : T, qb = i1 - i0;
            float *S = P ? P + (size_t)i0 * T : tile;  // rows [i0, i1), stride T
            lmp_sgemm(0, 1, qb, i1, hd, scale, Q + (size_t)i0 * qs, qs, K, ks,
                        0.0f, S, T);
            for (int r = 0; r < qb; r++) {
                float *s = S + (size_t)r * T;
                const int valid = i0 + r + 1;  // causal: keys [0, valid)
                if (lse) {
                    float mx = s[0];
                    for (int u = 1; u < valid; u++) mx = s[u] > mx ? s[u] : mx;
                    const float sum = lmp_train_expsum_ref(s, s, valid, 1.0f, mx), inv = 1.0f / sum;
                    for (int u = 0; u < valid; u++) s[u] *= inv;
                    lse[i0 + r] = mx + logf(sum);
                } else {
                    lmp_ref_softmax(s, valid);
                }
                for (int u = valid; u < i1; u++) s[u] = 0.0f;
            }
            lmp_sgemm(0, 0, qb, hd, i1, 1.0f, S, T, V, ks, 0.0f,
                        O + (size_t)i0 * qs, qs);
        }
        if (P)  // the part above the last tile's keys, never written by a tile
            for (int i0 = 0; i0 < T; i0 += ATT_QB) {
                const int i1 = i0 + ATT_QB < T ? i0 + ATT_QB : T;
                for (int r = i0; r < i1; r++) memset(P + (size_t)r * T + i1, 0, (size_t)(T - i1) * sizeof(float));
            }
    }
}

static void cpu_attn_fwd(lmp_train_backend *b, float *out, float *P, float *lse, const float *q, const float *k,
                         const float *v, const lmp_attn_dims *d) {
    cpu_ctx *c = C(b);
    if (!P && !scratch_reserve(c, (size_t)ATT_QB * d->T)) {
        fill_nan(out, (size_t)d->B * d->T * d->n_heads * d->hd);
        return;
    }
    attn_job j = {c, out, P, lse, NULL, NULL, NULL, q, k, v, NULL, NULL, NULL, *d, 0};
    run_blas(c, attn_fwd_worker, &j, 2.0 * d->B * d->n_heads * (double)d->T * d->T * d->hd);
}

// Task t = (sequence b, KV head kh): all query heads of the group, so dK and dV of kh have one writer. In recompute
// mode each tile's probabilities are rebuilt from q, k and the row log-sum-exp: exp(q k^T / sqrt(hd) - lse).
static void attn_bwd_worker(void *arg, int ith, int nth) {
    attn_job *j = arg;
    const lmp_attn_dims *d = &j->d;
    const int T = d->T, hd = d->hd, group = d->n_heads / d->n_kv;
    const int qs = d->n_heads * hd, ks = d->n_kv * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    float *dS = j->c->scratch + (size_t)ith * j->c->scratch_per;  // (ATT_QB, T)
    float *Pt = dS + (size_t)ATT_QB * T;                           // (ATT_QB, T) recomputed tile
    const int tasks = d->B * d->n_kv;
    for (;;) {
        int t = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (t >= tasks) break;
        const int b = t / d->n_kv, kh = t % d->n_kv;
        const float *K = j->k + (size_t)b * T * ks + (size_t)kh * hd;
        const float *V = j->v + (size_t)b * T * ks + (size_t)kh * hd;
        float *dK = j->dk + (size_t)b * T * ks + (size_t)kh * hd;
        float *dV = j->dv + (size_t)b * T * ks + (size_t)kh * hd;
        for (int h = kh * group; h < (kh + 1) * group; h++) {
            const float *Q = j->q + (size_t)b * T * qs + (size_t)h * hd;
            const float *dO = j->dout + (size_t)b * T * qs + (size_t)h * hd;
            float *dQ = j->dq + (size_t)b * T * qs + (size_t)h * hd;
            const float *P = j->Pin ? j->Pin + ((size_t)b * d->n_heads + h) * T * T : NULL;
            const float *lse = j->Pin ? NULL : j->lse_in + ((size_t)b * d->n_heads + h) * T;
            for (int i0 = 0; i0 < T; i0 += ATT_QB) {
                const int i1 = i0 + ATT_QB < T ? i0 + ATT_QB : T, qb = i1 - i0;
                const float *Pb;  // (qb, i1), stride ldp
                int ldp;
                if (P) {
                    Pb = P + (size_t)i0 * T;
                    ldp = T;
                } else {
                    lmp_sgemm(0, 1, qb, i1, hd, scale, Q + (size_t)i0 * qs, qs, K,
                                ks, 0.0f, Pt, i1);
                    for (int r = 0; r < qb; r++) {
                        float *p = Pt + (size_t)r * i1;
                        const int valid = i0 + r + 1;
                        lmp_train_expsum_ref(p, p, valid, 1.0f, lse[i0 + r]);
                        for (int u = valid; u < i1; u++) p[u] = 0.0f;
                    }
                    Pb = Pt;
                    ldp = i1;
                }
                // dP(qb, i1) = dO[i0:i1] V[0:i1]^T
                lmp_sgemm(0, 1, qb, i1, hd, 1.0f, dO + (size_t)i0 * qs, qs, V,
                            ks, 0.0f, dS, i1);
                for (int r = 0; r < qb; r++) {
                    float *ds = dS + (size_t)r * i1;
                    const float *p = Pb + (size_t)r * ldp;
                    const int valid = i0 + r + 1;
                    float dot = 0.0f;
                    for (int u = 0; u < valid; u++) dot += p[u] * ds[u];
                    for (int u = 0; u < valid; u++) ds[u] = p[u] * (ds[u] - dot) * scale;
                    for (int u = valid; u < i1; u++) ds[u] = 0.0f;
                }
                // dV[0:i1] += P^T dO;  dQ[i0:i1] += dS K[0:i1];  dK[0:i1] += dS^T Q[i0:i1]
                lmp_sgemm(1, 0, i1, hd, qb, 1.0f, Pb, ldp, dO + (size_t)i0 * qs,
                            qs, 1.0f, dV, ks);
                lmp_sgemm(0, 0, qb, hd, i1, 1.0f, dS, i1, K, ks, 1.0f,
                            dQ + (size_t)i0 * qs, qs);
                lmp_sgemm(1, 0, i1, hd, qb, 1.0f, dS, i1, Q + (size_t)i0 * qs,
                            qs, 1.0f, dK, ks);
            }
        }
    }
}

static void cpu_attn_bwd(lmp_train_backend *b, float *dq, float *dk, float *dv, const float *dout, const float *q,
                         const float *k, const float *v, const float *P, const float *lse, const lmp_attn_dims *d) {
    cpu_ctx *c = C(b);
    if (!scratch_reserve(c, (size_t)ATT_QB * d->T * (P ? 1 : 2))) {
        fill_nan(dq, (size_t)d->B * d->T * d->n_heads * d->hd);
        return;
    }
    attn_job j = {c, NULL, NULL, NULL, dq, dk, dv, q, k, v, dout, P, lse, *d, 0};
    run_blas(c, attn_bwd_worker, &j, (P ? 4.0 : 5.0) * d->B * d->n_heads * (double)d->T * d->T * d->hd);
}

// ---- swiglu ----
typedef struct {
    float *h, *dg, *du;
    const float *g, *u, *dh;
    size_t n;
} swiglu_job;

static void swiglu_fwd_worker(void *arg, int ith, int nth) {
    swiglu_job *j = arg;
    long long i0, i1;
    lmp_split_range((long long)j->n, ith, nth, 64, &i0, &i1);
    for (long long i = i0; i < i1; i++) {
        j->h[i] = lmp_ref_silu(j->g[i]) * j->u[i];  // as the inference swiglu
    }
}

static void swiglu_bwd_worker(void *arg, int ith, int nth) {
    swiglu_job *j = arg;
    long long i0, i1;
    lmp_split_range((long long)j->n, ith, nth, 64, &i0, &i1);
    for (long long i = i0; i < i1; i++) {
        float g = j->g[i], s = 1.0f / (1.0f + expf(-g));
        j->dg[i] += j->dh[i] * j->u[i] * s * (1.0f + g * (1.0f - s));
        j->du[i] += j->dh[i] * g * s;
    }
}

static void cpu_swiglu_fwd(lmp_train_backend *b, float *h, const float *g, const float *u, size_t n) {
    swiglu_job j = {h, NULL, NULL, g, u, NULL, n};
    run(C(b), swiglu_fwd_worker, &j, 8.0 * n);
}

static void cpu_swiglu_bwd(lmp_train_backend *b, float *dg, float *du, const float *dh, const float *g,
                           const float *u, size_t n) {
    swiglu_job j = {NULL, dg, du, g, u, dh, n};
    run(C(b), swiglu_bwd_worker, &j, 12.0 * n);
}

// ---- loss ----
typedef struct {
    cpu_ctx *c;
    float *logits, *ce, *kd;
    const int32_t *labels;
    const float *teacher;
    int n, V;
    lmp_loss_params p;
    float scale;
} loss_job;

static float max_of(const float *x, int n) {
    float m = x[0];
    for (int k = 1; k < n; k++) m = x[k] > m ? x[k] : m;
    return m;
}

// Formulas in train_ref.c (lmp_tref_loss). Three exponentials per logit at most (student at 1 and at T,
// teacher at T), kept in per-thread scratch so the gradient pass needs none; each row is read completely before
// it is overwritten with its gradient.
static void loss_worker(void *arg, int ith, int nth) {
    loss_job *j = arg;
    const int V = j->V;
    const float a = j->p.alpha, T = j->p.temp, invT = 1.0f / T, sc = j->scale;
    float *e1 = j->c->scratch + (size_t)ith * j->c->scratch_per;  // (V) exp(z - max z)
    float *eq = e1 + V;                                            // (V) exp((z - max z) / T)
    float *et = eq + V;                                            // (V) exp((t - max t) / T)
    long long i0, i1;
    lmp_split_range(j->n, ith, nth, 1, &i0, &i1);
    for (long long i = i0; i < i1; i++) {
        float *z = j->logits + (size_t)i * V;
        const int y = j->labels[i];
        const float mz = max_of(z, V);
        const float s1 = j->c->expsum(z, e1, V, 1.0f, mz), inv1 = 1.0f / s1;
        j->ce[i] = mz + logf(s1) - z[y];
        if (a <= 0.0f) {
            j->kd[i] = 0.0f;
            for (int k = 0; k < V; k++) z[k] = sc * e1[k] * inv1;
            z[y] -= sc;
            continue;
        }
        const float *t = j->teacher + (size_t)i * V;
        const float sq = T == 1.0f ? s1 : j->c->expsum(z, eq, V, invT, mz * invT);
        if (T == 1.0f) eq = e1;
        const float mt = max_of(t, V), st = j->c->expsum(t, et, V, invT, mt * invT);
        const float lse_s = mz * invT + logf(sq), lse_t = mt * invT + logf(st), invq = 1.0f / sq, invt = 1.0f / st;
        double kl = 0;
        if (j->p.kd == LMP_KD_FKL) {
            for (int k = 0; k < V; k++) kl += et[k] * invt * ((t[k] * invT - lse_t) - (z[k] * invT - lse_s));
        } else {
            for (int k = 0; k < V; k++) kl += eq[k] * invq * ((z[k] * invT - lse_s) - (t[k] * invT - lse_t));
        }
        j->kd[i] = (float)(T * T * kl);
        const float eqa = (float)kl, ca = sc * (1.0f - a), ck = sc * a * T;
        if (j->p.kd == LMP_KD_FKL) {
            for (int k = 0; k < V; k++) z[k] = ca * e1[k] * inv1 + ck * (eq[k] * invq - et[k] * invt);
        } else {
            for (int k = 0; k < V; k++) {
                const float q = eq[k] * invq, lq = z[k] * invT - lse_s, lp = t[k] * invT - lse_t;
                z[k] = ca * e1[k] * inv1 + ck * q * ((lq - lp) - eqa);
            }
        }
        z[y] -= ca;
        eq = e1 + V;
    }
}

static void cpu_loss(lmp_train_backend *b, float *logits, float *ce, float *kd, const int32_t *labels,
                     const float *teacher, int n, int V, const lmp_loss_params *p, float scale) {
    cpu_ctx *c = C(b);
    if (!scratch_reserve(c, 3 * (size_t)V)) {
        fill_nan(logits, (size_t)n * V);
        return;
    }
    loss_job j = {c, logits, ce, kd, labels, teacher, n, V, *p, scale};
    run(c, loss_worker, &j, 20.0 * n * V);
}

// ---- gradient norm, AdamW ----
typedef struct {
    const float *x;
    size_t n;
    double part[MAX_THREADS];
} sumsq_job;

static void sumsq_worker(void *arg, int ith, int nth) {
    sumsq_job *j = arg;
    long long i0, i1;
    lmp_split_range((long long)j->n, ith, nth, 64, &i0, &i1);
    double s = 0;
    for (long long i = i0; i < i1; i++) s += (double)j->x[i] * j->x[i];
    j->part[ith] = s;
}

static double cpu_sumsq(lmp_train_backend *b, const float *x, size_t n) {
    cpu_ctx *c = C(b);
    sumsq_job j;
    j.x = x;
    j.n = n;
    int used = ((double)n < 65536.0 || c->nth == 1) ? 1 : c->nth;
    if (used == 1) sumsq_worker(&j, 0, 1);
    else lmp_pool_run(c->pool, sumsq_worker, &j);
    double s = 0;
    for (int t = 0; t < used; t++) s += j.part[t];
    return s;
}

typedef struct {
    float *p, *m, *v;
    const float *g;
    size_t n;
    float lr, b1, b2, eps, wd, bc1, bc2, gscale;
} adamw_job;

static void adamw_worker(void *arg, int ith, int nth) {
    adamw_job *j = arg;
    long long i0, i1;
    lmp_split_range((long long)j->n, ith, nth, 64, &i0, &i1);
    const float sbc2 = sqrtf(j->bc2), step = j->lr / j->bc1, decay = 1.0f - j->lr * j->wd;
    for (long long i = i0; i < i1; i++) {
        float g = j->g[i] * j->gscale;
        float m = j->b1 * j->m[i] + (1.0f - j->b1) * g;
        float v = j->b2 * j->v[i] + (1.0f - j->b2) * g * g;
        j->m[i] = m;
        j->v[i] = v;
        j->p[i] = j->p[i] * decay - step * m / (sqrtf(v) / sbc2 + j->eps);
    }
}

static void cpu_adamw(lmp_train_backend *b, float *p, const float *g, float *m, float *v, size_t n, float lr, float b1,
                      float b2, float eps, float wd, float bc1, float bc2, float gscale) {
    adamw_job j = {p, m, v, g, n, lr, b1, b2, eps, wd, bc1, bc2, gscale};
    run(C(b), adamw_worker, &j, 4.0 * n);
}

static void cpu_destroy(lmp_train_backend *b) {
    cpu_ctx *c = C(b);
    if (c->own_pool) lmp_pool_free(c->pool);
    lmp_free(c->scratch);
    lmp_free(c);
    lmp_free(b);
}

static const lmp_train_ops cpu_ops = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .host_memory = 1,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .to_host = cpu_copy,
    .from_host = cpu_copy,
    .zero = cpu_zero,
    .synchronize = cpu_synchronize,
    .add = cpu_add,
    .embed_fwd = cpu_embed_fwd,
    .embed_bwd = cpu_embed_bwd,
    .rmsnorm_fwd = cpu_rmsnorm_fwd,
    .rmsnorm_bwd = cpu_rmsnorm_bwd,
    .matmul_fwd = cpu_matmul_fwd,
    .matmul_bwd = cpu_matmul_bwd,
    .rope_fwd = cpu_rope_fwd,
    .rope_bwd = cpu_rope_bwd,
    .attn_fwd = cpu_attn_fwd,
    .attn_bwd = cpu_attn_bwd,
    .swiglu_fwd = cpu_swiglu_fwd,
    .swiglu_bwd = cpu_swiglu_bwd,
    .loss_fwd_bwd = cpu_loss,
    .sumsq = cpu_sumsq,
    .adamw = cpu_adamw,
};

lmp_status lmp_train_cpu_new(lmp_pool *pool, int n_threads, lmp_train_backend **out, lmp_error *err) {
    *out = NULL;
    if (!pool && n_threads > MAX_THREADS)
        return lmp_err(err, LMP_E_ARG, "%d threads is too many (at most %d)", n_threads, MAX_THREADS);
    lmp_train_backend *b = lmp_calloc(1, sizeof *b);
    cpu_ctx *c = lmp_calloc(1, sizeof *c);
    if (!b || !c) {
        lmp_free(b);
        lmp_free(c);
        return lmp_err(err, LMP_E_NOMEM, "out of memory");
    }
    if (pool) {
        c->pool = pool;
    } else {
        c->pool = lmp_pool_new(n_threads);
        c->own_pool = 1;
        if (!c->pool) {
            lmp_free(b);
            lmp_free(c);
            return lmp_err(err, LMP_E_NOMEM, "cannot start %d threads", n_threads);
        }
    }
    c->nth = lmp_pool_size(c->pool);
    c->expsum = lmp_train_expsum_best();
    if (c->nth > MAX_THREADS) {
        b->ctx = c;
        cpu_destroy(b);
        return lmp_err(err, LMP_E_ARG, "a pool of %d threads is too large (at most %d)", lmp_pool_size(pool),
                       MAX_THREADS);
    }
    b->ops = &cpu_ops;
    b->ctx = c;
    *out = b;
    return LMP_OK;
}

void lmp_train_backend_free(lmp_train_backend *b) {
    if (b) b->ops->destroy(b);
}

int lmp_train_backend_threads(const lmp_train_backend *b) { return ((const cpu_ctx *)b->ctx)->nth; }

// ---- loss exponentials (train_exp.h) ----

float lmp_train_expsum_ref(const float *x, float *out, int n, float mul, float sub) {
    double s = 0;
    for (int i = 0; i < n; i++) s += (out[i] = expf(x[i] * mul - sub));
    return (float)s;
}

lmp_expsum_fn lmp_train_expsum_best(void) {
#if defined(__x86_64__)
    const char *isa = lmp_kernels_best()->isa;  // the runtime's choice: CPU support and the LMP_ISA cap
    if (strcmp(isa, "scalar") != 0) return lmp_train_expsum_avx2;
#endif
    return lmp_train_expsum_ref;
}
