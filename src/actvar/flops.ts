/**
 * Analytic FLOPs of VAR inference, dense and with ActVAR, and paper eq. (12).
 *
 * Convention (docs/VAR.md §10): matmul FLOPs only, 1 multiply-add = 2 FLOPs. Per block, at a scale
 * with l new tokens and Lcum cached tokens (KV cache, including this scale's):
 *   QKV 6·l·C², attn out-proj 2·l·C², scores 4·l·Lcum·C (QKᵀ and AV), FFN 4·l·C·D_h (= 16·l·C²),
 *   AdaLN 12·C² per row and step. Per step: head 2·l·C·V and head-AdaLN 4·C² per row (category 'head').
 *   Per image: word_embed 2·l·Cvae·C for every scale after the first (computed before the CFG repeat,
 *   so not doubled). The Phi conv of the VQVAE is not part of the transformer and is not counted here.
 * CFG doubles every per-row term (rows = 2·B).
 *
 * ActVAR at an activated scale (our execution, paper §3.4, see actvar.ts): per row, with
 * K = K_t selected tokens, K_w of N experts:
 *   selector 2·l·C (all tokens), QKV 6·K·C², out-proj 2·K·C², scores 4·K·Lcum'·C where the cache
 *   holds only the selected tokens of activated scales (Lcum' = Σ over earlier scales of the tokens
 *   that entered the cache + K), router 2·K·C·N, FFN 4·K·C·D_h·K_w/N. AdaLN and head unchanged.
 *   With kvPolicy 'all' (config.ts): Q 2·K·C², K/V 4·l·C² (every token's key and value), and every
 *   token enters the cache (Lcum' counts all tokens), so the scores of the kept queries cost 4·K·Lcum·C.
 *
 * paper eq. (12) of the paper, per activated scale and block, with η = 1 − token rate, μ = 1 − expert rate:
 *   as printed:  8·η·L·H²·(1 + 2μ) − 2·L·H·(1 + (1 − η)·N)
 *   corrected:   8·L·H²·[η + 2·(η + μ − η·μ)] − 2·L·H·(1 + (1 − η)·N)
 * (docs/VAR.md §11: a skipped token saves its attention projections 8H² and its FFN 16H²; a kept
 * token saves the fraction μ of its FFN; the printed formula multiplies the FFN saving by η.)
 * Both are reported as a fraction of the dense transformer FLOPs (KV-cache inference, CFG on; CFG
 * scales numerator and denominator alike).
 */
import { tokensToKeep, expertsToKeep, type ActVarConfig } from './config.js';
import { Tensor, countFlops, dryRun, type FlopsCounter } from '../tensor/index.js';
import { VAR, varParamShapes } from '../var/var.js';
import { varPreset, type VarConfig } from '../var/config.js';
import { ActVAR, runTransformer } from './actvar.js';

/** The model dimensions FLOPs depend on. */
export interface FlopsModel {
  depth: number;
  /** Width C. */
  width: number;
  /** FFN hidden width D_h. */
  ffnHidden: number;
  /** Vocabulary V. */
  vocab: number;
  /** VQ feature width Cvae. */
  cvae: number;
  patchNums: readonly number[];
}

/** The released 256 px models (docs/VAR.md §2). */
export function presetFlopsModel(name: string): FlopsModel {
  const m = /^d(\d+)$/.exec(name);
  const depth = m ? Number(m[1]) : NaN;
  if (![16, 20, 24, 30].includes(depth)) throw new RangeError(`unknown preset '${name}': use d16, d20, d24 or d30`);
  const C = depth * 64;
  return { depth, width: C, ffnHidden: 4 * C, vocab: 4096, cvae: 32, patchNums: [1, 2, 3, 4, 5, 6, 8, 10, 13, 16] };
}

export type FlopsBreakdown = Record<string, number> & { total: number };

export interface FlopsOptions {
  /** Batch size B (images); default 1. */
  batch?: number;
  /** Classifier-free guidance doubles the rows; default true. */
  cfg?: boolean;
  /** AdaLN (ada_lin) recomputed at every step (the official code) or once per generation (cached). Default true. */
  adalnPerStep?: boolean;
}

function finish(b: Record<string, number>): FlopsBreakdown {
  let total = 0;
  for (const v of Object.values(b)) total += v;
  return { ...b, total };
}

/**
 * Analytic FLOPs of one `autoregressiveInfer` call (transformer only). With `actvar` given, the
 * activated scales are counted as ActVAR executes them.
 */
export function analyticFlops(m: FlopsModel, actvar: ActVarConfig | null = null, opts: FlopsOptions = {}): FlopsBreakdown {
  const B = opts.batch ?? 1, rows = (opts.cfg ?? true) ? 2 * B : B;
  const adalnPerStep = opts.adalnPerStep ?? true;
  const C = m.width, Dh = m.ffnHidden;
  const c = { qkv: 0, attn_proj: 0, attn_scores: 0, ffn: 0, adaln: 0, head: 0, word_embed: 0, router: 0, selector: 0 };
  let cache = 0;
  m.patchNums.forEach((pn, si) => {
    const l = pn * pn;
    const ri = actvar ? actvar.scales.indexOf(si) : -1;
    const kt = ri >= 0 ? tokensToKeep(actvar!.tokenRates[ri], l) : l;
    const kw = ri >= 0 ? expertsToKeep(actvar!.expertRate, actvar!.experts) : 0;
    // kvPolicy 'all': keys/values (and the cache) for every token of the scale, queries of the kept ones
    const kv = ri >= 0 && actvar!.kvPolicy === 'all' ? l : kt;
    cache += kv;
    for (let b = 0; b < m.depth; b++) {
      if (adalnPerStep || si === 0) c.adaln += rows * 12 * C * C;
      c.qkv += rows * (2 * kt + 4 * kv) * C * C;
      c.attn_proj += rows * 2 * kt * C * C;
      c.attn_scores += rows * 4 * kt * cache * C;
      if (ri >= 0) {
        c.selector += rows * 2 * l * C;
        c.router += rows * 2 * kt * C * actvar!.experts;
        c.ffn += rows * 4 * kt * C * Dh * kw / actvar!.experts;
      } else {
        c.ffn += rows * 4 * l * C * Dh;
      }
    }
    c.head += rows * 2 * l * C * m.vocab;
    if (adalnPerStep || si === 0) c.head += rows * 4 * C * C; // head AdaLN (head_nm.ada_lin)
    if (si > 0) c.word_embed += B * 2 * l * m.cvae * C;
  });
  return finish(c);
}

function eq12(m: FlopsModel, cfg: ActVarConfig, corrected: boolean): number {
  const H = m.width, N = cfg.experts;
  const mu = 1 - cfg.expertRate;
  let s = 0;
  cfg.scales.forEach((si, i) => {
    const L = m.patchNums[si] ** 2;
    const eta = 1 - cfg.tokenRates[i];
    const saved = corrected ? 8 * L * H * H * (eta + 2 * (eta + mu - eta * mu)) : 8 * eta * L * H * H * (1 + 2 * mu);
    s += m.depth * (saved - 2 * L * H * (1 + (1 - eta) * N));
  });
  // one row of numerator over one row of the dense count (CFG does not change the fraction)
  const dense = analyticFlops(m, null, { cfg: false });
  return s / (dense.total - dense.word_embed);
}

/** paper eq. (12) exactly as printed in the paper, as a fraction of the dense transformer FLOPs. */
export function eq12AsPrinted(m: FlopsModel, cfg: ActVarConfig): number { return eq12(m, cfg, false); }

/** paper eq. (12) with the FFN term corrected per docs/VAR.md §11, as a fraction of the dense FLOPs. */
export function eq12Corrected(m: FlopsModel, cfg: ActVarConfig): number { return eq12(m, cfg, true); }

/** The paper's Table 2 settings (α, β; γ). */
export const TABLE2_SETTINGS: readonly { label: string; tokenRates: [number, number]; expertRate: number; reported: number }[] = [
  { label: '(50,25;50)', tokenRates: [0.5, 0.25], expertRate: 0.5, reported: 0.432 },
  { label: '(50,75;25)', tokenRates: [0.5, 0.75], expertRate: 0.25, reported: 0.399 },
  { label: '(50,50;75)', tokenRates: [0.5, 0.5], expertRate: 0.75, reported: 0.328 },
  { label: '(75,50;75)', tokenRates: [0.75, 0.5], expertRate: 0.75, reported: 0.282 },
  { label: '(75,75;75)', tokenRates: [0.75, 0.75], expertRate: 0.75, reported: 0.212 },
];

/** Table 1's reported savings at (75,75;75). */
export const TABLE1_REPORTED: Readonly<Record<string, number>> = { d16: 0.202, d20: 0.212, d24: 0.218, d30: 0.223 };

// ---------------------------------------------------------------------------------------------
// measured counts: the real code in dry-run mode


/**
 * A VAR for dry runs only: every parameter of a given shape shares ONE zero buffer, so a d30
 * (8 GB of float32 weights) costs a few hundred MB. Values are meaningless; do not sample from it
 * outside `dryRun`.
 */
export function dryRunVar(config: VarConfig): VAR {
  const buffers = new Map<string, Float32Array>();
  const params = new Map<string, Tensor>();
  for (const [k, shape] of varParamShapes(config)) {
    const key = shape.join('x');
    let b = buffers.get(key);
    if (!b) { b = new Float32Array(shape.reduce((a, d) => a * d, 1)); buffers.set(key, b); }
    params.set(k, new Tensor(b, shape));
  }
  return new VAR(config, params);
}

/** The FlopsModel of a VAR config. */
export function flopsModelOf(c: VarConfig): FlopsModel {
  return { depth: c.depth, width: c.width, ffnHidden: c.mlpHidden, vocab: c.vocabSize, cvae: c.Cvae, patchNums: c.patchNums };
}

/**
 * FLOPs of the transformer part of one generation (B images, CFG on), counted by running the real
 * inference code (VAR.inferScale, and ActVAR's executor when `actvar` is given) in dry-run mode.
 */
export function measureTransformerFlops(model: VAR, actvar: ActVAR | null, batch = 1): FlopsCounter {
  const inputs = model.config.patchNums.map((pn) => new Tensor(new Float32Array(batch * pn * pn * model.config.Cvae), [batch, pn * pn, model.config.Cvae]));
  const labels = Array.from({ length: batch }, (_, i) => i % model.config.numClasses);
  return countFlops(() => dryRun(() => runTransformer(model, labels, inputs, actvar ? actvar.hooks : {}))).flops;
}

export interface FlopsReport {
  preset: string;
  setting: string;
  dense_gflops: number;
  actvar_gflops: number;
  measured_saving: number;
  analytic_saving: number;
  eq12_as_printed: number;
  eq12_corrected: number;
  reported?: number;
  dense_by_category: Record<string, number>;
  actvar_by_category: Record<string, number>;
}

/** Dense vs ActVAR FLOPs per image (transformer only, CFG on) for a preset and ActVAR settings. */
export function flopsReport(preset: string, cfg: Partial<ActVarConfig>, model: VAR = dryRunVar(varPreset(preset))): FlopsReport {
  const a = ActVAR.wrap(model, cfg, { init: 'zeros', allowUntrained: true });
  const dense = measureTransformerFlops(model, null), sparse = measureTransformerFlops(model, a);
  const fm = flopsModelOf(model.config);
  const analyticDense = analyticFlops(fm, null, { adalnPerStep: false }).total;
  const analyticSparse = analyticFlops(fm, a.config, { adalnPerStep: false }).total;
  const g = (v: number): number => Math.round(v / 1e6) / 1e3;
  const r4 = (v: number): number => Math.round(v * 1e4) / 1e4;
  const cats = (c: FlopsCounter): Record<string, number> => Object.fromEntries([...c.byCategory].map(([k, v]) => [k, g(v)]));
  const label = `(${a.config.tokenRates.map((r) => Math.round(r * 100)).join(',')};${Math.round(a.config.expertRate * 100)})`;
  return {
    preset, setting: label,
    dense_gflops: g(dense.total), actvar_gflops: g(sparse.total),
    measured_saving: r4(1 - sparse.total / dense.total),
    analytic_saving: r4(1 - analyticSparse / analyticDense),
    eq12_as_printed: r4(eq12AsPrinted(fm, a.config)), eq12_corrected: r4(eq12Corrected(fm, a.config)),
    dense_by_category: cats(dense), actvar_by_category: cats(sparse),
  };
}
