// test_runtime.c - model-level checks of the CPU runtime against the independent NumPy reference
// (scripts/ref_llama.py writes tests/fixtures/ref/*.ref), on the batch path (prefill: sgemm / tiled
// kernels) and the decode path (one token at a time: matvec), with every kernel table this CPU runs;
// plus greedy generation of stories260K against llama2.c's known output (those two need ../shared's checkpoint),
// and seeded sampling and bad calls on the shipped model (models/default.lmp).
#include <stdlib.h>

#include "runtime/generate.h"
#include "runtime/kernels.h"
#include "runtime/membw.h"
#include "runtime/session.h"
#include "tests/test_util.h"

typedef struct {
    int n, vocab;
    int32_t *tokens;
    float *logits;  // (n, vocab)
} ref_fixture;

static int ref_load(const char *path, ref_fixture *r) {
    size_t size;
    unsigned char *buf = test_read_file(path, &size);
    if (!buf) return -1;
    int ok = size >= 16 && memcmp(buf, "LMPREF1", 8) == 0;
    if (ok) {
        uint32_t n, v;
        memcpy(&n, buf + 8, 4);
        memcpy(&v, buf + 12, 4);
        ok = size == 16 + 4 * (size_t)n + 4 * (size_t)n * v;
        if (ok) {
            r->n = (int)n;
            r->vocab = (int)v;
            r->tokens = malloc(4 * (size_t)n);
            r->logits = malloc(4 * (size_t)n * v);
            memcpy(r->tokens, buf + 16, 4 * (size_t)n);
            memcpy(r->logits, buf + 16 + 4 * (size_t)n, 4 * (size_t)n * v);
        }
    }
    free(buf);
    return ok ? 0 : -1;
}

// max over positions of max|a - b| / max|b| (relative to each position's logit scale)
static double max_rel_err(const float *a, const float *b, int n, int vocab) {
    double worst = 0;
    for (int i = 0; i < n; i++) {
        double d = 0, s = 0;
        for (int j = 0; j < vocab; j++) {
            double e = fabs((double)a[(size_t)i * vocab + j] - b[(size_t)i * vocab + j]);
            if (e > d) d = e;
            if (fabs(b[(size_t)i * vocab + j]) > s) s = fabs(b[(size_t)i * vocab + j]);
        }
        if (d / s > worst) worst = d / s;
    }
    return worst;
}

// Runs the fixture's tokens through the model as one batch and one token at a time, with each kernel
// table the CPU supports, and compares with the reference.
static void check_against_ref(const char *model_path, const char *tok_path, const char *ref_path) {
    ref_fixture r;
    if (ref_load(ref_path, &r) != 0) {
        CHECKF(0, "cannot read fixture %s", ref_path);
        return;
    }
    lmp_import_opts io = {.tokenizer_path = tok_path};
    lmp_error err = {0};
    lmp_model *m = NULL;
    CHECKF(lmp_model_load(model_path, &io, &m, &err) == LMP_OK, "%s: %s", model_path, err.msg);
    if (!m) return;
    CHECK(m->cfg.vocab == r.vocab);
    float *logits = malloc(sizeof(float) * (size_t)r.n * r.vocab);
    const char *const *isas = lmp_kernels_isa_list();
    for (int k = 0; isas[k]; k++) {
        if (!lmp_kernels_by_isa(isas[k])) {
            fprintf(stderr, "  (%s kernels not supported by this CPU: not run)\n", isas[k]);
            continue;
        }
        setenv("LMP_ISA", isas[k], 1);
        for (int batch = 0; batch < 2; batch++) {
            lmp_session_opts so = {r.n, batch ? r.n : 1, 2, "cpu"};
            lmp_session *s = NULL;
            CHECKF(lmp_session_new(m, &so, &s, &err) == LMP_OK, "%s", err.msg);
            if (!s) continue;
            if (batch) {
                CHECKF(lmp_session_eval(s, r.tokens, r.n, 0, 0, logits, &err) == LMP_OK, "%s", err.msg);
            } else {
                for (int i = 0; i < r.n; i++)
                    CHECK(lmp_session_eval(s, r.tokens + i, 1, i, 0, logits + (size_t)i * r.vocab, &err) == LMP_OK);
            }
            double e = max_rel_err(logits, r.logits, r.n, r.vocab);
            CHECKF(e <= 1e-4, "%s (%s, %s): max relative error %.3g > 1e-4", model_path, isas[k],
                   batch ? "batch" : "decode", e);
            if (getenv("LMP_TEST_VERBOSE"))
                fprintf(stderr, "  %s %s %s: max rel err %.3g\n", model_path, isas[k], batch ? "batch" : "decode", e);
            lmp_session_free(s);
        }
    }
    unsetenv("LMP_ISA");
    free(logits);
    free(r.tokens);
    free(r.logits);
    lmp_model_free(m);
}

static char g_model[512], g_tok[512];

static int have_stories(void) {
    snprintf(g_model, sizeof g_model, "%s/models/stories260K/stories260K.bin", test_shared_dir());
    snprintf(g_tok, sizeof g_tok, "%s/models/stories260K/tok512.bin", test_shared_dir());
    return test_file_exists(g_model) && test_file_exists(g_tok);
}

static void test_stories260k_logits(void) {
    if (!have_stories()) SKIP("%s not found", g_model);
    check_against_ref(g_model, g_tok, "tests/fixtures/ref/stories260K.ref");
}

static void test_tiny_gqa_llama2c_logits(void) {
    check_against_ref("tests/fixtures/llama2c/tiny_v1.bin", NULL,
                      "tests/fixtures/ref/tiny_llama2c_gqa.ref");
}

static void test_tiny_gqa_hf_logits(void) {
    check_against_ref("tests/fixtures/hf_tiny_gqa", NULL, "tests/fixtures/ref/hf_tiny_gqa.ref");
}

static void test_tiny_bf16_sharded_logits(void) {
    check_against_ref("tests/fixtures/hf_tiny_sharded", NULL, "tests/fixtures/ref/hf_tiny_sharded.ref");
}

typedef struct {
    char buf[4096];
    size_t len;
} text_sink;

static int sink_piece(void *user, const char *bytes, size_t len) {
    text_sink *t = user;
    if (t->len + len < sizeof t->buf) {
        memcpy(t->buf + t->len, bytes, len);
        t->len += len;
        t->buf[t->len] = 0;
    }
    return 0;
}

// llama2.c's run.c, temperature 0, no prompt: the text it prints for stories260K.
static void test_stories260k_greedy(void) {
    if (!have_stories()) SKIP("%s not found", g_model);
    lmp_import_opts io = {.tokenizer_path = g_tok};
    lmp_error err = {0};
    lmp_model *m = NULL;
    CHECKF(lmp_model_load(g_model, &io, &m, &err) == LMP_OK, "%s", err.msg);
    if (!m) return;
    for (int nth = 1; nth <= 2; nth++) {
        lmp_session_opts so = {0, 0, nth, "cpu"};
        lmp_session *s = NULL;
        CHECK(lmp_session_new(m, &so, &s, &err) == LMP_OK);
        lmp_sampler sm;
        CHECK(lmp_sampler_init(&sm, m->cfg.vocab, 0.0f, 0.9f, 1, &err) == LMP_OK);
        text_sink t = {{0}, 0};
        lmp_gen_stats gs;
        CHECKF(lmp_generate(s, "", 40, &sm, sink_piece, &t, &gs, &err) == LMP_OK, "%s", err.msg);
        const char *want = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.";
        CHECKF(strncmp(t.buf, want, strlen(want)) == 0, "threads %d: got '%s'", nth, t.buf);
        CHECK(gs.n_prompt == 1 && gs.n_generated == 40);
        // With a prompt: the prompt is echoed and continued.
        t.len = 0;
        CHECK(lmp_generate(s, "Once upon a time", 20, &sm, sink_piece, &t, &gs, &err) == LMP_OK);
        CHECKF(strncmp(t.buf, "Once upon a time", 16) == 0 && t.len > 30, "got '%s'", t.buf);
        lmp_sampler_free(&sm);
        lmp_session_free(s);
    }
    lmp_model_free(m);
}

// Sampling with a seed is reproducible, and differs between seeds.
static void test_sampling_seeded(void) {
    lmp_error err = {0};
    lmp_model *m = NULL;
    CHECKF(lmp_model_load(TEST_DEFAULT_MODEL, NULL, &m, &err) == LMP_OK, "%s", err.msg);
    if (!m) return;
    lmp_session *s = NULL;
    lmp_session_opts so = {128, 0, 2, "cpu"};
    CHECK(lmp_session_new(m, &so, &s, &err) == LMP_OK);
    text_sink a = {{0}, 0}, b = {{0}, 0}, c = {{0}, 0};
    lmp_gen_stats gs;
    lmp_sampler sm;
    uint64_t seeds[3] = {42, 42, 7};
    text_sink *outs[3] = {&a, &b, &c};
    for (int i = 0; i < 3; i++) {
        lmp_sampler_init(&sm, m->cfg.vocab, 1.0f, 0.9f, seeds[i], &err);
        CHECK(lmp_generate(s, "", 60, &sm, sink_piece, outs[i], &gs, &err) == LMP_OK);
        lmp_sampler_free(&sm);
    }
    CHECK(strcmp(a.buf, b.buf) == 0);
    CHECK(strcmp(a.buf, c.buf) != 0);
    lmp_session_free(s);
    lmp_model_free(m);
}

// Bad calls are refused with a message, not a crash.
static void test_eval_bad_input(void) {
    lmp_error err = {0};
    lmp_model *m = NULL;
    CHECKF(lmp_model_load(TEST_DEFAULT_MODEL, NULL, &m, &err) == LMP_OK, "%s", err.msg);
    if (!m) return;
    lmp_session *s = NULL;
    lmp_session_opts so = {16, 0, 1, "cpu"};
    CHECK(lmp_session_new(m, &so, &s, &err) == LMP_OK);
    int32_t toks[20] = {1, 2, 3};
    CHECK(lmp_session_eval(s, toks, 20, 0, 0, NULL, &err) == LMP_E_ARG && strstr(err.msg, "exceed the context"));
    toks[1] = 512;
    CHECK(lmp_session_eval(s, toks, 3, 0, 0, NULL, &err) == LMP_E_ARG && strstr(err.msg, "out of range"));
    toks[1] = -1;
    CHECK(lmp_session_eval(s, toks, 3, 0, 0, NULL, &err) == LMP_E_ARG);
    lmp_session_free(s);
    lmp_session_opts big = {100000, 0, 1, "cpu"};
    CHECK(lmp_session_new(m, &big, &s, &err) == LMP_E_ARG && strstr(err.msg, "larger than the model's context"));
    lmp_session_opts cuda = {16, 0, 1, "cuda"};
    CHECK(lmp_session_new(m, &cuda, &s, &err) == LMP_E_UNSUPPORTED);
    lmp_model_free(m);
}

// The bandwidth probe's read loops read every word (tails included): the same XOR as a plain loop, for
// the C loop and, where the CPU has it, the AVX2 one; and the probe itself returns a rate.
static void test_membw(void) {
    size_t cap = 4096 + 37;
    uint64_t *w = lmp_malloc(cap * sizeof *w);
    if (!w) return;
    for (size_t i = 0; i < cap; i++) w[i] = test_rand_u64();
    const size_t ns[] = {0, 1, 31, 32, 33, 255, 256, 1000, 4096, 4096 + 37};
    for (size_t k = 0; k < sizeof ns / sizeof *ns; k++) {
        uint64_t want = 0;
        for (size_t i = 0; i < ns[k]; i++) want ^= w[i];
        CHECKF(lmp_membw_xor_words(w, ns[k]) == want, "C loop, n = %zu", ns[k]);
#if defined(__x86_64__)
        if (lmp_kernels_by_isa("avx2")) CHECKF(lmp_membw_xor_words_avx2(w, ns[k]) == want, "AVX2 loop, n = %zu", ns[k]);
#endif
    }
    lmp_free(w);
    lmp_pool *pool = lmp_pool_new(2);
    CHECK(pool != NULL);
    if (!pool) return;
    double bw = lmp_measure_read_bandwidth(pool, (size_t)8 << 20, 2);
    CHECKF(bw > 1e8 && bw < 1e13, "%g bytes/s", bw);
    CHECK(lmp_measure_read_bandwidth(NULL, 1 << 20, 1) == 0.0);
    lmp_pool_free(pool);
}

int main(void) {
    RUN(test_membw);
    RUN(test_stories260k_logits);
    RUN(test_tiny_gqa_llama2c_logits);
    RUN(test_tiny_gqa_hf_logits);
    RUN(test_tiny_bf16_sharded_logits);
    RUN(test_stories260k_greedy);
    RUN(test_sampling_seeded);
    RUN(test_eval_bad_input);
    return test_report();
}
