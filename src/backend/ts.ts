import type { Backend } from './backend.js';

/**
 * Pure-TypeScript sgemm: the fallback when no BLAS library is found.
 * Blocked over K so that rows of B stay in cache; inner loop is a contiguous axpy
 * over N, which V8 compiles to tight scalar code.
 */
export class TsBackend implements Backend {
  readonly name = 'typescript (no BLAS found: install libopenblas0 for the fast path)';
  threads = 1;
  setThreads(_n: number): void { /* single-threaded */ }

  sgemm(
    transA: boolean, transB: boolean, M: number, N: number, K: number,
    alpha: number, A: Float32Array, aOff: number, lda: number,
    B: Float32Array, bOff: number, ldb: number,
    beta: number, C: Float32Array, cOff: number, ldc: number,
  ): void {
    for (let i = 0; i < M; i++) {
      const c0 = cOff + i * ldc;
      if (beta === 0) C.fill(0, c0, c0 + N);
      else if (beta !== 1) for (let j = 0; j < N; j++) C[c0 + j] *= beta;
    }
    if (M === 0 || N === 0 || K === 0 || alpha === 0) return;
    // Make B row-contiguous over N (copy when transposed), so the inner loop is an axpy.
    let Bm = B, bo = bOff, ldbm = ldb;
    if (transB) {
      Bm = new Float32Array(K * N);
      for (let n = 0; n < N; n++) { const r = bOff + n * ldb; for (let k = 0; k < K; k++) Bm[k * N + n] = B[r + k]; }
      bo = 0; ldbm = N;
    }
    const KB = 256;
    for (let k0 = 0; k0 < K; k0 += KB) {
      const k1 = Math.min(K, k0 + KB);
      for (let i = 0; i < M; i++) {
        const c0 = cOff + i * ldc;
        for (let k = k0; k < k1; k++) {
          const a = alpha * (transA ? A[aOff + k * lda + i] : A[aOff + i * lda + k]);
          if (a === 0) continue;
          const b0 = bo + k * ldbm;
          for (let j = 0; j < N; j++) C[c0 + j] += a * Bm[b0 + j];
        }
      }
    }
  }
}
