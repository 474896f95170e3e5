/**
 * The numbers `actvar eval` reports, from feature/logit matrices of a generated and a reference set:
 * FID (fid.ts, pytorch-fid's formula), Inception Score of the generated set (inception-score.ts,
 * 10 splits) and improved precision/recall (precision-recall.ts, k = 3). With the `classifier`
 * extractor the FID is "FID with a Fashion-MNIST classifier" (or MNIST), not the Inception FID.
 */
import { featureStats, frechetDistance } from './fid.js';
import { inceptionScore } from './inception-score.js';
import { precisionRecall } from './precision-recall.js';

export interface FeatureSet {
  /** N × D, row-major. */
  features: Float32Array;
  /** N × C, row-major (only needed for the generated set's Inception Score). */
  logits?: Float32Array;
}

export interface QualityMetrics {
  fid: number;
  /** pytorch-fid's ε·I offset was needed. */
  fidOffsetApplied: boolean;
  isMean: number;
  isStd: number;
  precision: number;
  recall: number;
  nGen: number;
  nRef: number;
}

export function qualityMetrics(gen: FeatureSet, ref: FeatureSet, dim: number, numClasses: number, opts: { splits?: number; k?: number } = {}): QualityMetrics {
  const nGen = gen.features.length / dim, nRef = ref.features.length / dim;
  if (!Number.isInteger(nGen) || !Number.isInteger(nRef)) throw new RangeError(`qualityMetrics: feature arrays are not rows of width ${dim}`);
  const fid = frechetDistance(featureStats(gen.features, dim), featureStats(ref.features, dim));
  if (!gen.logits) throw new RangeError('qualityMetrics: the generated set needs logits (Inception Score)');
  const is = inceptionScore(gen.logits, numClasses, Math.min(opts.splits ?? 10, nGen));
  const pr = precisionRecall(ref.features, gen.features, dim, { k: opts.k ?? 3 });
  return { fid: fid.fid, fidOffsetApplied: fid.offsetApplied, isMean: is.mean, isStd: is.std, precision: pr.precision, recall: pr.recall, nGen, nRef };
}

/** Class of the i-th generated image: classes spread evenly (i mod C), so every index range is balanced. */
export function evalLabel(i: number, numClasses: number): number {
  return i % numClasses;
}
