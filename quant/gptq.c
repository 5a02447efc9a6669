// gptq.c - GPTQ quantization (Frantar et al. 2022): the per-matrix core (lmp_gptq_quantize_matrix),
// and the pass (lmp_quant_run_gptq), through the shared calibration runner (runtime/calib.h): layer by
// layer, H from the inputs that the already-quantized preceding layers
// produce, the layer's seven matrices quantized, swapped in, and the hidden states advanced.
//
// It does not choose types (quantize.c) and does not touch 1-D tensors, embeddings or the classifier
// (the driver rounds those to nearest). Matrices whose planned type is not a quantized one (f16
// overrides, row-length fallbacks) are left to the driver too.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/gptq.h"
#include "format/qtypes.h"
#include "quant/quant_internal.h"
#include "runtime/sgemm.h"

// LAPACK (OpenBLAS provides it): Cholesky factorisation and inverse from the factor. The trailing
// length argument is Fortran's hidden CHARACTER length; passing it is harmless for implementations
// that do not take it.
void spotrf_(const char *uplo, const int *n, float *a, const int *lda, int *info, size_t uplo_len);
void spotri_(const char *uplo, const int *n, float *a, const int *lda, int *info, size_t uplo_len);

// Q_BLOCK: the super-block and codebook types (q4_K, q5_K, q6_K, iq4_nl): a group is the type's own block,
// its scales come from the type's weighted scale search (importance: the diagonal of H) and every column is
// quantized to the nearest code under them (format/qtypes.h lmp_block_quantize_elem).
enum { Q_SYM4, Q_ASYM4, Q_SYM8, Q_BLOCK };

typedef struct {
    int kind;          // Q_SYM4, Q_ASYM4, Q_SYM8
    int G;             // group (block) size
    size_t hdr;        // bytes before the codes in a block
    size_t blk_bytes;  // bytes per block
    lmp_dtype type;
} qfmt;

static int qfmt_of(lmp_dtype t, qfmt *f) {
    switch (t) {
    case LMP_DTYPE_Q8_0: *f = (qfmt){Q_SYM8, 32, 2, 34}; return 0;
    case LMP_DTYPE_Q4_0: *f = (qfmt){Q_SYM4, 32, 2, 18}; return 0;
    case LMP_DTYPE_Q4_0_G64: *f = (qfmt){Q_SYM4, 64, 2, 34}; return 0;
    case LMP_DTYPE_Q4_0_G128: *f = (qfmt){Q_SYM4, 128, 2, 66}; return 0;
    case LMP_DTYPE_Q4_1: *f = (qfmt){Q_ASYM4, 32, 4, 20}; return 0;
    case LMP_DTYPE_Q4_1_G64: *f = (qfmt){Q_ASYM4, 64, 4, 36}; return 0;
    case LMP_DTYPE_Q4_1_G128: *f = (qfmt){Q_ASYM4, 128, 4, 68}; return 0;
    case LMP_DTYPE_Q4_K: case LMP_DTYPE_Q5_K: case LMP_DTYPE_Q6_K: case LMP_DTYPE_IQ4_NL: {
        const lmp_type_traits *tr = lmp_type_get(t);
        *f = (qfmt){Q_BLOCK, (int)tr->block_size, 0, tr->type_size, t};
        return 0;
    }
    default: return -1;
    }
}

// Scale (and minimum) of one group by the reference RTN rule (qtypes.c: q8_0 d = amax / 127; q4_0
// d = first-largest signed value / -8; q4_1 d = (max - min) / 15, m = min), rounded to fp16 as stored.
static void group_params(const qfmt *f, const float *x, lmp_fp16 *d16, lmp_fp16 *m16) {
    float d = 0.0f, m = 0.0f;
    if (f->kind == Q_SYM4) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < f->G; j++)
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        d = max / -8.0f;
    } else if (f->kind == Q_ASYM4) {
        float mn = x[0], mx = x[0];
        for (int j = 1; j < f->G; j++) {
            if (x[j] < mn) mn = x[j];
            if (x[j] > mx) mx = x[j];
        }
        d = (mx - mn) / 15.0f;
        m = mn;
    } else {
        float amax = 0.0f;
        for (int j = 0; j < f->G; j++) amax = fmaxf(amax, fabsf(x[j]));
        d = amax / 127.0f;
    }
    *d16 = lmp_f32_to_fp16(d);
    *m16 = lmp_f32_to_fp16(m);
}

// Code of x for the stored (fp16-rounded) d and m, with the reference rounding (q4: truncation of
// x / d + 8.5 or (x - m) / d + 0.5; q8: round to nearest), clamped to the code range; *deq = its value.
static inline int quant_code(int kind, float x, float d, float m, float *deq) {
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    if (kind == Q_SYM8) {
        float v = roundf(x * id);
        int c = !(v >= -128.0f) ? (v != v ? 0 : -128) : v > 127.0f ? 127 : (int)v;
        *deq = (float)c * d;
        return c;
    }
    float v = kind == Q_SYM4 ? x * id + 8.5f : (x - m) * id + 0.5f;
    int c = !(v >= 0.0f) ? 0 : v >= 15.0f ? 15 : (int)v;
    *deq = kind == Q_SYM4 ? (float)(c - 8) * d : (float)c * d + m;
    return c;
}

static inline void wr16(uint8_t *p, lmp_fp16 v) {
    p[0] = (uint8_t)(v & 0xff);
    p[1] = (uint8_t)(v >> 8);
}

typedef struct {
    qfmt f;
    int64_t rows, cols, n_groups;
    float *W;             // (rows, cols) working weights, columns in processing order
    const float *U;       // (cols, cols) upper Cholesky factor of H^-1 (processing order), row-major
    const int64_t *perm;  // (cols) processing position -> original column; NULL: identity
    int8_t *codes;        // (rows, cols) codes in the original column order
    lmp_fp16 *d16, *m16;  // (rows, n_groups) stored scales and minimums
    float *E;             // (rows, B) scaled errors (w - q) / U_ii of the current block
    double *row_loss;     // (rows)
    int64_t i1, i2, B;
    int static_groups;
    const float *Wsrc;    // (rows, cols) original-order weights (static group parameters)
    const float *hdiag;   // (cols) diagonal of H, original order (Q_BLOCK: importance of the scale search)
    void *out;            // (rows, row_size) output blocks
    size_t row_size;
} gptq_job;

// Static groups: every group's parameters from the (dead-column-zeroed) weights in original order.
static void static_params_worker(void *arg, int ith, int nth) {
    gptq_job *j = arg;
    long long r0, r1;
    lmp_split_range(j->rows, ith, nth, 1, &r0, &r1);
    for (long long r = r0; r < r1; r++)
        if (j->f.kind == Q_BLOCK)
            lmp_quantize_row_weighted(j->f.type, j->Wsrc + (size_t)r * j->cols, (uint8_t *)j->out + (size_t)r * j->row_size,
                                      j->cols, j->hdiag);
        else
        for (int64_t g = 0; g < j->n_groups; g++)
            group_params(&j->f, j->Wsrc + (size_t)r * j->cols + (size_t)g * j->f.G, &j->d16[r * j->n_groups + g],
                         &j->m16[r * j->n_groups + g]);
}

// Why per row: GPTQ's column sweep is independent across rows (each row only reads its own weights
// and the shared factor U), so threads take row ranges and run the block's column loop with the
// rank-1 updates restricted to the block; the trailing update of the columns after the block is one
// sgemm per thread's rows afterwards (the "lazy batch" of the paper, trailing_worker).
static void block_worker(void *arg, int ith, int nth) {
    gptq_job *j = arg;
    const int G = j->f.G, kind = j->f.kind;
    const int64_t cols = j->cols, i1 = j->i1, i2 = j->i2;
    long long r0, r1;
    lmp_split_range(j->rows, ith, nth, 1, &r0, &r1);
    for (long long r = r0; r < r1; r++) {
        float *w = j->W + (size_t)r * cols;
        float *e = j->E + (size_t)r * j->B;
        lmp_fp16 *d16 = j->d16 + (size_t)r * j->n_groups, *m16 = j->m16 + (size_t)r * j->n_groups;
        double loss = 0.0;
        for (int64_t i = i1; i < i2; i++) {
            int64_t orig = j->perm ? j->perm[i] : i;
            int64_t g = orig / G;
            // Without act-order, processing order is the original order and a group starts here; the
            // block is a multiple of G, so the whole group already has this block's updates.
            float deq;
            if (kind == Q_BLOCK) {
                uint8_t *blk = (uint8_t *)j->out + (size_t)r * j->row_size + (size_t)g * j->f.blk_bytes;
                if (!j->static_groups && i % G == 0) lmp_quantize_row_weighted(j->f.type, w + i, blk, G, j->hdiag + i);
                deq = lmp_block_quantize_elem(j->f.type, blk, (int)(orig % G), w[i]);
            } else {
                if (!j->static_groups && i % G == 0) group_params(&j->f, w + i, &d16[g], &m16[g]);
                float d = lmp_fp16_to_f32(d16[g]), m = lmp_fp16_to_f32(m16[g]);
                int c = quant_code(kind, w[i], d, m, &deq);
                j->codes[(size_t)r * cols + orig] = (int8_t)c;
            }
            const float *u = j->U + (size_t)i * cols;
            float err = (w[i] - deq) / u[i];
            loss += (double)err * err;
            e[i - i1] = err;
            for (int64_t k = i + 1; k < i2; k++) w[k] -= err * u[k];
        }
        j->row_loss[r] += loss;
    }
}

// The lazy batch: W[:, i2:] -= E U[i1:i2, i2:], rows split across threads (one sgemm per slice).
static void trailing_worker(void *arg, int ith, int nth) {
    gptq_job *j = arg;
    long long r0, r1;
    lmp_split_range(j->rows, ith, nth, 4, &r0, &r1);
    const int64_t rest = j->cols - j->i2, nb = j->i2 - j->i1;
    if (r0 < r1 && rest > 0)  // W(r1 - r0, rest) -= E(r1 - r0, nb) U(nb, rest)
        lmp_sgemm(0, 0, (int)(r1 - r0), (int)rest, (int)nb, -1.0f, j->E + (size_t)r0 * j->B, (int)j->B,
                  j->U + (size_t)j->i1 * j->cols + j->i2, (int)j->cols, 1.0f, j->W + (size_t)r0 * j->cols + j->i2,
                  (int)j->cols);
}

static void pack_worker(void *arg, int ith, int nth) {
    gptq_job *j = arg;
    const int G = j->f.G;
    long long r0, r1;
    lmp_split_range(j->rows, ith, nth, 1, &r0, &r1);
    for (long long r = r0; r < r1; r++) {
        uint8_t *row = (uint8_t *)j->out + (size_t)r * j->row_size;
        const int8_t *c = j->codes + (size_t)r * j->cols;
        for (int64_t g = 0; g < j->n_groups; g++) {
            uint8_t *blk = row + (size_t)g * j->f.blk_bytes;
            const int8_t *cg = c + g * G;
            wr16(blk, j->d16[r * j->n_groups + g]);
            if (j->f.kind == Q_ASYM4) wr16(blk + 2, j->m16[r * j->n_groups + g]);
            uint8_t *qs = blk + j->f.hdr;
            if (j->f.kind == Q_SYM8) memcpy(qs, cg, (size_t)G);
            else
                for (int k = 0; k < G / 2; k++) qs[k] = (uint8_t)((uint8_t)cg[k] | ((uint8_t)cg[k + G / 2] << 4));
        }
    }
}

static void pool_run(lmp_pool *pool, lmp_pool_fn fn, void *arg) {
    if (pool) lmp_pool_run(pool, fn, arg);
    else fn(arg, 0, 1);
}

typedef struct {
    float key;
    int64_t idx;
} sort_item;

// Decreasing key, ties by increasing index (a stable order, as the NumPy reference's).
static int cmp_desc(const void *a, const void *b) {
    const sort_item *x = a, *y = b;
    if (x->key != y->key) return x->key > y->key ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

// Upper Cholesky factor U of A^-1 (A^-1 = U^T U) in place, A row-major symmetric. With row-major
// storage LAPACK's column-major lower triangle is our upper triangle, so 'L' factorisations yield U.
// Returns 0, or the failing step (1 factor, 2 inverse, 3 factor of the inverse).
static int chol_inverse_upper(float *A, int n) {
    int info = 0;
    spotrf_("L", &n, A, &n, &info, 1);
    if (info != 0) return 1;
    spotri_("L", &n, A, &n, &info, 1);
    if (info != 0) return 2;
    spotrf_("L", &n, A, &n, &info, 1);
    if (info != 0) return 3;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < i; k++) A[(size_t)i * n + k] = 0.0f;
    for (size_t i = 0; i < (size_t)n * n; i++)
        if (!isfinite(A[i])) return 3;
    return 0;
}

lmp_status lmp_gptq_quantize_matrix(const float *W, int64_t rows, int64_t cols, const float *H, lmp_dtype type,
                                    float damp, int block, int act_order, lmp_pool *pool, void *out,
                                    lmp_gptq_stats *stats, lmp_error *err) {
    qfmt f;
    if (qfmt_of(type, &f) != 0) return lmp_err(err, LMP_E_ARG, "GPTQ: type %s is not a quantized type", lmp_type_name(type));
    if (rows <= 0 || cols <= 0 || cols % f.G != 0)
        return lmp_err(err, LMP_E_ARG, "GPTQ: %lld x %lld matrix: columns must be a positive multiple of %s's block of %d",
                       (long long)rows, (long long)cols, lmp_type_name(type), f.G);
    if (cols > 1 << 20) return lmp_err(err, LMP_E_ARG, "GPTQ: %lld columns is too many", (long long)cols);
    if (!(damp > 0.0f) || !(damp < 1.0f)) return lmp_err(err, LMP_E_ARG, "GPTQ: dampening %g must be in (0, 1)", (double)damp);
    uint64_t nw, nh;
    if (lmp_mul_overflow((uint64_t)rows, (uint64_t)cols, &nw) || nw > SIZE_MAX / sizeof(float) ||
        lmp_mul_overflow((uint64_t)cols, (uint64_t)cols, &nh))
        return lmp_err(err, LMP_E_ARG, "GPTQ: %lld x %lld matrix is too large", (long long)rows, (long long)cols);
    for (uint64_t i = 0; i < nw; i++)
        if (!isfinite(W[i]))
            return lmp_err(err, LMP_E_ARG, "GPTQ: weight [%llu, %llu] is not finite", (unsigned long long)(i / cols),
                           (unsigned long long)(i % cols));
    for (uint64_t i = 0; i < nh; i++)
        if (!isfinite(H[i]))
            return lmp_err(err, LMP_E_ARG, "GPTQ: H[%llu, %llu] is not finite", (unsigned long long)(i / cols),
                           (unsigned long long)(i % cols));

    const int64_t B = ((block > 0 ? block : 128) + f.G - 1) / f.G * f.G;
    gptq_job j;
    memset(&j, 0, sizeof j);
    j.f = f;
    j.rows = rows;
    j.cols = cols;
    j.n_groups = cols / f.G;
    j.B = B < cols ? B : cols;
    j.static_groups = act_order;
    j.out = out;
    j.row_size = (size_t)j.n_groups * f.blk_bytes;
    float *Wz = lmp_malloc(nw * sizeof(float));     // (rows, cols) original order, dead columns zeroed
    float *Hd = lmp_malloc(nh * sizeof(float));     // (cols, cols) dead-fixed H (processing order)
    float *A = lmp_malloc(nh * sizeof(float));      // (cols, cols) dampened H, then U
    int64_t *perm = act_order ? lmp_malloc((size_t)cols * sizeof(int64_t)) : NULL;
    float *diag = lmp_malloc((size_t)cols * sizeof(float));
    j.W = act_order ? lmp_malloc(nw * sizeof(float)) : Wz;
    j.codes = lmp_malloc(nw);
    j.d16 = lmp_calloc((size_t)(rows * j.n_groups), sizeof(lmp_fp16));
    j.m16 = lmp_calloc((size_t)(rows * j.n_groups), sizeof(lmp_fp16));
    j.E = lmp_malloc((size_t)rows * (size_t)j.B * sizeof(float));
    j.row_loss = lmp_calloc((size_t)rows, sizeof(double));
    lmp_status st = LMP_OK;
    if (!Wz || !Hd || !A || (act_order && !perm) || !diag || !j.W || !j.codes || !j.d16 || !j.m16 || !j.E ||
        !j.row_loss) {
        st = lmp_err(err, LMP_E_NOMEM, "GPTQ: out of memory for a %lld x %lld matrix", (long long)rows, (long long)cols);
        goto done;
    }
    memcpy(Wz, W, nw * sizeof(float));
    // Dead inputs: a column whose input is always zero cannot affect the output; H_ii = 1 keeps the
    // factorisation regular and the weights there become zero (as the reference does).
    int64_t n_dead = 0;
    for (int64_t i = 0; i < cols; i++) {
        diag[i] = H[(size_t)i * cols + i];
        if (diag[i] == 0.0f) {
            diag[i] = 1.0f;
            n_dead++;
            for (int64_t r = 0; r < rows; r++) Wz[(size_t)r * cols + i] = 0.0f;
        }
    }
    j.hdiag = diag;
    if (act_order) {
        sort_item *items = lmp_malloc((size_t)cols * sizeof(sort_item));
        if (!items) {
            st = lmp_err(err, LMP_E_NOMEM, "GPTQ: out of memory");
            goto done;
        }
        for (int64_t i = 0; i < cols; i++) items[i] = (sort_item){diag[i], i};
        qsort(items, (size_t)cols, sizeof(sort_item), cmp_desc);
        for (int64_t i = 0; i < cols; i++) perm[i] = items[i].idx;
        lmp_free(items);
        j.perm = perm;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t i = 0; i < cols; i++) j.W[(size_t)r * cols + i] = Wz[(size_t)r * cols + perm[i]];
        j.Wsrc = Wz;
        pool_run(pool, static_params_worker, &j);
    }
    for (int64_t a = 0; a < cols; a++) {
        int64_t pa = act_order ? perm[a] : a;
        for (int64_t b = 0; b < cols; b++) {
            int64_t pb = act_order ? perm[b] : b;
            Hd[(size_t)a * cols + b] = pa == pb ? diag[pa] : H[(size_t)pa * cols + pb];
        }
    }
    double mean_diag = 0.0;
    for (int64_t i = 0; i < cols; i++) mean_diag += diag[i];
    mean_diag /= (double)cols;
    if (!(mean_diag > 0.0)) {
        st = lmp_err(err, LMP_E_ARG, "GPTQ: H has a non-positive mean diagonal %g (not a Gram matrix)", mean_diag);
        goto done;
    }
    // Dampening; a matrix that is still not positive definite is retried with 10x (as far as 1000x).
    double dmp = damp;
    int tries = 0, fail;
    for (;;) {
        memcpy(A, Hd, nh * sizeof(float));
        float add = (float)(dmp * mean_diag);
        for (int64_t i = 0; i < cols; i++) A[(size_t)i * cols + i] += add;
        fail = chol_inverse_upper(A, (int)cols);
        if (!fail) break;
        if (tries == 3) {
            st = lmp_err(err, LMP_E_ARG,
                         "GPTQ: H (%lld x %lld) is not positive definite even with dampening %g x mean diagonal (%s failed)",
                         (long long)cols, (long long)cols, dmp,
                         fail == 1 ? "Cholesky factorisation" : fail == 2 ? "inversion" : "factorisation of the inverse");
            goto done;
        }
        tries++;
        dmp *= 10.0;
    }
    j.U = A;
    for (int64_t i1 = 0; i1 < cols; i1 += j.B) {
        j.i1 = i1;
        j.i2 = i1 + j.B < cols ? i1 + j.B : cols;
        pool_run(pool, block_worker, &j);
        if (j.i2 < cols) pool_run(pool, trailing_worker, &j);
    }
    for (int64_t r = 0; r < rows && f.kind != Q_BLOCK; r++)
        for (int64_t g = 0; g < j.n_groups; g++) {
            float d = lmp_fp16_to_f32(j.d16[r * j.n_groups + g]), m = lmp_fp16_to_f32(j.m16[r * j.n_groups + g]);
            if (!isfinite(d) || !isfinite(m)) {
                st = lmp_err(err, LMP_E_ARG, "GPTQ: row %lld group %lld: scale does not fit fp16 (weights too large)",
                             (long long)r, (long long)g);
                goto done;
            }
        }
    if (f.kind != Q_BLOCK) pool_run(pool, pack_worker, &j);
    if (stats) {
        double loss = 0.0;
        for (int64_t r = 0; r < rows; r++) loss += j.row_loss[r];
        stats->loss = loss;
        stats->damp_used = dmp;
        stats->n_retries = tries;
        stats->n_dead = n_dead;
    }
done:
    if (j.W != Wz) lmp_free(j.W);
    lmp_free(Wz);
    lmp_free(Hd);
    lmp_free(A);
    lmp_free(perm);
    lmp_free(diag);
    lmp_free(j.codes);
    lmp_free(j.d16);
    lmp_free(j.m16);
    lmp_free(j.E);
    lmp_free(j.row_loss);
    return st;
}

// ---- the pass ----

lmp_status lmp_quant_run_gptq(lmp_qctx *q, lmp_error *err) {
    const lmp_quant_params *p = q->p;
    lmp_model *m = q->model;
    const int L = m->cfg.n_layers;
    lmp_calib_set set;
    lmp_calib_runner *r = NULL;
    lmp_status st = lmp_qctx_calib_open(q, &set, &r, err);
    if (st) return st;
    float *H = NULL;
    for (int l = 0; l < L && !st; l++) {
        lmp_qentry *es[LMP_MAT_COUNT];
        unsigned stats[LMP_HOOK_COUNT] = {0};
        int any = 0;
        for (int k = 0; k < LMP_MAT_COUNT; k++) {
            es[k] = lmp_qctx_find(q, lmp_layer_mat(&m->layers[l], k)->name);
            if (es[k] && !lmp_type_get(es[k]->type)->is_quantized) {
                // f16 etc.: converted now and swapped in, so later layers see the model as written
                if ((st = lmp_qentry_quantize(q, es[k], NULL, err)) || (st = lmp_qctx_swap_in(q, es[k], err))) break;
                es[k] = NULL;
            }
            if (es[k]) {
                stats[lmp_mats[k].input] |= LMP_STAT_GRAM;
                any = 1;
            }
        }
        if (st) break;
        if (any && (st = lmp_calib_runner_collect(r, l, stats, err))) break;
        for (int k = 0; k < LMP_MAT_COUNT && !st; k++) {
            lmp_qentry *e = es[k];
            if (!e) continue;
            int wd;
            const float *G = lmp_calib_runner_gram(r, lmp_mats[k].input, &wd);
            if (e->cols != wd) {
                st = lmp_err(err, LMP_E_FORMAT, "'%s' has %lld columns but its input has %d channels", e->src->name,
                             (long long)e->cols, wd);
                break;
            }
            // H = 2/N X^T X (the paper's scale; it cancels out of the result).
            size_t nh = (size_t)wd * wd;
            float *Hn = lmp_realloc(H, nh * sizeof(float));
            if (!Hn) {
                st = lmp_err(err, LMP_E_NOMEM, "out of memory");
                break;
            }
            H = Hn;
            for (size_t i = 0; i < nh; i++) H[i] = 2.0f * G[i];
            size_t out_bytes = lmp_type_row_size(e->type, e->cols) * (size_t)e->rows;
            void *out = lmp_malloc(out_bytes);
            if (!out) {
                st = lmp_err(err, LMP_E_NOMEM, "out of memory quantizing '%s'", e->src->name);
                break;
            }
            lmp_gptq_stats gs;
            st = lmp_gptq_quantize_matrix(lmp_qentry_values(e), e->rows, e->cols, H, e->type, p->gptq_damp,
                                          p->gptq_block, p->gptq_act_order, q->pool, out, &gs, err);
            if (st) {
                lmp_free(out);
                lmp_err_prefix(err, st, "%s", e->src->name);
                break;
            }
            if (gs.n_retries)
                lmp_qctx_warn(q, "%s: H not positive definite with dampening %g; used %g", e->src->name,
                              (double)p->gptq_damp, gs.damp_used);
            lmp_free(e->out);
            e->out = out;
            e->out_bytes = out_bytes;
            st = lmp_qctx_swap_in(q, e, err);
        }
        if (st) break;
        if (l + 1 < L && (st = lmp_calib_runner_advance(r, l, NULL, NULL, err))) break;
        if (p->progress) p->progress(p->progress_user, "gptq", l + 1, L);
    }
    lmp_free(H);
    lmp_calib_runner_free(r);
    lmp_calib_set_free(&set);
    return st;
}
