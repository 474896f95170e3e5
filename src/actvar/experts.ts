/**
 * The FFN as a mixture of experts (paper §3.2, paper eq. (2–4)).
 *
 * A VAR FFN is F(x) = δ(x·W₁ᵀ + b₁)·W₂ᵀ + b₂ with fc1.weight W₁ (D_h, C), fc2.weight W₂ (C, D_h)
 * (PyTorch layout, docs/VAR.md §3.4) and δ = GELU(tanh). Because x·W₁ᵀ splits over the hidden
 * units (paper eq. (2)), cutting the D_h hidden units into N equal groups of dₑ = D_h/N gives N experts
 *   eᵢ(x) = δ(x·W₁ⁱᵀ + b₁ⁱ)·W₂ⁱᵀ,   W₁ⁱ = rows of fc1.weight in group i,  W₂ⁱ = the matching columns of fc2.weight,
 * and F(x) = Σᵢ eᵢ(x) + b₂ exactly. The output bias b₂ is added ONCE. (paper eq. (4) as printed writes
 * Σ_{j∈E}(δ(xW₁ʲ + b₁ʲ)W₂ʲ + b₂), which would add b₂ once per active expert, K_w times; the text
 * above it — "the bias term b₂ remains unchanged" — and the equivalence at full activation both
 * require adding it once, which is what we do.)
 *
 * Grouping: 'contiguous' puts hidden unit j in expert ⌊j/dₑ⌋. 'coactivation' first permutes the
 * hidden units (a MoEfication-style balanced clustering of units that fire together, see
 * `coactivationPermutation`); a permutation of hidden units does not change F, so the dense model is
 * still reproduced exactly at full activation.
 *
 * Execution (paper §3.4) is grouped by expert and never dense-then-mask: the tokens are counting-sorted by
 * expert; for each expert we gather its tokens (TypedArray.set of contiguous rows), run
 * GEMM(fc1 slice) → GELU → GEMM(fc2 slice) on exactly those rows, and scatter-add the result.
 * Weight slices are never copied per call: with contiguous grouping, expert i's fc1 block is the
 * contiguous row range [i·dₑ, (i+1)·dₑ) of fc1.weight and its fc2 block is the column range of
 * fc2.weight, addressed in place through the sgemm offset + leading dimension (ld = D_h), so the
 * expert FFN shares the VAR's own weight tensors (no extra memory, gradients reach the VAR's
 * parameters). With a permutation the permuted blocks are materialised once, at wrap time.
 */
import {
  Tensor, Rng, flopsTag, sgemm, expertFFN, geluInPlace, setBiasRows,
} from '../tensor/index.js';

export { groupByExpert, runExperts, type ExpertGroups, type ExpertJob } from '../tensor/index.js';

export interface ExpertFFNWeights {
  /** fc1.weight (D_h, C). */
  fc1Weight: Tensor;
  /** fc1.bias (D_h). */
  fc1Bias: Tensor;
  /** fc2.weight (C, D_h). */
  fc2Weight: Tensor;
  /** fc2.bias (C). */
  fc2Bias: Tensor;
}

export class ExpertFFN {
  readonly C: number;
  readonly hidden: number;
  readonly N: number;
  /** dₑ = D_h / N hidden units per expert. */
  readonly de: number;
  /** Expert-ordered fc1 weight (D_h, C): expert e = rows [e·dₑ, (e+1)·dₑ). The VAR's own tensor when unpermuted. */
  readonly w1: Tensor;
  readonly b1: Tensor;
  /** Expert-ordered fc2 weight (C, D_h): expert e = columns [e·dₑ, (e+1)·dₑ), leading dimension D_h. */
  readonly w2: Tensor;
  readonly b2: Tensor;
  /** New hidden index i holds the original unit perm[i]; null = contiguous (identity). */
  readonly perm: Int32Array | null;

  constructor(w: ExpertFFNWeights, N: number, perm: Int32Array | null = null) {
    const [H, C] = w.fc1Weight.shape;
    if (w.fc1Weight.ndim !== 2 || w.fc2Weight.ndim !== 2 || w.fc2Weight.shape[0] !== C || w.fc2Weight.shape[1] !== H) {
      throw new RangeError(`ExpertFFN: expected fc1.weight (D_h, C) and fc2.weight (C, D_h), got [${w.fc1Weight.shape}] and [${w.fc2Weight.shape}]`);
    }
    if (w.fc1Bias.size !== H || w.fc2Bias.size !== C) throw new RangeError(`ExpertFFN: fc1.bias must have ${H} and fc2.bias ${C} entries, got ${w.fc1Bias.size} and ${w.fc2Bias.size}`);
    if (!Number.isInteger(N) || N < 1 || H % N !== 0) throw new RangeError(`ExpertFFN: ${N} experts do not divide the hidden width ${H} into equal parts`);
    this.C = C; this.hidden = H; this.N = N; this.de = H / N;
    if (perm) {
      checkPermutation(perm, H);
      const W1 = w.fc1Weight.f32, B1 = w.fc1Bias.f32, W2 = w.fc2Weight.f32;
      const w1 = new Float32Array(H * C), b1 = new Float32Array(H), w2 = new Float32Array(C * H);
      for (let i = 0; i < H; i++) {
        const j = perm[i];
        w1.set(W1.subarray(j * C, j * C + C), i * C);
        b1[i] = B1[j];
      }
      for (let r = 0; r < C; r++) { const o = r * H; for (let i = 0; i < H; i++) w2[o + i] = W2[o + perm[i]]; }
      this.w1 = new Tensor(w1, [H, C], w.fc1Weight.requiresGrad);
      this.b1 = new Tensor(b1, [H], w.fc1Bias.requiresGrad);
      this.w2 = new Tensor(w2, [C, H], w.fc2Weight.requiresGrad);
      this.perm = perm.slice();
    } else {
      this.w1 = w.fc1Weight; this.b1 = w.fc1Bias; this.w2 = w.fc2Weight; this.perm = null;
    }
    this.b2 = w.fc2Bias;
    flopsTag(this.w1, 'ffn'); flopsTag(this.w2, 'ffn');
  }

  /**
   * Σ_{e ∈ route(t)} eₑ(x_t) + b₂ for every token t. x is [..., C] with n rows; `route` is the
   * n × K table of expert ids (row-major, distinct within a row). Differentiable in x and the weights.
   */
  forward(x: Tensor, route: Int32Array, K: number): Tensor {
    return expertFFN(x, this.w1, this.b1, this.w2, this.b2, route, K, this.N);
  }

  /** All experts for every token: the dense FFN (used by tests and calibration). */
  forwardAll(x: Tensor): Tensor {
    const n = x.size / this.C;
    const route = new Int32Array(n * this.N);
    for (let t = 0; t < n; t++) for (let e = 0; e < this.N; e++) route[t * this.N + e] = e;
    return this.forward(x, route, this.N);
  }

  /**
   * Calibration statistics of every expert on every token (runs all experts): per token t and
   * expert e, ‖eₑ(x_t)‖ and ⟨S_t, eₑ(x_t)⟩ with S_t = Σₑ eₑ(x_t) (n × N each), ‖S_t‖² (n), and S
   * itself (n × C, the dense FFN output without b₂). x is n × C.
   */
  expertStats(x: Float32Array, n: number): { norms: Float32Array; dots: Float32Array; totalNorm2: Float32Array; total: Float32Array } {
    const { C, N, de, hidden: H } = this;
    const W1 = this.w1.f32, B1 = this.b1.f32, W2 = this.w2.f32;
    const h = new Float32Array(n * de), outputs = new Float32Array(N * n * C), total = new Float32Array(n * C);
    const norms = new Float32Array(n * N), dots = new Float32Array(n * N), totalNorm2 = new Float32Array(n);
    for (let e = 0; e < N; e++) {
      setBiasRows(h, B1, e * de, n, de);
      sgemm(false, true, n, de, C, 1, x, 0, C, W1, e * de * C, C, 1, h, 0, de);
      geluInPlace(h, h.length);
      sgemm(false, true, n, C, de, 1, h, 0, de, W2, e * de, H, 0, outputs, e * n * C, C);
      for (let i = 0; i < n * C; i++) total[i] += outputs[e * n * C + i];
    }
    for (let t = 0; t < n; t++) {
      let s2 = 0;
      for (let c = 0; c < C; c++) s2 += total[t * C + c] ** 2;
      totalNorm2[t] = s2;
      for (let e = 0; e < N; e++) {
        const o = e * n * C + t * C;
        let nn = 0, dd = 0;
        for (let c = 0; c < C; c++) { const v = outputs[o + c]; nn += v * v; dd += v * total[t * C + c]; }
        norms[t * N + e] = Math.sqrt(nn); dots[t * N + e] = dd;
      }
    }
    return { norms, dots, totalNorm2, total };
  }

  /** Hidden activations δ(x·W₁ᵀ + b₁) (n × D_h, in this FFN's expert order) of x (n × C). */
  hiddenActivations(x: Float32Array, n: number): Float32Array {
    const { C, hidden: H } = this;
    const h = new Float32Array(n * H);
    for (let t = 0; t < n; t++) h.set(this.b1.f32, t * H);
    sgemm(false, true, n, H, C, 1, x, 0, C, this.w1.f32, 0, C, 1, h, 0, H);
    geluInPlace(h, h.length);
    return h;
  }
}

function checkPermutation(perm: Int32Array, H: number): void {
  if (perm.length !== H) throw new RangeError(`the expert permutation has ${perm.length} entries, the FFN has ${H} hidden units`);
  const seen = new Uint8Array(H);
  for (let i = 0; i < H; i++) {
    const j = perm[i];
    if (!Number.isInteger(j) || j < 0 || j >= H || seen[j]) throw new RangeError(`the expert permutation is not a permutation of 0..${H - 1} (entry ${i} = ${j})`);
    seen[j] = 1;
  }
}

/**
 * MoEfication-style grouping (Zhang et al., "MoEfication: Transformer Feed-forward Layers are
 * Mixtures of Experts", 2022 — the idea, not their code): hidden units that are active on the same
 * tokens should sit in the same expert, so that the few experts a token runs cover most of its
 * active units. Each unit j gets a profile over T calibration tokens, p_j[t] = max(δ(h_j(x_t)), 0)
 * (how strongly it fires), L2-normalised; a balanced k-means (cosine similarity, every cluster
 * exactly dₑ = D_h/N units) groups the profiles. Balanced assignment is greedy: all (unit, cluster)
 * pairs are visited by decreasing similarity and a unit goes to the best cluster with room left.
 *
 * `acts` is T × D_h (row t = hidden activations of token t). Returns the permutation: expert e holds
 * the original units perm[e·dₑ .. (e+1)·dₑ), ascending within an expert. Deterministic for a seed.
 */
export function coactivationPermutation(acts: Float32Array, T: number, H: number, N: number, opts: { iters?: number; seed?: number } = {}): Int32Array {
  if (acts.length !== T * H) throw new RangeError(`coactivationPermutation: ${acts.length} activations, expected T·D_h = ${T}·${H}`);
  if (H % N !== 0) throw new RangeError(`coactivationPermutation: ${N} experts do not divide ${H} hidden units`);
  const de = H / N, iters = opts.iters ?? 8;
  // unit profiles, H × T, L2-normalised
  const P = new Float32Array(H * T);
  for (let t = 0; t < T; t++) for (let j = 0; j < H; j++) { const v = acts[t * H + j]; P[j * T + t] = v > 0 ? v : 0; }
  for (let j = 0; j < H; j++) {
    let s = 0;
    for (let t = 0; t < T; t++) s += P[j * T + t] * P[j * T + t];
    const r = s > 0 ? 1 / Math.sqrt(s) : 0;
    for (let t = 0; t < T; t++) P[j * T + t] *= r;
  }
  const rng = new Rng(opts.seed ?? 0);
  const cent = new Float32Array(N * T);
  // init (farthest point, as k-means++ without the sampling): a random first unit, then each next
  // centroid is the unit least similar to the centroids chosen so far
  const closest = new Float64Array(H).fill(-Infinity);
  let pick = rng.int(H);
  for (let e = 0; e < N; e++) {
    cent.set(P.subarray(pick * T, pick * T + T), e * T);
    let worst = Infinity, next = 0;
    for (let j = 0; j < H; j++) {
      let s = 0;
      for (let t = 0; t < T; t++) s += P[j * T + t] * P[pick * T + t];
      if (s > closest[j]) closest[j] = s;
      if (closest[j] < worst) { worst = closest[j]; next = j; }
    }
    pick = next;
  }
  const assign = new Int32Array(H);
  const S = new Float32Array(H * N);
  const pairIdx = new Uint32Array(H * N);
  for (let it = 0; it < iters; it++) {
    sgemm(false, true, H, N, T, 1, P, 0, T, cent, 0, T, 0, S, 0, N);
    for (let i = 0; i < H * N; i++) pairIdx[i] = i;
    // decreasing similarity, ties → lower (unit, cluster) index
    const keys = Array.from(pairIdx);
    keys.sort((a, b) => (S[b] - S[a]) || (a - b));
    const room = new Int32Array(N).fill(de), done = new Uint8Array(H);
    let left = H;
    for (const k of keys) {
      if (left === 0) break;
      const j = Math.floor(k / N), e = k - j * N;
      if (done[j] || room[e] === 0) continue;
      assign[j] = e; done[j] = 1; room[e]--; left--;
    }
    cent.fill(0);
    for (let j = 0; j < H; j++) { const e = assign[j]; for (let t = 0; t < T; t++) cent[e * T + t] += P[j * T + t]; }
    for (let e = 0; e < N; e++) {
      let s = 0;
      for (let t = 0; t < T; t++) s += cent[e * T + t] ** 2;
      const r = s > 0 ? 1 / Math.sqrt(s) : 0;
      for (let t = 0; t < T; t++) cent[e * T + t] *= r;
    }
  }
  const perm = new Int32Array(H), fill = new Int32Array(N);
  for (let j = 0; j < H; j++) { const e = assign[j]; perm[e * de + fill[e]++] = j; }
  return perm;
}
