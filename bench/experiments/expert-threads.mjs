// Experiment (docs/BENCHMARKS.md, issue #4): one d16 16×16 block's expert FFN (2 rows × 192 kept tokens,
// 12 of 16 experts each), as actvar runs it (ExpertFFN.forward, OpenBLAS on 2 threads), against the
// experts split over two threads (about half of the routed tokens each; single-threaded OpenBLAS on
// both, separate outputs summed at the end). Also the dense FFN of the same block (512 rows) for scale.
// Run after `npm run build`: node bench/experiments/expert-threads.mjs
import { Worker } from 'node:worker_threads';
import koffi from 'koffi';
import { ExpertFFN, groupByExpert, runExperts } from '../../dist/src/actvar/experts.js';
import { Tensor, Rng, noGrad, linear, gelu } from '../../dist/src/tensor/index.js';
import { backend, useNodeBackend } from '../../dist/src/backend/node.js';

useNodeBackend(); // the backend from the environment (ACTVAR_BACKEND, …), as the CLI does

const be = backend();
const rng = new Rng(0);
const C = 1024, H = 4096, N = 16, Kw = 12, de = H / N, nDense = 512, n = 384;
const rnd = (len, s) => Float32Array.from({ length: len }, () => rng.normal() * s);
const W1 = rnd(H * C, 0.02), B1 = rnd(H, 0.02), W2 = rnd(C * H, 0.02), B2 = rnd(C, 0.02), X = rnd(n * C, 1);
const route = new Int32Array(n * Kw);
for (let t = 0; t < n; t++) {
  const p = [...Array(N).keys()];
  for (let i = N - 1; i > 0; i--) { const j = rng.int(i + 1); [p[i], p[j]] = [p[j], p[i]]; }
  p.slice(0, Kw).sort((a, b) => a - b).forEach((e, k) => { route[t * Kw + k] = e; });
}
const w1 = new Tensor(W1, [H, C]), b1 = new Tensor(B1, [H]), w2 = new Tensor(W2, [C, H]), b2 = new Tensor(B2, [C]);
const ex = new ExpertFFN({ fc1Weight: w1, fc1Bias: b1, fc2Weight: w2, fc2Bias: b2 }, N);
const xs = new Tensor(X, [n, C]), xd = new Tensor(rnd(nDense * C, 1), [nDense, C]);

const worker = new Worker(new URL('./expert-threads-worker.mjs', import.meta.url));
const ctrl = new Int32Array(new SharedArrayBuffer(4));
const out = new Float32Array(n * C), outB = new Float32Array(new SharedArrayBuffer(4 * n * C));
const ws = [new Float32Array(n * C), new Float32Array(n * de), new Float32Array(n * C)];

function twoThreads() {
  const g = groupByExpert(route, n, Kw, N);
  let mid = 0; // about half of the routed tokens on each thread
  while (mid < N && g.offsets[mid + 1] <= g.offsets[N] / 2) mid++;
  const threads = be.threads;
  be.setThreads(1);
  Atomics.store(ctrl, 0, 0);
  worker.postMessage({
    n, C, de, H, N, e0: mid, e1: N, ctrl, ntok: g.tokens.length, out: outB,
    x: koffi.address(X), tokens: koffi.address(g.tokens), offsets: koffi.address(g.offsets),
    b1: koffi.address(B1), w1: koffi.address(W1), w2: koffi.address(W2),
  });
  for (let t = 0; t < n; t++) out.set(B2, t * C);
  runExperts({ X, W1, B1, W2, tokens: g.tokens, offsets: g.offsets, out, C, de, H }, 0, mid, ws, be);
  Atomics.wait(ctrl, 0, 0);
  for (let i = 0; i < out.length; i++) out[i] += outB[i];
  be.setThreads(threads);
}
const current = () => noGrad(() => ex.forward(xs, route, Kw));
const dense = () => noGrad(() => linear(gelu(linear(xd, w1, b1), true), w2, b2));

await new Promise((r) => setTimeout(r, 200)); // let the worker load
const ref = current().f32;
twoThreads();
let maxDiff = 0;
for (let i = 0; i < out.length; i++) maxDiff = Math.max(maxDiff, Math.abs(out[i] - ref[i]));
console.log(`two-thread experts vs ExpertFFN: max |diff| ${maxDiff.toExponential(1)}`);
const ms = (f, reps = 20) => { for (let i = 0; i < 3; i++) f(); const t0 = performance.now(); for (let i = 0; i < reps; i++) f(); return (performance.now() - t0) / reps; };
for (let r = 0; r < 3; r++) {
  console.log(`dense FFN (512 rows) ${ms(dense).toFixed(2)} ms | ExpertFFN (${be.threads} BLAS threads) ${ms(current).toFixed(2)} ms | experts on two threads ${ms(twoThreads).toFixed(2)} ms`);
}
await worker.terminate();
