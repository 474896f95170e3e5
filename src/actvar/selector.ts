/**
 * The gated token selector G(·) of one block (paper §3.3, "Adaptive token activation").
 *
 * p_s = sigmoid(Linear(C→1)(ln(x))) per token, where x is the block input q_{m−1} and ln is the
 * block's own LayerNorm (no affine, eps 1e-6, docs/VAR.md §3.2). Each row of the batch keeps its
 * K_t = round(rate·l) most probable tokens (top-k per row: the CFG-doubled batch's conditional and
 * unconditional rows each choose their own tokens).
 *
 * Why Linear(C→1) + sigmoid and not a small MLP: (1) cost — the gate runs on every token of the
 * scale, selected or not, so its 2·l·C FLOPs are pure overhead (it is the "1" in paper eq. (12)'s
 * 2·L·H·(1 + (1−η)·N) overhead term, which is exactly a C→1 linear layer); a C→C/4→1 MLP would cost
 * C/4 times more, ~2% of the block at C = 1024 and a large fraction of the saving at low η.
 * (2) training — the selector is supervised by a top-k pseudo-label over ‖Δx‖ (paper eq. (10–11)), a ranking
 * target for which a linear score over normalised features is a good first model and can be fitted
 * in closed form for a training-free start (init.ts). Why ln(x) rather than raw x: the residual
 * stream's scale varies strongly between tokens and blocks while a block's update depends on the
 * normalised token, which is what its attention and FFN read; a linear score of ln(x) is
 * scale-invariant and better conditioned for the least-squares fit.
 *
 * Training (distill.ts): the distribution over a row's l tokens that paper eq. (11) compares to the
 * pseudo-label is softmax of these logits over the row (monotone in the logits, like the sigmoid, so it
 * ranks tokens exactly as the inference top-K_t does); the sigmoid itself is not used in training.
 *
 * Parameters: `weight` (1, C), `bias` (1) — stored as `actvar.blocks.{i}.selector.{weight,bias}`.
 * FLOPs: 2·l·C per row, category 'selector'.
 */
import { Tensor, linear, flopsTag, noGrad, sigmoid, layerNorm, topk, gateScores } from '../tensor/index.js';

/** The selector's input: the block's LayerNorm of x (no affine, eps 1e-6). */
export function selectorInput(x: Tensor): Tensor { return layerNorm(x, 1e-6); }

export class Selector {
  constructor(readonly weight: Tensor, readonly bias: Tensor) {
    if (weight.ndim !== 2 || weight.shape[0] !== 1) throw new RangeError(`selector weight must be (1, C), got [${weight.shape.join(', ')}]`);
    if (bias.size !== 1) throw new RangeError(`selector bias must have one entry, got [${bias.shape.join(', ')}]`);
    flopsTag(weight, 'selector');
  }

  get width(): number { return this.weight.shape[1]; }

  static zeros(C: number): Selector {
    return new Selector(new Tensor(new Float32Array(C), [1, C]), new Tensor(new Float32Array(1), [1]));
  }

  /** Gate logits [...] for normalised tokens xn [..., C] (differentiable). */
  logits(xn: Tensor): Tensor {
    return linear(xn, this.weight, this.bias);
  }

  /** p_s = sigmoid(logits), shape [...,1]. */
  probs(xn: Tensor): Tensor { return sigmoid(this.logits(xn)); }

  /**
   * Hard selection for inference. xn is [R, l, C] (normalised block input); returns, per row, the K
   * selected token positions in ascending order (R × K, row-major) and the logits (R × l).
   * Ties → lower position (in a dry run every score is equal: the first K positions).
   */
  select(xn: Tensor, K: number): { index: Int32Array; logits: Float32Array } {
    if (xn.ndim !== 3) throw new RangeError(`selector.select expects [rows, tokens, C], got [${xn.shape.join(', ')}]`);
    const [R, l] = xn.shape;
    checkK(K, l);
    const lg = noGrad(() => this.logits(xn)).f32;
    return { index: topKPositions(lg, R, l, K), logits: lg };
  }

  /**
   * `select(selectorInput(x), K)` fused for inference: x is the raw block input [R, l, C]. The gate
   * of a normalised token is w·(x − μ)/σ + b = (w·x − μ·Σw)/σ + b, so one pass over x gives μ, σ and
   * w·x per token without materialising ln(x) (same FLOPs, 2·l·C per row, category 'selector').
   */
  selectRaw(x: Tensor, K: number, eps: number): { index: Int32Array; logits: Float32Array } {
    if (x.ndim !== 3) throw new RangeError(`selector.selectRaw expects [rows, tokens, C], got [${x.shape.join(', ')}]`);
    const [R, l, C] = x.shape;
    if (C !== this.width) throw new RangeError(`selector: tokens have ${C} features, the gate expects ${this.width}`);
    checkK(K, l);
    const lg = new Float32Array(R * l);
    gateScores(x.f32, R * l, C, this.weight.f32, this.bias.f32[0], eps, lg, this.weight);
    return { index: topKPositions(lg, R, l, K), logits: lg };
  }
}

function checkK(K: number, l: number): void {
  if (!Number.isInteger(K) || K < 1 || K > l) throw new RangeError(`selector: K_t must be in 1..${l}, got ${K}`);
}

/** Per row of an (R × l) score matrix, the K best positions, sorted ascending. */
export function topKPositions(scores: Float32Array, R: number, l: number, K: number): Int32Array {
  const index = new Int32Array(R * K);
  if (K === l) {
    for (let r = 0; r < R; r++) for (let k = 0; k < K; k++) index[r * K + k] = k;
    return index;
  }
  const t = noGrad(() => topk(new Tensor(scores, [R, l]), K, -1)).indices.i32;
  for (let r = 0; r < R; r++) {
    const row = index.subarray(r * K, r * K + K);
    row.set(t.subarray(r * K, r * K + K));
    row.sort();
  }
  return index;
}
