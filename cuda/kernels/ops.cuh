// ops.cuh - the element-wise and row kernels of a forward pass: embedding rows (dequantized),
// RMSNorm (optionally quantizing its output for the next matvec), RoPE (interleaved and NeoX pairs),
// SwiGLU, residual add, decode attention split along the sequence, the causal softmax of the batched
// attention, and the evaluation statistics (log-softmax, NLL, KL against a base, top-1).
//
// Float arithmetic follows the CPU backend (runtime/backend_cpu.c) and format/qtypes.c; where a
// product and a sum must round separately to match the reference, __fmul_rn / __fadd_rn keep nvcc
// from contracting them into one FMA. Positions and token ids may come from device memory (pos_dev,
// tok_dev) so that a captured decode graph replays with new values. No batched matrix products here
// (gemm.cuh, matvec.cuh).
#ifndef LMP_CUDA_OPS_CUH
#define LMP_CUDA_OPS_CUH

#include "cuda/kernels/common.cuh"

// Element j of row r of a device matrix, as the reference to_float computes it.
static __device__ __forceinline__ float lmp_mat_elem(const lmp_cuda_mat &w, int64_t r, int64_t j) {
    switch (w.type) {
    case LMP_DTYPE_F32: return ((const float *)w.q)[r * w.cols + j];
    case LMP_DTYPE_F16: return __half2float(((const __half *)w.q)[r * w.cols + j]);
    case LMP_DTYPE_BF16: return __uint_as_float((uint32_t)((const uint16_t *)w.q)[r * w.cols + j] << 16);
    case LMP_DTYPE_Q8_0:
        return __fmul_rn((float)((const int8_t *)w.q)[r * w.cols + j],
                         __half2float(w.d[r * (w.cols / 32) + j / 32]));
    default: {
        const uint8_t byte = w.q[r * (w.cols / 2) + (j / 32) * 16 + (j % 16)];
        const int q = (j % 32) < 16 ? byte & 15 : byte >> 4;
        const size_t si = (size_t)r * (size_t)(w.cols / w.group) + (size_t)(j / w.group);
        const float d = __half2float(w.d[si]);
        if (!w.asym) return __fmul_rn((float)(q - 8), d);
        return __fadd_rn(__fmul_rn((float)q, d), __half2float(w.m[si]));
    }
    }
}

// out(n, cols) = rows tok[0..n) of emb; tok in device memory. grid (ceil(cols / 256), n).
__global__ void lmp_get_rows_kernel(float *out, const lmp_cuda_mat emb, const int32_t *tok) {
    lmp_pdl_trigger();
    lmp_pdl_wait();
    const int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x, i = blockIdx.y;
    if (j < emb.cols) out[i * emb.cols + j] = lmp_mat_elem(emb, tok[i], j);
}

// out(rows_in_chunk, cols) f16 = rows [r0, r0 + n_rows) of w dequantized (the batched path's tiles).
__global__ void lmp_dequant_f16_kernel(__half *out, const lmp_cuda_mat w, int64_t r0, int64_t n_rows) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= n_rows * w.cols) return;
    out[i] = __float2half_rn(lmp_mat_elem(w, r0 + i / w.cols, i % w.cols));
}

// The same for the quantized types, one 32-element sub-block (q4) or 16 codes (q8_0) per thread: 16-byte
// code loads, 16-byte stores of 8 halves; values as lmp_mat_elem, so the two kernels agree bit for bit.
__global__ void lmp_dequant_f16_vec_kernel(__half *out, const lmp_cuda_mat w, int64_t r0, int64_t n_rows) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    const int q8 = w.type == LMP_DTYPE_Q8_0;
    const int64_t per_row = w.cols / (q8 ? 16 : 32);
    if (i >= n_rows * per_row) return;
    const int64_t r = r0 + i / per_row, c = i % per_row;
    const int64_t e0 = c * (q8 ? 16 : 32);  // first element of this chunk in the row
    __align__(16) __half h[32];
    if (q8) {
        const uint4 v = *(const uint4 *)(w.q + (size_t)r * w.cols + (size_t)e0);
        const float d = __half2float(w.d[(size_t)r * (w.cols / 32) + (size_t)(e0 / 32)]);
        const int8_t *b = (const int8_t *)&v;
#pragma unroll
        for (int j = 0; j < 16; j++) h[j] = __float2half_rn(__fmul_rn((float)b[j], d));
        uint4 *o = (uint4 *)(out + (size_t)(r - r0) * w.cols + (size_t)e0);
        o[0] = *(const uint4 *)&h[0];
        o[1] = *(const uint4 *)&h[8];
        return;
    }
    const uint4 v = *(const uint4 *)(w.q + (size_t)r * (size_t)(w.cols / 2) + (size_t)c * 16);
    const size_t si = (size_t)r * (size_t)(w.cols / w.group) + (size_t)(e0 / w.group);
    const float d = __half2float(w.d[si]), m = w.asym ? __half2float(w.m[si]) : 0.0f;
    const uint8_t *b = (const uint8_t *)&v;
#pragma unroll
    for (int j = 0; j < 16; j++) {
        const int lo = b[j] & 15, hi = b[j] >> 4;
        if (!w.asym) {
            h[j] = __float2half_rn(__fmul_rn((float)(lo - 8), d));
            h[j + 16] = __float2half_rn(__fmul_rn((float)(hi - 8), d));
        } else {
            h[j] = __float2half_rn(__fadd_rn(__fmul_rn((float)lo, d), m));
            h[j + 16] = __float2half_rn(__fadd_rn(__fmul_rn((float)hi, d), m));
        }
    }
    uint4 *o = (uint4 *)(out + (size_t)(r - r0) * w.cols + (size_t)e0);
#pragma unroll
    for (int k = 0; k < 4; k++) o[k] = *(const uint4 *)&h[8 * k];
}

// out(n, dim) = x / rms(x) * w per row; one block per row. If qa.q8 or qa.q16 is set and dim % 32 == 0,
// the row is also quantized (decode: the next matvec's input without another launch).
__global__ void lmp_rmsnorm_kernel(float *out, const float *x, const float *w, int dim, float eps,
                                   lmp_act_out qa) {
    lmp_pdl_trigger();
    lmp_pdl_wait();
    __shared__ float red[32];
    const int64_t row = blockIdx.x;
    const float *xr = x + row * dim;
    float *orow = out + row * dim;
    float ss = 0.0f;
    for (int j = threadIdx.x; j < dim; j += blockDim.x) ss = fmaf(xr[j], xr[j], ss);
    ss = lmp_block_sum(ss, red);
    const float sc = 1.0f / sqrtf(ss / (float)dim + eps);
    // the 32 lanes of a warp hold 32 consecutive outputs: one quantization block, made from registers
    const int quant = (qa.q8 || qa.q16) && dim % 32 == 0, lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    for (int j0 = 0; j0 + warp * 32 < dim; j0 += blockDim.x) {
        const int j = j0 + threadIdx.x;
        float o = 0.0f;
        if (j < dim) orow[j] = o = w[j] * (sc * xr[j]);
        if (quant)
            lmp_quantize_block32(o, lane, (row * dim + j) / 32, qa.q8, qa.d8, qa.s8, qa.sum8, qa.q16, qa.d16);
    }
}

// Rotates q(n, n_heads * hd) and k(n, n_kv * hd) in place; token i at position pos0 (or *pos_dev) + i.
// cos_tab, sin_tab: (n_ctx, rope_dim / 2) device. One thread per rotated pair.
__global__ void lmp_rope_kernel(float *q, float *k, int n, int n_heads, int n_kv, int hd, int rope_dim, int neox,
                                int pos0, const int *pos_dev, const float *cos_tab, const float *sin_tab) {
    lmp_pdl_trigger();
    lmp_pdl_wait();
    const int half = rope_dim / 2;
    const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    const int64_t per_tok = (int64_t)(n_heads + n_kv) * half;
    if (idx >= per_tok * n) return;
    const int i = (int)(idx / per_tok), rem = (int)(idx % per_tok), h = rem / half, p = rem % half;
    const int pos = (pos_dev ? *pos_dev : pos0) + i;
    float *v = h < n_heads ? q + ((int64_t)i * n_heads + h) * hd : k + ((int64_t)i * n_kv + (h - n_heads)) * hd;
    const float cs = cos_tab[(int64_t)pos * half + p], sn = sin_tab[(int64_t)pos * half + p];
    const int ia = neox ? p : 2 * p, ib = neox ? p + half : 2 * p + 1;
    const float a = v[ia], b = v[ib];
    v[ia] = __fsub_rn(__fmul_rn(a, cs), __fmul_rn(b, sn));
    v[ib] = __fadd_rn(__fmul_rn(a, sn), __fmul_rn(b, cs));
}

// gate[i] = silu(gate[i]) * up[i]
__global__ void lmp_swiglu_kernel(float *gate, const float *up, int64_t count) {
    lmp_pdl_trigger();
    lmp_pdl_wait();
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < count) {
        const float g = gate[i];
        gate[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

__global__ void lmp_add_kernel(float *x, const float *y, int64_t count) {
    lmp_pdl_trigger();
    lmp_pdl_wait();
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < count) x[i] += y[i];
}

// Stores k, v (n, kv_dim) into the caches (n_ctx, kv_dim) at rows pos0 (or *pos_dev) ...
__global__ void lmp_kv_store_kernel(float *k_cache, float *v_cache, const float *k, const float *v, int n,
                                    int kv_dim, int pos0, const int *pos_dev) {
    lmp_pdl_trigger();
    lmp_pdl_wait();
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= (int64_t)n * kv_dim) return;
    const int64_t base = (int64_t)(pos_dev ? *pos_dev : pos0) * kv_dim;
    k_cache[base + i] = k[i];
    v_cache[base + i] = v[i];
}

// ---- decode attention (one query token), split along the sequence ----
//
// grid (n_kv, n_split): block (g, s) takes the group's n_heads / n_kv query heads over cache rows
// [s * chunk, min((s + 1) * chunk, len)), len = pos + 1. With one valid split it writes out directly;
// otherwise each split writes (max, sum, unnormalised o) to part and the last split of the group to
// finish (an atomic counter per kv head, reset by it) combines them. The block that holds row pos
// first stores the token's k and v there. Shared memory: group * (hd + chunk) floats.
#define LMP_ATT_CHUNK 64

__global__ void lmp_attn_decode_kernel(float *out, const float *q, const float *k, const float *v, float *k_cache,
                                       float *v_cache, int n_heads, int n_kv, int hd, int pos0, const int *pos_dev,
                                       float *part, unsigned *counter, int n_split) {
    lmp_pdl_trigger();
    lmp_pdl_wait();
    extern __shared__ float sm[];
    const int G = n_heads / n_kv, kvh = blockIdx.x, split = blockIdx.y, kv_dim = n_kv * hd;
    const int pos = pos_dev ? *pos_dev : pos0, len = pos + 1;
    const int t0 = split * LMP_ATT_CHUNK, t1 = min(t0 + LMP_ATT_CHUNK, len);
    if (t0 >= len) return;
    const int nvalid = (len + LMP_ATT_CHUNK - 1) / LMP_ATT_CHUNK;
    float *qs = sm;               // (G, hd)
    float *ps = sm + G * hd;      // (G, chunk) scores, then probabilities
    __shared__ float red[32];
    __shared__ float mx_s[64], sum_s[64];  // per head of the group (G <= 64)
    __shared__ int last;
    if (pos >= t0 && pos < t1)
        for (int d = threadIdx.x; d < hd; d += blockDim.x) {
            k_cache[(int64_t)pos * kv_dim + kvh * hd + d] = k[kvh * hd + d];
            v_cache[(int64_t)pos * kv_dim + kvh * hd + d] = v[kvh * hd + d];
        }
    for (int e = threadIdx.x; e < G * hd; e += blockDim.x) qs[e] = q[(int64_t)kvh * G * hd + e];
    __syncthreads();
    const float scale = 1.0f / sqrtf((float)hd);
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
    for (int t = t0 + warp; t < t1; t += nw) {
        const float *kr = k_cache + (int64_t)t * kv_dim + kvh * hd;
        for (int g = 0; g < G; g++) {
            float a = 0.0f;
            for (int d = lane; d < hd; d += 32) a = fmaf(qs[g * hd + d], kr[d], a);
            a = lmp_warp_sum(a);
            if (lane == 0) ps[g * LMP_ATT_CHUNK + (t - t0)] = a * scale;
        }
    }
    __syncthreads();
    for (int g = 0; g < G; g++) {
        float m = -INFINITY;
        for (int t = threadIdx.x; t < t1 - t0; t += blockDim.x) m = fmaxf(m, ps[g * LMP_ATT_CHUNK + t]);
        m = lmp_block_max(m, red);
        float s = 0.0f;
        for (int t = threadIdx.x; t < t1 - t0; t += blockDim.x) {
            const float e = expf(ps[g * LMP_ATT_CHUNK + t] - m);
            ps[g * LMP_ATT_CHUNK + t] = e;
            s += e;
        }
        s = lmp_block_sum(s, red);
        if (threadIdx.x == 0) {
            mx_s[g] = m;
            sum_s[g] = s;
        }
    }
    __syncthreads();
    const size_t pstride = (size_t)hd + 2;  // per (head, split): o[hd], max, sum
    for (int e = threadIdx.x; e < G * hd; e += blockDim.x) {
        const int g = e / hd, d = e % hd;
        float acc = 0.0f;
        for (int t = t0; t < t1; t++) acc = fmaf(ps[g * LMP_ATT_CHUNK + (t - t0)], v_cache[(int64_t)t * kv_dim + kvh * hd + d], acc);
        const int h = kvh * G + g;
        if (nvalid == 1) {
            out[(int64_t)h * hd + d] = acc / sum_s[g];
        } else {
            float *pp = part + ((size_t)h * n_split + split) * pstride;
            pp[d] = acc;
            if (d == 0) {
                pp[hd] = mx_s[g];
                pp[hd + 1] = sum_s[g];
            }
        }
    }
    if (nvalid == 1) return;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
        const unsigned prev = atomicAdd(&counter[kvh], 1u);
        last = prev == (unsigned)nvalid - 1;
        if (last) counter[kvh] = 0;  // ready for the next launch (graph replays)
    }
    __syncthreads();
    if (!last) return;
    __threadfence();
    for (int e = threadIdx.x; e < G * hd; e += blockDim.x) {
        const int g = e / hd, d = e % hd, h = kvh * G + g;
        const float *pp = part + (size_t)h * n_split * pstride;
        float M = -INFINITY;
        for (int s = 0; s < nvalid; s++) M = fmaxf(M, ((volatile const float *)pp)[s * pstride + hd]);
        float num = 0.0f, den = 0.0f;
        for (int s = 0; s < nvalid; s++) {
            const float f = expf(((volatile const float *)pp)[s * pstride + hd] - M);
            num = fmaf(f, ((volatile const float *)pp)[s * pstride + d], num);
            den = fmaf(f, ((volatile const float *)pp)[s * pstride + hd + 1], den);
        }
        out[(int64_t)h * hd + d] = num / den;
    }
}

// ---- decode attention, version 2: RoPE and the output's quantization fused, loads issued together ----
//
// The same split along the sequence (LMP_ATT_CHUNK positions per split, 128 threads a block) for head dims
// 32 * EPL (EPL = 2, 4: 64, 128), but grid (n_kv, P) with P = lmp_attn2_blocks: block y takes splits
// y, y + P, ... in turn. Differences from lmp_attn_decode_kernel:
//  - if rope.cos_tab is set, q and k arrive unrotated and every block rotates its copy (q of the group,
//    the token's k) in shared memory with lmp_rope_kernel's arithmetic; the block that holds row pos stores
//    the rotated k in the cache. q and k in memory are left as they came (only this kernel reads them).
//  - warp w takes positions t0 + 16 w .. t0 + 16 w + 15 and issues the loads of all 16 K rows and V rows
//    before any arithmetic (lane l holds elements EPL l .. EPL l + EPL - 1 of each row), where the first
//    version waited for one row at a time.
//  - the writer of a head's output (the only split, or the last split of the group to finish) also writes
//    its q8_a / q16_a forms (qa; NULL pointers skip), the input of the wo matvec.
// Shared memory (dynamic): G * (HD + LMP_ATT_CHUNK) + HD + 4 * HD floats.
typedef struct lmp_attn_args {
    float *out;                 // (n_heads, HD)
    const float *q, *k, *v;     // (n_heads, HD), (n_kv, HD), (n_kv, HD)
    float *k_cache, *v_cache;   // (n_ctx, n_kv * HD)
    int n_heads, n_kv, pos0;
    const int *pos_dev;         // position in device memory (graph replays), or NULL: pos0
    float *part;                // (n_heads, n_split, HD + 2)
    unsigned *counter;          // (n_kv), zero between launches
    int n_split;
    int rope_dim, neox;         // RoPE of q and k when cos_tab is set
    const float *cos_tab, *sin_tab;
    lmp_act_out qa;
} lmp_attn_args;

static inline size_t lmp_attn2_smem(int G, int hd) { return (size_t)(G * (hd + LMP_ATT_CHUNK) + hd + 4 * hd) * 4; }

template <int EPL>
__global__ void __launch_bounds__(128) lmp_attn_decode2_kernel(const lmp_attn_args a) {
    constexpr int HD = 32 * EPL, PW = LMP_ATT_CHUNK / 4;  // positions per warp
    extern __shared__ float sm[];
    lmp_pdl_trigger();
    lmp_pdl_wait();
    const int G = a.n_heads / a.n_kv, kvh = blockIdx.x, P = gridDim.y, kv_dim = a.n_kv * HD;
    const int pos = a.pos_dev ? *a.pos_dev : a.pos0, len = pos + 1;
    if ((int)blockIdx.y * LMP_ATT_CHUNK >= len) return;
    const int nvalid = (len + LMP_ATT_CHUNK - 1) / LMP_ATT_CHUNK, nblk = min(P, nvalid);
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    float *qs = sm;                          // (G, HD)
    float *ps = qs + G * HD;                 // (G, chunk)
    float *ks = ps + G * LMP_ATT_CHUNK;      // (HD) the token's k
    float *os = ks + HD;                     // (4, HD) per-warp partial outputs
    __shared__ float mx_s[64], sum_s[64];
    __shared__ int last;
    const int holds = (pos / LMP_ATT_CHUNK) % P == (int)blockIdx.y;  // this block's splits include row pos
    for (int e = threadIdx.x; e < G * HD; e += blockDim.x) qs[e] = a.q[(int64_t)kvh * G * HD + e];
    if (holds)
        for (int d = threadIdx.x; d < HD; d += blockDim.x) ks[d] = a.k[kvh * HD + d];
    if (a.cos_tab) {
        __syncthreads();
        const int half = a.rope_dim / 2;
        for (int e = threadIdx.x; e < (G + holds) * half; e += blockDim.x) {
            const int h = e / half, p = e % half;
            float *vv = h < G ? qs + h * HD : ks;
            const float cs = a.cos_tab[(int64_t)pos * half + p], sn = a.sin_tab[(int64_t)pos * half + p];
            const int ia = a.neox ? p : 2 * p, ib = a.neox ? p + half : 2 * p + 1;
            const float x0 = vv[ia], x1 = vv[ib];
            vv[ia] = __fsub_rn(__fmul_rn(x0, cs), __fmul_rn(x1, sn));
            vv[ib] = __fadd_rn(__fmul_rn(x0, sn), __fmul_rn(x1, cs));
        }
    }
    __syncthreads();
    if (holds) {
        for (int d = threadIdx.x; d < HD; d += blockDim.x) {
            a.k_cache[(int64_t)pos * kv_dim + kvh * HD + d] = ks[d];
            a.v_cache[(int64_t)pos * kv_dim + kvh * HD + d] = a.v[kvh * HD + d];
        }
        __syncthreads();  // the block reads row pos back below
    }
    const size_t pstride = (size_t)HD + 2;  // per (head, split): o[HD], max, sum
    for (int split = blockIdx.y; split < nvalid; split += P) {  // uniform over the block
    const int t0 = split * LMP_ATT_CHUNK, t1 = min(t0 + LMP_ATT_CHUNK, len);
    // all K and V rows of this warp in flight at once
    float kr[PW][EPL], vr[PW][EPL];
    const int tw = t0 + warp * PW;
#pragma unroll
    for (int j = 0; j < PW; j++) {
        const int t = tw + j;
        const float *kp = a.k_cache + (int64_t)t * kv_dim + kvh * HD + lane * EPL;
        const float *vp = a.v_cache + (int64_t)t * kv_dim + kvh * HD + lane * EPL;
        if (t < t1) {
            if constexpr (EPL == 4) {
                const float4 k4 = *(const float4 *)kp, v4 = *(const float4 *)vp;
                kr[j][0] = k4.x; kr[j][1] = k4.y; kr[j][2] = k4.z; kr[j][3] = k4.w;
                vr[j][0] = v4.x; vr[j][1] = v4.y; vr[j][2] = v4.z; vr[j][3] = v4.w;
            } else {
#pragma unroll
                for (int e = 0; e < EPL; e++) {
                    kr[j][e] = kp[e];
                    vr[j][e] = vp[e];
                }
            }
        } else {
#pragma unroll
            for (int e = 0; e < EPL; e++) kr[j][e] = vr[j][e] = 0.0f;
        }
    }
    const float scale = 1.0f / sqrtf((float)HD);
    for (int g = 0; g < G; g++) {
        float qv[EPL];
#pragma unroll
        for (int e = 0; e < EPL; e++) qv[e] = qs[g * HD + lane * EPL + e];
#pragma unroll
        for (int j = 0; j < PW; j++) {
            float d = 0.0f;
#pragma unroll
            for (int e = 0; e < EPL; e++) d = fmaf(qv[e], kr[j][e], d);
            d = lmp_warp_sum(d);
            if (lane == 0 && tw + j < t1) ps[g * LMP_ATT_CHUNK + warp * PW + j] = d * scale;
        }
    }
    __syncthreads();
    const int nt = t1 - t0;
    for (int g = warp; g < G; g += 4) {  // softmax of head g by one warp (chunk <= 64: two entries per lane)
        float *pg = ps + g * LMP_ATT_CHUNK;
        const float s0 = lane < nt ? pg[lane] : -INFINITY, s1 = lane + 32 < nt ? pg[lane + 32] : -INFINITY;
        const float m = lmp_warp_max(fmaxf(s0, s1));
        const float e0 = lane < nt ? expf(s0 - m) : 0.0f, e1 = lane + 32 < nt ? expf(s1 - m) : 0.0f;
        if (lane < nt) pg[lane] = e0;
        if (lane + 32 < nt) pg[lane + 32] = e1;
        const float sum = lmp_warp_sum(e0 + e1);
        if (lane == 0) {
            mx_s[g] = m;
            sum_s[g] = sum;
        }
    }
    __syncthreads();
    for (int g = 0; g < G; g++) {
        float o[EPL];
#pragma unroll
        for (int e = 0; e < EPL; e++) o[e] = 0.0f;
#pragma unroll
        for (int j = 0; j < PW; j++) {
            const float p = tw + j < t1 ? ps[g * LMP_ATT_CHUNK + warp * PW + j] : 0.0f;
#pragma unroll
            for (int e = 0; e < EPL; e++) o[e] = fmaf(p, vr[j][e], o[e]);
        }
#pragma unroll
        for (int e = 0; e < EPL; e++) os[warp * HD + lane * EPL + e] = o[e];
        __syncthreads();
        if (threadIdx.x < HD) {  // HD <= 128 = blockDim: whole warps
            const int d = threadIdx.x, h = kvh * G + g;
            const float acc = (os[d] + os[HD + d]) + (os[2 * HD + d] + os[3 * HD + d]);
            if (nvalid == 1) {
                const float r = acc / sum_s[g];
                a.out[(int64_t)h * HD + d] = r;
                if (a.qa.q8 || a.qa.q16)
                    lmp_quantize_block32(r, lane, ((int64_t)h * HD + d) / 32, a.qa.q8, a.qa.d8, a.qa.s8, a.qa.sum8,
                                         a.qa.q16, a.qa.d16);
            } else {
                float *pp = a.part + ((size_t)h * a.n_split + split) * pstride;
                pp[d] = acc;
                if (d == 0) {
                    pp[HD] = mx_s[g];
                    pp[HD + 1] = sum_s[g];
                }
            }
        }
        __syncthreads();
    }
    }  // splits
    if (nvalid == 1) return;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
        const unsigned prev = atomicAdd(&a.counter[kvh], 1u);
        last = prev == (unsigned)nblk - 1;
        if (last) a.counter[kvh] = 0;  // ready for the next launch (graph replays)
    }
    __syncthreads();
    if (!last) return;
    __threadfence();
    for (int e0 = 0; e0 < G * HD; e0 += blockDim.x) {
        if (e0 + warp * 32 >= G * HD) break;  // whole warps: G * HD is a multiple of 32
        const int e = e0 + threadIdx.x, g = e / HD, d = e % HD, h = kvh * G + g;
        const float *pp = a.part + (size_t)h * a.n_split * pstride;
        float M = -INFINITY;
        for (int s = 0; s < nvalid; s++) M = fmaxf(M, __ldcg(pp + s * pstride + HD));
        float num = 0.0f, den = 0.0f;
#pragma unroll 4
        for (int s = 0; s < nvalid; s++) {
            const float f = expf(__ldcg(pp + s * pstride + HD) - M);
            num = fmaf(f, __ldcg(pp + s * pstride + d), num);
            den = fmaf(f, __ldcg(pp + s * pstride + HD + 1), den);
        }
        const float r = num / den;
        a.out[(int64_t)h * HD + d] = r;
        if (a.qa.q8 || a.qa.q16)
            lmp_quantize_block32(r, lane, ((int64_t)h * HD + d) / 32, a.qa.q8, a.qa.d8, a.qa.s8, a.qa.sum8, a.qa.q16,
                                 a.qa.d16);
    }
}

// 1 if lmp_attn_decode2_kernel takes this shape (head dim 64 or 128, at most 64 query heads per kv head).
static inline int lmp_attn2_ok(int n_heads, int n_kv, int hd) {
    return (hd == 64 || hd == 128) && n_heads % n_kv == 0 && n_heads / n_kv <= 64 &&
           lmp_attn2_smem(n_heads / n_kv, hd) <= 200 * 1024;
}
// Blocks per kv head: each takes splits y, y + P, ... (at most ~384 blocks in all, so that the blocks of a
// graph recorded for the whole context, most of which find no positions at a short one, all fit the SMs
// at once: 168 registers a thread leave room for 3 blocks of 128 threads per SM).
static inline int lmp_attn2_blocks(int n_kv, int n_split) {
    int p = 384 / n_kv;
    if (p < 1) p = 1;
    return p < n_split ? p : n_split;
}
static inline cudaError_t lmp_attn_decode2_launch(int pdl, const lmp_attn_args *a, int hd, cudaStream_t st) {
    const dim3 grid((unsigned)a->n_kv, (unsigned)lmp_attn2_blocks(a->n_kv, a->n_split));
    const size_t smem = lmp_attn2_smem(a->n_heads / a->n_kv, hd);
    if (hd == 128) return lmp_launch(pdl, lmp_attn_decode2_kernel<4>, grid, dim3(128), smem, st, *a);
    if (hd == 64) return lmp_launch(pdl, lmp_attn_decode2_kernel<2>, grid, dim3(128), smem, st, *a);
    return cudaErrorInvalidValue;
}

// ---- batched attention: causal softmax over S (n, len) per head, in place ----
// Row i of head h (query position pos0 + i) keeps keys [0, pos0 + i]; later keys become 0.
// grid (n, heads); the rows of head h start at S + h * n * len.
__global__ void lmp_causal_softmax_kernel(float *S, int n, int len, int pos0) {
    __shared__ float red[32];
    const int i = blockIdx.x;
    float *s = S + ((int64_t)blockIdx.y * n + i) * len;
    const int valid = pos0 + i + 1;
    float m = -INFINITY;
    for (int t = threadIdx.x; t < valid; t += blockDim.x) m = fmaxf(m, s[t]);
    m = lmp_block_max(m, red);
    float sum = 0.0f;
    for (int t = threadIdx.x; t < valid; t += blockDim.x) {
        const float e = expf(s[t] - m);
        s[t] = e;
        sum += e;
    }
    sum = lmp_block_sum(sum, red);
    const float inv = 1.0f / sum;
    for (int t = threadIdx.x; t < len; t += blockDim.x) s[t] = t < valid ? s[t] * inv : 0.0f;
}

// ---- evaluation statistics per row of logits (n, vocab), as runtime/perplexity.c ----
// log-softmax with a double sum; nll[i] = -lp[target]; if base_lp: kl[i] = sum exp(b) (b - lp) (>= 0)
// and top1[i] = argmax == base_top[i]; argmax (lowest index on ties) into top[i]; if lp_out, the
// row's log-probabilities are written there (the base keeps them for the other models). One block per row.
__global__ void lmp_eval_stats_kernel(const float *logits, int vocab, const int32_t *target, const float *base_lp,
                                      const int *base_top, float *lp_out, double *nll, double *kl, int *top,
                                      int *top1) {
    __shared__ float redf[32];
    __shared__ double redd[32];
    __shared__ int redi[32];
    const int64_t i = blockIdx.x;
    const float *x = logits + i * vocab;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
    // max and argmax (lowest index among equal maxima)
    float m = -INFINITY;
    int am = 0x7fffffff;
    for (int t = threadIdx.x; t < vocab; t += blockDim.x)
        if (x[t] > m || (x[t] == m && t < am)) {
            m = x[t];
            am = t;
        }
    for (int o = 16; o > 0; o >>= 1) {
        const float m2 = __shfl_xor_sync(0xffffffffu, m, o);
        const int a2 = __shfl_xor_sync(0xffffffffu, am, o);
        if (m2 > m || (m2 == m && a2 < am)) {
            m = m2;
            am = a2;
        }
    }
    if (lane == 0) {
        redf[warp] = m;
        redi[warp] = am;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < nw; w++)
            if (redf[w] > redf[0] || (redf[w] == redf[0] && redi[w] < redi[0])) {
                redf[0] = redf[w];
                redi[0] = redi[w];
            }
    }
    __syncthreads();
    m = redf[0];
    am = redi[0];
    __syncthreads();
    double s = 0.0;
    for (int t = threadIdx.x; t < vocab; t += blockDim.x) s += exp((double)(x[t] - m));
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (lane == 0) redd[warp] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        double tot = 0.0;
        for (int w = 0; w < nw; w++) tot += redd[w];
        redd[0] = tot;
    }
    __syncthreads();
    const float lse = m + (float)log(redd[0]);
    __syncthreads();
    if (lp_out)
        for (int t = threadIdx.x; t < vocab; t += blockDim.x) lp_out[i * vocab + t] = x[t] - lse;
    double k = 0.0;
    if (base_lp) {
        const float *b = base_lp + i * vocab;
        for (int t = threadIdx.x; t < vocab; t += blockDim.x) {
            const double bl = (double)b[t];
            k += exp(bl) * (bl - (double)(x[t] - lse));
        }
        for (int o = 16; o > 0; o >>= 1) k += __shfl_xor_sync(0xffffffffu, k, o);
        if (lane == 0) redd[warp] = k;
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        if (base_lp) {
            double tot = 0.0;
            for (int w = 0; w < nw; w++) tot += redd[w];
            kl[i] = tot < 0 ? 0.0 : tot;
            top1[i] = am == base_top[i];
        }
        nll[i] = -(double)(x[target[i]] - lse);
        top[i] = am;
    }
}

#endif
