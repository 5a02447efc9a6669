// test_gguf_export.c - the GGUF export checked against an independent reader.
//
// tests/fixtures/gguf/export_ref.txt is written by scripts/ref_gguf_export.py: it runs `lmpress export SOURCE
// --gguf` on models in tests/fixtures and records what gguf-py (GGUFReader, gguf.quants.dequantize) reads
// in each file: size, CRC32 and MD5 of the file, header, every metadata entry and every tensor (type,
// dimensions, offset, CRC32 of the bytes and of gguf-py's dequantized values). For each case this test
// exports the same source again (the export is deterministic) and checks
//  * the file is byte for byte the one gguf-py read (size and CRC32);
//  * gguf-py's view against the source model, by the GGUF spec and llama.cpp's key names, not by our reader:
//    tensors in order with the ggml type of their dtype, dimensions reversed, data aligned and in bounds,
//    stored bytes equal to the source's and dequantized values equal to the source's to_float (for the
//    query/key rows of a "neox" source, after gguf-py undid llama.cpp's RoPE permutation); metadata: exactly
//    the expected keys with the expected types and values (hyper-parameters, per-layer head counts and
//    FFN widths, file type, tokenizer tokens/scores/merges/types/ids/flags);
//  * our reader (format/gguf.c) sees the same keys, types, values and tensors as gguf-py.
// It does not load the files in llama.cpp itself (gguf-py is the independent reader), and no case exercises
// per-layer head-count/FFN arrays (a pruned model; test_gguf.c test_export_pruned reads those with our reader)
// or the token types the export derives for a llama vocabulary without any (every importer records them).
#include <stdarg.h>

#include "format/gguf.h"
#include "format/lmp_format.h"
#include "format/lmp_import.h"
#include "format/qtypes.h"
#include "tests/test_util.h"

#define REF "tests/fixtures/gguf/export_ref.txt"

// ---- the fixture ----

typedef struct ref_case {
    char name[64], src[256], tok[256];
    uint64_t size;
    uint32_t crc;
    char **lines;  // the kv / tensor / gguf lines of the case, in file order
    int n_lines;
} ref_case;

static int split_lines(char *text, char ***out) {
    int n = 0, cap = 64;
    char **v = malloc((size_t)cap * sizeof *v);
    for (char *p = text; *p;) {
        char *e = strchr(p, '\n');
        if (e) *e = 0;
        if (n == cap) v = realloc(v, (size_t)(cap *= 2) * sizeof *v);
        v[n++] = p;
        if (!e) break;
        p = e + 1;
    }
    *out = v;
    return n;
}

// Parses the fixture into cases (the lines point into text). Returns the number of cases, -1 if malformed.
static int ref_parse(char *text, ref_case *cases, int max) {
    char **lines;
    int n = split_lines(text, &lines), nc = 0;
    ref_case *c = NULL;
    for (int i = 0; i < n; i++) {
        char *l = lines[i];
        if (!*l || *l == '#') continue;
        if (!strncmp(l, "case ", 5)) {
            if (c || nc == max) break;
            c = &cases[nc];
            memset(c, 0, sizeof *c);
            if (sscanf(l, "case %63s %255s %255s", c->name, c->src, c->tok) < 2) break;
            c->lines = malloc((size_t)n * sizeof *c->lines);
        } else if (!c) {
            break;
        } else if (!strcmp(l, "end")) {
            nc++;
            c = NULL;
        } else if (!strncmp(l, "file ", 5)) {
            unsigned long long size;
            unsigned crc;
            if (sscanf(l, "file %llu 0x%x", &size, &crc) != 2) break;
            c->size = size;
            c->crc = crc;
        } else {
            c->lines[c->n_lines++] = l;
        }
    }
    free(lines);
    return c ? -1 : nc;
}

// The n-th space-separated token of line (0 = first) into buf; "" if absent.
static const char *tok_at(const char *line, int n, char *buf, size_t cap) {
    const char *p = line;
    for (int i = 0; i < n && p; i++) {
        p = strchr(p, ' ');
        if (p) p++;
    }
    buf[0] = 0;
    if (!p) return buf;
    size_t len = strcspn(p, " ");
    if (len >= cap) len = cap - 1;
    memcpy(buf, p, len);
    buf[len] = 0;
    return buf;
}

// The value of "key=..." in line, or "" if absent.
static const char *field(const char *line, const char *key, char *buf, size_t cap) {
    char pat[64];
    snprintf(pat, sizeof pat, " %s=", key);
    const char *p = strstr(line, pat);
    buf[0] = 0;
    if (!p) return buf;
    p += strlen(pat);
    size_t len = strcspn(p, " ");
    if (len >= cap) len = cap - 1;
    memcpy(buf, p, len);
    buf[len] = 0;
    return buf;
}

// ---- the expected metadata, built from the source model ----

typedef struct expect {
    char key[96];
    char text[200];  // "TYPE VALUE..." as the fixture writes it (strings: LEN CRC; arrays: COUNT CRC)
    int used;
} expect;

typedef struct expect_list {
    expect e[64];
    int n;
} expect_list;

static void ex_add(expect_list *x, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void ex_add(expect_list *x, const char *key, const char *fmt, ...) {
    if (x->n == 64) return;
    expect *e = &x->e[x->n++];
    snprintf(e->key, sizeof e->key, "%s", key);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->text, sizeof e->text, fmt, ap);
    va_end(ap);
    e->used = 0;
}

static uint32_t f32_bits(float f) { return lmp_f32_as_u32(f); }

static void ex_str(expect_list *x, const char *key, const char *s) {
    ex_add(x, key, "string %zu 0x%08x", strlen(s), lmp_crc32(0, s, strlen(s)));
}

// CRC32 of a string array as GGUF encodes it: u64 length + bytes, per element.
static uint32_t str_array_crc(const lmp_kv *kv) {
    uint32_t c = 0;
    char *const *s = kv->data;
    for (uint64_t i = 0; i < kv->count; i++) {
        uint64_t len = kv->lens ? kv->lens[i] : strlen(s[i]);
        c = lmp_crc32(c, &len, 8);
        c = lmp_crc32(c, s[i], (size_t)len);
    }
    return c;
}

static uint32_t meta_u32(const lmp_meta *m, const char *key, uint32_t dflt) {
    uint32_t v = dflt;
    if (lmp_meta_find(m, key)) CHECKF(lmp_meta_get_u32(m, key, &v, NULL) == LMP_OK, "source key %s", key);
    return v;
}

static int64_t rows_of(const lmp_file *f, int l, const char *what, int64_t dflt) {
    char name[64];
    snprintf(name, sizeof name, "blk.%d.%s.weight", l, what);
    const lmp_tensor *t = lmp_file_find(f, name);
    return t && t->ndim == 2 ? t->shape[0] : dflt;
}

// One u32 when every layer has the same value, else a per-layer u32 array (llama.cpp reads both).
static void ex_per_layer(expect_list *x, const lmp_file *f, int n_layers, const char *key, const char *what,
                         int64_t div, uint32_t dflt) {
    uint32_t v[256] = {0};
    int same = 1;
    CHECK(n_layers <= 256);
    for (int l = 0; l < n_layers && l < 256; l++) {
        v[l] = (uint32_t)(rows_of(f, l, what, (int64_t)dflt * div) / div);
        same &= v[l] == v[0];
    }
    if (same || n_layers == 0) ex_add(x, key, "u32 %u", n_layers ? v[0] : dflt);
    else ex_add(x, key, "array:u32 %d 0x%08x", n_layers, lmp_crc32(0, v, (size_t)n_layers * 4));
}

static const char *ggml_name_of(lmp_dtype t) {
    switch (t) {
    case LMP_DTYPE_F32: return "f32";
    case LMP_DTYPE_F16: return "f16";
    case LMP_DTYPE_BF16: return "bf16";
    case LMP_DTYPE_Q8_0: return "q8_0";
    case LMP_DTYPE_Q4_0: return "q4_0";
    case LMP_DTYPE_Q4_1: return "q4_1";
    case LMP_DTYPE_Q4_K: return "q4_k";  // gguf-py's names are lower case
    case LMP_DTYPE_Q5_K: return "q5_k";
    case LMP_DTYPE_Q6_K: return "q6_k";
    case LMP_DTYPE_IQ4_NL: return "iq4_nl";
    default: return "?";
    }
}

// llama.cpp's llama_ftype of the most common type among the 2-D tensors (ties: the first in dtype order).
static uint32_t expected_ftype(const lmp_file *f) {
    size_t count[LMP_DTYPE_COUNT] = {0};
    for (size_t i = 0; i < lmp_file_n_tensors(f); i++)
        if (lmp_file_tensor(f, i)->ndim == 2) count[lmp_file_tensor(f, i)->type]++;
    int best = 0;
    for (int t = 1; t < LMP_DTYPE_COUNT; t++)
        if (count[t] > count[best]) best = t;
    static const struct { lmp_dtype t; uint32_t ftype; } ft[] = {{LMP_DTYPE_F32, 0}, {LMP_DTYPE_F16, 1}, {LMP_DTYPE_Q4_0, 2},
                                                                {LMP_DTYPE_Q4_1, 3}, {LMP_DTYPE_Q8_0, 7}, {LMP_DTYPE_BF16, 32},
                                                                {LMP_DTYPE_Q4_K, 15}, {LMP_DTYPE_Q5_K, 17}, {LMP_DTYPE_Q6_K, 18},
                                                                {LMP_DTYPE_IQ4_NL, 25}};
    for (size_t i = 0; i < sizeof ft / sizeof ft[0]; i++)
        if (ft[i].t == (lmp_dtype)best) return ft[i].ftype;
    return 0;
}

static void expected_kv(const lmp_file *f, expect_list *x) {
    const lmp_meta *m = lmp_file_meta(f);
    const char *s;
    x->n = 0;
    ex_str(x, "general.architecture", "llama");
    if (lmp_meta_find(m, "general.name") && lmp_meta_get_str(m, "general.name", &s, NULL) == LMP_OK)
        ex_str(x, "general.name", s);
    ex_add(x, "general.alignment", "u32 32");
    ex_add(x, "general.file_type", "u32 %u", expected_ftype(f));
    int quantized = 0;
    for (size_t i = 0; i < lmp_file_n_tensors(f); i++) {
        lmp_dtype t = lmp_file_tensor(f, i)->type;
        quantized |= lmp_type_get(t)->is_quantized;
    }
    if (quantized) ex_add(x, "general.quantization_version", "u32 2");
    const uint32_t dim = meta_u32(m, "llama.embedding_length", 0), layers = meta_u32(m, "llama.block_count", 0);
    const uint32_t heads = meta_u32(m, "llama.attention.head_count", 1);
    const uint32_t heads_kv = meta_u32(m, "llama.attention.head_count_kv", heads);
    const uint32_t hd = meta_u32(m, "llama.attention.head_dim", dim / heads);
    ex_add(x, "llama.context_length", "u32 %u", meta_u32(m, "llama.context_length", 0));
    ex_add(x, "llama.embedding_length", "u32 %u", dim);
    ex_add(x, "llama.block_count", "u32 %u", layers);
    ex_per_layer(x, f, (int)layers, "llama.feed_forward_length", "ffn_gate", 1, meta_u32(m, "llama.feed_forward_length", 0));
    ex_per_layer(x, f, (int)layers, "llama.attention.head_count", "attn_q", hd, heads);
    ex_per_layer(x, f, (int)layers, "llama.attention.head_count_kv", "attn_k", hd, heads_kv);
    if (hd * heads != dim) {
        ex_add(x, "llama.attention.key_length", "u32 %u", hd);
        ex_add(x, "llama.attention.value_length", "u32 %u", hd);
    }
    float eps = 0, theta = 10000.0f;
    CHECK(lmp_meta_get_f32(m, "llama.attention.layer_norm_rms_epsilon", &eps, NULL) == LMP_OK);
    if (lmp_meta_find(m, "llama.rope.freq_base")) CHECK(lmp_meta_get_f32(m, "llama.rope.freq_base", &theta, NULL) == LMP_OK);
    ex_add(x, "llama.attention.layer_norm_rms_epsilon", "f32 0x%08x", f32_bits(eps));
    ex_add(x, "llama.rope.freq_base", "f32 0x%08x", f32_bits(theta));
    ex_add(x, "llama.rope.dimension_count", "u32 %u", meta_u32(m, "llama.rope.dimension_count", hd));
    const lmp_tensor *emb = lmp_file_find(f, "token_embd.weight");
    ex_add(x, "llama.vocab_size", "u32 %u", meta_u32(m, "llama.vocab_size", emb ? (uint32_t)emb->shape[0] : 0));
    if (!lmp_meta_find(m, "tokenizer.model")) return;
    const char *model = "";
    CHECK(lmp_meta_get_str(m, "tokenizer.model", &model, NULL) == LMP_OK);
    const int llama = !strcmp(model, "llama");
    ex_str(x, "tokenizer.ggml.model", model);
    if (!llama) {
        const char *pre = "default";
        if (lmp_meta_find(m, "tokenizer.pre")) CHECK(lmp_meta_get_str(m, "tokenizer.pre", &pre, NULL) == LMP_OK);
        ex_str(x, "tokenizer.ggml.pre", pre);
    }
    const lmp_kv *tokens = lmp_meta_find(m, "tokenizer.tokens");
    CHECK(tokens && tokens->type == LMP_KV_ARRAY && tokens->elem_type == LMP_KV_STRING);
    if (!tokens) return;
    ex_add(x, "tokenizer.ggml.tokens", "array:string %llu 0x%08x", (unsigned long long)tokens->count, str_array_crc(tokens));
    if (llama) {
        const lmp_kv *sc = lmp_meta_find(m, "tokenizer.scores");
        CHECK(sc && sc->elem_type == LMP_KV_F32 && sc->count == tokens->count);
        if (sc) ex_add(x, "tokenizer.ggml.scores", "array:f32 %llu 0x%08x", (unsigned long long)sc->count,
                       lmp_crc32(0, sc->data, (size_t)sc->count * 4));
    } else {
        const lmp_kv *mg = lmp_meta_find(m, "tokenizer.merges");
        CHECK(mg && mg->elem_type == LMP_KV_STRING);
        if (mg) ex_add(x, "tokenizer.ggml.merges", "array:string %llu 0x%08x", (unsigned long long)mg->count, str_array_crc(mg));
    }
    int64_t bos = -1, eos = -1;
    if (lmp_meta_find(m, "tokenizer.bos_id")) ex_add(x, "tokenizer.ggml.bos_token_id", "u32 %u", (unsigned)(bos = meta_u32(m, "tokenizer.bos_id", 0)));
    if (lmp_meta_find(m, "tokenizer.eos_id")) ex_add(x, "tokenizer.ggml.eos_token_id", "u32 %u", (unsigned)(eos = meta_u32(m, "tokenizer.eos_id", 0)));
    const lmp_kv *tt = lmp_meta_find(m, "tokenizer.token_type");
    if (tt) {
        ex_add(x, "tokenizer.ggml.token_type", "array:i32 %llu 0x%08x", (unsigned long long)tt->count,
               lmp_crc32(0, tt->data, (size_t)tt->count * 4));
    } else if (llama) {
        // llama.cpp's token types (llama_token_type): 1 normal, 2 unknown, 3 control, 6 byte (<0xAB>)
        int32_t *v = malloc((size_t)tokens->count * 4);
        char *const *ts = tokens->data;
        for (uint64_t i = 0; i < tokens->count; i++) {
            unsigned hex;
            char tail;
            v[i] = (int64_t)i == bos || (int64_t)i == eos ? 3
                   : !strcmp(ts[i], "<unk>")              ? 2
                   : strlen(ts[i]) == 6 && sscanf(ts[i], "<0x%2x%c", &hex, &tail) == 2 && tail == '>' ? 6
                                                                                                    : 1;
        }
        ex_add(x, "tokenizer.ggml.token_type", "array:i32 %llu 0x%08x", (unsigned long long)tokens->count,
               lmp_crc32(0, v, (size_t)tokens->count * 4));
        free(v);
    }
    int b;
    if (lmp_meta_find(m, "tokenizer.add_bos") && lmp_meta_get_bool(m, "tokenizer.add_bos", &b, NULL) == LMP_OK)
        ex_add(x, "tokenizer.ggml.add_bos_token", "bool %d", b);
    if (lmp_meta_find(m, "tokenizer.add_space_prefix") && lmp_meta_get_bool(m, "tokenizer.add_space_prefix", &b, NULL) == LMP_OK)
        ex_add(x, "tokenizer.ggml.add_space_prefix", "bool %d", b);
    if (lmp_meta_find(m, "tokenizer.chat_template") && lmp_meta_get_str(m, "tokenizer.chat_template", &s, NULL) == LMP_OK)
        ex_str(x, "tokenizer.chat_template", s);
}

// The first n space-separated tokens of s.
static size_t prefix_tokens(const char *s, int n) {
    size_t i = 0;
    for (int k = 0; s[i] && k < n; k++) {
        i += strcspn(s + i, " ");
        if (k + 1 < n && s[i] == ' ') i++;
    }
    return i;
}

// gguf-py's metadata lines against the expected entries: every line expected, every expected entry seen.
static void check_kv(const ref_case *c, expect_list *x) {
    int n_kv = 0;
    for (int i = 0; i < c->n_lines; i++) {
        const char *l = c->lines[i];
        if (strncmp(l, "kv ", 3)) continue;
        n_kv++;
        char key[128];
        tok_at(l, 1, key, sizeof key);
        const char *text = l + 3 + strlen(key) + 1;  // "TYPE VALUE..."
        expect *e = NULL;
        for (int k = 0; k < x->n; k++)
            if (!strcmp(x->e[k].key, key)) e = &x->e[k];
        CHECKF(e != NULL, "%s: gguf-py reads key '%s', which the export should not write", c->name, key);
        if (!e) continue;
        e->used++;
        int ntok = 1;
        for (const char *p = e->text; *p; p++) ntok += *p == ' ';
        size_t len = prefix_tokens(text, ntok);
        CHECKF(len == strlen(e->text) && !strncmp(text, e->text, len), "%s: %s: gguf-py reads '%.*s', expected '%s'",
               c->name, key, (int)(len > 120 ? 120 : len), text, e->text);
    }
    for (int k = 0; k < x->n; k++)
        CHECKF(x->e[k].used == 1, "%s: key %s (%s) read %d times by gguf-py, expected once", c->name, x->e[k].key,
               x->e[k].text, x->e[k].used);
    char buf[64];
    for (int i = 0; i < c->n_lines; i++)
        if (!strncmp(c->lines[i], "gguf ", 5)) {
            CHECK(atoi(field(c->lines[i], "kv", buf, sizeof buf)) == n_kv);
            CHECK(!strcmp(field(c->lines[i], "version", buf, sizeof buf), "3"));
            CHECK(!strcmp(field(c->lines[i], "alignment", buf, sizeof buf), "32"));
        }
}

static int is_qk(const char *name) {
    const char *p = strrchr(name, '.');
    if (!p || strcmp(p, ".weight") || strncmp(name, "blk.", 4)) return 0;
    return strstr(name, ".attn_q.weight") != NULL || strstr(name, ".attn_k.weight") != NULL;
}

// gguf-py's tensor lines against the source tensors, in order.
static void check_tensors(const ref_case *c, const lmp_file *f, uint64_t file_size) {
    const char *style = "interleaved";
    if (lmp_meta_find(lmp_file_meta(f), "llama.rope.style")) lmp_meta_get_str(lmp_file_meta(f), "llama.rope.style", &style, NULL);
    const int neox = !strcmp(style, "neox");
    char buf[128];
    uint64_t data_offset = 0, end = 0;
    size_t k = 0;
    for (int i = 0; i < c->n_lines; i++)
        if (!strncmp(c->lines[i], "gguf ", 5)) {
            data_offset = strtoull(field(c->lines[i], "data_offset", buf, sizeof buf), NULL, 10);
            CHECK(strtoull(field(c->lines[i], "tensors", buf, sizeof buf), NULL, 10) == lmp_file_n_tensors(f));
        }
    CHECK(data_offset > 0 && data_offset % 32 == 0);
    end = data_offset;
    for (int i = 0; i < c->n_lines; i++) {
        const char *l = c->lines[i];
        if (strncmp(l, "tensor ", 7)) continue;
        const lmp_tensor *t = k < lmp_file_n_tensors(f) ? lmp_file_tensor(f, k) : NULL;
        k++;
        char name[128], type[16];
        tok_at(l, 1, name, sizeof name);
        tok_at(l, 2, type, sizeof type);
        CHECKF(t && !strcmp(name, t->name), "%s: tensor %zu is '%s' for gguf-py, '%s' in the source", c->name, k - 1, name,
               t ? t->name : "(none)");
        if (!t || strcmp(name, t->name)) continue;
        char ne[128] = "", *p = ne;
        for (int d = t->ndim - 1; d >= 0; d--) p += sprintf(p, "%s%lld", d == t->ndim - 1 ? "" : ",", (long long)t->shape[d]);
        CHECKF(!strcmp(type, ggml_name_of(t->type)), "%s: %s: gguf-py type %s, source %s", c->name, name, type,
               lmp_type_name(t->type));
        CHECKF(!strcmp(field(l, "ne", buf, sizeof buf), ne), "%s: %s: gguf-py dimensions %s, expected %s", c->name, name, buf, ne);
        uint64_t off = strtoull(field(l, "offset", buf, sizeof buf), NULL, 10);
        uint64_t nb = strtoull(field(l, "nbytes", buf, sizeof buf), NULL, 10);
        CHECKF(nb == t->nbytes && off >= end && (off - data_offset) % 32 == 0 && off + nb <= file_size,
               "%s: %s: %llu bytes at %llu (previous tensor ends at %llu, file %llu bytes)", c->name, name,
               (unsigned long long)nb, (unsigned long long)off, (unsigned long long)end, (unsigned long long)file_size);
        end = off + nb;
        const int64_t n = (int64_t)(t->nbytes / lmp_type_row_size(t->type, t->shape[t->ndim - 1])) * t->shape[t->ndim - 1];
        float *y = malloc((size_t)n * sizeof(float));
        lmp_type_get(t->type)->to_float(t->data, y, n);
        const uint32_t crc_deq = lmp_crc32(0, y, (size_t)n * 4), crc_raw = lmp_crc32(0, t->data, (size_t)t->nbytes);
        free(y);
        if (neox && is_qk(name)) {
            CHECKF(strtoul(field(l, "hf", buf, sizeof buf), NULL, 16) == crc_deq,
                   "%s: %s: gguf-py's values with llama.cpp's RoPE permutation undone differ from the source's", c->name, name);
            CHECKF(strtoul(field(l, "raw", buf, sizeof buf), NULL, 16) != crc_raw,
                   "%s: %s: stored in the source's (neox) row order, not permuted for GGUF", c->name, name);
        } else {
            CHECKF(strtoul(field(l, "raw", buf, sizeof buf), NULL, 16) == crc_raw, "%s: %s: stored bytes differ from the source's",
                   c->name, name);
            CHECKF(strtoul(field(l, "deq", buf, sizeof buf), NULL, 16) == crc_deq,
                   "%s: %s: gguf-py's dequantized values differ from the source's", c->name, name);
        }
    }
    CHECKF(k == lmp_file_n_tensors(f), "%s: gguf-py reads %zu tensors, the source has %zu", c->name, k, lmp_file_n_tensors(f));
}

// Our reader on the exported file against gguf-py's lines.
static void check_our_reader(const ref_case *c, const char *path) {
    lmp_gguf *g = NULL;
    lmp_error e = {0};
    CHECKF(lmp_gguf_open(path, &g, &e) == LMP_OK, "%s: our reader: %s", c->name, e.msg);
    if (!g) return;
    static const char *tn[LMP_GGUF_VTYPE_COUNT] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"};
    size_t n_kv = 0, n_t = 0;
    char key[128], type[32], v1[64], v2[64], buf[64];
    for (int i = 0; i < c->n_lines; i++) {
        const char *l = c->lines[i];
        if (!strncmp(l, "kv ", 3)) {
            n_kv++;
            tok_at(l, 1, key, sizeof key);
            tok_at(l, 2, type, sizeof type);
            tok_at(l, 3, v1, sizeof v1);
            tok_at(l, 4, v2, sizeof v2);
            const lmp_gguf_kv *kv = lmp_gguf_find_kv(g, key);
            CHECKF(kv != NULL, "%s: our reader has no key %s", c->name, key);
            if (!kv) continue;
            char ours[64];
            if (kv->type == LMP_GGUF_ARRAY) snprintf(ours, sizeof ours, "array:%s", tn[kv->elem_type]);
            else snprintf(ours, sizeof ours, "%s", tn[kv->type]);
            CHECKF(!strcmp(ours, type), "%s: %s: our reader's type %s, gguf-py's %s", c->name, key, ours, type);
            int same = 1;
            if (kv->type == LMP_GGUF_STRING)
                same = kv->str.len == strtoull(v1, NULL, 10) && lmp_crc32(0, kv->str.p, (size_t)kv->str.len) == strtoul(v2, NULL, 16);
            else if (kv->type == LMP_GGUF_ARRAY) same = kv->count == strtoull(v1, NULL, 10);
            else if (kv->type == LMP_GGUF_F32) same = f32_bits((float)kv->v.f) == strtoul(v1, NULL, 16);
            else if (kv->type == LMP_GGUF_I8 || kv->type == LMP_GGUF_I16 || kv->type == LMP_GGUF_I32 || kv->type == LMP_GGUF_I64)
                same = kv->v.i == strtoll(v1, NULL, 10);
            else if (kv->type != LMP_GGUF_F64) same = kv->v.u == strtoull(v1, NULL, 10);
            CHECKF(same, "%s: %s: our reader's value differs from gguf-py's (%s %s)", c->name, key, v1, v2);
        } else if (!strncmp(l, "tensor ", 7)) {
            tok_at(l, 1, key, sizeof key);
            const lmp_gguf_tensor *t = n_t < lmp_gguf_n_tensors(g) ? lmp_gguf_tensor_at(g, n_t) : NULL;
            n_t++;
            CHECKF(t && !strcmp(t->name, key) &&
                       lmp_gguf_data_offset(g) + t->offset == strtoull(field(l, "offset", buf, sizeof buf), NULL, 10) &&
                       t->nbytes == strtoull(field(l, "nbytes", buf, sizeof buf), NULL, 10),
                   "%s: tensor %s: our reader disagrees with gguf-py on name, offset or size", c->name, key);
        }
    }
    CHECK(lmp_gguf_n_kv(g) == n_kv && lmp_gguf_n_tensors(g) == n_t);
    lmp_gguf_close(g);
}

static void test_export_vs_gguf_py(void) {
    size_t size;
    char *text = test_read_file(REF, &size);
    CHECKF(text != NULL, "%s missing (run from the repository root; scripts/ref_gguf_export.py writes it)", REF);
    if (!text) return;
    text = realloc(text, size + 1);
    text[size] = 0;
    ref_case cases[16];
    int nc = ref_parse(text, cases, 16);
    CHECKF(nc >= 4, "%s: %d cases (malformed?)", REF, nc);
    for (int ci = 0; ci < nc; ci++) {
        const ref_case *c = &cases[ci];
        lmp_import_opts io = {.tokenizer_path = c->tok[0] ? c->tok : NULL};
        lmp_file *f = NULL;
        lmp_error e = {0};
        CHECKF(lmp_open_any(c->src, &io, LMP_OPEN_DEFAULT, &f, &e) == LMP_OK, "%s: %s", c->name, e.msg);
        if (!f) continue;
        char out[512];
        snprintf(out, sizeof out, "%s/%s.gguf", test_tmpdir(), c->name);
        CHECKF(lmp_export_gguf(f, out, &e) == LMP_OK, "%s: %s", c->name, e.msg);
        size_t n = 0;
        uint8_t *bytes = test_read_file(out, &n);
        CHECKF(bytes && n == c->size && lmp_crc32(0, bytes, n) == c->crc,
               "%s: the export (%zu bytes, CRC32 0x%08x) is not the file gguf-py read (%llu bytes, 0x%08x); if the change is "
               "intended, run scripts/ref_gguf_export.py", c->name, n, bytes ? lmp_crc32(0, bytes, n) : 0,
               (unsigned long long)c->size, c->crc);
        // the rest still runs on a mismatch: it says which part of the file changed
        expect_list x;
        expected_kv(f, &x);
        check_kv(c, &x);
        check_tensors(c, f, c->size);
        check_our_reader(c, out);
        free(bytes);
        lmp_file_close(f);
        unlink(out);
    }
    for (int ci = 0; ci < nc; ci++) free(cases[ci].lines);
    free(text);
}

// The export is a function of the model alone: writing the same model twice gives the same bytes.
static void test_export_deterministic(void) {
    lmp_file *f = NULL;
    lmp_error e = {0};
    CHECKF(lmp_open_any("tests/fixtures/gguf/tiny.gguf", NULL, LMP_OPEN_DEFAULT, &f, &e) == LMP_OK, "%s", e.msg);
    if (!f) return;
    char a[512], b[512];
    snprintf(a, sizeof a, "%s/det_a.gguf", test_tmpdir());
    snprintf(b, sizeof b, "%s/det_b.gguf", test_tmpdir());
    CHECK(lmp_export_gguf(f, a, &e) == LMP_OK && lmp_export_gguf(f, b, &e) == LMP_OK);
    size_t na = 0, nb = 0;
    uint8_t *pa = test_read_file(a, &na), *pb = test_read_file(b, &nb);
    CHECK(pa && pb && na == nb && na > 0 && memcmp(pa, pb, na) == 0);
    free(pa), free(pb);
    unlink(a), unlink(b);
    lmp_file_close(f);
}

int main(void) {
    test_seed();
    RUN(test_export_vs_gguf_py);
    RUN(test_export_deterministic);
    return test_report();
}
