/**
 * GELU with the tanh approximation, the FFN activation of VAR (docs/VAR.md §3.4).
 * Forward and backward by cubic Hermite tables (exact values and slopes at the knots, error < 1e-9),
 * or, with the native kernels (backend().native), by the formula itself in float64 (native/kernels.c;
 * equal up to one float32 rounding). `geluExact` and `geluDeriv` are the float64 reference formulas.
 */
import { Tensor, result, assertFloat, isGradEnabled } from '../tensor.js';
import { backend } from '../../backend/index.js';
import { isDryRun } from '../flops.js';

const GELU_C = Math.sqrt(2 / Math.PI);

/** GELU_tanh(x) in float64: 0.5·x·(1+tanh(√(2/π)·(x+0.044715x³))) (docs/VAR.md §3.4). */
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

/**
 * Cubic Hermite coefficients of f on the knots GELU_LO + i/GELU_H: per interval [a, b, c, d] with
 * f(x₀ + t·h) = a + t(b + t(c + t·d)), t ∈ [0, 1), matching f and df at both ends.
 */
function hermiteTable(f: (x: number) => number, df: (x: number) => number): Float64Array {
  const T = new Float64Array(GELU_N * 4), h = 1 / GELU_H;
  for (let i = 0; i < GELU_N; i++) {
    const x0 = GELU_LO + i * h, x1 = x0 + h, y0 = f(x0), y1 = f(x1), d0 = df(x0) * h, d1 = df(x1) * h;
    T[4 * i] = y0; T[4 * i + 1] = d0; T[4 * i + 2] = 3 * (y1 - y0) - 2 * d0 - d1; T[4 * i + 3] = 2 * (y0 - y1) + d0 + d1;
  }
  return T;
}

const GELU_TABLE = hermiteTable(geluExact, geluDeriv);

/**
 * d²/dx² GELU_tanh in float64 (for the derivative table's slopes). With s = σ(2u), u = √(2/π)(x + 0.044715x³):
 * GELU′ = s + x·s′, s′ = 2s(1−s)u′, s″ = 2u″s(1−s) + 2u′s′(1−2s), so GELU″ = 2s′ + x·s″.
 */
function geluDeriv2(x: number): number {
  const s = 1 / (1 + Math.exp(-2 * GELU_C * (x + 0.044715 * x * x * x)));
  const u1 = GELU_C * (1 + 3 * 0.044715 * x * x), u2 = GELU_C * 6 * 0.044715 * x;
  const s1 = 2 * s * (1 - s) * u1, s2 = 2 * u2 * s * (1 - s) + 2 * u1 * s1 * (1 - 2 * s);
  return 2 * s1 + x * s2;
}

/**
 * The backward pass's GELU′ by the same cubic Hermite scheme (knot values GELU′, slopes GELU″, both
 * exact; error < 1e-9 on [−8, 8)); outside, GELU′ is 1 (x ≥ 8) or 0 (x ≤ −8) to float32 precision.
 * ~4× faster than evaluating `geluDeriv` (an exp per element) in the training backward.
 */
const GELU_D_TABLE = hermiteTable(geluDeriv, geluDeriv2);

/** The interpolated GELU′ of one value (exported for tests). */
export function geluDerivFast(a: number): number {
  if (a >= 8) return 1;
  if (a <= -8) return 0;
  const t = (a - GELU_LO) * GELU_H, k = t | 0, f = t - k, o = 4 * k, T = GELU_D_TABLE;
  return T[o] + f * (T[o + 1] + f * (T[o + 2] + f * T[o + 3]));
}

/**
 * gx[i] = g[i]·GELU′(x[i]) for i < n (the table above, inlined): the backward of `gelu`, also used by
 * the expert FFN's backward.
 */
export function geluBackwardInto(x: Float32Array, g: Float32Array, gx: Float32Array, n: number): void {
  const T = GELU_D_TABLE;
  for (let i = 0; i < n; i++) {
    const a = x[i];
    let d: number;
    if (a >= 8) d = 1;
    else if (a <= -8) d = 0;
    else {
      const t = (a - GELU_LO) * GELU_H, k = t | 0, f = t - k, o = 4 * k;
      d = T[o] + f * (T[o + 1] + f * (T[o + 2] + f * T[o + 3]));
    }
    gx[i] = g[i] * d;
  }
}

/** The interpolated GELU of one value (exported for tests). */
export function geluFast(a: number): number {
  if (a >= 8) return a;
  if (a <= -8) return -0;
  const t = (a - GELU_LO) * GELU_H, k = t | 0, f = t - k, o = 4 * k;
  return GELU_TABLE[o] + f * (GELU_TABLE[o + 1] + f * (GELU_TABLE[o + 2] + f * GELU_TABLE[o + 3]));
}

/**
 * GELU with the tanh approximation (docs/VAR.md §3.4), 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))), via the
 * interpolation table above (the gradient by the derivative table). `inPlace` (inference only)
 * overwrites x instead of allocating.
 */
export function gelu(x: Tensor, inPlace = false): Tensor {
  const X = assertFloat(x, 'gelu'), n = X.length;
  const needGrad = isGradEnabled() && x.requiresGrad;
  const Y = inPlace && !needGrad && !x.node ? X : new Float32Array(n);
  if (Y === X && isDryRun()) return x; // shape-only run: values are meaningless, skip the work
  if (needGrad) return geluWithGrad(x, X, Y);
  const T = GELU_TABLE, nk = backend().native;
  if (nk) nk.gelu(X, Y, null, n); // the formula in float64 (native/kernels.c)
  else for (let i = 0; i < n; i++) {
    // geluFast(X[i]), inlined
    const a = X[i];
    if (a >= 8) { Y[i] = a; continue; }
    if (a <= -8) { Y[i] = -0; continue; }
    const t = (a - GELU_LO) * GELU_H, k = t | 0, f = t - k, o = 4 * k;
    Y[i] = T[o] + f * (T[o + 1] + f * (T[o + 2] + f * T[o + 3]));
  }
  return Y === X ? x : new Tensor(Y, x.shape); // no gradient needed (see geluWithGrad)
}

/**
 * Training GELU: GELU and GELU′ of each element from one table position (the same values as
 * `geluFast` and `geluDerivFast`), GELU′ kept for the backward, which is then one multiply.
 */
function geluWithGrad(x: Tensor, X: Float32Array, Y: Float32Array): Tensor {
  const n = X.length, T = GELU_TABLE, TD = GELU_D_TABLE, D = new Float32Array(n);
  const nk = backend().native;
  if (nk) nk.gelu(X, Y, D, n); // the formula in float64 (native/kernels.c)
  else for (let i = 0; i < n; i++) {
    const a = X[i];
    if (a >= 8) { Y[i] = a; D[i] = 1; continue; }
    if (a <= -8) { Y[i] = -0; D[i] = 0; continue; }
    const t = (a - GELU_LO) * GELU_H, k = t | 0, f = t - k, o = 4 * k;
    Y[i] = T[o] + f * (T[o + 1] + f * (T[o + 2] + f * T[o + 3]));
    D[i] = TD[o] + f * (TD[o + 1] + f * (TD[o + 2] + f * TD[o + 3]));
  }
  return result(Y, x.shape, 'gelu', [x], (g) => {
    const gx = new Float32Array(n);
    if (nk) nk.mul(g, D, gx, n);
    else for (let i = 0; i < n; i++) gx[i] = g[i] * D[i];
    return [gx];
  });
}
