// test_harness.c - the harness of tests/test_util.h itself: a case that makes no check fails (also one
// whose only checks sit in a loop that never runs), a case with a failed check fails, a case whose checks
// hold passes, a SKIPped case is counted as skipped, and every CHECK/CHECKF is counted.
// Planted cases run through RUN with the harness's counters saved and restored, and their stderr
// (the FAIL / SKIP lines they are meant to print) sent to /dev/null.
#include <fcntl.h>

#include "tests/test_util.h"

static void planted_none(void) {}
static void planted_loop_none(void) {
    for (int i = 0; i < (int)(test_rand_u64() & 0); i++) CHECK(i >= 0);
}
static void planted_pass(void) {
    CHECK(1 + 1 == 2);
    CHECKF(2 * 2 == 4, "arithmetic");
}
static void planted_fail(void) {
    CHECK(1 + 1 == 2);
    CHECK(1 + 1 == 3);
}
static void planted_skip(void) { SKIP("planted skip"); }
static void planted_fail_then_skip(void) {
    CHECK(0 == 1);
    SKIP("planted skip after a failure");
}

typedef struct outcome {
    char kind;          // 'p' passed, 'f' failed, 's' skipped
    long long checks;   // checks the case made
} outcome;

// Runs fn as a case of its own and says how the harness counted it; leaves the harness as it was.
static outcome run_planted(void (*fn)(void)) {
    int passed = tu_passed, failed = tu_failed, skipped = tu_skipped, cf = tu_case_failed, cs = tu_case_skipped;
    long long checks = tu_checks, cc = tu_case_checks;
    const char *name = tu_case;
    fflush(stderr);
    int saved = dup(2), null = open("/dev/null", O_WRONLY);
    if (null >= 0) dup2(null, 2);
    RUN(fn);
    fflush(stderr);
    if (saved >= 0) dup2(saved, 2);
    if (saved >= 0) close(saved);
    if (null >= 0) close(null);
    outcome o = {tu_passed > passed ? 'p' : tu_failed > failed ? 'f' : tu_skipped > skipped ? 's' : '?',
                 tu_checks - checks};
    tu_passed = passed, tu_failed = failed, tu_skipped = skipped, tu_case_failed = cf, tu_case_skipped = cs;
    tu_checks = checks, tu_case_checks = cc, tu_case = name;
    return o;
}

static void test_zero_checks_fail(void) {
    outcome o = run_planted(planted_none);
    CHECKF(o.kind == 'f' && o.checks == 0, "a case with no check: counted '%c' with %lld checks", o.kind, o.checks);
    o = run_planted(planted_loop_none);
    CHECKF(o.kind == 'f' && o.checks == 0, "checks in a loop that never runs: counted '%c'", o.kind);
}

static void test_outcomes(void) {
    outcome o = run_planted(planted_pass);
    CHECKF(o.kind == 'p' && o.checks == 2, "passing case: '%c', %lld checks", o.kind, o.checks);
    o = run_planted(planted_fail);
    CHECKF(o.kind == 'f' && o.checks == 2, "failing case: '%c', %lld checks", o.kind, o.checks);
    o = run_planted(planted_skip);
    CHECKF(o.kind == 's' && o.checks == 0, "skipped case: '%c'", o.kind);
    o = run_planted(planted_fail_then_skip);
    CHECKF(o.kind == 'f', "a failure before SKIP must still fail: '%c'", o.kind);
}

int main(void) {
    test_seed();
    RUN(test_zero_checks_fail);
    RUN(test_outcomes);
    return test_report();
}
