import './util/setup.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as T from '../src/tensor/index.js';
import { Rng } from '../src/tensor/rng.js';
import { readSafetensors } from '../src/io/safetensors.js';
import { VQVAE } from '../src/vqvae/vqvae.js';
import { Conv2d, Normalize, setConv3x3Options, conv3x3Stats, type ModuleCtx } from '../src/vqvae/basic-vae.js';
import { conv2d } from '../src/tensor/ops/conv.js';
import { upsampleNearest2x } from '../src/tensor/ops/resample.js';
import { inferVqvaeConfig, patchNumsFromLvl1L } from '../src/vqvae/config.js';
import { phiMap, phiIndex, linspaceNumpy } from '../src/vqvae/quant.js';
import { loadVqvae } from '../src/vqvae/load.js';
import { gradcheck, randTensor } from './util/gradcheck.js';
import { fixture, needsFixtures } from './util/fixtures.js';
/** The reference fixtures these tests read (skipped when absent, see test/util/fixtures.ts). */
const TINY = needsFixtures(...['var_state_dict.safetensors', 'vqvae_state_dict.safetensors', 'forward.safetensors', 'generate_greedy_cfg1.5.safetensors'].map(fixture));

function maxAbsDiff(a: T.Tensor, b: T.Tensor): number {
  assert.deepEqual([...a.shape], [...b.shape], `shape [${a.shape}] vs [${b.shape}]`);
  let m = 0;
  const x = a.data, y = b.data;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i] - y[i]));
  return m;
}

function assertClose(got: T.Tensor, want: T.Tensor, what: string, tol = 1e-4): void {
  const d = maxAbsDiff(got, want);
  assert.ok(d <= tol, `${what}: max |diff| ${d.toExponential(3)} > ${tol}`);
}

function assertSameInts(got: T.Tensor, want: T.Tensor, what: string): void {
  assert.equal(got.dtype, 'int32', `${what}: dtype`);
  assert.deepEqual([...got.shape], [...want.shape], `${what}: shape`);
  assert.deepEqual([...got.data], [...want.data], `${what}: values`);
}

// ---------------------------------------------------------------------------------------------
// the user path: load the weights, infer the architecture, patch numbers from the VAR's lvl_1L

let cached: { vae: VQVAE; fwd: Map<string, T.Tensor>; gen: Map<string, T.Tensor> } | null = null;
function fixtures() {
  if (cached) return cached;
  const varSd = readSafetensors(fixture('var_state_dict.safetensors'));
  const patchNums = patchNumsFromLvl1L(varSd.get('lvl_1L')!);
  const vae = VQVAE.fromStateDict(readSafetensors(fixture('vqvae_state_dict.safetensors')), { patchNums });
  cached = {
    vae,
    fwd: readSafetensors(fixture('forward.safetensors')),
    gen: readSafetensors(fixture('generate_greedy_cfg1.5.safetensors')),
  };
  return cached;
}

// ---------------------------------------------------------------------------------------------
// Phi selection (docs/VAR.md §4.1)

test('Phi map: the official rule for K = 4 and SN = 10, 5, 6, 4', () => {
  assert.deepEqual(phiMap(10, 4), [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]);
  assert.deepEqual(phiMap(5, 4), [0, 1, 2, 2, 3]);
  assert.deepEqual(phiMap(6, 4), [0, 0, 1, 2, 3, 3]);
  assert.deepEqual(phiMap(4, 4), [0, 1, 2, 3]);
});

test('Phi map: other K and SN agree with numpy (values printed by numpy 2.4 with the official formula)', () => {
  assert.deepEqual(phiMap(12, 4), [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]);
  assert.deepEqual(phiMap(10, 3), [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]);
  assert.deepEqual(phiMap(7, 6), [0, 0, 1, 2, 3, 5, 5]);
  assert.deepEqual(phiMap(4, 5), [0, 1, 3, 4]);
  assert.deepEqual(phiMap(12, 8), [0, 0, 1, 2, 2, 3, 4, 5, 5, 6, 7, 7]);
  assert.deepEqual(phiMap(6, 2), [0, 0, 0, 1, 1, 1]);
  // one Phi per scale (share_quant_resi = 0 with SN Phis) is the identity map
  for (let SN = 2; SN <= 16; SN++) assert.deepEqual(phiMap(SN, SN), [...Array(SN).keys()], `SN=${SN}`);
  assert.deepEqual(phiMap(10, 1), new Array(10).fill(0));
  assert.equal(phiIndex(0, 1, 4), 0);
  assert.throws(() => phiIndex(4, 4, 4), /outside/);
  // numpy linspace arithmetic: last element is exactly `stop`
  const t = linspaceNumpy(1 / 12, 11 / 12, 4);
  assert.equal(t[3], 11 / 12);
  assert.equal(t[1], (11 / 12 - 1 / 12) / 3 + 1 / 12);
});

// ---------------------------------------------------------------------------------------------
// config inference

test('config inferred from the fixture weights and the VAR lvl_1L', TINY, () => {
  const { vae } = fixtures();
  const c = vae.config;
  assert.deepEqual(c.patchNums, [1, 2, 3, 4]);
  assert.equal(c.ch, 32);
  assert.deepEqual(c.chMult, [1, 1, 2, 2, 4]);
  assert.equal(c.numResBlocks, 2);
  assert.equal(c.usingSa, true);
  assert.equal(c.usingMidSa, true);
  assert.equal(c.Cvae, 8);
  assert.equal(c.vocabSize, 64);
  assert.equal(c.shareQuantResi, 4);
  assert.equal(c.quantResi, 0.5);
  assert.equal(c.downsample, 16);
  assert.equal(c.imgSize, 64);
  assert.deepEqual(vae.quantize.phiMap(), [0, 1, 2, 3]);
});

// ---------------------------------------------------------------------------------------------
// parity with the official code: forward.safetensors

test('forward fixture: encoder, quant_conv, tokens, f̂ per scale, reconstruction, teacher-forcing input', TINY, () => {
  const { vae, fwd } = fixtures();
  T.noGrad(() => {
    const img = fwd.get('img_in')!;
    const enc = vae.encoder.forward(img);
    assertClose(enc, fwd.get('enc_out')!, 'enc_out');
    const f = vae.quantConv.forward(enc);
    assertClose(f, fwd.get('f')!, 'f');
    assertClose(vae.encode(img), fwd.get('f')!, 'encode(img)');

    const idx = vae.imgToIdxBl(img);
    assert.equal(idx.length, 4);
    for (let si = 0; si < 4; si++) assertSameInts(idx[si], fwd.get(`gt_idx_scale${si}`)!, `gt_idx_scale${si}`);
    assertSameInts(T.concat(idx, 1), fwd.get('gt_BL')!, 'gt_BL');

    const fhats = vae.quantize.fToIdxBlOrFhat(f, true);
    for (let si = 0; si < 4; si++) assertClose(fhats[si], fwd.get(`f_hat_after_scale${si}`)!, `f_hat_after_scale${si}`);

    assertClose(vae.fhatToImg(fhats[3]), fwd.get('recon_img_pm1')!, 'recon_img_pm1');

    // teacher-forcing input from the official tokens
    const gt = [0, 1, 2, 3].map((si) => fwd.get(`gt_idx_scale${si}`)!);
    assertClose(vae.idxBlToVarInput(gt), fwd.get('x_BLCv_wo_first_l')!, 'x_BLCv_wo_first_l');
  });
});

// ---------------------------------------------------------------------------------------------
// parity with the official code: generate_greedy_cfg1.5.safetensors (the f̂ update of sampling)

test('generate fixture: embedIdx, getNextAutoregressiveInput per scale, and img_01', TINY, () => {
  const { vae, gen } = fixtures();
  T.noGrad(() => {
    const pns = vae.patchNums, SN = pns.length;
    let fHat = T.zeros([2, vae.Cvae, 4, 4]);
    for (let si = 0; si < SN; si++) {
      const h = gen.get(`h_BChw_scale${si}`)!;
      assertClose(vae.embedIdx(gen.get(`idx_scale${si}`)!, pns[si]), h, `embedIdx(idx_scale${si})`, 0);
      const r = vae.getNextAutoregressiveInput(si, SN, fHat, h);
      fHat = r.fHat;
      assertClose(fHat, gen.get(`f_hat_after_scale${si}`)!, `f_hat_after_scale${si}`);
      if (si < SN - 1) assertClose(r.next, gen.get(`next_token_map_area_scale${si + 1}`)!, `next_token_map_area_scale${si + 1}`);
      else assert.equal(r.next, r.fHat);
    }
    const img01 = T.scale(T.addScalar(vae.fhatToImg(fHat), 1), 0.5);
    assertClose(img01, gen.get('img_01')!, 'img_01');
  });
});

// ---------------------------------------------------------------------------------------------
// loading and errors

test('loadVqvae reads a .safetensors file; ema_vocab_hit_SV is ignored; patch numbers are required', TINY, () => {
  const vae = loadVqvae(fixture('vqvae_state_dict.safetensors'), { patchNums: [1, 2, 3, 4] });
  assert.equal(vae.config.ch, 32);
  assert.ok(!vae.stateDict().has('quantize.ema_vocab_hit_SV'));
  assert.throws(() => loadVqvae(fixture('vqvae_state_dict.safetensors'), {}), /patch numbers are not stored in VQVAE weights/);
  assert.throws(() => loadVqvae(fixture('does-not-exist.safetensors'), { patchNums: [1, 2, 3, 4] }), /does-not-exist/);
  // the last patch number must be the latent side: a 64×64 image gives 4×4, so 5 fails at use time
  const bad = loadVqvae(fixture('vqvae_state_dict.safetensors'), { patchNums: [1, 2, 5] });
  assert.throws(() => bad.imgToIdxBl(fixtures().fwd.get('img_in')!), /latent is 4×4 but the last patch number is 5/);
});

// A minimal torch.save writer (zip, STORED, pickle protocol 2 with _rebuild_tensor_v2 and persistent ids),
// written for this test from the format described in shared/fixtures/var-tiny-pth/README.md.
const CRC_TABLE = Int32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  return c;
});
function crc32(b: Uint8Array): number {
  let c = ~0;
  for (let i = 0; i < b.length; i++) c = (c >>> 8) ^ CRC_TABLE[(c ^ b[i]) & 255];
  return ~c >>> 0;
}
function torchSave(tree: Map<string, unknown>): Uint8Array {
  const pk: number[] = [0x80, 2];
  const storages: Uint8Array[] = [];
  const u32 = (a: number[], v: number) => a.push(v & 255, (v >>> 8) & 255, (v >>> 16) & 255, (v >>> 24) & 255);
  const str = (x: string) => { const e = new TextEncoder().encode(x); pk.push(0x58); u32(pk, e.length); pk.push(...e); };
  const int = (v: number) => { pk.push(0x4a); u32(pk, v); };
  const glob = (m: string, n: string) => pk.push(0x63, ...new TextEncoder().encode(`${m}\n${n}\n`));
  const value = (v: unknown): void => {
    if (v instanceof Map) {
      pk.push(0x7d, 0x28);
      for (const [k, x] of v) { str(k); value(x); }
      pk.push(0x75);
    } else if (typeof v === 'number') int(v);
    else {
      const t = v as T.Tensor;
      const key = String(storages.length);
      storages.push(new Uint8Array(t.f32.buffer, t.f32.byteOffset, t.f32.byteLength));
      glob('torch._utils', '_rebuild_tensor_v2');
      pk.push(0x28, 0x28); str('storage'); glob('torch', 'FloatStorage'); str(key); str('cpu'); int(t.size); pk.push(0x74, 0x51);
      int(0);
      pk.push(0x28); for (const d of t.shape) int(d); pk.push(0x74);
      pk.push(0x28); t.shape.forEach((_, k) => int(t.shape.slice(k + 1).reduce((a, d) => a * d, 1))); pk.push(0x74);
      pk.push(0x89); glob('collections', 'OrderedDict'); pk.push(0x29, 0x52, 0x74, 0x52);
    }
  };
  value(tree);
  pk.push(0x2e);
  const entries: [string, Uint8Array][] = [['vae_ckpt/data.pkl', Uint8Array.from(pk)]];
  for (const k of storages.map((_, i) => String(i)).sort()) entries.push([`vae_ckpt/data/${k}`, storages[Number(k)]]);
  entries.push(['vae_ckpt/version', new TextEncoder().encode('3\n')]);
  const parts: Uint8Array[] = [], cd: number[] = [];
  let off = 0;
  for (const [name, data] of entries) {
    const nm = new TextEncoder().encode(name);
    let pad = 0;
    while ((off + 30 + nm.length + 4 + pad) % 64 !== 0) pad++;
    const h: number[] = [];
    const crc = crc32(data);
    u32(h, 0x04034b50); h.push(20, 0, 0, 0, 0, 0, 0, 0, 0, 0); u32(h, crc); u32(h, data.length); u32(h, data.length);
    h.push(nm.length & 255, nm.length >> 8, (4 + pad) & 255, (4 + pad) >> 8, ...nm, 0x46, 0x42, pad & 255, pad >> 8, ...new Array(pad).fill(0));
    u32(cd, 0x02014b50); cd.push(20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0); u32(cd, crc); u32(cd, data.length); u32(cd, data.length);
    cd.push(nm.length & 255, nm.length >> 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0); u32(cd, off); cd.push(...nm);
    parts.push(Uint8Array.from(h), data);
    off += h.length + data.length;
  }
  const end: number[] = [];
  u32(end, 0x06054b50); end.push(0, 0, 0, 0, entries.length & 255, entries.length >> 8, entries.length & 255, entries.length >> 8);
  u32(end, cd.length); u32(end, off); end.push(0, 0);
  parts.push(Uint8Array.from(cd), Uint8Array.from(end));
  return Buffer.concat(parts);
}

test('loadVqvae reads an official-layout .pth training checkpoint (trainer.vae_local)', TINY, () => {
  const sd = readSafetensors(fixture('vqvae_state_dict.safetensors'));
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'actvar-vqvae-')), 'ar-ckpt-tiny.pth');
  try {
    fs.writeFileSync(file, torchSave(new Map<string, unknown>([['epoch', 3], ['trainer', new Map<string, unknown>([['vae_local', sd]])]])));
    const vae = loadVqvae(file, { patchNums: [1, 2, 3, 4] });
    for (const [k, t] of sd) {
      if (k === 'quantize.ema_vocab_hit_SV') continue;
      assert.deepEqual(vae.sd.get(k)!.f32, t.f32, k);
    }
    const { fwd } = fixtures();
    const idx = vae.imgToIdxBl(fwd.get('img_in')!);
    assertSameInts(T.concat(idx, 1), fwd.get('gt_BL')!, 'gt_BL from the .pth weights');
  } finally {
    fs.rmSync(path.dirname(file), { recursive: true, force: true });
  }
});

test('missing, unexpected and mis-shaped keys are reported together in one error', TINY, () => {
  const sd = new Map(readSafetensors(fixture('vqvae_state_dict.safetensors')));
  sd.delete('decoder.up.2.block.1.conv2.bias');
  sd.delete('quantize.quant_resi.qresi_ls.3.bias');
  sd.set('decoder.extra.weight', T.zeros([3]));
  sd.set('post_quant_conv.bias', T.zeros([9]));
  let msg = '';
  try { VQVAE.fromStateDict(sd, { patchNums: [1, 2, 3, 4] }); } catch (e) { msg = (e as Error).message; }
  assert.match(msg, /missing keys \(2\)/);
  assert.match(msg, /decoder\.up\.2\.block\.1\.conv2\.bias/);
  assert.match(msg, /quantize\.quant_resi\.qresi_ls\.3\.bias/);
  assert.match(msg, /unexpected keys \(1\):\n\s+decoder\.extra\.weight/);
  assert.match(msg, /mis-shaped keys \(1\):\n\s+post_quant_conv\.bias: got \[9\], expected \[8\]/);
  assert.ok(!/ema_vocab_hit_SV/.test(msg));
});

// ---------------------------------------------------------------------------------------------
// other architectures: round trip through a state dict, every Phi layout

test('random weights round-trip through stateDict/fromStateDict for other architectures and Phi layouts', () => {
  const rng = new Rng(3);
  const layouts = [
    { shareQuantResi: 0, keys: ['quantize.quant_resi.0.weight', 'quantize.quant_resi.2.bias'], notKeys: ['quantize.quant_resi.3.weight'] },
    { shareQuantResi: 1, keys: ['quantize.quant_resi.qresi.weight'], notKeys: ['quantize.quant_resi.qresi_ls.0.weight'] },
    { shareQuantResi: 2, keys: ['quantize.quant_resi.qresi_ls.1.weight'], notKeys: ['quantize.quant_resi.qresi_ls.2.weight'] },
  ];
  for (const { shareQuantResi, keys, notKeys } of layouts) {
    const cfg = {
      vocabSize: 16, Cvae: 4, ch: 8, chMult: [1, 2, 3], numResBlocks: 1, usingSa: shareQuantResi !== 1, usingMidSa: shareQuantResi !== 2,
      quantResi: 0.5, shareQuantResi, patchNums: [1, 2, 4], normGroups: 4,
    };
    const vae = VQVAE.random(cfg, rng);
    const sd = vae.stateDict();
    for (const k of keys) assert.ok(sd.has(k), `${k} present for shareQuantResi=${shareQuantResi}`);
    for (const k of notKeys) assert.ok(!sd.has(k), `${k} absent for shareQuantResi=${shareQuantResi}`);
    assert.equal(sd.has('encoder.down.2.attn.0.qkv.weight'), cfg.usingSa);
    assert.equal(sd.has('decoder.mid.attn_1.proj_out.bias'), cfg.usingMidSa);
    assert.ok(!sd.has('encoder.down.2.downsample.conv.weight') && sd.has('encoder.down.1.downsample.conv.weight'));
    assert.ok(!sd.has('decoder.up.0.upsample.conv.weight') && sd.has('decoder.up.2.upsample.conv.weight'));
    assert.ok(sd.has('decoder.up.2.block.1.conv1.weight')); // numResBlocks + 1 in the decoder
    const back = VQVAE.fromStateDict(sd, { patchNums: cfg.patchNums, normGroups: 4 });
    for (const k of ['vocabSize', 'Cvae', 'ch', 'chMult', 'numResBlocks', 'usingSa', 'usingMidSa', 'shareQuantResi', 'patchNums', 'imgSize'] as const) {
      assert.deepEqual(back.config[k], vae.config[k], `${k} (shareQuantResi=${shareQuantResi})`);
    }
    // the same outputs from the reloaded model
    T.noGrad(() => {
      const img = randTensor(rng, [1, 3, 16, 16], false);
      const a = vae.imgToIdxBl(img), b = back.imgToIdxBl(img);
      assert.deepEqual(a.map((t) => [...t.data]), b.map((t) => [...t.data]));
      assert.deepEqual(a.map((t) => t.shape), [[1, 1], [1, 4], [1, 16]]);
      const x = vae.idxBlToVarInput(a);
      assert.deepEqual(x.shape, [1, 4 + 16, 4]);
      const fh = vae.quantize.fToIdxBlOrFhat(vae.encode(img), true);
      const rec = vae.fhatToImg(fh[2]);
      assert.deepEqual(rec.shape, [1, 3, 16, 16]);
      assert.ok(rec.f32.every((v) => v >= -1 && v <= 1));
    });
  }
  // widths that the official 32 groups cannot divide need normGroups
  const small = VQVAE.random({ ch: 8, chMult: [1, 2], Cvae: 4, vocabSize: 8, patchNums: [1, 2], normGroups: 4 }, rng);
  assert.throws(() => VQVAE.fromStateDict(small.stateDict(), { patchNums: [1, 2] }), /normGroups/);
});

test('patchNumsFromLvl1L and inferVqvaeConfig errors', () => {
  assert.deepEqual(patchNumsFromLvl1L(T.intTensor([0, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2], [1, 14])), [1, 2, 3]);
  assert.throws(() => patchNumsFromLvl1L(T.intTensor([0, 1, 1, 1], [1, 4])), /not a square/);
  assert.throws(() => patchNumsFromLvl1L(T.intTensor([0, 2], [1, 2])), /levels must count up/);
  assert.throws(() => inferVqvaeConfig(new Map(), [1]), /missing 'encoder\.conv_in\.weight'/);
});

// ---------------------------------------------------------------------------------------------
// the inference 3×3 conv (shifted GEMMs, fused SiLU / upsampling) equals conv2d on the composed ops

test('inference 3×3 conv fast path matches conv2d (copy, SiLU, nearest ×2; banded; batch 2) and counts the same FLOPs', () => {
  const rng = new Rng(9);
  const prev = setConv3x3Options({ bandFloats: 7 * 12 }); // bands of a few rows, uneven last band
  try {
    for (const [cin, cout, h, w] of [[3, 5, 7, 6], [4, 2, 1, 1], [6, 7, 5, 9]]) {
      const ctx: ModuleCtx = { sd: new Map(), specs: new Map(), normGroups: 1 };
      const conv = new Conv2d(ctx, 'c', cin, cout, 3, { padding: 1 });
      ctx.sd.set('c.weight', randTensor(rng, [cout, cin, 3, 3], false));
      ctx.sd.set('c.bias', randTensor(rng, [cout], false));
      const x = randTensor(rng, [2, cin, h, w], false);
      const W = ctx.sd.get('c.weight')!, b = ctx.sd.get('c.bias')!;
      T.noGrad(() => {
        const ref = conv2d(x, W, b, { padding: 1 });
        const { result: fast, flops } = T.countFlops(() => conv.forward(x));
        assertClose(fast, ref, `copy ${cin}→${cout} ${h}×${w}`, 1e-5);
        assert.equal(flops.total, 2 * 2 * cout * h * w * cin * 9);
        assertClose(conv.forwardSilu(x), conv2d(T.silu(x), W, b, { padding: 1 }), `silu ${cin}→${cout}`, 1e-5);
        const res = randTensor(rng, [2, cout, h, w], false);
        assertClose(conv.forwardSilu(x, res), T.add(res, conv2d(T.silu(x), W, b, { padding: 1 })), `silu + residual ${cin}→${cout}`, 1e-5);
        assertClose(conv.forwardUp2(x), conv2d(upsampleNearest2x(x), W, b, { padding: 1 }), `up2 ${cin}→${cout}`, 1e-5);
      });
      // disabled, or with a graph, the composed ops run (and give the same values)
      const was = setConv3x3Options({ enabled: false });
      const calls = conv3x3Stats.calls;
      assertClose(T.noGrad(() => conv.forwardUp2(x)), T.noGrad(() => conv2d(upsampleNearest2x(x), W, b, { padding: 1 })), 'disabled', 0);
      assert.equal(conv3x3Stats.calls, calls);
      setConv3x3Options(was);
      const xg = new T.Tensor(x.f32.slice(), x.shape, true);
      const y = conv.forwardSilu(xg);
      assert.ok(y.requiresGrad);
      assertClose(y, T.noGrad(() => conv.forwardSilu(x)), 'graph vs fast', 1e-5);
    }
  } finally {
    setConv3x3Options(prev);
  }
});

test('fused GroupNorm+SiLU fill equals silu(groupNorm(x)) bit for bit, on the main thread and split over worker threads', () => {
  const rng = new Rng(21);
  const prev = setConv3x3Options({});
  try {
    for (const [native, workers] of [[false, 0], [false, 1], [false, 3], [true, 0]] as const) {
      setConv3x3Options({ native, workers, parallelMinFloats: 1, bandFloats: 50 });
      for (const [cin, cout, h, w, groups] of [[8, 5, 6, 7, 4], [6, 3, 9, 4, 3], [4, 4, 1, 1, 2]]) {
        const ctx: ModuleCtx = { sd: new Map(), specs: new Map(), normGroups: groups };
        const conv = new Conv2d(ctx, 'c', cin, cout, 3, { padding: 1 });
        const norm = new Normalize(ctx, 'n', cin);
        ctx.sd.set('c.weight', randTensor(rng, [cout, cin, 3, 3], false));
        ctx.sd.set('c.bias', randTensor(rng, [cout], false));
        ctx.sd.set('n.weight', randTensor(rng, [cin], false));
        ctx.sd.set('n.bias', randTensor(rng, [cin], false));
        // offset and scale so the shifted statistics matter
        const x = T.noGrad(() => conv2dInput(rng, [2, cin, h, w]));
        const res = randTensor(rng, [2, cout, h, w], false);
        T.noGrad(() => {
          const before = conv3x3Stats.parallelFills;
          const fused = conv.forwardNormSilu(norm, x, res);
          assert.equal(conv3x3Stats.parallelFills - before, workers > 0 ? 2 : 0, 'both batch items were split over the workers (TypeScript path)');
          const composed = conv.forwardSilu(norm.forward(x), res); // the same GEMMs on silu(groupNorm(x))
          assert.deepEqual(fused.f32, composed.f32, `native=${native} workers=${workers} ${cin}→${cout} ${h}×${w} g=${groups}`);
          assertClose(fused, T.add(res, conv2d(T.silu(norm.forward(x)), ctx.sd.get('c.weight')!, ctx.sd.get('c.bias')!, { padding: 1 })), 'vs conv2d', 1e-4);
        });
      }
    }
  } finally {
    setConv3x3Options(prev);
  }
});

/** A test input made by the fast conv itself (identity kernel, bias 3). */
function conv2dInput(rng: Rng, shape: number[]): T.Tensor {
  const [B, C, H, W] = shape;
  const ctx: ModuleCtx = { sd: new Map(), specs: new Map(), normGroups: 1 };
  const id = new Conv2d(ctx, 'id', C, C, 3, { padding: 1 });
  const w = new Float32Array(C * C * 9);
  for (let c = 0; c < C; c++) w[(c * C + c) * 9 + 4] = 1; // identity kernel
  ctx.sd.set('id.weight', new T.Tensor(w, [C, C, 3, 3]));
  ctx.sd.set('id.bias', T.full([C], 3));
  const x = randTensor(rng, [B, C, H, W], false, 2);
  return id.forward(x);
}

// ---------------------------------------------------------------------------------------------
// differentiability (tokenizer training)

function tinyVae(rng: Rng, shareQuantResi = 2): VQVAE {
  return VQVAE.random({
    vocabSize: 6, Cvae: 2, ch: 4, chMult: [1, 2], numResBlocks: 1, usingSa: true, usingMidSa: true,
    quantResi: 0.5, shareQuantResi, patchNums: [1, 2, 3], normGroups: 2,
  }, rng, { codebookInit: 6 });
}

test('gradient check through a tiny encoder, decoder and Phi', () => {
  const rng = new Rng(11);
  const vae = tinyVae(rng);
  vae.setRequiresGrad(true);
  const img = randTensor(rng, [1, 3, 6, 6], true, 0.5);
  const p = (k: string) => vae.sd.get(k)!;
  // encoder (conv_in, ResnetBlock with nin_shortcut, Downsample2x, AttnBlock, mid) and quant_conv
  gradcheck((x, w1, wq, gn) => { void w1; void wq; void gn; return vae.encode(x); },
    [img, p('encoder.down.1.block.0.conv1.weight'), p('encoder.down.1.attn.0.qkv.weight'), p('encoder.down.0.block.0.norm1.weight')],
    { eps: 1e-2, tol: 3e-2, maxChecks: 12 });
  // decoder (AttnBlock, Upsample2x, nin_shortcut) with post_quant_conv and the clamp
  const z = randTensor(rng, [1, 2, 3, 3], true, 0.5);
  gradcheck((x, wp, wu, wn) => { void wp; void wu; void wn; return vae.decoder.forward(vae.postQuantConv.forward(x)); },
    [z, p('decoder.up.1.attn.1.proj_out.weight'), p('decoder.up.1.upsample.conv.weight'), p('decoder.up.0.block.0.nin_shortcut.weight')],
    { eps: 1e-2, tol: 3e-2, maxChecks: 12 });
  // embedIdx, bicubic, Phi and area through the sampling update: reaches the codebook and both Phi convs
  const idx = [T.intTensor([3], [1, 1]), T.intTensor([0, 5, 2, 2], [1, 4]), T.intTensor([1, 1, 4, 0, 3, 2, 5, 5, 0], [1, 9])];
  const pns = vae.patchNums;
  assert.deepEqual(vae.quantize.phiMap(), [0, 0, 1]);
  gradcheck((e, w0, w1, b1) => {
    void e; void w0; void w1; void b1;
    let fHat = T.zeros([1, 2, 3, 3]);
    const nexts: T.Tensor[] = [];
    for (let si = 0; si < 3; si++) {
      const r = vae.getNextAutoregressiveInput(si, 3, fHat, vae.embedIdx(idx[si], pns[si]));
      fHat = r.fHat;
      nexts.push(T.reshape(r.next, [-1]));
    }
    return T.concat(nexts, 0);
  }, [p('quantize.embedding.weight'), p('quantize.quant_resi.qresi_ls.0.weight'), p('quantize.quant_resi.qresi_ls.1.weight'), p('quantize.quant_resi.qresi_ls.1.bias')],
  { eps: 1e-2, tol: 2e-2 });
  // the teacher-forcing input (uses Phi 0 only here)
  gradcheck((e, w0, b0) => { void e; void w0; void b0; return vae.idxBlToVarInput(idx); },
    [p('quantize.embedding.weight'), p('quantize.quant_resi.qresi_ls.0.weight'), p('quantize.quant_resi.qresi_ls.0.bias')],
    { eps: 1e-2, tol: 2e-2 });
  vae.setRequiresGrad(false);
});

test('training forward: straight-through f̂, VQ loss, codebook hits', () => {
  const rng = new Rng(5);
  const vae = tinyVae(rng, 0);
  vae.setRequiresGrad(true);
  const img = randTensor(rng, [2, 3, 6, 6], false, 0.5);
  const out = vae.forward(img);
  assert.deepEqual(out.rec.shape, [2, 3, 6, 6]);
  assert.equal(out.hits.length, 3);
  assert.deepEqual(out.hits.map((h) => h.reduce((a, b) => a + b, 0)), [2, 8, 18]);
  assert.deepEqual(out.idx.map((t) => [...t.data]), vae.imgToIdxBl(img).map((t) => [...t.data]));
  // f̂ value equals the no-graph residual quantisation
  const fh = vae.imgToFhats(img)[2];
  assertClose(out.fHat, fh, 'straight-through f̂ value', 1e-6);
  // the VQ loss is β·mse(sg f̂, f) + mse(f̂, sg f) averaged over scales; check its value at the last scale ordering
  assert.ok(Number.isFinite(out.vqLoss.f32[0]) && out.vqLoss.f32[0] > 0);
  const loss = T.add(T.mean(T.square(out.rec)), out.vqLoss);
  loss.backward();
  for (const k of ['encoder.conv_in.weight', 'decoder.conv_out.weight', 'quantize.embedding.weight', 'quantize.quant_resi.1.weight', 'quant_conv.weight', 'post_quant_conv.bias']) {
    const g = vae.sd.get(k)!.grad;
    assert.ok(g && g.f32.some((v) => v !== 0), `${k} gets a gradient`);
  }
  vae.setRequiresGrad(false);
});
