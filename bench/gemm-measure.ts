/**
 * GEMM throughput of one matmul, through the tensor API and as a raw backend sgemm call: the measurement behind
 * `actvar bench gemm` and `bench/gemm.ts` (benchmarks live in bench/; the CLI imports them, never the reverse).
 */
import { backend } from '../src/backend/index.js';
import { Tensor, noGrad, linear } from '../src/tensor/index.js';
import { Rng } from '../src/tensor/rng.js';

/** The transformer's FFN GEMM at 680 tokens (docs/VAR.md, "680x1024x4096" = M×N×K). */
export const DEFAULT_GEMM_SHAPE: readonly [number, number, number] = [680, 1024, 4096];

export interface GemmBenchResult {
  shape: [number, number, number];
  threads: number;
  /** Through the tensor API: linear(x[M,K], W[N,K]) = x·Wᵀ. */
  tensor_gflops: number;
  /** A raw backend sgemm of the same shape and transposes, same process. */
  blas_gflops: number;
  backend: string;
}

/**
 * Times y = x·Wᵀ with x [M,K], W [N,K] (K inner) both as `linear` and as a raw
 * `backend().sgemm(false, true, ...)`, after one warm-up each, interleaved so both paths see
 * the same machine load, and reports the best run of each. FLOPs = 2·M·N·K.
 * Runs exactly `repeats` pairs when given; otherwise at least 3 pairs and more (up to 50)
 * until `minSeconds` (default 1.5) have been spent on each path, since the best of few runs is noisy on a
 * shared machine.
 */
export function measureGemm(opts: { shape?: readonly number[]; repeats?: number; threads?: number; minSeconds?: number } = {}): GemmBenchResult {
  const [M, N, K] = opts.shape ?? DEFAULT_GEMM_SHAPE;
  const minRepeats = opts.repeats ?? 3, maxRepeats = opts.repeats ?? 50;
  const minSeconds = opts.repeats === undefined ? opts.minSeconds ?? 1.5 : 0;
  const be = backend();
  if (opts.threads !== undefined) be.setThreads(opts.threads);
  const rng = new Rng(1);
  const fill = (n: number): Float32Array => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = rng.uniform() - 0.5;
    return a;
  };
  const X = fill(M * K), W = fill(N * K), Y = new Float32Array(M * N);
  const x = new Tensor(X, [M, K]), w = new Tensor(W, [N, K]);
  const raw = (): void => be.sgemm(false, true, M, N, K, 1, X, 0, K, W, 0, K, 0, Y, 0, N);
  const viaTensor = (): void => { noGrad(() => linear(x, w)); };
  const time = (f: () => void): number => { const t0 = performance.now(); f(); return (performance.now() - t0) / 1e3; };
  raw(); viaTensor();
  let bestRaw = Infinity, bestTensor = Infinity, spent = 0;
  for (let r = 0; r < maxRepeats && (r < minRepeats || spent < 2 * minSeconds); r++) {
    const tr = time(raw), tt = time(viaTensor);
    bestRaw = Math.min(bestRaw, tr);
    bestTensor = Math.min(bestTensor, tt);
    spent += tr + tt;
  }
  const flops = 2 * M * N * K;
  const round = (v: number): number => Math.round(v * 100) / 100;
  return {
    shape: [M, N, K], threads: be.threads,
    tensor_gflops: round(flops / bestTensor / 1e9), blas_gflops: round(flops / bestRaw / 1e9),
    backend: be.name,
  };
}

/** The human-readable table printed without --json. */
export function formatGemmTable(r: GemmBenchResult): string {
  const [M, N, K] = r.shape, flops = 2 * M * N * K;
  const row = (label: string, gf: number): string =>
    `  ${label.padEnd(26)}${(flops / gf / 1e6).toFixed(1).padStart(10)}${gf.toFixed(2).padStart(10)}`;
  return [
    `gemm ${M}x${N}x${K} (M x N x K, y = x·Wᵀ), ${r.backend}, ${r.threads} thread${r.threads === 1 ? '' : 's'}`,
    `  ${'path'.padEnd(26)}${'best ms'.padStart(10)}${'GFLOP/s'.padStart(10)}`,
    row('raw backend sgemm', r.blas_gflops),
    row('tensor linear()', r.tensor_gflops),
    `  tensor / raw = ${(r.tensor_gflops / r.blas_gflops).toFixed(3)}`,
  ].join('\n');
}
