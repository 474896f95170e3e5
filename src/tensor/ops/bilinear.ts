/**
 * Bilinear resize as torch's `F.interpolate(x, size=(outH, outW), mode='bilinear',
 * align_corners=False)` (no antialiasing, also when downscaling): for an output index d the
 * source coordinate is (d + 0.5)·in/out − 0.5, clamped below at 0; it lies between i0 = ⌊src⌋
 * and i1 = min(i0 + 1, in − 1) with weights 1 − λ and λ = src − i0. Inference only.
 */
import { Tensor, assertFloat, isGradEnabled } from '../tensor.js';

/** Per output index: the two source indices and the weight λ of the second (torch's formula). */
export function bilinearTaps(inSize: number, outSize: number): { i0: Int32Array; i1: Int32Array; lambda: Float64Array } {
  const i0 = new Int32Array(outSize), i1 = new Int32Array(outSize), lambda = new Float64Array(outSize);
  const scale = inSize / outSize;
  for (let d = 0; d < outSize; d++) {
    const src = Math.max(0, (d + 0.5) * scale - 0.5);
    const a = Math.min(Math.floor(src), inSize - 1);
    i0[d] = a;
    i1[d] = Math.min(a + 1, inSize - 1);
    lambda[d] = src - a;
  }
  return { i0, i1, lambda };
}

/** [B, C, H, W] → [B, C, outH, outW]. */
export function bilinearResize(x: Tensor, outH: number, outW: number): Tensor {
  if (isGradEnabled() && x.requiresGrad) throw new Error('bilinearResize: inference only (no backward)');
  const X = assertFloat(x, 'bilinearResize');
  if (x.ndim !== 4) throw new RangeError(`bilinearResize: input must be [B, C, H, W], got [${x.shape.join(', ')}]`);
  if (!Number.isInteger(outH) || !Number.isInteger(outW) || outH < 1 || outW < 1) throw new RangeError(`bilinearResize: output size ${outH}×${outW} must be positive integers`);
  const [B, C, H, W] = x.shape;
  if (H < 1 || W < 1) throw new RangeError('bilinearResize: empty input');
  const ty = bilinearTaps(H, outH), tx = bilinearTaps(W, outW);
  const out = new Float32Array(B * C * outH * outW);
  for (let bc = 0; bc < B * C; bc++) {
    const xb = bc * H * W, ob = bc * outH * outW;
    for (let oy = 0; oy < outH; oy++) {
      const r0 = xb + ty.i0[oy] * W, r1 = xb + ty.i1[oy] * W, ly = ty.lambda[oy], my = 1 - ly;
      for (let ox = 0; ox < outW; ox++) {
        const c0 = tx.i0[ox], c1 = tx.i1[ox], lx = tx.lambda[ox], mx = 1 - lx;
        out[ob + oy * outW + ox] = my * (mx * X[r0 + c0] + lx * X[r0 + c1]) + ly * (mx * X[r1 + c0] + lx * X[r1 + c1]);
      }
    }
  }
  return new Tensor(out, [B, C, outH, outW]);
}
