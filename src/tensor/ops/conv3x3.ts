/**
 * The inference 3×3 'same' convolution (stride 1, padding 1) of the VQVAE, without a graph: 9 shifted
 * GEMMs on a zero-padded copy of the input instead of im2col, with the layer's prologue (SiLU,
 * GroupNorm + SiLU, nearest ×2 upsampling) fused into that copy and the residual add into the output
 * copy (see `conv3x3Same`). The SiLU-heavy fills are shared with the backend's helper threads
 * (`backend().workers`); every buffer is the backend's workspace. The model side is src/vqvae/basic-vae.ts.
 */
import { Tensor } from '../tensor.js';
import { backend, workspace, type JsWorkerPool } from '../../backend/index.js';
import { recordFlops, isDryRun } from '../flops.js';
import { rowStatsInto } from './row-stats.js';

/**
 * How the input is written into the padded buffer: as is, through SiLU, nearest-upsampled ×2, or
 * through GroupNorm then SiLU (the official `conv(silu(norm(x)))` of every ResnetBlock and the output).
 */
export type Conv3x3Prologue =
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
 * by test/vqvae.test.ts.) Self-contained but for `rowStatsInto`: its source and that helper's run in the
 * worker threads.
 */
function fillKernel(P: Float32Array, X: Float32Array, xOff: number, Cin: number, Hin: number, Win: number,
  Wp: number, plane: number, mode: number, c0: number, c1: number,
  groups: number, gw: Float32Array | null, gb: Float32Array | null, eps: number): void {
  const up = mode === 2;
  const H = up ? 2 * Hin : Hin, W = up ? 2 * Win : Win, hw = Hin * Win;
  const cpg = mode === 3 ? Cin / groups : 1;
  let scale = 1, shift = 0, mean = 0, rstd = 1;
  const mean1 = new Float64Array(1), rstd1 = new Float64Array(1);
  for (let c = c0; c < c1; c++) {
    if (mode === 3 && (c - c0) % cpg === 0) {
      // statistics of the group starting at channel c (groupNorm's routine, row-stats.ts)
      rowStatsInto(X, xOff + c * hw, cpg * hw, eps, mean1, rstd1, 0);
      mean = mean1[0]; rstd = rstd1[0];
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
export const conv3x3Stats = { calls: 0, nativeCalls: 0, winogradCalls: 0, parallelFills: 0, flops: 0, fillMs: 0, tapsMs: 0, gemmMs: 0, copyOutMs: 0 };
/** Milliseconds per phase of one native call (fills, repack, GEMMs, copies out). */
const nativeMs = new Float64Array(4);

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
 * ops (conv2d, groupNorm, silu, upsampleNearest2x) even without a graph; `native`: false keeps the
 * TypeScript steps below even when the backend has the native kernels (which otherwise run the whole
 * op, native/conv3x3.c, and ignore `workers`); `winograd`: the largest output tile m of the native op's
 * Winograd F(m×m, 3×3) (4: F(4×4) where H and W are multiples of 4, else F(2×2) where they are even, else
 * the 9 shifted GEMMs below; 2: F(2×2) only; 0: always the shifted GEMMs), a tile size only where an image has
 * at least `winogradMinTiles` tiles (default 64: a 16×16 decoder level takes F(2×2), 32×32 and up F(4×4));
 * `bandFloats`: output floats per GEMM
 * band; `workers`: helper threads for the fills (−1 = backend threads − 1, 0 = main thread only);
 * `parallelMinFloats`: smallest fill worth splitting. Tests use tiny values to exercise every path.
 */
export function setConv3x3Options(o: { enabled?: boolean; native?: boolean; winograd?: number; winogradMinTiles?: number; bandFloats?: number; workers?: number; parallelMinFloats?: number }): { enabled: boolean; native: boolean; winograd: number; winogradMinTiles: number; bandFloats: number; workers: number; parallelMinFloats: number } {
  const prev = { enabled: fastPathEnabled, native: nativeEnabled, winograd: winogradTile, winogradMinTiles, bandFloats, workers: poolSize, parallelMinFloats };
  if (o.winograd !== undefined) {
    if (o.winograd !== 0 && o.winograd !== 2 && o.winograd !== 4) throw new RangeError(`winograd must be 0 (off), 2 or 4 (the largest output tile), got ${o.winograd}`);
    winogradTile = o.winograd;
  }
  if (o.winogradMinTiles !== undefined) {
    if (!Number.isInteger(o.winogradMinTiles) || o.winogradMinTiles < 1) throw new RangeError(`winogradMinTiles must be a positive integer, got ${o.winogradMinTiles}`);
    winogradMinTiles = o.winogradMinTiles;
  }
  if (o.enabled !== undefined) fastPathEnabled = o.enabled;
  if (o.native !== undefined) nativeEnabled = o.native;
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
let nativeEnabled = true;
let winogradTile = 4;
/** Fewest tiles per image for a Winograd tile size (below, the weight transform outweighs the GEMMs it saves). */
let winogradMinTiles = 64;
/** False when `setConv3x3Options({ enabled: false })` asks for the composed ops instead. */
export function conv3x3Enabled(): boolean { return fastPathEnabled; }

// Workspaces: the backend's (keys 'conv3x3.*'); the padded input is shared with the workers when they run.
/** Drop the workspaces of the inference 3×3 conv (about 2× the largest activation); they regrow on use. */
export function releaseConv3x3Workspaces(): void {
  workspace().release('conv3x3.');
}

// One dead activation handed back by the encoder/decoder (`recycleActivation`), reused as the next
// output of the same size: the big activations are then recycled instead of left to the garbage
// collector, which frees them late (a 256×256 decode otherwise peaks at several dead 42 MB buffers).
const SPARE = 'conv3x3.spareOutput';
/** Outputs live in shared memory when the fill pool has workers, so they read them without a copy. */
function sharedOutputs(): boolean {
  const be = backend();
  return !!be.workers && (poolSize > 0 || (poolSize < 0 && be.threads > 1));
}
/** A buffer for n output floats (every element is overwritten by the caller). */
function takeOutput(n: number): Float32Array {
  const shared = sharedOutputs(), s = workspace().peek(SPARE);
  if (s && s.length === n && !isDryRun() && (s.buffer instanceof SharedArrayBuffer) === shared) { workspace().put(SPARE, null); return s; }
  return shared ? new Float32Array(new SharedArrayBuffer(4 * n)) : new Float32Array(n);
}
/** Give a temporary that nothing references any more (and that has no graph) back for reuse by the next output. */
export function recycleActivation(t: Tensor): void {
  if (!t.requiresGrad && t.dtype === 'float32') workspace().put(SPARE, t.f32);
}
/** Keep no activation-sized buffer (the end of an encoder/decoder forward). */
export function dropSpareActivation(): void {
  workspace().put(SPARE, null);
}

/**
 * Fill P for one batch item. SiLU fills big enough are split by channel groups between the main thread
 * and the pool: each worker's channels of X are first copied into a shared input workspace.
 */
function fillPadded(X: Float32Array, xOff: number, Cin: number, Hin: number, Win: number, Wp: number, plane: number, pro: Conv3x3Prologue): Float32Array {
  const mode = MODE[pro.kind];
  const gn = pro.kind === 'gnSilu' ? pro : null;
  const groups = gn ? gn.groups : Cin;
  const pool = (mode === 1 || mode === 3) && Cin * plane >= parallelMinFloats ? getPool() : null;
  const parts = Math.min((pool ? pool.size : 0) + 1, groups);
  // shared whenever a pool may run (not only for this fill), so it is not reallocated between kinds of fill
  const P = workspace().float32('conv3x3.padded', Cin * plane + 2, parts > 1 || sharedOutputs());
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
      src = workspace().float32('conv3x3.input', Cin * hw, true);
      srcOff = 0;
      src.set(X.subarray(xOff + cut(1) * hw, xOff + Cin * hw), cut(1) * hw);
    }
    const jobs: unknown[][] = [];
    for (let i = 1; i < parts; i++) jobs.push(args(src, srcOff, cut(i), cut(i + 1), true));
    wait = pool!.start(fillKernel, jobs, [rowStatsInto]);
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
export function conv3x3Same(x: Tensor, weight: Tensor, bias: Tensor, pro: Conv3x3Prologue, residual: Tensor | null = null, intoResidual = false): Tensor {
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
  recordFlops(2 * B * Cout * H * W * Cin * 9, weight);
  if (isDryRun() || out.length === 0) return new Tensor(out, [B, Cout, H, W]);
  conv3x3Stats.flops += 2 * B * Cout * H * W * Cin * 9;
  const X = x.f32, Wt = weight.f32, Bi = bias.f32, Res = residual ? residual.f32 : null;
  const Wp = W + 2, plane = (H + 2) * Wp;
  const R = Math.max(1, Math.min(H, Math.floor(bandFloats / (Cout * Wp))));
  const nat = nativeEnabled ? backend().native : null;
  if (nat) {
    // the whole op in C (native/conv3x3.c): the same steps as below, fills and copies on the thread pool
    const gn = pro.kind === 'gnSilu' ? pro : null;
    const ws = workspace();
    // Winograd F(m×m, 3×3), m the largest allowed tile dividing H and W: bands of TR tile rows, V and M
    // (ξ·C·TR·W/m floats each, ξ = (m + 2)²) within about 2·bandFloats
    const fits = (t: number) => winogradTile >= t && H % t === 0 && W % t === 0 && (H / t) * (W / t) >= winogradMinTiles;
    const m = fits(4) ? 4 : fits(2) ? 2 : 0;
    const xi = (m + 2) ** 2, tw = m ? W / m : 0;
    const TR = m ? Math.max(1, Math.min(H / m, Math.floor((2 * bandFloats) / (xi * (Cin + Cout) * tw)))) : 0;
    const tiles = TR * tw;
    const done = nat.conv3x3(X, B, Cin, Hin, Win, MODE[pro.kind], gn ? gn.groups : 1, gn ? gn.weight : null, gn ? gn.bias : null,
      gn ? gn.eps : 0, Wt, Bi, Cout, Res, inPlace, out, ws.float32('conv3x3.padded', Cin * plane + 2),
      ws.float32('conv3x3.taps', (m ? xi : 9) * Cout * Cin), ws.float32('conv3x3.band', m ? xi * Cout * tiles : Cout * R * Wp),
      m ? TR : R, m ? ws.float32('conv3x3.winoInput', xi * Cin * tiles) : null, m, nativeMs.fill(0));
    if (done) {
      conv3x3Stats.nativeCalls++;
      if (m) conv3x3Stats.winogradCalls++;
      conv3x3Stats.fillMs += nativeMs[0]; conv3x3Stats.tapsMs += nativeMs[1]; conv3x3Stats.gemmMs += nativeMs[2]; conv3x3Stats.copyOutMs += nativeMs[3];
      return new Tensor(out, [B, Cout, H, W]);
    }
  }
  // taps as 9 contiguous [Cout, Cin] matrices (repacked at every call: weights may change in place)
  const n = Cout * Cin;
  const wk = workspace().float32('conv3x3.taps', 9 * n);
  let t0 = performance.now();
  for (let k = 0; k < 9; k++) {
    const o = k * n;
    for (let d = 0, s = k; d < n; d++, s += 9) wk[o + d] = Wt[s];
  }
  let t1 = performance.now();
  conv3x3Stats.tapsMs += t1 - t0;
  const band = workspace().float32('conv3x3.band', Cout * R * Wp);
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
