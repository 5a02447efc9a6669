// act_blocks.h - checks for the run-time activation blocks q8_a and q16_a (docs/format.md), shared by
// tests/test_quant.c (the reference codecs) and tests/test_kernels.c (the kernel tables' quantizers).
// Header only; include after tests/test_util.h.
//
// act_fill() writes fresh random blocks of 32 of several kinds: Gaussian at scales 2^-30..2^30, ties
// (max |x| = QMAX so d = 1 and x = k + 1/2), subnormal and tiny blocks (also scales of a few subnormal
// units, where |x| / d exceeds QMAX + 1/2 and is clamped), huge blocks near FLT_MAX, all-zero
// blocks (with -0), a single nonzero element, constant blocks, equal magnitudes of both signs and exact
// integer codes. act_check() checks blocks against the values they encode with bounds derived from the
// format, not from the code: per block of 32 with amax = max |x| and QMAX = 127 (q8_a) or 32767 (q16_a)
//   * d is amax / QMAX rounded to float (the float division, correctly rounded);
//   * |q| <= QMAX; an all-zero block gives d = 0 and q = 0 (and s = 0);
//   * round to nearest: |x - d q| <= d/2 + QMAX |d - amax/QMAX| + eps |x|, the last two terms being the
//     rounding of d (q is chosen with the rounded d) and of x / d;
//   * an element of magnitude amax maps to +-QMAX with its sign (when d is a normal float);
//   * when d is a power of two, x / d is exact: a tie k + 1/2 rounds away from zero (C's roundf);
//   * q8_a: s = d * sum(q) rounded once to float (d * sum is exact in double).
#ifndef LMP_TEST_ACT_BLOCKS_H
#define LMP_TEST_ACT_BLOCKS_H

#include <float.h>

#include "format/lmp_types.h"

static inline int act_qmax(lmp_dtype A) { return A == LMP_DTYPE_Q8_A ? 127 : 32767; }
static inline size_t act_block_bytes(lmp_dtype A) {
    return A == LMP_DTYPE_Q8_A ? sizeof(lmp_block_q8_a) : sizeof(lmp_block_q16_a);
}
static inline double act_uniform_sym(void) { return 2.0 * test_rand_uniform() - 1.0; }

// Fresh random activations, n a multiple of 32; block kinds drawn at random (every kind at least once
// when n >= 32 * 11).
static void act_fill(lmp_dtype A, float *x, int64_t n) {
    const int Q = act_qmax(A);
    for (int64_t b = 0; b < n / 32; b++) {
        float *xb = x + b * 32;
        int kind = b < 11 ? (int)b : (int)(test_rand_u64() % 11);
        float sgn = test_rand_u64() & 1 ? 1.0f : -1.0f;
        switch (kind) {
        case 0:  // Gaussian, any scale
        default: {
            float sc = ldexpf(1.0f, (int)(test_rand_u64() % 61) - 30);
            for (int j = 0; j < 32; j++) xb[j] = test_rand_normal() * sc;
            break;
        }
        case 1: {  // ties: amax = Q gives d = 1 exactly, so x / d = x = k + 1/2, the extremes included
            for (int j = 0; j < 32; j++) xb[j] = (float)((int64_t)(test_rand_u64() % (uint64_t)(2 * Q - 1)) - (Q - 1)) + 0.5f;
            int p = (int)(test_rand_u64() % 32);
            xb[p] = sgn * (float)Q;
            xb[(p + 1) % 32] = 0.5f;
            xb[(p + 2) % 32] = -0.5f;
            xb[(p + 3) % 32] = (float)Q - 0.5f;
            xb[(p + 4) % 32] = 0.5f - (float)Q;
            break;
        }
        case 2:  // subnormal and tiny: d is subnormal or rounds to 0
            for (int j = 0; j < 32; j++) xb[j] = test_rand_normal() * ldexpf(1.0f, -(int)(test_rand_u64() % 25) - 126);
            break;
        case 3:  // huge: up to 0.999 FLT_MAX
            for (int j = 0; j < 32; j++) xb[j] = (float)(act_uniform_sym() * 1e37);
            xb[test_rand_u64() % 32] = sgn * 0.999f * FLT_MAX;
            break;
        case 4:  // all zero, some negative zeros
            for (int j = 0; j < 32; j++) xb[j] = test_rand_u64() & 1 ? -0.0f : 0.0f;
            break;
        case 5:  // a single nonzero
            for (int j = 0; j < 32; j++) xb[j] = 0.0f;
            xb[test_rand_u64() % 32] = test_rand_normal();
            break;
        case 6: {  // constant
            float c = test_rand_normal();
            for (int j = 0; j < 32; j++) xb[j] = c;
            break;
        }
        case 7: {  // equal magnitudes of both signs at the maximum
            for (int j = 0; j < 32; j++) xb[j] = test_rand_normal();
            float m = 10.0f + test_rand_uniform();
            int i = (int)(test_rand_u64() % 16);
            xb[i] = m;
            xb[i + 16] = -m;
            break;
        }
        case 8:  // exact codes: integers with amax = Q (d = 1, so q = x and the error is 0)
            for (int j = 0; j < 32; j++) xb[j] = (float)((int64_t)(test_rand_u64() % (uint64_t)(2 * Q + 1)) - Q);
            xb[test_rand_u64() % 32] = sgn * (float)Q;
            break;
        case 10: {  // a subnormal scale with few significant bits: d = amax / Q rounds by up to half its
                    // value, so |x| / d can exceed Q + 1/2 and must still be clamped to Q
            for (int j = 0; j < 32; j++) xb[j] = 0.0f;
            double m = 1.0 + (double)(test_rand_u64() % (uint64_t)(4 * Q));
            xb[test_rand_u64() % 32] = sgn * ldexpf((float)m, -149);
            for (int j = 0; j < 8; j++) xb[test_rand_u64() % 32] = (float)act_uniform_sym() * ldexpf((float)m, -149);
            break;
        }
        case 9: {  // ties at a power-of-two scale other than 1: d = 2^e, x = (k + 1/2) 2^e
            int e = (int)(test_rand_u64() % 41) - 20;
            for (int j = 0; j < 32; j++)
                xb[j] = ldexpf((float)((int64_t)(test_rand_u64() % (uint64_t)(2 * Q - 1)) - (Q - 1)) + 0.5f, e);
            xb[test_rand_u64() % 32] = sgn * ldexpf((float)Q, e);
            break;
        }
        }
    }
}

// Checks n activations x against their blocks q (type A); returns the number of violations, printing
// the first few with label.
static int act_check(lmp_dtype A, const float *x, const void *q, int64_t n, const char *label) {
    const int Q = act_qmax(A);
    int bad = 0;
#define ACT_BAD(...)                                                  \
    do {                                                              \
        if (bad++ < 4) {                                              \
            fprintf(stderr, "  %s block %lld: ", label, (long long)b); \
            fprintf(stderr, __VA_ARGS__);                             \
            fprintf(stderr, "\n");                                    \
        }                                                             \
    } while (0)
    for (int64_t b = 0; b < n / 32; b++) {
        const float *xb = x + b * 32;
        const uint8_t *blk = (const uint8_t *)q + (size_t)b * act_block_bytes(A);
        float d;
        memcpy(&d, blk, 4);
        int code[32];
        long long sum = 0;
        for (int j = 0; j < 32; j++) {
            if (A == LMP_DTYPE_Q8_A) code[j] = ((const lmp_block_q8_a *)blk)->qs[j];
            else code[j] = ((const lmp_block_q16_a *)blk)->qs[j];
            sum += code[j];
        }
        double amax = 0;
        for (int j = 0; j < 32; j++) amax = fmax(amax, fabs((double)xb[j]));
        // The scale: amax / Q in double (relative error < 2^-53), rounded once to float, is the correctly
        // rounded float quotient (double rounding is innocuous for a division: 53 >= 2 * 24 + 2).
        const double dt = amax / Q;
        if (d != (float)dt) ACT_BAD("d %.9g (0x%08x), amax / %d rounded to float = %.9g", d, lmp_f32_as_u32(d), Q, (float)dt);
        if (amax == 0) {
            int nz = 0;
            for (int j = 0; j < 32; j++) nz += code[j] != 0;
            if (d != 0 || nz) ACT_BAD("all-zero block: d %.9g, %d nonzero codes", d, nz);
        }
        const int pow2 = d > 0 && frexpf(d, &(int){0}) == 0.5f;
        for (int j = 0; j < 32; j++) {
            const double xv = xb[j], y = (double)d * code[j];  // exact in double
            const double bound = d / 2.0 + Q * fabs(d - dt) + FLT_EPSILON * fabs(xv);
            if (code[j] < -Q || code[j] > Q) ACT_BAD("code[%d] = %d outside [-%d, %d]", j, code[j], Q, Q);
            if (!(fabs(xv - y) <= bound))
                ACT_BAD("x[%d] = %.9g, d q = %.9g: error %.3g > bound %.3g", j, xv, y, fabs(xv - y), bound);
            if (d >= FLT_MIN && fabs(xv) == amax && code[j] != (xv > 0 ? Q : -Q))
                ACT_BAD("x[%d] = %.9g has the largest magnitude but code %d, not %+d", j, xv, code[j], xv > 0 ? Q : -Q);
            if (pow2) {
                const double r = xv / d;  // exact: d is a power of two and x / d stays normal
                if (fabs(r) <= Q && r - floor(r) == 0.5 && abs(code[j]) != (int)ceil(fabs(r)))
                    ACT_BAD("x[%d] / d = %.1f is a tie: code %d, want %d (away from zero)", j, r, code[j],
                            (int)(r > 0 ? ceil(r) : -ceil(-r)));
            }
        }
        if (A == LMP_DTYPE_Q8_A) {
            const float s = ((const lmp_block_q8_a *)blk)->s, want = (float)((double)d * (double)sum);
            if (memcmp(&s, &want, 4) && !(s == 0 && want == 0)) ACT_BAD("s %.9g, d * sum(q) = %.9g", s, want);
        }
    }
#undef ACT_BAD
    return bad;
}

#endif
