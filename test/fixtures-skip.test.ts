/**
 * The fresh-clone path: a fixture-reading test file run with its fixtures absent (ACTVAR_FIXTURES_DIR pointed at an
 * empty folder) skips those tests, passes, and the fixture-summary reporter counts the skips; under
 * ACTVAR_REQUIRE_FIXTURES=1 (CI) the same run fails and names the missing file.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { repoRoot } from './util/fixtures.js';

function runWithoutFixtures(require: boolean): { code: number | null; out: string } {
  const env: NodeJS.ProcessEnv = { ...process.env, ACTVAR_FIXTURES_DIR: '', ACTVAR_REQUIRE_FIXTURES: require ? '1' : '0' };
  delete env.NODE_TEST_CONTEXT; // a child of a test file is otherwise told not to run files
  const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'actvar-nofixtures-'));
  try {
    const r = spawnSync(process.execPath, ['--test',
      '--test-reporter=spec', '--test-reporter-destination=stdout',
      `--test-reporter=${path.join(repoRoot, 'dist/test/util/fixture-summary.js')}`, '--test-reporter-destination=stdout',
      path.join(repoRoot, 'dist/test/sampling.test.js')], {
      cwd: repoRoot, encoding: 'utf8', timeout: 120_000,
      env: { ...env, ACTVAR_FIXTURES_DIR: empty },
    });
    return { code: r.status, out: r.stdout + r.stderr };
  } finally {
    fs.rmSync(empty, { recursive: true, force: true });
  }
}

test('without fixtures a fixture test is skipped, the run passes and its last lines count the skip', () => {
  const r = runWithoutFixtures(false);
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /missing fixture var-tiny\/sampling_filter\.safetensors/);
  const [summary, closing] = r.out.trim().split('\n').slice(-2);
  assert.match(summary, /^fixtures: 1 test skipped for missing fixtures \(reference fixtures come from \.\.\/shared\/fixtures/);
  assert.match(closing, /^tests: \d+ passed, 0 failed, 1 skipped$/);
});

test('under ACTVAR_REQUIRE_FIXTURES=1 a missing fixture fails the run, naming the file', () => {
  const r = runWithoutFixtures(true);
  assert.notEqual(r.code, 0, r.out);
  assert.match(r.out, /sampling_filter\.safetensors .*ACTVAR_REQUIRE_FIXTURES=1 makes this a failure/);
});
