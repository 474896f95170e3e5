// Experiment (issue 13): FID Inception throughput (img/s) and where the time goes (per conv / pool, summed over
// the passes), on random [B, 3, 32, 32] images (resized to 299 like every input). Weights: any file
// loadInceptionExtractor reads; the default is the fid-inception fixture (random weights, same shapes as the real ones).
// Run (after npx tsc -p .): node bench/experiments/inception-speed.mjs [batch=16] [passes=2] [weights]
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Tensor, Rng } from '../../dist/src/tensor/index.js';
import { loadInceptionExtractor } from '../../dist/src/eval/inception.js';
import { useNodeBackend } from '../../dist/src/backend/node.js';

useNodeBackend(); // OpenBLAS and the native kernels, as the CLI and the `actvar` entry choose them

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const batch = Number(process.argv[2] ?? 16), passes = Number(process.argv[3] ?? 2);
const weights = process.argv[4] ?? path.join(root, '../shared/fixtures/fid-inception/inception_fid_random_f16.safetensors');
const ext = loadInceptionExtractor(weights);
const rng = new Rng(1);
const images = new Tensor(Float32Array.from({ length: batch * 3 * 32 * 32 }, () => rng.uniform()), [batch, 3, 32, 32]);
ext.net.forward(new Tensor(images.data.slice(0, 3 * 32 * 32), [1, 3, 32, 32])); // warm-up (workspaces, BLAS threads)
const prof = new Map();
const t0 = performance.now();
for (let p = 0; p < passes; p++) ext.net.forward(images, prof);
const ms = performance.now() - t0;
const total = [...prof.values()].reduce((a, b) => a + b, 0);
console.log(`batch ${batch}, ${passes} passes: ${(batch * passes / (ms / 1000)).toFixed(2)} img/s (${(ms / passes / batch).toFixed(1)} ms/img; profiled parts ${(100 * total / ms).toFixed(1)}% of the time)`);
const groups = new Map();
for (const [k, v] of prof) { const g = k.split('.')[0]; groups.set(g, (groups.get(g) ?? 0) + v); }
console.log('per block (ms/img):', [...groups].map(([k, v]) => `${k} ${(v / passes / batch).toFixed(1)}`).join(', '));
console.log('slowest layers (ms/img):');
for (const [k, v] of [...prof].sort((a, b) => b[1] - a[1]).slice(0, 15)) console.log(`  ${k.padEnd(28)} ${(v / passes / batch).toFixed(2)}`);
