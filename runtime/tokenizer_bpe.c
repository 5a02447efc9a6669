// tokenizer_bpe.c - the "gpt2" byte-level BPE of runtime/tokenizer.h: GPT-2's byte-to-unicode alphabet,
// the pre-tokenizer regexes of tokenizer.pre (matched by hand, no regex library), ranked merges applied
// as Hugging Face `tokenizers` does (lowest rank first, then leftmost), and a per-call cache of
// pre-token -> ids.
//
// Pre-tokenizers (tokenizer.pre):
//   "gpt2", "default", absent: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   "smollm": every \p{N} code point is a piece of its own first (HF Digits(individual_digits)), then
//             the GPT-2 regex within the text between digits (as llama.cpp's SMOLLM and SmolLM2's
//             tokenizer.json);
//   "llama3", "llama-bpe": (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//             ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+  (case folding of the contractions is
//             ASCII only).
// \s is the White_Space property, \p{L} / \p{N} the general categories (runtime/unicode.h). Bytes that
// are not well-formed UTF-8 count as one "other" code point each (neither \s, \p{L} nor \p{N}).
//
// A byte whose alphabet character is not in the vocabulary (SmolLM2 lacks 21 of the 256, e.g. 0x04 and
// 0xC0) becomes the unknown token (type 2) if there is one, and is otherwise dropped, as HF tokenizers
// (without unk_token) and llama.cpp do: such text does not survive decode(encode(s)).
//
// It does not parse special tokens (<|im_start|> ...) out of the text: they are encoded as ordinary text,
// and the caller inserts their ids. tokenizer.add_space_prefix is ignored (as llama.cpp does for BPE).
// User-defined tokens (type 4) decode to their literal text, control tokens to "".
#include <string.h>

#include "runtime/tokenizer_internal.h"
#include "runtime/unicode.h"

// ---- GPT-2's byte-to-unicode alphabet ----

// Why: GPT-2 stores tokens as printable characters: bytes '!'..'~', 0xA1..0xAC and 0xAE..0xFF stand for
// themselves, the other 68 bytes (controls, space, 0x7F..0xA0, 0xAD) become U+0100.. in byte order.
static uint32_t byte_to_cp(int b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) return (uint32_t)b;
    int n = 0;
    for (int c = 0; c < b; c++)
        if (!((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF))) n++;
    return 256u + (uint32_t)n;
}

// ---- merges ----

static lmp_status load_merges(lmp_tokenizer *t, const lmp_meta *meta, lmp_error *err) {
    const void *data;
    uint64_t count;
    lmp_status st = lmp_meta_get_arr(meta, "tokenizer.merges", LMP_KV_STRING, &data, &count, err);
    if (st) return st;
    if (count > (uint64_t)INT32_MAX / 4)
        return lmp_err(err, LMP_E_FORMAT, "tokenizer.merges has %llu entries", (unsigned long long)count);
    const lmp_kv *kv = lmp_meta_find(meta, "tokenizer.merges");
    char *const *strs = data;
    if ((st = tok_pairs_init(t, (size_t)count, err))) return st;
    for (size_t r = 0; r < (size_t)count; r++) {
        const char *s = strs[r];
        if (!s) return lmp_err(err, LMP_E_FORMAT, "tokenizer.merges[%zu] is missing", r);
        size_t len = kv && kv->lens ? (size_t)kv->lens[r] : strlen(s);
        const char *sp = memchr(s, ' ', len);
        if (!sp || sp == s || sp == s + len - 1 || memchr(sp + 1, ' ', len - (size_t)(sp + 1 - s)))
            return lmp_err(err, LMP_E_FORMAT, "tokenizer.merges[%zu] '%.80s' is not two tokens separated by one space",
                           r, s);
        size_t alen = (size_t)(sp - s), blen = len - alen - 1;
        int32_t a = tok_map_find2(t, s, alen, "", 0), b = tok_map_find2(t, sp + 1, blen, "", 0);
        if (a < 0)
            return lmp_err(err, LMP_E_FORMAT, "tokenizer.merges[%zu] '%.80s': '%.*s' is not a token", r, s,
                           (int)(alen > 80 ? 80 : alen), s);
        if (b < 0)
            return lmp_err(err, LMP_E_FORMAT, "tokenizer.merges[%zu] '%.80s': '%.*s' is not a token", r, s,
                           (int)(blen > 80 ? 80 : blen), sp + 1);
        int32_t ab = tok_map_find2(t, s, alen, sp + 1, blen);
        if (ab < 0)
            return lmp_err(err, LMP_E_FORMAT, "tokenizer.merges[%zu] '%.80s': the merged token '%.*s%.*s' is not a token",
                           r, s, (int)(alen > 60 ? 60 : alen), s, (int)(blen > 60 ? 60 : blen), sp + 1);
        tok_pair_put(t, a, b, (int32_t)r, ab);  // a later duplicate replaces the rank, as in HF's map
    }
    return LMP_OK;
}

lmp_status tok_bpe_init(lmp_tokenizer *t, const lmp_meta *meta, lmp_error *err) {
    t->pre = TOK_PRE_GPT2;
    if (lmp_meta_find(meta, "tokenizer.pre")) {
        const char *pre;
        lmp_status st = lmp_meta_get_str(meta, "tokenizer.pre", &pre, err);
        if (st) return st;
        if (strcmp(pre, "gpt2") == 0 || strcmp(pre, "default") == 0) t->pre = TOK_PRE_GPT2;
        else if (strcmp(pre, "smollm") == 0) t->pre = TOK_PRE_SMOLLM;
        else if (strcmp(pre, "llama3") == 0 || strcmp(pre, "llama-bpe") == 0) t->pre = TOK_PRE_LLAMA3;
        else
            return lmp_err(err, LMP_E_UNSUPPORTED,
                           "tokenizer.pre '%.64s' is not supported (gpt2, default, smollm, llama3, llama-bpe)", pre);
    }
    size_t n = (size_t)t->n_vocab;
    lmp_status st = tok_map_init(&t->map, n, err);
    if (st) return st;
    for (size_t i = 0; i < n; i++)
        if (t->text_len[i] > 0) tok_map_insert(t, (int32_t)i);

    int cp_byte[324];  // inverse alphabet: code point -> byte
    for (int c = 0; c < 324; c++) cp_byte[c] = -1;
    for (int b = 0; b < 256; b++) {
        uint32_t cp = byte_to_cp(b);
        cp_byte[cp] = b;
        char u[4];
        size_t ul = lmp_utf8_encode(cp, u);
        t->byte_tok[b] = tok_map_find2(t, u, ul, "", 0);  // -1: see bpe_word
    }
    if ((st = load_merges(t, meta, err))) return st;

    // Pieces: map each character of the alphabet back to its byte.
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const char *x = tok_text(t, (int32_t)i);
        size_t len = t->text_len[i], k = 0;
        char *dst = t->piece_buf + off;
        t->piece_off[i] = off;
        if (t->type[i] == TOK_TYPE_CONTROL || (int32_t)i == t->bos || (int32_t)i == t->eos) {
            k = 0;
        } else if (t->type[i] == TOK_TYPE_USER) {
            memcpy(dst, x, len);
            k = len;
        } else {
            for (size_t j = 0; j < len;) {
                uint32_t cp;
                size_t cl = lmp_utf8_decode(x + j, len - j, &cp);
                if (cp < 324 && cp_byte[cp] >= 0) dst[k++] = (char)cp_byte[cp];
                else memcpy(dst + k, x + j, cl), k += cl;  // not in the alphabet: keep the raw bytes
                j += cl;
            }
        }
        t->piece_len[i] = (uint32_t)k;
        off += k;
    }
    return LMP_OK;
}

// ---- pre-tokenizer ----

// Class of the code point at s[i] (i < end) and its byte length; malformed bytes are "other" (0).
static inline unsigned cls_at(const char *s, size_t i, size_t end, size_t *n, uint32_t *cpo) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x80) {
        *n = 1;
        *cpo = c;
        return lmp_unicode_latin1_class[c];
    }
    uint32_t cp;
    *n = lmp_utf8_decode(s + i, end - i, &cp);
    *cpo = cp;
    return cp == LMP_UNICODE_INVALID ? 0 : lmp_unicode_class(cp);
}

#define C_L LMP_UNICODE_LETTER
#define C_N LMP_UNICODE_NUMBER
#define C_S LMP_UNICODE_SPACE

// End of the run of code points starting at i whose class satisfies: (cls & want) != 0, or, with
// want == 0, "other" (no class bit).
static size_t run_end(const char *s, size_t i, size_t end, unsigned want, size_t max_cps) {
    size_t n, cps = 0;
    uint32_t cp;
    while (i < end && cps < max_cps) {
        unsigned c = cls_at(s, i, end, &n, &cp);
        if (want ? !(c & want) : c != 0) break;
        i += n;
        cps++;
    }
    return i;
}

// \s+(?!\S)|\s+ at i (a whitespace code point): the run of whitespace, less its last code point when
// a non-space follows and the run has more than one.
static size_t match_space_run(const char *s, size_t i, size_t end) {
    size_t j = i, last = i, n;
    uint32_t cp;
    while (j < end && (cls_at(s, j, end, &n, &cp) & C_S)) {
        last = j;
        j += n;
    }
    if (j == end || last == i) return j;
    return last;
}

static int ascii_lower(const char *s, size_t i, size_t end) {
    if (i >= end) return 0;
    char c = s[i];
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

// Length of a contraction at s[i] == '\'' ('s 't 're 've 'm 'll 'd), 0 if none.
static size_t contraction(const char *s, size_t i, size_t end, int fold) {
    int a = fold ? ascii_lower(s, i + 1, end) : (i + 1 < end ? s[i + 1] : 0);
    int b = fold ? ascii_lower(s, i + 2, end) : (i + 2 < end ? s[i + 2] : 0);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

// One match of the GPT-2 regex at i < end; returns its end (> i).
static size_t match_gpt2(const char *s, size_t i, size_t end) {
    size_t n0, n1, k;
    uint32_t cp0, cp1;
    unsigned c0 = cls_at(s, i, end, &n0, &cp0);
    if (cp0 == '\'' && (k = contraction(s, i, end, 0))) return i + k;
    if (cp0 == ' ' && i + 1 < end) {  // " ?" before a letter, number or other run
        unsigned c1 = cls_at(s, i + 1, end, &n1, &cp1);
        if (c1 & C_L) return run_end(s, i + 1, end, C_L, SIZE_MAX);
        if (c1 & C_N) return run_end(s, i + 1, end, C_N, SIZE_MAX);
        if (!c1) return run_end(s, i + 1, end, 0, SIZE_MAX);
    }
    if (c0 & C_L) return run_end(s, i, end, C_L, SIZE_MAX);
    if (c0 & C_N) return run_end(s, i, end, C_N, SIZE_MAX);
    if (!(c0 & C_S)) return run_end(s, i, end, 0, SIZE_MAX);
    return match_space_run(s, i, end);
}

static size_t crlf_run(const char *s, size_t i, size_t end) {
    while (i < end && (s[i] == '\r' || s[i] == '\n')) i++;
    return i;
}

// One match of the Llama-3 regex at i < end.
static size_t match_llama3(const char *s, size_t i, size_t end) {
    size_t n0, n1, k;
    uint32_t cp0, cp1;
    unsigned c0 = cls_at(s, i, end, &n0, &cp0);
    if (cp0 == '\'' && (k = contraction(s, i, end, 1))) return i + k;
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (!(c0 & (C_L | C_N)) && cp0 != '\r' && cp0 != '\n' && i + n0 < end &&
        (cls_at(s, i + n0, end, &n1, &cp1) & C_L))
        return run_end(s, i + n0, end, C_L, SIZE_MAX);
    if (c0 & C_L) return run_end(s, i, end, C_L, SIZE_MAX);
    if (c0 & C_N) return run_end(s, i, end, C_N, 3);  // \p{N}{1,3}
    // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
    if (cp0 == ' ' && i + 1 < end && cls_at(s, i + 1, end, &n1, &cp1) == 0)
        return crlf_run(s, run_end(s, i + 1, end, 0, SIZE_MAX), end);
    if (c0 == 0) return crlf_run(s, run_end(s, i, end, 0, SIZE_MAX), end);
    // \s*[\r\n]+ : the whitespace run up to its last \r or \n
    size_t j = i, n, last_nl = 0;
    int have_nl = 0;
    uint32_t cp;
    while (j < end && (cls_at(s, j, end, &n, &cp) & C_S)) {
        if (cp == '\r' || cp == '\n') last_nl = j, have_nl = 1;
        j += n;
    }
    if (have_nl) return last_nl + 1;
    return match_space_run(s, i, end);
}

// ---- BPE of one pre-token ----

typedef struct bsym {
    int32_t id;  // -1 once merged into its left neighbour
    int32_t prev, next;
} bsym;

typedef struct bmerge {
    int32_t rank, pos, result;
} bmerge;

typedef struct bcache_entry {
    uint64_t hash;
    size_t text_off;  // the pre-token's first occurrence in the text
    size_t out_off;   // its ids in the output
    uint32_t len, n;  // len == 0: empty slot
} bcache_entry;

typedef struct bwork {
    bsym *sym;
    size_t sym_cap;
    bmerge *heap;
    size_t heap_n, heap_cap;
    bcache_entry *cache;
    size_t cache_mask, cache_n;
} bwork;

// Min-heap on (rank, pos): HF tokenizers' order.
static int bm_before(const bmerge *a, const bmerge *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static int bm_push(bwork *w, const lmp_tokenizer *t, int32_t pos, int32_t right) {
    const tok_merge_slot *m = tok_pair_find(t, w->sym[pos].id, w->sym[right].id);
    if (!m) return 0;
    if (w->heap_n == w->heap_cap) {
        size_t cap = w->heap_cap ? 2 * w->heap_cap : 64;
        bmerge *h = lmp_realloc(w->heap, cap * sizeof *h);
        if (!h) return -1;
        w->heap = h;
        w->heap_cap = cap;
    }
    size_t i = w->heap_n++;
    bmerge x = {m->rank, pos, m->result};
    while (i > 0 && bm_before(&x, &w->heap[(i - 1) / 2])) {
        w->heap[i] = w->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    w->heap[i] = x;
    return 0;
}

static bmerge bm_pop(bwork *w) {
    bmerge top = w->heap[0], x = w->heap[--w->heap_n];
    size_t i = 0, n = w->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && bm_before(&w->heap[c + 1], &w->heap[c])) c++;
        if (!bm_before(&w->heap[c], &x)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n) w->heap[i] = x;
    return top;
}

// Why: HF's Word::merge_all: pop the lowest (rank, position); skip it if its left symbol is gone, has no
// right neighbour, or the current pair no longer merges into the same token; merge and queue the two
// new pairs around the result.
static lmp_status bpe_word(const lmp_tokenizer *t, bwork *w, const char *s, size_t len, int32_t *out, size_t *k,
                           lmp_error *err) {
    if (len == 1) {
        int32_t id = t->byte_tok[(unsigned char)s[0]] >= 0 ? t->byte_tok[(unsigned char)s[0]] : t->unk;
        if (id >= 0) out[(*k)++] = id;
        return LMP_OK;
    }
    if (len > (size_t)INT32_MAX) return lmp_err(err, LMP_E_ARG, "pre-token of %zu bytes is too long", len);
    if (len > w->sym_cap) {
        bsym *p = lmp_realloc(w->sym, len * sizeof *p);
        if (!p) return lmp_err(err, LMP_E_NOMEM, "out of memory");
        w->sym = p;
        w->sym_cap = len;
    }
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        int32_t id = t->byte_tok[(unsigned char)s[i]] >= 0 ? t->byte_tok[(unsigned char)s[i]] : t->unk;
        if (id < 0) continue;  // a byte without a token: dropped, as HF tokenizers and llama.cpp do
        w->sym[n].id = id;
        w->sym[n].prev = (int32_t)n - 1;
        w->sym[n].next = (int32_t)n + 1;
        n++;
    }
    if (n == 0) return LMP_OK;
    w->sym[n - 1].next = -1;
    w->heap_n = 0;
    for (size_t i = 0; i + 1 < n; i++)
        if (bm_push(w, t, (int32_t)i, (int32_t)i + 1)) return lmp_err(err, LMP_E_NOMEM, "out of memory");
    while (w->heap_n) {
        bmerge top = bm_pop(w);
        bsym *L = &w->sym[top.pos];
        if (L->id < 0 || L->next < 0) continue;
        int32_t r = L->next;
        const tok_merge_slot *m = tok_pair_find(t, L->id, w->sym[r].id);
        if (!m || m->result != top.result) continue;
        L->id = top.result;
        L->next = w->sym[r].next;
        if (L->next >= 0) w->sym[L->next].prev = top.pos;
        w->sym[r].id = -1;
        if (L->prev >= 0 && bm_push(w, t, L->prev, top.pos)) return lmp_err(err, LMP_E_NOMEM, "out of memory");
        if (L->next >= 0 && bm_push(w, t, top.pos, L->next)) return lmp_err(err, LMP_E_NOMEM, "out of memory");
    }
    for (int32_t i = 0; i >= 0; i = w->sym[i].next) out[(*k)++] = w->sym[i].id;
    return LMP_OK;
}

#define CACHE_MAX_LEN 128  // longer pre-tokens are rare and not cached

// Encodes one pre-token [a, b) of text, through the cache of pre-tokens seen earlier in this call.
static lmp_status encode_piece(const lmp_tokenizer *t, bwork *w, const char *text, size_t a, size_t b, int32_t *out,
                               size_t *k, lmp_error *err) {
    size_t len = b - a;
    if (len == 1) return bpe_word(t, w, text + a, 1, out, k, err);
    if (len > CACHE_MAX_LEN) return bpe_word(t, w, text + a, len, out, k, err);
    uint64_t h = tok_hash2(text + a, len, "", 0);
    size_t i = (size_t)h & w->cache_mask;
    for (; w->cache[i].len; i = (i + 1) & w->cache_mask) {
        const bcache_entry *e = &w->cache[i];
        if (e->hash == h && e->len == len && memcmp(text + e->text_off, text + a, len) == 0) {
            memcpy(out + *k, out + e->out_off, e->n * sizeof *out);
            *k += e->n;
            return LMP_OK;
        }
    }
    size_t start = *k;
    lmp_status st = bpe_word(t, w, text + a, len, out, k, err);
    if (st) return st;
    bcache_entry *e = &w->cache[i];
    e->hash = h;
    e->text_off = a;
    e->out_off = start;
    e->len = (uint32_t)len;
    e->n = (uint32_t)(*k - start);
    if (++w->cache_n * 2 > w->cache_mask) {  // grow at half full
        size_t cap = 2 * (w->cache_mask + 1);
        bcache_entry *c = lmp_calloc(cap, sizeof *c);
        if (!c) return lmp_err(err, LMP_E_NOMEM, "out of memory");
        for (size_t j = 0; j <= w->cache_mask; j++) {
            if (!w->cache[j].len) continue;
            size_t p = (size_t)w->cache[j].hash & (cap - 1);
            while (c[p].len) p = (p + 1) & (cap - 1);
            c[p] = w->cache[j];
        }
        lmp_free(w->cache);
        w->cache = c;
        w->cache_mask = cap - 1;
    }
    return LMP_OK;
}

// The next pre-token [*a, *b) at *pos; 0 at the end of the text. *seg_end (0 at the start) is the end of
// the current "smollm" segment: the text between two number code points.
static int pre_next(const lmp_tokenizer *t, const char *text, size_t len, size_t *pos, size_t *seg_end, size_t *a,
                    size_t *b) {
    size_t i = *pos, end = len;
    if (i >= len) return 0;
    if (t->pre == TOK_PRE_SMOLLM) {
        if (i >= *seg_end) {  // a number code point alone, else the text up to the next one
            size_t c, j = i;
            uint32_t cp;
            if (cls_at(text, i, len, &c, &cp) & C_N) {
                *a = i;
                *b = *pos = i + c;
                return 1;
            }
            while (j < len && !(cls_at(text, j, len, &c, &cp) & C_N)) j += c;
            *seg_end = j;
        }
        end = *seg_end;
    }
    *a = i;
    *b = *pos = t->pre == TOK_PRE_LLAMA3 ? match_llama3(text, i, end) : match_gpt2(text, i, end);
    return 1;
}

size_t tok_bpe_pretokenize(const lmp_tokenizer *t, const char *text, size_t len, size_t *ends, size_t cap) {
    size_t pos = 0, seg_end = 0, a, b, n = 0;
    while (pre_next(t, text, len, &pos, &seg_end, &a, &b)) {
        if (n < cap) ends[n] = b;
        n++;
    }
    return n;
}

lmp_status tok_bpe_encode(const lmp_tokenizer *t, const char *text, size_t len, int32_t *out, size_t *n,
                          lmp_error *err) {
    *n = 0;
    bwork w;
    memset(&w, 0, sizeof w);
    w.cache = lmp_calloc(1024, sizeof *w.cache);
    if (!w.cache) return lmp_err(err, LMP_E_NOMEM, "out of memory");
    w.cache_mask = 1023;
    size_t k = 0, pos = 0, seg_end = 0, a, b;
    lmp_status st = LMP_OK;
    while (!st && pre_next(t, text, len, &pos, &seg_end, &a, &b)) st = encode_piece(t, &w, text, a, b, out, &k, err);
    lmp_free(w.sym);
    lmp_free(w.heap);
    lmp_free(w.cache);
    if (st) return st;
    *n = k;
    return LMP_OK;
}
