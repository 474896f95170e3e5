/** Array comparisons and random inputs shared by the tests of the native kernels. */
import assert from 'node:assert/strict';
import type { Rng } from '../../src/tensor/rng.js';
import { backend, type NativeKernels } from '../../src/backend/node.js';

/** Runs f with `kernels` attached to the active backend, then with none; returns both results. */
export function bothWays<R>(kernels: NativeKernels | null, f: () => R): { native: R; ts: R } {
  const be = backend(), prev = be.native;
  try {
    be.native = kernels;
    const native = f();
    be.native = null;
    const ts = f();
    return { native, ts };
  } finally {
    be.native = prev;
  }
}

/** n normal samples × scale from rng. */
export function randn(rng: Rng, n: number, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => rng.normal() * scale);
}

/** |a − b| ≤ atol + rtol·|b| elementwise; where b is NaN, a must be NaN; equal values (±∞ too) pass. */
export function assertClose(a: Float32Array, b: Float32Array, rtol: number, atol: number, what: string): void {
  assert.equal(a.length, b.length, `${what}: lengths`);
  for (let i = 0; i < a.length; i++) {
    if (Number.isNaN(b[i])) { assert.ok(Number.isNaN(a[i]), `${what}[${i}]: ${a[i]}, expected NaN`); continue; }
    if (a[i] === b[i]) continue;
    assert.ok(Math.abs(a[i] - b[i]) <= atol + rtol * Math.abs(b[i]), `${what}[${i}]: ${a[i]} vs ${b[i]}`);
  }
}

/** a and b bit for bit (−0 and NaN included). */
export function assertSameBits(a: Float32Array, b: Float32Array, what: string): void {
  assert.equal(a.length, b.length, `${what}: lengths`);
  for (let i = 0; i < a.length; i++) assert.ok(Object.is(a[i], b[i]), `${what}[${i}]: ${a[i]} vs ${b[i]}`);
}
