#!/usr/bin/env python3
"""make_llama2c_fixtures.py - writes the llama2.c import fixtures under tests/fixtures/llama2c/.

A tiny random Llama model (dim 32, hidden 40, 2 layers, 4 heads, 2 KV heads, vocab 64, seq 16, separate
classifier) in BOTH llama2.c layouts, written here independently of the C importer from the layout of
karpathy/llama2.c's export.py (legacy_export and version1_export):

  tiny_legacy.bin   7 int32 header (vocab_size negative: separate classifier), fp32 weights in the legacy
                    order, including the freq_cis tables that an importer must skip
  tiny_v1.bin       256-byte "ak42" version-1 header, fp32 weights in the version-1 order
  tokenizer.bin     llama2.c tokenizer: int32 max_token_length, then per token f32 score, int32 len, bytes
  expected.txt      one line per lmpress tensor, in the order the importer adds them:
                    "name dim0[xdim1] crc32hex first_value" (CRC32 of the little-endian fp32 bytes)

tests/test_llama2c.c imports both .bin files and compares every tensor with expected.txt; the malformed
variants are derived from these files at test time. Needs numpy only. Fixed seed: re-running gives
identical bytes.

Usage: python3 scripts/make_llama2c_fixtures.py [outdir]
"""
import os
import struct
import sys
import zlib

import numpy as np

DIM, HIDDEN, LAYERS, HEADS, KV_HEADS, VOCAB, SEQ = 32, 40, 2, 4, 2, 64, 16
HEAD = DIM // HEADS
KV_DIM = HEAD * KV_HEADS


def make_weights(rng):
    f = lambda *shape: (rng.standard_normal(shape) * 0.1).astype("<f4")
    w = {
        "emb": f(VOCAB, DIM),
        "att_norm": [(1.0 + f(DIM)).astype("<f4") for _ in range(LAYERS)],
        "wq": [f(DIM, DIM) for _ in range(LAYERS)],        # (out, in) as nn.Linear.weight
        "wk": [f(KV_DIM, DIM) for _ in range(LAYERS)],
        "wv": [f(KV_DIM, DIM) for _ in range(LAYERS)],
        "wo": [f(DIM, DIM) for _ in range(LAYERS)],
        "ffn_norm": [(1.0 + f(DIM)).astype("<f4") for _ in range(LAYERS)],
        "w1": [f(HIDDEN, DIM) for _ in range(LAYERS)],
        "w2": [f(DIM, HIDDEN) for _ in range(LAYERS)],
        "w3": [f(HIDDEN, DIM) for _ in range(LAYERS)],
        "norm": (1.0 + f(DIM)).astype("<f4"),
        "out": f(VOCAB, DIM),
    }
    # llama2.c's precompute_freqs_cis (theta 10000), written by the legacy export and skipped on import
    freqs = 1.0 / (10000.0 ** (np.arange(0, HEAD, 2)[: HEAD // 2].astype(np.float64) / HEAD))
    ang = np.outer(np.arange(SEQ, dtype=np.float64), freqs)
    w["freq_cos"] = np.cos(ang).astype("<f4")
    w["freq_sin"] = np.sin(ang).astype("<f4")
    return w


def params(vocab):
    return struct.pack("<7i", DIM, HIDDEN, LAYERS, HEADS, KV_HEADS, vocab, SEQ)


def write_legacy(path, w):
    parts = [params(-VOCAB), w["emb"]]  # negative vocab: separate classifier
    for key in ("att_norm", "wq", "wk", "wv", "wo", "ffn_norm", "w1", "w2", "w3"):
        parts += w[key]
    parts += [w["norm"], w["freq_cos"], w["freq_sin"], w["out"]]
    with open(path, "wb") as f:
        for p in parts:
            f.write(p if isinstance(p, bytes) else p.tobytes())


def write_v1(path, w):
    header = struct.pack("<Ii", 0x616B3432, 1) + params(VOCAB) + struct.pack("<B", 0)
    header += b"\0" * (256 - len(header))
    parts = [header, *w["att_norm"], *w["ffn_norm"], w["norm"], w["emb"]]
    for key in ("wq", "wk", "wv", "wo", "w1", "w2", "w3"):
        parts += w[key]
    parts.append(w["out"])
    with open(path, "wb") as f:
        for p in parts:
            f.write(p if isinstance(p, bytes) else p.tobytes())


def tokens():
    toks = [(0.0, b"<unk>"), (0.0, b"\n<s>\n"), (0.0, b"\n</s>\n")]
    toks += [(0.0, b"<0x%02X>" % i) for i in range(16)]
    words = [b" the", b" a", b" cat", b" dog", b"he", b"ll", b"o", b" sat", b" on", b" mat", b"in", b"er",
             b" was", b" big", b" run", b"ing", b" and", b" to", b" it", b"s", b"t", b"e", b" ", b"!", b".",
             b",", b" Lily", b" Tom", b" sun", b" day", b" play", b" tree", b" red", b" box", b" \xc3\xa9t\xc3\xa9",
             b"ab", b"cd", b"ef", b"gh", b"ij", b"kl", b"mn", b"op", b"qr", b"st"]
    toks += [(-float(i + 1), t) for i, t in enumerate(words)]
    assert len(toks) == VOCAB, len(toks)
    return toks


def write_tokenizer(path, toks):
    max_len = max(len(t) for _, t in toks)
    with open(path, "wb") as f:
        f.write(struct.pack("<i", max_len))
        for score, t in toks:
            f.write(struct.pack("<fi", score, len(t)))
            f.write(t)


def write_expected(path, w):
    rows = [("token_embd.weight", w["emb"])]
    names = [("attn_norm", "att_norm"), ("attn_q", "wq"), ("attn_k", "wk"), ("attn_v", "wv"),
             ("attn_output", "wo"), ("ffn_norm", "ffn_norm"), ("ffn_gate", "w1"), ("ffn_down", "w2"),
             ("ffn_up", "w3")]
    for l in range(LAYERS):
        for ours, theirs in names:
            rows.append((f"blk.{l}.{ours}.weight", w[theirs][l]))
    rows += [("output_norm.weight", w["norm"]), ("output.weight", w["out"])]
    with open(path, "w") as f:
        for name, a in rows:
            shape = "x".join(str(d) for d in a.shape)
            f.write(f"{name} {shape} {zlib.crc32(a.tobytes()):08x} {float(a.flat[0]):.9g}\n")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "tests", "fixtures", "llama2c")
    os.makedirs(out, exist_ok=True)
    w = make_weights(np.random.default_rng(20261123))
    write_legacy(os.path.join(out, "tiny_legacy.bin"), w)
    write_v1(os.path.join(out, "tiny_v1.bin"), w)
    write_tokenizer(os.path.join(out, "tokenizer.bin"), tokens())
    write_expected(os.path.join(out, "expected.txt"), w)
    for name in sorted(os.listdir(out)):
        path = os.path.normpath(os.path.join(out, name))
        print(f"{path}: {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
