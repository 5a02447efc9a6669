// test_util.h - the tiny test harness shared by tests/test_*.c (header only).
//
//   static void test_roundtrip(void) { CHECK(x == 1); CHECKF(err < tol, "err %g tol %g", err, tol); }
//   int main(void) { RUN(test_roundtrip); return test_report(); }
//
// A test case passes when it made at least one check and none failed; a case that made no check (and did
// not SKIP) fails: a test that checks nothing cannot fail. test_report() prints the number of checks, then
// "N passed, N failed" (cases), and returns the exit status. SKIP("why") marks a case skipped with a
// visible message (not counted).
// Random inputs use a fresh seed per run (printed; LMP_TEST_SEED=n reproduces a run).
#ifndef LMP_TEST_UTIL_H
#define LMP_TEST_UTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int tu_passed, tu_failed, tu_skipped, tu_case_failed, tu_case_skipped;
static long long tu_checks, tu_case_checks;  // checks made in all, in the current case
static const char *tu_case;

#define CHECK(cond)                                                                     \
    do {                                                                                \
        tu_case_checks++;                                                               \
        if (!(cond)) {                                                                  \
            tu_case_failed = 1;                                                         \
            fprintf(stderr, "FAIL %s (%s:%d): %s\n", tu_case, __FILE__, __LINE__, #cond); \
        }                                                                               \
    } while (0)

#define CHECKF(cond, ...)                                                               \
    do {                                                                                \
        tu_case_checks++;                                                               \
        if (!(cond)) {                                                                  \
            tu_case_failed = 1;                                                         \
            fprintf(stderr, "FAIL %s (%s:%d): %s: ", tu_case, __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                               \
            fprintf(stderr, "\n");                                                      \
        }                                                                               \
    } while (0)

#define SKIP(...)                                   \
    do {                                            \
        fprintf(stderr, "SKIP %s: ", tu_case);      \
        fprintf(stderr, __VA_ARGS__);               \
        fprintf(stderr, "\n");                      \
        tu_case_skipped = 1;                        \
        return;                                     \
    } while (0)

#define RUN(fn)                                                                            \
    do {                                                                                   \
        tu_case = #fn;                                                                     \
        tu_case_failed = 0;                                                                \
        tu_case_skipped = 0;                                                               \
        tu_case_checks = 0;                                                                \
        fn();                                                                              \
        tu_checks += tu_case_checks;                                                       \
        if (!tu_case_skipped && !tu_case_failed && tu_case_checks == 0) {                  \
            fprintf(stderr, "FAIL %s: the case made no checks (check something or SKIP)\n", #fn); \
            tu_case_failed = 1;                                                            \
        }                                                                                  \
        if (tu_case_skipped && !tu_case_failed) tu_skipped++;                              \
        else if (tu_case_failed) tu_failed++;                                              \
        else tu_passed++;                                                                  \
        if (getenv("LMP_TEST_VERBOSE"))                                                    \
            fprintf(stderr, "%s %s (%lld checks)\n", tu_case_failed ? "fail" : "ok", #fn, tu_case_checks); \
    } while (0)

static inline int test_report(void) {
    printf("%lld checks\n", tu_checks);
    if (tu_skipped) printf("%d skipped (see SKIP lines)\n", tu_skipped);
    printf("%d passed, %d failed\n", tu_passed, tu_failed);
    return tu_failed ? 1 : 0;
}

// ---- random numbers (xorshift64*), seeded once per process ----
static uint64_t tu_rng_state;
static inline void test_seed(void) {
    const char *s = getenv("LMP_TEST_SEED");
    tu_rng_state = s ? strtoull(s, NULL, 10) : ((uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20));
    if (!tu_rng_state) tu_rng_state = 1;
    fprintf(stderr, "seed %llu (LMP_TEST_SEED reproduces)\n", (unsigned long long)tu_rng_state);
}
static inline uint64_t test_rand_u64(void) {
    if (!tu_rng_state) test_seed();
    tu_rng_state ^= tu_rng_state >> 12;
    tu_rng_state ^= tu_rng_state << 25;
    tu_rng_state ^= tu_rng_state >> 27;
    return tu_rng_state * 0x2545F4914F6CDD1Dull;
}
static inline float test_rand_uniform(void) {  // [0, 1)
    return (float)(test_rand_u64() >> 40) / (float)(1 << 24);
}
static inline float test_rand_normal(void) {
    float u1 = test_rand_uniform() + 1e-7f, u2 = test_rand_uniform();
    return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853f * u2);
}

// ---- paths ----
// Directory of the shared material (models, data): $SHARED, else ../shared.
static inline const char *test_shared_dir(void) {
    const char *s = getenv("SHARED");
    return s && *s ? s : "../shared";
}
static inline int test_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}
// The model the project ships (a student distilled from stories260K, scripts/make-default-model.sh) and its texts,
// relative to the repository root (where the tests run). Committed: a test that needs a real small model, its
// tokenizer and text uses them and treats their absence as a failure, not a skip.
#define TEST_DEFAULT_MODEL "models/default.lmp"
#define TEST_DEFAULT_EVAL "models/default-eval.txt"    // held-out stories
#define TEST_DEFAULT_CALIB "models/default-calib.txt"  // other stories: calibration and training
// A fresh temporary directory for this process (created once, under $TMPDIR or /tmp).
static inline const char *test_tmpdir(void) {
    static char dir[256];
    if (!dir[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/lmpress-test-XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(dir)) {
            perror("mkdtemp");
            exit(2);
        }
    }
    return dir;
}
// Reads a whole file into a malloc'd buffer; NULL on failure.
static inline void *test_read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf && size) *size = (size_t)n;
    return buf;
}
static inline int test_write_file(const char *path, const void *buf, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(buf, 1, n, f);
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

#endif
