// backend_cuda.cu - the CUDA backend of runtime/backend.h: weights uploaded once to device memory with
// cudaMalloc (repacked to the layout of cuda/kernels/common.cuh), the KV cache and activations on the
// device, every op as a kernel on one stream, errors sticky until synchronize.
//
// Decode (n <= LMP_CUDA_MV_MAX tokens) multiplies with the fused dequantize + matvec kernels
// (cuda/kernels/matvec.cuh); batches go to cuBLAS (cuda/kernels/gemm.cuh). Three fusions are made
// here, invisible to the caller: RMSNorm of one token also writes the quantized forms of its output (no
// quantize launch before q/k/v and gate/up); consecutive matmuls of the same input are held back and
// launched as one kernel (q, k, v); a held-back pair followed by swiglu of their outputs becomes one
// silu(gate) * up kernel, and a held-back matmul followed by add of its output into a residual adds in the
// matvec's epilogue. Whatever is held back is launched before any other op, copy or synchronize, so the
// results are those of the op-by-op sequence. A single-token step can be recorded as a CUDA graph and
// replayed (step_record_begin / step_record_end / step_replay, backend.h), and evaluation statistics
// are computed on the device (logits_stats). It does not know the model's structure (runtime/forward.c).
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cuda/kernels/gemm.cuh"
#include "cuda/kernels/matvec.cuh"
#include "cuda/kernels/ops.cuh"
#include "format/qtypes.h"
#include "runtime/backend.h"

#define LMP_CUDA_MV_MAX 8          // tokens up to which matmul uses the matvec kernels
#define LMP_CUDA_GEMM_WS (128u << 20)  // bytes of the dequantized-f16 weight tile of the batched path

// A weight's device copy; identical host views (a tied classifier) share one.
typedef struct cuda_weight {
    lmp_cuda_mat m;
    void *base;          // lmp_cuda_mat_bytes bytes
    size_t bytes;
    const void *data;    // host data it was made from
    lmp_dtype type;
    int64_t rows, cols;
    int refs;
    struct cuda_weight *next;
} cuda_weight;

struct lmp_kv_cache {
    float *k, *v;  // (n_ctx, kv_dim) each
    int n_ctx, kv_dim;
};

// A matmul held back for fusion (see the file comment).
typedef struct pending_mv {
    int nseg, n;
    const float *x;
    lmp_cuda_mat w[LMP_MV_MAXSEG];
    float *y[LMP_MV_MAXSEG];
} pending_mv;

// Quantized forms of one float buffer (valid for src, n rows of cols, the forms flagged in has8 / has16).
typedef struct act_set {
    size_t cap;  // elements of q8 / q16
    int8_t *q8;
    int16_t *q16;
    float *d8, *s8, *d16;
    int *sum8;
    const float *src;
    int64_t n, cols;
    int has8, has16;
} act_set;

// A RoPE of one token held back: the decode attention that follows rotates q and k itself.
typedef struct pending_rope {
    int on;
    float *q, *k;
    int n_heads, n_kv, pos0;
    lmp_rope r;
} pending_rope;

typedef struct step_graph {
    uint64_t key;
    cudaGraphExec_t exec;
    size_t logits_bytes;  // bytes copied to the pinned logits buffer by the graph (0: none)
} step_graph;

#define N_STEP_GRAPHS 4

typedef struct cuda_ctx {
    int device;
    int exact;                  // lmp_backend_opts.exact (LMP_CUDA_EXACT=0|1 overrides: diagnosis)
    int no_fuse;                // LMP_CUDA_NO_FUSE=1: every matmul launched alone (diagnosis, A/B)
    int old_attn;               // LMP_CUDA_OLD_ATTN=1: the first decode attention kernel (A/B)
    uint64_t mem_weights, mem_kv, mem_other;  // bytes allocated now, by category
    cudaStream_t st;
    cublasHandle_t blas;
    lmp_status err_st;          // sticky: first failure since the last synchronize
    char err_msg[LMP_ERROR_MSG_MAX];
    cuda_weight *weights;       // uploaded copies (shared by identical views)
    // quantized activations: two sets, so that a kernel can read one and write the other (the
    // silu(gate) * up matvec quantizes its output for the down matvec)
    act_set xs[2];
    int xs_next;                // the set claimed next when neither is excluded
    int pdl;                    // kernels of the decode path launched with programmatic dependent launch
    pending_rope prope;         // a decode RoPE held back for the attention that follows (fused there)
    lmp_dtype last_mv_type;     // weight type of the last matvec launched (hint_forms)
    // LMP_CUDA_PROFILE=file: every launch timed by events (no graphs), totals per op written at destroy
    struct prof_state *prof;
    // batched path
    lmp_gemm_ws gw;
    size_t gw_cols_cap;         // elements of gw.xh / gw.q8 (n * cols)
    size_t gw_n_cap;            // rows of gw.rs / gw.rinv
    float *att_S;               // batched attention scores
    size_t att_S_cap;           // floats
    float *att_part;            // decode attention partials (n_heads, n_split, hd + 2)
    size_t att_part_cap;        // floats
    unsigned *att_cnt;          // per kv head
    int att_cnt_cap;
    int32_t *tok_dev;           // (tok_cap) token ids
    int tok_cap;
    int32_t *tok_host;          // pinned staging of token ids
    pending_mv pend;
    // step graphs
    int recording;              // between step_record_begin and _end
    int rec_failed;             // an op could not be recorded (it needed a new buffer, a host copy)
    uint64_t rec_key;
    size_t rec_logits_bytes;
    int *params_dev;            // {pos, token} read by recorded steps
    int *params_host;           // pinned
    float *logits_host;         // pinned copy target of recorded steps
    size_t logits_host_cap;
    step_graph graphs[N_STEP_GRAPHS];
    int n_graphs;
    // device evaluation statistics scratch
    int32_t *st_tgt;
    int *st_btop, *st_top, *st_top1;
    double *st_nll, *st_kl;
    int st_cap;
} cuda_ctx;

static cuda_ctx *ctx_of(lmp_backend *b) { return (cuda_ctx *)b->ctx; }

static void fail(cuda_ctx *c, lmp_status st, const char *fmt, ...) {
    if (c->err_st) return;
    c->err_st = st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err_msg, sizeof c->err_msg, fmt, ap);
    va_end(ap);
}

// Records the last launch error, if any, under what; returns 1 if there was one.
static int launch_failed(cuda_ctx *c, const char *what) {
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess) return 0;
    fail(c, LMP_E_STATE, "CUDA %s: %s", what, cudaGetErrorString(e));
    return 1;
}

// Device memory; on failure the sticky error names the bytes needed against those free.
static void *dev_alloc_raw(cuda_ctx *c, size_t bytes, const char *what) {
    void *p = NULL;
    if (c->recording) {  // no allocation inside a graph recording: the step is replayed op by op instead
        c->rec_failed = 1;
        return NULL;
    }
    if (bytes == 0) bytes = 16;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
        cudaGetLastError();
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        fail(c, LMP_E_NOMEM, "CUDA device out of memory: %s needs %zu bytes (%.1f MiB), %zu bytes (%.1f MiB) free of %.1f GiB",
             what, bytes, bytes / 1048576.0, fr, fr / 1048576.0, tot / 1073741824.0);
        return NULL;
    }
    return p;
}
// Device allocations are recorded (pointer, bytes, category) so that memory_used can report them.
typedef struct alloc_rec {
    void *p;
    size_t bytes;
    uint64_t *cat;
} alloc_rec;
static alloc_rec *g_allocs;
static size_t g_n_allocs, g_cap_allocs;
static void track(void *p, size_t bytes, uint64_t *cat) {
    if (!p) return;
    if (g_n_allocs == g_cap_allocs) {
        size_t nc = g_cap_allocs ? g_cap_allocs * 2 : 256;
        alloc_rec *n = (alloc_rec *)lmp_realloc(g_allocs, nc * sizeof *n);
        if (!n) return;
        g_allocs = n;
        g_cap_allocs = nc;
    }
    g_allocs[g_n_allocs++] = (alloc_rec){p, bytes, cat};
    *cat += bytes;
}
static void untrack(void *p) {
    for (size_t i = g_n_allocs; i-- > 0;)
        if (g_allocs[i].p == p) {
            *g_allocs[i].cat -= g_allocs[i].bytes;
            g_allocs[i] = g_allocs[--g_n_allocs];
            return;
        }
}
static void *dev_alloc(cuda_ctx *c, size_t bytes, const char *what) {
    void *p = dev_alloc_raw(c, bytes, what);
    track(p, bytes, &c->mem_other);
    return p;
}
static void dev_free(void *p) {
    if (!p) return;
    untrack(p);
    cudaFree(p);
}

// Grows a device scratch buffer of *cap elements of size esz to need; 0 on failure.
static int grow(cuda_ctx *c, void **p, size_t *cap, size_t need, size_t esz, const char *what) {
    if (*cap >= need && *p) return 1;
    void *q = dev_alloc(c, need * esz, what);
    if (!q) return 0;
    dev_free(*p);
    *p = q;
    *cap = need;
    return 1;
}

static int ranges_overlap(const void *a, size_t na, const void *b, size_t nb) {
    const char *pa = (const char *)a, *pb = (const char *)b;
    return pa < pb + nb && pb < pa + na;
}
// An op wrote bytes at p: the quantized copy of an overlapping buffer is stale.
static void invalidate(cuda_ctx *c, const void *p, size_t bytes) {
    for (int i = 0; i < 2; i++) {
        act_set *x = &c->xs[i];
        if (x->src && ranges_overlap(p, bytes, x->src, (size_t)(x->n * x->cols) * 4)) x->src = NULL;
    }
}
static void xs_clear(cuda_ctx *c) { c->xs[0].src = c->xs[1].src = NULL; }

static int set_reserve(cuda_ctx *c, act_set *x, size_t elems) {
    if (x->cap >= elems) return 1;
    if (c->recording) {
        c->rec_failed = 1;
        return 0;
    }
    void *p[] = {x->q8, x->q16, x->d8, x->s8, x->d16, x->sum8};
    for (void *q : p) dev_free(q);
    memset(x, 0, sizeof *x);
    x->q8 = (int8_t *)dev_alloc(c, elems, "quantized activations");
    x->q16 = (int16_t *)dev_alloc(c, elems * 2, "quantized activations");
    x->d8 = (float *)dev_alloc(c, elems / 32 * 4 + 16, "activation scales");
    x->s8 = (float *)dev_alloc(c, elems / 32 * 4 + 16, "activation scales");
    x->d16 = (float *)dev_alloc(c, elems / 32 * 4 + 16, "activation scales");
    x->sum8 = (int *)dev_alloc(c, elems / 32 * 4 + 16, "activation scales");
    if (!x->q8 || !x->q16 || !x->d8 || !x->s8 || !x->d16 || !x->sum8) return 0;
    x->cap = elems;
    return 1;
}

// A set for new quantized forms of elems elements, not the set `keep` (the input of the kernel that will
// write them; -1: none); NULL on failure. Its previous contents are forgotten.
static act_set *set_claim(cuda_ctx *c, size_t elems, int keep) {
    int i = keep >= 0 ? 1 - keep : c->xs_next;
    c->xs_next = 1 - i;
    act_set *x = &c->xs[i];
    x->src = NULL;
    return set_reserve(c, x, elems) ? x : NULL;
}
static void set_mark(act_set *x, const float *src, int64_t n, int64_t cols, int has8, int has16) {
    x->src = src;
    x->n = n;
    x->cols = cols;
    x->has8 = has8;
    x->has16 = has16;
}
static lmp_act_out set_out(const act_set *x, int has8, int has16) {
    lmp_act_out o = {};
    if (has8) o.q8 = x->q8, o.d8 = x->d8, o.s8 = x->s8, o.sum8 = x->sum8;
    if (has16) o.q16 = x->q16, o.d16 = x->d16;
    return o;
}
// The forms a matvec of weight type t reads.
static void type_needs(lmp_dtype t, int *need8, int *need16) {
    const lmp_type_traits *tr = lmp_type_get(t);
    *need8 = tr->vec_dot_type == LMP_DTYPE_Q8_A;
    *need16 = tr->vec_dot_type == LMP_DTYPE_Q16_A;
}

// ---- profiling (LMP_CUDA_PROFILE=file): events around every launch, op by op ----
#define PROF_EV 2048
#define PROF_OPS 64
typedef struct prof_state {
    char path[512];
    cudaEvent_t ev[PROF_EV + 1];
    int name_of[PROF_EV];  // index into names
    int n_ev;
    char names[PROF_OPS][64];
    double ms[PROF_OPS];
    long count[PROF_OPS];
    int n_names;
} prof_state;

static void prof_flush(cuda_ctx *c) {
    prof_state *P = c->prof;
    if (!P || P->n_ev == 0) return;
    cudaEventRecord(P->ev[P->n_ev], c->st);
    cudaEventSynchronize(P->ev[P->n_ev]);
    for (int i = 0; i < P->n_ev; i++) {
        float ms = 0;
        cudaEventElapsedTime(&ms, P->ev[i], P->ev[i + 1]);
        P->ms[P->name_of[i]] += ms;
        P->count[P->name_of[i]]++;
    }
    P->n_ev = 0;
}
// Marks the start of the launch(es) named by fmt; the time until the next mark (or flush) is theirs.
static void prof_mark(cuda_ctx *c, const char *fmt, ...) {
    prof_state *P = c->prof;
    if (!P || c->recording) return;
    if (P->n_ev == PROF_EV) prof_flush(c);
    char nm[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(nm, sizeof nm, fmt, ap);
    va_end(ap);
    int k = 0;
    while (k < P->n_names && strcmp(P->names[k], nm)) k++;
    if (k == P->n_names) {
        if (k == PROF_OPS) k = PROF_OPS - 1;  // overflow: counted under the last name
        else snprintf(P->names[P->n_names++], 64, "%s", nm);
    }
    P->name_of[P->n_ev] = k;
    cudaEventRecord(P->ev[P->n_ev++], c->st);
}
static void prof_write(cuda_ctx *c) {
    prof_state *P = c->prof;
    if (!P) return;
    prof_flush(c);
    FILE *f = fopen(P->path, "w");
    if (f) {
        double tot = 0;
        for (int i = 0; i < P->n_names; i++) tot += P->ms[i];
        fprintf(f, "| op (launches until the next mark) | count | total ms | us each | share |\n|---|---:|---:|---:|---:|\n");
        for (int i = 0; i < P->n_names; i++)
            fprintf(f, "| %s | %ld | %.3f | %.2f | %.1f %% |\n", P->names[i], P->count[i], P->ms[i],
                    P->count[i] ? 1000.0 * P->ms[i] / P->count[i] : 0.0, tot > 0 ? 100.0 * P->ms[i] / tot : 0.0);
        fclose(f);
    }
    for (int i = 0; i <= PROF_EV; i++) cudaEventDestroy(P->ev[i]);
    lmp_free(P);
    c->prof = NULL;
}

static const char *prof_n(int n) { return n == 1 ? "n=1" : n <= LMP_CUDA_MV_MAX ? "n<=8" : "batch"; }

// Makes the quantized forms of x (n, cols) that weight type t needs; returns the activations view.
static int act_quantized(cuda_ctx *c, const float *x, int64_t n, int64_t cols, lmp_dtype t, lmp_cuda_act *a) {
    int need8, need16;
    type_needs(t, &need8, &need16);
    *a = (lmp_cuda_act){x, NULL, NULL, NULL, NULL, NULL, NULL};
    if (!need8 && !need16) return 1;
    for (int i = 0; i < 2; i++) {
        const act_set *s = &c->xs[i];
        if (s->src == x && s->n == n && s->cols == cols && (!need8 || s->has8) && (!need16 || s->has16)) {
            *a = (lmp_cuda_act){x, s->q8, s->q16, s->d8, s->s8, s->sum8, s->d16};
            return 1;
        }
    }
    act_set *s = set_claim(c, (size_t)(n * cols), -1);
    if (!s) return 0;
    *a = (lmp_cuda_act){x, s->q8, s->q16, s->d8, s->s8, s->sum8, s->d16};
    const int64_t nb = n * cols / 32;
    // both forms at once: the next matmul of this input may be of the other family
    prof_mark(c, "quantize activations %s", prof_n((int)n));
    cudaError_t e = lmp_launch(c->pdl, lmp_quantize_act_kernel, dim3((unsigned)((nb * 32 + 255) / 256)), dim3(256), 0,
                               c->st, x, nb, s->q8, s->d8, s->s8, s->sum8, s->q16, s->d16);
    if (e != cudaSuccess) {
        fail(c, LMP_E_STATE, "CUDA quantize activations: %s", cudaGetErrorString(e));
        return 0;
    }
    set_mark(s, x, n, cols, 1, 1);
    return 1;
}
// Index of the set holding x's forms (-1: none).
static int set_of(cuda_ctx *c, const float *x) {
    for (int i = 0; i < 2; i++)
        if (c->xs[i].src == x) return i;
    return -1;
}

// ---- held-back matmuls ----

// The quantized forms a producer's epilogue writes for a consumer not yet seen: both when the last matvec's
// weights were quantized (the next one likely is too, of either family), none after float weights (a
// consumer that needs them quantizes its input itself, as before).
static void hint_forms(cuda_ctx *c, int *q8, int *q16) {
    const int quant = c->last_mv_type != LMP_DTYPE_F32 && c->last_mv_type != LMP_DTYPE_F16 &&
                      c->last_mv_type != LMP_DTYPE_BF16;
    *q8 = *q16 = quant && !c->no_fuse;
}

// pair: silu(W x) * (W2 x) into y[0] (W2 x into pair_up), its quantized forms written by the epilogue when
// hint_forms asks for them; res: the output is added to res.
static void launch_mv(cuda_ctx *c, pending_mv *p, int pair, float *pair_up, float *res) {
    lmp_cuda_act a;
    if (!act_quantized(c, p->x, p->n, p->w[0].cols, p->w[0].type, &a)) return;
    lmp_mv_args args = {};
    args.pdl = c->pdl;
    act_set *qo_set = NULL;
    int qo8 = 0, qo16 = 0;
    c->last_mv_type = p->w[0].type;
    if (pair && p->n <= LMP_CUDA_MV_MAX && lmp_mv_qo_ok(&p->w[0])) {
        hint_forms(c, &qo8, &qo16);
        if (qo8 || qo16) {
            qo_set = set_claim(c, (size_t)p->n * p->w[0].rows, set_of(c, p->x));
            if (qo_set) args.qo = set_out(qo_set, qo8, qo16);
        }
    }
    args.nseg = pair ? 1 : p->nseg;
    for (int s = 0; s < args.nseg; s++) {
        args.seg[s].w = p->w[s];
        args.seg[s].y = p->y[s];
    }
    if (pair) {
        args.seg[0].w2 = p->w[1];
        args.seg[0].y2 = pair_up;
    }
    args.seg[0].res = res;
    args.x = a;
    args.pair = pair;
    prof_mark(c, "matvec %s %s%s%s%s %s", lmp_type_name(p->w[0].type), pair ? "silu(gate)*up" : args.nseg > 1 ? "3 mats" : "1 mat",
              res ? " +res" : "", qo_set ? " +quant" : "", "", prof_n(p->n));
    cudaError_t e = lmp_matvec_launch(&args, p->n, c->st);
    if (e != cudaSuccess) fail(c, LMP_E_STATE, "CUDA matvec: %s", cudaGetErrorString(e));
    else if (qo_set) set_mark(qo_set, p->y[0], p->n, p->w[0].rows, qo8, qo16);
}

static void launch_rope(cuda_ctx *c, float *q, float *k, int n, int n_heads, int n_kv, int pos0, const lmp_rope *r) {
    const int64_t total = (int64_t)n * (n_heads + n_kv) * (r->rope_dim / 2);
    prof_mark(c, "rope %s", prof_n(n));
    cudaError_t e = lmp_launch(c->pdl, lmp_rope_kernel, dim3((unsigned)((total + 255) / 256)), dim3(256), 0, c->st, q, k,
                               n, n_heads, n_kv, r->head_dim, r->rope_dim, r->neox, pos0,
                               (const int *)(c->recording ? c->params_dev : NULL), r->cos_tab, r->sin_tab);
    if (e != cudaSuccess) fail(c, LMP_E_STATE, "CUDA rope: %s", cudaGetErrorString(e));
}

// Launches whatever is held back (a matvec, a RoPE), in the order it was issued.
static void flush(cuda_ctx *c) {
    if (c->pend.nseg) {
        pending_mv p = c->pend;
        c->pend.nseg = 0;
        launch_mv(c, &p, 0, NULL, NULL);
    }
    if (c->prope.on) {
        pending_rope r = c->prope;
        c->prope.on = 0;
        launch_rope(c, r.q, r.k, 1, r.n_heads, r.n_kv, r.pos0, &r.r);
    }
}

// ---- memory ----

static void *cuda_alloc(lmp_backend *b, size_t bytes) {
    cuda_ctx *c = ctx_of(b);
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 16);
    if (e != cudaSuccess) {
        cudaGetLastError();
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        fail(c, LMP_E_NOMEM, "CUDA device out of memory: %zu bytes (%.1f MiB) needed, %zu bytes (%.1f MiB) free of %.1f GiB",
             bytes, bytes / 1048576.0, fr, fr / 1048576.0, tot / 1073741824.0);
        return NULL;
    }
    track(p, bytes, &c->mem_other);
    return p;
}
static void cuda_free(lmp_backend *b, void *p) {
    cuda_ctx *c = ctx_of(b);
    flush(c);
    if (p) invalidate(c, p, 1);
    dev_free(p);  // untracks it
}
static void cuda_to_host(lmp_backend *b, void *dst, const void *src, size_t bytes) {
    cuda_ctx *c = ctx_of(b);
    flush(c);
    if (c->err_st) return;
    if (c->recording) {  // into the pinned logits buffer; step_replay copies it to the caller
        if (c->rec_logits_bytes || bytes > c->logits_host_cap) {
            c->rec_failed = 1;
            return;
        }
        cudaMemcpyAsync(c->logits_host, src, bytes, cudaMemcpyDeviceToHost, c->st);
        c->rec_logits_bytes = bytes;
        launch_failed(c, "copy to host");
        return;
    }
    prof_mark(c, "copy to host");
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->st);
    if (e == cudaSuccess) e = cudaStreamSynchronize(c->st);
    if (e != cudaSuccess) fail(c, LMP_E_STATE, "CUDA copy to host: %s", cudaGetErrorString(e));
}
// Host to device on the backend's stream, waited for (the source may be reused as soon as this returns).
// Never cudaMemcpy: it runs on the legacy default stream, which the backend's non-blocking stream does not
// wait for, and from pageable memory it returns before the copy has landed, so a kernel queued on the
// backend's stream right after it could read the destination before it was written (the repack of
// quantized weights did: SmolLM2's quantized files were wrong on CUDA).
static cudaError_t h2d(cuda_ctx *c, void *dst, const void *src, size_t bytes) {
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->st);
    if (e == cudaSuccess) e = cudaStreamSynchronize(c->st);
    return e;
}
static void cuda_from_host(lmp_backend *b, void *dst, const void *src, size_t bytes) {
    cuda_ctx *c = ctx_of(b);
    flush(c);
    invalidate(c, dst, bytes);
    if (c->err_st) return;
    if (c->recording) {
        c->rec_failed = 1;
        return;
    }
    cudaError_t e = h2d(c, dst, src, bytes);
    if (e != cudaSuccess) fail(c, LMP_E_STATE, "CUDA copy from host: %s", cudaGetErrorString(e));
}

static int cuda_supports_op(lmp_backend *b, lmp_op op, lmp_dtype t) {
    (void)b;
    if (op == LMP_OP_MATMUL || op == LMP_OP_GET_ROWS) return lmp_cuda_type_has_kernel(t);
    return op >= 0 && op < LMP_OP_COUNT;
}

// ---- weights ----

static void graphs_drop(cuda_ctx *c);

static void weight_unref(cuda_ctx *c, cuda_weight *cw) {
    if (--cw->refs > 0) return;
    for (cuda_weight **pp = &c->weights; *pp; pp = &(*pp)->next)
        if (*pp == cw) {
            *pp = cw->next;
            break;
        }
    dev_free(cw->base);
    lmp_free(cw);
}

static void cuda_release_weight(lmp_backend *b, lmp_weight *w) {
    cuda_ctx *c = ctx_of(b);
    if (!w->dev) return;
    flush(c);
    cudaStreamSynchronize(c->st);  // kernels may still read it
    graphs_drop(c);
    weight_unref(c, (cuda_weight *)w->dev);
    w->dev = NULL;
}

// Copies w to the device (in row chunks through a staging buffer for the quantized types, which the
// repack kernels rearrange); shares the copy of an identical view already uploaded.
static lmp_status cuda_upload_weight(lmp_backend *b, lmp_weight *w, lmp_error *err) {
    cuda_ctx *c = ctx_of(b);
    flush(c);
    if (c->err_st) return lmp_err(err, c->err_st, "%s", c->err_msg);
    if (w->dev) cuda_release_weight(b, w);
    const lmp_type_traits *tr = lmp_type_get(w->type);
    if (!tr || !tr->storable || !lmp_cuda_type_has_kernel(w->type))
        return lmp_err(err, LMP_E_UNSUPPORTED, "CUDA backend: no kernel for type %s (%s)", lmp_type_name(w->type),
                       w->name ? w->name : "?");
    if (w->cols % tr->block_size || w->row_bytes != lmp_type_row_size(w->type, w->cols))
        return lmp_err(err, LMP_E_ARG, "CUDA backend: '%s' has rows of %zu bytes, not %lld elements of %s",
                       w->name ? w->name : "?", w->row_bytes, (long long)w->cols, tr->name);
    for (cuda_weight *cw = c->weights; cw; cw = cw->next)
        if (cw->data == w->data && cw->type == w->type && cw->rows == w->rows && cw->cols == w->cols) {
            cw->refs++;
            w->dev = cw;
            return LMP_OK;
        }
    cuda_weight *cw = (cuda_weight *)lmp_calloc(1, sizeof *cw);
    if (!cw) return lmp_err(err, LMP_E_NOMEM, "out of memory");
    cw->bytes = lmp_cuda_mat_bytes(w->type, w->rows, w->cols);
    char what[160];
    snprintf(what, sizeof what, "weight '%s' (%s, %lld x %lld)", w->name ? w->name : "?", tr->name, (long long)w->rows,
             (long long)w->cols);
    cw->base = dev_alloc_raw(c, cw->bytes, what);
    track(cw->base, cw->bytes, &c->mem_weights);
    if (!cw->base) {
        lmp_free(cw);
        lmp_status st = c->err_st;
        c->err_st = LMP_OK;
        return lmp_err(err, st, "%s", c->err_msg);
    }
    lmp_cuda_mat_carve(&cw->m, w->type, w->rows, w->cols, cw->base);
    cudaError_t e = cudaSuccess;
    if (!tr->is_quantized) {
        e = h2d(c, cw->base, w->data, (size_t)w->rows * w->row_bytes);
    } else {
        // staging of at most 64 MiB (whole rows)
        int64_t chunk = (int64_t)((64u << 20) / w->row_bytes);
        if (chunk < 1) chunk = 1;
        if (chunk > w->rows) chunk = w->rows;
        void *stage = NULL;
        e = cudaMalloc(&stage, (size_t)chunk * w->row_bytes);
        const int64_t G = cw->m.group, nbr = w->cols / G;
        size_t qrow = w->type == LMP_DTYPE_Q8_0 ? (size_t)w->cols : (size_t)w->cols / 2;
        for (int64_t r0 = 0; r0 < w->rows && e == cudaSuccess; r0 += chunk) {
            const int64_t nr = w->rows - r0 < chunk ? w->rows - r0 : chunk;
            // on the stream of the repack kernel, which therefore reads the staged rows only once they landed
            e = cudaMemcpyAsync(stage, (const char *)w->data + (size_t)r0 * w->row_bytes, (size_t)nr * w->row_bytes,
                                cudaMemcpyHostToDevice, c->st);
            if (e != cudaSuccess) break;
            const unsigned grid = (unsigned)((nr * nbr + 255) / 256);
            uint8_t *q = (uint8_t *)cw->m.q + (size_t)r0 * qrow;
            __half *d = (__half *)cw->m.d + (size_t)r0 * nbr, *mm = cw->m.m ? (__half *)cw->m.m + (size_t)r0 * nbr : NULL;
            if (w->type == LMP_DTYPE_Q8_0)
                lmp_repack_q8_0_kernel<<<grid, 256, 0, c->st>>>((const uint8_t *)stage, w->row_bytes, nr, w->cols,
                                                                (int8_t *)q, d);
            else
                lmp_repack_q4_kernel<<<grid, 256, 0, c->st>>>((const uint8_t *)stage, w->row_bytes, nr, w->cols, (int)G,
                                                              cw->m.asym, q, d, mm);
            e = cudaGetLastError();
            if (e == cudaSuccess) e = cudaStreamSynchronize(c->st);
        }
        if (stage) cudaFree(stage);
    }
    if (e != cudaSuccess) {
        cudaGetLastError();
        dev_free(cw->base);
        lmp_free(cw);
        return lmp_err(err, LMP_E_STATE, "CUDA upload of '%s': %s", w->name ? w->name : "?", cudaGetErrorString(e));
    }
    cw->data = w->data;
    cw->type = w->type;
    cw->rows = w->rows;
    cw->cols = w->cols;
    cw->refs = 1;
    cw->next = c->weights;
    c->weights = cw;
    w->dev = cw;
    graphs_drop(c);
    return LMP_OK;
}

static const lmp_cuda_mat *mat_of(cuda_ctx *c, const lmp_weight *w) {
    if (!w->dev) {
        fail(c, LMP_E_STATE, "CUDA backend: weight '%s' was not uploaded", w->name ? w->name : "?");
        return NULL;
    }
    return &((const cuda_weight *)w->dev)->m;
}

// ---- KV cache ----

static lmp_status cuda_kv_new(lmp_backend *b, int n_ctx, int kv_dim, lmp_kv_cache **out, lmp_error *err) {
    cuda_ctx *c = ctx_of(b);
    *out = NULL;
    lmp_kv_cache *kv = (lmp_kv_cache *)lmp_calloc(1, sizeof *kv);
    if (!kv) return lmp_err(err, LMP_E_NOMEM, "out of memory");
    size_t bytes = (size_t)n_ctx * kv_dim * sizeof(float);
    kv->k = (float *)dev_alloc_raw(c, bytes, "KV cache (keys)");
    track(kv->k, bytes, &c->mem_kv);
    kv->v = kv->k ? (float *)dev_alloc_raw(c, bytes, "KV cache (values)") : NULL;
    track(kv->v, bytes, &c->mem_kv);
    if (!kv->v) {
        dev_free(kv->k);
        lmp_free(kv);
        lmp_status st = c->err_st;
        c->err_st = LMP_OK;
        return lmp_err(err, st, "%s (context %d)", c->err_msg, n_ctx);
    }
    kv->n_ctx = n_ctx;
    kv->kv_dim = kv_dim;
    *out = kv;
    graphs_drop(c);
    return LMP_OK;
}
static void cuda_kv_free(lmp_backend *b, lmp_kv_cache *kv) {
    if (!kv) return;
    cuda_ctx *c = ctx_of(b);
    flush(c);
    cudaStreamSynchronize(c->st);
    graphs_drop(c);
    dev_free(kv->k);
    dev_free(kv->v);
    lmp_free(kv);
}

// ---- ops ----

static void cuda_get_rows(lmp_backend *b, float *out, const lmp_weight *emb, const int32_t *tokens, int n) {
    cuda_ctx *c = ctx_of(b);
    flush(c);
    invalidate(c, out, (size_t)n * emb->cols * 4);
    const lmp_cuda_mat *m = mat_of(c, emb);
    if (c->err_st || !m || n <= 0) return;
    const int32_t *tok = NULL;
    if (c->recording) {
        if (n != 1) {
            c->rec_failed = 1;
            return;
        }
        tok = c->params_dev + 1;
    } else {
        if (n > c->tok_cap) {
            dev_free(c->tok_dev);
            cudaFreeHost(c->tok_host);
            c->tok_host = NULL;
            c->tok_cap = 0;
            c->tok_dev = (int32_t *)dev_alloc(c, (size_t)n * 4, "token ids");
            if (!c->tok_dev || cudaMallocHost((void **)&c->tok_host, (size_t)n * 4) != cudaSuccess) {
                fail(c, LMP_E_NOMEM, "CUDA: cannot allocate %d token ids", n);
                return;
            }
            c->tok_cap = n;
        }
        // the previous batch's ids may still be in flight from the pinned buffer
        cudaStreamSynchronize(c->st);
        memcpy(c->tok_host, tokens, (size_t)n * 4);
        cudaMemcpyAsync(c->tok_dev, c->tok_host, (size_t)n * 4, cudaMemcpyHostToDevice, c->st);
        tok = c->tok_dev;
    }
    prof_mark(c, "get_rows %s", prof_n(n));
    cudaError_t e = lmp_launch(c->pdl, lmp_get_rows_kernel, dim3((unsigned)((emb->cols + 255) / 256), (unsigned)n),
                               dim3(256), 0, c->st, out, *m, tok);
    if (e != cudaSuccess) fail(c, LMP_E_STATE, "CUDA get_rows: %s", cudaGetErrorString(e));
}

static void cuda_rmsnorm(lmp_backend *b, float *out, const float *x, const lmp_weight *w, int n, int dim, float eps) {
    cuda_ctx *c = ctx_of(b);
    flush(c);
    invalidate(c, out, (size_t)n * dim * 4);
    const lmp_cuda_mat *m = mat_of(c, w);
    if (c->err_st || !m || n <= 0) return;
    lmp_act_out qa = {};
    // up to 8 tokens: the quantized forms for the matvecs that follow, in the same launch
    act_set *qs = NULL;
    if (n <= LMP_CUDA_MV_MAX && dim % 32 == 0 && (qs = set_claim(c, (size_t)n * dim, set_of(c, x))))
        qa = set_out(qs, 1, 1);
    const int threads = dim >= 1024 ? 1024 : dim >= 256 ? 256 : 128;
    prof_mark(c, "rmsnorm %s", prof_n(n));
    cudaError_t e = lmp_launch(c->pdl, lmp_rmsnorm_kernel, dim3((unsigned)n), dim3(threads), 0, c->st, out, x,
                               (const float *)m->q, dim, eps, qa);
    if (e != cudaSuccess) {
        fail(c, LMP_E_STATE, "CUDA rmsnorm: %s", cudaGetErrorString(e));
        return;
    }
    if (qs) set_mark(qs, out, n, dim, 1, 1);
}

static void gemm_ws_free(cuda_ctx *c) {
    void *p[] = {c->gw.xh, c->gw.q8, c->gw.d8, c->gw.s8, c->gw.sum8, c->gw.wh, c->gw.rs, c->gw.rinv};
    for (void *q : p) dev_free(q);
    memset(&c->gw, 0, sizeof c->gw);
    c->gw_cols_cap = 0;
    c->gw_n_cap = 0;
}

static void cuda_matmul(lmp_backend *b, float *y, const lmp_weight *w, const float *x, int n) {
    cuda_ctx *c = ctx_of(b);
    const lmp_cuda_mat *m = mat_of(c, w);
    if (c->err_st || !m || n <= 0) return;
    invalidate(c, y, (size_t)n * m->rows * 4);
    // exact (evaluation): batches of non-F32 weights also go through the matvec kernels, whose arithmetic is
    // the CPU's (integer block sums, float32 activations), where the f16 tensor-core path rounds weights and
    // activations to 11 bits; slower (weights re-read per token, from L2 when they fit), comparable digit for digit.
    const int exact_mv = c->exact && m->type != LMP_DTYPE_F32 && n <= 65535;
    if (c->prope.on) flush(c);  // a held-back RoPE runs before anything issued after it
    if (n <= LMP_CUDA_MV_MAX || exact_mv) {
        pending_mv *p = &c->pend;
        if (p->nseg && (p->x != x || p->n != n || p->w[0].type != m->type || p->w[0].cols != m->cols ||
                        p->nseg == LMP_MV_MAXSEG))
            flush(c);
        if (p->nseg == 0) {
            p->x = x;
            p->n = n;
        }
        p->w[p->nseg] = *m;
        p->y[p->nseg] = y;
        p->nseg++;
        if (c->no_fuse) flush(c);
        return;
    }
    flush(c);
    if (c->recording) {
        c->rec_failed = 1;
        return;
    }
    // batched: workspace for n * cols activations and the f16 weight tile
    const size_t need = (size_t)n * m->cols;
    if (c->gw_cols_cap < need || c->gw_n_cap < (size_t)n || !c->gw.wh) {
        gemm_ws_free(c);
        c->gw.xh = (__half *)dev_alloc(c, need * 2, "batched-product activations");
        c->gw.q8 = (int8_t *)dev_alloc(c, need, "batched-product activations");
        c->gw.d8 = (float *)dev_alloc(c, need / 32 * 4 + 16, "batched-product scales");
        c->gw.s8 = (float *)dev_alloc(c, need / 32 * 4 + 16, "batched-product scales");
        c->gw.sum8 = (int *)dev_alloc(c, need / 32 * 4 + 16, "batched-product scales");
        c->gw.wh = (__half *)dev_alloc(c, LMP_CUDA_GEMM_WS, "batched-product weight tile");
        c->gw.rs = (float *)dev_alloc(c, (size_t)n * 4 + 16, "batched-product row scales");
        c->gw.rinv = (float *)dev_alloc(c, (size_t)n * 4 + 16, "batched-product row scales");
        c->gw.ws_bytes = LMP_CUDA_GEMM_WS;
        if (c->err_st) return;
        c->gw_cols_cap = need > c->gw_cols_cap ? need : c->gw_cols_cap;
        c->gw_n_cap = (size_t)n;
    }
    prof_mark(c, "gemm %s %s", lmp_type_name(m->type), prof_n(n));
    cublasStatus_t s = lmp_gemm(c->blas, c->st, m, x, y, n, 0, &c->gw);
    if (s != CUBLAS_STATUS_SUCCESS) fail(c, LMP_E_STATE, "cuBLAS product (%s): %s", w->name ? w->name : "?", lmp_cublas_name(s));
    launch_failed(c, "batched product");
}

static void cuda_rope(lmp_backend *b, float *q, float *k, int n, int n_heads, int n_kv, int pos0, const lmp_rope *r) {
    cuda_ctx *c = ctx_of(b);
    flush(c);
    invalidate(c, q, (size_t)n * n_heads * r->head_dim * 4);
    invalidate(c, k, (size_t)n * n_kv * r->head_dim * 4);
    if (c->err_st || n <= 0) return;
    if (n == 1 && !c->no_fuse && lmp_attn2_ok(n_heads, n_kv, r->head_dim) && r->rope_dim <= r->head_dim) {
        // held back: the decode attention that follows rotates q and k itself (flush launches it otherwise)
        c->prope = (pending_rope){1, q, k, n_heads, n_kv, pos0, *r};
        return;
    }
    launch_rope(c, q, k, n, n_heads, n_kv, pos0, r);
}

static void cuda_attention(lmp_backend *b, float *out, const float *q, const float *k, const float *v,
                           lmp_kv_cache *kv, int n, int pos0, int n_heads, int n_kv, int hd) {
    cuda_ctx *c = ctx_of(b);
    // a held-back RoPE of exactly these q and k is done inside the decode attention
    pending_rope rope = {};
    if (c->prope.on && n == 1 && c->prope.q == q && c->prope.k == k && c->prope.pos0 == pos0 &&
        c->prope.n_heads == n_heads && c->prope.n_kv == n_kv && c->prope.r.head_dim == hd && c->pend.nseg == 0) {
        rope = c->prope;
        c->prope.on = 0;
    }
    flush(c);
    invalidate(c, out, (size_t)n * n_heads * hd * 4);
    if (c->err_st || n <= 0) return;
    if (n_kv * hd != kv->kv_dim || pos0 + n > kv->n_ctx) {
        fail(c, LMP_E_ARG, "CUDA attention: %d kv heads of %d do not match the cache's %d, or positions past %d", n_kv, hd,
             kv->kv_dim, kv->n_ctx);
        return;
    }
    if (n == 1) {
        const int n_split = (kv->n_ctx + LMP_ATT_CHUNK - 1) / LMP_ATT_CHUNK;
        const size_t part = (size_t)n_heads * n_split * (hd + 2);
        if (!grow(c, (void **)&c->att_part, &c->att_part_cap, part, 4, "attention partials")) return;
        if (c->att_cnt_cap < n_kv) {
            if (c->recording) {
                c->rec_failed = 1;
                return;
            }
            dev_free(c->att_cnt);
            c->att_cnt = (unsigned *)dev_alloc(c, (size_t)n_kv * 4, "attention counters");
            if (!c->att_cnt) return;
            cudaMemsetAsync(c->att_cnt, 0, (size_t)n_kv * 4, c->st);
            c->att_cnt_cap = n_kv;
        }
        if (lmp_attn2_ok(n_heads, n_kv, hd) && !c->old_attn) {
            lmp_attn_args a = {};
            a.out = out;
            a.q = q;
            a.k = k;
            a.v = v;
            a.k_cache = kv->k;
            a.v_cache = kv->v;
            a.n_heads = n_heads;
            a.n_kv = n_kv;
            a.pos0 = pos0;
            a.pos_dev = c->recording ? c->params_dev : NULL;
            a.part = c->att_part;
            a.counter = c->att_cnt;
            a.n_split = n_split;
            if (rope.on) {
                a.rope_dim = rope.r.rope_dim;
                a.neox = rope.r.neox;
                a.cos_tab = rope.r.cos_tab;
                a.sin_tab = rope.r.sin_tab;
            }
            int q8, q16;
            hint_forms(c, &q8, &q16);
            act_set *qs = (q8 || q16) ? set_claim(c, (size_t)n_heads * hd, -1) : NULL;
            if (qs) a.qa = set_out(qs, q8, q16);
            prof_mark(c, "attention decode%s%s", rope.on ? " +rope" : "", qs ? " +quant" : "");
            cudaError_t e = lmp_attn_decode2_launch(c->pdl, &a, hd, c->st);
            if (e != cudaSuccess) {
                fail(c, LMP_E_STATE, "CUDA attention (decode): %s", cudaGetErrorString(e));
                return;
            }
            if (qs) set_mark(qs, out, 1, (int64_t)n_heads * hd, q8, q16);
            return;
        }
        if (rope.on) launch_rope(c, rope.q, rope.k, 1, n_heads, n_kv, pos0, &rope.r);
        const size_t smem = (size_t)(n_heads / n_kv) * (hd + LMP_ATT_CHUNK) * 4;
        if (n_heads / n_kv > 64 || smem > 200 * 1024) {
            fail(c, LMP_E_UNSUPPORTED, "CUDA attention: %d query heads per kv head of %d is beyond the decode kernel",
                 n_heads / n_kv, hd);
            return;
        }
        prof_mark(c, "attention decode (v1)");
        cudaError_t e = lmp_launch(c->pdl, lmp_attn_decode_kernel, dim3((unsigned)n_kv, (unsigned)n_split), dim3(128),
                                   smem, c->st, out, q, k, v, kv->k, kv->v, n_heads, n_kv, hd, pos0,
                                   (const int *)(c->recording ? c->params_dev : NULL), c->att_part, c->att_cnt, n_split);
        if (e != cudaSuccess) fail(c, LMP_E_STATE, "CUDA attention (decode): %s", cudaGetErrorString(e));
        return;
    }
    if (c->recording) {
        c->rec_failed = 1;
        return;
    }
    const int kv_dim = n_kv * hd;
    prof_mark(c, "attention batched (kv store, cuBLAS, softmax)");
    lmp_kv_store_kernel<<<(unsigned)(((int64_t)n * kv_dim + 255) / 256), 256, 0, c->st>>>(kv->k, kv->v, k, v, n, kv_dim,
                                                                                          pos0, NULL);
    if (launch_failed(c, "kv store")) return;
    const size_t s_need = (size_t)n_kv * n * (pos0 + n);
    if (!grow(c, (void **)&c->att_S, &c->att_S_cap, s_need, 4, "attention scores")) return;
    cublasStatus_t s = lmp_attn_batched(c->blas, c->st, out, q, kv->k, kv->v, n, pos0, n_heads, n_kv, hd, c->att_S);
    if (s != CUBLAS_STATUS_SUCCESS) fail(c, LMP_E_STATE, "cuBLAS attention: %s", lmp_cublas_name(s));
    launch_failed(c, "attention (batched)");
}

static void cuda_swiglu(lmp_backend *b, float *gate, const float *up, int n, int ff) {
    cuda_ctx *c = ctx_of(b);
    pending_mv *p = &c->pend;
    // gate = W_gate x, up = W_up x held back: one kernel computes silu(gate) * up (and stores up)
    if (p->nseg == 2 && p->y[0] == gate && p->y[1] == up && p->n == n && p->w[0].rows == ff && p->w[1].rows == ff &&
        !ranges_overlap(gate, (size_t)n * ff * 4, p->x, (size_t)(p->n * p->w[0].cols) * 4) &&
        !ranges_overlap(up, (size_t)n * ff * 4, p->x, (size_t)(p->n * p->w[0].cols) * 4)) {
        pending_mv q = *p;
        p->nseg = 0;
        launch_mv(c, &q, 1, (float *)up, NULL);
        return;
    }
    flush(c);
    invalidate(c, gate, (size_t)n * ff * 4);
    if (c->err_st) return;
    const int64_t cnt = (int64_t)n * ff;
    prof_mark(c, "swiglu %s", prof_n(n));
    cudaError_t e = lmp_launch(c->pdl, lmp_swiglu_kernel, dim3((unsigned)((cnt + 255) / 256)), dim3(256), 0, c->st,
                               gate, (const float *)up, cnt);
    if (e != cudaSuccess) fail(c, LMP_E_STATE, "CUDA swiglu: %s", cudaGetErrorString(e));
}

static void cuda_add(lmp_backend *b, float *x, const float *y, size_t count) {
    cuda_ctx *c = ctx_of(b);
    pending_mv *p = &c->pend;
    invalidate(c, x, count * 4);
    // y = W h held back: the matvec stores y and adds it to x
    if (p->nseg == 1 && p->y[0] == y && (size_t)p->n * p->w[0].rows == count &&
        !ranges_overlap(x, count * 4, p->x, (size_t)(p->n * p->w[0].cols) * 4)) {
        pending_mv q = *p;
        p->nseg = 0;
        launch_mv(c, &q, 0, NULL, x);
        return;
    }
    flush(c);
    if (c->err_st) return;
    prof_mark(c, "add");
    cudaError_t e = lmp_launch(c->pdl, lmp_add_kernel, dim3((unsigned)((count + 255) / 256)), dim3(256), 0, c->st, x, y,
                               (int64_t)count);
    if (e != cudaSuccess) fail(c, LMP_E_STATE, "CUDA add: %s", cudaGetErrorString(e));
}

static lmp_status cuda_synchronize(lmp_backend *b, lmp_error *err) {
    cuda_ctx *c = ctx_of(b);
    flush(c);
    cudaError_t e = cudaStreamSynchronize(c->st);
    if (e == cudaSuccess) e = cudaGetLastError();
    if (e != cudaSuccess) fail(c, LMP_E_STATE, "CUDA: %s", cudaGetErrorString(e));
    lmp_status st = c->err_st;
    if (st) lmp_err(err, st, "%s", c->err_msg);
    c->err_st = LMP_OK;
    c->err_msg[0] = 0;
    return st;
}

// ---- step graphs ----

static void graphs_drop(cuda_ctx *c) {
    for (int i = 0; i < c->n_graphs; i++) cudaGraphExecDestroy(c->graphs[i].exec);
    c->n_graphs = 0;
}

static int cuda_step_record_begin(lmp_backend *b, uint64_t key, int32_t token, int pos) {
    cuda_ctx *c = ctx_of(b);
    flush(c);
    if (c->err_st || c->recording || c->prof || getenv("LMP_CUDA_NO_GRAPH")) return 0;
    if (!c->params_dev) {
        c->params_dev = (int *)dev_alloc(c, 16, "step parameters");
        if (!c->params_dev || cudaMallocHost((void **)&c->params_host, 16) != cudaSuccess) return 0;
    }
    if (cudaStreamBeginCapture(c->st, cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    c->recording = 1;
    c->rec_failed = 0;
    c->rec_key = key;
    c->rec_logits_bytes = 0;
    xs_clear(c);
    cudaMemcpyAsync(c->params_dev, c->params_host, 8, cudaMemcpyHostToDevice, c->st);
    (void)token;
    (void)pos;
    return 1;
}

static int cuda_step_record_end(lmp_backend *b) {
    cuda_ctx *c = ctx_of(b);
    flush(c);
    cudaGraph_t g = NULL;
    cudaError_t e = cudaStreamEndCapture(c->st, &g);
    c->recording = 0;
    xs_clear(c);
    int ok = e == cudaSuccess && !c->rec_failed && !c->err_st && g;
    cudaGraphExec_t ge = NULL;
    if (ok && cudaGraphInstantiate(&ge, g, 0) != cudaSuccess) ok = 0;
    if (g) cudaGraphDestroy(g);
    cudaGetLastError();  // a failed capture leaves an error; the caller runs the step op by op
    if (!ok) {
        if (ge) cudaGraphExecDestroy(ge);
        return 0;
    }
    if (c->n_graphs == N_STEP_GRAPHS) {
        cudaGraphExecDestroy(c->graphs[0].exec);
        memmove(c->graphs, c->graphs + 1, sizeof c->graphs[0] * (N_STEP_GRAPHS - 1));
        c->n_graphs--;
    }
    c->graphs[c->n_graphs++] = (step_graph){c->rec_key, ge, c->rec_logits_bytes};
    return 1;
}

static int cuda_step_replay(lmp_backend *b, uint64_t key, int32_t token, int pos, float *logits) {
    cuda_ctx *c = ctx_of(b);
    flush(c);
    if (c->err_st) return 0;
    for (int i = 0; i < c->n_graphs; i++) {
        step_graph *g = &c->graphs[i];
        if (g->key != key) continue;
        cudaStreamSynchronize(c->st);  // the pinned parameters may still be read by the last replay
        c->params_host[0] = pos;
        c->params_host[1] = token;
        cudaError_t e = cudaGraphLaunch(g->exec, c->st);
        if (e == cudaSuccess && g->logits_bytes) e = cudaStreamSynchronize(c->st);
        if (e != cudaSuccess) {
            fail(c, LMP_E_STATE, "CUDA graph replay: %s", cudaGetErrorString(e));
            return 1;
        }
        if (g->logits_bytes && logits) memcpy(logits, c->logits_host, g->logits_bytes);
        xs_clear(c);
        return 1;
    }
    return 0;
}

// Reserves the pinned logits buffer a recorded step copies into (called by the session before recording).
static int cuda_step_reserve(lmp_backend *b, size_t logits_bytes) {
    cuda_ctx *c = ctx_of(b);
    if (c->logits_host_cap >= logits_bytes) return 1;
    if (c->logits_host) cudaFreeHost(c->logits_host);
    c->logits_host = NULL;
    c->logits_host_cap = 0;
    if (cudaMallocHost((void **)&c->logits_host, logits_bytes) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    c->logits_host_cap = logits_bytes;
    return 1;
}

// ---- evaluation statistics on the device ----

static void cuda_logits_stats(lmp_backend *b, const float *logits, int n, int vocab, const int32_t *target,
                              const float *base_lp, const int32_t *base_top, float *lp_out, double *nll, double *kl,
                              int32_t *top, int32_t *top1) {
    cuda_ctx *c = ctx_of(b);
    flush(c);
    if (c->err_st || n <= 0) return;
    if (n > c->st_cap) {
        void *p[] = {c->st_tgt, c->st_btop, c->st_top, c->st_top1, c->st_nll, c->st_kl};
        for (void *q : p) dev_free(q);
        c->st_tgt = (int32_t *)dev_alloc(c, (size_t)n * 4, "statistics");
        c->st_btop = (int *)dev_alloc(c, (size_t)n * 4, "statistics");
        c->st_top = (int *)dev_alloc(c, (size_t)n * 4, "statistics");
        c->st_top1 = (int *)dev_alloc(c, (size_t)n * 4, "statistics");
        c->st_nll = (double *)dev_alloc(c, (size_t)n * 8, "statistics");
        c->st_kl = (double *)dev_alloc(c, (size_t)n * 8, "statistics");
        if (c->err_st) {
            c->st_cap = 0;
            return;
        }
        c->st_cap = n;
    }
    cudaMemcpyAsync(c->st_tgt, target, (size_t)n * 4, cudaMemcpyHostToDevice, c->st);
    if (base_top) cudaMemcpyAsync(c->st_btop, base_top, (size_t)n * 4, cudaMemcpyHostToDevice, c->st);
    prof_mark(c, "eval statistics");
    lmp_eval_stats_kernel<<<(unsigned)n, 512, 0, c->st>>>(logits, vocab, c->st_tgt, base_lp, base_lp ? c->st_btop : NULL,
                                                           lp_out, c->st_nll, c->st_kl, c->st_top, c->st_top1);
    if (launch_failed(c, "evaluation statistics")) return;
    cudaMemcpyAsync(nll, c->st_nll, (size_t)n * 8, cudaMemcpyDeviceToHost, c->st);
    if (kl && base_lp) cudaMemcpyAsync(kl, c->st_kl, (size_t)n * 8, cudaMemcpyDeviceToHost, c->st);
    if (top) cudaMemcpyAsync(top, c->st_top, (size_t)n * 4, cudaMemcpyDeviceToHost, c->st);
    if (top1 && base_lp) cudaMemcpyAsync(top1, c->st_top1, (size_t)n * 4, cudaMemcpyDeviceToHost, c->st);
    cudaError_t e = cudaStreamSynchronize(c->st);
    if (e != cudaSuccess) fail(c, LMP_E_STATE, "CUDA statistics: %s", cudaGetErrorString(e));
}

__global__ void lmp_read_bw_kernel(const uint4 *p, size_t n, unsigned *out) {
    unsigned acc = 0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint4 v = lmp_ld_stream(p + i);
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (acc == 0x9e3779b9u) *out = acc;  // keeps the loads
}

// Read bandwidth over 1 GiB (16 x L2 and more), best of 5 passes timed with events.
static double cuda_read_bandwidth(lmp_backend *b) {
    cuda_ctx *c = ctx_of(b);
    flush(c);
    const size_t bytes = (size_t)1 << 30;
    uint8_t *buf = NULL;
    if (cudaMalloc((void **)&buf, bytes + 16) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    cudaMemsetAsync(buf, 0x5a, bytes, c->st);
    int sms = 0;
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, c->device);
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    double best = 0;
    for (int r = 0; r < 6; r++) {
        cudaEventRecord(e0, c->st);
        lmp_read_bw_kernel<<<sms * 8, 256, 0, c->st>>>((const uint4 *)buf, bytes / 16, (unsigned *)(buf + bytes));
        cudaEventRecord(e1, c->st);
        cudaEventSynchronize(e1);
        float ms = 0;
        cudaEventElapsedTime(&ms, e0, e1);
        if (r && ms > 0 && bytes / (ms * 1e-3) > best) best = bytes / (ms * 1e-3);  // pass 0 warms up
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cudaFree(buf);
    if (cudaGetLastError() != cudaSuccess) return 0;
    return best;
}

static void cuda_memory_used(lmp_backend *b, uint64_t *weights, uint64_t *kv, uint64_t *other) {
    cuda_ctx *c = ctx_of(b);
    *weights = c->mem_weights;
    *kv = c->mem_kv;
    *other = c->mem_other;
}

static void cuda_destroy(lmp_backend *b);

static const lmp_backend_ops cuda_ops = {
    /*name*/ "cuda",
    /*destroy*/ cuda_destroy,
    /*host_memory*/ 0,
    /*alloc*/ cuda_alloc,
    /*free*/ cuda_free,
    /*to_host*/ cuda_to_host,
    /*from_host*/ cuda_from_host,
    /*supports_op*/ cuda_supports_op,
    /*upload_weight*/ cuda_upload_weight,
    /*release_weight*/ cuda_release_weight,
    /*kv_new*/ cuda_kv_new,
    /*kv_free*/ cuda_kv_free,
    /*synchronize*/ cuda_synchronize,
    /*get_rows*/ cuda_get_rows,
    /*rmsnorm*/ cuda_rmsnorm,
    /*matmul*/ cuda_matmul,
    /*rope*/ cuda_rope,
    /*attention*/ cuda_attention,
    /*swiglu*/ cuda_swiglu,
    /*add*/ cuda_add,
    /*step_reserve*/ cuda_step_reserve,
    /*step_record_begin*/ cuda_step_record_begin,
    /*step_record_end*/ cuda_step_record_end,
    /*step_replay*/ cuda_step_replay,
    /*logits_stats*/ cuda_logits_stats,
    /*read_bandwidth*/ cuda_read_bandwidth,
    /*memory_used*/ cuda_memory_used,
    /*matmul_multi*/ NULL,  // q, k, v and gate, up are fused by holding matmuls back (see the file comment)
};

extern "C" lmp_status lmp_backend_cuda_new(const lmp_backend_opts *opts, lmp_backend **out, lmp_error *err) {
    *out = NULL;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        cudaGetLastError();
        if (e == cudaErrorInsufficientDriver)
            return lmp_err(err, LMP_E_UNSUPPORTED, "no usable CUDA driver (no GPU, or a driver older than CUDA %d.%d); "
                           "use --device cpu", CUDART_VERSION / 1000, CUDART_VERSION % 1000 / 10);
        return lmp_err(err, LMP_E_UNSUPPORTED, "no CUDA GPU found (%s); use --device cpu",
                       e != cudaSuccess ? cudaGetErrorString(e) : "no device");
    }
    int dev = 0;
    const char *env = getenv("LMP_CUDA_DEVICE");
    if (env && *env) dev = atoi(env);
    if (dev < 0 || dev >= n) return lmp_err(err, LMP_E_ARG, "LMP_CUDA_DEVICE=%s: there are %d CUDA devices", env, n);
    cudaDeviceProp p;
    if ((e = cudaGetDeviceProperties(&p, dev)) != cudaSuccess)
        return lmp_err(err, LMP_E_STATE, "CUDA device %d: %s", dev, cudaGetErrorString(e));
    if (p.major < 9)
        return lmp_err(err, LMP_E_UNSUPPORTED,
                       "CUDA device %d (%s) has compute capability %d.%d; this build has kernels for 9.0 and later", dev,
                       p.name, p.major, p.minor);
    if ((e = cudaSetDevice(dev)) != cudaSuccess) return lmp_err(err, LMP_E_STATE, "CUDA device %d: %s", dev, cudaGetErrorString(e));
    lmp_backend *b = (lmp_backend *)lmp_calloc(1, sizeof *b);
    cuda_ctx *c = (cuda_ctx *)lmp_calloc(1, sizeof *c);
    if (!b || !c) {
        lmp_free(b);
        lmp_free(c);
        return lmp_err(err, LMP_E_NOMEM, "out of memory");
    }
    c->device = dev;
    c->exact = opts ? opts->exact : 0;
    if (getenv("LMP_CUDA_EXACT") && *getenv("LMP_CUDA_EXACT")) c->exact = atoi(getenv("LMP_CUDA_EXACT"));
    c->no_fuse = getenv("LMP_CUDA_NO_FUSE") && atoi(getenv("LMP_CUDA_NO_FUSE"));
    c->pdl = !(getenv("LMP_CUDA_NO_PDL") && atoi(getenv("LMP_CUDA_NO_PDL")));
    c->old_attn = getenv("LMP_CUDA_OLD_ATTN") && atoi(getenv("LMP_CUDA_OLD_ATTN"));
    c->last_mv_type = LMP_DTYPE_COUNT;
    if ((e = cudaStreamCreateWithFlags(&c->st, cudaStreamNonBlocking)) != cudaSuccess) {
        lmp_free(b);
        lmp_free(c);
        return lmp_err(err, LMP_E_STATE, "CUDA stream: %s", cudaGetErrorString(e));
    }
    cublasStatus_t s = cublasCreate(&c->blas);
    if (s != CUBLAS_STATUS_SUCCESS) {
        cudaStreamDestroy(c->st);
        lmp_free(b);
        lmp_free(c);
        return lmp_err(err, LMP_E_STATE, "cuBLAS: %s", lmp_cublas_name(s));
    }
    cublasSetStream(c->blas, c->st);
    cudaFuncSetAttribute(lmp_attn_decode_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024);
    cudaFuncSetAttribute(lmp_attn_decode2_kernel<4>, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024);
    cudaFuncSetAttribute(lmp_attn_decode2_kernel<2>, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024);
    const char *pf = getenv("LMP_CUDA_PROFILE");
    if (pf && *pf && (c->prof = (prof_state *)lmp_calloc(1, sizeof *c->prof))) {
        snprintf(c->prof->path, sizeof c->prof->path, "%s", pf);
        for (int i = 0; i <= PROF_EV; i++) cudaEventCreate(&c->prof->ev[i]);
    }
    b->ops = &cuda_ops;
    b->ctx = c;
    *out = b;
    return LMP_OK;
}

static void cuda_destroy(lmp_backend *b) {
    cuda_ctx *c = ctx_of(b);
    flush(c);
    prof_write(c);
    cudaStreamSynchronize(c->st);
    graphs_drop(c);
    while (c->weights) {
        cuda_weight *w = c->weights;
        c->weights = w->next;
        dev_free(w->base);
        lmp_free(w);
    }
    for (size_t i = g_n_allocs; i-- > 0;)  // this backend's leftovers (buffers its user did not free)
        if (g_allocs[i].cat == &c->mem_weights || g_allocs[i].cat == &c->mem_kv || g_allocs[i].cat == &c->mem_other)
            untrack(g_allocs[i].p);
    for (act_set &x : c->xs) {
        void *q[] = {x.q8, x.q16, x.d8, x.s8, x.d16, x.sum8};
        for (void *r : q) dev_free(r);
    }
    void *p[] = {c->att_S, c->att_part, c->att_cnt, c->tok_dev,
                 c->params_dev, c->st_tgt, c->st_btop, c->st_top, c->st_top1, c->st_nll, c->st_kl};
    for (void *q : p) dev_free(q);
    gemm_ws_free(c);
    if (c->tok_host) cudaFreeHost(c->tok_host);
    if (c->params_host) cudaFreeHost(c->params_host);
    if (c->logits_host) cudaFreeHost(c->logits_host);
    cublasDestroy(c->blas);
    cudaStreamDestroy(c->st);
    lmp_free(c);
    lmp_free(b);
}
