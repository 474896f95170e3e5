/**
 * Token sampling with the official semantics (docs/VAR.md §6, helpers.py
 * `sample_with_top_k_top_p_` and `gumbel_softmax_with_rng`):
 *
 * - top-k: every logit strictly below the k-th largest becomes −inf (ties with it are kept).
 * - top-p: on the ascending sort of the (already top-k-masked) logits, softmax, cumulative sum;
 *   entries whose cumsum ≤ 1 − top_p become −inf, the largest entry is always kept. torch sorts
 *   stably on CPU, so tied values are ordered by index; the cumsum accumulates in float64
 *   (torch's CPU acc type) and is compared in float32.
 * - then one multinomial draw per row from softmax(logits), from our seeded Rng
 *   (torch's generator cannot be reproduced, §6).
 * The masking is in place, as in the official code.
 */
import { Tensor, type Rng } from '../tensor/index.js';

const fr = Math.fround;

/** k-th largest of a[0..n) (k ≥ 1), by quickselect on a scratch copy. */
function kthLargest(src: Float32Array, off: number, n: number, k: number, scratch: Float32Array): number {
  const a = scratch;
  for (let i = 0; i < n; i++) a[i] = src[off + i];
  const target = n - k; // index in ascending order
  let lo = 0, hi = n - 1;
  while (lo < hi) {
    const pivot = a[(lo + hi) >> 1];
    let i = lo, j = hi;
    while (i <= j) {
      while (a[i] < pivot) i++;
      while (a[j] > pivot) j--;
      if (i <= j) { const t = a[i]; a[i] = a[j]; a[j] = t; i++; j--; }
    }
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else break;
  }
  return a[target];
}

/**
 * The deterministic part of `sample_with_top_k_top_p_`: mask `logits` [rows, V] in place.
 * topK ≤ 0 or ≥ V disables top-k (torch would reject k > V; we clamp); topP ≤ 0 disables top-p.
 */
export function filterTopKTopP_(logits: Float32Array, rows: number, V: number, topK: number, topP: number): void {
  if (logits.length !== rows * V) throw new RangeError(`filterTopKTopP_: ${logits.length} logits do not make ${rows} rows of ${V}`);
  const scratch = new Float32Array(V);
  const doK = topK > 0 && topK < V, doP = topP > 0;
  const sorted = doP ? new Float32Array(V) : null;
  const thresh = fr(1 - topP);
  for (let r = 0; r < rows; r++) {
    const o = r * V;
    if (doK) {
      const kth = kthLargest(logits, o, V, topK, scratch);
      for (let i = 0; i < V; i++) if (logits[o + i] < kth) logits[o + i] = -Infinity;
    }
    if (doP) {
      // Only finite entries matter: −inf ones sort first with softmax 0, so their cumsum stays 0 ≤ 1 − top_p
      // (removed, which they already are). Sorting just the finite ones (≤ top_k after top-k) is much cheaper.
      const s = sorted!;
      let nf = 0;
      for (let i = 0; i < V; i++) { const x = logits[o + i]; if (x !== -Infinity) s[nf++] = x; }
      const fin = s.subarray(0, nf);
      fin.sort(); // ascending (NaN last)
      const mx = fin[nf - 1];
      let sum = 0;
      for (let i = 0; i < nf; i++) { const e = fr(Math.exp(fin[i] - mx)); scratch[i] = e; sum += e; }
      const inv = fr(1 / fr(sum));
      // removal is a prefix of the ascending order (cumsum is non-decreasing); never the last entry
      let cum = 0, nRemove = 0;
      for (let i = 0; i < nf - 1; i++) {
        cum += fr(scratch[i] * inv);
        if (fr(cum) <= thresh) nRemove = i + 1; else break;
      }
      if (nRemove > 0) {
        const edge = fin[nRemove - 1];
        let below = 0;
        for (let i = 0; i < nRemove && fin[i] < edge; i++) below++;
        let tiesToRemove = nRemove - below; // stable sort: the lowest-index ties come first
        for (let i = 0; i < V; i++) {
          const x = logits[o + i];
          if (x < edge) logits[o + i] = -Infinity;
          else if (x === edge && tiesToRemove > 0) { logits[o + i] = -Infinity; tiesToRemove--; }
        }
      }
    }
  }
}

/** Pick the generator of image `b`: one shared Rng, or one per image (results then do not depend on batching). */
export function rngFor(rng: Rng | readonly Rng[], b: number): Rng {
  if (Array.isArray(rng)) {
    const r = (rng as readonly Rng[])[b];
    if (!r) throw new RangeError(`no Rng for image ${b} (got ${(rng as readonly Rng[]).length})`);
    return r;
  }
  return rng as Rng;
}

/**
 * `sample_with_top_k_top_p_(logits_BlV, top_k, top_p, rng, num_samples=1)`: masks `logits`
 * [B, l, V] in place and draws one token per (b, position) from softmax(logits). Returns int32 [B, l].
 */
export function sampleWithTopKTopP_(logits: Tensor, topK: number, topP: number, rng: Rng | readonly Rng[]): Tensor {
  const [B, l, V] = logits.shape;
  const X = logits.f32;
  filterTopKTopP_(X, B * l, V, topK, topP);
  const idx = new Int32Array(B * l);
  const w = new Float64Array(V);
  for (let b = 0; b < B; b++) {
    const g = rngFor(rng, b);
    for (let j = 0; j < l; j++) {
      const o = (b * l + j) * V;
      let mx = -Infinity;
      for (let i = 0; i < V; i++) if (X[o + i] > mx) mx = X[o + i];
      if (mx === -Infinity || Number.isNaN(mx)) throw new RangeError(`sampling: row ${b * l + j} has no finite logit`);
      // −inf → 0 without calling exp (most of the row after top-k/top-p masking)
      for (let i = 0; i < V; i++) { const x = X[o + i]; w[i] = x === -Infinity ? 0 : Math.exp(x - mx); }
      idx[b * l + j] = g.multinomial(w, 0, V);
    }
  }
  return new Tensor(idx, [B, l]);
}

/**
 * The `more_smooth` token features (docs/VAR.md §6): h = softmax((logits·(1+ratio) + g)/tau) @ codebook with
 * Gumbel noise g from `rng` and tau = max(0.27·(1 − 0.95·ratio), 0.005), soft (hard=False). `logits`
 * [B, l, V] are the ones already masked by top-k/top-p. codebook [V, Cvae] → [B, l, Cvae].
 */
export function gumbelSmoothFeatures(logits: Tensor, ratio: number, codebook: Tensor, rng: Rng | readonly Rng[]): Tensor {
  const [B, l, V] = logits.shape;
  const X = logits.f32, E = codebook.f32, Cv = codebook.shape[1];
  if (codebook.shape[0] !== V) throw new RangeError(`more_smooth: codebook has ${codebook.shape[0]} rows, logits have ${V} classes`);
  const tau = Math.max(0.27 * (1 - ratio * 0.95), 0.005);
  const mulBy = fr(1 + ratio);
  const out = new Float32Array(B * l * Cv);
  const y = new Float64Array(V);
  for (let b = 0; b < B; b++) {
    const g = rngFor(rng, b);
    for (let j = 0; j < l; j++) {
      const o = (b * l + j) * V;
      let mx = -Infinity;
      for (let i = 0; i < V; i++) {
        const z = (fr(X[o + i] * mulBy) + g.gumbel()) / tau;
        y[i] = z; if (z > mx) mx = z;
      }
      let s = 0;
      for (let i = 0; i < V; i++) { const e = Math.exp(y[i] - mx); y[i] = e; s += e; }
      const oo = (b * l + j) * Cv;
      for (let i = 0; i < V; i++) {
        const p = y[i] / s;
        if (p === 0) continue;
        for (let c = 0; c < Cv; c++) out[oo + c] += p * E[i * Cv + c];
      }
    }
  }
  return new Tensor(out, [B, l, Cv]);
}

/**
 * A well-mixed 32-bit seed for image i of a run (a SplitMix32 step), so that the random streams of nearby
 * images are unrelated and every image's samples are independent of how images are batched.
 * `actvar generate` and the demo both seed image i with `new Rng(imageSeed(seed, i))`.
 */
export function imageSeed(seed: number, i: number): number {
  let z = (Math.imul(seed >>> 0, 0x9e3779b9) + Math.imul(i + 1, 0x85ebca6b)) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  return (z ^ (z >>> 16)) >>> 0;
}
