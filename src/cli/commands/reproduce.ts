/**
 * `actvar reproduce` (issue 14): rerun the paper's comparisons (Tables 1–6, Fig. 9) on the shipped
 * Fashion-MNIST models, one JSON per run under --out, then the report (REPRODUCTION.md, index.html).
 * The work is src/app/reproduce; this file parses flags and records the commit and the machine.
 *
 *   actvar reproduce --out reports/full                     # full: 3 seeds, N = 5,000; ActVAR and the two baselines also distilled
 *   actvar reproduce --out reports/quick --quick            # one seed, N = 500: minutes
 *   actvar reproduce --out DIR [--seeds N] [--n N] [--only id,id] [--models DIR] [--doc docs/REPRODUCTION.md]
 *   actvar reproduce --out DIR --report-only                # the report from the JSONs there
 * Rerunning the same command resumes: finished runs are skipped.
 */
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { spawnSync } from 'node:child_process';
import { Command } from 'commander';
import { announceBackend } from '../../backend/node.js';
import { runReproduce, makePlan, pendingRuns, modelFiles, ReproduceError } from '../../app/reproduce/index.js';
import { UserError } from '../errors.js';
import { int, path } from '../options.js';
import { OutputPlan } from '../outputs.js';

interface Flags { distill: boolean; distillAll?: boolean; out: string; quick?: boolean; seeds?: number; n?: number; only?: string; models: string; doc?: string; reportOnly?: boolean; dryRun?: boolean; screenshot?: string; quiet?: boolean }

/**
 * The commit the code runs at (`+dirty` when tracked files other than reports and the generated docs
 * differ from it), or 'unknown' outside git.
 */
export function currentCommit(cwd = process.cwd()): string {
  const r = spawnSync('git', ['rev-parse', '--short=12', 'HEAD'], { cwd, encoding: 'utf8' });
  if (r.status !== 0) return 'unknown';
  const dirty = spawnSync('git', ['status', '--porcelain', '--untracked-files=no', '--', '.', ':(exclude)reports', ':(exclude)docs/REPRODUCTION.md', ':(exclude)docs/reproduction.png'], { cwd, encoding: 'utf8' });
  return r.stdout.trim() + (dirty.status === 0 && dirty.stdout.trim() ? '+dirty' : '');
}

/** "2× AMD EPYC …, Node v20…, OPENBLAS_CORETYPE=…" */
export function machineDescription(): string {
  const cpus = os.cpus();
  const env = ['OPENBLAS_CORETYPE', 'OPENBLAS_NUM_THREADS', 'ACTVAR_THREADS'].filter((k) => process.env[k]).map((k) => `${k}=${process.env[k]}`);
  return `${cpus.length}× ${cpus[0]?.model.trim() ?? 'unknown CPU'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.platform()} ${os.release()}, Node ${process.version}${env.length ? ', ' + env.join(', ') : ''}`;
}

export function register(program: Command): void {
  program.command('reproduce')
    .description("rerun the paper's comparisons (Tables 1–6, Fig. 9) on the shipped models: one JSON per run, then REPRODUCTION.md and index.html")
    .requiredOption('--out <dir>', 'folder of the runs and the report (rerun the same command to resume)', path('--out'))
    .option('--quick', 'one seed, N = 500 images per run (minutes) instead of the full plan (3 seeds, N = 5,000)')
    .option('--seeds <n>', 'seeds per setting (default: 1 quick, 3 full)', int('--seeds', { min: 1, max: 100 }))
    .option('--n <n>', 'generated images per run (default: 500 quick, 5000 full)', int('--n', { min: 10, max: 100_000 }))
    .option('--only <ids>', 'comma-separated setting ids (see --dry-run) instead of all')
    .option('--models <dir>', 'folder of the shipped models', path('--models'), 'models')
    .option('--no-distill', 'only the training-free rows (no distillation)')
    .option('--distill-all', 'distil every setting, not only ActVAR (75,75;75) and the two baselines (many hours more on 2 cores)')
    .option('--doc <file>', 'also write the markdown report here (e.g. docs/REPRODUCTION.md)', path('--doc'))
    .option('--screenshot <file>', 'the page screenshot to mention in the report (made by scripts/check-report.mjs)', path('--screenshot'))
    .option('--report-only', 'write the report from the finished runs in --out; run nothing')
    .option('--dry-run', 'print the plan (settings × seeds, which are done) and exit')
    .option('--quiet', 'no progress lines')
    .action(async (f: Flags) => {
      const only = f.only?.split(',').map((s) => s.trim()).filter(Boolean);
      if (f.only !== undefined && !only?.length) throw new UserError(`--only needs setting ids, got '${f.only}'`);
      const plan = new OutputPlan().inputDir('--models', f.models).dir('--out', f.out);
      for (const name of ['REPRODUCTION.md', 'index.html', 'plan.json']) plan.file('--out', nodePath.join(f.out, name));
      plan.file('--doc', f.doc);
      plan.check();
      const command = ['actvar reproduce', ...process.argv.slice(3).filter((a) => a !== '--quiet')].join(' ');
      const opts = { out: f.out, distill: f.distill, distillAll: f.distillAll, quick: f.quick, seeds: f.seeds, n: f.n, only, modelsDir: f.models, doc: f.doc, reportOnly: f.reportOnly, screenshot: f.screenshot, command, commit: currentCommit(), machine: machineDescription() };
      try {
        if (!f.reportOnly) modelFiles(f.models);
        if (f.dryRun) {
          const { plan: p, runs } = makePlan(opts);
          const todo = new Set(pendingRuns(f.out, runs).map((r) => r.id));
          process.stdout.write(`mode ${p.mode}: N = ${p.sizes.n}, batch ${p.sizes.batch}, ${p.sizes.seeds} seed(s), ${p.settings.length} settings, ${runs.length} runs (${todo.size} to do)\n`);
          for (const r of runs) process.stdout.write(`${todo.has(r.id) ? 'todo' : 'done'}  ${r.id}  ${r.setting.label}\n`);
          return;
        }
        plan.prepare();
        if (!f.quiet) announceBackend();
        const r = await runReproduce({ ...opts, log: (s) => { if (!f.quiet) process.stderr.write(`actvar: ${s}\n`); } });
        process.stdout.write(`ran ${r.ran.length} run(s), ${r.skipped.length} already done, ${r.seconds.toFixed(0)} s; wrote ${r.files.join(', ')}\n`);
      } catch (e) {
        if (e instanceof ReproduceError) throw new UserError(e.message);
        throw e;
      }
    });
}
