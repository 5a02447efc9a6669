// kernels_int_panel.h - the driver of the vertical-panel integer matmul, shared by kernels_int_avx2.c and
// kernels_int_avx512.c. Not a normal header: each of those files includes it once, after defining AI,
// PANEL_ROWS, PANEL_KC, PANEL_TT, PANEL_MIN_M, the panel type, g_prev (the table's previous matmul
// entries), repack_q8_0 / repack_q4, tiles_q8_0 / tiles_q4_0 / tiles_q4_1, and how a strip's rows are
// addressed by the repack:
//   PANEL_SRC_T      the type of that address argument (a row stride, or a vector of row offsets)
//   PANEL_SRC(wrb)   its value for weight rows of wrb bytes
//   PANEL_FITS(wrb)  whether that addressing can reach PANEL_ROWS rows of wrb bytes
// It defines panel_init(k), which the file's lmp_kernels_init_int_* calls.
//
// For each whole strip of PANEL_ROWS rows in [r0, r1): for each chunk of PANEL_KC activation blocks:
// repack, then run every token through it in tiles of up to PANEL_TT. The panel stays in L1/L2 while the
// tokens pass; the chunk's activations (m x 1-2 KB) stay in L2 across strips. Rows outside whole strips,
// batches of fewer than PANEL_MIN_M tokens and rows PANEL_SRC cannot address go to g_prev.
AI void matmul_panel(lmp_dtype type, int G, int asym, const void *w, size_t wrb, const void *x, size_t xrb, int64_t m,
                     float *y, int64_t ldy, int64_t n, int64_t r0, int64_t r1) {
    if (m < PANEL_MIN_M || !PANEL_FITS(wrb)) {
        g_prev[type](w, wrb, x, xrb, m, y, ldy, n, r0, r1);
        return;
    }
    const int q8 = type == LMP_DTYPE_Q8_0;
    const size_t xbs = q8 ? sizeof(lmp_block_q16_a) : sizeof(lmp_block_q8_a);
    const int64_t nbx = n / 32;  // activation blocks per row
    const PANEL_SRC_T src = PANEL_SRC(wrb);
    panel P;
    int64_t r = r0;
    for (; r1 - r >= PANEL_ROWS; r += PANEL_ROWS) {
        const uint8_t *ws = (const uint8_t *)w + (size_t)r * wrb;
        for (int64_t j0 = 0; j0 < nbx; j0 += PANEL_KC) {
            const int nj = (int)(nbx - j0 < PANEL_KC ? nbx - j0 : PANEL_KC);
            if (q8) repack_q8_0(&P, ws, src, j0, nj);
            else repack_q4(&P, ws, src, G, asym, j0, nj);
            const uint8_t *xc = (const uint8_t *)x + (size_t)j0 * xbs;
            for (int64_t t = 0; t < m; t += PANEL_TT) {
                const int T = (int)(m - t < PANEL_TT ? m - t : PANEL_TT);
                const uint8_t *xt = xc + (size_t)t * xrb;
                float *yt = y + t * ldy + r;
                if (q8) tiles_q8_0(&P, xt, xrb, nj, yt, ldy, j0 == 0, T);
                else if (asym) tiles_q4_1(&P, xt, xrb, nj, yt, ldy, j0 == 0, T);
                else tiles_q4_0(&P, xt, xrb, nj, yt, ldy, j0 == 0, T);
            }
        }
    }
    if (r < r1) g_prev[type](w, wrb, x, xrb, m, y, ldy, n, r, r1);
}

#define PANEL_ENTRY(name, T, G, asym)                                                                       \
    static void panel_##name(const void *w, size_t wrb, const void *x, size_t xrb, int64_t m, float *y,      \
                             int64_t ldy, int64_t n, int64_t r0, int64_t r1) {                              \
        matmul_panel(T, G, asym, w, wrb, x, xrb, m, y, ldy, n, r0, r1);                                     \
    }
PANEL_ENTRY(q8_0, LMP_DTYPE_Q8_0, 32, 0)
PANEL_ENTRY(q4_0, LMP_DTYPE_Q4_0, 32, 0)
PANEL_ENTRY(q4_1, LMP_DTYPE_Q4_1, 32, 1)
PANEL_ENTRY(q4_0_g64, LMP_DTYPE_Q4_0_G64, 64, 0)
PANEL_ENTRY(q4_0_g128, LMP_DTYPE_Q4_0_G128, 128, 0)
PANEL_ENTRY(q4_1_g64, LMP_DTYPE_Q4_1_G64, 64, 1)
PANEL_ENTRY(q4_1_g128, LMP_DTYPE_Q4_1_G128, 128, 1)
#undef PANEL_ENTRY

// Overrides the matmul entries of q8_0 and the q4_0 / q4_1 families, keeping the previous ones for the edges.
static void panel_init(lmp_kernels *k) {
    static const struct {
        lmp_dtype t;
        lmp_matmul_fn f;
    } e[] = {{LMP_DTYPE_Q8_0, panel_q8_0},           {LMP_DTYPE_Q4_0, panel_q4_0},
             {LMP_DTYPE_Q4_1, panel_q4_1},           {LMP_DTYPE_Q4_0_G64, panel_q4_0_g64},
             {LMP_DTYPE_Q4_0_G128, panel_q4_0_g128}, {LMP_DTYPE_Q4_1_G64, panel_q4_1_g64},
             {LMP_DTYPE_Q4_1_G128, panel_q4_1_g128}};
    for (size_t i = 0; i < sizeof e / sizeof e[0]; i++) {
        g_prev[e[i].t] = k->matmul[e[i].t];
        k->matmul[e[i].t] = e[i].f;
    }
}
