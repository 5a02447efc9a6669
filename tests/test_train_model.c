// test_train_model.c - the training engine (distill/train.h) at model level:
//   - loss and the gradient of every parameter of two tiny random models (GQA, untied classifier, uneven
//     layers, interleaved RoPE; tied classifier, partial neox RoPE, reverse KL) against PyTorch autograd in
//     float64 (scripts/ref_train_torch.py wrote tests/fixtures/train/tiny_train.bin): <= 1e-4 relative;
//   - the losses of 10 AdamW steps (warmup + cosine schedule, clipping, decay on matrices) against the same
//     script, <= 1e-4 relative;
//   - the engine's forward against the inference runtime (lmp_session_eval) on the same weights;
//   - the gradient entry point for pruning scores (lmp_train_grads_accumulate) against the trainer;
//   - the memory account: what the trainer allocates equals the documented estimate.
#include "distill/train.h"
#include "format/synth.h"
#include "runtime/session.h"
#include "tests/test_util.h"

#define FIXTURE "tests/fixtures/train/tiny_train.bin"
#define REL_TOL 1e-4

// ---- fixture reader: named arrays ----
typedef struct {
    char name[128];
    int dtype, ndim;
    uint64_t shape[4];
    size_t count;
    const void *data;
} farr;

static farr arrs[512];
static int n_arrs;
static unsigned char *fix_buf;

static int fixture_load(void) {
    size_t size;
    fix_buf = test_read_file(FIXTURE, &size);
    if (!fix_buf) return -1;
    size_t o = 0;
    while (o < size && n_arrs < 512) {
        farr *a = &arrs[n_arrs++];
        uint32_t nl, dt, nd;
        memcpy(&nl, fix_buf + o, 4), o += 4;
        if (nl >= sizeof a->name) return -1;
        memcpy(a->name, fix_buf + o, nl), a->name[nl] = 0, o += nl;
        memcpy(&dt, fix_buf + o, 4), memcpy(&nd, fix_buf + o + 4, 4), o += 8;
        if (nd > 4) return -1;
        a->dtype = (int)dt, a->ndim = (int)nd, a->count = 1;
        for (uint32_t i = 0; i < nd; i++) memcpy(&a->shape[i], fix_buf + o, 8), o += 8, a->count *= a->shape[i];
        size_t bytes = a->count * (dt == 2 ? 8 : 4);
        if (o + bytes > size) return -1;
        void *copy = malloc(bytes ? bytes : 1);  // aligned (the file packs arrays at any offset)
        memcpy(copy, fix_buf + o, bytes);
        a->data = copy;
        o += bytes;
    }
    return 0;
}

static const farr *fget(const char *key, const char *name) {
    char full[160];
    snprintf(full, sizeof full, "%s.%s", key, name);
    for (int i = 0; i < n_arrs; i++)
        if (!strcmp(arrs[i].name, full)) return &arrs[i];
    return NULL;
}
static const int32_t *fi32(const char *key, const char *name) {
    const farr *a = fget(key, name);
    return a ? a->data : NULL;
}
static const double *ff64(const char *key, const char *name) {
    const farr *a = fget(key, name);
    return a ? a->data : NULL;
}

typedef struct {
    const char *key;
    int dim, n_layers, hd, vocab, ctx, rope_dim, neox, tied, B, T, kd, steps, warmup;
    const int32_t *layers;  // (n_layers, 3)
    double eps, theta, alpha, temp, lr, min_lr, b1, b2, adam_eps, wd, clip;
} fcfg;

static int fixture_cfg(const char *key, fcfg *c) {
    const int32_t *v = fi32(key, "config");
    const double *h = ff64(key, "hyper");
    if (!v || !h) return -1;
    *c = (fcfg){key, v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12],
                fi32(key, "layers"), h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9], h[10]};
    return 0;
}

// The fixture's model as a runtime model (builder -> in-memory file -> lmp_model).
static lmp_model *fixture_model(const fcfg *c) {
    lmp_builder *b = lmp_builder_new();
    lmp_meta *m = lmp_builder_meta(b);
    lmp_meta_set_str(m, "general.architecture", "llama");
    lmp_meta_set_u32(m, "llama.context_length", (uint32_t)c->ctx);
    lmp_meta_set_u32(m, "llama.embedding_length", (uint32_t)c->dim);
    lmp_meta_set_u32(m, "llama.block_count", (uint32_t)c->n_layers);
    lmp_meta_set_u32(m, "llama.attention.head_dim", (uint32_t)c->hd);
    lmp_meta_set_u32(m, "llama.rope.dimension_count", (uint32_t)c->rope_dim);
    lmp_meta_set_str(m, "llama.rope.style", c->neox ? "neox" : "interleaved");
    lmp_meta_set_f32(m, "llama.attention.layer_norm_rms_epsilon", (float)c->eps);
    lmp_meta_set_f32(m, "llama.rope.freq_base", (float)c->theta);
    lmp_error err;
    char prefix[16];
    snprintf(prefix, sizeof prefix, "%s.w.", c->key);
    for (int i = 0; i < n_arrs; i++) {
        if (strncmp(arrs[i].name, prefix, strlen(prefix))) continue;
        int64_t shape[2] = {(int64_t)arrs[i].shape[0], arrs[i].ndim == 2 ? (int64_t)arrs[i].shape[1] : 0};
        if (lmp_builder_add_ref(b, arrs[i].name + strlen(prefix), LMP_DTYPE_F32, arrs[i].ndim, shape, arrs[i].data,
                                &err)) {
            fprintf(stderr, "fixture model: %s\n", err.msg);
            lmp_builder_free(b);
            return NULL;
        }
    }
    lmp_file *f = NULL;
    lmp_model *model = NULL;
    if (lmp_builder_to_file(b, &f, &err) || lmp_model_from_file(f, &model, &err))
        fprintf(stderr, "fixture model: %s\n", err.msg);
    lmp_builder_free(b);
    return model;
}

static double rel(double a, double b) { return fabs(a - b) / (fabs(b) > 1e-30 ? fabs(b) : 1e-30); }

static void fixture_grads(const char *key, int recompute) {
    fcfg c;
    if (fixture_cfg(key, &c)) {
        CHECKF(0, "fixture model %s missing", key);
        return;
    }
    lmp_model *m = fixture_model(&c);
    CHECK(m != NULL);
    if (!m) return;
    CHECK(m->tied == c.tied);
    lmp_trainer_opts o = {c.B, c.T, 2, NULL, 0, recompute};
    lmp_trainer *t = NULL;
    lmp_error err;
    CHECKF(lmp_trainer_new(m, &o, &t, &err) == LMP_OK, "%s", err.msg);
    if (!t) {
        lmp_model_free(m);
        return;
    }
    const lmp_loss_params lp = {(float)c.alpha, (float)c.temp, (lmp_kd_loss)c.kd};
    const float *teacher = fget(key, "teacher")->data;
    const int32_t *tokens = fi32(key, "tokens");
    lmp_train_loss l;
    lmp_trainer_zero_grad(t);
    CHECKF(lmp_trainer_grad(t, tokens, teacher, &lp, 1.0f, &l, &err) == LMP_OK, "%s", err.msg);
    const double *ref = ff64(key, "loss");
    CHECKF(rel(l.loss, ref[0]) < REL_TOL && rel(l.ce, ref[1]) < REL_TOL && rel(l.kd, ref[2]) < REL_TOL,
           "model %s loss %.8f ce %.8f kd %.8f, PyTorch %.8f %.8f %.8f", key, l.loss, l.ce, l.kd, ref[0], ref[1],
           ref[2]);
    // every parameter's gradient: max |ours - torch| / max |torch| per tensor
    double worst = 0;
    const char *worst_name = "";
    int checked = 0;
    const float *G = lmp_trainer_grads(t);
    for (int i = 0; i < lmp_trainer_n_tensors(t); i++) {
        const lmp_train_tensor *e = lmp_trainer_tensor(t, i);
        char name[128];
        snprintf(name, sizeof name, "g.%s", e->name);
        const farr *g = fget(key, name);
        CHECKF(g && g->count == e->count, "model %s: no reference gradient for %s", key, e->name);
        if (!g || g->count != e->count) continue;
        const float *gr = g->data;
        double err_max = 0, mag = 1e-30;
        for (size_t k = 0; k < e->count; k++) {
            double d = fabs((double)G[e->offset + k] - gr[k]);
            err_max = d > err_max ? d : err_max;
            mag = fabs(gr[k]) > mag ? fabs(gr[k]) : mag;
        }
        CHECKF(err_max / mag < REL_TOL, "model %s: gradient of %s off by %.3g relative", key, e->name, err_max / mag);
        if (err_max / mag > worst) worst = err_max / mag, worst_name = e->name;
        checked++;
    }
    CHECK(checked == lmp_trainer_n_tensors(t));
    fprintf(stderr, "model %s (attention %s): loss %.7f (PyTorch %.7f), %d gradients, worst %.2e (%s)\n", key,
            recompute > 0 ? "recomputed" : "kept", l.loss, ref[0], checked, worst, worst_name);
    // the memory the trainer allocated is the documented estimate
    lmp_train_memory est = lmp_train_memory_estimate(m, c.B, c.T, recompute, 0), got = lmp_trainer_memory(t);
    CHECKF(est.total == got.total && est.activations == got.activations && est.backward == got.backward &&
               est.params == got.params && est.logits == got.logits,
           "memory estimate %llu (act %llu bwd %llu) vs allocated %llu (act %llu bwd %llu)",
           (unsigned long long)est.total, (unsigned long long)est.activations, (unsigned long long)est.backward,
           (unsigned long long)got.total, (unsigned long long)got.activations, (unsigned long long)got.backward);
    lmp_trainer_free(t);
    lmp_model_free(m);
}

static void fixture_adamw(const char *key) {
    fcfg c;
    if (fixture_cfg(key, &c)) return;
    lmp_model *m = fixture_model(&c);
    if (!m) return;
    lmp_trainer_opts o = {c.B, c.T, 1, NULL, 0, 0};
    lmp_trainer *t = NULL;
    lmp_error err;
    CHECKF(lmp_trainer_new(m, &o, &t, &err) == LMP_OK, "%s", err.msg);
    if (!t) {
        lmp_model_free(m);
        return;
    }
    const lmp_loss_params lp = {(float)c.alpha, (float)c.temp, (lmp_kd_loss)c.kd};
    const lmp_adamw_params ap = {(float)c.b1, (float)c.b2, (float)c.adam_eps, (float)c.wd, (float)c.clip};
    const float *teacher = fget(key, "teacher")->data;
    const int32_t *tokens = fi32(key, "tokens");
    const double *steps = ff64(key, "steps"), *fin = ff64(key, "final");
    double worst = 0;
    for (int s = 1; s <= c.steps; s++) {
        lmp_train_loss l;
        lmp_trainer_zero_grad(t);
        CHECK(lmp_trainer_grad(t, tokens, teacher, &lp, 1.0f, &l, &err) == LMP_OK);
        const double *r = steps + 3 * (s - 1);
        double e = fmax(rel(l.loss, r[0]), fmax(rel(l.ce, r[1]), rel(l.kd, r[2])));
        worst = fmax(worst, e);
        CHECKF(e < REL_TOL, "model %s step %d: loss %.7f ce %.7f kd %.7f, PyTorch %.7f %.7f %.7f", key, s, l.loss, l.ce,
               l.kd, r[0], r[1], r[2]);
        double gn = lmp_trainer_grad_norm(t);
        lmp_trainer_adamw(t, &ap, lmp_lr_schedule(s, c.steps, c.warmup, (float)c.lr, (float)c.min_lr), gn);
    }
    CHECK(lmp_trainer_step(t) == c.steps);
    lmp_train_loss l;
    lmp_trainer_zero_grad(t);
    CHECK(lmp_trainer_grad(t, tokens, teacher, &lp, 1.0f, &l, &err) == LMP_OK);
    worst = fmax(worst, rel(l.loss, fin[0]));
    CHECKF(rel(l.loss, fin[0]) < REL_TOL, "model %s after %d steps: loss %.7f, PyTorch %.7f", key, c.steps, l.loss,
           fin[0]);
    fprintf(stderr, "model %s: %d AdamW steps, loss %.6f -> %.6f (PyTorch %.6f), worst step error %.2e\n", key, c.steps,
            steps[0], l.loss, fin[0], worst);
    lmp_trainer_free(t);
    lmp_model_free(m);
}

static void test_fixture_grads(void) {
    if (!n_arrs) SKIP("%s not readable", FIXTURE);
    fixture_grads("A", -1);
    fixture_grads("B", -1);
    fixture_grads("A", 1);  // attention probabilities recomputed in backward
    fixture_grads("B", 1);
}

static void test_fixture_adamw(void) {
    if (!n_arrs) SKIP("%s not readable", FIXTURE);
    fixture_adamw("A");
    fixture_adamw("B");
}

// The engine's logits against lmp_session_eval, sequence by sequence, on the same weights.
static void forward_vs_session(lmp_model *m, int B, int T, const char *what) {
    lmp_trainer_opts o = {B, T, 2, NULL, 0, 0};
    lmp_trainer *t = NULL;
    lmp_session *s = NULL;
    lmp_error err;
    CHECKF(lmp_trainer_new(m, &o, &t, &err) == LMP_OK, "%s", err.msg);
    lmp_session_opts so = {T, T, 2, "cpu"};
    CHECKF(lmp_session_new(m, &so, &s, &err) == LMP_OK, "%s", err.msg);
    if (!t || !s) {
        lmp_trainer_free(t);
        lmp_session_free(s);
        return;
    }
    const int V = m->cfg.vocab;
    int32_t *tok = malloc((size_t)B * T * sizeof(int32_t));
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)(test_rand_u64() % (uint64_t)V);
    float *a = malloc((size_t)B * T * V * sizeof(float)), *r = malloc((size_t)T * V * sizeof(float));
    CHECK(lmp_trainer_forward(t, tok, a, &err) == LMP_OK);
    double e = 0, mag = 0;
    for (int b = 0; b < B; b++) {
        CHECK(lmp_session_eval(s, tok + (size_t)b * T, T, 0, 0, r, &err) == LMP_OK);
        for (size_t i = 0; i < (size_t)T * V; i++) {
            e = fmax(e, fabs((double)a[(size_t)b * T * V + i] - r[i]));
            mag = fmax(mag, fabs(r[i]));
        }
    }
    // Both sides are float32 with different summation orders (tiles, thread splits); 1e-5 of the largest
    // logit is ~100 roundings of float32 (eps 6e-8) through dim-long dot products and the layers.
    CHECKF(e / mag < 1e-5, "%s: engine vs session logits differ by %.3g relative (max |logit| %.3g)", what, e / mag,
           mag);
    fprintf(stderr, "%s: engine vs lmp_session_eval max difference %.2e of max |logit| %.3g\n", what, e / mag, mag);
    free(tok), free(a), free(r);
    lmp_trainer_free(t);
    lmp_session_free(s);
}

static lmp_model *synth_model(int dim, int layers, int heads, int kv, int ffn, int vocab, int ctx, int tied,
                              const char *style) {
    lmp_synth_params p = {dim, layers, heads, kv, ffn, vocab, ctx, tied, test_rand_u64() | 1, NULL};
    lmp_builder *b = NULL;
    lmp_file *f = NULL;
    lmp_model *m = NULL;
    lmp_error err;
    if (lmp_synth_build(&p, &b, &err)) return NULL;
    lmp_meta_set_str(lmp_builder_meta(b), "llama.rope.style", style);
    // synth weights are N(0, 0.02): scale them up so that attention and the norms are far from trivial
    for (size_t i = 0; i < lmp_builder_n_tensors(b); i++) {
        const lmp_tensor *te = lmp_builder_tensor(b, i);
        if (te->ndim != 2) continue;
        float *x = te->data;
        for (int64_t k = 0; k < lmp_tensor_nelements(te); k++) x[k] *= 15.0f;
    }
    if (lmp_builder_to_file(b, &f, &err) == LMP_OK) lmp_model_from_file(f, &m, &err);
    lmp_builder_free(b);
    return m;
}

static void test_forward_matches_session(void) {
    fcfg c;
    if (n_arrs && !fixture_cfg("A", &c)) {
        lmp_model *m = fixture_model(&c);
        if (m) forward_vs_session(m, 2, c.ctx, "fixture A (GQA, untied, uneven, interleaved)");
        lmp_model_free(m);
    }
    if (n_arrs && !fixture_cfg("B", &c)) {
        lmp_model *m = fixture_model(&c);
        if (m) forward_vs_session(m, 2, c.ctx, "fixture B (tied, partial neox RoPE)");
        lmp_model_free(m);
    }
    lmp_model *m = synth_model(64, 2, 8, 2, 160, 300, 128, 0, "interleaved");
    CHECK(m != NULL);
    if (m) forward_vs_session(m, 3, 100, "synth 64x2 GQA interleaved, T 100");
    lmp_model_free(m);
    m = synth_model(48, 3, 4, 4, 96, 200, 96, 1, "neox");
    CHECK(m != NULL);
    if (m) forward_vs_session(m, 2, 96, "synth 48x3 neox tied, T 96");
    lmp_model_free(m);
}

// lmp_train_grads_accumulate: SUM over batches equals one trainer over all sequences; ABS_WG over one
// batch equals |w * g|.
static void test_grads_accumulate(void) {
    lmp_model *m = synth_model(32, 2, 4, 2, 64, 50, 32, 0, "interleaved");
    CHECK(m != NULL);
    if (!m) return;
    const int S = 5, L = 12;
    int32_t tok[5 * 12];
    for (int i = 0; i < S * L; i++) tok[i] = (int32_t)(test_rand_u64() % 50);
    lmp_grad_set gs, ga;
    lmp_error err;
    CHECKF(lmp_train_grads_accumulate(m, tok, S, L, 2, LMP_GRAD_SUM, NULL, 1, NULL, NULL, &gs, &err) == LMP_OK, "%s",
           err.msg);
    CHECKF(lmp_train_grads_accumulate(m, tok, S, L, S, LMP_GRAD_ABS_WG, NULL, 1, NULL, NULL, &ga, &err) == LMP_OK,
           "%s", err.msg);
    lmp_trainer_opts o = {S, L - 1, 1, NULL, 0, 0};
    lmp_trainer *t = NULL;
    CHECK(lmp_trainer_new(m, &o, &t, &err) == LMP_OK);
    if (t && gs.data && ga.data) {
        lmp_train_loss l;
        lmp_trainer_zero_grad(t);
        const lmp_loss_params lp = {0, 1, LMP_KD_FKL};
        CHECK(lmp_trainer_grad(t, tok, NULL, &lp, 1.0f, &l, &err) == LMP_OK);
        CHECKF(rel(gs.ce, l.ce) < 1e-5, "grads ce %.7f vs trainer %.7f", gs.ce, l.ce);
        CHECK(gs.tokens == (int64_t)S * (L - 1));
        const float *g = lmp_trainer_grads(t), *w = lmp_trainer_params(t);
        double e1 = 0, m1 = 0, e2 = 0, m2 = 0;
        for (size_t i = 0; i < gs.n_params; i++) {
            e1 = fmax(e1, fabs(gs.data[i] - g[i])), m1 = fmax(m1, fabs(g[i]));
            e2 = fmax(e2, fabs(ga.data[i] - fabsf(w[i] * g[i]))), m2 = fmax(m2, fabsf(w[i] * g[i]));
        }
        CHECKF(e1 / m1 < 1e-5, "SUM gradients vs trainer %.3g", e1 / m1);
        CHECKF(e2 / m2 < 1e-5, "ABS_WG vs |w g| %.3g", e2 / m2);
        int64_t rows, cols;
        const float *q = lmp_grad_set_find(&gs, "blk.1.attn_q.weight", &rows, &cols);
        CHECK(q && rows == 32 && cols == 32);
        CHECK(lmp_grad_set_find(&gs, "no.such.tensor", NULL, NULL) == NULL);
    }
    lmp_trainer_free(t);
    lmp_grad_set_free(&gs);
    lmp_grad_set_free(&ga);
    lmp_model_free(m);
}

// A training step lowers the loss of its own batch (the engine's gradient points downhill).
static void test_step_descends(void) {
    lmp_model *m = synth_model(32, 2, 4, 2, 64, 50, 32, 1, "neox");
    if (!m) return;
    lmp_trainer_opts o = {2, 16, 2, NULL, 0, 0};
    lmp_trainer *t = NULL;
    lmp_error err;
    CHECK(lmp_trainer_new(m, &o, &t, &err) == LMP_OK);
    if (t) {
        int32_t tok[2 * 17];
        for (int i = 0; i < 34; i++) tok[i] = (int32_t)(test_rand_u64() % 50);
        const lmp_loss_params lp = {0, 1, LMP_KD_FKL};
        const lmp_adamw_params ap = {0.9f, 0.95f, 1e-8f, 0.0f, 1.0f};
        lmp_train_loss l0, l1;
        lmp_trainer_zero_grad(t);
        lmp_trainer_grad(t, tok, NULL, &lp, 1.0f, &l0, &err);
        for (int s = 0; s < 5; s++) {
            lmp_trainer_adamw(t, &ap, 1e-2f, lmp_trainer_grad_norm(t));
            lmp_trainer_zero_grad(t);
            lmp_trainer_grad(t, tok, NULL, &lp, 1.0f, &l1, &err);
        }
        CHECKF(l1.ce < l0.ce - 0.05, "loss %.4f -> %.4f after 5 steps", l0.ce, l1.ce);
    }
    lmp_trainer_free(t);
    lmp_model_free(m);
}

int main(void) {
    test_seed();
    lmp_cpu_blas_single_threaded();  // as the programs do (runtime/backend.h)
    if (fixture_load()) n_arrs = 0;
    RUN(test_fixture_grads);
    RUN(test_fixture_adamw);
    RUN(test_forward_matches_session);
    RUN(test_grads_accumulate);
    RUN(test_step_descends);
    for (int i = 0; i < n_arrs; i++) free((void *)arrs[i].data);
    free(fix_buf);
    return test_report();
}
