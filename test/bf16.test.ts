/**
 * bf16 weights (src/tensor/ops/bf16.ts, native/bf16_gemm.c, src/var/weights-dtype.ts): the rounding against
 * known values, the native kernel on every path this CPU has against the TypeScript reference (bit for bit),
 * the reference against a float64 dot product (a stated bound), the thread count (bit for bit), ACTVAR_BF16,
 * and a VAR with bf16 weights against its float32 self (the tiny parity model: logits, greedy tokens).
 */
import './util/setup.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as T from '../src/tensor/index.js';
import { Rng } from '../src/tensor/rng.js';
import { backend, loadNativeKernels, parseSettings, OpenBlasBackend, type Bf16Path, type NativeKernels } from '../src/backend/node.js';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors.js';
import { loadVar, toBf16Weights } from '../src/var/load.js';
import { initVarParams, randomVar } from '../src/var/init.js';
import { isBf16Weight } from '../src/var/weights-dtype.js';
import { varConfigForDepth } from '../src/var/config.js';
import { loadVqvae } from '../src/vqvae/load.js';
import { fixture as tiny, needsFixtures, repoRoot } from './util/fixtures.js';
import { assertSameBits, randn as randnOf } from './util/compare.js';

const native = loadNativeKernels().kernels;
const skipNative = native ? false : `native kernels unavailable: ${loadNativeKernels().why}`;
const be = backend();
const skipPool = be instanceof OpenBlasBackend && be.threadPool ? false : 'no thread pool (needs OpenBLAS and the native kernels)';
const rng = new Rng(5);
const randn = (n: number, scale = 1): Float32Array => randnOf(rng, n, scale);

test('f32 → bf16 rounds to nearest even (values from PyTorch 1.13 .to(torch.bfloat16)); NaN stays NaN', () => {
  // torch.tensor([x], dtype=torch.float32).to(torch.bfloat16).view(torch.int16) on Debian's python3-torch 1.13
  const known: [number, number][] = [
    [1, 0x3f80], [1 + 2 ** -8, 0x3f80], [1 + 3 * 2 ** -8, 0x3f82], [1 + 2 ** -8 + 2 ** -20, 0x3f81], [-2.5, 0xc020],
    [3.4028235e38, 0x7f80], [1e-40, 0x0001], [3.14159265, 0x4049], [-0, 0x8000], [65504, 0x4780], [1 / 3, 0x3eab],
    [Infinity, 0x7f80], [-Infinity, 0xff80],
  ];
  for (const [x, b] of known) assert.equal(T.f32ToBf16(x), b, `bf16(${x})`);
  assert.ok(Number.isNaN(T.bf16ToF32(T.f32ToBf16(NaN))));
  assert.equal(T.bf16ToF32(0x3f82), 1.015625);
  // the array conversion (native when built) gives the same bits as the scalar one, NaN payloads and subnormals included
  const bits = new Uint32Array([0x7f800001, 0xffc00000, 0x7fffffff, 0x00000001, 0x80007fff, 0x00008000, 0x00018000, 0x3f808000, 0x3f818000, 0x7f7fffff]);
  const r = new Rng(3);
  const many = new Uint32Array(4096).map((_, i) => (i < bits.length ? bits[i] : Math.floor(r.uniform() * 2 ** 32)));
  const f = new Float32Array(many.buffer), got = T.toBf16Array(f);
  for (let i = 0; i < f.length; i++) assert.equal(got[i], T.f32ToBf16(f[i]), `bits 0x${many[i].toString(16)}`);
});

/** [M, N, K]: K tails (K mod 32 ≠ 0, odd K, K < 32), N and M not multiples of the tiles, matrix-vector rows. */
const SHAPES: [number, number, number][] = [
  [1, 5, 7], [2, 33, 64], [3, 17, 100], [4, 8, 32], [5, 64, 1024], [9, 130, 33], [2, 1030, 256], [7, 9, 1], [6, 4, 31], [17, 3, 95],
];

/** Runs gemmBf16 on `path` (capped to what the CPU has), restoring the default path after. */
function onPath<R>(nk: NativeKernels, p: Bf16Path, f: () => R): { path: Bf16Path; r: R } {
  const got = nk.setBf16Mode(p);
  try { return { path: got, r: f() }; } finally { nk.setBf16Mode(parseSettings(process.env).bf16); }
}

test('native bf16 GEMM on every path (vdpbf16ps, AVX-512F, AVX2, C) = the TypeScript reference, bit for bit', { skip: skipNative }, () => {
  const paths = new Set<Bf16Path>();
  for (const [M, N, K] of SHAPES) {
    const ldx = K + 3, ldw = K + 5, ldc = N + 2;
    const X = randn(M * ldx), W = T.toBf16Array(randn(N * ldw, 0.2)), C0 = randn(M * ldc);
    for (const beta of [0, 1]) {
      const want = C0.slice();
      T.gemmBf16Reference(M, N, K, X, ldx, W, ldw, beta, want, ldc);
      for (const p of ['avx512-bf16', 'avx512f', 'avx2', 'c'] as const) {
        const { path: ran, r: got } = onPath(native!, p, () => { const C = C0.slice(); T.gemmBf16(M, N, K, X, ldx, W, ldw, beta, C, ldc); return C; });
        paths.add(ran);
        assertSameBits(got, want, `${M}×${N}×${K} beta ${beta} on ${ran}`);
      }
    }
  }
  assert.ok(paths.has('c'), 'the plain C path ran');
});

test('the bf16 reference is the float64 dot product of the bf16 values within its float32 rounding bound, and near the float32 product', () => {
  for (const [M, N, K] of SHAPES) {
    const X = randn(M * K), Wf = randn(N * K, 0.1), W = T.toBf16Array(Wf), C = new Float32Array(M * N);
    T.gemmBf16Reference(M, N, K, X, K, W, K, 0, C, N);
    const Kp = Math.ceil(K / 32) * 32;
    for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) {
      let exact = 0, abs = 0, exact32 = 0, abs32 = 0;
      for (let k = 0; k < K; k++) {
        const p = T.bf16ToF32(T.f32ToBf16(X[m * K + k])) * T.bf16ToF32(W[n * K + k]);
        exact += p; abs += Math.abs(p);
        exact32 += X[m * K + k] * Wf[n * K + k]; abs32 += Math.abs(X[m * K + k] * Wf[n * K + k]);
      }
      const got = C[m * N + n];
      // each lane adds Kp/16 products in turn, then 4 tree levels: (Kp/16 + 4)·2⁻²⁴·Σ|x̂ŵ| (first order)
      assert.ok(Math.abs(got - exact) <= (Kp / 16 + 5) * 2 ** -24 * abs + 1e-30, `${M}×${N}×${K} [${m},${n}]: ${got} vs ${exact}`);
      // x̂ and ŵ are each within 2⁻⁹ (relative) of x and w
      assert.ok(Math.abs(got - exact32) <= 2 ** -7 * abs32 + 1e-30, `${M}×${N}×${K} [${m},${n}] vs float32 inputs: ${got} vs ${exact32}`);
    }
  }
});

test('the bf16 GEMM gives the same bits on 1, 2 and 3 threads', { skip: skipPool }, () => {
  for (const [M, N, K] of [[8, 1030, 512], [300, 260, 200], [2, 4096, 1024]] as const) {
    const X = randn(M * K), W = T.toBf16Array(randn(N * K, 0.05)), C0 = randn(M * N);
    const run = (threads: number): Float32Array => {
      const before = be.threads;
      be.setThreads(threads);
      try { const C = C0.slice(); T.gemmBf16(M, N, K, X, K, W, K, 1, C, N); return C; } finally { be.setThreads(before); }
    };
    const one = run(1);
    assertSameBits(run(2), one, `${M}×${N}×${K} on 2 threads`);
    assertSameBits(run(3), one, `${M}×${N}×${K} on 3 threads`);
  }
});

test('ACTVAR_BF16: 1 (default) lets the kernel use AVX512-BF16, 0 forces the widening path; other values are refused', { skip: skipNative }, () => {
  assert.equal(parseSettings({}).bf16, true);
  assert.equal(parseSettings({ ACTVAR_BF16: '0' }).bf16, false);
  assert.throws(() => parseSettings({ ACTVAR_BF16: 'off' }), /ACTVAR_BF16='off' is not allowed; use 1 \(on\) or 0 \(off\)/);
  const nodeJs = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'src', 'backend', 'node.js');
  const script = `import { loadNativeKernels } from ${JSON.stringify(nodeJs)}; console.log(loadNativeKernels().kernels.bf16Path());`;
  const pathWith = (v: string) => spawnSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, ACTVAR_BF16: v }, encoding: 'utf8' }).stdout.trim();
  const on = pathWith('1'), off = pathWith('0');
  assert.notEqual(off, 'avx512-bf16');
  assert.ok(['avx512f', 'avx2', 'c'].includes(off), off);
  // on a CPU with AVX512-BF16 the default takes the instruction; without it both are the same fallback
  if (on !== 'avx512-bf16') assert.equal(on, off);
});

test('linear with a bfloat16 weight: the bf16 GEMM plus the bias; inference only; never saved', () => {
  const x = new T.Tensor(randn(6 * 40), [2, 3, 40]), w = new T.Tensor(randn(24 * 40, 0.1), [24, 40]), b = new T.Tensor(randn(24), [24]);
  const wb = T.bf16Tensor(w);
  assert.equal(wb.dtype, 'bfloat16');
  assert.throws(() => wb.f32, /expected a float32 tensor, got bfloat16/);
  const y = T.noGrad(() => T.linear(x, wb, b));
  assert.deepEqual([...y.shape], [2, 3, 24]);
  const want = new Float32Array(6 * 24);
  for (let r = 0; r < 6; r++) want.set(b.f32, r * 24);
  T.gemmBf16Reference(6, 24, 40, x.f32, 40, wb.data as Uint16Array, 40, 1, want, 24);
  assertSameBits(y.f32, want, 'linear(x, bf16 w, b)');
  x.requiresGrad = true;
  assert.throws(() => T.linear(x, wb, b), /bf16 \(inference only\)/);
  assert.throws(() => writeSafetensors(path.join(os.tmpdir(), `actvar-bf16-${process.pid}.safetensors`), new Map([['w', wb]])), /holds bf16 weights/);
});

const tinyCfg = varConfigForDepth(2, { width: 64, heads: 2, patchNums: [1, 2, 3], vocabSize: 32, Cvae: 8, numClasses: 4 });

test('randomVar with weightsDtype bf16 = toBf16Weights of the float32 model; the matrices are bf16, the rest float32', () => {
  const fp = randomVar(tinyCfg, 3), bf = randomVar(tinyCfg, 3, { weightsDtype: 'bf16' }), conv = toBf16Weights(fp);
  assert.equal(fp.weightsDtype, 'fp32');
  assert.equal(bf.weightsDtype, 'bf16');
  let bytes32 = 0, bytes16 = 0;
  for (const [k, t] of fp.params) {
    const a = bf.params.get(k)!, c = conv.params.get(k)!;
    assert.equal(a.dtype, isBf16Weight(k) ? 'bfloat16' : 'float32', k);
    assert.deepEqual(Array.from(a.data), Array.from(c.data), k);
    bytes32 += t.data.byteLength; bytes16 += a.data.byteLength;
  }
  assert.ok(bytes16 < 0.56 * bytes32, `bf16 model ${bytes16} bytes vs ${bytes32}`);
  assert.equal(fp.params.get('blocks.0.ffn.fc1.weight')!.dtype, 'float32', 'the float32 model is left as it was');
});

const TINY = needsFixtures(tiny('var_state_dict.safetensors'), tiny('vqvae_state_dict.safetensors'), tiny('generate_greedy_cfg1.5.safetensors'));

test('tiny parity VAR with bf16 weights: native = TypeScript reference bit for bit; logits and greedy tokens near float32', TINY, () => {
  const fp = loadVar(tiny('var_state_dict.safetensors')), bf = loadVar(tiny('var_state_dict.safetensors'), {}, { weightsDtype: 'bf16' });
  const vqvae = loadVqvae(tiny('vqvae_state_dict.safetensors'), { patchNums: fp.config.patchNums });
  const labels = [3, 7, 0, 9];
  const gen = (m: typeof fp) => m.autoregressiveInfer({ labels, vqvae, cfg: 1.5, topK: 1, topP: 0, rng: new Rng(1), decode: false });
  const a = gen(fp), b = gen(bf);
  // the whole generation through the TypeScript reference of the bf16 GEMM: the same tokens and f̂ bits
  if (native) {
    const prev = be.native;
    be.native = { ...native, bf16Gemm: (...args: Parameters<NativeKernels['bf16Gemm']>) => T.gemmBf16Reference(...args) };
    try {
      const r = gen(bf);
      assert.deepEqual(Array.from(r.idxBL.i32), Array.from(b.idxBL.i32));
      assertSameBits(r.fHat.f32, b.fHat.f32, 'fHat, reference bf16 GEMM vs native');
    } finally { be.native = prev; }
  }
  // this model's weights are O(1) random (fixture README): bf16 moves the logits by ~1 % and changes few greedy picks
  let agree = 0;
  const ia = a.idxBL.i32, ib = b.idxBL.i32;
  for (let i = 0; i < ia.length; i++) if (ia[i] === ib[i]) agree++;
  assert.ok(agree / ia.length >= 0.8, `greedy token agreement bf16 vs float32: ${agree}/${ia.length}`);
  const x = new T.Tensor(randn(2 * (fp.L - 1) * fp.config.Cvae), [2, fp.L - 1, fp.config.Cvae]), lab = T.intTensor([1, 2], [2]);
  const la = T.noGrad(() => fp.forward(lab, x)).f32, lb = T.noGrad(() => bf.forward(lab, x)).f32;
  let num = 0, den = 0;
  for (let i = 0; i < la.length; i++) { num += (la[i] - lb[i]) ** 2; den += la[i] ** 2; }
  assert.ok(Math.sqrt(num / den) < 0.03, `relative RMS change of the logits: ${Math.sqrt(num / den)}`);
});

test('actvar generate --weights-dtype bf16: greedy tokens near the official ones; refused with --actvar (exit 2, nothing written)', TINY, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'actvar-bf16-'));
  const cli = path.join(repoRoot, 'dist/src/cli/main.js');
  const base = ['generate', '--var', tiny('var_state_dict.safetensors'), '--vae', tiny('vqvae_state_dict.safetensors'), '--classes', '3,7', '--top-k', '1', '--quiet'];
  try {
    const r = spawnSync(process.execPath, [cli, ...base, '--weights-dtype', 'bf16', '--tokens-out', 't.json'], { cwd: dir, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const got = (JSON.parse(fs.readFileSync(path.join(dir, 't.json'), 'utf8')) as { idx_BL: number[][] }).idx_BL.flat();
    const want = Array.from(readSafetensors(tiny('generate_greedy_cfg1.5.safetensors')).get('idx_BL')!.data);
    const agree = got.filter((v, i) => v === want[i]).length;
    assert.ok(agree / want.length >= 0.8, `bf16 greedy tokens agree with the official float32 ones at ${agree}/${want.length}`);
    const bad = spawnSync(process.execPath, [cli, ...base, '--weights-dtype', 'bf16', '--actvar', '--tokens-out', 'u.json'], { cwd: dir, encoding: 'utf8' });
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /^actvar: error: --weights-dtype bf16 does not combine with --actvar or --actvar-model yet/m);
    assert.ok(!fs.existsSync(path.join(dir, 'u.json')));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
