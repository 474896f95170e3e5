/**
 * `actvar train-classifier`: train the LeNet-sized classifier that scores generated samples
 * (src/train/train-classifier.ts does the work; this file only parses flags, the shared ones in
 * train-common.ts).
 */
import { Command } from 'commander';
import { trainClassifier } from '../../train/train-classifier.js';
import { DEFAULT_CLASSIFIER_CONFIG } from '../../eval/classifier.js';
import { announceBackend } from '../../backend/node.js';
import { IMAGE_SIZE } from '../../data/datasets.js';
import { UserError } from '../errors.js';
import { int } from '../options.js';
import { addTrainRunOptions, parseTrainRunOptions, trainWithPlan, writeRunSummary, type TrainRunFlags, type TrainRunFlagSpec } from './train-common.js';

interface Flags extends TrainRunFlags { augmentShift: number; c1: number; c2: number; hidden: number; kernel: number }

const SHARED: TrainRunFlagSpec = {
  defaultEpochs: 3,
  batchSize: 64,
  lr: { help: 'peak learning rate (warm-up, then cosine to 1%)', default: 2e-3 },
  wd: { help: 'AdamW weight decay (weights only; biases get none)', default: 1e-4 },
  seedHelp: 'seed for the weights, the batch order and the augmentation',
  evalSamples: { help: 'test images in each periodic evaluation (the final one uses the whole split)', default: 2000 },
  ckptEvery: 500,
  out: { help: 'write the trained weights here (safetensors)', file: 'classifier.safetensors' },
};

/** Adds `train-classifier` to the program (see main.ts). */
export function register(program: Command): void {
  program.addCommand(trainClassifierCommand());
}

export function trainClassifierCommand(): Command {
  const d = DEFAULT_CLASSIFIER_CONFIG;
  const cmd = new Command('train-classifier')
    .description('train the LeNet-sized classifier used to score generated samples (class accuracy) and as the feature network for FID-style metrics');
  return addTrainRunOptions(cmd, SHARED, {
    afterWarmup: (c) => c
      .option('--augment-shift <px>', `random translation of up to ± this many pixels (0 = off, at most ${IMAGE_SIZE / 2})`, int('--augment-shift', { min: 0, max: IMAGE_SIZE / 2 }), 0)
      .option('--c1 <n>', 'channels of conv1', int('--c1', { min: 1, max: 512 }), d.c1)
      .option('--c2 <n>', 'channels of conv2', int('--c2', { min: 1, max: 512 }), d.c2)
      .option('--hidden <n>', 'width of fc1 (the feature dimension)', int('--hidden', { min: 1, max: 4096 }), d.hidden)
      .option('--kernel <n>', `conv kernel size: odd, 1..${IMAGE_SIZE - 1}`, int('--kernel', { min: 1, max: IMAGE_SIZE - 1 }), d.kernel),
  }).action(async (f: Flags) => {
    if (f.kernel % 2 !== 1) throw new UserError(`--kernel must be odd (same-size convolutions): 1, 3, 5, … up to ${IMAGE_SIZE - 1}; got ${f.kernel}`);
    const t = parseTrainRunOptions('train-classifier', f, SHARED);
    const run = t.run;
    announceBackend();
    const r = await trainWithPlan(t, () => trainClassifier({
      ...run, augmentShift: f.augmentShift, config: { c1: f.c1, c2: f.c2, hidden: f.hidden, kernel: f.kernel },
    }));
    if (f.json) {
      writeRunSummary(r.loop, run.steps, { test_accuracy: r.test.accuracy, test_loss: r.test.loss, test_n: r.test.n }, r.classifier.numParams, run.out);
    }
  });
}
