// tokenizer_internal.h - the lmp_tokenizer struct and the helpers shared by runtime/tokenizer.c (public
// API, construction from metadata, the "llama" SentencePiece-style BPE) and runtime/tokenizer_bpe.c (the
// "gpt2" byte-level BPE). Not a public header: nothing outside those two files includes it.
#ifndef LMP_TOKENIZER_INTERNAL_H
#define LMP_TOKENIZER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/tokenizer.h"

enum { TOK_KIND_LLAMA = 0, TOK_KIND_GPT2 = 1 };

// Pre-tokenizer regex families of "gpt2" (tokenizer.pre).
enum { TOK_PRE_GPT2 = 0, TOK_PRE_SMOLLM = 1, TOK_PRE_LLAMA3 = 2 };

// tokenizer.token_type values (GGUF's).
enum {
    TOK_TYPE_UNDEFINED = 0,
    TOK_TYPE_NORMAL = 1,
    TOK_TYPE_UNKNOWN = 2,
    TOK_TYPE_CONTROL = 3,
    TOK_TYPE_USER = 4,
    TOK_TYPE_UNUSED = 5,
    TOK_TYPE_BYTE = 6,
};

// Open-addressing hash set of token ids keyed by the token's text (the texts live in the tokenizer).
typedef struct tok_slot {
    uint32_t hash;  // upper bits of the 64-bit hash, to skip most string compares
    int32_t id;     // -1: empty
} tok_slot;

typedef struct tok_map {
    tok_slot *slots;  // (mask + 1)
    size_t mask;
} tok_map;

// Pair table: (left id, right id) -> (rank, merged id). "gpt2": the ranked merges; "llama": every pair
// of matchable tokens whose concatenation is a matchable token scoring above -1e10 (rank unused).
typedef struct tok_merge_slot {
    uint64_t key;  // (uint64_t)left << 32 | right; UINT64_MAX: empty
    int32_t rank;
    int32_t result;
} tok_merge_slot;

struct lmp_tokenizer {
    int kind;  // TOK_KIND_*
    int32_t n_vocab;

    // Token texts as matched against the input: "llama" with U+2581 (SentencePiece's space mark) turned
    // into ' ' (llama2.c's export does the same); "gpt2" in GPT-2's byte-to-unicode alphabet.
    char *text_buf;      // all texts, each NUL-terminated
    size_t *text_off;    // (n_vocab) offset of each text in text_buf
    uint32_t *text_len;  // (n_vocab)
    // What each token contributes to decoded text: raw bytes for byte tokens / the byte-level alphabet,
    // "" for control tokens.
    char *piece_buf;
    size_t *piece_off;    // (n_vocab)
    uint32_t *piece_len;  // (n_vocab)

    float *scores;  // (n_vocab) "llama" merge scores; NULL for "gpt2"
    uint8_t *type;  // (n_vocab) TOK_TYPE_*

    int32_t bos, eos, unk;  // -1 if none
    int add_bos, add_space_prefix;

    // "llama": texts of the tokens that text may produce (not unknown, control or byte tokens);
    // "gpt2": all tokens. Duplicate texts keep the first id.
    tok_map map;
    // "llama": the <0xXX> token of each byte (-1: none); "gpt2": the token of the byte's character in
    // the byte-to-unicode alphabet.
    int32_t byte_tok[256];

    // "llama": bit x * 256 + y is set when bytes x, y occur next to each other in some matchable token.
    uint8_t byte_pairs[256 * 256 / 8];

    tok_merge_slot *merges;  // (merge_mask + 1) the pair table
    size_t merge_mask;

    int pre;  // "gpt2" only: TOK_PRE_*
};

static inline const char *tok_text(const lmp_tokenizer *t, int32_t id) { return t->text_buf + t->text_off[id]; }

uint64_t tok_hash2(const char *a, size_t alen, const char *b, size_t blen);
// Id of the token whose text is a followed by b (either may be empty), -1 if none.
int32_t tok_map_find2(const lmp_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen);
// Inserts id under its text unless that text is present (first id wins). The map must have room
// (built with tok_map_init for at least n ids).
void tok_map_insert(lmp_tokenizer *t, int32_t id);
lmp_status tok_map_init(tok_map *m, size_t n, lmp_error *err);

// The pair table: room for n pairs; find returns NULL if absent; put replaces an existing pair.
lmp_status tok_pairs_init(lmp_tokenizer *t, size_t n, lmp_error *err);
const tok_merge_slot *tok_pair_find(const lmp_tokenizer *t, int32_t a, int32_t b);
void tok_pair_put(lmp_tokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t result);

// tokenizer_bpe.c: reads tokenizer.merges and tokenizer.pre, fills byte_tok, pieces and the merge table.
// The token texts, types, map, bos/eos are already set.
lmp_status tok_bpe_init(lmp_tokenizer *t, const lmp_meta *meta, lmp_error *err);
// Appends the ids of len bytes of text to out (room for len ids), *n receives the count appended.
lmp_status tok_bpe_encode(const lmp_tokenizer *t, const char *text, size_t len, int32_t *out, size_t *n,
                          lmp_error *err);
// The pre-tokenizer alone (for tests): stores the end offset of each pre-token in ends (at most cap) and
// returns their number.
size_t tok_bpe_pretokenize(const lmp_tokenizer *t, const char *text, size_t len, size_t *ends, size_t cap);

#endif
