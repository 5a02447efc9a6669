// kernels_kq_avx2.c - AVX2 + FMA + F16C matvec and matmul of q4_K, q5_K, q6_K and iq4_nl against q8_a
// activations (compiled with -mavx2 -mfma -mf16c; called only after kernels.c's CPU check). The tiles
// are kernels_kq_tiles.h, shared with the AVX-512 file; this file supplies the AVX2 integer dot
// (vpmaddubsw + vpmaddwd: the u8 operand is at most 63 for q4_K/q5_K/q6_K codes and 127 for iq4_nl's
// |values|, so the 16-bit pair sums stay below 2 * 127 * 127 < 2^15 and never saturate).
// It does not do threading (callers split rows) nor the other types (kernels_avx2.c).
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

// fp16 scale at p (unaligned) as 8 float lanes (table lookup, see kernels_internal.h).
AI __m256 f16_bcast(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _mm256_broadcast_ss(&lmp_kernels_fp16_lut[h]);
}

AI __m256i dot_u8s8(__m256i u, __m256i s) {  // 8 int32 lanes, each the sum of 4 products u8*s8
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

#include "runtime/kernels_kq_tiles.h"

void lmp_kernels_init_kq_avx2(lmp_kernels *k) { kq_tiles_register(k); }

#endif  // __x86_64__
