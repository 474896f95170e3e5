/**
 * `actvar distill`: ActVAR's two-stage distillation from a dense VAR (paper §3.3–3.4; src/train/distill.ts runs
 * it, src/actvar/distill.ts holds the losses). Writes one ActVAR model file (src/actvar/file.ts) that
 * `actvar generate --actvar-model`, `actvar eval --actvar-model`, `actvar demo` and `loadActVar` read.
 *
 *   actvar distill --var models/var-fashion-mnist.safetensors --tokenizer models/tokenizer-fashion-mnist.safetensors \
 *     --stage both --token-rates 0.75,0.75 --expert-rate 0.75 --steps 400 --out models/actvar-fashion-mnist.safetensors
 *
 * --steps / --epochs cover the whole run; with --stage both, --stage1-share of them go to stage 1 (default 1/6:
 * the paper's 2 of 2 + 10 epochs). The shared training flags (data, batch, lr, checkpoints, --json) are train-common.ts's.
 */
import { Command, Option } from 'commander';
import { announceBackend } from '../../backend/node.js';
import { distill, type DistillStage } from '../../train/distill.js';
import { loadVqvae } from '../../vqvae/load.js';
import { loadVar } from '../../var/load.js';
import { readSafetensorsHeader } from '../../io/safetensors.js';
import { ActVarConfigError, resolveActVarConfig, type KvPolicy } from '../../actvar/config.js';
import { isActVarModel } from '../../actvar/file.js';
import { UserError } from '../errors.js';
import { checkReadable } from '../inputs.js';
import { actvarSettings, addActVarSettingsOptions, int, num, path } from '../options.js';
import { addTrainRunOptions, parseTrainRunOptions, trainWithPlan, writeRunSummary, TRAIN_SIZE, type TrainRunFlags, type TrainRunFlagSpec } from './train-common.js';

interface Flags extends TrainRunFlags {
  var: string; tokenizer: string; stage: '1' | '2' | 'both'; stage1Share: number; init?: string; actvarCalib: number;
  holdout: number; testSamples: number; stage2Lr?: number; schedule: 'const' | 'lin0' | 'cos'; alpha?: number; beta?: number; clip: number; tokenCache?: string;
  tokenRates?: number[]; expertRate?: number; experts?: number; scales?: number[]; kvPolicy?: KvPolicy;
}

/** Default batch (the paper's 512 does not fit a 2-core box's time; the lr is scaled to it). */
export const DISTILL_BATCH = 32;

const SHARED: TrainRunFlagSpec = {
  defaultEpochs: 1,
  batchSize: DISTILL_BATCH,
  lr: { help: 'learning rate (default: the paper\'s 2e-4 at batch 512, scaled linearly: 2e-4 × batch / 512)', default: undefined as unknown as number },
  wd: { help: 'AdamW weight decay (paper: 0.05; not on biases and 1-d tensors)', default: 0.05 },
  warmupHelp: 'warm-up steps at the start of each stage, linear from 0 to --lr (default: 2% of the stage\'s steps)',
  seedHelp: 'seed for the batch order, label dropout and the start calibration',
  evalEveryHelp: 'validate on the held-out training images every n steps (default: 5 times per run)',
  evalSamples: { help: 'held-out images of each periodic validation (at most --holdout)', default: 500 },
  ckptEvery: 100,
  out: { help: 'write the ActVAR model file here (VAR + router/selector + config + how it was made)', file: 'actvar.safetensors' },
};

export function register(program: Command): void {
  const cmd = new Command('distill')
    .description('distil an ActVAR from a dense VAR: stage 1 trains router and selector, stage 2 fine-tunes the VAR to its routing (paper §3.3–3.4)')
    .option('--var <file>', 'the dense VAR (teacher; the student starts as its copy)', path('--var'), 'models/var-fashion-mnist.safetensors')
    .option('--tokenizer <file>', 'the tokenizer the VAR was trained on', path('--tokenizer'), 'models/tokenizer-fashion-mnist.safetensors');
  addTrainRunOptions(cmd, SHARED, {
    afterData: (c) => {
      c.option('--holdout <n>', 'training images held out for validation (the last n of the first --train-limit)', int('--holdout', { min: 1, max: 59_999 }), 1000)
        .option('--test-samples <n>', 'test images of the reported before/after numbers (0 = none)', int('--test-samples', { min: 0, max: 10_000 }), 1000)
        .option('--token-cache <dir>', 'cache the tokenized images here (keyed by the tokenizer\'s SHA-256)', path('--token-cache'));
    },
    afterWd: (c) => {
      c.addOption(new Option('--stage <s>', 'which stages to run: 1 (router + selector), 2 (fine-tune the VAR), both').choices(['1', '2', 'both']).default('both'))
        .option('--stage1-share <f>', 'with --stage both: the share of the steps that goes to stage 1 (the paper: 2 of 12 epochs)', num('--stage1-share', { min: 0, max: 1, above: true, below: true }), 1 / 6)
        .option('--stage2-lr <x>', 'learning rate of stage 2 (default: --lr)', num('--stage2-lr', { min: 0, max: 10, above: true }))
        .addOption(new Option('--schedule <s>', 'lr after each stage\'s warm-up: const, lin0 (VAR\'s recipe: linear to 0.01 × lr over the stage) or cos (cosine to 0.01 × lr)').choices(['const', 'lin0', 'cos']).default('const'))
        .option('--init <file>', 'start from these gates (a gates file, or an ActVAR model file of an earlier run: e.g. stage 2 after a stage-1 run)', path('--init'))
        .option('--actvar-calib <n>', 'without --init: dense generations that calibrate the start gates (training-free init; 0 = data-free)', int('--actvar-calib', { min: 0, max: 1000 }), 4)
        .option('--alpha <x>', 'weight α of the distillation losses in stage 1 (paper eq. 19: 0.05)', num('--alpha', { min: 0, max: 1000 }))
        .option('--beta <x>', 'weight β of the load-balancing losses in stage 1 (paper eq. 19: 0.01)', num('--beta', { min: 0, max: 1000 }))
        .option('--clip <x>', 'gradient-norm clip (0 = off)', num('--clip', { min: 0, max: 1e6 }), 2);
      addActVarSettingsOptions(c);
    },
  });
  cmd.action(async (f: Flags) => {
    const settings = actvarSettings(f);
    checkReadable(f.var, '--var');
    checkReadable(f.tokenizer, '--tokenizer');
    if (f.init !== undefined) checkReadable(f.init, '--init');
    // the models, and everything that depends on them, before any output exists
    let vae, model;
    try { vae = loadVqvae(f.tokenizer); } catch (e) { throw new UserError(`cannot load --tokenizer ${f.tokenizer}: ${(e as Error).message}`); }
    try { model = loadVar(f.var); } catch (e) { throw new UserError(`cannot load --var ${f.var}: ${(e as Error).message}`); }
    const vc = model.config;
    if (vae.Cvae !== vc.Cvae || vae.vocabSize !== vc.vocabSize || vae.patchNums.join() !== vc.patchNums.join()) {
      throw new UserError(`--tokenizer ${f.tokenizer} (Cvae ${vae.Cvae}, vocabulary ${vae.vocabSize}, patch numbers ${vae.patchNums.join(',')}) does not fit ` +
        `--var ${f.var} (Cvae ${vc.Cvae}, vocabulary ${vc.vocabSize}, patch numbers ${vc.patchNums.join(',')}); give the tokenizer the VAR was trained on`);
    }
    try {
      resolveActVarConfig(settings, { numScales: model.numScales, ffnHidden: vc.mlpHidden, tokensPerScale: vc.patchNums.map((p) => p * p) });
    } catch (e) { if (e instanceof ActVarConfigError) throw new UserError(e.message); throw e; }
    if (f.init !== undefined) {
      let meta;
      try { meta = readSafetensorsHeader(f.init).metadata; } catch (e) { throw new UserError(`cannot read --init ${f.init}: ${(e as Error).message}`); }
      if (isActVarModel(meta) && f.experts !== undefined) throw new UserError('--experts is fixed by the --init model file; leave it out');
    }
    if (f.stage !== 'both' && f.stage1Share !== 1 / 6) throw new UserError('--stage1-share needs --stage both');
    if (f.stage === '1' && f.stage2Lr !== undefined) throw new UserError('--stage2-lr needs stage 2 (--stage 2 or both)');
    const images = Math.min(TRAIN_SIZE[f.dataset], f.trainLimit ?? Infinity);
    if (f.holdout >= images) throw new UserError(`--holdout ${f.holdout} leaves no training images of the ${images} (give less than ${images}, or raise --train-limit)`);
    if (f.batchSize > images - f.holdout) throw new UserError(`--batch-size ${f.batchSize} exceeds the ${images - f.holdout} training images left after --holdout ${f.holdout}`);
    const t = parseTrainRunOptions('distill', f, SHARED, {
      inputs: [['--var', f.var], ['--tokenizer', f.tokenizer], ['--init', f.init]], dirs: [['--token-cache', f.tokenCache]],
    });
    const steps = t.run.steps;
    const stages: DistillStage[] = f.stage === 'both' ? [1, 2] : [Number(f.stage) as DistillStage];
    let stageSteps = [steps];
    if (f.stage === 'both') {
      if (steps < 2) throw new UserError('--stage both needs at least 2 steps (one per stage)');
      const s1 = Math.min(steps - 1, Math.max(1, Math.round(steps * f.stage1Share)));
      stageSteps = [s1, steps - s1];
    }
    const hyper: { alpha?: number; beta?: number } = {};
    if (f.alpha !== undefined) hyper.alpha = f.alpha;
    if (f.beta !== undefined) hyper.beta = f.beta;
    const command = ['actvar', ...process.argv.slice(2)].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`)).join(' ');
    announceBackend();
    let r;
    try {
      r = await trainWithPlan(t, () => distill({
        ...t.run, lr2: f.stage === '2' ? f.stage2Lr ?? t.run.lr : f.stage2Lr, var: f.var, tokenizer: f.tokenizer, stages, stageSteps, actvar: settings, init: f.init, calib: f.actvarCalib,
        holdout: f.holdout, testSamples: f.testSamples, schedule: f.schedule, hyper, clip: f.clip, tokenCacheDir: f.tokenCache, command,
      }));
    } catch (e) {
      if (e instanceof ActVarConfigError) throw new UserError(e.message);
      throw e;
    }
    if (f.json) {
      writeRunSummary(r.loop, steps, {
        stages: r.stages, lr: r.lr, stage2_lr: r.lr2, schedule: f.schedule, actvar: r.actvar.config,
        validation_before: r.before.val, validation_after: r.after.val, test_before: r.before.test, test_after: r.after.test,
      }, [...r.actvar.model.params.values()].reduce((s, p) => s + p.size, 0), t.run.out);
    }
  });
  program.addCommand(cmd);
}
