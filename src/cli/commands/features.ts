/**
 * `actvar features`: the feature extractor's penultimate features and logits of a folder of PNGs.
 *
 *   actvar features --images DIR [--extractor classifier|inception] [--weights FILE] --out F.safetensors
 *
 * PNG files of DIR in sorted file-name order (code-unit order, as Python's `sorted`), grey or RGB,
 * read as [1 or 3, H, W] in [0, 1]; writes F32 `features` [N, D] and `logits` [N, C], with the
 * extractor, its weights' sha256 and the file names (JSON) in the metadata.
 *
 * Also the Node-side helpers `actvar eval` shares: loading an extractor (weights hashed for the
 * reference-statistics cache) and reading a PNG folder.
 */
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { Command } from 'commander';
import { choice, path } from '../options.js';
import { OutputPlan } from '../outputs.js';
import { UserError } from '../errors.js';
import { sha256File } from '../../io/node-fs.js';
import { checkReadable } from '../inputs.js';
import { writeSafetensors } from '../../io/safetensors.js';
import { Tensor } from '../../tensor/index.js';
import { decodePng } from '../../image/png.js';
import { loadClassifier } from '../../eval/classifier.js';
import { ClassifierExtractor } from '../../eval/classifier-extractor.js';
import type { FeatureExtractor } from '../../eval/features.js';
import { loadInceptionExtractor } from '../../eval/inception.js';

export type ExtractorName = 'classifier' | 'inception';

/** The shipped classifier of a dataset (docs/MODELS.md). */
export function defaultClassifierWeights(dataset: string = 'fashion-mnist'): string {
  return nodePath.join('models', `classifier-${dataset === 'mnist' ? 'mnist' : 'fashion-mnist'}.safetensors`);
}

export const extractorOption = choice('--extractor', ['classifier', 'inception'] as const);

/** The FID Inception network (pytorch-fid's pt_inception-2015-12-05 weights, .pth zip or legacy, or safetensors with its keys). */
function loadInception(weights: string): FeatureExtractor {
  try {
    return loadInceptionExtractor(weights);
  } catch (e) {
    throw new UserError(`cannot load the FID Inception --weights ${weights}: ${(e as Error).message} (expected pytorch-fid's pt_inception-2015-12-05-6726825d.pth or a file with its key names)`);
  }
}

/** Load an extractor by name; `weights` defaults to the shipped classifier of `dataset`. */
export function loadExtractor(name: ExtractorName, weights: string | undefined, dataset?: string): FeatureExtractor {
  if (name === 'inception') {
    if (weights === undefined) throw new UserError('--extractor inception needs --weights FILE (pytorch-fid\'s pt_inception-2015-12-05-6726825d.pth)');
    checkReadable(weights, '--weights');
    return loadInception(weights);
  }
  const path = weights ?? defaultClassifierWeights(dataset);
  checkReadable(path, '--weights');
  try {
    return new ClassifierExtractor(loadClassifier(path), sha256File(path));
  } catch (e) {
    throw new UserError(`cannot load the classifier --weights ${path}: ${(e as Error).message}`);
  }
}

/** The PNG file names of a folder, sorted (UserError when there are none). */
export function listPngs(dir: string, flag = '--images'): string[] {
  let names: string[];
  try { names = fs.readdirSync(dir); } catch (e) { throw new UserError(`${flag} ${dir}: cannot read the folder (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`); }
  const pngs = names.filter((n) => n.toLowerCase().endsWith('.png')).sort();
  if (pngs.length === 0) throw new UserError(`${flag} ${dir}: no .png files in this folder`);
  return pngs;
}

/** Read PNGs of `dir` as [n, C, H, W] in [0, 1]: C = 1 when every pixel of the chunk is grey, else 3. */
export function readPngs(dir: string, names: readonly string[], flag = '--images'): Tensor {
  let W = 0, H = 0, grey = true;
  const ims = names.map((n, i) => {
    let im;
    try { im = decodePng(fs.readFileSync(nodePath.join(dir, n))); } catch (e) { throw new UserError(`${flag} ${dir}: ${n} is not a readable PNG (${(e as Error).message})`); }
    if (i === 0) { W = im.width; H = im.height; } else if (im.width !== W || im.height !== H) {
      throw new UserError(`${flag} ${dir}: ${n} is ${im.width}×${im.height}, but ${names[0]} is ${W}×${H} (all images must have one size)`);
    }
    const d = im.data;
    if (grey) for (let p = 0; p < d.length; p += 3) if (d[p] !== d[p + 1] || d[p] !== d[p + 2]) { grey = false; break; }
    return im;
  });
  const C = grey ? 1 : 3, hw = W * H, out = new Float32Array(ims.length * C * hw);
  ims.forEach((im, b) => {
    for (let c = 0; c < C; c++) { const o = (b * C + c) * hw; for (let p = 0; p < hw; p++) out[o + p] = im.data[p * 3 + c] / 255; }
  });
  return new Tensor(out, [ims.length, C, H, W]);
}

/** Features and logits of all PNGs of a folder, `chunk` images at a time. */
export function extractFolder(ex: FeatureExtractor, dir: string, names: readonly string[], chunk = 500, onChunk?: (done: number) => void): { features: Float32Array; logits: Float32Array } {
  const N = names.length, features = new Float32Array(N * ex.featureDim), logits = new Float32Array(N * ex.numClasses);
  for (let i = 0; i < N; i += chunk) {
    const r = ex.extract(readPngs(dir, names.slice(i, i + chunk)));
    features.set(r.features, i * ex.featureDim);
    logits.set(r.logits, i * ex.numClasses);
    onChunk?.(Math.min(N, i + chunk));
  }
  return { features, logits };
}

interface FeaturesOptions { images: string; extractor: ExtractorName; weights?: string; out: string; quiet?: boolean }

export function runFeatures(o: FeaturesOptions): void {
  const names = listPngs(o.images);
  const plan = new OutputPlan().input('--weights', o.weights);
  for (const n of names) plan.input('--images', nodePath.join(o.images, n));
  plan.file('--out', o.out).check();
  const ex = loadExtractor(o.extractor, o.weights);
  const t0 = performance.now();
  const { features, logits } = extractFolder(ex, o.images, names, 500, (done) => {
    if (!o.quiet) process.stderr.write(`features: ${done}/${names.length} images\n`);
  });
  const N = names.length;
  plan.prepare();
  writeSafetensors(o.out, new Map([['features', new Tensor(features, [N, ex.featureDim])], ['logits', new Tensor(logits, [N, ex.numClasses])]]), {
    format: 'actvar-features/1', extractor: ex.name, weights_sha256: ex.weightsHash, images: nodePath.resolve(o.images), files: JSON.stringify(names),
  });
  if (!o.quiet) process.stderr.write(`features: wrote ${o.out} (${N} × ${ex.featureDim} features, ${N} × ${ex.numClasses} logits) in ${((performance.now() - t0) / 1e3).toFixed(1)} s\n`);
}

export function register(program: Command): void {
  program.command('features')
    .description('penultimate features and logits of a folder of PNGs (for FID / IS / precision-recall)')
    .requiredOption('--images <dir>', 'folder of PNG files (sorted by file name; grey or RGB)', path('--images'))
    .option('--extractor <name>', 'classifier (the shipped Fashion-MNIST classifier) or inception (pytorch-fid\'s FID Inception)', extractorOption, 'classifier')
    .option('--weights <file>', `extractor weights (default for classifier: ${defaultClassifierWeights()})`, path('--weights'))
    .requiredOption('--out <file>', 'output .safetensors: features [N, D], logits [N, C], file names in the metadata', path('--out'))
    .option('--quiet', 'no progress lines')
    .action((o: FeaturesOptions) => { runFeatures(o); });
}
