// quantize.c - the quantization pass driver (quantize.h): type plan, round-to-nearest quantization,
// dispatch to the calibrated methods, output metadata with provenance, atomic write, summary.
//
// It does not implement the calibrated methods (imatrix.c, awq.c, gptq.c), the bit budget (bitbudget.c) nor
// the codecs (format/qtypes*.c).
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "format/qtypes.h"
#include "quant/quant_internal.h"

void lmp_quant_params_default(lmp_quant_params *p) {
    memset(p, 0, sizeof *p);
    p->bits = 4;
    p->group = 32;
    p->method = LMP_QUANT_SEARCH;
    p->type = -1;
    p->preset = -1;
    p->output_type = -1;
    p->embed_type = -1;
    p->gptq_damp = 0.01f;
    p->gptq_block = 128;
}

static const char *METHOD_NAMES[] = {"rtn", "imatrix", "awq", "gptq", "search"};

const char *lmp_quant_method_name(lmp_quant_method m) {
    return (unsigned)m < sizeof METHOD_NAMES / sizeof METHOD_NAMES[0] ? METHOD_NAMES[m] : "?";
}

int lmp_quant_method_from_name(const char *name) {
    for (int i = 0; i < (int)(sizeof METHOD_NAMES / sizeof METHOD_NAMES[0]); i++)
        if (strcmp(name, METHOD_NAMES[i]) == 0) return i;
    return -1;
}

void lmp_qctx_warn(lmp_qctx *q, const char *fmt, ...) {
    if (!q->p->warn) return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    q->p->warn(q->p->warn_user, msg);
}

lmp_qentry *lmp_qctx_find(lmp_qctx *q, const char *name) {
    for (size_t i = 0; i < q->n; i++)
        if (strcmp(q->e[i].src->name, name) == 0) return &q->e[i];
    return NULL;
}

const float *lmp_qentry_values(const lmp_qentry *e) { return e->f32 ? e->f32 : (const float *)e->src->data; }

lmp_status lmp_qentry_make_writable(lmp_qentry *e, lmp_error *err) {
    if (e->f32) return LMP_OK;
    size_t n = (size_t)e->rows * (size_t)e->cols;
    e->f32 = lmp_malloc(n * sizeof(float));
    if (!e->f32) return lmp_err(err, LMP_E_NOMEM, "out of memory copying '%s'", e->src->name);
    memcpy(e->f32, e->src->data, n * sizeof(float));
    return LMP_OK;
}

// ---- type plan ----

static lmp_dtype base_type(const lmp_quant_params *p) {
    if (p->type >= 0) return (lmp_dtype)p->type;
    if (p->bits == 8) return LMP_DTYPE_Q8_0;
    if (p->asym) return p->group == 128 ? LMP_DTYPE_Q4_1_G128 : p->group == 64 ? LMP_DTYPE_Q4_1_G64 : LMP_DTYPE_Q4_1;
    return p->group == 128 ? LMP_DTYPE_Q4_0_G128 : p->group == 64 ? LMP_DTYPE_Q4_0_G64 : LMP_DTYPE_Q4_0;
}

lmp_dtype lmp_quant_fit_type(lmp_dtype t, int64_t cols) {
    for (;;) {
        const lmp_type_traits *tr = lmp_type_get(t);
        if (cols % tr->block_size == 0) return t;
        switch (t) {
        case LMP_DTYPE_Q4_0_G64: case LMP_DTYPE_Q4_0_G128: t = LMP_DTYPE_Q4_0; break;
        case LMP_DTYPE_Q4_1_G64: case LMP_DTYPE_Q4_1_G128: t = LMP_DTYPE_Q4_1; break;
        case LMP_DTYPE_Q4_K: t = LMP_DTYPE_IQ4_NL; break;  // same 4.5 bpw in blocks of 32
        case LMP_DTYPE_Q4_0: case LMP_DTYPE_Q4_1: case LMP_DTYPE_IQ4_NL: case LMP_DTYPE_Q5_K: case LMP_DTYPE_Q6_K:
            t = LMP_DTYPE_Q8_0;
            break;
        default: return LMP_DTYPE_F16;
        }
    }
}

// ---- presets ----

const lmp_quant_preset lmp_quant_presets[] = {
    {"k4s", "q4_K matrices, classifier (and a tied embedding) q6_K: the role of llama.cpp's Q4_K_S",
     "SmolLM2: 91.73 MB, dPPL +12.3 %, KLD 0.131 (rows of 576: iq4_nl and q8_0 fallbacks)"},
    {"k4m", "as k4s, and attn_v, ffn_down q6_K in the first and last eighth of the layers and every third "
            "between: the role of Q4_K_M",
     "SmolLM2: 95.98 MB, dPPL +11.3 %, KLD 0.108 (same fallbacks)"},
    {"k5m", "as k4m with q5_K matrices: the role of Q5_K_M",
     "SmolLM2: 136.62 MB, dPPL +0.26 %, KLD 0.0037 (rows of 576: q8_0 fallback)"},
    {"k6", "q6_K everywhere, classifier q8_0",
     "SmolLM2: 138.39 MB, dPPL +0.15 %, KLD 0.0046 (same fallback)"},
};
const int lmp_quant_n_presets = (int)(sizeof lmp_quant_presets / sizeof lmp_quant_presets[0]);

int lmp_quant_preset_from_name(const char *name) {
    for (int i = 0; name && i < lmp_quant_n_presets; i++)
        if (!strcasecmp(name, lmp_quant_presets[i].name)) return i;
    return -1;
}

// Layers that get more bits in the "m" presets: the first and last eighth, and every third in between.
static int more_bits_layer(int l, int n) {
    int e = (n + 7) / 8;  // at least one layer at each end
    return l < e || l >= n - e || (l - e) % 3 == 2;
}

// The type a preset wants for a matrix (before the row-length fallback).
static lmp_dtype preset_type(int preset, const lmp_model *m, const char *name) {
    const char *pn = lmp_quant_presets[preset].name;
    int classifier = !strcmp(name, "output.weight") || (!strcmp(name, "token_embd.weight") && m->tied);
    if (!strcmp(pn, "k6")) return classifier ? LMP_DTYPE_Q8_0 : LMP_DTYPE_Q6_K;
    const lmp_dtype base = !strcmp(pn, "k5m") ? LMP_DTYPE_Q5_K : LMP_DTYPE_Q4_K;
    if (classifier) return LMP_DTYPE_Q6_K;
    int l;
    char kind[32];
    if (strcmp(pn, "k4s") && sscanf(name, "blk.%d.%31[a-z_].weight", &l, kind) == 2 &&
        (!strcmp(kind, "attn_v") || !strcmp(kind, "ffn_down")) && more_bits_layer(l, m->cfg.n_layers))
        return LMP_DTYPE_Q6_K;
    return base;
}

static lmp_status plan_types(lmp_qctx *q, regex_t *res, lmp_error *err) {
    const lmp_quant_params *p = q->p;
    for (size_t i = 0; i < q->n; i++) {
        lmp_qentry *e = &q->e[i];
        const char *name = e->src->name;
        lmp_dtype want;
        if (e->src->ndim == 1) {
            e->type = LMP_DTYPE_F32;  // norms and other vectors stay float32
            continue;
        }
        if (strcmp(name, "token_embd.weight") == 0) {
            if (q->model->tied && p->embed_type < 0 && p->output_type >= 0) want = (lmp_dtype)p->output_type;
            else want = p->embed_type >= 0 ? (lmp_dtype)p->embed_type : LMP_DTYPE_Q8_0;
        } else if (strcmp(name, "output.weight") == 0) {
            want = p->output_type >= 0 ? (lmp_dtype)p->output_type : LMP_DTYPE_Q8_0;
        } else {
            want = base_type(p);
        }
        if (p->preset >= 0) want = preset_type(p->preset, q->model, name);
        for (int k = 0; k < p->n_overrides; k++) {
            if (regexec(&res[k], name, 0, NULL, 0) == 0) {
                want = p->overrides[k].type;
                break;
            }
        }
        e->type = lmp_quant_fit_type(want, e->cols);
        if (e->type != want) {
            e->fallback = 1;
            lmp_qctx_warn(q, "%s: row length %lld is not a multiple of %s's block of %lld; using %s", name,
                          (long long)e->cols, lmp_type_name(want), (long long)lmp_type_get(want)->block_size,
                          lmp_type_name(e->type));
        }
    }
    return LMP_OK;
}

// ---- quantization of one entry ----

typedef struct {
    lmp_qentry *e;
    const float *src;
    const float *imp;
    size_t out_row;
    const lmp_type_traits *tr;
    int search;  // no importance: scale search (1) or round to nearest (0, --method rtn)
} quant_job;

static void quant_worker(void *arg, int ith, int nth) {
    quant_job *j = arg;
    long long r0, r1;
    lmp_split_range(j->e->rows, ith, nth, 1, &r0, &r1);
    for (long long r = r0; r < r1; r++) {
        const float *x = j->src + (size_t)r * j->e->cols;
        char *y = (char *)j->e->out + (size_t)r * j->out_row;
        if (!j->tr->is_quantized || (!j->imp && !j->search)) j->tr->from_float_ref(x, y, j->e->cols);
        else lmp_quantize_row_search(j->e->type, x, y, j->e->cols, j->imp);
    }
}

lmp_status lmp_qentry_quantize(lmp_qctx *q, lmp_qentry *e, const float *imp, lmp_error *err) {
    const lmp_type_traits *tr = lmp_type_get(e->type);
    size_t out_row = lmp_type_row_size(e->type, e->cols);
    if (!e->out) {
        e->out_bytes = out_row * (size_t)e->rows;
        e->out = lmp_malloc(e->out_bytes);
        if (!e->out) return lmp_err(err, LMP_E_NOMEM, "out of memory quantizing '%s'", e->src->name);
    }
    quant_job j = {e, lmp_qentry_values(e), imp, out_row, tr, q->p->method != LMP_QUANT_RTN};
    lmp_pool_run(q->pool, quant_worker, &j);
    return LMP_OK;
}

lmp_status lmp_qctx_swap_in(lmp_qctx *q, lmp_qentry *e, lmp_error *err) {
    lmp_weight *w = lmp_model_weight_find(q->model, e->src->name);
    if (!w || !e->out || w->rows <= 1) return LMP_OK;  // not a matrix of the model (norms stay float32)
    return lmp_model_weight_set(q->model, w, e->type, e->out, err);
}

// ---- output ----

static lmp_status build_meta(lmp_qctx *q, const char *in_path, lmp_error *err) {
    const lmp_quant_params *p = q->p;
    lmp_meta *m = q->meta_out;
    char line[2600];
    lmp_status st = LMP_OK;
#define PUT(key, call) lmp_meta_keep(&st, call, key, err)
    PUT("quant.method", lmp_meta_set_str(m, "quant.method", lmp_quant_method_name(p->method)));
    PUT("quant.bits", lmp_meta_set_u32(m, "quant.bits", (uint32_t)p->bits));
    PUT("quant.group", lmp_meta_set_u32(m, "quant.group", (uint32_t)(p->bits == 8 ? 32 : p->group)));
    PUT("quant.scheme", lmp_meta_set_str(m, "quant.scheme", p->bits == 8 ? "sym" : p->asym ? "asym" : "sym"));
    if (p->type >= 0) PUT("quant.type", lmp_meta_set_str(m, "quant.type", lmp_type_name((lmp_dtype)p->type)));
    if (p->preset >= 0) PUT("quant.preset", lmp_meta_set_str(m, "quant.preset", lmp_quant_presets[p->preset].name));
    if (p->target_bpw > 0) PUT("quant.target_bpw", lmp_meta_set_f32(m, "quant.target_bpw", (float)p->target_bpw));
    if (p->calib_path) {
        const char *base = strrchr(p->calib_path, '/');
        PUT("quant.calib_file", lmp_meta_set_str(m, "quant.calib_file", base ? base + 1 : p->calib_path));
        PUT("quant.calib_tokens", lmp_meta_set_u64(m, "quant.calib_tokens", (uint64_t)q->calib_tokens_used));
    }
    if (p->method == LMP_QUANT_GPTQ) {
        PUT("quant.gptq_damp", lmp_meta_set_f32(m, "quant.gptq_damp", p->gptq_damp));
        PUT("quant.gptq_act_order", lmp_meta_set_bool(m, "quant.gptq_act_order", p->gptq_act_order));
        PUT("quant.gptq_block", lmp_meta_set_u32(m, "quant.gptq_block", (uint32_t)p->gptq_block));
    }
    PUT("provenance.tool", lmp_meta_set_str(m, "provenance.tool", "lmpress " LMP_VERSION_STRING));
    PUT("provenance.parent", lmp_meta_set_str(m, "provenance.parent", in_path));
    PUT("provenance.parent_checksum",
        lmp_meta_set_u32(m, "provenance.parent_checksum", lmp_file_checksum(q->model->file)));
    if (p->command_line) PUT("provenance.command", lmp_meta_set_str(m, "provenance.command", p->command_line));
    snprintf(line, sizeof line, "quantize: %s", p->command_line ? p->command_line : lmp_quant_method_name(p->method));
    PUT("provenance.history", lmp_meta_append_str(m, "provenance.history", line));
#undef PUT
    return st;
}

static lmp_status check_params(const lmp_quant_params *p, lmp_error *err) {
    if (p->bits != 4 && p->bits != 8) return lmp_err(err, LMP_E_ARG, "--bits %d: must be 4 or 8", p->bits);
    if (p->group != 32 && p->group != 64 && p->group != 128)
        return lmp_err(err, LMP_E_ARG, "--group %d: must be 32, 64 or 128", p->group);
    if (p->bits == 8 && p->group != 32) return lmp_err(err, LMP_E_ARG, "8-bit quantization uses groups of 32");
    if ((unsigned)p->method > LMP_QUANT_SEARCH) return lmp_err(err, LMP_E_ARG, "unknown method %d", (int)p->method);
    if (p->type >= 0) {
        const lmp_type_traits *tr = lmp_type_get((lmp_dtype)p->type);
        if (!tr || !tr->storable) return lmp_err(err, LMP_E_ARG, "--type: unknown type %d", p->type);
    }
    if (p->preset >= lmp_quant_n_presets) return lmp_err(err, LMP_E_ARG, "unknown preset %d", p->preset);
    if (p->target_bpw > 0 && p->preset >= 0)
        return lmp_err(err, LMP_E_ARG, "--target-bpw and --preset both choose the types: give one");
    if (p->target_bpw > 0 && !p->calib_path)
        return lmp_err(err, LMP_E_ARG, "--target-bpw needs calibration text (--calib FILE) to measure each tensor's "
                                       "sensitivity");
    if (p->target_bpw > 32.0)
        return lmp_err(err, LMP_E_ARG, "--target-bpw %g is above f32's 32 bits per weight", p->target_bpw);
    if (p->method != LMP_QUANT_RTN && p->method != LMP_QUANT_SEARCH && !p->calib_path)
        return lmp_err(err, LMP_E_ARG, "--method %s needs calibration text (--calib FILE)",
                       lmp_quant_method_name(p->method));
    if (p->method == LMP_QUANT_GPTQ && (!(p->gptq_damp > 0) || p->gptq_damp >= 1))
        return lmp_err(err, LMP_E_ARG, "GPTQ dampening %g must be in (0, 1)", (double)p->gptq_damp);
    for (int k = 0; k < p->n_overrides; k++) {
        const lmp_type_traits *tr = lmp_type_get(p->overrides[k].type);
        if (!tr || !tr->storable) return lmp_err(err, LMP_E_ARG, "override %d: unknown type", k + 1);
    }
    return LMP_OK;
}

lmp_status lmp_quantize(const char *in_path, const lmp_import_opts *io, const char *out_path,
                        const lmp_quant_params *p, lmp_quant_summary *summary, lmp_error *err) {
    double t0 = lmp_time_now();
    lmp_quant_summary sum_local;
    lmp_quant_summary *s = summary ? summary : &sum_local;
    memset(s, 0, sizeof *s);
    lmp_status st = check_params(p, err);
    if (st) return st;
    lmp_qctx q;
    memset(&q, 0, sizeof q);
    q.p = p;
    regex_t *res = lmp_calloc((size_t)(p->n_overrides > 0 ? p->n_overrides : 1), sizeof(regex_t));
    int n_re = 0;
    lmp_tensor *outs = NULL;
    if (!res) return lmp_err(err, LMP_E_NOMEM, "out of memory");
    for (; n_re < p->n_overrides; n_re++) {
        if (regcomp(&res[n_re], p->overrides[n_re].pattern, REG_EXTENDED | REG_NOSUB) != 0) {
            st = lmp_err(err, LMP_E_ARG, "--tensor-type: invalid regular expression '%s'", p->overrides[n_re].pattern);
            goto done;
        }
    }
    if ((st = lmp_model_load(in_path, io, &q.model, err))) goto done;
    const lmp_file *f = q.model->file;
    q.n = lmp_file_n_tensors(f);
    q.e = lmp_calloc(q.n, sizeof *q.e);
    q.meta_out = lmp_meta_clone(lmp_file_meta(f));
    q.pool = lmp_pool_new(p->n_threads);
    if (!q.e || !q.meta_out || !q.pool) {
        st = lmp_err(err, LMP_E_NOMEM, "out of memory");
        goto done;
    }
    int quantized_input = 0;
    for (size_t i = 0; i < q.n; i++) {
        lmp_qentry *e = &q.e[i];
        e->src = lmp_file_tensor(f, i);
        e->cols = e->src->shape[e->src->ndim - 1];
        e->rows = lmp_tensor_nelements(e->src) / e->cols;
        if (lmp_type_get(e->src->type)->is_quantized) quantized_input = 1;
        s->bytes_in += e->src->nbytes;
        s->n_params += lmp_tensor_nelements(e->src);
    }
    if (quantized_input && !p->allow_requantize) {
        st = lmp_err(err, LMP_E_STATE,
                     "'%s' is already quantized; re-quantizing compounds the error (use --allow-requantize to "
                     "dequantize it first)", in_path);
        goto done;
    }
    // Every non-float32 input (quantized, f16, bf16) becomes a float32 working copy.
    for (size_t i = 0; i < q.n; i++) {
        lmp_qentry *e = &q.e[i];
        if (e->src->type == LMP_DTYPE_F32) continue;
        size_t n = (size_t)e->rows * (size_t)e->cols;
        e->f32 = lmp_malloc(n * sizeof(float));
        if (!e->f32) {
            st = lmp_err(err, LMP_E_NOMEM, "out of memory dequantizing '%s'", e->src->name);
            goto done;
        }
        lmp_type_get(e->src->type)->to_float(e->src->data, e->f32, (int64_t)n);
    }
    if (quantized_input) {
        s->requantized = 1;
        lmp_qctx_warn(&q, "input is quantized: dequantized to float32 before quantizing again (--allow-requantize)");
    }
    if ((st = plan_types(&q, res, err))) goto done;
    if (p->target_bpw > 0 && (st = lmp_quant_plan_budget(&q, s, err))) goto done;
    for (size_t i = 0; i < q.n; i++) {
        s->bytes_out += lmp_type_row_size(q.e[i].type, q.e[i].cols) * (uint64_t)q.e[i].rows;
        s->n_tensors_by_type[q.e[i].type]++;
        s->n_fallback += q.e[i].fallback;
    }
    s->bpw_out = s->n_params ? (double)s->bytes_out * 8.0 / (double)s->n_params : 0;
    if (p->dry_run) goto done;

    switch (p->method) {
    case LMP_QUANT_RTN: break;
    case LMP_QUANT_SEARCH:  // with calibration text the search takes the imatrix's weights
        if (p->calib_path) st = lmp_quant_run_imatrix(&q, err);
        break;
    case LMP_QUANT_IMATRIX: st = lmp_quant_run_imatrix(&q, err); break;
    case LMP_QUANT_AWQ: st = lmp_quant_run_awq(&q, err); break;
    case LMP_QUANT_GPTQ: st = lmp_quant_run_gptq(&q, err); break;
    }
    if (st) goto done;
    s->calib_tokens_used = q.calib_tokens_used;
    for (size_t i = 0; i < q.n; i++) {  // whatever the method left: round to nearest
        if (!q.e[i].out && (st = lmp_qentry_quantize(&q, &q.e[i], NULL, err))) goto done;
        if (p->progress) p->progress(p->progress_user, "write", (double)i + 1, (double)q.n);
    }
    if (p->target_bpw > 0 && (st = lmp_quant_budget_measure(&q, s, err))) goto done;
    if ((st = build_meta(&q, in_path, err))) goto done;
    outs = lmp_calloc(q.n, sizeof *outs);
    if (!outs) {
        st = lmp_err(err, LMP_E_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < q.n; i++) {
        outs[i] = *q.e[i].src;
        outs[i].type = q.e[i].type;
        outs[i].data = q.e[i].out;
    }
    st = lmp_file_write(out_path, q.meta_out, outs, q.n, err);
done:
    s->seconds = lmp_time_now() - t0;
    for (int k = 0; k < n_re; k++) regfree(&res[k]);
    lmp_free(res);
    lmp_free(outs);
    if (q.e)
        for (size_t i = 0; i < q.n; i++) {
            lmp_free(q.e[i].f32);
            lmp_free(q.e[i].out);
        }
    lmp_free(q.e);
    lmp_meta_free(q.meta_out);
    lmp_quant_budget_free(&q);
    lmp_pool_free(q.pool);
    lmp_model_free(q.model);
    return st;
}
