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

// A weight (out, in) = (rows, cols), row-major, rows of row_bytes bytes of dtype type. Matrices point into
// the file mapping; 1-D norm weights are views of owned float32 copies (rows 1, cols dim) so that a device
// backend uploads them like any weight.
typedef struct lmp_weight {
    const char *name;
    lmp_dtype type;
    int64_t rows, cols;
    size_t row_bytes;
    const void *data;  // host bytes (into the file mapping, owned by the model, or by whoever set it)
    void *dev;         // the backend's copy (NULL for the CPU backend); owned by the backend that uploaded it
    uint64_t gen;      // generation of data: bumped by lmp_model_weight_set/touch, so sessions re-upload it
} lmp_weight;

typedef struct lmp_layer {
    lmp_weight attn_norm;  // (1, dim) owned float32
    lmp_weight ffn_norm;   // (1, dim) owned float32
    lmp_weight wq;         // (n_heads * head_dim, dim)
    lmp_weight wk;         // (n_kv_heads * head_dim, dim)
    lmp_weight wv;         // (n_kv_heads * head_dim, dim)
    lmp_weight wo;         // (dim, n_heads * head_dim)
    lmp_weight w_gate;     // (ffn, dim)   llama2.c w1
    lmp_weight w_up;       // (ffn, dim)   llama2.c w3
    lmp_weight w_down;     // (dim, ffn)   llama2.c w2
    int n_heads, n_kv_heads, ffn;
} lmp_layer;

// Where activations enter the linear layers of a transformer block (calibration hooks, statistics).
typedef enum lmp_hook_point {
    LMP_HOOK_ATTN_IN = 0,   // (n, dim) after attn_norm: input of attn_q, attn_k, attn_v
    LMP_HOOK_ATTN_OUT_IN,   // (n, n_heads * hd): input of attn_output
    LMP_HOOK_FFN_IN,        // (n, dim) after ffn_norm: input of ffn_gate, ffn_up
    LMP_HOOK_DOWN_IN,       // (n, ffn): input of ffn_down
    LMP_HOOK_COUNT,
} lmp_hook_point;

// The seven matrices of a layer, in file order: the one table every pass and the forward pass use.
typedef enum lmp_mat {
    LMP_MAT_Q = 0,
    LMP_MAT_K,
    LMP_MAT_V,
    LMP_MAT_O,
    LMP_MAT_GATE,
    LMP_MAT_UP,
    LMP_MAT_DOWN,
    LMP_MAT_COUNT,
} lmp_mat;

typedef struct lmp_mat_info {
    const char *name;       // tensor name part: "attn_q" -> "blk.<l>.attn_q.weight"
    lmp_hook_point input;   // the hook point that sees this matrix's input
    size_t offset;          // offsetof(lmp_layer, the field)
} lmp_mat_info;

extern const lmp_mat_info lmp_mats[LMP_MAT_COUNT];

// The weight of matrix k (lmp_mat) of layer L.
static inline lmp_weight *lmp_layer_mat(lmp_layer *L, int k) {
    return (lmp_weight *)((char *)L + lmp_mats[k].offset);
}
static inline const lmp_weight *lmp_layer_mat_c(const lmp_layer *L, int k) {
    return (const lmp_weight *)((const char *)L + lmp_mats[k].offset);
}

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
    lmp_weight output_norm; // (1, dim) owned float32
    lmp_layer *layers;     // (n_layers)
    lmp_tokenizer *tok;    // NULL when the file has no tokenizer
    int64_t n_params;      // elements of all tensors in the file
    uint64_t weight_bytes; // bytes of all tensors in the file
    uint64_t gen;          // latest weight generation (max of every weight's gen)
} lmp_model;

// Builds the model over an open file; takes ownership of f (closed by lmp_model_free, also on error).
// Checks that metadata and shapes describe a consistent Llama model and names what is not.
lmp_status lmp_model_from_file(lmp_file *f, lmp_model **out, lmp_error *err);
// Opens any supported path (lmp_open_any) and builds the model.
lmp_status lmp_model_load(const char *path, const lmp_import_opts *opts, lmp_model **out,
                          lmp_error *err);
void lmp_model_free(lmp_model *m);

// The weight named name ("token_embd.weight", "output.weight", "output_norm.weight", "blk.3.attn_q.weight",
// "blk.3.attn_norm.weight", ...), or NULL. For a tied model "output.weight" is the classifier view.
lmp_weight *lmp_model_weight_find(lmp_model *m, const char *name);
// Replaces w's data (a weight of m, e.g. from lmp_model_weight_find or lmp_layer_mat) with data of dtype type
// and the same shape; the caller keeps ownership of data and keeps it alive while m uses it. Bumps the
// weight's generation, so every session re-uploads it to its backend before its next evaluation. Refuses a
// type whose rows do not fit (block size) or that the runtime cannot multiply.
lmp_status lmp_model_weight_set(lmp_model *m, lmp_weight *w, lmp_dtype type, const void *data, lmp_error *err);
// Marks w as modified in place (e.g. a norm weight rescaled through its owned data): sessions re-upload it.
void lmp_model_weight_touch(lmp_model *m, lmp_weight *w);
// A norm weight's owned float32 values (writable; call lmp_model_weight_touch after changing them).
static inline float *lmp_norm_values(lmp_weight *w) { return (float *)(uintptr_t)w->data; }
// Every weight of the model, for backends and passes that visit them all: index 0 token_embd, 1 output
// (a second view of the same data when tied), 2 output_norm, then per layer attn_norm, ffn_norm and the
// seven matrices in lmp_mats order. NULL past the end.
size_t lmp_model_n_weights(const lmp_model *m);
lmp_weight *lmp_model_weight_at(lmp_model *m, size_t i);
// Row length at hook point h of layer l (dim, n_heads * head_dim or ffn).
int lmp_model_hook_width(const lmp_model *m, int l, lmp_hook_point h);

// Bytes of weights read to produce one token in decode: every matrix once, plus one embedding row
// (the roofline numerator of the benchmarks).
uint64_t lmp_model_bytes_per_token(const lmp_model *m);
// Bits per weight over all tensors (file tensor bytes * 8 / elements).
double lmp_model_bpw(const lmp_model *m);

#ifdef __cplusplus
}
#endif
#endif
