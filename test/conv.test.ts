import './util/setup.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../src/tensor/index.js';
import { backend, setBackend, type Backend } from '../src/backend/node.js';
import { Rng } from '../src/tensor/rng.js';
import { gradcheck, randTensor } from './util/gradcheck.js';

const rng = new Rng(3);

type Pad = number | [number, number, number, number];

/** Direct float64 convolution (torch conv2d semantics) for reference. */
function naiveConv(x: T.Tensor, w: T.Tensor, bias: T.Tensor | null, stride: number, padding: Pad): { data: Float64Array; shape: number[] } {
  const [B, Cin, H, W] = x.shape, [Cout, , kh, kw] = w.shape;
  const [pt, pb, pl, pr] = typeof padding === 'number' ? [padding, padding, padding, padding] : padding;
  const Ho = Math.floor((H + pt + pb - kh) / stride) + 1, Wo = Math.floor((W + pl + pr - kw) / stride) + 1;
  const X = x.f32, Wt = w.f32, out = new Float64Array(B * Cout * Ho * Wo);
  for (let b = 0; b < B; b++) for (let co = 0; co < Cout; co++) for (let oy = 0; oy < Ho; oy++) for (let ox = 0; ox < Wo; ox++) {
    let s = bias ? bias.f32[co] : 0;
    for (let c = 0; c < Cin; c++) for (let ki = 0; ki < kh; ki++) for (let kj = 0; kj < kw; kj++) {
      const iy = oy * stride - pt + ki, ix = ox * stride - pl + kj;
      if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
      s += X[((b * Cin + c) * H + iy) * W + ix] * Wt[((co * Cin + c) * kh + ki) * kw + kj];
    }
    out[((b * Cout + co) * Ho + oy) * Wo + ox] = s;
  }
  return { data: out, shape: [B, Cout, Ho, Wo] };
}

function maxErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const configs: { name: string; x: number[]; w: number[]; stride: number; padding: Pad; bias: boolean }[] = [
  { name: '3×3 pad 1 (ResnetBlock)', x: [2, 3, 7, 6], w: [4, 3, 3, 3], stride: 1, padding: 1, bias: true },
  { name: '3×3 stride 2 pad [0,1,0,1] (Downsample)', x: [1, 3, 8, 8], w: [5, 3, 3, 3], stride: 2, padding: [0, 1, 0, 1], bias: true },
  { name: '3×3 stride 2 odd size', x: [2, 2, 7, 9], w: [3, 2, 3, 3], stride: 2, padding: [0, 1, 0, 1], bias: false },
  { name: '1×1 (nin_shortcut, attention)', x: [2, 5, 4, 3], w: [6, 5, 1, 1], stride: 1, padding: 0, bias: true },
  { name: '1×1 no bias', x: [1, 4, 3, 3], w: [2, 4, 1, 1], stride: 1, padding: 0, bias: false },
  { name: '3×3 no padding', x: [1, 2, 6, 5], w: [3, 2, 3, 3], stride: 1, padding: 0, bias: false },
  { name: '2×4 kernel, asymmetric padding, stride 3', x: [1, 2, 9, 10], w: [2, 2, 2, 4], stride: 3, padding: [2, 0, 1, 3], bias: true },
  { name: '5×5 pad 2 wider than input', x: [1, 1, 3, 2], w: [2, 1, 5, 5], stride: 1, padding: 2, bias: true },
  { name: '1×1 with padding (general path)', x: [1, 2, 3, 3], w: [2, 2, 1, 1], stride: 1, padding: 1, bias: true },
  { name: 'wide rows (block-copy im2col)', x: [1, 2, 4, 37], w: [3, 2, 3, 3], stride: 1, padding: [1, 0, 2, 1], bias: true },
  { name: 'output-side: Cout ≪ Cin, pad 1 (conv_out)', x: [2, 6, 5, 7], w: [2, 6, 3, 3], stride: 1, padding: 1, bias: true },
  { name: 'output-side: no padding', x: [1, 8, 6, 5], w: [1, 8, 3, 3], stride: 1, padding: 0, bias: false },
  { name: 'output-side: asymmetric padding, wide rows', x: [1, 4, 3, 40], w: [1, 4, 2, 3], stride: 1, padding: [1, 0, 2, 1], bias: true },
  { name: 'output-side: 5×5 kernel larger than the input', x: [1, 6, 3, 2], w: [1, 6, 5, 5], stride: 1, padding: 2, bias: true },
  { name: 'output-side: padding 3, border rows see only padding', x: [1, 6, 2, 2], w: [1, 6, 3, 3], stride: 1, padding: 3, bias: true },
];

test('conv2d matches a direct convolution for several configs, on every forward path, banded or not', () => {
  for (const c of configs) {
    const x = randTensor(rng, c.x, false), w = randTensor(rng, c.w, false), b = c.bias ? randTensor(rng, [c.w[0]], false) : null;
    const ref = naiveConv(x, w, b, c.stride, c.padding);
    for (const path of [null, 'im2col', 'shifted', 'outputSide', 'pointwise'] as const) {
      // a tiny workspace forces one output row per band
      for (const ws of [0, 1]) {
        const prevPath = T.setConvPath(path), prevWs = ws ? T.setConvWorkspaceFloats(ws) : 0;
        try {
          const y = T.conv2d(x, w, b, { stride: c.stride, padding: c.padding });
          assert.deepEqual(y.shape, ref.shape, c.name);
          const e = maxErr(y.f32, ref.data);
          assert.ok(e < 1e-5, `${c.name}, path ${path ?? 'auto'}${ws ? ', banded' : ''}: max err ${e}`);
        } finally {
          T.setConvPath(prevPath);
          if (ws) T.setConvWorkspaceFloats(prevWs);
        }
      }
    }
  }
});

test('conv2d shifted path at a realistic width (64 channels, 3×3 pad 1, 40 wide) matches a direct convolution', () => {
  const x = randTensor(rng, [2, 64, 5, 40], false), w = randTensor(rng, [64, 64, 3, 3], false, 0.1), b = randTensor(rng, [64], false);
  const ref = naiveConv(x, w, b, 1, 1);
  const y = T.conv2d(x, w, b, { padding: 1 }); // chosen automatically
  assert.ok(maxErr(y.f32, ref.data) < 1e-4, `max err ${maxErr(y.f32, ref.data)}`);
});

test('conv2d gradients for x, weight and bias (im2col and 1×1 paths, banded and not)', () => {
  for (const c of configs) {
    const x = randTensor(rng, c.x), w = randTensor(rng, c.w), b = c.bias ? randTensor(rng, [c.w[0]]) : null;
    const inputs = b ? [x, w, b] : [x, w];
    const f = (...t: T.Tensor[]) => T.conv2d(t[0], t[1], t[2] ?? null, { stride: c.stride, padding: c.padding });
    gradcheck(f, inputs, { maxChecks: 20 });
  }
  const prev = T.setConvWorkspaceFloats(30); // bands of a couple of rows
  try {
    const x = randTensor(rng, [2, 2, 6, 5]), w = randTensor(rng, [3, 2, 3, 3]), b = randTensor(rng, [3]);
    gradcheck((a, ww, bb) => T.conv2d(a, ww, bb, { padding: 1 }), [x, w, b], { maxChecks: 30 });
    gradcheck((a, ww, bb) => T.conv2d(a, ww, bb, { stride: 2, padding: [0, 1, 0, 1] }), [x, w, b], { maxChecks: 30 });
  } finally { T.setConvWorkspaceFloats(prev); }
  // gradient only for some inputs: x frozen, weight trainable
  const x = randTensor(rng, [1, 2, 4, 4], false), w = randTensor(rng, [2, 2, 3, 3]);
  gradcheck((a, ww) => T.conv2d(a, ww, null, { padding: 1 }), [x, w]);
});

test('conv2d records 2·B·Cout·Ho·Wo·Cin·kh·kw FLOPs and skips arithmetic in dry-run', () => {
  const x = randTensor(rng, [2, 3, 8, 8], false), w = randTensor(rng, [4, 3, 3, 3], false), b = randTensor(rng, [4], false);
  const { result: y, flops } = T.countFlops(() => T.conv2d(x, w, b, { stride: 2, padding: [0, 1, 0, 1] }));
  assert.deepEqual(y.shape, [2, 4, 4, 4]);
  assert.equal(flops.total, 2 * 2 * 4 * 16 * 3 * 9);
  const { result: y1, flops: f1 } = T.countFlops(() => T.conv2d(x, T.zeros([5, 3, 1, 1]), null));
  assert.deepEqual(y1.shape, [2, 5, 8, 8]);
  assert.equal(f1.total, 2 * 2 * 5 * 64 * 3);
  const dry = T.dryRun(() => T.countFlops(() => T.conv2d(x, w, null, { padding: 1 })));
  assert.deepEqual(dry.result.shape, [2, 4, 8, 8]);
  assert.equal(dry.flops.total, 2 * 2 * 4 * 64 * 27);
  assert.ok(dry.result.f32.every((v) => v === 0), 'dry-run output stays zero');
});

test('conv2d takes the fast paths: 1×1 is one GEMM on x, small Cout stacks the taps, wide and many channels shifts, else im2col', () => {
  const real = backend();
  const calls: [number, number, number][] = [];
  const spy: Backend = {
    name: 'spy', threads: 1, setThreads: () => {},
    sgemm(...a: Parameters<Backend['sgemm']>) { calls.push([a[2], a[3], a[4]]); real.sgemm(...a); },
  };
  setBackend(spy);
  try {
    T.conv2d(T.zeros([1, 8, 4, 4]), T.zeros([3, 8, 1, 1]), null);
    assert.deepEqual(calls, [[3, 16, 8]], '1×1: [Cout, H·W, Cin]');
    calls.length = 0;
    T.conv2d(T.zeros([1, 8, 4, 4]), T.zeros([2, 8, 3, 3]), null, { padding: 1 });
    assert.deepEqual(calls, [[18, 16, 8]], 'Cout ≤ Cin/4: [9·Cout, H·W, Cin]');
    calls.length = 0;
    T.conv2d(T.zeros([1, 8, 4, 4]), T.zeros([8, 8, 3, 3]), null, { padding: 1 });
    assert.deepEqual(calls, [[8, 16, 72]], 'im2col: [Cout, Ho·Wo, Cin·9]');
    calls.length = 0;
    T.conv2d(T.zeros([1, 8, 4, 4]), T.zeros([3, 8, 3, 3]), null, { stride: 2, padding: [0, 1, 0, 1] });
    assert.deepEqual(calls, [[3, 4, 72]], 'stride 2 always im2col');
    calls.length = 0;
    T.conv2d(T.zeros([1, 64, 3, 30]), T.zeros([64, 64, 3, 3]), null, { padding: 1 });
    assert.deepEqual(calls, new Array(9).fill([64, 3 * 32, 64]), 'many channels, wide: 9 shifted GEMMs [Cout, rows·Wp, Cin]');
  } finally { setBackend(real); }
});

test('conv2d errors name the problem', () => {
  const x = T.zeros([1, 3, 4, 4]);
  assert.throws(() => T.conv2d(x, T.zeros([2, 4, 3, 3]), null), /input has 3 channels but weight \[2, 4, 3, 3\] expects 4/);
  assert.throws(() => T.conv2d(T.zeros([3, 4, 4]), T.zeros([2, 3, 3, 3]), null), /input must be \[B, Cin, H, W\]/);
  assert.throws(() => T.conv2d(x, T.zeros([2, 3, 3, 3]), T.zeros([3])), /bias must be \[2\]/);
  assert.throws(() => T.conv2d(x, T.zeros([2, 3, 5, 5]), null), /kernel 5×5 does not fit the padded input 4×4/);
  assert.throws(() => T.conv2d(x, T.zeros([2, 3, 3, 3]), null, { stride: 0 }), /stride must be a positive integer/);
  assert.throws(() => T.conv2d(x, T.zeros([2, 3, 3, 3]), null, { padding: [1, 1, -1, 0] }), /padding must be/);
});
