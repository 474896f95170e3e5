/**
 * IDX files (the MNIST / Fashion-MNIST container format), plain or gzipped.
 *
 * Layout (LeCun et al., "THE MNIST DATABASE" file-format description):
 *   bytes 0-1  zero
 *   byte  2    element type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64
 *   byte  3    number of dimensions n
 *   then n big-endian uint32 dimension sizes, then the elements, big-endian, row-major.
 * A gzipped file (magic 1f 8b) is inflated first with node:zlib.
 */
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';

export type IdxType = 'uint8' | 'int8' | 'int16' | 'int32' | 'float32' | 'float64';
export type IdxData = Uint8Array | Int8Array | Int16Array | Int32Array | Float32Array | Float64Array;

export interface IdxArray {
  type: IdxType;
  shape: number[];
  data: IdxData;
}

const TYPES: Record<number, { type: IdxType; bytes: number }> = {
  0x08: { type: 'uint8', bytes: 1 },
  0x09: { type: 'int8', bytes: 1 },
  0x0b: { type: 'int16', bytes: 2 },
  0x0c: { type: 'int32', bytes: 4 },
  0x0d: { type: 'float32', bytes: 4 },
  0x0e: { type: 'float64', bytes: 8 },
};
const CODES: Record<IdxType, number> = { uint8: 0x08, int8: 0x09, int16: 0x0b, int32: 0x0c, float32: 0x0d, float64: 0x0e };

/** True if the bytes start with the gzip magic number 1f 8b. */
export function isGzip(buf: Uint8Array): boolean {
  return buf.length >= 2 && buf[0] === 0x1f && buf[1] === 0x8b;
}

/** Parse IDX bytes (inflating gzip first if needed). `source` names the file in error messages. */
export function parseIdx(bytes: Uint8Array, source = 'IDX data'): IdxArray {
  let buf = bytes;
  if (isGzip(buf)) {
    try { buf = gunzipSync(buf); } catch (e) {
      throw new Error(`${source}: gzip data is corrupt or truncated (${(e as Error).message})`);
    }
  }
  if (buf.length < 4) throw new Error(`${source}: too short for an IDX header (${buf.length} bytes, need at least 4)`);
  if (buf[0] !== 0 || buf[1] !== 0) {
    throw new Error(`${source}: not an IDX file (magic bytes ${hex(buf[0])} ${hex(buf[1])}, expected 00 00)`);
  }
  const t = TYPES[buf[2]];
  if (!t) throw new Error(`${source}: unknown IDX element type ${hex(buf[2])} (expected 08, 09, 0b, 0c, 0d or 0e)`);
  const nd = buf[3];
  const headerLen = 4 + 4 * nd;
  if (buf.length < headerLen) throw new Error(`${source}: truncated header (${buf.length} bytes, ${nd} dimensions need ${headerLen})`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const shape: number[] = [];
  let count = 1;
  for (let i = 0; i < nd; i++) { const d = view.getUint32(4 + 4 * i, false); shape.push(d); count *= d; }
  const need = headerLen + count * t.bytes;
  if (buf.length < need) {
    throw new Error(`${source}: truncated: shape [${shape.join(', ')}] of ${t.type} needs ${need} bytes, file has ${buf.length}`);
  }
  if (buf.length > need) {
    throw new Error(`${source}: ${buf.length - need} unexpected trailing bytes after shape [${shape.join(', ')}] of ${t.type}`);
  }
  const data = decode(view, headerLen, count, t.type);
  return { type: t.type, shape, data };
}

function decode(view: DataView, off: number, n: number, type: IdxType): IdxData {
  switch (type) {
    case 'uint8': return new Uint8Array(view.buffer.slice(view.byteOffset + off, view.byteOffset + off + n));
    case 'int8': return new Int8Array(view.buffer.slice(view.byteOffset + off, view.byteOffset + off + n));
    case 'int16': { const a = new Int16Array(n); for (let i = 0; i < n; i++) a[i] = view.getInt16(off + 2 * i, false); return a; }
    case 'int32': { const a = new Int32Array(n); for (let i = 0; i < n; i++) a[i] = view.getInt32(off + 4 * i, false); return a; }
    case 'float32': { const a = new Float32Array(n); for (let i = 0; i < n; i++) a[i] = view.getFloat32(off + 4 * i, false); return a; }
    case 'float64': { const a = new Float64Array(n); for (let i = 0; i < n; i++) a[i] = view.getFloat64(off + 8 * i, false); return a; }
  }
}

/** Read an IDX file from disk (plain or gzipped). */
export function readIdx(path: string): IdxArray {
  return parseIdx(readFileSync(path), path);
}

/** Encode an array as IDX bytes (uncompressed). The inverse of `parseIdx`. */
export function encodeIdx(arr: IdxArray): Uint8Array {
  const code = CODES[arr.type];
  const bytes = TYPES[code].bytes;
  const count = arr.shape.reduce((a, b) => a * b, 1);
  if (arr.data.length !== count) throw new RangeError(`encodeIdx: data has ${arr.data.length} elements, shape [${arr.shape.join(', ')}] needs ${count}`);
  if (arr.shape.length > 255) throw new RangeError('encodeIdx: at most 255 dimensions');
  const headerLen = 4 + 4 * arr.shape.length;
  const out = new Uint8Array(headerLen + count * bytes);
  const view = new DataView(out.buffer);
  out[2] = code; out[3] = arr.shape.length;
  arr.shape.forEach((d, i) => view.setUint32(4 + 4 * i, d, false));
  const d = arr.data;
  for (let i = 0; i < count; i++) {
    const o = headerLen + i * bytes;
    switch (arr.type) {
      case 'uint8': view.setUint8(o, d[i]); break;
      case 'int8': view.setInt8(o, d[i]); break;
      case 'int16': view.setInt16(o, d[i], false); break;
      case 'int32': view.setInt32(o, d[i], false); break;
      case 'float32': view.setFloat32(o, d[i], false); break;
      case 'float64': view.setFloat64(o, d[i], false); break;
    }
  }
  return out;
}

function hex(b: number): string { return b.toString(16).padStart(2, '0'); }
