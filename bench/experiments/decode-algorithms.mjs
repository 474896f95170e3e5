// Experiment (docs/BENCHMARKS.md "VQVAE decode vs PyTorch", issue 15): the whole official-size VQVAE decode
// (random weights, batch 1) with each algorithm of the native 3×3 conv — 0: the 9 shifted GEMMs, 2: Winograd
// F(2×2, 3×3) where sizes are even, 4: F(4×4, 3×3) where they are multiples of 4 (else F(2×2)) — alternating in
// one process after one warm-up decode. Prints wall and CPU seconds per decode (CPU time: what a loaded
// machine inflates least, at ACTVAR_THREADS=1). Run after `npm run build`:
//   ACTVAR_THREADS=1 node bench/experiments/decode-algorithms.mjs [settings=0,2,4] [rounds=2]
import { useNodeBackend, backend } from '../../dist/src/backend/node.js';
import { Tensor, Rng, noGrad } from '../../dist/src/tensor/index.js';
import { VQVAE } from '../../dist/src/vqvae/vqvae.js';
import { OFFICIAL_VQVAE } from '../../dist/src/vqvae/config.js';
import { setConv3x3Options } from '../../dist/src/vqvae/basic-vae.js';

useNodeBackend();
const settings = (process.argv[2] ?? '0,2,4').split(',').map(Number);
const rounds = Number(process.argv[3] ?? 2);
const rng = new Rng(0);
const vae = VQVAE.random(OFFICIAL_VQVAE, rng);
const f = new Float32Array(vae.Cvae * 16 * 16);
for (let i = 0; i < f.length; i++) f[i] = rng.normal();
const z = new Tensor(f, [1, vae.Cvae, 16, 16]);
noGrad(() => vae.fhatToImg(z));
const res = Object.fromEntries(settings.map((s) => [s, []]));
for (let r = 0; r < rounds; r++) {
  for (const w of settings) {
    setConv3x3Options({ winograd: w });
    const t0 = performance.now(), c0 = process.cpuUsage();
    noGrad(() => vae.fhatToImg(z));
    const cu = process.cpuUsage(c0);
    res[w].push(`${((performance.now() - t0) / 1000).toFixed(2)} s wall / ${((cu.user + cu.system) / 1e6).toFixed(2)} s CPU`);
  }
}
console.log(`${backend().name}, ${backend().threads} thread(s); per decode, by winograd setting:`);
for (const w of settings) console.log(`  ${w}: ${res[w].join(', ')}`);
