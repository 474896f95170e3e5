/**
 * The VAR block `AdaLNSelfAttn` and its pieces, mirroring the official basic_var.py split
 * (var-reference.md §3.2–3.5). Every piece works on any token subset (ActVAR runs them on the
 * selected tokens only) and is exported on its own:
 *
 *   blockAdaLN      ada_lin(SiLU(cond)) → gamma1, gamma2, scale1, scale2, shift1, shift2   (§3.2, 'adaln')
 *   adaLNModulate   ln(x)·(1+scale)+shift, LayerNorm without affine                         (§3.2)
 *   attentionQKV    x·W_qkvᵀ + (q_bias, 0, v_bias) → per-head q, k, v, cosine-normalised    (§3.3, 'qkv')
 *   attend          softmax(q·kᵀ + bias)·v for teacher forcing (block-causal bias)          (§3.3, 'attn_scores')
 *   attendWithCache append k, v to the block's KV cache, then attend to everything cached   (§3.3, 'attn_scores')
 *   attnProj        proj                                                                     ('attn_proj')
 *   ffn             fc2(GELU_tanh(fc1(x)))                                                   (§3.4, 'ffn')
 *   gatedResidual   x + branch·gamma (× the per-sample drop-path factor when training)
 *   blockForward    the dense block composed of the above
 *
 * The fused kernels are differentiable (custom backward), so the teacher-forced forward trains;
 * under `noGrad` they keep nothing for backward. Float32 rounding follows the official op order
 * (e.g. `ln(x)*(1+scale)+shift` rounds after each op) so results agree to ~1e-6.
 */
import {
  Tensor, result, isGradEnabled, assertFloat, linear, linearInto, silu, gelu, reshape, slice, add, attentionHeads,
  flopsCategory, recordFlops, isDryRun, type Rng,
} from '../tensor/index.js';
import { backend, settings, configure } from '../backend/index.js';
import type { VarConfig } from './config.js';

const fr = Math.fround;

/** Typed references to one block's parameters (read by name from the model's state-dict map). */
export interface VarBlock {
  readonly index: number;
  readonly C: number;
  readonly heads: number;
  readonly headDim: number;
  readonly eps: number;
  readonly attnL2Norm: boolean;
  /** Stochastic depth probability of this block (training only). */
  readonly dropPath: number;
  /** `ada_lin.1.*` (non-shared AdaLN) or null. */
  readonly adaLinW: Tensor | null;
  readonly adaLinB: Tensor | null;
  /** `ada_gss` (1,1,6,C) with shared AdaLN, else null. */
  readonly adaGss: Tensor | null;
  readonly qkvW: Tensor;
  readonly qBias: Tensor;
  readonly vBias: Tensor;
  /** `scale_mul_1H11` (1,H,1,1) with cosine attention, else null. */
  readonly scaleMul: Tensor | null;
  readonly projW: Tensor;
  readonly projB: Tensor;
  readonly fc1W: Tensor;
  readonly fc1B: Tensor;
  readonly fc2W: Tensor;
  readonly fc2B: Tensor;
}

/** Build the typed view of block `i` from the parameter map (keys as in var-reference Appendix A). */
export function makeBlock(params: Map<string, Tensor>, i: number, cfg: VarConfig): VarBlock {
  const p = `blocks.${i}.`;
  const get = (k: string): Tensor => {
    const t = params.get(p + k);
    if (!t) throw new Error(`VAR block ${i}: parameter '${p + k}' is missing`);
    return t;
  };
  const dpr = cfg.depth > 1 ? (cfg.dropPathRate * i) / (cfg.depth - 1) : 0; // torch.linspace(0, rate, depth)
  return {
    index: i, C: cfg.width, heads: cfg.heads, headDim: cfg.width / cfg.heads, eps: cfg.normEps,
    attnL2Norm: cfg.attnL2Norm, dropPath: dpr,
    adaLinW: cfg.sharedAdaLN ? null : get('ada_lin.1.weight'),
    adaLinB: cfg.sharedAdaLN ? null : get('ada_lin.1.bias'),
    adaGss: cfg.sharedAdaLN ? get('ada_gss') : null,
    qkvW: get('attn.mat_qkv.weight'), qBias: get('attn.q_bias'), vBias: get('attn.v_bias'),
    scaleMul: cfg.attnL2Norm ? get('attn.scale_mul_1H11') : null,
    projW: get('attn.proj.weight'), projB: get('attn.proj.bias'),
    fc1W: get('ffn.fc1.weight'), fc1B: get('ffn.fc1.bias'),
    fc2W: get('ffn.fc2.weight'), fc2B: get('ffn.fc2.bias'),
  };
}

// ---------------------------------------------------------------------------------------------
// AdaLN (§3.2)

/** The six per-sample modulation vectors of a block, each [B, C]. */
export interface AdaLN {
  gamma1: Tensor; gamma2: Tensor; scale1: Tensor; scale2: Tensor; shift1: Tensor; shift2: Tensor;
}

/** Split a [B, 6C] AdaLN output in the official chunk order gamma1, gamma2, scale1, scale2, shift1, shift2. */
export function splitAdaLN(ada: Tensor, C: number): AdaLN {
  const B = ada.shape[0];
  const v = reshape(ada, [B, 6, C]);
  const part = (j: number) => reshape(slice(v, 1, j, j + 1), [B, C]);
  return { gamma1: part(0), gamma2: part(1), scale1: part(2), scale2: part(3), shift1: part(4), shift2: part(5) };
}

/**
 * AdaLN modulation of one block. Non-shared: `ada_lin(cond) = Linear(SiLU(cond))` → [B, 6C].
 * Shared (d36): `sharedAda` is `shared_ada_lin(cond)` [B, 6C] (computed once per step by the model)
 * plus this block's `ada_gss`. Category 'adaln' (12·C² FLOPs per sample, §10).
 */
export function blockAdaLN(block: VarBlock, cond: Tensor, sharedAda?: Tensor | null): AdaLN {
  if (block.adaGss) {
    if (!sharedAda) throw new Error(`block ${block.index} uses shared AdaLN: pass shared_ada_lin(cond) as sharedAda`);
    return splitAdaLN(add(sharedAda, reshape(block.adaGss, [6 * block.C])), block.C);
  }
  const ada = flopsCategory('adaln', () => linear(silu(cond), block.adaLinW!, block.adaLinB));
  return splitAdaLN(ada, block.C);
}

/**
 * y = LN(x)·(1+scale) + shift over the last axis; LayerNorm without affine, biased variance,
 * `eps` inside the square root (§3.2, §9). x is [B, ..., C]; scale and shift are [B, C] (one row
 * per sample, broadcast over that sample's tokens). Statistics in float64.
 */
export function adaLNModulate(x: Tensor, scale: Tensor, shift: Tensor, eps: number): Tensor {
  const X = assertFloat(x, 'adaLNModulate'), S = assertFloat(scale, 'adaLNModulate'), Sh = assertFloat(shift, 'adaLNModulate');
  const C = x.shape[x.ndim - 1], rows = X.length / C, B = x.shape[0];
  if (S.length !== B * C || Sh.length !== B * C) {
    throw new RangeError(`adaLNModulate: scale/shift must be [${B}, ${C}] for x [${x.shape.join(', ')}], got [${scale.shape.join(', ')}] and [${shift.shape.join(', ')}]`);
  }
  const perB = B ? rows / B : 0;
  const needGrad = isGradEnabled() && (x.requiresGrad || scale.requiresGrad || shift.requiresGrad);
  if (!needGrad) {
    const Y = new Float32Array(X.length);
    modulateInto(X, S, Sh, B, rows, C, eps, Y);
    return new Tensor(Y, x.shape);
  }
  const onePlus = new Float32Array(B * C);
  for (let i = 0; i < onePlus.length; i++) onePlus[i] = 1 + S[i];
  const Y = new Float32Array(X.length);
  const Nrm = new Float32Array(X.length), rstdArr = new Float64Array(rows); // kept for the backward
  for (let r = 0; r < rows; r++) {
    const o = r * C, bo = Math.floor(r / perB) * C;
    // one pass: Σx and Σx² in float64 (exact enough for float32 rows: no cancellation at this precision)
    let s1 = 0, s2 = 0;
    for (let c = 0; c < C; c++) { const x = X[o + c]; s1 += x; s2 += x * x; }
    const m = s1 / C;
    const rstd = 1 / Math.sqrt(Math.max(s2 / C - m * m, 0) + eps);
    rstdArr[r] = rstd;
    for (let c = 0; c < C; c++) {
      const n = fr((X[o + c] - m) * rstd);
      Nrm[o + c] = n;
      Y[o + c] = fr(n * onePlus[bo + c]) + Sh[bo + c];
    }
  }
  return result(Y, x.shape, 'adaLNModulate', [x, scale, shift], (g) => {
    const gx = x.requiresGrad ? new Float32Array(X.length) : null;
    const gs = new Float32Array(B * C), gsh = new Float32Array(B * C);
    for (let r = 0; r < rows; r++) {
      const o = r * C, bo = Math.floor(r / perB) * C;
      let sdn = 0, sdnn = 0;
      for (let c = 0; c < C; c++) {
        const gi = g[o + c], n = Nrm[o + c];
        gsh[bo + c] += gi;
        gs[bo + c] += gi * n;
        const dn = gi * onePlus[bo + c];
        sdn += dn; sdnn += dn * n;
      }
      if (gx) {
        const rstd = rstdArr[r], mdn = sdn / C, mdnn = sdnn / C;
        for (let c = 0; c < C; c++) gx[o + c] = rstd * (g[o + c] * onePlus[bo + c] - mdn - Nrm[o + c] * mdnn);
      }
    }
    return [gx, scale.requiresGrad ? gs : null, shift.requiresGrad ? gsh : null];
  });
}

/** Scratch for `modulateInto`'s 1+scale (grows to the largest B·C seen). */
let onePlusBuf = new Float32Array(0);

/**
 * The forward of `adaLNModulate` into Y (inference): same float32 rounding, one loop per row
 * without the training branches. X has `rows` rows of C, `rows / B` per sample.
 */
function modulateInto(X: Float32Array, S: Float32Array, Sh: Float32Array, B: number, rows: number, C: number, eps: number, Y: Float32Array): void {
  const native = backend().native;
  if (native) { native.modulate(X, S, Sh, B, rows, C, eps, Y); return; }
  if (onePlusBuf.length < B * C) onePlusBuf = new Float32Array(B * C);
  const onePlus = onePlusBuf;
  for (let i = 0; i < B * C; i++) onePlus[i] = 1 + S[i];
  const perB = B ? rows / B : 0;
  for (let r = 0; r < rows; r++) {
    const o = r * C, bo = Math.floor(r / perB) * C;
    // Σx and Σx² in float64 with two partial sums each (shorter dependency chains)
    let s1 = 0, s2 = 0, t1 = 0, t2 = 0, c = 0;
    for (; c + 1 < C; c += 2) { const v = X[o + c], w = X[o + c + 1]; s1 += v; s2 += v * v; t1 += w; t2 += w * w; }
    if (c < C) { const v = X[o + c]; s1 += v; s2 += v * v; }
    s1 += t1; s2 += t2;
    const m = s1 / C;
    const rstd = 1 / Math.sqrt(Math.max(s2 / C - m * m, 0) + eps);
    for (let c = 0; c < C; c++) Y[o + c] = fr(fr((X[o + c] - m) * rstd) * onePlus[bo + c]) + Sh[bo + c];
  }
}

/**
 * x + branch·gamma, gamma [B, C] per sample (the residual of §3.2). `sampleScale` (length B) is
 * the drop-path factor (0 or 1/keep) of each sample, training only.
 */
export function gatedResidual(x: Tensor, branch: Tensor, gamma: Tensor, sampleScale: Float32Array | null = null): Tensor {
  const X = assertFloat(x, 'gatedResidual'), Y = assertFloat(branch, 'gatedResidual'), G = assertFloat(gamma, 'gatedResidual');
  if (X.length !== Y.length) throw new RangeError(`gatedResidual: x [${x.shape.join(', ')}] and branch [${branch.shape.join(', ')}] differ`);
  const C = x.shape[x.ndim - 1], rows = X.length / C, B = x.shape[0], perB = B ? rows / B : 0;
  if (G.length !== B * C) throw new RangeError(`gatedResidual: gamma must be [${B}, ${C}], got [${gamma.shape.join(', ')}]`);
  const out = new Float32Array(X.length);
  const native = sampleScale ? null : backend().native;
  if (native) native.gatedResidual(X, Y, G, B, rows, C, out);
  else for (let r = 0; r < rows; r++) {
    const o = r * C, b = Math.floor(r / perB), bo = b * C;
    if (sampleScale) {
      const s = sampleScale[b];
      for (let c = 0; c < C; c++) out[o + c] = X[o + c] + fr(fr(Y[o + c] * G[bo + c]) * s);
    } else {
      for (let c = 0; c < C; c++) out[o + c] = X[o + c] + fr(Y[o + c] * G[bo + c]);
    }
  }
  return result(out, x.shape, 'gatedResidual', [x, branch, gamma], (g) => {
    const gy = branch.requiresGrad ? new Float32Array(Y.length) : null;
    const gg = gamma.requiresGrad ? new Float32Array(G.length) : null;
    for (let r = 0; r < rows; r++) {
      const o = r * C, b = Math.floor(r / perB), bo = b * C, s = sampleScale ? sampleScale[b] : 1;
      for (let c = 0; c < C; c++) {
        const gi = g[o + c] * s;
        if (gy) gy[o + c] = gi * G[bo + c];
        if (gg) gg[bo + c] += gi * Y[o + c];
      }
    }
    return [x.requiresGrad ? g : null, gy, gg];
  });
}

// ---------------------------------------------------------------------------------------------
// Attention (§3.3)

/** ln(100): the clamp of the learned per-head temperature (stored by torch as a float32 .item()). */
const MAX_SCALE_MUL = Math.fround(Math.log(100));

/** Each head's temperature s_h = exp(min(scale_mul_h, ln 100)), rounded to float32 (§3.3). */
function headTemperatures(sm: Float32Array, H: number): Float64Array {
  const sH = new Float64Array(H);
  for (let h = 0; h < H; h++) sH[h] = fr(Math.exp(Math.min(sm[h], MAX_SCALE_MUL)));
  return sH;
}

/** The head temperatures of a block with cosine attention and `scale_mul_1H11`, else null. */
function blockTemperatures(block: VarBlock): Float64Array | null {
  return block.attnL2Norm && block.scaleMul ? headTemperatures(block.scaleMul.f32, block.heads) : null;
}

/**
 * One of q (part 0), k (1), v (2) from the fused qkv output [B, L, 3C] (channel layout [q | k | v],
 * head-major inside each): adds `bias`, and with cosine attention normalises each head vector
 * (x / max(‖x‖, 1e-12)) and, for q, multiplies by exp(min(scale_mul_h, ln 100)). Result [B, H, L, hd].
 */
function splitHead(qkv: Tensor, part: number, H: number, bias: Tensor | null, l2: boolean, scaleMul: Tensor | null): Tensor {
  const Q = assertFloat(qkv, 'attentionQKV');
  const B = qkv.shape[0], C3 = qkv.shape[qkv.ndim - 1], C = C3 / 3, hd = C / H;
  const L = Q.length / (B * C3);
  const bias32 = bias ? bias.f32 : null;
  const sm = scaleMul ? scaleMul.f32 : null;
  const sH = sm ? headTemperatures(sm, H) : new Float64Array(H).fill(1);
  const needGrad = isGradEnabled() && (qkv.requiresGrad || !!bias?.requiresGrad || !!scaleMul?.requiresGrad);
  const out = new Float32Array(B * L * C);
  const U = needGrad && l2 ? new Float32Array(out.length) : null; // unit vectors (before × s_h)
  const den = needGrad && l2 ? new Float64Array(B * H * L) : null;
  const zeroBias = new Float32Array(C);
  const bv = bias32 ?? zeroBias;
  for (let b = 0; b < B; b++) for (let l = 0; l < L; l++) {
    const src = (b * L + l) * C3 + part * C;
    for (let h = 0; h < H; h++) {
      const so = src + h * hd, dst = ((b * H + h) * L + l) * hd, bo = h * hd;
      let ss = 0;
      for (let d = 0; d < hd; d++) {
        const x = fr(Q[so + d] + bv[bo + d]); // qkv + bias, rounded as torch's addmm output
        out[dst + d] = x; ss += x * x;
      }
      if (l2) {
        // x / max(‖x‖, 1e-12) · s_h, as one multiply (≤ 1 ulp from torch's divide-then-multiply)
        const dn = Math.max(Math.sqrt(ss), 1e-12);
        if (den) {
          den[(b * H + h) * L + l] = dn;
          for (let d = 0; d < hd; d++) U![dst + d] = out[dst + d] / dn;
        }
        const f = sH[h] / dn;
        for (let d = 0; d < hd; d++) out[dst + d] *= f;
      }
    }
  }
  const inputs = [qkv, ...(bias ? [bias] : []), ...(scaleMul ? [scaleMul] : [])];
  return result(out, [B, H, L, hd], 'splitHead', inputs, (g) => {
    const gq = new Float32Array(Q.length);
    const gb = bias ? new Float32Array(C) : null;
    const gsm = scaleMul ? new Float32Array(H) : null;
    for (let b = 0; b < B; b++) for (let l = 0; l < L; l++) {
      const src = (b * L + l) * C3 + part * C;
      for (let h = 0; h < H; h++) {
        const so = src + h * hd, dst = ((b * H + h) * L + l) * hd;
        if (l2) {
          const s = sH[h], dn = den![(b * H + h) * L + l];
          let dot = 0, gs = 0;
          for (let d = 0; d < hd; d++) { const du = g[dst + d] * s; dot += du * U![dst + d]; gs += g[dst + d] * U![dst + d]; }
          if (gsm) gsm[h] += gs;
          const full = dn > 1e-12;
          for (let d = 0; d < hd; d++) {
            const du = g[dst + d] * s;
            gq[so + d] = full ? (du - U![dst + d] * dot) / dn : du / dn;
          }
        } else {
          for (let d = 0; d < hd; d++) gq[so + d] = g[dst + d];
        }
        if (gb) for (let d = 0; d < hd; d++) gb[h * hd + d] += gq[so + d];
      }
    }
    // d exp(min(p, max))/dp = s where p <= max (torch clamp_max passes the gradient at equality)
    if (gsm) for (let h = 0; h < H; h++) gsm[h] = sm![h] <= MAX_SCALE_MUL ? gsm[h] * sH[h] : 0;
    return [qkv.requiresGrad ? gq : null, ...(bias ? [bias.requiresGrad ? gb : null] : []), ...(scaleMul ? [scaleMul.requiresGrad ? gsm : null] : [])];
  });
}

/** q, k, v of a token set: each [B, H, L, headDim]. */
export interface QKV { q: Tensor; k: Tensor; v: Tensor }

/**
 * `qkv = x·W_qkvᵀ + cat(q_bias, zero_k_bias, v_bias)` split into heads; with cosine attention
 * q ← normalize(q)·exp(min(scale_mul, ln 100)), k ← normalize(k) (§3.3). x is [B, L, C]
 * (already AdaLN-modulated); the GEMM is category 'qkv'. The K bias is identically zero.
 */
export function attentionQKV(block: VarBlock, xNormed: Tensor): QKV {
  const qkv = flopsCategory('qkv', () => linear(xNormed, block.qkvW, null));
  const l2 = block.attnL2Norm;
  return {
    q: splitHead(qkv, 0, block.heads, block.qBias, l2, l2 ? block.scaleMul : null),
    k: splitHead(qkv, 1, block.heads, null, l2, null),
    v: splitHead(qkv, 2, block.heads, block.vBias, false, null),
  };
}

/** The softmax scale: 1 with cosine attention, else 0.25/√head_dim (§3.3; not 1/√head_dim). */
export function attnScale(block: VarBlock): number {
  return block.attnL2Norm ? 1 : 0.25 / Math.sqrt(block.headDim);
}

/**
 * Multi-head attention `softmax(scale·q·kᵀ + bias)·v` with the heads merged back:
 * q [B, H, Lq, hd], k and v [B, H, Lk, hd], bias [Lq, Lk] additive (0 / −inf) or null → [B, Lq, H·hd].
 * Differentiable. Used by the teacher-forced forward with the block-causal bias (§3.3, §3.6).
 * QKᵀ and AV are category 'attn_scores' (4·Lq·Lk·C FLOPs per sample, §10).
 */
export function attend(block: VarBlock, q: Tensor, k: Tensor, v: Tensor, bias: Tensor | null): Tensor {
  return flopsCategory('attn_scores', () => attentionHeads(q, k, v, { scale: attnScale(block), bias }));
}

// ---------------------------------------------------------------------------------------------
// KV cache (§3.3 inference, §6)

/**
 * One block's key/value cache for KV-cache inference: preallocated [batch, heads, capacity, headDim]
 * buffers, `len` tokens filled. Appending is explicit (`appendKV`); `attendWithCache` appends and
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
function checkCacheRoom(cache: KVCache, l: number): void {
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

/** Scores buffer reused across calls (inference only; grows to the largest l·Lcum seen). */
let scoreBuf = new Float32Array(0);
let rowSum = new Float64Array(0);

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
 * §3.3). q, k, v [B, H, l, hd] → [B, l, H·hd]. Category 'attn_scores'. The softmax normalisation
 * is applied to the l×hd output rows instead of the l×Lcum probabilities (fewer operations).
 */
export function attendWithCache(block: VarBlock, q: Tensor, k: Tensor, v: Tensor, cache: KVCache): Tensor {
  if (isGradEnabled() && (q.requiresGrad || k.requiresGrad || v.requiresGrad)) {
    throw new Error('attendWithCache is inference-only (run it under noGrad); for training use attend() with the block-causal bias');
  }
  appendKV(cache, k, v);
  const [B, H, l, hd] = q.shape;
  const out = new Float32Array(B * l * H * hd);
  attendCachedInto(block, q.f32, B, H, l, hd, cache, out);
  return new Tensor(out, [B, l, H * hd]);
}

/**
 * The attention of `attendWithCache` after the append: queries Qd [B, H, l, hd] against every
 * cached token, merged heads written to out [B, l, H·hd].
 */
function attendCachedInto(block: VarBlock, Qd: Float32Array, B: number, H: number, l: number, hd: number, cache: KVCache, out: Float32Array,
  sH: Float64Array | null = blockTemperatures(block)): void {
  const Lc = cache.len, cap = cache.capacity, C = H * hd, scale = attnScale(block);
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
      if (scoreBuf.length < l * Lc) scoreBuf = new Float32Array(l * Lc);
      if (rowSum.length < l) rowSum = new Float64Array(l);
      const S = scoreBuf, sums = rowSum;
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

// ---------------------------------------------------------------------------------------------
// projections, FFN (§3.3, §3.4)

/** Attention output projection, category 'attn_proj'. */
export function attnProj(block: VarBlock, a: Tensor): Tensor {
  return flopsCategory('attn_proj', () => linear(a, block.projW, block.projB));
}

/** FFN `fc2(GELU(fc1(x)))`, category 'ffn' (16·C² FLOPs per token, §10). */
export function ffn(block: VarBlock, h: Tensor): Tensor {
  return flopsCategory('ffn', () => linear(gelu(linear(h, block.fc1W, block.fc1B), true), block.fc2W, block.fc2B));
}

// ---------------------------------------------------------------------------------------------
// the block

/** How a block attends: teacher forcing (bias over all tokens, or none) or KV-cache inference. */
export type AttnMode = { kind: 'bias'; bias: Tensor | null } | { kind: 'cache'; cache: KVCache };

export interface BlockRunOptions {
  /** Apply drop-path (needs `rng`). */
  training?: boolean;
  rng?: Rng;
}

/** Per-sample drop-path factors (0 or 1/keep), or null when not training / rate 0 (timm DropPath). */
export function dropPathScale(block: VarBlock, B: number, opts: BlockRunOptions): Float32Array | null {
  if (!opts.training || block.dropPath === 0) return null;
  if (!opts.rng) throw new Error('drop-path in training mode needs an rng');
  const keep = 1 - block.dropPath, s = new Float32Array(B);
  for (let b = 0; b < B; b++) s[b] = opts.rng.uniform() < keep ? 1 / keep : 0;
  return s;
}

// ---------------------------------------------------------------------------------------------
// inference fast path

/**
 * Scratch activations of the KV-cache inference path (noGrad, not dry-run), reused across blocks
 * and scales instead of allocating the 5–22 MB intermediates of every block afresh (their page
 * faults and GC were a few % of a d16 generation). Never handed out: only the branch outputs,
 * which are fresh arrays, leave these functions.
 */
let scrX: Float32Array = new Float32Array(0), scrQKV: Float32Array = new Float32Array(0);
let scrQ: Float32Array = new Float32Array(0), scrH: Float32Array = new Float32Array(0);
let zeroBiasBuf = new Float32Array(0);
const scratch = (b: Float32Array, n: number): Float32Array => (b.length >= n ? b : new Float32Array(n));

/** True when the branch can take the scratch-buffer inference path. */
function inferencePath(opts: BlockRunOptions): boolean {
  return !isGradEnabled() && !isDryRun() && !(opts.training && opts.rng);
}

/**
 * `splitHead` for inference into `out`: part (0 q, 1 k, 2 v) of qkv [B, L, 3C] + bias, cosine-normalised
 * (× sH[h] for q) when l2; head h of row b, token i goes to out[((b·H + h)·stride + base + i)·hd ...]
 * (stride = L, base = 0 for a [B, H, L, hd] tensor; stride = capacity, base = len for a KV cache).
 * The same float32 rounding of q + bias as `splitHead`; the squared norm is summed in two float64 partial
 * sums (shorter dependency chains in V8), so the normalised vector can differ from `splitHead`'s by one
 * float32 ulp in rare cases.
 */
function splitInto(Q: Float32Array, B: number, L: number, H: number, hd: number, part: number, bias: Float32Array, l2: boolean,
  sH: Float64Array | null, out: Float32Array, stride: number, base: number): void {
  const native = backend().native;
  if (native) { native.splitHeads(Q, B, L, H, hd, part, bias, l2, sH, out, stride, base); return; }
  const C = H * hd, C3 = 3 * C;
  for (let b = 0; b < B; b++) for (let i = 0; i < L; i++) {
    const src = (b * L + i) * C3 + part * C;
    for (let h = 0; h < H; h++) {
      const so = src + h * hd, dst = ((b * H + h) * stride + base + i) * hd, bo = h * hd;
      let ss = 0, ss1 = 0, d = 0;
      for (; d + 1 < hd; d += 2) {
        const v = fr(Q[so + d] + bias[bo + d]), w = fr(Q[so + d + 1] + bias[bo + d + 1]);
        out[dst + d] = v; out[dst + d + 1] = w; ss += v * v; ss1 += w * w;
      }
      if (d < hd) { const v = fr(Q[so + d] + bias[bo + d]); out[dst + d] = v; ss += v * v; }
      ss += ss1;
      if (l2) {
        const f = (sH ? sH[h] : 1) / Math.max(Math.sqrt(ss), 1e-12);
        for (let d = 0; d < hd; d++) out[dst + d] *= f;
      }
    }
  }
}

/** `attnBranch` with a KV cache, for inference: identical results, intermediates in scratch buffers. */
function attnBranchCached(block: VarBlock, x: Tensor, ada: AdaLN, cache: KVCache): Tensor {
  if (x.ndim !== 3) throw new RangeError(`attnBranch: expected x [B, L, C], got [${x.shape.join(', ')}]`);
  const [B, l, C] = x.shape, H = block.heads, hd = block.headDim, rows = B * l, C3 = 3 * C;
  if (B !== cache.batch || H !== cache.heads || hd !== cache.headDim) {
    throw new RangeError(`attnBranch: x [${x.shape.join(', ')}] does not fit a KV cache of [${cache.batch}, ${cache.heads}, ·, ${cache.headDim}]`);
  }
  checkCacheRoom(cache, l);
  const S = assertFloat(ada.scale1, 'adaLNModulate'), Sh = assertFloat(ada.shift1, 'adaLNModulate');
  if (S.length !== B * C || Sh.length !== B * C) throw new RangeError(`adaLNModulate: scale/shift must be [${B}, ${C}] for x [${x.shape.join(', ')}]`);
  const xn = scrX = scratch(scrX, rows * C), qkv = scrQKV = scratch(scrQKV, rows * C3), q = scrQ = scratch(scrQ, rows * C);
  modulateInto(x.f32, S, Sh, B, rows, C, block.eps, xn);
  flopsCategory('qkv', () => linearInto(xn, rows, block.qkvW.f32, C3, C, null, qkv));
  const l2 = block.attnL2Norm;
  const sH = blockTemperatures(block);
  if (zeroBiasBuf.length < C) zeroBiasBuf = new Float32Array(C);
  splitInto(qkv, B, l, H, hd, 0, block.qBias.f32, l2, sH, q, l, 0);
  splitInto(qkv, B, l, H, hd, 1, zeroBiasBuf, l2, null, cache.k, cache.capacity, cache.len);
  splitInto(qkv, B, l, H, hd, 2, block.vBias.f32, false, null, cache.v, cache.capacity, cache.len);
  cache.len += l;
  attendCachedInto(block, q, B, H, l, hd, cache, xn, sH); // xn is free again: the attention output
  flopsCategory('attn_proj', () => linearInto(xn, rows, block.projW.f32, C, C, block.projB.f32, qkv));
  return gatedResidual(x, new Tensor(qkv.subarray(0, x.size), x.shape), ada.gamma1);
}

/** The FFN's input ln(x)·(1+scale2)+shift2 (inference) in the scratch buffer scrX: rows·C floats, valid until the next branch call. */
function ffnInputInfer(block: VarBlock, x: Tensor, ada: AdaLN): Float32Array {
  const C = x.shape[x.ndim - 1], rows = x.size / C, B = x.shape[0];
  const S = assertFloat(ada.scale2, 'adaLNModulate'), Sh = assertFloat(ada.shift2, 'adaLNModulate');
  if (S.length !== B * C || Sh.length !== B * C) throw new RangeError(`adaLNModulate: scale/shift must be [${B}, ${C}] for x [${x.shape.join(', ')}]`);
  const xn = scrX = scratch(scrX, rows * C);
  modulateInto(x.f32, S, Sh, B, rows, C, block.eps, xn);
  return xn.length === rows * C ? xn : xn.subarray(0, rows * C);
}

/** The dense `ffnBranch` for inference: identical results, the hidden activations in a scratch buffer. */
function ffnBranchInfer(block: VarBlock, x: Tensor, ada: AdaLN): Tensor {
  const C = x.shape[x.ndim - 1], rows = x.size / C, Dh = block.fc1W.shape[0];
  const xn = ffnInputInfer(block, x, ada);
  const hid = scrH = scratch(scrH, rows * Dh), y = scrQKV = scratch(scrQKV, rows * C);
  flopsCategory('ffn', () => {
    linearInto(xn, rows, block.fc1W.f32, Dh, C, block.fc1B.f32, hid);
    gelu(new Tensor(hid.length === rows * Dh ? hid : hid.subarray(0, rows * Dh), [rows * Dh]), true);
    linearInto(hid, rows, block.fc2W.f32, C, Dh, block.fc2B.f32, y);
  });
  return gatedResidual(x, new Tensor(y.subarray(0, x.size), x.shape), ada.gamma2);
}

/** x + attn(ln(x)·(1+scale1)+shift1)·gamma1 — the attention half of the block (§3.2). */
export function attnBranch(block: VarBlock, x: Tensor, ada: AdaLN, mode: AttnMode, opts: BlockRunOptions = {}): Tensor {
  if (mode.kind === 'cache' && inferencePath(opts)) return attnBranchCached(block, x, ada, mode.cache);
  const xn = adaLNModulate(x, ada.scale1, ada.shift1, block.eps);
  const { q, k, v } = attentionQKV(block, xn);
  const a = mode.kind === 'cache' ? attendWithCache(block, q, k, v, mode.cache) : attend(block, q, k, v, mode.bias);
  return gatedResidual(x, attnProj(block, a), ada.gamma1, dropPathScale(block, x.shape[0], opts));
}

/**
 * x + f(ln(x)·(1+scale2)+shift2)·gamma2 — the FFN half (§3.2). `f` defaults to the dense FFN;
 * ActVAR passes its expert FFN. On the inference path (no gradients) f's input h is a scratch
 * buffer that is reused by the next block: f must not keep it (copy what it needs).
 */
export function ffnBranch(
  block: VarBlock, x: Tensor, ada: AdaLN, opts: BlockRunOptions = {},
  f: (block: VarBlock, h: Tensor) => Tensor = ffn,
): Tensor {
  const infer = inferencePath(opts);
  if (f === ffn && infer) return ffnBranchInfer(block, x, ada);
  const xn = infer ? new Tensor(ffnInputInfer(block, x, ada), x.shape) : adaLNModulate(x, ada.scale2, ada.shift2, block.eps);
  // no drop-path on the inference path (it is taken without an rng even when `training` is set)
  return gatedResidual(x, f(block, xn), ada.gamma2, infer ? null : dropPathScale(block, x.shape[0], opts));
}

/** The dense `AdaLNSelfAttn.forward` (§3.2): x [B, L, C] → [B, L, C]. */
export function blockForward(block: VarBlock, x: Tensor, ada: AdaLN, mode: AttnMode, opts: BlockRunOptions = {}): Tensor {
  return ffnBranch(block, attnBranch(block, x, ada, mode, opts), ada, opts);
}
