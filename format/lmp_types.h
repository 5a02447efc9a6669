// lmp_types.h - element types of lmpress tensors: the dtype enum and one block struct per quantized type.
//
// This header must compile as C11, C++ and CUDA (nvcc): no C-only constructs, sizes checked with
// static_assert. The byte layouts restate docs/format.md ("Tensor types"); q8_0, q4_0 and q4_1 are
// bit-identical to ggml's Q8_0, Q4_0 and Q4_1 so GGUF files of those types import without loss.
//
// Enum values are stored in files: append only, never renumber; retired values stay as comments.
// It does not hold the codecs (quant/qtypes.h) or the run-time kernels (quant/kernels.h).
#ifndef LMP_TYPES_H
#define LMP_TYPES_H

#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
#define LMP_STATIC_ASSERT(c, m) static_assert(c, m)
#else
#include <assert.h>
#define LMP_STATIC_ASSERT(c, m) _Static_assert(c, m)
#endif

#if defined(__CUDACC__)
#define LMP_HD __host__ __device__
#else
#define LMP_HD
#endif

typedef enum lmp_dtype {
    LMP_DTYPE_F32 = 0,
    LMP_DTYPE_F16 = 1,
    LMP_DTYPE_BF16 = 2,
    LMP_DTYPE_Q8_0 = 3,       // int8 x 32, fp16 scale
    LMP_DTYPE_Q4_0 = 4,       // 4-bit symmetric, group 32, fp16 scale
    LMP_DTYPE_Q4_1 = 5,       // 4-bit asymmetric, group 32, fp16 scale and minimum
    LMP_DTYPE_Q4_0_G64 = 6,   // as Q4_0 with group 64
    LMP_DTYPE_Q4_0_G128 = 7,  // as Q4_0 with group 128
    LMP_DTYPE_Q4_1_G64 = 8,   // as Q4_1 with group 64
    LMP_DTYPE_Q4_1_G128 = 9,  // as Q4_1 with group 128
    LMP_DTYPE_COUNT = 10,     // first value not (yet) used in files
    // Run-time only, never stored in a file: activations quantized for the integer dot products.
    LMP_DTYPE_Q8_A = 100,
    LMP_DTYPE_Q16_A = 101,
} lmp_dtype;

typedef uint16_t lmp_fp16;  // IEEE binary16 bits
typedef uint16_t lmp_bf16;  // bfloat16 bits

// q8_0: 32 int8 values, x[i] = d * qs[i].
#define LMP_QK8_0 32
typedef struct lmp_block_q8_0 {
    lmp_fp16 d;
    int8_t qs[LMP_QK8_0];
} lmp_block_q8_0;
LMP_STATIC_ASSERT(sizeof(lmp_block_q8_0) == 34, "q8_0 block must be 34 bytes");

// q4_0 (group G): x[j] = d * (q[j] - 8), q[j] in 0..15. qs[j] holds q[j] in its low nibble and
// q[j + G/2] in its high nibble, j < G/2.
typedef struct lmp_block_q4_0 {
    lmp_fp16 d;
    uint8_t qs[16];
} lmp_block_q4_0;
LMP_STATIC_ASSERT(sizeof(lmp_block_q4_0) == 18, "q4_0 block must be 18 bytes");

typedef struct lmp_block_q4_0_g64 {
    lmp_fp16 d;
    uint8_t qs[32];
} lmp_block_q4_0_g64;
LMP_STATIC_ASSERT(sizeof(lmp_block_q4_0_g64) == 34, "q4_0_g64 block must be 34 bytes");

typedef struct lmp_block_q4_0_g128 {
    lmp_fp16 d;
    uint8_t qs[64];
} lmp_block_q4_0_g128;
LMP_STATIC_ASSERT(sizeof(lmp_block_q4_0_g128) == 66, "q4_0_g128 block must be 66 bytes");

// q4_1 (group G): x[j] = d * q[j] + m, q[j] in 0..15, nibbles as q4_0.
typedef struct lmp_block_q4_1 {
    lmp_fp16 d;
    lmp_fp16 m;
    uint8_t qs[16];
} lmp_block_q4_1;
LMP_STATIC_ASSERT(sizeof(lmp_block_q4_1) == 20, "q4_1 block must be 20 bytes");

typedef struct lmp_block_q4_1_g64 {
    lmp_fp16 d;
    lmp_fp16 m;
    uint8_t qs[32];
} lmp_block_q4_1_g64;
LMP_STATIC_ASSERT(sizeof(lmp_block_q4_1_g64) == 36, "q4_1_g64 block must be 36 bytes");

typedef struct lmp_block_q4_1_g128 {
    lmp_fp16 d;
    lmp_fp16 m;
    uint8_t qs[64];
} lmp_block_q4_1_g128;
LMP_STATIC_ASSERT(sizeof(lmp_block_q4_1_g128) == 68, "q4_1_g128 block must be 68 bytes");

// q8_a (run time only): activations for integer dot products. x[i] = d * qs[i]; s = d * sum(qs),
// which the asymmetric types need for the minimum term.
#define LMP_QK8_A 32
typedef struct lmp_block_q8_a {
    float d;
    float s;
    int8_t qs[LMP_QK8_A];
} lmp_block_q8_a;
LMP_STATIC_ASSERT(sizeof(lmp_block_q8_a) == 40, "q8_a block must be 40 bytes");

// q16_a (run time only): 16-bit activations for the q8_0 dot product. x[i] = d * qs[i], d = max|x| / 32767.
// Why q8_0 does not use q8_a: with 8-bit weights, rounding the activations to 8 bits as well doubles the
// error of the product; measured on SmolLM2-135M, int8 activations alone cost KLD 0.002-0.003, more than
// the q8_0 weights themselves (0.0011). 16-bit activations cost the same integer work on AVX2 (vpmaddwd
// on sign-extended weights instead of vpmaddubsw + vpmaddwd) and remove that error.
#define LMP_QK16_A 32
typedef struct lmp_block_q16_a {
    float d;
    int16_t qs[LMP_QK16_A];
} lmp_block_q16_a;
LMP_STATIC_ASSERT(sizeof(lmp_block_q16_a) == 68, "q16_a block must be 68 bytes");

// ---- scalar conversions (reference; host and device) ----

static inline LMP_HD float lmp_u32_as_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline LMP_HD uint32_t lmp_f32_as_u32(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

// IEEE half -> float, exact for all inputs (subnormals, inf, NaN).
static inline LMP_HD float lmp_fp16_to_f32(lmp_fp16 h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else {  // subnormal: normalise
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while ((man & 0x400u) == 0);
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else if (exp == 0x1f) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    return lmp_u32_as_f32(u);
}

// float -> IEEE half, round to nearest even; overflow gives inf, NaN stays NaN.
static inline LMP_HD lmp_fp16 lmp_f32_to_fp16(float f) {
    uint32_t x = lmp_f32_as_u32(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) return (lmp_fp16)(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0));
    if (absx >= 0x477ff000u) return (lmp_fp16)(sign | 0x7c00u);  // rounds to >= 65520: inf
    if (absx < 0x38800000u) {                                    // result is subnormal or zero
        if (absx < 0x33000000u) return (lmp_fp16)sign;           // < 2^-25: rounds to 0
        uint32_t e = absx >> 23;
        uint32_t man = (absx & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - e;  // 14 - (e - 127) + 13 - 1 ... value = man * 2^(e-150); half ulp 2^-24
        uint32_t q = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1u))) q++;
        return (lmp_fp16)(sign | q);
    }
    uint32_t r = absx + 0xfffu + ((absx >> 13) & 1u);  // round to nearest even at bit 13
    r -= 0x38000000u;                                   // rebias 127 -> 15
    return (lmp_fp16)(sign | (r >> 13));
}

static inline LMP_HD float lmp_bf16_to_f32(lmp_bf16 h) { return lmp_u32_as_f32((uint32_t)h << 16); }

static inline LMP_HD lmp_bf16 lmp_f32_to_bf16(float f) {
    uint32_t x = lmp_f32_as_u32(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (lmp_bf16)((x >> 16) | 0x40u);  // quiet NaN
    x += 0x7fffu + ((x >> 16) & 1u);
    return (lmp_bf16)(x >> 16);
}

#endif
