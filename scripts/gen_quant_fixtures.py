#!/usr/bin/env python3
"""gen_quant_fixtures.py - writes tests/fixtures/quant_ggml.bin: inputs and their encodings and decodings,
for every lmpress type whose layout is ggml's (docs/format.md: f32, f16, bf16, q8_0, q4_0, q4_1), as
computed by the `gguf` Python package (gguf.quants), an independent numpy implementation that the llama.cpp
project keeps bit-exact with ggml's C reference (BF16 is ggml_compute_fp32_to_bf16; F16 is numpy's
round-to-nearest-even conversion, which is what ggml's F16C path and its scalar fallback compute).

tests/test_quant.c reads the file (CI has no numpy) and requires lmpress's from_float_ref to produce the
same bytes and to_float the same floats (bit for bit; for the 4-bit and 8-bit types a NaN decodes to NaN
of either sign).

Not covered: f16 of a NaN input. ggml itself gives different halves for it (F16C keeps the top payload
bits and quiets the NaN, the scalar fallback returns 0x7e00, numpy keeps the payload without quieting);
lmpress returns a quiet NaN with the sign kept (tests/test_quant.c test_fp16_exhaustive). The other types'
NaN inputs are included.

Layout (little-endian):
    u8[8]  magic "LMPQFIX2"
    u32    n_records
    then per record:
    u32    ggml type (0 f32, 1 f16, 30 bf16, 8 q8_0, 2 q4_0, 3 q4_1)
    u32    n               number of elements (a multiple of 32)
    f32    x[n]            inputs
    u32    nbytes          size of the encoding
    u8     enc[nbytes]     gguf.quants.quantize(x)
    f32    deq[n]          gguf.quants.dequantize(enc)

Usage: python3 scripts/gen_quant_fixtures.py [output path]
"""
import struct
import sys
import warnings

import numpy as np
from gguf import quants
from gguf.constants import GGMLQuantizationType as QT


def blocks(rng):
    """Blocks of 32 for q8_0 / q4_0 / q4_1 (unchanged from LMPQFIX1)."""
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
    return np.array(out, dtype=np.float32).reshape(-1)


def random_bits(rng, n, finite):
    """n floats with uniformly random bit patterns (every exponent equally likely)."""
    u = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    f = u.view(np.float32)
    if finite:
        f = np.where(np.isfinite(f), f, np.float32(1.5))
    return f.astype(np.float32)


def pad32(x):
    x = np.asarray(x, dtype=np.float32).reshape(-1)
    return np.concatenate([x, np.zeros((-len(x)) % 32, dtype=np.float32)])


def half_values(h):
    return np.asarray(h, dtype=np.uint16).view(np.float16).astype(np.float32)


def f16_inputs(rng):
    parts = [random_bits(rng, 1024, finite=True)]  # any magnitude: overflow to inf, underflow to 0
    parts.append(rng.uniform(-70000, 70000, 512).astype(np.float32))  # around the half range
    parts.append((rng.uniform(-1, 1, 512) * 2.0 ** rng.integers(-27, -12, 512)).astype(np.float32))  # subnormal halves
    # exact midpoints between adjacent finite halves (normal and subnormal): ties go to even
    h = rng.integers(0, 0x7BFF, 768).astype(np.uint16)
    mid = (half_values(h).astype(np.float64) + half_values(h + 1).astype(np.float64)) / 2
    sign = np.where(rng.integers(0, 2, 768) == 1, -1.0, 1.0)
    parts.append((mid * sign).astype(np.float32))
    parts.append(half_values(rng.integers(0, 0x7C00, 256).astype(np.uint16)))  # exact halves stay exact
    special = [0.0, -0.0, np.inf, -np.inf, 65504.0, 65519.99, 65520.0, -65520.0, 2.0**-24, 2.0**-25,
               1.5 * 2.0**-25, 2.0**-26, 6.097555e-05, 6.1035156e-05, 3.4e38, 1.1754944e-38, 1e-45, -1e-45]
    parts.append(np.array(special, dtype=np.float32))
    return pad32(np.concatenate(parts))


def bf16_inputs(rng):
    parts = [random_bits(rng, 1024, finite=False)]  # NaN (quiet, signalling, both signs), inf included
    r = random_bits(rng, 1024, finite=False).view(np.uint32)
    parts.append(((r & np.uint32(0xFFFF0000)) | np.uint32(0x8000)).view(np.float32))  # exact ties
    parts.append((rng.standard_normal(256) * 2.0 ** -130).astype(np.float32))  # f32 subnormals
    special = np.array([0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7F7F8000, 0x7F7F7FFF, 0x7F7FFFFF,
                        0x7F800001, 0xFF800001, 0x7FC00000, 0xFFC00000, 0x7FFFFFFF, 0x00008000, 0x00018000,
                        0x00000001, 0x3F808000, 0x3F818000], dtype=np.uint32).view(np.float32)
    parts.append(special)
    return pad32(np.concatenate(parts))


def f32_inputs(rng):
    special = np.array([0x7F800001, 0xFFC00001, 0x7FFFFFFF, 0x00000001, 0x80000000], dtype=np.uint32).view(np.float32)
    return pad32(np.concatenate([random_bits(rng, 512, finite=False), special]))


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/quant_ggml.bin"
    rng = np.random.default_rng(20261123)
    qx = blocks(rng)
    rng2 = np.random.default_rng(20270101)
    records = [(QT.Q8_0, qx), (QT.Q4_0, qx), (QT.Q4_1, qx), (QT.F32, f32_inputs(rng2)),
               (QT.F16, f16_inputs(rng2)), (QT.BF16, bf16_inputs(rng2))]
    parts = [b"LMPQFIX2", struct.pack("<I", len(records))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # overflow to inf (fp16 scales, f16 values) is intended
        for qt, x in records:
            assert len(x) % 32 == 0
            enc = np.ascontiguousarray(quants.quantize(x, qt)).view(np.uint8).reshape(-1)
            deq = np.asarray(quants.dequantize(enc, qt), dtype=np.float32).reshape(-1)
            assert len(deq) == len(x)
            parts += [struct.pack("<II", int(qt), len(x)), x.astype("<f4").tobytes(), struct.pack("<I", len(enc)),
                      enc.tobytes(), deq.astype("<f4").tobytes()]
            print(f"  {qt.name}: {len(x)} values, {len(enc)} bytes encoded")
    data = b"".join(parts)
    with open(path, "wb") as f:
        f.write(data)
    print(f"{path}: {len(records)} records, {len(data)} bytes")


if __name__ == "__main__":
    main()
