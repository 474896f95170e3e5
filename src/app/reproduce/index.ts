/**
 * `actvar reproduce` (issue 14): run the plan (plan.ts) into an out folder, one JSON per run, then
 * write the report (REPRODUCTION.md, index.html) from the JSONs alone.
 *
 * Out folder layout:
 *   plan.json                       the mode, sizes and settings (a resumed run must match it)
 *   runs/<setting>--seed<s>.json    one per finished run (written last, atomically: it marks the run done)
 *   samples/<run>.png, maps/<run>_image0_*.png
 *   ref-<split>-<extractor sha>.safetensors   the reference set's features (computed once)
 *   distill/<run>/                  distillation checkpoints of distilled rows (resumable)
 *   REPRODUCTION.md, index.html
 * Resuming: rerun the same command; finished runs (valid JSON) are skipped, a run killed midway is
 * redone from its start (a distillation resumes from its checkpoints).
 */
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { Tensor } from '../../tensor/index.js';
import { loadVar } from '../../var/load.js';
import { loadVqvae } from '../../vqvae/load.js';
import { loadClassifier } from '../../eval/classifier.js';
import { ClassifierExtractor } from '../../eval/classifier-extractor.js';
import { loadDataset } from '../../data/datasets.js';
import { readSafetensorsFile, writeSafetensors } from '../../io/safetensors.js';
import { sha256File } from '../../io/node-fs.js';
import { encodePng, writeFileAtomic } from '../../image/png.js';
import { planSettings, planRuns, QUICK_SIZES, FULL_SIZES, type PlanSizes, type Setting, type PlannedRun, type InitKind } from './plan.js';
import { executeRun, type RunRecord, type RunModels } from './run.js';
import { makeDistiller } from './distill.js';
import type { DistillCore } from '../../train/distill.js';
import type { VQVAE } from '../../vqvae/vqvae.js';
import { analyse, type Analysis } from './analysis.js';
import { renderMarkdown, type ReportMeta } from './markdown.js';
import { renderHtml } from './html.js';

export * from './plan.js';
export * from './run.js';
export * from './stats.js';
export * from './analysis.js';
export { renderMarkdown, type ReportMeta } from './markdown.js';
export { renderHtml } from './html.js';
export * from './svg.js';
export { makeDistiller, coreWithBaseline, type DistillerOptions } from './distill.js';

export class ReproduceError extends Error {
  readonly userError = true;
  constructor(message: string) { super(message); this.name = 'ReproduceError'; }
}

export interface ReproduceOptions {
  out: string;
  quick?: boolean;
  /** Overrides of the mode's sizes. */
  seeds?: number;
  n?: number;
  modelsDir?: string;
  /** Only these setting ids (default: all). */
  only?: string[];
  /** Add the distilled rows (src/train/distill.ts; default true). */
  distill?: boolean;
  /** The trainer's science core (default src/actvar/distill.ts; tests pass a stand-in). */
  distillCore?: DistillCore;
  /** Distil every setting, not only ActVAR (75,75;75) and the two baselines (hours more). */
  distillAll?: boolean;
  /** Add the KV-policy 'all' row (default true). */
  kvAll?: boolean;
  /** Write the report from the JSONs already there; run nothing. */
  reportOnly?: boolean;
  /** Also write the markdown report here (e.g. docs/REPRODUCTION.md). */
  doc?: string | null;
  /** The command line, commit and machine recorded in every run and in the report. */
  command: string;
  commit: string;
  machine: string;
  /** Screenshot path to mention in the report (made by scripts/check-report.mjs). */
  screenshot?: string | null;
  cfg?: number;
  topK?: number;
  topP?: number;
  log?: (s: string) => void;
}

export interface PlanFile { format: 'actvar-reproduce-plan/1'; mode: string; sizes: PlanSizes; settings: Setting[]; cfg: number; topK: number; topP: number }

export const PLAN_FORMAT = 'actvar-reproduce-plan/1';
export const RUN_FORMAT = 'actvar-reproduce-run/1';

/** The plan of an invocation (no work). */
export function makePlan(o: Pick<ReproduceOptions, 'quick' | 'seeds' | 'n' | 'only' | 'distill' | 'distillAll' | 'kvAll' | 'cfg' | 'topK' | 'topP'>): { plan: PlanFile; runs: PlannedRun[] } {
  const base = o.quick ? QUICK_SIZES : FULL_SIZES;
  const sizes: PlanSizes = { ...base, ...(o.seeds !== undefined ? { seeds: o.seeds } : {}), ...(o.n !== undefined ? { n: o.n } : {}) };
  if (sizes.n < sizes.batch) sizes.batch = sizes.n;
  if (o.distillAll) sizes.distilledSettings = 'all';
  const inits: InitKind[] = o.distill === false ? ['training-free'] : ['training-free', 'distilled'];
  let settings = planSettings({ inits, kvAll: o.kvAll ?? true, distilledSettings: sizes.distilledSettings });
  if (o.only?.length) {
    const unknown = o.only.filter((id) => !settings.some((s) => s.id === id));
    if (unknown.length) throw new ReproduceError(`--only: unknown setting(s) ${unknown.join(', ')}; the plan has ${settings.map((s) => s.id).join(', ')}`);
    settings = settings.filter((s) => o.only!.includes(s.id));
  }
  const plan: PlanFile = { format: PLAN_FORMAT, mode: o.quick ? 'quick' : 'full', sizes, settings, cfg: o.cfg ?? 1.5, topK: o.topK ?? 0, topP: o.topP ?? 0 };
  return { plan, runs: planRuns(settings, sizes.seeds) };
}

/** A finished run's record, or null when the file is missing or not a complete record. */
export function readRun(file: string): RunRecord | null {
  try {
    const r = JSON.parse(fs.readFileSync(file, 'utf8')) as RunRecord;
    return r && r.format === RUN_FORMAT && r.metrics && typeof r.metrics.fid === 'number' ? r : null;
  } catch { return null; }
}

/** Every finished run under `out/runs`. */
export function readRuns(out: string): RunRecord[] {
  const dir = nodePath.join(out, 'runs');
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir).filter((f) => f.endsWith('.json')).sort().map((f) => readRun(nodePath.join(dir, f))).filter((r): r is RunRecord => r !== null);
}

/** Which planned runs are still to do (no valid JSON yet). */
export function pendingRuns(out: string, runs: PlannedRun[]): PlannedRun[] {
  return runs.filter((r) => readRun(nodePath.join(out, 'runs', `${r.id}.json`)) === null);
}

function samePlan(a: PlanFile, b: PlanFile): string | null {
  if (a.mode !== b.mode) return `mode ${a.mode} vs ${b.mode}`;
  for (const k of ['n', 'batch', 'latencyImages', 'calib', 'gridImages'] as const) if (a.sizes[k] !== b.sizes[k]) return `${k} ${a.sizes[k]} vs ${b.sizes[k]}`;
  if (a.sizes.distill && b.sizes.distill && JSON.stringify(a.sizes.distill) !== JSON.stringify(b.sizes.distill)) return 'distillation budget';
  if (a.cfg !== b.cfg || a.topK !== b.topK || a.topP !== b.topP) return 'sampling settings';
  return null;
}

/** The shipped model files under `dir`; a ReproduceError names the missing ones. */
export function modelFiles(dir: string): { var: string; tok: string; clf: string } {
  const f = { var: nodePath.join(dir, 'var-fashion-mnist.safetensors'), tok: nodePath.join(dir, 'tokenizer-fashion-mnist.safetensors'), clf: nodePath.join(dir, 'classifier-fashion-mnist.safetensors') };
  const missing = Object.values(f).filter((p) => !fs.existsSync(p) || !fs.statSync(p).isFile());
  if (missing.length) throw new ReproduceError(`--models ${dir}: missing ${missing.join(', ')} (the folder of the shipped Fashion-MNIST tokenizer, VAR and classifier, docs/MODELS.md)`);
  return f;
}

function loadModels(o: ReproduceOptions, out: string, log: (s: string) => void): RunModels & { files: { var: string; tok: string }; tokenizer: VQVAE } {
  const f = modelFiles(o.modelsDir ?? 'models');
  const model = loadVar(f.var), vqvae = loadVqvae(f.tok);
  const sha = sha256File(f.clf);
  const extractor = new ClassifierExtractor(loadClassifier(f.clf), sha);
  const refName = 'fashion-mnist:test';
  const cache = nodePath.join(out, `ref-fashion-mnist-test-classifier-${sha.slice(0, 16)}.safetensors`);
  let ref: Float32Array | null = null;
  if (fs.existsSync(cache)) {
    try { const t = readSafetensorsFile(cache).tensors.get('features'); if (t && t.shape[1] === extractor.featureDim) ref = t.f32; } catch { ref = null; }
  }
  if (!ref) {
    log('extracting the reference features of fashion-mnist:test (once) …');
    const ds = loadDataset('fashion-mnist', 'test');
    const N = ds.length, px = ds.side * ds.side, D = extractor.featureDim;
    ref = new Float32Array(N * D);
    for (let i = 0; i < N; i += 1000) {
      const n = Math.min(1000, N - i), x = new Float32Array(n * px);
      for (let k = 0; k < n * px; k++) x[k] = ds.pixels[i * px + k] / 255;
      ref.set(extractor.extract(new Tensor(x, [n, 1, ds.side, ds.side])).features, i * D);
    }
    writeSafetensors(cache, new Map([['features', new Tensor(ref, [N, D])]]), { format: 'actvar-ref-features/1', split: refName, weights_sha256: sha });
  }
  return { var: model, vqvae, tokenizer: vqvae, extractor, ref, refName, files: f };
}

/** One line per `actvar reproduce` invocation that ran something (wall seconds from start to the report). */
export interface Invocation { started: string; seconds: number; cpuSeconds: number; ran: number; commit: string; command: string }

export function readInvocations(out: string): Invocation[] {
  const f = nodePath.join(out, 'invocations.jsonl');
  if (!fs.existsSync(f)) return [];
  return fs.readFileSync(f, 'utf8').split('\n').filter((l) => l.trim()).flatMap((l) => { try { return [JSON.parse(l) as Invocation]; } catch { return []; } });
}

/** Write or update the line of invocation `inv` (keyed by its start): rewritten after every run, so a killed invocation still counts up to its last finished run. */
function saveInvocation(out: string, inv: Invocation): void {
  const others = readInvocations(out).filter((i) => i.started !== inv.started);
  writeFileAtomic(nodePath.join(out, 'invocations.jsonl'), [...others, inv].map((i) => JSON.stringify(i) + '\n').join(''));
}

/** Runs that finished outside every recorded invocation (an invocation killed before invocations were saved after each run). */
function uncoveredRuns(out: string, records: RunRecord[]): RunRecord[] {
  const spans = readInvocations(out).map((i) => { const t = Date.parse(i.started); return [t, t + i.seconds * 1e3] as const; });
  return records.filter((r) => { const t = Date.parse(r.finished); return !spans.some(([a, b]) => t >= a && t <= b + 1e3); });
}

function invocationSeconds(out: string): number | null {
  const inv = readInvocations(out);
  return inv.length ? inv.reduce((s, i) => s + i.seconds, 0) : null;
}

function invocationCpuSeconds(out: string): number | null {
  const inv = readInvocations(out);
  return inv.length && inv.every((i) => typeof i.cpuSeconds === 'number') ? inv.reduce((s, i) => s + i.cpuSeconds, 0) : null;
}

/** Write REPRODUCTION.md and index.html of `out` from its run files. */
export function writeReport(o: Pick<ReproduceOptions, 'out' | 'doc' | 'command' | 'screenshot'>): { analysis: Analysis; files: string[] } {
  const records = readRuns(o.out);
  if (!records.length) throw new ReproduceError(`${o.out}/runs holds no finished run: nothing to report`);
  const a = analyse(records);
  const ran = [...new Set(readInvocations(o.out).map((i) => i.command))];
  const invSeconds = invocationSeconds(o.out);
  const uncovered = invSeconds === null ? [] : uncoveredRuns(o.out, records);
  const meta: ReportMeta = {
    command: ran.length ? ran.join('` then `') : o.command, outDir: o.out.replace(/\/+$/, ''), screenshot: o.screenshot ?? null,
    wallSeconds: invSeconds === null ? records.reduce((s, r) => s + r.seconds.total, 0) : invSeconds + uncovered.reduce((s, r) => s + r.seconds.total, 0),
    invocations: readInvocations(o.out).length,
    uncoveredRuns: uncovered.length,
    cpuSeconds: ((c) => (c === null ? null : c + uncovered.reduce((s, r) => s + r.seconds.cpu, 0)))(invocationCpuSeconds(o.out)),
  };
  const md = renderMarkdown(a, meta);
  const html = renderHtml(a, meta, (rel) => { const p = nodePath.join(o.out, rel); return fs.existsSync(p) ? fs.readFileSync(p) : null; });
  const files = [nodePath.join(o.out, 'REPRODUCTION.md'), nodePath.join(o.out, 'index.html')];
  writeFileAtomic(files[0], md);
  writeFileAtomic(files[1], html);
  if (o.doc) { fs.mkdirSync(nodePath.dirname(nodePath.resolve(o.doc)), { recursive: true }); writeFileAtomic(o.doc, md); files.push(o.doc); }
  return { analysis: a, files };
}

export interface ReproduceResult { ran: string[]; skipped: string[]; files: string[]; analysis: Analysis; seconds: number }

export async function runReproduce(o: ReproduceOptions): Promise<ReproduceResult> {
  const t0 = performance.now(), cpu0 = process.cpuUsage();
  const log = o.log ?? (() => {});
  const out = o.out;
  if (o.reportOnly) {
    const r = writeReport(o);
    return { ran: [], skipped: [], files: r.files, analysis: r.analysis, seconds: (performance.now() - t0) / 1e3 };
  }
  const { plan, runs } = makePlan(o);
  const planFile = nodePath.join(out, 'plan.json');
  if (fs.existsSync(planFile)) {
    let old: PlanFile;
    try { old = JSON.parse(fs.readFileSync(planFile, 'utf8')) as PlanFile; } catch { throw new ReproduceError(`${planFile} is not a plan of \`actvar reproduce\`; use another --out`); }
    const why = old.format === PLAN_FORMAT ? samePlan(old, plan) : 'not a plan file';
    if (why) throw new ReproduceError(`--out ${out} holds runs of another plan (${why}); use another --out folder, or the same options to resume`);
  }
  fs.mkdirSync(nodePath.join(out, 'runs'), { recursive: true });
  writeFileAtomic(planFile, JSON.stringify(plan, null, 1) + '\n');
  const todo = pendingRuns(out, runs);
  const skipped = runs.filter((r) => !todo.includes(r)).map((r) => r.id);
  if (skipped.length) log(`resuming: ${skipped.length} of ${runs.length} runs are done, ${todo.length} to go`);
  const ran: string[] = [];
  const started = new Date().toISOString();
  const invocation = (): Invocation => ({ started, seconds: (performance.now() - t0) / 1e3, cpuSeconds: (process.cpuUsage(cpu0).user + process.cpuUsage(cpu0).system) / 1e6, ran: ran.length, commit: o.commit, command: o.command });
  if (todo.length) {
    const models = loadModels(o, out, log);
    const distill = runs.some((r) => r.setting.actvar?.init === 'distilled')
      ? makeDistiller({ core: o.distillCore, varPath: models.files.var, tokenizerPath: models.files.tok, model: models.var, vqvae: models.tokenizer, sizes: plan.sizes.distill, out })
      : null;
    for (const [k, run] of todo.entries()) {
      log(`run ${k + 1}/${todo.length}: ${run.id} (${run.setting.label}, seed ${run.seed})`);
      const { record, images } = await executeRun(run, {
        models, sizes: plan.sizes, mode: plan.mode, commit: o.commit, machine: o.machine, cfg: plan.cfg, topK: plan.topK, topP: plan.topP,
        distill, log,
      });
      for (const [rel, im] of images) {
        const p = nodePath.join(out, rel);
        fs.mkdirSync(nodePath.dirname(p), { recursive: true });
        writeFileAtomic(p, encodePng(im));
      }
      writeFileAtomic(nodePath.join(out, 'runs', `${run.id}.json`), JSON.stringify(record, null, 1) + '\n');
      log(`  FID ${record.metrics.fid.toFixed(2)}, ${record.gflopsPerImage.toFixed(4)} GFLOPs/img, ${record.latency.batchN.imagesPerSecond.toFixed(1)} img/s @${plan.sizes.batch}, ${record.seconds.total.toFixed(0)} s`);
      ran.push(run.id);
      saveInvocation(out, invocation());
    }
  }
  const r = writeReport(o);
  if (ran.length) saveInvocation(out, invocation());
  return { ran, skipped, files: r.files, analysis: r.analysis, seconds: (performance.now() - t0) / 1e3 };
}
