/**
 * The native elementwise kernels (native/kernels.c) against their TypeScript twins: every op that
 * dispatches to them is run both ways on the same inputs (edge values included), AdamW and the sums
 * that keep their order must match bit for bit, and a whole transformer block's loss and gradients
 * must agree. The wrappers' length checks are tested too (native code must never run past an array).
 * Skipped, with the reason, where the library was not built (no C compiler).
 */
import './util/setup.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../src/tensor/index.js';
import { Rng } from '../src/tensor/rng.js';
import { backend, bindNativeKernels, loadNativeKernels, nativeLibraryPath } from '../src/backend/node.js';
import type { NativeKernels } from '../src/backend/node.js';
import { AdamW } from '../src/optim/index.js';
import { expRowsInPlace } from '../src/var/basic-var.js';
import { assertClose, assertSameBits, bothWays as bothWaysWith, randn as randnOf } from './util/compare.js';

const loaded = loadNativeKernels();
const skip = loaded.kernels ? false : `native kernels unavailable: ${loaded.why}`;
const rng = new Rng(5);
const randn = (n: number, scale = 1): Float32Array => randnOf(rng, n, scale);

/** Runs f with the native kernels, then without. */
const bothWays = <R>(f: () => R): { native: R; ts: R } => bothWaysWith(loaded.kernels, f);

test('native kernels: the library is where the build puts it and binds; a missing file is an error', { skip }, () => {
  assert.equal(loaded.kernels!.library, nativeLibraryPath());
  assert.throws(() => bindNativeKernels('/nonexistent/libactvar_kernels.so'));
});

test('native GELU: values and GELU′ within float32 rounding of the TypeScript tables, saturation and NaN alike', { skip }, () => {
  const edge = [0, -0, 1e-30, -1e-30, 7.9999995, 8, 8.5, -7.9999995, -8, -8.5, 100, -100, Infinity, -Infinity, NaN, 3, -3];
  const X = Float32Array.from([...edge, ...randn(70000, 4)]); // > 65536 elements: split over the thread pool
  const { native, ts } = bothWays(() => {
    const x = new T.Tensor(X.slice(), [X.length], true);
    const y = T.gelu(x);
    T.sum(T.mul(y, T.tensor(Float32Array.from(X, (_, i) => 1 + (i % 7)), [X.length]))).backward();
    const inference = T.noGrad(() => T.gelu(new T.Tensor(X.slice(), [X.length])));
    return { y: y.f32, g: x.grad!.f32, inf: inference.f32 };
  });
  // the TypeScript tables are within 1e-9 (absolute) of GELU and GELU′, the native formula within 1e-14 relative
  assertClose(native.y, ts.y, 1.2e-7, 2e-9, 'gelu');
  assertClose(native.inf, ts.inf, 1.2e-7, 2e-9, 'gelu (no grad)');
  assertClose(native.g, ts.g, 2.4e-7, 2e-8, 'gelu backward');
  assert.ok(Object.is(native.y[9], -0) && native.y[10] === 100 && native.y[12] === Infinity && Object.is(native.y[13], -0));
  assert.ok(Number.isNaN(native.y[14]) && Number.isNaN(native.g[14]));
});

test('native softmax rows: forward and backward match, with −∞ masks and a fully masked row (NaN, as in torch)', { skip }, () => {
  const rows = 37, n = 53, X = randn(rows * n, 3);
  for (let j = 0; j < n; j += 3) X[5 * n + j] = -Infinity; // a partly masked row
  for (let j = 0; j < n; j++) X[9 * n + j] = -Infinity; // a fully masked row
  X[11 * n + 4] = 200; // a dominant entry: the others underflow to 0
  const G = randn(rows * n);
  const { native, ts } = bothWays(() => {
    const x = new T.Tensor(X.slice(), [rows, n], true);
    const y = T.softmax(x, -1);
    T.sum(T.mul(y, T.tensor(G, [rows, n]))).backward();
    return { y: y.f32, g: x.grad!.f32 };
  });
  assertClose(native.y, ts.y, 1e-6, 1e-12, 'softmax');
  assertClose(native.g, ts.g, 1e-5, 1e-7, 'softmax backward');
  for (let j = 0; j < n; j += 3) assert.equal(native.y[5 * n + j], 0, 'masked entries are exactly 0');
  assert.ok(native.y.subarray(9 * n, 10 * n).every(Number.isNaN), 'fully masked row is NaN');
  assert.equal(native.y[11 * n + 4], 1);
});

test('native unnormalised softmax rows of the KV-cache attention: bounded and row-max forms match', { skip }, () => {
  const rows = 13, n = 301;
  for (const bound of [12.5, null]) {
    const S0 = Float32Array.from(randn(rows * n, 4), (v) => (bound === null ? v * 10 : Math.max(-bound, Math.min(bound, v))));
    // the attention divides by the row sums: compare the normalised rows (the native kernel subtracts the
    // bound rounded to float32, a constant factor per row that the normalisation cancels)
    const { native, ts } = bothWays(() => {
      const S = S0.slice(), sums = new Float64Array(rows);
      expRowsInPlace(S, rows, n, bound, sums);
      return Float32Array.from(S, (v, i) => v / sums[Math.floor(i / n)]);
    });
    assertClose(native, ts, 1e-6, 1e-12, `normalised exp rows (bound ${bound})`);
  }
});

test('native attention (softmax inside the fused op) matches, forward and backward', { skip }, () => {
  const B = 2, L = 13, C = 24, H = 3, X = randn(B * L * 3 * C);
  const { native, ts } = bothWays(() => {
    const qkv = new T.Tensor(X.slice(), [B, L, 3 * C], true);
    const o = T.attention(qkv, H);
    T.sum(T.mul(o, o)).backward();
    return { o: o.f32, g: qkv.grad!.f32 };
  });
  assertClose(native.o, ts.o, 1e-5, 1e-6, 'attention');
  assertClose(native.g, ts.g, 1e-4, 1e-5, 'attention backward');
});

test('native LayerNorm: with and without affine, forward and all gradients', { skip }, () => {
  const rows = 19, C = 72;
  for (const affine of ['both', 'weight', 'bias', 'none'] as const) {
    const X = randn(rows * C, 2), Wd = randn(C), Bd = randn(C), G = randn(rows * C);
    for (let j = 0; j < C; j++) X[3 * C + j] = 5 + 1e-3 * X[3 * C + j]; // large mean, small spread
    const { native, ts } = bothWays(() => {
      const x = new T.Tensor(X.slice(), [rows, C], true);
      const w = affine === 'both' || affine === 'weight' ? new T.Tensor(Wd.slice(), [C], true) : null;
      const b = affine === 'both' || affine === 'bias' ? new T.Tensor(Bd.slice(), [C], true) : null;
      const y = T.layerNorm(x, 1e-6, w, b);
      T.sum(T.mul(y, T.tensor(G, [rows, C]))).backward();
      return { y: y.f32, gx: x.grad!.f32, gw: w?.grad?.f32 ?? null, gb: b?.grad?.f32 ?? null };
    });
    assertClose(native.y, ts.y, 1e-5, 1e-5, `layerNorm (${affine}) forward`);
    assertClose(native.gx, ts.gx, 1e-4, 1e-4, `layerNorm (${affine}) dx`);
    if (ts.gw) assertClose(native.gw!, ts.gw, 1e-5, 1e-5, `layerNorm (${affine}) dw`);
    if (ts.gb) assertSameBits(native.gb!, ts.gb, `layerNorm (${affine}) db`);
  }
});

test('native AdamW steps are bit-identical to the TypeScript ones (decay and no-decay groups)', { skip }, () => {
  const P0 = randn(1003), P1 = randn(17);
  const grads = [0, 1, 2].map(() => [randn(1003, 0.1), randn(17, 0.1)]);
  const { native, ts } = bothWays(() => {
    const a = T.param(P0.slice(), [1003], 'a'), b = T.param(P1.slice(), [17], 'b');
    const opt = new AdamW([{ params: [a], weightDecay: 0.05 }, { params: [b], weightDecay: 0 }], { lr: 3e-3, betas: [0.9, 0.95] });
    for (const [ga, gb] of grads) {
      a.grad = new T.Tensor(ga, [1003]); b.grad = new T.Tensor(gb, [17]);
      opt.step();
    }
    const st = opt.stateDict().state;
    return [a.f32, b.f32, ...st.flatMap((s) => [s!.expAvg, s!.expAvgSq])];
  });
  native.forEach((arr, i) => assertSameBits(arr, ts[i], `AdamW array ${i}`));
});

test('native sums keep their order: linear bias gradients and gradient accumulation are bit-identical', { skip }, () => {
  const rows = 33, inF = 10, out = 21;
  const X = randn(rows * inF), Wd = randn(out * inF), Bd = randn(out);
  const { native, ts } = bothWays(() => {
    const x = new T.Tensor(X.slice(), [rows, inF], true);
    const w = new T.Tensor(Wd.slice(), [out, inF], true), b = new T.Tensor(Bd.slice(), [out], true);
    const y = T.linear(x, w, b);
    // x is used twice (accumulated gradient), y feeds an add and an MSE
    const loss = T.add(T.mseLoss(T.add(y, y), T.zeros([rows, out])), T.sum(T.mul(x, x)));
    loss.backward();
    return { loss: loss.f32, gb: b.grad!.f32, gx: x.grad!.f32, y: y.f32 };
  });
  assertSameBits(native.gb, ts.gb, 'bias gradient');
  assertSameBits(native.gx, ts.gx, 'accumulated input gradient');
  assertClose(native.loss, ts.loss, 1e-6, 0, 'MSE loss');
});

test('a transformer block step: native and TypeScript kernels give the same loss and gradients', { skip }, () => {
  const B = 2, L = 9, C = 32, H = 4, FF = 64;
  const X = randn(B * L * C), Y = randn(B * L * C);
  const P = { qkv: randn(3 * C * C, 0.1), proj: randn(C * C, 0.1), fc1: randn(FF * C, 0.1), fc2: randn(C * FF, 0.1) };
  const { native, ts } = bothWays(() => {
    const p = Object.fromEntries(Object.entries(P).map(([k, v]) => [k, T.param(v.slice(), k === 'qkv' ? [3 * C, C] : k === 'fc1' ? [FF, C] : k === 'fc2' ? [C, FF] : [C, C], k)]));
    const lnw = T.param(new Float32Array(C).fill(1), [C], 'lnw'), lnb = T.param(new Float32Array(C), [C], 'lnb');
    const x = new T.Tensor(X, [B, L, C]);
    const x1 = T.add(x, T.linear(T.attention(T.linear(T.layerNorm(x, 1e-6, lnw, lnb), p.qkv), H), p.proj));
    const y = T.add(x1, T.linear(T.gelu(T.linear(T.layerNorm(x1, 1e-6), p.fc1)), p.fc2));
    const loss = T.mseLoss(y, new T.Tensor(Y, [B, L, C]));
    loss.backward();
    return [loss.f32, ...[p.qkv, p.proj, p.fc1, p.fc2, lnw, lnb].map((t) => t.grad!.f32)];
  });
  assertClose(native[0], ts[0], 1e-6, 0, 'loss');
  for (let i = 1; i < native.length; i++) {
    const scale = ts[i].reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    assertClose(native[i], ts[i], 1e-4, 1e-5 * scale, `gradient ${i}`);
  }
});

test('native wrappers refuse arrays shorter than the sizes given (nothing runs past an array)', { skip }, () => {
  const k: NativeKernels = loaded.kernels!;
  const a = new Float32Array(8), b = new Float32Array(4), d = new Float64Array(2);
  const cases: [string, () => void][] = [
    ['gelu', () => k.gelu(a, b, null, 8)],
    ['mul', () => k.mul(a, a, b, 8)],
    ['add', () => k.add(a, b, a, 8)],
    ['addInto', () => k.addInto(a, b, 8)],
    ['colSum', () => k.colSum(b, a, 2, 4 + 1)],
    ['softmaxRows', () => k.softmaxRows(a, a, 4, 2, 4)],
    ['softmaxRowsBackward', () => k.softmaxRowsBackward(a, b, a, 0, 2, 4)],
    ['expRows', () => k.expRows(a, 3, 4, NaN, d)],
    ['layerNorm', () => k.layerNorm(a, a, d, d, null, null, 4, 2, 1e-6)],
    ['layerNormBackward', () => k.layerNormBackward(a, a, d, d, b, a, null, null, 2, 5)],
    ['adamw', () => k.adamw(a, b, a, a, 1, 0.9, 0.95, 0.1, 0.05, 1e-3, 1, 1e-8)],
    ['sqDist', () => k.sqDist(a, b, 8)],
    ['scaledDiff', () => k.scaledDiff(a, a, b, 8, 1)],
  ];
  for (const [name, f] of cases) assert.throws(f, (e: Error) => e instanceof RangeError && e.message.startsWith(`native ${name}:`), name);
  assert.throws(() => k.gelu(a, a, null, 2.5), /size must be a non-negative integer, got 2.5/);
  assert.throws(() => k.add(a, a, a, -1), /size must be a non-negative integer, got -1/);
});
