// common.cuh - helpers shared by the CUDA kernels (cuda/kernels/*.cuh), the backend and the lab:
// warp reductions, 16-byte loads that bypass L1 for streamed weights, the device matrix layout.
//
// It holds no kernels of its own and no error policy: the backend turns CUDA errors into sticky
// lmp_status values, the lab aborts (cuda/lab/lab_util.cuh).
#ifndef LMP_CUDA_COMMON_CUH
#define LMP_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "format/lmp_types.h"

#define LMP_WARP 32

static __device__ __forceinline__ float lmp_warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
static __device__ __forceinline__ float lmp_warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread gets the result.
// red: __shared__ float[32]. Contains __syncthreads: call from all threads.
static __device__ __forceinline__ float lmp_block_sum(float v, float *red) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
    v = lmp_warp_sum(v);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : 0.0f;
    return lmp_warp_sum(v);
}
static __device__ __forceinline__ float lmp_block_max(float v, float *red) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
    v = lmp_warp_max(v);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : -INFINITY;
    return lmp_warp_max(v);
}

// 16-byte load of data read once (weights): read-only path, not kept in L1 so that the activation
// vector, which every warp re-reads, stays there.
static __device__ __forceinline__ uint4 lmp_ld_stream(const void *p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

static __device__ __forceinline__ float lmp_silu(float g) { return g / (1.0f + expf(-g)); }

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

// ---- programmatic dependent launch (Hopper) ----
// A kernel launched by lmp_launch with pdl set may start while the kernel before it on the stream is still
// running (its blocks fill the SMs that the other's tail leaves idle, and its launch latency is hidden).
// Such a kernel must call lmp_pdl_wait() before it reads or writes anything an earlier kernel reads or
// writes (activations, caches, counters); only read-only data (weights, tables) may be touched before.
// lmp_pdl_trigger() lets the next kernel launch now (it still waits in lmp_pdl_wait for this one to
// finish). Both are no-ops for kernels launched without the attribute.
static __device__ __forceinline__ void lmp_pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
static __device__ __forceinline__ void lmp_pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
// Launches k<<<grid, block, smem, st>>>(args), with the programmatic-serialization attribute when pdl is
// set (every kernel launched this way calls lmp_pdl_wait first, see above). Returns the launch error.
template <typename... KArgs, typename... Args>
static inline cudaError_t lmp_launch(int pdl, void (*k)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t st,
                                     Args... args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = st;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = at;
    cfg.numAttrs = pdl ? 1 : 0;
    return cudaLaunchKernelEx(&cfg, k, (KArgs)args...);
}

// A weight matrix (rows, cols) as the kernels read it; built from the file's bytes by lmp_cuda_repack
// (cuda/kernels/matvec.cuh). For quantized types the block headers are split from the codes so that
// every lane reads its codes with one aligned 16-byte load:
//   F32 / F16 / BF16: q = the elements, row-major (rows, cols), as in the file.
//   Q8_0:             q = int8 codes (rows, cols); d = fp16 scales (rows, cols / 32).
//   q4 family:        q = (rows, cols / 2) bytes in sub-blocks of 32 elements, each 16 bytes with
//                     element j in the low nibble of byte j and element j + 16 in its high nibble
//                     (the q4_0 order, whatever the file's group); d = fp16 scales (rows, cols / G);
//                     m = fp16 minimums (rows, cols / G) for the asymmetric q4_1 types, else NULL.
typedef struct lmp_cuda_mat {
    lmp_dtype type;
    int64_t rows, cols;
    int group;             // elements per scale: 1 (float types), 32, 64 or 128
    int asym;              // 1 for the q4_1 family
    const uint8_t *q;      // codes or elements, see above
    const __half *d;       // (rows, cols / group) or NULL
    const __half *m;       // (rows, cols / group) or NULL
} lmp_cuda_mat;

// Activations of one or more rows in every form a matvec kernel may read. Row i of each array starts
// at i * (its row length); the float row is always there, the quantized forms when the kernel's
// weight type needs them (q8: the 4-bit types, q16: q8_0), both made by lmp_cuda_quantize_act.
typedef struct lmp_cuda_act {
    const float *f;        // (n, cols) float32
    const int8_t *q8;      // (n, cols) q8_a codes
    const int16_t *q16;    // (n, cols) q16_a codes
    const float *d8;       // (n, cols / 32) q8_a scales
    const float *s8;       // (n, cols / 32) q8_a scaled sums d * sum(q) (the asymmetric types' min term)
    const int *sum8;       // (n, cols / 32) q8_a integer sums sum(q) (the symmetric types' -8 term)
    const float *d16;      // (n, cols / 32) q16_a scales
} lmp_cuda_act;

static inline int lmp_cuda_type_group(lmp_dtype t) {
    switch (t) {
    case LMP_DTYPE_Q8_0: case LMP_DTYPE_Q4_0: case LMP_DTYPE_Q4_1: return 32;
    case LMP_DTYPE_Q4_0_G64: case LMP_DTYPE_Q4_1_G64: return 64;
    case LMP_DTYPE_Q4_0_G128: case LMP_DTYPE_Q4_1_G128: return 128;
    default: return 1;
    }
}
static inline int lmp_cuda_type_asym(lmp_dtype t) {
    return t == LMP_DTYPE_Q4_1 || t == LMP_DTYPE_Q4_1_G64 || t == LMP_DTYPE_Q4_1_G128;
}
static inline int lmp_cuda_type_is_q4(lmp_dtype t) {
    return t == LMP_DTYPE_Q4_0 || t == LMP_DTYPE_Q4_1 || t == LMP_DTYPE_Q4_0_G64 || t == LMP_DTYPE_Q4_0_G128 ||
           t == LMP_DTYPE_Q4_1_G64 || t == LMP_DTYPE_Q4_1_G128;
}
// 1 for the types that have CUDA kernels (matvec, batched product, embedding rows): the float types,
// q8_0 and the q4 family; the super-block types (q4_K, q5_K, q6_K) and iq4_nl have none yet.
static inline int lmp_cuda_type_has_kernel(lmp_dtype t) {
    return t == LMP_DTYPE_F32 || t == LMP_DTYPE_F16 || t == LMP_DTYPE_BF16 || t == LMP_DTYPE_Q8_0 ||
           lmp_cuda_type_is_q4(t);
}
// Bytes of the device copy of a (rows, cols) matrix of type t: codes, then scales, then minimums,
// each part starting on a 16-byte boundary (lmp_cuda_mat_carve).
static inline size_t lmp_cuda_align16(size_t n) { return (n + 15) & ~(size_t)15; }
static inline void lmp_cuda_mat_parts(lmp_dtype t, int64_t rows, int64_t cols, size_t *qb, size_t *db, size_t *mb) {
    size_t n = (size_t)rows * (size_t)cols, g = (size_t)lmp_cuda_type_group(t);
    *db = *mb = 0;
    switch (t) {
    case LMP_DTYPE_F32: *qb = n * 4; break;
    case LMP_DTYPE_F16: case LMP_DTYPE_BF16: *qb = n * 2; break;
    case LMP_DTYPE_Q8_0: *qb = n; *db = n / 32 * 2; break;
    default: *qb = n / 2; *db = n / g * 2; *mb = lmp_cuda_type_asym(t) ? *db : 0; break;
    }
}
static inline size_t lmp_cuda_mat_bytes(lmp_dtype t, int64_t rows, int64_t cols) {
    size_t qb, db, mb;
    lmp_cuda_mat_parts(t, rows, cols, &qb, &db, &mb);
    return lmp_cuda_align16(qb) + lmp_cuda_align16(db) + lmp_cuda_align16(mb);
}
// Fills m's fields for a copy that lives at base (lmp_cuda_mat_bytes bytes, 16-byte aligned).
static inline void lmp_cuda_mat_carve(lmp_cuda_mat *m, lmp_dtype t, int64_t rows, int64_t cols, void *base) {
    size_t qb, db, mb;
    lmp_cuda_mat_parts(t, rows, cols, &qb, &db, &mb);
    m->type = t;
    m->rows = rows;
    m->cols = cols;
    m->group = lmp_cuda_type_group(t);
    m->asym = lmp_cuda_type_asym(t);
    m->q = (const uint8_t *)base;
    m->d = db ? (const __half *)((uint8_t *)base + lmp_cuda_align16(qb)) : NULL;
    m->m = mb ? (const __half *)((uint8_t *)base + lmp_cuda_align16(qb) + lmp_cuda_align16(db)) : NULL;
}

#endif
