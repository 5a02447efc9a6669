// ckpt.h - training checkpoints: an ordinary .lmp file (docs/format.md, "Training checkpoints") holding the
// student's weights under their model names, the AdamW moments as adam.m.NAME / adam.v.NAME, the
// distill.* hyper-parameters of the run and the distill.ckpt.* state (step, RNG, identities of the student,
// teacher and data). Written atomically by the .lmp writer (temporary file, fsync, rename) and CRC-checked
// by its reader, so a truncated or corrupted checkpoint is refused with the reader's precise message.
// A checkpoint also loads as a model (the extra tensors are ignored by the runtime).
//
// It does not decide when to write one or whether a checkpoint fits a run (distill/distill.c does).
#ifndef LMP_CKPT_H
#define LMP_CKPT_H

#include <stdint.h>

#include "distill/train.h"
#include "format/lmp_format.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LMP_CKPT_VERSION 1

typedef struct lmp_ckpt_state {
    int64_t step;               // AdamW steps done
    uint64_t rng;               // data-sampler RNG state after that step
    int64_t tokens_seen;        // training tokens consumed
    double first_loss;          // loss of the run's first step (explosion check)
    uint32_t student_checksum;  // lmp_file_checksum of the student the run started from
    uint32_t teacher_checksum;
    uint32_t data_crc;          // CRC32 of the data file's bytes
} lmp_ckpt_state;

// Writes the trainer's weights and moments with meta (the student's metadata plus the run's distill.*
// keys) and the state. Atomic: path is replaced only when the whole file is on disk.
lmp_status lmp_ckpt_write(const char *path, lmp_trainer *t, const lmp_meta *meta, const lmp_ckpt_state *s,
                          lmp_error *err);

// Opens and fully validates a checkpoint (every CRC), reads its state, and checks that it holds every tensor
// of the trainer with the same shape and its two moments. *out stays open for the caller's checks of its
// metadata; lmp_ckpt_load then copies it into the trainer.
lmp_status lmp_ckpt_open(const char *path, const lmp_trainer *t, lmp_file **out, lmp_ckpt_state *s,
                         lmp_error *err);
void lmp_ckpt_load(const lmp_file *f, lmp_trainer *t, const lmp_ckpt_state *s);

#ifdef __cplusplus
}
#endif
#endif
