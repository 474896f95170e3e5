import './util/setup.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../src/tensor/index.js';
import { Rng } from '../src/tensor/rng.js';
import { readSafetensors } from '../src/io/safetensors.js';
import { gradcheck, randTensor } from './util/gradcheck.js';
import { fixture, needsFixtures } from './util/fixtures.js';
/** The reference fixtures these tests read (skipped when absent, see test/util/fixtures.ts). */
const TINY = needsFixtures(fixture('forward.safetensors'));

const rng = new Rng(5);

/** float64 torch cross-entropy with label smoothing, per row. */
function ceRef(x: Float32Array, t: Int32Array, V: number, ls: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < t.length; r++) {
    const row = Array.from(x.subarray(r * V, r * V + V));
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
    const logp = row.map((v) => v - lse);
    const smooth = -logp.reduce((s, v) => s + v, 0) / V;
    out.push((1 - ls) * -logp[t[r]] + ls * smooth);
  }
  return out;
}

test('crossEntropy matches a float64 reference, with and without label smoothing 0.1', () => {
  const N = 6, V = 50;
  const x = randTensor(rng, [N, V], false, 3);
  const t = T.intTensor([0, 49, 7, 7, 23, 1]);
  for (const ls of [0, 0.1]) {
    const ref = ceRef(x.f32, t.i32, V, ls);
    const none = T.crossEntropy(x, t, { labelSmoothing: ls, reduction: 'none' });
    assert.deepEqual(none.shape, [N]);
    none.f32.forEach((v, i) => assert.ok(Math.abs(v - ref[i]) < 1e-5, `ls=${ls} row ${i}: ${v} vs ${ref[i]}`));
    const mean = T.crossEntropy(x, t, { labelSmoothing: ls });
    assert.deepEqual(mean.shape, []);
    assert.ok(Math.abs(mean.f32[0] - ref.reduce((s, v) => s + v, 0) / N) < 1e-5);
  }
  // uniform logits: loss = log V regardless of smoothing
  assert.ok(Math.abs(T.crossEntropy(T.zeros([2, 8]), T.intTensor([3, 5]), { labelSmoothing: 0.1 }).f32[0] - Math.log(8)) < 1e-6);
  // huge logits stay finite
  const big = T.crossEntropy(T.tensor([1000, 0, -1000], [1, 3]), T.intTensor([1]));
  assert.ok(Math.abs(big.f32[0] - 1000) < 1e-3);
});

test('crossEntropy reproduces the official VAR training loss on the var-tiny fixture (ls 0 and 0.1)', TINY, () => {
  const fw = readSafetensors(fixture('forward.safetensors'));
  const logits = fw.get('forward_logits_BLV'), gt = fw.get('gt_BL');
  assert.ok(logits && gt, 'fixture tensors missing');
  const flat = T.reshape(logits, [-1, 64]), target = T.reshape(gt, [-1]);
  for (const [key, ls] of [['ce_loss_mean', 0], ['ce_loss_ls0.1_mean', 0.1]] as const) {
    const got = T.crossEntropy(flat, target, { labelSmoothing: ls }).f32[0], want = fw.get(key)!.f32[0];
    assert.ok(Math.abs(got - want) < 1e-5, `${key}: ${got} vs ${want}`);
  }
});

test('crossEntropy gradients (mean and none, smoothing 0 and 0.1), leading dims', () => {
  const x = randTensor(rng, [4, 7]);
  const t = T.intTensor([6, 0, 3, 3]);
  gradcheck((a) => T.crossEntropy(a, t), [x]);
  gradcheck((a) => T.crossEntropy(a, t, { labelSmoothing: 0.1 }), [x]);
  gradcheck((a) => T.crossEntropy(a, t, { labelSmoothing: 0.1, reduction: 'none' }), [x]);
  const x3 = randTensor(rng, [2, 3, 5]);
  gradcheck((a) => T.crossEntropy(a, T.intTensor([0, 1, 2, 3, 4, 0], [2, 3]), { labelSmoothing: 0.1 }), [x3]);
});

test('crossEntropy errors name the problem', () => {
  const x = T.zeros([2, 4]);
  assert.throws(() => T.crossEntropy(x, T.intTensor([0, 4])), /target\[1\] = 4 is outside the 4 classes/);
  assert.throws(() => T.crossEntropy(x, T.intTensor([0, -100])), /outside/);
  assert.throws(() => T.crossEntropy(x, T.tensor([0, 1])), /target must be an int32/);
  assert.throws(() => T.crossEntropy(x, T.intTensor([0, 1, 2])), /must equal the logits' leading dims \[2\]/);
  assert.throws(() => T.crossEntropy(x, T.intTensor([0, 1]), { labelSmoothing: 1.5 }), /labelSmoothing/);
});

test('klDivergence: value vs float64, zero at equality, gradient only to the student', () => {
  const s = randTensor(rng, [3, 6]), t = randTensor(rng, [3, 6]);
  let ref = 0;
  for (let r = 0; r < 3; r++) {
    const lsm = (a: Float32Array) => {
      const row = Array.from(a.subarray(r * 6, r * 6 + 6)), m = Math.max(...row);
      const l = m + Math.log(row.reduce((q, v) => q + Math.exp(v - m), 0));
      return row.map((v) => v - l);
    };
    const lt = lsm(t.f32), lss = lsm(s.f32);
    for (let v = 0; v < 6; v++) ref += Math.exp(lt[v]) * (lt[v] - lss[v]);
  }
  ref /= 3;
  assert.ok(Math.abs(T.klDivergence(s, t).f32[0] - ref) < 1e-6);
  assert.ok(Math.abs(T.klDivergence(s, s).f32[0]) < 1e-7);
  assert.ok(T.klDivergence(s, t).f32[0] > 0);
  gradcheck((a) => T.klDivergence(a, t), [s]);
  t.grad = null;
  T.klDivergence(s, t).backward();
  assert.equal(t.grad, null, 'teacher must get no gradient');
  assert.throws(() => T.klDivergence(s, T.zeros([3, 5])), /same shape/);
});

test('mseLoss: value and gradients for both inputs', () => {
  const a = randTensor(rng, [2, 3]), b = randTensor(rng, [2, 3]);
  let ref = 0;
  for (let i = 0; i < 6; i++) ref += (a.f32[i] - b.f32[i]) ** 2;
  assert.ok(Math.abs(T.mseLoss(a, b).f32[0] - ref / 6) < 1e-6);
  gradcheck((x, y) => T.mseLoss(x, y), [a, b]);
  assert.throws(() => T.mseLoss(a, T.zeros([3, 2])), /must be equal/);
});
