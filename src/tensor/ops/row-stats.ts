/**
 * The one row-statistics routine of the normalisations (LayerNorm, GroupNorm, AdaLN modulation, the
 * ActVAR gate): mean and 1/√(var + eps) of n contiguous float32 values, biased variance (torch's
 * LayerNorm/GroupNorm, docs/VAR.md §3.2), in float64 with the sums shifted by the first value, so no
 * cancellation eats the variance when the mean is large.
 */
export function rowStatsInto(X: Float32Array, o: number, n: number, eps: number, mean: Float64Array, rstd: Float64Array, r: number): void {
  const k = n > 0 ? X[o] : 0;
  let s = 0, s2 = 0;
  for (let j = 0; j < n; j++) { const d = X[o + j] - k; s += d; s2 += d * d; }
  const md = s / n;
  mean[r] = k + md;
  rstd[r] = 1 / Math.sqrt(Math.max(0, s2 / n - md * md) + eps);
}
