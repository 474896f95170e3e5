/**
 * `actvar generate`: class-conditional images from a VAR + VQVAE (docs/VAR.md §6).
 *
 *   actvar generate --var var_d16.pth --vae vae_ch160v4096z32.pth --classes 207,360 [--per-class N]
 *     [--cfg 1.5] [--top-k 900] [--top-p 0.96] [--more-smooth] [--seed 0] [--out grid.png]
 *     [--out-dir DIR] [--tokens-out tokens.json] [--batch N] [--quiet] [--actvar ...]
 *   actvar generate --random-init --preset d16 --classes 1 ...   (seeded random weights, benchmarks)
 *   actvar generate --actvar-model models/actvar-fashion-mnist.safetensors --classes 0,7   (a distilled ActVAR:
 *     its own VAR and gates; the tokenizer is the one the file names unless --vae gives it, checked by SHA-256)
 *
 * One image per listed class, times --per-class, in that order. Each image has its own RNG stream
 * (derived from --seed and its index), and each image is decoded on its own, so the result does not
 * depend on --batch. All inputs and outputs are checked before any work (outputs.ts); outputs are
 * written only at the end, each atomically (temp + rename), so a failure leaves nothing behind.
 */
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { Command, Option } from 'commander';
import cliProgress from 'cli-progress';
import { announceBackend } from '../../backend/node.js';
import { Rng, Tensor } from '../../tensor/index.js';
import { UserError } from '../errors.js';
import { checkReadable } from '../inputs.js';
import { toUnitRange, type VAR, type VarHooks } from '../../var/var.js';
import { loadVar } from '../../var/load.js';
import { randomVar } from '../../var/init.js';
import { varPreset } from '../../var/config.js';
import { imageSeed } from '../../var/sample.js';
import { VQVAE } from '../../vqvae/vqvae.js';
import { loadVqvae } from '../../vqvae/load.js';
import { tensorToImages, makeGrid, encodePng, type RgbImage } from '../../image/png.js';
import { addSamplingOptions, int, intList, path, seed } from '../options.js';
import { OutputPlan, writeOutput } from '../outputs.js';
import { addActVarGenerateOptions, addActVarModelOption, actvarRun, buildActVar, checkActVarFlags, loadActVarModelFlag, type ActVarCliOptions, type ActVarRun } from '../actvar.js';
import type { ActVAR } from '../../actvar/actvar.js';

/** Parsed options of `actvar generate` (commander camel-cases the flags). */
export interface GenerateOptions extends ActVarCliOptions {
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
}

/** Images per run: all are kept in memory until the end (~200 KB each at 256 px, plus their tokens). */
export const MAX_IMAGES = 10_000;
/** Images in one --out grid: the grid is one PNG held in memory (1024 images at 256 px ≈ 200 MB of pixels). */
export const MAX_GRID_IMAGES = 1024;
/** Images per forward pass: the KV caches grow with it (d16: ~180 MB per image, d30: ~630 MB). */
export const MAX_BATCH = 256;

/** Load or build the models (user errors for unreadable / unsuitable files); with --actvar-model, its ActVAR too. */
function loadModels(o: GenerateOptions): { model: VAR; vqvae: VQVAE; act?: ActVAR } {
  let model: VAR;
  let act: ActVAR | undefined;
  if (o.actvarModel !== undefined) {
    const m = loadActVarModelFlag(o, '--vae', o.vae);
    act = m.act; model = m.act.model; o.vae = m.tokenizer;
  } else if (o.randomInit) {
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
  return { model, vqvae, act };
}

/** The planned outputs of a run: the files and folders, checked together with the inputs. */
function planOutputs(o: GenerateOptions, labels: readonly number[]): OutputPlan {
  const plan = new OutputPlan().input('--var', o.var).input('--vae', o.vae).input('--actvar-weights', o.actvarWeights).input('--actvar-model', o.actvarModel);
  plan.file('--out', o.out).file('--tokens-out', o.tokensOut).file('--actvar-save', o.actvarSave);
  plan.dir('--out-dir', o.outDir).dir('--act-maps', o.actMaps);
  if (o.outDir) for (const [i, c] of labels.entries()) plan.file('--out-dir', nodePath.join(o.outDir, imageName(i, c, labels.length)));
  return plan;
}

function imageName(i: number, c: number, n: number): string {
  return `${String(i).padStart(String(Math.max(0, n - 1)).length, '0')}_class${c}.png`;
}

/** Checks that need neither weights nor files. */
function checkFlags(o: GenerateOptions): number[] {
  if (o.actvarModel !== undefined) {
    if (o.var || o.randomInit) throw new UserError(`--actvar-model holds its own VAR: leave out ${o.var ? '--var' : '--random-init'}`);
  } else if (o.randomInit) {
    if (o.var) throw new UserError('--random-init and --var exclude each other');
  } else {
    if (!o.var) throw new UserError('--var FILE is required (or --random-init --preset d16 for random weights)');
    if (!o.vae) throw new UserError('--vae FILE is required');
  }
  checkActVarFlags(o);
  const n = o.classes.length * o.perClass;
  if (n > MAX_IMAGES) {
    throw new UserError(`--classes × --per-class = ${n} images; at most ${MAX_IMAGES} per run (all are held in memory until the end): run several times with different --seed`);
  }
  if (!o.out && !o.outDir && !o.tokensOut) o.out = 'grid.png';
  if (o.out !== undefined && n > MAX_GRID_IMAGES) {
    throw new UserError(`--out: a grid of ${n} images is too large (at most ${MAX_GRID_IMAGES}, one PNG in memory); use --out-dir for one PNG per image`);
  }
  const labels: number[] = [];
  for (const c of o.classes) for (let k = 0; k < o.perClass; k++) labels.push(c);
  return labels;
}

/** Refuse a batch whose KV caches cannot fit in this machine's memory. */
function checkBatchMemory(model: VAR, batch: number): void {
  const c = model.config;
  const kvBytes = c.depth * 2 * (2 * batch) * model.L * c.width * 4;
  const limit = os.totalmem() / 2;
  if (kvBytes > limit) {
    throw new UserError(`--batch ${batch}: the attention caches alone would take ${(kvBytes / 2 ** 30).toFixed(1)} GiB ` +
      `(depth ${c.depth} × K,V × ${2 * batch} rows with CFG × ${model.L} tokens × width ${c.width} × 4 bytes), more than half of this machine's ` +
      `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB; use a smaller --batch (the result does not depend on it)`);
  }
}

/** Decode f̂ one image at a time: the decoder's arithmetic then never depends on --batch. */
function decodeEach(vqvae: VQVAE, fHat: Tensor): Tensor[] {
  const [B, C, h, w] = fHat.shape, n = C * h * w, f = fHat.f32;
  const out: Tensor[] = [];
  for (let b = 0; b < B; b++) out.push(toUnitRange(vqvae.fhatToImg(new Tensor(f.slice(b * n, (b + 1) * n), [1, C, h, w]))));
  return out;
}

/** The whole command, callable from tests. Returns the paths written. */
export function runGenerate(o: GenerateOptions): string[] {
  // ---- everything that needs neither weights nor work: flags, inputs, outputs
  const labels = checkFlags(o);
  if (o.var) checkReadable(o.var, '--var');
  if (o.vae) checkReadable(o.vae, '--vae');
  if (o.actvarWeights !== undefined) checkReadable(o.actvarWeights, '--actvar-weights');
  const plan = planOutputs(o, labels);
  plan.check();

  const { model, vqvae, act: loaded } = loadModels(o);
  const nc = model.config.numClasses;
  const bad = o.classes.filter((c) => c >= nc);
  if (bad.length) throw new UserError(`unknown class id${bad.length > 1 ? 's' : ''} ${bad.join(', ')}: this model has classes 0..${nc - 1}`);
  checkBatchMemory(model, Math.min(o.batch, labels.length));
  const act = loaded ?? buildActVar(model, o, {
    vqvae, cfg: o.cfg, topK: o.topK, topP: o.topP, seed: o.seed,
    log: o.quiet ? undefined : (s) => process.stderr.write(`actvar: ${s}\n`),
  });
  const run: ActVarRun | null = act ? actvarRun(act, o, labels) : null;
  const hooks: VarHooks = run?.hooks ?? {};
  plan.prepare();

  try {
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
          decode: false,
          ...hooks,
          onScale: (si) => bar?.increment(1, { scale: si + 1, b: bi + 1 }),
        });
        const L = model.L, idx = res.idxBL.i32;
        for (let j = 0; j < lab.length; j++) tokens.push(Array.from(idx.subarray(j * L, (j + 1) * L)));
        for (const im of decodeEach(vqvae, res.fHat)) images.push(...tensorToImages(im));
        run?.afterBatch(first, res);
      }
    } finally {
      bar?.stop();
    }

    // ---- outputs, only now, each atomically
    const files = new Map<string, Uint8Array | string>();
    if (o.out) files.set(o.out, encodePng(makeGrid(images, { nrow: Math.min(8, images.length) })));
    if (o.outDir) images.forEach((im, i) => files.set(nodePath.join(o.outDir!, imageName(i, labels[i], labels.length)), encodePng(im)));
    if (o.tokensOut) files.set(o.tokensOut, JSON.stringify({ idx_BL: tokens }) + '\n');
    for (const [p, b] of run?.outputs() ?? []) files.set(p, b);
    for (const [p, b] of files) writeOutput(p, b);
    if (!o.quiet) process.stderr.write(`actvar: wrote ${files.size} file(s): ${[...files.keys()].slice(0, 3).join(', ')}${files.size > 3 ? ', …' : ''}\n`);
    return [...files.keys()];
  } catch (e) {
    plan.cleanup();
    throw e;
  }
}

export function register(program: Command): void {
  const cmd = program.command('generate')
    .description('generate class-conditional images with a VAR (one per listed class, times --per-class)')
    .option('--var <file>', 'VAR weights (.safetensors or .pth; architecture inferred)', path('--var'))
    .option('--vae <file>', 'VQVAE weights (.safetensors or .pth); with --actvar-model, default: the tokenizer the file names', path('--vae'))
    .requiredOption('--classes <ids>', 'comma-separated class ids, e.g. 207,360', intList('--classes', { min: 0, max: 2 ** 31 - 1 }))
    .option('--per-class <n>', `images per class (at most ${MAX_IMAGES} images per run)`, int('--per-class', { min: 1, max: MAX_IMAGES }), 1);
  addSamplingOptions(cmd);
  cmd
    .option('--more-smooth', 'Gumbel-softmax token features (smoother images, not for FID)')
    .option('--out <file>', 'PNG grid of all images (default grid.png when no other output is given)', path('--out'))
    .option('--out-dir <dir>', 'also write one PNG per image into this directory', path('--out-dir'))
    .option('--tokens-out <file>', 'write {"idx_BL": [[...], ...]}: each image\'s tokens of all scales, row-major', path('--tokens-out'))
    .option('--batch <n>', 'images per forward pass: memory and speed only, the images and tokens are the same bytes for every --batch',
      int('--batch', { min: 1, max: MAX_BATCH }), 4)
    .option('--random-init', 'seeded random weights instead of --var/--vae (benchmarks)')
    .addOption(new Option('--preset <name>', 'architecture for --random-init').choices(['d16', 'd20', 'd24', 'd30', 'd36']).default('d16'))
    .option('--init-seed <s>', 'seed of --random-init weights', seed('--init-seed'), 0)
    .option('--quiet', 'no progress bar or messages');
  addActVarGenerateOptions(cmd);
  addActVarModelOption(cmd);
  cmd.action((opts: GenerateOptions) => { runGenerate(opts); });
}
