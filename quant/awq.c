// awq.c - activation-aware weight quantization (AWQ, Lin et al. 2023): per-channel scale search
// (lmp_awq_search), optional weight clipping search (lmp_awq_clip), exact folding of the scales into
// the preceding RMSNorm or linear layer (lmp_awq_fold), and the pass (lmp_quant_run_awq), which runs
// layer by layer on the hidden states that the already-quantized preceding layers produce.
//
// Four groups per layer: q/k/v (input: attn_norm output), attn_output (input: attention mix of v, so
// its scale is folded into v's rows and tied across the query heads of a KV head), gate/up (input:
// ffn_norm output), down (input: silu(gate) * up, folded into up's rows). The scaled matrices are
// rounded to nearest (the reference quantizers); it does not combine AWQ with importance-weighted
// rounding or GPTQ.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "quant/awq.h"
#include "quant/gptq.h"
#include "format/qtypes.h"
#include "quant/quant_internal.h"
#include "runtime/sgemm.h"
#include "runtime/threadpool.h"

// The weight clipping search is on: on stories260K at 4 bits (q4_0, 16K calibration tokens, first 30
// chunks of TinyStories valid) it takes AWQ's mean KLD from 0.0705 (scaling alone; RTN 0.0720) to 0.0544.
#define AWQ_CLIP 1
#define AWQ_GRID 20

void lmp_awq_scales(const float *x_mean, int64_t cols, float alpha, float *s) {
    float mx = 0.0f, mn = INFINITY;
    for (int64_t i = 0; i < cols; i++) {
        float v = alpha == 0.0f ? 1.0f : powf(fmaxf(x_mean[i], 1e-4f), alpha);
        s[i] = v;
        if (v > mx) mx = v;
        if (v < mn) mn = v;
    }
    float norm = sqrtf(mx * mn);
    if (!(norm > 0.0f) || !isfinite(norm)) norm = 1.0f;
    for (int64_t i = 0; i < cols; i++) s[i] /= norm;
}

typedef struct {
    const float *w;      // (rows, cols)
    int64_t rows, cols;
    lmp_dtype type;
    const float *s;      // (cols) or NULL
    float *D;            // (rows, cols) out: w - dequant(rtn(w * s)) / s
    float *scratch;      // (nth, cols * 2) floats + (nth, row_size) bytes
    size_t row_size, per_thread;
} diff_job;

static void diff_worker(void *arg, int ith, int nth) {
    diff_job *j = arg;
    const lmp_type_traits *tr = lmp_type_get(j->type);
    float *ws = (float *)((char *)j->scratch + (size_t)ith * j->per_thread);
    float *deq = ws + j->cols;
    void *qb = deq + j->cols;
    long long r0, r1;
    lmp_split_range(j->rows, ith, nth, 1, &r0, &r1);
    for (long long r = r0; r < r1; r++) {
        const float *w = j->w + (size_t)r * j->cols;
        for (int64_t c = 0; c < j->cols; c++) ws[c] = j->s ? w[c] * j->s[c] : w[c];
        tr->from_float_ref(ws, qb, j->cols);
        tr->to_float(qb, deq, j->cols);
        float *d = j->D + (size_t)r * j->cols;
        for (int64_t c = 0; c < j->cols; c++) d[c] = w[c] - (j->s ? deq[c] / j->s[c] : deq[c]);
    }
}

// Work buffers of the loss: D and D G of the largest matrix, and per-thread row scratch.
typedef struct {
    float *D, *DG, *scratch;
    size_t per_thread;
} loss_bufs;

static lmp_status bufs_alloc(loss_bufs *b, const lmp_awq_mat *mats, int n, int64_t cols, int nth, lmp_error *err) {
    memset(b, 0, sizeof *b);
    int64_t maxr = 0;
    size_t maxrow = 0;
    for (int k = 0; k < n; k++) {
        if (mats[k].rows > maxr) maxr = mats[k].rows;
        size_t rs = lmp_type_row_size(mats[k].type, cols);
        if (rs > maxrow) maxrow = rs;
    }
    b->per_thread = ((size_t)cols * 2 * sizeof(float) + maxrow + 63) & ~(size_t)63;
    b->D = lmp_malloc((size_t)maxr * cols * sizeof(float));
    b->DG = lmp_malloc((size_t)maxr * cols * sizeof(float));
    b->scratch = lmp_malloc(b->per_thread * (size_t)nth);
    if (!b->D || !b->DG || !b->scratch) {
        lmp_free(b->D);
        lmp_free(b->DG);
        lmp_free(b->scratch);
        memset(b, 0, sizeof *b);
        return lmp_err(err, LMP_E_NOMEM, "AWQ: out of memory for %lld x %lld work buffers", (long long)maxr,
                       (long long)cols);
    }
    return LMP_OK;
}

static void bufs_free(loss_bufs *b) {
    lmp_free(b->D);
    lmp_free(b->DG);
    lmp_free(b->scratch);
}

static lmp_status check_mats(const lmp_awq_mat *mats, int n, int64_t cols, lmp_error *err) {
    for (int k = 0; k < n; k++) {
        const lmp_type_traits *tr = lmp_type_get(mats[k].type);
        if (!tr || !tr->storable) return lmp_err(err, LMP_E_ARG, "AWQ: matrix %d has an unknown type", k);
        if (mats[k].rows <= 0 || cols <= 0 || (tr->is_quantized && cols % tr->block_size != 0))
            return lmp_err(err, LMP_E_ARG, "AWQ: matrix %d (%lld x %lld) does not fit %s's blocks", k,
                           (long long)mats[k].rows, (long long)cols, tr->name);
    }
    return LMP_OK;
}

// sum over rows [r0, r1) of D .* (D G): G (cols, cols) the full symmetric Gram matrix (runtime/calib.c fills
// both triangles), one sgemm per thread's rows.
typedef struct {
    const float *D;
    float *DG;
    const float *G;
    int64_t rows, cols;
    double part[256];  // per thread
} trace_job;

static void trace_worker(void *arg, int ith, int nth) {
    trace_job *t = arg;
    long long r0, r1;
    lmp_split_range(t->rows, ith, nth, 4, &r0, &r1);
    double acc = 0.0;
    if (r0 < r1) {
        const float *D = t->D + (size_t)r0 * t->cols;
        float *DG = t->DG + (size_t)r0 * t->cols;
        // DG(r1 - r0, cols) = D(r1 - r0, cols) G(cols, cols)
        lmp_sgemm(0, 0, (int)(r1 - r0), (int)t->cols, (int)t->cols, 1.0f, D, (int)t->cols, t->G, (int)t->cols, 0.0f, DG,
                  (int)t->cols);
        size_t nn = (size_t)(r1 - r0) * t->cols;
        for (size_t i = 0; i < nn; i++) acc += (double)D[i] * DG[i];
    }
    t->part[ith] = acc;
}

static double group_loss(const lmp_awq_mat *mats, int n, int64_t cols, const float *G, const float *s, lmp_pool *pool,
                         loss_bufs *b) {
    double tot = 0.0;
    for (int k = 0; k < n; k++) {
        if (!lmp_type_get(mats[k].type)->is_quantized) continue;
        diff_job j = {mats[k].w, mats[k].rows, cols, mats[k].type, s, b->D, b->scratch,
                      lmp_type_row_size(mats[k].type, cols), b->per_thread};
        if (pool) lmp_pool_run(pool, diff_worker, &j);
        else diff_worker(&j, 0, 1);
        // tr(D G D^T) = sum(D .* (D G)); rows split across threads, partial sums added in thread order.
        trace_job t = {b->D, b->DG, G, mats[k].rows, cols, {0}};
        int nth = pool && lmp_pool_size(pool) <= 256 ? lmp_pool_size(pool) : 1;
        if (nth > 1) lmp_pool_run(pool, trace_worker, &t);
        else trace_worker(&t, 0, 1);
        for (int i = 0; i < nth; i++) tot += t.part[i];
    }
    return tot;
}

lmp_status lmp_awq_group_loss(const lmp_awq_mat *mats, int n_mats, int64_t cols, const float *G, const float *s,
                              lmp_pool *pool, double *loss, lmp_error *err) {
    lmp_status st = check_mats(mats, n_mats, cols, err);
    if (st) return st;
    loss_bufs b;
    if ((st = bufs_alloc(&b, mats, n_mats, cols, pool ? lmp_pool_size(pool) : 1, err))) return st;
    *loss = group_loss(mats, n_mats, cols, G, s, pool, &b);
    bufs_free(&b);
    return LMP_OK;
}

lmp_status lmp_awq_search(const lmp_awq_mat *mats, int n_mats, int64_t cols, const float *x_mean, const float *G,
                          int n_grid, lmp_pool *pool, float *s_out, lmp_awq_result *res, lmp_error *err) {
    if (n_grid < 1 || n_grid > 1000) return lmp_err(err, LMP_E_ARG, "AWQ: grid of %d steps", n_grid);
    lmp_status st = check_mats(mats, n_mats, cols, err);
    if (st) return st;
    loss_bufs b;
    float *s = lmp_malloc((size_t)cols * sizeof(float));
    if (!s) return lmp_err(err, LMP_E_NOMEM, "AWQ: out of memory");
    if ((st = bufs_alloc(&b, mats, n_mats, cols, pool ? lmp_pool_size(pool) : 1, err))) {
        lmp_free(s);
        return st;
    }
    lmp_awq_result r = {0.0f, 0.0, 0.0};
    for (int g = 0; g <= n_grid; g++) {
        float alpha = (float)g / (float)n_grid;
        lmp_awq_scales(x_mean, cols, alpha, s);
        double loss = group_loss(mats, n_mats, cols, G, s, pool, &b);
        if (g == 0) {
            r.loss_rtn = r.loss_best = loss;
            memcpy(s_out, s, (size_t)cols * sizeof(float));
        } else if (loss < r.loss_best) {
            r.loss_best = loss;
            r.alpha = alpha;
            memcpy(s_out, s, (size_t)cols * sizeof(float));
        }
    }
    bufs_free(&b);
    lmp_free(s);
    if (res) *res = r;
    return LMP_OK;
}

// ---- clipping ----

typedef struct {
    float *ws;
    int64_t rows, cols;
    lmp_dtype type;
    int64_t G;
    const float *s, *Gm;
    float *scratch;  // per thread: 3 * G floats + one block
    size_t per_thread;
} clip_job;

// Error of one group (values x, G entries) for a clamp to [lo, hi]: d^T G_gg d, d = (x - Q(clamp x)) / s.
static double clip_err(const clip_job *j, const float *x, int64_t c0, float lo, float hi, float *xc, float *d,
                       void *blk) {
    const lmp_type_traits *tr = lmp_type_get(j->type);
    const int64_t G = j->G;
    for (int64_t k = 0; k < G; k++) xc[k] = x[k] < lo ? lo : x[k] > hi ? hi : x[k];
    tr->from_float_ref(xc, blk, G);
    tr->to_float(blk, xc, G);
    for (int64_t k = 0; k < G; k++) d[k] = (x[k] - xc[k]) / (j->s ? j->s[c0 + k] : 1.0f);
    double e = 0.0;
    for (int64_t a = 0; a < G; a++) {
        const float *g = j->Gm + (size_t)(c0 + a) * j->cols + c0;
        double t = 0.0;
        for (int64_t k = 0; k < G; k++) t += (double)g[k] * d[k];
        e += d[a] * t;
    }
    return e;
}

static void clip_worker(void *arg, int ith, int nth) {
    clip_job *j = arg;
    float *xc = (float *)((char *)j->scratch + (size_t)ith * j->per_thread), *d = xc + j->G;
    void *blk = d + j->G;
    long long r0, r1;
    lmp_split_range(j->rows, ith, nth, 1, &r0, &r1);
    for (long long r = r0; r < r1; r++) {
        for (int64_t c0 = 0; c0 < j->cols; c0 += j->G) {
            float *x = j->ws + (size_t)r * j->cols + c0;
            float mn = x[0], mx = x[0];
            for (int64_t k = 1; k < j->G; k++) {
                if (x[k] < mn) mn = x[k];
                if (x[k] > mx) mx = x[k];
            }
            // Symmetric types clip to +-ratio * max|x|; asymmetric ones shrink both ends.
            int sym = j->type != LMP_DTYPE_Q4_1 && j->type != LMP_DTYPE_Q4_1_G64 && j->type != LMP_DTYPE_Q4_1_G128 &&
                      j->type != LMP_DTYPE_Q4_K && j->type != LMP_DTYPE_Q5_K;
            float amax = fmaxf(fabsf(mn), fabsf(mx));
            double best = clip_err(j, x, c0, -INFINITY, INFINITY, xc, d, blk);
            float best_lo = -INFINITY, best_hi = INFINITY;
            for (int i = 1; i <= 10; i++) {
                float ratio = 1.0f - 0.05f * (float)i;
                float lo = sym ? -ratio * amax : ratio * mn, hi = sym ? ratio * amax : ratio * mx;
                if (!sym && mn > 0.0f) lo = mn;
                if (!sym && mx < 0.0f) hi = mx;
                double e = clip_err(j, x, c0, lo, hi, xc, d, blk);
                if (e < best) {
                    best = e;
                    best_lo = lo;
                    best_hi = hi;
                }
            }
            for (int64_t k = 0; k < j->G; k++) x[k] = x[k] < best_lo ? best_lo : x[k] > best_hi ? best_hi : x[k];
        }
    }
}

lmp_status lmp_awq_clip(float *ws, int64_t rows, int64_t cols, lmp_dtype type, const float *s, const float *G,
                        lmp_pool *pool, lmp_error *err) {
    const lmp_type_traits *tr = lmp_type_get(type);
    if (!tr) return lmp_err(err, LMP_E_ARG, "AWQ clip: unknown type %d", (int)type);
    if (!tr->is_quantized) return LMP_OK;
    if (rows <= 0 || cols <= 0 || cols % tr->block_size != 0)
        return lmp_err(err, LMP_E_ARG, "AWQ clip: %lld x %lld does not fit %s's blocks", (long long)rows,
                       (long long)cols, tr->name);
    int nth = pool ? lmp_pool_size(pool) : 1;
    clip_job j = {ws, rows, cols, type, tr->block_size, s, G, NULL, 0};
    j.per_thread = ((size_t)j.G * 2 * sizeof(float) + tr->type_size + 63) & ~(size_t)63;
    j.scratch = lmp_malloc(j.per_thread * (size_t)nth);
    if (!j.scratch) return lmp_err(err, LMP_E_NOMEM, "AWQ clip: out of memory");
    if (pool) lmp_pool_run(pool, clip_worker, &j);
    else clip_worker(&j, 0, 1);
    lmp_free(j.scratch);
    return LMP_OK;
}

// ---- folding ----

void lmp_awq_tie_heads(const float *x, int n_heads, int n_kv, int head_dim, float *out) {
    const int group = n_heads / n_kv;
    for (int g = 0; g < n_kv; g++)
        for (int d = 0; d < head_dim; d++) {
            double s = 0.0;
            for (int h = g * group; h < (g + 1) * group; h++) s += x[(size_t)h * head_dim + d];
            out[(size_t)g * head_dim + d] = (float)(s / group);
        }
}

void lmp_awq_expand_heads(const float *s_kv, int n_heads, int n_kv, int head_dim, float *s) {
    const int group = n_heads / n_kv;
    for (int h = 0; h < n_heads; h++)
        memcpy(s + (size_t)h * head_dim, s_kv + (size_t)(h / group) * head_dim, (size_t)head_dim * sizeof(float));
}

static void scale_cols(float *w, int64_t rows, int64_t cols, const float *s) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) w[(size_t)r * cols + c] *= s[c];
}

static void scale_rows_inv(float *w, int64_t rows, int64_t cols, const float *s) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) w[(size_t)r * cols + c] /= s[r];
}

void lmp_awq_fold(const lmp_awq_layer *L, const float *s_attn, const float *s_v, const float *s_ffn, const float *s_up) {
    const int64_t dim = L->dim, hd = L->head_dim, qd = (int64_t)L->n_heads * hd, kvd = (int64_t)L->n_kv * hd;
    if (s_attn) {
        for (int64_t i = 0; i < dim; i++) L->attn_norm[i] /= s_attn[i];
        scale_cols(L->wq, qd, dim, s_attn);
        scale_cols(L->wk, kvd, dim, s_attn);
        scale_cols(L->wv, kvd, dim, s_attn);
    }
    if (s_v) {
        scale_rows_inv(L->wv, kvd, dim, s_v);
        const int group = L->n_heads / L->n_kv;
        for (int64_t r = 0; r < dim; r++)
            for (int64_t c = 0; c < qd; c++) L->wo[(size_t)r * qd + c] *= s_v[(c / hd) / group * hd + c % hd];
    }
    if (s_ffn) {
        for (int64_t i = 0; i < dim; i++) L->ffn_norm[i] /= s_ffn[i];
        scale_cols(L->w_gate, L->ffn, dim, s_ffn);
        scale_cols(L->w_up, L->ffn, dim, s_ffn);
    }
    if (s_up) {
        scale_rows_inv(L->w_up, L->ffn, dim, s_up);
        scale_cols(L->w_down, dim, L->ffn, s_up);
    }
}

// ---- the pass ----


// Searches one group's scale; mats are the group's entries (all must exist). Returns the scale in s.
static lmp_status search_group(lmp_qctx *q, lmp_qentry **es, int n, const float *x_mean, const float *G, int64_t cols,
                               float *s, float *alpha, lmp_error *err) {
    lmp_awq_mat mats[3];
    for (int k = 0; k < n; k++) {
        if (es[k]->cols != cols)
            return lmp_err(err, LMP_E_FORMAT, "'%s' has %lld columns but its input has %lld channels", es[k]->src->name,
                           (long long)es[k]->cols, (long long)cols);
        mats[k] = (lmp_awq_mat){lmp_qentry_values(es[k]), es[k]->rows, es[k]->type};
    }
    lmp_awq_result r;
    lmp_status st = lmp_awq_search(mats, n, cols, x_mean, G, AWQ_GRID, q->pool, s, &r, err);
    if (st) return st;
    *alpha = r.alpha;
    return LMP_OK;
}

lmp_status lmp_quant_run_awq(lmp_qctx *q, lmp_error *err) {
    const lmp_quant_params *p = q->p;
    lmp_model *m = q->model;
    const int L = m->cfg.n_layers, hd = m->cfg.head_dim;
    lmp_calib_set set;
    lmp_calib_runner *r = NULL;
    lmp_status st = lmp_qctx_calib_open(q, &set, &r, err);
    if (st) return st;
    float *alphas = lmp_calloc((size_t)L * 4, sizeof(float));  // (n_layers, 4) chosen alpha per group
    size_t maxw = (size_t)m->cfg.dim;
    if ((size_t)m->cfg.max_ffn > maxw) maxw = (size_t)m->cfg.max_ffn;
    if ((size_t)m->cfg.max_heads * hd > maxw) maxw = (size_t)m->cfg.max_heads * hd;
    float *s_attn = lmp_malloc(maxw * sizeof(float)), *s_o = lmp_malloc(maxw * sizeof(float));
    float *s_v = lmp_malloc(maxw * sizeof(float)), *s_ffn = lmp_malloc(maxw * sizeof(float));
    float *s_up = lmp_malloc(maxw * sizeof(float)), *xm = lmp_malloc(maxw * sizeof(float));
    if (!alphas || !s_attn || !s_o || !s_v || !s_ffn || !s_up || !xm) {
        st = lmp_err(err, LMP_E_NOMEM, "out of memory");
        goto done;
    }
    for (int l = 0; l < L && !st; l++) {
        lmp_layer *ml = &m->layers[l];
        lmp_qentry *e[LMP_MAT_COUNT];
        for (int k = 0; k < LMP_MAT_COUNT; k++) {
            e[k] = lmp_qctx_find(q, lmp_layer_mat(ml, k)->name);
            if (!e[k]) {
                st = lmp_err(err, LMP_E_FORMAT, "AWQ: tensor blk.%d.%s.weight not found", l, lmp_mats[k].name);
                goto done;
            }
        }
        lmp_qentry *n_attn = lmp_qctx_find(q, ml->attn_norm.name), *n_ffn = lmp_qctx_find(q, ml->ffn_norm.name);
        if (!n_attn || !n_ffn) {
            st = lmp_err(err, LMP_E_FORMAT, "AWQ: layer %d has no attn_norm / ffn_norm tensor", l);
            goto done;
        }
        const int dim = m->cfg.dim, nh = ml->n_heads, nkv = ml->n_kv_heads, ffn = ml->ffn;
        const unsigned both = LMP_STAT_GRAM | LMP_STAT_ABSMEAN;
        const unsigned stats[LMP_HOOK_COUNT] = {both, both, both, both};
        if ((st = lmp_calib_runner_collect(r, l, stats, err))) goto done;
        const float *G[LMP_HOOK_COUNT], *X[LMP_HOOK_COUNT];
        for (int h = 0; h < LMP_HOOK_COUNT; h++) {
            G[h] = lmp_calib_runner_gram(r, (lmp_hook_point)h, NULL);
            X[h] = lmp_calib_runner_absmean(r, (lmp_hook_point)h, NULL);
        }
        float *A = alphas + (size_t)l * 4;
        // q/k/v fed by attn_norm
        if ((st = search_group(q, &e[LMP_MAT_Q], 3, X[LMP_HOOK_ATTN_IN], G[LMP_HOOK_ATTN_IN], dim, s_attn, &A[0], err)))
            goto done;
        // attn_output: statistics averaged over the query heads of a KV head, so s is tied across them
        lmp_awq_tie_heads(X[LMP_HOOK_ATTN_OUT_IN], nh, nkv, hd, s_v);
        lmp_awq_expand_heads(s_v, nh, nkv, hd, xm);
        if ((st = search_group(q, &e[LMP_MAT_O], 1, xm, G[LMP_HOOK_ATTN_OUT_IN], (int64_t)nh * hd, s_o, &A[1], err)))
            goto done;
        for (int g = 0; g < nkv; g++)  // s_o is tied: KV head g's scale is that of its first query head
            memcpy(s_v + (size_t)g * hd, s_o + (size_t)g * (nh / nkv) * hd, (size_t)hd * sizeof(float));
        // gate/up fed by ffn_norm
        if ((st = search_group(q, &e[LMP_MAT_GATE], 2, X[LMP_HOOK_FFN_IN], G[LMP_HOOK_FFN_IN], dim, s_ffn, &A[2], err)))
            goto done;
        // down fed by silu(gate) * up
        if ((st = search_group(q, &e[LMP_MAT_DOWN], 1, X[LMP_HOOK_DOWN_IN], G[LMP_HOOK_DOWN_IN], ffn, s_up, &A[3], err)))
            goto done;
        // Fold into writable copies; the norms also into the model's own copies used by the forward.
        for (int k = 0; k < LMP_MAT_COUNT; k++)
            if ((st = lmp_qentry_make_writable(e[k], err))) goto done;
        if ((st = lmp_qentry_make_writable(n_attn, err)) || (st = lmp_qentry_make_writable(n_ffn, err))) goto done;
        lmp_awq_layer fl = {n_attn->f32,         n_ffn->f32,          e[LMP_MAT_Q]->f32,    e[LMP_MAT_K]->f32,
                            e[LMP_MAT_V]->f32,   e[LMP_MAT_O]->f32,   e[LMP_MAT_GATE]->f32, e[LMP_MAT_UP]->f32,
                            e[LMP_MAT_DOWN]->f32, dim, nh, nkv, hd, ffn};
        lmp_awq_fold(&fl, s_attn, s_v, s_ffn, s_up);
        memcpy(lmp_norm_values(&ml->attn_norm), n_attn->f32, (size_t)dim * sizeof(float));
        memcpy(lmp_norm_values(&ml->ffn_norm), n_ffn->f32, (size_t)dim * sizeof(float));
        lmp_model_weight_touch(m, &ml->attn_norm);
        lmp_model_weight_touch(m, &ml->ffn_norm);
        const float *in_s[LMP_MAT_COUNT] = {s_attn, s_attn, s_attn, s_o, s_ffn, s_ffn, s_up};
        // Every matrix is converted now and swapped in (also float types, which the fold may have
        // changed), so that the next layers are calibrated on the model as it will be written.
        for (int k = 0; k < LMP_MAT_COUNT; k++) {
            if (AWQ_CLIP && (st = lmp_awq_clip(e[k]->f32, e[k]->rows, e[k]->cols, e[k]->type, in_s[k],
                                               G[lmp_mats[k].input], q->pool, err)))
                goto done;
            if ((st = lmp_qentry_quantize(q, e[k], NULL, err)) || (st = lmp_qctx_swap_in(q, e[k], err))) goto done;
        }
        if (l + 1 < L && (st = lmp_calib_runner_advance(r, l, NULL, NULL, err))) goto done;
        if (p->progress) p->progress(p->progress_user, "awq", l + 1, L);
    }
    if ((st = lmp_meta_set_arr(q->meta_out, "quant.awq_alpha", LMP_KV_F32, alphas, (uint64_t)L * 4)) ||
        (st = lmp_meta_set_bool(q->meta_out, "quant.awq_clip", AWQ_CLIP)))
        st = lmp_err(err, st, "recording quant.awq_* metadata: %s", lmp_status_name(st));
done:
    lmp_free(alphas);
    lmp_free(s_attn);
    lmp_free(s_o);
    lmp_free(s_v);
    lmp_free(s_ffn);
    lmp_free(s_up);
    lmp_free(xm);
    lmp_calib_runner_free(r);
    lmp_calib_set_free(&set);
    return st;
}
