/** The README's library example (its first ```ts block), as plain JavaScript (types stripped by esbuild). */
import fs from 'node:fs';
import path from 'node:path';
import * as esbuild from 'esbuild';
import { repoRoot } from './fixtures.js';

export function readmeExampleJs(): string {
  const readme = fs.readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
  const m = /## Library\n+```ts\n([\s\S]*?)\n```/.exec(readme);
  if (!m) throw new Error('README.md has no ```ts block under "## Library"');
  return esbuild.transformSync(m[1], { loader: 'ts', format: 'esm' }).code;
}
