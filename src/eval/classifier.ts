/**
 * A LeNet-sized CNN for 32×32 grey images (LeCun et al., 1998, "Gradient-based learning applied to
 * document recognition": conv → pool → conv → pool → fc → fc). It scores generated samples (class
 * accuracy) and its penultimate activations are the feature space for FID-style metrics.
 *
 *   x [B,1,32,32] → conv1 k×k (pad k/2) → 2×2 average pool → ReLU → [B,c1,16,16]
 *                 → conv2 k×k (pad k/2) → 2×2 average pool → ReLU → [B,c2,8,8]
 *                 → flatten → fc1 → ReLU (= features, [B,hidden]) → fc2 → logits [B,numClasses]
 *
 * Pooling is `areaDownsample` (adaptive average pooling, docs/VAR.md §4.2), which for 32→16 and
 * 16→8 is exactly a 2×2 mean. Parameters live in a Map<string, Tensor> with PyTorch-style keys
 * (`conv1.weight`, `conv1.bias`, …, `fc2.bias`); the architecture is fully recoverable from the shapes.
 */
import { Tensor, param, noGrad } from '../tensor/tensor.js';
import { Rng } from '../tensor/rng.js';
import { relu } from '../tensor/ops/elementwise.js';
import { reshape } from '../tensor/ops/shape.js';
import { linear } from '../tensor/ops/matmul.js';
import { conv2d } from '../tensor/ops/conv.js';
import { areaDownsample } from '../tensor/ops/resample.js';
import { crossEntropy } from '../tensor/ops/loss.js';
import { argmax } from '../tensor/ops/indexing.js';
import type { ImageDataset } from '../data/datasets.js';
import { readWeights, recordLoaded } from '../io/weights.js';

export interface ClassifierConfig {
  /** Channels of the two conv layers. */
  c1: number;
  c2: number;
  /** Width of fc1 (the feature dimension). */
  hidden: number;
  /** Conv kernel size (odd). */
  kernel: number;
  numClasses: number;
}

export const DEFAULT_CLASSIFIER_CONFIG: Readonly<ClassifierConfig> = Object.freeze({ c1: 32, c2: 64, hidden: 128, kernel: 3, numClasses: 10 });

/** Input side the classifier expects. */
export const CLASSIFIER_IMAGE_SIZE = 32;

export const CLASSIFIER_KEYS = ['conv1.weight', 'conv1.bias', 'conv2.weight', 'conv2.bias', 'fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias'] as const;

function expectedShapes(c: ClassifierConfig): Record<string, number[]> {
  const k = c.kernel, flat = c.c2 * (CLASSIFIER_IMAGE_SIZE / 4) ** 2;
  return {
    'conv1.weight': [c.c1, 1, k, k], 'conv1.bias': [c.c1],
    'conv2.weight': [c.c2, c.c1, k, k], 'conv2.bias': [c.c2],
    'fc1.weight': [c.hidden, flat], 'fc1.bias': [c.hidden],
    'fc2.weight': [c.numClasses, c.hidden], 'fc2.bias': [c.numClasses],
  };
}

function checkConfig(c: ClassifierConfig): void {
  for (const k of ['c1', 'c2', 'hidden', 'kernel', 'numClasses'] as const) {
    if (!Number.isInteger(c[k]) || c[k] < 1) throw new RangeError(`classifier config: ${k} must be a positive integer, got ${c[k]}`);
  }
  if (c.kernel % 2 !== 1) throw new RangeError(`classifier config: kernel must be odd (same-size convs), got ${c.kernel}`);
}

export class Classifier {
  readonly config: Readonly<ClassifierConfig>;
  readonly params: Map<string, Tensor>;

  private constructor(config: ClassifierConfig, params: Map<string, Tensor>) {
    this.config = Object.freeze({ ...config });
    this.params = params;
  }

  /**
   * Fresh weights: Kaiming-normal (std √(2/fan_in), He et al. 2015) for the ReLU layers,
   * std √(1/fan_in) for the output layer, zero biases.
   */
  static init(config: Partial<ClassifierConfig> = {}, seed = 0): Classifier {
    const c = { ...DEFAULT_CLASSIFIER_CONFIG, ...config };
    checkConfig(c);
    const rng = new Rng(seed);
    const params = new Map<string, Tensor>();
    for (const [name, shape] of Object.entries(expectedShapes(c))) {
      const n = shape.reduce((a, b) => a * b, 1);
      const d = new Float32Array(n);
      if (name.endsWith('weight')) {
        const fanIn = n / shape[0];
        const std = Math.sqrt((name === 'fc2.weight' ? 1 : 2) / fanIn);
        for (let i = 0; i < n; i++) d[i] = rng.normal() * std;
      }
      params.set(name, param(d, shape, name));
    }
    return new Classifier(c, params);
  }

  /** Wrap a state dict (e.g. from a safetensors file), inferring the config from the shapes. */
  static fromStateDict(sd: Map<string, Tensor>, source = 'classifier state dict'): Classifier {
    for (const k of CLASSIFIER_KEYS) if (!sd.has(k)) throw new Error(`${source}: missing key "${k}" (expected ${CLASSIFIER_KEYS.join(', ')})`);
    const w1 = sd.get('conv1.weight')!.shape, w2 = sd.get('conv2.weight')!.shape, f1 = sd.get('fc1.weight')!.shape, f2 = sd.get('fc2.weight')!.shape;
    const c: ClassifierConfig = { c1: w1[0], c2: w2[0], hidden: f1[0], kernel: w1[2], numClasses: f2[0] };
    checkConfig(c);
    const params = new Map<string, Tensor>();
    for (const [name, shape] of Object.entries(expectedShapes(c))) {
      const t = sd.get(name)!;
      if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
        throw new Error(`${source}: "${name}" has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}] for config ${JSON.stringify(c)}`);
      }
      if (t.dtype !== 'float32') throw new Error(`${source}: "${name}" must be float32, got ${t.dtype}`);
      params.set(name, param(t.f32, shape, name));
    }
    const extra = [...sd.keys()].filter((k) => !(CLASSIFIER_KEYS as readonly string[]).includes(k));
    if (extra.length) throw new Error(`${source}: unexpected keys ${extra.join(', ')} (a classifier has only ${CLASSIFIER_KEYS.join(', ')})`);
    return new Classifier(c, params);
  }

  get numParams(): number { let n = 0; for (const p of this.params.values()) n += p.size; return n; }

  private p(name: string): Tensor { return this.params.get(name)!; }

  /** Logits [B, numClasses] and features [B, hidden] of images [B, 1, 32, 32] in [−1, 1]. */
  forward(x: Tensor): { logits: Tensor; features: Tensor } {
    const S = CLASSIFIER_IMAGE_SIZE;
    if (x.ndim !== 4 || x.shape[1] !== 1 || x.shape[2] !== S || x.shape[3] !== S) {
      throw new RangeError(`classifier: expected images [B, 1, ${S}, ${S}], got [${x.shape.join(', ')}]`);
    }
    const B = x.shape[0], pad = this.config.kernel >> 1;
    // pooling before the non-linearity, as LeNet's subsampling layers (and 4× less ReLU work)
    let h = relu(areaDownsample(conv2d(x, this.p('conv1.weight'), this.p('conv1.bias'), { padding: pad }), S / 2, S / 2));
    h = relu(areaDownsample(conv2d(h, this.p('conv2.weight'), this.p('conv2.bias'), { padding: pad }), S / 4, S / 4));
    const features = relu(linear(reshape(h, [B, -1]), this.p('fc1.weight'), this.p('fc1.bias')));
    const logits = linear(features, this.p('fc2.weight'), this.p('fc2.bias'));
    return { logits, features };
  }

  /** Mean cross-entropy and the number of correct predictions on one labelled batch. */
  loss(x: Tensor, labels: Tensor): { loss: Tensor; correct: number } {
    const { logits } = this.forward(x);
    return { loss: crossEntropy(logits, labels), correct: countCorrect(logits, labels) };
  }

  /** Predicted classes (int32 [B]), without gradients. */
  predict(x: Tensor): Int32Array {
    return noGrad(() => argmax(this.forward(x).logits, -1)).i32;
  }

  /** Penultimate features [B, hidden] (for FID-style metrics), without gradients. */
  features(x: Tensor): Tensor {
    return noGrad(() => this.forward(x).features);
  }
}

/** Format tag written into a classifier's safetensors metadata by train-classifier. */
export const CLASSIFIER_FORMAT = 'actvar-classifier/1';

/**
 * The classifier loader: a classifier written by `actvar train-classifier` (safetensors, through the one format check
 * of io/weights.ts; the architecture is read from the tensor shapes; a NaN/Inf weight is refused naming the tensor).
 * The file's metadata: `loadedFrom(classifier)` (io/weights.ts).
 */
export function loadClassifier(src: string | Uint8Array): Classifier {
  const file = readWeights(src, 'any');
  const { format } = file.metadata;
  if (format !== undefined && format !== CLASSIFIER_FORMAT) {
    throw new Error(`${file.source}: metadata format is "${format}", expected "${CLASSIFIER_FORMAT}" (is this a classifier file?)`);
  }
  return recordLoaded(Classifier.fromStateDict(file.tensors, file.source), file);
}

/** Number of rows whose argmax equals the label. */
export function countCorrect(logits: Tensor, labels: Tensor): number {
  const pred = noGrad(() => argmax(logits, -1)).i32, y = labels.i32;
  let c = 0;
  for (let i = 0; i < y.length; i++) if (pred[i] === y[i]) c++;
  return c;
}

/** Accuracy and mean cross-entropy of the classifier on a dataset split (or its first `limit` examples). */
export function evaluateClassifier(clf: Classifier, ds: ImageDataset, opts: { batchSize?: number; limit?: number } = {}): { accuracy: number; loss: number; n: number } {
  const data = opts.limit !== undefined ? ds.head(opts.limit) : ds;
  let correct = 0, lossSum = 0;
  noGrad(() => {
    for (const b of data.batches(opts.batchSize ?? 250)) {
      const { loss, correct: c } = clf.loss(b.images, b.labels);
      correct += c;
      lossSum += loss.f32[0] * b.labels.size;
    }
  });
  return { accuracy: correct / data.length, loss: lossSum / data.length, n: data.length };
}

/**
 * Class accuracy of generated images: the fraction whose predicted class is the class they were
 * generated for. `images` [N, 1, 32, 32] in [−1, 1], `labels` the intended classes.
 */
export function classAccuracy(clf: Classifier, images: Tensor, labels: ArrayLike<number>, batchSize = 250): number {
  const N = images.shape[0];
  if (labels.length !== N) throw new RangeError(`classAccuracy: ${N} images but ${labels.length} labels`);
  const pred = predictBatched(clf, images, batchSize);
  let correct = 0;
  for (let i = 0; i < N; i++) if (pred[i] === labels[i]) correct++;
  return correct / N;
}

/** The classifier's predicted class of every image of [N, ...], `batchSize` images per forward pass. */
export function predictBatched(clf: Classifier, images: Tensor, batchSize = 250): Int32Array {
  const N = images.shape[0], per = images.size / N, X = images.f32, out = new Int32Array(N);
  for (let i = 0; i < N; i += batchSize) {
    const n = Math.min(batchSize, N - i);
    out.set(clf.predict(new Tensor(X.subarray(i * per, (i + n) * per), [n, ...images.shape.slice(1)])), i);
  }
  return out;
}
