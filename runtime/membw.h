// membw.h - measures the machine's memory read bandwidth, the denominator of every roofline that the
// benchmarks print (weight bytes per token / bandwidth = the fastest possible decode). `lmpress bench`
// and bench/bench_kernels both use this one implementation, so their rooflines agree.
#ifndef LMP_MEMBW_H
#define LMP_MEMBW_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/threadpool.h"

// The buffer size used for bytes = 0: 16 times a 32 MiB last-level cache, so that almost every read
// comes from DRAM.
#define LMP_MEMBW_DEFAULT_BYTES ((size_t)512 << 20)
// Sequential streams each thread reads side by side (see membw.c).
#define LMP_MEMBW_STREAMS 4

// Best of `reps` passes (reps <= 0: 5) of all pool threads reading disjoint parts of a `bytes` buffer
// (0: LMP_MEMBW_DEFAULT_BYTES; give several times the last-level cache, or the caches inflate the
// result). Each thread reads its part as LMP_MEMBW_STREAMS interleaved streams, with 32-byte loads when
// the CPU has AVX2. Returns bytes per second, or 0 if the buffer cannot be allocated.
double lmp_measure_read_bandwidth(lmp_pool *pool, size_t bytes, int reps);

// Internal to membw.c / membw_avx2.c: the XOR of the n 64-bit words at p (64-byte aligned), read as
// LMP_MEMBW_STREAMS interleaved streams.
uint64_t lmp_membw_xor_words(const uint64_t *p, size_t n);
#if defined(__x86_64__)
uint64_t lmp_membw_xor_words_avx2(const uint64_t *p, size_t n);  // only on a CPU with AVX2
#endif

#endif
