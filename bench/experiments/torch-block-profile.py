#!/usr/bin/env python3
"""Where PyTorch 1.13 spends one block-train step (bench/block_train_torch.py's model), by op.

Runs the same pre-LN transformer block training step (batch 8, sequence 104, width 256, 4 heads, FFN 1024,
AdamW; `make_step` of bench/block_train_torch.py) on one thread (that module pins the OpenBLAS/OpenMP pools
before importing torch) under torch.autograd.profiler for 10 steps after 5 warm-up steps, and prints the
per-op table (self CPU time, sorted). Divide by 10 for a step.
Run: /usr/bin/python3 bench/experiments/torch-block-profile.py
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from block_train_torch import make_step, torch  # noqa: E402  (pins the thread pools to 1, then imports torch)

torch.set_num_threads(1)
step = make_step(8, 104, 256, 4, 1024)
for _ in range(5):
    step()
with torch.autograd.profiler.profile() as prof:
    for _ in range(10):
        step()
print(prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=25))
