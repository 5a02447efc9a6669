// calib.c - calibration text for the calibrated quantization methods, and the activation-weighted RTN
// method ("imatrix"): per-input-channel mean squared activations from a forward pass of the input model,
// used as importance weights when choosing each block's scale.
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "format/qtypes.h"
#include "quant/quant_internal.h"
#include "runtime/session.h"

lmp_status lmp_calib_sample(lmp_qctx *q, int32_t **tokens, int *n_seq, int *seq_len, lmp_error *err) {
    const lmp_quant_params *p = q->p;
    const lmp_model *m = q->model;
    *tokens = NULL;
    if (!m->tok) return lmp_err(err, LMP_E_ARG, "calibration needs a tokenizer and the model has none");
    int T = p->calib_ctx > 0 ? p->calib_ctx : (m->cfg.ctx < 512 ? m->cfg.ctx : 512);
    if (T > m->cfg.ctx) return lmp_err(err, LMP_E_ARG, "calibration context %d exceeds the model's %d", T, m->cfg.ctx);
    if (T < 2) return lmp_err(err, LMP_E_ARG, "calibration context %d is too short", T);
    int64_t want = p->calib_tokens > 0 ? p->calib_tokens : (int64_t)128 * T;
    int64_t S = (want + T - 1) / T;
    FILE *f = fopen(p->calib_path, "rb");
    if (!f) return lmp_err(err, LMP_E_IO, "cannot open calibration file '%s'", p->calib_path);
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return lmp_err(err, LMP_E_IO, "calibration file '%s' is not a regular file", p->calib_path);
    }
    char *text = lmp_malloc((size_t)st.st_size + 1);
    if (!text) {
        fclose(f);
        return lmp_err(err, LMP_E_NOMEM, "out of memory reading '%s'", p->calib_path);
    }
    size_t len = fread(text, 1, (size_t)st.st_size, f);
    fclose(f);
    int32_t *all = NULL;
    size_t n_all = 0;
    lmp_status s = lmp_tokenizer_encode(m->tok, text, len, 0, &all, &n_all, err);
    lmp_free(text);
    if (s) return s;
    if ((int64_t)n_all < S * T) {
        lmp_free(all);
        return lmp_err(err, LMP_E_ARG,
                       "calibration file '%s' has %zu tokens, fewer than the %lld requested (%lld sequences of %d); "
                       "use a longer file or --calib-tokens", p->calib_path, n_all, (long long)(S * T), (long long)S, T);
    }
    int32_t *out = lmp_malloc((size_t)(S * T) * sizeof(int32_t));
    if (!out) {
        lmp_free(all);
        return lmp_err(err, LMP_E_NOMEM, "out of memory");
    }
    // Evenly spaced windows over the whole text: deterministic, and they cover it from start to end.
    int64_t span = (int64_t)n_all - T;
    int bos = lmp_tokenizer_add_bos(m->tok) ? lmp_tokenizer_bos(m->tok) : -1;
    for (int64_t i = 0; i < S; i++) {
        int64_t start = S > 1 ? span * i / (S - 1) : 0;
        memcpy(out + i * T, all + start, (size_t)T * sizeof(int32_t));
        if (bos >= 0) out[i * T] = bos;
    }
    lmp_free(all);
    *tokens = out;
    *n_seq = (int)S;
    *seq_len = T;
    q->calib_tokens_used = S * T;
    return LMP_OK;
}

// ---- imatrix ----

typedef struct {
    const lmp_config *c;
    const lmp_model *m;
    double **sumsq;  // (n_layers * LMP_HOOK_COUNT) arrays of the hook's width
    int64_t count;   // tokens seen (per hook point)
} imatrix_acc;

static void imatrix_hook(void *user, int layer, lmp_hook_point where, const float *x, int n, int width) {
    imatrix_acc *a = user;
    double *s = a->sumsq[layer * LMP_HOOK_COUNT + where];
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * width;
        for (int j = 0; j < width; j++) s[j] += (double)xi[j] * xi[j];
    }
}

static int hook_width(const lmp_model *m, int l, lmp_hook_point h) {
    const lmp_layer *L = &m->layers[l];
    switch (h) {
    case LMP_HOOK_ATTN_IN: case LMP_HOOK_FFN_IN: return m->cfg.dim;
    case LMP_HOOK_ATTN_OUT_IN: return L->n_heads * m->cfg.head_dim;
    case LMP_HOOK_DOWN_IN: return L->ffn;
    default: return 0;
    }
}

lmp_status lmp_quant_run_imatrix(lmp_qctx *q, lmp_error *err) {
    lmp_model *m = q->model;
    const int L = m->cfg.n_layers;
    int32_t *toks = NULL;
    int S = 0, T = 0;
    lmp_status st = lmp_calib_sample(q, &toks, &S, &T, err);
    if (st) return st;
    imatrix_acc a = {&m->cfg, m, lmp_calloc((size_t)L * LMP_HOOK_COUNT, sizeof(double *)), 0};
    lmp_session *s = NULL;
    float *imp = NULL;
    if (!a.sumsq) {
        st = lmp_err(err, LMP_E_NOMEM, "out of memory");
        goto done;
    }
    size_t maxw = 0;
    for (int l = 0; l < L; l++)
        for (int h = 0; h < LMP_HOOK_COUNT; h++) {
            size_t w = (size_t)hook_width(m, l, (lmp_hook_point)h);
            if (w > maxw) maxw = w;
            if (!(a.sumsq[l * LMP_HOOK_COUNT + h] = lmp_calloc(w, sizeof(double)))) {
                st = lmp_err(err, LMP_E_NOMEM, "out of memory");
                goto done;
            }
        }
    imp = lmp_malloc(maxw * sizeof(float));
    lmp_session_opts so = {T, T, q->p->n_threads, "cpu"};
    if (!imp || (st = lmp_session_new(m, &so, &s, err))) {
        if (!st) st = lmp_err(err, LMP_E_NOMEM, "out of memory");
        goto done;
    }
    lmp_session_set_hook(s, imatrix_hook, &a);
    for (int i = 0; i < S; i++) {
        if ((st = lmp_session_eval(s, toks + (size_t)i * T, T, 0, 0, NULL, err))) goto done;
        a.count += T;
        if (q->p->progress) q->p->progress(q->p->progress_user, "imatrix: calibration", i + 1, S);
    }
    static const char *names[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
    static const lmp_hook_point points[] = {LMP_HOOK_ATTN_IN, LMP_HOOK_ATTN_IN, LMP_HOOK_ATTN_IN, LMP_HOOK_ATTN_OUT_IN,
                                            LMP_HOOK_FFN_IN,  LMP_HOOK_FFN_IN,  LMP_HOOK_DOWN_IN};
    for (int l = 0; l < L; l++) {
        for (int k = 0; k < 7; k++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, names[k]);
            lmp_qentry *e = lmp_qctx_find(q, name);
            if (!e || !lmp_type_get(e->type)->is_quantized) continue;
            const double *ss = a.sumsq[l * LMP_HOOK_COUNT + points[k]];
            for (int64_t j = 0; j < e->cols; j++) imp[j] = (float)(ss[j] / (double)a.count);
            if ((st = lmp_qentry_quantize(q, e, imp, err))) goto done;
        }
        if (q->p->progress) q->p->progress(q->p->progress_user, "imatrix: quantize", l + 1, L);
    }
done:
    if (a.sumsq)
        for (int i = 0; i < L * LMP_HOOK_COUNT; i++) lmp_free(a.sumsq[i]);
    lmp_free(a.sumsq);
    lmp_free(imp);
    lmp_session_free(s);
    lmp_free(toks);
    return st;
}
