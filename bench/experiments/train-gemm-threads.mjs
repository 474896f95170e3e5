// Experiment (docs/BENCHMARKS.md): the GEMMs of a training step (the block-train shapes: 832 rows, widths
// 256–1024, every transpose the forward and backward use; operands in cache) on actvar's thread pool against
// OpenBLAS's own threads, 2 threads, GFLOP/s best of 5×10 calls, alternating twice.
// Run after `npm run build`: node bench/experiments/train-gemm-threads.mjs
import { backend, OpenBlasBackend, useNodeBackend } from '../../dist/src/backend/node.js';

useNodeBackend(); // the backend from the environment (ACTVAR_BACKEND, …), as the CLI does

const be = backend();
if (!(be instanceof OpenBlasBackend) || !be.threadPool) throw new Error('needs OpenBLAS and the native kernels with the thread pool');
const native = be.native;
const shapes = [[0, 1, 832, 768, 256], [0, 1, 832, 256, 256], [0, 1, 832, 1024, 256], [0, 1, 832, 256, 1024], [0, 0, 832, 256, 768],
  [0, 0, 832, 256, 1024], [0, 0, 832, 1024, 256], [1, 0, 768, 256, 832], [1, 0, 1024, 256, 832], [1, 0, 256, 1024, 832]];
be.setThreads(2);
console.log('transA transB M×N×K      openblas  pool  openblas  pool   (GFLOP/s)');
for (const [ta, tb, M, N, K] of shapes) {
  const A = new Float32Array(M * K).fill(0.01), B = new Float32Array(N * K).fill(0.02), C = new Float32Array(M * N);
  const lda = ta ? M : K, ldb = tb ? K : N, rates = [];
  for (const mode of ['openblas', 'pool', 'openblas', 'pool']) {
    if (mode === 'pool') be.useThreadPool(native); else be.stopThreadPool();
    const call = () => be.sgemm(!!ta, !!tb, M, N, K, 1, A, 0, lda, B, 0, ldb, 0, C, 0, N);
    for (let i = 0; i < 5; i++) call();
    let best = Infinity;
    for (let r = 0; r < 5; r++) { const t0 = performance.now(); for (let i = 0; i < 10; i++) call(); best = Math.min(best, (performance.now() - t0) / 10); }
    rates.push((2 * M * N * K / best / 1e6).toFixed(0).padStart(8));
  }
  console.log(`${ta ? 'T' : 'N'}      ${tb ? 'T' : 'N'}      ${`${M}×${N}×${K}`.padEnd(14)}${rates.join('')}`);
}
be.useThreadPool(native);
