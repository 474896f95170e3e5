/** The README's library example, run on the fixture weights through the package entry point. */
import './util/setup.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadVar, loadVqvae, ActVAR, Rng, noGrad } from '../src/index.js';
import { fixturesDir, needsFixtures } from './util/fixtures.js';
import path from 'node:path';

test('README library example runs (dense and ActVAR)', needsFixtures(path.join(fixturesDir, 'var-tiny-pth/var_tiny.pth'), path.join(fixturesDir, 'var-tiny/vqvae_state_dict.safetensors')), () => {
  const model = loadVar(path.join(fixturesDir, 'var-tiny-pth/var_tiny.pth'));
  const vqvae = loadVqvae(path.join(fixturesDir, 'var-tiny/vqvae_state_dict.safetensors'), { patchNums: model.config.patchNums });
  const dense = noGrad(() => model.autoregressiveInfer({ labels: [3, 7], vqvae, cfg: 1.5, topK: 1, rng: new Rng(0) }));
  assert.deepEqual(dense.image?.shape, [2, 3, 64, 64]);
  const act = ActVAR.wrap(model, { tokenRates: [0.75, 0.75], expertRate: 0.75 });
  const sparse = noGrad(() => act.generate({ labels: [3, 7], vqvae, cfg: 1.5, topK: 1 }));
  assert.deepEqual(sparse.idxBL.shape, dense.idxBL.shape);
  // the first scales are not activated: their tokens are the dense model's
  assert.deepEqual([...sparse.idx[0].i32], [...dense.idx[0].i32]);
});
