/**
 * The flags that `actvar train-classifier`, `train-vae` and `train-var` share (data, run length,
 * optimiser, evaluation, checkpoints, output), their parsing into the trainers' `TrainRunOptions`
 * (src/train/loop.ts) with every output through the output policy (../outputs.ts: `runs/<command>-<time>/`
 * by default, `--force` to replace a file), and the `--json` summary line. Values are parsed by
 * ../options.ts; each command file declares only its own flags and checks its model configuration.
 */
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { Command, Option } from 'commander';
import { DATASET_NAMES, type DatasetName } from '../../data/datasets.js';
import type { ProgressMode, TrainLoopResult, TrainRunOptions } from '../../train/loop.js';
import { UserError } from '../errors.js';
import { int, num, path, seed } from '../options.js';
import { OutputPlan, defaultRunDir, keepOnFailure } from '../outputs.js';

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
  /** What --out holds, and its file name inside the default run folder `runs/<command>-<time>/`. */
  out: { help: string; file: string };
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
  out?: string; force?: boolean; log?: string; progress: ProgressMode; json?: boolean;
}

/** Images per step: the tiny models' activations stay well below a few GB up to this. */
export const MAX_BATCH_SIZE = 4096;

/** Adds the shared flags, with the command's own ones (`own`) in between, to `cmd`; returns `cmd`. */
export function addTrainRunOptions(cmd: Command, spec: TrainRunFlagSpec, own: OwnFlags = {}): Command {
  const epochs = `${spec.defaultEpochs} epoch${spec.defaultEpochs === 1 ? '' : 's'}`;
  cmd
    .addOption(new Option('--dataset <name>', 'training data').choices(DATASET_NAMES as string[]).default('fashion-mnist'))
    .option('--data-dir <dir>', 'folder with the IDX files (default: where the dataset package installs them)', path('--data-dir'))
    .option('--train-limit <n>', 'use only the first n training images (quick experiments)', int('--train-limit', { min: 1, max: 1e9 }));
  own.afterData?.(cmd);
  cmd
    .option('--steps <n>', `optimisation steps (default: ${epochs})`, int('--steps', { min: 1, max: 1e9 }))
    .option('--epochs <x>', 'train for this many epochs instead of --steps', num('--epochs', { min: 0, max: 1e4, above: true }))
    .option('--batch-size <n>', 'images per step', int('--batch-size', { min: 1, max: MAX_BATCH_SIZE }), spec.batchSize)
    .option('--lr <x>', spec.lr.help, num('--lr', { min: 0, max: 10, above: true }), spec.lr.default)
    .option('--wd <x>', spec.wd.help, num('--wd', { min: 0, max: 10 }), spec.wd.default);
  own.afterWd?.(cmd);
  cmd.option('--warmup <n>', spec.warmupHelp ?? 'warm-up steps (default: 2% of the steps)', int('--warmup', { min: 0, max: 1e9 }));
  own.afterWarmup?.(cmd);
  cmd.option('--seed <n>', `${spec.seedHelp}, 0..${2 ** 32 - 1}`, seed('--seed'), 0);
  own.afterSeed?.(cmd);
  cmd
    .option('--eval-every <n>', spec.evalEveryHelp ?? 'evaluate on the test subset every n steps (default: 5 times per run)', int('--eval-every', { min: 1, max: 1e9 }))
    .option('--eval-samples <n>', spec.evalSamples.help, int('--eval-samples', { min: 1, max: 10_000 }), spec.evalSamples.default);
  own.afterEval?.(cmd);
  return cmd
    .option('--ckpt-dir <dir>', 'write resumable checkpoints here (a folder of its own: latest.json + step-N folders)', path('--ckpt-dir'))
    .option('--ckpt-every <n>', 'checkpoint every n steps (also at the end and on Ctrl-C)', int('--ckpt-every', { min: 1, max: 1e9 }), spec.ckptEvery)
    .option('--resume', 'continue from the latest checkpoint in --ckpt-dir (bit-identical to an uninterrupted run; starts over when there is none yet)')
    .option('--stop-at <n>', 'stop with a checkpoint after n steps, at most --steps (the schedule still spans --steps); --resume continues',
      int('--stop-at', { min: 1, max: 1e9 }))
    .option('--out <file>', `${spec.out.help} (default: runs/${cmd.name()}-<UTC time>/${spec.out.file})`, path('--out'))
    .option('--force', 'replace an existing --out file, or start afresh in a --ckpt-dir that holds another run\'s checkpoints')
    .option('--log <file>', 'append one JSON line per step and per evaluation', path('--log'))
    .addOption(new Option('--progress <mode>', 'progress display on stderr').choices(['auto', 'bar', 'lines', 'none']).default('auto'))
    .option('--json', 'print a one-line JSON summary on stdout at the end');
}

/** What a training command's run needs besides the trainer options: its output plan (see `prepareTrainRun`). */
export interface TrainRun {
  run: TrainRunOptions & { out: string; steps: number };
  plan: OutputPlan;
}

/**
 * The trainer options the shared flags give, checked: --steps or --epochs (over the training images
 * --train-limit leaves) resolved to a step count; --warmup and --stop-at within it; --resume needs
 * --ckpt-dir, which must be a checkpoint folder of its own. The outputs (--out, default
 * `runs/<command>-<time>/<file>`, --log, --ckpt-dir and the command's `extra` ones) go through the
 * output policy; `inputs` are the files the command reads. Train through `trainWithPlan`.
 */
export function parseTrainRunOptions(
  command: string, f: TrainRunFlags, spec: TrainRunFlagSpec,
  io: { inputs?: [string, string | undefined][]; dirs?: [string, string | undefined][] } = {},
): TrainRun {
  const steps = resolveSteps(f.steps, f.epochs, f.batchSize, Math.min(TRAIN_SIZE[f.dataset], f.trainLimit ?? Infinity), spec.defaultEpochs);
  if (f.warmup !== undefined && f.warmup > steps) throw new UserError(`--warmup ${f.warmup} is longer than the run (${steps} steps); give at most ${steps}`);
  if (f.stopAt !== undefined && f.stopAt > steps) throw new UserError(`--stop-at ${f.stopAt} is beyond the end of the run (${steps} steps); give 1..${steps}`);
  if (f.resume && !f.ckptDir) throw new UserError('--resume needs --ckpt-dir (the folder the interrupted run checkpointed into)');
  if (f.stopAt !== undefined && !f.ckptDir) throw new UserError('--stop-at needs --ckpt-dir (it stops with a checkpoint that --resume continues)');
  if (f.dataDir !== undefined && !fs.statSync(f.dataDir, { throwIfNoEntry: false })?.isDirectory()) {
    throw new UserError(`--data-dir ${f.dataDir}: not a directory`);
  }
  if (f.ckptDir !== undefined) checkCheckpointDir(f.ckptDir, !!f.resume, !!f.force);
  const explicitOut = f.out !== undefined;
  const out = f.out ?? nodePath.join(defaultRunDir(command), spec.out.file);
  const plan = new OutputPlan().inputDir('--data-dir', f.dataDir);
  for (const [flag, file] of io.inputs ?? []) plan.input(flag, file);
  plan.file('--out', out, { noClobber: explicitOut, force: f.force }).file('--log', f.log).dir('--ckpt-dir', f.ckptDir);
  for (const [flag, dir] of io.dirs ?? []) plan.dir(flag, dir);
  plan.check();
  return {
    plan,
    run: {
      dataset: f.dataset, dataDir: f.dataDir, trainLimit: f.trainLimit, steps, batchSize: f.batchSize, lr: f.lr, weightDecay: f.wd,
      warmupSteps: f.warmup, seed: f.seed, evalEvery: f.evalEvery, evalSamples: f.evalSamples, ckptDir: f.ckptDir, ckptEvery: f.ckptEvery,
      resume: f.resume, stopAt: f.stopAt, out, logFile: f.log, progress: f.progress,
      writeOut: (file, write) => keepOnFailure('--out', file, write),
    },
  };
}

/**
 * --ckpt-dir is the folder that holds latest.json and the step folders: never a step folder itself
 * (saving there would nest step folders inside it), and not another run's folder unless resuming it
 * (or --force).
 */
function checkCheckpointDir(dir: string, resume: boolean, force: boolean): void {
  const st = fs.statSync(dir, { throwIfNoEntry: false });
  if (!st) return;
  if (!st.isDirectory()) throw new UserError(`--ckpt-dir ${dir}: exists and is not a directory`);
  if (fs.existsSync(nodePath.join(dir, 'state.json'))) {
    throw new UserError(`--ckpt-dir ${dir} is one checkpoint (a step folder); give the folder that holds it and latest.json: --ckpt-dir ${nodePath.dirname(dir)}`);
  }
  const held = fs.readdirSync(dir).filter((e) => e === 'latest.json' || /^step-\d{8,}$/.test(e));
  if (held.length && !resume && !force) {
    throw new UserError(`--ckpt-dir ${dir} holds checkpoints of an earlier run; add --resume to continue it, --force to start afresh there, or give another folder`);
  }
}

/**
 * Create the outputs' folders, then train: a run that fails, or stops early (no weights written),
 * removes the folders made for it again (when still empty).
 */
export async function trainWithPlan<R extends { loop: TrainLoopResult }>(t: TrainRun, train: () => Promise<R>): Promise<R> {
  t.plan.prepare();
  let r: R;
  try { r = await train(); } catch (e) { t.plan.cleanup(); throw e; }
  if (r.loop.interrupted) t.plan.cleanup();
  return r;
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
