// membw.h - measures the machine's memory read bandwidth, the denominator of every roofline that the
// benchmarks print (weight bytes per token / bandwidth = the fastest possible decode).
#ifndef LMP_MEMBW_H
#define LMP_MEMBW_H

#include <stddef.h>

#include "threadpool.h"

// Best of `reps` passes of all pool threads reading disjoint parts of a `bytes` buffer (well above the
// caches: 512 MiB is a good size). Returns bytes per second, or 0 if the buffer cannot be allocated.
double lmp_measure_read_bandwidth(lmp_pool *pool, size_t bytes, int reps);

#endif
