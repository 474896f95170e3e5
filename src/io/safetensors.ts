/**
 * safetensors reader and writer (format: https://github.com/huggingface/safetensors, "Format").
 *
 * Layout: u64 LE header length N, then N bytes of UTF-8 JSON, then the data section.
 * The JSON is an object `{name: {dtype, shape, data_offsets: [begin, end]}, ..., "__metadata__"?:
 * {string: string}}`; offsets are relative to the start of the data section, tensors are
 * C-contiguous little-endian. The header may be padded at the end with spaces (0x20).
 *
 * Reading validates everything before allocating anything sized by the file: header length ≥ 2,
 * ≤ 100 MB and inside the file; the JSON is an object; every entry has a known dtype, a shape of
 * non-negative integers, `begin ≤ end` inside the data section, `end − begin = numel × itemsize`,
 * and no two tensors overlap. Tensors come back in header order (the raw JSON key order, which
 * `JSON.parse` alone would not keep for integer-like names).
 *
 * Memory: see source.ts. F32 (and I32) tensors at 4-byte-aligned offsets are zero-copy views of
 * the file buffer (or of the caller's bytes, which the tensors then alias). F16/BF16/F64 become
 * new float32 arrays; I64/U64/I16/I8/U8/BOOL/U16/U32 become new int32 arrays with a range check.
 *
 * Writing: float32 tensors as F32, int32 tensors as I32 (or I64 with `intDtype: 'I64'`), in the
 * given order, header padded with spaces to a multiple of 8 bytes so the data section (and every
 * F32 tensor) is aligned. `writeSafetensors` streams tensor bytes straight from the tensors (no
 * whole-file copy) into `path + '.tmp-<pid>'`, fsyncs it and renames it over `path`, so a crash or
 * error mid-write leaves any previous file intact.
 */
import { nodeFs, nodePath, pid } from './node-fs.js';
import { Tensor } from '../tensor/tensor.js';
import { SafetensorsError, WeightFileError, withFile } from './errors.js';
import { ITEMSIZE, HOST_LE, boundedNumel, decodeElements, isStoredDType, type StoredDType } from './dtype.js';
import { MemorySource, openFile, wholeOrPerTensor, type ByteSource, type FileSource, type ReadMode } from './source.js';

export const MAX_HEADER_BYTES = 100 * 1000 * 1000;

/** dtypes the format defines but this reader does not convert. */
const KNOWN_UNSUPPORTED = new Set(['F8_E4M3', 'F8_E5M2', 'F8_E8M0', 'F4', 'F6_E2M3', 'F6_E3M2', 'C64', 'C128']);

export interface SafetensorsEntry {
  name: string;
  dtype: StoredDType;
  shape: number[];
  /** [begin, end) relative to the data section. */
  dataOffsets: [number, number];
}

export interface SafetensorsHeader {
  /** N, the JSON length in bytes. */
  headerLength: number;
  /** Absolute file offset of the data section (8 + N). */
  dataStart: number;
  /** Bytes in the data section (file length − dataStart). */
  dataLength: number;
  /** `__metadata__`, or null when absent. */
  metadata: Record<string, string> | null;
  /** Tensors in header order. */
  entries: SafetensorsEntry[];
}

export interface ReadSafetensorsOptions {
  /**
   * For paths: 'auto' (default) reads the file into one buffer and views it, falling back to
   * per-tensor reads if that allocation fails; 'whole' insists on one buffer; 'per-tensor' reads
   * each tensor separately (no view of a shared buffer). Ignored for in-memory bytes.
   */
  readMode?: ReadMode;
}

function err(code: string, msg: string): SafetensorsError { return new SafetensorsError(code, msg); }

// ---------------------------------------------------------------------------------------------
// reading

/** Parse and validate the header of a safetensors file or buffer (reads only the header from a file). */
export function readSafetensorsHeader(src: string | Uint8Array): SafetensorsHeader {
  return withSource(src, (source) => parseHeader(source));
}

/** All tensors, in header order. */
export function readSafetensors(src: string | Uint8Array, opts: ReadSafetensorsOptions = {}): Map<string, Tensor> {
  return readSafetensorsFile(src, opts).tensors;
}

/** All tensors (header order) and the `__metadata__` map (null when absent). */
export function readSafetensorsFile(
  src: string | Uint8Array, opts: ReadSafetensorsOptions = {},
): { tensors: Map<string, Tensor>; metadata: Record<string, string> | null } {
  return withSource(src, (source, setSource) => {
    const header = parseHeader(source);
    const mode = opts.readMode ?? 'auto';
    if (source instanceof MemorySource || mode === 'per-tensor') return { tensors: readEntries(source, header), metadata: header.metadata };
    const fileSource = source as FileSource;
    let data: ByteSource;
    if (mode === 'whole') { data = fileSource.toMemory(); fileSource.close(); } else data = wholeOrPerTensor(fileSource);
    setSource(data);
    return { tensors: readEntries(data, header), metadata: header.metadata };
  });
}

function withSource<T>(src: string | Uint8Array, fn: (s: ByteSource, set: (s: ByteSource) => void) => T): T {
  const file = typeof src === 'string' ? src : undefined;
  let source: ByteSource | null = null;
  try {
    source = typeof src === 'string' ? openFile(src, SafetensorsError) : MemorySource.of(checkBytes(src), SafetensorsError);
    return fn(source, (s) => { source = s; });
  } catch (e) {
    if (e instanceof WeightFileError) throw withFile(e, file);
    throw e;
  } finally {
    source?.close();
  }
}

function checkBytes(b: unknown): Uint8Array {
  if (!(b instanceof Uint8Array)) throw new TypeError('readSafetensors: expected a file path or a Uint8Array');
  return b;
}

function readEntries(source: ByteSource, h: SafetensorsHeader): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const e of h.entries) {
    const [b, end] = e.dataOffsets;
    const bytes = source.read(h.dataStart + b, end - b);
    const count = (end - b) / ITEMSIZE[e.dtype];
    const data = decodeElements(bytes, e.dtype, count, true, `tensor '${e.name}'`, SafetensorsError);
    out.set(e.name, new Tensor(data, e.shape));
  }
  return out;
}

function parseHeader(source: ByteSource): SafetensorsHeader {
  const len = source.length;
  if (len < 8) throw err('truncated', `file is ${len} bytes; a safetensors file needs at least the 8-byte header length`);
  const lenBytes = source.read(0, 8);
  const dv = new DataView(lenBytes.buffer, lenBytes.byteOffset, 8);
  const lo = dv.getUint32(0, true), hi = dv.getUint32(4, true);
  if (hi !== 0 || lo > MAX_HEADER_BYTES) {
    throw err('header-too-large', `header length ${dv.getBigUint64(0, true)} exceeds the ${MAX_HEADER_BYTES}-byte limit (corrupt file or not safetensors)`);
  }
  const n = lo;
  if (n < 2) throw err('bad-header', `header length ${n} is too small to hold a JSON object`);
  if (8 + n > len) throw err('header-out-of-range', `header length ${n} runs past the end of the ${len}-byte file`);
  let text: string;
  try { text = new TextDecoder('utf-8', { fatal: true }).decode(source.read(8, n)); } catch (e) {
    throw new SafetensorsError('bad-header', 'header is not valid UTF-8', { cause: e });
  }
  let json: unknown;
  try { json = JSON.parse(text); } catch (e) {
    throw new SafetensorsError('bad-header', `header is not valid JSON: ${(e as Error).message}`, { cause: e });
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw err('bad-header', `header JSON must be an object, got ${Array.isArray(json) ? 'an array' : json === null ? 'null' : typeof json}`);
  }
  const obj = json as Record<string, unknown>;
  const dataStart = 8 + n, dataLength = len - dataStart;
  const keys = topLevelKeys(text);
  const seen = new Set<string>();
  let metadata: Record<string, string> | null = null;
  const entries: SafetensorsEntry[] = [];
  for (const name of keys) {
    if (seen.has(name)) throw err('duplicate-key', `tensor '${name}' appears twice in the header`);
    seen.add(name);
    const v = obj[name];
    if (name === '__metadata__') { metadata = parseMetadata(v); continue; }
    entries.push(parseEntry(name, v, dataLength));
  }
  checkOverlaps(entries);
  return { headerLength: n, dataStart, dataLength, metadata, entries };
}

function parseMetadata(v: unknown): Record<string, string> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw err('bad-metadata', '__metadata__ must be an object of string → string');
  const pairs = Object.entries(v as Record<string, unknown>);
  for (const [k, s] of pairs) {
    if (typeof s !== 'string') throw err('bad-metadata', `__metadata__['${k}'] must be a string, got ${s === null ? 'null' : typeof s}`);
  }
  return Object.fromEntries(pairs) as Record<string, string>; // own data properties, even for '__proto__'
}

function parseEntry(name: string, v: unknown, dataLength: number): SafetensorsEntry {
  const where = `tensor '${name}'`;
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw err('bad-entry', `${where}: entry must be an object {dtype, shape, data_offsets}`);
  const { dtype, shape, data_offsets: offs } = v as Record<string, unknown>;
  if (typeof dtype !== 'string') throw err('bad-dtype', `${where}: dtype must be a string`);
  if (!isStoredDType(dtype)) {
    if (KNOWN_UNSUPPORTED.has(dtype)) throw err('unsupported-dtype', `${where}: dtype ${dtype} is not supported (supported: ${Object.keys(ITEMSIZE).join(', ')})`);
    throw err('unknown-dtype', `${where}: unknown dtype '${dtype}' (expected one of ${Object.keys(ITEMSIZE).join(', ')})`);
  }
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw err('bad-shape', `${where}: shape must be an array of non-negative integers, got ${brief(shape)}`);
  }
  if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw err('bad-offsets', `${where}: data_offsets must be [begin, end] with non-negative integers, got ${brief(offs)}`);
  }
  const [b, e] = offs as [number, number];
  if (b > e) throw err('bad-offsets', `${where}: data_offsets [${b}, ${e}] has begin > end`);
  if (e > dataLength) throw err('offsets-out-of-range', `${where}: data_offsets [${b}, ${e}] run past the ${dataLength}-byte data section`);
  const size = ITEMSIZE[dtype];
  const numel = boundedNumel(shape as number[], dataLength);
  if (numel < 0 || numel * size !== e - b) {
    throw err('size-mismatch', `${where}: shape [${shape.join(', ')}] of ${dtype} needs ${numel < 0 ? 'more than the data section holds' : `${numel * size} bytes`}, but data_offsets [${b}, ${e}] span ${e - b} bytes`);
  }
  return { name, dtype, shape: shape as number[], dataOffsets: [b, e] };
}

/** A short, non-recursive rendering of a JSON value for messages (JSON.stringify recurses). */
function brief(v: unknown): string {
  if (Array.isArray(v)) {
    const items = v.slice(0, 8).map((x) => (Array.isArray(x) ? '[…]' : x !== null && typeof x === 'object' ? '{…}' : String(JSON.stringify(x)).slice(0, 40)));
    return `[${items.join(', ')}${v.length > 8 ? ', …' : ''}]`;
  }
  if (v !== null && typeof v === 'object') return '{…}';
  return String(JSON.stringify(v)).slice(0, 40);
}

function checkOverlaps(entries: SafetensorsEntry[]): void {
  const sorted = entries.filter((e) => e.dataOffsets[1] > e.dataOffsets[0]).sort((a, b) => a.dataOffsets[0] - b.dataOffsets[0]);
  for (let i = 1; i < sorted.length; i++) {
    const p = sorted[i - 1], c = sorted[i];
    if (c.dataOffsets[0] < p.dataOffsets[1]) {
      throw err('overlap', `tensors '${p.name}' [${p.dataOffsets.join(', ')}] and '${c.name}' [${c.dataOffsets.join(', ')}] overlap`);
    }
  }
}

/**
 * The top-level keys of a JSON object text, in source order (decoded). The text must already
 * have been validated by JSON.parse. Linear scan, no recursion.
 */
function topLevelKeys(text: string): string[] {
  const keys: string[] = [];
  let depth = 0, expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      let j = i + 1;
      while (text.charCodeAt(j) !== 0x22) j += text.charCodeAt(j) === 0x5c /* \ */ ? 2 : 1;
      if (depth === 1 && expectKey) { keys.push(JSON.parse(text.slice(i, j + 1)) as string); expectKey = false; }
      i = j;
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      depth++;
      if (depth === 1) expectKey = true;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      depth--;
    } else if (c === 0x2c /* , */ && depth === 1) {
      expectKey = true;
    }
  }
  return keys;
}

// ---------------------------------------------------------------------------------------------
// writing

export interface WriteSafetensorsOptions {
  /** Stored dtype of int32 tensors: 'I32' (default) or 'I64' (what torch uses for index buffers). */
  intDtype?: 'I32' | 'I64';
  /** Called after each tensor is written (e.g. for a progress bar). Throwing aborts the write. */
  onProgress?: (name: string, bytesDone: number, bytesTotal: number) => void;
}

type TensorMap = Map<string, Tensor> | Record<string, Tensor>;

interface Plan { header: Uint8Array; items: { name: string; tensor: Tensor; dtype: 'F32' | 'I32' | 'I64'; nbytes: number }[]; dataBytes: number }

function plan(tensors: TensorMap, metadata: Record<string, string> | undefined, opts: WriteSafetensorsOptions): Plan {
  const intDtype = opts.intDtype ?? 'I32';
  if (intDtype !== 'I32' && intDtype !== 'I64') throw err('bad-option', `intDtype must be 'I32' or 'I64', got '${String(intDtype)}'`);
  const list = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  const parts: string[] = [];
  if (metadata !== undefined) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw err('bad-metadata', `metadata['${k}'] must be a string, got ${typeof v}`);
    }
    parts.push(`"__metadata__":${JSON.stringify(metadata)}`);
  }
  const items: Plan['items'] = [];
  let off = 0;
  for (const [name, t] of list) {
    if (typeof name !== 'string') throw err('bad-name', `tensor names must be strings, got ${typeof name}`);
    if (name === '__metadata__') throw err('bad-name', `'__metadata__' is reserved and cannot name a tensor`);
    if (!(t instanceof Tensor)) throw err('bad-tensor', `'${name}' is not a Tensor`);
    if (t.dtype === 'bfloat16') throw err('bad-tensor', `'${name}' holds bf16 weights (an inference-only copy): save the float32 model instead`);
    const dtype = t.dtype === 'float32' ? 'F32' : intDtype;
    const nbytes = t.size * ITEMSIZE[dtype];
    parts.push(`${JSON.stringify(name)}:${JSON.stringify({ dtype, shape: t.shape, data_offsets: [off, off + nbytes] })}`);
    items.push({ name, tensor: t, dtype, nbytes });
    off += nbytes;
  }
  const json = new TextEncoder().encode(`{${parts.join(',')}}`);
  const padded = Math.ceil(json.length / 8) * 8; // 8 + N ≡ 0 (mod 8): the data section is 8-aligned
  const header = new Uint8Array(8 + padded).fill(0x20, 8 + json.length);
  new DataView(header.buffer).setBigUint64(0, BigInt(padded), true);
  header.set(json, 8);
  return { header, items, dataBytes: off };
}

/** Little-endian bytes of a tensor as stored (a view when no conversion is needed). */
function tensorBytes(t: Tensor, dtype: 'F32' | 'I32' | 'I64'): Uint8Array {
  const d = t.data;
  if (dtype === 'I64') {
    const out = new Uint8Array(d.length * 8), dv = new DataView(out.buffer);
    for (let i = 0; i < d.length; i++) { dv.setInt32(8 * i, d[i], true); dv.setInt32(8 * i + 4, d[i] < 0 ? -1 : 0, true); }
    return out;
  }
  if (HOST_LE) return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
  const out = new Uint8Array(d.length * 4), dv = new DataView(out.buffer);
  for (let i = 0; i < d.length; i++) { if (dtype === 'F32') dv.setFloat32(4 * i, d[i], true); else dv.setInt32(4 * i, d[i], true); }
  return out;
}

/** The complete file as one buffer (small files, tests, network transfer). */
export function encodeSafetensors(tensors: TensorMap, metadata?: Record<string, string>, opts: WriteSafetensorsOptions = {}): Uint8Array {
  const p = plan(tensors, metadata, opts);
  const out = new Uint8Array(p.header.length + p.dataBytes);
  out.set(p.header, 0);
  let off = p.header.length;
  for (const it of p.items) {
    out.set(tensorBytes(it.tensor, it.dtype), off);
    off += it.nbytes;
    opts.onProgress?.(it.name, off - p.header.length, p.dataBytes);
  }
  return out;
}

/**
 * Write atomically: stream into `path.tmp-<pid>`, fsync, rename over `path`. On any error the
 * temporary file is removed and an existing file at `path` is untouched.
 */
export function writeSafetensors(path: string, tensors: TensorMap, metadata?: Record<string, string>, opts: WriteSafetensorsOptions = {}): void {
  const p = plan(tensors, metadata, opts);
  const fs = nodeFs();
  const tmp = `${path}.tmp-${pid()}`;
  const fd = fs.openSync(tmp, 'w');
  try {
    writeAll(fd, p.header);
    let done = 0;
    for (const it of p.items) {
      writeAll(fd, tensorBytes(it.tensor, it.dtype));
      done += it.nbytes;
      opts.onProgress?.(it.name, done, p.dataBytes);
    }
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    try { fs.unlinkSync(tmp); } catch { /* already gone */ }
    throw e;
  }
  fs.closeSync(fd);
  fs.renameSync(tmp, path);
  fsyncDir(nodePath().dirname(path));
}

function writeAll(fd: number, bytes: Uint8Array): void {
  const CHUNK = 1 << 30, fs = nodeFs();
  for (let off = 0; off < bytes.length;) {
    off += fs.writeSync(fd, bytes, off, Math.min(CHUNK, bytes.length - off));
  }
}

/** Make the rename durable (best effort: not every platform can fsync a directory). */
function fsyncDir(dir: string): void {
  const fs = nodeFs();
  let fd: number | null = null;
  try { fd = fs.openSync(dir, 'r'); fs.fsyncSync(fd); } catch { /* unsupported here */ } finally { if (fd !== null) fs.closeSync(fd); }
}
