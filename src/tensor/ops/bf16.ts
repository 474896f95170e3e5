/**
 * bf16 weights with float32 accumulation (an inference option, never the default: `weightsDtype: 'bf16'`,
 * src/var/bf16.ts). A weight matrix is stored as bfloat16 bit patterns — the upper 16 bits of the
 * float32, rounded to nearest even — in a tensor of dtype 'bfloat16', half the bytes of float32; the
 * activations stay float32 and are rounded to bf16 inside the product.
 *
 * The product C = X·Wᵀ + beta·C (X float32 M × K, W bf16 N × K, beta 0 or 1) is defined element by
 * element, once, so that every implementation gives the same bits (native/bf16_gemm.c computes it
 * with AVX512-BF16's vdpbf16ps, or by widening with AVX-512F / AVX2 fused multiply-adds, or in C):
 *  1. x̂ = bf16(x) for the row of X, ŵ the row of W, both padded with zeros to Kp = ⌈K/32⌉·32;
 *  2. 16 float32 lanes, lane j over the pairs e = 32b + 2j (b = 0, 1, …): lane ← lane + x̂[e+1]·ŵ[e+1],
 *     then lane ← lane + x̂[e]·ŵ[e], each rounded to float32 (the product of two bf16 is exact);
 *  3. r = ((l0+l8) + (l4+l12)) … : h_j = l_j + l_{j+8}, then h_j + h_{j+4}, then (h0+h2) + (h1+h3);
 *  4. C = r (beta 0) or C + r (beta 1).
 * The instruction flushes float32 subnormals (|v| < 1.2e-38) to zero; only there can it differ from this
 * reference and from the widening paths.
 *
 * `gemmBf16Reference` is that definition in TypeScript (the path of a fresh clone without a C
 * compiler, and the tests' yardstick); `gemmBf16` uses the native kernel when it is built.
 */
import { Tensor } from '../tensor.js';
import { backend } from '../../backend/index.js';

const f32 = new Float32Array(1), u32 = new Uint32Array(f32.buffer);

/** The bf16 bit pattern of x: round to nearest, ties to even; NaN stays NaN (quiet), ±inf stays, overflow → ±inf. */
export function f32ToBf16(x: number): number {
  f32[0] = x;
  const v = u32[0];
  if ((v & 0x7fffffff) > 0x7f800000) return ((v >>> 16) | 0x40) & 0xffff;
  return ((v + 0x7fff + ((v >>> 16) & 1)) >>> 16) & 0xffff;
}

/** The float32 value of a bf16 bit pattern (exact: bf16 is float32 with the low 16 bits zero). */
export function bf16ToF32(b: number): number {
  u32[0] = (b & 0xffff) << 16;
  return f32[0];
}

/** bf16(src) into a new (or the given) Uint16Array, by the native kernel when built (same bits). */
export function toBf16Array(src: Float32Array, out: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  if (out.length < src.length) throw new RangeError(`toBf16Array: output of ${out.length} elements, ${src.length} needed`);
  const nk = backend().native;
  if (nk) { nk.toBf16(src, out, src.length); return out; }
  const w = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < src.length; i++) {
    const v = w[i];
    out[i] = (v & 0x7fffffff) > 0x7f800000 ? ((v >>> 16) | 0x40) & 0xffff : ((v + 0x7fff + ((v >>> 16) & 1)) >>> 16) & 0xffff;
  }
  return out;
}

/** Float32 values of bf16 bit patterns. */
export function fromBf16Array(src: Uint16Array): Float32Array {
  const out = new Uint32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = src[i] << 16;
  return new Float32Array(out.buffer);
}

/** A 'bfloat16' tensor holding bf16(t) (t float32; same shape and name). Inference only: it cannot require grad. */
export function bf16Tensor(t: Tensor): Tensor {
  const out = new Tensor(toBf16Array(t.f32), t.shape);
  if (t.name !== undefined) out.name = t.name;
  return out;
}

/** The float32 tensor of a 'bfloat16' one (the values the bf16 GEMM multiplies with). */
export function bf16ToFloat(t: Tensor): Tensor {
  if (!(t.data instanceof Uint16Array)) throw new TypeError(`bf16ToFloat: expected a bfloat16 tensor, got ${t.dtype}`);
  return new Tensor(fromBf16Array(t.data), t.shape);
}

function checkArgs(M: number, N: number, K: number, X: Float32Array, ldx: number, W: Uint16Array, ldw: number, beta: number, C: Float32Array, ldc: number): void {
  for (const [name, v] of [['M', M], ['N', N], ['K', K], ['ldx', ldx], ['ldw', ldw], ['ldc', ldc]] as const) {
    if (!Number.isInteger(v) || v < 0 || v > 0x7fffffff) throw new RangeError(`gemmBf16: ${name} must be a non-negative 32-bit integer, got ${v}`);
  }
  if (beta !== 0 && beta !== 1) throw new RangeError(`gemmBf16: beta must be 0 or 1, got ${beta}`);
  if (M === 0 || N === 0) return;
  if (ldc < N || (M - 1) * ldc + N > C.length) throw new RangeError(`gemmBf16: C needs ${M} rows of ${N} (ld ${ldc}), its buffer has ${C.length}`);
  if (K === 0) return;
  if (ldx < K || (M - 1) * ldx + K > X.length) throw new RangeError(`gemmBf16: X needs ${M} rows of ${K} (ld ${ldx}), its buffer has ${X.length}`);
  if (ldw < K || (N - 1) * ldw + K > W.length) throw new RangeError(`gemmBf16: W needs ${N} rows of ${K} (ld ${ldw}), its buffer has ${W.length}`);
}

/** The definition above in TypeScript: C (M × N, ldc) = bf16(X)·Wᵀ + beta·C, lanes and tree as stated. */
export function gemmBf16Reference(M: number, N: number, K: number, X: Float32Array, ldx: number, W: Uint16Array, ldw: number,
  beta: number, C: Float32Array, ldc: number): void {
  checkArgs(M, N, K, X, ldx, W, ldw, beta, C, ldc);
  if (M === 0 || N === 0) return;
  const Kp = Math.ceil(K / 32) * 32;
  const xs = new Float32Array(M * Kp), ws = new Float32Array(Kp), xw = new Uint32Array(xs.buffer), ww = new Uint32Array(ws.buffer);
  const xb = new Uint16Array(K);
  for (let m = 0; m < M; m++) {
    toBf16Array(X.subarray(m * ldx, m * ldx + K), xb);
    for (let k = 0; k < K; k++) xw[m * Kp + k] = xb[k] << 16;
  }
  const l = new Float32Array(16), h = new Float32Array(8);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) ww[k] = W[n * ldw + k] << 16;
    for (let m = 0; m < M; m++) {
      const xo = m * Kp;
      l.fill(0);
      for (let b = 0; b < Kp; b += 32) {
        for (let j = 0; j < 16; j++) {
          const e = b + 2 * j;
          l[j] = l[j] + xs[xo + e + 1] * ws[e + 1]; // the product is exact; the store rounds the sum once
          l[j] = l[j] + xs[xo + e] * ws[e];
        }
      }
      for (let j = 0; j < 8; j++) h[j] = l[j] + l[j + 8];
      for (let j = 0; j < 4; j++) h[j] = h[j] + h[j + 4];
      h[0] = h[0] + h[2]; h[1] = h[1] + h[3];
      const c = m * ldc + n;
      C[c] = beta === 0 ? h[0] + h[1] : C[c] + Math.fround(h[0] + h[1]);
    }
  }
}

/** C (M × N, ldc) = bf16(X)·Wᵀ + beta·C as defined above: the native kernel when built, else the reference. */
export function gemmBf16(M: number, N: number, K: number, X: Float32Array, ldx: number, W: Uint16Array, ldw: number,
  beta: number, C: Float32Array, ldc: number): void {
  const nk = backend().native;
  if (nk) {
    checkArgs(M, N, K, X, ldx, W, ldw, beta, C, ldc);
    if (M > 0 && N > 0) nk.bf16Gemm(M, N, K, X, ldx, W, ldw, beta, C, ldc);
    return;
  }
  gemmBf16Reference(M, N, K, X, ldx, W, ldw, beta, C, ldc);
}
