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
    LMP_DTYPE_Q4_K = 10,      // 4-bit, super-block 256: 8 x 32 with 6-bit scale and min (ggml Q4_K)
    LMP_DTYPE_Q5_K = 11,      // 5-bit, super-block 256: 8 x 32 with 6-bit scale and min (ggml Q5_K)
    LMP_DTYPE_Q6_K = 12,      // 6-bit, super-block 256: 16 x 16 with int8 scales (ggml Q6_K)
    LMP_DTYPE_IQ4_NL = 13,    // 4-bit non-linear codebook, group 32, fp16 scale (ggml IQ4_NL)
    LMP_DTYPE_COUNT = 14,     // first value not (yet) used in files
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

// ---- super-block types (bit-identical to ggml's Q4_K, Q5_K, Q6_K) ----
// 256 weights per super-block; sub-block scales are themselves quantized under fp16 super-scales.
#define LMP_QK_K 256

// q4_K: 8 sub-blocks j of 32; x = d * sc[j] * q - dmin * m[j], q in 0..15, sc and m 6-bit. scales[12]
// packs them: for j < 4 sc[j] = scales[j] & 63, m[j] = scales[j + 4] & 63; for j >= 4
// sc[j] = (scales[j + 4] & 15) | ((scales[j - 4] >> 6) << 4), m[j] = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4).
// qs: 4 groups of 32 bytes; group g holds sub-block 2g in its low nibbles and 2g + 1 in its high nibbles.
typedef struct lmp_block_q4_K {
    lmp_fp16 d;
    lmp_fp16 dmin;
    uint8_t scales[12];
    uint8_t qs[LMP_QK_K / 2];
} lmp_block_q4_K;
LMP_STATIC_ASSERT(sizeof(lmp_block_q4_K) == 144, "q4_K block must be 144 bytes");

// q5_K: as q4_K with a fifth bit: q = nibble | (((qh[l] >> j) & 1) << 4) for element l of sub-block j,
// q in 0..31.
typedef struct lmp_block_q5_K {
    lmp_fp16 d;
    lmp_fp16 dmin;
    uint8_t scales[12];
    uint8_t qh[LMP_QK_K / 8];
    uint8_t qs[LMP_QK_K / 2];
} lmp_block_q5_K;
LMP_STATIC_ASSERT(sizeof(lmp_block_q5_K) == 176, "q5_K block must be 176 bytes");

// q6_K: 16 sub-blocks of 16; x = d * scales[i / 16] * (q - 32), q in 0..63. Two halves of 128; in half h,
// element 32 s + l (s = 0..3, l < 32) has its low 4 bits in ql[64 h + l + 32 (s & 1)] (low nibble for
// s < 2, high nibble otherwise) and its high 2 bits in bits 2s..2s+1 of qh[32 h + l].
typedef struct lmp_block_q6_K {
    uint8_t ql[LMP_QK_K / 2];
    uint8_t qh[LMP_QK_K / 4];
    int8_t scales[LMP_QK_K / 16];
    lmp_fp16 d;
} lmp_block_q6_K;
LMP_STATIC_ASSERT(sizeof(lmp_block_q6_K) == 210, "q6_K block must be 210 bytes");

// iq4_nl: 32 4-bit indices into a 16-entry codebook fitted to bell-shaped weights (ggml IQ4_NL):
// x[j] = d * LMP_IQ4_NL_VALUES[q[j]], nibbles as q4_0.
#define LMP_QK_IQ4_NL 32
typedef struct lmp_block_iq4_nl {
    lmp_fp16 d;
    uint8_t qs[LMP_QK_IQ4_NL / 2];
} lmp_block_iq4_nl;
LMP_STATIC_ASSERT(sizeof(lmp_block_iq4_nl) == 18, "iq4_nl block must be 18 bytes");
#define LMP_IQ4_NL_VALUES_INIT {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113}

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
