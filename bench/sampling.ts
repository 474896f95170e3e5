/**
 * Batched sampling benchmark (issue #15 goal 2): images per second of a whole generation (KV-cache sampling
 * of every scale with CFG and top-k/top-p, then the VQVAE decode), dense and with ActVAR, at one batch size.
 *
 *   node dist/bench/sampling.js [--model d16|fashion] [--batch B] [--modes dense,actvar] [--repeats R]
 *                               [--cfg 1.5] [--top-k K] [--top-p P] [--no-decode] [--no-warmup] [--json]
 *   node dist/bench/sampling.js --export-parity FILE [--batch B]     (fashion, greedy: raw logits per scale for
 *                                                                      bench/torch/var.py parity)
 *
 * Models: `d16` = seeded random VAR-d16 + the official-size VQVAE (CFG 1.5, top-k 900, top-p 0.96 by default);
 * `fashion` = the shipped models/var-fashion-mnist.safetensors + its tokenizer (the demo's sampling: CFG 1.5,
 * top-k 0, top-p 0). Labels cycle through the classes (7·i mod classes). ActVAR: (75,75;75) at the last two
 * scales unless `--token-rates a,b --expert-rate g` say otherwise; d16 gets random N(0, 1/C) router/selector
 * weights (as `actvar bench actvar`; the timing does not depend on them beyond the balance of the experts),
 * the shipped model the training-free initialisation calibrated on 4 dense generations (as `npm run demo`).
 * One warm-up generation at batch 1 per mode (unless --no-warmup), then `repeats` timed generations per mode, the modes alternating
 * (dense first in odd repeats). The decode runs after every dense generation; ActVAR's images/s uses the decode
 * time of the dense run of the same repeat (same f̂ shape, same ops: ActVAR does not touch the decoder).
 * `bench/sampling-vs-torch.mjs` runs this beside bench/torch/var.py, alternating.
 */
import { fileURLToPath } from 'node:url';
import { announceBackend, backend, useNodeBackend } from '../src/backend/node.js';
import { Rng, Tensor, countFlops } from '../src/tensor/index.js';
import { varPreset } from '../src/var/config.js';
import { randomVar } from '../src/var/init.js';
import { loadVar } from '../src/var/load.js';
import type { VAR } from '../src/var/var.js';
import { VQVAE } from '../src/vqvae/vqvae.js';
import { OFFICIAL_VQVAE } from '../src/vqvae/config.js';
import { loadVqvae } from '../src/vqvae/load.js';
import { ActVAR } from '../src/actvar/actvar.js';
import { writeSafetensors } from '../src/io/safetensors.js';

useNodeBackend();

export interface SamplingBenchOptions {
  model?: 'd16' | 'fashion';
  batch?: number;
  modes?: ('dense' | 'actvar')[];
  repeats?: number;
  cfg?: number;
  topK?: number;
  topP?: number;
  decode?: boolean;
  tokenRates?: [number, number];
  expertRate?: number;
  /** One untimed generation at batch 1 per mode first (default true). */
  warmup?: boolean;
  log?: (s: string) => void;
}

export interface SamplingModeResult {
  /** Transformer GFLOPs per image (counted in the batch-1 warm-up; per-image FLOPs do not depend on the batch). */
  gflops_per_image: number | null;
  transformer_s: number[];
  /** Process CPU seconds of each transformer run (all threads). */
  transformer_cpu_s: number[];
  decode_s: number[];
  images_per_s: number[];
  median_images_per_s: number;
}

export interface SamplingBenchResult {
  side: 'actvar';
  model: string;
  batch: number;
  threads: number;
  settings: { cfg: number; topK: number; topP: number; tokenRates: number[]; expertRate: number };
  dense?: SamplingModeResult;
  actvar?: SamplingModeResult;
  /** With both modes: 1 − ActVAR/dense of the transformer GFLOPs, and per repeat of the transformer wall and CPU seconds. */
  flops_saving?: number | null;
  time_saving?: number[];
  cpu_saving?: number[];
  /** Median time (and CPU) saving over the FLOPs saving (issue #15 goals 3 and 5). */
  median_ratio?: number | null;
  median_cpu_ratio?: number | null;
}

function loadModels(which: 'd16' | 'fashion', root: URL): { model: VAR; vqvae: VQVAE } {
  if (which === 'd16') {
    const model = randomVar(varPreset('d16'), 0);
    return { model, vqvae: VQVAE.random({ ...OFFICIAL_VQVAE, patchNums: model.config.patchNums }, new Rng(1)) };
  }
  const model = loadVar(fileURLToPath(new URL('models/var-fashion-mnist.safetensors', root)));
  const vqvae = loadVqvae(fileURLToPath(new URL('models/tokenizer-fashion-mnist.safetensors', root)));
  return { model, vqvae };
}

const median = (a: number[]): number => { const s = [...a].sort((x, y) => x - y); return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };
const r4 = (x: number): number => Math.round(x * 1e4) / 1e4;

/** The repository root (dist/bench/ → ../../). */
const ROOT = new URL('../../', import.meta.url);

export function benchSampling(opts: SamplingBenchOptions = {}): SamplingBenchResult {
  const log = opts.log ?? ((s: string) => console.error(s));
  const which = opts.model ?? 'd16', B = opts.batch ?? 1, repeats = opts.repeats ?? 1;
  const modes = opts.modes ?? ['dense', 'actvar'];
  const fashion = which === 'fashion';
  const cfg = opts.cfg ?? 1.5, topK = opts.topK ?? (fashion ? 0 : 900), topP = opts.topP ?? (fashion ? 0 : 0.96);
  const tokenRates = opts.tokenRates ?? [0.75, 0.75], expertRate = opts.expertRate ?? 0.75;
  announceBackend();
  const { model, vqvae } = loadModels(which, ROOT);
  const nc = model.config.numClasses;
  const labels = Array.from({ length: B }, (_, i) => (7 * i) % nc);
  let act: ActVAR | null = null;
  if (modes.includes('actvar')) {
    if (fashion) {
      act = ActVAR.wrap(model, { tokenRates, expertRate });
      const t0 = performance.now();
      act.calibrate({ vqvae, labels: [0, 2, 5, 7], cfg, topK, topP, rng: new Rng(0x5eed) });
      log(`ActVAR calibrated on 4 dense generations in ${((performance.now() - t0) / 1e3).toFixed(2)} s`);
    } else {
      act = ActVAR.wrap(model, { tokenRates, expertRate }, { init: 'zeros', allowUntrained: true }); // random gates below: timing only
      const rng = new Rng(1), std = 1 / Math.sqrt(model.C);
      for (const b of act.blocks) for (const t of [b.router.weight, b.selector.weight]) for (let i = 0; i < t.size; i++) t.f32[i] = rng.normal() * std;
    }
  }
  const gen = (lab: number[], sparse: boolean) => model.autoregressiveInfer({
    labels: lab, vqvae, cfg, topK, topP, rng: lab.map((_, i) => new Rng(1000 + i)), decode: false,
    ...(sparse && act ? act.hooks : {}),
  });
  const gflops: Record<string, number | null> = { dense: null, actvar: null };
  for (const m of opts.warmup === false ? [] : modes) {
    const w0 = performance.now();
    const { result: r, flops } = countFlops(() => gen(labels.slice(0, 1), m === 'actvar'));
    gflops[m] = flops.total / 1e9;
    if (opts.decode !== false) vqvae.fhatToImg(r.fHat);
    log(`warm-up ${m} (batch 1): ${((performance.now() - w0) / 1e3).toFixed(2)} s`);
  }
  const acc: Record<string, { t: number[]; d: number[]; c: number[] }> = {};
  for (const m of modes) acc[m] = { t: [], d: [], c: [] };
  for (let rep = 0; rep < repeats; rep++) {
    const order = rep % 2 === 0 ? modes : [...modes].reverse();
    let denseDecode: number | null = null;
    const pending: string[] = [];
    for (const m of order) {
      const c0 = process.cpuUsage(), t0 = performance.now();
      const r = gen(labels, m === 'actvar');
      const t1 = performance.now(), cu = process.cpuUsage(c0);
      acc[m].t.push((t1 - t0) / 1e3);
      acc[m].c.push((cu.user + cu.system) / 1e6);
      if (m === 'dense' && opts.decode !== false) {
        const img = vqvae.fhatToImg(r.fHat);
        if (img.shape[0] !== B) throw new Error('decode returned the wrong batch');
        denseDecode = (performance.now() - t1) / 1e3;
        acc[m].d.push(denseDecode);
      } else if (m === 'actvar' && opts.decode !== false) {
        if (denseDecode !== null) acc[m].d.push(denseDecode); else pending.push(m);
      }
      if (opts.decode === false) acc[m].d.push(0);
      log(`repeat ${rep + 1}/${repeats} ${m}: transformer ${((t1 - t0) / 1e3).toFixed(2)} s${m === 'dense' && denseDecode !== null ? `, decode ${denseDecode.toFixed(2)} s` : ''}`);
    }
    if (pending.length && opts.decode !== false) {
      if (denseDecode === null) { // ActVAR only: decode its own f̂
        const r = gen(labels, true), t1 = performance.now();
        vqvae.fhatToImg(r.fHat);
        denseDecode = (performance.now() - t1) / 1e3;
      }
      for (const m of pending) acc[m].d.push(denseDecode);
    }
  }
  const res: SamplingBenchResult = {
    side: 'actvar', model: which, batch: B, threads: backend().threads,
    settings: { cfg, topK, topP, tokenRates, expertRate },
  };
  for (const m of modes) {
    const { t, d, c } = acc[m];
    const ips = t.map((x, i) => B / (x + d[i]));
    res[m] = {
      gflops_per_image: gflops[m] === null ? null : r4(gflops[m]!), transformer_s: t.map(r4), transformer_cpu_s: c.map(r4),
      decode_s: d.map(r4), images_per_s: ips.map(r4), median_images_per_s: r4(median(ips)),
    };
  }
  if (acc.dense && acc.actvar) {
    const fs = gflops.dense && gflops.actvar ? 1 - gflops.actvar / gflops.dense : null;
    const ts = acc.dense.t.map((x, i) => 1 - acc.actvar.t[i] / x), cs = acc.dense.c.map((x, i) => 1 - acc.actvar.c[i] / x);
    Object.assign(res, {
      flops_saving: fs === null ? null : r4(fs), time_saving: ts.map(r4), cpu_saving: cs.map(r4),
      median_ratio: fs ? r4(median(ts) / fs) : null, median_cpu_ratio: fs ? r4(median(cs) / fs) : null,
    });
  }
  return res;
}

/** Greedy (top-k 1) CFG generation of the shipped model; raw logits per scale for bench/torch/var.py parity. */
function exportParity(path: string, B: number): void {
  const { model, vqvae } = loadModels('fashion', ROOT);
  const labels = Array.from({ length: B }, (_, i) => (7 * i) % model.config.numClasses);
  const t = new Map<string, Tensor>();
  const cfg = 1.5;
  model.autoregressiveInfer({
    labels, vqvae, cfg, topK: 1, topP: 0, rng: new Rng(0), decode: false,
    trace: (s) => { t.set(`logits.${s.si}`, new Tensor(s.rawLogits.f32.slice(), s.rawLogits.shape)); t.set(`idx.${s.si}`, s.idx); },
  });
  t.set('labels', new Tensor(Int32Array.from(labels), [B]));
  t.set('cfg', new Tensor(Float32Array.of(cfg), [1]));
  writeSafetensors(path, t);
  console.error(`wrote ${path}: raw logits of ${model.numScales} scales, batch ${B}`);
}

function argValue(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const v = args[i + 1];
  if (v === undefined || v.startsWith('--')) { console.error(`sampling: ${name} needs a value`); process.exit(2); }
  return v;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2);
  const num = (name: string): number | undefined => {
    const v = argValue(args, name);
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n)) { console.error(`sampling: ${name} must be a number, got '${v}'`); process.exit(2); }
    return n;
  };
  const exp = argValue(args, '--export-parity');
  if (exp) {
    exportParity(exp, num('--batch') ?? 2);
  } else {
    const model = argValue(args, '--model') ?? 'd16';
    if (model !== 'd16' && model !== 'fashion') { console.error(`sampling: --model must be d16 or fashion, got '${model}'`); process.exit(2); }
    const modes = (argValue(args, '--modes') ?? 'dense,actvar').split(',');
    if (!modes.every((m) => m === 'dense' || m === 'actvar')) { console.error(`sampling: --modes must list dense and/or actvar, got '${modes.join(',')}'`); process.exit(2); }
    const tr = argValue(args, '--token-rates')?.split(',').map(Number);
    const r = benchSampling({
      model, batch: num('--batch'), repeats: num('--repeats'), modes: modes as ('dense' | 'actvar')[],
      cfg: num('--cfg'), topK: num('--top-k'), topP: num('--top-p'), decode: !args.includes('--no-decode'),
      tokenRates: tr ? [tr[0], tr[1]] : undefined, expertRate: num('--expert-rate'), warmup: !args.includes('--no-warmup'),
    });
    if (args.includes('--json')) console.log(JSON.stringify(r));
    else {
      for (const m of ['dense', 'actvar'] as const) {
        const x = r[m];
        if (x) console.log(`${r.model} batch ${r.batch} ${m}: ${x.median_images_per_s} images/s (transformer ${x.transformer_s.join(' / ')} s, CPU ${x.transformer_cpu_s.join(' / ')} s, decode ${x.decode_s.join(' / ')} s; ${x.gflops_per_image} GFLOPs/image)`);
      }
      if (r.time_saving) console.log(`time saving ${r.time_saving.join(' / ')}, CPU saving ${r.cpu_saving!.join(' / ')}, FLOPs saving ${r.flops_saving}: median ratio ${r.median_ratio} (CPU ${r.median_cpu_ratio})`);
    }
  }
}
