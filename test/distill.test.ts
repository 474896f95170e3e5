/**
 * ActVAR training side (src/actvar/teacher.ts, src/actvar/distill.ts, the new tensor ops): the
 * teacher-forced sparse forward equals KV-cache inference (both KV policies, CFG off and on), finite-
 * difference gradients of the new ops, losses and the sparse forward, the straight-through path of
 * L_cls to router and selector, pseudo-labels against a direct computation, which parameters each
 * stage changes (bitwise), and that a few stage-1 steps lower the distillation loss. Tiny random models.
 */
import './util/setup.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../src/tensor/index.js';
import { Rng } from '../src/tensor/rng.js';
import { gradcheck, randTensor } from './util/gradcheck.js';
import { varConfigForDepth } from '../src/var/config.js';
import { randomVar } from '../src/var/init.js';
import type { VAR } from '../src/var/var.js';
import { ActVAR, runTransformer } from '../src/actvar/actvar.js';
import { ActVarConfigError, resolveActVarConfig, configToMetadata, configFromMetadata, type KvPolicy } from '../src/actvar/config.js';
import { analyticFlops } from '../src/actvar/flops.js';
import { ExpertFFN } from '../src/actvar/experts.js';
import {
  distillLoss, trainableParameters, validateDistill, cloneVar, topkTargetLogits, expertDistances, tokenChange,
  loadBalanceLoss, type DistillBatch,
} from '../src/actvar/distill.js';
import type { BlockRecord } from '../src/actvar/teacher.js';
import { AdamW } from '../src/optim/adamw.js';
import { VQVAE } from '../src/vqvae/vqvae.js';

const TINY_PN = [1, 2, 3, 4, 5];

function tinyVar(seed = 11): VAR {
  const cfg = varConfigForDepth(3, { width: 32, heads: 2, mlpHidden: 128, vocabSize: 16, Cvae: 4, numClasses: 5, patchNums: TINY_PN, condDropRate: 0 });
  return randomVar(cfg, seed, { initAdalnGamma: 1, initStd: 0.2 });
}

function tinyVqvae(): VQVAE {
  return VQVAE.random({ vocabSize: 16, Cvae: 4, ch: 8, chMult: [1, 1], numResBlocks: 1, usingSa: false, usingMidSa: false, normGroups: 4, patchNums: TINY_PN }, new Rng(3));
}

function randomizeGates(a: ActVAR, seed = 21): void {
  a.allowUntrained = true; // random gates are neither trained nor calibrated (wrap refuses to generate otherwise)
  const rng = new Rng(seed);
  for (const b of a.blocks) {
    for (const t of [b.router.weight, b.router.bias, b.selector.weight, b.selector.bias]) for (let i = 0; i < t.size; i++) t.f32[i] = rng.normal();
  }
}

/** Random per-scale VQ features (index 0 unused) and the teacher-forcing input they make [B, L−1, Cvae]. */
function randomInputs(model: VAR, B: number, seed = 5): { inputs: T.Tensor[]; x: T.Tensor } {
  const rng = new Rng(seed);
  const inputs = model.config.patchNums.map((pn) => randTensor(rng, [B, pn * pn, model.config.Cvae], false));
  return { inputs, x: T.concat(inputs.slice(1), 1) };
}

function randomBatch(model: VAR, B: number, seed: number): DistillBatch {
  const rng = new Rng(seed), V = model.config.vocabSize;
  const idxBl = model.config.patchNums.map((pn) => new T.Tensor(Int32Array.from({ length: B * pn * pn }, () => rng.int(V)), [B, pn * pn]));
  return { idxBl, labels: Array.from({ length: B }, () => rng.int(model.config.numClasses)) };
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

// ---------------------------------------------------------------------------------------------
// the teacher-forced sparse forward = KV-cache inference

for (const kvPolicy of ['kept', 'all'] as KvPolicy[]) {
  for (const scales of [[3, 4], [2, 4]]) {
    test(`teacher-forced ActVAR logits = KV-cache inference logits at every scale (kv ${kvPolicy}, scales ${scales}, CFG off and on)`, () => {
      const model = tinyVar();
      const a = ActVAR.wrap(model, { scales, tokenRates: [0.5, 0.4], expertRate: 0.5, experts: 8, kvPolicy });
      randomizeGates(a, 4);
      const labels = [1, 4];
      const { inputs, x } = randomInputs(model, labels.length);
      for (const cfg of [false, true]) {
        const rowLabels = cfg ? [...labels, ...labels.map(() => model.config.numClasses)] : labels;
        const xr = cfg ? T.repeat0(x, 2) : x;
        const infer = runTransformer(model, labels, inputs, a.hooks, cfg);
        const tf = T.noGrad(() => a.forward(rowLabels, xr));
        const viaHook = T.noGrad(() => model.forward(rowLabels, xr, { blockExecutor: a.blockExecutor }));
        assert.equal(maxAbsDiff(tf.f32, viaHook.f32), 0, 'ActVAR.forward and VAR.forward with the hook differ');
        const dense = T.noGrad(() => model.forward(rowLabels, xr));
        let sparseDiff = 0;
        for (let si = 0; si < model.numScales; si++) {
          const [bg, ed] = model.beginEnds[si];
          const t = T.slice(tf, 1, bg, ed);
          const d = maxAbsDiff(infer[si].f32, t.f32);
          assert.ok(d < 2e-4, `cfg ${cfg} scale ${si}: max |Δlogit| teacher vs inference = ${d}`);
          sparseDiff = Math.max(sparseDiff, maxAbsDiff(T.slice(dense, 1, bg, ed).f32, t.f32));
          if (si < Math.min(...scales)) assert.ok(maxAbsDiff(T.slice(dense, 1, bg, ed).f32, t.f32) < 2e-4, `scale ${si} before the activated ones must be dense`);
        }
        assert.ok(sparseDiff > 1e-2, `the sparse forward must differ from the dense one (max ${sparseDiff})`);
      }
    });
  }
}

test('kv policy: resolved, validated, stored in the metadata; the FLOPs counter equals the analytic count for both', () => {
  const shape = { numScales: 5, ffnHidden: 128 };
  assert.equal(resolveActVarConfig({}, shape).kvPolicy, 'kept');
  assert.equal(resolveActVarConfig({ kvPolicy: 'all' }, shape).kvPolicy, 'all');
  assert.throws(() => resolveActVarConfig({ kvPolicy: 'some' as KvPolicy }, shape), /kv policy must be 'kept' or 'all'/);
  assert.equal(configFromMetadata(configToMetadata(resolveActVarConfig({ kvPolicy: 'all' }, shape)))!.kvPolicy, 'all');
  const model = tinyVar();
  const fm = { depth: 3, width: 32, ffnHidden: 128, vocab: 16, cvae: 4, patchNums: TINY_PN };
  const { inputs } = randomInputs(model, 1);
  const totals: Record<string, number> = {};
  for (const kvPolicy of ['kept', 'all'] as KvPolicy[]) {
    const a = ActVAR.wrap(model, { tokenRates: [0.75, 0.5], expertRate: 0.75, experts: 16, kvPolicy }, { allowUntrained: true });
    randomizeGates(a);
    const real = T.countFlops(() => runTransformer(model, [3], inputs, a.hooks)).flops.toJSON();
    const dry = T.countFlops(() => T.dryRun(() => runTransformer(model, [3], inputs, a.hooks))).flops.toJSON();
    assert.deepEqual(dry, real, `${kvPolicy}: dry-run and real counts differ`);
    const an = analyticFlops(fm, a.config, { adalnPerStep: false });
    for (const [k, v] of Object.entries(an)) if (k !== 'total') assert.equal(real[k] ?? 0, v, `${kvPolicy} ${k}: counted ${real[k]} vs analytic ${v}`);
    totals[kvPolicy] = an.total;
  }
  assert.ok(totals.all > totals.kept, 'keeping every token\'s K/V costs more');
});

// ---------------------------------------------------------------------------------------------
// gradients

test('expertFFNWeighted: equals the unweighted expert FFN at weights 1; gradients (x, weights, g) match finite differences', () => {
  const rng = new Rng(2);
  const C = 6, H = 12, N = 4, K = 2, n = 5;
  const w1 = randTensor(rng, [H, C]), b1 = randTensor(rng, [H]), w2 = randTensor(rng, [C, H]), b2 = randTensor(rng, [C]);
  const x = randTensor(rng, [n, C]);
  const route = Int32Array.from({ length: n * K }, (_, i) => (Math.floor(i / K) + (i % K) * 2) % N);
  const ones = new T.Tensor(new Float32Array(n * K).fill(1), [n, K]);
  const ref = T.noGrad(() => T.expertFFN(x, w1, b1, w2, b2, route, K, N));
  const got = T.noGrad(() => T.expertFFNWeighted(x, w1, b1, w2, b2, route, K, N, ones));
  assert.ok(maxAbsDiff(ref.f32, got.f32) < 1e-5);
  const g = randTensor(rng, [n, K]);
  gradcheck((...t) => T.expertFFNWeighted(t[0], t[1], t[2], t[3], t[4], route, K, N, t[5]), [x, w1, b1, w2, b2, g], { eps: 1e-2, tol: 2e-2 });
});

test('klDivergenceReverse: value = Σ p_s log(p_s/p_t); gradient matches finite differences', () => {
  const rng = new Rng(4);
  const s = randTensor(rng, [3, 5]), t = randTensor(rng, [3, 5], false);
  const v = T.noGrad(() => T.klDivergenceReverse(s, t)).f32[0];
  const ps = T.softmax(s.detach(), -1).f32, pt = T.softmax(t, -1).f32;
  let ref = 0;
  for (let i = 0; i < ps.length; i++) ref += ps[i] * Math.log(ps[i] / pt[i]);
  assert.ok(Math.abs(v - ref / 3) < 1e-6, `${v} vs ${ref / 3}`);
  gradcheck((a) => T.klDivergenceReverse(a, t), [s], { eps: 1e-3 });
});

test('load balancing: 1 when balanced, larger when concentrated; gradient matches finite differences', () => {
  const even = new T.Tensor(new Float32Array(4 * 4), [4, 4]);
  const chosenEven = Int32Array.from([0, 1, 2, 3, 0, 1, 2, 3]); // rows × K = 4 × 2
  assert.ok(Math.abs(T.noGrad(() => loadBalanceLoss(even, chosenEven, 2)).f32[0] - 1) < 1e-6);
  const peaked = new T.Tensor(Float32Array.from({ length: 16 }, (_, i) => (i % 4 === 0 ? 5 : 0)), [4, 4]);
  const chosen0 = Int32Array.from([0, 1, 0, 1, 0, 1, 0, 1]);
  assert.ok(T.noGrad(() => loadBalanceLoss(peaked, chosen0, 2)).f32[0] > 1.5);
  const rng = new Rng(8);
  gradcheck((l) => loadBalanceLoss(l, chosen0, 2), [randTensor(rng, [4, 4])], { eps: 1e-3 });
});

test('the straight-through path: p/stopgrad(p) is 1 in the forward pass; its gradient is that of p/p₀ with p₀ frozen (finite differences)', () => {
  // router side: expert outputs weighted by the chosen experts' p_w; selector side: kept updates by p_t
  const rng = new Rng(6);
  const C = 4, H = 8, N = 4, K = 2, n = 3;
  const w1 = randTensor(rng, [H, C], false), b1 = randTensor(rng, [H], false), w2 = randTensor(rng, [C, H], false), b2 = randTensor(rng, [C], false);
  const x = randTensor(rng, [n, C], false);
  const logits = randTensor(rng, [n, N]);
  const route = Int32Array.from([0, 2, 1, 3, 3, 0]);
  const flatIdx = T.intTensor(Array.from(route, (e, i) => Math.floor(i / K) * N + e));
  const pick = (l: T.Tensor): T.Tensor => T.reshape(T.gatherRows(T.reshape(T.softmax(l, -1), [n * N, 1]), flatIdx), [n, K]);
  const p0 = T.noGrad(() => pick(logits)).f32.slice();
  const frozen = (l: T.Tensor): T.Tensor => T.expertFFNWeighted(x, w1, b1, w2, b2, route, K, N, T.div(pick(l), new T.Tensor(p0, [n, K])));
  const st = (l: T.Tensor): T.Tensor => { const p = pick(l); return T.expertFFNWeighted(x, w1, b1, w2, b2, route, K, N, T.div(p, p.detach())); };
  const y0 = T.noGrad(() => T.expertFFN(x, w1, b1, w2, b2, route, K, N));
  assert.ok(maxAbsDiff(T.noGrad(() => st(logits)).f32, y0.f32) < 1e-6, 'the straight-through factor changes the forward pass');
  gradcheck(frozen, [logits], { eps: 1e-3 });
  const w = randTensor(new Rng(1), [n, C], false);
  const gA = (f: (l: T.Tensor) => T.Tensor): Float32Array => { logits.grad = null; T.sum(T.mul(f(logits), w)).backward(); return logits.grad!.f32.slice(); };
  assert.ok(maxAbsDiff(gA(st), gA(frozen)) < 1e-6, 'straight-through gradient differs from the frozen-denominator gradient');
});

for (const kvPolicy of ['kept', 'all'] as KvPolicy[]) {
  test(`gradients of the sparse teacher-forced forward (gather, compact attention, experts, scatter; kv ${kvPolicy}) match finite differences`, () => {
    const model = tinyVar(3);
    const a = ActVAR.wrap(model, { tokenRates: [0.5, 0.4], expertRate: 0.5, experts: 4, kvPolicy });
    randomizeGates(a, 9);
    const { x } = randomInputs(model, 2, 7);
    const b0 = model.blocks[2], b1 = model.blocks[1];
    const params = [b0.fc1W, b1.qkvW, b1.projW];
    model.setRequiresGrad(false);
    for (const p of params) p.requiresGrad = true;
    const xin = new T.Tensor(x.f32.slice(), x.shape, true);
    // small steps: the selection (a hard top-k) must not flip between the two evaluations
    gradcheck((xi) => a.forward([0, 3], xi), [xin, ...params], { eps: 1e-3, tol: 3e-2, maxChecks: 6, seed: 5 });
    model.setRequiresGrad(false);
  });
}

test('L_cls reaches every router and selector through the straight-through factors; the forward pass is unchanged', () => {
  const model = tinyVar();
  const a = ActVAR.wrap(model, { tokenRates: [0.5, 0.5], expertRate: 0.5, experts: 4 });
  randomizeGates(a, 2);
  const { x } = randomInputs(model, 2, 3);
  const plain = T.noGrad(() => a.forward([1, 2], x));
  model.setRequiresGrad(false);
  const gates = [...trainableParameters(a, 1).values()];
  for (const g of gates) { g.requiresGrad = true; g.grad = null; }
  const st = a.forward([1, 2], x, { straightThrough: true });
  assert.ok(maxAbsDiff(st.f32, plain.f32) < 1e-5);
  const gt = new T.Tensor(Int32Array.from({ length: 2 * model.L }, (_, i) => i % 16), [2 * model.L]);
  T.crossEntropy(T.reshape(st, [2 * model.L, 16]), gt).backward();
  for (const [k, g] of trainableParameters(a, 1)) {
    if (k.endsWith('selector.bias')) continue; // softmax over a row ignores a shared bias
    assert.ok(g.grad && g.grad.f32.some((v) => v !== 0), `${k} got no gradient from L_cls`);
  }
  // without straight-through (and with the VAR frozen) the loss does not depend on them at all
  assert.equal(a.forward([1, 2], x).requiresGrad, false);
  for (const g of gates) { g.requiresGrad = false; g.grad = null; }
});

// ---------------------------------------------------------------------------------------------
// pseudo-labels

test('pseudo-label targets: softmax over the standardised top-k, smoothed (hand-computed example)', () => {
  const scores = Float32Array.from([1, 3, 2, 0]); // mean 1.5, std √1.25
  const lg = topkTargetLogits(scores, 1, 4, 2, 1, 0.1);
  const sd = Math.sqrt(1.25), z1 = (3 - 1.5) / sd, z2 = (2 - 1.5) / sd;
  const a1 = Math.exp(z1) / (Math.exp(z1) + Math.exp(z2)), a2 = 1 - a1;
  const want = [0.1 / 4, 0.9 * a1 + 0.1 / 4, 0.9 * a2 + 0.1 / 4, 0.1 / 4];
  want.forEach((w, i) => assert.ok(Math.abs(Math.exp(lg[i]) - w) < 1e-6, `entry ${i}: ${Math.exp(lg[i])} vs ${w}`));
  // all-equal scores: uniform over the first K
  const eq = topkTargetLogits(new Float32Array(4), 1, 4, 2, 1, 0);
  assert.deepEqual(Array.from(eq, (v) => Math.round(Math.exp(v) * 1e6) / 1e6), [0.5, 0.5, 0, 0]);
});

test('pseudo-label distances equal a direct computation: expert MSE to the dense FFN, token change through the dense block', () => {
  const model = tinyVar();
  const a = ActVAR.wrap(model, { tokenRates: [0.5, 0.5], expertRate: 0.5, experts: 4 });
  randomizeGates(a, 5);
  const rng = new Rng(9);
  // router: d_e = mean_c (e_e(h) + b₂ − F(h))², each expert run alone
  const ffn: ExpertFFN = a.blocks[1].experts;
  const h = randTensor(rng, [3, 32], false);
  const d = expertDistances(ffn, h.f32, 3);
  const F = T.noGrad(() => ffn.forwardAll(h)).f32;
  for (let e = 0; e < 4; e++) {
    const ye = T.noGrad(() => ffn.forward(h, Int32Array.from([e, e, e]), 1)).f32;
    for (let t = 0; t < 3; t++) {
      let s = 0;
      for (let c = 0; c < 32; c++) s += (ye[t * 32 + c] - F[t * 32 + c]) ** 2;
      assert.ok(Math.abs(d[t * 4 + e] - s / 32) < 1e-4 * Math.max(1, s / 32), `token ${t} expert ${e}: ${d[t * 4 + e]} vs ${s / 32}`);
    }
  }
  // selector: block 0's input is the same in the dense and the sparse forward, so the dense forward's
  // own block-0 change is the label of the first sparse block
  const { x } = randomInputs(model, 2, 3);
  const records: BlockRecord[] = [];
  T.noGrad(() => a.forward([1, 2], x, { record: (r) => records.push(r) }));
  let dIn: T.Tensor | null = null, dOut: T.Tensor | null = null;
  T.noGrad(() => model.forward([1, 2], x, { afterBlock: (ctx, out) => { if (ctx.blockIndex === 0) { dIn = ctx.x; dOut = out; } } }));
  const r0 = records[0];
  assert.equal(r0.blockIndex, 0);
  assert.equal(maxAbsDiff(r0.input.f32, dIn!.f32), 0);
  for (const s of r0.scales) {
    const dt = tokenChange(r0.input, dOut!, s.range);
    const [bg] = s.range, C = 32;
    for (let b = 0; b < 2; b++) for (let i = 0; i < s.l; i++) {
      let q = 0;
      for (let c = 0; c < C; c++) q += (dOut!.f32[(b * model.L + bg + i) * C + c] - dIn!.f32[(b * model.L + bg + i) * C + c]) ** 2;
      assert.ok(Math.abs(dt[b * s.l + i] - Math.sqrt(q)) < 1e-5);
    }
  }
});

// ---------------------------------------------------------------------------------------------
// the stages

function snapshot(m: Map<string, T.Tensor>): Map<string, Float32Array> {
  return new Map([...m].map(([k, t]) => [k, t.f32.slice()]));
}
function changed(before: Map<string, Float32Array>, now: Map<string, T.Tensor>): string[] {
  return [...before].filter(([k, v]) => { const t = now.get(k)!.f32; return v.some((x, i) => !Object.is(x, t[i])); }).map(([k]) => k);
}

test('stage 1 changes only routers and selectors, stage 2 never changes them (bitwise, after an AdamW step)', () => {
  const teacher = tinyVar();
  const student = ActVAR.wrap(cloneVar(teacher), { tokenRates: [0.5, 0.5], expertRate: 0.5, experts: 4 });
  randomizeGates(student, 3);
  const vae = tinyVqvae();
  const batch = randomBatch(teacher, 2, 1);
  const gates = new Map([...student.parameters()].filter(([k]) => !k.endsWith('perm')));
  const teacherBefore = snapshot(teacher.params);
  for (const stage of [1, 2] as const) {
    const varBefore = snapshot(student.model.params), gatesBefore = snapshot(gates);
    const params = trainableParameters(student, stage);
    const r = distillLoss(stage, student, teacher, vae, batch, { training: true, rng: new Rng(1) });
    assert.ok(Number.isFinite(r.parts.total) && r.tokens === 2 * teacher.L);
    const opt = new AdamW([...params.values()], { lr: 1e-2, betas: [0.9, 0.95], weightDecay: 0.05 });
    for (const p of params.values()) p.grad = null;
    r.loss.backward();
    opt.step();
    student.model.invalidateCaches();
    const varChanged = changed(varBefore, student.model.params), gatesChanged = changed(gatesBefore, gates);
    if (stage === 1) {
      assert.deepEqual(varChanged, [], 'stage 1 changed VAR weights');
      for (const k of gates.keys()) if (!k.endsWith('selector.bias')) assert.ok(gatesChanged.includes(k), `stage 1 did not change ${k}`);
    } else {
      assert.deepEqual(gatesChanged, [], 'stage 2 changed routers/selectors');
      assert.ok(varChanged.includes('blocks.2.ffn.fc1.weight') && varChanged.includes('head.weight') && varChanged.includes('blocks.0.attn.mat_qkv.weight'), `stage 2 changed ${varChanged.join(', ')}`);
    }
  }
  assert.deepEqual(changed(teacherBefore, teacher.params), [], 'the teacher changed');
  // stage 2 parts
  const r2 = distillLoss(2, student, teacher, vae, batch, { training: false });
  assert.deepEqual(Object.keys(r2.parts).sort(), ['L_b', 'L_cls', 'L_f', 'total']);
  // a fresh student (same weights as the teacher) has L_b = 0 only where it is dense: not zero overall
  assert.ok(r2.parts.L_b > 0 && r2.parts.L_f > 0);
});

test('stage 2 refuses co-activation grouping and a teacher that is the student\'s own VAR, with clear errors', () => {
  const model = tinyVar();
  const perms = model.blocks.map(() => Int32Array.from({ length: 128 }, (_, i) => 127 - i));
  const a = ActVAR.wrap(model, { experts: 4 }, { perms });
  assert.throws(() => trainableParameters(a, 2), (e: Error) => e instanceof ActVarConfigError && /co-activation grouping/.test(e.message));
  assert.equal(trainableParameters(a, 1).size, 4 * 3);
  const b = ActVAR.wrap(model, { experts: 4 });
  assert.throws(() => distillLoss(2, b, model, tinyVqvae(), randomBatch(model, 1, 1), { training: false }), /separate frozen copy/);
});

test('a few stage-1 steps lower the distillation loss; validation numbers are in range and move the right way', () => {
  const teacher = tinyVar();
  const student = ActVAR.wrap(cloneVar(teacher), { tokenRates: [0.5, 0.5], expertRate: 0.5, experts: 4 }, { init: 'zeros' });
  randomizeGates(student, 13);
  const vae = tinyVqvae();
  const batches = [randomBatch(teacher, 4, 1), randomBatch(teacher, 4, 2)];
  const held = [randomBatch(teacher, 4, 9)];
  const before = validateDistill(student, teacher, vae, batches);
  for (const k of ['klToDense', 'tokenAccuracy', 'selectorAgreement', 'routerAgreement'] as const) assert.ok(Number.isFinite(before[k]) && before[k] >= 0, `${k} = ${before[k]}`);
  assert.ok(before.selectorAgreement <= 1 && before.routerAgreement <= 1);
  const params = trainableParameters(student, 1);
  const opt = new AdamW([...params.values()], { lr: 3e-2, betas: [0.9, 0.95], weightDecay: 0.05 });
  const dis = (r: { parts: Record<string, number> }): number => r.parts.L_dis_w + r.parts.L_dis_t;
  const first = dis(distillLoss(1, student, teacher, vae, batches[0], { training: false }));
  for (let step = 0; step < 12; step++) {
    const r = distillLoss(1, student, teacher, vae, batches[step % 2], { training: false });
    for (const p of params.values()) p.grad = null;
    r.loss.backward();
    opt.step();
  }
  const last = dis(distillLoss(1, student, teacher, vae, batches[0], { training: false }));
  assert.ok(last < 0.8 * first, `L_dis_w + L_dis_t went from ${first} to ${last}`);
  const after = validateDistill(student, teacher, vae, batches);
  assert.ok(after.routerAgreement > before.routerAgreement, `router agreement ${before.routerAgreement} → ${after.routerAgreement}`);
  assert.ok(after.selectorAgreement > before.selectorAgreement, `selector agreement ${before.selectorAgreement} → ${after.selectorAgreement}`);
  // the dense model itself has KL 0 to the teacher
  const full = ActVAR.wrap(cloneVar(teacher), { tokenRates: [1, 1], expertRate: 1, experts: 4 });
  assert.ok(validateDistill(full, teacher, vae, held).klToDense < 1e-6);
});

test('policy hooks: a replaced selectTokens / routeTokens drives inference and the teacher-forced forward alike', () => {
  const model = tinyVar();
  const a = ActVAR.wrap(model, { tokenRates: [0.5, 0.5], expertRate: 0.5, experts: 4, kvPolicy: 'all' });
  randomizeGates(a, 4);
  // fixed pruning of the bottom rows and one static expert set, the baselines of paper Tables 3/4
  const calls = { select: 0, route: 0 };
  a.selectTokens = (_b, _s, x, K) => { calls.select++; const R = x.shape[0]; return Int32Array.from({ length: R * K }, (_, i) => i % K); };
  a.routeTokens = (_b, _s, h, Kw) => { calls.route++; const n = h.shape[0]; return Int32Array.from({ length: n * Kw }, (_, i) => i % Kw); };
  const labels = [2, 3];
  const { inputs, x } = randomInputs(model, 2);
  const seen: Int32Array[] = [];
  a.onActivation = (r) => { seen.push(r.selected.slice(), r.route.slice()); };
  const infer = runTransformer(model, labels, inputs, a.hooks, false);
  assert.equal(calls.select, 2 * 3);
  assert.equal(calls.route, 2 * 3);
  for (let i = 0; i < seen.length; i += 2) {
    assert.ok(seen[i].every((p, j) => p === j % (seen[i].length / 2)), 'inference did not use the replaced selection');
    assert.ok(seen[i + 1].every((e, j) => e === j % 2), 'inference did not use the replaced routing');
  }
  const records: BlockRecord[] = [];
  const tf = T.noGrad(() => a.forward(labels, x, { record: (r) => records.push(r) }));
  assert.equal(calls.select, 2 * 2 * 3);
  for (const r of records) for (const s of r.scales) assert.ok(s.selected.every((p, j) => p === j % s.K) && s.route.every((e, j) => e === j % s.Kw));
  for (let si = 0; si < model.numScales; si++) {
    const [bg, ed] = model.beginEnds[si];
    assert.ok(maxAbsDiff(infer[si].f32, T.slice(tf, 1, bg, ed).f32) < 2e-4, `scale ${si}`);
  }
});

test('a shorter teacher-forced forward (a prefix of the pyramid) gives the prefix of the full logits', () => {
  const model = tinyVar();
  const a = ActVAR.wrap(model, { scales: [2, 3], tokenRates: [0.5, 0.5], expertRate: 0.5, experts: 4 });
  randomizeGates(a, 8);
  const { x } = randomInputs(model, 2, 4);
  const full = T.noGrad(() => a.forward([0, 1], x));
  for (const ed of [model.beginEnds[3][1], model.beginEnds[3][1] + 7]) { // scale 3's end; inside scale 4 (dense)
    const part = T.noGrad(() => a.forward([0, 1], T.slice(x, 1, 0, ed - 1)));
    assert.deepEqual(part.shape, [2, ed, 16]);
    const end = model.beginEnds[3][1];
    assert.ok(maxAbsDiff(T.slice(part, 1, 0, end).f32, T.slice(full, 1, 0, end).f32) < 1e-5, `prefix ${ed}`);
  }
  // at full activation every prefix, one ending inside a scale included, is the dense prefix
  const all = ActVAR.wrap(model, { scales: [2, 3], tokenRates: [1, 1], expertRate: 1, experts: 4 });
  const ed = model.beginEnds[3][1] + 7;
  const xs = T.slice(x, 1, 0, ed - 1);
  const d = maxAbsDiff(T.noGrad(() => all.forward([0, 1], xs)).f32, T.noGrad(() => model.forward([0, 1], xs)).f32);
  assert.ok(d < 1e-5, `full activation, prefix ${ed}: ${d}`);
});
