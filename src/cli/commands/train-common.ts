/**
 * The flags that `actvar train-classifier`, `train-vae` and `train-var` share (data, run length,
 * optimiser, evaluation, checkpoints, output), their parsing into the trainers' `TrainRunOptions`
 * (src/train/loop.ts), and the `--json` summary line. Each command file declares only its own flags.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { DATASET_NAMES, type DatasetName } from '../../data/datasets.js';
import type { ProgressMode, TrainLoopResult, TrainRunOptions } from '../../train/loop.js';
import { UserError } from '../errors.js';

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

export function floatArg(name: string): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`${name} must be a non-negative number, got "${v}"`);
    return n;
  };
}

/** --steps, or --epochs over a training split of `trainSize` images (default `defaultEpochs`). */
export function resolveSteps(steps: number | undefined, epochs: number | undefined, batchSize: number, trainSize: number, defaultEpochs: number): number {
  if (steps !== undefined && epochs !== undefined) throw new UserError('give --steps or --epochs, not both');
  return steps ?? Math.max(1, Math.ceil((epochs ?? defaultEpochs) * trainSize / batchSize));
}

/** Training-set sizes, for --epochs. */
export const TRAIN_SIZE: Record<DatasetName, number> = { 'fashion-mnist': 60000, mnist: 60000 };

/** What the shared flags of one command say and default to. */
export interface TrainRunFlagSpec {
  /** Run length without --steps or --epochs. */
  defaultEpochs: number;
  batchSize: number;
  lr: { help: string; default: number };
  wd: { help: string; default: number };
  /** Help of --warmup (default: "warm-up steps (default: 2% of the steps)"). */
  warmupHelp?: string;
  /** Help of --seed: what the seed drives. */
  seedHelp: string;
  /** Help of --eval-every (default: "evaluate on the test subset every n steps (default: 5 times per run)"). */
  evalEveryHelp?: string;
  evalSamples: { help: string; default: number };
  ckptEvery: number;
  out: { help: string; default: string };
}

/** The command's own flags, each inserted at its place in the list (and so in `--help`). */
export interface OwnFlags {
  /** After --train-limit. */
  afterData?: (cmd: Command) => void;
  /** After --wd. */
  afterWd?: (cmd: Command) => void;
  /** After --warmup. */
  afterWarmup?: (cmd: Command) => void;
  /** After --seed. */
  afterSeed?: (cmd: Command) => void;
  /** After --eval-samples. */
  afterEval?: (cmd: Command) => void;
}

/** The shared flags as commander parses them (see addTrainRunOptions). */
export interface TrainRunFlags {
  dataset: DatasetName; dataDir?: string; trainLimit?: number; steps?: number; epochs?: number; batchSize: number; lr: number; wd: number;
  warmup?: number; seed: number; evalEvery?: number; evalSamples: number; ckptDir?: string; ckptEvery: number; resume?: boolean; stopAt?: number;
  out: string; log?: string; progress: ProgressMode; json?: boolean;
}

/** Adds the shared flags, with the command's own ones (`own`) in between, to `cmd`; returns `cmd`. */
export function addTrainRunOptions(cmd: Command, spec: TrainRunFlagSpec, own: OwnFlags = {}): Command {
  const epochs = `${spec.defaultEpochs} epoch${spec.defaultEpochs === 1 ? '' : 's'}`;
  cmd
    .addOption(new Option('--dataset <name>', 'training data').choices(DATASET_NAMES as string[]).default('fashion-mnist'))
    .option('--data-dir <dir>', 'folder with the IDX files (default: where the dataset package installs them)')
    .option('--train-limit <n>', 'use only the first n training images (quick experiments)', intArg('--train-limit', 1));
  own.afterData?.(cmd);
  cmd
    .option('--steps <n>', `optimisation steps (default: ${epochs})`, intArg('--steps', 1))
    .option('--epochs <n>', 'train for this many epochs instead of --steps', floatArg('--epochs'))
    .option('--batch-size <n>', 'images per step', intArg('--batch-size', 1), spec.batchSize)
    .option('--lr <x>', spec.lr.help, floatArg('--lr'), spec.lr.default)
    .option('--wd <x>', spec.wd.help, floatArg('--wd'), spec.wd.default);
  own.afterWd?.(cmd);
  cmd.option('--warmup <n>', spec.warmupHelp ?? 'warm-up steps (default: 2% of the steps)', intArg('--warmup'));
  own.afterWarmup?.(cmd);
  cmd.option('--seed <n>', spec.seedHelp, intArg('--seed'), 0);
  own.afterSeed?.(cmd);
  cmd
    .option('--eval-every <n>', spec.evalEveryHelp ?? 'evaluate on the test subset every n steps (default: 5 times per run)', intArg('--eval-every', 1))
    .option('--eval-samples <n>', spec.evalSamples.help, intArg('--eval-samples', 1), spec.evalSamples.default);
  own.afterEval?.(cmd);
  return cmd
    .option('--ckpt-dir <dir>', 'write resumable checkpoints here')
    .option('--ckpt-every <n>', 'checkpoint every n steps (also at the end and on Ctrl-C)', intArg('--ckpt-every', 1), spec.ckptEvery)
    .option('--resume', 'continue from the latest checkpoint in --ckpt-dir (bit-identical to an uninterrupted run)')
    .option('--stop-at <n>', 'stop with a checkpoint after n steps (the schedule still spans --steps); --resume continues', intArg('--stop-at', 1))
    .option('--out <file>', spec.out.help, spec.out.default)
    .option('--log <file>', 'append one JSON line per step and per evaluation')
    .addOption(new Option('--progress <mode>', 'progress display on stderr').choices(['auto', 'bar', 'lines', 'none']).default('auto'))
    .option('--json', 'print a one-line JSON summary on stdout at the end');
}

/**
 * The trainer options the shared flags give: --steps or --epochs (over the training images --train-limit
 * leaves) resolved to a step count; --resume without --ckpt-dir refused.
 */
export function parseTrainRunOptions(f: TrainRunFlags, spec: TrainRunFlagSpec): TrainRunOptions & { out: string } {
  const steps = resolveSteps(f.steps, f.epochs, f.batchSize, Math.min(TRAIN_SIZE[f.dataset], f.trainLimit ?? Infinity), spec.defaultEpochs);
  if (f.resume && !f.ckptDir) throw new UserError('--resume needs --ckpt-dir (the folder the interrupted run checkpointed into)');
  return {
    dataset: f.dataset, dataDir: f.dataDir, trainLimit: f.trainLimit, steps, batchSize: f.batchSize, lr: f.lr, weightDecay: f.wd,
    warmupSteps: f.warmup, seed: f.seed, evalEvery: f.evalEvery, evalSamples: f.evalSamples, ckptDir: f.ckptDir, ckptEvery: f.ckptEvery,
    resume: f.resume, stopAt: f.stopAt, out: f.out, logFile: f.log, progress: f.progress,
  };
}

/**
 * The `--json` line on stdout: run length and speed around the trainer's own `results`; `out` is null
 * when the run stopped early (nothing was written).
 */
export function writeRunSummary(loop: TrainLoopResult, steps: number, results: Record<string, unknown>, params: number, out: string): void {
  process.stdout.write(JSON.stringify({
    steps_done: loop.stepsDone, steps, stopped_early: loop.interrupted,
    ...results,
    train_seconds: loop.trainSeconds, steps_per_s: loop.stepsPerSec, img_per_s: loop.samplesPerSec,
    params, out: loop.interrupted ? null : out,
  }) + '\n');
}
