/**
 * VAR transformer: parity with the official code on ../shared/fixtures/var-tiny (through the user
 * path: load the weight files, infer the architecture), another architecture (patch numbers 1,2,4,
 * depth 3, shared AdaLN) through save → reload → teacher-forced == KV-cache inference, the .pth
 * loader, loader errors, gradients of the teacher-forced forward, the ActVAR hooks, and the FLOPs
 * count of a d16 generation against docs/VAR.md §10.
 */
import './util/setup.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  Tensor, Rng, noGrad, reshape, slice, crossEntropy, countFlops, dryRun, geluFast, geluExact,
} from '../src/tensor/index.js';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors.js';
import { VQVAE } from '../src/vqvae/vqvae.js';
import { VAR, blockCausalBias, varParamShapes, type BlockContext } from '../src/var/var.js';
import { loadVar, varFromStateDict, VarWeightsError, readVarStateDict } from '../src/var/load.js';
import { inferVarConfig, varConfigForDepth, varPreset, varParamCount, tokenLayout } from '../src/var/config.js';
import { initVarParams, randomVar } from '../src/var/init.js';
import {
  attnBranch, ffnBranch, adaLNModulate, attentionQKV, attendWithCache, attnProj, ffn, gatedResidual,
  appendKV, createKVCache, attend,
} from '../src/var/basic-var.js';
import { expNonPositive as tableExpNonPositive } from '../src/tensor/index.js';
import { gradcheck, randTensor } from './util/gradcheck.js';
import { fixture as tiny, pthFixture, needsFixtures } from './util/fixtures.js';
/** The reference fixtures these tests read (skipped when absent, see test/util/fixtures.ts). */
const TINY = needsFixtures(...['var_state_dict.safetensors', 'vqvae_state_dict.safetensors', 'forward.safetensors', 'generate_greedy_cfg1.5.safetensors', 'generate_greedy_cfg4.0.safetensors'].map(tiny), pthFixture('var_tiny.pth'), pthFixture('torch2.11_cuda_ckpt.pth'));

function maxAbsDiff(a: Tensor, b: Tensor): number {
  assert.deepEqual([...a.shape], [...b.shape], `shape [${a.shape}] vs [${b.shape}]`);
  let m = 0;
  for (let i = 0; i < a.data.length; i++) {
    const x = a.data[i], y = b.data[i];
    if (x === y) continue; // also equal infinities
    m = Math.max(m, Math.abs(x - y));
  }
  return m;
}
function assertClose(got: Tensor, want: Tensor, what: string, tol = 1e-4): void {
  const d = maxAbsDiff(got, want);
  assert.ok(d <= tol, `${what}: max |diff| ${d.toExponential(3)} > ${tol}`);
}
function assertSameInts(got: Tensor, want: Tensor, what: string): void {
  assert.deepEqual([...got.shape], [...want.shape], `${what}: shape`);
  assert.deepEqual([...got.data], [...want.data], `${what}: values`);
}
/** −inf exactly where the reference has −inf, and close elsewhere. */
function assertMasked(got: Tensor, want: Tensor, what: string): void {
  for (let i = 0; i < want.data.length; i++) {
    assert.equal(got.data[i] === -Infinity, want.data[i] === -Infinity, `${what}: −inf mismatch at ${i}`);
  }
  assertClose(got, want, what);
}

let cachedModels: { model: VAR; vqvae: VQVAE } | null = null;
function tinyModels(): { model: VAR; vqvae: VQVAE } {
  if (!cachedModels) {
    const model = loadVar(tiny('var_state_dict.safetensors'));
    const vqvae = VQVAE.fromStateDict(readSafetensors(tiny('vqvae_state_dict.safetensors')), { patchNums: model.config.patchNums });
    cachedModels = { model, vqvae };
  }
  return cachedModels;
}

test('inferVarConfig reads the fixture architecture from the tensors', TINY, () => {
  const cfgJson = JSON.parse(fs.readFileSync(tiny('config.json'), 'utf8'));
  const { model } = tinyModels();
  const c = model.config;
  assert.equal(c.depth, cfgJson.depth);
  assert.equal(c.width, cfgJson.width);
  assert.equal(c.heads, cfgJson.heads);
  assert.equal(c.mlpHidden, cfgJson.mlp_hidden);
  assert.equal(c.vocabSize, cfgJson.V);
  assert.equal(c.Cvae, cfgJson.Cvae);
  assert.equal(c.numClasses, cfgJson.num_classes);
  assert.deepEqual(c.patchNums, cfgJson.patch_nums);
  assert.equal(c.sharedAdaLN, false);
  assert.equal(model.L, cfgJson.L);
  // overrides win
  const sd = readSafetensors(tiny('var_state_dict.safetensors'));
  assert.equal(inferVarConfig(sd, { condDropRate: 0 }).condDropRate, 0);
});

test('presets match docs/VAR.md §2 (shapes and parameter counts)', () => {
  const counts: Record<string, number> = { d16: 310_283_520, d20: 600_917_136, d24: 1_033_399_360, d30: 2_010_020_356 };
  for (const [name, n] of Object.entries(counts)) {
    const c = varPreset(name);
    assert.equal(c.width, c.depth * 64);
    assert.equal(c.mlpHidden, 4 * c.width);
    assert.equal(varParamCount(c), n, name);
  }
  const d36 = varPreset('d36');
  assert.equal(d36.sharedAdaLN, true);
  assert.equal(tokenLayout(d36.patchNums).L, 2240);
  assert.throws(() => varPreset('d17'), /unknown VAR preset 'd17'/);
  const be = tokenLayout(varPreset('d16').patchNums).beginEnds;
  assert.deepEqual(be[8], [255, 424]);
});

test('teacher-forced forward matches the official forward (blocks, cond, bias, logits, loss)', TINY, () => {
  const { model } = tinyModels();
  const fx = readSafetensors(tiny('forward.safetensors'));
  const seen = new Map<string, Tensor>();
  const logits = noGrad(() => model.forward(fx.get('label_B')!, fx.get('x_BLCv_wo_first_l')!, {
    afterBlock: (ctx, out) => {
      seen.set(`block${ctx.blockIndex}_in`, ctx.x);
      seen.set(`block${ctx.blockIndex}_out`, out);
      if (ctx.blockIndex === 0) seen.set('cond_BD', ctx.cond);
    },
  }));
  assertClose(logits, fx.get('forward_logits_BLV')!, 'forward_logits_BLV');
  for (const k of ['block0_in', 'block0_out', 'block1_in', 'block1_out', 'cond_BD']) assertClose(seen.get(k)!, fx.get(k)!, k);
  const bias = model.stateDict().get('attn_bias_for_masking')!;
  assertMasked(bias, fx.get('attn_bias_for_masking')!, 'attn_bias_for_masking');
  const B = logits.shape[0], L = logits.shape[1], V = logits.shape[2];
  const flat = reshape(logits, [B * L, V]);
  const gt = fx.get('gt_BL')!;
  const ce = crossEntropy(flat, new Tensor(gt.i32, [B * L]));
  assert.ok(Math.abs(ce.f32[0] - fx.get('ce_loss_mean')!.f32[0]) < 1e-5, `ce ${ce.f32[0]} vs ${fx.get('ce_loss_mean')!.f32[0]}`);
  const ceLs = crossEntropy(flat, new Tensor(gt.i32, [B * L]), { labelSmoothing: 0.1 });
  assert.ok(Math.abs(ceLs.f32[0] - fx.get('ce_loss_ls0.1_mean')!.f32[0]) < 1e-5);
  const direct = noGrad(() => model.forward(fx.get('label_B')!, fx.get('x_direct')!));
  assertClose(direct, fx.get('forward_logits_direct')!, 'forward_logits_direct');
  const nul = noGrad(() => model.forward(fx.get('label_null')!, fx.get('x_direct')!));
  assertClose(nul, fx.get('forward_logits_direct_nullclass')!, 'forward_logits_direct_nullclass');
});

for (const cfg of ['1.5', '4.0']) {
  test(`greedy generation with CFG ${cfg} reproduces every per-step tensor of the official sampler`, TINY, () => {
    const { model, vqvae } = tinyModels();
    const fx = readSafetensors(tiny(`generate_greedy_cfg${cfg}.safetensors`));
    const labels = Array.from(fx.get('label_B')!.data);
    let steps = 0;
    const res = model.autoregressiveInfer({
      labels, vqvae, cfg: Number(cfg), topK: 1, topP: 0, rng: new Rng(123),
      trace: (t) => {
        const s = t.si;
        steps++;
        assertClose(t.x, fx.get(`block0_in_scale${s}`)!, `block0_in_scale${s}`);
        assertClose(t.rawLogits, fx.get(`raw_logits_2B_scale${s}`)!, `raw_logits_2B_scale${s}`);
        assertClose(t.cfgLogits, fx.get(`cfg_logits_scale${s}`)!, `cfg_logits_scale${s}`);
        assertMasked(t.filteredLogits, fx.get(`filtered_logits_scale${s}`)!, `filtered_logits_scale${s}`);
        assertSameInts(t.idx, fx.get(`idx_scale${s}`)!, `idx_scale${s}`);
        assertClose(t.hBChw, fx.get(`h_BChw_scale${s}`)!, `h_BChw_scale${s}`);
        assertClose(t.fHat, fx.get(`f_hat_after_scale${s}`)!, `f_hat_after_scale${s}`);
        if (t.next) assertClose(t.next, fx.get(`next_token_map_area_scale${s + 1}`)!, `next_token_map_area_scale${s + 1}`);
        else assert.equal(s, model.numScales - 1);
      },
    });
    assert.equal(steps, 4);
    assertSameInts(res.idxBL, fx.get('idx_BL')!, 'idx_BL');
    assertClose(res.image!, fx.get('img_01')!, 'img_01');
  });
}

test('var_tiny.pth loads bit-identical to the safetensors and generates the same tokens', TINY, () => {
  const pthPath = pthFixture('var_tiny.pth');
  const a = readVarStateDict(pthPath), b = readSafetensors(tiny('var_state_dict.safetensors'));
  assert.deepEqual([...a.keys()], [...b.keys()]);
  for (const [k, t] of b) {
    const u = a.get(k)!;
    assert.deepEqual([...u.shape], [...t.shape], k);
    assert.equal(u.dtype, t.dtype, k);
    assert.ok(u.data.every((v, i) => Object.is(v, t.data[i])), `${k} differs`);
  }
  const m = loadVar(pthPath);
  const { vqvae } = tinyModels();
  const fx = readSafetensors(tiny('generate_greedy_cfg1.5.safetensors'));
  const res = m.autoregressiveInfer({ labels: [3, 7], vqvae, cfg: 1.5, topK: 1, decode: false });
  assertSameInts(res.idxBL, fx.get('idx_BL')!, 'idx_BL from .pth');
  // the trainer checkpoint layout: trainer.var_wo_ddp is picked (a 3-tensor stand-in, not a VAR)
  const ck = readVarStateDict(pthFixture('torch2.11_cuda_ckpt.pth'));
  assert.deepEqual([...ck.keys()], ['lvl', '1.weight', '1.bias']);
  assert.throws(() => loadVar(pthFixture('torch2.11_cuda_ckpt.pth')), VarWeightsError);
});

/** A random model of another architecture with O(1) weights (the official init would hide bugs behind 1e-5 gammas). */
function otherArch(shared: boolean, seed = 7): VAR {
  const cfg = varConfigForDepth(3, {
    width: 64, heads: 2, mlpHidden: 96, vocabSize: 32, Cvae: 4, numClasses: 5, sharedAdaLN: shared,
    patchNums: [1, 2, 4], condDropRate: 0, dropPathRate: 0,
  });
  const rng = new Rng(seed);
  const params = initVarParams(cfg, rng, { initStd: 0.2, initAdaln: 1, initAdalnGamma: 1, initHead: 1 });
  for (const t of params.values()) { const d = t.f32; for (let i = 0; i < d.length; i++) d[i] += 0.1 * rng.normal(); }
  return new VAR(cfg, params);
}

function randomInput(rng: Rng, B: number, model: VAR): Tensor {
  return randTensor(rng, [B, model.L - 1, model.config.Cvae], false);
}

/** Logits of every scale by KV-cache inference, fed the same inputs as the teacher-forced forward. */
function stepwiseLogits(model: VAR, labels: number[], x: Tensor): Tensor[] {
  return noGrad(() => {
    const state = model.beginInference(labels);
    const out: Tensor[] = [model.inferScale(state, model.sosInput(state))];
    for (let si = 1; si < model.numScales; si++) {
      const [bg, ed] = model.beginEnds[si];
      out.push(model.inferScale(state, model.scaleInput(si, slice(x, 1, bg - 1, ed - 1))));
    }
    return out;
  });
}

for (const shared of [true, false]) {
  test(`another architecture (pn 1,2,4; depth 3; ${shared ? 'shared' : 'per-block'} AdaLN): save → reload infers it; teacher-forced == KV-cache inference`, () => {
    const model = otherArch(shared);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'actvar-var-'));
    try {
      const file = path.join(dir, 'other.safetensors');
      writeSafetensors(file, model.stateDict(), undefined, { intDtype: 'I64' });
      const re = loadVar(file, { condDropRate: 0, dropPathRate: 0 });
      assert.deepEqual(re.config, model.config);
      assert.equal(re.config.sharedAdaLN, shared);
      const rng = new Rng(3);
      const labels = [1, 4, 5];
      const x = randomInput(rng, labels.length, re);
      const tf = noGrad(() => re.forward(labels, x));
      const again = noGrad(() => model.forward(labels, x));
      assert.equal(maxAbsDiff(tf, again), 0, 'reloaded model differs');
      const steps = stepwiseLogits(re, labels, x);
      for (let si = 0; si < re.numScales; si++) {
        const [bg, ed] = re.beginEnds[si];
        assertClose(steps[si], slice(tf, 1, bg, ed), `scale ${si}`);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('loader: missing, unexpected and mis-shaped keys are reported together in one error; buffers are checked', TINY, () => {
  const sd = new Map(readSafetensors(tiny('var_state_dict.safetensors')));
  sd.delete('blocks.1.ffn.fc2.bias');
  sd.delete('head.bias');
  sd.set('blocks.0.attn.extra', new Tensor(new Float32Array(3), [3]));
  sd.set('blocks.0.attn.proj.bias', new Tensor(new Float32Array(127), [127]));
  const zk = sd.get('blocks.0.attn.zero_k_bias')!;
  const bad = new Float32Array(zk.f32); bad[5] = 1;
  sd.set('blocks.0.attn.zero_k_bias', new Tensor(bad, zk.shape));
  try {
    varFromStateDict(sd, {}, 'test.safetensors');
    assert.fail('should have thrown');
  } catch (e) {
    assert.ok(e instanceof VarWeightsError, String(e));
    const msg = (e as Error).message;
    for (const s of ['blocks.1.ffn.fc2.bias', 'head.bias', 'blocks.0.attn.extra', 'blocks.0.attn.proj.bias: got [127]', 'zero_k_bias[5] = 1', 'test.safetensors']) {
      assert.ok(msg.includes(s), `message lacks '${s}':\n${msg}`);
    }
    assert.equal((e as VarWeightsError).problems.length, 5);
  }
  // not a VAR at all
  assert.throws(() => varFromStateDict(new Map([['foo', new Tensor(new Float32Array(1), [1])]])), /cannot infer the VAR architecture/);
  // inconsistent lvl_1L
  const sd2 = new Map(readSafetensors(tiny('var_state_dict.safetensors')));
  const lv = sd2.get('lvl_1L')!;
  const l2 = new Int32Array(lv.i32); l2[3] = 2; l2[4] = 2; l2[5] = 2; l2[6] = 2; l2[7] = 2; // 1 token at level 1 → not a square count… or a gap
  sd2.set('lvl_1L', new Tensor(l2, lv.shape));
  assert.throws(() => varFromStateDict(sd2), /lvl_1L/);
});

test('label dropout only when training; drop-path draws per sample', () => {
  const model = otherArch(false);
  const rng = new Rng(1);
  const x = randomInput(rng, 2, model);
  const a = noGrad(() => model.forward([1, 2], x));
  const b = noGrad(() => model.forward([1, 2], x, { training: false, rng: new Rng(5) }));
  assert.equal(maxAbsDiff(a, b), 0);
  const always = new VAR({ ...model.config, condDropRate: 0.999999 }, model.params);
  const dropped = noGrad(() => always.forward([1, 2], x, { training: true, rng: new Rng(5) }));
  const nul = noGrad(() => model.forward([5, 5], x));
  assert.equal(maxAbsDiff(dropped, nul), 0);
  const dp = new VAR({ ...model.config, dropPathRate: 0.5 }, model.params);
  const r1 = noGrad(() => dp.forward([1, 2], x, { training: true, rng: new Rng(9) }));
  const r2 = noGrad(() => dp.forward([1, 2], x, { training: true, rng: new Rng(9) }));
  assert.equal(maxAbsDiff(r1, r2), 0, 'seeded drop-path is deterministic');
  assert.ok(maxAbsDiff(r1, a) > 1e-3, 'drop-path changes the output');
  assert.throws(() => always.forward([1, 2], x, { training: true }), /needs an rng/);
});

test('gradients of the teacher-forced forward (finite differences, both AdaLN variants)', () => {
  for (const shared of [false, true]) {
    const cfg = varConfigForDepth(2, {
      width: 8, heads: 2, mlpHidden: 12, vocabSize: 6, Cvae: 3, numClasses: 3, sharedAdaLN: shared,
      patchNums: [1, 2], condDropRate: 0, dropPathRate: 0,
    });
    const rng = new Rng(shared ? 2 : 1);
    const params = initVarParams(cfg, rng, { initStd: 0.4, initAdaln: 1, initAdalnGamma: 1, initHead: 1 });
    for (const t of params.values()) { const d = t.f32; for (let i = 0; i < d.length; i++) d[i] += 0.2 * rng.normal(); }
    const model = new VAR(cfg, params).setRequiresGrad(true);
    const x = randTensor(rng, [2, model.L - 1, cfg.Cvae], true);
    const inputs = [x, ...model.params.values()];
    gradcheck(() => model.forward([0, 3], x), inputs, { eps: 3e-3, tol: 3e-2, maxChecks: 8, seed: 11 });
    model.setRequiresGrad(false);
  }
});

test('fused block ops: gradients of adaLNModulate, gatedResidual and masked attention', () => {
  const rng = new Rng(4);
  const x = randTensor(rng, [2, 3, 5]), s = randTensor(rng, [2, 5]), sh = randTensor(rng, [2, 5]);
  gradcheck((a, b, c) => adaLNModulate(a, b, c, 1e-6), [x, s, sh], { eps: 1e-3 });
  const y = randTensor(rng, [2, 3, 5]), g = randTensor(rng, [2, 5]);
  gradcheck((a, b, c) => gatedResidual(a, b, c, Float32Array.of(2, 0)), [x, y, g], { eps: 1e-3 });
  const model = otherArch(false);
  const blk = model.blocks[0];
  const q = randTensor(rng, [2, 2, 3, 32]), k = randTensor(rng, [2, 2, 3, 32]), v = randTensor(rng, [2, 2, 3, 32]);
  const bias = blockCausalBias(Int32Array.of(0, 1, 1));
  gradcheck((a, b, c) => attend(blk, a, b, c, bias), [q, k, v], { eps: 1e-3 });
});

test('ActVAR hooks: a blockExecutor built from the exported pieces reproduces the dense model; KV cache is explicit', TINY, () => {
  const { model, vqvae } = tinyModels();
  const base = model.autoregressiveInfer({ labels: [3, 7], vqvae, cfg: 1.5, topK: 5, topP: 0.9, rng: [new Rng(1), new Rng(2)], decode: false });
  const calls: string[] = [];
  // every piece by hand: AdaLN modulation, QKV, explicit append + attention, projection, FFN, residuals
  const executor = (ctx: BlockContext): Tensor | undefined => {
    calls.push(`${ctx.scaleIndex}:${ctx.blockIndex}`);
    assert.equal(ctx.mode, 'infer');
    const { block, ada, x } = ctx;
    const [bg, ed] = ctx.tokenRange;
    assert.equal(x.shape[1], ed - bg);
    assert.equal(ctx.cache!.len, bg, 'the cache holds exactly the earlier scales');
    if (ctx.blockIndex === 0) {
      const xn = adaLNModulate(x, ada.scale1, ada.shift1, block.eps);
      const { q, k, v } = attentionQKV(block, xn);
      const a = attendWithCache(block, q, k, v, ctx.cache!);
      const x1 = gatedResidual(x, attnProj(block, a), ada.gamma1);
      const xn2 = adaLNModulate(x1, ada.scale2, ada.shift2, block.eps);
      return gatedResidual(x1, ffn(block, xn2), ada.gamma2);
    }
    return ffnBranch(block, attnBranch(block, x, ada, { kind: 'cache', cache: ctx.cache! }), ada);
  };
  const hooked = model.autoregressiveInfer({ labels: [3, 7], vqvae, cfg: 1.5, topK: 5, topP: 0.9, rng: [new Rng(1), new Rng(2)], decode: false, blockExecutor: executor });
  assert.equal(calls.length, model.numScales * model.config.depth);
  assertSameInts(hooked.idxBL, base.idxBL, 'tokens with the hook');
  assert.equal(maxAbsDiff(hooked.fHat, base.fHat), 0);
  // returning undefined runs the dense block
  const passthrough = model.autoregressiveInfer({ labels: [3, 7], vqvae, cfg: 1.5, topK: 5, topP: 0.9, rng: [new Rng(1), new Rng(2)], decode: false, blockExecutor: () => undefined });
  assertSameInts(passthrough.idxBL, base.idxBL, 'tokens with a pass-through hook');
  // per-image generators: splitting the batch gives the same tokens
  const one = model.autoregressiveInfer({ labels: [7], vqvae, cfg: 1.5, topK: 5, topP: 0.9, rng: [new Rng(2)], decode: false });
  assert.deepEqual([...one.idxBL.data], [...base.idxBL.data].slice(model.L));
  // cache capacity and shapes are checked
  const c = createKVCache(1, 2, 4, 3);
  appendKV(c, new Tensor(new Float32Array(16), [1, 2, 2, 4]), new Tensor(new Float32Array(16), [1, 2, 2, 4]));
  assert.equal(c.len, 2);
  assert.throws(() => appendKV(c, new Tensor(new Float32Array(16), [1, 2, 2, 4]), new Tensor(new Float32Array(16), [1, 2, 2, 4])), /capacity/);
  // the teacher-forced forward offers the same hook
  const fx = readSafetensors(tiny('forward.safetensors'));
  let teacherCalls = 0;
  const tf = noGrad(() => model.forward(fx.get('label_B')!, fx.get('x_direct')!, {
    blockExecutor: (ctx) => { teacherCalls++; assert.equal(ctx.mode, 'teacher'); assert.ok(ctx.attnBias); return undefined; },
  }));
  assert.equal(teacherCalls, model.config.depth);
  assertClose(tf, fx.get('forward_logits_direct')!, 'teacher forward with hook');
});

test('sampling options are validated; more_smooth uses codebook mixtures', TINY, () => {
  const { model, vqvae } = tinyModels();
  assert.throws(() => model.autoregressiveInfer({ labels: [3], vqvae, cfg: -1 }), /cfg/);
  assert.throws(() => model.autoregressiveInfer({ labels: [3], vqvae, topP: 1.5 }), /top-p/);
  assert.throws(() => model.autoregressiveInfer({ labels: [3], vqvae, topK: -2 }), /top-k/);
  assert.throws(() => model.autoregressiveInfer({ labels: [11], vqvae }), /class id 11 is out of range/);
  const a = model.autoregressiveInfer({ labels: [3, 7], vqvae, cfg: 4, topK: 10, moreSmooth: true, rng: new Rng(3), decode: false });
  const b = model.autoregressiveInfer({ labels: [3, 7], vqvae, cfg: 4, topK: 10, moreSmooth: true, rng: new Rng(3), decode: false });
  assert.equal(maxAbsDiff(a.fHat, b.fHat), 0);
  const c = model.autoregressiveInfer({ labels: [3, 7], vqvae, cfg: 4, topK: 10, moreSmooth: false, rng: new Rng(3), decode: false });
  assert.ok(maxAbsDiff(a.fHat, c.fHat) > 0, 'more_smooth changes f̂');
  // cfg = 0 skips the unconditional half: same tokens as running the doubled batch with t = 0
  const z = model.autoregressiveInfer({ labels: [3, 7], vqvae, cfg: 0, topK: 1, decode: false });
  const fx = readSafetensors(tiny('generate_greedy_cfg1.5.safetensors'));
  assert.deepEqual([...z.idxBL.data].slice(0, 1), [...fx.get('idx_BL')!.data].slice(0, 1)); // scale 0 has t = 0 in both
});

test('FLOPs of a d16 generation with CFG (dry run) match docs/VAR.md §10', () => {
  const cfg = varPreset('d16');
  // zero weights: allocated lazily by the OS and never read in dry-run mode
  const params = new Map<string, Tensor>();
  for (const [k, t] of varParamShapes(cfg)) params.set(k, new Tensor(new Float32Array(t.reduce((a, b) => a * b, 1)), t));
  const model = new VAR(cfg, params);
  const vqvae = VQVAE.random({ patchNums: cfg.patchNums, Cvae: 32, vocabSize: 4096, ch: 32 }, new Rng(0));
  const run = (recompute: boolean) => countFlops(() => dryRun(() => model.autoregressiveInfer({
    labels: [207], vqvae, cfg: 1.5, topK: 900, topP: 0.96, decode: false, recomputeAdaLN: recompute,
  }))).flops.toJSON();
  const G = (x: number | undefined) => (x ?? 0) / 1e9;
  const f = run(true);
  const table: Record<string, number> = { qkv: 136.9, attn_proj: 45.6, attn_scores: 37.5, ffn: 365.1, adaln: 4.03, head: 11.49 };
  for (const [k, v] of Object.entries(table)) assert.ok(Math.abs(G(f[k]) - v) <= 0.1, `${k}: ${G(f[k]).toFixed(3)} vs §10 ${v}`);
  assert.ok(Math.abs(G(f.word_embed) + G(f.phi) - 0.09) <= 0.01, `word_embed+Phi ${G(f.word_embed) + G(f.phi)}`);
  const total = Object.values(f).reduce((a, b) => a + b, 0) / 1e9;
  assert.ok(Math.abs(total - 600.8) <= 0.1, `total ${total.toFixed(2)} vs 600.8`);
  // with the AdaLN computed once (our default) only that category shrinks: 12·C² per row per block, once
  const g = run(false);
  assert.ok(Math.abs(G(g.adaln) - (12 * 1024 * 1024 * 2 * 16) / 1e9) < 1e-9, `cached adaln ${G(g.adaln)}`);
  for (const k of ['qkv', 'attn_proj', 'attn_scores', 'ffn']) assert.equal(g[k], f[k]);
});

test('random init follows §3.7 (std, gammas, head, scale_mul) and is seeded', () => {
  const cfg = varConfigForDepth(2, { width: 64, heads: 2, vocabSize: 16, Cvae: 4, numClasses: 3, patchNums: [1, 2] });
  const a = randomVar(cfg, 5), b = randomVar(cfg, 5), c = randomVar(cfg, 6);
  const w = (m: VAR, k: string) => m.params.get(k)!.f32;
  assert.deepEqual(w(a, 'blocks.0.attn.mat_qkv.weight'), w(b, 'blocks.0.attn.mat_qkv.weight'));
  assert.notDeepEqual(w(a, 'blocks.0.attn.mat_qkv.weight'), w(c, 'blocks.0.attn.mat_qkv.weight'));
  const std = (d: Float32Array) => Math.sqrt(d.reduce((s, x) => s + x * x, 0) / d.length);
  const s = Math.sqrt(1 / (3 * 64));
  assert.ok(Math.abs(std(w(a, 'blocks.0.attn.mat_qkv.weight')) / s - 1) < 0.05);
  assert.ok(Math.abs(std(w(a, 'head.weight')) / (0.02 * s) - 1) < 0.1);
  assert.ok(Math.abs(std(w(a, 'blocks.1.ffn.fc2.weight')) / (s / 2) - 1) < 0.05);
  const ada = w(a, 'blocks.0.ada_lin.1.weight');
  assert.ok(std(ada.subarray(0, 2 * 64 * 64)) < 1e-5 * s * 1.2);
  assert.ok(Math.abs(std(ada.subarray(2 * 64 * 64)) / (0.5 * s) - 1) < 0.05);
  assert.ok(w(a, 'blocks.0.attn.scale_mul_1H11').every((v) => Math.abs(v - Math.log(4)) < 1e-6));
  assert.ok(w(a, 'blocks.0.attn.q_bias').every((v) => v === 0));
});

test('fast inference kernels: table exp and interpolated GELU agree with the exact functions', () => {
  let maxRel = 0;
  for (let i = 0; i <= 200000; i++) {
    const x = -89.9 * (i / 200000) ** 2; // below −90 (float32 denormals) the table returns 0
    const e = Math.exp(x);
    maxRel = Math.max(maxRel, Math.abs(tableExpNonPositive(x) - e) / e);
  }
  assert.ok(maxRel < 1e-8, `exp rel err ${maxRel}`);
  assert.equal(tableExpNonPositive(-Infinity), 0);
  assert.equal(tableExpNonPositive(0), 1);
  assert.ok(Number.isNaN(tableExpNonPositive(NaN)));
  let maxAbs = 0;
  for (let i = 0; i <= 200000; i++) {
    const x = -12 + 24 * (i / 200000);
    maxAbs = Math.max(maxAbs, Math.abs(geluFast(x) - geluExact(x)) / Math.max(1, Math.abs(x)));
  }
  assert.ok(maxAbs < 1e-8, `gelu err ${maxAbs}`);
  assert.ok(Number.isNaN(geluFast(NaN)));
  assert.equal(geluFast(100), 100);
});
