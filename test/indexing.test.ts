import './util/setup.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../src/tensor/index.js';
import { Rng } from '../src/tensor/rng.js';
import { gradcheck, randTensor } from './util/gradcheck.js';

const rng = new Rng(11);

/** Reference top-k by a full comparator sort (NaN greatest, ties → lower index). */
function refTopk(row: ArrayLike<number>, k: number): number[] {
  const idx = [...Array(row.length).keys()];
  const key = (v: number) => (Number.isNaN(v) ? Infinity : v);
  idx.sort((a, b) => {
    const va = row[a], vb = row[b];
    const na = Number.isNaN(va), nb = Number.isNaN(vb);
    if (na !== nb) return na ? -1 : 1;
    if (!na && key(va) !== key(vb)) return key(vb) - key(va);
    return a - b;
  });
  return idx.slice(0, k);
}

test('embedding: values, shape, gradient scatter-adds repeated rows', () => {
  const w = randTensor(rng, [5, 3]);
  const idx = T.intTensor([4, 0, 4, 2, 1, 4], [2, 3]);
  const y = T.embedding(w, idx);
  assert.deepEqual(y.shape, [2, 3, 3]);
  for (let i = 0; i < 6; i++) assert.deepEqual([...y.f32.subarray(i * 3, i * 3 + 3)], [...w.f32.subarray(idx.i32[i] * 3, idx.i32[i] * 3 + 3)]);
  gradcheck((ww) => T.embedding(ww, idx), [w]);
  // row 4 used three times: its grad is the sum; row 3 unused: zero
  w.grad = null;
  T.sum(T.embedding(w, idx)).backward();
  assert.deepEqual([...w.grad!.f32], [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 3, 3, 3]);
});

test('embedding: bounds and dtype errors', () => {
  const w = randTensor(rng, [5, 3]);
  assert.throws(() => T.embedding(w, T.intTensor([0, 5])), /embedding: index 5 at position 1 is out of range .* size 5/);
  assert.throws(() => T.embedding(w, T.intTensor([-1])), /out of range/);
  assert.throws(() => T.embedding(w, T.tensor([1])), /int32/);
  assert.throws(() => T.embedding(randTensor(rng, [5]), T.intTensor([1])), /2-d/);
});

test('gatherRows: values, int32 input, gradient', () => {
  const x = randTensor(rng, [4, 2, 3]);
  const idx = T.intTensor([3, 1, 3]);
  const y = T.gatherRows(x, idx);
  assert.deepEqual(y.shape, [3, 2, 3]);
  assert.deepEqual([...y.f32.subarray(0, 6)], [...x.f32.subarray(18, 24)]);
  assert.deepEqual([...y.f32.subarray(6, 12)], [...x.f32.subarray(6, 12)]);
  gradcheck((a) => T.gatherRows(a, idx), [x]);
  const xi = T.intTensor([10, 11, 20, 21, 30, 31], [3, 2]);
  const yi = T.gatherRows(xi, T.intTensor([2, 0]));
  assert.equal(yi.dtype, 'int32');
  assert.deepEqual([...yi.i32], [30, 31, 10, 11]);
  assert.throws(() => T.gatherRows(x, T.intTensor([4])), /gatherRows: index 4 .* size 4/);
  assert.throws(() => T.gatherRows(x, T.intTensor([0, 1], [1, 2])), /1-d/);
});

test('scatterRows set/add: values and gradients in base and src', () => {
  const base = randTensor(rng, [5, 3]), src = randTensor(rng, [2, 3]);
  const idx = T.intTensor([3, 0]);
  const s = T.scatterRows(base, idx, src, 'set');
  const B = base.f32, S = src.f32, O = s.f32;
  for (let r = 0; r < 5; r++) {
    const want = r === 3 ? S.subarray(0, 3) : r === 0 ? S.subarray(3, 6) : B.subarray(r * 3, r * 3 + 3);
    assert.deepEqual([...O.subarray(r * 3, r * 3 + 3)], [...want]);
  }
  assert.deepEqual([...base.f32], [...B]); // base untouched
  gradcheck((b, c) => T.scatterRows(b, idx, c, 'set'), [base, src]);
  // base grad is exactly zero at overwritten rows
  base.grad = null;
  T.sum(T.scatterRows(base, idx, src, 'set')).backward();
  assert.deepEqual([...base.grad!.f32], [0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1]);

  const dup = T.intTensor([1, 1]);
  const a = T.scatterRows(base, dup, src, 'add');
  for (let j = 0; j < 3; j++) assert.ok(Math.abs(a.f32[3 + j] - (B[3 + j] + S[j] + S[3 + j])) < 1e-6);
  gradcheck((b, c) => T.scatterRows(b, dup, c, 'add'), [base, src]);
  assert.throws(() => T.scatterRows(base, dup, src, 'set'), /index 1 appears more than once/);
  assert.throws(() => T.scatterRows(base, idx, randTensor(rng, [2, 4]), 'set'), /src must be \[2, 3\]/);
  assert.throws(() => T.scatterRows(base, T.intTensor([5, 0]), src, 'add'), /out of range/);
});

test('indexSelect along a middle axis and oneHot', () => {
  const x = randTensor(rng, [2, 4, 3]);
  const idx = T.intTensor([2, 2, 0]);
  const y = T.indexSelect(x, 1, idx);
  assert.deepEqual(y.shape, [2, 3, 3]);
  for (let o = 0; o < 2; o++) for (let k = 0; k < 3; k++) for (let c = 0; c < 3; c++) {
    assert.equal(y.f32[(o * 3 + k) * 3 + c], x.f32[(o * 4 + idx.i32[k]) * 3 + c]);
  }
  gradcheck((a) => T.indexSelect(a, 1, idx), [x]);
  gradcheck((a) => T.indexSelect(a, -1, T.intTensor([1, 0])), [x]);
  const oh = T.oneHot(T.intTensor([2, 0, 1, 2], [2, 2]), 3);
  assert.deepEqual(oh.shape, [2, 2, 3]);
  assert.deepEqual([...oh.f32], [0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 1]);
  assert.throws(() => T.oneHot(T.intTensor([3]), 3), /out of range/);
});

test('topk: matches a full sort, ties to lower index, NaN first, any axis', () => {
  // small values with many ties
  const n = 37, rows = 6;
  const d = new Float32Array(rows * n);
  for (let i = 0; i < d.length; i++) d[i] = Math.floor(rng.uniform() * 5) - 2;
  d[3] = NaN; d[n + 7] = -0; d[n + 8] = 0; d[2 * n + 1] = Infinity; d[2 * n + 2] = -Infinity; d[3 * n + 5] = NaN; d[3 * n + 2] = NaN;
  const x = new T.Tensor(d, [rows, n]);
  for (const k of [0, 1, 5, 17, 36, 37]) {
    const { values, indices } = T.topk(x, k);
    assert.deepEqual(values.shape, [rows, k]);
    for (let r = 0; r < rows; r++) {
      const row = d.subarray(r * n, r * n + n);
      const want = refTopk(row, k);
      assert.deepEqual([...indices.i32.subarray(r * k, r * k + k)], want, `row ${r} k ${k}`);
      for (let j = 0; j < k; j++) assert.ok(Object.is(values.f32[r * k + j], row[want[j]]) || (Number.isNaN(values.f32[r * k + j]) && Number.isNaN(row[want[j]])));
    }
  }
  // axis 0 of a [n, 3] tensor = axis -1 of its transpose
  const x3 = randTensor(rng, [40, 3], false);
  const a = T.topk(x3, 7, 0), b = T.topk(T.transpose(x3), 7, -1);
  assert.deepEqual(a.values.shape, [7, 3]);
  assert.deepEqual([...T.transpose(a.values).f32], [...b.values.f32]);
  assert.deepEqual([...T.transpose(new T.Tensor(Float32Array.from(a.indices.i32), [7, 3])).f32], [...Float32Array.from(b.indices.i32)]);
  assert.throws(() => T.topk(x, 38), /k must be an integer in \[0, 37\]/);
});

test('topk: random large rows against the reference', () => {
  const n = 4096, rows = 3, k = 900;
  const x = randTensor(rng, [rows, n], false);
  x.f32[17] = x.f32[4000]; // a tie
  const { values, indices } = T.topk(x, k);
  for (let r = 0; r < rows; r++) {
    const want = refTopk(x.f32.subarray(r * n, r * n + n), k);
    assert.deepEqual([...indices.i32.subarray(r * k, r * k + k)], want);
    for (let j = 1; j < k; j++) assert.ok(values.f32[r * k + j - 1] >= values.f32[r * k + j]);
  }
});

test('topk: medium rows, heavy ties, constant rows, specials (radix path) against the reference', () => {
  for (const n of [65, 300, 1000, 2500]) {
    const rows = 4, d = new Float32Array(rows * n);
    for (let i = 0; i < n; i++) {
      d[i] = Math.floor(rng.uniform() * 7) - 3; // heavy ties
      d[n + i] = 1.5; // constant row: every key in one bucket
      d[2 * n + i] = rng.normal() * 1e-30; // tiny values, both signs, in few buckets
      d[3 * n + i] = [NaN, Infinity, -Infinity, 0, -0, 1][Math.floor(rng.uniform() * 6)];
    }
    const x = new T.Tensor(d, [rows, n]);
    for (const k of [1, 3, Math.floor(n / 3), n - 1, n]) {
      const { values, indices } = T.topk(x, k);
      for (let r = 0; r < rows; r++) {
        const row = d.subarray(r * n, r * n + n);
        const want = refTopk(row, k);
        assert.deepEqual([...indices.i32.subarray(r * k, r * k + k)], want, `n ${n} row ${r} k ${k}`);
        for (let j = 0; j < k; j++) {
          const v = values.f32[r * k + j], w = row[want[j]];
          assert.ok(Object.is(v, w) || (Number.isNaN(v) && Number.isNaN(w)));
        }
      }
    }
  }
});

test('topk: values gradient goes to the chosen positions', () => {
  const x = randTensor(rng, [3, 8]);
  gradcheck((a) => T.topk(a, 3).values, [x], { eps: 1e-3 });
  const y = randTensor(rng, [5, 2, 3]);
  gradcheck((a) => T.topk(a, 2, 0).values, [y], { eps: 1e-3 });
});

test('topk over a 4096-wide axis with k=900 (the sampler\'s shape) equals a full sort', () => {
  const x = randTensor(rng, [4, 4096], false);
  const { values, indices } = T.topk(x, 900);
  for (let r = 0; r < 4; r++) {
    const row = Array.from(x.f32.subarray(r * 4096, (r + 1) * 4096));
    const sorted = row.map((v, i) => [v, i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
    for (let k = 0; k < 900; k++) {
      assert.equal(values.f32[r * 900 + k], sorted[k][0]);
      assert.equal(indices.i32[r * 900 + k], sorted[k][1]);
    }
  }
});

test('argmax / argmin: first extreme wins, NaN wins, keepDims, axes', () => {
  const x = T.tensor([1, 3, 3, -2, 0, -2, NaN, 5, NaN, 1, 1, 1], [3, 4]);
  assert.deepEqual([...T.argmax(x).i32], [1, 2, 0]);
  assert.deepEqual([...T.argmin(x).i32], [3, 2, 0]);
  const y = T.tensor([1, 2, 3, 4, 5, 0, 0, 2, 3, 9, 5, -1], [2, 3, 2]);
  const am = T.argmax(y, 1, true);
  assert.deepEqual(am.shape, [2, 1, 2]);
  assert.deepEqual([...am.i32], [2, 1, 2, 1]);
  assert.deepEqual([...T.argmin(y, 0).i32], [1, 0, 0, 0, 0, 1]);
  assert.deepEqual(T.argmax(y, 0).shape, [3, 2]);
  const r = randTensor(rng, [4, 50], false);
  const top = T.topk(r, 1);
  assert.deepEqual([...T.argmax(r).i32], [...top.indices.i32]);
});
