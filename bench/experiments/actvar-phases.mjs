// Experiment (docs/BENCHMARKS.md, issue #4): seconds per phase of the activated scales, dense vs ActVAR,
// as the minimum over passes (less exposed to this VM's noise than one `--profile` run), and the
// activated scales' total per pass (the sum of the phase minima understates a many-phase total). Same set-up as
// `actvar bench actvar` (random d16, random router/selector, random VQ inputs, batch 1, CFG); one warm-up
// pass, then `passes` alternating dense / ActVAR passes. Run after `npm run build`:
//   node bench/experiments/actvar-phases.mjs [passes]
import { Tensor, Rng } from '../../dist/src/tensor/index.js';
import { varPreset } from '../../dist/src/var/config.js';
import { randomVar } from '../../dist/src/var/init.js';
import { attnBranch, ffnBranch } from '../../dist/src/var/basic-var.js';
import { ActVAR, runTransformer } from '../../dist/src/actvar/actvar.js';
import { tokenRateAt } from '../../dist/src/actvar/config.js';
import { useNodeBackend } from '../../dist/src/backend/node.js';

useNodeBackend(); // OpenBLAS and the native kernels, as the CLI and the `actvar` entry choose them

const passes = Number(process.argv[2] ?? 5);
const model = randomVar(varPreset('d16'), 0);
const a = ActVAR.wrap(model, { tokenRates: [0.75, 0.75], expertRate: 0.75 }, { init: 'zeros' });
const rng = new Rng(1);
for (const b of a.blocks) for (const t of [b.router.weight, b.selector.weight]) for (let i = 0; i < t.size; i++) t.f32[i] = rng.normal() / Math.sqrt(model.C);
const inputs = model.config.patchNums.map((pn) => {
  const d = new Float32Array(pn * pn * model.config.Cvae);
  for (let i = 0; i < d.length; i++) d[i] = rng.normal() * 0.5;
  return new Tensor(d, [1, pn * pn, model.config.Cvae]);
});
const best = {};
const totals = []; // per pass: [dense, ActVAR] seconds of the activated scales
const keep = (k, s) => { best[k] = Math.min(best[k] ?? Infinity, s); };
for (let pass = 0; pass <= passes; pass++) {
  const dense = {};
  const timedDense = {
    blockExecutor: (ctx) => {
      if (ctx.mode !== 'infer' || !ctx.cache || tokenRateAt(a.config, ctx.scaleIndex) === null) return undefined;
      const t0 = performance.now();
      const x1 = attnBranch(ctx.block, ctx.x, ctx.ada, { kind: 'cache', cache: ctx.cache });
      const t1 = performance.now();
      const out = ffnBranch(ctx.block, x1, ctx.ada);
      dense.attention = (dense.attention ?? 0) + (t1 - t0) / 1e3;
      dense.ffn = (dense.ffn ?? 0) + (performance.now() - t1) / 1e3;
      return out;
    },
  };
  runTransformer(model, [3], inputs, timedDense);
  a.timings = {};
  runTransformer(model, [3], inputs, a.hooks);
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
