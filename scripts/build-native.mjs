#!/usr/bin/env node
/**
 * Builds the optional native library (native/*.c: the elementwise kernels, actvar's thread pool with the
 * split and few-row GEMMs, the grouped expert FFN, the KV-cache attention, the inference row kernels, the bf16-weight GEMM) into build/native/, with the
 * system C compiler ($CC, else cc, gcc or clang). Runs as the package's `install` script (so also when
 * actvar is installed as a dependency) and after `tsc` in `npm run build` and `npm test` (a no-op
 * when the library is newer than its sources). Without a compiler it prints one line and exits 0: actvar
 * then runs those kernels in TypeScript (slower, same results). Flags: -O3 (the kernels carry GCC target_clones for AVX-512,
 * AVX2 and baseline x86-64, so the library also runs on a machine other than the one it was built on),
 * -ffp-contract=off (no fused multiply-adds, so AdamW matches the
 * TypeScript bit for bit; small_gemm.c turns them back on for its dot products), -fno-math-errno, -fno-trapping-math and
 * -fopenmp-simd (vector loops; no OpenMP runtime, and no change to any result), -pthread (the pool) and, on Linux,
 * -ldl (the pool finds cblas_sgemm in the BLAS library the host loaded).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, renameSync, rmSync, statSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const sources = ['kernels.c', 'threads.c', 'grouped_ffn.c', 'attention.c', 'small_gemm.c', 'rows.c', 'bf16_gemm.c', 'conv3x3.c'].map((f) => path.join(root, 'native', f));
const ext = process.platform === 'darwin' ? 'dylib' : process.platform === 'win32' ? 'dll' : 'so';
const outDir = path.join(root, 'build', 'native');
const out = path.join(outDir, `libactvar_kernels.${ext}`);

if (process.env.ACTVAR_NATIVE === '0') {
  console.log('build-native: ACTVAR_NATIVE=0, not building the native kernels');
  process.exit(0);
}
if (existsSync(out) && [...sources, ...['kernel.h', 'threads.h'].map((f) => path.join(root, 'native', f)), fileURLToPath(import.meta.url)].every((f) => statSync(out).mtimeMs >= statSync(f).mtimeMs)) {
  process.exit(0); // up to date
}
const compilers = process.env.CC ? [process.env.CC] : ['cc', 'gcc', 'clang'];
const flags = ['-O3', '-ffp-contract=off', '-fno-math-errno', '-fno-trapping-math', '-fopenmp-simd', '-fPIC', '-shared', '-pthread', '-std=c11', '-Wall', '-Wextra'];
mkdirSync(outDir, { recursive: true });
const tmp = `${out}.${process.pid}.tmp`;
let lastErr = '';
for (const cc of compilers) {
  const libs = process.platform === 'linux' ? ['-lm', '-ldl'] : ['-lm'];
  const r = spawnSync(cc, [...flags, '-o', tmp, ...sources, ...libs], { encoding: 'utf8' });
  if (r.error) { lastErr ||= `${cc}: ${r.error.message}`; continue; } // keep a real compiler's error over a missing one's
  if (r.status === 0) {
    if (r.stderr.trim()) process.stderr.write(r.stderr);
    renameSync(tmp, out); // atomic: a half-written library is never loaded
    console.log(`build-native: built ${path.relative(root, out)} with ${cc}`);
    process.exit(0);
  }
  lastErr = `${cc} exited with ${r.status}: ${r.stderr.trim().split('\n').slice(0, 5).join(' | ')}`;
}
rmSync(tmp, { force: true });
rmSync(out, { force: true }); // never leave a library built from older sources behind
console.log(`build-native: native kernels not built (${lastErr}); elementwise ops run in TypeScript. Install a C compiler (apt-get install gcc) for the fast path.`);
