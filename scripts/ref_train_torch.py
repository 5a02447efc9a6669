#!/usr/bin/env python3
"""Independent PyTorch (autograd, float64) reference of lmpress's training engine, for tests/test_train_model.c.

For two tiny random Llama models it computes, on one fixed batch, the distillation loss
    alpha * T^2 * KL + (1 - alpha) * CE          (KL forward or reverse, temperature T)
and the gradient of its mean over the tokens with respect to every parameter, then runs 10 AdamW steps
(torch.optim.AdamW, decay on matrices only, torch.nn.utils.clip_grad_norm_, linear warmup then cosine decay
to min_lr) and records the loss before each step. Model A: GQA, untied classifier, uneven layers, RoPE
interleaved; model B: tied classifier, partial RoPE (rope_dim < head_dim) in the neox layout, uneven layers.

Fixture format (all little-endian), a sequence of named arrays until end of file:
    u32 name_len, name bytes, u32 dtype (0 f32, 1 i32, 2 f64), u32 ndim, u64 shape[ndim], data
Names: "<model>.config" (i32: dim, n_layers, head_dim, vocab, ctx, rope_dim, neox, tied, B, T, kd, steps,
warmup), "<model>.layers" (i32 (n_layers, 3): heads, kv heads, ffn), "<model>.hyper" (f64: eps, theta,
alpha, temp, lr, min_lr, beta1, beta2, adam_eps, weight_decay, clip), "<model>.tokens" (i32 (B, T+1)),
"<model>.teacher" (f32 (B*T, vocab)), "<model>.loss" (f64: loss, ce, kd), "<model>.w.<tensor>" (f32
weights, file names), "<model>.g.<tensor>" (f32 gradients), "<model>.steps" (f64 (steps, 3): loss, ce, kd
before each AdamW step) and "<model>.final" (f64 (3,), after the last step).

Usage: scripts/ref_train_torch.py -o tests/fixtures/train/tiny_train.bin      (needs: pip install torch)
"""
import argparse
import math
import struct

import numpy as np
import torch

torch.set_default_dtype(torch.float64)

MODELS = {
    "A": dict(dim=32, head_dim=8, vocab=61, ctx=16, rope_dim=8, neox=0, tied=0,
              layers=[(4, 2, 48), (2, 1, 24), (4, 4, 40)], B=2, T=9,
              alpha=0.5, temp=2.0, kd=0, seed=11),
    "B": dict(dim=24, head_dim=8, vocab=43, ctx=16, rope_dim=4, neox=1, tied=1,
              layers=[(2, 1, 32), (3, 3, 16)], B=3, T=7,
              alpha=0.7, temp=1.5, kd=1, seed=12),
}
HYPER = dict(eps=1e-5, theta=10000.0, lr=3e-3, min_lr=3e-4, beta1=0.9, beta2=0.95, adam_eps=1e-8,
             weight_decay=0.1, clip=1.0, steps=10, warmup=3)


def tensor_names(cfg):
    """(name, shape) in file order, as lmpress writes a model (format/synth.c)."""
    d, hd = cfg["dim"], cfg["head_dim"]
    out = [("token_embd.weight", (cfg["vocab"], d))]
    for l, (nh, nkv, ff) in enumerate(cfg["layers"]):
        out += [(f"blk.{l}.attn_norm.weight", (d,)), (f"blk.{l}.attn_q.weight", (nh * hd, d)),
                (f"blk.{l}.attn_k.weight", (nkv * hd, d)), (f"blk.{l}.attn_v.weight", (nkv * hd, d)),
                (f"blk.{l}.attn_output.weight", (d, nh * hd)), (f"blk.{l}.ffn_norm.weight", (d,)),
                (f"blk.{l}.ffn_gate.weight", (ff, d)), (f"blk.{l}.ffn_down.weight", (d, ff)),
                (f"blk.{l}.ffn_up.weight", (ff, d))]
    out.append(("output_norm.weight", (d,)))
    if not cfg["tied"]:
        out.append(("output.weight", (cfg["vocab"], d)))
    return out


def rope_tables(T, rd, theta):
    # float32 as the C side computes them (1 / powf(theta, 2i / rd), then cosf / sinf of p * freq)
    i = np.arange(rd // 2, dtype=np.float32)
    freq = (np.float32(1.0) / np.power(np.float32(theta), (np.float32(2.0) * i) / np.float32(rd))).astype(np.float32)
    ang = (np.arange(T, dtype=np.float32)[:, None] * freq[None, :]).astype(np.float32)
    return (torch.tensor(np.cos(ang).astype(np.float32), dtype=torch.float64),
            torch.tensor(np.sin(ang).astype(np.float32), dtype=torch.float64))


def rope(x, cos, sin, rd, neox):
    """x: (B, T, H, hd). Rotates pairs (2i, 2i+1) (interleaved) or (i, i + rd/2) (neox) of the first rd dims."""
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    rest = x[..., rd:]
    if neox:
        a, b = x[..., : rd // 2], x[..., rd // 2: rd]
        rot = torch.cat([a * c - b * s, a * s + b * c], dim=-1)
    else:
        a, b = x[..., 0:rd:2], x[..., 1:rd:2]
        rot = torch.stack([a * c - b * s, a * s + b * c], dim=-1).flatten(-2)
    return torch.cat([rot, rest], dim=-1)


def rmsnorm(x, w, eps):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w


def forward(cfg, P, tokens):
    d, hd, B, T = cfg["dim"], cfg["head_dim"], cfg["B"], cfg["T"]
    cos, sin = rope_tables(T, cfg["rope_dim"], HYPER["theta"])
    x = P["token_embd.weight"][tokens]  # (B, T, d)
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    for l, (nh, nkv, ff) in enumerate(cfg["layers"]):
        w = lambda n: P[f"blk.{l}.{n}.weight"]
        xn = rmsnorm(x, w("attn_norm"), HYPER["eps"])
        q = (xn @ w("attn_q").T).view(B, T, nh, hd)
        k = (xn @ w("attn_k").T).view(B, T, nkv, hd)
        v = (xn @ w("attn_v").T).view(B, T, nkv, hd)
        q = rope(q, cos, sin, cfg["rope_dim"], cfg["neox"])
        k = rope(k, cos, sin, cfg["rope_dim"], cfg["neox"])
        g = nh // nkv
        k = k.repeat_interleave(g, dim=2)  # query head h reads kv head h // g
        v = v.repeat_interleave(g, dim=2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, T, hd)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        s = s.masked_fill(~mask, float("-inf"))
        att = torch.softmax(s, dim=-1) @ v
        att = att.transpose(1, 2).reshape(B, T, nh * hd)
        x = x + att @ w("attn_output").T
        xn = rmsnorm(x, w("ffn_norm"), HYPER["eps"])
        h = torch.nn.functional.silu(xn @ w("ffn_gate").T) * (xn @ w("ffn_up").T)
        x = x + h @ w("ffn_down").T
    x = rmsnorm(x, P["output_norm.weight"], HYPER["eps"])
    wout = P["token_embd.weight"] if cfg["tied"] else P["output.weight"]
    return x @ wout.T  # (B, T, V)


def loss_fn(cfg, logits, labels, teacher):
    V, Tm, a = cfg["vocab"], cfg["temp"], cfg["alpha"]
    z = logits.reshape(-1, V)
    ce = torch.nn.functional.cross_entropy(z, labels.reshape(-1), reduction="none")
    lq = torch.log_softmax(z / Tm, dim=-1)
    lp = torch.log_softmax(teacher / Tm, dim=-1)
    if cfg["kd"] == 0:
        kl = (lp.exp() * (lp - lq)).sum(-1)
    else:
        kl = (lq.exp() * (lq - lp)).sum(-1)
    kd = Tm * Tm * kl
    return (a * kd + (1 - a) * ce).mean(), ce.mean(), kd.mean()


def lr_at(s):
    H = HYPER
    if s <= H["warmup"]:
        return H["lr"] * s / H["warmup"]
    prog = (s - H["warmup"]) / (H["steps"] - H["warmup"])
    return H["min_lr"] + 0.5 * (H["lr"] - H["min_lr"]) * (1 + math.cos(math.pi * prog))


def write(f, name, arr, dtype):
    code = {"f32": 0, "i32": 1, "f64": 2}[dtype]
    npd = {"f32": "<f4", "i32": "<i4", "f64": "<f8"}[dtype]
    a = np.ascontiguousarray(np.asarray(arr, dtype=npd))
    nb = name.encode()
    f.write(struct.pack("<I", len(nb)) + nb + struct.pack("<II", code, a.ndim))
    f.write(struct.pack(f"<{a.ndim}Q", *a.shape))
    f.write(a.tobytes())


def make(f, key, cfg):
    rng = np.random.default_rng(cfg["seed"])
    names = tensor_names(cfg)
    P = {}
    for n, shape in names:
        if len(shape) == 1:
            w = 1.0 + 0.1 * rng.standard_normal(shape)
        else:
            w = 0.3 * rng.standard_normal(shape)
        P[n] = torch.tensor(w.astype(np.float32), dtype=torch.float64, requires_grad=True)  # f32-representable
    B, T, V = cfg["B"], cfg["T"], cfg["vocab"]
    tokens = rng.integers(0, V, size=(B, T + 1)).astype(np.int32)
    teacher = (2.0 * rng.standard_normal((B * T, V))).astype(np.float32)
    inp = torch.tensor(tokens[:, :T], dtype=torch.long)
    lab = torch.tensor(tokens[:, 1:], dtype=torch.long)
    tt = torch.tensor(teacher, dtype=torch.float64)

    loss, ce, kd = loss_fn(cfg, forward(cfg, P, inp), lab, tt)
    loss.backward()
    nl = len(cfg["layers"])
    write(f, f"{key}.config", [cfg["dim"], nl, cfg["head_dim"], V, cfg["ctx"], cfg["rope_dim"], cfg["neox"],
                              cfg["tied"], B, T, cfg["kd"], HYPER["steps"], HYPER["warmup"]], "i32")
    write(f, f"{key}.layers", np.array(cfg["layers"]), "i32")
    write(f, f"{key}.hyper", [HYPER["eps"], HYPER["theta"], cfg["alpha"], cfg["temp"], HYPER["lr"], HYPER["min_lr"],
                             HYPER["beta1"], HYPER["beta2"], HYPER["adam_eps"], HYPER["weight_decay"],
                             HYPER["clip"]], "f64")
    write(f, f"{key}.tokens", tokens, "i32")
    write(f, f"{key}.teacher", teacher, "f32")
    write(f, f"{key}.loss", [loss.item(), ce.item(), kd.item()], "f64")
    for n, _ in names:
        write(f, f"{key}.w.{n}", P[n].detach().numpy(), "f32")
    for n, _ in names:
        write(f, f"{key}.g.{n}", P[n].grad.numpy(), "f32")

    # 10 AdamW steps on the same batch
    params = [P[n] for n, _ in names]
    decay = [P[n] for n, s in names if len(s) == 2]
    no_decay = [P[n] for n, s in names if len(s) == 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": HYPER["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=HYPER["lr"], betas=(HYPER["beta1"], HYPER["beta2"]), eps=HYPER["adam_eps"])
    rows = []
    for s in range(1, HYPER["steps"] + 1):
        opt.zero_grad()
        loss, ce, kd = loss_fn(cfg, forward(cfg, P, inp), lab, tt)
        loss.backward()
        rows.append([loss.item(), ce.item(), kd.item()])
        torch.nn.utils.clip_grad_norm_(params, HYPER["clip"])
        for g in opt.param_groups:
            g["lr"] = lr_at(s)
        opt.step()
    with torch.no_grad():
        loss, ce, kd = loss_fn(cfg, forward(cfg, P, inp), lab, tt)
    write(f, f"{key}.steps", np.array(rows), "f64")
    write(f, f"{key}.final", [loss.item(), ce.item(), kd.item()], "f64")
    print(f"model {key}: loss {rows[0][0]:.6f} -> {loss.item():.6f} after {HYPER['steps']} AdamW steps")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args()
    with open(args.output, "wb") as f:
        for key, cfg in MODELS.items():
            make(f, key, cfg)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
