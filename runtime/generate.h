// generate.h - sampling and text generation over a session.
//
// The sampler follows llama2.c's run.c (xorshift random numbers, temperature, nucleus sampling), so a
// fixed seed gives the same samples; temperature 0 is greedy (argmax, lowest id on ties).
#ifndef LMP_GENERATE_H
#define LMP_GENERATE_H

#include <stdint.h>

#include "runtime/session.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lmp_sampler {
    float temperature;  // 0: greedy
    float top_p;        // nucleus threshold in (0, 1]; 1 or more disables it
    uint64_t rng;       // xorshift state (seed; 0 is replaced by 1)
    int vocab;
    int *idx;           // (vocab) scratch for nucleus sampling
    float *prob;        // (vocab) scratch
} lmp_sampler;

lmp_status lmp_sampler_init(lmp_sampler *s, int vocab, float temperature, float top_p, uint64_t seed,
                            lmp_error *err);
void lmp_sampler_free(lmp_sampler *s);
// Picks the next token from logits (vocab); logits may be modified.
int lmp_sampler_sample(lmp_sampler *s, float *logits);
int lmp_argmax(const float *x, int n);

// Called with the bytes of each token as it is produced (prompt first); return non-zero to stop.
typedef int (*lmp_piece_fn)(void *user, const char *bytes, size_t len);

typedef struct lmp_gen_stats {
    int n_prompt;        // prompt tokens (including BOS)
    int n_generated;     // new tokens
    double prefill_s;    // time to process the prompt (one batch)
    double decode_s;     // time of the single-token forward passes
    int n_decode;        // single-token forward passes timed in decode_s
    int stop_reason;     // 0: length, 1: end-of-sequence token, 2: context full, 3: callback
} lmp_gen_stats;

// Encodes prompt (BOS first if the tokenizer asks for it, or if the prompt is empty), then samples up
// to n_new tokens, stopping at EOS/BOS or a full context.
lmp_status lmp_generate(lmp_session *s, const char *prompt, int n_new, lmp_sampler *sampler, lmp_piece_fn on_piece,
                        void *user, lmp_gen_stats *stats, lmp_error *err);

#ifdef __cplusplus
}
#endif
#endif
