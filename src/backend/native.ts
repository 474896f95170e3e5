/**
 * The optional native elementwise kernels (native/kernels.c, built at install time by
 * scripts/build-native.mjs) bound through koffi. They run the training step's non-GEMM work —
 * GELU, softmax rows, LayerNorm, AdamW, bias gradients, gradient accumulation — vectorised by the C
 * compiler, on the callers' Float32Arrays (koffi passes pointers, no copies).
 *
 * The tensor ops use them through `backend().native` when present and fall back to their own
 * TypeScript loops otherwise (same formulas; results agree within float32 rounding, AdamW exactly).
 * Every wrapper checks lengths first: native code never reads or writes past an array.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseSettings, type Settings } from './settings.js';

export interface NativeKernels {
  /** The shared library's path. */
  readonly library: string;
  /**
   * y = GELU_tanh(x) (docs/VAR.md §3.4); d (may be null) receives GELU′(x). First n elements,
   * split over actvar's thread pool when there are many (every element on its own: the same bits).
   */
  gelu(x: Float32Array, y: Float32Array, d: Float32Array | null, n: number): void;
  /** o = a ⊙ b over the first n elements. */
  mul(a: Float32Array, b: Float32Array, o: Float32Array, n: number): void;
  /** o = a + b over the first n elements. */
  add(a: Float32Array, b: Float32Array, o: Float32Array, n: number): void;
  /** Σ (a − b)² over the first n elements, in float64. */
  sqDist(a: Float32Array, b: Float32Array, n: number): number;
  /** o = k·(a − b) over the first n elements. */
  scaledDiff(a: Float32Array, b: Float32Array, o: Float32Array, n: number, k: number): void;
  /** a += b over the first n elements. */
  addInto(a: Float32Array, b: Float32Array, n: number): void;
  /** out[j] = Σ_r g[r·cols + j], rows added in order in float32 (a bias gradient). */
  colSum(g: Float32Array, out: Float32Array, rows: number, cols: number): void;
  /** Row softmax of `rows` rows of n starting at `off` in x and y (y may be x). */
  softmaxRows(x: Float32Array, y: Float32Array, off: number, rows: number, n: number): void;
  /**
   * Unnormalised softmax rows in place (the KV-cache attention): S ← exp(S − c), c = `bound` if finite
   * (then S − c must lie in (−80, 0]) else the row max; sums[i] = the row's sum, in float64.
   */
  expRows(S: Float32Array, rows: number, n: number, bound: number, sums: Float64Array): void;
  /** Softmax backward dx = y ⊙ (g − rowsum(g ⊙ y)) for `rows` rows of n at `off` (dx may be g). */
  softmaxRowsBackward(y: Float32Array, g: Float32Array, dx: Float32Array, off: number, rows: number, n: number): void;
  /** LayerNorm over rows of C: y, and float64 mean / rstd per row; w, b optional. */
  layerNorm(x: Float32Array, y: Float32Array, mean: Float64Array, rstd: Float64Array,
    w: Float32Array | null, b: Float32Array | null, rows: number, C: number, eps: number): void;
  /** LayerNorm backward: gx (or null), and gw, gb (float64, accumulated; or null). */
  layerNormBackward(g: Float32Array, x: Float32Array, mean: Float64Array, rstd: Float64Array, w: Float32Array | null,
    gx: Float32Array | null, gw: Float64Array | null, gb: Float64Array | null, rows: number, C: number): void;
  /** One AdamW update of p, m, v from g (src/tensor/ops/adamw-update.ts gives the formula). */
  adamw(p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, decay: number, b1: number, b2: number,
    c1: number, c2: number, stepSize: number, rb: number, eps: number): void;
  /**
   * actvar's thread pool (native/threads.c): binds cblas_sgemm of the BLAS library the host loaded
   * from `library`, for `sgemm` below. False when the library or the symbol cannot be found.
   */
  bindSgemm(library: string): boolean;
  /** Threads of the pool (calling thread included) for later jobs; returns the count in effect. */
  setThreads(n: number): number;
  /**
   * cblas_sgemm (row-major, C = alpha·op(A)·op(B) + beta·C) cut into parts by its shape (not by the
   * thread count) that the pool's threads share, each part single-threaded BLAS; same results for any
   * thread count. Only after `bindSgemm`. Unchecked:
   * the backend (openblas.ts) checks every argument before it calls this.
   */
  sgemm(transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number, A: Float32Array, lda: number,
    B: Float32Array, ldb: number, beta: number, C: Float32Array, ldc: number): void;
  /**
   * Row limit of the few-row X·Wᵀ kernel (native/small_gemm.c) that `sgemm` uses instead of BLAS
   * (default 72; 0 = never). For benchmarks; returns the previous limit.
   */
  setFewRowLimit(rows: number): number;
  /**
   * Parts a split `sgemm` is cut into at most (default, after `bindSgemm`: the CPUs this process may
   * use, at least 2; 0 = that default). Results depend on it, not on the thread count. For tests and
   * benchmarks; returns the previous count.
   */
  setSplitParts(parts: number): number;
  /**
   * A mixture-of-experts FFN executed expert by expert on the pool (native/grouped_ffn.c):
   * out (n × C, preset with the fc2 bias) += Σ_{e ∈ route(t)} GELU(x_t·W1ₑᵀ + b1ₑ)·W2ₑᵀ, experts added
   * in expert order. W1 (N·dₑ × C), B1 (N·dₑ), W2 (C × N·dₑ); `tokens`/`offsets`/`slots` as
   * src/tensor/ops/experts.ts `groupByExpert` makes them for K experts per row. False (out unchanged)
   * when the kernel cannot run now (no BLAS bound, busy, out of memory): the caller runs its own loop.
   */
  groupedFFN(X: Float32Array, n: number, C: number, W1: Float32Array, B1: Float32Array, W2: Float32Array, de: number,
    tokens: Int32Array, offsets: Int32Array, slots: Int32Array, N: number, K: number, out: Float32Array, chunk?: number): boolean;
  /**
   * The part count of split sgemms in effect (the CPUs, at least 2; see `setSplitParts`). Kernels that cut their
   * work by the shape (the grouped FFN's token chunks) use it, so that results never depend on the thread count.
   */
  splitParts(): number;
  /**
   * KV-cache attention of one block on the pool (native/attention.c; the formulas at its TypeScript
   * twin `attendCachedInto` in src/tensor/ops/kv-attention.ts): for every (row b, head h), the l queries
   * Q [B, H, l, hd] attend to the Lc cached keys/values Kc, Vc [B, H, cap, hd] with softmax bound
   * bounds[h] (NaN: the row max) and scale `scale`; merged heads go to out [B, l, H·hd]. Whole
   * (b, h) pairs run on different threads; the same bits as the loop for any thread count. False
   * when the kernel cannot run now (no BLAS bound, busy, out of memory): the caller runs its own loop.
   */
  attendCached(Q: Float32Array, Kc: Float32Array, Vc: Float32Array, B: number, H: number, l: number, hd: number, Lc: number,
    cap: number, scale: number, bounds: Float64Array, out: Float32Array): boolean;
  /**
   * The row kernels of VAR inference (native/rows.c; formulas at their TypeScript twins in
   * src/tensor/ops/adaln.ts, heads.ts), rows spread over the pool. adaLN: Y = LN(X)·(1 + S_b) + Sh_b, X rows × C,
   * S and Sh B × C, rows/B rows per sample.
   */
  modulate(X: Float32Array, S: Float32Array, Sh: Float32Array, B: number, rows: number, C: number, eps: number, Y: Float32Array): void;
  /** Y = X + Br ⊙ G_b (X, Br, Y rows × C; G B × C). */
  gatedResidual(X: Float32Array, Br: Float32Array, G: Float32Array, B: number, rows: number, C: number, Y: Float32Array): void;
  /**
   * Head split of the fused qkv [B, L, 3·H·hd]: part (0 q, 1 k, 2 v) + bias, cosine-normalised
   * (× sH[h] when given) when l2; row (b, i), head h → Y[((b·H + h)·stride + base + i)·hd …].
   */
  splitHeads(QKV: Float32Array, B: number, L: number, H: number, hd: number, part: number, bias: Float32Array, l2: boolean,
    sH: Float64Array | null, Y: Float32Array, stride: number, base: number): void;
  /**
   * ActVAR's selector gate (native/rows.c; twin `gateScores` in src/tensor/ops/gate-scores.ts):
   * Y[r] = w·LN(X_r) + b for rows × C inputs X (LayerNorm without affine, float64 statistics).
   */
  gateScores(X: Float32Array, rows: number, C: number, w: Float32Array, b: number, eps: number, Y: Float32Array): void;
  /**
   * bf16 weights (native/bf16_gemm.c; the definition and its TypeScript twin `gemmBf16Reference` in
   * src/tensor/ops/bf16.ts): C (M × N, ldc) = bf16(X)·Wᵀ + beta·C for float32 X (M × K, ldx), bf16 bit
   * patterns W (N × K, ldw), beta 0 or 1; columns split over the pool, the same bits for any thread
   * count. Unchecked: the caller (gemmBf16) checks every argument.
   */
  bf16Gemm(M: number, N: number, K: number, X: Float32Array, ldx: number, W: Uint16Array, ldw: number, beta: number,
    C: Float32Array, ldc: number): void;
  /** y[i] = bf16(x[i]) (round to nearest even) for the first n elements. */
  toBf16(x: Float32Array, y: Uint16Array, n: number): void;
  /**
   * Whether `bf16Gemm` may use AVX512-BF16's vdpbf16ps where the CPU has it (true, the default) or always
   * the widening path (false: ACTVAR_BF16=0); a path name caps it there (tests: 'avx2', 'c'). Returns the
   * path now in effect (the same bits on every path, subnormals aside).
   */
  setBf16Mode(useInstruction: boolean | Bf16Path): Bf16Path;
  /** The path `bf16Gemm` takes now. */
  bf16Path(): Bf16Path;
  /**
   * The VQVAE's inference 3×3 'same' conv, whole (native/conv3x3.c; the TypeScript twin and the formulas
   * are `conv3x3Same` in src/tensor/ops/conv3x3.ts): out [B, Cout, H, W] = conv(prologue(X)) + bias (+ Res),
   * prologue `mode` 0 copy, 1 SiLU, 2 nearest ×2 (H = 2·Hin), 3 GroupNorm(groups, gw, gb, eps) + SiLU;
   * `inPlace`: out is Res's array. Workspaces P (Cin·(H+2)·(W+2) + 2), wk (9·Cout·Cin), band (Cout·R·(W+2))
   * with R output rows per band; ms[0..3] += milliseconds of fills, weight repack, GEMMs, copies out.
   * With wino = m ∈ {2, 4} (H, W multiples of m): Winograd F(m×m, 3×3) with ξ = (m + 2)², R tile rows (of m output
   * rows) per band, wk ξ·Cout·Cin, band ξ·Cout·R·W/m and V ξ·Cin·R·W/m floats.
   * Results do not depend on the thread count. False when no BLAS is bound (the caller runs its own loop).
   */
  conv3x3(X: Float32Array, B: number, Cin: number, Hin: number, Win: number, mode: number, groups: number,
    gw: Float32Array | null, gb: Float32Array | null, eps: number, Wt: Float32Array, bias: Float32Array, Cout: number,
    Res: Float32Array | null, inPlace: boolean, out: Float32Array, P: Float32Array, wk: Float32Array, band: Float32Array,
    R: number, V: Float32Array | null, wino: number, ms: Float64Array): boolean;
}

/** How `bf16Gemm` runs: vdpbf16ps, or widening bf16 to float32 with AVX-512F / AVX2+FMA / plain C. */
export type Bf16Path = 'avx512-bf16' | 'avx512f' | 'avx2' | 'c';
const BF16_PATHS: readonly Bf16Path[] = ['c', 'avx2', 'avx512f', 'avx512-bf16'];

/** Where scripts/build-native.mjs puts the library (relative to the package root). */
export function nativeLibraryPath(platform: NodeJS.Platform = process.platform): string {
  const ext = platform === 'darwin' ? 'dylib' : platform === 'win32' ? 'dll' : 'so';
  // this file is dist/src/backend/native.js
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
  return path.join(root, 'build', 'native', `libactvar_kernels.${ext}`);
}

function need(what: string, arr: ArrayLike<number> | null, n: number): void {
  if (arr && arr.length < n) throw new RangeError(`native ${what}: array of ${arr.length} elements, ${n} needed`);
}
function count(what: string, n: number): void {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`native ${what}: size must be a non-negative integer, got ${n}`);
}

type Fn = (...args: unknown[]) => void;

/** Binds the library at `library`; throws if it cannot be loaded or lacks a kernel. */
export function bindNativeKernels(library: string): NativeKernels {
  const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi');
  const lib = koffi.load(library);
  const f = (decl: string) => lib.func(decl) as unknown as Fn;
  const num = (decl: string) => lib.func(decl) as unknown as (...a: unknown[]) => number; // functions that return a value
  const gelu = f('void actvar_gelu_pool(const float *x, float *y, float *d, int64_t n)');
  const mul = f('void actvar_mul(const float *a, const float *b, float *o, int64_t n)');
  const add = f('void actvar_add(const float *a, const float *b, float *o, int64_t n)');
  const sqDist = num('double actvar_sq_dist(const float *a, const float *b, int64_t n)');
  const scaledDiff = f('void actvar_scaled_diff(const float *a, const float *b, float *o, int64_t n, double k)');
  const addInto = f('void actvar_add_into(float *a, const float *b, int64_t n)');
  const colSum = f('void actvar_colsum(const float *g, float *out, int64_t rows, int64_t cols)');
  const softmax = f('void actvar_softmax_rows(const float *x, float *y, int64_t rows, int64_t n)');
  const expRows = f('void actvar_exp_rows(float *S, int64_t rows, int64_t n, double bound, double *sums)');
  const softmaxBwd = f('void actvar_softmax_rows_bwd(const float *y, const float *g, float *dx, int64_t rows, int64_t n)');
  const ln = f('void actvar_layernorm(const float *x, float *y, double *mean, double *rstd, const float *w, const float *b, int64_t rows, int64_t C, double eps)');
  const lnBwd = f('void actvar_layernorm_bwd(const float *g, const float *x, const double *mean, const double *rstd, const float *w, float *gx, double *gw, double *gb, int64_t rows, int64_t C)');
  const adamw = f('void actvar_adamw(float *p, const float *g, float *m, float *v, int64_t n, double decay, double b1, double b2, double c1, double c2, double stepSize, double rb, double eps)');
  const bindSgemm = num('int actvar_pool_bind_sgemm(const char *library)');
  const setThreads = num('int actvar_pool_set_threads(int n)');
  const sgemm = num('int actvar_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, ' +
    'const float *B, int ldb, float beta, float *C, int ldc)');
  const groupedFFN = num('int actvar_grouped_ffn(const float *X, int64_t n, int64_t C, const float *W1, const float *B1, ' +
    'const float *W2, int64_t de, int64_t H, const int32_t *tokens, const int32_t *offsets, const int32_t *slots, int32_t N, ' +
    'int64_t K, float *Y, int32_t *pos, float *out)');
  const groupedFFNChunked = num('int actvar_grouped_ffn_chunked(const float *X, int64_t n, int64_t C, const float *W1, const float *B1, ' +
    'const float *W2, int64_t de, int64_t H, const int32_t *tokens, const int32_t *offsets, int32_t N, int64_t chunk, float *out)');
  const splitParts = num('int actvar_split_parts(void)');
  const modulate = f('void actvar_modulate(const float *X, const float *S, const float *Sh, int64_t B, int64_t rows, int64_t C, double eps, float *Y)');
  const residual = f('void actvar_gated_residual(const float *X, const float *Br, const float *G, int64_t B, int64_t rows, int64_t C, float *Y)');
  const splitHeads = f('void actvar_split_heads(const float *QKV, int64_t B, int64_t L, int64_t H, int64_t hd, int64_t part, ' +
    'const float *bias, int l2, const double *sH, float *Y, int64_t stride, int64_t base)');
  const perSample = (what: string, B: number, rows: number) => {
    count(what, B); count(what, rows);
    if ((B === 0) !== (rows === 0) || (B > 0 && rows % B !== 0)) throw new RangeError(`native ${what}: ${rows} rows do not split into ${B} samples`);
  };
  const attendCached = num('int actvar_attend_cached(const float *Q, const float *Kc, const float *Vc, int64_t B, int64_t H, ' +
    'int64_t l, int64_t hd, int64_t Lc, int64_t cap, float scale, const double *bounds, float *out)');
  const gateScores = f('void actvar_gate_scores(const float *X, int64_t rows, int64_t C, const float *w, double b, double eps, float *Y)');
  const setFewRowLimit = num('int actvar_set_small_gemm_max_m(int m)');
  const conv3x3 = num('int actvar_conv3x3(const float *X, int64_t B, int64_t Cin, int64_t Hin, int64_t Win, int mode, ' +
    'int64_t groups, const float *gw, const float *gb, double eps, const float *Wt, const float *bias, int64_t Cout, ' +
    'const float *Res, int in_place, float *out, float *P, float *wk, float *band, int64_t R, float *V, int wino, double *ms)');
  const setSplitParts = num('int actvar_set_split_parts(int parts)');
  const bf16Gemm = num('int actvar_bf16_gemm(int M, int N, int K, const float *X, int ldx, const uint16_t *W, int ldw, float beta, float *C, int ldc)');
  const toBf16 = f('void actvar_f32_to_bf16(const float *x, uint16_t *y, int64_t n)');
  const setBf16Mode = num('int actvar_bf16_set_mode(int cap)');
  const bf16PathFn = num('int actvar_bf16_path(void)');
  let sgemmBound = false;
  let ffnY = new Float32Array(0), ffnPos = new Int32Array(0);
  const at = (a: Float32Array, off: number) => (off === 0 ? a : a.subarray(off));
  return {
    library,
    bf16Gemm(M, N, K, X, ldx, W, ldw, beta, C, ldc) {
      if (bf16Gemm(M, N, K, X, ldx, W, ldw, beta, C, ldc) !== 0) throw new Error('native bf16Gemm: out of memory for the bf16 activations');
    },
    toBf16(x, y, n) {
      count('toBf16', n); need('toBf16', x, n); need('toBf16', y, n);
      if (n > 0) toBf16(x, y, n);
    },
    setBf16Mode(on) {
      const cap = on === true ? 3 : on === false ? 2 : BF16_PATHS.indexOf(on);
      if (cap < 0) throw new RangeError(`native setBf16Mode: unknown path '${String(on)}'; use ${BF16_PATHS.join(', ')}`);
      return BF16_PATHS[setBf16Mode(cap)] ?? 'c';
    },
    bf16Path() { return BF16_PATHS[bf16PathFn()] ?? 'c'; },
    bindSgemm(blas) {
      sgemmBound = bindSgemm(blas) === 0;
      return sgemmBound;
    },
    setThreads(n) {
      if (!Number.isInteger(n) || n < 1) throw new RangeError(`native setThreads: thread count must be a positive integer, got ${n}`);
      return setThreads(n);
    },
    sgemm(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc) {
      if (!sgemmBound) throw new Error('native sgemm: no BLAS library bound (bindSgemm first)');
      sgemm(transA ? 1 : 0, transB ? 1 : 0, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    },
    modulate(X, S, Sh, B, rows, C, eps, Y) {
      perSample('modulate', B, rows); count('modulate', C);
      need('modulate', X, rows * C); need('modulate', Y, rows * C); need('modulate', S, B * C); need('modulate', Sh, B * C);
      if (rows * C > 0) modulate(X, S, Sh, B, rows, C, eps, Y);
    },
    gatedResidual(X, Br, G, B, rows, C, Y) {
      perSample('gatedResidual', B, rows); count('gatedResidual', C);
      need('gatedResidual', X, rows * C); need('gatedResidual', Br, rows * C); need('gatedResidual', Y, rows * C); need('gatedResidual', G, B * C);
      if (rows * C > 0) residual(X, Br, G, B, rows, C, Y);
    },
    splitHeads(QKV, B, L, H, hd, part, bias, l2, sH, Y, stride, base) {
      for (const v of [B, L, H, hd, stride, base]) count('splitHeads', v);
      if (part !== 0 && part !== 1 && part !== 2) throw new RangeError(`native splitHeads: part must be 0, 1 or 2, got ${part}`);
      if (L > 0 && base + L > stride) throw new RangeError(`native splitHeads: rows ${base}..${base + L} do not fit a stride of ${stride}`);
      need('splitHeads', QKV, B * L * 3 * H * hd); need('splitHeads', bias, H * hd); need('splitHeads', sH, H);
      need('splitHeads', Y, B * H * stride * hd);
      if (B * L * H * hd > 0) splitHeads(QKV, B, L, H, hd, part, bias, l2 ? 1 : 0, sH, Y, stride, base);
    },
    gateScores(X, rows, C, w, b, eps, Y) {
      count('gateScores', rows); count('gateScores', C);
      need('gateScores', X, rows * C); need('gateScores', w, C); need('gateScores', Y, rows);
      if (rows > 0) gateScores(X, rows, C, w, b, eps, Y);
    },
    conv3x3(X, B, Cin, Hin, Win, mode, groups, gw, gb, eps, Wt, bias, Cout, Res, inPlace, out, P, wk, band, R, V, wino, ms) {
      for (const v of [B, Cin, Hin, Win, groups, Cout, R]) count('conv3x3', v);
      if (mode !== 0 && mode !== 1 && mode !== 2 && mode !== 3) throw new RangeError(`native conv3x3: mode must be 0…3, got ${mode}`);
      const up = mode === 2, H = up ? 2 * Hin : Hin, W = up ? 2 * Win : Win;
      if (mode === 3 && (groups < 1 || Cin % groups !== 0)) throw new RangeError(`native conv3x3: ${Cin} channels do not split into ${groups} groups`);
      if (R < 1) throw new RangeError('native conv3x3: R must be ≥ 1');
      need('conv3x3', X, B * Cin * Hin * Win); need('conv3x3', Wt, Cout * Cin * 9); need('conv3x3', bias, Cout);
      if (mode === 3) {
        if (!gw || !gb) throw new RangeError('native conv3x3: GroupNorm needs its weight and bias');
        need('conv3x3', gw, Cin); need('conv3x3', gb, Cin);
      }
      need('conv3x3', out, B * Cout * H * W); need('conv3x3', Res, B * Cout * H * W);
      if (inPlace && Res !== out) throw new RangeError('native conv3x3: inPlace needs Res to be out');
      need('conv3x3', P, Cin * (H + 2) * (W + 2) + 2); need('conv3x3', ms, 4);
      if (wino !== 0 && wino !== 2 && wino !== 4) throw new RangeError(`native conv3x3: wino must be 0, 2 or 4, got ${wino}`);
      if (wino) {
        if (H % wino !== 0 || W % wino !== 0) throw new RangeError(`native conv3x3: Winograd F(${wino}×${wino}, 3×3) needs sizes divisible by ${wino}, got ${H}×${W}`);
        const tiles = Math.min(R, H / wino) * (W / wino), xi = (wino + 2) ** 2;
        if (!V) throw new RangeError('native conv3x3: Winograd needs the V workspace');
        need('conv3x3', wk, xi * Cout * Cin); need('conv3x3', band, xi * Cout * tiles); need('conv3x3', V, xi * Cin * tiles);
      } else {
        need('conv3x3', wk, 9 * Cout * Cin); need('conv3x3', band, Cout * Math.min(R, H) * (W + 2));
      }
      if (B * Cout * H * W === 0) return true;
      if (Cin === 0) return false;
      return sgemmBound && conv3x3(X, B, Cin, Hin, Win, mode, groups, gw, gb, eps, Wt, bias, Cout, Res, inPlace ? 1 : 0, out, P, wk, band, R, wino ? V : null, wino, ms) === 0;
    },
    setFewRowLimit(rows) {
      count('setFewRowLimit', rows);
      return setFewRowLimit(rows);
    },
    splitParts() {
      return sgemmBound ? splitParts() : 2;
    },
    setSplitParts(parts) {
      count('setSplitParts', parts);
      return setSplitParts(parts);
    },
    attendCached(Q, Kc, Vc, B, H, l, hd, Lc, cap, scale, bounds, out) {
      for (const v of [B, H, l, hd, Lc, cap]) count('attendCached', v);
      if (Lc > cap) throw new RangeError(`native attendCached: ${Lc} cached tokens exceed the capacity ${cap}`);
      need('attendCached', Q, B * H * l * hd); need('attendCached', Kc, B * H * cap * hd); need('attendCached', Vc, B * H * cap * hd);
      need('attendCached', bounds, H); need('attendCached', out, B * l * H * hd);
      if (B * H * l * hd === 0) return true;
      if (Lc === 0) throw new RangeError('native attendCached: the queries need at least one cached token');
      return sgemmBound && attendCached(Q, Kc, Vc, B, H, l, hd, Lc, cap, scale, bounds, out) === 0;
    },
    groupedFFN(X, n, C, W1, B1, W2, de, tokens, offsets, slots, N, K, out, chunk = 0) {
      for (const v of [n, C, de, N, K, chunk]) count('groupedFFN', v);
      const H = N * de, pairs = n * K;
      need('groupedFFN', X, n * C); need('groupedFFN', W1, H * C); need('groupedFFN', B1, H); need('groupedFFN', W2, C * H);
      need('groupedFFN', out, n * C); need('groupedFFN', offsets, N + 1); need('groupedFFN', tokens, pairs); need('groupedFFN', slots, pairs);
      if (offsets[0] !== 0 || offsets[N] !== pairs) throw new RangeError(`native groupedFFN: offsets must run from 0 to n·K = ${pairs}`);
      for (let e = 0; e < N; e++) if (offsets[e + 1] < offsets[e]) throw new RangeError('native groupedFFN: offsets must not decrease');
      for (let p = 0; p < pairs; p++) {
        if (tokens[p] < 0 || tokens[p] >= n || slots[p] < 0 || slots[p] >= pairs) throw new RangeError(`native groupedFFN: grouped entry ${p} is out of range`);
      }
      if (pairs === 0 || !sgemmBound) return pairs === 0;
      if (chunk > 0) {
        // the chunked kernel reads each expert's tokens as an ascending list (binary search per chunk)
        for (let e = 0; e < N; e++) {
          for (let p = offsets[e] + 1; p < offsets[e + 1]; p++) if (tokens[p] <= tokens[p - 1]) throw new RangeError(`native groupedFFN: expert ${e}'s tokens must ascend`);
        }
        return groupedFFNChunked(X, n, C, W1, B1, W2, de, H, tokens, offsets, N, chunk, out) === 0;
      }
      if (ffnY.length < pairs * C) ffnY = new Float32Array(pairs * C);
      if (ffnPos.length < pairs) ffnPos = new Int32Array(pairs);
      return groupedFFN(X, n, C, W1, B1, W2, de, H, tokens, offsets, slots, N, K, ffnY, ffnPos, out) === 0;
    },
    gelu(x, y, d, n) {
      count('gelu', n); need('gelu', x, n); need('gelu', y, n); need('gelu', d, n);
      if (n > 0) gelu(x, y, d, n);
    },
    mul(a, b, o, n) {
      count('mul', n); need('mul', a, n); need('mul', b, n); need('mul', o, n);
      if (n > 0) mul(a, b, o, n);
    },
    add(a, b, o, n) {
      count('add', n); need('add', a, n); need('add', b, n); need('add', o, n);
      if (n > 0) add(a, b, o, n);
    },
    sqDist(a, b, n) {
      count('sqDist', n); need('sqDist', a, n); need('sqDist', b, n);
      return n > 0 ? sqDist(a, b, n) : 0;
    },
    scaledDiff(a, b, o, n, k) {
      count('scaledDiff', n); need('scaledDiff', a, n); need('scaledDiff', b, n); need('scaledDiff', o, n);
      if (n > 0) scaledDiff(a, b, o, n, k);
    },
    addInto(a, b, n) {
      count('addInto', n); need('addInto', a, n); need('addInto', b, n);
      if (n > 0) addInto(a, b, n);
    },
    colSum(g, out, rows, cols) {
      count('colSum', rows); count('colSum', cols); need('colSum', g, rows * cols); need('colSum', out, cols);
      if (cols > 0) colSum(g, out, rows, cols);
    },
    softmaxRows(x, y, off, rows, n) {
      count('softmaxRows', off); count('softmaxRows', rows); count('softmaxRows', n);
      need('softmaxRows', x, off + rows * n); need('softmaxRows', y, off + rows * n);
      if (rows * n > 0) softmax(at(x, off), at(y, off), rows, n);
    },
    expRows(S, rows, n, bound, sums) {
      count('expRows', rows); count('expRows', n); need('expRows', S, rows * n); need('expRows', sums, rows);
      if (rows * n > 0) expRows(S, rows, n, bound, sums);
    },
    softmaxRowsBackward(y, g, dx, off, rows, n) {
      count('softmaxRowsBackward', off); count('softmaxRowsBackward', rows); count('softmaxRowsBackward', n);
      const len = off + rows * n;
      need('softmaxRowsBackward', y, len); need('softmaxRowsBackward', g, len); need('softmaxRowsBackward', dx, len);
      if (rows * n > 0) softmaxBwd(at(y, off), at(g, off), at(dx, off), rows, n);
    },
    layerNorm(x, y, mean, rstd, w, b, rows, C, eps) {
      count('layerNorm', rows); count('layerNorm', C);
      need('layerNorm', x, rows * C); need('layerNorm', y, rows * C); need('layerNorm', mean, rows); need('layerNorm', rstd, rows);
      need('layerNorm', w, C); need('layerNorm', b, C);
      if (rows > 0) ln(x, y, mean, rstd, w, b, rows, C, eps);
    },
    layerNormBackward(g, x, mean, rstd, w, gx, gw, gb, rows, C) {
      count('layerNormBackward', rows); count('layerNormBackward', C);
      need('layerNormBackward', g, rows * C); need('layerNormBackward', x, rows * C); need('layerNormBackward', gx, rows * C);
      need('layerNormBackward', mean, rows); need('layerNormBackward', rstd, rows);
      need('layerNormBackward', w, C); need('layerNormBackward', gw, C); need('layerNormBackward', gb, C);
      if (rows > 0) lnBwd(g, x, mean, rstd, w, gx, gw, gb, rows, C);
    },
    adamw(p, g, m, v, decay, b1, b2, c1, c2, stepSize, rb, eps) {
      const n = p.length;
      need('adamw', g, n); need('adamw', m, n); need('adamw', v, n);
      if (n > 0) adamw(p, g, m, v, n, decay, b1, b2, c1, c2, stepSize, rb, eps);
    },
  };
}

/** Outcome of `loadNativeKernels`: the kernels, or why there are none. */
export interface NativeLoadResult { kernels: NativeKernels | null; why: string }

let cached: NativeLoadResult | null = null;

/**
 * The native kernels, once per process: none when ACTVAR_NATIVE=0, or when the library was not
 * built (no C compiler at install) or fails to load — then `why` says so and the TypeScript loops run.
 */
export function loadNativeKernels(s: Pick<Settings, 'native' | 'bf16'> = parseSettings(process.env)): NativeLoadResult {
  if (cached) return cached;
  if (!s.native) return (cached = { kernels: null, why: 'ACTVAR_NATIVE=0' });
  const library = nativeLibraryPath();
  if (!existsSync(library)) return (cached = { kernels: null, why: 'native kernels not built: npm run build with a C compiler (apt-get install gcc)' });
  try {
    const kernels = bindNativeKernels(library);
    kernels.setBf16Mode(s.bf16);
    return (cached = { kernels, why: '' });
  } catch (e) {
    return (cached = { kernels: null, why: `native kernels failed to load (${(e as Error).message}); rebuild with npm run build` });
  }
}
