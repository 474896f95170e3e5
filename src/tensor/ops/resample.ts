/**
 * Resampling of [B, C, H, W] maps (docs/VAR.md §4.2): nearest ×2 (decoder upsampling),
 * area (= adaptive average pooling) and bicubic (A = −0.75, align_corners=False, unclamped source
 * coordinate). Area and bicubic are separable linear maps, applied along x then along y as torch does;
 * their backward is the transposed map.
 */
import { Tensor, result, assertFloat } from '../tensor.js';

/** A 1-d linear map in → out: out[o] = Σ_t w[o·taps + t] · in[idx[o·taps + t]] (unused taps have w = 0). */
interface Map1d {
  inSize: number;
  outSize: number;
  taps: number;
  idx: Int32Array;
  w: Float64Array;
}

function check4d(x: Tensor, op: string): [number, number, number, number] {
  if (x.ndim !== 4) throw new RangeError(`${op}: expected [B, C, H, W], got [${x.shape.join(', ')}]`);
  return x.shape as [number, number, number, number];
}

function checkOutSize(op: string, outH: number, outW: number): void {
  if (!Number.isInteger(outH) || !Number.isInteger(outW) || outH < 1 || outW < 1) {
    throw new RangeError(`${op}: output size must be positive integers, got ${outH}×${outW}`);
  }
}

/**
 * Area weights (docs/VAR.md §4.2): output o averages input [floor(o·in/out), ceil((o+1)·in/out)).
 * This is torch's adaptive_avg_pool start/end index (integer arithmetic; exact in doubles here).
 */
export function areaWindows(inSize: number, outSize: number): [number, number][] {
  const win: [number, number][] = [];
  for (let o = 0; o < outSize; o++) win.push([Math.floor((o * inSize) / outSize), Math.ceil(((o + 1) * inSize) / outSize)]);
  return win;
}

function areaMap(inSize: number, outSize: number): Map1d {
  const win = areaWindows(inSize, outSize);
  const taps = Math.max(...win.map(([a, b]) => b - a));
  const idx = new Int32Array(outSize * taps), w = new Float64Array(outSize * taps);
  win.forEach(([a, b], o) => {
    for (let i = a; i < b; i++) { idx[o * taps + i - a] = i; w[o * taps + i - a] = 1 / (b - a); }
  });
  return { inSize, outSize, taps, idx, w };
}

const A = -0.75;
const f = Math.fround;
/** Keys' cubic for |x| ≤ 1: ((A+2)x − (A+3))x² + 1, in float32 steps as torch computes it. */
function cc1(x: number): number { return f(f(f(f(f(A + 2) * x) - f(A + 3)) * x) * x) + 1; }
/** Keys' cubic for 1 < |x| < 2: ((A·x − 5A)x + 8A)x − 4A, in float32 steps. */
function cc2(x: number): number { return f(f(f(f(f(f(A * x) - f(5 * A)) * x) + f(8 * A)) * x) - f(4 * A)); }

/**
 * Bicubic weights (docs/VAR.md §4.2): src = (o+0.5)·(in/out) − 0.5, not clamped; x0 = floor(src),
 * t = src − x0; weights [cc2(t+1), cc1(t), cc1(1−t), cc2(2−t)] on x0−1 … x0+2 clamped to [0, in−1].
 * Scale, src, t and the weights are rounded to float32 at each step, as torch's float kernel does.
 */
export function bicubicWeights(inSize: number, outSize: number): { idx: Int32Array; w: Float64Array } {
  const scale = f(inSize / outSize);
  const idx = new Int32Array(outSize * 4), w = new Float64Array(outSize * 4);
  for (let o = 0; o < outSize; o++) {
    const src = f(f(f(o + 0.5) * scale) - 0.5);
    const x0 = Math.floor(src);
    const t = f(src - x0);
    const t2 = f(1 - t); // torch: x2 = 1 − t, last weight cc2(x2 + 1)
    const ws = [cc2(f(t + 1)), cc1(t), cc1(t2), cc2(f(t2 + 1))];
    for (let k = 0; k < 4; k++) {
      idx[o * 4 + k] = Math.min(inSize - 1, Math.max(0, x0 - 1 + k));
      w[o * 4 + k] = f(ws[k]);
    }
  }
  return { idx, w };
}

function bicubicMap(inSize: number, outSize: number): Map1d {
  const { idx, w } = bicubicWeights(inSize, outSize);
  return { inSize, outSize, taps: 4, idx, w };
}

/** out[p, oy, ox] = Σ my[oy,·] Σ mx[ox,·] x[p, iy, ix], along x first, then y. */
function applySeparable(X: Float32Array, planes: number, my: Map1d, mx: Map1d): Float32Array {
  const H = my.inSize, W = mx.inSize, Ho = my.outSize, Wo = mx.outSize;
  const tmp = new Float64Array(H * Wo);
  const out = new Float32Array(planes * Ho * Wo);
  for (let p = 0; p < planes; p++) {
    const xb = p * H * W;
    for (let iy = 0; iy < H; iy++) {
      const r = xb + iy * W;
      for (let ox = 0; ox < Wo; ox++) {
        let s = 0;
        for (let t = 0; t < mx.taps; t++) s += mx.w[ox * mx.taps + t] * X[r + mx.idx[ox * mx.taps + t]];
        tmp[iy * Wo + ox] = s;
      }
    }
    const ob = p * Ho * Wo;
    for (let oy = 0; oy < Ho; oy++) {
      for (let ox = 0; ox < Wo; ox++) {
        let s = 0;
        for (let t = 0; t < my.taps; t++) s += my.w[oy * my.taps + t] * tmp[my.idx[oy * my.taps + t] * Wo + ox];
        out[ob + oy * Wo + ox] = s;
      }
    }
  }
  return out;
}

/** Transpose of applySeparable: gx[p, iy, ix] = Σ my[oy, iy] Σ mx[ox, ix] g[p, oy, ox]. */
function applySeparableT(G: Float32Array, planes: number, my: Map1d, mx: Map1d): Float32Array {
  const H = my.inSize, W = mx.inSize, Ho = my.outSize, Wo = mx.outSize;
  const tmp = new Float64Array(H * Wo);
  const acc = new Float64Array(W);
  const gx = new Float32Array(planes * H * W);
  for (let p = 0; p < planes; p++) {
    tmp.fill(0);
    const gb = p * Ho * Wo;
    for (let oy = 0; oy < Ho; oy++) {
      for (let t = 0; t < my.taps; t++) {
        const wt = my.w[oy * my.taps + t];
        if (wt === 0) continue;
        const r = my.idx[oy * my.taps + t] * Wo;
        for (let ox = 0; ox < Wo; ox++) tmp[r + ox] += wt * G[gb + oy * Wo + ox];
      }
    }
    const xb = p * H * W;
    for (let iy = 0; iy < H; iy++) {
      acc.fill(0);
      for (let ox = 0; ox < Wo; ox++) {
        const v = tmp[iy * Wo + ox];
        for (let t = 0; t < mx.taps; t++) acc[mx.idx[ox * mx.taps + t]] += mx.w[ox * mx.taps + t] * v;
      }
      for (let ix = 0; ix < W; ix++) gx[xb + iy * W + ix] = acc[ix];
    }
  }
  return gx;
}

function separable(x: Tensor, op: string, my: Map1d, mx: Map1d): Tensor {
  const X = assertFloat(x, op);
  const [B, C] = x.shape;
  const planes = B * C;
  const out = applySeparable(X, planes, my, mx);
  return result(out, [B, C, my.outSize, mx.outSize], op, [x], (g) => [applySeparableT(g, planes, my, mx)]);
}

/** Nearest-neighbour ×2 upsampling: out[y, x] = in[⌊y/2⌋, ⌊x/2⌋] (VQVAE decoder Upsample, docs/VAR.md §4). */
export function upsampleNearest2x(x: Tensor): Tensor {
  const X = assertFloat(x, 'upsampleNearest2x');
  const [B, C, H, W] = check4d(x, 'upsampleNearest2x');
  const Ho = 2 * H, Wo = 2 * W, planes = B * C;
  const out = new Float32Array(planes * Ho * Wo);
  for (let p = 0; p < planes; p++) {
    for (let iy = 0; iy < H; iy++) {
      const src = (p * H + iy) * W, d0 = (p * Ho + 2 * iy) * Wo;
      for (let ix = 0; ix < W; ix++) { const v = X[src + ix]; out[d0 + 2 * ix] = v; out[d0 + 2 * ix + 1] = v; }
      out.copyWithin(d0 + Wo, d0, d0 + Wo);
    }
  }
  return result(out, [B, C, Ho, Wo], 'upsampleNearest2x', [x], (g) => {
    const gx = new Float32Array(X.length);
    for (let p = 0; p < planes; p++) {
      for (let iy = 0; iy < H; iy++) {
        const d = (p * H + iy) * W, r0 = (p * Ho + 2 * iy) * Wo, r1 = r0 + Wo;
        for (let ix = 0; ix < W; ix++) gx[d + ix] = g[r0 + 2 * ix] + g[r0 + 2 * ix + 1] + g[r1 + 2 * ix] + g[r1 + 2 * ix + 1];
      }
    }
    return [gx];
  });
}

/**
 * torch F.interpolate(mode='area') to outH×outW = adaptive average pooling (docs/VAR.md §4.2).
 * Works for any sizes (windows may overlap and differ in length).
 */
export function areaDownsample(x: Tensor, outH: number, outW: number): Tensor {
  const [, , H, W] = check4d(x, 'areaDownsample');
  checkOutSize('areaDownsample', outH, outW);
  if (H < 1 || W < 1) throw new RangeError(`areaDownsample: input must be at least 1×1, got ${H}×${W}`);
  return separable(x, 'areaDownsample', areaMap(H, outH), areaMap(W, outW));
}

/**
 * torch F.interpolate(mode='bicubic', align_corners=False) to outH×outW (docs/VAR.md §4.2):
 * Keys' cubic with A = −0.75, unclamped source coordinate, edge-replicated taps. Any in/out sizes.
 */
export function bicubicUpsample(x: Tensor, outH: number, outW: number): Tensor {
  const [, , H, W] = check4d(x, 'bicubicUpsample');
  checkOutSize('bicubicUpsample', outH, outW);
  if (H < 1 || W < 1) throw new RangeError(`bicubicUpsample: input must be at least 1×1, got ${H}×${W}`);
  return separable(x, 'bicubicUpsample', bicubicMap(H, outH), bicubicMap(W, outW));
}
