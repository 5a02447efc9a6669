// model.c - builds an lmp_model from an lmp_file: reads the llama.* hyper-parameters, finds every
// tensor by name, derives each layer's head counts and FFN width from its shapes, checks that all of
// it is consistent, and loads the tokenizer. No weight is copied except the small norm vectors.
#include "runtime/model.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "format/qtypes.h"

const lmp_mat_info lmp_mats[LMP_MAT_COUNT] = {
    {"attn_q", LMP_HOOK_ATTN_IN, offsetof(lmp_layer, wq)},
    {"attn_k", LMP_HOOK_ATTN_IN, offsetof(lmp_layer, wk)},
    {"attn_v", LMP_HOOK_ATTN_IN, offsetof(lmp_layer, wv)},
    {"attn_output", LMP_HOOK_ATTN_OUT_IN, offsetof(lmp_layer, wo)},
    {"ffn_gate", LMP_HOOK_FFN_IN, offsetof(lmp_layer, w_gate)},
    {"ffn_up", LMP_HOOK_FFN_IN, offsetof(lmp_layer, w_up)},
    {"ffn_down", LMP_HOOK_DOWN_IN, offsetof(lmp_layer, w_down)},
};

static lmp_status tensor_find(const lmp_file *f, const char *name, int required, const lmp_tensor **out,
                              lmp_error *err) {
    *out = lmp_file_find(f, name);
    if (!*out && required) return lmp_err(err, LMP_E_FORMAT, "model has no tensor '%s'", name);
    return LMP_OK;
}

static void shape_str(const lmp_tensor *t, char *buf, size_t n) {
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; i < t->ndim && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%lld", i ? " x " : "", (long long)t->shape[i]);
}

// A matrix view; checks that the tensor is 2-D with the expected shape (0 = any) and of a type that
// the runtime can multiply.
static lmp_status weight_view(const lmp_file *f, const char *name, int64_t rows, int64_t cols,
                              lmp_weight *w, lmp_error *err) {
    const lmp_tensor *t;
    lmp_status st = tensor_find(f, name, 1, &t, err);
    if (st) return st;
    if (t->ndim != 2 || (rows && t->shape[0] != rows) || (cols && t->shape[1] != cols)) {
        char got[96];
        shape_str(t, got, sizeof got);
        return lmp_err(err, LMP_E_FORMAT, "tensor '%s' has shape [%s], expected [%lld x %lld]", name, got,
                       (long long)rows, (long long)cols);
    }
    const lmp_type_traits *tr = lmp_type_get(t->type);
    if (!tr || !tr->storable)
        return lmp_err(err, LMP_E_UNSUPPORTED, "tensor '%s' has unsupported type %d", name, (int)t->type);
    const int64_t act_block = lmp_type_get(tr->vec_dot_type)->block_size;  // activations' block
    if (t->shape[1] % act_block != 0)
        return lmp_err(err, LMP_E_FORMAT, "tensor '%s': %lld columns is not a multiple of %lld", name,
                       (long long)t->shape[1], (long long)act_block);
    w->name = t->name;
    w->type = t->type;
    w->rows = t->shape[0];
    w->cols = t->shape[1];
    w->row_bytes = lmp_type_row_size(t->type, t->shape[1]);
    w->data = t->data;
    w->dev = NULL;
    w->gen = 0;
    return LMP_OK;
}

// Norm weights may be stored in any float type; the runtime wants float32 (an owned copy, viewed as a
// (1, dim) F32 weight).
static lmp_status norm_load(const lmp_file *f, const char *name, int64_t dim, lmp_weight *out, lmp_error *err) {
    const lmp_tensor *t;
    lmp_status st = tensor_find(f, name, 1, &t, err);
    if (st) return st;
    if (t->ndim != 1 || t->shape[0] != dim) {
        char got[96];
        shape_str(t, got, sizeof got);
        return lmp_err(err, LMP_E_FORMAT, "tensor '%s' has shape [%s], expected [%lld]", name, got,
                       (long long)dim);
    }
    const lmp_type_traits *tr = lmp_type_get(t->type);
    if (!tr || !tr->storable || dim % tr->block_size != 0)
        return lmp_err(err, LMP_E_UNSUPPORTED, "tensor '%s' has unsupported type %d", name, (int)t->type);
    float *v = lmp_malloc((size_t)dim * sizeof(float));
    if (!v) return lmp_err(err, LMP_E_NOMEM, "out of memory loading '%s'", name);
    tr->to_float(t->data, v, dim);
    *out = (lmp_weight){t->name, LMP_DTYPE_F32, 1, dim, (size_t)dim * sizeof(float), v, NULL, 0};
    return LMP_OK;
}

static lmp_status get_u32_default(const lmp_meta *m, const char *key, uint32_t def, uint32_t *out,
                                  lmp_error *err) {
    if (!lmp_meta_find(m, key)) {
        *out = def;
        return LMP_OK;
    }
    return lmp_meta_get_u32(m, key, out, err);
}

static lmp_status get_f32_default(const lmp_meta *m, const char *key, float def, float *out,
                                  lmp_error *err) {
    if (!lmp_meta_find(m, key)) {
        *out = def;
        return LMP_OK;
    }
    return lmp_meta_get_f32(m, key, out, err);
}

static lmp_status read_config(const lmp_file *f, lmp_config *c, lmp_error *err) {
    const lmp_meta *m = lmp_file_meta(f);
    const char *arch;
    lmp_status st = lmp_meta_get_str(m, "general.architecture", &arch, err);
    if (st) return st;
    if (strcmp(arch, "llama") != 0)
        return lmp_err(err, LMP_E_UNSUPPORTED, "architecture '%s' is not supported (only 'llama')", arch);
    uint32_t dim, n_layers, ctx, heads = 0, head_dim, rope_dim;
    if ((st = lmp_meta_get_u32(m, "llama.embedding_length", &dim, err))) return st;
    if ((st = lmp_meta_get_u32(m, "llama.block_count", &n_layers, err))) return st;
    if ((st = lmp_meta_get_u32(m, "llama.context_length", &ctx, err))) return st;
    if (!lmp_meta_find(m, "llama.attention.head_dim")) {
        if ((st = lmp_meta_get_u32(m, "llama.attention.head_count", &heads, err))) return st;
        if (heads == 0 || dim % heads)
            return lmp_err(err, LMP_E_FORMAT, "llama.attention.head_count %u does not divide dim %u", heads, dim);
        head_dim = dim / heads;
    } else if ((st = lmp_meta_get_u32(m, "llama.attention.head_dim", &head_dim, err))) {
        return st;
    }
    if ((st = get_u32_default(m, "llama.rope.dimension_count", head_dim, &rope_dim, err))) return st;
    if ((st = get_f32_default(m, "llama.attention.layer_norm_rms_epsilon", 1e-5f, &c->rms_eps, err))) return st;
    if ((st = get_f32_default(m, "llama.rope.freq_base", 10000.0f, &c->rope_theta, err))) return st;
    const char *style = "interleaved";
    if (lmp_meta_find(m, "llama.rope.style") && (st = lmp_meta_get_str(m, "llama.rope.style", &style, err)))
        return st;
    if (strcmp(style, "interleaved") == 0) c->rope_neox = 0;
    else if (strcmp(style, "neox") == 0) c->rope_neox = 1;
    else return lmp_err(err, LMP_E_UNSUPPORTED, "llama.rope.style '%s' is not supported (interleaved, neox)", style);

    if (dim == 0 || dim > (1u << 20)) return lmp_err(err, LMP_E_FORMAT, "llama.embedding_length %u is absurd", dim);
    if (n_layers == 0 || n_layers > 4096) return lmp_err(err, LMP_E_FORMAT, "llama.block_count %u is absurd", n_layers);
    if (ctx == 0 || ctx > (1u << 24)) return lmp_err(err, LMP_E_FORMAT, "llama.context_length %u is absurd", ctx);
    if (head_dim == 0 || head_dim > 4096 || head_dim % 2)
        return lmp_err(err, LMP_E_FORMAT, "head dimension %u is absurd (must be even, <= 4096)", head_dim);
    if (rope_dim == 0 || rope_dim > head_dim || rope_dim % 2)
        return lmp_err(err, LMP_E_FORMAT, "llama.rope.dimension_count %u must be even and <= head_dim %u", rope_dim,
                       head_dim);
    if (!(c->rms_eps > 0 && c->rms_eps < 1))
        return lmp_err(err, LMP_E_FORMAT, "RMSNorm epsilon %g is absurd", (double)c->rms_eps);
    if (!(c->rope_theta > 1 && c->rope_theta < 1e9f))
        return lmp_err(err, LMP_E_FORMAT, "llama.rope.freq_base %g is absurd", (double)c->rope_theta);
    c->dim = (int)dim;
    c->n_layers = (int)n_layers;
    c->ctx = (int)ctx;
    c->head_dim = (int)head_dim;
    c->rope_dim = (int)rope_dim;
    return LMP_OK;
}

static lmp_status load_layer(const lmp_file *f, const lmp_config *c, int l, lmp_layer *L, lmp_error *err) {
    char name[96];
    lmp_status st;
    const int64_t dim = c->dim, hd = c->head_dim;
#define NAME(part) (snprintf(name, sizeof name, "blk.%d.%s.weight", l, part), name)
    if ((st = norm_load(f, NAME("attn_norm"), dim, &L->attn_norm, err))) return st;
    if ((st = norm_load(f, NAME("ffn_norm"), dim, &L->ffn_norm, err))) return st;
    if ((st = weight_view(f, NAME(lmp_mats[LMP_MAT_Q].name), 0, dim, &L->wq, err))) return st;
    if (L->wq.rows % hd)
        return lmp_err(err, LMP_E_FORMAT, "tensor '%s': %lld rows is not a multiple of head_dim %lld", name,
                       (long long)L->wq.rows, (long long)hd);
    L->n_heads = (int)(L->wq.rows / hd);
    if ((st = weight_view(f, NAME(lmp_mats[LMP_MAT_K].name), 0, dim, &L->wk, err))) return st;
    if (L->wk.rows % hd)
        return lmp_err(err, LMP_E_FORMAT, "tensor '%s': %lld rows is not a multiple of head_dim %lld", name,
                       (long long)L->wk.rows, (long long)hd);
    L->n_kv_heads = (int)(L->wk.rows / hd);
    if (L->n_heads % L->n_kv_heads)
        return lmp_err(err, LMP_E_FORMAT, "layer %d: %d KV heads do not divide %d query heads", l, L->n_kv_heads,
                       L->n_heads);
    if ((st = weight_view(f, NAME(lmp_mats[LMP_MAT_V].name), L->wk.rows, dim, &L->wv, err))) return st;
    if ((st = weight_view(f, NAME(lmp_mats[LMP_MAT_O].name), dim, L->wq.rows, &L->wo, err))) return st;
    if ((st = weight_view(f, NAME(lmp_mats[LMP_MAT_GATE].name), 0, dim, &L->w_gate, err))) return st;
    L->ffn = (int)L->w_gate.rows;
    if ((st = weight_view(f, NAME(lmp_mats[LMP_MAT_UP].name), L->ffn, dim, &L->w_up, err))) return st;
    if ((st = weight_view(f, NAME(lmp_mats[LMP_MAT_DOWN].name), dim, L->ffn, &L->w_down, err))) return st;
#undef NAME
    return LMP_OK;
}

lmp_status lmp_model_from_file(lmp_file *f, lmp_model **out, lmp_error *err) {
    *out = NULL;
    if (!f) return lmp_err(err, LMP_E_ARG, "no file");
    lmp_model *m = lmp_calloc(1, sizeof *m);
    if (!m) {
        lmp_file_close(f);
        return lmp_err(err, LMP_E_NOMEM, "out of memory");
    }
    m->file = f;
    lmp_config *c = &m->cfg;
    lmp_status st = read_config(f, c, err);
    if (st) goto fail;
    if ((st = weight_view(f, "token_embd.weight", 0, c->dim, &m->tok_embd, err))) goto fail;
    c->vocab = (int)m->tok_embd.rows;
    uint32_t vocab_meta;
    const lmp_meta *meta = lmp_file_meta(f);
    if (lmp_meta_find(meta, "llama.vocab_size")) {
        if ((st = lmp_meta_get_u32(meta, "llama.vocab_size", &vocab_meta, err))) goto fail;
        if ((int64_t)vocab_meta != m->tok_embd.rows) {
            st = lmp_err(err, LMP_E_FORMAT, "llama.vocab_size %u does not match token_embd.weight rows %lld",
                         vocab_meta, (long long)m->tok_embd.rows);
            goto fail;
        }
    }
    if (lmp_file_find(f, "output.weight")) {
        if ((st = weight_view(f, "output.weight", c->vocab, c->dim, &m->output, err))) goto fail;
    } else {
        m->output = m->tok_embd;
        m->tied = 1;
    }
    if ((st = norm_load(f, "output_norm.weight", c->dim, &m->output_norm, err))) goto fail;
    m->layers = lmp_calloc((size_t)c->n_layers, sizeof(lmp_layer));
    if (!m->layers) {
        st = lmp_err(err, LMP_E_NOMEM, "out of memory");
        goto fail;
    }
    for (int l = 0; l < c->n_layers; l++) {
        lmp_layer *L = &m->layers[l];
        if ((st = load_layer(f, c, l, L, err))) goto fail;
        if (L->n_heads > c->max_heads) c->max_heads = L->n_heads;
        if (L->n_kv_heads > c->max_kv_heads) c->max_kv_heads = L->n_kv_heads;
        if (L->ffn > c->max_ffn) c->max_ffn = L->ffn;
    }
    for (size_t i = 0; i < lmp_file_n_tensors(f); i++) {
        const lmp_tensor *t = lmp_file_tensor(f, i);
        m->n_params += lmp_tensor_nelements(t);
        m->weight_bytes += t->nbytes;
    }
    if (lmp_meta_find(meta, "tokenizer.model")) {
        if ((st = lmp_tokenizer_from_meta(meta, &m->tok, err))) {
            lmp_err_prefix(err, st, "tokenizer");
            goto fail;
        }
        if (lmp_tokenizer_n_vocab(m->tok) > c->vocab) {
            st = lmp_err(err, LMP_E_FORMAT, "tokenizer has %d tokens but the model only %d embeddings",
                         lmp_tokenizer_n_vocab(m->tok), c->vocab);
            goto fail;
        }
    }
    *out = m;
    return LMP_OK;
fail:
    lmp_model_free(m);
    return st;
}

lmp_status lmp_model_load(const char *path, const lmp_import_opts *opts, lmp_model **out, lmp_error *err) {
    *out = NULL;
    lmp_file *f = NULL;
    lmp_status st = lmp_open_any(path, opts, LMP_OPEN_DEFAULT, &f, err);
    if (st) return st;
    st = lmp_model_from_file(f, out, err);
    return lmp_err_prefix(err, st, "%s", path);
}

void lmp_model_free(lmp_model *m) {
    if (!m) return;
    if (m->layers) {
        for (int l = 0; l < m->cfg.n_layers; l++) {
            lmp_free((void *)(uintptr_t)m->layers[l].attn_norm.data);
            lmp_free((void *)(uintptr_t)m->layers[l].ffn_norm.data);
        }
    }
    lmp_free(m->layers);
    lmp_free((void *)(uintptr_t)m->output_norm.data);
    lmp_tokenizer_free(m->tok);
    lmp_file_close(m->file);
    lmp_free(m);
}

static uint64_t weight_bytes(const lmp_weight *w) { return (uint64_t)w->rows * w->row_bytes; }

uint64_t lmp_model_bytes_per_token(const lmp_model *m) {
    uint64_t b = m->tok_embd.row_bytes + weight_bytes(&m->output);
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int k = 0; k < LMP_MAT_COUNT; k++) b += weight_bytes(lmp_layer_mat_c(&m->layers[l], k));
    return b;
}

lmp_weight *lmp_model_weight_find(lmp_model *m, const char *name) {
    if (!m || !name) return NULL;
    if (strcmp(name, "token_embd.weight") == 0) return &m->tok_embd;
    if (strcmp(name, "output.weight") == 0) return &m->output;
    if (strcmp(name, "output_norm.weight") == 0) return &m->output_norm;
    int l, used = 0;
    char part[32];
    if (sscanf(name, "blk.%d.%31[a-z_].weight%n", &l, part, &used) != 2 || used != (int)strlen(name) || l < 0 ||
        l >= m->cfg.n_layers)
        return NULL;
    char canon[96];  // "blk.007.attn_q.weight" is not "blk.7.attn_q.weight"
    snprintf(canon, sizeof canon, "blk.%d.%s.weight", l, part);
    if (strcmp(canon, name) != 0) return NULL;
    lmp_layer *L = &m->layers[l];
    if (strcmp(part, "attn_norm") == 0) return &L->attn_norm;
    if (strcmp(part, "ffn_norm") == 0) return &L->ffn_norm;
    for (int k = 0; k < LMP_MAT_COUNT; k++)
        if (strcmp(part, lmp_mats[k].name) == 0) return lmp_layer_mat(L, k);
    return NULL;
}

lmp_status lmp_model_weight_set(lmp_model *m, lmp_weight *w, lmp_dtype type, const void *data, lmp_error *err) {
    const lmp_type_traits *tr = lmp_type_get(type);
    if (!m || !w || !data) return lmp_err(err, LMP_E_ARG, "lmp_model_weight_set: missing model, weight or data");
    if (!tr || !tr->storable) return lmp_err(err, LMP_E_ARG, "weight '%s': type %d is not a storable type", w->name, (int)type);
    size_t rb = lmp_type_row_size(type, w->cols);
    if (!rb)
        return lmp_err(err, LMP_E_ARG, "weight '%s': %lld columns is not a multiple of %s's block of %lld", w->name,
                       (long long)w->cols, tr->name, (long long)tr->block_size);
    if (w->rows > 1 && w->cols % lmp_type_get(tr->vec_dot_type)->block_size)
        return lmp_err(err, LMP_E_ARG, "weight '%s': %lld columns do not fit %s's activation blocks", w->name,
                       (long long)w->cols, tr->name);
    int tied_pair = m->tied && (w == &m->tok_embd || w == &m->output);
    w->type = type;
    w->data = data;
    w->row_bytes = rb;
    lmp_model_weight_touch(m, w);
    if (tied_pair) {  // one tensor, two views
        lmp_weight *o = w == &m->tok_embd ? &m->output : &m->tok_embd;
        o->type = type;
        o->data = data;
        o->row_bytes = rb;
        o->gen = w->gen;
    }
    return LMP_OK;
}

size_t lmp_model_n_weights(const lmp_model *m) { return 3 + (size_t)m->cfg.n_layers * (2 + LMP_MAT_COUNT); }

lmp_weight *lmp_model_weight_at(lmp_model *m, size_t i) {
    if (i == 0) return &m->tok_embd;
    if (i == 1) return &m->output;
    if (i == 2) return &m->output_norm;
    i -= 3;
    size_t l = i / (2 + LMP_MAT_COUNT), k = i % (2 + LMP_MAT_COUNT);
    if (l >= (size_t)m->cfg.n_layers) return NULL;
    lmp_layer *L = &m->layers[l];
    if (k == 0) return &L->attn_norm;
    if (k == 1) return &L->ffn_norm;
    return lmp_layer_mat(L, (int)k - 2);
}

void lmp_model_weight_touch(lmp_model *m, lmp_weight *w) {
    w->gen = ++m->gen;
}

int lmp_model_hook_width(const lmp_model *m, int l, lmp_hook_point h) {
    if (l < 0 || l >= m->cfg.n_layers) return 0;
    const lmp_layer *L = &m->layers[l];
    switch (h) {
    case LMP_HOOK_ATTN_IN: case LMP_HOOK_FFN_IN: return m->cfg.dim;
    case LMP_HOOK_ATTN_OUT_IN: return L->n_heads * m->cfg.head_dim;
    case LMP_HOOK_DOWN_IN: return L->ffn;
    default: return 0;
    }
}

double lmp_model_bpw(const lmp_model *m) {
    return m->n_params ? (double)m->weight_bytes * 8.0 / (double)m->n_params : 0.0;
}
