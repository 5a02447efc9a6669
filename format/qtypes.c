// qtypes.c - the type-traits table of qtypes.h and the scalar reference codecs of every lmp_dtype:
// to_float, from_float_ref (round to nearest, bit-identical to ggml's reference for q8_0/q4_0/q4_1),
// vec_dot_ref (weights against f32, q8_a or q16_a activations), and the importance-weighted quantizer
// lmp_quantize_row_weighted.
//
// These are the definitions that every fast kernel (quant/kernels_*.c) is tested against: plain loops,
// no SIMD, a fixed accumulation order (one float sum over blocks, integer sums inside a block). Speed
// is deliberately not a goal here. It does not hold the run-time kernels (quant/kernels.c) nor the
// choice of type per tensor (the quantize pass).
#include "format/qtypes.h"

#include <float.h>
#include <math.h>
#include <string.h>
#include <strings.h>

#include "format/lmp_common.h"
#include "format/qtypes_internal.h"

// ---- f32 / f16 / bf16 ----

static void f32_to_float(const void *src, float *dst, int64_t n) { memcpy(dst, src, (size_t)n * sizeof(float)); }
static void f32_from_float(const float *src, void *dst, int64_t n) { memcpy(dst, src, (size_t)n * sizeof(float)); }
static void f32_vec_dot(int64_t n, float *s, const void *w, const void *x) {
    const float *a = w, *b = x;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) sum += a[i] * b[i];
    *s = sum;
}

static void f16_to_float(const void *src, float *dst, int64_t n) {
    const lmp_fp16 *h = src;
    for (int64_t i = 0; i < n; i++) dst[i] = lmp_fp16_to_f32(h[i]);
}
static void f16_from_float(const float *src, void *dst, int64_t n) {
    lmp_fp16 *h = dst;
    for (int64_t i = 0; i < n; i++) h[i] = lmp_f32_to_fp16(src[i]);
}
static void f16_vec_dot(int64_t n, float *s, const void *w, const void *x) {
    const lmp_fp16 *a = w;
    const float *b = x;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) sum += lmp_fp16_to_f32(a[i]) * b[i];
    *s = sum;
}

static void bf16_to_float(const void *src, float *dst, int64_t n) {
    const lmp_bf16 *h = src;
    for (int64_t i = 0; i < n; i++) dst[i] = lmp_bf16_to_f32(h[i]);
}
static void bf16_from_float(const float *src, void *dst, int64_t n) {
    lmp_bf16 *h = dst;
    for (int64_t i = 0; i < n; i++) h[i] = lmp_f32_to_bf16(src[i]);
}
static void bf16_vec_dot(int64_t n, float *s, const void *w, const void *x) {
    const lmp_bf16 *a = w;
    const float *b = x;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) sum += lmp_bf16_to_f32(a[i]) * b[i];
    *s = sum;
}

// ---- q8_0 ----

// Why this exact arithmetic: it is ggml's quantize_row_q8_0_ref (d = amax/127, q = roundf(x * (1/d))),
// so our q8_0 files match llama.cpp's own quantization bit for bit.
static void q8_0_from_float(const float *src, void *dst, int64_t n) {
    lmp_block_q8_0 *y = dst;
    for (int64_t b = 0; b < n / LMP_QK8_0; b++) {
        const float *x = src + b * LMP_QK8_0;
        float amax = 0.0f;
        for (int j = 0; j < LMP_QK8_0; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = lmp_f32_to_fp16(d);
        for (int j = 0; j < LMP_QK8_0; j++) {
            float v = roundf(x[j] * id);
            if (!(v >= -128.0f)) v = v != v ? 0.0f : -128.0f;  // NaN/-inf guard (never for finite x)
            if (v > 127.0f) v = 127.0f;
            y[b].qs[j] = (int8_t)v;
        }
    }
}
static void q8_0_to_float(const void *src, float *dst, int64_t n) {
    const lmp_block_q8_0 *x = src;
    for (int64_t b = 0; b < n / LMP_QK8_0; b++) {
        const float d = lmp_fp16_to_f32(x[b].d);
        for (int j = 0; j < LMP_QK8_0; j++) dst[b * LMP_QK8_0 + j] = (float)x[b].qs[j] * d;
    }
}
// Against q16_a activations (see lmp_types.h for why q8_0 does not take q8_a): |isum| <= 32 * 128 * 32767
// < 2^31, so the block's integer sum is exact in int32.
static void q8_0_vec_dot(int64_t n, float *s, const void *w, const void *xv) {
    const lmp_block_q8_0 *a = w;
    const lmp_block_q16_a *x = xv;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / LMP_QK8_0; b++) {
        int32_t isum = 0;
        for (int j = 0; j < LMP_QK8_0; j++) isum += (int32_t)a[b].qs[j] * (int32_t)x[b].qs[j];
        sum += (lmp_fp16_to_f32(a[b].d) * x[b].d) * (float)isum;
    }
    *s = sum;
}

// ---- q8_a (run-time activations) ----

static void q8_a_from_float(const float *src, void *dst, int64_t n) {
    lmp_block_q8_a *y = dst;
    for (int64_t b = 0; b < n / LMP_QK8_A; b++) {
        const float *x = src + b * LMP_QK8_A;
        float amax = 0.0f;
        for (int j = 0; j < LMP_QK8_A; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f;
        int32_t sum = 0;
        for (int j = 0; j < LMP_QK8_A; j++) {
            float v = d != 0.0f ? roundf(x[j] / d) : 0.0f;
            if (!(v >= -127.0f)) v = v != v ? 0.0f : -127.0f;
            if (v > 127.0f) v = 127.0f;
            y[b].qs[j] = (int8_t)v;
            sum += y[b].qs[j];
        }
        y[b].d = d;
        y[b].s = d * (float)sum;
    }
}
static void q8_a_to_float(const void *src, float *dst, int64_t n) {
    const lmp_block_q8_a *x = src;
    for (int64_t b = 0; b < n / LMP_QK8_A; b++)
        for (int j = 0; j < LMP_QK8_A; j++) dst[b * LMP_QK8_A + j] = (float)x[b].qs[j] * x[b].d;
}
// Not used by the runtime (q8_a is never a weight type); given so that no row of the table has a NULL.
static void q8_a_vec_dot(int64_t n, float *s, const void *w, const void *xv) {
    const lmp_block_q8_a *a = w, *x = xv;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / LMP_QK8_A; b++) {
        int32_t isum = 0;
        for (int j = 0; j < LMP_QK8_A; j++) isum += (int32_t)a[b].qs[j] * (int32_t)x[b].qs[j];
        sum += (a[b].d * x[b].d) * (float)isum;
    }
    *s = sum;
}

// ---- q16_a (run-time activations of q8_0) ----

// d = amax / 32767, q = roundf(x / d) (a true division, as q8_a), clamped to [-32767, 32767].
static void q16_a_from_float(const float *src, void *dst, int64_t n) {
    lmp_block_q16_a *y = dst;
    for (int64_t b = 0; b < n / LMP_QK16_A; b++) {
        const float *x = src + b * LMP_QK16_A;
        float amax = 0.0f;
        for (int j = 0; j < LMP_QK16_A; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 32767.0f;
        for (int j = 0; j < LMP_QK16_A; j++) {
            float v = d != 0.0f ? roundf(x[j] / d) : 0.0f;
            if (!(v >= -32767.0f)) v = v != v ? 0.0f : -32767.0f;
            if (v > 32767.0f) v = 32767.0f;
            y[b].qs[j] = (int16_t)v;
        }
        y[b].d = d;
    }
}
static void q16_a_to_float(const void *src, float *dst, int64_t n) {
    const lmp_block_q16_a *x = src;
    for (int64_t b = 0; b < n / LMP_QK16_A; b++)
        for (int j = 0; j < LMP_QK16_A; j++) dst[b * LMP_QK16_A + j] = (float)x[b].qs[j] * x[b].d;
}
// Not used by the runtime (q16_a is never a weight type); given so that no row of the table has a NULL.
// int64 sum: 32 products of two int16 can exceed int32.
static void q16_a_vec_dot(int64_t n, float *s, const void *w, const void *xv) {
    const lmp_block_q16_a *a = w, *x = xv;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / LMP_QK16_A; b++) {
        int64_t isum = 0;
        for (int j = 0; j < LMP_QK16_A; j++) isum += (int64_t)a[b].qs[j] * (int64_t)x[b].qs[j];
        sum += (a[b].d * x[b].d) * (float)isum;
    }
    *s = sum;
}

// ---- 4-bit families: q4_0 (symmetric) and q4_1 (asymmetric), groups of 32, 64, 128 ----
//
// A block is {f16 d; [f16 m;] u8 qs[G/2]}; q[j] = qs[j] & 15 and q[j + G/2] = qs[j] >> 4.

static inline size_t q4_header(int asym) { return asym ? 4 : 2; }
static inline size_t q4_block_bytes(int G, int asym) { return q4_header(asym) + (size_t)G / 2; }

static inline lmp_fp16 rd16(const uint8_t *p) { return (lmp_fp16)(p[0] | (p[1] << 8)); }
static inline void wr16(uint8_t *p, lmp_fp16 v) {
    p[0] = (uint8_t)(v & 0xff);
    p[1] = (uint8_t)(v >> 8);
}

static void q4_pack(uint8_t *qs, const uint8_t *q, int G) {
    for (int j = 0; j < G / 2; j++) qs[j] = (uint8_t)(q[j] | (q[j + G / 2] << 4));
}
static void q4_unpack(uint8_t *q, const uint8_t *qs, int G) {
    for (int j = 0; j < G / 2; j++) {
        q[j] = qs[j] & 15;
        q[j + G / 2] = qs[j] >> 4;
    }
}

// Truncates v (expected in [0, 16.5) for finite inputs) to 0..15 like ggml's MIN(15, (int8_t)v), but
// without undefined behaviour for NaN or huge values.
static inline uint8_t q4_trunc(float v) {
    if (!(v >= 0.0f)) return 0;
    if (v >= 15.0f) return 15;
    return (uint8_t)(int)v;
}

// Why this exact arithmetic: ggml's quantize_row_q4_0_ref / q4_1_ref (incl. the first-largest
// signed maximum, d = max / -8, the +8.5 / +0.5 and truncation), so group-32 files are
// bit-identical to llama.cpp's Q4_0 / Q4_1.
static void q4_block_rtn(const float *x, uint8_t *blk, int G, int asym) {
    uint8_t q[128];
    if (!asym) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < G; j++)
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        const float d = max / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        wr16(blk, lmp_f32_to_fp16(d));
        for (int j = 0; j < G; j++) q[j] = q4_trunc(x[j] * id + 8.5f);
    } else {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < G; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / 15.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        wr16(blk, lmp_f32_to_fp16(d));
        wr16(blk + 2, lmp_f32_to_fp16(min));
        for (int j = 0; j < G; j++) q[j] = q4_trunc((x[j] - min) * id + 0.5f);
    }
    q4_pack(blk + q4_header(asym), q, G);
}

static void q4_block_to_float(const uint8_t *blk, float *y, int G, int asym) {
    uint8_t q[128];
    const float d = lmp_fp16_to_f32(rd16(blk));
    q4_unpack(q, blk + q4_header(asym), G);
    if (!asym) {
        for (int j = 0; j < G; j++) y[j] = (float)((int)q[j] - 8) * d;
    } else {
        const float m = lmp_fp16_to_f32(rd16(blk + 2));
        for (int j = 0; j < G; j++) y[j] = (float)q[j] * d + m;
    }
}

static void q4_from_float(const float *src, void *dst, int64_t n, int G, int asym) {
    const size_t bb = q4_block_bytes(G, asym);
    for (int64_t b = 0; b < n / G; b++) q4_block_rtn(src + b * G, (uint8_t *)dst + (size_t)b * bb, G, asym);
}
static void q4_to_float(const void *src, float *dst, int64_t n, int G, int asym) {
    const size_t bb = q4_block_bytes(G, asym);
    for (int64_t b = 0; b < n / G; b++) q4_block_to_float((const uint8_t *)src + (size_t)b * bb, dst + b * G, G, asym);
}

// Reference dot against q8_a: one float sum over 32-element activation blocks, each term
// (d_w * d_x) * isum (+ m_w * s_x for the asymmetric types); a weight block of G elements spans G/32
// activation blocks that share d_w (and m_w).
static void q4_vec_dot(int64_t n, float *s, const void *w, const void *xv, int G, int asym) {
    const size_t bb = q4_block_bytes(G, asym);
    const lmp_block_q8_a *x = xv;
    float sum = 0.0f;
    uint8_t q[128];
    for (int64_t b = 0; b < n / G; b++) {
        const uint8_t *blk = (const uint8_t *)w + (size_t)b * bb;
        const float dw = lmp_fp16_to_f32(rd16(blk));
        const float mw = asym ? lmp_fp16_to_f32(rd16(blk + 2)) : 0.0f;
        q4_unpack(q, blk + q4_header(asym), G);
        for (int k = 0; k < G / 32; k++) {
            const lmp_block_q8_a *xb = &x[b * (G / 32) + k];
            int32_t isum = 0;
            for (int j = 0; j < 32; j++) isum += ((int32_t)q[k * 32 + j] - (asym ? 0 : 8)) * (int32_t)xb->qs[j];
            if (asym) sum += (dw * xb->d) * (float)isum + mw * xb->s;
            else sum += (dw * xb->d) * (float)isum;
        }
    }
    *s = sum;
}

#define Q4_WRAPPERS(name, G, asym)                                                                      \
    static void name##_from_float(const float *s, void *d, int64_t n) { q4_from_float(s, d, n, G, asym); } \
    static void name##_to_float(const void *s, float *d, int64_t n) { q4_to_float(s, d, n, G, asym); }     \
    static void name##_vec_dot(int64_t n, float *s, const void *w, const void *x) { q4_vec_dot(n, s, w, x, G, asym); }
Q4_WRAPPERS(q4_0, 32, 0)
Q4_WRAPPERS(q4_1, 32, 1)
Q4_WRAPPERS(q4_0_g64, 64, 0)
Q4_WRAPPERS(q4_0_g128, 128, 0)
Q4_WRAPPERS(q4_1_g64, 64, 1)
Q4_WRAPPERS(q4_1_g128, 128, 1)

// ---- the table ----

static const lmp_type_traits g_traits[LMP_DTYPE_COUNT] = {
    [LMP_DTYPE_F32] = {"f32", "32-bit float", 1, 4, 0, 1, LMP_DTYPE_F32, f32_to_float, f32_from_float, f32_vec_dot},
    [LMP_DTYPE_F16] = {"f16", "16-bit IEEE half float", 1, 2, 0, 1, LMP_DTYPE_F32, f16_to_float, f16_from_float,
                       f16_vec_dot},
    [LMP_DTYPE_BF16] = {"bf16", "bfloat16 (upper half of f32)", 1, 2, 0, 1, LMP_DTYPE_F32, bf16_to_float,
                        bf16_from_float, bf16_vec_dot},
    [LMP_DTYPE_Q8_0] = {"q8_0", "8-bit symmetric, group 32, fp16 scale (ggml Q8_0)", 32, 34, 1, 1, LMP_DTYPE_Q16_A,
                        q8_0_to_float, q8_0_from_float, q8_0_vec_dot},
    [LMP_DTYPE_Q4_0] = {"q4_0", "4-bit symmetric, group 32, fp16 scale (ggml Q4_0)", 32, 18, 1, 1, LMP_DTYPE_Q8_A,
                        q4_0_to_float, q4_0_from_float, q4_0_vec_dot},
    [LMP_DTYPE_Q4_1] = {"q4_1", "4-bit asymmetric, group 32, fp16 scale and min (ggml Q4_1)", 32, 20, 1, 1,
                        LMP_DTYPE_Q8_A, q4_1_to_float, q4_1_from_float, q4_1_vec_dot},
    [LMP_DTYPE_Q4_0_G64] = {"q4_0_g64", "4-bit symmetric, group 64, fp16 scale", 64, 34, 1, 1, LMP_DTYPE_Q8_A,
                            q4_0_g64_to_float, q4_0_g64_from_float, q4_0_g64_vec_dot},
    [LMP_DTYPE_Q4_0_G128] = {"q4_0_g128", "4-bit symmetric, group 128, fp16 scale", 128, 66, 1, 1, LMP_DTYPE_Q8_A,
                             q4_0_g128_to_float, q4_0_g128_from_float, q4_0_g128_vec_dot},
    [LMP_DTYPE_Q4_1_G64] = {"q4_1_g64", "4-bit asymmetric, group 64, fp16 scale and min", 64, 36, 1, 1,
                            LMP_DTYPE_Q8_A, q4_1_g64_to_float, q4_1_g64_from_float, q4_1_g64_vec_dot},
    [LMP_DTYPE_Q4_1_G128] = {"q4_1_g128", "4-bit asymmetric, group 128, fp16 scale and min", 128, 68, 1, 1,
                             LMP_DTYPE_Q8_A, q4_1_g128_to_float, q4_1_g128_from_float, q4_1_g128_vec_dot},
    [LMP_DTYPE_Q4_K] = {"q4_K", "4-bit, super-block 256: 8 x 32 with 6-bit scales and mins (ggml Q4_K)", 256, 144, 1,
                        1, LMP_DTYPE_Q8_A, lmp_q4_K_to_float, lmp_q4_K_from_float, lmp_q4_K_vec_dot},
    [LMP_DTYPE_Q5_K] = {"q5_K", "5-bit, super-block 256: 8 x 32 with 6-bit scales and mins (ggml Q5_K)", 256, 176, 1,
                        1, LMP_DTYPE_Q8_A, lmp_q5_K_to_float, lmp_q5_K_from_float, lmp_q5_K_vec_dot},
    [LMP_DTYPE_Q6_K] = {"q6_K", "6-bit, super-block 256: 16 x 16 with int8 scales (ggml Q6_K)", 256, 210, 1, 1,
                        LMP_DTYPE_Q8_A, lmp_q6_K_to_float, lmp_q6_K_from_float, lmp_q6_K_vec_dot},
    [LMP_DTYPE_IQ4_NL] = {"iq4_nl", "4-bit non-linear codebook, group 32, fp16 scale (ggml IQ4_NL)", 32, 18, 1, 1,
                          LMP_DTYPE_Q8_A, lmp_iq4_nl_to_float, lmp_iq4_nl_from_float, lmp_iq4_nl_vec_dot},
};

static const lmp_type_traits g_traits_q8_a = {
    "q8_a", "8-bit activations, group 32, f32 scale and scaled sum (run time only)", 32, 40, 1, 0, LMP_DTYPE_Q8_A,
    q8_a_to_float, q8_a_from_float, q8_a_vec_dot};
static const lmp_type_traits g_traits_q16_a = {
    "q16_a", "16-bit activations, group 32, f32 scale (run time only; q8_0's dot products)", 32, 68, 1, 0,
    LMP_DTYPE_Q16_A, q16_a_to_float, q16_a_from_float, q16_a_vec_dot};

const lmp_type_traits *lmp_type_get(lmp_dtype t) {
    // Compare as unsigned: a file's u32 may have become a negative enum value.
    if ((unsigned)t < (unsigned)LMP_DTYPE_COUNT) return &g_traits[t];
    if ((unsigned)t == (unsigned)LMP_DTYPE_Q8_A) return &g_traits_q8_a;
    if ((unsigned)t == (unsigned)LMP_DTYPE_Q16_A) return &g_traits_q16_a;
    return NULL;
}

int lmp_type_from_name(const char *name) {
    if (!name) return -1;
    if (!strcasecmp(name, "q8")) return LMP_DTYPE_Q8_0;
    if (!strcasecmp(name, "q4")) return LMP_DTYPE_Q4_0;
    for (int t = 0; t < LMP_DTYPE_COUNT; t++)
        if (!strcasecmp(name, g_traits[t].name)) return t;
    if (!strcasecmp(name, g_traits_q8_a.name)) return LMP_DTYPE_Q8_A;
    if (!strcasecmp(name, g_traits_q16_a.name)) return LMP_DTYPE_Q16_A;
    return -1;
}

const char *lmp_type_name(lmp_dtype t) {
    const lmp_type_traits *tt = lmp_type_get(t);
    return tt ? tt->name : "?";
}

size_t lmp_type_row_size(lmp_dtype t, int64_t n) {
    const lmp_type_traits *tt = lmp_type_get(t);
    if (!tt || n < 0 || n % tt->block_size != 0) return 0;
    uint64_t bytes;
    if (lmp_mul_overflow((uint64_t)(n / tt->block_size), (uint64_t)tt->type_size, &bytes) || bytes > SIZE_MAX) return 0;
    return (size_t)bytes;
}

double lmp_type_bpw(lmp_dtype t) {
    const lmp_type_traits *tt = lmp_type_get(t);
    return tt ? (double)tt->type_size * 8.0 / (double)tt->block_size : 0.0;
}

// ---- importance-weighted quantization ----
//
// Each candidate scale (and minimum) gives every element its code at that scale; the weighted
// least-squares scale (and minimum) for those codes and its error come in closed form from five sums, so a
// candidate costs one pass. The best fit is then stored (fp16), every element gets its nearest code under
// the stored values, and the block is compared with RTN by the weighted squared error of the values exactly
// as to_float computes them, summed in double: never worse than RTN under the weighted error.

static double block_werr(const float *x, const float *deq, const float *imp, int G) {
    double e = 0.0;
    for (int j = 0; j < G; j++) {
        double d = (double)x[j] - (double)deq[j];
        e += (double)imp[j] * d * d;
    }
    return e;
}

// Round to nearest for |v| <= 2^22 without a libm call: adding 1.5 * 2^23 puts the integer part in the
// low mantissa bits (llama.cpp's nearest_int). Ties may go either way, which is harmless here: every
// candidate is judged by its error. Clamped to [lo, hi]; NaN gives lo.
static inline int round_clamp(float v, int lo, int hi) {
    if (!(v >= (float)lo)) return lo;
    if (v >= (float)hi) return hi;
    float f = v + 12582912.0f;
    int32_t i;
    memcpy(&i, &f, 4);
    return (i & 0x007fffff) - 0x00400000;
}

// Best symmetric scale for codes l in [lo, hi]: candidates max / c for the given divisors, each with the
// least-squares scale of its codes, by the closed-form error -(sum w x l)^2 / sum w l^2 (+ sum w x^2).
static float best_sym_scale(const float *x, const float *imp, int G, float max, const float *divs, int nd, int lo,
                            int hi) {
    float best = INFINITY, besta = 0.0f;
    for (int c = 0; c < nd; c++) {
        const float id = divs[c] / max;
        float sxl = 0.0f, sll = 0.0f;
        for (int j = 0; j < G; j++) {
            const float l = (float)round_clamp(x[j] * id, lo, hi), wl = imp[j] * l;
            sxl += wl * x[j];
            sll += wl * l;
        }
        if (!(sll > 0.0f)) continue;
        const float e = -sxl * sxl / sll, a = sxl / sll;
        if (e < best && isfinite(a) && a != 0.0f) {
            best = e;
            besta = a;
        }
    }
    return besta;
}

// Stores scale d (and min m) as fp16 with each element's nearest code under them (q4 layout).
static int q4_block_store(const float *x, uint8_t *blk, int G, int asym, float d, float m) {
    const lmp_fp16 d16 = lmp_f32_to_fp16(d), m16 = asym ? lmp_f32_to_fp16(m) : 0;
    const float ds = lmp_fp16_to_f32(d16), ms = lmp_fp16_to_f32(m16);
    if (!isfinite(ds) || ds == 0.0f || !isfinite(ms)) return -1;
    const float id = 1.0f / ds;
    uint8_t q[128];
    for (int j = 0; j < G; j++) q[j] = (uint8_t)(asym ? round_clamp((x[j] - ms) * id, 0, 15) : round_clamp(x[j] * id, -8, 7) + 8);
    wr16(blk, d16);
    if (asym) wr16(blk + 2, m16);
    q4_pack(blk + q4_header(asym), q, G);
    return 0;
}

// Why the search: RTN's scale comes from one extreme element; with importance weights a slightly
// smaller or larger scale (and a least-squares re-fit of scale and min to the resulting codes) often
// lowers the weighted error, as llama.cpp's make_qx_quants / make_qkx2_quants do.
static void q4_block_weighted(const float *x, uint8_t *out, const float *imp, int G, int asym) {
    uint8_t rtn[4 + 64], cand[4 + 64];
    float deq[128];
    int have = 0;
    if (!asym) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < G; j++)
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        if (amax > 0.0f && isfinite(amax)) {
            // the largest element on the -8 side (RTN's) or on the +7 side
            float divs[26];
            for (int is = -6; is <= 6; is++) {
                divs[is + 6] = -(8.0f + 0.15f * (float)is);
                divs[is + 19] = 7.0f + 0.15f * (float)is;
            }
            float a = best_sym_scale(x, imp, G, max, divs, 26, -8, 7);
            have = a != 0.0f && q4_block_store(x, cand, G, 0, a, 0.0f) == 0;
        }
    } else {
        float min = FLT_MAX, max = -FLT_MAX, sw = 0.0f, sx = 0.0f;
        for (int j = 0; j < G; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
            sw += imp[j];
            sx += imp[j] * x[j];
        }
        float best = INFINITY, ba = 0.0f, bm = 0.0f;
        for (int is = 0; max > min && isfinite(max - min) && is <= 16; is++) {
            const float id = (14.0f + 0.125f * (float)is) / (max - min);
            float sl = 0.0f, sll = 0.0f, slx = 0.0f;
            for (int j = 0; j < G; j++) {
                const float l = (float)round_clamp((x[j] - min) * id, 0, 15), wl = imp[j] * l;
                sl += wl;
                sll += wl * l;
                slx += wl * x[j];
            }
            // weighted least squares of x ~ a l + m; error sum w x^2 - (a slx + m sx) at the optimum
            const float det = sw * sll - sl * sl;
            if (!(det > 0.0f)) continue;
            const float a = (sw * slx - sl * sx) / det, m = (sll * sx - sl * slx) / det;
            const float e = -(a * slx + m * sx);
            if (e < best && a > 0.0f && isfinite(a) && isfinite(m)) {
                best = e;
                ba = a;
                bm = m;
            }
        }
        have = ba > 0.0f && q4_block_store(x, cand, G, 1, ba, bm) == 0;
    }
    q4_block_rtn(x, rtn, G, asym);
    memcpy(out, rtn, q4_block_bytes(G, asym));
    if (!have) return;
    q4_block_to_float(rtn, deq, G, asym);
    const double rtn_err = block_werr(x, deq, imp, G);
    q4_block_to_float(cand, deq, G, asym);
    if (block_werr(x, deq, imp, G) < rtn_err) memcpy(out, cand, q4_block_bytes(G, asym));
}

// q8_0's scale by a sweep instead of a few candidates. As the inverse scale id grows from Q8_LO / amax to
// Q8_HI / amax, the codes round(x_j id) change one step at a time, at id = (c + 1/2) / |x_j|; every set of
// codes met on the way is scored by its least-squares scale's weighted error -(sum w x l)^2 / sum w l^2
// (+ sum w x^2), updated in O(1) per step. The steps are ordered by id into Q8_NB buckets (within a bucket
// each element's own steps stay in order, so every scored state is a real set of codes; its least-squares
// scale and the final rounding under the fp16 scale can only do better). Why: 13 candidates around
// amax / 127 miss the scales where many codes land close to their values at once: on weights that lie on a
// coarser grid (SmolLM2's base is dequantized q4_1: 16 levels per block of 32) the sweep from 96 lowers the
// weights' squared error 2.6x below the 13 candidates, on float weights (stories260K) 7 %
// (docs/benchmarks.md, branch q8ts). A step count of at most 32 x (Q8_HI - Q8_LO + 1) per block.
#define Q8_LO 96.0f
#define Q8_HI 128.0f
#define Q8_NB 64
#define Q8_MAXSTEPS (LMP_QK8_0 * (int)(Q8_HI - Q8_LO + 2))

static float q8_0_sweep_scale(const float *x, const float *imp, float amax) {
    const float id0 = Q8_LO / amax, id1 = Q8_HI / amax, bscale = (float)Q8_NB / (id1 - id0);
    if (!isfinite(id1) || !(bscale > 0.0f) || !isfinite(bscale)) return 0.0f;  // amax tiny: RTN's block stays
    int start[Q8_NB + 1] = {0}, ns = 0;
    uint8_t bucket[Q8_MAXSTEPS];
    double sxl = 0.0, sll = 0.0;
    // codes at id0, each step's bucket, the number of steps per bucket (a counting sort, stable: each
    // element's steps stay in order)
    for (int j = 0; j < LMP_QK8_0; j++) {
        const float ax = fabsf(x[j]);
        const int c0 = round_clamp(ax * id0, 0, 127), c1 = round_clamp(ax * id1, 0, 127);
        sxl += (double)imp[j] * ax * c0;
        sll += (double)imp[j] * c0 * c0;
        if (c1 <= c0) continue;
        const float db = bscale / ax;  // buckets per step of element j
        float t = ((float)c0 + 0.5f) * db - id0 * bscale;
        for (int c = c0; c < c1; c++, t += db) {  // step c -> c + 1 at id = (c + 0.5) / |x_j|
            const int b = t > 0.0f ? (t < (float)(Q8_NB - 1) ? (int)t : Q8_NB - 1) : 0;  // NaN: 0
            bucket[ns++] = (uint8_t)b;
            start[b + 1]++;
        }
    }
    for (int b = 0; b < Q8_NB; b++) start[b + 1] += start[b];
    float dxl[Q8_MAXSTEPS], dll[Q8_MAXSTEPS];  // the sums' increments, in sweep order
    for (int j = 0, s = 0; j < LMP_QK8_0; j++) {
        const float ax = fabsf(x[j]), wx = imp[j] * ax;
        const int c0 = round_clamp(ax * id0, 0, 127), c1 = round_clamp(ax * id1, 0, 127);
        for (int c = c0; c < c1; c++, s++) {
            const int k = start[bucket[s]]++;
            dxl[k] = wx;
            dll[k] = imp[j] * (float)(2 * c + 1);
        }
    }
    // the states' least-squares scales and sxl^2 / sll (to maximise) in one pass, the best in a second (a
    // running best would chain every step on the comparison)
    double sc[Q8_MAXSTEPS + 1], gain[Q8_MAXSTEPS + 1];
    sc[0] = sll > 0.0 ? sxl / sll : 0.0;
    gain[0] = sxl * sc[0];
    for (int s = 0; s < ns; s++) {
        sxl += dxl[s];
        sll += dll[s];
        sc[s + 1] = sxl / sll;  // sll > 0 after any step
        gain[s + 1] = sxl * sc[s + 1];
    }
    double gmax = gain[0];
    for (int s = 1; s <= ns; s++) gmax = gain[s] > gmax ? gain[s] : gmax;  // a max reduction, then its place
    int best = 0;
    while (best < ns && gain[best] != gmax) best++;
    return (float)sc[best];
}

static void q8_0_block_weighted(const float *x, lmp_block_q8_0 *out, const float *imp) {
    lmp_block_q8_0 rtn, cand;
    float deq[LMP_QK8_0];
    q8_0_from_float(x, &rtn, LMP_QK8_0);
    *out = rtn;
    float amax = 0.0f;
    for (int j = 0; j < LMP_QK8_0; j++) amax = fmaxf(amax, fabsf(x[j]));
    if (!(amax > 0.0f) || !isfinite(amax)) return;
    const float a = q8_0_sweep_scale(x, imp, amax);
    const lmp_fp16 d16 = lmp_f32_to_fp16(a);
    const float ds = lmp_fp16_to_f32(d16);
    if (!(ds > 0.0f) || !isfinite(ds)) return;
    cand.d = d16;
    const float id = 1.0f / ds;
    for (int j = 0; j < LMP_QK8_0; j++) cand.qs[j] = (int8_t)round_clamp(x[j] * id, -127, 127);
    q8_0_to_float(&rtn, deq, LMP_QK8_0);
    const double rtn_err = block_werr(x, deq, imp, LMP_QK8_0);
    q8_0_to_float(&cand, deq, LMP_QK8_0);
    if (block_werr(x, deq, imp, LMP_QK8_0) < rtn_err) *out = cand;
}

int lmp_quantize_row_weighted(lmp_dtype t, const float *src, void *dst, int64_t n, const float *imp) {
    const lmp_type_traits *tt = lmp_type_get(t);
    if (!tt || !tt->is_quantized || !tt->storable || !src || !dst || n < 0 || n % tt->block_size != 0) return -1;
    const int64_t G = tt->block_size, nb = n / G;
#define ONES8 1, 1, 1, 1, 1, 1, 1, 1
#define ONES64 ONES8, ONES8, ONES8, ONES8, ONES8, ONES8, ONES8, ONES8
    static const float ones[LMP_QK_K] = {ONES64, ONES64, ONES64, ONES64};  // the largest block
    for (int64_t b = 0; b < nb; b++) {
        const float *x = src + b * G, *w = imp ? imp + b * G : ones;  // the block helpers need a weight array
        uint8_t *out = (uint8_t *)dst + (size_t)b * tt->type_size;
        switch (t) {
        case LMP_DTYPE_Q8_0: q8_0_block_weighted(x, (lmp_block_q8_0 *)out, w); break;
        case LMP_DTYPE_Q4_0: q4_block_weighted(x, out, w, 32, 0); break;
        case LMP_DTYPE_Q4_0_G64: q4_block_weighted(x, out, w, 64, 0); break;
        case LMP_DTYPE_Q4_0_G128: q4_block_weighted(x, out, w, 128, 0); break;
        case LMP_DTYPE_Q4_1: q4_block_weighted(x, out, w, 32, 1); break;
        case LMP_DTYPE_Q4_1_G64: q4_block_weighted(x, out, w, 64, 1); break;
        case LMP_DTYPE_Q4_1_G128: q4_block_weighted(x, out, w, 128, 1); break;
        default:
            if (lmp_quantize_block_k_weighted(t, x, out, w) != 0) return -1;
        }
    }
    return 0;
}

// Why rms + |x|: without activation statistics every weight's error counts alike in expectation, but
// the large weights of a block are those most often multiplied with large activations in trained
// models; ggml weights its no-imatrix searches the same way. Measured in docs/benchmarks.md against
// uniform weights.
int lmp_quantize_row_search(lmp_dtype t, const float *src, void *dst, int64_t n, const float *imp) {
    const lmp_type_traits *tt = lmp_type_get(t);
    if (!tt || !tt->is_quantized || !tt->storable || !src || !dst || n < 0 || n % tt->block_size != 0) return -1;
    if (imp) return lmp_quantize_row_weighted(t, src, dst, n, imp);
    const int64_t G = tt->block_size;
    float w[LMP_QK_K];
    for (int64_t b = 0; b < n / G; b++) {
        const float *x = src + b * G;
        double ss = 0.0;
        for (int64_t i = 0; i < G; i++) ss += (double)x[i] * x[i];
        const float rms = (float)sqrt(ss / (double)G);
        for (int64_t i = 0; i < G; i++) {
            w[i] = rms + fabsf(x[i]);
            if (!isfinite(w[i])) w[i] = 1.0f;
        }
        if (lmp_quantize_row_weighted(t, x, (uint8_t *)dst + (size_t)b * tt->type_size, G, w) != 0) return -1;
    }
    return 0;
}
