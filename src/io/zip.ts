/**
 * A minimal read-only zip reader for PyTorch checkpoints (PKWARE APPNOTE 6.3.x, sections 4.3 / 4.4 / 4.5.3).
 *
 * What `torch.save` writes (see the README of the var-tiny-pth fixture in the shared fixtures): STORED entries only,
 * general-purpose flag bit 3 (sizes in the local header are 0; the real ones are in the central
 * directory and a trailing data descriptor), an `FB` padding extra field that 64-byte-aligns every
 * entry's data, and always a zip64 end-of-central-directory record + locator.
 *
 * Reading: find the end-of-central-directory record (EOCD, 0x06054b50) in the last 64 KiB + 22
 * bytes; if any of its fields is saturated (0xFFFF / 0xFFFFFFFF), take the values from the zip64
 * EOCD (0x06064b50) found through the zip64 locator (0x07064b50) just before it. Walk the central
 * directory (0x02014b50 headers), replacing saturated sizes / offsets by the zip64 extended
 * information extra field (id 0x0001). An entry's data starts after its local header
 * (0x04034b50, 30 bytes + name + extra); its size is always taken from the central directory.
 *
 * Every offset and length is checked against the file before it is used; nothing is allocated
 * from a declared size that has not been checked. Only method 0 (STORED) can be read; anything
 * else is a ZipError naming the entry and the method.
 */
import { ZipError } from './errors.js';
import { type ByteSource } from './source.js';

export interface ZipEntry {
  name: string;
  /** 0 = STORED, 8 = DEFLATE, ... */
  method: number;
  flags: number;
  crc32: number;
  compressedSize: number;
  uncompressedSize: number;
  localHeaderOffset: number;
}

const SIG_EOCD = 0x06054b50, SIG_Z64_LOC = 0x07064b50, SIG_Z64_EOCD = 0x06064b50, SIG_CEN = 0x02014b50, SIG_LOC = 0x04034b50;
const U16_MAX = 0xffff, U32_MAX = 0xffffffff;
const METHOD_NAMES: Record<number, string> = { 0: 'STORED', 8: 'DEFLATE', 9: 'DEFLATE64', 12: 'BZIP2', 14: 'LZMA', 93: 'ZSTD', 95: 'XZ' };

function zerr(code: string, msg: string): ZipError { return new ZipError(code, msg); }

function dvOf(b: Uint8Array): DataView { return new DataView(b.buffer, b.byteOffset, b.byteLength); }

/** u64 LE as a safe integer, or a ZipError. */
function u64(dv: DataView, at: number, what: string): number {
  const lo = dv.getUint32(at, true), hi = dv.getUint32(at + 4, true);
  const v = hi * 2 ** 32 + lo;
  if (!Number.isSafeInteger(v)) throw zerr('zip-bad-field', `${what} = ${dv.getBigUint64(at, true)} is not a usable file offset/size`);
  return v;
}

export class ZipReader {
  readonly entries: ZipEntry[];
  readonly zip64: boolean;
  private readonly byName = new Map<string, ZipEntry>();
  private readonly dataOffsets = new Map<ZipEntry, number>();

  constructor(private source: ByteSource) {
    const { entries, zip64 } = readCentralDirectory(source);
    this.entries = entries;
    this.zip64 = zip64;
    for (const e of entries) {
      if (this.byName.has(e.name)) throw zerr('zip-duplicate', `entry '${e.name}' appears twice in the central directory`);
      this.byName.set(e.name, e);
    }
  }

  /** Swap the byte source (e.g. a FileSource for a whole-file MemorySource of the same file). */
  setSource(source: ByteSource): void {
    if (source.length !== this.source.length) throw new Error('ZipReader.setSource: the new source has a different length');
    this.source = source;
  }

  get(name: string): ZipEntry | undefined { return this.byName.get(name); }

  /** Absolute file offset of an entry's data (reads and checks its local header once). */
  dataOffset(e: ZipEntry): number {
    const cached = this.dataOffsets.get(e);
    if (cached !== undefined) return cached;
    const len = this.source.length;
    if (e.localHeaderOffset + 30 > len) throw zerr('zip-bad-offset', `entry '${e.name}': local header offset ${e.localHeaderOffset} is outside the ${len}-byte file`);
    const h = this.source.read(e.localHeaderOffset, 30), dv = dvOf(h);
    if (dv.getUint32(0, true) !== SIG_LOC) throw zerr('zip-bad-local-header', `entry '${e.name}': no local file header signature at offset ${e.localHeaderOffset}`);
    const nameLen = dv.getUint16(26, true), extraLen = dv.getUint16(28, true);
    const start = e.localHeaderOffset + 30 + nameLen + extraLen;
    if (start + e.compressedSize > len) {
      throw zerr('zip-bad-offset', `entry '${e.name}': data [${start}, ${start + e.compressedSize}) runs past the end of the ${len}-byte file`);
    }
    const localName = decodeName(this.source.read(e.localHeaderOffset + 30, nameLen), true);
    if (localName !== e.name) throw zerr('zip-name-mismatch', `entry '${e.name}': local header names it '${localName}'`);
    this.dataOffsets.set(e, start);
    return start;
  }

  /**
   * Bytes [from, from + length) of a STORED entry's data (default: all of it). A view of the file
   * buffer for a memory source, a fresh aligned buffer for a file source.
   */
  read(e: ZipEntry, from = 0, length = e.uncompressedSize - from, opts: { verifyCrc?: boolean } = {}): Uint8Array {
    if (e.flags & 1) throw zerr('zip-encrypted', `entry '${e.name}' is encrypted`);
    if (e.method !== 0) {
      throw zerr('zip-compressed', `entry '${e.name}' uses compression method ${e.method} (${METHOD_NAMES[e.method] ?? 'unknown'}); only STORED (0) entries can be read, as torch.save writes them`);
    }
    if (e.compressedSize !== e.uncompressedSize) {
      throw zerr('zip-bad-size', `entry '${e.name}' is STORED but its compressed size ${e.compressedSize} differs from its size ${e.uncompressedSize}`);
    }
    if (from < 0 || length < 0 || from + length > e.uncompressedSize) {
      throw zerr('zip-bad-size', `entry '${e.name}': bytes [${from}, ${from + length}) requested but the entry holds ${e.uncompressedSize}`);
    }
    const bytes = this.source.read(this.dataOffset(e) + from, length);
    if (opts.verifyCrc && from === 0 && length === e.uncompressedSize) {
      const c = crc32(bytes);
      if (c !== e.crc32) throw zerr('zip-crc', `entry '${e.name}': CRC-32 ${hex(c)} does not match the recorded ${hex(e.crc32)}`);
    }
    return bytes;
  }
}

function hex(n: number): string { return `0x${n.toString(16).padStart(8, '0')}`; }

function decodeName(b: Uint8Array, utf8: boolean): string {
  // non-fatal decoding: a corrupt name becomes U+FFFD, never an exception
  return new TextDecoder(utf8 ? 'utf-8' : 'latin1').decode(b);
}

function readCentralDirectory(src: ByteSource): { entries: ZipEntry[]; zip64: boolean } {
  const len = src.length;
  if (len < 22) throw zerr('zip-no-eocd', `file is ${len} bytes, too short for a zip archive (torch.save since PyTorch 1.6 writes zip files)`);
  // --- EOCD: scan backwards through the last 22 + 65535 bytes
  const tailLen = Math.min(len, 22 + 0xffff), tailStart = len - tailLen;
  const tail = src.read(tailStart, tailLen), tdv = dvOf(tail);
  let eocd = -1;
  for (let p = tailLen - 22; p >= 0; p--) {
    if (tdv.getUint32(p, true) === SIG_EOCD && p + 22 + tdv.getUint16(p + 20, true) <= tailLen) { eocd = p; break; }
  }
  if (eocd < 0) {
    const head = src.read(0, Math.min(2, len));
    const legacy = head[0] === 0x80 && head.length > 1 && head[1] <= 5;
    throw zerr('zip-no-eocd', legacy
      ? 'this is a legacy (pre-1.6, non-zip) torch.save file, which is not supported; re-save it with torch >= 1.6'
      : 'no zip end-of-central-directory record found: not a zip / torch.save archive, or truncated');
  }
  const eocdAbs = tailStart + eocd;
  let count = tdv.getUint16(eocd + 10, true);
  let cdSize = tdv.getUint32(eocd + 12, true);
  let cdOffset = tdv.getUint32(eocd + 16, true);
  const diskNo = tdv.getUint16(eocd + 4, true), cdDisk = tdv.getUint16(eocd + 6, true);
  // --- zip64 locator (20 bytes right before the EOCD) and zip64 EOCD
  let zip64 = false, cdLimit = eocdAbs;
  if (eocdAbs >= 20) {
    const loc = src.read(eocdAbs - 20, 20), ldv = dvOf(loc);
    if (ldv.getUint32(0, true) === SIG_Z64_LOC) {
      zip64 = true;
      const z64At = u64(ldv, 8, 'zip64 EOCD offset');
      if (z64At + 56 > eocdAbs - 20) throw zerr('zip-bad-zip64', `zip64 EOCD offset ${z64At} is not before the zip64 locator at ${eocdAbs - 20}`);
      const z = src.read(z64At, 56), zdv = dvOf(z);
      if (zdv.getUint32(0, true) !== SIG_Z64_EOCD) throw zerr('zip-bad-zip64', `no zip64 EOCD signature at offset ${z64At}`);
      cdLimit = z64At;
      if (count === U16_MAX) count = u64(zdv, 32, 'zip64 entry count');
      if (cdSize === U32_MAX) cdSize = u64(zdv, 40, 'zip64 central directory size');
      if (cdOffset === U32_MAX) cdOffset = u64(zdv, 48, 'zip64 central directory offset');
    }
  }
  if (!zip64 && (count === U16_MAX || cdSize === U32_MAX || cdOffset === U32_MAX)) {
    throw zerr('zip-bad-zip64', 'the EOCD has saturated (0xFFFF/0xFFFFFFFF) fields but there is no zip64 EOCD locator');
  }
  if (diskNo !== 0 && diskNo !== U16_MAX || cdDisk !== 0 && cdDisk !== U16_MAX) throw zerr('zip-multi-disk', 'multi-disk (split) zip archives are not supported');
  if (cdOffset + cdSize > cdLimit) {
    throw zerr('zip-bad-cd', `central directory [${cdOffset}, ${cdOffset + cdSize}) runs past the end-of-central-directory record at ${cdLimit}`);
  }
  // each central header is ≥ 46 bytes, so the declared count is bounded by the directory size
  if (count * 46 > cdSize) throw zerr('zip-bad-cd', `${count} entries cannot fit in a ${cdSize}-byte central directory`);
  // --- central directory
  const cd = src.read(cdOffset, cdSize), dv = dvOf(cd);
  const entries: ZipEntry[] = [];
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cdSize) throw zerr('zip-bad-cd', `central directory ends inside entry ${i}`);
    if (dv.getUint32(p, true) !== SIG_CEN) throw zerr('zip-bad-cd', `bad central directory header signature for entry ${i} at offset ${cdOffset + p}`);
    const flags = dv.getUint16(p + 8, true), method = dv.getUint16(p + 10, true), crc = dv.getUint32(p + 16, true);
    let csize = dv.getUint32(p + 20, true), usize = dv.getUint32(p + 24, true);
    const nameLen = dv.getUint16(p + 28, true), extraLen = dv.getUint16(p + 30, true), commentLen = dv.getUint16(p + 32, true);
    const disk = dv.getUint16(p + 34, true);
    let lho = dv.getUint32(p + 42, true);
    const end = p + 46 + nameLen + extraLen + commentLen;
    if (end > cdSize) throw zerr('zip-bad-cd', `central directory entry ${i} runs past the end of the directory`);
    const name = decodeName(cd.subarray(p + 46, p + 46 + nameLen), (flags & 0x800) !== 0);
    // zip64 extended information (APPNOTE 4.5.3): fields present only for saturated values, in this order
    if (usize === U32_MAX || csize === U32_MAX || lho === U32_MAX || disk === U16_MAX) {
      const ex = findExtra(cd.subarray(p + 46 + nameLen, p + 46 + nameLen + extraLen), 0x0001);
      if (!ex) throw zerr('zip-bad-zip64', `entry '${name}' has saturated sizes/offset but no zip64 extra field`);
      const edv = dvOf(ex);
      let q = 0;
      const next = (what: string): number => {
        if (q + 8 > ex.length) throw zerr('zip-bad-zip64', `entry '${name}': zip64 extra field too short for ${what}`);
        const v = u64(edv, q, `entry '${name}' zip64 ${what}`);
        q += 8;
        return v;
      };
      if (usize === U32_MAX) usize = next('size');
      if (csize === U32_MAX) csize = next('compressed size');
      if (lho === U32_MAX) lho = next('local header offset');
    }
    if (lho >= cdOffset || csize > cdOffset - lho) {
      throw zerr('zip-bad-offset', `entry '${name}': local header at ${lho} with ${csize} data bytes does not lie before the central directory at ${cdOffset}`);
    }
    entries.push({ name, method, flags, crc32: crc, compressedSize: csize, uncompressedSize: usize, localHeaderOffset: lho });
    p = end;
  }
  return { entries, zip64 };
}

/** The data of the first extra field with `id` in an extra block, or null. */
function findExtra(extra: Uint8Array, id: number): Uint8Array | null {
  const dv = dvOf(extra);
  for (let p = 0; p + 4 <= extra.length;) {
    const fid = dv.getUint16(p, true), size = dv.getUint16(p + 2, true);
    if (p + 4 + size > extra.length) return null;
    if (fid === id) return extra.subarray(p + 4, p + 4 + size);
    p += 4 + size;
  }
  return null;
}

let crcTable: Uint32Array | null = null;
/** CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), as zip records it. */
export function crc32(b: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = 0; i < b.length; i++) c = crcTable[(c ^ b[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
