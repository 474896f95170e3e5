/** Shape ops: reshape, permute/transpose, concat, slice. All results are contiguous copies (reshape shares data). */
import { Tensor, result, sizeOf, stridesOf, normAxis, checkShape, type Data } from '../tensor.js';

export function reshape(a: Tensor, shape: readonly number[]): Tensor {
  const s = shape.slice();
  const infer = s.indexOf(-1);
  if (infer >= 0) {
    const rest = sizeOf(s.filter((_, i) => i !== infer));
    if (rest === 0 || a.size % rest !== 0) throw new RangeError(`cannot reshape [${a.shape.join(', ')}] into [${shape.join(', ')}]`);
    s[infer] = a.size / rest;
  }
  checkShape(s);
  if (sizeOf(s) !== a.size) throw new RangeError(`cannot reshape [${a.shape.join(', ')}] (${a.size} elements) into [${shape.join(', ')}]`);
  return result(a.data, s, 'reshape', [a], (g) => [g]);
}

/** Gather `src` (shape `shape`) into the axis order `perm`. Works for float and int data. */
function permuteData<T extends Data>(src: T, shape: readonly number[], perm: readonly number[]): T {
  const nd = shape.length, n = src.length;
  const out = new (src.constructor as { new(n: number): T })(n);
  const inStr = stridesOf(shape);
  const outShape = perm.map((p) => shape[p]);
  const str = perm.map((p) => inStr[p]);
  // innermost loop over the last output axis
  const last = nd - 1, lastN = outShape[last] ?? 1, lastS = str[last] ?? 0;
  const ctr = new Array<number>(nd).fill(0);
  let off = 0;
  for (let k = 0; k < n; k += lastN) {
    for (let j = 0, o = off; j < lastN; j++, o += lastS) out[k + j] = src[o];
    for (let d = last - 1; d >= 0; d--) {
      ctr[d]++; off += str[d];
      if (ctr[d] < outShape[d]) break;
      off -= str[d] * outShape[d]; ctr[d] = 0;
    }
  }
  return out;
}

export function permute(a: Tensor, perm: readonly number[]): Tensor {
  const nd = a.ndim;
  const p = perm.map((x) => normAxis(x, nd));
  if (p.length !== nd || new Set(p).size !== nd) throw new RangeError(`permute: [${perm.join(', ')}] is not a permutation of ${nd} axes`);
  const outShape = p.map((i) => a.shape[i]);
  const inv = new Array<number>(nd);
  p.forEach((x, i) => { inv[x] = i; });
  return result(permuteData(a.data, a.shape, p), outShape, 'permute', [a], (g) => [permuteData(g, outShape, inv)]);
}

export function transpose(a: Tensor, d0 = -2, d1 = -1): Tensor {
  const p = [...Array(a.ndim).keys()];
  const i = normAxis(d0, a.ndim), j = normAxis(d1, a.ndim);
  [p[i], p[j]] = [p[j], p[i]];
  return permute(a, p);
}

/** Concatenate along `axis`. */
export function concat(ts: readonly Tensor[], axis = 0): Tensor {
  if (ts.length === 0) throw new RangeError('concat: no tensors given');
  const nd = ts[0].ndim, ax = normAxis(axis, nd);
  for (const t of ts) {
    if (t.ndim !== nd || t.shape.some((d, i) => i !== ax && d !== ts[0].shape[i])) {
      throw new RangeError(`concat: shapes ${ts.map((x) => `[${x.shape.join(', ')}]`).join(' ')} differ outside axis ${axis}`);
    }
    if (t.dtype !== ts[0].dtype) throw new TypeError('concat: mixed dtypes');
  }
  const outer = sizeOf(ts[0].shape.slice(0, ax)), inner = sizeOf(ts[0].shape.slice(ax + 1));
  const sizes = ts.map((t) => t.shape[ax]);
  const total = sizes.reduce((x, y) => x + y, 0);
  const shape = ts[0].shape.slice(); shape[ax] = total;
  const out = ts[0].dtype === 'int32' ? new Int32Array(sizeOf(shape)) : ts[0].dtype === 'bfloat16' ? new Uint16Array(sizeOf(shape)) : new Float32Array(sizeOf(shape));
  let col = 0;
  for (let k = 0; k < ts.length; k++) {
    const w = sizes[k] * inner, src = ts[k].data;
    for (let o = 0; o < outer; o++) out.set(src.subarray(o * w, o * w + w), o * total * inner + col);
    col += w;
  }
  return result(out, shape, 'concat', ts, (g) => {
    let c = 0;
    return ts.map((t, k) => {
      const w = sizes[k] * inner, r = new Float32Array(outer * w);
      for (let o = 0; o < outer; o++) r.set(g.subarray(o * total * inner + c, o * total * inner + c + w), o * w);
      c += w;
      return t.requiresGrad ? r : null;
    });
  });
}

/** a[..., start:end, ...] along `axis` (half-open). */
export function slice(a: Tensor, axis: number, start: number, end: number): Tensor {
  const ax = normAxis(axis, a.ndim), n = a.shape[ax];
  if (!(Number.isInteger(start) && Number.isInteger(end) && 0 <= start && start <= end && end <= n)) {
    throw new RangeError(`slice: [${start}, ${end}) is out of range for axis ${axis} of size ${n}`);
  }
  const outer = sizeOf(a.shape.slice(0, ax)), inner = sizeOf(a.shape.slice(ax + 1));
  const w = (end - start) * inner, rowIn = n * inner;
  const shape = a.shape.slice(); shape[ax] = end - start;
  const out = a.dtype === 'int32' ? new Int32Array(outer * w) : a.dtype === 'bfloat16' ? new Uint16Array(outer * w) : new Float32Array(outer * w);
  for (let o = 0; o < outer; o++) out.set(a.data.subarray(o * rowIn + start * inner, o * rowIn + start * inner + w), o * w);
  return result(out, shape, 'slice', [a], (g) => {
    const r = new Float32Array(a.size);
    for (let o = 0; o < outer; o++) r.set(g.subarray(o * w, o * w + w), o * rowIn + start * inner);
    return [r];
  });
}

/** Split into pieces of the given sizes along `axis` (the inverse of concat). */
export function split(a: Tensor, sizes: readonly number[], axis = 0): Tensor[] {
  const out: Tensor[] = [];
  let s = 0;
  for (const n of sizes) { out.push(slice(a, axis, s, s + n)); s += n; }
  if (s !== a.shape[normAxis(axis, a.ndim)]) throw new RangeError(`split: sizes sum to ${s}, axis has ${a.shape[normAxis(axis, a.ndim)]}`);
  return out;
}

/** Repeat along axis 0 (like torch's x.repeat(k, 1, ...)). */
export function repeat0(a: Tensor, k: number): Tensor {
  return concat(new Array<Tensor>(k).fill(a), 0);
}
