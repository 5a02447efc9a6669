// perplexity.h - llama.cpp-style perplexity of one or more models on a text, with KL divergence and
// top-1 agreement of every model against the first (the base), and size/speed columns.
//
// Method (llama.cpp's perplexity tool): tokenize the whole text once, cut it into non-overlapping
// chunks of ctx tokens, put BOS first in each chunk when the tokenizer adds BOS, run each chunk as one
// batch, and score only the second half: positions j in [ctx/2, ctx-1) predicting token j+1.
#ifndef LMP_PERPLEXITY_H
#define LMP_PERPLEXITY_H

#include <stdint.h>

#include "runtime/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lmp_ppl_params {
    const char *data_path;   // text file
    int ctx;                 // <= 0: min(model context, 512)
    int n_chunks;            // <= 0: all
    int n_threads;           // <= 0: all cores
    int decode_tokens;       // single-token forward passes timed for decode tok/s (0: skip)
    const char *backend;     // "cpu" (NULL) or "cuda": on a device the statistics are computed there
    lmp_progress_fn progress;
    void *progress_user;
} lmp_ppl_params;

typedef struct lmp_ppl_result {
    double ppl, ppl_err;     // exp(mean NLL) and its standard error
    double nll;              // mean negative log-likelihood (nats)
    int64_t tokens;          // scored tokens
    int64_t params;          // elements of all tensors
    double bits_per_weight;  // tensor bytes * 8 / params
    uint64_t file_bytes;     // size of the model file (or of the in-memory import)
    double kld, kld_err;     // mean KL(base || model) per token and its standard error (0 for the base)
    double top1;             // fraction of scored positions whose argmax equals the base's
    double prefill_tok_s;    // tokens per second of the chunk evaluations
    double decode_tok_s;     // tokens per second of single-token forward passes
    int ctx, chunks;
} lmp_ppl_result;

// models[0] is the base. results has n_models entries. All models must share the tokenizer.
lmp_status lmp_eval_ppl(lmp_model **models, int n_models, const lmp_ppl_params *params, lmp_ppl_result *results,
                        lmp_error *err);

#ifdef __cplusplus
}
#endif
#endif
