// synth.c - random-weight models (see synth.h).
#include "format/synth.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

static void fill_normal(float *x, size_t n, float stddev, uint64_t *s) {
    for (size_t i = 0; i < n; i += 2) {
        double u1 = ((rng_next(s) >> 11) + 1.0) / 9007199254740993.0, u2 = (rng_next(s) >> 11) / 9007199254740992.0;
        double r = sqrt(-2.0 * log(u1)) * stddev;
        x[i] = (float)(r * cos(6.283185307179586 * u2));
        if (i + 1 < n) x[i + 1] = (float)(r * sin(6.283185307179586 * u2));
    }
}

static lmp_status add_tensor(lmp_builder *b, const char *name, int ndim, int64_t d0, int64_t d1, float stddev,
                             uint64_t *s, lmp_error *err) {
    int64_t shape[2] = {d0, d1};
    size_t n = (size_t)d0 * (size_t)(ndim == 2 ? d1 : 1);
    float *x = lmp_malloc(n * sizeof(float));
    if (!x) return lmp_err(err, LMP_E_NOMEM, "out of memory for '%s'", name);
    if (stddev > 0) fill_normal(x, n, stddev, s);
    else for (size_t i = 0; i < n; i++) x[i] = 1.0f;
    return lmp_builder_add(b, name, LMP_DTYPE_F32, ndim, shape, x, err);
}

lmp_status lmp_synth_build(const lmp_synth_params *p, lmp_builder **out, lmp_error *err) {
    *out = NULL;
    if (p->dim <= 0 || p->n_layers <= 0 || p->n_heads <= 0 || p->n_kv_heads <= 0 || p->ffn <= 0 || p->vocab <= 0 ||
        p->ctx <= 0)
        return lmp_err(err, LMP_E_ARG, "every dimension must be positive");
    if (p->dim % p->n_heads || (p->dim / p->n_heads) % 2)
        return lmp_err(err, LMP_E_ARG, "dim %d must be an even multiple of heads %d", p->dim, p->n_heads);
    if (p->n_heads % p->n_kv_heads)
        return lmp_err(err, LMP_E_ARG, "kv heads %d must divide heads %d", p->n_kv_heads, p->n_heads);
    lmp_builder *b = lmp_builder_new();
    if (!b) return lmp_err(err, LMP_E_NOMEM, "out of memory");
    lmp_meta *m = lmp_builder_meta(b);
    int hd = p->dim / p->n_heads, kv = p->n_kv_heads * hd;
    char name[64];
    uint64_t s = p->seed ? p->seed : 1;
    lmp_status st = LMP_OK;
    lmp_meta_keep(&st, lmp_meta_set_str(m, "general.architecture", "llama"), "general.architecture", err);
    snprintf(name, sizeof name, "synth-d%d-l%d-seed%llu", p->dim, p->n_layers, (unsigned long long)p->seed);
    lmp_meta_keep(&st, lmp_meta_set_str(m, "general.name", name), "general.name", err);
    lmp_meta_keep(&st, lmp_meta_set_u32(m, "llama.context_length", (uint32_t)p->ctx), "llama.context_length", err);
    lmp_meta_keep(&st, lmp_meta_set_u32(m, "llama.embedding_length", (uint32_t)p->dim), "llama.embedding_length", err);
    lmp_meta_keep(&st, lmp_meta_set_u32(m, "llama.block_count", (uint32_t)p->n_layers), "llama.block_count", err);
    lmp_meta_keep(&st, lmp_meta_set_u32(m, "llama.feed_forward_length", (uint32_t)p->ffn), "llama.feed_forward_length", err);
    lmp_meta_keep(&st, lmp_meta_set_u32(m, "llama.attention.head_count", (uint32_t)p->n_heads), "llama.attention.head_count", err);
    lmp_meta_keep(&st, lmp_meta_set_u32(m, "llama.attention.head_count_kv", (uint32_t)p->n_kv_heads), "llama.attention.head_count_kv", err);
    lmp_meta_keep(&st, lmp_meta_set_u32(m, "llama.attention.head_dim", (uint32_t)hd), "llama.attention.head_dim", err);
    lmp_meta_keep(&st, lmp_meta_set_f32(m, "llama.attention.layer_norm_rms_epsilon", 1e-5f), "llama.attention.layer_norm_rms_epsilon", err);
    lmp_meta_keep(&st, lmp_meta_set_f32(m, "llama.rope.freq_base", 10000.0f), "llama.rope.freq_base", err);
    lmp_meta_keep(&st, lmp_meta_set_u32(m, "llama.rope.dimension_count", (uint32_t)hd), "llama.rope.dimension_count", err);
    lmp_meta_keep(&st, lmp_meta_set_str(m, "llama.rope.style", "interleaved"), "llama.rope.style", err);
    lmp_meta_keep(&st, lmp_meta_set_u32(m, "llama.vocab_size", (uint32_t)p->vocab), "llama.vocab_size", err);
    lmp_meta_keep(&st, lmp_meta_set_str(m, "provenance.tool", "lmpress " LMP_VERSION_STRING), "provenance.tool", err);
    if (p->tokenizer_from) {
        for (size_t i = 0; i < lmp_meta_count(p->tokenizer_from); i++) {
            const lmp_kv *kv = lmp_meta_at(p->tokenizer_from, i);
            if (strncmp(kv->key, "tokenizer.", 10) == 0) lmp_meta_keep(&st, lmp_meta_set_kv(m, kv->key, kv), kv->key, err);
        }
    }
    if (st) {
        lmp_builder_free(b);
        return st;
    }
    const float sd = 0.02f;
    if ((st = add_tensor(b, "token_embd.weight", 2, p->vocab, p->dim, sd, &s, err))) goto fail;
    for (int l = 0; l < p->n_layers; l++) {
#define T(suffix, nd, a, c, sdv)                                                   \
    snprintf(name, sizeof name, "blk.%d." suffix, l);                               \
    if ((st = add_tensor(b, name, nd, a, c, sdv, &s, err))) goto fail;
        T("attn_norm.weight", 1, p->dim, 0, 0)
        T("attn_q.weight", 2, p->dim, p->dim, sd)
        T("attn_k.weight", 2, kv, p->dim, sd)
        T("attn_v.weight", 2, kv, p->dim, sd)
        T("attn_output.weight", 2, p->dim, p->dim, sd)
        T("ffn_norm.weight", 1, p->dim, 0, 0)
        T("ffn_gate.weight", 2, p->ffn, p->dim, sd)
        T("ffn_down.weight", 2, p->dim, p->ffn, sd)
        T("ffn_up.weight", 2, p->ffn, p->dim, sd)
#undef T
    }
    if ((st = add_tensor(b, "output_norm.weight", 1, p->dim, 0, 0, &s, err))) goto fail;
    if (!p->tied && (st = add_tensor(b, "output.weight", 2, p->vocab, p->dim, sd, &s, err))) goto fail;
    *out = b;
    return LMP_OK;
fail:
    lmp_builder_free(b);
    return st;
}
