// import_gguf.c - lmp_import_gguf: a GGUF file of architecture "llama" -> an lmp_builder.
//
// Maps llama.cpp's keys to ours (docs/format.md "Metadata keys"), reverses GGUF's innermost-first
// dimensions into our outermost-first shapes, keeps F32/F16/BF16 tensors, keeps Q8_0/Q4_0/Q4_1 as our
// bit-identical q8_0/q4_0/q4_1 (or dequantizes them to f32 when asked), dequantizes Q4_K and Q6_K to
// f32, and refuses every other tensor type by name. Query/key rows stay as they are: llama.cpp's
// converter already stores them in the interleaved RoPE layout (llama.rope.style = "interleaved").
// The tokenizer keys (tokenizer.ggml.*) become ours for the "llama" and "gpt2" tokenizer models.
// It does not support RoPE scaling (llama 3.1 rope_freqs), which it refuses rather than ignore.
#include <string.h>

#include "format/gguf.h"
#include "format/lmp_import.h"

#define CHECK_META(call)                                                              \
    do {                                                                              \
        lmp_status st_ = (call);                                                      \
        if (st_) return lmp_err(err, st_, "GGUF import: cannot set metadata (%s)", lmp_status_name(st_)); \
    } while (0)

// An integer hyper-parameter that llama.cpp allows per layer (an array): we keep the largest value,
// since layers read their own sizes from the tensor shapes. *found = 0 when the key is absent.
static lmp_status get_u32_or_max(const lmp_gguf *g, const char *key, uint32_t *out, int *found, lmp_error *err) {
    const lmp_gguf_kv *kv = lmp_gguf_find_kv(g, key);
    *found = kv != NULL;
    if (!kv) return LMP_OK;
    if (kv->type != LMP_GGUF_ARRAY) return lmp_gguf_get_u32(g, key, out, err);
    if (kv->count == 0) return lmp_err(err, LMP_E_FORMAT, "GGUF: key '%s' is an empty array", key);
    int64_t best = 0;
    for (uint64_t i = 0; i < kv->count; i++) {
        int64_t v;
        if (lmp_gguf_arr_int(kv, i, &v) != 0)
            return lmp_err(err, LMP_E_FORMAT, "GGUF: key '%s' is an array of %s, expected integers", key,
                           lmp_gguf_vtype_name(kv->elem_type));
        if (v < 0 || v > UINT32_MAX)
            return lmp_err(err, LMP_E_FORMAT, "GGUF: key '%s' element %llu = %lld is out of range", key,
                           (unsigned long long)i, (long long)v);
        if (v > best) best = v;
    }
    *out = (uint32_t)best;
    return LMP_OK;
}

static lmp_status require_u32(const lmp_gguf *g, const char *key, uint32_t *out, lmp_error *err) {
    int found;
    lmp_status st = get_u32_or_max(g, key, out, &found, err);
    if (st) return st;
    if (!found) return lmp_err(err, LMP_E_FORMAT, "GGUF: missing key '%s'", key);
    if (*out == 0) return lmp_err(err, LMP_E_FORMAT, "GGUF: key '%s' is 0", key);
    return LMP_OK;
}

// A string value as a NUL-terminated copy for the metadata store; refuses embedded NUL bytes.
static lmp_status str_value(const lmp_gguf *g, const char *key, char **out, lmp_error *err) {
    lmp_gguf_str s;
    lmp_status st = lmp_gguf_get_str(g, key, &s, err);
    if (st) return st;
    if (memchr(s.p, 0, (size_t)s.len)) return lmp_err(err, LMP_E_FORMAT, "GGUF: key '%s' contains a NUL byte", key);
    *out = lmp_malloc((size_t)s.len + 1);
    if (!*out) return lmp_err(err, LMP_E_NOMEM, "GGUF: out of memory");
    memcpy(*out, s.p, (size_t)s.len);
    (*out)[s.len] = 0;
    return LMP_OK;
}

static lmp_status copy_str_key(const lmp_gguf *g, const char *from, lmp_meta *m, const char *to, lmp_error *err) {
    if (!lmp_gguf_find_kv(g, from)) return LMP_OK;
    char *s = NULL;
    lmp_status st = str_value(g, from, &s, err);
    if (st) return st;
    st = lmp_meta_set_str(m, to, s);
    lmp_free(s);
    if (st) return lmp_err(err, st, "GGUF import: cannot set metadata '%s'", to);
    return LMP_OK;
}

// Copies a GGUF string array into a metadata string array (pointers into the file; the store copies).
static lmp_status copy_str_array(const lmp_gguf *g, const char *from, lmp_meta *m, const char *to,
                                 uint64_t *count, lmp_error *err) {
    const lmp_gguf_kv *kv = lmp_gguf_find_kv(g, from);
    if (!kv) return lmp_err(err, LMP_E_FORMAT, "GGUF: missing key '%s'", from);
    if (kv->type != LMP_GGUF_ARRAY || kv->elem_type != LMP_GGUF_STRING)
        return lmp_err(err, LMP_E_FORMAT, "GGUF: key '%s' has type %s%s%s, expected an array of strings", from,
                       lmp_gguf_vtype_name(kv->type), kv->type == LMP_GGUF_ARRAY ? " of " : "",
                       kv->type == LMP_GGUF_ARRAY ? lmp_gguf_vtype_name(kv->elem_type) : "");
    size_t n = (size_t)kv->count;
    const char **ptrs = lmp_malloc((n ? n : 1) * sizeof *ptrs);
    uint64_t *lens = lmp_malloc((n ? n : 1) * sizeof *lens);
    if (!ptrs || !lens) {
        lmp_free(ptrs);
        lmp_free(lens);
        return lmp_err(err, LMP_E_NOMEM, "GGUF: out of memory copying '%s'", from);
    }
    lmp_status st = LMP_OK;
    for (size_t i = 0; i < n && !st; i++) {
        if (memchr(kv->strs[i].p, 0, (size_t)kv->strs[i].len))
            st = lmp_err(err, LMP_E_FORMAT, "GGUF: key '%s' element %zu contains a NUL byte", from, i);
        ptrs[i] = kv->strs[i].p;
        lens[i] = kv->strs[i].len;
    }
    if (!st) {
        lmp_kv v;
        memset(&v, 0, sizeof v);
        v.type = LMP_KV_ARRAY;
        v.elem_type = LMP_KV_STRING;
        v.count = n;
        v.data = (void *)ptrs;
        v.lens = lens;
        lmp_status s2 = lmp_meta_set_kv(m, to, &v);
        if (s2) st = lmp_err(err, s2, "GGUF import: cannot set metadata '%s'", to);
    }
    lmp_free(ptrs);
    lmp_free(lens);
    if (!st && count) *count = n;
    return st;
}

// tokenizer.ggml.scores (f32 or f64) -> tokenizer.scores (f32), one per token.
static lmp_status copy_scores(const lmp_gguf *g, lmp_meta *m, uint64_t n_tokens, lmp_error *err) {
    const char *key = "tokenizer.ggml.scores";
    const lmp_gguf_kv *kv = lmp_gguf_find_kv(g, key);
    if (!kv) return lmp_err(err, LMP_E_FORMAT, "GGUF: missing key '%s' (needed by the llama tokenizer)", key);
    double probe;
    if (kv->type != LMP_GGUF_ARRAY || (kv->count && lmp_gguf_arr_float(kv, 0, &probe) != 0))
        return lmp_err(err, LMP_E_FORMAT, "GGUF: key '%s' is not an array of floats", key);
    if (kv->count != n_tokens)
        return lmp_err(err, LMP_E_FORMAT, "GGUF: key '%s' has %llu entries for %llu tokens", key,
                       (unsigned long long)kv->count, (unsigned long long)n_tokens);
    float *s = lmp_malloc((size_t)(n_tokens ? n_tokens : 1) * sizeof *s);
    if (!s) return lmp_err(err, LMP_E_NOMEM, "GGUF: out of memory");
    for (uint64_t i = 0; i < n_tokens; i++) {
        double v = 0;
        lmp_gguf_arr_float(kv, i, &v);
        s[i] = (float)v;
    }
    lmp_status st = lmp_meta_set_arr(m, "tokenizer.scores", LMP_KV_F32, s, n_tokens);
    lmp_free(s);
    if (st) return lmp_err(err, st, "GGUF import: cannot set metadata 'tokenizer.scores'");
    return LMP_OK;
}

// tokenizer.ggml.token_type (any integer array) -> tokenizer.token_type (i32), optional.
static lmp_status copy_token_types(const lmp_gguf *g, lmp_meta *m, uint64_t n_tokens, lmp_error *err) {
    const char *key = "tokenizer.ggml.token_type";
    const lmp_gguf_kv *kv = lmp_gguf_find_kv(g, key);
    if (!kv) return LMP_OK;
    int64_t probe;
    if (kv->type != LMP_GGUF_ARRAY || (kv->count && lmp_gguf_arr_int(kv, 0, &probe) != 0))
        return lmp_err(err, LMP_E_FORMAT, "GGUF: key '%s' is not an array of integers", key);
    if (kv->count != n_tokens)
        return lmp_err(err, LMP_E_FORMAT, "GGUF: key '%s' has %llu entries for %llu tokens", key,
                       (unsigned long long)kv->count, (unsigned long long)n_tokens);
    int32_t *t = lmp_malloc((size_t)(n_tokens ? n_tokens : 1) * sizeof *t);
    if (!t) return lmp_err(err, LMP_E_NOMEM, "GGUF: out of memory");
    for (uint64_t i = 0; i < n_tokens; i++) {
        int64_t v = 0;
        lmp_gguf_arr_int(kv, i, &v);
        if (v < INT32_MIN || v > INT32_MAX) {
            lmp_free(t);
            return lmp_err(err, LMP_E_FORMAT, "GGUF: key '%s' element %llu = %lld is out of range", key,
                           (unsigned long long)i, (long long)v);
        }
        t[i] = (int32_t)v;
    }
    lmp_status st = lmp_meta_set_arr(m, "tokenizer.token_type", LMP_KV_I32, t, n_tokens);
    lmp_free(t);
    if (st) return lmp_err(err, st, "GGUF import: cannot set metadata 'tokenizer.token_type'");
    return LMP_OK;
}

static lmp_status copy_token_id(const lmp_gguf *g, const char *from, lmp_meta *m, const char *to, uint64_t n_tokens,
                                lmp_error *err) {
    if (!lmp_gguf_find_kv(g, from)) return LMP_OK;
    uint32_t id;
    lmp_status st = lmp_gguf_get_u32(g, from, &id, err);
    if (st) return st;
    if (id >= n_tokens)
        return lmp_err(err, LMP_E_FORMAT, "GGUF: key '%s' = %u is not a token id (vocabulary of %llu)", from, id,
                       (unsigned long long)n_tokens);
    CHECK_META(lmp_meta_set_u32(m, to, id));
    return LMP_OK;
}

static lmp_status copy_bool(const lmp_gguf *g, const char *from, int dflt, int has_default, lmp_meta *m, const char *to,
                            lmp_error *err) {
    int v = dflt;
    if (lmp_gguf_find_kv(g, from)) {
        lmp_status st = lmp_gguf_get_bool(g, from, &v, err);
        if (st) return st;
    } else if (!has_default) {
        return LMP_OK;
    }
    CHECK_META(lmp_meta_set_bool(m, to, v));
    return LMP_OK;
}

static lmp_status import_tokenizer(const lmp_gguf *g, lmp_meta *m, lmp_error *err) {
    if (!lmp_gguf_find_kv(g, "tokenizer.ggml.model")) return LMP_OK;  // a model without a tokenizer
    char *model = NULL;
    lmp_status st = str_value(g, "tokenizer.ggml.model", &model, err);
    if (st) return st;
    int llama = strcmp(model, "llama") == 0, gpt2 = strcmp(model, "gpt2") == 0;
    if (!llama && !gpt2) {
        st = lmp_err(err, LMP_E_UNSUPPORTED, "GGUF: tokenizer.ggml.model '%s' is not supported (llama, gpt2)", model);
        lmp_free(model);
        return st;
    }
    lmp_free(model);
    CHECK_META(lmp_meta_set_str(m, "tokenizer.model", llama ? "llama" : "gpt2"));
    uint64_t n = 0;
    if ((st = copy_str_array(g, "tokenizer.ggml.tokens", m, "tokenizer.tokens", &n, err))) return st;
    if (n == 0) return lmp_err(err, LMP_E_FORMAT, "GGUF: tokenizer.ggml.tokens is empty");
    if (llama && (st = copy_scores(g, m, n, err))) return st;
    if (gpt2) {
        if ((st = copy_str_array(g, "tokenizer.ggml.merges", m, "tokenizer.merges", NULL, err))) return st;
        if ((st = copy_str_key(g, "tokenizer.ggml.pre", m, "tokenizer.pre", err))) return st;
    }
    if ((st = copy_token_types(g, m, n, err))) return st;
    if ((st = copy_token_id(g, "tokenizer.ggml.bos_token_id", m, "tokenizer.bos_id", n, err))) return st;
    if ((st = copy_token_id(g, "tokenizer.ggml.eos_token_id", m, "tokenizer.eos_id", n, err))) return st;
    if ((st = copy_bool(g, "tokenizer.ggml.add_bos_token", llama, 1, m, "tokenizer.add_bos", err))) return st;
    if ((st = copy_bool(g, "tokenizer.ggml.add_space_prefix", 1, llama, m, "tokenizer.add_space_prefix", err)))
        return st;
    return copy_str_key(g, "tokenizer.chat_template", m, "tokenizer.chat_template", err);
}

// Hyper-parameters: llama.* (GGUF) -> llama.* (ours), with llama.cpp's defaults.
static lmp_status import_hparams(const lmp_gguf *g, lmp_meta *m, lmp_error *err) {
    uint32_t ctx, dim, n_layers, ffn, heads, heads_kv, head_dim, rope_dim, vocab;
    int found;
    lmp_status st;
    if ((st = require_u32(g, "llama.context_length", &ctx, err))) return st;
    if ((st = require_u32(g, "llama.embedding_length", &dim, err))) return st;
    if ((st = require_u32(g, "llama.block_count", &n_layers, err))) return st;
    if ((st = require_u32(g, "llama.feed_forward_length", &ffn, err))) return st;
    if ((st = require_u32(g, "llama.attention.head_count", &heads, err))) return st;
    if ((st = get_u32_or_max(g, "llama.attention.head_count_kv", &heads_kv, &found, err))) return st;
    if (!found) heads_kv = heads;
    if (heads_kv == 0 || heads % heads_kv)
        return lmp_err(err, LMP_E_FORMAT, "GGUF: llama.attention.head_count_kv %u does not divide head_count %u",
                       heads_kv, heads);
    if ((st = get_u32_or_max(g, "llama.attention.key_length", &head_dim, &found, err))) return st;
    if (!found) {
        if (dim % heads)
            return lmp_err(err, LMP_E_FORMAT, "GGUF: llama.embedding_length %u is not a multiple of head_count %u "
                           "and llama.attention.key_length is absent", dim, heads);
        head_dim = dim / heads;
    }
    uint32_t vlen;
    if ((st = get_u32_or_max(g, "llama.attention.value_length", &vlen, &found, err))) return st;
    if (found && vlen != head_dim)
        return lmp_err(err, LMP_E_UNSUPPORTED, "GGUF: llama.attention.value_length %u differs from key_length %u",
                       vlen, head_dim);
    if (head_dim == 0 || head_dim % 2)
        return lmp_err(err, LMP_E_FORMAT, "GGUF: head dimension %u must be even and positive", head_dim);
    if ((st = get_u32_or_max(g, "llama.rope.dimension_count", &rope_dim, &found, err))) return st;
    if (!found) rope_dim = head_dim;
    double eps, theta = 10000.0;
    if ((st = lmp_gguf_get_f64(g, "llama.attention.layer_norm_rms_epsilon", &eps, err))) return st;
    if (lmp_gguf_find_kv(g, "llama.rope.freq_base") && (st = lmp_gguf_get_f64(g, "llama.rope.freq_base", &theta, err)))
        return st;
    if (lmp_gguf_find_kv(g, "llama.rope.scaling.type")) {
        lmp_gguf_str s;
        if ((st = lmp_gguf_get_str(g, "llama.rope.scaling.type", &s, err))) return st;
        if (!(s.len == 4 && memcmp(s.p, "none", 4) == 0))
            return lmp_err(err, LMP_E_UNSUPPORTED, "GGUF: RoPE scaling '%.*s' (llama.rope.scaling.type) is not supported",
                           (int)(s.len > 40 ? 40 : s.len), s.p);
    }
    if (lmp_gguf_find_tensor(g, "rope_freqs.weight"))
        return lmp_err(err, LMP_E_UNSUPPORTED, "GGUF: RoPE frequency factors (tensor 'rope_freqs.weight', llama 3.1 "
                       "scaling) are not supported");
    const lmp_gguf_tensor *emb = lmp_gguf_find_tensor(g, "token_embd.weight");
    if (!emb) return lmp_err(err, LMP_E_FORMAT, "GGUF: missing tensor 'token_embd.weight'");
    if ((st = get_u32_or_max(g, "llama.vocab_size", &vocab, &found, err))) return st;
    if (!found) {
        if (emb->n_dims != 2 || emb->ne[1] > UINT32_MAX)
            return lmp_err(err, LMP_E_FORMAT, "GGUF: tensor 'token_embd.weight' is not (vocab, dim)");
        vocab = (uint32_t)emb->ne[1];
    }
    CHECK_META(lmp_meta_set_u32(m, "llama.context_length", ctx));
    CHECK_META(lmp_meta_set_u32(m, "llama.embedding_length", dim));
    CHECK_META(lmp_meta_set_u32(m, "llama.block_count", n_layers));
    CHECK_META(lmp_meta_set_u32(m, "llama.feed_forward_length", ffn));
    CHECK_META(lmp_meta_set_u32(m, "llama.attention.head_count", heads));
    CHECK_META(lmp_meta_set_u32(m, "llama.attention.head_count_kv", heads_kv));
    CHECK_META(lmp_meta_set_u32(m, "llama.attention.head_dim", head_dim));
    CHECK_META(lmp_meta_set_f32(m, "llama.attention.layer_norm_rms_epsilon", (float)eps));
    CHECK_META(lmp_meta_set_f32(m, "llama.rope.freq_base", (float)theta));
    CHECK_META(lmp_meta_set_u32(m, "llama.rope.dimension_count", rope_dim));
    CHECK_META(lmp_meta_set_str(m, "llama.rope.style", "interleaved"));
    CHECK_META(lmp_meta_set_u32(m, "llama.vocab_size", vocab));
    return LMP_OK;
}

// Our dtype for a GGUF tensor type, and whether its data must be dequantized to f32 (*deq).
static lmp_status map_type(const lmp_gguf_tensor *t, int dequantize, lmp_dtype *out, int *deq, lmp_error *err) {
    *deq = 0;
    switch (t->type) {
    case LMP_GGML_F32: *out = LMP_DTYPE_F32; return LMP_OK;
    case LMP_GGML_F16: *out = LMP_DTYPE_F16; return LMP_OK;
    case LMP_GGML_BF16: *out = LMP_DTYPE_BF16; return LMP_OK;
    case LMP_GGML_Q8_0: *out = LMP_DTYPE_Q8_0; break;
    case LMP_GGML_Q4_0: *out = LMP_DTYPE_Q4_0; break;
    case LMP_GGML_Q4_1: *out = LMP_DTYPE_Q4_1; break;
    case LMP_GGML_Q4_K: *out = LMP_DTYPE_Q4_K; break;
    case LMP_GGML_Q5_K: *out = LMP_DTYPE_Q5_K; break;
    case LMP_GGML_Q6_K: *out = LMP_DTYPE_Q6_K; break;
    case LMP_GGML_IQ4_NL: *out = LMP_DTYPE_IQ4_NL; break;
    default: {
        const char *nm = lmp_ggml_type_name(t->type);
        return lmp_err(err, LMP_E_UNSUPPORTED, "GGUF: tensor '%s' of type %s (%u) is not supported", t->name,
                       nm ? nm : "?", t->type);
    }
    }
    if (dequantize) {
        *out = LMP_DTYPE_F32;
        *deq = 1;
    }
    return LMP_OK;
}

static lmp_status import_tensor(const lmp_gguf_tensor *t, int dequantize, lmp_builder *b, lmp_error *err) {
    lmp_dtype type;
    int deq;
    lmp_status st = map_type(t, dequantize, &type, &deq, err);
    if (st) return st;
    int64_t shape[LMP_MAX_DIMS];
    uint64_t nel = 1;
    for (int d = 0; d < t->n_dims; d++) {
        shape[d] = t->ne[t->n_dims - 1 - d];
        if (lmp_mul_overflow(nel, (uint64_t)t->ne[d], &nel))
            return lmp_err(err, LMP_E_FORMAT, "GGUF: tensor '%s': element count overflows", t->name);
    }
    uint64_t bytes = t->nbytes;
    if (deq && lmp_mul_overflow(nel, 4, &bytes))
        return lmp_err(err, LMP_E_FORMAT, "GGUF: tensor '%s': f32 size overflows", t->name);
    if (bytes > SIZE_MAX) return lmp_err(err, LMP_E_NOMEM, "GGUF: tensor '%s' does not fit in memory", t->name);
    void *data = lmp_malloc((size_t)bytes);
    if (!data)
        return lmp_err(err, LMP_E_NOMEM, "GGUF: out of memory for tensor '%s' (%llu bytes)", t->name,
                       (unsigned long long)bytes);
    if (deq) {
        if ((st = lmp_gguf_dequantize(t->type, t->data, data, (int64_t)nel, err))) {
            lmp_free(data);
            return lmp_err_prefix(err, st, "tensor '%s'", t->name);
        }
    } else {
        memcpy(data, t->data, (size_t)bytes);
    }
    st = lmp_builder_add(b, t->name, type, t->n_dims, shape, data, err);  // takes data, even on error
    return lmp_err_prefix(err, st, "GGUF import");
}

static lmp_status import_all(const lmp_gguf *g, const char *path, int dequantize, lmp_builder *b, lmp_error *err) {
    lmp_meta *m = lmp_builder_meta(b);
    const lmp_gguf_kv *arch_kv = lmp_gguf_find_kv(g, "general.architecture");
    if (!arch_kv) return lmp_err(err, LMP_E_FORMAT, "GGUF: missing key 'general.architecture'");
    lmp_gguf_str arch;
    lmp_status st = lmp_gguf_get_str(g, "general.architecture", &arch, err);
    if (st) return st;
    if (!(arch.len == 5 && memcmp(arch.p, "llama", 5) == 0))
        return lmp_err(err, LMP_E_UNSUPPORTED, "GGUF: architecture '%.*s' is not supported (only llama)",
                       (int)(arch.len > 64 ? 64 : arch.len), arch.p);
    // Refuse unsupported tensor types before copying anything.
    for (size_t i = 0; i < lmp_gguf_n_tensors(g); i++) {
        lmp_dtype type;
        int deq;
        if ((st = map_type(lmp_gguf_tensor_at(g, i), dequantize, &type, &deq, err))) return st;
    }
    CHECK_META(lmp_meta_set_str(m, "general.architecture", "llama"));
    if ((st = copy_str_key(g, "general.name", m, "general.name", err))) return st;
    if ((st = import_hparams(g, m, err))) return st;
    if ((st = import_tokenizer(g, m, err))) return st;
    size_t size;
    const void *bytes = lmp_gguf_bytes(g, &size);
    CHECK_META(lmp_meta_set_str(m, "provenance.tool", "lmpress " LMP_VERSION_STRING));
    CHECK_META(lmp_meta_set_str(m, "provenance.source", path));
    CHECK_META(lmp_meta_set_u32(m, "provenance.source_crc32", lmp_crc32(0, bytes, size)));
    for (size_t i = 0; i < lmp_gguf_n_tensors(g); i++)
        if ((st = import_tensor(lmp_gguf_tensor_at(g, i), dequantize, b, err))) return st;
    return LMP_OK;
}

lmp_status lmp_import_gguf(const char *path, const lmp_import_opts *opts, lmp_builder **out, lmp_error *err) {
    if (!out || !path) return lmp_err(err, LMP_E_ARG, "lmp_import_gguf: NULL argument");
    *out = NULL;
    int dequantize = opts && opts->dequantize;
    lmp_gguf *g = NULL;
    lmp_status st = lmp_gguf_open(path, &g, err);
    if (st) return st;
    lmp_builder *b = lmp_builder_new();
    if (!b) {
        lmp_gguf_close(g);
        return lmp_err(err, LMP_E_NOMEM, "GGUF import: out of memory");
    }
    st = import_all(g, path, dequantize, b, err);
    lmp_gguf_close(g);
    if (st) {
        lmp_builder_free(b);
        return st;
    }
    *out = b;
    return LMP_OK;
}
