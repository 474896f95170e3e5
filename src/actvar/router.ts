/**
 * The dynamic router R(·) of one block (paper §3.2, "Dynamic activation of weights"):
 * p_w = softmax(Linear(C→N)(x)) over the N experts, and the top-K_w experts (K_w = round(γ·N))
 * form each token's active set E. The router reads the FFN's input — the AdaLN-modulated,
 * LayerNormed token that the experts themselves see (docs/VAR.md §3.2) — so its decision is a
 * function of exactly what the experts will compute on.
 *
 * paper eq. (4) sums the selected experts' outputs without weighting them by p_w, so routing is a hard
 * choice at inference; the probabilities only matter at training time: the distillation loss (paper
 * eq. (6)), the load-balancing loss (paper eq. (7)) and the straight-through factor p_w/stopgrad(p_w)
 * that lets the token loss reach the router (teacher.ts, distill.ts). `logits()` is differentiable for that.
 *
 * Parameters: `weight` (N, C), `bias` (N) — stored as `actvar.blocks.{i}.router.{weight,bias}`.
 * FLOPs: 2·n·C·N, category 'router' (the (1−η)·N·2LH term of paper eq. (12)'s overhead).
 */
import { Tensor, linear, flopsTag, noGrad, softmax } from '../tensor/index.js';

export class Router {
  constructor(readonly weight: Tensor, readonly bias: Tensor) {
    if (weight.ndim !== 2) throw new RangeError(`router weight must be (N, C), got [${weight.shape.join(', ')}]`);
    if (bias.ndim !== 1 || bias.shape[0] !== weight.shape[0]) throw new RangeError(`router bias must be (${weight.shape[0]}), got [${bias.shape.join(', ')}]`);
    flopsTag(weight, 'router');
  }

  get experts(): number { return this.weight.shape[0]; }
  get width(): number { return this.weight.shape[1]; }

  static zeros(N: number, C: number): Router {
    return new Router(new Tensor(new Float32Array(N * C), [N, C]), new Tensor(new Float32Array(N), [N]));
  }

  /** Router logits [..., N] for tokens x [..., C] (differentiable). */
  logits(x: Tensor): Tensor {
    return linear(x, this.weight, this.bias);
  }

  /** p_w = softmax(logits) [..., N]. */
  probs(x: Tensor): Tensor { return softmax(this.logits(x), -1); }

  /**
   * Hard routing for inference: the top-K experts of every token (ordered by decreasing probability,
   * ties → lower expert index). Returns the n × K table of expert ids and the logits (n × N).
   * Softmax is monotone, so the top-K of the logits is the top-K of p_w; it is not computed here.
   */
  route(x: Tensor, K: number): { route: Int32Array; logits: Float32Array } {
    const N = this.experts;
    if (!Number.isInteger(K) || K < 1 || K > N) throw new RangeError(`router: K_w must be in 1..${N}, got ${K}`);
    const lg = noGrad(() => this.logits(x)).f32;
    const n = lg.length / N;
    return { route: topKRows(lg, n, N, K), logits: lg };
  }
}

/**
 * Per row of an (n × N) matrix, the indices of the K largest entries, decreasing, ties → lower index
 * (the order topk() in the tensor core uses). A selection by insertion into a K-long list: N is small.
 */
export function topKRows(v: Float32Array, n: number, N: number, K: number): Int32Array {
  const out = new Int32Array(n * K);
  const best = new Float64Array(K);
  for (let t = 0; t < n; t++) {
    const b = t * N, ob = t * K;
    let m = 0;
    for (let e = 0; e < N; e++) {
      let x = v[b + e];
      if (x !== x) x = Infinity; // NaN ranks first, as in the core's topk
      if (m === K && !(x > best[K - 1])) continue;
      let p = m < K ? m++ : K - 1;
      while (p > 0 && x > best[p - 1]) { best[p] = best[p - 1]; out[ob + p] = out[ob + p - 1]; p--; }
      best[p] = x; out[ob + p] = e;
    }
  }
  return out;
}
