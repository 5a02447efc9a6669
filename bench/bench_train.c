// bench_train.c - training throughput of the engine (distill/train.h): tokens per second of whole steps
// (forward, cross-entropy loss, backward, gradient norm, AdamW) on a random model of a given shape, as
// scripts/bench-train.sh compares with PyTorch eager. Reports the median of the timed steps after warmup,
// and the memory the step allocated against the documented estimate.
// It is a program, not library code: it prints, and exits on bad options.
//
//   bench_train --shape stories260K|smollm2 [--batch B] [--seq T] [--threads N] [--steps N] [--warmup N]
//               [--recompute 1|-1|0]   (attention probabilities recomputed / kept / default rule)
//   bench_train --dim D --layers L --heads H --kv-heads K --ffn F --vocab V [--untied] ...
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "distill/train.h"
#include "format/synth.h"
#include "runtime/backend.h"
#include "runtime/threadpool.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    lmp_synth_params sp = {64, 5, 8, 4, 172, 512, 512, 1, 1, NULL};  // stories260K's shape
    int B = 8, T = 256, threads = 2, steps = 5, warmup = 1, recompute = 0;
    const char *name = "stories260K";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NUM(opt, dst) else if (!strcmp(a, opt) && v) { dst = atoi(v); i++; }
        if (!strcmp(a, "--shape") && v) {
            name = v;
            if (!strcmp(v, "stories260K")) sp = (lmp_synth_params){64, 5, 8, 4, 172, 512, 512, 1, 1, NULL};
            else if (!strcmp(v, "smollm2")) sp = (lmp_synth_params){576, 30, 9, 3, 1536, 49152, 2048, 1, 1, NULL};
            else { fprintf(stderr, "unknown shape %s\n", v); return 2; }
            i++;
        }
        NUM("--batch", B) NUM("--seq", T) NUM("--threads", threads) NUM("--steps", steps) NUM("--warmup", warmup)
        NUM("--dim", sp.dim) NUM("--layers", sp.n_layers) NUM("--heads", sp.n_heads) NUM("--kv-heads", sp.n_kv_heads)
        NUM("--ffn", sp.ffn) NUM("--vocab", sp.vocab) NUM("--recompute", recompute)
        else if (!strcmp(a, "--untied")) sp.tied = 0;
        else { fprintf(stderr, "usage: see the comment at the top of bench/bench_train.c\n"); return 2; }
#undef NUM
    }
    if (T > sp.ctx) sp.ctx = T;
    lmp_cpu_blas_single_threaded();
    lmp_error err;
    lmp_builder *b = NULL;
    lmp_file *f = NULL;
    lmp_model *m = NULL;
    if (lmp_synth_build(&sp, &b, &err) || lmp_builder_to_file(b, &f, &err) || lmp_model_from_file(f, &m, &err)) {
        fprintf(stderr, "model: %s\n", err.msg);
        return 1;
    }
    lmp_builder_free(b);
    lmp_pool *pool = lmp_pool_new(threads);
    lmp_trainer_opts o = {B, T, threads, pool, 0, recompute};
    lmp_trainer *t = NULL;
    if (lmp_trainer_new(m, &o, &t, &err)) {
        fprintf(stderr, "trainer: %s\n", err.msg);
        return 1;
    }
    int32_t *tok = malloc((size_t)B * (T + 1) * sizeof(int32_t));
    uint64_t s = 12345;
    for (int i = 0; i < B * (T + 1); i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        tok[i] = (int32_t)((s >> 33) % (uint64_t)sp.vocab);
    }
    const lmp_loss_params lp = {0.0f, 1.0f, LMP_KD_FKL};
    const lmp_adamw_params ap = {0.9f, 0.95f, 1e-8f, 0.1f, 1.0f};
    double *dt = malloc((size_t)(steps > 0 ? steps : 1) * sizeof(double));
    lmp_train_loss l = {0};
    for (int i = 0; i < warmup + steps; i++) {
        double t0 = lmp_time_now();
        lmp_trainer_zero_grad(t);
        if (lmp_trainer_grad(t, tok, NULL, &lp, 1.0f, &l, &err)) {
            fprintf(stderr, "step: %s\n", err.msg);
            return 1;
        }
        lmp_trainer_adamw(t, &ap, 1e-4f, lmp_trainer_grad_norm(t));
        if (i >= warmup) dt[i - warmup] = lmp_time_now() - t0;
    }
    qsort(dt, (size_t)steps, sizeof(double), cmp_double);
    double med = dt[steps / 2];
    lmp_train_memory est = lmp_train_memory_estimate(m, B, T, recompute, 0), got = lmp_trainer_memory(t);
    printf("lmpress %s: %lld params, batch %d x seq %d, %d threads: %.1f ms/step (median of %d, min %.1f), "
           "%.0f tok/s, loss %.4f; memory %.1f MB (estimate %.1f MB)\n",
           name, (long long)lmp_trainer_n_params(t), B, T, threads, med * 1e3, steps, dt[0] * 1e3, B * T / med, l.ce,
           got.total / 1e6, est.total / 1e6);
    free(dt);
    free(tok);
    lmp_trainer_free(t);
    lmp_pool_free(pool);
    lmp_model_free(m);
    return 0;
}
