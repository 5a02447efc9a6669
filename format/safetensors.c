// safetensors.c - strict .safetensors reader (safetensors.h).
//
// Maps the file, parses the JSON header with format/json.c and validates every entry before any
// tensor byte is exposed. It deliberately does not write safetensors, convert dtypes, or accept the
// dtypes newer than the list in safetensors.h (F4/F6/E8M0...: refused as unknown).
#include "format/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct lmp_safetensors {
    const unsigned char *base;  // (size) file bytes
    size_t size;
    int mapped;                 // base is our mmap
    lmp_json *header;           // parsed header
    const lmp_json *metadata;   // into header, or NULL
    lmp_st_tensor *tensors;     // (n) in header order
    size_t n;
};

static const struct {
    const char *name;
    size_t size;
} st_dtypes[LMP_ST_DTYPE_COUNT] = {
    [LMP_ST_BOOL] = {"BOOL", 1},     [LMP_ST_U8] = {"U8", 1},     [LMP_ST_I8] = {"I8", 1},
    [LMP_ST_F8_E5M2] = {"F8_E5M2", 1}, [LMP_ST_F8_E4M3] = {"F8_E4M3", 1}, [LMP_ST_I16] = {"I16", 2},
    [LMP_ST_U16] = {"U16", 2},       [LMP_ST_F16] = {"F16", 2},   [LMP_ST_BF16] = {"BF16", 2},
    [LMP_ST_I32] = {"I32", 4},       [LMP_ST_U32] = {"U32", 4},   [LMP_ST_F32] = {"F32", 4},
    [LMP_ST_F64] = {"F64", 8},       [LMP_ST_I64] = {"I64", 8},   [LMP_ST_U64] = {"U64", 8},
};

const char *lmp_st_dtype_name(lmp_st_dtype t) {
    return (unsigned)t < LMP_ST_DTYPE_COUNT ? st_dtypes[t].name : "?";
}
size_t lmp_st_dtype_size(lmp_st_dtype t) { return (unsigned)t < LMP_ST_DTYPE_COUNT ? st_dtypes[t].size : 0; }

void lmp_safetensors_close(lmp_safetensors *st) {
    if (!st) return;
    if (st->mapped && st->base) munmap((void *)st->base, st->size);
    lmp_json_free(st->header);
    lmp_free(st->tensors);
    lmp_free(st);
}

size_t lmp_safetensors_n_tensors(const lmp_safetensors *st) { return st ? st->n : 0; }
const lmp_st_tensor *lmp_safetensors_tensor(const lmp_safetensors *st, size_t i) {
    return st && i < st->n ? &st->tensors[i] : NULL;
}
const lmp_st_tensor *lmp_safetensors_find(const lmp_safetensors *st, const char *name) {
    if (!st || !name) return NULL;
    for (size_t i = 0; i < st->n; i++)
        if (strcmp(st->tensors[i].name, name) == 0) return &st->tensors[i];
    return NULL;
}
const lmp_json *lmp_safetensors_metadata(const lmp_safetensors *st) { return st ? st->metadata : NULL; }
const void *lmp_safetensors_bytes(const lmp_safetensors *st, size_t *size) {
    if (size) *size = st ? st->size : 0;
    return st ? st->base : NULL;
}

// Reads a JSON array of non-negative integers into v (at most max); returns its length or -1.
static int read_uint_array(const lmp_json *a, uint64_t *v, int max) {
    if (!a || a->type != LMP_JSON_ARRAY || a->n > (size_t)max) return -1;
    for (size_t i = 0; i < a->n; i++) {
        const lmp_json *e = &a->items[i];
        if (e->type != LMP_JSON_NUMBER || !e->is_int || e->i < 0) return -1;
        v[i] = (uint64_t)e->i;
    }
    return (int)a->n;
}

// Parses and checks one header entry (everything but the tiling, which needs all entries).
static lmp_status parse_entry(const char *who, const char *name, const lmp_json *e, uint64_t buf_size,
                              lmp_st_tensor *t, lmp_error *err) {
    t->name = name;
    if (e->type != LMP_JSON_OBJECT)
        return lmp_err(err, LMP_E_FORMAT, "%s: tensor '%s': header entry is a %s, expected an object", who, name,
                       lmp_json_type_name(e->type));
    for (size_t i = 0; i < e->n; i++) {
        const char *k = e->keys[i];
        if (strcmp(k, "dtype") && strcmp(k, "shape") && strcmp(k, "data_offsets"))
            return lmp_err(err, LMP_E_FORMAT, "%s: tensor '%s': unexpected field '%.100s'", who, name, k);
    }
    const lmp_json *dt = lmp_json_get(e, "dtype");
    const lmp_json *sh = lmp_json_get(e, "shape");
    const lmp_json *off = lmp_json_get(e, "data_offsets");
    if (!dt || !sh || !off)
        return lmp_err(err, LMP_E_FORMAT, "%s: tensor '%s': missing field '%s'", who, name,
                       !dt ? "dtype" : !sh ? "shape" : "data_offsets");
    if (dt->type != LMP_JSON_STRING)
        return lmp_err(err, LMP_E_FORMAT, "%s: tensor '%s': dtype is a %s, expected a string", who, name,
                       lmp_json_type_name(dt->type));
    int found = -1;
    for (int d = 0; d < LMP_ST_DTYPE_COUNT; d++)
        if (strcmp(dt->str, st_dtypes[d].name) == 0) found = d;
    if (found < 0)
        return lmp_err(err, LMP_E_UNSUPPORTED, "%s: tensor '%s': unknown dtype '%.40s'", who, name, dt->str);
    t->dtype = (lmp_st_dtype)found;
    uint64_t dims[LMP_ST_MAX_DIMS];
    int nd = read_uint_array(sh, dims, LMP_ST_MAX_DIMS);
    if (nd < 0)
        return lmp_err(err, LMP_E_FORMAT,
                       "%s: tensor '%s': shape must be an array of at most %d non-negative integers", who, name,
                       LMP_ST_MAX_DIMS);
    t->ndim = nd;
    uint64_t count = 1;
    for (int d = 0; d < nd; d++) {
        if (dims[d] > (uint64_t)INT64_MAX || lmp_mul_overflow(count, dims[d], &count))
            return lmp_err(err, LMP_E_FORMAT, "%s: tensor '%s': element count overflows 64 bits", who, name);
        t->shape[d] = (int64_t)dims[d];
    }
    uint64_t o[2];
    if (read_uint_array(off, o, 2) != 2)
        return lmp_err(err, LMP_E_FORMAT, "%s: tensor '%s': data_offsets must be [begin, end] (non-negative integers)",
                       who, name);
    t->begin = o[0];
    t->end = o[1];
    if (o[1] < o[0])
        return lmp_err(err, LMP_E_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] end before begin", who, name,
                       (unsigned long long)o[0], (unsigned long long)o[1]);
    if (o[1] > buf_size)
        return lmp_err(err, LMP_E_FORMAT,
                       "%s: tensor '%s': data_offsets [%llu, %llu] past the end of the data (%llu bytes)", who, name,
                       (unsigned long long)o[0], (unsigned long long)o[1], (unsigned long long)buf_size);
    uint64_t bytes;
    if (lmp_mul_overflow(count, st_dtypes[found].size, &bytes))
        return lmp_err(err, LMP_E_FORMAT, "%s: tensor '%s': byte size overflows 64 bits", who, name);
    if (bytes != o[1] - o[0])
        return lmp_err(err, LMP_E_FORMAT,
                       "%s: tensor '%s': data_offsets span %llu bytes but %s x %llu elements need %llu", who, name,
                       (unsigned long long)(o[1] - o[0]), st_dtypes[found].name, (unsigned long long)count,
                       (unsigned long long)bytes);
    return LMP_OK;
}

static int by_offset(const void *a, const void *b) {
    const lmp_st_tensor *x = *(const lmp_st_tensor *const *)a, *y = *(const lmp_st_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

// Why tiling: the reference implementation refuses holes and overlaps, so a file that passes here
// loads everywhere, and two names can never alias the same bytes.
static lmp_status check_tiling(const char *who, lmp_safetensors *st, uint64_t buf_size, lmp_error *err) {
    if (st->n == 0) {
        if (buf_size != 0)
            return lmp_err(err, LMP_E_FORMAT, "%s: %llu bytes of data after the header but no tensors", who,
                           (unsigned long long)buf_size);
        return LMP_OK;
    }
    lmp_st_tensor **order = lmp_malloc(st->n * sizeof *order);
    if (!order) return lmp_err(err, LMP_E_NOMEM, "%s: out of memory sorting %zu tensors", who, st->n);
    for (size_t i = 0; i < st->n; i++) order[i] = &st->tensors[i];
    qsort(order, st->n, sizeof *order, by_offset);
    lmp_status rc = LMP_OK;
    uint64_t pos = 0;
    const lmp_st_tensor *prev = NULL;
    for (size_t i = 0; i < st->n; i++) {
        const lmp_st_tensor *t = order[i];
        if (t->begin < pos) {
            rc = lmp_err(err, LMP_E_FORMAT, "%s: tensor '%s' [%llu, %llu) overlaps tensor '%s' [%llu, %llu)", who,
                         t->name, (unsigned long long)t->begin, (unsigned long long)t->end, prev->name,
                         (unsigned long long)prev->begin, (unsigned long long)prev->end);
            break;
        }
        if (t->begin > pos) {
            rc = lmp_err(err, LMP_E_FORMAT, "%s: gap of %llu bytes before tensor '%s' at data offset %llu", who,
                         (unsigned long long)(t->begin - pos), t->name, (unsigned long long)t->begin);
            break;
        }
        pos = t->end;
        prev = t;
    }
    if (rc == LMP_OK && pos != buf_size)
        rc = lmp_err(err, LMP_E_FORMAT, "%s: %llu bytes of data after the last tensor (data ends at %llu, file has %llu)",
                     who, (unsigned long long)(buf_size - pos), (unsigned long long)pos,
                     (unsigned long long)buf_size);
    lmp_free(order);
    return rc;
}

static lmp_status st_parse(lmp_safetensors *st, const char *who, lmp_error *err) {
    if (st->size < 8)
        return lmp_err(err, LMP_E_FORMAT, "%s: truncated: file is %zu bytes, the header length needs 8", who, st->size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | st->base[i];
    if (hlen > LMP_ST_MAX_HEADER)
        return lmp_err(err, LMP_E_FORMAT, "%s: header length %llu exceeds the limit of %llu bytes", who,
                       (unsigned long long)hlen, (unsigned long long)LMP_ST_MAX_HEADER);
    if (hlen > st->size - 8)
        return lmp_err(err, LMP_E_FORMAT, "%s: truncated: header length %llu runs past the end of the file (%zu bytes)",
                       who, (unsigned long long)hlen, st->size);
    if (hlen < 2 || st->base[8] != '{')
        return lmp_err(err, LMP_E_FORMAT, "%s: header does not start with '{' (not a safetensors file?)", who);
    lmp_error jerr;
    lmp_status rc = lmp_json_parse((const char *)st->base + 8, (size_t)hlen, NULL, &st->header, &jerr);
    if (rc != LMP_OK) return lmp_err(err, rc, "%s: header JSON: %s", who, jerr.msg);
    const lmp_json *h = st->header;
    if (h->type != LMP_JSON_OBJECT)
        return lmp_err(err, LMP_E_FORMAT, "%s: header is a JSON %s, expected an object", who, lmp_json_type_name(h->type));
    uint64_t buf_size = st->size - 8 - hlen;
    st->tensors = lmp_calloc(h->n ? h->n : 1, sizeof *st->tensors);
    if (!st->tensors) return lmp_err(err, LMP_E_NOMEM, "%s: out of memory for %zu header entries", who, h->n);
    for (size_t i = 0; i < h->n; i++) {
        const char *name = h->keys[i];
        const lmp_json *e = &h->items[i];
        if (strcmp(name, "__metadata__") == 0) {
            if (e->type != LMP_JSON_OBJECT)
                return lmp_err(err, LMP_E_FORMAT, "%s: __metadata__ is a %s, expected an object", who,
                               lmp_json_type_name(e->type));
            for (size_t k = 0; k < e->n; k++)
                if (e->items[k].type != LMP_JSON_STRING)
                    return lmp_err(err, LMP_E_FORMAT, "%s: __metadata__ value '%.100s' is a %s, expected a string", who,
                                   e->keys[k], lmp_json_type_name(e->items[k].type));
            st->metadata = e;
            continue;
        }
        if (h->key_lens[i] == 0 || strlen(name) != h->key_lens[i])
            return lmp_err(err, LMP_E_FORMAT, "%s: empty tensor name or NUL byte in a tensor name", who);
        lmp_st_tensor *t = &st->tensors[st->n];
        if ((rc = parse_entry(who, name, e, buf_size, t, err)) != LMP_OK) return rc;
        t->data = st->base + 8 + hlen + t->begin;
        st->n++;
    }
    return check_tiling(who, st, buf_size, err);
}

lmp_status lmp_safetensors_open_mem(const void *buf, size_t size, lmp_safetensors **out, lmp_error *err) {
    if (!out) return lmp_err(err, LMP_E_ARG, "safetensors: no output pointer");
    *out = NULL;
    if (!buf && size) return lmp_err(err, LMP_E_ARG, "safetensors: NULL buffer");
    lmp_safetensors *st = lmp_calloc(1, sizeof *st);
    if (!st) return lmp_err(err, LMP_E_NOMEM, "safetensors: out of memory");
    st->base = buf;
    st->size = size;
    lmp_status rc = st_parse(st, "safetensors", err);
    if (rc != LMP_OK) {
        lmp_safetensors_close(st);
        return rc;
    }
    *out = st;
    return LMP_OK;
}

lmp_status lmp_safetensors_open(const char *path, lmp_safetensors **out, lmp_error *err) {
    if (!out || !path) return lmp_err(err, LMP_E_ARG, "safetensors: NULL path or output");
    *out = NULL;
    const char *who = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return lmp_err(err, LMP_E_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return lmp_err(err, LMP_E_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return lmp_err(err, LMP_E_IO, "%s: not a regular file", path);
    }
    lmp_safetensors *st = lmp_calloc(1, sizeof *st);
    if (!st) {
        close(fd);
        return lmp_err(err, LMP_E_NOMEM, "%s: out of memory", who);
    }
    st->size = (size_t)sb.st_size;
    if (st->size > 0) {
        void *m = mmap(NULL, st->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            close(fd);
            lmp_free(st);
            return lmp_err(err, LMP_E_IO, "%s: cannot map %zu bytes: %s", path, (size_t)sb.st_size, strerror(e));
        }
        st->base = m;
        st->mapped = 1;
    }
    close(fd);
    lmp_status rc = st_parse(st, who, err);
    if (rc != LMP_OK) {
        lmp_safetensors_close(st);
        return rc;
    }
    *out = st;
    return LMP_OK;
}
