/**
 * Token sampling: the official in-place top-k / top-p masking (fixture `sampling_filter`, all four
 * cases, −inf positions exactly), ties, the always-kept largest entry, seeded multinomial draws,
 * and the more_smooth Gumbel mixture.
 */
import './util/setup.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Tensor, Rng } from '../src/tensor/index.js';
import { readSafetensors } from '../src/io/safetensors.js';
import { filterTopKTopP_, sampleWithTopKTopP_, gumbelSmoothFeatures } from '../src/var/sample.js';
import { fixture, needsFixtures } from './util/fixtures.js';

const filterFixture = fixture('sampling_filter.safetensors');
/** The reference fixtures these tests read (skipped when absent, see test/util/fixtures.ts). */
const TINY = needsFixtures(filterFixture);

test('sampling_filter fixture: top-k / top-p masks equal the official in-place masking', TINY, () => {
  const fx = readSafetensors(filterFixture);
  const input = fx.get('logits_in')!;
  const [B, l, V] = input.shape;
  const cases: [string, number, number][] = [['filtered_k20', 20, 0], ['filtered_p0.8', 0, 0.8], ['filtered_k20_p0.8', 20, 0.8], ['filtered_k1', 1, 0]];
  for (const [key, k, p] of cases) {
    const x = input.f32.slice();
    filterTopKTopP_(x, B * l, V, k, p);
    const want = fx.get(key)!.f32;
    let removed = 0;
    for (let i = 0; i < x.length; i++) {
      assert.equal(x[i] === -Infinity, want[i] === -Infinity, `${key}: −inf mismatch at ${i}`);
      if (want[i] === -Infinity) removed++;
      else assert.equal(x[i], want[i], `${key}: kept value changed at ${i}`);
    }
    assert.ok(removed > 0, `${key} removes something`);
  }
});

test('top-k keeps every tie with the k-th value; top-p always keeps the largest; ties in top-p by index', () => {
  const x = Float32Array.of(1, 3, 3, 2, 3, 0);
  filterTopKTopP_(x, 1, 6, 2, 0);
  assert.deepEqual([...x], [-Infinity, 3, 3, -Infinity, 3, -Infinity]);
  // one dominant logit and top_p tiny: only the max survives
  const y = Float32Array.of(0, 10, 1, 2);
  filterTopKTopP_(y, 1, 4, 0, 1e-6);
  assert.deepEqual([...y], [-Infinity, 10, -Infinity, -Infinity]);
  // top_p = 1: 1 − p = 0, nothing has cumsum ≤ 0 except exact zeros (already −inf), so nothing is removed
  const z = Float32Array.of(0.5, -3, 2);
  filterTopKTopP_(z, 1, 3, 0, 1);
  assert.deepEqual([...z], [0.5, -3, 2]);
  // four equal logits, top_p 0.5: cumsum .25 .5 .75 1 → the first two in the (stable) ascending order go
  const t = Float32Array.of(1, 1, 1, 1);
  filterTopKTopP_(t, 1, 4, 0, 0.5);
  assert.deepEqual([...t], [-Infinity, -Infinity, 1, 1]);
  // k ≥ V disables top-k; rows are independent
  const u = Float32Array.of(1, 2, 3, 9, 8, 7);
  filterTopKTopP_(u, 2, 3, 5, 0);
  assert.deepEqual([...u], [1, 2, 3, 9, 8, 7]);
  filterTopKTopP_(u, 2, 3, 1, 0);
  assert.deepEqual([...u], [-Infinity, -Infinity, 3, 9, -Infinity, -Infinity]);
  assert.throws(() => filterTopKTopP_(new Float32Array(5), 2, 3, 1, 0), /do not make/);
});

test('multinomial draws: seeded, greedy at top-k 1, frequencies follow softmax', () => {
  const V = 4, n = 20000;
  const logits = Float32Array.of(Math.log(0.1), Math.log(0.2), Math.log(0.3), Math.log(0.4));
  const rows = new Float32Array(n * V);
  for (let i = 0; i < n; i++) rows.set(logits, i * V);
  const a = sampleWithTopKTopP_(new Tensor(rows.slice(), [1, n, V]), 0, 0, new Rng(5));
  const b = sampleWithTopKTopP_(new Tensor(rows.slice(), [1, n, V]), 0, 0, new Rng(5));
  assert.deepEqual([...a.data], [...b.data]);
  const counts = [0, 0, 0, 0];
  for (const v of a.data) counts[v]++;
  for (let v = 0; v < V; v++) {
    const p = [0.1, 0.2, 0.3, 0.4][v], sd = Math.sqrt((p * (1 - p)) / n);
    assert.ok(Math.abs(counts[v] / n - p) < 5 * sd, `class ${v}: ${counts[v] / n} vs ${p}`);
  }
  const g = sampleWithTopKTopP_(new Tensor(rows.slice(0, 3 * V), [1, 3, V]), 1, 0, new Rng(1));
  assert.deepEqual([...g.data], [3, 3, 3]);
  // top-p 0.5 keeps {0.4, 0.3} only
  const c = sampleWithTopKTopP_(new Tensor(rows.slice(), [1, n, V]), 0, 0.5, new Rng(2));
  assert.ok([...c.data].every((v) => v === 2 || v === 3));
  // per-image generators: image 1's draws depend only on its own Rng
  const two = new Float32Array(2 * 50 * V);
  for (let i = 0; i < 100; i++) two.set(logits, i * V);
  const d = sampleWithTopKTopP_(new Tensor(two.slice(), [2, 50, V]), 0, 0, [new Rng(1), new Rng(2)]);
  const e = sampleWithTopKTopP_(new Tensor(two.slice(0, 50 * V), [1, 50, V]), 0, 0, [new Rng(2)]);
  assert.deepEqual([...d.data].slice(50), [...e.data]);
  assert.throws(() => sampleWithTopKTopP_(new Tensor(new Float32Array(4).fill(-Infinity), [1, 1, 4]), 0, 0, new Rng(1)), /no finite logit/);
});

test('more_smooth: a convex mixture of codebook rows, masked entries get zero weight, tau per §6', () => {
  const V = 5, Cv = 3;
  const cb = new Tensor(Float32Array.from({ length: V * Cv }, (_, i) => i), [V, Cv]);
  const logits = new Tensor(Float32Array.of(-Infinity, 0, 5, -Infinity, 1), [1, 1, V]);
  const h = gumbelSmoothFeatures(logits, 0.5, cb, new Rng(3)).f32;
  // the result lies in the convex hull of rows 1, 2, 4: row v = (3v, 3v+1, 3v+2) → h = (3s, 3s+1, 3s+2) with s in [1, 4]
  assert.ok(Math.abs(h[1] - h[0] - 1) < 1e-5 && Math.abs(h[2] - h[0] - 2) < 1e-5);
  assert.ok(h[0] >= 3 - 1e-5 && h[0] <= 12 + 1e-5);
  const h2 = gumbelSmoothFeatures(logits, 0.5, cb, new Rng(3)).f32;
  assert.deepEqual([...h], [...h2]);
  // at the last scale tau = max(0.27·0.05, 0.005) = 0.0135: almost one-hot on the argmax of logits + noise
  const big = new Tensor(Float32Array.of(-Infinity, 0, 50, -Infinity, 1), [1, 1, V]);
  const hl = gumbelSmoothFeatures(big, 1, cb, new Rng(4)).f32;
  assert.ok(Math.abs(hl[0] - 6) < 1e-4, `expected row 2, got ${hl[0]}`);
});
