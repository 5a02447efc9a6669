// cpu_report.c - the CPU paths in words (cpu_report.h).
//
// A kernel entry is named by the least capable table that has the same function: the SIMD tables start
// as copies of the scalar one (runtime/kernels.c) and AVX-512 starts as a copy of AVX2, so an entry
// that a table did not override shows as the table it came from.
#include "runtime/cpu_report.h"

#include <stdio.h>
#include <string.h>

#include "format/qtypes.h"
#include "runtime/kernels.h"
#include "runtime/sgemm.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

void lmp_cpu_features(char *buf, size_t n) {
    buf[0] = 0;
#if defined(__x86_64__)
    __builtin_cpu_init();
    unsigned a, b, c, d;
    int f16c = __get_cpuid(1, &a, &b, &c, &d) && ((c >> 29) & 1u);
    struct {
        const char *name;
        int has;
    } f[] = {{"avx2", __builtin_cpu_supports("avx2")},
             {"fma", __builtin_cpu_supports("fma")},
             {"f16c", f16c},
             {"avx512f", __builtin_cpu_supports("avx512f")},
             {"avx512bw", __builtin_cpu_supports("avx512bw")},
             {"avx512vl", __builtin_cpu_supports("avx512vl")},
             {"avx512dq", __builtin_cpu_supports("avx512dq")},
             {"avx512vnni", __builtin_cpu_supports("avx512vnni")}};
    size_t len = 0;
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (f[i].has && len + 1 < n) len += (size_t)snprintf(buf + len, n - len, "%s%s", len ? " " : "", f[i].name);
#endif
    if (!buf[0]) snprintf(buf, n, "none");
}

// The table name an entry comes from: the first of scalar, avx2, ... (in list order) with the same function.
static const char *entry_isa(lmp_dtype t, int batched) {
    const lmp_kernels *best = lmp_kernels_best();
    const void *fn = batched ? (const void *)best->matmul[t] : (const void *)best->matvec[t];
    const char *const *list = lmp_kernels_isa_list();
    for (int i = 0; list[i]; i++) {
        const lmp_kernels *k = lmp_kernels_by_isa(list[i]);
        if (k && (batched ? (const void *)k->matmul[t] : (const void *)k->matvec[t]) == fn) return list[i];
    }
    return best->isa;
}

void lmp_cpu_type_paths(lmp_dtype t, char *buf, size_t n) {
    if (t == LMP_DTYPE_F32) {
        const lmp_sgemm_info *in = lmp_sgemm_choice();
        if (in->use_blas) snprintf(buf, n, "decode %s, batched OpenBLAS sgemm (%s)", entry_isa(t, 0), in->blas_core);
        else snprintf(buf, n, "decode %s, batched sgemm tiles %s", entry_isa(t, 0), in->tiles_isa);
    } else {
        snprintf(buf, n, "decode %s, batched %s", entry_isa(t, 0), entry_isa(t, 1));
    }
}

void lmp_cpu_sgemm_summary(char *buf, size_t n) {
    const lmp_sgemm_info *in = lmp_sgemm_choice();
    if (in->tiles_gflops > 0)
        snprintf(buf, n, "%s (%s: tiles %s %.1f, OpenBLAS %.1f GFLOP/s on one thread); OpenBLAS core %s, %s", in->path,
                 in->reason, in->tiles_isa, in->tiles_gflops, in->blas_gflops, in->blas_core,
                 in->blas_correct ? "results checked correct" : "results WRONG on this machine, never used");
    else
        snprintf(buf, n, "%s (%s); tiles %s; OpenBLAS core %s, %s", in->path, in->reason, in->tiles_isa, in->blas_core,
                 in->blas_correct ? "results checked correct" : "results WRONG on this machine, never used");
}
