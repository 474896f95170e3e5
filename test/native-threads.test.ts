/**
 * actvar's thread pool and the kernels on it (native/threads.c, small_gemm.c, grouped_ffn.c, attention.c,
 * rows.c): the split sgemm against the TypeScript GEMM and against itself on one thread (bit for bit: the
 * thread count must never change a result), the grouped expert FFN against the TypeScript expert loop and the
 * KV-cache attention against the TypeScript head loop (bit for bit), the row kernels of VAR inference against their TypeScript twins, and a whole tiny-VAR
 * generation both ways. Skipped, with the reason, without OpenBLAS or the native library.
 */
import './util/setup.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../src/tensor/index.js';
import { Rng } from '../src/tensor/rng.js';
import { backend, loadNativeKernels, OpenBlasBackend, TsBackend } from '../src/backend/node.js';
import { ExpertFFN, groupByExpert } from '../src/actvar/experts.js';
import { Selector } from '../src/actvar/selector.js';
import { adaLNModulate, gatedResidual, attendWithCache, createKVCache, type VarBlock } from '../src/var/basic-var.js';
import { loadVar } from '../src/var/load.js';
import { VQVAE } from '../src/vqvae/index.js';
import { readSafetensors } from '../src/io/index.js';
import { fixture, needsFixtures } from './util/fixtures.js';
import { assertClose, assertSameBits, bothWays, randn as randnOf } from './util/compare.js';

const native = loadNativeKernels().kernels;
const be = backend();
const pool = be instanceof OpenBlasBackend && be.threadPool;
const skipPool = pool ? false : 'no thread pool (needs OpenBLAS and the native kernels)';
const skipNative = native ? false : `native kernels unavailable: ${loadNativeKernels().why}`;
const rng = new Rng(11);
const randn = (n: number, scale = 1): Float32Array => randnOf(rng, n, scale);

/** f() with the backend on `threads` threads, restored after. */
function withThreads<R>(threads: number, f: () => R): R {
  const before = be.threads;
  be.setThreads(threads);
  try { return f(); } finally { be.setThreads(before); }
}

test('split sgemm: every path (columns, rows, unsplit, few-row kernel) matches the TypeScript GEMM and is the same on 1, 2 and 3 threads', { skip: skipPool }, () => {
  const ts = new TsBackend();
  // [transA, transB, M, N, K]: few-row X·Wᵀ (incl. K not a multiple of 16, N not of 4), column
  // splits, row splits (M > N; 44 rows: 8 mod 12, where no column cut of OpenBLAS's Haswell kernel
  // is exact, native/threads.c), jobs too small to split, every transpose combination
  const shapes: [boolean, boolean, number, number, number][] = [
    [false, true, 2, 1030, 1024], [false, true, 7, 203, 77], [false, true, 72, 256, 64], [false, true, 73, 300, 50],
    [false, true, 40, 3, 40], [false, false, 5, 700, 300], [true, false, 64, 512, 96], [true, true, 33, 257, 129],
    [false, false, 600, 40, 200], [false, true, 900, 16, 300], [true, false, 513, 24, 100], [false, true, 3, 5, 7],
    [false, false, 44, 1280, 256],
  ];
  const parts0 = be.native!.setSplitParts(0);
  try {
    for (const [ta, tb, M, N, K] of shapes) {
      for (const beta of [0, 1, 0.5]) {
        // operands inside larger buffers (offsets, leading dimensions above the minimum)
        const lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 5, ldc = N + 2;
        const A = randn((ta ? K : M) * lda + 4), B = randn((tb ? N : K) * ldb + 6), C0 = randn(M * ldc + 8);
        if (beta === 0) C0.fill(NaN); // beta = 0 must ignore C, NaN included (BLAS semantics)
        const run = (b: { sgemm: typeof be.sgemm }): Float32Array => {
          const C = C0.slice();
          b.sgemm(ta, tb, M, N, K, 0.75, A, 4, lda, B, 6, ldb, beta, C, 8, ldc);
          return C;
        };
        const ref = run(ts);
        // the default part count (this machine's CPUs, at least 2), then 3 parts: more than 2 threads' worth
        for (const parts of [0, 3]) {
          be.native!.setSplitParts(parts);
          const two = withThreads(2, () => run(be)), one = withThreads(1, () => run(be)), three = withThreads(3, () => run(be));
          const what = `${ta ? 'T' : 'N'}${tb ? 'T' : 'N'} ${M}×${N}×${K} beta ${beta}${parts ? `, ${parts} parts` : ''}`;
          assertSameBits(two, one, `${what}, 2 threads vs 1`);
          assertSameBits(three, one, `${what}, 3 threads vs 1`);
          assertClose(two.subarray(8), ref.subarray(8), 1e-4, 2e-5 * Math.sqrt(K), `${what} vs TypeScript`);
          assertSameBits(two.subarray(0, 8), C0.subarray(0, 8), `${what}: nothing written before C`);
        }
      }
    }
  } finally {
    be.native!.setSplitParts(parts0);
  }
});

test('grouped expert FFN on the pool: bit-identical to the TypeScript expert loop, on 1, 2 and 3 threads', { skip: skipPool }, () => {
  // the third and fifth: the last experts (one per thread) run as the parts of their GEMMs (grouped_ffn.c):
  // groups of ~200 rows, fc1 split by rows and fc2 by columns; groups of ~100 rows, both split by columns;
  // the last two: enough tokens for the chunked kernel (expertChunkTokens: chunks of 600 and 1250 tokens with 2 parts)
  for (const [n, C, H, N, K] of [[61, 64, 256, 16, 12], [9, 32, 96, 3, 3], [400, 256, 1024, 16, 8], [40, 48, 64, 8, 1], [200, 256, 2048, 8, 4],
    [1200, 64, 512, 16, 12], [5000, 32, 128, 8, 3]]) {
    const ffn = new ExpertFFN({
      fc1Weight: new T.Tensor(randn(H * C, 0.1), [H, C]), fc1Bias: new T.Tensor(randn(H, 0.1), [H]),
      fc2Weight: new T.Tensor(randn(C * H, 0.1), [C, H]), fc2Bias: new T.Tensor(randn(C, 0.1), [C]),
    }, N);
    const x = new T.Tensor(randn(n * C), [n, C]);
    const route = new Int32Array(n * K);
    for (let t = 0; t < n; t++) {
      const order = Array.from({ length: N }, (_, e) => e).sort(() => rng.uniform() - 0.5);
      for (let k = 0; k < K; k++) route[t * K + k] = order[k];
    }
    const run = () => T.noGrad(() => ffn.forward(x, route, K)).f32;
    const two = withThreads(2, run), one = withThreads(1, run), three = withThreads(3, run);
    const prev = be.native!;
    be.native = { ...prev, groupedFFN: () => false }; // the TypeScript loop, same GELU
    let loop: Float32Array;
    try { loop = withThreads(2, run); } finally { be.native = prev; }
    assertSameBits(two, loop, `n ${n}, ${N} experts, K ${K}: pool vs loop`);
    assertSameBits(one, loop, `n ${n}, ${N} experts, K ${K}: 1 thread vs loop`);
    assertSameBits(three, loop, `n ${n}, ${N} experts, K ${K}: 3 threads vs loop`);
  }
});

test('grouped expert FFN: bad groupings are refused before any native code runs', { skip: skipNative }, () => {
  const n = 4, C = 8, N = 2, de = 4, K = 1, H = N * de;
  const W1 = randn(H * C), B1 = randn(H), W2 = randn(C * H), X = randn(n * C), out = new Float32Array(n * C);
  const g = groupByExpert(Int32Array.from([0, 1, 0, 1]), n, K, N);
  const call = (tokens: Int32Array, offsets: Int32Array, slots: Int32Array, x = X) =>
    native!.groupedFFN(x, n, C, W1, B1, W2, de, tokens, offsets, slots, N, K, out);
  assert.throws(() => call(g.tokens, Int32Array.from([0, 3, 2]), g.slots), /offsets must/);
  assert.throws(() => call(g.tokens, Int32Array.from([0, 2, 5]), g.slots), /offsets must run from 0 to n·K = 4/);
  assert.throws(() => call(Int32Array.from([0, 2, 1, 9]), g.offsets, g.slots), /grouped entry 3 is out of range/);
  assert.throws(() => call(g.tokens, g.offsets, g.slots, X.subarray(1)), /array of 31 elements, 32 needed/);
});

test('KV-cache attention on the pool: bit-identical to the TypeScript head loop, on 1 and 2 threads', { skip: skipPool }, () => {
  // [B, H, hd, cached before, new queries l]: few-row GEMMs (l ≤ 72), split GEMMs, one (b, h) pair
  for (const [B, H, hd, L0, l] of [[2, 3, 8, 7, 5], [2, 4, 64, 120, 130], [1, 1, 16, 0, 40]]) {
    for (const l2 of [true, false]) {
      const block = {
        heads: H, headDim: hd, attnL2Norm: l2, scaleMul: l2 ? new T.Tensor(randn(H, 0.5), [1, H, 1, 1]) : null,
      } as unknown as VarBlock;
      const cache = createKVCache(B, H, hd, L0 + l + 3);
      cache.k.set(randn(cache.k.length)); cache.v.set(randn(cache.v.length));
      cache.len = L0;
      const t = (n: number) => new T.Tensor(randn(B * H * l * hd, l2 ? 1 : 3), [B, H, l, hd]);
      const q = t(0), k = t(1), v = t(2);
      const run = () => {
        cache.len = L0;
        return T.noGrad(() => attendWithCache(block, q, k, v, cache)).f32;
      };
      const two = withThreads(2, run), one = withThreads(1, run);
      const prev = be.native!;
      be.native = { ...prev, attendCached: () => false }; // the TypeScript loop over heads
      let loop: Float32Array;
      try { loop = withThreads(2, run); } finally { be.native = prev; }
      const what = `B ${B}, H ${H}, hd ${hd}, ${L0} + ${l} tokens, ${l2 ? 'cosine' : 'dot-product'}`;
      assertSameBits(two, loop, `${what}: pool vs loop`);
      assertSameBits(one, loop, `${what}: 1 thread vs loop`);
    }
  }
  const q = randn(2 * 2 * 3 * 4), kv = randn(2 * 2 * 10 * 4), out = new Float32Array(2 * 3 * 8), bounds = new Float64Array(2);
  assert.throws(() => native!.attendCached(q, kv, kv, 2, 2, 3, 4, 11, 10, 1, bounds, out), /11 cached tokens exceed the capacity 10/);
  assert.throws(() => native!.attendCached(q.subarray(1), kv, kv, 2, 2, 3, 4, 10, 10, 1, bounds, out), /array of 47 elements, 48 needed/);
  assert.throws(() => native!.attendCached(q, kv, kv, 2, 2, 3, 4, 0, 10, 1, bounds, out), /at least one cached token/);
});

test('native row kernels of inference (adaLN modulation, gated residual, head split, selector gate) match their TypeScript twins', { skip: skipNative }, () => {
  const B = 2, l = 37, C = 48, rows = B * l;
  const x = new T.Tensor(randn(rows * C, 3), [B, l, C]);
  const scale = new T.Tensor(randn(B * C, 0.3), [B, C]), shift = new T.Tensor(randn(B * C, 0.3), [B, C]);
  const branch = new T.Tensor(randn(rows * C), [B, l, C]), gamma = new T.Tensor(randn(B * C), [B, C]);
  const selector = new Selector(new T.Tensor(randn(C, 0.2), [1, C]), new T.Tensor(Float32Array.of(0.3), [1]));
  for (const threads of [1, 2]) {
    withThreads(threads, () => {
      const m = bothWays(native, () => T.noGrad(() => adaLNModulate(x, scale, shift, 1e-6)).f32);
      assertClose(m.native, m.ts, 2e-7, 1e-7, `adaLN modulation, ${threads} thread(s)`);
      const r = bothWays(native, () => T.noGrad(() => gatedResidual(x, branch, gamma)).f32);
      assertSameBits(r.native, r.ts, `gated residual, ${threads} thread(s)`);
      const g = bothWays(native, () => selector.selectRaw(x, 20, 1e-6));
      assertClose(g.native.logits, g.ts.logits, 2e-7, 1e-7, `selector gate, ${threads} thread(s)`);
      assert.deepEqual([...g.native.index], [...g.ts.index], `selected tokens, ${threads} thread(s)`);
    });
  }
  // head split into a KV-cache layout: part k of qkv [B, L, 3C] + bias, cosine-normalised with
  // per-head temperatures, rows placed after `base` in a buffer of `stride` rows per head
  const H = 4, hd = 12, L = 29, stride = 40, base = 7, CC = H * hd;
  const qkv = randn(B * L * 3 * CC), bias = randn(CC, 0.5), sH = Float64Array.from({ length: H }, (_, h) => 1 + h / 3);
  for (const [part, l2, temps] of [[0, true, sH], [1, true, null], [2, false, null]] as const) {
    const got = new Float32Array(B * H * stride * hd).fill(-7);
    native!.splitHeads(qkv, B, L, H, hd, part, bias, l2, temps, got, stride, base);
    const want = new Float32Array(got.length).fill(-7);
    for (let b = 0; b < B; b++) for (let i = 0; i < L; i++) for (let h = 0; h < H; h++) {
      const src = (b * L + i) * 3 * CC + part * CC + h * hd, dst = ((b * H + h) * stride + base + i) * hd;
      let ss = 0;
      for (let d = 0; d < hd; d++) { const v = Math.fround(qkv[src + d] + bias[h * hd + d]); want[dst + d] = v; ss += v * v; }
      if (l2) { const f = (temps ? temps[h] : 1) / Math.max(Math.sqrt(ss), 1e-12); for (let d = 0; d < hd; d++) want[dst + d] *= f; }
    }
    assertClose(got, want, 2e-7, 1e-9, `head split, part ${part}`);
  }
  assert.throws(() => native!.splitHeads(qkv, B, L, H, hd, 0, bias, true, null, new Float32Array(10), stride, base), /needed/);
  assert.throws(() => native!.splitHeads(qkv, B, L, H, hd, 0, bias, true, null, new Float32Array(B * H * stride * hd), stride, 20), /do not fit/);
  assert.throws(() => native!.modulate(x.f32, scale.f32, shift.f32, 3, rows, C, 1e-6, new Float32Array(rows * C)), /do not split into 3 samples/);
});

/** The reference fixtures the tiny-VAR test reads (skipped when absent, see test/util/fixtures.ts). */
const TINY = needsFixtures(fixture('var_state_dict.safetensors'), fixture('vqvae_state_dict.safetensors'));

test('a tiny-VAR generation: bit-identical on 1 and 2 threads; the same tokens as on one thread in TypeScript', { skip: skipNative || TINY.skip }, () => {
  const model = loadVar(fixture('var_state_dict.safetensors'));
  const vqvae = VQVAE.fromStateDict(readSafetensors(fixture('vqvae_state_dict.safetensors')), { patchNums: model.config.patchNums });
  const gen = () => model.autoregressiveInfer({ labels: [3, 7], vqvae, cfg: 1.5, topK: 1, decode: false, rng: new Rng(4) });
  const fast = gen();
  // the thread count never changes a result
  const oneThread = withThreads(1, gen);
  assert.deepEqual([...oneThread.idxBL.data], [...fast.idxBL.data]);
  assertSameBits(oneThread.fHat.f32, fast.fHat.f32, 'f̂, 1 vs 2 threads');
  const prev = be.native;
  let slow: ReturnType<typeof gen>;
  try { be.native = null; slow = withThreads(1, gen); } finally { be.native = prev; }
  assert.deepEqual([...fast.idxBL.data], [...slow.idxBL.data]);
  assertClose(fast.fHat.f32, slow.fHat.f32, 1e-4, 1e-5, 'f̂');
});
