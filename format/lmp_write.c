// lmp_write.c - the .lmp writer (lmp_file_write, lmp_file_write_mem) and the model builder (lmp_builder).
//
// The writer validates what it is given (names, dtypes, shapes, metadata values) before touching the
// disk, computes the layout (alignment 64), streams tensor data to "<path>.tmp.<pid>" while computing
// each tensor's CRC32, writes the header, metadata and directory last, fsyncs and renames over path.
// On any failure the temporary is removed and path is untouched. Both writers produce the same bytes.
//
// It does not read files (lmp_file.c) and does not convert or quantize tensors: data is written as given.
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "format/lmp_format.h"
#include "format/qtypes.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "lmp_write.c writes host-order values: big-endian hosts are not supported"
#endif

#define WBUF_SIZE (1u << 20)     // buffered small writes
#define CRC_CHUNK (8u << 20)     // large tensors: CRC a chunk, then write it straight from the caller's memory

static size_t kv_scalar_size(lmp_kv_type t) {
    switch (t) {
    case LMP_KV_U32: case LMP_KV_I32: case LMP_KV_F32: return 4;
    case LMP_KV_U64: case LMP_KV_I64: case LMP_KV_F64: return 8;
    case LMP_KV_BOOL: return 1;
    default: return 0;
    }
}

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) & ~(a - 1); }

// ---- validation ----

// Checks one tensor declaration (as the reader will) and returns its byte size in *nbytes. Shared by
// the writer and the builder so that both refuse what the reader would refuse, with the same words.
static lmp_status check_tensor_decl(const char *name, lmp_dtype type, int ndim, const int64_t *shape,
                                    uint64_t *nbytes, lmp_error *err) {
    if (!name) return lmp_err(err, LMP_E_ARG, "tensor with a NULL name");
    size_t len = strlen(name);
    if (len < 1 || len > LMP_MAX_NAME_LEN)
        return lmp_err(err, LMP_E_ARG, "tensor name '%.40s%s' is %zu bytes (must be 1..%d)", name,
                       len > 40 ? "..." : "", len, LMP_MAX_NAME_LEN);
    const lmp_type_traits *tt = lmp_type_get(type);
    if (!tt || !tt->storable || tt->block_size < 1)
        return lmp_err(err, LMP_E_ARG, "tensor '%s': dtype %d (%s) cannot be stored in a file", name, (int)type,
                       tt ? tt->name : "unknown");
    if (ndim < 1 || ndim > LMP_MAX_DIMS || !shape)
        return lmp_err(err, LMP_E_ARG, "tensor '%s': ndim %d (must be 1..%d)", name, ndim, LMP_MAX_DIMS);
    uint64_t nel = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 1) return lmp_err(err, LMP_E_ARG, "tensor '%s': dimension %d is %lld", name, d, (long long)shape[d]);
        if ((uint64_t)shape[d] > LMP_MAX_DIM_SIZE)
            return lmp_err(err, LMP_E_ARG, "tensor '%s': dimension %d is %lld, above the limit 2^40", name, d,
                           (long long)shape[d]);
        if (lmp_mul_overflow(nel, (uint64_t)shape[d], &nel) || nel > (uint64_t)INT64_MAX)
            return lmp_err(err, LMP_E_ARG, "tensor '%s': element count overflows", name);
    }
    if (shape[ndim - 1] % tt->block_size != 0)
        return lmp_err(err, LMP_E_ARG, "tensor '%s': dtype %s: last dimension %lld is not a multiple of the block size %lld",
                       name, tt->name, (long long)shape[ndim - 1], (long long)tt->block_size);
    *nbytes = lmp_tensor_expected_bytes(type, ndim, shape);
    if (*nbytes == 0) return lmp_err(err, LMP_E_ARG, "tensor '%s': byte size overflows", name);
    return LMP_OK;
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

// Byte size of the serialised metadata, refusing values the reader would refuse.
static lmp_status meta_bytes(const lmp_meta *meta, uint64_t *out, lmp_error *err) {
    uint64_t total = 0;
    size_t n = lmp_meta_count(meta);
    for (size_t i = 0; i < n; i++) {
        const lmp_kv *kv = lmp_meta_at(meta, i);
        size_t klen = kv->key ? strlen(kv->key) : 0;
        if (klen < 1 || klen > LMP_MAX_NAME_LEN)
            return lmp_err(err, LMP_E_ARG, "metadata entry %zu: key length %zu (must be 1..%d)", i, klen,
                           LMP_MAX_NAME_LEN);
        uint64_t sz = 4 + klen + 4;
        if (kv->type == LMP_KV_STRING) {
            if (kv->count && (!kv->data || memchr(kv->data, 0, (size_t)kv->count)))
                return lmp_err(err, LMP_E_ARG, "metadata key '%s': string value contains a NUL byte", kv->key);
            sz += 8 + kv->count;
        } else if (kv->type == LMP_KV_ARRAY) {
            sz += 4 + 8;
            if (kv->elem_type == LMP_KV_STRING) {
                char *const *s = kv->data;
                for (uint64_t j = 0; j < kv->count; j++) {
                    uint64_t len = kv->lens ? kv->lens[j] : strlen(s[j]);
                    if (memchr(s[j], 0, (size_t)len))
                        return lmp_err(err, LMP_E_ARG, "metadata key '%s': element %llu of the string array contains a NUL byte",
                                       kv->key, (unsigned long long)j);
                    if (lmp_add_overflow(sz, 8 + len, &sz)) return lmp_err(err, LMP_E_ARG, "metadata too large");
                }
            } else {
                size_t es = kv_scalar_size(kv->elem_type);
                if (!es || kv->elem_type >= LMP_KV_ARRAY)
                    return lmp_err(err, LMP_E_ARG, "metadata key '%s': bad array element type %d", kv->key,
                                   (int)kv->elem_type);
                uint64_t b;
                if (lmp_mul_overflow(kv->count, es, &b) || lmp_add_overflow(sz, b, &sz))
                    return lmp_err(err, LMP_E_ARG, "metadata key '%s': array too large", kv->key);
                if (kv->elem_type == LMP_KV_BOOL)
                    for (uint64_t j = 0; j < kv->count; j++)
                        if (((const uint8_t *)kv->data)[j] > 1)
                            return lmp_err(err, LMP_E_ARG, "metadata key '%s': element %llu of the bool array is %u (must be 0 or 1)",
                                           kv->key, (unsigned long long)j, ((const uint8_t *)kv->data)[j]);
            }
        } else {
            size_t es = kv_scalar_size(kv->type);
            if (!es) return lmp_err(err, LMP_E_ARG, "metadata key '%s': bad value type %d", kv->key, (int)kv->type);
            if (kv->type == LMP_KV_BOOL && kv->v.b > 1)
                return lmp_err(err, LMP_E_ARG, "metadata key '%s': bool value %u (must be 0 or 1)", kv->key, kv->v.b);
            sz += es;
        }
        if (lmp_add_overflow(total, sz, &total)) return lmp_err(err, LMP_E_ARG, "metadata too large");
    }
    *out = total;
    return LMP_OK;
}

// Where everything goes. offsets/nbytes are relative to the data section.
typedef struct layout {
    uint64_t meta_bytes, dir_bytes;
    uint64_t data_offset, data_size, total;
    uint64_t *offset;  // (n)
    uint64_t *nbytes;  // (n)
} layout;

static void layout_free(layout *L) {
    lmp_free(L->offset);
    lmp_free(L->nbytes);
}

static lmp_status compute_layout(const lmp_meta *meta, const lmp_tensor *tensors, size_t n, layout *L,
                                 lmp_error *err) {
    memset(L, 0, sizeof *L);
    if (n > (1u << 20)) return lmp_err(err, LMP_E_ARG, "%zu tensors is above the limit 2^20", n);
    if (lmp_meta_count(meta) > (1u << 20))
        return lmp_err(err, LMP_E_ARG, "%zu metadata entries is above the limit 2^20", lmp_meta_count(meta));
    if (n && !tensors) return lmp_err(err, LMP_E_ARG, "NULL tensor array");
    lmp_status st = meta_bytes(meta, &L->meta_bytes, err);
    if (st) return st;
    L->offset = lmp_malloc((n ? n : 1) * sizeof *L->offset);
    L->nbytes = lmp_malloc((n ? n : 1) * sizeof *L->nbytes);
    const char **names = lmp_malloc((n ? n : 1) * sizeof *names);
    if (!L->offset || !L->nbytes || !names) {
        lmp_free(names);
        layout_free(L);
        return lmp_err(err, LMP_E_NOMEM, "out of memory laying out %zu tensors", n);
    }
    uint64_t dir = 0, pos = 0;
    for (size_t i = 0; i < n && !st; i++) {
        const lmp_tensor *t = &tensors[i];
        if ((st = check_tensor_decl(t->name, t->type, t->ndim, t->shape, &L->nbytes[i], err))) break;
        if (!t->data) {
            st = lmp_err(err, LMP_E_ARG, "tensor '%s': no data", t->name);
            break;
        }
        names[i] = t->name;
        dir += 4 + strlen(t->name) + 4 + 4 + 8 * (uint64_t)t->ndim + 8 + 8 + 4;
        L->offset[i] = align_up(pos, LMP_DEFAULT_ALIGNMENT);
        if (lmp_add_overflow(L->offset[i], L->nbytes[i], &pos) || pos > (1ull << 62))
            st = lmp_err(err, LMP_E_ARG, "tensor '%s': data section too large", t->name);
    }
    if (!st && n > 1) {
        qsort(names, n, sizeof *names, cmp_str_ptr);
        for (size_t i = 1; i < n; i++)
            if (strcmp(names[i - 1], names[i]) == 0) {
                st = lmp_err(err, LMP_E_ARG, "duplicate tensor name '%s'", names[i]);
                break;
            }
    }
    lmp_free(names);
    if (st) {
        layout_free(L);
        return st;
    }
    L->dir_bytes = dir;
    L->data_offset = align_up(LMP_HEADER_SIZE + L->meta_bytes + dir, LMP_DEFAULT_ALIGNMENT);
    L->data_size = pos;
    if (L->meta_bytes > (1ull << 62) || lmp_add_overflow(L->data_offset, L->data_size, &L->total) ||
        L->total > SIZE_MAX) {
        layout_free(L);
        return lmp_err(err, LMP_E_ARG, "file too large");
    }
    return LMP_OK;
}

// ---- serialisation of header, metadata and directory into head[0, data_offset) ----

static uint8_t *put(uint8_t *p, const void *src, size_t n) {
    if (n) memcpy(p, src, n);
    return p + n;
}
static uint8_t *put_u32(uint8_t *p, uint32_t v) { return put(p, &v, 4); }
static uint8_t *put_u64(uint8_t *p, uint64_t v) { return put(p, &v, 8); }

// head must hold data_offset zeroed bytes; crcs[i] is tensor i's CRC32.
static void serialise_head(uint8_t *head, const layout *L, const lmp_meta *meta, const lmp_tensor *tensors,
                           size_t n, const uint32_t *crcs) {
    uint8_t *p = head + LMP_HEADER_SIZE;
    size_t nkv = lmp_meta_count(meta);
    for (size_t i = 0; i < nkv; i++) {
        const lmp_kv *kv = lmp_meta_at(meta, i);
        uint32_t klen = (uint32_t)strlen(kv->key);
        p = put_u32(p, klen);
        p = put(p, kv->key, klen);
        p = put_u32(p, (uint32_t)kv->type);
        switch (kv->type) {
        case LMP_KV_STRING:
            p = put_u64(p, kv->count);
            p = put(p, kv->data, (size_t)kv->count);
            break;
        case LMP_KV_ARRAY:
            p = put_u32(p, (uint32_t)kv->elem_type);
            p = put_u64(p, kv->count);
            if (kv->elem_type == LMP_KV_STRING) {
                char *const *s = kv->data;
                for (uint64_t j = 0; j < kv->count; j++) {
                    uint64_t len = kv->lens ? kv->lens[j] : strlen(s[j]);
                    p = put_u64(p, len);
                    p = put(p, s[j], (size_t)len);
                }
            } else {
                p = put(p, kv->data, (size_t)kv->count * kv_scalar_size(kv->elem_type));
            }
            break;
        default: p = put(p, &kv->v, kv_scalar_size(kv->type)); break;
        }
    }
    for (size_t i = 0; i < n; i++) {
        const lmp_tensor *t = &tensors[i];
        uint32_t len = (uint32_t)strlen(t->name);
        p = put_u32(p, len);
        p = put(p, t->name, len);
        p = put_u32(p, (uint32_t)t->type);
        p = put_u32(p, (uint32_t)t->ndim);
        for (int d = 0; d < t->ndim; d++) p = put_u64(p, (uint64_t)t->shape[d]);
        p = put_u64(p, L->offset[i]);
        p = put_u64(p, L->nbytes[i]);
        p = put_u32(p, crcs[i]);
    }
    uint32_t version = LMP_FORMAT_VERSION_MIN;  // the lowest that describes the file
    for (size_t i = 0; i < n; i++)
        if (LMP_DTYPE_MIN_VERSION(tensors[i].type) > version) version = LMP_DTYPE_MIN_VERSION(tensors[i].type);
    uint8_t *h = head;
    h = put(h, LMP_MAGIC, LMP_MAGIC_LEN);
    h = put_u32(h, version);
    h = put_u32(h, LMP_BYTE_ORDER_MARK);
    h = put_u32(h, LMP_DEFAULT_ALIGNMENT);
    h = put_u32(h, 0);  // flags
    h = put_u64(h, (uint64_t)nkv);
    h = put_u64(h, (uint64_t)n);
    h = put_u64(h, L->data_offset);
    h = put_u64(h, L->data_size);
    h = put_u32(h, lmp_crc32(0, head + LMP_HEADER_SIZE, (size_t)(L->data_offset - LMP_HEADER_SIZE)));
    put_u32(h, lmp_crc32(0, head, 60));
}

lmp_status lmp_file_write_mem(const lmp_meta *meta, const lmp_tensor *tensors, size_t n, void **buf,
                              size_t *size, lmp_error *err) {
    if (!buf || !size) return lmp_err(err, LMP_E_ARG, "lmp_file_write_mem: NULL output");
    *buf = NULL;
    *size = 0;
    layout L;
    lmp_status st = compute_layout(meta, tensors, n, &L, err);
    if (st) return st;
    uint8_t *out = lmp_malloc((size_t)L.total);
    uint32_t *crcs = lmp_malloc((n ? n : 1) * sizeof *crcs);
    if (!out || !crcs) {
        lmp_free(out);
        lmp_free(crcs);
        st = lmp_err(err, LMP_E_NOMEM, "out of memory serialising a %llu-byte file", (unsigned long long)L.total);
        layout_free(&L);
        return st;
    }
    memset(out, 0, (size_t)L.data_offset);
    uint8_t *data = out + L.data_offset;
    uint64_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        memset(data + pos, 0, (size_t)(L.offset[i] - pos));  // padding between tensors
        memcpy(data + L.offset[i], tensors[i].data, (size_t)L.nbytes[i]);
        crcs[i] = lmp_crc32(0, data + L.offset[i], (size_t)L.nbytes[i]);
        pos = L.offset[i] + L.nbytes[i];
    }
    serialise_head(out, &L, meta, tensors, n, crcs);
    *buf = out;
    *size = (size_t)L.total;
    lmp_free(crcs);
    layout_free(&L);
    return LMP_OK;
}

// ---- file output ----

typedef struct writer {
    int fd;
    const char *path;  // the temporary, for messages
    uint8_t *buf;      // (WBUF_SIZE) pending bytes
    size_t len;
    lmp_error *err;
} writer;

static lmp_status write_all(writer *w, const void *p, size_t n) {
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t k = write(w->fd, b, n > (1u << 30) ? (1u << 30) : n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return lmp_err(w->err, LMP_E_IO, "write to '%s' failed: %s", w->path, k < 0 ? strerror(errno) : "no progress");
        b += k;
        n -= (size_t)k;
    }
    return LMP_OK;
}

static lmp_status w_flush(writer *w) {
    lmp_status st = write_all(w, w->buf, w->len);
    w->len = 0;
    return st;
}

// Small pieces are gathered in the buffer; large ones go straight from the caller's memory.
static lmp_status w_put(writer *w, const void *p, size_t n) {
    if (n >= WBUF_SIZE / 2) {
        lmp_status st = w_flush(w);
        return st ? st : write_all(w, p, n);
    }
    if (w->len + n > WBUF_SIZE) {
        lmp_status st = w_flush(w);
        if (st) return st;
    }
    memcpy(w->buf + w->len, p, n);
    w->len += n;
    return LMP_OK;
}

static lmp_status w_zeros(writer *w, uint64_t n) {
    while (n > 0) {
        if (w->len == WBUF_SIZE) {
            lmp_status st = w_flush(w);
            if (st) return st;
        }
        size_t k = WBUF_SIZE - w->len;
        if (k > n) k = (size_t)n;
        memset(w->buf + w->len, 0, k);
        w->len += k;
        n -= k;
    }
    return LMP_OK;
}

// Best effort: makes the rename itself durable. Failure is not an error (some filesystems refuse it).
static void fsync_parent_dir(const char *path) {
    char *copy = lmp_strdup(path);
    if (!copy) return;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    lmp_free(copy);
}

// Streams the data section (CRCs computed on the way), then writes the head at offset 0.
static lmp_status write_body(writer *w, const layout *L, const lmp_meta *meta, const lmp_tensor *tensors,
                             size_t n, uint32_t *crcs, uint8_t *head) {
    lmp_status st = w_zeros(w, L->data_offset);
    uint64_t pos = 0;
    for (size_t i = 0; i < n && !st; i++) {
        if ((st = w_zeros(w, L->offset[i] - pos))) break;
        const uint8_t *p = tensors[i].data;
        uint64_t left = L->nbytes[i];
        uint32_t c = 0;
        while (left > 0 && !st) {
            size_t k = left > CRC_CHUNK ? CRC_CHUNK : (size_t)left;
            c = lmp_crc32(c, p, k);  // just before writing: the chunk is still in cache
            st = w_put(w, p, k);
            p += k;
            left -= k;
        }
        crcs[i] = c;
        pos = L->offset[i] + L->nbytes[i];
    }
    if (!st) st = w_flush(w);
    if (st) return st;
    serialise_head(head, L, meta, tensors, n, crcs);
    size_t done = 0, hn = (size_t)L->data_offset;
    while (done < hn) {
        ssize_t k = pwrite(w->fd, head + done, hn - done, (off_t)done);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return lmp_err(w->err, LMP_E_IO, "write to '%s' failed: %s", w->path, k < 0 ? strerror(errno) : "no progress");
        done += (size_t)k;
    }
    if (fsync(w->fd) != 0) return lmp_err(w->err, LMP_E_IO, "fsync of '%s' failed: %s", w->path, strerror(errno));
    return LMP_OK;
}

lmp_status lmp_file_write(const char *path, const lmp_meta *meta, const lmp_tensor *tensors, size_t n,
                          lmp_error *err) {
    if (!path || !*path) return lmp_err(err, LMP_E_ARG, "lmp_file_write: empty path");
    layout L;
    lmp_status st = compute_layout(meta, tensors, n, &L, err);
    if (st) return st;
    size_t tlen = strlen(path) + 32;
    char *tmp = lmp_malloc(tlen);
    uint32_t *crcs = lmp_malloc((n ? n : 1) * sizeof *crcs);
    uint8_t *head = lmp_calloc(1, (size_t)L.data_offset);
    uint8_t *wbuf = lmp_malloc(WBUF_SIZE);
    if (!tmp || !crcs || !head || !wbuf) {
        st = lmp_err(err, LMP_E_NOMEM, "out of memory writing '%s'", path);
        goto done;
    }
    snprintf(tmp, tlen, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno == EEXIST) {  // left by a crashed process with our pid
        unlink(tmp);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    }
    if (fd < 0) {
        st = lmp_err(err, LMP_E_IO, "cannot create '%s': %s", tmp, strerror(errno));
        goto done;
    }
    writer w = {fd, tmp, wbuf, 0, err};
    st = write_body(&w, &L, meta, tensors, n, crcs, head);
    if (close(fd) != 0 && !st) st = lmp_err(err, LMP_E_IO, "close of '%s' failed: %s", tmp, strerror(errno));
    if (!st && rename(tmp, path) != 0)
        st = lmp_err(err, LMP_E_IO, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
    if (st) unlink(tmp);
    else fsync_parent_dir(path);
done:
    lmp_free(tmp);
    lmp_free(crcs);
    lmp_free(head);
    lmp_free(wbuf);
    layout_free(&L);
    return st;
}

// ---- builder ----

struct lmp_builder {
    lmp_meta *meta;
    lmp_tensor *t;        // (n) views; names owned, data owned where own[i]
    unsigned char *own;   // (n)
    size_t n, cap;
};

lmp_builder *lmp_builder_new(void) {
    lmp_builder *b = lmp_calloc(1, sizeof *b);
    if (!b) return NULL;
    b->meta = lmp_meta_new();
    if (!b->meta) {
        lmp_free(b);
        return NULL;
    }
    return b;
}

void lmp_builder_free(lmp_builder *b) {
    if (!b) return;
    for (size_t i = 0; i < b->n; i++) {
        lmp_free((void *)b->t[i].name);
        if (b->own[i]) lmp_free(b->t[i].data);
    }
    lmp_free(b->t);
    lmp_free(b->own);
    lmp_meta_free(b->meta);
    lmp_free(b);
}

lmp_meta *lmp_builder_meta(lmp_builder *b) { return b ? b->meta : NULL; }
size_t lmp_builder_n_tensors(const lmp_builder *b) { return b ? b->n : 0; }
const lmp_tensor *lmp_builder_tensor(const lmp_builder *b, size_t i) {
    return b && i < b->n ? &b->t[i] : NULL;
}

// Linear: builders hold hundreds of tensors, and each name is looked up once when added.
const lmp_tensor *lmp_builder_find(const lmp_builder *b, const char *name) {
    if (!b || !name) return NULL;
    for (size_t i = 0; i < b->n; i++)
        if (strcmp(b->t[i].name, name) == 0) return &b->t[i];
    return NULL;
}

static lmp_status builder_add(lmp_builder *b, const char *name, lmp_dtype type, int ndim, const int64_t *shape,
                              void *data, int owned, lmp_error *err) {
    uint64_t nbytes = 0;
    lmp_status st = LMP_OK;
    char *copy = NULL;
    if (!b) st = lmp_err(err, LMP_E_ARG, "lmp_builder_add: NULL builder");
    else if (!(st = check_tensor_decl(name, type, ndim, shape, &nbytes, err))) {
        if (!data) st = lmp_err(err, LMP_E_ARG, "tensor '%s': no data", name);
        else if (lmp_builder_find(b, name)) st = lmp_err(err, LMP_E_ARG, "duplicate tensor name '%s'", name);
        else if (b->n >= (1u << 20)) st = lmp_err(err, LMP_E_ARG, "tensor '%s': more than 2^20 tensors", name);
    }
    if (!st && b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        lmp_tensor *t = lmp_realloc(b->t, cap * sizeof *t);
        if (t) b->t = t;
        unsigned char *own = t ? lmp_realloc(b->own, cap) : NULL;
        if (own) b->own = own;
        if (!t || !own) st = lmp_err(err, LMP_E_NOMEM, "out of memory adding tensor '%s'", name);
        else b->cap = cap;
    }
    if (!st && !(copy = lmp_strdup(name))) st = lmp_err(err, LMP_E_NOMEM, "out of memory adding tensor '%s'", name);
    if (st) {
        if (owned) lmp_free(data);
        return st;
    }
    lmp_tensor *t = &b->t[b->n];
    memset(t, 0, sizeof *t);
    t->name = copy;
    t->type = type;
    t->ndim = ndim;
    for (int d = 0; d < ndim; d++) t->shape[d] = shape[d];
    t->nbytes = nbytes;
    t->data = data;
    b->own[b->n] = (unsigned char)(owned != 0);
    b->n++;
    return LMP_OK;
}

lmp_status lmp_builder_add(lmp_builder *b, const char *name, lmp_dtype type, int ndim, const int64_t *shape,
                           void *data, lmp_error *err) {
    return builder_add(b, name, type, ndim, shape, data, 1, err);
}

lmp_status lmp_builder_add_ref(lmp_builder *b, const char *name, lmp_dtype type, int ndim,
                               const int64_t *shape, const void *data, lmp_error *err) {
    return builder_add(b, name, type, ndim, shape, (void *)data, 0, err);
}

lmp_status lmp_builder_write(const lmp_builder *b, const char *path, lmp_error *err) {
    if (!b) return lmp_err(err, LMP_E_ARG, "lmp_builder_write: NULL builder");
    return lmp_file_write(path, b->meta, b->t, b->n, err);
}

lmp_status lmp_builder_to_file(const lmp_builder *b, lmp_file **out, lmp_error *err) {
    if (out) *out = NULL;
    if (!b || !out) return lmp_err(err, LMP_E_ARG, "lmp_builder_to_file: NULL argument");
    void *buf;
    size_t size;
    lmp_status st = lmp_file_write_mem(b->meta, b->t, b->n, &buf, &size, err);
    if (st) return st;
    return lmp_file_open_mem(buf, size, 1, LMP_OPEN_SKIP_CRC, out, err);
}
