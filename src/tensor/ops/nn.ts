/**
 * Neural-net normalisations: softmax / logSoftmax over any axis, LayerNorm over the last axis,
 * GroupNorm over [B, C, H, W], and L2 normalisation (torch F.normalize).
 * Statistics are accumulated in float64 (JS numbers) and stored as float32. With the native kernels
 * (backend().native, native/kernels.c), softmax rows and LayerNorm run there: LayerNorm with the same
 * float64 arithmetic, softmax with a float32 exp and float32 sums (equal within float32 rounding).
 */
import { Tensor, result, assertFloat, normAxis, sizeOf } from '../tensor.js';
import { backend } from '../../backend/index.js';
import { rowStatsInto } from './row-stats.js';

// exp for x ≤ 0 (softmax after max subtraction): e^x = 2^(j/64)·e^r with j = round(x·64/ln 2) and
// |r| ≤ ln2/128, 2^(j/64) from two small tables and e^r from a degree-6 Taylor polynomial
// (relative error < 1e-13, far below float32 rounding). About 2.5× faster than Math.exp in V8.
const EXP_K = 64, EXP_MIN = -104; // e^-104 is below half the smallest float32 subnormal
const EXP_INT = 160;
const expFrac = new Float64Array(EXP_K).map((_, i) => Math.pow(2, i / EXP_K));
const expPow2 = new Float64Array(EXP_INT + 1).map((_, i) => Math.pow(2, i - EXP_INT));
const EXP_C = Math.LOG2E * EXP_K, EXP_L = Math.LN2 / EXP_K;

/** e^x, fast for x ≤ 0 (falls back to Math.exp for x > 0 and NaN); 0 below −104 (and for −∞). */
export function expNonPositive(x: number): number {
  if (x < EXP_MIN) return 0;
  if (!(x <= 0)) return Math.exp(x);
  const k = (x * EXP_C - 0.5) | 0; // round half down; k ≤ 0
  const r = x - k * EXP_L;
  const m = k + EXP_INT * EXP_K;
  return expPow2[m >> 6] * expFrac[m & 63] * (1 + r * (1 + r * (0.5 + r * (1 / 6 + r * (1 / 24 + r * (1 / 120 + r / 720))))));
}

/** [outer, n, inner] for a reduction over `axis`. */
function axisDims(x: Tensor, axis: number): [number, number, number] {
  const ax = normAxis(axis, x.ndim);
  return [sizeOf(x.shape.slice(0, ax)), x.shape[ax], sizeOf(x.shape.slice(ax + 1))];
}

/**
 * Row-wise softmax of `rows` contiguous rows of n from X into Y, both starting at `off` (Y may be X:
 * in place). Max-subtracted, exp by `expNonPositive` inlined (the same arithmetic, so the same values),
 * or by the native kernel when there is one.
 */
export function softmaxRows(X: Float32Array, Y: Float32Array, off: number, rows: number, n: number): void {
  const nk = backend().native;
  if (nk) { nk.softmaxRows(X, Y, off, rows, n); return; }
  const P2 = expPow2, FR = expFrac;
  for (let o = 0; o < rows; o++) {
    const b = off + o * n, e = b + n;
    let m = -Infinity;
    for (let i = b; i < e; i++) { const v = X[i]; if (v > m) m = v; }
    let s = 0;
    for (let i = b; i < e; i++) {
      const x = X[i] - m;
      let ex: number;
      if (x < EXP_MIN) ex = 0;
      else if (!(x <= 0)) ex = Math.exp(x);
      else {
        const k = (x * EXP_C - 0.5) | 0, r = x - k * EXP_L, mm = k + EXP_INT * EXP_K;
        ex = P2[mm >> 6] * FR[mm & 63] * (1 + r * (1 + r * (0.5 + r * (1 / 6 + r * (1 / 24 + r * (1 / 120 + r / 720))))));
      }
      Y[i] = ex; s += ex;
    }
    const r = 1 / s;
    for (let i = b; i < e; i++) Y[i] *= r;
  }
}

/** The softmax backward of `rows` rows of n at `off`: dX_i = Y_i·(G_i − Σ_j G_j·Y_j) into dX (may be G). */
export function softmaxRowsBackward(Y: Float32Array, G: Float32Array, dX: Float32Array, off: number, rows: number, n: number): void {
  const nk = backend().native;
  if (nk) { nk.softmaxRowsBackward(Y, G, dX, off, rows, n); return; }
  for (let o = 0; o < rows; o++) {
    const b = off + o * n, e = b + n;
    let d = 0;
    for (let i = b; i < e; i++) d += G[i] * Y[i];
    for (let i = b; i < e; i++) dX[i] = Y[i] * (G[i] - d);
  }
}

/** softmax(x)_i = exp(x_i − max x) / Σ_j exp(x_j − max x) along `axis`. */
export function softmax(x: Tensor, axis = -1): Tensor {
  const X = assertFloat(x, 'softmax');
  const [outer, n, inner] = axisDims(x, axis);
  const y = new Float32Array(X.length);
  if (inner === 1) {
    softmaxRows(X, y, 0, outer, n);
  } else {
    for (let o = 0; o < outer; o++) for (let k = 0; k < inner; k++) {
      const b = o * n * inner + k;
      let m = -Infinity;
      for (let i = 0; i < n; i++) if (X[b + i * inner] > m) m = X[b + i * inner];
      let s = 0;
      for (let i = 0; i < n; i++) { const e = expNonPositive(X[b + i * inner] - m); y[b + i * inner] = e; s += e; }
      const r = 1 / s;
      for (let i = 0; i < n; i++) y[b + i * inner] *= r;
    }
  }
  return result(y, x.shape, 'softmax', [x], (g) => {
    // dx_i = y_i · (g_i − Σ_j g_j y_j)
    const gx = new Float32Array(X.length);
    if (inner === 1) {
      softmaxRowsBackward(y, g, gx, 0, outer, n);
      return [gx];
    }
    for (let o = 0; o < outer; o++) for (let k = 0; k < inner; k++) {
      const b = o * n * inner + k;
      let d = 0;
      for (let i = 0; i < n; i++) d += g[b + i * inner] * y[b + i * inner];
      for (let i = 0; i < n; i++) gx[b + i * inner] = y[b + i * inner] * (g[b + i * inner] - d);
    }
    return [gx];
  });
}

/** log softmax along `axis`, max-subtracted: x_i − max − log Σ_j exp(x_j − max). */
export function logSoftmax(x: Tensor, axis = -1): Tensor {
  const X = assertFloat(x, 'logSoftmax');
  const [outer, n, inner] = axisDims(x, axis);
  const y = new Float32Array(X.length);
  for (let o = 0; o < outer; o++) for (let k = 0; k < inner; k++) {
    const b = o * n * inner + k;
    let m = -Infinity;
    for (let i = 0; i < n; i++) if (X[b + i * inner] > m) m = X[b + i * inner];
    let s = 0;
    for (let i = 0; i < n; i++) s += expNonPositive(X[b + i * inner] - m);
    const lse = m + Math.log(s);
    for (let i = 0; i < n; i++) y[b + i * inner] = X[b + i * inner] - lse;
  }
  return result(y, x.shape, 'logSoftmax', [x], (g) => {
    // dx_i = g_i − softmax_i · Σ_j g_j
    const gx = new Float32Array(X.length);
    for (let o = 0; o < outer; o++) for (let k = 0; k < inner; k++) {
      const b = o * n * inner + k;
      let s = 0;
      for (let i = 0; i < n; i++) s += g[b + i * inner];
      for (let i = 0; i < n; i++) gx[b + i * inner] = g[b + i * inner] - expNonPositive(y[b + i * inner]) * s;
    }
    return [gx];
  });
}

/**
 * Shared LayerNorm/GroupNorm kernel. The data is `rows` rows of `cpg` channel blocks of `hw` contiguous
 * elements; each row is normalised with its own mean and biased variance, and channel
 * c = (row mod groups)·cpg + k gets the affine (weight[c], bias[c]). LayerNorm is groups = 1, cpg = C,
 * hw = 1; GroupNorm is cpg = C/groups, hw = H·W.
 */
interface NormLayout { rows: number; groups: number; cpg: number; hw: number }

/** Per-row mean and 1/√(σ² + eps): one float64 pass, shifted by the row's first element for stability. */
function rowStats(X: Float32Array, L: NormLayout, eps: number): { mean: Float64Array; rstd: Float64Array } {
  const len = L.cpg * L.hw;
  const mean = new Float64Array(L.rows), rstd = new Float64Array(L.rows);
  for (let r = 0; r < L.rows; r++) rowStatsInto(X, r * len, len, eps, mean, rstd, r);
  return { mean, rstd };
}

/** y = (x − μ)·rstd·w[c] + b[c], written as x·scale + shift per channel block. */
function normForward(X: Float32Array, L: NormLayout, mean: Float64Array, rstd: Float64Array, W: Float32Array | null, B: Float32Array | null): Float32Array {
  const { rows, groups, cpg, hw } = L;
  const y = new Float32Array(X.length);
  if (hw === 1 && groups === 1) { // LayerNorm: the affine varies along the row
    for (let r = 0, o = 0; r < rows; r++, o += cpg) {
      const mu = mean[r], rs = rstd[r];
      if (!W && !B) for (let j = 0; j < cpg; j++) y[o + j] = (X[o + j] - mu) * rs;
      else if (W && B) for (let j = 0; j < cpg; j++) y[o + j] = (X[o + j] - mu) * rs * W[j] + B[j];
      else for (let j = 0; j < cpg; j++) y[o + j] = (X[o + j] - mu) * rs * (W ? W[j] : 1) + (B ? B[j] : 0);
    }
    return y;
  }
  for (let r = 0; r < rows; r++) {
    const c0 = (r % groups) * cpg, mu = mean[r], rs = rstd[r];
    for (let k = 0; k < cpg; k++) {
      const c = c0 + k, scale = rs * (W ? W[c] : 1), shift = (B ? B[c] : 0) - mu * scale;
      const o = (r * cpg + k) * hw;
      for (let i = 0; i < hw; i++) y[o + i] = X[o + i] * scale + shift;
    }
  }
  return y;
}

/**
 * Backward of the normalisation, recomputing x̂ = (x − μ)·rstd from x (nothing large is stored):
 * with gx̂ = g·w, gx = rstd·(gx̂ − mean(gx̂) − x̂·mean(gx̂·x̂)) per row; gw[c] = Σ g·x̂, gb[c] = Σ g.
 */
function normBackward(
  g: Float32Array, X: Float32Array, L: NormLayout, mean: Float64Array, rstd: Float64Array, W: Float32Array | null,
  wantX: boolean, wantW: boolean, wantB: boolean, C: number,
): { gx: Float32Array | null; gw: Float32Array | null; gb: Float32Array | null } {
  const { rows, groups, cpg, hw } = L, len = cpg * hw;
  const gx = wantX ? new Float32Array(X.length) : null;
  const gw = wantW ? new Float64Array(C) : null, gb = wantB ? new Float64Array(C) : null;
  const nk = hw === 1 && groups === 1 ? backend().native : null;
  if (nk) nk.layerNormBackward(g, X, mean, rstd, W, gx, gw, gb, rows, C); // the same formulas in C
  else if (hw === 1 && groups === 1) {
    // LayerNorm: one channel per element; the same sums as the general loop below, in the same order
    const wt = W ?? new Float32Array(cpg).fill(1);
    for (let r = 0, o = 0; r < rows; r++, o += cpg) {
      const mu = mean[r], rs = rstd[r];
      let s1 = 0, s2 = 0;
      for (let j = 0; j < cpg; j++) {
        const gi = g[o + j], sgx = gi * ((X[o + j] - mu) * rs), w = wt[j];
        s1 += gi * w; s2 += sgx * w;
        if (gw) gw[j] += sgx;
        if (gb) gb[j] += gi;
      }
      if (!gx) continue;
      const m1 = s1 / len, m2 = s2 / len;
      for (let j = 0; j < cpg; j++) gx[o + j] = rs * (g[o + j] * wt[j] - m1 - (X[o + j] - mu) * rs * m2);
    }
  } else for (let r = 0; r < rows; r++) {
    const c0 = (r % groups) * cpg, mu = mean[r], rs = rstd[r];
    let s1 = 0, s2 = 0;
    for (let k = 0; k < cpg; k++) {
      const c = c0 + k, w = W ? W[c] : 1, o = (r * cpg + k) * hw;
      let sg = 0, sgx = 0;
      for (let i = 0; i < hw; i++) { const gi = g[o + i], xh = (X[o + i] - mu) * rs; sg += gi; sgx += gi * xh; }
      s1 += sg * w; s2 += sgx * w;
      if (gw) gw[c] += sgx;
      if (gb) gb[c] += sg;
    }
    if (!gx) continue;
    const m1 = s1 / len, m2 = s2 / len;
    for (let k = 0; k < cpg; k++) {
      const c = c0 + k, w = W ? W[c] : 1, o = (r * cpg + k) * hw;
      for (let i = 0; i < hw; i++) gx[o + i] = rs * (g[o + i] * w - m1 - (X[o + i] - mu) * rs * m2);
    }
  }
  return { gx, gw: gw && Float32Array.from(gw), gb: gb && Float32Array.from(gb) };
}

function checkAffine(op: string, t: Tensor | null | undefined, n: number, what: string): Float32Array | null {
  if (!t) return null;
  if (t.ndim !== 1 || t.shape[0] !== n) throw new RangeError(`${op}: ${what} must be [${n}], got [${t.shape.join(', ')}]`);
  return assertFloat(t, op);
}

/** Shared tail of layerNorm/groupNorm: forward, and the grad node over [x, weight?, bias?]. */
function affineNorm(op: string, x: Tensor, L: NormLayout, C: number, eps: number, weight: Tensor | null, bias: Tensor | null): Tensor {
  const X = assertFloat(x, op);
  const W = checkAffine(op, weight, C, 'weight'), B = checkAffine(op, bias, C, 'bias');
  const nk = L.hw === 1 && L.groups === 1 ? backend().native : null; // native LayerNorm (GroupNorm stays here)
  let mean: Float64Array, rstd: Float64Array, y: Float32Array;
  if (nk) {
    mean = new Float64Array(L.rows); rstd = new Float64Array(L.rows); y = new Float32Array(X.length);
    nk.layerNorm(X, y, mean, rstd, W, B, L.rows, C, eps);
  } else {
    ({ mean, rstd } = rowStats(X, L, eps));
    y = normForward(X, L, mean, rstd, W, B);
  }
  const inputs: Tensor[] = [x];
  if (weight) inputs.push(weight);
  if (bias) inputs.push(bias);
  return result(y, x.shape, op, inputs, (g) => {
    const r = normBackward(g, X, L, mean, rstd, W, x.requiresGrad, !!weight?.requiresGrad, !!bias?.requiresGrad, C);
    const grads: (Float32Array | null)[] = [r.gx];
    if (weight) grads.push(r.gw);
    if (bias) grads.push(r.gb);
    return grads;
  });
}

/**
 * LayerNorm over the last axis with biased variance (torch.nn.LayerNorm):
 * y = (x − μ)/√(σ² + eps) · weight + bias. VAR uses it without affine, eps = 1e-6 (docs/VAR.md §3.2).
 */
export function layerNorm(x: Tensor, eps: number, weight?: Tensor | null, bias?: Tensor | null): Tensor {
  if (x.ndim < 1) throw new RangeError('layerNorm: needs at least a 1-d tensor, got a scalar');
  const C = x.shape[x.ndim - 1], rows = C === 0 ? 0 : x.size / C;
  return affineNorm('layerNorm', x, { rows, groups: 1, cpg: C, hw: 1 }, C, eps, weight ?? null, bias ?? null);
}

/**
 * GroupNorm (torch.nn.GroupNorm) over x [B, C, H, W] (any trailing spatial dims): channels are
 * split into `groups` groups; each (batch, group) is normalised with its own mean and biased
 * variance, then the per-channel affine is applied. The VQVAE uses 32 groups, eps 1e-6 (docs/VAR.md §4).
 */
export function groupNorm(x: Tensor, groups: number, weight: Tensor | null, bias: Tensor | null, eps: number): Tensor {
  if (x.ndim < 2) throw new RangeError(`groupNorm: expected [B, C, ...], got [${x.shape.join(', ')}]`);
  const Bn = x.shape[0], C = x.shape[1], HW = sizeOf(x.shape.slice(2));
  if (!Number.isInteger(groups) || groups <= 0 || C % groups !== 0) {
    throw new RangeError(`groupNorm: ${C} channels cannot be split into ${groups} groups (groups must divide C)`);
  }
  return affineNorm('groupNorm', x, { rows: Bn * groups, groups, cpg: C / groups, hw: HW }, C, eps, weight, bias);
}

/** torch F.normalize: y = x / max(‖x‖₂, eps) along `axis`. */
export function l2Normalize(x: Tensor, axis = -1, eps = 1e-12): Tensor {
  const X = assertFloat(x, 'l2Normalize');
  const [outer, n, inner] = axisDims(x, axis);
  const y = new Float32Array(X.length);
  const denom = new Float64Array(outer * inner);
  const clamped = new Uint8Array(outer * inner);
  for (let o = 0; o < outer; o++) for (let k = 0; k < inner; k++) {
    const b = o * n * inner + k;
    let s = 0;
    for (let i = 0; i < n; i++) s += X[b + i * inner] * X[b + i * inner];
    const nr = Math.sqrt(s);
    const d = nr > eps ? nr : eps;
    denom[o * inner + k] = d;
    clamped[o * inner + k] = nr > eps ? 0 : 1;
    const r = 1 / d;
    for (let i = 0; i < n; i++) y[b + i * inner] = X[b + i * inner] * r;
  }
  return result(y, x.shape, 'l2Normalize', [x], (g) => {
    // unclamped: dx = (g − y·(g·y)) / ‖x‖; clamped (‖x‖ ≤ eps): dx = g / eps
    const gx = new Float32Array(X.length);
    for (let o = 0; o < outer; o++) for (let k = 0; k < inner; k++) {
      const b = o * n * inner + k, d = denom[o * inner + k];
      let dot = 0;
      if (!clamped[o * inner + k]) for (let i = 0; i < n; i++) dot += g[b + i * inner] * y[b + i * inner];
      for (let i = 0; i < n; i++) gx[b + i * inner] = (g[b + i * inner] - y[b + i * inner] * dot) / d;
    }
    return [gx];
  });
}
