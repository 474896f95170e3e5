/**
 * Gate scores of normalised rows: Y[t] = w·LN(x_t) + b for n rows of C (LayerNorm without affine,
 * biased variance; ActVAR's token selector, paper §3.3). The gate of a normalised token is
 * w·(x − μ)·rstd + b = (w·x − μ·Σw)·rstd + b, so ln(x) is never materialised. The backend's
 * `gateScores` override (native/rows.c: the same formula, float64 sums in another order, so a score
 * can differ by one float32 rounding) when it has one.
 */
import { backend, workspace } from '../../backend/index.js';
import { recordFlops, isDryRun } from '../flops.js';
import { rowStatsInto } from './row-stats.js';

/** Y[t] = w·LN(X_t) + b (rows × C inputs). Records 2·C FLOPs per row (as the work of the tensor `weight`, for its FLOP category); no arithmetic in a dry run. */
export function gateScores(X: Float32Array, rows: number, C: number, w: Float32Array, b: number, eps: number, Y: Float32Array,
  weight: object | null = null): void {
  recordFlops(2 * rows * C, weight);
  if (isDryRun()) return;
  const nk = backend().native;
  if (nk) { nk.gateScores(X, rows, C, w, b, eps, Y); return; }
  let sw = 0;
  for (let c = 0; c < C; c++) sw += w[c];
  const mean = workspace().float64('gate.mean', 1), rstd = workspace().float64('gate.rstd', 1);
  for (let t = 0; t < rows; t++) {
    const o = t * C;
    rowStatsInto(X, o, C, eps, mean, rstd, 0);
    // w·x with two partial sums (shorter float64 dependency chains)
    let dot = 0, dot1 = 0, c = 0;
    for (; c + 1 < C; c += 2) { dot += X[o + c] * w[c]; dot1 += X[o + c + 1] * w[c + 1]; }
    if (c < C) dot += X[o + c] * w[c];
    Y[t] = (dot + dot1 - mean[0] * sw) * rstd[0] + b;
  }
}
