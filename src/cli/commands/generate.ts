/**
 * `actvar generate`: class-conditional images from a VAR + VQVAE (var-reference.md §6).
 *
 *   actvar generate --var var_d16.pth --vae vae_ch160v4096z32.pth --classes 207,360 [--per-class N]
 *     [--cfg 1.5] [--top-k 900] [--top-p 0.96] [--more-smooth] [--seed 0] [--out grid.png]
 *     [--out-dir DIR] [--tokens-out tokens.json] [--batch N] [--quiet]
 *   actvar generate --random-init --preset d16 --classes 1 ...   (seeded random weights, benchmarks)
 *
 * One image per listed class, times --per-class, in that order. Each image has its own RNG stream
 * (derived from --seed and its index), so the result does not depend on --batch. All inputs are
 * validated before any work; outputs are written only at the end, each atomically (temp + rename),
 * so a failure leaves nothing behind. Other modules (ActVAR) plug in through `generateExtensions`.
 */
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import cliProgress from 'cli-progress';
import { announceBackend } from '../../backend/node.js';
import { Rng } from '../../tensor/index.js';
import { UserError } from '../errors.js';
import { unreadableFile, unwritableTarget } from '../../io/files.js';
import { VAR, type VarHooks, type InferResult } from '../../var/var.js';
import { loadVar } from '../../var/load.js';
import { randomVar } from '../../var/init.js';
import { varPreset } from '../../var/config.js';
import { imageSeed } from '../../var/sample.js';
import { VQVAE } from '../../vqvae/vqvae.js';
import { loadVqvae } from '../../vqvae/load.js';
import { tensorToImages, makeGrid, encodePng, writeFileAtomic, type RgbImage } from '../../image/png.js';
import { actvarGenerateExtension } from './actvar-options.js';

/** Parsed options of `actvar generate` (commander camel-cases the flags). */
export interface GenerateOptions {
  var?: string;
  vae?: string;
  classes: number[];
  perClass: number;
  cfg: number;
  topK: number;
  topP: number;
  moreSmooth?: boolean;
  seed: number;
  out?: string;
  outDir?: string;
  tokensOut?: string;
  batch: number;
  randomInit?: boolean;
  preset: string;
  initSeed: number;
  quiet?: boolean;
  [extra: string]: unknown;
}

/**
 * A plug-in of the generate command (e.g. ActVAR): declares extra options, and given the loaded
 * model and the parsed options returns hooks for sampling, plus files to write at the end.
 */
export interface GenerateExtension {
  configure(cmd: Command): void;
  prepare(model: VAR, opts: GenerateOptions, ctx: { vqvae: VQVAE }): GenerateExtensionRun | undefined;
}
export interface GenerateExtensionRun {
  hooks?: VarHooks;
  /** Called after each batch with the image indices it covered. */
  afterBatch?(first: number, result: InferResult): void;
  /** Files to write at the end (path → bytes), after validation of everything else. */
  outputs?(): Map<string, Uint8Array | string>;
}
/** Registered extensions; append to this (one line) to add options to `actvar generate`. */
export const generateExtensions: GenerateExtension[] = [actvarGenerateExtension];

function intArg(min: number, what: string): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${what} must be an integer >= ${min}, got '${v}'`);
    return n;
  };
}
function numArg(what: string, ok: (n: number) => boolean, range: string): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || !ok(n)) throw new InvalidArgumentError(`${what} must be ${range}, got '${v}'`);
    return n;
  };
}
function classList(v: string): number[] {
  const parts = v.split(',').map((s) => s.trim()).filter((s) => s !== '');
  const ids = parts.map(Number);
  if (parts.length === 0 || ids.some((n) => !Number.isInteger(n) || n < 0)) {
    throw new InvalidArgumentError(`expected comma-separated class ids (integers >= 0), e.g. 207,360; got '${v}'`);
  }
  return ids;
}

function checkReadable(path: string, flag: string): void {
  const why = unreadableFile(path);
  if (why) throw new UserError(`${flag} ${path}: ${why === 'not a file' ? why : `cannot read the file (${why})`}`);
}

function checkWritableTarget(path: string, flag: string, isDir = false): void {
  const why = unwritableTarget(path, isDir);
  if (why) throw new UserError(`${flag} ${path}: ${why}`);
}

/** Load or build the models (user errors for unreadable / unsuitable files). */
function loadModels(o: GenerateOptions): { model: VAR; vqvae: VQVAE } {
  let model: VAR;
  if (o.randomInit) {
    try { model = randomVar(varPreset(o.preset), o.initSeed); } catch (e) { throw new UserError((e as Error).message); }
  } else {
    try { model = loadVar(o.var!); } catch (e) { throw new UserError(`cannot load --var ${o.var}: ${(e as Error).message}`); }
  }
  let vqvae: VQVAE;
  if (o.vae) {
    try { vqvae = loadVqvae(o.vae, { patchNums: model.config.patchNums }); } catch (e) { throw new UserError(`cannot load --vae ${o.vae}: ${(e as Error).message}`); }
  } else {
    // --random-init without --vae: the official VQVAE shape (ch 160, (1,1,2,2,4)) with seeded random weights
    vqvae = VQVAE.random({ patchNums: model.config.patchNums, Cvae: model.config.Cvae, vocabSize: model.config.vocabSize }, new Rng(o.initSeed + 1));
  }
  if (vqvae.Cvae !== model.config.Cvae || vqvae.vocabSize !== model.config.vocabSize) {
    throw new UserError(`the VQVAE (Cvae ${vqvae.Cvae}, vocabulary ${vqvae.vocabSize}) does not fit the VAR (Cvae ${model.config.Cvae}, vocabulary ${model.config.vocabSize})`);
  }
  return { model, vqvae };
}

/** The whole command, callable from tests. Returns the paths written. */
export function runGenerate(o: GenerateOptions): string[] {
  // ---- validate everything that does not need the weights
  if (o.randomInit) {
    if (o.var) throw new UserError('--random-init and --var exclude each other');
  } else {
    if (!o.var) throw new UserError('--var FILE is required (or --random-init --preset d16 for random weights)');
    if (!o.vae) throw new UserError('--vae FILE is required');
  }
  if (o.var) checkReadable(o.var, '--var');
  if (o.vae) checkReadable(o.vae, '--vae');
  if (!o.out && !o.outDir && !o.tokensOut) o.out = 'grid.png';
  if (o.out) checkWritableTarget(o.out, '--out');
  if (o.outDir) checkWritableTarget(o.outDir, '--out-dir', true);
  if (o.tokensOut) checkWritableTarget(o.tokensOut, '--tokens-out');

  const { model, vqvae } = loadModels(o);
  const nc = model.config.numClasses;
  const bad = o.classes.filter((c) => c >= nc);
  if (bad.length) throw new UserError(`unknown class id${bad.length > 1 ? 's' : ''} ${bad.join(', ')}: this model has classes 0..${nc - 1}`);
  const labels: number[] = [];
  for (const c of o.classes) for (let k = 0; k < o.perClass; k++) labels.push(c);
  const runs = generateExtensions.map((x) => x.prepare(model, o, { vqvae })).filter((r): r is GenerateExtensionRun => !!r);
  const hooks: VarHooks = {};
  for (const r of runs) if (r.hooks) Object.assign(hooks, r.hooks);

  if (!o.quiet) announceBackend();
  const SN = model.numScales, nBatches = Math.ceil(labels.length / o.batch);
  const bar = !o.quiet && process.stderr.isTTY
    ? new cliProgress.SingleBar({ format: 'generate |{bar}| scale {scale}/{SN} batch {b}/{nb} | {eta_formatted}', stream: process.stderr, hideCursor: true }, cliProgress.Presets.shades_classic)
    : null;
  bar?.start(nBatches * SN, 0, { scale: 0, SN, b: 1, nb: nBatches });
  const images: RgbImage[] = [];
  const tokens: number[][] = [];
  try {
    for (let bi = 0; bi < nBatches; bi++) {
      const first = bi * o.batch, lab = labels.slice(first, first + o.batch);
      const res = model.autoregressiveInfer({
        labels: lab, vqvae, cfg: o.cfg, topK: o.topK, topP: o.topP, moreSmooth: !!o.moreSmooth,
        rng: lab.map((_, j) => new Rng(imageSeed(o.seed, first + j))),
        ...hooks,
        onScale: (si) => bar?.increment(1, { scale: si + 1, b: bi + 1 }),
      });
      const L = model.L, idx = res.idxBL.i32;
      for (let j = 0; j < lab.length; j++) tokens.push(Array.from(idx.subarray(j * L, (j + 1) * L)));
      images.push(...tensorToImages(res.image!));
      for (const r of runs) r.afterBatch?.(first, res);
    }
  } finally {
    bar?.stop();
  }

  // ---- outputs, only now, each atomically
  const files = new Map<string, Uint8Array | string>();
  if (o.out) files.set(o.out, encodePng(makeGrid(images, { nrow: Math.min(8, images.length) })));
  if (o.outDir) {
    const width = String(images.length - 1).length;
    images.forEach((im, i) => files.set(nodePath.join(o.outDir!, `${String(i).padStart(width, '0')}_class${labels[i]}.png`), encodePng(im)));
  }
  if (o.tokensOut) files.set(o.tokensOut, JSON.stringify({ idx_BL: tokens }) + '\n');
  for (const r of runs) for (const [p, b] of r.outputs?.() ?? []) files.set(p, b);
  for (const p of files.keys()) fs.mkdirSync(nodePath.dirname(nodePath.resolve(p)), { recursive: true });
  for (const [p, b] of files) writeFileAtomic(p, b);
  if (!o.quiet) process.stderr.write(`actvar: wrote ${[...files.keys()].length} file(s): ${[...files.keys()].slice(0, 3).join(', ')}${files.size > 3 ? ', …' : ''}\n`);
  return [...files.keys()];
}

export function register(program: Command): void {
  const cmd = program.command('generate')
    .description('generate class-conditional images with a VAR (one per listed class, times --per-class)')
    .option('--var <file>', 'VAR weights (.safetensors or .pth; architecture inferred)')
    .option('--vae <file>', 'VQVAE weights (.safetensors or .pth)')
    .requiredOption('--classes <ids>', 'comma-separated ImageNet class ids, e.g. 207,360', classList)
    .option('--per-class <n>', 'images per class', intArg(1, '--per-class'), 1)
    .option('--cfg <w>', 'classifier-free guidance strength (ramps 0 → w over the scales)', numArg('--cfg', (n) => n >= 0, 'a number >= 0'), 1.5)
    .option('--top-k <k>', 'keep the k most likely tokens (0 = off)', intArg(0, '--top-k'), 900)
    .option('--top-p <p>', 'nucleus sampling mass (0 = off)', numArg('--top-p', (n) => n >= 0 && n <= 1, 'in [0, 1]'), 0.96)
    .option('--more-smooth', 'Gumbel-softmax token features (smoother images, not for FID)')
    .option('--seed <s>', 'sampling seed', intArg(0, '--seed'), 0)
    .option('--out <file>', 'PNG grid of all images (default grid.png when no other output is given)')
    .option('--out-dir <dir>', 'also write one PNG per image into this directory')
    .option('--tokens-out <file>', 'write {"idx_BL": [[...], ...]}: each image\'s tokens of all scales, row-major')
    .option('--batch <n>', 'images per forward pass (memory vs speed; results do not depend on it)', intArg(1, '--batch'), 4)
    .option('--random-init', 'seeded random weights instead of --var/--vae (benchmarks)')
    .option('--preset <name>', 'architecture for --random-init: d16, d20, d24, d30, d36', 'd16')
    .option('--init-seed <s>', 'seed of --random-init weights', intArg(0, '--init-seed'), 0)
    .option('--quiet', 'no progress bar or messages');
  for (const x of generateExtensions) x.configure(cmd);
  cmd.action((opts: GenerateOptions) => { runGenerate(opts); });
}
