/**
 * Fréchet distance between the Gaussians fitted to two feature sets (Heusel et al. 2017, "GANs
 * trained by a two time-scale update rule converge to a local Nash equilibrium", eq. 6):
 *
 *   d² = ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^{1/2})
 *
 * computed as pytorch-fid's `calculate_frechet_distance` (mseitzer/pytorch-fid, src/pytorch_fid/fid_score.py):
 * means and covariances with N − 1 (`np.cov(rowvar=False)`), float64 throughout; the square root of
 * the product as scipy's `sqrtm` gives it (trace only, see linalg.ts `traceSqrtProduct`); when that
 * root is not finite (pytorch-fid: "singular product"), ε·I (ε = 1e-6) is added to both covariances
 * and the root is taken again; the real part is used, and an imaginary diagonal component above 1e-3
 * is an error, as there.
 *
 * With "classifier" features the result is "FID with a Fashion-MNIST (or MNIST) classifier", not the
 * Inception FID of the literature; only "inception" features give numbers comparable to papers.
 */
import { traceSqrtProduct } from './linalg.js';

export interface GaussianStats {
  count: number;
  dim: number;
  /** Mean, float64 [D]. */
  mean: Float64Array;
  /** Covariance with N − 1 (unbiased, as np.cov), float64 [D, D] row-major. */
  cov: Float64Array;
}

/** Mean and covariance (N − 1) of N feature rows of width D (row-major), in float64, two passes. */
export function featureStats(features: Float32Array | Float64Array, dim: number): GaussianStats {
  if (dim < 1 || features.length % dim !== 0) throw new RangeError(`featureStats: ${features.length} values are not rows of width ${dim}`);
  const N = features.length / dim;
  if (N < 2) throw new RangeError(`featureStats: need at least 2 feature rows for a covariance, got ${N}`);
  const mean = new Float64Array(dim);
  for (let i = 0; i < N; i++) { const o = i * dim; for (let j = 0; j < dim; j++) mean[j] += features[o + j]; }
  for (let j = 0; j < dim; j++) mean[j] /= N;
  const cov = new Float64Array(dim * dim), x = new Float64Array(dim);
  for (let i = 0; i < N; i++) {
    const o = i * dim;
    for (let j = 0; j < dim; j++) x[j] = features[o + j] - mean[j];
    for (let a = 0; a < dim; a++) { const xa = x[a], row = a * dim; for (let b = 0; b <= a; b++) cov[row + b] += xa * x[b]; }
  }
  for (let a = 0; a < dim; a++) for (let b = 0; b <= a; b++) { const v = cov[a * dim + b] / (N - 1); cov[a * dim + b] = v; cov[b * dim + a] = v; }
  return { count: N, dim, mean, cov };
}

export interface FidResult {
  fid: number;
  /** True when the ε·I offset was needed (the product's root was not finite). */
  offsetApplied: boolean;
}

/** pytorch-fid's `calculate_frechet_distance(mu1, sigma1, mu2, sigma2, eps)`. */
export function frechetDistance(a: GaussianStats, b: GaussianStats, eps = 1e-6): FidResult {
  const D = a.dim;
  if (b.dim !== D) throw new RangeError(`frechetDistance: feature dimensions differ (${a.dim} vs ${b.dim}); both sets must come from the same extractor`);
  let diff2 = 0, tr1 = 0, tr2 = 0;
  for (let j = 0; j < D; j++) { const d = a.mean[j] - b.mean[j]; diff2 += d * d; tr1 += a.cov[j * D + j]; tr2 += b.cov[j * D + j]; }
  let root = traceSqrtProduct(a.cov, b.cov, D), offsetApplied = false;
  if (!Number.isFinite(root.trace)) {
    offsetApplied = true;
    const s1 = Float64Array.from(a.cov), s2 = Float64Array.from(b.cov);
    for (let j = 0; j < D; j++) { s1[j * D + j] += eps; s2[j * D + j] += eps; }
    root = traceSqrtProduct(s1, s2, D);
    if (!Number.isFinite(root.trace)) throw new RangeError('frechetDistance: the covariances give no finite matrix square root even with the ε·I offset (are the features finite?)');
  }
  if (root.maxImagDiagonal > 1e-3) throw new RangeError(`frechetDistance: imaginary component ${root.maxImagDiagonal} in the matrix square root (covariances not positive semi-definite?)`);
  return { fid: diff2 + tr1 + tr2 - 2 * root.trace, offsetApplied };
}
