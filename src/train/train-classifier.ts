/**
 * Train the LeNet-sized classifier (src/eval/classifier.ts) on a dataset's training split:
 * AdamW, warm-up + cosine learning rate (`lrAt`, schedule 'cos'), optional random-shift
 * augmentation, periodic test accuracy, checkpoints and exact resume.
 *
 * Determinism: the initial weights come from `seed`, the batch order from a DataLoader seeded with
 * `seed` (its position is checkpointed), the augmentation from an Rng whose state is checkpointed.
 * Evaluation draws no random numbers. A resumed run therefore reproduces the uninterrupted loss
 * trajectory bit for bit.
 */
import { Tensor } from '../tensor/tensor.js';
import { Rng } from '../tensor/rng.js';
import { AdamW } from '../optim/adamw.js';
import { lrAt, paramGroups } from '../optim/schedule.js';
import { writeSafetensors } from '../io/safetensors.js';
import { Classifier, evaluateClassifier, CLASSIFIER_FORMAT, type ClassifierConfig } from '../eval/classifier.js';
import { DataLoader, IMAGE_SIZE, type LoaderState } from '../data/datasets.js';
import { restoreCheckpoint, saveCheckpoint } from './checkpoint.js';
import { findResume, jsonlLogger, resolveRun, runLoopSettings, trainLoop, type StepRecord, type TrainLoopResult, type TrainRunOptions, writeFinal } from './loop.js';

/**
 * Defaults: batchSize 64, lr 2e-3, weightDecay 1e-4 on the weights (biases get none), warmupSteps 2%
 * of the steps, evalSamples 2000 (the final evaluation uses the whole test split).
 */
export interface TrainClassifierOptions extends TrainRunOptions {
  config?: Partial<ClassifierConfig>;
  /** Random translation of up to ±shift pixels (default 0 = off). */
  augmentShift?: number;
}

export interface TrainClassifierResult {
  classifier: Classifier;
  /** The steps run by this call. */
  history: StepRecord[];
  loop: TrainLoopResult;
  startStep: number;
  /** Full test split (or the injected test set). */
  test: { accuracy: number; loss: number; n: number };
}

/** Options that must not change between a run and its resumption. */
function runSignature(o: Required<Pick<TrainClassifierOptions, 'steps' | 'batchSize' | 'lr' | 'weightDecay' | 'warmupSteps' | 'augmentShift' | 'seed'>>, config: ClassifierConfig, dataset: string): Record<string, unknown> {
  return { dataset, config, steps: o.steps, batchSize: o.batchSize, lr: o.lr, weightDecay: o.weightDecay, warmupSteps: o.warmupSteps, augmentShift: o.augmentShift, seed: o.seed };
}

/** Shift each image by a random (dy, dx) ∈ [−s, s]², filling with the background (−1). */
export function randomShift(images: Tensor, s: number, rng: Rng): Tensor {
  if (s <= 0) return images;
  const [B, C, H, W] = images.shape, X = images.f32;
  const out = new Float32Array(X.length).fill(-1);
  for (let b = 0; b < B; b++) {
    const dy = rng.int(2 * s + 1) - s, dx = rng.int(2 * s + 1) - s;
    for (let c = 0; c < C; c++) {
      const o = (b * C + c) * H * W;
      for (let y = Math.max(0, dy); y < Math.min(H, H + dy); y++) {
        const src = o + (y - dy) * W;
        for (let x = Math.max(0, dx); x < Math.min(W, W + dx); x++) out[o + y * W + x] = X[src + x - dx];
      }
    }
  }
  return new Tensor(out, images.shape);
}

export async function trainClassifier(opts: TrainClassifierOptions): Promise<TrainClassifierResult> {
  const { log, train, test, steps } = resolveRun(opts);
  const o = {
    steps,
    batchSize: opts.batchSize ?? 64,
    lr: opts.lr ?? 2e-3,
    weightDecay: opts.weightDecay ?? 1e-4,
    warmupSteps: opts.warmupSteps ?? Math.round(steps * 0.02),
    augmentShift: opts.augmentShift ?? 0,
    seed: opts.seed ?? 0,
  };
  const clf = Classifier.init({ numClasses: train.numClasses, ...opts.config }, o.seed);
  const signature = { ...runSignature(o, { ...clf.config }, train.name), trainSize: train.length };
  const opt = new AdamW(paramGroups(clf.params, o.weightDecay), { lr: o.lr, betas: [0.9, 0.999], eps: 1e-8 });
  const loader = new DataLoader(train, { batchSize: o.batchSize, seed: o.seed });
  const augRng = new Rng((o.seed ^ 0x5eed) >>> 0);

  let startStep = 0;
  const ck = findResume(opts.ckptDir, opts.resume, signature, 'train-classifier', log);
  if (ck) {
    restoreCheckpoint(ck, clf.params, opt);
    loader.setState(ck.data.train as LoaderState);
    if (ck.rngs.augment) augRng.setState(ck.rngs.augment);
    startStep = ck.step;
  }

  const logLine = jsonlLogger(opts.logFile);
  const schedule = { peak: o.lr, warmupSteps: o.warmupSteps, totalSteps: steps, schedule: 'cos' as const, warmupStart: 0.01, endFactor: 0.01 };
  const evalSamples = opts.evalSamples ?? 2000;

  const result = await trainLoop({
    ...runLoopSettings('train-classifier', opts, steps, startStep),
    trainStep: (step) => {
      const lr = lrAt(step, schedule);
      opt.setLr(lr);
      const b = loader.next();
      const x = randomShift(b.images, o.augmentShift, augRng);
      const { loss, correct } = clf.loss(x, b.labels);
      opt.zeroGrad();
      loss.backward();
      opt.step();
      const rec = { loss: loss.f32[0], acc: correct / b.labels.size, samples: b.labels.size, extra: { lr } };
      logLine({ step, loss: rec.loss, acc: rec.acc, lr });
      return rec;
    },
    evaluate: (done) => {
      const r = evaluateClassifier(clf, test, { limit: evalSamples });
      logLine({ step: done, eval: r });
      return { test_acc: r.accuracy, test_loss: r.loss };
    },
    checkpoint: opts.ckptDir ? (done) => {
      saveCheckpoint(opts.ckptDir!, {
        step: done, params: clf.params, optimizer: opt,
        rngs: { augment: augRng.getState() }, data: { train: loader.getState() },
        extra: { signature },
      });
    } : undefined,
  });

  // the whole test split at the end; only the periodic subset when stopping early
  const full = evaluateClassifier(clf, test, result.interrupted ? { limit: evalSamples } : {});
  log(`train-classifier: ${result.stepsDone}/${steps} steps${result.interrupted ? ' (stopped early; resume with --resume)' : ''}, ` +
    `${result.samplesPerSec.toFixed(1)} img/s (${result.stepsPerSec.toFixed(2)} steps/s); ` +
    `test accuracy ${(full.accuracy * 100).toFixed(2)}% on ${full.n} images, test loss ${full.loss.toFixed(4)}`);
  if (opts.out && !result.interrupted) {
    writeFinal(opts, (path) => writeSafetensors(path, clf.params, {
      format: CLASSIFIER_FORMAT,
      config: JSON.stringify(clf.config),
      dataset: train.name,
      image_size: String(IMAGE_SIZE),
      steps: String(steps),
      test_accuracy: full.accuracy.toFixed(4),
    }));
    log(`train-classifier: wrote ${opts.out}`);
  }
  return { classifier: clf, history: result.history, loop: result, startStep, test: full };
}
