/**
 * Improved precision and recall (Kynkäänniemi et al. 2019, "Improved precision and recall metric
 * for assessing generative models", §2): each sample of a set gets a ball whose radius is the
 * distance to its k-th nearest *other* sample of the same set (k = 3); the manifold of the set is
 * the union of the balls.
 *   precision = share of generated samples inside at least one real ball (distance ≤ radius),
 *   recall    = share of real samples inside at least one generated ball.
 *
 * Every decision uses the exact float64 squared distance Σ (a − b)² (no ‖a‖² + ‖b‖² − 2a·b
 * cancellation). Two paths give the same results:
 * - `exact`: plain float64 loops, O(N² D) in JavaScript (the reference);
 * - `gram` (default): strips of float32 Gram matrices A·Bᵀ through the tensor core's sgemm give
 *   approximate distances with a rigorous error bound (|fl(a·b) − a·b| ≤ γ_D Σ|aₖbₖ| ≤ γ_D ‖a‖‖b‖,
 *   γ_D = D·u/(1 − D·u), u = 2⁻²⁴; Higham, "Accuracy and Stability of Numerical Algorithms", §3.1);
 *   only pairs whose decision the bound leaves open are recomputed exactly.
 * Blocked: nothing of size N × N is ever held (a strip of ≤ 2²⁴ floats at a time), so 50k × 50k fits.
 */
import { Tensor, noGrad } from '../tensor/tensor.js';
import { matmul } from '../tensor/ops/matmul.js';

/** Squared distance from row i of A to row j of B (float64 rows of width D). */
function dist2(A: Float64Array, i: number, B: Float64Array, j: number, D: number): number {
  let s = 0;
  const a = i * D, b = j * D;
  for (let t = 0; t < D; t++) { const d = A[a + t] - B[b + t]; s += d * d; }
  return s;
}

const BLOCK = 256;

/**
 * Squared k-NN radii of every row of X (N × D): the k-th smallest squared distance to another row.
 * Each pair is computed once (tiles of BLOCK × BLOCK rows) and updates both rows' k smallest.
 */
export function knnRadii2(X: Float64Array, N: number, D: number, k = 3): Float64Array {
  if (N <= k) throw new RangeError(`knnRadii: need more than k = ${k} samples, got ${N}`);
  const best = new Float64Array(N * k).fill(Infinity); // ascending k smallest of each row
  const push = (i: number, v: number): void => {
    const o = i * k;
    if (v >= best[o + k - 1]) return;
    let p = k - 1;
    while (p > 0 && best[o + p - 1] > v) { best[o + p] = best[o + p - 1]; p--; }
    best[o + p] = v;
  };
  for (let i0 = 0; i0 < N; i0 += BLOCK) {
    const i1 = Math.min(N, i0 + BLOCK);
    for (let j0 = i0; j0 < N; j0 += BLOCK) {
      const j1 = Math.min(N, j0 + BLOCK);
      for (let i = i0; i < i1; i++) {
        for (let j = Math.max(j0, i + 1); j < j1; j++) { const v = dist2(X, i, X, j, D); push(i, v); push(j, v); }
      }
    }
  }
  const r = new Float64Array(N);
  for (let i = 0; i < N; i++) r[i] = best[i * k + k - 1];
  return r;
}

/** Share of the rows of Q (M × D) inside at least one ball (centre row of X, squared radius r2). */
export function coverage(X: Float64Array, r2: Float64Array, N: number, Q: Float64Array, M: number, D: number): number {
  const inside = new Uint8Array(M);
  for (let q0 = 0; q0 < M; q0 += BLOCK) {
    const q1 = Math.min(M, q0 + BLOCK);
    for (let x0 = 0; x0 < N; x0 += BLOCK) {
      const x1 = Math.min(N, x0 + BLOCK);
      for (let q = q0; q < q1; q++) {
        if (inside[q]) continue;
        for (let x = x0; x < x1; x++) if (dist2(Q, q, X, x, D) <= r2[x]) { inside[q] = 1; break; }
      }
    }
  }
  let c = 0;
  for (let q = 0; q < M; q++) c += inside[q];
  return c / M;
}

export function toFloat64(a: Float32Array | Float64Array): Float64Array {
  return a instanceof Float64Array ? a : Float64Array.from(a);
}

/** A·Bᵀ of row-major float32 matrices A [nA, D] and B [nB, D] (the tensor core's sgemm). */
function gramStrip(A: Float32Array, nA: number, B: Float32Array, nB: number, D: number): Float32Array {
  return noGrad(() => matmul(new Tensor(A, [nA, D]), new Tensor(B, [nB, D]), false, true)).f32;
}

function rowNorms(X: Float64Array, N: number, D: number): Float64Array {
  const n = new Float64Array(N);
  for (let i = 0; i < N; i++) { let s = 0; for (let t = 0; t < D; t++) s += X[i * D + t] * X[i * D + t]; n[i] = Math.sqrt(s); }
  return n;
}

/** Bound on |approximate − exact| squared distance per unit of ‖a‖‖b‖ (2 γ_D, doubled for safety). */
function gramTolerance(D: number): number {
  const u = 2 ** -24, g = (D * u) / (1 - D * u);
  return 4 * g + 1e-12;
}

function stripRows(N: number): number { return Math.max(1, Math.min(1024, Math.floor(2 ** 24 / Math.max(1, N)))); }

/** knnRadii2 through float32 Gram strips, decided exactly (see the header); same result as knnRadii2. */
export function knnRadii2Gram(X: Float64Array, X32: Float32Array, N: number, D: number, k = 3): Float64Array {
  if (N <= k) throw new RangeError(`knnRadii: need more than k = ${k} samples, got ${N}`);
  const norms = rowNorms(X, N, D), tol = gramTolerance(D), R = stripRows(N), r = new Float64Array(N);
  let maxNorm = 0;
  for (const v of norms) maxNorm = Math.max(maxNorm, v);
  const best = new Float64Array(k), cand: number[] = [];
  for (let i0 = 0; i0 < N; i0 += R) {
    const n = Math.min(R, N - i0), G = gramStrip(X32.subarray(i0 * D, (i0 + n) * D), n, X32, N, D);
    for (let a = 0; a < n; a++) {
      const i = i0 + a, ni2 = norms[i] * norms[i], row = a * N;
      best.fill(Infinity);
      for (let j = 0; j < N; j++) {
        if (j === i) continue;
        const v = ni2 + norms[j] * norms[j] - 2 * G[row + j];
        if (v < best[k - 1]) { let p = k - 1; while (p > 0 && best[p - 1] > v) { best[p] = best[p - 1]; p--; } best[p] = v; }
      }
      const limit = best[k - 1] + 2 * tol * norms[i] * maxNorm;
      cand.length = 0;
      for (let j = 0; j < N; j++) if (j !== i && ni2 + norms[j] * norms[j] - 2 * G[row + j] <= limit) cand.push(dist2(X, i, X, j, D));
      cand.sort((x, y) => x - y);
      r[i] = cand[k - 1];
    }
  }
  return r;
}

/** coverage through float32 Gram strips, decided exactly; same result as coverage. */
export function coverageGram(X: Float64Array, X32: Float32Array, r2: Float64Array, N: number, Q: Float64Array, Q32: Float32Array, M: number, D: number): number {
  const nx = rowNorms(X, N, D), nq = rowNorms(Q, M, D), tol = gramTolerance(D), R = stripRows(N);
  let c = 0;
  for (let q0 = 0; q0 < M; q0 += R) {
    const n = Math.min(R, M - q0), G = gramStrip(Q32.subarray(q0 * D, (q0 + n) * D), n, X32, N, D);
    for (let a = 0; a < n; a++) {
      const q = q0 + a, nq2 = nq[q] * nq[q], row = a * N;
      for (let x = 0; x < N; x++) {
        const v = nq2 + nx[x] * nx[x] - 2 * G[row + x], t = tol * nq[q] * nx[x];
        if (v - t > r2[x]) continue;
        if (v + t <= r2[x] || dist2(Q, q, X, x, D) <= r2[x]) { c++; break; }
      }
    }
  }
  return c / M;
}

export interface PrecisionRecall { precision: number; recall: number }

/**
 * Improved precision/recall of `fake` against `real` (row-major feature rows of width D). `realRadii2`
 * may be passed in (the squared k-NN radii of `real`, e.g. from the reference-statistics cache).
 */
export function precisionRecall(real: Float32Array | Float64Array, fake: Float32Array | Float64Array, D: number, opts: { k?: number; realRadii2?: Float64Array; method?: 'gram' | 'exact' } = {}): PrecisionRecall {
  const k = opts.k ?? 3;
  if (real.length % D !== 0 || fake.length % D !== 0) throw new RangeError(`precisionRecall: feature arrays are not rows of width ${D}`);
  const R = toFloat64(real), F = toFloat64(fake), nR = R.length / D, nF = F.length / D;
  const representable = (X: Float64Array): boolean => X.every((v) => Math.fround(v) === v);
  if (opts.method === 'exact' || !representable(R) || !representable(F)) {
    const rr = opts.realRadii2 ?? knnRadii2(R, nR, D, k), fr = knnRadii2(F, nF, D, k);
    return { precision: coverage(R, rr, nR, F, nF, D), recall: coverage(F, fr, nF, R, nR, D) };
  }
  const R32 = Float32Array.from(R), F32 = Float32Array.from(F); // exact: the features are float32 values
  const rr = opts.realRadii2 ?? knnRadii2Gram(R, R32, nR, D, k), fr = knnRadii2Gram(F, F32, nF, D, k);
  if (rr.length !== nR) throw new RangeError(`precisionRecall: ${rr.length} real radii for ${nR} real samples`);
  return { precision: coverageGram(R, R32, rr, nR, F, F32, nF, D), recall: coverageGram(F, F32, fr, nF, R, R32, nR, D) };
}
