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

// One 32-element block of activations (lane holds v) into q8_a and/or q16_a, as lmp_quantize_act_kernel.
static __device__ __forceinline__ void lmp_quantize_block32(float v, int lane, int64_t b, int8_t *q8, float *d8,
                                                            float *s8, int *sum8, int16_t *q16, float *d16) {
    const float amax = lmp_warp_max(fabsf(v));
    if (q8) {
        const float d = amax / 127.0f;
        float r = d != 0.0f ? roundf(v / d) : 0.0f;
        if (!(r >= -127.0f)) r = r != r ? 0.0f : -127.0f;
        if (r > 127.0f) r = 127.0f;
        const int qi = (int)r;
        q8[b * 32 + lane] = (int8_t)qi;
        int s = qi;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (lane == 0) {
            d8[b] = d;
            s8[b] = d * (float)s;
            sum8[b] = s;
        }
    }
    if (q16) {
        const float d = amax / 32767.0f;
        float r = d != 0.0f ? roundf(v / d) : 0.0f;
        if (!(r >= -32767.0f)) r = r != r ? 0.0f : -32767.0f;
        if (r > 32767.0f) r = 32767.0f;
        q16[b * 32 + lane] = (int16_t)(int)r;
        if (lane == 0) d16[b] = d;
    }
}

// Quantized forms written by a kernel's epilogue (any pointer NULL: that form is skipped).
typedef struct lmp_act_out {
    int8_t *q8;
    float *d8, *s8;
    int *sum8;
    int16_t *q16;
    float *d16;
} lmp_act_out;

// out(n, dim) = x / rms(x) * w per row; one block per row. If qa.q8 or qa.q16 is set and dim % 32 == 0,
// the row is also quantized (decode: the next matvec's input without another launch).
__global__ void lmp_rmsnorm_kernel(float *out, const float *x, const float *w, int dim, float eps,
                                   lmp_act_out qa) {
    __shared__ float red[32];
    const int64_t row = blockIdx.x;
    const float *xr = x + row * dim;
    float *orow = out + row * dim;
    float ss = 0.0f;
    for (int j = threadIdx.x; j < dim; j += blockDim.x) ss = fmaf(xr[j], xr[j], ss);
    ss = lmp_block_sum(ss, red);
    const float sc = 1.0f / sqrtf(ss / (float)dim + eps);
    for (int j = threadIdx.x; j < dim; j += blockDim.x) orow[j] = w[j] * (sc * xr[j]);
    if ((qa.q8 || qa.q16) && dim % 32 == 0) {
        __syncthreads();
        const int lane = threadIdx.x % 32;
        for (int b = threadIdx.x / 32; b < dim / 32; b += blockDim.x / 32)
            lmp_quantize_block32(orow[b * 32 + lane], lane, row * (dim / 32) + b, qa.q8, qa.d8, qa.s8, qa.sum8,
                                 qa.q16, qa.d16);
    }
}

// Rotates q(n, n_heads * hd) and k(n, n_kv * hd) in place; token i at position pos0 (or *pos_dev) + i.
// cos_tab, sin_tab: (n_ctx, rope_dim / 2) device. One thread per rotated pair.
__global__ void lmp_rope_kernel(float *q, float *k, int n, int n_heads, int n_kv, int hd, int rope_dim, int neox,
                                int pos0, const int *pos_dev, const float *cos_tab, const float *sin_tab) {
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
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < count) {
        const float g = gate[i];
        gate[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

__global__ void lmp_add_kernel(float *x, const float *y, int64_t count) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < count) x[i] += y[i];
}

// Stores k, v (n, kv_dim) into the caches (n_ctx, kv_dim) at rows pos0 (or *pos_dev) ...
__global__ void lmp_kv_store_kernel(float *k_cache, float *v_cache, const float *k, const float *v, int n,
                                    int kv_dim, int pos0, const int *pos_dev) {
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
