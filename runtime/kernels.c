// kernels.c - the scalar kernel table (loops over the reference codecs of qtypes.c) and the run-time
// choice of the fastest table this CPU runs (quant/kernels.h).
//
// The scalar table is the definition the SIMD tables are tested against; it is deliberately plain
// (row by row, one vec_dot_ref per output). The SIMD tables start as a copy of it and override the
// entries their file implements (kernels_avx2.c, kernels_avx512.c), so every entry is always set.
// This file is compiled for baseline x86-64 (or any other architecture): no SIMD code here; the
// per-ISA files are called only after __builtin_cpu_supports says the CPU has their instructions.
#include "runtime/kernels.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/kernels_internal.h"
#include "format/qtypes.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

float lmp_kernels_fp16_lut[65536];

// ---- scalar table ----

static void scalar_matvec(lmp_dtype t, const void *w, size_t w_row_bytes, const void *x, float *y, int64_t n,
                          int64_t r0, int64_t r1) {
    lmp_vec_dot_fn dot = lmp_type_get(t)->vec_dot_ref;
    for (int64_t r = r0; r < r1; r++) dot(n, &y[r], (const char *)w + (size_t)r * w_row_bytes, x);
}

static void scalar_matmul(lmp_dtype t, const void *w, size_t w_row_bytes, const void *x, size_t x_row_bytes,
                          int64_t m, float *y, int64_t ldy, int64_t n, int64_t r0, int64_t r1) {
    lmp_vec_dot_fn dot = lmp_type_get(t)->vec_dot_ref;
    for (int64_t i = 0; i < m; i++)
        for (int64_t r = r0; r < r1; r++)
            dot(n, &y[i * ldy + r], (const char *)w + (size_t)r * w_row_bytes, (const char *)x + (size_t)i * x_row_bytes);
}

#define SCALAR_PAIR(name, T)                                                                              \
    static void matvec_##name(const void *w, size_t wrb, const void *x, float *y, int64_t n, int64_t r0,    \
                              int64_t r1) {                                                               \
        scalar_matvec(T, w, wrb, x, y, n, r0, r1);                                                        \
    }                                                                                                     \
    static void matmul_##name(const void *w, size_t wrb, const void *x, size_t xrb, int64_t m, float *y,    \
                              int64_t ldy, int64_t n, int64_t r0, int64_t r1) {                           \
        scalar_matmul(T, w, wrb, x, xrb, m, y, ldy, n, r0, r1);                                           \
    }
SCALAR_PAIR(f32, LMP_DTYPE_F32)
SCALAR_PAIR(f16, LMP_DTYPE_F16)
SCALAR_PAIR(bf16, LMP_DTYPE_BF16)
SCALAR_PAIR(q8_0, LMP_DTYPE_Q8_0)
SCALAR_PAIR(q4_0, LMP_DTYPE_Q4_0)
SCALAR_PAIR(q4_1, LMP_DTYPE_Q4_1)
SCALAR_PAIR(q4_0_g64, LMP_DTYPE_Q4_0_G64)
SCALAR_PAIR(q4_0_g128, LMP_DTYPE_Q4_0_G128)
SCALAR_PAIR(q4_1_g64, LMP_DTYPE_Q4_1_G64)
SCALAR_PAIR(q4_1_g128, LMP_DTYPE_Q4_1_G128)

static void scalar_quantize_q8a(const float *x, void *xq, int64_t n) {
    lmp_type_get(LMP_DTYPE_Q8_A)->from_float_ref(x, xq, n);
}

static void scalar_quantize_q16a(const float *x, void *xq, int64_t n) {
    lmp_type_get(LMP_DTYPE_Q16_A)->from_float_ref(x, xq, n);
}

static const lmp_kernels g_scalar = {
    .isa = "scalar",
    .matvec = {matvec_f32, matvec_f16, matvec_bf16, matvec_q8_0, matvec_q4_0, matvec_q4_1, matvec_q4_0_g64,
               matvec_q4_0_g128, matvec_q4_1_g64, matvec_q4_1_g128},
    .matmul = {matmul_f32, matmul_f16, matmul_bf16, matmul_q8_0, matmul_q4_0, matmul_q4_1, matmul_q4_0_g64,
               matmul_q4_0_g128, matmul_q4_1_g64, matmul_q4_1_g128},
    .quantize_q8a = scalar_quantize_q8a,
    .quantize_q16a = scalar_quantize_q16a,
};

// ---- run-time dispatch ----

enum { ISA_SCALAR, ISA_AVX2, ISA_AVX512VNNI, ISA_COUNT };

#if defined(__x86_64__)
static const char *const g_isa_names[] = {"scalar", "avx2", "avx512vnni", NULL};
#else
static const char *const g_isa_names[] = {"scalar", NULL};
#endif

#if defined(__x86_64__)
// F16C by cpuid (leaf 1, ECX bit 29): clang's __builtin_cpu_supports does not know "f16c".
static int cpu_has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && ((c >> 29) & 1u);
}
#endif

static lmp_kernels g_tables[ISA_COUNT];
static int g_runs[ISA_COUNT];  // 1 if this CPU runs the table
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

// Why once: the tables and the fp16 lookup table are filled on first use, from whichever thread asks
// first; pthread_once makes that safe without a constructor.
static void kernels_init(void) {
    for (uint32_t h = 0; h < 65536; h++) lmp_kernels_fp16_lut[h] = lmp_fp16_to_f32((lmp_fp16)h);
    g_tables[ISA_SCALAR] = g_scalar;
    lmp_kernels_init_kq_scalar(&g_tables[ISA_SCALAR]);
    g_runs[ISA_SCALAR] = 1;
#if defined(__x86_64__)
    // The per-ISA init functions are compiled with their instruction set (the compiler may use it even
    // to fill the table), so they are called only on a CPU that runs it.
    __builtin_cpu_init();
    g_runs[ISA_AVX2] = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
    g_runs[ISA_AVX512VNNI] = g_runs[ISA_AVX2] && __builtin_cpu_supports("avx512f") &&
                             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vnni");
    g_tables[ISA_AVX2] = g_tables[ISA_SCALAR];
    g_tables[ISA_AVX2].isa = "avx2";
    if (g_runs[ISA_AVX2]) {
        lmp_kernels_init_avx2(&g_tables[ISA_AVX2]);
        lmp_kernels_init_int_avx2(&g_tables[ISA_AVX2]);
        lmp_kernels_init_kq_avx2(&g_tables[ISA_AVX2]);
    }
    g_tables[ISA_AVX512VNNI] = g_tables[ISA_AVX2];
    g_tables[ISA_AVX512VNNI].isa = "avx512vnni";
    if (g_runs[ISA_AVX512VNNI]) {
        lmp_kernels_init_avx512(&g_tables[ISA_AVX512VNNI]);
        lmp_kernels_init_int_avx512(&g_tables[ISA_AVX512VNNI]);
        lmp_kernels_init_mv_avx512(&g_tables[ISA_AVX512VNNI]);
        lmp_kernels_init_kq_avx512(&g_tables[ISA_AVX512VNNI]);
    }
#endif
}

const char *const *lmp_kernels_isa_list(void) { return g_isa_names; }

lmp_quantize_act_fn lmp_kernels_act_quantizer(const lmp_kernels *k, lmp_dtype t) {
    if (t == LMP_DTYPE_Q8_A) return k->quantize_q8a;
    if (t == LMP_DTYPE_Q16_A) return k->quantize_q16a;
    return NULL;
}

const lmp_kernels *lmp_kernels_by_isa(const char *isa) {
    if (!isa) return NULL;
    pthread_once(&g_once, kernels_init);
    for (int i = 0; g_isa_names[i]; i++)
        if (!strcmp(isa, g_isa_names[i])) return g_runs[i] ? &g_tables[i] : NULL;
    return NULL;
}

const lmp_kernels *lmp_kernels_best(void) {
    pthread_once(&g_once, kernels_init);
    int cap = ISA_COUNT - 1;
    const char *env = getenv("LMP_ISA");
    if (env && *env)
        for (int i = 0; g_isa_names[i]; i++)
            if (!strcmp(env, g_isa_names[i])) cap = i;
    for (int i = cap; i > 0; i--)
        if (g_runs[i] && g_isa_names[i]) return &g_tables[i];
    return &g_tables[ISA_SCALAR];
}
