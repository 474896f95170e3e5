/**
 * The typed view of one VAR block's parameters (state-dict keys as in docs/VAR.md Appendix A) and
 * the per-block constants derived from them: the softmax scale and the head temperatures (docs/VAR.md §3.3).
 */
import { Tensor, headTemperatures, flopsTag } from '../tensor/index.js';
import type { VarConfig } from './config.js';

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

/** Build the typed view of block `i` from the parameter map (keys as in docs/VAR.md Appendix A). */
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
    // the FLOP category of each weight's work (docs/VAR.md §10)
    adaLinW: cfg.sharedAdaLN ? null : flopsTag(get('ada_lin.1.weight'), 'adaln'),
    adaLinB: cfg.sharedAdaLN ? null : get('ada_lin.1.bias'),
    adaGss: cfg.sharedAdaLN ? get('ada_gss') : null,
    qkvW: flopsTag(get('attn.mat_qkv.weight'), 'qkv'), qBias: get('attn.q_bias'), vBias: get('attn.v_bias'),
    scaleMul: cfg.attnL2Norm ? get('attn.scale_mul_1H11') : null,
    projW: flopsTag(get('attn.proj.weight'), 'attn_proj'), projB: get('attn.proj.bias'),
    fc1W: flopsTag(get('ffn.fc1.weight'), 'ffn'), fc1B: get('ffn.fc1.bias'),
    fc2W: flopsTag(get('ffn.fc2.weight'), 'ffn'), fc2B: get('ffn.fc2.bias'),
  };
}

// ---------------------------------------------------------------------------------------------

/** The six per-sample modulation vectors of a block, each [B, C]. */
export interface AdaLN {
  gamma1: Tensor; gamma2: Tensor; scale1: Tensor; scale2: Tensor; shift1: Tensor; shift2: Tensor;
}


/** The softmax scale: 1 with cosine attention, else 0.25/√head_dim (docs/VAR.md §3.3; not 1/√head_dim). */
export function attnScale(block: VarBlock): number {
  return block.attnL2Norm ? 1 : 0.25 / Math.sqrt(block.headDim);
}

/** The head temperatures of a block with cosine attention and `scale_mul_1H11`, else null. */
export function blockTemperatures(block: VarBlock): Float64Array | null {
  return block.attnL2Norm && block.scaleMul ? headTemperatures(block.scaleMul.f32, block.heads) : null;
}
