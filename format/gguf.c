// gguf.c - the strict GGUF v2/v3 reader declared in gguf.h.
//
// Parses header, typed metadata (all 13 value types; arrays of arrays are refused), tensor infos and
// the data section, validating every count, length and offset against the file size before it is used
// (overflow-checked, 64-bit), and refusing duplicate keys or names, unknown types, misaligned, truncated
// or overlapping tensor data. Keys and tensor names are copied (NUL-terminated); everything else points
// into the mapped file. It does not convert tensors (gguf_quants.c) or metadata (import_gguf.c).
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format/gguf.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gguf.c reads little-endian values in host order: big-endian hosts are not supported"
#endif

struct lmp_gguf {
    const uint8_t *buf;     // (size) the whole file
    size_t size;
    int mapped;             // buf is an mmap of size bytes
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset;   // absolute start of the data section
    lmp_gguf_kv *kv;        // (n_kv)
    size_t n_kv;
    lmp_gguf_tensor *t;     // (n_tensors)
    size_t n_tensors;
    size_t *by_name;        // (n_tensors) tensor indices sorted by name, for lookups
};

typedef struct reader {
    const uint8_t *buf;
    uint64_t size;
    uint64_t pos;
    lmp_error *err;
} reader;

static uint64_t left(const reader *r) { return r->size - r->pos; }

// Why: one wording for every short read, naming the structure (printf-formatted), the bytes it needs,
// where, and which field (detail, may be NULL): "GGUF: truncated: tensor info 12 needs 28 bytes at
// offset 9000 (dims, type and offset of 'blk.1.ffn_up.weight'), file is 9010 bytes".
#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static lmp_status truncated(reader *r, uint64_t n, const char *detail, const char *fmt, ...) {
    char what[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return lmp_err(r->err, LMP_E_FORMAT, "GGUF: truncated: %s needs %llu bytes at offset %llu%s%s%s, file is %llu bytes",
                   what, (unsigned long long)n, (unsigned long long)r->pos, detail ? " (" : "", detail ? detail : "",
                   detail ? ")" : "", (unsigned long long)r->size);
}

static uint16_t rd16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}
static uint32_t rd32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static uint64_t rd64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

// Byte size of a scalar value type; 0 for string, array and unknown types.
static size_t vtype_size(uint32_t t) {
    switch (t) {
    case LMP_GGUF_U8: case LMP_GGUF_I8: case LMP_GGUF_BOOL: return 1;
    case LMP_GGUF_U16: case LMP_GGUF_I16: return 2;
    case LMP_GGUF_U32: case LMP_GGUF_I32: case LMP_GGUF_F32: return 4;
    case LMP_GGUF_U64: case LMP_GGUF_I64: case LMP_GGUF_F64: return 8;
    default: return 0;
    }
}

const char *lmp_gguf_vtype_name(uint32_t t) {
    static const char *names[LMP_GGUF_VTYPE_COUNT] = {"u8",  "i8",   "u16",    "i16",   "u32", "i32", "f32",
                                                      "bool", "string", "array", "u64", "i64", "f64"};
    return t < LMP_GGUF_VTYPE_COUNT ? names[t] : "?";
}

// Reads a { u64 len, bytes } string whose length must fit in what is left of the file; ctx names it.
static lmp_status read_string(reader *r, lmp_gguf_str *s, const char *ctx) {
    if (left(r) < 8) return truncated(r, 8, "string length", "%s", ctx);
    uint64_t len = rd64(r->buf + r->pos);
    r->pos += 8;
    if (len > left(r))
        return lmp_err(r->err, LMP_E_FORMAT,
                       "GGUF: %s: string length %llu runs past the end of the file (%llu bytes left at offset %llu)",
                       ctx, (unsigned long long)len, (unsigned long long)left(r), (unsigned long long)r->pos);
    s->p = (const char *)r->buf + r->pos;
    s->len = len;
    r->pos += len;
    return LMP_OK;
}

static char *dup_str(lmp_gguf_str s) {
    char *d = lmp_malloc((size_t)s.len + 1);
    if (!d) return NULL;
    memcpy(d, s.p, (size_t)s.len);
    d[s.len] = 0;
    return d;
}

// Widens a scalar at p of type t into kv->v.
static void read_scalar(lmp_gguf_kv *kv, uint32_t t, const uint8_t *p) {
    switch (t) {
    case LMP_GGUF_U8: case LMP_GGUF_BOOL: kv->v.u = p[0]; break;
    case LMP_GGUF_I8: kv->v.i = (int8_t)p[0]; break;
    case LMP_GGUF_U16: kv->v.u = rd16(p); break;
    case LMP_GGUF_I16: kv->v.i = (int16_t)rd16(p); break;
    case LMP_GGUF_U32: kv->v.u = rd32(p); break;
    case LMP_GGUF_I32: kv->v.i = (int32_t)rd32(p); break;
    case LMP_GGUF_U64: kv->v.u = rd64(p); break;
    case LMP_GGUF_I64: kv->v.i = (int64_t)rd64(p); break;
    case LMP_GGUF_F32: {
        float f;
        memcpy(&f, p, 4);
        kv->v.f = f;
        break;
    }
    case LMP_GGUF_F64: memcpy(&kv->v.f, p, 8); break;
    default: break;
    }
}

static lmp_status parse_value(reader *r, lmp_gguf_kv *kv) {
    uint32_t t = kv->type;
    if (t == LMP_GGUF_STRING) {
        char ctx[300];
        snprintf(ctx, sizeof ctx, "value of key '%s'", kv->key);
        return read_string(r, &kv->str, ctx);
    }
    if (t != LMP_GGUF_ARRAY) {
        size_t sz = vtype_size(t);
        if (left(r) < sz) return truncated(r, sz, lmp_gguf_vtype_name(t), "value of key '%s'", kv->key);
        read_scalar(kv, t, r->buf + r->pos);
        if (t == LMP_GGUF_BOOL && kv->v.u > 1)
            return lmp_err(r->err, LMP_E_FORMAT, "GGUF: key '%s': bool value %u is not 0 or 1", kv->key,
                           (unsigned)kv->v.u);
        r->pos += sz;
        return LMP_OK;
    }
    if (left(r) < 12) return truncated(r, 12, "array type and count", "value of key '%s'", kv->key);
    uint32_t et = rd32(r->buf + r->pos);
    uint64_t count = rd64(r->buf + r->pos + 4);
    if (et == LMP_GGUF_ARRAY)
        return lmp_err(r->err, LMP_E_UNSUPPORTED, "GGUF: key '%s': nested arrays are not supported", kv->key);
    if (et >= LMP_GGUF_VTYPE_COUNT)
        return lmp_err(r->err, LMP_E_FORMAT, "GGUF: key '%s': array of unknown value type %u", kv->key, et);
    r->pos += 12;
    kv->elem_type = (lmp_gguf_vtype)et;
    kv->count = count;
    uint64_t min_size = et == LMP_GGUF_STRING ? 8 : vtype_size(et);
    if (count > left(r) / min_size)
        return lmp_err(r->err, LMP_E_FORMAT,
                       "GGUF: key '%s': array count %llu is absurd (%s elements need at least %llu bytes each, %llu bytes left)",
                       kv->key, (unsigned long long)count, lmp_gguf_vtype_name(et),
                       (unsigned long long)min_size, (unsigned long long)left(r));
    if (et != LMP_GGUF_STRING) {
        kv->data = r->buf + r->pos;
        if (et == LMP_GGUF_BOOL) {
            for (uint64_t i = 0; i < count; i++)
                if (r->buf[r->pos + i] > 1)
                    return lmp_err(r->err, LMP_E_FORMAT, "GGUF: key '%s': bool element %llu is %u, not 0 or 1",
                                   kv->key, (unsigned long long)i, r->buf[r->pos + i]);
        }
        r->pos += count * min_size;
        return LMP_OK;
    }
    lmp_gguf_str *s = lmp_calloc(count ? (size_t)count : 1, sizeof *s);
    if (!s) return lmp_err(r->err, LMP_E_NOMEM, "GGUF: out of memory for %llu strings of key '%s'",
                           (unsigned long long)count, kv->key);
    kv->strs = s;
    char ctx[320];
    for (uint64_t i = 0; i < count; i++) {
        if (left(r) < 8)
            return truncated(r, 8, "string length", "key '%s' element %llu", kv->key, (unsigned long long)i);
        uint64_t len = rd64(r->buf + r->pos);
        if (len > left(r) - 8) {
            snprintf(ctx, sizeof ctx, "key '%s' element %llu", kv->key, (unsigned long long)i);
            return read_string(r, &s[i], ctx);  // reports the overlong length
        }
        s[i].p = (const char *)r->buf + r->pos + 8;
        s[i].len = len;
        r->pos += 8 + len;
    }
    return LMP_OK;
}

static lmp_status parse_kv(reader *r, uint64_t i, lmp_gguf_kv *kv) {
    char ctx[64];
    snprintf(ctx, sizeof ctx, "key %llu", (unsigned long long)i);
    lmp_gguf_str k;
    lmp_status st = read_string(r, &k, ctx);
    if (st) return st;
    if (k.len == 0) return lmp_err(r->err, LMP_E_FORMAT, "GGUF: key %llu is empty", (unsigned long long)i);
    if (k.len > LMP_GGUF_MAX_KEY_LEN)
        return lmp_err(r->err, LMP_E_FORMAT, "GGUF: key %llu is %llu bytes long (limit %d)", (unsigned long long)i,
                       (unsigned long long)k.len, LMP_GGUF_MAX_KEY_LEN);
    if (memchr(k.p, 0, (size_t)k.len))
        return lmp_err(r->err, LMP_E_FORMAT, "GGUF: key %llu contains a NUL byte", (unsigned long long)i);
    kv->key = dup_str(k);
    if (!kv->key) return lmp_err(r->err, LMP_E_NOMEM, "GGUF: out of memory");
    if (left(r) < 4) return truncated(r, 4, "value type", "key '%s'", kv->key);
    uint32_t t = rd32(r->buf + r->pos);
    if (t >= LMP_GGUF_VTYPE_COUNT)
        return lmp_err(r->err, LMP_E_FORMAT, "GGUF: key '%s' has unknown value type %u", kv->key, t);
    r->pos += 4;
    kv->type = (lmp_gguf_vtype)t;
    return parse_value(r, kv);
}

static const lmp_gguf *g_sort_ctx;  // qsort has no context argument; sorting happens under open only
static int cmp_kv_key(const void *a, const void *b) {
    return strcmp(g_sort_ctx->kv[*(const size_t *)a].key, g_sort_ctx->kv[*(const size_t *)b].key);
}
static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp(g_sort_ctx->t[*(const size_t *)a].name, g_sort_ctx->t[*(const size_t *)b].name);
}
static int cmp_tensor_offset(const void *a, const void *b) {
    uint64_t x = g_sort_ctx->t[*(const size_t *)a].offset, y = g_sort_ctx->t[*(const size_t *)b].offset;
    return x < y ? -1 : x > y;
}

// Why: duplicate keys make lookups ambiguous; sorting an index finds them in O(n log n) even for a
// hostile file announcing millions of entries.
static lmp_status check_duplicate_keys(lmp_gguf *g, lmp_error *err) {
    if (g->n_kv < 2) return LMP_OK;
    size_t *idx = lmp_malloc(g->n_kv * sizeof *idx);
    if (!idx) return lmp_err(err, LMP_E_NOMEM, "GGUF: out of memory");
    for (size_t i = 0; i < g->n_kv; i++) idx[i] = i;
    g_sort_ctx = g;
    qsort(idx, g->n_kv, sizeof *idx, cmp_kv_key);
    lmp_status st = LMP_OK;
    for (size_t i = 1; i < g->n_kv && !st; i++)
        if (strcmp(g->kv[idx[i - 1]].key, g->kv[idx[i]].key) == 0)
            st = lmp_err(err, LMP_E_FORMAT, "GGUF: duplicate key '%s'", g->kv[idx[i]].key);
    lmp_free(idx);
    return st;
}

static lmp_status read_alignment(lmp_gguf *g, lmp_error *err) {
    g->alignment = LMP_GGUF_DEFAULT_ALIGNMENT;
    const lmp_gguf_kv *kv = lmp_gguf_find_kv(g, "general.alignment");
    if (!kv) return LMP_OK;
    if (kv->type != LMP_GGUF_U32)
        return lmp_err(err, LMP_E_FORMAT, "GGUF: general.alignment has type %s, expected u32",
                       lmp_gguf_vtype_name(kv->type));
    uint64_t a = kv->v.u;
    if (a == 0 || (a & (a - 1)))
        return lmp_err(err, LMP_E_FORMAT, "GGUF: general.alignment %llu is not a power of two",
                       (unsigned long long)a);
    g->alignment = (uint32_t)a;
    return LMP_OK;
}

static lmp_status parse_tensor_info(reader *r, const lmp_gguf *g, uint64_t i, lmp_gguf_tensor *t) {
    char ctx[64];
    snprintf(ctx, sizeof ctx, "tensor info %llu", (unsigned long long)i);
    lmp_gguf_str nm;
    lmp_status st = read_string(r, &nm, ctx);
    if (st) return st;
    if (nm.len == 0) return lmp_err(r->err, LMP_E_FORMAT, "GGUF: tensor info %llu has an empty name", (unsigned long long)i);
    if (nm.len > LMP_GGUF_MAX_NAME_LEN)
        return lmp_err(r->err, LMP_E_FORMAT, "GGUF: tensor info %llu: name of %llu bytes is too long (limit %d)",
                       (unsigned long long)i, (unsigned long long)nm.len, LMP_GGUF_MAX_NAME_LEN);
    if (memchr(nm.p, 0, (size_t)nm.len))
        return lmp_err(r->err, LMP_E_FORMAT, "GGUF: tensor info %llu: name contains a NUL byte", (unsigned long long)i);
    t->name = dup_str(nm);
    if (!t->name) return lmp_err(r->err, LMP_E_NOMEM, "GGUF: out of memory");
    char detail[300];
    snprintf(detail, sizeof detail, "n_dims of '%s'", t->name);
    if (left(r) < 4) return truncated(r, 4, detail, "%s", ctx);
    uint32_t nd = rd32(r->buf + r->pos);
    if (nd < 1 || nd > LMP_GGUF_MAX_DIMS)
        return lmp_err(r->err, LMP_E_FORMAT, "GGUF: tensor '%s': n_dims %u is out of range (1..%d)", t->name, nd,
                       LMP_GGUF_MAX_DIMS);
    r->pos += 4;
    uint64_t need = 8ull * nd + 4 + 8;
    snprintf(detail, sizeof detail, "dims, type and offset of '%s'", t->name);
    if (left(r) < need) return truncated(r, need, detail, "%s", ctx);
    t->n_dims = (int)nd;
    for (int d = 0; d < LMP_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    uint64_t nrows = 1;
    for (uint32_t d = 0; d < nd; d++) {
        uint64_t v = rd64(r->buf + r->pos + 8ull * d);
        if (v == 0) return lmp_err(r->err, LMP_E_FORMAT, "GGUF: tensor '%s': dimension %u is 0", t->name, d);
        if (v > LMP_GGUF_MAX_DIM)
            return lmp_err(r->err, LMP_E_FORMAT, "GGUF: tensor '%s': dimension %u is %llu, which is absurd (limit 2^40)",
                           t->name, d, (unsigned long long)v);
        t->ne[d] = (int64_t)v;
        if (d > 0 && lmp_mul_overflow(nrows, v, &nrows))
            return lmp_err(r->err, LMP_E_FORMAT, "GGUF: tensor '%s': element count overflows 64 bits", t->name);
    }
    r->pos += 8ull * nd;
    t->type = rd32(r->buf + r->pos);
    t->offset = rd64(r->buf + r->pos + 4);
    r->pos += 12;
    int64_t bs;
    size_t ts;
    if (lmp_ggml_type_geometry(t->type, &bs, &ts) != 0)
        return lmp_err(r->err, LMP_E_FORMAT, "GGUF: tensor '%s' has unknown type %u", t->name, t->type);
    if (t->ne[0] % bs)
        return lmp_err(r->err, LMP_E_FORMAT, "GGUF: tensor '%s': row of %lld elements is not a multiple of the %s block size %lld",
                       t->name, (long long)t->ne[0], lmp_ggml_type_name(t->type), (long long)bs);
    uint64_t row_bytes = (uint64_t)(t->ne[0] / bs) * ts;  // ne[0] <= 2^40, ts < 2^10: no overflow
    if (lmp_mul_overflow(row_bytes, nrows, &t->nbytes))
        return lmp_err(r->err, LMP_E_FORMAT, "GGUF: tensor '%s': byte size overflows 64 bits", t->name);
    if (t->offset % g->alignment)
        return lmp_err(r->err, LMP_E_FORMAT, "GGUF: tensor '%s': offset %llu is not a multiple of the alignment %u",
                       t->name, (unsigned long long)t->offset, g->alignment);
    return LMP_OK;
}

// Checks names are unique, data lies inside the file and tensors do not overlap; sets data pointers.
static lmp_status check_tensors(lmp_gguf *g, lmp_error *err) {
    size_t n = g->n_tensors;
    if (n == 0) return LMP_OK;
    for (size_t i = 0; i < n; i++) {
        lmp_gguf_tensor *t = &g->t[i];
        uint64_t start, end;
        if (lmp_add_overflow(g->data_offset, t->offset, &start) || lmp_add_overflow(start, t->nbytes, &end) ||
            end > g->size)
            return lmp_err(err, LMP_E_FORMAT,
                           "GGUF: tensor '%s' (%llu bytes at data offset %llu) extends past the end of the file "
                           "(data section starts at %llu, file is %llu bytes)",
                           t->name, (unsigned long long)t->nbytes, (unsigned long long)t->offset,
                           (unsigned long long)g->data_offset, (unsigned long long)g->size);
        t->data = g->buf + start;
    }
    g->by_name = lmp_malloc(n * sizeof(size_t));
    size_t *idx = lmp_malloc(n * sizeof(size_t));
    if (!g->by_name || !idx) {
        lmp_free(idx);
        return lmp_err(err, LMP_E_NOMEM, "GGUF: out of memory");
    }
    for (size_t i = 0; i < n; i++) g->by_name[i] = idx[i] = i;
    g_sort_ctx = g;
    qsort(g->by_name, n, sizeof(size_t), cmp_tensor_name);
    qsort(idx, n, sizeof(size_t), cmp_tensor_offset);
    lmp_status st = LMP_OK;
    for (size_t i = 1; i < n && !st; i++) {
        if (strcmp(g->t[g->by_name[i - 1]].name, g->t[g->by_name[i]].name) == 0)
            st = lmp_err(err, LMP_E_FORMAT, "GGUF: duplicate tensor name '%s'", g->t[g->by_name[i]].name);
    }
    for (size_t i = 1; i < n && !st; i++) {
        const lmp_gguf_tensor *a = &g->t[idx[i - 1]], *b = &g->t[idx[i]];
        if (a->offset + a->nbytes > b->offset)  // both end inside the file: no overflow
            st = lmp_err(err, LMP_E_FORMAT, "GGUF: tensors '%s' (bytes %llu..%llu) and '%s' (from %llu) overlap",
                         a->name, (unsigned long long)a->offset, (unsigned long long)(a->offset + a->nbytes),
                         b->name, (unsigned long long)b->offset);
    }
    lmp_free(idx);
    return st;
}

static lmp_status parse(lmp_gguf *g, lmp_error *err) {
    reader r = {g->buf, g->size, 0, err};
    if (r.size < 4) return truncated(&r, 4, NULL, "magic");
    if (memcmp(r.buf, LMP_GGUF_MAGIC, 4) != 0)
        return lmp_err(err, LMP_E_FORMAT, "GGUF: bad magic (file starts with %02x %02x %02x %02x, expected \"GGUF\")",
                       r.buf[0], r.buf[1], r.buf[2], r.buf[3]);
    r.pos = 4;
    if (left(&r) < 4) return truncated(&r, 4, NULL, "version");
    g->version = rd32(r.buf + 4);
    r.pos = 8;
    if (g->version == 0x02000000u || g->version == 0x03000000u)
        return lmp_err(err, LMP_E_UNSUPPORTED, "GGUF: big-endian file (version field 0x%08x) is not supported",
                       g->version);
    if (g->version != 2 && g->version != 3)
        return lmp_err(err, LMP_E_UNSUPPORTED, "GGUF: version %u is not supported (2 or 3)", g->version);
    if (left(&r) < 16) return truncated(&r, 16, NULL, "n_tensors and n_kv");
    uint64_t n_tensors = rd64(r.buf + 8), n_kv = rd64(r.buf + 16);
    r.pos = 24;
    // Smallest encodings: a tensor info is >= 33 bytes (8 + 1 name, 4 n_dims, 8 dim, 4 type, 8 offset), a
    // key/value >= 14 (8 + 1 key, 4 type, 1 value).
    if (n_tensors > left(&r) / 33)
        return lmp_err(err, LMP_E_FORMAT, "GGUF: n_tensors %llu is absurd (file is %llu bytes)",
                       (unsigned long long)n_tensors, (unsigned long long)r.size);
    if (n_kv > left(&r) / 14)
        return lmp_err(err, LMP_E_FORMAT, "GGUF: n_kv %llu is absurd (file is %llu bytes)", (unsigned long long)n_kv,
                       (unsigned long long)r.size);
    g->kv = lmp_calloc(n_kv ? (size_t)n_kv : 1, sizeof *g->kv);
    if (!g->kv) return lmp_err(err, LMP_E_NOMEM, "GGUF: out of memory");
    lmp_status st;
    for (uint64_t i = 0; i < n_kv; i++) {
        g->n_kv = (size_t)i + 1;  // entry i is freed on failure
        if ((st = parse_kv(&r, i, &g->kv[i]))) return st;
    }
    g->n_kv = (size_t)n_kv;
    if ((st = check_duplicate_keys(g, err))) return st;
    if ((st = read_alignment(g, err))) return st;
    g->t = lmp_calloc(n_tensors ? (size_t)n_tensors : 1, sizeof *g->t);
    if (!g->t) return lmp_err(err, LMP_E_NOMEM, "GGUF: out of memory");
    for (uint64_t i = 0; i < n_tensors; i++) {
        g->n_tensors = (size_t)i + 1;
        if ((st = parse_tensor_info(&r, g, i, &g->t[i]))) return st;
    }
    g->n_tensors = (size_t)n_tensors;
    uint64_t a = g->alignment;
    if (lmp_add_overflow(r.pos, a - 1, &g->data_offset))
        return lmp_err(err, LMP_E_FORMAT, "GGUF: data offset overflows");
    g->data_offset &= ~(a - 1);
    if (n_tensors > 0 && g->data_offset > r.size)
        return lmp_err(err, LMP_E_FORMAT, "GGUF: truncated: data section starts at %llu, file is %llu bytes",
                       (unsigned long long)g->data_offset, (unsigned long long)r.size);
    return check_tensors(g, err);
}

void lmp_gguf_close(lmp_gguf *g) {
    if (!g) return;
    for (size_t i = 0; i < g->n_kv; i++) {
        lmp_free((void *)g->kv[i].key);
        lmp_free((void *)g->kv[i].strs);
    }
    lmp_free(g->kv);
    for (size_t i = 0; i < g->n_tensors; i++) lmp_free((void *)g->t[i].name);
    lmp_free(g->t);
    lmp_free(g->by_name);
    if (g->mapped) munmap((void *)g->buf, g->size);
    lmp_free(g);
}

lmp_status lmp_gguf_open_mem(const void *buf, size_t size, lmp_gguf **out, lmp_error *err) {
    if (!out) return lmp_err(err, LMP_E_ARG, "GGUF: NULL output handle");
    *out = NULL;
    if (!buf && size) return lmp_err(err, LMP_E_ARG, "GGUF: NULL buffer");
    lmp_gguf *g = lmp_calloc(1, sizeof *g);
    if (!g) return lmp_err(err, LMP_E_NOMEM, "GGUF: out of memory");
    g->buf = buf;
    g->size = size;
    lmp_status st = parse(g, err);
    if (st) {
        lmp_gguf_close(g);
        return st;
    }
    *out = g;
    return LMP_OK;
}

lmp_status lmp_gguf_open(const char *path, lmp_gguf **out, lmp_error *err) {
    if (!out || !path) return lmp_err(err, LMP_E_ARG, "GGUF: NULL path or output handle");
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return lmp_err(err, LMP_E_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return lmp_err(err, LMP_E_IO, "cannot stat '%s': %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return lmp_err(err, LMP_E_IO, "'%s' is not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    void *map = NULL;
    if (size > 0) {
        map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            int e = errno;
            close(fd);
            return lmp_err(err, LMP_E_IO, "cannot map '%s': %s", path, strerror(e));
        }
    }
    close(fd);
    static const uint8_t empty[1] = {0};
    lmp_status st = lmp_gguf_open_mem(map ? map : empty, size, out, err);
    if (st) {
        if (map) munmap(map, size);
        return lmp_err_prefix(err, st, "%s", path);
    }
    (*out)->mapped = map != NULL;
    return LMP_OK;
}

uint32_t lmp_gguf_version(const lmp_gguf *g) { return g ? g->version : 0; }
uint32_t lmp_gguf_alignment(const lmp_gguf *g) { return g ? g->alignment : 0; }
uint64_t lmp_gguf_data_offset(const lmp_gguf *g) { return g ? g->data_offset : 0; }
const void *lmp_gguf_bytes(const lmp_gguf *g, size_t *size) {
    if (size) *size = g ? g->size : 0;
    return g ? g->buf : NULL;
}
size_t lmp_gguf_n_kv(const lmp_gguf *g) { return g ? g->n_kv : 0; }
const lmp_gguf_kv *lmp_gguf_kv_at(const lmp_gguf *g, size_t i) { return g && i < g->n_kv ? &g->kv[i] : NULL; }
size_t lmp_gguf_n_tensors(const lmp_gguf *g) { return g ? g->n_tensors : 0; }
const lmp_gguf_tensor *lmp_gguf_tensor_at(const lmp_gguf *g, size_t i) {
    return g && i < g->n_tensors ? &g->t[i] : NULL;
}

const lmp_gguf_kv *lmp_gguf_find_kv(const lmp_gguf *g, const char *key) {
    if (!g || !key) return NULL;
    for (size_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key && strcmp(g->kv[i].key, key) == 0) return &g->kv[i];
    return NULL;
}

const lmp_gguf_tensor *lmp_gguf_find_tensor(const lmp_gguf *g, const char *name) {
    if (!g || !name || !g->by_name) return NULL;
    size_t lo = 0, hi = g->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(g->t[g->by_name[mid]].name, name);
        if (c == 0) return &g->t[g->by_name[mid]];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

// ---- typed getters ----

static lmp_status find_or_fail(const lmp_gguf *g, const char *key, const lmp_gguf_kv **kv, lmp_error *err) {
    *kv = lmp_gguf_find_kv(g, key);
    if (!*kv) return lmp_err(err, LMP_E_FORMAT, "GGUF: missing key '%s'", key);
    return LMP_OK;
}

static lmp_status wrong_type(const lmp_gguf_kv *kv, const char *want, lmp_error *err) {
    if (kv->type == LMP_GGUF_ARRAY)
        return lmp_err(err, LMP_E_FORMAT, "GGUF: key '%s' is an array of %s, expected %s", kv->key,
                       lmp_gguf_vtype_name(kv->elem_type), want);
    return lmp_err(err, LMP_E_FORMAT, "GGUF: key '%s' has type %s, expected %s", kv->key,
                   lmp_gguf_vtype_name(kv->type), want);
}

static int is_unsigned(uint32_t t) {
    return t == LMP_GGUF_U8 || t == LMP_GGUF_U16 || t == LMP_GGUF_U32 || t == LMP_GGUF_U64;
}
static int is_signed(uint32_t t) {
    return t == LMP_GGUF_I8 || t == LMP_GGUF_I16 || t == LMP_GGUF_I32 || t == LMP_GGUF_I64;
}

lmp_status lmp_gguf_get_u64(const lmp_gguf *g, const char *key, uint64_t *out, lmp_error *err) {
    const lmp_gguf_kv *kv;
    lmp_status st = find_or_fail(g, key, &kv, err);
    if (st) return st;
    if (is_unsigned(kv->type)) {
        *out = kv->v.u;
        return LMP_OK;
    }
    if (is_signed(kv->type)) {
        if (kv->v.i < 0)
            return lmp_err(err, LMP_E_FORMAT, "GGUF: key '%s' is negative (%lld)", key, (long long)kv->v.i);
        *out = (uint64_t)kv->v.i;
        return LMP_OK;
    }
    return wrong_type(kv, "an integer", err);
}

lmp_status lmp_gguf_get_u32(const lmp_gguf *g, const char *key, uint32_t *out, lmp_error *err) {
    uint64_t v;
    lmp_status st = lmp_gguf_get_u64(g, key, &v, err);
    if (st) return st;
    if (v > UINT32_MAX)
        return lmp_err(err, LMP_E_FORMAT, "GGUF: key '%s' = %llu does not fit in 32 bits", key, (unsigned long long)v);
    *out = (uint32_t)v;
    return LMP_OK;
}

lmp_status lmp_gguf_get_f64(const lmp_gguf *g, const char *key, double *out, lmp_error *err) {
    const lmp_gguf_kv *kv;
    lmp_status st = find_or_fail(g, key, &kv, err);
    if (st) return st;
    if (kv->type != LMP_GGUF_F32 && kv->type != LMP_GGUF_F64) return wrong_type(kv, "f32", err);
    *out = kv->v.f;
    return LMP_OK;
}

lmp_status lmp_gguf_get_bool(const lmp_gguf *g, const char *key, int *out, lmp_error *err) {
    const lmp_gguf_kv *kv;
    lmp_status st = find_or_fail(g, key, &kv, err);
    if (st) return st;
    if (kv->type != LMP_GGUF_BOOL) return wrong_type(kv, "bool", err);
    *out = (int)kv->v.u;
    return LMP_OK;
}

lmp_status lmp_gguf_get_str(const lmp_gguf *g, const char *key, lmp_gguf_str *out, lmp_error *err) {
    const lmp_gguf_kv *kv;
    lmp_status st = find_or_fail(g, key, &kv, err);
    if (st) return st;
    if (kv->type != LMP_GGUF_STRING) return wrong_type(kv, "string", err);
    *out = kv->str;
    return LMP_OK;
}

int lmp_gguf_arr_int(const lmp_gguf_kv *kv, uint64_t i, int64_t *out) {
    if (!kv || kv->type != LMP_GGUF_ARRAY || i >= kv->count || !kv->data) return -1;
    const uint8_t *p = (const uint8_t *)kv->data + i * vtype_size(kv->elem_type);
    switch (kv->elem_type) {
    case LMP_GGUF_U8: case LMP_GGUF_BOOL: *out = p[0]; return 0;
    case LMP_GGUF_I8: *out = (int8_t)p[0]; return 0;
    case LMP_GGUF_U16: *out = rd16(p); return 0;
    case LMP_GGUF_I16: *out = (int16_t)rd16(p); return 0;
    case LMP_GGUF_U32: *out = rd32(p); return 0;
    case LMP_GGUF_I32: *out = (int32_t)rd32(p); return 0;
    case LMP_GGUF_U64: {
        uint64_t v = rd64(p);
        *out = v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v;
        return 0;
    }
    case LMP_GGUF_I64: *out = (int64_t)rd64(p); return 0;
    default: return -1;
    }
}

int lmp_gguf_arr_float(const lmp_gguf_kv *kv, uint64_t i, double *out) {
    if (!kv || kv->type != LMP_GGUF_ARRAY || i >= kv->count || !kv->data) return -1;
    const uint8_t *p = (const uint8_t *)kv->data + i * vtype_size(kv->elem_type);
    if (kv->elem_type == LMP_GGUF_F32) {
        float f;
        memcpy(&f, p, 4);
        *out = f;
        return 0;
    }
    if (kv->elem_type == LMP_GGUF_F64) {
        memcpy(out, p, 8);
        return 0;
    }
    return -1;
}
