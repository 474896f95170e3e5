// Experiment (docs/BENCHMARKS.md): memory read bandwidth on 1 and 2 threads (mem-bandwidth.c, compiled here
// with the system C compiler and OpenMP into a temporary folder). Run: node bench/experiments/mem-bandwidth.mjs
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const src = path.join(path.dirname(fileURLToPath(import.meta.url)), 'mem-bandwidth.c');
const exe = path.join(mkdtempSync(path.join(os.tmpdir(), 'actvar-bw-')), 'bw');
const cc = spawnSync(process.env.CC ?? 'cc', ['-O3', '-march=native', '-ffast-math', '-fopenmp', '-o', exe, src], { encoding: 'utf8' });
if (cc.status !== 0) throw new Error(`compiling ${src} failed: ${cc.stderr || cc.error}`);
const run = spawnSync(exe, { encoding: 'utf8' });
process.stdout.write(run.stdout);
if (run.status !== 0) throw new Error(`${exe} exited with ${run.status}: ${run.stderr}`);
