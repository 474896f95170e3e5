/**
 * The inference 3×3 conv of the VQVAE (src/vqvae/basic-vae.ts) against the composed tensor ops it
 * replaces (conv2d, groupNorm, silu, upsampleNearest2x): every prologue kind, tiny GEMM bands, fills
 * split over a worker thread, inputs in and out of shared memory, and chains of calls in which the
 * dead activations are recycled as later outputs.
 *
 * Everything goes through the exported API: the Conv2d/Normalize/ResnetBlock/Upsample2x/Decoder
 * modules and setConv3x3Options / conv3x3Stats / releaseConv3x3Workspaces.
 */
import './util/setup.js';
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../src/tensor/index.js';
import { Rng } from '../src/tensor/rng.js';
import { backend } from '../src/backend/node.js';
import {
  Conv2d, Normalize, ResnetBlock, Upsample2x, Decoder, setConv3x3Options, conv3x3Stats, releaseConv3x3Workspaces,
  type ModuleCtx, type AutoencoderConfig,
} from '../src/vqvae/basic-vae.js';

const TOL = 1e-5;
const EPS = 1e-6; // Normalize's eps

// The options as this file found them; every test also restores what it changed in a finally.
const initial = setConv3x3Options({});

after(() => {
  // Stop the pool's worker thread: the pool is rebuilt (old workers terminated) when a split-able
  // fill runs with another worker count, here 0. The workers are unref'd, so this is tidiness only.
  setConv3x3Options({ enabled: true, workers: 0, parallelMinFloats: 1 });
  const rng = new Rng(99);
  const { conv } = convModule(rng, 2, 2, 1);
  T.noGrad(() => conv.forwardSilu(randn(rng, [1, 2, 2, 2])));
  setConv3x3Options(initial);
  releaseConv3x3Workspaces();
});

// ---------------------------------------------------------------------------------------------
// helpers

function randn(rng: Rng, shape: number[], scale = 1, offset = 0): T.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const d = new Float32Array(n);
  for (let i = 0; i < n; i++) d[i] = offset + scale * rng.normal();
  return new T.Tensor(d, shape);
}

const clone = (t: T.Tensor): T.Tensor => new T.Tensor(t.f32.slice(), t.shape);

/** The same values in a SharedArrayBuffer, as a view starting `padFloats` floats into it. */
function toShared(t: T.Tensor, padFloats = 0): T.Tensor {
  const a = new Float32Array(new SharedArrayBuffer(4 * (padFloats + t.size + 5)), 4 * padFloats, t.size);
  a.set(t.f32);
  return new T.Tensor(a, t.shape);
}

/** max |got − want| ≤ tol · max |want| (and no NaN), with matching shapes. */
function assertRel(got: T.Tensor, want: T.Tensor, what: string, tol = TOL): void {
  assert.deepEqual([...got.shape], [...want.shape], `${what}: shape`);
  const g = got.f32, w = want.f32;
  let diff = 0, scale = 0;
  for (let i = 0; i < w.length; i++) {
    const d = Math.abs(g[i] - w[i]);
    if (Number.isNaN(d)) { diff = NaN; break; }
    if (d > diff) diff = d;
    scale = Math.max(scale, Math.abs(w[i]));
  }
  assert.ok(scale > 0, `${what}: the reference is all zeros (not a useful check)`);
  assert.ok(diff <= tol * scale, `${what}: max |diff| ${diff} > ${tol} × ${scale}`);
}

function assertSameValues(a: T.Tensor, b: T.Tensor, what: string): void {
  assert.deepEqual([...a.shape], [...b.shape], `${what}: shape`);
  assert.ok(a.f32.every((v, i) => Object.is(v, b.f32[i])), `${what}: values changed`);
}

interface ConvModule { ctx: ModuleCtx; conv: Conv2d; norm: Normalize; W: T.Tensor; b: T.Tensor; gw: T.Tensor; gb: T.Tensor; groups: number }

/** A 3×3 'same' Conv2d cin → cout and a Normalize(cin) with `groups` groups, random O(1) weights. */
function convModule(rng: Rng, cin: number, cout: number, groups: number): ConvModule {
  const ctx: ModuleCtx = { sd: new Map(), specs: new Map(), normGroups: groups };
  const conv = new Conv2d(ctx, 'c', cin, cout, 3, { padding: 1 });
  const norm = new Normalize(ctx, 'n', cin);
  const W = randn(rng, [cout, cin, 3, 3], 1 / Math.sqrt(cin * 9)), b = randn(rng, [cout], 0.5);
  const gw = randn(rng, [cin], 0.3, 1), gb = randn(rng, [cin], 0.3);
  ctx.sd.set('c.weight', W); ctx.sd.set('c.bias', b); ctx.sd.set('n.weight', gw); ctx.sd.set('n.bias', gb);
  return { ctx, conv, norm, W, b, gw, gb, groups };
}

type Kind = 'copy' | 'silu' | 'up2' | 'gnSilu';
const KINDS: Kind[] = ['copy', 'silu', 'up2', 'gnSilu'];

/** The composed ops each prologue stands for. */
function reference(m: ConvModule, kind: Kind, x: T.Tensor, residual: T.Tensor | null = null): T.Tensor {
  return T.noGrad(() => {
    const pre = kind === 'copy' ? x
      : kind === 'silu' ? T.silu(x)
        : kind === 'up2' ? T.upsampleNearest2x(x)
          : T.silu(T.groupNorm(x, m.groups, m.gw, m.gb, EPS));
    const y = T.conv2d(pre, m.W, m.b, { padding: 1 });
    return residual ? T.add(residual, y) : y;
  });
}

/** The fast path for a prologue kind (residual only for the kinds that take one). */
function fast(m: ConvModule, kind: Kind, x: T.Tensor, residual: T.Tensor | null = null, intoResidual = false): T.Tensor {
  return T.noGrad(() => {
    switch (kind) {
      case 'copy': return m.conv.forward(x);
      case 'silu': return m.conv.forwardSilu(x, residual, intoResidual);
      case 'up2': return m.conv.forwardUp2(x);
      case 'gnSilu': return m.conv.forwardNormSilu(m.norm, x, residual, intoResidual);
    }
  });
}

/** Runs fn; asserts it took the fast path `calls` times and split `splits` fills over the workers. */
function counted<R>(calls: number, splits: number, what: string, fn: () => R): R {
  const c0 = conv3x3Stats.calls, p0 = conv3x3Stats.parallelFills;
  const r = fn();
  assert.equal(conv3x3Stats.calls - c0, calls, `${what}: fast-path calls`);
  assert.equal(conv3x3Stats.parallelFills - p0, splits, `${what}: split fills`);
  return r;
}

// [B, cin, cout, H, W, groups]: odd sizes, 1×1, a single row/column, batch 2
const SHAPES: [number, number, number, number, number, number][] = [
  [2, 4, 3, 5, 7, 2], [1, 6, 5, 1, 1, 3], [2, 3, 4, 1, 6, 1], [1, 8, 2, 9, 4, 4],
];

/** Every prologue kind on every shape (with and without residual, and into the residual) against the composed ops. */
function checkAllKinds(rng: Rng, label: string, opts: { shared?: boolean; splitsPerItem?: (kind: Kind, groups: number) => number } = {}): void {
  for (const [B, cin, cout, H, W, groups] of SHAPES) {
    const m = convModule(rng, cin, cout, groups);
    for (const kind of KINDS) {
      const what = `${label} ${kind} [${B},${cin},${H},${W}]→${cout} g=${groups}`;
      // offset input so GroupNorm's shifted statistics matter
      const x0 = randn(rng, [B, cin, H, W], 2, kind === 'gnSilu' ? 3 : 0);
      const x = opts.shared ? toShared(x0, 3) : x0;
      const splits = opts.splitsPerItem ? B * opts.splitsPerItem(kind, groups) : 0;
      const want = reference(m, kind, x0);
      const got = counted(1, splits, what, () => fast(m, kind, x));
      assertRel(got, want, what);
      assertSameValues(x, x0, `${what}: input untouched`);
      if (kind === 'silu' || kind === 'gnSilu') {
        const res = randn(rng, [B, cout, H, W]);
        const wantRes = reference(m, kind, x0, res);
        assertRel(counted(1, splits, what, () => fast(m, kind, x, res)), wantRes, `${what} + residual`);
        assertSameValues(x, x0, `${what} + residual: input untouched`);
        const sacrificed = opts.shared ? toShared(res) : clone(res);
        const into = counted(1, splits, what, () => fast(m, kind, x, sacrificed, true));
        assertRel(into, wantRes, `${what} into residual`);
        assertSameValues(x, x0, `${what} into residual: input untouched`);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// single calls

test('every prologue (copy, SiLU, nearest ×2, GroupNorm+SiLU; residual; into the residual) equals the composed ops, main thread', () => {
  const prev = setConv3x3Options({ enabled: true, workers: 0, bandFloats: 1 << 20 });
  try {
    checkAllKinds(new Rng(1), 'workers=0');
  } finally {
    setConv3x3Options(prev);
  }
});

test('tiny bandFloats (a band per row, bands of a few rows with an uneven last one) give the same results', () => {
  const prev = setConv3x3Options({ enabled: true, workers: 0 });
  try {
    for (const bandFloats of [1, 2 * 5 * 9 + 1, 37]) {
      setConv3x3Options({ bandFloats });
      checkAllKinds(new Rng(2), `bandFloats=${bandFloats}`);
    }
    releaseConv3x3Workspaces(); // the workspaces regrow on the next call
    setConv3x3Options({ bandFloats: 1 });
    checkAllKinds(new Rng(3), 'after releaseConv3x3Workspaces');
  } finally {
    setConv3x3Options(prev);
  }
});

test('fills split over a worker thread (workers 1, tiny parallelMinFloats) equal the composed ops; workers 0 never split', () => {
  const prev = setConv3x3Options({ enabled: true, native: false, bandFloats: 29 });
  try {
    setConv3x3Options({ workers: 0, parallelMinFloats: 1 });
    checkAllKinds(new Rng(4), 'workers=0 min=1', { splitsPerItem: () => 0 });
    // one helper thread: SiLU fills are split per channel, GroupNorm+SiLU fills per group (so not with
    // one group); copy and upsampling fills are never split
    setConv3x3Options({ workers: 1, parallelMinFloats: 1 });
    const before = conv3x3Stats.parallelFills;
    const split = (kind: Kind, groups: number) => (kind === 'silu' || (kind === 'gnSilu' && groups > 1) ? 1 : 0);
    checkAllKinds(new Rng(4), 'workers=1 min=1', { splitsPerItem: split });
    assert.ok(conv3x3Stats.parallelFills > before, 'conv3x3Stats.parallelFills increased');
    // above the fill size, a worker does not change anything
    setConv3x3Options({ parallelMinFloats: 1 << 30 });
    checkAllKinds(new Rng(5), 'workers=1 min=huge', { splitsPerItem: () => 0 });
  } finally {
    setConv3x3Options(prev);
  }
});

test('inputs and residuals in SharedArrayBuffers (views at an offset) equal the composed ops, with and without a worker', () => {
  const prev = setConv3x3Options({ enabled: true, native: false, bandFloats: 41 });
  try {
    setConv3x3Options({ workers: 0, parallelMinFloats: 1 });
    checkAllKinds(new Rng(6), 'shared workers=0', { shared: true, splitsPerItem: () => 0 });
    setConv3x3Options({ workers: 1, parallelMinFloats: 1 });
    const split = (kind: Kind, groups: number) => (kind === 'silu' || (kind === 'gnSilu' && groups > 1) ? 1 : 0);
    checkAllKinds(new Rng(6), 'shared workers=1', { shared: true, splitsPerItem: split });
    checkAllKinds(new Rng(7), 'plain workers=1', { shared: false, splitsPerItem: split });
    // the same values in and out of shared memory give bit-identical results
    const rng = new Rng(8);
    const m = convModule(rng, 6, 4, 3);
    const x = randn(rng, [2, 6, 5, 4], 2, 1);
    for (const kind of KINDS) {
      assertSameValues(fast(m, kind, toShared(x, 1)), fast(m, kind, x), `${kind}: shared vs plain input`);
    }
  } finally {
    setConv3x3Options(prev);
  }
});

// ---------------------------------------------------------------------------------------------
// chains of calls: recycled activations must not corrupt anything still referenced

/** Random weights for every parameter a module tree registered in ctx.specs. */
function fillRandom(ctx: ModuleCtx, rng: Rng): void {
  for (const [key, spec] of ctx.specs) {
    const t = spec.kind === 'convWeight' ? randn(rng, spec.shape, 1 / Math.sqrt(spec.fanIn))
      : spec.kind === 'convBias' ? randn(rng, spec.shape, 0.2)
        : spec.kind === 'normWeight' ? randn(rng, spec.shape, 0.2, 1)
          : randn(rng, spec.shape, 0.2);
    ctx.sd.set(key, t);
  }
}

const W_ = (ctx: ModuleCtx, p: string) => ctx.sd.get(`${p}.weight`)!;
const B_ = (ctx: ModuleCtx, p: string) => ctx.sd.get(`${p}.bias`)!;

/** ResnetBlock by hand: shortcut(x) + conv2(silu(gn2(conv1(silu(gn1(x)))))). */
function refResnet(ctx: ModuleCtx, p: string, x: T.Tensor, shortcut: boolean): T.Tensor {
  const g = ctx.normGroups;
  return T.noGrad(() => {
    const h = T.conv2d(T.silu(T.groupNorm(x, g, W_(ctx, `${p}.norm1`), B_(ctx, `${p}.norm1`), EPS)), W_(ctx, `${p}.conv1`), B_(ctx, `${p}.conv1`), { padding: 1 });
    const y = T.conv2d(T.silu(T.groupNorm(h, g, W_(ctx, `${p}.norm2`), B_(ctx, `${p}.norm2`), EPS)), W_(ctx, `${p}.conv2`), B_(ctx, `${p}.conv2`), { padding: 1 });
    const sc = shortcut ? T.conv2d(x, W_(ctx, `${p}.nin_shortcut`), B_(ctx, `${p}.nin_shortcut`)) : x;
    return T.add(sc, y);
  });
}

test('a decoder-like chain (conv_in, ResnetBlocks, upsampling, norm_out+conv_out) with recycled activations: every kept intermediate stays equal to its reference', () => {
  const prev = setConv3x3Options({ enabled: true });
  try {
    for (const native of [false, true]) decoderLikeChain(native);
  } finally {
    setConv3x3Options(prev);
  }
});

/** The chain above on the TypeScript steps (fills split over the JS workers) or on native/conv3x3.c. */
function decoderLikeChain(native: boolean): void {
  {
    const rng = new Rng(10);
    const C = 4, C2 = 6, Z = 3, OUT = 3, groups = 2;
    const ctx: ModuleCtx = { sd: new Map(), specs: new Map(), normGroups: groups };
    const convIn = new Conv2d(ctx, 'conv_in', Z, C, 3, { padding: 1 });
    const r1 = new ResnetBlock(ctx, 'r1', C, C);
    const r2 = new ResnetBlock(ctx, 'r2', C, C);
    const mid = new Conv2d(ctx, 'mid', C, C, 3, { padding: 1 }); // same size as r2's recycled h
    const up = new Upsample2x(ctx, 'up', C);
    const r3 = new ResnetBlock(ctx, 'r3', C, C2); // 1×1 shortcut
    const r4 = new ResnetBlock(ctx, 'r4', C2, C2);
    const r5 = new ResnetBlock(ctx, 'r5', C2, C2);
    const normOut = new Normalize(ctx, 'norm_out', C2);
    const convOut = new Conv2d(ctx, 'conv_out', C2, OUT, 3, { padding: 1 });
    fillRandom(ctx, rng);
    const g = groups, c3 = (x: T.Tensor, p: string) => T.conv2d(x, W_(ctx, p), B_(ctx, p), { padding: 1 });

    const configs: { name: string; opts: Parameters<typeof setConv3x3Options>[0]; shared: boolean }[] = [
      { name: 'workers 0', opts: { workers: 0, bandFloats: 1 << 20, parallelMinFloats: 1 << 18 }, shared: false },
      { name: 'workers 0, tiny bands', opts: { workers: 0, bandFloats: 13, parallelMinFloats: 1 << 18 }, shared: false },
      { name: 'workers 1, split fills, tiny bands', opts: { workers: 1, bandFloats: 13, parallelMinFloats: 1 }, shared: false },
      { name: 'workers 1, split fills, shared input', opts: { workers: 1, bandFloats: 1 << 20, parallelMinFloats: 1 }, shared: true },
    ];
    for (const cfg of configs) {
      setConv3x3Options({ ...cfg.opts, native });
      for (let rep = 0; rep < 2; rep++) { // a second pass reuses the spare buffers and workspaces of the first
        const what = `${native ? 'native' : 'TypeScript'} ${cfg.name} pass ${rep}`;
        const z0 = randn(rng, [2, Z, 3, 5]);
        const z = cfg.shared ? toShared(z0, 2) : z0;
        // every reference first, kept
        const ref: T.Tensor[] = [];
        T.noGrad(() => {
          ref.push(c3(z0, 'conv_in'));
          ref.push(refResnet(ctx, 'r1', ref[0], false));
          ref.push(refResnet(ctx, 'r2', ref[1], false));
          ref.push(c3(ref[2], 'mid'));
          ref.push(c3(T.upsampleNearest2x(ref[3]), 'up.conv'));
          ref.push(refResnet(ctx, 'r3', ref[4], true));
          ref.push(refResnet(ctx, 'r4', ref[5], false));
          ref.push(refResnet(ctx, 'r5', ref[6], false));
          ref.push(c3(T.silu(T.groupNorm(ref[7], g, W_(ctx, 'norm_out'), B_(ctx, 'norm_out'), EPS)), 'conv_out'));
        });
        // the fast chain, keeping every output (no input given up: consumeInput = false)
        const got: T.Tensor[] = [];
        // the native op (when the backend has it) splits in C, uncounted
        const splitting = !(native && backend().native) && (cfg.opts.workers ?? 0) > 0;
        const step = (calls: number, splits: number, fn: () => T.Tensor) => {
          got.push(counted(calls, splitting ? splits : 0, `${what} step ${got.length}`, () => T.noGrad(fn)));
          assertRel(got[got.length - 1], ref[got.length - 1], `${what}: step ${got.length - 1} right after it ran`);
        };
        step(1, 0, () => convIn.forward(z));
        step(2, 4, () => r1.forward(got[0])); // 2 convs, both GroupNorm+SiLU (2 groups), batch 2
        step(2, 4, () => r2.forward(got[1]));
        step(1, 0, () => mid.forward(got[2]));
        step(1, 0, () => up.forward(got[3]));
        step(2, 4, () => r3.forward(got[4]));
        step(2, 4, () => r4.forward(got[5]));
        step(2, 4, () => r5.forward(got[6]));
        step(1, 2, () => convOut.forwardNormSilu(normOut, got[7]));
        // after the whole chain: nothing kept was overwritten by a recycled buffer or workspace
        assertSameValues(z, z0, `${what}: latent untouched`);
        for (let i = 0; i < ref.length; i++) assertRel(got[i], ref[i], `${what}: step ${i} at the end of the chain`);
        const buffers = new Set(got.map((t) => t.data.buffer));
        assert.equal(buffers.size, got.length, `${what}: every kept activation has its own buffer`);

        // a block that consumes its input: right result, and the others (still referenced) untouched
        const last = T.noGrad(() => r5.forward(clone(got[7]), true));
        assertRel(last, refResnet(ctx, 'r5', ref[7], false), `${what}: consumeInput block`);
        const again = T.noGrad(() => r4.forward(got[5], false));
        assertRel(again, ref[6], `${what}: a block run again`);
        for (let i = 0; i < ref.length; i++) assertRel(got[i], ref[i], `${what}: step ${i} after more calls`);
      }
    }
  }
}

test('several Decoder.forward calls in a row equal the composed-ops decoder, computed first and kept', () => {
  const prev = setConv3x3Options({});
  try {
    const rng = new Rng(11);
    const cfg: AutoencoderConfig = { ch: 4, chMult: [1, 2], numResBlocks: 1, inChannels: 3, zChannels: 2, usingSa: true, usingMidSa: true };
    const ctx: ModuleCtx = { sd: new Map(), specs: new Map(), normGroups: 2 };
    const dec = new Decoder(ctx, cfg);
    fillRandom(ctx, rng);
    const zs = [randn(rng, [1, 2, 3, 3]), randn(rng, [2, 2, 3, 3]), randn(rng, [1, 2, 2, 4]), randn(rng, [1, 2, 3, 3], 2)];
    // references: the same modules with the fast path off (conv2d, groupNorm, silu, upsampleNearest2x)
    setConv3x3Options({ enabled: false });
    const refs = zs.map((z) => counted(0, 0, 'reference decoder', () => T.noGrad(() => dec.forward(z))));
    // 3×3 convs of this decoder: conv_in, 2 per ResnetBlock (2 mid + 2 + 2), the upsample, conv_out
    const convs = 1 + 2 * 6 + 1 + 1;
    for (const opts of [
      { workers: 0, bandFloats: 1 << 20, parallelMinFloats: 1 << 18 },
      { workers: 0, bandFloats: 7, parallelMinFloats: 1 << 18 },
      { workers: 1, bandFloats: 7, parallelMinFloats: 1 },
    ]) {
      for (const native of [false, true]) for (const shared of [false, true]) {
        setConv3x3Options({ enabled: true, native, ...opts });
        const what = `${native ? 'native' : 'TypeScript'} workers ${opts.workers} bandFloats ${opts.bandFloats} ${shared ? 'shared' : 'plain'} latents`;
        const before = conv3x3Stats.parallelFills;
        const inputs = zs.map((z) => (shared ? toShared(z, 1) : z));
        const outs: T.Tensor[] = [];
        for (let i = 0; i < zs.length; i++) {
          const c0 = conv3x3Stats.calls;
          outs.push(T.noGrad(() => dec.forward(inputs[i])));
          assert.equal(conv3x3Stats.calls - c0, convs, `${what}: image ${i} ran the fast path`);
          assertRel(outs[i], refs[i], `${what}: image ${i}`);
        }
        for (let i = 0; i < zs.length; i++) {
          assertRel(outs[i], refs[i], `${what}: image ${i} after all ${zs.length} decodes`);
          assertSameValues(inputs[i], zs[i], `${what}: latent ${i} untouched`);
        }
        if (opts.workers > 0 && !(native && backend().native)) assert.ok(conv3x3Stats.parallelFills > before, `${what}: fills were split`);
        else assert.equal(conv3x3Stats.parallelFills, before, `${what}: no split fills`);
      }
    }
  } finally {
    setConv3x3Options(prev);
  }
});

test('setConv3x3Options returns the previous values and rejects invalid ones', () => {
  const prev = setConv3x3Options({ enabled: false, native: false, winograd: 2, winogradMinTiles: 7, bandFloats: 123, workers: 0, parallelMinFloats: 456 });
  try {
    const mid = setConv3x3Options({});
    assert.deepEqual(mid, { enabled: false, native: false, winograd: 2, winogradMinTiles: 7, bandFloats: 123, workers: 0, parallelMinFloats: 456 });
    assert.throws(() => setConv3x3Options({ winograd: 3 }), RangeError);
    assert.throws(() => setConv3x3Options({ winogradMinTiles: 0 }), RangeError);
    assert.throws(() => setConv3x3Options({ bandFloats: 0 }), RangeError);
    assert.throws(() => setConv3x3Options({ bandFloats: 1.5 }), RangeError);
    assert.throws(() => setConv3x3Options({ workers: -2 }), RangeError);
    assert.throws(() => setConv3x3Options({ parallelMinFloats: -1 }), RangeError);
    assert.deepEqual(setConv3x3Options({}), mid, 'a rejected option changes nothing');
  } finally {
    setConv3x3Options(prev);
  }
  assert.deepEqual(setConv3x3Options({}), prev);
});

// ---------------------------------------------------------------------------------------------
// the native op (native/conv3x3.c)

const be = backend();
const skipNativeConv = be.native ? false : 'native kernels unavailable';

test('native 3×3 conv (shifted GEMMs, Winograd F(2×2, 3×3) and F(4×4, 3×3)): every prologue and residual mode equals the composed ops and the TypeScript steps, and is bit-identical on 1, 2 and 3 threads', { skip: skipNativeConv }, () => {
  const prev = setConv3x3Options({ enabled: true, workers: 0, winogradMinTiles: 1 });
  const threads0 = be.threads;
  try {
    const rng = new Rng(30);
    // [B, cin, cout, H, W, groups, bandFloats]: GEMMs big enough to be split over the pool, bands of one (tile) row
    // and uneven last bands, a GroupNorm with more groups than threads; sizes divisible by 4 take F(4×4), even ones
    // F(2×2), odd ones (and the ×2 upsampling of odd ones: even) the shifted GEMMs
    const shapes: [number, number, number, number, number, number, number][] = [
      [2, 64, 48, 20, 24, 8, 1 << 20], [1, 32, 40, 18, 10, 4, 16 * 72 * 5 * 2 + 3], [2, 12, 7, 6, 4, 3, 1],
      [1, 32, 40, 12, 20, 4, 36 * 72 * 5 * 2 + 3], [2, 64, 48, 20, 23, 8, 1 << 20], [1, 32, 40, 17, 9, 4, 3 * 40 * 11 + 5], [2, 12, 7, 5, 3, 3, 1],
    ];
    for (const winograd of [4, 2, 0]) {
      for (const [B, cin, cout, H, W, groups, bandFloats] of shapes) {
        const m = convModule(rng, cin, cout, groups);
        for (const kind of KINDS) {
          const what = `native ${winograd ? `Winograd ≤ F(${winograd}×${winograd})` : 'shifted GEMMs'} ${kind} [${B},${cin},${H},${W}]→${cout} g=${groups} band ${bandFloats}`;
          const x = randn(rng, [B, cin, H, W], 2, kind === 'gnSilu' ? 3 : 0);
          const res = kind === 'silu' || kind === 'gnSilu' ? randn(rng, [B, cout, H, W]) : null;
          const [h, w] = kind === 'up2' ? [2 * H, 2 * W] : [H, W];
          const even = winograd > 0 && h % 2 === 0 && w % 2 === 0; // F(4×4) or, failing 4 | h, w, F(2×2)
          const run = (native: boolean, t: number, into = false): T.Tensor => {
            setConv3x3Options({ native, winograd, bandFloats });
            be.setThreads(t);
            const n0 = conv3x3Stats.nativeCalls, w0 = conv3x3Stats.winogradCalls;
            const out = fast(m, kind, x, res && into ? clone(res) : res, into);
            assert.equal(conv3x3Stats.nativeCalls - n0, native ? 1 : 0, `${what}: native calls`);
            assert.equal(conv3x3Stats.winogradCalls - w0, native && even ? 1 : 0, `${what}: Winograd calls`);
            return out;
          };
          const one = run(true, 1), two = run(true, 2), three = run(true, 3);
          assertSameValues(two, one, `${what}: 2 threads vs 1`);
          assertSameValues(three, one, `${what}: 3 threads vs 1`);
          assertRel(one, reference(m, kind, x, res), `${what} vs composed ops`);
          assertRel(one, run(false, 2), `${what} vs TypeScript steps`);
          if (res) assertSameValues(run(true, 2, true), one, `${what}: into the residual`);
        }
      }
    }
  } finally {
    be.setThreads(threads0);
    setConv3x3Options(prev);
  }
});
