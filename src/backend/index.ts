import type { Backend } from './backend.js';
import { TsBackend } from './ts.js';
import { OpenBlasBackend, loadOpenBlas, configError, defaultThreads } from './openblas.js';
import { loadNativeKernels } from './native.js';

export type { Backend } from './backend.js';
export { TsBackend, checkSgemmArgs } from './ts.js';
export { OpenBlasBackend, loadOpenBlas, blasCandidates, defaultThreads } from './openblas.js';
export type { BlasKind, BlasLoadResult } from './openblas.js';
export { loadNativeKernels, bindNativeKernels, nativeLibraryPath } from './native.js';
export type { NativeKernels, NativeLoadResult } from './native.js';

let current: Backend | null = null;
/** Why the current backend was chosen, for the announcement. */
let reason = '';
let announced = false;

const NO_BLAS_HINT = 'no OpenBLAS found; apt-get install libopenblas0 (macOS: brew install openblas) for >10x faster matmul';

/**
 * The active backend, chosen on first use:
 * - ACTVAR_BACKEND=ts (or typescript): the TypeScript fallback, everything in TypeScript;
 * - ACTVAR_BACKEND=openblas (or blas): a BLAS library, error if none loads;
 * - unset / auto: OpenBLAS if found (see openblas.ts for the search order), else the fallback.
 * Except under ACTVAR_BACKEND=ts, the native elementwise kernels (native.ts) are attached when they
 * were built (ACTVAR_NATIVE=0 turns them off).
 * With OpenBLAS and the native kernels, actvar's own thread pool splits the GEMMs (native/threads.c;
 * ACTVAR_SPLIT_GEMM=0 leaves the threading to OpenBLAS).
 * ACTVAR_THREADS sets the thread count (default: all cores), ACTVAR_BLAS_LIB the library path.
 */
export function backend(): Backend {
  if (current) return current;
  const choice = (process.env.ACTVAR_BACKEND ?? '').trim().toLowerCase();
  if (choice === 'ts' || choice === 'typescript') {
    defaultThreads(); // still validate ACTVAR_THREADS
    current = new TsBackend();
    reason = 'ACTVAR_BACKEND=ts';
  } else if (choice === 'openblas' || choice === 'blas') {
    const { backend: blas, tried } = loadOpenBlas();
    if (!blas) {
      throw configError(`ACTVAR_BACKEND=${process.env.ACTVAR_BACKEND} but no BLAS library could be loaded (tried ${tried.map((t) => t.library).join(', ')}). ` +
        'Install one (apt-get install libopenblas0), point ACTVAR_BLAS_LIB at it, or unset ACTVAR_BACKEND to use the TypeScript fallback.');
    }
    current = blas;
    reason = '';
  } else if (choice === '' || choice === 'auto') {
    const { backend: blas } = loadOpenBlas();
    if (blas) { current = blas; reason = ''; } else { current = new TsBackend(); reason = NO_BLAS_HINT; }
  } else {
    throw configError(`ACTVAR_BACKEND='${process.env.ACTVAR_BACKEND}' is not a backend; use 'openblas', 'ts' or 'auto' (or leave it unset)`);
  }
  if (!(choice === 'ts' || choice === 'typescript')) current.native = loadNativeKernels().kernels;
  if (current instanceof OpenBlasBackend && current.native && process.env.ACTVAR_SPLIT_GEMM !== '0') current.useThreadPool(current.native);
  return current;
}

/** Replace the active backend (tests compare backends); null makes the next `backend()` choose again. */
export function setBackend(b: Backend | null): void {
  current = b;
  reason = '';
}

/** The announcement text without the "actvar: " prefix, e.g. "kernels on openblas (libopenblas.so.0), 2 threads". */
export function describeBackend(): string {
  const b = backend();
  const native = b.native ? ' + native elementwise' : '';
  if (b instanceof TsBackend) return `kernels on ${b.name}${native}${reason ? ` (${reason})` : ''}`;
  const why = b.native ? '' : ` (elementwise in TypeScript: ${loadNativeKernels().why})`;
  const pool = b instanceof OpenBlasBackend && b.threadPool ? " on actvar's thread pool" : '';
  return `kernels on ${b.name}${native}, ${b.threads} thread${b.threads === 1 ? '' : 's'}${pool}${why}`;
}

/** Print once per process, to stderr, which backend runs the kernels (also warns about a slow generic BLAS). */
export function announceBackend(): void {
  if (announced) return;
  announced = true;
  process.stderr.write(`actvar: ${describeBackend()}\n`);
}
