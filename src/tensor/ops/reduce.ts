/** Reductions over one axis: sum, mean, max; and full sums. */
import { Tensor, result, assertFloat, normAxis, sizeOf } from '../tensor.js';

function dims(a: Tensor, axis: number): [number, number, number, number] {
  const ax = normAxis(axis, a.ndim);
  return [ax, sizeOf(a.shape.slice(0, ax)), a.shape[ax], sizeOf(a.shape.slice(ax + 1))];
}

function reducedShape(a: Tensor, ax: number, keepDims: boolean): number[] {
  const s = a.shape.slice();
  if (keepDims) s[ax] = 1; else s.splice(ax, 1);
  return s;
}

export function sum(a: Tensor, axis?: number, keepDims = false): Tensor {
  const A = assertFloat(a, 'sum');
  if (axis === undefined) {
    let s = 0;
    for (let i = 0; i < A.length; i++) s += A[i];
    return result(Float32Array.of(s), [], 'sum', [a], (g) => [new Float32Array(A.length).fill(g[0])]);
  }
  const [ax, outer, n, inner] = dims(a, axis);
  const out = new Float32Array(outer * inner);
  for (let o = 0; o < outer; o++) {
    const base = o * n * inner, ob = o * inner;
    for (let k = 0; k < n; k++) { const r = base + k * inner; for (let i = 0; i < inner; i++) out[ob + i] += A[r + i]; }
  }
  return result(out, reducedShape(a, ax, keepDims), 'sum', [a], (g) => {
    const r = new Float32Array(A.length);
    for (let o = 0; o < outer; o++) for (let k = 0; k < n; k++) r.set(g.subarray(o * inner, o * inner + inner), (o * n + k) * inner);
    return [r];
  });
}

export function mean(a: Tensor, axis?: number, keepDims = false): Tensor {
  const n = axis === undefined ? a.size : a.shape[normAxis(axis, a.ndim)];
  const s = sum(a, axis, keepDims);
  // scale in place before any graph use: the result is fresh
  const d = s.f32;
  for (let i = 0; i < d.length; i++) d[i] /= n;
  if (s.node) {
    const inner = s.node;
    s.node = { op: 'mean', inputs: inner.inputs, backward: (g) => inner.backward(g.map((x) => x / n)) };
  }
  return s;
}

/** Max over an axis; the gradient goes to the first maximal element. */
export function max(a: Tensor, axis: number, keepDims = false): Tensor {
  const A = assertFloat(a, 'max');
  const [ax, outer, n, inner] = dims(a, axis);
  const out = new Float32Array(outer * inner).fill(-Infinity);
  const arg = new Int32Array(outer * inner);
  for (let o = 0; o < outer; o++) {
    for (let k = 0; k < n; k++) {
      const r = (o * n + k) * inner;
      for (let i = 0; i < inner; i++) if (A[r + i] > out[o * inner + i]) { out[o * inner + i] = A[r + i]; arg[o * inner + i] = k; }
    }
  }
  return result(out, reducedShape(a, ax, keepDims), 'max', [a], (g) => {
    const r = new Float32Array(A.length);
    for (let o = 0; o < outer; o++) for (let i = 0; i < inner; i++) r[(o * n + arg[o * inner + i]) * inner + i] = g[o * inner + i];
    return [r];
  });
}
