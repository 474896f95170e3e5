/**
 * The grouped expert FFN (paper §3.2, eq. (2)–(4); execution paper §3.4): tokens counting-sorted by
 * expert; per expert, gather its tokens' rows, GEMM(fc1 slice) → GELU → GEMM(fc2 slice) on exactly
 * those rows, scatter-add the result; never dense-then-mask. Expert e's fc1 block is the row range
 * [e·dₑ, (e+1)·dₑ) of the expert-ordered fc1 weight and its fc2 block the column range of fc2 (ld D_h),
 * addressed in place. The output bias b₂ is added once per token. With many tokens (inference) the same loop
 * runs by token chunks (`expertChunkTokens`), each chunk every expert on its own tokens. The model side (the FFN's
 * weights, permutation and calibration) is src/actvar/experts.ts.
 */
import { Tensor, result, assertFloat, isGradEnabled } from '../tensor.js';
import { backend, workspace as backendWorkspace } from '../../backend/index.js';
import { recordFlops, isDryRun } from '../flops.js';
import { gelu, geluBackwardInto } from './gelu.js';
import { sgemm, columnSumsInto, fillRowsInto } from './matmul.js';
import { gatherRowsInto, scatterRowsInto, scatterAddRowsInto } from './indexing.js';

// Hot loops as small monomorphic functions (V8 optimises these reliably; inlined in one big
// function they were measured several times slower).

/** δ(a[0..n)) in place with the VAR's own inference GELU (the core's table GELU, tensor/ops/gelu.ts), so expert and dense FFN agree. */
export function geluInPlace(a: Float32Array, n: number): void {
  gelu(new Tensor(n === a.length ? a : a.subarray(0, n), [n]), true);
}

/** Every row r < cnt of a (rows of n) ← bias[off .. off+n). */
export function setBiasRows(a: Float32Array, bias: Float32Array, off: number, cnt: number, n: number): void {
  fillRowsInto(a, bias.subarray(off, off + n), cnt, n);
}

/** Tokens grouped by expert: tokens of expert e are `tokens[offsets[e] .. offsets[e+1])`, ascending. */
export interface ExpertGroups {
  offsets: Int32Array;
  tokens: Int32Array;
  /** For each entry of `tokens`, its position in the flattened (n × K) routing table. */
  slots: Int32Array;
}

/**
 * Counting sort of the routing table `route` (n × K expert ids, row-major) by expert: O(n·K + N).
 * Throws on an expert id outside [0, N) or a token routed twice to the same expert.
 */
export function groupByExpert(route: Int32Array, n: number, K: number, N: number): ExpertGroups {
  if (route.length !== n * K) throw new RangeError(`groupByExpert: the routing table has ${route.length} entries, expected n·K = ${n}·${K}`);
  const counts = new Int32Array(N + 1);
  for (let i = 0; i < route.length; i++) {
    const e = route[i];
    if (e < 0 || e >= N || !Number.isInteger(e)) throw new RangeError(`groupByExpert: expert id ${e} at token ${Math.floor(i / K)} is out of range (valid 0..${N - 1})`);
    counts[e + 1]++;
  }
  const offsets = new Int32Array(N + 1);
  for (let e = 0; e < N; e++) offsets[e + 1] = offsets[e] + counts[e + 1];
  const fill = offsets.slice(0, N);
  const tokens = new Int32Array(n * K), slots = new Int32Array(n * K);
  for (let t = 0; t < n; t++) {
    for (let k = 0; k < K; k++) {
      const e = route[t * K + k];
      const p = fill[e]++;
      if (p > offsets[e] && tokens[p - 1] === t) throw new RangeError(`groupByExpert: token ${t} is routed to expert ${e} twice`);
      tokens[p] = t; slots[p] = t * K + k;
    }
  }
  return { offsets, tokens, slots };
}

/** One expert-FFN evaluation: inputs, expert-ordered weights, the grouping, and the output to add into. */
export interface ExpertJob {
  /** n × C inputs. */
  X: Float32Array;
  /** Expert-ordered fc1 weight (D_h × C), fc1 bias (D_h), fc2 weight (C × D_h). */
  W1: Float32Array; B1: Float32Array; W2: Float32Array;
  /** `groupByExpert` tokens and offsets. */
  tokens: Int32Array; offsets: Int32Array;
  /** n × C; every expert's output is added into it. */
  out: Float32Array;
  C: number; de: number; H: number;
}

/**
 * Experts e0 … e1−1 of `job`, grouped execution (paper §3.4): per expert, gather its tokens' rows,
 * GEMM(fc1 slice) + bias → GELU → GEMM(fc2 slice) accumulated into the gathered running sums, scatter
 * back. `ws` holds three scratch buffers of at least (largest expert's tokens) × C, × dₑ, × C floats.
 * `preAll` (training) receives the pre-activations, expert-ordered. Exported for
 * bench/experiments/expert-threads.mjs, which runs half of the experts on a second thread.
 */
export function runExperts(job: ExpertJob, e0: number, e1: number, ws: [Float32Array, Float32Array, Float32Array],
  preAll: Float32Array | null = null, t0 = 0, t1 = Infinity): void {
  const { X, W1, B1, W2, tokens, offsets, out, C, de, H } = job;
  const [Xe, He, Ye] = ws;
  for (let e = e0; e < e1; e++) {
    // the expert's tokens in [t0, t1): a contiguous range of its ascending list
    const o0 = lowerBound(tokens, offsets[e], offsets[e + 1], t0), cnt = lowerBound(tokens, o0, offsets[e + 1], t1) - o0;
    if (cnt === 0) continue;
    gatherRowsInto(Xe, X, tokens, o0, cnt, C);
    // He = δ(Xe·W₁ₑᵀ + b₁ₑ), the bias preset and accumulated into as `linear` does
    setBiasRows(He, B1, e * de, cnt, de);
    sgemm(false, true, cnt, de, C, 1, Xe, 0, C, W1, e * de * C, C, 1, He, 0, de);
    if (preAll) preAll.set(He.subarray(0, cnt * de), o0 * de);
    geluInPlace(He, cnt * de);
    // out[tokens] += δ(He)·W₂ₑᵀ, W₂ₑ = columns [e·dₑ, (e+1)·dₑ) of fc2.weight (ld = D_h): gather the
    // running sums, accumulate with the GEMM (beta = 1), scatter back — copies instead of a JS add loop
    gatherRowsInto(Ye, out, tokens, o0, cnt, C);
    sgemm(false, true, cnt, C, de, 1, He, 0, de, W2, e * de, H, 1, Ye, 0, C);
    scatterRowsInto(out, Ye, tokens, o0, cnt, C);
  }
}

/** First index i in [lo, hi) with a[i] ≥ v (hi when none). */
function lowerBound(a: Int32Array, lo: number, hi: number, v: number): number {
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (a[mid] < v) lo = mid + 1; else hi = mid;
  }
  return lo;
}

/**
 * Tokens per chunk of the chunked expert FFN for n tokens, 0 for whole experts. With enough tokens
 * (≥ 256 per part) the FFN runs by token chunks, `parts`·k of them (k = ⌈n / (2048·parts)⌉): each chunk runs every
 * expert on its own tokens, so no n·K·C buffer of expert outputs is written and re-read (the shipped model:
 * 6144 tokens × 12 experts × 128 floats a block), and the threads share the chunks evenly. A function of
 * the shape and the split-part count (the CPUs), never of the thread count.
 */
export function expertChunkTokens(n: number, parts: number): number {
  const MIN = 256, TARGET = 2048;
  if (n < MIN * parts) return 0;
  return Math.ceil(n / (parts * Math.ceil(n / (parts * TARGET))));
}

/** The inference scratch of `runExperts`, from the backend's workspace (grad mode allocates fresh buffers: the backward keeps them). */
function workspace(rows: number, C: number, de: number): [Float32Array, Float32Array, Float32Array] {
  const ws = backendWorkspace();
  return [ws.float32('experts.x', rows * C), ws.float32('experts.h', rows * de), ws.float32('experts.y', rows * C)];
}

/**
 * Σ_{e ∈ route(t)} eₑ(x_t) + b₂ for every token t of x [..., C] (n rows): the grouped expert FFN,
 * with the expert-ordered weights w1 (D_h, C), b1 (D_h), w2 (C, D_h), b2 (C) cut into N experts of
 * dₑ = D_h/N hidden units; `route` is the n × K table of expert ids (row-major, distinct within a row).
 * Differentiable in x and the weights. Inference runs the backend's `groupedFFN` override (the experts
 * in parallel on the native pool: same sums, same order) when it has one, else `runExperts`.
 */
export function expertFFN(x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, route: Int32Array, K: number, N: number): Tensor {
  const [H, C] = w1.shape, de = H / N;

  const X = assertFloat(x, 'ExpertFFN');
      if (x.shape[x.ndim - 1] !== C) throw new RangeError(`ExpertFFN: input has ${x.shape[x.ndim - 1]} features, the FFN expects ${C}`);
  const n = X.length / C;
  if (!Number.isInteger(K) || K < 1 || K > N) throw new RangeError(`ExpertFFN: K must be in 1..${N}, got ${K}`);
  const groups = groupByExpert(route, n, K, N);
  const { offsets, tokens } = groups;
  const W1 = w1.f32, B1 = b1.f32, W2 = w2.f32, B2 = b2.f32;
  const out = new Float32Array(n * C);
  const dry = isDryRun();
  // b₂ once per token (see the header: not once per expert as paper eq. (4) prints it)
  if (!dry) setBiasRows(out, B2, 0, n, C);
  const needGrad = isGradEnabled() && (x.requiresGrad || w1.requiresGrad || b1.requiresGrad || w2.requiresGrad || b2.requiresGrad);
  let maxCnt = 0;
  for (let e = 0; e < N; e++) maxCnt = Math.max(maxCnt, offsets[e + 1] - offsets[e]);
  // pre-activations of every (token, expert) pair, kept for the backward pass
  const preAll = needGrad ? new Float32Array(n * K * de) : null;
  recordFlops(4 * offsets[N] * de * C, w1); // per (token, expert) pair: its fc1 slice and its fc2 slice, 2·dₑ·C each
  // inference: the experts in parallel on the native thread pool when it is there (same sums, same order)
  // (by token chunks when there are many tokens: expertChunkTokens; the loop below computes the same chunks)
  const nk = backend().native;
  const chunk = needGrad ? 0 : expertChunkTokens(n, nk?.splitParts() ?? 2);
  const native = !dry && !needGrad && nk?.groupedFFN(X, n, C, W1, B1, W2, de, tokens, offsets, groups.slots, N, K, out, chunk);
  if (!dry && !native) {
    const ws: [Float32Array, Float32Array, Float32Array] = needGrad
      ? [new Float32Array(maxCnt * C), new Float32Array(maxCnt * de), new Float32Array(maxCnt * C)] : workspace(maxCnt, C, de);
    const job = { X, W1, B1, W2, tokens, offsets, out, C, de, H };
    if (chunk > 0) for (let t0 = 0; t0 < n; t0 += chunk) runExperts(job, 0, N, ws, null, t0, t0 + chunk);
    else runExperts(job, 0, N, ws, preAll);
  }
  return result(out, x.shape, 'expertFFN', [x, w1, b1, w2, b2], (g) => {
    if (!preAll) throw new Error('ExpertFFN: backward without saved activations');
    const gx = x.requiresGrad ? new Float32Array(X.length) : null;
    const gw1 = w1.requiresGrad ? new Float32Array(H * C) : null;
    const gb1 = b1.requiresGrad ? new Float32Array(H) : null;
    const gw2 = w2.requiresGrad ? new Float32Array(C * H) : null;
    let gb2: Float32Array | null = null;
    if (b2.requiresGrad) {
      gb2 = columnSumsInto(g, n, C, new Float32Array(C));
    }
    const Ge = new Float32Array(maxCnt * C), A = new Float32Array(maxCnt * de), GA = new Float32Array(maxCnt * de), Xg = new Float32Array(maxCnt * C);
    for (let e = 0; e < N; e++) {
      const o0 = offsets[e], cnt = offsets[e + 1] - o0;
      if (cnt === 0) continue;
      gatherRowsInto(Ge, g, tokens, o0, cnt, C);
      gatherRowsInto(Xg, X, tokens, o0, cnt, C);
      const pre = preAll.subarray(o0 * de, (o0 + cnt) * de);
      A.set(pre);
      geluInPlace(A, cnt * de);
      // dA = Ge·W₂ₑ  (cnt × dₑ)
      sgemm(false, false, cnt, de, C, 1, Ge, 0, C, W2, e * de, H, 0, GA, 0, de);
      // dW₂ₑ (C × dₑ, ld D_h) = Geᵀ·A
      if (gw2) sgemm(true, false, C, de, cnt, 1, Ge, 0, C, A, 0, de, 0, gw2, e * de, H);
      geluBackwardInto(pre, GA, GA, cnt * de); // dH = dA ⊙ δ′(pre)
      if (gb1) columnSumsInto(GA, cnt, de, gb1.subarray(e * de, (e + 1) * de));
      // dW₁ₑ (dₑ × C) = dHᵀ·Xe
      if (gw1) sgemm(true, false, de, C, cnt, 1, GA, 0, de, Xg, 0, C, 0, gw1, e * de * C, C);
      if (gx) {
        // dXe = dH·W₁ₑ, scattered back
        sgemm(false, false, cnt, C, de, 1, GA, 0, de, W1, e * de * C, C, 0, Ge, 0, C);
        scatterAddRowsInto(gx, Ge, tokens, o0, cnt, C);
      }
    }
    return [gx, gw1, gb1, gw2, gb2];
  });
}
