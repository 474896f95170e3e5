/** A toy 28×28 four-class image set for the trainer tests: class y has a bright 8×8 square in quadrant y on noise. */
import { Rng } from '../../src/tensor/rng.js';
import { ImageDataset } from '../../src/data/datasets.js';

export function toy(n: number, seed: number, split: 'train' | 'test' = 'train'): ImageDataset {
  const rng = new Rng(seed), s = 28;
  const px = new Uint8Array(n * s * s), labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const y = i % 4; labels[i] = y;
    const by = (y >> 1) * 14 + 3, bx = (y & 1) * 14 + 3;
    for (let p = 0; p < s * s; p++) px[i * s * s + p] = rng.int(40);
    for (let r = 0; r < 8; r++) for (let c = 0; c < 8; c++) px[i * s * s + (by + r) * s + bx + c] = 160 + rng.int(90);
  }
  return new ImageDataset({ name: 'toy', split, side: s, pixels: px, labels, classes: ['a', 'b', 'c', 'd'] });
}
