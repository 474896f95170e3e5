// Experiment (issue #14): in the full reproduction the training-free ActVAR (75,75;75) took more seconds per image
// than dense at batch 50, the distilled one about the same, at equal FLOPs. Same process, alternating:
// dense / training-free (calibrated as reproduce does) / the shipped distilled model; wall and CPU per generation
// (sampling + decode, batch B), and the mean number of tokens each expert receives at the activated scales.
//   node bench/experiments/tf-vs-distilled-time.mjs [batch=50] [passes=3]
import { Rng } from '../../dist/src/tensor/index.js';
import { loadActVar } from '../../dist/src/actvar/file.js';
import { shippedModels, calibratedActVar, modelsDir } from './shipped-models.mjs';

const B = Number(process.argv[2] ?? 50), passes = Number(process.argv[3] ?? 3);
const { model, vqvae } = shippedModels();
const tf = calibratedActVar(model, vqvae, [0, 5]);
const dist = loadActVar(modelsDir + 'actvar-fashion-mnist.safetensors');
const labels = Array.from({ length: B }, (_, i) => i % 10);
const modes = { dense: [model, {}], training_free: [model, tf.hooks], distilled: [dist.model, dist.hooks] };
const gen = ([m, hooks]) => { const r = m.autoregressiveInfer({ labels, vqvae, cfg: 1.5, topK: 0, topP: 0, rng: labels.map((_, i) => new Rng(i)), decode: false, ...hooks }); vqvae.fhatToImg(r.fHat); };
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };
for (const k in modes) gen(modes[k]);
const rows = Object.fromEntries(Object.keys(modes).map((k) => [k, []]));
for (let p = 0; p < passes; p++) for (const k in modes) { const c0 = cpu(), w0 = performance.now(); gen(modes[k]); rows[k].push([(performance.now() - w0) / 1e3, cpu() - c0]); }
// expert load at the activated scales: tokens per expert, as max / mean and coefficient of variation, per block call
for (const [k, a] of [['training_free', tf], ['distilled', dist]]) {
  const stats = [];
  a.onActivation = (rec) => {
    const n = new Array(a.config.experts).fill(0);
    for (const e of rec.route) n[e]++;
    const mean = rec.route.length / n.length, sd = Math.sqrt(n.reduce((s, x) => s + (x - mean) ** 2, 0) / n.length);
    stats.push([Math.max(...n) / mean, sd / mean]);
  };
  gen(modes[k]);
  a.onActivation = null;
  const avg = (i) => (stats.reduce((s, x) => s + x[i], 0) / stats.length).toFixed(2);
  console.log(k.padEnd(14), 'expert load over', stats.length, 'block calls: max/mean', avg(0), ' cv', avg(1));
}
const med = (xs) => { const s = [...xs].sort((x, y) => x - y); return s[(s.length - 1) >> 1]; };
for (const k in rows) console.log(k.padEnd(14), 'wall', med(rows[k].map((r) => r[0])).toFixed(3), 's', rows[k].map((r) => r[0].toFixed(3)).join(' '), ' cpu', med(rows[k].map((r) => r[1])).toFixed(3));
