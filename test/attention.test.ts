/**
 * The fused attention op against the same attention composed from reshape/permute/matmul/softmax,
 * finite-difference gradient checks, and both kernel backends.
 */
import './util/setup.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../src/tensor/index.js';
import { Rng } from '../src/tensor/rng.js';
import { TsBackend, loadOpenBlas, setBackend } from '../src/backend/node.js';
import { gradcheck, randTensor } from './util/gradcheck.js';

const rng = new Rng(11);

/** softmax(scale·q·kᵀ + bias)·v with the heads merged, from plain ops (q, k, v [B, H, L, D]). */
function composed(q: T.Tensor, k: T.Tensor, v: T.Tensor, scale: number, bias: T.Tensor | null): T.Tensor {
  const [B, H, Lq, D] = q.shape;
  let s = T.scale(T.matmul(q, k, false, true), scale);
  if (bias) s = T.add(s, bias);
  const o = T.matmul(T.softmax(s, -1), v); // [B, H, Lq, D]
  return T.reshape(T.permute(o, [0, 2, 1, 3]), [B, Lq, H * D]);
}

/** q, k, v [B, H, L, D] out of a fused projection [B, L, 3·C] (the (B, L, 3, H, D) reading). */
function splitQkv(qkv: T.Tensor, H: number): T.Tensor[] {
  const [B, L, C3] = qkv.shape, D = C3 / 3 / H;
  const p = T.permute(T.reshape(qkv, [B, L, 3, H, D]), [2, 0, 3, 1, 4]);
  return T.split(p, [1, 1, 1], 0).map((t) => T.reshape(t, [B, H, L, D]));
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** A block-causal additive mask [L, L] (0 where allowed, −∞ elsewhere) for token blocks of the given sizes. */
function blockCausal(sizes: number[]): T.Tensor {
  const L = sizes.reduce((a, b) => a + b, 0), m = new Float32Array(L * L), blockOf: number[] = [];
  sizes.forEach((n, i) => { for (let j = 0; j < n; j++) blockOf.push(i); });
  for (let i = 0; i < L; i++) for (let j = 0; j < L; j++) m[i * L + j] = blockOf[j] <= blockOf[i] ? 0 : -Infinity;
  return new T.Tensor(m, [L, L]);
}

test('attention(qkv) equals the composed attention, with and without a mask', () => {
  const B = 2, L = 6, H = 3, D = 4, C = H * D;
  const qkv = randTensor(rng, [B, L, 3 * C], false);
  for (const bias of [null, blockCausal([1, 2, 3])]) {
    for (const scale of [undefined, 0.7]) {
      const [q, k, v] = splitQkv(qkv, H);
      const ref = composed(q, k, v, scale ?? 1 / Math.sqrt(D), bias);
      const got = T.attention(qkv, H, { scale, bias });
      assert.deepEqual(got.shape, [B, L, C]);
      assert.ok(maxDiff(got.f32, ref.f32) < 1e-6, `mask ${!!bias}, scale ${scale}`);
    }
  }
});

test('attentionHeads equals the composed attention for Lq ≠ Lk', () => {
  const B = 2, H = 2, Lq = 3, Lk = 5, D = 4;
  const q = randTensor(rng, [B, H, Lq, D], false), k = randTensor(rng, [B, H, Lk, D], false), v = randTensor(rng, [B, H, Lk, D], false);
  const bias = randTensor(rng, [Lq, Lk], false);
  const got = T.attentionHeads(q, k, v, { scale: 0.3, bias });
  assert.deepEqual(got.shape, [B, Lq, H * D]);
  assert.ok(maxDiff(got.f32, composed(q, k, v, 0.3, bias).f32) < 1e-6);
});

test('attention gradients: finite differences and the composed graph agree', () => {
  const B = 2, L = 5, H = 2, D = 3, C = H * D;
  const mask = blockCausal([2, 3]);
  const qkv = randTensor(rng, [B, L, 3 * C]);
  gradcheck((x) => T.attention(x, H), [qkv]);
  gradcheck((x) => T.attention(x, H, { bias: mask, scale: 0.5 }), [qkv]);
  const q = randTensor(rng, [B, H, 4, D]), k = randTensor(rng, [B, H, L, D]), v = randTensor(rng, [B, H, L, D]);
  gradcheck((a, b, c) => T.attentionHeads(a, b, c, { scale: 0.8 }), [q, k, v]);
  // analytic gradients of the fused op equal those of the composed graph (one shared input array)
  const w = randTensor(rng, [B, L, C], false);
  qkv.grad = null;
  T.sum(T.mul(T.attention(qkv, H, { bias: mask }), w)).backward();
  const fused = qkv.grad!.f32.slice();
  qkv.grad = null;
  const [cq, ck, cv] = splitQkv(qkv, H);
  T.sum(T.mul(composed(cq, ck, cv, 1 / Math.sqrt(D), mask), w)).backward();
  assert.ok(maxDiff(fused, qkv.grad!.f32) < 1e-5);
});

test('attentionHeads with one tensor as q, k and v: the gradient is the sum of the three roles', () => {
  const x = randTensor(rng, [1, 2, 4, 3]);
  gradcheck((a) => T.attentionHeads(a, a, a, { scale: 0.9 }), [x]);
});

test('attention: only inputs that require grad get one; no graph under noGrad', () => {
  const q = randTensor(rng, [1, 2, 3, 4]), k = randTensor(rng, [1, 2, 3, 4], false), v = randTensor(rng, [1, 2, 3, 4]);
  T.sum(T.attentionHeads(q, k, v)).backward();
  assert.ok(q.grad && v.grad);
  assert.equal(k.grad, null);
  const y = T.noGrad(() => T.attentionHeads(q, k, v));
  assert.equal(y.node, null);
});

test('attention: both kernel backends agree', () => {
  const blas = loadOpenBlas().backend;
  const qkv = randTensor(rng, [2, 7, 3 * 8]);
  const run = () => {
    qkv.grad = null;
    const y = T.attention(qkv, 2, { bias: blockCausal([3, 4]) });
    T.sum(T.square(y)).backward();
    return [y.f32.slice(), qkv.grad!.f32.slice()];
  };
  try {
    setBackend(new TsBackend());
    const [yt, gt] = run();
    if (!blas) return; // no OpenBLAS on this machine: the TypeScript run above is the check
    setBackend(blas);
    const [yb, gb] = run();
    assert.ok(maxDiff(yt, yb) < 1e-5 && maxDiff(gt, gb) < 1e-5);
  } finally {
    setBackend(null);
  }
});

test('attention rejects inconsistent shapes with a clear error', () => {
  assert.throws(() => T.attention(randTensor(rng, [2, 3, 10], false), 2), /qkv must be \[B, L, 3·C\]/);
  assert.throws(() => T.attention(randTensor(rng, [2, 3, 12], false), 3), /3 heads do not divide the width 4/);
  assert.throws(() => T.attention(randTensor(rng, [1, 3, 12], false), 2, { bias: randTensor(rng, [3, 4], false) }), /bias must be \[3, 3\]/);
  const q = randTensor(rng, [1, 2, 3, 4], false);
  assert.throws(() => T.attentionHeads(q, randTensor(rng, [1, 2, 3, 5], false), randTensor(rng, [1, 2, 3, 5], false)), /do not match/);
});
