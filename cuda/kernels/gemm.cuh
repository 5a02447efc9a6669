// gemm.cuh - the batched matrix product y(n, rows) = x(n, cols) W^T of prefill, evaluation and
// calibration, through cuBLAS:
//   F32         cublasSgemm in full FP32 (no TF32), as the CPU's sgemm;
//   F16 / BF16  cublasGemmEx on the weights as stored, activations rounded to the weight's type,
//               FP32 accumulation;
//   q8_0, q4    weights dequantized to f16 tiles (at most ws_bytes at a time) and cublasGemmEx; the
//               activations of the 4-bit types pass through the q8_a quantizer first (so the rounding
//               the CPU applies to them is applied here too) and are then stored as f16.
// It does not choose between this and the matvec kernels (the backend does, by n).
#ifndef LMP_CUDA_GEMM_CUH
#define LMP_CUDA_GEMM_CUH

#include <cublas_v2.h>

#include "cuda/kernels/matvec.cuh"
#include "cuda/kernels/ops.cuh"

// Per-row power-of-two scales that keep f16 activations in range: s[i] = 2^(e - 12) for a row maximum
// in [2^(e-1), 2^e), so x / s stays below 4096 (f16 overflows past 65504; SmolLM2's FFN activations
// reach that) and dividing by s is exact. One block per row; inv[i] = 1 / s[i].
__global__ void lmp_row_scale_kernel(const float *x, int64_t cols, float *s, float *inv) {
    __shared__ float red[32];
    float m = 0.0f;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) m = fmaxf(m, fabsf(x[blockIdx.x * cols + j]));
    m = lmp_block_max(m, red);
    if (threadIdx.x == 0) {
        int e = 0;
        frexpf(m, &e);  // m = f * 2^e, f in [0.5, 1)
        const float sc = m > 0.0f && isfinite(m) ? ldexpf(1.0f, e - 12) : 1.0f;
        s[blockIdx.x] = sc;
        inv[blockIdx.x] = 1.0f / sc;
    }
}
__global__ void lmp_row_unscale_kernel(float *y, int64_t rows, int64_t count, const float *s) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < count) y[i] *= s[i / rows];
}
__global__ void lmp_f32_to_f16_kernel(__half *out, const float *x, int64_t count, int64_t cols, const float *inv) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < count) out[i] = __float2half_rn(x[i] * inv[i / cols]);
}
__global__ void lmp_f32_to_bf16_kernel(__nv_bfloat16 *out, const float *x, int64_t count) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < count) out[i] = __float2bfloat16_rn(x[i]);
}
// x~ = q8 * d (the q8_a dequantized activations), row-scaled, as f16
__global__ void lmp_q8a_to_f16_kernel(__half *out, const int8_t *q8, const float *d8, int64_t count, int64_t cols,
                                      const float *inv) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < count) out[i] = __float2half_rn(__fmul_rn((float)q8[i], d8[i / 32]) * inv[i / cols]);
}

// Scratch the batched product needs: xh (n * cols halves), q8 activations (n * cols bytes + 3 floats
// per 32) for the 4-bit types, and the weight tile wh of ws_bytes.
typedef struct lmp_gemm_ws {
    __half *xh;      // (n, cols)
    int8_t *q8;      // (n, cols)
    float *d8, *s8;  // (n, cols / 32)
    int *sum8;       // (n, cols / 32)
    __half *wh;      // (tile_rows, cols), ws_bytes
    size_t ws_bytes;
    float *rs, *rinv; // (n) per-row activation scales and their inverses
} lmp_gemm_ws;

static inline const char *lmp_cublas_name(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "invalid value";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "architecture mismatch";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "execution failed";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "not supported";
    default: return "error";
    }
}

// y(n, w.rows) = x(n, w.cols) W^T (or y += with accumulate). Returns the first failure as a cuBLAS
// status (CUDA launch errors are left for the caller's cudaGetLastError).
static cublasStatus_t lmp_gemm(cublasHandle_t h, cudaStream_t st, const lmp_cuda_mat *w, const float *x, float *y,
                               int n, int accumulate, const lmp_gemm_ws *ws) {
    const int rows = (int)w->rows, cols = (int)w->cols;
    const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    const int64_t cnt = (int64_t)n * cols;
    const unsigned g = (unsigned)((cnt + 255) / 256);
    cublasSetStream(h, st);
    if (w->type == LMP_DTYPE_F32)
        return cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, rows, n, cols, &one, (const float *)w->q, cols, x, cols, &beta,
                           y, rows);
    if (w->type == LMP_DTYPE_BF16) {
        lmp_f32_to_bf16_kernel<<<g, 256, 0, st>>>((__nv_bfloat16 *)ws->xh, x, cnt);
        return cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, rows, n, cols, &one, w->q, CUDA_R_16BF, cols, ws->xh,
                            CUDA_R_16BF, cols, &beta, y, CUDA_R_32F, rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    }
    // f16 activations, scaled per row into range (undone on y below; accumulate would need y scaled too)
    if (accumulate) return CUBLAS_STATUS_NOT_SUPPORTED;
    lmp_row_scale_kernel<<<(unsigned)n, 256, 0, st>>>(x, cols, ws->rs, ws->rinv);
    if (lmp_cuda_type_is_q4(w->type)) {
        lmp_quantize_act_kernel<<<(unsigned)((cnt + 255) / 256), 256, 0, st>>>(x, cnt / 32, ws->q8, ws->d8, ws->s8,
                                                                                ws->sum8, NULL, NULL);
        lmp_q8a_to_f16_kernel<<<g, 256, 0, st>>>(ws->xh, ws->q8, ws->d8, cnt, cols, ws->rinv);
    } else {
        lmp_f32_to_f16_kernel<<<g, 256, 0, st>>>(ws->xh, x, cnt, cols, ws->rinv);
    }
    const int64_t ycnt = (int64_t)n * rows;
    if (w->type == LMP_DTYPE_F16) {
        cublasStatus_t s = cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, rows, n, cols, &one, w->q, CUDA_R_16F, cols, ws->xh,
                                        CUDA_R_16F, cols, &beta, y, CUDA_R_32F, rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        if (s == CUBLAS_STATUS_SUCCESS)
            lmp_row_unscale_kernel<<<(unsigned)((ycnt + 255) / 256), 256, 0, st>>>(y, rows, ycnt, ws->rs);
        return s;
    }
    int64_t tile = (int64_t)(ws->ws_bytes / ((size_t)cols * 2));
    if (tile > rows) tile = rows;
    if (tile < 1) return CUBLAS_STATUS_INVALID_VALUE;
    for (int64_t r0 = 0; r0 < rows; r0 += tile) {
        const int64_t nr = rows - r0 < tile ? rows - r0 : tile;
        const int64_t chunks = nr * cols / (w->type == LMP_DTYPE_Q8_0 ? 16 : 32);
        lmp_dequant_f16_vec_kernel<<<(unsigned)((chunks + 255) / 256), 256, 0, st>>>(ws->wh, *w, r0, nr);
        cublasStatus_t s = cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)nr, n, cols, &one, ws->wh, CUDA_R_16F, cols,
                                        ws->xh, CUDA_R_16F, cols, &beta, y + r0, CUDA_R_32F, rows, CUBLAS_COMPUTE_32F,
                                        CUBLAS_GEMM_DEFAULT);
        if (s != CUBLAS_STATUS_SUCCESS) return s;
    }
    lmp_row_unscale_kernel<<<(unsigned)((ycnt + 255) / 256), 256, 0, st>>>(y, rows, ycnt, ws->rs);
    return CUBLAS_STATUS_SUCCESS;
}

// Batched causal attention through cuBLAS: for each group offset g and all kv heads at once,
// S = Q K^T * scale (strided batched SGEMM), causal softmax, O = P V. q (n, n_heads * hd), caches
// (n_ctx, n_kv * hd) with rows [0, pos0 + n) filled, out (n, n_heads * hd). S: (n_kv, n, pos0 + n)
// floats of scratch.
static cublasStatus_t lmp_attn_batched(cublasHandle_t h, cudaStream_t st, float *out, const float *q,
                                       const float *k_cache, const float *v_cache, int n, int pos0, int n_heads,
                                       int n_kv, int hd, float *S) {
    const int G = n_heads / n_kv, len = pos0 + n, q_dim = n_heads * hd, kv_dim = n_kv * hd;
    const float scale = 1.0f / sqrtf((float)hd), zero = 0.0f, one = 1.0f;
    cublasSetStream(h, st);
    for (int g = 0; g < G; g++) {
        // S_c(len, n) col-major = K_h (len, hd) x Q_h^T (hd, n)
        cublasStatus_t s = cublasSgemmStridedBatched(h, CUBLAS_OP_T, CUBLAS_OP_N, len, n, hd, &scale, k_cache, kv_dim,
                                                     hd, q + g * hd, q_dim, (long long)G * hd, &zero, S, len,
                                                     (long long)n * len, n_kv);
        if (s != CUBLAS_STATUS_SUCCESS) return s;
        lmp_causal_softmax_kernel<<<dim3((unsigned)n, (unsigned)n_kv), 256, 0, st>>>(S, n, len, pos0);
        // O_h^T (hd, n) = V_h^T (hd, len) x P^T (len, n)
        s = cublasSgemmStridedBatched(h, CUBLAS_OP_N, CUBLAS_OP_N, hd, n, len, &one, v_cache, kv_dim, hd, S, len,
                                      (long long)n * len, &zero, out + g * hd, q_dim, (long long)G * hd, n_kv);
        if (s != CUBLAS_STATUS_SUCCESS) return s;
    }
    return CUBLAS_STATUS_SUCCESS;
}

#endif
