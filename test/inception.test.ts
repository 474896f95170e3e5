import { test } from 'node:test';
import './util/setup.js';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { Tensor, concat, noGrad, slice } from '../src/tensor/index.js';
import { Rng } from '../src/tensor/rng.js';
import { avgPool2d, globalAvgPool, maxPool2d } from '../src/tensor/ops/pool.js';
import { bilinearResize, bilinearTaps } from '../src/tensor/ops/bilinear.js';
import { readSafetensors } from '../src/io/index.js';
import { InceptionExtractor, inceptionFromStateDict, loadInceptionExtractor, type InceptionV3FID } from '../src/eval/inception.js';
import { encodePng } from '../src/image/png.js';
import { fixturesDir, fixtureOrSkip, repoRoot } from './util/fixtures.js';

const dir = path.join(fixturesDir, 'fid-inception');
const WEIGHTS = path.join(dir, 'inception_fid_random_f16.safetensors');
const EXPECTED = path.join(dir, 'inception_expected.safetensors');

/** max |a − b| / max |b| (relative to the tensor's scale). */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let d = 0, m = 0;
  for (let i = 0; i < b.length; i++) { d = Math.max(d, Math.abs(a[i] - b[i])); m = Math.max(m, Math.abs(b[i])); }
  return d / m;
}

// ---------------------------------------------------------------------------------------------
// ops against reference loops written out by hand

test('maxPool2d / avgPool2d (count_include_pad both ways) / globalAvgPool on a 1×1×3×4 input', () => {
  const x = new Tensor(Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]), [1, 1, 3, 4]);
  // 3×3, stride 1, padding 1: corner (0,0) sees {1,2,5,6}
  const avgEx = avgPool2d(x, { kernel: 3, stride: 1, padding: 1, countIncludePad: false });
  assert.deepEqual(avgEx.shape, [1, 1, 3, 4]);
  assert.equal(avgEx.data[0], (1 + 2 + 5 + 6) / 4);
  assert.equal(avgEx.data[5], (1 + 2 + 3 + 5 + 6 + 7 + 9 + 10 + 11) / 9);
  assert.equal(avgEx.data[11], (7 + 8 + 11 + 12) / 4);
  const avgIn = avgPool2d(x, { kernel: 3, stride: 1, padding: 1 });
  assert.equal(avgIn.data[0], Math.fround((1 + 2 + 5 + 6) / 9));
  const mx = maxPool2d(x, { kernel: 3, stride: 1, padding: 1 });
  assert.deepEqual([...mx.data], [6, 7, 8, 8, 10, 11, 12, 12, 10, 11, 12, 12]);
  const mx2 = maxPool2d(new Tensor(Float32Array.from({ length: 49 }, (_, i) => 100 - i), [1, 1, 7, 7]), { kernel: 3, stride: 2 });
  assert.deepEqual(mx2.shape, [1, 1, 3, 3]); // ⌊(7 − 3)/2⌋ + 1
  assert.deepEqual([...mx2.data], [100, 98, 96, 86, 84, 82, 72, 70, 68]);
  assert.deepEqual([...globalAvgPool(x).data], [6.5]);
  assert.throws(() => maxPool2d(x, { kernel: 3, padding: 2 }), RangeError);
});

test("bilinearResize matches torch's align_corners=False formula (up, down, identity)", () => {
  // torch: F.interpolate(arange(4).view(1,1,1,4), size=(1,8), mode='bilinear', align_corners=False)
  //      = [0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3]
  const x = new Tensor(Float32Array.from([0, 1, 2, 3]), [1, 1, 1, 4]);
  assert.deepEqual([...bilinearResize(x, 1, 8).data], [0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3]);
  // downscale 4 → 2: src = (d + 0.5)·2 − 0.5 = 0.5, 2.5 → [0.5, 2.5] (no antialiasing)
  assert.deepEqual([...bilinearResize(x, 1, 2).data], [0.5, 2.5]);
  // downscale 5 → 3: src = (d + 0.5)·5/3 − 0.5 = 1/3, 2, 11/3
  const t = bilinearTaps(5, 3);
  assert.deepEqual([...t.i0], [0, 2, 3]);
  assert.ok(Math.abs(t.lambda[0] - 1 / 3) < 1e-12 && t.lambda[1] === 0 && Math.abs(t.lambda[2] - 2 / 3) < 1e-12);
  const r = new Rng(3), y = new Tensor(Float32Array.from({ length: 2 * 3 * 5 * 7 }, () => r.uniform()), [2, 3, 5, 7]);
  assert.deepEqual([...bilinearResize(y, 5, 7).data], [...y.data]);
});

// ---------------------------------------------------------------------------------------------
// parity with pytorch-fid on the fixture (random F16 weights)

let net: InceptionV3FID | null = null;
function fixtureNet(): InceptionV3FID { return (net ??= inceptionFromStateDict(readSafetensors(WEIGHTS))); }

test('FID Inception parity with pytorch-fid: resize, blocks 0–2, pool3 and logits', (t) => {
  if (!fixtureOrSkip(t, WEIGHTS, EXPECTED)) return;
  const ex = readSafetensors(EXPECTED);
  const images = ex.get('images')!;
  const n = fixtureNet();
  const resized = noGrad(() => bilinearResize(images, 299, 299));
  assert.ok(relErr(resized.data.subarray(0, 3 * 299 * 299), ex.get('resized_0')!.data) < 1e-6);
  const x = n.preprocess(images);
  const b = n.blocks(x);
  const first = (a: Tensor): Float32Array => a.data.subarray(0, a.size / a.shape[0]) as Float32Array;
  for (const [name, got] of [['block0_0', b.block0], ['block1_0', b.block1], ['block2_0', b.block2]] as const) {
    const want = ex.get(name)!;
    assert.deepEqual(got.shape.slice(1), want.shape);
    const e = relErr(first(got), want.data);
    assert.ok(e < 1e-4, `${name}: relative error ${e}`);
  }
  const ePool = relErr(b.pool3.data, ex.get('pool3')!.data);
  assert.ok(ePool < 1e-4, `pool3: relative error ${ePool}`);
  const eLog = relErr(n.logits(b.pool3).data, ex.get('logits')!.data);
  assert.ok(eLog < 1e-4, `logits: relative error ${eLog}`);
  // an input already at 299×299 goes in without resizing
  const e299 = relErr(n.forward(ex.get('image_299')!).pool3.data, ex.get('pool3_299')!.data);
  assert.ok(e299 < 1e-4, `pool3_299: relative error ${e299}`);
});

test('inception FeatureExtractor: shapes, finite values, grey = the grey image repeated to RGB', (t) => {
  if (!fixtureOrSkip(t, WEIGHTS, EXPECTED)) return;
  const ext = loadInceptionExtractor(WEIGHTS);
  assert.equal(ext.name, 'inception');
  assert.equal(ext.featureDim, 2048);
  assert.equal(ext.numClasses, 1008);
  assert.match(ext.weightsHash, /^[0-9a-f]{64}$/);
  const r = new Rng(11);
  const grey = new Tensor(Float32Array.from({ length: 2 * 28 * 28 }, () => r.uniform()), [2, 1, 28, 28]);
  const a = ext.extract(grey);
  assert.equal(a.features.length, 2 * 2048);
  assert.equal(a.logits.length, 2 * 1008);
  assert.ok(a.features.every(Number.isFinite) && a.logits.every(Number.isFinite));
  const rgb = concat([grey, grey, grey], 1);
  const b = ext.extract(rgb);
  assert.deepEqual([...a.features], [...b.features]);
  assert.deepEqual([...a.logits], [...b.logits]);
  // the two images differ, and each row is that image's own (batch of 1 = row of the batch of 2)
  const one = ext.extract(slice(grey, 0, 1, 2));
  assert.ok(relErr(one.features, a.features.subarray(2048)) < 1e-5);
  assert.ok(relErr(a.features.subarray(0, 2048), a.features.subarray(2048)) > 1e-3);
  assert.ok(ext instanceof InceptionExtractor);
});

test('actvar features --extractor inception: PNGs → pool3 [N, 2048] and logits [N, 1008], equal to the extractor', (t) => {
  if (!fixtureOrSkip(t, WEIGHTS, EXPECTED)) return;
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'actvar-inception-'));
  try {
    fs.mkdirSync(path.join(work, 'imgs'));
    const r = new Rng(5), grey: number[][] = [];
    for (const name of ['a.png', 'b.png']) {
      const g = Array.from({ length: 20 * 20 }, () => Math.floor(r.uniform() * 256));
      grey.push(g);
      const rgb = new Uint8Array(20 * 20 * 3);
      g.forEach((v, i) => rgb.fill(v, 3 * i, 3 * i + 3));
      fs.writeFileSync(path.join(work, 'imgs', name), encodePng({ width: 20, height: 20, data: rgb }));
    }
    const cli = path.join(repoRoot, 'dist/src/cli/main.js');
    const run = spawnSync(process.execPath, [cli, 'features', '--images', 'imgs', '--extractor', 'inception', '--weights', WEIGHTS, '--out', 'f.safetensors', '--quiet'],
      { cwd: work, encoding: 'utf8', timeout: 240_000 });
    assert.equal(run.status, 0, run.stderr);
    const out = readSafetensors(path.join(work, 'f.safetensors'));
    assert.deepEqual(out.get('features')!.shape, [2, 2048]);
    assert.deepEqual(out.get('logits')!.shape, [2, 1008]);
    const imgs = new Tensor(Float32Array.from(grey.flat(), (v) => v / 255), [2, 1, 20, 20]);
    const want = fixtureNet().forward(imgs);
    assert.ok(relErr(out.get('features')!.data, want.pool3.data) < 1e-5);
    assert.ok(relErr(out.get('logits')!.data, want.logits.data) < 1e-5);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
});

test('pooling: the unrolled 3×3 interior path equals a plain reference loop (random sizes, strides, paddings)', () => {
  const r = new Rng(9);
  const ref = (x: Tensor, k: number, s: number, p: number, kind: 'max' | 'avg' | 'avgx'): number[] => {
    const [B, C, H, W] = x.shape, Ho = Math.floor((H + 2 * p - k) / s) + 1, Wo = Math.floor((W + 2 * p - k) / s) + 1, out: number[] = [];
    for (let bc = 0; bc < B * C; bc++) for (let oy = 0; oy < Ho; oy++) for (let ox = 0; ox < Wo; ox++) {
      let m = -Infinity, sum = 0, n = 0;
      for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) {
        const y = oy * s - p + i, xx = ox * s - p + j;
        if (y < 0 || y >= H || xx < 0 || xx >= W) continue;
        const v = x.data[(bc * H + y) * W + xx];
        m = Math.max(m, v); sum += v; n++;
      }
      out.push(kind === 'max' ? m : Math.fround(sum / (kind === 'avg' ? k * k : n)));
    }
    return out;
  };
  for (let it = 0; it < 20; it++) {
    const H = 3 + r.int(9), W = 3 + r.int(9), k = [2, 3, 3, 3][r.int(4)], s = 1 + r.int(2), p = r.int(Math.floor(k / 2) + 1);
    const x = new Tensor(Float32Array.from({ length: 2 * 3 * H * W }, () => r.uniform() * 2 - 1), [2, 3, H, W]);
    assert.deepEqual([...maxPool2d(x, { kernel: k, stride: s, padding: p }).data], ref(x, k, s, p, 'max'));
    const close = (a: ArrayLike<number>, b: number[]): void => { for (let i = 0; i < b.length; i++) assert.ok(Math.abs(a[i] - b[i]) <= 1e-6, `${a[i]} vs ${b[i]}`); };
    close(avgPool2d(x, { kernel: k, stride: s, padding: p }).data, ref(x, k, s, p, 'avg'));
    close(avgPool2d(x, { kernel: k, stride: s, padding: p, countIncludePad: false }).data, ref(x, k, s, p, 'avgx'));
  }
});
