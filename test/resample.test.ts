import './util/setup.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../src/tensor/index.js';
import { Rng } from '../src/tensor/rng.js';
import { readSafetensors } from '../src/io/safetensors.js';
import { gradcheck, randTensor } from './util/gradcheck.js';
import { fixture, needsFixtures } from './util/fixtures.js';
/** The reference fixtures these tests read (skipped when absent, see test/util/fixtures.ts). */
const TINY = needsFixtures(fixture('generate_greedy_cfg1.5.safetensors'), fixture('vqvae_state_dict.safetensors'));

const rng = new Rng(17);

function maxErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function get(m: Map<string, T.Tensor>, k: string): T.Tensor {
  const t = m.get(k);
  assert.ok(t, `fixture tensor ${k} missing`);
  return t;
}

test('upsampleNearest2x: src = floor(dst/2), gradient sums 2×2 blocks', () => {
  const x = T.tensor([1, 2, 3, 4, 5, 6], [1, 1, 2, 3]);
  const y = T.upsampleNearest2x(x);
  assert.deepEqual(y.shape, [1, 1, 4, 6]);
  assert.deepEqual(Array.from(y.f32), [1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 4, 4, 5, 5, 6, 6]);
  gradcheck((a) => T.upsampleNearest2x(a), [randTensor(rng, [2, 2, 3, 2])]);
});

test('area windows 16→13 are exactly those of docs/VAR.md §4.2', () => {
  assert.deepEqual(T.areaWindows(16, 13), [[0, 2], [1, 3], [2, 4], [3, 5], [4, 7], [6, 8], [7, 9], [8, 10], [9, 12], [11, 13], [12, 14], [13, 15], [14, 16]]);
  assert.deepEqual(T.areaWindows(16, 1), [[0, 16]]);
  assert.deepEqual(T.areaWindows(16, 16).map(([a, b]) => b - a), new Array(16).fill(1));
});

test('areaDownsample = 2-d window mean (float64 reference), for 16→13, 16→5, 7→3 and upsampling 3→5', () => {
  for (const [H, W, oh, ow] of [[16, 16, 13, 13], [16, 16, 5, 10], [7, 5, 3, 2], [3, 4, 5, 7]]) {
    const x = randTensor(rng, [2, 3, H, W], false);
    const y = T.areaDownsample(x, oh, ow);
    assert.deepEqual(y.shape, [2, 3, oh, ow]);
    const wy = T.areaWindows(H, oh), wx = T.areaWindows(W, ow);
    const ref = new Float64Array(2 * 3 * oh * ow);
    for (let p = 0; p < 6; p++) for (let oy = 0; oy < oh; oy++) for (let ox = 0; ox < ow; ox++) {
      let s = 0, n = 0;
      for (let iy = wy[oy][0]; iy < wy[oy][1]; iy++) for (let ix = wx[ox][0]; ix < wx[ox][1]; ix++) { s += x.f32[(p * H + iy) * W + ix]; n++; }
      ref[(p * oh + oy) * ow + ox] = s / n;
    }
    assert.ok(maxErr(y.f32, ref) < 1e-6, `${H}×${W}→${oh}×${ow}`);
  }
  gradcheck((a) => T.areaDownsample(a, 4, 3), [randTensor(rng, [1, 2, 7, 5])]);
  gradcheck((a) => T.areaDownsample(a, 5, 4), [randTensor(rng, [1, 1, 3, 3])]);
});

/** Independent float64 bicubic (docs/VAR.md §4.2): sum of the 4×4 taps per output pixel. */
function bicubicRef(x: T.Tensor, oh: number, ow: number): Float64Array {
  const [B, C, H, W] = x.shape, A = -0.75;
  const cc1 = (t: number) => ((A + 2) * t - (A + 3)) * t * t + 1;
  const cc2 = (t: number) => ((A * t - 5 * A) * t + 8 * A) * t - 4 * A;
  const taps = (o: number, inS: number, outS: number): [number[], number[]] => {
    const src = (o + 0.5) * (inS / outS) - 0.5, x0 = Math.floor(src), t = src - x0;
    const idx = [-1, 0, 1, 2].map((k) => Math.min(inS - 1, Math.max(0, x0 + k)));
    return [idx, [cc2(t + 1), cc1(t), cc1(1 - t), cc2(2 - t)]];
  };
  const out = new Float64Array(B * C * oh * ow);
  for (let p = 0; p < B * C; p++) for (let oy = 0; oy < oh; oy++) for (let ox = 0; ox < ow; ox++) {
    const [iy, wy] = taps(oy, H, oh), [ix, wx] = taps(ox, W, ow);
    let s = 0;
    for (let a = 0; a < 4; a++) for (let b = 0; b < 4; b++) s += wy[a] * wx[b] * x.f32[(p * H + iy[a]) * W + ix[b]];
    out[(p * oh + oy) * ow + ox] = s;
  }
  return out;
}

test('bicubicUpsample matches an independent float64 implementation of the formula', () => {
  for (const [H, W, oh, ow] of [[1, 1, 16, 16], [2, 2, 16, 16], [3, 3, 16, 16], [5, 5, 16, 16], [13, 13, 16, 16], [3, 7, 5, 4], [16, 16, 16, 16], [6, 4, 3, 2]]) {
    const x = randTensor(rng, [2, 2, H, W], false);
    const y = T.bicubicUpsample(x, oh, ow);
    assert.deepEqual(y.shape, [2, 2, oh, ow]);
    const e = maxErr(y.f32, bicubicRef(x, oh, ow));
    assert.ok(e < 2e-6, `${H}×${W}→${oh}×${ow}: max err ${e}`);
  }
});

test('bicubicUpsample hand-checked values: pn=1 is constant, 1×2→1×4 ramp, identity at equal size', () => {
  const c = T.bicubicUpsample(T.tensor([2.5, -1], [1, 2, 1, 1]), 16, 16).f32;
  for (let i = 0; i < 256; i++) { assert.equal(c[i], 2.5); assert.equal(c[256 + i], -1); }
  // src = -0.25 (x0=-1, t=.75) and 0.25 (x0=0, t=.25): weights cc2(1.75)=-0.03515625, cc1(.75)=0.26171875,
  // cc1(.25)=0.87890625, cc2(1.25)=-0.10546875 (exact in binary), taps clamped to the edges
  const r = T.bicubicUpsample(T.tensor([0, 1], [1, 1, 1, 2]), 1, 4).f32;
  assert.deepEqual(Array.from(r), [-0.10546875, 0.2265625, 0.7734375, 1.10546875]);
  const x = randTensor(rng, [1, 2, 5, 4], false);
  assert.ok(maxErr(T.bicubicUpsample(x, 5, 4).f32, x.f32) < 1e-7, 'same size is the identity');
  // weights sum to 1: constants are preserved at any size
  const k = T.bicubicUpsample(T.full([1, 1, 3, 5], 0.7), 11, 2).f32;
  assert.ok(k.every((v) => Math.abs(v - 0.7) < 1e-6));
});

test('composition properties: area∘nearest×2 = identity, area∘bicubic of a constant is constant', () => {
  const x = randTensor(rng, [2, 3, 4, 5], false);
  assert.ok(maxErr(T.areaDownsample(T.upsampleNearest2x(x), 4, 5).f32, x.f32) < 1e-6);
  assert.ok(maxErr(T.areaDownsample(x, 4, 5).f32, x.f32) === 0, 'area at equal size is the identity');
  const c = T.areaDownsample(T.bicubicUpsample(T.full([1, 1, 3, 3], -2), 16, 16), 5, 5).f32;
  assert.ok(c.every((v) => Math.abs(v + 2) < 1e-6));
});

test('bicubicUpsample gradients (up and down, pn=1)', () => {
  gradcheck((a) => T.bicubicUpsample(a, 7, 5), [randTensor(rng, [1, 2, 3, 2])]);
  gradcheck((a) => T.bicubicUpsample(a, 3, 2), [randTensor(rng, [1, 1, 6, 5])]);
  gradcheck((a) => T.bicubicUpsample(a, 4, 4), [randTensor(rng, [2, 1, 1, 1])]);
});

test('resample errors name the problem', () => {
  assert.throws(() => T.upsampleNearest2x(T.zeros([3, 4, 4])), /expected \[B, C, H, W\]/);
  assert.throws(() => T.areaDownsample(T.zeros([1, 1, 4, 4]), 0, 2), /output size must be positive integers, got 0×2/);
  assert.throws(() => T.bicubicUpsample(T.zeros([1, 1, 4, 4]), 2.5, 2), /positive integers/);
});

test('fixture parity (var-tiny, official code in float32): area, and bicubic + Phi conv reproduce f̂ per scale', TINY, () => {
  const gen = readSafetensors(fixture('generate_greedy_cfg1.5.safetensors'));
  const vae = readSafetensors(fixture('vqvae_state_dict.safetensors'));
  const patchNums = [1, 2, 3, 4], phiMap = [0, 1, 2, 3]; // var-tiny: 4 scales, Phi map [0,1,2,3] (docs/VAR.md §4.1)
  let fHat: T.Tensor | null = null;
  for (let si = 0; si < patchNums.length; si++) {
    const h = get(gen, `h_BChw_scale${si}`);
    // h = bicubic(h → 4×4) except at the last scale; then Phi_k(h) = 0.5·h + 0.5·conv3×3(h) (docs/VAR.md §4.1)
    const up = si < patchNums.length - 1 ? T.bicubicUpsample(h, 4, 4) : h;
    const k = phiMap[si];
    const conv = T.conv2d(up, get(vae, `quantize.quant_resi.qresi_ls.${k}.weight`), get(vae, `quantize.quant_resi.qresi_ls.${k}.bias`), { padding: 1 });
    const phi = T.add(T.scale(up, 0.5), T.scale(conv, 0.5));
    fHat = fHat ? T.add(fHat, phi) : phi;
    const want = get(gen, `f_hat_after_scale${si}`);
    const e = maxErr(fHat.f32, want.f32);
    assert.ok(e < 2e-6, `f̂ after scale ${si}: max err ${e}`); // measured ≤ 2.4e-7 (1 ulp)
    if (si + 1 < patchNums.length) {
      const pn = patchNums[si + 1];
      const area = T.areaDownsample(want, pn, pn);
      const ea = maxErr(area.f32, get(gen, `next_token_map_area_scale${si + 1}`).f32);
      assert.ok(ea < 1e-6, `area f̂ → ${pn}: max err ${ea}`);
    }
  }
});
