// types_check.cu - compiles format/lmp_types.h as CUDA (host and device code) so that the block structs
// and the scalar conversions stay valid for the CUDA backend to come. Built by `make cuda-check` (and
// .ci/run) when nvcc is present; nothing here runs.
#include "format/lmp_types.h"

static_assert(sizeof(lmp_block_q8_0) == 34, "q8_0");
static_assert(sizeof(lmp_block_q4_0) == 18, "q4_0");
static_assert(sizeof(lmp_block_q4_1) == 20, "q4_1");
static_assert(sizeof(lmp_block_q8_a) == 40, "q8_a");
static_assert(sizeof(lmp_block_q16_a) == 68, "q16_a");

// Dequantizes q4_0 rows: one thread per element. The reference semantics of docs/format.md.
__global__ void lmp_check_dequant_q4_0(const lmp_block_q4_0 *b, float *y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const lmp_block_q4_0 *blk = b + i / 32;
    int j = i % 32;
    int q = j < 16 ? (blk->qs[j] & 15) : (blk->qs[j - 16] >> 4);
    y[i] = lmp_fp16_to_f32(blk->d) * (float)(q - 8);
}

__global__ void lmp_check_fp16_roundtrip(const float *x, float *y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = lmp_fp16_to_f32(lmp_f32_to_fp16(x[i])) + lmp_bf16_to_f32(lmp_f32_to_bf16(x[i]));
}
