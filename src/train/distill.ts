/**
 * ActVAR's two-stage distillation (paper §3.3–3.4, Supp. §6) as a training run: the data, the stages, the
 * optimiser, validation, checkpoints and the model file. The losses and the sparse teacher-forced forward are
 * the science core's (src/actvar/distill.ts: `distillLoss`, `trainableParameters`, `validateDistill`).
 *
 * Data. The tokenizer's tokens of the first `trainLimit` training images (computed once, cached by the
 * tokenizer's SHA-256 as train-var does). The last `holdout` of them (default 1000) are held out: periodic
 * validation and the "before / after" numbers on them choose settings. The reported numbers come from the first
 * `testSamples` images of the TEST split (default 1000), measured before training (the start gates: the
 * training-free calibration) and after it.
 *
 * Stages. Stage 1 trains every block's router and selector (VAR frozen), stage 2 the student VAR's weights
 * (router and selector frozen) against a frozen copy of the dense VAR (the teacher). `stages` [1, 2] runs both
 * in one schedule of stageSteps[0] + stageSteps[1] steps; stage 2 starts from stage 1's gates with a fresh
 * optimiser. Stage 1 starts from the training-free calibration of src/actvar/init.ts on `calib` dense
 * generations (default 4, as the demo; 0 = data-free router, uniform selector), or from `init` (a gates file or
 * an ActVAR model file of an earlier run, e.g. `--stage 2 --init stage1.safetensors`).
 *
 * Optimiser (paper Supp. §6): AdamW β = (0.9, 0.95), weight decay 0.05 (not on biases and 1-d tensors, VAR's
 * no-decay list), lr 2e-4 at batch 512, scaled LINEARLY to the batch (lr = 2e-4 · B / 512, as VAR's own recipe
 * scales its base lr, docs/VAR.md §7) unless given; a linear warm-up over the first `warmupSteps` of each stage (default 2 %),
 * then constant (the paper names no schedule) or, with `schedule`, VAR's 'lin0' or a cosine decay to 0.01 × peak
 * over the stage; gradient-norm clip 2 (VAR's tclip).
 *
 * Resume. The batch position, the label-dropout Rng, the student's weights (VAR and gates) and the current
 * stage's optimizer are checkpointed; the numbers measured before training travel in the checkpoint, so an
 * interrupted and resumed run equals an uninterrupted one bit for bit (test/distill.test.ts).
 */
import { writeFileSync } from 'node:fs';
import { sha256File } from '../io/node-fs.js';
import { Tensor, noGrad } from '../tensor/tensor.js';
import { Rng } from '../tensor/rng.js';
import { AdamW } from '../optim/adamw.js';
import { clipGradNorm } from '../optim/clip.js';
import { lrAt, paramGroups, type ScheduleKind } from '../optim/schedule.js';
import { readSafetensorsHeader } from '../io/safetensors.js';
import type { VAR } from '../var/var.js';
import { loadVar } from '../var/load.js';
import { loadVqvae } from '../vqvae/load.js';
import type { VQVAE } from '../vqvae/vqvae.js';
import { ActVAR } from '../actvar/actvar.js';
import { ActVarConfigError, type ActVarConfig } from '../actvar/config.js';
import { varParamsHash } from '../actvar/hash.js';
import { encodeActVarModel, isActVarModel, loadActVar } from '../actvar/file.js';
import { DataLoader, ImageDataset, type LoaderState } from '../data/datasets.js';
import {
  distillLoss, trainableParameters, validateDistill, cloneVar,
  type DistillBatch, type DistillHyper, type DistillStage, type DistillValidation,
} from '../actvar/distill.js';
import { cachedTokens, hashParams, tokensToIdxBl } from './train-var.js';
import { restoreCheckpoint, saveCheckpoint } from './checkpoint.js';
import { findResume, jsonlLogger, resolveRun, trainLoop, writeFinal, type StepRecord, type TrainLoopResult, type TrainRunOptions } from './loop.js';

/** The science core the trainer drives (src/actvar/distill.ts by default; tests may pass a stand-in). */
export interface DistillCore {
  distillLoss(stage: DistillStage, student: ActVAR, teacher: VAR, vae: VQVAE, batch: DistillBatch,
    opts: { training: boolean; rng?: Rng; hyper?: Partial<DistillHyper> }): { loss: Tensor; parts: Record<string, number>; correct: number; tokens: number };
  trainableParameters(student: ActVAR, stage: DistillStage): Map<string, Tensor>;
  validateDistill(student: ActVAR, teacher: VAR, vae: VQVAE, batches: Iterable<DistillBatch>): DistillValidation;
}

export const DISTILL_CORE: DistillCore = { distillLoss, trainableParameters, validateDistill };

/** Linear scaling of the paper's lr (2e-4 at batch 512) to batch B. */
export function scaledLr(batchSize: number): number { return 2e-4 * batchSize / 512; }

export interface DistillOptions extends Omit<TrainRunOptions, 'steps' | 'evalSamples'> {
  /** The dense VAR (teacher and the student's start): a path or the model. */
  var: string | VAR;
  /** The tokenizer the VAR was trained on: a path or the model. */
  tokenizer: string | VQVAE;
  /** Stages to run, in order: [1], [2] or [1, 2]. */
  stages: DistillStage[];
  /** Steps of each stage in `stages`. */
  stageSteps: number[];
  /** ActVAR settings (rates, scales, experts, kvPolicy …); default config.ts's. */
  actvar?: Partial<ActVarConfig>;
  /** Learning rate of stage 2 (default: `lr`). */
  lr2?: number;
  /**
   * Shape of each stage's lr after its warm-up (src/optim/schedule.ts `lrAt`): 'const' (default; the paper
   * names no schedule), 'lin0' (VAR's own recipe: peak for 5 %, then linear to 0.01 × peak at the stage's
   * last step) or 'cos' (cosine to 0.01 × peak).
   */
  schedule?: ScheduleKind;
  /** Start gates: a gates file or an ActVAR model file (path) of an earlier run; default: calibrate. */
  init?: string;
  /** Dense generations of the training-free calibration that stage 1 starts from (default 4; 0 = data-free). */
  calib?: number;
  /** Training images held out for validation (the last ones of the first trainLimit; default 1000). */
  holdout?: number;
  /** Held-out images of the periodic validation (default 500). */
  evalSamples?: number;
  /** Test images of the reported before/after numbers (default 1000; 0 = none). */
  testSamples?: number;
  /** Loss weights (α, β, …; the core's defaults otherwise). */
  hyper?: Partial<DistillHyper>;
  /** Gradient-norm clip (default 2; 0 = off). */
  clip?: number;
  /** Folder for the token caches. */
  tokenCacheDir?: string;
  /** The command line, recorded in the model file. */
  command?: string;
  /** The science core (default: src/actvar/distill.ts). */
  core?: DistillCore;
}

export interface DistillResult {
  actvar: ActVAR;
  teacher: VAR;
  history: StepRecord[];
  loop: TrainLoopResult;
  startStep: number;
  /** Held-out (train split) and test numbers before and after training. */
  before: { val: DistillValidation; test: DistillValidation | null };
  after: { val: DistillValidation; test: DistillValidation | null };
  /** Steps per stage, in order. */
  stages: { stage: DistillStage; steps: number }[];
  lr: number;
  lr2: number;
}

/** Rows [start, end) of a dataset as a dataset (a view). */
function rowsOf(ds: ImageDataset, start: number, end: number): ImageDataset {
  const px = ds.side * ds.side;
  return new ImageDataset({ name: ds.name, split: ds.split, side: ds.side, classes: ds.classes, pixels: ds.pixels.subarray(start * px, end * px), labels: ds.labels.subarray(start, end) });
}

/** Batches of `bs` rows of a token table, in order. */
function* tokenBatches(tokens: Int32Array, labels: Int32Array, n: number, L: number, pns: readonly number[], bs: number): Generator<DistillBatch> {
  for (let i = 0; i < n; i += bs) {
    const rows = Int32Array.from({ length: Math.min(bs, n - i) }, (_, k) => i + k);
    yield { idxBl: tokensToIdxBl(tokens, L, rows, pns), labels: labels.subarray(i, i + rows.length) };
  }
}

export type { DistillBatch, DistillStage, DistillValidation };

export async function distill(opts: DistillOptions): Promise<DistillResult> {
  if (opts.stages.length === 0 || opts.stages.length !== opts.stageSteps.length) throw new RangeError('distill: give the steps of every stage');
  for (const s of opts.stageSteps) if (!Number.isInteger(s) || s < 1) throw new RangeError(`distill: stage steps must be positive integers, got ${s}`);
  const totalSteps = opts.stageSteps.reduce((a, b) => a + b, 0);
  const { log, train: trainAll, test } = resolveRun({ ...opts, steps: totalSteps });
  const core = opts.core ?? DISTILL_CORE;

  // ---- models
  const vae = typeof opts.tokenizer === 'string' ? loadVqvae(opts.tokenizer) : opts.tokenizer;
  const vaeHash = typeof opts.tokenizer === 'string' ? sha256File(opts.tokenizer) : hashParams(vae.stateDict());
  vae.setRequiresGrad(false);
  const teacher = typeof opts.var === 'string' ? loadVar(opts.var) : opts.var;
  teacher.setRequiresGrad(false);
  const vc = teacher.config;
  if (vae.Cvae !== vc.Cvae || vae.vocabSize !== vc.vocabSize || vae.patchNums.join() !== vc.patchNums.join()) {
    throw new ActVarConfigError(`the tokenizer (Cvae ${vae.Cvae}, vocabulary ${vae.vocabSize}, patch numbers ${vae.patchNums.join(',')}) does not fit the VAR ` +
      `(Cvae ${vc.Cvae}, vocabulary ${vc.vocabSize}, patch numbers ${vc.patchNums.join(',')}); give the tokenizer the VAR was trained on`);
  }
  const baseHash = varParamsHash(teacher);
  // the student: a copy of the teacher, or the VAR of an earlier ActVAR model file
  let student: ActVAR;
  let initHash: string | null = null;
  if (opts.init) {
    const { metadata } = readSafetensorsHeader(opts.init);
    initHash = sha256File(opts.init);
    if (isActVarModel(metadata)) {
      student = loadActVar(opts.init, opts.actvar ?? {});
      const b = metadata?.base_var_sha256;
      if (b !== baseHash) throw new ActVarConfigError(`--init ${opts.init} was distilled from another VAR (base SHA-256 ${b?.slice(0, 16)}…, --var's ${baseHash.slice(0, 16)}…)`);
    } else {
      student = ActVAR.load(cloneVar(teacher), opts.init, opts.actvar ?? {});
    }
  } else {
    student = ActVAR.wrap(cloneVar(teacher), opts.actvar ?? {});
  }
  if (student.config.grouping !== 'contiguous') throw new ActVarConfigError('distillation trains contiguous experts only (co-activation grouping permutes copies of the FFN weights)');
  const bs = opts.batchSize ?? 32;
  const lr = opts.lr ?? scaledLr(bs);
  const o = {
    batchSize: bs, lr, lr2: opts.lr2 ?? lr, weightDecay: opts.weightDecay ?? 0.05, clip: opts.clip ?? 2, seed: opts.seed ?? 0,
    holdout: opts.holdout ?? 1000, calib: opts.calib ?? 4, warmup: opts.warmupSteps ?? null, schedule: opts.schedule ?? ('const' as ScheduleKind),
  };
  if (o.holdout < 1 || o.holdout >= trainAll.length) throw new RangeError(`holdout must be in 1..${trainAll.length - 1}, got ${o.holdout}`);
  const trainN = trainAll.length - o.holdout;
  if (bs > trainN) throw new RangeError(`batch size ${bs} exceeds the ${trainN} training images left after the held-out ${o.holdout}`);
  const signature = {
    dataset: trainAll.name, images: trainAll.length, tokenizer: vaeHash, baseVar: baseHash, init: initHash, actvar: student.config,
    stages: opts.stages, stageSteps: opts.stageSteps, hyper: opts.hyper ?? {}, ...o,
  };
  const ck = findResume(opts.ckptDir, opts.resume, signature, 'distill', log);

  // ---- data: tokens of the training images (the last `holdout` held out) and of the test images
  const allTokens = cachedTokens(vae, vaeHash, trainAll, opts.tokenCacheDir, log, 'distill');
  const L = teacher.L, pns = vc.patchNums;
  const valN = Math.min(opts.evalSamples ?? 500, o.holdout);
  const valTokens = allTokens.subarray(trainN * L), valLabels = trainAll.labels.subarray(trainN);
  const testN = Math.min(opts.testSamples ?? 1000, test.length);
  const testTokens = testN > 0 ? cachedTokens(vae, vaeHash, test.head(testN), opts.tokenCacheDir, log, 'distill') : null;
  const validate = (n: number): DistillValidation => core.validateDistill(student, teacher, vae, tokenBatches(valTokens, valLabels, n, L, pns, 50));
  const validateTest = (): DistillValidation | null => testTokens ? core.validateDistill(student, teacher, vae, tokenBatches(testTokens, test.labels, testN, L, pns, 50)) : null;

  // ---- start gates and the numbers before training (from the checkpoint when resuming)
  let before: DistillResult['before'];
  if (ck) {
    before = ck.extra.before as DistillResult['before'];
  } else {
    if (!opts.init) {
      if (o.calib > 0) {
        const nc = vc.numClasses, labels = Array.from({ length: o.calib }, (_, k) => Math.floor((k * nc) / o.calib));
        log(`distill: calibrating the start gates on ${o.calib} dense generation(s) (classes ${labels.join(',')}) …`);
        student.calibrate({ vqvae: vae, labels, cfg: 1.5, topK: 0, topP: 0, rng: new Rng((o.seed ^ 0x5eed) >>> 0) });
      } else {
        student.allowUntrained = true;
        log('distill: data-free start gates (router from the FFN weights, uniform selector)');
      }
    }
    log(`distill: validating the start (${student.gates}) on ${o.holdout} held-out training images and ${testN} test images …`);
    before = { val: validate(o.holdout), test: validateTest() };
    log(`distill: before: held-out KL to dense ${before.val.klToDense.toFixed(5)}, token accuracy ${(before.val.tokenAccuracy * 100).toFixed(2)}%` +
      (before.test ? `; test KL ${before.test.klToDense.toFixed(5)}` : ''));
  }

  // ---- what a step trains: the checkpointed tensors are the student's VAR and its gates
  const gateParams = new Map([...student.parameters()].filter(([k]) => !k.endsWith('experts.perm')));
  const ckParams = new Map<string, Tensor>();
  for (const [k, t] of student.model.params) ckParams.set(`var.${k}`, t);
  for (const [k, t] of gateParams) ckParams.set(k, t);
  const named = (stage: DistillStage): Map<string, Tensor> => {
    const m = core.trainableParameters(student, stage);
    for (const t of [...ckParams.values()]) t.requiresGrad = false;
    for (const t of m.values()) t.requiresGrad = true;
    return m;
  };
  const bounds: { stage: DistillStage; start: number; steps: number }[] = [];
  opts.stages.reduce((start, stage, i) => { bounds.push({ stage, start, steps: opts.stageSteps[i] }); return start + opts.stageSteps[i]; }, 0);
  const stageAt = (step: number): { stage: DistillStage; local: number; steps: number } => {
    const b = bounds.find((x) => step < x.start + x.steps)!;
    return { stage: b.stage, local: step - b.start, steps: b.steps };
  };
  let opt: AdamW | null = null, optStage: DistillStage | null = null;
  const optimizerFor = (stage: DistillStage): AdamW => {
    if (opt && optStage === stage) return opt;
    opt = new AdamW(paramGroups(named(stage), o.weightDecay), { lr: stage === 2 ? o.lr2 : o.lr, betas: [0.9, 0.95], eps: 1e-8 });
    optStage = stage;
    return opt;
  };
  const loader = new DataLoader(rowsOf(trainAll, 0, trainN), { batchSize: o.batchSize, seed: o.seed });
  const trainRng = new Rng((o.seed ^ 0xd157) >>> 0);
  let startStep = 0;
  if (ck) {
    startStep = ck.step;
    const savedStage = ck.extra.optStage as DistillStage | null;
    // the optimizer continues only within the stage it was saved in; at a stage boundary the next stage starts afresh
    const cont = startStep < totalSteps && savedStage === stageAt(startStep).stage && (startStep === 0 || stageAt(startStep - 1).stage === savedStage);
    restoreCheckpoint(ck, ckParams, cont ? optimizerFor(savedStage!) : undefined);
    loader.setState(ck.data.train as LoaderState);
    trainRng.setState(ck.rngs.train);
    student.gates = ck.extra.gates as typeof student.gates;
    student.model.invalidateCaches();
  }

  const logLine = jsonlLogger(opts.logFile);
  const evalEvery = opts.evalEvery ?? Math.max(1, Math.ceil(totalSteps / 5));
  log(`distill: stages ${opts.stages.join('+')} (${opts.stageSteps.join(' + ')} steps) of batch ${o.batchSize}, lr ${o.lr.toExponential(3)}` +
    `${opts.lr === undefined ? ' (2e-4 · batch/512)' : ''}${o.lr2 !== o.lr ? `, stage 2 lr ${o.lr2.toExponential(3)}` : ''}${o.schedule !== 'const' ? ` (${o.schedule} per stage)` : ''}; ActVAR (${student.config.tokenRates.map((r) => Math.round(r * 100)).join(',')};${Math.round(student.config.expertRate * 100)}) ` +
    `at scales ${student.config.scales.join(',')}, ${student.config.experts} experts; ${trainN} training images, ${o.holdout} held out`);
  const result = await trainLoop({
    name: 'distill', totalSteps, startStep, progress: opts.progress, stopAt: opts.stopAt, evalEvery, ckptEvery: opts.ckptEvery, unit: 'img',
    trainStep: (step) => {
      const { stage, local, steps } = stageAt(step);
      const optim = optimizerFor(stage);
      const warm = Math.min(steps, opts.warmupSteps ?? Math.max(1, Math.round(steps * 0.02)));
      const peak = stage === 2 ? o.lr2 : o.lr;
      const lrNow = warm > 0 && local < warm ? peak * (local + 1) / warm : lrAt(local, { peak, warmupSteps: warm, totalSteps: steps, schedule: o.schedule });
      optim.setLr(lrNow);
      const rows = loader.nextIndices();
      const labels = new Int32Array(rows.length);
      for (let b = 0; b < rows.length; b++) labels[b] = trainAll.labels[rows[b]];
      const r = core.distillLoss(stage, student, teacher, vae, { idxBl: tokensToIdxBl(allTokens, L, rows, pns), labels }, { training: true, rng: trainRng, hyper: opts.hyper });
      optim.zeroGrad();
      r.loss.backward();
      const gradNorm = o.clip > 0 ? clipGradNorm(optim.params, o.clip) : NaN;
      optim.step();
      student.model.invalidateCaches();
      student.gates = 'distilled';
      const rec = { loss: r.loss.f32[0], acc: r.correct / r.tokens, samples: rows.length, extra: { stage, lr: lrNow, gradNorm, ...r.parts } };
      logLine({ step, ...rec.extra, loss: rec.loss, acc: rec.acc });
      return rec;
    },
    evaluate: (done) => {
      const v = noGrad(() => validate(valN));
      logLine({ step: done, eval: v });
      return { val_kl: v.klToDense, val_acc: v.tokenAccuracy, sel_agree: v.selectorAgreement, rt_agree: v.routerAgreement };
    },
    checkpoint: opts.ckptDir ? (done) => {
      saveCheckpoint(opts.ckptDir!, {
        step: done, params: ckParams, optimizer: opt ?? undefined, rngs: { train: trainRng.getState() }, data: { train: loader.getState() },
        extra: { signature, before, optStage, gates: student.gates },
      });
    } : undefined,
  });

  let after = before;
  if (!result.interrupted) {
    log(`distill: validating the result on ${o.holdout} held-out training images and ${testN} test images …`);
    after = { val: validate(o.holdout), test: validateTest() };
    log(`distill: ${result.stepsDone}/${totalSteps} steps, ${result.samplesPerSec.toFixed(1)} img/s; held-out KL to dense ${before.val.klToDense.toFixed(5)} → ${after.val.klToDense.toFixed(5)}` +
      (before.test && after.test ? `, test KL ${before.test.klToDense.toFixed(5)} → ${after.test.klToDense.toFixed(5)}` : ''));
  } else {
    log(`distill: stopped after ${result.stepsDone}/${totalSteps} steps (resume with --resume)`);
  }
  const stages = bounds.map((b) => ({ stage: b.stage, steps: b.steps }));
  if (opts.out && !result.interrupted) {
    const bytes = encodeActVarModel(student, {
      baseVarSha256: baseHash, tokenizerSha256: vaeHash, dataset: trainAll.name,
      ...(typeof opts.tokenizer === 'string' ? { tokenizer: opts.tokenizer } : {}),
      ...(opts.command ? { command: opts.command } : {}),
      extra: { stages, batch_size: o.batchSize, lr: o.lr, lr2: o.lr2, images: trainAll.length, holdout: o.holdout, before, after },
    });
    writeFinal({ ...opts, steps: totalSteps }, (path) => writeFileSync(path, bytes));
    log(`distill: wrote ${opts.out}`);
  }
  return { actvar: student, teacher, history: result.history, loop: result, startStep, before, after, stages, lr: o.lr, lr2: o.lr2 };
}
