/**
 * VAR transformer hyper-parameters: presets (docs/VAR.md §2), custom sizes, and
 * architecture inference from a state dict's tensor shapes (docs/VAR.md §8, Appendix A).
 */
import type { Tensor } from '../tensor/index.js';

export interface VarConfig {
  /** Number of AdaLN self-attention blocks. */
  depth: number;
  /** Width C (= cond dim D). */
  width: number;
  heads: number;
  /** FFN hidden size (round(mlp_ratio·C); 4C in every release). */
  mlpHidden: number;
  /** Codebook size V (the head's output). */
  vocabSize: number;
  /** VQ feature channels (word_embed input). */
  Cvae: number;
  /** Real classes; the class table has numClasses + 1 rows, the last being the CFG null class. */
  numClasses: number;
  /** Shared AdaLN (d36): `shared_ada_lin` + per-block `ada_gss` instead of per-block `ada_lin` (docs/VAR.md §3.2). */
  sharedAdaLN: boolean;
  /** Side of each scale's token map, coarse to fine (docs/VAR.md §1). */
  patchNums: number[];
  /** Cosine attention with the learned clamped temperature (docs/VAR.md §3.3); all releases use it. */
  attnL2Norm: boolean;
  /** LayerNorm epsilon (no affine). */
  normEps: number;
  /** Label dropout probability of the teacher-forced forward, applied only with `training` (docs/VAR.md §3.6). */
  condDropRate: number;
  /** Stochastic depth of the last block (linearly spaced from 0 over blocks), training only. */
  dropPathRate: number;
}

export type VarPresetName = 'd16' | 'd20' | 'd24' | 'd30' | 'd36';

/** The 256px token pyramid (docs/VAR.md §1) and the 512px one used by d36. */
export const PATCH_NUMS_256 = Object.freeze([1, 2, 3, 4, 5, 6, 8, 10, 13, 16]);
export const PATCH_NUMS_512 = Object.freeze([1, 2, 3, 4, 6, 9, 13, 18, 24, 32]);

/**
 * The shape `build_vae_var` builds for a given depth (docs/VAR.md §2): C = 64·depth, heads = depth,
 * FFN 4C, V 4096, Cvae 32, 1000 classes, drop_path 0.1·depth/24. `overrides` win.
 */
export function varConfigForDepth(depth: number, overrides: Partial<VarConfig> = {}): VarConfig {
  if (!Number.isInteger(depth) || depth < 1) throw new RangeError(`VAR depth must be a positive integer, got ${depth}`);
  const width = overrides.width ?? depth * 64;
  const cfg: VarConfig = {
    depth,
    width,
    heads: depth,
    mlpHidden: Math.round(4 * width),
    vocabSize: 4096,
    Cvae: 32,
    numClasses: 1000,
    sharedAdaLN: false,
    patchNums: [...PATCH_NUMS_256],
    attnL2Norm: true,
    normEps: 1e-6,
    condDropRate: 0.1,
    dropPathRate: (0.1 * depth) / 24,
    ...overrides,
  };
  validateVarConfig(cfg);
  return cfg;
}

/** Presets of the released checkpoints: d16/d20/d24/d30 (256px) and the 512px d36 (shared AdaLN). */
export function varPreset(name: string, overrides: Partial<VarConfig> = {}): VarConfig {
  switch (name) {
    case 'd16': return varConfigForDepth(16, overrides);
    case 'd20': return varConfigForDepth(20, overrides);
    case 'd24': return varConfigForDepth(24, overrides);
    case 'd30': return varConfigForDepth(30, overrides);
    case 'd36': return varConfigForDepth(36, { sharedAdaLN: true, patchNums: [...PATCH_NUMS_512], ...overrides });
    default: throw new RangeError(`unknown VAR preset '${name}': expected one of d16, d20, d24, d30, d36`);
  }
}

export function validateVarConfig(c: VarConfig): void {
  const posInt = (k: keyof VarConfig) => {
    const v = c[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new RangeError(`VAR config: ${k} must be a positive integer, got ${String(v)}`);
  };
  for (const k of ['depth', 'width', 'heads', 'mlpHidden', 'vocabSize', 'Cvae', 'numClasses'] as const) posInt(k);
  if (c.width % c.heads !== 0) throw new RangeError(`VAR config: width ${c.width} is not divisible by heads ${c.heads}`);
  if (!Array.isArray(c.patchNums) || c.patchNums.length < 1 || c.patchNums.some((p) => !Number.isInteger(p) || p < 1)) {
    throw new RangeError(`VAR config: patchNums must be a non-empty list of positive integers, got [${String(c.patchNums)}]`);
  }
  if (c.patchNums[0] !== 1) throw new RangeError(`VAR config: the first patch number must be 1 (one SOS token), got ${c.patchNums[0]}`);
  if (!(c.condDropRate >= 0 && c.condDropRate < 1)) throw new RangeError(`VAR config: condDropRate must be in [0, 1), got ${c.condDropRate}`);
  if (!(c.dropPathRate >= 0 && c.dropPathRate < 1)) throw new RangeError(`VAR config: dropPathRate must be in [0, 1), got ${c.dropPathRate}`);
  if (!(c.normEps > 0)) throw new RangeError(`VAR config: normEps must be > 0, got ${c.normEps}`);
}

/** Tokens per scale, the total L and the half-open token range of each scale (docs/VAR.md §1 `begin_ends`). */
export function tokenLayout(patchNums: readonly number[]): { L: number; beginEnds: [number, number][]; lvl: Int32Array } {
  const beginEnds: [number, number][] = [];
  let L = 0;
  for (const pn of patchNums) { beginEnds.push([L, L + pn * pn]); L += pn * pn; }
  const lvl = new Int32Array(L);
  beginEnds.forEach(([b, e], si) => lvl.fill(si, b, e));
  return { L, beginEnds, lvl };
}

/** Number of parameters (excluding buffers) of a config: docs/VAR.md §8's formula, generalised. */
export function varParamCount(c: VarConfig): number {
  const C = c.width, H = c.heads, L = tokenLayout(c.patchNums).L, SN = c.patchNums.length;
  const perBlock = 3 * C * C /* qkv */ + 2 * C /* q,v bias */ + H + (C * C + C) /* proj */
    + (C * c.mlpHidden + c.mlpHidden) + (c.mlpHidden * C + C) /* ffn */
    + (c.sharedAdaLN ? 6 * C : 6 * C * C + 6 * C);
  const global = C /* pos_start */ + L * C + (C * c.Cvae + C) + (c.numClasses + 1) * C + SN * C
    + (c.sharedAdaLN ? 6 * C * C + 6 * C : 0);
  const head = (2 * C * C + 2 * C) + (c.vocabSize * C + c.vocabSize);
  return c.depth * perBlock + global + head;
}

function shapeOf(sd: Map<string, Tensor>, key: string): readonly number[] | undefined {
  return sd.get(key)?.shape;
}

/**
 * Infer the architecture from a state dict's shapes (docs/VAR.md §8, Appendix A):
 * depth from the `blocks.{i}` indices, width and Cvae from `word_embed.weight` (C, Cvae), heads from
 * `scale_mul_1H11` (1, H, 1, 1), vocabulary from `head.weight`, classes from `class_emb` rows − 1,
 * shared AdaLN from `shared_ada_lin` / `ada_gss`, patch numbers from `lvl_1L` (tokens per level → √),
 * FFN hidden from `fc1.weight`. `overrides` replace inferred values (needed e.g. for `heads` when
 * the checkpoint has no cosine attention, or `patchNums` when `lvl_1L` is absent).
 */
export function inferVarConfig(sd: Map<string, Tensor>, overrides: Partial<VarConfig> = {}): VarConfig {
  const problems: string[] = [];
  const need = (key: string, ndim: number): readonly number[] | undefined => {
    const s = shapeOf(sd, key);
    if (!s) { problems.push(`missing '${key}'`); return undefined; }
    if (s.length !== ndim) { problems.push(`'${key}' should be ${ndim}-d, got [${s.join(', ')}]`); return undefined; }
    return s;
  };

  let depth = 0;
  const blockIdx = new Set<number>();
  for (const k of sd.keys()) {
    const m = /^blocks\.(\d+)\./.exec(k);
    if (m) blockIdx.add(Number(m[1]));
  }
  for (let i = 0; blockIdx.has(i); i++) depth = i + 1;
  if (overrides.depth === undefined) {
    if (blockIdx.size === 0) problems.push(`no 'blocks.{i}.*' keys: this does not look like a VAR state dict`);
    else if (depth !== blockIdx.size) problems.push(`block indices are not contiguous from 0: found {${[...blockIdx].sort((a, b) => a - b).join(', ')}}`);
  }

  const we = need('word_embed.weight', 2);
  const width = overrides.width ?? we?.[0];
  const Cvae = overrides.Cvae ?? we?.[1];

  const sm = shapeOf(sd, 'blocks.0.attn.scale_mul_1H11');
  const attnL2Norm = overrides.attnL2Norm ?? sm !== undefined;
  let heads = overrides.heads;
  if (heads === undefined) {
    if (sm) {
      if (sm.length !== 4) problems.push(`'blocks.0.attn.scale_mul_1H11' should be (1, H, 1, 1), got [${sm.join(', ')}]`);
      else heads = sm[1];
    } else if (width !== undefined) {
      // no cosine attention: heads are not stored anywhere; assume the release convention head_dim = 64
      heads = width % 64 === 0 ? width / 64 : undefined;
      if (heads === undefined) problems.push(`cannot infer heads (no scale_mul_1H11 and width ${width} is not a multiple of 64): pass heads explicitly`);
    }
  }

  const hw = need('head.weight', 2);
  const vocabSize = overrides.vocabSize ?? hw?.[0];
  const ce = need('class_emb.weight', 2);
  const numClasses = overrides.numClasses ?? (ce ? ce[0] - 1 : undefined);
  const fc1 = need('blocks.0.ffn.fc1.weight', 2);
  const mlpHidden = overrides.mlpHidden ?? fc1?.[0];

  const hasShared = sd.has('shared_ada_lin.1.weight') || sd.has('blocks.0.ada_gss');
  const sharedAdaLN = overrides.sharedAdaLN ?? hasShared;

  let patchNums = overrides.patchNums;
  if (!patchNums) {
    const lvl = sd.get('lvl_1L');
    if (lvl) {
      patchNums = patchNumsFromLvl(lvl, problems);
    } else {
      const pos = shapeOf(sd, 'pos_1LC');
      const L = pos?.[1];
      if (L === 680) patchNums = [...PATCH_NUMS_256];
      else if (L === 2240) patchNums = [...PATCH_NUMS_512];
      else problems.push(`no 'lvl_1L' buffer to read the patch numbers from${L ? ` (L = ${L} is not a known pyramid)` : ''}: pass patchNums explicitly`);
    }
  }

  if (problems.length) throw new Error(`cannot infer the VAR architecture from the state dict:\n  - ${problems.join('\n  - ')}`);
  const cfg = varConfigForDepth(overrides.depth ?? depth, {
    width: width!, heads: heads!, mlpHidden: mlpHidden!, vocabSize: vocabSize!, Cvae: Cvae!, numClasses: numClasses!,
    sharedAdaLN, patchNums: patchNums!, attnL2Norm,
    ...stripUndefined(overrides),
  });
  return cfg;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** `lvl_1L` (1, L) holds each token's scale index; count tokens per level, pn = √count. */
function patchNumsFromLvl(lvl: Tensor, problems: string[]): number[] | undefined {
  const d = lvl.data;
  const counts: number[] = [];
  let prev = -1;
  for (let t = 0; t < d.length; t++) {
    const v = d[t];
    if (!Number.isInteger(v) || v < 0 || v < prev || v > prev + 1) {
      problems.push(`'lvl_1L' must count up 0, 0, …, 1, … without gaps; token ${t} has level ${v} after ${prev}`);
      return undefined;
    }
    if (v === prev + 1) counts.push(0);
    counts[v]++;
    prev = v;
  }
  const pns: number[] = [];
  for (const [si, n] of counts.entries()) {
    const pn = Math.round(Math.sqrt(n));
    if (pn * pn !== n) { problems.push(`'lvl_1L': level ${si} has ${n} tokens, not a square number`); return undefined; }
    pns.push(pn);
  }
  return pns;
}
