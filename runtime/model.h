// model.h - a Llama-architecture model as the runtime sees it: hyper-parameters read from metadata,
// per-layer weight views into the (mapped) file, and the tokenizer.
//
// Layers may differ from each other (pruned head counts and FFN widths): every layer carries its own
// sizes, read from its tensor shapes, and nothing assumes they are alike. Weights stay where the file
// put them (zero copy, any dtype of the traits table); only 1-D norm weights are converted to owned
// float32 copies. It does not run anything (forward.c) nor hold activations (session).
#ifndef LMP_MODEL_H
#define LMP_MODEL_H

#include <stdint.h>

#include "format/lmp_format.h"
#include "format/lmp_import.h"
#include "runtime/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

// A weight matrix (out, in) = (rows, cols), row-major, rows of row_bytes bytes of dtype type.
typedef struct lmp_weight {
    const char *name;
    lmp_dtype type;
    int64_t rows, cols;
    size_t row_bytes;
    const void *data;  // host bytes (into the file mapping, or owned by whoever swapped it in)
    void *dev;         // backend's copy (NULL for the CPU backend)
} lmp_weight;

typedef struct lmp_layer {
    float *attn_norm;      // (dim) owned float32
    float *ffn_norm;       // (dim) owned float32
    lmp_weight wq;         // (n_heads * head_dim, dim)
    lmp_weight wk;         // (n_kv_heads * head_dim, dim)
    lmp_weight wv;         // (n_kv_heads * head_dim, dim)
    lmp_weight wo;         // (dim, n_heads * head_dim)
    lmp_weight w_gate;     // (ffn, dim)   llama2.c w1
    lmp_weight w_up;       // (ffn, dim)   llama2.c w3
    lmp_weight w_down;     // (dim, ffn)   llama2.c w2
    int n_heads, n_kv_heads, ffn;
} lmp_layer;

typedef struct lmp_config {
    int dim;             // embedding width
    int n_layers;
    int head_dim;
    int vocab;
    int ctx;             // llama.context_length
    float rms_eps;
    float rope_theta;
    int rope_dim;        // rotated dimensions per head (even, <= head_dim)
    int rope_neox;       // 1: pairs (i, i + rope_dim/2); 0: interleaved pairs (2i, 2i+1)
    int max_heads, max_kv_heads, max_ffn;  // largest over layers (buffer sizes)
} lmp_config;

typedef struct lmp_model {
    lmp_config cfg;
    lmp_file *file;
    lmp_weight tok_embd;   // (vocab, dim)
    lmp_weight output;     // (vocab, dim); same data as tok_embd when tied
    int tied;              // classifier shares token_embd.weight
    float *output_norm;    // (dim) owned float32
    lmp_layer *layers;     // (n_layers)
    lmp_tokenizer *tok;    // NULL when the file has no tokenizer
    int64_t n_params;      // elements of all tensors in the file
    uint64_t weight_bytes; // bytes of all tensors in the file
} lmp_model;

// Builds the model over an open file; takes ownership of f (closed by lmp_model_free, also on error).
// Checks that metadata and shapes describe a consistent Llama model and names what is not.
lmp_status lmp_model_from_file(lmp_file *f, lmp_model **out, lmp_error *err);
// Opens any supported path (lmp_open_any) and builds the model.
lmp_status lmp_model_load(const char *path, const lmp_import_opts *opts, lmp_model **out,
                          lmp_error *err);
void lmp_model_free(lmp_model *m);

// Bytes of weights read to produce one token in decode: every matrix once, plus one embedding row
// (the roofline numerator of the benchmarks).
uint64_t lmp_model_bytes_per_token(const lmp_model *m);
// Bits per weight over all tensors (file tensor bytes * 8 / elements).
double lmp_model_bpw(const lmp_model *m);

#ifdef __cplusplus
}
#endif
#endif
