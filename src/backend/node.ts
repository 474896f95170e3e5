/**
 * The Node edge of the backend: reads the settings from the environment (the only place that does,
 * `readSettings`), and installs the chooser that makes the backend on first use:
 * - ACTVAR_BACKEND=ts (or typescript): everything in TypeScript;
 * - ACTVAR_BACKEND=openblas (or blas): a BLAS library through koffi, error if none loads;
 * - unset / auto: OpenBLAS if found (see openblas.ts for the search order), else the TypeScript backend.
 * Except under ACTVAR_BACKEND=ts, the native kernels (native.ts) are attached when they were built
 * (ACTVAR_NATIVE=0 turns them off). With OpenBLAS and the native kernels, actvar's own thread pool
 * splits the GEMMs (native/threads.c; ACTVAR_SPLIT_GEMM=0 leaves the threading to OpenBLAS).
 * ACTVAR_THREADS sets the thread count (default: all cores), ACTVAR_BLAS_LIB the library path,
 * ACTVAR_ATTN_THREADS the attention GEMMs' threads. Every backend gets a worker_threads pool for the
 * JavaScript kernels that run on helper threads (worker-pool.ts).
 *
 * The Node library entry (src/index.ts), the CLI, the benchmarks and the tests call `useNodeBackend()`.
 */
import type { Backend } from './backend.js';
import { TsBackend } from './ts.js';
import { OpenBlasBackend, loadOpenBlas, defaultThreads } from './openblas.js';
import { loadNativeKernels } from './native.js';
import { NodeWorkerPool } from './worker-pool.js';
import { backend, installBackend, backendInstalled, configError, parseSettings, type Settings } from './index.js';

export * from './index.js';
export { OpenBlasBackend, loadOpenBlas, blasCandidates, defaultThreads } from './openblas.js';
export type { BlasKind, BlasLoadResult } from './openblas.js';
export { loadNativeKernels, bindNativeKernels, nativeLibraryPath } from './native.js';
export type { NativeLoadResult, Bf16Path } from './native.js';
export { NodeWorkerPool } from './worker-pool.js';

/** The settings named by the ACTVAR_* environment variables (see settings.ts). */
export function readSettings(env: NodeJS.ProcessEnv = process.env): Settings {
  return parseSettings(env);
}

/** Why the backend `createNodeBackend` made last was chosen, for the announcement. */
let reason = '';
let lastMade: Backend | null = null;
let announced = false;
const pool = new NodeWorkerPool();

const NO_BLAS_HINT = 'no OpenBLAS found; apt-get install libopenblas0 (macOS: brew install openblas) for >10x faster matmul';

/** The backend the settings ask for (the chooser described above). */
export function createNodeBackend(s: Settings): Backend {
  let made: Backend;
  if (s.backend === 'ts') {
    made = new TsBackend();
    reason = 'ACTVAR_BACKEND=ts';
  } else if (s.backend === 'openblas') {
    const { backend: blas, tried } = loadOpenBlas(s);
    if (!blas) {
      throw configError(`ACTVAR_BACKEND=openblas but no BLAS library could be loaded (tried ${tried.map((t) => t.library).join(', ')}). ` +
        'Install one (apt-get install libopenblas0), point ACTVAR_BLAS_LIB at it, or unset ACTVAR_BACKEND to use the TypeScript fallback.');
    }
    made = blas;
    reason = '';
  } else {
    const { backend: blas } = loadOpenBlas(s);
    if (blas) { made = blas; reason = ''; } else { made = new TsBackend(); reason = NO_BLAS_HINT; }
  }
  if (s.backend !== 'ts') made.native = loadNativeKernels(s).kernels;
  if (made instanceof OpenBlasBackend && made.native && s.splitGemm) made.useThreadPool(made.native);
  made.workers = pool;
  lastMade = made;
  return made;
}

/** Install the Node chooser (idempotent): the next `backend()` reads the environment and makes the backend. */
export function useNodeBackend(): void {
  if (backendInstalled()) return;
  installBackend(() => {
    const s = readSettings();
    defaultThreads(s); // the thread count is validated under every backend
    return { backend: createNodeBackend(s), settings: s };
  });
}

/** The announcement text without the "actvar: " prefix, e.g. "kernels on openblas (libopenblas.so.0), 2 threads". */
export function describeBackend(): string {
  const b = backend();
  const native = b.native ? ' + native elementwise' : '';
  const why0 = b === lastMade ? reason : '';
  if (b instanceof TsBackend) return `kernels on ${b.name}${native}${why0 ? ` (${why0})` : ''}`;
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
