/**
 * VAR generation benchmark (issue #3 item 6): seeded random VAR-d16 (or another preset) + the
 * official-shape VQVAE, batch 1, CFG 1.5, top-k 900, top-p 0.96. Times the transformer part
 * (KV-cache sampling of all scales: blocks, head, sampling, f̂ updates) and the decode
 * (`fhatToImg`) separately, the time inside sgemm, per-scale times, and peak RSS (VmHWM).
 * The official PyTorch code took 23.9 s + 5.5 s on 2 threads; goals ≤ 10 s and ≤ 5 s,
 * peak RSS ≤ 1.3× the fp32 weight bytes.
 *
 *   node dist/bench/var-generate.js [preset] [--no-decode] [--no-warmup] [--breakdown] [--attn-threads-all]
 *     [--weights-dtype fp32|bf16] [--batch N]
 *
 * --weights-dtype bf16: the VAR's weight matrices as bf16 (src/var/weights-dtype.ts; converted as they are
 * drawn, so the float32 model never exists); --batch N: N images (classes 207, 208, …), 2N rows with CFG.
 */
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { announceBackend, backend, useNodeBackend } from '../src/backend/node.js';
import { Rng } from '../src/tensor/index.js';
import { varPreset } from '../src/var/config.js';
import { randomVar } from '../src/var/init.js';
import { setAttentionThreads } from '../src/tensor/index.js';
import { VQVAE } from '../src/vqvae/vqvae.js';
import { OFFICIAL_VQVAE } from '../src/vqvae/config.js';
import { WEIGHTS_DTYPES, type WeightsDtype } from '../src/var/weights-dtype.js';

useNodeBackend(); // the backend from the environment (ACTVAR_BACKEND, …), as the CLI does

export interface VarGenerateBenchOptions {
  preset?: string;
  cfg?: number;
  topK?: number;
  topP?: number;
  seed?: number;
  /** Time the decode too (default true). */
  decode?: boolean;
  /** One untimed transformer run first (JIT, BLAS threads, page faults); default true. */
  warmup?: boolean;
  /** Print sgemm time by scale and GEMM kind. */
  breakdown?: boolean;
  /** Also time one more transformer run with the attention GEMMs on this many kernel threads (0 = the backend's count; default setting 1). */
  attnThreads?: number;
  log?: (s: string) => void;
  /** How the VAR's weight matrices are held (default fp32). */
  weightsDtype?: WeightsDtype;
  /** Images per generation (default 1). */
  batch?: number;
}

export interface VarGenerateBenchResult {
  preset: string;
  backend: string;
  threads: number;
  init_s: number;
  transformer_s: number;
  /** CPU seconds of the process during the transformer part (all threads; includes BLAS workers' spin-waits). */
  transformer_cpu_s: number;
  /** Of which inside sgemm calls. */
  transformer_sgemm_s: number;
  per_scale_s: number[];
  decode_s: number | null;
  peak_rss_mb: number;
  /** Peak RSS before the decode (weights + transformer). */
  peak_rss_transformer_mb: number;
  /** fp32 bytes of VAR + VQVAE weights. */
  weight_mb: number;
  weights_dtype: WeightsDtype;
  batch: number;
  /** Bytes of the VAR + VQVAE weights as held (bf16 matrices: 2 bytes each). */
  held_weight_mb: number;
  rss_over_weights: number;
}

/** Current resident set size (VmRSS), in MB. */
export function rssMB(): number {
  const m = /VmRSS:\s+(\d+)\s+kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) / 1024 : process.memoryUsage().rss / (1 << 20);
}

/** Peak resident set size of this process (VmHWM), in MB. */
export function peakRssMB(): number {
  const m = /VmHWM:\s+(\d+)\s+kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) / 1024 : process.resourceUsage().maxRSS / 1024;
}

/**
 * Wrap the backend's sgemm to time it, by GEMM kind (from its shape: qkv, proj, fc1/head, fc2,
 * attention QKᵀ/AV with head_dim inner/outer) and by scale (the caller advances `scale`).
 */
function sgemmTimer(C: number, hidden: number, hd: number): { seconds(): number; restore(): void; byKind: Map<string, { s: number; gflop: number; calls: number }>; scale: { si: number } } {
  const be = backend();
  const orig = be.sgemm;
  const byKind = new Map<string, { s: number; gflop: number; calls: number }>();
  const scale = { si: 0 };
  let ms = 0;
  const kind = (M: number, N: number, K: number): string => {
    if (K === hd) return 'attn QK^T';
    if (N === hd) return 'attn AV';
    if (K === C && N === 3 * C) return 'qkv';
    if (K === C && N === C) return 'proj';
    if (K === C && N === hidden) return 'fc1 (+head if V = 4C)';
    if (K === hidden && N === C) return 'fc2';
    if (K === C) return `other K=C N=${N}`;
    return `other ${M}x${N}x${K}`;
  };
  be.sgemm = function (this: typeof be, ...args: Parameters<typeof orig>) {
    const t = performance.now();
    orig.apply(this, args);
    const dt = performance.now() - t;
    ms += dt;
    const [, , M, N, K] = args;
    const key = `${scale.si < 7 ? 'scales 0-6' : `scale ${scale.si}`}: ${kind(M, N, K)}`;
    const e = byKind.get(key) ?? { s: 0, gflop: 0, calls: 0 };
    e.s += dt / 1000; e.gflop += (2 * M * N * K) / 1e9; e.calls++;
    byKind.set(key, e);
  };
  return { seconds: () => ms / 1000, restore: () => { be.sgemm = orig; }, byKind, scale };
}

export function benchVarGenerate(opts: VarGenerateBenchOptions = {}): VarGenerateBenchResult {
  const log = opts.log ?? ((s: string) => console.log(s));
  const preset = opts.preset ?? 'd16';
  announceBackend();
  const t0 = performance.now();
  const cfg = varPreset(preset);
  const weightsDtype = opts.weightsDtype ?? 'fp32', batch = opts.batch ?? 1;
  const model = randomVar(cfg, opts.seed ?? 0, { weightsDtype });
  const vqvae = VQVAE.random({ ...OFFICIAL_VQVAE, patchNums: cfg.patchNums }, new Rng(1));
  const init = (performance.now() - t0) / 1000;
  let nVar = 0, nVae = 0, held = 0;
  for (const t of model.params.values()) { nVar += t.size; held += t.data.byteLength; }
  for (const t of vqvae.parameters()) { nVae += t.size; held += t.data.byteLength; }
  const weightMB = ((nVar + nVae) * 4) / (1 << 20), heldMB = held / (1 << 20);
  log(`VAR-${preset} (${(nVar / 1e6).toFixed(1)} M params, weights ${weightsDtype}) + VQVAE (${(nVae / 1e6).toFixed(1)} M) random, built in ${init.toFixed(1)} s; ` +
    `weights held: ${Math.round(heldMB)} MB; RSS ${Math.round(rssMB())} MB, peak ${Math.round(peakRssMB())} MB; batch ${batch}`);

  const gen = (onScale?: (si: number) => void) => model.autoregressiveInfer({
    labels: Array.from({ length: batch }, (_, i) => (207 + i) % cfg.numClasses), vqvae, cfg: opts.cfg ?? 1.5, topK: opts.topK ?? 900, topP: opts.topP ?? 0.96,
    rng: new Rng(opts.seed ?? 0), decode: false, onScale,
  });
  if (opts.warmup !== false) {
    const w = performance.now();
    gen();
    log(`warm-up transformer run: ${((performance.now() - w) / 1000).toFixed(2)} s`);
  }
  const timer = sgemmTimer(cfg.width, cfg.mlpHidden, cfg.width / cfg.heads);
  const perScale: number[] = [];
  let res: ReturnType<typeof gen>;
  let transformer: number, sgemm: number, cpu: number;
  try {
    const s0 = performance.now(), c0 = process.cpuUsage();
    let last = s0;
    res = gen(() => { const n = performance.now(); perScale.push((n - last) / 1000); last = n; timer.scale.si++; });
    transformer = (performance.now() - s0) / 1000;
    const cu = process.cpuUsage(c0);
    cpu = (cu.user + cu.system) / 1e6;
    sgemm = timer.seconds();
  } finally {
    timer.restore();
  }
  const rssTransformer = peakRssMB();
  log(`peak RSS after the transformer: ${Math.round(rssTransformer)} MB`);
  if (opts.attnThreads !== undefined) {
    setAttentionThreads(opts.attnThreads);
    const a0 = performance.now();
    gen();
    log(`transformer with attention GEMMs on ${opts.attnThreads || backend().threads} thread(s): ${((performance.now() - a0) / 1000).toFixed(2)} s`);
    setAttentionThreads(1);
  }
  let decode: number | null = null;
  if (opts.decode !== false) {
    // autoregressiveInfer with decode drops its KV caches before decoding; do the same here (the runs
    // above used decode: false, which keeps them pooled for the next inference)
    model.releaseCaches();
    log(`RSS before the decode: ${Math.round(rssMB())} MB`);
    const d0 = performance.now();
    vqvae.fhatToImg(res.fHat);
    decode = (performance.now() - d0) / 1000;
  }
  const rss = peakRssMB();
  const be = backend();
  const r: VarGenerateBenchResult = {
    preset, backend: be.name, threads: be.threads, init_s: round(init),
    transformer_s: round(transformer), transformer_cpu_s: round(cpu), transformer_sgemm_s: round(sgemm), per_scale_s: perScale.map(round),
    decode_s: decode === null ? null : round(decode), peak_rss_mb: Math.round(rss), peak_rss_transformer_mb: Math.round(rssTransformer), weight_mb: Math.round(weightMB),
    rss_over_weights: round(rss / weightMB), weights_dtype: weightsDtype, batch, held_weight_mb: Math.round(heldMB),
  };
  log(`transformer: ${r.transformer_s} s wall, ${r.transformer_cpu_s} s CPU (sgemm ${r.transformer_sgemm_s} s, other ${round(transformer - sgemm)} s); per scale: ${r.per_scale_s.join(' ')}`);
  if (opts.breakdown) {
    log('sgemm time by scale and kind (s, GFLOP/s, calls):');
    for (const [k, e] of [...timer.byKind].sort((a, b) => a[0].localeCompare(b[0]))) {
      log(`  ${k.padEnd(40)} ${e.s.toFixed(3).padStart(7)} ${(e.gflop / e.s).toFixed(1).padStart(7)} ${String(e.calls).padStart(6)}`);
    }
  }
  if (decode !== null) log(`decode: ${r.decode_s} s`);
  log(`peak RSS ${r.peak_rss_mb} MB = ${r.rss_over_weights}× the fp32 weights (${r.weight_mb} MB)`);
  return r;
}

function round(x: number): number { return Math.round(x * 100) / 100; }

/** The value after `flag` in args (or undefined), and args without the pair. */
function takeValue(args: string[], flag: string): [string | undefined, string[]] {
  const i = args.indexOf(flag);
  if (i < 0) return [undefined, args];
  return [args[i + 1], [...args.slice(0, i), ...args.slice(i + 2)]];
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  let args = process.argv.slice(2);
  let dt: string | undefined, batch: string | undefined;
  [dt, args] = takeValue(args, '--weights-dtype');
  [batch, args] = takeValue(args, '--batch');
  const fail = (m: string): never => { console.error(`var-generate: ${m}`); process.exit(2); };
  if (dt !== undefined && !(WEIGHTS_DTYPES as readonly string[]).includes(dt)) fail(`--weights-dtype must be one of ${WEIGHTS_DTYPES.join(', ')}, got '${dt}'`);
  if (batch !== undefined && !/^[1-9]\d*$/.test(batch)) fail(`--batch must be a positive integer, got '${batch}'`);
  const r = benchVarGenerate({
    preset: args.find((a) => !a.startsWith('--')) ?? 'd16',
    decode: !args.includes('--no-decode'), warmup: !args.includes('--no-warmup'), breakdown: args.includes('--breakdown'),
    attnThreads: args.includes('--attn-threads-all') ? 0 : undefined,
    weightsDtype: dt as WeightsDtype | undefined, batch: batch === undefined ? undefined : Number(batch),
  });
  console.log(JSON.stringify(r));
}
