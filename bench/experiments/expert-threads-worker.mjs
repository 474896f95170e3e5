// Worker of expert-threads.mjs: runs experts [e0, e1) of one expert FFN on raw addresses of the main
// thread's buffers (single-threaded OpenBLAS), into its own output buffer, then signals `ctrl`.
import { parentPort } from 'node:worker_threads';
import koffi from 'koffi';
import { gelu } from '../../dist/src/tensor/ops/gelu.js';
import { Tensor } from '../../dist/src/tensor/index.js';
import { gatherRows, scatterRows } from './expert-rows.mjs';

const lib = koffi.load('libopenblas.so.0');
const sgemm = lib.func('void cblas_sgemm(int order, int transA, int transB, int M, int N, int K, float alpha, float *A, int lda, float *B, int ldb, float beta, float *C, int ldc)');
const RowMajor = 101, NoTrans = 111, Trans = 112;
let Xe = new Float32Array(0), He = new Float32Array(0), Ye = new Float32Array(0);

parentPort.on('message', (m) => {
  const { n, C, de, H, N, e0, e1, ctrl } = m;
  const view = (addr, count, Type) => new Type(koffi.view(addr, count * Type.BYTES_PER_ELEMENT));
  const X = view(m.x, n * C, Float32Array), out = view(m.out, n * C, Float32Array);
  const tokens = view(m.tokens, m.ntok, Int32Array), offsets = view(m.offsets, N + 1, Int32Array);
  const B1 = view(m.b1, H, Float32Array);
  if (Xe.length < n * C) { Xe = new Float32Array(n * C); Ye = new Float32Array(n * C); He = new Float32Array(n * de); }
  const XeP = koffi.address(Xe), HeP = koffi.address(He), YeP = koffi.address(Ye);
  out.fill(0);
  for (let e = e0; e < e1; e++) {
    const o0 = offsets[e], cnt = offsets[e + 1] - o0;
    gatherRows(Xe, X, tokens, o0, cnt, C);
    for (let r = 0; r < cnt; r++) He.set(B1.subarray(e * de, (e + 1) * de), r * de);
    sgemm(RowMajor, NoTrans, Trans, cnt, de, C, 1, XeP, C, m.w1 + BigInt(e * de * C * 4), C, 1, HeP, de);
    gelu(new Tensor(He.subarray(0, cnt * de), [cnt * de]), true);
    gatherRows(Ye, out, tokens, o0, cnt, C);
    sgemm(RowMajor, NoTrans, Trans, cnt, C, de, 1, HeP, de, m.w2 + BigInt(e * de * 4), H, 1, YeP, C);
    scatterRows(out, Ye, tokens, o0, cnt, C);
  }
  Atomics.store(ctrl, 0, 1);
  Atomics.notify(ctrl, 0);
});
