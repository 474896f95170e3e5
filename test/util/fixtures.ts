/**
 * Where tests find the repository and the shared parity fixtures from the official PyTorch code
 * (read in place from ../shared/fixtures next to the repository root, never copied into the repo).
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** dist/test/util/ → the repository root. */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const fixturesDir = path.resolve(repoRoot, '../shared/fixtures');

/** Path of a file of the var-tiny fixture set. */
export function fixture(name: string): string {
  return path.join(fixturesDir, 'var-tiny', name);
}
