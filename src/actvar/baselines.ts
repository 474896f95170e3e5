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
 *   The kept experts are the K_w with the largest importance (ties → lower expert index). The router
 *   is replaced by a `StaticRouter` whose logits are the importance (the same for every token and
 *   costing no FLOPs), so the top-K_w of every token is that fixed set wherever routing happens.
 * - **fixed token pruning** (Table 4, 'fixed-tokens'): the same K_t per scale, but the tokens are
 *   chosen once per scale at the first block (block 0, by its selector) and every later block of that
 *   scale reuses that selection (paper §4.3.3: "once the token sequence is selected during the first
 *   step, it remains static"). A new scale has other tokens, so block 0 selects again there.
 *   Blocks ≥ 1 get a `ReusedSelector` that returns block 0's most recent choice (and its logits) and
 *   computes no gate (no selector FLOPs).
 *
 * Both plug in by replacing the per-block `router` / `selector` objects of an ActVAR, which is all the
 * selection and routing of the sparse block goes through (actvar.ts, steps 1 and 4); everything else —
 * gather, attention on the kept tokens, the expert FFN, scatter, the KV-cache policy — is ActVAR's own.
 * w/o DW (γ = 1), w/o AT (token rates 1), other scales and other expert counts are plain ActVAR
 * configurations (config.ts) and need nothing here.
 */
import { Tensor, Rng, noGrad } from '../tensor/index.js';
import type { BlockContext, VarVqvae } from '../var/var.js';
import { attnBranch, ffnBranch, adaLNModulate } from '../var/basic-var.js';
import { Router } from './router.js';
import { Selector } from './selector.js';
import { tokenRateAt, expertsToKeep, ActVarConfigError } from './config.js';
import type { ActVAR } from './actvar.js';
import type { ExpertFFN } from './experts.js';

export type BaselineName = 'static-weights' | 'fixed-tokens';
export const BASELINE_NAMES: readonly BaselineName[] = ['static-weights', 'fixed-tokens'];
export type ImportanceCriterion = 'activation' | 'magnitude';

// ---------------------------------------------------------------------------------------------
// static weight pruning

/**
 * A router that sends every token to the same experts: logits = `importance` for every token
 * (weight 0, bias = importance), so top-K_w is the K_w most important experts. `route` and `logits`
 * compute nothing per token (no router FLOPs: a statically pruned FFN has no router).
 */
export class StaticRouter extends Router {
  constructor(readonly importance: Float32Array, C: number) {
    super(new Tensor(new Float32Array(importance.length * C), [importance.length, C]), new Tensor(Float32Array.from(importance), [importance.length]));
  }

  /** The kept experts for K_w, in decreasing importance (ties → lower index). */
  keptExperts(K: number): Int32Array {
    const order = Array.from(this.importance, (v, e) => ({ v, e })).sort((a, b) => b.v - a.v || a.e - b.e);
    return Int32Array.from(order.slice(0, K).map((o) => o.e));
  }

  override logits(x: Tensor): Tensor {
    const N = this.experts, C = this.width;
    if (x.shape[x.ndim - 1] !== C) throw new RangeError(`static router: tokens have ${x.shape[x.ndim - 1]} features, expected ${C}`);
    const n = x.size / C, out = new Float32Array(n * N);
    for (let t = 0; t < n; t++) out.set(this.bias.f32, t * N);
    return new Tensor(out, [...x.shape.slice(0, -1), N]);
  }

  override route(x: Tensor, K: number): { route: Int32Array; logits: Float32Array } {
    const N = this.experts;
    if (!Number.isInteger(K) || K < 1 || K > N) throw new RangeError(`router: K_w must be in 1..${N}, got ${K}`);
    const kept = this.keptExperts(K), n = x.size / this.width, route = new Int32Array(n * K);
    for (let t = 0; t < n; t++) route.set(kept, t * K);
    return { route, logits: this.logits(x).f32 };
  }
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

/** Replace every block's router by a static one ranking experts by `importance[block]`. */
export function applyStaticWeights(act: ActVAR, importance: Float32Array[]): void {
  if (importance.length !== act.blocks.length) throw new ActVarConfigError(`static weight pruning: ${importance.length} importance vectors for ${act.blocks.length} blocks`);
  act.blocks.forEach((b, i) => {
    if (importance[i].length !== act.config.experts) throw new ActVarConfigError(`static weight pruning: block ${i} has ${importance[i].length} importances for ${act.config.experts} experts`);
    b.router = new StaticRouter(importance[i], b.experts.C);
  });
}

// ---------------------------------------------------------------------------------------------
// fixed token pruning

/**
 * Block 0's most recent selection per scale, keyed by (rows, tokens, K_t): the scales of a VAR have
 * distinct token counts, so the key names the scale both in KV-cache inference (block 0 runs first at
 * every scale) and in a teacher-forced forward (block 0 runs every scale before block 1 does).
 */
export class SharedSelection {
  readonly byScale = new Map<string, { index: Int32Array; logits: Float32Array | null; logitsTensor: Tensor | null }>();
  static key(rows: number, tokens: number, K: number): string { return `${rows}x${tokens}x${K}`; }
}

/** Block 0's selector: selects as usual and records its choice. */
export class RecordingSelector extends Selector {
  constructor(inner: Selector, readonly shared: SharedSelection) { super(inner.weight, inner.bias); }

  override selectRaw(x: Tensor, K: number, eps: number): { index: Int32Array; logits: Float32Array } {
    const r = super.selectRaw(x, K, eps);
    this.shared.byScale.set(SharedSelection.key(x.shape[0], x.shape[1], K), { index: r.index, logits: r.logits, logitsTensor: null });
    return r;
  }

  override select(xn: Tensor, K: number): { index: Int32Array; logits: Float32Array } {
    const r = super.select(xn, K);
    this.shared.byScale.set(SharedSelection.key(xn.shape[0], xn.shape[1], K), { index: r.index, logits: r.logits, logitsTensor: null });
    return r;
  }
}

/** Blocks ≥ 1: reuse block 0's selection of the same scale (no gate is computed). */
export class ReusedSelector extends Selector {
  constructor(inner: Selector, readonly shared: SharedSelection, readonly blockIndex: number) { super(inner.weight, inner.bias); }

  private reuse(rows: number, tokens: number, K: number): { index: Int32Array; logits: Float32Array } {
    const s = this.shared.byScale.get(SharedSelection.key(rows, tokens, K));
    if (!s) {
      throw new ActVarConfigError(`fixed token pruning: block ${this.blockIndex} found no selection of block 0 for ${rows} rows × ${tokens} tokens (K_t ${K}); block 0 must run first at every activated scale`);
    }
    return { index: s.index, logits: s.logits ?? new Float32Array(rows * tokens) };
  }

  override selectRaw(x: Tensor, K: number): { index: Int32Array; logits: Float32Array } { return this.reuse(x.shape[0], x.shape[1], K); }
  override select(xn: Tensor, K: number): { index: Int32Array; logits: Float32Array } { return this.reuse(xn.shape[0], xn.shape[1], K); }
}

/** Block 0 selects at every activated scale; blocks 1.. reuse its selection. */
export function applyFixedTokens(act: ActVAR): SharedSelection {
  const shared = new SharedSelection();
  act.blocks.forEach((b, i) => {
    b.selector = i === 0 ? new RecordingSelector(b.selector, shared) : new ReusedSelector(b.selector, shared, i);
  });
  return shared;
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
    return { name, criterion, keptExperts: act.blocks.map((b) => Array.from((b.router as StaticRouter).keptExperts(Kw))) };
  }
  throw new ActVarConfigError(`unknown baseline '${name as string}': expected one of ${BASELINE_NAMES.join(', ')}`);
}
