// Experiment (docs/BENCHMARKS.md, issue #4): one activated 16×16 block's expert FFN at d16 widths (384 routed
// tokens, 12 of 16 experts each, random weights, 16 weight sets so that weights come from memory), the native
// grouped FFN (experts in parallel on the thread pool) against the TypeScript expert loop (its GEMMs split by
// the pool). Best of 4 passes, alternating, twice. Run after `npm run build`: node bench/experiments/grouped-ffn.mjs
import { Tensor, Rng, noGrad } from '../../dist/src/tensor/index.js';
import { backend, useNodeBackend } from '../../dist/src/backend/node.js';
import { ExpertFFN } from '../../dist/src/actvar/experts.js';

useNodeBackend(); // the backend from the environment (ACTVAR_BACKEND, …), as the CLI does

const be = backend(), nat = be.native;
if (!nat) throw new Error('needs the native kernels (npm run build with a C compiler)');
const rng = new Rng(3);
const [n, C, H, N, K] = [384, 1024, 4096, 16, 12];
const randn = (k, s = 0.05) => Float32Array.from({ length: k }, () => rng.normal() * s);
const ffns = Array.from({ length: 16 }, () => new ExpertFFN({
  fc1Weight: new Tensor(randn(H * C), [H, C]), fc1Bias: new Tensor(randn(H), [H]),
  fc2Weight: new Tensor(randn(C * H), [C, H]), fc2Bias: new Tensor(randn(C), [C]),
}, N));
const x = new Tensor(randn(n * C, 1), [n, C]);
const route = new Int32Array(n * K);
for (let t = 0; t < n; t++) {
  const order = Array.from({ length: N }, (_, e) => e).sort(() => rng.uniform() - 0.5);
  for (let k = 0; k < K; k++) route[t * K + k] = order[k];
}
const flops = 4 * n * K * (H / N) * C;
for (const mode of ['native', 'loop', 'native', 'loop']) {
  be.native = mode === 'native' ? nat : { ...nat, groupedFFN: () => false };
  let best = Infinity;
  for (let rep = 0; rep < 4; rep++) {
    const t0 = performance.now();
    for (const f of ffns) noGrad(() => f.forward(x, route, K));
    best = Math.min(best, (performance.now() - t0) / ffns.length);
  }
  console.log(`${mode.padEnd(6)} ${best.toFixed(2)} ms per block, ${(flops / best / 1e6).toFixed(0)} GFLOP/s`);
}
be.native = nat;
