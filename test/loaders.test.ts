/**
 * One loader per model kind (var/load.ts, vqvae/load.ts, eval/classifier.ts) behind one format check (io/weights.ts):
 * the shipped models (actvar's own files, architecture in the metadata) load from a path and from bytes, with their
 * metadata reachable; non-finite weights are refused naming the tensor; `actvar generate` accepts the shipped models.
 */
import './util/setup.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Tensor } from '../src/tensor/tensor.js';
import { loadVar, VAR_FORMAT } from '../src/var/load.js';
import { loadVqvae, VQVAE_FORMAT } from '../src/vqvae/load.js';
import { loadClassifier, CLASSIFIER_FORMAT } from '../src/eval/classifier.js';
import { encodeSafetensors, readSafetensorsFile } from '../src/io/safetensors.js';
import { NonFiniteWeightsError, WeightFileError } from '../src/io/errors.js';
import { detectWeightFormat, loadedFrom } from '../src/io/weights.js';
import { decodePng } from '../src/image/png.js';
import { repoRoot, fixture, pthFixture, needsFixtures } from './util/fixtures.js';

const models = path.join(repoRoot, 'models');
const VAR_FILE = path.join(models, 'var-fashion-mnist.safetensors');
const VAE_FILE = path.join(models, 'tokenizer-fashion-mnist.safetensors');
const CLF_FILE = path.join(models, 'classifier-fashion-mnist.safetensors');

test('the shipped models load by path and from bytes with their metadata; the same weights either way', () => {
  const model = loadVar(VAR_FILE);
  assert.equal(loadedFrom(model)?.metadata.format, VAR_FORMAT);
  assert.equal(loadedFrom(model)?.format, 'safetensors');
  assert.equal(loadedFrom(model)?.source, VAR_FILE);
  const fromBytes = loadVar(new Uint8Array(fs.readFileSync(VAR_FILE)));
  assert.deepEqual(fromBytes.config, model.config);
  assert.equal(loadedFrom(fromBytes)?.source, 'bytes');
  // the tokenizer's patch numbers come from its metadata: no option needed
  const vae = loadVqvae(VAE_FILE);
  assert.equal(loadedFrom(vae)?.metadata.format, VQVAE_FORMAT);
  assert.deepEqual(vae.patchNums, model.config.patchNums);
  assert.deepEqual(loadVqvae(new Uint8Array(fs.readFileSync(VAE_FILE))).config, vae.config);
  const clf = loadClassifier(CLF_FILE);
  assert.equal(loadedFrom(clf)?.metadata.format, CLASSIFIER_FORMAT);
  assert.equal(clf.config.numClasses, model.config.numClasses);
  assert.equal(loadedFrom(new Tensor(new Float32Array(1), [1])), undefined);
  assert.equal(detectWeightFormat(VAR_FILE), 'safetensors');
});

test('a NaN or infinite weight is refused at load with the tensor named (every model kind)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'actvar-nonfinite-'));
  try {
    for (const [file, load, name] of [
      [VAR_FILE, (p: string) => loadVar(p), 'head.weight'],
      [VAE_FILE, (p: string) => loadVqvae(p), 'decoder.conv_out.weight'],
      [CLF_FILE, (p: string) => loadClassifier(p), 'fc2.bias'],
    ] as const) {
      for (const bad of [NaN, Infinity]) {
        const { tensors, metadata } = readSafetensorsFile(file);
        const t = tensors.get(name);
        assert.ok(t, `${name} in ${file}`);
        const d = new Float32Array(t.f32); d[1] = bad;
        tensors.set(name, new Tensor(d, t.shape));
        const p = path.join(dir, path.basename(file));
        fs.writeFileSync(p, encodeSafetensors(tensors, metadata ?? undefined));
        assert.throws(() => load(p), (e: unknown) => e instanceof NonFiniteWeightsError && e instanceof WeightFileError
          && e.tensor === name && e.message.includes(name) && e.message.includes(p), `${name} = ${bad}`);
      }
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('actvar generate accepts the shipped models (--var / --vae) and writes the image grid', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'actvar-gen-shipped-'));
  try {
    const r = spawnSync(process.execPath, [path.join(repoRoot, 'dist/src/cli/main.js'), 'generate', '--var', VAR_FILE, '--vae', VAE_FILE,
      '--classes', '0,1', '--out', 'g.png', '--quiet'], { cwd: dir, encoding: 'utf8', timeout: 120_000 });
    assert.equal(r.status, 0, r.stderr);
    const png = decodePng(fs.readFileSync(path.join(dir, 'g.png')));
    assert.equal(png.height, 32);
    assert.equal(png.width, 64);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('official files load through the same loaders, by path and from bytes: .pth and .safetensors',
  needsFixtures(pthFixture('var_tiny.pth'), fixture('var_state_dict.safetensors'), fixture('vqvae_state_dict.safetensors')), () => {
    const fromPth = loadVar(pthFixture('var_tiny.pth'));
    const fromSt = loadVar(fixture('var_state_dict.safetensors'));
    const fromBytes = loadVar(new Uint8Array(fs.readFileSync(pthFixture('var_tiny.pth'))));
    assert.deepEqual(fromPth.config, fromSt.config);
    assert.deepEqual(fromBytes.config, fromSt.config);
    assert.equal(loadedFrom(fromPth)?.format, 'pth');
    assert.deepEqual(loadedFrom(fromPth)?.metadata, {});
    const vae = loadVqvae(new Uint8Array(fs.readFileSync(fixture('vqvae_state_dict.safetensors'))), { patchNums: fromSt.config.patchNums });
    assert.deepEqual(vae.patchNums, fromSt.config.patchNums);
    assert.equal(detectWeightFormat(pthFixture('var_tiny.pth')), 'pth');
  });
