// qtypes_k.c - reference codecs and weighted scale searches of the super-block types q4_K, q5_K, q6_K
// (bit-identical layouts to ggml's Q4_K, Q5_K, Q6_K) and of the non-linear iq4_nl (= ggml IQ4_NL).
//
// to_float does ggml's float operations in ggml's order (so GGUF files of these types import without
// loss and gguf-py's dequantization agrees bit for bit); from_float_ref is plain round to nearest with
// the scales from each sub-block's range (docs/format.md says exactly how); vec_dot_ref multiplies with
// q8_a activations (blocks of 32: one per q4_K/q5_K sub-block, two q6_K sub-blocks per activation block).
// lmp_quantize_block_k_weighted is the scale search (quantize --method search / imatrix): per sub-block a
// grid of candidate scales with a weighted least-squares re-fit, then a weighted search for the super-block
// scales that quantize the sub-block scales, then the codes for the stored scales; never worse than
// from_float_ref under the weighted error. The ideas are ggml's (make_qkx2_quants, make_qx_quants,
// make_qp_quants); the code is our own. It does not hold the SIMD kernels (runtime/kernels_kq*.c).
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "format/qtypes.h"
#include "format/qtypes_internal.h"

static const int8_t IQ4_NL_VALUES[16] = LMP_IQ4_NL_VALUES_INIT;

// round(v) clamped to [lo, hi]; NaN gives lo.
static inline int kq_round(float v, int lo, int hi) {
    if (!(v >= (float)lo)) return lo;
    if (v >= (float)hi) return hi;
    return (int)roundf(v);
}

// ---- q4_K / q5_K: 8 sub-blocks of 32, 6-bit scale and min ----

static void k4_get_scale_min(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

static void k4_set_scales(uint8_t *q, const uint8_t *sc, const uint8_t *m) {
    memset(q, 0, 12);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            q[j] = sc[j];
            q[j + 4] = m[j];
        } else {
            q[j + 4] = (uint8_t)((sc[j] & 0xF) | ((m[j] & 0xF) << 4));
            q[j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
            q[j] |= (uint8_t)((m[j] >> 4) << 6);
        }
    }
}

// Element codes (0..15 or 0..31) of one q4_K / q5_K block, in element order.
static void k45_codes(const uint8_t *qs, const uint8_t *qh, uint8_t *q) {
    for (int g = 0; g < 4; g++)
        for (int l = 0; l < 32; l++) {
            q[64 * g + l] = qs[32 * g + l] & 0xF;
            q[64 * g + 32 + l] = qs[32 * g + l] >> 4;
        }
    if (qh)
        for (int j = 0; j < 8; j++)
            for (int l = 0; l < 32; l++) q[32 * j + l] |= (uint8_t)(((qh[l] >> j) & 1) << 4);
}

static void k45_pack(const uint8_t *q, uint8_t *qs, uint8_t *qh) {
    for (int g = 0; g < 4; g++)
        for (int l = 0; l < 32; l++) qs[32 * g + l] = (uint8_t)((q[64 * g + l] & 0xF) | ((q[64 * g + 32 + l] & 0xF) << 4));
    if (qh) {
        memset(qh, 0, 32);
        for (int j = 0; j < 8; j++)
            for (int l = 0; l < 32; l++) qh[l] |= (uint8_t)(((q[32 * j + l] >> 4) & 1) << j);
    }
}

// A block view shared by q4_K and q5_K (qh NULL for q4_K).
typedef struct {
    lmp_fp16 *d, *dmin;
    uint8_t *scales, *qh, *qs;
} k45_view;

static k45_view k45_at(void *blk, int bits) {
    k45_view v;
    if (bits == 4) {
        lmp_block_q4_K *b = blk;
        v = (k45_view){&b->d, &b->dmin, b->scales, NULL, b->qs};
    } else {
        lmp_block_q5_K *b = blk;
        v = (k45_view){&b->d, &b->dmin, b->scales, b->qh, b->qs};
    }
    return v;
}

static void k45_block_to_float(const void *blk, float *y, int bits) {
    k45_view v = k45_at((void *)blk, bits);
    uint8_t q[LMP_QK_K];
    k45_codes(v.qs, v.qh, q);
    const float d = lmp_fp16_to_f32(*v.d), dmin = lmp_fp16_to_f32(*v.dmin);
    for (int j = 0; j < 8; j++) {
        int sc, m;
        k4_get_scale_min(j, v.scales, &sc, &m);
        const float d1 = d * (float)sc, m1 = dmin * (float)m;
        for (int l = 0; l < 32; l++) y[32 * j + l] = d1 * (float)q[32 * j + l] - m1;
    }
}

// Stores the quantized scales (d, dmin, sc[8], m[8]) and the codes of x nearest under them.
static void k45_store(const float *x, void *blk, int bits, lmp_fp16 d16, lmp_fp16 dm16, const uint8_t *sc,
                      const uint8_t *m) {
    k45_view v = k45_at(blk, bits);
    const int nmax = (1 << bits) - 1;
    *v.d = d16;
    *v.dmin = dm16;
    k4_set_scales(v.scales, sc, m);
    const float d = lmp_fp16_to_f32(d16), dmin = lmp_fp16_to_f32(dm16);
    uint8_t q[LMP_QK_K];
    for (int j = 0; j < 8; j++) {
        const float d1 = d * (float)sc[j], m1 = dmin * (float)m[j];
        for (int l = 0; l < 32; l++)
            q[32 * j + l] = (uint8_t)(d1 > 0.0f ? kq_round((x[32 * j + l] + m1) / d1, 0, nmax) : 0);
    }
    k45_pack(q, v.qs, v.qh);
}

// 6-bit codes of the sub-block values v[8] (all >= 0) under the scale of the largest: round to nearest.
static float k_scales_rtn(const float *v, uint8_t *out) {
    float mx = 0.0f;
    for (int j = 0; j < 8; j++) mx = fmaxf(mx, v[j]);
    const float id = mx > 0.0f ? 63.0f / mx : 0.0f;
    for (int j = 0; j < 8; j++) out[j] = (uint8_t)kq_round(v[j] * id, 0, 63);
    return mx / 63.0f;
}

// Round to nearest: sub-block j has scale (max - min) / nmax and min = min(x, 0) (the stored minimum
// is subtracted, so it is never negative), both quantized to 6 bits under d = max scale / 63 and
// dmin = max min / 63.
static void k45_block_rtn(const float *x, void *blk, int bits) {
    const int nmax = (1 << bits) - 1;
    float scale[8], mins[8];
    for (int j = 0; j < 8; j++) {
        float mn = 0.0f, mx = -FLT_MAX;
        for (int l = 0; l < 32; l++) {
            float v = x[32 * j + l];
            if (v < mn) mn = v;
            if (v > mx) mx = v;
        }
        scale[j] = mx > mn ? (mx - mn) / (float)nmax : 0.0f;
        mins[j] = -mn;
        if (!isfinite(scale[j]) || !isfinite(mins[j])) scale[j] = mins[j] = 0.0f;
    }
    uint8_t sc[8], m[8];
    float d = k_scales_rtn(scale, sc), dmin = k_scales_rtn(mins, m);
    k45_store(x, blk, bits, lmp_f32_to_fp16(d), lmp_f32_to_fp16(dmin), sc, m);
}

void lmp_q4_K_to_float(const void *src, float *dst, int64_t n) {
    for (int64_t b = 0; b < n / LMP_QK_K; b++) k45_block_to_float((const lmp_block_q4_K *)src + b, dst + b * LMP_QK_K, 4);
}
void lmp_q5_K_to_float(const void *src, float *dst, int64_t n) {
    for (int64_t b = 0; b < n / LMP_QK_K; b++) k45_block_to_float((const lmp_block_q5_K *)src + b, dst + b * LMP_QK_K, 5);
}
void lmp_q4_K_from_float(const float *src, void *dst, int64_t n) {
    for (int64_t b = 0; b < n / LMP_QK_K; b++) k45_block_rtn(src + b * LMP_QK_K, (lmp_block_q4_K *)dst + b, 4);
}
void lmp_q5_K_from_float(const float *src, void *dst, int64_t n) {
    for (int64_t b = 0; b < n / LMP_QK_K; b++) k45_block_rtn(src + b * LMP_QK_K, (lmp_block_q5_K *)dst + b, 5);
}

// Against q8_a: activation block k = 8 * super-block + j pairs with sub-block j; per block
// (d sc_j dx) isum - (dmin m_j) s, one float sum.
static void k45_vec_dot(int64_t n, float *s, const void *w, const void *xv, int bits) {
    const lmp_block_q8_a *x = xv;
    const size_t bb = bits == 4 ? sizeof(lmp_block_q4_K) : sizeof(lmp_block_q5_K);
    float sum = 0.0f;
    uint8_t q[LMP_QK_K];
    for (int64_t b = 0; b < n / LMP_QK_K; b++) {
        k45_view v = k45_at((uint8_t *)w + (size_t)b * bb, bits);
        k45_codes(v.qs, v.qh, q);
        const float d = lmp_fp16_to_f32(*v.d), dmin = lmp_fp16_to_f32(*v.dmin);
        for (int j = 0; j < 8; j++) {
            const lmp_block_q8_a *xb = &x[b * 8 + j];
            int sc, m;
            k4_get_scale_min(j, v.scales, &sc, &m);
            int32_t isum = 0;
            for (int l = 0; l < 32; l++) isum += (int32_t)q[32 * j + l] * (int32_t)xb->qs[l];
            const float d1 = d * (float)sc, m1 = dmin * (float)m;
            sum += (d1 * xb->d) * (float)isum - m1 * xb->s;
        }
    }
    *s = sum;
}
void lmp_q4_K_vec_dot(int64_t n, float *s, const void *w, const void *x) { k45_vec_dot(n, s, w, x, 4); }
void lmp_q5_K_vec_dot(int64_t n, float *s, const void *w, const void *x) { k45_vec_dot(n, s, w, x, 5); }

// ---- q6_K: 16 sub-blocks of 16, int8 scales ----

static void k6_codes(const lmp_block_q6_K *b, uint8_t *q) {
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 32; l++) {
            const uint8_t l0 = b->ql[64 * h + l], l1 = b->ql[64 * h + 32 + l], hb = b->qh[32 * h + l];
            q[128 * h + l] = (uint8_t)((l0 & 0xF) | ((hb & 3) << 4));
            q[128 * h + 32 + l] = (uint8_t)((l1 & 0xF) | (((hb >> 2) & 3) << 4));
            q[128 * h + 64 + l] = (uint8_t)((l0 >> 4) | (((hb >> 4) & 3) << 4));
            q[128 * h + 96 + l] = (uint8_t)((l1 >> 4) | (((hb >> 6) & 3) << 4));
        }
}

static void k6_pack(const uint8_t *q, lmp_block_q6_K *b) {
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 32; l++) {
            const uint8_t q0 = q[128 * h + l], q1 = q[128 * h + 32 + l], q2 = q[128 * h + 64 + l], q3 = q[128 * h + 96 + l];
            b->ql[64 * h + l] = (uint8_t)((q0 & 0xF) | ((q2 & 0xF) << 4));
            b->ql[64 * h + 32 + l] = (uint8_t)((q1 & 0xF) | ((q3 & 0xF) << 4));
            b->qh[32 * h + l] = (uint8_t)((q0 >> 4) | ((q1 >> 4) << 2) | ((q2 >> 4) << 4) | ((q3 >> 4) << 6));
        }
}

void lmp_q6_K_to_float(const void *src, float *dst, int64_t n) {
    const lmp_block_q6_K *x = src;
    uint8_t q[LMP_QK_K];
    for (int64_t b = 0; b < n / LMP_QK_K; b++) {
        k6_codes(&x[b], q);
        const float d = lmp_fp16_to_f32(x[b].d);
        for (int i = 0; i < LMP_QK_K; i++) dst[b * LMP_QK_K + i] = d * (float)x[b].scales[i / 16] * (float)((int)q[i] - 32);
    }
}

// Stores d, the 16 scales and the codes of x nearest under them.
static void k6_store(const float *x, lmp_block_q6_K *b, lmp_fp16 d16, const int8_t *sc) {
    const float d = lmp_fp16_to_f32(d16);
    uint8_t q[LMP_QK_K];
    b->d = d16;
    for (int j = 0; j < 16; j++) {
        b->scales[j] = sc[j];
        const float d1 = d * (float)sc[j];
        for (int l = 0; l < 16; l++) q[16 * j + l] = (uint8_t)(d1 != 0.0f ? kq_round(x[16 * j + l] / d1, -32, 31) + 32 : 32);
    }
    k6_pack(q, b);
}

// Signed value of largest magnitude (the first one), 0 for an all-zero or non-finite input.
static float signed_max(const float *x, int n) {
    float amax = 0.0f, max = 0.0f;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    return isfinite(max) ? max : 0.0f;
}

// Round to nearest: sub-block scale = its signed maximum / -32 (so that element maps to code -32), the 16
// scales quantized to int8 under d = (the scale of largest magnitude) / -128.
static void k6_block_rtn(const float *x, lmp_block_q6_K *b) {
    float scale[16];
    for (int j = 0; j < 16; j++) scale[j] = signed_max(x + 16 * j, 16) / -32.0f;
    const float smax = signed_max(scale, 16);
    int8_t sc[16];
    const float id = smax != 0.0f ? -128.0f / smax : 0.0f;
    for (int j = 0; j < 16; j++) sc[j] = (int8_t)kq_round(scale[j] * id, -128, 127);
    k6_store(x, b, lmp_f32_to_fp16(smax / -128.0f), sc);
}

void lmp_q6_K_from_float(const float *src, void *dst, int64_t n) {
    for (int64_t b = 0; b < n / LMP_QK_K; b++) k6_block_rtn(src + b * LMP_QK_K, (lmp_block_q6_K *)dst + b);
}

// Against q8_a: activation block k of a super-block covers sub-blocks 2k and 2k + 1; per block
// (d dx) (sc_2k isum_a + sc_2k+1 isum_b), codes q - 32, one float sum.
void lmp_q6_K_vec_dot(int64_t n, float *s, const void *w, const void *xv) {
    const lmp_block_q6_K *a = w;
    const lmp_block_q8_a *x = xv;
    float sum = 0.0f;
    uint8_t q[LMP_QK_K];
    for (int64_t b = 0; b < n / LMP_QK_K; b++) {
        k6_codes(&a[b], q);
        const float d = lmp_fp16_to_f32(a[b].d);
        for (int k = 0; k < 8; k++) {
            const lmp_block_q8_a *xb = &x[b * 8 + k];
            int32_t ia = 0, ib = 0;
            for (int l = 0; l < 16; l++) {
                ia += ((int32_t)q[32 * k + l] - 32) * (int32_t)xb->qs[l];
                ib += ((int32_t)q[32 * k + 16 + l] - 32) * (int32_t)xb->qs[16 + l];
            }
            const int32_t isum = (int32_t)a[b].scales[2 * k] * ia + (int32_t)a[b].scales[2 * k + 1] * ib;
            sum += (d * xb->d) * (float)isum;
        }
    }
    *s = sum;
}

// ---- iq4_nl: codebook of 16 values, group 32 ----

// Index of the codebook value nearest to v (values sorted increasingly; ties to the lower index).
static int iq4_nearest(float v) {
    if (!(v > (float)IQ4_NL_VALUES[0])) return 0;  // also NaN
    if (v >= (float)IQ4_NL_VALUES[15]) return 15;
    int lo = 0, hi = 15;
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (v < (float)IQ4_NL_VALUES[mid]) hi = mid;
        else lo = mid;
    }
    return v - (float)IQ4_NL_VALUES[lo] <= (float)IQ4_NL_VALUES[hi] - v ? lo : hi;
}

static void iq4_store(const float *x, lmp_block_iq4_nl *b, lmp_fp16 d16) {
    const float d = lmp_fp16_to_f32(d16);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b->d = d16;
    for (int j = 0; j < 16; j++) {
        int lo = d != 0.0f ? iq4_nearest(x[j] * id) : 0, hi = d != 0.0f ? iq4_nearest(x[j + 16] * id) : 0;
        b->qs[j] = (uint8_t)(lo | (hi << 4));
    }
}

void lmp_iq4_nl_to_float(const void *src, float *dst, int64_t n) {
    const lmp_block_iq4_nl *x = src;
    for (int64_t b = 0; b < n / LMP_QK_IQ4_NL; b++) {
        const float d = lmp_fp16_to_f32(x[b].d);
        for (int j = 0; j < 16; j++) {
            dst[b * 32 + j] = d * (float)IQ4_NL_VALUES[x[b].qs[j] & 0xF];
            dst[b * 32 + j + 16] = d * (float)IQ4_NL_VALUES[x[b].qs[j] >> 4];
        }
    }
}

// Round to nearest: d = signed maximum / -127 (the largest element maps to the codebook's -127), each
// element to its nearest codebook value under the stored d.
void lmp_iq4_nl_from_float(const float *src, void *dst, int64_t n) {
    for (int64_t b = 0; b < n / LMP_QK_IQ4_NL; b++)
        iq4_store(src + b * 32, (lmp_block_iq4_nl *)dst + b, lmp_f32_to_fp16(signed_max(src + b * 32, 32) / -127.0f));
}

void lmp_iq4_nl_vec_dot(int64_t n, float *s, const void *w, const void *xv) {
    const lmp_block_iq4_nl *a = w;
    const lmp_block_q8_a *x = xv;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / LMP_QK_IQ4_NL; b++) {
        int32_t isum = 0;
        for (int j = 0; j < 16; j++) {
            isum += (int32_t)IQ4_NL_VALUES[a[b].qs[j] & 0xF] * (int32_t)x[b].qs[j];
            isum += (int32_t)IQ4_NL_VALUES[a[b].qs[j] >> 4] * (int32_t)x[b].qs[j + 16];
        }
        sum += (lmp_fp16_to_f32(a[b].d) * x[b].d) * (float)isum;
    }
    *s = sum;
}

// ---- weighted scale search ----

static double werr(const float *x, const float *y, const float *w, int n) {
    double e = 0.0;
    for (int i = 0; i < n; i++) {
        double d = (double)x[i] - (double)y[i];
        e += (double)w[i] * d * d;
    }
    return e;
}

// round(v) for |v| < 2^22 by the float trick (no libm call; ties either way, harmless: every candidate is
// judged by its error), clamped to [lo, hi]; NaN gives lo.
static inline int fast_round(float v, int lo, int hi) {
    if (!(v >= (float)lo)) return lo;
    if (v >= (float)hi) return hi;
    float f = v + 12582912.0f;
    int32_t i;
    memcpy(&i, &f, 4);
    return (i & 0x007fffff) - 0x00400000;
}

// Best (a, b) with x ~ a * l - b, a > 0, b >= 0, l in 0..nmax, for the weights w of n elements: a grid of
// inverse scales over the range; for each, the codes at that scale and the weighted least-squares (a, b)
// for those codes, judged by the closed-form error of the fit (no second pass). Returns the error.
static float fit_scale_min(const float *x, const float *w, int n, int nmax, float *a_out, float *b_out) {
    float mn = 0.0f, mx = -FLT_MAX, sw = 0.0f, sx = 0.0f, sxx = 0.0f;
    for (int i = 0; i < n; i++) {
        if (x[i] < mn) mn = x[i];
        if (x[i] > mx) mx = x[i];
        sw += w[i];
        sx += w[i] * x[i];
        sxx += w[i] * x[i] * x[i];
    }
    *a_out = 0.0f;
    *b_out = -mn;
    if (!(mx > mn) || !isfinite(mx - mn) || !isfinite(sxx)) return INFINITY;  // constant (or bad) block
    float best = INFINITY;
    for (int is = 0; is <= 16; is++) {
        const float iscale = ((float)nmax - 0.8f + 0.1f * (float)is) / (mx - mn);
        float sl = 0, sll = 0, slx = 0;
        for (int i = 0; i < n; i++) {
            const float l = (float)fast_round(iscale * (x[i] - mn), 0, nmax), wl = w[i] * l;
            sl += wl;
            sll += wl * l;
            slx += wl * x[i];
        }
        // x ~ a l + c (c = -b <= 0): weighted least squares, or c = 0 when the fit puts c above 0.
        const float det = sw * sll - sl * sl;
        if (!(det > 0.0f)) continue;
        float a = (sw * slx - sl * sx) / det, c = (sll * sx - sl * slx) / det;
        if (c > 0.0f) {
            c = 0.0f;
            a = slx / sll;
        }
        if (!(a > 0.0f) || !isfinite(a) || !isfinite(c)) continue;
        // sum w (x - a l - c)^2 expanded in the sums
        const float e = sxx - 2.0f * a * slx - 2.0f * c * sx + a * a * sll + 2.0f * a * c * sl + c * c * sw;
        if (e < best) {
            best = e;
            *a_out = a;
            *b_out = -c;
        }
    }
    return best;
}

// 6-bit codes (0..63) for the 8 values v[j] >= 0 with importance iw[j]: the super-scale d minimising
// sum iw (v - d c)^2 over a grid around max / 63 with a least-squares re-fit. Returns d.
static float fit_scales6(const float *v, const float *iw, uint8_t *c) {
    float mx = 0.0f;
    for (int j = 0; j < 8; j++) mx = fmaxf(mx, v[j]);
    if (!(mx > 0.0f)) {
        memset(c, 0, 8);
        return 0.0f;
    }
    float best = INFINITY, bestd = mx / 63.0f;
    uint8_t tmp[8];
    for (int is = -8; is <= 8; is++) {
        float d = mx / (63.0f + 0.25f * (float)is);
        for (int pass = 0; pass < 2; pass++) {
            double sxc = 0, scc = 0;
            float e = 0.0f;
            for (int j = 0; j < 8; j++) {
                tmp[j] = (uint8_t)kq_round(v[j] / d, 0, 63);
                float diff = v[j] - d * (float)tmp[j];
                e += iw[j] * diff * diff;
                sxc += (double)iw[j] * v[j] * tmp[j];
                scc += (double)iw[j] * tmp[j] * tmp[j];
            }
            if (e < best) {
                best = e;
                bestd = d;
                memcpy(c, tmp, 8);
            }
            if (!(scc > 0.0)) break;
            d = (float)(sxc / scc);  // re-fit, then evaluate once more
            if (!(d > 0.0f)) break;
        }
    }
    return bestd;
}

static void k45_block_weighted(const float *x, void *out, const float *w, int bits) {
    const int nmax = (1 << bits) - 1;
    const size_t bb = bits == 4 ? sizeof(lmp_block_q4_K) : sizeof(lmp_block_q5_K);
    float a[8], b[8], iwa[8], iwb[8];
    for (int j = 0; j < 8; j++) {
        fit_scale_min(x + 32 * j, w + 32 * j, 32, nmax, &a[j], &b[j]);
        // Importance of a sub-block's scale and min: the error a unit change causes, sum w l^2 ~ sum w x^2
        // for the scale and sum w for the min (up to the common factor).
        double swl = 0, sw = 0;
        for (int l = 0; l < 32; l++) {
            sw += w[32 * j + l];
            swl += (double)w[32 * j + l] * (x[32 * j + l] + b[j]) * (x[32 * j + l] + b[j]);
        }
        iwa[j] = (float)(a[j] > 0.0f ? swl / ((double)a[j] * a[j]) : sw);
        iwb[j] = (float)sw;
        if (!isfinite(iwa[j])) iwa[j] = 1.0f;
        if (!isfinite(iwb[j])) iwb[j] = 1.0f;
    }
    uint8_t sc[8], m[8];
    float d = fit_scales6(a, iwa, sc), dmin = fit_scales6(b, iwb, m);
    uint8_t cand[sizeof(lmp_block_q5_K)], rtn[sizeof(lmp_block_q5_K)];
    float y[LMP_QK_K];
    k45_store(x, cand, bits, lmp_f32_to_fp16(d), lmp_f32_to_fp16(dmin), sc, m);
    k45_block_rtn(x, rtn, bits);
    k45_block_to_float(cand, y, bits);
    double ec = werr(x, y, w, LMP_QK_K);
    k45_block_to_float(rtn, y, bits);
    double er = werr(x, y, w, LMP_QK_K);
    memcpy(out, ec < er ? cand : rtn, bb);
}

// Best scale a for x ~ a l, l in [-nneg, npos]: a grid around max / -nneg; for each, the codes at that scale
// and their least-squares scale, judged by the closed-form error sum w x^2 - (sum w x l)^2 / sum w l^2.
static float fit_scale_sym(const float *x, const float *w, int n, int nneg, int npos) {
    const float max = signed_max(x, n);
    if (max == 0.0f) return 0.0f;
    float best = INFINITY, besta = max / -(float)nneg;
    for (int is = -6; is <= 6; is++) {
        const float iscale = -((float)nneg + 0.15f * (float)is) / max;
        float sxl = 0, sll = 0;
        for (int i = 0; i < n; i++) {
            const float l = (float)fast_round(iscale * x[i], -nneg, npos), wl = w[i] * l;
            sxl += wl * x[i];
            sll += wl * l;
        }
        if (!(sll > 0.0f)) continue;
        const float e = -sxl * sxl / sll;  // + sum w x^2, the same for every candidate
        if (e < best && isfinite(sxl / sll) && sxl / sll != 0.0f) {
            best = e;
            besta = sxl / sll;
        }
    }
    return besta;
}

static void k6_block_weighted(const float *x, lmp_block_q6_K *out, const float *w) {
    float a[16], iw[16];
    for (int j = 0; j < 16; j++) {
        a[j] = fit_scale_sym(x + 16 * j, w + 16 * j, 16, 32, 31);
        double s = 0;
        for (int l = 0; l < 16; l++) s += (double)w[16 * j + l] * x[16 * j + l] * x[16 * j + l];
        iw[j] = (float)(a[j] != 0.0f ? s / ((double)a[j] * a[j]) : 1.0);
        if (!isfinite(iw[j])) iw[j] = 1.0f;
    }
    // int8 scales under d: a grid around (scale of largest magnitude) / -128, weighted, with a re-fit.
    const float smax = signed_max(a, 16);
    lmp_block_q6_K cand, rtn;
    float y[LMP_QK_K];
    k6_block_rtn(x, &rtn);
    *out = rtn;
    if (smax == 0.0f) return;
    int8_t sc[16], tmp[16];
    float best = INFINITY, bestd = smax / -128.0f;
    for (int is = -8; is <= 8; is++) {
        float d = smax / -(128.0f + 0.5f * (float)is);
        for (int pass = 0; pass < 2; pass++) {
            double sxc = 0, scc = 0;
            float e = 0.0f;
            for (int j = 0; j < 16; j++) {
                tmp[j] = (int8_t)kq_round(a[j] / d, -128, 127);
                float diff = a[j] - d * (float)tmp[j];
                e += iw[j] * diff * diff;
                sxc += (double)iw[j] * a[j] * tmp[j];
                scc += (double)iw[j] * tmp[j] * tmp[j];
            }
            if (e < best) {
                best = e;
                bestd = d;
                memcpy(sc, tmp, 16);
            }
            if (!(scc > 0.0)) break;
            d = (float)(sxc / scc);
            if (!(fabsf(d) > 0.0f) || !isfinite(d)) break;
        }
    }
    k6_store(x, &cand, lmp_f32_to_fp16(bestd), sc);
    lmp_q6_K_to_float(&cand, y, LMP_QK_K);
    double ec = werr(x, y, w, LMP_QK_K);
    lmp_q6_K_to_float(&rtn, y, LMP_QK_K);
    if (ec < werr(x, y, w, LMP_QK_K)) *out = cand;
}

// Nearest codebook index by a table over [-128, 128) in steps of 1/2: every midpoint between two codebook
// values is a multiple of 1/2, so floor(2 v) decides (up to ties, which may go either way).
static uint8_t g_iq4_lut[512];
static pthread_once_t g_iq4_once = PTHREAD_ONCE_INIT;

static void iq4_lut_init(void) {
    for (int i = 0; i < 512; i++) g_iq4_lut[i] = (uint8_t)iq4_nearest(((float)i - 256.0f) * 0.5f + 0.25f);
}

static inline int iq4_fast_nearest(float v) {
    if (!(v > -128.0f)) return 0;
    if (v >= 127.5f) return 15;
    return g_iq4_lut[(int)floorf(2.0f * v) + 256];
}

// iq4_nl: candidate scales max / (v0 + t) around the codebook's end value v0 = -127; for each, the codes at
// that scale and their least-squares scale, judged by the closed-form error; the best then stored with the
// codes for its fp16 scale and compared with round to nearest.
static void iq4_block_weighted(const float *x, lmp_block_iq4_nl *out, const float *w) {
    lmp_block_iq4_nl cand, rtn;
    float y[32];
    const float max = signed_max(x, 32);
    iq4_store(x, &rtn, lmp_f32_to_fp16(max / -127.0f));
    *out = rtn;
    if (max == 0.0f) return;
    pthread_once(&g_iq4_once, iq4_lut_init);
    float best = INFINITY, bestd = max / -127.0f;
    for (int it = -8; it <= 8; it++) {
        const float id = (-127.0f + (float)it) / max;
        float sxv = 0, svv = 0;
        for (int j = 0; j < 32; j++) {
            const float v = (float)IQ4_NL_VALUES[iq4_fast_nearest(x[j] * id)], wv = w[j] * v;
            sxv += wv * x[j];
            svv += wv * v;
        }
        if (!(svv > 0.0f)) continue;
        const float e = -sxv * sxv / svv;
        if (e < best && isfinite(sxv / svv) && sxv / svv != 0.0f) {
            best = e;
            bestd = sxv / svv;
        }
    }
    lmp_fp16 d16 = lmp_f32_to_fp16(bestd);
    if (!isfinite(lmp_fp16_to_f32(d16)) || lmp_fp16_to_f32(d16) == 0.0f) return;
    iq4_store(x, &cand, d16);
    lmp_iq4_nl_to_float(&cand, y, 32);
    double ec = werr(x, y, w, 32);
    lmp_iq4_nl_to_float(&rtn, y, 32);
    if (ec < werr(x, y, w, 32)) *out = cand;
}

int lmp_quantize_block_k_weighted(lmp_dtype t, const float *x, void *dst, const float *w) {
    switch (t) {
    case LMP_DTYPE_Q4_K: k45_block_weighted(x, dst, w, 4); return 0;
    case LMP_DTYPE_Q5_K: k45_block_weighted(x, dst, w, 5); return 0;
    case LMP_DTYPE_Q6_K: k6_block_weighted(x, dst, w); return 0;
    case LMP_DTYPE_IQ4_NL: iq4_block_weighted(x, dst, w); return 0;
    default: return -1;
    }
}

// ---- one element under a block's stored scales (GPTQ's column sweep) ----

float lmp_block_quantize_elem(lmp_dtype t, void *blk, int j, float x) {
    switch (t) {
    case LMP_DTYPE_Q4_K:
    case LMP_DTYPE_Q5_K: {
        const int bits = t == LMP_DTYPE_Q4_K ? 4 : 5, nmax = (1 << bits) - 1, s = j / 32, l = j % 32;
        k45_view v = k45_at(blk, bits);
        int sc, m;
        k4_get_scale_min(s, v.scales, &sc, &m);
        const float d1 = lmp_fp16_to_f32(*v.d) * (float)sc, m1 = lmp_fp16_to_f32(*v.dmin) * (float)m;
        const int c = d1 > 0.0f ? kq_round((x + m1) / d1, 0, nmax) : 0;
        uint8_t *qb = &v.qs[32 * (s / 2) + l];
        *qb = s % 2 ? (uint8_t)((*qb & 0x0F) | ((c & 15) << 4)) : (uint8_t)((*qb & 0xF0) | (c & 15));
        if (v.qh) v.qh[l] = (uint8_t)((v.qh[l] & ~(1u << s)) | (((unsigned)c >> 4) << s));
        return d1 * (float)c - m1;
    }
    case LMP_DTYPE_Q6_K: {
        lmp_block_q6_K *b = blk;
        const float d1 = lmp_fp16_to_f32(b->d) * (float)b->scales[j / 16];
        const int c = d1 != 0.0f ? kq_round(x / d1, -32, 31) + 32 : 32;
        const int h = j / 128, s = (j % 128) / 32, l = j % 32;
        uint8_t *lo = &b->ql[64 * h + l + 32 * (s & 1)], *hi = &b->qh[32 * h + l];
        *lo = s < 2 ? (uint8_t)((*lo & 0xF0) | (c & 15)) : (uint8_t)((*lo & 0x0F) | ((c & 15) << 4));
        *hi = (uint8_t)((*hi & ~(3u << (2 * s))) | ((unsigned)(c >> 4) << (2 * s)));
        return d1 * (float)(c - 32);
    }
    case LMP_DTYPE_IQ4_NL: {
        lmp_block_iq4_nl *b = blk;
        const float d = lmp_fp16_to_f32(b->d);
        const int c = d != 0.0f ? iq4_nearest(x / d) : 0;
        uint8_t *qb = &b->qs[j % 16];
        *qb = j < 16 ? (uint8_t)((*qb & 0xF0) | c) : (uint8_t)((*qb & 0x0F) | (c << 4));
        return d * (float)IQ4_NL_VALUES[c];
    }
    default: return NAN;
    }
}
