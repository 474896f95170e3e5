/**
 * The runtime settings of the kernels, in one object: which backend, how many threads, whether the
 * native kernels run, … The core keeps the active settings (`settings()`, `configure`); only the Node
 * edge (backend/node.ts) reads them from the environment, through `parseSettings`, the one place
 * that knows the variable names. A browser page would call `configure` itself.
 */

/** ACTVAR_BACKEND: 'auto' (OpenBLAS when found, else TypeScript), 'ts' or 'openblas'. */
export type BackendChoice = 'auto' | 'ts' | 'openblas';

export interface Settings {
  /** ACTVAR_BACKEND (ts | typescript | openblas | blas | auto; unset = auto). */
  backend: BackendChoice;
  /** ACTVAR_THREADS: kernel threads, a positive integer; null (unset) = every core. */
  threads: number | null;
  /** ACTVAR_NATIVE: attach the native kernels when they were built (1, the default) or not (0). */
  native: boolean;
  /** ACTVAR_SPLIT_GEMM: actvar's thread pool splits the GEMMs (1, the default) or OpenBLAS threads them (0). */
  splitGemm: boolean;
  /** ACTVAR_BLAS_LIB: the BLAS library to load; null (unset) = search the usual places. */
  blasLib: string | null;
  /** ACTVAR_ATTN_THREADS: kernel threads of the attention GEMMs; 0 (unset) = the backend's count. */
  attentionThreads: number;
  /**
   * ACTVAR_BF16: the bf16-weight GEMM (native/bf16_gemm.c) uses AVX512-BF16's vdpbf16ps where the CPU has
   * it (1, the default) or always widens bf16 to float32 (0; the same results, for tests and comparisons).
   */
  bf16: boolean;
}

export const DEFAULT_SETTINGS: Readonly<Settings> = Object.freeze({
  backend: 'auto', threads: null, native: true, splitGemm: true, blasLib: null, attentionThreads: 0, bf16: true,
});

/** An error the CLI reports as a user mistake (exit 2, no stack); see src/cli/errors.ts. */
export function configError(message: string): Error {
  return Object.assign(new Error(message), { userError: true });
}

/** Environment-like record (process.env, URL parameters, …). */
export type SettingsSource = Readonly<Record<string, string | undefined>>;

/** The settings named by ACTVAR_* variables in `env` (unset or empty: the default); a bad value is a config error naming the allowed ones. */
export function parseSettings(env: SettingsSource): Settings {
  const raw = (name: string): string | undefined => {
    const v = env[name];
    return v === undefined || v.trim() === '' ? undefined : v;
  };
  const flag = (name: string, dflt: boolean): boolean => {
    const v = raw(name);
    if (v === undefined) return dflt;
    if (v.trim() === '0') return false;
    if (v.trim() === '1') return true;
    throw configError(`${name}='${v}' is not allowed; use 1 (on) or 0 (off), or leave it unset`);
  };
  const count = (name: string, min: number): number | undefined => {
    const v = raw(name);
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) {
      throw configError(`${name} must be a ${min > 0 ? 'positive' : 'non-negative'} integer, got '${v}'`);
    }
    return n;
  };
  const b = raw('ACTVAR_BACKEND')?.trim().toLowerCase();
  let backend: BackendChoice;
  if (b === undefined || b === 'auto') backend = 'auto';
  else if (b === 'ts' || b === 'typescript') backend = 'ts';
  else if (b === 'openblas' || b === 'blas') backend = 'openblas';
  else throw configError(`ACTVAR_BACKEND='${env.ACTVAR_BACKEND}' is not a backend; use 'openblas', 'ts' or 'auto' (or leave it unset)`);
  return {
    backend,
    threads: count('ACTVAR_THREADS', 1) ?? null,
    native: flag('ACTVAR_NATIVE', true),
    splitGemm: flag('ACTVAR_SPLIT_GEMM', true),
    blasLib: raw('ACTVAR_BLAS_LIB') ?? null,
    attentionThreads: count('ACTVAR_ATTN_THREADS', 0) ?? 0,
    bf16: flag('ACTVAR_BF16', true),
  };
}
