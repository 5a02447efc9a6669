// surgery.c - applies a pruning plan to a model's tensors (prune_internal.h): the kept rows of attn_q (query
// heads), attn_k / attn_v (KV heads), ffn_gate / ffn_up (channels), the kept columns of attn_output and ffn_down,
// every tensor of a removed block dropped and the later blocks renumbered, all into an lmp_builder.
//
// Kept units stay in their original order, so query head h of a kept group still reads the KV head the
// runtime's mapping (h / group) gives it. Rows are copied as bytes in any type; columns of f16 / bf16 matrices
// go through float32 and back (exact). It does not choose what to remove (plan.c) or write files (prune.c).
#include <stdio.h>
#include <string.h>

#include "format/qtypes.h"
#include "prune/prune_internal.h"

// Which kept-index list selects rows or columns of a layer tensor, by its name part.
typedef enum { SEL_NONE, SEL_ROWS_Q, SEL_ROWS_KV, SEL_COLS_Q, SEL_ROWS_FFN, SEL_COLS_FFN } sel_kind;

static sel_kind sel_of(const char *part) {
    if (!strcmp(part, "attn_q.weight")) return SEL_ROWS_Q;
    if (!strcmp(part, "attn_k.weight") || !strcmp(part, "attn_v.weight")) return SEL_ROWS_KV;
    if (!strcmp(part, "attn_output.weight")) return SEL_COLS_Q;
    if (!strcmp(part, "ffn_gate.weight") || !strcmp(part, "ffn_up.weight")) return SEL_ROWS_FFN;
    if (!strcmp(part, "ffn_down.weight")) return SEL_COLS_FFN;
    return SEL_NONE;
}

// Indices of the kept rows or columns (expanded to head_dim per head) into idx; returns their count.
static int64_t kept_index(const lmp_prune_layer_plan *p, const lmp_layer *L, int hd, sel_kind k, int64_t *idx) {
    int64_t n = 0;
    switch (k) {
    case SEL_ROWS_Q: case SEL_COLS_Q:
        for (int h = 0; h < L->n_heads; h++)
            if (p->keep_head[h])
                for (int d = 0; d < hd; d++) idx[n++] = (int64_t)h * hd + d;
        break;
    case SEL_ROWS_KV:
        for (int g = 0; g < L->n_kv_heads; g++)
            if (p->keep_kv[g])
                for (int d = 0; d < hd; d++) idx[n++] = (int64_t)g * hd + d;
        break;
    case SEL_ROWS_FFN: case SEL_COLS_FFN:
        for (int j = 0; j < L->ffn; j++)
            if (p->keep_chan[j]) idx[n++] = j;
        break;
    default: break;
    }
    return n;
}

// A 2-D tensor (rows, cols) of type `type` -> (out_rows, out_cols) of type out_type, keeping rows ridx (or all
// when NULL) and columns cidx (or all when NULL). out_type is t's type or f32.
static lmp_status select_2d(const lmp_tensor *t, lmp_dtype out_type, const int64_t *ridx, int64_t nr,
                            const int64_t *cidx, int64_t nc, void **out, lmp_error *err) {
    const lmp_type_traits *tr = lmp_type_get(t->type), *to = lmp_type_get(out_type);
    const int64_t rows = t->shape[0], cols = t->shape[1];
    const size_t in_rb = lmp_type_row_size(t->type, cols), out_rb = lmp_type_row_size(out_type, nc);
    if (!out_rb) return lmp_err(err, LMP_E_UNSUPPORTED, "'%s': %lld columns do not fit %s", t->name, (long long)nc, to->name);
    char *dst = lmp_malloc(out_rb * (size_t)nr);
    float *row = NULL, *sel = NULL;
    if (!dst) return lmp_err(err, LMP_E_NOMEM, "out of memory pruning '%s'", t->name);
    const int bytes_only = !cidx && out_type == t->type;
    if (!bytes_only) {
        row = lmp_malloc((size_t)cols * sizeof(float));
        sel = lmp_malloc((size_t)nc * sizeof(float));
        if (!row || !sel) {
            lmp_free(dst);
            lmp_free(row);
            lmp_free(sel);
            return lmp_err(err, LMP_E_NOMEM, "out of memory pruning '%s'", t->name);
        }
    }
    for (int64_t i = 0; i < nr; i++) {
        int64_t r = ridx ? ridx[i] : i;
        const char *src = (const char *)t->data + (size_t)r * in_rb;
        if (r < 0 || r >= rows) continue;  // cannot happen for a checked plan
        if (bytes_only) {
            memcpy(dst + (size_t)i * out_rb, src, in_rb);
            continue;
        }
        tr->to_float(src, row, cols);
        for (int64_t c = 0; c < nc; c++) sel[c] = row[cidx ? cidx[c] : c];
        to->from_float_ref(sel, dst + (size_t)i * out_rb, nc);
    }
    lmp_free(row);
    lmp_free(sel);
    *out = dst;
    return LMP_OK;
}

// Whole tensor of any shape converted to f32.
static lmp_status to_f32(const lmp_tensor *t, void **out, lmp_error *err) {
    int64_t n = lmp_tensor_nelements(t);
    float *v = lmp_malloc((size_t)n * sizeof(float));
    if (!v) return lmp_err(err, LMP_E_NOMEM, "out of memory dequantizing '%s'", t->name);
    lmp_type_get(t->type)->to_float(t->data, v, n);
    *out = v;
    return LMP_OK;
}

lmp_status lmp_prune_apply(lmp_model *m, const lmp_prune_plan *plan, int dequantize, lmp_builder *b,
                           lmp_progress_fn progress, void *progress_user, lmp_error *err) {
    lmp_status st = lmp_prune_plan_check(m, (lmp_prune_plan *)plan, err);
    if (st) return st;
    const int L = m->cfg.n_layers, hd = m->cfg.head_dim;
    int *new_index = lmp_malloc((size_t)L * sizeof(int));
    size_t max_idx = (size_t)m->cfg.max_ffn > (size_t)m->cfg.max_heads * hd ? (size_t)m->cfg.max_ffn
                                                                            : (size_t)m->cfg.max_heads * hd;
    int64_t *idx = lmp_malloc(max_idx * sizeof(int64_t));
    if (!new_index || !idx) {
        lmp_free(new_index);
        lmp_free(idx);
        return lmp_err(err, LMP_E_NOMEM, "out of memory");
    }
    int n_out = 0;
    for (int l = 0; l < L; l++) new_index[l] = plan->layer[l].removed ? -1 : n_out++;
    const lmp_file *f = m->file;
    const size_t n = lmp_file_n_tensors(f);
    for (size_t i = 0; i < n && !st; i++) {
        const lmp_tensor *t = lmp_file_tensor(f, i);
        const lmp_type_traits *tr = lmp_type_get(t->type);
        char name[LMP_MAX_NAME_LEN + 1];
        snprintf(name, sizeof name, "%s", t->name);
        int l = -1, used = 0;
        sel_kind k = SEL_NONE;
        if (sscanf(t->name, "blk.%d.%n", &l, &used) == 1 && used > 0 && l >= 0 && l < L) {
            if (new_index[l] < 0) goto next;  // the block is removed
            k = sel_of(t->name + used);
            snprintf(name, sizeof name, "blk.%d.%s", new_index[l], t->name + used);
        } else {
            l = -1;
        }
        const int quant = tr->is_quantized;
        lmp_dtype out_type = quant && dequantize ? LMP_DTYPE_F32 : t->type;
        void *data = NULL;
        if (k == SEL_NONE || t->ndim != 2) {
            if (out_type == t->type) {
                st = lmp_builder_add_ref(b, name, t->type, t->ndim, t->shape, t->data, err);
                goto next;
            }
            if ((st = to_f32(t, &data, err))) break;
            st = lmp_builder_add(b, name, out_type, t->ndim, t->shape, data, err);
            goto next;
        }
        const lmp_layer *Ly = &m->layers[l];
        const lmp_prune_layer_plan *p = &plan->layer[l];
        int64_t nk = kept_index(p, Ly, hd, k, idx);
        int cols_sel = k == SEL_COLS_Q || k == SEL_COLS_FFN;
        if (quant && !dequantize && cols_sel && nk != t->shape[1]) {
            st = lmp_err(err, LMP_E_UNSUPPORTED, "'%s' is quantized (%s): its columns cannot be removed", t->name,
                         tr->name);
            break;
        }
        int64_t shape[2] = {cols_sel ? t->shape[0] : nk, cols_sel ? nk : t->shape[1]};
        if (cols_sel) st = select_2d(t, out_type, NULL, shape[0], idx, nk, &data, err);
        else st = select_2d(t, out_type, idx, nk, NULL, shape[1], &data, err);
        if (st) break;
        st = lmp_builder_add(b, name, out_type, 2, shape, data, err);
    next:
        if (progress) progress(progress_user, "write", (double)i + 1, (double)n);
    }
    lmp_free(idx);
    lmp_free(new_index);
    if (st) return st;
    lmp_meta *meta = lmp_builder_meta(b);
    lmp_meta_keep(&st, lmp_meta_set_u32(meta, "llama.block_count", (uint32_t)n_out), "llama.block_count", err);
    lmp_meta_keep(&st, lmp_meta_set_u32(meta, "llama.attention.head_dim", (uint32_t)hd), "llama.attention.head_dim", err);
    return st;
}
