/**
 * The demo (`actvar demo`, `npm run demo`): the shipped Fashion-MNIST tokenizer, VAR and classifier;
 * `perClass` samples of every class with the dense VAR and with ActVAR (paper §3.2–3.4) side by side,
 * with wall-clock time, measured FLOPs and class accuracy of each mode.
 *
 * Method (so that the comparison is paired and fair on a busy machine):
 * - Image i (class-major order: class 0 ×perClass, class 1 ×perClass, …) samples from its own Rng,
 *   seeded by `imageSeed(seed, i)` (src/var/sample.ts), in both modes; results do not depend on the batch size.
 * - Generation runs in batches of `batch` images (rows = 2·batch with CFG); every batch runs in both
 *   modes right after each other, the first mode alternating (dense, ActVAR, ActVAR, dense, …), so
 *   that load from other processes and warm-up effects hit both alike, `repeats` times; the fastest
 *   run of each (batch, mode) counts (best-of-n, as `actvar bench`: robust against other load on a
 *   shared machine; the repeats sample the very same images). One image of each mode is generated
 *   first as a warm-up (not timed). Process CPU seconds (best of the repeats) are recorded too.
 * - Time per mode = "transformer" (KV-cache sampling over all scales: blocks, head, sampling and the
 *   VQVAE's f̂ updates, docs/VAR.md §6) + "decode" (f̂ → image, §4.4).
 * - GFLOPs per image = the FLOPs counter (src/tensor/flops.ts) over the timed sampling runs, transformer
 *   only (every category except the VQVAE's `phi` and `vqvae_decode`), CFG on, divided by the images.
 * - ActVAR: default (75,75;75) at the last two scales with 16 experts (config.ts). Without
 *   `actvarWeights` the routers and selectors get the training-free initialisation of
 *   src/actvar/init.ts, fitted on `calib` dense generations of the model itself (classes spread
 *   evenly, seeded); that time is reported as `calib_s`, apart from `actvar_s`.
 * - Class accuracy: the shipped classifier's prediction vs. the class each sample was generated for
 *   (`classAccuracy`, images in [−1, 1]).
 *
 * Files (only at the end, each atomically; a failure leaves nothing behind): `dense.png`,
 * `actvar.png` (one row per class, `perClass` columns) and `demo.png` (both grids side by side).
 * Missing model files are reported together, naming the command that makes each.
 */
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { Tensor, Rng, concat, countFlops, flopsCategory, noGrad, type FlopsCounter } from '../tensor/index.js';
import { toUnitRange, type VAR, type InferResult } from '../var/var.js';
import { imageSeed } from '../var/sample.js';
import type { VQVAE } from '../vqvae/vqvae.js';
import { ActVAR } from '../actvar/actvar.js';
import { loadActVar, actVarModelInfo } from '../actvar/file.js';
import { varParamsHash } from '../actvar/hash.js';
import { validateDistill } from '../actvar/distill.js';
import { loadDataset, type ImageDataset } from '../data/datasets.js';
import { ActVarConfigError, type ActVarConfig } from '../actvar/config.js';
import { loadVqvae, VQVAE_FORMAT } from '../vqvae/load.js';
import { loadVar, VAR_FORMAT } from '../var/load.js';
import { detectWeightFormat, loadedFrom } from '../io/weights.js';
import { readSafetensorsHeader } from '../io/safetensors.js';
import { loadClassifier, predictBatched, CLASSIFIER_IMAGE_SIZE, type Classifier } from '../eval/classifier.js';
import { FASHION_MNIST_CLASSES, MNIST_CLASSES } from '../data/datasets.js';
import { makeGrid, encodePng, writeFileAtomic, tensorToImages, type RgbImage } from '../image/png.js';
import { unreadableFile, unwritableTarget } from '../io/files.js';

/** File names of the shipped models inside `modelsDir` (docs/MODELS.md). */
export const DEMO_MODEL_FILES = {
  tokenizer: 'tokenizer-fashion-mnist.safetensors',
  var: 'var-fashion-mnist.safetensors',
  classifier: 'classifier-fashion-mnist.safetensors',
} as const;

/** The distilled ActVAR of the shipped VAR (`actvar distill`, docs/MODELS.md); optional: without it the demo shows two modes. */
export const DEMO_ACTVAR_MODEL_FILE = 'actvar-fashion-mnist.safetensors';

/** Sampling defaults of the demo (the shipped VAR's class accuracy is reported at these). */
export const DEMO_DEFAULTS = Object.freeze({
  modelsDir: 'models', outDir: 'out/demo', perClass: 10, cfg: 1.5, topK: 0, topP: 0, seed: 0, batch: 50, calib: 4, repeats: 2, klImages: 100,
});

/** ActVAR settings `tokenRates`, `expertRate`, `experts`, `scales` (default: config.ts, (75,75;75) at the last two scales). */
export interface DemoOptions extends Partial<Pick<ActVarConfig, 'tokenRates' | 'expertRate' | 'experts' | 'scales' | 'kvPolicy'>> {
  /** Folder of the shipped models (default 'models'). */
  modelsDir?: string;
  /** Override single files (default: `modelsDir`/DEMO_MODEL_FILES). */
  tokenizer?: string;
  var?: string;
  classifier?: string;
  /** Where the PNGs go (default 'out/demo'); null: write nothing. */
  outDir?: string | null;
  /** Samples per class and mode (default 10 → 100 per mode for 10 classes). */
  perClass?: number;
  /** CFG strength, top-k (0 = off), top-p (0 = off), sampling seed. */
  cfg?: number;
  topK?: number;
  topP?: number;
  seed?: number;
  /** Run ActVAR next to the dense model (default true). */
  actvar?: boolean;
  /** Saved / distilled router+selector weights (.safetensors) instead of the training-free init. */
  actvarWeights?: string;
  /**
   * A distilled ActVAR model file (`actvar distill`) shown as a third mode; default `modelsDir`/DEMO_ACTVAR_MODEL_FILE
   * when that file exists; null: none. Its base VAR must be the demo's VAR (checked by hash).
   */
  actvarModel?: string | null;
  /** Test images for the teacher-forced KL of each ActVAR to the dense VAR (default 100; 0 = skip). */
  klImages?: number;
  /** Folder of the Fashion-MNIST / MNIST IDX files for the KL (default: where the dataset package installs them). */
  dataDir?: string;
  /** Dense generations for the training-free calibration (default 4; 0 = data-free init). */
  calib?: number;
  /** Images per forward pass (default 50). */
  batch?: number;
  /** Timed runs of every batch in each mode; the fastest counts (default 2). */
  repeats?: number;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

/** One mode's measurements. */
export interface DemoModeResult {
  /** Seconds for all images of the mode: sampling (transformer) + decode. */
  seconds: number;
  transformerSeconds: number;
  decodeSeconds: number;
  /** Process CPU seconds (all threads) of the same runs: steadier than wall time on a shared machine. */
  cpuSeconds: number;
  /** Transformer GFLOPs per image (CFG on), measured. */
  gflops: number;
  /** FLOPs per image by category (all kernels of sampling and decode). */
  flopsByCategory: Record<string, number>;
  classAccuracy: number;
  perClassAccuracy: number[];
  /** Classifier prediction per image. */
  predictions: Int32Array;
  /** Images in [−1, 1], [N, 1, 32, 32]. */
  images: Tensor;
}

/** The result (the JSON line of `actvar demo --json` is `toJSON(result)`). */
export interface DemoResult {
  images: number;
  perClass: number;
  classes: string[];
  labels: number[];
  settings: { cfg: number; topK: number; topP: number; seed: number; batch: number; repeats: number };
  dense: DemoModeResult;
  /** The training-free ActVAR (calibrated, or --actvar-weights). */
  actvar: (DemoModeResult & { config: ActVarConfig; init: string; calibSeconds: number; klToDense: number | null }) | null;
  /** The distilled ActVAR model (null without one). */
  distilled: (DemoModeResult & { config: ActVarConfig; file: string; klToDense: number | null }) | null;
  /** Test images of the KL numbers (0 when skipped), and why they were skipped. */
  klImages: number;
  klNote: string | null;
  /** 1 − actvar/dense, transformer GFLOPs and total seconds (null without ActVAR). */
  flopsSaving: number | null;
  timeSaving: number | null;
  transformerTimeSaving: number | null;
  /** Fraction of paired samples that the classifier puts in the same class in both modes. */
  pairedAgreement: number | null;
  /** Wall seconds of the whole run (loading, calibration, generation, scoring, writing). */
  totalSeconds: number;
  files: string[];
}

/** A mistake the user can fix (missing or unsuitable model file, bad option): the CLI exits 2. */
export class DemoError extends Error {
  readonly userError = true;
  constructor(message: string) { super(message); this.name = 'DemoError'; }
}

/** The model files the demo reads, and how to make each when it is missing. */
export function demoModelPaths(o: Pick<DemoOptions, 'modelsDir' | 'tokenizer' | 'var' | 'classifier'>): { tokenizer: string; var: string; classifier: string } {
  const dir = o.modelsDir ?? DEMO_DEFAULTS.modelsDir;
  return {
    tokenizer: o.tokenizer ?? nodePath.join(dir, DEMO_MODEL_FILES.tokenizer),
    var: o.var ?? nodePath.join(dir, DEMO_MODEL_FILES.var),
    classifier: o.classifier ?? nodePath.join(dir, DEMO_MODEL_FILES.classifier),
  };
}

function checkModelFiles(p: { tokenizer: string; var: string; classifier: string }): void {
  const make: Record<keyof typeof p, string> = {
    tokenizer: `actvar train-vae --out ${p.tokenizer}`,
    var: `actvar train-var --tokenizer ${p.tokenizer} --out ${p.var}`,
    classifier: `actvar train-classifier --out ${p.classifier}`,
  };
  const problems: string[] = [];
  for (const k of ['tokenizer', 'var', 'classifier'] as const) {
    const f = p[k], code = unreadableFile(f);
    const why = code === null ? null : code === 'ENOENT' ? 'missing' : code === 'not a file' ? code : `cannot read it (${code})`;
    if (why) problems.push(`the ${k} ${f}: ${why}; make it with \`${make[k]}\``);
  }
  if (problems.length) {
    throw new DemoError(`the demo needs the trained models:\n  - ${problems.join('\n  - ')}\n` +
      '(docs/MODELS.md has the exact commands of the shipped models; --models DIR or --tokenizer/--var/--classifier FILE point elsewhere)');
  }
}

function checkOutDir(dir: string): void {
  const why = unwritableTarget(dir, true);
  if (why) throw new DemoError(`--out-dir ${dir}: ${why}`);
}

function positiveInt(v: number, what: string): void {
  if (!Number.isInteger(v) || v < 1) throw new DemoError(`${what} must be an integer >= 1, got ${v}`);
}

/** Load a model file; a file that is not what it should be is the user's to fix. */
/** The demo needs actvar's own files (their metadata names the dataset): refuse an official checkpoint. */
function ownFile(path: string, format: string, what: string): string {
  const got = detectWeightFormat(path) === 'safetensors' ? readSafetensorsHeader(path).metadata?.format : undefined;
  if (got !== format) throw new Error(`not ${what} (metadata format "${got ?? 'none'}", expected "${format}")`);
  return path;
}

function load<T>(what: string, path: string, fn: () => T): T {
  try { return fn(); } catch (e) {
    const msg = (e as Error).message;
    throw new DemoError(`cannot load the ${what} ${path}: ${msg.startsWith(path) ? msg.slice(path.length).replace(/^:\s*/, '') : msg}`);
  }
}

/** Two images next to each other, `gap` pixels of `value` between them (top-aligned). */
function sideBySide(a: RgbImage, b: RgbImage, gap = 12, value = 255): RgbImage {
  const W = a.width + gap + b.width, H = Math.max(a.height, b.height);
  const data = new Uint8Array(W * H * 3).fill(value);
  for (const [im, x0] of [[a, 0], [b, a.width + gap]] as const) {
    for (let y = 0; y < im.height; y++) data.set(im.data.subarray(y * im.width * 3, (y + 1) * im.width * 3), (y * W + x0) * 3);
  }
  return { width: W, height: H, data };
}

/** Transformer FLOPs of a counter: everything except the VQVAE (f̂ updates and decoding). */
export function transformerFlops(c: FlopsCounter): number {
  let s = 0;
  for (const [k, v] of c.byCategory) if (k !== 'phi' && !k.startsWith('vqvae')) s += v;
  return s;
}

interface ModeAcc { transformer: number; decode: number; cpu: number; flops: FlopsCounter[]; images: Tensor[] }

const r4 = (v: number): number => Math.round(v * 1e4) / 1e4;
const r6 = (v: number): number => Math.round(v * 1e6) / 1e6;

/** Run the demo. Throws DemoError for problems the user can fix; writes files only at the end. */
export function runDemo(opts: DemoOptions = {}): DemoResult {
  const tStart = performance.now();
  const log = opts.log ?? (() => {});
  const d = DEMO_DEFAULTS;
  const perClass = opts.perClass ?? d.perClass, batch = opts.batch ?? d.batch, calib = opts.calib ?? d.calib, repeats = opts.repeats ?? d.repeats;
  const cfg = opts.cfg ?? d.cfg, topK = opts.topK ?? d.topK, topP = opts.topP ?? d.topP, seed = opts.seed ?? d.seed;
  const withActVar = opts.actvar ?? true;
  const outDir = opts.outDir === undefined ? d.outDir : opts.outDir;

  // ---- validate everything that needs no weights
  positiveInt(perClass, '--per-class');
  positiveInt(batch, '--batch');
  positiveInt(repeats, '--repeats');
  if (!Number.isInteger(calib) || calib < 0) throw new DemoError(`--actvar-calib must be an integer >= 0, got ${calib}`);
  if (!(cfg >= 0) || !Number.isFinite(cfg)) throw new DemoError(`--cfg must be a finite number >= 0, got ${cfg}`);
  if (!Number.isInteger(topK) || topK < 0) throw new DemoError(`--top-k must be an integer >= 0 (0 = off), got ${topK}`);
  if (!(topP >= 0 && topP <= 1)) throw new DemoError(`--top-p must be in [0, 1] (0 = off), got ${topP}`);
  if (!Number.isInteger(seed) || seed < 0) throw new DemoError(`--seed must be an integer >= 0, got ${seed}`);
  const settings: Partial<ActVarConfig> = {};
  if (opts.tokenRates !== undefined) settings.tokenRates = opts.tokenRates;
  if (opts.expertRate !== undefined) settings.expertRate = opts.expertRate;
  if (opts.experts !== undefined) settings.experts = opts.experts;
  if (opts.scales !== undefined) settings.scales = opts.scales;
  if (opts.kvPolicy !== undefined) settings.kvPolicy = opts.kvPolicy;
  if (!withActVar) {
    const given = [...Object.keys(settings), ...(opts.actvarWeights !== undefined ? ['actvarWeights'] : [])];
    if (given.length) throw new DemoError(`--${given[0].replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())} has no effect with --no-actvar`);
  }
  for (const r of [...(settings.tokenRates ?? []), ...(settings.expertRate !== undefined ? [settings.expertRate] : [])]) {
    if (r > 1 && r <= 100) throw new DemoError(`activation rates are fractions in (0, 1], e.g. 0.75 for 75%; got ${r}`);
  }
  const paths = demoModelPaths(opts);
  checkModelFiles(paths);
  if (withActVar && opts.actvarWeights !== undefined) {
    const why = unreadableFile(opts.actvarWeights);
    if (why) throw new DemoError(`--actvar-weights ${opts.actvarWeights}: cannot read the file (${why})`);
  }
  if (outDir !== null) checkOutDir(outDir);
  // the distilled model: given, or the shipped one when it is there
  const klN = opts.klImages ?? d.klImages;
  if (!Number.isInteger(klN) || klN < 0 || klN > 10_000) throw new DemoError(`--kl-images must be an integer in [0, 10000], got ${klN}`);
  let distilledFile: string | null = null;
  if (withActVar && opts.actvarModel !== null) {
    const f = opts.actvarModel ?? nodePath.join(opts.modelsDir ?? d.modelsDir, DEMO_ACTVAR_MODEL_FILE);
    const why = unreadableFile(f);
    if (!why) distilledFile = f;
    else if (opts.actvarModel !== undefined) throw new DemoError(`--actvar-model ${f}: cannot read the file (${why}); make it with \`actvar distill --out ${f}\``);
  } else if (!withActVar && opts.actvarModel) {
    throw new DemoError('--actvar-model has no effect with --no-actvar');
  }

  // ---- models
  const vqvae: VQVAE = load('tokenizer', paths.tokenizer, () => loadVqvae(ownFile(paths.tokenizer, VQVAE_FORMAT, 'a tokenizer written by `actvar train-vae`')));
  const model: VAR = load('VAR', paths.var, () => loadVar(ownFile(paths.var, VAR_FORMAT, 'a VAR written by `actvar train-var`')));
  const varMeta = loadedFrom(model)!.metadata;
  const clf: Classifier = load('classifier', paths.classifier, () => loadClassifier(paths.classifier));
  const vc = model.config;
  if (vqvae.Cvae !== vc.Cvae || vqvae.vocabSize !== vc.vocabSize || vqvae.patchNums.join() !== vc.patchNums.join()) {
    throw new DemoError(`the tokenizer ${paths.tokenizer} (Cvae ${vqvae.Cvae}, vocabulary ${vqvae.vocabSize}, patch numbers ${vqvae.patchNums.join(',')}) ` +
      `does not fit the VAR ${paths.var} (Cvae ${vc.Cvae}, vocabulary ${vc.vocabSize}, patch numbers ${vc.patchNums.join(',')}); ` +
      'use the tokenizer the VAR was trained on');
  }
  const img = vqvae.config;
  if (img.inChannels !== 1 || img.imgSize !== CLASSIFIER_IMAGE_SIZE) {
    throw new DemoError(`the tokenizer ${paths.tokenizer} makes ${img.inChannels}-channel ${img.imgSize}×${img.imgSize} images; ` +
      `the classifier scores grey ${CLASSIFIER_IMAGE_SIZE}×${CLASSIFIER_IMAGE_SIZE} images (a Fashion-MNIST / MNIST tokenizer from \`actvar train-vae\`)`);
  }
  if (clf.config.numClasses !== vc.numClasses) {
    throw new DemoError(`the classifier ${paths.classifier} knows ${clf.config.numClasses} classes but the VAR ${paths.var} generates ${vc.numClasses}; use models of the same dataset`);
  }
  const nc = vc.numClasses;
  const names = varMeta.dataset === 'mnist' ? MNIST_CLASSES : varMeta.dataset === 'fashion-mnist' ? FASHION_MNIST_CLASSES : null;
  const classes = Array.from({ length: nc }, (_, c) => names?.[c] ?? String(c));
  const labels: number[] = [];
  for (let c = 0; c < nc; c++) for (let k = 0; k < perClass; k++) labels.push(c);
  const N = labels.length;
  log(`VAR depth ${vc.depth}, width ${vc.width}, ${vc.patchNums.length} scales (${vc.patchNums.join(',')}); ` +
    `${N} images per mode (${nc} classes × ${perClass}), CFG ${cfg}, top-k ${topK || 'off'}, top-p ${topP || 'off'}, seed ${seed}`);

  // ---- ActVAR
  let act: ActVAR | null = null, init = '', calibSeconds = 0;
  let distilled: ActVAR | null = null;
  if (withActVar) {
    try {
      if (opts.actvarWeights !== undefined) {
        act = load('ActVAR weights', opts.actvarWeights, () => ActVAR.load(model, opts.actvarWeights!, settings));
        init = `weights ${opts.actvarWeights}`;
      } else {
        act = ActVAR.wrap(model, settings, { allowUntrained: calib === 0 });
        if (calib > 0) {
          // classes spread evenly over the label range, a seeded Rng: deterministic
          const calibLabels = Array.from({ length: calib }, (_, k) => Math.floor((k * nc) / calib));
          log(`ActVAR: calibrating routers and selectors on ${calib} dense generation(s) (classes ${calibLabels.join(',')}) …`);
          const t0 = performance.now();
          act.calibrate({ vqvae, labels: calibLabels, cfg, topK, topP, rng: new Rng((seed ^ 0x5eed) >>> 0) });
          calibSeconds = (performance.now() - t0) / 1e3;
          init = `training-free, calibrated on ${calib} dense generation(s)`;
        } else {
          init = 'training-free, data-free (router from the FFN weights, uniform selector)';
        }
      }
      if (distilledFile) {
        distilled = load('distilled ActVAR', distilledFile, () => loadActVar(distilledFile, settings));
        const base = actVarModelInfo(distilled)?.base_var_sha256;
        if (base !== varParamsHash(model)) {
          throw new DemoError(`the distilled ActVAR ${distilledFile} was distilled from another VAR than ${paths.var}; give the VAR it came from, or --actvar-model of this VAR`);
        }
        log(`distilled ActVAR: ${distilledFile}`);
      }
    } catch (e) {
      if (e instanceof ActVarConfigError) throw new DemoError(e.message);
      throw e;
    }
  }

  // ---- teacher-forced KL of each ActVAR to the dense VAR on held-out test images (they never trained anything)
  let klImages = 0, klNote: string | null = null;
  const kl = new Map<ActVAR, number>();
  if ((act || distilled) && klN > 0) {
    let test: ImageDataset | null = null;
    try { test = loadDataset(varMeta.dataset === 'mnist' ? 'mnist' : 'fashion-mnist', 'test', { dir: opts.dataDir, limit: klN }); } catch (e) {
      klNote = `KL to dense skipped: ${(e as Error).message.split('. ')[0]}`;
      log(klNote);
    }
    if (test) {
      const t0 = performance.now();
      const batches: { idxBl: Tensor[]; labels: Int32Array }[] = [];
      noGrad(() => {
        for (let i = 0; i < test!.length; i += 50) {
          const idx = Int32Array.from({ length: Math.min(50, test!.length - i) }, (_, k) => i + k);
          batches.push({ idxBl: vqvae.imgToIdxBl(test!.images(idx)), labels: test!.labels.subarray(i, i + idx.length) });
        }
      });
      for (const a of [act, distilled]) if (a) kl.set(a, validateDistill(a, model, vqvae, batches).klToDense);
      klImages = test.length;
      log(`KL to dense on ${klImages} test images (teacher-forced): ${[...kl.values()].map((v) => v.toFixed(4)).join(', ')} in ${((performance.now() - t0) / 1e3).toFixed(1)} s`);
    }
  }

  // ---- generation: warm-up, then interleaved timed batches
  const rngs = (first: number, n: number): Rng[] => Array.from({ length: n }, (_, j) => new Rng(imageSeed(seed, first + j)));
  const sample = (lab: number[], first: number, a: ActVAR | null): InferResult => (a ? a.model : model).autoregressiveInfer({
    labels: lab, vqvae, cfg, topK, topP, rng: rngs(first, lab.length), decode: false,
    ...(a ? a.hooks : {}),
  });
  const decode = (r: InferResult): Tensor => flopsCategory('vqvae_decode', () => vqvae.fhatToImg(r.fHat));
  const newAcc = (): ModeAcc => ({ transformer: 0, decode: 0, cpu: 0, flops: [], images: [] });
  const modes: { act: ActVAR | null; name: string; acc: ModeAcc }[] = [{ act: null, name: 'dense', acc: newAcc() }];
  if (act) modes.push({ act, name: 'ActVAR', acc: newAcc() });
  if (distilled) modes.push({ act: distilled, name: 'distilled', acc: newAcc() });
  log('warm-up …');
  for (const m of modes) decode(sample([0], 0, m.act));

  const nb = Math.ceil(N / batch);
  for (let bi = 0; bi < nb; bi++) {
    const first = bi * batch, lab = labels.slice(first, first + batch);
    const best = modes.map(() => ({ total: Infinity, transformer: 0, decode: 0, cpu: Infinity }));
    for (let rep = 0; rep < repeats; rep++) {
      // rotate which mode goes first (and reverse every other time), so that drifting load and cache effects hit all alike
      const k = bi * repeats + rep;
      const order = modes.map((_, i) => (i + k) % modes.length);
      if (k % 2 === 1) order.reverse();
      for (const mi of order) {
        const m = modes[mi];
        const c0 = process.cpuUsage();
        const t0 = performance.now();
        // repeats sample the same images: only the first one counts FLOPs and keeps its images
        const counted = rep === 0;
        const sampled = counted ? countFlops(() => sample(lab, first, m.act)) : { result: sample(lab, first, m.act), flops: null };
        const t1 = performance.now();
        const decoded = counted ? countFlops(() => decode(sampled.result)) : { result: decode(sampled.result), flops: null };
        const t2 = performance.now();
        const c = process.cpuUsage(c0);
        const b = best[mi], total = (t2 - t0) / 1e3;
        if (total < b.total) { b.total = total; b.transformer = (t1 - t0) / 1e3; b.decode = (t2 - t1) / 1e3; }
        b.cpu = Math.min(b.cpu, (c.user + c.system) / 1e6);
        if (sampled.flops && decoded.flops) { m.acc.flops.push(sampled.flops, decoded.flops); m.acc.images.push(decoded.result); }
      }
    }
    modes.forEach((m, mi) => { m.acc.transformer += best[mi].transformer; m.acc.decode += best[mi].decode; m.acc.cpu += best[mi].cpu; });
    log(`batch ${bi + 1}/${nb} (${lab.length} images): ${modes.map((m, mi) => `${m.name} ${best[mi].total.toFixed(2)} s`).join(', ')}` +
      (repeats > 1 ? ` (best of ${repeats})` : ''));
  }
  model.releaseCaches();
  distilled?.model.releaseCaches();

  // ---- scoring
  const finish = (acc: ModeAcc): DemoModeResult => {
    const images = acc.images.length === 1 ? acc.images[0] : concat(acc.images, 0);
    const byCat: Record<string, number> = {};
    let tf = 0;
    for (const f of acc.flops) {
      tf += transformerFlops(f);
      for (const [k, v] of f.byCategory) byCat[k] = (byCat[k] ?? 0) + v;
    }
    const predictions = predictBatched(clf, images);
    const hits = new Array<number>(nc).fill(0);
    labels.forEach((y, i) => { if (predictions[i] === y) hits[y]++; });
    for (const k of Object.keys(byCat)) byCat[k] = Math.round(byCat[k] / N);
    return {
      seconds: acc.transformer + acc.decode, transformerSeconds: acc.transformer, decodeSeconds: acc.decode, cpuSeconds: acc.cpu,
      gflops: tf / N / 1e9, flopsByCategory: byCat,
      classAccuracy: hits.reduce((a, h) => a + h, 0) / N, perClassAccuracy: hits.map((h) => h / perClass),
      predictions, images,
    };
  };
  const dense = finish(modes[0].acc);
  const actMode = modes.find((m) => m.act === act && act);
  const distMode = modes.find((m) => m.act === distilled && distilled);
  const sparse = act && actMode ? { ...finish(actMode.acc), config: act.config, init, calibSeconds, klToDense: kl.get(act) ?? null } : null;
  const dist = distilled && distMode ? { ...finish(distMode.acc), config: distilled.config, file: distilledFile!, klToDense: kl.get(distilled) ?? null } : null;

  // ---- files, only now
  const files: string[] = [];
  if (outDir !== null) {
    const grid = (m: DemoModeResult): RgbImage => makeGrid(tensorToImages(toUnitRange(m.images)), { nrow: perClass, padding: 2, padValue: 128 });
    const denseGrid = grid(dense);
    const out = new Map<string, Uint8Array>();
    out.set(nodePath.join(outDir, 'dense.png'), encodePng(denseGrid));
    let all = denseGrid;
    if (sparse) {
      const sparseGrid = grid(sparse);
      out.set(nodePath.join(outDir, 'actvar.png'), encodePng(sparseGrid));
      all = sideBySide(all, sparseGrid);
    }
    if (dist) {
      const distGrid = grid(dist);
      out.set(nodePath.join(outDir, 'distilled.png'), encodePng(distGrid));
      all = sideBySide(all, distGrid);
    }
    out.set(nodePath.join(outDir, 'demo.png'), encodePng(all));
    fs.mkdirSync(nodePath.resolve(outDir), { recursive: true });
    for (const [p, b] of out) { writeFileAtomic(p, b); files.push(p); }
  }

  let agree = 0;
  if (sparse) for (let i = 0; i < N; i++) if (dense.predictions[i] === sparse.predictions[i]) agree++;
  return {
    images: N, perClass, classes, labels, settings: { cfg, topK, topP, seed, batch, repeats },
    dense, actvar: sparse, distilled: dist, klImages, klNote,
    flopsSaving: sparse ? 1 - sparse.gflops / dense.gflops : null,
    timeSaving: sparse ? 1 - sparse.seconds / dense.seconds : null,
    transformerTimeSaving: sparse ? 1 - sparse.transformerSeconds / dense.transformerSeconds : null,
    pairedAgreement: sparse ? agree / N : null,
    totalSeconds: (performance.now() - tStart) / 1e3,
    files,
  };
}

/**
 * The `--json` line: the issue's fields first, then extras. Seconds and fractions rounded to 1e-4,
 * GFLOPs to 1e-6; `*_s` are seconds for all images of a mode, `*_gflops` per image.
 */
export function demoJson(r: DemoResult): Record<string, unknown> {
  const j: Record<string, unknown> = {
    dense_s: r4(r.dense.seconds), dense_gflops: r6(r.dense.gflops), class_accuracy_dense: r4(r.dense.classAccuracy),
  };
  if (r.actvar) {
    Object.assign(j, {
      actvar_s: r4(r.actvar.seconds), actvar_gflops: r6(r.actvar.gflops), class_accuracy_actvar: r4(r.actvar.classAccuracy),
      flops_saving: r4(r.flopsSaving!), time_saving: r4(r.timeSaving!), transformer_time_saving: r4(r.transformerTimeSaving!),
      class_accuracy_training_free: r4(r.actvar.classAccuracy), kl_to_dense_training_free: r.actvar.klToDense === null ? null : r6(r.actvar.klToDense),
    });
  }
  if (r.distilled) {
    Object.assign(j, {
      class_accuracy_distilled: r4(r.distilled.classAccuracy), kl_to_dense_distilled: r.distilled.klToDense === null ? null : r6(r.distilled.klToDense),
      distilled_s: r4(r.distilled.seconds), distilled_gflops: r6(r.distilled.gflops), distilled_setting: settingLabel(r.distilled.config),
      distilled_file: r.distilled.file,
    });
  }
  if (r.actvar || r.distilled) Object.assign(j, { kl_images: r.klImages });
  Object.assign(j, {
    images: r.images, per_class: r.perClass,
    dense_transformer_s: r4(r.dense.transformerSeconds), dense_decode_s: r4(r.dense.decodeSeconds), dense_cpu_s: r4(r.dense.cpuSeconds),
  });
  if (r.actvar) {
    Object.assign(j, {
      actvar_transformer_s: r4(r.actvar.transformerSeconds), actvar_decode_s: r4(r.actvar.decodeSeconds), actvar_cpu_s: r4(r.actvar.cpuSeconds),
      setting: settingLabel(r.actvar.config), scales: r.actvar.config.scales, experts: r.actvar.config.experts,
      actvar_init: r.actvar.init, calib_s: r4(r.actvar.calibSeconds), paired_agreement: r4(r.pairedAgreement!),
    });
  }
  Object.assign(j, { ...r.settings, total_s: r4(r.totalSeconds), files: r.files });
  return j;
}

/** "(α,β;γ)" in percent, the paper's Table 2 notation. */
function settingLabel(c: ActVarConfig): string {
  return `(${c.tokenRates.map((v) => Math.round(v * 100)).join(',')};${Math.round(c.expertRate * 100)})`;
}

/** The human summary (a few lines). */
export function formatDemo(r: DemoResult): string {
  const pct = (v: number): string => `${(100 * v).toFixed(1)}%`;
  const s = r.settings;
  const lines: string[] = [];
  lines.push(`${r.images} images per mode (${r.classes.length} classes × ${r.perClass}), CFG ${s.cfg}, top-k ${s.topK || 'off'}, top-p ${s.topP || 'off'}, seed ${s.seed}`);
  if (r.actvar) {
    const c = r.actvar.config;
    lines.push(`ActVAR ${settingLabel(c)} at scales ${c.scales.join(',')}, ` +
      `${c.experts} experts, ${r.actvar.init}${r.actvar.calibSeconds ? ` in ${r.actvar.calibSeconds.toFixed(2)} s (not in the times below)` : ''}`);
  }
  if (r.distilled) {
    const c = r.distilled.config;
    lines.push(`distilled ActVAR ${settingLabel(c)} at scales ${c.scales.join(',')}, ${c.experts} experts, ${r.distilled.file}`);
  }
  lines.push('');
  lines.push('mode      transformer    decode     total  (CPU time)   GFLOPs/img   class acc');
  const row = (name: string, m: DemoModeResult): string =>
    `${name.padEnd(9)} ${m.transformerSeconds.toFixed(2).padStart(9)} s ${m.decodeSeconds.toFixed(2).padStart(7)} s ${m.seconds.toFixed(2).padStart(7)} s ` +
    `${`(${m.cpuSeconds.toFixed(2)} s)`.padStart(11)} ${m.gflops.toPrecision(4).padStart(12)} ${pct(m.classAccuracy).padStart(11)}`;
  lines.push(row('dense', r.dense));
  if (r.actvar) {
    lines.push(row('ActVAR', r.actvar));
    const cpuSaving = 1 - r.actvar.cpuSeconds / r.dense.cpuSeconds;
    lines.push(`saving    ${pct(r.transformerTimeSaving!).padStart(11)} ${''.padStart(9)} ${pct(r.timeSaving!).padStart(9)} ` +
      `${`(${pct(cpuSaving)})`.padStart(11)} ${pct(r.flopsSaving!).padStart(12)}`);
    lines.push(`(same class predicted for ${pct(r.pairedAgreement!)} of the paired samples)`);
  }
  if (r.distilled) lines.push(row('distilled', r.distilled));
  const kls = [['training-free', r.actvar?.klToDense], ['distilled', r.distilled?.klToDense]].filter(([, v]) => v !== undefined && v !== null) as [string, number][];
  if (kls.length) lines.push(`KL to dense per token (teacher-forced, ${r.klImages} test images): ${kls.map(([k, v]) => `${k} ${v.toFixed(4)}`).join(', ')}`);
  if (r.klNote) lines.push(r.klNote);
  if (r.files.length) lines.push(`wrote ${r.files.join(', ')}`);
  return lines.join('\n') + '\n';
}
