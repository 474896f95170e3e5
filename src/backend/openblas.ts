/**
 * The native backend: cblas_sgemm from OpenBLAS (or another CBLAS) called through koffi.
 *
 * Float32Arrays are passed straight to C: koffi hands native code a pointer into the array's
 * own memory for the duration of the call (no copy), and `subarray` (a zero-copy view) turns
 * an element offset into a pointer offset. Per call we allocate nothing when offsets are 0 and
 * one view per nonzero offset otherwise (~0.3 µs per call in all, see docs/BENCHMARKS.md).
 */
import { createRequire } from 'node:module';
import os from 'node:os';
import type { Backend, JsWorkerPool } from './backend.js';
import type { NativeKernels } from './native.js';
import { checkSgemmArgs } from './ts.js';
import { configError, parseSettings, type Settings } from './settings.js';

export { configError };

// cblas.h enum values
const CblasRowMajor = 101;
const CblasNoTrans = 111;
const CblasTrans = 112;

/** What kind of library was found; only OpenBLAS lets us set the thread count. */
export type BlasKind = 'openblas' | 'cblas' | 'accelerate';

type SgemmFn = (
  order: number, transA: number, transB: number, M: number, N: number, K: number,
  alpha: number, A: Float32Array, lda: number, B: Float32Array, ldb: number,
  beta: number, C: Float32Array, ldc: number,
) => void;

/** Library names/paths tried in order (after $ACTVAR_BLAS_LIB). */
export function blasCandidates(platform: NodeJS.Platform = process.platform): string[] {
  if (platform === 'darwin') {
    return ['libopenblas.dylib', '/opt/homebrew/opt/openblas/lib/libopenblas.dylib', '/usr/local/opt/openblas/lib/libopenblas.dylib',
      '/System/Library/Frameworks/Accelerate.framework/Accelerate'];
  }
  return ['libopenblas.so.0', 'libopenblas.so', '/usr/lib/x86_64-linux-gnu/libopenblas.so.0',
    '/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0', 'libblas.so.3', 'libcblas.so.3'];
}

export class OpenBlasBackend implements Backend {
  /** e.g. "openblas (libopenblas.so.0)" */
  readonly name: string;
  readonly kind: BlasKind;
  /** The name or path the library was loaded from. */
  readonly library: string;
  threads: number;
  /** Helper threads for JavaScript kernels, attached by the Node edge (backend/node.ts). */
  workers: JsWorkerPool | null = null;
  /** Set by `backend()` when the native elementwise kernels are built. */
  native: NativeKernels | null = null;
  private readonly sgemmFn: SgemmFn;
  /** actvar's thread pool, when bound (`useThreadPool`): it splits every sgemm, OpenBLAS runs single-threaded. */
  private pool: NativeKernels | null = null;
  private readonly setThreadsFn: ((n: number) => void) | null;
  private readonly getThreadsFn: (() => number) | null;

  constructor(library: string, kind: BlasKind, sgemmFn: SgemmFn,
    setThreadsFn: ((n: number) => void) | null, getThreadsFn: (() => number) | null, threads: number) {
    this.library = library;
    this.kind = kind;
    this.name = kind === 'cblas' ? `cblas (${library}; generic BLAS, slow: install libopenblas0)` : `${kind} (${library})`;
    this.sgemmFn = sgemmFn;
    this.setThreadsFn = setThreadsFn;
    this.getThreadsFn = getThreadsFn;
    this.threads = 1;
    this.setThreads(threads);
  }

  /** True when actvar's own thread pool splits the GEMMs (see native/threads.c). */
  get threadPool(): boolean { return this.pool !== null; }

  /**
   * Let the native kernels' thread pool split every sgemm over `threads` cores, each part on
   * single-threaded OpenBLAS (faster for the few-row GEMMs of VAR inference; native/threads.c).
   * Only for OpenBLAS (other libraries' threads cannot be turned off). False if it cannot be bound.
   */
  useThreadPool(native: NativeKernels): boolean {
    if (this.kind !== 'openblas' || !this.setThreadsFn || !native.bindSgemm(this.library)) return false;
    this.pool = native;
    this.setThreads(this.threads);
    return true;
  }

  /** Back to OpenBLAS's own threads, same thread count (benchmarks compare both). */
  stopThreadPool(): void {
    if (!this.pool) return;
    const n = this.threads;
    this.pool.setThreads(1);
    this.pool = null;
    this.setThreads(n);
  }

  /** Sets the thread count: of actvar's pool (OpenBLAS then single-threaded), else of OpenBLAS; other libraries manage their own threads (count unknown). */
  setThreads(n: number): void {
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`thread count must be a positive integer, got ${n}`);
    if (this.pool && this.setThreadsFn) {
      this.setThreadsFn(1);
      this.threads = this.pool.setThreads(n);
    } else if (this.setThreadsFn) {
      this.setThreadsFn(n);
      this.threads = this.getThreadsFn ? this.getThreadsFn() : n;
    } else {
      this.threads = this.kind === 'accelerate' ? n : 1;
    }
  }

  sgemm(
    transA: boolean, transB: boolean, M: number, N: number, K: number,
    alpha: number, A: Float32Array, aOff: number, lda: number,
    B: Float32Array, bOff: number, ldb: number,
    beta: number, C: Float32Array, cOff: number, ldc: number,
  ): void {
    // native code must never read past a buffer: check everything first (a few integer ops)
    checkSgemmArgs(transA, transB, M, N, K, A, aOff, lda, B, bOff, ldb, C, cOff, ldc);
    if (M === 0 || N === 0) return;
    // cblas rejects ld < 1 even when the matrix is never read (K = 0)
    if (K === 0) { lda = Math.max(lda, 1); ldb = Math.max(ldb, 1); }
    const a = aOff === 0 ? A : A.subarray(aOff), b = bOff === 0 ? B : B.subarray(bOff), c = cOff === 0 ? C : C.subarray(cOff);
    if (this.pool) this.pool.sgemm(transA, transB, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
    else this.sgemmFn(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
  }
}

/** Outcome of the library search: the backend, or why each candidate failed. */
export interface BlasLoadResult {
  backend: OpenBlasBackend | null;
  tried: { library: string; error: string }[];
}

type KoffiModule = typeof import('koffi');
type KoffiLib = ReturnType<KoffiModule['load']>;

let cached: BlasLoadResult | null = null;

/** The thread count the settings ask for: ACTVAR_THREADS, else every core (os.availableParallelism()). */
export function defaultThreads(s: Pick<Settings, 'threads'> = parseSettings(process.env)): number {
  return s.threads ?? os.availableParallelism();
}

/**
 * Finds and binds a BLAS library, once per process (later calls return the same result).
 * Tries the settings' `blasLib` (ACTVAR_BLAS_LIB) alone when set (an explicit choice that fails is an
 * error), else the `blasCandidates()` in order.
 */
export function loadOpenBlas(s: Pick<Settings, 'threads' | 'blasLib'> = parseSettings(process.env)): BlasLoadResult {
  if (cached) return cached;
  const tried: BlasLoadResult['tried'] = [];
  let koffi: KoffiModule;
  try {
    koffi = createRequire(import.meta.url)('koffi') as KoffiModule;
  } catch (e) {
    tried.push({ library: 'koffi', error: `the koffi FFI module failed to load: ${(e as Error).message}` });
    return (cached = { backend: null, tried });
  }
  const explicit = s.blasLib;
  const candidates = explicit ? [explicit] : blasCandidates();
  for (const library of candidates) {
    let lib: KoffiLib | null = null;
    try {
      lib = koffi.load(library);
      const backend = bind(library, lib, defaultThreads(s));
      return (cached = { backend, tried });
    } catch (e) {
      try { lib?.unload(); } catch { /* keep the first error */ }
      if ((e as { userError?: boolean }).userError) throw e;
      tried.push({ library, error: (e as Error).message });
    }
  }
  if (explicit) {
    throw configError(`ACTVAR_BLAS_LIB=${explicit} could not be used: ${tried[tried.length - 1].error}. ` +
      'Point it at a library exporting cblas_sgemm (e.g. /usr/lib/x86_64-linux-gnu/libopenblas.so.0), or unset it to search the usual places.');
  }
  return (cached = { backend: null, tried });
}

const SGEMM_DECL = 'void cblas_sgemm(int order, int transA, int transB, int M, int N, int K, float alpha, ' +
  'const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc)';

function bind(library: string, lib: KoffiLib, threads: number): OpenBlasBackend {
  // declared once; every call then goes straight through koffi's prepared trampoline
  const sgemm = lib.func(SGEMM_DECL) as unknown as SgemmFn;
  const optional = (decl: string): ((...args: number[]) => number) | null => {
    try { return lib.func(decl) as unknown as (...args: number[]) => number; } catch { return null; }
  };
  const setN = optional('void openblas_set_num_threads(int n)');
  const getN = optional('int openblas_get_num_threads()');
  const isOpenBlas = setN !== null || optional('const char *openblas_get_config()') !== null;
  const kind: BlasKind = isOpenBlas ? 'openblas' : library.includes('Accelerate') ? 'accelerate' : 'cblas';
  return new OpenBlasBackend(library, kind, sgemm, setN, getN ? () => getN() : null, threads);
}
