/**
 * ActVAR (paper §3.2–3.4, Figure 2) wrapped around a VAR without forking it.
 *
 * The VAR runs unchanged; ActVAR only hands it a `blockExecutor` (src/var/var.ts) that takes over
 * the blocks at the activated scales (`config.scales`) in KV-cache inference. In every block m of
 * such a scale, for every row of the batch (with CFG: the conditional rows and the unconditional
 * rows each on their own):
 *
 *   1. select   — the gated selector scores all l tokens of the block input q_{m−1} (selector.ts) and
 *                 keeps the K_t = round(rate·l) best positions of the row;
 *   2. gather   — the kept tokens form a compact sequence q̂_{m−1} [rows, K_t, C] (TypedArray.set per row);
 *   3. attend   — the block's own attention branch (basic-var.ts `attnBranch`) runs on q̂ only: AdaLN,
 *                 QKV for K_t tokens, keys/values of the kept tokens are appended to the block's KV
 *                 cache, and the K_t queries attend to everything cached — all tokens of earlier dense
 *                 scales, the kept tokens of earlier activated scales, and this scale's kept tokens.
 *                 Unselected tokens neither query nor enter the cache: their keys/values would have
 *                 to be computed (QKV for them), which is most of the attention saving. The paper is
 *                 silent on the cache (its paper eq. (8) applies Attn to q̂ only, so unselected tokens are
 *                 invisible to the selected ones at this block); we follow that literally and keep
 *                 the cache consistent with what was attended to, so later scales see exactly the
 *                 keys/values that this scale produced;
 *   4. FFN      — the block's FFN branch with the FFN replaced by the expert FFN (experts.ts): the
 *                 router (router.ts) picks K_w = round(γ·N) experts per kept token and each expert
 *                 runs on exactly its tokens (grouped, never dense-then-mask);
 *   5. scatter  — the updated tokens q̂_m go back to their positions; every other token is copied
 *                 unchanged, bit for bit (paper eq. (9)).
 *
 * KV policy (`config.kvPolicy`): step 3 above is 'kept' (the default). With 'all', keys and values
 * are computed for all l tokens of the scale and appended to the cache, queries only for the kept
 * tokens, which attend to everything cached; the rest of the block is the same.
 *
 * Non-activated scales run the dense VAR blocks. The teacher-forced forward (`VAR.forward` with this
 * `blockExecutor`, or `ActVAR.forward`) runs the same sparse blocks on the whole pyramid, differentiably
 * (teacher.ts), so that ActVAR can be trained and validated (distill.ts).
 *
 * Policy hooks: `selectTokens` and `routeTokens` are the only places where tokens and experts are
 * chosen, in inference and in the teacher-forced forward alike. Replace them to run another policy
 * (e.g. fixed token pruning or static weight pruning, the baselines of paper Table 3/4) without forking.
 *
 * Weights: router and selector of every block (and the hidden-unit permutation with co-activation
 * grouping) are kept in their own tensors, saved as safetensors under `actvar.blocks.{i}.router.weight`,
 * `.router.bias`, `.selector.weight`, `.selector.bias`, `.experts.perm` (int32), with the config in
 * `__metadata__` ('actvar.config'). The VAR's weights are not duplicated.
 */
import {
  Tensor, noGrad, layerNorm, repeat0, gatherRowsInto, scatterRowsInto, linear, splitHeads, flopsTag,
} from '../tensor/index.js';
import { attendWithCache, attnProj } from '../var/basic-var.js';
import { readSafetensorsFile, writeSafetensors } from '../io/safetensors.js';
import { VAR, type BlockContext, type BlockExecutor, type InferOptions, type InferResult, type VarHooks } from '../var/var.js';
import { attnBranch, ffnBranch, adaLNModulate, gatedResidual, type VarBlock } from '../var/basic-var.js';
import {
  resolveActVarConfig, tokensToKeep, expertsToKeep, tokenRateAt, configToMetadata, configFromMetadata,
  ActVarConfigError, type ActVarConfig,
} from './config.js';
import { ExpertFFN, coactivationPermutation } from './experts.js';
import { Router } from './router.js';
import { Selector } from './selector.js';
import { routerFromWeights, BlockCalibration } from './init.js';
import { varParamsHash } from './hash.js';
import { sparseTeacherBlock, type TeacherForwardOptions } from './teacher.js';
import type { ForwardOptions } from '../var/var.js';

/** ActVAR state of one VAR block. */
export interface ActVarBlock {
  router: Router;
  selector: Selector;
  experts: ExpertFFN;
}

/** What one sparse block did (for activation maps, Fig. 5 and 6). */
export interface ActivationRecord {
  scaleIndex: number;
  blockIndex: number;
  /** Side of the scale's token map; tokens = pn². */
  patchNum: number;
  rows: number;
  /** Kept tokens per row, K_t. */
  K: number;
  /** rows × K kept token positions (ascending within a row). */
  selected: Int32Array;
  /** Experts per kept token, K_w. */
  Kw: number;
  /** (rows·K) × K_w expert ids of every kept token, in the order of `selected`. */
  route: Int32Array;
}

export interface ActVarWrapOptions {
  /** Per block, a permutation of the FFN hidden units (co-activation grouping), or null. */
  perms?: (Int32Array | null)[];
  /** Router/selector start when no weights are given: 'weights' (data-free, init.ts; default) or 'zeros'. */
  init?: 'weights' | 'zeros';
  /**
   * Generate with gates that were neither calibrated, loaded nor trained (default false: `generate` and the
   * inference hook refuse, since a zero selector keeps the first K_t tokens of every row in raster order, a
   * fixed pruning of the bottom rows). For FLOPs counts, timings and tests where the selection does not matter.
   */
  allowUntrained?: boolean;
}

/**
 * Where the router/selector weights of an ActVAR come from: 'untrained' (`wrap`'s start), 'calibrated'
 * (`calibrate`, the training-free init), 'loaded' (`load` / `setParameters`), 'distilled' (`actvar distill`).
 */
export type GateState = 'untrained' | 'calibrated' | 'loaded' | 'distilled';

/** The safetensors metadata keys of a gates file besides 'actvar.config' (src/actvar/file.ts writes the same). */
export const GATES_META = { gates: 'actvar.gates', baseVar: 'base_var_sha256' } as const;

export interface CalibrateOptions {
  /** The VQVAE the VAR samples with. */
  vqvae: InferOptions['vqvae'];
  /** Class ids of the calibration samples (one generation each). */
  labels: number[];
  cfg?: number;
  topK?: number;
  topP?: number;
  rng?: InferOptions['rng'];
  /** Ridge strength relative to the mean feature variance (default 1e-2). */
  ridge?: number;
  /** FFN inputs kept per block for co-activation grouping (default 1024). */
  reservoir?: number;
  /** Progress: called after each calibration sample. */
  onSample?: (i: number, n: number) => void;
}

const KEY = (i: number, k: string): string => `actvar.blocks.${i}.${k}`;

export class ActVAR {
  readonly model: VAR;
  config: ActVarConfig;
  readonly blocks: ActVarBlock[];
  /** Receives a record of every sparse block execution (null = no recording). */
  onActivation: ((r: ActivationRecord) => void) | null = null;
  /** When set, seconds spent per phase of the sparse blocks are added here (bench --profile). */
  timings: Record<string, number> | null = null;
  /** The hook to pass to the VAR (`autoregressiveInfer({..., blockExecutor})`, `forward(…, {blockExecutor})`). */
  readonly blockExecutor: BlockExecutor;
  /** Where the router/selector weights come from (see GateState); generation refuses 'untrained' unless allowed. */
  gates: GateState = 'untrained';
  /** Generate even with untrained gates (`wrap(…, { allowUntrained: true })`). */
  allowUntrained = false;

  /** Refuse to generate with gates that nothing has set (item 7 of issue 12: no silent raster-order pruning). */
  checkGates(): void {
    if (this.gates !== 'untrained' || this.allowUntrained) return;
    throw new ActVarConfigError('this ActVAR\'s router and selector are untrained (a zero selector keeps the first tokens of every row in raster order): ' +
      'calibrate() it, load trained gates (ActVAR.load, loadActVar), or wrap with { allowUntrained: true } to run it anyway');
  }

  /**
   * Token selection of block `blockIndex` at scale `scaleIndex`: x [R, l, C] is the block input of
   * the scale's tokens (raw, not normalised; never differentiated), K = K_t. Returns the R × K kept
   * positions, ascending within each row. Default: the gated selector's top-K_t (selector.ts).
   * Called by inference and by the teacher-forced forward alike.
   */
  selectTokens: (blockIndex: number, scaleIndex: number, x: Tensor, K: number) => Int32Array;
  /**
   * Expert routing of block `blockIndex` at scale `scaleIndex`: h [n, C] is the FFN input of the kept
   * tokens (AdaLN-modulated; may be a scratch buffer in inference: copy what you keep), Kw = K_w.
   * Returns the n × K_w expert ids (distinct within a row). Default: the router's top-K_w (router.ts).
   */
  routeTokens: (blockIndex: number, scaleIndex: number, h: Tensor, Kw: number) => Int32Array;
  /** Options of the teacher-forced sparse blocks while `forward` runs (teacher.ts). */
  private teacherOpts: TeacherForwardOptions = {};

  private constructor(model: VAR, config: ActVarConfig, blocks: ActVarBlock[]) {
    this.model = model; this.config = config; this.blocks = blocks;
    this.blockExecutor = (ctx) => {
      if (ctx.mode === 'infer') this.checkGates();
      return this.execute(ctx);
    };
    this.selectTokens = (bi, _si, x, K) => this.blocks[bi].selector.selectRaw(x, K, this.model.blocks[bi].eps).index;
    this.routeTokens = (bi, _si, h, Kw) => this.blocks[bi].router.route(h, Kw).route;
  }

  /**
   * The teacher-forced forward of the wrapped VAR with the sparse blocks (`VAR.forward` arguments and
   * hooks, teacher.ts): logits [B, ed, V]. `straightThrough` / `gateLogits` / `record` as in
   * TeacherForwardOptions (distillation).
   */
  forward(labelB: ArrayLike<number> | Tensor, xBLCvWoFirstL: Tensor, opts: ForwardOptions & TeacherForwardOptions = {}): Tensor {
    const prev = this.teacherOpts;
    this.teacherOpts = { straightThrough: opts.straightThrough, gateLogits: opts.gateLogits, record: opts.record };
    try {
      return this.model.forward(labelB, xBLCvWoFirstL, { ...opts, blockExecutor: this.blockExecutor });
    } finally {
      this.teacherOpts = prev;
    }
  }

  /** Wrap `model` (any VAR: loaded, random or trained). */
  static wrap(model: VAR, cfg: Partial<ActVarConfig> = {}, opts: ActVarWrapOptions = {}): ActVAR {
    const config = resolveActVarConfig(cfg, {
      numScales: model.numScales, ffnHidden: model.config.mlpHidden, tokensPerScale: model.config.patchNums.map((p) => p * p),
    });
    if (opts.perms && opts.perms.length !== model.blocks.length) throw new ActVarConfigError(`${opts.perms.length} expert permutations for ${model.blocks.length} blocks`);
    const blocks = model.blocks.map((b, i) => {
      const experts = expertFFNOf(b, config.experts, opts.perms?.[i] ?? null);
      const router = (opts.init ?? 'weights') === 'weights' ? routerFromWeights(experts) : Router.zeros(config.experts, b.C);
      return { router, selector: Selector.zeros(b.C), experts };
    });
    if (opts.perms) config.grouping = opts.perms.some((p) => p) ? 'coactivation' : 'contiguous';
    const a = new ActVAR(model, config, blocks);
    a.allowUntrained = opts.allowUntrained ?? false;
    return a;
  }

  /**
   * Wrap `model` with router/selector weights (and permutations) from a safetensors file written by
   * `save`. Settings stored with the weights are used unless `overrides` change them; the number of
   * experts must match the stored router.
   */
  static load(model: VAR, path: string | Uint8Array, overrides: Partial<ActVarConfig> = {}): ActVAR {
    const { tensors, metadata } = readSafetensorsFile(path);
    const stored = configFromMetadata(metadata) ?? {};
    const where = typeof path === 'string' ? path : 'the ActVAR weights';
    if (metadata?.format === 'actvar-model/1') {
      throw new ActVarConfigError(`${where} is a whole ActVAR model (its own fine-tuned VAR inside): load it with loadActVar / --actvar-model, not as gates of another VAR`);
    }
    const r0 = tensors.get(KEY(0, 'router.weight'));
    if (!r0) throw new ActVarConfigError(`${where} holds no '${KEY(0, 'router.weight')}': not an ActVAR weights file`);
    const N = r0.shape[0];
    if (overrides.experts !== undefined && overrides.experts !== N) {
      throw new ActVarConfigError(`${where} was made for ${N} experts, but ${overrides.experts} were asked for (leave --experts out, or recalibrate)`);
    }
    const perms = model.blocks.map((_, i) => {
      const p = tensors.get(KEY(i, 'experts.perm'));
      return p ? Int32Array.from(p.i32) : null;
    });
    const cfg: Partial<ActVarConfig> = { ...stored, ...stripUndefined(overrides), experts: N };
    const a = ActVAR.wrap(model, cfg, { perms, init: 'zeros' });
    a.setParameters(tensors, where);
    // gates are fitted to one VAR's weights: refuse them for any other (files written before the hash carry none)
    const base = metadata?.[GATES_META.baseVar];
    if (base) {
      const own = varParamsHash(model);
      if (own !== base) {
        throw new ActVarConfigError(`${where} holds router/selector weights made for another VAR (its parameters' SHA-256 ${base.slice(0, 16)}…, ` +
          `this VAR's ${own.slice(0, 16)}…); use them with the VAR they were calibrated or trained on, or calibrate gates for this one`);
      }
    }
    const g = metadata?.[GATES_META.gates];
    if (g === 'calibrated' || g === 'distilled') a.gates = g;
    // saved from an ActVAR that was explicitly allowed to run untrained: the file keeps that choice, and says so
    if (g === 'untrained') { a.gates = 'untrained'; a.allowUntrained = true; }
    return a;
  }

  /** Hooks for `VAR.autoregressiveInfer` / `inferScale`. */
  get hooks(): VarHooks { return { blockExecutor: this.blockExecutor }; }

  /** `autoregressiveInfer` of the wrapped VAR with ActVAR at the activated scales. */
  generate(opts: InferOptions): InferResult {
    return this.model.autoregressiveInfer({ ...opts, blockExecutor: this.blockExecutor });
  }

  /** Router, selector (and permutation) tensors under their safetensors keys. */
  parameters(): Map<string, Tensor> {
    const m = new Map<string, Tensor>();
    this.blocks.forEach((b, i) => {
      m.set(KEY(i, 'router.weight'), b.router.weight);
      m.set(KEY(i, 'router.bias'), b.router.bias);
      m.set(KEY(i, 'selector.weight'), b.selector.weight);
      m.set(KEY(i, 'selector.bias'), b.selector.bias);
      if (b.experts.perm) m.set(KEY(i, 'experts.perm'), new Tensor(b.experts.perm.slice(), [b.experts.perm.length]));
    });
    return m;
  }

  /** Copy router/selector values from `tensors` (all keys must be present with the right shapes). */
  setParameters(tensors: Map<string, Tensor>, where = 'the ActVAR weights'): void {
    const problems: string[] = [];
    for (const [k, t] of this.parameters()) {
      if (k.endsWith('experts.perm')) continue;
      const s = tensors.get(k);
      if (!s) { problems.push(`missing '${k}'`); continue; }
      if (s.shape.join() !== t.shape.join() || s.dtype !== 'float32') { problems.push(`'${k}' is ${s.dtype} [${s.shape.join(', ')}], expected float32 [${t.shape.join(', ')}]`); continue; }
      t.f32.set(s.f32);
    }
    for (const k of tensors.keys()) {
      const m = /^actvar\.blocks\.(\d+)\./.exec(k);
      if (!m || Number(m[1]) >= this.blocks.length) problems.push(`unexpected '${k}' (the VAR has ${this.blocks.length} blocks)`);
    }
    if (problems.length) throw new ActVarConfigError(`${where} do not fit this VAR:\n  - ${problems.join('\n  - ')}`);
    this.gates = 'loaded';
  }

  /**
   * The metadata of a gates file: the config, where the gates come from, and the SHA-256 of the VAR's parameters
   * they belong to (`load` refuses them for another VAR).
   */
  gatesMetadata(): Record<string, string> {
    return { ...configToMetadata(this.config), [GATES_META.gates]: this.gates, [GATES_META.baseVar]: varParamsHash(this.model) };
  }

  /** Save router/selector (+ permutations) and the config as safetensors (atomic). */
  save(path: string): void {
    writeSafetensors(path, this.parameters(), this.gatesMetadata());
  }

  /** Change the activation rates / scales without touching the weights (same experts and grouping). */
  reconfigure(cfg: Partial<ActVarConfig>): void {
    const next = resolveActVarConfig({ ...this.config, ...stripUndefined(cfg) }, { numScales: this.model.numScales, ffnHidden: this.model.config.mlpHidden });
    if (next.experts !== this.config.experts) throw new ActVarConfigError(`the number of experts is fixed once wrapped (${this.config.experts}); wrap again to change it`);
    this.config = next;
  }

  // -------------------------------------------------------------------------------------------
  // execution

  private execute(ctx: BlockContext): Tensor | undefined {
    if (ctx.mode === 'teacher') return sparseTeacherBlock(this, ctx, this.teacherOpts);
    if (ctx.mode !== 'infer' || !ctx.cache) return undefined;
    const rate = tokenRateAt(this.config, ctx.scaleIndex);
    if (rate === null) return undefined;
    return this.sparseBlock(ctx, rate);
  }

  /** One block at an activated scale (steps 1–5 of the header). x [rows, l, C] → [rows, l, C]. */
  sparseBlock(ctx: BlockContext, rate: number): Tensor {
    const { block, x, ada } = ctx;
    const st = this.blocks[ctx.blockIndex];
    const [R, l, C] = x.shape;
    const K = tokensToKeep(rate, l);
    const Kw = expertsToKeep(this.config.expertRate, this.config.experts);
    const tm = this.timings;
    let t0 = tm ? performance.now() : 0;
    const lap = (k: string): void => {
      if (!tm) return;
      const t = performance.now();
      tm[k] = (tm[k] ?? 0) + (t - t0) / 1e3;
      t0 = t;
    };
    return noGrad(() => {
      // 1. select (per row)
      const index = this.selectTokens(ctx.blockIndex, ctx.scaleIndex, x, K);
      lap('select');
      // 2. gather
      const X = x.f32;
      const xs = new Float32Array(R * K * C);
      for (let r = 0; r < R; r++) gatherRowsInto(xs.subarray(r * K * C), X.subarray(r * l * C), index, r * K, K, C);
      lap('gather');
      // 3. attention of the kept tokens: 'kept' — only their K/V enter the cache; 'all' — every
      //    token's K/V enters the cache, the kept tokens' queries attend
      const xk = new Tensor(xs, [R, K, C]);
      let x1: Tensor;
      if (this.config.kvPolicy === 'kept') x1 = attnBranch(block, xk, ada, { kind: 'cache', cache: ctx.cache! });
      else {
        const [q, k, v] = keptQueriesAllKV(block, adaLNModulate(x, ada.scale1, ada.shift1, block.eps), index, K);
        x1 = gatedResidual(xk, attnProj(block, attendWithCache(block, q, k, v, ctx.cache!)), ada.gamma1);
      }
      lap('attention');
      // 4. FFN with the experts chosen by the router
      let route: Int32Array | null = null;
      const x2 = ffnBranch(block, x1, ada, {}, (_b: VarBlock, h: Tensor) => {
        lap('ffn_other');
        route = this.routeTokens(ctx.blockIndex, ctx.scaleIndex, h, Kw);
        lap('router');
        const y = st.experts.forward(h, route, Kw);
        lap('experts');
        return y;
      });
      lap('ffn_other');
      // 5. scatter back; unselected tokens are copied unchanged (paper eq. (9))
      const out = X.slice();
      const Y = x2.f32;
      for (let r = 0; r < R; r++) scatterRowsInto(out.subarray(r * l * C), Y.subarray(r * K * C), index, r * K, K, C);
      lap('scatter');
      if (this.onActivation) {
        this.onActivation({ scaleIndex: ctx.scaleIndex, blockIndex: ctx.blockIndex, patchNum: ctx.patchNum, rows: R, K, selected: index, Kw, route: route! });
      }
      return new Tensor(out, x.shape);
    });
  }

  // -------------------------------------------------------------------------------------------
  // calibration (training-free initialisation, init.ts)

  /**
   * Fit every block's selector and router by least squares on dense generations (init.ts explains
   * the targets). With grouping 'coactivation', a first pass groups the hidden units and rebuilds
   * the experts. Returns the number of tokens seen per block.
   */
  calibrate(opts: CalibrateOptions): number {
    if (opts.labels.length === 0) throw new ActVarConfigError('calibration needs at least one class label');
    const run = (executor: BlockExecutor): void => {
      opts.labels.forEach((label, i) => {
        this.model.autoregressiveInfer({
          labels: [label], vqvae: opts.vqvae, cfg: opts.cfg ?? 1.5, topK: opts.topK ?? 900, topP: opts.topP ?? 0.96,
          rng: opts.rng, decode: false, blockExecutor: executor,
        });
        opts.onSample?.(i + 1, opts.labels.length);
      });
    };
    const active = (ctx: BlockContext): boolean => ctx.mode === 'infer' && !!ctx.cache && tokenRateAt(this.config, ctx.scaleIndex) !== null;
    const N = this.config.experts;
    if (this.config.grouping === 'coactivation') {
      const res = opts.reservoir ?? 1024;
      const stats = this.model.blocks.map((b, i) => new BlockCalibration(b.C, N, res, 1 + i));
      run((ctx) => {
        if (!active(ctx)) return undefined;
        const { block, x, ada } = ctx;
        const x1 = attnBranch(block, x, ada, { kind: 'cache', cache: ctx.cache! });
        return ffnBranch(block, x1, ada, {}, (_b, h) => {
          const n = h.size / block.C;
          stats[ctx.blockIndex].addRouterSamples(h.f32, n, new Float32Array(n * N), new Float32Array(n * N), new Float32Array(n).fill(1));
          return this.blocks[ctx.blockIndex].experts.forwardAll(h);
        });
      });
      this.model.blocks.forEach((b, i) => {
        const s = stats[i], T = s.ffnInputCount;
        const h = new Tensor(s.ffnInputs.slice(0, T * b.C), [T, b.C]);
        const acts = noGrad(() => hiddenActivationsOf(b, h));
        const perm = coactivationPermutation(acts, T, b.fc1W.shape[0], N, { seed: i });
        this.blocks[i].experts = expertFFNOf(b, N, perm);
      });
    }
    const stats = this.model.blocks.map((b) => new BlockCalibration(b.C, N));
    let seen = 0;
    run((ctx) => {
      if (!active(ctx)) return undefined;
      const { block, x, ada } = ctx;
      const st = stats[ctx.blockIndex], ex = this.blocks[ctx.blockIndex].experts;
      const [R, l, C] = x.shape;
      const xn = layerNorm(x, block.eps).f32;
      const x1 = attnBranch(block, x, ada, { kind: 'cache', cache: ctx.cache! });
      const h = adaLNModulate(x1, ada.scale2, ada.shift2, block.eps);
      const n = R * l;
      const es = ex.expertStats(h.f32, n);
      st.addRouterSamples(h.f32, n, es.norms, es.dots, es.totalNorm2);
      const f = es.total;
      const b2 = ex.b2.f32;
      for (let t = 0; t < n; t++) for (let c = 0; c < C; c++) f[t * C + c] += b2[c];
      const x2 = gatedResidual(x1, new Tensor(f, x.shape), ada.gamma2);
      const X = x.f32, Y = x2.f32, delta = new Float32Array(l);
      for (let r = 0; r < R; r++) {
        for (let t = 0; t < l; t++) {
          let s = 0;
          const o = (r * l + t) * C;
          for (let c = 0; c < C; c++) { const d = Y[o + c] - X[o + c]; s += d * d; }
          delta[t] = Math.sqrt(s);
        }
        st.addSelectorRow(xn, r * l * C, delta, l);
      }
      if (ctx.blockIndex === 0) seen += n;
      return x2;
    });
    const ridge = opts.ridge ?? 1e-2;
    this.blocks.forEach((b, i) => {
      b.router = stats[i].fitRouter(ridge);
      b.selector = stats[i].fitSelector(ridge);
    });
    this.gates = 'calibrated';
    return seen;
  }
}

/** Row views of a block's fused QKV weight (3C, C): W_q = rows [0, C), W_kv = rows [C, 3C) (no copies; tagged 'qkv'). */
const qkvViews = new WeakMap<Tensor, { wq: Tensor; wkv: Tensor }>();
function qkvWeightViews(block: VarBlock): { wq: Tensor; wkv: Tensor } {
  let v = qkvViews.get(block.qkvW);
  if (!v) {
    const W = block.qkvW.f32, C = block.C;
    v = { wq: flopsTag(new Tensor(W.subarray(0, C * C), [C, C]), 'qkv'), wkv: flopsTag(new Tensor(W.subarray(C * C, 3 * C * C), [2 * C, C]), 'qkv') };
    qkvViews.set(block.qkvW, v);
  }
  return v;
}

/**
 * kvPolicy 'all' at inference: keys/values of every token, queries of the kept ones only. xn is the
 * AdaLN-modulated block input [R, l, C]; index the R × K kept positions. Q = xn[kept]·W_qᵀ (2·K·C²
 * FLOPs per row), K/V = xn·W_kvᵀ (4·l·C²); both are placed in the fused [.., 3C] layout that the head
 * split reads, so biases and cosine-attention normalisation are exactly `attentionQKV`'s.
 * Returns q [R, H, K, hd], k and v [R, H, l, hd].
 */
function keptQueriesAllKV(block: VarBlock, xn: Tensor, index: Int32Array, K: number): [Tensor, Tensor, Tensor] {
  const [R, l, C] = xn.shape, C3 = 3 * C, X = xn.f32;
  const { wq, wkv } = qkvWeightViews(block);
  const xk = new Float32Array(R * K * C);
  for (let r = 0; r < R; r++) gatherRowsInto(xk.subarray(r * K * C), X.subarray(r * l * C), index, r * K, K, C);
  const ql = linear(new Tensor(xk, [R, K, C]), wq, null).f32, kvl = linear(xn, wkv, null).f32;
  const qkvK = new Float32Array(R * K * C3), qkvA = new Float32Array(R * l * C3);
  for (let t = 0; t < R * K; t++) qkvK.set(ql.subarray(t * C, t * C + C), t * C3);
  for (let t = 0; t < R * l; t++) qkvA.set(kvl.subarray(t * 2 * C, (t + 1) * 2 * C), t * C3 + C);
  const l2 = block.attnL2Norm, H = block.heads;
  const fk = new Tensor(qkvK, [R, K, C3]), fa = new Tensor(qkvA, [R, l, C3]);
  return [
    splitHeads(fk, 0, H, block.qBias, l2, l2 ? block.scaleMul : null),
    splitHeads(fa, 1, H, null, l2, null),
    splitHeads(fa, 2, H, block.vBias, false, null),
  ];
}

/** The expert split of block b's FFN (shares the VAR's tensors unless permuted). */
function expertFFNOf(b: VarBlock, N: number, perm: Int32Array | null): ExpertFFN {
  return new ExpertFFN({ fc1Weight: b.fc1W, fc1Bias: b.fc1B, fc2Weight: b.fc2W, fc2Bias: b.fc2B }, N, perm);
}

/** Hidden activations δ(h·W₁ᵀ + b₁) of block b's FFN for inputs h [T, C] → T × D_h. */
function hiddenActivationsOf(b: VarBlock, h: Tensor): Float32Array {
  const ex = new ExpertFFN({ fc1Weight: b.fc1W, fc1Bias: b.fc1B, fc2Weight: b.fc2W, fc2Bias: b.fc2B }, 1);
  return ex.hiddenActivations(h.f32, h.shape[0]);
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/**
 * Run only the transformer of KV-cache inference (blocks and head at every scale), with given
 * per-scale inputs instead of sampled ones: the part of generation that ActVAR changes. Used by
 * `actvar flops` and `actvar bench actvar`. `inputs[si]` (si ≥ 1) is the VQ feature map of scale si
 * [B, pn², Cvae]; CFG doubles the rows (cond rows, then null-class rows) as sampling does.
 */
export function runTransformer(model: VAR, labels: number[], inputs: Tensor[], hooks: VarHooks = {}, cfg = true): Tensor[] {
  return noGrad(() => {
    const B = labels.length;
    const rowLabels = cfg ? [...labels, ...labels.map(() => model.config.numClasses)] : labels;
    const state = model.beginInference(rowLabels);
    let x = model.sosInput(state);
    const logits: Tensor[] = [];
    for (let si = 0; si < model.numScales; si++) {
      logits.push(model.inferScale(state, x, hooks));
      if (si + 1 < model.numScales) {
        const inp = inputs[si + 1];
        if (!inp || inp.shape[0] !== B) throw new RangeError(`runTransformer: missing or mis-sized input for scale ${si + 1}`);
        const e = model.scaleInput(si + 1, inp);
        x = cfg ? repeat0(e, 2) : e;
      }
    }
    model.endInference(state); // keep the KV caches for the next run (as sampling with decode: false does)
    return logits;
  });
}
