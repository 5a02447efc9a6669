// synth.h - random-weight Llama models of any shape, for benchmarks and tests (lmpress synth).
// Weights are N(0, 0.02^2) (norms 1) from a seeded generator, so a shape and a seed always give the
// same file. It does not train anything: these models produce noise, at real speed.
#ifndef LMP_SYNTH_H
#define LMP_SYNTH_H

#include <stdint.h>

#include "format/lmp_format.h"

typedef struct lmp_synth_params {
    int dim, n_layers, n_heads, n_kv_heads, ffn, vocab, ctx;
    int tied;            // classifier shares the embedding
    uint64_t seed;
    const lmp_meta *tokenizer_from;  // copy tokenizer.* keys from this metadata (may be NULL)
} lmp_synth_params;

lmp_status lmp_synth_build(const lmp_synth_params *p, lmp_builder **out, lmp_error *err);

#endif
