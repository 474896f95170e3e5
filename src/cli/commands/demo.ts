/**
 * `actvar demo` (`npm run demo`): dense VAR and ActVAR side by side on the shipped Fashion-MNIST
 * models — PNG grids, time, measured FLOPs and class accuracy of each (src/app/demo.ts does the work).
 *
 *   actvar demo [--models DIR] [--tokenizer FILE] [--var FILE] [--classifier FILE] [--out-dir out/demo]
 *     [--per-class 10] [--cfg 1.5] [--top-k 0] [--top-p 0] [--seed 0] [--token-rates a,b]
 *     [--expert-rate g] [--actvar-weights FILE] [--actvar-calib 4] [--no-actvar] [--batch 50] [--repeats 2] [--json] [--quiet]
 *
 * The summary table goes to stdout; with --json it goes to stderr and stdout holds one JSON line.
 */
import { Command } from 'commander';
import { announceBackend } from '../../backend/node.js';
import { runDemo, demoJson, formatDemo, DEMO_DEFAULTS, DEMO_MODEL_FILES } from '../../app/demo.js';
import { listOption, numberOption, intOpt, nonNegInt } from './flops.js';

interface Flags {
  models: string; tokenizer?: string; var?: string; classifier?: string; outDir: string; perClass: number;
  cfg: number; topK: number; topP: number; seed: number; tokenRates?: number[]; expertRate?: number; experts?: number;
  scales?: number[]; actvar: boolean; actvarWeights?: string; actvarCalib: number; batch: number; repeats: number; json?: boolean; quiet?: boolean;
}

export function register(program: Command): void {
  const d = DEMO_DEFAULTS;
  program.command('demo')
    .description('dense VAR and ActVAR side by side on the shipped Fashion-MNIST models: PNG grids, time, GFLOPs, class accuracy')
    .option('--models <dir>', `folder of the shipped models (${Object.values(DEMO_MODEL_FILES).join(', ')})`, d.modelsDir)
    .option('--tokenizer <file>', 'tokenizer from `actvar train-vae` (default: DIR/' + DEMO_MODEL_FILES.tokenizer + ')')
    .option('--var <file>', 'VAR from `actvar train-var` (default: DIR/' + DEMO_MODEL_FILES.var + ')')
    .option('--classifier <file>', 'classifier from `actvar train-classifier` (default: DIR/' + DEMO_MODEL_FILES.classifier + ')')
    .option('--out-dir <dir>', 'write dense.png, actvar.png and demo.png here', d.outDir)
    .option('--per-class <n>', 'samples per class and mode', intOpt('--per-class'), d.perClass)
    .option('--cfg <w>', 'classifier-free guidance strength', numberOption('--cfg'), d.cfg)
    .option('--top-k <k>', 'keep the k most likely tokens (0 = off)', nonNegInt('--top-k'), d.topK)
    .option('--top-p <p>', 'nucleus sampling mass (0 = off)', numberOption('--top-p'), d.topP)
    .option('--seed <s>', 'sampling seed (the same per-image streams in both modes)', nonNegInt('--seed'), d.seed)
    .option('--token-rates <a,b>', 'ActVAR token activation rate per activated scale (default 0.75,0.75)', listOption('--token-rates'))
    .option('--expert-rate <g>', 'ActVAR fraction of FFN experts per token (default 0.75)', numberOption('--expert-rate'))
    .option('--experts <n>', 'ActVAR experts per FFN (default 16)', intOpt('--experts'))
    .option('--scales <i,j>', 'ActVAR activated scale indices, 0-based (default: the last two)', listOption('--scales', true))
    .option('--actvar-weights <file>', 'router/selector weights (.safetensors) instead of the training-free init')
    .option('--actvar-calib <n>', 'dense generations that calibrate the training-free init (0 = data-free)', nonNegInt('--actvar-calib'), d.calib)
    .option('--no-actvar', 'the dense model only')
    .option('--batch <n>', 'images per forward pass', intOpt('--batch'), d.batch)
    .option('--repeats <n>', 'timed runs of every batch in each mode, the fastest counts', intOpt('--repeats'), d.repeats)
    .option('--json', 'summary on stderr, one JSON line on stdout')
    .option('--quiet', 'no progress lines')
    .action((f: Flags) => {
      // the backend is announced with the first progress line, i.e. after the inputs were validated
      const info = (s: string): void => { if (!f.quiet) { announceBackend(); process.stderr.write(`actvar: ${s}\n`); } };
      const r = runDemo({
        modelsDir: f.models, tokenizer: f.tokenizer, var: f.var, classifier: f.classifier, outDir: f.outDir,
        perClass: f.perClass, cfg: f.cfg, topK: f.topK, topP: f.topP, seed: f.seed, actvar: f.actvar,
        tokenRates: f.tokenRates, expertRate: f.expertRate, experts: f.experts, scales: f.scales,
        actvarWeights: f.actvarWeights, calib: f.actvarCalib, batch: f.batch, repeats: f.repeats, log: info,
      });
      const table = formatDemo(r);
      if (f.json) {
        if (!f.quiet) process.stderr.write(table);
        process.stdout.write(JSON.stringify(demoJson(r)) + '\n');
      } else {
        process.stdout.write(table);
      }
    });
}
