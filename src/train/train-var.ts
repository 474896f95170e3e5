/**
 * Train a class-conditional VAR by teacher forcing on a trained tokenizer (docs/VAR.md §7):
 *
 *   gt_idx  = tokenizer.img_to_idxBl(img)                 tokens of every scale (§4.3)
 *   x       = tokenizer.idxBl_to_var_input(gt_idx)        teacher-forcing input [B, L−1, Cvae] (§5)
 *   logits  = var(label, x) with label dropout p = 0.1    [B, L, V] (§3.6; dropped labels → null class)
 *   loss    = mean over the B·L tokens of CE(logits, gt)  every token weighted equally (§7), label smoothing optional
 *
 * AdamW betas (0.9, 0.95), weight decay 0.05 on the official decay set (no decay for 1-d params,
 * biases and the names in NO_DECAY_KEYS: pos_1LC, pos_start, lvl_embed, scale_mul, …; `paramGroups`),
 * learning rate: linear warm-up from wp0 = 0.005 × peak, then 'lin0' (constant for 5%, then linear
 * to wpe = 0.01 × peak) (`lrAt`), gradient-norm clipping at 2.0 (tclip), progress with loss, token
 * accuracy, throughput and ETA, periodic test loss and accuracy.
 *
 * The tokenizer is frozen. Its tokens are computed once per split, in fixed chunks of 100 images in
 * dataset order (so they never depend on batch composition), optionally cached on disk keyed by the
 * tokenizer file's SHA-256. The label-dropout and drop-path draws come from a seeded Rng whose state
 * is checkpointed with the batch position: `--resume` reproduces the loss trajectory bit for bit.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { sha256File } from '../io/node-fs.js';
import { dirname, join } from 'node:path';
import { Tensor, noGrad } from '../tensor/tensor.js';
import { Rng } from '../tensor/rng.js';
import { reshape } from '../tensor/ops/shape.js';
import { crossEntropy } from '../tensor/ops/loss.js';
import { argmax } from '../tensor/ops/indexing.js';
import { AdamW } from '../optim/adamw.js';
import { clipGradNorm } from '../optim/clip.js';
import { lrAt, paramGroups, wdAt } from '../optim/schedule.js';
import { readSafetensorsFile, writeSafetensors } from '../io/safetensors.js';
import { VAR, groundTruthBL } from '../var/var.js';
import { initVarParams } from '../var/init.js';
import { varParamCount, validateVarConfig, type VarConfig } from '../var/config.js';
import { VAR_FORMAT } from '../var/load.js';
import { loadVqvae } from '../vqvae/load.js';
import type { VQVAE } from '../vqvae/vqvae.js';
import { DataLoader, type ImageDataset, type LoaderState } from '../data/datasets.js';
import { restoreCheckpoint, saveCheckpoint } from './checkpoint.js';
import { findResume, jsonlLogger, resolveRun, runLoopSettings, trainLoop, type StepRecord, type TrainLoopResult, type TrainRunOptions, writeFinal } from './loop.js';

export { VAR_FORMAT };

/** Model size knobs (the rest comes from the tokenizer and the dataset). */
export interface VarModelOptions {
  depth?: number;
  width?: number;
  heads?: number;
  /** FFN hidden = round(mlpRatio · width) (default 4). */
  mlpRatio?: number;
  /** Stochastic depth of the last block (default 0). */
  dropPathRate?: number;
  /** Label dropout (default 0.1, §7). */
  condDropRate?: number;
  /** Init of the AdaLN gammas (README `--alng`: 1e-3 for d16/d20; default 1e-3). */
  initAdalnGamma?: number;
}

/**
 * Defaults: batchSize 64, lr 1e-3 for these small models (official: tblr · batch / 256 with tblr
 * 1e-4), weightDecay 0.05 on the official decay set, warmupSteps 2% of the run (the official ep/50),
 * evalSamples 1000.
 */
export interface TrainVarOptions extends TrainRunOptions {
  /** Path of a tokenizer from `actvar train-vae`, or the model itself (tests). */
  tokenizer: string | VQVAE;
  model?: VarModelOptions;
  /** Final weight decay of the cosine wd schedule (default = weightDecay, i.e. constant). */
  weightDecayEnd?: number;
  /** Final lr as a fraction of peak (wpe, default 0.01). */
  endFactor?: number;
  /** Gradient-norm clip (tclip, default 2; 0 = off). */
  clip?: number;
  labelSmoothing?: number;
  /** Test images of the final evaluation (default: the whole split). */
  finalEvalSamples?: number;
  /** Folder for the per-split token caches (default: none, tokens are recomputed each run). */
  tokenCacheDir?: string;
}

export interface VarEvalResult { loss: number; acc: number; accPerScale: number[]; n: number }

export interface TrainVarResult {
  var: VAR;
  history: StepRecord[];
  loop: TrainLoopResult;
  startStep: number;
  test: VarEvalResult;
}

/** SHA-256 of a model's parameters (names, shapes and bytes, in map order). */
export function hashParams(params: Map<string, Tensor>): string {
  const h = createHash('sha256');
  for (const [k, t] of params) {
    h.update(`${k}:${t.shape.join(',')};`);
    h.update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  }
  return h.digest('hex');
}

/**
 * Tokens of every image of `ds` as int32 [N, L] (scales concatenated, row-major within a scale), in
 * fixed chunks of `chunk` images so each image's tokens never depend on what it is batched with.
 */
export function tokenizeDataset(vae: VQVAE, ds: ImageDataset, opts: { chunk?: number; onProgress?: (done: number, total: number) => void } = {}): Int32Array {
  const chunk = opts.chunk ?? 100;
  const pns = vae.patchNums, L = pns.reduce((s, p) => s + p * p, 0), N = ds.length;
  const out = new Int32Array(N * L);
  noGrad(() => {
    for (let i = 0; i < N; i += chunk) {
      const n = Math.min(chunk, N - i);
      const idx = vae.imgToIdxBl(ds.images(Int32Array.from({ length: n }, (_, k) => i + k)));
      let off = 0;
      idx.forEach((t, si) => {
        const l = pns[si] * pns[si], d = t.i32;
        for (let b = 0; b < n; b++) out.set(d.subarray(b * l, b * l + l), (i + b) * L + off);
        off += l;
      });
      opts.onProgress?.(i + n, N);
    }
  });
  return out;
}

/** Tokens of a split, from the cache folder when present (keyed by dataset, split, size and tokenizer hash); `who` prefixes the log lines. */
export function cachedTokens(vae: VQVAE, vaeHash: string, ds: ImageDataset, cacheDir: string | undefined, log: (s: string) => void, who = 'train-var'): Int32Array {
  const L = vae.patchNums.reduce((s, p) => s + p * p, 0);
  const file = cacheDir ? join(cacheDir, `tokens-${ds.name}-${ds.split}-${ds.length}-${vaeHash.slice(0, 16)}.safetensors`) : null;
  if (file && existsSync(file)) {
    const { tensors, metadata } = readSafetensorsFile(file);
    const t = tensors.get('tokens');
    if (t && metadata?.tokenizer_sha256 === vaeHash && t.shape[0] === ds.length && t.shape[1] === L) {
      log(`${who}: tokens of ${ds.name}/${ds.split} read from ${file}`);
      return t.i32;
    }
    log(`${who}: ignoring stale token cache ${file}`);
  }
  const t0 = performance.now();
  let last = 0;
  const tokens = tokenizeDataset(vae, ds, {
    onProgress: (done, total) => {
      const now = performance.now();
      if (now - last > 5000 || done === total) {
        last = now;
        const rate = done / ((now - t0) / 1000);
        log(`${who}: tokenizing ${ds.name}/${ds.split}: ${done}/${total} images (${rate.toFixed(0)} img/s)`);
      }
    },
  });
  if (file) {
    mkdirSync(dirname(file), { recursive: true });
    writeSafetensors(file, new Map([['tokens', new Tensor(tokens, [ds.length, L])]]), { tokenizer_sha256: vaeHash, dataset: ds.name, split: ds.split });
  }
  return tokens;
}

/** Rows `idx` of a token table [N, L] split into per-scale int32 tensors [B, pn²]. */
export function tokensToIdxBl(tokens: Int32Array, L: number, rows: ArrayLike<number>, patchNums: readonly number[]): Tensor[] {
  const B = rows.length;
  let off = 0;
  return patchNums.map((pn) => {
    const l = pn * pn, d = new Int32Array(B * l);
    for (let b = 0; b < B; b++) d.set(tokens.subarray(rows[b] * L + off, rows[b] * L + off + l), b * l);
    off += l;
    return new Tensor(d, [B, l]);
  });
}

/** Teacher-forced loss, token accuracy (overall and per scale) of a batch. */
export function varBatchLoss(model: VAR, vae: VQVAE, idxBl: Tensor[], labels: ArrayLike<number>, opts: { training: boolean; rng?: Rng; labelSmoothing?: number }): { loss: Tensor; correct: number; correctPerScale: number[]; tokens: number } {
  const B = idxBl[0].shape[0], L = model.L, V = model.config.vocabSize;
  const x = noGrad(() => vae.idxBlToVarInput(idxBl)); // [B, L−1, Cvae]
  const logits = model.forward(labels, x, { training: opts.training, rng: opts.rng }); // [B, L, V]
  const gt = groundTruthBL(idxBl);
  const flat = reshape(logits, [B * L, V]);
  const loss = crossEntropy(flat, new Tensor(gt, [B * L]), { labelSmoothing: opts.labelSmoothing ?? 0 });
  const pred = noGrad(() => argmax(flat, -1)).i32;
  const correctPerScale = new Array<number>(model.beginEnds.length).fill(0);
  let correct = 0;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < L; t++) {
      if (pred[b * L + t] === gt[b * L + t]) { correct++; correctPerScale[model.lvl[t]]++; }
    }
  }
  return { loss, correct, correctPerScale, tokens: B * L };
}

/** Test loss and token accuracy (no label dropout) over the first `limit` rows of a token table. */
export function evaluateVar(model: VAR, vae: VQVAE, tokens: Int32Array, labels: Int32Array, opts: { limit?: number; batchSize?: number } = {}): VarEvalResult {
  const L = model.L, N = Math.min(opts.limit ?? labels.length, labels.length), bs = opts.batchSize ?? 50;
  let lossSum = 0, correct = 0;
  const perScale = new Array<number>(model.beginEnds.length).fill(0);
  noGrad(() => {
    for (let i = 0; i < N; i += bs) {
      const rows = Int32Array.from({ length: Math.min(bs, N - i) }, (_, k) => i + k);
      const r = varBatchLoss(model, vae, tokensToIdxBl(tokens, L, rows, model.config.patchNums), labels.subarray(i, i + rows.length), { training: false });
      lossSum += r.loss.f32[0] * r.tokens;
      correct += r.correct;
      r.correctPerScale.forEach((c, s) => { perScale[s] += c; });
    }
  });
  return {
    loss: lossSum / (N * L), acc: correct / (N * L),
    accPerScale: perScale.map((c, s) => c / (N * (model.beginEnds[s][1] - model.beginEnds[s][0]))), n: N,
  };
}

/** The VAR config for a tokenizer, a dataset's classes and the size knobs. */
export function varConfigFor(vae: VQVAE, numClasses: number, m: VarModelOptions = {}): VarConfig {
  const depth = m.depth ?? 4, width = m.width ?? 128, heads = m.heads ?? Math.max(1, Math.round(width / 64));
  const cfg: VarConfig = {
    depth, width, heads, mlpHidden: Math.round((m.mlpRatio ?? 4) * width),
    vocabSize: vae.vocabSize, Cvae: vae.Cvae, numClasses, sharedAdaLN: false, patchNums: [...vae.patchNums],
    attnL2Norm: true, normEps: 1e-6, condDropRate: m.condDropRate ?? 0.1, dropPathRate: m.dropPathRate ?? 0,
  };
  validateVarConfig(cfg);
  if (cfg.patchNums[0] !== 1) throw new RangeError(`the tokenizer's first patch number must be 1 for a VAR, got ${cfg.patchNums[0]}`);
  return cfg;
}

export async function trainVar(opts: TrainVarOptions): Promise<TrainVarResult> {
  const { log, train, test, steps } = resolveRun(opts);

  let vae: VQVAE, vaeHash: string;
  if (typeof opts.tokenizer === 'string') {
    vae = loadVqvae(opts.tokenizer);
    vaeHash = sha256File(opts.tokenizer);
  } else {
    vae = opts.tokenizer;
    vaeHash = hashParams(vae.stateDict());
  }
  vae.setRequiresGrad(false);
  const config = varConfigFor(vae, train.numClasses, opts.model);
  const o = {
    steps, batchSize: opts.batchSize ?? 64, lr: opts.lr ?? 1e-3, weightDecay: opts.weightDecay ?? 0.05,
    weightDecayEnd: opts.weightDecayEnd ?? opts.weightDecay ?? 0.05, warmupSteps: opts.warmupSteps ?? Math.round(steps / 50),
    endFactor: opts.endFactor ?? 0.01, clip: opts.clip ?? 2, labelSmoothing: opts.labelSmoothing ?? 0, seed: opts.seed ?? 0,
    initAdalnGamma: opts.model?.initAdalnGamma ?? 1e-3,
  };
  const signature = { dataset: train.name, trainSize: train.length, tokenizer: vaeHash, config, ...o };

  const model = new VAR(config, initVarParams(config, new Rng(o.seed), { initAdalnGamma: o.initAdalnGamma }));
  model.setRequiresGrad(true);
  log(`train-var: VAR depth ${config.depth}, width ${config.width}, ${config.heads} heads, ${(varParamCount(config) / 1e6).toFixed(2)}M parameters; ` +
    `${config.patchNums.length} scales (${config.patchNums.join(',')}) = ${model.L} tokens, V = ${config.vocabSize}`);
  const opt = new AdamW(paramGroups(model.params, o.weightDecay), { lr: o.lr, betas: [0.9, 0.95], eps: 1e-8 });
  const loader = new DataLoader(train, { batchSize: o.batchSize, seed: o.seed });
  const trainRng = new Rng((o.seed ^ 0xc0de) >>> 0);

  let startStep = 0;
  const ck = findResume(opts.ckptDir, opts.resume, signature, 'train-var', log);
  if (ck) {
    restoreCheckpoint(ck, model.params, opt);
    loader.setState(ck.data.train as LoaderState);
    trainRng.setState(ck.rngs.train);
    startStep = ck.step;
  }
  const trainTokens = cachedTokens(vae, vaeHash, train, opts.tokenCacheDir, log);
  const evalSamples = Math.min(opts.evalSamples ?? 1000, test.length);
  const finalN = Math.min(opts.finalEvalSamples ?? test.length, test.length);
  const testTokens = cachedTokens(vae, vaeHash, test.head(Math.max(evalSamples, finalN)), opts.tokenCacheDir, log);
  const testLabels = test.labels;

  const logLine = jsonlLogger(opts.logFile);
  const schedule = { peak: o.lr, warmupSteps: o.warmupSteps, totalSteps: steps, schedule: 'lin0' as const, warmupStart: 0.005, endFactor: o.endFactor };
  const L = model.L;

  const result = await trainLoop({
    ...runLoopSettings('train-var', opts, steps, startStep),
    unit: 'img',
    trainStep: (step) => {
      const lr = lrAt(step, schedule);
      opt.setLr(lr);
      opt.setWeightDecay(wdAt(step, { wd: o.weightDecay, wdEnd: o.weightDecayEnd, totalSteps: steps }));
      const rows = loader.nextIndices();
      const labels = new Int32Array(rows.length);
      for (let b = 0; b < rows.length; b++) labels[b] = train.labels[rows[b]];
      const r = varBatchLoss(model, vae, tokensToIdxBl(trainTokens, L, rows, config.patchNums), labels,
        { training: true, rng: trainRng, labelSmoothing: o.labelSmoothing });
      opt.zeroGrad();
      r.loss.backward();
      const gradNorm = o.clip > 0 ? clipGradNorm(opt.params, o.clip) : NaN;
      opt.step();
      model.invalidateCaches();
      const rec = { loss: r.loss.f32[0], acc: r.correct / r.tokens, samples: rows.length, extra: { lr, gradNorm } };
      logLine({ step, loss: rec.loss, acc: rec.acc, lr, gradNorm });
      return rec;
    },
    evaluate: (done) => {
      const r = evaluateVar(model, vae, testTokens, testLabels, { limit: evalSamples });
      logLine({ step: done, eval: r });
      return { test_loss: r.loss, test_acc: r.acc };
    },
    checkpoint: opts.ckptDir ? (done) => {
      saveCheckpoint(opts.ckptDir!, {
        step: done, params: model.params, optimizer: opt, rngs: { train: trainRng.getState() }, data: { train: loader.getState() },
        extra: { signature },
      });
    } : undefined,
  });

  const full = evaluateVar(model, vae, testTokens, testLabels, { limit: result.interrupted ? evalSamples : finalN });
  log(`train-var: ${result.stepsDone}/${steps} steps${result.interrupted ? ' (stopped early; resume with --resume)' : ''}, ` +
    `${result.samplesPerSec.toFixed(1)} img/s (${result.stepsPerSec.toFixed(3)} steps/s); test token loss ${full.loss.toFixed(4)}, ` +
    `token accuracy ${(full.acc * 100).toFixed(2)}% on ${full.n} images (per scale ${full.accPerScale.map((a) => (a * 100).toFixed(0) + '%').join(' ')})`);
  if (opts.out && !result.interrupted) {
    writeFinal(opts, (path) => writeSafetensors(path, model.stateDict(), {
      format: VAR_FORMAT, config: JSON.stringify(config), dataset: train.name, steps: String(steps),
      tokenizer_sha256: vaeHash, ...(typeof opts.tokenizer === 'string' ? { tokenizer: opts.tokenizer } : {}),
      test_loss: full.loss.toFixed(5), test_token_acc: full.acc.toFixed(5),
    }));
    log(`train-var: wrote ${opts.out}`);
  }
  return { var: model, history: result.history, loop: result, startStep, test: full };
}

