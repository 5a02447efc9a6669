#!/usr/bin/env python3
"""ref_gptq.py - an independent NumPy GPTQ on a small random problem, for tests/test_gptq.c.

Written from the paper (Frantar et al. 2022, Algorithm 1) in float64, without lazy batching: after each
column is quantized, every later column gets its full update at once. The quantizer is our storage
format (docs/format.md): per row and group of G consecutive columns, the reference RTN scale (q8_0:
amax/127; q4_0: first-largest signed value / -8; q4_1: (max - min)/15 and min) rounded to fp16 before the
codes are chosen. Without act-order a group's scale comes from the current (updated) weights when the
sweep reaches its first column; with act-order (columns by decreasing H_ii) every group's scale is fixed
up front from the original weights ("static groups"), since our blocks are groups of the original order.

Writes tests/fixtures/gptq/gptq_ref.bin (little-endian):
  "LMPGPTQ1" | u32 rows | u32 cols | u32 n_cases | u32 0 | W f32 (rows, cols) | H f32 (cols, cols) |
  n_cases x { u32 dtype | u32 act_order | f32 damp | u32 0 | f64 loss_gptq | f64 loss_rtn }
where loss = tr((W - Q) H (W - Q)^T) with the undampened H (= 2/N ||X W^T - X Q^T||^2), H = 2/N X^T X of
correlated inputs X (N, cols). dtype values are lmp_dtype's (format/lmp_types.h).

Usage: python3 scripts/ref_gptq.py [--out tests/fixtures/gptq/gptq_ref.bin] [--seed 1]
"""
import argparse
import os
import struct

import numpy as np

Q8_0, Q4_0, Q4_1, Q4_1_G64 = 3, 4, 5, 8
FMT = {Q8_0: ("sym8", 32), Q4_0: ("sym4", 32), Q4_1: ("asym4", 32), Q4_1_G64: ("asym4", 64)}


def f16(x):
    return float(np.float16(np.float32(x)))


def group_params(kind, x):
    """(d, m) of one group, rounded to fp16 as stored."""
    if kind == "sym4":
        i = int(np.argmax(np.abs(x)))  # first largest magnitude, keeping its sign
        return f16(np.float32(x[i]) / np.float32(-8.0)), 0.0
    if kind == "asym4":
        lo, hi = np.float32(x.min()), np.float32(x.max())
        return f16((hi - lo) / np.float32(15.0)), f16(lo)
    return f16(np.float32(np.abs(x).max()) / np.float32(127.0)), 0.0


def quantize(kind, x, d, m):
    """Dequantized values of x (a column slice) for per-row (d, m)."""
    inv = np.where(d != 0, 1.0 / np.where(d != 0, d, 1.0), 0.0)
    if kind == "sym8":
        return np.clip(np.round(x * inv), -128, 127) * d
    if kind == "sym4":
        return (np.clip(np.floor(x * inv + 8.5), 0, 15) - 8) * d
    return np.clip(np.floor((x - m) * inv + 0.5), 0, 15) * d + m


def rtn(kind, G, W):
    """Plain round-to-nearest exactly as qtypes.c's reference quantizers: codes from the float32 scale,
    values from the stored fp16 scale (and minimum)."""
    Q = np.empty_like(W)
    for r in range(W.shape[0]):
        for g in range(0, W.shape[1], G):
            x = W[r, g:g + G].astype(np.float32)
            if kind == "sym4":
                i = int(np.argmax(np.abs(x)))
                d = x[i] / np.float32(-8.0)
                inv = np.float32(1.0) / d if d != 0 else np.float32(0.0)
                q = np.clip(np.floor(x * inv + np.float32(8.5)), 0, 15) - 8
                Q[r, g:g + G] = q * f16(d)
            elif kind == "asym4":
                lo, hi = x.min(), x.max()
                d = (hi - lo) / np.float32(15.0)
                inv = np.float32(1.0) / d if d != 0 else np.float32(0.0)
                q = np.clip(np.floor((x - lo) * inv + np.float32(0.5)), 0, 15)
                Q[r, g:g + G] = q * f16(d) + f16(lo)
            else:
                d = np.abs(x).max() / np.float32(127.0)
                inv = np.float32(1.0) / d if d != 0 else np.float32(0.0)
                Q[r, g:g + G] = np.clip(np.round(x * inv), -128, 127) * f16(d)
    return Q


def gptq(W, H, dtype, damp, act_order):
    kind, G = FMT[dtype]
    W = W.astype(np.float64).copy()
    H = H.astype(np.float64).copy()
    rows, cols = W.shape
    dead = np.diag(H) == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    ngroups = cols // G
    D = np.zeros((rows, ngroups))
    M = np.zeros((rows, ngroups))
    if act_order:
        for r in range(rows):
            for g in range(ngroups):
                D[r, g], M[r, g] = group_params(kind, W[r, g * G:(g + 1) * G])
        perm = np.argsort(-np.diag(H), kind="stable")
    else:
        perm = np.arange(cols)
    Wp = W[:, perm]
    Hp = H[np.ix_(perm, perm)]
    Hp[np.diag_indices(cols)] += damp * np.mean(np.diag(Hp))
    U = np.linalg.cholesky(np.linalg.inv(Hp)).T  # H^-1 = U^T U, U upper
    Qp = np.zeros_like(Wp)
    for i in range(cols):
        g = perm[i] // G
        if not act_order and i % G == 0:
            for r in range(rows):
                D[r, g], M[r, g] = group_params(kind, Wp[r, i:i + G])
        q = quantize(kind, Wp[:, i], D[:, g], M[:, g])
        Qp[:, i] = q
        e = (Wp[:, i] - q) / U[i, i]
        Wp[:, i + 1:] -= np.outer(e, U[i, i + 1:])
    Q = np.empty_like(Qp)
    Q[:, perm] = Qp
    return Q


def loss(W, Q, H):
    Dl = W.astype(np.float64) - Q
    return float(np.einsum("ij,jk,ik->", Dl, H.astype(np.float64), Dl))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/gptq/gptq_ref.bin")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    rows, cols, n = 48, 128, 512
    # Correlated inputs: a few latent factors mixed into all channels, channel scales spread over a
    # decade (as real activations), plus independent noise.
    Z = rng.standard_normal((n, 16))
    mix = rng.standard_normal((16, cols))
    scale = np.exp(rng.uniform(-1.2, 1.2, cols))
    X = (Z @ mix + 0.3 * rng.standard_normal((n, cols))) * scale
    H = (2.0 / n * X.T @ X).astype(np.float32)
    W = (0.05 * rng.standard_normal((rows, cols))).astype(np.float32)
    cases = []
    for dtype in (Q4_0, Q8_0, Q4_1_G64):
        for act in (0, 1):
            damp = 0.01
            Q = gptq(W, H, dtype, damp, act)
            kind, G = FMT[dtype]
            Qr = rtn(kind, G, W.astype(np.float64))
            lg, lr = loss(W, Q, H), loss(W, Qr, H)
            print(f"dtype {dtype} act_order {act}: gptq loss {lg:.6g}  rtn loss {lr:.6g}  ratio {lg / lr:.3f}")
            cases.append((dtype, act, damp, lg, lr))
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "wb") as f:
        f.write(b"LMPGPTQ1")
        f.write(struct.pack("<4I", rows, cols, len(cases), 0))
        f.write(W.astype("<f4").tobytes())
        f.write(H.astype("<f4").tobytes())
        for dtype, act, damp, lg, lr in cases:
            f.write(struct.pack("<IIfIdd", dtype, act, damp, 0, lg, lr))
    print(f"wrote {a.out} ({os.path.getsize(a.out)} bytes)")


if __name__ == "__main__":
    main()
