/** Matrix products through the backend's sgemm: matmul, batched matmul, linear. */
import { backend } from '../../backend/index.js';
import { Tensor, result, assertFloat, sizeOf, isGradEnabled } from '../tensor.js';
import { recordFlops, isDryRun } from '../flops.js';
import { gemmBf16 } from './bf16.js';

/**
 * The backend's GEMM on arrays, row-major: C = alpha·op(A)·op(B) + beta·C with offsets and leading
 * dimensions as in cblas (src/backend/backend.ts). Not counted in FLOPs: for backward passes and
 * calibration statistics; forward work uses `gemmCounted`.
 */
export function sgemm(
  transA: boolean, transB: boolean, M: number, N: number, K: number,
  alpha: number, A: Float32Array, aOff: number, lda: number, B: Float32Array, bOff: number, ldb: number,
  beta: number, C: Float32Array, cOff: number, ldc: number,
): void {
  backend().sgemm(transA, transB, M, N, K, alpha, A, aOff, lda, B, bOff, ldb, beta, C, cOff, ldc);
}

/** `sgemm` as forward work: records 2·M·N·K FLOPs and does no arithmetic in a dry run. */
export function gemmCounted(
  transA: boolean, transB: boolean, M: number, N: number, K: number,
  alpha: number, A: Float32Array, aOff: number, lda: number, B: Float32Array, bOff: number, ldb: number,
  beta: number, C: Float32Array, cOff: number, ldc: number,
): void {
  recordFlops(2 * M * N * K);
  if (!isDryRun()) backend().sgemm(transA, transB, M, N, K, alpha, A, aOff, lda, B, bOff, ldb, beta, C, cOff, ldc);
}

/**
 * Batched C[b] = op(A[b]) · op(B[b]). A is [..., M, K] (or [..., K, M] with transA), B is [..., K, N]
 * (or [..., N, K] with transB). Batch dims must match, or B may have none (shared weight).
 */
export function matmul(a: Tensor, b: Tensor, transA = false, transB = false): Tensor {
  const A = assertFloat(a, 'matmul'), Bd = assertFloat(b, 'matmul');
  if (a.ndim < 2 || b.ndim < 2) throw new RangeError(`matmul needs 2-d or batched operands, got [${a.shape.join(', ')}] and [${b.shape.join(', ')}]`);
  const [ar, ac] = a.shape.slice(-2), [br, bc] = b.shape.slice(-2);
  const M = transA ? ac : ar, K = transA ? ar : ac;
  const Kb = transB ? bc : br, N = transB ? br : bc;
  if (K !== Kb) throw new RangeError(`matmul: inner dimensions differ: [${a.shape.join(', ')}]${transA ? 'ᵀ' : ''} · [${b.shape.join(', ')}]${transB ? 'ᵀ' : ''}`);
  const batchA = a.shape.slice(0, -2), batchB = b.shape.slice(0, -2);
  const shared = batchB.length === 0;
  if (!shared && (batchA.length !== batchB.length || batchA.some((d, i) => d !== batchB[i]))) {
    throw new RangeError(`matmul: batch dimensions differ: [${a.shape.join(', ')}] and [${b.shape.join(', ')}]`);
  }
  const nb = sizeOf(batchA);
  const be = backend();
  const out = new Float32Array(nb * M * N);
  const lda = transA ? M : K, ldb = transB ? K : N;
  recordFlops(2 * nb * M * N * K, b);
  if (isDryRun()) {
    // shape-only execution: no arithmetic
  } else if (shared && !transA) {
    // one GEMM over all batch rows: [nb*M, K] · B
    be.sgemm(false, transB, nb * M, N, K, 1, A, 0, lda, Bd, 0, ldb, 0, out, 0, N);
  } else {
    for (let i = 0; i < nb; i++) {
      be.sgemm(transA, transB, M, N, K, 1, A, i * M * K, lda, Bd, shared ? 0 : i * K * N, ldb, 0, out, i * M * N, N);
    }
  }
  const shape = [...batchA, M, N];
  return result(out, shape, 'matmul', [a, b], (g) => {
    let gA: Float32Array | null = null, gB: Float32Array | null = null;
    if (a.requiresGrad) {
      gA = new Float32Array(A.length);
      // dA = g·op(B)ᵀ  (or its transpose when transA)
      for (let i = 0; i < nb; i++) {
        const bo = shared ? 0 : i * K * N;
        if (!transA) be.sgemm(false, !transB, M, K, N, 1, g, i * M * N, N, Bd, bo, ldb, 0, gA, i * M * K, K);
        else be.sgemm(transB, true, K, M, N, 1, Bd, bo, ldb, g, i * M * N, N, 0, gA, i * M * K, M);
      }
    }
    if (b.requiresGrad) {
      gB = new Float32Array(Bd.length);
      for (let i = 0; i < nb; i++) {
        const bo = shared ? 0 : i * K * N, beta = shared && i > 0 ? 1 : 0;
        // dB = op(A)ᵀ·g  (or its transpose when transB)
        if (!transB) be.sgemm(!transA, false, K, N, M, 1, A, i * M * K, lda, g, i * M * N, N, beta, gB, bo, N);
        else be.sgemm(true, transA, N, K, M, 1, g, i * M * N, N, A, i * M * K, lda, beta, gB, bo, K);
      }
    }
    return [gA, gB];
  });
}

/**
 * out[j] = Σ_r g[r·cols + j] (a bias gradient), overwriting out[0..cols): accumulated in float32 row after row
 * (as a plain `out[j] += g[r·cols + j]` loop from zero), four rows per pass so that out is loaded and stored a
 * quarter as often; by the native kernel, with the same sums in the same order, when there is one.
 */
export function columnSumsInto(g: Float32Array, rows: number, cols: number, out: Float32Array): Float32Array {
  const nk = backend().native;
  if (nk) { nk.colSum(g, out, rows, cols); return out; }
  const f = Math.fround;
  out.fill(0, 0, cols);
  let r = 0;
  for (; r + 4 <= rows; r += 4) {
    const o0 = r * cols, o1 = o0 + cols, o2 = o1 + cols, o3 = o2 + cols;
    for (let j = 0; j < cols; j++) out[j] = f(f(f(f(out[j] + g[o0 + j]) + g[o1 + j]) + g[o2 + j]) + g[o3 + j]);
  }
  for (; r < rows; r++) { const o = r * cols; for (let j = 0; j < cols; j++) out[j] += g[o + j]; }
  return out;
}

/**
 * Rows 0..rows−1 of y (rows of n) ← v[0..n): the first row set, then doubling copies inside y (⌈log₂ rows⌉ calls
 * instead of one `set` per row: the per-call cost dominated for the many narrow rows of a small model).
 */
export function fillRowsInto(y: Float32Array, v: Float32Array, rows: number, n: number): void {
  if (rows <= 0 || n <= 0) return;
  y.set(v.length === n ? v : v.subarray(0, n), 0);
  const total = rows * n;
  for (let filled = n; filled < total; filled *= 2) y.copyWithin(filled, 0, Math.min(filled, total - filled));
}

/**
 * The data of a weight matrix for `linearInto`: float32 values, or bf16 bit patterns for a 'bfloat16'
 * tensor (bf16 weights, src/tensor/ops/bf16.ts).
 */
export function weightData(w: Tensor): Float32Array | Uint16Array {
  if (w.data instanceof Int32Array) throw new TypeError(`linear: the weight must be float32 or bfloat16, got int32 [${w.shape.join(', ')}]`);
  return w.data;
}

/**
 * y[rows, out] = X[rows, inF]·Wᵀ + bias into a given buffer (W stored (out, inF)): the bias rows are preset
 * and the GEMM accumulates into them (beta = 1). W is float32 (the backend's sgemm) or bf16 bit patterns
 * (`gemmBf16`: X rounded to bf16, float32 accumulation; src/tensor/ops/bf16.ts). Records the FLOPs (as the work
 * of the tensor `weight`, for its FLOP category, when given); no arithmetic in a dry run.
 */
export function linearInto(X: Float32Array, rows: number, W: Float32Array | Uint16Array, out: number, inF: number, bias: Float32Array | null, y: Float32Array,
  weight: object | null = null): void {
  if (bias) fillRowsInto(y, bias, rows, out);
  recordFlops(2 * rows * out * inF, weight);
  if (isDryRun()) return;
  if (W instanceof Uint16Array) gemmBf16(rows, out, inF, X, inF, W, inF, bias ? 1 : 0, y, out);
  else backend().sgemm(false, true, rows, out, inF, 1, X, 0, inF, W, 0, inF, bias ? 1 : 0, y, 0, out);
}

/**
 * y = x·Wᵀ + bias, with W stored (out, in) as in PyTorch's Linear (docs/VAR.md notation).
 * x is [..., in]; y is [..., out].
 */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  const X = assertFloat(x, 'linear');
  const [out, inF] = weight.shape;
  if (weight.ndim !== 2) throw new RangeError(`linear: weight must be 2-d (out, in), got [${weight.shape.join(', ')}]`);
  if (x.shape[x.ndim - 1] !== inF) throw new RangeError(`linear: input has ${x.shape[x.ndim - 1]} features, weight expects ${inF}`);
  if (bias && (bias.ndim !== 1 || bias.shape[0] !== out)) throw new RangeError(`linear: bias must be [${out}], got [${bias.shape.join(', ')}]`);
  const rows = x.size / inF;
  const y = new Float32Array(rows * out);
  if (weight.dtype === 'bfloat16') {
    // bf16 weights are an inference copy: no backward through them
    if (isGradEnabled() && (x.requiresGrad || bias?.requiresGrad)) throw new Error(`linear: ${weight.name ?? 'the weight'} is bf16 (inference only); run under noGrad or use float32 weights`);
    linearInto(X, rows, weightData(weight), out, inF, bias ? bias.f32 : null, y, weight);
    return new Tensor(y, [...x.shape.slice(0, -1), out]);
  }
  const W = assertFloat(weight, 'linear');
  const be = backend();
  linearInto(X, rows, W, out, inF, bias ? bias.f32 : null, y, weight);
  const shape = [...x.shape.slice(0, -1), out];
  const inputs = bias ? [x, weight, bias] : [x, weight];
  return result(y, shape, 'linear', inputs, (g) => {
    let gx: Float32Array | null = null, gw: Float32Array | null = null, gb: Float32Array | null = null;
    if (x.requiresGrad) { gx = new Float32Array(X.length); be.sgemm(false, false, rows, inF, out, 1, g, 0, out, W, 0, inF, 0, gx, 0, inF); }
    if (weight.requiresGrad) { gw = new Float32Array(W.length); be.sgemm(true, false, out, inF, rows, 1, g, 0, out, X, 0, inF, 0, gw, 0, inF); }
    if (bias && bias.requiresGrad) {
      gb = columnSumsInto(g, rows, out, new Float32Array(out));
    }
    return bias ? [gx, gw, gb] : [gx, gw];
  });
}
