// test_prune.c - structured pruning (prune/): the pruned model's logits equal those of the original model with
// the removed units zeroed (rows of wq/wk/wv and columns of wo for a head; the column of ffn_down for a channel;
// attn_output and ffn_down entirely for a removed block, which then passes its input through), on random
// models and tokens, for MHA and GQA heads, FFN channels and layers; shapes and metadata after each target;
// extreme plans (one head, one FFN block, one layer) still run; the planner's properties (ratio hit, GQA
// consistency, --align, uniform, keep-layers, unreachable ratios); the activation scores and block influence
// recomputed from the session's own hooks; and the lmp_prune entry point (dry run, provenance, quantized input).
#include "tests/test_util.h"

#include "format/qtypes.h"
#include "format/synth.h"
#include "distill/train_ref.h"
#include "runtime/refmath.h"
#include "prune/prune_internal.h"
#include "runtime/session.h"

// ---- helpers ----

// A random model of the given shape written to a file in the test directory (weights N(0, 0.2^2) so that
// attention is far from uniform; norms random around 1). Returns its path (static buffer per call index).
static const char *make_model(const char *name, int dim, int layers, int heads, int kv, int ffn, int vocab,
                              const lmp_meta *tok) {
    static char paths[8][512];
    static int next;
    char *path = paths[next++ % 8];
    snprintf(path, 512, "%s/%s", test_tmpdir(), name);
    lmp_synth_params sp = {dim, layers, heads, kv, ffn, vocab, 64, 1, test_rand_u64(), tok};
    lmp_builder *b = NULL;
    lmp_error e = {0};
    if (lmp_synth_build(&sp, &b, &e) != LMP_OK) {
        fprintf(stderr, "synth: %s\n", e.msg);
        return NULL;
    }
    for (size_t i = 0; i < lmp_builder_n_tensors(b); i++) {
        const lmp_tensor *t = lmp_builder_tensor(b, i);
        float *v = t->data;
        int64_t n = lmp_tensor_nelements(t);
        for (int64_t j = 0; j < n; j++) v[j] = t->ndim == 1 ? 1.0f + 0.2f * test_rand_normal() : 0.2f * test_rand_normal();
    }
    lmp_status st = lmp_builder_write(b, path, &e);
    lmp_builder_free(b);
    if (st) {
        fprintf(stderr, "write: %s\n", e.msg);
        return NULL;
    }
    return path;
}

static lmp_model *load(const char *path) {
    lmp_model *m = NULL;
    lmp_error e = {0};
    if (lmp_model_load(path, NULL, &m, &e) != LMP_OK) fprintf(stderr, "load %s: %s\n", path, e.msg);
    return m;
}

// Logits (n, vocab) of tokens through m (malloc'd).
static float *logits_of(lmp_model *m, const int32_t *tok, int n) {
    lmp_session_opts so = {0};
    so.n_ctx = n;
    so.n_threads = 2;
    lmp_session *s = NULL;
    lmp_error e = {0};
    float *out = malloc((size_t)n * m->cfg.vocab * sizeof(float));
    if (!out || lmp_session_new(m, &so, &s, &e) || lmp_session_eval(s, tok, n, 0, 0, out, &e)) {
        fprintf(stderr, "eval: %s\n", e.msg);
        free(out);
        out = NULL;
    }
    lmp_session_free(s);
    return out;
}

// The pruned model of plan applied to m, as an in-memory model.
static lmp_model *apply_plan(lmp_model *m, lmp_prune_plan *plan) {
    lmp_builder *b = lmp_builder_new();
    lmp_error e = {0};
    const lmp_meta *fm = lmp_file_meta(m->file);
    for (size_t i = 0; i < lmp_meta_count(fm); i++) lmp_meta_set_kv(lmp_builder_meta(b), lmp_meta_at(fm, i)->key, lmp_meta_at(fm, i));
    lmp_file *f = NULL;
    lmp_model *out = NULL;
    if (lmp_prune_apply(m, plan, 0, b, NULL, NULL, &e) || lmp_builder_to_file(b, &f, &e) ||
        lmp_model_from_file(f, &out, &e))
        fprintf(stderr, "apply: %s\n", e.msg);
    lmp_builder_free(b);
    return out;
}

// Owned f32 copies of the reference model's weights, zeroed where the plan removes units.
typedef struct zeroed {
    float *w[64][LMP_MAT_COUNT];
} zeroed;

static void zero_plan(lmp_model *m, const lmp_prune_plan *plan, zeroed *z) {
    const int hd = m->cfg.head_dim, dim = m->cfg.dim;
    memset(z, 0, sizeof *z);
    for (int l = 0; l < m->cfg.n_layers && l < 64; l++) {
        lmp_layer *L = &m->layers[l];
        const lmp_prune_layer_plan *p = &plan->layer[l];
        for (int k = 0; k < LMP_MAT_COUNT; k++) {
            lmp_weight *w = lmp_layer_mat(L, k);
            size_t n = (size_t)w->rows * w->cols;
            float *v = malloc(n * sizeof(float));
            memcpy(v, w->data, n * sizeof(float));
            z->w[l][k] = v;
        }
        float *wq = z->w[l][LMP_MAT_Q], *wk = z->w[l][LMP_MAT_K], *wv = z->w[l][LMP_MAT_V], *wo = z->w[l][LMP_MAT_O];
        float *down = z->w[l][LMP_MAT_DOWN];
        const int qcols = L->n_heads * hd;
        for (int h = 0; h < L->n_heads; h++) {
            if (p->keep_head[h] && !p->removed) continue;
            memset(wq + (size_t)h * hd * dim, 0, (size_t)hd * dim * sizeof(float));
            for (int r = 0; r < dim; r++) memset(wo + (size_t)r * qcols + (size_t)h * hd, 0, (size_t)hd * sizeof(float));
        }
        for (int g = 0; g < L->n_kv_heads; g++) {
            if (p->keep_kv[g] && !p->removed) continue;
            memset(wk + (size_t)g * hd * dim, 0, (size_t)hd * dim * sizeof(float));
            memset(wv + (size_t)g * hd * dim, 0, (size_t)hd * dim * sizeof(float));
        }
        for (int j = 0; j < L->ffn; j++)
            if (!p->keep_chan[j] || p->removed)
                for (int r = 0; r < dim; r++) down[(size_t)r * L->ffn + j] = 0;
        for (int k = 0; k < LMP_MAT_COUNT; k++) {
            lmp_error e = {0};
            if (lmp_model_weight_set(m, lmp_layer_mat(L, k), LMP_DTYPE_F32, z->w[l][k], &e))
                fprintf(stderr, "weight_set: %s\n", e.msg);
        }
    }
}

static void zeroed_free(zeroed *z) {
    for (int l = 0; l < 64; l++)
        for (int k = 0; k < LMP_MAT_COUNT; k++) free(z->w[l][k]);
}

// Float rounding bound for comparing two evaluations that sum the same non-zero terms in different orders
// (and the zeroed model's extra zeros): a few ulps of float32 per accumulation step, through every layer,
// relative to the logits' scale. 2e-5 is ~170 ulps of the largest logit; errors seen are ~1e-6.
#define LOGIT_TOL 2e-5

// Checks that the model pruned with plan gives the logits of the model (at path) with the units zeroed.
static void check_equiv(const char *path, lmp_prune_plan *plan, const char *what) {
    lmp_model *m = load(path), *ref = load(path);
    CHECK(m && ref);
    if (!m || !ref) {
        lmp_model_free(m);
        lmp_model_free(ref);
        return;
    }
    lmp_model *pm = apply_plan(m, plan);
    CHECKF(pm != NULL, "%s: pruned model does not load", what);
    zeroed z;
    zero_plan(ref, plan, &z);
    const int n = 24;
    int32_t tok[24];
    for (int i = 0; i < n; i++) tok[i] = (int32_t)(test_rand_u64() % (uint64_t)m->cfg.vocab);
    float *a = pm ? logits_of(pm, tok, n) : NULL, *b = logits_of(ref, tok, n);
    CHECK(a && b);
    if (a && b) {
        double scale = 0, diff = 0;
        size_t N = (size_t)n * m->cfg.vocab;
        for (size_t i = 0; i < N; i++) {
            if (fabs(b[i]) > scale) scale = fabs(b[i]);
            if (fabs(a[i] - b[i]) > diff) diff = fabs(a[i] - b[i]);
        }
        CHECKF(scale > 0.1, "%s: logits too small to compare (%g)", what, scale);
        CHECKF(diff <= LOGIT_TOL * scale, "%s: pruned vs zeroed logits differ by %.3e (scale %.3f, tol %.1e)", what,
               diff, scale, LOGIT_TOL * scale);
        if (getenv("LMP_TEST_VERBOSE")) fprintf(stderr, "  %s: max diff %.3e of %.3f\n", what, diff, scale);
    }
    // Shapes and metadata of the pruned model follow the plan.
    if (pm) {
        int out = 0;
        for (int l = 0; l < plan->n_layers; l++) {
            const lmp_prune_layer_plan *p = &plan->layer[l];
            if (p->removed) continue;
            const lmp_layer *L = &pm->layers[out];
            CHECKF(L->n_heads == p->heads && L->n_kv_heads == p->kv && L->ffn == p->ffn,
                   "%s: layer %d -> %d has %d/%d/%d, plan %d/%d/%d", what, l, out, L->n_heads, L->n_kv_heads, L->ffn,
                   p->heads, p->kv, p->ffn);
            out++;
        }
        CHECKF(pm->cfg.n_layers == out, "%s: %d layers, plan keeps %d", what, pm->cfg.n_layers, out);
        uint32_t bc = 0, hdm = 0;
        lmp_error e = {0};
        CHECK(lmp_meta_get_u32(lmp_file_meta(pm->file), "llama.block_count", &bc, &e) == LMP_OK && (int)bc == out);
        CHECK(lmp_meta_get_u32(lmp_file_meta(pm->file), "llama.attention.head_dim", &hdm, &e) == LMP_OK &&
              (int)hdm == m->cfg.head_dim);
        CHECK(pm->n_params == m->n_params - (lmp_prune_model_params(m) - lmp_prune_model_params(pm)));
        int64_t after = 0;
        for (int l = 0; l < plan->n_layers; l++) after += lmp_prune_layer_params_after(m, plan, l);
        CHECK(lmp_prune_model_params(pm) == after + m->cfg.dim);  // + output_norm
    }
    free(a);
    free(b);
    zeroed_free(&z);
    lmp_model_free(pm);
    lmp_model_free(ref);
    lmp_model_free(m);
}

static lmp_prune_plan plan_of(const char *path) {
    lmp_prune_plan plan;
    lmp_model *m = load(path);
    memset(&plan, 0, sizeof plan);
    if (m) lmp_prune_plan_init(m, &plan, NULL);
    lmp_model_free(m);
    return plan;
}

// Removes k distinct random entries of keep[0..n).
static void drop_random(uint8_t *keep, int n, int k) {
    for (int i = 0; i < k;) {
        int j = (int)(test_rand_u64() % (uint64_t)n);
        if (keep[j]) {
            keep[j] = 0;
            i++;
        }
    }
}

// ---- equivalence ----

static void test_heads_mha(void) {
    const char *path = make_model("mha.lmp", 64, 2, 4, 4, 96, 64, NULL);
    CHECK(path != NULL);
    if (!path) return;
    lmp_prune_plan plan = plan_of(path);
    for (int l = 0; l < 2; l++) {  // MHA: a head is its own group, its KV head goes with it
        int k = 1 + (int)(test_rand_u64() % 3);
        drop_random(plan.layer[l].keep_head, 4, k);
        memcpy(plan.layer[l].keep_kv, plan.layer[l].keep_head, 4);
    }
    check_equiv(path, &plan, "MHA heads");
    lmp_prune_plan_free(&plan);
}

static void test_heads_gqa(void) {
    const char *path = make_model("gqa.lmp", 96, 2, 6, 2, 96, 64, NULL);
    CHECK(path != NULL);
    if (!path) return;
    // One query head from every group (a different one per group), in both layers.
    lmp_prune_plan plan = plan_of(path);
    for (int l = 0; l < 2; l++)
        for (int g = 0; g < 2; g++) plan.layer[l].keep_head[g * 3 + (int)(test_rand_u64() % 3)] = 0;
    check_equiv(path, &plan, "GQA one query head per group");
    lmp_prune_plan_free(&plan);
    // A whole group (KV head 0 and query heads 0..2) in layer 0; two query heads of each group in layer 1.
    plan = plan_of(path);
    memset(plan.layer[0].keep_head, 0, 3);
    plan.layer[0].keep_kv[0] = 0;
    for (int g = 0; g < 2; g++) {
        int keep = (int)(test_rand_u64() % 3);
        for (int i = 0; i < 3; i++) plan.layer[1].keep_head[g * 3 + i] = i == keep;
    }
    check_equiv(path, &plan, "GQA whole group");
    lmp_prune_plan_free(&plan);
}

static void test_ffn_channels(void) {
    const char *path = make_model("ffn.lmp", 64, 2, 4, 2, 96, 64, NULL);
    CHECK(path != NULL);
    if (!path) return;
    lmp_prune_plan plan = plan_of(path);
    drop_random(plan.layer[0].keep_chan, 96, 40);
    drop_random(plan.layer[1].keep_chan, 96, 7);
    check_equiv(path, &plan, "FFN channels");
    lmp_prune_plan_free(&plan);
}

// Removing block 1 of 3 (zeroed reference: attn_output and ffn_down of block 1 are zero, so the block passes its
// input through) with width pruning in the others; the pruned file's blocks are renumbered 0, 1 and block 1 holds
// the bytes of input block 2's kept rows.
static void test_layers_renumbered(void) {
    const char *path = make_model("layers.lmp", 64, 3, 4, 2, 96, 64, NULL);
    CHECK(path != NULL);
    if (!path) return;
    lmp_prune_plan plan = plan_of(path);
    plan.layer[1].removed = 1;
    drop_random(plan.layer[2].keep_chan, 96, 32);
    check_equiv(path, &plan, "layer 1 removed");
    lmp_model *m = load(path);
    lmp_model *pm = m ? apply_plan(m, &plan) : NULL;
    CHECK(pm != NULL);
    if (pm) {
        CHECK(pm->cfg.n_layers == 2);
        CHECK(lmp_file_find(pm->file, "blk.2.attn_q.weight") == NULL);
        const lmp_weight *a = &pm->layers[1].wq, *b = &m->layers[2].wq;
        CHECK(a->rows == b->rows && !memcmp(a->data, b->data, (size_t)a->rows * a->row_bytes));
        CHECK(!memcmp(pm->layers[1].attn_norm.data, m->layers[2].attn_norm.data, (size_t)m->cfg.dim * 4));
        CHECK(!memcmp(pm->layers[0].wk.data, m->layers[0].wk.data, (size_t)m->layers[0].wk.rows * m->layers[0].wk.row_bytes));
    }
    lmp_model_free(pm);
    lmp_model_free(m);
    lmp_prune_plan_free(&plan);
}

// One head (one KV group with one query head), one FFN block of 32 channels, one layer: still a model that runs.
static void test_extremes(void) {
    const char *path = make_model("extreme.lmp", 96, 2, 6, 2, 96, 64, NULL);
    CHECK(path != NULL);
    if (!path) return;
    lmp_prune_plan plan = plan_of(path);
    for (int l = 0; l < 2; l++) {
        memset(plan.layer[l].keep_head, 0, 6);
        plan.layer[l].keep_head[4] = 1;  // group 1, its second query head
        plan.layer[l].keep_kv[0] = 0;
        memset(plan.layer[l].keep_chan, 0, 96);
        memset(plan.layer[l].keep_chan + 32 * l, 1, 32);
    }
    check_equiv(path, &plan, "one head, one FFN block");
    plan.layer[0].removed = 1;
    check_equiv(path, &plan, "one layer");
    // The plan checker refuses what would not run.
    lmp_model *m = load(path);
    lmp_error e = {0};
    plan.layer[1].keep_head[4] = 0;
    CHECK(m && lmp_prune_plan_check(m, &plan, &e) == LMP_E_ARG && strstr(e.msg, "no attention head"));
    plan.layer[1].keep_head[4] = 1;
    plan.layer[1].keep_kv[0] = 1;
    plan.layer[1].keep_head[0] = plan.layer[1].keep_head[1] = 1;  // group 0 keeps 2, group 1 keeps 1
    CHECK(m && lmp_prune_plan_check(m, &plan, &e) == LMP_E_ARG && strstr(e.msg, "different numbers"));
    plan.layer[1].removed = 1;
    CHECK(m && lmp_prune_plan_check(m, &plan, &e) == LMP_E_ARG && strstr(e.msg, "every layer"));
    lmp_model_free(m);
    lmp_prune_plan_free(&plan);
}

// ---- the planner ----

static void check_plan_props(const lmp_model *m, const lmp_prune_plan *plan, int align, const uint8_t *keep_layer,
                             const char *what) {
    for (int l = 0; l < plan->n_layers; l++) {
        const lmp_layer *L = &m->layers[l];
        const lmp_prune_layer_plan *p = &plan->layer[l];
        if (p->removed) continue;
        CHECKF(p->heads >= 1 && p->kv >= 1 && p->heads % p->kv == 0, "%s: layer %d keeps %d heads / %d KV", what, l,
               p->heads, p->kv);
        CHECKF(p->ffn == L->ffn || (p->ffn % align == 0 && p->ffn >= align), "%s: layer %d FFN %d (align %d)", what, l,
               p->ffn, align);
        if (keep_layer && keep_layer[l])
            CHECKF(p->heads == L->n_heads && p->ffn == L->ffn, "%s: kept layer %d was pruned", what, l);
    }
}

static void test_plan(void) {
    // FFN 200 is not a multiple of 32: a pruned layer drops to 192, 160, ...
    const char *path = make_model("plan.lmp", 128, 4, 8, 4, 200, 64, NULL);
    lmp_model *m = path ? load(path) : NULL;
    CHECK(m != NULL);
    if (!m) return;
    lmp_prune_scores sc;
    lmp_error e = {0};
    CHECKF(lmp_prune_score_magnitude(m, &sc, &e) == LMP_OK, "%s", e.msg);
    const double total = (double)lmp_prune_model_params(m);
    const double dim = 128, hd = 16;
    // The largest unit: a KV group of 2 query heads (3 * 2 * hd * dim) or a block of 32 channels (32 * 3 * dim).
    const double unit = fmax(3 * 2 * hd * dim, 32 * 3 * dim) / total;
    const double ratios[] = {0.05, 0.3, 0.5};
    for (int u = 0; u < 2; u++)
        for (size_t r = 0; r < sizeof ratios / sizeof ratios[0]; r++) {
            lmp_prune_plan_opts o = {ratios[r], LMP_PRUNE_HEADS | LMP_PRUNE_FFN, u, 32, NULL};
            lmp_prune_plan plan;
            double maxf;
            char what[64];
            snprintf(what, sizeof what, "%s ratio %.2f", u ? "uniform" : "global", ratios[r]);
            CHECKF(lmp_prune_plan_make(m, &sc, &o, &plan, &maxf, &e) == LMP_OK, "%s: %s", what, e.msg);
            int64_t after = m->cfg.dim;
            for (int l = 0; l < 4; l++) after += lmp_prune_layer_params_after(m, &plan, l);
            double frac = 1 - after / total;
            // Global: within half the largest unit. Uniform: each of 4 layers x 2 targets within half a unit.
            double tol = u ? 4 * unit : unit / 2 + 1e-9;
            CHECKF(fabs(frac - ratios[r]) <= tol, "%s: removed %.4f (tol %.4f)", what, frac, tol);
            check_plan_props(m, &plan, 32, NULL, what);
            if (u)
                for (int l = 1; l < 4; l++)
                    CHECKF(plan.layer[l].heads == plan.layer[0].heads && plan.layer[l].ffn == plan.layer[0].ffn,
                           "%s: layer %d differs from layer 0", what, l);
            lmp_prune_plan_free(&plan);
        }
    // keep-layers: layers 0 and 3 whole.
    uint8_t keep[4] = {1, 0, 0, 1};
    lmp_prune_plan_opts o = {0.3, LMP_PRUNE_HEADS | LMP_PRUNE_FFN, 0, 32, keep};
    lmp_prune_plan plan;
    double maxf;
    CHECKF(lmp_prune_plan_make(m, &sc, &o, &plan, &maxf, &e) == LMP_OK, "%s", e.msg);
    check_plan_props(m, &plan, 32, keep, "keep-layers");
    lmp_prune_plan_free(&plan);
    // Heads alone cannot remove 0.6: the most is every head but one (of 8 + 4 KV) per layer.
    o = (lmp_prune_plan_opts){0.6, LMP_PRUNE_HEADS, 0, 32, NULL};
    CHECK(lmp_prune_plan_make(m, &sc, &o, &plan, &maxf, &e) == LMP_E_ARG);
    double want = 4 * (2 * (8 + 4) - 4) * hd * dim / total;  // per layer all but one query and one KV head
    CHECKF(fabs(maxf - want) < 1e-9, "max fraction %.6f, expected %.6f", maxf, want);
    CHECKF(strstr(e.msg, "cannot be reached with targets heads: at most") != NULL, "%s", e.msg);
    // --align 64: pruned widths are multiples of 64.
    o = (lmp_prune_plan_opts){0.4, LMP_PRUNE_FFN, 0, 64, NULL};
    CHECKF(lmp_prune_plan_make(m, &sc, &o, &plan, &maxf, &e) == LMP_OK, "%s", e.msg);
    check_plan_props(m, &plan, 64, NULL, "align 64");
    lmp_prune_plan_free(&plan);
    lmp_prune_scores_free(&sc);
    lmp_model_free(m);
}

// ---- scores ----

// The activation scores and block statistics, recomputed here from the session's hooks and layer-by-layer runs
// (not through the calibration runner): E[|h_j| / ||x_in||] at DOWN_IN (x_in: the token's hidden state entering
// the block) times the column norm of ffn_down, head sums at ATTN_OUT_IN, and 1 - mean cosine of each block's
// input and output.
typedef struct hook_acc {
    int layer;
    double *absd, *absa;  // (ffn), (n_heads * hd): sums of |x| / ||x_in|| per token
    const float *x_in;    // (n, dim) the sequence's hidden states entering the block
    int dim;
    int64_t n;
} hook_acc;

static void acc_hook(void *user, int layer, lmp_hook_point where, const float *x, int n, int width) {
    hook_acc *a = user;
    if (layer != a->layer) return;
    double *dst = where == LMP_HOOK_DOWN_IN ? a->absd : where == LMP_HOOK_ATTN_OUT_IN ? a->absa : NULL;
    if (!dst) return;
    for (int i = 0; i < n; i++) {
        double q = 0;
        for (int k = 0; k < a->dim; k++) q += (double)a->x_in[(size_t)i * a->dim + k] * a->x_in[(size_t)i * a->dim + k];
        for (int c = 0; c < width; c++) dst[c] += fabsf(x[(size_t)i * width + c]) / sqrt(q);
    }
    if (where == LMP_HOOK_DOWN_IN) a->n += n;
}

static void test_activation_scores(void) {
    char tokpath[512];
    snprintf(tokpath, sizeof tokpath, "tests/fixtures/tiny.h5");
    lmp_file *tf = NULL;
    lmp_error e = {0};
    if (lmp_open_any(tokpath, NULL, LMP_OPEN_SKIP_CRC, &tf, &e) != LMP_OK) {
        CHECKF(0, "tokenizer fixture: %s", e.msg);
        return;
    }
    const char *path = make_model("act.lmp", 64, 2, 4, 2, 96, 64, lmp_file_meta(tf));
    lmp_file_close(tf);
    char calib[512];
    snprintf(calib, sizeof calib, "%s/calib.txt", test_tmpdir());
    FILE *f = fopen(calib, "w");
    const char *words[] = {"the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far"};
    for (int i = 0; i < 2000; i++) fprintf(f, "%s%s", words[test_rand_u64() % 10], i % 12 == 11 ? ".\n" : " ");
    fclose(f);
    lmp_model *m = path ? load(path) : NULL;
    CHECK(m != NULL);
    if (!m) return;
    lmp_prune_calib_opts co = {calib, 96, 32, NULL, NULL, NULL};
    lmp_prune_scores sc;
    CHECKF(lmp_prune_score_activation(m, &co, 1, &sc, &e) == LMP_OK, "%s", e.msg);
    lmp_calib_set set;
    CHECKF(lmp_calib_sample(m, calib, 96, 32, &set, &e) == LMP_OK, "%s", e.msg);
    CHECK(sc.calib_tokens == (int64_t)set.n_seq * set.seq_len);
    lmp_session_opts so = {32, 32, 2, NULL, NULL};
    lmp_session *s = NULL;
    CHECKF(lmp_session_new(m, &so, &s, &e) == LMP_OK, "%s", e.msg);
    const int hd = m->cfg.head_dim, dim = m->cfg.dim;
    float *x = malloc((size_t)32 * dim * sizeof(float)), *x0 = malloc((size_t)32 * dim * sizeof(float));
    for (int l = 0; l < 2 && s; l++) {
        const lmp_layer *L = &m->layers[l];
        hook_acc a = {l, calloc((size_t)L->ffn, sizeof(double)), calloc((size_t)L->n_heads * hd, sizeof(double)), x0, dim, 0};
        double cos_sum = 0;
        int64_t n_tok = 0;
        lmp_session_set_hook(s, acc_hook, &a);
        for (int q = 0; q < set.n_seq; q++) {
            CHECK(lmp_session_embed(s, set.tokens + (size_t)q * set.seq_len, set.seq_len, x, &e) == LMP_OK);
            if (l > 0) CHECK(lmp_session_run_layers(s, x, set.seq_len, 0, 0, l, &e) == LMP_OK);
            memcpy(x0, x, (size_t)set.seq_len * dim * sizeof(float));
            CHECK(lmp_session_run_layers(s, x, set.seq_len, 0, l, l + 1, &e) == LMP_OK);
            for (int t = 0; t < set.seq_len; t++) {
                double uu = 0, vv = 0, uv = 0;
                for (int i = 0; i < dim; i++) {
                    double u = x0[(size_t)t * dim + i], v = x[(size_t)t * dim + i];
                    uu += u * u;
                    vv += v * v;
                    uv += u * v;
                }
                cos_sum += uv / sqrt(uu * vv);
                n_tok++;
            }
        }
        lmp_session_set_hook(s, NULL, NULL);
        // Hooks also fire for blocks before l (l > 0 runs 0..l-1 first): only layer l is counted (a.layer).
        const float *down = L->w_down.data, *wo = L->wo.data;
        double worst = 0;
        for (int j = 0; j < L->ffn; j++) {
            double cn = 0;
            for (int r = 0; r < dim; r++) cn += (double)down[(size_t)r * L->ffn + j] * down[(size_t)r * L->ffn + j];
            double want = a.absd[j] / (double)a.n * sqrt(cn);
            worst = fmax(worst, fabs(sc.chan[l][j] - want) / fmax(want, 1e-12));
        }
        for (int h = 0; h < L->n_heads; h++) {
            double want = 0;
            for (int d = h * hd; d < (h + 1) * hd; d++) {
                double cn = 0;
                for (int r = 0; r < dim; r++) cn += (double)wo[(size_t)r * L->n_heads * hd + d] * wo[(size_t)r * L->n_heads * hd + d];
                want += a.absa[d] / (double)a.n * sqrt(cn);
            }
            worst = fmax(worst, fabs(sc.head[l][h] - want) / fmax(want, 1e-12));
        }
        // Both sides sum the same float activations (in float32 per batch on one side): 1e-5 relative.
        CHECKF(worst < 1e-5, "layer %d: activation scores differ from the hook recomputation by %.2e", l, worst);
        double bi = 1.0 - cos_sum / (double)n_tok;
        CHECKF(fabs(sc.influence[l] - bi) < 1e-6, "layer %d: block influence %.8f, recomputed %.8f", l,
               sc.influence[l], bi);
        CHECK(sc.influence[l] > 0 && sc.influence[l] < 2 && sc.change[l] > 0);
        free(a.absd);
        free(a.absa);
    }
    free(x);
    free(x0);
    lmp_session_free(s);
    lmp_calib_set_free(&set);
    lmp_prune_scores_free(&sc);
    // A calibration text too short for the request is refused, saying how long it is.
    lmp_prune_calib_opts big = {calib, 1 << 20, 32, NULL, NULL, NULL};
    CHECK(lmp_prune_score_activation(m, &big, 1, &sc, &e) == LMP_E_ARG && strstr(e.msg, "fewer than"));
    lmp_model_free(m);
}

// ---- the Taylor score ----

// A double-precision copy of a model and its loss, written with the scalar reference ops of distill/train_ref.h
// (independent of the training engine's float32 ops and of the pruning code).
typedef struct dmodel {
    int dim, hd, L, V, rope_dim, neox;
    double eps;
    double *emb, *out, *onorm;               // (V, dim), (V, dim) or emb when tied, (dim)
    double *norm[8][2];                      // attn_norm, ffn_norm (dim)
    double *w[8][LMP_MAT_COUNT];             // the seven matrices, row-major as in the file
    int nh[8], nkv[8], ffn[8];
    double *cs, *sn;                         // (T, rope_dim / 2)
} dmodel;

static double *to_d(const float *x, size_t n) {
    double *d = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

static void dmodel_init(dmodel *d, const lmp_model *m, int T) {
    memset(d, 0, sizeof *d);
    d->dim = m->cfg.dim, d->hd = m->cfg.head_dim, d->L = m->cfg.n_layers, d->V = m->cfg.vocab;
    d->rope_dim = m->cfg.rope_dim, d->neox = m->cfg.rope_neox, d->eps = m->cfg.rms_eps;
    d->emb = to_d(m->tok_embd.data, (size_t)d->V * d->dim);
    d->out = m->tied ? d->emb : to_d(m->output.data, (size_t)d->V * d->dim);
    d->onorm = to_d(m->output_norm.data, (size_t)d->dim);
    for (int l = 0; l < d->L; l++) {
        const lmp_layer *Ly = &m->layers[l];
        d->norm[l][0] = to_d(Ly->attn_norm.data, (size_t)d->dim);
        d->norm[l][1] = to_d(Ly->ffn_norm.data, (size_t)d->dim);
        for (int k = 0; k < LMP_MAT_COUNT; k++) {
            const lmp_weight *w = lmp_layer_mat_c(Ly, k);
            d->w[l][k] = to_d(w->data, (size_t)w->rows * w->cols);
        }
        d->nh[l] = Ly->n_heads, d->nkv[l] = Ly->n_kv_heads, d->ffn[l] = Ly->ffn;
    }
    const int half = d->rope_dim / 2;
    float *c = malloc((size_t)T * half * sizeof(float)), *sn = malloc((size_t)T * half * sizeof(float));
    lmp_ref_rope_tables(c, sn, T, d->rope_dim, m->cfg.rope_theta);  // the runtime's angles
    d->cs = to_d(c, (size_t)T * half);
    d->sn = to_d(sn, (size_t)T * half);
    free(c);
    free(sn);
}

static void dmodel_free(dmodel *d, int tied) {
    free(d->emb);
    if (!tied) free(d->out);
    free(d->onorm);
    for (int l = 0; l < d->L; l++) {
        free(d->norm[l][0]);
        free(d->norm[l][1]);
        for (int k = 0; k < LMP_MAT_COUNT; k++) free(d->w[l][k]);
    }
    free(d->cs);
    free(d->sn);
}

// Mean next-token cross-entropy of nb sequences of T + 1 tokens (tok: (nb, T + 1)).
static double dmodel_loss(const dmodel *d, const int32_t *tok, int nb, int T) {
    const int n = nb * T, dim = d->dim, hd = d->hd;
    int32_t *in = malloc((size_t)n * sizeof(int32_t)), *lab = malloc((size_t)n * sizeof(int32_t));
    for (int b = 0; b < nb; b++)
        for (int t = 0; t < T; t++) in[b * T + t] = tok[b * (T + 1) + t], lab[b * T + t] = tok[b * (T + 1) + t + 1];
    int maxw = 0;
    for (int l = 0; l < d->L; l++) maxw = d->ffn[l] > maxw ? d->ffn[l] : maxw, maxw = d->nh[l] * hd > maxw ? d->nh[l] * hd : maxw;
    double *x = calloc((size_t)n * dim, sizeof(double)), *xn = calloc((size_t)n * dim, sizeof(double));
    double *y = calloc((size_t)n * dim, sizeof(double)), *rstd = calloc((size_t)n, sizeof(double));
    double *q = calloc((size_t)n * maxw, sizeof(double)), *k = calloc((size_t)n * maxw, sizeof(double));
    double *v = calloc((size_t)n * maxw, sizeof(double)), *a = calloc((size_t)n * maxw, sizeof(double));
    double *P = calloc((size_t)nb * 64 * T * T, sizeof(double));
    double *logits = calloc((size_t)n * d->V, sizeof(double)), *dl = calloc((size_t)n * d->V, sizeof(double));
    double *ce = calloc((size_t)n, sizeof(double)), *kd = calloc((size_t)n, sizeof(double));
    lmp_tref_embed_fwd(x, d->emb, in, n, dim);
    for (int l = 0; l < d->L; l++) {
        const int qw = d->nh[l] * hd, kw = d->nkv[l] * hd, F = d->ffn[l];
        lmp_tref_rmsnorm_fwd(xn, rstd, x, d->norm[l][0], n, dim, d->eps);
        lmp_tref_matmul_fwd(q, xn, d->w[l][LMP_MAT_Q], n, dim, qw);
        lmp_tref_matmul_fwd(k, xn, d->w[l][LMP_MAT_K], n, dim, kw);
        lmp_tref_matmul_fwd(v, xn, d->w[l][LMP_MAT_V], n, dim, kw);
        lmp_tref_rope_fwd(q, n, T, d->nh[l], hd, d->cs, d->sn, d->rope_dim, d->neox);
        lmp_tref_rope_fwd(k, n, T, d->nkv[l], hd, d->cs, d->sn, d->rope_dim, d->neox);
        lmp_attn_dims ad = {nb, T, d->nh[l], d->nkv[l], hd};
        lmp_tref_attn_fwd(a, P, q, k, v, &ad);
        lmp_tref_matmul_fwd(y, a, d->w[l][LMP_MAT_O], n, qw, dim);
        for (size_t i = 0; i < (size_t)n * dim; i++) x[i] += y[i];
        lmp_tref_rmsnorm_fwd(xn, rstd, x, d->norm[l][1], n, dim, d->eps);
        lmp_tref_matmul_fwd(q, xn, d->w[l][LMP_MAT_GATE], n, dim, F);
        lmp_tref_matmul_fwd(k, xn, d->w[l][LMP_MAT_UP], n, dim, F);
        lmp_tref_swiglu_fwd(a, q, k, (size_t)n * F);
        lmp_tref_matmul_fwd(y, a, d->w[l][LMP_MAT_DOWN], n, F, dim);
        for (size_t i = 0; i < (size_t)n * dim; i++) x[i] += y[i];
    }
    lmp_tref_rmsnorm_fwd(xn, rstd, x, d->onorm, n, dim, d->eps);
    lmp_tref_matmul_fwd(logits, xn, d->out, n, dim, d->V);
    const lmp_loss_params lp = {0, 1, LMP_KD_FKL};
    lmp_tref_loss(dl, ce, kd, logits, lab, NULL, n, d->V, &lp, 1.0);
    double loss = 0;
    for (int i = 0; i < n; i++) loss += ce[i];
    free(in), free(lab), free(x), free(xn), free(y), free(rstd), free(q), free(k), free(v), free(a), free(P);
    free(logits), free(dl), free(ce), free(kd);
    return loss / n;
}

// s[i] += sum over batches b of |w_i * dL_b/dw_i| for the n values of one tensor, by central differences.
static void fd_taylor(const dmodel *d, double *w, size_t n, const lmp_calib_set *set, int batch, double *s) {
    const int T = set->seq_len - 1;
    for (size_t i = 0; i < n; i++) {
        const double w0 = w[i], h = 1e-4 * fmax(1.0, fabs(w0));
        for (int s0 = 0; s0 < set->n_seq; s0 += batch) {
            const int nb = set->n_seq - s0 < batch ? set->n_seq - s0 : batch;
            const int32_t *tok = set->tokens + (size_t)s0 * set->seq_len;
            w[i] = w0 + h;
            double lp = dmodel_loss(d, tok, nb, T);
            w[i] = w0 - h;
            double lm = dmodel_loss(d, tok, nb, T);
            w[i] = w0;
            s[i] += fabs(w0 * (lp - lm) / (2 * h));
        }
    }
}

// Every unit's Taylor score equals the sum over its weights (indexed here from the shapes, not by score.c) and over
// batches of |w dL_b/dw|, the gradients by central differences of a double-precision forward pass.
static void test_taylor_scores(void) {
    lmp_file *tf = NULL;
    lmp_error e = {0};
    if (lmp_open_any("tests/fixtures/tiny.h5", NULL, LMP_OPEN_SKIP_CRC, &tf, &e) != LMP_OK) {
        CHECKF(0, "tokenizer fixture: %s", e.msg);
        return;
    }
    const char *path = make_model("taylor.lmp", 16, 2, 4, 2, 24, 64, lmp_file_meta(tf));
    lmp_file_close(tf);
    char calib[512];
    snprintf(calib, sizeof calib, "%s/taylor-calib.txt", test_tmpdir());
    FILE *f = fopen(calib, "w");
    const char *words[] = {"the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far"};
    for (int i = 0; i < 600; i++) fprintf(f, "%s%s", words[test_rand_u64() % 10], i % 12 == 11 ? ".\n" : " ");
    fclose(f);
    lmp_model *m = path ? load(path) : NULL;
    CHECK(m != NULL);
    if (!m) return;
    // 5 sequences of 10 tokens: batches of 4 and 1 (the smaller last batch is scored on its own mean).
    lmp_prune_calib_opts co = {calib, 50, 10, NULL, NULL, NULL};
    lmp_prune_scores sc;
    CHECKF(lmp_prune_score_taylor(m, &co, &sc, &e) == LMP_OK, "%s", e.msg);
    lmp_calib_set set;
    CHECKF(lmp_calib_sample(m, calib, 50, 10, &set, &e) == LMP_OK, "%s", e.msg);
    CHECK(set.n_seq == 5 && sc.calib_tokens == 50 && sc.block != NULL);
    dmodel d;
    dmodel_init(&d, m, set.seq_len - 1);
    const int dim = d.dim, hd = d.hd;
    double worst = 0, smallest = INFINITY;
    for (int l = 0; l < d.L && sc.block; l++) {
        const lmp_layer *Ly = &m->layers[l];
        double *s[LMP_MAT_COUNT], *sn[2];
        for (int k = 0; k < LMP_MAT_COUNT; k++) {
            const lmp_weight *w = lmp_layer_mat_c(Ly, k);
            size_t n = (size_t)w->rows * w->cols;
            s[k] = calloc(n, sizeof(double));
            fd_taylor(&d, d.w[l][k], n, &set, LMP_PRUNE_TAYLOR_BATCH, s[k]);
        }
        for (int j = 0; j < 2; j++) {
            sn[j] = calloc((size_t)dim, sizeof(double));
            fd_taylor(&d, d.norm[l][j], (size_t)dim, &set, LMP_PRUNE_TAYLOR_BATCH, sn[j]);
        }
        const int qw = Ly->n_heads * hd;
        for (int h = 0; h < Ly->n_heads; h++) {  // attn_q rows h*hd.., attn_output columns h*hd..
            double want = 0;
            for (int r = h * hd; r < (h + 1) * hd; r++)
                for (int c = 0; c < dim; c++) want += s[LMP_MAT_Q][(size_t)r * dim + c];
            for (int r = 0; r < dim; r++)
                for (int c = h * hd; c < (h + 1) * hd; c++) want += s[LMP_MAT_O][(size_t)r * qw + c];
            worst = fmax(worst, fabs(sc.head[l][h] - want) / want);
            smallest = fmin(smallest, want);
        }
        for (int g = 0; g < Ly->n_kv_heads; g++) {  // attn_k and attn_v rows g*hd..
            double want = 0;
            for (int r = g * hd; r < (g + 1) * hd; r++)
                for (int c = 0; c < dim; c++) want += s[LMP_MAT_K][(size_t)r * dim + c] + s[LMP_MAT_V][(size_t)r * dim + c];
            worst = fmax(worst, fabs(sc.kv[l][g] - want) / want);
        }
        for (int j = 0; j < Ly->ffn; j++) {  // gate and up row j, down column j
            double want = 0;
            for (int c = 0; c < dim; c++) want += s[LMP_MAT_GATE][(size_t)j * dim + c] + s[LMP_MAT_UP][(size_t)j * dim + c];
            for (int r = 0; r < dim; r++) want += s[LMP_MAT_DOWN][(size_t)r * Ly->ffn + j];
            worst = fmax(worst, fabs(sc.chan[l][j] - want) / want);
        }
        double block = 0;
        for (int k = 0; k < LMP_MAT_COUNT; k++) {
            const lmp_weight *w = lmp_layer_mat_c(Ly, k);
            for (size_t i = 0; i < (size_t)w->rows * w->cols; i++) block += s[k][i];
        }
        for (int j = 0; j < 2; j++)
            for (int i = 0; i < dim; i++) block += sn[j][i];
        worst = fmax(worst, fabs(sc.block[l] - block) / block);
        CHECK(sc.scale[l] == 1.0 && isnan(sc.influence[l]));
        for (int k = 0; k < LMP_MAT_COUNT; k++) free(s[k]);
        free(sn[0]);
        free(sn[1]);
    }
    // float32 engine against float64 differences, summed over 40..200 weights per unit (measured: about 5e-7)
    CHECKF(worst < 1e-5, "Taylor scores differ from central differences by %.2e (relative)", worst);
    CHECK(smallest > 0);
    dmodel_free(&d, m->tied);
    lmp_calib_set_free(&set);
    lmp_prune_scores_free(&sc);
    // A calibration text too short is refused as for the activation score.
    lmp_prune_calib_opts big = {calib, 1 << 20, 10, NULL, NULL, NULL};
    CHECK(lmp_prune_score_taylor(m, &big, &sc, &e) == LMP_E_ARG && strstr(e.msg, "fewer than"));
    // The planner ranks layers alone by the block scores when they are given: the lowest block goes.
    lmp_prune_scores z;
    CHECK(lmp_prune_scores_init(m, &z, &e) == LMP_OK);
    z.block = malloc(2 * sizeof(double));
    z.block[0] = 2.0, z.block[1] = 1.0;
    lmp_prune_plan_opts po = {0.4, LMP_PRUNE_LAYERS, 0, 32, NULL};
    lmp_prune_plan plan;
    double mx;
    CHECKF(lmp_prune_plan_make(m, &z, &po, &plan, &mx, &e) == LMP_OK, "%s", e.msg);
    CHECK(!plan.layer[0].removed && plan.layer[1].removed);
    lmp_prune_plan_free(&plan);
    z.block[0] = 0.5;
    CHECKF(lmp_prune_plan_make(m, &z, &po, &plan, &mx, &e) == LMP_OK, "%s", e.msg);
    CHECK(plan.layer[0].removed && !plan.layer[1].removed);
    lmp_prune_plan_free(&plan);
    lmp_prune_scores_free(&z);
    lmp_model_free(m);
}

// ---- the entry point ----

static void test_prune_entry(void) {
    const char *path = make_model("entry.lmp", 96, 3, 6, 2, 96, 64, NULL);
    CHECK(path != NULL);
    if (!path) return;
    char out[512];
    snprintf(out, sizeof out, "%s/entry-pruned.lmp", test_tmpdir());
    lmp_prune_params p;
    lmp_prune_params_default(&p);
    p.ratio = 0.3;
    p.dry_run = 1;
    lmp_prune_summary s;
    lmp_error e = {0};
    CHECKF(lmp_prune(path, NULL, out, &p, &s, &e) == LMP_OK, "%s", e.msg);
    CHECK(!test_file_exists(out));
    // Within half the largest unit: a KV group with its 3 query heads is 4 * 2 * 16 * 96 parameters, 7.8 % of 157K.
    CHECKF(s.n_layers_in == 3 && s.layers && fabs(s.fraction - 0.3) <= 0.04, "removed %.4f", s.fraction);
    double dry = s.fraction;
    lmp_prune_summary_free(&s);
    p.dry_run = 0;
    CHECKF(lmp_prune(path, NULL, out, &p, &s, &e) == LMP_OK, "%s", e.msg);
    CHECK(s.fraction == dry);
    lmp_model *pm = load(out);
    CHECK(pm != NULL);
    if (pm) {
        const lmp_meta *mt = lmp_file_meta(pm->file);
        const char *str;
        uint64_t u;
        CHECK(lmp_meta_get_str(mt, "prune.targets", &str, &e) == LMP_OK && !strcmp(str, "heads,ffn"));
        CHECK(lmp_meta_get_str(mt, "prune.score", &str, &e) == LMP_OK && !strcmp(str, "magnitude"));
        CHECK(lmp_meta_get_u64(mt, "prune.params_after", &u, &e) == LMP_OK && (int64_t)u == lmp_prune_model_params(pm));
        CHECK(lmp_meta_get_u64(mt, "prune.params_before", &u, &e) == LMP_OK && (int64_t)u == s.params_in);
        CHECK(lmp_meta_find(mt, "prune.parent_checksum") && lmp_meta_find(mt, "prune.layer_source"));
        CHECK(s.params_out == lmp_prune_model_params(pm));
        for (int l = 0; l < 3; l++)
            CHECK(pm->layers[l].n_heads == s.layers[l].heads_out && pm->layers[l].ffn == s.layers[l].ffn_out);
    }
    lmp_model_free(pm);
    lmp_prune_summary_free(&s);
    // A quantized input: refused, then dequantized with allow_requantize (every output tensor f32).
    lmp_model *m = load(path);
    lmp_builder *b = lmp_builder_new();
    const lmp_meta *fm = lmp_file_meta(m->file);
    for (size_t i = 0; i < lmp_meta_count(fm); i++) lmp_meta_set_kv(lmp_builder_meta(b), lmp_meta_at(fm, i)->key, lmp_meta_at(fm, i));
    for (size_t i = 0; i < lmp_file_n_tensors(m->file); i++) {
        const lmp_tensor *t = lmp_file_tensor(m->file, i);
        int q = t->ndim == 2 && t->shape[1] % 32 == 0;
        lmp_dtype ty = q ? LMP_DTYPE_Q8_0 : LMP_DTYPE_F32;
        void *d = lmp_malloc(lmp_tensor_expected_bytes(ty, t->ndim, t->shape));
        if (q) lmp_type_get(ty)->from_float_ref(t->data, d, lmp_tensor_nelements(t));
        else memcpy(d, t->data, t->nbytes);
        lmp_builder_add(b, t->name, ty, t->ndim, t->shape, d, &e);
    }
    char qpath[512], qout[512];
    snprintf(qpath, sizeof qpath, "%s/entry-q8.lmp", test_tmpdir());
    snprintf(qout, sizeof qout, "%s/entry-q8-pruned.lmp", test_tmpdir());
    CHECK(lmp_builder_write(b, qpath, &e) == LMP_OK);
    lmp_builder_free(b);
    lmp_model_free(m);
    CHECK(lmp_prune(qpath, NULL, qout, &p, &s, &e) == LMP_E_STATE && strstr(e.msg, "--allow-requantize"));
    lmp_prune_summary_free(&s);
    CHECK(!test_file_exists(qout));
    p.allow_requantize = 1;
    CHECKF(lmp_prune(qpath, NULL, qout, &p, &s, &e) == LMP_OK, "%s", e.msg);
    CHECK(s.requantized == 1);
    lmp_prune_summary_free(&s);
    pm = load(qout);
    CHECK(pm != NULL);
    for (size_t i = 0; pm && i < lmp_file_n_tensors(pm->file); i++) CHECK(lmp_file_tensor(pm->file, i)->type == LMP_DTYPE_F32);
    lmp_model_free(pm);
    // Parameter errors: one precise message each.
    p.ratio = 0.95;
    CHECK(lmp_prune(path, NULL, out, &p, NULL, &e) == LMP_E_ARG && strstr(e.msg, "(0, 0.9]"));
    p.ratio = 0.3;
    p.score = LMP_PRUNE_SCORE_ACTIVATION;
    CHECK(lmp_prune(path, NULL, out, &p, NULL, &e) == LMP_E_ARG && strstr(e.msg, "--calib"));
    p.score = LMP_PRUNE_SCORE_TAYLOR;
    CHECK(lmp_prune(path, NULL, out, &p, NULL, &e) == LMP_E_ARG && strstr(e.msg, "--score taylor needs") &&
          strstr(e.msg, "--calib"));
    p.score = LMP_PRUNE_SCORE_MAGNITUDE;
    p.targets = LMP_PRUNE_LAYERS;
    CHECK(lmp_prune(path, NULL, out, &p, NULL, &e) == LMP_E_ARG && strstr(e.msg, "--calib"));
    p.targets = LMP_PRUNE_LAYERS | LMP_PRUNE_FFN;
    p.calib_path = "unused";
    CHECK(lmp_prune(path, NULL, out, &p, NULL, &e) == LMP_E_ARG && strstr(e.msg, "activation or taylor"));
}

static void test_names(void) {
    unsigned t = 0;
    char bad[16];
    CHECK(lmp_prune_targets_parse("heads,ffn,layers", &t, bad, sizeof bad) == 0 && t == 7);
    CHECK(lmp_prune_targets_parse("ffn", &t, bad, sizeof bad) == 0 && t == LMP_PRUNE_FFN);
    CHECK(lmp_prune_targets_parse("heads,neurons", &t, bad, sizeof bad) == -1 && !strcmp(bad, "neurons"));
    CHECK(lmp_prune_targets_parse("", &t, bad, sizeof bad) == -1);
    CHECK(!strcmp(lmp_prune_targets_str(LMP_PRUNE_HEADS | LMP_PRUNE_LAYERS), "heads,layers"));
    CHECK(lmp_prune_score_from_name("activation") == LMP_PRUNE_SCORE_ACTIVATION);
    CHECK(lmp_prune_score_from_name("taylor") == LMP_PRUNE_SCORE_TAYLOR);
    CHECK(lmp_prune_score_from_name("fisher") == -1);
}

int main(void) {
    test_seed();
    RUN(test_names);
    RUN(test_heads_mha);
    RUN(test_heads_gqa);
    RUN(test_ffn_channels);
    RUN(test_layers_renumbered);
    RUN(test_extremes);
    RUN(test_plan);
    RUN(test_activation_scores);
    RUN(test_taylor_scores);
    RUN(test_prune_entry);
    return test_report();
}
