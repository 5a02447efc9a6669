// distill.h - the distillation pass (lmpress distill) and student initialisation (lmpress init).
//
// lmp_distill trains a student (an f32 model: a pruned model, or one made by lmp_distill_init) to match a
// teacher on a text file: each step draws `batch` random windows of `seq` + 1 tokens from the text
// (tokenized once with the teacher's tokenizer, window starts from a seeded RNG), runs the teacher (an
// inference session, so any dtype it runs, quantized included) for its logits, and takes one AdamW step on
//     alpha * T^2 * KL(p_teacher,T || p_student,T) + (1 - alpha) * CE(labels, p_student)
// (reverse KL with kd = LMP_KD_RKL), with linear warmup then cosine decay of the learning rate and global
// gradient-norm clipping. Checkpoints (distill/ckpt.h) every save_every steps and when *stop becomes
// non-zero; resume continues bit-identically (same options, one thread). The output is an f32 .lmp with
// distill.* provenance (docs/format.md).
//
// It never prints: progress goes through the callbacks; the CLI formats them.
#ifndef LMP_DISTILL_H
#define LMP_DISTILL_H

#include <stdint.h>

#include "distill/train.h"
#include "format/lmp_import.h"

#ifdef __cplusplus
extern "C" {
#endif

// One step's report.
typedef struct lmp_distill_step {
    int64_t step, steps;  // this step (1-based) of the run's total
    double loss, ce, kd;  // mean losses of the step's batch (kd = T^2 KL, 0 when alpha = 0)
    float lr;
    double grad_norm;     // before clipping
    double tok_s;         // training tokens per second of this run so far (teacher included)
    double elapsed, eta;  // seconds
    int64_t tokens_seen;
} lmp_distill_step;

typedef struct lmp_distill_params {
    const char *teacher_path, *student_path, *data_path, *out_path;
    const lmp_import_opts *import;  // for non-.lmp inputs (tokenizer of a llama2.c checkpoint); may be NULL
    int64_t steps;                  // AdamW steps in total (a resumed run continues to this count)
    int batch, seq;                 // sequences per step, tokens per sequence (seq 0: min(student context,
                                    // teacher context, 512), the positions eval-ppl scores)
    float lr, min_lr;
    int64_t warmup;                 // linear warmup steps
    float weight_decay, clip;       // decoupled decay on matrices; global gradient-norm clip (<= 0: off)
    float temp, alpha;              // KD temperature and weight
    lmp_kd_loss kd;                 // forward or reverse KL
    uint64_t seed;                  // data-sampler RNG
    int n_threads;                  // <= 0: all cores
    int64_t save_every;             // checkpoint every N steps (0: only at the end of an interrupted run)
    const char *ckpt_path;          // checkpoint file (NULL: OUT.ckpt)
    const char *resume_path;        // continue from this checkpoint (NULL: start fresh)
    const char *eval_path;          // held-out text for PPL (NULL: none)
    int64_t eval_every;             // evaluate every N steps (and at the end); 0: only at the end
    int eval_chunks;                // PPL chunks (<= 0: all)
    int eval_ctx;                   // PPL chunk length (<= 0: min(context, 512))
    const char *command_line;       // provenance
    volatile int *stop;             // polled after every step: non-zero = checkpoint and return LMP_E_STATE
    void (*on_step)(void *user, const lmp_distill_step *s);
    void (*on_eval)(void *user, int64_t step, double ppl, double ppl_err);
    void (*on_note)(void *user, const char *msg);  // one-line notes: memory, checkpoints written, resume
    void *user;
} lmp_distill_params;

void lmp_distill_params_default(lmp_distill_params *p);

typedef struct lmp_distill_summary {
    int64_t step_first, step_last;  // steps this run took (step_first > step_last: none)
    int64_t tokens_seen;            // over the whole training (resumes included)
    double loss, ce, kd;            // the last step's
    double eval_ppl, eval_ppl_err;  // last evaluation (0 when none)
    double seconds;
    int64_t data_tokens;
    lmp_train_memory mem_estimate, mem_allocated;
    int64_t ckpt_step;              // step of the last checkpoint written or resumed (-1: none)
    char ckpt_path[1024];
} lmp_distill_summary;

// On an interrupt (*stop) it writes a checkpoint and returns LMP_E_STATE with "interrupted at step N; ..."; on
// a NaN or exploding loss it returns LMP_E_STATE naming the step, leaving the last checkpoint as it was.
lmp_status lmp_distill(const lmp_distill_params *p, lmp_distill_summary *s, lmp_error *err);

// ---- initialisation ----

typedef struct lmp_init_params {
    int dim, n_layers, n_heads, n_kv_heads, ffn;  // <= 0: the teacher's
    uint64_t seed;
    const char *teacher_path;                     // provenance
    const char *command_line;
} lmp_init_params;

// A new f32 student shaped like the teacher except for the given sizes: same vocabulary, tokenizer,
// context, RoPE (style, theta, and the rotated fraction of each head), RMSNorm epsilon and tying.
// Weights: N(0, 0.02^2) for the embedding, the classifier and every projection, with attn_output and
// ffn_down further scaled by 1/sqrt(2 * n_layers) (GPT-2's residual scaling); norms 1. Deterministic
// for a seed (xorshift64* + Box-Muller, as format/synth.c).
lmp_status lmp_distill_init(const lmp_model *teacher, const lmp_init_params *p, lmp_builder **out, lmp_error *err);

#ifdef __cplusplus
}
#endif
#endif
