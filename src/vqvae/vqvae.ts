/**
 * The multi-scale VQVAE (official `models/vqvae.py`, docs/VAR.md §4–6):
 *   encode(img)      = quant_conv(encoder(img))
 *   imgToIdxBl(img)  = residual multi-scale tokens of encode(img)            (docs/VAR.md §4.3)
 *   idxBlToVarInput  = teacher-forcing input of the VAR                         (docs/VAR.md §5)
 *   getNextAutoregressiveInput / embedIdx = the f̂ update during sampling       (docs/VAR.md §6)
 *   fhatToImg(f̂)     = clamp(decoder(post_quant_conv(f̂)), −1, 1)
 * Parameters live in one `Map<string, Tensor>` under the official state-dict names (Appendix B).
 */
import {
  Tensor, Rng, noGrad, clamp, sizeOf,
} from '../tensor/index.js';
import {
  Encoder, Decoder, Conv2d, type ModuleCtx, type SpecTable, type StateDict, type ParamSpec,
} from './basic-vae.js';
import { VectorQuantizer, phiCount, phiKeyPrefix, type QuantizerOutput } from './quant.js';
import { completeVqvaeConfig, inferVqvaeConfig, type VqvaeConfig, type VqvaeConfigInput } from './config.js';

/** State-dict entries that are training statistics, accepted and ignored by the loader (docs/VAR.md §4.1). */
export const VQVAE_IGNORED_KEYS: ReadonlySet<string> = new Set(['quantize.ema_vocab_hit_SV']);

/** Output of the training forward (official `VQVAE.forward`). */
export interface VqvaeForward extends QuantizerOutput {
  /** decoder(post_quant_conv(f̂)) with the straight-through f̂ (not clamped). */
  rec: Tensor;
}

export class VQVAE {
  readonly config: VqvaeConfig;
  /** The parameters (and possibly ignored buffers) by official name. */
  readonly sd: StateDict;
  /** Every parameter the architecture needs: name → shape and kind. */
  readonly specs: SpecTable;
  readonly encoder: Encoder;
  readonly decoder: Decoder;
  readonly quantize: VectorQuantizer;
  readonly quantConv: Conv2d;
  readonly postQuantConv: Conv2d;

  private constructor(sd: StateDict, config: VqvaeConfig) {
    this.config = config;
    this.sd = sd;
    this.specs = new Map();
    const ctx: ModuleCtx = { sd, specs: this.specs, normGroups: config.normGroups };
    const ae = {
      ch: config.ch, chMult: config.chMult, numResBlocks: config.numResBlocks, inChannels: config.inChannels,
      zChannels: config.Cvae, usingSa: config.usingSa, usingMidSa: config.usingMidSa,
    };
    this.encoder = new Encoder(ctx, ae);
    this.decoder = new Decoder(ctx, ae);
    this.quantize = new VectorQuantizer(sd, config);
    this.specs.set('quantize.embedding.weight', { shape: [config.vocabSize, config.Cvae], kind: 'codebook', fanIn: config.Cvae });
    for (let k = 0; k < phiCount(config); k++) {
      const pre = phiKeyPrefix(config.shareQuantResi, k);
      this.specs.set(`${pre}.weight`, { shape: [config.Cvae, config.Cvae, 3, 3], kind: 'convWeight', fanIn: config.Cvae * 9 });
      this.specs.set(`${pre}.bias`, { shape: [config.Cvae], kind: 'convBias', fanIn: config.Cvae * 9 });
    }
    const ks = config.quantConvKs, pad = ks >> 1;
    this.quantConv = new Conv2d(ctx, 'quant_conv', config.Cvae, config.Cvae, ks, { padding: pad });
    this.postQuantConv = new Conv2d(ctx, 'post_quant_conv', config.Cvae, config.Cvae, ks, { padding: pad });
  }

  /** name → expected shape and kind for a config (no weights needed). */
  static expectedSpecs(config: VqvaeConfigInput): SpecTable {
    return new VQVAE(new Map(), completeVqvaeConfig(config)).specs;
  }

  /**
   * Wrap a state dict: the architecture is inferred from the tensors (`inferVqvaeConfig`), the patch
   * numbers come from `overrides.patchNums`. Missing, unexpected or mis-shaped keys → one error listing
   * all of them. `quantize.ema_vocab_hit_SV` is accepted and ignored. The map is used as is (not copied).
   */
  static fromStateDict(sd: Map<string, Tensor>, overrides: VqvaeConfigInput = {}): VQVAE {
    const config = inferVqvaeConfig(sd, overrides.patchNums, overrides);
    const vae = new VQVAE(sd, config);
    const missing: string[] = [], misshaped: string[] = [], unexpected: string[] = [];
    for (const [k, spec] of vae.specs) {
      const t = sd.get(k);
      if (!t) missing.push(k);
      else if (t.shape.length !== spec.shape.length || t.shape.some((d, i) => d !== spec.shape[i])) {
        misshaped.push(`${k}: got [${t.shape.join(', ')}], expected [${spec.shape.join(', ')}]`);
      } else if (t.dtype !== 'float32') misshaped.push(`${k}: got ${t.dtype}, expected float32`);
    }
    for (const k of sd.keys()) if (!vae.specs.has(k) && !VQVAE_IGNORED_KEYS.has(k)) unexpected.push(k);
    if (missing.length || misshaped.length || unexpected.length) {
      const parts: string[] = [];
      if (missing.length) parts.push(`missing keys (${missing.length}):\n    ${missing.join('\n    ')}`);
      if (unexpected.length) parts.push(`unexpected keys (${unexpected.length}):\n    ${unexpected.join('\n    ')}`);
      if (misshaped.length) parts.push(`mis-shaped keys (${misshaped.length}):\n    ${misshaped.join('\n    ')}`);
      throw new Error(`VQVAE state dict does not match the inferred architecture (ch=${config.ch}, chMult=[${config.chMult.join(',')}], `
        + `numResBlocks=${config.numResBlocks}, Cvae=${config.Cvae}, V=${config.vocabSize}, shareQuantResi=${config.shareQuantResi}):\n  ${parts.join('\n  ')}`);
    }
    return vae;
  }

  /**
   * Seeded random weights for a config (missing fields take the official values). Conv weights and
   * biases ~ U(±1/√fanIn) (torch's default Conv2d init), GroupNorm weight 1 and bias 0, codebook
   * ~ U(±codebookInit/V) (taming/LDM style; default codebookInit 1).
   */
  static random(config: VqvaeConfigInput, rng: Rng, opts: { codebookInit?: number; requiresGrad?: boolean } = {}): VQVAE {
    const cfg = completeVqvaeConfig(config);
    const sd: StateDict = new Map();
    const vae = new VQVAE(sd, cfg);
    const cb = opts.codebookInit ?? 1;
    for (const [k, spec] of vae.specs) {
      const n = sizeOf(spec.shape);
      const d = new Float32Array(n);
      fillInit(d, spec, rng, cb / cfg.vocabSize);
      const t = new Tensor(d, spec.shape, opts.requiresGrad ?? false);
      t.name = k;
      sd.set(k, t);
    }
    return vae;
  }

  /** Turn gradient tracking of every parameter on (training) or off (inference). */
  setRequiresGrad(on: boolean): this {
    for (const k of this.specs.keys()) { const t = this.sd.get(k); if (t) { t.requiresGrad = on; if (!on) t.grad = null; } }
    return this;
  }

  /** The trainable parameters in a fixed order (architecture order), with their names. */
  namedParameters(): [string, Tensor][] {
    return [...this.specs.keys()].map((k) => [k, this.sd.get(k)!]);
  }

  parameters(): Tensor[] { return this.namedParameters().map(([, t]) => t); }

  /** The state dict to save: every parameter under its official name (ignored buffers are dropped). */
  stateDict(): Map<string, Tensor> {
    return new Map(this.namedParameters());
  }

  get patchNums(): readonly number[] { return this.config.patchNums; }
  get vocabSize(): number { return this.config.vocabSize; }
  get Cvae(): number { return this.config.Cvae; }

  /** f = quant_conv(encoder(img)), img [B, 3, S, S] in [−1, 1] → [B, Cvae, S/ds, S/ds]. */
  encode(img: Tensor): Tensor {
    this.checkImg(img);
    return this.quantConv.forward(this.encoder.forward(img));
  }

  /** Official `img_to_idxBl`: int32 [B, pn²] per scale (no graph). */
  imgToIdxBl(img: Tensor, patchNums: readonly number[] = this.patchNums): Tensor[] {
    return noGrad(() => this.quantize.fToIdxBlOrFhat(this.encode(img), false, patchNums));
  }

  /** Cumulative f̂ after each scale for an image (no graph). */
  imgToFhats(img: Tensor): Tensor[] {
    return noGrad(() => this.quantize.fToIdxBlOrFhat(this.encode(img), true));
  }

  /** Teacher-forcing input [B, L − 1, Cvae] from the tokens of every scale (docs/VAR.md §5). */
  idxBlToVarInput(idx: readonly Tensor[]): Tensor { return this.quantize.idxBlToVarInput(idx); }

  /** Codebook vectors of int32 [B, pn²] tokens as [B, Cvae, pn, pn]. */
  embedIdx(idx: Tensor, pn: number): Tensor { return this.quantize.embedIdx(idx, pn); }

  /** f̂ update of sampling step si (docs/VAR.md §6): returns the new f̂ and the next scale's input map [B, Cvae, pn', pn']. */
  getNextAutoregressiveInput(si: number, SN: number, fHat: Tensor, hBChw: Tensor): { fHat: Tensor; next: Tensor } {
    return this.quantize.getNextAutoregressiveInput(si, SN, fHat, hBChw);
  }

  /** Image in [−1, 1]: clamp(decoder(post_quant_conv(f̂)), −1, 1). Map to [0, 1] with (x + 1)/2. */
  fhatToImg(fHat: Tensor): Tensor {
    const L = this.quantize.latentSize;
    if (fHat.ndim !== 4 || fHat.shape[1] !== this.Cvae || fHat.shape[2] !== L || fHat.shape[3] !== L) {
      throw new RangeError(`fhatToImg: expected f̂ [B, ${this.Cvae}, ${L}, ${L}], got [${fHat.shape.join(', ')}]`);
    }
    return clamp(this.decoder.forward(this.postQuantConv.forward(fHat)), -1, 1);
  }

  /**
   * Training forward (official `VQVAE.forward`): rec = decoder(post_quant_conv(f̂_st)) with the
   * straight-through f̂, plus the VQ loss, the codebook hits and tokens per scale.
   */
  forward(img: Tensor): VqvaeForward {
    const q = this.quantize.forward(this.encode(img));
    return { ...q, rec: this.decoder.forward(this.postQuantConv.forward(q.fHat)) };
  }

  private checkImg(img: Tensor): void {
    const { inChannels, imgSize } = this.config;
    if (img.ndim !== 4 || img.shape[1] !== inChannels) {
      throw new RangeError(`VQVAE: expected an image batch [B, ${inChannels}, ${imgSize}, ${imgSize}], got [${img.shape.join(', ')}]`);
    }
    const ds = this.config.downsample;
    if (img.shape[2] % ds !== 0 || img.shape[3] % ds !== 0) {
      throw new RangeError(`VQVAE: image ${img.shape[2]}×${img.shape[3]} is not a multiple of the downsampling ${ds}`);
    }
  }
}

function fillInit(d: Float32Array, spec: ParamSpec, rng: Rng, codebookBound: number): void {
  switch (spec.kind) {
    case 'normWeight': d.fill(1); return;
    case 'normBias': return;
    case 'codebook': for (let i = 0; i < d.length; i++) d[i] = (2 * rng.uniform() - 1) * codebookBound; return;
    default: {
      const b = 1 / Math.sqrt(spec.fanIn);
      for (let i = 0; i < d.length; i++) d[i] = (2 * rng.uniform() - 1) * b;
    }
  }
}
