// Experiment (docs/BENCHMARKS.md, issue #4): can a plain C dot-product GEMM beat OpenBLAS on VAR's few-row GEMMs
// (the early scales: 2–128 rows against 4096×1024 and 1024×4096 weights)? Compiles small-m-nt-gemm.c with the
// system C compiler into a temporary folder, then times both on 12 different weight matrices (more than the L3
// cache), best of 3, at 1 and 2 threads, and prints the largest difference between their results.
// Run (after npm run build): node bench/experiments/small-m-nt-gemm.mjs
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import koffi from 'koffi';
import { backend, useNodeBackend } from '../../dist/src/backend/node.js';

useNodeBackend(); // the backend from the environment (ACTVAR_BACKEND, …), as the CLI does

const src = path.join(path.dirname(fileURLToPath(import.meta.url)), 'small-m-nt-gemm.c');
const lib = path.join(mkdtempSync(path.join(os.tmpdir(), 'actvar-ntgemm-')), 'ntgemm.so');
const cc = spawnSync(process.env.CC ?? 'cc', ['-O3', '-march=native', '-fPIC', '-shared', '-pthread', '-o', lib, src], { encoding: 'utf8' });
if (cc.status !== 0) throw new Error(`compiling ${src} failed: ${cc.stderr || cc.error}`);
const nt = koffi.load(lib).func('void sgemm_nt(const float *A, int64_t lda, const float *W, int64_t ldw, _Inout_ float *C, int64_t ldc, int64_t M, int64_t N, int64_t K, int beta, int threads)');
const be = backend();
for (const [N, K] of [[4096, 1024], [1024, 4096]]) {
  const Ws = Array.from({ length: 12 }, () => Float32Array.from({ length: N * K }, () => Math.random() - 0.5));
  for (const th of [1, 2]) {
    be.setThreads(th);
    for (const M of [2, 8, 18, 32, 50, 72, 128]) {
      const A = Float32Array.from({ length: M * K }, () => Math.random());
      const C1 = new Float32Array(M * N), C2 = new Float32Array(M * N);
      let blas = Infinity, ours = Infinity;
      for (let r = 0; r < 3; r++) {
        let t = performance.now();
        for (const W of Ws) be.sgemm(false, true, M, N, K, 1, A, 0, K, W, 0, K, 0, C1, 0, N);
        blas = Math.min(blas, (performance.now() - t) / Ws.length);
        t = performance.now();
        for (const W of Ws) nt(A, K, W, K, C2, N, M, N, K, 0, th);
        ours = Math.min(ours, (performance.now() - t) / Ws.length);
      }
      let md = 0;
      for (let i = 0; i < C1.length; i++) md = Math.max(md, Math.abs(C1[i] - C2[i]));
      const gf = (ms) => (2 * M * N * K / ms / 1e6).toFixed(0);
      console.log(`N=${N} K=${K} ${th} thread(s) ${M} rows: OpenBLAS ${blas.toFixed(2)} ms (${gf(blas)} GFLOP/s), NT kernel ${ours.toFixed(2)} ms (${gf(ours)} GFLOP/s), ${(blas / ours).toFixed(2)}× faster; max |diff| ${md.toExponential(1)}`);
    }
  }
}
