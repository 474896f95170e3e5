/**
 * Improved precision and recall (Kynkäänniemi et al. 2019, "Improved precision and recall metric
 * for assessing generative models", §2): each sample of a set gets a ball whose radius is the
 * distance to its k-th nearest *other* sample of the same set (k = 3); the manifold of the set is
 * the union of the balls.
 *   precision = share of generated samples inside at least one real ball (distance ≤ radius),
 *   recall    = share of real samples inside at least one generated ball.
 *
 * Distances are Euclidean in float64, Σ (a − b)² (no ‖a‖² + ‖b‖² − 2a·b cancellation). Blocked:
 * nothing of size N × N is ever held (the k-NN radii keep k running minima per row), so 50k × 50k
 * fits in memory; the cost is O(N² D).
 */

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

export interface PrecisionRecall { precision: number; recall: number }

/**
 * Improved precision/recall of `fake` against `real` (row-major feature rows of width D). `realRadii2`
 * may be passed in (the squared k-NN radii of `real`, e.g. from the reference-statistics cache).
 */
export function precisionRecall(real: Float32Array | Float64Array, fake: Float32Array | Float64Array, D: number, opts: { k?: number; realRadii2?: Float64Array } = {}): PrecisionRecall {
  const k = opts.k ?? 3;
  if (real.length % D !== 0 || fake.length % D !== 0) throw new RangeError(`precisionRecall: feature arrays are not rows of width ${D}`);
  const R = toFloat64(real), F = toFloat64(fake), nR = R.length / D, nF = F.length / D;
  const rr = opts.realRadii2 ?? knnRadii2(R, nR, D, k);
  if (rr.length !== nR) throw new RangeError(`precisionRecall: ${rr.length} real radii for ${nR} real samples`);
  const fr = knnRadii2(F, nF, D, k);
  return { precision: coverage(R, rr, nR, F, nF, D), recall: coverage(F, fr, nF, R, nR, D) };
}
