/**
 * `actvar features` and `actvar eval` end to end (child processes running dist/src/cli/main.js):
 * the FID that `eval` prints equals pytorch-fid's formula recomputed here from its --features-out
 * file by an independent float64 path (Denman–Beavers iteration for √(Σ₁Σ₂), no eigensolver);
 * `features` writes the extractor's rows in sorted file-name order; 3 shards merged = 1 run;
 * bad input exits 2 with one line.
 */
import './util/setup.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readSafetensorsFile, writeSafetensors } from '../src/io/safetensors.js';
import { encodePng } from '../src/image/png.js';
import { Tensor } from '../src/tensor/tensor.js';
import { Rng } from '../src/tensor/rng.js';
import { Classifier, CLASSIFIER_FORMAT } from '../src/eval/classifier.js';
import { ClassifierExtractor } from '../src/eval/classifier-extractor.js';
import { repoRoot } from './util/fixtures.js';

const cli = path.join(repoRoot, 'dist/src/cli/main.js');
const SHIPPED_VAR = path.join(repoRoot, 'models/var-fashion-mnist.safetensors');

function run(args: string[], cwd: string, env: Record<string, string> = {}): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cli, ...args], { cwd, encoding: 'utf8', timeout: 240_000, env: { ...process.env, ...env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
function tmp(): string { return fs.mkdtempSync(path.join(os.tmpdir(), 'actvar-eval-')); }

/** A small classifier whose fc1 bias keeps every feature active (full-rank feature covariances). */
function tinyClassifier(file: string): Classifier {
  const clf = Classifier.init({ c1: 4, c2: 4, hidden: 6, kernel: 3, numClasses: 5 }, 11);
  clf.params.get('fc1.bias')!.f32.fill(3);
  writeSafetensors(file, clf.params, { format: CLASSIFIER_FORMAT });
  return clf;
}

/** `n` grey 28×28 PNGs: smooth random blobs, brightness scaled by `gain`. Returns the file names written. */
function writePngs(dir: string, n: number, seed: number, gain: number): string[] {
  fs.mkdirSync(dir, { recursive: true });
  const rng = new Rng(seed), names: string[] = [];
  for (let i = 0; i < n; i++) {
    const cx = rng.uniform() * 28, cy = rng.uniform() * 28, s = 3 + rng.uniform() * 6, data = new Uint8Array(28 * 28 * 3);
    for (let y = 0; y < 28; y++) for (let x = 0; x < 28; x++) {
      const v = Math.min(255, Math.round(255 * gain * Math.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * s * s)) + 20 * rng.uniform()));
      data.fill(v, (y * 28 + x) * 3, (y * 28 + x) * 3 + 3);
    }
    const name = `img_${String(n - i).padStart(3, '0')}.png`; // written in reverse name order on purpose
    fs.writeFileSync(path.join(dir, name), encodePng({ width: 28, height: 28, data }));
    names.push(name);
  }
  return names;
}

// ---- an independent float64 FID: plain loops, Gauss–Jordan inverse, Denman–Beavers square root
function statsOf(X: Float32Array, D: number): { mu: number[]; S: number[][] } {
  const N = X.length / D, mu = Array.from({ length: D }, (_, j) => { let s = 0; for (let i = 0; i < N; i++) s += X[i * D + j]; return s / N; });
  const S = Array.from({ length: D }, (_, a) => Array.from({ length: D }, (_, b) => {
    let s = 0; for (let i = 0; i < N; i++) s += (X[i * D + a] - mu[a]) * (X[i * D + b] - mu[b]); return s / (N - 1);
  }));
  return { mu, S };
}
const mm = (A: number[][], B: number[][]): number[][] => A.map((r) => B[0].map((_, j) => r.reduce((s, v, k) => s + v * B[k][j], 0)));
function inv(A: number[][]): number[][] {
  const n = A.length, M = A.map((r, i) => [...r, ...Array.from({ length: n }, (_, j) => (i === j ? 1 : 0))]);
  for (let c = 0; c < n; c++) {
    let p = c; for (let r = c + 1; r < n; r++) if (Math.abs(M[r][c]) > Math.abs(M[p][c])) p = r;
    [M[c], M[p]] = [M[p], M[c]];
    const d = M[c][c]; for (let j = 0; j < 2 * n; j++) M[c][j] /= d;
    for (let r = 0; r < n; r++) if (r !== c) { const f = M[r][c]; for (let j = 0; j < 2 * n; j++) M[r][j] -= f * M[c][j]; }
  }
  return M.map((r) => r.slice(n));
}
function referenceFid(gen: Float32Array, ref: Float32Array, D: number): number {
  const a = statsOf(gen, D), b = statsOf(ref, D);
  let Y = mm(a.S, b.S), Z: number[][] = a.S.map((r, i) => r.map((_, j) => (i === j ? 1 : 0)));
  for (let it = 0; it < 60; it++) { const Yi = inv(Y), Zi = inv(Z); Y = Y.map((r, i) => r.map((v, j) => (v + Zi[i][j]) / 2)); Z = Z.map((r, i) => r.map((v, j) => (v + Yi[i][j]) / 2)); }
  let fid = 0;
  for (let j = 0; j < D; j++) fid += (a.mu[j] - b.mu[j]) ** 2 + a.S[j][j] + b.S[j][j] - 2 * Y[j][j];
  return fid;
}

test('eval --features-out: the printed FID equals pytorch-fid\'s formula recomputed from the saved features (1e-6)', () => {
  const dir = tmp();
  try {
    tinyClassifier(path.join(dir, 'clf.safetensors'));
    writePngs(path.join(dir, 'a'), 40, 1, 1.0);
    writePngs(path.join(dir, 'b'), 50, 2, 0.7);
    const r = run(['eval', '--images', 'a', '--ref', 'b', '--weights', 'clf.safetensors', '--features-out', 'f.safetensors', '--json', '--quiet'], dir);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout) as Record<string, number | string | null>;
    assert.deepEqual(Object.keys(j), ['fid', 'is_mean', 'is_std', 'precision', 'recall', 'n_gen', 'n_ref', 'extractor', 'gflops_per_image', 'seconds']);
    assert.equal(j.n_gen, 40);
    assert.equal(j.n_ref, 50);
    assert.equal(j.extractor, 'classifier');
    assert.equal(j.gflops_per_image, null);
    const { tensors, metadata } = readSafetensorsFile(path.join(dir, 'f.safetensors'));
    assert.deepEqual(tensors.get('gen_features')!.shape, [40, 6]);
    assert.deepEqual(tensors.get('gen_logits')!.shape, [40, 5]);
    assert.deepEqual(tensors.get('ref_features')!.shape, [50, 6]);
    assert.equal(metadata?.extractor, 'classifier');
    const want = referenceFid(tensors.get('gen_features')!.f32, tensors.get('ref_features')!.f32, 6);
    assert.ok(want > 0.01, `the sets differ (${want})`);
    assert.ok(Math.abs((j.fid as number) - want) <= 1e-6 * want, `eval ${j.fid} vs reference ${want}`);
  } finally { fs.rmSync(dir, { recursive: true, force: true }); }
});

test('features: rows in sorted file-name order, equal to the extractor on the same images; names in the metadata', () => {
  const dir = tmp();
  try {
    const clf = tinyClassifier(path.join(dir, 'clf.safetensors'));
    const names = writePngs(path.join(dir, 'imgs'), 7, 3, 1.0);
    const r = run(['features', '--images', 'imgs', '--weights', 'clf.safetensors', '--out', 'feat.safetensors', '--quiet'], dir);
    assert.equal(r.code, 0, r.stderr);
    const { tensors, metadata } = readSafetensorsFile(path.join(dir, 'feat.safetensors'));
    const sorted = [...names].sort();
    assert.deepEqual(JSON.parse(metadata!.files) as string[], sorted);
    assert.deepEqual(tensors.get('features')!.shape, [7, 6]);
    assert.deepEqual(tensors.get('logits')!.shape, [7, 5]);
    // the images in sorted-name order, through the extractor directly as one batch (as the command extracts them:
    // a GEMM's bits may depend on its row count, so the same batch is compared, not a batch of one)
    const ex = new ClassifierExtractor(clf, 'x');
    const rng = new Rng(3);
    const images: Float32Array[] = []; // regenerated exactly as writePngs did (same RNG sequence)
    for (let i = 0; i < names.length; i++) {
      const cx = rng.uniform() * 28, cy = rng.uniform() * 28, s = 3 + rng.uniform() * 6, d = new Float32Array(28 * 28);
      for (let y = 0; y < 28; y++) for (let x = 0; x < 28; x++) d[y * 28 + x] = Math.min(255, Math.round(255 * Math.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * s * s)) + 20 * rng.uniform())) / 255;
      images.push(d);
    }
    const batch = new Float32Array(names.length * 28 * 28);
    sorted.forEach((n, k) => batch.set(images[names.indexOf(n)], k * 28 * 28));
    const direct = ex.extract(new Tensor(batch, [names.length, 1, 28, 28]));
    assert.deepEqual([...tensors.get('features')!.f32], [...direct.features]);
    assert.deepEqual([...tensors.get('logits')!.f32], [...direct.logits]);
  } finally { fs.rmSync(dir, { recursive: true, force: true }); }
});

test('eval --shard i/3 ×3 then --merge gives exactly the numbers of the unsharded run', (t) => {
  if (!fs.existsSync(SHIPPED_VAR)) { t.skip('shipped models missing'); return; }
  const dir = tmp();
  try {
    writePngs(path.join(dir, 'ref'), 30, 4, 1.0);
    const common = ['--n', '14', '--batch', '4', '--seed', '3', '--ref', 'ref', '--quiet',
      '--var', SHIPPED_VAR, '--tokenizer', path.join(repoRoot, 'models/tokenizer-fashion-mnist.safetensors'), '--weights', path.join(repoRoot, 'models/classifier-fashion-mnist.safetensors')];
    const one = run(['eval', ...common, '--json'], dir);
    assert.equal(one.code, 0, one.stderr);
    for (let i = 0; i < 3; i++) {
      const r = run(['eval', ...common, '--shard', `${i}/3`, '--out', `s${i}.safetensors`], dir);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, '');
    }
    const merged = run(['eval', '--merge', 's2.safetensors', 's0.safetensors', 's1.safetensors', '--ref', 'ref', '--json', '--quiet',
      '--weights', path.join(repoRoot, 'models/classifier-fashion-mnist.safetensors')], dir);
    assert.equal(merged.code, 0, merged.stderr);
    const a = JSON.parse(one.stdout) as Record<string, unknown>, b = JSON.parse(merged.stdout) as Record<string, unknown>;
    delete a.seconds; delete b.seconds;
    assert.deepEqual(b, a);
    assert.equal(a.n_gen, 14);
    assert.ok((a.gflops_per_image as number) > 0);
    // a missing shard is an error
    const bad = run(['eval', '--merge', 's0.safetensors', 's1.safetensors', '--ref', 'ref', '--quiet', '--weights', path.join(repoRoot, 'models/classifier-fashion-mnist.safetensors')], dir);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^actvar: error: --merge: need each of the 3 shards 0\.\.2 exactly once/);
  } finally { fs.rmSync(dir, { recursive: true, force: true }); }
});

test('eval --actvar: ActVAR samples through the same pipeline, with fewer transformer FLOPs per image', (t) => {
  if (!fs.existsSync(SHIPPED_VAR)) { t.skip('shipped models missing'); return; }
  const dir = tmp();
  try {
    writePngs(path.join(dir, 'ref'), 20, 5, 1.0);
    const common = ['--n', '6', '--batch', '3', '--ref', 'ref', '--json', '--quiet', '--var', SHIPPED_VAR,
      '--tokenizer', path.join(repoRoot, 'models/tokenizer-fashion-mnist.safetensors'), '--weights', path.join(repoRoot, 'models/classifier-fashion-mnist.safetensors')];
    const dense = run(['eval', ...common], dir), act = run(['eval', ...common, '--actvar', '--token-rates', '0.5,0.25', '--expert-rate', '0.5', '--actvar-calib', '1'], dir);
    assert.equal(dense.code, 0, dense.stderr);
    assert.equal(act.code, 0, act.stderr);
    const d = JSON.parse(dense.stdout) as { gflops_per_image: number; fid: number }, a = JSON.parse(act.stdout) as { gflops_per_image: number; fid: number };
    assert.ok(a.gflops_per_image < 0.7 * d.gflops_per_image, `ActVAR ${a.gflops_per_image} vs dense ${d.gflops_per_image} GFLOPs`);
    assert.notEqual(a.fid, d.fid);
  } finally { fs.rmSync(dir, { recursive: true, force: true }); }
});

test('eval / features: bad input exits 2 with one line and writes nothing', () => {
  const dir = tmp();
  try {
    const cases: [string[], RegExp][] = [
      [['eval', '--shard', '0/2', '--quiet'], /--shard i\/n needs --out FILE/],
      [['eval', '--shard', '3/2'], /expected i\/n with 0 <= i < n/],
      [['eval', '--images', 'fashion-mnist:test', '--weights', 'nope.safetensors'], /--weights nope\.safetensors: cannot read the file/],
      [['eval', '--extractor', 'inception', '--weights', 'x.pth'], /--weights x\.pth: cannot read the file/],
      [['features', '--images', '.', '--out', 'f.safetensors'], /--images \.: no \.png files/],
    ];
    for (const [args, re] of cases) {
      const r = run(args, dir);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, re);
      // one error line (commander's parse errors add its '(run with --help for usage)' hint)
      assert.equal(r.stderr.trim().split('\n').filter((l) => l.startsWith('actvar:')).length, 1, r.stderr);
    }
    assert.deepEqual(fs.readdirSync(dir), []);
  } finally { fs.rmSync(dir, { recursive: true, force: true }); }
});
