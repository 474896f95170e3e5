/**
 * The feature-extractor interface of the quality metrics (FID, Inception Score, precision/recall):
 * an extractor maps images to penultimate features (FID, P/R) and logits (IS). Two implementations:
 * `classifier` (the shipped Fashion-MNIST / MNIST classifiers, src/eval/classifier-extractor.ts; the
 * numbers are "FID with a Fashion-MNIST classifier", never Inception FID) and `inception`
 * (pytorch-fid's FID Inception, src/eval/inception.ts).
 */
import type { Tensor } from '../tensor/tensor.js';

export interface FeatureExtractor {
  readonly name: 'classifier' | 'inception' | string;
  /** D of the penultimate features. */
  readonly featureDim: number;
  /** C of the logits (1008 for the FID Inception). */
  readonly numClasses: number;
  /** sha256 hex of the weights' bytes (keys the reference-statistics cache). */
  readonly weightsHash: string;
  /**
   * images: [B, C, H, W] float32 in [0, 1], C = 1 or 3, any H, W (each extractor resizes/converts as
   * its reference does). Returns B·D features and B·C logits, row-major.
   */
  extract(images: Tensor): { features: Float32Array; logits: Float32Array };
}
