import './util/setup.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Tensor, param } from '../src/tensor/tensor.js';
import { Rng } from '../src/tensor/rng.js';
import { AdamW } from '../src/optim/adamw.js';
import {
  saveCheckpoint, loadCheckpoint, restoreCheckpoint, listCheckpoints, CheckpointError, type SaveStage,
} from '../src/train/checkpoint.js';
import { ImageDataset } from '../src/data/datasets.js';
import { trainClassifier } from '../src/train/train-classifier.js';

const checkpointModule = fileURLToPath(new URL('../src/train/checkpoint.js', import.meta.url));

function tmp(): string { return mkdtempSync(join(tmpdir(), 'actvar-ckpt-')); }

/** A tiny "model" (two params) plus an AdamW that has taken `steps` steps on a quadratic. */
function model(seed: number, steps: number): { params: Map<string, Tensor>; opt: AdamW } {
  const rng = new Rng(seed);
  const w = param(Float32Array.from({ length: 6 }, () => rng.normal()), [2, 3], 'w');
  const b = param(Float32Array.from({ length: 3 }, () => rng.normal()), [3], 'b');
  const params = new Map([['layer.weight', w], ['layer.bias', b]]);
  const opt = new AdamW([{ params: [w], weightDecay: 0.05 }, { params: [b], weightDecay: 0 }], { lr: 0.01, betas: [0.9, 0.95] });
  for (let i = 0; i < steps; i++) stepOnce(params, opt);
  return { params, opt };
}

function stepOnce(params: Map<string, Tensor>, opt: AdamW): void {
  // gradient of ½‖p − 1‖² is p − 1
  for (const p of params.values()) p.grad = new Tensor(p.f32.map((v) => v - 1), p.shape);
  opt.step();
}

function snapshot(params: Map<string, Tensor>): number[][] { return [...params.values()].map((p) => [...p.f32]); }

test('save → load → restore round trip continues bit-identically', () => {
  const dir = tmp();
  try {
    const a = model(1, 3);
    const rng = new Rng(9); rng.normal(); // leaves a cached spare normal in the state
    saveCheckpoint(dir, { step: 3, params: a.params, optimizer: a.opt, rngs: { train: rng.getState() }, data: { train: { epoch: 2, pos: 17 } }, extra: { note: 'x', lossAt3: 0.1 + 0.2 } });
    const ck = loadCheckpoint(dir);
    assert.equal(ck.step, 3);
    assert.deepEqual(ck.data, { train: { epoch: 2, pos: 17 } });
    assert.deepEqual(ck.extra, { note: 'x', lossAt3: 0.30000000000000004 });
    const r2 = new Rng(0); r2.setState(ck.rngs.train);
    assert.equal(r2.normal(), rng.normal());
    assert.equal(r2.uniform(), rng.uniform());

    const b = model(2, 0); // different weights, fresh optimizer
    restoreCheckpoint(ck, b.params, b.opt);
    assert.deepEqual(snapshot(b.params), snapshot(a.params));
    for (let i = 0; i < 4; i++) { stepOnce(a.params, a.opt); stepOnce(b.params, b.opt); }
    assert.deepEqual(snapshot(b.params), snapshot(a.params));
    assert.equal(b.opt.stepCount, 7);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('only the newest `keep` checkpoints stay; re-saving a step replaces it', () => {
  const dir = tmp();
  try {
    const a = model(1, 1);
    for (const s of [10, 20, 30]) saveCheckpoint(dir, { step: s, params: a.params, optimizer: a.opt }, { keep: 2 });
    assert.deepEqual(listCheckpoints(dir).map((p) => p.slice(-13)), ['step-00000030', 'step-00000020']);
    stepOnce(a.params, a.opt);
    saveCheckpoint(dir, { step: 30, params: a.params, optimizer: a.opt }, { keep: 2 });
    assert.deepEqual(snapshot(loadCheckpoint(dir).params), snapshot(a.params));
    assert.deepEqual(readdirSync(dir).sort(), ['latest.json', 'step-00000020', 'step-00000030']);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('a crash at any stage of a save leaves the previous checkpoint loadable', () => {
  const stages: SaveStage[] = ['model-written', 'optim-written', 'state-written', 'folder-renamed', 'committed'];
  for (const stage of stages) {
    const dir = tmp();
    try {
      const a = model(1, 2);
      saveCheckpoint(dir, { step: 2, params: a.params, optimizer: a.opt, data: { pos: 2 } });
      const before = snapshot(a.params);
      stepOnce(a.params, a.opt);
      assert.throws(() => saveCheckpoint(dir, { step: 3, params: a.params, optimizer: a.opt, data: { pos: 3 } }, {
        onStage: (s) => { if (s === stage) throw new Error(`simulated crash at ${s}`); },
      }), /simulated crash/);
      const ck = loadCheckpoint(dir);
      if (stage === 'committed') {
        assert.equal(ck.step, 3);
      } else {
        assert.equal(ck.step, 2, `crash at ${stage}`);
        assert.deepEqual(snapshot(ck.params), before);
        assert.deepEqual(ck.data, { pos: 2 });
      }
      // the next save succeeds and sweeps the leftovers
      saveCheckpoint(dir, { step: 4, params: a.params, optimizer: a.opt });
      assert.ok(readdirSync(dir).every((e) => !e.startsWith('.')), `leftovers after ${stage}: ${readdirSync(dir)}`);
      assert.equal(loadCheckpoint(dir).step, 4);
    } finally { rmSync(dir, { recursive: true, force: true }); }
  }
});

test('a process killed (SIGKILL) in the middle of a save leaves the previous checkpoint loadable', () => {
  for (const stage of ['model-written', 'state-written', 'folder-renamed']) {
    const dir = tmp();
    try {
      const script = `
        import { saveCheckpoint } from ${JSON.stringify(checkpointModule)};
        import { Tensor } from ${JSON.stringify(checkpointModule.replace(/train[\\/]checkpoint\.js$/, 'tensor/tensor.js'))};
        const mk = (v) => new Map([['w', new Tensor(new Float32Array(1000).fill(v), [10, 100], true)]]);
        saveCheckpoint(process.argv[1], { step: 1, params: mk(1) });
        saveCheckpoint(process.argv[1], { step: 2, params: mk(2) }, {
          onStage: (s) => { if (s === process.argv[2]) process.kill(process.pid, 'SIGKILL'); },
        });`;
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', script, dir, stage], { encoding: 'utf8' });
      assert.equal(r.signal, 'SIGKILL', `child did not die at ${stage}: ${r.stderr}`);
      assert.ok(readdirSync(dir).some((e) => e.startsWith('.tmp-') || e.startsWith('step-00000002')), 'the killed save left something behind');
      const ck = loadCheckpoint(dir);
      assert.equal(ck.step, 1);
      assert.ok(ck.params.get('w')!.f32.every((v) => v === 1));
    } finally { rmSync(dir, { recursive: true, force: true }); }
  }
});

test('a truncated or damaged checkpoint gives a clear error', () => {
  const dir = tmp();
  try {
    const a = model(1, 1);
    const step = saveCheckpoint(dir, { step: 1, params: a.params, optimizer: a.opt });
    const model1 = join(step, 'model.safetensors'), optim1 = join(step, 'optim.safetensors'), state1 = join(step, 'state.json');
    const orig = { model: readFileSync(model1), optim: readFileSync(optim1), state: readFileSync(state1) };

    truncateSync(model1, orig.model.length - 10);
    assert.throws(() => loadCheckpoint(dir), (e: Error) => e instanceof CheckpointError &&
      /model\.safetensors has \d+ bytes but state\.json records \d+ \(truncated\)/.test(e.message));
    writeFileSync(model1, orig.model);

    const bad = Buffer.from(orig.optim); bad[bad.length - 1] ^= 0xff;
    writeFileSync(optim1, bad);
    assert.throws(() => loadCheckpoint(dir), /damaged: the SHA-256 of optim\.safetensors does not match/);
    writeFileSync(optim1, orig.optim);

    writeFileSync(state1, orig.state.subarray(0, 40));
    assert.throws(() => loadCheckpoint(dir), /state\.json cannot be parsed .*truncated/);
    writeFileSync(state1, orig.state);

    rmSync(optim1);
    assert.throws(() => loadCheckpoint(dir), /incomplete: optim\.safetensors is missing/);
    writeFileSync(optim1, orig.optim);
    assert.equal(loadCheckpoint(dir).step, 1);

    assert.throws(() => loadCheckpoint(join(dir, 'nope')), /does not exist/);
    const empty = tmp();
    assert.throws(() => loadCheckpoint(empty), /no checkpoint in/);
    rmSync(empty, { recursive: true });

    // restoring into a model of another shape names the parameter
    const other = new Map([['layer.weight', param(new Float32Array(4), [2, 2])], ['layer.bias', param(new Float32Array(3), [3])]]);
    assert.throws(() => restoreCheckpoint(loadCheckpoint(dir), other), /"layer\.weight" has shape \[2, 3\], the model expects \[2, 2\]/);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

/** A small learnable dataset: the class sets which 7×7 block of the 28×28 image is bright. */
function toyDataset(n: number, seed: number): ImageDataset {
  const rng = new Rng(seed), s = 28;
  const px = new Uint8Array(n * s * s), labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const y = i % 4; labels[i] = y;
    const by = (y >> 1) * 14 + 3, bx = (y & 1) * 14 + 3;
    for (let p = 0; p < s * s; p++) px[i * s * s + p] = rng.int(60);
    for (let r = 0; r < 7; r++) for (let c = 0; c < 7; c++) px[i * s * s + (by + r) * s + bx + c] = 150 + rng.int(100);
  }
  return new ImageDataset({ name: 'toy', split: 'train', side: s, pixels: px, labels, classes: ['a', 'b', 'c', 'd'] });
}

test('resume gives a bitwise-identical loss trajectory (classifier training)', async () => {
  const train = toyDataset(96, 1), testSet = toyDataset(32, 2);
  const common = {
    train, test: testSet, steps: 12, batchSize: 8, seed: 3, augmentShift: 2, evalEvery: 4, evalSamples: 16,
    config: { c1: 4, c2: 8, hidden: 16 }, progress: 'none' as const, log: () => {},
  };
  const full = await trainClassifier(common);
  assert.equal(full.history.length, 12);
  const dir = tmp();
  try {
    const first = await trainClassifier({ ...common, ckptDir: dir, ckptEvery: 100, stopAt: 5 });
    assert.equal(first.loop.stepsDone, 5);
    assert.ok(first.loop.interrupted);
    assert.equal(loadCheckpoint(dir).step, 5);
    const second = await trainClassifier({ ...common, ckptDir: dir, resume: true });
    assert.equal(second.startStep, 5);
    const resumed = [...first.history, ...second.history].map((r) => r.loss);
    assert.deepEqual(resumed, full.history.map((r) => r.loss), 'losses differ after resume');
    assert.deepEqual(snapshot(second.classifier.params), snapshot(full.classifier.params));
    // a resume with different settings is refused, naming both
    await assert.rejects(trainClassifier({ ...common, batchSize: 4, ckptDir: dir, resume: true }), /cannot resume from .*different settings/s);
  } finally { rmSync(dir, { recursive: true, force: true }); }
  assert.ok(!existsSync(dir));
});

test('trainLoop: checkpoints every N steps and at the end, evaluates, logs lines, stops on SIGINT with a checkpoint', async () => {
  const { trainLoop } = await import('../src/train/loop.js');
  const out: string[] = [];
  const stream = { isTTY: false, write: (s: string) => { out.push(s); return true; } } as unknown as NodeJS.WriteStream;
  const ckpts: number[] = [], evals: number[] = [];
  const r = await trainLoop({
    name: 'toy', totalSteps: 10, startStep: 2, stream, progress: 'lines', logEvery: 4,
    trainStep: (s) => ({ loss: 1 / (s + 1), acc: 0.5, samples: 8 }),
    evalEvery: 3, evaluate: (d) => { evals.push(d); return { metric: d }; },
    ckptEvery: 4, checkpoint: (d) => ckpts.push(d),
  });
  assert.deepEqual(r.history.map((h) => h.step), [2, 3, 4, 5, 6, 7, 8, 9]);
  assert.deepEqual(ckpts, [4, 8, 10]);
  assert.deepEqual(evals, [3, 6, 9, 10]);
  assert.equal(r.stepsDone, 10);
  assert.ok(!r.interrupted);
  assert.ok(out.some((l) => /^toy step 4\/10 \| loss [\d.]+ \| acc 50\.0% \| [\d.]+ img\/s, [\d.]+ it\/s \| ETA /.test(l)), out.join(''));
  assert.ok(out.some((l) => /^toy step 9\/10: eval metric 9/.test(l)));

  const ck2: number[] = [];
  const r2 = await trainLoop({
    name: 'toy', totalSteps: 100, stream, progress: 'none',
    trainStep: (s) => { if (s === 4) process.emit('SIGINT'); return { loss: 1, samples: 1 }; },
    ckptEvery: 50, checkpoint: (d) => ck2.push(d),
  });
  assert.ok(r2.interrupted);
  assert.equal(r2.stepsDone, 5);
  assert.deepEqual(ck2, [5]);
  assert.equal(process.listenerCount('SIGINT'), 0, 'the SIGINT handler is removed again');
});
