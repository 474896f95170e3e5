/**
 * Benchmark: one training step of a pre-LN transformer block (forward + backward + AdamW step),
 * against the same step in PyTorch (bench/block_train_torch.py) at the same thread count.
 *
 *   x1 = x + proj(attn(LN1(x)))          attn: plain softmax(q·kᵀ/√d)·v per head, no mask
 *   y  = x1 + fc2(gelu(fc1(LN2(x1))))    GELU tanh approximation; LayerNorm with affine, eps 1e-6
 *   loss = mse(y, target); AdamW(lr 1e-4, betas (0.9, 0.95), wd 0.05 on matrices only)
 *
 * Default shape: batch 8, sequence 104, width 256, 4 heads, FFN 1024 (float32).
 * Run: node dist/bench/block-train.js [--threads T] [--steps 20] [--warmup 3] [--no-torch] [--profile]
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import * as T from '../src/tensor/index.js';
import { backend, useNodeBackend } from '../src/backend/node.js';
import { AdamW } from '../src/optim/index.js';

useNodeBackend(); // the backend from the environment (ACTVAR_BACKEND, …), as the CLI does

export interface BlockTrainOptions {
  batch?: number; seq?: number; width?: number; heads?: number; ffn?: number;
  /** Timed steps (median reported). */
  steps?: number;
  /** Untimed steps first. */
  warmup?: number;
  /** Also run the PyTorch reference (if importable). Default true. */
  torch?: boolean;
  /** Print a per-op time breakdown of one step (forward ops, backward nodes, optimiser). */
  profile?: boolean;
  /** Backend thread count (default: the backend's, i.e. ACTVAR_THREADS or all cores). PyTorch gets the same. */
  threads?: number;
  /** Print lines (default true). */
  log?: boolean;
}

export interface BlockTrainResult {
  name: 'block-train';
  shape: { batch: number; seq: number; width: number; heads: number; ffn: number };
  threads: number;
  backend: string;
  /** Median / min ms per training step of actvar's tensor core. */
  medianMs: number;
  minMs: number;
  /** Matmul GFLOP per step (forward + backward). */
  gflop: number;
  /** PyTorch reference, when available. */
  torch: { medianMs: number; minMs: number; version: string; threads: number } | null;
  /** Why there is no PyTorch number, if there is none. */
  torchNote?: string;
  /** Per-op breakdown (ms) of one step, when profiled. */
  profile?: Record<string, number>;
}

interface Block {
  ln1w: T.Tensor; ln1b: T.Tensor; ln2w: T.Tensor; ln2b: T.Tensor;
  qkvW: T.Tensor; qkvB: T.Tensor; projW: T.Tensor; projB: T.Tensor;
  fc1W: T.Tensor; fc1B: T.Tensor; fc2W: T.Tensor; fc2B: T.Tensor;
}

function makeBlock(rng: T.Rng, C: number, FF: number): Block {
  const w = (o: number, i: number, name: string) => {
    const d = new Float32Array(o * i);
    for (let k = 0; k < d.length; k++) d[k] = rng.normal() * 0.02;
    return T.param(d, [o, i], name);
  };
  const c = (n: number, v: number, name: string) => T.param(new Float32Array(n).fill(v), [n], name);
  return {
    ln1w: c(C, 1, 'ln1.weight'), ln1b: c(C, 0, 'ln1.bias'), ln2w: c(C, 1, 'ln2.weight'), ln2b: c(C, 0, 'ln2.bias'),
    qkvW: w(3 * C, C, 'attn.qkv.weight'), qkvB: c(3 * C, 0, 'attn.qkv.bias'),
    projW: w(C, C, 'attn.proj.weight'), projB: c(C, 0, 'attn.proj.bias'),
    fc1W: w(FF, C, 'ffn.fc1.weight'), fc1B: c(FF, 0, 'ffn.fc1.bias'),
    fc2W: w(C, FF, 'ffn.fc2.weight'), fc2B: c(C, 0, 'ffn.fc2.bias'),
  };
}

type Timer = <R>(key: string, f: () => R) => R;
const untimed: Timer = (_key, f) => f();

/** The block's forward pass and MSE loss; `time` labels each op for the profile. */
function forward(p: Block, x: T.Tensor, target: T.Tensor, B: number, L: number, C: number, H: number, time: Timer = untimed): T.Tensor {
  const h = time('fwd layerNorm', () => T.layerNorm(x, 1e-6, p.ln1w, p.ln1b));
  const qkv = time('fwd linear', () => T.linear(h, p.qkvW, p.qkvB)); // [B, L, 3C] = (q | k | v)
  const o = time('fwd attention', () => T.attention(qkv, H)); // softmax(q·kᵀ/√D)·v per head, heads merged: [B, L, C]
  const x1 = time('fwd add', () => T.add(x, time('fwd linear', () => T.linear(o, p.projW, p.projB))));
  const h2 = time('fwd layerNorm', () => T.layerNorm(x1, 1e-6, p.ln2w, p.ln2b));
  const f1 = time('fwd linear', () => T.linear(h2, p.fc1W, p.fc1B));
  const g1 = time('fwd gelu', () => T.gelu(f1));
  const y = time('fwd add', () => T.add(x1, time('fwd linear', () => T.linear(g1, p.fc2W, p.fc2B))));
  return time('fwd mseLoss', () => T.mseLoss(y, target));
}

const median = (xs: number[]) => { const s = xs.slice().sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };

/**
 * A python that can import torch: $ACTVAR_PYTHON if set (only that one), else the first of python3
 * and /usr/bin/python3 (Debian's python3-torch lives in the system python, which a pyenv shim may hide).
 */
function findTorchPython(): string | null {
  const cands = process.env.ACTVAR_PYTHON ? [process.env.ACTVAR_PYTHON] : ['python3', '/usr/bin/python3'];
  for (const py of cands) {
    const r = spawnSync(py, ['-c', 'import torch'], { stdio: 'ignore', timeout: 60_000 });
    if (r.status === 0) return py;
  }
  return null;
}

/**
 * Wrap every op's backward closure with a timer keyed by op name (for --profile). The forward ops
 * are timed by the caller; the graph is walked once before backward().
 */
function instrumentBackward(root: T.Tensor, acc: Map<string, number>): void {
  const seen = new Set<T.Tensor>();
  const stack = [root];
  while (stack.length) {
    const t = stack.pop()!;
    if (seen.has(t) || !t.node) continue;
    seen.add(t);
    const node = t.node, inner = node.backward.bind(node), key = `bwd ${node.op}`;
    t.node = { op: node.op, inputs: node.inputs, backward: (g) => {
      const t0 = performance.now();
      const r = inner(g);
      acc.set(key, (acc.get(key) ?? 0) + performance.now() - t0);
      return r;
    } };
    for (const i of node.inputs) stack.push(i);
  }
}

export function benchBlockTrain(opts: BlockTrainOptions = {}): BlockTrainResult {
  const B = opts.batch ?? 8, L = opts.seq ?? 104, C = opts.width ?? 256, H = opts.heads ?? 4, FF = opts.ffn ?? 1024;
  const steps = opts.steps ?? 20, warmup = opts.warmup ?? 3, log = opts.log ?? true;
  if (C % H !== 0) throw new RangeError(`benchBlockTrain: width ${C} is not divisible by heads ${H}`);
  const be = backend();
  if (opts.threads !== undefined) be.setThreads(opts.threads);
  const rng = new T.Rng(0);
  const p = makeBlock(rng, C, FF);
  const rand = (n: number) => { const d = new Float32Array(n); for (let i = 0; i < n; i++) d[i] = rng.normal(); return d; };
  const x = new T.Tensor(rand(B * L * C), [B, L, C]);
  const target = new T.Tensor(rand(B * L * C), [B, L, C]);
  const opt = new AdamW([
    { params: [p.qkvW, p.projW, p.fc1W, p.fc2W], weightDecay: 0.05 },
    { params: [p.ln1w, p.ln1b, p.ln2w, p.ln2b, p.qkvB, p.projB, p.fc1B, p.fc2B], weightDecay: 0 },
  ], { lr: 1e-4, betas: [0.9, 0.95] });

  const step = () => {
    opt.zeroGrad();
    const loss = forward(p, x, target, B, L, C, H);
    loss.backward();
    opt.step();
    return loss.f32[0];
  };
  // GEMM FLOPs: the forward's, counted in dry-run mode, times 3 (each matmul's backward is two
  // GEMMs of the same size, since every operand here needs a gradient)
  const { flops } = T.countFlops(() => T.noGrad(() => T.dryRun(() => forward(p, x, target, B, L, C, H))));

  for (let i = 0; i < warmup; i++) step();
  const times: number[] = [];
  for (let i = 0; i < steps; i++) {
    const t0 = performance.now();
    step();
    times.push(performance.now() - t0);
  }
  const res: BlockTrainResult = {
    name: 'block-train', shape: { batch: B, seq: L, width: C, heads: H, ffn: FF },
    threads: be.threads, backend: be.native ? `${be.name} + native elementwise` : be.name, medianMs: median(times), minMs: Math.min(...times),
    gflop: 3 * flops.total / 1e9, torch: null,
  };

  if (opts.profile) {
    // Steps with every op timed: forward ops by label, backward by grad node (closures wrapped),
    // the engine's own work (topological sort, gradient accumulation) as the rest of backward(),
    // and the optimiser. Nested labels (scale inside softmax, linear inside add) are subtracted by
    // timing the inner call separately, so keys are exclusive. Min per key over 5 steps (robust to
    // other processes on the machine).
    const best = new Map<string, number>();
    for (let rep = 0; rep < 5; rep++) {
      const acc = new Map<string, number>();
      const stack: number[] = []; // time spent in nested timed calls, per open call
      const time: Timer = (k, f) => {
        stack.push(0);
        const t0 = performance.now();
        const r = f();
        const dt = performance.now() - t0, inner = stack.pop()!;
        if (stack.length) stack[stack.length - 1] += dt;
        acc.set(k, (acc.get(k) ?? 0) + dt - inner);
        return r;
      };
      opt.zeroGrad();
      const loss = forward(p, x, target, B, L, C, H, time);
      instrumentBackward(loss, acc);
      const tb = performance.now();
      loss.backward();
      const bwdNodes = [...acc].filter(([kk]) => kk.startsWith('bwd ')).reduce((a2, [, v2]) => a2 + v2, 0);
      acc.set('bwd engine overhead', performance.now() - tb - bwdNodes);
      time('adamw step', () => opt.step());
      for (const [kk, v2] of acc) best.set(kk, Math.min(best.get(kk) ?? Infinity, v2));
    }
    res.profile = Object.fromEntries([...best].sort((a2, b2) => b2[1] - a2[1]).map(([kk, v2]) => [kk, Math.round(v2 * 100) / 100]));
  }

  if (opts.torch ?? true) {
    const py = findTorchPython();
    if (!py) {
      res.torchNote = 'pytorch: not installed (apt-get install python3-torch)';
    } else {
      const here = path.dirname(fileURLToPath(import.meta.url));
      // dist/bench/block-train.js → bench/block_train_torch.py at the repo root
      const script = path.resolve(here, '../../bench/block_train_torch.py');
      const r = spawnSync(py, [script, '--batch', `${B}`, '--seq', `${L}`, '--width', `${C}`, '--heads', `${H}`, '--ffn', `${FF}`,
        '--steps', `${steps}`, '--warmup', `${warmup}`, '--threads', `${be.threads}`], { encoding: 'utf8', timeout: 600_000 });
      const line = (r.stdout ?? '').trim().split('\n').pop() ?? '';
      try {
        const j = JSON.parse(line) as { median_ms: number; min_ms: number; torch: string; threads: number };
        res.torch = { medianMs: j.median_ms, minMs: j.min_ms, version: j.torch, threads: j.threads };
      } catch {
        res.torchNote = `pytorch: run failed (${py} ${script}): ${(r.stderr ?? '').trim().split('\n').pop() ?? `exit ${r.status}`}`;
      }
    }
  }

  if (log) {
    const f = (v: number) => v.toFixed(1).padStart(8);
    console.log(`block-train: pre-LN transformer block, batch ${B}, seq ${L}, width ${C}, ${H} heads, FFN ${FF}; fwd+bwd+AdamW, ${res.gflop.toFixed(2)} GFLOP/step`);
    console.log(`  backend ${be.name}${be.native ? ' + native elementwise' : ' (elementwise in TypeScript)'}, ${be.threads} thread(s); median of ${steps} steps after ${warmup} warm-up`);
    console.log(`  ${'impl'.padEnd(22)}${'median ms'.padStart(10)}${'min ms'.padStart(9)}${'GFLOP/s'.padStart(9)}`);
    console.log(`  ${'actvar'.padEnd(22)}${f(res.medianMs)}  ${f(res.minMs)} ${f(res.gflop / res.medianMs * 1e3)}`);
    if (res.torch) {
      console.log(`  ${`pytorch ${res.torch.version}`.padEnd(22)}${f(res.torch.medianMs)}  ${f(res.torch.minMs)} ${f(res.gflop / res.torch.medianMs * 1e3)}   (${res.torch.threads} thread(s))`);
      console.log(`  ratio actvar/pytorch: ${(res.medianMs / res.torch.medianMs).toFixed(2)}×`);
    } else if (res.torchNote) console.log(`  ${res.torchNote}`);
    if (res.profile) {
      console.log('  profile of one step (ms, min over 5 steps per entry; matmul/linear include their GEMMs):');
      for (const [k, v] of Object.entries(res.profile)) console.log(`    ${k.padEnd(30)}${v.toFixed(2).padStart(9)}`);
    }
  }
  return res;
}

// run directly: node dist/bench/block-train.js [--threads T] [--steps N] [--warmup N] [--no-torch] [--profile]
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const a = process.argv.slice(2);
  const num = (flag: string) => { const i = a.indexOf(flag); return i >= 0 ? Number(a[i + 1]) : undefined; };
  benchBlockTrain({ threads: num('--threads'), steps: num('--steps'), warmup: num('--warmup'), torch: !a.includes('--no-torch'), profile: a.includes('--profile') });
}
