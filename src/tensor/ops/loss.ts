/**
 * Losses: cross-entropy with label smoothing (torch semantics), KL distillation loss, MSE.
 * Row statistics are computed in float64; softmax is recomputed in backward from the logits
 * rather than stored (VAR logits are [B·680, 4096]).
 */
import { backend } from '../../backend/index.js';
import { Tensor, result, assertFloat, sameShape } from '../tensor.js';
import { expNonPositive } from './nn.js';

export interface CrossEntropyOptions {
  /** torch label_smoothing ls: loss = (1 − ls)·nll + ls·mean_v(−log p_v). Default 0. */
  labelSmoothing?: number;
  /** 'mean' (default) → scalar; 'none' → one loss per row, shaped like target. */
  reduction?: 'mean' | 'none';
}

/** Per row: max and log Σ exp(x − max), in float64. */
function rowLogSumExp(X: Float32Array, rows: number, V: number): Float64Array {
  const lse = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const b = r * V;
    let m = -Infinity;
    for (let v = 0; v < V; v++) if (X[b + v] > m) m = X[b + v];
    let s = 0;
    for (let v = 0; v < V; v++) s += expNonPositive(X[b + v] - m);
    lse[r] = m + Math.log(s);
  }
  return lse;
}

/**
 * Cross-entropy of logits [..., V] against int32 class indices shaped like the leading dims
 * (usually logits [N, V], target [N]). With label smoothing ls (torch):
 * loss_n = (1 − ls)·(−log p[n, t_n]) + ls·(1/V)·Σ_v −log p[n, v]. 'mean' averages over rows.
 */
export function crossEntropy(logits: Tensor, target: Tensor, opts: CrossEntropyOptions = {}): Tensor {
  const X = assertFloat(logits, 'crossEntropy');
  if (target.dtype !== 'int32') throw new TypeError(`crossEntropy: target must be an int32 tensor of class indices, got ${target.dtype}`);
  if (logits.ndim < 1) throw new RangeError('crossEntropy: logits must be [N, V], got a scalar');
  const V = logits.shape[logits.ndim - 1];
  const lead = logits.shape.slice(0, -1);
  if (!sameShape(lead, target.shape)) {
    throw new RangeError(`crossEntropy: target shape [${target.shape.join(', ')}] must equal the logits' leading dims [${lead.join(', ')}]`);
  }
  const ls = opts.labelSmoothing ?? 0, reduction = opts.reduction ?? 'mean';
  if (!(ls >= 0 && ls <= 1)) throw new RangeError(`crossEntropy: labelSmoothing must be in [0, 1], got ${ls}`);
  if (reduction !== 'mean' && reduction !== 'none') throw new RangeError(`crossEntropy: reduction must be 'mean' or 'none', got '${String(reduction)}'`);
  const T = target.i32, rows = T.length;
  for (let r = 0; r < rows; r++) {
    if (T[r] < 0 || T[r] >= V) throw new RangeError(`crossEntropy: target[${r}] = ${T[r]} is outside the ${V} classes [0, ${V - 1}]`);
  }
  const lse = rowLogSumExp(X, rows, V);
  const loss = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const b = r * V;
    const nll = lse[r] - X[b + T[r]];
    let l = (1 - ls) * nll;
    if (ls > 0) {
      let s = 0;
      for (let v = 0; v < V; v++) s += X[b + v];
      l += ls * (lse[r] - s / V); // mean_v(−log p_v) = lse − mean(x)
    }
    loss[r] = l;
  }
  const backward = (g: Float32Array): Float32Array[] => {
    // d loss_n / d x[n, v] = p_v − (1 − ls)·[v = t_n] − ls/V
    const gx = new Float32Array(X.length);
    for (let r = 0; r < rows; r++) {
      const gr = reduction === 'mean' ? g[0] / rows : g[r];
      if (gr === 0) continue;
      const b = r * V, l = lse[r];
      for (let v = 0; v < V; v++) gx[b + v] = gr * (expNonPositive(X[b + v] - l) - ls / V);
      gx[b + T[r]] -= gr * (1 - ls);
    }
    return [gx];
  };
  if (reduction === 'none') return result(Float32Array.from(loss), target.shape, 'crossEntropy', [logits], backward);
  let s = 0;
  for (let r = 0; r < rows; r++) s += loss[r];
  return result(Float32Array.of(rows ? s / rows : NaN), [], 'crossEntropy', [logits], backward);
}

/**
 * Distillation loss: mean over rows of KL(p_t ‖ p_s) = Σ_v p_t·(log p_t − log p_s) along the last axis,
 * with p = softmax(logits). The teacher is a constant (no gradient flows to it).
 */
export function klDivergence(studentLogits: Tensor, teacherLogits: Tensor): Tensor {
  const S = assertFloat(studentLogits, 'klDivergence'), Tt = assertFloat(teacherLogits, 'klDivergence');
  if (!sameShape(studentLogits.shape, teacherLogits.shape)) {
    throw new RangeError(`klDivergence: student [${studentLogits.shape.join(', ')}] and teacher [${teacherLogits.shape.join(', ')}] logits must have the same shape`);
  }
  if (studentLogits.ndim < 1) throw new RangeError('klDivergence: logits must be [..., V], got a scalar');
  const V = studentLogits.shape[studentLogits.ndim - 1];
  const rows = V === 0 ? 0 : S.length / V;
  const lseS = rowLogSumExp(S, rows, V), lseT = rowLogSumExp(Tt, rows, V);
  let total = 0;
  for (let r = 0; r < rows; r++) {
    const b = r * V;
    let kl = 0;
    for (let v = 0; v < V; v++) {
      const lt = Tt[b + v] - lseT[r];
      const pt = expNonPositive(lt);
      if (pt > 0) kl += pt * (lt - (S[b + v] - lseS[r]));
    }
    total += kl;
  }
  return result(Float32Array.of(total / rows), [], 'klDivergence', [studentLogits], (g) => {
    // d/ds_v = (p_s,v − p_t,v) / rows
    const gs = new Float32Array(S.length), k = g[0] / rows;
    for (let r = 0; r < rows; r++) {
      const b = r * V;
      for (let v = 0; v < V; v++) gs[b + v] = k * (expNonPositive(S[b + v] - lseS[r]) - expNonPositive(Tt[b + v] - lseT[r]));
    }
    return [gs];
  });
}

/**
 * The other direction: mean over rows of KL(p_s ‖ p_t) = Σ_v p_s·(log p_s − log p_t) along the last
 * axis, p = softmax(logits) (the form ActVAR's paper writes its distillation losses in, paper eq. (6),
 * (11), (21)). Mode-seeking: p_s is pushed off every class where p_t is small. The teacher is a
 * constant. Gradient: ∂/∂s_v = p_s,v·(log p_s,v − log p_t,v − KL_row) / rows.
 */
export function klDivergenceReverse(studentLogits: Tensor, teacherLogits: Tensor): Tensor {
  const S = assertFloat(studentLogits, 'klDivergenceReverse'), Tt = assertFloat(teacherLogits, 'klDivergenceReverse');
  if (!sameShape(studentLogits.shape, teacherLogits.shape)) {
    throw new RangeError(`klDivergenceReverse: student [${studentLogits.shape.join(', ')}] and teacher [${teacherLogits.shape.join(', ')}] logits must have the same shape`);
  }
  if (studentLogits.ndim < 1) throw new RangeError('klDivergenceReverse: logits must be [..., V], got a scalar');
  const V = studentLogits.shape[studentLogits.ndim - 1];
  const rows = V === 0 ? 0 : S.length / V;
  const lseS = rowLogSumExp(S, rows, V), lseT = rowLogSumExp(Tt, rows, V);
  const klRow = new Float64Array(rows);
  let total = 0;
  for (let r = 0; r < rows; r++) {
    const b = r * V;
    let kl = 0;
    for (let v = 0; v < V; v++) {
      const ls = S[b + v] - lseS[r];
      const ps = Math.exp(ls);
      if (ps > 0) kl += ps * (ls - (Tt[b + v] - lseT[r]));
    }
    klRow[r] = kl;
    total += kl;
  }
  return result(Float32Array.of(total / rows), [], 'klDivergenceReverse', [studentLogits], (g) => {
    const gs = new Float32Array(S.length), k = g[0] / rows;
    for (let r = 0; r < rows; r++) {
      const b = r * V;
      for (let v = 0; v < V; v++) {
        const ls = S[b + v] - lseS[r];
        gs[b + v] = k * Math.exp(ls) * (ls - (Tt[b + v] - lseT[r]) - klRow[r]);
      }
    }
    return [gs];
  });
}

/** Mean squared error over all elements, mean((a − b)²); a and b must have the same shape. */
export function mseLoss(a: Tensor, b: Tensor): Tensor {
  const Ad = assertFloat(a, 'mseLoss'), Bd = assertFloat(b, 'mseLoss');
  if (!sameShape(a.shape, b.shape)) throw new RangeError(`mseLoss: shapes [${a.shape.join(', ')}] and [${b.shape.join(', ')}] must be equal`);
  const n = Ad.length, nk = backend().native;
  let s = 0;
  if (nk) s = nk.sqDist(Ad, Bd, n);
  else for (let i = 0; i < n; i++) { const d = Ad[i] - Bd[i]; s += d * d; }
  return result(Float32Array.of(s / n), [], 'mseLoss', [a, b], (g) => {
    const k = (2 * g[0]) / n;
    let ga: Float32Array | null = null, gb: Float32Array | null = null;
    if (a.requiresGrad) { ga = new Float32Array(n); if (nk) nk.scaledDiff(Ad, Bd, ga, n, k); else for (let i = 0; i < n; i++) ga[i] = k * (Ad[i] - Bd[i]); }
    if (b.requiresGrad) { gb = new Float32Array(n); if (nk) nk.scaledDiff(Bd, Ad, gb, n, k); else for (let i = 0; i < n; i++) gb[i] = k * (Bd[i] - Ad[i]); }
    return [ga, gb];
  });
}
