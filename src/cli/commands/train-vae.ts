/**
 * `actvar train-vae`: train the multi-scale VQVAE tokenizer on 32×32 grey images
 * (src/train/train-vae.ts does the work, including the documented dead-code restart; the shared
 * flags are in train-common.ts).
 */
import { Command } from 'commander';
import { trainVae, DEFAULT_TOKENIZER_CONFIG } from '../../train/train-vae.js';
import { announceBackend } from '../../backend/node.js';
import { completeVqvaeConfig } from '../../vqvae/config.js';
import { UserError } from '../errors.js';
import { int, intList, num } from '../options.js';
import { addTrainRunOptions, parseTrainRunOptions, trainWithPlan, writeRunSummary, type TrainRunFlags, type TrainRunFlagSpec } from './train-common.js';

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
  out: { help: 'write the trained tokenizer here (safetensors, config in the metadata)', file: 'tokenizer.safetensors' },
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
      .option('--clip <x>', 'gradient-norm clip (0 = off)', num('--clip', { min: 0, max: 1e6 }), 1)
      .option('--restart-every <n>', 'dead-code restart period in steps (0 = off)', int('--restart-every', { min: 0, max: 1e9 }), 100)
      .option('--dead-fraction <x>', 'a code is dead when its hit EMA is below this fraction of the mean', num('--dead-fraction', { min: 0, max: 1 }), 0.03),
    afterSeed: (c) => c
      .option('--ch <n>', 'base width', int('--ch', { min: 1, max: 512 }), d.ch)
      .option('--ch-mult <list>', 'width multipliers per level; 3 levels = downsample 4 (32×32 → 8×8)', intList('--ch-mult', { min: 1, max: 16 }), d.chMult)
      .option('--res-blocks <n>', 'ResnetBlocks per encoder level (the decoder has one more)', int('--res-blocks', { min: 1, max: 16 }), d.numResBlocks)
      .option('--attn', 'self-attention at the lowest resolution', d.usingSa)
      .option('--mid-attn', 'self-attention in the mid block', d.usingMidSa)
      .option('--cvae <n>', 'latent channels (codebook vector width)', int('--cvae', { min: 1, max: 1024 }), d.Cvae)
      .option('--vocab <n>', 'codebook size V', int('--vocab', { min: 2, max: 65536 }), d.vocabSize)
      .option('--patch-nums <list>', 'token-map side per scale, increasing from 1 to the latent side (32 / downsample = 8 with 3 levels)',
        intList('--patch-nums', { min: 1, max: 32 }), d.patchNums)
      .option('--quant-resi <x>', 'Phi ratio r: Phi(h) = (1−r)·h + r·conv(h) (0 = no Phi)', num('--quant-resi', { min: 0, max: 1 }), d.quantResi)
      .option('--share-quant-resi <n>', 'number of shared Phi convs (0 = one per scale)', int('--share-quant-resi', { min: 0, max: 64 }), d.shareQuantResi)
      .option('--norm-groups <n>', 'GroupNorm groups (must divide every width ch × mult)', int('--norm-groups', { min: 1, max: 512 }), d.normGroups)
      .option('--beta <x>', 'commitment weight β', num('--beta', { min: 0, max: 100 }), d.beta),
    afterEval: (c) => c
      .option('--final-eval-samples <n>', 'test images of the final evaluation (default: the whole split)', int('--final-eval-samples', { min: 1, max: 10_000 })),
  }).action(async (f: Flags) => {
    checkTokenizerFlags(f);
    const t = parseTrainRunOptions('train-vae', f, SHARED);
    const run = t.run;
    announceBackend();
    const r = await trainWithPlan(t, () => trainVae({
      ...run, clip: f.clip, restartEvery: f.restartEvery, deadFraction: f.deadFraction, finalEvalSamples: f.finalEvalSamples,
      config: {
        ch: f.ch, chMult: f.chMult, numResBlocks: f.resBlocks, usingSa: !!f.attn, usingMidSa: !!f.midAttn, Cvae: f.cvae,
        vocabSize: f.vocab, patchNums: f.patchNums, quantResi: f.quantResi, shareQuantResi: f.shareQuantResi, normGroups: f.normGroups, beta: f.beta,
      },
    }));
    if (f.json) {
      writeRunSummary(r.loop, run.steps, {
        test_mse: r.test.mse, codebook_usage: r.test.usage, usage_per_scale: r.test.usagePerScale, perplexity: r.test.perplexity, test_n: r.test.n,
        dead_codes_restarted: r.restarts,
      }, r.vae.parameters().reduce((s, p) => s + p.size, 0), run.out);
    }
  });
}

/** The tokenizer's shape, checked as the model would, with the flags named. */
function checkTokenizerFlags(f: Flags): void {
  const down = 2 ** (f.chMult.length - 1), last = f.patchNums[f.patchNums.length - 1];
  if (last * down !== 32) {
    throw new UserError(`--patch-nums must end at the latent side 32 / ${down} = ${32 / down} (--ch-mult has ${f.chMult.length} levels, downsample ${down}), got ${f.patchNums.join(',')}`);
  }
  for (let i = 1; i < f.patchNums.length; i++) {
    if (f.patchNums[i] <= f.patchNums[i - 1]) throw new UserError(`--patch-nums must increase from scale to scale, got ${f.patchNums.join(',')}`);
  }
  const widths = [f.ch, ...f.chMult.map((m) => f.ch * m)];
  const bad = widths.find((w) => w % f.normGroups !== 0);
  if (bad !== undefined) {
    const ok = Array.from({ length: f.ch }, (_, i) => i + 1).filter((g) => widths.every((w) => w % g === 0));
    throw new UserError(`--norm-groups ${f.normGroups} does not divide the width ${bad} (widths ${[...new Set(widths)].join(', ')}); allowed: ${ok.join(', ')}`);
  }
  try {
    completeVqvaeConfig({
      ch: f.ch, chMult: f.chMult, numResBlocks: f.resBlocks, usingSa: !!f.attn, usingMidSa: !!f.midAttn, Cvae: f.cvae, vocabSize: f.vocab,
      patchNums: f.patchNums, quantResi: f.quantResi, shareQuantResi: f.shareQuantResi, normGroups: f.normGroups, beta: f.beta, inChannels: 1,
    });
  } catch (e) {
    throw new UserError(`invalid tokenizer configuration: ${(e as Error).message}`);
  }
}
