// kernels_internal.h - what quant/kernels.c shares with the per-ISA kernel files (kernels_avx2.c,
// kernels_avx512.c). Not a public header: nothing outside quant/kernels*.c includes it.
//
// Each per-ISA file defines one init function that overwrites the entries it speeds up in a table that
// kernels.c has already filled with the scalar entries. kernels.c calls it once (pthread_once), and only
// after checking that the CPU runs that instruction set.
#ifndef LMP_KERNELS_INTERNAL_H
#define LMP_KERNELS_INTERNAL_H

#include "kernels.h"

// fp16 bits -> float for all 65536 halves (exact; filled before any per-ISA init runs). Why a table:
// the integer kernels need one fp16 scale per block and row, and a table lookup broadcast straight
// from memory costs two loads and no vector ALU work, where F16C needs a move, a convert and a
// broadcast per scale.
extern float lmp_kernels_fp16_lut[65536];

#if defined(__x86_64__)
void lmp_kernels_init_avx2(lmp_kernels *k);
void lmp_kernels_init_avx512(lmp_kernels *k);
#endif

#endif
