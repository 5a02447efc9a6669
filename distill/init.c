// init.c - a new student shaped after a teacher (lmpress init; see lmp_distill_init in distill.h for the
// initialisation it documents). It writes no file (the CLI writes the builder) and trains nothing.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "distill/distill.h"

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

// N(0, sd^2) by Box-Muller on 53-bit uniforms (as format/synth.c)
static void fill_normal(float *x, size_t n, double sd, uint64_t *s) {
    for (size_t i = 0; i < n; i += 2) {
        double u1 = ((rng_next(s) >> 11) + 1.0) / 9007199254740993.0, u2 = (rng_next(s) >> 11) / 9007199254740992.0;
        double r = sqrt(-2.0 * log(u1)) * sd;
        x[i] = (float)(r * cos(6.283185307179586 * u2));
        if (i + 1 < n) x[i + 1] = (float)(r * sin(6.283185307179586 * u2));
    }
}

static lmp_status add(lmp_builder *b, const char *name, int ndim, int64_t rows, int64_t cols, double sd, uint64_t *s,
                      lmp_error *err) {
    int64_t shape[2] = {rows, cols};
    size_t n = (size_t)rows * (size_t)(ndim == 2 ? cols : 1);
    float *x = lmp_malloc(n * sizeof(float));
    if (!x) return lmp_err(err, LMP_E_NOMEM, "out of memory for '%s'", name);
    if (sd > 0) fill_normal(x, n, sd, s);
    else
        for (size_t i = 0; i < n; i++) x[i] = 1.0f;
    return lmp_builder_add(b, name, LMP_DTYPE_F32, ndim, shape, x, err);
}

lmp_status lmp_distill_init(const lmp_model *teacher, const lmp_init_params *p, lmp_builder **out, lmp_error *err) {
    *out = NULL;
    const lmp_config *tc = &teacher->cfg;
    const int dim = p->dim > 0 ? p->dim : tc->dim;
    const int n_layers = p->n_layers > 0 ? p->n_layers : tc->n_layers;
    const int teacher_heads = teacher->layers[0].n_heads, teacher_kv = teacher->layers[0].n_kv_heads;
    int heads = p->n_heads > 0 ? p->n_heads : (dim == tc->dim ? teacher_heads : dim / tc->head_dim);
    int kv = p->n_kv_heads > 0 ? p->n_kv_heads : (heads == teacher_heads ? teacher_kv : heads);
    const int ffn = p->ffn > 0 ? p->ffn : tc->max_ffn;
    if (heads < 1 || dim % heads)
        return lmp_err(err, LMP_E_ARG, "--heads %d does not divide --dim %d", heads, dim);
    const int hd = dim / heads;
    if (hd % 2) return lmp_err(err, LMP_E_ARG, "head dimension %d (dim %d / heads %d) must be even", hd, dim, heads);
    if (kv < 1 || heads % kv) return lmp_err(err, LMP_E_ARG, "--kv-heads %d does not divide --heads %d", kv, heads);
    if (n_layers > 4096 || dim > (1 << 20) || ffn > (1 << 24))
        return lmp_err(err, LMP_E_ARG, "shape too large (dim %d, layers %d, ffn %d)", dim, n_layers, ffn);
    // the rotated fraction of each head stays the teacher's
    int rope_dim = tc->rope_dim == tc->head_dim ? hd : (int)((int64_t)hd * tc->rope_dim / tc->head_dim) & ~1;
    if (rope_dim < 2) rope_dim = 2;

    lmp_builder *b = lmp_builder_new();
    if (!b) return lmp_err(err, LMP_E_NOMEM, "out of memory");
    lmp_meta *m = lmp_builder_meta(b);
    const lmp_meta *tm = lmp_file_meta(teacher->file);
    char name[96];
    lmp_status st = LMP_OK;
    st |= lmp_meta_set_str(m, "general.architecture", "llama");
    snprintf(name, sizeof name, "student-d%d-l%d-h%d-kv%d-ffn%d", dim, n_layers, heads, kv, ffn);
    st |= lmp_meta_set_str(m, "general.name", name);
    st |= lmp_meta_set_u32(m, "llama.context_length", (uint32_t)tc->ctx);
    st |= lmp_meta_set_u32(m, "llama.embedding_length", (uint32_t)dim);
    st |= lmp_meta_set_u32(m, "llama.block_count", (uint32_t)n_layers);
    st |= lmp_meta_set_u32(m, "llama.feed_forward_length", (uint32_t)ffn);
    st |= lmp_meta_set_u32(m, "llama.attention.head_count", (uint32_t)heads);
    st |= lmp_meta_set_u32(m, "llama.attention.head_count_kv", (uint32_t)kv);
    st |= lmp_meta_set_u32(m, "llama.attention.head_dim", (uint32_t)hd);
    st |= lmp_meta_set_f32(m, "llama.attention.layer_norm_rms_epsilon", tc->rms_eps);
    st |= lmp_meta_set_f32(m, "llama.rope.freq_base", tc->rope_theta);
    st |= lmp_meta_set_u32(m, "llama.rope.dimension_count", (uint32_t)rope_dim);
    st |= lmp_meta_set_str(m, "llama.rope.style", tc->rope_neox ? "neox" : "interleaved");
    st |= lmp_meta_set_u32(m, "llama.vocab_size", (uint32_t)tc->vocab);
    for (size_t i = 0; i < lmp_meta_count(tm); i++) {
        const lmp_kv *e = lmp_meta_at(tm, i);
        if (!strncmp(e->key, "tokenizer.", 10)) st |= lmp_meta_set_kv(m, e->key, e);
    }
    st |= lmp_meta_set_str(m, "provenance.tool", "lmpress " LMP_VERSION_STRING);
    if (p->teacher_path) st |= lmp_meta_set_str(m, "provenance.parent", p->teacher_path);
    st |= lmp_meta_set_u32(m, "provenance.parent_checksum", lmp_file_checksum(teacher->file));
    if (p->command_line) st |= lmp_meta_set_str(m, "provenance.command", p->command_line);
    st |= lmp_meta_set_str(m, "distill.init", "normal(0, 0.02); attn_output, ffn_down x 1/sqrt(2 n_layers); norms 1");
    st |= lmp_meta_set_u64(m, "distill.init_seed", p->seed);
    if (st) {
        lmp_builder_free(b);
        return lmp_err(err, LMP_E_NOMEM, "out of memory");
    }
    uint64_t s = p->seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
    if (!s) s = 1;
    const double sd = 0.02, sd_res = 0.02 / sqrt(2.0 * n_layers);
    if ((st = add(b, "token_embd.weight", 2, tc->vocab, dim, sd, &s, err))) goto fail;
    for (int l = 0; l < n_layers; l++) {
#define T(suffix, nd, r, c, sdv)                                                 \
    snprintf(name, sizeof name, "blk.%d." suffix, l);                           \
    if ((st = add(b, name, nd, r, c, sdv, &s, err))) goto fail;
        T("attn_norm.weight", 1, dim, 0, 0)
        T("attn_q.weight", 2, (int64_t)heads * hd, dim, sd)
        T("attn_k.weight", 2, (int64_t)kv * hd, dim, sd)
        T("attn_v.weight", 2, (int64_t)kv * hd, dim, sd)
        T("attn_output.weight", 2, dim, (int64_t)heads * hd, sd_res)
        T("ffn_norm.weight", 1, dim, 0, 0)
        T("ffn_gate.weight", 2, ffn, dim, sd)
        T("ffn_down.weight", 2, dim, ffn, sd_res)
        T("ffn_up.weight", 2, ffn, dim, sd)
#undef T
    }
    if ((st = add(b, "output_norm.weight", 1, dim, 0, 0, &s, err))) goto fail;
    if (!teacher->tied && (st = add(b, "output.weight", 2, tc->vocab, dim, sd, &s, err))) goto fail;
    *out = b;
    return LMP_OK;
fail:
    lmp_builder_free(b);
    return st;
}
