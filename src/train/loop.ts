/**
 * The generic training loop shared by train-classifier, train-vae and train-var: runs steps
 * [startStep, totalSteps), shows progress on stderr (a cli-progress bar on a terminal, plain lines
 * otherwise), evaluates and checkpoints periodically, and stops cleanly on Ctrl-C (SIGINT) after the
 * current step, writing a checkpoint first so that `--resume` continues where it stopped.
 *
 * The loop owns no model state and draws no random numbers, so it never perturbs the loss
 * trajectory: what happens at step i depends only on the caller's `trainStep(i)`.
 */
import { appendFileSync, existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import cliProgress from 'cli-progress';
import { loadDataset, type DatasetName, type ImageDataset } from '../data/datasets.js';
import { CheckpointError, loadCheckpoint, resolveCheckpoint, type LoadedCheckpoint } from './checkpoint.js';

export interface StepMetrics {
  loss: number;
  /** Accuracy of this step's batch in [0, 1] (token accuracy for VAR), if meaningful. */
  acc?: number;
  /** Examples processed by this step (for the throughput). */
  samples: number;
  /** Anything else to record (lr, grad norm, …). */
  extra?: Record<string, number>;
}

export interface StepRecord extends StepMetrics { step: number }

export type ProgressMode = 'auto' | 'bar' | 'lines' | 'none';

export interface TrainLoopOptions {
  /** Shown at the left of the bar, e.g. "train-classifier". */
  name: string;
  totalSteps: number;
  /** First step to run (the number of steps already done when resuming). */
  startStep?: number;
  /** Run optimisation step `step` (0-based). */
  trainStep: (step: number) => StepMetrics;
  /** Evaluate after every `evalEvery` steps and after the last one. */
  evalEvery?: number;
  evaluate?: (stepsDone: number) => Record<string, number>;
  /** Checkpoint after every `ckptEvery` steps, after the last one, and on Ctrl-C. */
  ckptEvery?: number;
  checkpoint?: (stepsDone: number) => void;
  /** 'auto' (default): a bar when the stream is a terminal, else a line every `logEvery` steps. */
  progress?: ProgressMode;
  logEvery?: number;
  /** Unit of `samples` for the throughput (default "img"). */
  unit?: string;
  stream?: NodeJS.WriteStream;
  /** Stop after the current step on SIGINT (default true). */
  handleSigint?: boolean;
  /**
   * Stop once this many steps are done, checkpointing as on Ctrl-C (the schedule still spans
   * totalSteps): splits a long run into sessions that `--resume` joins seamlessly.
   */
  stopAt?: number;
}

export interface TrainLoopResult {
  history: StepRecord[];
  evals: { step: number; metrics: Record<string, number> }[];
  /** Wall time of the steps run in this call (evaluation and checkpoints excluded). */
  trainSeconds: number;
  seconds: number;
  stepsPerSec: number;
  samplesPerSec: number;
  /** Steps completed when the loop returned (totalSteps unless interrupted). */
  stepsDone: number;
  interrupted: boolean;
}

export function formatDuration(s: number): string {
  if (!Number.isFinite(s)) return '--';
  s = Math.max(0, Math.round(s));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  return h ? `${h}h${String(m).padStart(2, '0')}m` : m ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`;
}

function fmtMetrics(m: Record<string, number>): string {
  return Object.entries(m).map(([k, v]) => `${k} ${Math.abs(v) >= 100 || Number.isInteger(v) ? v.toFixed(0) : v.toFixed(4)}`).join(', ');
}

export async function trainLoop(o: TrainLoopOptions): Promise<TrainLoopResult> {
  const start = o.startStep ?? 0, total = o.totalSteps;
  if (!Number.isInteger(total) || total < 0) throw new RangeError(`trainLoop: totalSteps must be a non-negative integer, got ${total}`);
  if (!Number.isInteger(start) || start < 0 || start > total) throw new RangeError(`trainLoop: startStep ${start} is outside 0..${total}`);
  const stream = o.stream ?? process.stderr;
  const unit = o.unit ?? 'img';
  let mode = o.progress ?? 'auto';
  if (mode === 'auto') mode = stream.isTTY ? 'bar' : 'lines';
  const logEvery = o.logEvery ?? Math.max(1, Math.round((total - start) / 20));

  const history: StepRecord[] = [];
  const evals: TrainLoopResult['evals'] = [];
  let interrupted = false;
  const onSigint = (): void => {
    if (interrupted) process.exit(130); // second Ctrl-C: give up at once
    interrupted = true;
    stream.write(`\n${o.name}: interrupted, stopping after this step${o.checkpoint ? ' and writing a checkpoint' : ''} (Ctrl-C again to quit at once)\n`);
  };
  if (o.handleSigint ?? true) process.on('SIGINT', onSigint);

  const bar = mode === 'bar' ? new cliProgress.SingleBar({
    stream, format: `${o.name} [{bar}] {value}/{total} | loss {loss}{accStr} | {speed} | ETA {etaStr}{evalStr}`,
    barsize: 24, hideCursor: true, fps: 5, etaBuffer: 50,
  }, cliProgress.Presets.shades_classic) : null;

  // smoothed statistics for display (never fed back into training)
  let emaLoss = NaN, emaAcc = NaN, emaRate = NaN, emaSps = NaN, lastEval = '';
  const t0 = performance.now();
  let trainMs = 0, samples = 0, done = start;
  const payload = (): Record<string, string> => ({
    loss: Number.isFinite(emaLoss) ? emaLoss.toFixed(4) : '--',
    accStr: Number.isFinite(emaAcc) ? ` | acc ${(emaAcc * 100).toFixed(1)}%` : '',
    speed: Number.isFinite(emaRate) ? `${emaRate.toFixed(1)} ${unit}/s, ${emaSps.toFixed(2)} it/s` : '--',
    etaStr: Number.isFinite(emaSps) ? formatDuration((total - done) / emaSps) : '--',
    evalStr: lastEval ? ` | ${lastEval}` : '',
  });
  bar?.start(total, start, payload());

  const runEval = (step: number): void => {
    if (!o.evaluate) return;
    const metrics = o.evaluate(step);
    evals.push({ step, metrics });
    lastEval = fmtMetrics(metrics);
    if (mode === 'lines' || mode === 'bar') {
      if (bar) bar.update(done, payload());
      else stream.write(`${o.name} step ${step}/${total}: eval ${lastEval}\n`);
    }
  };

  try {
    for (let step = start; step < total; step++) {
      const ts = performance.now();
      const m = o.trainStep(step);
      const dt = (performance.now() - ts) / 1000;
      trainMs += dt * 1000; samples += m.samples; done = step + 1;
      history.push({ step, ...m });
      const a = history.length === 1 ? 1 : 0.1;
      emaLoss = Number.isFinite(emaLoss) ? emaLoss + a * (m.loss - emaLoss) : m.loss;
      if (m.acc !== undefined) emaAcc = Number.isFinite(emaAcc) ? emaAcc + a * (m.acc - emaAcc) : m.acc;
      emaRate = Number.isFinite(emaRate) ? emaRate + a * (m.samples / dt - emaRate) : m.samples / dt;
      emaSps = Number.isFinite(emaSps) ? emaSps + a * (1 / dt - emaSps) : 1 / dt;
      if (bar) bar.update(done, payload());
      else if (mode === 'lines' && (done % logEvery === 0 || done === total)) {
        const p = payload();
        stream.write(`${o.name} step ${done}/${total} | loss ${p.loss}${p.accStr} | ${p.speed} | ETA ${p.etaStr}\n`);
      }
      const last = done === total;
      if (o.stopAt !== undefined && done >= o.stopAt && !last) interrupted = true;
      if (o.evaluate && o.evalEvery && (done % o.evalEvery === 0 || last)) runEval(done);
      else if (o.evaluate && !o.evalEvery && last) runEval(done);
      if (o.checkpoint && ((o.ckptEvery && done % o.ckptEvery === 0) || last || interrupted)) o.checkpoint(done);
      if (interrupted) break;
      // let signals and timers in between steps
      await new Promise<void>((r) => setImmediate(r));
    }
  } finally {
    bar?.stop();
    if (o.handleSigint ?? true) process.removeListener('SIGINT', onSigint);
  }
  const trainSeconds = trainMs / 1000;
  const n = history.length;
  return {
    history, evals, trainSeconds, seconds: (performance.now() - t0) / 1000,
    stepsPerSec: n / Math.max(trainSeconds, 1e-9), samplesPerSec: samples / Math.max(trainSeconds, 1e-9),
    stepsDone: done, interrupted,
  };
}

// ---------------------------------------------------------------------------------------------
// helpers shared by the train-* drivers

/**
 * The options every trainer (train-classifier, train-vae, train-var) takes: data, run length and
 * optimiser, evaluation, checkpoints and output. Their defaults differ per trainer and are listed on
 * its own options interface, which extends this one.
 */
export interface TrainRunOptions {
  /** Dataset to load when `train` / `test` are not given (default 'fashion-mnist'). */
  dataset?: DatasetName;
  /** Folder with the IDX files (default: where the dataset package installs them). */
  dataDir?: string;
  /** Use only the first `trainLimit` training images (quick experiments). */
  trainLimit?: number;
  /** Use these splits instead of loading `dataset` (tests). */
  train?: ImageDataset;
  test?: ImageDataset;
  /** Optimisation steps; the learning-rate schedule spans all of them. */
  steps: number;
  batchSize?: number;
  /** Peak learning rate (reached after the warm-up). */
  lr?: number;
  /** AdamW weight decay (which parameters get it is the trainer's choice). */
  weightDecay?: number;
  /** Warm-up steps (default 2% of steps). */
  warmupSteps?: number;
  /** Seed of the initial weights, the batch order and the trainer's own random draws. */
  seed?: number;
  /** Evaluate on the first `evalSamples` test images every `evalEvery` steps (default: 5 times per run). */
  evalEvery?: number;
  evalSamples?: number;
  /** Checkpoint folder; with `resume`, training continues from its latest checkpoint. */
  ckptDir?: string;
  ckptEvery?: number;
  resume?: boolean;
  /** Stop (with a checkpoint) once this many steps are done; the schedule still spans `steps`. */
  stopAt?: number;
  /** Write the final weights here (safetensors with the config in the metadata); not when stopped early. */
  out?: string;
  /**
   * How the final weights reach `out`: called with `out` and a writer that writes the file at any
   * path (default: create the folder, write `out` directly). The CLI passes its output policy here
   * (temp file first; on failure the weights are kept elsewhere).
   */
  writeOut?: (out: string, write: (path: string) => void) => void;
  /** Append one JSON line per step and per evaluation. */
  logFile?: string;
  progress?: ProgressMode;
  /** Messages (default: stderr). */
  log?: (line: string) => void;
}

/**
 * What every trainer resolves first, and the same way: the message sink, the two splits (loaded
 * from `dataset`, default fashion-mnist, unless given) and the step count (a positive integer).
 */
export function resolveRun(opts: TrainRunOptions): { log: (line: string) => void; train: ImageDataset; test: ImageDataset; steps: number } {
  const log = opts.log ?? ((s: string) => process.stderr.write(s + '\n'));
  const datasetName = opts.dataset ?? 'fashion-mnist';
  const train = opts.train ?? loadDataset(datasetName, 'train', { dir: opts.dataDir, limit: opts.trainLimit });
  const test = opts.test ?? loadDataset(datasetName, 'test', { dir: opts.dataDir });
  const steps = opts.steps;
  if (!Number.isInteger(steps) || steps < 1) throw new RangeError(`steps must be a positive integer, got ${steps}`);
  return { log, train, test, steps };
}

/** The trainLoop settings that come straight from the run options (evaluation default: 5 times per run). */
export function runLoopSettings(name: string, opts: TrainRunOptions, steps: number, startStep: number): Pick<TrainLoopOptions, 'name' | 'totalSteps' | 'startStep' | 'progress' | 'stopAt' | 'evalEvery' | 'ckptEvery'> {
  return {
    name, totalSteps: steps, startStep, progress: opts.progress, stopAt: opts.stopAt,
    evalEvery: opts.evalEvery ?? Math.max(1, Math.ceil(steps / 5)), ckptEvery: opts.ckptEvery,
  };
}

/** Write the final weights through `opts.writeOut`, or straight into `out` (creating its folder). */
export function writeFinal(opts: TrainRunOptions, write: (path: string) => void): void {
  const out = opts.out!;
  if (opts.writeOut) { opts.writeOut(out, write); return; }
  mkdirSync(dirname(out), { recursive: true });
  write(out);
}

/** Append-one-JSON-line-per-record logger (a no-op without a path). */
export function jsonlLogger(path?: string): (rec: Record<string, unknown>) => void {
  if (!path) return () => {};
  mkdirSync(dirname(path), { recursive: true });
  return (rec) => appendFileSync(path, JSON.stringify(rec) + '\n');
}

/**
 * The checkpoint to resume from, or null to start fresh. `signature` holds the settings that
 * determine the loss trajectory; a checkpoint written with other settings is refused with both
 * listed (resuming it could never be bit-identical).
 */
export function findResume(ckptDir: string | undefined, resume: boolean | undefined, signature: Record<string, unknown>, name: string, log: (s: string) => void): LoadedCheckpoint | null {
  if (!resume) return null;
  if (!ckptDir) throw new CheckpointError(`${name}: --resume needs a checkpoint folder (--ckpt-dir)`);
  // a run killed before its first checkpoint never created the folder: start over
  const found = existsSync(ckptDir) ? resolveCheckpoint(ckptDir) : null;
  if (!found) { log(`${name}: no checkpoint in ${ckptDir} yet, starting from scratch`); return null; }
  const ck = loadCheckpoint(found);
  const saved = ck.extra.signature as Record<string, unknown> | undefined;
  if (JSON.stringify(saved) !== JSON.stringify(signature)) {
    throw new CheckpointError(`cannot resume from ${ck.dir}: it was written with different settings.\n  checkpoint: ${JSON.stringify(saved)}\n  now:        ${JSON.stringify(signature)}`);
  }
  log(`${name}: resuming from ${ck.dir} at step ${ck.step}`);
  return ck;
}
