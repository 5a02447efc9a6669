// calib.c - calibration text (tokenize, sample) and the layer-by-layer calibration runner (calib.h).
#include "runtime/calib.h"

#include "runtime/sgemm.h"
#include "runtime/threadpool.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

lmp_status lmp_text_tokenize_file(const lmp_tokenizer *tok, const char *path, const char *what, int32_t **tokens,
                                  size_t *n, lmp_error *err) {
    if (!what) what = "text file";
    *tokens = NULL;
    *n = 0;
    if (!tok) return lmp_err(err, LMP_E_ARG, "the model has no tokenizer");
    FILE *f = fopen(path, "rb");
    if (!f) return lmp_err(err, LMP_E_IO, "cannot open %s '%s'", what, path);
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return lmp_err(err, LMP_E_IO, "%s '%s' is not a regular file", what, path);
    }
    char *text = lmp_malloc((size_t)st.st_size + 1);
    if (!text) {
        fclose(f);
        return lmp_err(err, LMP_E_NOMEM, "out of memory reading '%s' (%lld bytes)", path, (long long)st.st_size);
    }
    size_t len = fread(text, 1, (size_t)st.st_size, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || len != (size_t)st.st_size) {
        lmp_free(text);
        return lmp_err(err, LMP_E_IO, "cannot read %s '%s'", what, path);
    }
    lmp_status s = lmp_tokenizer_encode(tok, text, len, 0, tokens, n, err);
    lmp_free(text);
    return lmp_err_prefix(err, s, "%s", path);
}

lmp_status lmp_calib_sample(const lmp_model *m, const char *path, int64_t n_tokens, int ctx, lmp_calib_set *out,
                            lmp_error *err) {
    memset(out, 0, sizeof *out);
    if (!m->tok) return lmp_err(err, LMP_E_ARG, "calibration needs a tokenizer and the model has none");
    if (!path) return lmp_err(err, LMP_E_ARG, "no calibration file");
    int T = ctx > 0 ? ctx : (m->cfg.ctx < 512 ? m->cfg.ctx : 512);
    if (T > m->cfg.ctx) return lmp_err(err, LMP_E_ARG, "calibration context %d exceeds the model's %d", T, m->cfg.ctx);
    if (T < 2) return lmp_err(err, LMP_E_ARG, "calibration context %d is too short", T);
    int64_t want = n_tokens > 0 ? n_tokens : (int64_t)128 * T;
    int64_t S = (want + T - 1) / T;
    if (S > (1 << 24)) return lmp_err(err, LMP_E_ARG, "%lld calibration tokens is too many", (long long)want);
    int32_t *all = NULL;
    size_t n_all = 0;
    lmp_status st = lmp_text_tokenize_file(m->tok, path, "calibration file", &all, &n_all, err);
    if (st) return st;
    if ((int64_t)n_all < S * T) {
        lmp_free(all);
        return lmp_err(err, LMP_E_ARG,
                       "calibration file '%s' has %zu tokens, fewer than the %lld requested (%lld sequences of %d); "
                       "use a longer file or --calib-tokens", path, n_all, (long long)(S * T), (long long)S, T);
    }
    int32_t *toks = lmp_malloc((size_t)(S * T) * sizeof(int32_t));
    if (!toks) {
        lmp_free(all);
        return lmp_err(err, LMP_E_NOMEM, "out of memory for %lld calibration tokens", (long long)(S * T));
    }
    // Evenly spaced windows over the whole text: deterministic, and they cover it from start to end.
    int64_t span = (int64_t)n_all - T;
    int bos = lmp_tokenizer_add_bos(m->tok) ? lmp_tokenizer_bos(m->tok) : -1;
    for (int64_t i = 0; i < S; i++) {
        int64_t start = S > 1 ? span * i / (S - 1) : 0;
        memcpy(toks + i * T, all + start, (size_t)T * sizeof(int32_t));
        if (bos >= 0) toks[i * T] = bos;
    }
    lmp_free(all);
    out->tokens = toks;
    out->n_seq = (int)S;
    out->seq_len = T;
    return LMP_OK;
}

void lmp_calib_set_free(lmp_calib_set *s) {
    if (!s) return;
    lmp_free(s->tokens);
    memset(s, 0, sizeof *s);
}

// ---- the runner ----

struct lmp_calib_runner {
    lmp_model *m;
    const lmp_calib_set *set;
    lmp_session *s;
    int dim, layer;     // layer: the block the hidden states enter
    float *x;           // (n_seq, seq_len, dim) hidden states entering block `layer`
    float *tmp;         // (seq_len, dim) a sequence's copy during collect / its input during advance
    // statistics of the last collect, per hook point
    int collected;      // the block of the last collect, -1 if none
    unsigned want[LMP_HOOK_COUNT];
    int width[LMP_HOOK_COUNT];
    float *gram[LMP_HOOK_COUNT];     // (width, width)
    float *absmean[LMP_HOOK_COUNT];  // (width)
    float *sqmean[LMP_HOOK_COUNT];   // (width)
    double *acc[LMP_HOOK_COUNT];     // (width, width) upper triangle of sum x x^T
    double *acc_abs[LMP_HOOK_COUNT]; // (width) sum |x|
    double *acc_sq[LMP_HOOK_COUNT];  // (width) sum x^2
    float *batch;                    // (max width, max width) one batch's x^T x
    struct lmp_pool *pool;           // the session's borrowed pool (NULL: the Gram on the calling thread)
    int64_t count;
    lmp_hook_fn user_hook;
    void *user;
    lmp_progress_fn progress;
    void *progress_user;
    const char *stage;
};

// The Gram of one batch, x^T x for x (n, width), in row panels of GRAM_PANEL: panel p (rows a0..a1) computes
// its part of the upper triangle, batch[a0:a1, a0:width] = x[:, a0:a1]^T x[:, a0:width], with lmp_sgemm (the
// faster of OpenBLAS and the project's tiles: a misdetected BLAS core must not make calibration slow), and adds
// its rows b >= a into the double accumulator. Panels go round-robin to the pool's threads, which balances the
// triangle's shrinking rows; each row of acc is written by one thread only.
// Why float per batch and double across batches: one batch (<= seq_len tokens) in float loses at most ~seq_len
// ulps, far below what the passes care about, and is the fast path; summing hundreds of batches in float
// would let small late contributions vanish against the running total.
enum { GRAM_PANEL = 32 };

typedef struct {
    const float *x;  // (n, width)
    int n, width;
    float *batch;    // (width, width) upper triangle written
    double *acc;     // (width, width) upper triangle accumulated
} gram_job;

static void gram_worker(void *arg, int ith, int nth) {
    const gram_job *j = arg;
    const int w = j->width;
    for (int a0 = ith * GRAM_PANEL; a0 < w; a0 += nth * GRAM_PANEL) {
        int rows = w - a0 < GRAM_PANEL ? w - a0 : GRAM_PANEL;
        float *c = j->batch + (size_t)a0 * w + a0;  // (rows, w - a0), row stride w
        lmp_sgemm(1, 0, rows, w - a0, j->n, 1.0f, j->x + a0, w, j->x + a0, w, 0.0f, c, w);
        for (int a = a0; a < a0 + rows; a++) {
            const float *br = j->batch + (size_t)a * w;
            double *ar = j->acc + (size_t)a * w;
            for (int b = a; b < w; b++) ar[b] += br[b];
        }
    }
}

static void runner_hook(void *user, int layer, lmp_hook_point where, const float *x, int n, int width) {
    lmp_calib_runner *r = user;
    if (layer != r->collected || width != r->width[where]) return;
    unsigned want = r->want[where];
    if (want & LMP_STAT_GRAM) {
        gram_job j = {x, n, width, r->batch, r->acc[where]};
        if (r->pool) lmp_pool_run(r->pool, gram_worker, &j);
        else gram_worker(&j, 0, 1);
    }
    if (want & LMP_STAT_ABSMEAN) {
        double *aa = r->acc_abs[where];
        for (int i = 0; i < n; i++) {
            const float *xi = x + (size_t)i * width;
            for (int c = 0; c < width; c++) aa[c] += fabsf(xi[c]);
        }
    }
    if (want & LMP_STAT_SQMEAN) {
        double *sq = r->acc_sq[where];
        for (int i = 0; i < n; i++) {
            const float *xi = x + (size_t)i * width;
            for (int c = 0; c < width; c++) sq[c] += (double)xi[c] * xi[c];
        }
    }
    if (r->user_hook) r->user_hook(r->user, layer, where, x, n, width);
}

// The widest row at hook point h over all layers (pruned layers may be narrower).
static size_t max_width(const lmp_model *m, int h) {
    size_t w = 0;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        size_t x = (size_t)lmp_model_hook_width(m, l, (lmp_hook_point)h);
        if (x > w) w = x;
    }
    return w;
}

lmp_status lmp_calib_runner_new(lmp_model *m, const lmp_calib_set *set, const lmp_session_opts *opts,
                                lmp_calib_runner **out, lmp_error *err) {
    *out = NULL;
    if (!set || !set->tokens || set->n_seq <= 0 || set->seq_len <= 0)
        return lmp_err(err, LMP_E_ARG, "empty calibration set");
    lmp_calib_runner *r = lmp_calloc(1, sizeof *r);
    if (!r) return lmp_err(err, LMP_E_NOMEM, "out of memory");
    r->m = m;
    r->set = set;
    r->dim = m->cfg.dim;
    r->collected = -1;
    uint64_t nx;
    if (lmp_mul_overflow((uint64_t)set->n_seq * (uint64_t)set->seq_len, (uint64_t)r->dim, &nx) ||
        nx > SIZE_MAX / sizeof(float) / 2) {
        lmp_free(r);
        return lmp_err(err, LMP_E_ARG, "calibration hidden states (%d x %d x %d) are too large", set->n_seq,
                       set->seq_len, r->dim);
    }
    size_t maxw = 0;
    for (int h = 0; h < LMP_HOOK_COUNT; h++)
        if (max_width(m, h) > maxw) maxw = max_width(m, h);
    r->x = lmp_malloc(nx * sizeof(float));
    r->tmp = lmp_malloc((size_t)set->seq_len * r->dim * sizeof(float));
    r->batch = lmp_malloc(maxw * maxw * sizeof(float));
    lmp_status st = LMP_OK;
    if (!r->x || !r->tmp || !r->batch) {
        st = lmp_err(err, LMP_E_NOMEM, "out of memory for the hidden states of %d x %d calibration tokens (%.1f MB)",
                     set->n_seq, set->seq_len, (double)nx * 4 / 1e6);
        goto fail;
    }
    lmp_session_opts so = opts ? *opts : (lmp_session_opts){0};
    so.n_ctx = set->seq_len;
    so.n_batch = set->seq_len;
    r->pool = so.pool;
    if ((st = lmp_session_new(m, &so, &r->s, err))) goto fail;
    for (int i = 0; i < set->n_seq; i++) {
        st = lmp_session_embed(r->s, set->tokens + (size_t)i * set->seq_len, set->seq_len,
                               r->x + (size_t)i * set->seq_len * r->dim, err);
        if (st) goto fail;
    }
    *out = r;
    return LMP_OK;
fail:
    lmp_calib_runner_free(r);
    return st;
}

void lmp_calib_runner_free(lmp_calib_runner *r) {
    if (!r) return;
    lmp_session_free(r->s);
    lmp_free(r->x);
    lmp_free(r->tmp);
    lmp_free(r->batch);
    for (int h = 0; h < LMP_HOOK_COUNT; h++) {
        lmp_free(r->gram[h]);
        lmp_free(r->absmean[h]);
        lmp_free(r->sqmean[h]);
        lmp_free(r->acc[h]);
        lmp_free(r->acc_abs[h]);
        lmp_free(r->acc_sq[h]);
    }
    lmp_free(r);
}

void lmp_calib_runner_set_hook(lmp_calib_runner *r, lmp_hook_fn fn, void *user) {
    r->user_hook = fn;
    r->user = user;
}

void lmp_calib_runner_set_progress(lmp_calib_runner *r, lmp_progress_fn fn, void *user, const char *stage) {
    r->progress = fn;
    r->progress_user = user;
    r->stage = stage;
}

// Allocates *p once, for n elements of size sz (n: the widest the hook point gets over all layers).
static int ensure(void **p, size_t n, size_t sz) {
    if (!*p) *p = lmp_malloc(n * sz);
    return *p != NULL;
}

lmp_status lmp_calib_runner_collect(lmp_calib_runner *r, int l, const unsigned stats[LMP_HOOK_COUNT],
                                    lmp_error *err) {
    const lmp_model *m = r->m;
    if (l < 0 || l >= m->cfg.n_layers) return lmp_err(err, LMP_E_ARG, "layer %d out of range", l);
    if (l != r->layer)
        return lmp_err(err, LMP_E_STATE, "collect of block %d, but the hidden states enter block %d", l, r->layer);
    for (int h = 0; h < LMP_HOOK_COUNT; h++) {
        unsigned want = stats ? stats[h] : 0;
        r->want[h] = want;
        int wd = lmp_model_hook_width(m, l, (lmp_hook_point)h);
        r->width[h] = wd;
        size_t w = (size_t)wd, mw = max_width(m, h);
        int ok = 1;
        if (want & LMP_STAT_GRAM) {
            ok = ok && ensure((void **)&r->acc[h], mw * mw, sizeof(double)) &&
                 ensure((void **)&r->gram[h], mw * mw, sizeof(float));
            if (ok) memset(r->acc[h], 0, w * w * sizeof(double));
        }
        if (want & LMP_STAT_ABSMEAN) {
            ok = ok && ensure((void **)&r->acc_abs[h], mw, sizeof(double)) &&
                 ensure((void **)&r->absmean[h], mw, sizeof(float));
            if (ok) memset(r->acc_abs[h], 0, w * sizeof(double));
        }
        if (want & LMP_STAT_SQMEAN) {
            ok = ok && ensure((void **)&r->acc_sq[h], mw, sizeof(double)) &&
                 ensure((void **)&r->sqmean[h], mw, sizeof(float));
            if (ok) memset(r->acc_sq[h], 0, w * sizeof(double));
        }
        if (!ok) {
            r->collected = -1;
            return lmp_err(err, LMP_E_NOMEM, "out of memory for the statistics of block %d (%d channels)", l, wd);
        }
    }
    r->collected = l;
    lmp_session_set_hook(r->s, runner_hook, r);
    lmp_status st = LMP_OK;
    const int S = r->set->n_seq, T = r->set->seq_len;
    const size_t D = (size_t)r->dim;
    for (int i = 0; i < S && !st; i++) {
        memcpy(r->tmp, r->x + (size_t)i * T * D, (size_t)T * D * sizeof(float));
        st = lmp_session_run_layers(r->s, r->tmp, T, 0, l, l + 1, err);
        if (r->progress) r->progress(r->progress_user, r->stage ? r->stage : "calibration", i + 1, S);
    }
    lmp_session_set_hook(r->s, NULL, NULL);
    if (st) {
        r->collected = -1;
        return st;
    }
    r->count = (int64_t)S * T;
    const double inv = 1.0 / (double)r->count;
    for (int h = 0; h < LMP_HOOK_COUNT; h++) {
        const int wd = r->width[h];
        if (r->want[h] & LMP_STAT_GRAM)
            for (int a = 0; a < wd; a++)
                for (int b = a; b < wd; b++) {
                    float v = (float)(r->acc[h][(size_t)a * wd + b] * inv);
                    r->gram[h][(size_t)a * wd + b] = v;
                    r->gram[h][(size_t)b * wd + a] = v;
                }
        if (r->want[h] & LMP_STAT_ABSMEAN)
            for (int a = 0; a < wd; a++) r->absmean[h][a] = (float)(r->acc_abs[h][a] * inv);
        if (r->want[h] & LMP_STAT_SQMEAN)
            for (int a = 0; a < wd; a++) r->sqmean[h][a] = (float)(r->acc_sq[h][a] * inv);
    }
    return LMP_OK;
}

static const float *result(const lmp_calib_runner *r, lmp_hook_point h, int *width, unsigned bit, float *const *arr) {
    if (width) *width = 0;
    if ((unsigned)h >= LMP_HOOK_COUNT || r->collected < 0 || !(r->want[h] & bit)) return NULL;
    if (width) *width = r->width[h];
    return arr[h];
}

const float *lmp_calib_runner_gram(const lmp_calib_runner *r, lmp_hook_point h, int *width) {
    return result(r, h, width, LMP_STAT_GRAM, r->gram);
}
const float *lmp_calib_runner_absmean(const lmp_calib_runner *r, lmp_hook_point h, int *width) {
    return result(r, h, width, LMP_STAT_ABSMEAN, r->absmean);
}
const float *lmp_calib_runner_sqmean(const lmp_calib_runner *r, lmp_hook_point h, int *width) {
    return result(r, h, width, LMP_STAT_SQMEAN, r->sqmean);
}
int64_t lmp_calib_runner_count(const lmp_calib_runner *r) { return r->collected >= 0 ? r->count : 0; }

lmp_status lmp_calib_runner_advance(lmp_calib_runner *r, int l, lmp_calib_block_fn cb, void *user, lmp_error *err) {
    if (l != r->layer)
        return lmp_err(err, LMP_E_STATE, "advance of block %d, but the hidden states enter block %d", l, r->layer);
    if (l >= r->m->cfg.n_layers) return lmp_err(err, LMP_E_ARG, "layer %d out of range", l);
    const int S = r->set->n_seq, T = r->set->seq_len;
    const size_t D = (size_t)r->dim;
    for (int i = 0; i < S; i++) {
        float *xi = r->x + (size_t)i * T * D;
        if (cb) memcpy(r->tmp, xi, (size_t)T * D * sizeof(float));
        lmp_status st = lmp_session_run_layers(r->s, xi, T, 0, l, l + 1, err);
        if (st) return st;
        if (cb) cb(user, i, r->tmp, xi, T, (int)D);
    }
    r->layer = l + 1;
    return LMP_OK;
}

int lmp_calib_runner_layer(const lmp_calib_runner *r) { return r->layer; }
const float *lmp_calib_runner_hidden(const lmp_calib_runner *r) { return r->x; }
const lmp_calib_set *lmp_calib_runner_set(const lmp_calib_runner *r) { return r->set; }
