/**
 * The `classifier` feature extractor: the shipped Fashion-MNIST (or MNIST) classifier's penultimate
 * activations (fc1 after ReLU, D = hidden) and its logits (C = 10). Metrics computed on them are
 * "FID with a Fashion-MNIST classifier" (or "… with an MNIST classifier"): comparable between
 * models of this project evaluated with the same weights (same `weightsHash`), never with the
 * Inception FID of papers.
 *
 * Input conversion, as the classifier saw its training data (src/data/datasets.ts): RGB → grey
 * (taken as is when R = G = B, else ITU-R BT.601 luma 0.299 R + 0.587 G + 0.114 B), 28×28 images
 * centred on the 32×32 canvas with background 0, then x·2 − 1 → [−1, 1]; 32×32 images as they are.
 */
import { Tensor, noGrad } from '../tensor/tensor.js';
import { CLASSIFIER_IMAGE_SIZE, type Classifier } from './classifier.js';
import type { FeatureExtractor } from './features.js';

/** Images per forward pass inside `extract`. */
const CHUNK = 250;

export class ClassifierExtractor implements FeatureExtractor {
  readonly name = 'classifier';
  readonly featureDim: number;
  readonly numClasses: number;

  constructor(readonly classifier: Classifier, readonly weightsHash: string) {
    this.featureDim = classifier.config.hidden;
    this.numClasses = classifier.config.numClasses;
  }

  /** [B, C, H, W] in [0, 1] (C = 1 or 3, H = W = 28 or 32) → the classifier's input [B, 1, 32, 32] in [−1, 1]. */
  static toClassifierInput(images: Tensor): Tensor {
    const S = CLASSIFIER_IMAGE_SIZE;
    if (images.ndim !== 4 || (images.shape[1] !== 1 && images.shape[1] !== 3)) {
      throw new RangeError(`classifier extractor: expected images [B, 1 or 3, H, W], got [${images.shape.join(', ')}]`);
    }
    const [B, C, H, W] = images.shape;
    if (H !== W || (H !== S && H !== 28)) throw new RangeError(`classifier extractor: expected 28×28 or ${S}×${S} images (the classifier's training size), got ${H}×${W}`);
    const pad = (S - H) >> 1, x = images.f32, hw = H * W, out = new Float32Array(B * S * S);
    for (let b = 0; b < B; b++) {
      const o = b * C * hw, dst = b * S * S;
      out.fill(-1, dst, dst + S * S);
      for (let y = 0; y < H; y++) {
        for (let xx = 0; xx < W; xx++) {
          const i = o + y * W + xx;
          let v = x[i];
          if (C === 3) { const g = x[i + hw], bl = x[i + 2 * hw]; if (g !== v || bl !== v) v = 0.299 * v + 0.587 * g + 0.114 * bl; }
          out[dst + (y + pad) * S + xx + pad] = v * 2 - 1;
        }
      }
    }
    return new Tensor(out, [B, 1, S, S]);
  }

  extract(images: Tensor): { features: Float32Array; logits: Float32Array } {
    const x = ClassifierExtractor.toClassifierInput(images), B = x.shape[0], per = x.size / B;
    const features = new Float32Array(B * this.featureDim), logits = new Float32Array(B * this.numClasses);
    noGrad(() => {
      for (let i = 0; i < B; i += CHUNK) {
        const n = Math.min(CHUNK, B - i);
        const r = this.classifier.forward(new Tensor(x.f32.subarray(i * per, (i + n) * per), [n, 1, CLASSIFIER_IMAGE_SIZE, CLASSIFIER_IMAGE_SIZE]));
        features.set(r.features.f32, i * this.featureDim);
        logits.set(r.logits.f32, i * this.numClasses);
      }
    });
    return { features, logits };
  }
}
