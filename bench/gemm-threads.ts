/**
 * The GEMMs of VAR inference (X·Wᵀ with X of M rows, W a 4096×1024 or 1024×4096 weight that is
 * not in cache, as in a generation where every layer's weights are read once per scale), on three
 * engines with the same thread count:
 *   openblas   OpenBLAS's own threads (ACTVAR_SPLIT_GEMM=0),
 *   split      actvar's thread pool splitting the columns, each part single-threaded OpenBLAS,
 *   default    the pool plus the few-row kernel (native/small_gemm.c) for M ≤ 72.
 * Weights rotate through 24 matrices (~400 MB) so that each call reads its W from memory.
 * `node dist/bench/gemm-threads.js [threads]`.
 */
import { backend, OpenBlasBackend, announceBackend, useNodeBackend } from '../src/backend/node.js';

useNodeBackend(); // the backend from the environment (ACTVAR_BACKEND, …), as the CLI does

export function gemmThreadsBench(threads = backend().threads): void {
  announceBackend();
  const be = backend();
  if (!(be instanceof OpenBlasBackend) || !be.native || !be.threadPool) {
    console.log('gemm-threads: needs OpenBLAS and the native kernels with the thread pool; skipped');
    return;
  }
  const native = be.native;
  be.setThreads(threads);
  const rowsList = [2, 8, 18, 32, 50, 72, 128, 200, 338, 512];
  const NW = 24, maxM = rowsList[rowsList.length - 1];
  const W = new Float32Array(NW * 4096 * 1024);
  for (let i = 0; i < W.length; i++) W[i] = ((i * 7) % 13) * 0.01 - 0.06;
  const X = Float32Array.from({ length: maxM * 4096 }, (_, i) => ((i * 5) % 11) * 0.1 - 0.5);
  const C = new Float32Array(maxM * 4096);
  const engines: [string, () => void][] = [
    ['openblas', () => be.stopThreadPool()],
    ['split', () => { be.useThreadPool(native); native.setFewRowLimit(0); }],
    ['default', () => { be.useThreadPool(native); native.setFewRowLimit(72); }],
  ];
  console.log(`gemm-threads: X·Wᵀ, W not in cache, ${be.threads} threads; GFLOP/s (best of 3 passes over ${NW} weights)`);
  try {
    for (const [N, K] of [[4096, 1024], [1024, 4096]]) {
      console.log(`  W ${N}×${K}   ${engines.map(([n]) => n.padStart(9)).join('')}   default/openblas`);
      for (const M of rowsList) {
        const rates = engines.map(([, use]) => {
          use();
          let best = Infinity;
          for (let r = 0; r < 3; r++) {
            const t0 = performance.now();
            for (let w = 0; w < NW; w++) be.sgemm(false, true, M, N, K, 1, X, 0, K, W, w * N * K, K, 0, C, 0, N);
            best = Math.min(best, (performance.now() - t0) / 1e3 / NW);
          }
          return (2 * M * N * K) / best / 1e9;
        });
        console.log(`  M = ${String(M).padStart(3)}      ${rates.map((r) => r.toFixed(1).padStart(9)).join('')}   ${(rates[2] / rates[0]).toFixed(2).padStart(8)}×`);
      }
    }
  } finally {
    be.useThreadPool(native);
    native.setFewRowLimit(72);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) gemmThreadsBench(process.argv[2] ? Number(process.argv[2]) : undefined);
