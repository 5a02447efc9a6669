// forward.c - the Llama forward pass, written once against the backend interface (backend.h), and the
// session that owns its buffers and KV cache.
//
// Per block: RMSNorm -> q, k, v projections -> RoPE -> causal attention with grouped KV heads -> output
// projection + residual -> RMSNorm -> SwiGLU FFN + residual; then the final RMSNorm and the classifier
// for the tokens whose logits are wanted. Each layer uses its own head counts and FFN width.
// It does not sample or tokenize (generate.c, tokenizer.c).
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "format/qtypes.h"
#include "runtime/refmath.h"
#include "runtime/session.h"

struct lmp_session {
    lmp_model *m;
    lmp_backend *be;
    int n_ctx, n_batch;
    lmp_rope rope;             // tables in backend memory
    float *cos_tab, *sin_tab;  // (n_ctx, rope_dim / 2) backend memory
    // backend buffers, sized for n_batch tokens
    float *x;       // (n_batch, dim) residual stream
    float *xb;      // (n_batch, dim) normalised input of a sub-block
    float *xb2;     // (n_batch, dim) output of a projection back to dim
    float *q;       // (n_batch, max_heads * hd)
    float *k;       // (n_batch, max_kv_heads * hd)
    float *v;       // (n_batch, max_kv_heads * hd)
    float *att;     // (n_batch, max_heads * hd)
    float *hb;      // (n_batch, max_ffn) gate, then silu(gate) * up
    float *hb2;     // (n_batch, max_ffn) up
    float *logits;  // (n_batch, vocab), only for backends without host memory
    float *lp;      // (n_batch, vocab) log-probabilities kept by lmp_session_eval_stats (backend memory)
    lmp_kv_cache **kv;    // (n_layers) backend-owned caches of (n_ctx, n_kv_heads_l * hd)
    float *host_tmp;             // (n_batch, max(dim, max_ffn, max_heads * hd)) hooks on device backends
    uint64_t gen;                // model weight generation last uploaded
    lmp_status st;               // sticky session error (a hook's buffer could not be allocated)
    char msg[LMP_ERROR_MSG_MAX];
    lmp_hook_fn hook;
    void *hook_user;
};

static void *balloc(lmp_session *s, size_t n_floats, int *ok) {
    void *p = s->be->ops->alloc(s->be, n_floats * sizeof(float));
    if (!p) *ok = 0;
    return p;
}

// The backend must run every weight of the model: asked once, before anything runs.
static lmp_status check_support(lmp_session *s, lmp_error *err) {
    lmp_backend *be = s->be;
    const lmp_model *m = s->m;
    if (!be->ops->supports_op(be, LMP_OP_GET_ROWS, m->tok_embd.type))
        return lmp_err(err, LMP_E_UNSUPPORTED, "backend '%s' cannot read embeddings of type %s (token_embd.weight)",
                       be->ops->name, lmp_type_name(m->tok_embd.type));
    static const lmp_op plain[] = {LMP_OP_RMSNORM, LMP_OP_ROPE, LMP_OP_ATTENTION, LMP_OP_SWIGLU, LMP_OP_ADD};
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
        if (!be->ops->supports_op(be, plain[i], LMP_DTYPE_F32))
            return lmp_err(err, LMP_E_UNSUPPORTED, "backend '%s' lacks operation %d", be->ops->name, (int)plain[i]);
    const lmp_weight *mats[] = {&m->output};
    if (!be->ops->supports_op(be, LMP_OP_MATMUL, mats[0]->type))
        return lmp_err(err, LMP_E_UNSUPPORTED, "backend '%s' has no matmul kernel for type %s (%s)", be->ops->name,
                       lmp_type_name(mats[0]->type), mats[0]->name);
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int k = 0; k < LMP_MAT_COUNT; k++) {
            const lmp_weight *w = lmp_layer_mat_c(&m->layers[l], k);
            if (!be->ops->supports_op(be, LMP_OP_MATMUL, w->type))
                return lmp_err(err, LMP_E_UNSUPPORTED, "backend '%s' has no matmul kernel for type %s (%s)",
                               be->ops->name, lmp_type_name(w->type), w->name);
        }
    return LMP_OK;
}

// Uploads every weight whose generation is newer than the session's last upload (all of them at first).
static lmp_status sync_weights(lmp_session *s, int all, lmp_error *err) {
    lmp_model *m = s->m;
    if (!all && m->gen == s->gen) return LMP_OK;
    size_t n = lmp_model_n_weights(m);
    for (size_t i = 0; i < n; i++) {
        lmp_weight *w = lmp_model_weight_at(m, i);
        if (!all && w->gen <= s->gen) continue;
        lmp_status st = s->be->ops->upload_weight(s->be, w, err);
        if (st) return lmp_err_prefix(err, st, "uploading '%s'", w->name ? w->name : "?");
    }
    s->gen = m->gen;
    return LMP_OK;
}

lmp_status lmp_session_new(lmp_model *m, const lmp_session_opts *opts, lmp_session **out, lmp_error *err) {
    *out = NULL;
    lmp_session_opts o = opts ? *opts : (lmp_session_opts){0};
    const lmp_config *c = &m->cfg;
    if (o.n_ctx <= 0) o.n_ctx = c->ctx;
    if (o.n_ctx > c->ctx)
        return lmp_err(err, LMP_E_ARG, "context %d is larger than the model's context length %d", o.n_ctx, c->ctx);
    if (o.n_batch <= 0) o.n_batch = o.n_ctx < 512 ? o.n_ctx : 512;
    if (o.n_batch > o.n_ctx) o.n_batch = o.n_ctx;
    lmp_session *s = lmp_calloc(1, sizeof *s);
    if (!s) return lmp_err(err, LMP_E_NOMEM, "out of memory");
    s->m = m;
    s->n_ctx = o.n_ctx;
    s->n_batch = o.n_batch;
    lmp_backend_opts bo = {o.n_threads, o.pool, o.exact};
    lmp_status st = lmp_backend_new(o.backend, &bo, &s->be, err);
    if (st) {
        lmp_free(s);
        return st;
    }
    if ((st = check_support(s, err))) goto fail;
    int half = c->rope_dim / 2;
    size_t tab = (size_t)s->n_ctx * half;
    float *host_cos = lmp_malloc(tab * sizeof(float)), *host_sin = lmp_malloc(tab * sizeof(float));
    s->kv = lmp_calloc((size_t)c->n_layers, sizeof(lmp_kv_cache *));
    int ok = host_cos && host_sin && s->kv;
    s->cos_tab = balloc(s, tab, &ok);
    s->sin_tab = balloc(s, tab, &ok);
    if (ok) {
        lmp_ref_rope_tables(host_cos, host_sin, s->n_ctx, c->rope_dim, c->rope_theta);
        s->be->ops->from_host(s->be, s->cos_tab, host_cos, tab * sizeof(float));
        s->be->ops->from_host(s->be, s->sin_tab, host_sin, tab * sizeof(float));
    }
    lmp_free(host_cos);
    lmp_free(host_sin);
    if (!ok) goto nomem;
    s->rope = (lmp_rope){c->head_dim, c->rope_dim, c->rope_neox, s->cos_tab, s->sin_tab};
    size_t nb = (size_t)s->n_batch, hd = (size_t)c->head_dim;
    s->x = balloc(s, nb * c->dim, &ok);
    s->xb = balloc(s, nb * c->dim, &ok);
    s->xb2 = balloc(s, nb * c->dim, &ok);
    s->q = balloc(s, nb * c->max_heads * hd, &ok);
    s->k = balloc(s, nb * c->max_kv_heads * hd, &ok);
    s->v = balloc(s, nb * c->max_kv_heads * hd, &ok);
    s->att = balloc(s, nb * c->max_heads * hd, &ok);
    s->hb = balloc(s, nb * c->max_ffn, &ok);
    s->hb2 = balloc(s, nb * c->max_ffn, &ok);
    if (!s->be->ops->host_memory) s->logits = balloc(s, nb * c->vocab, &ok);
    if (!ok) goto nomem;
    for (int l = 0; l < c->n_layers; l++)
        if ((st = s->be->ops->kv_new(s->be, s->n_ctx, m->layers[l].n_kv_heads * (int)hd, &s->kv[l], err))) goto fail;
    if ((st = sync_weights(s, 1, err))) goto fail;
    if ((st = s->be->ops->synchronize(s->be, err))) goto fail;
    *out = s;
    return LMP_OK;
nomem:
    // a device backend says how many bytes it lacked
    if (!(st = s->be->ops->synchronize(s->be, err)))
        st = lmp_err(err, LMP_E_NOMEM, "out of memory allocating a context of %d positions", o.n_ctx);
    else lmp_err_prefix(err, st, "context of %d positions", o.n_ctx);
fail:
    lmp_session_free(s);
    return st;
}

void lmp_session_free(lmp_session *s) {
    if (!s) return;
    lmp_backend *be = s->be;
    if (be) {
        void *bufs[] = {s->x,  s->xb,     s->xb2,    s->q,      s->k, s->v, s->att, s->hb, s->hb2,
                        s->logits, s->lp, s->cos_tab, s->sin_tab};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
            if (bufs[i]) be->ops->free(be, bufs[i]);
        for (int l = 0; s->kv && l < s->m->cfg.n_layers; l++)
            if (s->kv[l]) be->ops->kv_free(be, s->kv[l]);
        size_t n = lmp_model_n_weights(s->m);
        for (size_t i = 0; i < n; i++) {
            lmp_weight *w = lmp_model_weight_at(s->m, i);
            if (w->dev) be->ops->release_weight(be, w);
        }
    }
    lmp_free(s->kv);
    lmp_free(s->host_tmp);
    lmp_backend_free(be);
    lmp_free(s);
}

int lmp_session_n_ctx(const lmp_session *s) { return s->n_ctx; }
lmp_backend *lmp_session_backend(lmp_session *s) { return s->be; }
const lmp_model *lmp_session_model(const lmp_session *s) { return s->m; }

void lmp_session_set_hook(lmp_session *s, lmp_hook_fn fn, void *user) {
    s->hook = fn;
    s->hook_user = user;
}

static void call_hook(lmp_session *s, int l, lmp_hook_point where, const float *x, int n, int width) {
    if (!s->hook) return;
    if (s->be->ops->host_memory) {
        s->hook(s->hook_user, l, where, x, n, width);
        return;
    }
    const lmp_config *c = &s->m->cfg;
    if (!s->host_tmp) {
        size_t w = (size_t)c->dim;
        if ((size_t)c->max_ffn > w) w = (size_t)c->max_ffn;
        if ((size_t)c->max_heads * c->head_dim > w) w = (size_t)c->max_heads * c->head_dim;
        s->host_tmp = lmp_malloc((size_t)s->n_batch * w * sizeof(float));
        if (!s->host_tmp) {
            if (!s->st) {
                s->st = LMP_E_NOMEM;
                snprintf(s->msg, sizeof s->msg, "out of memory for the host copy of hooked activations");
            }
            return;
        }
    }
    s->be->ops->to_host(s->be, s->host_tmp, x, (size_t)n * width * sizeof(float));
    s->hook(s->hook_user, l, where, s->host_tmp, n, width);
}

// One transformer block on s->x (n tokens at positions pos..).
static void block_forward(lmp_session *s, int l, int n, int pos) {
    const lmp_config *c = &s->m->cfg;
    const lmp_layer *L = &s->m->layers[l];
    const lmp_backend_ops *op = s->be->ops;
    lmp_backend *be = s->be;
    const int hd = c->head_dim;

    op->rmsnorm(be, s->xb, s->x, &L->attn_norm, n, c->dim, c->rms_eps);
    call_hook(s, l, LMP_HOOK_ATTN_IN, s->xb, n, c->dim);
    if (op->matmul_multi) {
        float *ys[3] = {s->q, s->k, s->v};
        const lmp_weight *ws[3] = {&L->wq, &L->wk, &L->wv};
        op->matmul_multi(be, ys, ws, 3, s->xb, n, 0);
    } else {
        op->matmul(be, s->q, &L->wq, s->xb, n);  // (n, n_heads * hd)
        op->matmul(be, s->k, &L->wk, s->xb, n);  // (n, n_kv * hd)
        op->matmul(be, s->v, &L->wv, s->xb, n);  // (n, n_kv * hd)
    }
    op->rope(be, s->q, s->k, n, L->n_heads, L->n_kv_heads, pos, &s->rope);
    op->attention(be, s->att, s->q, s->k, s->v, s->kv[l], n, pos, L->n_heads, L->n_kv_heads, hd);
    call_hook(s, l, LMP_HOOK_ATTN_OUT_IN, s->att, n, L->n_heads * hd);
    op->matmul(be, s->xb2, &L->wo, s->att, n);  // (n, dim)
    op->add(be, s->x, s->xb2, (size_t)n * c->dim);

    op->rmsnorm(be, s->xb, s->x, &L->ffn_norm, n, c->dim, c->rms_eps);
    call_hook(s, l, LMP_HOOK_FFN_IN, s->xb, n, c->dim);
    if (op->matmul_multi) {
        float *ys[2] = {s->hb, s->hb2};
        const lmp_weight *ws[2] = {&L->w_gate, &L->w_up};
        op->matmul_multi(be, ys, ws, 2, s->xb, n, LMP_MULTI_SWIGLU);  // hb = silu(x W_gate^T) * (x W_up^T)
    } else {
        op->matmul(be, s->hb, &L->w_gate, s->xb, n);  // (n, ffn)
        op->matmul(be, s->hb2, &L->w_up, s->xb, n);   // (n, ffn)
        op->swiglu(be, s->hb, s->hb2, n, L->ffn);
    }
    call_hook(s, l, LMP_HOOK_DOWN_IN, s->hb, n, L->ffn);
    op->matmul(be, s->xb2, &L->w_down, s->hb, n);  // (n, dim)
    op->add(be, s->x, s->xb2, (size_t)n * c->dim);
}

static lmp_status check_tokens(const lmp_session *s, const int32_t *tokens, int n, int pos, lmp_error *err) {
    if (n < 0 || pos < 0) return lmp_err(err, LMP_E_ARG, "negative token count or position");
    if ((int64_t)pos + n > s->n_ctx)
        return lmp_err(err, LMP_E_ARG, "positions %d..%d exceed the context of %d", pos, pos + n - 1, s->n_ctx);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= s->m->cfg.vocab)
            return lmp_err(err, LMP_E_ARG, "token id %d out of range (vocabulary %d)", tokens[i], s->m->cfg.vocab);
    return LMP_OK;
}

// Ends a run: the backend's sticky error first, then the session's own (a hook's host buffer).
static lmp_status finish(lmp_session *s, lmp_error *err) {
    lmp_status st = s->be->ops->synchronize(s->be, err);
    if (st) return st;
    if (s->st) {
        st = s->st;
        s->st = LMP_OK;
        return lmp_err(err, st, "%s", s->msg);
    }
    return LMP_OK;
}

// Issues the ops of one batch of nb tokens at positions pos..: the blocks, then (if want) the final norm and
// the classifier for batch rows [first, nb) into dst (host; NULL: into s->logits, left in backend memory).
static void batch_forward(lmp_session *s, const int32_t *tokens, int nb, int pos, int want, int first, float *dst) {
    const lmp_config *c = &s->m->cfg;
    const lmp_backend_ops *op = s->be->ops;
    op->get_rows(s->be, s->x, &s->m->tok_embd, tokens, nb);
    for (int l = 0; l < c->n_layers; l++) block_forward(s, l, nb, pos);
    if (!want || first >= nb) return;
    int nl = nb - first;
    const float *xr = s->x + (size_t)first * c->dim;
    op->rmsnorm(s->be, s->xb, xr, &s->m->output_norm, nl, c->dim, c->rms_eps);
    if (op->host_memory && dst) {
        op->matmul(s->be, dst, &s->m->output, s->xb, nl);
    } else {
        op->matmul(s->be, s->logits, &s->m->output, s->xb, nl);
        if (dst) op->to_host(s->be, dst, s->logits, (size_t)nl * c->vocab * sizeof(float));
    }
}

// A single-token step through the backend's recorded steps (a CUDA graph): replayed when recorded,
// recorded at the first step that can be. Returns 1 if the step ran this way.
static int step_graph(lmp_session *s, const int32_t *tokens, int pos, float *logits) {
    const lmp_backend_ops *op = s->be->ops;
    lmp_backend *be = s->be;
    if (s->hook || !op->step_replay || !op->step_record_begin || !op->step_record_end) return 0;
    const uint64_t key = logits ? 1 : 2;
    if (op->step_replay(be, key, tokens[0], pos, logits)) return 1;
    if (logits && (!op->step_reserve || !op->step_reserve(be, (size_t)s->m->cfg.vocab * sizeof(float)))) return 0;
    if (!op->step_record_begin(be, key, tokens[0], pos)) return 0;
    batch_forward(s, tokens, 1, pos, logits != NULL, 0, logits);
    if (!op->step_record_end(be)) return 0;  // not recordable now (a buffer to grow): run it op by op
    return op->step_replay(be, key, tokens[0], pos, logits);
}

lmp_status lmp_session_eval(lmp_session *s, const int32_t *tokens, int n, int pos, int logits_from,
                            float *logits, lmp_error *err) {
    lmp_status st = check_tokens(s, tokens, n, pos, err);
    if (st) return st;
    if (logits && (logits_from < 0 || logits_from > n))
        return lmp_err(err, LMP_E_ARG, "logits_from %d outside 0..%d", logits_from, n);
    if ((st = sync_weights(s, 0, err))) return st;
    if (n == 1 && step_graph(s, tokens, pos, logits && logits_from == 0 ? logits : NULL)) return finish(s, err);
    const lmp_config *c = &s->m->cfg;
    for (int b0 = 0; b0 < n; b0 += s->n_batch) {
        int nb = n - b0 < s->n_batch ? n - b0 : s->n_batch;
        // logits of batch rows [first, nb)
        int first = logits_from > b0 ? logits_from - b0 : 0;
        float *dst = logits ? logits + (size_t)(b0 + first - logits_from) * c->vocab : NULL;
        batch_forward(s, tokens + b0, nb, pos + b0, logits != NULL, first, dst);
    }
    return finish(s, err);
}

int lmp_session_has_eval_stats(const lmp_session *s) {
    return !s->be->ops->host_memory && s->be->ops->logits_stats != NULL;
}

lmp_status lmp_session_eval_stats(lmp_session *s, const int32_t *tokens, int n, int pos, int first,
                                  const int32_t *targets, int keep, const lmp_session *base, const int32_t *base_top,
                                  double *nll, double *kl, int32_t *top, int32_t *top1, lmp_error *err) {
    const lmp_backend_ops *op = s->be->ops;
    if (!lmp_session_has_eval_stats(s))
        return lmp_err(err, LMP_E_UNSUPPORTED, "backend '%s' has no device-side evaluation statistics", op->name);
    if (base && (!base->lp || strcmp(base->be->ops->name, op->name) != 0 || base->m->cfg.vocab != s->m->cfg.vocab))
        return lmp_err(err, LMP_E_ARG, "the base session kept no log-probabilities on a backend of this kind");
    lmp_status st = check_tokens(s, tokens, n, pos, err);
    if (st) return st;
    if (n > s->n_batch) return lmp_err(err, LMP_E_ARG, "%d tokens exceed the batch of %d", n, s->n_batch);
    if (first < 0 || first >= n) return lmp_err(err, LMP_E_ARG, "first %d outside 0..%d", first, n - 1);
    for (int i = 0; i < n - first; i++)
        if (targets[i] < 0 || targets[i] >= s->m->cfg.vocab)
            return lmp_err(err, LMP_E_ARG, "target id %d out of range", targets[i]);
    if ((st = sync_weights(s, 0, err))) return st;
    const int vocab = s->m->cfg.vocab;
    if (keep && !s->lp) {
        s->lp = op->alloc(s->be, (size_t)s->n_batch * vocab * sizeof(float));
        if (!s->lp) {
            if (!(st = op->synchronize(s->be, err)))
                st = lmp_err(err, LMP_E_NOMEM, "out of memory for %d x %d log-probabilities", s->n_batch, vocab);
            return st;
        }
    }
    batch_forward(s, tokens, n, pos, 1, first, NULL);
    op->logits_stats(s->be, s->logits, n - first, vocab, targets, base ? base->lp : NULL, base_top,
                     keep ? s->lp : NULL, nll, kl, top, top1);
    return finish(s, err);
}

lmp_status lmp_session_embed(lmp_session *s, const int32_t *tokens, int n, float *x, lmp_error *err) {
    lmp_status st = check_tokens(s, tokens, n, 0, err);
    if (st) return st;
    if (n > s->n_batch) return lmp_err(err, LMP_E_ARG, "%d tokens exceed the batch of %d", n, s->n_batch);
    if ((st = sync_weights(s, 0, err))) return st;
    s->be->ops->get_rows(s->be, s->x, &s->m->tok_embd, tokens, n);
    s->be->ops->to_host(s->be, x, s->x, (size_t)n * s->m->cfg.dim * sizeof(float));
    return finish(s, err);
}

lmp_status lmp_session_run_layers(lmp_session *s, float *x, int n, int pos, int l0, int l1, lmp_error *err) {
    const lmp_config *c = &s->m->cfg;
    if (n <= 0 || n > s->n_batch) return lmp_err(err, LMP_E_ARG, "%d tokens: batch is 1..%d", n, s->n_batch);
    if (pos < 0 || pos + n > s->n_ctx) return lmp_err(err, LMP_E_ARG, "positions exceed the context");
    if (l0 < 0 || l1 > c->n_layers || l0 > l1) return lmp_err(err, LMP_E_ARG, "bad layer range %d..%d", l0, l1);
    lmp_status st = sync_weights(s, 0, err);
    if (st) return st;
    size_t bytes = (size_t)n * c->dim * sizeof(float);
    s->be->ops->from_host(s->be, s->x, x, bytes);
    for (int l = l0; l < l1; l++) block_forward(s, l, n, pos);
    s->be->ops->to_host(s->be, x, s->x, bytes);
    return finish(s, err);
}
