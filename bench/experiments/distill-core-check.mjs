// Experiment (docs/ACTVAR.md "Training (distillation)", issue #12): a short two-stage distillation with the
// library core only (src/actvar/distill.ts, no trainer), on the shipped Fashion-MNIST VAR at (75,75;75): the
// calibrated training-free ActVAR (20 dense generations), then S1 stage-1 steps and S2 stage-2 steps of batch B
// on the first 1,024 training images, AdamW (0.9, 0.95), wd 0.05, lr LR (stage 2: LR/10); validation
// (validateDistill) on training images 1,024–1,151 (held out from the steps). Run after `npm run build`:
//   (from the repo root) node bench/experiments/distill-core-check.mjs [S1=20] [B=16] [LR=1e-3] [S2=20] [kvPolicy=kept] [α,β,γ rates=0.75,0.75,0.75]
import { useNodeBackend } from '../../dist/src/backend/node.js';
import { loadVar } from '../../dist/src/var/load.js';
import { loadVqvae } from '../../dist/src/vqvae/load.js';
import { loadDataset } from '../../dist/src/data/datasets.js';
import { tokenizeDataset } from '../../dist/src/train/train-var.js';
import { ActVAR } from '../../dist/src/actvar/actvar.js';
import { distillLoss, trainableParameters, cloneVar, validateDistill } from '../../dist/src/actvar/distill.js';
import { Tensor, Rng } from '../../dist/src/tensor/index.js';
import { AdamW } from '../../dist/src/optim/adamw.js';
useNodeBackend();
const [steps, B, lr, stage2steps, kv, rates] = [Number(process.argv[2] ?? 40), Number(process.argv[3] ?? 16), Number(process.argv[4] ?? 1e-3), Number(process.argv[5] ?? 0), process.argv[6] ?? 'kept', (process.argv[7] ?? '0.75,0.75,0.75').split(',').map(Number)];
const teacher = loadVar('models/var-fashion-mnist.safetensors');
const vae = loadVqvae('models/tokenizer-fashion-mnist.safetensors');
const ds = loadDataset('fashion-mnist', 'train', { limit: 1152 });
const tok = tokenizeDataset(vae, ds);
const pns = teacher.config.patchNums, L = teacher.L;
const batchOf = (ids) => {
  const idxBl = []; let off = 0;
  for (const pn of pns) { const l = pn * pn, d = new Int32Array(ids.length * l); ids.forEach((i, b) => d.set(tok.subarray(i * L + off, i * L + off + l), b * l)); idxBl.push(new Tensor(d, [ids.length, l])); off += l; }
  return { idxBl, labels: ids.map((i) => ds.labels[i]) };
};
const held = []; for (let i = 1024; i < 1152; i += 32) held.push(batchOf(Array.from({ length: 32 }, (_, k) => i + k)));
const cfg = { tokenRates: rates.slice(0, 2), expertRate: rates[2], kvPolicy: kv };
const fmt = (v) => JSON.stringify(Object.fromEntries(Object.entries(v).map(([k, x]) => [k, Math.round(x * 1e4) / 1e4])));
const student = ActVAR.wrap(cloneVar(teacher), cfg);
student.calibrate({ vqvae: vae, labels: Array.from({ length: 20 }, (_, i) => i % 10), rng: new Rng(0) });
console.log('training-free (calibrated 20):', fmt(validateDistill(student, teacher, vae, held)));
const rng = new Rng(1);
const run = (stage, n) => {
  const params = trainableParameters(student, stage);
  const opt = new AdamW([...params.values()], { lr: stage === 2 ? lr / 10 : lr, betas: [0.9, 0.95], weightDecay: 0.05 });
  const t0 = performance.now();
  for (let s = 0; s < n; s++) {
    const ids = Array.from({ length: B }, () => rng.int(1024));
    const r = distillLoss(stage, student, teacher, vae, batchOf(ids), { training: true, rng });
    for (const p of params.values()) p.grad = null;
    r.loss.backward(); opt.step(); student.model.invalidateCaches();
    if (s % 10 === 9 || s === n - 1) console.log(`stage ${stage} step ${s + 1}`, fmt(r.parts), ((performance.now() - t0) / 1e3).toFixed(0), 's');
  }
  console.log(`after stage ${stage}:`, fmt(validateDistill(student, teacher, vae, held)));
};
run(1, steps);
if (stage2steps) run(2, stage2steps);
