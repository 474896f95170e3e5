/**
 * The VAR block `AdaLNSelfAttn` and its pieces, mirroring the official basic_var.py split
 * (docs/VAR.md §3.2–3.5). Every piece works on any token subset (ActVAR runs them on the
 * selected tokens only) and is exported on its own:
 *
 *   blockAdaLN      ada_lin(SiLU(cond)) → gamma1, gamma2, scale1, scale2, shift1, shift2   (docs/VAR.md §3.2, 'adaln')
 *   adaLNModulate   ln(x)·(1+scale)+shift, LayerNorm without affine                         (docs/VAR.md §3.2)
 *   attentionQKV    x·W_qkvᵀ + (q_bias, 0, v_bias) → per-head q, k, v, cosine-normalised    (docs/VAR.md §3.3, 'qkv')
 *   attend          softmax(q·kᵀ + bias)·v for teacher forcing (block-causal bias)          (docs/VAR.md §3.3, 'attn_scores')
 *   attendWithCache append k, v to the block's KV cache, then attend to everything cached   (docs/VAR.md §3.3, 'attn_scores')
 *   attnProj        proj                                                                     ('attn_proj')
 *   ffn             fc2(GELU_tanh(fc1(x)))                                                   (docs/VAR.md §3.4, 'ffn')
 *   gatedResidual   x + branch·gamma (× the per-sample drop-path factor when training)
 *   blockForward    the dense block composed of the above
 *
 * The fused row ops (AdaLN modulation, gated residual, head split, KV-cache attention) are ops of the
 * tensor layer (src/tensor/ops/adaln.ts, heads.ts, kv-attention.ts) with their backward passes and
 * backend overrides; the KV-cache inference path of the two branches, with its scratch buffers, is
 * block-infer.ts. Float32 rounding follows the official op order, so results agree to ~1e-6.
 */
import {
  Tensor, linear, silu, gelu, reshape, slice, add, attentionHeads, isGradEnabled,
  adaLNModulate, gatedResidual, splitHeads, attendKVCache, type KVCache, type Rng,
} from '../tensor/index.js';
import { attnScale, blockTemperatures, type VarBlock, type AdaLN } from './block.js';
import { attnBranchCached, ffnBranchInfer, ffnInputInfer } from './block-infer.js';

export { makeBlock, attnScale, type VarBlock, type AdaLN } from './block.js';
export { adaLNModulate, gatedResidual, createKVCache, appendKV, type KVCache } from '../tensor/index.js';

// ---------------------------------------------------------------------------------------------
// AdaLN (docs/VAR.md §3.2)

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
  const ada = linear(silu(cond), block.adaLinW!, block.adaLinB);
  return splitAdaLN(ada, block.C);
}

// ---------------------------------------------------------------------------------------------
// Attention (docs/VAR.md §3.3)

/** q, k, v of a token set: each [B, H, L, headDim]. */
export interface QKV { q: Tensor; k: Tensor; v: Tensor }

/**
 * `qkv = x·W_qkvᵀ + cat(q_bias, zero_k_bias, v_bias)` split into heads; with cosine attention
 * q ← normalize(q)·exp(min(scale_mul, ln 100)), k ← normalize(k) (docs/VAR.md §3.3). x is [B, L, C]
 * (already AdaLN-modulated); the GEMM is category 'qkv'. The K bias is identically zero.
 */
export function attentionQKV(block: VarBlock, xNormed: Tensor): QKV {
  const qkv = linear(xNormed, block.qkvW, null);
  const l2 = block.attnL2Norm;
  return {
    q: splitHeads(qkv, 0, block.heads, block.qBias, l2, l2 ? block.scaleMul : null),
    k: splitHeads(qkv, 1, block.heads, null, l2, null),
    v: splitHeads(qkv, 2, block.heads, block.vBias, false, null),
  };
}

/**
 * Multi-head attention `softmax(scale·q·kᵀ + bias)·v` with the heads merged back:
 * q [B, H, Lq, hd], k and v [B, H, Lk, hd], bias [Lq, Lk] additive (0 / −inf) or null → [B, Lq, H·hd].
 * Differentiable. Used by the teacher-forced forward with the block-causal bias (docs/VAR.md §3.3, §3.6).
 * QKᵀ and AV are category 'attn_scores' (4·Lq·Lk·C FLOPs per sample, §10).
 */
export function attend(block: VarBlock, q: Tensor, k: Tensor, v: Tensor, bias: Tensor | null): Tensor {
  return attentionHeads(q, k, v, { scale: attnScale(block), bias });
}

/**
 * KV-cache attention (inference only, not differentiable): appends this step's k, v to `cache`,
 * then the l new queries attend to all cached tokens (earlier scales and this one; no mask needed,
 * docs/VAR.md §3.3). q, k, v [B, H, l, hd] → [B, l, H·hd]. Category 'attn_scores'. The softmax normalisation
 * is applied to the l×hd output rows instead of the l×Lcum probabilities (fewer operations).
 */
export function attendWithCache(block: VarBlock, q: Tensor, k: Tensor, v: Tensor, cache: KVCache): Tensor {
  return attendKVCache(q, k, v, cache, attnScale(block), blockTemperatures(block));
}

// ---------------------------------------------------------------------------------------------
// projections, FFN (docs/VAR.md §3.3, §3.4)

/** Attention output projection, category 'attn_proj'. */
export function attnProj(block: VarBlock, a: Tensor): Tensor {
  return linear(a, block.projW, block.projB);
}

/** FFN `fc2(GELU(fc1(x)))`, category 'ffn' (16·C² FLOPs per token, §10). */
export function ffn(block: VarBlock, h: Tensor): Tensor {
  return linear(gelu(linear(h, block.fc1W, block.fc1B), true), block.fc2W, block.fc2B);
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

/** True when the branch can take the KV-cache inference path (block-infer.ts). */
function inferencePath(opts: BlockRunOptions): boolean {
  return !isGradEnabled() && !(opts.training && opts.rng);
}

/** x + attn(ln(x)·(1+scale1)+shift1)·gamma1 — the attention half of the block (docs/VAR.md §3.2). */
export function attnBranch(block: VarBlock, x: Tensor, ada: AdaLN, mode: AttnMode, opts: BlockRunOptions = {}): Tensor {
  if (mode.kind === 'cache' && inferencePath(opts)) return attnBranchCached(block, x, ada, mode.cache);
  const xn = adaLNModulate(x, ada.scale1, ada.shift1, block.eps);
  const { q, k, v } = attentionQKV(block, xn);
  const a = mode.kind === 'cache' ? attendWithCache(block, q, k, v, mode.cache) : attend(block, q, k, v, mode.bias);
  return gatedResidual(x, attnProj(block, a), ada.gamma1, dropPathScale(block, x.shape[0], opts));
}

/**
 * x + f(ln(x)·(1+scale2)+shift2)·gamma2 — the FFN half (docs/VAR.md §3.2). `f` defaults to the dense FFN;
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

/** The dense `AdaLNSelfAttn.forward` (docs/VAR.md §3.2): x [B, L, C] → [B, L, C]. */
export function blockForward(block: VarBlock, x: Tensor, ada: AdaLN, mode: AttnMode, opts: BlockRunOptions = {}): Tensor {
  return ffnBranch(block, attnBranch(block, x, ada, mode, opts), ada, opts);
}
