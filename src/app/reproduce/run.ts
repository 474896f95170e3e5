/**
 * One run of the reproduction: a setting (plan.ts) at a seed, measured the same way for every setting.
 *
 * 1. Gates: dense (none), training-free (ActVAR.calibrate on `calib` dense generations whose classes
 *    come from the seed) or distilled (the `distill` function of the caller, e.g. the stage-1/2 trainer);
 *    then the baseline, if any (src/actvar/baselines.ts; static pruning's importance from `calib`
 *    dense generations of the same seed).
 * 2. Metric pass: N images, image i of class i mod C with its own stream imageSeed(seed, i), `batch`
 *    per forward pass, quantised to 8 bits as a PNG stores them, features and logits of the shipped
 *    classifier → FID / IS / precision / recall against the reference set (src/eval/evaluate.ts) and
 *    class accuracy; FLOPs by the exact counter (transformer only, CFG on) per image. Every batch
 *    (sampling + decode, not the feature extraction) is timed: the large-batch latency is the median
 *    batch time / batch.
 * 3. Batch-1 latency: `latencyImages` images one at a time (sampling + decode), after one untimed
 *    warm-up; median seconds per image and process CPU seconds.
 * 4. Files: a grid of the first `gridImages` images; for seed 0 and ActVAR settings the activation
 *    maps of image 0 (Fig. 5/6 analogues, src/actvar/actmaps.ts).
 */
import * as os from 'node:os';
import { Tensor, Rng, countFlops, flopsCategory, concat } from '../../tensor/index.js';
import { toUnitRange, type VAR, type VarVqvae } from '../../var/var.js';
import { imageSeed } from '../../var/sample.js';
import { ActVAR } from '../../actvar/actvar.js';
import { ActivationMaps } from '../../actvar/actmaps.js';
import { applyBaseline, type BaselineInfo } from '../../actvar/baselines.js';
import type { ActVarConfig } from '../../actvar/config.js';
import { qualityMetrics, evalLabel, type QualityMetrics } from '../../eval/evaluate.js';
import type { FeatureExtractor } from '../../eval/features.js';
import { makeGrid, tensorToImages, toUint8, type RgbImage } from '../../image/png.js';
import { transformerFlops } from '../demo.js';
import { scalesOf, type PlannedRun, type PlanSizes, type ActVarSpec } from './plan.js';

/** Loaded models a run needs (`modelFor` gives the VAR a setting runs on: distilled rows bring their own). */
export interface RunModels {
  var: VAR;
  vqvae: VarVqvae & { fhatToImg(f: Tensor): Tensor };
  extractor: FeatureExtractor;
  /** Reference features (N × D) of the reference set. */
  ref: Float32Array;
  refName: string;
}

/**
 * Returns the ActVAR of a distilled setting for a seed (router/selector trained, its own fine-tuned copy
 * of the VAR), with the setting's baseline already applied (distill.ts).
 */
export type Distiller = (spec: ActVarSpec, config: Partial<ActVarConfig>, seed: number, runId: string, log: (s: string) => void) =>
  Promise<{ actvar: ActVAR; baseline: BaselineInfo | null; info: Record<string, unknown> }>;

export interface LatencyStats {
  batch: number;
  /** Timed forward passes (batches, or single images at batch 1). */
  samples: number;
  secondsPerImage: number;
  imagesPerSecond: number;
  /** Process CPU seconds per image (all threads), median: steadier than wall time on a shared machine. */
  cpuSecondsPerImage: number;
}

/** Everything one run writes (runs/<id>.json). */
export interface RunRecord {
  format: 'actvar-reproduce-run/1';
  id: string;
  setting: { id: string; label: string; actvar: ActVarSpec | null };
  seed: number;
  mode: string;
  sizes: PlanSizes;
  /** The resolved ActVAR configuration (null = dense). */
  config: ActVarConfig | null;
  baseline: BaselineInfo | null;
  init: Record<string, unknown> | null;
  gflopsPerImage: number;
  flopsByCategory: Record<string, number>;
  metrics: QualityMetrics & { classAccuracy: number; extractor: string; extractorSha256: string; ref: string };
  latency: { batch1: LatencyStats; batchN: LatencyStats };
  /** Wall seconds per phase, and the process CPU seconds of the whole run (all threads). */
  seconds: { setup: number; metricPass: number; latency: number; total: number; cpu: number };
  files: { grid: string | null; maps: string[] };
  commit: string;
  machine: string;
  /** The machine's 1-minute load average at the start and at the end of the run (other processes count: a shared box). */
  load: [number, number];
  started: string;
  finished: string;
}

export interface RunContext {
  models: RunModels;
  sizes: PlanSizes;
  mode: string;
  commit: string;
  machine: string;
  cfg: number;
  topK: number;
  topP: number;
  distill?: Distiller | null;
  log?: (s: string) => void;
}

const cpuSeconds = (c0: NodeJS.CpuUsage): number => { const c = process.cpuUsage(c0); return (c.user + c.system) / 1e6; };
const median = (v: number[]): number => { const s = [...v].sort((a, b) => a - b), m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };

function latency(batch: number, wall: number[], cpu: number[]): LatencyStats {
  const s = median(wall) / batch;
  return { batch, samples: wall.length, secondsPerImage: s, imagesPerSecond: 1 / s, cpuSecondsPerImage: median(cpu) / batch };
}

/** Build the ActVAR (or null for dense) of a run. */
async function buildGates(run: PlannedRun, ctx: RunContext, log: (s: string) => void): Promise<{ act: ActVAR | null; baseline: BaselineInfo | null; init: Record<string, unknown> | null }> {
  const a = run.setting.actvar;
  if (!a) return { act: null, baseline: null, init: null };
  const model = ctx.models.var;
  const config: Partial<ActVarConfig> = { tokenRates: a.tokenRates, expertRate: a.expertRate, experts: a.experts, scales: scalesOf(a, model.numScales), kvPolicy: a.kvPolicy };
  let act: ActVAR, init: Record<string, unknown>;
  const C = model.config.numClasses;
  if (a.init === 'distilled') {
    if (!ctx.distill) throw new Error(`${run.id}: a distilled setting needs a distiller`);
    const d = await ctx.distill(a, config, run.seed, run.id, log);
    return { act: d.actvar, baseline: d.baseline, init: { kind: 'distilled', ...d.info } };
  } else {
    act = ActVAR.wrap(model, config);
    const rng = new Rng((run.seed ^ 0x5eed) >>> 0);
    const labels = Array.from({ length: ctx.sizes.calib }, () => rng.int(C));
    act.calibrate({ vqvae: ctx.models.vqvae, labels, cfg: ctx.cfg, topK: ctx.topK, topP: ctx.topP, rng });
    init = { kind: 'training-free', calibGenerations: ctx.sizes.calib, calibClasses: labels };
  }
  let baseline: BaselineInfo | null = null;
  if (a.baseline) {
    const rng = new Rng((run.seed ^ 0xba5e) >>> 0);
    const labels = Array.from({ length: ctx.sizes.calib }, () => rng.int(C));
    baseline = applyBaseline(act, a.baseline, a.baseline === 'static-weights'
      ? { importance: { vqvae: ctx.models.vqvae, labels, cfg: ctx.cfg, topK: ctx.topK, topP: ctx.topP, rng } } : {});
  }
  return { act, baseline, init };
}

/** Execute one planned run. Returns the record and the PNG files to write (relative name → image). */
export async function executeRun(run: PlannedRun, ctx: RunContext): Promise<{ record: RunRecord; images: Map<string, RgbImage> }> {
  const log = ctx.log ?? (() => {});
  const started = new Date();
  const t0 = performance.now(), cpu0 = process.cpuUsage(), load0 = os.loadavg()[0];
  const { models, sizes } = ctx;
  const { act, baseline, init } = await buildGates(run, ctx, log);
  const model = act ? act.model : models.var;
  const hooks = act ? act.hooks : {};
  const C = model.config.numClasses;
  const t1 = performance.now();

  const sample = (labels: number[], first: number): Tensor => {
    const r = model.autoregressiveInfer({
      labels, vqvae: models.vqvae, cfg: ctx.cfg, topK: ctx.topK, topP: ctx.topP, decode: false,
      rng: labels.map((_, j) => new Rng(imageSeed(run.seed, first + j))), ...hooks,
    });
    return flopsCategory('vqvae_decode', () => models.vqvae.fhatToImg(r.fHat));
  };

  // ---- metric pass
  const { n, batch } = sizes;
  const ex = models.extractor, D = ex.featureDim, K = ex.numClasses;
  const features = new Float32Array(n * D), logits = new Float32Array(n * K);
  let flops = 0, hits = 0;
  const byCat: Record<string, number> = {};
  const wall: number[] = [], cpu: number[] = [];
  const grid: Tensor[] = [];
  for (let first = 0; first < n; first += batch) {
    const b = Math.min(batch, n - first);
    const labels = Array.from({ length: b }, (_, j) => evalLabel(first + j, C));
    const c0 = process.cpuUsage(), w0 = performance.now();
    const { result: img, flops: fc } = countFlops(() => sample(labels, first));
    const w = (performance.now() - w0) / 1e3, c = process.cpuUsage(c0);
    if (b === batch) { wall.push(w); cpu.push((c.user + c.system) / 1e6); }
    flops += transformerFlops(fc);
    for (const [k, v] of fc.byCategory) byCat[k] = (byCat[k] ?? 0) + v;
    const u = toUnitRange(img), q = u.f32;
    for (let k = 0; k < q.length; k++) q[k] = toUint8(q[k]) / 255; // as a PNG stores it
    if (first < sizes.gridImages) grid.push(u);
    const r = ex.extract(u);
    features.set(r.features, first * D);
    logits.set(r.logits, first * K);
    for (let j = 0; j < b; j++) {
      let best = 0;
      for (let k = 1; k < K; k++) if (r.logits[j * K + k] > r.logits[j * K + best]) best = k;
      if (best === labels[j]) hits++;
    }
    if (((first / batch) | 0) % 5 === 4) log(`${run.id}: ${first + b}/${n} images`);
  }
  if (wall.length === 0) throw new Error(`${run.id}: N = ${n} is smaller than the batch ${batch}: no full batch was timed`);
  const t2 = performance.now();
  const q = qualityMetrics({ features, logits }, { features: models.ref }, D, K);

  // ---- batch-1 latency (one untimed warm-up)
  sample([evalLabel(0, C)], 0);
  const w1: number[] = [], c1: number[] = [];
  for (let i = 0; i < sizes.latencyImages; i++) {
    const c0 = process.cpuUsage(), w0 = performance.now();
    sample([evalLabel(i, C)], i);
    w1.push((performance.now() - w0) / 1e3);
    const c = process.cpuUsage(c0);
    c1.push((c.user + c.system) / 1e6);
  }
  const t3 = performance.now();

  // ---- files
  const images = new Map<string, RgbImage>();
  const gridName = `samples/${run.id}.png`;
  const gridImgs = tensorToImages(concat(grid, 0)).slice(0, sizes.gridImages);
  images.set(gridName, makeGrid(gridImgs, { nrow: Math.min(10, C), padding: 2, padValue: 128 }));
  const maps: string[] = [];
  if (act && run.seed === 0) {
    const am = new ActivationMaps(act.config.experts);
    act.onActivation = am.record;
    sample([evalLabel(0, C)], 0);
    act.onActivation = null;
    for (const [name, im] of am.render(0)) { const f = `maps/${run.id}_image0_${name}.png`; images.set(f, im); maps.push(f); }
  }
  model.releaseCaches();

  for (const k of Object.keys(byCat)) byCat[k] = Math.round(byCat[k] / n);
  const record: RunRecord = {
    format: 'actvar-reproduce-run/1', id: run.id, setting: run.setting, seed: run.seed, mode: ctx.mode, sizes: { ...sizes },
    config: act ? act.config : null, baseline, init,
    gflopsPerImage: flops / n / 1e9, flopsByCategory: byCat,
    metrics: { ...q, classAccuracy: hits / n, extractor: `${ex.name} (the shipped Fashion-MNIST classifier's features; not Inception)`, extractorSha256: ex.weightsHash, ref: models.refName },
    latency: { batch1: latency(1, w1, c1), batchN: latency(batch, wall, cpu) },
    seconds: { setup: (t1 - t0) / 1e3, metricPass: (t2 - t1) / 1e3, latency: (t3 - t2) / 1e3, total: (performance.now() - t0) / 1e3, cpu: cpuSeconds(cpu0) },
    files: { grid: gridName, maps },
    commit: ctx.commit, machine: ctx.machine, load: [load0, os.loadavg()[0]], started: started.toISOString(), finished: new Date().toISOString(),
  };
  return { record, images };
}
