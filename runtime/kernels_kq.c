// kernels_kq.c - the scalar kernel-table entries of the super-block types (q4_K, q5_K, q6_K) and the
// non-linear iq4_nl: loops over their vec_dot_ref (format/qtypes_k.c), the definition the SIMD entries
// (kernels_kq_avx2.c, kernels_kq_avx512.c) are tested against. kernels.c calls the init function while it
// builds the scalar table. It does not hold the types' codecs (format/qtypes_k.c).
#include "format/qtypes.h"
#include "runtime/kernels_internal.h"

static void kq_matvec(lmp_dtype t, const void *w, size_t w_row_bytes, const void *x, float *y, int64_t n, int64_t r0,
                      int64_t r1) {
    lmp_vec_dot_fn dot = lmp_type_get(t)->vec_dot_ref;
    for (int64_t r = r0; r < r1; r++) dot(n, &y[r], (const char *)w + (size_t)r * w_row_bytes, x);
}

static void kq_matmul(lmp_dtype t, const void *w, size_t w_row_bytes, const void *x, size_t x_row_bytes, int64_t m,
                      float *y, int64_t ldy, int64_t n, int64_t r0, int64_t r1) {
    lmp_vec_dot_fn dot = lmp_type_get(t)->vec_dot_ref;
    for (int64_t i = 0; i < m; i++)
        for (int64_t r = r0; r < r1; r++)
            dot(n, &y[i * ldy + r], (const char *)w + (size_t)r * w_row_bytes, (const char *)x + (size_t)i * x_row_bytes);
}

#define KQ_PAIR(name, T)                                                                                   \
    static void matvec_##name(const void *w, size_t wrb, const void *x, float *y, int64_t n, int64_t r0,     \
                              int64_t r1) {                                                                \
        kq_matvec(T, w, wrb, x, y, n, r0, r1);                                                             \
    }                                                                                                      \
    static void matmul_##name(const void *w, size_t wrb, const void *x, size_t xrb, int64_t m, float *y,     \
                              int64_t ldy, int64_t n, int64_t r0, int64_t r1) {                            \
        kq_matmul(T, w, wrb, x, xrb, m, y, ldy, n, r0, r1);                                                \
    }
KQ_PAIR(q4_K, LMP_DTYPE_Q4_K)
KQ_PAIR(q5_K, LMP_DTYPE_Q5_K)
KQ_PAIR(q6_K, LMP_DTYPE_Q6_K)
KQ_PAIR(iq4_nl, LMP_DTYPE_IQ4_NL)

void lmp_kernels_init_kq_scalar(lmp_kernels *k) {
    k->matvec[LMP_DTYPE_Q4_K] = matvec_q4_K;
    k->matvec[LMP_DTYPE_Q5_K] = matvec_q5_K;
    k->matvec[LMP_DTYPE_Q6_K] = matvec_q6_K;
    k->matvec[LMP_DTYPE_IQ4_NL] = matvec_iq4_nl;
    k->matmul[LMP_DTYPE_Q4_K] = matmul_q4_K;
    k->matmul[LMP_DTYPE_Q5_K] = matmul_q5_K;
    k->matmul[LMP_DTYPE_Q6_K] = matmul_q6_K;
    k->matmul[LMP_DTYPE_IQ4_NL] = matmul_iq4_nl;
}
