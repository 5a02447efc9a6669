// plan.c - what structured pruning removes (prune_internal.h): the units of every layer in the order their
// scores give, then one ranking across layers (default) or the same fraction in every layer (uniform), stopped
// where the removed fraction of non-embedding parameters is closest to the ratio.
//
// Units. FFN: a layer's channels sorted by score; the first unit takes the width down to a multiple of align,
// every later one removes align channels, down to one block of align. Heads: built greedily per layer from two
// moves, whichever costs less score per parameter: one query head (the lowest) from every KV group, or a whole
// group (its KV head and query heads); a layer keeps at least one head. Layers: a whole block, ranked by block
// influence (layers alone) or, beside width units, by the relative change it makes to the residual stream
// per parameter (the same measure the width units' scores are in). It does not score (score.c) nor touch
// tensors (surgery.c).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "prune/prune_internal.h"

// ---- parameter counts ----

static int64_t mat_params(const lmp_weight *w) { return w->rows * w->cols; }

int64_t lmp_prune_layer_params(const lmp_model *m, int l) {
    const lmp_layer *L = &m->layers[l];
    int64_t n = 2 * (int64_t)m->cfg.dim;  // the two norms
    for (int k = 0; k < LMP_MAT_COUNT; k++) n += mat_params(lmp_layer_mat_c(L, k));
    return n;
}

int64_t lmp_prune_model_params(const lmp_model *m) {
    int64_t emb = m->tok_embd.rows * m->tok_embd.cols;
    if (!m->tied) emb += m->output.rows * m->output.cols;
    return m->n_params - emb;
}

int64_t lmp_prune_layer_params_after(const lmp_model *m, const lmp_prune_plan *plan, int l) {
    const lmp_prune_layer_plan *p = &plan->layer[l];
    if (p->removed) return 0;
    const int64_t dim = m->cfg.dim, hd = m->cfg.head_dim;
    return 2 * dim + 2 * (int64_t)p->heads * hd * dim + 2 * (int64_t)p->kv * hd * dim + 3 * (int64_t)p->ffn * dim;
}

// ---- plans ----

lmp_status lmp_prune_plan_init(const lmp_model *m, lmp_prune_plan *plan, lmp_error *err) {
    memset(plan, 0, sizeof *plan);
    plan->n_layers = m->cfg.n_layers;
    plan->layer = lmp_calloc((size_t)plan->n_layers, sizeof *plan->layer);
    int ok = plan->layer != NULL;
    for (int l = 0; ok && l < plan->n_layers; l++) {
        const lmp_layer *L = &m->layers[l];
        lmp_prune_layer_plan *p = &plan->layer[l];
        p->keep_head = lmp_malloc((size_t)L->n_heads);
        p->keep_kv = lmp_malloc((size_t)L->n_kv_heads);
        p->keep_chan = lmp_malloc((size_t)L->ffn);
        ok = p->keep_head && p->keep_kv && p->keep_chan;
        if (!ok) break;
        memset(p->keep_head, 1, (size_t)L->n_heads);
        memset(p->keep_kv, 1, (size_t)L->n_kv_heads);
        memset(p->keep_chan, 1, (size_t)L->ffn);
        p->heads = L->n_heads;
        p->kv = L->n_kv_heads;
        p->ffn = L->ffn;
    }
    if (!ok) {
        lmp_prune_plan_free(plan);
        return lmp_err(err, LMP_E_NOMEM, "out of memory for the pruning plan");
    }
    return LMP_OK;
}

void lmp_prune_plan_free(lmp_prune_plan *plan) {
    if (!plan) return;
    for (int l = 0; plan->layer && l < plan->n_layers; l++) {
        lmp_free(plan->layer[l].keep_head);
        lmp_free(plan->layer[l].keep_kv);
        lmp_free(plan->layer[l].keep_chan);
    }
    lmp_free(plan->layer);
    memset(plan, 0, sizeof *plan);
}

lmp_status lmp_prune_plan_check(const lmp_model *m, lmp_prune_plan *plan, lmp_error *err) {
    if (plan->n_layers != m->cfg.n_layers) return lmp_err(err, LMP_E_ARG, "plan is for %d layers, model has %d",
                                                          plan->n_layers, m->cfg.n_layers);
    int kept_layers = 0;
    for (int l = 0; l < plan->n_layers; l++) {
        const lmp_layer *L = &m->layers[l];
        lmp_prune_layer_plan *p = &plan->layer[l];
        if (p->removed) {
            p->heads = p->kv = p->ffn = 0;
            continue;
        }
        kept_layers++;
        const int group = L->n_heads / L->n_kv_heads;
        int per_group = -1;
        p->heads = p->kv = p->ffn = 0;
        for (int g = 0; g < L->n_kv_heads; g++) {
            int n = 0;
            for (int i = 0; i < group; i++) n += p->keep_head[g * group + i] != 0;
            if (!p->keep_kv[g]) {
                if (n) return lmp_err(err, LMP_E_ARG, "layer %d: KV head %d is removed but %d of its query heads are kept",
                                      l, g, n);
                continue;
            }
            if (per_group < 0) per_group = n;
            else if (n != per_group)
                return lmp_err(err, LMP_E_ARG, "layer %d: KV groups keep different numbers of query heads (%d and %d)",
                               l, per_group, n);
            p->kv++;
            p->heads += n;
        }
        if (p->heads == 0) return lmp_err(err, LMP_E_ARG, "layer %d would keep no attention head", l);
        for (int j = 0; j < L->ffn; j++) p->ffn += p->keep_chan[j] != 0;
        if (p->ffn == 0) return lmp_err(err, LMP_E_ARG, "layer %d would keep no FFN channel", l);
    }
    if (kept_layers == 0) return lmp_err(err, LMP_E_ARG, "the plan removes every layer");
    return LMP_OK;
}

// ---- units ----

enum { U_HEADS = 0, U_FFN = 1, U_LAYER = 2 };

typedef struct unit {
    double score, cost;  // additive score, parameters removed
    int first, count;    // U_FFN: channels order[first .. first+count); U_HEADS: heads[first .. first+count)
    int kv;              // U_HEADS: the KV head removed with them, or -1
} unit;

// The units of one (layer, kind), in the order they are taken.
typedef struct seq {
    int layer, kind;
    unit *u;
    int n, next;
    int open;
    int *idx;  // U_FFN: channel order; U_HEADS: query heads in removal order
} seq;

static void seq_free(seq *s) {
    lmp_free(s->u);
    lmp_free(s->idx);
}

static const double *g_sort_key;
static int cmp_by_key(const void *a, const void *b) {
    double x = g_sort_key[*(const int *)a], y = g_sort_key[*(const int *)b];
    if (x < y) return -1;
    if (x > y) return 1;
    return *(const int *)a - *(const int *)b;  // stable, deterministic
}

static lmp_status seq_ffn(const lmp_model *m, const lmp_prune_scores *s, int l, int align, seq *q, lmp_error *err) {
    const int F = m->layers[l].ffn;
    memset(q, 0, sizeof *q);
    q->layer = l;
    q->kind = U_FFN;
    if (F <= align) return LMP_OK;
    q->idx = lmp_malloc((size_t)F * sizeof(int));
    q->u = lmp_malloc((size_t)(F / align + 1) * sizeof(unit));
    if (!q->idx || !q->u) return lmp_err(err, LMP_E_NOMEM, "out of memory planning layer %d", l);
    for (int j = 0; j < F; j++) q->idx[j] = j;
    g_sort_key = s->chan[l];
    qsort(q->idx, (size_t)F, sizeof(int), cmp_by_key);
    const double per = 3.0 * m->cfg.dim;
    int width = F, pos = 0;
    while (width > align) {
        int next = width % align ? width / align * align : width - align;
        unit *u = &q->u[q->n++];
        u->first = pos;
        u->count = width - next;
        u->kv = -1;
        u->score = 0;
        for (int i = 0; i < u->count; i++) u->score += s->chan[l][q->idx[pos + i]];
        u->cost = per * u->count;
        pos += u->count;
        width = next;
    }
    q->open = q->n > 0;
    return LMP_OK;
}

// Why simulated greedily here and not ranked globally: which query heads go in a "one per group" move depends
// on the moves before it (a group removed earlier no longer contributes one), so the moves of a layer are fixed
// in order first and then compete with other layers as a sequence.
static lmp_status seq_heads(const lmp_model *m, const lmp_prune_scores *s, int l, seq *q, lmp_error *err) {
    const lmp_layer *L = &m->layers[l];
    const int H = L->n_heads, G = L->n_kv_heads, group = H / G;
    memset(q, 0, sizeof *q);
    q->layer = l;
    q->kind = U_HEADS;
    q->idx = lmp_malloc((size_t)H * sizeof(int));
    q->u = lmp_malloc((size_t)(H + G) * sizeof(unit));
    int *order = lmp_malloc((size_t)H * sizeof(int));  // per group, its query heads by ascending score
    int *taken = lmp_calloc((size_t)G, sizeof(int));    // query heads removed from group g so far
    uint8_t *alive = lmp_malloc((size_t)G);
    if (!q->idx || !q->u || !order || !taken || !alive) {
        lmp_free(order);
        lmp_free(taken);
        lmp_free(alive);
        return lmp_err(err, LMP_E_NOMEM, "out of memory planning layer %d", l);
    }
    for (int h = 0; h < H; h++) order[h] = h;
    g_sort_key = s->head[l];
    for (int g = 0; g < G; g++) qsort(order + g * group, (size_t)group, sizeof(int), cmp_by_key);
    memset(alive, 1, (size_t)G);
    const double qcost = 2.0 * m->cfg.head_dim * m->cfg.dim, kvcost = qcost;
    int n_alive = G, kq = group, pos = 0;
    while (n_alive > 1 || kq > 1) {
        double sa = 0, sb = INFINITY;
        int best_g = -1;
        if (kq > 1)
            for (int g = 0; g < G; g++)
                if (alive[g]) sa += s->head[l][order[g * group + taken[g]]];
        if (n_alive > 1)
            for (int g = 0; g < G; g++) {
                if (!alive[g]) continue;
                double sc = s->kv[l][g];
                for (int i = taken[g]; i < group; i++) sc += s->head[l][order[g * group + i]];
                if (sc < sb) {
                    sb = sc;
                    best_g = g;
                }
            }
        double ca = n_alive * qcost, cb = kq * qcost + kvcost;
        unit *u = &q->u[q->n++];
        u->first = pos;
        if (kq > 1 && (n_alive == 1 || sa / ca <= sb / cb)) {
            for (int g = 0; g < G; g++)
                if (alive[g]) q->idx[pos++] = order[g * group + taken[g]++];
            u->count = n_alive;
            u->kv = -1;
            u->score = sa;
            u->cost = ca;
            kq--;
        } else {
            for (int i = taken[best_g]; i < group; i++) q->idx[pos++] = order[best_g * group + i];
            u->count = group - taken[best_g];
            u->kv = best_g;
            u->score = sb;
            u->cost = cb;
            alive[best_g] = 0;
            n_alive--;
        }
    }
    lmp_free(order);
    lmp_free(taken);
    lmp_free(alive);
    q->open = q->n > 0;
    return LMP_OK;
}

// Applies unit u of sequence q to the plan and its accounting.
static void unit_apply(const lmp_model *m, const seq *q, const unit *u, lmp_prune_plan *plan) {
    lmp_prune_layer_plan *p = &plan->layer[q->layer];
    if (q->kind == U_FFN) {
        for (int i = 0; i < u->count; i++) p->keep_chan[q->idx[u->first + i]] = 0;
        p->ffn -= u->count;
        p->removed_params[1] += (int64_t)u->cost;
    } else if (q->kind == U_HEADS) {
        for (int i = 0; i < u->count; i++) p->keep_head[q->idx[u->first + i]] = 0;
        p->heads -= u->count;
        if (u->kv >= 0) {
            p->keep_kv[u->kv] = 0;
            p->kv--;
        }
        p->removed_params[0] += (int64_t)u->cost;
    }
}

// Why: take a unit only if it brings the removed count closer to the target; a unit too big to do so closes
// its sequence (later units of the same layer and kind could only be taken after it).
static int unit_fits(double removed, double cost, double target) { return cost < 2.0 * (target - removed); }

typedef struct planner {
    const lmp_model *m;
    const lmp_prune_scores *s;
    const lmp_prune_plan_opts *o;
    seq *seqs;  // (2 * n_layers): heads then ffn of each layer
    int n_seqs;
    int64_t *layer_left;  // (n_layers) parameters the layer still has
} planner;

static void planner_free(planner *P) {
    for (int i = 0; P->seqs && i < P->n_seqs; i++) seq_free(&P->seqs[i]);
    lmp_free(P->seqs);
    lmp_free(P->layer_left);
}

static int layer_kept(const lmp_prune_plan_opts *o, int l) { return o->keep_layer && o->keep_layer[l]; }

static lmp_status planner_init(planner *P, const lmp_model *m, const lmp_prune_scores *s, const lmp_prune_plan_opts *o,
                               lmp_error *err) {
    memset(P, 0, sizeof *P);
    P->m = m;
    P->s = s;
    P->o = o;
    const int L = m->cfg.n_layers;
    P->seqs = lmp_calloc((size_t)2 * L, sizeof(seq));
    P->layer_left = lmp_malloc((size_t)L * sizeof(int64_t));
    if (!P->seqs || !P->layer_left) return lmp_err(err, LMP_E_NOMEM, "out of memory for the pruning plan");
    P->n_seqs = 2 * L;
    for (int l = 0; l < L; l++) {
        P->layer_left[l] = lmp_prune_layer_params(m, l);
        P->seqs[2 * l] = (seq){l, U_HEADS, NULL, 0, 0, 0, NULL};
        P->seqs[2 * l + 1] = (seq){l, U_FFN, NULL, 0, 0, 0, NULL};
        if (layer_kept(o, l)) continue;
        lmp_status st;
        if ((o->targets & LMP_PRUNE_HEADS) && (st = seq_heads(m, s, l, &P->seqs[2 * l], err))) return st;
        if ((o->targets & LMP_PRUNE_FFN) && (st = seq_ffn(m, s, l, o->align, &P->seqs[2 * l + 1], err))) return st;
    }
    return LMP_OK;
}

// Width units of layer l that can still be removed, in parameters.
static double seq_left(const seq *q) {
    double c = 0;
    for (int i = q->next; i < q->n; i++) c += q->u[i].cost;
    return c;
}

// The most the targets can remove (parameters): every width unit, and every removable layer but one unless a
// layer is kept whole; the layer left is the one that leaves the least.
static double max_removable(const planner *P) {
    const int L = P->m->cfg.n_layers;
    double width = 0;
    for (int i = 0; i < P->n_seqs; i++) width += seq_left(&P->seqs[i]);
    if (!(P->o->targets & LMP_PRUNE_LAYERS)) return width;
    double total = 0, best_left = INFINITY;
    int any_kept = 0;
    for (int l = 0; l < L; l++) {
        if (layer_kept(P->o, l)) {
            any_kept = 1;
            continue;
        }
        double lp = (double)lmp_prune_layer_params(P->m, l);
        total += lp;
        double left = lp - seq_left(&P->seqs[2 * l]) - seq_left(&P->seqs[2 * l + 1]);
        if (left < best_left) best_left = left;
    }
    return any_kept || !isfinite(best_left) ? total : total - best_left;
}

static int layers_left(const lmp_prune_plan *plan) {
    int n = 0;
    for (int l = 0; l < plan->n_layers; l++) n += !plan->layer[l].removed;
    return n;
}

static void layer_remove(planner *P, int l, lmp_prune_plan *plan) {
    lmp_prune_layer_plan *p = &plan->layer[l];
    p->removed = 1;
    p->removed_params[2] += P->layer_left[l];
    P->layer_left[l] = 0;
    P->seqs[2 * l].open = P->seqs[2 * l + 1].open = 0;
}

// One ranking across layers: repeatedly the cheapest next unit (score per parameter, scaled per layer), taken if
// it brings the count closer to the target.
static void plan_global(planner *P, double target, lmp_prune_plan *plan) {
    const lmp_prune_scores *s = P->s;
    const int L = P->m->cfg.n_layers;
    const int layers = (P->o->targets & LMP_PRUNE_LAYERS) != 0;
    const int width = (P->o->targets & (LMP_PRUNE_HEADS | LMP_PRUNE_FFN)) != 0;
    uint8_t *layer_open = lmp_calloc((size_t)L, 1);
    if (!layer_open) return;
    for (int l = 0; l < L; l++) layer_open[l] = layers && !layer_kept(P->o, l);
    double removed = 0;
    for (;;) {
        double best = INFINITY;
        int bi = -1, bl = -1;
        for (int i = 0; i < P->n_seqs; i++) {
            seq *q = &P->seqs[i];
            if (!q->open || q->next >= q->n) continue;
            const unit *u = &q->u[q->next];
            double key = u->score / s->scale[q->layer] / u->cost;
            if (key < best) {
                best = key;
                bi = i;
                bl = -1;
            }
        }
        for (int l = 0; l < L; l++) {
            if (!layer_open[l]) continue;
            // Layers alone: block influence (ShortGPT). Beside width units: relative change of the residual
            // stream per parameter, the measure the width scores are in. A score with its own block measure
            // (Taylor) ranks by it, per parameter beside width units.
            double lm = s->block ? s->block[l] : width ? s->change[l] : s->influence[l];
            double key = width ? lm / (double)P->layer_left[l] : lm;
            if (key < best || (bi < 0 && bl < 0)) {
                best = key;
                bl = l;
                bi = -1;
            }
        }
        if (bi < 0 && bl < 0) break;
        if (bl >= 0) {
            layer_open[bl] = 0;
            if (layers_left(plan) > 1 && unit_fits(removed, (double)P->layer_left[bl], target)) {
                removed += (double)P->layer_left[bl];
                layer_remove(P, bl, plan);
            }
            continue;
        }
        seq *q = &P->seqs[bi];
        const unit *u = &q->u[q->next];
        if (!unit_fits(removed, u->cost, target)) {
            q->open = 0;
            continue;
        }
        unit_apply(P->m, q, u, plan);
        removed += u->cost;
        P->layer_left[q->layer] -= (int64_t)u->cost;
        q->next++;
    }
    lmp_free(layer_open);
}

// Keeps in layer l the n_keep highest-scoring channels.
static void keep_top_channels(const lmp_prune_scores *s, int l, int F, int n_keep, int *order, lmp_prune_layer_plan *p) {
    for (int j = 0; j < F; j++) order[j] = j;
    g_sort_key = s->chan[l];
    qsort(order, (size_t)F, sizeof(int), cmp_by_key);
    for (int i = 0; i < F - n_keep; i++) p->keep_chan[order[i]] = 0;
    p->ffn = n_keep;
}

// Keeps in layer l n_groups KV groups with kq query heads each: in every group its kq best query heads, and the
// groups whose kept heads score highest.
static void keep_top_heads(const lmp_prune_scores *s, int l, const lmp_layer *L, int n_groups, int kq, int *order,
                           lmp_prune_layer_plan *p) {
    const int G = L->n_kv_heads, group = L->n_heads / G;
    double gs[4096];
    int gorder[4096];
    for (int h = 0; h < L->n_heads; h++) order[h] = h;
    g_sort_key = s->head[l];
    for (int g = 0; g < G; g++) {
        qsort(order + g * group, (size_t)group, sizeof(int), cmp_by_key);
        gs[g] = s->kv[l][g];
        for (int i = group - kq; i < group; i++) gs[g] += s->head[l][order[g * group + i]];
        for (int i = 0; i < group - kq; i++) p->keep_head[order[g * group + i]] = 0;
        gorder[g] = g;
    }
    g_sort_key = gs;
    qsort(gorder, (size_t)G, sizeof(int), cmp_by_key);
    for (int i = 0; i < G - n_groups; i++) {
        int g = gorder[i];
        p->keep_kv[g] = 0;
        for (int k = 0; k < group; k++) p->keep_head[g * group + k] = 0;
    }
    p->heads = n_groups * kq;
    p->kv = n_groups;
}

// The same fraction f of every layer's attention (heads) and FFN (ffn) parameters, f chosen so that the total is
// the target. Why shapes first and scores second: layers that were alike stay alike (a uniform prune exports
// to GGUF), so each layer gets the kept counts closest to its share, and the scores pick which units those are.
static void plan_uniform(planner *P, double target, lmp_prune_plan *plan) {
    const lmp_model *m = P->m;
    const int L = m->cfg.n_layers;
    const double dim = m->cfg.dim, hd = m->cfg.head_dim, qcost = 2 * hd * dim;
    double domain = 0;
    for (int l = 0; l < L; l++) {
        if (layer_kept(P->o, l)) continue;
        const lmp_layer *Ly = &m->layers[l];
        if (P->o->targets & LMP_PRUNE_HEADS) domain += (Ly->n_heads + Ly->n_kv_heads) * qcost;
        if (P->o->targets & LMP_PRUNE_FFN) domain += 3.0 * Ly->ffn * dim;
    }
    int *order = lmp_malloc((size_t)(m->cfg.max_ffn > m->cfg.max_heads ? m->cfg.max_ffn : m->cfg.max_heads) * sizeof(int));
    if (domain <= 0 || !order || m->cfg.max_kv_heads > 4096) {
        lmp_free(order);
        return;
    }
    const double f = target / domain;
    const int align = P->o->align;
    for (int l = 0; l < L; l++) {
        if (layer_kept(P->o, l)) continue;
        const lmp_layer *Ly = &m->layers[l];
        lmp_prune_layer_plan *p = &plan->layer[l];
        if (P->o->targets & LMP_PRUNE_HEADS) {
            const int G = Ly->n_kv_heads, group = Ly->n_heads / G;
            const double share = f * (Ly->n_heads + Ly->n_kv_heads) * qcost;
            double best = INFINITY;
            int bg = G, bk = group;
            for (int g = G; g >= 1; g--)
                for (int k = group; k >= 1; k--) {
                    double rem = ((double)(Ly->n_heads - g * k) + (G - g)) * qcost;
                    if (fabs(rem - share) < best - 1e-9) {
                        best = fabs(rem - share);
                        bg = g;
                        bk = k;
                    }
                }
            keep_top_heads(P->s, l, Ly, bg, bk, order, p);
            p->removed_params[0] += (int64_t)(((double)(Ly->n_heads - bg * bk) + (G - bg)) * qcost);
        }
        if ((P->o->targets & LMP_PRUNE_FFN) && Ly->ffn > align) {
            const double share = f * 3.0 * Ly->ffn * dim;
            double best = share;  // keeping the full width removes 0
            int bw = Ly->ffn;
            for (int w = (Ly->ffn - 1) / align * align; w >= align; w -= align) {
                double rem = 3.0 * (Ly->ffn - w) * dim;
                if (fabs(rem - share) < best - 1e-9) {
                    best = fabs(rem - share);
                    bw = w;
                }
            }
            keep_top_channels(P->s, l, Ly->ffn, bw, order, p);
            p->removed_params[1] += (int64_t)(3.0 * (Ly->ffn - bw) * dim);
        }
    }
    lmp_free(order);
}

lmp_status lmp_prune_plan_make(const lmp_model *m, const lmp_prune_scores *s, const lmp_prune_plan_opts *o,
                               lmp_prune_plan *plan, double *max_fraction, lmp_error *err) {
    *max_fraction = 0;
    if (!(o->ratio > 0) || o->ratio > LMP_PRUNE_MAX_RATIO)
        return lmp_err(err, LMP_E_ARG, "--ratio %g must be in (0, %g]", o->ratio, LMP_PRUNE_MAX_RATIO);
    if (o->align < 1) return lmp_err(err, LMP_E_ARG, "--align %d must be at least 1", o->align);
    if (o->uniform && (o->targets & LMP_PRUNE_LAYERS))
        return lmp_err(err, LMP_E_ARG, "--uniform prunes the width of every layer; it does not combine with the layers target");
    if ((o->targets & LMP_PRUNE_LAYERS) && !s->block && !(s->influence && s->change))
        return lmp_err(err, LMP_E_ARG, "the layers target needs block statistics from calibration text");
    planner P;
    lmp_status st = planner_init(&P, m, s, o, err);
    if (!st) st = lmp_prune_plan_init(m, plan, err);
    if (st) {
        planner_free(&P);
        return st;
    }
    const double total = (double)lmp_prune_model_params(m);
    *max_fraction = max_removable(&P) / total;
    if (o->ratio > *max_fraction) {
        st = lmp_err(err, LMP_E_ARG,
                     "--ratio %g cannot be reached with targets %s: at most %.4f of the non-embedding parameters can be "
                     "removed", o->ratio, lmp_prune_targets_str(o->targets), *max_fraction);
    } else {
        if (o->uniform) plan_uniform(&P, o->ratio * total, plan);
        else plan_global(&P, o->ratio * total, plan);
        st = lmp_prune_plan_check(m, plan, err);
    }
    planner_free(&P);
    if (st) lmp_prune_plan_free(plan);
    return st;
}
