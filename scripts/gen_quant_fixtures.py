#!/usr/bin/env python3
"""gen_quant_fixtures.py - writes tests/fixtures/quant_ggml.bin: input blocks and their Q8_0 / Q4_0 / Q4_1
encodings and decodings as computed by the `gguf` Python package (gguf.quants), an independent numpy
implementation that the llama.cpp project keeps bit-exact with ggml's C reference quantizers.

tests/test_quant.c reads the file (CI has no numpy) and requires lmpress's q8_0 / q4_0 / q4_1 codecs to
produce the same bytes and the same dequantized floats.

Layout (little-endian):
    u8[8]  magic "LMPQFIX1"
    u32    n_blocks (N)
    f32    x[N * 32]            inputs
    u8     q8_0[N * 34]         gguf.quants.Q8_0 of x
    u8     q4_0[N * 18]
    u8     q4_1[N * 20]
    f32    deq_q8_0[N * 32]     gguf's dequantization of the bytes above
    f32    deq_q4_0[N * 32]
    f32    deq_q4_1[N * 32]

Usage: python3 scripts/gen_quant_fixtures.py [output path]
"""
import struct
import sys
import warnings

import numpy as np
from gguf import quants
from gguf.constants import GGMLQuantizationType as QT


def blocks():
    rng = np.random.default_rng(20261123)
    out = []
    for scale in (1e-4, 0.01, 0.1, 1.0, 30.0):  # Gaussian at several magnitudes
        for _ in range(4):
            out.append(rng.standard_normal(32) * scale)
    for _ in range(4):  # uniform, shifted (q4_1's minimum away from zero)
        out.append(rng.uniform(-0.2, 1.3, 32))
    for _ in range(4):  # heavy tails: Student-t with 2 degrees of freedom
        out.append(rng.standard_t(2, 32) * 0.05)
    out.append(np.zeros(32))  # all zero: d = 0, id = 0
    one = np.zeros(32)
    one[17] = -3.0
    out.append(one)  # a single nonzero
    # q8_0 ties: amax = 127 gives d = 1 exactly, so x + 0.5 values test roundf's half-away-from-zero
    ties = np.arange(32) - 16 + 0.5
    ties[0] = 127.0
    out.append(ties)
    out.append(-ties)
    # q4_0 ties: max = -8 gives d = 1, id = 1: x * id + 8.5 lands on integers and halves
    t4 = (np.arange(32) % 16) - 8.0 + (np.arange(32) // 16) * 0.5
    t4[5] = -8.0
    out.append(t4)
    # equal magnitudes of both signs: the first one encountered sets q4_0's signed maximum
    eq = rng.standard_normal(32) * 0.1
    eq[3], eq[20] = 0.9, -0.9
    out.append(eq)
    eq2 = eq.copy()
    eq2[3], eq2[20] = -0.9, 0.9
    out.append(eq2)
    # fp16 edge cases: scale below the smallest normal half, and a scale that overflows to inf in q4_0
    out.append(rng.standard_normal(32) * 1e-6)
    out.append(rng.standard_normal(32) * 2e5)
    # constant block (q4_1: max == min, d = 0)
    out.append(np.full(32, 0.37))
    # integers (exactly representable steps)
    out.append(rng.integers(-8, 8, 32).astype(np.float64))
    return np.array(out, dtype=np.float32)


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/quant_ggml.bin"
    x = blocks()
    n = x.shape[0]
    parts = [b"LMPQFIX1", struct.pack("<I", n), x.astype("<f4").tobytes()]
    enc = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fp16 overflow of the 2e5 block is intended
        for name, qt in (("q8_0", QT.Q8_0), ("q4_0", QT.Q4_0), ("q4_1", QT.Q4_1)):
            enc[name] = quants.quantize(x, qt)
            parts.append(enc[name].tobytes())
        for name, qt in (("q8_0", QT.Q8_0), ("q4_0", QT.Q4_0), ("q4_1", QT.Q4_1)):
            parts.append(quants.dequantize(enc[name], qt).astype("<f4").tobytes())
    data = b"".join(parts)
    with open(path, "wb") as f:
        f.write(data)
    print(f"{path}: {n} blocks, {len(data)} bytes")


if __name__ == "__main__":
    main()
