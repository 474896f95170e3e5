/**
 * Dense float64 linear algebra for the quality metrics: the symmetric eigendecomposition and the
 * trace of the square root of a product of two covariance matrices (FID).
 *
 * Symmetric eigensolver (Golub & Van Loan, "Matrix Computations", 4th ed.):
 *   1. Householder tridiagonalisation Qᵀ A Q = T (§8.3.1, Algorithm 8.3.1), Q accumulated backwards;
 *   2. implicit symmetric QR steps with the Wilkinson shift on T (§8.3.3, Algorithms 8.3.2–8.3.3),
 *      Givens rotations accumulated into Q when eigenvectors are wanted.
 * O(n³); n = 2048 (the FID Inception's pool3) takes tens of seconds in plain JavaScript.
 *
 * Matrices are row-major Float64Array n×n. No Node imports (runs in a browser as well).
 */

const EPS = 2.220446049250313e-16;

/** C = A·B for row-major n×n matrices (i-k-j order: the inner loop runs along contiguous rows). */
export function matmulSquare(A: Float64Array, B: Float64Array, n: number): Float64Array {
  const C = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const ci = i * n;
    for (let k = 0; k < n; k++) {
      const a = A[ci + k];
      if (a === 0) continue;
      const bk = k * n;
      for (let j = 0; j < n; j++) C[ci + j] += a * B[bk + j];
    }
  }
  return C;
}

export interface SymmetricEigen {
  /** Eigenvalues, ascending. */
  values: Float64Array;
  /** Eigenvectors as rows: vectors[i·n .. i·n+n) belongs to values[i] (null when not requested). */
  vectors: Float64Array | null;
  /** False when the QR iteration did not converge (values are then NaN). */
  converged: boolean;
}

/**
 * Eigenvalues (and optionally eigenvectors) of the symmetric n×n matrix A (only A's lower triangle
 * is trusted; A is not modified).
 */
export function symmetricEigen(A: Float64Array, n: number, wantVectors = true): SymmetricEigen {
  if (A.length !== n * n) throw new RangeError(`symmetricEigen: expected ${n}×${n} = ${n * n} values, got ${A.length}`);
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) { const v = A[i * n + j]; a[i * n + j] = v; a[j * n + i] = v; }
  const d = new Float64Array(n), e = new Float64Array(n);
  // Householder vectors, kept for the accumulation of Q: H_k = I − β_k v_k v_kᵀ, v_k on rows k+1..n−1
  const vs: Float64Array[] = [], betas: number[] = [];
  const p = new Float64Array(n);
  for (let k = 0; k < n - 2; k++) {
    const m = n - k - 1;
    const v = new Float64Array(m);
    let norm2 = 0;
    for (let i = 0; i < m; i++) { v[i] = a[(k + 1 + i) * n + k]; norm2 += v[i] * v[i]; }
    const norm = Math.sqrt(norm2);
    if (norm === 0) { vs.push(v.fill(0)); betas.push(0); e[k] = 0; continue; }
    const alpha = v[0] > 0 ? -norm : norm; // H x = α e₁, sign chosen against cancellation
    v[0] -= alpha;
    let vtv = 0;
    for (let i = 0; i < m; i++) vtv += v[i] * v[i];
    const beta = 2 / vtv;
    vs.push(v); betas.push(beta);
    e[k] = alpha;
    // A22 ← H A22 H = A22 − v wᵀ − w vᵀ, p = β A22 v, w = p − (β pᵀv / 2) v
    let pv = 0;
    for (let i = 0; i < m; i++) {
      const row = (k + 1 + i) * n + k + 1;
      let acc = 0;
      for (let j = 0; j < m; j++) acc += a[row + j] * v[j];
      p[i] = beta * acc;
      pv += p[i] * v[i];
    }
    const K = (beta * pv) / 2;
    for (let i = 0; i < m; i++) p[i] -= K * v[i];
    for (let i = 0; i < m; i++) {
      const row = (k + 1 + i) * n + k + 1, vi = v[i], wi = p[i];
      for (let j = 0; j < m; j++) a[row + j] -= vi * p[j] + wi * v[j];
    }
  }
  for (let k = 0; k < n; k++) d[k] = a[k * n + k];
  if (n >= 2) e[n - 2] = a[(n - 1) * n + n - 2];
  e[n - 1] = 0;

  // Wt = Qᵀ = H_{n−3} ··· H_0 as rows (row j of Wt = column j of Q): left-multiply by each H_k in turn
  let Wt: Float64Array | null = null;
  if (wantVectors) {
    Wt = new Float64Array(n * n);
    for (let i = 0; i < n; i++) Wt[i * n + i] = 1;
    const w = new Float64Array(n);
    for (let k = 0; k < vs.length; k++) {
      const v = vs[k], beta = betas[k], m = v.length;
      if (beta === 0) continue;
      w.fill(0);
      for (let i = 0; i < m; i++) { const vi = v[i]; if (vi === 0) continue; const row = (k + 1 + i) * n; for (let j = 0; j < n; j++) w[j] += vi * Wt[row + j]; }
      for (let i = 0; i < m; i++) { const f = beta * v[i]; if (f === 0) continue; const row = (k + 1 + i) * n; for (let j = 0; j < n; j++) Wt[row + j] -= f * w[j]; }
    }
    // row j of Qᵀ is column j of Q: the starting columns of V = Q·Z, as rows
  }
  const converged = tridiagonalQr(d, e, n, Wt);
  if (!converged) return { values: new Float64Array(n).fill(NaN), vectors: null, converged };
  // sort ascending (selection; n is small relative to the O(n³) above)
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => d[x] - d[y]);
  const values = Float64Array.from(order, (i) => d[i]);
  let vectors: Float64Array | null = null;
  if (Wt) {
    vectors = new Float64Array(n * n);
    // the rotations acted on Wt's rows as on the columns of V = Q·Z, so row r of Wt is eigenvector r
    order.forEach((src, dst) => vectors!.set(Wt!.subarray(src * n, src * n + n), dst * n));
  }
  return { values, vectors, converged };
}

/**
 * Implicit symmetric tridiagonal QR with the Wilkinson shift (Golub & Van Loan Alg. 8.3.2/8.3.3).
 * d: diagonal (overwritten by the eigenvalues), e[i]: T[i][i+1]. Rotations G (on planes k, k+1) are
 * applied to the rows of Vt (Vt ← Gᵀ-rotated rows, i.e. the columns of V ← V G). Returns false when an
 * eigenvalue needs more than 60 sweeps (never seen on finite input).
 */
function tridiagonalQr(d: Float64Array, e: Float64Array, n: number, Vt: Float64Array | null): boolean {
  let hi = n - 1, iter = 0;
  const maxIter = 60 * n + 60;
  while (hi > 0) {
    if (!Number.isFinite(e[hi - 1]) || !Number.isFinite(d[hi])) return false;
    if (Math.abs(e[hi - 1]) <= EPS * (Math.abs(d[hi - 1]) + Math.abs(d[hi]))) { e[hi - 1] = 0; hi--; continue; }
    if (++iter > maxIter) return false;
    let lo = hi - 1;
    while (lo > 0 && Math.abs(e[lo - 1]) > EPS * (Math.abs(d[lo - 1]) + Math.abs(d[lo]))) lo--;
    if (lo > 0) e[lo - 1] = 0;
    // Wilkinson shift: the eigenvalue of the trailing 2×2 block closer to d[hi]
    const delta = (d[hi - 1] - d[hi]) / 2, f2 = e[hi - 1] * e[hi - 1];
    const mu = d[hi] - f2 / (delta + (delta >= 0 ? 1 : -1) * Math.hypot(delta, e[hi - 1]));
    let x = d[lo] - mu, z = e[lo];
    for (let k = lo; k < hi; k++) {
      const r = Math.hypot(x, z);
      const c = r === 0 ? 1 : x / r, s = r === 0 ? 0 : z / r;
      if (k > lo) e[k - 1] = r;
      const a = d[k], b = d[k + 1], f = e[k];
      d[k] = a * c * c + 2 * f * c * s + b * s * s;
      d[k + 1] = a * s * s - 2 * f * c * s + b * c * c;
      e[k] = (b - a) * c * s + f * (c * c - s * s);
      if (k + 1 < hi) { const g = e[k + 1]; z = s * g; e[k + 1] = c * g; }
      x = e[k];
      if (Vt) {
        const rk = k * n, rk1 = (k + 1) * n;
        for (let j = 0; j < n; j++) { const u = Vt[rk + j], w = Vt[rk1 + j]; Vt[rk + j] = c * u + s * w; Vt[rk1 + j] = -s * u + c * w; }
      }
    }
  }
  return true;
}

/** The symmetric PSD square root V diag(√max(λ, 0)) Vᵀ of a symmetric matrix (negative eigenvalues, numerical noise of a PSD matrix, are clamped to 0). */
export function sqrtmPsd(A: Float64Array, n: number): Float64Array {
  const { values, vectors, converged } = symmetricEigen(A, n, true);
  if (!converged || !vectors) return new Float64Array(n * n).fill(NaN);
  const R = new Float64Array(n * n);
  for (let k = 0; k < n; k++) {
    const s = Math.sqrt(Math.max(values[k], 0));
    if (s === 0) continue;
    const vk = vectors.subarray(k * n, k * n + n);
    for (let i = 0; i < n; i++) { const f = s * vk[i]; if (f === 0) continue; const row = i * n; for (let j = 0; j < n; j++) R[row + j] += f * vk[j]; }
  }
  return R;
}

export interface TraceSqrtResult {
  /** Re tr √(Σ₁Σ₂). */
  trace: number;
  /** Largest |imaginary part| on the diagonal of the principal root (from negative eigenvalues). */
  maxImagDiagonal: number;
}

/**
 * tr √(Σ₁Σ₂) for symmetric PSD Σ₁, Σ₂ (the matrix square-root term of the FID).
 *
 * Σ₁Σ₂ is similar to the symmetric PSD M = √Σ₁ Σ₂ √Σ₁ (M = √Σ₁ (Σ₁Σ₂) √Σ₁⁻¹ where Σ₁ is invertible),
 * so the principal square root of Σ₁Σ₂ has the trace Σᵢ √μᵢ over the eigenvalues μᵢ of M. This is the
 * trace scipy.linalg.sqrtm's Schur method gives (tr √T = Σ √Tᵢᵢ) without a non-symmetric Schur
 * decomposition. Eigenvalues of M below 0 (rounding noise of a PSD matrix) have an imaginary
 * principal root; as scipy's result they count with their real part 0, and `maxImagDiagonal` is the
 * largest imaginary diagonal entry of √M in M's basis (the analogue of pytorch-fid's check).
 */
export function traceSqrtProduct(S1: Float64Array, S2: Float64Array, n: number): TraceSqrtResult {
  const R = sqrtmPsd(S1, n);
  const M = matmulSquare(matmulSquare(R, S2, n), R, n);
  for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) { const v = (M[i * n + j] + M[j * n + i]) / 2; M[i * n + j] = v; M[j * n + i] = v; }
  const { values, converged } = symmetricEigen(M, n, false);
  if (!converged) return { trace: NaN, maxImagDiagonal: NaN };
  let trace = 0, anyNegative = false;
  for (const mu of values) { if (mu > 0) trace += Math.sqrt(mu); else if (mu < 0) anyNegative = true; }
  let maxImagDiagonal = 0;
  if (anyNegative) {
    // rare: only then pay for M's eigenvectors; diag(V diag(√max(−μ,0)) Vᵀ)
    const ev = symmetricEigen(M, n, true);
    if (ev.vectors) {
      const diag = new Float64Array(n);
      for (let k = 0; k < n; k++) {
        const s = Math.sqrt(Math.max(-ev.values[k], 0));
        if (s === 0) continue;
        for (let i = 0; i < n; i++) { const v = ev.vectors[k * n + i]; diag[i] += s * v * v; }
      }
      for (const v of diag) maxImagDiagonal = Math.max(maxImagDiagonal, v);
    }
  }
  return { trace, maxImagDiagonal };
}
