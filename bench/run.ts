/**
 * `npm run bench`: runs every registered benchmark in turn.
 * To add one: write bench/<name>.ts exporting a function (sync or async) that prints its
 * results, import it here and append `{ name, run }` to `benches`.
 * `node dist/bench/run.js gemm other` runs only the named ones.
 */
import { gemmBench } from './gemm.js';

const benches: { name: string; run: () => void | Promise<void> }[] = [
  { name: 'gemm', run: gemmBench },
  { name: 'block-train', run: async () => { (await import('./block-train.js')).benchBlockTrain(); } },
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
