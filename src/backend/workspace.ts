/**
 * Scratch memory owned by the backend (`workspace()` in index.ts): named buffers reused across calls
 * instead of module-global scratch arrays in every op. A buffer grows to the largest size asked for
 * and keeps it until `release()`; its contents are not kept between users (each call overwrites what
 * it reads). `shared` asks for SharedArrayBuffer memory, which helper threads can write.
 */
export class Workspace {
  private readonly f32 = new Map<string, Float32Array>();
  private readonly f64 = new Map<string, Float64Array>();

  /** A Float32Array of at least n elements under `key` (its first n are the caller's until the next call with this key). */
  float32(key: string, n: number, shared = false): Float32Array {
    const old = this.f32.get(key);
    if (old && old.length >= n && (!shared || old.buffer instanceof SharedArrayBuffer)) return old;
    const made = shared ? new Float32Array(new SharedArrayBuffer(4 * n)) : new Float32Array(n);
    this.f32.set(key, made);
    return made;
  }

  /** A Float64Array of at least n elements under `key`. */
  float64(key: string, n: number): Float64Array {
    const old = this.f64.get(key);
    if (old && old.length >= n) return old;
    const made = new Float64Array(n);
    this.f64.set(key, made);
    return made;
  }

  /** Replace the buffer under `key` (e.g. with a recycled activation) or drop it (null). */
  put(key: string, buf: Float32Array | null): void {
    if (buf) this.f32.set(key, buf); else this.f32.delete(key);
  }

  /** The buffer under `key` as it is, if any (no allocation). */
  peek(key: string): Float32Array | undefined { return this.f32.get(key); }

  /** Drop buffers (all, or those whose key starts with `prefix`); they regrow on use. */
  release(prefix = ''): void {
    for (const m of [this.f32, this.f64] as Map<string, unknown>[]) for (const k of [...m.keys()]) if (k.startsWith(prefix)) m.delete(k);
  }
}
