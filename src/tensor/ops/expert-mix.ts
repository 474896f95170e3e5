/**
 * The grouped expert FFN with a weight per (token, chosen expert), for training:
 *
 *   y_t = Σ_k g[t, k] · e_{route[t,k]}(x_t) + b₂,   e_e(x) = δ(x·W₁ₑᵀ + b₁ₑ)·W₂ₑᵀ
 *
 * (experts.ts `expertFFN` is the case g ≡ 1). ActVAR's distillation passes g = p/stopgrad(p), which
 * is exactly 1 in the forward pass, so the output equals the unweighted sum of paper eq. (4) while the
 * token loss gets a gradient to the router's probabilities (docs/ACTVAR.md, "the L_cls gradient path").
 *
 * Reference implementation (TypeScript loops + sgemm, grouped by expert like `expertFFN`): per
 * expert, gather its tokens, GEMM(fc1 slice) → GELU → GEMM(fc2 slice), scale each row by its weight
 * and add it into the token's output. The pre-activations and the unweighted expert outputs are kept
 * for the backward pass (n·K·(dₑ + C) floats). Differentiable in x, the weights and g.
 */
import { Tensor, result, assertFloat, isGradEnabled } from '../tensor.js';
import { recordFlops, isDryRun } from '../flops.js';
import { geluBackwardInto } from './gelu.js';
import { sgemm, columnSumsInto } from './matmul.js';
import { gatherRowsInto, scatterAddRowsInto } from './indexing.js';
import { groupByExpert, geluInPlace, setBiasRows } from './experts.js';

/**
 * Σ_k g[t,k]·e_{route[t,k]}(x_t) + b₂ for x [..., C] (n rows), expert-ordered weights w1 (D_h, C),
 * b1 (D_h), w2 (C, D_h), b2 (C) cut into N experts, `route` the n × K expert table and g [n, K].
 */
export function expertFFNWeighted(x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, route: Int32Array, K: number, N: number, g: Tensor): Tensor {
  const [H, C] = w1.shape, de = H / N;
  const X = assertFloat(x, 'expertFFNWeighted'), G = assertFloat(g, 'expertFFNWeighted');
  if (x.shape[x.ndim - 1] !== C) throw new RangeError(`expertFFNWeighted: input has ${x.shape[x.ndim - 1]} features, the FFN expects ${C}`);
  if (!Number.isInteger(de) || de < 1) throw new RangeError(`expertFFNWeighted: ${N} experts do not divide the hidden width ${H}`);
  const n = X.length / C;
  if (!Number.isInteger(K) || K < 1 || K > N) throw new RangeError(`expertFFNWeighted: K must be in 1..${N}, got ${K}`);
  if (G.length !== n * K) throw new RangeError(`expertFFNWeighted: weights must be [${n}, ${K}], got [${g.shape.join(', ')}]`);
  const { offsets, tokens, slots } = groupByExpert(route, n, K, N);
  const W1 = w1.f32, B1 = b1.f32, W2 = w2.f32;
  const out = new Float32Array(n * C);
  recordFlops(4 * offsets[N] * de * C, w1);
  const needGrad = isGradEnabled() && [x, w1, b1, w2, b2, g].some((t) => t.requiresGrad);
  const pre = new Float32Array(n * K * de), Y = new Float32Array(n * K * C); // expert-ordered
  if (!isDryRun()) {
    setBiasRows(out, b2.f32, 0, n, C);
    let maxCnt = 0;
    for (let e = 0; e < N; e++) maxCnt = Math.max(maxCnt, offsets[e + 1] - offsets[e]);
    const Xe = new Float32Array(maxCnt * C);
    for (let e = 0; e < N; e++) {
      const o0 = offsets[e], cnt = offsets[e + 1] - o0;
      if (cnt === 0) continue;
      gatherRowsInto(Xe, X, tokens, o0, cnt, C);
      const P = pre.subarray(o0 * de, (o0 + cnt) * de);
      setBiasRows(P, B1, e * de, cnt, de);
      sgemm(false, true, cnt, de, C, 1, Xe, 0, C, W1, e * de * C, C, 1, P, 0, de);
      const A = P.slice();
      geluInPlace(A, cnt * de);
      sgemm(false, true, cnt, C, de, 1, A, 0, de, W2, e * de, H, 0, Y, o0 * C, C);
      for (let r = 0; r < cnt; r++) {
        const w = G[slots[o0 + r]], o = tokens[o0 + r] * C, yo = (o0 + r) * C;
        for (let c = 0; c < C; c++) out[o + c] += w * Y[yo + c];
      }
    }
  }
  return result(out, x.shape, 'expertFFNWeighted', [x, w1, b1, w2, b2, g], (gout) => {
    if (!needGrad) throw new Error('expertFFNWeighted: backward without saved activations');
    const gx = x.requiresGrad ? new Float32Array(X.length) : null;
    const gw1 = w1.requiresGrad ? new Float32Array(H * C) : null;
    const gb1 = b1.requiresGrad ? new Float32Array(H) : null;
    const gw2 = w2.requiresGrad ? new Float32Array(C * H) : null;
    const gb2 = b2.requiresGrad ? columnSumsInto(gout, n, C, new Float32Array(C)) : null;
    const gg = g.requiresGrad ? new Float32Array(n * K) : null;
    let maxCnt = 0;
    for (let e = 0; e < N; e++) maxCnt = Math.max(maxCnt, offsets[e + 1] - offsets[e]);
    const Ge = new Float32Array(maxCnt * C), A = new Float32Array(maxCnt * de), GA = new Float32Array(maxCnt * de), Xg = new Float32Array(maxCnt * C);
    for (let e = 0; e < N; e++) {
      const o0 = offsets[e], cnt = offsets[e + 1] - o0;
      if (cnt === 0) continue;
      // the weighted output gradient of every row, and the weights' gradients ⟨gout_t, e_e(x_t)⟩
      for (let r = 0; r < cnt; r++) {
        const s = slots[o0 + r], w = G[s], o = tokens[o0 + r] * C, yo = (o0 + r) * C, go = r * C;
        let d = 0;
        for (let c = 0; c < C; c++) { const v = gout[o + c]; Ge[go + c] = w * v; d += v * Y[yo + c]; }
        if (gg) gg[s] = d;
      }
      gatherRowsInto(Xg, X, tokens, o0, cnt, C);
      const P = pre.subarray(o0 * de, (o0 + cnt) * de);
      A.set(P);
      geluInPlace(A, cnt * de);
      sgemm(false, false, cnt, de, C, 1, Ge, 0, C, W2, e * de, H, 0, GA, 0, de);
      if (gw2) sgemm(true, false, C, de, cnt, 1, Ge, 0, C, A, 0, de, 0, gw2, e * de, H);
      geluBackwardInto(P, GA, GA, cnt * de);
      if (gb1) columnSumsInto(GA, cnt, de, gb1.subarray(e * de, (e + 1) * de));
      if (gw1) sgemm(true, false, de, C, cnt, 1, GA, 0, de, Xg, 0, C, 0, gw1, e * de * C, C);
      if (gx) {
        sgemm(false, false, cnt, C, de, 1, GA, 0, de, W1, e * de * C, C, 0, Ge, 0, C);
        scatterAddRowsInto(gx, Ge, tokens, o0, cnt, C);
      }
    }
    return [gx, gw1, gb1, gw2, gb2, gg];
  });
}
