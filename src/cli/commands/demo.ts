/**
 * `actvar demo` (`npm run demo`): dense VAR, training-free ActVAR and the distilled ActVAR side by side on the
 * shipped Fashion-MNIST models — PNG grids, time, measured FLOPs, class accuracy and KL to the dense VAR of each
 * (src/app/demo.ts does the work).
 *
 *   actvar demo [--models DIR] [--tokenizer FILE] [--var FILE] [--classifier FILE] [--out-dir out/demo]
 *     [--per-class 10] [--cfg 1.5] [--top-k 900] [--top-p 0.96] [--seed 0] [--token-rates a,b]
 *     [--expert-rate g] [--actvar-weights FILE] [--actvar-calib 4] [--actvar-model FILE | --no-distilled] [--kl-images 200]
 *     [--data-dir DIR] [--no-actvar] [--batch 50] [--repeats 2] [--json] [--quiet]
 *
 * The summary table goes to stdout; with --json it goes to stderr and stdout holds one JSON line.
 */
import * as nodePath from 'node:path';
import { Command } from 'commander';
import { announceBackend } from '../../backend/node.js';
import { runDemo, demoJson, formatDemo, DEMO_DEFAULTS, DEMO_MODEL_FILES, DEMO_ACTVAR_MODEL_FILE } from '../../app/demo.js';
import { UserError } from '../errors.js';
import { addActVarInitOptions, addActVarSettingsOptions, addSamplingOptions, int, path } from '../options.js';
import { OutputPlan } from '../outputs.js';
import type { KvPolicy } from '../../actvar/config.js';

/** Samples per class and mode: every class is sampled, so 10 classes × 100 = 1000 images per mode. */
export const DEMO_MAX_PER_CLASS = 100;

interface Flags {
  models: string; tokenizer?: string; var?: string; classifier?: string; outDir: string; perClass: number;
  cfg: number; topK: number; topP: number; seed: number; tokenRates?: number[]; expertRate?: number; experts?: number;
  scales?: number[]; kvPolicy?: KvPolicy; actvar: boolean; actvarWeights?: string; actvarCalib: number; actvarModel?: string; distilled: boolean; klImages: number; dataDir?: string; batch: number; repeats: number; json?: boolean; quiet?: boolean;
}

export function register(program: Command): void {
  const d = DEMO_DEFAULTS;
  const cmd = program.command('demo')
    .description('dense VAR and ActVAR side by side on the shipped Fashion-MNIST models: PNG grids, time, GFLOPs, class accuracy')
    .option('--models <dir>', `folder of the shipped models (${Object.values(DEMO_MODEL_FILES).join(', ')})`, path('--models'), d.modelsDir)
    .option('--tokenizer <file>', 'tokenizer from `actvar train-vae` (default: DIR/' + DEMO_MODEL_FILES.tokenizer + ')', path('--tokenizer'))
    .option('--var <file>', 'VAR from `actvar train-var` (default: DIR/' + DEMO_MODEL_FILES.var + ')', path('--var'))
    .option('--classifier <file>', 'classifier from `actvar train-classifier` (default: DIR/' + DEMO_MODEL_FILES.classifier + ')', path('--classifier'))
    .option('--out-dir <dir>', 'write dense.png, actvar.png and demo.png here', path('--out-dir'), d.outDir)
    .option('--per-class <n>', `samples per class and mode (at most ${DEMO_MAX_PER_CLASS})`, int('--per-class', { min: 1, max: DEMO_MAX_PER_CLASS }), d.perClass);
  addSamplingOptions(cmd, 'sampling seed (the same per-image streams in both modes)');
  addActVarSettingsOptions(cmd);
  addActVarInitOptions(cmd, d.calib)
    .option('--actvar-model <file>', `a distilled ActVAR model file shown as a third mode (default: DIR/${DEMO_ACTVAR_MODEL_FILE} when it exists)`, path('--actvar-model'))
    .option('--no-distilled', 'leave the distilled ActVAR out')
    .option('--kl-images <n>', 'test images for the teacher-forced KL of each ActVAR to the dense VAR (0 = skip)', int('--kl-images', { min: 0, max: 10_000 }), d.klImages)
    .option('--data-dir <dir>', 'folder with the IDX files of the test split for the KL (default: where the dataset package installs them)', path('--data-dir'))
    .option('--no-actvar', 'the dense model only')
    .option('--batch <n>', 'images per forward pass: memory and speed; the sampled tokens do not depend on it, decoded pixels may differ by one level (the decoder runs on the whole batch)', int('--batch', { min: 1, max: 1000 }), d.batch)
    .option('--repeats <n>', 'timed runs of every batch in each mode, the fastest counts', int('--repeats', { min: 1, max: 100 }), d.repeats)
    .option('--json', 'summary on stderr, one JSON line on stdout')
    .option('--quiet', 'no progress lines')
    .action((f: Flags) => {
      const m = (k: keyof typeof DEMO_MODEL_FILES, given?: string): string => given ?? nodePath.join(f.models, DEMO_MODEL_FILES[k]);
      const plan = new OutputPlan()
        .input('--tokenizer', m('tokenizer', f.tokenizer)).input('--var', m('var', f.var)).input('--classifier', m('classifier', f.classifier))
        .input('--actvar-weights', f.actvarWeights).input('--actvar-model', f.actvarModel)
        .dir('--out-dir', f.outDir);
      for (const name of ['dense.png', 'demo.png', ...(f.actvar ? ['actvar.png', 'distilled.png'] : [])]) plan.file('--out-dir', nodePath.join(f.outDir, name));
      if (!f.distilled && f.actvarModel !== undefined) throw new UserError('--actvar-model and --no-distilled exclude each other');
      plan.check();
      plan.prepare();
      // the backend is announced with the first progress line, i.e. after the inputs were validated
      const info = (s: string): void => { if (!f.quiet) { announceBackend(); process.stderr.write(`actvar: ${s}\n`); } };
      let r;
      try {
        r = runDemo({
          modelsDir: f.models, tokenizer: f.tokenizer, var: f.var, classifier: f.classifier, outDir: f.outDir,
          perClass: f.perClass, cfg: f.cfg, topK: f.topK, topP: f.topP, seed: f.seed, actvar: f.actvar,
          tokenRates: f.tokenRates, expertRate: f.expertRate, experts: f.experts, scales: f.scales, kvPolicy: f.kvPolicy,
          actvarWeights: f.actvarWeights, calib: f.actvarCalib, actvarModel: f.distilled ? f.actvarModel : null, klImages: f.klImages, dataDir: f.dataDir, batch: f.batch, repeats: f.repeats, log: info,
        });
      } catch (e) {
        plan.cleanup();
        throw e;
      }
      const table = formatDemo(r);
      if (f.json) {
        if (!f.quiet) process.stderr.write(table);
        process.stdout.write(JSON.stringify(demoJson(r)) + '\n');
      } else {
        process.stdout.write(table);
      }
    });
}
