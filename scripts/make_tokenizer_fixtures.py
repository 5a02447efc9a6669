#!/usr/bin/env python3
"""make_tokenizer_fixtures.py - writes the expected token ids that tests/test_tokenizer.c checks, from
implementations independent of runtime/tokenizer*.c:

  tests/fixtures/tokenizer/llama_tok512.txt, llama_llama2.txt
      ids of llama2.c run.c's encode() (a plain Python port of its quadratic loop, BOS first) for the
      string set below, on ../shared/models/stories260K/tok512.bin and
      ../shared/models/llama2-tokenizer/tokenizer.bin;
  tests/fixtures/tokenizer/bpe_shakespeare.txt
      a ~400-token byte-level BPE trained with HF `tokenizers` on ../shared/data/tinyshakespeare/input.txt
      (vocab + merges) and the ids HF `tokenizers` gives for the string set with the pre-tokenizers
      "gpt2", "smollm" and "llama3";
  tests/fixtures/tokenizer/smollm2_ids.txt
      ids of HF `tokenizers` built from the SmolLM2-135M GGUF's tokens + merges, configured as SmolLM2's
      tokenizer.json (Digits(individual_digits) then ByteLevel), for the string set and for the first
      2000 code points of ../shared/data/wikitext-2-raw/wiki.test.raw (the text itself is not copied).

It also reports (stdout, not a fixture) where SentencePiece (tokenizer.model) and run.c's algorithm
differ on the Llama-2 vocabulary.

  pip install tokenizers sentencepiece gguf numpy
  python3 scripts/make_tokenizer_fixtures.py [--shared ../shared] [--gguf models/SmolLM2-135M-Instruct.Q4_1.gguf]

Fixture format (text, one record per line): "# comment", "T <hex>" token text (id = order of T lines),
"Y <type>" token types, "M <hex>" merge, "P <pre>" pre-tokenizer of the following cases,
"S <hex>" a string (hex of its UTF-8 / raw bytes; "S -" is the empty string), "I <ids...>" its ids,
"B <offsets...>" the byte offsets where its pre-tokens end (HF's pre_tokenize_str),
"W <nbytes> <crc32>" the wikitext excerpt (read from ../shared by the test).
"""
import argparse
import json
import os
import struct
import sys
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizer")

STORY = ("Once upon a time, there was a little girl named Lily. She loved to play outside in the park. "
         "One day, she saw a big, red ball.\n\"Can I play?\" she asked. Her mom said, \"Yes, but be careful!\"")

LLAMA_STRINGS = [
    STORY,
    "Once upon a time",
    "",
    " ",
    "  leading spaces",
    "trailing spaces   ",
    "multiple   spaces\tand\ttabs",
    "new\nlines\n\nand\r\nCRLF\n",
    "\n",
    "café naïve résumé",
    "日本語のテキスト",
    "emoji 😀🎉 and 👩‍💻",
    "Ω≈ç√∫ ½ ² ∞",
    "Привет, мир! Γειά σου",
    "\x01\x02 control \x7f bytes",
    "tab\tbackspace\x08bell\x07",
    "don't you'll we've I'm",
    "1234567890 3.14159 1,000,000",
    "a" * 40,
    "<unk> <s> </s> <0x41>",  # literal spellings of special tokens (see the report)
]

LLAMA_BYTES = [
    b"invalid \xff\xfe utf8",
    b"lone \x80 continuation",
    b"truncated \xe6\x97",
    b"\xe6\x97\xa5\x80\x80\x80\x80 too many continuations",
]

BPE_STRINGS = [
    "Hello world",
    "12345",
    "x = 3.14159; y=42",
    "don't I'll we've they're she's I'm he'd DON'T",
    "'s 'S ''quoted''",
    "a   b",
    "trailing spaces   ",
    "   leading spaces",
    "\n\n",
    "line one\nline two\r\nline three\n\n\nend",
    "tabs\there\t\tand\t \tmixed",
    "punctuation runs!!! ... ?!?! --- (((x))) \"quotes\"",
    "ROMEO:\nBut, soft! what light through yonder window breaks?",
    "café naïve résumé",
    "日本語のテキスト",
    "emoji 😀🎉 👩‍💻",
    "Привет, мир!",
    "digits ١٢٣ x² Ⅻ ½",
    "no\u00a0break\u3000ideographic\u2028sep",
    "\x0b\x0c vertical \x1c\x1d\x1e\x1f info seps \x85 nel",
    "zero\u200bwidth",
    "<|endoftext|> is text here",
    "$100.00 and 50% off!",
    "",
    " ",
    "x",
    STORY,
]

# Random strings over an alphabet that exercises every branch of the pre-tokenizer regexes.
RANDOM_ALPHABET = (list("abcXYZ019 '") + [" ", "  ", "\t", "\n", "\r\n", "\r", "'s", "'LL", "'ve", "!", "?!", ".", ",",
                   "-", "$", "é", "日本", "١", "²", "Ⅻ", "😀", "\u00a0", "\u3000", "\u2028", "\x0b", "\x1c", "\x85", "_"])


def random_strings(n, seed=1234):
    import random
    rng = random.Random(seed)
    return ["".join(rng.choice(RANDOM_ALPHABET) for _ in range(rng.randint(1, 24))) for _ in range(n)]


GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def hexs(b):
    return b.hex() if b else "-"


# ---- llama2.c run.c ----

def load_llama2c_tokenizer(path):
    d = open(path, "rb").read()
    off = 4
    toks, scores = [], []
    while off < len(d):
        s, n = struct.unpack_from("<fi", d, off)
        off += 8
        toks.append(d[off:off + n])
        off += n
        scores.append(s)
    return toks, scores


def runc_encode(toks, scores, text, bos=True, strict=False):
    """run.c's encode(text, bos, eos=0). With strict=True, the two rules of runtime/tokenizer.c: merges never
    produce unknown/control/byte tokens, and byte-fallback symbols never merge."""
    lookup = {}
    for i, t in enumerate(toks):
        lookup.setdefault(t, i)
    special = set([0, 1, 2] + [i for i, t in enumerate(toks) if len(t) == 6 and t.startswith(b"<0x") and t.endswith(b">")])
    out = [1] if bos else []
    syms = []  # (id, mergeable)
    if text:
        syms.append((lookup[b" "], True))
    i = 0
    while i < len(text):
        j = i + 1
        while j < len(text) and j - i < 4 and (text[j] & 0xC0) == 0x80:
            j += 1
        g = text[i:j]
        tid = lookup.get(g, -1)
        if strict and tid in special:
            tid = -1
        if tid != -1:
            syms.append((tid, True))
        else:
            syms.extend((b + 3, False) for b in g)
        i = j
    while True:
        best, best_id, best_i = -1e10, -1, -1
        for k in range(len(syms) - 1):
            if strict and not (syms[k][1] and syms[k + 1][1]):
                continue
            tid = lookup.get(toks[syms[k][0]] + toks[syms[k + 1][0]], -1)
            if strict and tid in special:
                tid = -1
            if tid != -1 and scores[tid] > best:
                best, best_id, best_i = scores[tid], tid, k
        if best_i < 0:
            break
        syms[best_i:best_i + 2] = [(best_id, True)]
    return out + [s[0] for s in syms]


def write_llama(shared, name, rel):
    path = os.path.join(shared, rel)
    toks, scores = load_llama2c_tokenizer(path)
    strings = [s.encode("utf-8") for s in LLAMA_STRINGS] + LLAMA_BYTES
    lines = [f"# {name}: expected ids of llama2.c run.c encode(text, bos=1, eos=0) on {rel}",
             "# written by scripts/make_tokenizer_fixtures.py"]
    for s in strings:
        ids = runc_encode(toks, scores, s)
        strict = runc_encode(toks, scores, s, strict=True)
        if ids != strict:
            print(f"  {name}: run.c and runtime/tokenizer.c differ on {s!r}: run.c {ids} ours {strict}")
            print(f"    run.c decodes to {b''.join(toks[i] for i in ids[1:])!r}")
            ids = strict
            lines.append("# run.c gives other ids here (literal special-token spelling): these are ours")
        lines.append(f"S {hexs(s)}")
        lines.append("I " + " ".join(map(str, ids)))
    with open(os.path.join(OUT, f"llama_{name}.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return toks, scores


def compare_sentencepiece(shared, toks, scores):
    try:
        import sentencepiece as spm
    except ImportError:
        print("sentencepiece not installed: comparison skipped")
        return
    model = os.path.join(shared, "models/llama2-tokenizer/tokenizer.model")
    sp = spm.SentencePieceProcessor(model_file=model)
    print("SentencePiece (tokenizer.model) vs run.c's algorithm on the Llama-2 vocabulary:")
    n_diff = 0
    for s in LLAMA_STRINGS:
        ours = runc_encode(toks, scores, s.encode("utf-8"), strict=True)[1:]
        ref = sp.encode(s)
        if ours != ref:
            n_diff += 1
            print(f"  differ on {s[:50]!r}:\n    run.c {ours[:24]}\n    spm   {ref[:24]}")
            print(f"    run.c pieces {[toks[i].decode('utf-8', 'replace') for i in ours[:16]]}")
            print(f"    spm   pieces {[sp.id_to_piece(i) for i in ref[:16]]}")
    print(f"  {n_diff} of {len(LLAMA_STRINGS)} strings differ")


# ---- byte-level BPE (HF tokenizers) ----

def byte_level_alphabet():
    """GPT-2's bytes_to_unicode: byte -> character."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def hf_pre(pre):
    from tokenizers import Regex, pre_tokenizers as pt
    if pre == "gpt2":
        return pt.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre == "smollm":
        return pt.Sequence([pt.Digits(individual_digits=True), pt.ByteLevel(add_prefix_space=False, use_regex=True)])
    if pre == "llama3":
        return pt.Sequence([pt.Split(Regex(LLAMA3_REGEX), behavior="isolated", invert=False),
                            pt.ByteLevel(add_prefix_space=False, use_regex=False)])
    raise ValueError(pre)


def hf_bpe(vocab, merges, pre):
    from tokenizers import Tokenizer, models
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = hf_pre(pre)
    return tok


def model_merges(tok):
    m = json.loads(tok.to_str())["model"]["merges"]
    return [tuple(x) if isinstance(x, list) else tuple(x.split(" ")) for x in m]


def write_bpe_shakespeare(shared):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    text = open(os.path.join(shared, "data/tinyshakespeare/input.txt"), encoding="utf-8").read()
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>"], show_progress=False)
    tok.train_from_iterator([text], trainer)
    vocab = tok.get_vocab()
    merges = model_merges(tok)
    by_id = sorted(vocab.items(), key=lambda kv: kv[1])
    assert [i for _, i in by_id] == list(range(len(by_id)))
    lines = ["# byte-level BPE of 400 tokens trained by HF tokenizers on tinyshakespeare/input.txt; expected ids",
             "# from HF tokenizers (BPE(vocab, merges) + the pre-tokenizer of each P line); written by",
             "# scripts/make_tokenizer_fixtures.py"]
    lines += [f"T {hexs(t.encode('utf-8'))}" for t, _ in by_id]
    lines.append("Y " + " ".join("3" if t == "<|endoftext|>" else "1" for t, _ in by_id))
    lines += [f"M {hexs((a + ' ' + b).encode('utf-8'))}" for a, b in merges]
    unmap = {c: b for b, c in byte_level_alphabet().items()}
    for pre in ("gpt2", "smollm", "llama3"):
        ref = hf_bpe(vocab, merges, pre)
        lines.append(f"P {pre}")
        for s in BPE_STRINGS + random_strings(120):
            lines.append(f"S {hexs(s.encode('utf-8'))}")
            lines.append("I " + " ".join(map(str, ref.encode(s).ids)))
            ends, at = [], 0  # byte offsets where HF's pre-tokens end
            for piece, _ in hf_pre(pre).pre_tokenize_str(s):
                at += len(piece)  # one byte-level character per byte
                ends.append(at)
            assert all(c in unmap for p, _ in hf_pre(pre).pre_tokenize_str(s) for c in p)
            lines.append("B " + " ".join(map(str, ends)))
    with open(os.path.join(OUT, "bpe_shakespeare.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"bpe_shakespeare: {len(vocab)} tokens, {len(merges)} merges")


def write_smollm2(shared, gguf_path):
    import gguf
    r = gguf.GGUFReader(gguf_path)

    def strs(key):
        f = r.fields[key]
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data]

    tokens = strs("tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ")) for m in strs("tokenizer.ggml.merges")]
    pre = bytes(r.fields["tokenizer.ggml.pre"].parts[-1]).decode()
    assert pre == "smollm", pre
    vocab = {t: i for i, t in enumerate(tokens)}
    assert len(vocab) == len(tokens)
    ref = hf_bpe(vocab, merges, "smollm")
    raw = open(os.path.join(shared, "data/wikitext-2-raw/wiki.test.raw"), "rb").read()
    excerpt = raw.decode("utf-8")[:2000].encode("utf-8")
    lines = ["# SmolLM2-135M-Instruct (GGUF tokens + merges): expected ids from HF tokenizers with",
             "# Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False)]; no BOS (add_bos false);",
             "# written by scripts/make_tokenizer_fixtures.py", "P smollm"]
    for s in BPE_STRINGS:
        lines.append(f"S {hexs(s.encode('utf-8'))}")
        lines.append("I " + " ".join(map(str, ref.encode(s).ids)))
    lines.append(f"# first 2000 code points of wikitext-2-raw/wiki.test.raw ({len(excerpt)} bytes, CRLF kept)")
    lines.append(f"W {len(excerpt)} {zlib.crc32(excerpt):08x}")
    lines.append("I " + " ".join(map(str, ref.encode(excerpt.decode("utf-8")).ids)))
    with open(os.path.join(OUT, "smollm2_ids.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"smollm2: {len(tokens)} tokens, {len(merges)} merges")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"))
    ap.add_argument("--gguf", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    a = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    write_llama(a.shared, "tok512", "models/stories260K/tok512.bin")
    toks, scores = write_llama(a.shared, "llama2", "models/llama2-tokenizer/tokenizer.bin")
    compare_sentencepiece(a.shared, toks, scores)
    write_bpe_shakespeare(a.shared)
    if os.path.exists(a.gguf):
        write_smollm2(a.shared, a.gguf)
    else:
        print(f"{a.gguf} not found: smollm2_ids.txt not rewritten (scripts/get-models.sh fetches it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
