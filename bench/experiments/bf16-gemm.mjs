#!/usr/bin/env node
/**
 * Experiment: X·Wᵀ with float32 weights (the backend's sgemm: actvar's pool, few-row kernel or OpenBLAS) against the
 * same product with bf16 weights (native/bf16_gemm.c), at VAR-d16's linear-layer shapes (M rows: 2·batch·tokens of a
 * scale; N × K: qkv 3072×1024, fc1 4096×1024, fc2 1024×4096). Per shape: 3 rounds alternating fp32 / bf16, each the
 * mean of enough calls for ~2 GFLOP; the best round of each is printed with GFLOP/s and the bf16/fp32 time ratio.
 *
 *   node bench/experiments/bf16-gemm.mjs ['[[M,N,K],…]']
 */
import { useNodeBackend, backend } from '../../dist/src/backend/node.js';
import { Rng, toBf16Array, gemmBf16 } from '../../dist/src/tensor/index.js';

useNodeBackend();
const be = backend(), nk = be.native;
const rng = new Rng(1);
const rnd = (n) => Float32Array.from({ length: n }, () => rng.normal());
const shapes = process.argv[2] ? JSON.parse(process.argv[2])
  : [[2, 3072, 1024], [2, 4096, 1024], [2, 1024, 4096], [8, 3072, 1024], [32, 4096, 1024], [128, 4096, 1024], [512, 3072, 1024], [512, 1024, 4096], [2048, 4096, 1024]];
console.log(`${be.name}, ${be.threads} threads, bf16 path: ${nk ? nk.bf16Path() : 'TypeScript reference (no native kernels)'}`);
for (const [M, N, K] of shapes) {
  const X = rnd(M * K), Wf = rnd(N * K), W = toBf16Array(Wf), C = new Float32Array(M * N);
  const reps = Math.max(2, Math.min(200, Math.round(2e9 / (2 * M * N * K))));
  const t = { f: [], b: [] };
  for (let r = 0; r < 3; r++) {
    let s = performance.now();
    for (let i = 0; i < reps; i++) be.sgemm(false, true, M, N, K, 1, X, 0, K, Wf, 0, K, 0, C, 0, N);
    t.f.push((performance.now() - s) / reps);
    s = performance.now();
    for (let i = 0; i < reps; i++) gemmBf16(M, N, K, X, K, W, K, 0, C, N);
    t.b.push((performance.now() - s) / reps);
  }
  const f = Math.min(...t.f), b = Math.min(...t.b), gf = (ms) => (2 * M * N * K / ms / 1e6).toFixed(0);
  console.log(`${M}×${N}×${K}: fp32 ${f.toFixed(3)} ms (${gf(f)} GFLOP/s), bf16 ${b.toFixed(3)} ms (${gf(b)} GFLOP/s), bf16/fp32 ${(b / f).toFixed(2)}`);
}
