// tokenizer.h - text <-> token ids for the two tokenizer families stored in model files:
//   "llama": SentencePiece-style BPE driven by per-token scores, with byte fallback (<0x41>) tokens,
//            as llama2.c's tokenizer.bin and GGUF tokenizer.ggml.model = llama;
//   "gpt2":  byte-level BPE (GPT-2 byte-to-unicode mapping, ranked merges, pre-tokenizer regex).
// Built from the tokenizer.* metadata keys (docs/format.md). It does not parse chat templates.
#ifndef LMP_TOKENIZER_H
#define LMP_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "format/lmp_common.h"
#include "format/lmp_format.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lmp_tokenizer lmp_tokenizer;

// Reads tokenizer.model, tokenizer.tokens, tokenizer.scores / tokenizer.merges, tokenizer.token_type,
// tokenizer.bos_id, tokenizer.eos_id, tokenizer.add_bos, tokenizer.add_space_prefix, tokenizer.pre.
// Validates everything (ids in range, merges naming existing tokens). Duplicate token texts are
// accepted: when text is matched, the first (lowest) id of a duplicated text wins.
lmp_status lmp_tokenizer_from_meta(const lmp_meta *meta, lmp_tokenizer **out, lmp_error *err);
void lmp_tokenizer_free(lmp_tokenizer *t);

int lmp_tokenizer_n_vocab(const lmp_tokenizer *t);
int lmp_tokenizer_bos(const lmp_tokenizer *t);  // -1 if none
int lmp_tokenizer_eos(const lmp_tokenizer *t);  // -1 if none
int lmp_tokenizer_add_bos(const lmp_tokenizer *t);  // whether prompts start with BOS by default
const char *lmp_tokenizer_kind(const lmp_tokenizer *t);  // "llama" or "gpt2"

// Encodes len bytes of text (need not be NUL-terminated, may be any bytes). If add_bos, tokens[0] is
// BOS. *tokens is lmp_malloc'd (caller frees with lmp_free); *n receives the count.
// "llama": like llama2.c's encode (dummy space prefix if tokenizer.add_space_prefix, greedy merge of
// the best-scoring pair, bytes without a token become <0xXX> tokens).
// "gpt2": pre-tokenize with the regex of tokenizer.pre, map bytes through GPT-2's byte-to-unicode
// table, apply merges by rank.
lmp_status lmp_tokenizer_encode(const lmp_tokenizer *t, const char *text, size_t len, int add_bos,
                                int32_t **tokens, size_t *n, lmp_error *err);

// The bytes that token tok contributes to the text when it follows token prev (for "llama", the space
// of the dummy prefix is dropped right after BOS, and <0xXX> tokens give their raw byte). Control
// tokens (BOS/EOS) give "". Returns a pointer into the tokenizer; *len receives the byte count.
const char *lmp_tokenizer_piece(const lmp_tokenizer *t, int prev, int tok, size_t *len);

// Decodes a whole sequence into a new NUL-terminated lmp_malloc'd string (concatenated pieces).
char *lmp_tokenizer_decode(const lmp_tokenizer *t, const int32_t *tokens, size_t n);

#ifdef __cplusplus
}
#endif
#endif
