/**
 * AdamW with decoupled weight decay, step for step as torch.optim.AdamW (amsgrad=False, maximize=False;
 * Loshchilov & Hutter, "Decoupled Weight Decay Regularization"). Per parameter p with gradient g, at step t:
 *
 *   p ← p · (1 − lr·wd)                       (decoupled decay, before the Adam update)
 *   m ← β1·m + (1−β1)·g
 *   v ← β2·v + (1−β2)·g²
 *   p ← p − (lr / (1−β1^t)) · m / (√v / √(1−β2^t) + eps)
 *
 * Moments are float32 (as torch keeps them for float32 params); the per-element arithmetic runs in
 * float64 and rounds on store. Parameters whose `.grad` is null are skipped (their step count does
 * not advance), as torch does. VAR trains with betas (0.9, 0.95) (docs/VAR.md §7).
 */
import type { Tensor } from '../tensor/tensor.js';
import { adamwUpdate } from '../tensor/ops/adamw-update.js';

export interface ParamGroup {
  params: Tensor[];
  /** Absolute weight decay of this group (0 for the no-decay group). */
  weightDecay: number;
  /** The group's lr is `lr · lrScale` (default 1; VAR's `lr_sc`). */
  lrScale?: number;
  /**
   * The group's weight decay after `setWeightDecay(wd)` is `wd · wdScale` (VAR's `wd_sc`).
   * Default: 1 if weightDecay > 0, else 0 (so the no-decay group stays at 0).
   */
  wdScale?: number;
}

export interface AdamWOptions {
  lr: number;
  betas?: [number, number];
  eps?: number;
  /** Weight decay for groups given as a bare Tensor[] (torch's default is 0.01). */
  weightDecay?: number;
}

/** Per-parameter state: its own step count (as torch) and the two moments. */
export interface AdamWParamState {
  step: number;
  expAvg: Float32Array;
  expAvgSq: Float32Array;
}

/** Everything needed to continue bit-identically: hyper-parameters, group settings, moments. */
export interface AdamWStateDict {
  /** Number of `step()` calls so far. */
  step: number;
  lr: number;
  betas: [number, number];
  eps: number;
  groups: { weightDecay: number; lrScale: number; wdScale: number; size: number }[];
  /** One entry per parameter, in group order; null where the parameter has not been stepped yet. */
  state: (AdamWParamState | null)[];
}

interface Group { params: Tensor[]; weightDecay: number; lrScale: number; wdScale: number }

export class AdamW {
  lr: number;
  betas: [number, number];
  eps: number;
  /** Number of `step()` calls. */
  stepCount = 0;
  private readonly groups: Group[];
  private readonly state = new Map<Tensor, AdamWParamState>();

  constructor(params: Tensor[] | ParamGroup[], opts: AdamWOptions) {
    const { lr, betas = [0.9, 0.999], eps = 1e-8, weightDecay = 0.01 } = opts;
    if (!(lr >= 0)) throw new RangeError(`AdamW: lr must be ≥ 0, got ${lr}`);
    if (!(eps >= 0)) throw new RangeError(`AdamW: eps must be ≥ 0, got ${eps}`);
    for (const b of betas) if (!(b >= 0 && b < 1)) throw new RangeError(`AdamW: betas must lie in [0, 1), got [${betas.join(', ')}]`);
    this.lr = lr;
    this.betas = [betas[0], betas[1]];
    this.eps = eps;
    const raw: ParamGroup[] = params.length > 0 && isTensor(params[0])
      ? [{ params: params as Tensor[], weightDecay }]
      : (params as ParamGroup[]);
    const seen = new Set<Tensor>();
    this.groups = raw.map((g, gi) => {
      if (!Array.isArray(g.params)) throw new TypeError(`AdamW: group ${gi} has no params array`);
      if (!(g.weightDecay >= 0)) throw new RangeError(`AdamW: group ${gi} weightDecay must be ≥ 0, got ${g.weightDecay}`);
      for (const p of g.params) {
        if (!p.requiresGrad || p.dtype !== 'float32') throw new TypeError(`AdamW: parameter ${p.name ?? p.toString()} in group ${gi} must be a float32 tensor with requiresGrad`);
        if (seen.has(p)) throw new RangeError(`AdamW: parameter ${p.name ?? p.toString()} appears more than once in the param groups`);
        seen.add(p);
      }
      return {
        params: g.params.slice(),
        weightDecay: g.weightDecay,
        lrScale: g.lrScale ?? 1,
        wdScale: g.wdScale ?? (g.weightDecay > 0 ? 1 : 0),
      };
    });
  }

  /** All parameters, in group order. */
  get params(): Tensor[] { return this.groups.flatMap((g) => g.params); }

  /** Set the base learning rate (each group uses lr · lrScale). */
  setLr(lr: number): void {
    if (!(lr >= 0)) throw new RangeError(`AdamW.setLr: lr must be ≥ 0, got ${lr}`);
    this.lr = lr;
  }

  /** Set every group's weight decay to wd · wdScale (for VAR's cosine weight-decay schedule). */
  setWeightDecay(wd: number): void {
    if (!(wd >= 0)) throw new RangeError(`AdamW.setWeightDecay: wd must be ≥ 0, got ${wd}`);
    for (const g of this.groups) g.weightDecay = wd * g.wdScale;
  }

  /** The current (lr, weightDecay) of each group. */
  groupSettings(): { lr: number; weightDecay: number }[] {
    return this.groups.map((g) => ({ lr: this.lr * g.lrScale, weightDecay: g.weightDecay }));
  }

  /** Set every parameter's gradient to null (torch's set_to_none=True). */
  zeroGrad(): void {
    for (const g of this.groups) for (const p of g.params) p.grad = null;
  }

  /** One AdamW update of every parameter that has a gradient. */
  step(): void {
    this.stepCount++;
    const [b1, b2] = this.betas, eps = this.eps;
    for (const g of this.groups) {
      const lr = this.lr * g.lrScale, decay = 1 - lr * g.weightDecay;
      for (const p of g.params) {
        if (!p.grad) continue;
        const P = p.f32, G = p.grad.f32;
        if (G.length !== P.length) throw new RangeError(`AdamW: gradient of ${p.name ?? p.toString()} has ${G.length} elements, expected ${P.length}`);
        let st = this.state.get(p);
        if (!st) {
          st = { step: 0, expAvg: new Float32Array(P.length), expAvgSq: new Float32Array(P.length) };
          this.state.set(p, st);
        }
        st.step++;
        const bc1 = 1 - b1 ** st.step, bc2 = 1 - b2 ** st.step;
        const stepSize = lr / bc1, bc2Sqrt = Math.sqrt(bc2);
        const m = st.expAvg, v = st.expAvgSq;
        const c1 = 1 - b1, c2 = 1 - b2;
        adamwUpdate(P, G, m, v, decay, b1, b2, c1, c2, stepSize, bc2Sqrt, eps);
      }
    }
  }

  /** A deep copy of the optimiser state (moments copied, not shared). */
  stateDict(): AdamWStateDict {
    return {
      step: this.stepCount,
      lr: this.lr,
      betas: [this.betas[0], this.betas[1]],
      eps: this.eps,
      groups: this.groups.map((g) => ({ weightDecay: g.weightDecay, lrScale: g.lrScale, wdScale: g.wdScale, size: g.params.length })),
      state: this.params.map((p) => {
        const st = this.state.get(p);
        return st ? { step: st.step, expAvg: st.expAvg.slice(), expAvgSq: st.expAvgSq.slice() } : null;
      }),
    };
  }

  /**
   * Restore a state from `stateDict()` into an optimiser over the same parameters (same groups,
   * same order, same sizes). Betas and eps are restored too, so the continuation is bit-identical.
   */
  loadStateDict(sd: AdamWStateDict): void {
    const params = this.params;
    if (sd.groups.length !== this.groups.length) throw new RangeError(`AdamW.loadStateDict: state has ${sd.groups.length} param groups, optimiser has ${this.groups.length}`);
    sd.groups.forEach((g, i) => {
      if (g.size !== this.groups[i].params.length) throw new RangeError(`AdamW.loadStateDict: group ${i} has ${g.size} params in the state, ${this.groups[i].params.length} in the optimiser`);
    });
    if (sd.state.length !== params.length) throw new RangeError(`AdamW.loadStateDict: state has ${sd.state.length} entries, optimiser has ${params.length} params`);
    sd.state.forEach((st, i) => {
      if (st && (st.expAvg.length !== params[i].size || st.expAvgSq.length !== params[i].size)) {
        throw new RangeError(`AdamW.loadStateDict: moments of param ${i} (${params[i].name ?? params[i].toString()}) have ${st.expAvg.length}/${st.expAvgSq.length} elements, expected ${params[i].size}`);
      }
    });
    this.stepCount = sd.step;
    this.lr = sd.lr;
    this.betas = [sd.betas[0], sd.betas[1]];
    this.eps = sd.eps;
    sd.groups.forEach((g, i) => { Object.assign(this.groups[i], { weightDecay: g.weightDecay, lrScale: g.lrScale, wdScale: g.wdScale }); });
    this.state.clear();
    sd.state.forEach((st, i) => {
      if (st) this.state.set(params[i], { step: st.step, expAvg: Float32Array.from(st.expAvg), expAvgSq: Float32Array.from(st.expAvgSq) });
    });
  }
}

function isTensor(x: unknown): x is Tensor {
  return typeof x === 'object' && x !== null && 'shape' in x && 'data' in x;
}
