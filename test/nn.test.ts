import './util/setup.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../src/tensor/index.js';
import { Rng } from '../src/tensor/rng.js';
import { gradcheck, randTensor } from './util/gradcheck.js';

const rng = new Rng(11);

function assertClose(a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(a.length, b.length, `${what}: length`);
  let worst = 0, at = -1;
  for (let i = 0; i < a.length; i++) {
    const e = Math.abs(a[i] - b[i]);
    if (!(e <= worst)) { worst = e; at = i; }
  }
  assert.ok(worst <= tol, `${what}: max |err| ${worst} at ${at} (${a[at]} vs ${b[at]}) exceeds ${tol}`);
}

test('softmax / logSoftmax values: rows sum to 1, stable for huge logits, any axis', () => {
  const x = T.tensor([1, 2, 3, 1000, 1001, 1002], [2, 3]);
  const y = T.softmax(x).f32;
  const e = [Math.exp(-2), Math.exp(-1), 1], s = e[0] + e[1] + e[2];
  assertClose(y, [...e.map((v) => v / s), ...e.map((v) => v / s)], 1e-6, 'softmax');
  const ly = T.logSoftmax(x).f32;
  assertClose(ly, [...e.map((v) => Math.log(v / s)), ...e.map((v) => Math.log(v / s))], 1e-5, 'logSoftmax');
  assert.ok(ly.every(Number.isFinite));
  // axis 0 of [3, 2] equals axis -1 of its transpose
  const a = randTensor(rng, [3, 4, 2], false);
  const viaAxis = T.softmax(a, 1).f32;
  const viaPerm = T.permute(T.softmax(T.permute(a, [0, 2, 1]), -1), [0, 2, 1]).f32;
  assertClose(viaAxis, viaPerm, 1e-7, 'softmax axis 1');
  assertClose(T.logSoftmax(a, 1).f32, T.permute(T.logSoftmax(T.permute(a, [0, 2, 1])), [0, 2, 1]).f32, 1e-6, 'logSoftmax axis 1');
  assert.throws(() => T.softmax(a, 3), /axis 3 is out of range/);
});

test('expNonPositive agrees with Math.exp to 1e-13 relative; softmax handles −∞ masks', () => {
  let worst = 0;
  for (let i = 0; i <= 200000; i++) {
    const x = -i * 5.2e-4; // 0 … −104
    const e = Math.exp(x);
    worst = Math.max(worst, Math.abs(T.expNonPositive(x) - e) / e);
  }
  assert.ok(worst < 1e-13, `max rel err ${worst}`);
  assert.equal(T.expNonPositive(-Infinity), 0);
  assert.equal(T.expNonPositive(-105), 0);
  assert.equal(T.expNonPositive(0), 1);
  assert.equal(T.expNonPositive(1.5), Math.exp(1.5));
  assert.ok(Number.isNaN(T.expNonPositive(NaN)));
  const y = T.softmax(T.tensor([0, -Infinity, Math.log(3)], [1, 3])).f32;
  assertClose(y, [0.25, 0, 0.75], 1e-7, 'masked softmax');
  assert.equal(y[1], 0);
});

test('softmax / logSoftmax gradients', () => {
  const a = randTensor(rng, [3, 5]);
  gradcheck((x) => T.softmax(x), [a]);
  gradcheck((x) => T.logSoftmax(x), [a]);
  const b = randTensor(rng, [2, 3, 4]);
  gradcheck((x) => T.softmax(x, 1), [b]);
  gradcheck((x) => T.logSoftmax(x, 0), [b]);
});

/** float64 LayerNorm over the last axis (biased variance). */
function layerNormRef(x: Float32Array, C: number, eps: number, w?: Float32Array, b?: Float32Array): Float64Array {
  const out = new Float64Array(x.length);
  for (let r = 0; r < x.length / C; r++) {
    let mu = 0; for (let j = 0; j < C; j++) mu += x[r * C + j]; mu /= C;
    let v = 0; for (let j = 0; j < C; j++) v += (x[r * C + j] - mu) ** 2; v /= C;
    for (let j = 0; j < C; j++) out[r * C + j] = ((x[r * C + j] - mu) / Math.sqrt(v + eps)) * (w ? w[j] : 1) + (b ? b[j] : 0);
  }
  return out;
}

test('layerNorm matches a float64 reference (no affine, eps 1e-6; and affine)', () => {
  const x = randTensor(rng, [4, 3, 64], false, 3);
  // shift rows so the mean is large: catches a naive E[x²]−E[x]² variance
  const xd = x.f32; for (let i = 0; i < xd.length; i++) xd[i] += 100;
  assertClose(T.layerNorm(x, 1e-6).f32, layerNormRef(xd, 64, 1e-6), 2e-5, 'layerNorm no affine');
  const w = randTensor(rng, [64], false), b = randTensor(rng, [64], false);
  assertClose(T.layerNorm(x, 1e-5, w, b).f32, layerNormRef(xd, 64, 1e-5, w.f32, b.f32), 5e-5, 'layerNorm affine');
  // constant row: x̂ = 0, output = bias
  const c = T.full([1, 8], 3);
  assertClose(T.layerNorm(c, 1e-6).f32, new Float32Array(8), 0, 'constant row');
  assert.throws(() => T.layerNorm(x, 1e-6, T.ones([63])), /weight must be \[64\]/);
});

test('layerNorm gradients (x, weight, bias; and without affine)', () => {
  const x = randTensor(rng, [3, 6]), w = randTensor(rng, [6]), b = randTensor(rng, [6]);
  gradcheck((a, ww, bb) => T.layerNorm(a, 1e-6, ww, bb), [x, w, b]);
  gradcheck((a) => T.layerNorm(a, 1e-6), [x]);
  gradcheck((a, ww) => T.layerNorm(a, 1e-5, ww, null), [x, w]);
});

/** float64 GroupNorm reference over [B, C, H, W]. */
function groupNormRef(x: Float32Array, shape: number[], G: number, w: Float32Array | null, b: Float32Array | null, eps: number): Float64Array {
  const [B, C, H, W] = shape, HW = H * W, cg = C / G;
  const out = new Float64Array(x.length);
  for (let n = 0; n < B; n++) for (let g = 0; g < G; g++) {
    const vals: number[] = [];
    for (let c = g * cg; c < (g + 1) * cg; c++) for (let i = 0; i < HW; i++) vals.push(x[(n * C + c) * HW + i]);
    const mu = vals.reduce((s, v) => s + v, 0) / vals.length;
    const v = vals.reduce((s, u) => s + (u - mu) ** 2, 0) / vals.length;
    for (let c = g * cg; c < (g + 1) * cg; c++) for (let i = 0; i < HW; i++) {
      const k = (n * C + c) * HW + i;
      out[k] = ((x[k] - mu) / Math.sqrt(v + eps)) * (w ? w[c] : 1) + (b ? b[c] : 0);
    }
  }
  return out;
}

test('groupNorm matches a float64 reference (32 groups, eps 1e-6, affine, as the VQVAE)', () => {
  const shape = [2, 64, 5, 3];
  const x = randTensor(rng, shape, false, 2), w = randTensor(rng, [64], false), b = randTensor(rng, [64], false);
  assertClose(T.groupNorm(x, 32, w, b, 1e-6).f32, groupNormRef(x.f32, shape, 32, w.f32, b.f32, 1e-6), 3e-5, 'groupNorm 32');
  assertClose(T.groupNorm(x, 1, null, null, 1e-5).f32, groupNormRef(x.f32, shape, 1, null, null, 1e-5), 3e-5, 'groupNorm 1 group');
  assertClose(T.groupNorm(x, 64, null, b, 1e-5).f32, groupNormRef(x.f32, shape, 64, null, b.f32, 1e-5), 3e-5, 'groupNorm 64 groups (instance norm)');
  assert.throws(() => T.groupNorm(x, 24, w, b, 1e-6), /64 channels cannot be split into 24 groups/);
  assert.throws(() => T.groupNorm(T.zeros([64]), 32, null, null, 1e-6), /expected \[B, C, \.\.\.\]/);
});

test('groupNorm gradients', () => {
  const x = randTensor(rng, [2, 4, 3, 2]), w = randTensor(rng, [4]), b = randTensor(rng, [4]);
  gradcheck((a, ww, bb) => T.groupNorm(a, 2, ww, bb, 1e-6), [x, w, b]);
  gradcheck((a) => T.groupNorm(a, 4, null, null, 1e-6), [x]);
});

test('l2Normalize: unit norm, F.normalize clamping, gradients', () => {
  const x = randTensor(rng, [3, 4], false);
  const y = T.l2Normalize(x).f32;
  for (let r = 0; r < 3; r++) {
    let s = 0; for (let j = 0; j < 4; j++) s += y[r * 4 + j] ** 2;
    assert.ok(Math.abs(s - 1) < 1e-6, `row ${r} norm² ${s}`);
  }
  // along axis 0
  const y0 = T.l2Normalize(x, 0).f32;
  for (let j = 0; j < 4; j++) {
    let s = 0; for (let r = 0; r < 3; r++) s += y0[r * 4 + j] ** 2;
    assert.ok(Math.abs(s - 1) < 1e-6);
  }
  // a zero row stays zero; a tiny row is divided by eps, not its norm
  assertClose(T.l2Normalize(T.zeros([1, 3])).f32, [0, 0, 0], 0, 'zero row');
  assertClose(T.l2Normalize(T.tensor([3e-13, 4e-13], [1, 2])).f32, [0.3, 0.4], 1e-6, 'clamped row');
  gradcheck((a) => T.l2Normalize(a), [randTensor(rng, [3, 4])]);
  gradcheck((a) => T.l2Normalize(a, 1), [randTensor(rng, [2, 3, 2])]);
  gradcheck((a) => T.l2Normalize(a, -1, 10), [randTensor(rng, [2, 3])]); // clamped branch
});
