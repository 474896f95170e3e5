/** The AdamW update of one parameter array (the element loop of src/optim/adamw.ts). */
import { backend } from '../../backend/index.js';

/**
 * The element loop of one parameter: p ← fround(p·decay) (decoupled weight decay, skipped when
 * decay = 1), m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², p ← p − stepSize·m/(√v/√bc₂ + eps).
 * A monomorphic function of plain arrays and numbers, one loop per decay case; the backend's `adamw`
 * override (native/kernels.c, bit-identical) when it has one. The optimiser is src/optim/adamw.ts.
 */
export function adamwUpdate(P: Float32Array, G: Float32Array, m: Float32Array, v: Float32Array, decay: number,
  b1: number, b2: number, c1: number, c2: number, stepSize: number, bc2Sqrt: number, eps: number): void {
  const n = P.length, f = Math.fround, rb = 1 / bc2Sqrt; // √v/√(1−β2^t) as a product: one division per element
  const nk = backend().native;
  if (nk) { nk.adamw(P, G, m, v, decay, b1, b2, c1, c2, stepSize, rb, eps); return; } // bit-identical (native/kernels.c)
  if (decay === 1) {
    for (let i = 0; i < n; i++) {
      const gi = G[i];
      const mi = f(m[i] * b1 + gi * c1), vi = f(v[i] * b2 + gi * gi * c2);
      m[i] = mi; v[i] = vi;
      P[i] = P[i] - stepSize * mi / (Math.sqrt(vi) * rb + eps);
    }
  } else {
    for (let i = 0; i < n; i++) {
      const gi = G[i], pi = f(P[i] * decay);
      const mi = f(m[i] * b1 + gi * c1), vi = f(v[i] * b2 + gi * gi * c2);
      m[i] = mi; v[i] = vi;
      P[i] = pi - stepSize * mi / (Math.sqrt(vi) * rb + eps);
    }
  }
}
