/**
 * Training-free initialisation of the routers and selectors, so that ActVAR runs before any
 * distillation (paper supplementary §6) exists, and as a baseline for it.
 *
 * Two levels:
 *
 * 1. Data-free (`routerFromWeights`, `Selector.zeros`), instant. The router of block i gets, for
 *    expert e, W_r[e] = (1/dₑ)·Σ_{j∈e} ‖W₂[:, j]‖·W₁[j, :] and b_r[e] = (1/dₑ)·Σ_{j∈e} ‖W₂[:, j]‖·b₁[j]:
 *    its logit is the mean pre-activation of the expert's hidden units weighted by how much each unit
 *    can move the output — a linear surrogate of ‖eₑ(x)‖ = ‖Σ_j δ(h_j)·W₂[:, j]‖ that replaces δ(h)
 *    by h. Cheap and better than uniform, but crude (it ignores GELU's one-sidedness and the cancellation
 *    between units). There is no comparable data-free signal for the selector: with zero weights every
 *    token scores the same and ties go to the lower position (raster order). Use this level only for
 *    speed and FLOPs measurements, where the choice does not matter.
 *
 * 2. Calibration (`ActVAR.calibrate`, default for generation): run the dense VAR on a few
 *    samples and fit both gates by ridge least squares, in closed form, to the very quantities the
 *    paper's distillation targets are built from:
 *    - selector (paper eq. (10): tokens ranked by d_t = ‖q*_m − q_{m−1}‖, the change the full block makes):
 *      regress log ‖Δx_t‖ on ln(x_t), both centred within each row (only the ranking inside a row
 *      matters for top-K_t, so row-level offsets are removed rather than fitted);
 *    - router (paper eq. (5): experts ranked by the MSE between the expert's output and the teacher FFN's):
 *      with S = Σₑ eₑ(x) the dense FFN output (without b₂), d_e = ‖S − eₑ‖² = ‖S‖² − (2⟨S, eₑ⟩ − ‖eₑ‖²), so
 *      the pseudo-label ranking is that of s_e = (2⟨S, eₑ⟩ − ‖eₑ‖²)/‖S‖² (normalised per token, which
 *      keeps the ranking and makes tokens of different magnitude count alike); regress s_e, centred
 *      over experts, on the FFN input.
 *    The fits are a linear model's best approximation of the pseudo-labels, i.e. a closed-form
 *    stand-in for the first training stage, and give trained gates a good starting point.
 *    A block's features are the same tokens whatever the activation rates, so one calibration serves
 *    every rate setting.
 */
import { Tensor, sgemm } from '../tensor/index.js';
import { Router } from './router.js';
import { Selector } from './selector.js';
import type { ExpertFFN } from './experts.js';

/** The data-free router of an expert-split FFN (see the header). */
export function routerFromWeights(ffn: ExpertFFN): Router {
  const { C, N, de, hidden: H } = ffn;
  const W1 = ffn.w1.f32, B1 = ffn.b1.f32, W2 = ffn.w2.f32;
  const colNorm = new Float64Array(H);
  for (let r = 0; r < C; r++) for (let j = 0; j < H; j++) colNorm[j] += W2[r * H + j] ** 2;
  for (let j = 0; j < H; j++) colNorm[j] = Math.sqrt(colNorm[j]);
  const w = new Float32Array(N * C), b = new Float32Array(N);
  const acc = new Float64Array(C);
  for (let e = 0; e < N; e++) {
    acc.fill(0);
    let bb = 0;
    for (let j = e * de; j < (e + 1) * de; j++) {
      const s = colNorm[j];
      for (let c = 0; c < C; c++) acc[c] += s * W1[j * C + c];
      bb += s * B1[j];
    }
    for (let c = 0; c < C; c++) w[e * C + c] = acc[c] / de;
    b[e] = bb / de;
  }
  return new Router(new Tensor(w, [N, C]), new Tensor(b, [N]));
}

/**
 * Streaming normal equations XᵀX, XᵀY for a ridge least-squares fit with `dim` features and `outs`
 * outputs. Accumulated with sgemm in float32 per batch, summed in float64 across batches.
 */
export class NormalEquations {
  readonly xtx: Float64Array;
  readonly xty: Float64Array;
  samples = 0;
  private bufA = new Float32Array(0);
  private bufB = new Float32Array(0);

  constructor(readonly dim: number, readonly outs: number) {
    this.xtx = new Float64Array(dim * dim);
    this.xty = new Float64Array(dim * outs);
  }

  /** Add n samples: X (n × dim), Y (n × outs), row-major. */
  add(X: Float32Array, Y: Float32Array, n: number): void {
    const d = this.dim, o = this.outs;
    if (X.length < n * d || Y.length < n * o) throw new RangeError(`NormalEquations.add: expected ${n}×${d} features and ${n}×${o} targets`);
    if (n === 0) return;
    if (this.bufA.length < d * d) this.bufA = new Float32Array(d * d);
    if (this.bufB.length < d * o) this.bufB = new Float32Array(d * o);
    sgemm(true, false, d, d, n, 1, X, 0, d, X, 0, d, 0, this.bufA, 0, d);
    sgemm(true, false, d, o, n, 1, X, 0, d, Y, 0, o, 0, this.bufB, 0, o);
    for (let i = 0; i < d * d; i++) this.xtx[i] += this.bufA[i];
    for (let i = 0; i < d * o; i++) this.xty[i] += this.bufB[i];
    this.samples += n;
  }

  /**
   * Solve (XᵀX + λI)W = XᵀY with λ = ridge·tr(XᵀX)/dim (Cholesky in float64). Returns W (dim × outs).
   */
  solve(ridge = 1e-2): Float64Array {
    const d = this.dim, o = this.outs;
    if (this.samples === 0) throw new Error('least-squares fit without samples: the calibration saw no tokens for this block');
    const A = Float64Array.from(this.xtx);
    let tr = 0;
    for (let i = 0; i < d; i++) tr += A[i * d + i];
    const lam = Math.max(ridge * tr / d, 1e-8);
    for (let i = 0; i < d; i++) A[i * d + i] += lam;
    choleskyInPlace(A, d);
    const W = Float64Array.from(this.xty);
    // forward then backward substitution, all right-hand sides at once
    for (let i = 0; i < d; i++) {
      for (let k = 0; k < i; k++) { const l = A[i * d + k]; if (l !== 0) for (let c = 0; c < o; c++) W[i * o + c] -= l * W[k * o + c]; }
      const r = 1 / A[i * d + i];
      for (let c = 0; c < o; c++) W[i * o + c] *= r;
    }
    for (let i = d - 1; i >= 0; i--) {
      for (let k = i + 1; k < d; k++) { const l = A[k * d + i]; if (l !== 0) for (let c = 0; c < o; c++) W[i * o + c] -= l * W[k * o + c]; }
      const r = 1 / A[i * d + i];
      for (let c = 0; c < o; c++) W[i * o + c] *= r;
    }
    return W;
  }
}

/** Lower Cholesky factor of a symmetric positive definite d×d matrix, in place (row-major lower triangle). */
export function choleskyInPlace(A: Float64Array, d: number): void {
  for (let j = 0; j < d; j++) {
    const rj = j * d;
    let s = A[rj + j];
    for (let k = 0; k < j; k++) s -= A[rj + k] * A[rj + k];
    if (!(s > 0)) throw new Error(`Cholesky: the matrix is not positive definite (pivot ${j} = ${s})`);
    const ljj = Math.sqrt(s);
    A[rj + j] = ljj;
    const inv = 1 / ljj;
    for (let i = j + 1; i < d; i++) {
      const ri = i * d;
      let t = A[ri + j];
      for (let k = 0; k < j; k++) t -= A[ri + k] * A[rj + k];
      A[ri + j] = t * inv;
    }
  }
}

/** Calibration statistics of one block. */
export class BlockCalibration {
  /** Router: features = FFN input + a constant 1 (bias), outputs = N expert scores. */
  readonly router: NormalEquations;
  /** Selector: features = ln(x) centred within the row, output = log‖Δx‖ centred within the row. */
  readonly selector: NormalEquations;
  /** A reservoir of FFN inputs (rows of C) for co-activation grouping. */
  readonly ffnInputs: Float32Array;
  ffnInputCount = 0;
  private seen = 0;

  constructor(readonly C: number, readonly N: number, readonly reservoir = 0, private seed = 1) {
    this.router = new NormalEquations(C + 1, N);
    this.selector = new NormalEquations(C, 1);
    this.ffnInputs = new Float32Array(reservoir * C);
  }

  /**
   * Selector samples of one row: xn (l × C) normalised block input, delta (l) the norm of the change
   * the dense block made to each token.
   */
  addSelectorRow(xn: Float32Array, off: number, delta: Float32Array, l: number): void {
    const C = this.C;
    const X = new Float32Array(l * C), Y = new Float32Array(l);
    const mean = new Float64Array(C);
    for (let t = 0; t < l; t++) for (let c = 0; c < C; c++) mean[c] += xn[off + t * C + c];
    for (let c = 0; c < C; c++) mean[c] /= l;
    let my = 0;
    for (let t = 0; t < l; t++) { Y[t] = Math.log(Math.max(delta[t], 1e-20)); my += Y[t]; }
    my /= l;
    for (let t = 0; t < l; t++) {
      Y[t] -= my;
      for (let c = 0; c < C; c++) X[t * C + c] = xn[off + t * C + c] - mean[c];
    }
    this.selector.add(X, Y, l);
  }

  /**
   * Router samples: h (n × C) FFN inputs, `norms`/`dots` (n × N): ‖eₑ(h_t)‖ and ⟨S_t, eₑ(h_t)⟩, `sNorm2` (n) ‖S_t‖².
   */
  addRouterSamples(h: Float32Array, n: number, norms: Float32Array, dots: Float32Array, sNorm2: Float32Array): void {
    const C = this.C, N = this.N, d = C + 1;
    const X = new Float32Array(n * d), Y = new Float32Array(n * N);
    for (let t = 0; t < n; t++) {
      X.set(h.subarray(t * C, t * C + C), t * d);
      X[t * d + C] = 1;
      const s2 = Math.max(sNorm2[t], 1e-20);
      let m = 0;
      for (let e = 0; e < N; e++) { const v = (2 * dots[t * N + e] - norms[t * N + e] ** 2) / s2; Y[t * N + e] = v; m += v; }
      m /= N;
      for (let e = 0; e < N; e++) Y[t * N + e] -= m;
    }
    this.router.add(X, Y, n);
    // reservoir sampling of FFN inputs (deterministic LCG)
    for (let t = 0; t < n && this.reservoir > 0; t++) {
      this.seen++;
      let slot = -1;
      if (this.ffnInputCount < this.reservoir) slot = this.ffnInputCount++;
      else {
        this.seed = (Math.imul(this.seed, 1664525) + 1013904223) >>> 0;
        const j = this.seed % this.seen;
        if (j < this.reservoir) slot = j;
      }
      if (slot >= 0) this.ffnInputs.set(h.subarray(t * C, t * C + C), slot * C);
    }
  }

  /** The fitted router (weights N × C, bias N). */
  fitRouter(ridge = 1e-2): Router {
    const C = this.C, N = this.N, W = this.router.solve(ridge);
    const w = new Float32Array(N * C), b = new Float32Array(N);
    for (let e = 0; e < N; e++) {
      for (let c = 0; c < C; c++) w[e * C + c] = W[c * N + e];
      b[e] = W[C * N + e];
    }
    return new Router(new Tensor(w, [N, C]), new Tensor(b, [N]));
  }

  /** The fitted selector (weight 1 × C, bias 0: only the ranking within a row matters). */
  fitSelector(ridge = 1e-2): Selector {
    const W = this.selector.solve(ridge);
    return new Selector(new Tensor(Float32Array.from(W), [1, this.C]), new Tensor(new Float32Array(1), [1]));
  }
}
