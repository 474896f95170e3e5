// Experiment (native/grouped_ffn.c; a known limit, see the report of the nativefix branch): the native grouped
// expert FFN against the TypeScript expert loop, bit for bit, on 1 and 2 threads, for expert widths dₑ = H/N on
// both sides of OpenBLAS's GEMM_Q (320 with the Haswell kernel). The loop accumulates fc2 into the running output
// (beta = 1), the native kernel computes fc2 with beta = 0 and adds in expert order: the same sums as long as
// OpenBLAS sums all of dₑ in one pass, i.e. dₑ ≤ GEMM_Q. Run after `npm run build`:
// node bench/experiments/grouped-ffn-bits.mjs
import * as T from '../../dist/src/tensor/index.js';
import { Rng } from '../../dist/src/tensor/rng.js';
import { backend } from '../../dist/src/backend/index.js';
import { ExpertFFN } from '../../dist/src/actvar/experts.js';
import { useNodeBackend } from '../../dist/src/backend/node.js';

useNodeBackend(); // OpenBLAS and the native kernels, as the CLI and the `actvar` entry choose them

const be = backend(), rng = new Rng(5);
if (!be.native) throw new Error('needs the native kernels (npm run build with a C compiler)');
const randn = (n, s = 1) => Float32Array.from({ length: n }, () => rng.normal() * s);
for (const [n, C, H, N, K] of [[400, 256, 1024, 16, 8], [300, 256, 2560, 8, 2], [300, 256, 2688, 8, 2], [200, 128, 4096, 8, 2]]) {
  const ffn = new ExpertFFN({
    fc1Weight: new T.Tensor(randn(H * C, 0.1), [H, C]), fc1Bias: new T.Tensor(randn(H, 0.1), [H]),
    fc2Weight: new T.Tensor(randn(C * H, 0.1), [C, H]), fc2Bias: new T.Tensor(randn(C, 0.1), [C]),
  }, N);
  const x = new T.Tensor(randn(n * C), [n, C]);
  const route = new Int32Array(n * K);
  for (let t = 0; t < n; t++) {
    const order = Array.from({ length: N }, (_, e) => e).sort(() => rng.uniform() - 0.5);
    for (let k = 0; k < K; k++) route[t * K + k] = order[k];
  }
  const run = () => T.noGrad(() => ffn.forward(x, route, K)).f32;
  be.setThreads(1); const one = run();
  be.setThreads(2); const two = run();
  const prev = be.native;
  be.native = { ...prev, groupedFFN: () => false };
  const loop = run();
  be.native = prev;
  const differ = (a) => a.reduce((d, v, i) => d + (Object.is(v, loop[i]) ? 0 : 1), 0);
  console.log(`dₑ ${H / N}: native vs loop, ${differ(one)} (1 thread) and ${differ(two)} (2 threads) of ${loop.length} differ`);
}
