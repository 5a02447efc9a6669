// tokenizer.c - the public tokenizer API (runtime/tokenizer.h): construction from the tokenizer.* metadata
// with full validation, the "llama" SentencePiece-style BPE encoder (llama2.c run.c's encode(), made
// O(n log n): a linked list of symbols, a heap of candidate pairs, a table of mergeable id pairs, and
// independent parts split where no token could span), pieces and decoding. The "gpt2" byte-level BPE
// lives in tokenizer_bpe.c.
//
// "llama" encoding gives exactly the ids of run.c's quadratic loop (optional dummy-prefix space, one
// symbol per UTF-8 code point as run.c groups bytes, <0xXX> byte fallback, then repeatedly merge the
// adjacent pair whose concatenation is a token with the highest score, ties to the leftmost pair, only
// scores above -1e10 counting), with two deliberate differences that only show on text spelling a
// special token literally: (1) a merge never produces an unknown, control or byte token, so typing
// "<s>" or "<0x41>" gives those characters, not BOS or the byte 'A' (run.c would emit the control
// token and decode(encode(s)) would lose the text); (2) byte-fallback symbols never merge (run.c
// looks up e.g. "<0xE6>a", which no real vocabulary holds). Byte tokens are found by their name
// "<0xXX>" rather than at id byte + 3.
//
// Duplicate token texts are accepted; the first id wins when text is matched (llama.cpp's std::map
// keeps the last; SentencePiece and HF tokenizers cannot hold duplicates). Empty texts never match.
// It does not parse special tokens out of text, apply Unicode normalisation, or read chat templates.
#include <string.h>

#include "runtime/tokenizer_internal.h"
#include "runtime/unicode.h"

#define MAX_VOCAB (1 << 24)
#define MAX_TOKEN_BYTES (1u << 20)

// ---- hash map of token texts ----

uint64_t tok_hash2(const char *a, size_t alen, const char *b, size_t blen) {
    uint64_t h = 1469598103934665603ull;  // FNV-1a
    for (size_t i = 0; i < alen; i++) h = (h ^ (unsigned char)a[i]) * 1099511628211ull;
    for (size_t i = 0; i < blen; i++) h = (h ^ (unsigned char)b[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

lmp_status tok_map_init(tok_map *m, size_t n, lmp_error *err) {
    size_t cap = 16;
    while (cap < 2 * n + 2) cap *= 2;
    m->slots = lmp_malloc(cap * sizeof *m->slots);
    if (!m->slots) return lmp_err(err, LMP_E_NOMEM, "out of memory (tokenizer hash table, %zu slots)", cap);
    for (size_t i = 0; i < cap; i++) m->slots[i].id = -1, m->slots[i].hash = 0;
    m->mask = cap - 1;
    return LMP_OK;
}

int32_t tok_map_find2(const lmp_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen) {
    uint64_t h = tok_hash2(a, alen, b, blen);
    uint32_t tag = (uint32_t)(h >> 32);
    for (size_t i = (size_t)h & t->map.mask;; i = (i + 1) & t->map.mask) {
        const tok_slot *s = &t->map.slots[i];
        if (s->id < 0) return -1;
        if (s->hash != tag || t->text_len[s->id] != alen + blen) continue;
        const char *x = tok_text(t, s->id);
        if (memcmp(x, a, alen) == 0 && memcmp(x + alen, b, blen) == 0) return s->id;
    }
}

void tok_map_insert(lmp_tokenizer *t, int32_t id) {
    const char *x = tok_text(t, id);
    size_t len = t->text_len[id];
    if (tok_map_find2(t, x, len, "", 0) >= 0) return;  // duplicate: first id wins
    uint64_t h = tok_hash2(x, len, "", 0);
    size_t i = (size_t)h & t->map.mask;
    while (t->map.slots[i].id >= 0) i = (i + 1) & t->map.mask;
    t->map.slots[i].id = id;
    t->map.slots[i].hash = (uint32_t)(h >> 32);
}

// ---- pair table ----

lmp_status tok_pairs_init(lmp_tokenizer *t, size_t n, lmp_error *err) {
    size_t cap = 16;
    while (cap < 2 * n + 2) cap *= 2;
    t->merges = lmp_malloc(cap * sizeof *t->merges);
    if (!t->merges) return lmp_err(err, LMP_E_NOMEM, "out of memory (tokenizer pair table, %zu slots)", cap);
    for (size_t i = 0; i < cap; i++) t->merges[i].key = UINT64_MAX;
    t->merge_mask = cap - 1;
    return LMP_OK;
}

static size_t pair_slot(uint64_t key, size_t mask) {  // murmur3's finaliser: both ids reach every bit
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdull;
    key ^= key >> 33;
    key *= 0xc4ceb9fe1a85ec53ull;
    key ^= key >> 33;
    return (size_t)key & mask;
}

const tok_merge_slot *tok_pair_find(const lmp_tokenizer *t, int32_t a, int32_t b) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (size_t i = pair_slot(key, t->merge_mask);; i = (i + 1) & t->merge_mask) {
        const tok_merge_slot *s = &t->merges[i];
        if (s->key == key) return s;
        if (s->key == UINT64_MAX) return NULL;
    }
}

void tok_pair_put(lmp_tokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t result) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t i = pair_slot(key, t->merge_mask);
    while (t->merges[i].key != UINT64_MAX && t->merges[i].key != key) i = (i + 1) & t->merge_mask;
    t->merges[i].key = key;
    t->merges[i].rank = rank;
    t->merges[i].result = result;
}

// ---- construction ----

void lmp_tokenizer_free(lmp_tokenizer *t) {
    if (!t) return;
    lmp_free(t->text_buf);
    lmp_free(t->text_off);
    lmp_free(t->text_len);
    lmp_free(t->piece_buf);
    lmp_free(t->piece_off);
    lmp_free(t->piece_len);
    lmp_free(t->scores);
    lmp_free(t->type);
    lmp_free(t->map.slots);
    lmp_free(t->merges);
    lmp_free(t);
}

// Parses "<0xXX>" (either case of hex digit, as run.c's decode); returns the byte or -1.
static int parse_byte_token(const char *s, size_t len) {
    if (len != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

// Length of s with every U+2581 (3 bytes) counted as one space.
static size_t llama_text_len(const char *s, size_t len) {
    size_t n = 0;
    for (size_t i = 0; i < len; i++, n++)
        if (i + 2 < len && (unsigned char)s[i] == 0xE2 && (unsigned char)s[i + 1] == 0x96 &&
            (unsigned char)s[i + 2] == 0x81)
            i += 2;
    return n;
}

static void llama_text_copy(char *dst, const char *s, size_t len) {
    for (size_t i = 0; i < len; i++) {
        if (i + 2 < len && (unsigned char)s[i] == 0xE2 && (unsigned char)s[i + 1] == 0x96 &&
            (unsigned char)s[i + 2] == 0x81) {
            *dst++ = ' ';
            i += 2;
        } else {
            *dst++ = s[i];
        }
    }
}

// Reads an optional integer token id key: absent or -1 give -1; anything else must be a valid id.
static lmp_status read_id(const lmp_meta *meta, const char *key, int32_t n_vocab, int32_t *out, lmp_error *err) {
    *out = -1;
    if (!lmp_meta_find(meta, key)) return LMP_OK;
    int64_t v;
    lmp_status st = lmp_meta_get_i64(meta, key, &v, err);
    if (st) return st;
    if (v == -1) return LMP_OK;
    if (v < 0 || v >= n_vocab)
        return lmp_err(err, LMP_E_FORMAT, "%s = %lld is out of range (%d tokens)", key, (long long)v, (int)n_vocab);
    *out = (int32_t)v;
    return LMP_OK;
}

static lmp_status read_bool(const lmp_meta *meta, const char *key, int dflt, int *out, lmp_error *err) {
    *out = dflt;
    if (!lmp_meta_find(meta, key)) return LMP_OK;
    return lmp_meta_get_bool(meta, key, out, err);
}

// Copies tokenizer.tokens into the text arrays (llama: U+2581 -> ' ').
static lmp_status load_texts(lmp_tokenizer *t, const lmp_meta *meta, lmp_error *err) {
    const void *data;
    uint64_t count;
    lmp_status st = lmp_meta_get_arr(meta, "tokenizer.tokens", LMP_KV_STRING, &data, &count, err);
    if (st) return st;
    if (count == 0) return lmp_err(err, LMP_E_FORMAT, "tokenizer.tokens is empty");
    if (count > MAX_VOCAB)
        return lmp_err(err, LMP_E_FORMAT, "tokenizer.tokens has %llu entries (at most %d)", (unsigned long long)count,
                       MAX_VOCAB);
    const lmp_kv *kv = lmp_meta_find(meta, "tokenizer.tokens");
    char *const *strs = data;
    size_t n = (size_t)count;
    t->n_vocab = (int32_t)n;
    t->text_off = lmp_malloc(n * sizeof *t->text_off);
    t->text_len = lmp_malloc(n * sizeof *t->text_len);
    t->piece_off = lmp_malloc(n * sizeof *t->piece_off);
    t->piece_len = lmp_malloc(n * sizeof *t->piece_len);
    t->type = lmp_malloc(n);
    if (!t->text_off || !t->text_len || !t->piece_off || !t->piece_len || !t->type)
        return lmp_err(err, LMP_E_NOMEM, "out of memory (tokenizer of %zu tokens)", n);
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (!strs[i]) return lmp_err(err, LMP_E_FORMAT, "tokenizer.tokens[%zu] is missing", i);
        uint64_t len = kv && kv->lens ? kv->lens[i] : strlen(strs[i]);
        if (len > MAX_TOKEN_BYTES)
            return lmp_err(err, LMP_E_FORMAT, "tokenizer.tokens[%zu] is %llu bytes long (at most %u)", i,
                           (unsigned long long)len, MAX_TOKEN_BYTES);
        if (t->kind == TOK_KIND_LLAMA) len = llama_text_len(strs[i], (size_t)len);
        t->text_len[i] = (uint32_t)len;
        t->text_off[i] = (size_t)total;
        if (lmp_add_overflow(total, len + 1, &total) || total > SIZE_MAX / 2)
            return lmp_err(err, LMP_E_FORMAT, "tokenizer.tokens: total size overflows");
    }
    t->text_buf = lmp_malloc((size_t)total);
    t->piece_buf = lmp_malloc((size_t)total);
    if (!t->text_buf || !t->piece_buf)
        return lmp_err(err, LMP_E_NOMEM, "out of memory (tokenizer texts, %llu bytes)", (unsigned long long)total);
    for (size_t i = 0; i < n; i++) {
        char *dst = t->text_buf + t->text_off[i];
        size_t src_len = kv && kv->lens ? (size_t)kv->lens[i] : strlen(strs[i]);
        if (t->kind == TOK_KIND_LLAMA) llama_text_copy(dst, strs[i], src_len);
        else memcpy(dst, strs[i], src_len);
        dst[t->text_len[i]] = 0;
    }
    return LMP_OK;
}

// Reads tokenizer.token_type, or infers the types (bos/eos control, "<0xXX>" byte for llama).
static lmp_status load_types(lmp_tokenizer *t, const lmp_meta *meta, lmp_error *err) {
    size_t n = (size_t)t->n_vocab;
    if (lmp_meta_find(meta, "tokenizer.token_type")) {
        const void *data;
        uint64_t count;
        lmp_status st = lmp_meta_get_arr(meta, "tokenizer.token_type", LMP_KV_I32, &data, &count, err);
        if (st) return st;
        if (count != n)
            return lmp_err(err, LMP_E_FORMAT, "tokenizer.token_type has %llu entries, tokenizer.tokens has %zu",
                           (unsigned long long)count, n);
        const unsigned char *p = data;  // packed little-endian i32
        for (size_t i = 0; i < n; i++) {
            int32_t v;
            memcpy(&v, p + 4 * i, 4);
            if (v < 0 || v > TOK_TYPE_BYTE)
                return lmp_err(err, LMP_E_FORMAT, "tokenizer.token_type[%zu] = %d is not a token type (0..6)", i,
                               (int)v);
            t->type[i] = (uint8_t)v;
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            int byte = t->kind == TOK_KIND_LLAMA ? parse_byte_token(tok_text(t, (int32_t)i), t->text_len[i]) : -1;
            t->type[i] = byte >= 0 ? TOK_TYPE_BYTE : TOK_TYPE_NORMAL;
        }
        if (t->bos >= 0) t->type[t->bos] = TOK_TYPE_CONTROL;
        if (t->eos >= 0) t->type[t->eos] = TOK_TYPE_CONTROL;
    }
    t->unk = -1;
    for (size_t i = 0; i < n && t->unk < 0; i++)
        if (t->type[i] == TOK_TYPE_UNKNOWN) t->unk = (int32_t)i;
    return LMP_OK;
}

static int is_control(const lmp_tokenizer *t, int32_t id) {
    return t->type[id] == TOK_TYPE_CONTROL || id == t->bos || id == t->eos;
}

// Why: encoding asks "is the concatenation of these two symbols a token?" for every candidate pair;
// answering from a table keyed by the two ids is several times faster than hashing the concatenated
// text. The table holds, for each token T that text can produce (first of its duplicates, score above
// run.c's -1e10 floor), every split of T's text into two such tokens.
static lmp_status llama_pairs(lmp_tokenizer *t, lmp_error *err) {
    size_t n_pairs = 0;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            lmp_status st = tok_pairs_init(t, n_pairs, err);
            if (st) return st;
        }
        for (int32_t id = 0; id < t->n_vocab; id++) {
            const char *x = tok_text(t, id);
            size_t len = t->text_len[id];
            if (len < 2 || !(t->scores[id] > -1e10f) || tok_map_find2(t, x, len, "", 0) != id) continue;
            if (pass == 0)
                for (size_t k = 0; k + 1 < len; k++) {
                    unsigned bit = (unsigned char)x[k] * 256u + (unsigned char)x[k + 1];
                    t->byte_pairs[bit / 8] |= (uint8_t)(1u << (bit % 8));
                }
            for (size_t k = 1; k < len; k++) {
                int32_t a = tok_map_find2(t, x, k, "", 0);
                if (a < 0) continue;
                int32_t b = tok_map_find2(t, x + k, len - k, "", 0);
                if (b < 0) continue;
                if (pass == 0) n_pairs++;
                else tok_pair_put(t, a, b, 0, id);
            }
        }
    }
    return LMP_OK;
}

// "llama": scores, byte tokens, the map of matchable texts, pieces, the pair table.
static lmp_status llama_init(lmp_tokenizer *t, const lmp_meta *meta, lmp_error *err) {
    size_t n = (size_t)t->n_vocab;
    const void *data;
    uint64_t count;
    lmp_status st = lmp_meta_get_arr(meta, "tokenizer.scores", LMP_KV_F32, &data, &count, err);
    if (st) return st;
    if (count != n)
        return lmp_err(err, LMP_E_FORMAT, "tokenizer.scores has %llu entries, tokenizer.tokens has %zu",
                       (unsigned long long)count, n);
    t->scores = lmp_malloc(n * sizeof(float));
    if (!t->scores) return lmp_err(err, LMP_E_NOMEM, "out of memory (tokenizer scores)");
    memcpy(t->scores, data, n * sizeof(float));
    for (int b = 0; b < 256; b++) t->byte_tok[b] = -1;
    if ((st = tok_map_init(&t->map, n, err))) return st;
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = (int32_t)i;
        const char *x = tok_text(t, id);
        size_t len = t->text_len[i];
        t->piece_off[i] = off;
        if (t->type[i] == TOK_TYPE_BYTE) {
            int b = parse_byte_token(x, len);
            if (b < 0)
                return lmp_err(err, LMP_E_FORMAT, "tokenizer.tokens[%zu] '%.40s' has type byte but is not <0xXX>", i,
                               x);
            if (t->byte_tok[b] < 0) t->byte_tok[b] = id;
            t->piece_buf[off] = (char)b;
            t->piece_len[i] = 1;
        } else if (is_control(t, id)) {
            t->piece_len[i] = 0;
        } else {
            memcpy(t->piece_buf + off, x, len);
            t->piece_len[i] = (uint32_t)len;
            if (t->type[i] != TOK_TYPE_UNKNOWN && len > 0) tok_map_insert(t, id);
        }
        off += t->piece_len[i];
    }
    return llama_pairs(t, err);
}

lmp_status lmp_tokenizer_from_meta(const lmp_meta *meta, lmp_tokenizer **out, lmp_error *err) {
    if (!out) return lmp_err(err, LMP_E_ARG, "lmp_tokenizer_from_meta: out is NULL");
    *out = NULL;
    if (!meta) return lmp_err(err, LMP_E_ARG, "lmp_tokenizer_from_meta: meta is NULL");
    const char *model;
    lmp_status st = lmp_meta_get_str(meta, "tokenizer.model", &model, err);
    if (st) return st;
    int kind;
    if (strcmp(model, "llama") == 0) kind = TOK_KIND_LLAMA;
    else if (strcmp(model, "gpt2") == 0) kind = TOK_KIND_GPT2;
    else
        return lmp_err(err, LMP_E_UNSUPPORTED, "tokenizer.model '%.64s' is not supported (llama, gpt2)", model);

    lmp_tokenizer *t = lmp_calloc(1, sizeof *t);
    if (!t) return lmp_err(err, LMP_E_NOMEM, "out of memory");
    t->kind = kind;
    t->bos = t->eos = t->unk = -1;
    if ((st = load_texts(t, meta, err))) goto fail;
    if ((st = read_id(meta, "tokenizer.bos_id", t->n_vocab, &t->bos, err))) goto fail;
    if ((st = read_id(meta, "tokenizer.eos_id", t->n_vocab, &t->eos, err))) goto fail;
    if ((st = read_bool(meta, "tokenizer.add_bos", kind == TOK_KIND_LLAMA && t->bos >= 0, &t->add_bos, err))) goto fail;
    if (t->add_bos && t->bos < 0) {
        st = lmp_err(err, LMP_E_FORMAT, "tokenizer.add_bos is true but tokenizer.bos_id is absent");
        goto fail;
    }
    if ((st = read_bool(meta, "tokenizer.add_space_prefix", kind == TOK_KIND_LLAMA, &t->add_space_prefix, err)))
        goto fail;
    if ((st = load_types(t, meta, err))) goto fail;
    st = kind == TOK_KIND_LLAMA ? llama_init(t, meta, err) : tok_bpe_init(t, meta, err);
    if (st) goto fail;
    *out = t;
    return LMP_OK;
fail:
    lmp_tokenizer_free(t);
    return st;
}

// ---- accessors ----

int lmp_tokenizer_n_vocab(const lmp_tokenizer *t) { return t ? (int)t->n_vocab : 0; }
int lmp_tokenizer_bos(const lmp_tokenizer *t) { return t ? (int)t->bos : -1; }
int lmp_tokenizer_eos(const lmp_tokenizer *t) { return t ? (int)t->eos : -1; }
int lmp_tokenizer_add_bos(const lmp_tokenizer *t) { return t ? t->add_bos : 0; }
const char *lmp_tokenizer_kind(const lmp_tokenizer *t) {
    return !t ? "" : t->kind == TOK_KIND_LLAMA ? "llama" : "gpt2";
}

// ---- "llama" encoding ----

typedef struct lsym {
    int32_t id;  // -1 once merged into its left neighbour
    int32_t prev, next;  // -1 at the ends of the chunk
} lsym;

// A candidate merge of the adjacent symbols left and right (indices into the chunk) into result. It is
// stale, and skipped when popped, once either symbol has changed: a symbol only changes by growing
// (merging with its right neighbour) or vanishing (into its left one), so the entry is current exactly
// when left is alive, right is still its neighbour and their lengths still add up to the result's.
typedef struct lcand {
    float score;
    int32_t left, right, result;
} lcand;

typedef struct lwork {
    lsym *sym;  // (n) the symbols of the current chunk
    size_t n, sym_cap;
    lcand *heap;  // binary heap, best candidate first
    size_t heap_n, heap_cap;
} lwork;

// Heap order = run.c's choice: the highest score, then the leftmost pair.
static int cand_before(const lcand *a, const lcand *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void heap_down(lcand *h, size_t n, size_t i) {
    lcand x = h[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && cand_before(&h[c + 1], &h[c])) c++;
        if (!cand_before(&h[c], &x)) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

static void heap_up(lcand *h, size_t i) {
    lcand x = h[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_before(&x, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
}

// Adds the merge of symbols l and r if their concatenation is a token scoring above run.c's floor.
static int cand_try(const lmp_tokenizer *t, lwork *w, int32_t l, int32_t r, int sift) {
    const tok_merge_slot *p = tok_pair_find(t, w->sym[l].id, w->sym[r].id);
    if (!p) return 0;
    int32_t id = p->result;
    if (w->heap_n == w->heap_cap) {
        size_t cap = w->heap_cap ? 2 * w->heap_cap : 64;
        lcand *h = lmp_realloc(w->heap, cap * sizeof *h);
        if (!h) return -1;
        w->heap = h;
        w->heap_cap = cap;
    }
    lcand *c = &w->heap[w->heap_n++];
    c->score = t->scores[id];
    c->left = l;
    c->right = r;
    c->result = id;
    if (sift) heap_up(w->heap, w->heap_n - 1);
    return 0;
}

// Why: run.c rescans every pair after each merge (O(n^2)); a heap of candidate pairs with stale-entry
// skipping makes the same choices in O(n log n): a merge only changes the two pairs around it.
static lmp_status llama_merge_chunk(const lmp_tokenizer *t, lwork *w, int32_t *out, size_t *k, lmp_error *err) {
    size_t n = w->n;
    if (n == 0) return LMP_OK;
    for (size_t i = 0; i < n; i++) {
        w->sym[i].prev = (int32_t)i - 1;
        w->sym[i].next = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    w->heap_n = 0;
    for (size_t i = 0; i + 1 < n; i++)
        if (cand_try(t, w, (int32_t)i, (int32_t)i + 1, 0)) return lmp_err(err, LMP_E_NOMEM, "out of memory");
    for (size_t i = w->heap_n / 2; i-- > 0;) heap_down(w->heap, w->heap_n, i);
    while (w->heap_n > 0) {
        lcand c = w->heap[0];
        w->heap[0] = w->heap[--w->heap_n];
        if (w->heap_n) heap_down(w->heap, w->heap_n, 0);
        lsym *L = &w->sym[c.left], *R = &w->sym[c.right];
        if (L->id < 0 || L->next != c.right || t->text_len[L->id] + t->text_len[R->id] != t->text_len[c.result])
            continue;
        L->id = c.result;
        L->next = R->next;
        if (R->next >= 0) w->sym[R->next].prev = c.left;
        R->id = -1;
        if (L->prev >= 0 && cand_try(t, w, L->prev, c.left, 1)) return lmp_err(err, LMP_E_NOMEM, "out of memory");
        if (L->next >= 0 && cand_try(t, w, c.left, L->next, 1)) return lmp_err(err, LMP_E_NOMEM, "out of memory");
    }
    for (int32_t i = 0; i >= 0; i = w->sym[i].next) out[(*k)++] = w->sym[i].id;
    w->n = 0;
    return LMP_OK;
}

// One code point group of the input: a matchable token becomes a symbol of the current chunk; otherwise
// its bytes become byte tokens, which never merge, so the chunk before them is merged first.
//
// Why chunks: no merge can ever join two symbols whose boundary bytes x, y never occur next to each
// other inside a token (the merged token would contain them), so such a boundary splits the text into
// parts that merge independently; the highest-score-then-leftmost order restricted to one part is
// that part's own order. Parts are about words, which keeps the heap small and the result exact.
static lmp_status llama_group(const lmp_tokenizer *t, lwork *w, const char *g, size_t glen, size_t at, int32_t *out,
                              size_t *k, lmp_error *err) {
    int32_t id = tok_map_find2(t, g, glen, "", 0);
    if (id >= 0 && w->n > 0) {
        int32_t prev = w->sym[w->n - 1].id;
        unsigned bit = (unsigned char)tok_text(t, prev)[t->text_len[prev] - 1] * 256u + (unsigned char)g[0];
        if (!(t->byte_pairs[bit / 8] & (1u << (bit % 8)))) {
            lmp_status st = llama_merge_chunk(t, w, out, k, err);
            if (st) return st;
        }
    }
    if (id >= 0) {
        if (w->n == w->sym_cap) {
            size_t cap = w->sym_cap ? 2 * w->sym_cap : 256;
            lsym *s = lmp_realloc(w->sym, cap * sizeof *s);
            if (!s) return lmp_err(err, LMP_E_NOMEM, "out of memory");
            w->sym = s;
            w->sym_cap = cap;
        }
        w->sym[w->n++].id = id;
        return LMP_OK;
    }
    lmp_status st = llama_merge_chunk(t, w, out, k, err);
    if (st) return st;
    for (size_t i = 0; i < glen; i++) {
        unsigned char b = (unsigned char)g[i];
        int32_t bt = t->byte_tok[b] >= 0 ? t->byte_tok[b] : t->unk;
        if (bt < 0)
            return lmp_err(err, LMP_E_UNSUPPORTED,
                           "byte 0x%02X at offset %zu has no token (no <0x%02X> and no unknown token)", b, at + i, b);
        out[(*k)++] = bt;
    }
    return LMP_OK;
}

static lmp_status llama_encode(const lmp_tokenizer *t, const char *text, size_t len, int32_t *out, size_t *k,
                               lmp_error *err) {
    lwork w;
    memset(&w, 0, sizeof w);
    lmp_status st = LMP_OK;
    if (t->add_space_prefix && len > 0) st = llama_group(t, &w, " ", 1, 0, out, k, err);
    // run.c's grouping: a byte and the continuation bytes after it, at most 4 bytes in all.
    for (size_t i = 0; i < len && !st;) {
        size_t j = i + 1;
        while (j < len && j - i < 4 && ((unsigned char)text[j] & 0xC0) == 0x80) j++;
        st = llama_group(t, &w, text + i, j - i, i, out, k, err);
        i = j;
    }
    if (!st) st = llama_merge_chunk(t, &w, out, k, err);
    lmp_free(w.sym);
    lmp_free(w.heap);
    return st;
}

lmp_status lmp_tokenizer_encode(const lmp_tokenizer *t, const char *text, size_t len, int add_bos, int32_t **tokens,
                                size_t *n, lmp_error *err) {
    if (!tokens || !n) return lmp_err(err, LMP_E_ARG, "lmp_tokenizer_encode: tokens or n is NULL");
    *tokens = NULL;
    *n = 0;
    if (!t || (!text && len)) return lmp_err(err, LMP_E_ARG, "lmp_tokenizer_encode: tokenizer or text is NULL");
    if (add_bos && t->bos < 0) return lmp_err(err, LMP_E_ARG, "BOS requested but the tokenizer has no BOS token");
    // At most one token per input byte, plus the dummy prefix and BOS; symbol indices are int32.
    if (len > (size_t)INT32_MAX - 8)
        return lmp_err(err, LMP_E_ARG, "text of %zu bytes is too long (at most 2 GiB)", len);
    int32_t *out = lmp_malloc((len + 2) * sizeof(int32_t));
    if (!out) return lmp_err(err, LMP_E_NOMEM, "out of memory (tokens for %zu bytes of text)", len);
    size_t k = 0;
    if (add_bos) out[k++] = t->bos;
    lmp_status st;
    if (t->kind == TOK_KIND_LLAMA) {
        st = llama_encode(t, text, len, out, &k, err);
    } else {
        size_t m = 0;
        st = tok_bpe_encode(t, text ? text : "", len, out + k, &m, err);
        k += m;
    }
    if (st) {
        lmp_free(out);
        return st;
    }
    *tokens = out;
    *n = k;
    return LMP_OK;
}

// ---- decoding ----

const char *lmp_tokenizer_piece(const lmp_tokenizer *t, int prev, int tok, size_t *len) {
    size_t dummy;
    if (!len) len = &dummy;
    *len = 0;
    if (!t || tok < 0 || tok >= t->n_vocab) return "";
    const char *p = t->piece_buf + t->piece_off[tok];
    size_t l = t->piece_len[tok];
    // The dummy prefix: SentencePiece drops the space that encoding added at the start of the text
    // (after BOS, or at the very start: prev < 0). Byte tokens keep their byte.
    if (t->kind == TOK_KIND_LLAMA && t->add_space_prefix && (prev < 0 || prev == t->bos) && l > 0 && p[0] == ' ' &&
        t->type[tok] != TOK_TYPE_BYTE) {
        p++;
        l--;
    }
    *len = l;
    return p;
}

char *lmp_tokenizer_decode(const lmp_tokenizer *t, const int32_t *tokens, size_t n) {
    if (!t || (!tokens && n)) return NULL;
    size_t total = 1, len;
    for (size_t i = 0; i < n; i++) {
        lmp_tokenizer_piece(t, i ? tokens[i - 1] : -1, tokens[i], &len);
        total += len;
    }
    char *s = lmp_malloc(total);
    if (!s) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *p = lmp_tokenizer_piece(t, i ? tokens[i - 1] : -1, tokens[i], &len);
        memcpy(s + k, p, len);
        k += len;
    }
    s[k] = 0;
    return s;
}
