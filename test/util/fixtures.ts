/**
 * Where tests find the repository and the reference fixtures made with the official PyTorch code.
 *
 * The fixtures are read in place from `../shared/fixtures` next to the repository root (never copied into the
 * repository; each fixture set has a README saying how it was made). `ACTVAR_FIXTURES_DIR` points elsewhere.
 * On a fresh clone they are absent: a test that needs one is then SKIPPED with a reason starting with
 * `missing fixture`, and the run's last line (the `fixture-summary` reporter, see package.json) counts those skips.
 * Under `ACTVAR_REQUIRE_FIXTURES=1` (set by `.ci/run`) a missing fixture is a FAILURE instead, so CI never skips one.
 *
 * How a test file uses this (pick one):
 *
 *   // 1. decided when the test is declared (preferred): the test is skipped, or fails under REQUIRE
 *   test('parity with the official code', needsFixtures(fixture('forward.safetensors')), () => { ... });
 *   describe('metrics', needsFixtures(path.join(fixturesDir, 'metrics/metrics_inputs.safetensors')), () => { ... });
 *
 *   // 2. decided inside a running test: returns false after `t.skip(...)`; throws under REQUIRE
 *   test('…', (t) => { if (!fixtureOrSkip(t, fixture('forward.safetensors'))) return; ... });
 *
 * `fixtureSet(name)(file)` builds paths into any fixture set (e.g. `fixtureSet('fid-inception')('README.md')`).
 */
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

/** dist/test/util/ → the repository root. */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
/** The fixtures folder: `ACTVAR_FIXTURES_DIR`, else ../shared/fixtures beside the repository. */
export const fixturesDir = process.env.ACTVAR_FIXTURES_DIR
  ? path.resolve(process.env.ACTVAR_FIXTURES_DIR)
  : path.resolve(repoRoot, '../shared/fixtures');
/** True when a missing fixture must fail the run (CI) instead of skipping the test. */
export const requireFixtures = process.env.ACTVAR_REQUIRE_FIXTURES === '1';
/** Every skip reason for a missing fixture starts with this (the fixture-summary reporter counts them). */
export const MISSING_FIXTURE = 'missing fixture';

/** Paths into one fixture set under {@link fixturesDir}. */
export function fixtureSet(name: string): (file: string) => string {
  return (file) => path.join(fixturesDir, name, file);
}
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

function missing(paths: readonly string[]): string[] {
  return paths.filter((p) => !fs.existsSync(p));
}

function reason(absent: string[]): string {
  const shown = absent.map((p) => path.relative(fixturesDir, p) || p).join(', ');
  return `${MISSING_FIXTURE} ${shown} (from ${fixturesDir}; each fixture set's README says how it was made)`;
}

const reported = new Set<string>();

/**
 * Test options for a test (or `describe`) that reads `paths`: `{ skip: reason }` when one is absent, `{}` when all
 * are there. Under ACTVAR_REQUIRE_FIXTURES=1 an absent file instead registers one failing test naming it.
 */
export function needsFixtures(...paths: string[]): { skip?: string } {
  const absent = missing(paths);
  if (absent.length === 0) return {};
  if (!requireFixtures) return { skip: reason(absent) };
  const key = absent.join('\n');
  if (!reported.has(key)) {
    reported.add(key);
    test(`fixtures present: ${absent.map((p) => path.basename(p)).join(', ')}`, () => {
      throw new Error(`${reason(absent)}; ACTVAR_REQUIRE_FIXTURES=1 makes this a failure`);
    });
  }
  return { skip: reason(absent) };
}

/** Inside a running test: true when every path exists; else skips `t` and returns false (throws under REQUIRE). */
export function fixtureOrSkip(t: { skip(message?: string): void }, ...paths: string[]): boolean {
  const absent = missing(paths);
  if (absent.length === 0) return true;
  if (requireFixtures) throw new Error(`${reason(absent)}; ACTVAR_REQUIRE_FIXTURES=1 makes this a failure`);
  t.skip(reason(absent));
  return false;
}
