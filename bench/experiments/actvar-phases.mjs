// Experiment (docs/BENCHMARKS.md, issue #4): seconds per phase of the activated scales, dense vs ActVAR,
// as the minimum over passes (less exposed to this VM's noise than one `--profile` run), and the
// activated scales' total per pass (the sum of the phase minima understates a many-phase total). Same set-up as
// `actvar bench actvar` (random d16, random router/selector, random VQ inputs, batch 1, CFG); one warm-up
// pass, then `passes` alternating dense / ActVAR passes. Run after `npm run build`:
//   node bench/experiments/actvar-phases.mjs [passes] [batch] [--cpu] [--rates a,b,g]
// `batch` images (rows = 2·batch), default 1; `--cpu` times with the process CPU clock instead of the wall clock
// (on a shared box: run with ACTVAR_THREADS=1, where CPU time is the work done); `--rates` the token rates and
// the expert rate (default 0.75,0.75,0.75).
import { Tensor, Rng, countFlops, FlopsCounter } from '../../dist/src/tensor/index.js';
import { varPreset } from '../../dist/src/var/config.js';
import { randomVar } from '../../dist/src/var/init.js';
import { attnBranch, ffnBranch } from '../../dist/src/var/basic-var.js';
import { ActVAR, runTransformer } from '../../dist/src/actvar/actvar.js';
import { tokenRateAt } from '../../dist/src/actvar/config.js';
import { useNodeBackend } from '../../dist/src/backend/node.js';

useNodeBackend(); // OpenBLAS and the native kernels, as the CLI and the `actvar` entry choose them

const argv = process.argv.slice(2);
const pos = argv.filter((x, i) => !x.startsWith('--') && !(i > 0 && argv[i - 1] === '--rates'));
const passes = Number(pos[0] ?? 5), B = Number(pos[1] ?? 1);
const rates = (argv.includes('--rates') ? argv[argv.indexOf('--rates') + 1] : '0.75,0.75,0.75').split(',').map(Number);
if (argv.includes('--cpu')) {
  const cpuNow = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e3; };
  performance.now = cpuNow; // every lap below and in ActVAR's own timings reads the CPU clock
}
const model = randomVar(varPreset('d16'), 0);
const a = ActVAR.wrap(model, { tokenRates: [rates[0], rates[1]], expertRate: rates[2] }, { init: 'zeros', allowUntrained: true });
const rng = new Rng(1);
for (const b of a.blocks) for (const t of [b.router.weight, b.selector.weight]) for (let i = 0; i < t.size; i++) t.f32[i] = rng.normal() / Math.sqrt(model.C);
const inputs = model.config.patchNums.map((pn) => {
  const d = new Float32Array(B * pn * pn * model.config.Cvae);
  for (let i = 0; i < d.length; i++) d[i] = rng.normal() * 0.5;
  return new Tensor(d, [B, pn * pn, model.config.Cvae]);
});
const labels = Array.from({ length: B }, (_, i) => (3 + 7 * i) % 1000);
const best = {};
const fl = { dense: new FlopsCounter(), actvar: new FlopsCounter() }; // FLOPs of the activated scales, counted in the warm-up pass
const totals = []; // per pass: [dense, ActVAR] seconds of the activated scales
const keep = (k, s) => { best[k] = Math.min(best[k] ?? Infinity, s); };
for (let pass = 0; pass <= passes; pass++) {
  const dense = {};
  const timedDense = {
    blockExecutor: (ctx) => {
      if (ctx.mode !== 'infer' || !ctx.cache || tokenRateAt(a.config, ctx.scaleIndex) === null) return undefined;
      const t0 = performance.now();
      const fd = pass === 0 ? fl.dense : new FlopsCounter(); // counted in the warm-up pass only
      const x1 = countFlops(() => attnBranch(ctx.block, ctx.x, ctx.ada, { kind: 'cache', cache: ctx.cache }), fd).result;
      const t1 = performance.now();
      const out = countFlops(() => ffnBranch(ctx.block, x1, ctx.ada), fd).result;
      dense.attention = (dense.attention ?? 0) + (t1 - t0) / 1e3;
      dense.ffn = (dense.ffn ?? 0) + (performance.now() - t1) / 1e3;
      return out;
    },
  };
  runTransformer(model, labels, inputs, timedDense);
  a.timings = {};
  runTransformer(model, labels, inputs, pass === 0 ? {
    blockExecutor: (ctx) => { const r = countFlops(() => a.blockExecutor(ctx), fl.actvar).result; return r; },
  } : a.hooks);
  if (pass === 0) continue; // warm-up
  for (const [k, s] of Object.entries(dense)) keep(`dense ${k}`, s);
  for (const [k, s] of Object.entries(a.timings)) keep(`ActVAR ${k}`, s);
  const total = (o) => Object.values(o).reduce((x, y) => x + y, 0);
  const d = total(dense), s = total(a.timings);
  totals.push([d, s]);
  console.log(`pass ${pass}: activated scales dense ${d.toFixed(3)} s, ActVAR ${s.toFixed(3)} s (${(s / d).toFixed(3)})`);
}
a.timings = null;
const sum = (prefix) => Object.entries(best).filter(([k]) => k.startsWith(prefix)).reduce((s, [, v]) => s + v, 0);
for (const [k, s] of Object.entries(best)) console.log(`${k.padEnd(20)} ${s.toFixed(3)} s`);
console.log(`sum of the phase minima: dense ${sum('dense').toFixed(3)} s, ActVAR ${sum('ActVAR').toFixed(3)} s, ratio ${(sum('ActVAR') / sum('dense')).toFixed(3)} (each phase's minimum over ${passes} passes: a lower bound, lower for ActVAR's seven phases than for the dense two)`);
const minD = Math.min(...totals.map((t) => t[0])), minS = Math.min(...totals.map((t) => t[1]));
const ratios = totals.map((t) => t[1] / t[0]).sort((x, y) => x - y);
console.log(`activated scales, best pass of each: dense ${minD.toFixed(3)} s, ActVAR ${minS.toFixed(3)} s, ratio ${(minS / minD).toFixed(3)}; median of the per-pass ratios ${ratios[(ratios.length - 1) >> 1].toFixed(3)}`);
const flopsSaving = 1 - fl.actvar.total / fl.dense.total;
const savings = totals.map((t) => 1 - t[1] / t[0]).sort((x, y) => x - y);
const medSaving = savings.length % 2 ? savings[savings.length >> 1] : (savings[savings.length / 2 - 1] + savings[savings.length / 2]) / 2;
console.log(`batch ${B}, rates ${rates.join(',')}, ${argv.includes('--cpu') ? 'CPU' : 'wall'} clock: activated scales' FLOPs saving ${flopsSaving.toFixed(4)} (dense ${(fl.dense.total / 1e9).toFixed(1)} GF); time savings per pass ${savings.map((x) => x.toFixed(3)).join(' ')}; median ${medSaving.toFixed(4)} → ratio ${(medSaving / flopsSaving).toFixed(3)}`);
