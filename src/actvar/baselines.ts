/**
 * The baselines the paper compares ActVAR against (paper §4.3.3–4.3.4, Tables 4 and 5), built from
 * the same parts so that they run (and count FLOPs) exactly like ActVAR except for the one choice
 * they replace:
 *
 * - **static weight pruning** (Table 5, 'static-weights'): the same FFN activation rate γ, but one
 *   fixed set of K_w = round(γ·N) experts per FFN for every token, chosen once by an importance
 *   criterion. Criterion (standard structured-pruning statistics, say which in reports):
 *   - 'activation' (default when calibration data exist): the mean output norm of the expert,
 *     E_t ‖eₑ(h_t)‖₂, over the FFN inputs h_t of dense generations at the activated scales
 *     (mean activation magnitude, measured at the expert's output so that W₂ is included);
 *   - 'magnitude' (data-free): Σ_{j∈e} ‖W₁[j, :]‖₂·‖W₂[:, j]‖₂, the weight-magnitude criterion.
 *   The kept experts are the K_w with the largest importance (ties → lower expert index). ActVAR's
 *   `routeTokens` hook returns that set for every token (no router runs: no router FLOPs).
 * - **fixed token pruning** (Table 4, 'fixed-tokens'): the same K_t per scale, but the tokens are
 *   chosen once per scale at the first block (block 0, by its selector) and every later block of that
 *   scale reuses that selection (paper §4.3.3: "once the token sequence is selected during the first
 *   step, it remains static"). A new scale has other tokens, so block 0 selects again there.
 *   ActVAR's `selectTokens` hook runs the gate for block 0 only and returns block 0's choice of the same
 *   scale (and batch rows) to the later blocks, which compute no gate (no selector FLOPs).
 *
 * Both plug in through ActVAR's policy hooks `selectTokens` / `routeTokens` (actvar.ts), which inference
 * and the teacher-forced forward (teacher.ts) alike call, so a baseline can be fine-tuned with the same
 * stage-2 recipe; everything else — gather, attention on the kept tokens, the expert FFN, scatter, the
 * KV-cache policy — is ActVAR's own.
 * w/o DW (γ = 1), w/o AT (token rates 1), other scales and other expert counts are plain ActVAR
 * configurations (config.ts) and need nothing here.
 */
import { Tensor, Rng, noGrad } from '../tensor/index.js';
import type { BlockContext, VarVqvae } from '../var/var.js';
import { attnBranch, ffnBranch, adaLNModulate } from '../var/basic-var.js';
import { tokenRateAt, expertsToKeep, ActVarConfigError } from './config.js';
import type { ActVAR } from './actvar.js';
import type { ExpertFFN } from './experts.js';

export type BaselineName = 'static-weights' | 'fixed-tokens';
export const BASELINE_NAMES: readonly BaselineName[] = ['static-weights', 'fixed-tokens'];
export type ImportanceCriterion = 'activation' | 'magnitude';

// ---------------------------------------------------------------------------------------------
// static weight pruning

/** The K most important experts (decreasing importance, ties → lower index). */
export function keptExperts(importance: Float32Array, K: number): Int32Array {
  const order = Array.from(importance, (v, e) => ({ v, e })).sort((a, b) => b.v - a.v || a.e - b.e);
  return Int32Array.from(order.slice(0, K).map((o) => o.e));
}

/** Weight-magnitude importance of every expert: Σ_{j∈e} ‖W₁[j,:]‖·‖W₂[:,j]‖ (data-free). */
export function magnitudeImportance(ex: ExpertFFN): Float32Array {
  const { C, hidden: H, N, de } = ex;
  const W1 = ex.w1.f32, W2 = ex.w2.f32, imp = new Float32Array(N);
  for (let j = 0; j < H; j++) {
    let a = 0, b = 0;
    for (let c = 0; c < C; c++) { a += W1[j * C + c] ** 2; b += W2[c * H + j] ** 2; }
    imp[Math.floor(j / de)] += Math.sqrt(a * b);
  }
  return imp;
}

export interface ImportanceOptions {
  vqvae: VarVqvae;
  /** Class ids of the calibration generations (one dense generation each). */
  labels: number[];
  cfg?: number;
  topK?: number;
  topP?: number;
  rng?: Rng;
}

/**
 * Activation importance of every expert of every block: the mean over calibration tokens (all rows of
 * dense generations, at ActVAR's activated scales) of ‖eₑ(h_t)‖₂, h_t = the FFN input. The generations
 * are dense (ActVAR does not run), as a pruning method would calibrate on the unpruned model.
 */
export function activationImportance(act: ActVAR, opts: ImportanceOptions): Float32Array[] {
  if (opts.labels.length === 0) throw new ActVarConfigError('the activation importance needs at least one calibration generation');
  const N = act.config.experts;
  const sums = act.blocks.map(() => new Float64Array(N)), counts = act.blocks.map(() => 0);
  const executor = (ctx: BlockContext): Tensor | undefined => {
    if (ctx.mode !== 'infer' || !ctx.cache || tokenRateAt(act.config, ctx.scaleIndex) === null) return undefined;
    const { block, x, ada } = ctx;
    const x1 = attnBranch(block, x, ada, { kind: 'cache', cache: ctx.cache });
    const h = adaLNModulate(x1, ada.scale2, ada.shift2, block.eps);
    const n = h.size / block.C, ex = act.blocks[ctx.blockIndex].experts;
    const { norms } = ex.expertStats(h.f32, n);
    const s = sums[ctx.blockIndex];
    for (let t = 0; t < n; t++) for (let e = 0; e < N; e++) s[e] += norms[t * N + e];
    counts[ctx.blockIndex] += n;
    return ffnBranch(block, x1, ada, {}, (_b, hh) => ex.forwardAll(hh));
  };
  noGrad(() => {
    for (const label of opts.labels) {
      act.model.autoregressiveInfer({
        labels: [label], vqvae: opts.vqvae, cfg: opts.cfg ?? 1.5, topK: opts.topK ?? 900, topP: opts.topP ?? 0.96,
        rng: opts.rng, decode: false, blockExecutor: executor,
      });
    }
  });
  return sums.map((s, i) => Float32Array.from(s, (v) => (counts[i] > 0 ? v / counts[i] : 0)));
}

/** Route every token of block i to the K_w experts of largest `importance[i]` (ActVAR's `routeTokens` hook). */
export function applyStaticWeights(act: ActVAR, importance: Float32Array[]): void {
  if (importance.length !== act.blocks.length) throw new ActVarConfigError(`static weight pruning: ${importance.length} importance vectors for ${act.blocks.length} blocks`);
  importance.forEach((v, i) => {
    if (v.length !== act.config.experts) throw new ActVarConfigError(`static weight pruning: block ${i} has ${v.length} importances for ${act.config.experts} experts`);
  });
  const C = act.model.config.width;
  act.routeTokens = (bi, _si, h, Kw) => {
    const kept = keptExperts(importance[bi], Kw), n = h.size / C, route = new Int32Array(n * Kw);
    for (let t = 0; t < n; t++) route.set(kept, t * Kw);
    return route;
  };
}

// ---------------------------------------------------------------------------------------------
// fixed token pruning

/**
 * Block 0 selects with its gate at every activated scale; every later block gets block 0's selection of
 * the same scale and batch rows (ActVAR's `selectTokens` hook). Keyed by scale, so it holds in KV-cache
 * inference (block 0 runs first at every scale) and in the teacher-forced forward (block 0 runs every
 * scale before block 1 does).
 */
export function applyFixedTokens(act: ActVAR): void {
  const select = act.selectTokens;
  const chosen = new Map<string, Int32Array>();
  act.selectTokens = (bi, si, x, K) => {
    const key = `${si}|${x.shape[0]}|${K}`;
    if (bi === 0) {
      const index = select(bi, si, x, K);
      chosen.set(key, index);
      return index;
    }
    const index = chosen.get(key);
    if (!index) {
      throw new ActVarConfigError(`fixed token pruning: block ${bi} found no selection of block 0 at scale ${si} for ${x.shape[0]} rows (K_t ${K}); block 0 must run first at every activated scale`);
    }
    return index;
  };
}

// ---------------------------------------------------------------------------------------------

export interface BaselineOptions {
  /** Calibration generations for the 'activation' importance (static-weights); without them 'magnitude'. */
  importance?: ImportanceOptions | null;
}

/** What a baseline was built with (for reports). */
export interface BaselineInfo {
  name: BaselineName;
  /** static-weights: the criterion and the kept experts of every block (at the current γ). */
  criterion?: ImportanceCriterion;
  keptExperts?: number[][];
}

/** Turn `act` into the baseline `name` (in place). Call after calibration / loading weights. */
export function applyBaseline(act: ActVAR, name: BaselineName, opts: BaselineOptions = {}): BaselineInfo {
  if (name === 'fixed-tokens') {
    applyFixedTokens(act);
    return { name };
  }
  if (name === 'static-weights') {
    const criterion: ImportanceCriterion = opts.importance ? 'activation' : 'magnitude';
    const imp = opts.importance ? activationImportance(act, opts.importance) : act.blocks.map((b) => magnitudeImportance(b.experts));
    applyStaticWeights(act, imp);
    const Kw = expertsToKeep(act.config.expertRate, act.config.experts);
    return { name, criterion, keptExperts: imp.map((v) => Array.from(keptExperts(v, Kw))) };
  }
  throw new ActVarConfigError(`unknown baseline '${name as string}': expected one of ${BASELINE_NAMES.join(', ')}`);
}
