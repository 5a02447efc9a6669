// prune.c - the structured pruning driver (prune.h): checks the parameters and the input, scores (score.c),
// plans (plan.c), fills the summary, and writes the pruned model (surgery.c) with prune.* provenance
// (docs/format.md) through the atomic writer.
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "format/qtypes.h"
#include "prune/prune_internal.h"

const lmp_prune_name lmp_prune_target_names[LMP_PRUNE_N_TARGETS] = {
    {"heads", "attention heads (GQA: the same number of query heads from every group, or whole groups)"},
    {"ffn", "FFN channels (rows of gate and up, the column of down); widths stay multiples of --align"},
    {"layers", "whole blocks by block influence (ShortGPT; --score taylor: the block's Taylor sum; needs --calib);\n"
               "               later blocks are renumbered"},
};

const lmp_prune_name lmp_prune_score_names[LMP_PRUNE_SCORE_COUNT] = {
    {"magnitude", "weight norms of each unit's rows and columns (no data needed)"},
    {"activation", "mean |activation| of each channel / head output x norm of the weights reading it (needs --calib)"},
    {"taylor", "sum of |w * dL/dw| over each unit's weights, L the calibration cross-entropy (needs --calib; memory:\n"
               "               3 f32 copies of the model + activations of 4 sequences)"},
};

int lmp_prune_score_from_name(const char *name) {
    for (int i = 0; i < LMP_PRUNE_SCORE_COUNT; i++)
        if (!strcmp(name, lmp_prune_score_names[i].name)) return i;
    return -1;
}

int lmp_prune_targets_parse(const char *list, unsigned *out, char *bad, size_t bad_cap) {
    unsigned t = 0;
    const char *p = list;
    for (;;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        int found = -1;
        for (int i = 0; i < LMP_PRUNE_N_TARGETS; i++)
            if (strlen(lmp_prune_target_names[i].name) == len && !strncmp(p, lmp_prune_target_names[i].name, len)) found = i;
        if (found < 0) {
            if (bad && bad_cap) snprintf(bad, bad_cap, "%.*s", (int)len, p);
            return -1;
        }
        t |= 1u << found;
        if (!e) break;
        p = e + 1;
    }
    *out = t;
    return 0;
}

const char *lmp_prune_targets_str(unsigned targets) {
    static char buf[64];
    buf[0] = 0;
    for (int i = 0; i < LMP_PRUNE_N_TARGETS; i++)
        if (targets & (1u << i)) {
            if (buf[0]) strcat(buf, ",");
            strcat(buf, lmp_prune_target_names[i].name);
        }
    return buf;
}

void lmp_prune_params_default(lmp_prune_params *p) {
    memset(p, 0, sizeof *p);
    p->ratio = 0.3;
    p->targets = LMP_PRUNE_HEADS | LMP_PRUNE_FFN;
    p->score = LMP_PRUNE_SCORE_MAGNITUDE;
    p->align = 32;
}

void lmp_prune_summary_free(lmp_prune_summary *s) {
    if (!s) return;
    lmp_free(s->layers);
    s->layers = NULL;
}

static void warnf(const lmp_prune_params *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warnf(const lmp_prune_params *p, const char *fmt, ...) {
    if (!p->warn) return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    p->warn(p->warn_user, msg);
}

static lmp_status check_params(const lmp_prune_params *p, lmp_error *err) {
    if (!(p->ratio > 0) || p->ratio > LMP_PRUNE_MAX_RATIO)
        return lmp_err(err, LMP_E_ARG, "--ratio %g must be in (0, %g]", p->ratio, LMP_PRUNE_MAX_RATIO);
    if (!p->targets || (p->targets & ~7u)) return lmp_err(err, LMP_E_ARG, "no valid pruning target");
    if ((unsigned)p->score >= LMP_PRUNE_SCORE_COUNT) return lmp_err(err, LMP_E_ARG, "unknown score %d", (int)p->score);
    if (p->align < 1 || p->align > 65536) return lmp_err(err, LMP_E_ARG, "--align %d must be in 1..65536", p->align);
    if ((p->score == LMP_PRUNE_SCORE_ACTIVATION || p->score == LMP_PRUNE_SCORE_TAYLOR) && !p->calib_path)
        return lmp_err(err, LMP_E_ARG, "--score %s needs calibration text (--calib FILE)", lmp_prune_score_names[p->score].name);
    if ((p->targets & LMP_PRUNE_LAYERS) && !p->calib_path)
        return lmp_err(err, LMP_E_ARG, "the layers target needs calibration text for block influence (--calib FILE)");
    if ((p->targets & LMP_PRUNE_LAYERS) && p->uniform)
        return lmp_err(err, LMP_E_ARG, "--uniform prunes the width of every layer; it does not combine with the layers target");
    if ((p->targets & LMP_PRUNE_LAYERS) && (p->targets & (LMP_PRUNE_HEADS | LMP_PRUNE_FFN)) &&
        p->score == LMP_PRUNE_SCORE_MAGNITUDE)
        return lmp_err(err, LMP_E_ARG, "ranking layers together with heads or FFN channels needs --score activation or taylor");
    return LMP_OK;
}

static lmp_status build_meta(lmp_meta *m, const lmp_prune_params *p, const char *in_path, const lmp_model *model,
                             const lmp_prune_plan *plan, const lmp_prune_summary *s, lmp_error *err) {
    lmp_status st = LMP_OK;
    char line[2600];
#define PUT(key, call) lmp_meta_keep(&st, call, key, err)
    PUT("prune.ratio", lmp_meta_set_f32(m, "prune.ratio", (float)p->ratio));
    PUT("prune.removed", lmp_meta_set_f64(m, "prune.removed", s->fraction));
    PUT("prune.targets", lmp_meta_set_str(m, "prune.targets", lmp_prune_targets_str(p->targets)));
    PUT("prune.score", lmp_meta_set_str(m, "prune.score", lmp_prune_score_names[p->score].name));
    PUT("prune.uniform", lmp_meta_set_bool(m, "prune.uniform", p->uniform));
    PUT("prune.align", lmp_meta_set_u32(m, "prune.align", (uint32_t)p->align));
    if (s->calib_tokens_used) {
        const char *base = strrchr(p->calib_path, '/');
        PUT("prune.calib_file", lmp_meta_set_str(m, "prune.calib_file", base ? base + 1 : p->calib_path));
        PUT("prune.calib_tokens", lmp_meta_set_u64(m, "prune.calib_tokens", (uint64_t)s->calib_tokens_used));
    }
    PUT("prune.params_before", lmp_meta_set_u64(m, "prune.params_before", (uint64_t)s->params_in));
    PUT("prune.params_after", lmp_meta_set_u64(m, "prune.params_after", (uint64_t)s->params_out));
    uint32_t src[4096];
    int n = 0;
    for (int l = 0; l < plan->n_layers && n < 4096; l++)
        if (!plan->layer[l].removed) src[n++] = (uint32_t)l;
    PUT("prune.layer_source", lmp_meta_set_arr(m, "prune.layer_source", LMP_KV_U32, src, (uint64_t)n));
    uint32_t crc = lmp_file_checksum(model->file);
    PUT("prune.parent_checksum", lmp_meta_set_u32(m, "prune.parent_checksum", crc));
    PUT("provenance.tool", lmp_meta_set_str(m, "provenance.tool", "lmpress " LMP_VERSION_STRING));
    PUT("provenance.parent", lmp_meta_set_str(m, "provenance.parent", in_path));
    PUT("provenance.parent_checksum", lmp_meta_set_u32(m, "provenance.parent_checksum", crc));
    if (p->command_line) PUT("provenance.command", lmp_meta_set_str(m, "provenance.command", p->command_line));
    snprintf(line, sizeof line, "prune: %s", p->command_line ? p->command_line : lmp_prune_targets_str(p->targets));
    PUT("provenance.history", lmp_meta_append_str(m, "provenance.history", line));
#undef PUT
    return st;
}

static void fill_summary(const lmp_model *m, const lmp_prune_plan *plan, const lmp_prune_scores *sc,
                         lmp_prune_summary *s) {
    const int L = m->cfg.n_layers;
    s->params_in = lmp_prune_model_params(m);
    s->params_out = s->params_in;
    s->n_layers_in = L;
    s->n_layers_out = 0;
    memset(s->removed, 0, sizeof s->removed);
    for (int l = 0; l < L; l++) {
        const lmp_layer *Ly = &m->layers[l];
        const lmp_prune_layer_plan *p = &plan->layer[l];
        lmp_prune_layer_info *li = &s->layers[l];
        li->index_out = p->removed ? -1 : s->n_layers_out++;
        li->heads_in = Ly->n_heads;
        li->kv_in = Ly->n_kv_heads;
        li->ffn_in = Ly->ffn;
        li->heads_out = p->heads;
        li->kv_out = p->kv;
        li->ffn_out = p->ffn;
        li->params_in = lmp_prune_layer_params(m, l);
        li->params_out = lmp_prune_layer_params_after(m, plan, l);
        li->block_influence = sc && sc->influence ? sc->influence[l] : NAN;
        s->params_out -= li->params_in - li->params_out;
        for (int k = 0; k < LMP_PRUNE_N_TARGETS; k++) s->removed[k] += p->removed_params[k];
    }
    s->fraction = s->params_in ? 1.0 - (double)s->params_out / (double)s->params_in : 0;
    s->total_in = m->n_params;
    s->total_out = m->n_params - (s->params_in - s->params_out);
}

lmp_status lmp_prune(const char *in_path, const lmp_import_opts *io, const char *out_path, const lmp_prune_params *p,
                     lmp_prune_summary *summary, lmp_error *err) {
    double t0 = lmp_time_now();
    lmp_prune_summary local;
    lmp_prune_summary *s = summary ? summary : &local;
    memset(s, 0, sizeof *s);
    lmp_status st = check_params(p, err);
    if (st) return st;
    lmp_model *m = NULL;
    lmp_pool *pool = NULL;
    lmp_prune_scores sc;
    lmp_prune_plan plan;
    lmp_builder *b = NULL;
    uint8_t *keep = NULL;
    memset(&sc, 0, sizeof sc);
    memset(&plan, 0, sizeof plan);
    if ((st = lmp_model_load(in_path, io, &m, err))) goto done;
    const lmp_file *f = m->file;
    int quantized = 0;
    for (size_t i = 0; i < lmp_file_n_tensors(f); i++) {
        const lmp_tensor *t = lmp_file_tensor(f, i);
        if (lmp_type_get(t->type)->is_quantized) quantized = 1;
        s->bytes_in += t->nbytes;
    }
    if (quantized && !p->allow_requantize) {
        st = lmp_err(err, LMP_E_STATE,
                     "'%s' is quantized; prune the float model (or use --allow-requantize to dequantize it to f32 first)",
                     in_path);
        goto done;
    }
    const int L = m->cfg.n_layers;
    keep = lmp_calloc((size_t)L, 1);
    s->layers = lmp_calloc((size_t)L, sizeof *s->layers);
    pool = lmp_pool_new(p->n_threads);
    if (!keep || !s->layers || !pool) {
        st = lmp_err(err, LMP_E_NOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < p->n_keep_layers; i++) {
        if (p->keep_layers[i] < 0 || p->keep_layers[i] >= L) {
            st = lmp_err(err, LMP_E_ARG, "--keep-layers: layer %d does not exist (the model has layers 0..%d)",
                         p->keep_layers[i], L - 1);
            goto done;
        }
        keep[p->keep_layers[i]] = 1;
    }
    if (quantized) {
        s->requantized = 1;
        warnf(p, "input is quantized: dequantized to f32 before pruning (--allow-requantize); the output is f32");
    }
    lmp_prune_plan_opts po = {p->ratio, p->targets, p->uniform, p->align, keep};
    // Whether the ratio can be reached depends on the shapes only: checked before a long calibration.
    if ((st = lmp_prune_scores_init(m, &sc, err))) goto done;
    st = lmp_prune_plan_make(m, &sc, &po, &plan, &s->max_fraction, err);
    lmp_prune_plan_free(&plan);
    lmp_prune_scores_free(&sc);
    if (st) goto done;
    double ts = lmp_time_now();
    const int width = (p->targets & (LMP_PRUNE_HEADS | LMP_PRUNE_FFN)) != 0;
    if (p->score == LMP_PRUNE_SCORE_TAYLOR) {  // width and layers by the Taylor sums
        lmp_prune_calib_opts co = {p->calib_path, p->calib_tokens, p->calib_ctx, pool, p->progress, p->progress_user};
        int ctx = p->calib_ctx > 0 ? p->calib_ctx : m->cfg.ctx < 512 ? m->cfg.ctx : 512;
        warnf(p, "taylor score: gradients of all %lld parameters in f32, about %.0f MB beside the model",
              (long long)m->n_params, lmp_prune_taylor_memory(m, ctx) / 1e6);
        if ((st = lmp_prune_score_taylor(m, &co, &sc, err))) goto done;
        s->calib_tokens_used = sc.calib_tokens;
    } else if (p->calib_path && (p->score == LMP_PRUNE_SCORE_ACTIVATION || (p->targets & LMP_PRUNE_LAYERS))) {
        lmp_prune_calib_opts co = {p->calib_path, p->calib_tokens, p->calib_ctx, pool, p->progress, p->progress_user};
        lmp_prune_scores act;
        st = lmp_prune_score_activation(m, &co, width && p->score == LMP_PRUNE_SCORE_ACTIVATION, &act, err);
        if (st) goto done;
        s->calib_tokens_used = act.calib_tokens;
        if (p->score == LMP_PRUNE_SCORE_MAGNITUDE) {  // width by magnitude, layers by the block statistics
            if ((st = lmp_prune_score_magnitude(m, &sc, err))) {
                lmp_prune_scores_free(&act);
                goto done;
            }
            for (int l = 0; l < L; l++) {
                sc.influence[l] = act.influence[l];
                sc.change[l] = act.change[l];
            }
            sc.calib_tokens = act.calib_tokens;
            lmp_prune_scores_free(&act);
        } else {
            sc = act;
        }
    } else if ((st = lmp_prune_score_magnitude(m, &sc, err))) {
        goto done;
    }
    s->seconds_scoring = lmp_time_now() - ts;
    if ((st = lmp_prune_plan_make(m, &sc, &po, &plan, &s->max_fraction, err))) goto done;
    fill_summary(m, &plan, &sc, s);
    if (fabs(s->fraction - p->ratio) > 0.02)
        warnf(p, "removed %.2f%% of the non-embedding parameters for --ratio %g: the closest the unit sizes allow",
              100.0 * s->fraction, p->ratio);
    if (p->dry_run) goto done;
    b = lmp_builder_new();
    lmp_meta *meta = b ? lmp_builder_meta(b) : NULL;
    if (!b || !meta) {
        st = lmp_err(err, LMP_E_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < lmp_meta_count(lmp_file_meta(f)) && !st; i++) {
        const lmp_kv *kv = lmp_meta_at(lmp_file_meta(f), i);
        if (lmp_meta_set_kv(meta, kv->key, kv)) st = lmp_err(err, LMP_E_NOMEM, "out of memory copying metadata");
    }
    if (st) goto done;
    if ((st = lmp_prune_apply(m, &plan, quantized, b, p->progress, p->progress_user, err))) goto done;
    if ((st = build_meta(meta, p, in_path, m, &plan, s, err))) goto done;
    for (size_t i = 0; i < lmp_builder_n_tensors(b); i++) s->bytes_out += lmp_builder_tensor(b, i)->nbytes;
    st = lmp_builder_write(b, out_path, err);
done:
    s->seconds = lmp_time_now() - t0;
    lmp_builder_free(b);
    lmp_prune_plan_free(&plan);
    lmp_prune_scores_free(&sc);
    lmp_pool_free(pool);
    lmp_model_free(m);
    lmp_free(keep);
    if (!summary) lmp_prune_summary_free(&local);
    return st;
}
