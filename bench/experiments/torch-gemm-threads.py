#!/usr/bin/env python3
"""Experiment (docs/BENCHMARKS.md, issue #2): does torch.set_num_threads(1) make Debian's PyTorch GEMMs single-threaded?

Debian's python3-torch calls the system OpenBLAS for float32 GEMMs; that library sizes its own thread pool when it
loads (OPENBLAS_NUM_THREADS, default: all cores). Run both ways and compare:

  /usr/bin/python3 bench/experiments/torch-gemm-threads.py
  OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/experiments/torch-gemm-threads.py
"""
import os
import time

import torch

torch.set_num_threads(1)
print(f"torch {torch.__version__}, set_num_threads(1), OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}")
for (M, N, K) in [(680, 4096, 1024), (832, 1024, 256)]:
    a, b = torch.randn(M, K), torch.randn(N, K)
    for _ in range(3):
        a @ b.T
    t, n = time.perf_counter(), 20
    for _ in range(n):
        a @ b.T
    dt = (time.perf_counter() - t) / n
    print(f"  a @ b.T {M}x{N}x{K}: {2 * M * N * K / dt / 1e9:.1f} GFLOP/s")
