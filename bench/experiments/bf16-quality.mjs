#!/usr/bin/env node
/**
 * Experiment: the quality cost of bf16 weights on the shipped Fashion-MNIST VAR (models/), at the demo's sampling
 * settings (CFG 1.5, no top-k / top-p, docs: src/app/demo.ts DEMO_DEFAULTS): the same images (labels, per-image
 * seeds imageSeed(seed, i)) generated with fp32 and with bf16 weights. Reports per seed: token agreement (all tokens,
 * and per scale), images whose tokens are all equal, the shipped classifier's class accuracy for both, and how often
 * it predicts the same class for the paired images.
 *
 *   node bench/experiments/bf16-quality.mjs [perClass=100] [seeds=0,1,2]
 */
import { useNodeBackend, announceBackend } from '../../dist/src/backend/node.js';
import { Rng, noGrad } from '../../dist/src/tensor/index.js';
import { loadVar } from '../../dist/src/var/load.js';
import { imageSeed } from '../../dist/src/var/sample.js';
import { toUnitRange } from '../../dist/src/var/var.js';
import { loadVqvae } from '../../dist/src/vqvae/load.js';
import { loadClassifier, predictBatched } from '../../dist/src/eval/classifier.js';
import { concat } from '../../dist/src/tensor/index.js';

useNodeBackend();
announceBackend();
const perClass = Number(process.argv[2] ?? 100), seeds = (process.argv[3] ?? '0,1,2').split(',').map(Number);
const cfg = 1.5, topK = 0, topP = 0, batch = 50;
const models = {
  fp32: loadVar('models/var-fashion-mnist.safetensors'),
  bf16: loadVar('models/var-fashion-mnist.safetensors', {}, { weightsDtype: 'bf16' }),
};
const vqvae = loadVqvae('models/tokenizer-fashion-mnist.safetensors', { patchNums: models.fp32.config.patchNums });
const clf = loadClassifier('models/classifier-fashion-mnist.safetensors');
const nc = models.fp32.config.numClasses, N = nc * perClass, L = models.fp32.L, be = models.fp32.beginEnds;
const labels = Array.from({ length: N }, (_, i) => Math.floor(i / perClass));

function run(model, seed) {
  const tokens = new Int32Array(N * L), imgs = [];
  const t0 = performance.now();
  for (let first = 0; first < N; first += batch) {
    const lab = labels.slice(first, first + batch);
    const r = noGrad(() => model.autoregressiveInfer({ labels: lab, vqvae, cfg, topK, topP, decode: false,
      rng: lab.map((_, j) => new Rng(imageSeed(seed, first + j))) }));
    tokens.set(r.idxBL.i32, first * L);
    imgs.push(toUnitRange(vqvae.fhatToImg(r.fHat)));
  }
  const seconds = (performance.now() - t0) / 1e3;
  const pred = predictBatched(clf, concat(imgs, 0));
  let hits = 0;
  for (let i = 0; i < N; i++) if (pred[i] === labels[i]) hits++;
  return { tokens, pred, acc: hits / N, seconds };
}

const rows = [];
for (const seed of seeds) {
  const a = run(models.fp32, seed), b = run(models.bf16, seed);
  let same = 0, sameImg = 0, samePred = 0;
  const perScale = be.map(() => 0);
  for (let i = 0; i < N; i++) {
    let all = true;
    for (let t = 0; t < L; t++) {
      const eq = a.tokens[i * L + t] === b.tokens[i * L + t];
      if (eq) same++; else all = false;
      if (eq) perScale[be.findIndex(([s, e]) => t >= s && t < e)]++;
    }
    if (all) sameImg++;
    if (a.pred[i] === b.pred[i]) samePred++;
  }
  const row = {
    seed, images: N, token_agreement: same / (N * L), per_scale: perScale.map((c, s) => +(c / (N * (be[s][1] - be[s][0]))).toFixed(4)),
    identical_images: sameImg / N, class_acc_fp32: a.acc, class_acc_bf16: b.acc, same_prediction: samePred / N,
    seconds_fp32: +a.seconds.toFixed(2), seconds_bf16: +b.seconds.toFixed(2),
  };
  rows.push(row);
  console.log(JSON.stringify(row));
}
const mean = (k) => rows.reduce((s, r) => s + r[k], 0) / rows.length;
const std = (k) => { const m = mean(k); return Math.sqrt(rows.reduce((s, r) => s + (r[k] - m) ** 2, 0) / Math.max(1, rows.length - 1)); };
for (const k of ['token_agreement', 'identical_images', 'class_acc_fp32', 'class_acc_bf16', 'same_prediction']) {
  console.log(`${k}: ${mean(k).toFixed(4)} ± ${std(k).toFixed(4)} (mean ± std over seeds ${seeds.join(',')})`);
}
