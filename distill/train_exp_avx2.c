// train_exp_avx2.c - AVX2 + FMA variant of the loss exponentials (see train_exp.h): 8 lanes of Cephes' expf
// (range reduction by ln 2 in two parts, degree-6 polynomial, exponent by integer add), the tail by libm. The
// argument x * mul - sub is rounded as the scalar reference rounds it (multiply, then subtract).
#include <immintrin.h>
#include <math.h>

#include "distill/train_exp.h"

static inline __m256 exp8(__m256 x) {
    const __m256 hi = _mm256_set1_ps(88.3762626647949f), lo = _mm256_set1_ps(-87.3365447504019f);
    x = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
    // n = round(x / ln 2); r = x - n ln 2 (ln 2 = C1 + C2, C1 exact in few bits)
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500E-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507E-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073E-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894E-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459E-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201E-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    // * 2^n: n in [-126, 127] after the clamp
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

float lmp_train_expsum_avx2(const float *x, float *out, int n, float mul, float sub) {
    const __m256 vm = _mm256_set1_ps(mul), vs = _mm256_set1_ps(sub);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 a = exp8(_mm256_sub_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vm), vs));
        __m256 b = exp8(_mm256_sub_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8), vm), vs));
        _mm256_storeu_ps(out + i, a);
        _mm256_storeu_ps(out + i + 8, b);
        acc0 = _mm256_add_ps(acc0, a);
        acc1 = _mm256_add_ps(acc1, b);
    }
    float lanes[8];
    _mm256_storeu_ps(lanes, _mm256_add_ps(acc0, acc1));
    double s = 0;
    for (int k = 0; k < 8; k++) s += lanes[k];
    for (; i < n; i++) s += (out[i] = expf(x[i] * mul - sub));
    return (float)s;
}
