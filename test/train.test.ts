import './util/setup.js';
import { toy } from './util/toy-dataset.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadVar, loadedFrom } from '../src/var/load.js';
import { loadVqvae } from '../src/vqvae/load.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { noGrad } from '../src/tensor/tensor.js';
import { Rng } from '../src/tensor/rng.js';
import { AdamW } from '../src/optim/adamw.js';
import { paramGroups } from '../src/optim/schedule.js';
import { VQVAE } from '../src/vqvae/vqvae.js';
import { VAR } from '../src/var/var.js';
import { initVarParams } from '../src/var/init.js';
import { ImageDataset } from '../src/data/datasets.js';
import { loadCheckpoint } from '../src/train/checkpoint.js';
import {
  trainVae, vaeTrainForward, evaluateVae, restartDeadCodes, DEFAULT_TOKENIZER_CONFIG,
} from '../src/train/train-vae.js';
import {
  trainVar, varBatchLoss, varConfigFor, tokenizeDataset, tokensToIdxBl, evaluateVar,
} from '../src/train/train-var.js';

/** Toy 28×28 images: the class sets which quadrant holds a bright square. */

/** A tiny tokenizer with the shipped layout: 32×32 → 8×8, patch numbers 1,2,3,4,6,8. */
const TINY_VAE = { ...DEFAULT_TOKENIZER_CONFIG, ch: 8, chMult: [1, 2, 2], normGroups: 4, Cvae: 8, vocabSize: 32 };
const TINY_VAR = { depth: 2, width: 32, heads: 2 };

function snapshot(params: Iterable<[string, { f32: Float32Array }]>): number[][] { return [...params].map(([, t]) => [...t.f32]); }

test('one VQVAE optimisation step lowers the loss on a fixed batch', () => {
  const vae = VQVAE.random(TINY_VAE, new Rng(1), { requiresGrad: true });
  const x = toy(8, 2).batch([0, 1, 2, 3, 4, 5, 6, 7]).images;
  const opt = new AdamW(vae.parameters(), { lr: 2e-3, weightDecay: 0 });
  const before = vaeTrainForward(vae, x);
  assert.deepEqual(before.rec.shape, [8, 1, 32, 32]);
  assert.equal(before.hits.length, 6);
  assert.equal(before.hits.reduce((s, h) => s + h.reduce((a, b) => a + b, 0), 0), 8 * (1 + 4 + 9 + 16 + 36 + 64));
  opt.zeroGrad();
  before.loss.backward();
  // the straight-through estimator carries the reconstruction gradient into the encoder,
  // the codebook loss into the codebook
  assert.ok(vae.sd.get('encoder.conv_in.weight')!.grad!.f32.some((g) => g !== 0));
  assert.ok(vae.quantize.codebook.grad!.f32.some((g) => g !== 0));
  opt.step();
  const after = noGrad(() => vaeTrainForward(vae, x));
  assert.ok(after.loss.f32[0] < before.loss.f32[0], `loss did not fall: ${before.loss.f32[0]} → ${after.loss.f32[0]}`);
  assert.ok(after.recLoss.f32[0] < before.recLoss.f32[0]);
});

test('dead-code restart replaces only the dead codes, with residual vectors', () => {
  const vae = VQVAE.random(TINY_VAE, new Rng(3));
  const x = toy(4, 4).batch([0, 1, 2, 3]).images;
  const f = noGrad(() => vae.encode(x));
  const usage = new Float64Array(32).fill(10);
  usage[5] = 0; usage[17] = 0.1;
  const E = vae.quantize.codebook.f32, before = E.slice();
  const n = restartDeadCodes(vae, f, usage, 0.03, new Rng(1));
  assert.equal(n, 2);
  for (let v = 0; v < 32; v++) {
    const changed = [...E.subarray(v * 8, v * 8 + 8)].some((e, c) => e !== before[v * 8 + c]);
    assert.equal(changed, v === 5 || v === 17, `code ${v}`);
  }
  assert.ok(usage[5] > 9 && usage[17] > 9, 'restarted codes get the mean usage');
  assert.equal(restartDeadCodes(vae, f, usage, 0.03, new Rng(1)), 0);
});

test('one VAR optimisation step lowers the teacher-forced loss on a fixed batch', () => {
  const vae = VQVAE.random(TINY_VAE, new Rng(5));
  const ds = toy(8, 6);
  const tokens = tokenizeDataset(vae, ds, { chunk: 3 });
  assert.equal(tokens.length, 8 * 130);
  const rows = [0, 1, 2, 3, 4, 5, 6, 7];
  const idx = tokensToIdxBl(tokens, 130, rows, vae.patchNums);
  // the token table holds exactly what the tokenizer gives for these images
  const direct = vae.imgToIdxBl(ds.images(rows));
  idx.forEach((t, si) => assert.deepEqual([...t.i32], [...direct[si].i32], `scale ${si}`));
  const config = varConfigFor(vae, 4, TINY_VAR);
  const model = new VAR(config, initVarParams(config, new Rng(7), { initAdalnGamma: 1e-3 }));
  model.setRequiresGrad(true);
  const opt = new AdamW(paramGroups(model.params, 0.05), { lr: 3e-3, betas: [0.9, 0.95] });
  const labels = ds.labels;
  const before = varBatchLoss(model, vae, idx, labels, { training: true, rng: new Rng(1) });
  assert.equal(before.tokens, 8 * 130);
  assert.ok(Math.abs(before.loss.f32[0] - Math.log(32)) < 0.5, `initial loss ${before.loss.f32[0]} should be near ln V`);
  opt.zeroGrad();
  before.loss.backward();
  opt.step();
  const l0 = noGrad(() => varBatchLoss(model, vae, idx, labels, { training: false }).loss.f32[0]);
  for (let i = 0; i < 3; i++) {
    const r = varBatchLoss(model, vae, idx, labels, { training: true, rng: new Rng(2 + i) });
    opt.zeroGrad(); r.loss.backward(); opt.step();
  }
  const l1 = noGrad(() => varBatchLoss(model, vae, idx, labels, { training: false }).loss.f32[0]);
  assert.ok(l0 < before.loss.f32[0], `one step: ${before.loss.f32[0]} → ${l0}`);
  assert.ok(l1 < l0, `more steps: ${l0} → ${l1}`);
});

test('train-vae: resume is bitwise identical (across dead-code restarts); the tokenizer file loads back', async () => {
  const train = toy(40, 8), testSet = toy(12, 9, 'test');
  const common = {
    train, test: testSet, steps: 6, batchSize: 4, seed: 2, restartEvery: 2, config: TINY_VAE,
    evalEvery: 3, evalSamples: 8, finalEvalSamples: 12, progress: 'none' as const, log: () => {},
  };
  const dir = mkdtempSync(join(tmpdir(), 'actvar-trainvae-'));
  try {
    const full = await trainVae({ ...common, out: join(dir, 'vae.safetensors') });
    assert.ok(full.restarts > 0, 'the run should restart some dead codes');
    const first = await trainVae({ ...common, ckptDir: join(dir, 'ck'), stopAt: 3 });
    assert.equal(loadCheckpoint(join(dir, 'ck')).step, 3);
    const second = await trainVae({ ...common, ckptDir: join(dir, 'ck'), resume: true });
    assert.deepEqual([...first.history, ...second.history].map((h) => h.loss), full.history.map((h) => h.loss));
    assert.deepEqual(snapshot(second.vae.namedParameters()), snapshot(full.vae.namedParameters()));
    const vae = loadVqvae(join(dir, 'vae.safetensors'));
    const { metadata } = loadedFrom(vae)!;
    assert.deepEqual(vae.patchNums, [1, 2, 3, 4, 6, 8]);
    assert.equal(metadata.format, 'actvar-vqvae/1');
    const r = evaluateVae(vae, testSet);
    assert.equal(r.mse, full.test.mse);
    assert.equal(r.usage, full.test.usage);
    assert.ok(r.usage > 0 && r.usage <= 1 && r.perplexity >= 1 && r.perplexity <= 32);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('train-var: resume is bitwise identical (label dropout and drop-path drawn from the checkpointed rng); the VAR file loads back', async () => {
  const vae = VQVAE.random(TINY_VAE, new Rng(11));
  const train = toy(40, 12), testSet = toy(10, 13, 'test');
  const common = {
    train, test: testSet, tokenizer: vae, model: { ...TINY_VAR, condDropRate: 0.5, dropPathRate: 0.3 },
    steps: 6, batchSize: 4, seed: 4, lr: 3e-3, evalEvery: 3, evalSamples: 5, finalEvalSamples: 10, progress: 'none' as const, log: () => {},
  };
  const dir = mkdtempSync(join(tmpdir(), 'actvar-trainvar-'));
  try {
    const full = await trainVar({ ...common, out: join(dir, 'var.safetensors'), tokenCacheDir: join(dir, 'tok') });
    assert.ok(full.history.every((h) => h.acc !== undefined && h.acc >= 0 && h.acc <= 1));
    const first = await trainVar({ ...common, ckptDir: join(dir, 'ck'), stopAt: 4, tokenCacheDir: join(dir, 'tok') });
    assert.equal(first.history.length, 4);
    const second = await trainVar({ ...common, ckptDir: join(dir, 'ck'), resume: true });
    assert.equal(second.startStep, 4);
    assert.deepEqual([...first.history, ...second.history].map((h) => h.loss), full.history.map((h) => h.loss));
    assert.deepEqual(snapshot(second.var.params), snapshot(full.var.params));
    const back = loadVar(join(dir, 'var.safetensors'));
    const { metadata } = loadedFrom(back)!;
    assert.equal(metadata.format, 'actvar-var/1');
    assert.deepEqual(back.config.patchNums, [1, 2, 3, 4, 6, 8]);
    assert.equal(back.config.numClasses, 4);
    const tokens = tokenizeDataset(vae, testSet);
    const r = evaluateVar(back, vae, tokens, testSet.labels);
    assert.equal(r.loss, full.test.loss);
    assert.equal(r.accPerScale.length, 6);
    // a different tokenizer cannot resume this run
    await assert.rejects(trainVar({ ...common, tokenizer: VQVAE.random(TINY_VAE, new Rng(99)), ckptDir: join(dir, 'ck'), resume: true }), /different settings/);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});
