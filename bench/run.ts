/**
 * `npm run bench`: runs every registered benchmark in turn.
 * To add one: write bench/<name>.ts exporting a function (sync or async) that prints its
 * results, import it here and append `{ name, run }` to `benches`.
 * `node dist/bench/run.js gemm other` runs only the named ones.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { gemmBench } from './gemm.js';

/** Run a bench script or CLI command in its own process, so that its peak RSS is its own. */
function child(script: string, ...args: string[]): () => void {
  return () => {
    const r = spawnSync(process.execPath, [fileURLToPath(new URL(script, import.meta.url)), ...args], { stdio: 'inherit' });
    if (r.status !== 0) throw new Error(`bench ${script} exited with ${r.status}`);
  };
}

const benches: { name: string; run: () => void | Promise<void> }[] = [
  { name: 'gemm', run: gemmBench },
  { name: 'gemm-threads', run: child('./gemm-threads.js') },
  { name: 'block-train', run: async () => { (await import('./block-train.js')).benchBlockTrain(); } },
  { name: 'var-generate', run: child('./var-generate.js', 'd16') },
  { name: 'var-generate-bf16', run: child('./var-generate.js', 'd16', '--weights-dtype', 'bf16') },
  { name: 'vqvae-decode', run: child('./vqvae-decode.js', '3') },
  { name: 'actvar', run: child('../src/cli/main.js', 'bench', 'actvar', '--preset', 'd16', '--json') },
  { name: 'sampling', run: () => { for (const [m, b] of [['d16', '1'], ['d16', '4'], ['d16', '16'], ['fashion', '64'], ['fashion', '256']]) child('./sampling.js', '--model', m, '--batch', b)(); } },
  { name: 'actvar-50-25-50', run: child('../src/cli/main.js', 'bench', 'actvar', '--preset', 'd16', '--token-rates', '0.5,0.25', '--expert-rate', '0.5', '--json') },
];

const only = process.argv.slice(2);
const unknown = only.filter((n) => !benches.some((b) => b.name === n));
if (unknown.length) {
  console.error(`bench: unknown benchmark(s) ${unknown.join(', ')}; known: ${benches.map((b) => b.name).join(', ')}`);
  process.exit(2);
}
for (const b of benches) {
  if (only.length && !only.includes(b.name)) continue;
  console.log(`\n== ${b.name} ==`);
  await b.run();
}
