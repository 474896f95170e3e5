import './util/setup.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fixturesDir, fixtureOrSkip } from './util/fixtures.js';
import { readSafetensorsFile } from '../src/io/safetensors.js';
import { Rng } from '../src/tensor/rng.js';
import { symmetricEigen, sqrtmPsd, matmulSquare, traceSqrtProduct } from '../src/eval/linalg.js';
import { featureStats, frechetDistance } from '../src/eval/fid.js';
import { inceptionScore } from '../src/eval/inception-score.js';
import { precisionRecall, knnRadii2, knnRadii2Gram } from '../src/eval/precision-recall.js';

const metricsDir = path.join(fixturesDir, 'metrics');

function randomMatrix(rng: Rng, r: number, c: number): Float64Array {
  return Float64Array.from({ length: r * c }, () => rng.normal());
}
/** The Gram matrix G = X Xᵀ / c of X [r, c] (symmetric PSD of rank ≤ min(r, c)). */
function gram(X: Float64Array, r: number, c: number): Float64Array {
  const G = new Float64Array(r * r);
  for (let i = 0; i < r; i++) for (let j = 0; j < r; j++) { let s = 0; for (let k = 0; k < c; k++) s += X[i * c + k] * X[j * c + k]; G[i * r + j] = s / c; }
  return G;
}
function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

test('symmetricEigen: A v = λ v, orthonormal vectors, known spectrum of a rotated diagonal', () => {
  const n = 40, rng = new Rng(3);
  // A = Q diag(1..n) Qᵀ with Q from the eigenvectors of a random symmetric matrix
  const S = gram(randomMatrix(rng, n, n + 5), n, n + 5);
  const Q = symmetricEigen(S, n).vectors!;
  const A = new Float64Array(n * n);
  for (let k = 0; k < n; k++) for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) A[i * n + j] += (k + 1) * Q[k * n + i] * Q[k * n + j];
  const { values, vectors } = symmetricEigen(A, n);
  assert.ok(maxAbsDiff(values, Array.from({ length: n }, (_, i) => i + 1)) < 1e-12, `spectrum ${values.slice(0, 4)}`);
  for (let k = 0; k < n; k++) {
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = 0; j < n; j++) s += A[i * n + j] * vectors![k * n + j];
      assert.ok(Math.abs(s - values[k] * vectors![k * n + i]) < 1e-12);
    }
    for (let l = 0; l <= k; l++) {
      let s = 0;
      for (let j = 0; j < n; j++) s += vectors![k * n + j] * vectors![l * n + j];
      assert.ok(Math.abs(s - (k === l ? 1 : 0)) < 1e-12);
    }
  }
  // a diagonal matrix and a 1×1 matrix
  assert.deepEqual([...symmetricEigen(Float64Array.from([3, 0, 0, -1]), 2).values], [-1, 3]);
  assert.deepEqual([...symmetricEigen(Float64Array.from([5]), 1).values], [5]);
});

test('sqrtmPsd: a matrix with a known root, and a rank-deficient covariance', () => {
  // known root: R symmetric PSD, A = R²
  const n = 12, rng = new Rng(5);
  const R = gram(randomMatrix(rng, n, 20), n, 20);
  const A = matmulSquare(R, R, n);
  assert.ok(maxAbsDiff(sqrtmPsd(A, n), R) < 1e-10, 'the root of R² is R');
  // a 3×3 by hand: diag(4, 9, 0) rotated by 45° in the first plane
  const A3 = Float64Array.from([6.5, -2.5, 0, -2.5, 6.5, 0, 0, 0, 0]); // Rot diag(4,9) Rotᵀ
  const R3 = Float64Array.from([2.5, -0.5, 0, -0.5, 2.5, 0, 0, 0, 0]);
  assert.ok(maxAbsDiff(sqrtmPsd(A3, 3), R3) < 1e-14, `${sqrtmPsd(A3, 3)}`);
  // rank-deficient covariance: 5 samples in 30 dimensions (rank 4); root² = A, root PSD
  const X = randomMatrix(rng, 30, 5);
  const S = gram(X, 30, 5);
  const root = sqrtmPsd(S, 30);
  assert.ok(maxAbsDiff(matmulSquare(root, root, 30), S) < 1e-12);
  const ev = symmetricEigen(root, 30, false).values;
  assert.ok(ev[0] > -1e-7, `root is PSD (smallest eigenvalue ${ev[0]})`);
});

test('traceSqrtProduct: tr √(Σ₁Σ₂) = Σ √eig(√Σ₁ Σ₂ √Σ₁), commuting and rank-deficient cases', () => {
  // commuting: Σ₁ = diag(a), Σ₂ = diag(b) → Σ √(aᵢbᵢ)
  const a = [1, 4, 9, 0.25], b = [16, 1, 4, 0];
  const D1 = new Float64Array(16), D2 = new Float64Array(16);
  a.forEach((v, i) => { D1[i * 5] = v; D2[i * 5] = b[i]; });
  assert.ok(Math.abs(traceSqrtProduct(D1, D2, 4).trace - (4 + 2 + 6 + 0)) < 1e-13);
  // Σ₁ = Σ₂ = S → tr √(S²) = tr S, also for rank-deficient S (3 samples in 10 dims)
  const rng = new Rng(9);
  const S = gram(randomMatrix(rng, 10, 3), 10, 3);
  let tr = 0;
  for (let i = 0; i < 10; i++) tr += S[i * 11];
  const r = traceSqrtProduct(S, S, 10);
  assert.ok(Math.abs(r.trace - tr) < 1e-6 * tr, `${r.trace} vs ${tr}`);
  assert.ok(r.maxImagDiagonal < 1e-6);
});

test('FID, IS and P/R match the reference values of ../shared/fixtures/metrics', (t) => {
  if (!fixtureOrSkip(t, path.join(metricsDir, 'metrics_inputs.safetensors'), path.join(metricsDir, 'metrics_expected.json'))) return;
  const { tensors } = readSafetensorsFile(path.join(metricsDir, 'metrics_inputs.safetensors'));
  const expected = JSON.parse(readFileSync(path.join(metricsDir, 'metrics_expected.json'), 'utf8')) as Record<string, number | number[]>;
  const real = tensors.get('real')!, fake = tensors.get('fake')!, logits = tensors.get('logits')!;
  const D = real.shape[1];
  const sr = featureStats(real.f32, D), sf = featureStats(fake.f32, D);
  const fid = frechetDistance(sr, sf);
  assert.equal(fid.offsetApplied, false);
  assert.ok(Math.abs(fid.fid - (expected.fid as number)) <= 1e-6 * (expected.fid as number), `fid ${fid.fid} vs ${expected.fid}`);
  // symmetric in its arguments (as the formula)
  assert.ok(Math.abs(frechetDistance(sf, sr).fid - fid.fid) <= 1e-9 * fid.fid);
  const self = frechetDistance(sr, sr).fid;
  assert.ok(Math.abs(self) < 1e-9, `fid_self ${self} (reference ${expected.fid_self})`);
  const C = logits.shape[1];
  const is1 = inceptionScore(logits.f32, C, 1), is10 = inceptionScore(logits.f32, C, 10);
  const e1 = expected.inception_score_splits1 as number[], e10 = expected.inception_score_splits10 as number[];
  assert.ok(Math.abs(is1.mean - e1[0]) < 1e-12 && is1.std === 0, `IS(1) ${is1.mean}`);
  assert.ok(Math.abs(is10.mean - e10[0]) < 1e-12, `IS(10) mean ${is10.mean} vs ${e10[0]}`);
  assert.ok(Math.abs(is10.std - e10[1]) < 1e-12, `IS(10) std ${is10.std} vs ${e10[1]}`);
  for (const method of ['gram', 'exact'] as const) {
    const pr = precisionRecall(real.f32, fake.f32, D, { k: 3, method });
    assert.equal(pr.precision, expected.precision_k3, method);
    assert.equal(pr.recall, expected.recall_k3, method);
  }
});

test('IS of uniform logits is 1; of confident, evenly spread classes it is the number of classes', () => {
  const C = 4, N = 40;
  assert.ok(Math.abs(inceptionScore(new Float32Array(N * C), C).mean - 1) < 1e-12);
  const l = new Float32Array(N * C);
  for (let i = 0; i < N; i++) l[i * C + (i % C)] = 60;
  const s = inceptionScore(l, C, 10);
  assert.ok(Math.abs(s.mean - C) < 1e-9 && s.std < 1e-9, `${s.mean}`);
  assert.throws(() => inceptionScore(l, C, 41), /splits must be/);
});

test('precision/recall: identical sets give 1, far-apart sets give 0; radii are the 3rd nearest other sample', () => {
  const rng = new Rng(1), D = 3, N = 50;
  const X = Float32Array.from({ length: N * D }, () => rng.normal());
  assert.deepEqual(precisionRecall(X, X, D), { precision: 1, recall: 1 });
  const Y = X.map((v) => v + 100);
  assert.deepEqual(precisionRecall(X, Y, D), { precision: 0, recall: 0 });
  // points on a line at 0, 1, 3, 6, 10: 3rd nearest other of 0 is 6 → r² = 36
  const r = knnRadii2(Float64Array.from([0, 1, 3, 6, 10]), 5, 1, 3);
  assert.deepEqual([...r], [36, 25, 9, 25, 81]);
});

test('precision/recall: the float32-Gram path decides exactly as the float64 loops (ties, duplicates, lattices)', () => {
  const rng = new Rng(12);
  for (const [D, N, M, lattice] of [[5, 300, 260, false], [16, 200, 220, true], [2, 150, 150, true]] as const) {
    // lattice points (integers in a small range) make many exactly equal distances: boundary cases
    const gen = (n: number, shift: number) => Float32Array.from({ length: n * D }, () => (lattice ? Math.floor(rng.uniform() * 4) + shift : rng.normal() + shift));
    const real = gen(N, 0), fake = gen(M, lattice ? 0 : 0.3);
    fake.set(real.subarray(0, 10 * D)); // duplicates across the sets
    const a = precisionRecall(real, fake, D, { method: 'exact' }), b = precisionRecall(real, fake, D, { method: 'gram' });
    assert.deepEqual(b, a, `D ${D}`);
    const R = Float64Array.from(real);
    assert.deepEqual([...knnRadii2Gram(R, real, N, D, 3)], [...knnRadii2(R, N, D, 3)]);
  }
});

test('featureStats: covariance with N − 1; FID of shifted copies is ‖Δμ‖²', () => {
  const X = Float32Array.from([1, 2, 3, 4, 5, 7]); // 3 rows of width 2
  const s = featureStats(X, 2);
  assert.deepEqual([...s.mean], [3, 13 / 3]);
  // columns (1, 3, 5) and (2, 4, 7): variance 4, and the rest by the N − 1 formula
  const vy = ((2 - 13 / 3) ** 2 + (4 - 13 / 3) ** 2 + (7 - 13 / 3) ** 2) / 2, cxy = ((-2) * (2 - 13 / 3) + 0 + 2 * (7 - 13 / 3)) / 2;
  assert.ok(maxAbsDiff(s.cov, [4, cxy, cxy, vy]) < 1e-12);
  const rng = new Rng(4), D = 6, N = 200;
  const A = Float32Array.from({ length: N * D }, () => rng.normal());
  const B = A.map((v, i) => v + (i % D === 2 ? 0.5 : 0));
  const f = frechetDistance(featureStats(A, D), featureStats(B, D)).fid;
  assert.ok(Math.abs(f - 0.25) < 1e-6, `${f}`);
});
