// membw_avx2.c - the AVX2 read loop of the bandwidth probe (membw.c): the same reads as
// lmp_membw_xor_words with 32-byte loads. Compiled with the AVX2 flags (Makefile) on x86-64 only, and
// called only on a CPU that has them.
#if defined(__x86_64__)

#include <immintrin.h>
#include <string.h>

#include "runtime/membw.h"

uint64_t lmp_membw_xor_words_avx2(const uint64_t *p, size_t n) {
    enum { S = LMP_MEMBW_STREAMS, L = 8 };  // L words (one cache line: two loads) per stream and step
    const size_t q = n / (S * L) * L;       // words per stream; every stream starts 64-byte aligned
    __m256i a[S], b[S];
    for (int s = 0; s < S; s++) a[s] = b[s] = _mm256_setzero_si256();
    for (size_t i = 0; i < q; i += L)
        for (int s = 0; s < S; s++) {
            const __m256i *v = (const __m256i *)(p + (size_t)s * q + i);
            a[s] = _mm256_xor_si256(a[s], _mm256_load_si256(v));
            b[s] = _mm256_xor_si256(b[s], _mm256_load_si256(v + 1));
        }
    __m256i x = _mm256_setzero_si256();
    for (int s = 0; s < S; s++) x = _mm256_xor_si256(x, _mm256_xor_si256(a[s], b[s]));
    uint64_t lanes[4];
    memcpy(lanes, &x, sizeof lanes);
    uint64_t r = lanes[0] ^ lanes[1] ^ lanes[2] ^ lanes[3];
    for (size_t i = (size_t)S * q; i < n; i++) r ^= p[i];
    return r;
}

#endif  // __x86_64__
