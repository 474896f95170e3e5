/**
 * `actvar bench <what>`: micro-benchmarks, one entry of `benchSubcommands` each (`gemm`, `actvar`);
 * to add one, write `{ name, description, configure(cmd) { cmd.option(...) }, run(opts) {...} }` and
 * append it to the table. Flags use the parsers of ../options.ts.
 */
import { Command, Option } from 'commander';
import { backend } from '../../backend/index.js';
import { announceBackend } from '../../backend/node.js';
import { Tensor, noGrad, linear } from '../../tensor/index.js';
import { Rng } from '../../tensor/rng.js';
import { UserError } from '../errors.js';
import { addActVarSettingsOptions, actvarSettings, int, intList } from '../options.js';
import { ActVarConfigError } from '../../actvar/config.js';
import { benchActVar, type ActVarBenchResult } from '../../../bench/actvar.js';

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

/** The transformer's FFN GEMM at 680 tokens (docs/VAR.md, "680x1024x4096" = M×N×K). */
export const DEFAULT_GEMM_SHAPE: readonly [number, number, number] = [680, 1024, 4096];

export interface GemmBenchResult {
  shape: [number, number, number];
  threads: number;
  /** Through the tensor API: linear(x[M,K], W[N,K]) = x·Wᵀ. */
  tensor_gflops: number;
  /** A raw backend sgemm of the same shape and transposes, same process. */
  blas_gflops: number;
  backend: string;
}

/**
 * Times y = x·Wᵀ with x [M,K], W [N,K] (K inner) both as `linear` and as a raw
 * `backend().sgemm(false, true, ...)`, after one warm-up each, interleaved so both paths see
 * the same machine load, and reports the best run of each. FLOPs = 2·M·N·K.
 * Runs exactly `repeats` pairs when given; otherwise at least 3 pairs and more (up to 50)
 * until `minSeconds` (default 1.5) have been spent on each path, since the best of few runs is noisy on a
 * shared machine.
 */
export function measureGemm(opts: { shape?: readonly number[]; repeats?: number; threads?: number; minSeconds?: number } = {}): GemmBenchResult {
  const [M, N, K] = opts.shape ?? DEFAULT_GEMM_SHAPE;
  const minRepeats = opts.repeats ?? 3, maxRepeats = opts.repeats ?? 50;
  const minSeconds = opts.repeats === undefined ? opts.minSeconds ?? 1.5 : 0;
  const be = backend();
  if (opts.threads !== undefined) be.setThreads(opts.threads);
  const rng = new Rng(1);
  const fill = (n: number): Float32Array => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = rng.uniform() - 0.5;
    return a;
  };
  const X = fill(M * K), W = fill(N * K), Y = new Float32Array(M * N);
  const x = new Tensor(X, [M, K]), w = new Tensor(W, [N, K]);
  const raw = (): void => be.sgemm(false, true, M, N, K, 1, X, 0, K, W, 0, K, 0, Y, 0, N);
  const viaTensor = (): void => { noGrad(() => linear(x, w)); };
  const time = (f: () => void): number => { const t0 = performance.now(); f(); return (performance.now() - t0) / 1e3; };
  raw(); viaTensor();
  let bestRaw = Infinity, bestTensor = Infinity, spent = 0;
  for (let r = 0; r < maxRepeats && (r < minRepeats || spent < 2 * minSeconds); r++) {
    const tr = time(raw), tt = time(viaTensor);
    bestRaw = Math.min(bestRaw, tr);
    bestTensor = Math.min(bestTensor, tt);
    spent += tr + tt;
  }
  const flops = 2 * M * N * K;
  const round = (v: number): number => Math.round(v * 100) / 100;
  return {
    shape: [M, N, K], threads: be.threads,
    tensor_gflops: round(flops / bestTensor / 1e9), blas_gflops: round(flops / bestRaw / 1e9),
    backend: be.name,
  };
}

/** The human-readable table printed without --json. */
export function formatGemmTable(r: GemmBenchResult): string {
  const [M, N, K] = r.shape, flops = 2 * M * N * K;
  const row = (label: string, gf: number): string =>
    `  ${label.padEnd(26)}${(flops / gf / 1e6).toFixed(1).padStart(10)}${gf.toFixed(2).padStart(10)}`;
  return [
    `gemm ${M}x${N}x${K} (M x N x K, y = x·Wᵀ), ${r.backend}, ${r.threads} thread${r.threads === 1 ? '' : 's'}`,
    `  ${'path'.padEnd(26)}${'best ms'.padStart(10)}${'GFLOP/s'.padStart(10)}`,
    row('raw backend sgemm', r.blas_gflops),
    row('tensor linear()', r.tensor_gflops),
    `  tensor / raw = ${(r.tensor_gflops / r.blas_gflops).toFixed(3)}`,
  ].join('\n');
}

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
