// membw.c - read-bandwidth probe (see membw.h): each thread XOR-reduces its slice with four independent
// 64-bit accumulators, which the compiler turns into wide vector loads; the result is kept so the reads
// cannot be optimised away.
#include "membw.h"

#include <stdint.h>
#include <string.h>

#include "lmp_common.h"

typedef struct {
    const uint64_t *buf;
    size_t n;            // uint64 words
    uint64_t sink[256];  // per-thread results
} bw_job;

static void bw_worker(void *arg, int ith, int nth) {
    bw_job *j = arg;
    long long b, e;
    lmp_split_range((long long)j->n, ith, nth, 64, &b, &e);
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    for (long long i = b; i + 4 <= e; i += 4) {
        a0 ^= j->buf[i];
        a1 ^= j->buf[i + 1];
        a2 ^= j->buf[i + 2];
        a3 ^= j->buf[i + 3];
    }
    j->sink[ith & 255] = a0 ^ a1 ^ a2 ^ a3;
}

double lmp_measure_read_bandwidth(lmp_pool *pool, size_t bytes, int reps) {
    bw_job j;
    memset(&j, 0, sizeof j);
    j.n = bytes / sizeof(uint64_t);
    uint64_t *buf = lmp_malloc(j.n * sizeof(uint64_t));
    if (!buf) return 0.0;
    for (size_t i = 0; i < j.n; i++) buf[i] = i * 0x9E3779B97F4A7C15ull;  // touch every page
    j.buf = buf;
    double best = 0.0;
    for (int r = 0; r < (reps > 0 ? reps : 1); r++) {
        double t0 = lmp_time_now();
        lmp_pool_run(pool, bw_worker, &j);
        double dt = lmp_time_now() - t0;
        double bw = (double)(j.n * sizeof(uint64_t)) / dt;
        if (bw > best) best = bw;
    }
    lmp_free(buf);
    return best;
}
