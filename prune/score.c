// score.c - importance scores of the units structured pruning removes (prune_internal.h): magnitude (weight
// energy, no data) and activation (calibration activations times the norm of the weights that read them, as
// Wanda and Minitron score units), plus the block statistics of the layers target (block influence, ShortGPT).
//
// Statistics come from the input model: every block is measured on the hidden states of the unpruned blocks
// before it (one pass of the shared calibration runner). It does not rank or remove anything (plan.c).
#include <math.h>
#include <string.h>

#include "format/qtypes.h"
#include "prune/prune_internal.h"

void lmp_prune_scores_free(lmp_prune_scores *s) {
    if (!s) return;
    for (int l = 0; l < s->n_layers; l++) {
        if (s->head) lmp_free(s->head[l]);
        if (s->kv) lmp_free(s->kv[l]);
        if (s->chan) lmp_free(s->chan[l]);
    }
    lmp_free(s->head);
    lmp_free(s->kv);
    lmp_free(s->chan);
    lmp_free(s->scale);
    lmp_free(s->influence);
    lmp_free(s->change);
    lmp_free(s->block);
    memset(s, 0, sizeof *s);
}

lmp_status lmp_prune_scores_init(const lmp_model *m, lmp_prune_scores *s, lmp_error *err) {
    memset(s, 0, sizeof *s);
    const int L = m->cfg.n_layers;
    s->n_layers = L;
    s->head = lmp_calloc((size_t)L, sizeof *s->head);
    s->kv = lmp_calloc((size_t)L, sizeof *s->kv);
    s->chan = lmp_calloc((size_t)L, sizeof *s->chan);
    s->scale = lmp_malloc((size_t)L * sizeof(double));
    s->influence = lmp_malloc((size_t)L * sizeof(double));
    s->change = lmp_malloc((size_t)L * sizeof(double));
    int ok = s->head && s->kv && s->chan && s->scale && s->influence && s->change;
    for (int l = 0; ok && l < L; l++) {
        const lmp_layer *Ly = &m->layers[l];
        s->head[l] = lmp_calloc((size_t)Ly->n_heads, sizeof(double));
        s->kv[l] = lmp_calloc((size_t)Ly->n_kv_heads, sizeof(double));
        s->chan[l] = lmp_calloc((size_t)Ly->ffn, sizeof(double));
        ok = s->head[l] && s->kv[l] && s->chan[l];
        s->scale[l] = 1.0;
        s->influence[l] = NAN;
        s->change[l] = NAN;
    }
    if (!ok) {
        lmp_prune_scores_free(s);
        return lmp_err(err, LMP_E_NOMEM, "out of memory for pruning scores");
    }
    return LMP_OK;
}

const float *lmp_prune_weight_f32(const lmp_weight *w, float **owned, lmp_error *err) {
    *owned = NULL;
    if (w->type == LMP_DTYPE_F32) return (const float *)w->data;
    const lmp_type_traits *tr = lmp_type_get(w->type);
    if (!tr) {
        lmp_err(err, LMP_E_UNSUPPORTED, "'%s': unknown type %d", w->name, (int)w->type);
        return NULL;
    }
    float *v = lmp_malloc((size_t)w->rows * (size_t)w->cols * sizeof(float));
    if (!v) {
        lmp_err(err, LMP_E_NOMEM, "out of memory converting '%s' to f32", w->name);
        return NULL;
    }
    for (int64_t r = 0; r < w->rows; r++)
        tr->to_float((const char *)w->data + (size_t)r * w->row_bytes, v + (size_t)r * w->cols, w->cols);
    *owned = v;
    return v;
}

// Sum of squares of rows [r0, r1) of a (rows, cols) matrix.
static double rows_energy(const float *w, int64_t cols, int64_t r0, int64_t r1) {
    double s = 0;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = w + (size_t)r * cols;
        for (int64_t c = 0; c < cols; c++) s += (double)x[c] * x[c];
    }
    return s;
}

// col[c] = sum over rows of w[r, c]^2 for a (rows, cols) matrix.
static void cols_energy(const float *w, int64_t rows, int64_t cols, double *col) {
    memset(col, 0, (size_t)cols * sizeof(double));
    for (int64_t r = 0; r < rows; r++) {
        const float *x = w + (size_t)r * cols;
        for (int64_t c = 0; c < cols; c++) col[c] += (double)x[c] * x[c];
    }
}

// The float32 values of the seven matrices of layer l (views or owned copies).
typedef struct layer_f32 {
    const float *w[LMP_MAT_COUNT];
    float *owned[LMP_MAT_COUNT];
} layer_f32;

static void layer_f32_free(layer_f32 *f) {
    for (int k = 0; k < LMP_MAT_COUNT; k++) lmp_free(f->owned[k]);
    memset(f, 0, sizeof *f);
}

static lmp_status layer_f32_get(lmp_model *m, int l, unsigned mats, layer_f32 *f, lmp_error *err) {
    memset(f, 0, sizeof *f);
    for (int k = 0; k < LMP_MAT_COUNT; k++) {
        if (!(mats & (1u << k))) continue;
        f->w[k] = lmp_prune_weight_f32(lmp_layer_mat(&m->layers[l], k), &f->owned[k], err);
        if (!f->w[k]) {
            layer_f32_free(f);
            return err ? err->status : LMP_E_NOMEM;
        }
    }
    return LMP_OK;
}

lmp_status lmp_prune_score_magnitude(lmp_model *m, lmp_prune_scores *s, lmp_error *err) {
    lmp_status st = lmp_prune_scores_init(m, s, err);
    if (st) return st;
    const int64_t dim = m->cfg.dim, hd = m->cfg.head_dim;
    double *col = lmp_malloc((size_t)(m->cfg.max_ffn > m->cfg.max_heads * hd ? m->cfg.max_ffn : m->cfg.max_heads * hd) *
                             sizeof(double));
    if (!col) {
        lmp_prune_scores_free(s);
        return lmp_err(err, LMP_E_NOMEM, "out of memory for pruning scores");
    }
    for (int l = 0; l < m->cfg.n_layers && !st; l++) {
        const lmp_layer *L = &m->layers[l];
        layer_f32 f;
        if ((st = layer_f32_get(m, l, (1u << LMP_MAT_COUNT) - 1, &f, err))) break;
        cols_energy(f.w[LMP_MAT_O], dim, L->n_heads * hd, col);
        for (int h = 0; h < L->n_heads; h++) {
            double e = rows_energy(f.w[LMP_MAT_Q], dim, h * hd, (h + 1) * hd);
            for (int64_t d = 0; d < hd; d++) e += col[h * hd + d];
            s->head[l][h] = e;
        }
        for (int g = 0; g < L->n_kv_heads; g++)
            s->kv[l][g] = rows_energy(f.w[LMP_MAT_K], dim, g * hd, (g + 1) * hd) +
                          rows_energy(f.w[LMP_MAT_V], dim, g * hd, (g + 1) * hd);
        cols_energy(f.w[LMP_MAT_DOWN], dim, L->ffn, col);
        for (int j = 0; j < L->ffn; j++)
            s->chan[l][j] = rows_energy(f.w[LMP_MAT_GATE], dim, j, j + 1) + rows_energy(f.w[LMP_MAT_UP], dim, j, j + 1) +
                            col[j];
        layer_f32_free(&f);
    }
    lmp_free(col);
    if (st) lmp_prune_scores_free(s);
    return st;
}

// ---- activation scores ----

typedef struct act_ctx {
    const lmp_prune_calib_opts *o;
    double done, total;  // progress over all blocks, in sequences
    double base;         // progress before the current collect
    int dim;
    double cos_sum, change_sum;  // over the tokens of the current block
    int64_t n_tok;
} act_ctx;

static void act_progress(void *user, const char *stage, double done, double total) {
    act_ctx *a = user;
    if (a->o->progress) a->o->progress(a->o->progress_user, "scoring", a->base + done, a->total);
}

// advance callback: cosine between each token's block input and output, and the relative change.
static void act_block(void *user, int seq, const float *x_in, const float *x_out, int n, int dim) {
    act_ctx *a = user;
    for (int t = 0; t < n; t++) {
        const float *u = x_in + (size_t)t * dim, *v = x_out + (size_t)t * dim;
        double uu = 0, vv = 0, uv = 0, dd = 0;
        for (int i = 0; i < dim; i++) {
            uu += (double)u[i] * u[i];
            vv += (double)v[i] * v[i];
            uv += (double)u[i] * v[i];
            double d = (double)v[i] - u[i];
            dd += d * d;
        }
        double nu = sqrt(uu), nv = sqrt(vv);
        a->cos_sum += nu > 0 && nv > 0 ? uv / (nu * nv) : 1.0;
        a->change_sum += nv > 0 ? sqrt(dd) / nv : 0.0;
        a->n_tok++;
    }
    a->done += 1;
    if (a->o->progress) a->o->progress(a->o->progress_user, "scoring", a->done, a->total);
}


// Per-token normalised activations (collect hook): acc[c] += |x_tc| / ||x_in,t|| over the tokens of the block,
// where x_in is the hidden state entering the block. Why per token: a unit's output is added to that token's
// residual stream, whose norm varies by orders of magnitude between tokens and layers (SmolLM2's first tokens
// carry "massive activations"); relative to it, contributions of different layers compare. Measured against the
// plain mean |x| divided by the block's mean output norm (docs/benchmarks.md): SmolLM2 at 0.1 +82 % instead of
// +661 % WikiText PPL, stories260K at 0.3 +449 % instead of +631 %.
typedef struct tok_acc {
    const float *inv;          // (n_seq * seq_len) 1 / ||x_in,t||
    int calls[LMP_HOOK_COUNT]; // sequences seen per hook point
    int seq_len;
    double *acc[LMP_HOOK_COUNT];
} tok_acc;

static void tok_hook(void *user, int layer, lmp_hook_point where, const float *x, int n, int width) {
    tok_acc *t = user;
    if (!t->acc[where]) return;
    const float *inv = t->inv + (size_t)t->calls[where]++ * t->seq_len;
    double *acc = t->acc[where];
    for (int i = 0; i < n; i++)
        for (int c = 0; c < width; c++) acc[c] += fabsf(x[(size_t)i * width + c]) * inv[i];
}

lmp_status lmp_prune_score_activation(lmp_model *m, const lmp_prune_calib_opts *o, int want_width,
                                      lmp_prune_scores *s, lmp_error *err) {
    lmp_status st = lmp_prune_scores_init(m, s, err);
    if (st) return st;
    lmp_calib_set set;
    lmp_calib_runner *r = NULL;
    if ((st = lmp_calib_sample(m, o->path, o->n_tokens, o->ctx, &set, err))) {
        lmp_prune_scores_free(s);
        return st;
    }
    lmp_session_opts so = {0};
    so.pool = o->pool;
    if ((st = lmp_calib_runner_new(m, &set, &so, &r, err))) {
        lmp_calib_set_free(&set);
        lmp_prune_scores_free(s);
        return st;
    }
    s->calib_tokens = (int64_t)set.n_seq * set.seq_len;
    const int L = m->cfg.n_layers;
    const int64_t dim = m->cfg.dim, hd = m->cfg.head_dim;
    act_ctx a = {o, 0, (double)L * set.n_seq * (want_width ? 2 : 1), 0, (int)dim, 0, 0, 0};
    lmp_calib_runner_set_progress(r, act_progress, &a, "scoring");
    double *col = lmp_malloc((size_t)(m->cfg.max_ffn > m->cfg.max_heads * hd ? m->cfg.max_ffn : m->cfg.max_heads * hd) *
                             sizeof(double));
    if (!col) st = lmp_err(err, LMP_E_NOMEM, "out of memory for pruning scores");
    const unsigned none[LMP_HOOK_COUNT] = {0};  // the built-in statistics are not used: tok_hook accumulates
    const size_t maxw = (size_t)(m->cfg.max_ffn > m->cfg.max_heads * hd ? m->cfg.max_ffn : m->cfg.max_heads * hd);
    double *att = lmp_malloc(maxw * sizeof(double)), *hid = lmp_malloc(maxw * sizeof(double));
    float *inv = lmp_malloc((size_t)set.n_seq * set.seq_len * sizeof(float));
    if (!att || !hid || !inv) st = lmp_err(err, LMP_E_NOMEM, "out of memory for pruning statistics");
    for (int l = 0; l < L && !st; l++) {
        const lmp_layer *Ly = &m->layers[l];
        if (want_width) {
            a.base = a.done;
            // 1 / ||x_t|| of every token entering the block, then the normalised |activation| sums (tok_hook).
            const size_t ntok = (size_t)set.n_seq * set.seq_len;
            const int wa = Ly->n_heads * (int)hd, wd = Ly->ffn;
            const float *xh = lmp_calib_runner_hidden(r);
            for (size_t t = 0; t < ntok; t++) {
                double q = 0;
                for (int64_t i = 0; i < dim; i++) q += (double)xh[t * dim + i] * xh[t * dim + i];
                inv[t] = q > 0 ? (float)(1.0 / sqrt(q)) : 0.0f;
            }
            tok_acc ta = {inv, {0}, set.seq_len, {NULL}};
            ta.acc[LMP_HOOK_ATTN_OUT_IN] = att;
            ta.acc[LMP_HOOK_DOWN_IN] = hid;
            memset(att, 0, (size_t)wa * sizeof(double));
            memset(hid, 0, (size_t)wd * sizeof(double));
            lmp_calib_runner_set_hook(r, tok_hook, &ta);
            st = lmp_calib_runner_collect(r, l, none, err);
            lmp_calib_runner_set_hook(r, NULL, NULL);
            if (st) break;
            a.done += set.n_seq;
            if (ta.calls[LMP_HOOK_ATTN_OUT_IN] != set.n_seq || ta.calls[LMP_HOOK_DOWN_IN] != set.n_seq) {
                st = lmp_err(err, LMP_E_STATE, "layer %d: calibration hooks saw %d and %d of %d sequences", l,
                             ta.calls[LMP_HOOK_ATTN_OUT_IN], ta.calls[LMP_HOOK_DOWN_IN], set.n_seq);
                break;
            }
            layer_f32 f;
            if ((st = layer_f32_get(m, l, (1u << LMP_MAT_O) | (1u << LMP_MAT_DOWN), &f, err))) break;
            cols_energy(f.w[LMP_MAT_O], dim, wa, col);
            for (int h = 0; h < Ly->n_heads; h++) {
                double sc = 0;
                for (int64_t d = h * hd; d < (h + 1) * hd; d++) sc += att[d] / (double)ntok * sqrt(col[d]);
                s->head[l][h] = sc;
            }
            cols_energy(f.w[LMP_MAT_DOWN], dim, wd, col);
            for (int j = 0; j < Ly->ffn; j++) s->chan[l][j] = hid[j] / (double)ntok * sqrt(col[j]);
            layer_f32_free(&f);
        }
        a.cos_sum = a.change_sum = 0;
        a.n_tok = 0;
        if ((st = lmp_calib_runner_advance(r, l, act_block, &a, err))) break;
        double n = a.n_tok > 0 ? (double)a.n_tok : 1;
        s->influence[l] = 1.0 - a.cos_sum / n;
        s->change[l] = a.change_sum / n;
    }
    lmp_free(col);
    lmp_free(att);
    lmp_free(hid);
    lmp_free(inv);
    lmp_calib_runner_free(r);
    lmp_calib_set_free(&set);
    if (st) lmp_prune_scores_free(s);
    return st;
}
