/**
 * `actvar bench <what>`: micro-benchmarks. Each subcommand is one entry of `benchSubcommands`;
 * to add one, write `{ name, description, configure(cmd) { cmd.option(...) }, run(opts) {...} }`
 * (in its own module if it is big) and append it to the table. Parsing helpers below
 * (`intOption`, `shapeOption`) turn bad values into clear commander errors.
 */
import { Command, InvalidArgumentError } from 'commander';
import { backend } from '../../backend/index.js';
import { announceBackend } from '../../backend/node.js';
import { Tensor, noGrad, linear } from '../../tensor/index.js';
import { Rng } from '../../tensor/rng.js';
import { UserError } from '../errors.js';
import { actvarBenchSubcommand } from './actvar-options.js';

export interface BenchSubcommand {
  /** Subcommand name: `actvar bench <name>`. */
  name: string;
  description: string;
  /** Declare the options/arguments of the subcommand. */
  configure(cmd: Command): void;
  /** Run it with commander's parsed options. */
  run(opts: Record<string, unknown>, cmd: Command): Promise<void> | void;
}

/** Parser for a positive integer option. */
export function intOption(min = 1): (value: string) => number {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`expected an integer >= ${min}, got '${value}'`);
    return n;
  };
}

/** Parser for a comma-separated list of `count` positive integers, e.g. "680,1024,4096". */
export function shapeOption(count: number): (value: string) => number[] {
  return (value: string) => {
    const parts = value.split(',').map((s) => s.trim());
    const dims = parts.map(Number);
    if (parts.length !== count || dims.some((d) => !Number.isInteger(d) || d < 1)) {
      throw new InvalidArgumentError(`expected ${count} comma-separated positive integers, got '${value}'`);
    }
    return dims;
  };
}

// -------------------------------------------------------------------------------------------
// gemm

/** The transformer's FFN GEMM at 680 tokens (var-reference.md, "680x1024x4096" = M×N×K). */
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
      .option('--threads <n>', 'kernel threads (default: $ACTVAR_THREADS or all cores)', intOption(1))
      .option('--shape <M,N,K>', 'M tokens, N outputs, K inner', shapeOption(3), [...DEFAULT_GEMM_SHAPE])
      .option('--repeats <r>', 'timed runs of each path after one warm-up; the best is reported (default: 3 or more, ~1.5 s per path)', intOption(1));
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

/** All `actvar bench` subcommands; append new ones here. */
export const benchSubcommands: BenchSubcommand[] = [gemm, actvarBenchSubcommand];

export function register(program: Command): void {
  const bench = program.command('bench').description('micro-benchmarks (see `actvar bench <what> --help`)');
  for (const sub of benchSubcommands) {
    const cmd = bench.command(sub.name).description(sub.description);
    sub.configure(cmd);
    cmd.action(async (opts: Record<string, unknown>, c: Command) => { await sub.run(opts, c); });
  }
}
