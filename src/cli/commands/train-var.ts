/**
 * `actvar train-var`: train a class-conditional VAR by teacher forcing on a trained tokenizer
 * (docs/VAR.md §7; src/train/train-var.ts does the work; the shared flags are in train-common.ts).
 */
import * as os from 'node:os';
import { Command } from 'commander';
import { announceBackend } from '../../backend/node.js';
import { trainVar, varConfigFor } from '../../train/train-var.js';
import { loadVqvae } from '../../vqvae/load.js';
import { unreadableFile } from '../../io/files.js';
import { varParamCount } from '../../var/config.js';
import { UserError } from '../errors.js';
import { int, num, path } from '../options.js';
import { addTrainRunOptions, parseTrainRunOptions, trainWithPlan, writeRunSummary, type TrainRunFlags, type TrainRunFlagSpec } from './train-common.js';

interface Flags extends TrainRunFlags {
  tokenizer: string; depth: number; width: number; heads?: number; mlpRatio: number; dropPath: number; condDrop: number; alng: number;
  wdEnd?: number; wpe: number; clip: number; ls: number; finalEvalSamples?: number; tokenCache?: string;
}

const SHARED: TrainRunFlagSpec = {
  defaultEpochs: 10,
  batchSize: 64,
  lr: { help: 'peak learning rate (official: 1e-4 × batch / 256 at ImageNet scale)', default: 1e-3 },
  wd: { help: 'AdamW weight decay (official no-decay list applies)', default: 0.05 },
  warmupHelp: 'warm-up steps (default: 2% of the steps, the official ep/50)',
  seedHelp: 'seed for the weights, the batch order, label dropout and drop-path',
  evalEveryHelp: 'test loss every n steps (default: 5 times per run)',
  evalSamples: { help: 'test images per periodic evaluation', default: 1000 },
  ckptEvery: 200,
  out: { help: 'write the trained VAR here (safetensors, config in the metadata)', file: 'var.safetensors' },
};

export function register(program: Command): void {
  program.addCommand(trainVarCommand());
}

export function trainVarCommand(): Command {
  const cmd = new Command('train-var')
    .description('train a class-conditional VAR by teacher forcing (label dropout, CE over all tokens, AdamW 0.9/0.95, warm-up + lin0, grad clipping)');
  return addTrainRunOptions(cmd, SHARED, {
    afterData: (c) => c
      .option('--tokenizer <file>', 'tokenizer from `actvar train-vae`', path('--tokenizer'), 'models/tokenizer-fashion-mnist.safetensors')
      .option('--depth <n>', 'transformer blocks', int('--depth', { min: 1, max: 64 }), 4)
      .option('--width <n>', 'model width C', int('--width', { min: 1, max: 4096 }), 128)
      .option('--heads <n>', 'attention heads, dividing --width (default: width/64)', int('--heads', { min: 1, max: 4096 }))
      .option('--mlp-ratio <x>', 'FFN hidden = ratio × width', num('--mlp-ratio', { min: 0, max: 64, above: true }), 4)
      .option('--drop-path <x>', 'stochastic depth of the last block, in [0, 1)', num('--drop-path', { min: 0, max: 1, below: true }), 0)
      .option('--cond-drop <x>', 'label dropout probability (classifier-free guidance), in [0, 1)', num('--cond-drop', { min: 0, max: 1, below: true }), 0.1)
      .option('--alng <x>', 'init scale of the AdaLN gammas (official README: 1e-3 for d16/d20)', num('--alng', { min: 0, max: 10 }), 1e-3),
    afterWd: (c) => c
      .option('--wd-end <x>', 'final weight decay of the cosine wd schedule (default: constant)', num('--wd-end', { min: 0, max: 10 })),
    afterWarmup: (c) => c
      .option('--wpe <x>', 'final lr as a fraction of the peak (lin0 schedule)', num('--wpe', { min: 0, max: 1 }), 0.01)
      .option('--clip <x>', 'gradient-norm clip (tclip; 0 = off)', num('--clip', { min: 0, max: 1e6 }), 2)
      .option('--ls <x>', 'label smoothing of the cross-entropy, in [0, 1)', num('--ls', { min: 0, max: 1, below: true }), 0),
    afterEval: (c) => c
      .option('--final-eval-samples <n>', 'test images of the final evaluation (default: the whole split)', int('--final-eval-samples', { min: 1, max: 10_000 }))
      .option('--token-cache <dir>', 'cache the tokenized splits here (keyed by the tokenizer\'s SHA-256)', path('--token-cache')),
  }).action(async (f: Flags) => {
    checkVarFlags(f);
    const t = parseTrainRunOptions('train-var', f, SHARED, { inputs: [['--tokenizer', f.tokenizer]], dirs: [['--token-cache', f.tokenCache]] });
    const run = t.run;
    announceBackend();
    const r = await trainWithPlan(t, () => trainVar({
      ...run, tokenizer: f.tokenizer,
      model: { depth: f.depth, width: f.width, heads: f.heads, mlpRatio: f.mlpRatio, dropPathRate: f.dropPath, condDropRate: f.condDrop, initAdalnGamma: f.alng },
      weightDecayEnd: f.wdEnd, endFactor: f.wpe, clip: f.clip, labelSmoothing: f.ls, finalEvalSamples: f.finalEvalSamples, tokenCacheDir: f.tokenCache,
    }));
    if (f.json) {
      writeRunSummary(r.loop, run.steps, {
        test_loss: r.test.loss, test_token_acc: r.test.acc, test_acc_per_scale: r.test.accPerScale, test_n: r.test.n,
      }, [...r.var.params.values()].reduce((s, p) => s + p.size, 0), run.out);
    }
  });
}

/** The tokenizer readable and suitable, and the VAR's shape checked as the model would, with the flags named. */
function checkVarFlags(f: Flags): void {
  const heads = f.heads ?? Math.max(1, Math.round(f.width / 64));
  if (f.width % heads !== 0) {
    const ok = Array.from({ length: Math.min(f.width, 64) }, (_, i) => i + 1).filter((h) => f.width % h === 0);
    throw new UserError(`--heads ${heads}${f.heads === undefined ? ' (width/64)' : ''} does not divide --width ${f.width}; allowed: ${ok.join(', ')}${f.width > 64 ? ', …' : ''}`);
  }
  if (Math.round(f.mlpRatio * f.width) < 1) throw new UserError(`--mlp-ratio ${f.mlpRatio} × --width ${f.width} leaves no FFN unit; give at least ${1 / f.width}`);
  const why = unreadableFile(f.tokenizer);
  if (why) {
    throw new UserError(`--tokenizer ${f.tokenizer}: ${why === 'ENOENT' ? 'missing' : why === 'not a file' ? why : `cannot read the file (${why})`}; ` +
      'make one with `actvar train-vae --out FILE`, or run from the repository root for the shipped models/tokenizer-fashion-mnist.safetensors');
  }
  let vae;
  try { vae = loadVqvae(f.tokenizer); } catch (e) { throw new UserError(`cannot load --tokenizer ${f.tokenizer}: ${(e as Error).message}`); }
  let config;
  try {
    config = varConfigFor(vae, 10, { depth: f.depth, width: f.width, heads: f.heads, mlpRatio: f.mlpRatio, dropPathRate: f.dropPath, condDropRate: f.condDrop });
  } catch (e) {
    throw new UserError(`invalid VAR configuration: ${(e as Error).message}`);
  }
  // weights, gradients and AdamW's two moments, float32: 16 bytes per parameter before any activation
  const params = varParamCount(config), bytes = params * 16, limit = os.totalmem() / 2;
  if (bytes > limit) {
    throw new UserError(`--depth ${f.depth} --width ${f.width}: ${(params / 1e6).toFixed(0)}M parameters need ${(bytes / 2 ** 30).toFixed(1)} GiB ` +
      `for weights, gradients and AdamW moments alone, more than half of this machine's ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB; choose a smaller model`);
  }
}
