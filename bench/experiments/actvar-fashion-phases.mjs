// Experiment (issue #15 goal 5): where ActVAR's time goes on the shipped Fashion-MNIST VAR, in CPU seconds (robust
// on a shared box: run with ACTVAR_THREADS=1 OPENBLAS_NUM_THREADS=1, where the process CPU time is the work done).
// The shipped model + tokenizer, ActVAR (75,75;75) calibrated on 4 dense generations (as the demo), demo sampling
// (CFG 1.5, no top-k/top-p); `passes` alternating dense / ActVAR generations of `batch` images (no decode). Prints
// per pass the CPU seconds of the whole transformer and of the activated scales, and the per-phase CPU seconds of
// the activated scales (the sparse block's phases, timed with a CPU clock; the dense block's attention and FFN
// branches), median over the passes. Run after `npm run build`:
//   ACTVAR_THREADS=1 OPENBLAS_NUM_THREADS=1 node bench/experiments/actvar-fashion-phases.mjs [batch] [passes]
import { Rng, countFlops } from '../../dist/src/tensor/index.js';
import { attnBranch, ffnBranch } from '../../dist/src/var/basic-var.js';
import { tokenRateAt } from '../../dist/src/actvar/config.js';
import { shippedModels, calibratedActVar } from './shipped-models.mjs';

const B = Number(process.argv[2] ?? 64), passes = Number(process.argv[3] ?? 5);
const { model, vqvae } = shippedModels();
const a = calibratedActVar(model, vqvae, [0, 2, 5, 7]);
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e3; }; // ms
const wallNow = performance.now.bind(performance);
const labels = Array.from({ length: B }, (_, i) => (7 * i) % 10);
const act = (ctx) => ctx.mode === 'infer' && ctx.cache && tokenRateAt(a.config, ctx.scaleIndex) !== null;
const gen = (hooks) => model.autoregressiveInfer({ labels, vqvae, cfg: 1.5, topK: 0, topP: 0, rng: labels.map((_, i) => new Rng(i)), decode: false, ...hooks });
const med = (xs) => { const s = [...xs].sort((x, y) => x - y); return s[(s.length - 1) >> 1]; };
const rec = { dense: [], actvar: [] };
const flops = {};
for (let pass = 0; pass <= passes; pass++) {
  for (const mode of pass % 2 ? ['dense', 'actvar'] : ['actvar', 'dense']) {
    const ph = {};
    let actScales = 0;
    const hooks = mode === 'dense' ? {
      blockExecutor: (ctx) => {
        if (!act(ctx)) return undefined;
        const t0 = cpu();
        const x1 = attnBranch(ctx.block, ctx.x, ctx.ada, { kind: 'cache', cache: ctx.cache });
        const t1 = cpu();
        const out = ffnBranch(ctx.block, x1, ctx.ada);
        const t2 = cpu();
        ph.attention = (ph.attention ?? 0) + (t1 - t0) / 1e3; ph.ffn = (ph.ffn ?? 0) + (t2 - t1) / 1e3;
        actScales += (t2 - t0) / 1e3;
        return out;
      },
    } : {
      blockExecutor: (ctx) => {
        if (!act(ctx)) return undefined;
        const t0 = cpu();
        const out = a.blockExecutor(ctx);
        actScales += (cpu() - t0) / 1e3;
        return out;
      },
    };
    if (mode === 'actvar') { a.timings = ph; performance.now = cpu; }
    const c0 = cpu(), w0 = wallNow();
    if (pass === 1) flops[mode] = countFlops(() => gen(hooks)).flops; else gen(hooks);
    const total = (cpu() - c0) / 1e3, wall = (wallNow() - w0) / 1e3;
    performance.now = wallNow; a.timings = null;
    if (pass === 0) continue;
    rec[mode].push({ total, wall, actScales, ...ph });
  }
  if (pass > 0) {
    const d = rec.dense.at(-1), s = rec.actvar.at(-1);
    console.log(`pass ${pass}: CPU s dense ${d.total.toFixed(3)} (activated scales ${d.actScales.toFixed(3)}), ActVAR ${s.total.toFixed(3)} (${s.actScales.toFixed(3)}); wall ${d.wall.toFixed(2)} / ${s.wall.toFixed(2)}`);
  }
}
for (const mode of ['dense', 'actvar']) {
  const keys = Object.keys(rec[mode][0]);
  console.log(`${mode}: ` + keys.map((k) => `${k} ${med(rec[mode].map((r) => r[k] ?? 0)).toFixed(3)}`).join(', '));
}
const fd = flops.dense.total, fs = flops.actvar.total;
const td = med(rec.dense.map((r) => r.total)), ts = med(rec.actvar.map((r) => r.total));
const ratios = rec.dense.map((d, i) => (1 - rec.actvar[i].total / d.total)).sort((x, y) => x - y);
console.log(`GFLOPs dense ${(fd / 1e9).toFixed(2)}, ActVAR ${(fs / 1e9).toFixed(2)}: saving ${(1 - fs / fd).toFixed(4)}`);
console.log(`CPU time saving (medians) ${(1 - ts / td).toFixed(4)}; per-pass savings ${ratios.map((r) => r.toFixed(3)).join(' ')}`);
console.log(`ratio time saving / FLOPs saving ${((1 - ts / td) / (1 - fs / fd)).toFixed(3)}`);
