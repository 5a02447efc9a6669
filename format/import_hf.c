// import_hf.c - lmp_import_hf: a Hugging Face Llama directory (config.json + safetensors) to an lmp_builder.
//
// Reads config.json (LlamaForCausalLM / MistralForCausalLM without sliding window in use), the weights
// from model.safetensors or from the shards named by model.safetensors.index.json (F32/F16/BF16, kept
// as they are), renames them to docs/format.md's names with (out, in) shapes unchanged, and sets
// llama.rope.style = "neox" (HF applies RoPE rotate-half; weights are not permuted). Every expected
// tensor must be present with its exact shape; rotary_emb.inv_freq buffers are ignored, any other
// tensor is refused. The tokenizer comes from tokenizer.json when it is a byte-level BPE, or from a
// llama2.c tokenizer.bin named by opts->tokenizer_path (which wins when given).
//
// provenance.source is the directory; provenance.source_crc32 is the CRC32 of config.json, then
// model.safetensors.index.json (when present), then each weight file in name order, concatenated.
//
// It does not import SentencePiece tokenizer.model files, attention/MLP biases, rope scaling, or
// non-Llama architectures, and does not convert dtypes.
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format/json.h"
#include "format/lmp_import.h"
#include "format/safetensors.h"

#define CONFIG_MAX_BYTES ((size_t)4 << 20)
#define INDEX_MAX_BYTES ((size_t)64 << 20)
#define TOKENIZER_MAX_BYTES ((size_t)512 << 20)
#define MAX_SHARDS 4096

// ---- small file helpers ----

// Reads a whole regular file into an lmp_malloc'd buffer (NUL-terminated for convenience).
// *missing is set (and LMP_E_IO returned) when the file does not exist, so callers can treat optional
// files as absent.
static lmp_status read_whole(const char *path, size_t max, char **buf, size_t *size, int *missing, lmp_error *err) {
    *buf = NULL;
    *size = 0;
    if (missing) *missing = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (missing && errno == ENOENT) *missing = 1;
        return lmp_err(err, LMP_E_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return lmp_err(err, LMP_E_IO, "%s: not a readable regular file", path);
    }
    if ((uint64_t)sb.st_size > max) {
        close(fd);
        return lmp_err(err, LMP_E_FORMAT, "%s: %lld bytes is more than the %zu allowed for this file", path,
                       (long long)sb.st_size, max);
    }
    size_t n = (size_t)sb.st_size;
    char *b = lmp_malloc(n + 1);
    if (!b) {
        close(fd);
        return lmp_err(err, LMP_E_NOMEM, "%s: out of memory reading %zu bytes", path, n);
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, b + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = errno;
            close(fd);
            lmp_free(b);
            return lmp_err(err, LMP_E_IO, "%s: read failed after %zu of %zu bytes: %s", path, got, n,
                           r < 0 ? strerror(e) : "file shrank");
        }
        got += (size_t)r;
    }
    close(fd);
    b[n] = 0;
    *buf = b;
    *size = n;
    return LMP_OK;
}

static char *path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = lmp_malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

// No allocation here: a failed allocation must not read as "file absent".
static int file_exists(const char *dir, const char *name) {
    char p[4096];
    if ((size_t)snprintf(p, sizeof p, "%s/%s", dir, name) >= sizeof p) return 0;
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

// Parses JSON text from a file, prefixing errors with the file's name.
static lmp_status parse_json_file(const char *dir, const char *name, size_t max, lmp_json **out, uint32_t *crc,
                                  lmp_error *err) {
    *out = NULL;
    char *path = path_join(dir, name);
    if (!path) return lmp_err(err, LMP_E_NOMEM, "out of memory");
    char *text;
    size_t n;
    lmp_status st = read_whole(path, max, &text, &n, NULL, err);
    lmp_free(path);
    if (st) return st;
    if (crc) *crc = lmp_crc32(*crc, text, n);
    st = lmp_json_parse(text, n, NULL, out, err);
    lmp_free(text);
    return lmp_err_prefix(err, st, "%s", name);
}

// ---- config.json ----

typedef struct hf_config {
    int64_t dim, ffn, n_layers, n_heads, n_kv_heads, head_dim, vocab, ctx;
    double eps, theta;
    int tied;
    int64_t bos, eos;  // -1 when absent
    const char *name;  // _name_or_path, or NULL
} hf_config;

static int json_array_has(const lmp_json *a, const char *s) {
    if (!a || a->type != LMP_JSON_ARRAY) return 0;
    for (size_t i = 0; i < a->n; i++)
        if (a->items[i].type == LMP_JSON_STRING && strcmp(a->items[i].str, s) == 0) return 1;
    return 0;
}

// Integer member with a range check; def < 0 means required.
static lmp_status cfg_int(const lmp_json *c, const char *key, int64_t lo, int64_t hi, int64_t def, int64_t *out,
                          lmp_error *err) {
    int r = lmp_json_get_int(c, key, out);
    if (r == 0) {
        if (def < 0) return lmp_err(err, LMP_E_FORMAT, "config.json: missing '%s'", key);
        *out = def;
        return LMP_OK;
    }
    if (r < 0)
        return lmp_err(err, LMP_E_FORMAT, "config.json: '%s' is a %s, expected an integer", key,
                       lmp_json_type_name(lmp_json_get(c, key)->type));
    if (*out < lo || *out > hi)
        return lmp_err(err, LMP_E_FORMAT, "config.json: %s = %lld is out of range (%lld..%lld)", key, (long long)*out,
                       (long long)lo, (long long)hi);
    return LMP_OK;
}

static lmp_status cfg_num(const lmp_json *c, const char *key, double lo, double hi, double def, double *out,
                          lmp_error *err) {
    int r = lmp_json_get_num(c, key, out);
    if (r == 0) {
        *out = def;
        return LMP_OK;
    }
    if (r < 0)
        return lmp_err(err, LMP_E_FORMAT, "config.json: '%s' is a %s, expected a number", key,
                       lmp_json_type_name(lmp_json_get(c, key)->type));
    if (!(*out > lo && *out < hi))
        return lmp_err(err, LMP_E_FORMAT, "config.json: %s = %g is out of range (%g..%g)", key, *out, lo, hi);
    return LMP_OK;
}

// bos_token_id / eos_token_id: an integer, null, or a list of integers (Llama 3.1 lists several eos
// ids; the first is kept).
static lmp_status cfg_token_id(const lmp_json *c, const char *key, int64_t *out, lmp_error *err) {
    *out = -1;
    const lmp_json *v = lmp_json_get(c, key);
    if (!v || v->type == LMP_JSON_NULL) return LMP_OK;
    if (v->type == LMP_JSON_ARRAY && v->n > 0) v = &v->items[0];
    if (v->type != LMP_JSON_NUMBER || !v->is_int || v->i < 0 || v->i > INT32_MAX)
        return lmp_err(err, LMP_E_FORMAT, "config.json: '%s' must be a non-negative integer or a list of them", key);
    *out = v->i;
    return LMP_OK;
}

static lmp_status parse_config(const lmp_json *c, hf_config *h, lmp_error *err) {
    if (c->type != LMP_JSON_OBJECT)
        return lmp_err(err, LMP_E_FORMAT, "config.json: top level is a %s, expected an object",
                       lmp_json_type_name(c->type));
    const char *mt = NULL;
    if (lmp_json_get_str(c, "model_type", &mt) < 0)
        return lmp_err(err, LMP_E_FORMAT, "config.json: 'model_type' is not a string");
    const lmp_json *arch = lmp_json_get(c, "architectures");
    int llama = (mt && strcmp(mt, "llama") == 0) || json_array_has(arch, "LlamaForCausalLM");
    int mistral = json_array_has(arch, "MistralForCausalLM");
    if (!llama && !mistral) {
        const char *a0 = arch && arch->type == LMP_JSON_ARRAY && arch->n && arch->items[0].type == LMP_JSON_STRING
                             ? arch->items[0].str
                             : "none";
        return lmp_err(err, LMP_E_UNSUPPORTED,
                       "config.json: model_type '%.60s', architecture '%.60s' is not a Llama model "
                       "(supported: LlamaForCausalLM, MistralForCausalLM)",
                       mt ? mt : "none", a0);
    }
    lmp_status st;
    if ((st = cfg_int(c, "hidden_size", 1, 1 << 20, -1, &h->dim, err)) ||
        (st = cfg_int(c, "intermediate_size", 1, 1 << 22, -1, &h->ffn, err)) ||
        (st = cfg_int(c, "num_hidden_layers", 1, 4096, -1, &h->n_layers, err)) ||
        (st = cfg_int(c, "num_attention_heads", 1, 1 << 16, -1, &h->n_heads, err)) ||
        (st = cfg_int(c, "num_key_value_heads", 1, 1 << 16, h->n_heads, &h->n_kv_heads, err)) ||
        (st = cfg_int(c, "vocab_size", 1, 1 << 24, -1, &h->vocab, err)) ||
        (st = cfg_int(c, "max_position_embeddings", 1, 1 << 24, -1, &h->ctx, err)))
        return st;
    if (h->n_heads % h->n_kv_heads)
        return lmp_err(err, LMP_E_FORMAT, "config.json: num_key_value_heads %lld does not divide num_attention_heads %lld",
                       (long long)h->n_kv_heads, (long long)h->n_heads);
    int64_t def_hd = h->dim % h->n_heads == 0 ? h->dim / h->n_heads : -1;
    if ((st = cfg_int(c, "head_dim", 2, 1 << 16, def_hd, &h->head_dim, err))) {
        if (def_hd < 0 && !lmp_json_get(c, "head_dim"))
            return lmp_err(err, LMP_E_FORMAT, "config.json: num_attention_heads %lld does not divide hidden_size %lld "
                           "and there is no head_dim", (long long)h->n_heads, (long long)h->dim);
        return st;
    }
    if (h->head_dim % 2) return lmp_err(err, LMP_E_FORMAT, "config.json: head_dim %lld is odd", (long long)h->head_dim);
    if ((st = cfg_num(c, "rms_norm_eps", 0, 1, 1e-6, &h->eps, err)) ||
        (st = cfg_num(c, "rope_theta", 1, 1e12, 10000.0, &h->theta, err)))
        return st;
    int r = lmp_json_get_bool(c, "tie_word_embeddings", &h->tied);
    if (r < 0) return lmp_err(err, LMP_E_FORMAT, "config.json: 'tie_word_embeddings' is not a boolean");
    if (r == 0) h->tied = 0;
    const lmp_json *rs = lmp_json_get(c, "rope_scaling");
    if (rs && rs->type != LMP_JSON_NULL) {
        const char *t = NULL;
        if (lmp_json_get_str(rs, "rope_type", &t) != 1 && lmp_json_get_str(rs, "type", &t) != 1) t = "unnamed";
        return lmp_err(err, LMP_E_UNSUPPORTED, "config.json: rope_scaling type '%.60s' is not supported", t);
    }
    int64_t sw;
    int use_sw = 1;
    if (lmp_json_get_bool(c, "use_sliding_window", &use_sw) < 0) use_sw = 1;
    if (lmp_json_get_int(c, "sliding_window", &sw) == 1 && use_sw && sw < h->ctx)
        return lmp_err(err, LMP_E_UNSUPPORTED,
                       "config.json: sliding_window %lld < max_position_embeddings %lld: sliding-window attention is "
                       "not supported", (long long)sw, (long long)h->ctx);
    const char *act = NULL;
    if (lmp_json_get_str(c, "hidden_act", &act) == 1 && strcmp(act, "silu") != 0)
        return lmp_err(err, LMP_E_UNSUPPORTED, "config.json: hidden_act '%.40s' is not supported (silu)", act);
    int bias = 0;
    if (lmp_json_get_bool(c, "attention_bias", &bias) == 1 && bias)
        return lmp_err(err, LMP_E_UNSUPPORTED, "config.json: attention_bias is not supported");
    if (lmp_json_get_bool(c, "mlp_bias", &bias) == 1 && bias)
        return lmp_err(err, LMP_E_UNSUPPORTED, "config.json: mlp_bias is not supported");
    if ((st = cfg_token_id(c, "bos_token_id", &h->bos, err)) || (st = cfg_token_id(c, "eos_token_id", &h->eos, err)))
        return st;
    h->name = NULL;
    if (lmp_json_get_str(c, "_name_or_path", &h->name) != 1 || !h->name[0]) h->name = NULL;
    return LMP_OK;
}

// ---- weights ----

typedef struct shard {
    char *file;              // file name inside the directory
    lmp_safetensors *st;
} shard;

typedef struct expect {
    char hf[96];             // Hugging Face name
    char ours[64];           // docs/format.md name
    int ndim;
    int64_t shape[2];
    const lmp_st_tensor *t;  // found in a shard
    int optional;
} expect;

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void shards_free(shard *s, size_t n) {
    for (size_t i = 0; s && i < n; i++) {
        lmp_free(s[i].file);
        lmp_safetensors_close(s[i].st);
    }
    lmp_free(s);
}

// A shard name from the index must stay inside the directory.
static int safe_file_name(const char *s) {
    return s[0] && !strchr(s, '/') && strcmp(s, ".") && strcmp(s, "..");
}

// Opens model.safetensors, or every shard that model.safetensors.index.json names (sorted by name).
// Checks that each tensor of the weight map is in the shard it names.
static lmp_status open_shards(const char *dir, shard **out, size_t *n_out, uint32_t *crc, lmp_error *err) {
    *out = NULL;
    *n_out = 0;
    lmp_status st;
    char **names = NULL;
    size_t n = 0;
    lmp_json *index = NULL;
    shard *sh = NULL;
    if (file_exists(dir, "model.safetensors.index.json")) {
        if ((st = parse_json_file(dir, "model.safetensors.index.json", INDEX_MAX_BYTES, &index, crc, err))) return st;
        const lmp_json *wm = lmp_json_get(index, "weight_map");
        if (!wm || wm->type != LMP_JSON_OBJECT || wm->n == 0) {
            st = lmp_err(err, LMP_E_FORMAT, "model.safetensors.index.json: missing or empty 'weight_map' object");
            goto done;
        }
        names = lmp_calloc(wm->n, sizeof *names);
        if (!names) {
            st = lmp_err(err, LMP_E_NOMEM, "out of memory");
            goto done;
        }
        for (size_t i = 0; i < wm->n; i++) {
            const lmp_json *v = &wm->items[i];
            if (v->type != LMP_JSON_STRING || !safe_file_name(v->str)) {
                st = lmp_err(err, LMP_E_FORMAT,
                             "model.safetensors.index.json: weight_map['%.100s'] is not a file name in the directory",
                             wm->keys[i]);
                goto done;
            }
            size_t k = 0;
            while (k < n && strcmp(names[k], v->str)) k++;
            if (k == n) names[n++] = v->str;  // borrowed from the index
        }
        if (n > MAX_SHARDS) {
            st = lmp_err(err, LMP_E_FORMAT, "model.safetensors.index.json names %zu files (limit %d)", n, MAX_SHARDS);
            goto done;
        }
        qsort(names, n, sizeof *names, cmp_str);
    } else if (file_exists(dir, "model.safetensors")) {
        static const char *single = "model.safetensors";
        names = lmp_calloc(1, sizeof *names);
        if (!names) return lmp_err(err, LMP_E_NOMEM, "out of memory");
        names[0] = (char *)single;
        n = 1;
    } else {
        return lmp_err(err, LMP_E_IO, "%s: no model.safetensors or model.safetensors.index.json", dir);
    }
    sh = lmp_calloc(n, sizeof *sh);
    if (!sh) {
        st = lmp_err(err, LMP_E_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        char *path = path_join(dir, names[i]);
        sh[i].file = lmp_strdup(names[i]);
        if (!path || !sh[i].file) {
            lmp_free(path);
            st = lmp_err(err, LMP_E_NOMEM, "out of memory");
            goto done;
        }
        st = lmp_safetensors_open(path, &sh[i].st, err);
        lmp_free(path);
        if (st) goto done;
        size_t size;
        const void *bytes = lmp_safetensors_bytes(sh[i].st, &size);
        *crc = lmp_crc32(*crc, bytes, size);
    }
    if (index) {
        const lmp_json *wm = lmp_json_get(index, "weight_map");
        for (size_t i = 0; i < wm->n; i++) {
            size_t k = 0;
            while (strcmp(sh[k].file, wm->items[i].str)) k++;
            if (!lmp_safetensors_find(sh[k].st, wm->keys[i])) {
                st = lmp_err(err, LMP_E_FORMAT, "tensor '%.100s': weight_map names %s, which does not hold it",
                             wm->keys[i], sh[k].file);
                goto done;
            }
        }
    }
    st = LMP_OK;
done:
    lmp_free(names);
    lmp_json_free(index);
    if (st) {
        shards_free(sh, sh ? n : 0);
        return st;
    }
    *out = sh;
    *n_out = n;
    return LMP_OK;
}

static void expect_set(expect *e, const char *hf, const char *ours, int ndim, int64_t d0, int64_t d1) {
    snprintf(e->hf, sizeof e->hf, "%s", hf);
    snprintf(e->ours, sizeof e->ours, "%s", ours);
    e->ndim = ndim;
    e->shape[0] = d0;
    e->shape[1] = d1;
    e->t = NULL;
    e->optional = 0;
}

// The tensors a Llama checkpoint must hold, in the order they are added to the builder.
static expect *expected_tensors(const hf_config *h, size_t *n_out) {
    size_t n = 2 + 9 * (size_t)h->n_layers + 1;
    expect *e = lmp_calloc(n, sizeof *e);
    if (!e) return NULL;
    int64_t qd = h->n_heads * h->head_dim, kvd = h->n_kv_heads * h->head_dim;
    size_t k = 0;
    expect_set(&e[k++], "model.embed_tokens.weight", "token_embd.weight", 2, h->vocab, h->dim);
    for (int64_t l = 0; l < h->n_layers; l++) {
        char hf[96], ours[64];
        static const struct {
            const char *hf, *ours;
            int kind;  // 0 norm, 1 q, 2 k/v, 3 o, 4 gate/up, 5 down
        } L[9] = {{"input_layernorm", "attn_norm", 0},     {"self_attn.q_proj", "attn_q", 1},
                  {"self_attn.k_proj", "attn_k", 2},       {"self_attn.v_proj", "attn_v", 2},
                  {"self_attn.o_proj", "attn_output", 3},  {"post_attention_layernorm", "ffn_norm", 0},
                  {"mlp.gate_proj", "ffn_gate", 4},        {"mlp.down_proj", "ffn_down", 5},
                  {"mlp.up_proj", "ffn_up", 4}};
        for (int j = 0; j < 9; j++) {
            snprintf(hf, sizeof hf, "model.layers.%lld.%s.weight", (long long)l, L[j].hf);
            snprintf(ours, sizeof ours, "blk.%lld.%s.weight", (long long)l, L[j].ours);
            switch (L[j].kind) {
            case 0: expect_set(&e[k++], hf, ours, 1, h->dim, 0); break;
            case 1: expect_set(&e[k++], hf, ours, 2, qd, h->dim); break;
            case 2: expect_set(&e[k++], hf, ours, 2, kvd, h->dim); break;
            case 3: expect_set(&e[k++], hf, ours, 2, h->dim, qd); break;
            case 4: expect_set(&e[k++], hf, ours, 2, h->ffn, h->dim); break;
            default: expect_set(&e[k++], hf, ours, 2, h->dim, h->ffn); break;
            }
        }
    }
    expect_set(&e[k++], "model.norm.weight", "output_norm.weight", 1, h->dim, 0);
    expect_set(&e[k++], "lm_head.weight", "output.weight", 2, h->vocab, h->dim);
    e[k - 1].optional = h->tied;
    *n_out = k;
    return e;
}

static void shape_str(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t o = (size_t)snprintf(buf, cap, "(");
    for (int d = 0; d < ndim && o < cap; d++)
        o += (size_t)snprintf(buf + o, cap - o, d ? ", %lld" : "%lld", (long long)shape[d]);
    if (o < cap) snprintf(buf + o, cap - o, ndim == 1 ? ",)" : ")");
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

// Assigns every shard tensor to its expected slot; refuses unknown, duplicate, mis-shaped and
// missing tensors and unsupported dtypes.
static lmp_status match_tensors(const shard *sh, size_t n_sh, expect *e, size_t n_e, lmp_error *err) {
    for (size_t s = 0; s < n_sh; s++) {
        for (size_t i = 0; i < lmp_safetensors_n_tensors(sh[s].st); i++) {
            const lmp_st_tensor *t = lmp_safetensors_tensor(sh[s].st, i);
            if (ends_with(t->name, ".rotary_emb.inv_freq")) continue;
            size_t k = 0;
            while (k < n_e && strcmp(e[k].hf, t->name)) k++;
            if (k == n_e)
                return lmp_err(err, LMP_E_FORMAT, "%s: unexpected tensor '%.100s' (not part of a Llama model of this config)",
                               sh[s].file, t->name);
            if (e[k].t) return lmp_err(err, LMP_E_FORMAT, "tensor '%.100s' appears twice (in %s)", t->name, sh[s].file);
            if (t->dtype != LMP_ST_F32 && t->dtype != LMP_ST_F16 && t->dtype != LMP_ST_BF16)
                return lmp_err(err, LMP_E_UNSUPPORTED, "tensor '%.100s': dtype %s is not supported (F32, F16, BF16)",
                               t->name, lmp_st_dtype_name(t->dtype));
            if (t->ndim != e[k].ndim || t->shape[0] != e[k].shape[0] || (e[k].ndim == 2 && t->shape[1] != e[k].shape[1])) {
                char got[96], want[64];
                shape_str(got, sizeof got, t->ndim, t->shape);
                shape_str(want, sizeof want, e[k].ndim, e[k].shape);
                return lmp_err(err, LMP_E_FORMAT, "tensor '%.100s': shape %s, expected %s", t->name, got, want);
            }
            e[k].t = t;
        }
    }
    for (size_t k = 0; k < n_e; k++)
        if (!e[k].t && !e[k].optional) return lmp_err(err, LMP_E_FORMAT, "missing tensor '%s'", e[k].hf);
    return LMP_OK;
}

static lmp_dtype our_dtype(lmp_st_dtype t) {
    return t == LMP_ST_F32 ? LMP_DTYPE_F32 : t == LMP_ST_F16 ? LMP_DTYPE_F16 : LMP_DTYPE_BF16;
}

// ---- tokenizers ----

static void free_strs(char **s, size_t n) {
    for (size_t i = 0; s && i < n; i++) lmp_free(s[i]);
    lmp_free(s);
}

// The pre-tokenizer family of tokenizer.json, as tokenizer.pre names it: "smollm" for
// Sequence[Digits(individual_digits), ByteLevel], "llama3" for Llama 3's Split regex + ByteLevel,
// otherwise "gpt2".
static const char *detect_pre(const lmp_json *pre) {
    static const char *llama3_re =
        "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
        "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    const char *type = NULL;
    if (lmp_json_get_str(pre, "type", &type) != 1 || strcmp(type, "Sequence")) return "gpt2";
    const lmp_json *seq = lmp_json_get(pre, "pretokenizers");
    if (!seq || seq->type != LMP_JSON_ARRAY || seq->n != 2) return "gpt2";
    const char *t0 = NULL, *t1 = NULL;
    lmp_json_get_str(&seq->items[0], "type", &t0);
    lmp_json_get_str(&seq->items[1], "type", &t1);
    if (!t0 || !t1 || strcmp(t1, "ByteLevel")) return "gpt2";
    int digits = 0;
    if (strcmp(t0, "Digits") == 0 && lmp_json_get_bool(&seq->items[0], "individual_digits", &digits) == 1 && digits)
        return "smollm";
    const lmp_json *pat = lmp_json_get(&seq->items[0], "pattern");
    const char *re = NULL;
    if (strcmp(t0, "Split") == 0 && lmp_json_get_str(pat, "Regex", &re) == 1 && strcmp(re, llama3_re) == 0)
        return "llama3";
    return "gpt2";
}

static int has_byte_level(const lmp_json *j) {
    const char *type = NULL;
    if (lmp_json_get_str(j, "type", &type) != 1) return 0;
    if (strcmp(type, "ByteLevel") == 0) return 1;
    if (strcmp(type, "Sequence") == 0) {
        const lmp_json *seq = lmp_json_get(j, "pretokenizers");
        if (!seq) seq = lmp_json_get(j, "decoders");
        for (size_t i = 0; seq && seq->type == LMP_JSON_ARRAY && i < seq->n; i++)
            if (has_byte_level(&seq->items[i])) return 1;
    }
    return 0;
}

// Whether the post-processor puts the BOS token first in a single sequence (TemplateProcessing,
// possibly inside a Sequence).
static int post_adds_bos(const lmp_json *pp, const char *bos) {
    const char *type = NULL;
    if (!bos || lmp_json_get_str(pp, "type", &type) != 1) return 0;
    if (strcmp(type, "Sequence") == 0) {
        const lmp_json *seq = lmp_json_get(pp, "processors");
        for (size_t i = 0; seq && seq->type == LMP_JSON_ARRAY && i < seq->n; i++)
            if (post_adds_bos(&seq->items[i], bos)) return 1;
        return 0;
    }
    if (strcmp(type, "TemplateProcessing")) return 0;
    const lmp_json *single = lmp_json_get(pp, "single");
    if (!single || single->type != LMP_JSON_ARRAY || single->n == 0) return 0;
    const char *id = NULL;
    return lmp_json_get_str(lmp_json_get(&single->items[0], "SpecialToken"), "id", &id) == 1 && strcmp(id, bos) == 0;
}

static lmp_status set_token(char **tokens, int32_t *types, int64_t vocab, const lmp_json *idv, const char *text,
                            size_t len, int32_t type, const char *where, lmp_error *err) {
    if (!idv || idv->type != LMP_JSON_NUMBER || !idv->is_int || idv->i < 0 || idv->i >= vocab)
        return lmp_err(err, LMP_E_FORMAT, "tokenizer.json: %s '%.60s' has an id that is not an integer in 0..%lld", where,
                       text, (long long)vocab - 1);
    if (strlen(text) != len)
        return lmp_err(err, LMP_E_FORMAT, "tokenizer.json: %s with id %lld contains a NUL byte", where, (long long)idv->i);
    int64_t id = idv->i;
    if (tokens[id]) {
        if (strcmp(tokens[id], text) == 0 && type != 1) {
            types[id] = type;
            return LMP_OK;
        }
        return lmp_err(err, LMP_E_FORMAT, "tokenizer.json: id %lld is given to both '%.60s' and '%.60s'", (long long)id,
                       tokens[id], text);
    }
    tokens[id] = lmp_strdup(text);
    if (!tokens[id]) return lmp_err(err, LMP_E_NOMEM, "out of memory (tokenizer)");
    types[id] = type;
    return LMP_OK;
}

// Imports a byte-level BPE tokenizer.json as tokenizer.model "gpt2". *done = 0 (and LMP_OK) when the
// file is absent or is another kind of tokenizer.
static lmp_status import_tokenizer_json(const char *dir, const hf_config *h, lmp_meta *m, int *done, lmp_error *err) {
    *done = 0;
    if (!file_exists(dir, "tokenizer.json")) return LMP_OK;
    lmp_json *tj = NULL;
    lmp_status st = parse_json_file(dir, "tokenizer.json", TOKENIZER_MAX_BYTES, &tj, NULL, err);
    if (st) return st;
    const lmp_json *model = lmp_json_get(tj, "model");
    const char *mtype = NULL;
    int byte_fallback = 0;
    lmp_json_get_bool(model, "byte_fallback", &byte_fallback);
    if (lmp_json_get_str(model, "type", &mtype) != 1 || strcmp(mtype, "BPE") || byte_fallback ||
        (!has_byte_level(lmp_json_get(tj, "pre_tokenizer")) && !has_byte_level(lmp_json_get(tj, "decoder")))) {
        lmp_json_free(tj);
        return LMP_OK;  // not a byte-level BPE: imported without a tokenizer
    }
    const lmp_json *vocab = lmp_json_get(model, "vocab");
    const lmp_json *merges = lmp_json_get(model, "merges");
    const lmp_json *added = lmp_json_get(tj, "added_tokens");
    char **tokens = NULL, **mstr = NULL;
    int32_t *types = NULL;
    size_t n_merges = 0;
    if (!vocab || vocab->type != LMP_JSON_OBJECT || !merges || merges->type != LMP_JSON_ARRAY) {
        st = lmp_err(err, LMP_E_FORMAT, "tokenizer.json: model.vocab must be an object and model.merges an array");
        goto done;
    }
    if (added && added->type != LMP_JSON_ARRAY) {
        st = lmp_err(err, LMP_E_FORMAT, "tokenizer.json: added_tokens is not an array");
        goto done;
    }
    int64_t n = h->vocab;  // the model's vocabulary; the tokenizer may be smaller (padded) but not larger
    tokens = lmp_calloc((size_t)n, sizeof *tokens);
    types = lmp_calloc((size_t)n, sizeof *types);
    mstr = lmp_calloc(merges->n ? merges->n : 1, sizeof *mstr);
    if (!tokens || !types || !mstr) {
        st = lmp_err(err, LMP_E_NOMEM, "out of memory (tokenizer of %lld tokens)", (long long)n);
        goto done;
    }
    for (size_t i = 0; i < vocab->n; i++)
        if ((st = set_token(tokens, types, n, &vocab->items[i], vocab->keys[i], vocab->key_lens[i], 1, "vocab token",
                            err)))
            goto done;
    for (size_t i = 0; added && i < added->n; i++) {
        const lmp_json *a = &added->items[i];
        const lmp_json *content = lmp_json_get(a, "content");
        int special = 0;
        if (!content || content->type != LMP_JSON_STRING) {
            st = lmp_err(err, LMP_E_FORMAT, "tokenizer.json: added_tokens[%zu] has no string 'content'", i);
            goto done;
        }
        lmp_json_get_bool(a, "special", &special);
        if ((st = set_token(tokens, types, n, lmp_json_get(a, "id"), content->str, content->len, special ? 3 : 4,
                            "added token", err)))
            goto done;
    }
    for (int64_t i = 0; i < n; i++) {
        if (tokens[i]) continue;
        char pad[32];
        snprintf(pad, sizeof pad, "[PAD%lld]", (long long)i);
        if (!(tokens[i] = lmp_strdup(pad))) {
            st = lmp_err(err, LMP_E_NOMEM, "out of memory (tokenizer)");
            goto done;
        }
        types[i] = 5;  // unused
    }
    for (size_t i = 0; i < merges->n; i++) {
        const lmp_json *mg = &merges->items[i];
        const char *a, *b;
        size_t la, lb;
        if (mg->type == LMP_JSON_STRING) {
            const char *sp = strchr(mg->str, ' ');
            if (!sp || sp == mg->str || !sp[1] || strchr(sp + 1, ' ') || strlen(mg->str) != mg->len) {
                st = lmp_err(err, LMP_E_FORMAT, "tokenizer.json: merge %zu '%.60s' is not two tokens separated by one space",
                             i, mg->str);
                goto done;
            }
            a = mg->str;
            la = (size_t)(sp - mg->str);
            b = sp + 1;
            lb = strlen(b);
        } else if (mg->type == LMP_JSON_ARRAY && mg->n == 2 && mg->items[0].type == LMP_JSON_STRING &&
                   mg->items[1].type == LMP_JSON_STRING) {
            a = mg->items[0].str;
            la = mg->items[0].len;
            b = mg->items[1].str;
            lb = mg->items[1].len;
            if (!la || !lb || memchr(a, ' ', la) || memchr(b, ' ', lb) || strlen(a) != la || strlen(b) != lb) {
                st = lmp_err(err, LMP_E_FORMAT, "tokenizer.json: merge %zu has an empty part or a space or NUL in a part", i);
                goto done;
            }
        } else {
            st = lmp_err(err, LMP_E_FORMAT, "tokenizer.json: merge %zu is a %s, expected \"a b\" or [\"a\", \"b\"]", i,
                         lmp_json_type_name(mg->type));
            goto done;
        }
        mstr[i] = lmp_malloc(la + lb + 2);
        if (!mstr[i]) {
            st = lmp_err(err, LMP_E_NOMEM, "out of memory (merges)");
            goto done;
        }
        memcpy(mstr[i], a, la);
        mstr[i][la] = ' ';
        memcpy(mstr[i] + la + 1, b, lb);
        mstr[i][la + 1 + lb] = 0;
        n_merges = i + 1;
    }
    const char *pre = detect_pre(lmp_json_get(tj, "pre_tokenizer"));
    int add_bos = h->bos >= 0 && h->bos < n && post_adds_bos(lmp_json_get(tj, "post_processor"), tokens[h->bos]);
    st = LMP_OK;
    lmp_meta_keep(&st, lmp_meta_set_str(m, "tokenizer.model", "gpt2"), "tokenizer.model", err);
    lmp_meta_keep(&st, lmp_meta_set_str(m, "tokenizer.pre", pre), "tokenizer.pre", err);
    lmp_meta_keep(&st, lmp_meta_set_arr(m, "tokenizer.tokens", LMP_KV_STRING, tokens, (uint64_t)n), "tokenizer.tokens", err);
    lmp_meta_keep(&st, lmp_meta_set_arr(m, "tokenizer.token_type", LMP_KV_I32, types, (uint64_t)n), "tokenizer.token_type", err);
    lmp_meta_keep(&st, lmp_meta_set_arr(m, "tokenizer.merges", LMP_KV_STRING, mstr, (uint64_t)n_merges), "tokenizer.merges", err);
    if (h->bos >= 0 && h->bos < n) lmp_meta_keep(&st, lmp_meta_set_u32(m, "tokenizer.bos_id", (uint32_t)h->bos), "tokenizer.bos_id", err);
    if (h->eos >= 0 && h->eos < n) lmp_meta_keep(&st, lmp_meta_set_u32(m, "tokenizer.eos_id", (uint32_t)h->eos), "tokenizer.eos_id", err);
    lmp_meta_keep(&st, lmp_meta_set_bool(m, "tokenizer.add_bos", add_bos), "tokenizer.add_bos", err);
    if (!st) *done = 1;
done:
    free_strs(tokens, tokens ? (size_t)h->vocab : 0);
    free_strs(mstr, merges && merges->type == LMP_JSON_ARRAY ? merges->n : 0);
    lmp_free(types);
    lmp_json_free(tj);
    return st;
}

// llama2.c's tokenizer.bin: i32 max_token_length, then per token f32 score, i32 len, len bytes; the
// number of tokens is the model's vocab_size. Types as llama2.c assumes: 0 <unk>, 1 <s>, 2 </s>,
// <0xXX> byte tokens.
static lmp_status import_tokenizer_bin(const char *path, int64_t vocab, lmp_meta *m, lmp_error *err) {
    char *buf;
    size_t size;
    lmp_status st = read_whole(path, (size_t)1 << 30, &buf, &size, NULL, err);
    if (st) return st;
    const unsigned char *p = (const unsigned char *)buf;
    char **tokens = lmp_calloc((size_t)vocab, sizeof *tokens);
    float *scores = lmp_malloc((size_t)vocab * sizeof *scores);
    int32_t *types = lmp_malloc((size_t)vocab * sizeof *types);
    int32_t max_len = 0;
    size_t pos = 4;
    if (!tokens || !scores || !types) {
        st = lmp_err(err, LMP_E_NOMEM, "out of memory (tokenizer of %lld tokens)", (long long)vocab);
        goto done;
    }
    if (size < 4) {
        st = lmp_err(err, LMP_E_FORMAT, "%s: truncated: %zu bytes, max_token_length needs 4", path, size);
        goto done;
    }
    memcpy(&max_len, p, 4);
    if (max_len < 1 || max_len > (1 << 16)) {
        st = lmp_err(err, LMP_E_FORMAT, "%s: max_token_length %d is out of range (1..65536)", path, (int)max_len);
        goto done;
    }
    for (int64_t i = 0; i < vocab; i++) {
        int32_t len;
        if (size - pos < 8) {
            st = lmp_err(err, LMP_E_FORMAT, "%s: truncated at token %lld of %lld (offset %zu)", path, (long long)i,
                         (long long)vocab, pos);
            goto done;
        }
        memcpy(&scores[i], p + pos, 4);
        memcpy(&len, p + pos + 4, 4);
        pos += 8;
        if (len < 0 || len > max_len || (size_t)len > size - pos) {
            st = lmp_err(err, LMP_E_FORMAT, "%s: token %lld has length %d (max_token_length %d, %zu bytes left)", path,
                         (long long)i, (int)len, (int)max_len, size - pos);
            goto done;
        }
        if (memchr(p + pos, 0, (size_t)len)) {
            st = lmp_err(err, LMP_E_FORMAT, "%s: token %lld contains a NUL byte", path, (long long)i);
            goto done;
        }
        if (!(tokens[i] = lmp_malloc((size_t)len + 1))) {
            st = lmp_err(err, LMP_E_NOMEM, "out of memory (tokenizer)");
            goto done;
        }
        memcpy(tokens[i], p + pos, (size_t)len);
        tokens[i][len] = 0;
        pos += (size_t)len;
        unsigned hex;
        char tail;
        types[i] = i == 0 ? 2 : (i == 1 || i == 2) ? 3
                   : (len == 6 && sscanf(tokens[i], "<0x%2X%c", &hex, &tail) == 2 && tail == '>') ? 6 : 1;
    }
    if (pos != size) {
        st = lmp_err(err, LMP_E_FORMAT, "%s: %zu bytes left after %lld tokens (tokenizer of another vocabulary size?)",
                     path, size - pos, (long long)vocab);
        goto done;
    }
    st = LMP_OK;
    lmp_meta_keep(&st, lmp_meta_set_str(m, "tokenizer.model", "llama"), "tokenizer.model", err);
    lmp_meta_keep(&st, lmp_meta_set_arr(m, "tokenizer.tokens", LMP_KV_STRING, tokens, (uint64_t)vocab), "tokenizer.tokens", err);
    lmp_meta_keep(&st, lmp_meta_set_arr(m, "tokenizer.scores", LMP_KV_F32, scores, (uint64_t)vocab), "tokenizer.scores", err);
    lmp_meta_keep(&st, lmp_meta_set_arr(m, "tokenizer.token_type", LMP_KV_I32, types, (uint64_t)vocab), "tokenizer.token_type", err);
    lmp_meta_keep(&st, lmp_meta_set_u32(m, "tokenizer.bos_id", 1), "tokenizer.bos_id", err);
    lmp_meta_keep(&st, lmp_meta_set_u32(m, "tokenizer.eos_id", 2), "tokenizer.eos_id", err);
    lmp_meta_keep(&st, lmp_meta_set_bool(m, "tokenizer.add_bos", 1), "tokenizer.add_bos", err);
    lmp_meta_keep(&st, lmp_meta_set_bool(m, "tokenizer.add_space_prefix", 1), "tokenizer.add_space_prefix", err);
    lmp_meta_keep(&st, lmp_meta_set_u32(m, "tokenizer.max_token_length", (uint32_t)max_len), "tokenizer.max_token_length", err);
done:
    free_strs(tokens, tokens ? (size_t)vocab : 0);
    lmp_free(scores);
    lmp_free(types);
    lmp_free(buf);
    return st;
}

// ---- the importer ----

static lmp_status set_model_meta(lmp_meta *m, const hf_config *h, const char *dir, lmp_error *err) {
    const char *base = strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir;
    lmp_status st = LMP_OK;
    lmp_meta_keep(&st, lmp_meta_set_str(m, "general.architecture", "llama"), "general.architecture", err);
    lmp_meta_keep(&st, lmp_meta_set_str(m, "general.name", h->name ? h->name : (*base ? base : dir)), "general.name", err);
    lmp_meta_keep(&st, lmp_meta_set_u32(m, "llama.context_length", (uint32_t)h->ctx), "llama.context_length", err);
    lmp_meta_keep(&st, lmp_meta_set_u32(m, "llama.embedding_length", (uint32_t)h->dim), "llama.embedding_length", err);
    lmp_meta_keep(&st, lmp_meta_set_u32(m, "llama.block_count", (uint32_t)h->n_layers), "llama.block_count", err);
    lmp_meta_keep(&st, lmp_meta_set_u32(m, "llama.feed_forward_length", (uint32_t)h->ffn), "llama.feed_forward_length", err);
    lmp_meta_keep(&st, lmp_meta_set_u32(m, "llama.attention.head_count", (uint32_t)h->n_heads), "llama.attention.head_count", err);
    lmp_meta_keep(&st, lmp_meta_set_u32(m, "llama.attention.head_count_kv", (uint32_t)h->n_kv_heads), "llama.attention.head_count_kv", err);
    lmp_meta_keep(&st, lmp_meta_set_u32(m, "llama.attention.head_dim", (uint32_t)h->head_dim), "llama.attention.head_dim", err);
    lmp_meta_keep(&st, lmp_meta_set_f32(m, "llama.attention.layer_norm_rms_epsilon", (float)h->eps), "llama.attention.layer_norm_rms_epsilon", err);
    lmp_meta_keep(&st, lmp_meta_set_f32(m, "llama.rope.freq_base", (float)h->theta), "llama.rope.freq_base", err);
    lmp_meta_keep(&st, lmp_meta_set_u32(m, "llama.rope.dimension_count", (uint32_t)h->head_dim), "llama.rope.dimension_count", err);
    lmp_meta_keep(&st, lmp_meta_set_str(m, "llama.rope.style", "neox"), "llama.rope.style", err);
    lmp_meta_keep(&st, lmp_meta_set_u32(m, "llama.vocab_size", (uint32_t)h->vocab), "llama.vocab_size", err);
    return st;
}

// Copies the expected tensors into the builder in canonical order; drops a tied lm_head that equals
// the embeddings.
static lmp_status add_tensors(lmp_builder *b, const expect *e, size_t n_e, int tied, lmp_error *err) {
    for (size_t k = 0; k < n_e; k++) {
        const lmp_st_tensor *t = e[k].t;
        if (!t) continue;  // optional and absent
        if (tied && strcmp(e[k].hf, "lm_head.weight") == 0) {
            const lmp_st_tensor *emb = e[0].t;
            if (emb->dtype != t->dtype || memcmp(emb->data, t->data, (size_t)(t->end - t->begin)) != 0)
                return lmp_err(err, LMP_E_FORMAT,
                               "tie_word_embeddings is true but lm_head.weight differs from model.embed_tokens.weight");
            continue;
        }
        size_t nbytes = (size_t)(t->end - t->begin);
        void *data = lmp_malloc(nbytes ? nbytes : 1);
        if (!data) return lmp_err(err, LMP_E_NOMEM, "out of memory copying tensor '%s' (%zu bytes)", e[k].hf, nbytes);
        memcpy(data, t->data, nbytes);
        lmp_status st = lmp_builder_add(b, e[k].ours, our_dtype(t->dtype), t->ndim, t->shape, data, err);
        if (st) return st;
    }
    return LMP_OK;
}

lmp_status lmp_import_hf(const char *path, const lmp_import_opts *opts, lmp_builder **out, lmp_error *err) {
    if (!out || !path) return lmp_err(err, LMP_E_ARG, "lmp_import_hf: NULL argument");
    *out = NULL;
    // A file inside the directory (config.json, a shard) stands for its directory.
    struct stat sb;
    if (stat(path, &sb) != 0) return lmp_err(err, LMP_E_IO, "%s: %s", path, strerror(errno));
    char *dir;
    if (S_ISDIR(sb.st_mode)) {
        dir = lmp_strdup(path);
    } else {
        const char *slash = strrchr(path, '/');
        dir = slash ? lmp_strdup(path) : lmp_strdup(".");
        if (dir && slash) dir[slash - path == 0 ? 1 : slash - path] = 0;
    }
    if (!dir) return lmp_err(err, LMP_E_NOMEM, "out of memory");
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/') dir[--dl] = 0;

    lmp_json *cfg = NULL;
    shard *sh = NULL;
    size_t n_sh = 0, n_e = 0;
    expect *e = NULL;
    lmp_builder *b = NULL;
    hf_config h;
    memset(&h, 0, sizeof h);
    uint32_t crc = 0;
    lmp_status st = parse_json_file(dir, "config.json", CONFIG_MAX_BYTES, &cfg, &crc, err);
    if (st) goto done;
    if ((st = parse_config(cfg, &h, err))) goto done;
    if ((st = open_shards(dir, &sh, &n_sh, &crc, err))) goto done;
    if (!(e = expected_tensors(&h, &n_e))) {
        st = lmp_err(err, LMP_E_NOMEM, "out of memory");
        goto done;
    }
    if ((st = match_tensors(sh, n_sh, e, n_e, err))) goto done;
    if (!(b = lmp_builder_new())) {
        st = lmp_err(err, LMP_E_NOMEM, "out of memory");
        goto done;
    }
    lmp_meta *m = lmp_builder_meta(b);
    if ((st = set_model_meta(m, &h, dir, err))) goto done;
    if (opts && opts->tokenizer_path) {
        if ((st = import_tokenizer_bin(opts->tokenizer_path, h.vocab, m, err))) goto done;
    } else {
        int done_tok;
        if ((st = import_tokenizer_json(dir, &h, m, &done_tok, err))) goto done;
    }
    if (lmp_meta_set_str(m, "provenance.tool", "lmpress " LMP_VERSION_STRING) ||
        lmp_meta_set_str(m, "provenance.source", dir) || lmp_meta_set_u32(m, "provenance.source_crc32", crc)) {
        st = lmp_err(err, LMP_E_NOMEM, "out of memory (metadata)");
        goto done;
    }
    st = add_tensors(b, e, n_e, h.tied, err);
done:
    if (st == LMP_OK) {
        *out = b;
    } else {
        lmp_builder_free(b);
        // Name the directory once, unless the message already starts with a path inside it.
        if (err && strncmp(err->msg, dir, strlen(dir)) != 0) lmp_err_prefix(err, st, "%s", dir);
    }
    lmp_free(e);
    shards_free(sh, n_sh);
    lmp_json_free(cfg);
    lmp_free(dir);
    return st;
}
