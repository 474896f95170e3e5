/**
 * Where tests find the repository and the shared parity fixtures from the official PyTorch code
 * (read in place from ../shared/fixtures next to the repository root, never copied into the repo).
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** dist/test/util/ → the repository root. */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const fixturesDir = path.resolve(repoRoot, '../shared/fixtures');
/** The var-tiny fixture set (safetensors weights, forward / generate / sampling references). */
export const tinyDir = path.join(fixturesDir, 'var-tiny');
/** The var-tiny-pth fixture set (the same weights and torch checkpoints as .pth files). */
export const pthDir = path.join(fixturesDir, 'var-tiny-pth');

/** Path of a file of the var-tiny fixture set. */
export function fixture(name: string): string {
  return path.join(tinyDir, name);
}

/** Path of a file of the var-tiny-pth fixture set. */
export function pthFixture(name: string): string {
  return path.join(pthDir, name);
}
