// threadpool.h - a fixed pool of worker threads for data-parallel kernels (matmuls split by rows).
//
// lmp_pool_run(pool, fn, arg) calls fn(arg, ith, nth) once on each of the nth threads (the caller is
// thread 0) and returns when all have finished. Workers spin briefly between jobs (decode issues about
// a hundred jobs per token, so wake-up latency matters) and then sleep on a condition variable, so an
// idle pool costs nothing and does not fight OpenBLAS for the cores.
#ifndef LMP_THREADPOOL_H
#define LMP_THREADPOOL_H

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lmp_pool lmp_pool;
typedef void (*lmp_pool_fn)(void *arg, int ith, int nth);

// n_threads <= 0 means the number of online CPUs. Returns NULL on failure (out of memory/threads).
lmp_pool *lmp_pool_new(int n_threads);
void lmp_pool_free(lmp_pool *p);  // NULL is a no-op
int lmp_pool_size(const lmp_pool *p);
void lmp_pool_run(lmp_pool *p, lmp_pool_fn fn, void *arg);
// Number of online CPUs.
int lmp_cpu_count(void);

// Split [0, n) into nth nearly equal parts aligned to `align` items; part ith is [*begin, *end).
static inline void lmp_split_range(long long n, int ith, int nth, long long align, long long *begin,
                                   long long *end) {
    long long units = (n + align - 1) / align;
    long long per = units / nth, rem = units % nth;
    long long b = ith * per + (ith < rem ? ith : rem);
    long long e = b + per + (ith < rem ? 1 : 0);
    b *= align;
    e *= align;
    *begin = b < n ? b : n;
    *end = e < n ? e : n;
}

#ifdef __cplusplus
}
#endif
#endif
