/**
 * `actvar train-var`: train a class-conditional VAR by teacher forcing on a trained tokenizer
 * (var-reference.md §7; src/train/train-var.ts does the work; the shared flags are in train-common.ts).
 */
import { Command } from 'commander';
import { trainVar } from '../../train/train-var.js';
import { announceBackend } from '../../backend/node.js';
import { addTrainRunOptions, floatArg, intArg, parseTrainRunOptions, writeRunSummary, type TrainRunFlags, type TrainRunFlagSpec } from './train-common.js';

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
  out: { help: 'write the trained VAR here (safetensors, config in the metadata)', default: 'models/var-fashion-mnist.safetensors' },
};

export function register(program: Command): void {
  program.addCommand(trainVarCommand());
}

export function trainVarCommand(): Command {
  const cmd = new Command('train-var')
    .description('train a class-conditional VAR by teacher forcing (label dropout, CE over all tokens, AdamW 0.9/0.95, warm-up + lin0, grad clipping)');
  return addTrainRunOptions(cmd, SHARED, {
    afterData: (c) => c
      .option('--tokenizer <file>', 'tokenizer from `actvar train-vae`', 'models/tokenizer-fashion-mnist.safetensors')
      .option('--depth <n>', 'transformer blocks', intArg('--depth', 1), 4)
      .option('--width <n>', 'model width C', intArg('--width', 1), 128)
      .option('--heads <n>', 'attention heads (default: width/64)', intArg('--heads', 1))
      .option('--mlp-ratio <x>', 'FFN hidden = ratio × width', floatArg('--mlp-ratio'), 4)
      .option('--drop-path <x>', 'stochastic depth of the last block', floatArg('--drop-path'), 0)
      .option('--cond-drop <x>', 'label dropout probability (classifier-free guidance)', floatArg('--cond-drop'), 0.1)
      .option('--alng <x>', 'init scale of the AdaLN gammas (official README: 1e-3 for d16/d20)', floatArg('--alng'), 1e-3),
    afterWd: (c) => c
      .option('--wd-end <x>', 'final weight decay of the cosine wd schedule (default: constant)', floatArg('--wd-end')),
    afterWarmup: (c) => c
      .option('--wpe <x>', 'final lr as a fraction of the peak (lin0 schedule)', floatArg('--wpe'), 0.01)
      .option('--clip <x>', 'gradient-norm clip (tclip; 0 = off)', floatArg('--clip'), 2)
      .option('--ls <x>', 'label smoothing of the cross-entropy', floatArg('--ls'), 0),
    afterEval: (c) => c
      .option('--final-eval-samples <n>', 'test images of the final evaluation (default: the whole split)', intArg('--final-eval-samples', 1))
      .option('--token-cache <dir>', 'cache the tokenized splits here (keyed by the tokenizer\'s SHA-256)'),
  }).action(async (f: Flags) => {
    const run = parseTrainRunOptions(f, SHARED);
    announceBackend();
    const r = await trainVar({
      ...run, tokenizer: f.tokenizer,
      model: { depth: f.depth, width: f.width, heads: f.heads, mlpRatio: f.mlpRatio, dropPathRate: f.dropPath, condDropRate: f.condDrop, initAdalnGamma: f.alng },
      weightDecayEnd: f.wdEnd, endFactor: f.wpe, clip: f.clip, labelSmoothing: f.ls, finalEvalSamples: f.finalEvalSamples, tokenCacheDir: f.tokenCache,
    });
    if (f.json) {
      writeRunSummary(r.loop, run.steps, {
        test_loss: r.test.loss, test_token_acc: r.test.acc, test_acc_per_scale: r.test.accPerScale, test_n: r.test.n,
      }, [...r.var.params.values()].reduce((s, p) => s + p.size, 0), f.out);
    }
  });
}
