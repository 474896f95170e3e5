// Experiment (docs/BENCHMARKS.md, issue #4): single-threaded GEMM throughput of one ActVAR expert's two GEMMs
// (M routed tokens × 256 hidden units, d16 widths: fc1 M×256×1024, fc2 M×1024×256 with W2's leading dimension
// 4096) against the dense FFN's GEMMs at the same M (M×4096×1024, M×1024×4096), as each thread of the grouped
// expert FFN runs them. Weights of 16 experts in rotation (from memory, as in a block); best of 5 passes.
// Run after `npm run build`:  ACTVAR_THREADS=1 node bench/experiments/expert-gemm-shapes.mjs
import { backend, useNodeBackend } from '../../dist/src/backend/node.js';
import { Rng } from '../../dist/src/tensor/index.js';

useNodeBackend(); // the backend from the environment (ACTVAR_BACKEND, …), as the CLI does

const be = backend();
be.setThreads(1);
const rng = new Rng(5);
const rnd = (n) => Float32Array.from({ length: n }, () => rng.uniform() - 0.5);
const C = 1024, H = 4096, de = 256, N = H / de;
const W1 = rnd(H * C), W2 = rnd(C * H);
console.log(`single-threaded GFLOP/s (${be.name}); M = tokens routed to one expert, or rows of the dense FFN`);
console.log('   M   expert fc1  expert fc2   dense fc1  dense fc2');
for (const M of [95, 144, 190, 288, 384]) {
  const X = rnd(M * C), He = rnd(M * de), Y = new Float32Array(M * C), Hd = new Float32Array(M * H);
  const cases = [
    [(e) => be.sgemm(false, true, M, de, C, 1, X, 0, C, W1, e * de * C, C, 1, He, 0, de), 2 * M * de * C, N],
    [(e) => be.sgemm(false, true, M, C, de, 1, He, 0, de, W2, e * de, H, 0, Y, 0, C), 2 * M * de * C, N],
    [() => be.sgemm(false, true, M, H, C, 1, X, 0, C, W1, 0, C, 1, Hd, 0, H), 2 * M * H * C, 2],
    [() => be.sgemm(false, true, M, C, H, 1, Hd, 0, H, W2, 0, H, 0, Y, 0, C), 2 * M * H * C, 2],
  ];
  const rates = cases.map(([f, flops, calls]) => {
    let best = Infinity;
    for (let pass = 0; pass < 5; pass++) {
      const t0 = performance.now();
      for (let e = 0; e < calls; e++) f(e);
      best = Math.min(best, performance.now() - t0);
    }
    return (flops * calls / best / 1e6).toFixed(1).padStart(10);
  });
  console.log(`${String(M).padStart(4)} ${rates.join('  ')}`);
}
