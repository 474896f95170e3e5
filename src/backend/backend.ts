/**
 * The kernel interface. The tensor core calls only these functions for its heavy
 * arithmetic, so a new backend (OpenBLAS today, WebGPU later) implements this and
 * nothing else. Matrices are row-major, as in C's cblas with CblasRowMajor.
 */
import type { NativeKernels } from './native.js';

export interface Backend {
  /** Short name printed in the one-line announcement, e.g. "openblas (libopenblas.so.0)". */
  readonly name: string;
  /**
   * Native elementwise kernels (GELU, softmax rows, LayerNorm, AdamW, …; src/backend/native.ts), or
   * null/absent: the tensor ops then run their TypeScript loops. Independent of the GEMM library.
   */
  native?: NativeKernels | null;
  /**
   * Helper threads for self-contained JavaScript kernels on shared memory (the VQVAE's SiLU fills), or
   * null/absent: those kernels then run on the calling thread. The Node edge attaches one (worker-pool.ts).
   */
  workers?: JsWorkerPool | null;
  /** Worker threads used by the kernels. */
  threads: number;
  setThreads(n: number): void;
  /**
   * C[M,N] = alpha * op(A)[M,K] · op(B)[K,N] + beta * C, row-major.
   * op(A) = A (stored M×K, leading dimension lda) or Aᵀ (stored K×M) when transA.
   * Offsets let callers address slices of larger buffers without copying.
   */
  sgemm(
    transA: boolean, transB: boolean, M: number, N: number, K: number,
    alpha: number, A: Float32Array, aOff: number, lda: number,
    B: Float32Array, bOff: number, ldb: number,
    beta: number, C: Float32Array, cOff: number, ldc: number,
  ): void;
}

/**
 * A pool of helper threads running self-contained JavaScript kernels (functions that use only their
 * arguments: their source is what runs on the helpers), for work that must give the same bits as the
 * TypeScript loop on the calling thread. Typed arrays passed to a kernel must live in shared memory
 * (a SharedArrayBuffer) to be written by it; others arrive as copies.
 */
export interface JsWorkerPool {
  /** Helper threads now (the calling thread not counted). */
  readonly size: number;
  /** Grow or shrink to n helpers. */
  resize(n: number): void;
  /**
   * Starts kernel(...jobs[i]) on helper i (jobs.length ≤ size) and returns at once; the returned
   * function waits for all of them and throws if one failed or timed out.
   */
  start(kernel: (...args: never[]) => void, jobs: unknown[][]): () => void;
}
