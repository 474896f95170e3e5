/**
 * ActVAR settings (paper §3.2–3.4, §4.1 "Implementation details", Table 2).
 *
 * - `scales`: indices (0-based) of the generation steps where weights and tokens are activated
 *   dynamically (the set S of paper eq. (12)). Default: the last two scales (13×13 and 16×16 for 256 px).
 * - `tokenRates`: per activated scale, the fraction of each row's tokens that a block updates
 *   (α, β in Table 2; 1 − η in paper eq. (12)). Default 0.75 each.
 * - `expertRate`: γ, the fraction of FFN experts each selected token runs (1 − μ in paper eq. (12)). Default 0.75.
 * - `experts`: N, the number of equal expert slices of every FFN (paper §3.2). Default 16.
 * - `grouping`: how hidden units are assigned to experts: 'contiguous' (unit j → expert ⌊j/dₑ⌋,
 *   the plain split of paper eq. (2–4)) or 'coactivation' (MoEfication-style balanced clustering of units
 *   that fire together on calibration tokens, stored as a permutation).
 * - `kvPolicy`: which keys/values a block at an activated scale computes and appends to its KV cache
 *   (docs/ACTVAR.md "Training (distillation)", KV policies). 'kept' (default): only the kept tokens'
 *   (QKV for K_t tokens; later tokens and scales attend to the kept tokens only — the literal reading of
 *   paper eq. (8)). 'all': keys/values of every token of the scale (computed for all l tokens and
 *   appended), queries for the kept tokens only, so attention sees the full context; costs 4·(l−K_t)·C²
 *   more K/V FLOPs per row and block and a longer cache for every later query.
 * - `selector`: the gate kind. Only 'linear' (Linear(C→1) + sigmoid) is implemented; see selector.ts
 *   for why a linear gate rather than a small MLP.
 */
export type ExpertGrouping = 'contiguous' | 'coactivation';
export type SelectorKind = 'linear';
export type KvPolicy = 'kept' | 'all';

export interface ActVarConfig {
  scales: number[];
  tokenRates: number[];
  expertRate: number;
  experts: number;
  grouping: ExpertGrouping;
  selector: SelectorKind;
  kvPolicy: KvPolicy;
}

/** What the wrapped model must tell us to resolve defaults and validate. */
export interface ActVarModelShape {
  /** Number of scales (steps) of the VAR, e.g. 10. */
  numScales: number;
  /** FFN hidden width (4·C for the released models). */
  ffnHidden: number;
  /** Tokens per scale (pn²), used to check that every activated scale keeps at least one token. */
  tokensPerScale?: readonly number[];
}

export const DEFAULT_TOKEN_RATE = 0.75;
export const DEFAULT_EXPERT_RATE = 0.75;
export const DEFAULT_EXPERTS = 16;
/** Kept until the evaluation issue measures quality per FLOP of both policies (docs/ACTVAR.md). */
export const DEFAULT_KV_POLICY: KvPolicy = 'kept';

export class ActVarConfigError extends Error {
  constructor(message: string) { super(message); this.name = 'ActVarConfigError'; }
}

function checkRate(name: string, r: number): void {
  if (typeof r !== 'number' || !Number.isFinite(r) || r <= 0 || r > 1) {
    throw new ActVarConfigError(`${name} must be a number in (0, 1], got ${r}`);
  }
}

/**
 * Fill defaults and validate. Throws ActVarConfigError naming the bad field and the valid range.
 * A single token rate is broadcast to every activated scale.
 */
export function resolveActVarConfig(opts: Partial<ActVarConfig>, model: ActVarModelShape): ActVarConfig {
  const SN = model.numScales;
  if (!Number.isInteger(SN) || SN < 1) throw new ActVarConfigError(`the model must have at least one scale, got ${SN}`);
  const scales = (opts.scales ?? (SN >= 2 ? [SN - 2, SN - 1] : [SN - 1])).slice();
  if (scales.length === 0) throw new ActVarConfigError('scales must name at least one scale index');
  for (const s of scales) {
    if (!Number.isInteger(s) || s < 0 || s >= SN) throw new ActVarConfigError(`scale index ${s} is out of range: the model has ${SN} scales (valid 0..${SN - 1})`);
  }
  if (new Set(scales).size !== scales.length) throw new ActVarConfigError(`scales must be distinct, got ${scales.join(',')}`);
  let tokenRates = (opts.tokenRates ?? scales.map(() => DEFAULT_TOKEN_RATE)).slice();
  if (tokenRates.length === 1 && scales.length > 1) tokenRates = scales.map(() => tokenRates[0]);
  if (tokenRates.length !== scales.length) {
    throw new ActVarConfigError(`give one token rate per activated scale: ${scales.length} scale(s) (${scales.join(',')}) but ${tokenRates.length} rate(s) (${tokenRates.join(',')})`);
  }
  tokenRates.forEach((r, i) => checkRate(`token rate for scale ${scales[i]}`, r));
  // order by scale, keeping each rate with its scale
  const order = scales.map((_, i) => i).sort((a, b) => scales[a] - scales[b]);
  tokenRates = order.map((i) => tokenRates[i]);
  scales.sort((a, b) => a - b);
  const expertRate = opts.expertRate ?? DEFAULT_EXPERT_RATE;
  checkRate('expert rate', expertRate);
  const experts = opts.experts ?? DEFAULT_EXPERTS;
  if (!Number.isInteger(experts) || experts < 1) throw new ActVarConfigError(`experts must be a positive integer, got ${experts}`);
  if (model.ffnHidden % experts !== 0) {
    throw new ActVarConfigError(`experts (${experts}) must divide the FFN hidden width ${model.ffnHidden} so that all experts are equal (paper §3.2)`);
  }
  const grouping = opts.grouping ?? 'contiguous';
  if (grouping !== 'contiguous' && grouping !== 'coactivation') throw new ActVarConfigError(`grouping must be 'contiguous' or 'coactivation', got '${grouping}'`);
  const selector = opts.selector ?? 'linear';
  if (selector !== 'linear') throw new ActVarConfigError(`selector must be 'linear', got '${selector}'`);
  const kvPolicy = opts.kvPolicy ?? DEFAULT_KV_POLICY;
  if (kvPolicy !== 'kept' && kvPolicy !== 'all') throw new ActVarConfigError(`kv policy must be 'kept' or 'all', got '${String(kvPolicy)}'`);
  return { scales, tokenRates, expertRate, experts, grouping, selector, kvPolicy };
}

/**
 * K_t = round(rate · l), at least 1 and at most l (round half up, i.e. Math.round; the paper does not
 * say how it rounds: 0.75·169 = 126.75 → 127, 0.5·169 = 84.5 → 85).
 */
export function tokensToKeep(rate: number, l: number): number {
  return Math.min(l, Math.max(1, Math.round(rate * l)));
}

/** K_w = round(γ · N), at least 1 and at most N. */
export function expertsToKeep(gamma: number, N: number): number {
  return Math.min(N, Math.max(1, Math.round(gamma * N)));
}

/** The token rate for scale `si`, or null when the scale is not activated. */
export function tokenRateAt(cfg: ActVarConfig, si: number): number | null {
  const i = cfg.scales.indexOf(si);
  return i < 0 ? null : cfg.tokenRates[i];
}

/** The config as safetensors `__metadata__` (string values only). */
export function configToMetadata(cfg: ActVarConfig): Record<string, string> {
  return { 'actvar.config': JSON.stringify(cfg) };
}

/** Inverse of configToMetadata; null when the metadata holds no ActVAR config. */
export function configFromMetadata(meta: Record<string, string> | undefined | null): Partial<ActVarConfig> | null {
  const s = meta?.['actvar.config'];
  if (!s) return null;
  let v: unknown;
  try { v = JSON.parse(s); } catch { throw new ActVarConfigError(`the ActVAR weights carry an unreadable 'actvar.config' metadata entry: ${s.slice(0, 80)}`); }
  if (!v || typeof v !== 'object') throw new ActVarConfigError('the ActVAR weights carry an \'actvar.config\' metadata entry that is not an object');
  return v as Partial<ActVarConfig>;
}

/** Parse "0.75,0.5" (CLI helper). */
export function parseRateList(s: string, what: string): number[] {
  const parts = s.split(',').map((p) => p.trim()).filter((p) => p.length > 0);
  if (parts.length === 0) throw new ActVarConfigError(`${what}: expected a comma-separated list of numbers, got '${s}'`);
  return parts.map((p) => {
    const v = Number(p);
    if (!Number.isFinite(v)) throw new ActVarConfigError(`${what}: '${p}' is not a number`);
    return v;
  });
}
