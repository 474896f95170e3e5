/**
 * `actvar bench <what>`: micro-benchmarks, one entry of `benchSubcommands` each (`gemm`, `actvar`);
 * to add one, write `{ name, description, configure(cmd) { cmd.option(...) }, run(opts) {...} }` and
 * append it to the table. Flags use the parsers of ../options.ts.
 */
import { Command, Option } from 'commander';
import { backend } from '../../backend/index.js';
import { announceBackend } from '../../backend/node.js';
import { UserError } from '../errors.js';
import { addActVarSettingsOptions, actvarSettings, int, intList } from '../options.js';
import { ActVarConfigError } from '../../actvar/config.js';
import { benchActVar, type ActVarBenchResult } from '../../../bench/actvar.js';
import { DEFAULT_GEMM_SHAPE, measureGemm, formatGemmTable } from '../../../bench/gemm-measure.js';

export interface BenchSubcommand {
  /** Subcommand name: `actvar bench <name>`. */
  name: string;
  description: string;
  /** Declare the options/arguments of the subcommand. */
  configure(cmd: Command): void;
  /** Run it with commander's parsed options. */
  run(opts: Record<string, unknown>, cmd: Command): Promise<void> | void;
}

// -------------------------------------------------------------------------------------------
// gemm


const gemm: BenchSubcommand = {
  name: 'gemm',
  description: 'GFLOP/s of one matmul, through the tensor API and as a raw backend sgemm call',
  configure(cmd) {
    cmd
      .option('--json', 'print one JSON line instead of a table')
      .option('--threads <n>', 'kernel threads (default: $ACTVAR_THREADS or all cores)', int('--threads', { min: 1, max: 1024 }))
      .option('--shape <M,N,K>', 'M tokens, N outputs, K inner', intList('--shape', { min: 1, max: 2 ** 30 }, 3), [...DEFAULT_GEMM_SHAPE])
      .option('--repeats <r>', 'timed runs of each path after one warm-up; the best is reported (default: 3 or more, ~1.5 s per path)', int('--repeats', { min: 1, max: 10_000 }));
  },
  run(opts) {
    const shape = opts.shape as number[];
    if (shape[0] * shape[2] + shape[1] * shape[2] + shape[0] * shape[1] > 2 ** 30) {
      throw new UserError(`--shape ${shape.join(',')} needs more than 4 GiB of operands; pick smaller dimensions`);
    }
    if (opts.threads !== undefined) backend().setThreads(opts.threads as number);
    announceBackend();
    const r = measureGemm({ shape, repeats: opts.repeats as number | undefined });
    process.stdout.write((opts.json ? JSON.stringify(r) : formatGemmTable(r)) + '\n');
  },
};

/** `bench actvar --profile` as text: seconds (of which sgemm) and GFLOPs per scale, the phases of the activated scales, the ceiling. */
function profileTable(r: ActVarBenchResult): string {
  const f = (v: number | undefined) => (v ?? 0).toFixed(3).padStart(7);
  const g = (v: number | undefined) => (v ?? 0).toFixed(1).padStart(7);
  const lines = ['scale   dense s (sgemm)   ActVAR s (sgemm)   dense GFLOPs  ActVAR GFLOPs'];
  (r.dense_scale_s ?? []).forEach((d, i) => {
    lines.push(`${String(i).padStart(5)} ${f(d)} (${f(r.dense_scale_sgemm_s?.[i])}) ${f(r.actvar_scale_s?.[i])} (${f(r.actvar_scale_sgemm_s?.[i])})` +
      `   ${g(r.dense_scale_gflops?.[i])}      ${g(r.actvar_scale_gflops?.[i])}`);
  });
  const phases = (o: Record<string, number> | undefined) => Object.entries(o ?? {}).map(([k, v]) => `${k} ${v.toFixed(3)}`).join(', ');
  lines.push(`activated scales, dense: ${phases(r.dense_phases_s)}`, `activated scales, ActVAR: ${phases(r.actvar_phases_s)}`);
  const pct = (v: number | undefined) => `${(100 * (v ?? 0)).toFixed(1)}%`;
  lines.push(`activated scales: ${pct(r.activated_time_share)} of the dense time, ${pct(r.activated_flops_share)} of its FLOPs → ` +
    `ceiling of the ratio ${(r.ceiling ?? 0).toFixed(3)} (if their time followed their FLOPs exactly)`);
  return lines.join('\n') + '\n';
}

/** `actvar bench actvar`: dense vs ActVAR transformer seconds, random weights. */
const actvarBench: BenchSubcommand = {
  name: 'actvar',
  description: 'wall-clock of the transformer part of one generation, dense VAR vs ActVAR (random weights, CFG on)',
  configure(cmd) {
    cmd.addOption(new Option('--preset <name>', 'architecture').choices(['d16', 'd20', 'd24', 'd30']).default('d16'));
    addActVarSettingsOptions(cmd)
      .option('--batch <n>', 'images (rows = 2·batch with CFG)', int('--batch', { min: 1, max: 64 }), 1)
      .option('--repeats <n>', 'timed runs of each after one warm-up (best reported)', int('--repeats', { min: 1, max: 1000 }), 3)
      .option('--profile', 'also time each scale and the phases of the activated scales')
      .option('--json', 'one JSON line');
  },
  run(opts) {
    const settings = actvarSettings(opts);
    try {
      const r = benchActVar({
        preset: opts.preset as string, actvar: settings, batch: opts.batch as number, repeats: opts.repeats as number,
        profile: !!opts.profile, log: opts.json ? undefined : (s) => process.stderr.write(`actvar: ${s}\n`),
      });
      if (opts.json) process.stdout.write(JSON.stringify(r) + '\n');
      else {
        process.stdout.write(`${r.preset} ${r.setting}, batch ${r.batch}, CFG on: dense ${r.dense_s.toFixed(2)} s (${r.dense_gflops.toFixed(1)} GFLOPs), ` +
          `ActVAR ${r.actvar_s.toFixed(2)} s (${r.actvar_gflops.toFixed(1)} GFLOPs)\n` +
          `FLOPs saving ${(100 * r.flops_saving).toFixed(1)}%, time saving ${(100 * r.time_saving).toFixed(1)}%, ratio ${r.efficiency.toFixed(3)}\n`);
        if (opts.profile) process.stdout.write(profileTable(r));
      }
    } catch (e) {
      if (e instanceof ActVarConfigError) throw new UserError(e.message);
      if (e instanceof RangeError && /preset/.test(e.message)) throw new UserError(e.message);
      throw e;
    }
  },
};

/** All `actvar bench` subcommands; append new ones here. */
export const benchSubcommands: BenchSubcommand[] = [gemm, actvarBench];

export function register(program: Command): void {
  const bench = program.command('bench').description('micro-benchmarks (see `actvar bench <what> --help`)');
  for (const sub of benchSubcommands) {
    const cmd = bench.command(sub.name).description(sub.description);
    sub.configure(cmd);
    cmd.action(async (opts: Record<string, unknown>, c: Command) => { await sub.run(opts, c); });
  }
}
