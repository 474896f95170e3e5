/** Matrix products through the backend's sgemm: matmul, batched matmul, linear. */
import { backend } from '../../backend/index.js';
import { Tensor, result, assertFloat, sizeOf } from '../tensor.js';
import { recordFlops, isDryRun } from '../flops.js';

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
  recordFlops(2 * nb * M * N * K);
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
 * gb[j] = Σ_r g[r, j], accumulated in float32 row after row (as a plain `gb[j] += g[r·out + j]` loop),
 * four rows per pass over gb so that gb is loaded and stored a quarter as often.
 */
function biasGrad(g: Float32Array, rows: number, out: number): Float32Array {
  const gb = new Float32Array(out), f = Math.fround, nk = backend().native;
  if (nk) { nk.colSum(g, gb, rows, out); return gb; } // the same sums in the same order
  let r = 0;
  for (; r + 4 <= rows; r += 4) {
    const o0 = r * out, o1 = o0 + out, o2 = o1 + out, o3 = o2 + out;
    for (let j = 0; j < out; j++) gb[j] = f(f(f(f(gb[j] + g[o0 + j]) + g[o1 + j]) + g[o2 + j]) + g[o3 + j]);
  }
  for (; r < rows; r++) { const o = r * out; for (let j = 0; j < out; j++) gb[j] += g[o + j]; }
  return gb;
}

/**
 * y = x·Wᵀ + bias, with W stored (out, in) as in PyTorch's Linear (var-reference.md notation).
 * x is [..., in]; y is [..., out].
 */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  const X = assertFloat(x, 'linear'), W = assertFloat(weight, 'linear');
  const [out, inF] = weight.shape;
  if (weight.ndim !== 2) throw new RangeError(`linear: weight must be 2-d (out, in), got [${weight.shape.join(', ')}]`);
  if (x.shape[x.ndim - 1] !== inF) throw new RangeError(`linear: input has ${x.shape[x.ndim - 1]} features, weight expects ${inF}`);
  if (bias && (bias.ndim !== 1 || bias.shape[0] !== out)) throw new RangeError(`linear: bias must be [${out}], got [${bias.shape.join(', ')}]`);
  const rows = x.size / inF;
  const y = new Float32Array(rows * out);
  const be = backend();
  if (bias) {
    const bb = bias.f32;
    for (let r = 0; r < rows; r++) y.set(bb, r * out);
  }
  recordFlops(2 * rows * out * inF);
  if (!isDryRun()) be.sgemm(false, true, rows, out, inF, 1, X, 0, inF, W, 0, inF, bias ? 1 : 0, y, 0, out);
  const shape = [...x.shape.slice(0, -1), out];
  const inputs = bias ? [x, weight, bias] : [x, weight];
  return result(y, shape, 'linear', inputs, (g) => {
    let gx: Float32Array | null = null, gw: Float32Array | null = null, gb: Float32Array | null = null;
    if (x.requiresGrad) { gx = new Float32Array(X.length); be.sgemm(false, false, rows, inF, out, 1, g, 0, out, W, 0, inF, 0, gx, 0, inF); }
    if (weight.requiresGrad) { gw = new Float32Array(W.length); be.sgemm(true, false, out, inF, rows, 1, g, 0, out, X, 0, inF, 0, gw, 0, inF); }
    if (bias && bias.requiresGrad) {
      gb = biasGrad(g, rows, out);
    }
    return bias ? [gx, gw, gb] : [gx, gw];
  });
}
