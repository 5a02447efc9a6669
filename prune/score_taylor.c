// score_taylor.c - the first-order Taylor score of structured pruning (prune_internal.h): the importance of a
// unit is the sum, over its weights w and over calibration batches b, of |w * dL_b/dw|, with L_b the mean
// next-token cross-entropy of batch b. |w * dL/dw| is the first-order estimate of how much the loss changes when
// w is set to zero (Molchanov et al. 2019, LLM-Pruner's element-wise form); accumulating its absolute value per
// batch keeps the signal where the mean gradient of a trained model is near zero.
//
// Gradients come from the training engine (distill/train.h: lmp_train_grads_accumulate, forward and backward of
// the whole model in f32) on the same calibration sequences as the activation score (runtime/calib.h). Memory:
// the f32 weights, their gradients and the per-weight score (three floats per parameter, the weights and
// gradients converted from any dtype), plus the activations of LMP_PRUNE_TAYLOR_BATCH sequences
// (lmp_prune_taylor_memory). It does not rank or remove anything (plan.c).
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "distill/train.h"
#include "prune/prune_internal.h"

uint64_t lmp_prune_taylor_memory(const lmp_model *m, int seq_len) {
    int T = seq_len > 1 ? seq_len - 1 : 1;
    lmp_train_memory mem = lmp_train_memory_estimate(m, LMP_PRUNE_TAYLOR_BATCH, T, 0, 0);
    // the trainer's parameters, gradients, activations, logits and scratch (no AdamW moments), and the scores
    return mem.total - mem.adam + mem.params;
}

// Sum of the per-weight scores (each >= 0) over rows [r0, r1) of a (rows, cols) matrix.
static double rows_sum(const float *v, int64_t cols, int64_t r0, int64_t r1) {
    double s = 0;
    for (int64_t i = r0 * cols; i < r1 * cols; i++) s += v[i];
    return s;
}

// col[c] = sum over rows of v[r, c] for a (rows, cols) matrix.
static void cols_sum(const float *v, int64_t rows, int64_t cols, double *col) {
    memset(col, 0, (size_t)cols * sizeof(double));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) col[c] += v[(size_t)r * cols + c];
}

// The per-weight scores of the tensor of weight w, checked against the model's shape (a norm is (1, dim) in the
// model and (dim) in the trainer).
static const float *find(const lmp_grad_set *g, const lmp_weight *w, lmp_error *err) {
    int64_t rows = 0, cols = 0;
    const float *v = lmp_grad_set_find(g, w->name, &rows, &cols);
    if (!v || rows * cols != w->rows * w->cols || (w->rows > 1 && (rows != w->rows || cols != w->cols))) {
        lmp_err(err, LMP_E_STATE, "gradients of '%s' missing or of another shape", w->name);
        return NULL;
    }
    return v;
}

static lmp_status layer_scores(const lmp_model *m, const lmp_grad_set *g, int l, double *col, lmp_prune_scores *s,
                               lmp_error *err) {
    const lmp_layer *L = &m->layers[l];
    const int64_t dim = m->cfg.dim, hd = m->cfg.head_dim;
    const float *v[LMP_MAT_COUNT];
    for (int k = 0; k < LMP_MAT_COUNT; k++)
        if (!(v[k] = find(g, lmp_layer_mat_c(L, k), err))) return err ? err->status : LMP_E_STATE;
    // query head h: rows h*hd .. of attn_q (hd, dim) and columns h*hd .. of attn_output (dim, hd)
    cols_sum(v[LMP_MAT_O], dim, (int64_t)L->n_heads * hd, col);
    for (int h = 0; h < L->n_heads; h++) {
        double e = rows_sum(v[LMP_MAT_Q], dim, h * hd, (h + 1) * hd);
        for (int64_t d = 0; d < hd; d++) e += col[h * hd + d];
        s->head[l][h] = e;
    }
    // KV head: its rows of attn_k and attn_v
    for (int kv = 0; kv < L->n_kv_heads; kv++)
        s->kv[l][kv] = rows_sum(v[LMP_MAT_K], dim, kv * hd, (kv + 1) * hd) +
                       rows_sum(v[LMP_MAT_V], dim, kv * hd, (kv + 1) * hd);
    // FFN channel j: row j of gate and up, column j of down
    cols_sum(v[LMP_MAT_DOWN], dim, L->ffn, col);
    for (int j = 0; j < L->ffn; j++)
        s->chan[l][j] = rows_sum(v[LMP_MAT_GATE], dim, j, j + 1) + rows_sum(v[LMP_MAT_UP], dim, j, j + 1) + col[j];
    // the whole block: every parameter, norms included
    const float *an = find(g, &L->attn_norm, err), *fn = an ? find(g, &L->ffn_norm, err) : NULL;
    if (!an || !fn) return err ? err->status : LMP_E_STATE;
    double b = rows_sum(an, dim, 0, 1) + rows_sum(fn, dim, 0, 1);
    for (int k = 0; k < LMP_MAT_COUNT; k++) {
        const lmp_weight *w = lmp_layer_mat_c(L, k);
        b += rows_sum(v[k], w->cols, 0, w->rows);
    }
    s->block[l] = b;
    return LMP_OK;
}

typedef struct taylor_progress {
    const lmp_prune_calib_opts *o;
} taylor_progress;

static void on_progress(void *user, const char *stage, double done, double total) {
    (void)stage;
    const taylor_progress *p = user;
    p->o->progress(p->o->progress_user, "scoring", done, total);
}

lmp_status lmp_prune_score_taylor(lmp_model *m, const lmp_prune_calib_opts *o, lmp_prune_scores *s, lmp_error *err) {
    lmp_status st = lmp_prune_scores_init(m, s, err);
    if (st) return st;
    s->block = lmp_malloc((size_t)m->cfg.n_layers * sizeof(double));
    if (!s->block) {
        lmp_prune_scores_free(s);
        return lmp_err(err, LMP_E_NOMEM, "out of memory for pruning scores");
    }
    lmp_calib_set set;
    if ((st = lmp_calib_sample(m, o->path, o->n_tokens, o->ctx, &set, err))) {
        lmp_prune_scores_free(s);
        return st;
    }
    s->calib_tokens = (int64_t)set.n_seq * set.seq_len;
    taylor_progress tp = {o};
    lmp_grad_set g;
    st = lmp_train_grads_accumulate(m, set.tokens, set.n_seq, set.seq_len, LMP_PRUNE_TAYLOR_BATCH, LMP_GRAD_ABS_WG,
                                    o->pool, 0, o->progress ? on_progress : NULL, &tp, &g, err);
    lmp_calib_set_free(&set);
    if (st) {
        lmp_prune_scores_free(s);
        return st;
    }
    const int64_t hd = m->cfg.head_dim;
    const size_t maxw = (size_t)(m->cfg.max_ffn > m->cfg.max_heads * hd ? m->cfg.max_ffn : m->cfg.max_heads * hd);
    double *col = lmp_malloc(maxw * sizeof(double));
    if (!col) st = lmp_err(err, LMP_E_NOMEM, "out of memory for pruning scores");
    for (int l = 0; l < m->cfg.n_layers && !st; l++) st = layer_scores(m, &g, l, col, s, err);
    // Scores are estimates of the loss change in nats, already comparable across layers.
    for (int l = 0; l < m->cfg.n_layers && !st; l++) s->scale[l] = 1.0;
    lmp_free(col);
    lmp_grad_set_free(&g);
    if (st) lmp_prune_scores_free(s);
    return st;
}
