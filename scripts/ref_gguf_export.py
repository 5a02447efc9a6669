#!/usr/bin/env python3
"""ref_gguf_export.py - reads the GGUF files that `lmpress export --gguf` writes with an independent reader
(the `gguf` Python package: gguf.GGUFReader and gguf.quants.dequantize) and records what it sees in
tests/fixtures/gguf/export_ref.txt, which tests/test_gguf_export.c compares with our export of the same
inputs (the export is deterministic, so the file gguf-py read is the file the test writes again).

For each case (a model path in tests/fixtures, exported by build/lmpress into a temporary directory):
    case NAME SOURCE [TOKENIZER]
    file SIZE CRC32 MD5                                  of the whole exported file
    gguf version=V tensors=N kv=K alignment=A data_offset=D
    kv KEY TYPE VALUE...                                 every metadata entry, in file order:
        integer types: the value in decimal; bool: 0/1; f32/f64: the bits in hex (0x...);
        string: LEN CRC32 then the text (escaped, up to 60 bytes) for the reader;
        array:ELEM COUNT CRC32 [v1,v2,...]: CRC32 of the elements as GGUF encodes them (numbers little-
        endian; strings u64 length + bytes); numeric arrays of up to 4096 elements also list the values
        (integers in decimal, floats as hex bits)
    tensor NAME TYPE ne=NE0,NE1 offset=ABS nbytes=B raw=CRC32 deq=CRC32 [hf=CRC32]
        raw: CRC32 of the stored bytes; deq: CRC32 of gguf-py's dequantization as little-endian f32 in
        the file's order; hf (attn_q / attn_k only): the same after undoing llama.cpp's RoPE row
        permutation (LlamaModel.permute, with the layer's head count), i.e. in the Hugging Face
        (rotate-half) row order that a "neox" source holds
    end

Usage: scripts/ref_gguf_export.py [--lmpress build/lmpress] [--out tests/fixtures/gguf/export_ref.txt]
Run from the repository root after `make`.
"""
import argparse
import hashlib
import importlib.metadata
import os
import struct
import subprocess
import sys
import tempfile
import zlib

import numpy as np

try:
    import gguf
    from gguf import GGUFValueType as VT
except ImportError:  # pragma: no cover
    sys.exit("ref_gguf_export.py needs the gguf package: python3 -m pip install gguf")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ref_gguf_llama import unpermute  # noqa: E402  (llama.cpp's permutation, inverted)

CASES = [
    ("tiny", "tests/fixtures/gguf/tiny.gguf", None),  # mixed q8_0/q4_0/q4_1/f16/bf16/f32, gpt2 tokenizer
    ("hf_tiny_gqa", "tests/fixtures/hf_tiny_gqa", None),  # neox rows (permuted on export), GQA, no tokenizer
    ("hf_tiny_sharded", "tests/fixtures/hf_tiny_sharded", None),  # bf16, two shards, tokenizer.json (BPE)
    ("llama2c_tiny_v1", "tests/fixtures/llama2c/tiny_v1.bin", "tests/fixtures/llama2c/tokenizer.bin"),  # llama vocab
]

SCALAR_FMT = {VT.UINT8: "<B", VT.INT8: "<b", VT.UINT16: "<H", VT.INT16: "<h", VT.UINT32: "<I", VT.INT32: "<i",
              VT.FLOAT32: "<f", VT.BOOL: "<?", VT.UINT64: "<Q", VT.INT64: "<q", VT.FLOAT64: "<d"}
TYPE_NAME = {VT.UINT8: "u8", VT.INT8: "i8", VT.UINT16: "u16", VT.INT16: "i16", VT.UINT32: "u32", VT.INT32: "i32",
             VT.FLOAT32: "f32", VT.BOOL: "bool", VT.STRING: "string", VT.UINT64: "u64", VT.INT64: "i64",
             VT.FLOAT64: "f64"}


def crc(b):
    return f"0x{zlib.crc32(b) & 0xffffffff:08x}"


def scalar_text(vt, v):
    if vt == VT.FLOAT32:
        return f"0x{struct.unpack('<I', struct.pack('<f', float(v)))[0]:08x}"
    if vt == VT.FLOAT64:
        return f"0x{struct.unpack('<Q', struct.pack('<d', float(v)))[0]:016x}"
    if vt == VT.BOOL:
        return "1" if bool(v) else "0"
    return str(int(v))


def escape(b):
    s = b[:60].decode("utf-8", "replace")
    return "".join(c if c.isprintable() and c not in " \\" else f"\\x{ord(c):02x}" for c in s)


def kv_line(key, field):
    vt = VT(field.types[0])
    if vt == VT.STRING:
        b = bytes(field.parts[field.data[0]])
        return f"kv {key} string {len(b)} {crc(b)} {escape(b)}"
    if vt != VT.ARRAY:
        return f"kv {key} {TYPE_NAME[vt]} {scalar_text(vt, field.parts[field.data[0]][0])}"
    et = VT(field.types[1])
    items = [field.parts[i] for i in field.data]
    if et == VT.STRING:
        enc = b"".join(struct.pack("<Q", len(bytes(p))) + bytes(p) for p in items)
        return f"kv {key} array:string {len(items)} {crc(enc)}"
    vals = [p[0] for p in items]
    enc = b"".join(struct.pack(SCALAR_FMT[et], v.item() if hasattr(v, "item") else v) for v in vals)
    line = f"kv {key} array:{TYPE_NAME[et]} {len(vals)} {crc(enc)}"
    if len(vals) <= 4096:
        line += " " + ",".join(scalar_text(et, v) for v in vals)
    return line


def field_int(reader, key, layer):
    f = reader.fields.get(key)
    if f is None:
        return None
    vals = [f.parts[i][0] for i in f.data]
    return int(vals[layer] if len(vals) > 1 else vals[0])


def describe(path, name, src, tok):
    data = open(path, "rb").read()
    r = gguf.GGUFReader(path)
    out = [f"case {name} {src}" + (f" {tok}" if tok else ""),
           f"file {len(data)} {crc(data)} {hashlib.md5(data).hexdigest()}"]
    kvs = [(k, f) for k, f in r.fields.items() if not k.startswith("GGUF.")]
    version = int(r.fields["GGUF.version"].parts[-1][0])
    out.append(f"gguf version={version} tensors={len(r.tensors)} kv={len(kvs)} alignment={r.alignment} "
               f"data_offset={r.data_offset}")
    out += [kv_line(k, f) for k, f in kvs]
    for t in r.tensors:
        raw = np.ascontiguousarray(t.data).view(np.uint8).tobytes()
        deq = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype="<f4")
        ne = [int(x) for x in t.shape]
        line = (f"tensor {t.name} {t.tensor_type.name.lower()} ne={','.join(map(str, ne))} offset={t.data_offset} "
                f"nbytes={t.n_bytes} raw={crc(raw)} deq={crc(deq.tobytes())}")
        parts = t.name.split(".")
        if len(parts) == 4 and parts[0] == "blk" and parts[2] in ("attn_q", "attn_k"):
            heads = field_int(r, "llama.attention.head_count" + ("_kv" if parts[2] == "attn_k" else ""), int(parts[1]))
            if parts[2] == "attn_k" and heads is None:
                heads = field_int(r, "llama.attention.head_count", int(parts[1]))
            rows = deq.reshape(ne[1], ne[0])
            line += f" hf={crc(np.ascontiguousarray(unpermute(rows, heads)).astype('<f4').tobytes())}"
        out.append(line)
    out.append("end")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lmpress", default="build/lmpress")
    ap.add_argument("--out", default="tests/fixtures/gguf/export_ref.txt")
    a = ap.parse_args()
    lines = ["# export_ref.txt - written by scripts/ref_gguf_export.py (do not edit): GGUF files written by",
             "# `lmpress export SOURCE --gguf` as read by gguf-py %s (GGUFReader, gguf.quants.dequantize)." %
             importlib.metadata.version("gguf")]
    with tempfile.TemporaryDirectory() as tmp:
        for name, src, tok in CASES:
            path = os.path.join(tmp, name + ".gguf")
            cmd = [a.lmpress, "export", src, "--gguf", "-o", path] + (["--tokenizer", tok] if tok else [])
            subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
            lines += describe(path, name, src, tok)
            print(f"{name}: {os.path.getsize(path)} bytes")
    with open(a.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
