// test_format.c - the .lmp reader, writer, builder and metadata store (format/lmp_file.c, lmp_write.c,
// lmp_meta.c).
//
// Round trips of every metadata type and every storable dtype (memory and disk, random contents); the
// atomic replace and failure paths of lmp_file_write; an independent byte-level assembler of the
// format (docs/format.md) that must produce exactly the writer's bytes, and from which the malformed
// corpus is derived: one variant per reader check, each asserted on a distinctive part of its
// message; truncation at every prefix; allocation-failure walks.
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <sys/resource.h>

#include "format/lmp_format.h"
#include "format/qtypes.h"
#include "tests/test_util.h"

// ---- helpers ----

static int count_tmp_files(const char *dir, const char *base) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    char prefix[300];
    snprintf(prefix, sizeof prefix, "%s.tmp.", base);
    while ((e = readdir(d)))
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) n++;
    closedir(d);
    return n;
}

// Deep comparison of two metadata stores (order, keys, types, values).
static int meta_equal(const lmp_meta *a, const lmp_meta *b, char *why, size_t cap) {
    if (lmp_meta_count(a) != lmp_meta_count(b)) {
        snprintf(why, cap, "count %zu vs %zu", lmp_meta_count(a), lmp_meta_count(b));
        return 0;
    }
    for (size_t i = 0; i < lmp_meta_count(a); i++) {
        const lmp_kv *x = lmp_meta_at(a, i), *y = lmp_meta_at(b, i);
        snprintf(why, cap, "entry %zu '%s'", i, x->key);
        if (strcmp(x->key, y->key) || x->type != y->type) return 0;
        switch (x->type) {
        case LMP_KV_U32: case LMP_KV_I32: case LMP_KV_F32:
            if (memcmp(&x->v, &y->v, 4)) return 0;
            break;
        case LMP_KV_U64: case LMP_KV_I64: case LMP_KV_F64:
            if (memcmp(&x->v, &y->v, 8)) return 0;
            break;
        case LMP_KV_BOOL:
            if (x->v.b != y->v.b) return 0;
            break;
        case LMP_KV_STRING:
            if (x->count != y->count || memcmp(x->data, y->data, (size_t)x->count)) return 0;
            if (((const char *)y->data)[y->count] != 0) return 0;  // NUL-terminated copy
            break;
        case LMP_KV_ARRAY:
            if (x->elem_type != y->elem_type || x->count != y->count) return 0;
            if (x->elem_type == LMP_KV_STRING) {
                char *const *s = x->data, *const *t = y->data;
                for (uint64_t j = 0; j < x->count; j++) {
                    size_t lx = x->lens ? x->lens[j] : strlen(s[j]);
                    if (!y->lens || y->lens[j] != lx || memcmp(s[j], t[j], lx) || t[j][lx]) return 0;
                }
            } else {
                size_t es = x->elem_type == LMP_KV_BOOL ? 1
                            : (x->elem_type == LMP_KV_U64 || x->elem_type == LMP_KV_I64 || x->elem_type == LMP_KV_F64) ? 8
                                                                                                                       : 4;
                if (x->count && memcmp(x->data, y->data, (size_t)x->count * es)) return 0;
            }
            break;
        default: return 0;
        }
    }
    return 1;
}

static lmp_meta *make_all_types_meta(void) {
    lmp_meta *m = lmp_meta_new();
    lmp_meta_set_str(m, "general.name", "round trip");
    lmp_meta_set_str(m, "s.empty", "");
    lmp_meta_set_u32(m, "n.u32", 0xdeadbeefu);
    lmp_meta_set_i32(m, "n.i32", -123456);
    lmp_meta_set_u64(m, "n.u64", 0xfedcba9876543210ull);
    lmp_meta_set_i64(m, "n.i64", INT64_MIN + 5);
    lmp_meta_set_f32(m, "n.f32", -1.5e-7f);
    lmp_meta_set_f64(m, "n.f64", 3.141592653589793);
    lmp_meta_set_bool(m, "n.true", 1);
    lmp_meta_set_bool(m, "n.false", 0);
    uint32_t au32[5];
    int32_t ai32[3] = {-1, 0, 1};
    uint64_t au64[2] = {1, UINT64_MAX};
    int64_t ai64[2] = {INT64_MIN, INT64_MAX};
    float af32[4];
    double af64[3] = {1e300, -0.0, 2.5};
    uint8_t ab[4] = {1, 0, 0, 1};
    for (int i = 0; i < 5; i++) au32[i] = (uint32_t)test_rand_u64();
    for (int i = 0; i < 4; i++) af32[i] = test_rand_normal();
    lmp_meta_set_arr(m, "a.u32", LMP_KV_U32, au32, 5);
    lmp_meta_set_arr(m, "a.i32", LMP_KV_I32, ai32, 3);
    lmp_meta_set_arr(m, "a.u64", LMP_KV_U64, au64, 2);
    lmp_meta_set_arr(m, "a.i64", LMP_KV_I64, ai64, 2);
    lmp_meta_set_arr(m, "a.f32", LMP_KV_F32, af32, 4);
    lmp_meta_set_arr(m, "a.f64", LMP_KV_F64, af64, 3);
    lmp_meta_set_arr(m, "a.bool", LMP_KV_BOOL, ab, 4);
    const char *strs[] = {"hello", "", "w\xc3\xb6rld", " <0x0A>"};
    lmp_meta_set_arr(m, "a.str", LMP_KV_STRING, strs, 4);
    for (int t = 0; t < LMP_KV_ARRAY; t++) {
        char key[32];
        snprintf(key, sizeof key, "empty.%s", lmp_kv_type_name((lmp_kv_type)t));
        lmp_meta_set_arr(m, key, (lmp_kv_type)t, NULL, 0);
    }
    lmp_meta_append_str(m, "provenance.history", "one");
    lmp_meta_append_str(m, "provenance.history", "two");
    return m;
}

typedef struct tensor_set {
    lmp_tensor t[2 * LMP_DTYPE_COUNT];
    char names[2 * LMP_DTYPE_COUNT][40];
    size_t n;
} tensor_set;

// Two tensors of every storable dtype with random shapes (last dim a multiple of the block) and random bytes.
static void make_tensors(tensor_set *s) {
    memset(s, 0, sizeof *s);
    for (int ty = 0; ty < LMP_DTYPE_COUNT; ty++) {
        const lmp_type_traits *tt = lmp_type_get((lmp_dtype)ty);
        for (int k = 0; k < 2; k++) {
            lmp_tensor *t = &s->t[s->n];
            snprintf(s->names[s->n], sizeof s->names[0], "blk.%d.%s.weight", k, tt->name);
            t->name = s->names[s->n];
            t->type = (lmp_dtype)ty;
            t->ndim = 1 + (int)(test_rand_u64() % 3);
            for (int d = 0; d + 1 < t->ndim; d++) t->shape[d] = 1 + (int64_t)(test_rand_u64() % 5);
            t->shape[t->ndim - 1] = tt->block_size * (1 + (int64_t)(test_rand_u64() % 4)) + (tt->block_size == 1 ? (int64_t)(test_rand_u64() % 7) : 0);
            t->nbytes = lmp_tensor_expected_bytes(t->type, t->ndim, t->shape);
            uint8_t *d = malloc((size_t)t->nbytes);
            for (uint64_t i = 0; i < t->nbytes; i++) d[i] = (uint8_t)test_rand_u64();
            t->data = d;
            s->n++;
        }
    }
}

static void free_tensors(tensor_set *s) {
    for (size_t i = 0; i < s->n; i++) free(s->t[i].data);
}

static void check_file_matches(const lmp_file *f, const lmp_meta *m, const tensor_set *s) {
    char why[128];
    CHECKF(meta_equal(m, lmp_file_meta(f), why, sizeof why), "metadata differs at %s", why);
    CHECK(lmp_file_n_tensors(f) == s->n);
    for (size_t i = 0; i < s->n && i < lmp_file_n_tensors(f); i++) {
        const lmp_tensor *a = &s->t[i], *b = lmp_file_tensor(f, i);
        CHECKF(strcmp(a->name, b->name) == 0, "tensor %zu name %s vs %s", i, a->name, b->name);
        CHECK(lmp_file_find(f, a->name) == b);
        CHECK(a->type == b->type && a->ndim == b->ndim && a->nbytes == b->nbytes);
        for (int d = 0; d < a->ndim; d++) CHECK(a->shape[d] == b->shape[d]);
        CHECKF(memcmp(a->data, b->data, (size_t)a->nbytes) == 0, "tensor %s data differs", a->name);
        CHECKF(((uintptr_t)b->data & 63) == 0, "tensor %s data not 64-byte aligned", a->name);
        CHECK(b->offset % 64 == 0);
        CHECK(b->crc32 == lmp_crc32(0, a->data, (size_t)a->nbytes));
    }
    CHECK(lmp_file_find(f, "no.such.tensor") == NULL);
    unsigned want_version = 1;  // the lowest version that holds every tensor's dtype
    for (size_t i = 0; i < s->n; i++)
        if (LMP_DTYPE_MIN_VERSION(s->t[i].type) > want_version) want_version = LMP_DTYPE_MIN_VERSION(s->t[i].type);
    CHECK(lmp_file_version(f) == want_version);
}

// ---- round trips ----

static void test_roundtrip_mem_and_disk(void) {
    lmp_meta *m = make_all_types_meta();
    tensor_set s;
    make_tensors(&s);
    lmp_error err = {0};
    void *buf = NULL;
    size_t size = 0;
    CHECK(lmp_file_write_mem(m, s.t, s.n, &buf, &size, &err) == LMP_OK);
    lmp_file *f = NULL;
    CHECKF(lmp_file_open_mem(buf, size, 0, LMP_OPEN_DEFAULT, &f, &err) == LMP_OK, "%s", err.msg);
    if (f) {
        check_file_matches(f, m, &s);
        CHECK(lmp_file_size(f) == size);
        CHECK(strcmp(lmp_file_path(f), "") == 0);
        uint64_t data_offset;
        memcpy(&data_offset, (uint8_t *)buf + 40, 8);
        CHECK(lmp_file_checksum(f) == lmp_crc32(0, buf, (size_t)data_offset));
    }

    char path[512];
    snprintf(path, sizeof path, "%s/rt.lmp", test_tmpdir());
    CHECKF(lmp_file_write(path, m, s.t, s.n, &err) == LMP_OK, "%s", err.msg);
    size_t dsize = 0;
    void *disk = test_read_file(path, &dsize);
    CHECK(disk && dsize == size && memcmp(disk, buf, size) == 0);  // the two writers give the same bytes
    lmp_file *g = NULL;
    CHECKF(lmp_file_open(path, 0, &g, &err) == LMP_OK, "%s", err.msg);
    if (g) {
        check_file_matches(g, m, &s);
        CHECK(strcmp(lmp_file_path(g), path) == 0);
        CHECK(f && lmp_file_checksum(f) == lmp_file_checksum(g));
    }
    CHECK(count_tmp_files(test_tmpdir(), "rt.lmp") == 0);
    lmp_file_close(g);
    lmp_file_close(f);
    free(disk);
    lmp_free(buf);

    // meta clone keeps everything
    lmp_meta *c = lmp_meta_clone(m);
    char why[128];
    CHECKF(c && meta_equal(m, c, why, sizeof why), "clone differs at %s", why);
    lmp_meta_free(c);
    free_tensors(&s);
    lmp_meta_free(m);
}

static void test_roundtrip_empty(void) {
    lmp_error err = {0};
    void *buf;
    size_t size;
    CHECK(lmp_file_write_mem(NULL, NULL, 0, &buf, &size, &err) == LMP_OK);
    CHECK(size == 64);
    lmp_file *f = NULL;
    CHECKF(lmp_file_open_mem(buf, size, 1, 0, &f, &err) == LMP_OK, "%s", err.msg);
    CHECK(f && lmp_file_n_tensors(f) == 0 && lmp_meta_count(lmp_file_meta(f)) == 0);
    lmp_file_close(f);  // frees buf (take_ownership)
}

static void test_write_replaces_atomically(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/replace.lmp", test_tmpdir());
    lmp_error err = {0};
    float a[16], b[32];
    for (int i = 0; i < 16; i++) a[i] = test_rand_normal();
    for (int i = 0; i < 32; i++) b[i] = test_rand_normal();
    lmp_tensor ta = {.name = "w", .type = LMP_DTYPE_F32, .ndim = 1, .shape = {16}, .data = a};
    lmp_tensor tb = {.name = "w", .type = LMP_DTYPE_F32, .ndim = 2, .shape = {4, 8}, .data = b};
    CHECK(lmp_file_write(path, NULL, &ta, 1, &err) == LMP_OK);
    lmp_file *old = NULL;
    CHECK(lmp_file_open(path, 0, &old, &err) == LMP_OK);
    CHECKF(lmp_file_write(path, NULL, &tb, 1, &err) == LMP_OK, "%s", err.msg);
    // The old mapping still sees the old file (rename replaced the directory entry, not the bytes).
    CHECK(old && memcmp(lmp_file_find(old, "w")->data, a, sizeof a) == 0);
    lmp_file *nw = NULL;
    CHECK(lmp_file_open(path, 0, &nw, &err) == LMP_OK);
    CHECK(nw && lmp_file_find(nw, "w")->ndim == 2 && memcmp(lmp_file_find(nw, "w")->data, b, sizeof b) == 0);
    CHECK(count_tmp_files(test_tmpdir(), "replace.lmp") == 0);
    lmp_file_close(old);
    lmp_file_close(nw);

    // A refused write (duplicate name) leaves the existing file as it was.
    size_t n0;
    void *before = test_read_file(path, &n0);
    lmp_tensor two[2] = {ta, ta};
    CHECK(lmp_file_write(path, NULL, two, 2, &err) == LMP_E_ARG);
    CHECKF(strstr(err.msg, "duplicate tensor name 'w'") != NULL, "%s", err.msg);
    size_t n1;
    void *after = test_read_file(path, &n1);
    CHECK(before && after && n0 == n1 && memcmp(before, after, n0) == 0);
    free(before);
    free(after);
}

static void test_write_failures_leave_no_temporary(void) {
    lmp_error err = {0};
    float a[16] = {0};
    lmp_tensor ta = {.name = "w", .type = LMP_DTYPE_F32, .ndim = 1, .shape = {16}, .data = a};
    char path[512];
    snprintf(path, sizeof path, "%s/no/such/dir/x.lmp", test_tmpdir());
    CHECK(lmp_file_write(path, NULL, &ta, 1, &err) == LMP_E_IO);
    CHECKF(strstr(err.msg, "cannot create") && strstr(err.msg, "No such file"), "%s", err.msg);

    // A write that fails half-way (file size limit) removes its temporary and keeps the old file.
    snprintf(path, sizeof path, "%s/limited.lmp", test_tmpdir());
    CHECK(lmp_file_write(path, NULL, &ta, 1, &err) == LMP_OK);
    size_t n0;
    void *before = test_read_file(path, &n0);
    size_t big_n = 1 << 20;
    float *big = calloc(big_n, sizeof *big);
    lmp_tensor tb = {.name = "big", .type = LMP_DTYPE_F32, .ndim = 1, .shape = {(int64_t)big_n}, .data = big};
    struct rlimit old_lim, lim;
    getrlimit(RLIMIT_FSIZE, &old_lim);
    lim = old_lim;
    lim.rlim_cur = 64 * 1024;
    void (*old_sig)(int) = signal(SIGXFSZ, SIG_IGN);
    if (setrlimit(RLIMIT_FSIZE, &lim) == 0) {
        lmp_status st = lmp_file_write(path, NULL, &tb, 1, &err);
        setrlimit(RLIMIT_FSIZE, &old_lim);
        CHECKF(st == LMP_E_IO && strstr(err.msg, "write to"), "status %d: %s", st, err.msg);
        CHECK(count_tmp_files(test_tmpdir(), "limited.lmp") == 0);
        size_t n1;
        void *after = test_read_file(path, &n1);
        CHECK(before && after && n0 == n1 && memcmp(before, after, n0) == 0);
        free(after);
    }
    signal(SIGXFSZ, old_sig);
    free(before);
    free(big);
}

// ---- writer / builder validation ----

static void test_writer_refuses_bad_input(void) {
    lmp_error err = {0};
    float a[64] = {0};
    void *buf;
    size_t size;
    struct {
        lmp_tensor t;
        const char *msg;
    } cases[] = {
        {{.name = "", .type = LMP_DTYPE_F32, .ndim = 1, .shape = {4}, .data = a}, "is 0 bytes"},
        {{.name = "x", .type = (lmp_dtype)77, .ndim = 1, .shape = {4}, .data = a}, "dtype 77"},
        {{.name = "x", .type = LMP_DTYPE_Q8_A, .ndim = 1, .shape = {32}, .data = a}, "cannot be stored"},
        {{.name = "x", .type = LMP_DTYPE_Q16_A, .ndim = 1, .shape = {32}, .data = a}, "cannot be stored"},
        {{.name = "x", .type = LMP_DTYPE_F32, .ndim = 5, .shape = {1, 1, 1, 1}, .data = a}, "ndim 5"},
        {{.name = "x", .type = LMP_DTYPE_F32, .ndim = 0, .shape = {4}, .data = a}, "ndim 0"},
        {{.name = "x", .type = LMP_DTYPE_F32, .ndim = 2, .shape = {4, 0}, .data = a}, "dimension 1 is 0"},
        {{.name = "x", .type = LMP_DTYPE_F32, .ndim = 1, .shape = {-3}, .data = a}, "dimension 0 is -3"},
        {{.name = "x", .type = LMP_DTYPE_F32, .ndim = 1, .shape = {(1ll << 40) + 1}, .data = a}, "above the limit 2^40"},
        {{.name = "x", .type = LMP_DTYPE_F32, .ndim = 3, .shape = {1ll << 40, 1ll << 40, 1ll << 40}, .data = a}, "element count overflows"},
        {{.name = "x", .type = LMP_DTYPE_Q4_0, .ndim = 2, .shape = {2, 33}, .data = a}, "not a multiple of the block size 32"},
        {{.name = "x", .type = LMP_DTYPE_F32, .ndim = 1, .shape = {4}, .data = NULL}, "no data"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err.msg[0] = 0;
        CHECKF(lmp_file_write_mem(NULL, &cases[i].t, 1, &buf, &size, &err) == LMP_E_ARG, "case %zu", i);
        CHECKF(strstr(err.msg, cases[i].msg) != NULL, "case %zu: '%s' lacks '%s'", i, err.msg, cases[i].msg);
    }
    char longname[300];
    memset(longname, 'n', 256);
    longname[256] = 0;
    lmp_tensor t = {.name = longname, .type = LMP_DTYPE_F32, .ndim = 1, .shape = {4}, .data = a};
    CHECK(lmp_file_write_mem(NULL, &t, 1, &buf, &size, &err) == LMP_E_ARG && strstr(err.msg, "256 bytes"));
    // A metadata string with an embedded NUL (possible through set_kv) is refused.
    lmp_meta *m = lmp_meta_new();
    lmp_kv kv = {.type = LMP_KV_STRING, .count = 3, .data = "a\0b"};
    CHECK(lmp_meta_set_kv(m, "bad.str", &kv) == LMP_OK);
    CHECK(lmp_file_write_mem(m, NULL, 0, &buf, &size, &err) == LMP_E_ARG && strstr(err.msg, "NUL byte"));
    lmp_meta_free(m);
}

static void test_builder(void) {
    lmp_error err = {0};
    lmp_builder *b = lmp_builder_new();
    int64_t shape[2] = {3, 32};
    uint64_t nb = lmp_tensor_expected_bytes(LMP_DTYPE_Q8_0, 2, shape);
    CHECK(nb == 3 * 34);
    uint8_t *q = lmp_malloc(nb);
    for (uint64_t i = 0; i < nb; i++) q[i] = (uint8_t)test_rand_u64();
    CHECK(lmp_builder_add(b, "q", LMP_DTYPE_Q8_0, 2, shape, q, &err) == LMP_OK);
    float ref[8];
    for (int i = 0; i < 8; i++) ref[i] = test_rand_normal();
    int64_t s8[1] = {8};
    CHECK(lmp_builder_add_ref(b, "r", LMP_DTYPE_F32, 1, s8, ref, &err) == LMP_OK);
    // errors free owned data (ASan reports a leak otherwise)
    CHECK(lmp_builder_add(b, "q", LMP_DTYPE_F32, 1, s8, lmp_malloc(32), &err) == LMP_E_ARG);
    CHECKF(strstr(err.msg, "duplicate tensor name 'q'"), "%s", err.msg);
    int64_t bad[2] = {3, 31};
    CHECK(lmp_builder_add(b, "z", LMP_DTYPE_Q8_0, 2, bad, lmp_malloc(128), &err) == LMP_E_ARG);
    CHECKF(strstr(err.msg, "last dimension 31"), "%s", err.msg);
    CHECK(lmp_builder_add(b, "n", LMP_DTYPE_F32, 1, s8, NULL, &err) == LMP_E_ARG);
    CHECK(lmp_builder_n_tensors(b) == 2);
    CHECK(lmp_builder_find(b, "r") == lmp_builder_tensor(b, 1));
    CHECK(lmp_builder_find(b, "x") == NULL);
    CHECK(lmp_builder_tensor(b, 0)->nbytes == nb);
    lmp_meta_set_str(lmp_builder_meta(b), "general.name", "built");
    lmp_file *f = NULL;
    CHECKF(lmp_builder_to_file(b, &f, &err) == LMP_OK, "%s", err.msg);
    char path[512];
    snprintf(path, sizeof path, "%s/builder.lmp", test_tmpdir());
    CHECKF(lmp_builder_write(b, path, &err) == LMP_OK, "%s", err.msg);
    CHECK(f && memcmp(lmp_file_find(f, "q")->data, q, (size_t)nb) == 0);
    lmp_builder_free(b);  // frees q; f must not depend on the builder
    if (f) {
        CHECK(lmp_file_n_tensors(f) == 2);
        CHECK(memcmp(lmp_file_find(f, "r")->data, ref, sizeof ref) == 0);
        const char *name;
        CHECK(lmp_meta_get_str(lmp_file_meta(f), "general.name", &name, &err) == LMP_OK && strcmp(name, "built") == 0);
    }
    lmp_file *g = NULL;
    CHECKF(lmp_file_open(path, 0, &g, &err) == LMP_OK, "%s", err.msg);  // CRCs verified
    CHECK(f && g && memcmp(lmp_file_find(f, "q")->data, lmp_file_find(g, "q")->data, (size_t)nb) == 0);
    CHECK(f && g && lmp_file_checksum(f) == lmp_file_checksum(g));
    lmp_file_close(f);
    lmp_file_close(g);
    lmp_builder_free(NULL);
    lmp_file_close(NULL);
}

static void test_tensor_helpers(void) {
    for (int ty = 0; ty < LMP_DTYPE_COUNT; ty++) {
        const lmp_type_traits *tt = lmp_type_get((lmp_dtype)ty);
        int64_t shape[3] = {3, 5, tt->block_size * 7};
        CHECK(lmp_tensor_expected_bytes((lmp_dtype)ty, 3, shape) == (uint64_t)(15 * 7) * tt->type_size);
        if (tt->block_size > 1) {
            shape[2] += 1;
            CHECK(lmp_tensor_expected_bytes((lmp_dtype)ty, 3, shape) == 0);
        }
    }
    int64_t huge[4] = {1ll << 40, 1ll << 40, 1ll << 40, 4};
    CHECK(lmp_tensor_expected_bytes(LMP_DTYPE_F32, 4, huge) == 0);
    int64_t s[2] = {4, 8};
    CHECK(lmp_tensor_expected_bytes((lmp_dtype)55, 2, s) == 0);
    CHECK(lmp_tensor_expected_bytes(LMP_DTYPE_F32, 0, s) == 0);
    lmp_tensor t = {.ndim = 3, .shape = {2, 3, 4}};
    CHECK(lmp_tensor_nelements(&t) == 24 && lmp_tensor_nrows(&t) == 6);
    t.ndim = 1;
    CHECK(lmp_tensor_nelements(&t) == 2 && lmp_tensor_nrows(&t) == 1);
    lmp_tensor big = {.ndim = 3, .shape = {1ll << 40, 1ll << 40, 2}};
    CHECK(lmp_tensor_nelements(&big) == -1);
    CHECK(lmp_tensor_nrows(&big) == -1);
    CHECK(lmp_tensor_nelements(NULL) == 0);
}

// lmp_err_prefix passes the status through whether or not there is an lmp_error to prefix.
static void test_err_prefix(void) {
    lmp_error e = {0};
    CHECK(lmp_err_prefix(NULL, LMP_E_FORMAT, "x") == LMP_E_FORMAT);
    CHECK(lmp_err_prefix(NULL, LMP_OK, "x") == LMP_OK);
    CHECK(lmp_err(&e, LMP_E_CHECKSUM, "bad %d", 7) == LMP_E_CHECKSUM);
    CHECK(lmp_err_prefix(&e, LMP_E_CHECKSUM, "file '%s'", "a.lmp") == LMP_E_CHECKSUM);
    CHECK(e.status == LMP_E_CHECKSUM && strcmp(e.msg, "file 'a.lmp': bad 7") == 0);
    CHECK(lmp_err_prefix(&e, LMP_OK, "ignored") == LMP_OK);
    CHECK(strcmp(e.msg, "file 'a.lmp': bad 7") == 0);
}

static void test_meta_many_keys(void) {
    // Past the size where lmp_meta switches to its hash index: lookups, replacement and removal.
    lmp_meta *m = lmp_meta_new();
    char key[64];
    int n = 3000;
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "k.%d", i);
        CHECK(lmp_meta_set_u32(m, key, (uint32_t)i) == LMP_OK);
    }
    CHECK(lmp_meta_count(m) == (size_t)n);
    CHECK(lmp_meta_set_u32(m, "k.17", 99) == LMP_OK && lmp_meta_count(m) == (size_t)n);
    for (int i = 0; i < n; i += 2) {
        snprintf(key, sizeof key, "k.%d", i);
        lmp_meta_remove(m, key);
    }
    int bad = 0;
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "k.%d", i);
        const lmp_kv *kv = lmp_meta_find(m, key);
        if (i % 2 == 0) bad += kv != NULL;
        else bad += !kv || kv->v.u32 != (i == 17 ? 99u : (uint32_t)i);
    }
    CHECKF(bad == 0, "%d wrong lookups", bad);
    CHECK(lmp_meta_count(m) == (size_t)n / 2);
    CHECK(strcmp(lmp_meta_at(m, 0)->key, "k.1") == 0);  // order kept
    // and through a file
    void *buf;
    size_t size;
    lmp_error err = {0};
    lmp_file *f = NULL;
    CHECK(lmp_file_write_mem(m, NULL, 0, &buf, &size, &err) == LMP_OK);
    CHECK(lmp_file_open_mem(buf, size, 1, 0, &f, &err) == LMP_OK);
    char why[128];
    CHECKF(f && meta_equal(m, lmp_file_meta(f), why, sizeof why), "%s", why);
    lmp_file_close(f);
    // allocation failures while the index grows (clone of 100 keys) fail cleanly
    lmp_meta *m100 = lmp_meta_new();
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "key.%d", i);
        lmp_meta_set_i32(m100, key, -i);
    }
    int nulls = 0;
    for (long k = 1; k < 100000; k++) {
        lmp_alloc_fail_after(k);
        lmp_meta *c = lmp_meta_clone(m100);
        lmp_alloc_fail_after(0);
        if (c) {
            CHECKF(meta_equal(m100, c, why, sizeof why), "%s", why);
            lmp_meta_free(c);
            break;
        }
        nulls++;
    }
    CHECKF(nulls > 100, "clone of 100 keys failed only %d times", nulls);
    lmp_meta_free(m100);
    lmp_meta_free(m);
}

// ---- an independent assembler of the byte format, for the malformed corpus ----

typedef struct bbuf {
    uint8_t *p;
    size_t n, cap;
} bbuf;
static size_t bb_put(bbuf *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 256;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
    return b->n - n;
}
static size_t bb_u32(bbuf *b, uint32_t v) { return bb_put(b, &v, 4); }
static size_t bb_u64(bbuf *b, uint64_t v) { return bb_put(b, &v, 8); }
static size_t bb_str(bbuf *b, const char *s) {  // u32 length + bytes (keys, names)
    size_t at = bb_u32(b, (uint32_t)strlen(s));
    bb_put(b, s, strlen(s));
    return at;
}
static void bb_pad(bbuf *b, size_t a) {
    while (b->n % a) bb_put(b, "", 1);
}
static void set_u32(uint8_t *p, size_t at, uint32_t v) { memcpy(p + at, &v, 4); }
static void set_u64(uint8_t *p, size_t at, uint64_t v) { memcpy(p + at, &v, 8); }
static uint64_t get_u64_at(const uint8_t *p, size_t at) {
    uint64_t v;
    memcpy(&v, p + at, 8);
    return v;
}

// Offsets of the fields that the corpus variants edit.
typedef struct corpus {
    uint8_t *p;
    size_t n;
    size_t kv_keylen[6], kv_key[6], kv_type[6], kv_val[6];
    size_t t_namelen[3], t_name[3], t_dtype[3], t_ndim[3], t_shape[3], t_offset[3], t_nbytes[3], t_crc[3];
    size_t data_offset;
    uint64_t t_off[3], t_nb[3];
} corpus;

static const float C_A[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                              17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
static uint8_t C_B[36], C_C[32];

// The valid small file, assembled by hand from docs/format.md.
static void corpus_build(corpus *c) {
    memset(c, 0, sizeof *c);
    for (int i = 0; i < 36; i++) C_B[i] = (uint8_t)(i * 7 + 1);
    for (int i = 0; i < 32; i++) C_C[i] = (uint8_t)(255 - i);
    bbuf b = {0};
    uint8_t zero[64] = {0};
    bb_put(&b, zero, 64);
    const char *keys[6] = {"k.name", "k.u32x", "k.flag", "k.arru", "k.toks", "k.arrb"};
    for (int i = 0; i < 6; i++) {
        c->kv_keylen[i] = bb_str(&b, keys[i]);
        c->kv_key[i] = c->kv_keylen[i] + 4;
        static const uint32_t types[6] = {7, 0, 6, 8, 8, 8};
        c->kv_type[i] = bb_u32(&b, types[i]);
        c->kv_val[i] = b.n;
        switch (i) {
        case 0: bb_u64(&b, 4); bb_put(&b, "tiny", 4); break;
        case 1: bb_u32(&b, 7); break;
        case 2: bb_put(&b, "\1", 1); break;
        case 3: bb_u32(&b, 0); bb_u64(&b, 3); bb_u32(&b, 1); bb_u32(&b, 2); bb_u32(&b, 3); break;
        case 4: bb_u32(&b, 7); bb_u64(&b, 2); bb_u64(&b, 1); bb_put(&b, "a", 1); bb_u64(&b, 2); bb_put(&b, "bc", 2); break;
        case 5: bb_u32(&b, 6); bb_u64(&b, 2); bb_put(&b, "\0\1", 2); break;
        }
    }
    const char *names[3] = {"t.a", "t.b", "t.c"};
    uint32_t dtypes[3] = {LMP_DTYPE_F32, LMP_DTYPE_Q4_0, LMP_DTYPE_F16};
    uint32_t ndims[3] = {2, 2, 4};
    uint64_t shapes[3][4] = {{4, 8}, {2, 32}, {2, 2, 2, 2}};
    uint64_t nbs[3] = {128, 36, 32};
    const void *datas[3] = {C_A, C_B, C_C};
    uint64_t off = 0;
    for (int i = 0; i < 3; i++) {
        c->t_namelen[i] = bb_str(&b, names[i]);
        c->t_name[i] = c->t_namelen[i] + 4;
        c->t_dtype[i] = bb_u32(&b, dtypes[i]);
        c->t_ndim[i] = bb_u32(&b, ndims[i]);
        c->t_shape[i] = b.n;
        for (uint32_t d = 0; d < ndims[i]; d++) bb_u64(&b, shapes[i][d]);
        c->t_offset[i] = bb_u64(&b, off);
        c->t_nbytes[i] = bb_u64(&b, nbs[i]);
        c->t_crc[i] = bb_u32(&b, lmp_crc32(0, datas[i], nbs[i]));
        c->t_off[i] = off;
        c->t_nb[i] = nbs[i];
        off = (off + nbs[i] + 63) / 64 * 64;
    }
    bb_pad(&b, 64);
    c->data_offset = b.n;
    for (int i = 0; i < 3; i++) {
        while (b.n < c->data_offset + c->t_off[i]) bb_put(&b, "", 1);
        bb_put(&b, datas[i], nbs[i]);
    }
    uint64_t data_size = b.n - c->data_offset;
    memcpy(b.p, LMP_MAGIC, 8);
    set_u32(b.p, 8, 1);
    set_u32(b.p, 12, 0x01020304u);
    set_u32(b.p, 16, 64);
    set_u32(b.p, 20, 0);
    set_u64(b.p, 24, 6);
    set_u64(b.p, 32, 3);
    set_u64(b.p, 40, c->data_offset);
    set_u64(b.p, 48, data_size);
    c->p = b.p;
    c->n = b.n;
}

// Recomputes meta_crc32 and header_crc32 so that an edited file reaches the check it targets.
static void fix_crcs(uint8_t *p, size_t n) {
    uint64_t doff = get_u64_at(p, 40);
    if (doff >= 64 && doff <= n) set_u32(p, 56, lmp_crc32(0, p + 64, (size_t)(doff - 64)));
    set_u32(p, 60, lmp_crc32(0, p, 60));
}

// Opens an exact-size copy (ASan sees any over-read) and returns the status; err gets the message.
static lmp_status open_copy(const uint8_t *p, size_t n, unsigned flags, lmp_error *err) {
    uint8_t *copy = lmp_malloc(n);
    if (n) memcpy(copy, p, n);
    lmp_file *f = NULL;
    err->msg[0] = 0;
    lmp_status st = lmp_file_open_mem(copy, n, 1, flags, &f, err);
    if (st == LMP_OK) CHECK(f != NULL);
    else CHECK(f == NULL);
    lmp_file_close(f);
    return st;
}

static void test_assembler_matches_writer(void) {
    corpus c;
    corpus_build(&c);
    fix_crcs(c.p, c.n);
    lmp_meta *m = lmp_meta_new();
    lmp_meta_set_str(m, "k.name", "tiny");
    lmp_meta_set_u32(m, "k.u32x", 7);
    lmp_meta_set_bool(m, "k.flag", 1);
    uint32_t u[3] = {1, 2, 3};
    lmp_meta_set_arr(m, "k.arru", LMP_KV_U32, u, 3);
    const char *toks[2] = {"a", "bc"};
    lmp_meta_set_arr(m, "k.toks", LMP_KV_STRING, toks, 2);
    uint8_t bb[2] = {0, 1};
    lmp_meta_set_arr(m, "k.arrb", LMP_KV_BOOL, bb, 2);
    lmp_tensor t[3] = {
        {.name = "t.a", .type = LMP_DTYPE_F32, .ndim = 2, .shape = {4, 8}, .data = (void *)C_A},
        {.name = "t.b", .type = LMP_DTYPE_Q4_0, .ndim = 2, .shape = {2, 32}, .data = C_B},
        {.name = "t.c", .type = LMP_DTYPE_F16, .ndim = 4, .shape = {2, 2, 2, 2}, .data = C_C},
    };
    void *buf;
    size_t size;
    lmp_error err = {0};
    CHECK(lmp_file_write_mem(m, t, 3, &buf, &size, &err) == LMP_OK);
    CHECKF(size == c.n && memcmp(buf, c.p, c.n) == 0, "writer (%zu bytes) and spec assembler (%zu bytes) differ", size, c.n);
    CHECKF(open_copy(c.p, c.n, 0, &err) == LMP_OK, "valid corpus file refused: %s", err.msg);
    lmp_free(buf);
    lmp_meta_free(m);
    free(c.p);
}

typedef enum { FIX, NOFIX } crcmode;

// One corpus variant: edit(c) modifies a fresh copy; the open must fail with status st and a message
// containing want.
#define VARIANT(label, mode, want_st, want, ...)                                                       \
    do {                                                                                                \
        corpus c;                                                                                       \
        corpus_build(&c);                                                                               \
        fix_crcs(c.p, c.n);                                                                             \
        { __VA_ARGS__; }                                                                                \
        if ((mode) == FIX) fix_crcs(c.p, c.n);                                                          \
        lmp_error e = {0};                                                                              \
        lmp_status s = open_copy(c.p, c.n, 0, &e);                                                      \
        CHECKF(s == (want_st) && strstr(e.msg, want) != NULL, "%s: status %d '%s', wanted %d '%s'", label, \
               s, e.msg, want_st, want);                                                                \
        free(c.p);                                                                                      \
    } while (0)

static void test_malformed_header(void) {
    VARIANT("bad magic", FIX, LMP_E_FORMAT, "bad magic (not an lmpress file)", c.p[1] = 'X');
    VARIANT("gguf magic", FIX, LMP_E_FORMAT, "bad magic", memcpy(c.p, "GGUF", 4));
    VARIANT("big endian", FIX, LMP_E_UNSUPPORTED, "big-endian file (byte order mark 0x04030201) is not supported",
            set_u32(c.p, 12, 0x04030201u));
    VARIANT("bad bom", FIX, LMP_E_FORMAT, "bad byte order mark 0x01020305", set_u32(c.p, 12, 0x01020305u));
    VARIANT("future version", FIX, LMP_E_UNSUPPORTED, "unsupported format version 7 (this build reads 1 to 2)",
            set_u32(c.p, 8, 7));
    VARIANT("header crc", NOFIX, LMP_E_CHECKSUM, "header checksum mismatch", c.p[30] ^= 1);
    VARIANT("header crc2", NOFIX, LMP_E_CHECKSUM, "header checksum mismatch", set_u32(c.p, 60, get_u64_at(c.p, 56) >> 32 ^ 1));
    VARIANT("nonzero flags", FIX, LMP_E_UNSUPPORTED, "reserved header flags 0x00000002 are not 0", set_u32(c.p, 20, 2));
    VARIANT("alignment 48", FIX, LMP_E_FORMAT, "bad alignment 48", set_u32(c.p, 16, 48));
    VARIANT("alignment 8", FIX, LMP_E_FORMAT, "bad alignment 8", set_u32(c.p, 16, 8));
    VARIANT("alignment 2^17", FIX, LMP_E_FORMAT, "bad alignment 131072", set_u32(c.p, 16, 1u << 17));
    VARIANT("n_kv limit", FIX, LMP_E_FORMAT, "n_kv 1048577 is above the limit 1048576", set_u64(c.p, 24, (1 << 20) + 1));
    VARIANT("n_kv huge", FIX, LMP_E_FORMAT, "n_kv 18446744073709551615 is above", set_u64(c.p, 24, UINT64_MAX));
    VARIANT("n_tensors limit", FIX, LMP_E_FORMAT, "n_tensors 1048577 is above the limit", set_u64(c.p, 32, (1 << 20) + 1));
    VARIANT("n_kv too many for file", FIX, LMP_E_FORMAT, "header announces 100000 metadata entries",
            set_u64(c.p, 24, 100000));
    VARIANT("n_tensors too many for file", FIX, LMP_E_FORMAT, "and 1000 tensors, which need at least 41124 bytes, but data_offset is 448",
            set_u64(c.p, 32, 1000));
    VARIANT("data_offset unaligned", FIX, LMP_E_FORMAT, "is not a multiple of the alignment 64",
            set_u64(c.p, 40, c.data_offset + 8); set_u64(c.p, 48, c.n - c.data_offset - 8));
    VARIANT("data_offset in header", FIX, LMP_E_FORMAT, "data_offset 0 is inside the header",
            set_u64(c.p, 40, 0); set_u64(c.p, 48, c.n));
    VARIANT("data_offset before dir end", FIX, LMP_E_FORMAT, "data_offset 384 is before the end of the directory (403)",
            set_u64(c.p, 40, 384); set_u64(c.p, 48, c.n - 384));
    VARIANT("data_offset 64", FIX, LMP_E_FORMAT, "tensors, which need at least 247 bytes, but data_offset is 64",
            set_u64(c.p, 40, 64); set_u64(c.p, 48, c.n - 64));
    VARIANT("data_size short", FIX, LMP_E_FORMAT, "trailing bytes", set_u64(c.p, 48, get_u64_at(c.p, 48) - 4));
    VARIANT("data_size long", FIX, LMP_E_FORMAT, "truncated: file is", set_u64(c.p, 48, get_u64_at(c.p, 48) + 4));
    VARIANT("data_size overflow", FIX, LMP_E_FORMAT, "overflows", set_u64(c.p, 48, UINT64_MAX - 10));
    VARIANT("meta crc", NOFIX, LMP_E_CHECKSUM, "metadata checksum mismatch", c.p[c.kv_key[0]] = 'K');
    VARIANT("dir crc", NOFIX, LMP_E_CHECKSUM, "metadata checksum mismatch", c.p[c.t_crc[2]] ^= 1);
}

static void test_malformed_metadata(void) {
    VARIANT("key len 0", FIX, LMP_E_FORMAT, "metadata entry 1: key length 0 (must be 1..255)", set_u32(c.p, c.kv_keylen[1], 0));
    VARIANT("key len 300", FIX, LMP_E_FORMAT, "metadata entry 1: key length 300", set_u32(c.p, c.kv_keylen[1], 300));
    VARIANT("key len past end", FIX, LMP_E_FORMAT, "metadata entry 0: key length 4000000000", set_u32(c.p, c.kv_keylen[0], 4000000000u));
    VARIANT("NUL in key", FIX, LMP_E_FORMAT, "metadata entry 2: key contains a NUL byte", c.p[c.kv_key[2] + 3] = 0);
    VARIANT("duplicate key", FIX, LMP_E_FORMAT, "duplicate metadata key 'k.name'", memcpy(c.p + c.kv_key[1], "k.name", 6));
    VARIANT("unknown kv type", FIX, LMP_E_FORMAT, "metadata key 'k.u32x': unknown value type 9", set_u32(c.p, c.kv_type[1], 9));
    VARIANT("kv type huge", FIX, LMP_E_FORMAT, "unknown value type 4294967295", set_u32(c.p, c.kv_type[1], UINT32_MAX));
    VARIANT("bool 2", FIX, LMP_E_FORMAT, "metadata key 'k.flag': bool value 2 (must be 0 or 1)", c.p[c.kv_val[2]] = 2);
    VARIANT("bool array 2", FIX, LMP_E_FORMAT, "element 1 of the bool array is 255", c.p[c.kv_val[5] + 13] = 255);
    VARIANT("nested array", FIX, LMP_E_FORMAT, "metadata key 'k.arru': nested array", set_u32(c.p, c.kv_val[3], 8));
    VARIANT("unknown elem type", FIX, LMP_E_FORMAT, "unknown array element type 12", set_u32(c.p, c.kv_val[3], 12));
    VARIANT("string len huge", FIX, LMP_E_FORMAT, "truncated: metadata key 'k.name' string of 1099511627776 bytes",
            set_u64(c.p, c.kv_val[0], 1ull << 40));
    VARIANT("string len max", FIX, LMP_E_FORMAT, "truncated: metadata key 'k.name' string of 18446744073709551615",
            set_u64(c.p, c.kv_val[0], UINT64_MAX));
    VARIANT("NUL in string", FIX, LMP_E_FORMAT, "metadata key 'k.name': string value contains a NUL byte", c.p[c.kv_val[0] + 9] = 0);
    VARIANT("array count overflow", FIX, LMP_E_FORMAT, "array of 4611686018427387905 u32 elements overflows",
            set_u64(c.p, c.kv_val[3] + 4, (1ull << 62) + 1));
    VARIANT("array count huge", FIX, LMP_E_FORMAT, "truncated: metadata key 'k.arru' array of 1000000 u32",
            set_u64(c.p, c.kv_val[3] + 4, 1000000));
    VARIANT("string array count huge", FIX, LMP_E_FORMAT, "truncated: metadata key 'k.toks' string array of 1152921504606846976 elements",
            set_u64(c.p, c.kv_val[4] + 4, 1ull << 60));
    VARIANT("string array count max", FIX, LMP_E_FORMAT, "string array of 18446744073709551615 elements",
            set_u64(c.p, c.kv_val[4] + 4, UINT64_MAX));
    VARIANT("string array element len", FIX, LMP_E_FORMAT, "truncated: metadata key 'k.toks' element 1 (4294967296 bytes)",
            set_u64(c.p, c.kv_val[4] + 21, 1ull << 32));
    VARIANT("NUL in string array", FIX, LMP_E_FORMAT, "element 1 of the string array contains a NUL byte",
            c.p[c.kv_val[4] + 30] = 0);
}

static void test_malformed_directory(void) {
    VARIANT("name len 0", FIX, LMP_E_FORMAT, "tensor entry 1: name length 0 (must be 1..255)", set_u32(c.p, c.t_namelen[1], 0));
    VARIANT("name len 256", FIX, LMP_E_FORMAT, "tensor entry 1: name length 256", set_u32(c.p, c.t_namelen[1], 256));
    VARIANT("NUL in name", FIX, LMP_E_FORMAT, "tensor entry 2: name contains a NUL byte", c.p[c.t_name[2] + 1] = 0);
    VARIANT("duplicate tensor", FIX, LMP_E_FORMAT, "duplicate tensor name 't.a'", c.p[c.t_name[2] + 2] = 'a');
    VARIANT("unknown dtype", FIX, LMP_E_UNSUPPORTED, "tensor 't.b': unknown dtype 77", set_u32(c.p, c.t_dtype[1], 77));
    VARIANT("dtype huge", FIX, LMP_E_UNSUPPORTED, "unknown dtype 4294967295", set_u32(c.p, c.t_dtype[1], UINT32_MAX));
    VARIANT("runtime dtype", FIX, LMP_E_FORMAT, "dtype 100 (q8_a) is run-time only", set_u32(c.p, c.t_dtype[1], 100));
    VARIANT("runtime dtype 16", FIX, LMP_E_FORMAT, "dtype 101 (q16_a) is run-time only", set_u32(c.p, c.t_dtype[1], 101));
    VARIANT("ndim 0", FIX, LMP_E_FORMAT, "tensor 't.a': ndim 0 (must be 1..4)", set_u32(c.p, c.t_ndim[0], 0));
    VARIANT("ndim 5", FIX, LMP_E_FORMAT, "tensor 't.c': ndim 5", set_u32(c.p, c.t_ndim[2], 5));
    VARIANT("dim 0", FIX, LMP_E_FORMAT, "tensor 't.a': dimension 1 is 0", set_u64(c.p, c.t_shape[0] + 8, 0));
    VARIANT("dim 2^40+1", FIX, LMP_E_FORMAT, "tensor 't.a': dimension 1 is 1099511627777, above the limit 2^40",
            set_u64(c.p, c.t_shape[0] + 8, (1ull << 40) + 1));
    VARIANT("element overflow", FIX, LMP_E_FORMAT, "tensor 't.c': element count overflows",
            for (int d = 0; d < 4; d++) set_u64(c.p, c.t_shape[2] + 8 * d, 1ull << 40));
    VARIANT("block multiple", FIX, LMP_E_FORMAT,
            "tensor 't.b': dtype 4 (q4_0) with shape [2 x 33]: last dimension 33 is not a multiple of the block size 32",
            set_u64(c.p, c.t_shape[1] + 8, 33));
    VARIANT("wrong dtype size", FIX, LMP_E_FORMAT, "tensor 't.a': nbytes 100 does not match dtype f32 and shape [4 x 8] (128 bytes)",
            set_u64(c.p, c.t_nbytes[0], 100));
    VARIANT("dtype changed", FIX, LMP_E_FORMAT, "wrong size for dtype", set_u32(c.p, c.t_dtype[0], LMP_DTYPE_F16));
    VARIANT("offset unaligned", FIX, LMP_E_FORMAT, "tensor 't.b': offset 132 is not a multiple of the alignment 64",
            set_u64(c.p, c.t_offset[1], 132));
    VARIANT("offset past end", FIX, LMP_E_FORMAT, "tensor 't.c': offset 4096 + 32 bytes extends past the data section (224 bytes)",
            set_u64(c.p, c.t_offset[2], 4096));
    VARIANT("offset overflow", FIX, LMP_E_FORMAT, "extends past the data section",
            set_u64(c.p, c.t_offset[2], UINT64_MAX - 63));
    VARIANT("straddles end", FIX, LMP_E_FORMAT, "tensor 't.a': offset 192 + 128 bytes extends past",
            set_u64(c.p, c.t_offset[0], 192));
    VARIANT("overlap", FIX, LMP_E_FORMAT, "tensors 't.a' and 't.b' overlap", set_u64(c.p, c.t_offset[1], 64));
    VARIANT("same offset", FIX, LMP_E_FORMAT, "tensors 't.b' and 't.c' overlap", set_u64(c.p, c.t_offset[2], 128));
    VARIANT("tensor crc", NOFIX, LMP_E_CHECKSUM, "tensor 't.b': CRC32 mismatch (stored 0x", c.p[c.data_offset + 130] ^= 0x10);
    VARIANT("tensor crc field", FIX, LMP_E_CHECKSUM, "tensor 't.c': CRC32 mismatch", c.p[c.t_crc[2]] ^= 1);
    VARIANT("n_tensors one too many", FIX, LMP_E_FORMAT, "tensor entry 3", set_u64(c.p, 32, 4));

    // LMP_OPEN_SKIP_CRC accepts a corrupted tensor but not a corrupted structure.
    corpus c;
    corpus_build(&c);
    fix_crcs(c.p, c.n);
    c.p[c.data_offset + 1] ^= 1;
    lmp_error e;
    CHECK(open_copy(c.p, c.n, LMP_OPEN_SKIP_CRC, &e) == LMP_OK);
    CHECK(open_copy(c.p, c.n, 0, &e) == LMP_E_CHECKSUM && strstr(e.msg, "tensor 't.a': CRC32 mismatch"));
    free(c.p);
}

// A file whose metadata reaches exactly the end of the file (no tensors), so that a count one too high
// makes the reader run off the end: the message names the structure, the offset and the file size.
static void test_truncated_structures(void) {
    bbuf b = {0};
    uint8_t zero[64] = {0};
    bb_put(&b, zero, 64);
    bb_str(&b, "general.name");  // 4 + 12
    bb_u32(&b, 7);
    bb_u64(&b, 36);
    bb_put(&b, "abcdefghijklmnopqrstuvwxyz0123456789", 36);  // 64 + 16 + 4 + 8 + 36 = 128
    CHECK(b.n == 128);
    memcpy(b.p, LMP_MAGIC, 8);
    set_u32(b.p, 8, 1);
    set_u32(b.p, 12, 0x01020304u);
    set_u32(b.p, 16, 64);
    set_u64(b.p, 24, 1);
    set_u64(b.p, 32, 0);
    set_u64(b.p, 40, 128);
    set_u64(b.p, 48, 0);
    fix_crcs(b.p, b.n);
    lmp_error e;
    CHECKF(open_copy(b.p, b.n, 0, &e) == LMP_OK, "%s", e.msg);
    // One more metadata entry than present: it would start at offset 128, the end of the file.
    set_u64(b.p, 24, 2);
    fix_crcs(b.p, b.n);
    CHECK(open_copy(b.p, b.n, 0, &e) == LMP_E_FORMAT);
    CHECKF(strstr(e.msg, "truncated: metadata entry 1 key length at offset 128 needs 4 bytes, file has 128"), "%s", e.msg);
    // One tensor announced, none present.
    set_u64(b.p, 24, 1);
    set_u64(b.p, 32, 1);
    fix_crcs(b.p, b.n);
    CHECK(open_copy(b.p, b.n, 0, &e) == LMP_E_FORMAT);
    CHECKF(strstr(e.msg, "truncated: tensor entry 0 name length at offset 128 needs 4 bytes, file has 128"), "%s", e.msg);
    // String longer than what remains.
    set_u64(b.p, 32, 0);
    set_u64(b.p, 84, 37);
    fix_crcs(b.p, b.n);
    CHECK(open_copy(b.p, b.n, 0, &e) == LMP_E_FORMAT);
    CHECKF(strstr(e.msg, "truncated: metadata key 'general.name' string of 37 bytes at offset 92 needs 37 bytes, file has 128"),
           "%s", e.msg);
    free(b.p);
}

static void test_truncated_every_prefix(void) {
    corpus c;
    corpus_build(&c);
    fix_crcs(c.p, c.n);
    int bad = 0;
    for (size_t len = 0; len < c.n; len++) {
        lmp_error e;
        lmp_status st = open_copy(c.p, len, 0, &e);
        if (st != LMP_E_FORMAT || strncmp(e.msg, "truncated: ", 11) != 0) {
            if (bad++ < 5) CHECKF(0, "prefix %zu: status %d '%s'", len, st, e.msg);
        }
    }
    CHECKF(bad == 0, "%d of %zu prefixes not reported as truncated", bad, c.n);
    // On disk, too: the message names the path.
    char path[512];
    snprintf(path, sizeof path, "%s/short.lmp", test_tmpdir());
    test_write_file(path, c.p, 100);
    lmp_file *f = NULL;
    lmp_error e;
    CHECK(lmp_file_open(path, 0, &f, &e) == LMP_E_FORMAT && f == NULL);
    CHECKF(strstr(e.msg, path) && strstr(e.msg, "truncated: file is 100 bytes"), "%s", e.msg);
    test_write_file(path, c.p, 0);
    CHECK(lmp_file_open(path, 0, &f, &e) == LMP_E_FORMAT && strstr(e.msg, "file is 0 bytes, header needs 64"));
    CHECK(lmp_file_open(test_tmpdir(), 0, &f, &e) == LMP_E_IO && strstr(e.msg, "not a regular file"));
    snprintf(path, sizeof path, "%s/absent.lmp", test_tmpdir());
    CHECK(lmp_file_open(path, 0, &f, &e) == LMP_E_IO && strstr(e.msg, "No such file"));
    free(c.p);
}

// Random byte flips of the corpus file (CRCs fixed afterwards, so that the structure checks are
// exercised): the reader must never crash, and must report an error or return a consistent file.
static void test_random_corruption(void) {
    corpus c0;
    corpus_build(&c0);
    fix_crcs(c0.p, c0.n);
    uint8_t *p = malloc(c0.n);
    for (int it = 0; it < 3000; it++) {
        memcpy(p, c0.p, c0.n);
        int flips = 1 + (int)(test_rand_u64() % 4);
        for (int k = 0; k < flips; k++) p[test_rand_u64() % c0.data_offset] ^= (uint8_t)(1u << (test_rand_u64() % 8));
        fix_crcs(p, c0.n);
        lmp_error e;
        lmp_status st = open_copy(p, c0.n, 0, &e);
        if (st != LMP_OK) CHECKF(e.msg[0] != 0 && strchr(e.msg, '\n') == NULL, "empty or multi-line message");
    }
    free(p);
    free(c0.p);
}

// ---- tensor CRCs checked in parallel ----

static void test_crc32_combine(void) {
    uint8_t buf[3000];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)test_rand_u64();
    const size_t cuts[] = {0, 1, 7, 1024, 2999, 3000};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        size_t a = cuts[i];
        uint32_t whole = lmp_crc32(0, buf, sizeof buf);
        uint32_t c = lmp_crc32_combine(lmp_crc32(0, buf, a), lmp_crc32(0, buf + a, sizeof buf - a), sizeof buf - a);
        CHECKF(c == whole, "cut at %zu: 0x%08x != 0x%08x", a, c, whole);
    }
}

// A file large enough for the parallel check (tensors cut into 4 MiB pieces): it opens, and a corrupted
// tensor is reported by name, the first in directory order when several are bad.
static void test_parallel_crc(void) {
    enum { NT = 5 };
    const int64_t n[NT] = {300, 10 * 1000 * 1000 + 3, 1 << 20, 7, 3 * (1 << 20) + 11};  // f32 elements: ~57 MB
    const char *names[NT] = {"t.small", "t.big", "t.4mib", "t.tiny", "t.last"};
    lmp_tensor ts[NT];
    uint64_t x = test_rand_u64() | 1;
    for (int i = 0; i < NT; i++) {
        float *d = malloc((size_t)n[i] * sizeof *d);
        for (int64_t j = 0; j < n[i]; j++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            d[j] = (float)(int32_t)x * 1e-9f;
        }
        ts[i] = (lmp_tensor){.name = names[i], .type = LMP_DTYPE_F32, .ndim = 1, .shape = {n[i]}, .data = d};
    }
    void *buf = NULL;
    size_t size = 0;
    lmp_error e = {0};
    CHECKF(lmp_file_write_mem(NULL, ts, NT, &buf, &size, &e) == LMP_OK, "%s", e.msg);
    lmp_file *f = NULL;
    CHECKF(buf && lmp_file_open_mem(buf, size, 0, 0, &f, &e) == LMP_OK, "%s", e.msg);
    size_t off[NT] = {0};
    for (int i = 0; f && i < NT; i++) off[i] = (size_t)((const uint8_t *)lmp_file_tensor(f, (size_t)i)->data - (const uint8_t *)buf);
    lmp_file_close(f);
    if (buf) {
        uint8_t *p = buf;
        p[off[4] + 4 * (size_t)n[4] - 1] ^= 0x40;  // t.last, its last byte
        f = NULL;
        CHECK(lmp_file_open_mem(buf, size, 0, 0, &f, &e) == LMP_E_CHECKSUM && !f);
        CHECKF(strstr(e.msg, "tensor 't.last': CRC32 mismatch"), "%s", e.msg);
        p[off[1] + 9 * (size_t)(4 << 20) + 5] ^= 0x01;  // t.big, in its last piece
        p[off[2]] ^= 0x80;                                // t.4mib, first byte
        CHECK(lmp_file_open_mem(buf, size, 0, 0, &f, &e) == LMP_E_CHECKSUM && !f);
        CHECKF(strstr(e.msg, "tensor 't.big': CRC32 mismatch"), "%s", e.msg);
        CHECK(lmp_file_open_mem(buf, size, 0, LMP_OPEN_SKIP_CRC, &f, &e) == LMP_OK);
        lmp_file_close(f);
    }
    lmp_free(buf);
    for (int i = 0; i < NT; i++) free(ts[i].data);
}

// ---- allocation failures ----

static void test_alloc_failure_walk(void) {
    lmp_meta *m = make_all_types_meta();
    tensor_set s;
    make_tensors(&s);
    void *buf;
    size_t size;
    lmp_error err;
    CHECK(lmp_file_write_mem(m, s.t, s.n, &buf, &size, &err) == LMP_OK);
    char path[512];
    snprintf(path, sizeof path, "%s/walk.lmp", test_tmpdir());
    CHECK(lmp_file_write(path, m, s.t, s.n, &err) == LMP_OK);

    int bad = 0, steps = 0;
    for (long k = 1;; k++) {  // open from memory
        lmp_file *f = NULL;
        lmp_alloc_fail_after(k);
        lmp_status st = lmp_file_open_mem(buf, size, 0, 0, &f, &err);
        lmp_alloc_fail_after(0);
        if (st == LMP_OK) {
            lmp_file_close(f);
            steps = (int)k;
            break;
        }
        if (st != LMP_E_NOMEM || f) {
            bad++;
            break;  // a failure that is not the injected one would repeat forever
        }
    }
    CHECKF(bad == 0 && steps > 10, "open_mem: %d bad results, %d steps", bad, steps);
    bad = 0;
    for (long k = 1;; k++) {  // open from disk
        lmp_file *f = NULL;
        lmp_alloc_fail_after(k);
        lmp_status st = lmp_file_open(path, 0, &f, &err);
        lmp_alloc_fail_after(0);
        if (st == LMP_OK) {
            lmp_file_close(f);
            break;
        }
        if (st != LMP_E_NOMEM || f) {
            bad++;
            break;  // a failure that is not the injected one would repeat forever
        }
    }
    CHECKF(bad == 0, "open: %d bad results", bad);
    bad = 0;
    for (long k = 1;; k++) {  // write to memory
        void *b2 = NULL;
        size_t n2 = 0;
        lmp_alloc_fail_after(k);
        lmp_status st = lmp_file_write_mem(m, s.t, s.n, &b2, &n2, &err);
        lmp_alloc_fail_after(0);
        if (st == LMP_OK) {
            CHECK(n2 == size && memcmp(b2, buf, size) == 0);
            lmp_free(b2);
            break;
        }
        if (st != LMP_E_NOMEM || b2) {
            bad++;
            break;
        }
    }
    CHECKF(bad == 0, "write_mem: %d bad results", bad);
    bad = 0;
    snprintf(path, sizeof path, "%s/walk2.lmp", test_tmpdir());
    for (long k = 1;; k++) {  // write to disk: no file and no temporary after a failure
        lmp_alloc_fail_after(k);
        lmp_status st = lmp_file_write(path, m, s.t, s.n, &err);
        lmp_alloc_fail_after(0);
        if (st == LMP_OK) break;
        if (st != LMP_E_NOMEM || test_file_exists(path) || count_tmp_files(test_tmpdir(), "walk2.lmp") != 0) {
            bad++;
            break;
        }
    }
    CHECKF(bad == 0, "write: %d bad results", bad);
    bad = 0;
    for (long k = 1;; k++) {  // metadata clone
        lmp_alloc_fail_after(k);
        lmp_meta *c = lmp_meta_clone(m);
        lmp_alloc_fail_after(0);
        if (c) {
            lmp_meta_free(c);
            break;
        }
        if (k > 100000) {
            CHECKF(0, "meta clone never succeeds");
            break;
        }
    }
    for (long k = 1;; k++) {  // builder: new, meta, add (owned and borrowed), to_file
        lmp_alloc_fail_after(k);
        lmp_builder *b = lmp_builder_new();
        lmp_status st = b ? LMP_OK : LMP_E_NOMEM;
        if (!st) st = lmp_meta_set_str(lmp_builder_meta(b), "general.name", "walk");
        if (!st) st = lmp_meta_append_str(lmp_builder_meta(b), "provenance.history", "x");
        for (size_t i = 0; i < s.n && !st; i++) {
            void *d = lmp_malloc((size_t)s.t[i].nbytes);
            if (d) memcpy(d, s.t[i].data, (size_t)s.t[i].nbytes);
            if (i % 2) st = d ? lmp_builder_add(b, s.t[i].name, s.t[i].type, s.t[i].ndim, s.t[i].shape, d, &err) : LMP_E_NOMEM;
            else {
                lmp_free(d);
                st = lmp_builder_add_ref(b, s.t[i].name, s.t[i].type, s.t[i].ndim, s.t[i].shape, s.t[i].data, &err);
            }
        }
        lmp_file *f = NULL;
        if (!st) st = lmp_builder_to_file(b, &f, &err);
        lmp_alloc_fail_after(0);
        lmp_builder_free(b);
        lmp_file_close(f);
        if (st == LMP_OK) break;
        if (st != LMP_E_NOMEM) {
            bad++;
            break;
        }
    }
    CHECKF(bad == 0, "builder: %d bad results", bad);
    lmp_free(buf);
    free_tensors(&s);
    lmp_meta_free(m);
}

// Removes what the cases above left in this process's temporary directory.
static void cleanup_tmpdir(void) {
    static const char *names[] = {"rt.lmp", "replace.lmp", "limited.lmp", "builder.lmp", "short.lmp", "walk.lmp", "walk2.lmp"};
    char path[512];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", test_tmpdir(), names[i]);
        remove(path);
    }
    rmdir(test_tmpdir());
}

int main(void) {
    test_seed();
    RUN(test_roundtrip_mem_and_disk);
    RUN(test_roundtrip_empty);
    RUN(test_write_replaces_atomically);
    RUN(test_write_failures_leave_no_temporary);
    RUN(test_writer_refuses_bad_input);
    RUN(test_builder);
    RUN(test_tensor_helpers);
    RUN(test_err_prefix);
    RUN(test_meta_many_keys);
    RUN(test_assembler_matches_writer);
    RUN(test_malformed_header);
    RUN(test_malformed_metadata);
    RUN(test_malformed_directory);
    RUN(test_truncated_structures);
    RUN(test_truncated_every_prefix);
    RUN(test_random_corruption);
    RUN(test_crc32_combine);
    RUN(test_parallel_crc);
    RUN(test_alloc_failure_walk);
    cleanup_tmpdir();
    return test_report();
}
