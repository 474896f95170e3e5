/**
 * The plan of `actvar reproduce` (issue 14): which settings reproduce which claim of the paper
 * (Tables 1–6, Fig. 9), and how large the runs are in quick and full mode.
 *
 * A run = one setting × one seed; it writes one JSON file `runs/<setting>--seed<seed>.json` (run.ts).
 * The seed drives everything random in the run: the per-image sampling streams (`imageSeed(seed, i)`),
 * the classes of the training-free calibration generations and, for distilled rows, the distillation.
 * Settings are named after the paper's notation: (α, β; γ) = token rates at the two activated scales
 * and the FFN expert rate, in percent.
 */
import type { BaselineName } from '../../actvar/baselines.js';
import type { ScheduleKind } from '../../optim/schedule.js';

/** How the ActVAR gates of a run are obtained. */
export type InitKind = 'training-free' | 'distilled';

export interface ActVarSpec {
  tokenRates: [number, number];
  expertRate: number;
  experts: number;
  /** 'last': the last two scales (the paper's choice); 'before': the two scales before them (Table 6). */
  scales: 'last' | 'before';
  /** Which tokens' keys/values enter the KV cache at activated scales (the paper is silent; issue 12). */
  kvPolicy: 'kept' | 'all';
  baseline: BaselineName | null;
  init: InitKind;
}

export interface Setting {
  /** File-name safe id, unique in the plan. */
  id: string;
  /** What the report prints. */
  label: string;
  /** null = the dense VAR. */
  actvar: ActVarSpec | null;
}

/** Budget of one distillation (src/app/reproduce/distill.ts; the trainer is src/train/distill.ts). */
export interface DistillSizes {
  /** Training images used (tokenized once, cached), of which the last `holdout` are held out for validation. */
  trainLimit: number;
  holdout: number;
  stage1Steps: number;
  stage2Steps: number;
  batchSize: number;
  /** Held-out images of the periodic validation; test images of the before/after numbers. */
  evalSamples: number;
  testSamples: number;
  /** Dense generations of the training-free start of stage 1 (and of static pruning's importance). */
  calib: number;
  /** Learning rates of stage 1 (gates) and stage 2 (the VAR) and the lr shape after warm-up: the recipe of
   * the shipped distilled model, chosen on the held-out part (docs/MODELS.md, "ActVAR (distilled)"). */
  lr: number;
  lr2: number;
  schedule: ScheduleKind;
}

export interface PlanSizes {
  /** Generated images per run for FID / IS / precision / recall (classes i mod C). */
  n: number;
  /** Images per forward pass of the metric pass; its batches also give the large-batch latency. */
  batch: number;
  /** Images timed one by one (batch-1 latency; median of them). */
  latencyImages: number;
  /** Dense generations that calibrate the training-free gates (and the static pruning importance). */
  calib: number;
  /** Seeds per setting. */
  seeds: number;
  /** Images in the sample grid of every run (the first ones: same seeds in every setting). */
  gridImages: number;
  /** Distillation budget of the distilled rows. */
  distill: DistillSizes;
  /** 'all': every setting also distilled; 'core': only ActVAR (75,75;75) and the two baselines. */
  distilledSettings: 'all' | 'core';
}

/** Learning rates and schedule of every distillation (the shipped model's recipe, docs/MODELS.md). */
export const DISTILL_RECIPE = Object.freeze({ lr: 3e-3, lr2: 4e-4, schedule: 'lin0' as ScheduleKind });

/**
 * Quick: one seed, N = 500, all settings: minutes (docs/REPRODUCTION.md has the measured wall time).
 * Full: three seeds, N = 5,000 (docs/EVALUATION.md: FID is stable from ~2k on, compare at equal N).
 */
export const QUICK_SIZES: Readonly<PlanSizes> = Object.freeze({
  n: 500, batch: 50, latencyImages: 8, calib: 2, seeds: 1, gridImages: 30, distilledSettings: 'core' as const,
  distill: Object.freeze({ trainLimit: 2000, holdout: 200, stage1Steps: 20, stage2Steps: 40, batchSize: 16, evalSamples: 100, testSamples: 100, calib: 2, ...DISTILL_RECIPE }),
});
export const FULL_SIZES: Readonly<PlanSizes> = Object.freeze({
  n: 5000, batch: 50, latencyImages: 20, calib: 2, seeds: 3, gridImages: 30, distilledSettings: 'core' as const,
  distill: Object.freeze({ trainLimit: 20000, holdout: 1000, stage1Steps: 50, stage2Steps: 150, batchSize: 32, evalSamples: 300, testSamples: 1000, calib: 2, ...DISTILL_RECIPE }),
});

const pct = (v: number): number => Math.round(v * 100);

/** "(75,75;75)" — the paper's Table 2 notation. */
export function rateLabel(s: Pick<ActVarSpec, 'tokenRates' | 'expertRate'>): string {
  return `(${s.tokenRates.map(pct).join(',')};${pct(s.expertRate)})`;
}

function spec(o: Partial<ActVarSpec> = {}): ActVarSpec {
  return { tokenRates: [0.75, 0.75], expertRate: 0.75, experts: 16, scales: 'last', kvPolicy: 'kept', baseline: null, init: 'training-free', ...o };
}

function settingId(a: ActVarSpec): string {
  const parts = [a.baseline ?? 'actvar', `${a.tokenRates.map(pct).join('-')}-${pct(a.expertRate)}`];
  if (a.experts !== 16) parts.push(`e${a.experts}`);
  if (a.scales !== 'last') parts.push('scales-before');
  if (a.kvPolicy !== 'kept') parts.push(`kv-${a.kvPolicy}`);
  if (a.init !== 'training-free') parts.push(a.init);
  return parts.join('_');
}

function settingLabel(a: ActVarSpec): string {
  const who = a.baseline === 'static-weights' ? 'static weight pruning' : a.baseline === 'fixed-tokens' ? 'fixed token pruning' : 'ActVAR';
  const extra = [
    a.experts !== 16 ? `${a.experts} experts` : '', a.scales !== 'last' ? 'the two scales before the last two' : '',
    a.kvPolicy !== 'kept' ? `KV of all tokens` : '',
  ].filter(Boolean);
  return `${who} ${rateLabel(a)}${extra.length ? ', ' + extra.join(', ') : ''}, ${a.init}`;
}

export function makeSetting(a: ActVarSpec | null): Setting {
  return a ? { id: settingId(a), label: settingLabel(a), actvar: a } : { id: 'dense', label: 'VAR (dense)', actvar: null };
}

/** The paper's Table 2 activation rates (α, β; γ). */
export const TABLE2_RATES: readonly [number, number, number][] = [[0.5, 0.25, 0.5], [0.5, 0.75, 0.25], [0.5, 0.5, 0.75], [0.75, 0.5, 0.75], [0.75, 0.75, 0.75]];
export const EXPERT_COUNTS: readonly number[] = [4, 8, 16, 32];

export interface PlanOptions {
  /** Which inits to plan (training-free always; 'distilled' when a distiller is available). */
  inits?: InitKind[];
  /** Offer the 'all' KV-cache policy rows (only when the library supports it). */
  kvAll?: boolean;
  /** Which settings get a distilled row (default 'all'). */
  distilledSettings?: 'all' | 'core';
}

/**
 * Every setting of the reproduction, once each (the main ActVAR (75,75;75) serves Tables 1–6 and Fig. 9).
 * Per init: Table 2's five rates (incl. the main one), w/o DW (γ = 1), w/o AT (token rates 1),
 * fixed token pruning, static weight pruning, the two earlier scales, 4/8/32 experts, and the other KV policy.
 */
export function planSettings(o: PlanOptions = {}): Setting[] {
  const out: Setting[] = [makeSetting(null)];
  for (const init of o.inits ?? ['training-free']) {
    if (init === 'distilled' && o.distilledSettings === 'core') {
      out.push(makeSetting(spec({ init })), makeSetting(spec({ baseline: 'fixed-tokens', init })), makeSetting(spec({ baseline: 'static-weights', init })));
      continue;
    }
    for (const [a, b, g] of TABLE2_RATES) out.push(makeSetting(spec({ tokenRates: [a, b], expertRate: g, init })));
    out.push(makeSetting(spec({ expertRate: 1, init })));                 // w/o DW
    out.push(makeSetting(spec({ tokenRates: [1, 1], init })));            // w/o AT
    out.push(makeSetting(spec({ baseline: 'fixed-tokens', init })));
    out.push(makeSetting(spec({ baseline: 'static-weights', init })));
    out.push(makeSetting(spec({ scales: 'before', init })));
    for (const e of EXPERT_COUNTS) if (e !== 16) out.push(makeSetting(spec({ experts: e, init })));
    if (o.kvAll) out.push(makeSetting(spec({ kvPolicy: 'all', init })));
  }
  const ids = new Set<string>();
  for (const s of out) { if (ids.has(s.id)) throw new Error(`duplicate setting id ${s.id}`); ids.add(s.id); }
  return out;
}

export interface PlannedRun { setting: Setting; seed: number; id: string }

/** File name (without .json) of a run. */
export function runId(settingId: string, seed: number): string { return `${settingId}--seed${seed}`; }

/** settings × seeds, seed-major (every setting of seed 0 first: a partial run is a complete quick run). */
export function planRuns(settings: Setting[], seeds: number): PlannedRun[] {
  const runs: PlannedRun[] = [];
  for (let seed = 0; seed < seeds; seed++) for (const setting of settings) runs.push({ setting, seed, id: runId(setting.id, seed) });
  return runs;
}

/** The scale indices of a spec for a model with `numScales` scales. */
export function scalesOf(a: ActVarSpec, numScales: number): number[] {
  if (numScales < 4 && a.scales === 'before') throw new Error(`the model has ${numScales} scales: no two scales before the last two`);
  return a.scales === 'last' ? [numScales - 2, numScales - 1] : [numScales - 4, numScales - 3];
}
