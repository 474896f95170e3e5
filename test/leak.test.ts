/**
 * Leak test: 1,000 training steps (forward, loss, backward, AdamW step, zeroGrad) of a small
 * embedding + MLP model must not grow the number of live tensors, the JS heap or the ArrayBuffer
 * memory. Needs --expose-gc (the test script passes it).
 */
import './util/setup.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../src/tensor/index.js';
import { liveTensors } from '../src/tensor/tensor.js';
import { AdamW, clipGradNorm, paramGroups } from '../src/optim/index.js';

const gc = (globalThis as { gc?: () => void }).gc;

/** Full GC, then let FinalizationRegistry callbacks (which keep liveTensors() exact) run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) {
    gc!();
    await new Promise((r) => setImmediate(r));
  }
}

interface Sample { live: number; heap: number; buffers: number }
async function sample(): Promise<Sample> {
  await settle();
  const m = process.memoryUsage();
  return { live: liveTensors(), heap: m.heapUsed, buffers: m.arrayBuffers };
}
const avg = (xs: Sample[], k: keyof Sample) => xs.reduce((s, x) => s + x[k], 0) / xs.length;

test('liveTensors() sees retained tensors and their release (control)', { skip: !gc && 'run with --expose-gc' }, async () => {
  await settle();
  const before = liveTensors();
  let kept: T.Tensor[] | null = Array.from({ length: 500 }, () => T.zeros([4]));
  await settle();
  assert.ok(liveTensors() >= before + 500, `expected ≥ ${before + 500} live tensors, got ${liveTensors()}`);
  assert.equal(kept.length, 500);
  kept = null;
  await settle();
  assert.ok(liveTensors() <= before + 5, `tensors not released: ${liveTensors()} vs ${before}`);
});

test('1,000 training steps leak no tensors, heap or array buffers', { skip: !gc && 'run with --expose-gc' }, async (t) => {
  const rng = new T.Rng(3);
  const randn = (shape: number[], s: number, name: string) => {
    const n = shape.reduce((a, b) => a * b, 1), d = new Float32Array(n);
    for (let i = 0; i < n; i++) d[i] = rng.normal() * s;
    return T.param(d, shape, name);
  };
  const V = 50, E = 16, H = 64, O = 8, B = 32;
  const named = new Map<string, T.Tensor>([
    ['embed.weight', randn([V, E], 0.5, 'embed.weight')],
    ['fc1.weight', randn([H, E], 1 / Math.sqrt(E), 'fc1.weight')], ['fc1.bias', randn([H], 0, 'fc1.bias')],
    ['fc2.weight', randn([O, H], 1 / Math.sqrt(H), 'fc2.weight')], ['fc2.bias', randn([O], 0, 'fc2.bias')],
  ]);
  const p = (k: string) => named.get(k)!;
  const opt = new AdamW(paramGroups(named, 0.01), { lr: 3e-3, betas: [0.9, 0.95] });
  // a fixed regression task: target = a fixed random function of the token
  const table = new Float32Array(V * O);
  for (let i = 0; i < table.length; i++) table[i] = rng.normal();
  const tokens = new Int32Array(B);

  const stepOnce = (): number => {
    for (let i = 0; i < B; i++) tokens[i] = rng.int(V);
    const idx = new T.Tensor(tokens.slice(), [B]);
    const target = T.gatherRows(new T.Tensor(table, [V, O]), idx);
    const h = T.gelu(T.linear(T.embedding(p('embed.weight'), idx), p('fc1.weight'), p('fc1.bias')));
    const y = T.linear(h, p('fc2.weight'), p('fc2.bias'));
    const loss = T.mean(T.square(T.sub(y, target)));
    loss.backward();
    clipGradNorm(named.values(), 5);
    opt.step();
    opt.zeroGrad();
    return loss.f32[0];
  };

  const t0 = performance.now();
  const early: Sample[] = [], late: Sample[] = [];
  let firstLoss = 0, lastLoss = 0;
  for (let s = 0; s < 1000; s++) {
    const l = stepOnce();
    if (s < 20) firstLoss += l / 20;
    if (s >= 980) lastLoss += l / 20;
    // window after warm-up: steps 100..200; window at the end: steps 900..1000
    if ((s >= 100 && s < 200 && s % 20 === 19) || (s >= 900 && s % 20 === 19)) (s < 200 ? early : late).push(await sample());
  }
  const secs = (performance.now() - t0) / 1000;

  const dLive = avg(late, 'live') - avg(early, 'live');
  const dHeap = avg(late, 'heap') - avg(early, 'heap');
  const dBuf = avg(late, 'buffers') - avg(early, 'buffers');
  const msg = `Δlive=${dLive.toFixed(1)} Δheap=${(dHeap / 1024).toFixed(0)} KiB Δbuffers=${(dBuf / 1024).toFixed(0)} KiB over 800 steps (${secs.toFixed(1)} s)`;
  t.diagnostic(`${msg}; loss ${firstLoss.toFixed(3)} → ${lastLoss.toFixed(3)}; live ≈ ${avg(late, 'live').toFixed(0)}`);
  assert.ok(dLive <= 2, `live tensors grew: ${msg}`);
  assert.ok(dHeap < 1024 * 1024, `heap grew: ${msg}`);
  assert.ok(dBuf < 256 * 1024, `array buffers grew: ${msg}`);
  // the model actually trained (the loop is not a no-op)
  assert.ok(lastLoss < 0.5 * firstLoss, `loss did not fall: ${firstLoss.toFixed(3)} → ${lastLoss.toFixed(3)}`);
  // at this point only parameters, their optimiser moments and the table stay alive
  assert.ok(avg(late, 'live') < 100, `unexpectedly many live tensors: ${avg(late, 'live')}`);
});
