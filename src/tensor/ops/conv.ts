/**
 * 2-d convolution (torch.nn.functional.conv2d semantics, cross-correlation, NCHW) via im2col and the
 * backend's sgemm.
 *
 * Per batch item the output [Cout, Ho·Wo] is W[Cout, Cin·kh·kw] · cols[Cin·kh·kw, Ho·Wo]. The cols matrix
 * is built for a band of output rows at a time in one reused workspace (bounded, default 32 MB), and each
 * band is one GEMM that writes straight into the output (ldc = Ho·Wo). A 1×1 conv with stride 1 and no
 * padding needs no im2col at all: it is one GEMM on the input itself.
 *
 * im2col walks (channel, ki, kj) rows; for each it computes once the range of output columns whose input
 * column is inside the image, so the interior is a block copy and only the borders are zero-filled.
 *
 * Two more forward paths for stride 1 avoid building cols (the backward always uses im2col):
 * - "shifted" (wide inputs, many channels, e.g. the VQVAE decoder's 3×3 convs at 256²): a band of input rows
 *   is copied once into a zero-padded buffer [Cin, rows + kh − 1, Wp]; in that layout the im2col row of tap
 *   (ki, kj) is the buffer itself shifted by ki·Wp + kj, so each tap is one GEMM W_tap[Cout, Cin] · band
 *   accumulating into [Cout, rows·Wp] (the last Wp − Wo columns of each row are discarded). This writes
 *   Cin·(rows + kh − 1)·Wp floats per band instead of Cin·kh·kw·rows·Wo.
 * - "output-side" (far fewer output than input channels, e.g. the VQVAE conv_out 160→3): one GEMM of the
 *   stacked tap weights [kh·kw·Cout, Cin] with the input, then the kh·kw partial maps are shift-added into
 *   the output; its buffer holds kh·kw·Cout·H·W floats instead of kh·kw·Cin·Ho·Wo.
 */
import { backend, workspace } from '../../backend/index.js';
import { Tensor, result, assertFloat } from '../tensor.js';
import { recordFlops, isDryRun } from '../flops.js';

export interface Conv2dOptions {
  /** Same stride in y and x (default 1). */
  stride?: number;
  /** Zero padding: one number for all sides, or [top, bottom, left, right] (default 0). */
  padding?: number | [number, number, number, number];
}

interface Geometry {
  B: number; Cin: number; H: number; W: number;
  Cout: number; kh: number; kw: number;
  s: number; pt: number; pb: number; pl: number; pr: number;
  Ho: number; Wo: number;
  /** Rows of cols: Cin·kh·kw. */
  K: number;
  /** Output pixels per image: Ho·Wo. */
  P: number;
}

/** Workspace bound for one im2col band, in floats (32 MB by default). */
let chunkFloats = 8 * 1024 * 1024;

/**
 * Set the im2col workspace bound (in float32 elements); returns the previous value. The band height
 * is max(1, floor(limit / (Cin·kh·kw·Wo))) output rows. Tests use a tiny limit to exercise banding.
 */
export function setConvWorkspaceFloats(n: number): number {
  if (!Number.isInteger(n) || n <= 0) throw new RangeError(`conv workspace must be a positive integer number of floats, got ${n}`);
  const prev = chunkFloats;
  chunkFloats = n;
  workspace().release('conv.');
  return prev;
}

/** The band buffer, from the backend's workspace. */
function getWorkspace(n: number): Float32Array {
  return workspace().float32('conv.band', n);
}

function geometry(x: Tensor, w: Tensor, bias: Tensor | null, opts: Conv2dOptions): Geometry {
  if (x.ndim !== 4) throw new RangeError(`conv2d: input must be [B, Cin, H, W], got [${x.shape.join(', ')}]`);
  if (w.ndim !== 4) throw new RangeError(`conv2d: weight must be [Cout, Cin, kh, kw], got [${w.shape.join(', ')}]`);
  const [B, Cin, H, W] = x.shape;
  const [Cout, wCin, kh, kw] = w.shape;
  if (wCin !== Cin) throw new RangeError(`conv2d: input has ${Cin} channels but weight [${w.shape.join(', ')}] expects ${wCin}`);
  if (bias && (bias.ndim !== 1 || bias.shape[0] !== Cout)) throw new RangeError(`conv2d: bias must be [${Cout}], got [${bias.shape.join(', ')}]`);
  const s = opts.stride ?? 1;
  if (!Number.isInteger(s) || s < 1) throw new RangeError(`conv2d: stride must be a positive integer, got ${s}`);
  const p = opts.padding ?? 0;
  const [pt, pb, pl, pr] = typeof p === 'number' ? [p, p, p, p] : p;
  if (![pt, pb, pl, pr].every((v) => Number.isInteger(v) && v >= 0)) {
    throw new RangeError(`conv2d: padding must be a non-negative integer or [top, bottom, left, right], got ${JSON.stringify(p)}`);
  }
  const Ho = Math.floor((H + pt + pb - kh) / s) + 1, Wo = Math.floor((W + pl + pr - kw) / s) + 1;
  if (Ho < 1 || Wo < 1) {
    throw new RangeError(`conv2d: kernel ${kh}×${kw} does not fit the padded input ${H + pt + pb}×${W + pl + pr}`);
  }
  return { B, Cin, H, W, Cout, kh, kw, s, pt, pb, pl, pr, Ho, Wo, K: Cin * kh * kw, P: Ho * Wo };
}

/** Output columns ox with 0 ≤ ox·s − pl + kj < W form the range [lo, hi). */
function validRange(g: Geometry, kj: number): [number, number] {
  const { s, pl, W, Wo } = g;
  // ox ≥ (pl − kj)/s  and  ox ≤ (W − 1 + pl − kj)/s
  const lo = Math.min(Wo, Math.max(0, Math.ceil((pl - kj) / s)));
  const hiIncl = Math.floor((W - 1 + pl - kj) / s);
  const hi = Math.max(lo, Math.min(Wo, hiIncl + 1));
  return [lo, hi];
}

/**
 * cols[(c·kh + ki)·kw + kj, (oy − oy0)·Wo + ox] = x[c, oy·s − pt + ki, ox·s − pl + kj] (0 outside),
 * for output rows oy0 .. oy0+rows−1. X is addressed from xOff (one batch item).
 */
function im2col(X: Float32Array, xOff: number, g: Geometry, oy0: number, rows: number, cols: Float32Array): void {
  const { Cin, H, W, kh, kw, s, pt, pl, Wo } = g;
  const N = rows * Wo;
  for (let kj = 0; kj < kw; kj++) {
    const [lo, hi] = validRange(g, kj);
    const shift = kj - pl; // ix = ox·s + shift
    for (let c = 0; c < Cin; c++) {
      const plane = xOff + c * H * W;
      for (let ki = 0; ki < kh; ki++) {
        let d = ((c * kh + ki) * kw + kj) * N;
        for (let oy = oy0; oy < oy0 + rows; oy++, d += Wo) {
          const iy = oy * s - pt + ki;
          if (iy < 0 || iy >= H) { cols.fill(0, d, d + Wo); continue; }
          if (lo > 0) cols.fill(0, d, d + lo);
          const src = plane + iy * W + shift;
          if (s === 1) {
            // interior: a native block copy for long rows, a loop for short ones
            if (hi - lo >= 32) cols.set(X.subarray(src + lo, src + hi), d + lo);
            else for (let ox = lo; ox < hi; ox++) cols[d + ox] = X[src + ox];
          } else {
            for (let ox = lo; ox < hi; ox++) cols[d + ox] = X[src + ox * s];
          }
          if (hi < Wo) cols.fill(0, d + hi, d + Wo);
        }
      }
    }
  }
}

/** Transpose of im2col: gX[c, iy, ix] += gcols[...] over the valid taps (adds into gX from xOff). */
function col2im(gcols: Float32Array, gX: Float32Array, xOff: number, g: Geometry, oy0: number, rows: number): void {
  const { Cin, H, W, kh, kw, s, pt, pl, Wo } = g;
  const N = rows * Wo;
  for (let kj = 0; kj < kw; kj++) {
    const [lo, hi] = validRange(g, kj);
    const shift = kj - pl;
    for (let c = 0; c < Cin; c++) {
      const plane = xOff + c * H * W;
      for (let ki = 0; ki < kh; ki++) {
        let d = ((c * kh + ki) * kw + kj) * N;
        for (let oy = oy0; oy < oy0 + rows; oy++, d += Wo) {
          const iy = oy * s - pt + ki;
          if (iy < 0 || iy >= H) continue;
          const dst = plane + iy * W + shift;
          if (s === 1) {
            for (let ox = lo; ox < hi; ox++) gX[dst + ox] += gcols[d + ox];
          } else {
            for (let ox = lo; ox < hi; ox++) gX[dst + ox * s] += gcols[d + ox];
          }
        }
      }
    }
  }
}

/** Weights regrouped by tap: stacked[(ki·kw + kj)·Cout + co, c] = w[co, c, ki, kj]. */
function stackTaps(Wt: Float32Array, g: Geometry): Float32Array {
  const { Cout, Cin, kh, kw } = g, T = kh * kw;
  const st = new Float32Array(T * Cout * Cin);
  for (let co = 0; co < Cout; co++) for (let c = 0; c < Cin; c++) {
    const src = (co * Cin + c) * T;
    for (let t = 0; t < T; t++) st[(t * Cout + co) * Cin + c] = Wt[src + t];
  }
  return st;
}

/** Forward algorithms; see the file comment. */
export type ConvPath = 'pointwise' | 'im2col' | 'shifted' | 'outputSide';
let forcedPath: ConvPath | null = null;

/**
 * Force a forward algorithm where it applies (tests and benchmarks); null restores the automatic choice.
 * 'pointwise' needs a 1×1 kernel, stride 1 and no padding; 'shifted' and 'outputSide' need stride 1;
 * otherwise im2col runs. Returns the previous setting.
 */
export function setConvPath(path: ConvPath | null): ConvPath | null {
  const prev = forcedPath;
  forcedPath = path;
  return prev;
}

/**
 * The forward algorithm for a geometry. Cost model (measured with OpenBLAS on 2 cores): writing one im2col
 * element costs about as much as 64 GEMM FLOPs, i.e. im2col adds ≈ 32/Cout to the GEMM time, while the
 * shifted path wastes (Wp − Wo)/Wo of the GEMM on discarded columns and needs Cin ≥ 64 for efficient GEMMs.
 * The output-side path pays off once its buffer is 4× smaller than im2col's (Cout ≤ Cin/4 at stride 1).
 */
function convPath(g: Geometry): ConvPath {
  const pointwise = g.kh === 1 && g.kw === 1 && g.s === 1 && g.pt + g.pb + g.pl + g.pr === 0;
  if (forcedPath) {
    if (forcedPath === 'pointwise') return pointwise ? 'pointwise' : 'im2col';
    return forcedPath === 'im2col' || g.s === 1 ? forcedPath : 'im2col';
  }
  if (pointwise) return 'pointwise';
  if (g.s !== 1) return 'im2col';
  if (4 * g.Cout * g.H * g.W <= g.Cin * g.Ho * g.Wo) return 'outputSide';
  const Wp = g.W + g.pl + g.pr;
  if (g.Cin >= 64 && (Wp - g.Wo) / g.Wo < 32 / g.Cout) return 'shifted';
  return 'im2col';
}

/**
 * Shifted forward for one batch item (stride 1), see the file comment. `stacked` is [kh·kw, Cout, Cin];
 * `bias` (or null) is added while copying each band out.
 */
function forwardShifted(X: Float32Array, xOff: number, stacked: Float32Array, bias: Float32Array | null, g: Geometry, out: Float32Array, outOff: number): void {
  const { Cin, H, W, Cout, kh, kw, pt, pl, Ho, Wo, P } = g;
  const Wp = W + pl + g.pr;
  // band height: GEMMs of about 4096 columns (cache-sized), within the workspace bound
  const perRow = Cin * Wp + Cout * Wp;
  let R = Math.max(1, Math.min(Ho, Math.round(4096 / Wp)));
  while (R > 1 && perRow * R + Cin * (kh - 1) * Wp + kw > chunkFloats) R--;
  const BH = R + kh - 1; // padded rows per band
  const bandLen = Cin * BH * Wp + kw; // + slack: discarded columns read up to kw − 1 past the end
  const ws = getWorkspace(bandLen + Cout * R * Wp);
  const band = ws.subarray(0, bandLen), acc = ws.subarray(bandLen);
  const be = backend();
  band.fill(0, Cin * BH * Wp); // slack
  for (let oy0 = 0; oy0 < Ho; oy0 += R) {
    const rows = Math.min(R, Ho - oy0), N = rows * Wp;
    // band[c, r, pl + ix] = x[c, oy0 − pt + r, ix] (zero outside the image)
    for (let c = 0; c < Cin; c++) {
      for (let r = 0; r < rows + kh - 1; r++) {
        const d = (c * BH + r) * Wp, iy = oy0 - pt + r;
        if (iy < 0 || iy >= H) { band.fill(0, d, d + Wp); continue; }
        if (pl > 0) band.fill(0, d, d + pl);
        band.set(X.subarray(xOff + (c * H + iy) * W, xOff + (c * H + iy + 1) * W), d + pl);
        if (g.pr > 0) band.fill(0, d + pl + W, d + Wp);
      }
    }
    for (let ki = 0; ki < kh; ki++) for (let kj = 0; kj < kw; kj++) {
      const t = ki * kw + kj;
      be.sgemm(false, false, Cout, N, Cin, 1, stacked, t * Cout * Cin, Cin, band, ki * Wp + kj, BH * Wp, t === 0 ? 0 : 1, acc, 0, N);
    }
    for (let co = 0; co < Cout; co++) {
      const bv = bias ? bias[co] : 0;
      for (let r = 0; r < rows; r++) {
        const a = co * N + r * Wp, o = outOff + co * P + (oy0 + r) * Wo;
        if (bv === 0) out.set(acc.subarray(a, a + Wo), o);
        else for (let ox = 0; ox < Wo; ox++) out[o + ox] = acc[a + ox] + bv;
      }
    }
  }
}

/**
 * Output-side forward for one batch item (stride 1): for a band of output rows, Z[tap·Cout + co, pixel] =
 * stacked · x[:, input rows of the band] (one GEMM), then out[co, oy, ox] += Z[tap, co, oy − pt + ki, ox − pl + kj]
 * over the valid taps. `out` must already hold the bias (or zeros).
 */
function forwardOutputSide(X: Float32Array, xOff: number, stacked: Float32Array, g: Geometry, out: Float32Array, outOff: number): void {
  const { Cin, H, W, Cout, kh, kw, pt, pl, Ho, Wo, P } = g;
  const T = kh * kw;
  const R = Math.max(1, Math.min(Ho, Math.floor(chunkFloats / (T * Cout * W)) - kh + 1));
  const be = backend();
  const Z = getWorkspace(T * Cout * Math.min(H, R + kh - 1) * W);
  for (let oy0 = 0; oy0 < Ho; oy0 += R) {
    const rows = Math.min(R, Ho - oy0);
    const iyLo = Math.max(0, oy0 - pt), iyHi = Math.min(H, oy0 + rows - 1 - pt + kh);
    if (iyHi <= iyLo) continue; // band sees only padding
    const nIn = (iyHi - iyLo) * W;
    be.sgemm(false, false, T * Cout, nIn, Cin, 1, stacked, 0, Cin, X, xOff + iyLo * W, H * W, 0, Z, 0, nIn);
    for (let ki = 0; ki < kh; ki++) for (let kj = 0; kj < kw; kj++) {
      const [lo, hi] = validRange(g, kj);
      const shift = kj - pl, t = ki * kw + kj;
      for (let co = 0; co < Cout; co++) {
        const zb = (t * Cout + co) * nIn, ob = outOff + co * P;
        for (let oy = oy0; oy < oy0 + rows; oy++) {
          const iy = oy - pt + ki;
          if (iy < iyLo || iy >= iyHi) continue;
          const z = zb + (iy - iyLo) * W + shift, o = ob + oy * Wo;
          for (let ox = lo; ox < hi; ox++) out[o + ox] += Z[z + ox];
        }
      }
    }
  }
}

/** Output rows per im2col band under the workspace bound. */
function bandRows(g: Geometry): number {
  return Math.max(1, Math.min(g.Ho, Math.floor(chunkFloats / (g.K * g.Wo))));
}

/**
 * conv2d(x [B, Cin, H, W], w [Cout, Cin, kh, kw], bias [Cout] | null) → [B, Cout, Ho, Wo], with
 * Ho = ⌊(H + top + bottom − kh)/stride⌋ + 1 (likewise Wo). Records 2·B·Cout·Ho·Wo·Cin·kh·kw FLOPs;
 * under dry-run only the output is allocated (bias not added).
 */
export function conv2d(x: Tensor, w: Tensor, bias: Tensor | null, opts: Conv2dOptions = {}): Tensor {
  const X = assertFloat(x, 'conv2d'), Wt = assertFloat(w, 'conv2d');
  const g = geometry(x, w, bias, opts);
  const { B, Cin, Cout, K, P, Wo } = g;
  const path = convPath(g), pointwise = path === 'pointwise';
  const out = new Float32Array(B * Cout * P);
  recordFlops(2 * B * Cout * P * K, w);
  const be = backend();
  const Bias = bias ? assertFloat(bias, 'conv2d') : null;
  // the GEMMs accumulate onto the bias (beta = 1) or overwrite (beta = 0)
  const beta = Bias ? 1 : 0;
  const shifted = path === 'shifted' && K > 0; // adds the bias itself
  if (!isDryRun() && Bias && !shifted) for (let b = 0; b < B; b++) for (let co = 0; co < Cout; co++) out.fill(Bias[co], (b * Cout + co) * P, (b * Cout + co + 1) * P);
  if (!isDryRun() && out.length > 0 && K > 0) {
    if (pointwise) {
      for (let b = 0; b < B; b++) be.sgemm(false, false, Cout, P, Cin, 1, Wt, 0, Cin, X, b * Cin * P, P, beta, out, b * Cout * P, P);
    } else if (path === 'outputSide') {
      const stacked = stackTaps(Wt, g);
      for (let b = 0; b < B; b++) forwardOutputSide(X, b * Cin * g.H * g.W, stacked, g, out, b * Cout * P);
    } else if (shifted) {
      const stacked = stackTaps(Wt, g);
      for (let b = 0; b < B; b++) forwardShifted(X, b * Cin * g.H * g.W, stacked, Bias, g, out, b * Cout * P);
    } else {
      const R = bandRows(g);
      const cols = getWorkspace(K * R * Wo);
      for (let b = 0; b < B; b++) {
        for (let oy0 = 0; oy0 < g.Ho; oy0 += R) {
          const rows = Math.min(R, g.Ho - oy0), N = rows * Wo;
          im2col(X, b * Cin * g.H * g.W, g, oy0, rows, cols);
          be.sgemm(false, false, Cout, N, K, 1, Wt, 0, K, cols, 0, N, beta, out, b * Cout * P + oy0 * Wo, P);
        }
      }
    }
  }
  const inputs = bias ? [x, w, bias] : [x, w];
  return result(out, [B, Cout, g.Ho, g.Wo], 'conv2d', inputs, (gout) => {
    const gX = x.requiresGrad ? new Float32Array(X.length) : null;
    const gW = w.requiresGrad ? new Float32Array(Wt.length) : null;
    let gB: Float32Array | null = null;
    if (bias && bias.requiresGrad) {
      gB = new Float32Array(Cout);
      for (let b = 0; b < B; b++) for (let co = 0; co < Cout; co++) {
        let s = 0;
        const o = (b * Cout + co) * P;
        for (let i = 0; i < P; i++) s += gout[o + i];
        gB[co] += s;
      }
    }
    if ((gX || gW) && K > 0 && P > 0) {
      if (pointwise) {
        for (let b = 0; b < B; b++) {
          // dW += g[b]·x[b]ᵀ ; dx[b] = Wᵀ·g[b]
          if (gW) be.sgemm(false, true, Cout, Cin, P, 1, gout, b * Cout * P, P, X, b * Cin * P, P, 1, gW, 0, Cin);
          if (gX) be.sgemm(true, false, Cin, P, Cout, 1, Wt, 0, Cin, gout, b * Cout * P, P, 0, gX, b * Cin * P, P);
        }
      } else {
        const R = bandRows(g);
        const cols = getWorkspace(K * R * Wo);
        const HWin = g.H * g.W;
        for (let b = 0; b < B; b++) {
          for (let oy0 = 0; oy0 < g.Ho; oy0 += R) {
            const rows = Math.min(R, g.Ho - oy0), N = rows * Wo, gOff = b * Cout * P + oy0 * Wo;
            if (gW) {
              im2col(X, b * Cin * HWin, g, oy0, rows, cols);
              be.sgemm(false, true, Cout, K, N, 1, gout, gOff, P, cols, 0, N, 1, gW, 0, K);
            }
            if (gX) {
              // dcols = Wᵀ·g, then scatter back
              be.sgemm(true, false, K, N, Cout, 1, Wt, 0, K, gout, gOff, P, 0, cols, 0, N);
              col2im(cols, gX, b * Cin * HWin, g, oy0, rows);
            }
          }
        }
      }
    }
    return bias ? [gX, gW, gB] : [gX, gW];
  });
}
