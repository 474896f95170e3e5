import './util/setup.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tensor, noGrad } from '../src/tensor/tensor.js';
import { Rng } from '../src/tensor/rng.js';
import { AdamW } from '../src/optim/adamw.js';
import { readSafetensors, readSafetensorsHeader, encodeSafetensors } from '../src/io/safetensors.js';
import { Classifier, evaluateClassifier, classAccuracy, CLASSIFIER_KEYS } from '../src/eval/classifier.js';
import { loadDataset, ImageDataset, FASHION_MNIST_DIR } from '../src/data/datasets.js';
import { trainClassifier, randomShift } from '../src/train/train-classifier.js';
import { formatDuration } from '../src/train/loop.js';

const haveFashion = existsSync(join(FASHION_MNIST_DIR, 'train-labels-idx1-ubyte.gz'));

function randImages(rng: Rng, B: number): Tensor {
  return new Tensor(Float32Array.from({ length: B * 1024 }, () => rng.uniform() * 2 - 1), [B, 1, 32, 32]);
}

test('architecture: shapes, parameter names and count', () => {
  const clf = Classifier.init({ c1: 8, c2: 16, hidden: 32, kernel: 5, numClasses: 10 }, 1);
  assert.deepEqual([...clf.params.keys()], [...CLASSIFIER_KEYS]);
  assert.deepEqual(clf.params.get('conv1.weight')!.shape, [8, 1, 5, 5]);
  assert.deepEqual(clf.params.get('fc1.weight')!.shape, [32, 16 * 8 * 8]);
  // conv1 8·25+8, conv2 16·8·25+16, fc1 32·1024+32, fc2 10·32+10
  assert.equal(clf.numParams, 208 + 3216 + 32800 + 330);
  const { logits, features } = noGrad(() => clf.forward(randImages(new Rng(2), 3)));
  assert.deepEqual(logits.shape, [3, 10]);
  assert.deepEqual(features.shape, [3, 32]);
  assert.ok(features.f32.every((v) => v >= 0), 'features are post-ReLU');
  assert.throws(() => clf.forward(new Tensor(new Float32Array(28 * 28), [1, 1, 28, 28])), /expected images \[B, 1, 32, 32\]/);
  assert.throws(() => Classifier.init({ kernel: 4 }), /kernel must be odd/);
});

test('the same seed gives the same weights; state dict round trip through safetensors', () => {
  const a = Classifier.init({ c1: 4, c2: 8, hidden: 16 }, 7), b = Classifier.init({ c1: 4, c2: 8, hidden: 16 }, 7);
  for (const [k, t] of a.params) assert.deepEqual([...t.f32], [...b.params.get(k)!.f32]);
  const bytes = encodeSafetensors(a.params, { format: 'actvar-classifier/1' });
  const c = Classifier.fromStateDict(readSafetensors(bytes));
  assert.deepEqual(c.config, a.config);
  const x = randImages(new Rng(3), 2);
  assert.deepEqual([...noGrad(() => c.forward(x).logits).f32], [...noGrad(() => a.forward(x).logits).f32]);
  const sd = new Map(a.params);
  sd.delete('fc2.bias');
  assert.throws(() => Classifier.fromStateDict(sd, 'm.safetensors'), /m\.safetensors: missing key "fc2\.bias"/);
  sd.set('fc2.bias', new Tensor(new Float32Array(3), [3]));
  assert.throws(() => Classifier.fromStateDict(sd), /"fc2\.bias" has shape \[3\], expected \[10\]/);
  sd.set('fc2.bias', a.params.get('fc2.bias')!); sd.set('extra', a.params.get('fc2.bias')!);
  assert.throws(() => Classifier.fromStateDict(sd), /unexpected keys extra/);
});

test('one optimisation step lowers the loss on a fixed batch; a small batch is memorised', () => {
  const rng = new Rng(4);
  const clf = Classifier.init({ c1: 4, c2: 8, hidden: 16 }, 5);
  const x = randImages(rng, 16), y = new Tensor(Int32Array.from({ length: 16 }, (_, i) => i % 10), [16]);
  const opt = new AdamW([...clf.params.values()], { lr: 3e-3, weightDecay: 0 });
  const l0 = clf.loss(x, y).loss;
  opt.zeroGrad(); l0.backward(); opt.step();
  const l1 = noGrad(() => clf.loss(x, y).loss.f32[0]);
  assert.ok(l1 < l0.f32[0], `loss did not fall: ${l0.f32[0]} → ${l1}`);
  for (let i = 0; i < 150; i++) { const { loss } = clf.loss(x, y); opt.zeroGrad(); loss.backward(); opt.step(); }
  assert.equal(noGrad(() => clf.loss(x, y).correct), 16);
  assert.equal(classAccuracy(clf, x, y.i32, 5), 1);
  assert.throws(() => classAccuracy(clf, x, [1, 2]), /16 images but 2 labels/);
});

test('randomShift moves content and fills with background', () => {
  const x = new Tensor(new Float32Array(2 * 16).fill(-1), [2, 1, 4, 4]);
  x.f32[5] = 1; // image 0, pixel (1,1)
  x.f32[16 + 10] = 1; // image 1, pixel (2,2)
  const y = randomShift(x, 1, new Rng(1));
  for (let b = 0; b < 2; b++) {
    const img = [...y.f32.subarray(b * 16, b * 16 + 16)];
    assert.equal(img.filter((v) => v === 1).length, 1, 'one bright pixel survives a ±1 shift');
    assert.equal(img.filter((v) => v === -1).length, 15);
  }
  assert.equal(randomShift(x, 0, new Rng(1)), x);
  assert.equal(formatDuration(3725), '1h02m');
  assert.equal(formatDuration(65), '1m05s');
});

test('training on Fashion-MNIST: the loss falls and test accuracy beats chance by far; the weights file loads back', { skip: !haveFashion && 'dataset-fashion-mnist not installed' }, async () => {
  const train = loadDataset('fashion-mnist', 'train', { limit: 6000 });
  const testSet = loadDataset('fashion-mnist', 'test', { limit: 500 });
  const dir = mkdtempSync(join(tmpdir(), 'actvar-clf-'));
  try {
    const out = join(dir, 'classifier.safetensors');
    const r = await trainClassifier({
      train, test: testSet, steps: 120, batchSize: 32, lr: 3e-3, seed: 1, config: { c1: 8, c2: 16, hidden: 64 },
      evalEvery: 60, evalSamples: 200, progress: 'none', log: () => {}, out, logFile: join(dir, 'log.jsonl'),
    });
    const first = mean(r.history.slice(0, 10).map((h) => h.loss)), last = mean(r.history.slice(-10).map((h) => h.loss));
    assert.ok(last < 0.6 * first, `loss did not fall enough: ${first.toFixed(3)} → ${last.toFixed(3)}`);
    assert.ok(r.test.accuracy > 0.65, `test accuracy ${r.test.accuracy}`);
    assert.equal(r.loop.evals.length, 2);
    // the shipped-file format: weights + config in the metadata, loads back to the same accuracy
    const hdr = readSafetensorsHeader(out);
    assert.equal(hdr.metadata?.format, 'actvar-classifier/1');
    assert.deepEqual(JSON.parse(hdr.metadata!.config), { c1: 8, c2: 16, hidden: 64, kernel: 3, numClasses: 10 });
    const back = Classifier.fromStateDict(readSafetensors(out));
    assert.equal(evaluateClassifier(back, testSet).accuracy, r.test.accuracy);
    const lines = readFileSync(join(dir, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(lines.filter((l) => 'loss' in l).length, 120);
    assert.equal(lines.filter((l) => 'eval' in l).length, 2);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('evaluateClassifier counts over the whole split, including a partial last batch', () => {
  const clf = Classifier.init({ c1: 2, c2: 2, hidden: 4, numClasses: 3 }, 1);
  const px = new Uint8Array(7 * 784).map((_, i) => i % 251);
  const ds = new ImageDataset({ name: 't', split: 'test', side: 28, pixels: px, labels: Int32Array.from([0, 1, 2, 0, 1, 2, 0]), classes: ['a', 'b', 'c'] });
  const r = evaluateClassifier(clf, ds, { batchSize: 3 });
  assert.equal(r.n, 7);
  const pred = clf.predict(ds.images([0, 1, 2, 3, 4, 5, 6]));
  const exp = [...pred].filter((p, i) => p === ds.labels[i]).length / 7;
  assert.equal(r.accuracy, exp);
  assert.ok(Number.isFinite(r.loss));
});

function mean(a: number[]): number { return a.reduce((s, v) => s + v, 0) / a.length; }
