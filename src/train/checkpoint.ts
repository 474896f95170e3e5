/**
 * Training checkpoints: safetensors weights + optimizer moments + a JSON training state, written
 * atomically, verified on load, so that `--resume` continues bit for bit.
 *
 * Layout of a checkpoint folder `DIR` (what `saveCheckpoint(DIR, …)` writes):
 *
 *   DIR/latest.json                 {"format":"actvar-checkpoint/1","step":N,"path":"step-0000000N"}
 *   DIR/step-0000000N/model.safetensors   the parameters under their state-dict names (float32)
 *   DIR/step-0000000N/optim.safetensors   AdamW moments: "exp_avg.<name>", "exp_avg_sq.<name>" (float32)
 *   DIR/step-0000000N/state.json          {format, step, optimizer: {step, lr, betas, eps, groups,
 *                                          params: [{name, step}]}, rngs: {name: RngState}, data: {…},
 *                                          extra: {…}, files: {"model.safetensors": {bytes, sha256}, …}}
 *
 * The moments are kept in a second safetensors file rather than base64 in the JSON: they are as large
 * as the model, load without parsing text, and stay readable by any safetensors tool.
 *
 * Atomicity. A checkpoint is first written completely into a temporary folder
 * (`.tmp-step-…-PID-RANDOM`), every file fsync'ed, then the folder is renamed to `step-…`, and only then
 * is `latest.json` replaced by writing a temporary file and renaming it over the old one (rename(2) is
 * atomic within a file system). `latest.json` is the commit point: a crash at any moment before it
 * leaves the previous `latest.json`, pointing at the previous, complete checkpoint; leftovers are
 * removed by the next save. Older `step-…` folders beyond `keep` are pruned after the commit.
 *
 * Verification. `state.json` records the size and SHA-256 of both tensor files; `loadCheckpoint`
 * checks them first, so a truncated or damaged checkpoint gives a clear error naming the file,
 * instead of a confusing parse error or, worse, silently wrong weights.
 *
 * Numbers in JSON (losses, RNG spare normals, lr) are float64 written in JavaScript's shortest
 * round-trip form, so they read back exactly.
 */
import {
  closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeSync,
} from 'node:fs';
import { randomBytes } from 'node:crypto';
import { sha256File } from '../io/node-fs.js';
import { join, resolve } from 'node:path';
import { Tensor } from '../tensor/tensor.js';
import type { RngState } from '../tensor/rng.js';
import type { AdamW, AdamWStateDict } from '../optim/adamw.js';
import { readSafetensors, writeSafetensors } from '../io/safetensors.js';

export const CHECKPOINT_FORMAT = 'actvar-checkpoint/1';
const POINTER = 'latest.json';
const FILES = ['model.safetensors', 'optim.safetensors'] as const;

/** Optimizer state with the moments keyed by parameter name instead of position. */
export interface NamedOptimizerState {
  step: number;
  lr: number;
  betas: [number, number];
  eps: number;
  groups: AdamWStateDict['groups'];
  /** Parameter names in the optimizer's order, with each one's own step count (0 = never stepped). */
  params: { name: string; step: number }[];
}

export interface CheckpointContent {
  step: number;
  /** The model's parameters by state-dict name. */
  params: Map<string, Tensor>;
  /** The optimizer to save (its parameters must all be in `params`). */
  optimizer?: AdamW;
  /** Named RNG states (e.g. {train: …}); restored exactly. */
  rngs?: Record<string, RngState>;
  /** Data position(s), e.g. {train: {epoch, pos}}. */
  data?: Record<string, unknown>;
  /** Anything else JSON-serialisable: config, loss history, best metric, … */
  extra?: Record<string, unknown>;
}

export interface LoadedCheckpoint {
  /** The step folder that was loaded. */
  dir: string;
  step: number;
  params: Map<string, Tensor>;
  optimizer: { state: NamedOptimizerState; moments: Map<string, Tensor> } | null;
  rngs: Record<string, RngState>;
  data: Record<string, unknown>;
  extra: Record<string, unknown>;
}

/** Stages of a save, in order; `onStage` lets tests simulate a crash at each of them. */
export type SaveStage = 'model-written' | 'optim-written' | 'state-written' | 'folder-renamed' | 'committed';

export interface SaveOptions {
  /** Keep this many newest checkpoints (default 2; ≥ 1). */
  keep?: number;
  /** Called after each stage (testing hook: throw or kill the process to simulate a crash). */
  onStage?: (stage: SaveStage) => void;
}

/** A missing, damaged or mismatched checkpoint (`userError`: the CLI reports it in one line). */
export class CheckpointError extends Error {
  readonly userError = true;
  constructor(message: string) { super(message); this.name = 'CheckpointError'; }
}

function stepName(step: number): string { return `step-${String(step).padStart(8, '0')}`; }


function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try { fsyncSync(fd); } finally { closeSync(fd); }
}

/** Write a small file atomically: temp file in the same folder, fsync, rename over the target. */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  const fd = openSync(tmp, 'w');
  try {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    fsyncSync(fd);
  } finally { closeSync(fd); }
  renameSync(tmp, path);
}

/** Optimizer state by name: moments as tensors "exp_avg.<name>" / "exp_avg_sq.<name>". */
function optimizerToNamed(opt: AdamW, params: Map<string, Tensor>): { state: NamedOptimizerState; moments: Map<string, Tensor> } {
  const names = new Map<Tensor, string>();
  for (const [k, t] of params) names.set(t, k);
  const sd = opt.stateDict();
  const moments = new Map<string, Tensor>();
  const list = opt.params.map((p, i) => {
    const name = names.get(p);
    if (name === undefined) throw new CheckpointError(`checkpoint: the optimizer holds a parameter ${p.name ?? p.toString()} that is not among the saved params`);
    const st = sd.state[i];
    if (st) {
      moments.set(`exp_avg.${name}`, new Tensor(st.expAvg, p.shape));
      moments.set(`exp_avg_sq.${name}`, new Tensor(st.expAvgSq, p.shape));
    }
    return { name, step: st ? st.step : 0 };
  });
  return { state: { step: sd.step, lr: sd.lr, betas: sd.betas, eps: sd.eps, groups: sd.groups, params: list }, moments };
}

function removeQuietly(path: string): void {
  try { rmSync(path, { recursive: true, force: true }); } catch { /* best effort */ }
}

/**
 * Save a checkpoint into folder `dir` (created if needed) atomically; returns the step folder.
 * See the file comment for the layout and the crash guarantees.
 */
export function saveCheckpoint(dir: string, c: CheckpointContent, opts: SaveOptions = {}): string {
  const keep = opts.keep ?? 2;
  if (!Number.isInteger(keep) || keep < 1) throw new RangeError(`saveCheckpoint: keep must be a positive integer, got ${keep}`);
  if (!Number.isInteger(c.step) || c.step < 0) throw new RangeError(`saveCheckpoint: step must be a non-negative integer, got ${c.step}`);
  const stage = opts.onStage ?? (() => {});
  mkdirSync(dir, { recursive: true });
  const name = stepName(c.step);
  const tmp = join(dir, `.tmp-${name}-${process.pid}-${randomBytes(4).toString('hex')}`);
  mkdirSync(tmp);

  const modelPath = join(tmp, 'model.safetensors');
  writeSafetensors(modelPath, c.params, { format: CHECKPOINT_FORMAT, step: String(c.step) });
  fsyncPath(modelPath);
  stage('model-written');

  const optim = c.optimizer ? optimizerToNamed(c.optimizer, c.params) : null;
  const optimPath = join(tmp, 'optim.safetensors');
  writeSafetensors(optimPath, optim ? optim.moments : new Map<string, Tensor>(), { format: CHECKPOINT_FORMAT, step: String(c.step) });
  fsyncPath(optimPath);
  stage('optim-written');

  const files: Record<string, { bytes: number; sha256: string }> = {};
  for (const f of FILES) files[f] = { bytes: statSync(join(tmp, f)).size, sha256: sha256File(join(tmp, f)) };
  const state = {
    format: CHECKPOINT_FORMAT,
    step: c.step,
    optimizer: optim ? optim.state : null,
    rngs: c.rngs ?? {},
    data: c.data ?? {},
    extra: c.extra ?? {},
    files,
  };
  writeFileAtomic(join(tmp, 'state.json'), JSON.stringify(state, null, 1) + '\n');
  fsyncPath(tmp);
  stage('state-written');

  const final = join(dir, name);
  if (existsSync(final)) {
    // Re-saving a step (e.g. after a resume): move the old one aside; it is pruned below. If the
    // pointer names it, a crash before the commit leaves `latest.json` dangling — loadCheckpoint then
    // falls back to the newest complete step folder.
    renameSync(final, join(dir, `.old-${name}-${process.pid}-${randomBytes(4).toString('hex')}`));
  }
  renameSync(tmp, final);
  fsyncPath(dir);
  stage('folder-renamed');

  writeFileAtomic(join(dir, POINTER), JSON.stringify({ format: CHECKPOINT_FORMAT, step: c.step, path: name }) + '\n');
  fsyncPath(dir);
  stage('committed');

  prune(dir, keep, name);
  return final;
}

/** Remove leftovers of interrupted saves and all but the `keep` newest step folders. */
function prune(dir: string, keep: number, current: string): void {
  const entries = readdirSync(dir);
  for (const e of entries) if (e.startsWith('.tmp-') || e.startsWith('.old-') || (e.startsWith(`${POINTER}.tmp-`))) removeQuietly(join(dir, e));
  const steps = entries.filter((e) => /^step-\d{8,}$/.test(e) && e !== current).sort();
  const excess = steps.length - (keep - 1);
  for (let i = 0; i < excess; i++) removeQuietly(join(dir, steps[i]));
}

/** The step folders in `dir`, newest first. */
export function listCheckpoints(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((e) => /^step-\d{8,}$/.test(e)).sort().reverse().map((e) => join(dir, e));
}

/**
 * Resolve a path to a step folder: a step folder itself, or a checkpoint folder (via latest.json).
 * Returns null when `path` is a folder with no checkpoint yet.
 */
export function resolveCheckpoint(path: string): string | null {
  const p = resolve(path);
  if (!existsSync(p)) throw new CheckpointError(`checkpoint ${path} does not exist`);
  if (existsSync(join(p, 'state.json'))) return p;
  const ptr = join(p, POINTER);
  if (existsSync(ptr)) {
    let rec: { format?: string; path?: string };
    try { rec = JSON.parse(readFileSync(ptr, 'utf8')); } catch (e) {
      // the newest step folder (verified on load); never suggest a step folder as the checkpoint folder (saves would nest in it)
      const newest = listCheckpoints(p)[0];
      if (newest) return newest;
      throw new CheckpointError(`checkpoint pointer ${ptr} is not valid JSON (${(e as Error).message}) and ${path} holds no step folder`);
    }
    if (rec.format !== CHECKPOINT_FORMAT || typeof rec.path !== 'string') {
      throw new CheckpointError(`checkpoint pointer ${ptr} is not an ${CHECKPOINT_FORMAT} pointer`);
    }
    const target = join(p, rec.path);
    if (existsSync(join(target, 'state.json'))) return target;
    // a crash while re-saving the same step can leave the pointer dangling for a moment
    const fallback = listCheckpoints(p)[0];
    if (fallback) return fallback;
    throw new CheckpointError(`checkpoint pointer ${ptr} names ${rec.path}, which is missing`);
  }
  // step folders without a pointer (a crash between a first save's rename and its commit): the newest, verified on load
  return listCheckpoints(p)[0] ?? null;
}

/** Load and verify a checkpoint (a step folder, or a checkpoint folder via its latest.json). */
export function loadCheckpoint(path: string): LoadedCheckpoint {
  const dir = resolveCheckpoint(path);
  if (!dir) throw new CheckpointError(`no checkpoint in ${path} (no ${POINTER}, no step folders)`);
  const statePath = join(dir, 'state.json');
  let state: {
    format?: string; step: number; optimizer: NamedOptimizerState | null; rngs?: Record<string, RngState>;
    data?: Record<string, unknown>; extra?: Record<string, unknown>; files?: Record<string, { bytes: number; sha256: string }>;
  };
  try { state = JSON.parse(readFileSync(statePath, 'utf8')); } catch (e) {
    throw new CheckpointError(`checkpoint ${dir} is damaged: state.json cannot be parsed (${(e as Error).message}); the file is probably truncated`);
  }
  if (state.format !== CHECKPOINT_FORMAT) throw new CheckpointError(`checkpoint ${dir}: state.json has format ${JSON.stringify(state.format)}, expected "${CHECKPOINT_FORMAT}"`);
  for (const f of FILES) {
    const rec = state.files?.[f];
    const p = join(dir, f);
    if (!rec) throw new CheckpointError(`checkpoint ${dir}: state.json does not record ${f}`);
    if (!existsSync(p)) throw new CheckpointError(`checkpoint ${dir} is incomplete: ${f} is missing`);
    const size = statSync(p).size;
    if (size !== rec.bytes) {
      throw new CheckpointError(`checkpoint ${dir} is damaged: ${f} has ${size} bytes but state.json records ${rec.bytes}${size < rec.bytes ? ' (truncated)' : ''}`);
    }
    if (sha256File(p) !== rec.sha256) throw new CheckpointError(`checkpoint ${dir} is damaged: the SHA-256 of ${f} does not match state.json`);
  }
  const params = readSafetensors(join(dir, 'model.safetensors'));
  let optimizer: LoadedCheckpoint['optimizer'] = null;
  if (state.optimizer) optimizer = { state: state.optimizer, moments: readSafetensors(join(dir, 'optim.safetensors')) };
  return { dir, step: state.step, params, optimizer, rngs: state.rngs ?? {}, data: state.data ?? {}, extra: state.extra ?? {} };
}

/**
 * Copy a loaded checkpoint's weights into `params` (same names and shapes, in place, so optimizers
 * and modules holding these tensors see them) and, if given, its moments into `optimizer`.
 */
export function restoreCheckpoint(ck: LoadedCheckpoint, params: Map<string, Tensor>, optimizer?: AdamW): void {
  for (const [name, p] of params) {
    const t = ck.params.get(name);
    if (!t) throw new CheckpointError(`checkpoint ${ck.dir} has no parameter "${name}"; was it written by a different model config?`);
    if (t.shape.length !== p.shape.length || t.shape.some((d, i) => d !== p.shape[i])) {
      throw new CheckpointError(`checkpoint ${ck.dir}: "${name}" has shape [${t.shape.join(', ')}], the model expects [${p.shape.join(', ')}]`);
    }
    (p.data as Float32Array).set(t.f32);
  }
  const extra = [...ck.params.keys()].filter((k) => !params.has(k));
  if (extra.length) throw new CheckpointError(`checkpoint ${ck.dir} has parameters the model lacks: ${extra.slice(0, 5).join(', ')}${extra.length > 5 ? ', …' : ''}`);
  if (!optimizer) return;
  if (!ck.optimizer) throw new CheckpointError(`checkpoint ${ck.dir} holds no optimizer state`);
  const st = ck.optimizer.state, names = new Map<Tensor, string>();
  for (const [k, t] of params) names.set(t, k);
  const byName = new Map(st.params.map((p) => [p.name, p.step]));
  const order = optimizer.params.map((p) => names.get(p));
  if (order.length !== st.params.length) throw new CheckpointError(`checkpoint ${ck.dir}: optimizer state has ${st.params.length} parameters, the optimizer ${order.length}`);
  const sd: AdamWStateDict = {
    step: st.step, lr: st.lr, betas: st.betas, eps: st.eps, groups: st.groups,
    state: order.map((name, i) => {
      if (name === undefined || !byName.has(name)) throw new CheckpointError(`checkpoint ${ck.dir}: no optimizer state for parameter ${name ?? `#${i}`}`);
      const step = byName.get(name)!;
      if (step === 0) return null;
      const m = ck.optimizer!.moments.get(`exp_avg.${name}`), v = ck.optimizer!.moments.get(`exp_avg_sq.${name}`);
      if (!m || !v) throw new CheckpointError(`checkpoint ${ck.dir}: optim.safetensors lacks the moments of "${name}"`);
      return { step, expAvg: m.f32, expAvgSq: v.f32 };
    }),
  };
  optimizer.loadStateDict(sd);
}
