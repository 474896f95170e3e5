/**
 * KV-cache attention for inference (docs/VAR.md §3.3, §6): the per-block key/value cache, appending,
 * and the attention of new queries to everything cached (earlier scales and this one; no mask). The
 * softmax uses the table exp below; with cosine attention the head temperature bounds every score,
 * which replaces the row-max pass. The backend may override the attention (`attendCached`) and the
 * exp rows (`expRows`) by name.
 */
import { Tensor, isGradEnabled } from '../tensor.js';
import { backend, settings, configure, workspace } from '../../backend/index.js';
import { flopsCategory, recordFlops, isDryRun } from '../flops.js';

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
 * exp(x) for x ≤ 0 (softmax after subtracting a bound ≥ the max): e^x = e^{−k/64}·e^r with
 * k = ⌊−64x⌋ from a table (46 KB) and r ∈ (−1/64, 0] by a degree-3 Taylor polynomial (error
 * ≤ r⁴/24 ≈ 2.5e-9 relative, below float32 rounding). ~3× faster than Math.exp in V8, which
 * matters for the ~150M exponentials of a d16 generation. Below −90 the result is 0 (float32
 * denormals start at −87.3).
 */
const EXP_STEPS = 64, EXP_TABLE_N = 90 * EXP_STEPS;
const EXP_TABLE = Float64Array.from({ length: EXP_TABLE_N }, (_, k) => Math.exp(-k / EXP_STEPS));

/** Exported for tests: the table exp used by the inference softmax. */
export function tableExpNonPositive(x: number): number {
  const t = -EXP_STEPS * x;
  if (t >= EXP_TABLE_N) return 0;
  const k = t | 0, r = x + k * (1 / EXP_STEPS);
  return EXP_TABLE[k] * (1 + r * (1 + r * (0.5 + r * (1 / 6))));
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
    if (bound !== null) { sums[i] = expBoundedRow(S, o, o + n, bound); continue; }
    let m = -Infinity;
    for (let j = 0; j < n; j++) if (S[o + j] > m) m = S[o + j];
    let s = 0;
    for (let j = 0; j < n; j++) {
      // tableExpNonPositive(S[o + j] − m), inlined
      const x = S[o + j] - m, t = -EXP_STEPS * x;
      let e = 0;
      if (!(t >= EXP_TABLE_N)) {
        const k = t | 0, r = x + k * (1 / EXP_STEPS);
        e = EXP_TABLE[k] * (1 + r * (1 + r * (0.5 + r * (1 / 6))));
      }
      S[o + j] = e; s += e;
    }
    sums[i] = s;
  }
}

/**
 * S[o..end) ← exp(S − m) for a bound m with S − m ∈ (−80, 0] (cosine attention, see above: no
 * underflow test needed), returning the sum. Two elements per iteration with two partial sums, so
 * the float64 additions do not form one long dependency chain (~30 % faster in V8).
 */
function expBoundedRow(S: Float32Array, o: number, end: number, m: number): number {
  let s0 = 0, s1 = 0, j = o;
  for (; j + 1 < end; j += 2) {
    const x0 = S[j] - m, k0 = (-EXP_STEPS * x0) | 0, r0 = x0 + k0 * (1 / EXP_STEPS);
    const x1 = S[j + 1] - m, k1 = (-EXP_STEPS * x1) | 0, r1 = x1 + k1 * (1 / EXP_STEPS);
    const e0 = EXP_TABLE[k0] * (1 + r0 * (1 + r0 * (0.5 + r0 * (1 / 6))));
    const e1 = EXP_TABLE[k1] * (1 + r1 * (1 + r1 * (0.5 + r1 * (1 / 6))));
    S[j] = e0; S[j + 1] = e1; s0 += e0; s1 += e1;
  }
  if (j < end) {
    const x0 = S[j] - m, k0 = (-EXP_STEPS * x0) | 0, r0 = x0 + k0 * (1 / EXP_STEPS);
    const e0 = EXP_TABLE[k0] * (1 + r0 * (1 + r0 * (0.5 + r0 * (1 / 6))));
    S[j] = e0; s0 += e0;
  }
  return s0 + s1;
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
    flopsCategory('attn_scores', () => {
      recordFlops(4 * B * H * l * Lc * hd);
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
    });
  } finally {
    if (switchThreads) be.setThreads(prevThreads);
  }
}
