// test_llama2c.c - the llama2.c importer (format/import_llama2c.c).
//
// Fixtures (tests/fixtures/llama2c/, written by scripts/make_llama2c_fixtures.py with numpy, an
// implementation independent of the importer): one tiny random model in the legacy and the version-1
// layout, its tokenizer.bin, and expected.txt with every lmpress tensor's shape and CRC32. Both files
// must import to exactly those tensors. Malformed variants are derived from the fixtures at run time,
// each checked for its specific message. The real stories260K (../shared) is checked against values
// read straight from the raw file, and skipped when absent.
#include <errno.h>

#include "format/lmp_format.h"
#include "format/lmp_import.h"
#include "tests/test_util.h"

#define FIX "tests/fixtures/llama2c/"

// The fixtures are committed: their absence is a failure (wrong working directory or a lost file), not a skip.
#define REQUIRE_FIXTURES()                                                                                 \
    do {                                                                                                  \
        if (!test_file_exists(FIX "tiny_legacy.bin") || !test_file_exists(FIX "tiny_v1.bin") ||           \
            !test_file_exists(FIX "tokenizer.bin") || !test_file_exists(FIX "expected.txt")) {             \
            CHECKF(0, FIX " fixtures missing (run from the repository root; scripts/make_llama2c_fixtures.py writes them)"); \
            return;                                                                                       \
        }                                                                                                 \
    } while (0)

static int64_t shape_of(const lmp_tensor *t, int d) { return d < t->ndim ? t->shape[d] : 0; }

static const char *meta_str(const lmp_meta *m, const char *key) {
    const char *s = NULL;
    lmp_error e;
    return lmp_meta_get_str(m, key, &s, &e) == LMP_OK ? s : "(missing)";
}
static uint64_t meta_u64(const lmp_meta *m, const char *key) {
    uint64_t v = UINT64_MAX;
    lmp_error e;
    lmp_meta_get_u64(m, key, &v, &e);
    return v;
}
static float meta_f32(const lmp_meta *m, const char *key) {
    float v = -1;
    lmp_error e;
    lmp_meta_get_f32(m, key, &v, &e);
    return v;
}

static uint32_t file_crc(const char *path) {
    size_t n;
    void *b = test_read_file(path, &n);
    uint32_t c = b ? lmp_crc32(0, b, n) : 0;
    free(b);
    return c;
}

// Compares the builder's tensors with expected.txt (name, shape, CRC32, first value), in order.
static void check_expected(const lmp_builder *b, const char *label) {
    FILE *f = fopen(FIX "expected.txt", "r");
    CHECKF(f != NULL, "cannot open " FIX "expected.txt");
    if (!f) return;
    char name[128], shape[64];
    unsigned crc;
    float first;
    size_t i = 0;
    while (fscanf(f, "%127s %63s %x %g", name, shape, &crc, &first) == 4) {
        const lmp_tensor *t = lmp_builder_tensor(b, i);
        CHECKF(t && strcmp(t->name, name) == 0, "%s: tensor %zu is %s, expected %s", label, i, t ? t->name : "none", name);
        if (!t) break;
        char got[64];
        if (t->ndim == 1) snprintf(got, sizeof got, "%lld", (long long)t->shape[0]);
        else snprintf(got, sizeof got, "%lldx%lld", (long long)shape_of(t, 0), (long long)shape_of(t, 1));
        CHECKF(strcmp(got, shape) == 0, "%s: %s shape %s, expected %s", label, name, got, shape);
        CHECKF(t->type == LMP_DTYPE_F32, "%s: %s not f32", label, name);
        uint32_t c = lmp_crc32(0, t->data, (size_t)t->nbytes);
        CHECKF(c == crc, "%s: %s CRC32 %08x, expected %08x", label, name, c, crc);
        CHECKF(((const float *)t->data)[0] == first, "%s: %s[0] = %.9g, expected %.9g", label, name,
               ((const float *)t->data)[0], first);
        i++;
    }
    fclose(f);
    CHECKF(i == 21 && lmp_builder_n_tensors(b) == i, "%s: %zu expected lines, %zu tensors", label, i, lmp_builder_n_tensors(b));
}

static void check_tiny_meta(const lmp_meta *m, const char *bin, const char *name) {
    CHECK(strcmp(meta_str(m, "general.architecture"), "llama") == 0);
    CHECKF(strcmp(meta_str(m, "general.name"), name) == 0, "general.name %s", meta_str(m, "general.name"));
    CHECK(meta_u64(m, "llama.context_length") == 16);
    CHECK(meta_u64(m, "llama.embedding_length") == 32);
    CHECK(meta_u64(m, "llama.block_count") == 2);
    CHECK(meta_u64(m, "llama.feed_forward_length") == 40);
    CHECK(meta_u64(m, "llama.attention.head_count") == 4);
    CHECK(meta_u64(m, "llama.attention.head_count_kv") == 2);
    CHECK(meta_u64(m, "llama.attention.head_dim") == 8);
    CHECK(meta_u64(m, "llama.rope.dimension_count") == 8);
    CHECK(meta_u64(m, "llama.vocab_size") == 64);
    CHECK(meta_f32(m, "llama.attention.layer_norm_rms_epsilon") == 1e-5f);
    CHECK(meta_f32(m, "llama.rope.freq_base") == 10000.0f);
    CHECK(strcmp(meta_str(m, "llama.rope.style"), "interleaved") == 0);
    CHECK(strcmp(meta_str(m, "provenance.tool"), "lmpress " LMP_VERSION_STRING) == 0);
    CHECK(strcmp(meta_str(m, "provenance.source"), bin) == 0);
    CHECK(meta_u64(m, "provenance.source_crc32") == file_crc(bin));
    // tokenizer.bin beside the model
    CHECK(strcmp(meta_str(m, "tokenizer.model"), "llama") == 0);
    const void *d;
    uint64_t n = 0;
    lmp_error e;
    CHECK(lmp_meta_get_arr(m, "tokenizer.tokens", LMP_KV_STRING, &d, &n, &e) == LMP_OK && n == 64);
    if (n == 64) {
        const char *const *tok = d;
        CHECK(strcmp(tok[0], "<unk>") == 0 && strcmp(tok[1], "\n<s>\n") == 0 && strcmp(tok[2], "\n</s>\n") == 0);
        CHECK(strcmp(tok[3], "<0x00>") == 0 && strcmp(tok[19], " the") == 0 && strcmp(tok[53], " \xc3\xa9t\xc3\xa9") == 0);
    }
    CHECK(lmp_meta_get_arr(m, "tokenizer.scores", LMP_KV_F32, &d, &n, &e) == LMP_OK && n == 64);
    if (n == 64) CHECK(((const float *)d)[0] == 0.0f && ((const float *)d)[19] == -1.0f && ((const float *)d)[63] == -45.0f);
    CHECK(lmp_meta_get_arr(m, "tokenizer.token_type", LMP_KV_I32, &d, &n, &e) == LMP_OK && n == 64);
    if (n == 64) {
        const int32_t *ty = d;
        CHECK(ty[0] == 2 && ty[1] == 3 && ty[2] == 3 && ty[3] == 6 && ty[18] == 6 && ty[19] == 1 && ty[63] == 1);
    }
    CHECK(meta_u64(m, "tokenizer.bos_id") == 1 && meta_u64(m, "tokenizer.eos_id") == 2);
    CHECK(meta_u64(m, "tokenizer.max_token_length") == 6);
    int b1 = 0, b2 = 0;
    CHECK(lmp_meta_get_bool(m, "tokenizer.add_bos", &b1, &e) == LMP_OK && b1 == 1);
    CHECK(lmp_meta_get_bool(m, "tokenizer.add_space_prefix", &b2, &e) == LMP_OK && b2 == 1);
}

static void test_fixture_both_layouts(void) {
    REQUIRE_FIXTURES();
    lmp_builder *a = NULL, *b = NULL;
    lmp_error err = {0};
    CHECKF(lmp_import_llama2c(FIX "tiny_legacy.bin", NULL, &a, &err) == LMP_OK, "%s", err.msg);
    CHECKF(lmp_import_llama2c(FIX "tiny_v1.bin", NULL, &b, &err) == LMP_OK, "%s", err.msg);
    if (!a || !b) {
        lmp_builder_free(a);
        lmp_builder_free(b);
        return;
    }
    check_expected(a, "legacy");
    check_expected(b, "v1");
    check_tiny_meta(lmp_builder_meta(a), FIX "tiny_legacy.bin", "tiny_legacy");
    check_tiny_meta(lmp_builder_meta(b), FIX "tiny_v1.bin", "tiny_v1");
    // identical tensors from both layouts
    CHECK(lmp_builder_n_tensors(a) == lmp_builder_n_tensors(b));
    for (size_t i = 0; i < lmp_builder_n_tensors(a) && i < lmp_builder_n_tensors(b); i++) {
        const lmp_tensor *x = lmp_builder_tensor(a, i), *y = lmp_builder_tensor(b, i);
        CHECKF(strcmp(x->name, y->name) == 0 && x->nbytes == y->nbytes && memcmp(x->data, y->data, (size_t)x->nbytes) == 0,
               "tensor %zu (%s) differs between layouts", i, x->name);
    }
    // and the result is a valid .lmp file, in memory and on disk
    lmp_file *f = NULL, *g = NULL;
    CHECKF(lmp_builder_to_file(a, &f, &err) == LMP_OK, "%s", err.msg);
    char path[512];
    snprintf(path, sizeof path, "%s/tiny.lmp", test_tmpdir());
    CHECKF(lmp_builder_write(b, path, &err) == LMP_OK, "%s", err.msg);
    CHECKF(lmp_file_open(path, 0, &g, &err) == LMP_OK, "%s", err.msg);
    if (f && g) {
        CHECK(lmp_file_n_tensors(f) == 21 && lmp_file_n_tensors(g) == 21);
        const lmp_tensor *t = lmp_file_find(g, "blk.1.ffn_down.weight");
        CHECK(t && t->shape[0] == 32 && t->shape[1] == 40);
        CHECK(memcmp(lmp_file_find(f, "output.weight")->data, lmp_file_find(g, "output.weight")->data, 64 * 32 * 4) == 0);
    }
    lmp_file_close(f);
    lmp_file_close(g);
    remove(path);
    lmp_builder_free(a);
    lmp_builder_free(b);
}

// ---- the real stories260K ----

static void test_stories260k(void) {
    char bin[512], tok[512];
    snprintf(bin, sizeof bin, "%s/models/stories260K/stories260K.bin", test_shared_dir());
    snprintf(tok, sizeof tok, "%s/models/stories260K/tok512.bin", test_shared_dir());
    if (!test_file_exists(bin) || !test_file_exists(tok)) SKIP("%s or tok512.bin not found (shared material absent)", bin);
    size_t raw_n;
    uint8_t *raw = test_read_file(bin, &raw_n);
    CHECK(raw && raw_n == 1056540);
    if (!raw) return;
    lmp_import_opts opts = {.tokenizer_path = tok};
    lmp_builder *b = NULL;
    lmp_error err = {0};
    CHECKF(lmp_import_llama2c(bin, &opts, &b, &err) == LMP_OK, "%s", err.msg);
    if (!b) {
        free(raw);
        return;
    }
    const lmp_meta *m = lmp_builder_meta(b);
    CHECK(strcmp(meta_str(m, "general.name"), "stories260K") == 0);
    CHECK(meta_u64(m, "llama.embedding_length") == 64 && meta_u64(m, "llama.feed_forward_length") == 172);
    CHECK(meta_u64(m, "llama.block_count") == 5 && meta_u64(m, "llama.attention.head_count") == 8);
    CHECK(meta_u64(m, "llama.attention.head_count_kv") == 4 && meta_u64(m, "llama.vocab_size") == 512);
    CHECK(meta_u64(m, "llama.context_length") == 512 && meta_u64(m, "llama.attention.head_dim") == 8);
    CHECK(meta_u64(m, "provenance.source_crc32") == lmp_crc32(0, raw, raw_n));
    CHECK(lmp_builder_n_tensors(b) == 1 + 5 * 9 + 1);  // shared classifier: no output.weight
    CHECK(lmp_builder_find(b, "output.weight") == NULL);
    const lmp_tensor *k = lmp_builder_find(b, "blk.4.attn_k.weight");
    CHECK(k && k->ndim == 2 && k->shape[0] == 32 && k->shape[1] == 64);
    const lmp_tensor *dn = lmp_builder_find(b, "blk.3.ffn_down.weight");
    CHECK(dn && dn->shape[0] == 64 && dn->shape[1] == 172);

    // Values straight from the raw legacy layout (28-byte header, then fp32 groups).
    const int64_t D = 64, H = 172, L = 5, V = 512, KV = 32;
    int64_t o_emb = 0, o_att = o_emb + V * D, o_q = o_att + L * D, o_k = o_q + L * D * D, o_v = o_k + L * KV * D;
    int64_t o_o = o_v + L * KV * D, o_ffn = o_o + L * D * D, o_w1 = o_ffn + L * D, o_w2 = o_w1 + L * H * D;
    int64_t o_w3 = o_w2 + L * D * H, o_fin = o_w3 + L * H * D;
    struct {
        const char *name;
        int64_t raw_index, index;
    } probes[] = {
        {"token_embd.weight", o_emb + 100 * D + 3, 100 * D + 3},
        {"blk.0.attn_norm.weight", o_att + 0, 0},
        {"blk.2.attn_norm.weight", o_att + 2 * D + 17, 17},
        {"blk.1.attn_q.weight", o_q + 1 * D * D + 5 * D + 9, 5 * D + 9},
        {"blk.4.attn_k.weight", o_k + 4 * KV * D + 31 * D + 63, 31 * D + 63},
        {"blk.3.attn_v.weight", o_v + 3 * KV * D + 7, 7},
        {"blk.2.attn_output.weight", o_o + 2 * D * D + 63 * D + 1, 63 * D + 1},
        {"blk.4.ffn_norm.weight", o_ffn + 4 * D + 63, 63},
        {"blk.0.ffn_gate.weight", o_w1 + 171 * D + 2, 171 * D + 2},
        {"blk.3.ffn_down.weight", o_w2 + 3 * D * H + 5 * H + 7, 5 * H + 7},
        {"blk.4.ffn_up.weight", o_w3 + 4 * H * D + H * D - 1, H * D - 1},
        {"output_norm.weight", o_fin + 10, 10},
    };
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        const lmp_tensor *t = lmp_builder_find(b, probes[i].name);
        float want;
        memcpy(&want, raw + 28 + 4 * probes[i].raw_index, 4);
        CHECKF(t && ((const float *)t->data)[probes[i].index] == want, "%s[%lld] = %g, raw file has %g", probes[i].name,
               (long long)probes[i].index, t ? ((const float *)t->data)[probes[i].index] : -1.0f, want);
    }
    CHECK(o_fin + D + 2 * 512 * 4 == (int64_t)(raw_n - 28) / 4);  // freq_cis tables after output_norm, then EOF

    const void *d;
    uint64_t n = 0;
    CHECK(lmp_meta_get_arr(m, "tokenizer.tokens", LMP_KV_STRING, &d, &n, &err) == LMP_OK && n == 512);
    if (n == 512) {
        const char *const *tk = d;
        CHECK(strcmp(tk[0], "<unk>") == 0 && strcmp(tk[258], "<0xFF>") == 0 && strcmp(tk[259], " t") == 0);
    }
    CHECK(lmp_meta_get_arr(m, "tokenizer.token_type", LMP_KV_I32, &d, &n, &err) == LMP_OK && n == 512);
    if (n == 512) CHECK(((const int32_t *)d)[258] == 6 && ((const int32_t *)d)[259] == 1 && ((const int32_t *)d)[0] == 2);
    CHECK(meta_u64(m, "tokenizer.max_token_length") == 7);
    lmp_builder_free(b);

    // Without tokenizer_path, tok512.bin beside the model is found (llama2.c's custom-vocabulary name).
    b = NULL;
    CHECKF(lmp_import_llama2c(bin, NULL, &b, &err) == LMP_OK, "%s", err.msg);
    CHECK(b && lmp_meta_find(lmp_builder_meta(b), "tokenizer.tokens") != NULL);
    lmp_builder_free(b);
    free(raw);
}

// ---- malformed inputs ----

typedef struct blob {
    uint8_t *p;
    size_t n;
} blob;

static blob load(const char *path) {
    blob b = {0};
    b.p = test_read_file(path, &b.n);
    return b;
}

// Writes bytes to dir/name and imports them (tokenizer from tok_path if given); returns the status.
static lmp_status import_bytes(const char *name, const uint8_t *p, size_t n, const char *tok_path, lmp_error *err) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", test_tmpdir(), name);
    test_write_file(path, p, n);
    lmp_import_opts opts = {.tokenizer_path = tok_path};
    lmp_builder *b = NULL;
    err->msg[0] = 0;
    lmp_status st = lmp_import_llama2c(path, &opts, &b, err);
    CHECK((st == LMP_OK) == (b != NULL));
    lmp_builder_free(b);
    remove(path);
    return st;
}

static void set_i32(uint8_t *p, size_t at, int32_t v) { memcpy(p + at, &v, 4); }

#define EXPECT(label, st, want, call)                                                                     \
    do {                                                                                                  \
        lmp_error e_;                                                                                     \
        lmp_status s_ = call(&e_);                                                                        \
        CHECKF(s_ == (st) && strstr(e_.msg, want), "%s: status %d '%s', wanted %d '%s'", label, s_, e_.msg, \
               (int)(st), want);                                                                          \
    } while (0)

static void test_malformed_models(void) {
    REQUIRE_FIXTURES();
    blob leg = load(FIX "tiny_legacy.bin"), v1 = load(FIX "tiny_v1.bin");
    char tok[] = FIX "tokenizer.bin";
    uint8_t *c = malloc(leg.n + 8);
    lmp_error e;
#define RUN_LEG(len) import_bytes("m.bin", c, (len), tok, &e)
    // truncated / wrong size: the message names both sizes
    memcpy(c, leg.p, leg.n);
    CHECK(RUN_LEG(leg.n - 4) == LMP_E_FORMAT);
    CHECKF(strstr(e.msg, "file is 72856 bytes, but its llama2.c legacy header") && strstr(e.msg, "implies 72860 bytes"), "%s", e.msg);
    CHECKF(strstr(e.msg, "dim 32, hidden_dim 40, n_layers 2, n_heads 4, n_kv_heads 2, vocab_size 64, seq_len 16, separate classifier"), "%s", e.msg);
    memset(c + leg.n, 0, 8);
    CHECK(RUN_LEG(leg.n + 8) == LMP_E_FORMAT && strstr(e.msg, "file is 72868 bytes") && strstr(e.msg, "implies 72860"));
    CHECK(RUN_LEG(10) == LMP_E_FORMAT && strstr(e.msg, "truncated llama2.c file") && strstr(e.msg, "10 bytes, the header needs 28"));
    CHECK(RUN_LEG(0) == LMP_E_FORMAT && strstr(e.msg, "0 bytes, the header needs 28"));
    // the legacy flag: a positive vocab_size means a shared classifier, so the size no longer matches
    set_i32(c, 20, 64);
    CHECK(RUN_LEG(leg.n) == LMP_E_FORMAT && strstr(e.msg, "shared classifier) implies 64668 bytes"));
    // negative or zero values
    static const struct {
        int field;
        int32_t value;
        const char *msg;
    } bad[] = {
        {0, -32, "dim is -32 (must be positive)"},
        {1, 0, "hidden_dim is 0 (must be positive)"},
        {2, -1, "n_layers is -1 (must be positive)"},
        {3, 0, "n_heads is 0 (must be positive)"},
        {4, -2, "n_kv_heads is -2 (must be positive)"},
        {5, 0, "vocab_size is 0"},
        {6, -16, "seq_len is -16 (must be positive)"},
        {3, 5, "dim 32 is not a multiple of n_heads 5"},
        {4, 3, "n_heads 4 is not a multiple of n_kv_heads 3"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memcpy(c, leg.p, leg.n);
        set_i32(c, 4 * bad[i].field, bad[i].value);
        lmp_status st = RUN_LEG(leg.n);
        CHECKF(st == LMP_E_FORMAT && strstr(e.msg, bad[i].msg), "case %zu: '%s' lacks '%s'", i, e.msg, bad[i].msg);
    }
    memcpy(c, leg.p, leg.n);
    set_i32(c, 12, 32);  // n_heads 32 -> head size 1
    set_i32(c, 16, 32);
    CHECK(RUN_LEG(leg.n) == LMP_E_FORMAT && strstr(e.msg, "head size 1 (dim / n_heads) is odd"));
    // sizes whose product overflows 64 bits
    memcpy(c, leg.p, leg.n);
    set_i32(c, 0, 1 << 30);
    set_i32(c, 4, 1 << 30);
    set_i32(c, 8, 1 << 30);
    set_i32(c, 12, 1 << 10);
    set_i32(c, 16, 1 << 10);
    CHECK(RUN_LEG(leg.n) == LMP_E_FORMAT && strstr(e.msg, "overflow 64 bits"));
#undef RUN_LEG

    // version 1 header
    memcpy(c, v1.p, v1.n);
#define RUN_V1(len) import_bytes("v.bin", c, (len), tok, &e)
    CHECK(RUN_V1(v1.n - 1) == LMP_E_FORMAT && strstr(e.msg, "llama2.c version 1 header") && strstr(e.msg, "implies 72576 bytes"));
    CHECK(RUN_V1(100) == LMP_E_FORMAT && strstr(e.msg, "100 bytes, the version 1 header needs 256"));
    CHECK(RUN_V1(6) == LMP_E_FORMAT && strstr(e.msg, "the version needs 8"));
    set_i32(c, 4, 2);
    CHECK(RUN_V1(v1.n) == LMP_E_UNSUPPORTED && strstr(e.msg, "llama2.c version 2 (Q8_0 export) is not supported; use the fp32 export"));
    set_i32(c, 4, 3);
    CHECK(RUN_V1(v1.n) == LMP_E_UNSUPPORTED && strstr(e.msg, "llama2.c version 3 is not supported"));
    set_i32(c, 4, 1);
    c[36] = 2;
    CHECK(RUN_V1(v1.n) == LMP_E_FORMAT && strstr(e.msg, "shared_classifier is 2 (must be 0 or 1)"));
    c[36] = 1;  // shared, but the file holds a classifier: size mismatch
    CHECK(RUN_V1(v1.n) == LMP_E_FORMAT && strstr(e.msg, "shared classifier) implies 64384 bytes"));
    c[36] = 0;
    set_i32(c, 28, -64);  // vocab_size
    CHECK(RUN_V1(v1.n) == LMP_E_FORMAT && strstr(e.msg, "vocab_size is -64 (must be positive)"));
    set_i32(c, 28, 64);
    set_i32(c, 8, 30);  // dim 30: not a multiple of n_heads 4
    CHECK(RUN_V1(v1.n) == LMP_E_FORMAT && strstr(e.msg, "dim 30 is not a multiple of n_heads 4"));
    set_i32(c, 8, 32);
    CHECKF(RUN_V1(v1.n) == LMP_OK, "restored v1 file refused: %s", e.msg);
#undef RUN_V1

    // missing model file
    lmp_builder *b = NULL;
    CHECK(lmp_import_llama2c(FIX "no_such_model.bin", NULL, &b, &e) == LMP_E_IO && b == NULL && strstr(e.msg, "No such file"));
    free(c);
    free(leg.p);
    free(v1.p);
}

// Imports the tiny legacy model with the first len bytes of buf as its tokenizer.
static lmp_status try_tokenizer(const char *tpath, const uint8_t *buf, size_t len, lmp_error *e) {
    test_write_file(tpath, buf, len);
    lmp_import_opts opts = {.tokenizer_path = tpath};
    lmp_builder *b = NULL;
    e->msg[0] = 0;
    lmp_status st = lmp_import_llama2c(FIX "tiny_legacy.bin", &opts, &b, e);
    lmp_builder_free(b);
    return st;
}

static void test_malformed_tokenizer(void) {
    REQUIRE_FIXTURES();
    blob tk = load(FIX "tokenizer.bin");
    char tpath[512];
    snprintf(tpath, sizeof tpath, "%s/tok_variant.bin", test_tmpdir());
    lmp_import_opts opts = {.tokenizer_path = tpath};
    lmp_error e;
    lmp_builder *b;
    // offsets of every token record
    size_t offs[65], pos = 4;
    for (int i = 0; i < 64; i++) {
        offs[i] = pos;
        int32_t len;
        memcpy(&len, tk.p + pos + 4, 4);
        pos += 8 + (size_t)len;
    }
    offs[64] = pos;
    CHECK(pos == tk.n);
#define TRY(len) try_tokenizer(tpath, buf, (len), &e)
    uint8_t *buf = malloc(tk.n + 64);
    memcpy(buf, tk.p, tk.n);
    CHECKF(TRY(tk.n) == LMP_OK, "%s", e.msg);
    // one token short: count mismatch naming both counts
    CHECK(TRY(offs[63]) == LMP_E_FORMAT);
    CHECKF(strstr(e.msg, "has 63 tokens, but the model's vocab_size is 64"), "%s", e.msg);
    // one token too many
    memcpy(buf + tk.n, tk.p + offs[63], offs[64] - offs[63]);
    CHECK(TRY(tk.n + (offs[64] - offs[63])) == LMP_E_FORMAT && strstr(e.msg, "has 65 tokens, but the model's vocab_size is 64"));
    // cut in the middle of a token's text, and of its score/length
    CHECK(TRY(offs[19] + 9) == LMP_E_FORMAT);  // token 19 is " the"
    CHECKF(strstr(e.msg, "truncated tokenizer") && strstr(e.msg, "token 19 text at offset") && strstr(e.msg, "needs 4 bytes"), "%s", e.msg);
    CHECK(TRY(offs[40] + 5) == LMP_E_FORMAT);
    CHECKF(strstr(e.msg, "truncated tokenizer") && strstr(e.msg, "token 40 (score and length)"), "%s", e.msg);
    CHECK(TRY(2) == LMP_E_FORMAT && strstr(e.msg, "max_token_length needs 4"));
    // a token longer than max_token_length, a negative length, a bad max_token_length, a NUL
    set_i32(buf, 0, 5);
    CHECK(TRY(tk.n) == LMP_E_FORMAT && strstr(e.msg, "token 2 has length 6 (must be 0..max_token_length 5)"));
    set_i32(buf, 0, 0);
    CHECK(TRY(tk.n) == LMP_E_FORMAT && strstr(e.msg, "max_token_length is 0"));
    memcpy(buf, tk.p, tk.n);
    set_i32(buf, offs[10] + 4, -1);
    CHECK(TRY(tk.n) == LMP_E_FORMAT && strstr(e.msg, "token 10 has length -1"));
    memcpy(buf, tk.p, tk.n);
    buf[offs[20] + 9] = 0;
    CHECK(TRY(tk.n) == LMP_E_FORMAT && strstr(e.msg, "token 20 contains a NUL byte"));
    // an explicit tokenizer that does not exist
    remove(tpath);
    b = NULL;
    CHECK(lmp_import_llama2c(FIX "tiny_legacy.bin", &opts, &b, &e) == LMP_E_IO && !b && strstr(e.msg, "cannot open tokenizer"));
#undef TRY
    free(buf);
    free(tk.p);
}

// Tokenizer discovery beside the model: none (import without tokenizer keys), tok<vocab>.bin, tokenizer.bin.
static void test_tokenizer_discovery(void) {
    REQUIRE_FIXTURES();
    blob leg = load(FIX "tiny_legacy.bin"), tk = load(FIX "tokenizer.bin");
    char dir[400], model[512], t1[512], t2[512];
    snprintf(dir, sizeof dir, "%s/disc", test_tmpdir());
    mkdir(dir, 0755);
    snprintf(model, sizeof model, "%s/model.v0.bin", dir);
    snprintf(t1, sizeof t1, "%s/tok64.bin", dir);
    snprintf(t2, sizeof t2, "%s/tokenizer.bin", dir);
    test_write_file(model, leg.p, leg.n);
    lmp_builder *b = NULL;
    lmp_error e;
    CHECKF(lmp_import_llama2c(model, NULL, &b, &e) == LMP_OK, "%s", e.msg);
    CHECK(b && lmp_meta_find(lmp_builder_meta(b), "tokenizer.tokens") == NULL);
    CHECK(b && strcmp(meta_str(lmp_builder_meta(b), "general.name"), "model.v0") == 0);
    lmp_builder_free(b);
    test_write_file(t2, tk.p, tk.n);
    b = NULL;
    CHECK(lmp_import_llama2c(model, NULL, &b, &e) == LMP_OK && lmp_meta_find(lmp_builder_meta(b), "tokenizer.tokens"));
    lmp_builder_free(b);
    // tok64.bin wins over tokenizer.bin: make tokenizer.bin invalid to prove it is not read
    test_write_file(t2, tk.p, 3);
    b = NULL;
    CHECK(lmp_import_llama2c(model, NULL, &b, &e) == LMP_E_FORMAT && strstr(e.msg, "tokenizer.bin"));
    test_write_file(t1, tk.p, tk.n);
    b = NULL;
    CHECKF(lmp_import_llama2c(model, NULL, &b, &e) == LMP_OK, "%s", e.msg);
    lmp_builder_free(b);
    remove(model);
    remove(t1);
    remove(t2);
    rmdir(dir);
    free(leg.p);
    free(tk.p);
}

static void test_alloc_failure_walk(void) {
    REQUIRE_FIXTURES();
    int bad = 0;
    long k;
    for (k = 1; k < 100000; k++) {
        lmp_builder *b = NULL;
        lmp_error e;
        lmp_alloc_fail_after(k);
        lmp_status st = lmp_import_llama2c(FIX "tiny_v1.bin", NULL, &b, &e);
        lmp_alloc_fail_after(0);
        lmp_builder_free(b);
        if (st == LMP_OK) break;
        if (st != LMP_E_NOMEM || b) {
            bad++;
            CHECKF(0, "step %ld: status %d '%s'", k, st, e.msg);
            break;
        }
    }
    CHECKF(bad == 0 && k > 30 && k < 100000, "%d bad results after %ld steps", bad, k);
}

int main(void) {
    test_seed();
    RUN(test_fixture_both_layouts);
    RUN(test_stories260k);
    RUN(test_malformed_models);
    RUN(test_malformed_tokenizer);
    RUN(test_tokenizer_discovery);
    RUN(test_alloc_failure_walk);
    rmdir(test_tmpdir());
    return test_report();
}
