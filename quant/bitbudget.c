// bitbudget.c - quantize --target-bpw B: a type per matrix so that the file has at most B bits per weight
// (every tensor counted, norms included) with the least predicted loss.
//
// Sensitivity, measured on calibration text (a few hundred tokens, runtime/calib.h sampler):
//  * every layer matrix t: the mean KLD of the model's next-token distribution against the input model with
//    t alone quantized to its cheapest candidate type (the other tensors exact), measured by running the
//    blocks from t's block onwards from the stored hidden states (layer by layer, so a matrix of block l
//    costs L - l blocks and the classifier); the other candidates' loss is predicted from it by the ratio of
//    the layer-output errors tr(dW G dW^T) (G the Gram matrix of the matrix's calibration inputs);
//  * the embedding and the classifier: the KLD measured directly at every candidate.
// Allocation: a multiple-choice knapsack solved greedily on each tensor's lower convex hull of (bytes, loss)
// points (the Lagrangian solution; exact for a budget that falls on a hull vertex). The loss is assumed
// additive over tensors; the final file's KLD on the same tokens is measured and reported beside the
// prediction. It does not quantize the final file (the driver does, with the pass's method).
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "format/qtypes.h"
#include "quant/quant_internal.h"
#include "runtime/refmath.h"
#include "runtime/session.h"
#include "runtime/sgemm.h"

// Candidate types, cheapest first within the same size (q4_0, iq4_nl, q4_K: 4.5 bpw).
static const lmp_dtype CAND[] = {LMP_DTYPE_Q4_0, LMP_DTYPE_IQ4_NL, LMP_DTYPE_Q4_K, LMP_DTYPE_Q4_1,
                                 LMP_DTYPE_Q5_K, LMP_DTYPE_Q6_K, LMP_DTYPE_Q8_0};
#define N_CAND ((int)(sizeof CAND / sizeof CAND[0]))

typedef struct {
    lmp_qentry *e;
    lmp_weight *w;         // the model's view
    int layer, mat;        // mat: index into lmp_mats; -1 for the embedding / classifier
    int fits[N_CAND];
    double err[N_CAND];    // layer-output error tr(dW G dW^T) (layer matrices)
    double kld[N_CAND];    // measured (reference candidate, embedding, classifier) or predicted loss
    uint64_t bytes[N_CAND];
    int choice;
} bb_item;

typedef struct lmp_budget {
    lmp_calib_set set;
    int64_t n_tok;
    float *base_lp;        // (n_tok, vocab) log-softmax of the input model
} lmp_budget;

// ---- the head: final norm and classifier on host memory, from float32 weights ----

// logp (n, vocab) = log_softmax(rmsnorm(h) C^T); C (vocab, dim) float32.
static void head_logp(const lmp_model *m, const float *h, int n, const float *C, float *xn, float *logp) {
    const int dim = m->cfg.dim, V = m->cfg.vocab;
    for (int i = 0; i < n; i++)
        lmp_ref_rmsnorm(xn + (size_t)i * dim, h + (size_t)i * dim, (const float *)m->output_norm.data, dim, m->cfg.rms_eps);
    lmp_sgemm(0, 1, n, V, dim, 1.0f, xn, dim, C, dim, 0.0f, logp, V);
    for (int i = 0; i < n; i++) {
        float *r = logp + (size_t)i * V, mx = -INFINITY;
        for (int v = 0; v < V; v++) mx = fmaxf(mx, r[v]);
        double s = 0;
        for (int v = 0; v < V; v++) s += exp((double)(r[v] - mx));
        float lse = mx + (float)log(s);
        for (int v = 0; v < V; v++) r[v] -= lse;
    }
}

// Mean over the n tokens of KL(base || q) from log-probabilities.
static double mean_kld(const float *base, const float *lq, int64_t n, int V) {
    double tot = 0;
    for (int64_t i = 0; i < n; i++) {
        const float *a = base + (size_t)i * V, *b = lq + (size_t)i * V;
        double k = 0;
        for (int v = 0; v < V; v++) k += exp((double)a[v]) * ((double)a[v] - (double)b[v]);
        tot += k > 0 ? k : 0;
    }
    return tot / (double)n;
}

// ---- quantization helpers ----

typedef struct {
    const float *x;
    int64_t rows, cols;
    lmp_dtype t;
    const float *imp;
    uint8_t *q;
    float *deq;  // optional (rows, cols)
} qjob;

static void qjob_worker(void *arg, int ith, int nth) {
    qjob *j = arg;
    long long r0, r1;
    lmp_split_range(j->rows, ith, nth, 1, &r0, &r1);
    size_t rb = lmp_type_row_size(j->t, j->cols);
    for (long long r = r0; r < r1; r++) {
        lmp_quantize_row_search(j->t, j->x + (size_t)r * j->cols, j->q + (size_t)r * rb, j->cols, j->imp);
        if (j->deq) lmp_type_get(j->t)->to_float(j->q + (size_t)r * rb, j->deq + (size_t)r * j->cols, j->cols);
    }
}

// tr(D G D^T) for D = W - deq (rows, cols), G (cols, cols) symmetric.
static double out_err(const float *W, const float *deq, int64_t rows, int64_t cols, const float *G, float *D, float *DG) {
    size_t n = (size_t)rows * cols;
    for (size_t i = 0; i < n; i++) D[i] = W[i] - deq[i];
    cblas_ssymm(CblasRowMajor, CblasRight, CblasUpper, (int)rows, (int)cols, 1.0f, G, (int)cols, D, (int)cols, 0.0f, DG,
                (int)cols);
    double e = 0;
    for (size_t i = 0; i < n; i++) e += (double)D[i] * DG[i];
    return e;
}

// ---- the measurement ----

typedef struct {
    lmp_qctx *q;
    lmp_budget *b;
    lmp_session *s;
    float **snap;     // (L + 1) snapshots (n_tok, dim) of the hidden states entering each block
    float **imp;      // (L * LMP_HOOK_COUNT) mean squared inputs per hook point
    float *work, *xn, *logp, *C;  // (n_tok, dim), (n_tok, dim), (n_tok, vocab), (vocab, dim)
} bb_ctx;

// Mean KLD of the model as it is now (weights swapped in) run from block l0 on the snapshot of its input;
// l0 = -1: from the tokens (embedding). C: float32 classifier for the head.
static lmp_status run_kld(bb_ctx *c, int l0, const float *C, double *kld, lmp_error *err) {
    lmp_model *m = c->q->model;
    const int T = c->b->set.seq_len, D = m->cfg.dim, L = m->cfg.n_layers;
    lmp_status st = LMP_OK;
    for (int i = 0; i < c->b->set.n_seq && !st; i++) {
        float *x = c->work + (size_t)i * T * D;
        if (l0 < 0) st = lmp_session_embed(c->s, c->b->set.tokens + (size_t)i * T, T, x, err);
        else memcpy(x, c->snap[l0] + (size_t)i * T * D, (size_t)T * D * sizeof(float));
        if (!st) st = lmp_session_run_layers(c->s, x, T, 0, l0 < 0 ? 0 : l0, L, err);
    }
    if (st) return st;
    head_logp(m, c->work, (int)c->b->n_tok, C, c->xn, c->logp);
    *kld = mean_kld(c->b->base_lp, c->logp, c->b->n_tok, m->cfg.vocab);
    return LMP_OK;
}

static void note(lmp_qctx *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(lmp_qctx *q, const char *fmt, ...) {
    if (!q->p->note) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    q->p->note(q->p->note_user, msg);
}

static const char *SHORT[LMP_MAT_COUNT] = {"q", "k", "v", "o", "gate", "up", "down"};

lmp_status lmp_quant_plan_budget(lmp_qctx *q, lmp_quant_summary *s, lmp_error *err) {
    const lmp_quant_params *p = q->p;
    lmp_model *m = q->model;
    const int L = m->cfg.n_layers, D = m->cfg.dim, V = m->cfg.vocab;
    const double t0 = lmp_time_now();
    // Items: every matrix (2-D tensor); the rest (norms) is fixed.
    size_t n_items = 0;
    for (size_t i = 0; i < q->n; i++) n_items += q->e[i].src->ndim == 2;
    bb_item *it = lmp_calloc(n_items ? n_items : 1, sizeof *it);
    if (!it) return lmp_err(err, LMP_E_NOMEM, "out of memory");
    uint64_t fixed = 0, min_bytes = 0, max_bytes = 0;
    size_t k = 0;
    for (size_t i = 0; i < q->n; i++) {
        lmp_qentry *e = &q->e[i];
        if (e->src->ndim != 2) {
            fixed += lmp_type_row_size(e->type, e->cols) * (uint64_t)e->rows;
            continue;
        }
        bb_item *a = &it[k++];
        a->e = e;
        a->w = lmp_model_weight_find(m, e->src->name);
        a->layer = a->mat = -1;
        for (int l = 0; l < L && a->mat < 0; l++)
            for (int j = 0; j < LMP_MAT_COUNT; j++)
                if (lmp_layer_mat(&m->layers[l], j) == a->w) a->layer = l, a->mat = j;
        int any = 0;
        uint64_t mn = UINT64_MAX, mx = 0;
        for (int c = 0; c < N_CAND; c++) {
            a->fits[c] = e->cols % lmp_type_get(CAND[c])->block_size == 0;
            a->bytes[c] = a->fits[c] ? lmp_type_row_size(CAND[c], e->cols) * (uint64_t)e->rows : 0;
            if (a->fits[c]) {
                any = 1;
                if (a->bytes[c] < mn) mn = a->bytes[c];
                if (a->bytes[c] > mx) mx = a->bytes[c];
            }
        }
        if (!any || !a->w) {  // rows no candidate fits (f16 stays) or not a model weight: fixed
            a->e = NULL;
            fixed += lmp_type_row_size(e->type, e->cols) * (uint64_t)e->rows;
            continue;
        }
        min_bytes += mn;
        max_bytes += mx;
    }
    n_items = k;
    const double n_params = (double)s->n_params;
    const double lo_bpw = (double)(fixed + min_bytes) * 8.0 / n_params, hi_bpw = 32.0;
    const uint64_t budget = (uint64_t)(p->target_bpw * n_params / 8.0);
    if ((double)(fixed + min_bytes) > p->target_bpw * n_params / 8.0) {
        lmp_free(it);
        return lmp_err(err, LMP_E_ARG,
                       "--target-bpw %g is below what the smallest types allow for this model (possible range %.3f to "
                       "%.0f bits per weight)", p->target_bpw, lo_bpw, hi_bpw);
    }
    lmp_budget *b = lmp_calloc(1, sizeof *b);
    bb_ctx c;
    memset(&c, 0, sizeof c);
    lmp_calib_runner *r = NULL;
    float *Dbuf = NULL, *DG = NULL, *qb_deq = NULL;
    uint8_t *qb = NULL;
    lmp_status st = LMP_OK;
    if (!b) {
        lmp_free(it);
        return lmp_err(err, LMP_E_NOMEM, "out of memory");
    }
    q->budget = b;
    int T = m->cfg.ctx < 256 ? m->cfg.ctx : 256;
    if ((st = lmp_calib_sample(m, p->calib_path, p->sens_tokens > 0 ? p->sens_tokens : 256, T, &b->set, err))) goto done;
    b->n_tok = (int64_t)b->set.n_seq * b->set.seq_len;
    T = b->set.seq_len;
    lmp_session_opts so = {0};
    so.pool = q->pool;
    if ((st = lmp_calib_runner_new(m, &b->set, &so, &r, err))) goto done;
    lmp_session_opts so2 = {T, T, 0, NULL, q->pool};
    if ((st = lmp_session_new(m, &so2, &c.s, err))) goto done;
    c.q = q;
    c.b = b;
    c.snap = lmp_calloc((size_t)L + 1, sizeof(float *));
    c.imp = lmp_calloc((size_t)L * LMP_HOOK_COUNT, sizeof(float *));
    size_t maxw = 0, maxn = 0;
    for (size_t i = 0; i < n_items; i++)
        if (it[i].e) {
            size_t nn = (size_t)it[i].e->rows * it[i].e->cols;
            if (nn > maxn) maxn = nn;
            if ((size_t)it[i].e->cols > maxw) maxw = (size_t)it[i].e->cols;
        }
    c.work = lmp_malloc((size_t)b->n_tok * D * sizeof(float));
    c.xn = lmp_malloc((size_t)b->n_tok * D * sizeof(float));
    c.logp = lmp_malloc((size_t)b->n_tok * V * sizeof(float));
    b->base_lp = lmp_malloc((size_t)b->n_tok * V * sizeof(float));
    c.C = lmp_malloc((size_t)V * D * sizeof(float));
    Dbuf = lmp_malloc(maxn * sizeof(float));
    DG = lmp_malloc(maxn * sizeof(float));
    qb_deq = lmp_malloc(maxn * sizeof(float));
    qb = lmp_malloc(maxn * 2);  // q8_0 is 34 bytes per 32 values: under 2 bytes per value
    if (!c.snap || !c.imp || !c.work || !c.xn || !c.logp || !b->base_lp || !c.C || !Dbuf || !DG || !qb_deq || !qb) {
        st = lmp_err(err, LMP_E_NOMEM, "out of memory for the sensitivity measurement (%lld tokens)", (long long)b->n_tok);
        goto done;
    }
    // 1. Layer by layer: hidden-state snapshots, mean squared inputs, layer-output errors of every candidate.
    unsigned stats[LMP_HOOK_COUNT];
    for (int h = 0; h < LMP_HOOK_COUNT; h++) stats[h] = LMP_STAT_GRAM | LMP_STAT_SQMEAN;
    for (int l = 0; l < L && !st; l++) {
        size_t hb = (size_t)b->n_tok * D * sizeof(float);
        if (!(c.snap[l] = lmp_malloc(hb))) {
            st = lmp_err(err, LMP_E_NOMEM, "out of memory");
            break;
        }
        memcpy(c.snap[l], lmp_calib_runner_hidden(r), hb);
        if ((st = lmp_calib_runner_collect(r, l, stats, err))) break;
        for (int h = 0; h < LMP_HOOK_COUNT && !st; h++) {
            int wd;
            const float *sq = lmp_calib_runner_sqmean(r, (lmp_hook_point)h, &wd);
            if (!sq) continue;
            if (!(c.imp[l * LMP_HOOK_COUNT + h] = lmp_malloc((size_t)wd * sizeof(float)))) {
                st = lmp_err(err, LMP_E_NOMEM, "out of memory");
                break;
            }
            memcpy(c.imp[l * LMP_HOOK_COUNT + h], sq, (size_t)wd * sizeof(float));
        }
        for (size_t i = 0; i < n_items && !st; i++) {
            bb_item *a = &it[i];
            if (!a->e || a->layer != l) continue;
            int wd;
            const float *G = lmp_calib_runner_gram(r, lmp_mats[a->mat].input, &wd);
            if (!G || wd != a->e->cols) {
                st = lmp_err(err, LMP_E_FORMAT, "'%s': its input has %d channels, not %lld", a->e->src->name, wd,
                             (long long)a->e->cols);
                break;
            }
            const float *W = lmp_qentry_values(a->e);
            for (int cc = 0; cc < N_CAND; cc++) {
                if (!a->fits[cc]) continue;
                qjob j = {W, a->e->rows, a->e->cols, CAND[cc], c.imp[l * LMP_HOOK_COUNT + lmp_mats[a->mat].input], qb, qb_deq};
                lmp_pool_run(q->pool, qjob_worker, &j);
                a->err[cc] = out_err(W, qb_deq, a->e->rows, a->e->cols, G, Dbuf, DG);
            }
        }
        if (!st) st = lmp_calib_runner_advance(r, l, NULL, NULL, err);
        if (p->progress) p->progress(p->progress_user, "target-bpw: layer errors", l + 1, L);
    }
    if (st) goto done;
    if (!(c.snap[L] = lmp_malloc((size_t)b->n_tok * D * sizeof(float)))) {
        st = lmp_err(err, LMP_E_NOMEM, "out of memory");
        goto done;
    }
    memcpy(c.snap[L], lmp_calib_runner_hidden(r), (size_t)b->n_tok * D * sizeof(float));
    lmp_calib_runner_free(r);
    r = NULL;
    // 2. The input model's distribution (float32 classifier).
    lmp_qentry *cls = lmp_qctx_find(q, m->tied ? "token_embd.weight" : "output.weight");
    if (!cls) {
        st = lmp_err(err, LMP_E_FORMAT, "no classifier tensor");
        goto done;
    }
    memcpy(c.C, lmp_qentry_values(cls), (size_t)V * D * sizeof(float));
    head_logp(m, c.snap[L], (int)b->n_tok, c.C, c.xn, b->base_lp);
    // 3. Measured KLD: layer matrices at their cheapest candidate, embedding / classifier at every candidate.
    size_t done_items = 0;
    for (size_t i = 0; i < n_items && !st; i++) {
        bb_item *a = &it[i];
        if (!a->e) continue;
        const lmp_dtype old_t = a->w->type;
        const void *old_d = a->w->data;
        const float *W = lmp_qentry_values(a->e);
        int ref = -1;  // the cheapest candidate (the first in CAND order among equal sizes)
        for (int cc = 0; cc < N_CAND; cc++)
            if (a->fits[cc] && (ref < 0 || a->bytes[cc] < a->bytes[ref])) ref = cc;
        for (int cc = 0; cc < N_CAND; cc++) {
            if (!a->fits[cc] || (a->mat >= 0 && cc != ref)) continue;
            const float *imp = a->mat >= 0 ? c.imp[a->layer * LMP_HOOK_COUNT + lmp_mats[a->mat].input] : NULL;
            qjob j = {W, a->e->rows, a->e->cols, CAND[cc], imp, qb, a->mat < 0 ? qb_deq : NULL};
            lmp_pool_run(q->pool, qjob_worker, &j);
            if ((st = lmp_model_weight_set(m, a->w, CAND[cc], qb, err))) break;
            int is_cls = a->mat < 0 && (m->tied || !strcmp(a->e->src->name, "output.weight"));
            int is_emb = a->mat < 0 && (m->tied || !strcmp(a->e->src->name, "token_embd.weight"));
            double kl;
            st = run_kld(&c, is_emb ? -1 : a->mat >= 0 ? a->layer : L, is_cls ? qb_deq : c.C, &kl, err);
            if (!st) st = lmp_model_weight_set(m, a->w, old_t, old_d, err);
            if (st) break;
            a->kld[cc] = kl;
        }
        if (st) break;
        if (a->mat >= 0) {  // the other candidates by the ratio of layer-output errors
            for (int cc = 0; cc < N_CAND; cc++)
                if (a->fits[cc] && cc != ref)
                    a->kld[cc] = a->err[ref] > 0 ? a->kld[ref] * a->err[cc] / a->err[ref] : 0.0;
        }
        if (p->progress) p->progress(p->progress_user, "target-bpw: sensitivity", (double)++done_items, (double)n_items);
    }
    if (st) goto done;
    // 4. Allocation: start from the cheapest point of each item's lower convex hull and take the upgrade with
    // the largest loss decrease per byte while it fits.
    uint64_t used = fixed;
    for (size_t i = 0; i < n_items; i++) {
        bb_item *a = &it[i];
        if (!a->e) continue;
        a->choice = -1;
        for (int cc = 0; cc < N_CAND; cc++)
            if (a->fits[cc] && (a->choice < 0 || a->bytes[cc] < a->bytes[a->choice] ||
                                (a->bytes[cc] == a->bytes[a->choice] && a->kld[cc] < a->kld[a->choice])))
                a->choice = cc;
        used += a->bytes[a->choice];
    }
    for (;;) {
        double best_rate = 0;
        int bi = -1, bc = -1;
        for (size_t i = 0; i < n_items; i++) {
            bb_item *a = &it[i];
            if (!a->e) continue;
            const int cur = a->choice;
            // the steepest next hull point: largest (loss decrease) / (extra bytes) among bigger candidates
            for (int cc = 0; cc < N_CAND; cc++) {
                if (!a->fits[cc] || a->bytes[cc] <= a->bytes[cur] || a->kld[cc] >= a->kld[cur]) continue;
                double rate = (a->kld[cur] - a->kld[cc]) / (double)(a->bytes[cc] - a->bytes[cur]);
                if (used - a->bytes[cur] + a->bytes[cc] <= budget && rate > best_rate) {
                    best_rate = rate;
                    bi = (int)i;
                    bc = cc;
                }
            }
        }
        if (bi < 0) break;
        used = used - it[bi].bytes[it[bi].choice] + it[bi].bytes[bc];
        it[bi].choice = bc;
    }
    // 5. The plan.
    double pred = 0;
    for (size_t i = 0; i < n_items; i++) {
        bb_item *a = &it[i];
        if (!a->e) continue;
        a->e->type = CAND[a->choice];
        a->e->fallback = 0;
        pred += a->kld[a->choice];
    }
    s->budget = 1;
    s->pred_kld = pred;
    s->sens_tokens = b->n_tok;
    s->sens_seconds = lmp_time_now() - t0;
    note(q, "target %.3f bits per weight (possible %.3f to %.0f): %.3f, %.2f MB; predicted KLD %.5f "
            "(sensitivity on %lld tokens, %.1f s)", p->target_bpw, lo_bpw, hi_bpw, (double)used * 8.0 / n_params,
         (double)used / 1e6, pred, (long long)b->n_tok, s->sens_seconds);
    for (size_t i = 0; i < n_items; i++)
        if (it[i].e && it[i].mat < 0)
            note(q, "  %-24s %-7s KLD %.2e", it[i].e->src->name, lmp_type_name(CAND[it[i].choice]), it[i].kld[it[i].choice]);
    for (int l = 0; l < L; l++) {
        char line[512];
        int o = snprintf(line, sizeof line, "  blk.%-3d", l);
        double kl = 0;
        for (int j = 0; j < LMP_MAT_COUNT; j++)
            for (size_t i = 0; i < n_items; i++)
                if (it[i].e && it[i].layer == l && it[i].mat == j && o < (int)sizeof line) {
                    o += snprintf(line + o, sizeof line - (size_t)o, " %s=%s", SHORT[j], lmp_type_name(CAND[it[i].choice]));
                    kl += it[i].kld[it[i].choice];
                }
        note(q, "%s  KLD %.2e", line, kl);
    }
done:
    lmp_calib_runner_free(r);
    lmp_session_free(c.s);
    if (c.snap)
        for (int l = 0; l <= L; l++) lmp_free(c.snap[l]);
    if (c.imp)
        for (int i = 0; i < L * LMP_HOOK_COUNT; i++) lmp_free(c.imp[i]);
    lmp_free(c.snap);
    lmp_free(c.imp);
    lmp_free(c.work);
    lmp_free(c.xn);
    lmp_free(c.logp);
    lmp_free(c.C);
    lmp_free(Dbuf);
    lmp_free(DG);
    lmp_free(qb_deq);
    lmp_free(qb);
    lmp_free(it);
    return st;
}

// The final file's KLD on the sensitivity tokens: every quantized matrix swapped in, the real forward pass.
lmp_status lmp_quant_budget_measure(lmp_qctx *q, lmp_quant_summary *s, lmp_error *err) {
    lmp_budget *b = q->budget;
    lmp_model *m = q->model;
    if (!b) return LMP_OK;
    lmp_status st = LMP_OK;
    for (size_t i = 0; i < q->n && !st; i++)
        if (q->e[i].src->ndim == 2) st = lmp_qctx_swap_in(q, &q->e[i], err);
    if (st) return st;
    const int T = b->set.seq_len, V = m->cfg.vocab;
    lmp_session *ss = NULL;
    lmp_session_opts so = {T, T, 0, NULL, q->pool};
    float *logp = lmp_malloc((size_t)b->n_tok * V * sizeof(float));
    if (!logp) return lmp_err(err, LMP_E_NOMEM, "out of memory");
    if ((st = lmp_session_new(m, &so, &ss, err))) {
        lmp_free(logp);
        return st;
    }
    for (int i = 0; i < b->set.n_seq && !st; i++)
        st = lmp_session_eval(ss, b->set.tokens + (size_t)i * T, T, 0, 0, logp + (size_t)i * T * V, err);
    if (!st) {
        for (int64_t i = 0; i < b->n_tok; i++) {
            float *row = logp + (size_t)i * V, mx = -INFINITY;
            for (int v = 0; v < V; v++) mx = fmaxf(mx, row[v]);
            double sum = 0;
            for (int v = 0; v < V; v++) sum += exp((double)(row[v] - mx));
            float lse = mx + (float)log(sum);
            for (int v = 0; v < V; v++) row[v] -= lse;
        }
        s->meas_kld = mean_kld(b->base_lp, logp, b->n_tok, V);
        note(q, "measured KLD %.5f on the same %lld tokens (predicted %.5f)", s->meas_kld, (long long)b->n_tok,
             s->pred_kld);
    }
    lmp_session_free(ss);
    lmp_free(logp);
    return st;
}

void lmp_quant_budget_free(lmp_qctx *q) {
    if (!q->budget) return;
    lmp_calib_set_free(&q->budget->set);
    lmp_free(q->budget->base_lp);
    lmp_free(q->budget);
    q->budget = NULL;
}
