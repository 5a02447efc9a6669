// lmp_meta.c - the ordered key/value metadata store of model files (lmp_meta in lmp_format.h).
//
// Owns copies of everything. Lookups are linear while the map is small (files hold tens of keys);
// past INDEX_MIN entries an open-addressing hash index keeps them O(1), so that a hostile file with
// 2^20 keys is not quadratic to load. It does not serialise (lmp_file.c / lmp_write.c do).
#include <string.h>

#include "format/lmp_format.h"

#define INDEX_MIN 32

struct lmp_meta {
    lmp_kv *kv;
    size_t n, cap;
    size_t *index;     // (index_cap) slot -> kv position + 1, 0 = empty; NULL while n < INDEX_MIN
    size_t index_cap;  // power of two, > 2 * n when index is set
};

static uint64_t key_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;  // FNV-1a
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static void index_insert(size_t *index, size_t cap, const char *key, size_t pos) {
    size_t i = (size_t)key_hash(key) & (cap - 1);
    while (index[i]) i = (i + 1) & (cap - 1);
    index[i] = pos + 1;
}

// Rebuilds the index for entries [0, m->n) with room for at least want entries. LMP_E_NOMEM leaves
// the old index in place.
static lmp_status index_rebuild(lmp_meta *m, size_t want) {
    if (want < INDEX_MIN) {
        lmp_free(m->index);
        m->index = NULL;
        m->index_cap = 0;
        return LMP_OK;
    }
    size_t cap = 64;
    while (cap <= 2 * want) cap *= 2;
    size_t *index = lmp_calloc(cap, sizeof *index);
    if (!index) return LMP_E_NOMEM;
    for (size_t i = 0; i < m->n; i++) index_insert(index, cap, m->kv[i].key, i);
    lmp_free(m->index);
    m->index = index;
    m->index_cap = cap;
    return LMP_OK;
}

static size_t kv_elem_size(lmp_kv_type t) {
    switch (t) {
    case LMP_KV_U32: case LMP_KV_I32: case LMP_KV_F32: return 4;
    case LMP_KV_U64: case LMP_KV_I64: case LMP_KV_F64: return 8;
    case LMP_KV_BOOL: return 1;
    default: return 0;
    }
}

const char *lmp_kv_type_name(lmp_kv_type t) {
    static const char *names[] = {"u32", "i32", "u64", "i64", "f32", "f64", "bool", "string", "array"};
    return (unsigned)t < LMP_KV_TYPE_COUNT ? names[t] : "?";
}

static void kv_clear(lmp_kv *kv) {
    if (kv->type == LMP_KV_ARRAY && kv->elem_type == LMP_KV_STRING && kv->data) {
        char **s = kv->data;
        for (uint64_t i = 0; i < kv->count; i++) lmp_free(s[i]);
    }
    lmp_free(kv->data);
    lmp_free(kv->lens);
    lmp_free(kv->key);
    memset(kv, 0, sizeof *kv);
}

lmp_meta *lmp_meta_new(void) { return lmp_calloc(1, sizeof(lmp_meta)); }

void lmp_meta_free(lmp_meta *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n; i++) kv_clear(&m->kv[i]);
    lmp_free(m->kv);
    lmp_free(m->index);
    lmp_free(m);
}

size_t lmp_meta_count(const lmp_meta *m) { return m ? m->n : 0; }
const lmp_kv *lmp_meta_at(const lmp_meta *m, size_t i) { return m && i < m->n ? &m->kv[i] : NULL; }

static lmp_kv *find_mut(const lmp_meta *m, const char *key) {
    if (!m || !key) return NULL;
    if (m->index) {
        size_t i = (size_t)key_hash(key) & (m->index_cap - 1);
        for (; m->index[i]; i = (i + 1) & (m->index_cap - 1))
            if (strcmp(m->kv[m->index[i] - 1].key, key) == 0) return &m->kv[m->index[i] - 1];
        return NULL;
    }
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->kv[i].key, key) == 0) return &m->kv[i];
    return NULL;
}

const lmp_kv *lmp_meta_find(const lmp_meta *m, const char *key) { return find_mut(m, key); }

// Fills dst with a deep copy of the value part of src (not the key). Returns LMP_E_NOMEM on failure
// with dst left empty.
static lmp_status kv_copy_value(lmp_kv *dst, const lmp_kv *src) {
    dst->type = src->type;
    dst->elem_type = src->elem_type;
    dst->count = src->count;
    dst->v = src->v;
    dst->data = NULL;
    dst->lens = NULL;
    if (src->type == LMP_KV_STRING) {
        dst->data = lmp_malloc(src->count + 1);
        if (!dst->data) return LMP_E_NOMEM;
        memcpy(dst->data, src->data, src->count);
        ((char *)dst->data)[src->count] = 0;
    } else if (src->type == LMP_KV_ARRAY && src->elem_type == LMP_KV_STRING) {
        char **s = lmp_calloc(src->count ? src->count : 1, sizeof(char *));
        uint64_t *lens = lmp_calloc(src->count ? src->count : 1, sizeof(uint64_t));
        if (!s || !lens) {
            lmp_free(s);
            lmp_free(lens);
            return LMP_E_NOMEM;
        }
        char *const *from = src->data;
        for (uint64_t i = 0; i < src->count; i++) {
            size_t len = src->lens ? src->lens[i] : strlen(from[i]);
            s[i] = lmp_malloc(len + 1);
            if (!s[i]) {
                for (uint64_t j = 0; j < i; j++) lmp_free(s[j]);
                lmp_free(s);
                lmp_free(lens);
                return LMP_E_NOMEM;
            }
            memcpy(s[i], from[i], len);
            s[i][len] = 0;
            lens[i] = len;
        }
        dst->data = s;
        dst->lens = lens;
    } else if (src->type == LMP_KV_ARRAY) {
        size_t bytes = (size_t)src->count * kv_elem_size(src->elem_type);
        dst->data = lmp_malloc(bytes ? bytes : 1);
        if (!dst->data) return LMP_E_NOMEM;
        if (bytes) memcpy(dst->data, src->data, bytes);
    }
    return LMP_OK;
}

// Inserts or replaces key with a copy of val's value.
static lmp_status meta_put(lmp_meta *m, const char *key, const lmp_kv *val) {
    if (!m || !key || !*key || strlen(key) > LMP_MAX_NAME_LEN) return LMP_E_ARG;
    lmp_kv nv;
    memset(&nv, 0, sizeof nv);
    if (kv_copy_value(&nv, val) != LMP_OK) return LMP_E_NOMEM;
    lmp_kv *old = find_mut(m, key);
    if (old) {
        nv.key = old->key;
        old->key = NULL;
        kv_clear(old);
        *old = nv;
        return LMP_OK;
    }
    nv.key = lmp_strdup(key);
    if (!nv.key) {
        kv_clear(&nv);
        return LMP_E_NOMEM;
    }
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        lmp_kv *kv = lmp_realloc(m->kv, cap * sizeof *kv);
        if (!kv) {
            kv_clear(&nv);
            return LMP_E_NOMEM;
        }
        m->kv = kv;
        m->cap = cap;
    }
    if (m->n + 1 >= INDEX_MIN && 2 * (m->n + 1) >= m->index_cap &&
        index_rebuild(m, m->cap > m->n + 1 ? m->cap : m->n + 1) != LMP_OK) {
        kv_clear(&nv);
        return LMP_E_NOMEM;
    }
    m->kv[m->n++] = nv;
    if (m->index) index_insert(m->index, m->index_cap, nv.key, m->n - 1);
    return LMP_OK;
}

lmp_status lmp_meta_set_kv(lmp_meta *m, const char *key, const lmp_kv *kv) {
    if (!kv || (unsigned)kv->type >= LMP_KV_TYPE_COUNT) return LMP_E_ARG;
    if (kv->type == LMP_KV_ARRAY && (unsigned)kv->elem_type >= LMP_KV_ARRAY) return LMP_E_ARG;
    return meta_put(m, key, kv);
}

lmp_meta *lmp_meta_clone(const lmp_meta *m) {
    lmp_meta *c = lmp_meta_new();
    if (!c || !m) return c;
    for (size_t i = 0; i < m->n; i++) {
        if (meta_put(c, m->kv[i].key, &m->kv[i]) != LMP_OK) {
            lmp_meta_free(c);
            return NULL;
        }
    }
    return c;
}

#define DEFINE_SETTER(suffix, ctype, kvtype, field)                              \
    lmp_status lmp_meta_set_##suffix(lmp_meta *m, const char *key, ctype v) {   \
        lmp_kv kv;                                                               \
        memset(&kv, 0, sizeof kv);                                               \
        kv.type = kvtype;                                                        \
        kv.v.field = v;                                                          \
        return meta_put(m, key, &kv);                                            \
    }
DEFINE_SETTER(u32, uint32_t, LMP_KV_U32, u32)
DEFINE_SETTER(i32, int32_t, LMP_KV_I32, i32)
DEFINE_SETTER(u64, uint64_t, LMP_KV_U64, u64)
DEFINE_SETTER(i64, int64_t, LMP_KV_I64, i64)
DEFINE_SETTER(f32, float, LMP_KV_F32, f32)
DEFINE_SETTER(f64, double, LMP_KV_F64, f64)
#undef DEFINE_SETTER

lmp_status lmp_meta_set_bool(lmp_meta *m, const char *key, int v) {
    lmp_kv kv;
    memset(&kv, 0, sizeof kv);
    kv.type = LMP_KV_BOOL;
    kv.v.b = v ? 1 : 0;
    return meta_put(m, key, &kv);
}

lmp_status lmp_meta_set_str(lmp_meta *m, const char *key, const char *v) {
    if (!v) return LMP_E_ARG;
    lmp_kv kv;
    memset(&kv, 0, sizeof kv);
    kv.type = LMP_KV_STRING;
    kv.count = strlen(v);
    kv.data = (void *)v;
    return meta_put(m, key, &kv);
}

lmp_status lmp_meta_set_arr(lmp_meta *m, const char *key, lmp_kv_type elem_type, const void *data,
                            uint64_t count) {
    if ((unsigned)elem_type >= LMP_KV_ARRAY || (count && !data)) return LMP_E_ARG;
    lmp_kv kv;
    memset(&kv, 0, sizeof kv);
    kv.type = LMP_KV_ARRAY;
    kv.elem_type = elem_type;
    kv.count = count;
    kv.data = (void *)data;
    return meta_put(m, key, &kv);
}

lmp_status lmp_meta_append_str(lmp_meta *m, const char *key, const char *v) {
    if (!m || !v) return LMP_E_ARG;
    lmp_kv *kv = find_mut(m, key);
    if (!kv) {
        const char *one[1] = {v};
        return lmp_meta_set_arr(m, key, LMP_KV_STRING, one, 1);
    }
    if (kv->type != LMP_KV_ARRAY || kv->elem_type != LMP_KV_STRING) return LMP_E_ARG;
    char *copy = lmp_strdup(v);
    char **s = lmp_realloc(kv->data, (size_t)(kv->count + 1) * sizeof(char *));
    if (!copy || !s) {
        lmp_free(copy);
        if (s) kv->data = s;
        return LMP_E_NOMEM;
    }
    kv->data = s;
    uint64_t *lens = lmp_realloc(kv->lens, (size_t)(kv->count + 1) * sizeof(uint64_t));
    if (!lens) {
        lmp_free(copy);
        return LMP_E_NOMEM;
    }
    kv->lens = lens;
    s[kv->count] = copy;
    lens[kv->count] = strlen(copy);
    kv->count++;
    return LMP_OK;
}

void lmp_meta_remove(lmp_meta *m, const char *key) {
    lmp_kv *kv = find_mut(m, key);
    if (!kv) return;
    size_t i = (size_t)(kv - m->kv);
    kv_clear(kv);
    memmove(&m->kv[i], &m->kv[i + 1], (m->n - i - 1) * sizeof *kv);
    m->n--;
    // Positions after i moved: rebuild in place (same capacity, so this cannot fail) or drop the index.
    if (m->index && m->n >= INDEX_MIN) {
        memset(m->index, 0, m->index_cap * sizeof *m->index);
        for (size_t j = 0; j < m->n; j++) index_insert(m->index, m->index_cap, m->kv[j].key, j);
    } else {
        index_rebuild(m, 0);
    }
}

// ---- getters ----

static lmp_status get_kv(const lmp_meta *m, const char *key, const lmp_kv **out, lmp_error *err) {
    *out = lmp_meta_find(m, key);
    if (!*out) return lmp_err(err, LMP_E_FORMAT, "missing metadata key '%s'", key);
    return LMP_OK;
}

static lmp_status wrong_type(lmp_error *err, const lmp_kv *kv, const char *want) {
    return lmp_err(err, LMP_E_FORMAT, "metadata key '%s' has type %s, expected %s", kv->key,
                   lmp_kv_type_name(kv->type), want);
}

// Why: writers differ in the integer width they use (GGUF files mix u32/i32/u64), so integer getters
// accept any integer type whose value fits.
static lmp_status get_integer(const lmp_kv *kv, int *is_neg, uint64_t *mag) {
    *is_neg = 0;
    switch (kv->type) {
    case LMP_KV_U32: *mag = kv->v.u32; return LMP_OK;
    case LMP_KV_U64: *mag = kv->v.u64; return LMP_OK;
    case LMP_KV_I32:
        *is_neg = kv->v.i32 < 0;
        *mag = *is_neg ? (uint64_t)(-(int64_t)kv->v.i32) : (uint64_t)kv->v.i32;
        return LMP_OK;
    case LMP_KV_I64:
        *is_neg = kv->v.i64 < 0;
        *mag = *is_neg ? (uint64_t)0 - (uint64_t)kv->v.i64 : (uint64_t)kv->v.i64;
        return LMP_OK;
    default: return LMP_E_FORMAT;
    }
}

lmp_status lmp_meta_get_u64(const lmp_meta *m, const char *key, uint64_t *out, lmp_error *err) {
    const lmp_kv *kv;
    lmp_status st = get_kv(m, key, &kv, err);
    if (st) return st;
    int neg;
    uint64_t mag;
    if (get_integer(kv, &neg, &mag) != LMP_OK) return wrong_type(err, kv, "an integer");
    if (neg) return lmp_err(err, LMP_E_FORMAT, "metadata key '%s' is negative", key);
    *out = mag;
    return LMP_OK;
}

lmp_status lmp_meta_get_u32(const lmp_meta *m, const char *key, uint32_t *out, lmp_error *err) {
    uint64_t v;
    lmp_status st = lmp_meta_get_u64(m, key, &v, err);
    if (st) return st;
    if (v > UINT32_MAX)
        return lmp_err(err, LMP_E_FORMAT, "metadata key '%s' = %llu does not fit in 32 bits", key,
                       (unsigned long long)v);
    *out = (uint32_t)v;
    return LMP_OK;
}

lmp_status lmp_meta_get_i64(const lmp_meta *m, const char *key, int64_t *out, lmp_error *err) {
    const lmp_kv *kv;
    lmp_status st = get_kv(m, key, &kv, err);
    if (st) return st;
    int neg;
    uint64_t mag;
    if (get_integer(kv, &neg, &mag) != LMP_OK) return wrong_type(err, kv, "an integer");
    if ((!neg && mag > (uint64_t)INT64_MAX) || (neg && mag > (uint64_t)INT64_MAX + 1))
        return lmp_err(err, LMP_E_FORMAT, "metadata key '%s' does not fit in 64 signed bits", key);
    *out = neg ? (int64_t)(0 - mag) : (int64_t)mag;
    return LMP_OK;
}

lmp_status lmp_meta_get_f32(const lmp_meta *m, const char *key, float *out, lmp_error *err) {
    const lmp_kv *kv;
    lmp_status st = get_kv(m, key, &kv, err);
    if (st) return st;
    if (kv->type == LMP_KV_F32) *out = kv->v.f32;
    else if (kv->type == LMP_KV_F64) *out = (float)kv->v.f64;
    else return wrong_type(err, kv, "f32");
    return LMP_OK;
}

lmp_status lmp_meta_get_bool(const lmp_meta *m, const char *key, int *out, lmp_error *err) {
    const lmp_kv *kv;
    lmp_status st = get_kv(m, key, &kv, err);
    if (st) return st;
    if (kv->type != LMP_KV_BOOL) return wrong_type(err, kv, "bool");
    *out = kv->v.b;
    return LMP_OK;
}

lmp_status lmp_meta_get_str(const lmp_meta *m, const char *key, const char **out, lmp_error *err) {
    const lmp_kv *kv;
    lmp_status st = get_kv(m, key, &kv, err);
    if (st) return st;
    if (kv->type != LMP_KV_STRING) return wrong_type(err, kv, "string");
    *out = kv->data;
    return LMP_OK;
}

lmp_status lmp_meta_get_arr(const lmp_meta *m, const char *key, lmp_kv_type elem_type,
                            const void **data, uint64_t *count, lmp_error *err) {
    const lmp_kv *kv;
    lmp_status st = get_kv(m, key, &kv, err);
    if (st) return st;
    if (kv->type != LMP_KV_ARRAY || kv->elem_type != elem_type) {
        if (kv->type == LMP_KV_ARRAY)
            return lmp_err(err, LMP_E_FORMAT, "metadata key '%s' is an array of %s, expected %s", key,
                           lmp_kv_type_name(kv->elem_type), lmp_kv_type_name(elem_type));
        return wrong_type(err, kv, "array");
    }
    *data = kv->data;
    *count = kv->count;
    return LMP_OK;
}

lmp_status lmp_meta_keep(lmp_status *first, lmp_status st, const char *key, lmp_error *err) {
    if (*first == LMP_OK && st != LMP_OK)
        *first = lmp_err(err, st, "cannot set metadata '%s': %s", key, st == LMP_E_NOMEM ? "out of memory" : lmp_status_name(st));
    return *first;
}
