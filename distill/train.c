// train.c - the training engine (see train.h): parameter layout, forward with saved activations,
// backward, loss, gradient norm, AdamW, the memory account, and gradients for pruning scores.
//
// Per block (as runtime/forward.c computes it): RMSNorm -> q, k, v -> RoPE -> causal GQA attention ->
// output projection + residual -> RMSNorm -> SwiGLU FFN + residual; then the final RMSNorm and the
// classifier (tied to the embedding or not). The backward pass walks the same graph in reverse with one
// running residual gradient. Activations are kept per layer (docs/training.md lists them with their sizes).
#include "distill/train.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "format/qtypes.h"
#include "runtime/refmath.h"

// A layer's parameter offsets, shapes and saved activations.
typedef struct tlayer {
    int nh, nkv, ffn;
    size_t attn_norm, ffn_norm;   // offsets into the flat buffers
    size_t mat[LMP_MAT_COUNT];    // offsets of the seven matrices, in runtime/model.h's lmp_mats order
    float *xn1;    // (N, dim) attn_norm output
    float *rstd1;  // (N)
    float *q;      // (N, nh * hd) after RoPE
    float *k;      // (N, nkv * hd) after RoPE
    float *v;      // (N, nkv * hd)
    float *P;      // (B, nh, T, T) attention probabilities, or NULL when recomputed in backward
    float *lse;    // (B, nh, T) their rows' log-sum-exp, when recomputed
    float *att;    // (N, nh * hd) attention output
    float *x_mid;  // (N, dim) residual after the attention block
    float *xn2;    // (N, dim) ffn_norm output
    float *rstd2;  // (N)
    float *g;      // (N, ffn) gate
    float *u;      // (N, ffn) up
    float *h;      // (N, ffn) silu(g) * u
} tlayer;

struct lmp_trainer {
    lmp_train_backend *be;
    const lmp_train_ops *op;
    int dim, n_layers, hd, vocab, tied, rope_dim, neox;
    float eps;
    int B, T;
    int recompute;  // attention probabilities rebuilt in backward (tlayer.lse) instead of kept (tlayer.P)
    int max_nh, max_nkv, max_ffn;
    int n_tensors;
    lmp_train_tensor *tensors;  // (n_tensors), in lmp_model_weight_at order
    size_t n_params;
    size_t tok_embd, output_norm, output;  // offsets (output == tok_embd when tied)
    float *params, *grads, *m, *v;         // (n_params) each
    tlayer *layers;                        // (n_layers)
    float **res;       // (n_layers + 1) x (N, dim): residual stream entering layer l; res[n_layers] final
    float *xnf;        // (N, dim) output_norm output
    float *rstdf;      // (N)
    float *logits;     // (N, vocab), then its gradient
    float *ce, *kd;    // (N) per-token losses
    float *teacher;    // (N, vocab) teacher logits, device backends only
    int32_t *tok;      // (N) input tokens, backend memory
    int32_t *lab;      // (N) labels
    float *cos_tab, *sin_tab;  // (T, rope_dim / 2)
    // backward scratch, sized for the widest layer
    float *dres;  // (N, dim)
    float *dxn;   // (N, dim)
    float *dq;    // (N, max_nh * hd)
    float *dk;    // (N, max_nkv * hd)
    float *dv;    // (N, max_nkv * hd)
    float *datt;  // (N, max_nh * hd)
    float *dg;    // (N, max_ffn)
    float *du;    // (N, max_ffn)
    float *dh;    // (N, max_ffn)
    float *host_ce, *host_kd;  // (N) host copies of the per-token losses
    int32_t *host_in, *host_lab;  // (N) host staging of inputs and labels
    int64_t step;
    lmp_train_memory mem;  // bytes allocated, by part
    int alloc_failed;
};

// ---- allocation ----

static float *balloc(lmp_trainer *t, size_t n_floats, uint64_t *account) {
    size_t bytes = n_floats * sizeof(float);
    void *p = t->op->alloc(t->be, bytes);
    if (!p) t->alloc_failed = 1;
    else *account += bytes;
    return p;
}

static void bfree(lmp_trainer *t, void *p) {
    if (p) t->op->free(t->be, p);
}

// ---- parameter layout ----

static size_t add_tensor(lmp_trainer *t, const char *name, int ndim, int64_t rows, int64_t cols) {
    lmp_train_tensor *e = &t->tensors[t->n_tensors++];
    snprintf(e->name, sizeof e->name, "%s", name);
    e->ndim = ndim;
    e->shape[0] = rows;
    e->shape[1] = ndim == 2 ? cols : 0;
    e->count = (size_t)rows * (size_t)(ndim == 2 ? cols : 1);
    e->offset = t->n_params;
    e->decay = ndim == 2;
    t->n_params += e->count;
    return e->offset;
}

// The tensor layout and shapes of m in the runtime's order (lmp_model_weight_at): token_embd, output (untied),
// output_norm, then per layer attn_norm, ffn_norm and the seven matrices of lmp_mats, named as in the file.
static void layout(lmp_trainer *t, const lmp_model *m) {
    const int dim = t->dim;
    char name[64];
    t->tok_embd = add_tensor(t, "token_embd.weight", 2, t->vocab, dim);
    if (!t->tied) t->output = add_tensor(t, "output.weight", 2, t->vocab, dim);
    else t->output = t->tok_embd;
    t->output_norm = add_tensor(t, "output_norm.weight", 1, dim, 0);
    for (int l = 0; l < t->n_layers; l++) {
        tlayer *L = &t->layers[l];
        const lmp_layer *ml = &m->layers[l];
        L->nh = ml->n_heads;
        L->nkv = ml->n_kv_heads;
        L->ffn = ml->ffn;
        snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
        L->attn_norm = add_tensor(t, name, 1, dim, 0);
        snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", l);
        L->ffn_norm = add_tensor(t, name, 1, dim, 0);
        for (int k = 0; k < LMP_MAT_COUNT; k++) {
            const lmp_weight *w = lmp_layer_mat_c(ml, k);
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, lmp_mats[k].name);
            L->mat[k] = add_tensor(t, name, 2, w->rows, w->cols);
        }
        if (L->nh > t->max_nh) t->max_nh = L->nh;
        if (L->nkv > t->max_nkv) t->max_nkv = L->nkv;
        if (L->ffn > t->max_ffn) t->max_ffn = L->ffn;
    }
}

// Copies a matrix of any storable dtype into dst as float32 (rows of the traits table's to_float).
static void weight_to_f32(const lmp_weight *w, float *dst) {
    const lmp_type_traits *tr = lmp_type_get(w->type);
    for (int64_t r = 0; r < w->rows; r++)
        tr->to_float((const char *)w->data + (size_t)r * w->row_bytes, dst + (size_t)r * w->cols, w->cols);
}

// Every tensor of the model must be f32 unless conversion is allowed; names the first that is not.
static lmp_status check_dtypes(const lmp_model *m, int allow_convert, lmp_error *err) {
    if (allow_convert) return LMP_OK;
    for (size_t i = 0; i < lmp_file_n_tensors(m->file); i++) {
        const lmp_tensor *te = lmp_file_tensor(m->file, i);
        if (te->type != LMP_DTYPE_F32)
            return lmp_err(err, LMP_E_UNSUPPORTED, "tensor '%s' is %s: training needs f32 weights", te->name,
                           lmp_type_name(te->type));
    }
    return LMP_OK;
}

// Host values of every parameter of m in the trainer's layout.
static void params_from_model(const lmp_trainer *t, const lmp_model *m, float *p) {
    weight_to_f32(&m->tok_embd, p + t->tok_embd);
    if (!t->tied) weight_to_f32(&m->output, p + t->output);
    weight_to_f32(&m->output_norm, p + t->output_norm);
    for (int l = 0; l < t->n_layers; l++) {
        const tlayer *L = &t->layers[l];
        const lmp_layer *ml = &m->layers[l];
        weight_to_f32(&ml->attn_norm, p + L->attn_norm);
        weight_to_f32(&ml->ffn_norm, p + L->ffn_norm);
        for (int k = 0; k < LMP_MAT_COUNT; k++) weight_to_f32(lmp_layer_mat_c(ml, k), p + L->mat[k]);
    }
}

// ---- memory account (docs/training.md) ----

int lmp_train_attn_recomputes(int seq, int attn_recompute) {
    return attn_recompute > 0 || (attn_recompute == 0 && seq > LMP_TRAIN_RECOMPUTE_SEQ);
}

// Floats of activations kept per token for one layer (the attention probabilities: nh T, or nh row
// log-sum-exps when recomputed).
static uint64_t layer_act_per_token(int dim, int hd, int nh, int nkv, int ffn, int T, int recompute) {
    return (uint64_t)3 * dim + 2 + 2ull * nh * hd + 2ull * nkv * hd + (uint64_t)nh * (recompute ? 1 : T) + 3ull * ffn;
}

lmp_train_memory lmp_train_memory_estimate(const lmp_model *m, int B, int T, int attn_recompute, int device_teacher) {
    const int rc = lmp_train_attn_recomputes(T, attn_recompute);
    lmp_train_memory r = {0};
    const uint64_t N = (uint64_t)B * T, dim = (uint64_t)m->cfg.dim, hd = (uint64_t)m->cfg.head_dim;
    const uint64_t V = (uint64_t)m->cfg.vocab;
    uint64_t np = V * dim + dim + (m->tied ? 0 : V * dim);
    uint64_t act = 0;
    int max_nh = 0, max_nkv = 0, max_ffn = 0;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const lmp_layer *L = &m->layers[l];
        np += 2 * dim + 2 * (uint64_t)L->n_heads * hd * dim + 2 * (uint64_t)L->n_kv_heads * hd * dim +
              3 * (uint64_t)L->ffn * dim;
        act += N * (layer_act_per_token((int)dim, (int)hd, L->n_heads, L->n_kv_heads, L->ffn, T, rc) + dim);  // + res[l]
        max_nh = L->n_heads > max_nh ? L->n_heads : max_nh;
        max_nkv = L->n_kv_heads > max_nkv ? L->n_kv_heads : max_nkv;
        max_ffn = L->ffn > max_ffn ? L->ffn : max_ffn;
    }
    act += N * (2 * dim + 1) + (uint64_t)T * (uint64_t)m->cfg.rope_dim;  // res[L], xnf, rstdf; RoPE tables
    r.params = r.grads = np * 4;
    r.adam = 2 * np * 4;
    r.activations = act * 4 + 2 * N * sizeof(int32_t);  // + input tokens and labels
    r.logits = (N * V + 2 * N) * 4;
    r.teacher = device_teacher ? N * V * 4 : 0;
    r.backward = N * (2 * dim + 2 * (uint64_t)max_nh * hd + 2 * (uint64_t)max_nkv * hd + 3 * (uint64_t)max_ffn) * 4;
    r.total = r.params + r.grads + r.adam + r.activations + r.logits + r.teacher + r.backward;
    return r;
}

lmp_train_memory lmp_trainer_memory(const lmp_trainer *t) { return t->mem; }

// ---- construction ----

lmp_status lmp_trainer_new(const lmp_model *m, const lmp_trainer_opts *opts, lmp_trainer **out, lmp_error *err) {
    *out = NULL;
    const lmp_config *c = &m->cfg;
    const int B = opts ? opts->batch : 1, T = opts ? opts->seq : c->ctx;
    if (B < 1 || B > 65536) return lmp_err(err, LMP_E_ARG, "batch %d is out of range (1..65536)", B);
    if (T < 2 || T > c->ctx)
        return lmp_err(err, LMP_E_ARG, "sequence length %d is out of range (2..%d, the model's context)", T, c->ctx);
    if ((uint64_t)B * T > (1u << 30)) return lmp_err(err, LMP_E_ARG, "batch x sequence %d x %d is too large", B, T);
    lmp_status st = check_dtypes(m, opts && opts->allow_convert, err);
    if (st) return st;
    lmp_trainer *t = lmp_calloc(1, sizeof *t);
    if (!t) return lmp_err(err, LMP_E_NOMEM, "out of memory");
    t->dim = c->dim;
    t->n_layers = c->n_layers;
    t->hd = c->head_dim;
    t->vocab = c->vocab;
    t->tied = m->tied;
    t->rope_dim = c->rope_dim;
    t->neox = c->rope_neox;
    t->eps = c->rms_eps;
    t->B = B;
    t->T = T;
    t->recompute = lmp_train_attn_recomputes(T, opts ? opts->attn_recompute : 0);
    t->layers = lmp_calloc((size_t)c->n_layers, sizeof(tlayer));
    t->tensors = lmp_calloc((size_t)c->n_layers * (2 + LMP_MAT_COUNT) + 3, sizeof(lmp_train_tensor));
    t->res = lmp_calloc((size_t)c->n_layers + 1, sizeof(float *));
    if (!t->layers || !t->tensors || !t->res) {
        lmp_trainer_free(t);
        return lmp_err(err, LMP_E_NOMEM, "out of memory");
    }
    if ((st = lmp_train_cpu_new(opts ? opts->pool : NULL, opts ? opts->n_threads : 0, &t->be, err))) {
        lmp_trainer_free(t);
        return st;
    }
    t->op = t->be->ops;
    layout(t, m);

    const size_t N = (size_t)B * T, dim = (size_t)c->dim, hd = (size_t)c->head_dim, V = (size_t)c->vocab;
    lmp_train_memory *a = &t->mem;
    t->params = balloc(t, t->n_params, &a->params);
    t->grads = balloc(t, t->n_params, &a->grads);
    if (!(opts && opts->grads_only)) {
        t->m = balloc(t, t->n_params, &a->adam);
        t->v = balloc(t, t->n_params, &a->adam);
    }
    for (int l = 0; l <= c->n_layers && !t->alloc_failed; l++) t->res[l] = balloc(t, N * dim, &a->activations);
    for (int l = 0; l < c->n_layers && !t->alloc_failed; l++) {
        tlayer *L = &t->layers[l];
        L->xn1 = balloc(t, N * dim, &a->activations);
        L->rstd1 = balloc(t, N, &a->activations);
        L->q = balloc(t, N * L->nh * hd, &a->activations);
        L->k = balloc(t, N * L->nkv * hd, &a->activations);
        L->v = balloc(t, N * L->nkv * hd, &a->activations);
        if (t->recompute) L->lse = balloc(t, (size_t)B * L->nh * T, &a->activations);
        else L->P = balloc(t, (size_t)B * L->nh * T * T, &a->activations);
        L->att = balloc(t, N * L->nh * hd, &a->activations);
        L->x_mid = balloc(t, N * dim, &a->activations);
        L->xn2 = balloc(t, N * dim, &a->activations);
        L->rstd2 = balloc(t, N, &a->activations);
        L->g = balloc(t, N * L->ffn, &a->activations);
        L->u = balloc(t, N * L->ffn, &a->activations);
        L->h = balloc(t, N * L->ffn, &a->activations);
    }
    t->xnf = balloc(t, N * dim, &a->activations);
    t->rstdf = balloc(t, N, &a->activations);
    t->cos_tab = balloc(t, (size_t)T * (c->rope_dim / 2), &a->activations);
    t->sin_tab = balloc(t, (size_t)T * (c->rope_dim / 2), &a->activations);
    t->tok = (int32_t *)balloc(t, N, &a->activations);  // int32 and float are both 4 bytes
    t->lab = (int32_t *)balloc(t, N, &a->activations);
    t->logits = balloc(t, N * V, &a->logits);
    t->ce = balloc(t, N, &a->logits);
    t->kd = balloc(t, N, &a->logits);
    if (!t->op->host_memory) t->teacher = balloc(t, N * V, &a->teacher);
    t->dres = balloc(t, N * dim, &a->backward);
    t->dxn = balloc(t, N * dim, &a->backward);
    t->dq = balloc(t, N * t->max_nh * hd, &a->backward);
    t->datt = balloc(t, N * t->max_nh * hd, &a->backward);
    t->dk = balloc(t, N * t->max_nkv * hd, &a->backward);
    t->dv = balloc(t, N * t->max_nkv * hd, &a->backward);
    t->dg = balloc(t, N * t->max_ffn, &a->backward);
    t->du = balloc(t, N * t->max_ffn, &a->backward);
    t->dh = balloc(t, N * t->max_ffn, &a->backward);
    a->total = a->params + a->grads + a->adam + a->activations + a->logits + a->teacher + a->backward;
    t->host_ce = lmp_malloc(N * sizeof(float));
    t->host_kd = lmp_malloc(N * sizeof(float));
    t->host_in = lmp_malloc(N * sizeof(int32_t));
    t->host_lab = lmp_malloc(N * sizeof(int32_t));
    float *hp = lmp_malloc(t->n_params * sizeof(float));
    float *hc = lmp_malloc((size_t)T * (c->rope_dim / 2) * sizeof(float) + 1);
    float *hs = lmp_malloc((size_t)T * (c->rope_dim / 2) * sizeof(float) + 1);
    if (t->alloc_failed || !t->host_ce || !t->host_kd || !t->host_in || !t->host_lab || !hp || !hc || !hs) {
        lmp_free(hp), lmp_free(hc), lmp_free(hs);
        uint64_t need = lmp_train_memory_estimate(m, B, T, t->recompute ? 1 : -1, !t->op->host_memory).total;
        lmp_trainer_free(t);
        return lmp_err(err, LMP_E_NOMEM, "out of memory: training with batch %d x sequence %d needs %.1f MB", B, T,
                       need / 1e6);
    }
    params_from_model(t, m, hp);
    t->op->from_host(t->be, t->params, hp, t->n_params * sizeof(float));
    lmp_ref_rope_tables(hc, hs, T, c->rope_dim, c->rope_theta);  // the inference session's angles
    t->op->from_host(t->be, t->cos_tab, hc, (size_t)T * (c->rope_dim / 2) * sizeof(float));
    t->op->from_host(t->be, t->sin_tab, hs, (size_t)T * (c->rope_dim / 2) * sizeof(float));
    lmp_free(hp), lmp_free(hc), lmp_free(hs);
    t->op->zero(t->be, t->grads, t->n_params);
    if (t->m) t->op->zero(t->be, t->m, t->n_params);
    if (t->v) t->op->zero(t->be, t->v, t->n_params);
    *out = t;
    return LMP_OK;
}

void lmp_trainer_free(lmp_trainer *t) {
    if (!t) return;
    if (t->be) {
        bfree(t, t->params), bfree(t, t->grads), bfree(t, t->m), bfree(t, t->v);
        for (int l = 0; t->res && l <= t->n_layers; l++) bfree(t, t->res[l]);
        for (int l = 0; t->layers && l < t->n_layers; l++) {
            tlayer *L = &t->layers[l];
            void *bufs[] = {L->xn1, L->rstd1, L->q, L->k, L->v, L->P, L->lse, L->att, L->x_mid, L->xn2, L->rstd2, L->g, L->u,
                            L->h};
            for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) bfree(t, bufs[i]);
        }
        void *bufs[] = {t->xnf, t->rstdf, t->cos_tab, t->sin_tab, t->tok, t->lab, t->logits, t->ce, t->kd,
                        t->teacher, t->dres, t->dxn, t->dq, t->datt, t->dk, t->dv, t->dg, t->du, t->dh};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) bfree(t, bufs[i]);
        lmp_train_backend_free(t->be);
    }
    lmp_free(t->host_ce);
    lmp_free(t->host_kd);
    lmp_free(t->host_in);
    lmp_free(t->host_lab);
    lmp_free(t->res);
    lmp_free(t->layers);
    lmp_free(t->tensors);
    lmp_free(t);
}

// ---- accessors ----

int lmp_trainer_n_tensors(const lmp_trainer *t) { return t->n_tensors; }
const lmp_train_tensor *lmp_trainer_tensor(const lmp_trainer *t, int i) {
    return i >= 0 && i < t->n_tensors ? &t->tensors[i] : NULL;
}
const lmp_train_tensor *lmp_trainer_tensor_find(const lmp_trainer *t, const char *name) {
    for (int i = 0; i < t->n_tensors; i++)
        if (!strcmp(t->tensors[i].name, name)) return &t->tensors[i];
    return NULL;
}
size_t lmp_trainer_n_params(const lmp_trainer *t) { return t->n_params; }
float *lmp_trainer_params(lmp_trainer *t) { return t->params; }
float *lmp_trainer_grads(lmp_trainer *t) { return t->grads; }
float *lmp_trainer_adam_m(lmp_trainer *t) { return t->m; }
float *lmp_trainer_adam_v(lmp_trainer *t) { return t->v; }
int lmp_trainer_batch(const lmp_trainer *t) { return t->B; }
int lmp_trainer_seq(const lmp_trainer *t) { return t->T; }
lmp_train_backend *lmp_trainer_backend(lmp_trainer *t) { return t->be; }
int64_t lmp_trainer_step(const lmp_trainer *t) { return t->step; }
void lmp_trainer_set_step(lmp_trainer *t, int64_t step) { t->step = step; }

static float *buf_of(lmp_trainer *t, int which) {
    return which == 0 ? t->params : which == 1 ? t->grads : which == 2 ? t->m : t->v;
}
void lmp_trainer_copy_out(lmp_trainer *t, int which, float *host) {
    if (!buf_of(t, which)) return;
    t->op->to_host(t->be, host, buf_of(t, which), t->n_params * sizeof(float));
}
void lmp_trainer_copy_in(lmp_trainer *t, int which, const float *host) {
    if (!buf_of(t, which)) return;
    t->op->from_host(t->be, buf_of(t, which), host, t->n_params * sizeof(float));
}

// ---- forward ----

static lmp_status check_tokens(const lmp_trainer *t, const int32_t *tok, size_t n, lmp_error *err) {
    for (size_t i = 0; i < n; i++)
        if (tok[i] < 0 || tok[i] >= t->vocab)
            return lmp_err(err, LMP_E_ARG, "token id %d out of range (vocabulary %d)", tok[i], t->vocab);
    return LMP_OK;
}

// Forward of nb <= B sequences whose input tokens are already in t->tok; logits in t->logits.
static void forward(lmp_trainer *t, int nb) {
    const lmp_train_ops *op = t->op;
    lmp_train_backend *be = t->be;
    const int N = nb * t->T, dim = t->dim, hd = t->hd;
    const float *P = t->params;
    const lmp_train_rope rope = {t->cos_tab, t->sin_tab, t->rope_dim, t->neox};
    op->embed_fwd(be, t->res[0], P + t->tok_embd, t->tok, N, dim);
    for (int l = 0; l < t->n_layers; l++) {
        tlayer *L = &t->layers[l];
        const int qd = L->nh * hd, kd = L->nkv * hd;
        const lmp_attn_dims ad = {nb, t->T, L->nh, L->nkv, hd};
        op->rmsnorm_fwd(be, L->xn1, L->rstd1, t->res[l], P + L->attn_norm, N, dim, t->eps);
        op->matmul_fwd(be, L->q, L->xn1, P + L->mat[LMP_MAT_Q], N, dim, qd);
        op->matmul_fwd(be, L->k, L->xn1, P + L->mat[LMP_MAT_K], N, dim, kd);
        op->matmul_fwd(be, L->v, L->xn1, P + L->mat[LMP_MAT_V], N, dim, kd);
        op->rope_fwd(be, L->q, N, t->T, L->nh, hd, &rope);
        op->rope_fwd(be, L->k, N, t->T, L->nkv, hd, &rope);
        op->attn_fwd(be, L->att, L->P, L->lse, L->q, L->k, L->v, &ad);
        op->matmul_fwd(be, L->x_mid, L->att, P + L->mat[LMP_MAT_O], N, qd, dim);
        op->add(be, L->x_mid, t->res[l], (size_t)N * dim);
        op->rmsnorm_fwd(be, L->xn2, L->rstd2, L->x_mid, P + L->ffn_norm, N, dim, t->eps);
        op->matmul_fwd(be, L->g, L->xn2, P + L->mat[LMP_MAT_GATE], N, dim, L->ffn);
        op->matmul_fwd(be, L->u, L->xn2, P + L->mat[LMP_MAT_UP], N, dim, L->ffn);
        op->swiglu_fwd(be, L->h, L->g, L->u, (size_t)N * L->ffn);
        op->matmul_fwd(be, t->res[l + 1], L->h, P + L->mat[LMP_MAT_DOWN], N, L->ffn, dim);
        op->add(be, t->res[l + 1], L->x_mid, (size_t)N * dim);
    }
    op->rmsnorm_fwd(be, t->xnf, t->rstdf, t->res[t->n_layers], P + t->output_norm, N, dim, t->eps);
    op->matmul_fwd(be, t->logits, t->xnf, P + t->output, N, dim, t->vocab);
}

lmp_status lmp_trainer_forward(lmp_trainer *t, const int32_t *tokens, float *logits, lmp_error *err) {
    const size_t N = (size_t)t->B * t->T;
    lmp_status st = check_tokens(t, tokens, N, err);
    if (st) return st;
    t->op->from_host(t->be, t->tok, tokens, N * sizeof(int32_t));
    forward(t, t->B);
    t->op->to_host(t->be, logits, t->logits, N * t->vocab * sizeof(float));
    return t->op->synchronize(t->be, err);
}

// ---- backward ----

static void backward(lmp_trainer *t, int nb) {
    const lmp_train_ops *op = t->op;
    lmp_train_backend *be = t->be;
    const int N = nb * t->T, dim = t->dim, hd = t->hd;
    const float *P = t->params;
    float *G = t->grads;
    const lmp_train_rope rope = {t->cos_tab, t->sin_tab, t->rope_dim, t->neox};
    const size_t nd = (size_t)N * dim;
    // classifier and final norm (t->logits holds the gradient of the logits)
    op->zero(be, t->dxn, nd);
    op->matmul_bwd(be, t->dxn, G + t->output, t->logits, t->xnf, P + t->output, N, dim, t->vocab);
    op->zero(be, t->dres, nd);
    op->rmsnorm_bwd(be, t->dres, G + t->output_norm, t->dxn, t->res[t->n_layers], P + t->output_norm, t->rstdf, N,
                    dim);
    for (int l = t->n_layers - 1; l >= 0; l--) {
        tlayer *L = &t->layers[l];
        const int qd = L->nh * hd, kd = L->nkv * hd;
        const size_t nf = (size_t)N * L->ffn;
        const lmp_attn_dims ad = {nb, t->T, L->nh, L->nkv, hd};
        // FFN: res[l+1] = x_mid + down(silu(gate(xn2)) * up(xn2)), xn2 = norm(x_mid)
        op->zero(be, t->dh, nf);
        op->matmul_bwd(be, t->dh, G + L->mat[LMP_MAT_DOWN], t->dres, L->h, P + L->mat[LMP_MAT_DOWN], N, L->ffn, dim);
        op->zero(be, t->dg, nf);
        op->zero(be, t->du, nf);
        op->swiglu_bwd(be, t->dg, t->du, t->dh, L->g, L->u, nf);
        op->zero(be, t->dxn, nd);
        op->matmul_bwd(be, t->dxn, G + L->mat[LMP_MAT_GATE], t->dg, L->xn2, P + L->mat[LMP_MAT_GATE], N, dim, L->ffn);
        op->matmul_bwd(be, t->dxn, G + L->mat[LMP_MAT_UP], t->du, L->xn2, P + L->mat[LMP_MAT_UP], N, dim, L->ffn);
        op->rmsnorm_bwd(be, t->dres, G + L->ffn_norm, t->dxn, L->x_mid, P + L->ffn_norm, L->rstd2, N, dim);
        // attention: x_mid = res[l] + wo(attn(rope(wq xn1), rope(wk xn1), wv xn1)), xn1 = norm(res[l])
        op->zero(be, t->datt, (size_t)N * qd);
        op->matmul_bwd(be, t->datt, G + L->mat[LMP_MAT_O], t->dres, L->att, P + L->mat[LMP_MAT_O], N, qd, dim);
        op->zero(be, t->dq, (size_t)N * qd);
        op->zero(be, t->dk, (size_t)N * kd);
        op->zero(be, t->dv, (size_t)N * kd);
        op->attn_bwd(be, t->dq, t->dk, t->dv, t->datt, L->q, L->k, L->v, L->P, L->lse, &ad);
        op->rope_bwd(be, t->dq, N, t->T, L->nh, hd, &rope);
        op->rope_bwd(be, t->dk, N, t->T, L->nkv, hd, &rope);
        op->zero(be, t->dxn, nd);
        op->matmul_bwd(be, t->dxn, G + L->mat[LMP_MAT_Q], t->dq, L->xn1, P + L->mat[LMP_MAT_Q], N, dim, qd);
        op->matmul_bwd(be, t->dxn, G + L->mat[LMP_MAT_K], t->dk, L->xn1, P + L->mat[LMP_MAT_K], N, dim, kd);
        op->matmul_bwd(be, t->dxn, G + L->mat[LMP_MAT_V], t->dv, L->xn1, P + L->mat[LMP_MAT_V], N, dim, kd);
        op->rmsnorm_bwd(be, t->dres, G + L->attn_norm, t->dxn, t->res[l], P + L->attn_norm, L->rstd1, N, dim);
    }
    op->embed_bwd(be, G + t->tok_embd, t->dres, t->tok, N, dim);
}

// Forward, loss and backward of nb sequences of tokens (nb, T + 1).
static lmp_status grad_batch(lmp_trainer *t, int nb, const int32_t *tokens, const float *teacher,
                             const lmp_loss_params *lp, float grad_scale, lmp_train_loss *out, lmp_error *err) {
    const int T = t->T, N = nb * T;
    if (lp->alpha < 0 || lp->alpha > 1 || !(lp->temp > 0))
        return lmp_err(err, LMP_E_ARG, "loss alpha %g / temperature %g out of range", lp->alpha, lp->temp);
    if (lp->alpha > 0 && !teacher) return lmp_err(err, LMP_E_ARG, "alpha > 0 needs teacher logits");
    lmp_status st = check_tokens(t, tokens, (size_t)nb * (T + 1), err);
    if (st) return st;
    // inputs and labels: rows of T + 1 tokens
    int32_t *in = t->host_in, *lab = t->host_lab;
    for (int b = 0; b < nb; b++) {
        memcpy(in + (size_t)b * T, tokens + (size_t)b * (T + 1), (size_t)T * sizeof(int32_t));
        memcpy(lab + (size_t)b * T, tokens + (size_t)b * (T + 1) + 1, (size_t)T * sizeof(int32_t));
    }
    t->op->from_host(t->be, t->tok, in, (size_t)N * sizeof(int32_t));
    t->op->from_host(t->be, t->lab, lab, (size_t)N * sizeof(int32_t));
    const float *tdev = NULL;
    if (lp->alpha > 0) {
        if (t->op->host_memory) {
            tdev = teacher;
        } else {
            t->op->from_host(t->be, t->teacher, teacher, (size_t)N * t->vocab * sizeof(float));
            tdev = t->teacher;
        }
    }
    forward(t, nb);
    t->op->loss_fwd_bwd(t->be, t->logits, t->ce, t->kd, t->lab, tdev, N, t->vocab, lp, grad_scale / (float)N);
    backward(t, nb);
    t->op->to_host(t->be, t->host_ce, t->ce, (size_t)N * sizeof(float));
    t->op->to_host(t->be, t->host_kd, t->kd, (size_t)N * sizeof(float));
    if ((st = t->op->synchronize(t->be, err))) return st;
    double ce = 0, kd = 0;
    for (int i = 0; i < N; i++) ce += t->host_ce[i], kd += t->host_kd[i];
    if (out) {
        out->ce = ce / N;
        out->kd = kd / N;
        out->loss = lp->alpha * out->kd + (1.0 - lp->alpha) * out->ce;
    }
    return LMP_OK;
}

lmp_status lmp_trainer_grad(lmp_trainer *t, const int32_t *tokens, const float *teacher, const lmp_loss_params *loss,
                            float grad_scale, lmp_train_loss *out, lmp_error *err) {
    return grad_batch(t, t->B, tokens, teacher, loss, grad_scale, out, err);
}

void lmp_trainer_zero_grad(lmp_trainer *t) { t->op->zero(t->be, t->grads, t->n_params); }

double lmp_trainer_grad_norm(lmp_trainer *t) {
    double s = 0;
    for (int i = 0; i < t->n_tensors; i++)
        s += t->op->sumsq(t->be, t->grads + t->tensors[i].offset, t->tensors[i].count);
    return sqrt(s);
}

float lmp_lr_schedule(int64_t s, int64_t total, int64_t warmup, float lr, float min_lr) {
    if (s <= warmup && warmup > 0) return lr * (float)s / (float)warmup;
    if (total <= warmup) return lr;
    double progress = (double)(s - warmup) / (double)(total - warmup);
    if (progress > 1) progress = 1;
    return (float)(min_lr + 0.5 * (lr - min_lr) * (1.0 + cos(3.14159265358979323846 * progress)));
}

void lmp_trainer_adamw(lmp_trainer *t, const lmp_adamw_params *p, float lr, double grad_norm) {
    if (!t->m) return;  // grads_only
    t->step++;
    float gscale = 1.0f;
    if (p->clip > 0) {
        double c = p->clip / (grad_norm + 1e-6);
        if (c < 1.0) gscale = (float)c;
    }
    const float bc1 = (float)(1.0 - pow(p->beta1, (double)t->step)), bc2 = (float)(1.0 - pow(p->beta2, (double)t->step));
    for (int i = 0; i < t->n_tensors; i++) {
        const lmp_train_tensor *e = &t->tensors[i];
        t->op->adamw(t->be, t->params + e->offset, t->grads + e->offset, t->m + e->offset, t->v + e->offset, e->count,
                     lr, p->beta1, p->beta2, p->eps, e->decay ? p->weight_decay : 0.0f, bc1, bc2, gscale);
    }
}

// ---- output ----

lmp_status lmp_trainer_to_builder(lmp_trainer *t, const lmp_meta *meta, lmp_builder **out, lmp_error *err) {
    *out = NULL;
    if (!t->op->host_memory) return lmp_err(err, LMP_E_UNSUPPORTED, "writing weights needs a host-memory backend");
    lmp_builder *b = lmp_builder_new();
    if (!b) return lmp_err(err, LMP_E_NOMEM, "out of memory");
    lmp_meta *bm = lmp_builder_meta(b);
    for (size_t i = 0; meta && i < lmp_meta_count(meta); i++) {
        const lmp_kv *kv = lmp_meta_at(meta, i);
        if (lmp_meta_set_kv(bm, kv->key, kv)) {
            lmp_builder_free(b);
            return lmp_err(err, LMP_E_NOMEM, "out of memory");
        }
    }
    for (int i = 0; i < t->n_tensors; i++) {
        const lmp_train_tensor *e = &t->tensors[i];
        lmp_status st = lmp_builder_add_ref(b, e->name, LMP_DTYPE_F32, e->ndim, e->shape, t->params + e->offset, err);
        if (st) {
            lmp_builder_free(b);
            return st;
        }
    }
    *out = b;
    return LMP_OK;
}

// ---- gradients for pruning scores ----

lmp_status lmp_train_grads_accumulate(const lmp_model *m, const int32_t *tokens, int n_seq, int seq_len, int batch,
                                      lmp_grad_mode mode, struct lmp_pool *pool, int n_threads,
                                      lmp_progress_fn progress, void *progress_user, lmp_grad_set *out,
                                      lmp_error *err) {
    memset(out, 0, sizeof *out);
    if (n_seq < 1) return lmp_err(err, LMP_E_ARG, "no sequences to score");
    if (seq_len < 2) return lmp_err(err, LMP_E_ARG, "sequences of %d tokens score nothing (need >= 2)", seq_len);
    if (mode != LMP_GRAD_SUM && mode != LMP_GRAD_ABS_WG) return lmp_err(err, LMP_E_ARG, "unknown gradient mode %d", mode);
    if (batch <= 0) batch = 8;
    if (batch > n_seq) batch = n_seq;
    lmp_trainer_opts o = {batch, seq_len - 1, n_threads, pool, 1, 0, 1};
    lmp_trainer *t = NULL;
    lmp_status st = lmp_trainer_new(m, &o, &t, err);
    if (st) return st;
    const size_t np = t->n_params;
    out->tensors = lmp_malloc((size_t)t->n_tensors * sizeof(lmp_train_tensor));
    out->data = lmp_calloc(np, sizeof(float));
    // ABS_WG reads weights and gradients on the host: in place on a host-memory backend, else through copies.
    const int copies = mode == LMP_GRAD_ABS_WG && !t->op->host_memory;
    float *w = copies ? lmp_malloc(np * sizeof(float)) : NULL;
    float *g = copies ? lmp_malloc(np * sizeof(float)) : NULL;
    if (!out->tensors || !out->data || (copies && (!w || !g))) {
        st = lmp_err(err, LMP_E_NOMEM, "out of memory for %zu gradients", np);
        goto done;
    }
    memcpy(out->tensors, t->tensors, (size_t)t->n_tensors * sizeof(lmp_train_tensor));
    out->n_tensors = t->n_tensors;
    out->n_params = np;
    if (w) lmp_trainer_copy_out(t, 0, w);
    const float *wh = copies ? w : t->params, *gh = copies ? g : t->grads;
    lmp_trainer_zero_grad(t);
    const lmp_loss_params lp = {0.0f, 1.0f, LMP_KD_FKL};
    double ce_sum = 0;
    for (int s0 = 0; s0 < n_seq; s0 += batch) {
        const int nb = n_seq - s0 < batch ? n_seq - s0 : batch;
        lmp_train_loss l;
        if (mode == LMP_GRAD_ABS_WG) lmp_trainer_zero_grad(t);
        // SUM: the batch mean weighted by its share of the sequences gives the gradient of the overall mean
        const float scale = mode == LMP_GRAD_SUM ? (float)nb / (float)n_seq : 1.0f;
        if ((st = grad_batch(t, nb, tokens + (size_t)s0 * seq_len, NULL, &lp, scale, &l, err))) goto done;
        ce_sum += l.ce * nb;
        if (mode == LMP_GRAD_ABS_WG) {
            if (copies) lmp_trainer_copy_out(t, 1, g);
            for (size_t i = 0; i < np; i++) out->data[i] += fabsf(wh[i] * gh[i]);
        }
        if (progress) progress(progress_user, "gradients", s0 + nb, n_seq);
    }
    if (mode == LMP_GRAD_SUM) lmp_trainer_copy_out(t, 1, out->data);
    out->ce = ce_sum / n_seq;
    out->tokens = (int64_t)n_seq * (seq_len - 1);
done:
    lmp_free(w);
    lmp_free(g);
    lmp_trainer_free(t);
    if (st) lmp_grad_set_free(out);
    return st;
}

void lmp_grad_set_free(lmp_grad_set *g) {
    if (!g) return;
    lmp_free(g->tensors);
    lmp_free(g->data);
    memset(g, 0, sizeof *g);
}

const float *lmp_grad_set_find(const lmp_grad_set *g, const char *name, int64_t *rows, int64_t *cols) {
    for (int i = 0; i < g->n_tensors; i++)
        if (!strcmp(g->tensors[i].name, name)) {
            if (rows) *rows = g->tensors[i].shape[0];
            if (cols) *cols = g->tensors[i].ndim == 2 ? g->tensors[i].shape[1] : 1;
            return g->data + g->tensors[i].offset;
        }
    return NULL;
}
