/**
 * `actvar eval`: FID, Inception Score and improved precision/recall of generated images against a
 * reference set (src/eval/evaluate.ts; docs/EVALUATION.md).
 *
 *   actvar eval [--n 10000] [--var FILE --tokenizer FILE] [ActVAR flags | --actvar-model FILE] | --images DIR|SPLIT
 *     [--ref fashion-mnist:test] [--extractor classifier|inception] [--weights FILE]
 *     [--features-out F.safetensors] [--shard i/n --out SHARD.safetensors] [--json]
 *   actvar eval --merge SHARD… [--ref …] [--json]
 *
 * Generated image i has class i mod C and its own RNG stream imageSeed(--seed, i) (results do not
 * depend on --batch or on sharding); it is quantised to 8 bits as a PNG would be (`toUint8`), so
 * evaluating in process equals writing PNGs with `actvar generate --out-dir` and `--images DIR`.
 * Reference splits (`name:split` or `name:split:N` for the first N) are extracted once per extractor
 * weights and cached in --cache-dir (default $ACTVAR_CACHE or ~/.cache/actvar).
 * A shard writes the features and logits of its images (they determine the statistics exactly);
 * --merge concatenates the shards in index order and computes exactly the numbers of one run.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import cliProgress from 'cli-progress';
import { UserError } from '../errors.js';
import { announceBackend } from '../../backend/node.js';
import { Tensor, Rng, countFlops, flopsCategory } from '../../tensor/index.js';
import { readSafetensorsFile, writeSafetensors } from '../../io/safetensors.js';
import { toUnitRange } from '../../var/var.js';
import { imageSeed } from '../../var/sample.js';
import { toUint8 } from '../../image/png.js';
import { loadVar } from '../../var/load.js';
import { loadVqvae } from '../../vqvae/load.js';
import { loadDataset, DATASET_NAMES, type DatasetName, type Split } from '../../data/datasets.js';
import { transformerFlops } from '../../app/demo.js';
import { qualityMetrics, evalLabel, type QualityMetrics } from '../../eval/evaluate.js';
import type { FeatureExtractor } from '../../eval/features.js';
import { addActVarModelOption, buildActVar, checkActVarFlags, loadActVarModelFlag, type ActVarCliOptions } from '../actvar.js';
import { addActVarInitOptions, addActVarSettingsOptions, addActVarBaselineOption, addSamplingOptions, addWeightsDtypeOption, BF16_ACTVAR, choice, int, path } from '../options.js';
import type { WeightsDtype } from '../../var/weights-dtype.js';
import { OutputPlan } from '../outputs.js';
import { loadExtractor, listPngs, extractFolder, type ExtractorName } from './features.js';
import { checkReadable } from '../inputs.js';

/** More images than this would take hours on 2 cores and their features gigabytes (50,000 is the paper's N). */
export const MAX_EVAL_IMAGES = 100_000;

interface EvalOptions extends ActVarCliOptions {
  n: number; var: string; tokenizer: string; images?: string; ref: string; extractor: ExtractorName; weights?: string;
  cfg: number; topK: number; topP: number; seed: number; batch: number; splits: number; weightsDtype: WeightsDtype;
  cacheDir?: string; featuresOut?: string; varGiven?: boolean; tokenizerGiven?: boolean; shard?: { i: number; n: number }; out?: string; merge?: string[]; json?: boolean; quiet?: boolean;
}

/** A dataset split: `fashion-mnist:test`, `mnist:train:10000` (the first 10,000). */
interface SplitSpec { name: DatasetName; split: Split; limit?: number }

function parseSplit(v: string): SplitSpec | null {
  const m = /^([a-z-]+):(train|test)(?::(\d+))?$/.exec(v);
  if (!m || !(DATASET_NAMES as readonly string[]).includes(m[1])) return null;
  return { name: m[1] as DatasetName, split: m[2] as Split, ...(m[3] ? { limit: Number(m[3]) } : {}) };
}
const splitKey = (s: SplitSpec): string => `${s.name}-${s.split}${s.limit !== undefined ? `-${s.limit}` : ''}`;

function shardOption(v: string): { i: number; n: number } {
  const m = /^(\d+)\/(\d+)$/.exec(v);
  const i = m ? Number(m[1]) : NaN, n = m ? Number(m[2]) : NaN;
  if (!m || n < 1 || i >= n) throw new InvalidArgumentError(`expected i/n with 0 <= i < n (e.g. 0/3), got '${v}'`);
  return { i, n };
}

/** Features (and logits) of a dataset split, `chunk` images per pass. */
function extractSplit(ex: FeatureExtractor, s: SplitSpec, log: (s: string) => void): { features: Float32Array; logits: Float32Array } {
  let ds;
  try { ds = loadDataset(s.name, s.split); } catch (e) { throw new UserError(`${s.name}:${s.split}: ${(e as Error).message}`); }
  if (s.limit !== undefined) ds = ds.head(s.limit);
  const N = ds.length, side = ds.side, px = side * side, chunk = 1000;
  const features = new Float32Array(N * ex.featureDim), logits = new Float32Array(N * ex.numClasses);
  for (let i = 0; i < N; i += chunk) {
    const n = Math.min(chunk, N - i), x = new Float32Array(n * px);
    for (let k = 0; k < n * px; k++) x[k] = ds.pixels[i * px + k] / 255;
    const r = ex.extract(new Tensor(x, [n, 1, side, side]));
    features.set(r.features, i * ex.featureDim);
    logits.set(r.logits, i * ex.numClasses);
  }
  log(`extracted ${N} images of ${s.name}:${s.split} (${ex.name})`);
  return { features, logits };
}

export function defaultCacheDir(): string {
  return process.env.ACTVAR_CACHE || nodePath.join(os.homedir(), '.cache', 'actvar');
}

/** Refuse, before any work, a set that is neither a dataset split nor an existing folder. */
function checkSetSpec(spec: string | undefined, flag: string): void {
  if (spec === undefined || parseSplit(spec)) return;
  if (!fs.existsSync(spec) || !fs.statSync(spec).isDirectory()) {
    throw new UserError(`${flag} ${spec}: neither a dataset split (${DATASET_NAMES.map((d) => `${d}:test`).join(', ')}, …:train, …:train:N) nor a folder of PNGs`);
  }
}

/** A set given as a dataset split (cached per extractor weights) or a PNG folder. */
function featuresOf(spec: string, flag: string, ex: FeatureExtractor, cacheDir: string, log: (s: string) => void): { features: Float32Array; logits: Float32Array; n: number } {
  const s = parseSplit(spec);
  if (!s) {
    if (!fs.existsSync(spec) || !fs.statSync(spec).isDirectory()) {
      throw new UserError(`${flag} ${spec}: neither a dataset split (${DATASET_NAMES.map((d) => `${d}:test`).join(', ')}, …:train, …:train:N) nor a folder of PNGs`);
    }
    const names = listPngs(spec, flag);
    const r = extractFolder(ex, spec, names);
    log(`extracted ${names.length} PNGs of ${spec} (${ex.name})`);
    return { ...r, n: names.length };
  }
  const file = nodePath.join(cacheDir, `ref-${splitKey(s)}-${ex.name}-${ex.weightsHash.slice(0, 16)}.safetensors`);
  if (fs.existsSync(file)) {
    try {
      const { tensors, metadata } = readSafetensorsFile(file);
      const f = tensors.get('features'), l = tensors.get('logits');
      if (metadata?.weights_sha256 === ex.weightsHash && f && l && f.shape[1] === ex.featureDim && l.shape[1] === ex.numClasses) {
        log(`reference features of ${spec} from the cache ${file}`);
        return { features: f.f32, logits: l.f32, n: f.shape[0] };
      }
    } catch { /* unreadable cache entry: recompute and overwrite */ }
  }
  const r = extractSplit(ex, s, log);
  const n = r.features.length / ex.featureDim;
  try {
    fs.mkdirSync(cacheDir, { recursive: true });
    writeSafetensors(file, new Map([['features', new Tensor(r.features, [n, ex.featureDim])], ['logits', new Tensor(r.logits, [n, ex.numClasses])]]),
      { format: 'actvar-ref-features/1', split: spec, extractor: ex.name, weights_sha256: ex.weightsHash });
    log(`cached the reference features in ${file}`);
  } catch (e) {
    log(`could not write the cache ${file} (${(e as Error).message}); continuing without it`);
  }
  return { ...r, n };
}

interface Generated { features: Float32Array; logits: Float32Array; n: number; gflops: number | null }

/** Generate images [first, first + count) of the run and extract their features. */
function generate(o: EvalOptions, ex: FeatureExtractor, first: number, count: number, log: (s: string) => void): Generated {
  let model, vqvae, act;
  if (o.actvarModel !== undefined) {
    // the model file holds its VAR; the tokenizer is the one it names unless --tokenizer was given (checked by SHA-256)
    const m = loadActVarModelFlag(o, '--tokenizer', o.tokenizerGiven ? o.tokenizer : undefined);
    act = m.act; model = m.act.model; o.tokenizer = m.tokenizer;
    try { vqvae = loadVqvae(o.tokenizer); } catch (e) { throw new UserError(`cannot load the tokenizer ${o.tokenizer}: ${(e as Error).message}`); }
  } else {
    checkReadable(o.var, '--var');
    checkReadable(o.tokenizer, '--tokenizer');
    try { model = loadVar(o.var, {}, { weightsDtype: o.weightsDtype }); } catch (e) { throw new UserError(`cannot load --var ${o.var}: ${(e as Error).message}`); }
    try { vqvae = loadVqvae(o.tokenizer); } catch (e) { throw new UserError(`cannot load --tokenizer ${o.tokenizer}: ${(e as Error).message}`); }
    act = buildActVar(model, o, { vqvae, cfg: o.cfg, topK: o.topK, topP: o.topP, seed: o.seed, log });
  }
  const C = model.config.numClasses, D = ex.featureDim, K = ex.numClasses;
  const features = new Float32Array(count * D), logits = new Float32Array(count * K);
  let flops = 0;
  const nb = Math.ceil(count / o.batch), t0 = performance.now();
  const bar = !o.quiet && process.stderr.isTTY
    ? new cliProgress.SingleBar({ format: 'eval |{bar}| {value}/{total} images | {rate} img/s | ETA {eta_formatted}', stream: process.stderr, hideCursor: true }, cliProgress.Presets.shades_classic)
    : null;
  bar?.start(count, 0, { rate: '-' });
  let nextLine = 0.1;
  try {
    for (let b = 0; b < nb; b++) {
      const start = first + b * o.batch, n = Math.min(o.batch, first + count - start);
      const labels = Array.from({ length: n }, (_, j) => evalLabel(start + j, C));
      const { result, flops: fc } = countFlops(() => model.autoregressiveInfer({
        labels, vqvae, cfg: o.cfg, topK: o.topK, topP: o.topP, decode: false,
        rng: labels.map((_, j) => new Rng(imageSeed(o.seed, start + j))), ...(act ? act.hooks : {}),
      }));
      flops += transformerFlops(fc);
      const img = toUnitRange(flopsCategory('vqvae_decode', () => vqvae.fhatToImg(result.fHat)));
      const q = img.f32;
      for (let k = 0; k < q.length; k++) q[k] = toUint8(q[k]) / 255; // as a PNG stores it
      const r = ex.extract(img);
      features.set(r.features, (start - first) * D);
      logits.set(r.logits, (start - first) * K);
      const done = start - first + n, rate = done / ((performance.now() - t0) / 1e3);
      bar?.update(done, { rate: rate.toFixed(1) });
      if (!bar && !o.quiet && done / count >= nextLine - 1e-9) {
        log(`generated ${done}/${count} images, ${rate.toFixed(1)} img/s, ETA ${((count - done) / rate).toFixed(0)} s`);
        nextLine += 0.1;
      }
    }
  } finally { bar?.stop(); }
  return { features, logits, n: count, gflops: flops / count / 1e9 };
}

/** The run settings a shard must share with its siblings. */
function runSignature(o: EvalOptions, ex: FeatureExtractor): string {
  const actvar = o.actvar ? { tokenRates: o.tokenRates, expertRate: o.expertRate, experts: o.experts, scales: o.scales, kvPolicy: o.kvPolicy, actvarWeights: o.actvarWeights, actvarCalib: o.actvarCalib, actvarModel: o.actvarModel && nodePath.resolve(o.actvarModel), baseline: o.baseline } : null;
  const bf16 = o.weightsDtype === 'bf16' ? { weightsDtype: 'bf16' } : {}; // fp32 runs keep their signature
  return JSON.stringify({ n: o.n, var: o.actvarModel ? null : nodePath.resolve(o.var), tokenizer: nodePath.resolve(o.tokenizer), cfg: o.cfg, topK: o.topK, topP: o.topP, seed: o.seed, actvar, extractor: ex.name, weights_sha256: ex.weightsHash, ...bf16 });
}

/** Read shard files and concatenate them in shard order (all of 0..n−1, one run). */
function mergeShards(files: string[], ex: FeatureExtractor): Generated {
  const shards = files.map((f) => {
    checkReadable(f, '--merge');
    let r;
    try { r = readSafetensorsFile(f); } catch (e) { throw new UserError(`--merge ${f}: not a shard file (${(e as Error).message})`); }
    const m = r.metadata ?? {}, feat = r.tensors.get('gen_features'), lg = r.tensors.get('gen_logits');
    if (m.format !== 'actvar-eval-shard/1' || !feat || !lg) throw new UserError(`--merge ${f}: not a shard file of \`actvar eval --shard\``);
    if (m.weights_sha256 !== ex.weightsHash) throw new UserError(`--merge ${f}: its features come from other extractor weights (sha256 ${m.weights_sha256?.slice(0, 12)}…, these are ${ex.weightsHash.slice(0, 12)}…); give the same --extractor/--weights`);
    return { f, i: Number(m.shard_index), n: Number(m.shard_count), run: m.run, gflops: Number(m.gflops_per_image), feat, lg };
  });
  const n = shards[0].n;
  shards.sort((a, b) => a.i - b.i);
  for (const s of shards) if (s.n !== n || s.run !== shards[0].run) throw new UserError(`--merge ${s.f}: belongs to another run (shard count or settings differ from ${shards[0].f})`);
  if (shards.length !== n || shards.some((s, k) => s.i !== k)) throw new UserError(`--merge: need each of the ${n} shards 0..${n - 1} exactly once, got ${shards.map((s) => s.i).join(', ')}`);
  const D = ex.featureDim, K = ex.numClasses, N = shards.reduce((a, s) => a + s.feat.shape[0], 0);
  const features = new Float32Array(N * D), logits = new Float32Array(N * K);
  let off = 0, flops = 0;
  for (const s of shards) { features.set(s.feat.f32, off * D); logits.set(s.lg.f32, off * K); off += s.feat.shape[0]; flops += s.gflops * s.feat.shape[0]; }
  return { features, logits, n: N, gflops: Number.isFinite(flops) ? flops / N : null };
}

const r6 = (v: number): number => Math.round(v * 1e6) / 1e6;

export function formatEval(m: QualityMetrics, ex: FeatureExtractor, gflops: number | null, seconds: number): string {
  const fidName = ex.name === 'classifier' ? 'FID (classifier features, not Inception FID)' : 'FID (Inception pool3)';
  const rows: [string, string][] = [
    [fidName, m.fid.toFixed(4) + (m.fidOffsetApplied ? ' (ε·I offset applied)' : '')],
    [`Inception Score (${ex.name} logits, 10 splits)`, `${m.isMean.toFixed(4)} ± ${m.isStd.toFixed(4)}`],
    ['precision (k = 3)', m.precision.toFixed(4)], ['recall (k = 3)', m.recall.toFixed(4)],
    ['generated / reference images', `${m.nGen} / ${m.nRef}`],
    ['GFLOPs per image (transformer)', gflops === null ? '-' : gflops.toFixed(4)],
    ['extractor weights sha256', ex.weightsHash.slice(0, 16) + '…'], ['seconds', seconds.toFixed(1)],
  ];
  const w = Math.max(...rows.map((r) => r[0].length));
  return rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n') + '\n';
}

export function runEval(o: EvalOptions): { metrics: QualityMetrics | null; json: Record<string, unknown> | null } {
  const t0 = performance.now();
  const log = (s: string): void => { if (!o.quiet) process.stderr.write(`actvar: ${s}\n`); };
  // ---- validate what needs no work
  if (o.merge && (o.shard || o.images)) throw new UserError('--merge combines shard files; leave out --shard and --images');
  if (o.shard && !o.out) throw new UserError('--shard i/n needs --out FILE (the shard file to write)');
  if (o.out && !o.shard) throw new UserError('--out is the shard file of --shard i/n; for the features of a whole run use --features-out');
  if (o.shard && o.images) throw new UserError('--shard splits the generated images; with --images there is nothing to generate');
  if ((o.actvar || o.actvarModel !== undefined) && o.weightsDtype === 'bf16') throw new UserError(BF16_ACTVAR);
  if (o.actvarModel !== undefined) {
    if (o.varGiven) throw new UserError('--actvar-model holds its own VAR: leave out --var');
    if (o.images || o.merge) throw new UserError('--actvar-model generates the images; leave out --images / --merge');
    checkActVarFlags(o);
  }
  const plan = new OutputPlan().input('--actvar-model', o.actvarModel).input('--var', o.images || o.merge || o.actvarModel ? undefined : o.var).input('--tokenizer', o.images || o.merge ? undefined : o.tokenizer)
    .input('--weights', o.weights);
  for (const f of o.merge ?? []) plan.input('--merge', f);
  plan.file('--out', o.out).file('--features-out', o.featuresOut);
  plan.check();
  for (const [flag, spec] of [['--ref', o.ref], ['--images', o.images]] as const) checkSetSpec(spec, flag);
  const refSplit = parseSplit(o.ref);
  const ex = loadExtractor(o.extractor, o.weights, refSplit?.name);
  if (!o.quiet) announceBackend();

  // ---- the generated (or given) set
  let gen: Generated;
  if (o.merge) {
    gen = mergeShards(o.merge, ex);
  } else if (o.images) {
    const r = featuresOf(o.images, '--images', ex, o.cacheDir ?? defaultCacheDir(), log);
    gen = { ...r, gflops: null };
  } else if (o.shard) {
    const per = Math.ceil(o.n / o.shard.n), first = Math.min(o.n, o.shard.i * per), count = Math.min(o.n, first + per) - first;
    if (count === 0) throw new UserError(`--shard ${o.shard.i}/${o.shard.n}: no images left for this shard with --n ${o.n}`);
    gen = generate(o, ex, first, count, log);
    plan.prepare();
    writeSafetensors(o.out!, new Map([['gen_features', new Tensor(gen.features, [count, ex.featureDim])], ['gen_logits', new Tensor(gen.logits, [count, ex.numClasses])]]), {
      format: 'actvar-eval-shard/1', shard_index: String(o.shard.i), shard_count: String(o.shard.n), first: String(first), count: String(count),
      run: runSignature(o, ex), weights_sha256: ex.weightsHash, extractor: ex.name, gflops_per_image: String(gen.gflops),
    });
    log(`wrote shard ${o.shard.i}/${o.shard.n} (images ${first}..${first + count - 1}) to ${o.out}; combine with \`actvar eval --merge FILES…\``);
    return { metrics: null, json: null };
  } else {
    gen = generate(o, ex, 0, o.n, log);
  }
  if (gen.n < 4) throw new UserError(`need at least 4 images (a covariance, and 3 nearest neighbours for precision/recall), got ${gen.n}`);

  // ---- reference set and the metrics
  const ref = featuresOf(o.ref, '--ref', ex, o.cacheDir ?? defaultCacheDir(), log);
  if (ref.n < 4) throw new UserError(`--ref ${o.ref}: need at least 4 reference images, got ${ref.n}`);
  log(`computing FID, IS and precision/recall (${gen.n} vs ${ref.n} images, D = ${ex.featureDim}) …`);
  const metrics = qualityMetrics({ features: gen.features, logits: gen.logits }, { features: ref.features }, ex.featureDim, ex.numClasses, { splits: o.splits });
  if (o.featuresOut) {
    plan.prepare();
    writeSafetensors(o.featuresOut, new Map([
      ['gen_features', new Tensor(gen.features, [gen.n, ex.featureDim])], ['gen_logits', new Tensor(gen.logits, [gen.n, ex.numClasses])],
      ['ref_features', new Tensor(ref.features, [ref.n, ex.featureDim])],
    ]), { format: 'actvar-eval-features/1', extractor: ex.name, weights_sha256: ex.weightsHash, ref: o.ref });
    log(`wrote ${o.featuresOut}`);
  }
  const seconds = (performance.now() - t0) / 1e3;
  const json = {
    fid: metrics.fid, is_mean: metrics.isMean, is_std: metrics.isStd, precision: metrics.precision, recall: metrics.recall,
    n_gen: metrics.nGen, n_ref: metrics.nRef, extractor: ex.name, gflops_per_image: gen.gflops === null ? null : r6(gen.gflops), seconds: Math.round(seconds * 10) / 10,
  };
  const table = formatEval(metrics, ex, gen.gflops, seconds);
  if (o.json) { if (!o.quiet) process.stderr.write(table); process.stdout.write(JSON.stringify(json) + '\n'); } else process.stdout.write(table);
  return { metrics, json };
}

export function register(program: Command): void {
  const cmd = program.command('eval')
    .description('FID, Inception Score and precision/recall of generated (or given) images against a reference set')
    .option('--n <n>', `images to generate (classes spread evenly, image i seeded by --seed and i), 1..${MAX_EVAL_IMAGES}`, int('--n', { min: 1, max: MAX_EVAL_IMAGES }), 10000)
    .option('--var <file>', 'VAR (any file `actvar generate --var` takes)', path('--var'), 'models/var-fashion-mnist.safetensors')
    .option('--tokenizer <file>', 'VQVAE / tokenizer (any file `actvar generate --vae` takes)', path('--tokenizer'), 'models/tokenizer-fashion-mnist.safetensors')
    .option('--images <dir|split>', 'evaluate these images instead of generating: a folder of PNGs or a dataset split (e.g. fashion-mnist:train:10000)', path('--images'))
    .option('--ref <split|dir>', 'reference set: fashion-mnist:test, mnist:test, fashion-mnist:train[:N], … or a folder of PNGs', path('--ref'), 'fashion-mnist:test')
    .option('--extractor <name>', 'classifier (FID with the shipped classifier of the reference dataset) or inception', choice('--extractor', ['classifier', 'inception'] as const), 'classifier')
    .option('--weights <file>', 'extractor weights (default: models/classifier-<dataset of --ref>.safetensors)', path('--weights'))
    .option('--batch <n>', 'images per forward pass (results do not depend on it)', int('--batch', { min: 1, max: 4096 }), 50)
    .option('--splits <n>', 'Inception Score splits', int('--splits', { min: 1, max: 1000 }), 10)
    .option('--cache-dir <dir>', 'reference-feature cache (default $ACTVAR_CACHE or ~/.cache/actvar)', path('--cache-dir'))
    .option('--features-out <file>', 'save F32 gen_features, gen_logits, ref_features (.safetensors) to recompute every number', path('--features-out'))
    .option('--shard <i/n>', 'generate only part i of n (0-based) and write its features to --out', shardOption)
    .option('--out <file>', 'the shard file of --shard', path('--out'))
    .option('--merge <files...>', 'combine the shard files of one run (all n) into the numbers of the unsharded run')
    .option('--json', 'table on stderr, one JSON line on stdout')
    .option('--quiet', 'no progress or messages');
  addWeightsDtypeOption(cmd);
  addSamplingOptions(cmd);
  cmd.option('--actvar', 'evaluate ActVAR (sparse tokens and FFN experts at the activated scales) instead of the dense VAR');
  addActVarSettingsOptions(cmd);
  addActVarInitOptions(cmd, 2);
  addActVarBaselineOption(cmd);
  addActVarModelOption(cmd);
  cmd.action((o: EvalOptions) => {
    // --var / --tokenizer have defaults: with --actvar-model only explicit values count
    runEval({ ...o, varGiven: cmd.getOptionValueSource('var') === 'cli', tokenizerGiven: cmd.getOptionValueSource('tokenizer') === 'cli' });
  });
}
