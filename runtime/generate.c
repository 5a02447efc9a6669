// generate.c - run.c-compatible sampler and the generation loop (prefill as one batch, then decode).
#include "runtime/generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint32_t rng_u32(uint64_t *state) {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (uint32_t)((*state * 0x2545F4914F6CDD1Dull) >> 32);
}

static float rng_f32(uint64_t *state) { return (float)(rng_u32(state) >> 8) / 16777216.0f; }

lmp_status lmp_sampler_init(lmp_sampler *s, int vocab, float temperature, float top_p, uint64_t seed,
                            lmp_error *err) {
    memset(s, 0, sizeof *s);
    if (vocab <= 0) return lmp_err(err, LMP_E_ARG, "empty vocabulary");
    if (!(temperature >= 0)) return lmp_err(err, LMP_E_ARG, "temperature %g must be >= 0", (double)temperature);
    if (!(top_p > 0)) return lmp_err(err, LMP_E_ARG, "top-p %g must be > 0", (double)top_p);
    s->temperature = temperature;
    s->top_p = top_p;
    s->rng = seed ? seed : 1;
    s->vocab = vocab;
    s->idx = lmp_malloc((size_t)vocab * sizeof(int));
    s->prob = lmp_malloc((size_t)vocab * sizeof(float));
    if (!s->idx || !s->prob) {
        lmp_sampler_free(s);
        return lmp_err(err, LMP_E_NOMEM, "out of memory");
    }
    return LMP_OK;
}

void lmp_sampler_free(lmp_sampler *s) {
    lmp_free(s->idx);
    lmp_free(s->prob);
    s->idx = NULL;
    s->prob = NULL;
}

int lmp_argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

static void softmax(float *x, int n) {
    float mx = x[lmp_argmax(x, n)], sum = 0.0f;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    for (int i = 0; i < n; i++) x[i] /= sum;
}

static const float *g_sort_prob;  // qsort has no context argument; sampling is single-threaded
static int cmp_prob_desc(const void *a, const void *b) {
    float pa = g_sort_prob[*(const int *)a], pb = g_sort_prob[*(const int *)b];
    return pa > pb ? -1 : pa < pb ? 1 : 0;
}

// Nucleus sampling as run.c: drop tokens below (1 - top_p) / (n - 1) (they cannot be in the nucleus),
// sort the rest, cut at cumulative probability top_p, sample within.
static int sample_top_p(lmp_sampler *s, const float *prob, float coin) {
    int n = s->vocab, k = 0;
    const float cutoff = (1.0f - s->top_p) / (float)(n - 1 > 0 ? n - 1 : 1);
    for (int i = 0; i < n; i++)
        if (prob[i] >= cutoff) s->idx[k++] = i;
    g_sort_prob = prob;
    qsort(s->idx, (size_t)k, sizeof(int), cmp_prob_desc);
    float cum = 0.0f;
    int last = k - 1;
    for (int i = 0; i < k; i++) {
        cum += prob[s->idx[i]];
        if (cum > s->top_p) {
            last = i;
            break;
        }
    }
    float r = coin * cum, cdf = 0.0f;
    for (int i = 0; i <= last; i++) {
        cdf += prob[s->idx[i]];
        if (r < cdf) return s->idx[i];
    }
    return s->idx[last];
}

int lmp_sampler_sample(lmp_sampler *s, float *logits) {
    if (s->temperature == 0.0f) return lmp_argmax(logits, s->vocab);
    for (int i = 0; i < s->vocab; i++) logits[i] /= s->temperature;
    softmax(logits, s->vocab);
    float coin = rng_f32(&s->rng);
    if (s->top_p <= 0.0f || s->top_p >= 1.0f) {
        float cdf = 0.0f;
        for (int i = 0; i < s->vocab; i++) {
            cdf += logits[i];
            if (coin < cdf) return i;
        }
        return s->vocab - 1;
    }
    return sample_top_p(s, logits, coin);
}

lmp_status lmp_generate(lmp_session *s, const char *prompt, int n_new, lmp_sampler *sampler, lmp_piece_fn on_piece,
                        void *user, lmp_gen_stats *stats, lmp_error *err) {
    const lmp_model *m = lmp_session_model(s);
    memset(stats, 0, sizeof *stats);
    if (!m->tok) return lmp_err(err, LMP_E_ARG, "the model has no tokenizer; import it with --tokenizer");
    const lmp_tokenizer *tok = m->tok;
    int bos = lmp_tokenizer_bos(tok), eos = lmp_tokenizer_eos(tok);
    size_t plen = prompt ? strlen(prompt) : 0;
    int add_bos = lmp_tokenizer_add_bos(tok) || plen == 0;
    if (add_bos && bos < 0) {
        if (plen == 0) return lmp_err(err, LMP_E_ARG, "empty prompt and the tokenizer has no BOS token");
        add_bos = 0;
    }
    int32_t *toks = NULL;
    size_t nt = 0;
    lmp_status st = lmp_tokenizer_encode(tok, prompt ? prompt : "", plen, add_bos, &toks, &nt, err);
    if (st) return st;
    int n_ctx = lmp_session_n_ctx(s), vocab = m->cfg.vocab;
    if (nt == 0) {
        lmp_free(toks);
        return lmp_err(err, LMP_E_ARG, "the prompt encodes to no tokens");
    }
    if ((int64_t)nt >= n_ctx) {
        lmp_free(toks);
        return lmp_err(err, LMP_E_ARG, "the prompt has %zu tokens; the context holds %d", nt, n_ctx);
    }
    float *logits = lmp_malloc((size_t)vocab * sizeof(float));
    if (!logits) {
        lmp_free(toks);
        return lmp_err(err, LMP_E_NOMEM, "out of memory");
    }
    stats->n_prompt = (int)nt;
    int stop = 0;
    for (size_t i = 0; i < nt && !stop; i++) {
        size_t len;
        const char *piece = lmp_tokenizer_piece(tok, i ? toks[i - 1] : -1, toks[i], &len);
        if (on_piece && len && on_piece(user, piece, len)) stop = 1;
    }
    double t0 = lmp_time_now();
    st = lmp_session_eval(s, toks, (int)nt, 0, (int)nt - 1, logits, err);
    stats->prefill_s = lmp_time_now() - t0;
    int pos = (int)nt, prev = toks[nt - 1];
    lmp_free(toks);
    if (stop) stats->stop_reason = 3;
    while (!st && !stop) {
        if (stats->n_generated >= n_new) break;
        int next = lmp_sampler_sample(sampler, logits);
        stats->n_generated++;
        if (next == eos || next == bos) {
            stats->stop_reason = 1;
            break;
        }
        size_t len;
        const char *piece = lmp_tokenizer_piece(tok, prev, next, &len);
        if (on_piece && len && on_piece(user, piece, len)) {
            stats->stop_reason = 3;
            break;
        }
        prev = next;
        if (stats->n_generated >= n_new) break;
        if (pos >= n_ctx) {
            stats->stop_reason = 2;
            break;
        }
        int32_t t = next;
        double t1 = lmp_time_now();
        st = lmp_session_eval(s, &t, 1, pos, 0, logits, err);
        stats->decode_s += lmp_time_now() - t1;
        stats->n_decode++;
        pos++;
    }
    lmp_free(logits);
    return st;
}
