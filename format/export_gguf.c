// export_gguf.c - lmp_export_gguf: an lmpress model file -> a GGUF v3 file that llama.cpp can load.
//
// Writes general.* (architecture llama, name, alignment 32, file type), llama.* hyper-parameters (head counts and
// FFN width from the tensors; layers that differ, as after a non-uniform prune, are refused: llama.cpp's llama
// architecture needs equal layers), tokenizer.ggml.* keys, and every
// tensor with its dimensions reversed (GGUF lists the innermost first). Tensor types must have a
// bit-identical ggml type: f32, f16, bf16, q8_0, q4_0, q4_1; other types are refused by name. GGUF's
// llama layout rotates interleaved pairs, so query/key rows of a "neox" model are permuted back into the
// interleaved order (the inverse of what llama.cpp's HF converter undoes). The file is written to
// "<path>.tmp.<pid>", fsynced and renamed over path; on failure path is untouched.
// It does not quantize or convert types, and does not export other architectures.
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "format/gguf.h"
#include "format/lmp_import.h"
#include "format/qtypes.h"

#define GGUF_ALIGN 32
#define GGML_MAX_NAME 64  // ggml's tensor name buffer, NUL included

// A growing byte buffer for the header, metadata and tensor infos.
typedef struct gbuf {
    uint8_t *p;
    size_t n, cap;
    int failed;       // an allocation failed: everything after it is dropped
    uint64_t n_kv;    // metadata entries written
} gbuf;

static void gb_put(gbuf *b, const void *src, size_t n) {
    if (b->failed) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n) cap *= 2;
        uint8_t *p = lmp_realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void gb_u32(gbuf *b, uint32_t v) { gb_put(b, &v, 4); }
static void gb_u64(gbuf *b, uint64_t v) { gb_put(b, &v, 8); }
static void gb_str(gbuf *b, const char *s, size_t len) {
    gb_u64(b, len);
    gb_put(b, s, len);
}
static void gb_key(gbuf *b, const char *key, uint32_t vtype) {
    gb_str(b, key, strlen(key));
    gb_u32(b, vtype);
    b->n_kv++;
}
static void kv_u32(gbuf *b, const char *key, uint32_t v) {
    gb_key(b, key, LMP_GGUF_U32);
    gb_u32(b, v);
}
static void kv_f32(gbuf *b, const char *key, float v) {
    gb_key(b, key, LMP_GGUF_F32);
    gb_put(b, &v, 4);
}
static void kv_bool(gbuf *b, const char *key, int v) {
    gb_key(b, key, LMP_GGUF_BOOL);
    uint8_t c = v ? 1 : 0;
    gb_put(b, &c, 1);
}
static void kv_str(gbuf *b, const char *key, const char *v) {
    gb_key(b, key, LMP_GGUF_STRING);
    gb_str(b, v, strlen(v));
}
static void kv_arr_head(gbuf *b, const char *key, uint32_t elem, uint64_t count) {
    gb_key(b, key, LMP_GGUF_ARRAY);
    gb_u32(b, elem);
    gb_u64(b, count);
}

// Adds "GGUF export: " before the message of a failed metadata lookup; keeps the status (also for err == NULL).
static lmp_status exp_err(lmp_error *err, lmp_status st) { return lmp_err_prefix(err, st, "GGUF export"); }

// ---- hyper-parameters ----

typedef struct hparams {
    uint32_t ctx, dim, n_layers, ffn, heads, heads_kv, head_dim, rope_dim, vocab;
    float eps, theta;
    int neox;  // 1: our q/k rows are in the neox (rotate-half) order and must be permuted
} hparams;

static lmp_status u32_default(const lmp_meta *m, const char *key, uint32_t dflt, uint32_t *out, lmp_error *err) {
    if (!lmp_meta_find(m, key)) {
        *out = dflt;
        return LMP_OK;
    }
    return lmp_meta_get_u32(m, key, out, err);
}

static lmp_status read_hparams(const lmp_file *f, hparams *h, lmp_error *err) {
    const lmp_meta *m = lmp_file_meta(f);
    const char *arch;
    lmp_status st = lmp_meta_get_str(m, "general.architecture", &arch, err);
    if (st) return exp_err(err, st);
    if (strcmp(arch, "llama") != 0)
        return lmp_err(err, LMP_E_UNSUPPORTED, "GGUF export: architecture '%s' is not supported (only llama)", arch);
    if ((st = lmp_meta_get_u32(m, "llama.context_length", &h->ctx, err)) ||
        (st = lmp_meta_get_u32(m, "llama.embedding_length", &h->dim, err)) ||
        (st = lmp_meta_get_u32(m, "llama.block_count", &h->n_layers, err)) ||
        (st = lmp_meta_get_u32(m, "llama.feed_forward_length", &h->ffn, err)) ||
        (st = lmp_meta_get_u32(m, "llama.attention.head_count", &h->heads, err)) ||
        (st = u32_default(m, "llama.attention.head_count_kv", h->heads, &h->heads_kv, err)) ||
        (st = lmp_meta_get_f32(m, "llama.attention.layer_norm_rms_epsilon", &h->eps, err)))
        return exp_err(err, st);
    if (h->heads == 0 || h->dim == 0)
        return lmp_err(err, LMP_E_FORMAT, "GGUF export: llama.attention.head_count or embedding_length is 0");
    if ((st = u32_default(m, "llama.attention.head_dim", h->dim / h->heads, &h->head_dim, err)) ||
        (st = u32_default(m, "llama.rope.dimension_count", h->head_dim, &h->rope_dim, err)))
        return exp_err(err, st);
    h->theta = 10000.0f;
    if (lmp_meta_find(m, "llama.rope.freq_base") && (st = lmp_meta_get_f32(m, "llama.rope.freq_base", &h->theta, err)))
        return exp_err(err, st);
    const char *style = "interleaved";
    if (lmp_meta_find(m, "llama.rope.style") && (st = lmp_meta_get_str(m, "llama.rope.style", &style, err)))
        return exp_err(err, st);
    if (strcmp(style, "interleaved") == 0) h->neox = 0;
    else if (strcmp(style, "neox") == 0) h->neox = 1;
    else return lmp_err(err, LMP_E_UNSUPPORTED, "GGUF export: llama.rope.style '%s' is not supported", style);
    if (h->head_dim == 0 || h->rope_dim > h->head_dim || h->rope_dim % 2)
        return lmp_err(err, LMP_E_FORMAT, "GGUF export: rope dimension %u does not fit head_dim %u", h->rope_dim,
                       h->head_dim);
    const lmp_tensor *emb = lmp_file_find(f, "token_embd.weight");
    uint32_t rows = emb && emb->ndim == 2 && emb->shape[0] <= UINT32_MAX ? (uint32_t)emb->shape[0] : 0;
    if ((st = u32_default(m, "llama.vocab_size", rows, &h->vocab, err))) return exp_err(err, st);
    return LMP_OK;
}

// Rows of layer l's tensor `what` (e.g. "attn_q"), or dflt when the tensor is absent.
static int64_t layer_rows(const lmp_file *f, uint32_t l, const char *what, int64_t dflt) {
    char name[64];
    snprintf(name, sizeof name, "blk.%u.%s.weight", l, what);
    const lmp_tensor *t = lmp_file_find(f, name);
    return t && t->ndim == 2 ? t->shape[0] : dflt;
}

// Writes key as one u32: layer l's value is the row count of blk.l.<what>.weight divided by div. Why layers
// that differ are refused rather than written as a per-layer array: llama.cpp reads such arrays, but its
// "llama" architecture creates every layer's tensors with layer 0's head count and FFN width, so the file
// would not load. *out gets the value.
static lmp_status kv_per_layer(gbuf *b, const lmp_file *f, const hparams *h, const char *key, const char *what,
                               int64_t div, uint32_t dflt, uint32_t *out, lmp_error *err) {
    uint32_t first = dflt;
    for (uint32_t l = 0; l < h->n_layers; l++) {
        int64_t r = layer_rows(f, l, what, (int64_t)dflt * div);
        if (r % div || r / div > UINT32_MAX)
            return lmp_err(err, LMP_E_FORMAT, "GGUF export: blk.%u.%s.weight has %lld rows, not a multiple of head_dim %lld",
                           l, what, (long long)r, (long long)div);
        uint32_t v = (uint32_t)(r / div);
        if (l == 0) first = v;
        else if (v != first)
            return lmp_err(err, LMP_E_UNSUPPORTED,
                           "GGUF export: layers differ (%s: %u in blk.0, %u in blk.%u); llama.cpp's llama architecture "
                           "needs equal layers (prune with --uniform, or keep the .lmp)", key, first, v, l);
    }
    kv_u32(b, key, first);
    *out = first;
    return LMP_OK;
}

static lmp_status write_hparams(gbuf *b, const lmp_file *f, const hparams *h, lmp_error *err) {
    lmp_status st;
    kv_u32(b, "llama.context_length", h->ctx);
    kv_u32(b, "llama.embedding_length", h->dim);
    kv_u32(b, "llama.block_count", h->n_layers);
    uint32_t ffn, heads, heads_kv;
    if ((st = kv_per_layer(b, f, h, "llama.feed_forward_length", "ffn_gate", 1, h->ffn, &ffn, err))) return st;
    if ((st = kv_per_layer(b, f, h, "llama.attention.head_count", "attn_q", h->head_dim, h->heads, &heads, err)))
        return st;
    if ((st = kv_per_layer(b, f, h, "llama.attention.head_count_kv", "attn_k", h->head_dim, h->heads_kv, &heads_kv,
                           err)))
        return st;
    // llama.cpp takes the head size as embedding_length / head_count unless told: pruned heads must say it.
    if ((uint64_t)h->head_dim * heads != h->dim) {
        kv_u32(b, "llama.attention.key_length", h->head_dim);
        kv_u32(b, "llama.attention.value_length", h->head_dim);
    }
    kv_f32(b, "llama.attention.layer_norm_rms_epsilon", h->eps);
    kv_f32(b, "llama.rope.freq_base", h->theta);
    kv_u32(b, "llama.rope.dimension_count", h->rope_dim);
    kv_u32(b, "llama.vocab_size", h->vocab);
    return LMP_OK;
}

// ---- tokenizer ----

static void kv_str_array(gbuf *b, const char *key, const lmp_kv *kv) {
    kv_arr_head(b, key, LMP_GGUF_STRING, kv->count);
    char *const *s = kv->data;
    for (uint64_t i = 0; i < kv->count; i++) gb_str(b, s[i], kv->lens ? (size_t)kv->lens[i] : strlen(s[i]));
}

// Why: llama.cpp's llama (SentencePiece) vocabulary needs token types to recognise byte tokens
// (<0xAB>) and control tokens; files converted from llama2.c have none, so they are derived from the
// token text as llama.cpp's own converters do.
static void kv_synth_token_types(gbuf *b, const lmp_kv *tokens, int64_t bos, int64_t eos) {
    kv_arr_head(b, "tokenizer.ggml.token_type", LMP_GGUF_I32, tokens->count);
    char *const *s = tokens->data;
    for (uint64_t i = 0; i < tokens->count; i++) {
        int32_t t = 1;
        unsigned hex;
        char tail;
        if ((int64_t)i == bos || (int64_t)i == eos) t = 3;
        else if (strcmp(s[i], "<unk>") == 0) t = 2;
        else if (strlen(s[i]) == 6 && sscanf(s[i], "<0x%2x%c", &hex, &tail) == 2 && tail == '>') t = 6;
        gb_put(b, &t, 4);
    }
}

static lmp_status write_tokenizer(gbuf *b, const lmp_meta *m, lmp_error *err) {
    if (!lmp_meta_find(m, "tokenizer.model")) return LMP_OK;
    const char *model;
    lmp_status st = lmp_meta_get_str(m, "tokenizer.model", &model, err);
    if (st) return exp_err(err, st);
    int llama = strcmp(model, "llama") == 0;
    if (!llama && strcmp(model, "gpt2") != 0)
        return lmp_err(err, LMP_E_UNSUPPORTED, "GGUF export: tokenizer.model '%s' is not supported (llama, gpt2)", model);
    kv_str(b, "tokenizer.ggml.model", model);
    const void *data;
    uint64_t n_tokens;
    if ((st = lmp_meta_get_arr(m, "tokenizer.tokens", LMP_KV_STRING, &data, &n_tokens, err)))
        return exp_err(err, st);
    const lmp_kv *tokens = lmp_meta_find(m, "tokenizer.tokens");
    if (!llama) {
        const char *pre = "default";
        if (lmp_meta_find(m, "tokenizer.pre") && (st = lmp_meta_get_str(m, "tokenizer.pre", &pre, err)))
            return exp_err(err, st);
        kv_str(b, "tokenizer.ggml.pre", pre);
    }
    kv_str_array(b, "tokenizer.ggml.tokens", tokens);
    if (llama) {
        uint64_t n;
        if ((st = lmp_meta_get_arr(m, "tokenizer.scores", LMP_KV_F32, &data, &n, err)))
            return exp_err(err, st);
        if (n != n_tokens)
            return lmp_err(err, LMP_E_FORMAT, "GGUF export: tokenizer.scores has %llu entries for %llu tokens",
                           (unsigned long long)n, (unsigned long long)n_tokens);
        kv_arr_head(b, "tokenizer.ggml.scores", LMP_GGUF_F32, n);
        gb_put(b, data, (size_t)n * 4);
    } else {
        uint64_t n;
        if ((st = lmp_meta_get_arr(m, "tokenizer.merges", LMP_KV_STRING, &data, &n, err)))
            return exp_err(err, st);
        kv_str_array(b, "tokenizer.ggml.merges", lmp_meta_find(m, "tokenizer.merges"));
    }
    int64_t bos = -1, eos = -1;
    uint32_t id;
    if (lmp_meta_find(m, "tokenizer.bos_id")) {
        if ((st = lmp_meta_get_u32(m, "tokenizer.bos_id", &id, err))) return exp_err(err, st);
        kv_u32(b, "tokenizer.ggml.bos_token_id", id);
        bos = id;
    }
    if (lmp_meta_find(m, "tokenizer.eos_id")) {
        if ((st = lmp_meta_get_u32(m, "tokenizer.eos_id", &id, err))) return exp_err(err, st);
        kv_u32(b, "tokenizer.ggml.eos_token_id", id);
        eos = id;
    }
    if (lmp_meta_find(m, "tokenizer.token_type")) {
        uint64_t n;
        if ((st = lmp_meta_get_arr(m, "tokenizer.token_type", LMP_KV_I32, &data, &n, err)))
            return exp_err(err, st);
        if (n != n_tokens)
            return lmp_err(err, LMP_E_FORMAT, "GGUF export: tokenizer.token_type has %llu entries for %llu tokens",
                           (unsigned long long)n, (unsigned long long)n_tokens);
        kv_arr_head(b, "tokenizer.ggml.token_type", LMP_GGUF_I32, n);
        gb_put(b, data, (size_t)n * 4);
    } else if (llama) {
        kv_synth_token_types(b, tokens, bos, eos);
    }
    int v;
    if (lmp_meta_find(m, "tokenizer.add_bos")) {
        if ((st = lmp_meta_get_bool(m, "tokenizer.add_bos", &v, err))) return exp_err(err, st);
        kv_bool(b, "tokenizer.ggml.add_bos_token", v);
    }
    if (lmp_meta_find(m, "tokenizer.add_space_prefix")) {
        if ((st = lmp_meta_get_bool(m, "tokenizer.add_space_prefix", &v, err)))
            return exp_err(err, st);
        kv_bool(b, "tokenizer.ggml.add_space_prefix", v);
    }
    const char *tmpl;
    if (lmp_meta_find(m, "tokenizer.chat_template")) {
        if ((st = lmp_meta_get_str(m, "tokenizer.chat_template", &tmpl, err))) return exp_err(err, st);
        kv_str(b, "tokenizer.chat_template", tmpl);
    }
    return LMP_OK;
}

// ---- tensors ----

static int ggml_type_of(lmp_dtype t, uint32_t *out) {
    switch (t) {
    case LMP_DTYPE_F32: *out = LMP_GGML_F32; return 0;
    case LMP_DTYPE_F16: *out = LMP_GGML_F16; return 0;
    case LMP_DTYPE_BF16: *out = LMP_GGML_BF16; return 0;
    case LMP_DTYPE_Q8_0: *out = LMP_GGML_Q8_0; return 0;
    case LMP_DTYPE_Q4_0: *out = LMP_GGML_Q4_0; return 0;
    case LMP_DTYPE_Q4_1: *out = LMP_GGML_Q4_1; return 0;
    case LMP_DTYPE_Q4_K: *out = LMP_GGML_Q4_K; return 0;
    case LMP_DTYPE_Q5_K: *out = LMP_GGML_Q5_K; return 0;
    case LMP_DTYPE_Q6_K: *out = LMP_GGML_Q6_K; return 0;
    case LMP_DTYPE_IQ4_NL: *out = LMP_GGML_IQ4_NL; return 0;
    default: return -1;
    }
}

// llama.cpp's llama_ftype for the most common type among the matrices (general.file_type).
static uint32_t file_type(const lmp_file *f) {
    size_t count[LMP_DTYPE_COUNT] = {0};
    for (size_t i = 0; i < lmp_file_n_tensors(f); i++) {
        const lmp_tensor *t = lmp_file_tensor(f, i);
        if (t->ndim == 2 && (unsigned)t->type < LMP_DTYPE_COUNT) count[t->type]++;
    }
    int best = LMP_DTYPE_F32;
    for (int t = 0; t < LMP_DTYPE_COUNT; t++)
        if (count[t] > count[best]) best = t;
    switch (best) {
    case LMP_DTYPE_F16: return 1;
    case LMP_DTYPE_Q4_0: return 2;
    case LMP_DTYPE_Q4_1: return 3;
    case LMP_DTYPE_Q8_0: return 7;
    case LMP_DTYPE_Q4_K: return 15;   // LLAMA_FTYPE_MOSTLY_Q4_K_M (llama.cpp has no plain Q4_K)
    case LMP_DTYPE_Q5_K: return 17;   // MOSTLY_Q5_K_M
    case LMP_DTYPE_Q6_K: return 18;   // MOSTLY_Q6_K
    case LMP_DTYPE_IQ4_NL: return 25; // MOSTLY_IQ4_NL
    case LMP_DTYPE_BF16: return 32;
    default: return 0;
    }
}

// Whether tensor t holds query or key rows (which GGUF wants in the interleaved RoPE order).
static int is_qk(const char *name) {
    size_t n = strlen(name);
    static const char *q = ".attn_q.weight", *k = ".attn_k.weight";
    return strncmp(name, "blk.", 4) == 0 && ((n > strlen(q) && strcmp(name + n - strlen(q), q) == 0) ||
                                             (n > strlen(k) && strcmp(name + n - strlen(k), k) == 0));
}

// Why: our "neox" rows pair dimension i with i + rd/2 inside each head; GGUF's llama layout pairs 2i with
// 2i + 1. Row h*hd + i goes to h*hd + 2i and row h*hd + rd/2 + i to h*hd + 2i + 1 (i < rd/2); rows past
// rd (not rotated) stay. For rd = hd this is exactly llama.cpp's LlamaModel.permute.
static lmp_status permute_rows(const lmp_tensor *t, const hparams *h, uint8_t **out, lmp_error *err) {
    int64_t rows = lmp_tensor_nrows(t);
    if (t->ndim != 2 || rows % h->head_dim)
        return lmp_err(err, LMP_E_FORMAT, "GGUF export: tensor '%s' has %lld rows, not a multiple of head_dim %u",
                       t->name, (long long)rows, h->head_dim);
    size_t row_bytes = (size_t)(t->nbytes / (uint64_t)rows);
    uint8_t *dst = lmp_malloc((size_t)t->nbytes);
    if (!dst) return lmp_err(err, LMP_E_NOMEM, "GGUF export: out of memory permuting '%s'", t->name);
    const uint8_t *src = t->data;
    int64_t hd = h->head_dim, half = h->rope_dim / 2;
    for (int64_t r = 0; r < rows; r++) {
        int64_t head = r / hd, i = r % hd, to;
        if (i < half) to = 2 * i;
        else if (i < 2 * half) to = 2 * (i - half) + 1;
        else to = i;
        memcpy(dst + (size_t)(head * hd + to) * row_bytes, src + (size_t)r * row_bytes, row_bytes);
    }
    *out = dst;
    return LMP_OK;
}

static uint64_t align_up(uint64_t x) { return (x + GGUF_ALIGN - 1) & ~(uint64_t)(GGUF_ALIGN - 1); }

static lmp_status write_all(int fd, const void *p, size_t n, const char *tmp, lmp_error *err) {
    const uint8_t *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n > (1u << 30) ? (1u << 30) : n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return lmp_err(err, LMP_E_IO, "GGUF export: cannot write '%s': %s", tmp, strerror(errno));
        }
        c += w;
        n -= (size_t)w;
    }
    return LMP_OK;
}

static lmp_status write_file(const char *path, const gbuf *head, const lmp_file *f, const hparams *h, lmp_error *err) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return lmp_err(err, LMP_E_ARG, "GGUF export: path too long");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return lmp_err(err, LMP_E_IO, "GGUF export: cannot create '%s': %s", tmp, strerror(errno));
    static const uint8_t zeros[GGUF_ALIGN];
    lmp_status st = write_all(fd, head->p, head->n, tmp, err);
    uint64_t pos = head->n;
    for (size_t i = 0; i < lmp_file_n_tensors(f) && !st; i++) {
        const lmp_tensor *t = lmp_file_tensor(f, i);
        uint64_t start = align_up(pos);
        st = write_all(fd, zeros, (size_t)(start - pos), tmp, err);
        if (st) break;
        uint8_t *perm = NULL;
        if (h->neox && is_qk(t->name) && (st = permute_rows(t, h, &perm, err))) break;
        st = write_all(fd, perm ? perm : (const uint8_t *)t->data, (size_t)t->nbytes, tmp, err);
        lmp_free(perm);
        pos = start + t->nbytes;
    }
    if (!st && fsync(fd) != 0) st = lmp_err(err, LMP_E_IO, "GGUF export: cannot sync '%s': %s", tmp, strerror(errno));
    if (close(fd) != 0 && !st) st = lmp_err(err, LMP_E_IO, "GGUF export: cannot close '%s': %s", tmp, strerror(errno));
    if (!st && rename(tmp, path) != 0)
        st = lmp_err(err, LMP_E_IO, "GGUF export: cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
    if (st) unlink(tmp);
    return st;
}

lmp_status lmp_export_gguf(const lmp_file *f, const char *path, lmp_error *err) {
    if (!f || !path) return lmp_err(err, LMP_E_ARG, "lmp_export_gguf: NULL argument");
    hparams h;
    memset(&h, 0, sizeof h);
    lmp_status st = read_hparams(f, &h, err);
    if (st) return st;
    size_t n = lmp_file_n_tensors(f);
    int quantized = 0;
    for (size_t i = 0; i < n; i++) {
        const lmp_tensor *t = lmp_file_tensor(f, i);
        uint32_t gt;
        if (ggml_type_of(t->type, &gt) != 0)
            return lmp_err(err, LMP_E_UNSUPPORTED,
                           "GGUF export: tensor '%s' has type %s, which has no GGUF equivalent (f32, f16, bf16, q8_0, "
                           "q4_0, q4_1, q4_K, q5_K, q6_K, iq4_nl)", t->name, lmp_type_name(t->type));
        if (strlen(t->name) >= GGML_MAX_NAME)
            return lmp_err(err, LMP_E_UNSUPPORTED, "GGUF export: tensor name '%s' is longer than ggml's %d bytes",
                           t->name, GGML_MAX_NAME - 1);
        quantized |= lmp_type_get(t->type)->is_quantized;
    }
    const lmp_meta *m = lmp_file_meta(f);
    gbuf kv;
    memset(&kv, 0, sizeof kv);
    kv_str(&kv, "general.architecture", "llama");
    const char *name;
    if (lmp_meta_find(m, "general.name") && lmp_meta_get_str(m, "general.name", &name, NULL) == LMP_OK)
        kv_str(&kv, "general.name", name);
    kv_u32(&kv, "general.alignment", GGUF_ALIGN);
    kv_u32(&kv, "general.file_type", file_type(f));
    if (quantized) kv_u32(&kv, "general.quantization_version", 2);
    if (!(st = write_hparams(&kv, f, &h, err))) st = write_tokenizer(&kv, m, err);
    gbuf head;
    memset(&head, 0, sizeof head);
    if (!st) {
        gb_put(&head, LMP_GGUF_MAGIC, 4);
        gb_u32(&head, 3);
        gb_u64(&head, n);
        gb_u64(&head, kv.n_kv);
        gb_put(&head, kv.p, kv.n);
        uint64_t off = 0;
        for (size_t i = 0; i < n; i++) {
            const lmp_tensor *t = lmp_file_tensor(f, i);
            uint32_t gt = 0;
            ggml_type_of(t->type, &gt);
            gb_str(&head, t->name, strlen(t->name));
            gb_u32(&head, (uint32_t)t->ndim);
            for (int d = t->ndim - 1; d >= 0; d--) gb_u64(&head, (uint64_t)t->shape[d]);
            gb_u32(&head, gt);
            gb_u64(&head, off);
            off = align_up(off + t->nbytes);
        }
        size_t pad = (size_t)(align_up(head.n) - head.n);
        static const uint8_t zeros[GGUF_ALIGN];
        gb_put(&head, zeros, pad);
        if (kv.failed || head.failed) st = lmp_err(err, LMP_E_NOMEM, "GGUF export: out of memory");
    }
    if (!st) st = write_file(path, &head, f, &h, err);
    lmp_free(kv.p);
    lmp_free(head.p);
    return st;
}
