/**
 * PyTorch's legacy (pre-1.6, non-zip) `.pth` format, as torch/serialization.py `_legacy_save` writes
 * it and `_legacy_load` reads it (format notes: the var-tiny-pth fixture set's README, "Legacy"):
 *
 *   1. pickle: the magic number 0x1950a86a20f9469cfc6c
 *   2. pickle: the protocol version, 1001
 *   3. pickle: sys_info, a dict {protocol_version, little_endian, type_sizes}
 *   4. pickle: the object; each storage is a persistent id
 *      ('storage', torch.XxxStorage, key, location, numel, view_metadata)
 *   5. pickle: the list of storage keys, in the order their data follows
 *   6. per key: an 8-byte little-endian element count, then count × itemsize raw bytes (no padding)
 *
 * This module works on bytes only. It parses the stream, checks every length against the bytes
 * left, and records where each storage's elements lie; it does not build tensors. The object pickle
 * (4) runs through the caller's unpickler hooks (pth.ts's allow-list) with the persistent ids cut to
 * the zip format's 5-tuple; pickles 1–3 and 5 run with hooks that refuse every global, REDUCE,
 * NEWOBJ, BUILD and persistent id (they hold plain data only). `view_metadata` is non-None only in
 * files written before PyTorch 0.4 (storage views); those are refused with a typed error.
 */
import { PthError, PickleError } from './errors.js';
import { ITEMSIZE, type StoredDType } from './dtype.js';
import { type ZipEntry } from './zip.js';
import { describe, isTuple, tuple, unpickle, type UnpickleResult, type UnpicklerHooks } from './pickle.js';

/** `torch.serialization.MAGIC_NUMBER`. */
export const LEGACY_MAGIC_NUMBER = 0x1950a86a20f9469cfc6cn;
/** `torch.serialization.PROTOCOL_VERSION`. */
export const LEGACY_PROTOCOL_VERSION = 1001;

/** One storage record of a legacy file. */
export interface LegacyStorage {
  key: string;
  /** Element type of the first persistent id that named this key (torch uses that one too). */
  dtype: StoredDType;
  /** The element count written before the data. */
  numel: number;
  /** File offset of the first element. */
  dataOffset: number;
  /** numel × itemsize. */
  nbytes: number;
}

export interface LegacyPth {
  /** The object pickle's result (storages as whatever the hooks' persistentLoad returned). */
  pickle: UnpickleResult;
  protocolVersion: number;
  littleEndian: boolean;
  /** Storage records by key, in file order. */
  storages: Map<string, LegacyStorage>;
}

/** The shape of a storage the hooks return from a persistent id (pth.ts's StorageRef). */
interface StorageLike { key: string; dtype: StoredDType; numel: number }
const isStorageLike = (x: unknown): x is StorageLike =>
  typeof x === 'object' && x !== null && typeof (x as StorageLike).key === 'string' &&
  Object.prototype.hasOwnProperty.call(ITEMSIZE, (x as StorageLike).dtype) && Number.isSafeInteger((x as StorageLike).numel);

function lerr(code: string, msg: string): PthError { return new PthError(code, msg); }

/** True when `bytes` starts like a legacy file: a pickle (PROTO opcode) rather than a zip local header. */
export function looksLikeLegacyPth(bytes: Uint8Array): boolean {
  return bytes.length > 0 && bytes[0] === 0x80;
}

const plainData: UnpicklerHooks = {
  findGlobal(module, name) { throw new PickleError('forbidden-global', `refusing global '${module}.${name}' in a legacy .pth header pickle (plain data only)`); },
  reduce(fn) { throw new PickleError('not-callable', `REDUCE on ${describe(fn)} in a legacy .pth header pickle`); },
  newObj(cls) { throw new PickleError('not-callable', `NEWOBJ on ${describe(cls)} in a legacy .pth header pickle`); },
  build(obj) { throw new PickleError('pickle-build', `BUILD on ${describe(obj)} in a legacy .pth header pickle`); },
  persistentLoad(pid) { throw new PickleError('bad-persistent-id', `persistent id ${describe(pid)} in a legacy .pth header pickle`); },
};

/** Parse a legacy .pth held in `bytes`; `hooks` resolve the object pickle (see the module comment). */
export function parseLegacyPth(bytes: Uint8Array, hooks: UnpicklerHooks): LegacyPth {
  let pos = 0;
  const next = (what: string, h: UnpicklerHooks): UnpickleResult => {
    if (pos >= bytes.length) throw lerr('pth-legacy-truncated', `legacy .pth ends at byte ${pos} before the ${what} pickle`);
    let r: UnpickleResult;
    try { r = unpickle(bytes.subarray(pos), h); } catch (e) {
      if (e instanceof PthError) e.message = `legacy .pth, ${what} pickle at byte ${pos}: ${e.message}`;
      throw e;
    }
    pos += r.end;
    return r;
  };

  let magic: unknown;
  try { magic = next('magic number', plainData).value; } catch (e) {
    if (!(e instanceof PthError)) throw e;
    throw lerr('pth-legacy-magic', `not a PyTorch file: neither a zip archive nor a legacy .pth, whose first pickle is the magic number (${e.message})`);
  }
  if (magic !== LEGACY_MAGIC_NUMBER) {
    throw lerr('pth-legacy-magic', `not a PyTorch file: first pickle is ${describe(magic)}, expected the legacy magic number 0x${LEGACY_MAGIC_NUMBER.toString(16)} (or a zip archive)`);
  }
  const version = next('protocol version', plainData).value;
  if (version !== LEGACY_PROTOCOL_VERSION) throw lerr('pth-legacy-version', `legacy protocol version is ${describe(version)}, expected ${LEGACY_PROTOCOL_VERSION}`);
  const sysInfo = next('sys_info', plainData).value;
  if (!(sysInfo instanceof Map)) throw lerr('pth-legacy-sysinfo', `sys_info is ${describe(sysInfo)}, expected a dict`);
  const le = sysInfo.get('little_endian');
  if (le !== undefined && typeof le !== 'boolean') throw lerr('pth-legacy-sysinfo', `sys_info['little_endian'] is ${describe(le)}, expected a bool`);

  // the object: legacy persistent ids carry a 6th element (view_metadata) the zip format lacks
  const declared = new Map<string, StorageLike>();
  const objHooks: UnpicklerHooks = {
    ...hooks,
    persistentLoad(pid) {
      if (isTuple(pid) && pid.length === 6 && pid[0] === 'storage') {
        if (pid[5] !== null) throw new PickleError('pth-legacy-storage-view', `persistent id of storage ${describe(pid[2])} has view metadata (a storage view, written by PyTorch < 0.4): not supported`);
        const s = hooks.persistentLoad(tuple(pid.slice(0, 5)));
        if (!isStorageLike(s)) throw new PickleError('bad-persistent-id', `persistent id resolved to ${describe(s)}, not a storage`);
        if (!declared.has(s.key)) declared.set(s.key, s);
        return s;
      }
      throw new PickleError('bad-persistent-id', `legacy persistent id must be ('storage', type, key, location, numel, view_metadata), got ${describe(pid)}`);
    },
  };
  const pickle = next('object', objHooks);

  const keys = next('storage keys', plainData).value;
  if (!Array.isArray(keys) || isTuple(keys) || !keys.every((k) => typeof k === 'string')) {
    throw lerr('pth-legacy-keys', `storage key list is ${describe(keys)}, expected a list of str`);
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const storages = new Map<string, LegacyStorage>();
  for (const key of keys as string[]) {
    const d = declared.get(key);
    if (!d) throw lerr('pth-legacy-keys', `storage key '${key}' is listed but no persistent id names it`);
    if (storages.has(key)) throw lerr('pth-legacy-keys', `storage key '${key}' is listed twice`);
    if (bytes.length - pos < 8) throw lerr('pth-legacy-truncated', `storage '${key}': the element count at byte ${pos} needs 8 bytes, only ${bytes.length - pos} left`);
    const lo = dv.getUint32(pos, true), hi = dv.getUint32(pos + 4, true);
    const size = ITEMSIZE[d.dtype], left = bytes.length - pos - 8;
    const numel = hi * 2 ** 32 + lo;
    if (numel * size > left) {
      throw lerr('pth-legacy-truncated', `storage '${key}' at byte ${pos} declares ${hi ? dv.getBigUint64(pos, true) : numel} elements of ${d.dtype} (${numel * size} bytes), only ${left} bytes left`);
    }
    storages.set(key, { key, dtype: d.dtype, numel, dataOffset: pos + 8, nbytes: numel * size });
    pos += 8 + numel * size;
  }
  for (const k of declared.keys()) if (!storages.has(k)) throw lerr('pth-missing-storage', `storage '${k}' is named by a persistent id but has no data record (keys listed: ${keys.length})`);
  return { pickle, protocolVersion: LEGACY_PROTOCOL_VERSION, littleEndian: le !== false, storages };
}

/**
 * The storage records of a parsed legacy file as a read-only container of STORED entries named
 * `data/<key>`: the same interface pth.ts reads zip archives through (ZipReader's get / read /
 * dataOffset / entries), so one materialiser serves both formats.
 */
export class LegacyContainer {
  readonly entries: ZipEntry[];
  readonly zip64 = false;
  private readonly byName = new Map<string, ZipEntry>();
  private readonly offsets = new Map<ZipEntry, number>();

  constructor(private readonly bytes: Uint8Array, parsed: LegacyPth) {
    this.entries = [...parsed.storages.values()].map((s) => {
      const e: ZipEntry = { name: `data/${s.key}`, method: 0, flags: 0, crc32: 0, compressedSize: s.nbytes, uncompressedSize: s.nbytes, localHeaderOffset: s.dataOffset - 8 };
      this.byName.set(e.name, e);
      this.offsets.set(e, s.dataOffset);
      return e;
    });
  }
  get(name: string): ZipEntry | undefined { return this.byName.get(name); }
  dataOffset(e: ZipEntry): number { return this.offsets.get(e) ?? -1; }
  read(e: ZipEntry, from = 0, length = e.uncompressedSize - from): Uint8Array {
    const at = this.offsets.get(e);
    if (at === undefined || from < 0 || length < 0 || from + length > e.uncompressedSize) {
      throw lerr('pth-storage-size', `storage record '${e.name}': bytes [${from}, ${from + length}) requested but it holds ${e.uncompressedSize}`);
    }
    return this.bytes.subarray(at + from, at + from + length);
  }
  /** The bytes are already in memory; nothing to swap. */
  setSource(): void { /* no-op */ }
}
