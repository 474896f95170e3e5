/**
 * Learning-rate and weight-decay schedules of VAR (docs/VAR.md §7; `lr_wd_annealing` in the official
 * utils/lr_control.py), plus the official no-weight-decay rule and param-group builder (`filter_params`).
 */
import type { Tensor } from '../tensor/tensor.js';
import type { ParamGroup } from './adamw.js';

export type ScheduleKind = 'lin0' | 'cos' | 'const';

export interface LrSchedule {
  /** Peak learning rate (VAR: tblr · global_bs / 256). */
  peak: number;
  /** Warm-up iterations (VAR: wp = ep/50 epochs' worth; rounded, as the official code does). */
  warmupSteps: number;
  /** Total iterations (max_it); the last step is totalSteps − 1. */
  totalSteps: number;
  /** Warm-up start as a fraction of peak (VAR's wp0, default 0.005). */
  warmupStart?: number;
  /** Shape after warm-up (VAR's sche, default 'lin0'). */
  schedule?: ScheduleKind;
  /** Final lr as a fraction of peak (VAR's wpe, default 0.01). */
  endFactor?: number;
}

/**
 * lr at iteration `step` (0-based):
 * - warm-up (step < W): peak · (wp0 + (1 − wp0) · step / W), linear from wp0·peak towards peak;
 * - after, with pasd = (step − W) / (totalSteps − 1 − W) ∈ [0, 1]:
 *   - 'lin0': peak while pasd < 0.05, then peak · (wpe + (1 − wpe) · (1 − pasd) / 0.95) (reaches wpe·peak at the last step);
 *   - 'cos':  peak · (wpe + (1 − wpe) · (½ + ½ cos(π · pasd)));
 *   - 'const': peak.
 */
export function lrAt(step: number, s: LrSchedule): number {
  const { peak, totalSteps } = s;
  const wp0 = s.warmupStart ?? 0.005, wpe = s.endFactor ?? 0.01, kind = s.schedule ?? 'lin0';
  const W = Math.round(s.warmupSteps);
  if (!(peak >= 0)) throw new RangeError(`lrAt: peak must be ≥ 0, got ${peak}`);
  if (!Number.isInteger(totalSteps) || totalSteps < 1) throw new RangeError(`lrAt: totalSteps must be a positive integer, got ${totalSteps}`);
  if (!(W >= 0)) throw new RangeError(`lrAt: warmupSteps must be ≥ 0, got ${s.warmupSteps}`);
  if (kind !== 'lin0' && kind !== 'cos' && kind !== 'const') throw new RangeError(`lrAt: schedule must be 'lin0', 'cos' or 'const', got '${String(kind)}'`);
  let f: number;
  if (step < W) {
    f = wp0 + (1 - wp0) * step / W;
  } else if (kind === 'const') {
    f = 1;
  } else {
    const span = totalSteps - 1 - W;
    const pasd = span > 0 ? Math.min(1, (step - W) / span) : 1;
    if (kind === 'cos') f = wpe + (1 - wpe) * (0.5 + 0.5 * Math.cos(Math.PI * pasd));
    else f = pasd < 0.05 ? 1 : wpe + (1 - wpe) * (1 - pasd) / 0.95;
  }
  return f * peak;
}

/**
 * Weight decay at iteration `step`: a cosine over the whole run from `wd` (twd) to `wdEnd` (twde),
 * wdEnd + (wd − wdEnd) · (½ + ½ cos(π · step / (totalSteps − 1))) (docs/VAR.md §7).
 */
export function wdAt(step: number, s: { wd: number; wdEnd?: number; totalSteps: number }): number {
  const wdEnd = s.wdEnd ?? s.wd;
  const pasd = s.totalSteps > 1 ? Math.min(1, step / (s.totalSteps - 1)) : 1;
  return wdEnd + (s.wd - wdEnd) * (0.5 + 0.5 * Math.cos(Math.PI * pasd));
}

/** Name fragments exempt from weight decay in the official trainer (docs/VAR.md §7). */
export const NO_DECAY_KEYS: readonly string[] = Object.freeze([
  'cls_token', 'start_token', 'task_token', 'cfg_uncond', 'pos_embed', 'pos_1LC', 'pos_start', 'start_pos',
  'lvl_embed', 'gamma', 'beta', 'ada_gss', 'moe_bias', 'scale_mul',
]);

/**
 * True if the parameter gets no weight decay: 1-d params (pass `ndim`), names ending in `bias`,
 * and names containing any of NO_DECAY_KEYS.
 */
export function noDecayName(name: string, ndim?: number): boolean {
  if (ndim === 1) return true;
  if (name.endsWith('bias')) return true;
  return NO_DECAY_KEYS.some((k) => name.includes(k));
}

/**
 * The two AdamW groups of the official trainer: [decay (weightDecay), no-decay (0)], in the map's
 * order within each group. Parameters that do not require grad are skipped; empty groups are dropped.
 */
export function paramGroups(named: Map<string, Tensor>, weightDecay: number): ParamGroup[] {
  const decay: Tensor[] = [], noDecay: Tensor[] = [];
  for (const [name, p] of named) {
    if (!p.requiresGrad) continue;
    (noDecayName(name, p.ndim) ? noDecay : decay).push(p);
  }
  const groups: ParamGroup[] = [];
  if (decay.length) groups.push({ params: decay, weightDecay, wdScale: 1 });
  if (noDecay.length) groups.push({ params: noDecay, weightDecay: 0, wdScale: 0 });
  return groups;
}
