#!/usr/bin/env python3
"""PyTorch eager peer of bench/bench_train.c: tokens per second of whole training steps (forward, cross-entropy,
backward, gradient-norm clipping, AdamW) of a random Llama model of the same shape, batch, sequence length and
thread count, in float32 on the CPU. Attention is F.scaled_dot_product_attention (PyTorch's fastest eager
path, causal); GQA by repeating the key/value heads; RoPE interleaved; tied classifier as in the C bench.
scripts/bench-train.sh runs both and prints the ratio.

Usage: scripts/bench_train_torch.py --shape stories260K|smollm2 --batch B --seq T --threads N --steps N --warmup N
"""
import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F

SHAPES = {
    "stories260K": dict(dim=64, layers=5, heads=8, kv=4, ffn=172, vocab=512),
    "smollm2": dict(dim=576, layers=30, heads=9, kv=3, ffn=1536, vocab=49152),
}


class Block(torch.nn.Module):
    def __init__(self, d, h, kv, ffn):
        super().__init__()
        hd = d // h
        self.h, self.kv, self.hd = h, kv, hd
        self.attn_norm = torch.nn.Parameter(torch.ones(d))
        self.ffn_norm = torch.nn.Parameter(torch.ones(d))
        self.wq = torch.nn.Linear(d, h * hd, bias=False)
        self.wk = torch.nn.Linear(d, kv * hd, bias=False)
        self.wv = torch.nn.Linear(d, kv * hd, bias=False)
        self.wo = torch.nn.Linear(h * hd, d, bias=False)
        self.w1 = torch.nn.Linear(d, ffn, bias=False)
        self.w3 = torch.nn.Linear(d, ffn, bias=False)
        self.w2 = torch.nn.Linear(ffn, d, bias=False)

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        xn = F.rms_norm(x, (x.shape[-1],), self.attn_norm, 1e-5)
        q = self.wq(xn).view(B, T, self.h, self.hd)
        k = self.wk(xn).view(B, T, self.kv, self.hd)
        v = self.wv(xn).view(B, T, self.kv, self.hd)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        g = self.h // self.kv
        k = k.repeat_interleave(g, dim=2)
        v = v.repeat_interleave(g, dim=2)
        o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
        x = x + self.wo(o.transpose(1, 2).reshape(B, T, -1))
        xn = F.rms_norm(x, (x.shape[-1],), self.ffn_norm, 1e-5)
        return x + self.w2(F.silu(self.w1(xn)) * self.w3(xn))


def rope(x, cos, sin):  # interleaved pairs (2i, 2i+1)
    a, b = x[..., 0::2], x[..., 1::2]
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    return torch.stack([a * c - b * s, a * s + b * c], dim=-1).flatten(-2)


class Model(torch.nn.Module):
    def __init__(self, s):
        super().__init__()
        self.emb = torch.nn.Embedding(s["vocab"], s["dim"])
        self.blocks = torch.nn.ModuleList(Block(s["dim"], s["heads"], s["kv"], s["ffn"]) for _ in range(s["layers"]))
        self.norm = torch.nn.Parameter(torch.ones(s["dim"]))
        for p in self.parameters():
            if p.dim() == 2:
                torch.nn.init.normal_(p, 0.0, 0.02)

    def forward(self, tok, cos, sin):
        x = self.emb(tok)
        for b in self.blocks:
            x = b(x, cos, sin)
        x = F.rms_norm(x, (x.shape[-1],), self.norm, 1e-5)
        return x @ self.emb.weight.T  # tied classifier


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="stories260K", choices=SHAPES)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    s = SHAPES[a.shape]
    m = Model(s)
    hd = s["dim"] // s["heads"]
    inv = 1.0 / (10000.0 ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    ang = torch.arange(a.seq, dtype=torch.float32)[:, None] * inv[None, :]
    cos, sin = ang.cos(), ang.sin()
    decay = [p for p in m.parameters() if p.dim() == 2]
    other = [p for p in m.parameters() if p.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.95), eps=1e-8)
    tok = torch.randint(0, s["vocab"], (a.batch, a.seq + 1))
    inp, lab = tok[:, :-1], tok[:, 1:]
    times = []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        logits = m(inp, cos, sin)
        loss = F.cross_entropy(logits.reshape(-1, s["vocab"]), lab.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    n = sum(p.numel() for p in m.parameters())
    print(f"pytorch {torch.__version__} {a.shape}: {n} params, batch {a.batch} x seq {a.seq}, {a.threads} threads: "
          f"{med * 1e3:.1f} ms/step (median of {a.steps}, min {min(times) * 1e3:.1f}), "
          f"{a.batch * a.seq / med:.0f} tok/s, loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
