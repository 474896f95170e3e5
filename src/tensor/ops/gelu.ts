/**
 * GELU with the tanh approximation, the FFN activation of VAR (var-reference.md §3.4).
 * Forward by a cubic Hermite table (exact values and slopes at the knots), backward by the exact
 * derivative; `geluExact` is the float64 reference formula.
 */
import { Tensor, result, assertFloat, isGradEnabled } from '../tensor.js';
import { isDryRun } from '../flops.js';

const GELU_C = Math.sqrt(2 / Math.PI);

/** GELU_tanh(x) in float64: 0.5·x·(1+tanh(√(2/π)·(x+0.044715x³))) (var-reference.md §3.4). */
export function geluExact(x: number): number {
  return 0.5 * x * (1 + Math.tanh(GELU_C * (x + 0.044715 * x * x * x)));
}
/**
 * d/dx GELU_tanh, written with σ(2u) = 0.5·(1+tanh u) (the same function; Math.exp is several times
 * faster than Math.tanh in V8): σ(2u) + 2x·σ(2u)(1−σ(2u))·u′, u′ = √(2/π)(1 + 3·0.044715x²).
 */
export function geluDeriv(x: number): number {
  const s = 1 / (1 + Math.exp(-2 * GELU_C * (x + 0.044715 * x * x * x)));
  return s + 2 * x * s * (1 - s) * GELU_C * (1 + 3 * 0.044715 * x * x);
}

/**
 * Inference GELU by piecewise cubic Hermite interpolation on [−8, 8) with step 1/64 (values and
 * derivatives exact at the knots; error ≤ h⁴/384·max|f⁗| < 1e-9, below float32 rounding); x ≥ 8
 * gives x and x ≤ −8 gives −0, as float32 tanh saturates there. ~3× faster than an exp per element.
 */
const GELU_H = 64, GELU_LO = -8, GELU_N = 16 * GELU_H;
const GELU_TABLE = (() => {
  const T = new Float64Array(GELU_N * 4), h = 1 / GELU_H;
  for (let i = 0; i < GELU_N; i++) {
    const x0 = GELU_LO + i * h, x1 = x0 + h, y0 = geluExact(x0), y1 = geluExact(x1), d0 = geluDeriv(x0) * h, d1 = geluDeriv(x1) * h;
    T[4 * i] = y0; T[4 * i + 1] = d0; T[4 * i + 2] = 3 * (y1 - y0) - 2 * d0 - d1; T[4 * i + 3] = 2 * (y0 - y1) + d0 + d1;
  }
  return T;
})();

/** The interpolated GELU of one value (exported for tests). */
export function geluFast(a: number): number {
  if (a >= 8) return a;
  if (a <= -8) return -0;
  const t = (a - GELU_LO) * GELU_H, k = t | 0, f = t - k, o = 4 * k;
  return GELU_TABLE[o] + f * (GELU_TABLE[o + 1] + f * (GELU_TABLE[o + 2] + f * GELU_TABLE[o + 3]));
}

/**
 * GELU with the tanh approximation (§3.4), 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))), via the
 * interpolation table above (the gradient uses the exact derivative). `inPlace` (inference only)
 * overwrites x instead of allocating.
 */
export function gelu(x: Tensor, inPlace = false): Tensor {
  const X = assertFloat(x, 'gelu'), n = X.length;
  const needGrad = isGradEnabled() && x.requiresGrad;
  const Y = inPlace && !needGrad && !x.node ? X : new Float32Array(n);
  if (Y === X && isDryRun()) return x; // shape-only run: values are meaningless, skip the work
  const T = GELU_TABLE;
  for (let i = 0; i < n; i++) {
    // geluFast(X[i]), inlined
    const a = X[i];
    if (a >= 8) { Y[i] = a; continue; }
    if (a <= -8) { Y[i] = -0; continue; }
    const t = (a - GELU_LO) * GELU_H, k = t | 0, f = t - k, o = 4 * k;
    Y[i] = T[o] + f * (T[o + 1] + f * (T[o + 2] + f * T[o + 3]));
  }
  if (Y === X) return x;
  return result(Y, x.shape, 'gelu', [x], (g) => {
    const gx = new Float32Array(n);
    for (let i = 0; i < n; i++) gx[i] = g[i] * geluDeriv(X[i]);
    return [gx];
  });
}

