import type { Backend, JsWorkerPool } from './backend.js';
import type { NativeKernels } from './native.js';

/**
 * Pure-TypeScript sgemm: the fallback when no BLAS library is found.
 *
 * Structure (the classic GotoBLAS/BLIS "GEBP" loop nest, facts from Goto & van de Geijn,
 * "Anatomy of high-performance matrix multiplication", 2008):
 *
 *   for jc in N by NC:            B block  op(B)[pc:pc+KC, jc:jc+NC] packed into NR-wide panels
 *     for pc in K by KC:
 *       pack B
 *       for ic in M by MC:        A block  op(A)[ic:ic+MC, pc:pc+KC] packed into MR-tall panels
 *         pack A
 *         for jr, ir:             MR×NR micro-kernel: rank-kc update held in MR·NR local variables
 *
 * Packing makes every micro-kernel load sequential and handles the four transpose cases and
 * arbitrary offsets / leading dimensions in one place; ragged edges are zero-padded in the
 * packs, so the micro-kernel always runs full tiles and only its store is clipped.
 *
 * Measured on the 2-core dev box (V8 emits scalar SSE only): ~4.7 GFLOP/s vs ~2.4 for the
 * previous axpy loop; V8's scalar multiply-add ceiling there is ~4.8 GFLOP/s, so the remaining
 * headroom in plain TS is small. 6×4 won over 4×4, 4×8, 2×8, 3×4 (fewer spills than 4×8, fewer
 * loads per FLOP than 4×4).
 */

/** Micro-tile rows (of C / op(A)). */
export const MR = 6;
/** Micro-tile columns (of C / op(B)). */
export const NR = 4;
/** K-block: one packed A panel (KC·MR floats) and B panel (KC·NR) stay in L1. */
const KC = 256;
/** M-block (multiple of MR): the packed A block (MC·KC floats, 96 KiB) stays in L2. */
const MC = 96;
/** N-block (multiple of NR): the packed B block (KC·NC floats, 2 MiB) stays in L3. */
const NC = 2048;

// Scratch packs reused across calls (JS is single-threaded and sgemm never re-enters).
let packA = new Float32Array(0);
let packB = new Float32Array(0);
const tile = new Float64Array(MR * NR);

/**
 * Validates sgemm arguments against the buffers (shared by every backend: a native BLAS
 * reading past a typed array would corrupt memory instead of throwing).
 * Row-major: op(A) is M×K, stored (transA ? K×M : M×K) with row stride lda, etc.
 */
export function checkSgemmArgs(
  transA: boolean, transB: boolean, M: number, N: number, K: number,
  A: Float32Array, aOff: number, lda: number,
  B: Float32Array, bOff: number, ldb: number,
  C: Float32Array, cOff: number, ldc: number,
): void {
  for (const [name, v] of [['M', M], ['N', N], ['K', K], ['aOff', aOff], ['bOff', bOff], ['cOff', cOff], ['lda', lda], ['ldb', ldb], ['ldc', ldc]] as const) {
    if (!Number.isInteger(v) || v < 0) throw new RangeError(`sgemm: ${name} must be a non-negative integer, got ${v}`);
  }
  if (M === 0 || N === 0) return;
  checkMatrix('C', C, cOff, ldc, M, N, false);
  if (K === 0) return;
  checkMatrix('A', A, aOff, lda, M, K, transA);
  checkMatrix('B', B, bOff, ldb, K, N, transB);
}

function checkMatrix(name: string, X: Float32Array, off: number, ld: number, r: number, c: number, trans: boolean): void {
  const rows = trans ? c : r, cols = trans ? r : c;
  if (ld < cols) throw new RangeError(`sgemm: ld${name.toLowerCase()}=${ld} is smaller than the ${cols} columns of stored ${name} (${rows}×${cols}${trans ? ', transposed' : ''})`);
  const end = off + (rows - 1) * ld + cols;
  if (end > X.length) throw new RangeError(`sgemm: ${name} needs ${end} elements (offset ${off}, ${rows}×${cols}, ld ${ld}) but its buffer has ${X.length}`);
}

export class TsBackend implements Backend {
  readonly name = 'typescript fallback';
  /** Helper threads for JavaScript kernels, attached by the Node edge (backend/node.ts). */
  workers: JsWorkerPool | null = null;
  /** Set by `backend()` when the native elementwise kernels are built; a bare TsBackend is pure TypeScript. */
  native: NativeKernels | null = null;
  /** Always 1: the fallback runs on the main thread. */
  threads = 1;
  setThreads(_n: number): void { /* single-threaded; the count is ignored */ }

  sgemm(
    transA: boolean, transB: boolean, M: number, N: number, K: number,
    alpha: number, A: Float32Array, aOff: number, lda: number,
    B: Float32Array, bOff: number, ldb: number,
    beta: number, C: Float32Array, cOff: number, ldc: number,
  ): void {
    checkSgemmArgs(transA, transB, M, N, K, A, aOff, lda, B, bOff, ldb, C, cOff, ldc);
    if (M === 0 || N === 0) return;
    // C = beta·C first (beta = 0 overwrites, so NaNs in C do not survive, as in BLAS)
    if (beta !== 1) {
      for (let i = 0; i < M; i++) {
        const c0 = cOff + i * ldc;
        if (beta === 0) C.fill(0, c0, c0 + N);
        else for (let j = c0; j < c0 + N; j++) C[j] *= beta;
      }
    }
    if (K === 0 || alpha === 0) return;
    const needA = MC * KC, needB = KC * Math.min(NC, roundUp(N, NR));
    if (packA.length < needA) packA = new Float32Array(needA);
    if (packB.length < needB) packB = new Float32Array(needB);
    const Ap = packA, Bp = packB;

    for (let jc = 0; jc < N; jc += NC) {
      const nc = Math.min(NC, N - jc);
      for (let pc = 0; pc < K; pc += KC) {
        const kc = Math.min(KC, K - pc);
        packPanelsB(transB, B, bOff, ldb, pc, kc, jc, nc, Bp);
        for (let ic = 0; ic < M; ic += MC) {
          const mc = Math.min(MC, M - ic);
          packPanelsA(transA, A, aOff, lda, ic, mc, pc, kc, Ap);
          for (let jr = 0; jr < nc; jr += NR) {
            const nr = Math.min(NR, nc - jr);
            for (let ir = 0; ir < mc; ir += MR) {
              const mr = Math.min(MR, mc - ir);
              kernel6x4(kc, Ap, ir * kc, Bp, jr * kc, alpha, C, cOff + (ic + ir) * ldc + jc + jr, ldc, mr, nr);
            }
          }
        }
      }
    }
  }
}

function roundUp(n: number, m: number): number { return Math.ceil(n / m) * m; }

/**
 * Packs op(A)[i0:i0+mc, p0:p0+kc] into MR-row panels, each laid out [p][MR] (zero-padded rows).
 * op(A)(i, k) = transA ? A[aOff + k·lda + i] : A[aOff + i·lda + k].
 */
function packPanelsA(transA: boolean, A: Float32Array, aOff: number, lda: number, i0: number, mc: number, p0: number, kc: number, Ap: Float32Array): void {
  for (let ir = 0; ir < mc; ir += MR) {
    const mr = Math.min(MR, mc - ir);
    let o = ir * kc;
    if (!transA) {
      // row i of op(A) is contiguous in k
      for (let i = 0; i < MR; i++) {
        if (i < mr) {
          let src = aOff + (i0 + ir + i) * lda + p0;
          for (let p = 0; p < kc; p++) Ap[o + p * MR + i] = A[src++];
        } else {
          for (let p = 0; p < kc; p++) Ap[o + p * MR + i] = 0;
        }
      }
    } else {
      // column i of op(A) is contiguous in i for fixed k
      for (let p = 0; p < kc; p++) {
        const src = aOff + (p0 + p) * lda + i0 + ir;
        for (let i = 0; i < mr; i++) Ap[o++] = A[src + i];
        for (let i = mr; i < MR; i++) Ap[o++] = 0;
      }
    }
  }
}

/**
 * Packs op(B)[p0:p0+kc, j0:j0+nc] into NR-column panels, each laid out [p][NR] (zero-padded).
 * op(B)(k, j) = transB ? B[bOff + j·ldb + k] : B[bOff + k·ldb + j].
 */
function packPanelsB(transB: boolean, B: Float32Array, bOff: number, ldb: number, p0: number, kc: number, j0: number, nc: number, Bp: Float32Array): void {
  for (let jr = 0; jr < nc; jr += NR) {
    const nr = Math.min(NR, nc - jr);
    let o = jr * kc;
    if (!transB) {
      for (let p = 0; p < kc; p++) {
        const src = bOff + (p0 + p) * ldb + j0 + jr;
        for (let j = 0; j < nr; j++) Bp[o++] = B[src + j];
        for (let j = nr; j < NR; j++) Bp[o++] = 0;
      }
    } else {
      for (let j = 0; j < NR; j++) {
        if (j < nr) {
          let src = bOff + (j0 + jr + j) * ldb + p0;
          for (let p = 0; p < kc; p++) Bp[o + p * NR + j] = B[src++];
        } else {
          for (let p = 0; p < kc; p++) Bp[o + p * NR + j] = 0;
        }
      }
    }
  }
}

/**
 * C[0:mr, 0:nr] += alpha · Σ_p Ap[p, 0:6]ᵀ · Bp[p, 0:4], with the 24 sums in locals (float64).
 * Loop body: per k, load one B value at a time and update the 6 accumulators of its column,
 * which keeps fewer values live than loading all of A and B first.
 */
function kernel6x4(kc: number, Ap: Float32Array, ao: number, Bp: Float32Array, bo: number, alpha: number,
  C: Float32Array, co: number, ldc: number, mr: number, nr: number): void {
  let c00 = 0, c01 = 0, c02 = 0, c03 = 0;
  let c10 = 0, c11 = 0, c12 = 0, c13 = 0;
  let c20 = 0, c21 = 0, c22 = 0, c23 = 0;
  let c30 = 0, c31 = 0, c32 = 0, c33 = 0;
  let c40 = 0, c41 = 0, c42 = 0, c43 = 0;
  let c50 = 0, c51 = 0, c52 = 0, c53 = 0;
  for (let p = 0; p < kc; p++) {
    const a0 = Ap[ao], a1 = Ap[ao + 1], a2 = Ap[ao + 2], a3 = Ap[ao + 3], a4 = Ap[ao + 4], a5 = Ap[ao + 5];
    let b = Bp[bo];
    c00 += a0 * b; c10 += a1 * b; c20 += a2 * b; c30 += a3 * b; c40 += a4 * b; c50 += a5 * b;
    b = Bp[bo + 1];
    c01 += a0 * b; c11 += a1 * b; c21 += a2 * b; c31 += a3 * b; c41 += a4 * b; c51 += a5 * b;
    b = Bp[bo + 2];
    c02 += a0 * b; c12 += a1 * b; c22 += a2 * b; c32 += a3 * b; c42 += a4 * b; c52 += a5 * b;
    b = Bp[bo + 3];
    c03 += a0 * b; c13 += a1 * b; c23 += a2 * b; c33 += a3 * b; c43 += a4 * b; c53 += a5 * b;
    ao += 6; bo += 4;
  }
  if (mr === 6 && nr === 4) {
    let r = co;
    C[r] += alpha * c00; C[r + 1] += alpha * c01; C[r + 2] += alpha * c02; C[r + 3] += alpha * c03; r += ldc;
    C[r] += alpha * c10; C[r + 1] += alpha * c11; C[r + 2] += alpha * c12; C[r + 3] += alpha * c13; r += ldc;
    C[r] += alpha * c20; C[r + 1] += alpha * c21; C[r + 2] += alpha * c22; C[r + 3] += alpha * c23; r += ldc;
    C[r] += alpha * c30; C[r + 1] += alpha * c31; C[r + 2] += alpha * c32; C[r + 3] += alpha * c33; r += ldc;
    C[r] += alpha * c40; C[r + 1] += alpha * c41; C[r + 2] += alpha * c42; C[r + 3] += alpha * c43; r += ldc;
    C[r] += alpha * c50; C[r + 1] += alpha * c51; C[r + 2] += alpha * c52; C[r + 3] += alpha * c53;
    return;
  }
  // ragged edge tile: spill to scratch, store only the valid mr×nr corner
  const t = tile;
  t[0] = c00; t[1] = c01; t[2] = c02; t[3] = c03;
  t[4] = c10; t[5] = c11; t[6] = c12; t[7] = c13;
  t[8] = c20; t[9] = c21; t[10] = c22; t[11] = c23;
  t[12] = c30; t[13] = c31; t[14] = c32; t[15] = c33;
  t[16] = c40; t[17] = c41; t[18] = c42; t[19] = c43;
  t[20] = c50; t[21] = c51; t[22] = c52; t[23] = c53;
  for (let i = 0; i < mr; i++) {
    const r = co + i * ldc;
    for (let j = 0; j < nr; j++) C[r + j] += alpha * t[i * NR + j];
  }
}
