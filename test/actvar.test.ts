import './util/setup.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../src/tensor/index.js';
import { Rng } from '../src/tensor/rng.js';
import { gradcheck, randTensor } from './util/gradcheck.js';
import { backend } from '../src/backend/node.js';
import { ExpertFFN, groupByExpert, coactivationPermutation } from '../src/actvar/experts.js';
import { Router, topKRows } from '../src/actvar/router.js';
import { Selector, topKPositions } from '../src/actvar/selector.js';
import { resolveActVarConfig, tokensToKeep, expertsToKeep, ActVarConfigError, configToMetadata, configFromMetadata } from '../src/actvar/config.js';
import { analyticFlops, presetFlopsModel, eq12AsPrinted, eq12Corrected, TABLE2_SETTINGS } from '../src/actvar/flops.js';
import { routerFromWeights, NormalEquations, BlockCalibration } from '../src/actvar/init.js';
import { varConfigForDepth } from '../src/var/config.js';
import { randomVar } from '../src/var/init.js';
import type { VAR, BlockContext } from '../src/var/var.js';
import { VQVAE } from '../src/vqvae/vqvae.js';
import { ActVAR, runTransformer, type ActivationRecord } from '../src/actvar/actvar.js';
import { benchActVar } from '../bench/actvar.js';
import { ActivationMaps } from '../src/actvar/actmaps.js';
import { decodePng } from '../src/image/png.js';
import { repoRoot, tinyDir, needsFixtures } from './util/fixtures.js';
import { mkdtempSync, rmSync, readdirSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
/** The reference fixtures these tests read (skipped when absent, see test/util/fixtures.ts). */
const TINY = needsFixtures(join(tinyDir, 'var_state_dict.safetensors'), join(tinyDir, 'vqvae_state_dict.safetensors'));

const cli = join(repoRoot, 'dist/src/cli/main.js');

function runCli(args: string[], cwd: string): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cli, ...args], { cwd, encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function randFFN(rng: Rng, C: number, H: number, requiresGrad = false) {
  return {
    fc1Weight: randTensor(rng, [H, C], requiresGrad, 0.3), fc1Bias: randTensor(rng, [H], requiresGrad, 0.1),
    fc2Weight: randTensor(rng, [C, H], requiresGrad, 0.3), fc2Bias: randTensor(rng, [C], requiresGrad, 0.1),
  };
}

function denseFFN(w: ReturnType<typeof randFFN>, x: T.Tensor): T.Tensor {
  return T.linear(T.gelu(T.linear(x, w.fc1Weight, w.fc1Bias)), w.fc2Weight, w.fc2Bias);
}

// ---------------------------------------------------------------------------------------------
// config

test('config: defaults, broadcasting a single rate, validation errors', () => {
  const c = resolveActVarConfig({}, { numScales: 10, ffnHidden: 4096 });
  assert.deepEqual(c, { scales: [8, 9], tokenRates: [0.75, 0.75], expertRate: 0.75, experts: 16, grouping: 'contiguous', selector: 'linear', kvPolicy: 'kept' });
  assert.deepEqual(resolveActVarConfig({ tokenRates: [0.5] }, { numScales: 10, ffnHidden: 4096 }).tokenRates, [0.5, 0.5]);
  const swapped = resolveActVarConfig({ scales: [9, 7], tokenRates: [0.25, 0.5] }, { numScales: 10, ffnHidden: 4096 });
  assert.deepEqual([swapped.scales, swapped.tokenRates], [[7, 9], [0.5, 0.25]]);
  assert.throws(() => resolveActVarConfig({ scales: [10] }, { numScales: 10, ffnHidden: 64 }), /scale index 10 is out of range.*0\.\.9/);
  assert.throws(() => resolveActVarConfig({ tokenRates: [0.5, 0.5, 0.5] }, { numScales: 10, ffnHidden: 64 }), ActVarConfigError);
  assert.throws(() => resolveActVarConfig({ expertRate: 1.5 }, { numScales: 10, ffnHidden: 64 }), /expert rate must be a number in \(0, 1\]/);
  assert.throws(() => resolveActVarConfig({ experts: 5 }, { numScales: 10, ffnHidden: 64 }), /must divide the FFN hidden width 64/);
  assert.equal(tokensToKeep(0.75, 169), 127);
  assert.equal(tokensToKeep(0.75, 256), 192);
  assert.equal(tokensToKeep(0.01, 4), 1);
  assert.equal(expertsToKeep(0.75, 16), 12);
  assert.deepEqual(configFromMetadata(configToMetadata(c)), c);
});

// ---------------------------------------------------------------------------------------------
// experts

test('groupByExpert: counting sort by expert, errors on bad ids and duplicates', () => {
  const route = Int32Array.from([2, 0, 1, 2, 0, 1]); // 3 tokens, K = 2, N = 3
  const g = groupByExpert(route, 3, 2, 3);
  assert.deepEqual([...g.offsets], [0, 2, 4, 6]);
  assert.deepEqual([...g.tokens], [0, 2, 1, 2, 0, 1]);
  assert.throws(() => groupByExpert(Int32Array.from([0, 3]), 1, 2, 3), /expert id 3 .* out of range/);
  assert.throws(() => groupByExpert(Int32Array.from([1, 1]), 1, 2, 3), /routed to expert 1 twice/);
});

test('expert FFN with every expert active equals the dense FFN (1e-5); unpermuted experts share the VAR weights', () => {
  const rng = new Rng(1);
  const C = 24, H = 96, N = 8;
  const w = randFFN(rng, C, H);
  const x = randTensor(rng, [2, 7, C], false);
  const ref = T.noGrad(() => denseFFN(w, x)).f32;
  const ffn = new ExpertFFN(w, N);
  assert.equal(ffn.w1, w.fc1Weight);
  assert.equal(ffn.w2, w.fc2Weight);
  const y = T.noGrad(() => ffn.forwardAll(x));
  assert.deepEqual(y.shape, [2, 7, C]);
  assert.ok(maxAbsDiff(y.f32, ref) < 1e-5, `diff ${maxAbsDiff(y.f32, ref)}`);
  // a permutation of the hidden units does not change the dense function
  const perm = Int32Array.from({ length: H }, (_, i) => (i * 37) % H);
  const ffnP = new ExpertFFN(w, N, perm);
  assert.ok(maxAbsDiff(T.noGrad(() => ffnP.forwardAll(x)).f32, ref) < 1e-5);
  assert.throws(() => new ExpertFFN(w, N, Int32Array.from({ length: H }, () => 0)), /not a permutation/);
  assert.throws(() => new ExpertFFN(w, 7), /do not divide the hidden width 96/);
});

test('expert FFN with a subset of experts: Σ of the chosen experts + b2 once', () => {
  const rng = new Rng(2);
  const C = 16, H = 64, N = 4, de = H / N;
  const w = randFFN(rng, C, H);
  const ffn = new ExpertFFN(w, N);
  const x = randTensor(rng, [5, C], false);
  const route = Int32Array.from([0, 3, 1, 2, 3, 0, 2, 1, 1, 3]); // K = 2
  const y = T.noGrad(() => ffn.forward(x, route, 2)).f32;
  // reference: for each token, mask the hidden units of unchosen experts (test only)
  const h = T.noGrad(() => T.gelu(T.linear(x, w.fc1Weight, w.fc1Bias))).f32.slice();
  for (let t = 0; t < 5; t++) {
    const on = new Set([route[2 * t], route[2 * t + 1]]);
    for (let j = 0; j < H; j++) if (!on.has(Math.floor(j / de))) h[t * H + j] = 0;
  }
  const ref = T.noGrad(() => T.linear(new T.Tensor(h, [5, H]), w.fc2Weight, w.fc2Bias)).f32;
  assert.ok(maxAbsDiff(y, ref) < 1e-5);
});

test('expert FFN gradients (x and all weights) match finite differences', () => {
  const rng = new Rng(3);
  const C = 6, H = 12, N = 3;
  const w = randFFN(rng, C, H, true);
  const x = randTensor(rng, [4, C]);
  const route = Int32Array.from([0, 2, 1, 2, 0, 1, 2, 0]);
  gradcheck((xx, a, b, c, d) => new ExpertFFN({ fc1Weight: a, fc1Bias: b, fc2Weight: c, fc2Bias: d }, N).forward(xx, route, 2),
    [x, w.fc1Weight, w.fc1Bias, w.fc2Weight, w.fc2Bias], { eps: 1e-2, tol: 3e-2 });
});

test('expert FFN FLOPs: counted per expert group, identical in dry-run mode', () => {
  const rng = new Rng(4);
  const C = 8, H = 32, N = 4;
  const ffn = new ExpertFFN(randFFN(rng, C, H), N);
  const x = randTensor(rng, [6, C], false);
  const route = topKRows(T.noGrad(() => T.linear(x, randTensor(rng, [N, C], false))).f32, 6, N, 3);
  const real = T.countFlops(() => T.noGrad(() => ffn.forward(x, route, 3))).flops;
  const dry = T.countFlops(() => T.dryRun(() => T.noGrad(() => ffn.forward(x, route, 3)))).flops;
  assert.equal(real.byCategory.get('ffn'), 4 * 6 * 3 * C * (H / N));
  assert.deepEqual(dry.toJSON(), real.toJSON());
});

test('co-activation grouping: balanced, deterministic, groups units that fire together', () => {
  // 4 latent "topics"; unit j fires with topic j % 4, so the 4 experts should be exactly the 4 residues
  const T_ = 200, H = 32, N = 4;
  const rng = new Rng(5);
  const acts = new Float32Array(T_ * H);
  for (let t = 0; t < T_; t++) {
    const topic = t % 4;
    for (let j = 0; j < H; j++) acts[t * H + j] = (j % 4 === topic ? 1 + rng.uniform() : 0) + 0.05 * rng.normal();
  }
  const perm = coactivationPermutation(acts, T_, H, N, { seed: 3 });
  assert.deepEqual([...perm].sort((a, b) => a - b), Array.from({ length: H }, (_, i) => i));
  for (let e = 0; e < N; e++) {
    const res = new Set([...perm.subarray(e * 8, e * 8 + 8)].map((j) => j % 4));
    assert.equal(res.size, 1, `expert ${e} mixes topics: ${[...perm.subarray(e * 8, e * 8 + 8)]}`);
  }
  assert.deepEqual(coactivationPermutation(acts, T_, H, N, { seed: 3 }), perm);
});

// ---------------------------------------------------------------------------------------------
// router and selector

test('router: top-K routing picks the K most probable experts, ties to the lower index', () => {
  const C = 3, N = 5;
  // logits = x·Wᵀ with W = rows e_c scaled, so logits are set directly by x
  const W = new T.Tensor(Float32Array.from([1, 0, 0, 0, 1, 0, 0, 0, 1, 0.5, 0.5, 0, 0, 0, 0]), [N, C]);
  const router = new Router(W, new T.Tensor(Float32Array.from([0, 0, 0, 0, 0.25]), [N]));
  const x = new T.Tensor(Float32Array.from([1, 2, 3, 0, 0, 0, -1, 0, 1]), [3, C]);
  const { route } = router.route(x, 2);
  // token 0: logits [1, 2, 3, 1.5, .25] → [2, 1]; token 1: [0,0,0,0,.25] → [4, 0]; token 2: [-1,0,1,-.5,.25] → [2, 4]
  assert.deepEqual([...route], [2, 1, 4, 0, 2, 4]);
  const p = T.noGrad(() => router.probs(x)).f32;
  for (let t = 0; t < 3; t++) {
    const row = [...p.subarray(t * N, t * N + N)];
    assert.ok(Math.abs(row.reduce((a, b) => a + b, 0) - 1) < 1e-6);
    const order = row.map((v, i) => [v, i]).sort((a, b) => b[0] - a[0] || a[1] - b[1]).map((a) => a[1]);
    assert.deepEqual(order.slice(0, 2), [...route.subarray(2 * t, 2 * t + 2)]);
  }
  assert.throws(() => router.route(x, 6), /K_w must be in 1\.\.5/);
  // agrees with the core topk on random data
  const rng = new Rng(6);
  const v = randTensor(rng, [50, 16], false);
  assert.deepEqual([...topKRows(v.f32, 50, 16, 12)], [...T.topk(v, 12).indices.i32]);
  // FLOPs category
  const fl = T.countFlops(() => router.route(x, 2)).flops;
  assert.equal(fl.byCategory.get('router'), 2 * 3 * C * N);
});

test('selector: each row (cond and uncond halves alike) keeps its own top-K tokens, ascending', () => {
  const C = 4, l = 6, R = 2;
  const sel = new Selector(new T.Tensor(Float32Array.from([1, 0, 0, 0]), [1, C]), new T.Tensor(Float32Array.of(0), [1]));
  const xn = new Float32Array(R * l * C);
  const s0 = [5, 1, 4, 2, 3, 0], s1 = [0, 5, 1, 4, 2, 3];
  for (let t = 0; t < l; t++) { xn[t * C] = s0[t]; xn[(l + t) * C] = s1[t]; }
  const { index } = sel.select(new T.Tensor(xn, [R, l, C]), 3);
  assert.deepEqual([...index], [0, 2, 4, 1, 3, 5]);
  assert.deepEqual([...topKPositions(Float32Array.from([1, 1, 1, 1]), 1, 4, 2)], [0, 1]);
  assert.throws(() => sel.select(new T.Tensor(xn, [R, l, C]), 7), /K_t must be in 1\.\.6/);
  const fl = T.countFlops(() => sel.select(new T.Tensor(xn, [R, l, C]), 3)).flops;
  assert.equal(fl.byCategory.get('selector'), 2 * R * l * C);
});

// ---------------------------------------------------------------------------------------------
// initialisation

test('least squares: recovers a linear map; data-free router ranks a dominant expert first', () => {
  const rng = new Rng(8);
  const d = 5, o = 2, n = 400;
  const Wt = Array.from({ length: d * o }, () => rng.normal());
  const X = new Float32Array(n * d), Y = new Float32Array(n * o);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) X[i * d + j] = rng.normal();
    for (let c = 0; c < o; c++) { let s = 0; for (let j = 0; j < d; j++) s += X[i * d + j] * Wt[j * o + c]; Y[i * o + c] = s; }
  }
  const ne = new NormalEquations(d, o);
  ne.add(X.subarray(0, 200 * d), Y.subarray(0, 200 * o), 200);
  ne.add(X.subarray(200 * d), Y.subarray(200 * o), 200);
  const W = ne.solve(1e-6);
  for (let i = 0; i < d * o; i++) assert.ok(Math.abs(W[i] - Wt[i]) < 1e-3, `${W[i]} vs ${Wt[i]}`);

  // expert 1's units respond to +x direction with large output weights: it should win for x along that direction
  const C = 4, H = 8, N = 2;
  const w = randFFN(rng, C, H);
  const f1 = w.fc1Weight.f32, f2 = w.fc2Weight.f32;
  for (let j = 4; j < 8; j++) { for (let c = 0; c < C; c++) f1[j * C + c] = c === 0 ? 2 : 0; }
  for (let r = 0; r < C; r++) for (let j = 4; j < 8; j++) f2[r * H + j] *= 10;
  const router = routerFromWeights(new ExpertFFN(w, N));
  const { route } = router.route(new T.Tensor(Float32Array.from([3, 0, 0, 0]), [1, C]), 1);
  assert.equal(route[0], 1);
});

test('calibration fit: the selector learns to rank tokens whose change is predictable from ln(x)', () => {
  const rng = new Rng(9);
  const C = 6, l = 40, N = 4;
  const cal = new BlockCalibration(C, N);
  const dir = [0.5, -1, 0.25, 0, 2, -0.5];
  for (let row = 0; row < 6; row++) {
    const xn = new Float32Array(l * C), delta = new Float32Array(l);
    for (let t = 0; t < l; t++) {
      let s = 0;
      for (let c = 0; c < C; c++) { xn[t * C + c] = rng.normal(); s += dir[c] * xn[t * C + c]; }
      delta[t] = Math.exp(s + 3 * row); // row offsets must not matter
    }
    cal.addSelectorRow(xn, 0, delta, l);
  }
  const sel = cal.fitSelector(1e-6);
  const w = sel.weight.f32;
  for (let c = 0; c < C; c++) assert.ok(Math.abs(w[c] - dir[c]) < 1e-3, `${[...w]}`);
});

// ---------------------------------------------------------------------------------------------
// analytic FLOPs and eq. 12

test('analytic dense FLOPs reproduce docs/VAR.md §10 (CFG on) and §11 eq. 12 numbers', () => {
  const table: Record<string, number> = { d16: 600.8, d20: 1150.6, d24: 1963.7, d30: 3790.1 };
  const printed: Record<string, number> = { d16: 7.1, d20: 7.2, d24: 7.3, d30: 7.4 };
  const corrected: Record<string, number> = { d16: 21.3, d20: 21.7, d24: 22.0, d30: 22.3 };
  for (const p of ['d16', 'd20', 'd24', 'd30']) {
    const m = presetFlopsModel(p);
    const d = analyticFlops(m);
    // §10's total also holds the VQVAE Phi conv (0.047 G), which is not transformer work
    assert.ok(Math.abs(d.total / 1e9 + 0.047 - table[p]) < 0.06, `${p}: ${d.total / 1e9}`);
    const cfg = resolveActVarConfig({}, { numScales: 10, ffnHidden: m.ffnHidden });
    assert.ok(Math.abs(eq12AsPrinted(m, cfg) * 100 - printed[p]) < 0.051, `${p} printed ${eq12AsPrinted(m, cfg)}`);
    assert.ok(Math.abs(eq12Corrected(m, cfg) * 100 - corrected[p]) < 0.051, `${p} corrected ${eq12Corrected(m, cfg)}`);
  }
  const m = presetFlopsModel('d20');
  const rows = [25.2, 16.9, 14.5, 11.6, 7.2], rowsC = [44.5, 39.2, 33.9, 29.0, 21.7];
  TABLE2_SETTINGS.forEach((s, i) => {
    const cfg = resolveActVarConfig({ tokenRates: s.tokenRates, expertRate: s.expertRate }, { numScales: 10, ffnHidden: m.ffnHidden });
    assert.ok(Math.abs(eq12AsPrinted(m, cfg) * 100 - rows[i]) < 0.051, s.label);
    assert.ok(Math.abs(eq12Corrected(m, cfg) * 100 - rowsC[i]) < 0.051, s.label);
  });
});

// ---------------------------------------------------------------------------------------------
// ActVAR wrapped around a (tiny, random) VAR


const TINY_PN = [1, 2, 3, 4, 5];

function tinyVar(seed = 11): VAR {
  const cfg = varConfigForDepth(3, { width: 32, heads: 2, mlpHidden: 128, vocabSize: 16, Cvae: 4, numClasses: 5, patchNums: TINY_PN });
  // non-tiny gammas so that every block really changes its tokens
  return randomVar(cfg, seed, { initAdalnGamma: 1, initStd: 0.2 });
}

function tinyVqvae(): VQVAE {
  return VQVAE.random({ vocabSize: 16, Cvae: 4, ch: 8, chMult: [1, 1], numResBlocks: 1, usingSa: false, usingMidSa: false, normGroups: 4, patchNums: TINY_PN }, new Rng(3));
}

/** Random VQ features per scale (index 0 unused), B images. */
function randomInputs(model: VAR, B: number, seed = 5): T.Tensor[] {
  const rng = new Rng(seed);
  return model.config.patchNums.map((pn) => randTensor(rng, [B, pn * pn, model.config.Cvae], false));
}

/** Random router/selector weights (so that selections are not ties). */
function randomizeGates(a: ActVAR, seed = 21): void {
  const rng = new Rng(seed);
  for (const b of a.blocks) {
    for (const t of [b.router.weight, b.router.bias, b.selector.weight, b.selector.bias]) for (let i = 0; i < t.size; i++) t.f32[i] = rng.normal();
  }
}

test('ActVAR at full activation (all tokens, all experts) equals the dense VAR (1e-5)', () => {
  const model = tinyVar();
  const inputs = randomInputs(model, 2);
  const dense = runTransformer(model, [1, 4], inputs);
  const a = ActVAR.wrap(model, { tokenRates: [1, 1], expertRate: 1, experts: 16 }, { allowUntrained: true });
  randomizeGates(a);
  let sparseBlocks = 0;
  a.onActivation = () => { sparseBlocks++; };
  const sparse = runTransformer(model, [1, 4], inputs, a.hooks);
  assert.equal(sparseBlocks, 2 * 3); // 2 activated scales × 3 blocks
  for (let si = 0; si < dense.length; si++) {
    const d = maxAbsDiff(dense[si].f32, sparse[si].f32);
    assert.ok(d < 1e-5, `scale ${si}: max |Δlogit| = ${d}`);
  }
});

test('ActVAR: unselected tokens leave a block bit-identical; per-row selection under CFG', () => {
  const model = tinyVar();
  const a = ActVAR.wrap(model, { tokenRates: [0.5, 0.5], expertRate: 0.5, experts: 8 }, { allowUntrained: true });
  randomizeGates(a, 4);
  const recs: ActivationRecord[] = [];
  const seen: { ctx: BlockContext; out: T.Tensor }[] = [];
  a.onActivation = (r) => recs.push(r);
  runTransformer(model, [2], randomInputs(model, 1), { blockExecutor: a.blockExecutor, afterBlock: (ctx, out) => { if (ctx.scaleIndex >= 3) seen.push({ ctx, out }); } });
  assert.equal(recs.length, 6);
  let rowsDiffer = 0;
  for (const [j, rec] of recs.entries()) {
    const { ctx, out } = seen[j];
    assert.equal(ctx.scaleIndex, rec.scaleIndex);
    assert.equal(ctx.blockIndex, rec.blockIndex);
    const [R, l, C] = ctx.x.shape;
    assert.equal(R, 2); // CFG: cond row + uncond row
    assert.equal(rec.K, Math.round(0.5 * l));
    assert.equal(rec.Kw, 4);
    const X = ctx.x.f32, Y = out.f32;
    // the selector's own scores, row by row
    const scores = T.noGrad(() => a.blocks[rec.blockIndex].selector.logits(T.layerNorm(ctx.x, 1e-6))).f32;
    for (let r = 0; r < R; r++) {
      const sel = new Set(rec.selected.subarray(r * rec.K, (r + 1) * rec.K));
      const expect = [...scores.subarray(r * l, (r + 1) * l)].map((v, i) => [v, i]).sort((p, q) => q[0] - p[0] || p[1] - q[1]).slice(0, rec.K).map((p) => p[1]);
      assert.deepEqual([...sel].sort((p, q) => p - q), expect.sort((p, q) => p - q), `row ${r} selected its own top-K`);
      for (let t = 0; t < l; t++) {
        const o = (r * l + t) * C;
        const same = X.subarray(o, o + C).every((v, c) => Object.is(v, Y[o + c]));
        assert.equal(same, !sel.has(t), `scale ${rec.scaleIndex} block ${rec.blockIndex} row ${r} token ${t}: ${sel.has(t) ? 'selected but unchanged' : 'unselected but changed'}`);
      }
    }
    if (rec.selected.subarray(0, rec.K).some((v, i) => v !== rec.selected[rec.K + i])) rowsDiffer++;
  }
  assert.ok(rowsDiffer > 0, 'the cond and uncond rows never chose different tokens');
});

test('ActVAR FLOPs: the counter equals the analytic count (tiny config), and dry-run counts equal real ones', () => {
  const model = tinyVar();
  const a = ActVAR.wrap(model, { tokenRates: [0.75, 0.5], expertRate: 0.75, experts: 16 }, { allowUntrained: true });
  randomizeGates(a);
  const inputs = randomInputs(model, 1);
  const fm = { depth: 3, width: 32, ffnHidden: 128, vocab: 16, cvae: 4, patchNums: TINY_PN };
  for (const [name, hooks, cfg] of [['dense', {}, null], ['actvar', a.hooks, a.config]] as const) {
    const real = T.countFlops(() => runTransformer(model, [3], inputs, hooks)).flops.toJSON();
    const dry = T.countFlops(() => T.dryRun(() => runTransformer(model, [3], inputs, hooks))).flops.toJSON();
    assert.deepEqual(dry, real, `${name}: dry-run and real counts differ`);
    const an = analyticFlops(fm, cfg, { adalnPerStep: false });
    for (const [k, v] of Object.entries(an)) {
      if (k === 'total') continue;
      assert.equal(real[k] ?? 0, v, `${name} ${k}: counted ${real[k]} vs analytic ${v}`);
    }
    for (const k of Object.keys(real)) assert.ok(k in an, `${name}: unexpected category ${k}`);
  }
});

test('ActVAR generate: runs through sampling; save/load round trip; bad weights are refused', () => {
  const model = tinyVar();
  const vq = tinyVqvae();
  const a = ActVAR.wrap(model, {}, { allowUntrained: true });
  randomizeGates(a, 8);
  const r1 = a.generate({ labels: [0, 3], vqvae: vq, cfg: 1.5, topK: 1, decode: false });
  assert.deepEqual(r1.idxBL.shape, [2, 55]);
  const dir = mkdtempSync(join(tmpdir(), 'actvar-'));
  try {
    const f = join(dir, 'w.safetensors');
    a.save(f);
    const b = ActVAR.load(model, f);
    assert.deepEqual(b.config, a.config);
    for (const [k, t] of a.parameters()) assert.deepEqual([...b.parameters().get(k)!.data], [...t.data], k);
    const r2 = b.generate({ labels: [0, 3], vqvae: vq, cfg: 1.5, topK: 1, decode: false });
    assert.deepEqual([...r2.idxBL.i32], [...r1.idxBL.i32]);
    // rates may be overridden; the number of experts may not
    assert.deepEqual(ActVAR.load(model, f, { tokenRates: [0.5, 0.25] }).config.tokenRates, [0.5, 0.25]);
    assert.throws(() => ActVAR.load(model, f, { experts: 8 }), /made for 16 experts/);
    const other = randomVar(varConfigForDepth(2, { width: 32, heads: 2, mlpHidden: 128, vocabSize: 16, Cvae: 4, numClasses: 5, patchNums: TINY_PN }));
    assert.throws(() => ActVAR.load(other, f), /unexpected 'actvar\.blocks\.2\./);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('calibration: fitted selector ranks tokens by their dense change; co-activation grouping keeps the dense function', () => {
  const model = tinyVar(13);
  const vq = tinyVqvae();
  const a = ActVAR.wrap(model, { grouping: 'coactivation', experts: 8 });
  const seen = a.calibrate({ vqvae: vq, labels: [0, 1, 2, 3, 4], topK: 4, rng: new Rng(1), reservoir: 256 });
  assert.equal(seen, 5 * 2 * (16 + 25));
  assert.ok(a.blocks.every((b) => b.experts.perm !== null));
  // permuted experts, all active: still the dense model
  const inputs = randomInputs(model, 1, 9);
  const dense = runTransformer(model, [1], inputs);
  const full = ActVAR.wrap(model, { tokenRates: [1, 1], expertRate: 1, experts: 8 }, { perms: a.blocks.map((b) => b.experts.perm), allowUntrained: true });
  const out = runTransformer(model, [1], inputs, full.hooks);
  for (let si = 0; si < dense.length; si++) assert.ok(maxAbsDiff(dense[si].f32, out[si].f32) < 1e-5);
  // on fresh inputs the selector scores correlate with the dense block's change (Spearman)
  let sum = 0, cnt = 0;
  runTransformer(model, [2], randomInputs(model, 1, 10), {
    afterBlock: (ctx, o) => {
      if (ctx.scaleIndex !== 4) return;
      const [R, l, C] = ctx.x.shape;
      const s = T.noGrad(() => a.blocks[ctx.blockIndex].selector.logits(T.layerNorm(ctx.x, 1e-6))).f32;
      for (let r = 0; r < R; r++) {
        const d = Array.from({ length: l }, (_, t) => { let q = 0; for (let c = 0; c < C; c++) q += (o.f32[(r * l + t) * C + c] - ctx.x.f32[(r * l + t) * C + c]) ** 2; return q; });
        sum += spearman([...s.subarray(r * l, (r + 1) * l)], d); cnt++;
      }
    },
  });
  assert.ok(sum / cnt > 0.3, `mean Spearman ${sum / cnt}`);
});

function spearman(a: number[], b: number[]): number {
  const rank = (v: number[]) => { const o = v.map((x, i) => [x, i]).sort((p, q) => p[0] - q[0]); const r = new Array<number>(v.length); o.forEach(([, i], k) => { r[i] = k; }); return r; };
  const ra = rank(a), rb = rank(b), n = a.length;
  let d2 = 0;
  for (let i = 0; i < n; i++) d2 += (ra[i] - rb[i]) ** 2;
  return 1 - 6 * d2 / (n * (n * n - 1));
}

test('fused inference selector (selectRaw) equals the selector on ln(x)', () => {
  const rng = new Rng(12);
  const C = 16, l = 30, R = 2;
  const sel = new Selector(randTensor(rng, [1, C], false), randTensor(rng, [1], false));
  const x = randTensor(rng, [R, l, C], false, 3);
  const a = sel.select(T.layerNorm(x, 1e-6), 11), b = sel.selectRaw(x, 11, 1e-6);
  assert.deepEqual([...b.index], [...a.index]);
  assert.ok(maxAbsDiff(a.logits, b.logits) < 1e-4);
  const fl = T.countFlops(() => sel.selectRaw(x, 11, 1e-6)).flops;
  assert.equal(fl.byCategory.get('selector'), 2 * R * l * C);
});

test('activation maps: one token tile per block + coverage, one expert tile per block + per-expert usage', () => {
  const maps = new ActivationMaps(4, 2);
  for (let blk = 0; blk < 3; blk++) {
    maps.record({ scaleIndex: 1, blockIndex: blk, patchNum: 2, rows: 2, K: 2, selected: Int32Array.from([0, 3, 1, 2]), Kw: 2, route: Int32Array.from([0, 1, 2, 3, 1, 2, 3, 0]) });
  }
  const out = maps.render(0);
  assert.deepEqual([...out.keys()], ['scale1_tokens', 'scale1_experts']);
  const tok = out.get('scale1_tokens')!;
  const cell = Math.round(2 * 16 / 2), side = 2 * cell;
  assert.equal(tok.width, 4 * side + 3 * 2); // 3 block tiles + coverage tile
  // token 0 (top-left) selected → white; token 1 (top-right) not → black, in the first tile
  assert.deepEqual([...tok.data.subarray(0, 3)], [255, 255, 255]);
  assert.deepEqual([...tok.data.subarray((side - 1) * 3, side * 3)], [0, 0, 0]);
  const ex = out.get('scale1_experts')!;
  assert.equal(ex.width, 7 * side + 6 * 2); // 3 block tiles + 4 expert usage tiles
  assert.throws(() => maps.render(2), /row 2 is outside the batch of 2 rows/);
});

test('benchActVar reports dense/ActVAR seconds and savings (tiny model)', () => {
  const kernels = backend();
  const r = benchActVar({ model: tinyVar(), repeats: 1, profile: true });
  for (const k of ['dense_s', 'actvar_s', 'flops_saving', 'time_saving'] as const) assert.ok(Number.isFinite(r[k]), k);
  assert.ok(r.flops_saving > 0 && r.flops_saving < 1);
  assert.equal(r.dense_scale_s!.length, TINY_PN.length);
  assert.ok('experts' in r.actvar_phases_s! && 'ffn' in r.dense_phases_s!);
  // the sgemm part of each scale is real time and part of that scale's time
  for (const [tot, gemm] of [[r.dense_scale_s!, r.dense_scale_sgemm_s!], [r.actvar_scale_s!, r.actvar_scale_sgemm_s!]]) {
    assert.equal(gemm.length, TINY_PN.length);
    gemm.forEach((g, i) => assert.ok(g >= 0 && g <= tot[i] + 1e-4, `scale ${i}: sgemm ${g} s of ${tot[i]} s`));
    assert.ok(gemm.reduce((a, b) => a + b, 0) > 0); // (values are rounded to 0.1 ms: tiny scales may show 0)
  }
  // FLOPs per scale: the same in both models outside the activated scales, ActVAR's smaller inside; the
  // ceiling is the activated scales' share of the dense time over their share of its FLOPs
  const act = new Set([TINY_PN.length - 2, TINY_PN.length - 1]);
  const dF = r.dense_scale_gflops!, sF = r.actvar_scale_gflops!;
  assert.equal(dF.length, TINY_PN.length);
  dF.forEach((d, i) => (act.has(i) ? assert.ok(sF[i] < d, `scale ${i}: ${sF[i]} vs ${d}`) : assert.equal(sF[i], d, `scale ${i}`)));
  const total = dF.reduce((x, y) => x + y, 0), actDense = [...act].reduce((x, i) => x + dF[i], 0);
  assert.ok(total > 0 && total < r.dense_gflops + 1e-3); // the last head runs after the last scale's blocks
  assert.ok(Math.abs(r.activated_flops_share! - actDense / r.dense_gflops) < 2e-4, `${r.activated_flops_share} vs ${actDense / r.dense_gflops}`);
  assert.ok(r.activated_time_share! > 0 && r.activated_time_share! < 1);
  assert.ok(Math.abs(r.ceiling! - r.activated_time_share! / r.activated_flops_share!) < 2e-3);
  assert.equal(backend(), kernels); // the timing wrapper is removed again
});

test('CLI: actvar flops --json (d16) reports the measured saving = analytic, and eq. 12 both ways', () => {
  const r = runCli(['flops', '--preset', 'd16', '--token-rates', '0.75,0.75', '--expert-rate', '0.75', '--json'], repoRoot);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as Record<string, number>;
  assert.deepEqual(Object.keys(j).slice(0, 5), ['dense_gflops', 'actvar_gflops', 'measured_saving', 'eq12_as_printed', 'eq12_corrected']);
  assert.equal(j.measured_saving, j.analytic_saving);
  assert.ok(Math.abs(j.dense_gflops - 597.0) < 0.1, `dense ${j.dense_gflops}`); // §10's 600.8 minus AdaLN recomputation (cached here) and Phi
  assert.ok(Math.abs(j.eq12_as_printed - 0.0706) < 1e-4 && Math.abs(j.eq12_corrected - 0.2131) < 1e-4);
  const bad = runCli(['flops', '--token-rates', '75,75'], repoRoot);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /fractions in \(0, 1\]/);
});

test('CLI: generate --actvar with act maps and --actvar-save; the saved weights reproduce the tokens', TINY, () => {
  const dir = mkdtempSync(join(tmpdir(), 'actvar-cli-'));
  try {
    const base = ['generate', '--var', join(tinyDir, 'var_state_dict.safetensors'), '--vae', join(tinyDir, 'vqvae_state_dict.safetensors'),
      '--classes', '3,7', '--top-k', '1', '--quiet', '--actvar'];
    const r = runCli([...base, '--actvar-calib', '2', '--act-maps', 'maps', '--actvar-save', 'w.safetensors', '--tokens-out', 't1.json'], dir);
    assert.equal(r.code, 0, r.stderr);
    const files = readdirSync(join(dir, 'maps')).sort();
    assert.deepEqual(files, ['0_class3_scale2_experts.png', '0_class3_scale2_tokens.png', '0_class3_scale3_experts.png', '0_class3_scale3_tokens.png',
      '1_class7_scale2_experts.png', '1_class7_scale2_tokens.png', '1_class7_scale3_experts.png', '1_class7_scale3_tokens.png']);
    assert.ok(decodePng(readFileSync(join(dir, 'maps', files[0]))).width > 0);
    const r2 = runCli([...base, '--actvar-weights', 'w.safetensors', '--tokens-out', 't2.json'], dir);
    assert.equal(r2.code, 0, r2.stderr);
    assert.deepEqual(JSON.parse(readFileSync(join(dir, 't2.json'), 'utf8')), JSON.parse(readFileSync(join(dir, 't1.json'), 'utf8')));
    // bad input: nothing written, exit 2
    const bad = runCli(['generate', '--var', join(tinyDir, 'var_state_dict.safetensors'), '--vae', join(tinyDir, 'vqvae_state_dict.safetensors'),
      '--classes', '3', '--token-rates', '0.5', '--out', 'bad.png'], dir);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--token-rates needs --actvar/);
    const bad2 = runCli([...base, '--expert-rate', '2', '--out', 'bad.png'], dir);
    assert.equal(bad2.code, 2);
    assert.match(bad2.stderr, /fractions|expert rate must be/);
    const bad3 = runCli([...base, '--actvar-weights', 'w.safetensors', '--experts', '4', '--out', 'bad.png'], dir);
    assert.equal(bad3.code, 2);
    assert.match(bad3.stderr, /made for 16 experts/);
    assert.ok(!existsSync(join(dir, 'bad.png')));
  } finally { rmSync(dir, { recursive: true, force: true }); }
});
