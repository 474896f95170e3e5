/**
 * The package as a user gets it: `npm pack`, the tarball installed into an empty project (from the npm registry for
 * its dependencies), and the README's library example, copied from README.md, run there against the shipped models
 * (`import … from 'actvar'`, the models through the package's `./models/*` export). `actvar/core` resolves too.
 * Skipped only when npm is not on the PATH.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { repoRoot } from './util/fixtures.js';
import { readmeExampleJs } from './util/readme.js';

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const hasNpm = spawnSync(npm, ['--version'], { encoding: 'utf8' }).status === 0;

function run(cmd: string, args: string[], cwd: string, timeout = 300_000): string {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.NODE_TEST_CONTEXT;
  for (const k of Object.keys(env)) if (k.startsWith('npm_')) delete env[k]; // not the outer `npm test`'s settings
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout, env });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')} in ${cwd} failed (${r.status ?? r.signal}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

test('npm pack → install into an empty project → the README library example runs there', { skip: hasNpm ? false : 'npm is not on the PATH' }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'actvar-pack-'));
  try {
    // dist/ is already built by `npm test`; --ignore-scripts skips `prepare` (a second tsc run)
    const packed = JSON.parse(run(npm, ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], repoRoot)) as { filename: string; files: { path: string }[] }[];
    const files = packed[0].files.map((f) => f.path);
    for (const f of ['dist/src/index.js', 'dist/src/core.js', 'models/var-fashion-mnist.safetensors', 'README.md']) assert.ok(files.includes(f), `${f} in the tarball`);
    assert.ok(!files.some((f) => f.startsWith('dist/test/')), 'no tests in the tarball');
    const project = path.join(dir, 'project');
    fs.mkdirSync(project);
    fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'try-actvar', private: true, type: 'module' }));
    run(npm, ['install', '--no-audit', '--no-fund', path.join(dir, packed[0].filename)], project);
    fs.writeFileSync(path.join(project, 'example.mjs'), readmeExampleJs());
    const out = run(process.execPath, ['example.mjs'], project);
    assert.match(out, /\[ 2, 1, 32, 32 \] \[ 2, 130 \]/);
    fs.writeFileSync(path.join(project, 'core.mjs'), "import { loadVar, Tensor } from 'actvar/core';\nconsole.log(typeof loadVar, typeof Tensor);\n");
    assert.equal(run(process.execPath, ['core.mjs'], project).trim(), 'function function');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
