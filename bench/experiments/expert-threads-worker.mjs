// Worker of expert-threads.mjs: runs experts [e0, e1) of one expert FFN with `runExperts` (the code
// ExpertFFN uses), single-threaded OpenBLAS, reading the main thread's buffers in place by address
// and writing its own shared output, then signals `ctrl`.
import { parentPort } from 'node:worker_threads';
import koffi from 'koffi';
import { runExperts } from '../../dist/src/actvar/experts.js';
import { OpenBlasBackend, useNodeBackend } from '../../dist/src/backend/node.js';

useNodeBackend(); // the backend from the environment (ACTVAR_BACKEND, …), as the CLI does

const lib = koffi.load('libopenblas.so.0');
const sgemm = lib.func('void cblas_sgemm(int order, int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc)');
const be = new OpenBlasBackend('libopenblas.so.0', 'openblas', sgemm, null, null, 1); // no thread control here
const views = new Map(); // the main thread's buffers by address (they stay put while referenced)
const view = (addr, count, Type) => {
  const key = `${addr}:${count}:${Type.name}`;
  if (!views.has(key)) views.set(key, new Type(koffi.view(addr, count * Type.BYTES_PER_ELEMENT)));
  return views.get(key);
};
let ws = [new Float32Array(0), new Float32Array(0), new Float32Array(0)];

parentPort.on('message', (m) => {
  const { n, C, de, H, N, e0, e1, ctrl } = m;
  if (ws[0].length < n * C) ws = [new Float32Array(n * C), new Float32Array(n * de), new Float32Array(n * C)];
  m.out.fill(0);
  runExperts({
    X: view(m.x, n * C, Float32Array), W1: view(m.w1, H * C, Float32Array), B1: view(m.b1, H, Float32Array),
    W2: view(m.w2, C * H, Float32Array), tokens: view(m.tokens, m.ntok, Int32Array), offsets: view(m.offsets, N + 1, Int32Array),
    out: m.out, C, de, H,
  }, e0, e1, ws, be);
  Atomics.store(ctrl, 0, 1);
  Atomics.notify(ctrl, 0);
});
