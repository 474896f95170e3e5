/**
 * Indexing ops: embedding lookup, row gather/scatter, index_select, one-hot, top-k and arg-extrema.
 *
 * Index tensors are int32. Every index is bounds-checked before any work, with an error naming the
 * op, the offending position and the valid range (torch raises on out-of-range indices too; negative
 * indices are not wrapped).
 *
 * Ordering used by topk / argmax / argmin (the same as torch.topk / torch.sort on CPU):
 * - NaN counts as larger than +Infinity (so argmax and topk pick NaN first, and argmin also
 *   returns the first NaN, matching torch.argmin/argmax which propagate NaN);
 * - −0 and +0 are equal;
 * - ties go to the lower index.
 */
import { Tensor, result, assertFloat, normAxis, sizeOf, type Data } from '../tensor.js';

// ---------------------------------------------------------------------------------------------
// helpers

function assertInt(t: Tensor, op: string, what = 'indices'): Int32Array {
  if (!(t.data instanceof Int32Array)) throw new TypeError(`${op}: ${what} must be an int32 tensor, got ${t.dtype} [${t.shape.join(', ')}]`);
  return t.data;
}

/** Throws unless every index is in [0, n). */
function checkIndices(op: string, idx: Int32Array, n: number, what: string): void {
  for (let i = 0; i < idx.length; i++) {
    const v = idx[i];
    if (v < 0 || v >= n) throw new RangeError(`${op}: index ${v} at position ${i} is out of range for ${what} of size ${n} (valid: 0..${n - 1})`);
  }
}

function sameDataType(a: Data, b: Data): boolean {
  return a.constructor === b.constructor;
}

function newLike(d: Data, n: number): Data {
  return d instanceof Int32Array ? new Int32Array(n) : d instanceof Uint16Array ? new Uint16Array(n) : new Float32Array(n);
}

function shapeStr(s: readonly number[]): string { return `[${s.join(', ')}]`; }

// Row-copy kernels (raw arrays, no autodiff): shared by the ops below and by code that gathers and
// scatters rows itself on hot paths (ActVAR's token selection and expert FFN). Row r of `idx[i0 ..
// i0+n)` is row idx[i0+r] of the indexed array; rows are `row` elements wide.

/**
 * dst rows 0..n−1 ← src rows idx[i0 .. i0+n). Runs of consecutive indices (common: sorted
 * selections) are copied with one `set`.
 */
export function gatherRowsInto<T extends Data>(dst: T, src: T, idx: Int32Array, i0: number, n: number, row: number): void {
  for (let r = 0; r < n;) {
    const t = idx[i0 + r];
    let e = r + 1;
    while (e < n && idx[i0 + e] === t + (e - r)) e++;
    dst.set(src.subarray(t * row, (t + e - r) * row), r * row);
    r = e;
  }
}

/** out rows idx[i0 .. i0+n) ← src rows 0..n−1 (runs of consecutive indices in one `set`). */
export function scatterRowsInto<T extends Data>(out: T, src: T, idx: Int32Array, i0: number, n: number, row: number): void {
  for (let r = 0; r < n;) {
    const t = idx[i0 + r];
    let e = r + 1;
    while (e < n && idx[i0 + e] === t + (e - r)) e++;
    out.set(src.subarray(r * row, e * row), t * row);
    r = e;
  }
}

/** out rows idx[i0 .. i0+n) += src rows 0..n−1 (repeated indices accumulate). */
export function scatterAddRowsInto(out: Data, src: Data, idx: Int32Array, i0: number, n: number, row: number): void {
  for (let r = 0; r < n; r++) {
    const o = idx[i0 + r] * row, so = r * row;
    for (let j = 0; j < row; j++) out[o + j] += src[so + j];
  }
}

// ---------------------------------------------------------------------------------------------
// embedding / gather / scatter

/**
 * Embedding lookup (torch.nn.functional.embedding): weight [V, C], idx int32 of any shape →
 * [...idx.shape, C]. The gradient scatter-adds into the rows of weight (repeated indices accumulate).
 */
export function embedding(weight: Tensor, idx: Tensor): Tensor {
  const W = assertFloat(weight, 'embedding');
  const I = assertInt(idx, 'embedding');
  if (weight.ndim !== 2) throw new RangeError(`embedding: weight must be 2-d [V, C], got ${shapeStr(weight.shape)}`);
  const [V, C] = weight.shape;
  checkIndices('embedding', I, V, 'a vocabulary');
  const out = new Float32Array(I.length * C);
  for (let i = 0; i < I.length; i++) out.set(W.subarray(I[i] * C, I[i] * C + C), i * C);
  return result(out, [...idx.shape, C], 'embedding', [weight], (g) => {
    const gw = new Float32Array(V * C);
    for (let i = 0; i < I.length; i++) {
      const wo = I[i] * C, go = i * C;
      for (let j = 0; j < C; j++) gw[wo + j] += g[go + j];
    }
    return [gw];
  });
}

/**
 * x[idx] along axis 0: x [R, ...rest], idx int32 [K] → [K, ...rest]. Works for float32 and int32 x
 * (only float32 is differentiable); the gradient scatter-adds back into the gathered rows.
 */
export function gatherRows(x: Tensor, idx: Tensor): Tensor {
  const I = assertInt(idx, 'gatherRows');
  if (idx.ndim !== 1) throw new RangeError(`gatherRows: idx must be 1-d [K], got ${shapeStr(idx.shape)}`);
  if (x.ndim < 1) throw new RangeError('gatherRows: x must have at least one axis');
  const R = x.shape[0], row = R === 0 ? 0 : x.size / R;
  checkIndices('gatherRows', I, R, 'axis 0 of x');
  const K = I.length, src = x.data, out = newLike(src, K * row);
  gatherRowsInto(out, src, I, 0, K, row);
  return result(out, [K, ...x.shape.slice(1)], 'gatherRows', [x], (g) => {
    const gx = new Float32Array(x.size);
    scatterAddRowsInto(gx, g, I, 0, K, row);
    return [gx];
  });
}

/**
 * A copy of base [R, ...rest] with rows idx (int32 [K]) replaced by ('set') or incremented by ('add')
 * the rows of src [K, ...rest]. Differentiable in base and src: for 'set' base's gradient is zero at
 * overwritten rows and src gets the output gradient at those rows; for 'add' both get it unchanged.
 * 'set' with a repeated index is an error (the result would depend on write order); 'add' accumulates.
 */
export function scatterRows(base: Tensor, idx: Tensor, src: Tensor, mode: 'set' | 'add'): Tensor {
  const I = assertInt(idx, 'scatterRows');
  if (mode !== 'set' && mode !== 'add') throw new RangeError(`scatterRows: mode must be 'set' or 'add', got '${String(mode)}'`);
  if (idx.ndim !== 1) throw new RangeError(`scatterRows: idx must be 1-d [K], got ${shapeStr(idx.shape)}`);
  if (base.ndim < 1) throw new RangeError('scatterRows: base must have at least one axis');
  const R = base.shape[0], K = I.length;
  const want = [K, ...base.shape.slice(1)];
  if (src.ndim !== want.length || src.shape.some((d, i) => d !== want[i])) {
    throw new RangeError(`scatterRows: src must be ${shapeStr(want)} (idx length × base's row shape), got ${shapeStr(src.shape)}`);
  }
  if (!sameDataType(base.data, src.data)) throw new TypeError(`scatterRows: base is ${base.dtype} but src is ${src.dtype}`);
  checkIndices('scatterRows', I, R, 'axis 0 of base');
  const row = R === 0 ? 0 : base.size / R;
  if (mode === 'set') {
    const seen = new Uint8Array(R);
    for (let k = 0; k < K; k++) {
      if (seen[I[k]]) throw new RangeError(`scatterRows: index ${I[k]} appears more than once; mode 'set' needs distinct indices (use 'add' to accumulate)`);
      seen[I[k]] = 1;
    }
  }
  const B = base.data, S = src.data;
  const out = B.slice();
  if (mode === 'set') scatterRowsInto(out, S, I, 0, K, row);
  else scatterAddRowsInto(out, S, I, 0, K, row);
  return result(out, base.shape, `scatterRows(${mode})`, [base, src], (g) => {
    let gb: Float32Array | null = null, gs: Float32Array | null = null;
    if (base.requiresGrad) {
      gb = g.slice();
      if (mode === 'set') for (let k = 0; k < K; k++) gb.fill(0, I[k] * row, I[k] * row + row);
    }
    if (src.requiresGrad) {
      gs = new Float32Array(K * row);
      gatherRowsInto(gs, g, I, 0, K, row);
    }
    return [gb, gs];
  });
}

/**
 * torch.index_select: the entries idx (int32 [K]) along `axis` of x → x's shape with that axis of size K.
 * Repeated indices are fine; the gradient scatter-adds. Works for int32 x too (not differentiable).
 */
export function indexSelect(x: Tensor, axis: number, idx: Tensor): Tensor {
  const I = assertInt(idx, 'indexSelect');
  if (idx.ndim !== 1) throw new RangeError(`indexSelect: idx must be 1-d [K], got ${shapeStr(idx.shape)}`);
  const ax = normAxis(axis, x.ndim), n = x.shape[ax];
  checkIndices('indexSelect', I, n, `axis ${axis} of x`);
  const outer = sizeOf(x.shape.slice(0, ax)), inner = sizeOf(x.shape.slice(ax + 1)), K = I.length;
  const src = x.data, out = newLike(src, outer * K * inner);
  for (let o = 0; o < outer; o++) {
    for (let k = 0; k < K; k++) {
      const s = (o * n + I[k]) * inner;
      out.set(src.subarray(s, s + inner), (o * K + k) * inner);
    }
  }
  const shape = x.shape.slice(); shape[ax] = K;
  return result(out, shape, 'indexSelect', [x], (g) => {
    const gx = new Float32Array(x.size);
    for (let o = 0; o < outer; o++) {
      for (let k = 0; k < K; k++) {
        const s = (o * n + I[k]) * inner, go = (o * K + k) * inner;
        for (let j = 0; j < inner; j++) gx[s + j] += g[go + j];
      }
    }
    return [gx];
  });
}

/** One-hot encoding (float32, no grad): idx int32 of any shape → [...idx.shape, numClasses]. */
export function oneHot(idx: Tensor, numClasses: number): Tensor {
  const I = assertInt(idx, 'oneHot');
  if (!Number.isInteger(numClasses) || numClasses < 1) throw new RangeError(`oneHot: numClasses must be a positive integer, got ${numClasses}`);
  checkIndices('oneHot', I, numClasses, 'numClasses');
  const out = new Float32Array(I.length * numClasses);
  for (let i = 0; i < I.length; i++) out[i * numClasses + I[i]] = 1;
  return new Tensor(out, [...idx.shape, numClasses]);
}

// ---------------------------------------------------------------------------------------------
// ordering: topk, argmax, argmin

/**
 * Order keys of a float row, as uint32 whose unsigned order is the float order described in the header
 * (NaN greatest, −0 = +0): the usual sign-flip of the IEEE-754 bit pattern (negative → all bits
 * flipped, positive → sign bit set), computed branch-free from the raw bits `bits` (an Int32Array view).
 */
function fillKeys(bits: Int32Array, base: number, stride: number, n: number, keys: Uint32Array): void {
  for (let i = 0, p = base; i < n; i++, p += stride) {
    let x = bits[p];
    const a = x & 0x7fffffff;
    if (a === 0) x = 0; // −0 → +0
    else if (a > 0x7f800000) x = 0x7fffffff; // any NaN → above +Infinity
    keys[i] = (x ^ ((x >> 31) | 0x80000000)) >>> 0;
  }
}

/** Scratch buffers for topk, reused across rows of one call. */
interface TopkScratch {
  keys: Uint32Array; candA: Int32Array; candB: Int32Array; dA: Uint32Array; dB: Uint32Array;
  /** Histogram of the top `bucketBits` key bits (also used, first 256 entries, by the radix passes). */
  hist: Uint32Array; bucketBits: number;
}

function makeScratch(n: number): TopkScratch {
  // about one bucket per element, between 2^8 and 2^11 buckets
  const bucketBits = Math.min(11, Math.max(8, Math.ceil(Math.log2(Math.max(n, 2)))));
  return {
    keys: new Uint32Array(n), candA: new Int32Array(n), candB: new Int32Array(n),
    dA: new Uint32Array(n), dB: new Uint32Array(n), hist: new Uint32Array(1 << bucketBits), bucketBits,
  };
}

/** Rows up to this long use insertion into a sorted top-k list instead of radix select. */
const SMALL_ROW = 64;

/**
 * Indices of the k largest keys of `keys[0..n)`, in descending key order with ties → lower index,
 * into out[outOff + r·outStride], r < k.
 * Short rows (n ≤ 64, e.g. routers over a few experts): insertion into a sorted list, O(n·k).
 * Long rows:
 * 1. histogram of the top `bucketBits` key bits; find the bucket t holding the k-th largest key;
 * 2. collect (in index order) every element whose bucket is ≥ t: m ≥ k candidates, usually ≈ k;
 * 3. stable LSD radix sort of the candidates on the complemented key (4 passes of 8 bits, passes
 *    where all candidates share the digit are skipped); stability keeps ties in ascending index.
 * O(n + m), with no data-dependent comparisons.
 */
function topkRow(n: number, k: number, s: TopkScratch, out: Int32Array, outOff: number, outStride: number): void {
  const { keys, hist } = s;
  let cand = s.candA, cand2 = s.candB, d = s.dA, d2 = s.dB;
  if (n <= SMALL_ROW) {
    let len = 0;
    for (let i = 0; i < n; i++) {
      const key = keys[i];
      if (len === k && key <= d[len - 1]) continue;
      let j = len < k ? len++ : len - 1; // the last slot is dropped when full
      while (j > 0 && d[j - 1] < key) { d[j] = d[j - 1]; cand[j] = cand[j - 1]; j--; }
      d[j] = key; cand[j] = i;
    }
    for (let r = 0; r < k; r++) out[outOff + r * outStride] = cand[r];
    return;
  }
  const shiftTop = 32 - s.bucketBits, nb = 1 << s.bucketBits;
  hist.fill(0, 0, nb);
  for (let i = 0; i < n; i++) hist[keys[i] >>> shiftTop]++;
  let t = nb - 1, above = 0;
  while (above + hist[t] < k) { above += hist[t]; t--; }
  let m = 0;
  for (let i = 0; i < n; i++) {
    const key = keys[i];
    cand[m] = i; d[m] = ~key >>> 0;
    m += (key >>> shiftTop) >= t ? 1 : 0;
  }
  for (let shift = 0; shift < 32; shift += 8) {
    hist.fill(0, 0, 256);
    for (let j = 0; j < m; j++) hist[(d[j] >>> shift) & 255]++;
    if (hist[(d[0] >>> shift) & 255] === m) continue; // all share this digit
    let acc = 0;
    for (let b = 0; b < 256; b++) { const c = hist[b]; hist[b] = acc; acc += c; }
    for (let j = 0; j < m; j++) {
      const dj = d[j], pos = hist[(dj >>> shift) & 255]++;
      d2[pos] = dj; cand2[pos] = cand[j];
    }
    const tc = cand; cand = cand2; cand2 = tc;
    const td = d; d = d2; d2 = td;
  }
  for (let r = 0; r < k; r++) out[outOff + r * outStride] = cand[r];
}

/**
 * The k largest entries along `axis`, sorted descending (ties → lower index; ordering as in the header).
 * Returns values (float32, differentiable: the gradient goes back to the chosen positions) and their
 * indices (int32). The shape of both is x's shape with that axis of size k.
 * Per row: radix select + radix sort of the survivors (see topkRow), O(n + k) — no full sort;
 * rows of ≤ 64 entries use a sorted insertion.
 */
export function topk(x: Tensor, k: number, axis = -1): { values: Tensor; indices: Tensor } {
  const X = assertFloat(x, 'topk');
  if (x.ndim < 1) throw new RangeError('topk: x must have at least one axis');
  const ax = normAxis(axis, x.ndim), n = x.shape[ax];
  if (!Number.isInteger(k) || k < 0 || k > n) throw new RangeError(`topk: k must be an integer in [0, ${n}] (the size of axis ${axis}), got ${k}`);
  const outer = sizeOf(x.shape.slice(0, ax)), inner = sizeOf(x.shape.slice(ax + 1));
  const vals = new Float32Array(outer * k * inner);
  const inds = new Int32Array(outer * k * inner);
  if (k > 0) {
    const bits = new Int32Array(X.buffer, X.byteOffset, X.length);
    const s = makeScratch(n);
    for (let o = 0; o < outer; o++) {
      for (let c = 0; c < inner; c++) {
        const base = o * n * inner + c, ob = o * k * inner + c;
        fillKeys(bits, base, inner, n, s.keys);
        topkRow(n, k, s, inds, ob, inner);
        for (let r = 0; r < k; r++) vals[ob + r * inner] = X[base + inds[ob + r * inner] * inner];
      }
    }
  }
  const shape = x.shape.slice(); shape[ax] = k;
  const values = result(vals, shape, 'topk', [x], (g) => {
    const gx = new Float32Array(x.size);
    for (let o = 0; o < outer; o++) {
      for (let r = 0; r < k; r++) {
        for (let c = 0; c < inner; c++) {
          const p = (o * k + r) * inner + c;
          gx[(o * n + inds[p]) * inner + c] += g[p];
        }
      }
    }
    return [gx];
  });
  return { values, indices: new Tensor(inds, shape) };
}

function argExtreme(op: string, x: Tensor, axis: number, keepDims: boolean, wantMax: boolean): Tensor {
  const X = assertFloat(x, op);
  if (x.ndim < 1) throw new RangeError(`${op}: x must have at least one axis`);
  const ax = normAxis(axis, x.ndim), n = x.shape[ax];
  if (n === 0) throw new RangeError(`${op}: axis ${axis} is empty`);
  const outer = sizeOf(x.shape.slice(0, ax)), inner = sizeOf(x.shape.slice(ax + 1));
  const out = new Int32Array(outer * inner);
  for (let o = 0; o < outer; o++) {
    for (let c = 0; c < inner; c++) {
      const base = o * n * inner + c;
      let best = X[base], bi = 0;
      if (best === best) {
        for (let i = 1; i < n; i++) {
          const v = X[base + i * inner];
          if (v !== v) { bi = i; break; } // first NaN wins
          if (wantMax ? v > best : v < best) { best = v; bi = i; }
        }
      }
      out[o * inner + c] = bi;
    }
  }
  const shape = x.shape.slice();
  if (keepDims) shape[ax] = 1; else shape.splice(ax, 1);
  return new Tensor(out, shape);
}

/** Index of the largest entry along `axis` (int32; first one on ties; the first NaN if any, as torch). */
export function argmax(x: Tensor, axis = -1, keepDims = false): Tensor {
  return argExtreme('argmax', x, axis, keepDims, true);
}

/** Index of the smallest entry along `axis` (int32; first one on ties; the first NaN if any, as torch). */
export function argmin(x: Tensor, axis = -1, keepDims = false): Tensor {
  return argExtreme('argmin', x, axis, keepDims, false);
}
