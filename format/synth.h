// synth.h - random-weight Llama models of any shape, for benchmarks and tests (lmpress synth).
// Weights are N(0, 0.02^2) (norms 1) from a seeded generator, so a shape and a seed always give the
// same file; blocked generation (threads, a stored type) builds large models (7B) in seconds. It does not train anything: these models produce noise, at real speed.
#ifndef LMP_SYNTH_H
#define LMP_SYNTH_H

#include <stdint.h>

#include "format/lmp_format.h"

typedef struct lmp_synth_params {
    int dim, n_layers, n_heads, n_kv_heads, ffn, vocab, ctx;
    int tied;            // classifier shares the embedding
    uint64_t seed;
    const lmp_meta *tokenizer_from;  // copy tokenizer.* keys from this metadata (may be NULL)
    // Blocked generation (either field set): every 64-row block of every matrix draws from its own stream
    // seeded from (seed, tensor, block), filled by n_threads threads (the result does not depend on the
    // count), and matrices are stored as type (rounded to nearest by the reference quantizer, row by row, so
    // no float32 copy of a large model is ever held). Zero for both: one stream in file order, float32, as
    // files made before these fields.
    int n_threads;
    lmp_dtype type;  // LMP_DTYPE_F32 (0) or any storable type
} lmp_synth_params;

lmp_status lmp_synth_build(const lmp_synth_params *p, lmp_builder **out, lmp_error *err);

#endif
