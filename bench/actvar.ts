/**
 * `actvar bench actvar` (the CLI runs this benchmark; it is not part of the library): wall-clock seconds of the transformer part of one generation (all scales:
 * blocks and head, KV-cache inference, CFG on), dense vs ActVAR, with random weights.
 *
 * Method: one seeded random VAR (official init, docs/VAR.md §3.7) and random VQ features as
 * the per-scale inputs (the same for both runs; sampling and the VQVAE are not part of the timed
 * transformer and do not change with ActVAR). Router and selector get seeded random weights
 * (N(0, 1/C)), which spreads tokens over experts roughly evenly, as the load-balancing loss of a
 * trained router does (paper eq. (7)). One warm-up of each, then `repeats` interleaved dense / ActVAR runs;
 * the best time of each is reported (robust against other load on the machine). FLOPs come from the
 * FLOPs counter on the same code. With `profile`, one more run of each gives seconds per scale, the
 * part of them spent in sgemm (the native attention and expert kernels call BLAS themselves and are
 * not in it), the activated scales broken down by phase, and the ceiling of the ratio: if ActVAR's
 * activated scales took time exactly in proportion to their FLOPs, time_saving / flops_saving would
 * be the activated scales' share of the dense time divided by their share of the dense FLOPs (the
 * other scales run the same code in both models).
 */
import { Tensor, Rng, countFlops, FlopsCounter } from '../src/tensor/index.js';
import { backend, setBackend, type Backend } from '../src/backend/index.js';
import { varPreset } from '../src/var/config.js';
import { randomVar } from '../src/var/init.js';
import { attnBranch, ffnBranch } from '../src/var/basic-var.js';
import type { VAR, VarHooks, BlockContext } from '../src/var/var.js';
import { ActVAR, runTransformer } from '../src/actvar/actvar.js';
import { tokenRateAt, type ActVarConfig } from '../src/actvar/config.js';

export interface ActVarBenchOptions {
  preset?: string;
  actvar?: Partial<ActVarConfig>;
  batch?: number;
  repeats?: number;
  seed?: number;
  /** Also time the phases of the activated scales. */
  profile?: boolean;
  /** Reuse a model (tests). */
  model?: VAR;
  /** Progress lines (stderr). */
  log?: (s: string) => void;
}

export interface ActVarBenchResult {
  dense_s: number;
  actvar_s: number;
  flops_saving: number;
  time_saving: number;
  /** Process CPU seconds of the best runs (all threads; robust on a shared machine when ACTVAR_THREADS=1). */
  dense_cpu_s: number;
  actvar_cpu_s: number;
  cpu_saving: number;
  /** time_saving / flops_saving (goal ≥ 0.9). */
  efficiency: number;
  preset: string;
  setting: string;
  batch: number;
  dense_gflops: number;
  actvar_gflops: number;
  /** Seconds per scale (best run), dense and ActVAR. */
  dense_scale_s?: number[];
  actvar_scale_s?: number[];
  /** Of those, seconds inside sgemm (the rest is JavaScript: norms, softmax, GELU, copies, routing). */
  dense_scale_sgemm_s?: number[];
  actvar_scale_sgemm_s?: number[];
  /** Seconds per phase at the activated scales (summed over their blocks), dense and ActVAR. */
  dense_phases_s?: Record<string, number>;
  actvar_phases_s?: Record<string, number>;
  /** GFLOPs per scale, dense and ActVAR (a scale runs from the end of the previous scale's blocks to the end of its own, as the seconds). */
  dense_scale_gflops?: number[];
  actvar_scale_gflops?: number[];
  /** The activated scales' share of the dense seconds (profiled run) and of the dense FLOPs. */
  activated_time_share?: number;
  activated_flops_share?: number;
  /** activated_time_share / activated_flops_share: the ratio if the activated scales' time followed their FLOPs exactly. */
  ceiling?: number;
}

/** `inner` with the time spent in its sgemm added to `acc.s` (profiling). */
function timedBackend(inner: Backend, acc: { s: number }): Backend {
  return {
    name: inner.name,
    native: inner.native,
    get threads() { return inner.threads; },
    set threads(n: number) { inner.threads = n; },
    setThreads: (n: number) => inner.setThreads(n),
    sgemm: (...args: Parameters<Backend['sgemm']>) => {
      const t0 = performance.now();
      inner.sgemm(...args);
      acc.s += (performance.now() - t0) / 1e3;
    },
  };
}

/** Wrap a hooks object so that the activated scales' dense blocks are timed by phase. */
function timedDenseHooks(a: ActVAR, phases: Record<string, number>): VarHooks {
  return {
    blockExecutor: (ctx: BlockContext) => {
      if (ctx.mode !== 'infer' || !ctx.cache || tokenRateAt(a.config, ctx.scaleIndex) === null) return undefined;
      const t0 = performance.now();
      const x1 = attnBranch(ctx.block, ctx.x, ctx.ada, { kind: 'cache', cache: ctx.cache });
      const t1 = performance.now();
      const out = ffnBranch(ctx.block, x1, ctx.ada);
      const t2 = performance.now();
      phases.attention = (phases.attention ?? 0) + (t1 - t0) / 1e3;
      phases.ffn = (phases.ffn ?? 0) + (t2 - t1) / 1e3;
      return out;
    },
  };
}

export function benchActVar(opts: ActVarBenchOptions = {}): ActVarBenchResult {
  const preset = opts.preset ?? 'd16', B = opts.batch ?? 1, repeats = opts.repeats ?? 3, seed = opts.seed ?? 0;
  const log = opts.log ?? (() => {});
  let model = opts.model;
  if (!model) {
    log(`building a random ${preset} …`);
    model = randomVar(varPreset(preset), seed);
  }
  const C = model.C;
  const a = ActVAR.wrap(model, { tokenRates: [0.75, 0.75], expertRate: 0.75, ...opts.actvar }, { init: 'zeros', allowUntrained: true });
  const rng = new Rng(seed + 1);
  const std = 1 / Math.sqrt(C);
  for (const b of a.blocks) for (const t of [b.router.weight, b.selector.weight]) for (let i = 0; i < t.size; i++) t.f32[i] = rng.normal() * std;
  const inputs = model.config.patchNums.map((pn) => {
    const d = new Float32Array(B * pn * pn * model!.config.Cvae);
    for (let i = 0; i < d.length; i++) d[i] = rng.normal() * 0.5;
    return new Tensor(d, [B, pn * pn, model!.config.Cvae]);
  });
  const labels = Array.from({ length: B }, (_, i) => (seed + 7 * i) % model.config.numClasses);

  const SN = model.numScales;
  let lastCpu = 0;
  const gemm = { s: 0 };
  const timeRun = (hooks: VarHooks, perScale: number[] | null, perScaleGemm: number[] | null = null): number => {
    const c0 = process.cpuUsage();
    let last = performance.now(), lastGemm = gemm.s;
    const t0 = last;
    const wrapped: VarHooks = { ...hooks };
    if (perScale) {
      wrapped.afterBlock = (ctx: BlockContext) => {
        if (ctx.blockIndex === model!.blocks.length - 1) {
          const now = performance.now();
          perScale[ctx.scaleIndex] += (now - last) / 1e3;
          if (perScaleGemm) perScaleGemm[ctx.scaleIndex] += gemm.s - lastGemm;
          last = now; lastGemm = gemm.s;
        }
      };
    }
    runTransformer(model!, labels, inputs, wrapped);
    const c = process.cpuUsage(c0);
    lastCpu = (c.user + c.system) / 1e6;
    return (performance.now() - t0) / 1e3;
  };

  /** Total FLOPs of a run, and per scale (read at the end of each scale's blocks, where timeRun reads the clock). */
  const flopsOf = (hooks: VarHooks): { total: number; perScale: number[] } => {
    const c = new FlopsCounter(), perScale = new Array<number>(SN).fill(0);
    let last = 0;
    const afterBlock = (ctx: BlockContext): void => {
      if (ctx.blockIndex !== model!.blocks.length - 1) return;
      perScale[ctx.scaleIndex] = c.total - last;
      last = c.total;
    };
    return { total: countFlops(() => runTransformer(model!, labels, inputs, { ...hooks, afterBlock }), c).flops.total, perScale };
  };
  const denseCount = flopsOf({}), sparseCount = flopsOf(a.hooks);
  const denseFlops = denseCount.total, sparseFlops = sparseCount.total;
  log('warm-up …');
  timeRun({}, null);
  timeRun(a.hooks, null);
  let dense = Infinity, sparse = Infinity, denseCpu = Infinity, sparseCpu = Infinity;
  for (let r = 0; r < repeats; r++) {
    const d = timeRun({}, null), dc = lastCpu;
    const s = timeRun(a.hooks, null), sc = lastCpu;
    log(`run ${r + 1}/${repeats}: dense ${d.toFixed(3)} s (cpu ${dc.toFixed(2)}), ActVAR ${s.toFixed(3)} s (cpu ${sc.toFixed(2)})`);
    dense = Math.min(dense, d); sparse = Math.min(sparse, s);
    denseCpu = Math.min(denseCpu, dc); sparseCpu = Math.min(sparseCpu, sc);
  }
  const flopsSaving = 1 - sparseFlops / denseFlops, timeSaving = 1 - sparse / dense;
  const r4 = (v: number): number => Math.round(v * 1e4) / 1e4;
  const gflops = (v: number): number => Number((v / 1e9).toPrecision(6));
  const res: ActVarBenchResult = {
    dense_s: r4(dense), actvar_s: r4(sparse), flops_saving: r4(flopsSaving), time_saving: r4(timeSaving),
    dense_cpu_s: r4(denseCpu), actvar_cpu_s: r4(sparseCpu), cpu_saving: r4(1 - sparseCpu / denseCpu),
    efficiency: r4(timeSaving / flopsSaving), preset, batch: B,
    setting: `(${a.config.tokenRates.map((v) => Math.round(v * 100)).join(',')};${Math.round(a.config.expertRate * 100)})`,
    dense_gflops: gflops(denseFlops), actvar_gflops: gflops(sparseFlops),
  };
  if (opts.profile) {
    log('profiling …');
    const ds = new Array<number>(SN).fill(0), ss = new Array<number>(SN).fill(0);
    const dg = new Array<number>(SN).fill(0), sg = new Array<number>(SN).fill(0);
    const dp: Record<string, number> = {};
    const kernels = backend();
    setBackend(timedBackend(kernels, gemm));
    let sp: Record<string, number>;
    let profiledDense: number;
    try {
      profiledDense = timeRun(timedDenseHooks(a, dp), ds, dg);
      a.timings = {};
      timeRun(a.hooks, ss, sg);
      sp = a.timings;
    } finally {
      a.timings = null;
      setBackend(kernels);
    }
    const rr = (o: Record<string, number>): Record<string, number> => Object.fromEntries(Object.entries(o).map(([k, v]) => [k, r4(v)]));
    res.dense_scale_s = ds.map(r4); res.actvar_scale_s = ss.map(r4);
    res.dense_scale_sgemm_s = dg.map(r4); res.actvar_scale_sgemm_s = sg.map(r4);
    res.dense_phases_s = rr(dp); res.actvar_phases_s = rr(sp);
    res.dense_scale_gflops = denseCount.perScale.map(gflops); res.actvar_scale_gflops = sparseCount.perScale.map(gflops);
    const activated = (v: number[]): number => v.reduce((acc, x, si) => acc + (tokenRateAt(a.config, si) === null ? 0 : x), 0);
    const timeShare = activated(ds) / profiledDense, flopsShare = activated(denseCount.perScale) / denseFlops;
    res.activated_time_share = r4(timeShare); res.activated_flops_share = r4(flopsShare);
    res.ceiling = r4(timeShare / flopsShare);
  }
  return res;
}
