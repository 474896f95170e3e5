/**
 * The Node edge of the weight readers and writers: the file system, reached when a caller passes a PATH
 * (io/source.ts reads ranges of a file, writeSafetensors writes one atomically). It is looked up lazily through
 * `process.getBuiltinModule` (Node ≥ 20.16), so importing the codecs loads no `node:` module and they bundle for
 * a browser, where callers pass the file's bytes (Uint8Array) instead of a path. Only type imports here.
 */
import type * as Fs from 'node:fs';
import type * as Path from 'node:path';
import type * as Crypto from 'node:crypto';

interface NodeProcess { pid: number; getBuiltinModule?: (id: string) => unknown }

function nodeProcess(): NodeProcess | undefined {
  return (globalThis as { process?: NodeProcess }).process;
}

function builtin<T>(id: string): T {
  const mod = nodeProcess()?.getBuiltinModule?.(id);
  if (!mod) throw new Error(`reading or writing files by path needs Node.js >= 20.16 (${id}); elsewhere pass the file's bytes (a Uint8Array)`);
  return mod as T;
}

/** `node:fs` (throws a clear error outside Node). */
export function nodeFs(): typeof Fs { return builtin<typeof Fs>('node:fs'); }
/** `node:path` (throws a clear error outside Node). */
export function nodePath(): typeof Path { return builtin<typeof Path>('node:path'); }
/** The process id, for temporary file names (0 outside Node). */
export function pid(): number { return nodeProcess()?.pid ?? 0; }
/** SHA-256 of bytes as hex, through `node:crypto` (keys caches by the weights' content; throws a clear error outside Node). */
export function sha256Hex(bytes: Uint8Array): string {
  return builtin<typeof Crypto>('node:crypto').createHash('sha256').update(bytes).digest('hex');
}
/** SHA-256 of a file's bytes as hex. */
export function sha256File(path: string): string { return sha256Hex(nodeFs().readFileSync(path)); }
