import './util/setup.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../src/tensor/index.js';
import { AdamW, clipGradNorm, lrAt, wdAt, noDecayName, paramGroups, NO_DECAY_KEYS } from '../src/optim/index.js';

const rng = new T.Rng(5);

function randParam(shape: number[], name?: string): T.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const d = new Float32Array(n);
  for (let i = 0; i < n; i++) d[i] = rng.normal();
  return T.param(d, shape, name);
}

function setGrad(p: T.Tensor, g: ArrayLike<number>): void { p.grad = new T.Tensor(Float32Array.from(g), p.shape); }

/** Straight float64 AdamW (torch.optim.AdamW docs, amsgrad=False). */
class RefAdamW {
  m: Float64Array; v: Float64Array; t = 0;
  constructor(public p: Float64Array, public lr: number, public b1: number, public b2: number, public eps: number, public wd: number) {
    this.m = new Float64Array(p.length); this.v = new Float64Array(p.length);
  }
  step(g: ArrayLike<number>): void {
    this.t++;
    for (let i = 0; i < this.p.length; i++) {
      this.p[i] -= this.lr * this.wd * this.p[i];
      this.m[i] = this.b1 * this.m[i] + (1 - this.b1) * g[i];
      this.v[i] = this.b2 * this.v[i] + (1 - this.b2) * g[i] * g[i];
      const mh = this.m[i] / (1 - this.b1 ** this.t), vh = this.v[i] / (1 - this.b2 ** this.t);
      this.p[i] -= this.lr * mh / (Math.sqrt(vh) + this.eps);
    }
  }
}

test('AdamW matches a float64 reference (weight decay, bias correction, lrScale, two groups)', () => {
  const a = randParam([4, 3]), b = randParam([5]);
  const lr = 0.05, betas: [number, number] = [0.9, 0.95], wd = 0.1;
  const refA = new RefAdamW(Float64Array.from(a.f32), lr, ...betas, 1e-8, wd);
  const refB = new RefAdamW(Float64Array.from(b.f32), lr * 0.5, ...betas, 1e-8, 0);
  const opt = new AdamW([{ params: [a], weightDecay: wd }, { params: [b], weightDecay: 0, lrScale: 0.5 }], { lr, betas });
  for (let s = 0; s < 6; s++) {
    const ga = Array.from({ length: a.size }, () => rng.normal() * (s + 1));
    const gb = Array.from({ length: b.size }, () => rng.normal() * 1e-3); // tiny grads: eps and bias correction matter
    setGrad(a, ga); setGrad(b, gb);
    opt.step();
    refA.step(Float32Array.from(ga)); refB.step(Float32Array.from(gb));
    for (let i = 0; i < a.size; i++) assert.ok(Math.abs(a.f32[i] - refA.p[i]) < 2e-6, `step ${s} a[${i}]: ${a.f32[i]} vs ${refA.p[i]}`);
    for (let i = 0; i < b.size; i++) assert.ok(Math.abs(b.f32[i] - refB.p[i]) < 2e-6, `step ${s} b[${i}]: ${b.f32[i]} vs ${refB.p[i]}`);
    opt.zeroGrad();
    assert.equal(a.grad, null);
  }
  assert.equal(opt.stepCount, 6);
});

test('AdamW first step by hand: |Δp| = lr (Adam) plus the decoupled decay', () => {
  const p = T.param(Float32Array.of(2, -3), [2]);
  const opt = new AdamW([p], { lr: 0.1, weightDecay: 0.5 });
  setGrad(p, [4, -0.25]);
  opt.step();
  // step 1: m̂ = g, v̂ = g², update = lr·g/(|g|+eps) ≈ lr·sign(g); decay: p·(1 − lr·wd) = p·0.95
  assert.ok(Math.abs(p.f32[0] - (2 * 0.95 - 0.1 * 4 / (4 + 1e-8))) < 1e-6);
  assert.ok(Math.abs(p.f32[1] - (-3 * 0.95 + 0.1 * 0.25 / (0.25 + 1e-8))) < 1e-6);
});

test('AdamW skips params without grad; setLr / setWeightDecay / groupSettings', () => {
  const a = randParam([3]), b = randParam([3]);
  const b0 = b.f32.slice();
  const opt = new AdamW([{ params: [a], weightDecay: 0.05 }, { params: [b], weightDecay: 0 }], { lr: 1e-3 });
  setGrad(a, [1, 2, 3]);
  opt.step();
  assert.deepEqual([...b.f32], [...b0]);
  assert.equal(opt.stateDict().state[1], null);
  opt.setLr(0.02); opt.setWeightDecay(0.2);
  assert.deepEqual(opt.groupSettings(), [{ lr: 0.02, weightDecay: 0.2 }, { lr: 0.02, weightDecay: 0 }]);
  assert.throws(() => opt.setLr(-1), /lr must be ≥ 0/);
  assert.throws(() => new AdamW([a, a], { lr: 1 }), /appears more than once/);
  assert.throws(() => new AdamW([T.zeros([2])], { lr: 1 }), /requiresGrad/);
});

test('AdamW state round trip continues bit-identically', () => {
  const mk = () => [randParam([6, 4]), randParam([4])];
  const ps = mk();
  const grads: Float32Array[][] = Array.from({ length: 8 }, () => ps.map((p) => Float32Array.from({ length: p.size }, () => rng.normal())));
  const groups = (q: T.Tensor[]) => [{ params: [q[0]], weightDecay: 0.05 }, { params: [q[1]], weightDecay: 0 }];
  const opt = new AdamW(groups(ps), { lr: 3e-3, betas: [0.9, 0.95] });
  for (let s = 0; s < 4; s++) { ps.forEach((p, i) => setGrad(p, grads[s][i])); opt.step(); opt.zeroGrad(); }
  const saved = opt.stateDict();
  const snapshot = ps.map((p) => p.f32.slice());
  // the saved state is a copy: continuing the original must not change it
  const m0 = saved.state[0]!.expAvg.slice();
  for (let s = 4; s < 8; s++) { ps.forEach((p, i) => setGrad(p, grads[s][i])); opt.step(); opt.zeroGrad(); }
  assert.deepEqual(saved.state[0]!.expAvg, m0);
  // restore into a fresh optimiser over fresh params with the step-4 values; betas restored from the state
  const qs = snapshot.map((d, i) => T.param(d.slice(), ps[i].shape));
  const opt2 = new AdamW(groups(qs), { lr: 999, betas: [0.5, 0.5] });
  opt2.loadStateDict(saved);
  assert.equal(opt2.stepCount, 4);
  for (let s = 4; s < 8; s++) { qs.forEach((p, i) => setGrad(p, grads[s][i])); opt2.step(); opt2.zeroGrad(); }
  qs.forEach((q, i) => assert.deepEqual(q.f32, ps[i].f32, `param ${i} differs after resume`));
  // mismatches are reported clearly
  const wrong = new AdamW([randParam([6, 4]), randParam([5])], { lr: 1 });
  assert.throws(() => wrong.loadStateDict(saved), /1 param groups, optimiser has|2 param groups, optimiser has 1/);
  const wrong2 = new AdamW(groups([randParam([6, 4]), randParam([5])]), { lr: 1 });
  assert.throws(() => wrong2.loadStateDict(saved), /moments of param 1 .* expected 5/);
});

test('clipGradNorm: torch semantics', () => {
  const a = randParam([2]), b = randParam([2]), c = randParam([3]);
  setGrad(a, [3, 0]); setGrad(b, [0, 4]); // c has no grad
  const n = clipGradNorm([a, b, c], 1);
  assert.ok(Math.abs(n - 5) < 1e-12);
  const coef = 1 / (5 + 1e-6);
  assert.ok(Math.abs(a.grad!.f32[0] - 3 * coef) < 1e-7 && Math.abs(b.grad!.f32[1] - 4 * coef) < 1e-7);
  // below the threshold: untouched
  setGrad(a, [0.3, 0]); setGrad(b, [0, 0.4]);
  assert.ok(Math.abs(clipGradNorm([a, b], 2) - 0.5) < 1e-7);
  assert.deepEqual([...a.grad!.f32], [Math.fround(0.3), 0]);
  setGrad(a, [-7, 1]);
  assert.equal(clipGradNorm([a], 3.5, Infinity), 7);
  assert.ok(Math.abs(a.grad!.f32[0] + 3.5) < 1e-5);
  assert.equal(clipGradNorm([c], 1), 0);
  assert.throws(() => clipGradNorm([a], -1), /maxNorm must be ≥ 0/);
});

test('lrAt: warm-up, lin0 plateau and decay, cos, const (var-reference §7)', () => {
  const peak = 3e-4, s = { peak, warmupSteps: 100, totalSteps: 1101 }; // post-warm-up span = 1000
  const close = (x: number, y: number) => assert.ok(Math.abs(x - y) < 1e-12 * Math.max(1, Math.abs(y)) + 1e-18, `${x} vs ${y}`);
  close(lrAt(0, s), 0.005 * peak);
  close(lrAt(50, s), (0.005 + 0.995 * 0.5) * peak);
  close(lrAt(100, s), peak);
  close(lrAt(149, s), peak); // pasd = 0.049 < 5%
  close(lrAt(150, s), peak); // pasd = 0.05: decay starts from exactly peak (continuous)
  close(lrAt(600, s), (0.01 + 0.99 * 0.5 / 0.95) * peak);
  close(lrAt(1100, s), 0.01 * peak); // last step: wpe·peak
  for (let i = 151; i <= 1100; i++) assert.ok(lrAt(i, s) < lrAt(i - 1, s));
  const c = { ...s, schedule: 'cos' as const, endFactor: 0.1 };
  close(lrAt(100, c), peak);
  close(lrAt(600, c), (0.1 + 0.9 * 0.5) * peak);
  close(lrAt(1100, c), 0.1 * peak);
  close(lrAt(700, { ...s, schedule: 'const' }), peak);
  close(lrAt(10, { ...s, warmupStart: 0.1 }), (0.1 + 0.9 * 0.1) * peak);
  close(lrAt(5, { ...s, warmupSteps: 0 }), peak);
  assert.throws(() => lrAt(0, { ...s, schedule: 'exp' as never }), /'lin0', 'cos' or 'const'/);
  close(wdAt(0, { wd: 0.05, wdEnd: 0.08, totalSteps: 11 }), 0.05);
  close(wdAt(5, { wd: 0.05, wdEnd: 0.08, totalSteps: 11 }), 0.065);
  close(wdAt(10, { wd: 0.05, wdEnd: 0.08, totalSteps: 11 }), 0.08);
  close(wdAt(7, { wd: 0.05, totalSteps: 11 }), 0.05);
});

test('noDecayName and paramGroups follow the official rule', () => {
  const cases: [string, number, boolean][] = [
    ['blocks.0.attn.mat_qkv.weight', 2, false], ['blocks.0.attn.proj.bias', 1, true], ['blocks.0.attn.q_bias', 1, true],
    ['word_embed.weight', 2, false], ['class_emb.weight', 2, false], ['lvl_embed.weight', 2, true], ['pos_1LC', 3, true],
    ['pos_start', 3, true], ['blocks.3.attn.scale_mul_1H11', 4, true], ['blocks.0.ada_lin.1.weight', 2, false],
    ['head.weight', 2, false], ['some.ln.weight', 1, true], ['router.gamma', 2, true], ['x.ada_gss', 4, true],
  ];
  for (const [name, nd, want] of cases) assert.equal(noDecayName(name, nd), want, name);
  assert.equal(NO_DECAY_KEYS.length, 14);
  const named = new Map<string, T.Tensor>([
    ['word_embed.weight', randParam([4, 3])], ['word_embed.bias', randParam([4])], ['pos_1LC', randParam([1, 5, 3])],
    ['blocks.0.ffn.fc1.weight', randParam([8, 3])], ['frozen.weight', T.zeros([2, 2])],
  ]);
  const g = paramGroups(named, 0.05);
  assert.equal(g.length, 2);
  assert.deepEqual(g[0].params, [named.get('word_embed.weight'), named.get('blocks.0.ffn.fc1.weight')]);
  assert.equal(g[0].weightDecay, 0.05);
  assert.deepEqual(g[1].params, [named.get('word_embed.bias'), named.get('pos_1LC')]);
  assert.equal(g[1].weightDecay, 0);
  const opt = new AdamW(g, { lr: 1 });
  opt.setWeightDecay(0.08);
  assert.deepEqual(opt.groupSettings().map((x) => x.weightDecay), [0.08, 0]);
});
