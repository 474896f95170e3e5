/**
 * The VAR model (official models/var.py, docs/VAR.md §1–3, §6): embeddings, the block stack,
 * the AdaLN head, the teacher-forced forward with the block-causal mask, and KV-cache sampling
 * with classifier-free guidance.
 *
 * Parameters live in one `Map<string, Tensor>` under the official state-dict names; the model reads
 * them by name and keeps typed references per block (`VarBlock`). Buffers (`lvl_1L`,
 * `attn_bias_for_masking`, `zero_k_bias`) are recomputed from the config, never stored twice.
 *
 * ActVAR hooks: both `forward` and `autoregressiveInfer` accept a `blockExecutor`; for every
 * (scale, block) it receives a `BlockContext` and returns the block's output, or undefined to run
 * the dense block. The pieces it needs (AdaLN, attentionQKV, attendWithCache, attnProj, ffn,
 * attnBranch, ffnBranch, the explicit per-block KV cache) are exported from basic-var.ts.
 */
import {
  Tensor, Rng, noGrad, linear, silu, add, reshape, concat, slice, embedding, intTensor,
  flopsCategory, flopsTag, zeros, repeat0,
} from '../tensor/index.js';
import { tokenLayout, validateVarConfig, type VarConfig } from './config.js';
import {
  makeBlock, blockAdaLN, blockForward, adaLNModulate, createKVCache,
  type VarBlock, type AdaLN, type KVCache, type AttnMode,
} from './basic-var.js';
import { sampleWithTopKTopP_, gumbelSmoothFeatures } from './sample.js';
import { isBf16Weight, type WeightsDtype } from './weights-dtype.js';

const fr = Math.fround;

/** The FLOP categories of the model-level weights' work (docs/VAR.md §10); a block's are declared in block.ts. */
const VAR_FLOPS_CATEGORIES: readonly [string, string][] = [
  ['shared_ada_lin.1.weight', 'adaln'], ['head_nm.ada_lin.1.weight', 'head'], ['head.weight', 'head'], ['word_embed.weight', 'word_embed'],
];

/** What a `blockExecutor` sees for one block at one scale (inference) or in one teacher-forced forward. */
export interface BlockContext {
  model: VAR;
  block: VarBlock;
  blockIndex: number;
  /** 'infer': KV-cache sampling (use `cache`); 'teacher': teacher-forced forward (use `attnBias`). */
  mode: 'infer' | 'teacher';
  /** Scale index si in inference; −1 in the teacher-forced forward (all scales at once). */
  scaleIndex: number;
  /** Side of this scale's token map in inference (x has patchNum² tokens per row); 0 in teacher mode. */
  patchNum: number;
  /** The block input [rows, tokens, C] (rows = 2B with CFG: cond rows then uncond rows). */
  x: Tensor;
  /** This block's AdaLN modulation for every row (cached across scales unless recomputed). */
  ada: AdaLN;
  /** The condition of every row, class_emb(label) [rows, C]. */
  cond: Tensor;
  /** This block's KV cache (inference). Only what is appended to it is visible to later scales. */
  cache: KVCache | null;
  /** Additive attention bias [tokens, tokens] (teacher mode; null = no mask). */
  attnBias: Tensor | null;
  /** Token range [begin, end) of this scale in the full pyramid (inference), [0, L) in teacher mode. */
  tokenRange: [number, number];
  training: boolean;
  rng?: Rng;
}

/** Replace a block's execution: return its output, or undefined to run the dense block. */
export type BlockExecutor = (ctx: BlockContext) => Tensor | undefined;

export interface VarHooks {
  blockExecutor?: BlockExecutor;
  /** Called after every block with its context (ctx.x = input) and output. */
  afterBlock?: (ctx: BlockContext, out: Tensor) => void;
}

/** What the sampler needs from the VQVAE (src/vqvae VQVAE satisfies it). */
export interface VarVqvae {
  readonly Cvae: number;
  embedIdx(idx: Tensor, pn: number): Tensor;
  getNextAutoregressiveInput(si: number, SN: number, fHat: Tensor, hBChw: Tensor): { fHat: Tensor; next: Tensor };
  fhatToImg(fHat: Tensor): Tensor;
  readonly quantize: { readonly codebook: Tensor };
}

export interface ForwardOptions extends VarHooks {
  /** Label dropout (cond_drop_rate) and drop-path. The official code drops labels even in eval;
   *  we deliberately apply it only when training (docs/VAR.md §3.6). */
  training?: boolean;
  /** Randomness of label dropout / drop-path (required when training with non-zero rates). */
  rng?: Rng;
}

/** Everything one sampling step exposes to a `trace` callback (parity tests, visualisation). */
export interface StepTrace {
  si: number;
  pn: number;
  /** Input of block 0 [rows, pn², C]. */
  x: Tensor;
  /** Head output before CFG [rows, pn², V]. */
  rawLogits: Tensor;
  /** (1+t)·cond − t·uncond [B, pn², V]. */
  cfgLogits: Tensor;
  /** After top-k/top-p masking. */
  filteredLogits: Tensor;
  /** Sampled tokens int32 [B, pn²]. */
  idx: Tensor;
  /** Token features [B, Cvae, pn, pn]. */
  hBChw: Tensor;
  /** Cumulative f̂ after this scale. */
  fHat: Tensor;
  /** Next scale's input map [B, Cvae, pn', pn'] (null at the last scale). */
  next: Tensor | null;
}

export interface InferOptions extends VarHooks {
  /** Class of every image; a negative id or numClasses means the null (unconditional) class. */
  labels: ArrayLike<number>;
  vqvae: VarVqvae;
  /** CFG strength; the per-scale weight is t = cfg·si/(SN−1) (docs/VAR.md §6). Default 1.5. */
  cfg?: number;
  /** 0 = off. */
  topK?: number;
  /** 0 = off. */
  topP?: number;
  /** Gumbel-softmax mixture of codebook vectors instead of the sampled token's vector (docs/VAR.md §6). */
  moreSmooth?: boolean;
  /** One generator for the batch, or one per image (then results do not depend on batching). Default Rng(0). */
  rng?: Rng | readonly Rng[];
  /** Decode f̂ into the image (default true). */
  decode?: boolean;
  /**
   * Recompute every block's AdaLN at every scale, as the official code does (docs/VAR.md §6; only for FLOPs
   * parity with docs/VAR.md §10). Default false: computed once, since the condition is constant.
   */
  recomputeAdaLN?: boolean;
  /** Progress: called after each scale. */
  onScale?: (si: number, SN: number) => void;
  trace?: (t: StepTrace) => void;
}

export interface InferResult {
  /** Tokens per scale, int32 [B, pn²]. */
  idx: Tensor[];
  /** All scales concatenated per image, int32 [B, L]. */
  idxBL: Tensor;
  fHat: Tensor;
  /** (fhatToImg(f̂) + 1)/2 in [0, 1], [B, 3, H, W]; null with decode: false. */
  image: Tensor | null;
}

/** KV-cache inference state of one batch (rows = 2B with CFG, cond rows first). */
export interface InferState {
  rows: number;
  cond: Tensor;
  sharedAda: Tensor | null;
  adas: AdaLN[] | null;
  headAda: { scale: Tensor; shift: Tensor } | null;
  caches: KVCache[];
  /** Next scale to run. */
  si: number;
  recomputeAdaLN: boolean;
}

/** The state-dict buffers of the official model (recomputed from the config). */
export const VAR_BUFFER_KEYS = ['lvl_1L', 'attn_bias_for_masking'] as const;

export class VAR {
  readonly config: VarConfig;
  /** Learnable parameters by official name (buffers excluded). */
  readonly params: Map<string, Tensor>;
  readonly blocks: VarBlock[];
  /** Total tokens L and each scale's [begin, end). */
  readonly L: number;
  readonly beginEnds: [number, number][];
  /** Scale index of every token (the `lvl_1L` buffer). */
  readonly lvl: Int32Array;
  private lvlPosCache: Float32Array | null = null;
  private attnBiasCache: Tensor | null = null;
  /** KV caches of the last finished inference, reused by the next one of the same shape (no page faults). */
  private kvPool: KVCache[] | null = null;

  constructor(config: VarConfig, params: Map<string, Tensor>) {
    validateVarConfig(config);
    this.config = config;
    const shapes = varParamShapes(config);
    const problems: string[] = [];
    for (const [k, s] of shapes) {
      const t = params.get(k);
      if (!t) problems.push(`missing '${k}'`);
      else if (t.dtype !== 'float32' && !(t.dtype === 'bfloat16' && isBf16Weight(k))) problems.push(`'${k}' must be float32${isBf16Weight(k) ? ' or bfloat16' : ''}, got ${t.dtype}`);
      else if (t.shape.join() !== s.join()) problems.push(`'${k}' has shape [${t.shape.join(', ')}], expected [${s.join(', ')}]`);
    }
    if (problems.length) throw new Error(`VAR parameters do not match the config:\n  - ${problems.join('\n  - ')}`);
    this.params = new Map([...shapes.keys()].map((k) => [k, params.get(k)!]));
    for (const [k, t] of this.params) t.name ??= k;
    for (const [k, category] of VAR_FLOPS_CATEGORIES) if (this.params.has(k)) flopsTag(this.params.get(k)!, category);
    const layout = tokenLayout(config.patchNums);
    this.L = layout.L; this.beginEnds = layout.beginEnds; this.lvl = layout.lvl;
    this.blocks = Array.from({ length: config.depth }, (_, i) => makeBlock(this.params, i, config));
  }

  private p(k: string): Tensor { return this.params.get(k)!; }

  /** How the weight matrices are stored: 'bf16' after `toBf16Weights` / `weightsDtype: 'bf16'` (src/var/weights-dtype.ts), else 'fp32'. */
  get weightsDtype(): WeightsDtype { return this.blocks[0]?.qkvW.dtype === 'bfloat16' ? 'bf16' : 'fp32'; }

  get C(): number { return this.config.width; }
  get numScales(): number { return this.config.patchNums.length; }

  /** Turn gradient recording of every parameter on or off. */
  setRequiresGrad(on: boolean): this {
    for (const t of this.params.values()) { t.requiresGrad = on; if (!on) t.grad = null; }
    return this;
  }

  /** Official state dict: parameters plus the buffers lvl_1L (int32), attn_bias_for_masking and zero_k_bias. */
  stateDict(): Map<string, Tensor> {
    const sd = new Map<string, Tensor>();
    const shapes = varParamShapes(this.config);
    for (const k of officialKeyOrder(this.config)) {
      if (shapes.has(k)) sd.set(k, this.p(k));
      else if (k === 'lvl_1L') sd.set(k, new Tensor(this.lvl.slice(), [1, this.L]));
      else if (k === 'attn_bias_for_masking') sd.set(k, new Tensor(this.attnBias().f32.slice(), [1, 1, this.L, this.L]));
      else if (k.endsWith('.attn.zero_k_bias')) sd.set(k, zeros([this.C]));
    }
    return sd;
  }

  /** Block-causal bias [L, L]: 0 where lvl(i) ≥ lvl(j), −inf elsewhere (docs/VAR.md §3.3). */
  attnBias(): Tensor {
    if (!this.attnBiasCache) this.attnBiasCache = blockCausalBias(this.lvl);
    return this.attnBiasCache;
  }

  /** lvl_embed(lvl_1L) + pos_1LC as float32 [L, C] (inference; docs/VAR.md §3.1, §6 `lvl_pos`). */
  private lvlPos(): Float32Array {
    if (this.lvlPosCache) return this.lvlPosCache;
    const C = this.C, lvlE = this.p('lvl_embed.weight').f32, pos = this.p('pos_1LC').f32;
    const out = new Float32Array(this.L * C);
    for (let t = 0; t < this.L; t++) {
      const lo = this.lvl[t] * C;
      for (let c = 0; c < C; c++) out[t * C + c] = lvlE[lo + c] + pos[t * C + c];
    }
    this.lvlPosCache = out;
    return out;
  }

  /** Drop cached derived values (call after changing parameters in place, e.g. an optimiser step). */
  invalidateCaches(): void { this.lvlPosCache = null; }

  /** Class ids → int32, null class for negative ids (official `label_B < 0`), range-checked. */
  private labelIds(labels: ArrayLike<number> | Tensor): Int32Array {
    const src = labels instanceof Tensor ? labels.data : labels;
    const n = this.config.numClasses;
    const out = new Int32Array(src.length);
    for (let i = 0; i < src.length; i++) {
      const v = src[i];
      if (!Number.isInteger(v) || v > n) throw new RangeError(`class id ${v} is out of range: this model has classes 0..${n - 1} (and ${n} = the null class)`);
      out[i] = v < 0 ? n : v;
    }
    return out;
  }

  /** cond_BD = class_emb(label) [B, C]. */
  condEmbed(labels: Int32Array): Tensor {
    return embedding(this.p('class_emb.weight'), new Tensor(labels, [labels.length]));
  }

  /** shared_ada_lin(cond) [B, 6C] with shared AdaLN, else null ('adaln'). */
  sharedAdaLN(cond: Tensor): Tensor | null {
    if (!this.config.sharedAdaLN) return null;
    return linear(silu(cond), this.p('shared_ada_lin.1.weight'), this.p('shared_ada_lin.1.bias'));
  }

  /** AdaLN of every block for the rows of `cond`. */
  blockAdaLNs(cond: Tensor, sharedAda: Tensor | null = this.sharedAdaLN(cond)): AdaLN[] {
    return this.blocks.map((b) => blockAdaLN(b, cond, sharedAda));
  }

  /** head_nm's (scale, shift) = Linear(SiLU(cond)) split in that order (docs/VAR.md §3.5), category 'head'. */
  headAdaLN(cond: Tensor): { scale: Tensor; shift: Tensor } {
    const C = this.C, B = cond.shape[0];
    const ss = linear(silu(cond), this.p('head_nm.ada_lin.1.weight'), this.p('head_nm.ada_lin.1.bias'));
    const v = reshape(ss, [B, 2, C]);
    return { scale: reshape(slice(v, 1, 0, 1), [B, C]), shift: reshape(slice(v, 1, 1, 2), [B, C]) };
  }

  /** logits = head(ln(x)·(1+scale)+shift) [B, l, V] (docs/VAR.md §3.5), category 'head'. */
  headLogits(x: Tensor, headAda: { scale: Tensor; shift: Tensor }): Tensor {
    const h = adaLNModulate(x, headAda.scale, headAda.shift, this.config.normEps);
    return linear(h, this.p('head.weight'), this.p('head.bias'));
  }

  /** Run the block stack, dispatching each block to the hook or the dense block. */
  private runBlocks(x: Tensor, adas: AdaLN[], base: Omit<BlockContext, 'block' | 'blockIndex' | 'x' | 'ada' | 'cache'>, caches: KVCache[] | null, hooks: VarHooks): Tensor {
    for (let i = 0; i < this.blocks.length; i++) {
      const block = this.blocks[i];
      const cache = caches ? caches[i] : null;
      const ctx: BlockContext = { ...base, block, blockIndex: i, x, ada: adas[i], cache };
      let out = hooks.blockExecutor ? hooks.blockExecutor(ctx) : undefined;
      if (out === undefined) {
        const mode: AttnMode = cache ? { kind: 'cache', cache } : { kind: 'bias', bias: base.attnBias };
        out = blockForward(block, x, adas[i], mode, { training: base.training, rng: base.rng });
      }
      hooks.afterBlock?.(ctx, out);
      x = out;
    }
    return x;
  }

  /**
   * Teacher-forced forward `VAR.forward(label_B, x_BLCv_wo_first_l)` (docs/VAR.md §3.6) → logits [B, ed, V],
   * where ed = 1 + x.shape[1] ≤ L (fewer tokens = a prefix of the pyramid, as progressive training).
   * Differentiable. Label dropout and drop-path only with `training` (see ForwardOptions).
   */
  forward(labelB: ArrayLike<number> | Tensor, xBLCvWoFirstL: Tensor, opts: ForwardOptions = {}): Tensor {
    const C = this.C, { Cvae, numClasses, condDropRate } = this.config;
    const x0 = xBLCvWoFirstL;
    if (x0.ndim !== 3 || x0.shape[2] !== Cvae) throw new RangeError(`VAR.forward: expected x_BLCv_wo_first_l [B, L−1, ${Cvae}], got [${x0.shape.join(', ')}]`);
    const B = x0.shape[0], ed = x0.shape[1] + 1;
    if (ed > this.L) throw new RangeError(`VAR.forward: ${ed} tokens exceed the pyramid's L = ${this.L}`);
    const labels = this.labelIds(labelB);
    if (labels.length !== B) throw new RangeError(`VAR.forward: ${labels.length} labels for a batch of ${B}`);
    const training = !!opts.training;
    if (training && condDropRate > 0) {
      if (!opts.rng) throw new Error('VAR.forward: training with label dropout needs an rng');
      for (let b = 0; b < B; b++) if (opts.rng.uniform() < condDropRate) labels[b] = numClasses;
    }
    const cond = this.condEmbed(labels);
    // x = cat(cond + pos_start, word_embed(x)) + (lvl_embed(lvl_1L) + pos_1LC)   (docs/VAR.md §3.1, §3.6)
    const sos = reshape(add(cond, reshape(this.p('pos_start'), [C])), [B, 1, C]);
    let x = ed > 1
      ? concat([sos, linear(x0, this.p('word_embed.weight'), this.p('word_embed.bias'))], 1)
      : sos;
    const lvlIdx = intTensor(this.lvl.subarray(0, ed));
    const pos = slice(reshape(this.p('pos_1LC'), [this.L, C]), 0, 0, ed);
    x = add(x, add(embedding(this.p('lvl_embed.weight'), lvlIdx), pos));
    const adas = this.blockAdaLNs(cond);
    let bias = this.attnBias();
    if (ed < this.L) bias = slice(slice(bias, 0, 0, ed), 1, 0, ed);
    x = this.runBlocks(x, adas, {
      model: this, mode: 'teacher', scaleIndex: -1, patchNum: 0, cond, attnBias: bias, tokenRange: [0, ed], training, rng: opts.rng,
    }, null, opts);
    return this.headLogits(x, this.headAdaLN(cond));
  }

  // -------------------------------------------------------------------------------------------
  // KV-cache inference (docs/VAR.md §6)

  /**
   * Start KV-cache inference for rows with the given class ids (already CFG-doubled by the caller
   * if wanted: cond rows, then null-class rows). Caches are preallocated to L tokens.
   */
  beginInference(rowLabels: ArrayLike<number>, opts: { recomputeAdaLN?: boolean; cacheCapacity?: number } = {}): InferState {
    const labels = this.labelIds(rowLabels);
    const rows = labels.length;
    const cond = this.condEmbed(labels);
    const recompute = !!opts.recomputeAdaLN;
    const sharedAda = recompute ? null : this.sharedAdaLN(cond);
    const cap = opts.cacheCapacity ?? this.L;
    return {
      rows, cond, sharedAda,
      adas: recompute ? null : this.blockAdaLNs(cond, sharedAda),
      headAda: recompute ? null : this.headAdaLN(cond),
      caches: this.takeCaches(rows, cap),
      si: 0, recomputeAdaLN: recompute,
    };
  }

  private takeCaches(rows: number, cap: number): KVCache[] {
    const pool = this.kvPool, b0 = this.blocks[0];
    this.kvPool = null;
    if (pool && pool[0].batch === rows && pool[0].capacity === cap) {
      for (const c of pool) c.len = 0;
      return pool;
    }
    return this.blocks.map(() => createKVCache(rows, b0.heads, b0.headDim, cap));
  }

  /** Hand a finished state's KV caches back for reuse by the next inference (optional). */
  endInference(state: InferState): void {
    this.kvPool = state.caches;
    state.caches = [];
  }

  /** Drop the pooled KV caches (frees their memory). */
  releaseCaches(): void { this.kvPool = null; }

  /** The SOS input of scale 0 for every row: cond + pos_start + lvl_pos[0] → [rows, 1, C] (docs/VAR.md §6). */
  sosInput(state: InferState): Tensor {
    const C = this.C, cond = state.cond.f32, ps = this.p('pos_start').f32, lp = this.lvlPos();
    const out = new Float32Array(state.rows * C);
    for (let r = 0; r < state.rows; r++) for (let c = 0; c < C; c++) out[r * C + c] = fr(cond[r * C + c] + ps[c]) + lp[c];
    return new Tensor(out, [state.rows, 1, C]);
  }

  /**
   * The input of scale si ≥ 1 from the VQ features of its tokens (the area-downsampled f̂),
   * nextBlCv [B, pn², Cvae] → word_embed(next) + lvl_pos[scale si] [B, pn², C] (before any CFG repeat).
   * Inference only (adds in place to the fresh GEMM output).
   */
  scaleInput(si: number, nextBlCv: Tensor): Tensor {
    const [bg, ed] = this.beginEnds[si];
    if (nextBlCv.ndim !== 3 || nextBlCv.shape[1] !== ed - bg || nextBlCv.shape[2] !== this.config.Cvae) {
      throw new RangeError(`scaleInput(${si}): expected [B, ${ed - bg}, ${this.config.Cvae}], got [${nextBlCv.shape.join(', ')}]`);
    }
    const e = linear(nextBlCv, this.p('word_embed.weight'), this.p('word_embed.bias'));
    const E = e.f32, lp = this.lvlPos(), C = this.C, n = (ed - bg) * C;
    for (let b = 0; b < nextBlCv.shape[0]; b++) for (let i = 0; i < n; i++) E[b * n + i] += lp[bg * C + i];
    return e;
  }

  /**
   * Run scale `state.si` on its input x [rows, pn², C] through every block (KV caches appended)
   * and the head → logits [rows, pn², V]. Inference only (call under noGrad).
   */
  inferScale(state: InferState, x: Tensor, hooks: VarHooks = {}): Tensor {
    const si = state.si;
    if (si >= this.numScales) throw new RangeError(`inferScale: all ${this.numScales} scales have run`);
    const [bg, ed] = this.beginEnds[si];
    if (x.ndim !== 3 || x.shape[0] !== state.rows || x.shape[1] !== ed - bg || x.shape[2] !== this.C) {
      throw new RangeError(`inferScale(${si}): expected x [${state.rows}, ${ed - bg}, ${this.C}], got [${x.shape.join(', ')}]`);
    }
    let adas = state.adas, headAda = state.headAda;
    if (state.recomputeAdaLN) {
      adas = this.blockAdaLNs(state.cond);
      headAda = this.headAdaLN(state.cond);
    }
    const out = this.runBlocks(x, adas!, {
      model: this, mode: 'infer', scaleIndex: si, patchNum: this.config.patchNums[si], cond: state.cond,
      attnBias: null, tokenRange: [bg, ed], training: false,
    }, state.caches, hooks);
    state.si++;
    return this.headLogits(out, headAda!);
  }

  /**
   * `autoregressive_infer_cfg` (docs/VAR.md §6): CFG batch doubling (cond rows, then null-class rows), guidance
   * t = cfg·si/(SN−1) per scale, top-k/top-p sampling from our Rng, the VQVAE f̂ update, and the
   * image (f̂ → [0, 1]). With cfg = 0 the unconditional half would get weight 0 at every scale, so
   * it is skipped (identical tokens, half the work).
   */
  autoregressiveInfer(opts: InferOptions): InferResult {
    return noGrad(() => this.infer(opts));
  }

  private infer(opts: InferOptions): InferResult {
    const cfg = opts.cfg ?? 1.5, topK = opts.topK ?? 0, topP = opts.topP ?? 0;
    if (!(cfg >= 0) || !Number.isFinite(cfg)) throw new RangeError(`cfg must be a finite number ≥ 0, got ${cfg}`);
    if (!(topP >= 0 && topP <= 1)) throw new RangeError(`top-p must be in [0, 1], got ${topP}`);
    if (!Number.isInteger(topK) || topK < 0) throw new RangeError(`top-k must be an integer ≥ 0, got ${topK}`);
    const labels = this.labelIds(opts.labels);
    const B = labels.length;
    if (B === 0) throw new RangeError('autoregressiveInfer: no labels given');
    const vq = opts.vqvae;
    if (vq.Cvae !== this.config.Cvae) throw new RangeError(`the VQVAE has Cvae = ${vq.Cvae} but the VAR expects ${this.config.Cvae}`);
    const rng = opts.rng ?? new Rng(0);
    const useCfg = cfg !== 0;
    const rowLabels = useCfg ? Int32Array.from([...labels, ...new Array<number>(B).fill(this.config.numClasses)]) : labels;
    const state = this.beginInference(rowLabels, { recomputeAdaLN: opts.recomputeAdaLN });
    const SN = this.numScales, pns = this.config.patchNums, last = pns[SN - 1];
    let x = this.sosInput(state);
    let fHat = zeros([B, this.config.Cvae, last, last]);
    const idxs: Tensor[] = [];
    for (let si = 0; si < SN; si++) {
      const pn = pns[si];
      const ratio = SN > 1 ? si / (SN - 1) : 0;
      const xIn = x;
      const raw = this.inferScale(state, x, opts);
      const t = cfg * ratio;
      const logits = useCfg ? cfgCombine(raw, B, t) : raw;
      const cfgCopy = opts.trace ? new Tensor(logits.f32.slice(), logits.shape) : null;
      const idx = sampleWithTopKTopP_(logits, topK, topP, rng);
      idxs.push(idx);
      let hBChw: Tensor;
      if (opts.moreSmooth) {
        const h = gumbelSmoothFeatures(logits, ratio, vq.quantize.codebook, rng); // [B, l, Cvae]
        hBChw = toBChw(h, pn);
      } else {
        hBChw = vq.embedIdx(idx, pn);
      }
      const upd = vq.getNextAutoregressiveInput(si, SN, fHat, hBChw);
      fHat = upd.fHat;
      let next: Tensor | null = null;
      if (si !== SN - 1) {
        next = upd.next;
        const e = this.scaleInput(si + 1, fromBChw(next)); // [B, l', C]
        x = useCfg ? repeat0(e, 2) : e;
      }
      opts.trace?.({ si, pn, x: xIn, rawLogits: raw, cfgLogits: cfgCopy!, filteredLogits: logits, idx, hBChw, fHat, next });
      opts.onScale?.(si, SN);
    }
    // keep the KV caches for the next call unless a decode follows (its peak memory matters more)
    if (opts.decode === false) this.endInference(state);
    else { state.caches = []; this.kvPool = null; }
    const idxBL = concat(idxs, 1);
    let image: Tensor | null = null;
    if (opts.decode !== false) {
      image = toUnitRange(flopsCategory('vqvae_decode', () => vq.fhatToImg(fHat)));
    }
    return { idx: idxs, idxBL, fHat, image };
  }
}

/** A decoded image in [−1, 1] mapped to [0, 1] as the official code does (`add_(1).mul_(0.5)`, float32). */
export function toUnitRange(img: Tensor): Tensor {
  const d = img.f32, out = new Float32Array(d.length);
  for (let i = 0; i < d.length; i++) out[i] = fr(fr(d[i] + 1) * 0.5);
  return new Tensor(out, img.shape);
}

/** (1+t)·logits[:B] − t·logits[B:] in float32 as torch does with Python scalars (docs/VAR.md §6). */
function cfgCombine(raw: Tensor, B: number, t: number): Tensor {
  const [, l, V] = raw.shape;
  const R = raw.f32, n = B * l * V, out = new Float32Array(n);
  const a = fr(1 + t), tt = fr(t);
  for (let i = 0; i < n; i++) out[i] = fr(a * R[i]) - fr(tt * R[n + i]);
  return new Tensor(out, [B, l, V]);
}

/** [B, l, Cvae] → [B, Cvae, pn, pn] (official `h.transpose(1, 2).reshape(B, Cvae, pn, pn)`). */
function toBChw(h: Tensor, pn: number): Tensor {
  const [B, l, Cv] = h.shape, H = h.f32, out = new Float32Array(H.length);
  for (let b = 0; b < B; b++) for (let j = 0; j < l; j++) for (let c = 0; c < Cv; c++) out[(b * Cv + c) * l + j] = H[(b * l + j) * Cv + c];
  return new Tensor(out, [B, Cv, pn, pn]);
}

/** [B, Cvae, pn, pn] → [B, pn², Cvae] (official `.view(B, Cvae, -1).transpose(1, 2)`). */
function fromBChw(m: Tensor): Tensor {
  const [B, Cv, ph, pw] = m.shape, l = ph * pw, M = m.f32, out = new Float32Array(M.length);
  for (let b = 0; b < B; b++) for (let c = 0; c < Cv; c++) for (let j = 0; j < l; j++) out[(b * l + j) * Cv + c] = M[(b * Cv + c) * l + j];
  return new Tensor(out, [B, l, Cv]);
}

/** bias[i, j] = 0 if lvl(i) ≥ lvl(j) else −inf, float32 [L, L] (docs/VAR.md §3.3 `attn_bias_for_masking`). */
export function blockCausalBias(lvl: Int32Array): Tensor {
  const L = lvl.length, d = new Float32Array(L * L);
  for (let i = 0; i < L; i++) for (let j = 0; j < L; j++) d[i * L + j] = lvl[i] >= lvl[j] ? 0 : -Infinity;
  return new Tensor(d, [L, L]);
}

/** Learnable parameters of a config with their shapes (docs/VAR.md Appendix A), in official order. */
export function varParamShapes(c: VarConfig): Map<string, number[]> {
  const C = c.width, L = tokenLayout(c.patchNums).L;
  const m = new Map<string, number[]>();
  m.set('pos_start', [1, 1, C]);
  m.set('pos_1LC', [1, L, C]);
  m.set('word_embed.weight', [C, c.Cvae]);
  m.set('word_embed.bias', [C]);
  m.set('class_emb.weight', [c.numClasses + 1, C]);
  m.set('lvl_embed.weight', [c.patchNums.length, C]);
  if (c.sharedAdaLN) { m.set('shared_ada_lin.1.weight', [6 * C, C]); m.set('shared_ada_lin.1.bias', [6 * C]); }
  for (let i = 0; i < c.depth; i++) {
    const p = `blocks.${i}.`;
    if (c.sharedAdaLN) m.set(p + 'ada_gss', [1, 1, 6, C]);
    if (c.attnL2Norm) m.set(p + 'attn.scale_mul_1H11', [1, c.heads, 1, 1]);
    m.set(p + 'attn.q_bias', [C]);
    m.set(p + 'attn.v_bias', [C]);
    m.set(p + 'attn.mat_qkv.weight', [3 * C, C]);
    m.set(p + 'attn.proj.weight', [C, C]);
    m.set(p + 'attn.proj.bias', [C]);
    m.set(p + 'ffn.fc1.weight', [c.mlpHidden, C]);
    m.set(p + 'ffn.fc1.bias', [c.mlpHidden]);
    m.set(p + 'ffn.fc2.weight', [C, c.mlpHidden]);
    m.set(p + 'ffn.fc2.bias', [C]);
    if (!c.sharedAdaLN) { m.set(p + 'ada_lin.1.weight', [6 * C, C]); m.set(p + 'ada_lin.1.bias', [6 * C]); }
  }
  m.set('head_nm.ada_lin.1.weight', [2 * C, C]);
  m.set('head_nm.ada_lin.1.bias', [2 * C]);
  m.set('head.weight', [c.vocabSize, C]);
  m.set('head.bias', [c.vocabSize]);
  return m;
}

/** Buffers of the official state dict with their shapes. */
export function varBufferShapes(c: VarConfig): Map<string, number[]> {
  const L = tokenLayout(c.patchNums).L;
  const m = new Map<string, number[]>([['lvl_1L', [1, L]], ['attn_bias_for_masking', [1, 1, L, L]]]);
  for (let i = 0; i < c.depth; i++) m.set(`blocks.${i}.attn.zero_k_bias`, [c.width]);
  return m;
}

/** Every state-dict key in the official order (params and buffers interleaved as torch lists them). */
export function officialKeyOrder(c: VarConfig): string[] {
  const params = varParamShapes(c);
  const keys: string[] = ['pos_start', 'pos_1LC', 'lvl_1L', 'attn_bias_for_masking', 'word_embed.weight', 'word_embed.bias', 'class_emb.weight', 'lvl_embed.weight'];
  if (c.sharedAdaLN) keys.push('shared_ada_lin.1.weight', 'shared_ada_lin.1.bias');
  for (let i = 0; i < c.depth; i++) {
    const p = `blocks.${i}.`;
    if (c.sharedAdaLN) keys.push(p + 'ada_gss');
    if (c.attnL2Norm) keys.push(p + 'attn.scale_mul_1H11');
    keys.push(p + 'attn.q_bias', p + 'attn.v_bias', p + 'attn.zero_k_bias', p + 'attn.mat_qkv.weight', p + 'attn.proj.weight', p + 'attn.proj.bias',
      p + 'ffn.fc1.weight', p + 'ffn.fc1.bias', p + 'ffn.fc2.weight', p + 'ffn.fc2.bias');
    if (!c.sharedAdaLN) keys.push(p + 'ada_lin.1.weight', p + 'ada_lin.1.bias');
  }
  keys.push('head_nm.ada_lin.1.weight', 'head_nm.ada_lin.1.bias', 'head.weight', 'head.bias');
  for (const k of params.keys()) if (!keys.includes(k)) keys.push(k);
  return keys;
}

/**
 * gt_BL = cat(idx_0 … idx_{SN−1}) per row (docs/VAR.md §7): the per-scale token maps idxBl[si] [B, pn²] laid out
 * as B rows of L tokens, the targets of the teacher-forced logits [B, L, V].
 */
export function groundTruthBL(idxBl: readonly Tensor[]): Int32Array {
  const B = idxBl[0].shape[0], L = idxBl.reduce((n, t) => n + t.shape[1], 0);
  const gt = new Int32Array(B * L);
  let off = 0;
  for (const t of idxBl) {
    const l = t.shape[1], d = t.i32;
    for (let b = 0; b < B; b++) gt.set(d.subarray(b * l, b * l + l), b * L + off);
    off += l;
  }
  return gt;
}
