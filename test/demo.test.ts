/**
 * `actvar demo` / `runDemo` on tiny models built through the library API (random weights, written in
 * the formats of `actvar train-vae`, `train-var` and `train-classifier`): the JSON line and its
 * fields, the PNGs, pairing of the two modes (full activation reproduces the dense samples), the
 * dense-only mode, and missing or unsuitable inputs (exit 2, nothing written).
 */
import './util/setup.js';
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Rng } from '../src/tensor/rng.js';
import { writeSafetensors } from '../src/io/safetensors.js';
import { VQVAE } from '../src/vqvae/vqvae.js';
import { VAR } from '../src/var/var.js';
import { initVarParams } from '../src/var/init.js';
import { DEFAULT_TOKENIZER_CONFIG, VQVAE_FORMAT } from '../src/train/train-vae.js';
import { VAR_FORMAT, varConfigFor } from '../src/train/train-var.js';
import { loadVar } from '../src/var/load.js';
import { loadVqvae } from '../src/vqvae/load.js';
import { ActVAR } from '../src/actvar/actvar.js';
import { encodeActVarModel } from '../src/actvar/file.js';
import { varParamsHash } from '../src/actvar/hash.js';
import { Classifier, CLASSIFIER_FORMAT } from '../src/eval/classifier.js';
import { decodePng } from '../src/image/png.js';
import { analyticFlops, flopsModelOf } from '../src/actvar/flops.js';
import { runDemo, demoJson, formatDemo, DemoError, DEMO_MODEL_FILES } from '../src/app/demo.js';
import { repoRoot } from './util/fixtures.js';

const cli = path.join(repoRoot, 'dist/src/cli/main.js');

let dir = '';
let models = '';

/** Tiny tokenizer / VAR / classifier in the shipped layout (32×32 grey, patch numbers 1,2,3,4,6,8, 10 classes). */
before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'actvar-demo-'));
  models = path.join(dir, 'models');
  fs.mkdirSync(models);
  const vae = VQVAE.random({ ...DEFAULT_TOKENIZER_CONFIG, ch: 8, chMult: [1, 2, 2], normGroups: 4, Cvae: 8, vocabSize: 32 }, new Rng(1));
  writeSafetensors(path.join(models, DEMO_MODEL_FILES.tokenizer), vae.stateDict(), { format: VQVAE_FORMAT, config: JSON.stringify(vae.config) });
  const cfg = varConfigFor(vae, 10, { depth: 2, width: 32, heads: 2 });
  const model = new VAR(cfg, initVarParams(cfg, new Rng(2)));
  writeSafetensors(path.join(models, DEMO_MODEL_FILES.var), model.stateDict(), { format: VAR_FORMAT, config: JSON.stringify(cfg), dataset: 'fashion-mnist' });
  const clf = Classifier.init({ c1: 4, c2: 8, hidden: 16 }, 3);
  writeSafetensors(path.join(models, DEMO_MODEL_FILES.classifier), clf.params, { format: CLASSIFIER_FORMAT, config: JSON.stringify(clf.config) });
});

after(() => { fs.rmSync(dir, { recursive: true, force: true }); });

function runCli(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cli, 'demo', ...args], { cwd: dir, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const GRID = (n: number): number => n * 32 + (n + 1) * 2; // grid side: n images of 32 px, 2 px padding

test('actvar demo --json: one JSON line with sane fields, and the three PNGs', () => {
  const out = path.join(dir, 'out-cli');
  const r = runCli(['--models', models, '--out-dir', out, '--per-class', '2', '--actvar-calib', '1', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.equal(lines.length, 1, 'stdout holds only the JSON line');
  const j = JSON.parse(lines[0]) as Record<string, number | string | string[]>;
  for (const k of ['dense_s', 'dense_gflops', 'class_accuracy_dense', 'actvar_s', 'actvar_gflops', 'class_accuracy_actvar', 'flops_saving', 'time_saving']) {
    assert.equal(typeof j[k], 'number', `${k} is a number`);
    assert.ok(Number.isFinite(j[k] as number), `${k} is finite`);
  }
  assert.equal(j.images, 20);
  for (const k of ['class_accuracy_dense', 'class_accuracy_actvar']) assert.ok((j[k] as number) >= 0 && (j[k] as number) <= 1, `${k} = ${j[k]}`);
  assert.ok((j.dense_s as number) > 0 && (j.actvar_s as number) > 0);
  assert.ok((j.actvar_gflops as number) > 0 && (j.actvar_gflops as number) < (j.dense_gflops as number), `ActVAR ${j.actvar_gflops} vs dense ${j.dense_gflops} GFLOPs`);
  assert.ok(Math.abs((j.flops_saving as number) - (1 - (j.actvar_gflops as number) / (j.dense_gflops as number))) < 1e-3);
  assert.equal(j.setting, '(75,75;75)');
  // the table went to stderr
  assert.match(r.stderr, /GFLOPs\/img/);
  assert.match(r.stderr, /ActVAR/);
  // PNGs: one row per class, --per-class columns; demo.png = both grids side by side
  assert.deepEqual(fs.readdirSync(out).sort(), ['actvar.png', 'demo.png', 'dense.png']);
  const dense = decodePng(fs.readFileSync(path.join(out, 'dense.png')));
  const act = decodePng(fs.readFileSync(path.join(out, 'actvar.png')));
  const both = decodePng(fs.readFileSync(path.join(out, 'demo.png')));
  assert.deepEqual([dense.width, dense.height], [GRID(2), GRID(10)]);
  assert.deepEqual([act.width, act.height], [GRID(2), GRID(10)]);
  assert.deepEqual([both.width, both.height], [2 * GRID(2) + 12, GRID(10)]);
  // left half of demo.png is dense.png
  for (let y = 0; y < dense.height; y += 7) {
    const row = dense.data.subarray(y * dense.width * 3, (y + 1) * dense.width * 3);
    assert.deepEqual([...both.data.subarray(y * both.width * 3, y * both.width * 3 + row.length)], [...row]);
  }
});

test('runDemo: the modes are paired (full activation reproduces the dense samples) and the FLOPs add up', () => {
  const r = runDemo({ modelsDir: models, outDir: null, perClass: 1, calib: 0, tokenRates: [1, 1], expertRate: 1, seed: 7, batch: 4 });
  assert.equal(r.files.length, 0, 'outDir null writes nothing');
  assert.equal(r.images, 10);
  assert.deepEqual(r.labels, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.equal(r.classes[9], 'Ankle boot');
  const a = r.actvar!;
  assert.ok(a, 'ActVAR ran');
  let maxDiff = 0;
  const D = r.dense.images.f32, A = a.images.f32;
  for (let i = 0; i < D.length; i++) maxDiff = Math.max(maxDiff, Math.abs(D[i] - A[i]));
  assert.ok(maxDiff < 1e-3, `ActVAR at (100,100;100) should reproduce the dense images of the same seeds, max |Δ| = ${maxDiff}`);
  assert.equal(r.pairedAgreement, 1);
  assert.deepEqual([...a.predictions], [...r.dense.predictions]);
  // at full activation ActVAR only adds the selector and router FLOPs
  assert.ok(a.gflops > r.dense.gflops, 'selector + router cost a little');
  assert.ok((a.flopsByCategory.router ?? 0) > 0 && (a.flopsByCategory.selector ?? 0) > 0);
  assert.equal(r.dense.flopsByCategory.router, undefined);
  // transformer GFLOPs exclude the VQVAE (f̂ updates, decoding), which both modes run alike
  assert.ok(r.dense.flopsByCategory.vqvae_decode > 0 && r.dense.flopsByCategory.phi > 0);
  const tf = Object.entries(r.dense.flopsByCategory).filter(([k]) => k !== 'phi' && !k.startsWith('vqvae')).reduce((s, [, v]) => s + v, 0);
  assert.ok(Math.abs(tf / 1e9 - r.dense.gflops) <= 1e-6 * r.dense.gflops, `${tf / 1e9} vs ${r.dense.gflops}`);
  // same seed → same samples; another seed → others
  const again = runDemo({ modelsDir: models, outDir: null, perClass: 1, actvar: false, seed: 7, batch: 4 });
  assert.deepEqual(again.dense.images.f32, r.dense.images.f32);
  const other = runDemo({ modelsDir: models, outDir: null, perClass: 1, actvar: false, seed: 8, batch: 4 });
  assert.notDeepEqual([...other.dense.images.f32], [...r.dense.images.f32]);
  assert.equal(again.actvar, null);
  const j = demoJson(again);
  assert.equal(j.actvar_s, undefined);
  assert.equal(typeof j.class_accuracy_dense, 'number');
  assert.doesNotMatch(formatDemo(again), /ActVAR/);
});

test('runDemo: measured GFLOPs per image equal the analytic count of both modes (KV cache, CFG on, AdaLN once)', () => {
  const r = runDemo({ modelsDir: models, outDir: null, perClass: 1, calib: 1, batch: 6 });
  const a = r.actvar!;
  assert.deepEqual(a.config.tokenRates, [0.75, 0.75]);
  assert.equal(a.config.expertRate, 0.75);
  assert.deepEqual(a.config.scales, [4, 5]);
  assert.match(a.init, /calibrated on 1 dense generation/);
  assert.ok(a.calibSeconds > 0);
  const fm = flopsModelOf(loadVar(path.join(models, DEMO_MODEL_FILES.var)).config);
  const dense = analyticFlops(fm, null, { adalnPerStep: false }).total / 1e9;
  const sparse = analyticFlops(fm, a.config, { adalnPerStep: false }).total / 1e9;
  assert.ok(Math.abs(r.dense.gflops - dense) <= 1e-9 * dense, `dense: measured ${r.dense.gflops}, analytic ${dense}`);
  assert.ok(Math.abs(a.gflops - sparse) <= 1e-9 * sparse, `ActVAR: measured ${a.gflops}, analytic ${sparse}`);
  assert.ok(r.flopsSaving! > 0.05 && r.flopsSaving! < 0.5, `FLOPs saving ${r.flopsSaving}`);
});

test('runDemo --no-actvar writes dense.png and demo.png only', () => {
  const out = path.join(dir, 'out-dense');
  const r = runDemo({ modelsDir: models, outDir: out, perClass: 1, actvar: false });
  assert.deepEqual(fs.readdirSync(out).sort(), ['demo.png', 'dense.png']);
  assert.equal(r.files.length, 2);
  assert.deepEqual(fs.readFileSync(path.join(out, 'demo.png')), fs.readFileSync(path.join(out, 'dense.png')));
});

test('missing models: exit 2, a message naming each file and the command that makes it, nothing written', () => {
  const empty = path.join(dir, 'empty');
  fs.mkdirSync(empty);
  const out = path.join(dir, 'out-missing');
  const r = runCli(['--models', empty, '--out-dir', out]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /^actvar: error: the demo needs the trained models/);
  assert.match(r.stderr, new RegExp(`${DEMO_MODEL_FILES.tokenizer}: missing; make it with \`actvar train-vae`));
  assert.match(r.stderr, new RegExp(`${DEMO_MODEL_FILES.var}: missing; make it with \`actvar train-var --tokenizer`));
  assert.match(r.stderr, /actvar train-classifier/);
  assert.equal(r.stdout, '');
  assert.equal(fs.existsSync(out), false, 'nothing written');
  // only one file missing: only that one is named (the others resolve from --models)
  const r2 = runCli(['--models', models, '--var', path.join(empty, 'nope.safetensors'), '--out-dir', out]);
  assert.equal(r2.code, 2);
  assert.match(r2.stderr, /the var .*nope\.safetensors: missing; make it with `actvar train-var/);
  assert.doesNotMatch(r2.stderr, /train-vae|train-classifier/);
  assert.equal(fs.existsSync(out), false);
});

test('unsuitable inputs are user errors (DemoError) before anything is written', () => {
  const out = path.join(dir, 'out-bad');
  const base = { modelsDir: models, outDir: out, perClass: 1 };
  // a tokenizer where the VAR belongs
  assert.throws(() => runDemo({ ...base, var: path.join(models, DEMO_MODEL_FILES.tokenizer) }), (e: unknown) => e instanceof DemoError && /cannot load the VAR .*not a VAR written by `actvar train-var`/.test(e.message));
  // experts that do not divide the FFN width (128)
  assert.throws(() => runDemo({ ...base, experts: 7 }), (e: unknown) => e instanceof DemoError && /experts \(7\) must divide the FFN hidden width 128/.test(e.message));
  assert.throws(() => runDemo({ ...base, tokenRates: [75, 75] }), /fractions in \(0, 1\]/);
  assert.throws(() => runDemo({ ...base, actvar: false, expertRate: 0.5 }), /--expert-rate has no effect with --no-actvar/);
  assert.throws(() => runDemo({ ...base, actvarWeights: path.join(dir, 'none.safetensors') }), /--actvar-weights .*cannot read the file \(ENOENT\)/);
  assert.throws(() => runDemo({ ...base, perClass: 0 }), /--per-class must be an integer >= 1/);
  fs.writeFileSync(path.join(dir, 'a-file'), 'x');
  assert.throws(() => runDemo({ ...base, outDir: path.join(dir, 'a-file') }), /exists and is not a directory/);
  assert.equal(fs.existsSync(out), false, 'nothing written');
  // a commander parse error exits 2 as well
  const r = runCli(['--models', models, '--per-class', 'x']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /actvar: error: .*--per-class must be an integer in \[1, 100\]/);
});

test('the shipped models (when present): class accuracy >= 70% in both modes, ActVAR saves FLOPs', (t) => {
  const shipped = path.join(repoRoot, 'models');
  if (!Object.values(DEMO_MODEL_FILES).every((f) => fs.existsSync(path.join(shipped, f)))) {
    t.skip('models/ does not hold the three shipped models');
    return;
  }
  const r = runDemo({ modelsDir: shipped, outDir: null, perClass: 3, repeats: 1, batch: 30 });
  assert.equal(r.images, 30);
  assert.equal(r.classes[0], 'T-shirt/top');
  assert.ok(r.dense.classAccuracy >= 0.7, `dense class accuracy ${r.dense.classAccuracy}`);
  assert.ok(r.actvar!.classAccuracy >= 0.7, `ActVAR class accuracy ${r.actvar!.classAccuracy}`);
  assert.ok(r.flopsSaving! > 0.2, `FLOPs saving ${r.flopsSaving}`);
  if (r.distilled) {
    assert.ok(r.distilled.classAccuracy >= 0.7, `distilled class accuracy ${r.distilled.classAccuracy}`);
    assert.ok(r.distilled.gflops < r.dense.gflops);
  }
});

test('runDemo with a distilled ActVAR model: a third mode, KL to dense of both ActVARs on test images, the JSON fields', () => {
  const model = loadVar(path.join(models, DEMO_MODEL_FILES.var));
  const vae = loadVqvae(path.join(models, DEMO_MODEL_FILES.tokenizer));
  const a = ActVAR.wrap(model, {});
  a.calibrate({ vqvae: vae, labels: [1], rng: new Rng(3) });
  const file = path.join(dir, 'distilled.safetensors');
  fs.writeFileSync(file, encodeActVarModel(a, { baseVarSha256: varParamsHash(model) }));
  const out = path.join(dir, 'out-distilled');
  const r = runDemo({ modelsDir: models, outDir: out, perClass: 1, calib: 1, actvarModel: file, klImages: 20, repeats: 1 });
  assert.ok(r.distilled);
  assert.deepEqual(fs.readdirSync(out).sort(), ['actvar.png', 'demo.png', 'dense.png', 'distilled.png']);
  const j = demoJson(r);
  for (const k of ['class_accuracy_distilled', 'class_accuracy_training_free']) assert.equal(typeof j[k], 'number', k);
  if (r.klImages > 0) {
    // the same calibration (1 generation) in both: the same gates on the same VAR, so the same KL
    assert.equal(r.klImages, 20);
    assert.ok((j.kl_to_dense_training_free as number) >= 0);
    assert.equal(typeof j.kl_to_dense_distilled, 'number');
  } else {
    assert.match(r.klNote ?? '', /KL to dense skipped/);
  }
  assert.match(formatDemo(r), /distilled/);
  // a model distilled from another VAR is refused
  const other = new VAR(model.config, initVarParams(model.config, new Rng(77)));
  const b = ActVAR.wrap(other, {}, { allowUntrained: true });
  fs.writeFileSync(file, encodeActVarModel(b, { baseVarSha256: varParamsHash(other) }));
  assert.throws(() => runDemo({ modelsDir: models, outDir: null, perClass: 1, calib: 1, actvarModel: file, klImages: 0 }), /distilled from another VAR/);
});
