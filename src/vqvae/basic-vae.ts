/**
 * Encoder and decoder of the multi-scale VQVAE (official `models/basic_vae.py`, var-reference.md §4).
 *
 * Modules hold no tensors: they read their parameters by official state-dict name from a shared
 * `Map<string, Tensor>` at every forward, so the same map can be loaded, trained in place or swapped.
 * Building a module also records the name, shape and kind of each parameter it needs in a `SpecTable`,
 * which the VQVAE uses to check a loaded state dict and to initialise random weights.
 *
 * Everything is composed from differentiable tensor ops (conv2d, groupNorm, silu, softmax, matmul,
 * nearest upsampling) so the tokenizer can be trained. When no gradient is needed, the 3×3 convs take
 * a fast path (shifted GEMMs, with GroupNorm+SiLU, upsampling and the residual add fused into the
 * copies around them; see conv3x3Same).
 */
import { backend, type JsWorkerPool } from '../backend/index.js';
import {
  Tensor, isGradEnabled, add, silu, scale, reshape, transpose, split, matmul, linear,
  recordFlops, isDryRun,
} from '../tensor/index.js';
import { conv2d, type Conv2dOptions } from '../tensor/ops/conv.js';
import { groupNorm, softmax } from '../tensor/ops/nn.js';
import { upsampleNearest2x } from '../tensor/ops/resample.js';

export type StateDict = Map<string, Tensor>;

/** What a parameter is, for initialisation: conv kernels and biases use U(±1/√fanIn) (torch's default). */
export type ParamKind = 'convWeight' | 'convBias' | 'normWeight' | 'normBias' | 'codebook';
export interface ParamSpec { shape: number[]; kind: ParamKind; fanIn: number }
/** State-dict key → what the model expects there. */
export type SpecTable = Map<string, ParamSpec>;

/** Shared by all modules of one model: the parameters, the spec table being built, and GroupNorm groups. */
export interface ModuleCtx {
  sd: StateDict;
  specs: SpecTable;
  /** Groups of every `Normalize` (official 32). */
  normGroups: number;
}

function needsGrad(...ts: (Tensor | null | undefined)[]): boolean {
  return isGradEnabled() && ts.some((t) => t?.requiresGrad);
}

// ---------------------------------------------------------------------------------------------
// inference fast path for the 3×3 'same' convolutions (stride 1, padding 1)

/**
 * How the input is written into the padded buffer: as is, through SiLU, nearest-upsampled ×2, or
 * through GroupNorm then SiLU (the official `conv(silu(norm(x)))` of every ResnetBlock and the output).
 */
type Prologue =
  | { kind: 'copy' } | { kind: 'silu' } | { kind: 'up2' }
  | { kind: 'gnSilu'; groups: number; weight: Float32Array; bias: Float32Array; eps: number };

const MODE = { copy: 0, silu: 1, up2: 2, gnSilu: 3 } as const;

/**
 * Fill the zero-padded planes P[c, 1 + y, 1 + x] (row length Wp, plane size `plane`) of channels
 * [c0, c1) from X (one batch item at xOff, [Cin, Hin, Win]). Modes: 0 copy, 1 SiLU, 2 nearest ×2,
 * 3 GroupNorm + SiLU (c0, c1 on group boundaries).
 *
 * Mode 3 repeats the arithmetic of the tensor ops exactly, so the values equal silu(groupNorm(x)):
 * groupNorm's float64 statistics shifted by the group's first element, y = fround(x·scale + shift) with
 * scale = rstd·w[c], shift = b[c] − mean·scale; then silu's y·(1/(1 + exp(−y))). (Checked bit for bit
 * by test/vqvae.test.ts.) Self-contained: its source also runs in the worker threads.
 */
function fillKernel(P: Float32Array, X: Float32Array, xOff: number, Cin: number, Hin: number, Win: number,
  Wp: number, plane: number, mode: number, c0: number, c1: number,
  groups: number, gw: Float32Array | null, gb: Float32Array | null, eps: number): void {
  const up = mode === 2;
  const H = up ? 2 * Hin : Hin, W = up ? 2 * Win : Win, hw = Hin * Win;
  const cpg = mode === 3 ? Cin / groups : 1;
  let scale = 1, shift = 0, mean = 0, rstd = 1;
  for (let c = c0; c < c1; c++) {
    if (mode === 3 && (c - c0) % cpg === 0) {
      // statistics of the group starting at channel c
      const b0 = xOff + c * hw, len = cpg * hw, k = len > 0 ? X[b0] : 0;
      let s = 0, s2 = 0;
      for (let j = 0; j < len; j++) { const d = X[b0 + j] - k; s += d; s2 += d * d; }
      const md = s / len;
      const v = Math.max(0, s2 / len - md * md);
      mean = k + md;
      rstd = 1 / Math.sqrt(v + eps);
    }
    if (mode === 3) { scale = rstd * gw![c]; shift = gb![c] - mean * scale; }
    const p0 = c * plane;
    P.fill(0, p0, p0 + Wp + 1); // top border row and the left border of row 1
    for (let y = 0; y < H; y++) {
      const d = p0 + (y + 1) * Wp + 1;
      if (up) {
        const s = xOff + (c * Hin + (y >> 1)) * Win;
        for (let i = 0; i < Win; i++) { const v = X[s + i]; P[d + 2 * i] = v; P[d + 2 * i + 1] = v; }
      } else {
        const s = xOff + (c * Hin + y) * Win;
        if (mode === 3) {
          for (let i = 0; i < Win; i++) { const v = Math.fround(X[s + i] * scale + shift); P[d + i] = v * (1 / (1 + Math.exp(-v))); }
        } else if (mode === 1) {
          for (let i = 0; i < Win; i++) { const v = X[s + i]; P[d + i] = v * (1 / (1 + Math.exp(-v))); }
        } else {
          for (let i = 0; i < Win; i++) P[d + i] = X[s + i];
        }
      }
      P[d + W] = 0; P[d + W + 1] = 0; // right border, left border of the next row
    }
    P.fill(0, p0 + (H + 1) * Wp, p0 + plane); // bottom border row
  }
}

// The backend's helper threads (`backend().workers`, worker_threads under Node) share the SiLU-heavy
// fills (about 10⁸ exp() per 256×256 decode) with the main thread. They read and write two persistent
// SharedArrayBuffer workspaces; the main thread does its share, then waits for them.
let poolSize = -1; // −1: backend threads − 1
let parallelMinFloats = 1 << 18;
/** Counters of the fast path (for tests and benchmarks): calls, split fills, milliseconds per phase. */
export const conv3x3Stats = { calls: 0, parallelFills: 0, fillMs: 0, tapsMs: 0, gemmMs: 0, copyOutMs: 0 };

/** The helper threads for this fill, sized to the wanted count; null when the backend has none. */
function getPool(): JsWorkerPool | null {
  const be = backend(), pool = be.workers ?? null;
  if (!pool) return null;
  const want = poolSize >= 0 ? poolSize : Math.max(0, be.threads - 1);
  if (pool.size !== want) pool.resize(want);
  return pool;
}

/**
 * Options of the inference 3×3 conv; returns the previous values. `enabled`: false runs the composed
 * ops (conv2d, groupNorm, silu, upsampleNearest2x) even without a graph; `bandFloats`: output floats per GEMM
 * band; `workers`: helper threads for the fills (−1 = backend threads − 1, 0 = main thread only);
 * `parallelMinFloats`: smallest fill worth splitting. Tests use tiny values to exercise every path.
 */
export function setConv3x3Options(o: { enabled?: boolean; bandFloats?: number; workers?: number; parallelMinFloats?: number }): { enabled: boolean; bandFloats: number; workers: number; parallelMinFloats: number } {
  const prev = { enabled: fastPathEnabled, bandFloats, workers: poolSize, parallelMinFloats };
  if (o.enabled !== undefined) fastPathEnabled = o.enabled;
  const posInt = (v: number) => Number.isInteger(v) && v > 0;
  if (o.bandFloats !== undefined) {
    if (!posInt(o.bandFloats)) throw new RangeError(`bandFloats must be a positive integer, got ${o.bandFloats}`);
    bandFloats = o.bandFloats;
  }
  if (o.workers !== undefined) {
    if (!Number.isInteger(o.workers) || o.workers < -1) throw new RangeError(`workers must be −1 (auto), 0 or a positive integer, got ${o.workers}`);
    poolSize = o.workers;
  }
  if (o.parallelMinFloats !== undefined) {
    if (!posInt(o.parallelMinFloats)) throw new RangeError(`parallelMinFloats must be a positive integer, got ${o.parallelMinFloats}`);
    parallelMinFloats = o.parallelMinFloats;
  }
  return prev;
}

/** Output floats per GEMM band (Cout × rows × (W+2)); small enough to stay in cache while it is filled. */
let bandFloats = 1 << 20;
let fastPathEnabled = true;

// Workspaces, reused across calls (the padded input is shared with the workers when they run).
let padWorkspace: Float32Array | null = null;
let inWorkspace: Float32Array | null = null;
let bandWorkspace: Float32Array | null = null;
let tapWorkspace: Float32Array | null = null;
function sharedBuffer(old: Float32Array | null, n: number, shared: boolean): Float32Array {
  const isShared = old?.buffer instanceof SharedArrayBuffer;
  if (old && old.length >= n && (isShared || !shared)) return old;
  return shared ? new Float32Array(new SharedArrayBuffer(4 * n)) : new Float32Array(n);
}
/** Drop the workspaces of the inference 3×3 conv (about 2× the largest activation); they regrow on use. */
export function releaseConv3x3Workspaces(): void {
  padWorkspace = inWorkspace = bandWorkspace = tapWorkspace = spareOutput = null;
}

// One dead activation handed back by the encoder/decoder (`recycleActivation`), reused as the next
// output of the same size: the big activations are then recycled instead of left to the garbage
// collector, which frees them late (a 256×256 decode otherwise peaks at several dead 42 MB buffers).
let spareOutput: Float32Array | null = null;
/** Outputs live in shared memory when the fill pool has workers, so they read them without a copy. */
function sharedOutputs(): boolean {
  const be = backend();
  return !!be.workers && (poolSize > 0 || (poolSize < 0 && be.threads > 1));
}
/** A buffer for n output floats (every element is overwritten by the caller). */
function takeOutput(n: number): Float32Array {
  const shared = sharedOutputs(), s = spareOutput;
  if (s && s.length === n && !isDryRun() && (s.buffer instanceof SharedArrayBuffer) === shared) { spareOutput = null; return s; }
  return shared ? new Float32Array(new SharedArrayBuffer(4 * n)) : new Float32Array(n);
}
/** Give a temporary that nothing references any more (and that has no graph) back for reuse. */
function recycleActivation(t: Tensor): void {
  if (!t.requiresGrad && t.dtype === 'float32') spareOutput = t.f32;
}
function bandBuffer(n: number): Float32Array {
  if (!bandWorkspace || bandWorkspace.length < n) bandWorkspace = new Float32Array(n);
  return bandWorkspace;
}

/**
 * Fill P for one batch item. SiLU fills big enough are split by channel groups between the main thread
 * and the pool: each worker's channels of X are first copied into a shared input workspace.
 */
function fillPadded(X: Float32Array, xOff: number, Cin: number, Hin: number, Win: number, Wp: number, plane: number, pro: Prologue): Float32Array {
  const mode = MODE[pro.kind];
  const gn = pro.kind === 'gnSilu' ? pro : null;
  const groups = gn ? gn.groups : Cin;
  const pool = (mode === 1 || mode === 3) && Cin * plane >= parallelMinFloats ? getPool() : null;
  const parts = Math.min((pool ? pool.size : 0) + 1, groups);
  // shared whenever a pool may run (not only for this fill), so it is not reallocated between kinds of fill
  const P = padWorkspace = sharedBuffer(padWorkspace, Cin * plane + 2, parts > 1 || sharedOutputs());
  const hw = Hin * Win;
  const cut = (i: number) => (Math.round((i * groups) / parts) * Cin) / groups; // channel index of part i
  // The main thread reads the GroupNorm affine in place; workers get copies of just these C floats (made
  // once per fill), because posting a view copies its whole buffer (loaded weights are views of the whole
  // weights file).
  const gnCopies = gn && parts > 1 ? [gn.weight.slice(), gn.bias.slice()] : null;
  const args = (src: Float32Array, off: number, c0: number, c1: number, toWorker: boolean): Parameters<typeof fillKernel> => [P, src, off, Cin, Hin, Win, Wp, plane, mode,
    c0, c1, groups, gn ? (toWorker ? gnCopies![0] : gn.weight) : null, gn ? (toWorker ? gnCopies![1] : gn.bias) : null, gn ? gn.eps : 0];
  let wait: (() => void) | null = null;
  if (parts > 1) {
    conv3x3Stats.parallelFills++;
    // The workers read X in place when it already lives in shared memory (the outputs of this fast
    // path do when a pool exists); otherwise their channels are copied into the shared input workspace.
    let src = X, srcOff = xOff;
    if (!(X.buffer instanceof SharedArrayBuffer)) {
      src = inWorkspace = sharedBuffer(inWorkspace, Cin * hw, true);
      srcOff = 0;
      src.set(X.subarray(xOff + cut(1) * hw, xOff + Cin * hw), cut(1) * hw);
    }
    const jobs: unknown[][] = [];
    for (let i = 1; i < parts; i++) jobs.push(args(src, srcOff, cut(i), cut(i + 1), true));
    wait = pool!.start(fillKernel, jobs);
  }
  fillKernel(...args(X, xOff, 0, cut(1), false));
  wait?.();
  P[Cin * plane] = 0; P[Cin * plane + 1] = 0;
  return P;
}

/**
 * conv2d(x, w, bias, {padding: 1}) for a 3×3 kernel without a graph, as 9 shifted GEMMs instead of
 * im2col: x is copied once into a zero-padded [Cin, H+2, W+2] buffer P, and for tap (ki, kj)
 *   out'[co, y·(W+2) + x] += Σ_ci W[co, ci, ki, kj] · P[ci, (y+ki)·(W+2) + x + kj],
 * a plain GEMM whose B operand is P shifted by ki·(W+2)+kj with leading dimension (H+2)(W+2). Columns
 * x = W, W+1 of out' are junk and dropped when the band is copied out (adding the residual, if any).
 * The prologue fuses SiLU, GroupNorm+SiLU or the decoder's nearest ×2 upsampling into the copy. Same
 * FLOPs as conv2d (recorded), same result up to float32 summation order.
 *
 * `intoResidual`: the sum is written over the residual's data (which the caller no longer needs) and
 * the residual's buffer is returned as the output, saving one activation-sized allocation. Otherwise
 * the output is allocated in shared memory when the fill pool has workers, so the next conv's
 * workers read it in place instead of through a copy.
 */
function conv3x3Same(x: Tensor, weight: Tensor, bias: Tensor, pro: Prologue, residual: Tensor | null = null, intoResidual = false): Tensor {
  const [B, Cin, Hin, Win] = x.shape;
  const up = pro.kind === 'up2';
  const H = up ? 2 * Hin : Hin, W = up ? 2 * Win : Win;
  const [Cout, wCin, kh, kw] = weight.shape;
  if (wCin !== Cin || kh !== 3 || kw !== 3) throw new RangeError(`conv3x3: weight [${weight.shape.join(', ')}] does not fit input [${x.shape.join(', ')}]`);
  if (residual && (residual.size !== B * Cout * H * W || residual.shape[1] !== Cout)) {
    throw new RangeError(`conv3x3: residual [${residual.shape.join(', ')}] does not match the output [${B}, ${Cout}, ${H}, ${W}]`);
  }
  conv3x3Stats.calls++;
  const nOut = B * Cout * H * W;
  const inPlace = intoResidual && residual !== null && residual.dtype === 'float32' && !isDryRun();
  const out = inPlace ? residual.f32 : takeOutput(nOut);
  recordFlops(2 * B * Cout * H * W * Cin * 9);
  if (isDryRun() || out.length === 0) return new Tensor(out, [B, Cout, H, W]);
  const X = x.f32, Wt = weight.f32, Bi = bias.f32, Res = residual ? residual.f32 : null;
  const Wp = W + 2, plane = (H + 2) * Wp;
  // taps as 9 contiguous [Cout, Cin] matrices (repacked at every call: weights may change in place)
  const n = Cout * Cin;
  if (!tapWorkspace || tapWorkspace.length < 9 * n) tapWorkspace = new Float32Array(9 * n);
  const wk = tapWorkspace;
  let t0 = performance.now();
  for (let k = 0; k < 9; k++) {
    const o = k * n;
    for (let d = 0, s = k; d < n; d++, s += 9) wk[o + d] = Wt[s];
  }
  let t1 = performance.now();
  conv3x3Stats.tapsMs += t1 - t0;
  const R = Math.max(1, Math.min(H, Math.floor(bandFloats / (Cout * Wp))));
  const band = bandBuffer(Cout * R * Wp);
  const be = backend();
  for (let b = 0; b < B; b++) {
    const P = fillPadded(X, b * Cin * Hin * Win, Cin, Hin, Win, Wp, plane, pro);
    t0 = performance.now();
    conv3x3Stats.fillMs += t0 - t1;
    for (let y0 = 0; y0 < H; y0 += R) {
      const rows = Math.min(R, H - y0), N = rows * Wp;
      for (let co = 0; co < Cout; co++) band.fill(Bi[co], co * N, co * N + N);
      for (let k = 0; k < 9; k++) {
        const off = (y0 + Math.floor(k / 3)) * Wp + (k % 3);
        be.sgemm(false, false, Cout, N, Cin, 1, wk, k * Cout * Cin, Cin, P, off, plane, 1, band, 0, N);
      }
      t1 = performance.now();
      conv3x3Stats.gemmMs += t1 - t0;
      // drop the junk columns; add the residual (torch: shortcut + h, the same sum)
      for (let co = 0; co < Cout; co++) {
        const o = ((b * Cout + co) * H + y0) * W;
        for (let r = 0; r < rows; r++) {
          const src = co * N + r * Wp, dst = o + r * W;
          if (inPlace) for (let i = 0; i < W; i++) out[dst + i] += band[src + i];
          else if (Res) for (let i = 0; i < W; i++) out[dst + i] = Res[dst + i] + band[src + i];
          else out.set(band.subarray(src, src + W), dst);
        }
      }
      t0 = performance.now();
      conv3x3Stats.copyOutMs += t0 - t1;
    }
    t1 = performance.now();
  }
  return new Tensor(out, [B, Cout, H, W]);
}

function getParam(ctx: ModuleCtx, key: string): Tensor {
  const t = ctx.sd.get(key);
  if (!t) throw new Error(`VQVAE: parameter '${key}' is missing from the state dict`);
  return t;
}

/** A Conv2d with bias (keys `{prefix}.weight` [cout, cin, k, k], `{prefix}.bias` [cout]). */
export class Conv2d {
  constructor(private readonly ctx: ModuleCtx, readonly prefix: string, readonly cin: number, readonly cout: number,
    readonly k: number, private readonly opts: Conv2dOptions = {}) {
    const fanIn = cin * k * k;
    ctx.specs.set(`${prefix}.weight`, { shape: [cout, cin, k, k], kind: 'convWeight', fanIn });
    ctx.specs.set(`${prefix}.bias`, { shape: [cout], kind: 'convBias', fanIn });
  }
  get weight(): Tensor { return getParam(this.ctx, `${this.prefix}.weight`); }
  get bias(): Tensor { return getParam(this.ctx, `${this.prefix}.bias`); }
  forward(x: Tensor): Tensor {
    if (this.isSame3x3 && !needsGrad(x, this.weight, this.bias)) return conv3x3Same(x, this.weight, this.bias, { kind: 'copy' });
    return conv2d(x, this.weight, this.bias, this.opts);
  }
  /**
   * conv(silu(x)) (+ residual), SiLU fused into the padding copy and the residual add into the
   * output copy when no graph is needed.
   */
  forwardSilu(x: Tensor, residual: Tensor | null = null, intoResidual = false): Tensor {
    if (this.isSame3x3 && !needsGrad(x, this.weight, this.bias, residual)) return conv3x3Same(x, this.weight, this.bias, { kind: 'silu' }, residual, intoResidual);
    const y = this.forward(silu(x));
    return residual ? add(residual, y) : y;
  }
  /**
   * conv(silu(norm(x))) (+ residual); without a graph GroupNorm and SiLU are fused into the padding copy.
   * `intoResidual`: the caller gives up the residual, whose buffer may then hold the result (fast path only).
   */
  forwardNormSilu(norm: Normalize, x: Tensor, residual: Tensor | null = null, intoResidual = false): Tensor {
    const w = norm.weight, b = norm.bias;
    if (this.isSame3x3 && !needsGrad(x, w, b, this.weight, this.bias, residual)) {
      return conv3x3Same(x, this.weight, this.bias, { kind: 'gnSilu', groups: norm.groups, weight: w.f32, bias: b.f32, eps: norm.eps }, residual, intoResidual);
    }
    return this.forwardSilu(norm.forward(x), residual);
  }
  /** conv(upsampleNearest2x(x)), the upsampling fused into the padding copy when no graph is needed. */
  forwardUp2(x: Tensor): Tensor {
    if (this.isSame3x3 && !needsGrad(x, this.weight, this.bias)) return conv3x3Same(x, this.weight, this.bias, { kind: 'up2' });
    return this.forward(upsampleNearest2x(x));
  }
  private get isSame3x3(): boolean {
    const p = this.opts.padding ?? 0;
    return fastPathEnabled && this.k === 3 && (this.opts.stride ?? 1) === 1 && (p === 1 || (Array.isArray(p) && p.every((v) => v === 1)));
  }
}

/** `Normalize(c)` = GroupNorm(groups, c, eps=1e-6, affine) (var-reference §4). */
export class Normalize {
  readonly eps = 1e-6;
  constructor(private readonly ctx: ModuleCtx, readonly prefix: string, readonly channels: number) {
    if (channels % ctx.normGroups !== 0) {
      throw new RangeError(`VQVAE: GroupNorm at '${prefix}' has ${channels} channels, not divisible by ${ctx.normGroups} groups (choose normGroups dividing every width)`);
    }
    ctx.specs.set(`${prefix}.weight`, { shape: [channels], kind: 'normWeight', fanIn: 0 });
    ctx.specs.set(`${prefix}.bias`, { shape: [channels], kind: 'normBias', fanIn: 0 });
  }
  get weight(): Tensor { return getParam(this.ctx, `${this.prefix}.weight`); }
  get bias(): Tensor { return getParam(this.ctx, `${this.prefix}.bias`); }
  get groups(): number { return this.ctx.normGroups; }
  forward(x: Tensor): Tensor { return groupNorm(x, this.groups, this.weight, this.bias, this.eps); }
}

/** `out = nin_shortcut(x) + conv2(silu(norm2(conv1(silu(norm1(x))))))`; nin_shortcut is a 1×1 conv only when cin ≠ cout. */
export class ResnetBlock {
  readonly norm1: Normalize; readonly conv1: Conv2d;
  readonly norm2: Normalize; readonly conv2: Conv2d;
  readonly ninShortcut: Conv2d | null;
  constructor(ctx: ModuleCtx, readonly prefix: string, readonly cin: number, readonly cout: number) {
    this.norm1 = new Normalize(ctx, `${prefix}.norm1`, cin);
    this.conv1 = new Conv2d(ctx, `${prefix}.conv1`, cin, cout, 3, { padding: 1 });
    this.norm2 = new Normalize(ctx, `${prefix}.norm2`, cout);
    this.conv2 = new Conv2d(ctx, `${prefix}.conv2`, cout, cout, 3, { padding: 1 });
    this.ninShortcut = cin !== cout ? new Conv2d(ctx, `${prefix}.nin_shortcut`, cin, cout, 1) : null;
  }
  /**
   * `consumeInput`: the caller will not use x again (the encoder/decoder pass their own temporaries),
   * so without a graph the residual sum may overwrite x. A 1×1 shortcut's output is always reused.
   */
  forward(x: Tensor, consumeInput = false): Tensor {
    const h = this.conv1.forwardNormSilu(this.norm1, x);
    const sc = this.ninShortcut ? this.ninShortcut.forward(x) : x;
    const out = this.conv2.forwardNormSilu(this.norm2, h, sc, this.ninShortcut !== null || consumeInput);
    if (out.data !== h.data) recycleActivation(h); // h is ours and dead now
    return out;
  }
}

/**
 * Single-head self-attention over the H·W positions (var-reference §4): qkv = Conv1×1(c→3c)(norm(x)),
 * w = softmax_j(q_i·k_j · c^−½), h_i = Σ_j w_ij v_j, out = x + proj_out(h). The 1×1 convs run as GEMMs
 * on the [B, HW, C] layout.
 */
export class AttnBlock {
  readonly norm: Normalize;
  readonly qkv: Conv2d;
  readonly projOut: Conv2d;
  constructor(private readonly ctx: ModuleCtx, readonly prefix: string, readonly channels: number) {
    this.norm = new Normalize(ctx, `${prefix}.norm`, channels);
    this.qkv = new Conv2d(ctx, `${prefix}.qkv`, channels, 3 * channels, 1);
    this.projOut = new Conv2d(ctx, `${prefix}.proj_out`, channels, channels, 1);
  }
  forward(x: Tensor): Tensor {
    const [B, C, H, W] = x.shape, HW = H * W;
    const xt = transpose(reshape(this.norm.forward(x), [B, C, HW]), 1, 2); // [B, HW, C]
    const qkv = linear(xt, reshape(this.qkv.weight, [3 * C, C]), this.qkv.bias); // [B, HW, 3C] = [q | k | v]
    const [q, k, v] = split(qkv, [C, C, C], 2);
    // torch: bmm(q, k).mul_(C ** -0.5), the Python double rounded to float32
    const w = softmax(scale(matmul(q, k, false, true), Math.fround(C ** -0.5)), -1); // [B, HW(i), HW(j)]
    const h = matmul(w, v); // [B, HW, C]
    const o = linear(h, reshape(this.projOut.weight, [C, C]), this.projOut.bias); // [B, HW, C]
    const oc = reshape(transpose(o, 1, 2), [B, C, H, W]);
    if (oc.requiresGrad || x.requiresGrad) return add(x, oc);
    const O = oc.f32, X = x.f32;
    for (let i = 0; i < O.length; i++) O[i] = X[i] + O[i];
    return oc;
  }
}

/** Zero-pad right and bottom by 1, then 3×3 conv, stride 2, no padding (keys `{prefix}.conv.*`). */
export class Downsample2x {
  readonly conv: Conv2d;
  constructor(ctx: ModuleCtx, readonly prefix: string, channels: number) {
    this.conv = new Conv2d(ctx, `${prefix}.conv`, channels, channels, 3, { stride: 2, padding: [0, 1, 0, 1] });
  }
  forward(x: Tensor): Tensor { return this.conv.forward(x); }
}

/** Nearest ×2, then 3×3 conv with padding 1 (keys `{prefix}.conv.*`). */
export class Upsample2x {
  readonly conv: Conv2d;
  constructor(ctx: ModuleCtx, readonly prefix: string, channels: number) {
    this.conv = new Conv2d(ctx, `${prefix}.conv`, channels, channels, 3, { padding: 1 });
  }
  forward(x: Tensor): Tensor { return this.conv.forwardUp2(x); }
}

/** Hyper-parameters shared by the encoder and decoder (the official `ddconfig`). */
export interface AutoencoderConfig {
  /** Base width (official 160). */
  ch: number;
  /** Width multiplier per resolution level; downsampling is 2^(levels−1) (official [1,1,2,2,4]). */
  chMult: readonly number[];
  /** ResnetBlocks per encoder level (the decoder has one more per level). Official 2. */
  numResBlocks: number;
  /** Image channels (3). */
  inChannels: number;
  /** Latent channels z (official 32 = Cvae). */
  zChannels: number;
  /** Attention after each ResnetBlock of the lowest-resolution level. */
  usingSa: boolean;
  /** Attention between the two mid ResnetBlocks. */
  usingMidSa: boolean;
}

function checkAeConfig(cfg: AutoencoderConfig): void {
  const bad = (what: string): never => { throw new RangeError(`VQVAE config: ${what}`); };
  if (!Number.isInteger(cfg.ch) || cfg.ch < 1) bad(`ch must be a positive integer, got ${cfg.ch}`);
  if (!cfg.chMult.length || cfg.chMult.some((m) => !Number.isInteger(m) || m < 1)) bad(`chMult must be positive integers, got [${cfg.chMult.join(', ')}]`);
  if (!Number.isInteger(cfg.numResBlocks) || cfg.numResBlocks < 1) bad(`numResBlocks must be ≥ 1, got ${cfg.numResBlocks}`);
  if (!Number.isInteger(cfg.zChannels) || cfg.zChannels < 1) bad(`zChannels must be ≥ 1, got ${cfg.zChannels}`);
  if (!Number.isInteger(cfg.inChannels) || cfg.inChannels < 1) bad(`inChannels must be ≥ 1, got ${cfg.inChannels}`);
}

interface Level { block: ResnetBlock[]; attn: AttnBlock[]; resample: Downsample2x | Upsample2x | null }

/** The mid section: Res → Attn (optional) → Res. */
class Mid {
  readonly block1: ResnetBlock; readonly attn1: AttnBlock | null; readonly block2: ResnetBlock;
  constructor(ctx: ModuleCtx, prefix: string, c: number, usingMidSa: boolean) {
    this.block1 = new ResnetBlock(ctx, `${prefix}.mid.block_1`, c, c);
    this.attn1 = usingMidSa ? new AttnBlock(ctx, `${prefix}.mid.attn_1`, c) : null;
    this.block2 = new ResnetBlock(ctx, `${prefix}.mid.block_2`, c, c);
  }
  /** `consumeInput` as in ResnetBlock.forward. */
  forward(h: Tensor, consumeInput = false): Tensor {
    h = this.block1.forward(h, consumeInput);
    if (this.attn1) h = this.attn1.forward(h);
    return this.block2.forward(h, true);
  }
}

/** Image [B, inChannels, S, S] → latent [B, z, S/2^(levels−1), …] (before quant_conv). */
export class Encoder {
  readonly convIn: Conv2d;
  readonly down: Level[] = [];
  readonly mid: Mid;
  readonly normOut: Normalize;
  readonly convOut: Conv2d;
  constructor(ctx: ModuleCtx, readonly cfg: AutoencoderConfig, prefix = 'encoder') {
    checkAeConfig(cfg);
    const { ch, chMult, numResBlocks } = cfg, n = chMult.length;
    this.convIn = new Conv2d(ctx, `${prefix}.conv_in`, cfg.inChannels, ch, 3, { padding: 1 });
    const inMult = [1, ...chMult];
    let blockIn = ch;
    for (let i = 0; i < n; i++) {
      const lvl: Level = { block: [], attn: [], resample: null };
      blockIn = ch * inMult[i];
      const blockOut = ch * chMult[i];
      for (let j = 0; j < numResBlocks; j++) {
        lvl.block.push(new ResnetBlock(ctx, `${prefix}.down.${i}.block.${j}`, blockIn, blockOut));
        blockIn = blockOut;
        if (i === n - 1 && cfg.usingSa) lvl.attn.push(new AttnBlock(ctx, `${prefix}.down.${i}.attn.${j}`, blockIn));
      }
      if (i !== n - 1) lvl.resample = new Downsample2x(ctx, `${prefix}.down.${i}.downsample`, blockIn);
      this.down.push(lvl);
    }
    this.mid = new Mid(ctx, prefix, blockIn, cfg.usingMidSa);
    this.normOut = new Normalize(ctx, `${prefix}.norm_out`, blockIn);
    this.convOut = new Conv2d(ctx, `${prefix}.conv_out`, blockIn, cfg.zChannels, 3, { padding: 1 });
  }
  forward(x: Tensor): Tensor {
    let h = this.convIn.forward(x);
    for (const lvl of this.down) {
      for (let j = 0; j < lvl.block.length; j++) {
        h = lvl.block[j].forward(h, true); // h is our own temporary
        if (lvl.attn.length) h = lvl.attn[j].forward(h);
      }
      if (lvl.resample) h = lvl.resample.forward(h);
    }
    h = this.mid.forward(h, true);
    const out = this.convOut.forwardNormSilu(this.normOut, h);
    spareOutput = null;
    return out;
  }
}

/** Latent [B, z, s, s] (after post_quant_conv) → image [B, inChannels, s·2^(levels−1), …], not clamped. */
export class Decoder {
  readonly convIn: Conv2d;
  readonly mid: Mid;
  /** Indexed by resolution level: up[levels−1] (lowest resolution) runs first. */
  readonly up: Level[] = [];
  readonly normOut: Normalize;
  readonly convOut: Conv2d;
  constructor(ctx: ModuleCtx, readonly cfg: AutoencoderConfig, prefix = 'decoder') {
    checkAeConfig(cfg);
    const { ch, chMult, numResBlocks } = cfg, n = chMult.length;
    let blockIn = ch * chMult[n - 1];
    this.convIn = new Conv2d(ctx, `${prefix}.conv_in`, cfg.zChannels, blockIn, 3, { padding: 1 });
    this.mid = new Mid(ctx, prefix, blockIn, cfg.usingMidSa);
    const levels: Level[] = new Array(n);
    for (let i = n - 1; i >= 0; i--) {
      const lvl: Level = { block: [], attn: [], resample: null };
      const blockOut = ch * chMult[i];
      for (let j = 0; j < numResBlocks + 1; j++) {
        lvl.block.push(new ResnetBlock(ctx, `${prefix}.up.${i}.block.${j}`, blockIn, blockOut));
        blockIn = blockOut;
        if (i === n - 1 && cfg.usingSa) lvl.attn.push(new AttnBlock(ctx, `${prefix}.up.${i}.attn.${j}`, blockIn));
      }
      if (i !== 0) lvl.resample = new Upsample2x(ctx, `${prefix}.up.${i}.upsample`, blockIn);
      levels[i] = lvl;
    }
    this.up = levels;
    this.normOut = new Normalize(ctx, `${prefix}.norm_out`, blockIn);
    this.convOut = new Conv2d(ctx, `${prefix}.conv_out`, blockIn, cfg.inChannels, 3, { padding: 1 });
  }
  forward(z: Tensor): Tensor {
    let h = this.mid.forward(this.convIn.forward(z), true);
    for (let i = this.up.length - 1; i >= 0; i--) {
      const lvl = this.up[i];
      for (let j = 0; j < lvl.block.length; j++) {
        h = lvl.block[j].forward(h, true); // h is our own temporary
        if (lvl.attn.length) h = lvl.attn[j].forward(h);
      }
      if (lvl.resample) h = lvl.resample.forward(h);
    }
    const out = this.convOut.forwardNormSilu(this.normOut, h);
    spareOutput = null; // keep no activation-sized buffer after the forward
    return out;
  }
}
