#!/usr/bin/env python3
"""make_import_fixtures.py - writes the small importer fixtures under tests/fixtures/ (committed; CI does
not run this script). Independent of the C code: numpy, the `safetensors` and `tokenizers` packages and
h5py write the files, and each file is read back with those libraries before the script finishes.

  tests/fixtures/hf_tiny_gqa/       config.json + model.safetensors (F32, written by safetensors.numpy):
                                    Llama, dim 64, 2 layers, 4 heads, 2 KV heads, head_dim 16, FFN 96,
                                    vocab 96, 64 positions, untied lm_head. Also the input of the lead's
                                    logits reference: keep it stable (fixed seed).
  tests/fixtures/hf_tiny_sharded/   the same layer weights rounded to BF16 (hand-written safetensors),
                                    2 shards + model.safetensors.index.json, tied embeddings (an lm_head
                                    equal to the embeddings is present and must be dropped), a rotary
                                    inv_freq buffer (must be ignored), vocab = the tokenizer's size, and a
                                    byte-level BPE tokenizer.json trained on tinyshakespeare (merges in
                                    the ["a", "b"] pair form). Embedding rows < 96 equal hf_tiny_gqa's.
  tests/fixtures/hf_tokenizer_legacy_merges.json
                                    the same tokenizer with merges in the older "a b" string form.
  tests/fixtures/hf_tiny_sharded_tokens.txt
                                    texts and the ids the tokenizers library gives them (one line each:
                                    ids separated by spaces, a tab, the text with \\n escaped; no
                                    special-token text, which runtime/tokenizer.h encodes as plain text).
  tests/fixtures/tiny.h5            hand-made HDF5 checkpoint following docs/hdf5.md (h5py), with
                                    metadata of every type and f16 / bf16 / f32 / f64 tensors whose values
                                    follow a formula the C test recomputes exactly.

usage: python3 scripts/make_import_fixtures.py [--shared ../shared]
"""
import argparse
import json
import os
import struct

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures")

# ---- the tiny HF Llama ----
DIM, LAYERS, HEADS, KV_HEADS, HEAD_DIM, FFN, VOCAB, CTX = 64, 2, 4, 2, 16, 96, 96, 64


def tiny_llama_weights(seed=1234):
    """HF names -> float32 arrays, (out, in) layout. Linear and embedding weights ~ N(0, 0.1^2),
    RMSNorm weights ~ 1 + N(0, 0.1^2)."""
    rng = np.random.default_rng(seed)
    w = {}

    def lin(o, i):
        return (rng.standard_normal((o, i)) * 0.1).astype(np.float32)

    def norm(n):
        return (1.0 + rng.standard_normal(n) * 0.1).astype(np.float32)

    w["model.embed_tokens.weight"] = lin(VOCAB, DIM)
    for l in range(LAYERS):
        p = f"model.layers.{l}."
        w[p + "input_layernorm.weight"] = norm(DIM)
        w[p + "self_attn.q_proj.weight"] = lin(HEADS * HEAD_DIM, DIM)
        w[p + "self_attn.k_proj.weight"] = lin(KV_HEADS * HEAD_DIM, DIM)
        w[p + "self_attn.v_proj.weight"] = lin(KV_HEADS * HEAD_DIM, DIM)
        w[p + "self_attn.o_proj.weight"] = lin(DIM, HEADS * HEAD_DIM)
        w[p + "post_attention_layernorm.weight"] = norm(DIM)
        w[p + "mlp.gate_proj.weight"] = lin(FFN, DIM)
        w[p + "mlp.up_proj.weight"] = lin(FFN, DIM)
        w[p + "mlp.down_proj.weight"] = lin(DIM, FFN)
    w["model.norm.weight"] = norm(DIM)
    w["lm_head.weight"] = lin(VOCAB, DIM)
    return w


def llama_config(vocab, tied, torch_dtype):
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": DIM,
        "intermediate_size": FFN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "head_dim": HEAD_DIM,
        "vocab_size": vocab,
        "max_position_embeddings": CTX,
        "rms_norm_eps": 1e-05,
        "rope_theta": 10000.0,
        "rope_scaling": None,
        "tie_word_embeddings": tied,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": torch_dtype,
    }


def f32_to_bf16_bits(a):
    """Round to nearest even, as format/lmp_types.h's lmp_f32_to_bf16 (no NaNs here)."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def write_safetensors(path, tensors, metadata=None):
    """Hand-written safetensors: tensors is a list of (name, dtype string, shape, raw bytes)."""
    header, off = {}, 0
    if metadata:
        header["__metadata__"] = metadata
    for name, dt, shape, raw in tensors:
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)  # pad as the reference writer does
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for _, _, _, raw in tensors:
            f.write(raw)


def make_hf_gqa(w):
    from safetensors.numpy import load_file, save_file

    d = os.path.join(FIX, "hf_tiny_gqa")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(llama_config(VOCAB, False, "float32"), f, indent=2)
        f.write("\n")
    save_file(w, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    back = load_file(os.path.join(d, "model.safetensors"))
    assert set(back) == set(w) and all(np.array_equal(back[k], w[k]) for k in w)


def train_tokenizer(shared, target=300):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    text = open(os.path.join(shared, "data", "tinyshakespeare", "input.txt"), encoding="utf-8").read()[:20000]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=target, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([text], trainer)
    return tok


def make_hf_sharded(w, shared):
    from safetensors import deserialize
    from tokenizers import Tokenizer

    d = os.path.join(FIX, "hf_tiny_sharded")
    os.makedirs(d, exist_ok=True)
    tok = train_tokenizer(shared)
    tj = json.loads(tok.to_str())
    vocab = tok.get_vocab_size(with_added_tokens=True)
    assert vocab >= VOCAB
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        f.write(tok.to_str(pretty=True))
        f.write("\n")
    # The same tokenizer with merges in the legacy "a b" string form.
    merges = tj["model"]["merges"]
    if merges and isinstance(merges[0], list):
        tj["model"]["merges"] = [" ".join(m) for m in merges]
    legacy = json.dumps(tj, indent=2, ensure_ascii=False)
    with open(os.path.join(FIX, "hf_tokenizer_legacy_merges.json"), "w", encoding="utf-8") as f:
        f.write(legacy + "\n")
    tok2 = Tokenizer.from_str(legacy)
    texts = ["Hello world 123", "First Citizen:\nBefore we proceed any further, hear me speak.",
             "You are all resolved rather to die than to famish?", " caf\u00e9 \u20ac 2024!\n\n  x"]
    with open(os.path.join(FIX, "hf_tiny_sharded_tokens.txt"), "w", encoding="utf-8") as f:
        for t in texts:
            ids = tok.encode(t).ids
            assert ids == tok2.encode(t).ids
            f.write(" ".join(map(str, ids)) + "\t" + t.replace("\\", "\\\\").replace("\n", "\\n") + "\n")

    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(llama_config(vocab, True, "bfloat16"), f, indent=2)
        f.write("\n")
    rng = np.random.default_rng(99)
    emb = np.concatenate([w["model.embed_tokens.weight"],
                          (rng.standard_normal((vocab - VOCAB, DIM)) * 0.1).astype(np.float32)])
    ws = dict(w)
    ws["model.embed_tokens.weight"] = emb
    ws["lm_head.weight"] = emb  # tied, present and equal: the importer drops it
    names = list(ws)
    half = len(names) // 2
    shards = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
    inv_freq = (1.0 / (10000.0 ** (np.arange(0, HEAD_DIM, 2, dtype=np.float32) / HEAD_DIM))).astype(np.float32)
    weight_map = {}
    for fname, members in shards.items():
        ts = [(n, "BF16", ws[n].shape, f32_to_bf16_bits(ws[n]).tobytes()) for n in members]
        if fname.startswith("model-00002"):
            ts.append(("model.layers.1.self_attn.rotary_emb.inv_freq", "F32", inv_freq.shape, inv_freq.tobytes()))
        write_safetensors(os.path.join(d, fname), ts, {"format": "pt"})
        raw = open(os.path.join(d, fname), "rb").read()
        got = dict(deserialize(raw))
        assert set(got) == {t[0] for t in ts}
        for n, dt, shape, b in ts:
            assert list(got[n]["shape"]) == list(shape) and bytes(got[n]["data"]) == b
            weight_map[n] = fname
    total = sum(ws[n].size * 2 for n in names)
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, f, indent=2)
        f.write("\n")


# ---- tiny.h5 (docs/hdf5.md) ----
H_DIM, H_LAYERS, H_HEADS, H_KV, H_FF, H_VOCAB, H_CTX = 32, 2, 4, 2, 48, 64, 32


def h5_value(k, i):
    """Element i of tensor number k: n/256 with |n| <= 50, exact in f16, bf16, f32 and f64. The C test
    recomputes it (tests/test_import.c, h5_value)."""
    return ((i * 37 + k * 11) % 101 - 50) / 256.0


def make_tiny_h5():
    import h5py

    path = os.path.join(FIX, "tiny.h5")
    if os.path.exists(path):
        os.remove(path)
    hd = H_DIM // H_HEADS
    shapes = [("token_embd.weight", (H_VOCAB, H_DIM))]
    for l in range(H_LAYERS):
        p = f"blk.{l}."
        shapes += [(p + "attn_norm.weight", (H_DIM,)), (p + "attn_q.weight", (H_HEADS * hd, H_DIM)),
                   (p + "attn_k.weight", (H_KV * hd, H_DIM)), (p + "attn_v.weight", (H_KV * hd, H_DIM)),
                   (p + "attn_output.weight", (H_DIM, H_HEADS * hd)), (p + "ffn_norm.weight", (H_DIM,)),
                   (p + "ffn_gate.weight", (H_FF, H_DIM)), (p + "ffn_down.weight", (H_DIM, H_FF)),
                   (p + "ffn_up.weight", (H_FF, H_DIM))]
    shapes += [("output_norm.weight", (H_DIM,)), ("output.weight", (H_VOCAB, H_DIM))]

    pieces = ["<unk>", "<s>", "</s>", " ", "."] + [chr(c) for c in range(ord("a"), ord("z") + 1)]
    pieces += [" t", "th", "he", " the", " a", "in", "er", "an", " s", "ou", " w", "nd", "ed", " h", "at", "en",
               " o", "on", "es", "is", " b", " c", " m", "or", "it", "ar", " and", " f", "ll", "ing", "ly", " d", "le"]
    pieces = pieces[:H_VOCAB]
    assert len(pieces) == H_VOCAB and len(set(pieces)) == H_VOCAB
    types = np.array([2, 3, 3] + [1] * (H_VOCAB - 3), dtype=np.int32)
    scores = np.array([0.0, 0.0, 0.0] + [-float(i) for i in range(H_VOCAB - 3)], dtype=np.float32)

    str_t = h5py.string_dtype("utf-8")
    with h5py.File(path, "w", track_order=True) as f:
        a = f.attrs
        a["lmpress_hdf5_version"] = np.uint32(1)
        a.create("general.architecture", "llama", dtype=str_t)
        a.create("general.name", "tiny h5 \u00e9", dtype=str_t)
        for k, v in [("llama.context_length", H_CTX), ("llama.embedding_length", H_DIM),
                     ("llama.block_count", H_LAYERS), ("llama.feed_forward_length", H_FF),
                     ("llama.attention.head_count", H_HEADS), ("llama.attention.head_count_kv", H_KV),
                     ("llama.attention.head_dim", hd), ("llama.rope.dimension_count", hd),
                     ("llama.vocab_size", H_VOCAB), ("tokenizer.bos_id", 1), ("tokenizer.eos_id", 2)]:
            a[k] = np.uint32(v)
        a["llama.attention.layer_norm_rms_epsilon"] = np.float32(1e-5)
        a["llama.rope.freq_base"] = np.float32(10000.0)
        a.create("llama.rope.style", "interleaved", dtype=str_t)
        a.create("tokenizer.model", "llama", dtype=str_t)
        a["tokenizer.add_bos"] = np.bool_(True)
        a["tokenizer.add_space_prefix"] = np.bool_(True)
        a["test.i32"] = np.int32(-123456)
        a["test.u64"] = np.uint64(2**40 + 3)
        a["test.i64"] = np.int64(-(2**40) - 5)
        a["test.f64"] = np.float64(0.1)
        a["test.false"] = np.bool_(False)
        a["test.fixed_str"] = np.bytes_(b"fixed-length")  # fixed-length ASCII string attribute
        m = f.create_group("metadata", track_order=True)
        m.create_dataset("tokenizer.tokens", data=np.array(pieces, dtype=object), dtype=str_t)
        m.create_dataset("tokenizer.scores", data=scores)
        m.create_dataset("tokenizer.token_type", data=types)
        m.create_dataset("test.u64_array", data=np.array([0, 1, 2**63 + 7], dtype=np.uint64))
        m.create_dataset("test.f64_array", data=np.array([0.5, -1e300], dtype=np.float64))
        m.create_dataset("test.bool_array", data=np.array([True, False, True]))
        m.create_dataset("test.empty_array", shape=(0,), dtype=np.int32)
        m.create_dataset("test.fixed_str_array", data=np.array([b"ab", b"cde"], dtype="S4"))
        t = f.create_group("tensors", track_order=True)
        for k, (name, shape) in enumerate(shapes):
            n = int(np.prod(shape))
            vals = np.array([h5_value(k, i) for i in range(n)], dtype=np.float64).reshape(shape)
            if name.endswith("_norm.weight"):
                vals = vals + 1.0
            if name == "token_embd.weight":
                t.create_dataset(name, data=vals.astype(np.float16))
            elif name == "blk.0.attn_q.weight":
                ds = t.create_dataset(name, data=f32_to_bf16_bits(vals.astype(np.float32)))
                ds.attrs.create("lmp_dtype", "bf16", dtype=str_t)
            elif name == "output_norm.weight":
                t.create_dataset(name, data=vals)  # float64: the importer converts to f32
            else:
                ds = t.create_dataset(name, data=vals.astype(np.float32))
                if name == "output.weight":
                    ds.attrs.create("dequantized_from", "q8_0", dtype=str_t)
    with h5py.File(path, "r") as f:
        assert list(f["tensors"].keys())[0] == "token_embd.weight"
        assert f["tensors/token_embd.weight"].dtype == np.float16
        assert bool(f.attrs["tokenizer.add_bos"]) is True


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"))
    args = ap.parse_args()
    w = tiny_llama_weights()
    make_hf_gqa(w)
    make_hf_sharded(w, args.shared)
    make_tiny_h5()
    for dp, _, fs in os.walk(FIX):
        for fn in sorted(fs):
            p = os.path.join(dp, fn)
            if "hf_" in p or p.endswith(".h5"):
                print(f"{os.path.relpath(p, ROOT)}: {os.path.getsize(p)} bytes")


if __name__ == "__main__":
    main()
