// membw.c - read-bandwidth probe (see membw.h).
//
// Why several streams per thread: a core reading one sequential stream is limited by the cache-line
// misses it and its prefetchers keep in flight, and measures well below what the matvec kernels reach
// (they read 4 weight rows at once). So each thread cuts its part of the buffer into LMP_MEMBW_STREAMS
// contiguous pieces and reads them side by side, XOR-ing every word into independent accumulators (one
// per stream and lane: no dependency chain limits the loads). The loop uses 16-byte GNU C vectors, or
// runtime/membw_avx2.c (32-byte loads) when the CPU has AVX2, chosen at run time as the kernels are.
// The results are kept so that the reads cannot be optimised away.
#include "runtime/membw.h"

#include <string.h>

#include "runtime/kernels.h"
#include "format/lmp_common.h"

#define PART_ALIGN 512  // words (4 KiB) per thread part: parts start on a page

// 16-byte vectors in GNU C (SSE2 on x86-64, NEON on arm64, plain words elsewhere), written out for the 4
// streams: at -O2 gcc neither unrolls nor keeps an accumulator array in registers.
typedef uint64_t u64x2 __attribute__((vector_size(16), may_alias));
_Static_assert(LMP_MEMBW_STREAMS == 4, "lmp_membw_xor_words is written out for 4 streams");

uint64_t lmp_membw_xor_words(const uint64_t *p, size_t n) {
    const size_t q = n / 32 * 8;  // words per stream, a multiple of a 64-byte line
    const u64x2 *p0 = (const u64x2 *)p, *p1 = (const u64x2 *)(p + q), *p2 = (const u64x2 *)(p + 2 * q),
                *p3 = (const u64x2 *)(p + 3 * q);
    u64x2 a0 = {0, 0}, a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    for (size_t i = 0; i < q / 2; i += 4) {  // one line of each stream per step
        a0 ^= p0[i] ^ p0[i + 1];
        b0 ^= p0[i + 2] ^ p0[i + 3];
        a1 ^= p1[i] ^ p1[i + 1];
        b1 ^= p1[i + 2] ^ p1[i + 3];
        a2 ^= p2[i] ^ p2[i + 1];
        b2 ^= p2[i + 2] ^ p2[i + 3];
        a3 ^= p3[i] ^ p3[i + 1];
        b3 ^= p3[i + 2] ^ p3[i + 3];
    }
    u64x2 x = a0 ^ a1 ^ a2 ^ a3 ^ b0 ^ b1 ^ b2 ^ b3;
    uint64_t r = x[0] ^ x[1];
    for (size_t i = 4 * q; i < n; i++) r ^= p[i];  // the tail, so that every word counts
    return r;
}

typedef struct {
    uint64_t *buf;
    size_t n;                          // words
    uint64_t (*xor_words)(const uint64_t *, size_t);
    uint64_t sink[64];                 // per-thread results (threads beyond 64 share slots)
} bw_job;

// Each thread writes its own part first, so that on a NUMA machine its pages are local to it, as they
// are when it reads them.
static void bw_fill(void *arg, int ith, int nth) {
    bw_job *j = arg;
    long long b, e;
    lmp_split_range((long long)j->n, ith, nth, PART_ALIGN, &b, &e);
    for (long long i = b; i < e; i++) j->buf[i] = (uint64_t)i * 0x9E3779B97F4A7C15ull;
}

static void bw_read(void *arg, int ith, int nth) {
    bw_job *j = arg;
    long long b, e;
    lmp_split_range((long long)j->n, ith, nth, PART_ALIGN, &b, &e);
    j->sink[ith & 63] ^= j->xor_words(j->buf + b, (size_t)(e - b));
}

double lmp_measure_read_bandwidth(lmp_pool *pool, size_t bytes, int reps) {
    bw_job j;
    memset(&j, 0, sizeof j);
    j.n = (bytes ? bytes : LMP_MEMBW_DEFAULT_BYTES) / sizeof(uint64_t);
    if (!pool || j.n == 0) return 0.0;
    j.buf = lmp_malloc(j.n * sizeof(uint64_t));
    if (!j.buf) return 0.0;
    j.xor_words = lmp_membw_xor_words;
#if defined(__x86_64__)
    // The "avx2" kernel table exists only on a CPU that runs code built with the AVX2 flags.
    if (lmp_kernels_by_isa("avx2")) j.xor_words = lmp_membw_xor_words_avx2;
#endif
    lmp_pool_run(pool, bw_fill, &j);
    double best = 0.0;
    for (int r = 0; r < (reps > 0 ? reps : 5); r++) {
        double t0 = lmp_time_now();
        lmp_pool_run(pool, bw_read, &j);
        double dt = lmp_time_now() - t0;
        double bw = (double)(j.n * sizeof(uint64_t)) / dt;
        if (bw > best) best = bw;
    }
    volatile uint64_t sink = 0;
    for (int i = 0; i < 64; i++) sink ^= j.sink[i];
    (void)sink;
    lmp_free(j.buf);
    return best;
}
