// lmp_file.c - the strict .lmp reader (lmp_file_open, lmp_file_open_mem) and the tensor size helpers.
//
// Implements docs/format.md "What a reader checks": every count, size and offset is checked against the
// file size (overflow-checked, 64-bit) before it is used, and the first failure is reported with a
// message naming the structure, the offset and the values involved. Files are mapped read-only
// (MAP_PRIVATE) and tensors point into the mapping.
//
// It does not interpret metadata (runtime/model.c does), does not write (lmp_write.c) and assumes a
// little-endian host (every supported target is).
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format/lmp_format.h"
#include "format/qtypes.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "lmp_file.c reads little-endian values with memcpy: big-endian hosts are not supported"
#endif

#define MAX_COUNT (1ull << 20)        // n_kv and n_tensors limit (docs/format.md)
#define MIN_KV_BYTES 10u              // u32 key_len, 1-byte key, u32 type, 1-byte bool
#define MIN_TENSOR_BYTES 41u          // u32 len, 1-byte name, u32 dtype, u32 ndim, 1 dim, offset, nbytes, crc

struct lmp_file {
    char *path;                // lmp_malloc'd; "" for memory files
    const uint8_t *base;       // (size) the whole file
    uint64_t size;
    void *map;                 // mmap'd region (size bytes) or NULL
    void *owned_buf;           // open_mem buffer freed on close, or NULL
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset;
    uint64_t data_size;
    uint32_t checksum;         // CRC32 of [0, data_offset)
    lmp_meta *meta;
    lmp_tensor *tensors;       // (n_tensors) in directory order; names lmp_malloc'd
    size_t n_tensors;
    lmp_tensor **by_name;      // (n_tensors) sorted by name, for lmp_file_find
};

// ---- tensor helpers ----

int64_t lmp_tensor_nelements(const lmp_tensor *t) {
    if (!t || t->ndim < 1 || t->ndim > LMP_MAX_DIMS) return 0;
    uint64_t n = 1;
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] < 0 || lmp_mul_overflow(n, (uint64_t)t->shape[i], &n) || n > (uint64_t)INT64_MAX)
            return -1;
    }
    return (int64_t)n;
}

int64_t lmp_tensor_nrows(const lmp_tensor *t) {
    if (!t || t->ndim < 1 || t->ndim > LMP_MAX_DIMS) return 0;
    uint64_t n = 1;
    for (int i = 0; i + 1 < t->ndim; i++) {
        if (t->shape[i] < 0 || lmp_mul_overflow(n, (uint64_t)t->shape[i], &n) || n > (uint64_t)INT64_MAX)
            return -1;
    }
    return (int64_t)n;
}

uint64_t lmp_tensor_expected_bytes(lmp_dtype type, int ndim, const int64_t *shape) {
    const lmp_type_traits *tt = lmp_type_get(type);
    if (!tt || tt->block_size < 1 || !shape || ndim < 1 || ndim > LMP_MAX_DIMS) return 0;
    uint64_t rows = 1, bytes;
    for (int i = 0; i + 1 < ndim; i++)
        if (shape[i] < 1 || lmp_mul_overflow(rows, (uint64_t)shape[i], &rows)) return 0;
    int64_t last = shape[ndim - 1];
    if (last < 1 || last % tt->block_size != 0) return 0;
    uint64_t row_bytes;
    if (lmp_mul_overflow((uint64_t)(last / tt->block_size), tt->type_size, &row_bytes)) return 0;
    if (lmp_mul_overflow(rows, row_bytes, &bytes)) return 0;
    return bytes;
}

// ---- bounds-checked cursor over the file ----

typedef struct reader {
    const uint8_t *base;
    uint64_t size;
    uint64_t pos;
    lmp_error *err;
} reader;

// Why: every read names what it was reading, but the message is only formatted on failure.
static lmp_status vtruncated(reader *r, uint64_t n, const char *fmt, va_list ap) {
    char what[256];
    vsnprintf(what, sizeof what, fmt, ap);
    return lmp_err(r->err, LMP_E_FORMAT, "truncated: %s at offset %llu needs %llu bytes, file has %llu",
                   what, (unsigned long long)r->pos, (unsigned long long)n, (unsigned long long)r->size);
}

static int fits(const reader *r, uint64_t n) { return r->pos <= r->size && n <= r->size - r->pos; }

__attribute__((format(printf, 4, 5))) static lmp_status rd_bytes(reader *r, uint64_t n, const uint8_t **p,
                                                                  const char *fmt, ...) {
    if (!fits(r, n)) {
        va_list ap;
        va_start(ap, fmt);
        lmp_status st = vtruncated(r, n, fmt, ap);
        va_end(ap);
        return st;
    }
    *p = r->base + r->pos;
    r->pos += n;
    return LMP_OK;
}

__attribute__((format(printf, 3, 4))) static lmp_status rd_u32(reader *r, uint32_t *v, const char *fmt, ...) {
    if (!fits(r, 4)) {
        va_list ap;
        va_start(ap, fmt);
        lmp_status st = vtruncated(r, 4, fmt, ap);
        va_end(ap);
        return st;
    }
    memcpy(v, r->base + r->pos, 4);
    r->pos += 4;
    return LMP_OK;
}

__attribute__((format(printf, 3, 4))) static lmp_status rd_u64(reader *r, uint64_t *v, const char *fmt, ...) {
    if (!fits(r, 8)) {
        va_list ap;
        va_start(ap, fmt);
        lmp_status st = vtruncated(r, 8, fmt, ap);
        va_end(ap);
        return st;
    }
    memcpy(v, r->base + r->pos, 8);
    r->pos += 8;
    return LMP_OK;
}

static uint32_t get_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static uint64_t get_u64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static size_t kv_scalar_size(uint32_t t) {
    switch (t) {
    case LMP_KV_U32: case LMP_KV_I32: case LMP_KV_F32: return 4;
    case LMP_KV_U64: case LMP_KV_I64: case LMP_KV_F64: return 8;
    case LMP_KV_BOOL: return 1;
    default: return 0;
    }
}

// ---- metadata ----

// Reads one string array (count elements of { u64 len, bytes }) into temporary pointer/length arrays
// that point into the file, then stores a copy in the metadata.
static lmp_status parse_string_array(reader *r, lmp_meta *meta, const char *key, uint64_t count) {
    // Each element needs at least its 8-byte length: refuse absurd counts before allocating.
    uint64_t min_bytes;
    if (lmp_mul_overflow(count, 8, &min_bytes) || !fits(r, min_bytes))
        return lmp_err(r->err, LMP_E_FORMAT,
                       "truncated: metadata key '%s' string array of %llu elements at offset %llu needs at "
                       "least %llu bytes per element, file has %llu",
                       key, (unsigned long long)count, (unsigned long long)r->pos, 8ull,
                       (unsigned long long)r->size);
    const char **ptrs = lmp_malloc((size_t)(count ? count : 1) * sizeof *ptrs);
    uint64_t *lens = lmp_malloc((size_t)(count ? count : 1) * sizeof *lens);
    lmp_status st = LMP_OK;
    if (!ptrs || !lens) {
        st = lmp_err(r->err, LMP_E_NOMEM, "out of memory reading metadata key '%s' (%llu strings)", key,
                     (unsigned long long)count);
        goto done;
    }
    for (uint64_t j = 0; j < count; j++) {
        uint64_t len;
        const uint8_t *p;
        if ((st = rd_u64(r, &len, "metadata key '%s' element %llu length", key, (unsigned long long)j)))
            goto done;
        if ((st = rd_bytes(r, len, &p, "metadata key '%s' element %llu (%llu bytes)", key,
                           (unsigned long long)j, (unsigned long long)len)))
            goto done;
        if (memchr(p, 0, (size_t)len)) {
            st = lmp_err(r->err, LMP_E_FORMAT, "metadata key '%s': element %llu of the string array contains a NUL byte",
                         key, (unsigned long long)j);
            goto done;
        }
        ptrs[j] = (const char *)p;
        lens[j] = len;
    }
    lmp_kv kv;
    memset(&kv, 0, sizeof kv);
    kv.type = LMP_KV_ARRAY;
    kv.elem_type = LMP_KV_STRING;
    kv.count = count;
    kv.data = (void *)ptrs;
    kv.lens = lens;
    if (lmp_meta_set_kv(meta, key, &kv) != LMP_OK)
        st = lmp_err(r->err, LMP_E_NOMEM, "out of memory storing metadata key '%s'", key);
done:
    lmp_free(ptrs);
    lmp_free(lens);
    return st;
}

// Reads the value of entry i (type already read) and stores it under key.
static lmp_status parse_value(reader *r, lmp_meta *meta, const char *key, uint32_t type) {
    lmp_kv kv;
    memset(&kv, 0, sizeof kv);
    const uint8_t *p;
    lmp_status st;
    if (type >= LMP_KV_TYPE_COUNT)
        return lmp_err(r->err, LMP_E_FORMAT, "metadata key '%s': unknown value type %u", key, type);
    kv.type = (lmp_kv_type)type;
    if (type == LMP_KV_STRING) {
        uint64_t len;
        if ((st = rd_u64(r, &len, "metadata key '%s' string length", key))) return st;
        if ((st = rd_bytes(r, len, &p, "metadata key '%s' string of %llu bytes", key, (unsigned long long)len)))
            return st;
        if (memchr(p, 0, (size_t)len))
            return lmp_err(r->err, LMP_E_FORMAT, "metadata key '%s': string value contains a NUL byte", key);
        kv.count = len;
        kv.data = (void *)p;
    } else if (type == LMP_KV_ARRAY) {
        uint32_t et;
        uint64_t count;
        if ((st = rd_u32(r, &et, "metadata key '%s' array element type", key))) return st;
        if (et == LMP_KV_ARRAY)
            return lmp_err(r->err, LMP_E_FORMAT, "metadata key '%s': nested array (array of arrays) is not allowed", key);
        if (et >= LMP_KV_TYPE_COUNT)
            return lmp_err(r->err, LMP_E_FORMAT, "metadata key '%s': unknown array element type %u", key, et);
        if ((st = rd_u64(r, &count, "metadata key '%s' array count", key))) return st;
        if (et == LMP_KV_STRING) return parse_string_array(r, meta, key, count);
        uint64_t bytes;
        if (lmp_mul_overflow(count, kv_scalar_size(et), &bytes))
            return lmp_err(r->err, LMP_E_FORMAT, "metadata key '%s': array of %llu %s elements overflows 64 bits",
                           key, (unsigned long long)count, lmp_kv_type_name((lmp_kv_type)et));
        if ((st = rd_bytes(r, bytes, &p, "metadata key '%s' array of %llu %s", key, (unsigned long long)count,
                           lmp_kv_type_name((lmp_kv_type)et))))
            return st;
        if (et == LMP_KV_BOOL)
            for (uint64_t j = 0; j < count; j++)
                if (p[j] > 1)
                    return lmp_err(r->err, LMP_E_FORMAT,
                                   "metadata key '%s': element %llu of the bool array is %u (must be 0 or 1)", key,
                                   (unsigned long long)j, p[j]);
        kv.elem_type = (lmp_kv_type)et;
        kv.count = count;
        kv.data = (void *)p;
    } else {
        size_t n = kv_scalar_size(type);
        if ((st = rd_bytes(r, n, &p, "metadata key '%s' %s value", key, lmp_kv_type_name((lmp_kv_type)type))))
            return st;
        memcpy(&kv.v, p, n);
        if (type == LMP_KV_BOOL && p[0] > 1)
            return lmp_err(r->err, LMP_E_FORMAT, "metadata key '%s': bool value %u (must be 0 or 1)", key, p[0]);
    }
    if (lmp_meta_set_kv(meta, key, &kv) != LMP_OK)
        return lmp_err(r->err, LMP_E_NOMEM, "out of memory storing metadata key '%s'", key);
    return LMP_OK;
}

static lmp_status parse_meta(reader *r, uint64_t n_kv, lmp_meta *meta) {
    for (uint64_t i = 0; i < n_kv; i++) {
        uint32_t len, type;
        const uint8_t *p;
        char key[LMP_MAX_NAME_LEN + 1];
        lmp_status st;
        if ((st = rd_u32(r, &len, "metadata entry %llu key length", (unsigned long long)i))) return st;
        if (len < 1 || len > LMP_MAX_NAME_LEN)
            return lmp_err(r->err, LMP_E_FORMAT, "metadata entry %llu: key length %u (must be 1..%d)",
                           (unsigned long long)i, len, LMP_MAX_NAME_LEN);
        if ((st = rd_bytes(r, len, &p, "metadata entry %llu key", (unsigned long long)i))) return st;
        if (memchr(p, 0, len))
            return lmp_err(r->err, LMP_E_FORMAT, "metadata entry %llu: key contains a NUL byte", (unsigned long long)i);
        memcpy(key, p, len);
        key[len] = 0;
        if (lmp_meta_find(meta, key))
            return lmp_err(r->err, LMP_E_FORMAT, "duplicate metadata key '%s'", key);
        if ((st = rd_u32(r, &type, "metadata key '%s' value type", key))) return st;
        if ((st = parse_value(r, meta, key, type))) return st;
    }
    return LMP_OK;
}

// ---- tensor directory ----

static void format_shape(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t n = 0;
    n += (size_t)snprintf(buf + n, cap - n, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? " x " : "", (long long)shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

static lmp_status parse_tensor(reader *r, uint64_t i, const lmp_file *f, lmp_tensor *t) {
    uint32_t len, dtype, ndim;
    const uint8_t *p;
    lmp_status st;
    if ((st = rd_u32(r, &len, "tensor entry %llu name length", (unsigned long long)i))) return st;
    if (len < 1 || len > LMP_MAX_NAME_LEN)
        return lmp_err(r->err, LMP_E_FORMAT, "tensor entry %llu: name length %u (must be 1..%d)",
                       (unsigned long long)i, len, LMP_MAX_NAME_LEN);
    if ((st = rd_bytes(r, len, &p, "tensor entry %llu name", (unsigned long long)i))) return st;
    if (memchr(p, 0, len))
        return lmp_err(r->err, LMP_E_FORMAT, "tensor entry %llu: name contains a NUL byte", (unsigned long long)i);
    char *name = lmp_malloc(len + 1);
    if (!name) return lmp_err(r->err, LMP_E_NOMEM, "out of memory reading tensor entry %llu", (unsigned long long)i);
    memcpy(name, p, len);
    name[len] = 0;
    t->name = name;  // owned by the file from here on (freed by file_free)

    if ((st = rd_u32(r, &dtype, "tensor '%s' dtype", name))) return st;
    const lmp_type_traits *tt = dtype <= 0xffff ? lmp_type_get((lmp_dtype)dtype) : NULL;
    if (!tt) return lmp_err(r->err, LMP_E_UNSUPPORTED, "tensor '%s': unknown dtype %u", name, dtype);
    if (!tt->storable || tt->block_size < 1 || tt->type_size < 1)
        return lmp_err(r->err, LMP_E_FORMAT, "tensor '%s': dtype %u (%s) is run-time only and cannot be stored",
                       name, dtype, tt->name);
    if (LMP_DTYPE_MIN_VERSION(dtype) > f->version)
        return lmp_err(r->err, LMP_E_FORMAT, "tensor '%s': dtype %u (%s) needs format version %u, the file says %u",
                       name, dtype, tt->name, LMP_DTYPE_MIN_VERSION(dtype), f->version);
    t->type = (lmp_dtype)dtype;
    if ((st = rd_u32(r, &ndim, "tensor '%s' ndim", name))) return st;
    if (ndim < 1 || ndim > LMP_MAX_DIMS)
        return lmp_err(r->err, LMP_E_FORMAT, "tensor '%s': ndim %u (must be 1..%d)", name, ndim, LMP_MAX_DIMS);
    t->ndim = (int)ndim;
    uint64_t dims[LMP_MAX_DIMS];
    for (uint32_t d = 0; d < ndim; d++)
        if ((st = rd_u64(r, &dims[d], "tensor '%s' dimension %u", name, d))) return st;
    for (uint32_t d = 0; d < ndim; d++) {
        if (dims[d] == 0) return lmp_err(r->err, LMP_E_FORMAT, "tensor '%s': dimension %u is 0", name, d);
        if (dims[d] > LMP_MAX_DIM_SIZE)
            return lmp_err(r->err, LMP_E_FORMAT, "tensor '%s': dimension %u is %llu, above the limit 2^40", name, d,
                           (unsigned long long)dims[d]);
        t->shape[d] = (int64_t)dims[d];
    }
    char shp[128];
    uint64_t nel = 1;
    for (uint32_t d = 0; d < ndim; d++) {
        if (lmp_mul_overflow(nel, dims[d], &nel) || nel > (uint64_t)INT64_MAX) {
            format_shape(shp, sizeof shp, t->ndim, t->shape);
            return lmp_err(r->err, LMP_E_FORMAT, "tensor '%s': element count overflows (shape %s)", name, shp);
        }
    }
    if (dims[ndim - 1] % (uint64_t)tt->block_size != 0) {
        format_shape(shp, sizeof shp, t->ndim, t->shape);
        return lmp_err(r->err, LMP_E_FORMAT,
                       "tensor '%s': dtype %u (%s) with shape %s: last dimension %llu is not a multiple of the "
                       "block size %lld",
                       name, dtype, tt->name, shp, (unsigned long long)dims[ndim - 1], (long long)tt->block_size);
    }
    uint64_t expected;
    if (lmp_mul_overflow(nel / (uint64_t)tt->block_size, tt->type_size, &expected)) {
        format_shape(shp, sizeof shp, t->ndim, t->shape);
        return lmp_err(r->err, LMP_E_FORMAT, "tensor '%s': byte size of dtype %s with shape %s overflows", name,
                       tt->name, shp);
    }
    if ((st = rd_u64(r, &t->offset, "tensor '%s' offset", name))) return st;
    if ((st = rd_u64(r, &t->nbytes, "tensor '%s' nbytes", name))) return st;
    if ((st = rd_u32(r, &t->crc32, "tensor '%s' crc32", name))) return st;
    if (t->nbytes != expected) {
        format_shape(shp, sizeof shp, t->ndim, t->shape);
        return lmp_err(r->err, LMP_E_FORMAT,
                       "tensor '%s': nbytes %llu does not match dtype %s and shape %s (%llu bytes): wrong size for "
                       "dtype",
                       name, (unsigned long long)t->nbytes, tt->name, shp, (unsigned long long)expected);
    }
    if (t->offset % f->alignment != 0)
        return lmp_err(r->err, LMP_E_FORMAT, "tensor '%s': offset %llu is not a multiple of the alignment %u", name,
                       (unsigned long long)t->offset, f->alignment);
    uint64_t end;
    if (lmp_add_overflow(t->offset, t->nbytes, &end) || end > f->data_size)
        return lmp_err(r->err, LMP_E_FORMAT,
                       "tensor '%s': offset %llu + %llu bytes extends past the data section (%llu bytes)", name,
                       (unsigned long long)t->offset, (unsigned long long)t->nbytes,
                       (unsigned long long)f->data_size);
    t->data = (void *)(f->base + f->data_offset + t->offset);
    return LMP_OK;
}

static int cmp_by_name(const void *a, const void *b) {
    const lmp_tensor *x = *(const lmp_tensor *const *)a, *y = *(const lmp_tensor *const *)b;
    return strcmp(x->name, y->name);
}

static int cmp_by_offset(const void *a, const void *b) {
    const lmp_tensor *x = *(const lmp_tensor *const *)a, *y = *(const lmp_tensor *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return x < y ? -1 : x > y;  // directory order among equal offsets: deterministic messages
}

// Sorts the directory by name (kept for lmp_file_find) and by offset to find duplicates and overlaps
// in O(n log n): files may hold up to 2^20 tensors.
static lmp_status check_names_and_overlaps(lmp_file *f, lmp_error *err) {
    size_t n = f->n_tensors;
    f->by_name = lmp_malloc((n ? n : 1) * sizeof *f->by_name);
    lmp_tensor **by_off = lmp_malloc((n ? n : 1) * sizeof *by_off);
    if (!f->by_name || !by_off) {
        lmp_free(by_off);
        return lmp_err(err, LMP_E_NOMEM, "out of memory indexing %zu tensors", n);
    }
    for (size_t i = 0; i < n; i++) f->by_name[i] = by_off[i] = &f->tensors[i];
    qsort(f->by_name, n, sizeof *f->by_name, cmp_by_name);
    lmp_status st = LMP_OK;
    for (size_t i = 1; i < n && !st; i++)
        if (strcmp(f->by_name[i - 1]->name, f->by_name[i]->name) == 0)
            st = lmp_err(err, LMP_E_FORMAT, "duplicate tensor name '%s'", f->by_name[i]->name);
    if (!st) {
        qsort(by_off, n, sizeof *by_off, cmp_by_offset);
        for (size_t i = 1; i < n && !st; i++) {
            const lmp_tensor *a = by_off[i - 1], *b = by_off[i];
            if (a->offset + a->nbytes > b->offset)  // no overflow: both end inside the data section
                st = lmp_err(err, LMP_E_FORMAT, "tensors '%s' and '%s' overlap: [%llu, %llu) and [%llu, %llu)",
                             a->name, b->name, (unsigned long long)a->offset,
                             (unsigned long long)(a->offset + a->nbytes), (unsigned long long)b->offset,
                             (unsigned long long)(b->offset + b->nbytes));
        }
    }
    lmp_free(by_off);
    return st;
}

// ---- tensor checksums ----

// Verifying every CRC reads the whole data section (~1-2 GB/s per core with zlib), so large files are
// checked by several threads: the tensors are cut into pieces of at most CRC_PIECE bytes (in directory
// order), threads take pieces from a shared counter (a busy core just takes fewer), and each tensor's CRC
// is then combined from its pieces' in order. Plain pthreads: format/ does not depend on runtime/.
#define CRC_PIECE ((uint64_t)4 << 20)
#define CRC_PARALLEL_MIN ((uint64_t)32 << 20)  // below this, one thread (starting threads costs more)
#define CRC_MAX_THREADS 16

typedef struct {
    const uint8_t *p;
    uint64_t n;
    uint32_t crc;
} crc_piece;

typedef struct {
    crc_piece *pieces;
    size_t n_pieces;
    atomic_size_t next;
} crc_job;

static void crc_work(crc_job *j) {
    for (;;) {
        size_t i = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (i >= j->n_pieces) return;
        j->pieces[i].crc = lmp_crc32(0, j->pieces[i].p, (size_t)j->pieces[i].n);
    }
}

static void *crc_thread(void *arg) {
    crc_work(arg);
    return NULL;
}

// CPUs this process may run on (its affinity mask, which containers and taskset narrow), at least 1.
static int crc_cpus(void) {
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
#endif
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

// The first tensor in directory order whose CRC32 does not match (the message does not depend on the
// number of threads or their timing).
static lmp_status crc_mismatch(const lmp_tensor *t, uint32_t computed, lmp_error *err) {
    return lmp_err(err, LMP_E_CHECKSUM, "tensor '%s': CRC32 mismatch (stored 0x%08x, computed 0x%08x)", t->name,
                   t->crc32, computed);
}

static lmp_status check_crcs_serial(const lmp_file *f, lmp_error *err) {
    for (size_t i = 0; i < f->n_tensors; i++) {
        const lmp_tensor *t = &f->tensors[i];
        uint32_t c = lmp_crc32(0, t->data, (size_t)t->nbytes);
        if (c != t->crc32) return crc_mismatch(t, c, err);
    }
    return LMP_OK;
}

static lmp_status check_crcs(const lmp_file *f, lmp_error *err) {
    uint64_t total = 0, n_pieces = 0;
    for (size_t i = 0; i < f->n_tensors; i++) {  // no overflow: tensors do not overlap inside the file
        total += f->tensors[i].nbytes;
        n_pieces += f->tensors[i].nbytes ? (f->tensors[i].nbytes + CRC_PIECE - 1) / CRC_PIECE : 1;
    }
    int nth = crc_cpus();
    if (nth > CRC_MAX_THREADS) nth = CRC_MAX_THREADS;
    if (n_pieces < (uint64_t)nth) nth = (int)n_pieces;
    if (nth < 2 || total < CRC_PARALLEL_MIN) return check_crcs_serial(f, err);
    crc_job job;
    job.pieces = lmp_malloc((size_t)n_pieces * sizeof *job.pieces);
    if (!job.pieces) return check_crcs_serial(f, err);  // the same check, just slower
    job.n_pieces = (size_t)n_pieces;
    atomic_init(&job.next, 0);
    size_t k = 0;
    for (size_t i = 0; i < f->n_tensors; i++) {
        const lmp_tensor *t = &f->tensors[i];
        uint64_t off = 0;
        do {
            uint64_t n = t->nbytes - off < CRC_PIECE ? t->nbytes - off : CRC_PIECE;
            job.pieces[k++] = (crc_piece){(const uint8_t *)t->data + off, n, 0};
            off += n;
        } while (off < t->nbytes);
    }
    pthread_t threads[CRC_MAX_THREADS];
    int started = 0;
    for (int i = 1; i < nth; i++) {
        if (pthread_create(&threads[started], NULL, crc_thread, &job) != 0) break;  // fewer threads do it all
        started++;
    }
    crc_work(&job);
    for (int i = 0; i < started; i++) pthread_join(threads[i], NULL);
    lmp_status st = LMP_OK;
    k = 0;
    for (size_t i = 0; i < f->n_tensors && !st; i++) {
        const lmp_tensor *t = &f->tensors[i];
        uint32_t c = job.pieces[k].crc;
        uint64_t off = job.pieces[k++].n;
        while (off < t->nbytes) {
            c = lmp_crc32_combine(c, job.pieces[k].crc, job.pieces[k].n);
            off += job.pieces[k++].n;
        }
        if (c != t->crc32) st = crc_mismatch(t, c, err);
    }
    lmp_free(job.pieces);
    return st;
}

// ---- header ----

static lmp_status parse_header(lmp_file *f, uint64_t *n_kv, uint64_t *n_tensors, lmp_error *err) {
    const uint8_t *h = f->base;
    if (f->size < LMP_HEADER_SIZE)
        return lmp_err(err, LMP_E_FORMAT, "truncated: file is %llu bytes, header needs %d",
                       (unsigned long long)f->size, LMP_HEADER_SIZE);
    if (memcmp(h, LMP_MAGIC, LMP_MAGIC_LEN) != 0)
        return lmp_err(err, LMP_E_FORMAT, "bad magic (not an lmpress file)");
    uint32_t bom = get_u32(h + 12);
    if (bom == 0x04030201u)
        return lmp_err(err, LMP_E_UNSUPPORTED, "big-endian file (byte order mark 0x04030201) is not supported");
    if (bom != LMP_BYTE_ORDER_MARK)
        return lmp_err(err, LMP_E_FORMAT, "bad byte order mark 0x%08x (expected 0x%08x)", bom, LMP_BYTE_ORDER_MARK);
    f->version = get_u32(h + 8);
    if (f->version < LMP_FORMAT_VERSION_MIN || f->version > LMP_FORMAT_VERSION)
        return lmp_err(err, LMP_E_UNSUPPORTED, "unsupported format version %u (this build reads %d to %d)", f->version,
                       LMP_FORMAT_VERSION_MIN, LMP_FORMAT_VERSION);
    uint32_t stored = get_u32(h + 60), computed = lmp_crc32(0, h, 60);
    if (stored != computed)
        return lmp_err(err, LMP_E_CHECKSUM, "header checksum mismatch (stored 0x%08x, computed 0x%08x)", stored,
                       computed);
    uint32_t flags = get_u32(h + 20);
    if (flags != 0) return lmp_err(err, LMP_E_UNSUPPORTED, "reserved header flags 0x%08x are not 0", flags);
    f->alignment = get_u32(h + 16);
    if (f->alignment < 16 || f->alignment > 65536 || (f->alignment & (f->alignment - 1)))
        return lmp_err(err, LMP_E_FORMAT, "bad alignment %u (must be a power of two in 16..65536)", f->alignment);
    *n_kv = get_u64(h + 24);
    *n_tensors = get_u64(h + 32);
    if (*n_kv > MAX_COUNT)
        return lmp_err(err, LMP_E_FORMAT, "n_kv %llu is above the limit %llu", (unsigned long long)*n_kv, MAX_COUNT);
    if (*n_tensors > MAX_COUNT)
        return lmp_err(err, LMP_E_FORMAT, "n_tensors %llu is above the limit %llu", (unsigned long long)*n_tensors,
                       MAX_COUNT);
    f->data_offset = get_u64(h + 40);
    f->data_size = get_u64(h + 48);
    if (f->data_offset % f->alignment != 0)
        return lmp_err(err, LMP_E_FORMAT, "data_offset %llu is not a multiple of the alignment %u",
                       (unsigned long long)f->data_offset, f->alignment);
    if (f->data_offset < LMP_HEADER_SIZE)
        return lmp_err(err, LMP_E_FORMAT, "data_offset %llu is inside the header (%d bytes)",
                       (unsigned long long)f->data_offset, LMP_HEADER_SIZE);
    uint64_t end;
    if (lmp_add_overflow(f->data_offset, f->data_size, &end))
        return lmp_err(err, LMP_E_FORMAT, "data_offset %llu + data_size %llu overflows",
                       (unsigned long long)f->data_offset, (unsigned long long)f->data_size);
    if (end > f->size)
        return lmp_err(err, LMP_E_FORMAT, "truncated: file is %llu bytes, header says data_offset %llu + data_size %llu = %llu",
                       (unsigned long long)f->size, (unsigned long long)f->data_offset,
                       (unsigned long long)f->data_size, (unsigned long long)end);
    if (end < f->size)
        return lmp_err(err, LMP_E_FORMAT, "file is %llu bytes but header says data_offset %llu + data_size %llu = %llu (trailing bytes)",
                       (unsigned long long)f->size, (unsigned long long)f->data_offset,
                       (unsigned long long)f->data_size, (unsigned long long)end);
    stored = get_u32(h + 56);
    computed = lmp_crc32(0, h + LMP_HEADER_SIZE, (size_t)(f->data_offset - LMP_HEADER_SIZE));
    if (stored != computed)
        return lmp_err(err, LMP_E_CHECKSUM, "metadata checksum mismatch (stored 0x%08x, computed 0x%08x)", stored,
                       computed);
    // Refuse counts that cannot fit before the data section before allocating anything for them.
    uint64_t need = LMP_HEADER_SIZE + *n_kv * MIN_KV_BYTES + *n_tensors * MIN_TENSOR_BYTES;  // < 2^26: no overflow
    if (need > f->data_offset)
        return lmp_err(err, LMP_E_FORMAT,
                       "header announces %llu metadata entries and %llu tensors, which need at least %llu bytes, but "
                       "data_offset is %llu",
                       (unsigned long long)*n_kv, (unsigned long long)*n_tensors, (unsigned long long)need,
                       (unsigned long long)f->data_offset);
    f->checksum = lmp_crc32(lmp_crc32(0, h, LMP_HEADER_SIZE), h + LMP_HEADER_SIZE,
                            (size_t)(f->data_offset - LMP_HEADER_SIZE));
    return LMP_OK;
}

static void file_free(lmp_file *f) {
    if (!f) return;
    for (size_t i = 0; i < f->n_tensors; i++) lmp_free((void *)f->tensors[i].name);
    lmp_free(f->tensors);
    lmp_free(f->by_name);
    lmp_meta_free(f->meta);
    if (f->map) munmap(f->map, (size_t)f->size);
    lmp_free(f->owned_buf);
    lmp_free(f->path);
    lmp_free(f);
}

// Validates the whole file (header, metadata, directory, overlaps, optionally CRCs) of f->base.
static lmp_status parse_file(lmp_file *f, unsigned flags, lmp_error *err) {
    uint64_t n_kv = 0, n_tensors = 0;
    lmp_status st = parse_header(f, &n_kv, &n_tensors, err);
    if (st) return st;
    f->meta = lmp_meta_new();
    f->tensors = lmp_calloc(n_tensors ? (size_t)n_tensors : 1, sizeof *f->tensors);
    if (!f->meta || !f->tensors) return lmp_err(err, LMP_E_NOMEM, "out of memory opening a file of %llu tensors",
                                                (unsigned long long)n_tensors);
    reader r = {f->base, f->size, LMP_HEADER_SIZE, err};
    if ((st = parse_meta(&r, n_kv, f->meta))) return st;
    for (uint64_t i = 0; i < n_tensors; i++) {
        st = parse_tensor(&r, i, f, &f->tensors[i]);
        if (f->tensors[i].name) f->n_tensors = (size_t)i + 1;  // so that file_free frees the name
        if (st) return st;
    }
    if (r.pos > f->data_offset)
        return lmp_err(err, LMP_E_FORMAT, "data_offset %llu is before the end of the directory (%llu)",
                       (unsigned long long)f->data_offset, (unsigned long long)r.pos);
    if ((st = check_names_and_overlaps(f, err))) return st;
    if (!(flags & LMP_OPEN_SKIP_CRC)) return check_crcs(f, err);
    return LMP_OK;
}

// With take_ownership the buffer is the file's from the call on: it is freed on failure too, so that
// callers (lmp_builder_to_file) have a single owner to think about, as with lmp_builder_add.
lmp_status lmp_file_open_mem(void *buf, size_t size, int take_ownership, unsigned flags, lmp_file **out,
                             lmp_error *err) {
    if (out) *out = NULL;
    if (!out || (!buf && size) || (flags & ~(unsigned)LMP_OPEN_SKIP_CRC)) {
        if (take_ownership) lmp_free(buf);
        return lmp_err(err, LMP_E_ARG, "lmp_file_open_mem: invalid arguments");
    }
    lmp_file *f = lmp_calloc(1, sizeof *f);
    char *path = lmp_strdup("");
    if (!f || !path) {
        lmp_free(f);
        lmp_free(path);
        if (take_ownership) lmp_free(buf);
        return lmp_err(err, LMP_E_NOMEM, "out of memory opening a memory file");
    }
    f->path = path;
    f->base = buf;
    f->size = size;
    f->owned_buf = take_ownership ? buf : NULL;
    lmp_status st = parse_file(f, flags, err);
    if (st) {
        file_free(f);
        return st;
    }
    *out = f;
    return LMP_OK;
}

lmp_status lmp_file_open(const char *path, unsigned flags, lmp_file **out, lmp_error *err) {
    if (out) *out = NULL;
    if (!path || !out || (flags & ~(unsigned)LMP_OPEN_SKIP_CRC))
        return lmp_err(err, LMP_E_ARG, "lmp_file_open: invalid arguments");
    lmp_file *f = lmp_calloc(1, sizeof *f);
    if (!f || !(f->path = lmp_strdup(path))) {
        lmp_free(f);
        return lmp_err(err, LMP_E_NOMEM, "out of memory opening '%s'", path);
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        file_free(f);
        return lmp_err(err, LMP_E_IO, "cannot open '%s': %s", path, strerror(e));
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        file_free(f);
        return lmp_err(err, LMP_E_IO, "cannot stat '%s': %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        file_free(f);
        return lmp_err(err, LMP_E_IO, "'%s' is not a regular file", path);
    }
    f->size = (uint64_t)sb.st_size;
    if (f->size > SIZE_MAX) {
        close(fd);
        file_free(f);
        return lmp_err(err, LMP_E_IO, "'%s' is too large to map", path);
    }
    static const uint8_t empty[1];
    if (f->size == 0) {
        f->base = empty;  // mmap refuses 0 bytes; parse_header reports the truncation
    } else {
        void *m = mmap(NULL, (size_t)f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            close(fd);
            file_free(f);
            return lmp_err(err, LMP_E_IO, "cannot map '%s': %s", path, strerror(e));
        }
        f->map = m;
        f->base = m;
        // Verifying every CRC reads the whole file: start the readahead now (a hint; errors do not matter).
        if (!(flags & LMP_OPEN_SKIP_CRC)) madvise(m, (size_t)f->size, MADV_WILLNEED);
    }
    close(fd);
    lmp_status st = parse_file(f, flags, err);
    if (st) {
        file_free(f);
        return lmp_err_prefix(err, st, "%s", path);
    }
    *out = f;
    return LMP_OK;
}

void lmp_file_close(lmp_file *f) { file_free(f); }

const lmp_meta *lmp_file_meta(const lmp_file *f) { return f ? f->meta : NULL; }
size_t lmp_file_n_tensors(const lmp_file *f) { return f ? f->n_tensors : 0; }
const lmp_tensor *lmp_file_tensor(const lmp_file *f, size_t i) {
    return f && i < f->n_tensors ? &f->tensors[i] : NULL;
}

const lmp_tensor *lmp_file_find(const lmp_file *f, const char *name) {
    if (!f || !name) return NULL;
    size_t lo = 0, hi = f->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->by_name[mid]->name, name);
        if (c == 0) return f->by_name[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

uint32_t lmp_file_version(const lmp_file *f) { return f ? f->version : 0; }
uint64_t lmp_file_size(const lmp_file *f) { return f ? f->size : 0; }
const char *lmp_file_path(const lmp_file *f) { return f && f->path ? f->path : ""; }
uint32_t lmp_file_checksum(const lmp_file *f) { return f ? f->checksum : 0; }
