// backend_cpu.c - the CPU backend: every op of backend.h on host memory, threaded with lmp_pool.
//
// Matrix products go to the fastest kernel table for this CPU (quant/kernels.h): decode (one token)
// splits the weight rows across threads; batches (prefill, evaluation, calibration) use lmp_sgemm (sgemm.h:
// OpenBLAS or the project's tiles, whichever is faster on this machine, single-threaded per slice, so
// one thread pool owns the cores) for float32 weights and the
// tiled integer kernels for quantized weights, with activations quantized once per batch.
// It does not know the model's structure (forward.c) and never allocates per token. Scratch buffers only
// grow; when one cannot, the op records a sticky error (returned by synchronize) and does nothing.
#include <cblas.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "format/qtypes.h"
#include "runtime/backend.h"
#include "runtime/kernels.h"
#include "runtime/refmath.h"
#include "runtime/sgemm.h"
#include "runtime/threadpool.h"

// OpenBLAS's own thread count (openblas_config.h is not on every include path).
int openblas_get_num_threads(void);
void openblas_set_num_threads(int);

struct lmp_kv_cache {
    float *k, *v;  // (n_ctx, kv_dim) each
    int n_ctx, kv_dim;
};

typedef struct cpu_ctx {
    lmp_pool *pool;
    int own_pool;         // 1: pool created here (freed with the backend)
    int n_threads;
    lmp_status st;        // sticky error (first failure since the last synchronize)
    char msg[LMP_ERROR_MSG_MAX];
    const lmp_kernels *k;
    void *act_q;          // quantized activations, (n, cols / 32) lmp_block_q8_a or lmp_block_q16_a
    size_t act_q_bytes;
    float *scores;        // (n_threads, scores_per_thread) attention scratch
    size_t scores_per_thread;
} cpu_ctx;

static cpu_ctx *ctx_of(lmp_backend *b) { return (cpu_ctx *)b->ctx; }

static void *cpu_alloc(lmp_backend *b, size_t bytes) { return lmp_malloc(bytes); }
static void cpu_free(lmp_backend *b, void *p) { lmp_free(p); }
static void cpu_copy(lmp_backend *b, void *dst, const void *src, size_t bytes) {
    if (dst != src) memcpy(dst, src, bytes);
}

static void cpu_fail(cpu_ctx *c, lmp_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void cpu_fail(cpu_ctx *c, lmp_status st, const char *fmt, ...) {
    if (c->st) return;  // the first error wins
    c->st = st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->msg, sizeof c->msg, fmt, ap);
    va_end(ap);
}

static lmp_status cpu_synchronize(lmp_backend *b, lmp_error *err) {
    cpu_ctx *c = ctx_of(b);
    lmp_status st = c->st;
    c->st = LMP_OK;
    if (st) return lmp_err(err, st, "%s", c->msg);
    return LMP_OK;
}

static int cpu_supports_op(lmp_backend *b, lmp_op op, lmp_dtype t) {
    if (op == LMP_OP_MATMUL || op == LMP_OP_GET_ROWS) {
        const lmp_type_traits *tr = lmp_type_get(t);
        return tr && tr->storable;
    }
    return op >= 0 && op < LMP_OP_COUNT;
}

static lmp_status cpu_upload_weight(lmp_backend *b, lmp_weight *w, lmp_error *err) { return LMP_OK; }
static void cpu_release_weight(lmp_backend *b, lmp_weight *w) { w->dev = NULL; }

static lmp_status cpu_kv_new(lmp_backend *b, int n_ctx, int kv_dim, lmp_kv_cache **out, lmp_error *err) {
    *out = NULL;
    lmp_kv_cache *kv = lmp_calloc(1, sizeof *kv);
    size_t n = (size_t)n_ctx * (size_t)kv_dim;
    if (kv) {
        kv->k = lmp_malloc(n * sizeof(float));
        kv->v = lmp_malloc(n * sizeof(float));
    }
    if (!kv || !kv->k || !kv->v) {
        if (kv) {
            lmp_free(kv->k);
            lmp_free(kv->v);
        }
        lmp_free(kv);
        return lmp_err(err, LMP_E_NOMEM, "out of memory for a KV cache of %d x %d floats", n_ctx, kv_dim);
    }
    kv->n_ctx = n_ctx;
    kv->kv_dim = kv_dim;
    *out = kv;
    return LMP_OK;
}

static void cpu_kv_free(lmp_backend *b, lmp_kv_cache *kv) {
    if (!kv) return;
    lmp_free(kv->k);
    lmp_free(kv->v);
    lmp_free(kv);
}

// Grows a scratch buffer; returns 0 on failure. Scratch only grows, so steady-state decode never
// allocates.
static int scratch_reserve(void **buf, size_t *have, size_t need) {
    if (*have >= need) return 1;
    void *p = lmp_malloc(need);
    if (!p) return 0;
    lmp_free(*buf);
    *buf = p;
    *have = need;
    return 1;
}

// ---- get_rows ----
static void cpu_get_rows(lmp_backend *b, float *out, const lmp_weight *emb, const int32_t *tokens, int n) {
    if (ctx_of(b)->st) return;
    const lmp_type_traits *tr = lmp_type_get(emb->type);
    for (int i = 0; i < n; i++)
        tr->to_float((const char *)emb->data + (size_t)tokens[i] * emb->row_bytes, out + (size_t)i * emb->cols,
                     emb->cols);
}

// ---- rmsnorm ----
static void cpu_rmsnorm(lmp_backend *b, float *out, const float *x, const lmp_weight *w, int n, int dim, float eps) {
    if (ctx_of(b)->st) return;
    const float *wv = (const float *)w->data;  // (dim)
    for (int i = 0; i < n; i++) lmp_ref_rmsnorm(out + (size_t)i * dim, x + (size_t)i * dim, wv, dim, eps);
}

// ---- matmul ----
typedef struct {
    cpu_ctx *c;
    float *y;
    const lmp_weight *w;
    const float *x;
    const void *xq;       // activations in the kernel's vec_dot_type
    size_t xq_row_bytes;
    int n;
    lmp_quantize_act_fn quantize;  // f32 -> vec_dot_type, when that is not f32
} matmul_job;

// Why 16: a thread's slice starts on a 16-row boundary so kernels processing 4 or 8 rows per pass
// never split a tile, and neighbouring threads never share a cache line of y.
#define ROW_ALIGN 16

static void matvec_worker(void *arg, int ith, int nth) {
    matmul_job *j = arg;
    long long r0, r1;
    lmp_split_range(j->w->rows, ith, nth, ROW_ALIGN, &r0, &r1);
    if (r0 < r1) j->c->k->matvec[j->w->type](j->w->data, j->w->row_bytes, j->xq, j->y, j->w->cols, r0, r1);
}

static void matmul_q_worker(void *arg, int ith, int nth) {
    matmul_job *j = arg;
    long long r0, r1;
    lmp_split_range(j->w->rows, ith, nth, ROW_ALIGN, &r0, &r1);
    if (r0 < r1)
        j->c->k->matmul[j->w->type](j->w->data, j->w->row_bytes, j->xq, j->xq_row_bytes, j->n, j->y, j->w->rows,
                                    j->w->cols, r0, r1);
}

static void sgemm_worker(void *arg, int ith, int nth) {
    matmul_job *j = arg;
    long long r0, r1;
    lmp_split_range(j->w->rows, ith, nth, ROW_ALIGN, &r0, &r1);
    if (r0 >= r1) return;
    const float *W = (const float *)j->w->data + (size_t)r0 * j->w->cols;
    // y(n, r0..r1) = x(n, cols) * W[r0..r1]^T
    lmp_sgemm(0, 1, j->n, (int)(r1 - r0), (int)j->w->cols, 1.0f, j->x, (int)j->w->cols, W, (int)j->w->cols, 0.0f,
              j->y + r0, (int)j->w->rows);
}

static void quantize_rows_worker(void *arg, int ith, int nth) {
    matmul_job *j = arg;
    long long i0, i1;
    lmp_split_range(j->n, ith, nth, 1, &i0, &i1);
    for (long long i = i0; i < i1; i++)
        j->quantize(j->x + (size_t)i * j->w->cols, (char *)j->xq + (size_t)i * j->xq_row_bytes, j->w->cols);
}

// Quantizes j's input to the weight type's vec_dot_type into the context's scratch (j->xq), when that type is
// not f32. Returns 0 (and records the error) when the scratch cannot grow.
static int quantize_input(cpu_ctx *c, matmul_job *j) {
    const lmp_type_traits *tr = lmp_type_get(j->w->type);
    if (tr->vec_dot_type == LMP_DTYPE_F32) return 1;
    j->quantize = lmp_kernels_act_quantizer(c->k, tr->vec_dot_type);
    j->xq_row_bytes = lmp_type_row_size(tr->vec_dot_type, j->w->cols);
    if (!scratch_reserve(&c->act_q, &c->act_q_bytes, j->xq_row_bytes * (size_t)j->n)) {
        cpu_fail(c, LMP_E_NOMEM, "out of memory for %zu bytes of quantized activations (%s)",
                 j->xq_row_bytes * (size_t)j->n, j->w->name ? j->w->name : "matmul");
        return 0;
    }
    j->xq = c->act_q;
    if (j->n <= 4) quantize_rows_worker(j, 0, 1);
    else lmp_pool_run(c->pool, quantize_rows_worker, j);
    return 1;
}

static void cpu_swiglu(lmp_backend *b, float *gate, const float *up, int n, int ff);

static void cpu_matmul(lmp_backend *b, float *y, const lmp_weight *w, const float *x, int n) {
    cpu_ctx *c = ctx_of(b);
    if (c->st) return;
    matmul_job j = {c, y, w, x, x, (size_t)w->cols * sizeof(float), n, NULL};
    if (!quantize_input(c, &j)) return;
    if (n > 1 && w->type == LMP_DTYPE_F32 && lmp_sgemm_choice()->use_blas && openblas_get_num_threads() > 1) {
        // OpenBLAS threads itself (the program did not call lmp_cpu_blas_single_threaded): one call.
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, (int)w->rows, (int)w->cols, 1.0f, x, (int)w->cols,
                    (const float *)w->data, (int)w->cols, 0.0f, y, (int)w->rows);
        return;
    }
    lmp_pool_fn fn = n == 1 ? matvec_worker : w->type == LMP_DTYPE_F32 ? sgemm_worker : matmul_q_worker;
    // Why: waking the other threads costs a few microseconds; below ~64K multiply-adds one thread is faster.
    if ((double)w->rows * (double)w->cols * n < 65536.0) fn(&j, 0, 1);
    else lmp_pool_run(c->pool, fn, &j);
}

// ---- several products of one input ----
// q, k, v (or gate, up) in one pool run: x quantized once, each thread takes its row slice of every weight,
// then (swiglu) applies silu(gate) * up to its own slice, which is the same rows of both outputs. Per row the
// kernels are those of cpu_matmul, so the results are bit-identical to the single ops.
typedef struct {
    matmul_job j[LMP_MATMUL_MULTI_MAX];
    lmp_pool_fn fn;
    int count, swiglu;
} multi_job;

static void multi_worker(void *arg, int ith, int nth) {
    multi_job *m = arg;
    for (int i = 0; i < m->count; i++) m->fn(&m->j[i], ith, nth);
    if (!m->swiglu) return;
    const matmul_job *g = &m->j[0];
    const long long rows = g->w->rows;
    long long r0, r1;
    lmp_split_range(rows, ith, nth, ROW_ALIGN, &r0, &r1);
    for (int t = 0; t < g->n; t++) {
        float *gt = g->y + (size_t)t * rows;                // (rows) of token t
        const float *ut = m->j[1].y + (size_t)t * rows;     // (rows)
        for (long long r = r0; r < r1; r++) gt[r] = lmp_ref_silu(gt[r]) * ut[r];
    }
}

static void cpu_matmul_multi(lmp_backend *b, float *const *y, const lmp_weight *const *w, int count, const float *x,
                             int n, int flags) {
    cpu_ctx *c = ctx_of(b);
    if (c->st) return;
    const int swiglu = (flags & LMP_MULTI_SWIGLU) != 0;
    if (count < 1 || count > LMP_MATMUL_MULTI_MAX || (swiglu && (count != 2 || w[0]->rows != w[1]->rows))) {
        cpu_fail(c, LMP_E_ARG, "matmul_multi: %d weights%s", count, swiglu ? " for swiglu (needs 2 of equal rows)" : "");
        return;
    }
    const lmp_type_traits *tr = lmp_type_get(w[0]->type);
    int same = 1;
    double work = 0;
    for (int i = 0; i < count; i++) {
        const lmp_type_traits *ti = lmp_type_get(w[i]->type);
        same &= w[i]->cols == w[0]->cols && ti->vec_dot_type == tr->vec_dot_type &&
                (w[i]->type == LMP_DTYPE_F32) == (w[0]->type == LMP_DTYPE_F32);
        work += (double)w[i]->rows * (double)w[i]->cols * n;
    }
    // OpenBLAS threading itself takes one call per product; mixed input types need their own quantizations.
    if (!same || (n > 1 && w[0]->type == LMP_DTYPE_F32 && lmp_sgemm_choice()->use_blas && openblas_get_num_threads() > 1)) {
        for (int i = 0; i < count; i++) cpu_matmul(b, y[i], w[i], x, n);
        if (swiglu) cpu_swiglu(b, y[0], y[1], n, (int)w[0]->rows);
        return;
    }
    multi_job m = {.count = count, .swiglu = swiglu};
    for (int i = 0; i < count; i++)
        m.j[i] = (matmul_job){c, y[i], w[i], x, x, (size_t)w[0]->cols * sizeof(float), n, NULL};
    if (!quantize_input(c, &m.j[0])) return;  // once: every weight has the same vec_dot_type and cols
    for (int i = 1; i < count; i++) m.j[i].xq = m.j[0].xq, m.j[i].xq_row_bytes = m.j[0].xq_row_bytes;
    m.fn = n == 1 ? matvec_worker : w[0]->type == LMP_DTYPE_F32 ? sgemm_worker : matmul_q_worker;
    if (work < 65536.0) multi_worker(&m, 0, 1);  // as in cpu_matmul: a wake-up costs more than this
    else lmp_pool_run(c->pool, multi_worker, &m);
}

// ---- rope ----
static void cpu_rope(lmp_backend *b, float *q, float *k, int n, int n_heads, int n_kv, int pos0,
                     const lmp_rope *r) {
    if (ctx_of(b)->st) return;
    int hd = r->head_dim, half = r->rope_dim / 2;
    for (int i = 0; i < n; i++) {
        const float *cs = r->cos_tab + (size_t)(pos0 + i) * half;
        const float *sn = r->sin_tab + (size_t)(pos0 + i) * half;
        for (int h = 0; h < n_heads; h++) lmp_ref_rope_rotate(q + ((size_t)i * n_heads + h) * hd, cs, sn, r->rope_dim, r->neox);
        for (int h = 0; h < n_kv; h++) lmp_ref_rope_rotate(k + ((size_t)i * n_kv + h) * hd, cs, sn, r->rope_dim, r->neox);
    }
}

// ---- attention ----
// Decode (one query token) runs two sgemv per head, heads split across threads. Batches (prefill,
// evaluation, calibration) run in tiles of (head, ATT_QB query rows): S = Q K^T and O = P V are two
// sgemm calls per tile, and threads take tiles from a shared counter, most expensive (latest
// queries) first, so the causal triangle's uneven work balances across cores.
#define ATT_QB 32

typedef struct {
    cpu_ctx *c;
    float *out;
    const float *q, *k_cache, *v_cache;
    int n, pos0, n_heads, n_kv, hd;
    int n_qblocks;
    atomic_int next;  // next tile to take (batched path)
} attn_job;

// One query row i of head h: out = softmax(q k^T * scale) v over cache rows [0, pos0 + i], as two
// matrix-vector products over the strided cache rows of the head's KV group.
static void attn_row(const attn_job *j, float *att, int i, int h) {
    const int kv_dim = j->n_kv * j->hd, group = j->n_heads / j->n_kv;
    const int len = j->pos0 + i + 1;
    const float *qi = j->q + ((size_t)i * j->n_heads + h) * j->hd;  // (hd)
    const float *kh = j->k_cache + (size_t)(h / group) * j->hd;     // (len, hd), row stride kv_dim
    const float *vh = j->v_cache + (size_t)(h / group) * j->hd;     // (len, hd), row stride kv_dim
    float *oi = j->out + ((size_t)i * j->n_heads + h) * j->hd;      // (hd)
    // att(len) = K q / sqrt(hd)
    cblas_sgemv(CblasRowMajor, CblasNoTrans, len, j->hd, 1.0f / sqrtf((float)j->hd), kh, kv_dim, qi, 1, 0.0f, att,
                1);
    lmp_ref_softmax(att, len);
    // out(hd) = V^T att
    cblas_sgemv(CblasRowMajor, CblasTrans, len, j->hd, 1.0f, vh, kv_dim, att, 1, 0.0f, oi, 1);
}

static void attn_decode_worker(void *arg, int ith, int nth) {
    attn_job *j = arg;
    float *att = j->c->scores + (size_t)ith * j->c->scores_per_thread;  // (pos0 + 1)
    long long h0, h1;
    lmp_split_range(j->n_heads, ith, nth, 1, &h0, &h1);
    for (long long h = h0; h < h1; h++) attn_row(j, att, 0, (int)h);
}

// Tile (h, query rows [i0, i1)): keys [0, pos0 + i1) of kv head h / group.
static void attn_tile(attn_job *j, float *S, int h, int i0, int i1) {
    const int hd = j->hd, kv_dim = j->n_kv * hd, q_dim = j->n_heads * hd, group = j->n_heads / j->n_kv;
    const int qb = i1 - i0, len = j->pos0 + i1;
    const float *Q = j->q + (size_t)i0 * q_dim + (size_t)h * hd;           // (qb, hd), row stride q_dim
    const float *Kh = j->k_cache + (size_t)(h / group) * hd;               // (len, hd), row stride kv_dim
    const float *Vh = j->v_cache + (size_t)(h / group) * hd;               // (len, hd), row stride kv_dim
    float *O = j->out + (size_t)i0 * q_dim + (size_t)h * hd;               // (qb, hd), row stride q_dim
    // S(qb, len) = Q K^T / sqrt(hd)
    lmp_sgemm(0, 1, qb, len, hd, 1.0f / sqrtf((float)hd), Q, q_dim, Kh, kv_dim, 0.0f, S, len);
    for (int r = 0; r < qb; r++) {
        float *s = S + (size_t)r * len;
        int valid = j->pos0 + i0 + r + 1;  // causal: keys [0, valid)
        lmp_ref_softmax(s, valid);
        for (int t = valid; t < len; t++) s[t] = 0.0f;
    }
    // O(qb, hd) = P(qb, len) V(len, hd)
    lmp_sgemm(0, 0, qb, hd, len, 1.0f, S, len, Vh, kv_dim, 0.0f, O, q_dim);
}

static void attn_batch_worker(void *arg, int ith, int nth) {
    attn_job *j = arg;
    float *S = j->c->scores + (size_t)ith * j->c->scores_per_thread;  // (ATT_QB, pos0 + n)
    const int tiles = j->n_qblocks * j->n_heads;
    for (;;) {
        int t = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (t >= tiles) break;
        int qblk = j->n_qblocks - 1 - t / j->n_heads, h = t % j->n_heads;  // latest query blocks first
        int i0 = qblk * ATT_QB, i1 = i0 + ATT_QB < j->n ? i0 + ATT_QB : j->n;
        attn_tile(j, S, h, i0, i1);
    }
}

static void cpu_attention(lmp_backend *b, float *out, const float *q, const float *k, const float *v, lmp_kv_cache *kv,
                          int n, int pos0, int n_heads, int n_kv, int hd) {
    cpu_ctx *c = ctx_of(b);
    if (c->st) return;
    size_t kv_dim = (size_t)n_kv * hd;
    if (kv_dim != (size_t)kv->kv_dim || pos0 < 0 || pos0 + n > kv->n_ctx) {
        cpu_fail(c, LMP_E_ARG, "attention: %d KV heads x %d at positions %d..%d do not fit a cache of %d x %d", n_kv,
                 hd, pos0, pos0 + n - 1, kv->n_ctx, kv->kv_dim);
        return;
    }
    float *k_cache = kv->k, *v_cache = kv->v;
    memcpy(k_cache + (size_t)pos0 * kv_dim, k, (size_t)n * kv_dim * sizeof(float));
    memcpy(v_cache + (size_t)pos0 * kv_dim, v, (size_t)n * kv_dim * sizeof(float));
    size_t per = ((size_t)pos0 + (size_t)n + 16) * (n > 1 ? ATT_QB : 1);
    if (c->scores_per_thread < per) {
        size_t bytes = per * (size_t)c->n_threads * sizeof(float);
        size_t have = c->scores_per_thread * (size_t)c->n_threads * sizeof(float);
        void *s = c->scores;
        if (!scratch_reserve(&s, &have, bytes)) {
            cpu_fail(c, LMP_E_NOMEM, "out of memory for %zu bytes of attention scores", bytes);
            return;
        }
        c->scores = s;
        c->scores_per_thread = per;
    }
    attn_job j = {c, out, q, k_cache, v_cache, n, pos0, n_heads, n_kv, hd, (n + ATT_QB - 1) / ATT_QB, 0};
    long long work = (long long)n * n_heads * (pos0 + n) * hd;
    if (n == 1) {
        if (work < 16384) attn_decode_worker(&j, 0, 1);  // tiny: not worth a wake-up
        else lmp_pool_run(c->pool, attn_decode_worker, &j);
    } else {
        if (work < 16384) attn_batch_worker(&j, 0, 1);
        else lmp_pool_run(c->pool, attn_batch_worker, &j);
    }
}

// ---- swiglu, add ----
typedef struct {
    float *gate;
    const float *up;
    size_t count;
} swiglu_job;

static void swiglu_worker(void *arg, int ith, int nth) {
    swiglu_job *j = arg;
    long long i0, i1;
    lmp_split_range((long long)j->count, ith, nth, 64, &i0, &i1);
    for (long long i = i0; i < i1; i++) {
        j->gate[i] = lmp_ref_silu(j->gate[i]) * j->up[i];
    }
}

static void cpu_swiglu(lmp_backend *b, float *gate, const float *up, int n, int ff) {
    if (ctx_of(b)->st) return;
    swiglu_job j = {gate, up, (size_t)n * ff};
    if (j.count < 8192) swiglu_worker(&j, 0, 1);
    else lmp_pool_run(ctx_of(b)->pool, swiglu_worker, &j);
}

static void cpu_add(lmp_backend *b, float *x, const float *y, size_t count) {
    if (ctx_of(b)->st) return;
    for (size_t i = 0; i < count; i++) x[i] += y[i];
}

static void cpu_destroy(lmp_backend *b);

static const lmp_backend_ops cpu_ops = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .host_memory = 1,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .to_host = cpu_copy,
    .from_host = cpu_copy,
    .supports_op = cpu_supports_op,
    .upload_weight = cpu_upload_weight,
    .release_weight = cpu_release_weight,
    .kv_new = cpu_kv_new,
    .kv_free = cpu_kv_free,
    .synchronize = cpu_synchronize,
    .get_rows = cpu_get_rows,
    .rmsnorm = cpu_rmsnorm,
    .matmul = cpu_matmul,
    .rope = cpu_rope,
    .attention = cpu_attention,
    .swiglu = cpu_swiglu,
    .add = cpu_add,
    .matmul_multi = cpu_matmul_multi,
};

lmp_status lmp_backend_cpu_new(const lmp_backend_opts *opts, lmp_backend **out, lmp_error *err) {
    *out = NULL;
    lmp_pool *shared = opts ? opts->pool : NULL;
    int n_threads = shared ? lmp_pool_size(shared) : opts && opts->n_threads > 0 ? opts->n_threads : lmp_cpu_count();
    if (n_threads > 256) return lmp_err(err, LMP_E_ARG, "%d threads is too many (at most 256)", n_threads);
    lmp_backend *b = lmp_calloc(1, sizeof *b);
    cpu_ctx *c = lmp_calloc(1, sizeof *c);
    if (!b || !c) {
        lmp_free(b);
        lmp_free(c);
        return lmp_err(err, LMP_E_NOMEM, "out of memory");
    }
    c->n_threads = n_threads;
    c->k = lmp_kernels_best();
    lmp_sgemm_choice();  // the BLAS check and measurement happen here, once per process, not inside a product
    c->pool = shared ? shared : lmp_pool_new(n_threads);
    c->own_pool = !shared;
    if (!c->pool) {
        lmp_free(b);
        lmp_free(c);
        return lmp_err(err, LMP_E_NOMEM, "cannot start %d threads", n_threads);
    }
    b->ops = &cpu_ops;
    b->ctx = c;
    *out = b;
    return LMP_OK;
}

void lmp_cpu_blas_single_threaded(void) { openblas_set_num_threads(1); }

static void cpu_destroy(lmp_backend *b) {
    cpu_ctx *c = ctx_of(b);
    if (c->own_pool) lmp_pool_free(c->pool);
    lmp_free(c->act_q);
    lmp_free(c->scores);
    lmp_free(c);
    lmp_free(b);
}

// Registered backends (tests, embedders). Registration happens before use, from one thread.
#define MAX_REGISTERED 8
static struct {
    char name[32];
    lmp_backend_ctor ctor;
} registered[MAX_REGISTERED];
static int n_registered;

lmp_status lmp_backend_register(const char *name, lmp_backend_ctor ctor, lmp_error *err) {
    if (!name || !*name || strlen(name) >= sizeof registered[0].name || !ctor)
        return lmp_err(err, LMP_E_ARG, "backend registration needs a name of 1..31 characters and a constructor");
    if (!strcmp(name, "cpu") || !strcmp(name, "cuda"))
        return lmp_err(err, LMP_E_ARG, "backend '%s' is built in", name);
    for (int i = 0; i < n_registered; i++)
        if (!strcmp(registered[i].name, name)) return lmp_err(err, LMP_E_STATE, "backend '%s' is already registered", name);
    if (n_registered == MAX_REGISTERED) return lmp_err(err, LMP_E_STATE, "too many registered backends");
    snprintf(registered[n_registered].name, sizeof registered[0].name, "%s", name);
    registered[n_registered++].ctor = ctor;
    return LMP_OK;
}

lmp_status lmp_backend_new(const char *name, const lmp_backend_opts *opts, lmp_backend **out, lmp_error *err) {
    *out = NULL;
    if (!name || strcmp(name, "cpu") == 0) return lmp_backend_cpu_new(opts, out, err);
    if (strcmp(name, "cuda") == 0) return lmp_backend_cuda_new(opts, out, err);
    for (int i = 0; i < n_registered; i++)
        if (!strcmp(registered[i].name, name)) return registered[i].ctor(opts, out, err);
    return lmp_err(err, LMP_E_ARG, "unknown backend '%s' (available: cpu, cuda)", name);
}

void lmp_backend_free(lmp_backend *b) {
    if (b) b->ops->destroy(b);
}
