// import_llama2c.c - imports a llama2.c checkpoint (.bin) and its tokenizer.bin into an lmp_builder.
//
// Two fp32 layouts (karpathy/llama2.c export.py):
//   legacy (v0): 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len), a
//     negative vocab_size meaning a separate classifier; then token_embedding, rms_att, wq, wk, wv, wo,
//     rms_ffn, w1, w2, w3, rms_final, freq_cis_real, freq_cis_imag (skipped), [wcls];
//   version 1: 256-byte header (u32 magic "ak42", i32 version, the 7 int32, u8 shared_classifier, zero
//     padding); then rms_att, rms_ffn, rms_final, token_embedding, wq, wk, wv, wo, w1, w2, w3, [wcls].
// Matrices are stored (out, in) row-major, which is our layout: tensors are copied as they are.
// The header must announce exactly the file's size. The tokenizer (int32 max_token_length, then per
// token f32 score, int32 len, bytes) becomes the tokenizer.* keys.
//
// It does not read version 2 (Q8_0) or later exports: they are refused with a message naming them.
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format/lmp_import.h"

#define L2C_MAGIC 0x616b3432u  // "ak42" read as a little-endian u32
#define L2C_V1_HEADER 256
#define L2C_LEGACY_HEADER 28

typedef struct l2c_config {
    int version;         // 0 legacy, 1
    int64_t dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len;
    int shared;          // classifier tied to the token embedding
    int64_t head_dim, kv_dim;
    uint64_t header_bytes;
} l2c_config;

// The weight groups of the file, each per_layer elements per layer (or once when not layered).
typedef enum {
    W_EMB, W_ATT_NORM, W_Q, W_K, W_V, W_O, W_FFN_NORM, W_GATE, W_DOWN, W_UP, W_FINAL_NORM, W_FREQ_RE, W_FREQ_IM,
    W_CLS, W_COUNT
} wkind;

typedef struct l2c_layout {
    uint64_t elems[W_COUNT];   // per layer (layered kinds) or in total
    int layered[W_COUNT];
    uint64_t offset[W_COUNT];  // byte offset in the file; valid where present[k]
    int present[W_COUNT];
    uint64_t total_bytes;
} l2c_layout;

typedef struct mapped {
    const uint8_t *p;  // (size)
    uint64_t size;
} mapped;

static lmp_status map_file(const char *path, const char *what, mapped *m, lmp_error *err) {
    memset(m, 0, sizeof *m);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return lmp_err(err, LMP_E_IO, "cannot open %s '%s': %s", what, path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return lmp_err(err, LMP_E_IO, "%s '%s' is not a regular file", what, path);
    }
    m->size = (uint64_t)sb.st_size;
    if (m->size > SIZE_MAX) {
        close(fd);
        return lmp_err(err, LMP_E_IO, "%s '%s' is too large to map", what, path);
    }
    if (m->size > 0) {
        void *p = mmap(NULL, (size_t)m->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            return lmp_err(err, LMP_E_IO, "cannot map %s '%s': %s", what, path, strerror(e));
        }
        m->p = p;
    }
    close(fd);
    return LMP_OK;
}

static void unmap_file(mapped *m) {
    if (m->p) munmap((void *)m->p, (size_t)m->size);
    memset(m, 0, sizeof *m);
}

static int32_t rd_i32(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

// ---- header ----

static lmp_status parse_header(const char *path, const mapped *m, l2c_config *c, lmp_error *err) {
    memset(c, 0, sizeof *c);
    int32_t h[7];
    if (m->size >= 4 && (uint32_t)rd_i32(m->p) == L2C_MAGIC) {
        if (m->size < 8)
            return lmp_err(err, LMP_E_FORMAT, "truncated llama2.c file '%s': %llu bytes, the version needs 8", path,
                           (unsigned long long)m->size);
        int32_t version = rd_i32(m->p + 4);
        if (version == 2)
            return lmp_err(err, LMP_E_UNSUPPORTED,
                           "'%s': llama2.c version 2 (Q8_0 export) is not supported; use the fp32 export", path);
        if (version != 1)
            return lmp_err(err, LMP_E_UNSUPPORTED,
                           "'%s': llama2.c version %d is not supported (this build reads the legacy and version 1 "
                           "fp32 exports)",
                           path, version);
        if (m->size < L2C_V1_HEADER)
            return lmp_err(err, LMP_E_FORMAT, "truncated llama2.c file '%s': %llu bytes, the version 1 header needs %d",
                           path, (unsigned long long)m->size, L2C_V1_HEADER);
        for (int i = 0; i < 7; i++) h[i] = rd_i32(m->p + 8 + 4 * i);
        uint8_t shared = m->p[36];
        if (shared > 1)
            return lmp_err(err, LMP_E_FORMAT, "'%s': llama2.c header: shared_classifier is %u (must be 0 or 1)", path,
                           shared);
        if (h[5] <= 0)
            return lmp_err(err, LMP_E_FORMAT, "'%s': llama2.c header: vocab_size is %d (must be positive)", path, h[5]);
        c->version = 1;
        c->shared = shared;
        c->header_bytes = L2C_V1_HEADER;
    } else {
        if (m->size < L2C_LEGACY_HEADER)
            return lmp_err(err, LMP_E_FORMAT, "truncated llama2.c file '%s': %llu bytes, the header needs %d", path,
                           (unsigned long long)m->size, L2C_LEGACY_HEADER);
        for (int i = 0; i < 7; i++) h[i] = rd_i32(m->p + 4 * i);
        if (h[5] == 0 || h[5] == INT32_MIN)
            return lmp_err(err, LMP_E_FORMAT, "'%s': llama2.c header: vocab_size is %d", path, h[5]);
        c->version = 0;
        c->shared = h[5] > 0;  // legacy: negative vocab_size = separate classifier
        if (h[5] < 0) h[5] = -h[5];
        c->header_bytes = L2C_LEGACY_HEADER;
    }
    static const char *names[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
    for (int i = 0; i < 7; i++)
        if (h[i] <= 0)
            return lmp_err(err, LMP_E_FORMAT, "'%s': llama2.c header: %s is %d (must be positive)", path, names[i], h[i]);
    c->dim = h[0];
    c->hidden = h[1];
    c->n_layers = h[2];
    c->n_heads = h[3];
    c->n_kv_heads = h[4];
    c->vocab = h[5];
    c->seq_len = h[6];
    if (c->dim % c->n_heads != 0)
        return lmp_err(err, LMP_E_FORMAT, "'%s': llama2.c header: dim %lld is not a multiple of n_heads %lld", path,
                       (long long)c->dim, (long long)c->n_heads);
    if (c->n_heads % c->n_kv_heads != 0)
        return lmp_err(err, LMP_E_FORMAT, "'%s': llama2.c header: n_heads %lld is not a multiple of n_kv_heads %lld",
                       path, (long long)c->n_heads, (long long)c->n_kv_heads);
    c->head_dim = c->dim / c->n_heads;
    if (c->head_dim % 2 != 0)
        return lmp_err(err, LMP_E_FORMAT, "'%s': llama2.c header: head size %lld (dim / n_heads) is odd; RoPE needs pairs",
                       path, (long long)c->head_dim);
    c->kv_dim = c->head_dim * c->n_kv_heads;
    return LMP_OK;
}

static uint64_t mul_ovf(uint64_t a, uint64_t b, int *ovf) {
    uint64_t r = 0;
    *ovf |= lmp_mul_overflow(a, b, &r);
    return r;
}

// Byte offsets of every weight group in the file's order; 1 on 64-bit overflow.
static int compute_layout(const l2c_config *c, l2c_layout *L) {
    memset(L, 0, sizeof *L);
    uint64_t d = (uint64_t)c->dim, h = (uint64_t)c->hidden, kv = (uint64_t)c->kv_dim;
    uint64_t half = (uint64_t)c->head_dim / 2;
    int ovf = 0;
    L->elems[W_EMB] = mul_ovf((uint64_t)c->vocab, d, &ovf);
    L->elems[W_CLS] = L->elems[W_EMB];
    L->elems[W_ATT_NORM] = L->elems[W_FFN_NORM] = d;
    L->elems[W_Q] = L->elems[W_O] = mul_ovf(d, d, &ovf);
    L->elems[W_K] = L->elems[W_V] = mul_ovf(kv, d, &ovf);
    L->elems[W_GATE] = L->elems[W_DOWN] = L->elems[W_UP] = mul_ovf(h, d, &ovf);
    L->elems[W_FINAL_NORM] = d;
    L->elems[W_FREQ_RE] = L->elems[W_FREQ_IM] = mul_ovf((uint64_t)c->seq_len, half, &ovf);
    static const wkind layered[] = {W_ATT_NORM, W_Q, W_K, W_V, W_O, W_FFN_NORM, W_GATE, W_DOWN, W_UP};
    for (size_t i = 0; i < sizeof layered / sizeof layered[0]; i++) L->layered[layered[i]] = 1;
    static const wkind legacy[] = {W_EMB,  W_ATT_NORM, W_Q,  W_K,          W_V,       W_O,       W_FFN_NORM,
                                   W_GATE, W_DOWN,     W_UP, W_FINAL_NORM, W_FREQ_RE, W_FREQ_IM, W_CLS};
    static const wkind v1[] = {W_ATT_NORM, W_FFN_NORM, W_FINAL_NORM, W_EMB,  W_Q,  W_K,
                               W_V,        W_O,        W_GATE,       W_DOWN, W_UP, W_CLS};
    const wkind *order = c->version == 0 ? legacy : v1;
    size_t n = c->version == 0 ? sizeof legacy / sizeof legacy[0] : sizeof v1 / sizeof v1[0];
    uint64_t pos = c->header_bytes;
    for (size_t i = 0; i < n; i++) {
        wkind k = order[i];
        if (k == W_CLS && c->shared) continue;
        uint64_t elems = L->elems[k], bytes;
        if (L->layered[k]) elems = mul_ovf(elems, (uint64_t)c->n_layers, &ovf);
        bytes = mul_ovf(elems, 4, &ovf);
        L->offset[k] = pos;
        L->present[k] = 1;
        ovf |= lmp_add_overflow(pos, bytes, &pos);
    }
    L->total_bytes = pos;
    return ovf;
}

// ---- tensors ----

// Copies one weight group slice (layer l) into a new lmp_malloc'd buffer and adds it to the builder.
static lmp_status add_weight(lmp_builder *b, const mapped *m, const l2c_layout *L, wkind k, int64_t layer,
                             const char *name, int ndim, int64_t d0, int64_t d1, lmp_error *err) {
    uint64_t elems = L->elems[k];
    uint64_t off = L->offset[k] + (L->layered[k] ? (uint64_t)layer * elems * 4 : 0);  // inside the checked size
    float *data = lmp_malloc((size_t)elems * 4);
    if (!data) return lmp_err(err, LMP_E_NOMEM, "out of memory copying tensor '%s' (%llu floats)", name,
                              (unsigned long long)elems);
    memcpy(data, m->p + off, (size_t)elems * 4);
    int64_t shape[2] = {d0, d1};
    return lmp_builder_add(b, name, LMP_DTYPE_F32, ndim, shape, data, err);
}

static lmp_status add_tensors(lmp_builder *b, const mapped *m, const l2c_config *c, const l2c_layout *L,
                              lmp_error *err) {
    lmp_status st = add_weight(b, m, L, W_EMB, 0, "token_embd.weight", 2, c->vocab, c->dim, err);
    char name[64];
    struct {
        wkind k;
        const char *suffix;
        int ndim;
        int64_t d0, d1;
    } per_layer[] = {
        {W_ATT_NORM, "attn_norm", 1, c->dim, 0},      {W_Q, "attn_q", 2, c->dim, c->dim},
        {W_K, "attn_k", 2, c->kv_dim, c->dim},        {W_V, "attn_v", 2, c->kv_dim, c->dim},
        {W_O, "attn_output", 2, c->dim, c->dim},      {W_FFN_NORM, "ffn_norm", 1, c->dim, 0},
        {W_GATE, "ffn_gate", 2, c->hidden, c->dim},   {W_DOWN, "ffn_down", 2, c->dim, c->hidden},
        {W_UP, "ffn_up", 2, c->hidden, c->dim},
    };
    for (int64_t l = 0; l < c->n_layers && !st; l++) {
        for (size_t i = 0; i < sizeof per_layer / sizeof per_layer[0] && !st; i++) {
            snprintf(name, sizeof name, "blk.%lld.%s.weight", (long long)l, per_layer[i].suffix);
            st = add_weight(b, m, L, per_layer[i].k, l, name, per_layer[i].ndim, per_layer[i].d0, per_layer[i].d1, err);
        }
    }
    if (!st) st = add_weight(b, m, L, W_FINAL_NORM, 0, "output_norm.weight", 1, c->dim, 0, err);
    if (!st && !c->shared) st = add_weight(b, m, L, W_CLS, 0, "output.weight", 2, c->vocab, c->dim, err);
    return st;
}

// ---- metadata ----

static lmp_status set_model_meta(lmp_meta *meta, const char *path, const l2c_config *c, uint32_t crc,
                                 lmp_error *err) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t len = strlen(base);
    const char *dot = strrchr(base, '.');
    if (dot && dot != base) len = (size_t)(dot - base);
    char *name = lmp_malloc(len + 1);
    if (!name) return lmp_err(err, LMP_E_NOMEM, "out of memory");
    memcpy(name, base, len);
    name[len] = 0;
    lmp_status st = LMP_OK;
    st = st ? st : lmp_meta_set_str(meta, "general.architecture", "llama");
    st = st ? st : lmp_meta_set_str(meta, "general.name", len ? name : "llama2c");
    st = st ? st : lmp_meta_set_u32(meta, "llama.context_length", (uint32_t)c->seq_len);
    st = st ? st : lmp_meta_set_u32(meta, "llama.embedding_length", (uint32_t)c->dim);
    st = st ? st : lmp_meta_set_u32(meta, "llama.block_count", (uint32_t)c->n_layers);
    st = st ? st : lmp_meta_set_u32(meta, "llama.feed_forward_length", (uint32_t)c->hidden);
    st = st ? st : lmp_meta_set_u32(meta, "llama.attention.head_count", (uint32_t)c->n_heads);
    st = st ? st : lmp_meta_set_u32(meta, "llama.attention.head_count_kv", (uint32_t)c->n_kv_heads);
    st = st ? st : lmp_meta_set_u32(meta, "llama.attention.head_dim", (uint32_t)c->head_dim);
    st = st ? st : lmp_meta_set_f32(meta, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    st = st ? st : lmp_meta_set_f32(meta, "llama.rope.freq_base", 10000.0f);
    st = st ? st : lmp_meta_set_u32(meta, "llama.rope.dimension_count", (uint32_t)c->head_dim);
    st = st ? st : lmp_meta_set_str(meta, "llama.rope.style", "interleaved");
    st = st ? st : lmp_meta_set_u32(meta, "llama.vocab_size", (uint32_t)c->vocab);
    st = st ? st : lmp_meta_set_str(meta, "provenance.tool", "lmpress " LMP_VERSION_STRING);
    st = st ? st : lmp_meta_set_str(meta, "provenance.source", path);
    st = st ? st : lmp_meta_set_u32(meta, "provenance.source_crc32", crc);
    lmp_free(name);
    if (st) return lmp_err(err, st, "out of memory setting metadata");
    return LMP_OK;
}

// ---- tokenizer ----

static int is_byte_token(const uint8_t *s, int32_t len) {
    static const char hex[] = "0123456789ABCDEFabcdef";
    return len == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>' && s[3] && s[4] && strchr(hex, s[3]) &&
           strchr(hex, s[4]);
}

// Parses a llama2.c tokenizer.bin of exactly vocab tokens into the tokenizer.* keys.
static lmp_status import_tokenizer(const char *path, int64_t vocab, lmp_meta *meta, lmp_error *err) {
    mapped m;
    lmp_status st = map_file(path, "tokenizer", &m, err);
    if (st) return st;
    const char **toks = lmp_malloc((size_t)vocab * sizeof *toks);
    uint64_t *lens = lmp_malloc((size_t)vocab * sizeof *lens);
    float *scores = lmp_malloc((size_t)vocab * sizeof *scores);
    int32_t *types = lmp_malloc((size_t)vocab * sizeof *types);
    if (!toks || !lens || !scores || !types) {
        st = lmp_err(err, LMP_E_NOMEM, "out of memory reading tokenizer '%s'", path);
        goto done;
    }
    if (m.size < 4) {
        st = lmp_err(err, LMP_E_FORMAT, "truncated tokenizer '%s': file is %llu bytes, max_token_length needs 4", path,
                     (unsigned long long)m.size);
        goto done;
    }
    int32_t max_len = rd_i32(m.p);
    if (max_len < 1) {
        st = lmp_err(err, LMP_E_FORMAT, "tokenizer '%s': max_token_length is %d (must be positive)", path, max_len);
        goto done;
    }
    uint64_t pos = 4, count = 0;
    while (pos < m.size) {
        if (m.size - pos < 8) {
            st = lmp_err(err, LMP_E_FORMAT,
                         "truncated tokenizer '%s': token %llu (score and length) at offset %llu needs 8 bytes, file "
                         "has %llu",
                         path, (unsigned long long)count, (unsigned long long)pos, (unsigned long long)m.size);
            goto done;
        }
        float score;
        memcpy(&score, m.p + pos, 4);
        int32_t len = rd_i32(m.p + pos + 4);
        pos += 8;
        if (len < 0 || len > max_len) {
            st = lmp_err(err, LMP_E_FORMAT, "tokenizer '%s': token %llu has length %d (must be 0..max_token_length %d)",
                         path, (unsigned long long)count, len, max_len);
            goto done;
        }
        if (m.size - pos < (uint64_t)len) {
            st = lmp_err(err, LMP_E_FORMAT,
                         "truncated tokenizer '%s': token %llu text at offset %llu needs %d bytes, file has %llu", path,
                         (unsigned long long)count, (unsigned long long)pos, len, (unsigned long long)m.size);
            goto done;
        }
        const uint8_t *s = m.p + pos;
        if (memchr(s, 0, (size_t)len)) {
            st = lmp_err(err, LMP_E_FORMAT, "tokenizer '%s': token %llu contains a NUL byte", path,
                         (unsigned long long)count);
            goto done;
        }
        if (count < (uint64_t)vocab) {
            toks[count] = (const char *)s;
            lens[count] = (uint64_t)len;
            scores[count] = score;
            types[count] = count == 0 ? 2 : count <= 2 ? 3 : is_byte_token(s, len) ? 6 : 1;
        }
        pos += (uint64_t)len;
        count++;
    }
    if (count != (uint64_t)vocab) {
        st = lmp_err(err, LMP_E_FORMAT, "tokenizer '%s' has %llu tokens, but the model's vocab_size is %lld", path,
                     (unsigned long long)count, (long long)vocab);
        goto done;
    }
    lmp_kv kv;
    memset(&kv, 0, sizeof kv);
    kv.type = LMP_KV_ARRAY;
    kv.elem_type = LMP_KV_STRING;
    kv.count = (uint64_t)vocab;
    kv.data = (void *)toks;
    kv.lens = lens;
    st = lmp_meta_set_str(meta, "tokenizer.model", "llama");
    st = st ? st : lmp_meta_set_kv(meta, "tokenizer.tokens", &kv);
    st = st ? st : lmp_meta_set_arr(meta, "tokenizer.scores", LMP_KV_F32, scores, (uint64_t)vocab);
    st = st ? st : lmp_meta_set_arr(meta, "tokenizer.token_type", LMP_KV_I32, types, (uint64_t)vocab);
    st = st ? st : lmp_meta_set_u32(meta, "tokenizer.bos_id", 1);
    st = st ? st : lmp_meta_set_u32(meta, "tokenizer.eos_id", 2);
    st = st ? st : lmp_meta_set_bool(meta, "tokenizer.add_bos", 1);
    st = st ? st : lmp_meta_set_bool(meta, "tokenizer.add_space_prefix", 1);
    st = st ? st : lmp_meta_set_u32(meta, "tokenizer.max_token_length", (uint32_t)max_len);
    if (st) st = lmp_err(err, st, "out of memory storing the tokenizer");
done:
    lmp_free(toks);
    lmp_free(lens);
    lmp_free(scores);
    lmp_free(types);
    unmap_file(&m);
    return st;
}

// The tokenizer to use: the one given, else tok<vocab>.bin beside the model (llama2.c's name for a
// custom vocabulary: more specific, so it wins), else tokenizer.bin beside it; NULL if none exists.
static char *find_tokenizer(const char *bin_path, const lmp_import_opts *opts, int64_t vocab, lmp_status *st,
                            lmp_error *err) {
    *st = LMP_OK;
    if (opts && opts->tokenizer_path) {
        char *p = lmp_strdup(opts->tokenizer_path);
        if (!p) *st = lmp_err(err, LMP_E_NOMEM, "out of memory");
        return p;
    }
    const char *slash = strrchr(bin_path, '/');
    size_t dlen = slash ? (size_t)(slash - bin_path + 1) : 0;
    size_t cap = dlen + 32;
    char *p = lmp_malloc(cap);
    if (!p) {
        *st = lmp_err(err, LMP_E_NOMEM, "out of memory");
        return NULL;
    }
    memcpy(p, bin_path, dlen);
    struct stat sb;
    snprintf(p + dlen, cap - dlen, "tok%lld.bin", (long long)vocab);
    if (stat(p, &sb) == 0 && S_ISREG(sb.st_mode)) return p;
    snprintf(p + dlen, cap - dlen, "tokenizer.bin");
    if (stat(p, &sb) == 0 && S_ISREG(sb.st_mode)) return p;
    lmp_free(p);
    return NULL;
}

lmp_status lmp_import_llama2c(const char *bin_path, const lmp_import_opts *opts, lmp_builder **out,
                              lmp_error *err) {
    if (out) *out = NULL;
    if (!bin_path || !out) return lmp_err(err, LMP_E_ARG, "lmp_import_llama2c: NULL argument");
    mapped m;
    lmp_status st = map_file(bin_path, "llama2.c model", &m, err);
    if (st) return st;
    l2c_config c;
    l2c_layout L;
    lmp_builder *b = NULL;
    char *tok_path = NULL;
    if ((st = parse_header(bin_path, &m, &c, err))) goto fail;
    if (compute_layout(&c, &L)) {
        st = lmp_err(err, LMP_E_FORMAT, "'%s': llama2.c header sizes overflow 64 bits", bin_path);
        goto fail;
    }
    if (L.total_bytes != m.size) {
        st = lmp_err(err, LMP_E_FORMAT,
                     "'%s': file is %llu bytes, but its llama2.c %s header (dim %lld, hidden_dim %lld, n_layers %lld, "
                     "n_heads %lld, n_kv_heads %lld, vocab_size %lld, seq_len %lld, %s classifier) implies %llu bytes",
                     bin_path, (unsigned long long)m.size, c.version == 0 ? "legacy" : "version 1", (long long)c.dim,
                     (long long)c.hidden, (long long)c.n_layers, (long long)c.n_heads, (long long)c.n_kv_heads,
                     (long long)c.vocab, (long long)c.seq_len, c.shared ? "shared" : "separate",
                     (unsigned long long)L.total_bytes);
        goto fail;
    }
    b = lmp_builder_new();
    if (!b) {
        st = lmp_err(err, LMP_E_NOMEM, "out of memory");
        goto fail;
    }
    if ((st = set_model_meta(lmp_builder_meta(b), bin_path, &c, lmp_crc32(0, m.p, (size_t)m.size), err))) goto fail;
    if ((st = add_tensors(b, &m, &c, &L, err))) goto fail;
    tok_path = find_tokenizer(bin_path, opts, c.vocab, &st, err);
    if (st) goto fail;
    if (tok_path && (st = import_tokenizer(tok_path, c.vocab, lmp_builder_meta(b), err))) goto fail;
    lmp_free(tok_path);
    unmap_file(&m);
    *out = b;
    return LMP_OK;
fail:
    lmp_free(tok_path);
    lmp_builder_free(b);
    unmap_file(&m);
    return st;
}
