#!/usr/bin/env python3
"""gen_kquant_fixtures.py - writes tests/fixtures/kquant_dequant.bin: random raw blocks of ggml's Q4_K,
Q5_K, Q6_K and IQ4_NL with their dequantization by the `gguf` Python package (gguf.quants, numpy code
that the llama.cpp project keeps identical to ggml's C dequantizers). tests/test_kquant.c requires our
q4_K / q5_K / q6_K / iq4_nl to_float to give the same floats bit for bit (the layouts are ggml's, so a
GGUF tensor of these types is imported and exported byte for byte).

Layout (little-endian), as tests/fixtures/gguf/dequant.bin: b"LMPDQ1\\0\\0", u32 n_records, then per
record: u32 ggml_type, u32 n_blocks, u32 raw_bytes, raw blocks, f32 values[n_blocks * block_size].

Usage: python3 scripts/gen_kquant_fixtures.py [output path]
"""
import struct
import sys

import numpy as np
import gguf
from gguf.constants import GGMLQuantizationType as QT


def f16(vals):
    return np.asarray(vals, dtype=np.float16).view(np.uint8)


def random_block(rng, qt):
    """One raw block: random code and scale bytes, fp16 super-scales spread over magnitudes with sign."""
    blk, tsz = gguf.GGML_QUANT_SIZES[qt]
    raw = rng.integers(0, 256, tsz, dtype=np.uint8)
    scales = (10.0 ** rng.uniform(-4, 0, 2)) * rng.choice([-1.0, 1.0], 2)
    if qt in (QT.Q4_K, QT.Q5_K):
        raw[0:4] = f16(scales)  # d, dmin
    elif qt == QT.Q6_K:
        raw[208:210] = f16(scales[:1])
    else:  # IQ4_NL
        raw[0:2] = f16(scales[:1])
    return raw


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/kquant_dequant.bin"
    rng = np.random.default_rng(20261202)
    recs = []
    for qt, nb, d_at in ((QT.Q4_K, 12, (0, 2)), (QT.Q5_K, 12, (0, 2)), (QT.Q6_K, 12, (208,)), (QT.IQ4_NL, 48, (0,))):
        raw = np.stack([random_block(rng, qt) for _ in range(nb)])
        for off in d_at:  # block 1: zero scales; block 2: subnormal scales
            raw[1, off:off + 2] = f16([0.0])
            raw[2, off:off + 2] = f16([-3.0e-6])
        vals = gguf.quants.dequantize(raw.reshape(-1), qt).astype(np.float32).reshape(-1)
        assert vals.size == nb * gguf.GGML_QUANT_SIZES[qt][0] and np.all(np.isfinite(vals))
        recs.append(struct.pack("<III", int(qt), nb, raw.size) + raw.tobytes() + vals.astype("<f4").tobytes())
    with open(out, "wb") as f:
        f.write(b"LMPDQ1\0\0" + struct.pack("<I", len(recs)) + b"".join(recs))
    print(f"wrote {out}: {len(recs)} records")


if __name__ == "__main__":
    main()
