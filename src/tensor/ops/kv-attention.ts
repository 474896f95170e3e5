/**
 * KV-cache attention for inference (docs/VAR.md §3.3, §6): the per-block key/value cache, appending,
 * and the attention of new queries to everything cached (earlier scales and this one; no mask). The
 * softmax uses the core's one exp approximation (`expNonPositive`, nn.ts); with cosine attention the head temperature bounds every score,
 * which replaces the row-max pass. The backend may override the attention (`attendCached`) and the
 * exp rows (`expRows`) by name.
 */
import { Tensor, isGradEnabled } from '../tensor.js';
import { backend, settings, configure, workspace } from '../../backend/index.js';
import { recordFlops, isDryRun } from '../flops.js';
import { expNonPositive } from './nn.js';

/**
 * One block's key/value cache for KV-cache inference: preallocated [batch, heads, capacity, headDim]
 * buffers, `len` tokens filled. Appending is explicit (`appendKV`); `attendKVCache` appends and
 * attends. Keys are stored normalised (cosine attention), exactly what the official cache holds.
 */
export interface KVCache {
  readonly batch: number;
  readonly heads: number;
  readonly headDim: number;
  readonly capacity: number;
  len: number;
  readonly k: Float32Array;
  readonly v: Float32Array;
}

export function createKVCache(batch: number, heads: number, headDim: number, capacity: number): KVCache {
  const n = batch * heads * capacity * headDim;
  return { batch, heads, headDim, capacity, len: 0, k: new Float32Array(n), v: new Float32Array(n) };
}

/** RangeError unless the cache has room for l more tokens. */
export function checkCacheRoom(cache: KVCache, l: number): void {
  if (cache.len + l > cache.capacity) throw new RangeError(`appendKV: ${cache.len} + ${l} tokens exceed the cache capacity ${cache.capacity}`);
}

/** Append k, v [batch, heads, l, headDim] after the `len` cached tokens of every row and head. */
export function appendKV(cache: KVCache, k: Tensor, v: Tensor): void {
  const [B, H, l, hd] = k.shape;
  if (B !== cache.batch || H !== cache.heads || hd !== cache.headDim || v.shape.join() !== k.shape.join()) {
    throw new RangeError(`appendKV: k [${k.shape.join(', ')}] / v [${v.shape.join(', ')}] do not fit a cache of [${cache.batch}, ${cache.heads}, ·, ${cache.headDim}]`);
  }
  checkCacheRoom(cache, l);
  const K = k.f32, V = v.f32, cap = cache.capacity;
  for (let bh = 0; bh < B * H; bh++) {
    const src = bh * l * hd, dst = (bh * cap + cache.len) * hd;
    cache.k.set(K.subarray(src, src + l * hd), dst);
    cache.v.set(V.subarray(src, src + l * hd), dst);
  }
  cache.len += l;
}

/**
 * Kernel threads for the per-head attention GEMMs (0 = the backend's setting, the default). These
 * GEMMs are small (K or N = head_dim = 64). Under OpenBLAS's own threading a busy machine made each
 * call wait for the BLAS worker (2.6–8.5 GFLOP/s with 2 threads vs ~30 with 1, so the default used to
 * be 1); actvar's thread pool (native/threads.c) splits only the larger ones and is faster on both
 * threads (d16 generation, docs/BENCHMARKS.md). The setting `attentionThreads` (ACTVAR_ATTN_THREADS=n,
 * or `setAttentionThreads(n)`) pins them to n threads.
 */
export function setAttentionThreads(n: number): void { configure({ attentionThreads: Math.max(0, Math.floor(n)) }); }

/**
 * Unnormalised softmax of rows S[rows, n] in place, e = exp(s − c), returning the row sums in `sums`.
 * With cosine attention every score is bounded by |s| ≤ s_h (unit q·k times the head temperature),
 * so c = s_h (when 2·s_h < 80, keeping e in float32's normal range) replaces the row-max pass;
 * otherwise c = the row max. Same softmax mathematically; ~1 ulp different rounding. Exported for tests.
 */
export function expRowsInPlace(S: Float32Array, rows: number, n: number, bound: number | null, sums: Float64Array): void {
  const nk = backend().native;
  if (nk) { nk.expRows(S, rows, n, bound ?? NaN, sums); return; } // float32 exp, float64 sums (native/kernels.c)
  for (let i = 0; i < rows; i++) {
    const o = i * n;
    let m = bound ?? -Infinity;
    if (bound === null) for (let j = 0; j < n; j++) if (S[o + j] > m) m = S[o + j];
    // two partial sums: the float64 additions do not form one long dependency chain
    let s0 = 0, s1 = 0, j = 0;
    for (; j + 1 < n; j += 2) {
      const e0 = expNonPositive(S[o + j] - m), e1 = expNonPositive(S[o + j + 1] - m);
      S[o + j] = e0; S[o + j + 1] = e1; s0 += e0; s1 += e1;
    }
    if (j < n) { const e0 = expNonPositive(S[o + j] - m); S[o + j] = e0; s0 += e0; }
    sums[i] = s0 + s1;
  }
}

/**
 * KV-cache attention (inference only, not differentiable): appends this step's k, v to `cache`,
 * then the l new queries attend to all cached tokens (earlier scales and this one; no mask needed,
 * docs/VAR.md §3.3). q, k, v [B, H, l, hd] → [B, l, H·hd]. Category 'attn_scores'. The softmax normalisation
 * is applied to the l×hd output rows instead of the l×Lcum probabilities (fewer operations).
 */
export function attendKVCache(q: Tensor, k: Tensor, v: Tensor, cache: KVCache, scale: number, sH: Float64Array | null): Tensor {
  if (isGradEnabled() && (q.requiresGrad || k.requiresGrad || v.requiresGrad)) {
    throw new Error('attendKVCache is inference-only (run it under noGrad); for training use attend() with the block-causal bias');
  }
  appendKV(cache, k, v);
  const [B, H, l, hd] = q.shape;
  const out = new Float32Array(B * l * H * hd);
  attendCachedInto(q.f32, B, H, l, hd, cache, out, scale, sH);
  return new Tensor(out, [B, l, H * hd]);
}

/**
 * The attention of `attendKVCache` after the append: queries Qd [B, H, l, hd] against every
 * cached token with softmax scale `scale` (sH: the head temperatures of cosine attention, which bound
 * the scores, or null), merged heads written to out [B, l, H·hd]. The backend's `attendCached`
 * override (native/attention.c, whole heads on the pool's threads, the same bits) when it has one.
 */
export function attendCachedInto(Qd: Float32Array, B: number, H: number, l: number, hd: number, cache: KVCache, out: Float32Array,
  scale: number, sH: Float64Array | null): void {
  const Lc = cache.len, cap = cache.capacity, C = H * hd;
  const be = backend(), attnThreads = settings().attentionThreads;
  const prevThreads = be.threads, switchThreads = attnThreads > 0 && attnThreads !== prevThreads;
  if (switchThreads) be.setThreads(attnThreads);
  try {
    recordFlops(4 * B * H * l * Lc * hd, 'attn_scores');
    if (isDryRun()) return;
    // |q·k| ≤ s_h for unit vectors (q carries the temperature); the epsilon covers float32 rounding
    const bounds = new Float64Array(H);
    for (let h = 0; h < H; h++) {
      const sh = sH ? sH[h] * 1.0001 + 1e-6 : Infinity;
      bounds[h] = sh < 40 ? sh : NaN;
    }
    // whole heads on the pool's threads (native/attention.c): the same bits as the loop below
    if (be.native?.attendCached(Qd, cache.k, cache.v, B, H, l, hd, Lc, cap, scale, bounds, out)) return;
    const S = workspace().float32('attention.scores', l * Lc), sums = workspace().float64('attention.rowSums', l);
    for (let h = 0; h < H; h++) {
      const bound = Number.isNaN(bounds[h]) ? null : bounds[h];
      for (let b = 0; b < B; b++) {
        const bh = b * H + h, ko = bh * cap * hd;
        be.sgemm(false, true, l, Lc, hd, scale, Qd, bh * l * hd, hd, cache.k, ko, hd, 0, S, 0, Lc);
        expRowsInPlace(S, l, Lc, bound, sums);
        const oo = b * l * C + h * hd;
        be.sgemm(false, false, l, hd, Lc, 1, S, 0, Lc, cache.v, ko, hd, 0, out, oo, C);
        for (let i = 0; i < l; i++) {
          const r = 1 / sums[i], ro = oo + i * C;
          for (let d = 0; d < hd; d++) out[ro + d] *= r;
        }
      }
    }
  } finally {
    if (switchThreads) be.setThreads(prevThreads);
  }
}
