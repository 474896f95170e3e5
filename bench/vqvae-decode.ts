/**
 * VQVAE decode at the official size: `fhatToImg` = clamp(decoder(post_quant_conv(f̂))) for B
 * 256×256 images, seeded random weights with the shape of `vae_ch160v4096z32.pth` (ch 160, ch_mult
 * 1,1,2,2,4, 2 res blocks, z 32, V 4096). docs/VAR.md §10: 393.7 GFLOPs per image. Prints seconds per
 * decode, GFLOP/s, where the time went and peak RSS.
 *
 *   node dist/bench/vqvae-decode.js [repeats] [--batch B] [--json] [--export FILE]   (= bench/run.ts vqvae-decode)
 *
 * --json: one last line {"side":"actvar","batch":B,"threads":T,"seconds":[…],…} (bench/decode-vs-torch.sh reads it).
 * --export FILE: also write the decoder's weights, the latent `f_hat` and the output `img` of the first
 * timed decode to FILE (safetensors), for `python3 bench/torch/vqvae.py parity FILE`.
 */
import { fileURLToPath } from 'node:url';
import { writeSafetensors } from '../src/io/safetensors.js';
import { announceBackend, backend, useNodeBackend } from '../src/backend/node.js';
import { Tensor, Rng, noGrad, countFlops } from '../src/tensor/index.js';
import { VQVAE } from '../src/vqvae/vqvae.js';
import { OFFICIAL_VQVAE } from '../src/vqvae/config.js';
import { conv3x3Stats, setConv3x3Options } from '../src/vqvae/basic-vae.js';

useNodeBackend(); // the backend from the environment (ACTVAR_BACKEND, …), as the CLI does

export interface VqvaeDecodeResult { seconds: number[]; gflops: number; peakRssMB: number; weightMB: number; sgemmSeconds: number }

export interface VqvaeDecodeOptions { batch?: number; json?: boolean; exportPath?: string }

/** Wrap the backend's sgemm to time it (outside the native 3×3 convs: the attention and 1×1 convs; with the TypeScript conv path also its GEMMs). */
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

export function benchVqvaeDecode(repeats = 2, opts: VqvaeDecodeOptions = {}): VqvaeDecodeResult {
  if (!opts.json) announceBackend();
  // VQVAE_DECODE_FAST=0: the composed ops (im2col conv2d, groupNorm, silu, upsample) for comparison
  const prevOptions = setConv3x3Options({ enabled: process.env.VQVAE_DECODE_FAST !== '0' });
  if (process.env.VQVAE_DECODE_FAST === '0') console.log('fast 3×3 conv path disabled');
  try { return run(repeats, opts); } finally { setConv3x3Options(prevOptions); }
}

function run(repeats: number, opts: VqvaeDecodeOptions): VqvaeDecodeResult {
  const B = opts.batch ?? 1;
  const log = opts.json ? () => {} : console.log;
  const rng = new Rng(0);
  const t0 = performance.now();
  const vae = VQVAE.random(OFFICIAL_VQVAE, rng);
  let params = 0;
  for (const t of vae.parameters()) params += t.size;
  log(`random VQVAE (${(params / 1e6).toFixed(2)} M params) built in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const L = vae.config.patchNums[vae.config.patchNums.length - 1];
  const f = new Float32Array(B * vae.Cvae * L * L);
  for (let i = 0; i < f.length; i++) f[i] = rng.normal();
  const fHat = new Tensor(f, [B, vae.Cvae, L, L]);

  // warm-up (JIT, BLAS thread pool, conv workspace), with the FLOPs count
  const w0 = performance.now();
  const { flops } = countFlops(() => noGrad(() => vae.fhatToImg(fHat)));
  const warm = (performance.now() - w0) / 1000;
  const gflops = flops.total / 1e9;
  log(`warm-up decode: ${warm.toFixed(2)} s, ${gflops.toFixed(1)} GFLOPs counted`);

  const seconds: number[] = [], cpuSeconds: number[] = [];
  const timer = timeSgemm();
  let sgemmSeconds = Infinity, phases = '';
  try {
    for (let r = 0; r < repeats; r++) {
      timer.reset();
      const st = { ...conv3x3Stats };
      const s0 = performance.now(), c0 = process.cpuUsage();
      const img = noGrad(() => vae.fhatToImg(fHat));
      const sec = (performance.now() - s0) / 1000, cu = process.cpuUsage(c0);
      cpuSeconds.push((cu.user + cu.system) / 1e6);
      if (r === 0 && opts.exportPath) exportDecoder(vae, fHat, img, opts.exportPath);
      if (sec <= Math.min(...seconds)) {
        // phases of the best run: inside the 3×3 convs, the other GEMMs, the rest
        const d = (k: 'fillMs' | 'tapsMs' | 'gemmMs' | 'copyOutMs') => (conv3x3Stats[k] - st[k]) / 1000;
        const convGflop = (conv3x3Stats.flops - st.flops) / 1e9, native = conv3x3Stats.nativeCalls > st.nativeCalls;
        const convS = d('fillMs') + d('tapsMs') + d('gemmMs') + d('copyOutMs');
        // with the TypeScript conv path its GEMMs go through the timed be.sgemm too
        const other = native ? timer.seconds() : timer.seconds() - d('gemmMs');
        sgemmSeconds = (native ? d('gemmMs') : 0) + timer.seconds();
        phases = `3×3 convs (${conv3x3Stats.calls - st.calls} calls, ${native ? 'native' : 'TypeScript'}): ${convS.toFixed(2)} s = `
          + `fills (GroupNorm+SiLU / SiLU / upsample / pad) ${d('fillMs').toFixed(2)} s + weight repack ${d('tapsMs').toFixed(2)} s + `
          + `GEMMs ${d('gemmMs').toFixed(2)} s (${(convGflop / d('gemmMs')).toFixed(0)} GFLOP/s over ${convGflop.toFixed(1)} GFLOP) + `
          + `copy-out ${d('copyOutMs').toFixed(2)} s; other GEMMs (attention, 1×1 convs) ${other.toFixed(2)} s; `
          + `the rest (softmax, attention GroupNorm, adds, clamp) ${(sec - convS - other).toFixed(2)} s`;
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
  log(`fhatToImg ${B}×${vae.Cvae}×${L}×${L} → ${B}×3×${vae.config.imgSize}×${vae.config.imgSize} on ${backend().name}, ${backend().threads} thread(s):`);
  log(`  decode seconds: ${seconds.map((s) => s.toFixed(2)).join(', ')} (best ${best.toFixed(2)} s, ${(gflops / best).toFixed(1)} GFLOP/s)`);
  log(`  best run: GEMMs ${sgemmSeconds.toFixed(2)} s (${(gflops / sgemmSeconds).toFixed(1)} GFLOP/s inside them), everything else ${(best - sgemmSeconds).toFixed(2)} s`);
  log(`  ${phases}`);
  log(`  peak RSS ${peakRssMB.toFixed(0)} MB (fp32 weights of the whole VQVAE: ${weightMB.toFixed(0)} MB)`);
  if (opts.json) {
    const sorted = [...seconds].sort((a, b) => a - b);
    console.log(JSON.stringify({
      side: 'actvar', batch: B, threads: backend().threads, backend: backend().name, seconds, cpuSeconds,
      median: sorted[Math.floor((sorted.length - 1) / 2)] / 2 + sorted[Math.ceil((sorted.length - 1) / 2)] / 2,
      min: sorted[0], max: sorted[sorted.length - 1], gflops, sgemmSeconds, phases, peakRssMB,
    }));
  }
  return { seconds, gflops, peakRssMB, weightMB, sgemmSeconds };
}

/** The image path's weights (post_quant_conv.*, decoder.*), the latent and the decoded images, as safetensors. */
function exportDecoder(vae: VQVAE, fHat: Tensor, img: Tensor, path: string): void {
  const out = new Map<string, Tensor>([['f_hat', fHat], ['img', img]]);
  for (const [k, t] of vae.stateDict()) if (k.startsWith('post_quant_conv.') || k.startsWith('decoder.')) out.set(k, t);
  writeSafetensors(path, out);
  console.error(`exported ${out.size} tensors to ${path}`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const argv = process.argv.slice(2);
  const flag = (name: string): string | undefined => { const i = argv.indexOf(name); return i >= 0 ? argv.splice(i, 2)[1] : undefined; };
  const json = argv.includes('--json');
  if (json) argv.splice(argv.indexOf('--json'), 1);
  const batch = Number(flag('--batch') ?? 1), exportPath = flag('--export');
  const repeats = argv[0] ? Number(argv[0]) : 2;
  if (!Number.isInteger(batch) || batch < 1 || !Number.isInteger(repeats) || repeats < 1 || argv.length > 1) {
    console.error('usage: node dist/bench/vqvae-decode.js [repeats ≥ 1] [--batch B ≥ 1] [--json] [--export FILE]');
    process.exit(2);
  }
  benchVqvaeDecode(repeats, { batch, json, exportPath });
}
