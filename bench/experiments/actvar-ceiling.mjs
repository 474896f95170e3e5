// Experiment (docs/BENCHMARKS.md, docs/ACTVAR.md, issue #4): the analytic FLOPs behind the ceiling of
// time_saving / flops_saving. ActVAR changes only the activated scales; if their time fell exactly in
// proportion to their FLOPs, the ratio would be (their share of the dense time) × s_A / s, with s_A the
// FLOPs saving inside them and s the whole-image saving. The time share comes from
// `npx actvar bench actvar --preset d16 --profile`. Run after `npm run build`:
//   node bench/experiments/actvar-ceiling.mjs [preset] [alpha,beta] [gamma]
import { presetFlopsModel, analyticFlops } from '../../dist/src/actvar/flops.js';
import { resolveActVarConfig } from '../../dist/src/actvar/config.js';

const preset = process.argv[2] ?? 'd16';
const tokenRates = (process.argv[3] ?? '0.75,0.75').split(',').map(Number);
const expertRate = Number(process.argv[4] ?? 0.75);
const m = presetFlopsModel(preset);
const opts = { adalnPerStep: false }; // as the model runs: AdaLN once per generation
const SN = m.patchNums.length;
const gf = (v) => (v / 1e9).toFixed(1);
/** Transformer FLOPs of the first `n` scales, dense or with ActVAR on the given scales. */
const flopsOf = (n, scales) => {
  const mm = { ...m, patchNums: m.patchNums.slice(0, n) };
  if (!scales) return analyticFlops(mm, null, opts).total;
  const cfg = resolveActVarConfig({ scales, tokenRates: tokenRates.slice(0, scales.length), expertRate },
    { numScales: n, ffnHidden: m.ffnHidden, tokensPerScale: mm.patchNums.map((p) => p * p) });
  return analyticFlops(mm, cfg, opts).total;
};
const active = [SN - 2, SN - 1];
const dense = flopsOf(SN), early = flopsOf(SN - 2), sparse = flopsOf(SN, active);
console.log(`${preset} (${tokenRates.map((r) => r * 100).join(',')};${expertRate * 100}), CFG on, per image:`);
console.log(`  dense ${gf(dense)} GFLOPs, ActVAR ${gf(sparse)}; activated scales ${active.join(',')}: ${gf(dense - early)} GFLOPs = ${(100 * (dense - early) / dense).toFixed(1)} % of the dense`);
let prevD = early, prevA = early;
for (const [i, si] of active.entries()) {
  const d = flopsOf(si + 1), a = flopsOf(si + 1, active.slice(0, i + 1));
  console.log(`  scale ${si}: dense ${gf(d - prevD)}, ActVAR ${gf(a - prevA)} GFLOPs (ratio ${((a - prevA) / (d - prevD)).toFixed(2)})`);
  prevD = d; prevA = a;
}
const s = 1 - sparse / dense, sA = (dense - sparse) / (dense - early);
console.log(`  FLOPs saving: whole image s = ${(100 * s).toFixed(1)} %, inside the activated scales s_A = ${(100 * sA).toFixed(1)} %`);
console.log(`  ceiling of time_saving / flops_saving = ${(sA / s).toFixed(3)} × (activated scales' share of the dense time)`);
