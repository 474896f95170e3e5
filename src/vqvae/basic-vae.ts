/**
 * Encoder and decoder of the multi-scale VQVAE (official `models/basic_vae.py`, docs/VAR.md §4).
 *
 * Modules hold no tensors: they read their parameters by official state-dict name from a shared
 * `Map<string, Tensor>` at every forward, so the same map can be loaded, trained in place or swapped.
 * Building a module also records the name, shape and kind of each parameter it needs in a `SpecTable`,
 * which the VQVAE uses to check a loaded state dict and to initialise random weights.
 *
 * Everything is composed from differentiable tensor ops (conv2d, groupNorm, silu, softmax, matmul,
 * nearest upsampling) so the tokenizer can be trained. When no gradient is needed, the 3×3 convs take
 * the tensor layer's fused op (src/tensor/ops/conv3x3.ts: shifted GEMMs, with GroupNorm+SiLU,
 * upsampling and the residual add fused into the copies around them).
 */
import {
  Tensor, isGradEnabled, add, silu, scale, reshape, transpose, split, matmul, linear,
  conv3x3Same, conv3x3Enabled, recycleActivation, dropSpareActivation,
} from '../tensor/index.js';
import { conv2d, type Conv2dOptions } from '../tensor/ops/conv.js';
import { groupNorm, softmax } from '../tensor/ops/nn.js';
import { upsampleNearest2x } from '../tensor/ops/resample.js';

export { setConv3x3Options, conv3x3Stats, releaseConv3x3Workspaces } from '../tensor/index.js';

export type StateDict = Map<string, Tensor>;

/** What a parameter is, for initialisation: conv kernels and biases use U(±1/√fanIn) (torch's default). */
export type ParamKind = 'convWeight' | 'convBias' | 'normWeight' | 'normBias' | 'codebook';
export interface ParamSpec { shape: number[]; kind: ParamKind; fanIn: number }
/** State-dict key → what the model expects there. */
export type SpecTable = Map<string, ParamSpec>;

/** Shared by all modules of one model: the parameters, the spec table being built, and GroupNorm groups. */
export interface ModuleCtx {
  sd: StateDict;
  specs: SpecTable;
  /** Groups of every `Normalize` (official 32). */
  normGroups: number;
}

function needsGrad(...ts: (Tensor | null | undefined)[]): boolean {
  return isGradEnabled() && ts.some((t) => t?.requiresGrad);
}

function getParam(ctx: ModuleCtx, key: string): Tensor {
  const t = ctx.sd.get(key);
  if (!t) throw new Error(`VQVAE: parameter '${key}' is missing from the state dict`);
  return t;
}

/** A Conv2d with bias (keys `{prefix}.weight` [cout, cin, k, k], `{prefix}.bias` [cout]). */
export class Conv2d {
  constructor(private readonly ctx: ModuleCtx, readonly prefix: string, readonly cin: number, readonly cout: number,
    readonly k: number, private readonly opts: Conv2dOptions = {}) {
    const fanIn = cin * k * k;
    ctx.specs.set(`${prefix}.weight`, { shape: [cout, cin, k, k], kind: 'convWeight', fanIn });
    ctx.specs.set(`${prefix}.bias`, { shape: [cout], kind: 'convBias', fanIn });
  }
  get weight(): Tensor { return getParam(this.ctx, `${this.prefix}.weight`); }
  get bias(): Tensor { return getParam(this.ctx, `${this.prefix}.bias`); }
  forward(x: Tensor): Tensor {
    if (this.isSame3x3 && !needsGrad(x, this.weight, this.bias)) return conv3x3Same(x, this.weight, this.bias, { kind: 'copy' });
    return conv2d(x, this.weight, this.bias, this.opts);
  }
  /**
   * conv(silu(x)) (+ residual), SiLU fused into the padding copy and the residual add into the
   * output copy when no graph is needed.
   */
  forwardSilu(x: Tensor, residual: Tensor | null = null, intoResidual = false): Tensor {
    if (this.isSame3x3 && !needsGrad(x, this.weight, this.bias, residual)) return conv3x3Same(x, this.weight, this.bias, { kind: 'silu' }, residual, intoResidual);
    const y = this.forward(silu(x));
    return residual ? add(residual, y) : y;
  }
  /**
   * conv(silu(norm(x))) (+ residual); without a graph GroupNorm and SiLU are fused into the padding copy.
   * `intoResidual`: the caller gives up the residual, whose buffer may then hold the result (fast path only).
   */
  forwardNormSilu(norm: Normalize, x: Tensor, residual: Tensor | null = null, intoResidual = false): Tensor {
    const w = norm.weight, b = norm.bias;
    if (this.isSame3x3 && !needsGrad(x, w, b, this.weight, this.bias, residual)) {
      return conv3x3Same(x, this.weight, this.bias, { kind: 'gnSilu', groups: norm.groups, weight: w.f32, bias: b.f32, eps: norm.eps }, residual, intoResidual);
    }
    return this.forwardSilu(norm.forward(x), residual);
  }
  /** conv(upsampleNearest2x(x)), the upsampling fused into the padding copy when no graph is needed. */
  forwardUp2(x: Tensor): Tensor {
    if (this.isSame3x3 && !needsGrad(x, this.weight, this.bias)) return conv3x3Same(x, this.weight, this.bias, { kind: 'up2' });
    return this.forward(upsampleNearest2x(x));
  }
  private get isSame3x3(): boolean {
    const p = this.opts.padding ?? 0;
    return conv3x3Enabled() && this.k === 3 && (this.opts.stride ?? 1) === 1 && (p === 1 || (Array.isArray(p) && p.every((v) => v === 1)));
  }
}

/** `Normalize(c)` = GroupNorm(groups, c, eps=1e-6, affine) (docs/VAR.md §4). */
export class Normalize {
  readonly eps = 1e-6;
  constructor(private readonly ctx: ModuleCtx, readonly prefix: string, readonly channels: number) {
    if (channels % ctx.normGroups !== 0) {
      throw new RangeError(`VQVAE: GroupNorm at '${prefix}' has ${channels} channels, not divisible by ${ctx.normGroups} groups (choose normGroups dividing every width)`);
    }
    ctx.specs.set(`${prefix}.weight`, { shape: [channels], kind: 'normWeight', fanIn: 0 });
    ctx.specs.set(`${prefix}.bias`, { shape: [channels], kind: 'normBias', fanIn: 0 });
  }
  get weight(): Tensor { return getParam(this.ctx, `${this.prefix}.weight`); }
  get bias(): Tensor { return getParam(this.ctx, `${this.prefix}.bias`); }
  get groups(): number { return this.ctx.normGroups; }
  forward(x: Tensor): Tensor { return groupNorm(x, this.groups, this.weight, this.bias, this.eps); }
}

/** `out = nin_shortcut(x) + conv2(silu(norm2(conv1(silu(norm1(x))))))`; nin_shortcut is a 1×1 conv only when cin ≠ cout. */
export class ResnetBlock {
  readonly norm1: Normalize; readonly conv1: Conv2d;
  readonly norm2: Normalize; readonly conv2: Conv2d;
  readonly ninShortcut: Conv2d | null;
  constructor(ctx: ModuleCtx, readonly prefix: string, readonly cin: number, readonly cout: number) {
    this.norm1 = new Normalize(ctx, `${prefix}.norm1`, cin);
    this.conv1 = new Conv2d(ctx, `${prefix}.conv1`, cin, cout, 3, { padding: 1 });
    this.norm2 = new Normalize(ctx, `${prefix}.norm2`, cout);
    this.conv2 = new Conv2d(ctx, `${prefix}.conv2`, cout, cout, 3, { padding: 1 });
    this.ninShortcut = cin !== cout ? new Conv2d(ctx, `${prefix}.nin_shortcut`, cin, cout, 1) : null;
  }
  /**
   * `consumeInput`: the caller will not use x again (the encoder/decoder pass their own temporaries),
   * so without a graph the residual sum may overwrite x. A 1×1 shortcut's output is always reused.
   */
  forward(x: Tensor, consumeInput = false): Tensor {
    const h = this.conv1.forwardNormSilu(this.norm1, x);
    const sc = this.ninShortcut ? this.ninShortcut.forward(x) : x;
    const out = this.conv2.forwardNormSilu(this.norm2, h, sc, this.ninShortcut !== null || consumeInput);
    if (out.data !== h.data) recycleActivation(h); // h is ours and dead now
    return out;
  }
}

/**
 * Single-head self-attention over the H·W positions (docs/VAR.md §4): qkv = Conv1×1(c→3c)(norm(x)),
 * w = softmax_j(q_i·k_j · c^−½), h_i = Σ_j w_ij v_j, out = x + proj_out(h). The 1×1 convs run as GEMMs
 * on the [B, HW, C] layout.
 */
export class AttnBlock {
  readonly norm: Normalize;
  readonly qkv: Conv2d;
  readonly projOut: Conv2d;
  constructor(private readonly ctx: ModuleCtx, readonly prefix: string, readonly channels: number) {
    this.norm = new Normalize(ctx, `${prefix}.norm`, channels);
    this.qkv = new Conv2d(ctx, `${prefix}.qkv`, channels, 3 * channels, 1);
    this.projOut = new Conv2d(ctx, `${prefix}.proj_out`, channels, channels, 1);
  }
  forward(x: Tensor): Tensor {
    const [B, C, H, W] = x.shape, HW = H * W;
    const xt = transpose(reshape(this.norm.forward(x), [B, C, HW]), 1, 2); // [B, HW, C]
    const qkv = linear(xt, reshape(this.qkv.weight, [3 * C, C]), this.qkv.bias); // [B, HW, 3C] = [q | k | v]
    const [q, k, v] = split(qkv, [C, C, C], 2);
    // torch: bmm(q, k).mul_(C ** -0.5), the Python double rounded to float32
    const w = softmax(scale(matmul(q, k, false, true), Math.fround(C ** -0.5)), -1); // [B, HW(i), HW(j)]
    const h = matmul(w, v); // [B, HW, C]
    const o = linear(h, reshape(this.projOut.weight, [C, C]), this.projOut.bias); // [B, HW, C]
    const oc = reshape(transpose(o, 1, 2), [B, C, H, W]);
    if (oc.requiresGrad || x.requiresGrad) return add(x, oc);
    const O = oc.f32, X = x.f32;
    for (let i = 0; i < O.length; i++) O[i] = X[i] + O[i];
    return oc;
  }
}

/** Zero-pad right and bottom by 1, then 3×3 conv, stride 2, no padding (keys `{prefix}.conv.*`). */
export class Downsample2x {
  readonly conv: Conv2d;
  constructor(ctx: ModuleCtx, readonly prefix: string, channels: number) {
    this.conv = new Conv2d(ctx, `${prefix}.conv`, channels, channels, 3, { stride: 2, padding: [0, 1, 0, 1] });
  }
  forward(x: Tensor): Tensor { return this.conv.forward(x); }
}

/** Nearest ×2, then 3×3 conv with padding 1 (keys `{prefix}.conv.*`). */
export class Upsample2x {
  readonly conv: Conv2d;
  constructor(ctx: ModuleCtx, readonly prefix: string, channels: number) {
    this.conv = new Conv2d(ctx, `${prefix}.conv`, channels, channels, 3, { padding: 1 });
  }
  forward(x: Tensor): Tensor { return this.conv.forwardUp2(x); }
}

/** Hyper-parameters shared by the encoder and decoder (the official `ddconfig`). */
export interface AutoencoderConfig {
  /** Base width (official 160). */
  ch: number;
  /** Width multiplier per resolution level; downsampling is 2^(levels−1) (official [1,1,2,2,4]). */
  chMult: readonly number[];
  /** ResnetBlocks per encoder level (the decoder has one more per level). Official 2. */
  numResBlocks: number;
  /** Image channels (3). */
  inChannels: number;
  /** Latent channels z (official 32 = Cvae). */
  zChannels: number;
  /** Attention after each ResnetBlock of the lowest-resolution level. */
  usingSa: boolean;
  /** Attention between the two mid ResnetBlocks. */
  usingMidSa: boolean;
}

function checkAeConfig(cfg: AutoencoderConfig): void {
  const bad = (what: string): never => { throw new RangeError(`VQVAE config: ${what}`); };
  if (!Number.isInteger(cfg.ch) || cfg.ch < 1) bad(`ch must be a positive integer, got ${cfg.ch}`);
  if (!cfg.chMult.length || cfg.chMult.some((m) => !Number.isInteger(m) || m < 1)) bad(`chMult must be positive integers, got [${cfg.chMult.join(', ')}]`);
  if (!Number.isInteger(cfg.numResBlocks) || cfg.numResBlocks < 1) bad(`numResBlocks must be ≥ 1, got ${cfg.numResBlocks}`);
  if (!Number.isInteger(cfg.zChannels) || cfg.zChannels < 1) bad(`zChannels must be ≥ 1, got ${cfg.zChannels}`);
  if (!Number.isInteger(cfg.inChannels) || cfg.inChannels < 1) bad(`inChannels must be ≥ 1, got ${cfg.inChannels}`);
}

interface Level { block: ResnetBlock[]; attn: AttnBlock[]; resample: Downsample2x | Upsample2x | null }

/** The mid section: Res → Attn (optional) → Res. */
class Mid {
  readonly block1: ResnetBlock; readonly attn1: AttnBlock | null; readonly block2: ResnetBlock;
  constructor(ctx: ModuleCtx, prefix: string, c: number, usingMidSa: boolean) {
    this.block1 = new ResnetBlock(ctx, `${prefix}.mid.block_1`, c, c);
    this.attn1 = usingMidSa ? new AttnBlock(ctx, `${prefix}.mid.attn_1`, c) : null;
    this.block2 = new ResnetBlock(ctx, `${prefix}.mid.block_2`, c, c);
  }
  /** `consumeInput` as in ResnetBlock.forward. */
  forward(h: Tensor, consumeInput = false): Tensor {
    h = this.block1.forward(h, consumeInput);
    if (this.attn1) h = this.attn1.forward(h);
    return this.block2.forward(h, true);
  }
}

/** Image [B, inChannels, S, S] → latent [B, z, S/2^(levels−1), …] (before quant_conv). */
export class Encoder {
  readonly convIn: Conv2d;
  readonly down: Level[] = [];
  readonly mid: Mid;
  readonly normOut: Normalize;
  readonly convOut: Conv2d;
  constructor(ctx: ModuleCtx, readonly cfg: AutoencoderConfig, prefix = 'encoder') {
    checkAeConfig(cfg);
    const { ch, chMult, numResBlocks } = cfg, n = chMult.length;
    this.convIn = new Conv2d(ctx, `${prefix}.conv_in`, cfg.inChannels, ch, 3, { padding: 1 });
    const inMult = [1, ...chMult];
    let blockIn = ch;
    for (let i = 0; i < n; i++) {
      const lvl: Level = { block: [], attn: [], resample: null };
      blockIn = ch * inMult[i];
      const blockOut = ch * chMult[i];
      for (let j = 0; j < numResBlocks; j++) {
        lvl.block.push(new ResnetBlock(ctx, `${prefix}.down.${i}.block.${j}`, blockIn, blockOut));
        blockIn = blockOut;
        if (i === n - 1 && cfg.usingSa) lvl.attn.push(new AttnBlock(ctx, `${prefix}.down.${i}.attn.${j}`, blockIn));
      }
      if (i !== n - 1) lvl.resample = new Downsample2x(ctx, `${prefix}.down.${i}.downsample`, blockIn);
      this.down.push(lvl);
    }
    this.mid = new Mid(ctx, prefix, blockIn, cfg.usingMidSa);
    this.normOut = new Normalize(ctx, `${prefix}.norm_out`, blockIn);
    this.convOut = new Conv2d(ctx, `${prefix}.conv_out`, blockIn, cfg.zChannels, 3, { padding: 1 });
  }
  forward(x: Tensor): Tensor {
    let h = this.convIn.forward(x);
    for (const lvl of this.down) {
      for (let j = 0; j < lvl.block.length; j++) {
        h = lvl.block[j].forward(h, true); // h is our own temporary
        if (lvl.attn.length) h = lvl.attn[j].forward(h);
      }
      if (lvl.resample) h = lvl.resample.forward(h);
    }
    h = this.mid.forward(h, true);
    const out = this.convOut.forwardNormSilu(this.normOut, h);
    dropSpareActivation();
    return out;
  }
}

/** Latent [B, z, s, s] (after post_quant_conv) → image [B, inChannels, s·2^(levels−1), …], not clamped. */
export class Decoder {
  readonly convIn: Conv2d;
  readonly mid: Mid;
  /** Indexed by resolution level: up[levels−1] (lowest resolution) runs first. */
  readonly up: Level[] = [];
  readonly normOut: Normalize;
  readonly convOut: Conv2d;
  constructor(ctx: ModuleCtx, readonly cfg: AutoencoderConfig, prefix = 'decoder') {
    checkAeConfig(cfg);
    const { ch, chMult, numResBlocks } = cfg, n = chMult.length;
    let blockIn = ch * chMult[n - 1];
    this.convIn = new Conv2d(ctx, `${prefix}.conv_in`, cfg.zChannels, blockIn, 3, { padding: 1 });
    this.mid = new Mid(ctx, prefix, blockIn, cfg.usingMidSa);
    const levels: Level[] = new Array(n);
    for (let i = n - 1; i >= 0; i--) {
      const lvl: Level = { block: [], attn: [], resample: null };
      const blockOut = ch * chMult[i];
      for (let j = 0; j < numResBlocks + 1; j++) {
        lvl.block.push(new ResnetBlock(ctx, `${prefix}.up.${i}.block.${j}`, blockIn, blockOut));
        blockIn = blockOut;
        if (i === n - 1 && cfg.usingSa) lvl.attn.push(new AttnBlock(ctx, `${prefix}.up.${i}.attn.${j}`, blockIn));
      }
      if (i !== 0) lvl.resample = new Upsample2x(ctx, `${prefix}.up.${i}.upsample`, blockIn);
      levels[i] = lvl;
    }
    this.up = levels;
    this.normOut = new Normalize(ctx, `${prefix}.norm_out`, blockIn);
    this.convOut = new Conv2d(ctx, `${prefix}.conv_out`, blockIn, cfg.inChannels, 3, { padding: 1 });
  }
  forward(z: Tensor): Tensor {
    let h = this.mid.forward(this.convIn.forward(z), true);
    for (let i = this.up.length - 1; i >= 0; i--) {
      const lvl = this.up[i];
      for (let j = 0; j < lvl.block.length; j++) {
        h = lvl.block[j].forward(h, true); // h is our own temporary
        if (lvl.attn.length) h = lvl.attn[j].forward(h);
      }
      if (lvl.resample) h = lvl.resample.forward(h);
    }
    const out = this.convOut.forwardNormSilu(this.normOut, h);
    dropSpareActivation(); // keep no activation-sized buffer after the forward
    return out;
  }
}
