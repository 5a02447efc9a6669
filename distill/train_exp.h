// train_exp.h - the exponentials of the training loss (softmax over the vocabulary, three per logit with a
// teacher), the engine's one elementwise hot spot: out[i] = exp(x[i] * mul - sub), returning the sum. The
// scalar reference uses libm's expf (distill/train_cpu.c); the AVX2 variant (train_exp_avx2.c, called only on
// CPUs with AVX2 and FMA, and not when LMP_ISA caps the kernels at scalar) evaluates a degree-6 polynomial on
// the reduced argument (Cephes' expf), within 2 ulp of expf for arguments in [-87, 88].
#ifndef LMP_TRAIN_EXP_H
#define LMP_TRAIN_EXP_H

typedef float (*lmp_expsum_fn)(const float *x, float *out, int n, float mul, float sub);

float lmp_train_expsum_ref(const float *x, float *out, int n, float mul, float sub);
#if defined(__x86_64__)
float lmp_train_expsum_avx2(const float *x, float *out, int n, float mul, float sub);
#endif
// The fastest variant this CPU runs (respects LMP_ISA, as runtime/kernels.h).
lmp_expsum_fn lmp_train_expsum_best(void);

#endif
