/**
 * Random-access byte sources for the weight readers.
 *
 * Memory policy (why this exists): loading VAR-d30 (≈8 GB of fp32) must not double memory.
 * - `MemorySource` wraps one ArrayBuffer (the whole file, read once, or bytes the caller passed).
 *   `read()` returns *views* into it, so a float32 tensor whose data starts at a 4-byte-aligned
 *   offset is a zero-copy `Float32Array` view of the file buffer (the buffer then stays alive as
 *   long as any such tensor does). Node 20 cannot make a single Uint8Array longer than 4 GiB, but
 *   an ArrayBuffer can be larger, and views of ≤ 4 GiB anywhere inside it are fine; that is why the
 *   source keeps the ArrayBuffer and hands out views of the requested range only.
 * - `FileSource` keeps a file descriptor and reads each requested range with `fs.readSync` into a
 *   freshly allocated buffer (offset 0, so always aligned). Peak memory is then the tensors
 *   themselves; nothing else of the file stays resident. Used when the whole file cannot be
 *   allocated at once, or when only a small part of a file is needed (a state dict inside a
 *   training checkpoint full of optimizer state).
 *
 * Paths are read through io/node-fs.ts (the Node edge); bytes need nothing of Node.
 *
 * Reads are bounds-checked by the formats before they are issued; `read()` re-checks and throws the
 * format's typed error, so a hostile length can never cause an allocation larger than the file.
 */
import { nodeFs } from './node-fs.js';
import { type ErrorClass } from './errors.js';

export type ReadMode = 'auto' | 'whole' | 'per-tensor';

export interface ByteSource {
  /** Total length in bytes. */
  readonly length: number;
  /** True when `read` returns views of one shared buffer (zero-copy). */
  readonly zeroCopy: boolean;
  /** Bytes [offset, offset + length). */
  read(offset: number, length: number): Uint8Array;
  close(): void;
}

const CHUNK = 1 << 30; // fs.readSync takes at most 2^31−1 bytes per call

export class MemorySource implements ByteSource {
  readonly zeroCopy = true;
  constructor(
    private readonly buf: ArrayBufferLike,
    private readonly base: number,
    readonly length: number,
    private readonly Err: ErrorClass,
  ) {}
  static of(bytes: Uint8Array, Err: ErrorClass): MemorySource {
    return new MemorySource(bytes.buffer, bytes.byteOffset, bytes.byteLength, Err);
  }
  read(offset: number, length: number): Uint8Array {
    checkRange(offset, length, this.length, this.Err);
    return new Uint8Array(this.buf, this.base + offset, length);
  }
  close(): void { /* nothing to release */ }
}

export class FileSource implements ByteSource {
  readonly zeroCopy = false;
  private fd: number | null;
  constructor(fd: number, readonly length: number, private readonly path: string, private readonly Err: ErrorClass) {
    this.fd = fd;
  }
  read(offset: number, length: number): Uint8Array {
    checkRange(offset, length, this.length, this.Err);
    if (this.fd === null) throw new this.Err('io', `read from closed file ${this.path}`);
    const out = new Uint8Array(length);
    readFully(this.fd, out, 0, length, offset, this.path, this.Err);
    return out;
  }
  /** Read the whole file into one ArrayBuffer (may exceed 4 GiB) and return a MemorySource over it. */
  toMemory(): MemorySource {
    const ab = new ArrayBuffer(this.length);
    if (this.fd === null) throw new this.Err('io', `read from closed file ${this.path}`);
    for (let pos = 0; pos < this.length; pos += CHUNK) {
      const n = Math.min(CHUNK, this.length - pos);
      readFully(this.fd, new Uint8Array(ab, pos, n), 0, n, pos, this.path, this.Err);
    }
    return new MemorySource(ab, 0, this.length, this.Err);
  }
  close(): void {
    if (this.fd !== null) { nodeFs().closeSync(this.fd); this.fd = null; }
  }
}

function checkRange(offset: number, length: number, total: number, Err: ErrorClass): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > total) {
    throw new Err('out-of-range', `read of ${length} bytes at offset ${offset} is outside the ${total}-byte file`);
  }
}

function readFully(fd: number, out: Uint8Array, outOff: number, length: number, position: number, path: string, Err: ErrorClass): void {
  const fs = nodeFs();
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, out, outOff + done, Math.min(CHUNK, length - done), position + done);
    if (n <= 0) throw new Err('io', `${path}: unexpected end of file at byte ${position + done} (the file shrank while reading?)`);
    done += n;
  }
}

/** Open a path as a FileSource (typed 'io' error on failure). */
export function openFile(path: string, Err: ErrorClass): FileSource {
  let fd: number;
  let fs: ReturnType<typeof nodeFs>;
  try { fs = nodeFs(); fd = fs.openSync(path, 'r'); } catch (e) {
    throw new Err('io', `cannot open ${path}: ${(e as Error).message}`, { cause: e, file: path });
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new Err('io', `${path} is not a regular file`, { file: path });
    return new FileSource(fd, st.size, path, Err);
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
}

/**
 * Turn a FileSource into a whole-file MemorySource if possible (one allocation the size of the
 * file). Falls back to the FileSource (per-tensor reads) when the allocation fails.
 */
export function wholeOrPerTensor(src: FileSource): ByteSource {
  let mem: MemorySource;
  try { mem = src.toMemory(); } catch (e) {
    if (e instanceof RangeError) return src; // could not allocate: read per tensor instead
    throw e;
  }
  src.close();
  return mem;
}
