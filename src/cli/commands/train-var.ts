/**
 * `actvar train-var`: train a class-conditional VAR by teacher forcing on a trained tokenizer
 * (var-reference.md §7; src/train/train-var.ts does the work).
 */
import { Command, Option } from 'commander';
import { trainVar } from '../../train/train-var.js';
import { DATASET_NAMES, type DatasetName } from '../../data/datasets.js';
import type { ProgressMode } from '../../train/loop.js';
import { announceBackend } from '../../backend/index.js';
import { UserError } from '../errors.js';
import { floatArg, intArg, resolveSteps, TRAIN_SIZE } from './train-classifier.js';

interface Flags {
  dataset: DatasetName; dataDir?: string; trainLimit?: number; tokenizer: string; depth: number; width: number; heads?: number; mlpRatio: number;
  dropPath: number; condDrop: number; alng: number; steps?: number; epochs?: number; batchSize: number; lr: number; wd: number;
  wdEnd?: number; warmup?: number; wpe: number; clip: number; ls: number; seed: number; evalEvery?: number; evalSamples: number;
  finalEvalSamples?: number; tokenCache?: string; ckptDir?: string; ckptEvery: number; resume?: boolean; stopAt?: number;
  out: string; log?: string; progress: ProgressMode; json?: boolean;
}

export function register(program: Command): void {
  program.addCommand(trainVarCommand());
}

export function trainVarCommand(): Command {
  return new Command('train-var')
    .description('train a class-conditional VAR by teacher forcing (label dropout, CE over all tokens, AdamW 0.9/0.95, warm-up + lin0, grad clipping)')
    .addOption(new Option('--dataset <name>', 'training data').choices(DATASET_NAMES as string[]).default('fashion-mnist'))
    .option('--data-dir <dir>', 'folder with the IDX files (default: where the dataset package installs them)')
    .option('--train-limit <n>', 'use only the first n training images (quick experiments)', intArg('--train-limit', 1))
    .option('--tokenizer <file>', 'tokenizer from `actvar train-vae`', 'models/vqvae-fashion-mnist.safetensors')
    .option('--depth <n>', 'transformer blocks', intArg('--depth', 1), 4)
    .option('--width <n>', 'model width C', intArg('--width', 1), 128)
    .option('--heads <n>', 'attention heads (default: width/64)', intArg('--heads', 1))
    .option('--mlp-ratio <x>', 'FFN hidden = ratio × width', floatArg('--mlp-ratio'), 4)
    .option('--drop-path <x>', 'stochastic depth of the last block', floatArg('--drop-path'), 0)
    .option('--cond-drop <x>', 'label dropout probability (classifier-free guidance)', floatArg('--cond-drop'), 0.1)
    .option('--alng <x>', 'init scale of the AdaLN gammas (official README: 1e-3 for d16/d20)', floatArg('--alng'), 1e-3)
    .option('--steps <n>', 'optimisation steps (default: 10 epochs)', intArg('--steps', 1))
    .option('--epochs <n>', 'train for this many epochs instead of --steps', floatArg('--epochs'))
    .option('--batch-size <n>', 'images per step', intArg('--batch-size', 1), 64)
    .option('--lr <x>', 'peak learning rate (official: 1e-4 × batch / 256 at ImageNet scale)', floatArg('--lr'), 1e-3)
    .option('--wd <x>', 'AdamW weight decay (official no-decay list applies)', floatArg('--wd'), 0.05)
    .option('--wd-end <x>', 'final weight decay of the cosine wd schedule (default: constant)', floatArg('--wd-end'))
    .option('--warmup <n>', 'warm-up steps (default: 2% of the steps, the official ep/50)', intArg('--warmup'))
    .option('--wpe <x>', 'final lr as a fraction of the peak (lin0 schedule)', floatArg('--wpe'), 0.01)
    .option('--clip <x>', 'gradient-norm clip (tclip; 0 = off)', floatArg('--clip'), 2)
    .option('--ls <x>', 'label smoothing of the cross-entropy', floatArg('--ls'), 0)
    .option('--seed <n>', 'seed for the weights, the batch order, label dropout and drop-path', intArg('--seed'), 0)
    .option('--eval-every <n>', 'test loss every n steps (default: 5 times per run)', intArg('--eval-every', 1))
    .option('--eval-samples <n>', 'test images per periodic evaluation', intArg('--eval-samples', 1), 1000)
    .option('--final-eval-samples <n>', 'test images of the final evaluation (default: the whole split)', intArg('--final-eval-samples', 1))
    .option('--token-cache <dir>', 'cache the tokenized splits here (keyed by the tokenizer\'s SHA-256)')
    .option('--ckpt-dir <dir>', 'write resumable checkpoints here')
    .option('--ckpt-every <n>', 'checkpoint every n steps (also at the end and on Ctrl-C)', intArg('--ckpt-every', 1), 200)
    .option('--resume', 'continue from the latest checkpoint in --ckpt-dir (bit-identical to an uninterrupted run)')
    .option('--stop-at <n>', 'stop with a checkpoint after n steps (the schedule still spans --steps); --resume continues', intArg('--stop-at', 1))
    .option('--out <file>', 'write the trained VAR here (safetensors, config in the metadata)', 'models/var-fashion-mnist.safetensors')
    .option('--log <file>', 'append one JSON line per step and per evaluation')
    .addOption(new Option('--progress <mode>', 'progress display on stderr').choices(['auto', 'bar', 'lines', 'none']).default('auto'))
    .option('--json', 'print a one-line JSON summary on stdout at the end')
    .action(async (f: Flags) => {
      const steps = resolveSteps(f.steps, f.epochs, f.batchSize, Math.min(TRAIN_SIZE[f.dataset], f.trainLimit ?? Infinity), 10);
      if (f.resume && !f.ckptDir) throw new UserError('--resume needs --ckpt-dir (the folder the interrupted run checkpointed into)');
      announceBackend();
      const r = await trainVar({
        dataset: f.dataset, dataDir: f.dataDir, trainLimit: f.trainLimit, tokenizer: f.tokenizer,
        model: { depth: f.depth, width: f.width, heads: f.heads, mlpRatio: f.mlpRatio, dropPathRate: f.dropPath, condDropRate: f.condDrop, initAdalnGamma: f.alng },
        steps, batchSize: f.batchSize, lr: f.lr, weightDecay: f.wd, weightDecayEnd: f.wdEnd, warmupSteps: f.warmup, endFactor: f.wpe,
        clip: f.clip, labelSmoothing: f.ls, seed: f.seed, evalEvery: f.evalEvery, evalSamples: f.evalSamples, finalEvalSamples: f.finalEvalSamples,
        tokenCacheDir: f.tokenCache, ckptDir: f.ckptDir, ckptEvery: f.ckptEvery, resume: f.resume, stopAt: f.stopAt, out: f.out,
        logFile: f.log, progress: f.progress,
      });
      if (f.json) {
        process.stdout.write(JSON.stringify({
          steps_done: r.loop.stepsDone, steps, stopped_early: r.loop.interrupted,
          test_loss: r.test.loss, test_token_acc: r.test.acc, test_acc_per_scale: r.test.accPerScale, test_n: r.test.n,
          train_seconds: r.loop.trainSeconds, steps_per_s: r.loop.stepsPerSec, img_per_s: r.loop.samplesPerSec,
          params: [...r.var.params.values()].reduce((s, p) => s + p.size, 0), out: r.loop.interrupted ? null : f.out,
        }) + '\n');
      }
    });
}
