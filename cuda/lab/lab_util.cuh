// lab_util.cuh - the kernel lab's harness: abort-on-error checks, a per-run seed, random fills, the
// timing of a kernel over weights rotated through buffers larger than L2 (one CUDA graph of many
// launches, replayed; median of the replays), and the pass/fail tally.
//
// Lab code only: the backend never aborts (cuda/backend_cuda.cu turns errors into lmp_status).
#ifndef LMP_CUDA_LAB_UTIL_CUH
#define LMP_CUDA_LAB_UTIL_CUH

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <time.h>

#include <algorithm>
#include <functional>
#include <vector>

#define CK(call)                                                                                     \
    do {                                                                                             \
        cudaError_t e_ = (call);                                                                     \
        if (e_ != cudaSuccess) {                                                                     \
            fprintf(stderr, "lab: %s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
            exit(1);                                                                                 \
        }                                                                                            \
    } while (0)
#define CKB(call)                                                                                   \
    do {                                                                                            \
        cublasStatus_t s_ = (call);                                                                 \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                          \
            fprintf(stderr, "lab: %s:%d: %s: cublas status %d\n", __FILE__, __LINE__, #call, (int)s_); \
            exit(1);                                                                                \
        }                                                                                           \
    } while (0)

static int lab_passed, lab_failed;
static void lab_check(int ok, const char *what, const char *fmt, ...) {
    if (ok) {
        lab_passed++;
        return;
    }
    lab_failed++;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "FAIL %s: ", what);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

static uint64_t lab_rng = 1;
static uint64_t lab_next(void) {
    lab_rng ^= lab_rng >> 12;
    lab_rng ^= lab_rng << 25;
    lab_rng ^= lab_rng >> 27;
    return lab_rng * 0x2545F4914F6CDD1Dull;
}
static float lab_uniform(void) { return (float)((lab_next() >> 40) / 16777216.0) * 2.0f - 1.0f; }  // [-1, 1)
static float lab_normal(void) {
    float s = 0;
    for (int i = 0; i < 4; i++) s += lab_uniform();
    return s * 0.866f;  // ~unit variance
}
static void lab_fill(float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = lab_normal() * scale;
}

template <class T> static T *lab_dev(size_t count) {
    T *p = NULL;
    CK(cudaMalloc((void **)&p, count * sizeof(T) + 16));
    return p;
}
template <class T> static T *lab_up(const T *h, size_t count) {
    T *p = lab_dev<T>(count);
    CK(cudaMemcpy(p, h, count * sizeof(T), cudaMemcpyHostToDevice));
    return p;
}
template <class T> static std::vector<T> lab_down(const T *d, size_t count) {
    std::vector<T> h(count);
    CK(cudaMemcpy(h.data(), d, count * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
}

// Random device bytes (hash of the index and a seed): codes for timing-only weights.
__global__ void lab_fill_bytes_kernel(uint8_t *p, size_t n, uint64_t seed) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    for (; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint64_t h = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed;
        h ^= h >> 31;
        h *= 0xBF58476D1CE4E5B9ull;
        h ^= h >> 29;
        p[i] = (uint8_t)h;
    }
}
// Random halves in [lo, hi) (scales), or floats / halves / bf16 in [-1, 1) by kind 0/1/2/3.
__global__ void lab_fill_vals_kernel(void *p, size_t n, int kind, float lo, float hi, uint64_t seed) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    for (; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint64_t h = (i + 7) * 0x9E3779B97F4A7C15ull ^ seed;
        h ^= h >> 33;
        h *= 0xff51afd7ed558ccdull;
        h ^= h >> 33;
        float u = (float)(h >> 40) / 16777216.0f;
        float v = lo + (hi - lo) * u;
        if (kind == 0) ((float *)p)[i] = v;
        else if (kind == 1 || kind == 3) ((__half *)p)[i] = __float2half(v);
        else ((__nv_bfloat16 *)p)[i] = __float2bfloat16(v);
    }
}

// Times fn(i) (i = 0..n_launch-1, which buffer set to use is the callee's business) captured as
// one graph and replayed reps times; returns the median microseconds per launch.
static double lab_time_graph(cudaStream_t st, int n_launch, int reps, const std::function<void(int)> &fn) {
    cudaGraph_t g;
    cudaGraphExec_t ge;
    for (int i = 0; i < 2; i++) fn(i);  // warm-up outside the graph (module load, first-touch)
    CK(cudaStreamSynchronize(st));
    CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < n_launch; i++) fn(i);
    CK(cudaStreamEndCapture(st, &g));
    CK(cudaGraphInstantiate(&ge, g, 0));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    CK(cudaGraphLaunch(ge, st));  // warm-up replay
    std::vector<double> t;
    for (int r = 0; r < reps; r++) {
        CK(cudaEventRecord(e0, st));
        CK(cudaGraphLaunch(ge, st));
        CK(cudaEventRecord(e1, st));
        CK(cudaEventSynchronize(e1));
        float ms;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        t.push_back(ms * 1000.0 / n_launch);
    }
    CK(cudaGetLastError());
    CK(cudaGraphExecDestroy(ge));
    CK(cudaGraphDestroy(g));
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

#endif
