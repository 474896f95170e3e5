/**
 * The fused row ops of a VAR block (docs/VAR.md §3.2): AdaLN modulation `LN(x)·(1+scale)+shift`
 * (LayerNorm without affine) and the gated residual `x + branch·gamma`, each with its TypeScript
 * reference, its hand-written backward and the backend's override (`modulate`, `gatedResidual` of the
 * native kernels, native/rows.c) for the inference forward. Float32 rounding follows the official op
 * order (`ln(x)*(1+scale)+shift` rounds after each op), statistics in float64.
 */
import { Tensor, result, isGradEnabled, assertFloat } from '../tensor.js';
import { backend, workspace } from '../../backend/index.js';
import { rowStatsInto } from './row-stats.js';

const fr = Math.fround;

/**
 * y = LN(x)·(1+scale) + shift over the last axis; LayerNorm without affine, biased variance,
 * `eps` inside the square root (docs/VAR.md §3.2, §9). x is [B, ..., C]; scale and shift are [B, C] (one row
 * per sample, broadcast over that sample's tokens). Statistics in float64 (row-stats.ts).
 */
export function adaLNModulate(x: Tensor, scale: Tensor, shift: Tensor, eps: number): Tensor {
  const X = assertFloat(x, 'adaLNModulate'), S = assertFloat(scale, 'adaLNModulate'), Sh = assertFloat(shift, 'adaLNModulate');
  const C = x.shape[x.ndim - 1], rows = X.length / C, B = x.shape[0];
  if (S.length !== B * C || Sh.length !== B * C) {
    throw new RangeError(`adaLNModulate: scale/shift must be [${B}, ${C}] for x [${x.shape.join(', ')}], got [${scale.shape.join(', ')}] and [${shift.shape.join(', ')}]`);
  }
  const perB = B ? rows / B : 0;
  const needGrad = isGradEnabled() && (x.requiresGrad || scale.requiresGrad || shift.requiresGrad);
  if (!needGrad) {
    const Y = new Float32Array(X.length);
    adaLNModulateInto(X, S, Sh, B, rows, C, eps, Y);
    return new Tensor(Y, x.shape);
  }
  const onePlus = new Float32Array(B * C);
  for (let i = 0; i < onePlus.length; i++) onePlus[i] = 1 + S[i];
  const Y = new Float32Array(X.length);
  const Nrm = new Float32Array(X.length), rstdArr = new Float64Array(rows); // kept for the backward
  const meanArr = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const o = r * C, bo = Math.floor(r / perB) * C;
    rowStatsInto(X, o, C, eps, meanArr, rstdArr, r);
    const m = meanArr[r], rstd = rstdArr[r];
    for (let c = 0; c < C; c++) {
      const n = fr((X[o + c] - m) * rstd);
      Nrm[o + c] = n;
      Y[o + c] = fr(n * onePlus[bo + c]) + Sh[bo + c];
    }
  }
  return result(Y, x.shape, 'adaLNModulate', [x, scale, shift], (g) => {
    const gx = x.requiresGrad ? new Float32Array(X.length) : null;
    const gs = new Float32Array(B * C), gsh = new Float32Array(B * C);
    for (let r = 0; r < rows; r++) {
      const o = r * C, bo = Math.floor(r / perB) * C;
      let sdn = 0, sdnn = 0;
      for (let c = 0; c < C; c++) {
        const gi = g[o + c], n = Nrm[o + c];
        gsh[bo + c] += gi;
        gs[bo + c] += gi * n;
        const dn = gi * onePlus[bo + c];
        sdn += dn; sdnn += dn * n;
      }
      if (gx) {
        const rstd = rstdArr[r], mdn = sdn / C, mdnn = sdnn / C;
        for (let c = 0; c < C; c++) gx[o + c] = rstd * (g[o + c] * onePlus[bo + c] - mdn - Nrm[o + c] * mdnn);
      }
    }
    return [gx, scale.requiresGrad ? gs : null, shift.requiresGrad ? gsh : null];
  });
}

/**
 * The forward of `adaLNModulate` into Y (inference, the backend's `modulate` when it has one): same float32 rounding, one loop per row
 * without the training branches. X has `rows` rows of C, `rows / B` per sample.
 */
export function adaLNModulateInto(X: Float32Array, S: Float32Array, Sh: Float32Array, B: number, rows: number, C: number, eps: number, Y: Float32Array): void {
  const native = backend().native;
  if (native) { native.modulate(X, S, Sh, B, rows, C, eps, Y); return; } // the same in C on the thread pool (native/rows.c)
  const onePlus = workspace().float32('adaln.onePlus', B * C);
  for (let i = 0; i < B * C; i++) onePlus[i] = 1 + S[i];
  const perB = B ? rows / B : 0;
  const mean = workspace().float64('adaln.mean', 1), rs = workspace().float64('adaln.rstd', 1);
  for (let r = 0; r < rows; r++) {
    const o = r * C, bo = Math.floor(r / perB) * C;
    rowStatsInto(X, o, C, eps, mean, rs, 0);
    const m = mean[0], rstd = rs[0];
    for (let c = 0; c < C; c++) Y[o + c] = fr(fr((X[o + c] - m) * rstd) * onePlus[bo + c]) + Sh[bo + c];
  }
}

/**
 * x + branch·gamma, gamma [B, C] per sample (the residual of docs/VAR.md §3.2). `sampleScale` (length B) is
 * the drop-path factor (0 or 1/keep) of each sample, training only.
 */
export function gatedResidual(x: Tensor, branch: Tensor, gamma: Tensor, sampleScale: Float32Array | null = null): Tensor {
  const X = assertFloat(x, 'gatedResidual'), Y = assertFloat(branch, 'gatedResidual'), G = assertFloat(gamma, 'gatedResidual');
  if (X.length !== Y.length) throw new RangeError(`gatedResidual: x [${x.shape.join(', ')}] and branch [${branch.shape.join(', ')}] differ`);
  const C = x.shape[x.ndim - 1], rows = X.length / C, B = x.shape[0], perB = B ? rows / B : 0;
  if (G.length !== B * C) throw new RangeError(`gatedResidual: gamma must be [${B}, ${C}], got [${gamma.shape.join(', ')}]`);
  const out = new Float32Array(X.length);
  const native = sampleScale ? null : backend().native;
  if (native) native.gatedResidual(X, Y, G, B, rows, C, out);
  else for (let r = 0; r < rows; r++) {
    const o = r * C, b = Math.floor(r / perB), bo = b * C;
    if (sampleScale) {
      const s = sampleScale[b];
      for (let c = 0; c < C; c++) out[o + c] = X[o + c] + fr(fr(Y[o + c] * G[bo + c]) * s);
    } else {
      for (let c = 0; c < C; c++) out[o + c] = X[o + c] + fr(Y[o + c] * G[bo + c]);
    }
  }
  return result(out, x.shape, 'gatedResidual', [x, branch, gamma], (g) => {
    const gy = branch.requiresGrad ? new Float32Array(Y.length) : null;
    const gg = gamma.requiresGrad ? new Float32Array(G.length) : null;
    for (let r = 0; r < rows; r++) {
      const o = r * C, b = Math.floor(r / perB), bo = b * C, s = sampleScale ? sampleScale[b] : 1;
      for (let c = 0; c < C; c++) {
        const gi = g[o + c] * s;
        if (gy) gy[o + c] = gi * G[bo + c];
        if (gg) gg[bo + c] += gi * Y[o + c];
      }
    }
    return [x.requiresGrad ? g : null, gy, gg];
  });
}
