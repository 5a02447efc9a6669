// lab.cu - the CUDA kernel lab (in the spirit of llm.c's dev/cuda): every kernel of cuda/kernels/ against
// the CPU reference on fresh random inputs, then each kernel's versions timed side by side.
//
//   build/cuda/lab [--quick] [--seed N] [--no-bench]
//
// Checks: the activation quantizers bit for bit against format/qtypes.c; every matvec variant of every
// storable type against the type's vec_dot_ref (tolerance from the float sum order: integer block sums
// are exact); the fused pair (silu(gate) * up), three-matrix and accumulate launches; RMSNorm (with its
// quantized output), RoPE in both layouts, SwiGLU, add, embedding rows of every type; decode attention
// (one split, several splits, grouped heads) and the batched (cuBLAS) attention against a scalar
// softmax; the evaluation statistics against runtime/perplexity.c's formulas; the batched product.
// Timings: device-to-device copy and read bandwidth and a bf16 GEMM (the ceilings), matvec per type,
// shape and variant with weights rotated over > 4 x L2 of buffers, cuBLAS f16 matvec beside it, the
// batched product at n = 512, attention. It ends with "N passed, N failed".
#include <stdarg.h>

#include "cuda/kernels/gemm.cuh"
#include "cuda/kernels/matvec.cuh"
#include "cuda/kernels/ops.cuh"
#include "cuda/lab/lab_util.cuh"
#include "format/qtypes.h"

static cudaStream_t g_st;
static cublasHandle_t g_blas;
static int g_quick;
static double g_read_bw, g_copy_bw;  // bytes / s, measured in this run

static const lmp_dtype k_types[] = {LMP_DTYPE_F32,     LMP_DTYPE_F16,      LMP_DTYPE_BF16,     LMP_DTYPE_Q8_0,
                                    LMP_DTYPE_Q4_0,    LMP_DTYPE_Q4_1,     LMP_DTYPE_Q4_0_G64, LMP_DTYPE_Q4_0_G128,
                                    LMP_DTYPE_Q4_1_G64, LMP_DTYPE_Q4_1_G128};
#define N_TYPES ((int)(sizeof k_types / sizeof k_types[0]))

// ---- a matrix: host reference bytes + device copy ----
struct lab_mat {
    lmp_dtype t;
    int64_t rows, cols;
    size_t row_bytes;
    std::vector<uint8_t> raw;   // the file's bytes (rows, row_bytes)
    std::vector<float> deq;     // to_float of raw (rows, cols)
    void *dev = NULL;
    lmp_cuda_mat m;
};

static void lab_mat_make(lab_mat &M, lmp_dtype t, int64_t rows, int64_t cols, float scale) {
    const lmp_type_traits *tr = lmp_type_get(t);
    M.t = t;
    M.rows = rows;
    M.cols = cols;
    M.row_bytes = lmp_type_row_size(t, cols);
    M.raw.resize((size_t)rows * M.row_bytes);
    M.deq.resize((size_t)rows * cols);
    std::vector<float> w((size_t)cols);
    for (int64_t r = 0; r < rows; r++) {
        lab_fill(w.data(), (size_t)cols, scale);
        tr->from_float_ref(w.data(), M.raw.data() + (size_t)r * M.row_bytes, cols);
        tr->to_float(M.raw.data() + (size_t)r * M.row_bytes, M.deq.data() + (size_t)r * cols, cols);
    }
    uint8_t *raw_dev = lab_up(M.raw.data(), M.raw.size());
    CK(cudaMalloc(&M.dev, lmp_cuda_mat_bytes(t, rows, cols)));
    CK(lmp_cuda_mat_build(&M.m, t, rows, cols, M.dev, raw_dev, M.row_bytes, g_st));
    CK(cudaStreamSynchronize(g_st));
    CK(cudaFree(raw_dev));
}
static void lab_mat_free(lab_mat &M) {
    if (M.dev) CK(cudaFree(M.dev));
    M.dev = NULL;
}

// Activations on the device in every form, from host x (n, cols).
struct lab_act {
    float *f;
    int8_t *q8;
    int16_t *q16;
    float *d8, *s8, *d16;
    int *sum8;
    lmp_cuda_act a;
};
static void lab_act_make(lab_act &A, const float *x, int64_t n, int64_t cols) {
    A.f = lab_up(x, (size_t)(n * cols));
    A.q8 = lab_dev<int8_t>((size_t)(n * cols));
    A.q16 = lab_dev<int16_t>((size_t)(n * cols));
    A.d8 = lab_dev<float>((size_t)(n * cols / 32));
    A.s8 = lab_dev<float>((size_t)(n * cols / 32));
    A.d16 = lab_dev<float>((size_t)(n * cols / 32));
    A.sum8 = lab_dev<int>((size_t)(n * cols / 32));
    int64_t nb = n * cols / 32;
    if (nb) lmp_quantize_act_kernel<<<(unsigned)((nb * 32 + 255) / 256), 256, 0, g_st>>>(A.f, nb, A.q8, A.d8, A.s8, A.sum8, A.q16, A.d16);
    CK(cudaGetLastError());
    CK(cudaStreamSynchronize(g_st));
    A.a = {A.f, A.q8, A.q16, A.d8, A.s8, A.sum8, A.d16};
}
static void lab_act_free(lab_act &A) {
    void *p[] = {A.f, A.q8, A.q16, A.d8, A.s8, A.d16, A.sum8};
    for (void *q : p) CK(cudaFree(q));
}

// ---- checks ----

static void check_quantize_act(void) {
    const int64_t cols = 4096 + 32 * 7;
    std::vector<float> x((size_t)cols);
    lab_fill(x.data(), x.size(), 1.0f);
    for (int i = 0; i < 32; i++) x[64 + i] = 0.0f;  // an all-zero block (d = 0)
    x[200] = 1e30f;                                  // a huge value
    lab_act A;
    lab_act_make(A, x.data(), 1, cols);
    std::vector<lmp_block_q8_a> r8((size_t)cols / 32);
    std::vector<lmp_block_q16_a> r16((size_t)cols / 32);
    lmp_type_get(LMP_DTYPE_Q8_A)->from_float_ref(x.data(), r8.data(), cols);
    lmp_type_get(LMP_DTYPE_Q16_A)->from_float_ref(x.data(), r16.data(), cols);
    auto q8 = lab_down(A.q8, (size_t)cols);
    auto q16 = lab_down(A.q16, (size_t)cols);
    auto d8 = lab_down(A.d8, (size_t)cols / 32), s8 = lab_down(A.s8, (size_t)cols / 32),
         d16 = lab_down(A.d16, (size_t)cols / 32);
    auto sum8 = lab_down(A.sum8, (size_t)cols / 32);
    int bad = 0;
    for (int64_t b = 0; b < cols / 32; b++) {
        int isum = 0;
        for (int j = 0; j < 32; j++) {
            bad += q8[b * 32 + j] != r8[b].qs[j];
            bad += q16[b * 32 + j] != r16[b].qs[j];
            isum += r8[b].qs[j];
        }
        bad += memcmp(&d8[b], &r8[b].d, 4) != 0;
        bad += memcmp(&s8[b], &r8[b].s, 4) != 0;
        bad += memcmp(&d16[b], &r16[b].d, 4) != 0;
        bad += sum8[b] != isum;
    }
    lab_check(bad == 0, "quantize_act", "%d values differ from format/qtypes.c's q8_a / q16_a", bad);
    lab_act_free(A);
}

// Reference y = W x for a lab_mat: the type's vec_dot_ref on its vec_dot_type activations, and the
// tolerance: (additions + 8) * 2^-23 * sum |w_j x_j| (only the float sums' order differs).
static void ref_matvec(const lab_mat &M, const float *x, std::vector<float> &y, std::vector<double> &tol) {
    const lmp_type_traits *tr = lmp_type_get(M.t);
    const lmp_type_traits *xt = lmp_type_get(tr->vec_dot_type);
    std::vector<uint8_t> xq(lmp_type_row_size(tr->vec_dot_type, M.cols));
    std::vector<float> xd((size_t)M.cols);
    const void *xv = x;
    if (tr->vec_dot_type != LMP_DTYPE_F32) {
        xt->from_float_ref(x, xq.data(), M.cols);
        xt->to_float(xq.data(), xd.data(), M.cols);
        xv = xq.data();
    } else {
        memcpy(xd.data(), x, xd.size() * 4);
    }
    const double adds = tr->is_quantized ? (double)M.cols / 32 : (double)M.cols;
    y.resize((size_t)M.rows);
    tol.resize((size_t)M.rows);
    for (int64_t r = 0; r < M.rows; r++) {
        tr->vec_dot_ref(M.cols, &y[r], M.raw.data() + (size_t)r * M.row_bytes, xv);
        double a = 0;
        for (int64_t j = 0; j < M.cols; j++) a += fabs((double)M.deq[(size_t)r * M.cols + j] * xd[j]);
        tol[r] = (adds + 8) * ldexp(1.0, -23) * a + 1e-30;
    }
}

static int compare(const char *what, const float *got, const float *ref, const double *tol, size_t n, double tol1) {
    int bad = 0;
    size_t first = 0;
    for (size_t i = 0; i < n; i++) {
        double t = tol ? tol[i] : tol1;
        if (!(fabs((double)got[i] - (double)ref[i]) <= t)) {
            if (!bad) first = i;
            bad++;
        }
    }
    lab_check(bad == 0, what, "%d of %zu outside tolerance; first [%zu] got %.9g ref %.9g tol %.3g", bad, n, first,
              bad ? (double)got[first] : 0.0, bad ? (double)ref[first] : 0.0, bad ? (tol ? tol[first] : tol1) : 0.0);
    return bad;
}

static void check_matvec(void) {
    struct { int64_t rows, cols; } shapes[] = {{67, 512}, {256, 4096}, {9, 1536}};
    for (int ti = 0; ti < N_TYPES; ti++) {
        const lmp_dtype t = k_types[ti];
        for (auto &sh : shapes) {
            if (sh.cols % lmp_type_get(t)->block_size) continue;
            lab_mat M;
            lab_mat_make(M, t, sh.rows, sh.cols, 0.05f);
            const int n = 2;  // two tokens: blockIdx.y
            std::vector<float> x((size_t)(n * sh.cols));
            lab_fill(x.data(), x.size(), 1.0f);
            lab_act A;
            lab_act_make(A, x.data(), n, sh.cols);
            std::vector<float> ref((size_t)(n * sh.rows));
            std::vector<double> tol((size_t)(n * sh.rows));
            for (int i = 0; i < n; i++) {
                std::vector<float> y;
                std::vector<double> tl;
                ref_matvec(M, x.data() + i * sh.cols, y, tl);
                std::copy(y.begin(), y.end(), ref.begin() + i * sh.rows);
                std::copy(tl.begin(), tl.end(), tol.begin() + i * sh.rows);
            }
            float *y = lab_dev<float>((size_t)(n * sh.rows));
            for (int v = 0; v < LMP_MV_N_VARIANTS; v++) {
                CK(cudaMemset(y, 0xff, (size_t)(n * sh.rows) * 4));  // NaN poison: every output must be written
                lmp_mv_args a = {};
                a.nseg = 1;
                a.seg[0].w = M.m;
                a.seg[0].y = y;
                a.x = A.a;
                CK(lmp_mv_variants[v].fn[t](&a, n, g_st));
                auto got = lab_down(y, (size_t)(n * sh.rows));
                char what[128];
                snprintf(what, sizeof what, "matvec %s %lldx%lld %s", lmp_type_name(t), (long long)sh.rows,
                         (long long)sh.cols, lmp_mv_variants[v].name);
                compare(what, got.data(), ref.data(), tol.data(), got.size(), 0);
            }
            CK(cudaFree(y));
            lab_act_free(A);
            lab_mat_free(M);
        }
    }
}

// silu(gate) * up in one launch, three matrices in one launch, and y += W x.
static void check_matvec_fused(void) {
    const lmp_dtype ts[] = {LMP_DTYPE_F16, LMP_DTYPE_Q8_0, LMP_DTYPE_Q4_0, LMP_DTYPE_Q4_1_G128, LMP_DTYPE_F32};
    for (lmp_dtype t : ts) {
        const int64_t cols = 1024, rows = 96;
        lab_mat G, U, K;
        lab_mat_make(G, t, rows, cols, 0.05f);
        lab_mat_make(U, t, rows, cols, 0.05f);
        lab_mat_make(K, t, 32, cols, 0.05f);
        std::vector<float> x((size_t)cols);
        lab_fill(x.data(), x.size(), 1.0f);
        lab_act A;
        lab_act_make(A, x.data(), 1, cols);
        std::vector<float> g, u, k;
        std::vector<double> tg, tu, tk;
        ref_matvec(G, x.data(), g, tg);
        ref_matvec(U, x.data(), u, tu);
        ref_matvec(K, x.data(), k, tk);
        float *y = lab_dev<float>(rows), *y2 = lab_dev<float>(rows), *y3 = lab_dev<float>(32);
        // every fused form through each choice of the backend: the old one (cudadec), the default (v2), and
        // each v2 variant for every slot (lmp_mv_choice_set_all; the qo slot only with the 32-row v2r4u1w1)
        const lmp_mv_choice &def = lmp_mv_choice_default[lmp_mv_family(t)];
        std::vector<lmp_mv_choice> choices = {lmp_mv_choice_old, def};
        for (int v = 0; v < LMP_MV_N_VARIANTS; v++)
            if (lmp_mv_variants[v].v2) {
                lmp_mv_choice c = def;
                c.vtall = c.tall = c.square = c.wide = c.pair = v;
                if (lmp_mv_variants[v].R * LMP_MV_WARPS / lmp_mv_variants[v].W == 32) c.qo = v;
                choices.push_back(c);
            }
        for (const lmp_mv_choice &ch : choices) {
        lmp_mv_choice_set_all(&ch);
        // the lab's shapes are all wide (96 x 1024, 3 segments of 224 rows, 32 x 1024): name the wide slot
        char cn[64];
        snprintf(cn, sizeof cn, "%s/%s", lmp_mv_variants[ch.pair].name, lmp_mv_variants[ch.wide].name);
        const char *qn = lmp_mv_variants[ch.qo].name;
        // pair
        char what0[128];
        CK(cudaMemset(y, 0xff, rows * 4));
        lmp_mv_args a = {};
        a.nseg = 1;
        a.seg[0].w = G.m;
        a.seg[0].w2 = U.m;
        a.seg[0].y = y;
        a.seg[0].y2 = y2;
        a.x = A.a;
        a.pair = 1;
        CK(cudaMemset(y2, 0xff, rows * 4));
        CK(lmp_matvec_launch(&a, 1, g_st));
        auto got = lab_down(y, rows);
        auto gup = lab_down(y2, rows);
        snprintf(what0, sizeof what0, "matvec pair's up output %s %s", lmp_type_name(t), cn);
        compare(what0, gup.data(), u.data(), tu.data(), rows, 0);
        std::vector<float> ref((size_t)rows);
        std::vector<double> tol((size_t)rows);
        for (int64_t i = 0; i < rows; i++) {
            float sg = g[i] / (1.0f + expf(-g[i]));
            ref[i] = sg * u[i];
            // |d(silu(g) u)| <= |u| * 1.1 * dg + |silu(g)| * du, plus float rounding of the product
            tol[i] = 1.1 * fabs(u[i]) * tg[i] + fabs(sg) * tu[i] + 4e-7 * fabs(ref[i]) + 1e-30;
        }
        char what[128];
        snprintf(what, sizeof what, "matvec pair silu(gate)*up %s %s", lmp_type_name(t), cn);
        compare(what, got.data(), ref.data(), tol.data(), rows, 0);
        // pair with the quantizing epilogue (R = 4): same output, and its q8_a / q16_a forms equal to
        // quantizing that output with lmp_quantize_act_kernel, bit for bit; with and without PDL
        for (int pdl = 0; pdl < 2; pdl++) {
            lab_act Q;
            std::vector<float> zero((size_t)rows, 0.0f);
            lab_act_make(Q, zero.data(), 1, rows);
            CK(cudaMemset(Q.q8, 0x55, rows));
            CK(cudaMemset(Q.q16, 0x55, rows * 2));
            CK(cudaMemset(y, 0xff, rows * 4));
            lmp_mv_args aq = a;
            aq.pdl = pdl;
            aq.qo = {Q.q8, Q.d8, Q.s8, Q.sum8, Q.q16, Q.d16};
            CK(lmp_matvec_launch(&aq, 1, g_st));
            CK(cudaStreamSynchronize(g_st));
            auto gq = lab_down(y, rows);
            snprintf(what, sizeof what, "matvec pair +quantized output %s %s pdl %d", lmp_type_name(t), qn, pdl);
            compare(what, gq.data(), ref.data(), tol.data(), rows, 0);
            lab_act R;
            lab_act_make(R, gq.data(), 1, rows);
            auto q8a = lab_down(Q.q8, rows), q8b = lab_down(R.q8, rows);
            auto q16a = lab_down(Q.q16, rows), q16b = lab_down(R.q16, rows);
            auto d8a = lab_down(Q.d8, rows / 32), d8b = lab_down(R.d8, rows / 32);
            auto s8a = lab_down(Q.s8, rows / 32), s8b = lab_down(R.s8, rows / 32);
            auto su_a = lab_down(Q.sum8, rows / 32), su_b = lab_down(R.sum8, rows / 32);
            auto d16a = lab_down(Q.d16, rows / 32), d16b = lab_down(R.d16, rows / 32);
            const int same = q8a == q8b && q16a == q16b && !memcmp(d8a.data(), d8b.data(), rows / 8) &&
                             !memcmp(s8a.data(), s8b.data(), rows / 8) && su_a == su_b &&
                             !memcmp(d16a.data(), d16b.data(), rows / 8);
            lab_check(same, what, "quantized forms differ from quantizing the output");
            lab_act_free(Q);
            lab_act_free(R);
        }
        // three segments: G -> y, U -> y2, K -> y3
        CK(cudaMemset(y, 0xff, rows * 4));
        CK(cudaMemset(y2, 0xff, rows * 4));
        CK(cudaMemset(y3, 0xff, 32 * 4));
        a = {};
        a.nseg = 3;
        a.seg[0].w = G.m;
        a.seg[0].y = y;
        a.seg[1].w = U.m;
        a.seg[1].y = y2;
        a.seg[2].w = K.m;
        a.seg[2].y = y3;
        a.x = A.a;
        CK(lmp_matvec_launch(&a, 1, g_st));
        auto o1 = lab_down(y, rows), o2 = lab_down(y2, rows), o3 = lab_down(y3, 32);
        snprintf(what, sizeof what, "matvec 3 segments %s %s", lmp_type_name(t), cn);
        compare(what, o1.data(), g.data(), tg.data(), rows, 0);
        compare(what, o2.data(), u.data(), tu.data(), rows, 0);
        compare(what, o3.data(), k.data(), tk.data(), 32, 0);
        // residual: y3 = 1 + K x, and the product itself into y (the backend's fused add)
        std::vector<float> ones(32, 1.0f), r3(32);
        CK(cudaMemcpy(y3, ones.data(), 128, cudaMemcpyHostToDevice));
        CK(cudaMemset(y, 0xff, 32 * 4));
        a = {};
        a.nseg = 1;
        a.seg[0].w = K.m;
        a.seg[0].y = y;
        a.seg[0].res = y3;
        a.x = A.a;
        CK(lmp_matvec_launch(&a, 1, g_st));
        o3 = lab_down(y3, 32);
        auto o4 = lab_down(y, 32);
        snprintf(what, sizeof what, "matvec residual's product %s %s", lmp_type_name(t), cn);
        compare(what, o4.data(), k.data(), tk.data(), 32, 0);
        for (int i = 0; i < 32; i++) {
            r3[i] = 1.0f + k[i];
            tk[i] += 1.2e-7 * fabs(r3[i]);
        }
        snprintf(what, sizeof what, "matvec accumulate %s %s", lmp_type_name(t), cn);
        compare(what, o3.data(), r3.data(), tk.data(), 32, 0);
        }
        lmp_mv_choice_set_all(NULL);
        CK(cudaFree(y));
        CK(cudaFree(y2));
        CK(cudaFree(y3));
        lab_act_free(A);
        lab_mat_free(G);
        lab_mat_free(U);
        lab_mat_free(K);
    }
}

static void check_get_rows(void) {
    for (int ti = 0; ti < N_TYPES; ti++) {
        const lmp_dtype t = k_types[ti];
        const int64_t vocab = 100, cols = 256;
        lab_mat E;
        lab_mat_make(E, t, vocab, cols, 0.1f);
        int32_t tok[5] = {0, 99, 17, 17, 42};
        int32_t *td = lab_up(tok, 5);
        float *out = lab_dev<float>(5 * cols);
        CK(cudaMemset(out, 0xff, 5 * cols * 4));
        lmp_get_rows_kernel<<<dim3((unsigned)((cols + 255) / 256), 5), 256, 0, g_st>>>(out, E.m, td);
        CK(cudaGetLastError());
        auto got = lab_down(out, 5 * cols);
        std::vector<float> ref(5 * cols);
        for (int i = 0; i < 5; i++) memcpy(&ref[i * cols], &E.deq[(size_t)tok[i] * cols], cols * 4);
        int bad = memcmp(got.data(), ref.data(), ref.size() * 4) != 0;
        lab_check(!bad, "get_rows", "%s rows differ from to_float", lmp_type_name(t));
        // the batched path's f16 tiles: the same values rounded to f16
        __half *h = lab_dev<__half>(vocab * cols);
        lmp_dequant_f16_kernel<<<(unsigned)((vocab * cols + 255) / 256), 256, 0, g_st>>>(h, E.m, 0, vocab);
        CK(cudaGetLastError());
        auto hh = lab_down(h, vocab * cols);
        int bad2 = 0;
        for (size_t i = 0; i < hh.size(); i++) bad2 += __half2float(hh[i]) != __half2float(__float2half_rn(E.deq[i]));
        lab_check(!bad2, "dequant_f16", "%s: %d values differ", lmp_type_name(t), bad2);
        if (lmp_type_get(t)->is_quantized) {  // the vectorised kernel of the batched path: the same halves
            CK(cudaMemset(h, 0xff, vocab * cols * 2));
            const int64_t chunks = vocab * cols / (t == LMP_DTYPE_Q8_0 ? 16 : 32);
            lmp_dequant_f16_vec_kernel<<<(unsigned)((chunks + 255) / 256), 256, 0, g_st>>>(h, E.m, 0, vocab);
            CK(cudaGetLastError());
            auto hv = lab_down(h, vocab * cols);
            lab_check(memcmp(hv.data(), hh.data(), hh.size() * 2) == 0, "dequant_f16_vec", "%s differs from the scalar kernel",
                      lmp_type_name(t));
        }
        CK(cudaFree(h));
        CK(cudaFree(td));
        CK(cudaFree(out));
        lab_mat_free(E);
    }
}

static void check_rmsnorm(void) {
    const int n = 3, dim = 4096 + 64;
    std::vector<float> x(n * dim), w(dim);
    lab_fill(x.data(), x.size(), 3.0f);
    lab_fill(w.data(), w.size(), 1.0f);
    float *xd = lab_up(x.data(), x.size()), *wd = lab_up(w.data(), w.size()), *od = lab_dev<float>(x.size());
    lab_act Q;
    std::vector<float> zero(n * dim);
    lab_act_make(Q, zero.data(), n, dim);
    lmp_act_out qa = {Q.q8, Q.d8, Q.s8, Q.sum8, Q.q16, Q.d16};
    lmp_rmsnorm_kernel<<<n, 256, 0, g_st>>>(od, xd, wd, dim, 1e-5f, qa);
    CK(cudaGetLastError());
    auto got = lab_down(od, x.size());
    std::vector<float> ref(x.size());
    std::vector<double> tol(x.size());
    for (int i = 0; i < n; i++) {
        float ss = 0;
        for (int j = 0; j < dim; j++) ss += x[i * dim + j] * x[i * dim + j];
        ss = 1.0f / sqrtf(ss / dim + 1e-5f);
        for (int j = 0; j < dim; j++) {
            ref[i * dim + j] = w[j] * (ss * x[i * dim + j]);
            tol[i * dim + j] = (dim + 8) * ldexp(1.0, -24) * fabs(ref[i * dim + j]) + 1e-30;  // sum order
        }
    }
    compare("rmsnorm", got.data(), ref.data(), tol.data(), ref.size(), 0);
    // its quantized output equals quantizing its float output
    lab_act R;
    lab_act_make(R, got.data(), n, dim);
    auto a1 = lab_down(Q.q8, x.size()), a2 = lab_down(R.q8, x.size());
    auto b1 = lab_down(Q.q16, x.size()), b2 = lab_down(R.q16, x.size());
    lab_check(a1 == a2 && b1 == b2, "rmsnorm quantized output", "differs from quantizing the float output");
    lab_act_free(Q);
    lab_act_free(R);
    CK(cudaFree(xd));
    CK(cudaFree(wd));
    CK(cudaFree(od));
}

static void check_rope_swiglu_add(void) {
    for (int neox = 0; neox < 2; neox++) {
        const int n = 3, nh = 6, nkv = 2, hd = 64, rope_dim = 48, n_ctx = 40, pos0 = 17, half = rope_dim / 2;
        std::vector<float> cs(n_ctx * half), sn(n_ctx * half);
        for (int p = 0; p < n_ctx; p++)
            for (int i = 0; i < half; i++) {
                float f = 1.0f / powf(10000.0f, (float)(2 * i) / rope_dim), v = p * f;
                cs[p * half + i] = cosf(v);
                sn[p * half + i] = sinf(v);
            }
        std::vector<float> q(n * nh * hd), k(n * nkv * hd);
        lab_fill(q.data(), q.size(), 1.0f);
        lab_fill(k.data(), k.size(), 1.0f);
        float *qd = lab_up(q.data(), q.size()), *kd = lab_up(k.data(), k.size());
        float *cd = lab_up(cs.data(), cs.size()), *sd = lab_up(sn.data(), sn.size());
        int total = n * (nh + nkv) * half;
        lmp_rope_kernel<<<(total + 255) / 256, 256, 0, g_st>>>(qd, kd, n, nh, nkv, hd, rope_dim, neox, pos0, NULL, cd, sd);
        CK(cudaGetLastError());
        auto gq = lab_down(qd, q.size()), gk = lab_down(kd, k.size());
        auto rot = [&](float *v, int pos) {
            for (int i = 0; i < half; i++) {
                int ia = neox ? i : 2 * i, ib = neox ? i + half : 2 * i + 1;
                float a = v[ia], b = v[ib], c = cs[pos * half + i], s = sn[pos * half + i];
                v[ia] = a * c - b * s;
                v[ib] = a * s + b * c;
            }
        };
        for (int i = 0; i < n; i++) {
            for (int h = 0; h < nh; h++) rot(&q[(i * nh + h) * hd], pos0 + i);
            for (int h = 0; h < nkv; h++) rot(&k[(i * nkv + h) * hd], pos0 + i);
        }
        int bad = memcmp(gq.data(), q.data(), q.size() * 4) || memcmp(gk.data(), k.data(), k.size() * 4);
        lab_check(!bad, neox ? "rope neox" : "rope interleaved", "differs from the CPU rotation");
        CK(cudaFree(qd));
        CK(cudaFree(kd));
        CK(cudaFree(cd));
        CK(cudaFree(sd));
    }
    const int cnt = 10000;
    std::vector<float> g(cnt), u(cnt);
    lab_fill(g.data(), cnt, 3.0f);
    lab_fill(u.data(), cnt, 1.0f);
    float *gd = lab_up(g.data(), cnt), *ud = lab_up(u.data(), cnt);
    lmp_swiglu_kernel<<<(cnt + 255) / 256, 256, 0, g_st>>>(gd, ud, cnt);
    auto gg = lab_down(gd, cnt);
    std::vector<float> ref(cnt);
    std::vector<double> tol(cnt);
    for (int i = 0; i < cnt; i++) {
        ref[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
        tol[i] = 8 * ldexp(1.0, -24) * fabs(ref[i]);  // expf: 2 ulp on the device, plus 3 roundings
    }
    compare("swiglu", gg.data(), ref.data(), tol.data(), cnt, 0);
    lmp_add_kernel<<<(cnt + 255) / 256, 256, 0, g_st>>>(gd, ud, cnt);
    gg = lab_down(gd, cnt);
    auto g0 = gg;
    for (int i = 0; i < cnt; i++) ref[i] = ref[i];
    std::vector<float> gr = lab_down(gd, cnt);
    int bad = 0;
    // add: the previous device result plus u, exactly
    std::vector<float> prev(cnt);
    CK(cudaMemcpy(gd, g0.data(), cnt * 4, cudaMemcpyHostToDevice));
    lmp_add_kernel<<<(cnt + 255) / 256, 256, 0, g_st>>>(gd, ud, cnt);
    gr = lab_down(gd, cnt);
    for (int i = 0; i < cnt; i++) bad += gr[i] != g0[i] + u[i];
    lab_check(!bad, "add", "%d sums differ", bad);
    CK(cudaFree(gd));
    CK(cudaFree(ud));
}

// Scalar causal attention over caches (len, kv_dim) for queries at pos0..pos0+n-1.
static void ref_attention(std::vector<float> &out, const std::vector<float> &q, const std::vector<float> &kc,
                          const std::vector<float> &vc, int n, int pos0, int nh, int nkv, int hd) {
    const int kv_dim = nkv * hd, G = nh / nkv;
    out.assign((size_t)n * nh * hd, 0.0f);
    std::vector<double> s((size_t)pos0 + n);
    for (int i = 0; i < n; i++)
        for (int h = 0; h < nh; h++) {
            int len = pos0 + i + 1;
            double mx = -1e300;
            for (int t = 0; t < len; t++) {
                double a = 0;
                for (int d = 0; d < hd; d++) a += (double)q[((size_t)i * nh + h) * hd + d] * kc[(size_t)t * kv_dim + (h / G) * hd + d];
                s[t] = a / sqrt((double)hd);
                mx = s[t] > mx ? s[t] : mx;
            }
            double sum = 0;
            for (int t = 0; t < len; t++) sum += (s[t] = exp(s[t] - mx));
            for (int d = 0; d < hd; d++) {
                double o = 0;
                for (int t = 0; t < len; t++) o += s[t] * vc[(size_t)t * kv_dim + (h / G) * hd + d];
                out[((size_t)i * nh + h) * hd + d] = (float)(o / sum);
            }
        }
}

// Decode attention version 2 (ops.cuh) against the scalar reference: plain, with RoPE fused (q and the
// token's k rotated on the host as the rope check does; the cache row must hold the rotated k), and its
// quantized output equal to quantizing its float output. Twice per case (the counters reset), with PDL.
static void check_attention2(int nh, int nkv, int hd, int pos0) {
    const int kv_dim = nkv * hd, n_ctx = pos0 + 4, q_dim = nh * hd, n_split = (n_ctx + LMP_ATT_CHUNK - 1) / LMP_ATT_CHUNK;
    for (int rope = 0; rope < 2; rope++) {
        const int rope_dim = hd == 64 ? 48 : hd, half = rope_dim / 2, neox = hd == 64;
        std::vector<float> q(q_dim), kc((size_t)n_ctx * kv_dim), vc((size_t)n_ctx * kv_dim);
        lab_fill(q.data(), q.size(), 1.0f);
        lab_fill(kc.data(), kc.size(), 1.0f);
        lab_fill(vc.data(), vc.size(), 1.0f);
        std::vector<float> cs((size_t)n_ctx * half), sn((size_t)n_ctx * half);
        for (int p = 0; p < n_ctx; p++)
            for (int i = 0; i < half; i++) {
                float f = 1.0f / powf(10000.0f, (float)(2 * i) / rope_dim), v = p * f;
                cs[p * half + i] = cosf(v);
                sn[p * half + i] = sinf(v);
            }
        std::vector<float> knew(kc.begin() + (size_t)pos0 * kv_dim, kc.begin() + (size_t)(pos0 + 1) * kv_dim);
        std::vector<float> vnew(vc.begin() + (size_t)pos0 * kv_dim, vc.begin() + (size_t)(pos0 + 1) * kv_dim);
        std::vector<float> kc0 = kc, vc0 = vc;
        for (size_t i = (size_t)pos0 * kv_dim; i < kc0.size(); i++) kc0[i] = vc0[i] = NAN;
        float *qd = lab_up(q.data(), q.size()), *kd = lab_up(knew.data(), knew.size()), *vd = lab_up(vnew.data(), vnew.size());
        float *kcd = lab_up(kc0.data(), kc0.size()), *vcd = lab_up(vc0.data(), vc0.size());
        float *cd = lab_up(cs.data(), cs.size()), *sd = lab_up(sn.data(), sn.size());
        float *od = lab_dev<float>(q.size());
        CK(cudaMemset(od, 0xff, q.size() * 4));
        if (rope) {  // the reference rotates on the host
            auto rot = [&](float *v) {
                for (int i = 0; i < half; i++) {
                    int ia = neox ? i : 2 * i, ib = neox ? i + half : 2 * i + 1;
                    float a = v[ia], b = v[ib], c = cs[pos0 * half + i], s = sn[pos0 * half + i];
                    v[ia] = a * c - b * s;
                    v[ib] = a * s + b * c;
                }
            };
            for (int h = 0; h < nh; h++) rot(&q[(size_t)h * hd]);
            for (int h = 0; h < nkv; h++) rot(&kc[(size_t)pos0 * kv_dim + (size_t)h * hd]);
        }
        std::vector<float> ref;
        ref_attention(ref, q, kc, vc, 1, pos0, nh, nkv, hd);
        lab_act Q;
        std::vector<float> zero((size_t)q_dim, 0.0f);
        lab_act_make(Q, zero.data(), 1, q_dim);
        float *part = lab_dev<float>((size_t)nh * n_split * (hd + 2));
        unsigned *cnt = lab_dev<unsigned>(nkv);
        CK(cudaMemset(cnt, 0, nkv * 4));
        lmp_attn_args a = {};
        a.out = od;
        a.q = qd;
        a.k = kd;
        a.v = vd;
        a.k_cache = kcd;
        a.v_cache = vcd;
        a.n_heads = nh;
        a.n_kv = nkv;
        a.pos0 = pos0;
        a.part = part;
        a.counter = cnt;
        a.n_split = n_split;
        if (rope) {
            a.rope_dim = rope_dim;
            a.neox = neox;
            a.cos_tab = cd;
            a.sin_tab = sd;
        }
        a.qa = {Q.q8, Q.d8, Q.s8, Q.sum8, Q.q16, Q.d16};
        for (int rep = 0; rep < 2; rep++) CK(lmp_attn_decode2_launch(rep, &a, hd, g_st));
        CK(cudaStreamSynchronize(g_st));
        char what[128];
        snprintf(what, sizeof what, "attention decode v2%s heads %d/%d hd %d pos %d", rope ? " +rope" : "", nh, nkv, hd, pos0);
        auto got = lab_down(od, q.size());
        compare(what, got.data(), ref.data(), NULL, got.size(), 2e-5 * sqrt((double)(pos0 + 1)) + 1e-5);
        auto kcg = lab_down(kcd, kc.size());
        lab_check(memcmp(kcg.data(), kc.data(), (size_t)(pos0 + 1) * kv_dim * 4) == 0, what,
                  "k cache rows not stored (or not rotated as the rope kernel does)");
        lab_act R;
        lab_act_make(R, got.data(), 1, q_dim);
        auto q8a = lab_down(Q.q8, q_dim), q8b = lab_down(R.q8, q_dim);
        auto q16a = lab_down(Q.q16, q_dim), q16b = lab_down(R.q16, q_dim);
        auto d8a = lab_down(Q.d8, q_dim / 32), d8b = lab_down(R.d8, q_dim / 32);
        auto su_a = lab_down(Q.sum8, q_dim / 32), su_b = lab_down(R.sum8, q_dim / 32);
        auto d16a = lab_down(Q.d16, q_dim / 32), d16b = lab_down(R.d16, q_dim / 32);
        lab_check(q8a == q8b && q16a == q16b && !memcmp(d8a.data(), d8b.data(), q_dim / 8) && su_a == su_b &&
                      !memcmp(d16a.data(), d16b.data(), q_dim / 8),
                  what, "quantized output differs from quantizing the float output");
        lab_act_free(Q);
        lab_act_free(R);
        for (float *p : {qd, kd, vd, kcd, vcd, od, cd, sd, part}) CK(cudaFree(p));
        CK(cudaFree(cnt));
    }
}

static void check_attention(void) {
    struct { int nh, nkv, hd, pos0, n; } cases[] = {
        {8, 4, 8, 0, 1},    {8, 4, 8, 37, 1},    {9, 3, 64, 255, 1}, {9, 3, 64, 256, 1}, {32, 32, 128, 1000, 1},
        {4, 1, 64, 700, 1}, {9, 3, 64, 0, 100},  {8, 4, 8, 5, 40},   {4, 2, 128, 300, 64},
    };
    struct { int nh, nkv, hd, pos0; } c2[] = {{9, 3, 64, 255}, {9, 3, 64, 256}, {32, 32, 128, 1000}, {4, 1, 64, 700},
                                              {8, 2, 128, 40}, {4, 4, 64, 0}, {16, 2, 128, 63}, {16, 2, 128, 64},
                                              {128, 128, 64, 520}, {96, 96, 128, 2000}};  // 3, 5 splits a block
    for (auto &c : c2) check_attention2(c.nh, c.nkv, c.hd, c.pos0);
    for (auto &c : cases) {
        const int kv_dim = c.nkv * c.hd, n_ctx = c.pos0 + c.n + 3, q_dim = c.nh * c.hd;
        std::vector<float> q((size_t)c.n * q_dim), kc((size_t)n_ctx * kv_dim), vc((size_t)n_ctx * kv_dim);
        lab_fill(q.data(), q.size(), 1.0f);
        lab_fill(kc.data(), kc.size(), 1.0f);
        lab_fill(vc.data(), vc.size(), 1.0f);
        std::vector<float> knew(kc.begin() + (size_t)c.pos0 * kv_dim, kc.begin() + (size_t)(c.pos0 + c.n) * kv_dim);
        std::vector<float> vnew(vc.begin() + (size_t)c.pos0 * kv_dim, vc.begin() + (size_t)(c.pos0 + c.n) * kv_dim);
        std::vector<float> kc0 = kc, vc0 = vc;
        for (size_t i = (size_t)c.pos0 * kv_dim; i < kc0.size(); i++) kc0[i] = vc0[i] = NAN;  // must be stored
        float *qd = lab_up(q.data(), q.size()), *kd = lab_up(knew.data(), knew.size()),
              *vd = lab_up(vnew.data(), vnew.size());
        float *kcd = lab_up(kc0.data(), kc0.size()), *vcd = lab_up(vc0.data(), vc0.size());
        float *od = lab_dev<float>(q.size());
        CK(cudaMemset(od, 0xff, q.size() * 4));
        std::vector<float> ref;
        ref_attention(ref, q, kc, vc, c.n, c.pos0, c.nh, c.nkv, c.hd);
        char what[128];
        if (c.n == 1) {
            const int n_split = (n_ctx + LMP_ATT_CHUNK - 1) / LMP_ATT_CHUNK;
            float *part = lab_dev<float>((size_t)c.nh * n_split * (c.hd + 2));
            unsigned *cnt = lab_dev<unsigned>(c.nkv);
            CK(cudaMemset(cnt, 0, c.nkv * 4));
            size_t smem = (size_t)(c.nh / c.nkv) * (c.hd + LMP_ATT_CHUNK) * 4;
            for (int rep = 0; rep < 2; rep++) {  // twice: the counters must have been reset
                lmp_attn_decode_kernel<<<dim3(c.nkv, n_split), 128, smem, g_st>>>(od, qd, kd, vd, kcd, vcd, c.nh, c.nkv,
                                                                                 c.hd, c.pos0, NULL, part, cnt, n_split);
                CK(cudaGetLastError());
            }
            CK(cudaFree(part));
            CK(cudaFree(cnt));
            snprintf(what, sizeof what, "attention decode heads %d/%d hd %d pos %d", c.nh, c.nkv, c.hd, c.pos0);
        } else {
            lmp_kv_store_kernel<<<(c.n * kv_dim + 255) / 256, 256, 0, g_st>>>(kcd, vcd, kd, vd, c.n, kv_dim, c.pos0, NULL);
            float *S = lab_dev<float>((size_t)c.nkv * c.n * (c.pos0 + c.n));
            CKB(lmp_attn_batched(g_blas, g_st, od, qd, kcd, vcd, c.n, c.pos0, c.nh, c.nkv, c.hd, S));
            CK(cudaFree(S));
            snprintf(what, sizeof what, "attention batched heads %d/%d hd %d pos %d n %d", c.nh, c.nkv, c.hd, c.pos0, c.n);
        }
        auto got = lab_down(od, q.size());
        // softmax-weighted means of unit-scale values: float sums over len terms
        compare(what, got.data(), ref.data(), NULL, got.size(), 2e-5 * sqrt((double)(c.pos0 + c.n)) + 1e-5);
        auto kcg = lab_down(kcd, kc.size());
        lab_check(memcmp(kcg.data(), kc.data(), (size_t)(c.pos0 + c.n) * kv_dim * 4) == 0, what, "k cache rows not stored");
        for (float *p : {qd, kd, vd, kcd, vcd, od}) CK(cudaFree(p));
    }
}

static void check_eval_stats(void) {
    const int n = 5, vocab = 49152;
    std::vector<float> lg(n * vocab), base(n * vocab);
    lab_fill(lg.data(), lg.size(), 3.0f);
    lab_fill(base.data(), base.size(), 3.0f);
    lg[2 * vocab + 100] = lg[2 * vocab + 200] = 50.0f;  // a tie: the lowest index wins
    int32_t tgt[n] = {0, 5, 100, vocab - 1, 77};
    // base log-probs and top on the CPU, as perplexity.c
    std::vector<float> blp = base;
    std::vector<int> btop(n);
    for (int i = 0; i < n; i++) {
        float *r = &blp[i * vocab];
        float mx = r[0];
        for (int v = 1; v < vocab; v++) mx = r[v] > mx ? r[v] : mx;
        double s = 0;
        for (int v = 0; v < vocab; v++) s += exp((double)(r[v] - mx));
        float lse = mx + (float)log(s);
        for (int v = 0; v < vocab; v++) r[v] -= lse;
        int am = 0;
        for (int v = 1; v < vocab; v++) am = r[v] > r[am] ? v : am;
        btop[i] = am;
    }
    btop[2] = 100;
    float *ld = lab_up(lg.data(), lg.size()), *bd = lab_up(blp.data(), blp.size()), *lpo = lab_dev<float>(lg.size());
    int32_t *td = lab_up(tgt, n);
    int *btd = lab_up(btop.data(), n), *topd = lab_dev<int>(n), *t1d = lab_dev<int>(n);
    double *nll = lab_dev<double>(n), *kl = lab_dev<double>(n);
    lmp_eval_stats_kernel<<<n, 512, 0, g_st>>>(ld, vocab, td, bd, btd, lpo, nll, kl, topd, t1d);
    CK(cudaGetLastError());
    auto gn = lab_down(nll, n), gk = lab_down(kl, n);
    auto gt = lab_down(topd, n), g1 = lab_down(t1d, n);
    auto glp = lab_down(lpo, lg.size());
    int bad = 0;
    for (int i = 0; i < n; i++) {
        std::vector<float> r(lg.begin() + i * vocab, lg.begin() + (i + 1) * vocab);
        float mx = r[0];
        for (int v = 1; v < vocab; v++) mx = r[v] > mx ? r[v] : mx;
        double s = 0;
        for (int v = 0; v < vocab; v++) s += exp((double)(r[v] - mx));
        float lse = mx + (float)log(s);
        int am = 0;
        for (int v = 0; v < vocab; v++) {
            r[v] -= lse;
            if (r[v] > r[am]) am = v;
        }
        double k = 0;
        for (int v = 0; v < vocab; v++) k += exp((double)blp[i * vocab + v]) * ((double)blp[i * vocab + v] - (double)r[v]);
        if (k < 0) k = 0;
        double nl = -(double)r[tgt[i]];
        // the double sums differ only in order; lse is one float rounding of the same value
        bad += fabs(gn[i] - nl) > 4e-6 * (1 + fabs(nl));
        bad += fabs(gk[i] - k) > 1e-5 * (1 + k);
        bad += gt[i] != am || g1[i] != (am == btop[i]);
        for (int v = 0; v < vocab; v++) bad += fabsf(glp[i * vocab + v] - r[v]) > 4e-6f * (1 + fabsf(r[v]));
    }
    lab_check(bad == 0, "eval_stats", "%d values differ from perplexity.c's formulas", bad);
    lab_check(gt[2] == 100, "eval_stats tie", "argmax of a tie is %d, not the lowest index 100", gt[2]);
    for (void *p : {(void *)ld, (void *)bd, (void *)lpo, (void *)td, (void *)btd, (void *)topd, (void *)t1d,
                    (void *)nll, (void *)kl})
        CK(cudaFree(p));
}

static lmp_gemm_ws lab_gemm_ws(int64_t n, int64_t cols, size_t ws_bytes) {
    lmp_gemm_ws ws;
    ws.xh = lab_dev<__half>((size_t)(n * cols));
    ws.q8 = lab_dev<int8_t>((size_t)(n * cols));
    ws.d8 = lab_dev<float>((size_t)(n * cols / 32));
    ws.s8 = lab_dev<float>((size_t)(n * cols / 32));
    ws.sum8 = lab_dev<int>((size_t)(n * cols / 32));
    ws.wh = (__half *)lab_dev<uint8_t>(ws_bytes);
    ws.ws_bytes = ws_bytes;
    ws.rs = lab_dev<float>((size_t)n);
    ws.rinv = lab_dev<float>((size_t)n);
    return ws;
}
static void lab_gemm_ws_free(lmp_gemm_ws &ws) {
    for (void *p : {(void *)ws.xh, (void *)ws.q8, (void *)ws.d8, (void *)ws.s8, (void *)ws.sum8, (void *)ws.wh,
                    (void *)ws.rs, (void *)ws.rinv})
        CK(cudaFree(p));
}

static void check_gemm(void) {
    for (int ti = 0; ti < N_TYPES; ti++) {
        const lmp_dtype t = k_types[ti];
        const int64_t rows = 200, cols = 512;
        const int n = 37;
        lab_mat M;
        lab_mat_make(M, t, rows, cols, 0.05f);
        std::vector<float> x((size_t)(n * cols));
        lab_fill(x.data(), x.size(), 1.0f);
        for (int64_t j = 0; j < cols; j++) x[3 * cols + j] *= 3e5f;  // a row far past f16's range (65504)
        float *xd = lab_up(x.data(), x.size()), *yd = lab_dev<float>((size_t)(n * rows));
        lmp_gemm_ws ws = lab_gemm_ws(n, cols, 64 * cols * 2);  // tiles of 64 rows: several tiles
        CK(cudaMemset(yd, 0xff, (size_t)(n * rows) * 4));
        CKB(lmp_gemm(g_blas, g_st, &M.m, xd, yd, n, 0, &ws));
        CK(cudaGetLastError());
        auto got = lab_down(yd, (size_t)(n * rows));
        // reference: the activations the path uses (q8_a-rounded for the 4-bit types), double sums;
        // tolerance: f16 rounding of weights and activations (2^-11 each) for the 16-bit paths, f32 sums.
        const lmp_type_traits *tr = lmp_type_get(t);
        std::vector<float> xa(x);
        if (lmp_cuda_type_is_q4(t))
            for (int i = 0; i < n; i++) {
                std::vector<lmp_block_q8_a> b((size_t)cols / 32);
                lmp_type_get(LMP_DTYPE_Q8_A)->from_float_ref(&x[i * cols], b.data(), cols);
                lmp_type_get(LMP_DTYPE_Q8_A)->to_float(b.data(), &xa[i * cols], cols);
            }
        const double rel = t == LMP_DTYPE_F32 ? 0 : t == LMP_DTYPE_BF16 ? 2 * ldexp(1.0, -8) : 2 * ldexp(1.0, -11);
        std::vector<float> ref((size_t)(n * rows));
        std::vector<double> tol((size_t)(n * rows));
        for (int i = 0; i < n; i++)
            for (int64_t r = 0; r < rows; r++) {
                double s = 0, a = 0;
                for (int64_t j = 0; j < cols; j++) {
                    double p = (double)M.deq[r * cols + j] * xa[i * cols + j];
                    s += p;
                    a += fabs(p);
                }
                ref[i * rows + r] = (float)s;
                tol[i * rows + r] = (rel + (cols + 8) * ldexp(1.0, -24)) * a + 1e-30;
            }
        (void)tr;
        char what[64];
        snprintf(what, sizeof what, "gemm %s n %d", lmp_type_name(t), n);
        compare(what, got.data(), ref.data(), tol.data(), got.size(), 0);
        lab_gemm_ws_free(ws);
        CK(cudaFree(xd));
        CK(cudaFree(yd));
        lab_mat_free(M);
    }
}

// ---- timings ----

__global__ void lab_read_kernel(const uint4 *p, size_t n, unsigned *out) {
    unsigned acc = 0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint4 v = lmp_ld_stream(p + i);
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (acc == 0x12345678u) *out = acc;  // keeps the loads
}

static void bench_ceilings(void) {
    const size_t bytes = (size_t)2 << 30;
    uint8_t *a = lab_dev<uint8_t>(bytes), *b = lab_dev<uint8_t>(bytes);
    lab_fill_bytes_kernel<<<1024, 256, 0, g_st>>>(a, bytes, 1);
    unsigned *o = lab_dev<unsigned>(1);
    double us = lab_time_graph(g_st, 4, 10, [&](int i) { CK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, g_st)); });
    g_copy_bw = 2.0 * bytes / (us * 1e-6);
    int sms;
    CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    us = lab_time_graph(g_st, 4, 10, [&](int i) { lab_read_kernel<<<sms * 8, 256, 0, g_st>>>((const uint4 *)a, bytes / 16, o); });
    g_read_bw = bytes / (us * 1e-6);
    printf("ceilings: device-to-device copy %.2f TB/s (bytes read + written), read-only kernel %.2f TB/s\n",
           g_copy_bw / 1e12, g_read_bw / 1e12);
    // bf16 GEMM 8192^3 on random data
    const int N = 8192;
    __nv_bfloat16 *A = (__nv_bfloat16 *)lab_dev<uint8_t>((size_t)N * N * 2), *B = (__nv_bfloat16 *)lab_dev<uint8_t>((size_t)N * N * 2);
    float *C = lab_dev<float>((size_t)N * N);
    lab_fill_vals_kernel<<<1024, 256, 0, g_st>>>(A, (size_t)N * N, 2, -1, 1, 3);
    lab_fill_vals_kernel<<<1024, 256, 0, g_st>>>(B, (size_t)N * N, 2, -1, 1, 4);
    const float one = 1, zero = 0;
    CKB(cublasSetStream(g_blas, g_st));
    us = lab_time_graph(g_st, 3, 5, [&](int i) {
        CKB(cublasGemmEx(g_blas, CUBLAS_OP_T, CUBLAS_OP_N, N, N, N, &one, A, CUDA_R_16BF, N, B, CUDA_R_16BF, N, &zero,
                         C, CUDA_R_32F, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    });
    printf("ceilings: cuBLAS bf16 GEMM 8192^3 (f32 out) %.0f TFLOP/s\n", 2.0 * N * N * (double)N / (us * 1e-6) / 1e12);
    for (void *p : {(void *)a, (void *)b, (void *)o, (void *)A, (void *)B, (void *)C}) CK(cudaFree(p));
}

// Timing-only matrices: random codes and scales straight on the device (no host quantization).
static void lab_rand_mat(lmp_cuda_mat *m, void **base, lmp_dtype t, int64_t rows, int64_t cols, uint64_t seed) {
    size_t bytes = lmp_cuda_mat_bytes(t, rows, cols);
    CK(cudaMalloc(base, bytes));
    lmp_cuda_mat_carve(m, t, rows, cols, *base);
    size_t n = (size_t)rows * cols;
    if (t == LMP_DTYPE_F32) lab_fill_vals_kernel<<<2048, 256, 0, g_st>>>(*base, n, 0, -1, 1, seed);
    else if (t == LMP_DTYPE_F16) lab_fill_vals_kernel<<<2048, 256, 0, g_st>>>(*base, n, 1, -1, 1, seed);
    else if (t == LMP_DTYPE_BF16) lab_fill_vals_kernel<<<2048, 256, 0, g_st>>>(*base, n, 2, -1, 1, seed);
    else {
        size_t qb, db, mb;
        lmp_cuda_mat_parts(t, rows, cols, &qb, &db, &mb);
        lab_fill_bytes_kernel<<<2048, 256, 0, g_st>>>((uint8_t *)m->q, qb, seed);
        lab_fill_vals_kernel<<<2048, 256, 0, g_st>>>((void *)m->d, db / 2, 1, 0.001f, 0.01f, seed + 1);
        if (mb) lab_fill_vals_kernel<<<2048, 256, 0, g_st>>>((void *)m->m, mb / 2, 1, -0.05f, 0.0f, seed + 2);
    }
    CK(cudaGetLastError());
}

struct mv_result {
    lmp_dtype t;
    int64_t rows, cols;
    double us[LMP_MV_N_VARIANTS];
    double cublas_us;
};
static std::vector<mv_result> g_mv;

static void bench_matvec(void) {
    struct { int64_t rows, cols; } shapes[] = {{4096, 14336}, {14336, 4096}, {4096, 4096}, {11008, 4096}, {4096, 11008}, {32000, 4096}};
    const int n_shapes = g_quick ? 2 : 6;
    const lmp_dtype ts[] = {LMP_DTYPE_F32,  LMP_DTYPE_F16,      LMP_DTYPE_BF16,      LMP_DTYPE_Q8_0,
                            LMP_DTYPE_Q4_0, LMP_DTYPE_Q4_1,     LMP_DTYPE_Q4_0_G64,  LMP_DTYPE_Q4_0_G128,
                            LMP_DTYPE_Q4_1_G64, LMP_DTYPE_Q4_1_G128};
    printf("\nmatvec (batch 1), weights rotated over buffers of > 256 MB (L2 60 MB); effective weight TB/s\n");
    printf("| type | rows x cols | MB |");
    for (int v = 0; v < LMP_MV_N_VARIANTS; v++) printf(" %s |", lmp_mv_variants[v].name);
    printf(" r1u4 PDL | r4u1 PDL | best TB/s | %% of read bw | cuBLAS f16 TB/s |\n|---|---|---:|");
    for (int v = 0; v < LMP_MV_N_VARIANTS + 2; v++) printf("---:|");
    printf("---:|---:|---:|\n");
    for (int si = 0; si < n_shapes; si++) {
        const int64_t rows = shapes[si].rows, cols = shapes[si].cols;
        std::vector<float> x((size_t)cols);
        lab_fill(x.data(), x.size(), 1.0f);
        lab_act A;
        lab_act_make(A, x.data(), 1, cols);
        float *y = lab_dev<float>(rows);
        double f16_us = 0;
        for (lmp_dtype t : ts) {
            const size_t bytes = lmp_cuda_mat_bytes(t, rows, cols);
            int nbuf = (int)((size_t)(256 << 20) / bytes) + 1;
            if (nbuf < 2) nbuf = 2;
            std::vector<lmp_cuda_mat> m(nbuf);
            std::vector<void *> base(nbuf);
            for (int b = 0; b < nbuf; b++) lab_rand_mat(&m[b], &base[b], t, rows, cols, 100 + b);
            mv_result res = {t, rows, cols, {0}, 0};
            const int nl = nbuf * (nbuf < 20 ? 40 / nbuf + 1 : 1);
            double best = 1e30;
            for (int v = 0; v < LMP_MV_N_VARIANTS; v++) {
                res.us[v] = lab_time_graph(g_st, nl, 15, [&](int i) {
                    lmp_mv_args a = {};
                    a.nseg = 1;
                    a.seg[0].w = m[i % nbuf];
                    a.seg[0].y = y;
                    a.x = A.a;
                    CK(lmp_mv_variants[v].fn[t](&a, 1, g_st));
                });
                best = std::min(best, res.us[v]);
            }
            double pdl_us[2];  // back-to-back launches with programmatic dependent launch (the backend's default)
            for (int k = 0; k < 2; k++) {
                const int v = k ? 5 : 2;
                pdl_us[k] = lab_time_graph(g_st, nl, 15, [&](int i) {
                    lmp_mv_args a = {};
                    a.nseg = 1;
                    a.seg[0].w = m[i % nbuf];
                    a.seg[0].y = y;
                    a.x = A.a;
                    a.pdl = 1;
                    CK(lmp_mv_variants[v].fn[t](&a, 1, g_st));
                });
                best = std::min(best, pdl_us[k]);
            }
            if (t == LMP_DTYPE_F16) {  // the cuBLAS peer on the same f16 buffers
                __half *xh = lab_dev<__half>(cols);
                float *one1 = lab_dev<float>(1);
                const float onev = 1.0f;
                CK(cudaMemcpy(one1, &onev, 4, cudaMemcpyHostToDevice));
                lmp_f32_to_f16_kernel<<<(unsigned)((cols + 255) / 256), 256, 0, g_st>>>(xh, A.f, cols, cols, one1);
                const float one = 1, zero = 0;
                CKB(cublasSetStream(g_blas, g_st));
                f16_us = lab_time_graph(g_st, nl, 15, [&](int i) {
                    CKB(cublasGemmEx(g_blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)rows, 1, (int)cols, &one, m[i % nbuf].q,
                                     CUDA_R_16F, (int)cols, xh, CUDA_R_16F, (int)cols, &zero, y, CUDA_R_32F, (int)rows,
                                     CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
                });
                CK(cudaFree(xh));
            }
            res.cublas_us = t == LMP_DTYPE_F16 ? f16_us : 0;
            printf("| %s | %lld x %lld | %.1f |", lmp_type_name(t), (long long)rows, (long long)cols, bytes / 1e6);
            for (int v = 0; v < LMP_MV_N_VARIANTS; v++) printf(" %.1f us |", res.us[v]);
            printf(" %.1f us | %.1f us |", pdl_us[0], pdl_us[1]);
            printf(" %.2f | %.0f%% | |\n", bytes / (best * 1e-6) / 1e12, 100.0 * bytes / (best * 1e-6) / g_read_bw);
            if (t == LMP_DTYPE_F16) printf("|   cuBLAS f16 GemmEx n=1 | | | %.1f us = %.2f TB/s |\n", f16_us, bytes / (f16_us * 1e-6) / 1e12);
            g_mv.push_back(res);
            for (int b = 0; b < nbuf; b++) CK(cudaFree(base[b]));
        }
        CK(cudaFree(y));
        lab_act_free(A);
    }
}

// The matvec launches of one 7B decode step as the backend makes them (PDL on, back to back in a graph,
// weights rotated over > 256 MB): the old choice (cudadec), the default, and every v2 variant, each through
// lmp_matvec_launch with lmp_mv_choice_now set to it. The quantizing pair takes only 32-row variants.
static void bench_decode_mv(void) {
    struct shape { const char *name; int64_t rows, cols; int nmat, pair, res, qo; } shapes[] = {
        {"q/k/v 3 x 4096x4096", 4096, 4096, 3, 0, 0, 0}, {"wo 4096x4096 +res", 4096, 4096, 1, 0, 1, 0},
        {"gate/up 11008x4096 +quant", 11008, 4096, 2, 1, 0, 1}, {"down 4096x11008 +res", 4096, 11008, 1, 0, 1, 0},
        {"4096x14336", 4096, 14336, 1, 0, 0, 0}, {"14336x4096", 14336, 4096, 1, 0, 0, 0},
        {"classifier 32000x4096", 32000, 4096, 1, 0, 0, 0}};
    const lmp_dtype ts[] = {LMP_DTYPE_Q4_0, LMP_DTYPE_Q8_0, LMP_DTYPE_F16};
    std::vector<int> cand = {-1, -2};  // -1: the old choice, -2: the default (per type family)
    for (int v = 0; v < LMP_MV_N_VARIANTS; v++)
        if (lmp_mv_variants[v].v2) cand.push_back(v);
    printf("\ndecode-step matvecs (7B shapes, PDL, through lmp_matvec_launch): us per launch (weight TB/s)\n");
    printf("| type | launch | old | default |");
    for (size_t k = 2; k < cand.size(); k++) printf(" %s |", lmp_mv_variants[cand[k]].name);
    printf(" best | old -> best TB/s |\n|---|---|");
    for (size_t k = 0; k < cand.size() + 2; k++) printf("---:|");
    printf("\n");
    for (lmp_dtype t : ts) {
        for (const shape &sh : shapes) {
            const int64_t rows = sh.rows, cols = sh.cols;
            const size_t bytes = lmp_cuda_mat_bytes(t, rows, cols);
            int nbuf = (int)((size_t)(256 << 20) / bytes) + 1;
            if (nbuf < 2 * sh.nmat) nbuf = 2 * sh.nmat;
            nbuf = (nbuf + sh.nmat - 1) / sh.nmat * sh.nmat;
            std::vector<lmp_cuda_mat> m(nbuf);
            std::vector<void *> base(nbuf);
            for (int b = 0; b < nbuf; b++) lab_rand_mat(&m[b], &base[b], t, rows, cols, 500 + b);
            const int sets = nbuf / sh.nmat;
            const int nl = sets * (sets < 20 ? 40 / sets + 1 : 1);
            std::vector<float> x((size_t)cols);
            lab_fill(x.data(), x.size(), 1.0f);
            lab_act A, Q;
            lab_act_make(A, x.data(), 1, cols);
            std::vector<float> zero((size_t)rows, 0.0f);
            lab_act_make(Q, zero.data(), 1, rows);
            float *y[3] = {lab_dev<float>(rows), lab_dev<float>(rows), lab_dev<float>(rows)};
            float *res = lab_dev<float>(rows);
            CK(cudaMemset(res, 0, rows * 4));
            const double tb = (double)bytes * sh.nmat;
            printf("| %s | %s |", lmp_type_name(t), sh.name);
            double old_us = 0, best = 1e30;
            for (size_t k = 0; k < cand.size(); k++) {
                lmp_mv_choice ch = cand[k] == -2 ? lmp_mv_choice_default[lmp_mv_family(t)] : lmp_mv_choice_old;
                if (cand[k] >= 0) {
                    const lmp_mv_variant &vv = lmp_mv_variants[cand[k]];
                    if (sh.qo && vv.R * LMP_MV_WARPS / vv.W != 32) {
                        printf(" |");
                        continue;
                    }
                    ch.vtall = ch.tall = ch.square = ch.wide = ch.pair = cand[k];
                    if (sh.qo) ch.qo = cand[k];
                }
                lmp_mv_choice_set_all(&ch);
                const double us = lab_time_graph(g_st, nl, 15, [&](int i) {
                    lmp_mv_args a = {};
                    const int b0 = (i % sets) * sh.nmat;
                    a.pdl = 1;
                    a.x = A.a;
                    if (sh.pair) {
                        a.nseg = 1;
                        a.pair = 1;
                        a.seg[0].w = m[b0];
                        a.seg[0].w2 = m[b0 + 1];
                        a.seg[0].y = y[0];
                        a.seg[0].y2 = y[1];
                    } else {
                        a.nseg = sh.nmat;
                        for (int j = 0; j < sh.nmat; j++) {
                            a.seg[j].w = m[b0 + j];
                            a.seg[j].y = y[j];
                        }
                        if (sh.res) a.seg[0].res = res;
                    }
                    if (sh.qo) a.qo = {Q.q8, Q.d8, Q.s8, Q.sum8, Q.q16, Q.d16};
                    CK(lmp_matvec_launch(&a, 1, g_st));
                });
                if (k == 0) old_us = us;
                best = std::min(best, us);
                printf(" %.1f (%.2f) |", us, tb / (us * 1e-6) / 1e12);
            }
            lmp_mv_choice_set_all(NULL);
            printf(" %.1f | %.2f -> %.2f |\n", best, tb / (old_us * 1e-6) / 1e12, tb / (best * 1e-6) / 1e12);
            for (int j = 0; j < 3; j++) CK(cudaFree(y[j]));
            CK(cudaFree(res));
            lab_act_free(A);
            lab_act_free(Q);
            for (int b = 0; b < nbuf; b++) CK(cudaFree(base[b]));
        }
    }
}

static void bench_gemm(void) {
    struct { int64_t rows, cols; } shapes[] = {{4096, 4096}, {11008, 4096}, {4096, 11008}, {32000, 4096}};
    const int n = 512;
    const lmp_dtype ts[] = {LMP_DTYPE_F16, LMP_DTYPE_BF16, LMP_DTYPE_Q8_0, LMP_DTYPE_Q4_0, LMP_DTYPE_Q4_1, LMP_DTYPE_F32};
    printf("\nbatched product n = %d (cuBLAS; quantized: dequantized f16 tiles of <= 128 MB), TFLOP/s\n| type |", n);
    for (auto &s : shapes) printf(" %lldx%lld |", (long long)s.rows, (long long)s.cols);
    printf("\n|---|---:|---:|---:|---:|\n");
    for (lmp_dtype t : ts) {
        printf("| %s |", lmp_type_name(t));
        for (auto &s : shapes) {
            lmp_cuda_mat m;
            void *base;
            lab_rand_mat(&m, &base, t, s.rows, s.cols, 7);
            float *x = lab_dev<float>((size_t)(n * s.cols)), *y = lab_dev<float>((size_t)(n * s.rows));
            lab_fill_vals_kernel<<<1024, 256, 0, g_st>>>(x, (size_t)(n * s.cols), 0, -1, 1, 9);
            lmp_gemm_ws ws = lab_gemm_ws(n, s.cols, (size_t)128 << 20);
            double us = lab_time_graph(g_st, 5, 7, [&](int i) { CKB(lmp_gemm(g_blas, g_st, &m, x, y, n, 0, &ws)); });
            printf(" %.0f (%.0f us) |", 2.0 * n * s.rows * s.cols / (us * 1e-6) / 1e12, us);
            lab_gemm_ws_free(ws);
            CK(cudaFree(x));
            CK(cudaFree(y));
            CK(cudaFree(base));
        }
        printf("\n");
    }
}

static void bench_attention(void) {
    const int nh = 32, nkv = 32, hd = 128, kv_dim = nkv * hd;
    printf("\nattention, 7B shape (32 heads, hd 128), f32 KV cache\n| case | us | KV GB/s |\n|---|---:|---:|\n");
    const int n_ctx = 4096;
    float *kc = lab_dev<float>((size_t)n_ctx * kv_dim), *vc = lab_dev<float>((size_t)n_ctx * kv_dim);
    lab_fill_vals_kernel<<<2048, 256, 0, g_st>>>(kc, (size_t)n_ctx * kv_dim, 0, -1, 1, 1);
    lab_fill_vals_kernel<<<2048, 256, 0, g_st>>>(vc, (size_t)n_ctx * kv_dim, 0, -1, 1, 2);
    float *q = lab_dev<float>((size_t)512 * nh * hd), *k = lab_dev<float>((size_t)512 * kv_dim),
          *v = lab_dev<float>((size_t)512 * kv_dim), *o = lab_dev<float>((size_t)512 * nh * hd);
    lab_fill_vals_kernel<<<1024, 256, 0, g_st>>>(q, (size_t)512 * nh * hd, 0, -1, 1, 3);
    const int n_split = n_ctx / LMP_ATT_CHUNK;
    float *part = lab_dev<float>((size_t)nh * n_split * (hd + 2));
    unsigned *cnt = lab_dev<unsigned>(nkv);
    CK(cudaMemset(cnt, 0, nkv * 4));
    float *v0 = v;
    float *tabc = lab_dev<float>((size_t)n_ctx * hd / 2), *tabs = lab_dev<float>((size_t)n_ctx * hd / 2);
    lab_fill_vals_kernel<<<256, 256, 0, g_st>>>(tabc, (size_t)n_ctx * hd / 2, 0, -1, 1, 4);
    lab_fill_vals_kernel<<<256, 256, 0, g_st>>>(tabs, (size_t)n_ctx * hd / 2, 0, -1, 1, 5);
    std::vector<float> zq((size_t)nh * hd, 0.0f);
    lab_act A8;
    lab_act_make(A8, zq.data(), 1, nh * hd);
    for (int pos : {127, 1023, 4095}) {
        size_t smem = (size_t)(hd + LMP_ATT_CHUNK) * 4;
        double us = lab_time_graph(g_st, 50, 15, [&](int i) {
            lmp_attn_decode_kernel<<<dim3(nkv, n_split), 128, smem, g_st>>>(o, q, k, v, kc, vc, nh, nkv, hd, pos, NULL,
                                                                           part, cnt, n_split);
        });
        printf("| decode, position %d | %.1f | %.0f |\n", pos, us, 2.0 * (pos + 1) * kv_dim * 4 / (us * 1e-6) / 1e9);
        for (int v = 0; v < 3; v++) {  // version 2: plain; + RoPE and quantized output; the same with PDL
            lmp_attn_args a = {};
            a.out = o; a.q = q; a.k = k; a.v = v ? k : v0; a.k_cache = kc; a.v_cache = vc;
            a.n_heads = nh; a.n_kv = nkv; a.pos0 = pos; a.part = part; a.counter = cnt; a.n_split = n_split;
            if (v) {
                a.rope_dim = hd; a.cos_tab = tabc; a.sin_tab = tabs;
                a.qa = {A8.q8, A8.d8, A8.s8, A8.sum8, A8.q16, A8.d16};
            }
            double us2 = lab_time_graph(g_st, 50, 15, [&](int i) { CK(lmp_attn_decode2_launch(v == 2, &a, hd, g_st)); });
            printf("| decode v2%s, position %d | %.1f | %.0f |\n", v == 0 ? "" : v == 1 ? " +rope +quant" : " +rope +quant, PDL",
                   pos, us2, 2.0 * (pos + 1) * kv_dim * 4 / (us2 * 1e-6) / 1e9);
        }
    }
    float *S = lab_dev<float>((size_t)nkv * 512 * 512);
    double us = lab_time_graph(g_st, 5, 7, [&](int i) { CKB(lmp_attn_batched(g_blas, g_st, o, q, kc, vc, 512, 0, nh, nkv, hd, S)); });
    printf("| prefill 512 tokens (cuBLAS S = QK^T, softmax, PV), one layer | %.1f | |\n", us);
    lab_act_free(A8);
    CK(cudaFree(tabc));
    CK(cudaFree(tabs));
    for (void *p : {(void *)kc, (void *)vc, (void *)q, (void *)k, (void *)v, (void *)o, (void *)part, (void *)cnt, (void *)S})
        CK(cudaFree(p));
}

int main(int argc, char **argv) {
    int bench = 1;
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)clock() << 20);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) g_quick = 1;
        else if (!strcmp(argv[i], "--no-bench")) bench = 0;
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: lab [--quick] [--no-bench] [--seed N]\n");
            return 2;
        }
    }
    lab_rng = seed ? seed : 1;
    printf("lab: seed %llu (--seed to repeat)\n", (unsigned long long)seed);
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        fprintf(stderr, "lab: no CUDA device\n");
        return 1;
    }
    cudaDeviceProp p;
    CK(cudaGetDeviceProperties(&p, 0));
    printf("device: %s, %d SMs, %.0f MB L2, %.1f GiB, sm_%d%d\n", p.name, p.multiProcessorCount, p.l2CacheSize / 1e6,
           p.totalGlobalMem / 1073741824.0, p.major, p.minor);
    CK(cudaStreamCreate(&g_st));
    CKB(cublasCreate(&g_blas));
    CK(cudaFuncSetAttribute(lmp_attn_decode_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024));
    CK(cudaFuncSetAttribute(lmp_attn_decode2_kernel<4>, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024));
    CK(cudaFuncSetAttribute(lmp_attn_decode2_kernel<2>, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024));
    check_quantize_act();
    check_matvec();
    check_matvec_fused();
    check_get_rows();
    check_rmsnorm();
    check_rope_swiglu_add();
    check_attention();
    check_eval_stats();
    check_gemm();
    printf("checks: %d passed, %d failed\n", lab_passed, lab_failed);
    if (bench) {
        bench_ceilings();
        bench_decode_mv();
        bench_matvec();
        bench_gemm();
        bench_attention();
    }
    CKB(cublasDestroy(g_blas));
    printf("%d passed, %d failed\n", lab_passed, lab_failed);
    return lab_failed ? 1 : 0;
}
