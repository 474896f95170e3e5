/**
 * Stored element types and their conversion to the two in-memory dtypes of the tensor core.
 *
 * Floats (F64, F32, F16, BF16) become float32; integers and booleans become int32 with a range
 * check (a value outside int32 is an error naming the tensor and the value, never a silent wrap).
 * F32 / I32 data in the host byte order at a 4-byte-aligned address is returned as a zero-copy
 * view of the input bytes; everything else is converted into a new array.
 *
 * Half precision (IEEE 754 binary16): sign 1, exponent 5 (bias 15), mantissa 10; exponent 0 =
 * subnormal m·2^−24, exponent 31 = ±Inf / NaN. bfloat16: the top 16 bits of a float32.
 */
import { type ErrorClass } from './errors.js';

export type StoredDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U64' | 'U32' | 'U16' | 'U8' | 'BOOL';

export const ITEMSIZE: Readonly<Record<StoredDType, number>> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1,
};

export function isStoredDType(s: string): s is StoredDType {
  return Object.prototype.hasOwnProperty.call(ITEMSIZE, s);
}

export function isFloatDType(d: StoredDType): boolean {
  return d === 'F64' || d === 'F32' || d === 'F16' || d === 'BF16';
}

export const HOST_LE = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

let f16Table: Float32Array | null = null;
/** float32 value of every binary16 bit pattern (256 KiB, built on first use). */
function halfTable(): Float32Array {
  if (f16Table) return f16Table;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) t[h] = halfToFloat(h);
  f16Table = t;
  return t;
}

/** binary16 bits → number (exact). */
export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/**
 * Decode `count` elements of `dtype` from `bytes` (which must hold at least count·itemsize bytes).
 * `what` names the tensor in error messages; `Err` is the format's error class.
 */
export function decodeElements(
  bytes: Uint8Array, dtype: StoredDType, count: number, littleEndian: boolean, what: string, Err: ErrorClass,
): Float32Array | Int32Array {
  const size = ITEMSIZE[dtype];
  if (bytes.byteLength < count * size) {
    throw new Err('short-data', `${what}: needs ${count * size} bytes of ${dtype} data, only ${bytes.byteLength} available`);
  }
  const native = littleEndian === HOST_LE;
  const off = bytes.byteOffset;
  if (native && (dtype === 'F32' || dtype === 'I32') && off % 4 === 0) {
    return dtype === 'F32' ? new Float32Array(bytes.buffer, off, count) : new Int32Array(bytes.buffer, off, count);
  }
  const dv = new DataView(bytes.buffer, off, count * size);
  const le = littleEndian;
  switch (dtype) {
    case 'F32': {
      if (native) return new Float32Array(bytes.slice(0, count * 4).buffer); // unaligned: one copy
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = dv.getFloat32(4 * i, le);
      return out;
    }
    case 'F64': {
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = dv.getFloat64(8 * i, le);
      return out;
    }
    case 'F16': {
      const t = halfTable(), out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = t[dv.getUint16(2 * i, le)];
      return out;
    }
    case 'BF16': {
      const out = new Float32Array(count), bits = new Uint32Array(out.buffer);
      for (let i = 0; i < count; i++) bits[i] = dv.getUint16(2 * i, le) << 16;
      return out;
    }
    case 'I32': {
      if (native) return new Int32Array(bytes.slice(0, count * 4).buffer);
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) out[i] = dv.getInt32(4 * i, le);
      return out;
    }
    case 'I64': case 'U64': {
      const out = new Int32Array(count);
      const loAt = le ? 0 : 4, hiAt = le ? 4 : 0;
      for (let i = 0; i < count; i++) {
        const lo = dv.getInt32(8 * i + loAt, le), hi = dv.getInt32(8 * i + hiAt, le);
        // in int32 range iff the high word is the sign extension of the low word
        if (hi !== (lo >> 31) || (dtype === 'U64' && lo < 0)) {
          const v = dtype === 'I64' ? dv.getBigInt64(8 * i, le) : dv.getBigUint64(8 * i, le);
          throw new Err('int-out-of-range', `${what}: ${dtype} element ${i} = ${v} does not fit in int32 (the in-memory integer type)`);
        }
        out[i] = lo;
      }
      return out;
    }
    case 'U32': {
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) {
        const v = dv.getUint32(4 * i, le);
        if (v > 0x7fffffff) throw new Err('int-out-of-range', `${what}: U32 element ${i} = ${v} does not fit in int32`);
        out[i] = v;
      }
      return out;
    }
    case 'I16': { const out = new Int32Array(count); for (let i = 0; i < count; i++) out[i] = dv.getInt16(2 * i, le); return out; }
    case 'U16': { const out = new Int32Array(count); for (let i = 0; i < count; i++) out[i] = dv.getUint16(2 * i, le); return out; }
    case 'I8': { const out = new Int32Array(count); for (let i = 0; i < count; i++) out[i] = dv.getInt8(i); return out; }
    case 'U8': { const out = new Int32Array(count); for (let i = 0; i < count; i++) out[i] = dv.getUint8(i); return out; }
    case 'BOOL': {
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) out[i] = dv.getUint8(i) !== 0 ? 1 : 0;
      return out;
    }
  }
}

/**
 * Product of a shape's dimensions, or −1 if it exceeds `limit` (checked as it is built, so a
 * hostile shape never produces a number larger than `limit` × one dimension). Dims must already
 * be validated as non-negative safe integers.
 */
export function boundedNumel(shape: readonly number[], limit: number): number {
  if (shape.some((d) => d === 0)) return 0;
  let n = 1;
  for (const d of shape) {
    n *= d;
    if (n > limit) return -1;
  }
  return n;
}
