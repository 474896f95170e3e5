// Experiment (docs/BENCHMARKS.md, issue #4): GEMMs with few rows (VAR's early scales: 2–200 rows against
// 4096×1024 weights), OpenBLAS vs oneDNN's dnnl_sgemm (Debian libdnnl2, if installed), streaming 48
// different weight matrices (192 MB per pass, more than the L3 cache). Run: node bench/experiments/small-m-gemm.mjs
import koffi from 'koffi';

const blas = koffi.load('libopenblas.so.0');
const cblasSgemm = blas.func('void cblas_sgemm(int order, int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb, float beta, _Inout_ float *C, int ldc)');
const blasThreads = blas.func('void openblas_set_num_threads(int n)');
let dnnl = null, ompThreads = null;
try {
  dnnl = koffi.load('libdnnl.so.2').func('int dnnl_sgemm(char transa, char transb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda, const float *B, int64_t ldb, float beta, _Inout_ float *C, int64_t ldc)');
  ompThreads = koffi.load('libgomp.so.1').func('void omp_set_num_threads(int n)');
} catch { console.log('libdnnl.so.2 not found (apt-get install libdnnl2): OpenBLAS only'); }
const N = 4096, K = 1024, T = 'T'.charCodeAt(0), NT = 'N'.charCodeAt(0);
const Ws = Array.from({ length: 48 }, () => new Float32Array(N * K).fill(0.01));
const x = new Float32Array(256 * K).fill(1), y = new Float32Array(256 * N);
for (const threads of [2, 1]) {
  blasThreads(threads);
  ompThreads?.(threads);
  for (const M of [2, 8, 18, 32, 50, 72, 128, 200]) {
    const runs = [['openblas', (W) => cblasSgemm(101, 111, 112, M, N, K, 1, x, K, W, K, 0, y, N)]];
    if (dnnl) runs.push(['dnnl', (W) => dnnl(NT, T, M, N, K, 1, x, K, W, K, 0, y, N)]);
    const res = runs.map(([name, f]) => {
      let best = Infinity;
      for (let r = 0; r < 3; r++) { const t0 = performance.now(); for (const W of Ws) f(W); best = Math.min(best, performance.now() - t0); }
      return `${name} ${(Ws.length * N * K * 4 / best / 1e6).toFixed(1)} GB/s ${(Ws.length * 2 * M * N * K / best / 1e6).toFixed(0)} GFLOP/s`;
    });
    console.log(`${threads} thread(s), ${M} rows: ${res.join(' | ')}`);
  }
}
