/**
 * `actvar train-vae`: train the multi-scale VQVAE tokenizer on 32×32 grey images
 * (src/train/train-vae.ts does the work, including the documented dead-code restart; the shared
 * flags are in train-common.ts).
 */
import { Command } from 'commander';
import { trainVae, DEFAULT_TOKENIZER_CONFIG } from '../../train/train-vae.js';
import { announceBackend } from '../../backend/node.js';
import { addTrainRunOptions, floatArg, intArg, intListArg, parseTrainRunOptions, writeRunSummary, type TrainRunFlags, type TrainRunFlagSpec } from './train-common.js';

interface Flags extends TrainRunFlags {
  clip: number; restartEvery: number; deadFraction: number;
  ch: number; chMult: number[]; resBlocks: number; attn?: boolean; midAttn?: boolean; cvae: number; vocab: number; patchNums: number[];
  quantResi: number; shareQuantResi: number; normGroups: number; beta: number; finalEvalSamples?: number;
}

const SHARED: TrainRunFlagSpec = {
  defaultEpochs: 1,
  batchSize: 32,
  lr: { help: 'peak learning rate (warm-up, then cosine to 1%)', default: 1e-3 },
  wd: { help: 'AdamW weight decay of conv weights (never the codebook, norms or biases)', default: 0 },
  seedHelp: 'seed for the weights, the batch order and the restarts',
  evalSamples: { help: 'test images per periodic evaluation', default: 500 },
  ckptEvery: 200,
  out: { help: 'write the trained tokenizer here (safetensors, config in the metadata)', default: 'models/tokenizer-fashion-mnist.safetensors' },
};

export function register(program: Command): void {
  program.addCommand(trainVaeCommand());
}

export function trainVaeCommand(): Command {
  const d = DEFAULT_TOKENIZER_CONFIG;
  const cmd = new Command('train-vae')
    .description('train the multi-scale VQVAE tokenizer (32×32 grey images → 8×8 latent, residual multi-scale codes) with reconstruction + commitment + codebook losses');
  return addTrainRunOptions(cmd, SHARED, {
    afterWarmup: (c) => c
      .option('--clip <x>', 'gradient-norm clip (0 = off)', floatArg('--clip'), 1)
      .option('--restart-every <n>', 'dead-code restart period in steps (0 = off)', intArg('--restart-every'), 100)
      .option('--dead-fraction <x>', 'a code is dead when its hit EMA is below this fraction of the mean', floatArg('--dead-fraction'), 0.03),
    afterSeed: (c) => c
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
      .option('--beta <x>', 'commitment weight β', floatArg('--beta'), d.beta),
    afterEval: (c) => c
      .option('--final-eval-samples <n>', 'test images of the final evaluation (default: the whole split)', intArg('--final-eval-samples', 1)),
  }).action(async (f: Flags) => {
    const run = parseTrainRunOptions(f, SHARED);
    announceBackend();
    const r = await trainVae({
      ...run, clip: f.clip, restartEvery: f.restartEvery, deadFraction: f.deadFraction, finalEvalSamples: f.finalEvalSamples,
      config: {
        ch: f.ch, chMult: f.chMult, numResBlocks: f.resBlocks, usingSa: !!f.attn, usingMidSa: !!f.midAttn, Cvae: f.cvae,
        vocabSize: f.vocab, patchNums: f.patchNums, quantResi: f.quantResi, shareQuantResi: f.shareQuantResi, normGroups: f.normGroups, beta: f.beta,
      },
    });
    if (f.json) {
      writeRunSummary(r.loop, run.steps, {
        test_mse: r.test.mse, codebook_usage: r.test.usage, usage_per_scale: r.test.usagePerScale, perplexity: r.test.perplexity, test_n: r.test.n,
        dead_codes_restarted: r.restarts,
      }, r.vae.parameters().reduce((s, p) => s + p.size, 0), f.out);
    }
  });
}
