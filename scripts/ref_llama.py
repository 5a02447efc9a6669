#!/usr/bin/env python3
"""Independent NumPy reference of the Llama forward pass, for checking lmpress's runtime.

Reads a checkpoint directly (not through lmpress): a llama2.c .bin (legacy header or version-1 "ak42"
export) or a Hugging Face directory (config.json + model.safetensors, F32/F16/BF16). Computes the logits
of a token sequence in float64 and writes a fixture that tests/test_runtime.c compares against:

    magic  b"LMPREF1\\0"
    u32    n_tokens, u32 vocab
    i32    tokens[n_tokens]
    f32    logits[n_tokens][vocab]

RoPE: llama2.c models rotate interleaved pairs (2i, 2i+1) (llama2.c's model.py uses complex numbers);
Hugging Face models rotate (i, i + d/2) ("rotate_half"). Both are implemented here in their own style.

Usage:
    scripts/ref_llama.py --llama2c ../shared/models/stories260K/stories260K.bin --greedy 48 \\
        -o tests/fixtures/ref/stories260K.ref
    scripts/ref_llama.py --hf tests/fixtures/hf_tiny_gqa --tokens 1,5,9,... -o tests/fixtures/ref/hf_tiny_gqa.ref
    scripts/ref_llama.py ... --compare ours.f32      # compare raw (n, vocab) float32 logits from lmpress
"""
import argparse
import json
import os
import struct
import sys

import numpy as np


def load_llama2c(path):
    raw = open(path, "rb").read()
    magic = struct.unpack_from("<I", raw, 0)[0]
    if magic == 0x616B3432:  # "ak42" version-1 export
        version = struct.unpack_from("<i", raw, 4)[0]
        assert version == 1, f"version {version} not supported"
        dim, hidden, n_layers, n_heads, n_kv, vocab, seq = struct.unpack_from("<7i", raw, 8)
        shared = raw[8 + 28] != 0
        off = 256
        legacy = False
    else:
        dim, hidden, n_layers, n_heads, n_kv, vocab, seq = struct.unpack_from("<7i", raw, 0)
        shared = vocab > 0
        vocab = abs(vocab)
        off = 28
        legacy = True
    data = np.frombuffer(raw, dtype="<f4", offset=off).astype(np.float64)
    hd = dim // n_heads
    kv_dim = n_kv * hd
    pos = 0

    def take(*shape):
        nonlocal pos
        n = int(np.prod(shape))
        a = data[pos:pos + n].reshape(shape)
        pos += n
        return a

    w = {}
    if legacy:
        w["emb"] = take(vocab, dim)
        w["attn_norm"] = take(n_layers, dim)
        w["wq"] = take(n_layers, dim, dim)
        w["wk"] = take(n_layers, kv_dim, dim)
        w["wv"] = take(n_layers, kv_dim, dim)
        w["wo"] = take(n_layers, dim, dim)
        w["ffn_norm"] = take(n_layers, dim)
        w["w1"] = take(n_layers, hidden, dim)
        w["w2"] = take(n_layers, dim, hidden)
        w["w3"] = take(n_layers, hidden, dim)
        w["out_norm"] = take(dim)
        take(seq, hd // 2)  # freq_cis_real
        take(seq, hd // 2)  # freq_cis_imag
        w["out"] = w["emb"] if shared else take(vocab, dim)
    else:
        w["attn_norm"] = take(n_layers, dim)
        w["ffn_norm"] = take(n_layers, dim)
        w["out_norm"] = take(dim)
        w["emb"] = take(vocab, dim)
        w["wq"] = take(n_layers, dim, dim)
        w["wk"] = take(n_layers, kv_dim, dim)
        w["wv"] = take(n_layers, kv_dim, dim)
        w["wo"] = take(n_layers, dim, dim)
        w["w1"] = take(n_layers, hidden, dim)
        w["w2"] = take(n_layers, dim, hidden)
        w["w3"] = take(n_layers, hidden, dim)
        w["out"] = w["emb"] if shared else take(vocab, dim)
    assert pos == data.size, f"file size mismatch: used {pos} of {data.size} floats"
    cfg = dict(dim=dim, n_layers=n_layers, n_heads=n_heads, n_kv=n_kv, vocab=vocab, hd=hd, theta=10000.0,
               eps=1e-5, neox=False)
    return cfg, w


def read_safetensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack_from("<Q", raw, 0)[0]
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        buf = raw[base + b:base + e]
        if info["dtype"] == "F32":
            a = np.frombuffer(buf, dtype="<f4")
        elif info["dtype"] == "F16":
            a = np.frombuffer(buf, dtype="<f2")
        elif info["dtype"] == "BF16":
            a = (np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise SystemExit(f"dtype {info['dtype']} not supported")
        out[name] = a.astype(np.float64).reshape(info["shape"])
    return out


def load_hf(d):
    c = json.load(open(os.path.join(d, "config.json")))
    t = {}
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        for shard in sorted(set(json.load(open(idx))["weight_map"].values())):
            t.update(read_safetensors(os.path.join(d, shard)))
    else:
        t.update(read_safetensors(os.path.join(d, "model.safetensors")))
    L = c["num_hidden_layers"]
    dim = c["hidden_size"]
    n_heads = c["num_attention_heads"]
    hd = c.get("head_dim", dim // n_heads)
    g = lambda n: t[n]
    w = {
        "emb": g("model.embed_tokens.weight"),
        "attn_norm": np.stack([g(f"model.layers.{l}.input_layernorm.weight") for l in range(L)]),
        "ffn_norm": np.stack([g(f"model.layers.{l}.post_attention_layernorm.weight") for l in range(L)]),
        "wq": np.stack([g(f"model.layers.{l}.self_attn.q_proj.weight") for l in range(L)]),
        "wk": np.stack([g(f"model.layers.{l}.self_attn.k_proj.weight") for l in range(L)]),
        "wv": np.stack([g(f"model.layers.{l}.self_attn.v_proj.weight") for l in range(L)]),
        "wo": np.stack([g(f"model.layers.{l}.self_attn.o_proj.weight") for l in range(L)]),
        "w1": np.stack([g(f"model.layers.{l}.mlp.gate_proj.weight") for l in range(L)]),
        "w2": np.stack([g(f"model.layers.{l}.mlp.down_proj.weight") for l in range(L)]),
        "w3": np.stack([g(f"model.layers.{l}.mlp.up_proj.weight") for l in range(L)]),
        "out_norm": g("model.norm.weight"),
    }
    w["out"] = t["lm_head.weight"] if "lm_head.weight" in t else w["emb"]
    cfg = dict(dim=dim, n_layers=L, n_heads=n_heads, n_kv=c.get("num_key_value_heads", n_heads),
               vocab=c["vocab_size"], hd=hd, theta=float(c.get("rope_theta", 10000.0)),
               eps=float(c.get("rms_norm_eps", 1e-6)), neox=True)
    return cfg, w


def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope(x, pos, theta, neox):
    """x: (T, H, hd). Interleaved: complex pairs (2i, 2i+1). neox: rotate_half over (i, i + hd/2)."""
    T, H, hd = x.shape
    inv = 1.0 / theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd)  # (hd/2)
    ang = np.outer(pos, inv)  # (T, hd/2)
    if neox:
        cos = np.concatenate([np.cos(ang), np.cos(ang)], axis=-1)[:, None, :]
        sin = np.concatenate([np.sin(ang), np.sin(ang)], axis=-1)[:, None, :]
        rot = np.concatenate([-x[..., hd // 2:], x[..., :hd // 2]], axis=-1)
        return x * cos + rot * sin
    xc = x[..., 0::2] + 1j * x[..., 1::2]
    xc = xc * np.exp(1j * ang)[:, None, :]
    out = np.empty_like(x)
    out[..., 0::2] = xc.real
    out[..., 1::2] = xc.imag
    return out


def forward(cfg, w, tokens):
    T = len(tokens)
    H, KV, hd = cfg["n_heads"], cfg["n_kv"], cfg["hd"]
    x = w["emb"][tokens]  # (T, dim)
    pos = np.arange(T, dtype=np.float64)
    mask = np.triu(np.full((T, T), -np.inf), k=1)
    for l in range(cfg["n_layers"]):
        h = rmsnorm(x, w["attn_norm"][l], cfg["eps"])
        q = (h @ w["wq"][l].T).reshape(T, H, hd)
        k = (h @ w["wk"][l].T).reshape(T, KV, hd)
        v = (h @ w["wv"][l].T).reshape(T, KV, hd)
        q = rope(q, pos, cfg["theta"], cfg["neox"])
        k = rope(k, pos, cfg["theta"], cfg["neox"])
        rep = H // KV
        k = np.repeat(k, rep, axis=1)
        v = np.repeat(v, rep, axis=1)
        att = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd) + mask
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        o = np.einsum("hts,shd->thd", att, v).reshape(T, H * hd)
        x = x + o @ w["wo"][l].T
        h = rmsnorm(x, w["ffn_norm"][l], cfg["eps"])
        g = h @ w["w1"][l].T
        u = h @ w["w3"][l].T
        x = x + ((g / (1 + np.exp(-g))) * u) @ w["w2"][l].T
    return rmsnorm(x, w["out_norm"], cfg["eps"]) @ w["out"].T  # (T, vocab)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--llama2c")
    src.add_argument("--hf")
    ap.add_argument("--tokens", help="comma-separated ids")
    ap.add_argument("--greedy", type=int, default=0, help="extend the tokens (default: BOS=1) greedily by N tokens")
    ap.add_argument("-o", "--out", help="fixture to write")
    ap.add_argument("--compare", help="raw float32 (n, vocab) logits from lmpress dump-logits")
    a = ap.parse_args()
    cfg, w = load_llama2c(a.llama2c) if a.llama2c else load_hf(a.hf)
    tokens = [int(t) for t in a.tokens.split(",")] if a.tokens else [1]
    for _ in range(a.greedy):
        tokens.append(int(np.argmax(forward(cfg, w, tokens)[-1])))
    logits = forward(cfg, w, tokens)
    print(f"{len(tokens)} tokens, vocab {cfg['vocab']}: {tokens}", file=sys.stderr)
    if a.out:
        os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
        with open(a.out, "wb") as f:
            f.write(b"LMPREF1\0")
            f.write(struct.pack("<II", len(tokens), cfg["vocab"]))
            f.write(np.asarray(tokens, dtype="<i4").tobytes())
            f.write(logits.astype("<f4").tobytes())
        print(f"wrote {a.out}", file=sys.stderr)
    if a.compare:
        ours = np.fromfile(a.compare, dtype="<f4").reshape(len(tokens), cfg["vocab"]).astype(np.float64)
        rel = np.abs(ours - logits).max(axis=1) / np.abs(logits).max(axis=1)
        print(f"max relative error {rel.max():.3e} (per position: max|a-b| / max|b|), mean {rel.mean():.3e}")
        return 0 if rel.max() <= 1e-4 else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
