/**
 * Elementwise arithmetic with numpy broadcasting, unary maths and activations.
 * Gradients of broadcast inputs are summed back to the input's shape.
 */
import { Tensor, result, assertFloat, sameShape, sizeOf, stridesOf } from '../tensor.js';
import { backend } from '../../backend/index.js';

export function broadcastShapes(a: readonly number[], b: readonly number[]): number[] {
  const n = Math.max(a.length, b.length);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1, db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new RangeError(`shapes [${a.join(', ')}] and [${b.join(', ')}] cannot be broadcast together`);
    }
    out[i] = da === 1 ? db : da;
  }
  return out;
}

/** For each output element, the index into an input of `shape` broadcast to `outShape`. */
function broadcastIndex(shape: readonly number[], outShape: readonly number[]): Int32Array {
  const n = sizeOf(outShape), nd = outShape.length;
  const idx = new Int32Array(n);
  const inStr = stridesOf(shape);
  const str = new Array<number>(nd).fill(0);
  for (let i = 0; i < nd; i++) {
    const j = shape.length - nd + i;
    if (j >= 0 && shape[j] !== 1) str[i] = inStr[j];
  }
  const ctr = new Array<number>(nd).fill(0);
  let off = 0;
  for (let k = 0; k < n; k++) {
    idx[k] = off;
    for (let d = nd - 1; d >= 0; d--) {
      ctr[d]++; off += str[d];
      if (ctr[d] < outShape[d]) break;
      off -= str[d] * outShape[d]; ctr[d] = 0;
    }
  }
  return idx;
}

/** Sum a gradient of `outShape` back down to `shape` (undoing broadcasting). */
export function sumToShape(g: Float32Array, outShape: readonly number[], shape: readonly number[]): Float32Array {
  if (sameShape(outShape, shape)) return g;
  const out = new Float32Array(sizeOf(shape));
  const idx = broadcastIndex(shape, outShape);
  for (let k = 0; k < g.length; k++) out[idx[k]] += g[k];
  return out;
}

type BinFn = (x: number, y: number) => number;

/** Fast paths: same shape, or b is a trailing-row vector / scalar (the common bias case). */
function binaryKernel(a: Tensor, b: Tensor, f: BinFn, shape: number[]): Float32Array {
  const A = assertFloat(a, 'binary op'), Bd = assertFloat(b, 'binary op');
  const n = sizeOf(shape);
  const out = new Float32Array(n);
  if (sameShape(a.shape, shape) && sameShape(b.shape, shape)) {
    for (let i = 0; i < n; i++) out[i] = f(A[i], Bd[i]);
  } else if (sameShape(a.shape, shape) && Bd.length === 1) {
    const y = Bd[0];
    for (let i = 0; i < n; i++) out[i] = f(A[i], y);
  } else if (sameShape(a.shape, shape) && isTrailing(b.shape, shape)) {
    const m = Bd.length;
    for (let i = 0; i < n; i += m) for (let j = 0; j < m; j++) out[i + j] = f(A[i + j], Bd[j]);
  } else {
    const ia = sameShape(a.shape, shape) ? null : broadcastIndex(a.shape, shape);
    const ib = sameShape(b.shape, shape) ? null : broadcastIndex(b.shape, shape);
    for (let i = 0; i < n; i++) out[i] = f(A[ia ? ia[i] : i], Bd[ib ? ib[i] : i]);
  }
  return out;
}

/** True if `s` equals the trailing dimensions of `full` (leading 1s allowed). */
function isTrailing(s: readonly number[], full: readonly number[]): boolean {
  const first = s.findIndex((d) => d !== 1);
  if (first < 0) return true;
  const t = s.slice(first); // strip leading ones
  if (t.length > full.length) return false;
  for (let i = t.length - 1, j = full.length - 1; i >= 0; i--, j--) if (t[i] !== full[j]) return false;
  return true;
}

function toTensor(x: Tensor | number): Tensor {
  return typeof x === 'number' ? new Tensor(Float32Array.of(x), []) : x;
}

export function add(a: Tensor, b: Tensor | number): Tensor {
  const B = toTensor(b), shape = broadcastShapes(a.shape, B.shape), nk = backend().native;
  let out: Float32Array;
  if (nk && sameShape(a.shape, B.shape)) {
    out = new Float32Array(a.size);
    nk.add(assertFloat(a, 'add'), assertFloat(B, 'add'), out, out.length);
  } else out = binaryKernel(a, B, (x, y) => x + y, shape);
  return result(out, shape, 'add', [a, B], (g) => [
    a.requiresGrad ? sumToShape(g, shape, a.shape) : null,
    B.requiresGrad ? sumToShape(g, shape, B.shape) : null,
  ]);
}

export function sub(a: Tensor, b: Tensor | number): Tensor {
  const B = toTensor(b), shape = broadcastShapes(a.shape, B.shape);
  return result(binaryKernel(a, B, (x, y) => x - y, shape), shape, 'sub', [a, B], (g) => [
    a.requiresGrad ? sumToShape(g, shape, a.shape) : null,
    B.requiresGrad ? negate(sumToShape(g, shape, B.shape)) : null,
  ]);
}

export function mul(a: Tensor, b: Tensor | number): Tensor {
  const B = toTensor(b), shape = broadcastShapes(a.shape, B.shape);
  return result(binaryKernel(a, B, (x, y) => x * y, shape), shape, 'mul', [a, B], (g) => [
    a.requiresGrad ? sumToShape(binaryKernel(new Tensor(g, shape), B, (x, y) => x * y, shape), shape, a.shape) : null,
    B.requiresGrad ? sumToShape(binaryKernel(new Tensor(g, shape), a, (x, y) => x * y, shape), shape, B.shape) : null,
  ]);
}

export function div(a: Tensor, b: Tensor | number): Tensor {
  const B = toTensor(b), shape = broadcastShapes(a.shape, B.shape);
  const out = binaryKernel(a, B, (x, y) => x / y, shape);
  return result(out, shape, 'div', [a, B], (g) => {
    const G = new Tensor(g, shape);
    return [
      a.requiresGrad ? sumToShape(binaryKernel(G, B, (x, y) => x / y, shape), shape, a.shape) : null,
      // d(a/b)/db = -out/b
      B.requiresGrad ? sumToShape(binaryKernel(mulArr(G, out, shape), B, (x, y) => -x / y, shape), shape, B.shape) : null,
    ];
  });
}

function mulArr(G: Tensor, o: Float32Array, shape: number[]): Tensor {
  const g = G.f32, r = new Float32Array(g.length);
  for (let i = 0; i < g.length; i++) r[i] = g[i] * o[i];
  return new Tensor(r, shape);
}

function negate(g: Float32Array): Float32Array {
  const r = new Float32Array(g.length);
  for (let i = 0; i < g.length; i++) r[i] = -g[i];
  return r;
}

/**
 * Unary op helper. Each op passes whole-array loops (not per-element callbacks): a shared helper
 * calling a different closure per element is megamorphic and costs ~9 ns a call in V8.
 * `fwd(A, out)` fills the output; `bwd(A, out, g, r)` writes the input gradient r from g.
 */
type UnaryFwd = (A: Float32Array, out: Float32Array) => void;
type UnaryBwd = (A: Float32Array, out: Float32Array, g: Float32Array, r: Float32Array) => void;

function unary(name: string, a: Tensor, fwd: UnaryFwd, bwd: UnaryBwd): Tensor {
  const A = assertFloat(a, name), out = new Float32Array(A.length);
  fwd(A, out);
  return result(out, a.shape, name, [a], (g) => {
    const r = new Float32Array(A.length);
    bwd(A, out, g, r);
    return [r];
  });
}

export const neg = (a: Tensor) => unary('neg', a,
  (A, o) => { for (let i = 0; i < A.length; i++) o[i] = -A[i]; },
  (_A, _o, g, r) => { for (let i = 0; i < g.length; i++) r[i] = -g[i]; });
export const exp = (a: Tensor) => unary('exp', a,
  (A, o) => { for (let i = 0; i < A.length; i++) o[i] = Math.exp(A[i]); },
  (_A, o, g, r) => { for (let i = 0; i < g.length; i++) r[i] = g[i] * o[i]; });
export const log = (a: Tensor) => unary('log', a,
  (A, o) => { for (let i = 0; i < A.length; i++) o[i] = Math.log(A[i]); },
  (A, _o, g, r) => { for (let i = 0; i < g.length; i++) r[i] = g[i] / A[i]; });
export const sqrt = (a: Tensor) => unary('sqrt', a,
  (A, o) => { for (let i = 0; i < A.length; i++) o[i] = Math.sqrt(A[i]); },
  (_A, o, g, r) => { for (let i = 0; i < g.length; i++) r[i] = (0.5 * g[i]) / o[i]; });
export const tanh = (a: Tensor) => unary('tanh', a,
  (A, o) => { for (let i = 0; i < A.length; i++) o[i] = Math.tanh(A[i]); },
  (_A, o, g, r) => { for (let i = 0; i < g.length; i++) r[i] = g[i] * (1 - o[i] * o[i]); });
export const square = (a: Tensor) => unary('square', a,
  (A, o) => { for (let i = 0; i < A.length; i++) o[i] = A[i] * A[i]; },
  (A, _o, g, r) => { for (let i = 0; i < g.length; i++) r[i] = 2 * A[i] * g[i]; });
export const abs = (a: Tensor) => unary('abs', a,
  (A, o) => { for (let i = 0; i < A.length; i++) o[i] = Math.abs(A[i]); },
  (A, _o, g, r) => { for (let i = 0; i < g.length; i++) r[i] = A[i] > 0 ? g[i] : A[i] < 0 ? -g[i] : 0; });
export const relu = (a: Tensor) => unary('relu', a,
  (A, o) => { for (let i = 0; i < A.length; i++) o[i] = A[i] > 0 ? A[i] : 0; },
  (A, _o, g, r) => { for (let i = 0; i < g.length; i++) r[i] = A[i] > 0 ? g[i] : 0; });
export const pow = (a: Tensor, p: number) => unary('pow', a,
  (A, o) => { for (let i = 0; i < A.length; i++) o[i] = A[i] ** p; },
  (A, _o, g, r) => { for (let i = 0; i < g.length; i++) r[i] = g[i] * p * A[i] ** (p - 1); });
export const scale = (a: Tensor, s: number) => unary('scale', a,
  (A, o) => { for (let i = 0; i < A.length; i++) o[i] = A[i] * s; },
  (_A, _o, g, r) => { for (let i = 0; i < g.length; i++) r[i] = g[i] * s; });
export const addScalar = (a: Tensor, s: number) => unary('addScalar', a,
  (A, o) => { for (let i = 0; i < A.length; i++) o[i] = A[i] + s; },
  (_A, _o, g, r) => { r.set(g); });
/** Clamp to [lo, hi]; the gradient is 1 inside, 0 where clamped. */
export const clamp = (a: Tensor, lo: number, hi: number) => unary('clamp', a,
  (A, o) => { for (let i = 0; i < A.length; i++) { const x = A[i]; o[i] = x < lo ? lo : x > hi ? hi : x; } },
  (A, _o, g, r) => { for (let i = 0; i < g.length; i++) r[i] = A[i] < lo || A[i] > hi ? 0 : g[i]; });

export function sigmoidScalar(x: number): number { return 1 / (1 + Math.exp(-x)); }
export const sigmoid = (a: Tensor) => unary('sigmoid', a,
  (A, o) => { for (let i = 0; i < A.length; i++) o[i] = 1 / (1 + Math.exp(-A[i])); },
  (_A, o, g, r) => { for (let i = 0; i < g.length; i++) r[i] = g[i] * o[i] * (1 - o[i]); });

/** SiLU(x) = x·sigmoid(x). */
export const silu = (a: Tensor) => unary('silu', a,
  (A, o) => { for (let i = 0; i < A.length; i++) { const x = A[i]; o[i] = x / (1 + Math.exp(-x)); } },
  (A, _o, g, r) => {
    for (let i = 0; i < g.length; i++) { const x = A[i], s = 1 / (1 + Math.exp(-x)); r[i] = g[i] * s * (1 + x * (1 - s)); }
  });

/** where(cond, a, b): cond is an int32 (0/1) tensor broadcastable to a and b's common shape. */
export function where(cond: Tensor, a: Tensor, b: Tensor): Tensor {
  const shape = broadcastShapes(broadcastShapes(a.shape, b.shape), cond.shape);
  const C = cond.data, A = assertFloat(a, 'where'), Bd = assertFloat(b, 'where');
  const n = sizeOf(shape);
  const ic = sameShape(cond.shape, shape) ? null : broadcastIndex(cond.shape, shape);
  const ia = sameShape(a.shape, shape) ? null : broadcastIndex(a.shape, shape);
  const ib = sameShape(b.shape, shape) ? null : broadcastIndex(b.shape, shape);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = C[ic ? ic[i] : i] ? A[ia ? ia[i] : i] : Bd[ib ? ib[i] : i];
  return result(out, shape, 'where', [a, b], (g) => {
    const ga = new Float32Array(n), gb = new Float32Array(n);
    for (let i = 0; i < n; i++) { if (C[ic ? ic[i] : i]) ga[i] = g[i]; else gb[i] = g[i]; }
    return [
      a.requiresGrad ? sumToShape(ga, shape, a.shape) : null,
      b.requiresGrad ? sumToShape(gb, shape, b.shape) : null,
    ];
  });
}
