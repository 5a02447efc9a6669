// perplexity.c - perplexity, KL divergence and top-1 agreement of models on a text (perplexity.h).
//
// The models run chunk by chunk in lockstep so that only one chunk of the base's log-probabilities is
// held: (ctx/2, vocab) floats. It does not print; the CLI formats the table, JSON and chart.
#include "runtime/perplexity.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "runtime/generate.h"
#include "runtime/session.h"
#include "runtime/threadpool.h"

static lmp_status read_text(const char *path, char **out, size_t *len, lmp_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return lmp_err(err, LMP_E_IO, "cannot open data file '%s'", path);
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return lmp_err(err, LMP_E_IO, "data file '%s' is not a regular file", path);
    }
    char *buf = lmp_malloc((size_t)st.st_size + 1);
    if (!buf) {
        fclose(f);
        return lmp_err(err, LMP_E_NOMEM, "out of memory reading '%s'", path);
    }
    size_t n = fread(buf, 1, (size_t)st.st_size, f);
    fclose(f);
    if (n != (size_t)st.st_size) {
        lmp_free(buf);
        return lmp_err(err, LMP_E_IO, "short read of '%s'", path);
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return LMP_OK;
}

// Two models can be compared token by token only if their vocabularies are the same strings.
static int same_vocab(const lmp_model *a, const lmp_model *b) {
    const void *da, *db;
    uint64_t na, nb;
    if (lmp_meta_get_arr(lmp_file_meta(a->file), "tokenizer.tokens", LMP_KV_STRING, &da, &na, NULL) ||
        lmp_meta_get_arr(lmp_file_meta(b->file), "tokenizer.tokens", LMP_KV_STRING, &db, &nb, NULL))
        return 0;
    if (na != nb) return 0;
    char *const *sa = da, *const *sb = db;
    for (uint64_t i = 0; i < na; i++)
        if (strcmp(sa[i], sb[i]) != 0) return 0;
    return 1;
}

// In place: row -> log softmax(row).
static void log_softmax(float *row, int n) {
    float mx = row[0];
    for (int i = 1; i < n; i++)
        if (row[i] > mx) mx = row[i];
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += exp((double)(row[i] - mx));
    float lse = mx + (float)log(sum);
    for (int i = 0; i < n; i++) row[i] -= lse;
}

// Scoring one model's chunk: per scored row j, log-softmax in place, the NLL of the target, and for the
// base its log-probabilities and top token, for the others the KL divergence from the base and whether
// the top tokens agree. Rows are independent, so threads take row ranges; the per-row results are summed
// afterwards in row order, so the statistics are the same bits for any thread count.
typedef struct score_job {
    float *logits;           // (n_scored, vocab) in: logits, out: log-probabilities
    float *base_lp;          // (n_scored, vocab) the base's log-probabilities (written when is_base)
    int *base_top;           // (n_scored) the base's top tokens (written when is_base)
    const int32_t *targets;  // (n_scored) the next tokens
    double *nll, *kl;        // (n_scored) per-row results
    int *top1;               // (n_scored) 1: top token agrees with the base's
    int n_scored, vocab, is_base;
} score_job;

static void score_worker(void *arg, int ith, int nth) {
    score_job *s = arg;
    long long j0, j1;
    lmp_split_range(s->n_scored, ith, nth, 1, &j0, &j1);
    const int vocab = s->vocab;
    for (long long j = j0; j < j1; j++) {
        float *lp = s->logits + (size_t)j * vocab;
        log_softmax(lp, vocab);
        s->nll[j] = -(double)lp[s->targets[j]];
        if (s->is_base) {
            memcpy(s->base_lp + (size_t)j * vocab, lp, (size_t)vocab * sizeof(float));
            s->base_top[j] = lmp_argmax(lp, vocab);
            s->kl[j] = 0.0;
            s->top1[j] = 1;
        } else {
            const float *bl = s->base_lp + (size_t)j * vocab;
            double kl = 0.0;
            for (int v = 0; v < vocab; v++) kl += exp((double)bl[v]) * ((double)bl[v] - (double)lp[v]);
            s->kl[j] = kl < 0 ? 0 : kl;  // rounding of identical distributions
            s->top1[j] = lmp_argmax(lp, vocab) == s->base_top[j];
        }
    }
}

typedef struct acc {
    double nll, nll2, kl, kl2, eval_s;
    int64_t count, top1, eval_tokens;
} acc;

static double stderr_of(double sum, double sum2, int64_t n) {
    if (n < 2) return 0.0;
    double mean = sum / (double)n, var = sum2 / (double)n - mean * mean;
    return var > 0 ? sqrt(var / (double)(n - 1)) : 0.0;
}

static uint64_t model_file_bytes(const lmp_model *m) { return lmp_file_size(m->file); }

lmp_status lmp_eval_ppl(lmp_model **models, int n_models, const lmp_ppl_params *p, lmp_ppl_result *res,
                        lmp_error *err) {
    if (n_models < 1) return lmp_err(err, LMP_E_ARG, "no models");
    const lmp_model *base = models[0];
    for (int k = 0; k < n_models; k++) {
        if (!models[k]->tok) return lmp_err(err, LMP_E_ARG, "model %d has no tokenizer", k + 1);
        if (k && (models[k]->cfg.vocab != base->cfg.vocab || !same_vocab(base, models[k])))
            return lmp_err(err, LMP_E_ARG, "model %d has a different vocabulary from the base model", k + 1);
    }
    int min_ctx = base->cfg.ctx;
    for (int k = 1; k < n_models; k++)
        if (models[k]->cfg.ctx < min_ctx) min_ctx = models[k]->cfg.ctx;
    int ctx = p->ctx > 0 ? p->ctx : (min_ctx < 512 ? min_ctx : 512);
    if (ctx > min_ctx)
        return lmp_err(err, LMP_E_ARG, "--ctx %d is larger than the model context length %d", ctx, min_ctx);
    if (ctx < 4) return lmp_err(err, LMP_E_ARG, "--ctx %d is too small (at least 4)", ctx);

    char *text = NULL;
    size_t text_len = 0;
    lmp_status st = read_text(p->data_path, &text, &text_len, err);
    if (st) return st;
    int32_t *toks = NULL;
    size_t n_toks = 0;
    st = lmp_tokenizer_encode(base->tok, text, text_len, 0, &toks, &n_toks, err);
    lmp_free(text);
    if (st) return st;
    int64_t avail = (int64_t)n_toks / ctx;
    if (avail < 1) {
        lmp_free(toks);
        return lmp_err(err, LMP_E_ARG, "data file '%s' has %zu tokens, fewer than one chunk of %d", p->data_path,
                       n_toks, ctx);
    }
    int n_chunks = p->n_chunks > 0 && p->n_chunks < avail ? p->n_chunks : (int)avail;
    const int vocab = base->cfg.vocab, first = ctx / 2, n_scored = ctx - 1 - first;
    const int add_bos = lmp_tokenizer_add_bos(base->tok) && lmp_tokenizer_bos(base->tok) >= 0;

    double *d_nll = NULL, *d_kl = NULL;  // (n_scored) device-side statistics of one chunk
    int32_t *d_top = NULL, *d_top1 = NULL;
    lmp_session **sess = lmp_calloc((size_t)n_models, sizeof *sess);
    acc *a = lmp_calloc((size_t)n_models, sizeof *a);
    float *logits = lmp_malloc((size_t)(ctx - first) * vocab * sizeof(float));   // (ctx - first, vocab)
    float *base_lp = lmp_malloc((size_t)n_scored * vocab * sizeof(float));        // (n_scored, vocab)
    int *base_top = lmp_malloc((size_t)n_scored * sizeof(int));                    // (n_scored)
    int32_t *chunk = lmp_malloc((size_t)ctx * sizeof(int32_t));                    // (ctx)
    double *r_nll = lmp_malloc((size_t)n_scored * sizeof(double));                 // (n_scored) per-row results
    double *r_kl = lmp_malloc((size_t)n_scored * sizeof(double));
    int *r_top1 = lmp_malloc((size_t)n_scored * sizeof(int));
    // One pool for every model's session and the scoring (one set of threads owns the cores).
    lmp_pool *pool = lmp_pool_new(p->n_threads);
    if (!pool) {
        st = lmp_err(err, LMP_E_NOMEM, "cannot start %d threads", p->n_threads);
        goto done;
    }
    if (!sess || !a || !logits || !base_lp || !base_top || !chunk || !r_nll || !r_kl || !r_top1) {
        st = lmp_err(err, LMP_E_NOMEM, "out of memory for a %d x %d logits buffer", ctx, vocab);
        goto done;
    }
    for (int k = 0; k < n_models; k++) {
        // exact: a device evaluates in the CPU's arithmetic (statistics comparable with the CPU's digit for digit)
        lmp_session_opts so = {ctx, ctx, p->n_threads, p->backend ? p->backend : "cpu", pool, 1};
        if ((st = lmp_session_new(models[k], &so, &sess[k], err))) goto done;
    }
    // On a device backend the log-softmax, NLL, KL and top-1 are computed there (the same formulas as below),
    // so that (ctx / 2, vocab) logits per model and chunk stay in device memory.
    int dev_stats = 1;
    for (int k = 0; k < n_models; k++) dev_stats &= lmp_session_has_eval_stats(sess[k]);
    if (dev_stats) {
        d_nll = lmp_malloc((size_t)n_scored * sizeof(double));
        d_kl = lmp_malloc((size_t)n_scored * sizeof(double));
        d_top = lmp_malloc((size_t)n_scored * sizeof(int32_t));
        d_top1 = lmp_malloc((size_t)n_scored * sizeof(int32_t));
        if (!d_nll || !d_kl || !d_top || !d_top1) {
            st = lmp_err(err, LMP_E_NOMEM, "out of memory");
            goto done;
        }
    }
    for (int c = 0; c < n_chunks; c++) {
        memcpy(chunk, toks + (size_t)c * ctx, (size_t)ctx * sizeof(int32_t));
        if (add_bos) chunk[0] = lmp_tokenizer_bos(base->tok);
        for (int k = 0; k < n_models && dev_stats; k++) {
            double t0 = lmp_time_now();
            // rows first .. first + n_scored - 1 predict chunk[first + 1 ..]
            if ((st = lmp_session_eval_stats(sess[k], chunk, ctx - 1, 0, first, chunk + first + 1, k == 0 && n_models > 1,
                                             k ? sess[0] : NULL, k ? base_top : NULL, d_nll, d_kl,
                                             k ? d_top : base_top, d_top1, err)))
                goto done;
            a[k].eval_s += lmp_time_now() - t0;
            a[k].eval_tokens += ctx - 1;
            for (int j = 0; j < n_scored; j++) {
                a[k].nll += d_nll[j];
                a[k].nll2 += d_nll[j] * d_nll[j];
                a[k].count++;
                if (k == 0) {
                    a[k].top1++;
                } else {
                    a[k].kl += d_kl[j];
                    a[k].kl2 += d_kl[j] * d_kl[j];
                    a[k].top1 += d_top1[j] != 0;
                }
            }
            if (p->progress)
                p->progress(p->progress_user, "eval-ppl", (double)c * n_models + k + 1, (double)n_chunks * n_models);
        }
        for (int k = 0; k < n_models && !dev_stats; k++) {
            double t0 = lmp_time_now();
            if ((st = lmp_session_eval(sess[k], chunk, ctx, 0, first, logits, err))) goto done;
            a[k].eval_s += lmp_time_now() - t0;
            a[k].eval_tokens += ctx;
            score_job sj = {logits, base_lp, base_top, chunk + first + 1, r_nll, r_kl, r_top1, n_scored, vocab, k == 0};
            lmp_pool_run(pool, score_worker, &sj);
            for (int j = 0; j < n_scored; j++) {
                a[k].nll += r_nll[j];
                a[k].nll2 += r_nll[j] * r_nll[j];
                a[k].count++;
                if (k) {
                    a[k].kl += r_kl[j];
                    a[k].kl2 += r_kl[j] * r_kl[j];
                }
                a[k].top1 += r_top1[j];
            }
            if (p->progress)
                p->progress(p->progress_user, "eval-ppl", (double)c * n_models + k + 1, (double)n_chunks * n_models);
        }
    }
    for (int k = 0; k < n_models; k++) {
        lmp_ppl_result *r = &res[k];
        memset(r, 0, sizeof *r);
        r->tokens = a[k].count;
        r->nll = a[k].nll / (double)a[k].count;
        r->ppl = exp(r->nll);
        r->ppl_err = r->ppl * stderr_of(a[k].nll, a[k].nll2, a[k].count);
        r->kld = k ? a[k].kl / (double)a[k].count : 0.0;
        r->kld_err = k ? stderr_of(a[k].kl, a[k].kl2, a[k].count) : 0.0;
        r->top1 = (double)a[k].top1 / (double)a[k].count;
        r->params = models[k]->n_params;
        r->bits_per_weight = lmp_model_bpw(models[k]);
        r->file_bytes = model_file_bytes(models[k]);
        r->prefill_tok_s = a[k].eval_s > 0 ? (double)a[k].eval_tokens / a[k].eval_s : 0.0;
        r->ctx = ctx;
        r->chunks = n_chunks;
    }
    // Decode speed: a short prompt from the data, then single-token passes (with logits, as in generation).
    if (p->decode_tokens > 0) {
        int n_prompt = 16 < ctx / 2 ? 16 : ctx / 2;
        int n_dec = p->decode_tokens < ctx - n_prompt ? p->decode_tokens : ctx - n_prompt;
        for (int k = 0; k < n_models; k++) {
            if ((st = lmp_session_eval(sess[k], toks, n_prompt, 0, n_prompt - 1, logits, err))) goto done;
            double t0 = lmp_time_now();
            for (int i = 0; i < n_dec; i++)
                if ((st = lmp_session_eval(sess[k], toks + n_prompt + i, 1, n_prompt + i, 0, logits, err))) goto done;
            double dt = lmp_time_now() - t0;
            res[k].decode_tok_s = dt > 0 ? n_dec / dt : 0.0;
            if (p->progress) p->progress(p->progress_user, "decode speed", k + 1, n_models);
        }
    }
done:
    lmp_free(d_nll);
    lmp_free(d_kl);
    lmp_free(d_top);
    lmp_free(d_top1);
    if (sess)
        for (int k = 0; k < n_models; k++) lmp_session_free(sess[k]);
    lmp_free(sess);
    lmp_free(a);
    lmp_free(logits);
    lmp_free(base_lp);
    lmp_free(base_top);
    lmp_free(chunk);
    lmp_free(r_nll);
    lmp_free(r_kl);
    lmp_free(r_top1);
    lmp_pool_free(pool);
    lmp_free(toks);
    return st;
}
