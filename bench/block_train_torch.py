#!/usr/bin/env python3
"""PyTorch reference for bench/block-train.ts: one training step of a pre-LN transformer block.

Same model, loss and optimiser as the TypeScript side: x + attn(LN1(x)), then + fc2(gelu_tanh(fc1(LN2(x)))),
LayerNorm with affine, plain (non-causal) softmax attention with scale 1/sqrt(head_dim), MSE loss against a
fixed target, AdamW(lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05). Float32 on the CPU.
Prints one JSON line: {"median_ms": ..., "min_ms": ..., "threads": T, "torch": version, "steps": N}.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

# torch.set_num_threads does not reach the OpenBLAS pool that Debian's torch uses for its GEMMs (it
# defaults to all cores), and that pool reads its size when the library loads: pin every native pool
# to --threads (default 1) before the import.
_n = sys.argv[sys.argv.index('--threads') + 1] if '--threads' in sys.argv[:-1] else '1'
for _k in ('OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS'):
    os.environ[_k] = _n

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def make_step(B: int, L: int, C: int, H: int, FF: int):
    """The model, data and optimiser of one block (seeded), and a function that runs one training step."""
    torch.manual_seed(0)
    D = C // H

    def lin(o: int, i: int):
        return (torch.randn(o, i) * 0.02).requires_grad_(), torch.zeros(o, requires_grad=True)

    ln1_w, ln1_b = torch.ones(C, requires_grad=True), torch.zeros(C, requires_grad=True)
    ln2_w, ln2_b = torch.ones(C, requires_grad=True), torch.zeros(C, requires_grad=True)
    qkv_w, qkv_b = lin(3 * C, C)
    proj_w, proj_b = lin(C, C)
    fc1_w, fc1_b = lin(FF, C)
    fc2_w, fc2_b = lin(C, FF)
    decay = [qkv_w, proj_w, fc1_w, fc2_w]
    no_decay = [ln1_w, ln1_b, ln2_w, ln2_b, qkv_b, proj_b, fc1_b, fc2_b]
    opt = torch.optim.AdamW([{'params': decay, 'weight_decay': 0.05}, {'params': no_decay, 'weight_decay': 0.0}],
                            lr=1e-4, betas=(0.9, 0.95), eps=1e-8)
    x = torch.randn(B, L, C)
    target = torch.randn(B, L, C)

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        h = F.layer_norm(x, (C,), ln1_w, ln1_b, 1e-6)
        qkv = F.linear(h, qkv_w, qkv_b).view(B, L, 3, H, D).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        att = torch.softmax(q @ k.transpose(-2, -1) * (1.0 / math.sqrt(D)), dim=-1)
        o = (att @ v).transpose(1, 2).reshape(B, L, C)
        x1 = x + F.linear(o, proj_w, proj_b)
        h2 = F.layer_norm(x1, (C,), ln2_w, ln2_b, 1e-6)
        y = x1 + F.linear(F.gelu(F.linear(h2, fc1_w, fc1_b), approximate='tanh'), fc2_w, fc2_b)
        loss = F.mse_loss(y, target)
        loss.backward()
        opt.step()
        return loss.item()

    return step


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument('--batch', type=int, default=8)
    ap.add_argument('--seq', type=int, default=104)
    ap.add_argument('--width', type=int, default=256)
    ap.add_argument('--heads', type=int, default=4)
    ap.add_argument('--ffn', type=int, default=1024)
    ap.add_argument('--steps', type=int, default=20)
    ap.add_argument('--warmup', type=int, default=3)
    ap.add_argument('--threads', type=int, default=1)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    step = make_step(a.batch, a.seq, a.width, a.heads, a.ffn)
    for _ in range(a.warmup):
        step()
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1000)
    print(json.dumps({'median_ms': statistics.median(times), 'min_ms': min(times), 'threads': torch.get_num_threads(),
                      'torch': torch.__version__, 'steps': a.steps}))


if __name__ == '__main__':
    main()
