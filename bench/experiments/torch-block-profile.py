#!/usr/bin/env python3
"""Where PyTorch 1.13 spends one block-train step (bench/block_train_torch.py's model), by op.

Runs the same pre-LN transformer block training step (batch 8, sequence 104, width 256, 4 heads, FFN 1024,
AdamW) on one thread (OpenBLAS/OpenMP pools pinned before the import) under torch.autograd.profiler for
10 steps after 5 warm-up steps, and prints the per-op table (self CPU time, sorted). Divide by 10 for a step.
Run: /usr/bin/python3 bench/experiments/torch-block-profile.py
"""
import math
import os

for _k in ('OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS'):
    os.environ[_k] = '1'

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(1)
torch.manual_seed(0)
B, L, C, H, FF = 8, 104, 256, 4, 1024
D = C // H


def lin(o, i):
    return (torch.randn(o, i) * 0.02).requires_grad_(), torch.zeros(o, requires_grad=True)


ln1_w, ln1_b = torch.ones(C, requires_grad=True), torch.zeros(C, requires_grad=True)
ln2_w, ln2_b = torch.ones(C, requires_grad=True), torch.zeros(C, requires_grad=True)
qkv_w, qkv_b = lin(3 * C, C)
proj_w, proj_b = lin(C, C)
fc1_w, fc1_b = lin(FF, C)
fc2_w, fc2_b = lin(C, FF)
opt = torch.optim.AdamW([{'params': [qkv_w, proj_w, fc1_w, fc2_w], 'weight_decay': 0.05},
                         {'params': [ln1_w, ln1_b, ln2_w, ln2_b, qkv_b, proj_b, fc1_b, fc2_b], 'weight_decay': 0.0}],
                        lr=1e-4, betas=(0.9, 0.95))
x, target = torch.randn(B, L, C), torch.randn(B, L, C)


def step():
    opt.zero_grad(set_to_none=True)
    h = F.layer_norm(x, (C,), ln1_w, ln1_b, 1e-6)
    qkv = F.linear(h, qkv_w, qkv_b).view(B, L, 3, H, D).permute(2, 0, 3, 1, 4)
    att = torch.softmax(qkv[0] @ qkv[1].transpose(-2, -1) * (1.0 / math.sqrt(D)), dim=-1)
    o = (att @ qkv[2]).transpose(1, 2).reshape(B, L, C)
    x1 = x + F.linear(o, proj_w, proj_b)
    h2 = F.layer_norm(x1, (C,), ln2_w, ln2_b, 1e-6)
    y = x1 + F.linear(F.gelu(F.linear(h2, fc1_w, fc1_b), approximate='tanh'), fc2_w, fc2_b)
    F.mse_loss(y, target).backward()
    opt.step()


for _ in range(5):
    step()
with torch.autograd.profiler.profile() as prof:
    for _ in range(10):
        step()
print(prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=25))
