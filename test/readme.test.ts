/**
 * The README's library example: copied from README.md and run as it is inside the repository (`import … from 'actvar'`
 * resolves to this package by self-reference, the models to models/); and the official-layout files (the fixture
 * weights, .pth and .safetensors) through the package entry point. test/package.test.ts runs the example in a project
 * that installed the packed tarball.
 */
import './util/setup.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadVar, loadVqvae, ActVAR, Rng, noGrad } from '../src/index.js';
import { fixturesDir, needsFixtures } from './util/fixtures.js';
import path from 'node:path';
import fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import { repoRoot } from './util/fixtures.js';
import { readmeExampleJs } from './util/readme.js';

test('the README library example runs as written inside the repository (self-reference, shipped models)', () => {
  const file = path.join(repoRoot, 'dist', 'readme-example.mjs'); // inside the package, so 'actvar' resolves to it
  fs.writeFileSync(file, readmeExampleJs());
  try {
    const r = spawnSync(process.execPath, [file], { cwd: repoRoot, encoding: 'utf8', timeout: 120_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /\[ 2, 1, 32, 32 \] \[ 2, 130 \]/);
  } finally {
    fs.rmSync(file, { force: true });
  }
});

test('official-layout files through the package entry: .pth VAR, .safetensors VQVAE (dense and ActVAR)', needsFixtures(path.join(fixturesDir, 'var-tiny-pth/var_tiny.pth'), path.join(fixturesDir, 'var-tiny/vqvae_state_dict.safetensors')), () => {
  const model = loadVar(path.join(fixturesDir, 'var-tiny-pth/var_tiny.pth'));
  const vqvae = loadVqvae(path.join(fixturesDir, 'var-tiny/vqvae_state_dict.safetensors'), { patchNums: model.config.patchNums });
  const dense = noGrad(() => model.autoregressiveInfer({ labels: [3, 7], vqvae, cfg: 1.5, topK: 1, rng: new Rng(0) }));
  assert.deepEqual(dense.image?.shape, [2, 3, 64, 64]);
  // without calibrated or trained gates, generation is refused unless asked for explicitly
  assert.throws(() => ActVAR.wrap(model, {}).generate({ labels: [3], vqvae, decode: false }), /untrained/);
  const act = ActVAR.wrap(model, { tokenRates: [0.75, 0.75], expertRate: 0.75 }, { allowUntrained: true });
  const sparse = noGrad(() => act.generate({ labels: [3, 7], vqvae, cfg: 1.5, topK: 1 }));
  assert.deepEqual(sparse.idxBL.shape, dense.idxBL.shape);
  // the first scales are not activated: their tokens are the dense model's
  assert.deepEqual([...sparse.idx[0].i32], [...dense.idx[0].i32]);
});
