#!/usr/bin/env python3
"""Independent NumPy reference of the Llama forward pass over a GGUF file, and the GGUF test fixtures.

The model is read with the `gguf` package (gguf.GGUFReader + gguf.quants.dequantize), not with lmpress.
GGUF files of architecture "llama" store the query/key rows permuted by llama.cpp's converter
(convert_hf_to_gguf.py, LlamaModel.permute) so that RoPE rotates interleaved pairs (2i, 2i+1). This
script undoes that permutation, back to the Hugging Face layout, and applies RoPE in the rotate-half
convention (pairs (i, i + d/2)), as transformers' LlamaAttention does. Agreement with lmpress (which
keeps the GGUF layout and rotates interleaved pairs) therefore checks the layout, not just the matmuls.
Activations are float64.

Usage:
  scripts/ref_gguf_llama.py MODEL.gguf --tokens 1,2,3 [--n N] --out logits.f32
  scripts/ref_gguf_llama.py MODEL.gguf --tokens-file toks.txt --compare ours.f32 [--tol 1e-3]
      logits files are raw little-endian float32, (n_tokens, vocab), row t = logits after token t
      (`lmpress dump-logits MODEL --tokens ... -o ours.f32` writes the same layout). --compare prints,
      per position, the relative error max|ours - ref| / max|ref| and whether the arg-max agrees.
  scripts/ref_gguf_llama.py --make-fixtures [--smollm models/SmolLM2-135M-Instruct.Q4_1.gguf]
      (re)writes tests/fixtures/gguf/: tiny.gguf (random llama, dim 64, 2 layers, mixed Q8_0/Q4_0/Q4_1/
      Q4_K/Q6_K/F16/BF16/F32 tensors, tiny gpt2 tokenizer), tiny_tokens.txt, tiny_logits.f32 (this
      script's logits), dequant.bin (raw ggml blocks + gguf-py's dequantization), and, when the SmolLM2
      GGUF is present, smollm2_top5.txt (top-5 ids and logits at 16 positions).

dequant.bin layout: b"LMPDQ1\\0\\0", u32 n_records, then per record: u32 ggml_type, u32 n_blocks,
u32 raw_bytes, raw_bytes bytes of blocks, f32[n_blocks * block_size] expected values.
"""
import argparse
import os
import struct
import sys

import numpy as np

try:
    import gguf
    from gguf import GGMLQuantizationType as QT
except ImportError:  # pragma: no cover
    sys.exit("ref_gguf_llama.py needs the gguf package: python3 -m pip install gguf")

FIXDIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "gguf")


# ---------------------------------------------------------------- model loading


def field_value(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    t = f.types[0]
    if t == gguf.GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8")
    if t == gguf.GGUFValueType.ARRAY:
        if f.types[1] == gguf.GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        return [f.parts[i][0].item() for i in f.data]
    return f.parts[f.data[0]][0].item()


def load_gguf(path):
    r = gguf.GGUFReader(path)
    arch = field_value(r, "general.architecture")
    if arch != "llama":
        sys.exit(f"{path}: architecture {arch!r} is not llama")
    hp = {
        "dim": field_value(r, "llama.embedding_length"),
        "n_layers": field_value(r, "llama.block_count"),
        "n_heads": field_value(r, "llama.attention.head_count"),
        "eps": field_value(r, "llama.attention.layer_norm_rms_epsilon"),
        "theta": field_value(r, "llama.rope.freq_base", 10000.0),
    }
    hp["n_kv"] = field_value(r, "llama.attention.head_count_kv", hp["n_heads"])
    hp["hd"] = field_value(r, "llama.attention.key_length", hp["dim"] // hp["n_heads"])
    hp["rd"] = field_value(r, "llama.rope.dimension_count", hp["hd"])
    w = {}
    hp["quantized"] = set()  # names of tensors stored in an integer block type
    for t in r.tensors:
        a = gguf.quants.dequantize(t.data, t.tensor_type)
        shape = tuple(int(x) for x in reversed(t.shape.tolist()))  # GGUF ne is innermost first
        w[t.name] = np.asarray(a, dtype=np.float32).reshape(shape)
        if t.tensor_type not in (QT.F32, QT.F16, QT.BF16):
            hp["quantized"].add(t.name)
    if "output.weight" not in w:
        w["output.weight"] = w["token_embd.weight"]
        if "token_embd.weight" in hp["quantized"]:
            hp["quantized"].add("output.weight")
    hp["vocab"] = w["token_embd.weight"].shape[0]
    return hp, w


def unpermute(wt, n_head):
    """GGUF (interleaved) rows -> Hugging Face rows: inverse of llama.cpp's LlamaModel.permute."""
    rows = wt.shape[0]
    hd = rows // n_head
    return wt.reshape(n_head, hd // 2, 2, *wt.shape[1:]).swapaxes(1, 2).reshape(wt.shape)


def permute(wt, n_head):
    """Hugging Face rows -> GGUF rows (llama.cpp's LlamaModel.permute)."""
    rows = wt.shape[0]
    hd = rows // n_head
    return wt.reshape(n_head, 2, hd // 2, *wt.shape[1:]).swapaxes(1, 2).reshape(wt.shape)


# ---------------------------------------------------------------- forward pass


def rmsnorm(x, g, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * g.astype(np.float64)


def rope_rotate_half(x, pos, theta, rd):
    """x: (n, heads, hd); rotates the first rd dims of each head, pairs (i, i + rd/2)."""
    inv = theta ** (-np.arange(0, rd, 2, dtype=np.float64) / rd)  # (rd/2)
    ang = pos[:, None].astype(np.float64) * inv[None, :]  # (n, rd/2)
    cos = np.concatenate([np.cos(ang), np.cos(ang)], axis=-1)[:, None, :]
    sin = np.concatenate([np.sin(ang), np.sin(ang)], axis=-1)[:, None, :]
    xr = x[..., :rd]
    half = rd // 2
    rot = np.concatenate([-xr[..., half:], xr[..., :half]], axis=-1)
    out = x.copy()
    out[..., :rd] = xr * cos + rot * sin
    return out


def q8_blocks(x):
    """Rounds each block of 32 along the last axis to 8 bits (d = max|x| / 127), as ggml's Q8 activations."""
    xb = x.reshape(*x.shape[:-1], -1, 32)
    d = np.abs(xb).max(axis=-1, keepdims=True) / 127.0
    q = np.round(np.divide(xb, d, out=np.zeros_like(xb), where=d > 0))
    return (q * d).reshape(x.shape)


def forward(hp, w, tokens, q8_act=False):
    """Logits (n, vocab) in float64. q8_act: inputs of matmuls with quantized weights are first rounded
    to 8-bit blocks, to estimate what a runtime that uses integer dot products loses."""
    tokens = np.asarray(tokens, dtype=np.int64)

    def mm(x, name):
        if q8_act and name in hp["quantized"]:
            x = q8_blocks(x)
        return x @ w[name].T.astype(np.float64)

    n = len(tokens)
    dim, hd, eps = hp["dim"], hp["hd"], hp["eps"]
    pos = np.arange(n)
    x = w["token_embd.weight"][tokens].astype(np.float64)  # (n, dim)
    mask = np.triu(np.full((n, n), -np.inf), k=1)
    for l in range(hp["n_layers"]):
        p = f"blk.{l}."
        wq, wk = w[p + "attn_q.weight"], w[p + "attn_k.weight"]
        nh, nkv = wq.shape[0] // hd, wk.shape[0] // hd  # per layer, from the shapes
        wq, wk = unpermute(wq, nh), unpermute(wk, nkv)
        h = rmsnorm(x, w[p + "attn_norm.weight"], eps)
        hq = q8_blocks(h) if q8_act and p + "attn_q.weight" in hp["quantized"] else h
        hk = q8_blocks(h) if q8_act and p + "attn_k.weight" in hp["quantized"] else h
        q = (hq @ wq.T.astype(np.float64)).reshape(n, nh, hd)
        k = (hk @ wk.T.astype(np.float64)).reshape(n, nkv, hd)
        v = mm(h, p + "attn_v.weight").reshape(n, nkv, hd)
        q = rope_rotate_half(q, pos, hp["theta"], hp["rd"])
        k = rope_rotate_half(k, pos, hp["theta"], hp["rd"])
        att = np.empty((n, nh, hd))
        grp = nh // nkv
        for hh in range(nh):
            s = q[:, hh, :] @ k[:, hh // grp, :].T / np.sqrt(hd) + mask
            s = np.exp(s - s.max(axis=-1, keepdims=True))
            s /= s.sum(axis=-1, keepdims=True)
            att[:, hh, :] = s @ v[:, hh // grp, :]
        x = x + mm(att.reshape(n, nh * hd), p + "attn_output.weight")
        h = rmsnorm(x, w[p + "ffn_norm.weight"], eps)
        g = mm(h, p + "ffn_gate.weight")
        u = mm(h, p + "ffn_up.weight")
        x = x + mm(g / (1.0 + np.exp(-g)) * u, p + "ffn_down.weight")
    x = rmsnorm(x, w["output_norm.weight"], eps)
    return mm(x, "output.weight")  # (n, vocab)


def compare(ours, ref):
    """Prints per-position relative error max|a-b| / max|b| and arg-max agreement; returns the worst."""
    worst = 0.0
    agree = 0
    for t in range(ref.shape[0]):
        e = float(np.max(np.abs(ours[t] - ref[t])) / np.max(np.abs(ref[t])))
        a = int(np.argmax(ours[t]) == np.argmax(ref[t]))
        agree += a
        worst = max(worst, e)
        print(f"pos {t:4d}: rel err {e:.3e}  argmax {'agree' if a else 'DIFFER'} "
              f"(ours {int(np.argmax(ours[t]))}, ref {int(np.argmax(ref[t]))})")
    print(f"overall: max rel err {worst:.3e} over {ref.shape[0]} positions, arg-max agreement "
          f"{agree}/{ref.shape[0]}")
    return worst


# ---------------------------------------------------------------- fixtures


def bytes_to_unicode():
    """GPT-2's byte -> printable unicode character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def tiny_tokenizer():
    b2u = bytes_to_unicode()
    tokens = ["<|endoftext|>"] + [b2u[b] for b in range(256)]
    types = [3] + [1] * 256
    sp = b2u[ord(" ")]
    merges = [("h", "e"), (sp, "t"), (sp + "t", "he"), ("i", "n"), ("e", "r"), ("a", "n"), (sp, "a"),
              ("o", "n"), ("r", "e"), ("a", "t"), (sp, "s"), ("e", "d"), (sp, "w"), ("o", "u"), ("i", "s"),
              (sp, "o"), ("n", "d"), (sp + "a", "nd"), ("i", "t"), (sp, "b"), ("l", "l"), (sp, "c"),
              ("in", "g"), (sp, "L"), (sp + "L", "i"), (sp + "Li", "l"), (sp + "Lil", "y"), (sp, "h"),
              (sp, "d"), ("o", "g")]
    for a, b in merges:
        assert a in tokens and b in tokens, (a, b)
        tokens.append(a + b)
        types.append(1)
    tokens.append("<|im_start|>")
    types.append(3)
    return tokens, types, [f"{a} {b}" for a, b in merges]


def f16_bytes(vals):
    return np.asarray(vals, dtype=np.float16).tobytes()


def random_scales(rng, n, lo=-4.0, hi=0.0):
    """Valid (finite) fp16 scales spread over magnitudes, with sign."""
    s = (10.0 ** rng.uniform(lo, hi, n)) * rng.choice([-1.0, 1.0], n)
    return s.astype(np.float16)


def random_blocks(rng, qtype, nb, scale_lo=-4.0, scale_hi=0.0, positive=False):
    """nb random raw ggml blocks of qtype with valid fp16 scales (as uint8, shape (nb, type_size))."""
    out = []
    for i in range(nb):
        if qtype == QT.Q8_0:
            d = random_scales(rng, 1, scale_lo, scale_hi)
            blk = d.tobytes() + rng.integers(-128, 128, 32, dtype=np.int8).tobytes()
        elif qtype == QT.Q4_0:
            blk = random_scales(rng, 1, scale_lo, scale_hi).tobytes() + rng.integers(0, 256, 16, dtype=np.uint8).tobytes()
        elif qtype == QT.Q4_1:
            blk = (random_scales(rng, 1, scale_lo, scale_hi).tobytes() + random_scales(rng, 1, scale_lo, scale_hi).tobytes()
                   + rng.integers(0, 256, 16, dtype=np.uint8).tobytes())
        elif qtype == QT.Q4_K:
            d = np.abs(random_scales(rng, 2, scale_lo, scale_hi)) if positive else random_scales(rng, 2, scale_lo, scale_hi)
            blk = d.tobytes() + rng.integers(0, 256, 12 + 128, dtype=np.uint8).tobytes()
        elif qtype == QT.Q6_K:
            d = random_scales(rng, 1, scale_lo, scale_hi)
            blk = (rng.integers(0, 256, 128 + 64, dtype=np.uint8).tobytes()
                   + rng.integers(-128, 128, 16, dtype=np.int8).tobytes() + d.tobytes())
        else:
            raise ValueError(qtype)
        out.append(np.frombuffer(blk, dtype=np.uint8))
    return np.stack(out)


def make_dequant_fixture(path, rng):
    recs = []
    for qt, nb in ((QT.Q8_0, 16), (QT.Q4_0, 16), (QT.Q4_1, 16), (QT.Q4_K, 6), (QT.Q6_K, 6)):
        raw = random_blocks(rng, qt, nb)
        blk, tsz = gguf.GGML_QUANT_SIZES[qt]
        # Block 1: every fp16 field zero; block 2: fp16 fields subnormal (edge cases of the conversion).
        d_at = {QT.Q8_0: [0], QT.Q4_0: [0], QT.Q4_1: [0, 2], QT.Q4_K: [0, 2], QT.Q6_K: [208]}[qt]
        for off in d_at:
            raw[1, off:off + 2] = np.frombuffer(f16_bytes([0.0]), dtype=np.uint8)
            raw[2, off:off + 2] = np.frombuffer(f16_bytes([-3.0e-6]), dtype=np.uint8)
        assert raw.shape == (nb, tsz)
        vals = gguf.quants.dequantize(raw.reshape(-1), qt).astype(np.float32).reshape(-1)
        assert vals.size == nb * blk and np.all(np.isfinite(vals))
        recs.append(struct.pack("<III", int(qt), nb, raw.size) + raw.tobytes() + vals.astype("<f4").tobytes())
    for qt, n in ((QT.F16, 64), (QT.BF16, 64)):
        x = rng.standard_normal(n).astype(np.float32)
        raw = x.astype(np.float16).view(np.uint8) if qt == QT.F16 else gguf.quants.quantize(x, QT.BF16).view(np.uint8)
        vals = gguf.quants.dequantize(raw, qt).astype(np.float32).reshape(-1)
        recs.append(struct.pack("<III", int(qt), n, raw.size) + raw.tobytes() + vals.astype("<f4").tobytes())
    with open(path, "wb") as f:
        f.write(b"LMPDQ1\0\0" + struct.pack("<I", len(recs)) + b"".join(recs))


TINY = dict(dim=64, n_layers=2, n_heads=4, n_kv=2, ffn=256, ctx=128, theta=10000.0, eps=1e-5)
# GGUF type of each tensor of the tiny model (per layer for blk.*).
TINY_TYPES = {
    "token_embd.weight": QT.Q8_0,
    "output.weight": QT.Q8_0,
    0: {"attn_q": QT.Q4_0, "attn_k": QT.Q4_1, "attn_v": QT.Q8_0, "attn_output": QT.F16,
        "ffn_gate": QT.Q4_1, "ffn_up": QT.Q4_0, "ffn_down": QT.Q6_K},
    1: {"attn_q": QT.Q8_0, "attn_k": QT.F16, "attn_v": QT.Q4_0, "attn_output": QT.Q4_1,
        "ffn_gate": QT.BF16, "ffn_up": QT.Q8_0, "ffn_down": QT.Q4_K},
}


def add_weight(wr, rng, name, shape, qt):
    """Adds a random (out, in) weight of GGUF type qt; std about 1/sqrt(in)."""
    rows, cols = shape
    if qt in (QT.Q4_K, QT.Q6_K):  # no quantizer in gguf-py: random raw blocks with small scales
        nb = rows * cols // 256
        if qt == QT.Q6_K:
            raw = random_blocks(rng, qt, nb, -4.4, -3.8)
        else:
            raw = random_blocks(rng, qt, nb, -3.6, -3.0, positive=True)
        wr.add_tensor(name, raw.reshape(rows, -1), raw_dtype=qt)
        return
    x = (rng.standard_normal(shape) / np.sqrt(cols)).astype(np.float32)
    if qt == QT.F32:
        wr.add_tensor(name, x)
    elif qt == QT.F16:
        wr.add_tensor(name, x.astype(np.float16))
    else:
        q = gguf.quants.quantize(x, qt)
        wr.add_tensor(name, q, raw_dtype=qt)


def make_tiny_gguf(path, rng):
    hp = TINY
    tokens, types, merges = tiny_tokenizer()
    vocab = len(tokens)
    hd = hp["dim"] // hp["n_heads"]
    wr = gguf.GGUFWriter(path, "llama")
    wr.add_string("general.name", "lmpress tiny random llama")
    wr.add_uint32("llama.context_length", hp["ctx"])
    wr.add_uint32("llama.embedding_length", hp["dim"])
    wr.add_uint32("llama.block_count", hp["n_layers"])
    wr.add_uint32("llama.feed_forward_length", hp["ffn"])
    wr.add_uint32("llama.attention.head_count", hp["n_heads"])
    wr.add_uint32("llama.attention.head_count_kv", hp["n_kv"])
    wr.add_float32("llama.attention.layer_norm_rms_epsilon", hp["eps"])
    wr.add_float32("llama.rope.freq_base", hp["theta"])
    wr.add_uint32("llama.rope.dimension_count", hd)
    wr.add_uint32("llama.vocab_size", vocab)
    wr.add_uint32("general.file_type", 7)
    wr.add_string("tokenizer.ggml.model", "gpt2")
    wr.add_string("tokenizer.ggml.pre", "smollm")
    wr.add_key_value("tokenizer.ggml.tokens", tokens, gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.STRING)
    wr.add_key_value("tokenizer.ggml.token_type", types, gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.INT32)
    wr.add_key_value("tokenizer.ggml.merges", merges, gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.STRING)
    wr.add_uint32("tokenizer.ggml.bos_token_id", 0)
    wr.add_uint32("tokenizer.ggml.eos_token_id", 0)
    wr.add_bool("tokenizer.ggml.add_bos_token", False)
    # A few value types the importer does not need, so the reader's decoding of each is exercised.
    wr.add_key_value("lmpress.test.u8", 200, gguf.GGUFValueType.UINT8)
    wr.add_key_value("lmpress.test.i8", -100, gguf.GGUFValueType.INT8)
    wr.add_key_value("lmpress.test.u16", 60000, gguf.GGUFValueType.UINT16)
    wr.add_key_value("lmpress.test.i16", -30000, gguf.GGUFValueType.INT16)
    wr.add_key_value("lmpress.test.u64", 1 << 40, gguf.GGUFValueType.UINT64)
    wr.add_key_value("lmpress.test.i64", -(1 << 40), gguf.GGUFValueType.INT64)
    wr.add_key_value("lmpress.test.f64", 0.1, gguf.GGUFValueType.FLOAT64)
    wr.add_key_value("lmpress.test.f64_arr", [1.5, -2.25], gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.FLOAT64)
    wr.add_key_value("lmpress.test.u16_arr", [1, 65535], gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.UINT16)
    wr.add_key_value("lmpress.test.bool_arr", [True, False, True], gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.BOOL)

    emb = rng.standard_normal((vocab, hp["dim"])).astype(np.float32)
    wr.add_tensor("token_embd.weight", gguf.quants.quantize(emb, QT.Q8_0), raw_dtype=QT.Q8_0)
    kvd = hp["n_kv"] * hd
    shapes = {"attn_q": (hp["dim"], hp["dim"]), "attn_k": (kvd, hp["dim"]), "attn_v": (kvd, hp["dim"]),
              "attn_output": (hp["dim"], hp["dim"]), "ffn_gate": (hp["ffn"], hp["dim"]),
              "ffn_up": (hp["ffn"], hp["dim"]), "ffn_down": (hp["dim"], hp["ffn"])}
    for l in range(hp["n_layers"]):
        wr.add_tensor(f"blk.{l}.attn_norm.weight", (1.0 + 0.1 * rng.standard_normal(hp["dim"])).astype(np.float32))
        wr.add_tensor(f"blk.{l}.ffn_norm.weight", (1.0 + 0.1 * rng.standard_normal(hp["dim"])).astype(np.float32))
        for nm, shp in shapes.items():
            add_weight(wr, rng, f"blk.{l}.{nm}.weight", shp, TINY_TYPES[l][nm])
    wr.add_tensor("output_norm.weight", (1.0 + 0.1 * rng.standard_normal(hp["dim"])).astype(np.float32))
    add_weight(wr, rng, "output.weight", (vocab, hp["dim"]), TINY_TYPES["output.weight"])
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()


def smollm_tokens(path):
    """A fixed 16-token sequence: BOS-less 'Once upon a time, there was a little girl named Lily. She'."""
    r = gguf.GGUFReader(path)
    vocab = field_value(r, "tokenizer.ggml.tokens")
    ids = {t: i for i, t in enumerate(vocab)}
    words = ["Once", "Ġupon", "Ġa", "Ġtime", ",", "Ġthere", "Ġwas", "Ġa", "Ġlittle", "Ġgirl", "Ġnamed", "ĠLily",
             ".", "ĠShe", "Ġloved", "Ġto"]
    return [ids[w] for w in words]


def make_fixtures(args):
    os.makedirs(FIXDIR, exist_ok=True)
    rng = np.random.default_rng(20261123)
    make_dequant_fixture(os.path.join(FIXDIR, "dequant.bin"), rng)
    tiny = os.path.join(FIXDIR, "tiny.gguf")
    make_tiny_gguf(tiny, rng)
    hp, w = load_gguf(tiny)
    toks = [int(t) for t in rng.integers(0, hp["vocab"], 24)]
    with open(os.path.join(FIXDIR, "tiny_tokens.txt"), "w") as f:
        f.write(",".join(map(str, toks)) + "\n")
    logits = forward(hp, w, toks)
    logits.astype("<f4").tofile(os.path.join(FIXDIR, "tiny_logits.f32"))
    print(f"wrote {tiny} ({os.path.getsize(tiny)} bytes), tiny_logits.f32 ({len(toks)} x {hp['vocab']}), dequant.bin")
    if args.smollm and os.path.exists(args.smollm):
        toks = smollm_tokens(args.smollm)
        hp, w = load_gguf(args.smollm)
        logits = forward(hp, w, toks)
        out = os.path.join(FIXDIR, "smollm2_top5.txt")
        with open(out, "w") as f:
            f.write(f"# scripts/ref_gguf_llama.py --make-fixtures: reference logits of {os.path.basename(args.smollm)}\n")
            f.write("# line: pos token maxabs id0 logit0 ... id4 logit4 (top-5 by logit, float64 forward pass)\n")
            f.write("tokens " + ",".join(map(str, toks)) + "\n")
            for t in range(len(toks)):
                top = np.argsort(-logits[t])[:5]
                f.write(f"{t} {toks[t]} {np.max(np.abs(logits[t])):.6f} "
                        + " ".join(f"{int(i)} {logits[t, i]:.6f}" for i in top) + "\n")
        print(f"wrote {out}")
    elif args.smollm:
        print(f"{args.smollm} not found: smollm2_top5.txt not written")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", help="GGUF file (llama architecture)")
    ap.add_argument("--tokens", help="comma-separated token ids")
    ap.add_argument("--tokens-file", help="file of token ids (commas or whitespace)")
    ap.add_argument("--n", type=int, default=0, help="use only the first N tokens")
    ap.add_argument("--out", help="write the reference logits (raw float32, n x vocab)")
    ap.add_argument("--compare", help="raw float32 logits (n x vocab) to compare with the reference")
    ap.add_argument("--tol", type=float, default=None, help="with --compare: exit 1 if the max rel err exceeds this")
    ap.add_argument("--q8-activations", action="store_true",
                    help="round the inputs of matmuls with quantized weights to 8-bit blocks of 32 (estimates the "
                         "error of a runtime with integer dot products)")
    ap.add_argument("--make-fixtures", action="store_true", help="write tests/fixtures/gguf/")
    ap.add_argument("--smollm", default="models/SmolLM2-135M-Instruct.Q4_1.gguf",
                    help="SmolLM2 GGUF for the top-5 fixture (with --make-fixtures)")
    args = ap.parse_args()
    if args.make_fixtures:
        make_fixtures(args)
        return 0
    if not args.model or not (args.tokens or args.tokens_file):
        ap.error("give MODEL and --tokens or --tokens-file (or --make-fixtures)")
    text = args.tokens if args.tokens else open(args.tokens_file).read()
    toks = [int(t) for t in text.replace(",", " ").split()]
    if args.n > 0:
        toks = toks[:args.n]
    hp, w = load_gguf(args.model)
    if any(t < 0 or t >= hp["vocab"] for t in toks):
        sys.exit(f"token ids must be in [0, {hp['vocab']})")
    ref = forward(hp, w, toks, q8_act=args.q8_activations)
    if args.out:
        ref.astype("<f4").tofile(args.out)
        print(f"wrote {args.out}: {len(toks)} x {hp['vocab']} float32")
    if args.compare:
        ours = np.fromfile(args.compare, dtype="<f4")
        if ours.size != ref.size:
            sys.exit(f"{args.compare}: {ours.size} floats, expected {len(toks)} x {hp['vocab']} = {ref.size}")
        worst = compare(ours.reshape(ref.shape).astype(np.float64), ref)
        if args.tol is not None and worst > args.tol:
            print(f"FAIL: max rel err {worst:.3e} > tol {args.tol:.1e}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
