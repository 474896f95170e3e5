import './util/setup.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../src/tensor/index.js';
import { Rng } from '../src/tensor/rng.js';
import { randTensor } from './util/gradcheck.js';
import { varConfigForDepth } from '../src/var/config.js';
import { randomVar } from '../src/var/init.js';
import type { VAR } from '../src/var/var.js';
import { VQVAE } from '../src/vqvae/vqvae.js';
import { ActVAR, runTransformer, type ActivationRecord } from '../src/actvar/actvar.js';
import {
  applyBaseline, applyFixedTokens, magnitudeImportance, activationImportance,
} from '../src/actvar/baselines.js';

const PN = [1, 2, 3, 4, 5];

function tinyVar(seed = 11): VAR {
  const cfg = varConfigForDepth(3, { width: 32, heads: 2, mlpHidden: 128, vocabSize: 16, Cvae: 4, numClasses: 5, patchNums: PN });
  return randomVar(cfg, seed, { initAdalnGamma: 1, initStd: 0.2 });
}

function tinyVqvae(): VQVAE {
  return VQVAE.random({ vocabSize: 16, Cvae: 4, ch: 8, chMult: [1, 1], numResBlocks: 1, usingSa: false, usingMidSa: false, normGroups: 4, patchNums: PN }, new Rng(3));
}

function randomInputs(model: VAR, B: number, seed = 5): T.Tensor[] {
  const rng = new Rng(seed);
  return model.config.patchNums.map((pn) => randTensor(rng, [B, pn * pn, model.config.Cvae], false));
}

function randomizeGates(a: ActVAR, seed = 21): void {
  a.allowUntrained = true; // random gates are neither trained nor calibrated
  const rng = new Rng(seed);
  for (const b of a.blocks) {
    for (const t of [b.router.weight, b.router.bias, b.selector.weight, b.selector.bias]) for (let i = 0; i < t.size; i++) t.f32[i] = rng.normal();
  }
}

test('static weight pruning: every token of every block runs the same K_w experts, the most important ones', () => {
  const model = tinyVar();
  const a = ActVAR.wrap(model, { tokenRates: [0.5, 0.5], expertRate: 0.25, experts: 8 });
  randomizeGates(a);
  const info = applyBaseline(a, 'static-weights');
  assert.equal(info.criterion, 'magnitude');
  const recs: ActivationRecord[] = [];
  a.onActivation = (r) => recs.push({ ...r, route: r.route.slice(), selected: r.selected.slice() });
  const { flops } = T.countFlops(() => runTransformer(model, [1, 3], randomInputs(model, 2), a.hooks));
  assert.equal(recs.length, 2 * 3);
  for (const r of recs) {
    assert.equal(r.Kw, 2);
    const imp = magnitudeImportance(a.blocks[r.blockIndex].experts);
    const best = [...imp].map((v, e) => [v, e]).sort((p, q) => q[0] - p[0]).slice(0, 2).map((p) => p[1]);
    assert.deepEqual(info.keptExperts![r.blockIndex], best);
    const n = r.route.length / r.Kw;
    assert.equal(n, r.rows * r.K);
    for (let t = 0; t < n; t++) assert.deepEqual([...r.route.subarray(t * 2, t * 2 + 2)], best, `block ${r.blockIndex} token ${t}`);
  }
  // a static FFN has no router: no router FLOPs, the selector still runs
  assert.equal(flops.byCategory.get('router') ?? 0, 0);
  assert.ok((flops.byCategory.get('selector') ?? 0) > 0);
});

test('static weight pruning: activation importance = mean expert output norm over dense calibration tokens', () => {
  const model = tinyVar(13);
  const vq = tinyVqvae();
  const a = ActVAR.wrap(model, { experts: 4 });
  const imp = activationImportance(a, { vqvae: vq, labels: [0, 2], topK: 4, rng: new Rng(2) });
  assert.equal(imp.length, 3);
  for (const v of imp) { assert.equal(v.length, 4); assert.ok(v.every((x) => x > 0 && Number.isFinite(x))); }
  // it measures the expert's output: an expert whose fc2 columns are zero has importance 0
  const fc2 = model.blocks[1].fc2W, H = fc2.shape[1], de = H / 4;
  for (let c = 0; c < fc2.shape[0]; c++) fc2.f32.fill(0, c * H + 2 * de, c * H + 3 * de);
  const imp2 = activationImportance(a, { vqvae: vq, labels: [0, 2], topK: 4, rng: new Rng(2) });
  assert.equal(imp2[1][2], 0);
  assert.ok([0, 1, 3].every((e) => imp2[1][e] > 0));
  // applyBaseline keeps the K_w = 2 most important experts of every block
  const s = ActVAR.wrap(model, { experts: 4, expertRate: 0.5 });
  const info = applyBaseline(s, 'static-weights', { importance: { vqvae: vq, labels: [0, 2], topK: 4, rng: new Rng(2) } });
  assert.equal(info.criterion, 'activation');
  assert.ok(!info.keptExperts![1].includes(2), 'the zeroed expert was kept');
  info.keptExperts!.forEach((k, i) => {
    const want = [...imp2[i]].map((v, e) => [v, e]).sort((p, q) => q[0] - p[0]).slice(0, 2).map((p) => p[1]);
    assert.deepEqual(k, want, `block ${i}`);
  });
});

test('fixed token pruning: block 0 selects at each activated scale, later blocks reuse exactly that selection', () => {
  const model = tinyVar();
  const inputs = randomInputs(model, 1);
  const dyn = ActVAR.wrap(model, { tokenRates: [0.5, 0.5], expertRate: 0.5, experts: 8 });
  randomizeGates(dyn, 4);
  const dynRecs: ActivationRecord[] = [];
  dyn.onActivation = (r) => dynRecs.push({ ...r, selected: r.selected.slice(), route: r.route.slice() });
  runTransformer(model, [2], inputs, dyn.hooks);
  // the dynamic selector chooses different tokens in different blocks (otherwise the test proves nothing)
  const differ = dynRecs.some((r) => r.blockIndex > 0 && r.selected.some((v, i) => v !== dynRecs.find((q) => q.scaleIndex === r.scaleIndex && q.blockIndex === 0)!.selected[i]));
  assert.ok(differ, 'dynamic selection is the same in every block');

  const fixed = ActVAR.wrap(model, { tokenRates: [0.5, 0.5], expertRate: 0.5, experts: 8 });
  randomizeGates(fixed, 4);
  applyFixedTokens(fixed);
  const recs: ActivationRecord[] = [];
  fixed.onActivation = (r) => recs.push({ ...r, selected: r.selected.slice(), route: r.route.slice() });
  const { flops } = T.countFlops(() => runTransformer(model, [2], inputs, fixed.hooks));
  assert.equal(recs.length, 6);
  for (const r of recs) {
    const first = recs.find((q) => q.scaleIndex === r.scaleIndex && q.blockIndex === 0)!;
    assert.deepEqual([...r.selected], [...first.selected], `scale ${r.scaleIndex} block ${r.blockIndex} reuses block 0`);
    // and block 0's choice is the one the dynamic model's block 0 makes (same gate, same input)
    const d0 = dynRecs.find((q) => q.scaleIndex === r.scaleIndex && q.blockIndex === 0)!;
    assert.deepEqual([...first.selected], [...d0.selected]);
  }
  // the two scales have different token counts: block 0 selected again at the second scale
  assert.notEqual(recs[0].K, recs[3].K);
  // only block 0 computes gates: 1/3 of the dynamic model's selector FLOPs
  const dynFlops = T.countFlops(() => runTransformer(model, [2], inputs, dyn.hooks)).flops;
  assert.equal(flops.byCategory.get('selector')! * 3, dynFlops.byCategory.get('selector')!);
});

test('fixed token pruning: a later block without block 0\'s selection is refused', () => {
  const model = tinyVar();
  const a = ActVAR.wrap(model, {});
  applyFixedTokens(a);
  assert.throws(() => a.selectTokens(1, 3, T.zeros([2, 16, 32]), 12), /block 1 found no selection of block 0 at scale 3/);
});

test('baselines generate end to end and differ from ActVAR', () => {
  const model = tinyVar(13);
  const vq = tinyVqvae();
  const gen = (a: ActVAR): number[] => [...a.generate({ labels: [0, 3], vqvae: vq, cfg: 1.5, topK: 4, rng: [new Rng(1), new Rng(2)], decode: false }).idxBL.i32];
  const base = ActVAR.wrap(model, { tokenRates: [0.5, 0.5], expertRate: 0.5, experts: 8 });
  randomizeGates(base, 6);
  const ref = gen(base);
  for (const name of ['static-weights', 'fixed-tokens'] as const) {
    const a = ActVAR.wrap(model, { tokenRates: [0.5, 0.5], expertRate: 0.5, experts: 8 });
    randomizeGates(a, 6);
    applyBaseline(a, name);
    const out = gen(a);
    assert.equal(out.length, ref.length);
    assert.notDeepEqual(out, ref, `${name} generated exactly what ActVAR did`);
  }
});

test('fixed token pruning: the reused selection is the one of the same scale, in any block order (teacher-forced: block 0 runs every scale first)', () => {
  const model = tinyVar();
  const a = ActVAR.wrap(model, {});
  randomizeGates(a, 3);
  applyFixedTokens(a);
  const rng = new Rng(9);
  const xa = randTensor(rng, [2, 16, 32], false), xb = randTensor(rng, [2, 25, 32], false);
  const ia = a.selectTokens(0, 3, xa, 12), ib = a.selectTokens(0, 4, xb, 19);
  assert.deepEqual([...ia], [...a.blocks[0].selector.selectRaw(xa, 12, 1e-6).index], 'block 0 uses its gate');
  // block 2 sees other inputs at both scales, and still gets block 0's choice of each scale
  assert.deepEqual([...a.selectTokens(2, 3, randTensor(rng, [2, 16, 32], false), 12)], [...ia]);
  assert.deepEqual([...a.selectTokens(2, 4, randTensor(rng, [2, 25, 32], false), 19)], [...ib]);
});

test('baselines in the teacher-forced forward (the stage-2 recipe): same logits as KV-cache inference, block 0\'s tokens reused, one expert set', () => {
  const model = tinyVar();
  const labels = [1, 4];
  const inputs = randomInputs(model, labels.length);
  const x = T.concat(inputs.slice(1), 1);
  for (const name of ['fixed-tokens', 'static-weights'] as const) {
    const a = ActVAR.wrap(model, { tokenRates: [0.5, 0.4], expertRate: 0.5, experts: 8 });
    randomizeGates(a, 4);
    const info = applyBaseline(a, name);
    const infer = runTransformer(model, labels, inputs, a.hooks, false);
    const recs: { blockIndex: number; scales: { scaleIndex: number; selected: Int32Array; route: Int32Array; Kw: number }[] }[] = [];
    const tf = T.noGrad(() => a.forward(labels, x, { record: (r) => recs.push(r) }));
    for (let si = 0; si < model.numScales; si++) {
      const [bg, ed] = model.beginEnds[si];
      const t = T.slice(tf, 1, bg, ed).f32, inf = infer[si].f32;
      let d = 0;
      for (let i = 0; i < t.length; i++) d = Math.max(d, Math.abs(t[i] - inf[i]));
      assert.ok(d < 2e-4, `${name} scale ${si}: teacher vs inference ${d}`);
    }
    assert.equal(recs.length, 3);
    for (const r of recs) {
      for (const s of r.scales) {
        const first = recs[0].scales.find((q) => q.scaleIndex === s.scaleIndex)!;
        if (name === 'fixed-tokens') assert.deepEqual([...s.selected], [...first.selected], `block ${r.blockIndex} scale ${s.scaleIndex}`);
        if (name === 'static-weights') {
          const kept = info.keptExperts![r.blockIndex];
          for (let t = 0; t < s.route.length / s.Kw; t++) assert.deepEqual([...s.route.subarray(t * s.Kw, (t + 1) * s.Kw)], kept);
        }
      }
    }
  }
});
