// kernels_kq_avx512.c - AVX-512 VNNI matvec and matmul of q4_K, q5_K, q6_K and iq4_nl against q8_a
// activations (compiled with the AVX-512 flags; selected only when kernels.c finds avx512f/bw/vl/dq and
// vnni). The tiles and their accumulation order are kernels_kq_tiles.h, shared with the AVX2 file; this
// file's integer dot is vpdpbusd (u8 x s8 -> int32, no 16-bit intermediate). The tiles stay 256 bits
// wide: one activation block is 32 elements and carries its own scale.
#if defined(__x86_64__)

#include <immintrin.h>
#include <string.h>

#include "format/qtypes.h"
#include "runtime/kernels_internal.h"

#define AI static inline __attribute__((always_inline))

AI float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AI __m256 f16_bcast(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _mm256_broadcast_ss(&lmp_kernels_fp16_lut[h]);
}

AI __m256i dot_u8s8(__m256i u, __m256i s) {  // 8 int32 lanes, each the sum of 4 products u8*s8 (VNNI)
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
}

#include "runtime/kernels_kq_tiles.h"

void lmp_kernels_init_kq_avx512(lmp_kernels *k) { kq_tiles_register(k); }

#endif  // __x86_64__
