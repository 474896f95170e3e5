// Experiment (issue #15 goal 5): does garbage collection explain part of ActVAR's time on the shipped Fashion-MNIST
// VAR? Alternating dense / ActVAR generations (the demo's sampling, no decode, ActVAR (75,75;75) calibrated as the
// demo does); per generation: CPU seconds, and the number and summed duration of the GC events V8 reports
// (PerformanceObserver 'gc'; minor = scavenges, major = mark-sweep-compact, incremental marking, weak callbacks).
//   ACTVAR_THREADS=1 OPENBLAS_NUM_THREADS=1 node bench/experiments/actvar-fashion-gc.mjs [batch=50] [passes=5]
import { PerformanceObserver, constants } from 'node:perf_hooks';
import { Rng } from '../../dist/src/tensor/index.js';
import { shippedModels, calibratedActVar } from './shipped-models.mjs';

const B = Number(process.argv[2] ?? 50), passes = Number(process.argv[3] ?? 5);
const { model, vqvae } = shippedModels();
const a = calibratedActVar(model, vqvae, [0, 2, 5, 7]);
let events = [];
new PerformanceObserver((list) => { events.push(...list.getEntries()); }).observe({ entryTypes: ['gc'] });
const labels = Array.from({ length: B }, (_, i) => (7 * i) % 10);
const gen = (hooks) => model.autoregressiveInfer({ labels, vqvae, cfg: 1.5, topK: 0, topP: 0, rng: labels.map((_, i) => new Rng(i)), decode: false, ...hooks });
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };
const tick = () => new Promise((r) => setImmediate(r)); // let the observer deliver the entries of the last run
const minor = constants.NODE_PERFORMANCE_GC_MINOR;
const rows = { dense: [], actvar: [] };
gen({}); gen({ blockExecutor: a.blockExecutor }); await tick(); // warm-up
for (let p = 0; p < passes; p++) {
  for (const mode of ['dense', 'actvar']) {
    events = [];
    const c0 = cpu();
    gen(mode === 'actvar' ? { blockExecutor: a.blockExecutor } : {});
    const c = cpu() - c0;
    await tick();
    const mn = events.filter((e) => (e.detail?.kind ?? e.kind) === minor), mj = events.filter((e) => (e.detail?.kind ?? e.kind) !== minor);
    const sum = (xs) => xs.reduce((s, e) => s + e.duration, 0) / 1e3;
    rows[mode].push({ cpu: c, minorN: mn.length, minorS: sum(mn), majorN: mj.length, majorS: sum(mj) });
  }
}
const med = (xs) => { const s = [...xs].sort((x, y) => x - y); return s[(s.length - 1) >> 1]; };
for (const mode of ['dense', 'actvar']) {
  const r = rows[mode];
  console.log(`${mode}: CPU s ${r.map((x) => x.cpu.toFixed(3)).join(' ')} (median ${med(r.map((x) => x.cpu)).toFixed(3)}); ` +
    `GC minor ${r.map((x) => `${x.minorN}/${(x.minorS * 1e3).toFixed(1)}ms`).join(' ')}; major ${r.map((x) => `${x.majorN}/${(x.majorS * 1e3).toFixed(1)}ms`).join(' ')}; ` +
    `median GC s ${med(r.map((x) => x.minorS + x.majorS)).toFixed(4)}`);
}
