// gguf_quants.c - the ggml tensor-type table (names, block geometry) and dequantization of the ggml
// block types that lmpress imports: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K and IQ4_NL, to float32.
//
// Block layouts re-implemented from ggml's ggml-common.h / ggml-quants.c (dequantize_row_*); the results
// match ggml's reference (and gguf-py's quants.dequantize) bit for bit: same operations in the same order.
// It does not quantize (Q8_0/Q4_0/Q4_1 are our own types, quantized by quant/qtypes.c) and does not
// handle the other ggml types (Q5_0/Q5_1, Q2_K/Q3_K, IQ* other than IQ4_NL, ...): the importer refuses them by name.
#include <string.h>

#include "format/gguf.h"
#include "format/lmp_types.h"
#include "format/qtypes.h"

typedef struct ggml_type_row {
    uint32_t type;
    const char *name;
    int64_t block_size;
    size_t type_size;
} ggml_type_row;

// Every type ggml has defined (retired values 4, 5, 31-33, 36-38 omitted). Sizes from ggml-common.h.
static const ggml_type_row TYPES[] = {
    {0, "f32", 1, 4},          {1, "f16", 1, 2},          {2, "q4_0", 32, 18},      {3, "q4_1", 32, 20},
    {6, "q5_0", 32, 22},       {7, "q5_1", 32, 24},       {8, "q8_0", 32, 34},      {9, "q8_1", 32, 36},
    {10, "q2_K", 256, 84},     {11, "q3_K", 256, 110},    {12, "q4_K", 256, 144},   {13, "q5_K", 256, 176},
    {14, "q6_K", 256, 210},    {15, "q8_K", 256, 292},    {16, "iq2_xxs", 256, 66}, {17, "iq2_xs", 256, 74},
    {18, "iq3_xxs", 256, 98},  {19, "iq1_s", 256, 50},    {20, "iq4_nl", 32, 18},   {21, "iq3_s", 256, 110},
    {22, "iq2_s", 256, 82},    {23, "iq4_xs", 256, 136},  {24, "i8", 1, 1},         {25, "i16", 1, 2},
    {26, "i32", 1, 4},         {27, "i64", 1, 8},         {28, "f64", 1, 8},        {29, "iq1_m", 256, 56},
    {30, "bf16", 1, 2},        {34, "tq1_0", 256, 54},    {35, "tq2_0", 256, 66},   {39, "mxfp4", 32, 17},
    {40, "nvfp4", 64, 36},     {41, "q1_0", 128, 18},
};

static const ggml_type_row *type_row(uint32_t type) {
    for (size_t i = 0; i < sizeof TYPES / sizeof TYPES[0]; i++)
        if (TYPES[i].type == type) return &TYPES[i];
    return NULL;
}

const char *lmp_ggml_type_name(uint32_t type) {
    const ggml_type_row *r = type_row(type);
    return r ? r->name : NULL;
}

int lmp_ggml_type_geometry(uint32_t type, int64_t *block_size, size_t *type_size) {
    const ggml_type_row *r = type_row(type);
    if (!r) return -1;
    if (block_size) *block_size = r->block_size;
    if (type_size) *type_size = r->type_size;
    return 0;
}

int lmp_ggml_can_dequantize(uint32_t type) {
    switch (type) {
    case LMP_GGML_F32: case LMP_GGML_F16: case LMP_GGML_BF16: case LMP_GGML_Q8_0: case LMP_GGML_Q4_0:
    case LMP_GGML_Q4_1: case LMP_GGML_Q4_K: case LMP_GGML_Q5_K: case LMP_GGML_Q6_K: case LMP_GGML_IQ4_NL: return 1;
    default: return 0;
    }
}

static float half_at(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return lmp_fp16_to_f32(h);
}

// Q8_0 (34 bytes / 32): f16 d; i8 qs[32]. x[j] = d * qs[j].
static void deq_q8_0(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 34, y += 32) {
        float d = half_at(b);
        for (int j = 0; j < 32; j++) y[j] = d * (float)(int8_t)b[2 + j];
    }
}

// Q4_0 (18 bytes / 32): f16 d; u8 qs[16]. Low nibbles are elements 0..15, high nibbles 16..31;
// x = d * (q - 8).
static void deq_q4_0(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 18, y += 32) {
        float d = half_at(b);
        for (int j = 0; j < 16; j++) {
            y[j] = (float)((b[2 + j] & 15) - 8) * d;
            y[j + 16] = (float)((b[2 + j] >> 4) - 8) * d;
        }
    }
}

// Q4_1 (20 bytes / 32): f16 d; f16 m; u8 qs[16], nibbles as Q4_0; x = d * q + m.
static void deq_q4_1(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 20, y += 32) {
        float d = half_at(b), m = half_at(b + 2);
        for (int j = 0; j < 16; j++) {
            y[j] = (float)(b[4 + j] & 15) * d + m;
            y[j + 16] = (float)(b[4 + j] >> 4) * d + m;
        }
    }
}

// Q4_K, Q5_K, Q6_K and IQ4_NL are our q4_K, q5_K, q6_K and iq4_nl byte for byte: their to_float
// (format/qtypes_k.c) does ggml's operations in ggml's order.
static void deq_ours(lmp_dtype t, const uint8_t *b, float *y, int64_t n) { lmp_type_get(t)->to_float(b, y, n); }

lmp_status lmp_gguf_dequantize(uint32_t type, const void *src, float *dst, int64_t n, lmp_error *err) {
    const ggml_type_row *r = type_row(type);
    if (!r) return lmp_err(err, LMP_E_UNSUPPORTED, "GGUF: unknown tensor type %u", type);
    if (!lmp_ggml_can_dequantize(type))
        return lmp_err(err, LMP_E_UNSUPPORTED, "GGUF: dequantizing type %s (%u) is not supported", r->name, type);
    if (n < 0 || n % r->block_size)
        return lmp_err(err, LMP_E_ARG, "GGUF: %lld elements is not a whole number of %s blocks (%lld)", (long long)n,
                       r->name, (long long)r->block_size);
    if (n == 0) return LMP_OK;
    if (!src || !dst) return lmp_err(err, LMP_E_ARG, "GGUF: NULL buffer");
    const uint8_t *b = src;
    int64_t nb = n / r->block_size;
    switch (type) {
    case LMP_GGML_F32: memcpy(dst, src, (size_t)n * 4); break;
    case LMP_GGML_F16:
        for (int64_t i = 0; i < n; i++) dst[i] = half_at(b + 2 * i);
        break;
    case LMP_GGML_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, b + 2 * i, 2);
            dst[i] = lmp_bf16_to_f32(h);
        }
        break;
    case LMP_GGML_Q8_0: deq_q8_0(b, dst, nb); break;
    case LMP_GGML_Q4_0: deq_q4_0(b, dst, nb); break;
    case LMP_GGML_Q4_1: deq_q4_1(b, dst, nb); break;
    case LMP_GGML_Q4_K: deq_ours(LMP_DTYPE_Q4_K, b, dst, n); break;
    case LMP_GGML_Q5_K: deq_ours(LMP_DTYPE_Q5_K, b, dst, n); break;
    case LMP_GGML_Q6_K: deq_ours(LMP_DTYPE_Q6_K, b, dst, n); break;
    case LMP_GGML_IQ4_NL: deq_ours(LMP_DTYPE_IQ4_NL, b, dst, n); break;
    default: break;
    }
    return LMP_OK;
}
