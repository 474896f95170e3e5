/**
 * Multi-head softmax attention, softmax(scale·q·kᵀ + bias)·v per (sample, head), as one op.
 *
 * The per-head GEMMs read q, k and v where they already are and write each head's output into its
 * columns of the merged [B, L, H·D] result (sgemm offsets and leading dimensions), so no
 * reshape/permute/split copies are made on the way in or out, forward or backward. Two layouts:
 *
 * - `attention(qkv, heads)`: the fused projection qkv [B, L, 3·C] = x·W_qkvᵀ with W_qkv = [W_q; W_k; W_v]
 *   (C = H·D; head h of q at columns h·D … (h+1)·D, as PyTorch/timm reshape it to (B, L, 3, H, D));
 * - `attentionHeads(q, k, v)`: separate q [B, H, Lq, D], k and v [B, H, Lk, D] (VAR's training path,
 *   after its per-head normalisation; docs/VAR.md §3.3).
 *
 * QKᵀ and PV record 4·B·H·Lq·Lk·D FLOPs (the caller picks the category).
 */
import { backend } from '../../backend/index.js';
import { Tensor, result, assertFloat, isGradEnabled } from '../tensor.js';
import { recordFlops, isDryRun } from '../flops.js';
import { softmaxRows, softmaxRowsBackward } from './nn.js';

export interface AttentionOptions {
  /** Multiplies q·kᵀ (default 1/√D). */
  scale?: number;
  /** Additive [Lq, Lk] bias shared by all samples and heads (0 / −∞ masks), or null. */
  bias?: Tensor | null;
}

/** Where head (b, h) of an operand starts: base + b·perSample + h·perHead, rows ld apart. */
interface Layout { base: number; perSample: number; perHead: number; ld: number }
const at = (l: Layout, b: number, h: number): number => l.base + b * l.perSample + h * l.perHead;

interface Problem {
  B: number; H: number; Lq: number; Lk: number; D: number; scale: number;
  bias: Float32Array | null;
  q: Layout; k: Layout; v: Layout;
}

/** Attention from a fused projection qkv [B, L, 3·C] → [B, L, C] with `heads` heads. Differentiable. */
export function attention(qkv: Tensor, heads: number, opts: AttentionOptions = {}): Tensor {
  const X = assertFloat(qkv, 'attention');
  if (qkv.ndim !== 3 || qkv.shape[2] % 3 !== 0) throw new RangeError(`attention: qkv must be [B, L, 3·C], got [${qkv.shape.join(', ')}]`);
  const [B, L, C3] = qkv.shape, C = C3 / 3;
  if (!Number.isInteger(heads) || heads < 1 || C % heads !== 0) throw new RangeError(`attention: ${heads} heads do not divide the width ${C}`);
  const D = C / heads;
  const part = (i: number): Layout => ({ base: i * C, perSample: L * C3, perHead: D, ld: C3 });
  const pr = problem(B, heads, L, L, D, opts, part(0), part(1), part(2));
  // q, k and v live in one array, so do their gradients (each GEMM writes its own columns)
  return run(pr, X, X, X, [qkv], () => {
    const g = new Float32Array(X.length);
    return [g, g, g];
  }, (gq) => [gq]);
}

/** Attention over separate heads: q [B, H, Lq, D], k and v [B, H, Lk, D] → [B, Lq, H·D]. Differentiable. */
export function attentionHeads(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  const Q = assertFloat(q, 'attention'), K = assertFloat(k, 'attention'), V = assertFloat(v, 'attention');
  const [B, H, Lq, D] = q.shape, Lk = k.shape[2];
  if (q.ndim !== 4 || k.ndim !== 4 || k.shape[0] !== B || k.shape[1] !== H || k.shape[3] !== D || v.shape.join() !== k.shape.join()) {
    throw new RangeError(`attention: q [${q.shape.join(', ')}], k [${k.shape.join(', ')}], v [${v.shape.join(', ')}] do not match`);
  }
  const heads = (L: number): Layout => ({ base: 0, perSample: H * L * D, perHead: L * D, ld: D });
  const pr = problem(B, H, Lq, Lk, D, opts, heads(Lq), heads(Lk), heads(Lk));
  // separate gradients even if q, k, v are the same tensor: the engine then adds them up
  return run(pr, Q, K, V, [q, k, v], () => [new Float32Array(Q.length), new Float32Array(K.length), new Float32Array(V.length)],
    (gq, gk, gv) => [gq, gk, gv]);
}

function problem(B: number, H: number, Lq: number, Lk: number, D: number, opts: AttentionOptions, q: Layout, k: Layout, v: Layout): Problem {
  const bias = opts.bias ? assertFloat(opts.bias, 'attention') : null;
  if (bias && bias.length !== Lq * Lk) throw new RangeError(`attention: bias must be [${Lq}, ${Lk}], got [${opts.bias!.shape.join(', ')}]`);
  return { B, H, Lq, Lk, D, scale: opts.scale ?? 1 / Math.sqrt(D), bias, q, k, v };
}

/**
 * Forward for every (b, h): P = softmax(scale·Q·Kᵀ + bias), out[b, :, h·D…] = P·V. P is kept for the
 * backward when a gradient is needed (B·H·Lq·Lk floats), else one Lq×Lk buffer is reused.
 * `buffers` makes the zeroed (q, k, v) gradient buffers; `grads` maps them to the op's inputs.
 */
function run(pr: Problem, Q: Float32Array, K: Float32Array, V: Float32Array, inputs: Tensor[],
  buffers: () => [Float32Array, Float32Array, Float32Array],
  grads: (gq: Float32Array, gk: Float32Array, gv: Float32Array) => (Float32Array | null)[]): Tensor {
  const { B, H, Lq, Lk, D, scale, bias } = pr;
  const C = H * D, be = backend();
  const needGrad = isGradEnabled() && inputs.some((t) => t.requiresGrad);
  const PP = Lq * Lk;
  const P = new Float32Array(needGrad ? B * H * PP : PP);
  const out = new Float32Array(B * Lq * C);
  recordFlops(4 * B * H * Lq * Lk * D, 'attn_scores');
  if (!isDryRun()) {
    for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) {
      const po = needGrad ? (b * H + h) * PP : 0;
      be.sgemm(false, true, Lq, Lk, D, scale, Q, at(pr.q, b, h), pr.q.ld, K, at(pr.k, b, h), pr.k.ld, 0, P, po, Lk);
      if (bias) for (let i = 0; i < PP; i++) P[po + i] += bias[i];
      softmaxRows(P, P, po, Lq, Lk);
      be.sgemm(false, false, Lq, D, Lk, 1, P, po, Lk, V, at(pr.v, b, h), pr.v.ld, 0, out, b * Lq * C + h * D, C);
    }
  }
  return result(out, [B, Lq, C], 'attention', inputs, (g) => {
    const [gq, gk, gv] = buffers();
    const dP = new Float32Array(PP);
    for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) {
      const po = (b * H + h) * PP, go = b * Lq * C + h * D;
      const qo = at(pr.q, b, h), ko = at(pr.k, b, h), vo = at(pr.v, b, h);
      // dV = Pᵀ·dO ; dP = dO·Vᵀ ; dS = P ⊙ (dP − rowsum(dP ⊙ P)) ; dQ = scale·dS·K ; dK = scale·dSᵀ·Q
      be.sgemm(true, false, Lk, D, Lq, 1, P, po, Lk, g, go, C, 0, gv, vo, pr.v.ld);
      be.sgemm(false, true, Lq, Lk, D, 1, g, go, C, V, vo, pr.v.ld, 0, dP, 0, Lk);
      softmaxRowsBackward(P.subarray(po, po + PP), dP, dP, 0, Lq, Lk);
      be.sgemm(false, false, Lq, D, Lk, scale, dP, 0, Lk, K, ko, pr.k.ld, 0, gq, qo, pr.q.ld);
      be.sgemm(true, false, Lk, D, Lq, scale, dP, 0, Lk, Q, qo, pr.q.ld, 0, gk, ko, pr.k.ld);
    }
    return grads(gq, gk, gv).map((gr, i) => (inputs[i].requiresGrad ? gr : null));
  });
}
