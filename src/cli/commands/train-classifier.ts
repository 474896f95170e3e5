/**
 * `actvar train-classifier`: train the LeNet-sized classifier that scores generated samples
 * (src/train/train-classifier.ts does the work; this file only parses flags).
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { trainClassifier } from '../../train/train-classifier.js';
import { DEFAULT_CLASSIFIER_CONFIG } from '../../eval/classifier.js';
import { DATASET_NAMES, type DatasetName } from '../../data/datasets.js';
import type { ProgressMode } from '../../train/loop.js';
import { UserError } from '../errors.js';
import { announceBackend } from '../../backend/index.js';

export function intArg(name: string, min = 0): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer ≥ ${min}, got "${v}"`);
    return n;
  };
}

/** Comma-separated positive integers, e.g. "1,2,3,4,6,8". */
export function intListArg(name: string): (v: string) => number[] {
  return (v) => {
    const parts = v.split(',').map((x) => Number(x.trim()));
    if (!parts.length || parts.some((n) => !Number.isInteger(n) || n < 1)) throw new InvalidArgumentError(`${name} must be comma-separated positive integers, got "${v}"`);
    return parts;
  };
}

/** --steps, or --epochs over a training split of `trainSize` images (default `defaultEpochs`). */
export function resolveSteps(steps: number | undefined, epochs: number | undefined, batchSize: number, trainSize: number, defaultEpochs: number): number {
  if (steps !== undefined && epochs !== undefined) throw new UserError('give --steps or --epochs, not both');
  return steps ?? Math.max(1, Math.ceil((epochs ?? defaultEpochs) * trainSize / batchSize));
}

/** Training-set sizes, for --epochs. */
export const TRAIN_SIZE: Record<DatasetName, number> = { 'fashion-mnist': 60000, mnist: 60000 };

export function floatArg(name: string): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`${name} must be a non-negative number, got "${v}"`);
    return n;
  };
}

interface Flags {
  dataset: DatasetName; dataDir?: string; trainLimit?: number; steps?: number; epochs?: number; batchSize: number; lr: number; wd: number;
  warmup?: number; augmentShift: number; c1: number; c2: number; hidden: number; kernel: number; seed: number;
  evalEvery?: number; evalSamples: number; ckptDir?: string; ckptEvery: number; resume?: boolean; stopAt?: number;
  out: string; log?: string; progress: ProgressMode; json?: boolean;
}

/** Adds `train-classifier` to the program (see main.ts). */
export function register(program: Command): void {
  program.addCommand(trainClassifierCommand());
}

export function trainClassifierCommand(): Command {
  const d = DEFAULT_CLASSIFIER_CONFIG;
  return new Command('train-classifier')
    .description('train the LeNet-sized classifier used to score generated samples (class accuracy) and as the feature network for FID-style metrics')
    .addOption(new Option('--dataset <name>', 'training data').choices(DATASET_NAMES as string[]).default('fashion-mnist'))
    .option('--data-dir <dir>', 'folder with the IDX files (default: where the dataset package installs them)')
    .option('--train-limit <n>', 'use only the first n training images (quick experiments)', intArg('--train-limit', 1))
    .option('--steps <n>', 'optimisation steps (default: 3 epochs)', intArg('--steps', 1))
    .option('--epochs <n>', 'train for this many epochs instead of --steps', floatArg('--epochs'))
    .option('--batch-size <n>', 'images per step', intArg('--batch-size', 1), 64)
    .option('--lr <x>', 'peak learning rate (warm-up, then cosine to 1%)', floatArg('--lr'), 2e-3)
    .option('--wd <x>', 'AdamW weight decay (weights only; biases get none)', floatArg('--wd'), 1e-4)
    .option('--warmup <n>', 'warm-up steps (default: 2% of the steps)', intArg('--warmup'))
    .option('--augment-shift <px>', 'random translation of up to ± this many pixels (0 = off)', intArg('--augment-shift'), 0)
    .option('--c1 <n>', 'channels of conv1', intArg('--c1', 1), d.c1)
    .option('--c2 <n>', 'channels of conv2', intArg('--c2', 1), d.c2)
    .option('--hidden <n>', 'width of fc1 (the feature dimension)', intArg('--hidden', 1), d.hidden)
    .option('--kernel <n>', 'conv kernel size (odd)', intArg('--kernel', 1), d.kernel)
    .option('--seed <n>', 'seed for the weights, the batch order and the augmentation', intArg('--seed'), 0)
    .option('--eval-every <n>', 'evaluate on the test subset every n steps (default: 5 times per run)', intArg('--eval-every', 1))
    .option('--eval-samples <n>', 'test images in each periodic evaluation (the final one uses the whole split)', intArg('--eval-samples', 1), 2000)
    .option('--ckpt-dir <dir>', 'write resumable checkpoints here')
    .option('--ckpt-every <n>', 'checkpoint every n steps (also at the end and on Ctrl-C)', intArg('--ckpt-every', 1), 500)
    .option('--resume', 'continue from the latest checkpoint in --ckpt-dir (bit-identical to an uninterrupted run)')
    .option('--stop-at <n>', 'stop with a checkpoint after n steps (the schedule still spans --steps); --resume continues', intArg('--stop-at', 1))
    .option('--out <file>', 'write the trained weights here (safetensors)', 'models/classifier-fashion-mnist.safetensors')
    .option('--log <file>', 'append one JSON line per step and per evaluation')
    .addOption(new Option('--progress <mode>', 'progress display on stderr').choices(['auto', 'bar', 'lines', 'none']).default('auto'))
    .option('--json', 'print a one-line JSON summary on stdout at the end')
    .action(async (f: Flags) => {
      const steps = resolveSteps(f.steps, f.epochs, f.batchSize, Math.min(TRAIN_SIZE[f.dataset], f.trainLimit ?? Infinity), 3);
      if (f.resume && !f.ckptDir) throw new UserError('--resume needs --ckpt-dir (the folder the interrupted run checkpointed into)');
      announceBackend();
      const r = await trainClassifier({
        dataset: f.dataset, dataDir: f.dataDir, trainLimit: f.trainLimit, steps, batchSize: f.batchSize, lr: f.lr, weightDecay: f.wd,
        warmupSteps: f.warmup, augmentShift: f.augmentShift, seed: f.seed,
        config: { c1: f.c1, c2: f.c2, hidden: f.hidden, kernel: f.kernel },
        evalEvery: f.evalEvery, evalSamples: f.evalSamples, ckptDir: f.ckptDir, ckptEvery: f.ckptEvery,
        resume: f.resume, stopAt: f.stopAt, out: f.out, logFile: f.log, progress: f.progress,
      });
      if (f.json) {
        process.stdout.write(JSON.stringify({
          steps_done: r.loop.stepsDone, steps, stopped_early: r.loop.interrupted,
          test_accuracy: r.test.accuracy, test_loss: r.test.loss, test_n: r.test.n,
          train_seconds: r.loop.trainSeconds, steps_per_s: r.loop.stepsPerSec, img_per_s: r.loop.samplesPerSec,
          params: r.classifier.numParams, out: r.loop.interrupted ? null : f.out,
        }) + '\n');
      }
    });
}
