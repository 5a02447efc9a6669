// threadpool.c - fixed worker pool with spin-then-sleep waiting (see threadpool.h).
#include "runtime/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <unistd.h>

#include "format/lmp_common.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LMP_CPU_RELAX() _mm_pause()
#else
#define LMP_CPU_RELAX() ((void)0)
#endif

// How long a worker spins for the next job before sleeping (iterations of a pause loop, ~50 us).
#define LMP_POOL_SPIN 20000

struct lmp_pool {
    int n;                       // threads including the caller
    pthread_t *threads;          // n - 1 workers
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_uint generation;      // bumped for each job
    atomic_int pending;          // workers still running the current job
    atomic_int stop;
    int sleepers;                // workers waiting on cv (under mu)
    lmp_pool_fn fn;
    void *arg;
};

typedef struct {
    lmp_pool *pool;
    int ith;
} worker_arg;

static void *worker_main(void *p) {
    worker_arg wa = *(worker_arg *)p;
    lmp_free(p);
    lmp_pool *pool = wa.pool;
    unsigned seen = 0;
    for (;;) {
        unsigned gen;
        int spins = 0;
        while ((gen = atomic_load_explicit(&pool->generation, memory_order_acquire)) == seen &&
               !atomic_load(&pool->stop)) {
            if (++spins < LMP_POOL_SPIN) {
                LMP_CPU_RELAX();
                continue;
            }
            pthread_mutex_lock(&pool->mu);
            pool->sleepers++;
            while (atomic_load(&pool->generation) == seen && !atomic_load(&pool->stop))
                pthread_cond_wait(&pool->cv, &pool->mu);
            pool->sleepers--;
            pthread_mutex_unlock(&pool->mu);
        }
        if (atomic_load(&pool->stop)) return NULL;
        seen = gen;
        pool->fn(pool->arg, wa.ith, pool->n);
        atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_release);
    }
}

int lmp_cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

lmp_pool *lmp_pool_new(int n_threads) {
    if (n_threads <= 0) n_threads = lmp_cpu_count();
    lmp_pool *p = lmp_calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (n_threads > 1) {
        p->threads = lmp_calloc((size_t)n_threads - 1, sizeof(pthread_t));
        if (!p->threads) goto fail;
    }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = lmp_malloc(sizeof *wa);
        if (!wa) {
            p->n = i;
            goto fail;
        }
        wa->pool = p;
        wa->ith = i;
        if (pthread_create(&p->threads[i - 1], NULL, worker_main, wa) != 0) {
            lmp_free(wa);
            p->n = i;
            goto fail;
        }
    }
    return p;
fail:
    lmp_pool_free(p);
    return NULL;
}

void lmp_pool_free(lmp_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i - 1], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    lmp_free(p->threads);
    lmp_free(p);
}

int lmp_pool_size(const lmp_pool *p) { return p ? p->n : 1; }

void lmp_pool_run(lmp_pool *p, lmp_pool_fn fn, void *arg) {
    if (!p || p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store_explicit(&p->pending, p->n - 1, memory_order_relaxed);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    if (p->sleepers) pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    fn(arg, 0, p->n);
    // Spin while the workers finish; if they are not running (more runnable threads than cores), give
    // the core away instead of burning the worker's time slice.
    for (long spins = 0; atomic_load_explicit(&p->pending, memory_order_acquire) != 0; spins++) {
        if (spins < LMP_POOL_SPIN) LMP_CPU_RELAX();
        else sched_yield();
    }
}
