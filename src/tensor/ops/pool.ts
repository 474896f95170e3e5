/**
 * 2-D pooling over [B, C, H, W] (inference only: the results record no gradient), as torch's
 * `F.max_pool2d` / `F.avg_pool2d` with square kernel k, stride s, symmetric zero padding p and
 * ceil_mode=False: Ho = ⌊(H + 2p − k)/s⌋ + 1. Max pooling ignores the padding; average pooling
 * divides by k² when `countIncludePad` (torch's default) and by the number of in-image taps when
 * not (`count_include_pad=False`, as pytorch-fid's FID Inception blocks use it).
 * `globalAvgPool` is `F.adaptive_avg_pool2d(x, 1)` flattened to [B, C]. 3×3 windows inside the image take
 * an unrolled path (the FID Inception's pools); the general loop is the reference for the rest (test).
 */
import { Tensor, assertFloat, isGradEnabled } from '../tensor.js';

export interface Pool2dOptions {
  kernel: number;
  /** Default: the kernel size (torch's default). */
  stride?: number;
  /** Default 0; at most kernel / 2 (torch's rule). */
  padding?: number;
}

function noGradInputs(x: Tensor, op: string): void {
  if (isGradEnabled() && x.requiresGrad) throw new Error(`${op}: inference only (no backward); call it under noGrad or on a tensor that does not require grad`);
}

function poolGeometry(x: Tensor, o: Pool2dOptions, op: string): { B: number; C: number; H: number; W: number; k: number; s: number; p: number; Ho: number; Wo: number } {
  if (x.ndim !== 4) throw new RangeError(`${op}: input must be [B, C, H, W], got [${x.shape.join(', ')}]`);
  const [B, C, H, W] = x.shape;
  const k = o.kernel, s = o.stride ?? k, p = o.padding ?? 0;
  if (!Number.isInteger(k) || k < 1 || !Number.isInteger(s) || s < 1 || !Number.isInteger(p) || p < 0 || 2 * p > k) {
    throw new RangeError(`${op}: kernel ${k}, stride ${s}, padding ${p}: need positive integer kernel/stride and 0 ≤ padding ≤ kernel/2`);
  }
  const Ho = Math.floor((H + 2 * p - k) / s) + 1, Wo = Math.floor((W + 2 * p - k) / s) + 1;
  if (Ho < 1 || Wo < 1) throw new RangeError(`${op}: input ${H}×${W} is smaller than the kernel ${k} (padding ${p})`);
  return { B, C, H, W, k, s, p, Ho, Wo };
}

/** `F.max_pool2d(x, kernel, stride, padding)`. */
export function maxPool2d(x: Tensor, o: Pool2dOptions): Tensor {
  noGradInputs(x, 'maxPool2d');
  const X = assertFloat(x, 'maxPool2d');
  const { B, C, H, W, k, s, p, Ho, Wo } = poolGeometry(x, o, 'maxPool2d');
  const out = new Float32Array(B * C * Ho * Wo);
  for (let bc = 0; bc < B * C; bc++) {
    const xb = bc * H * W, ob = bc * Ho * Wo;
    for (let oy = 0; oy < Ho; oy++) {
      const y0 = Math.max(0, oy * s - p), y1 = Math.min(H, oy * s - p + k);
      const inY = k === 3 && y0 === oy * s - p && y1 === y0 + 3;
      for (let ox = 0; ox < Wo; ox++) {
        const x0 = Math.max(0, ox * s - p), x1 = Math.min(W, ox * s - p + k);
        if (inY && x1 === x0 + 3 && x0 === ox * s - p) { // 3×3 window inside the image: unrolled
          const a = xb + y0 * W + x0, b = a + W, c = b + W;
          out[ob + oy * Wo + ox] = Math.max(X[a], X[a + 1], X[a + 2], X[b], X[b + 1], X[b + 2], X[c], X[c + 1], X[c + 2]);
          continue;
        }
        let m = -Infinity;
        for (let y = y0; y < y1; y++) for (let xx = x0; xx < x1; xx++) { const v = X[xb + y * W + xx]; if (v > m || v !== v) m = v; }
        out[ob + oy * Wo + ox] = m;
      }
    }
  }
  return new Tensor(out, [B, C, Ho, Wo]);
}

/** `F.avg_pool2d(x, kernel, stride, padding, count_include_pad=countIncludePad)`. */
export function avgPool2d(x: Tensor, o: Pool2dOptions & { countIncludePad?: boolean }): Tensor {
  noGradInputs(x, 'avgPool2d');
  const X = assertFloat(x, 'avgPool2d');
  const { B, C, H, W, k, s, p, Ho, Wo } = poolGeometry(x, o, 'avgPool2d');
  const include = o.countIncludePad ?? true;
  const out = new Float32Array(B * C * Ho * Wo);
  for (let bc = 0; bc < B * C; bc++) {
    const xb = bc * H * W, ob = bc * Ho * Wo;
    for (let oy = 0; oy < Ho; oy++) {
      const y0 = Math.max(0, oy * s - p), y1 = Math.min(H, oy * s - p + k);
      const inY = k === 3 && y0 === oy * s - p && y1 === y0 + 3;
      for (let ox = 0; ox < Wo; ox++) {
        const x0 = Math.max(0, ox * s - p), x1 = Math.min(W, ox * s - p + k);
        if (inY && x1 === x0 + 3 && x0 === ox * s - p) { // 3×3 window inside the image: unrolled, same summation order
          const a = xb + y0 * W + x0, b = a + W, c = b + W;
          out[ob + oy * Wo + ox] = (X[a] + X[a + 1] + X[a + 2] + X[b] + X[b + 1] + X[b + 2] + X[c] + X[c + 1] + X[c + 2]) / 9;
          continue;
        }
        let sum = 0;
        for (let y = y0; y < y1; y++) for (let xx = x0; xx < x1; xx++) sum += X[xb + y * W + xx];
        out[ob + oy * Wo + ox] = sum / (include ? k * k : (y1 - y0) * (x1 - x0));
      }
    }
  }
  return new Tensor(out, [B, C, Ho, Wo]);
}

/** `F.adaptive_avg_pool2d(x, 1).flatten(1)`: [B, C, H, W] → [B, C]. */
export function globalAvgPool(x: Tensor): Tensor {
  noGradInputs(x, 'globalAvgPool');
  const X = assertFloat(x, 'globalAvgPool');
  if (x.ndim !== 4) throw new RangeError(`globalAvgPool: input must be [B, C, H, W], got [${x.shape.join(', ')}]`);
  const [B, C, H, W] = x.shape, P = H * W;
  const out = new Float32Array(B * C);
  for (let i = 0; i < B * C; i++) {
    let sum = 0;
    for (let j = i * P; j < (i + 1) * P; j++) sum += X[j];
    out[i] = sum / P;
  }
  return new Tensor(out, [B, C]);
}
