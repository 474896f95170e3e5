/**
 * VQVAE decode at the official size: `fhatToImg` = clamp(decoder(post_quant_conv(f̂))) for one
 * 256×256 image, seeded random weights with the shape of `vae_ch160v4096z32.pth` (ch 160, ch_mult
 * 1,1,2,2,4, 2 res blocks, z 32, V 4096). var-reference §10: 393.7 GFLOPs per image; the official
 * PyTorch code took 5.5 s on 2 threads. Prints seconds per decode, GFLOP/s and peak RSS.
 *
 *   node dist/bench/vqvae-decode.js [repeats]        (or via bench/run.ts once registered)
 */
import { fileURLToPath } from 'node:url';
import { announceBackend, backend, useNodeBackend } from '../src/backend/node.js';
import { Tensor, Rng, noGrad, countFlops } from '../src/tensor/index.js';
import { VQVAE } from '../src/vqvae/vqvae.js';
import { OFFICIAL_VQVAE } from '../src/vqvae/config.js';
import { conv3x3Stats, setConv3x3Options } from '../src/vqvae/basic-vae.js';

useNodeBackend(); // the backend from the environment (ACTVAR_BACKEND, …), as the CLI does

export interface VqvaeDecodeResult { seconds: number[]; gflops: number; peakRssMB: number; weightMB: number; sgemmSeconds: number }

/** Wrap the backend's sgemm to time it (the rest of a decode is im2col/padding, GroupNorm, SiLU, adds). */
function timeSgemm(): { reset(): void; seconds(): number; restore(): void } {
  const be = backend();
  const orig = be.sgemm;
  let ms = 0;
  be.sgemm = function (this: typeof be, ...args: Parameters<typeof orig>) {
    const t = performance.now();
    orig.apply(this, args);
    ms += performance.now() - t;
  };
  return { reset: () => { ms = 0; }, seconds: () => ms / 1000, restore: () => { be.sgemm = orig; } };
}

export function benchVqvaeDecode(repeats = 2): VqvaeDecodeResult {
  announceBackend();
  // VQVAE_DECODE_FAST=0: the composed ops (im2col conv2d, groupNorm, silu, upsample) for comparison
  const prevOptions = setConv3x3Options({ enabled: process.env.VQVAE_DECODE_FAST !== '0' });
  if (process.env.VQVAE_DECODE_FAST === '0') console.log('fast 3×3 conv path disabled');
  try { return run(repeats); } finally { setConv3x3Options(prevOptions); }
}

function run(repeats: number): VqvaeDecodeResult {
  const rng = new Rng(0);
  const t0 = performance.now();
  const vae = VQVAE.random(OFFICIAL_VQVAE, rng);
  let params = 0;
  for (const t of vae.parameters()) params += t.size;
  console.log(`random VQVAE (${(params / 1e6).toFixed(2)} M params) built in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const L = vae.config.patchNums[vae.config.patchNums.length - 1];
  const f = new Float32Array(vae.Cvae * L * L);
  for (let i = 0; i < f.length; i++) f[i] = rng.normal();
  const fHat = new Tensor(f, [1, vae.Cvae, L, L]);

  // warm-up (JIT, BLAS thread pool, conv workspace), with the FLOPs count
  const w0 = performance.now();
  const { flops } = countFlops(() => noGrad(() => vae.fhatToImg(fHat)));
  const warm = (performance.now() - w0) / 1000;
  const gflops = flops.total / 1e9;
  console.log(`warm-up decode: ${warm.toFixed(2)} s, ${gflops.toFixed(1)} GFLOPs counted`);

  const seconds: number[] = [];
  const timer = timeSgemm();
  let sgemmSeconds = Infinity, phases = '';
  try {
    for (let r = 0; r < repeats; r++) {
      timer.reset();
      const st = { ...conv3x3Stats };
      const s0 = performance.now();
      const img = noGrad(() => vae.fhatToImg(fHat));
      const sec = (performance.now() - s0) / 1000;
      if (sec <= Math.min(...seconds)) {
        // phases of the best run: inside the 3×3 convs (their GEMMs included) and outside
        const d = (k: 'fillMs' | 'tapsMs' | 'gemmMs' | 'copyOutMs') => ((conv3x3Stats[k] - st[k]) / 1000).toFixed(2);
        sgemmSeconds = timer.seconds();
        phases = `3×3 convs: fill (GroupNorm+SiLU / upsample / pad) ${d('fillMs')} s, tap repack ${d('tapsMs')} s, GEMMs ${d('gemmMs')} s, copy-out ${d('copyOutMs')} s`;
      }
      seconds.push(sec);
      if (img.shape[2] !== vae.config.imgSize) throw new Error('unexpected output size');
    }
  } finally {
    timer.restore();
  }
  const peakRssMB = process.resourceUsage().maxRSS / 1024;
  const weightMB = (params * 4) / (1 << 20);
  const best = Math.min(...seconds);
  console.log(`fhatToImg 1×${vae.Cvae}×${L}×${L} → 1×3×${vae.config.imgSize}×${vae.config.imgSize} on ${backend().name}, ${backend().threads} thread(s):`);
  console.log(`  decode seconds: ${seconds.map((s) => s.toFixed(2)).join(', ')} (best ${best.toFixed(2)} s, ${(gflops / best).toFixed(1)} GFLOP/s)`);
  console.log(`  best run: sgemm ${sgemmSeconds.toFixed(2)} s (${(gflops / sgemmSeconds).toFixed(1)} GFLOP/s inside the GEMMs), everything else ${(best - sgemmSeconds).toFixed(2)} s`);
  console.log(`  ${phases}`);
  console.log(`  peak RSS ${peakRssMB.toFixed(0)} MB (fp32 weights of the whole VQVAE: ${weightMB.toFixed(0)} MB)`);
  return { seconds, gflops, peakRssMB, weightMB, sgemmSeconds };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  benchVqvaeDecode(process.argv[2] ? Number(process.argv[2]) : 2);
}
