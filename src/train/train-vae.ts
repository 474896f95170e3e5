/**
 * Train the multi-scale VQVAE tokenizer (src/vqvae) on 32×32 grey images — a training recipe the
 * official VAR repository never released. Per step, on a batch x ∈ [−1, 1]:
 *
 *   f      = quant_conv(encoder(x))                         [B, Cvae, 8, 8]   (downsample 4)
 *   f̂, vq  = residual multi-scale quantisation of f          (docs/VAR.md §4.3; patch numbers 1,2,3,4,6,8)
 *            with the straight-through estimator: f̂_st = sg[f̂ − f] + f, and
 *            vq = mean over scales of β·mse(sg[f̂_k], f) + mse(f̂_k, sg[f])   (commitment β = 0.25 + codebook)
 *   x̂      = decoder(post_quant_conv(f̂_st))
 *   loss   = mse(x̂, x) + vq
 *
 * (the quantiser's training forward, `VectorQuantizer.forward`, computes f̂_st and vq). AdamW with
 * warm-up + cosine learning rate, weight decay on conv weights only (never on the codebook, norms or
 * biases), gradient-norm clipping.
 *
 * Codebook usage and dead-code restart. Every step adds the batch's code hits (all scales) to an
 * exponential moving average u_v ← 0.99·u_v + 0.01·hits_v. Every `restartEvery` steps, a code whose
 * u_v is below `deadFraction` × the mean of u is dead: it is replaced by a residual vector the
 * quantiser actually has to encode — for a random scale k (chosen in proportion to its token count)
 * and a random position of a random image of the current batch, z = area(f − f̂_{<k} → pn_k) at that
 * position (the same vectors nearest-neighbour search compares codes against) — and its u_v is
 * reset to the mean so it gets time to attract assignments. The draws come from a seeded Rng whose
 * state is checkpointed, and u is checkpointed too, so restarts are reproduced exactly on resume.
 * Evaluation reports the reconstruction MSE of the *tokenized* test images (encode → tokens → f̂ →
 * decode, clamped, as VAR will see them) and codebook usage: the fraction of codes used on the
 * test subset, overall and per scale, and the perplexity exp(H(usage)).
 */
import { Tensor, noGrad } from '../tensor/tensor.js';
import { Rng } from '../tensor/rng.js';
import { add, sub } from '../tensor/ops/elementwise.js';
import { areaDownsample } from '../tensor/ops/resample.js';
import { mseLoss } from '../tensor/ops/loss.js';
import { AdamW, type ParamGroup } from '../optim/adamw.js';
import { clipGradNorm } from '../optim/clip.js';
import { lrAt, noDecayName } from '../optim/schedule.js';
import { writeSafetensors } from '../io/safetensors.js';
import { VQVAE_FORMAT } from '../vqvae/load.js';
import { VQVAE } from '../vqvae/vqvae.js';
import { completeVqvaeConfig, type VqvaeConfig, type VqvaeConfigInput } from '../vqvae/config.js';
import { DataLoader, type ImageDataset, type LoaderState } from '../data/datasets.js';
import { restoreCheckpoint, saveCheckpoint } from './checkpoint.js';
import { findResume, jsonlLogger, resolveRun, runLoopSettings, trainLoop, type StepRecord, type TrainLoopResult, type TrainRunOptions, writeFinal } from './loop.js';

export { VQVAE_FORMAT };

/** A small tokenizer for 32×32 grey images: downsample 4 → 8×8 latent, 6 scales (130 tokens). */
export const DEFAULT_TOKENIZER_CONFIG: Readonly<VqvaeConfigInput> = Object.freeze({
  inChannels: 1, ch: 16, chMult: [1, 2, 4], numResBlocks: 1, usingSa: false, usingMidSa: false,
  Cvae: 32, vocabSize: 512, patchNums: [1, 2, 3, 4, 6, 8], quantResi: 0.5, shareQuantResi: 4, normGroups: 8,
  quantConvKs: 3, beta: 0.25,
});

/**
 * Defaults: batchSize 32, lr 1e-3 (warm-up, then cosine to 1%), weightDecay 0 (conv weights only;
 * never the codebook, norms or biases), warmupSteps 2% of the steps, evalSamples 500.
 */
export interface TrainVaeOptions extends TrainRunOptions {
  config?: VqvaeConfigInput;
  /** Gradient-norm clip (default 1; 0 = off). */
  clip?: number;
  /** Dead-code restart period in steps (default 100; 0 = off) and threshold (default 0.03). */
  restartEvery?: number;
  deadFraction?: number;
  /** Test images of the final evaluation (default: the whole split). */
  finalEvalSamples?: number;
}

export interface VaeEvalResult {
  /** mean (x − clamp(decode(f̂(tokens(x)))))² over pixels, images in [−1, 1]. */
  mse: number;
  /** Fraction of the V codes used at least once, over all scales. */
  usage: number;
  /** Per-scale fraction of codes used. */
  usagePerScale: number[];
  /** exp of the entropy of the code-usage distribution (over all scales); V = perfectly uniform. */
  perplexity: number;
  n: number;
}

export interface TrainVaeResult {
  vae: VQVAE;
  history: StepRecord[];
  loop: TrainLoopResult;
  startStep: number;
  test: VaeEvalResult;
  /** Dead codes restarted by this call. */
  restarts: number;
}

/** The training forward: reconstruction, VQ loss, code hits, and the encoder output f (with graph). */
export function vaeTrainForward(vae: VQVAE, x: Tensor): { loss: Tensor; rec: Tensor; recLoss: Tensor; vqLoss: Tensor; hits: Int32Array[]; f: Tensor } {
  const f = vae.encode(x);
  const q = vae.quantize.forward(f);
  const rec = vae.decoder.forward(vae.postQuantConv.forward(q.fHat));
  const recLoss = mseLoss(rec, x);
  return { loss: add(recLoss, q.vqLoss), rec, recLoss, vqLoss: q.vqLoss, hits: q.hits, f };
}

/** Reconstruction MSE of the tokenized images and codebook usage on a dataset split. */
export function evaluateVae(vae: VQVAE, ds: ImageDataset, opts: { limit?: number; batchSize?: number } = {}): VaeEvalResult {
  const data = opts.limit !== undefined ? ds.head(opts.limit) : ds;
  const V = vae.vocabSize, SN = vae.patchNums.length;
  const counts = Array.from({ length: SN }, () => new Float64Array(V));
  let se = 0, px = 0;
  noGrad(() => {
    for (const b of data.batches(opts.batchSize ?? 100)) {
      const f = vae.encode(b.images);
      const idx = vae.quantize.fToIdxBlOrFhat(f, false);
      idx.forEach((t, si) => { for (const v of t.i32) counts[si][v]++; });
      const fHats = vae.quantize.fToIdxBlOrFhat(f, true);
      const img = vae.fhatToImg(fHats[fHats.length - 1]).f32, x = b.images.f32;
      for (let i = 0; i < x.length; i++) { const d = img[i] - x[i]; se += d * d; }
      px += x.length;
    }
  });
  const total = new Float64Array(V);
  for (const c of counts) for (let v = 0; v < V; v++) total[v] += c[v];
  const used = (c: Float64Array): number => { let u = 0; for (const x of c) if (x > 0) u++; return u / V; };
  let n = 0, h = 0;
  for (const x of total) n += x;
  for (const x of total) if (x > 0) { const p = x / n; h -= p * Math.log(p); }
  return { mse: se / px, usage: used(total), usagePerScale: counts.map(used), perplexity: Math.exp(h), n: data.length };
}

/**
 * Dead-code restart (see the file comment). `usage` is the hit EMA (updated by the caller); the
 * replaced codes get u = mean(u). Returns the number of codes restarted.
 */
export function restartDeadCodes(vae: VQVAE, f: Tensor, usage: Float64Array, deadFraction: number, rng: Rng): number {
  const V = vae.vocabSize, C = vae.Cvae, pns = vae.patchNums, SN = pns.length;
  let mean = 0;
  for (const u of usage) mean += u;
  mean /= V;
  const dead: number[] = [];
  for (let v = 0; v < V; v++) if (usage[v] < deadFraction * mean) dead.push(v);
  if (!dead.length) return 0;
  // residual maps z_k = area(f − f̂_{<k} → pn_k) of every scale, without a graph
  const zs = noGrad(() => {
    const fd = f.detach();
    const fHats = vae.quantize.fToIdxBlOrFhat(fd, true);
    return pns.map((pn, k) => {
      const rest = k === 0 ? fd : sub(fd, fHats[k - 1]);
      return k === SN - 1 ? rest : areaDownsample(rest, pn, pn);
    });
  });
  const B = f.shape[0];
  const weights = pns.map((pn) => pn * pn);
  const E = vae.quantize.codebook.f32;
  for (const v of dead) {
    const k = rng.multinomial(weights), pn = pns[k];
    const b = rng.int(B), pos = rng.int(pn * pn);
    const z = zs[k].f32, plane = pn * pn;
    for (let c = 0; c < C; c++) E[v * C + c] = z[(b * C + c) * plane + pos];
    usage[v] = mean;
  }
  return dead.length;
}

/** AdamW groups: weight decay on conv kernels only; codebook, GroupNorm and biases get none. */
function vaeParamGroups(vae: VQVAE, wd: number): ParamGroup[] {
  const decay: Tensor[] = [], none: Tensor[] = [];
  for (const [name, p] of vae.namedParameters()) {
    (name === 'quantize.embedding.weight' || noDecayName(name, p.ndim) ? none : decay).push(p);
  }
  return [{ params: decay, weightDecay: wd, wdScale: 1 }, { params: none, weightDecay: 0, wdScale: 0 }].filter((g) => g.params.length);
}

export async function trainVae(opts: TrainVaeOptions): Promise<TrainVaeResult> {
  const { log, train, test, steps } = resolveRun(opts);
  const config = completeVqvaeConfig({ ...DEFAULT_TOKENIZER_CONFIG, ...opts.config });
  if (config.imgSize !== 32) {
    throw new RangeError(`the tokenizer must map 32×32 images: last patch number ${config.patchNums[config.patchNums.length - 1]} × downsample ${config.downsample} = ${config.imgSize} (e.g. chMult with 3 levels and patch numbers ending in 8)`);
  }
  if (config.inChannels !== 1) throw new RangeError(`the datasets are grey-scale: inChannels must be 1, got ${config.inChannels}`);
  const o = {
    steps, batchSize: opts.batchSize ?? 32, lr: opts.lr ?? 1e-3, weightDecay: opts.weightDecay ?? 0,
    warmupSteps: opts.warmupSteps ?? Math.round(steps * 0.02), clip: opts.clip ?? 1,
    restartEvery: opts.restartEvery ?? 100, deadFraction: opts.deadFraction ?? 0.03, seed: opts.seed ?? 0,
  };
  const { downsample: _d, imgSize: _i, ...configInput } = config;
  const signature = { dataset: train.name, trainSize: train.length, config: configInput, ...o };

  const vae = VQVAE.random(config, new Rng(o.seed), { requiresGrad: true });
  const params = vae.stateDict();
  const opt = new AdamW(vaeParamGroups(vae, o.weightDecay), { lr: o.lr, betas: [0.9, 0.99], eps: 1e-8 });
  const loader = new DataLoader(train, { batchSize: o.batchSize, seed: o.seed });
  const restartRng = new Rng((o.seed ^ 0xdead) >>> 0);
  const usage = new Float64Array(config.vocabSize); // hit EMA, from 0: codes never hit by the first restart are dead

  let startStep = 0;
  const ck = findResume(opts.ckptDir, opts.resume, signature, 'train-vae', log);
  if (ck) {
    restoreCheckpoint(ck, params, opt);
    loader.setState(ck.data.train as LoaderState);
    restartRng.setState(ck.rngs.restart);
    usage.set(ck.extra.usage as number[]);
    startStep = ck.step;
  }

  const logLine = jsonlLogger(opts.logFile);
  const schedule = { peak: o.lr, warmupSteps: o.warmupSteps, totalSteps: steps, schedule: 'cos' as const, warmupStart: 0.01, endFactor: 0.01 };
  const evalSamples = opts.evalSamples ?? 500;
  let restarts = 0;

  const result = await trainLoop({
    ...runLoopSettings('train-vae', opts, steps, startStep),
    trainStep: (step) => {
      const lr = lrAt(step, schedule);
      opt.setLr(lr);
      const b = loader.next();
      const fw = vaeTrainForward(vae, b.images);
      opt.zeroGrad();
      fw.loss.backward();
      const gradNorm = o.clip > 0 ? clipGradNorm(opt.params, o.clip) : NaN;
      opt.step();
      // hit EMA over all scales (file comment)
      const hits = new Float64Array(config.vocabSize);
      for (const h of fw.hits) for (let v = 0; v < h.length; v++) hits[v] += h[v];
      for (let v = 0; v < usage.length; v++) usage[v] = 0.99 * usage[v] + 0.01 * hits[v];
      let restarted = 0;
      if (o.restartEvery > 0 && (step + 1) % o.restartEvery === 0) {
        restarted = restartDeadCodes(vae, fw.f, usage, o.deadFraction, restartRng);
        restarts += restarted;
      }
      const rec = {
        loss: fw.loss.f32[0], samples: b.labels.size,
        extra: { rec: fw.recLoss.f32[0], vq: fw.vqLoss.f32[0], lr, gradNorm, restarted },
      };
      logLine({ step, loss: rec.loss, ...rec.extra });
      return rec;
    },
    evaluate: (done) => {
      const r = evaluateVae(vae, test, { limit: evalSamples });
      logLine({ step: done, eval: r });
      return { test_mse: r.mse, usage: r.usage, perplexity: r.perplexity };
    },
    checkpoint: opts.ckptDir ? (done) => {
      saveCheckpoint(opts.ckptDir!, {
        step: done, params, optimizer: opt, rngs: { restart: restartRng.getState() }, data: { train: loader.getState() },
        extra: { signature, usage: [...usage] },
      });
    } : undefined,
  });

  const full = evaluateVae(vae, test, { limit: result.interrupted ? evalSamples : opts.finalEvalSamples });
  log(`train-vae: ${result.stepsDone}/${steps} steps${result.interrupted ? ' (stopped early; resume with --resume)' : ''}, ` +
    `${result.samplesPerSec.toFixed(1)} img/s (${result.stepsPerSec.toFixed(3)} steps/s); test reconstruction MSE ${full.mse.toFixed(5)} on ${full.n} images ` +
    `(tokenized, [−1,1] scale); codebook usage ${(full.usage * 100).toFixed(1)}% (per scale ${full.usagePerScale.map((u) => (u * 100).toFixed(0) + '%').join(' ')}), perplexity ${full.perplexity.toFixed(1)}; ${restarts} dead codes restarted`);
  if (opts.out && !result.interrupted) {
    writeFinal(opts, (path) => writeSafetensors(path, params, {
      format: VQVAE_FORMAT, config: JSON.stringify(config), dataset: train.name, steps: String(steps),
      test_mse: full.mse.toFixed(6), codebook_usage: full.usage.toFixed(4), perplexity: full.perplexity.toFixed(2),
    }));
    log(`train-vae: wrote ${opts.out}`);
  }
  return { vae, history: result.history, loop: result, startStep, test: full, restarts };
}
