#!/usr/bin/env node
/**
 * VQVAE decode, actvar against PyTorch on the same machine in one run (issue 15, goal 1): for every thread
 * count and batch, `rounds` rounds, each running actvar (`node dist/bench/vqvae-decode.js REPEATS --batch B
 * --json`) and then PyTorch (`/usr/bin/python3 bench/torch/vqvae.py time --batch B --repeats REPEATS`), each
 * in a fresh process with OPENBLAS_NUM_THREADS = OMP_NUM_THREADS = ACTVAR_THREADS = T (and
 * torch.set_num_threads(T)). Both sides decode random latents [B, 32, 16, 16] → [B, 3, 256, 256] with seeded
 * random weights of the official vae_ch160v4096z32 shape, after one warm-up decode. Every timed decode counts;
 * prints per side the median, min and max seconds, and the ratio actvar / PyTorch of the medians (and of the mins).
 *
 *   npm run build && node bench/decode-vs-torch.mjs [--rounds 3] [--threads 1,2] [--batch 1,4] [--repeats 2] [--base DIR]
 *
 * --base DIR: a third side, `before`, run from another built checkout DIR (e.g. the commit before a change) in
 * the same rounds: actvar, before, PyTorch.
 *
 * Runs ~1 min per round at batch 1 and 2 threads; the box is noisy, so the two sides alternate.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const opt = (name, def) => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1] : def; };
const list = (s) => s.split(',').map(Number);
const rounds = Number(opt('--rounds', '3')), repeats = Number(opt('--repeats', '2'));
const threadCounts = list(opt('--threads', '1,2')), batches = list(opt('--batch', '1,4'));
const python = process.env.PYTHON ?? '/usr/bin/python3';
const baseDir = opt('--base', null);
const sides = baseDir ? ['actvar', 'before', 'torch'] : ['actvar', 'torch'];
for (const v of [rounds, repeats, ...threadCounts, ...batches]) {
  if (!Number.isInteger(v) || v < 1) {
    console.error('usage: node bench/decode-vs-torch.mjs [--rounds R] [--threads 1,2] [--batch 1,4] [--repeats N] (positive integers)');
    process.exit(2);
  }
}

function runSide(side, T, B) {
  const env = { ...process.env, OPENBLAS_NUM_THREADS: String(T), OMP_NUM_THREADS: String(T), MKL_NUM_THREADS: String(T), ACTVAR_THREADS: String(T) };
  const [cmd, args] = side !== 'torch'
    ? [process.execPath, [path.join(side === 'before' ? path.resolve(baseDir) : root, 'dist/bench/vqvae-decode.js'), String(repeats), '--batch', String(B), '--json']]
    : [python, [path.join(root, 'bench/torch/vqvae.py'), 'time', '--batch', String(B), '--repeats', String(repeats), '--threads', String(T)]];
  const r = spawnSync(cmd, args, { env, encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`${side} (T=${T}, B=${B}) exited with ${r.status}: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
  const line = r.stdout.trim().split('\n').pop();
  return JSON.parse(line);
}

const stats = (xs) => {
  const s = [...xs].sort((a, b) => a - b), m = s.length;
  return { median: m % 2 ? s[(m - 1) / 2] : (s[m / 2 - 1] + s[m / 2]) / 2, min: s[0], max: s[m - 1], n: m };
};
const f = (x) => x.toFixed(2);

const rows = [];
const started = new Date().toISOString();
for (const T of threadCounts) {
  for (const B of batches) {
    const secs = { actvar: [], before: [], torch: [] }, cpu = { actvar: [], before: [], torch: [] };
    for (let r = 0; r < rounds; r++) {
      for (const side of sides) {
        const res = runSide(side, T, B);
        secs[side].push(...res.seconds);
        cpu[side].push(...(res.cpuSeconds ?? []));
        console.log(`T=${T} B=${B} round ${r + 1} ${side.padEnd(6)} ${res.seconds.map(f).join(' ')}${res.cpuSeconds ? ` s (CPU ${res.cpuSeconds.map(f).join(" ")} s)` : " s"}${res.phases ? `  (${res.phases})` : ''}`);
      }
    }
    const a = stats(secs.actvar), t = stats(secs.torch), b = baseDir ? stats(secs.before) : null;
    const ac = stats(cpu.actvar), tc = stats(cpu.torch);
    rows.push({ T, B, a, t, b, cpuRatio: ac.median / tc.median });
    console.log(`T=${T} B=${B}: CPU seconds per decode, medians: actvar ${f(ac.median)}, torch ${f(tc.median)}, ratio ${(ac.median / tc.median).toFixed(2)}`);
    console.log(`T=${T} B=${B}: actvar median ${f(a.median)} s [${f(a.min)}–${f(a.max)}], torch median ${f(t.median)} s [${f(t.min)}–${f(t.max)}], ratio ${(a.median / t.median).toFixed(2)}`
      + (b ? `; before median ${f(b.median)} s [${f(b.min)}–${f(b.max)}], ratio ${(b.median / t.median).toFixed(2)}` : ''));
  }
}
console.log(`\n${started} → ${new Date().toISOString()}, ${rounds} rounds × ${repeats} timed decodes per side, alternating`);
const cell = (x) => `${f(x.median)} [${f(x.min)}–${f(x.max)}]`, ratio = (x, t) => `**${(x.median / t.median).toFixed(2)}** (${(x.min / t.min).toFixed(2)})`;
console.log(`| threads | batch | actvar median s [min–max] | PyTorch median s [min–max] | ratio of medians (of mins) | CPU-time ratio |${baseDir ? ' before median s [min–max] | before ratio |' : ''}`);
console.log(`|---|---|---|---|---|---|${baseDir ? '---|---|' : ''}`);
for (const { T, B, a, t, b, cpuRatio } of rows) {
  console.log(`| ${T} | ${B} | ${cell(a)} | ${cell(t)} | ${ratio(a, t)} | ${cpuRatio.toFixed(2)} |${b ? ` ${cell(b)} | ${ratio(b, t)} |` : ''}`);
}
