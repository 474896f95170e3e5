/**
 * Kernel backends: the TypeScript sgemm against a float64 reference and against OpenBLAS
 * (all transposes, alpha/beta, offsets, padded leading dimensions, ragged sizes), argument
 * checks, backend selection by environment, and the CLI skeleton (`actvar bench gemm`).
 */
import './util/setup.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import type { Backend } from '../src/backend/backend.js';
import {
  TsBackend, loadOpenBlas, loadNativeKernels, setBackend, checkSgemmArgs, parseSettings, DEFAULT_SETTINGS, Workspace, NodeWorkerPool,
  type OpenBlasBackend,
} from '../src/backend/node.js';
import { Rng } from '../src/tensor/rng.js';

// dist/test/backend.test.js → repo root
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const cliPath = path.join(repoRoot, 'dist/src/cli/main.js');

const ts = new TsBackend();
let blas: OpenBlasBackend | null = null, noBlas: string | false;
try {
  const found = loadOpenBlas();
  blas = found.backend;
  noBlas = blas ? false : `SKIPPED: no BLAS library found (tried ${found.tried.map((t) => t.library).join(', ')}); install libopenblas0 or set ACTVAR_BLAS_LIB`;
} catch (e) {
  noBlas = `SKIPPED: ${(e as Error).message.split('. ')[0]}`;
}

interface Case {
  transA: boolean; transB: boolean; M: number; N: number; K: number;
  alpha: number; beta: number; aOff: number; bOff: number; cOff: number; padA: number; padB: number; padC: number;
}

/** Buffers for one case: stored A is (transA ? K×M : M×K) with lda = cols + padA, etc. */
function makeBuffers(rng: Rng, c: Case) {
  const aRows = c.transA ? c.K : c.M, aCols = c.transA ? c.M : c.K;
  const bRows = c.transB ? c.N : c.K, bCols = c.transB ? c.K : c.N;
  const lda = aCols + c.padA, ldb = bCols + c.padB, ldc = c.N + c.padC;
  const fill = (n: number): Float32Array => { const a = new Float32Array(n); for (let i = 0; i < n; i++) a[i] = rng.normal(); return a; };
  // extra trailing elements catch writes past the matrix
  const A = fill(c.aOff + aRows * lda + 3), B = fill(c.bOff + bRows * ldb + 3), C = fill(c.cOff + c.M * ldc + 3);
  return { A, B, C, lda, ldb, ldc };
}

/** float64 reference; returns also the error scale |alpha|·Σ|a·b| + |beta·c| per element. */
function reference(c: Case, A: Float32Array, lda: number, B: Float32Array, ldb: number, C: Float32Array, ldc: number) {
  const out = Float64Array.from(C), scale = new Float64Array(C.length);
  for (let i = 0; i < c.M; i++) {
    for (let j = 0; j < c.N; j++) {
      let s = 0, sa = 0;
      for (let k = 0; k < c.K; k++) {
        const a = c.transA ? A[c.aOff + k * lda + i] : A[c.aOff + i * lda + k];
        const b = c.transB ? B[c.bOff + j * ldb + k] : B[c.bOff + k * ldb + j];
        s += a * b; sa += Math.abs(a * b);
      }
      const at = c.cOff + i * ldc + j;
      out[at] = c.alpha * s + (c.beta === 0 ? 0 : c.beta * C[at]);
      scale[at] = Math.abs(c.alpha) * sa + Math.abs(c.beta * C[at]);
    }
  }
  return { out, scale };
}

function runCase(be: Backend, c: Case, A: Float32Array, lda: number, B: Float32Array, ldb: number, C0: Float32Array, ldc: number): Float32Array {
  const C = C0.slice();
  be.sgemm(c.transA, c.transB, c.M, c.N, c.K, c.alpha, A, c.aOff, lda, B, c.bOff, ldb, c.beta, C, c.cOff, ldc);
  return C;
}

/** Max over elements of |x − ref| / (scale + 1e-30); untouched elements (outside C's matrix) must be bit-identical. */
function maxRelErr(got: Float32Array, ref: Float64Array, scale: Float64Array, c: Case, ldc: number, C0: Float32Array): number {
  let worst = 0;
  for (let at = 0; at < got.length; at++) {
    const r = at - c.cOff, i = Math.floor(r / ldc), j = r - i * ldc;
    const inside = r >= 0 && i < c.M && j < c.N;
    if (!inside) {
      assert.ok(Object.is(got[at], C0[at]), `element ${at} outside C (${describe(c)}) was modified`);
      continue;
    }
    worst = Math.max(worst, Math.abs(got[at] - ref[at]) / (scale[at] + 1e-30));
  }
  return worst;
}

function describe(c: Case): string {
  return `${c.transA ? 'T' : 'N'}${c.transB ? 'T' : 'N'} M=${c.M} N=${c.N} K=${c.K} alpha=${c.alpha} beta=${c.beta} off=${c.aOff},${c.bOff},${c.cOff} pad=${c.padA},${c.padB},${c.padC}`;
}

/** Sizes around the TS kernel's tiles (MR=6, NR=4) and blocks (MC=96, KC=256). */
function cases(): Case[] {
  const rng = new Rng(11);
  const sizes: [number, number, number][] = [
    [1, 1, 1], [1, 7, 33], [7, 1, 65], [7, 33, 1], [33, 65, 7], [65, 33, 17], [6, 4, 5], [12, 8, 300], [97, 9, 257], [13, 2051, 3],
  ];
  const scalars: [number, number][] = [[1, 0], [0.75, -1.25], [-2, 1], [1.5, 0.5]];
  const out: Case[] = [];
  let s = 0;
  for (const [M, N, K] of sizes) {
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        const [alpha, beta] = scalars[s++ % scalars.length];
        const pad = (): number => (rng.uniform() < 0.5 ? 0 : 1 + rng.int(5));
        out.push({ transA, transB, M, N, K, alpha, beta, aOff: rng.int(9), bOff: rng.int(9), cOff: rng.int(9), padA: pad(), padB: pad(), padC: pad() });
      }
    }
  }
  return out;
}

test('TS sgemm matches a float64 reference (all transposes, alpha/beta, offsets, padded ld, ragged sizes)', () => {
  const rng = new Rng(3);
  for (const c of cases()) {
    const { A, B, C, lda, ldb, ldc } = makeBuffers(rng, c);
    const { out, scale } = reference(c, A, lda, B, ldb, C, ldc);
    const err = maxRelErr(runCase(ts, c, A, lda, B, ldb, C, ldc), out, scale, c, ldc, C);
    assert.ok(err < 1e-5, `TS sgemm ${describe(c)}: relative error ${err}`);
  }
});

test('OpenBLAS and TS sgemm agree within 1e-5 relative', { skip: noBlas }, () => {
  const rng = new Rng(4);
  for (const c of cases()) {
    const { A, B, C, lda, ldb, ldc } = makeBuffers(rng, c);
    const { out, scale } = reference(c, A, lda, B, ldb, C, ldc);
    const viaBlas = runCase(blas!, c, A, lda, B, ldb, C, ldc), viaTs = runCase(ts, c, A, lda, B, ldb, C, ldc);
    assert.ok(maxRelErr(viaBlas, out, scale, c, ldc, C) < 1e-5, `OpenBLAS vs reference: ${describe(c)}`);
    let worst = 0;
    for (let i = 0; i < viaTs.length; i++) worst = Math.max(worst, Math.abs(viaTs[i] - viaBlas[i]) / (scale[i] + 1e-30));
    assert.ok(worst < 1e-5, `TS vs OpenBLAS ${describe(c)}: relative difference ${worst}`);
  }
});

for (const [label, be] of [['ts', ts], ['openblas', blas]] as const) {
  test(`${label}: degenerate sizes and BLAS beta semantics`, { skip: be ? false : noBlas }, () => {
    const b = be!;
    // beta = 0 overwrites C, NaN included; alpha = 0 only scales
    const A = Float32Array.of(1, 2, 3, 4), B = Float32Array.of(1, 0, 0, 1);
    const C = Float32Array.of(NaN, NaN, Infinity, 7);
    b.sgemm(false, false, 2, 2, 2, 1, A, 0, 2, B, 0, 2, 0, C, 0, 2);
    assert.deepEqual([...C], [1, 2, 3, 4]);
    b.sgemm(false, false, 2, 2, 2, 0, A, 0, 2, B, 0, 2, 2, C, 0, 2);
    assert.deepEqual([...C], [2, 4, 6, 8]);
    // K = 0: C = beta·C
    b.sgemm(false, false, 2, 2, 0, 1, new Float32Array(0), 0, 0, new Float32Array(0), 0, 2, 0.5, C, 0, 2);
    assert.deepEqual([...C], [1, 2, 3, 4]);
    // M = 0 / N = 0: nothing happens
    b.sgemm(false, false, 0, 2, 2, 1, A, 0, 2, B, 0, 2, 0, C, 0, 2);
    b.sgemm(true, true, 2, 0, 2, 1, A, 0, 2, B, 0, 2, 0, C, 0, 2);
    assert.deepEqual([...C], [1, 2, 3, 4]);
  });

  test(`${label}: out-of-bounds arguments throw instead of reading past buffers`, { skip: be ? false : noBlas }, () => {
    const b = be!;
    const A = new Float32Array(6), B = new Float32Array(6), C = new Float32Array(4);
    assert.throws(() => b.sgemm(false, false, 2, 2, 3, 1, A, 1, 3, B, 0, 2, 0, C, 0, 2), /A needs 7 elements .* buffer has 6/);
    assert.throws(() => b.sgemm(false, true, 2, 2, 3, 1, A, 0, 3, B, 0, 2, 0, C, 0, 2), /ldb=2 is smaller than the 3 columns of stored B/);
    assert.throws(() => b.sgemm(false, false, 2, 2, 3, 1, A, 0, 3, B, 0, 2, 0, C, 1, 2), /C needs 5 elements/);
    assert.throws(() => b.sgemm(false, false, 2, 2, -1, 1, A, 0, 3, B, 0, 2, 0, C, 0, 2), /K must be a non-negative integer/);
  });
}

test('checkSgemmArgs accepts exactly-sized transposed operands', () => {
  // op(A) = Aᵀ is 2×3, stored 3×2 (lda 2); op(B) = Bᵀ is 3×4, stored 4×3 (ldb 3)
  checkSgemmArgs(true, true, 2, 4, 3, new Float32Array(6), 0, 2, new Float32Array(12), 0, 3, new Float32Array(8), 0, 4);
  assert.throws(() => checkSgemmArgs(true, true, 2, 4, 3, new Float32Array(6), 0, 2, new Float32Array(11), 0, 3, new Float32Array(8), 0, 4), /B needs 12/);
});

test('OpenBLAS: thread count can be set', { skip: noBlas }, () => {
  const b = blas!, before = b.threads;
  try {
    b.setThreads(1);
    assert.equal(b.threads, 1);
    assert.throws(() => b.setThreads(0), /positive integer/);
  } finally {
    b.setThreads(before);
  }
});

test('setBackend swaps the kernels used by the tensor core', async () => {
  const T = await import('../src/tensor/index.js');
  let calls = 0;
  const counting: Backend = {
    name: 'counting', threads: 1, setThreads() {},
    sgemm(...args: Parameters<Backend['sgemm']>) { calls++; ts.sgemm(...args); },
  };
  try {
    setBackend(counting);
    const y = T.matmul(T.tensor([1, 2, 3, 4], [2, 2]), T.tensor([1, 0, 0, 1], [2, 2]));
    assert.deepEqual([...y.f32], [1, 2, 3, 4]);
    assert.equal(calls, 1);
  } finally {
    setBackend(null); // the next backend() chooses from the environment again
  }
});

// ---------------------------------------------------------------------------------------------
// child processes: the core tests under each backend, env selection, CLI

function run(args: string[], env: Record<string, string | undefined> = {}) {
  // NODE_TEST_CONTEXT (set by `node --test`) would make a nested runner report to its parent instead of stdout
  const childEnv: Record<string, string | undefined> = { ...process.env, NODE_TEST_CONTEXT: undefined, ...env };
  for (const k of Object.keys(childEnv)) if (childEnv[k] === undefined) delete childEnv[k];
  const r = spawnSync(process.execPath, args, { cwd: repoRoot, encoding: 'utf8', env: childEnv as NodeJS.ProcessEnv, timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

for (const [name, env] of [['ts', {}], ['openblas', {}], ['openblas', { ACTVAR_NATIVE: '0' }]] as const) {
  const label = `ACTVAR_BACKEND=${name}${'ACTVAR_NATIVE' in env ? ' ACTVAR_NATIVE=0' : ''}`;
  test(`core tests pass with ${label}`, { skip: name === 'openblas' ? noBlas : false }, () => {
    const r = run(['--expose-gc', '--test', 'dist/test/core.test.js'], { ACTVAR_BACKEND: name, ...env });
    assert.equal(r.code, 0, `core tests failed under ${label}:\n${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /# fail 0/);
  });
}

test('ACTVAR_BACKEND=ts: bench gemm announces the fallback and prints the JSON fields', () => {
  const r = run([cliPath, 'bench', 'gemm', '--json', '--shape', '64,64,64', '--repeats', '1'], { ACTVAR_BACKEND: 'ts' });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /^actvar: kernels on typescript fallback \(ACTVAR_BACKEND=ts\)$/m);
  const j = JSON.parse(r.stdout.trim()) as Record<string, unknown>;
  assert.deepEqual(j.shape, [64, 64, 64]);
  assert.equal(j.threads, 1);
  for (const k of ['tensor_gflops', 'blas_gflops'] as const) assert.ok(typeof j[k] === 'number' && (j[k] as number) > 0, `${k} = ${j[k]}`);
});

test('ACTVAR_BACKEND=openblas with --threads: announced and reported', { skip: noBlas }, () => {
  const r = run([cliPath, 'bench', 'gemm', '--json', '--shape', '32,48,16', '--repeats', '2', '--threads', '1'], { ACTVAR_BACKEND: 'openblas', ACTVAR_THREADS: '2' });
  assert.equal(r.code, 0, r.stderr);
  // --threads overrides ACTVAR_THREADS, before the announcement; the native elementwise kernels are named
  const native = loadNativeKernels().kernels ? ' \\+ native elementwise' : '';
  const why = native ? '' : ' \\(elementwise in TypeScript: .+\\)';
  // the GEMMs are split by actvar's pool when the kernels are there (unless ACTVAR_SPLIT_GEMM=0)
  const pool = native && process.env.ACTVAR_SPLIT_GEMM !== '0' ? " on actvar's thread pool" : '';
  assert.match(r.stderr, new RegExp(`^actvar: kernels on openblas \\(.+\\)${native}, 1 thread${pool}${why}$`, 'm'));
  // ACTVAR_SPLIT_GEMM=0 leaves the threads to OpenBLAS
  const own = run([cliPath, 'bench', 'gemm', '--json', '--shape', '8,8,8', '--repeats', '1', '--threads', '2'], { ACTVAR_BACKEND: 'openblas', ACTVAR_SPLIT_GEMM: '0' });
  assert.equal(own.code, 0, own.stderr);
  assert.match(own.stderr, new RegExp(`^actvar: kernels on openblas \\(.+\\)${native}, 2 threads${why}$`, 'm'));
  const j = JSON.parse(r.stdout.trim()) as { shape: number[]; threads: number };
  assert.deepEqual(j.shape, [32, 48, 16]);
  assert.equal(j.threads, 1);
  // ACTVAR_NATIVE=0 turns them off, and the line says so
  const off = run([cliPath, 'bench', 'gemm', '--json', '--shape', '8,8,8', '--repeats', '1'], { ACTVAR_BACKEND: 'openblas', ACTVAR_NATIVE: '0' });
  assert.equal(off.code, 0, off.stderr);
  assert.match(off.stderr, /^actvar: kernels on openblas \(.+\), \d+ threads? \(elementwise in TypeScript: ACTVAR_NATIVE=0\)$/m);
});

test('parseSettings: one object from the ACTVAR_* variables; bad values name the allowed ones', () => {
  assert.deepEqual(parseSettings({}), { ...DEFAULT_SETTINGS });
  assert.deepEqual(parseSettings({
    ACTVAR_BACKEND: ' TypeScript ', ACTVAR_THREADS: '3', ACTVAR_NATIVE: '0', ACTVAR_SPLIT_GEMM: '0',
    ACTVAR_BLAS_LIB: '/x/libopenblas.so', ACTVAR_ATTN_THREADS: '1', ACTVAR_BF16: '0',
  }), { backend: 'ts', threads: 3, native: false, splitGemm: false, blasLib: '/x/libopenblas.so', attentionThreads: 1, bf16: false });
  assert.equal(parseSettings({ ACTVAR_BACKEND: 'blas', ACTVAR_NATIVE: '' }).backend, 'openblas');
  assert.equal(parseSettings({ ACTVAR_NATIVE: '' }).native, true, 'empty = unset');
  for (const [env, pattern] of [
    [{ ACTVAR_NATIVE: 'abc' }, /ACTVAR_NATIVE='abc' is not allowed; use 1 \(on\) or 0 \(off\)/],
    [{ ACTVAR_SPLIT_GEMM: 'no' }, /ACTVAR_SPLIT_GEMM='no' is not allowed; use 1 \(on\) or 0 \(off\)/],
    [{ ACTVAR_THREADS: '0' }, /ACTVAR_THREADS must be a positive integer, got '0'/],
    [{ ACTVAR_ATTN_THREADS: '-1' }, /ACTVAR_ATTN_THREADS must be a non-negative integer, got '-1'/],
    [{ ACTVAR_BACKEND: 'cuda' }, /ACTVAR_BACKEND='cuda' is not a backend; use 'openblas', 'ts' or 'auto'/],
  ] as const) {
    assert.throws(() => parseSettings(env), (e: Error & { userError?: boolean }) => pattern.test(e.message) && e.userError === true, JSON.stringify(env));
  }
});

test('the core without the Node edge: TypeScript backend, default settings, no koffi loaded', () => {
  const script = [
    "import { createRequire } from 'node:module';",
    "const core = await import('./dist/src/backend/index.js');",
    "await import('./dist/src/tensor/index.js'); await import('./dist/src/var/basic-var.js'); await import('./dist/src/actvar/experts.js');",
    "const loaded = Object.keys(createRequire(import.meta.url).cache).filter((k) => k.includes('koffi'));",
    "console.log(JSON.stringify({ name: core.backend().name, attn: core.settings().attentionThreads, koffi: loaded.length }));",
  ].join('\n');
  const r = run(['--input-type=module', '-e', script], { ACTVAR_ATTN_THREADS: '3', ACTVAR_BACKEND: 'openblas' });
  assert.equal(r.code, 0, r.stderr);
  // nothing read the environment: no provider is installed, so the TypeScript backend and the defaults
  assert.deepEqual(JSON.parse(r.stdout.trim()), { name: 'typescript fallback', attn: 0, koffi: 0 });
});

test('Workspace: named buffers grow, stay, turn shared on request, and are released by prefix', () => {
  const ws = new Workspace();
  const a = ws.float32('x.a', 10);
  assert.equal(ws.float32('x.a', 4), a, 'a smaller request reuses the buffer');
  const b = ws.float32('x.a', 20);
  assert.ok(b.length >= 20 && b !== a);
  const s = ws.float32('x.a', 8, true);
  assert.ok(s.buffer instanceof SharedArrayBuffer, 'shared on request');
  assert.equal(ws.float32('x.a', 8), s, 'a shared buffer serves plain requests too');
  const d = ws.float64('y.d', 3);
  assert.ok(d instanceof Float64Array && d.length === 3);
  ws.release('x.');
  assert.equal(ws.peek('x.a'), undefined);
  assert.equal(ws.float64('y.d', 2), d, 'other prefixes stay');
});

test('NodeWorkerPool: kernels with helpers run on the helper threads and write shared memory', () => {
  const pool = new NodeWorkerPool();
  try {
    pool.resize(2);
    assert.equal(pool.size, 2);
    function twice(x: number): number { return 2 * x; }
    function fillTwice(out: Float32Array, lo: number, hi: number): void { for (let i = lo; i < hi; i++) out[i] = twice(i); }
    const out = new Float32Array(new SharedArrayBuffer(4 * 6));
    pool.start(fillTwice, [[out, 0, 3], [out, 3, 6]], [twice])();
    assert.deepEqual([...out], [0, 2, 4, 6, 8, 10]);
    function fails(): void { throw new Error('no'); }
    assert.throws(() => pool.start(fails, [[]])(), /fails: a worker thread failed/);
    assert.throws(() => pool.start(fillTwice, [[], [], []]), RangeError);
  } finally {
    pool.resize(0);
  }
});

test('bad configuration exits 2 with one clear line', () => {
  const cases: [Record<string, string>, string[], RegExp][] = [
    [{ ACTVAR_BACKEND: 'cuda' }, [], /^actvar: error: ACTVAR_BACKEND='cuda' is not a backend; use 'openblas', 'ts' or 'auto'/m],
    [{ ACTVAR_BACKEND: 'openblas', ACTVAR_BLAS_LIB: '/nonexistent/libopenblas.so' }, [], /^actvar: error: ACTVAR_BLAS_LIB=\/nonexistent\/libopenblas.so could not be used/m],
    [{ ACTVAR_BACKEND: 'ts', ACTVAR_THREADS: 'many' }, [], /^actvar: error: ACTVAR_THREADS must be a positive integer, got 'many'/m],
    [{ ACTVAR_NATIVE: 'abc' }, [], /^actvar: error: ACTVAR_NATIVE='abc' is not allowed; use 1 \(on\) or 0 \(off\)/m],
    [{ ACTVAR_BACKEND: 'ts' }, ['--shape', '1,2'], /^actvar: error: option '--shape <M,N,K>' argument '1,2' is invalid/m],
    [{ ACTVAR_BACKEND: 'ts' }, ['--repeats', '0'], /^actvar: error: option '--repeats <r>' argument '0' is invalid/m],
    [{ ACTVAR_BACKEND: 'ts' }, ['--frobnicate'], /^actvar: error: unknown option '--frobnicate'/m],
  ];
  for (const [env, extra, pattern] of cases) {
    const r = run([cliPath, 'bench', 'gemm', '--json', '--shape', '8,8,8', '--repeats', '1', ...extra], env);
    assert.equal(r.code, 2, `${JSON.stringify(env)} ${extra.join(' ')}: exit ${r.code}\n${r.stderr}`);
    assert.match(r.stderr, pattern);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'user errors print no stack');
    assert.equal(r.stdout, '');
  }
});

test('actvar --version and --help', () => {
  const pkg = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string };
  const v = run([cliPath, '--version']);
  assert.equal(v.code, 0);
  assert.equal(v.stdout.trim(), pkg.version);
  const h = run([cliPath, '--help']);
  assert.equal(h.code, 0);
  assert.match(h.stdout, /Usage: actvar/);
  assert.match(h.stdout, /bench/);
  const hb = run([cliPath, 'bench', 'gemm', '--help']);
  assert.equal(hb.code, 0);
  assert.match(hb.stdout, /--shape <M,N,K>/);
  assert.match(readFileSync(cliPath, 'utf8'), /^#!\/usr\/bin\/env node\n/);
});

test('unexpected errors exit 1 with a stack; user errors exit 2', async () => {
  const { reportError, UserError } = await import('../src/cli/errors.js');
  let out = '';
  const write = (s: string): void => { out += s; };
  assert.equal(reportError(new UserError('no such file x.png; pass an existing image'), write), 2);
  assert.equal(out, 'actvar: error: no such file x.png; pass an existing image\n');
  out = '';
  assert.equal(reportError(Object.assign(new Error('bad env'), { userError: true }), write), 2);
  assert.equal(out, 'actvar: error: bad env\n');
  out = '';
  assert.equal(reportError(new TypeError('boom'), write), 1);
  assert.match(out, /^actvar: internal error \(please report it\): TypeError: boom\n\s+at /);
});
