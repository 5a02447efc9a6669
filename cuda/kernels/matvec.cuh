// matvec.cuh - decode-path kernels: the device weight layout (repack from the file's blocks), the
// activation quantizers (q8_a, q16_a, bit-identical to format/qtypes.c's references), and the fused
// dequantize + matrix-vector products for every storable type of the traits table.
//
// Arithmetic is the CPU reference's (format/qtypes.c vec_dot_ref): float types multiply float32
// activations; q4 types take q8_a activations and sum (q - 8) * x (or q * x plus the minimum term) in
// exact int32 per 32-element block before scaling by d_w * d_x; q8_0 takes q16_a activations. Only the
// order of the float sums over blocks differs. It holds no batched kernels (gemm.cuh) and no policy
// on which variant to run (the backend's launch helpers below pick by shape; cuda/lab times them all).
#ifndef LMP_CUDA_MATVEC_CUH
#define LMP_CUDA_MATVEC_CUH

#include <stdlib.h>
#include <string.h>

#include "cuda/kernels/common.cuh"

// ---- repack: file blocks (raw, rows of row_bytes) -> lmp_cuda_mat layout; one thread per block ----

static __device__ __forceinline__ uint16_t lmp_rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

__global__ void lmp_repack_q8_0_kernel(const uint8_t *raw, size_t row_bytes, int64_t rows, int64_t cols,
                                       int8_t *q, __half *d) {
    const int64_t nb = cols / 32, i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= rows * nb) return;
    const int64_t r = i / nb, b = i % nb;
    const uint8_t *blk = raw + (size_t)r * row_bytes + (size_t)b * 34;
    d[i] = __ushort_as_half(lmp_rd16(blk));
    int8_t *dst = q + r * cols + b * 32;
    for (int j = 0; j < 32; j++) dst[j] = (int8_t)blk[2 + j];
}

// q4 family: a file block of G elements is {d, [m,] qs[G/2]} with q[j] = qs[j] & 15, q[j + G/2] =
// qs[j] >> 4; the device layout has one 16-byte sub-block per 32 elements (q4_0 order, common.cuh).
__global__ void lmp_repack_q4_kernel(const uint8_t *raw, size_t row_bytes, int64_t rows, int64_t cols, int G,
                                     int asym, uint8_t *q, __half *d, __half *m) {
    const int64_t nb = cols / G, i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= rows * nb) return;
    const int64_t r = i / nb, b = i % nb;
    const size_t hdr = asym ? 4 : 2, bb = hdr + (size_t)G / 2;
    const uint8_t *blk = raw + (size_t)r * row_bytes + (size_t)b * bb;
    d[i] = __ushort_as_half(lmp_rd16(blk));
    if (asym) m[i] = __ushort_as_half(lmp_rd16(blk + 2));
    const uint8_t *qs = blk + hdr;
    uint8_t *dst = q + (size_t)r * (size_t)(cols / 2) + (size_t)b * (size_t)(G / 2);
    for (int s = 0; s < G / 32; s++)      // sub-block s: elements 32s .. 32s + 31
        for (int j = 0; j < 16; j++) {
            int e0 = 32 * s + j, e1 = e0 + 16;  // element indices within the file block
            int q0 = e0 < G / 2 ? qs[e0] & 15 : qs[e0 - G / 2] >> 4;
            int q1 = e1 < G / 2 ? qs[e1] & 15 : qs[e1 - G / 2] >> 4;
            dst[16 * s + j] = (uint8_t)(q0 | (q1 << 4));
        }
}

// Builds the device copy m (carved at base) from the file's rows in device memory (raw, rows of
// row_bytes). Float types are copied as they are (raw may equal base: nothing to do).
static inline cudaError_t lmp_cuda_mat_build(lmp_cuda_mat *m, lmp_dtype t, int64_t rows, int64_t cols, void *base,
                                             const void *raw, size_t row_bytes, cudaStream_t st) {
    lmp_cuda_mat_carve(m, t, rows, cols, base);
    const int64_t G = m->group;
    if (t == LMP_DTYPE_F32 || t == LMP_DTYPE_F16 || t == LMP_DTYPE_BF16) {
        if (raw == base) return cudaSuccess;
        return cudaMemcpyAsync(base, raw, (size_t)rows * row_bytes, cudaMemcpyDeviceToDevice, st);
    }
    const int64_t nblk = rows * (cols / G);
    const unsigned grid = (unsigned)((nblk + 255) / 256);
    if (t == LMP_DTYPE_Q8_0)
        lmp_repack_q8_0_kernel<<<grid, 256, 0, st>>>((const uint8_t *)raw, row_bytes, rows, cols, (int8_t *)m->q,
                                                     (__half *)m->d);
    else
        lmp_repack_q4_kernel<<<grid, 256, 0, st>>>((const uint8_t *)raw, row_bytes, rows, cols, (int)G, m->asym,
                                                   (uint8_t *)m->q, (__half *)m->d, (__half *)m->m);
    return cudaGetLastError();
}

// ---- activation quantizers: one warp per 32-element block, the reference arithmetic exactly ----
// q8_a: d = amax / 127, q = roundf(x / d) clamped to +-127 (NaN -> 0), s = d * sum(q).
// q16_a: d = amax / 32767, q = roundf(x / d) clamped to +-32767.
// x (n, cols) with cols % 32 == 0; outputs as lmp_cuda_act (NULL pointers skip a form).
__global__ void lmp_quantize_act_kernel(const float *x, int64_t n_blocks, int8_t *q8, float *d8, float *s8,
                                        int *sum8, int16_t *q16, float *d16) {
    lmp_pdl_trigger();
    lmp_pdl_wait();
    const int64_t b = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) / 32;
    const int lane = threadIdx.x % 32;
    if (b >= n_blocks) return;  // whole warps exit together: blockDim.x is a multiple of 32
    lmp_quantize_block32(x[b * 32 + lane], lane, b, q8, d8, s8, sum8, q16, d16);
}

// ---- matvec ----
//
// One warp computes R consecutive rows of one matrix: lane l takes chunks l, l + 32, ... of a row
// (a chunk is one 16-byte load of weights: 4 f32, 8 f16/bf16, 32 q4 codes; q8_0 chunks are one
// 32-element block, two loads), U chunks per lane in flight before their products. With pair=1 the
// warp also computes the same rows of a second matrix of the same shape (gate and up) and stores
// silu(gate) * up. The epilogue stores the result and/or adds it to a residual. Up to three matrices with the same
// input and type share a launch (q, k, v); blocks of 8 warps; blockIdx.y is the token.

#define LMP_MV_WARPS 8
#define LMP_MV_MAXSEG 3

typedef struct lmp_mv_seg {
    lmp_cuda_mat w;   // rows, cols; all segments have the same type and cols
    lmp_cuda_mat w2;  // pair: the second matrix (same shape) ; otherwise unused
    float *y;         // (n, w.rows) output (pair: silu(W x) * (W2 x)), or NULL
    float *y2;        // pair: (n, w.rows) receives W2 x, or NULL
    float *res;       // (n, w.rows) residual: res += the output, or NULL
    int64_t warp0;    // first global warp index of this segment
} lmp_mv_seg;

typedef struct lmp_mv_args {
    lmp_mv_seg seg[LMP_MV_MAXSEG];
    int nseg;
    int64_t n_warps;  // total over segments
    lmp_cuda_act x;
    int pair;         // 1: y = silu(W x) * (W2 x)
    int pdl;          // launch with programmatic dependent launch (common.cuh)
    lmp_act_out qo;   // if q8 or q16 set: the output also quantized (one segment, rows % 32 == 0, R = 4)
} lmp_mv_args;

template <int TYPE> struct lmp_mv_traits;
template <> struct lmp_mv_traits<LMP_DTYPE_F32> { enum { E = 4, LOADS = 1 }; };
template <> struct lmp_mv_traits<LMP_DTYPE_F16> { enum { E = 8, LOADS = 1 }; };
template <> struct lmp_mv_traits<LMP_DTYPE_BF16> { enum { E = 8, LOADS = 1 }; };
// q8_0: a chunk is half a block (16 codes, one load); lanes 2k and 2k + 1 hold the two halves of a block
template <> struct lmp_mv_traits<LMP_DTYPE_Q8_0> { enum { E = 16, LOADS = 1 }; };
template <> struct lmp_mv_traits<LMP_DTYPE_Q4_0> { enum { E = 32, LOADS = 1 }; };  // every q4 type

template <int TYPE> __host__ __device__ constexpr int lmp_q4_group() {
    return (TYPE == LMP_DTYPE_Q4_0_G64 || TYPE == LMP_DTYPE_Q4_1_G64) ? 64
           : (TYPE == LMP_DTYPE_Q4_0_G128 || TYPE == LMP_DTYPE_Q4_1_G128) ? 128 : 32;
}
template <int TYPE> __host__ __device__ constexpr int lmp_q4_asym() {
    return TYPE == LMP_DTYPE_Q4_1 || TYPE == LMP_DTYPE_Q4_1_G64 || TYPE == LMP_DTYPE_Q4_1_G128;
}

static __device__ __forceinline__ float lmp_bf16_lo(uint32_t u) { return __uint_as_float(u << 16); }
static __device__ __forceinline__ float lmp_bf16_hi(uint32_t u) { return __uint_as_float(u & 0xffff0000u); }

// Weights of chunk c of row r: LOADS 16-byte loads, and the chunk's scale (and minimum) as raw fp16 bits
// in *sc (d | m << 16), fetched in the same phase so that no second round trip to memory waits in the dot.
template <int TYPE>
static __device__ __forceinline__ void lmp_mv_load(const lmp_cuda_mat &w, int64_t r, int64_t c, uint4 *out,
                                                   uint32_t *sc) {
    if constexpr (TYPE == LMP_DTYPE_F32) {
        out[0] = lmp_ld_stream(w.q + ((size_t)r * w.cols + (size_t)c * 4) * 4);
    } else if constexpr (TYPE == LMP_DTYPE_F16 || TYPE == LMP_DTYPE_BF16) {
        out[0] = lmp_ld_stream(w.q + ((size_t)r * w.cols + (size_t)c * 8) * 2);
    } else if constexpr (TYPE == LMP_DTYPE_Q8_0) {
        out[0] = lmp_ld_stream(w.q + (size_t)r * w.cols + (size_t)c * 16);
        *sc = __ldg((const unsigned short *)w.d + (size_t)r * (size_t)(w.cols / 32) + (size_t)(c / 2));
    } else {
        constexpr int G = lmp_q4_group<TYPE>();
        out[0] = lmp_ld_stream(w.q + (size_t)r * (size_t)(w.cols / 2) + (size_t)c * 16);
        const size_t si = (size_t)r * (size_t)(w.cols / G) + (size_t)(c / (G / 32));
        uint32_t v = __ldg((const unsigned short *)w.d + si);
        if constexpr (lmp_q4_asym<TYPE>()) v |= (uint32_t)__ldg((const unsigned short *)w.m + si) << 16;
        *sc = v;
    }
}


// Partial dot of chunk c (weights wv of row r) with token t's activations; adds to acc.
template <int TYPE>
static __device__ __forceinline__ float lmp_mv_dot(const lmp_cuda_mat &w, int64_t r, int64_t c, const uint4 *wv,
                                                   uint32_t sc, const lmp_cuda_act &x, int64_t xoff, float acc,
                                                   bool valid = true) {
    if constexpr (TYPE == LMP_DTYPE_F32) {
        const float4 a = *(const float4 *)(x.f + xoff + c * 4);
        acc = fmaf(__uint_as_float(wv[0].x), a.x, acc);
        acc = fmaf(__uint_as_float(wv[0].y), a.y, acc);
        acc = fmaf(__uint_as_float(wv[0].z), a.z, acc);
        acc = fmaf(__uint_as_float(wv[0].w), a.w, acc);
        return acc;
    } else if constexpr (TYPE == LMP_DTYPE_F16 || TYPE == LMP_DTYPE_BF16) {
        const float4 a = *(const float4 *)(x.f + xoff + c * 8);
        const float4 b = *(const float4 *)(x.f + xoff + c * 8 + 4);
        const uint32_t u[4] = {wv[0].x, wv[0].y, wv[0].z, wv[0].w};
        float f[8];
#pragma unroll
        for (int k = 0; k < 4; k++) {
            if constexpr (TYPE == LMP_DTYPE_F16) {
                float2 p = __half22float2(*(const __half2 *)&u[k]);
                f[2 * k] = p.x;
                f[2 * k + 1] = p.y;
            } else {
                f[2 * k] = lmp_bf16_lo(u[k]);
                f[2 * k + 1] = lmp_bf16_hi(u[k]);
            }
        }
        acc = fmaf(f[0], a.x, acc);
        acc = fmaf(f[1], a.y, acc);
        acc = fmaf(f[2], a.z, acc);
        acc = fmaf(f[3], a.w, acc);
        acc = fmaf(f[4], b.x, acc);
        acc = fmaf(f[5], b.y, acc);
        acc = fmaf(f[6], b.z, acc);
        acc = fmaf(f[7], b.w, acc);
        return acc;
    } else if constexpr (TYPE == LMP_DTYPE_Q8_0) {
        // half block c: 16 codes against 16 int16 activations; the block's exact int32 sum is the pair's
        // (lanes 2k, 2k + 1), added by the even lane. Called by every lane of the warp (the shuffle), with
        // valid = 0 past the row's end (nch is even, so a pair is valid or not as a whole).
        int isum = 0;
        if (valid) {
            const int4 *xq = (const int4 *)(x.q16 + xoff + c * 16);  // 16 int16 = 2 x 16 bytes
            const int4 x0 = xq[0], x1 = xq[1];
            const int xw[8] = {x0.x, x0.y, x0.z, x0.w, x1.x, x1.y, x1.z, x1.w};
            const int ww[4] = {(int)wv[0].x, (int)wv[0].y, (int)wv[0].z, (int)wv[0].w};
#pragma unroll
            for (int k = 0; k < 4; k++) {
                isum = __dp2a_lo(xw[2 * k], ww[k], isum);
                isum = __dp2a_hi(xw[2 * k + 1], ww[k], isum);
            }
        }
        isum += __shfl_xor_sync(0xffffffffu, isum, 1);
        if (!valid || (c & 1)) return acc;
        const float dw = __half2float(__ushort_as_half((unsigned short)(sc & 0xffffu)));
        return acc + (dw * x.d16[xoff / 32 + c / 2]) * (float)isum;
    } else {  // q4 family: one 32-element sub-block; scale index c / (G / 32)
        constexpr int G = lmp_q4_group<TYPE>(), ASYM = lmp_q4_asym<TYPE>();
        const int4 *xq = (const int4 *)(x.q8 + xoff + c * 32);
        const int4 x0 = xq[0], x1 = xq[1];
        const uint32_t u[4] = {wv[0].x, wv[0].y, wv[0].z, wv[0].w};
        const int lo[4] = {x0.x, x0.y, x0.z, x0.w}, hi[4] = {x1.x, x1.y, x1.z, x1.w};
        int isum = 0;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            isum = __dp4a((int)(u[k] & 0x0f0f0f0fu), lo[k], isum);
            isum = __dp4a((int)((u[k] >> 4) & 0x0f0f0f0fu), hi[k], isum);
        }
        const float dw = __half2float(__ushort_as_half((unsigned short)(sc & 0xffffu)));
        const int64_t xb = xoff / 32 + c;
        if constexpr (!ASYM) {
            isum -= 8 * x.sum8[xb];
            return acc + (dw * x.d8[xb]) * (float)isum;
        }
        else return acc + ((dw * x.d8[xb]) * (float)isum +
                           __half2float(__ushort_as_half((unsigned short)(sc >> 16))) * x.s8[xb]);
    }
}

template <int TYPE, int R, int U, int PAIR, int QO>
__global__ void __launch_bounds__(LMP_MV_WARPS * 32) lmp_matvec_kernel(const lmp_mv_args a) {
    typedef lmp_mv_traits<(TYPE == LMP_DTYPE_F32 || TYPE == LMP_DTYPE_F16 || TYPE == LMP_DTYPE_BF16 ||
                           TYPE == LMP_DTYPE_Q8_0)
                              ? TYPE
                              : LMP_DTYPE_Q4_0>
        tr;
    static_assert(!QO || R * LMP_MV_WARPS == 32, "the quantized epilogue needs 32 rows per block");
    lmp_pdl_trigger();
    const int64_t gw = blockIdx.x * (int64_t)LMP_MV_WARPS + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (!QO && gw >= a.n_warps) return;  // QO: the grid tiles the rows exactly (no warp is out of range)
    int s = 0;
    while (s + 1 < a.nseg && gw >= a.seg[s + 1].warp0) s++;
    const lmp_mv_seg &sg = a.seg[s];
    const lmp_cuda_mat &w = sg.w;
    const int64_t r0 = (gw - sg.warp0) * R;
    const int64_t nch = w.cols / tr::E;
    const int64_t t = blockIdx.y;
    const int64_t xoff = t * w.cols;
    constexpr int NM = PAIR ? 2 : 1;  // matrices per warp
    float acc[NM][R];
#pragma unroll
    for (int k = 0; k < NM; k++)
#pragma unroll
        for (int i = 0; i < R; i++) acc[k][i] = 0.0f;
    int nr = (int)(w.rows - r0 < R ? w.rows - r0 : R);
    uint4 wv[NM][R][U][tr::LOADS];
    uint32_t sc[NM][R][U];
    // The weights do not depend on the kernel before this one: their first loads are issued before
    // waiting for it (lmp_pdl_wait), which hides this launch's start behind the other's tail.
    for (int64_t base = 0; base < nch; base += 32 * U) {
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int64_t c = base + u * 32 + lane;
            if (c < nch) {
#pragma unroll
                for (int i = 0; i < R; i++)
                    if (i < nr) {
                        lmp_mv_load<TYPE>(w, r0 + i, c, wv[0][i][u], &sc[0][i][u]);
                        if constexpr (PAIR) lmp_mv_load<TYPE>(sg.w2, r0 + i, c, wv[NM - 1][i][u], &sc[NM - 1][i][u]);
                    }
            }
        }
        if (base == 0) lmp_pdl_wait();
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int64_t c = base + u * 32 + lane;
            if constexpr (TYPE == LMP_DTYPE_Q8_0) {  // every lane calls the dot (it shuffles)
#pragma unroll
                for (int i = 0; i < R; i++)
                    if (i < nr) {
                        acc[0][i] = lmp_mv_dot<TYPE>(w, r0 + i, c, wv[0][i][u], sc[0][i][u], a.x, xoff, acc[0][i], c < nch);
                        if constexpr (PAIR)
                            acc[NM - 1][i] = lmp_mv_dot<TYPE>(sg.w2, r0 + i, c, wv[NM - 1][i][u], sc[NM - 1][i][u], a.x,
                                                              xoff, acc[NM - 1][i], c < nch);
                    }
            } else if (c < nch) {
#pragma unroll
                for (int i = 0; i < R; i++)
                    if (i < nr) {
                        acc[0][i] = lmp_mv_dot<TYPE>(w, r0 + i, c, wv[0][i][u], sc[0][i][u], a.x, xoff, acc[0][i]);
                        if constexpr (PAIR)
                            acc[NM - 1][i] = lmp_mv_dot<TYPE>(sg.w2, r0 + i, c, wv[NM - 1][i][u], sc[NM - 1][i][u], a.x,
                                                              xoff, acc[NM - 1][i]);
                    }
            }
        }
    }
    if (nch == 0) lmp_pdl_wait();
    __shared__ float yo[QO ? 32 : 1];
#pragma unroll
    for (int i = 0; i < R; i++) {
        float v = lmp_warp_sum(acc[0][i]);
        float v2 = PAIR ? lmp_warp_sum(acc[NM - 1][i]) : 0.0f;
        if (lane == 0 && i < nr) {
            const int64_t o = t * w.rows + r0 + i;
            if (PAIR) {
                if (sg.y2) sg.y2[o] = v2;
                v = lmp_silu(v) * v2;
            }
            if (sg.y) sg.y[o] = v;
            if (sg.res) sg.res[o] += v;
            if (QO) yo[(threadIdx.x / 32) * R + i] = v;
        }
    }
    if constexpr (QO) {  // the block's 32 consecutive outputs are one q8_a / q16_a block of the next matvec
        __syncthreads();
        if (threadIdx.x < 32) {
            const lmp_act_out &q = a.qo;
            lmp_quantize_block32(yo[lane], lane, (t * w.rows + blockIdx.x * 32) / 32, q.q8, q.d8, q.s8, q.sum8, q.q16,
                                 q.d16);
        }
    }
}

// ---- matvec v2 (branch cudamv, issue 12): double-buffered, several warps per row ----
//
// The same loads and dot products as lmp_matvec_kernel (lmp_mv_load / lmp_mv_dot), arranged for more bytes
// in flight per SM at fewer registers:
//   - a block of 8 warps takes RPB = 8 / W * R consecutive rows; the W warps of a row split its chunks
//     (warp k of the row takes chunks k * 32 + lane, then every 32 * W), and add their partial sums through
//     shared memory before the epilogue (split-K inside the block: no atomics, no zeroed output, the
//     +residual and quantized epilogues unchanged, nothing extra to capture in a graph);
//   - double-buffered: the loads of the next step (U chunks per lane per row and matrix) are issued before
//     the products of the current one, so a warp keeps weights in flight while it does its arithmetic and
//     while it waits for its activations (the old loop issued, waited, computed, then issued again);
//   - __launch_bounds__ with a minimum of blocks per SM picked from the number of loads a lane holds (the
//     compiler keeps to 40 registers for up to 2 loads in flight, 64 for 4, 80 for 8, 128 beyond), 32-bit
//     chunk indices.
// The segments of a launch start on block boundaries (seg[].warp0 holds the segment's first block here).
template <int TYPE, int R, int U, int W>
struct lmp_mv2_cfg {
    enum { NLOAD = R * U * 2, MINB = NLOAD <= 2 ? 6 : NLOAD <= 4 ? 4 : NLOAD <= 8 ? 3 : 2 };
};

template <int TYPE, int R, int U, int W, int PAIR, int QO>
__global__ void __launch_bounds__(LMP_MV_WARPS * 32, lmp_mv2_cfg<TYPE, R, U * (PAIR ? 2 : 1), W>::MINB)
    lmp_matvec2_kernel(const lmp_mv_args a) {
    typedef lmp_mv_traits<(TYPE == LMP_DTYPE_F32 || TYPE == LMP_DTYPE_F16 || TYPE == LMP_DTYPE_BF16 ||
                           TYPE == LMP_DTYPE_Q8_0)
                              ? TYPE
                              : LMP_DTYPE_Q4_0>
        tr;
    constexpr int RPB = LMP_MV_WARPS / W * R;  // rows per block
    static_assert(LMP_MV_WARPS % W == 0, "W divides the block's warps");
    static_assert(!QO || RPB == 32, "the quantized epilogue needs 32 rows per block");
    constexpr int NM = PAIR ? 2 : 1;
    constexpr int STEP = 32 * U * W;  // chunks of a row per step (all warps of the row)
    lmp_pdl_trigger();
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int slot = warp / W, ks = warp % W;
    int s = 0;
    while (s + 1 < a.nseg && (int64_t)blockIdx.x >= a.seg[s + 1].warp0) s++;
    const lmp_mv_seg &sg = a.seg[s];
    const lmp_cuda_mat &w = sg.w;
    const int64_t r0 = ((int64_t)blockIdx.x - sg.warp0) * RPB + slot * R;
    const int nch = (int)(w.cols / tr::E);
    const int64_t t = blockIdx.y;
    const int64_t xoff = t * w.cols;
    int nr = (int)(w.rows - r0 < R ? w.rows - r0 : R);
    if (nr < 0) nr = 0;
    float acc[NM][R];
#pragma unroll
    for (int k = 0; k < NM; k++)
#pragma unroll
        for (int i = 0; i < R; i++) acc[k][i] = 0.0f;
    uint4 wa[NM][R][U][tr::LOADS], wb[NM][R][U][tr::LOADS];
    uint32_t sa[NM][R][U], sb[NM][R][U];
    const int c0 = ks * 32 + lane;  // this lane's first chunk; chunk of (step base, u): base + c0 + u * 32 * W
    auto load = [&](int base, uint4 (&wv)[NM][R][U][tr::LOADS], uint32_t (&sc)[NM][R][U]) {
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int c = base + c0 + u * 32 * W;
            if (c < nch) {
#pragma unroll
                for (int i = 0; i < R; i++)
                    if (i < nr) {
                        lmp_mv_load<TYPE>(w, r0 + i, c, wv[0][i][u], &sc[0][i][u]);
                        if constexpr (PAIR) lmp_mv_load<TYPE>(sg.w2, r0 + i, c, wv[NM - 1][i][u], &sc[NM - 1][i][u]);
                    }
            }
        }
    };
    auto dot = [&](int base, const uint4 (&wv)[NM][R][U][tr::LOADS], const uint32_t (&sc)[NM][R][U]) {
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int c = base + c0 + u * 32 * W;
            if constexpr (TYPE == LMP_DTYPE_Q8_0) {  // every lane calls the dot (it shuffles)
#pragma unroll
                for (int i = 0; i < R; i++)
                    if (i < nr) {
                        acc[0][i] = lmp_mv_dot<TYPE>(w, r0 + i, c, wv[0][i][u], sc[0][i][u], a.x, xoff, acc[0][i],
                                                     c < nch);
                        if constexpr (PAIR)
                            acc[NM - 1][i] = lmp_mv_dot<TYPE>(sg.w2, r0 + i, c, wv[NM - 1][i][u], sc[NM - 1][i][u],
                                                              a.x, xoff, acc[NM - 1][i], c < nch);
                    }
            } else if (c < nch) {
#pragma unroll
                for (int i = 0; i < R; i++)
                    if (i < nr) {
                        acc[0][i] = lmp_mv_dot<TYPE>(w, r0 + i, c, wv[0][i][u], sc[0][i][u], a.x, xoff, acc[0][i]);
                        if constexpr (PAIR)
                            acc[NM - 1][i] = lmp_mv_dot<TYPE>(sg.w2, r0 + i, c, wv[NM - 1][i][u], sc[NM - 1][i][u],
                                                              a.x, xoff, acc[NM - 1][i]);
                    }
            }
        }
    };
    // Weights do not depend on the kernel before this one: the first step's loads go out before lmp_pdl_wait.
    load(0, wa, sa);
    lmp_pdl_wait();
    for (int base = 0; base < nch; base += 2 * STEP) {
        if (base + STEP < nch) load(base + STEP, wb, sb);
        dot(base, wa, sa);
        if (base + STEP >= nch) break;
        if (base + 2 * STEP < nch) load(base + 2 * STEP, wa, sa);
        dot(base + STEP, wb, sb);
    }
    float v[NM][R];
#pragma unroll
    for (int k = 0; k < NM; k++)
#pragma unroll
        for (int i = 0; i < R; i++) v[k][i] = lmp_warp_sum(acc[k][i]);
    if constexpr (W > 1) {  // the row's W partial sums, through shared memory
        __shared__ float red[LMP_MV_WARPS][NM * R];
        if (lane == 0)
#pragma unroll
            for (int k = 0; k < NM; k++)
#pragma unroll
                for (int i = 0; i < R; i++) red[warp][k * R + i] = v[k][i];
        __syncthreads();
        if (ks == 0)
#pragma unroll
            for (int k = 0; k < NM; k++)
#pragma unroll
                for (int i = 0; i < R; i++) {
                    float sum = red[warp][k * R + i];
#pragma unroll
                    for (int j = 1; j < W; j++) sum += red[warp + j][k * R + i];
                    v[k][i] = sum;
                }
    }
    __shared__ float yo[QO ? 32 : 1];
    if (ks == 0 && lane == 0) {
#pragma unroll
        for (int i = 0; i < R; i++)
            if (i < nr) {
                const int64_t o = t * w.rows + r0 + i;
                float y = v[0][i];
                if (PAIR) {
                    if (sg.y2) sg.y2[o] = v[NM - 1][i];
                    y = lmp_silu(y) * v[NM - 1][i];
                }
                if (sg.y) sg.y[o] = y;
                if (sg.res) sg.res[o] += y;
                if (QO) yo[slot * R + i] = y;
            }
    }
    if constexpr (QO) {  // the block's 32 consecutive outputs are one q8_a / q16_a block of the next matvec
        __syncthreads();
        if (threadIdx.x < 32) {
            const lmp_act_out &q = a.qo;
            lmp_quantize_block32(yo[lane], lane, (t * w.rows + (r0 - slot * R)) / 32, q.q8, q.d8, q.s8, q.sum8,
                                 q.q16, q.d16);
        }
    }
}

// Fallback for float rows whose length or alignment the 16-byte path cannot take (e.g. f16 rows of
// 172 elements): one warp per row, one element per lane step, the reference's to_float per element.
template <int TYPE>
__global__ void lmp_matvec_scalar_kernel(const lmp_mv_args a) {
    lmp_pdl_trigger();
    lmp_pdl_wait();
    const int64_t gw = blockIdx.x * (int64_t)LMP_MV_WARPS + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (gw >= a.n_warps) return;
    int s = 0;
    while (s + 1 < a.nseg && gw >= a.seg[s + 1].warp0) s++;
    const lmp_mv_seg &sg = a.seg[s];
    const int64_t r = gw - sg.warp0, t = blockIdx.y, cols = sg.w.cols;
    const float *x = a.x.f + t * cols;
    float acc = 0.0f, acc2 = 0.0f;
    for (int64_t j = lane; j < cols; j += 32) {
        float wf, wf2 = 0.0f;
        if constexpr (TYPE == LMP_DTYPE_F32) {
            wf = ((const float *)sg.w.q)[r * cols + j];
            if (a.pair) wf2 = ((const float *)sg.w2.q)[r * cols + j];
        } else if constexpr (TYPE == LMP_DTYPE_F16) {
            wf = __half2float(((const __half *)sg.w.q)[r * cols + j]);
            if (a.pair) wf2 = __half2float(((const __half *)sg.w2.q)[r * cols + j]);
        } else {
            wf = lmp_bf16_lo(((const uint16_t *)sg.w.q)[r * cols + j]);
            if (a.pair) wf2 = lmp_bf16_lo(((const uint16_t *)sg.w2.q)[r * cols + j]);
        }
        acc = fmaf(wf, x[j], acc);
        acc2 = fmaf(wf2, x[j], acc2);
    }
    acc = lmp_warp_sum(acc);
    acc2 = lmp_warp_sum(acc2);
    if (lane == 0) {
        const int64_t o = t * sg.w.rows + r;
        if (a.pair && sg.y2) sg.y2[o] = acc2;
        const float v = a.pair ? lmp_silu(acc) * acc2 : acc;
        if (sg.y) sg.y[o] = v;
        if (sg.res) sg.res[o] += v;
    }
}

// The 16-byte path needs rows of whole chunks on 16-byte boundaries.
static inline int lmp_mv_fast_ok(const lmp_cuda_mat *w) {
    switch (w->type) {
    case LMP_DTYPE_F32: return w->cols % 4 == 0;
    case LMP_DTYPE_F16: case LMP_DTYPE_BF16: return w->cols % 8 == 0;
    default: return 1;  // quantized: cols % 32 == 0 by the type
    }
}

// Launches one matvec over the segments of a (seg[].w, .w2, .y filled; warp0 and n_warps are set
// here) for n tokens, with R rows per warp and U chunks in flight. Returns the launch error.
template <int TYPE, int R, int U>
static cudaError_t lmp_matvec_launch_t(lmp_mv_args *a, int n, cudaStream_t st) {
    const int fast = lmp_mv_fast_ok(&a->seg[0].w);
    int64_t nw = 0;
    for (int s = 0; s < a->nseg; s++) {
        a->seg[s].warp0 = nw;
        nw += fast ? (a->seg[s].w.rows + R - 1) / R : a->seg[s].w.rows;
    }
    a->n_warps = nw;
    dim3 grid((unsigned)((nw + LMP_MV_WARPS - 1) / LMP_MV_WARPS), (unsigned)n);
    const dim3 blk(LMP_MV_WARPS * 32);
    if (a->qo.q8 || a->qo.q16) {  // the quantizing epilogue: R = 4 (32 rows per block), one segment
        if constexpr (R * LMP_MV_WARPS == 32) {
            if (!fast || a->nseg != 1 || a->seg[0].w.rows % 32) return cudaErrorInvalidValue;
            if (a->pair) return lmp_launch(a->pdl, lmp_matvec_kernel<TYPE, R, U, 1, 1>, grid, blk, 0, st, *a);
            return lmp_launch(a->pdl, lmp_matvec_kernel<TYPE, R, U, 0, 1>, grid, blk, 0, st, *a);
        }
        return cudaErrorInvalidValue;
    }
    if (fast && a->pair) return lmp_launch(a->pdl, lmp_matvec_kernel<TYPE, R, U, 1, 0>, grid, blk, 0, st, *a);
    if (fast) return lmp_launch(a->pdl, lmp_matvec_kernel<TYPE, R, U, 0, 0>, grid, blk, 0, st, *a);
    if constexpr (TYPE == LMP_DTYPE_F32 || TYPE == LMP_DTYPE_F16 || TYPE == LMP_DTYPE_BF16)
        return lmp_launch(a->pdl, lmp_matvec_scalar_kernel<TYPE>, grid, blk, 0, st, *a);
    return cudaErrorInvalidValue;
}

// v2 (lmp_matvec2_kernel): R rows per warp, U chunks per lane and step (double-buffered), W warps per row.
// Float rows the 16-byte path cannot take go to the scalar kernel as in lmp_matvec_launch_t.
template <int TYPE, int R, int U, int W>
static cudaError_t lmp_matvec2_launch_t(lmp_mv_args *a, int n, cudaStream_t st) {
    if (!lmp_mv_fast_ok(&a->seg[0].w)) return lmp_matvec_launch_t<TYPE, 1, 1>(a, n, st);
    constexpr int RPB = LMP_MV_WARPS / W * R;
    int64_t nb = 0;
    for (int s = 0; s < a->nseg; s++) {
        a->seg[s].warp0 = nb;  // v2: the segment's first block
        nb += (a->seg[s].w.rows + RPB - 1) / RPB;
    }
    a->n_warps = nb * LMP_MV_WARPS;
    const dim3 grid((unsigned)nb, (unsigned)n), blk(LMP_MV_WARPS * 32);
    if (a->qo.q8 || a->qo.q16) {
        if constexpr (RPB == 32) {
            if (a->nseg != 1 || a->seg[0].w.rows % 32) return cudaErrorInvalidValue;
            if (a->pair) return lmp_launch(a->pdl, lmp_matvec2_kernel<TYPE, R, U, W, 1, 1>, grid, blk, 0, st, *a);
            return lmp_launch(a->pdl, lmp_matvec2_kernel<TYPE, R, U, W, 0, 1>, grid, blk, 0, st, *a);
        }
        return cudaErrorInvalidValue;
    }
    if (a->pair) return lmp_launch(a->pdl, lmp_matvec2_kernel<TYPE, R, U, W, 1, 0>, grid, blk, 0, st, *a);
    return lmp_launch(a->pdl, lmp_matvec2_kernel<TYPE, R, U, W, 0, 0>, grid, blk, 0, st, *a);
}

// Variant table: the lab times every entry; the backend uses lmp_matvec_launch (the choice below).
typedef cudaError_t (*lmp_mv_launch_fn)(lmp_mv_args *a, int n, cudaStream_t st);
typedef struct lmp_mv_variant {
    const char *name;
    int R, U, W;  // W: warps per row (v2)
    int v2;       // 1: lmp_matvec2_kernel
    lmp_mv_launch_fn fn[LMP_DTYPE_COUNT];
} lmp_mv_variant;

#define LMP_MV_ROW(R, U)                                                                                       \
    {"r" #R "u" #U, R, U, 1, 0,                                                                                \
     {lmp_matvec_launch_t<LMP_DTYPE_F32, R, U>, lmp_matvec_launch_t<LMP_DTYPE_F16, R, U>,                      \
      lmp_matvec_launch_t<LMP_DTYPE_BF16, R, U>, lmp_matvec_launch_t<LMP_DTYPE_Q8_0, R, U>,                    \
      lmp_matvec_launch_t<LMP_DTYPE_Q4_0, R, U>, lmp_matvec_launch_t<LMP_DTYPE_Q4_1, R, U>,                    \
      lmp_matvec_launch_t<LMP_DTYPE_Q4_0_G64, R, U>, lmp_matvec_launch_t<LMP_DTYPE_Q4_0_G128, R, U>,           \
      lmp_matvec_launch_t<LMP_DTYPE_Q4_1_G64, R, U>, lmp_matvec_launch_t<LMP_DTYPE_Q4_1_G128, R, U>}}

#define LMP_MV2_ROW(R, U, W)                                                                                   \
    {"v2r" #R "u" #U "w" #W, R, U, W, 1,                                                                       \
     {lmp_matvec2_launch_t<LMP_DTYPE_F32, R, U, W>, lmp_matvec2_launch_t<LMP_DTYPE_F16, R, U, W>,              \
      lmp_matvec2_launch_t<LMP_DTYPE_BF16, R, U, W>, lmp_matvec2_launch_t<LMP_DTYPE_Q8_0, R, U, W>,            \
      lmp_matvec2_launch_t<LMP_DTYPE_Q4_0, R, U, W>, lmp_matvec2_launch_t<LMP_DTYPE_Q4_1, R, U, W>,            \
      lmp_matvec2_launch_t<LMP_DTYPE_Q4_0_G64, R, U, W>, lmp_matvec2_launch_t<LMP_DTYPE_Q4_0_G128, R, U, W>,   \
      lmp_matvec2_launch_t<LMP_DTYPE_Q4_1_G64, R, U, W>, lmp_matvec2_launch_t<LMP_DTYPE_Q4_1_G128, R, U, W>}}

// The first 8 are the old kernel (cudadec), the rest v2 (cudamv); the lab checks and times them all.
static const lmp_mv_variant lmp_mv_variants[] = {
    LMP_MV_ROW(1, 1), LMP_MV_ROW(1, 2), LMP_MV_ROW(1, 4), LMP_MV_ROW(2, 1), LMP_MV_ROW(2, 2), LMP_MV_ROW(4, 1),
    LMP_MV_ROW(1, 8), LMP_MV_ROW(2, 4),
    LMP_MV2_ROW(1, 2, 1), LMP_MV2_ROW(1, 4, 1), LMP_MV2_ROW(1, 2, 2), LMP_MV2_ROW(1, 2, 4), LMP_MV2_ROW(1, 1, 4),
    LMP_MV2_ROW(2, 1, 1), LMP_MV2_ROW(2, 2, 2), LMP_MV2_ROW(4, 1, 1), LMP_MV2_ROW(1, 1, 2), LMP_MV2_ROW(1, 2, 8),
};
#define LMP_MV_N_VARIANTS ((int)(sizeof lmp_mv_variants / sizeof lmp_mv_variants[0]))

// The backend's choice (cuda/NOTES.md has the measurements behind it), per type family (float, q8_0, q4) and
// shape class of the launch (rows of all segments together: q, k, v are 3 x 4096 rows of 4096 in a 7B layer):
// tall (rows >= 2 cols over several segments: q/k/v), vtall (rows >= 2 cols in one matrix: the classifier,
// unfused gate or up; cudamv run 2: v2r4u1w1 took 14.9 us there at 14336 x 4096 against r1u4's 10.3 while it
// gained on q/k/v), wide (cols >= 2 rows: down), square
// (the rest: wo), pair (silu(gate) * up without the quantizing epilogue), qo (the pair with it, 32 rows per
// block). cudadec: r1u4 everywhere, r4u1 for qo (cudadec run 2 tried r4u1 for tall quantized matrices in the
// model: no gain). cudamv run 1 (lab decode-step table, PDL chain): v2 only where it won there: q4 q/k/v
// v2r4u1w1 (9.6 -> 9.1 us), q8_0 q/k/v v2r1u1w2 (17.5 -> 17.2), wo and down v2r1u2w1 (7.3 -> 7.0,
// 18.3 -> 17.2), f16 q/k/v v2r4u1w1 (25.7 -> 24.2); everything else stays on the old kernel.
// LMP_CUDA_MV overrides it for A/B runs, for every family: "old" (the cudadec choice), or a comma list of
// class=variant name, e.g. LMP_CUDA_MV=tall=v2r2u1w1,wide=v2r1u2w4 (an unknown name is ignored).
typedef struct lmp_mv_choice {
    int vtall, tall, square, wide, pair, qo;  // indices into lmp_mv_variants
} lmp_mv_choice;
#define LMP_MV_QO_VARIANT 5  // old: r4u1, 32 rows per block
enum { LMP_MV_FAM_FLOAT, LMP_MV_FAM_Q8, LMP_MV_FAM_Q4, LMP_MV_N_FAM };
static inline int lmp_mv_family(lmp_dtype t) {
    return (t == LMP_DTYPE_F32 || t == LMP_DTYPE_F16 || t == LMP_DTYPE_BF16) ? LMP_MV_FAM_FLOAT
           : t == LMP_DTYPE_Q8_0                                           ? LMP_MV_FAM_Q8
                                                                           : LMP_MV_FAM_Q4;
}
static const lmp_mv_choice lmp_mv_choice_old = {2, 2, 2, 2, 2, LMP_MV_QO_VARIANT};
// indices: 2 r1u4, 5 r4u1, 8 v2r1u2w1, 15 v2r4u1w1, 16 v2r1u1w2 (the table above)
static const lmp_mv_choice lmp_mv_choice_default[LMP_MV_N_FAM] = {
    {2, 15, 2, 2, 2, LMP_MV_QO_VARIANT},  // float
    {2, 16, 8, 8, 2, LMP_MV_QO_VARIANT},  // q8_0
    {2, 15, 2, 2, 2, LMP_MV_QO_VARIANT},  // q4 family
};

static inline int lmp_mv_variant_find(const char *name, size_t len) {
    for (int v = 0; v < LMP_MV_N_VARIANTS; v++)
        if (strlen(lmp_mv_variants[v].name) == len && !strncmp(lmp_mv_variants[v].name, name, len)) return v;
    return -1;
}
// Parses an LMP_CUDA_MV value over c (see above).
static inline void lmp_mv_choice_parse(lmp_mv_choice *c, const char *e) {
    if (!e || !*e) return;
    if (!strcmp(e, "old")) {
        *c = lmp_mv_choice_old;
        return;
    }
    while (*e) {
        const char *eq = strchr(e, '='), *end = strchr(e, ',');
        if (!end) end = e + strlen(e);
        if (eq && eq < end) {
            const int v = lmp_mv_variant_find(eq + 1, (size_t)(end - eq - 1));
            const size_t kl = (size_t)(eq - e);
            int *slot = kl == 5 && !strncmp(e, "vtall", 5)    ? &c->vtall
                        : kl == 4 && !strncmp(e, "tall", 4)   ? &c->tall
                        : kl == 6 && !strncmp(e, "square", 6) ? &c->square
                        : kl == 4 && !strncmp(e, "wide", 4)   ? &c->wide
                        : kl == 4 && !strncmp(e, "pair", 4)   ? &c->pair
                        : kl == 2 && !strncmp(e, "qo", 2)     ? &c->qo
                                                              : NULL;
            // qo needs 32 rows per block
            if (slot && v >= 0 && (slot != &c->qo || lmp_mv_variants[v].R * LMP_MV_WARPS / lmp_mv_variants[v].W == 32))
                *slot = v;
        }
        e = *end ? end + 1 : end;
    }
}
// The choice in force: the defaults, overridden once by LMP_CUDA_MV; the lab may change lmp_mv_choice_now.
static lmp_mv_choice lmp_mv_choice_now[LMP_MV_N_FAM] = {lmp_mv_choice_default[0], lmp_mv_choice_default[1],
                                                        lmp_mv_choice_default[2]};
static inline const lmp_mv_choice *lmp_mv_choice_get(lmp_dtype t) {
    static int read;
    if (!read) {
        read = 1;
        for (int f = 0; f < LMP_MV_N_FAM; f++) lmp_mv_choice_parse(&lmp_mv_choice_now[f], getenv("LMP_CUDA_MV"));
    }
    return &lmp_mv_choice_now[lmp_mv_family(t)];
}
// Sets every family's choice (the lab).
static inline void lmp_mv_choice_set_all(const lmp_mv_choice *c) {
    (void)lmp_mv_choice_get(LMP_DTYPE_F32);  // the environment read first, so that it does not override c later
    for (int f = 0; f < LMP_MV_N_FAM; f++) lmp_mv_choice_now[f] = c ? *c : lmp_mv_choice_default[f];
}
static inline const lmp_mv_variant *lmp_mv_pick(lmp_dtype t, int64_t rows, int64_t cols, int pair, int nseg) {
    const lmp_mv_choice *c = lmp_mv_choice_get(t);
    if (pair) return &lmp_mv_variants[c->pair];
    return &lmp_mv_variants[rows >= 2 * cols   ? (nseg > 1 ? c->tall : c->vtall)
                            : cols >= 2 * rows ? c->wide
                                               : c->square];
}

static inline cudaError_t lmp_matvec_launch(lmp_mv_args *a, int n, cudaStream_t st) {
    const lmp_cuda_mat *w = &a->seg[0].w;
    if (a->qo.q8 || a->qo.q16) return lmp_mv_variants[lmp_mv_choice_get(w->type)->qo].fn[w->type](a, n, st);
    int64_t rows = 0;  // all segments together (q, k, v: 3 x 4096 rows of 4096 in a 7B layer)
    for (int s = 0; s < a->nseg; s++) rows += a->seg[s].w.rows;
    return lmp_mv_pick(w->type, rows, w->cols, a->pair, a->nseg)->fn[w->type](a, n, st);
}
// 1 if the output of a launch over w (one segment) can be quantized in its epilogue.
static inline int lmp_mv_qo_ok(const lmp_cuda_mat *w) { return lmp_mv_fast_ok(w) && w->rows % 32 == 0; }

#endif
