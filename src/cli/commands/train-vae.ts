/**
 * `actvar train-vae`: train the multi-scale VQVAE tokenizer on 32×32 grey images
 * (src/train/train-vae.ts does the work, including the documented dead-code restart).
 */
import { Command, Option } from 'commander';
import { trainVae, DEFAULT_TOKENIZER_CONFIG } from '../../train/train-vae.js';
import { DATASET_NAMES, type DatasetName } from '../../data/datasets.js';
import type { ProgressMode } from '../../train/loop.js';
import { announceBackend } from '../../backend/index.js';
import { UserError } from '../errors.js';
import { floatArg, intArg, intListArg, resolveSteps, TRAIN_SIZE } from './train-classifier.js';

interface Flags {
  dataset: DatasetName; dataDir?: string; trainLimit?: number; steps?: number; epochs?: number; batchSize: number; lr: number; wd: number; warmup?: number;
  clip: number; restartEvery: number; deadFraction: number; seed: number;
  ch: number; chMult: number[]; resBlocks: number; attn?: boolean; midAttn?: boolean; cvae: number; vocab: number; patchNums: number[];
  quantResi: number; shareQuantResi: number; normGroups: number; beta: number;
  evalEvery?: number; evalSamples: number; finalEvalSamples?: number; ckptDir?: string; ckptEvery: number; resume?: boolean; stopAt?: number;
  out: string; log?: string; progress: ProgressMode; json?: boolean;
}

export function register(program: Command): void {
  program.addCommand(trainVaeCommand());
}

export function trainVaeCommand(): Command {
  const d = DEFAULT_TOKENIZER_CONFIG;
  return new Command('train-vae')
    .description('train the multi-scale VQVAE tokenizer (32×32 grey images → 8×8 latent, residual multi-scale codes) with reconstruction + commitment + codebook losses')
    .addOption(new Option('--dataset <name>', 'training data').choices(DATASET_NAMES as string[]).default('fashion-mnist'))
    .option('--data-dir <dir>', 'folder with the IDX files (default: where the dataset package installs them)')
    .option('--train-limit <n>', 'use only the first n training images (quick experiments)', intArg('--train-limit', 1))
    .option('--steps <n>', 'optimisation steps (default: 1 epoch)', intArg('--steps', 1))
    .option('--epochs <n>', 'train for this many epochs instead of --steps', floatArg('--epochs'))
    .option('--batch-size <n>', 'images per step', intArg('--batch-size', 1), 32)
    .option('--lr <x>', 'peak learning rate (warm-up, then cosine to 1%)', floatArg('--lr'), 1e-3)
    .option('--wd <x>', 'AdamW weight decay of conv weights (never the codebook, norms or biases)', floatArg('--wd'), 0)
    .option('--warmup <n>', 'warm-up steps (default: 2% of the steps)', intArg('--warmup'))
    .option('--clip <x>', 'gradient-norm clip (0 = off)', floatArg('--clip'), 1)
    .option('--restart-every <n>', 'dead-code restart period in steps (0 = off)', intArg('--restart-every'), 100)
    .option('--dead-fraction <x>', 'a code is dead when its hit EMA is below this fraction of the mean', floatArg('--dead-fraction'), 0.03)
    .option('--seed <n>', 'seed for the weights, the batch order and the restarts', intArg('--seed'), 0)
    .option('--ch <n>', 'base width', intArg('--ch', 1), d.ch)
    .option('--ch-mult <list>', 'width multipliers per level; 3 levels = downsample 4 (32×32 → 8×8)', intListArg('--ch-mult'), d.chMult)
    .option('--res-blocks <n>', 'ResnetBlocks per encoder level (the decoder has one more)', intArg('--res-blocks', 1), d.numResBlocks)
    .option('--attn', 'self-attention at the lowest resolution', d.usingSa)
    .option('--mid-attn', 'self-attention in the mid block', d.usingMidSa)
    .option('--cvae <n>', 'latent channels (codebook vector width)', intArg('--cvae', 1), d.Cvae)
    .option('--vocab <n>', 'codebook size V', intArg('--vocab', 2), d.vocabSize)
    .option('--patch-nums <list>', 'token-map side per scale, coarse to fine (the last = 8, the latent side)', intListArg('--patch-nums'), d.patchNums)
    .option('--quant-resi <x>', 'Phi ratio r: Phi(h) = (1−r)·h + r·conv(h) (0 = no Phi)', floatArg('--quant-resi'), d.quantResi)
    .option('--share-quant-resi <n>', 'number of shared Phi convs (0 = one per scale)', intArg('--share-quant-resi'), d.shareQuantResi)
    .option('--norm-groups <n>', 'GroupNorm groups (must divide every width)', intArg('--norm-groups', 1), d.normGroups)
    .option('--beta <x>', 'commitment weight β', floatArg('--beta'), d.beta)
    .option('--eval-every <n>', 'evaluate on the test subset every n steps (default: 5 times per run)', intArg('--eval-every', 1))
    .option('--eval-samples <n>', 'test images per periodic evaluation', intArg('--eval-samples', 1), 500)
    .option('--final-eval-samples <n>', 'test images of the final evaluation (default: the whole split)', intArg('--final-eval-samples', 1))
    .option('--ckpt-dir <dir>', 'write resumable checkpoints here')
    .option('--ckpt-every <n>', 'checkpoint every n steps (also at the end and on Ctrl-C)', intArg('--ckpt-every', 1), 200)
    .option('--resume', 'continue from the latest checkpoint in --ckpt-dir (bit-identical to an uninterrupted run)')
    .option('--stop-at <n>', 'stop with a checkpoint after n steps (the schedule still spans --steps); --resume continues', intArg('--stop-at', 1))
    .option('--out <file>', 'write the trained tokenizer here (safetensors, config in the metadata)', 'models/vqvae-fashion-mnist.safetensors')
    .option('--log <file>', 'append one JSON line per step and per evaluation')
    .addOption(new Option('--progress <mode>', 'progress display on stderr').choices(['auto', 'bar', 'lines', 'none']).default('auto'))
    .option('--json', 'print a one-line JSON summary on stdout at the end')
    .action(async (f: Flags) => {
      const steps = resolveSteps(f.steps, f.epochs, f.batchSize, Math.min(TRAIN_SIZE[f.dataset], f.trainLimit ?? Infinity), 1);
      if (f.resume && !f.ckptDir) throw new UserError('--resume needs --ckpt-dir (the folder the interrupted run checkpointed into)');
      announceBackend();
      const r = await trainVae({
        dataset: f.dataset, dataDir: f.dataDir, trainLimit: f.trainLimit, steps, batchSize: f.batchSize, lr: f.lr, weightDecay: f.wd, warmupSteps: f.warmup,
        clip: f.clip, restartEvery: f.restartEvery, deadFraction: f.deadFraction, seed: f.seed,
        config: {
          ch: f.ch, chMult: f.chMult, numResBlocks: f.resBlocks, usingSa: !!f.attn, usingMidSa: !!f.midAttn, Cvae: f.cvae,
          vocabSize: f.vocab, patchNums: f.patchNums, quantResi: f.quantResi, shareQuantResi: f.shareQuantResi, normGroups: f.normGroups, beta: f.beta,
        },
        evalEvery: f.evalEvery, evalSamples: f.evalSamples, finalEvalSamples: f.finalEvalSamples,
        ckptDir: f.ckptDir, ckptEvery: f.ckptEvery, resume: f.resume, stopAt: f.stopAt, out: f.out, logFile: f.log, progress: f.progress,
      });
      if (f.json) {
        process.stdout.write(JSON.stringify({
          steps_done: r.loop.stepsDone, steps, stopped_early: r.loop.interrupted,
          test_mse: r.test.mse, codebook_usage: r.test.usage, usage_per_scale: r.test.usagePerScale, perplexity: r.test.perplexity, test_n: r.test.n,
          dead_codes_restarted: r.restarts, train_seconds: r.loop.trainSeconds, steps_per_s: r.loop.stepsPerSec, img_per_s: r.loop.samplesPerSec,
          params: r.vae.parameters().reduce((s, p) => s + p.size, 0), out: r.loop.interrupted ? null : f.out,
        }) + '\n');
      }
    });
}
