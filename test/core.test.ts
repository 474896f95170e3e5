import './util/setup.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../src/tensor/index.js';
import { Rng } from '../src/tensor/rng.js';
import { gradcheck, randTensor } from './util/gradcheck.js';

const rng = new Rng(7);

test('elementwise grads with broadcasting', () => {
  const a = randTensor(rng, [3, 4]), b = randTensor(rng, [4]), c = randTensor(rng, [3, 1]);
  gradcheck((x, y) => T.add(x, y), [a, b]);
  gradcheck((x, y) => T.sub(x, y), [a, c]);
  gradcheck((x, y) => T.mul(x, y), [a, c]);
  const pos = new T.Tensor(b.f32.map((v) => Math.abs(v) + 0.5), [4], true);
  gradcheck((x, y) => T.div(x, y), [a, pos]);
});

test('unary grads', () => {
  const a = randTensor(rng, [2, 5]);
  for (const f of [T.exp, T.tanh, T.sigmoid, T.silu, T.gelu, T.square, T.neg]) gradcheck((x) => f(x), [a]);
  const p = new T.Tensor(a.f32.map((v) => Math.abs(v) + 0.5), [2, 5], true);
  gradcheck((x) => T.log(x), [p]);
  gradcheck((x) => T.sqrt(x), [p]);
});

test('GELU derivative table matches the exact derivative', () => {
  // the tanh-GELU derivative in float64 (var-reference §3.4), written independently of src/
  const c = Math.sqrt(2 / Math.PI);
  const exact = (x: number) => {
    const t = Math.tanh(c * (x + 0.044715 * x ** 3));
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x);
  };
  let maxErr = 0;
  for (let i = 0; i <= 200000; i++) {
    const x = -12 + 24 * (i / 200000);
    maxErr = Math.max(maxErr, Math.abs(T.geluDerivFast(x) - exact(x)));
  }
  assert.ok(maxErr < 1e-8, `GELU' table error ${maxErr}`);
  assert.equal(T.geluDerivFast(100), 1);
  assert.equal(T.geluDerivFast(-100), 0);
  assert.ok(Number.isNaN(T.geluDerivFast(NaN)));
  // the backward of gelu() uses the same table
  const x = new T.Tensor(Float32Array.from({ length: 64 }, (_, i) => -9 + i * 0.29), [64], true);
  T.sum(T.gelu(x)).backward();
  x.grad!.f32.forEach((g, i) => assert.ok(Math.abs(g - Math.fround(exact(x.f32[i]))) < 1e-7, `grad at ${x.f32[i]}: ${g}`));
});

test('shape op grads', () => {
  const a = randTensor(rng, [2, 3, 4]);
  gradcheck((x) => T.permute(x, [2, 0, 1]), [a]);
  gradcheck((x) => T.reshape(x, [6, -1]), [a]);
  gradcheck((x) => T.slice(x, 1, 1, 3), [a]);
  const b = randTensor(rng, [2, 2, 4]);
  gradcheck((x, y) => T.concat([x, y], 1), [a, b]);
});

test('reductions', () => {
  const a = randTensor(rng, [3, 4, 5]);
  gradcheck((x) => T.sum(x, 1), [a]);
  gradcheck((x) => T.mean(x, -1, true), [a]);
  gradcheck((x) => T.max(x, 0), [a]);
  gradcheck((x) => T.sum(x), [a]);
});

test('matmul and linear grads, all transposes', () => {
  for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]] as const) {
    const a = randTensor(rng, ta ? [2, 4, 3] : [2, 3, 4]), b = randTensor(rng, tb ? [2, 5, 4] : [2, 4, 5]);
    gradcheck((x, y) => T.matmul(x, y, ta, tb), [a, b]);
    const w = randTensor(rng, tb ? [5, 4] : [4, 5]);
    gradcheck((x, y) => T.matmul(x, y, ta, tb), [a, w]);
  }
  const x = randTensor(rng, [2, 3, 4]), w = randTensor(rng, [6, 4]), bias = randTensor(rng, [6]);
  gradcheck((p, q, r) => T.linear(p, q, r), [x, w, bias]);
});

test('matmul values', () => {
  const a = T.tensor([1, 2, 3, 4, 5, 6], [2, 3]), b = T.tensor([1, 0, 0, 1, 1, 1], [3, 2]);
  assert.deepEqual([...T.matmul(a, b).f32], [4, 5, 10, 11]);
});

test('noGrad records nothing', () => {
  const a = randTensor(rng, [3]);
  const y = T.noGrad(() => T.exp(a));
  assert.equal(y.requiresGrad, false);
  assert.equal(y.node, null);
});
