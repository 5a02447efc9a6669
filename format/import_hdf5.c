// import_hdf5.c - lmp_import_hdf5 and lmp_export_hdf5: the HDF5 schema of docs/hdf5.md.
//
// Import: root attributes -> scalar metadata, /metadata datasets -> array metadata, /tensors
// datasets -> tensors (f32, f16, bf16 via lmp_dtype, f64 converted to f32), every type, rank and size
// checked before data is read, then a Llama structure check (docs/hdf5.md, "Model checks").
// Export: the inverse, quantized tensors dequantized to f32 with a dequantized_from attribute, written
// to "<path>.tmp.<pid>" and renamed over path.
//
// HDF5's automatic error printing is switched off (process-wide) and failures become one line with
// HDF5's innermost message. It does not write chunked/compressed datasets, follow soft or external
// links, or read external/virtual dataset storage (refused: it would read other files).
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format/lmp_import.h"
#include "format/qtypes.h"

#define SCHEMA_VERSION 1
#define VERSION_ATTR "lmpress_hdf5_version"
#define MAX_META_COUNT ((uint64_t)1 << 28)   // elements of one metadata array
#define MAX_CHUNK_RATIO 1024                  // chunked data: announced bytes / stored bytes

// ---- errors ----

static herr_t walk_innermost(unsigned n, const H5E_error2_t *e, void *data) {
    if (n == 0 && e->desc) snprintf((char *)data, 256, "%s", e->desc);
    return 0;
}

// Fills err with "who: <message>[: <HDF5's innermost message>]" and clears HDF5's error stack.
static lmp_status h5_fail(lmp_error *err, lmp_status st, const char *who, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
static lmp_status h5_fail(lmp_error *err, lmp_status st, const char *who, const char *fmt, ...) {
    char msg[LMP_ERROR_MSG_MAX], inner[256] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk_innermost, inner);
    H5Eclear2(H5E_DEFAULT);
    if (inner[0]) return lmp_err(err, st, "%s: %s: %s", who, msg, inner);
    return lmp_err(err, st, "%s: %s", who, msg);
}

static void h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

static void close_id(hid_t *id, herr_t (*fn)(hid_t)) {
    if (*id >= 0) fn(*id);
    *id = -1;
}

// ---- types ----

// The HDF5 float16 layout h5py uses: IEEE binary16, little-endian.
static hid_t make_f16_type(void) {
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    if (t < 0) return -1;
    if (H5Tset_fields(t, 15, 10, 5, 0, 10) < 0 || H5Tset_size(t, 2) < 0 || H5Tset_ebias(t, 15) < 0) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

static int is_f16_type(hid_t t) {
    size_t spos, epos, esize, mpos, msize;
    if (H5Tget_class(t) != H5T_FLOAT || H5Tget_size(t) != 2) return 0;
    if (H5Tget_fields(t, &spos, &epos, &esize, &mpos, &msize) < 0) return 0;
    return spos == 15 && epos == 10 && esize == 5 && mpos == 0 && msize == 10 && H5Tget_ebias(t) == 15 &&
           H5Tget_norm(t) == H5T_NORM_IMPLIED;
}

// h5py's bool: an enum over a 1-byte integer with exactly FALSE = 0 and TRUE = 1.
static int is_bool_enum(hid_t t) {
    if (H5Tget_class(t) != H5T_ENUM || H5Tget_size(t) != 1 || H5Tget_nmembers(t) != 2) return 0;
    int ok = 1;
    for (unsigned i = 0; i < 2 && ok; i++) {
        char *name = H5Tget_member_name(t, i);
        signed char v = 0;
        if (!name || H5Tget_member_value(t, i, &v) < 0) ok = 0;
        else if (strcmp(name, "FALSE") == 0) ok = v == 0;
        else if (strcmp(name, "TRUE") == 0) ok = v == 1;
        else ok = 0;
        if (name) H5free_memory(name);
    }
    return ok;
}

static const char *class_name(H5T_class_t c) {
    switch (c) {
    case H5T_INTEGER: return "integer";
    case H5T_FLOAT: return "float";
    case H5T_TIME: return "time";
    case H5T_STRING: return "string";
    case H5T_BITFIELD: return "bitfield";
    case H5T_OPAQUE: return "opaque";
    case H5T_COMPOUND: return "compound";
    case H5T_REFERENCE: return "reference";
    case H5T_ENUM: return "enum";
    case H5T_VLEN: return "variable-length sequence";
    case H5T_ARRAY: return "array";
    default: return "unknown";
    }
}

// Maps a stored HDF5 type to a metadata element type; on failure describes the type in why.
static int kv_type_of(hid_t t, lmp_kv_type *out, char *why, size_t cap) {
    H5T_class_t c = H5Tget_class(t);
    size_t size = H5Tget_size(t);
    switch (c) {
    case H5T_INTEGER: {
        int sign = H5Tget_sign(t) == H5T_SGN_2;
        if (size <= 4) *out = sign ? LMP_KV_I32 : LMP_KV_U32;
        else if (size == 8) *out = sign ? LMP_KV_I64 : LMP_KV_U64;
        else break;
        return 1;
    }
    case H5T_FLOAT:
        if (size == 4) *out = LMP_KV_F32;
        else if (size == 8) *out = LMP_KV_F64;
        else break;
        return 1;
    case H5T_ENUM:
        if (!is_bool_enum(t)) {
            snprintf(why, cap, "an enum other than bool (FALSE=0, TRUE=1)");
            return 0;
        }
        *out = LMP_KV_BOOL;
        return 1;
    case H5T_STRING: *out = LMP_KV_STRING; return 1;
    default: break;
    }
    snprintf(why, cap, "a %zu-byte %s", size, class_name(c));
    return 0;
}

// Memory type to read elements of kind k stored as file type ft (strings handled apart).
static hid_t native_of(lmp_kv_type k, hid_t ft) {
    switch (k) {
    case LMP_KV_U32: return H5Tcopy(H5T_NATIVE_UINT32);
    case LMP_KV_I32: return H5Tcopy(H5T_NATIVE_INT32);
    case LMP_KV_U64: return H5Tcopy(H5T_NATIVE_UINT64);
    case LMP_KV_I64: return H5Tcopy(H5T_NATIVE_INT64);
    case LMP_KV_F32: return H5Tcopy(H5T_NATIVE_FLOAT);
    case LMP_KV_F64: return H5Tcopy(H5T_NATIVE_DOUBLE);
    case LMP_KV_BOOL: return H5Tcopy(ft);  // raw enum bytes
    default: return -1;
    }
}

static size_t kv_size(lmp_kv_type k) {
    switch (k) {
    case LMP_KV_U32: case LMP_KV_I32: case LMP_KV_F32: return 4;
    case LMP_KV_U64: case LMP_KV_I64: case LMP_KV_F64: return 8;
    case LMP_KV_BOOL: return 1;
    default: return 0;
    }
}

// ---- global heap guard ----
//
// Why: libhdf5 1.10 trusts the global heap (where variable-length strings live) when it reads them:
// a corrupted object size or string length makes H5HG_read copy far past its buffers (found by
// tests/test_import.c's corruption test). Before any variable-length data is read, every global heap
// collection in the file is walked and checked, and the elements of each /metadata string dataset
// are checked against the heap objects they name. Layout (HDF5 file format spec, "Global Heap"):
//   collection: "GCOL", u8 version 1, u8 reserved[3], u64 collection size (>= 4096, header included),
//               then objects { u16 index, u16 refcount, u32 reserved, u64 size, data padded to 8 },
//               index 0 being the free space (its size counts its header); < 16 trailing bytes allowed;
//   vlen element: u32 length, u64 collection address, u32 object index.
// Only files with 8-byte offsets and lengths (what h5py and this exporter write) are checked this way.

typedef struct h5_bytes {
    const uint8_t *p;  // (n) the whole file, mapped
    size_t n;
    uint64_t base;     // superblock offset: addresses are relative to it
    int sizes_ok;      // offsets and lengths are 8 bytes
} h5_bytes;

static uint64_t le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static int find_superblock(h5_bytes *h) {
    static const uint8_t sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    for (uint64_t off = 0; off + 16 <= h->n; off = off ? off * 2 : 512) {
        if (memcmp(h->p + off, sig, 8) != 0) continue;
        uint8_t v = h->p[off + 8];
        h->base = off;
        if (v <= 1) h->sizes_ok = off + 15 <= h->n && h->p[off + 13] == 8 && h->p[off + 14] == 8;
        else h->sizes_ok = h->p[off + 9] == 8 && h->p[off + 10] == 8;
        return 1;
    }
    return 0;
}

// Walks the collection whose header is at absolute offset at; finds object idx (if idx > 0) and
// returns its size in *size. Returns 0 when the collection is well-formed (and idx found, if asked),
// else writes the problem into why.
static int gcol_walk(const h5_bytes *h, uint64_t at, uint32_t idx, uint64_t *size, char *why, size_t cap) {
    if (at > h->n || h->n - at < 16 || memcmp(h->p + at, "GCOL", 4) != 0 || h->p[at + 4] != 1) {
        snprintf(why, cap, "no global heap collection at offset %llu", (unsigned long long)at);
        return -1;
    }
    uint64_t csize = le64(h->p + at + 8);
    if (csize < 4096 || csize > h->n - at) {
        snprintf(why, cap, "global heap collection at offset %llu: size %llu (file has %zu bytes)",
                 (unsigned long long)at, (unsigned long long)csize, h->n);
        return -1;
    }
    uint64_t p = at + 16, end = at + csize;
    int found = 0;
    while (end - p >= 16) {
        uint32_t i = (uint32_t)h->p[p] | (uint32_t)h->p[p + 1] << 8;
        uint64_t osize = le64(h->p + p + 8), need;
        if (i == 0) need = osize;
        else if (osize > end - p) need = UINT64_MAX;
        else need = 16 + ((osize + 7) & ~(uint64_t)7);
        if (need < 16 || need > end - p) {
            snprintf(why, cap, "global heap collection at offset %llu: object %u of %llu bytes at offset %llu runs past "
                     "the collection", (unsigned long long)at, i, (unsigned long long)osize, (unsigned long long)p);
            return -1;
        }
        if (idx && i == idx && !found) {
            found = 1;
            *size = osize;
        }
        p += need;
    }
    if (idx && !found) {
        snprintf(why, cap, "global heap collection at offset %llu has no object %u", (unsigned long long)at, idx);
        return -1;
    }
    return 0;
}

// Every collection in the file (found by signature) must be well-formed.
static lmp_status check_global_heaps(const h5_bytes *h, const char *who, lmp_error *err) {
    if (!h->sizes_ok) return LMP_OK;
    for (size_t i = 0; i + 16 <= h->n; i++) {
        const uint8_t *q = memchr(h->p + i, 'G', h->n - 16 - i + 1);
        if (!q) break;
        i = (size_t)(q - h->p);
        if (memcmp(q, "GCOL", 4) != 0 || q[4] != 1 || q[5] || q[6] || q[7]) continue;
        char why[200];
        uint64_t dummy;
        if (gcol_walk(h, i, 0, &dummy, why, sizeof why))
            return lmp_err(err, LMP_E_FORMAT, "%s: corrupt file: %s", who, why);
    }
    return LMP_OK;
}

// The elements of a contiguous variable-length string dataset must each name an existing heap
// object of exactly their length.
static lmp_status check_vlen_elements(const h5_bytes *h, hid_t ds, uint64_t count, const char *who, const char *what,
                                      lmp_error *err) {
    if (!h->sizes_ok || count == 0) return LMP_OK;
    hid_t dcpl = H5Dget_create_plist(ds);
    H5D_layout_t layout = dcpl >= 0 ? H5Pget_layout(dcpl) : H5D_LAYOUT_ERROR;
    if (dcpl >= 0) H5Pclose(dcpl);
    H5Eclear2(H5E_DEFAULT);
    if (layout != H5D_CONTIGUOUS)
        return lmp_err(err, LMP_E_UNSUPPORTED, "%s: %s: variable-length strings must be stored contiguously", who, what);
    haddr_t off = H5Dget_offset(ds);
    H5Eclear2(H5E_DEFAULT);
    uint64_t start = (uint64_t)off + h->base;
    if (off == HADDR_UNDEF || count > (h->n / 16) || start > h->n || h->n - start < count * 16)
        return lmp_err(err, LMP_E_FORMAT, "%s: %s: %llu strings do not fit in the file", who, what,
                       (unsigned long long)count);
    for (uint64_t i = 0; i < count; i++) {
        const uint8_t *e = h->p + start + 16 * i;
        uint32_t len = (uint32_t)e[0] | (uint32_t)e[1] << 8 | (uint32_t)e[2] << 16 | (uint32_t)e[3] << 24;
        uint64_t addr = le64(e + 4), osize = 0;
        uint32_t idx = (uint32_t)e[12] | (uint32_t)e[13] << 8 | (uint32_t)e[14] << 16 | (uint32_t)e[15] << 24;
        if (addr == 0 && len == 0) continue;
        char why[200] = "null address or index";
        if (addr > h->n) snprintf(why, sizeof why, "address %llu past the end of the file", (unsigned long long)addr);
        if (addr == 0 || idx == 0 || addr > h->n || gcol_walk(h, addr + h->base, idx, &osize, why, sizeof why))
            return lmp_err(err, LMP_E_FORMAT, "%s: %s: string %llu names a bad heap object (%s)", who, what,
                           (unsigned long long)i, why);
        if (osize != len)
            return lmp_err(err, LMP_E_FORMAT, "%s: %s: string %llu has length %u but its heap object holds %llu bytes", who,
                           what, (unsigned long long)i, len, (unsigned long long)osize);
    }
    return LMP_OK;
}

// ---- reading values (attributes and datasets alike) ----

typedef struct h5obj {
    hid_t id;
    int is_attr;
} h5obj;

static herr_t obj_read(h5obj o, hid_t mt, void *buf) {
    return o.is_attr ? H5Aread(o.id, mt, buf) : H5Dread(o.id, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
}

// Reads count strings of file type ft into an lmp_malloc'd array of lmp_malloc'd strings.
static lmp_status read_strings(h5obj o, hid_t ft, hid_t space, uint64_t count, char ***out, const char *who,
                               const char *what, lmp_error *err) {
    *out = NULL;
    char **res = lmp_calloc(count ? (size_t)count : 1, sizeof *res);
    if (!res) return lmp_err(err, LMP_E_NOMEM, "%s: out of memory reading %s", who, what);
    lmp_status st = LMP_OK;
    // Memory string type of the same kind, size, padding and character set (HDF5 does not convert
    // between ASCII and UTF-8).
    int is_var = H5Tis_variable_str(ft) > 0;
    hid_t mt = H5Tcopy(H5T_C_S1);
    if (mt >= 0 && (H5Tset_size(mt, is_var ? H5T_VARIABLE : H5Tget_size(ft)) < 0 ||
                    H5Tset_cset(mt, H5Tget_cset(ft)) < 0 || (!is_var && H5Tset_strpad(mt, H5Tget_strpad(ft)) < 0)))
        close_id(&mt, H5Tclose);
    if (mt < 0) {
        lmp_free(res);
        return h5_fail(err, LMP_E_FORMAT, who, "%s: unsupported string type", what);
    }
    if (is_var) {
        char **raw = lmp_calloc(count ? (size_t)count : 1, sizeof *raw);
        if (!raw) {
            st = lmp_err(err, LMP_E_NOMEM, "%s: out of memory reading %s", who, what);
        } else if (count && obj_read(o, mt, raw) < 0) {
            st = h5_fail(err, LMP_E_FORMAT, who, "%s: cannot read strings", what);
        } else {
            for (uint64_t i = 0; i < count && !st; i++) {
                res[i] = lmp_strdup(raw[i] ? raw[i] : "");
                if (!res[i]) st = lmp_err(err, LMP_E_NOMEM, "%s: out of memory reading %s", who, what);
            }
            if (count) H5Dvlen_reclaim(mt, space, H5P_DEFAULT, raw);
        }
        lmp_free(raw);
    } else {
        size_t w = H5Tget_size(ft);
        H5T_str_t pad = H5Tget_strpad(ft);
        uint64_t total;
        char *raw = NULL;
        if (w == 0 || lmp_mul_overflow(count, w, &total) || total > ((uint64_t)1 << 32))
            st = lmp_err(err, LMP_E_FORMAT, "%s: %s: %llu fixed-length strings of %zu bytes is too large", who, what,
                         (unsigned long long)count, w);
        else if (!(raw = lmp_malloc((size_t)total + 1)))
            st = lmp_err(err, LMP_E_NOMEM, "%s: out of memory reading %s", who, what);
        else if (count && obj_read(o, mt, raw) < 0)
            st = h5_fail(err, LMP_E_FORMAT, who, "%s: cannot read strings", what);
        for (uint64_t i = 0; i < count && !st; i++) {
            const char *s = raw + i * w;
            size_t len = 0;
            while (len < w && s[len]) len++;  // NULLTERM and NULLPAD end at the first NUL
            if (pad == H5T_STR_SPACEPAD)
                while (len && s[len - 1] == ' ') len--;
            res[i] = lmp_malloc(len + 1);
            if (!res[i]) {
                st = lmp_err(err, LMP_E_NOMEM, "%s: out of memory reading %s", who, what);
                break;
            }
            memcpy(res[i], s, len);
            res[i][len] = 0;
        }
        lmp_free(raw);
    }
    if (mt >= 0) H5Tclose(mt);
    if (st) {
        for (uint64_t i = 0; i < count; i++) lmp_free(res[i]);
        lmp_free(res);
        return st;
    }
    *out = res;
    return LMP_OK;
}

// Reads an attribute or a /metadata dataset (count elements; scalar when !is_array) into metadata key.
static lmp_status read_value(lmp_meta *m, const char *key, h5obj o, hid_t ft, hid_t space, int is_array,
                             uint64_t count, const char *who, const char *what, lmp_error *err) {
    lmp_kv_type k;
    char why[96];
    if (!kv_type_of(ft, &k, why, sizeof why))
        return lmp_err(err, LMP_E_UNSUPPORTED, "%s: %s: type is %s (not an lmpress metadata type)", who, what, why);
    lmp_kv kv;
    memset(&kv, 0, sizeof kv);
    lmp_status st = LMP_OK;
    if (k == LMP_KV_STRING) {
        char **s;
        if ((st = read_strings(o, ft, space, is_array ? count : 1, &s, who, what, err))) return st;
        if (is_array) {
            kv.type = LMP_KV_ARRAY;
            kv.elem_type = LMP_KV_STRING;
            kv.count = count;
            kv.data = s;
        } else {
            kv.type = LMP_KV_STRING;
            kv.count = strlen(s[0]);
            kv.data = s[0];
        }
        if (lmp_meta_set_kv(m, key, &kv)) st = lmp_err(err, LMP_E_NOMEM, "%s: out of memory storing %s", who, what);
        for (uint64_t i = 0; i < (is_array ? count : 1); i++) lmp_free(s[i]);
        lmp_free(s);
        return st;
    }
    size_t es = kv_size(k);
    uint64_t n = is_array ? count : 1;
    void *buf = lmp_malloc((size_t)(n * es) + 8);
    hid_t mt = native_of(k, ft);
    if (!buf || mt < 0) {
        st = buf ? h5_fail(err, LMP_E_FORMAT, who, "%s: cannot build a memory type", what)
                 : lmp_err(err, LMP_E_NOMEM, "%s: out of memory reading %s", who, what);
        goto done;
    }
    if (n && obj_read(o, mt, buf) < 0) {
        st = h5_fail(err, LMP_E_FORMAT, who, "%s: cannot read", what);
        goto done;
    }
    if (k == LMP_KV_BOOL) {
        for (uint64_t i = 0; i < n; i++)
            if (((unsigned char *)buf)[i] > 1) {
                st = lmp_err(err, LMP_E_FORMAT, "%s: %s: bool value %u is neither 0 nor 1", who, what,
                             ((unsigned char *)buf)[i]);
                goto done;
            }
    }
    if (is_array) {
        kv.type = LMP_KV_ARRAY;
        kv.elem_type = k;
        kv.count = n;
        kv.data = buf;
    } else {
        kv.type = k;
        memcpy(&kv.v, buf, es);
    }
    if (lmp_meta_set_kv(m, key, &kv)) st = lmp_err(err, LMP_E_NOMEM, "%s: out of memory storing %s", who, what);
done:
    if (mt >= 0) H5Tclose(mt);
    lmp_free(buf);
    return st;
}

// Creation order when the group tracks it (as our exporter and h5py's track_order write), else names.
static H5_index_t link_order(hid_t g) {
    unsigned flags = 0;
    hid_t p = H5Gget_create_plist(g);
    if (p >= 0) {
        if (H5Pget_link_creation_order(p, &flags) < 0) flags = 0;
        H5Pclose(p);
    }
    H5Eclear2(H5E_DEFAULT);
    return (flags & H5P_CRT_ORDER_INDEXED) ? H5_INDEX_CRT_ORDER : H5_INDEX_NAME;
}

static H5_index_t attr_order(hid_t g) {
    unsigned flags = 0;
    hid_t p = H5Gget_create_plist(g);
    if (p >= 0) {
        if (H5Pget_attr_creation_order(p, &flags) < 0) flags = 0;
        H5Pclose(p);
    }
    H5Eclear2(H5E_DEFAULT);
    return (flags & H5P_CRT_ORDER_INDEXED) ? H5_INDEX_CRT_ORDER : H5_INDEX_NAME;
}

static int valid_name(const char *s, size_t len) { return len >= 1 && len <= LMP_MAX_NAME_LEN && strlen(s) == len; }

// Root attributes: the version marker and one scalar metadata key each.
static lmp_status read_root_attrs(hid_t root, lmp_meta *m, const char *who, lmp_error *err) {
    H5O_info_t oi;
    if (H5Oget_info2(root, &oi, H5O_INFO_NUM_ATTRS) < 0)
        return h5_fail(err, LMP_E_FORMAT, who, "cannot list the root attributes");
    H5_index_t order = attr_order(root);
    for (hsize_t i = 0; i < oi.num_attrs; i++) {
        h5obj a = {H5Aopen_by_idx(root, ".", order, H5_ITER_INC, i, H5P_DEFAULT, H5P_DEFAULT), 1};
        if (a.id < 0) return h5_fail(err, LMP_E_FORMAT, who, "cannot open root attribute %llu", (unsigned long long)i);
        char name[LMP_MAX_NAME_LEN + 2], what[LMP_MAX_NAME_LEN + 32];
        ssize_t nl = H5Aget_name(a.id, sizeof name, name);
        hid_t ft = H5Aget_type(a.id), sp = H5Aget_space(a.id);
        lmp_status st = LMP_OK;
        if (nl < 0 || ft < 0 || sp < 0) {
            st = h5_fail(err, LMP_E_FORMAT, who, "cannot read root attribute %llu", (unsigned long long)i);
        } else if (!valid_name(name, (size_t)nl)) {
            st = lmp_err(err, LMP_E_FORMAT, "%s: root attribute name of %zd bytes (must be 1..%d, no NUL)", who, nl,
                         LMP_MAX_NAME_LEN);
        } else if (H5Sget_simple_extent_type(sp) != H5S_SCALAR) {
            st = lmp_err(err, LMP_E_FORMAT, "%s: root attribute '%s': rank %d dataspace, expected a scalar (arrays go in "
                         "/metadata)", who, name, H5Sget_simple_extent_ndims(sp));
        } else if (strcmp(name, VERSION_ATTR) == 0) {
            long long v = 0;
            if (H5Tget_class(ft) != H5T_INTEGER || H5Aread(a.id, H5T_NATIVE_LLONG, &v) < 0)
                st = h5_fail(err, LMP_E_FORMAT, who, "root attribute '%s' is not an integer", VERSION_ATTR);
            else if (v != SCHEMA_VERSION)
                st = lmp_err(err, LMP_E_UNSUPPORTED, "%s: unsupported %s %lld (this build reads %d)", who, VERSION_ATTR,
                             v, SCHEMA_VERSION);
        } else {
            snprintf(what, sizeof what, "root attribute '%s'", name);
            st = read_value(m, name, a, ft, sp, 0, 1, who, what, err);
        }
        if (ft >= 0) H5Tclose(ft);
        if (sp >= 0) H5Sclose(sp);
        H5Aclose(a.id);
        if (st) return st;
    }
    return LMP_OK;
}

// Opens link i of group g (in order) as a dataset, refusing anything but a hard link to a dataset.
// name receives the link name.
static lmp_status open_member(hid_t g, const char *gname, H5_index_t order, hsize_t i, char *name, size_t cap,
                              hid_t *ds, const char *who, lmp_error *err) {
    *ds = -1;
    ssize_t nl = H5Lget_name_by_idx(g, ".", order, H5_ITER_INC, i, name, cap, H5P_DEFAULT);
    if (nl < 0) return h5_fail(err, LMP_E_FORMAT, who, "cannot read link %llu of %s", (unsigned long long)i, gname);
    if (!valid_name(name, (size_t)nl))
        return lmp_err(err, LMP_E_FORMAT, "%s: %s: member name of %zd bytes (must be 1..%d)", who, gname, nl,
                       LMP_MAX_NAME_LEN);
    H5L_info_t li;
    if (H5Lget_info(g, name, &li, H5P_DEFAULT) < 0)
        return h5_fail(err, LMP_E_FORMAT, who, "%s/%s: cannot read the link", gname, name);
    if (li.type != H5L_TYPE_HARD)
        return lmp_err(err, LMP_E_UNSUPPORTED, "%s: %s/%s is a soft or external link (not followed)", who, gname, name);
    hid_t o = H5Oopen(g, name, H5P_DEFAULT);
    if (o < 0) return h5_fail(err, LMP_E_FORMAT, who, "%s/%s: cannot open", gname, name);
    if (H5Iget_type(o) != H5I_DATASET) {
        H5Oclose(o);
        return lmp_err(err, LMP_E_FORMAT, "%s: %s/%s is a group or named type, expected a dataset", who, gname, name);
    }
    *ds = o;
    return LMP_OK;
}

// Refuses storage that would read other files, and checks that the stored bytes can hold what the
// shape announces (so a tiny file cannot make us allocate terabytes).
static lmp_status check_storage(hid_t ds, uint64_t nbytes, const char *who, const char *what, lmp_error *err) {
    hid_t dcpl = H5Dget_create_plist(ds);
    if (dcpl < 0) return h5_fail(err, LMP_E_FORMAT, who, "%s: cannot read the creation properties", what);
    H5D_layout_t layout = H5Pget_layout(dcpl);
    int ext = H5Pget_external_count(dcpl);
    H5Pclose(dcpl);
    if (ext != 0 || layout == H5D_VIRTUAL)
        return lmp_err(err, LMP_E_UNSUPPORTED, "%s: %s: external or virtual storage is not supported", who, what);
    if (nbytes == 0) return LMP_OK;
    uint64_t stored = H5Dget_storage_size(ds);
    if (layout == H5D_CONTIGUOUS && stored != nbytes)
        return lmp_err(err, LMP_E_FORMAT, "%s: %s: %llu bytes stored, the shape and type need %llu", who, what,
                       (unsigned long long)stored, (unsigned long long)nbytes);
    if (layout == H5D_CHUNKED && (stored == 0 || nbytes / MAX_CHUNK_RATIO > stored))
        return lmp_err(err, LMP_E_FORMAT, "%s: %s: %llu bytes stored for %llu announced (implausible)", who, what,
                       (unsigned long long)stored, (unsigned long long)nbytes);
    return LMP_OK;
}

// Rank and dimensions of a dataset's dataspace (rank -1 for null dataspaces).
static int get_dims(hid_t sp, hsize_t dims[H5S_MAX_RANK]) {
    if (H5Sget_simple_extent_type(sp) == H5S_NULL) return -1;
    int r = H5Sget_simple_extent_ndims(sp);
    if (r < 0 || r > H5S_MAX_RANK) return -1;
    if (r > 0 && H5Sget_simple_extent_dims(sp, dims, NULL) < 0) return -1;
    return r;
}

static lmp_status read_meta_group(hid_t file, const h5_bytes *h, lmp_meta *m, const char *who, lmp_error *err) {
    hid_t g = H5Gopen2(file, "metadata", H5P_DEFAULT);
    if (g < 0) return h5_fail(err, LMP_E_FORMAT, who, "/metadata is not a group");
    H5G_info_t gi;
    lmp_status st = LMP_OK;
    if (H5Gget_info(g, &gi) < 0) {
        H5Gclose(g);
        return h5_fail(err, LMP_E_FORMAT, who, "cannot list /metadata");
    }
    H5_index_t order = link_order(g);
    for (hsize_t i = 0; i < gi.nlinks && !st; i++) {
        char name[LMP_MAX_NAME_LEN + 2], what[LMP_MAX_NAME_LEN + 32];
        hid_t ds, ft = -1, sp = -1;
        if ((st = open_member(g, "/metadata", order, i, name, sizeof name, &ds, who, err))) break;
        snprintf(what, sizeof what, "metadata dataset '%s'", name);
        hsize_t dims[H5S_MAX_RANK];
        ft = H5Dget_type(ds);
        sp = H5Dget_space(ds);
        int r = sp >= 0 ? get_dims(sp, dims) : -1;
        if (ft < 0 || sp < 0) st = h5_fail(err, LMP_E_FORMAT, who, "%s: cannot read its type or shape", what);
        else if (lmp_meta_find(m, name))
            st = lmp_err(err, LMP_E_FORMAT, "%s: metadata key '%s' appears both as a root attribute and in /metadata",
                         who, name);
        else if (r != 1)
            st = lmp_err(err, LMP_E_FORMAT, "%s: %s: rank %d, expected 1", who, what, r);
        else if (dims[0] > MAX_META_COUNT)
            st = lmp_err(err, LMP_E_FORMAT, "%s: %s: %llu elements (limit %llu)", who, what,
                         (unsigned long long)dims[0], (unsigned long long)MAX_META_COUNT);
        else if (!(st = check_storage(ds, H5Tis_variable_str(ft) > 0 ? 0 : dims[0] * H5Tget_size(ft), who, what, err)) &&
                 !(st = H5Tis_variable_str(ft) > 0 ? check_vlen_elements(h, ds, dims[0], who, what, err) : LMP_OK))
            st = read_value(m, name, (h5obj){ds, 0}, ft, sp, 1, dims[0], who, what, err);
        close_id(&ft, H5Tclose);
        close_id(&sp, H5Sclose);
        H5Oclose(ds);
    }
    H5Gclose(g);
    return st;
}

// Reads one /tensors dataset into the builder.
static lmp_status read_tensor(lmp_builder *b, hid_t ds, const char *name, const char *who, lmp_error *err) {
    char what[LMP_MAX_NAME_LEN + 16];
    snprintf(what, sizeof what, "tensor '%s'", name);
    hid_t ft = H5Dget_type(ds), sp = H5Dget_space(ds), mt = -1;
    hsize_t dims[H5S_MAX_RANK];
    int64_t shape[LMP_MAX_DIMS];
    char tag[32] = "";
    void *buf = NULL;
    lmp_status st = LMP_OK;
    int r = sp >= 0 ? get_dims(sp, dims) : -1;
    uint64_t nel = 1;
    if (ft < 0 || sp < 0) {
        st = h5_fail(err, LMP_E_FORMAT, who, "%s: cannot read its type or shape", what);
        goto done;
    }
    if (r < 1 || r > LMP_MAX_DIMS) {
        st = lmp_err(err, LMP_E_FORMAT, "%s: %s: rank %d dataset (1..%d supported)", who, what, r, LMP_MAX_DIMS);
        goto done;
    }
    for (int d = 0; d < r; d++) {
        if (dims[d] < 1 || dims[d] > LMP_MAX_DIM_SIZE || lmp_mul_overflow(nel, dims[d], &nel)) {
            st = lmp_err(err, LMP_E_FORMAT, "%s: %s: dimension %d is %llu (must be 1..2^40)", who, what, d,
                         (unsigned long long)dims[d]);
            goto done;
        }
        shape[d] = (int64_t)dims[d];
    }
    if (H5Aexists(ds, "lmp_dtype") > 0) {
        h5obj a = {H5Aopen(ds, "lmp_dtype", H5P_DEFAULT), 1};
        hid_t at = a.id >= 0 ? H5Aget_type(a.id) : -1, as = a.id >= 0 ? H5Aget_space(a.id) : -1;
        char **s = NULL;
        if (at < 0 || as < 0 || H5Tget_class(at) != H5T_STRING || H5Sget_simple_extent_type(as) != H5S_SCALAR)
            st = h5_fail(err, LMP_E_FORMAT, who, "%s: attribute lmp_dtype is not a scalar string", what);
        else if (!(st = read_strings(a, at, as, 1, &s, who, "lmp_dtype", err)))
            snprintf(tag, sizeof tag, "%s", s[0]);
        if (s) lmp_free(s[0]);
        lmp_free(s);
        close_id(&at, H5Tclose);
        close_id(&as, H5Sclose);
        if (a.id >= 0) H5Aclose(a.id);
        if (st) goto done;
    }
    H5T_class_t c = H5Tget_class(ft);
    size_t fsize = H5Tget_size(ft);
    lmp_dtype dt;
    if (c == H5T_FLOAT && fsize == 4) {
        dt = LMP_DTYPE_F32;
        mt = H5Tcopy(H5T_NATIVE_FLOAT);
    } else if (c == H5T_FLOAT && fsize == 8) {
        dt = LMP_DTYPE_F32;  // hand-made float64 checkpoints: converted
        mt = H5Tcopy(H5T_NATIVE_FLOAT);
    } else if (is_f16_type(ft)) {
        dt = LMP_DTYPE_F16;
        mt = H5Tcopy(ft);
        if (mt >= 0 && H5Tset_order(mt, H5T_ORDER_LE) < 0) close_id(&mt, H5Tclose);
    } else if (c == H5T_INTEGER && fsize == 2 && H5Tget_sign(ft) == H5T_SGN_NONE && strcmp(tag, "bf16") == 0) {
        dt = LMP_DTYPE_BF16;
        mt = H5Tcopy(H5T_NATIVE_UINT16);
    } else {
        st = lmp_err(err, LMP_E_UNSUPPORTED, "%s: %s: a %zu-byte %s dataset%s is not a supported tensor type (float32, "
                     "float16, float64, or uint16 with lmp_dtype = \"bf16\")", who, what, fsize, class_name(c),
                     c == H5T_INTEGER && !tag[0] ? " without lmp_dtype" : "");
        goto done;
    }
    if (tag[0] && strcmp(tag, lmp_type_name(dt)) != 0) {
        st = lmp_err(err, LMP_E_FORMAT, "%s: %s: lmp_dtype '%s' does not match its %zu-byte %s data", who, what, tag,
                     fsize, class_name(c));
        goto done;
    }
    if (mt < 0) {
        st = h5_fail(err, LMP_E_FORMAT, who, "%s: cannot build a memory type", what);
        goto done;
    }
    uint64_t fbytes;
    if (lmp_mul_overflow(nel, fsize, &fbytes)) {
        st = lmp_err(err, LMP_E_FORMAT, "%s: %s: size overflows", who, what);
        goto done;
    }
    if ((st = check_storage(ds, fbytes, who, what, err))) goto done;
    uint64_t nbytes = lmp_tensor_expected_bytes(dt, r, shape);
    if (nbytes == 0 || nbytes > SIZE_MAX) {
        st = lmp_err(err, LMP_E_FORMAT, "%s: %s: size overflows", who, what);
        goto done;
    }
    if (!(buf = lmp_malloc((size_t)nbytes))) {
        st = lmp_err(err, LMP_E_NOMEM, "%s: out of memory reading %s (%llu bytes)", who, what,
                     (unsigned long long)nbytes);
        goto done;
    }
    if (H5Dread(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        st = h5_fail(err, LMP_E_FORMAT, who, "%s: cannot read the data", what);
        goto done;
    }
    st = lmp_builder_add(b, name, dt, r, shape, buf, err);  // owns buf from here, even on error
    buf = NULL;
done:
    lmp_free(buf);
    close_id(&mt, H5Tclose);
    close_id(&ft, H5Tclose);
    close_id(&sp, H5Sclose);
    return st;
}

static lmp_status read_tensors(hid_t file, lmp_builder *b, const char *who, lmp_error *err) {
    if (H5Lexists(file, "tensors", H5P_DEFAULT) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return lmp_err(err, LMP_E_FORMAT, "%s: no /tensors group", who);
    }
    hid_t g = H5Gopen2(file, "tensors", H5P_DEFAULT);
    if (g < 0) return h5_fail(err, LMP_E_FORMAT, who, "/tensors is not a group");
    H5G_info_t gi;
    if (H5Gget_info(g, &gi) < 0) {
        H5Gclose(g);
        return h5_fail(err, LMP_E_FORMAT, who, "cannot list /tensors");
    }
    H5_index_t order = link_order(g);
    lmp_status st = LMP_OK;
    if (gi.nlinks == 0) st = lmp_err(err, LMP_E_FORMAT, "%s: /tensors is empty", who);
    for (hsize_t i = 0; i < gi.nlinks && !st; i++) {
        char name[LMP_MAX_NAME_LEN + 2];
        hid_t ds;
        if ((st = open_member(g, "/tensors", order, i, name, sizeof name, &ds, who, err))) break;
        st = read_tensor(b, ds, name, who, err);
        H5Oclose(ds);
    }
    H5Gclose(g);
    return st;
}

// ---- Llama structure check ----

static void shape_str(char *buf, size_t cap, const lmp_tensor *t) {
    size_t o = (size_t)snprintf(buf, cap, "(");
    for (int d = 0; d < t->ndim && o < cap; d++)
        o += (size_t)snprintf(buf + o, cap - o, d ? ", %lld" : "%lld", (long long)t->shape[d]);
    if (o < cap) snprintf(buf + o, cap - o, t->ndim == 1 ? ",)" : ")");
}

// Finds name, checks its rank and, where want[d] > 0, its dimensions.
static lmp_status want_tensor(const lmp_builder *b, const char *name, int optional, int ndim, int64_t d0, int64_t d1,
                              const lmp_tensor **out, const char *who, lmp_error *err) {
    const lmp_tensor *t = lmp_builder_find(b, name);
    *out = t;
    if (!t) return optional ? LMP_OK : lmp_err(err, LMP_E_FORMAT, "%s: missing tensor '%s'", who, name);
    if (t->ndim != ndim)
        return lmp_err(err, LMP_E_FORMAT, "%s: tensor '%s' has rank %d, expected %d", who, name, t->ndim, ndim);
    if ((d0 > 0 && t->shape[0] != d0) || (ndim > 1 && d1 > 0 && t->shape[1] != d1)) {
        char got[96], want[96];
        shape_str(got, sizeof got, t);
        if (ndim == 1) snprintf(want, sizeof want, "(%lld,)", (long long)d0);
        else if (d0 > 0) snprintf(want, sizeof want, "(%lld, %lld)", (long long)d0, (long long)d1);
        else snprintf(want, sizeof want, "(*, %lld)", (long long)d1);
        return lmp_err(err, LMP_E_FORMAT, "%s: tensor '%s' has shape %s, expected %s", who, name, got, want);
    }
    return LMP_OK;
}

static lmp_status check_llama(const lmp_builder *b, const char *who, lmp_error *err) {
    const lmp_meta *m = lmp_builder_meta((lmp_builder *)b);
    uint32_t dim, n_layers;
    lmp_status st;
    if ((st = lmp_meta_get_u32(m, "llama.embedding_length", &dim, err)) ||
        (st = lmp_meta_get_u32(m, "llama.block_count", &n_layers, err)))
    {
        return lmp_err_prefix(err, st, "%s", who);
    }
    if (dim == 0 || n_layers == 0 || n_layers > 4096)
        return lmp_err(err, LMP_E_FORMAT, "%s: llama.embedding_length %u / llama.block_count %u out of range", who, dim,
                       n_layers);
    const lmp_tensor *emb, *t, *q, *k, *g;
    if ((st = want_tensor(b, "token_embd.weight", 0, 2, 0, dim, &emb, who, err)) ||
        (st = want_tensor(b, "output_norm.weight", 0, 1, dim, 0, &t, who, err)) ||
        (st = want_tensor(b, "output.weight", 1, 2, emb->shape[0], dim, &t, who, err)))
        return st;
    for (uint32_t l = 0; l < n_layers; l++) {
        char n[9][64];
        static const char *parts[9] = {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                                       "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"};
        for (int j = 0; j < 9; j++) snprintf(n[j], sizeof n[j], "blk.%u.%s.weight", l, parts[j]);
        if ((st = want_tensor(b, n[0], 0, 1, dim, 0, &t, who, err)) ||
            (st = want_tensor(b, n[1], 0, 2, 0, dim, &q, who, err)) ||
            (st = want_tensor(b, n[2], 0, 2, 0, dim, &k, who, err)) ||
            (st = want_tensor(b, n[3], 0, 2, k->shape[0], dim, &t, who, err)) ||
            (st = want_tensor(b, n[4], 0, 2, dim, q->shape[0], &t, who, err)) ||
            (st = want_tensor(b, n[5], 0, 1, dim, 0, &t, who, err)) ||
            (st = want_tensor(b, n[6], 0, 2, 0, dim, &g, who, err)) ||
            (st = want_tensor(b, n[7], 0, 2, g->shape[0], dim, &t, who, err)) ||
            (st = want_tensor(b, n[8], 0, 2, dim, g->shape[0], &t, who, err)))
            return st;
    }
    return LMP_OK;
}

// ---- import ----

// Maps the file (read-only) for its CRC and the global heap guard.
static lmp_status map_file(const char *path, h5_bytes *h, lmp_error *err) {
    memset(h, 0, sizeof *h);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return lmp_err(err, LMP_E_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return lmp_err(err, LMP_E_IO, "%s: not a regular file", path);
    }
    if (sb.st_size > 0) {
        void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            return lmp_err(err, LMP_E_IO, "%s: cannot map: %s", path, strerror(e));
        }
        h->p = p;
        h->n = (size_t)sb.st_size;
    }
    close(fd);
    return LMP_OK;
}

lmp_status lmp_import_hdf5(const char *path, const lmp_import_opts *opts, lmp_builder **out, lmp_error *err) {
    if (!out || !path) return lmp_err(err, LMP_E_ARG, "lmp_import_hdf5: NULL argument");
    *out = NULL;
    const char *who = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    h5_bytes h;
    lmp_status st = map_file(path, &h, err);
    if (st) return st;
    uint32_t crc = lmp_crc32(0, h.p, h.n);
    lmp_builder *b = NULL;
    hid_t file = -1, root = -1;
    h5_quiet();
    if (find_superblock(&h) && (st = check_global_heaps(&h, who, err))) goto done;
    file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) {
        st = h5_fail(err, LMP_E_FORMAT, who, "cannot open as HDF5");
        goto done;
    }
    b = lmp_builder_new();
    if (!b) {
        st = lmp_err(err, LMP_E_NOMEM, "%s: out of memory", who);
        goto done;
    }
    lmp_meta *m = lmp_builder_meta(b);
    root = H5Gopen2(file, "/", H5P_DEFAULT);
    if (root < 0) {
        st = h5_fail(err, LMP_E_FORMAT, who, "cannot open the root group");
        goto done;
    }
    if ((st = read_root_attrs(root, m, who, err))) goto done;
    htri_t has_meta = H5Lexists(file, "metadata", H5P_DEFAULT);
    H5Eclear2(H5E_DEFAULT);
    if (has_meta > 0 && (st = read_meta_group(file, &h, m, who, err))) goto done;
    if ((st = read_tensors(file, b, who, err))) goto done;
    if (!lmp_meta_find(m, "general.architecture") && lmp_meta_set_str(m, "general.architecture", "llama")) {
        st = lmp_err(err, LMP_E_NOMEM, "%s: out of memory", who);
        goto done;
    }
    const char *arch = NULL;
    if ((st = lmp_meta_get_str(m, "general.architecture", &arch, err))) {
        lmp_err_prefix(err, st, "%s", who);
        goto done;
    }
    if (strcmp(arch, "llama") == 0 && (st = check_llama(b, who, err))) goto done;
    if (lmp_meta_set_str(m, "provenance.tool", "lmpress " LMP_VERSION_STRING) ||
        lmp_meta_set_str(m, "provenance.source", path) || lmp_meta_set_u32(m, "provenance.source_crc32", crc))
        st = lmp_err(err, LMP_E_NOMEM, "%s: out of memory", who);
done:
    if (root >= 0) H5Gclose(root);
    if (file >= 0 && H5Fclose(file) < 0 && !st) st = h5_fail(err, LMP_E_IO, who, "cannot close");
    H5Eclear2(H5E_DEFAULT);
    if (h.p) munmap((void *)h.p, h.n);
    if (st) {
        lmp_builder_free(b);
        return st;
    }
    *out = b;
    return LMP_OK;
}

// ---- export ----

static hid_t file_type_of(lmp_kv_type k) {
    switch (k) {
    case LMP_KV_U32: return H5Tcopy(H5T_STD_U32LE);
    case LMP_KV_I32: return H5Tcopy(H5T_STD_I32LE);
    case LMP_KV_U64: return H5Tcopy(H5T_STD_U64LE);
    case LMP_KV_I64: return H5Tcopy(H5T_STD_I64LE);
    case LMP_KV_F32: return H5Tcopy(H5T_IEEE_F32LE);
    case LMP_KV_F64: return H5Tcopy(H5T_IEEE_F64LE);
    case LMP_KV_BOOL: {
        hid_t t = H5Tenum_create(H5T_NATIVE_INT8);
        signed char f = 0, tr = 1;
        if (t >= 0 && (H5Tenum_insert(t, "FALSE", &f) < 0 || H5Tenum_insert(t, "TRUE", &tr) < 0)) {
            H5Tclose(t);
            return -1;
        }
        return t;
    }
    case LMP_KV_STRING: {
        hid_t t = H5Tcopy(H5T_C_S1);
        if (t >= 0 && (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0)) {
            H5Tclose(t);
            return -1;
        }
        return t;
    }
    default: return -1;
    }
}

// Memory type for writing: native numbers; the bool enum and strings as their file type.
static hid_t mem_type_of(lmp_kv_type k) {
    switch (k) {
    case LMP_KV_U32: return H5Tcopy(H5T_NATIVE_UINT32);
    case LMP_KV_I32: return H5Tcopy(H5T_NATIVE_INT32);
    case LMP_KV_U64: return H5Tcopy(H5T_NATIVE_UINT64);
    case LMP_KV_I64: return H5Tcopy(H5T_NATIVE_INT64);
    case LMP_KV_F32: return H5Tcopy(H5T_NATIVE_FLOAT);
    case LMP_KV_F64: return H5Tcopy(H5T_NATIVE_DOUBLE);
    default: return file_type_of(k);
    }
}

static lmp_status write_string_attr(hid_t obj, const char *name, const char *value, const char *who, lmp_error *err) {
    hid_t t = file_type_of(LMP_KV_STRING), sp = H5Screate(H5S_SCALAR), a = -1;
    lmp_status st = LMP_OK;
    if (t < 0 || sp < 0 || (a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
        H5Awrite(a, t, &value) < 0)
        st = h5_fail(err, LMP_E_IO, who, "cannot write attribute '%s'", name);
    close_id(&a, H5Aclose);
    close_id(&t, H5Tclose);
    close_id(&sp, H5Sclose);
    return st;
}

static lmp_status write_kv(hid_t root, hid_t mgroup, const lmp_kv *kv, const char *who, lmp_error *err) {
    if (strchr(kv->key, '/'))
        return lmp_err(err, LMP_E_UNSUPPORTED, "%s: metadata key '%s' contains '/' (not representable in HDF5)", who,
                       kv->key);
    if (strcmp(kv->key, VERSION_ATTR) == 0)
        return lmp_err(err, LMP_E_UNSUPPORTED, "%s: metadata key '%s' is reserved by the HDF5 schema", who, kv->key);
    if (kv->type != LMP_KV_ARRAY) {
        if (kv->type == LMP_KV_STRING) return write_string_attr(root, kv->key, kv->data, who, err);
        hid_t ft = file_type_of(kv->type), mt = mem_type_of(kv->type), sp = H5Screate(H5S_SCALAR), a = -1;
        lmp_status st = LMP_OK;
        if (ft < 0 || mt < 0 || sp < 0 || (a = H5Acreate2(root, kv->key, ft, sp, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
            H5Awrite(a, mt, &kv->v) < 0)
            st = h5_fail(err, LMP_E_IO, who, "cannot write attribute '%s'", kv->key);
        close_id(&a, H5Aclose);
        close_id(&ft, H5Tclose);
        close_id(&mt, H5Tclose);
        close_id(&sp, H5Sclose);
        return st;
    }
    hsize_t dims[1] = {kv->count};
    hid_t ft = file_type_of(kv->elem_type), mt = mem_type_of(kv->elem_type), sp = H5Screate_simple(1, dims, NULL);
    hid_t ds = -1;
    lmp_status st = LMP_OK;
    if (ft < 0 || mt < 0 || sp < 0 ||
        (ds = H5Dcreate2(mgroup, kv->key, ft, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
        (kv->count && H5Dwrite(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, kv->data) < 0))
        st = h5_fail(err, LMP_E_IO, who, "cannot write metadata dataset '%s'", kv->key);
    close_id(&ds, H5Dclose);
    close_id(&ft, H5Tclose);
    close_id(&mt, H5Tclose);
    close_id(&sp, H5Sclose);
    return st;
}

static lmp_status write_tensor(hid_t g, const lmp_tensor *t, const char *who, lmp_error *err) {
    if (strchr(t->name, '/') || strcmp(t->name, ".") == 0)
        return lmp_err(err, LMP_E_UNSUPPORTED, "%s: tensor name '%s' is not representable in HDF5", who, t->name);
    const lmp_type_traits *tt = lmp_type_get(t->type);
    if (!tt) return lmp_err(err, LMP_E_ARG, "%s: tensor '%s': unknown dtype %d", who, t->name, (int)t->type);
    hsize_t dims[LMP_MAX_DIMS];
    for (int d = 0; d < t->ndim; d++) dims[d] = (hsize_t)t->shape[d];
    int64_t nel = lmp_tensor_nelements(t);
    const void *data = t->data;
    float *deq = NULL;
    hid_t ft = -1, mt = -1, sp = H5Screate_simple(t->ndim, dims, NULL), ds = -1;
    lmp_status st = LMP_OK;
    const char *tag = NULL, *tag_name = NULL;
    switch (t->type) {
    case LMP_DTYPE_F32:
        ft = H5Tcopy(H5T_IEEE_F32LE);
        mt = H5Tcopy(H5T_NATIVE_FLOAT);
        break;
    case LMP_DTYPE_F16:
        ft = make_f16_type();
        mt = make_f16_type();
        break;
    case LMP_DTYPE_BF16:
        ft = H5Tcopy(H5T_STD_U16LE);
        mt = H5Tcopy(H5T_NATIVE_UINT16);
        tag_name = "lmp_dtype";
        tag = "bf16";
        break;
    default:
        if (nel <= 0 || !tt->to_float || (uint64_t)nel > SIZE_MAX / sizeof(float)) {
            st = lmp_err(err, LMP_E_ARG, "%s: tensor '%s': cannot dequantize type %s", who, t->name, tt->name);
            break;
        }
        deq = lmp_malloc((size_t)nel * sizeof(float));
        if (!deq) {
            st = lmp_err(err, LMP_E_NOMEM, "%s: out of memory dequantizing tensor '%s'", who, t->name);
            break;
        }
        tt->to_float(t->data, deq, nel);
        data = deq;
        ft = H5Tcopy(H5T_IEEE_F32LE);
        mt = H5Tcopy(H5T_NATIVE_FLOAT);
        tag_name = "dequantized_from";
        tag = tt->name;
        break;
    }
    if (!st && (ft < 0 || mt < 0 || sp < 0 ||
                (ds = H5Dcreate2(g, t->name, ft, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
                H5Dwrite(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0))
        st = h5_fail(err, LMP_E_IO, who, "cannot write tensor '%s'", t->name);
    if (!st && tag) st = write_string_attr(ds, tag_name, tag, who, err);
    close_id(&ds, H5Dclose);
    close_id(&ft, H5Tclose);
    close_id(&mt, H5Tclose);
    close_id(&sp, H5Sclose);
    lmp_free(deq);
    return st;
}

static hid_t ordered_gcpl(void) {
    hid_t p = H5Pcreate(H5P_GROUP_CREATE);
    if (p >= 0 && H5Pset_link_creation_order(p, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED) < 0) close_id(&p, H5Pclose);
    return p;
}

lmp_status lmp_export_hdf5(const lmp_file *f, const char *path, lmp_error *err) {
    if (!f || !path) return lmp_err(err, LMP_E_ARG, "lmp_export_hdf5: NULL argument");
    const char *who = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    size_t pl = strlen(path);
    char *tmp = lmp_malloc(pl + 32);
    if (!tmp) return lmp_err(err, LMP_E_NOMEM, "out of memory");
    snprintf(tmp, pl + 32, "%s.tmp.%ld", path, (long)getpid());
    h5_quiet();
    lmp_status st = LMP_OK;
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE), file = -1, mg = -1, tg = -1, gcpl = ordered_gcpl();
    if (fcpl < 0 || gcpl < 0 || H5Pset_link_creation_order(fcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED) < 0 ||
        H5Pset_attr_creation_order(fcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED) < 0) {
        st = h5_fail(err, LMP_E_IO, who, "cannot set up file properties");
        goto done;
    }
    file = H5Fcreate(tmp, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
    if (file < 0) {
        st = h5_fail(err, LMP_E_IO, who, "cannot create %s", tmp);
        goto done;
    }
    {
        hid_t t = H5Tcopy(H5T_STD_U32LE), sp = H5Screate(H5S_SCALAR), a = -1;
        uint32_t v = SCHEMA_VERSION;
        if (t < 0 || sp < 0 || (a = H5Acreate2(file, VERSION_ATTR, t, sp, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
            H5Awrite(a, H5T_NATIVE_UINT32, &v) < 0)
            st = h5_fail(err, LMP_E_IO, who, "cannot write attribute '%s'", VERSION_ATTR);
        close_id(&a, H5Aclose);
        close_id(&t, H5Tclose);
        close_id(&sp, H5Sclose);
        if (st) goto done;
    }
    const lmp_meta *m = lmp_file_meta(f);
    int has_arrays = 0;
    for (size_t i = 0; i < lmp_meta_count(m); i++) has_arrays |= lmp_meta_at(m, i)->type == LMP_KV_ARRAY;
    if (has_arrays && (mg = H5Gcreate2(file, "metadata", H5P_DEFAULT, gcpl, H5P_DEFAULT)) < 0) {
        st = h5_fail(err, LMP_E_IO, who, "cannot create /metadata");
        goto done;
    }
    for (size_t i = 0; i < lmp_meta_count(m) && !st; i++) st = write_kv(file, mg, lmp_meta_at(m, i), who, err);
    if (st) goto done;
    if ((tg = H5Gcreate2(file, "tensors", H5P_DEFAULT, gcpl, H5P_DEFAULT)) < 0) {
        st = h5_fail(err, LMP_E_IO, who, "cannot create /tensors");
        goto done;
    }
    for (size_t i = 0; i < lmp_file_n_tensors(f) && !st; i++) st = write_tensor(tg, lmp_file_tensor(f, i), who, err);
done:
    close_id(&tg, H5Gclose);
    close_id(&mg, H5Gclose);
    close_id(&gcpl, H5Pclose);
    close_id(&fcpl, H5Pclose);
    if (file >= 0 && H5Fclose(file) < 0 && !st) st = h5_fail(err, LMP_E_IO, who, "cannot close %s", tmp);
    H5Eclear2(H5E_DEFAULT);
    if (!st && rename(tmp, path) != 0) st = lmp_err(err, LMP_E_IO, "%s: cannot rename %s: %s", who, tmp, strerror(errno));
    if (st) unlink(tmp);
    lmp_free(tmp);
    return st;
}
