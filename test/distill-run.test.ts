/**
 * The distillation run (src/train/distill.ts) and the ActVAR files (src/actvar/file.ts, ActVAR.load/save):
 * bit-exact resume across the stage boundary, the model file's round trip, the base-VAR hash check of gates
 * files, and the refusal to generate with untrained gates.
 */
import './util/setup.js';
import { toy } from './util/toy-dataset.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { writeSafetensors } from '../src/io/safetensors.js';
import { loadDataset } from '../src/data/datasets.js';
import { repoRoot } from './util/fixtures.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng } from '../src/tensor/rng.js';
import { VQVAE } from '../src/vqvae/vqvae.js';
import { VAR } from '../src/var/var.js';
import { initVarParams } from '../src/var/init.js';
import { ImageDataset } from '../src/data/datasets.js';
import { DEFAULT_TOKENIZER_CONFIG, VQVAE_FORMAT } from '../src/train/train-vae.js';
import { VAR_FORMAT, varConfigFor } from '../src/train/train-var.js';
import { distill } from '../src/train/distill.js';
import { ActVAR } from '../src/actvar/actvar.js';
import { ActVarConfigError } from '../src/actvar/config.js';
import { varParamsHash } from '../src/actvar/hash.js';
import { encodeActVarModel, loadActVar, actVarModelInfo } from '../src/actvar/file.js';
import { sha256Hex, Sha256 } from '../src/io/sha256.js';
import { createHash } from 'node:crypto';


const cli = join(repoRoot, 'dist/src/cli/main.js');
const TINY_VAE = { ...DEFAULT_TOKENIZER_CONFIG, ch: 8, chMult: [1, 2, 2], normGroups: 4, Cvae: 8, vocabSize: 32 };

function tinyModels(seed = 1): { vae: VQVAE; model: VAR } {
  const vae = VQVAE.random(TINY_VAE, new Rng(seed));
  const cfg = varConfigFor(vae, 4, { depth: 2, width: 32, heads: 2, condDropRate: 0.5 });
  return { vae, model: new VAR(cfg, initVarParams(cfg, new Rng(seed + 1))) };
}

const snap = (m: Map<string, { f32: Float32Array }>): number[][] => [...m.values()].map((t) => [...t.f32]);

test('distill: interrupted and resumed = uninterrupted, bitwise (inside stage 1 and at the stage boundary, lin0 schedule); the model file loads back', async () => {
  const { vae, model } = tinyModels(3);
  const train = toy(48, 5), testSet = toy(8, 6, 'test');
  const common = {
    var: model, tokenizer: vae, train, test: testSet, stages: [1, 2] as (1 | 2)[], stageSteps: [3, 3],
    actvar: { experts: 4 }, calib: 1, holdout: 8, evalSamples: 8, testSamples: 8, batchSize: 4, seed: 7, lr: 3e-3, lr2: 1e-3, schedule: 'lin0' as const,
    evalEvery: 2, progress: 'none' as const, log: () => {},
  };
  const dir = mkdtempSync(join(tmpdir(), 'actvar-distill-'));
  try {
    const full = await distill({ ...common, out: join(dir, 'a.safetensors'), command: 'actvar distill --test' });
    assert.equal(full.history.length, 6);
    // lin0 per stage (warm-up 1 step): peak, peak, then 0.01 × peak at the stage's last step
    const lrs = full.history.map((h) => (h.extra as { lr: number }).lr);
    assert.deepEqual(lrs.map((v) => +v.toPrecision(6)), [3e-3, 3e-3, 3e-5, 1e-3, 1e-3, 1e-5]);
    for (const stopAt of [2, 3, 4]) {
      const ck = join(dir, `ck${stopAt}`);
      const first = await distill({ ...common, ckptDir: ck, stopAt, ckptEvery: 1 });
      assert.equal(first.history.length, stopAt);
      const second = await distill({ ...common, ckptDir: ck, resume: true });
      assert.equal(second.startStep, stopAt);
      assert.deepEqual([...first.history, ...second.history].map((h) => h.loss), full.history.map((h) => h.loss), `stop at ${stopAt}`);
      assert.deepEqual(snap(second.actvar.model.params), snap(full.actvar.model.params));
      assert.deepEqual(snap(second.actvar.parameters()), snap(full.actvar.parameters()));
      assert.deepEqual(second.before, full.before);
      assert.deepEqual(second.after, full.after);
    }
    // a resume with other settings is refused
    await assert.rejects(distill({ ...common, lr: 1e-3, ckptDir: join(dir, 'ck2'), resume: true }), /different settings/);
    // stage 1 trains the gates only (the VAR stays the teacher's, bitwise); stage 2 the VAR only (the gates stay stage 1's)
    const s1 = await distill({ ...common, stages: [1], stageSteps: [3] });
    assert.deepEqual(snap(s1.actvar.model.params), snap(model.params));
    const start = ActVAR.wrap(model, { experts: 4 }); // the start gates: the trainer's calibration (calib 1: class 0, seed 7 ^ 0x5eed)
    start.calibrate({ vqvae: vae, labels: [0], cfg: 1.5, topK: 0, topP: 0, rng: new Rng((7 ^ 0x5eed) >>> 0) });
    assert.equal(full.before.val.klToDense, (await distill({ ...common, stages: [1], stageSteps: [1] })).before.val.klToDense);
    assert.notDeepEqual(snap(s1.actvar.parameters()), snap(start.parameters()));
    assert.deepEqual(snap(full.actvar.parameters()), snap(s1.actvar.parameters()));
    assert.notDeepEqual(snap(full.actvar.model.params), snap(model.params));
    assert.ok(full.after.val.klToDense >= 0 && Number.isFinite(full.after.val.klToDense));
    // the model file: the fine-tuned VAR and the gates, ready to generate, with where it came from
    const back = loadActVar(readFileSync(join(dir, 'a.safetensors')));
    assert.deepEqual(snap(back.model.params), snap(full.actvar.model.params));
    assert.deepEqual(snap(back.parameters()), snap(full.actvar.parameters()));
    assert.equal(back.gates, 'distilled');
    assert.deepEqual(back.config, full.actvar.config);
    const info = actVarModelInfo(back)!;
    assert.equal(info.base_var_sha256, varParamsHash(model));
    assert.equal(info.command, 'actvar distill --test');
    assert.deepEqual(JSON.parse(info.after), JSON.parse(JSON.stringify(full.after)));
    const gen = back.generate({ labels: [1], vqvae: vae, rng: new Rng(0), decode: false });
    assert.equal(gen.idxBL.shape[1], model.L);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('gates files carry the base VAR\'s hash: another VAR is refused, the same one loads', () => {
  const { vae, model } = tinyModels(3);
  const a = ActVAR.wrap(model, { experts: 4 });
  a.calibrate({ vqvae: vae, labels: [0, 1], rng: new Rng(2) });
  const dir = mkdtempSync(join(tmpdir(), 'actvar-gates-'));
  try {
    const f = join(dir, 'g.safetensors');
    a.save(f);
    const same = ActVAR.load(model, f);
    assert.equal(same.gates, 'calibrated');
    assert.deepEqual(snap(same.parameters()), snap(a.parameters()));
    const other = tinyModels(9).model;
    assert.throws(() => ActVAR.load(other, f), (e: Error) => e instanceof ActVarConfigError && /made for another VAR/.test(e.message));
    // an ActVAR model file is not a gates file, and a gates file is not a model file
    const bytes = encodeActVarModel(a, { baseVarSha256: varParamsHash(model) });
    assert.throws(() => ActVAR.load(model, bytes), /whole ActVAR model/);
    assert.throws(() => loadActVar(f), /holds gates only/);
    // a damaged VAR part is detected
    const back = loadActVar(bytes);
    assert.equal(back.gates, 'calibrated');
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('wrap without trained or calibrated gates refuses to generate unless asked explicitly', () => {
  const { vae, model } = tinyModels(3);
  const a = ActVAR.wrap(model, { experts: 4 });
  assert.throws(() => a.generate({ labels: [0], vqvae: vae, decode: false }), (e: Error) => e instanceof ActVarConfigError && /untrained/.test(e.message));
  const b = ActVAR.wrap(model, { experts: 4 }, { init: 'zeros', allowUntrained: true });
  assert.equal(b.generate({ labels: [0], vqvae: vae, decode: false }).idxBL.shape[0], 1);
  a.calibrate({ vqvae: vae, labels: [2], rng: new Rng(1) });
  assert.equal(a.generate({ labels: [0], vqvae: vae, decode: false }).idxBL.shape[0], 1);
});

test('SHA-256 in TypeScript equals node:crypto (lengths around the block and padding edges)', () => {
  const rng = new Rng(4);
  for (const n of [0, 1, 55, 56, 63, 64, 65, 119, 120, 1000, 4099]) {
    const d = Uint8Array.from({ length: n }, () => rng.int(256));
    assert.equal(sha256Hex(d), createHash('sha256').update(d).digest('hex'), `n = ${n}`);
    // incremental, in uneven pieces
    const h = new Sha256();
    for (let i = 0; i < n; i += 7) h.update(d.subarray(i, Math.min(n, i + 7)));
    assert.equal(h.hex(), createHash('sha256').update(d).digest('hex'));
  }
  assert.equal(sha256Hex('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
});

test('actvar distill (CLI): a tiny run writes the model file, generate --actvar-model uses it, a resume with other settings is refused (exit 2, nothing written)', (t) => {
  try { loadDataset('fashion-mnist', 'train', { limit: 1 }); } catch { t.skip('Fashion-MNIST is not installed'); return; }
  const dir = mkdtempSync(join(tmpdir(), 'actvar-distill-cli-'));
  try {
    const vae = VQVAE.random(TINY_VAE, new Rng(1));
    writeSafetensors(join(dir, 'tok.safetensors'), vae.stateDict(), { format: VQVAE_FORMAT, config: JSON.stringify(vae.config) });
    const cfg = varConfigFor(vae, 10, { depth: 2, width: 32, heads: 2 });
    writeSafetensors(join(dir, 'var.safetensors'), new VAR(cfg, initVarParams(cfg, new Rng(2))).stateDict(), { format: VAR_FORMAT, config: JSON.stringify(cfg), dataset: 'fashion-mnist' });
    const run = (args: string[]): ReturnType<typeof spawnSync> => spawnSync(process.execPath, [cli, ...args], { cwd: dir, encoding: 'utf8', timeout: 600_000 });
    const base = ['distill', '--var', 'var.safetensors', '--tokenizer', 'tok.safetensors', '--train-limit', '24', '--holdout', '8', '--test-samples', '4',
      '--eval-samples', '4', '--batch-size', '4', '--steps', '2', '--actvar-calib', '1', '--experts', '4', '--ckpt-dir', 'ck', '--progress', 'none'];
    const r = run([...base, '--out', 'm.safetensors', '--json']);
    assert.equal(r.status, 0, String(r.stderr));
    const j = JSON.parse(String(r.stdout).trim().split('\n').pop()!);
    assert.deepEqual(j.stages, [{ stage: 1, steps: 1 }, { stage: 2, steps: 1 }]);
    assert.equal(typeof j.validation_before.klToDense, 'number');
    assert.equal(typeof j.test_after.klToDense, 'number');
    assert.equal(j.lr, 2e-4 * 4 / 512);
    const info = actVarModelInfo(loadActVar(join(dir, 'm.safetensors')))!;
    assert.equal(info.tokenizer, 'tok.safetensors');
    assert.match(info.command, /^actvar distill --var var\.safetensors /);
    const g = run(['generate', '--actvar-model', 'm.safetensors', '--classes', '1', '--out', 'g.png', '--quiet']);
    assert.equal(g.status, 0, String(g.stderr));
    const before = readdirSync(dir).sort().join();
    const bad = run([...base, '--resume', '--lr', '0.5']);
    assert.equal(bad.status, 2, String(bad.stderr));
    assert.match(String(bad.stderr), /^actvar: error: cannot resume from .* different settings/m);
    assert.equal(readdirSync(dir).sort().join(), before, 'nothing written');
    const wrongVar = run(['generate', '--actvar-model', 'm.safetensors', '--var', 'var.safetensors', '--classes', '1', '--quiet']);
    assert.equal(wrongVar.status, 2);
    assert.match(String(wrongVar.stderr), /--actvar-model holds its own VAR/);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});
