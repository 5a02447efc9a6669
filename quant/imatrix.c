// imatrix.c - the activation-weighted RTN method ("imatrix"): per-input-channel mean squared activations of
// the input model, measured block by block with the shared calibration runner (runtime/calib.h), used as
// importance weights when choosing each block's scale (format/qtypes.h lmp_quantize_row_weighted). Also the
// pass's one way to open calibration (lmp_qctx_calib_open), which AWQ and GPTQ use too.
#include <string.h>

#include "format/qtypes.h"
#include "quant/quant_internal.h"
#include "runtime/refmath.h"

lmp_status lmp_qctx_calib_open(lmp_qctx *q, lmp_calib_set *set, lmp_calib_runner **r, lmp_error *err) {
    *r = NULL;
    const lmp_quant_params *p = q->p;
    lmp_status st = lmp_calib_sample(q->model, p->calib_path, p->calib_tokens, p->calib_ctx, set, err);
    if (st) return st;
    q->calib_tokens_used = (int64_t)set->n_seq * set->seq_len;
    lmp_session_opts so = {0};
    so.pool = q->pool;
    if ((st = lmp_calib_runner_new(q->model, set, &so, r, err))) lmp_calib_set_free(set);
    return st;
}

lmp_status lmp_quant_run_imatrix(lmp_qctx *q, lmp_error *err) {
    lmp_model *m = q->model;
    const int L = m->cfg.n_layers;
    lmp_calib_set set;
    lmp_calib_runner *r = NULL;
    lmp_status st = lmp_qctx_calib_open(q, &set, &r, err);
    if (st) return st;
    unsigned stats[LMP_HOOK_COUNT];
    for (int h = 0; h < LMP_HOOK_COUNT; h++) stats[h] = LMP_STAT_SQMEAN;
    // Statistics of the input model: every block is measured before any weight changes, and the weights are
    // not swapped in (the method does not compound).
    for (int l = 0; l < L && !st; l++) {
        if ((st = lmp_calib_runner_collect(r, l, stats, err))) break;
        for (int k = 0; k < LMP_MAT_COUNT && !st; k++) {
            const lmp_weight *w = lmp_layer_mat(&m->layers[l], k);
            lmp_qentry *e = lmp_qctx_find(q, w->name);
            if (!e || !lmp_type_get(e->type)->is_quantized) continue;
            int width;
            const float *imp = lmp_calib_runner_sqmean(r, lmp_mats[k].input, &width);
            if (width != e->cols) {
                st = lmp_err(err, LMP_E_FORMAT, "'%s' has %lld columns but its input has %d channels", w->name,
                             (long long)e->cols, width);
                break;
            }
            st = lmp_qentry_quantize(q, e, imp, err);
        }
        if (!st) st = lmp_calib_runner_advance(r, l, NULL, NULL, err);
        if (q->p->progress) q->p->progress(q->p->progress_user, "imatrix", l + 1, L);
    }
    // The classifier (a tied embedding included) takes the mean squares of its own input, the final norm of
    // the last block's output.
    lmp_qentry *cls = lmp_qctx_find(q, m->tied ? "token_embd.weight" : "output.weight");
    if (!st && cls && lmp_type_get(cls->type)->is_quantized && cls->cols == m->cfg.dim) {
        const int D = m->cfg.dim;
        const int64_t n = (int64_t)set.n_seq * set.seq_len;
        const float *h = lmp_calib_runner_hidden(r);
        double *acc = lmp_calloc((size_t)D, sizeof(double));
        float *xn = lmp_malloc((size_t)D * sizeof(float)), *imp = lmp_malloc((size_t)D * sizeof(float));
        if (!acc || !xn || !imp) st = lmp_err(err, LMP_E_NOMEM, "out of memory");
        for (int64_t i = 0; !st && i < n; i++) {
            lmp_ref_rmsnorm(xn, h + (size_t)i * D, (const float *)m->output_norm.data, D, m->cfg.rms_eps);
            for (int c = 0; c < D; c++) acc[c] += (double)xn[c] * xn[c];
        }
        for (int c = 0; !st && c < D; c++) imp[c] = (float)(acc[c] / (double)n);
        if (!st) st = lmp_qentry_quantize(q, cls, imp, err);
        lmp_free(acc);
        lmp_free(xn);
        lmp_free(imp);
    }
    lmp_calib_runner_free(r);
    lmp_calib_set_free(&set);
    return st;
}
